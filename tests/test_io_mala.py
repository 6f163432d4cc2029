"""Golden tests of the MALÅ RAMAC reader (.rad + .rd3/.rd7 + .cor)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from demine import io
from demine.errors import VendorFormatError

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEN = ROOT / "gpr" / "impdar-test-data" / "ten_col.rd3"
IWA = ROOT / "landmine" / "iwagpr2017-rd3-subset"


def test_ten_col_samples_and_timing():
    r = io.read(TEN)
    assert r.vendor == "mala"
    # README: 512 samples x 10 traces int16 = 10240 bytes, no trace headers
    assert r.samples.shape == (10, 512) and r.samples.dtype == np.int16
    # FREQUENCY is the sampling frequency in MHz: dt = 1 / 2426.187744 MHz
    assert r.sample_interval_s == pytest.approx(1 / 2426.187744e6, rel=1e-12)
    # TIME FLAG 1, TIME INTERVAL 0.1 s between traces
    assert r.trace_interval_s == pytest.approx(0.1)
    raw = TEN.read_bytes()
    for k, j in [(0, 0), (3, 17), (9, 511)]:  # trace-major: trace k starts at k*512*2
        assert r.samples[k, j] == struct.unpack_from("<h", raw, (k * 512 + j) * 2)[0]
    assert r.antenna == "500_shielded_egrip" and r.frequency_hz == 500e6
    assert r.header["STACKS"] == "4"


def test_ten_col_timewindow_disagreement_is_said():
    # TIMEWINDOW:422.061312 is SAMPLES / FREQUENCY for 1024 samples, not the 512
    # the file holds; FREQUENCY times the samples (the traces' spectrum peaks
    # near the 500 MHz antenna's frequency that way, at half of it the other)
    with pytest.warns(UserWarning, match=r"ten_col\.rad: TIMEWINDOW says 422\.061 ns, but "
                      r"SAMPLES / FREQUENCY give 211\.031 ns .*ratio 2\)"):
        r = io.read(TEN)
    assert r.sample_interval_s == pytest.approx(1 / 2426.187744e6, rel=1e-12)
    d = r.samples.astype(float)
    power = (np.abs(np.fft.rfft(d - d.mean(axis=1, keepdims=True), axis=1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(r.n_samples, r.sample_interval_s)
    assert 400e6 < f[5 + np.argmax(power[5:])] < 600e6


def test_consistent_timewindow_is_not_warned_about():
    rad = sorted(IWA.glob("*.rad"))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = io.read(rad)
    assert r.n_samples * r.sample_interval_s == pytest.approx(
        float(r.header["TIMEWINDOW"]) * 1e-9, rel=1e-3)


def test_ten_col_cor_gps():
    r = io.read(TEN.with_suffix(".rad"))  # the header works as the entry point too
    g = r.gps
    # .cor rows: "7 2019-07-26 16:58:43 75.63203 N 35.98767333 W 2663.650 M 0.8" ...
    # trace numbers are 1-based in RAMAC files (LAST TRACE:10 is the 10th trace).
    assert g["trace"].tolist() == [6, 17, 26]
    assert g["lat"][0] == pytest.approx(75.63203)
    assert g["lon"][0] == pytest.approx(-35.98767333333)  # W is negative
    assert g["alt"][0] == pytest.approx(2663.65)
    import datetime as dt

    t = dt.datetime(2019, 7, 26, 16, 58, 43, tzinfo=dt.UTC)
    assert g["time_ns"][0] == int(t.timestamp()) * 10**9
    # the sidecar refers to traces beyond the 10 kept (file trimmed upstream): kept as is
    assert r.n_traces == 10


@pytest.mark.parametrize("name", [f"buried_objects_{d}_bscan_{k}" for d in ("xdir", "ydir")
                                  for k in (1, 10, 19, 28, 37)])
def test_iwagpr_landmine_bscans(name):
    r = io.read(IWA / f"{name}.rd3")
    # README: 2078 samples x 91 traces, FREQUENCY 259627.88 MHz -> dt 3.852 ps
    # (Instructions Table 1), 8 ns window.
    assert r.samples.shape == (91, 2078)
    assert r.sample_interval_s == pytest.approx(3.8517e-12, rel=1e-4)
    assert r.n_samples * r.sample_interval_s == pytest.approx(8.0037627856e-9, rel=1e-9)
    # WHY trace-major is right: the direct wave is the strongest arrival and reaches
    # the receiver at nearly the same time in every trace (~1.3-2 ns); a sample-major
    # reading would scatter it.
    peak = np.abs(r.samples.astype(np.int32)).argmax(axis=1)
    assert np.median(peak) * r.sample_interval_s == pytest.approx(1.35e-9, abs=0.15e-9)
    assert np.percentile(peak, 75) - np.percentile(peak, 25) < 20
    # README: the direct wave saturates the 16-bit range
    assert max(int(r.samples.max()), -int(r.samples.min())) >= 32646


def write_rad(path: Path, **fields: object) -> None:
    path.write_text("".join(f"{k}:{v}\r\n" for k, v in fields.items()))


def test_rd7_int32(tmp_path):
    d = (np.arange(6 * 40, dtype=np.int64).reshape(6, 40) * 100_003 - 9_000_000).astype("<i4")
    (tmp_path / "l.rd7").write_bytes(d.tobytes())
    write_rad(tmp_path / "l.rad", SAMPLES=40, FREQUENCY=1000.0, **{"LAST TRACE": 6})
    r = io.read(tmp_path / "l.rd7")
    assert r.samples.dtype == np.int32 and np.array_equal(r.samples, d)
    assert r.sample_interval_s == pytest.approx(1e-9)


@pytest.mark.parametrize(
    ("fields", "size", "field"),
    [
        ({"FREQUENCY": 1000}, 160, "SAMPLES"),
        ({"SAMPLES": 40}, 160, "FREQUENCY"),
        ({"SAMPLES": "4x0", "FREQUENCY": 1000}, 160, "SAMPLES"),
        ({"SAMPLES": 40, "FREQUENCY": "nan"}, 160, "FREQUENCY"),
        ({"SAMPLES": 40, "FREQUENCY": -5}, 160, "FREQUENCY"),
        ({"SAMPLES": 40, "FREQUENCY": 1000, "LAST TRACE": 99999999}, 160, "LAST TRACE"),
        ({"SAMPLES": 10**9, "FREQUENCY": 1000}, 160, "SAMPLES"),
        ({"SAMPLES": 40, "FREQUENCY": 1000}, 161, "payload"),
    ],
)
def test_bad_headers_name_the_field(tmp_path, fields, size, field):
    (tmp_path / "b.rd3").write_bytes(bytes(size))
    write_rad(tmp_path / "b.rad", **fields)
    with pytest.raises(VendorFormatError, match=f"'{field}'"):
        io.read(tmp_path / "b.rd3")


def test_truncated_rd3_of_real_file(tmp_path):
    (tmp_path / "t.rad").write_bytes(TEN.with_suffix(".rad").read_bytes())
    (tmp_path / "t.rd3").write_bytes(TEN.read_bytes()[:5000])  # 4.88 of 10 traces
    with pytest.raises(VendorFormatError, match="t.rd3.*LAST TRACE.*truncated"):
        io.read(tmp_path / "t.rd3")
    r = io.read(tmp_path / "t.rd3", allow_partial=True)
    assert r.n_traces == 4 and np.array_equal(r.samples, io.read(TEN).samples[:4])


def test_extra_bytes_are_not_called_truncated(tmp_path):
    """Six bytes after the last whole trace: the message says so (every trace
    the header announces is there)."""
    (tmp_path / "t.rad").write_bytes(TEN.with_suffix(".rad").read_bytes())
    (tmp_path / "t.rd3").write_bytes(TEN.read_bytes() + bytes(6))
    with pytest.raises(VendorFormatError, match="and 6 bytes more.*extra bytes") as exc:
        io.read(tmp_path / "t.rd3")
    assert "truncated" not in str(exc.value)
    r = io.read(tmp_path / "t.rd3", allow_partial=True)
    assert np.array_equal(r.samples, io.read(TEN).samples)


def test_missing_header(tmp_path):
    (tmp_path / "x.rd3").write_bytes(bytes(100))
    with pytest.raises(VendorFormatError, match="rad"):
        io.read(tmp_path / "x.rd3")


def test_channel_beyond_single_channel_formats(tmp_path):
    assert io.read(TEN, channel=0).n_traces == 10
    with pytest.raises(VendorFormatError, match="'channel'"):
        io.read(TEN, channel=1)


def test_a_samples_field_that_cuts_every_trace_is_refused(tmp_path):
    """From the session-28 radar audit: a .rad saying SAMPLES 256 over traces of
    512 (LAST TRACE 10, a file of 10 traces) was read as 20 traces of 256, each
    real one cut in two, with exit 0.  More traces than LAST TRACE, not an exact
    multiple, are read and warned about."""
    d = np.arange(10 * 512, dtype=np.int16).reshape(10, 512)
    (tmp_path / "l.rd3").write_bytes(d.astype("<i2").tobytes())
    write_rad(tmp_path / "l.rad", SAMPLES=256, FREQUENCY=1000.0, **{"LAST TRACE": 10})
    with pytest.raises(VendorFormatError, match=r"l.rad.*SAMPLES.*exactly 2 times the 10 "
                                                r"traces.*is SAMPLES 512\?"):
        io.read(tmp_path / "l.rd3")
    write_rad(tmp_path / "l.rad", SAMPLES=512, FREQUENCY=1000.0, **{"LAST TRACE": 7})
    with pytest.warns(UserWarning, match="LAST TRACE says 7 traces, .*l.rd3 holds 10: all "
                                         "are read"):
        r = io.read(tmp_path / "l.rd3")
    assert np.array_equal(r.samples, d) and r.header["extra_traces"] == 3


@pytest.mark.parametrize("last", [0, 1])
def test_a_last_trace_of_zero_or_one_is_read(tmp_path, last):
    # (from review: 0 raised ZeroDivisionError; any file is a multiple of 1)
    d = np.arange(4 * 64, dtype=np.int16).reshape(4, 64)
    (tmp_path / "l.rd3").write_bytes(d.astype("<i2").tobytes())
    write_rad(tmp_path / "l.rad", SAMPLES=64, FREQUENCY=1000.0, **{"LAST TRACE": last})
    with pytest.warns(UserWarning, match=f"LAST TRACE says {last} traces"):
        assert np.array_equal(io.read(tmp_path / "l.rd3").samples, d)
