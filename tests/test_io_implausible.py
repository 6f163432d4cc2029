"""Vendor files whose header fields no instrument writes: refused naming the
field, not imported as infinite positions, wrapped clocks or float32 garbage
(cases from an adversarial audit of the readers, session 33)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.errors import VendorFormatError
from demine.io.convert import import_file

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EKKO = ROOT / "gpr" / "gprpy-exampledata" / "SnS" / "WARR" / "XLINE00"
MALA = ROOT / "gpr" / "impdar-test-data" / "ten_col"
DZT = ROOT / "gpr" / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT"


def _header_edit(text: bytes, sep: bytes, key: str, value: str) -> bytes:
    out = []
    for line in text.split(b"\n"):
        if line.split(sep)[0].strip() == key.encode():
            line = key.encode() + sep + b" " + value.encode()
        out.append(line)
    return b"\n".join(out)


def _ekko(tmp: Path, key: str | None = None, value: str = "", gps: bytes | None = None) -> Path:
    hd = EKKO.with_suffix(".HD").read_bytes()
    if key:
        hd = _header_edit(hd, b"=", key, value)
    (tmp / "L.HD").write_bytes(hd)
    (tmp / "L.DT1").write_bytes(EKKO.with_suffix(".DT1").read_bytes())
    if gps is not None:
        (tmp / "L.GPS").write_bytes(gps)
    return tmp / "L.HD"


def _mala(tmp: Path, key: str, value: str) -> Path:
    rad = _header_edit(MALA.with_suffix(".rad").read_bytes(), b":", key, value)
    (tmp / "x.rad").write_bytes(rad)
    (tmp / "x.rd3").write_bytes(MALA.with_suffix(".rd3").read_bytes())
    return tmp / "x.rad"


def test_pulseekko_points_per_trace_that_fit_the_other_sample_width_are_refused(tmp_path):
    # 1900 int16 points written as 950: 950 float32 points fill the same bytes, and
    # the file had been read as float32 (values of 1e38 and NaN) without a word
    good = io.read(_ekko(tmp_path))
    assert good.samples.dtype == np.int16 and good.samples.shape[1] == 1900
    with pytest.raises(VendorFormatError, match=r"NUMBER OF PTS/TRC.*950 points.*1900 "
                       r"points of 2 bytes"):
        io.read(_ekko(tmp_path, "NUMBER OF PTS/TRC", "950"))


@pytest.mark.parametrize(("key", "value", "flag", "match"), [
    ("TIME INTERVAL", "1e300", "TIME FLAG", "'TIME INTERVAL': 1e\\+300 s between traces"),
    ("DISTANCE INTERVAL", "1e308", "DISTANCE FLAG",
     "'DISTANCE INTERVAL': 1e\\+308 m between traces"),
    ("FREQUENCY", "1e308", None, "sample interval 1e-314 s .* outside"),
])
def test_mala_timing_no_radar_has_is_refused(tmp_path, key, value, flag, match):
    # (1e300 s between traces raised OverflowError; 1e308 m made positions inf)
    p = _mala(tmp_path, key, value)
    if flag:   # (the interval is used only when its flag is set)
        p.write_bytes(_header_edit(p.read_bytes(), b":", flag, "1"))
        assert f"{flag}: 1" in p.read_text(errors="replace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (the edited header's own inconsistencies)
        with pytest.raises(VendorFormatError, match=match):
            io.read(p)


def test_gssi_scan_rate_no_radar_has_is_refused(tmp_path):
    # rhf_sps 1e-45 scans/s: trace times had wrapped round the int64 clock
    b = bytearray(DZT.read_bytes())
    struct.pack_into("<f", b, 10, 1e-45)
    p = tmp_path / "F.DZT"
    p.write_bytes(bytes(b))
    with pytest.raises(VendorFormatError, match=r"trace interval .* s \(from its header\) "
                       r"is outside"):
        io.read(p)
    with pytest.raises(VendorFormatError, match="trace interval"):
        io.read_channels(p)


def test_segy_uint32_beyond_int32_is_a_vendor_error_on_import(tmp_path):
    n, ns = 3, 4
    b = bytearray(b"C" + b" " * 3199)
    binh = bytearray(400)
    struct.pack_into(">H", binh, 16, 1)
    struct.pack_into(">H", binh, 20, ns)
    struct.pack_into(">h", binh, 24, 10)   # format 10: uint32
    b += binh
    for _ in range(n):
        th = bytearray(240)
        struct.pack_into(">H", th, 114, ns)
        struct.pack_into(">H", th, 116, 1)
        b += th + np.array([1, 2, 3, 4_000_000_000], ">u4").tobytes()
    p = tmp_path / "u4.sgy"
    p.write_bytes(bytes(b))
    assert io.read(p).samples.max() == 4_000_000_000
    with pytest.raises(VendorFormatError, match="uint32 samples do not fit"):
        import_file(p, tmp_path / "u4.h5")


def test_an_unreadable_pulseekko_gps_sidecar_is_ignored_with_a_warning(tmp_path):
    gps = b"Trace #" + b"9" * 5000 + b" at position 0.0\n"
    with pytest.warns(UserWarning, match="unreadable .GPS sidecar ignored.*5000 digits"):
        rd = io.read(_ekko(tmp_path, gps=gps))
    assert rd.gps is None and "error" in rd.header["gps"] and rd.n_traces == 164


def _table(tmp: Path, text: str) -> Path:
    p = tmp / "t.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("body", "match"), [
    ("time,x,g1,g2\n0,0,1e400,1\n", r"line 2, column 'g1': inf is out of range"),
    ("time,x,g1,g2\n0,inf,1,1\n", r"line 2, column 'x': inf is out of range"),
    ("time,x,g1,g2\n0,0,1,-1e39\n", r"line 2, column 'g2': -1e\+39 is out of range"),
    ("time,x,g1,g2\n1500-01-01T00:00:00Z,0,1,1\n", r"line 2, column 'time': not a time"),
    ("date,time,x,g1,g2\n1500-01-01,12:00:00,0,1,1\n", r"line 2, column 'date': not a date"),
    ("time,x,g1,(" + "(" * 300 + "\n0,0,1,1\n", "a column name of 301 characters"),
])
def test_emi_table_values_a_recording_cannot_hold_are_refused(tmp_path, body, match):
    # (1e400 had become an infinite reading; the year 1500 wrapped round to 2084 or
    # raised OverflowError; a long header cell made the unit search quadratic)
    with pytest.raises(VendorFormatError, match=match):
        io.read_emi_table(_table(tmp_path, body), rate=1000.0
                          if not body.startswith(("time", "date")) else None)


def test_a_file_cut_at_the_end_of_its_header_is_not_imported_as_an_empty_line(tmp_path):
    rd = io.read(DZT)
    p = tmp_path / "F.DZT"
    p.write_bytes(DZT.read_bytes()[: rd.header["data_offset"]])
    assert io.read(p).n_traces == 0   # (reading it says what it holds)
    with pytest.raises(VendorFormatError, match="no traces after the header"):
        import_file(p, tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


def test_a_cut_gprmax_output_is_called_unreadable_not_another_tools_file(tmp_path):
    src = next((ROOT / "gpr").glob("gprmax-*/*.h5"))
    p = tmp_path / "cut.h5"
    b = src.read_bytes()
    p.write_bytes(b[: len(b) // 2])
    with pytest.raises(VendorFormatError, match="cannot be opened \\(truncated or damaged\\?\\)"):
        io.read(p)


def test_a_start_time_outside_int64_nanoseconds_is_dropped_not_the_file():
    from demine.io._common import RadarData, check_plausible

    rd = RadarData(samples=np.zeros((2, 4), np.int16), sample_interval_s=1e-10, vendor="mala",
                   path="x.rd3", header={}, start_time_ns=-(10**19))
    with pytest.warns(UserWarning, match="start time .* outside 1970-2262"):
        check_plausible(rd)
    assert rd.start_time_ns is None and rd.header["start_time_refused_ns"] == -(10**19)
    ok = RadarData(samples=np.zeros((2, 4), np.int16), sample_interval_s=1e-10,
                   vendor="mala", path="x.rd3", header={}, start_time_ns=1_790_000_000 * 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_plausible(ok).start_time_ns == 1_790_000_000 * 10**9
