"""Vendor time zeros carried into imported recordings, MALÅ start times, and
GPS sidecars that are garbage.

Conventions, from the sources named in ``docs/io.md``:

* pulseEKKO ``TIMEZERO AT POINT`` counts points from 1 (RGPR ``R/readDT1.R``:
  ``time0 = TIMEZERO * dz - dz`` on an axis whose first point is at 0 ns).
* SEG-Y ``delrt`` (trace bytes 109-110) is the time in ms from time zero to the
  first sample, negative for data recorded before time zero, times the scalar
  of bytes 215-216 (SEG-Y rev 1).
* GSSI ``rhf_position`` has no confirmed relation to time zero (GPRPy reads it
  as the profile's start position, readgssi and ImpDAR do not use it), so a
  DZT gets none.
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.errors import VendorFormatError
from demine.io.convert import import_file
from demine.io.gssi import read_dzg
from demine.io.mala import read_cor
from demine.pipeline import detect_recording
from demine.recording import Recording

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr"
COM = DATA / "gprpy-exampledata" / "SnS" / "ComOffs" / "XLINE00.DT1"
WARR = DATA / "gprpy-exampledata" / "SnS" / "WARR" / "XLINE00.DT1"
DZT32 = DATA / "impdar-test-data" / "test_gssi.DZT"
DZT16 = DATA / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT"
TEN = DATA / "impdar-test-data" / "ten_col.rd3"


@pytest.fixture(scope="module", autouse=True)
def _real_files_present():
    for p in (COM, WARR, DZT32, DZT16, TEN, TEN.with_suffix(".rad"), TEN.with_suffix(".cor")):
        assert p.is_file(), f"real sample file missing: {p}"


def _calibration(path: Path, stream: str = "gpr") -> dict:
    with Recording(path) as rec:
        return dict(rec.streams[stream].calibration)


# ---------------------------------------------------------------- pulseEKKO


def test_pulseekko_time_zero_goes_into_the_calibration(tmp_path):
    out = tmp_path / "com.h5"
    import_file(COM, out)
    cal = _calibration(out)
    # HD: TIMEZERO AT POINT = 3.18 (1-based) -> sample 2.18; dt = 1200 ns / 1500 = 0.8 ns
    assert cal["time_zero_sample"] == pytest.approx(2.18)
    assert cal["time_zero"] == pytest.approx(2.18 * 0.8e-9)
    assert "TIMEZERO AT POINT" in cal["time_zero_source"]


def test_pulseekko_time_zero_is_at_the_direct_waves_first_break():
    """WHY 1-based: the traces sit at their DC level (about -300 counts) at
    samples 0 and 1, leave it at sample 2 (by ~2 % of the direct wave's
    largest swing) and rise steeply after (7 %, 18 %, 29 % at samples 3-5):
    the first break lies at 2-3, where 3.18 - 1 puts time zero."""
    r = io.read(COM)
    a = r.samples.astype(np.float64)
    a -= np.median(a[:, :2], axis=1, keepdims=True)
    m = np.median(a, axis=0)
    rel = np.abs(m) / np.abs(m).max()
    assert np.all(rel[:2] < 0.005) and 0.01 < rel[2] < 0.03 and rel[3] > 0.05
    assert r.time_zero_sample == pytest.approx(2.18)


def test_processing_uses_the_imported_time_zero_without_warning(tmp_path):
    out = tmp_path / "com.h5"
    import_file(COM, out)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*gives no time zero")
        detect_recording(out)


def test_warr_time_zero_is_the_headers(tmp_path):
    # TIMEZERO AT POINT = 34.07, 760 ns / 1900 points: what the header says is kept
    out = tmp_path / "warr.h5"
    import_file(WARR, out)
    cal = _calibration(out)
    assert cal["time_zero_sample"] == pytest.approx(33.07)
    assert cal["time_zero"] == pytest.approx(33.07 * 0.4e-9)


def write_pe(tmp: Path, npts: int, timezero: str, adjust: float = 0.0) -> Path:
    n = 3
    (tmp / "L.HD").write_text(
        "1234\r\nData Collected with pE PRO\r\n2020-Jan-05\r\n"
        f"NUMBER OF TRACES   = {n}\r\nNUMBER OF PTS/TRC  = {npts}\r\n"
        f"TIMEZERO AT POINT  = {timezero}\r\nTOTAL TIME WINDOW  = {npts * 0.1}\r\n")
    blob = bytearray()
    for k in range(n):
        h = [0.0] * 25
        h[0], h[2], h[5], h[20] = k + 1, npts, 2, adjust
        blob += struct.pack("<25f", *h) + bytes(28) + np.zeros(npts, "<i2").tobytes()
    (tmp / "L.DT1").write_bytes(bytes(blob))
    return tmp / "L.DT1"


@pytest.mark.parametrize(("point", "want"), [("1", 0.0), ("16", 15.0), ("7.5", 6.5)])
def test_pulseekko_points_count_from_one(tmp_path, point, want):
    r = io.read(write_pe(tmp_path, 16, point))
    assert r.time_zero_sample == want
    import_file(r.path, tmp_path / "o.h5")
    assert _calibration(tmp_path / "o.h5")["time_zero"] == pytest.approx(want * 0.1e-9)


@pytest.mark.parametrize(("point", "adjust", "why"), [
    ("0.5", 0.0, "outside the 16 points"),
    ("17", 0.0, "outside the 16 points"),
    ("4", 2.5, "time-zero adjustment"),
])
def test_pulseekko_time_zero_not_claimed(tmp_path, point, adjust, why):
    r = io.read(write_pe(tmp_path, 16, point, adjust))
    assert np.isnan(r.time_zero_sample)
    assert why in r.header["time_zero_note"]
    import_file(r.path, tmp_path / "o.h5")
    assert "time_zero" not in _calibration(tmp_path / "o.h5")


# ---------------------------------------------------------------- SEG-Y


def _set_trace_field(path: Path, offset: int, values: list[int], ns: int, bps: int) -> None:
    raw = bytearray(path.read_bytes())
    for k, v in enumerate(values):
        struct.pack_into(">h", raw, 3600 + k * (240 + ns * bps) + offset, v)
    path.write_bytes(bytes(raw))


def _segy(tmp: Path, dt_s: float, ns: int = 100, n: int = 4) -> Path:
    return io.write_segy(tmp / "d.sgy", np.zeros((n, ns), np.int16), dt_s)


@pytest.mark.parametrize(("delrt", "scalar", "sample"), [
    (-2, 0, 20.0),      # -2 ms at 100 us per sample: time zero 20 samples in
    (-2, 1, 20.0),
    (-25, -10, 25.0),   # -2.5 ms (scalar -10 divides)
    (-1, 3, 30.0),      # -3 ms (scalar 3 multiplies)
])
def test_segy_delrt_gives_time_zero(tmp_path, delrt, scalar, sample):
    p = _segy(tmp_path, 1e-4)  # 100 us: the standard microsecond unit
    _set_trace_field(p, 108, [delrt] * 4, 100, 2)
    _set_trace_field(p, 214, [scalar] * 4, 100, 2)
    r = io.read(p)
    assert r.header["sample_interval_unit"] == "us"
    assert r.time_zero_sample == pytest.approx(sample)
    assert "delrt" in r.header["time_zero_source"]
    import_file(p, tmp_path / "o.h5")
    cal = _calibration(tmp_path / "o.h5")
    assert cal["time_zero"] == pytest.approx(sample * 1e-4)
    assert "delrt" in cal["time_zero_source"]


def test_segy_delrt_as_segyio_writes_it(tmp_path):
    segyio = pytest.importorskip("segyio")
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(50)), 3
    p = tmp_path / "s.sgy"
    with segyio.create(p, spec) as f:
        f.bin.update({segyio.BinField.Interval: 200, segyio.BinField.Samples: 50})
        for i in range(3):
            f.header[i] = {segyio.TraceField.DelayRecordingTime: -2,
                           segyio.TraceField.TRACE_SAMPLE_INTERVAL: 200,
                           segyio.TraceField.TRACE_SAMPLE_COUNT: 50}
            f.trace[i] = np.zeros(50, np.float32)
    assert io.read(p).time_zero_sample == pytest.approx(10.0)  # 2 ms / 200 us


@pytest.mark.parametrize(("dt_s", "delrt", "why"), [
    (1e-4, [3] * 4, "before the first sample"),     # recording began after time zero
    (1e-4, [-20] * 4, "after the last sample"),     # 200 samples in: past the 100
    (1e-4, [-2, -2, -3, -2], "varies from trace to trace"),
    (1e-10, [-2] * 4, "picoseconds"),               # radar file: no unit for delrt
])
def test_segy_delrt_not_used(tmp_path, dt_s, delrt, why):
    p = _segy(tmp_path, dt_s)
    _set_trace_field(p, 108, delrt, 100, 2)
    r = io.read(p)
    assert np.isnan(r.time_zero_sample) and why in r.header["time_zero_note"]
    import_file(p, tmp_path / "o.h5")
    assert "time_zero" not in _calibration(tmp_path / "o.h5")


def test_segy_without_delrt_claims_nothing(tmp_path):
    r = io.read(_segy(tmp_path, 1e-4))
    assert np.isnan(r.time_zero_sample)
    assert "time_zero_note" not in r.header and "time_zero_source" not in r.header


# ---------------------------------------------------------------- GSSI


@pytest.mark.parametrize(("path", "position"), [(DZT32, -230.0), (DZT16, 0.0)])
def test_gssi_rhf_position_is_not_taken_for_time_zero(tmp_path, path, position):
    """SIR-4000 test_gssi.DZT: rhf_position -230 ns (sample 204.8 if it were the
    time zero's offset; the direct wave breaks at ~203), but SIR-3000
    FILE____032.DZT says 0 while its direct wave breaks ~50 samples in: no
    source confirms a convention, so none is applied."""
    r = io.read(path)
    assert r.header["rhf_position"] == position
    assert np.isnan(r.time_zero_sample)
    import_file(path, tmp_path / "g.h5")
    assert "time_zero" not in _calibration(tmp_path / "g.h5")


def test_time_zero_of_a_16_bit_dzt_skips_the_scan_counter_and_mark_words(tmp_path):
    """From the session-28 radar audit: samples 0-1 of a SIR-3000 scan are its
    counter and mark flag (-32768 and -7168 once signed); `calibrate time-zero`
    had picked them (0.094 ns, sample 1) instead of the direct wave (sample
    59, the first break at about 46-50), putting depths ~0.1 m deep.  The
    32-bit SIR-4000 file has no such words."""
    from demine.calibration.procedures import time_zero_profile

    for path, skip in ((DZT16, 2), (DZT32, None)):
        out = tmp_path / f"{path.stem}.h5"
        import_file(path, out)
        assert _calibration(out).get("header_samples") == skip
    prof = time_zero_profile(tmp_path / f"{DZT16.stem}.h5")
    assert 50 <= prof["time_zero_sample"] <= 65, prof["time_zero_sample"]
    # the same as with those words blanked by hand
    import h5py
    with h5py.File(tmp_path / f"{DZT16.stem}.h5", "r+") as f:
        s = f["streams/gpr/samples"]
        a = s[()]
        a[:, :2] = 0
        s[...] = a
    assert time_zero_profile(tmp_path / f"{DZT16.stem}.h5")["time_zero_sample"] == \
        prof["time_zero_sample"]


# ---------------------------------------------------------------- MALÅ start time


def test_ramac_start_time_is_trace_one_not_the_first_cor_row():
    r = io.read(TEN)
    # ten_col.cor begins "7 2019-07-26 16:58:43 ...": trace 7, not trace 1, and
    # the .rad gives TIME INTERVAL 0.1 s: trace 1 was 0.6 s earlier
    t7 = int(dt.datetime(2019, 7, 26, 16, 58, 43, tzinfo=dt.UTC).timestamp()) * 10**9
    assert r.gps["trace"][0] == 6 and r.gps["time_ns"][0] == t7
    assert r.start_time_ns == t7 - 600_000_000
    assert "trace 7" in r.header["cor"]["start_time_source"]


def write_ramac(tmp: Path, cor: str | bytes | None, *, time_flag: bool) -> Path:
    (tmp / "l.rd3").write_bytes(np.zeros((40, 8), "<i2").tobytes())
    rad = "SAMPLES:8\r\nFREQUENCY:1000\r\nLAST TRACE:40\r\n"
    if time_flag:
        rad += "TIME FLAG:1\r\nTIME INTERVAL:0.05\r\n"
    (tmp / "l.rad").write_text(rad)
    if cor is not None:
        p = tmp / "l.cor"
        p.write_bytes(cor.encode() if isinstance(cor, str) else cor)
    return tmp / "l.rd3"


def cor_row(trace: int, hms: str) -> str:
    return f"{trace}\t2021-03-04\t{hms}\t50.1\tN\t4.2\tE\t100.0\tM\t1.2\n"


T0 = int(dt.datetime(2021, 3, 4, 10, 0, 0, tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.mark.parametrize(("rows", "time_flag", "want", "how"), [
    ([(1, "10:00:00"), (21, "10:00:01")], False, T0, ".cor row of trace 1"),
    ([(5, "10:00:00"), (25, "10:00:01")], True, T0 - 200_000_000, "TIME INTERVAL"),
    # no trace interval: 0.1 s per trace from the rows, extrapolated back 4 traces
    ([(5, "10:00:00"), (15, "10:00:01"), (25, "10:00:02")], False, T0 - 400_000_000,
     "estimated"),
    ([(5, "10:00:00")], False, None, "unknown"),
])
def test_ramac_start_time_from_cor(tmp_path, rows, time_flag, want, how):
    p = write_ramac(tmp_path, "".join(cor_row(k, t) for k, t in rows), time_flag=time_flag)
    r = io.read(p)
    assert r.start_time_ns == want
    assert how in r.header["cor"]["start_time_source"]


def test_ramac_import_without_trace_timing_starts_at_trace_one(tmp_path):
    p = write_ramac(tmp_path, cor_row(5, "10:00:00") + cor_row(15, "10:00:01")
                    + cor_row(25, "10:00:02"), time_flag=False)
    import_file(p, tmp_path / "o.h5")
    with Recording(tmp_path / "o.h5") as rec:
        t = np.asarray(rec.streams["gpr"].time)
    assert t[0] == T0 - 400_000_000


# ---------------------------------------------------------------- garbage sidecars

GARBAGE = [
    "this is not a cor file\nnor is this line\n",
    b"\x00\x01\x02\xff\xfe binary junk \x00\n\x13\x37",
    "7 2019-07-26 16:58:43 75.6 Q 35.9 W 2663 M 0.8\n",  # hemisphere Q: not one row
]


@pytest.mark.parametrize("junk", GARBAGE)
def test_read_cor_refuses_garbage(tmp_path, junk):
    p = tmp_path / "x.cor"
    p.write_bytes(junk.encode() if isinstance(junk, str) else junk)
    with pytest.raises(VendorFormatError, match=r"x\.cor.*'cor'.*none of its"):
        read_cor(p)


@pytest.mark.parametrize("text", ["", "\n\r\n   \n"])
def test_read_cor_accepts_an_empty_file(tmp_path, text):
    p = tmp_path / "x.cor"
    p.write_text(text)
    g, stats = read_cor(p)
    assert g["trace"].size == 0 and stats == {"rows": 0, "malformed": 0}


def test_read_cor_keeps_the_good_rows_of_a_partial_file(tmp_path):
    p = tmp_path / "x.cor"
    p.write_text(cor_row(1, "10:00:00") + "garbage line\n" + "12\t2021-03-04\t10:0")
    g, stats = read_cor(p)
    assert g["trace"].tolist() == [0] and stats == {"rows": 1, "malformed": 2}


def test_ramac_with_garbage_cor_still_reads_and_imports(tmp_path):
    p = write_ramac(tmp_path, b"\x00garbage\x00\n", time_flag=True)
    with pytest.warns(UserWarning, match=r"l\.cor"):
        r = io.read(p)
    assert r.n_traces == 40 and r.gps is None
    assert "none of its" in r.header["cor"]["error"]
    with pytest.warns(UserWarning):
        import_file(p, tmp_path / "o.h5")
    with Recording(tmp_path / "o.h5") as rec:
        assert "gps" not in rec.streams and len(rec.streams["gpr"]) == 40


@pytest.mark.parametrize("junk", [
    "not a dzg\nat all\n",
    b"\x00\x01\xff\xfe\x00binary\n\x00",
])
def test_read_dzg_refuses_garbage(tmp_path, junk):
    p = tmp_path / "x.DZG"
    p.write_bytes(junk.encode() if isinstance(junk, str) else junk)
    with pytest.raises(VendorFormatError, match=r"x\.DZG.*'DZG'.*none of its"):
        read_dzg(p)


@pytest.mark.parametrize("text", ["", "\r\n\r\n", "$GSSIS,0,-1\r\n$GSSIS,24,-1\r\n"])
def test_read_dzg_accepts_files_without_fixes(tmp_path, text):
    p = tmp_path / "x.DZG"
    p.write_text(text)
    g, stats = read_dzg(p)
    assert g["trace"].size == 0 and stats["sentences"] == 0


def test_dzt_with_garbage_sidecars_still_reads(tmp_path):
    dzt = tmp_path / "t.DZT"
    dzt.symlink_to(DZT32)
    (tmp_path / "t.DZG").write_bytes(b"\x00\xffjunk\n")
    (tmp_path / "t.DZX").write_bytes(b"\x00\x01not xml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = io.read(dzt)
    said = " ".join(str(w.message) for w in caught)
    assert "t.DZG" in said and "t.DZX" in said
    assert r.samples.shape == (345, 2048) and r.gps is None
    assert "none of its" in r.header["dzg"]["error"]
    assert "not a DZX XML file" in r.header["dzx"]["error"]
