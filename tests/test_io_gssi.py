"""Golden tests of the GSSI DZT/DZG/DZX reader on real files, plus synthetic variants.

Each test says why its expected value is right, independently of demine's code.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.errors import VendorFormatError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr"
DZT16 = DATA / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT"
DZT32 = DATA / "impdar-test-data" / "test_gssi.DZT"


# --------------------------------------------------------------------------- real files
def test_16bit_is_unsigned_with_mid_scale_zero():
    r = io.read(DZT16)
    assert r.vendor == "gssi"
    # README: 512 samples x 1040 traces, 16-bit unsigned, range 48 ns -> dt 48/512 ns
    assert r.samples.shape == (1040, 512)
    assert r.samples.dtype == np.uint16
    assert r.zero_offset == 32768
    assert r.sample_interval_s == pytest.approx(48e-9 / 512)
    body = r.samples[:, 2:]  # samples 0-1 hold the scan counter and mark word
    # WHY: an unsigned 16-bit recording of a zero-mean radar wave sits at mid-scale,
    # so the median is ~32768 and about half the samples are above it.  Those are the
    # ~53 % that a reader using int16 wraps to large negative values.
    assert abs(float(np.median(body)) - 32768) < 50
    above = float(np.mean(body >= 32768))
    assert 0.4 < above < 0.65
    # WHY: a real waveform is smooth at 10.7 GS/s: adjacent samples never differ by
    # more than a fraction of full scale.  The int16 misreading jumps by ~65535
    # wherever the wave crosses zero; the correct signed() view does not.
    good = r.signed()[:, 2:].astype(np.int32)
    assert r.signed().dtype == np.int16
    assert np.abs(np.diff(good, axis=1)).max() < 16384
    wrong = body.view(np.int16).astype(np.int32)
    assert np.abs(np.diff(wrong, axis=1)).max() > 60000
    assert abs(float(good.mean())) < 100  # the wave is zero-mean once the offset is off
    # signed() is exact: adding 32768 back gives the stored words
    assert np.array_equal(good + 32768, body.astype(np.int32))
    amp = r.amplitudes(np.dtype(np.float64))
    assert amp.dtype == np.float64 and np.array_equal(amp[:, 2:], good)


def test_16bit_header_fields():
    r = io.read(DZT16)
    h = r.header
    # README: SIR-3000 (rh_system 3), antenna "400MHz", 100 scans/s, 50 scans/m, epsr 6
    assert h["rh_system"] == 3 and h["rh_system_name"] == "SIR-3000"
    # WHY: byte 113 is 25 = 0b00011_001: system 3 in bits 3-7, version 1 in bits
    # 0-2 (as readgssi decodes it; 1: no GPS in this file, which has no DZG)
    assert h["rh_version"] == 1
    assert r.antenna == "400MHz" and r.frequency_hz == 400e6
    assert r.trace_interval_s == pytest.approx(0.01)
    assert r.trace_interval_m == pytest.approx(0.02)
    assert h["rhf_epsr"] == 6.0
    assert h["data_offset"] == 1024


def test_header_size_not_assumed_fixed():
    r = io.read(DZT32)
    # README: rh_data = 128 means 128 x 1024 = 131072 header bytes (SIR-4000).
    assert r.header["rh_data"] == 128 and r.header["data_offset"] == 131072
    # WHY the offset is right: the file is 131072 + 345 x 2048 x 4 bytes exactly, and
    # the controller writes the scan number into sample 0 of every scan, so with the
    # right offset sample 0 of trace k is k for all 345 traces.  A reader that
    # assumes a 1024-byte header starts inside the header and loses this alignment
    # (and its first traces are header bytes).
    assert DZT32.stat().st_size == 131072 + 345 * 2048 * 4
    assert r.samples.shape == (345, 2048)
    assert np.array_equal(r.samples[:, 0], np.arange(345))
    # the same counter in the 16-bit file (1024-byte header there)
    r16 = io.read(DZT16)
    assert np.array_equal(r16.samples[:, 0], np.arange(1040))


def test_32bit_is_signed():
    r = io.read(DZT32)
    # WHY: 32-bit DZT samples are signed; this file has large negative values
    # (checked from the raw bytes with struct, independently of numpy dtypes).
    assert r.samples.dtype == np.int32 and r.zero_offset == 0
    raw = DZT32.read_bytes()
    k, j = 100, 700
    off = 131072 + (k * 2048 + j) * 4
    assert r.samples[k, j] == struct.unpack_from("<i", raw, off)[0]
    assert r.samples.min() < -1_000_000
    assert r.signed() is r.samples


def test_unknown_antenna_code_kept_as_text():
    r = io.read(DZT32)
    # "5106" is a numeric model code (200 MHz per GSSI's table); an unlisted code
    # must not crash: see test_synthetic_unknown_antenna.
    assert r.antenna == "5106" and r.frequency_hz == 200e6


def test_dzg_without_fix_does_not_crash():
    r = io.read(DZT32)
    g = r.gps
    assert g is not None
    # WHY: the DZG holds 14 "$GSSIS,<scan>,-1" + "$GPGGA,...,0,00,,,M,,M,,*hh" pairs;
    # fix quality 0 and empty HDOP/altitude must become no-fix rows, not an exception.
    assert g["trace"].tolist() == list(range(23, 336, 24))  # 24 scans/s, GGA at 1 Hz
    assert np.all(g["fix_quality"] == 0)
    assert np.all(np.isnan(g["lat"])) and np.all(np.isnan(g["lon"]))
    assert np.all(np.isnan(g["alt"]))
    # the GGA times are 00:03:20, 00:03:21, ... one second apart
    assert np.all(np.diff(g["time_ns"]) == 1_000_000_000)
    assert r.header["dzg"]["no_fix"] == 14 and r.header["dzg"]["malformed"] == 0


def test_dzx_properties():
    r = io.read(DZT32)
    dzx = r.header["dzx"]
    assert dzx["global"]["dielectric"] == "9.64102"
    assert dzx["system"] == "SIR4K"
    assert [w["scan"] for w in dzx["waypoints"]] == ["0", "341"]
    assert r.marks.size == 0  # the file has waypoints but no user marks


def test_marks_in_scan_word_without_dzx():
    r = io.read(DZT16)
    # WHY: SIR-3000 files flag a marked scan in its second 16-bit word (the first
    # is the scan counter; readgssi documents the same layout).  This line has no
    # DZX and carries the flag 0x6400 on every 100th scan, 11 marks in 1040 scans.
    assert r.header["marks_source"] == "scan word 1"
    assert r.marks.tolist() == list(range(0, 1040, 100))
    assert np.all(r.samples[r.marks, 1] == 0x6400)


def test_mmap_equals_load():
    a = io.read(DZT32)
    b = io.read(DZT32, mmap=True)
    assert isinstance(b.samples, np.memmap)
    assert np.array_equal(a.samples, b.samples)


# --------------------------------------------------------------------------- synthetic
def make_dzt(
    path: Path,
    data: np.ndarray,
    *,
    bits: int,
    nchan: int = 1,
    rh_data: int | None = None,
    antenna: bytes = b"400MHz",
    rng_ns: float = 20.0,
    sps: float = 50.0,
    spm: float = 0.0,
) -> Path:
    """Write a DZT with struct (independent of demine); data is (scans, nchan, nsamp)."""
    scans, nch, nsamp = data.shape
    assert nch == nchan
    hdr = bytearray(1024)
    if rh_data is None:
        rh_data = 1024
    struct.pack_into("<HHHHH", hdr, 0, 0x00FF, rh_data, nsamp, bits, 0)
    struct.pack_into("<fffff", hdr, 10, sps, spm, 0.0, 0.0, rng_ns)
    struct.pack_into("<H", hdr, 52, nchan)
    struct.pack_into("<f", hdr, 54, 5.0)
    hdr[98 : 98 + len(antenna)] = antenna
    hdr[113] = 2 << 3
    header_len = rh_data * 1024 if rh_data < 1024 else 1024 * nchan
    blob = bytearray(header_len)
    for c in range(nchan):
        if (c + 1) * 1024 <= header_len:
            blob[c * 1024 : (c + 1) * 1024] = hdr
    dt = {8: "<u1", 16: "<u2", 32: "<i4"}[bits]
    path.write_bytes(bytes(blob) + np.ascontiguousarray(data, dtype=dt).tobytes())
    return path


def test_synthetic_8bit_unsigned(tmp_path):
    rng = np.random.default_rng(1)
    d = rng.integers(0, 256, size=(7, 1, 64), dtype=np.uint8)
    r = io.read(make_dzt(tmp_path / "a.DZT", d, bits=8))
    assert r.samples.dtype == np.uint8 and r.zero_offset == 128
    assert np.array_equal(r.samples, d[:, 0])
    # 8-bit zero is 128: signed() = value - 128, exactly, as int8
    assert np.array_equal(r.signed().astype(int), d[:, 0].astype(int) - 128)
    assert r.signed().dtype == np.int8


def test_synthetic_multichannel_interleaved(tmp_path):
    d = np.zeros((5, 3, 32), np.uint16)
    for c in range(3):
        d[:, c, :] = 1000 * (c + 1) + np.arange(5)[:, None]  # channel and scan encoded
    p = make_dzt(tmp_path / "m.DZT", d, bits=16, nchan=3)
    chans = io.read_channels(p)
    assert [c.channel for c in chans] == [0, 1, 2]
    for c, rd in enumerate(chans):
        assert rd.n_channels == 3
        assert np.array_equal(rd.samples, d[:, c, :])
    with pytest.raises(VendorFormatError, match="channel"):
        io.read(p, channel=3)


def test_synthetic_kilobyte_rh_data_and_unknown_antenna(tmp_path):
    d = np.arange(4 * 16, dtype=np.int32).reshape(4, 1, 16) - 20
    p = make_dzt(tmp_path / "k.DZT", d, bits=32, rh_data=3, antenna=b"ZZ-9000X")
    r = io.read(p)
    assert r.header["data_offset"] == 3 * 1024
    assert np.array_equal(r.samples, d[:, 0])
    assert r.antenna == "ZZ-9000X" and math.isnan(r.frequency_hz)


def test_synthetic_dzx_marks_and_dzg_with_rmc_date(tmp_path):
    d = np.full((50, 1, 16), 32768, np.uint16)
    p = make_dzt(tmp_path / "s.DZT", d, bits=16)
    (tmp_path / "s.DZX").write_text(
        '<?xml version="1.0"?><DZX xmlns="www.geophysical.com/DZX/1.02"><File><Profile>'
        "<WayPt><scan>5</scan><mark>User</mark></WayPt>"
        "<WayPt><scan>20</scan><mark>User</mark><name>mine?</name></WayPt>"
        "<WayPt><scan>999</scan><mark>User</mark></WayPt>"
        "</Profile></File><TargetGroup><TargetWayPt><scanSampChanProp>30,12,0"
        "</scanSampChanProp></TargetWayPt></TargetGroup></DZX>"
    )

    def nm(body: str) -> str:
        c = 0
        for ch in body:
            c ^= ord(ch)
        return f"${body}*{c:02X}"

    (tmp_path / "s.DZG").write_text(
        "\r\n".join(
            [
                "$GSSIS,3,-1",
                nm("GNRMC,235959.50,A,4807.038,N,01131.000,E,0.1,0,311224,,"),
                nm("GNGGA,235959.50,4807.038,N,01131.000,E,4,12,0.7,545.4,M,46.9,M,,"),
                "$GSSIS,10,-1",
                nm("GNGGA,000000.50,4807.039,N,01131.000,E,4,12,0.7,545.4,M,46.9,M,,"),
                "$GSSIS,11,-1",
                "$GNGGA,garbage*00",
            ]
        )
    )
    r = io.read(p)
    # marks beyond the 50 scans are dropped, the others kept in order
    assert r.marks.tolist() == [5, 20, 30]
    g = r.gps
    assert g["trace"].tolist() == [3, 10]
    assert g["lat"][0] == pytest.approx(48 + 7.038 / 60)
    # RMC gives 31 Dec 2024; the second GGA is after midnight -> 1 Jan 2025
    import datetime as dt

    t0 = dt.datetime(2024, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC)
    assert g["time_ns"][0] == int(t0.timestamp() * 1e6) * 1000
    assert g["time_ns"][1] - g["time_ns"][0] == 1_000_000_000
    assert r.header["dzg"]["malformed"] == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b[:100], "header"),
        (lambda b: b[:6] + struct.pack("<H", 12) + b[8:], "rh_bits"),
        (lambda b: b[:4] + struct.pack("<H", 0) + b[6:], "rh_nsamp"),
        (lambda b: b[:2] + struct.pack("<H", 1000) + b[4:], "rh_data"),
        (lambda b: b[:2] + struct.pack("<H", 0) + b[4:], "rh_data"),
        (lambda b: b[:26] + struct.pack("<f", float("nan")) + b[30:], "rhf_range"),
        (lambda b: b[:52] + struct.pack("<H", 60000) + b[54:], "rh_nchan"),
        (lambda b: b[:-3], "payload"),
    ],
)
def test_corrupt_headers_name_the_field(tmp_path, mutate, field):
    d = np.full((4, 1, 32), 32768, np.uint16)
    good = make_dzt(tmp_path / "g.DZT", d, bits=16).read_bytes()
    bad = tmp_path / "bad.DZT"
    bad.write_bytes(mutate(good))
    with pytest.raises(VendorFormatError, match=f"bad.DZT.*'{field}'"):
        io.read(bad)


def test_partial_scan_allowed_on_request(tmp_path):
    d = np.full((4, 1, 32), 32768, np.uint16)
    good = make_dzt(tmp_path / "g.DZT", d, bits=16).read_bytes()
    bad = tmp_path / "cut.DZT"
    bad.write_bytes(good[:-10])
    r = io.read(bad, allow_partial=True)
    assert r.n_traces == 3 and r.header["dropped_bytes"] == 64 - 10


def test_dzg_gga_before_the_first_rmc_gets_its_time(tmp_path):
    """A receiver sends GGA before RMC in an epoch: the first GGA of a file comes
    before any date.  It is dated by the RMC that follows (before: no time),
    a day earlier when it was before midnight and the RMC after."""
    import datetime as dt

    from demine.io.gssi import read_dzg

    def nm(body: str) -> str:
        c = 0
        for ch in body:
            c ^= ord(ch)
        return f"${body}*{c:02X}"

    def gga(tod: str) -> str:
        return nm(f"GPGGA,{tod},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")

    p = tmp_path / "x.DZG"
    p.write_text("\n".join([
        "$GSSIS,0,-1", gga("235958.00"),
        "$GSSIS,10,-1", gga("235959.00"),
        nm("GPRMC,000000.00,A,4807.038,N,01131.000,E,0.1,0,010425,,"),
        "$GSSIS,20,-1", gga("000000.00"),
    ]) + "\n")
    g, stats = read_dzg(p)
    t0 = dt.datetime(2025, 3, 31, 23, 59, 58, tzinfo=dt.UTC)
    assert stats["date_source"] == "RMC/ZDA"
    assert g["time_ns"].tolist() == [int(t0.timestamp()) * 10**9 + k * 10**9 for k in range(3)]


def test_a_sir4000_file_is_placed_by_its_dzx_scans_per_metre(tmp_path):
    """test_gssi.DZT (SIR-4000) has rhf_spm 0 in its header and
    <scanPerMeters>300</scanPerMeters> in its DZX: its traces are placed
    1/300 m apart, as the header's value places others (the session-28 radar
    audit: they had no position, and detection searched nothing)."""
    r = io.read(DZT32)
    assert r.header["rhf_spm"] == 0
    assert r.header["trace_interval_source"] == "DZX scanPerMeters"
    assert r.trace_interval_m == pytest.approx(1 / 300)
    np.testing.assert_allclose(r.trace_position_m, np.arange(r.n_traces) / 300)
    assert io.read(DZT32, sidecars=False).trace_position_m is None   # (without its DZX)
