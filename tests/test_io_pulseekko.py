"""Golden tests of the Sensors & Software pulseEKKO reader (.HD + .DT1 + .GPS)."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.errors import VendorFormatError

SNS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr" / "gprpy-exampledata"
COM = SNS / "SnS" / "ComOffs" / "XLINE00.DT1"
WARR = SNS / "SnS" / "WARR" / "XLINE00.DT1"


def trace_from_bytes(path: Path, k: int, npts: int) -> np.ndarray:
    """Trace k decoded with struct only: 128-byte header, then npts little-endian int16."""
    raw = path.read_bytes()
    off = k * (128 + 2 * npts) + 128
    return np.array(struct.unpack_from(f"<{npts}h", raw, off))


def test_common_offset_line_shape_and_timing():
    r = io.read(COM)
    assert r.vendor == "pulseekko"
    # README/HD: 531 traces x 1500 points int16, 1200 ns window
    assert r.samples.shape == (531, 1500) and r.samples.dtype == np.int16
    # dt = window / points = 0.8 ns; the trace headers agree (field 7 = 800 ps)
    assert r.sample_interval_s == pytest.approx(0.8e-9)
    assert np.all(r.trace_headers[:, 6] == 800)
    # HD: step 2 ft, positions 0..1060 ft -> metres
    assert r.trace_interval_m == pytest.approx(0.6096)
    assert r.trace_position_m[-1] == pytest.approx(1060 * 0.3048)
    assert r.time_zero_sample == pytest.approx(2.18)  # TIMEZERO AT POINT 3.18 (1-based)
    assert r.frequency_hz == 50e6
    assert r.header["date"] == "2017-04-10"


def test_no_silent_dc_removal():
    r = io.read(COM)
    # WHY: the DT1 holds the integers the receiver digitised, DC offset included.
    # Decoding the bytes with struct gives the reference; demine must equal it to the
    # count.  This line's traces sit ~150 counts below zero (trace 0 mean -137.86); a
    # reader that subtracts the mean of the first 100 samples shifts every value.
    for k in (0, 1, 265, 530):
        ref = trace_from_bytes(COM, k, 1500)
        assert np.array_equal(r.samples[k], ref)
    assert r.samples[0].mean() == pytest.approx(-137.86, abs=0.005)
    assert r.samples.mean() == pytest.approx(-150.0087, abs=0.001)
    first100 = r.samples[:, :100].mean(axis=1)
    assert np.all(np.abs(first100) > 20)  # so "remove mean of first 100" is not a no-op


def test_warr_gather():
    r = io.read(WARR.with_suffix(".HD"))
    assert r.samples.shape == (164, 1900)
    assert r.sample_interval_s == pytest.approx(0.4e-9)  # 760 ns / 1900
    assert r.trace_position_m[1] == pytest.approx(0.1)  # metres, step 0.1
    assert np.array_equal(r.samples[100], trace_from_bytes(WARR, 100, 1900))


def test_trace_times_from_headers():
    r = io.read(COM)
    # field 24 of the trace header is the time of day in seconds: 38177.2 s = 10:36:17
    assert r.trace_time_s[0] == pytest.approx(38177.227, abs=1e-3)
    want = dt.datetime(2017, 4, 10, tzinfo=dt.UTC).timestamp() + float(r.trace_time_s[0])
    assert r.start_time_ns == pytest.approx(want * 1e9, abs=1e3)


def write_pair(tmp: Path, data: np.ndarray, *, bpp: int, n_hd: int | None = None,
               window: float = 100.0, extra: str = "") -> Path:
    n, npts = data.shape
    (tmp / "L.HD").write_text(
        f"1234\r\nData Collected with pE PRO\r\n2020-Jan-05\r\n"
        f"NUMBER OF TRACES   = {n if n_hd is None else n_hd}\r\n"
        f"NUMBER OF PTS/TRC  = {npts}\r\nTOTAL TIME WINDOW  = {window}\r\n"
        f"POSITION UNITS     = m\r\nSTEP SIZE USED     = 0.05\r\n{extra}"
    )
    blob = bytearray()
    for k in range(n):
        h = [0.0] * 25
        h[0], h[1], h[2], h[5] = k + 1, 0.05 * k, npts, bpp
        blob += struct.pack("<25f", *h) + bytes(28)
        blob += data[k].astype("<i2" if bpp == 2 else "<f4").tobytes()
    p = tmp / "L.DT1"
    p.write_bytes(bytes(blob))
    return p


def test_float32_version(tmp_path):
    d = np.linspace(-1, 1, 5 * 30, dtype=np.float32).reshape(5, 30) + 0.25
    r = io.read(write_pair(tmp_path, d, bpp=4))
    assert r.samples.dtype == np.float32 and np.array_equal(r.samples, d)
    assert r.header["bytes_per_point"] == 4
    assert r.header["date"] == "2020-01-05"  # "2020-Jan-05" form of newer HD files


def test_gps_sidecar(tmp_path):
    d = np.zeros((4, 8), np.int16)
    p = write_pair(tmp_path, d, bpp=2)
    def nm(body: str) -> str:
        c = 0
        for ch in body:
            c ^= ord(ch)
        return f"${body}*{c:02X}"

    (tmp_path / "L.GPS").write_text(
        "Trace #1 at position 0.000000\r\n"
        + nm("GPGGA,120000.00,4729.69357,N,12218.83298,W,2,07,1.4,62.1,M,-18.5,M,,")
        + "\r\nTrace #3 at position 0.100000\r\n"
        + nm("GPGGA,120001.00,,,,,0,00,,,M,,M,,")
        + "\r\n"
    )
    g = io.read(p).gps
    assert g["trace"].tolist() == [0, 2]
    assert g["lat"][0] == pytest.approx(47 + 29.69357 / 60)
    assert np.isnan(g["lat"][1]) and g["fix_quality"][1] == 0
    t = dt.datetime(2020, 1, 5, 12, 0, 0, tzinfo=dt.UTC)
    assert g["time_ns"][0] == int(t.timestamp()) * 10**9


@pytest.mark.parametrize(
    ("kw", "cut", "field"),
    [
        ({"n_hd": 10**9}, 0, "NUMBER OF TRACES"),  # lying trace count: no allocation
        ({}, 7, "NUMBER OF TRACES"),  # truncated payload
        ({"window": 0}, 0, "TOTAL TIME WINDOW"),
    ],
)
def test_bad_files_name_the_field(tmp_path, kw, cut, field):
    p = write_pair(tmp_path, np.zeros((3, 16), np.int16), bpp=2, **kw)
    if cut:
        p.write_bytes(p.read_bytes()[:-cut])
    with pytest.raises(VendorFormatError, match=f"'{field}'"):
        io.read(p)


def test_missing_key(tmp_path):
    p = write_pair(tmp_path, np.zeros((3, 16), np.int16), bpp=2)
    hd = tmp_path / "L.HD"
    hd.write_text(hd.read_text().replace("NUMBER OF PTS/TRC", "NUMBER OF PTZ"))
    with pytest.raises(VendorFormatError, match="L.HD.*'NUMBER OF PTS/TRC'"):
        io.read(p)


def test_more_traces_than_the_header_says_are_read_and_warned_about(tmp_path):
    """From the session-28 radar audit: an .HD saying 500 traces over a .DT1 of
    531 read all 531 without a word."""
    import shutil

    text = COM.with_suffix(".HD").read_text()
    assert "NUMBER OF TRACES   = 531" in text
    (tmp_path / "l.HD").write_text(text.replace("NUMBER OF TRACES   = 531",
                                                "NUMBER OF TRACES   = 500"))
    shutil.copy(COM, tmp_path / "l.DT1")
    with pytest.warns(UserWarning, match="NUMBER OF TRACES says 500, .*l.DT1 holds 531: all "
                                         "are read"):
        r = io.read(tmp_path / "l.DT1")
    assert r.samples.shape[0] == 531 and r.header["extra_traces"] == 31
