"""Recording format v1: round trips, SWMR, crash safety, xarray, bad files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demine.errors import (
    FormatVersionError,
    NotARecordingError,
    RecordingError,
    SchemaError,
)
from demine.recording import (
    FORMAT_VERSION,
    TABLES,
    TIME_UNITS,
    Recording,
    RecordingWriter,
    write_derived,
)

ROOT = Path(__file__).resolve().parents[1]


def _chunks(n: int, cuts: list[int]) -> list[slice]:
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 60),
    n_gates=st.integers(1, 33),
    n_samples=st.integers(1, 70),
    gpr_dtype=st.sampled_from(["int16", "int32", "float32"]),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_any_shape_dtype_and_chunking(tmp_path, n, n_gates, n_samples, gpr_dtype,
                                                 cuts, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "rt.h5"
    path.unlink(missing_ok=True)
    emi_data = rng.standard_normal((n, n_gates)).astype("float32")
    if gpr_dtype == "float32":
        gpr_data = rng.standard_normal((n, n_samples)).astype(gpr_dtype)
    else:
        info = np.iinfo(gpr_dtype)
        gpr_data = rng.integers(info.min, info.max, size=(n, n_samples), endpoint=True,
                                dtype=gpr_dtype)
    t = np.sort(rng.integers(0, 2**62, size=n))
    x = rng.standard_normal(n)
    with RecordingWriter(path) as w:
        emi = w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, n_gates))
        gpr = w.add_stream("gpr", "gpr", n_channels=n_samples, dtype=gpr_dtype)
        for sl in _chunks(n, cuts):
            emi.append(emi_data[sl], time=t[sl], sequence=np.arange(n)[sl], x=x[sl])
            gpr.append(gpr_data[sl], time=t[sl])
    with Recording(path) as r:
        e, g = r.streams["emi"], r.streams["gpr"]
        assert e.samples.dtype == np.float32 and g.samples.dtype == np.dtype(gpr_dtype)
        np.testing.assert_array_equal(e.samples.reshape(n, n_gates), emi_data)
        np.testing.assert_array_equal(g.samples.reshape(n, n_samples), gpr_data)
        np.testing.assert_array_equal(e.time, t)
        np.testing.assert_array_equal(e.sequence, np.arange(n))
        np.testing.assert_array_equal(e.x, x)
        assert np.all(np.isnan(e.y)) and np.all(g.sequence == -1)
        np.testing.assert_allclose(e.gate_times, np.geomspace(1e-5, 1e-3, n_gates))


def test_tables_round_trip_and_string_decoding(tmp_path):
    path = tmp_path / "tables.h5"
    with RecordingWriter(path, site="Site Ω", operator="op", lane_id="L7", notes="n") as w:
        w.add_stream("emi", "emi", n_channels=4)
        w.add_truth([
            {"id": "T1", "type": "PMN", "is_mine": 1, "x": 1.0, "y": 2.0, "depth": 0.05,
             "metal_mass": 1e-3},
            {"id": "C1", "type": "nail", "is_mine": 0, "x": 3.0, "y": 2.5, "depth": 0.02},
        ])
        w.append_alarms({"time": [10, 20], "stream": "emi", "x": [1.01, 5.0],
                         "y": [2.0, 2.0], "score": [9.0, 3.0]})
        w.append_markers([{"time": 15, "x": 1.0, "y": 2.0, "label": "flag ✓"}])
    with Recording(path) as r:
        assert r.attrs["site"] == "Site Ω" and r.attrs["lane_id"] == "L7"
        assert r.format_version == FORMAT_VERSION
        truth = r.truth
        assert list(truth["id"]) == ["T1", "C1"]
        assert list(truth["is_mine"]) == [1, 0]
        assert np.isnan(truth["metal_mass"][1])  # omitted -> NaN, not 0
        alarms = r.alarms
        assert list(alarms["stream"]) == ["emi", "emi"]
        np.testing.assert_array_equal(alarms["score"], [9.0, 3.0])
        assert np.all(np.isnan(alarms["p_mine"]))
        assert list(r.markers["label"]) == ["flag ✓"]


def test_gps_and_marker_streams(tmp_path):
    path = tmp_path / "gps.h5"
    with RecordingWriter(path) as w:
        gps = w.add_stream("gps", "gps", driver="nmea")
        button = w.add_stream("button", "marker", device="trigger on the handle")
        gps.append(time=[1, 2, 3], lon=[10.0, 10.0, np.nan], lat=[45.0, 45.0, np.nan],
                   fix_quality=[4, 4, 0], satellites=[12, 12, 0], hdop=[0.7, 0.7, np.nan])
        button.append(time=[7, 9], code=[1, 2], label=["pressed", "released"])
    with Recording(path) as r:
        g = r.streams["gps"]
        assert list(g["fix_quality"]) == [4, 4, 0]
        assert np.isnan(g["lon"][2])
        with pytest.raises(SchemaError, match="no field 'samples'"):
            g.read(fields=["samples"])
        b = r.streams["button"]
        assert b.kind == "marker" and list(b["code"]) == [1, 2]
        assert list(b["label"]) == [b"pressed", b"released"]


def test_bad_appends_name_the_field(tmp_path):
    w = RecordingWriter(tmp_path / "bad.h5")
    emi = w.add_stream("emi", "emi", n_channels=4)
    gpr = w.add_stream("gpr", "gpr", n_channels=8, dtype="int16")
    with pytest.raises(SchemaError, match=r"'samples' must have shape \(n, 4\)"):
        emi.append(np.zeros((2, 5)), time=[1, 2])
    with pytest.raises(SchemaError, match="'samples' is floating point"):
        gpr.append(np.zeros((1, 8)), time=[1])
    with pytest.raises(SchemaError, match="unknown field"):
        emi.append(np.zeros((1, 4)), time=[1], speed=[3])
    with pytest.raises(SchemaError, match="'time' is required"):
        emi.append(np.zeros((1, 4)), time=None)
    with pytest.raises(SchemaError, match="'x' has 3 rows, expected 2"):
        emi.append(np.zeros((2, 4)), time=[1, 2], x=[1, 2, 3])
    with pytest.raises(SchemaError, match="longer than 32 bytes"):
        w.add_truth([{"id": "x" * 40}])
    emi.append(np.ones((2, 4)), time=[1, 2])  # nothing above was half-written
    with pytest.raises(RecordingError, match="after recording started"):
        w.add_stream("late", "emi", n_channels=4)
    w.close()
    with Recording(tmp_path / "bad.h5") as r:
        assert len(r.streams["emi"]) == 2 and len(r.streams["gpr"]) == 0
        assert len(r.table("truth")) == 0


def test_gate_times_without_the_flag_follow_the_gate_units(tmp_path):
    """A file written by another tool may leave ``gate_times_known`` out; the
    ``gate`` dimension scale's unit then says whether it holds times (s) or
    indices ("1"), as the format describes it."""
    gates = np.geomspace(1e-5, 1e-3, 4)
    for name, times in (("times.h5", gates), ("index.h5", None)):
        with RecordingWriter(tmp_path / name) as w:
            w.add_stream("emi", "emi", n_channels=4, gate_times=times)
        with Recording(tmp_path / name) as r:
            want = r.streams["emi"].gate_times
        with h5py.File(tmp_path / name, "r+") as f:
            del f["streams/emi"].attrs["gate_times_known"]
        with Recording(tmp_path / name) as r:
            got = r.streams["emi"].gate_times
        if times is None:
            assert want is None and got is None
        else:
            np.testing.assert_array_equal(got, gates)
            np.testing.assert_array_equal(want, gates)


def test_a_file_made_with_h5py_alone_is_read_and_takes_alarms(tmp_path):
    """Another tool writing the format with plain h5py may give only what a
    reader needs (root attributes and a stream) and no tables: the missing
    tables read as empty, and the first alarms written create the table."""
    from demine.pipeline import append_alarms

    path = tmp_path / "plain.h5"
    n = 50
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "demine-recording"
        f.attrs["format_version"] = 1
        g = f.create_group("streams/emi")
        g.attrs["kind"] = "emi"
        g.create_dataset("time", data=np.arange(n, dtype=np.int64) * 1_000_000)
        g.create_dataset("samples", data=np.ones((n, 3), dtype=np.float32))
        g.create_dataset("x", data=np.linspace(0.0, 1.0, n))
        g.create_dataset("gate", data=[1e-5, 1e-4, 1e-3]).attrs["units"] = "s"
    with Recording(path) as r:
        assert len(r.streams["emi"]) == n
        np.testing.assert_array_equal(r.streams["emi"].gate_times, [1e-5, 1e-4, 1e-3])
        # (every column of the schema, empty: readers find x, y ... in them)
        for name, table in (("truth", r.truth), ("alarms", r.alarms), ("markers", r.markers)):
            assert set(table) == {c.name for c in TABLES[name]}, name
            assert all(len(v) == 0 for v in table.values()), name
        assert r.truth["id"].dtype == object and r.alarms["score"].dtype == np.float64
        assert len(r.table("alarms")) == 0
        r.refresh()
    assert append_alarms(path, {"time": np.array([7]), "x": np.array([0.5]),
                                "y": np.array([0.0]), "score": np.array([9.0])}) == 1
    with Recording(path) as r:
        al = r.alarms
        assert al["time"].tolist() == [7] and al["score"].tolist() == [9.0]
        assert np.isnan(al["depth"][0])


@pytest.mark.parametrize("fault,match", [
    ("float-time", "'time' is float64, not integer nanoseconds"),
    ("short-gate", "'gate' has shape \\(2,\\), not one value for each of the 3 channels"),
])
def test_a_file_made_elsewhere_with_a_wrong_column_is_refused_clearly(tmp_path, fault, match):
    """Times in float seconds (or any non-integer type) or a gate scale that does
    not match the samples are refused when the file is opened, naming the
    column, instead of detection running on nonsense or failing deep inside a
    processing stage."""
    path = tmp_path / "made.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "demine-recording"
        f.attrs["format_version"] = 1
        g = f.create_group("streams/emi")
        g.attrs["kind"] = "emi"
        t = np.arange(10, dtype=np.int64) * 1_000_000
        g.create_dataset("time", data=t / 1e9 if fault == "float-time" else t)
        g.create_dataset("samples", data=np.ones((10, 3), dtype=np.float32))
        gates = [1e-5, 1e-4] if fault == "short-gate" else [1e-5, 1e-4, 1e-3]
        g.create_dataset("gate", data=gates).attrs["units"] = "s"
    with pytest.raises(SchemaError, match=match):
        Recording(path)


def test_bad_stream_declarations(tmp_path):
    with RecordingWriter(tmp_path / "decl.h5") as w:
        with pytest.raises(SchemaError, match="kind 'sonar'"):
            w.add_stream("s", "sonar", n_channels=4)
        with pytest.raises(SchemaError, match="scale_factor"):
            w.add_stream("s", "emi", n_channels=4, attrs={"scale_factor": 2.0})
        with pytest.raises(SchemaError, match="int16, int32 or float32"):
            w.add_stream("s", "gpr", n_channels=4, dtype="float64")
        with pytest.raises(SchemaError, match="3 gate_times for 4 gates"):
            w.add_stream("s", "emi", n_channels=4, gate_times=[1e-5, 2e-5, 3e-5])
        with pytest.raises(SchemaError, match="must be letters"):
            w.add_stream("a/b", "emi", n_channels=4)
    with pytest.raises(RecordingError, match="file exists"):
        RecordingWriter(tmp_path / "decl.h5")
    with pytest.raises(SchemaError, match="scale_factor"):
        RecordingWriter(tmp_path / "x.h5", attrs={"scale_factor": 1})


def test_no_attribute_that_generic_readers_apply(tmp_path):
    path = Path(ROOT / "examples" / "write_recording.py")
    out = tmp_path / "ex.h5"
    subprocess.run([sys.executable, str(path), str(out)], check=True, capture_output=True)
    seen = []
    with h5py.File(out, "r") as f:
        f.visititems(lambda name, obj: seen.extend(obj.attrs.keys()))
    assert seen and not {"scale_factor", "add_offset", "_FillValue"} & set(seen)


def test_example_script_has_a_help_and_keeps_an_existing_file(tmp_path):
    """``--help`` is help, not a file name; an existing recording is kept
    unless ``--overwrite`` is given."""
    script = str(ROOT / "examples" / "write_recording.py")
    r = subprocess.run([sys.executable, script, "--help"], cwd=tmp_path, capture_output=True,
                       text=True, check=True)
    assert "--overwrite" in r.stdout and list(tmp_path.iterdir()) == []
    out = tmp_path / "ex.h5"
    subprocess.run([sys.executable, script, str(out)], check=True, capture_output=True)
    before = out.read_bytes()
    r = subprocess.run([sys.executable, script, str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr and out.read_bytes() == before
    subprocess.run([sys.executable, script, str(out), "--overwrite"], check=True,
                   capture_output=True)


def test_opens_in_xarray_via_h5netcdf(tmp_path):
    xr = pytest.importorskip("xarray")
    out = tmp_path / "ex.h5"
    subprocess.run([sys.executable, str(ROOT / "examples" / "write_recording.py"), str(out)],
                   check=True, capture_output=True)
    ds = xr.open_dataset(out, engine="h5netcdf", group="streams/emi")
    assert ds["samples"].dims == ("time", "gate")
    assert ds["samples"].shape == (2000, 16)
    assert np.issubdtype(ds["time"].dtype, np.datetime64)  # CF time units decoded
    np.testing.assert_allclose(ds["gate"].values, np.geomspace(10e-6, 1e-3, 16))
    gpr = xr.open_dataset(out, engine="h5netcdf", group="streams/gpr")
    assert gpr["samples"].dtype == np.int16 and gpr["samples"].dims == ("time", "sample")
    truth = xr.open_dataset(out, engine="h5netcdf", group="truth")
    assert truth.sizes["index"] == 1
    with Recording(out) as r:
        mem = r.streams["emi"].to_xarray()
        np.testing.assert_array_equal(mem["samples"].values, ds["samples"].values)
        assert mem["time"].values[0] == ds["time"].values[0]


def test_time_attribute_is_cf_units(tmp_path):
    with RecordingWriter(tmp_path / "t.h5") as w:
        w.add_stream("emi", "emi", n_channels=1).append([[1.0]], time=[5])
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert f["streams/emi/time"].attrs["units"] == TIME_UNITS


def test_derived_data_keeps_raw_and_history(tmp_path):
    path = tmp_path / "d.h5"
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", n_channels=3).append(np.ones((4, 3)), time=np.arange(4))
    hist = [{"step": "baseline", "params": {"alpha": 0.01}}]
    where = write_derived(path, "emi", "statistic", np.arange(4.0), history=hist)
    assert where == "/derived/emi/statistic"
    with Recording(path) as r:
        np.testing.assert_array_equal(r.streams["emi"].samples, np.ones((4, 3)))
        g = r.derived()["emi/statistic"]
        assert json.loads(g.attrs["history"]) == hist
        np.testing.assert_array_equal(g["data"][()], np.arange(4.0))
    with pytest.raises(RecordingError, match="exists"):
        write_derived(path, "emi", "statistic", np.arange(4.0), history=hist)
    with pytest.raises(SchemaError, match="expected 4 rows"):
        write_derived(path, "emi", "other", np.arange(3.0), history=hist)
    with pytest.raises(SchemaError, match="no stream 'gpr'"):
        write_derived(path, "gpr", "other", np.arange(4.0), history=hist)


# --------------------------------------------------------------------- bad files


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        Recording(tmp_path / "missing.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(NotARecordingError, match="not an HDF5 file"):
        Recording(garbage)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(NotARecordingError, match="no 'format' attribute"):
        Recording(plain)
    future = tmp_path / "future.h5"
    with RecordingWriter(future):
        pass
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(FormatVersionError, match="newer"):
        Recording(future)
    with pytest.raises(RecordingError, match="is a directory"):
        Recording(tmp_path)
    truncated = tmp_path / "truncated.h5"
    subprocess.run([sys.executable, str(ROOT / "examples" / "write_recording.py"),
                    str(truncated)], check=True, capture_output=True)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordingError):
        with Recording(truncated) as r:
            r.streams["gpr"].samples  # noqa: B018


def test_negative_read_bounds_count_from_the_last_complete_row(tmp_path):
    path = tmp_path / "uneven.h5"
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", n_channels=2, dtype="float32")
        s.append(np.arange(20, dtype=np.float32).reshape(10, 2),
                 time=np.arange(10, dtype=np.int64), x=np.arange(10.0))
    with h5py.File(path, "r+") as f:  # a column one row ahead, as mid-flush
        f["streams/emi/x"].resize((11,))
        f["streams/emi/x"][10] = 99.0
    with Recording(path) as r:
        st = r.streams["emi"]
        assert len(st) == 10
        tail = st.read(start=-3)
        np.testing.assert_array_equal(tail["time"], [7, 8, 9])
        np.testing.assert_array_equal(tail["x"], [7.0, 8.0, 9.0])
        mid = st.read(start=-5, stop=-2)
        np.testing.assert_array_equal(mid["x"], [5.0, 6.0, 7.0])
        np.testing.assert_array_equal(mid["samples"][:, 0], [10, 12, 14])


def test_damaged_metadata_block_is_an_error_not_a_hang(tmp_path):
    """A bit flip in an object header: HDF5's SWMR reader retries a block whose
    checksum fails with doubling sleeps, and with its default of 100 attempts it
    never returned; the reader caps the attempts and names the file."""
    from demine.recording import _hdf5_read_attempts_setter

    if _hdf5_read_attempts_setter() is None:
        pytest.skip("H5Pset_metadata_read_attempts not reachable in this libhdf5 build")
    path = tmp_path / "flipped.h5"
    subprocess.run([sys.executable, str(ROOT / "examples" / "write_recording.py"), str(path)],
                   check=True, capture_output=True)
    data = bytearray(path.read_bytes())
    headers = [i for i in range(len(data)) if data[i:i + 4] == b"OHDR"]
    assert len(headers) > 3
    for i in headers[1:]:  # every object header but the root group's
        data[i + 6] ^= 0x40
    path.write_bytes(bytes(data))
    script = textwrap.dedent(f"""
        from demine.recording import Recording
        r = Recording({str(path)!r})
        for s in r.streams.values():
            s.read()
        r.truth
    """)
    # a generous guard: the capped retries take about a second per damaged block
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("demine.errors.RecordingError") and str(path) in last, last
    cli = subprocess.run([sys.executable, "-m", "demine", "info", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert str(path) in cli.stderr


@pytest.mark.parametrize("kind", ["missing", "garbage", "plain", "empty"])
def test_cli_info_bad_file_one_line_exit_2(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    if kind == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif kind == "plain":
        with h5py.File(path, "w") as f:
            f["x"] = [1]
    elif kind == "empty":
        path.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "demine", "info", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(path) in lines[0] and lines[0].startswith("demine info: error:")


def test_cli_info_on_example_recording(tmp_path):
    out = tmp_path / "example.h5"
    subprocess.run([sys.executable, str(ROOT / "examples" / "write_recording.py"), str(out)],
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "demine", "info", str(out)],
                          capture_output=True, text=True, check=True)
    assert "emi" in proc.stdout and "2000 frames" in proc.stdout
    assert "gpr" in proc.stdout and "800 frames" in proc.stdout and "400.0 Hz" in proc.stdout
    assert "truth targets: 1" in proc.stdout and "markers: 1" in proc.stdout
    js = subprocess.run([sys.executable, "-m", "demine", "info", "--json", str(out)],
                        capture_output=True, text=True, check=True)
    summary = json.loads(js.stdout)
    assert summary["streams"]["emi"]["frames"] == 2000
    assert summary["streams"]["emi"]["extent"]["x"] == [0.0, 2.0]


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "demine", "--version"], capture_output=True,
                          text=True, check=True)
    import demine

    assert proc.stdout.strip() == f"demine {demine.__version__}"


# --------------------------------------------------------------------- live files

_WRITER = textwrap.dedent(
    """
    import select, sys, time
    import numpy as np
    from demine.recording import RecordingWriter
    path, interval, pace = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    w = RecordingWriter(path, flush_interval=interval)
    s = w.add_stream("emi", "emi", n_channels=16)
    seen = -1
    i = 0
    while True:
        seq = np.arange(i, i + 10)
        # sample values are a function of the sequence number, so a reader can
        # check every frame it sees is intact
        s.append(seq[:, None] * np.ones((10, 16), "float32"), time=seq * 1000, sequence=seq)
        i += 10
        # (both under the writer's lock: its flush thread may flush between two
        # plain reads, and frames not yet in the file would be printed)
        with w._lock:
            count, written = w.flush_count, s._appender.n_written
        if count != seen:
            seen = count
            print(written, flush=True)
        if i >= int(sys.argv[4]) or select.select([sys.stdin], [], [], 0)[0]:
            break  # (stdin closed: stop)
        time.sleep(pace)
    w.close()
    print("closed", s.n_frames, flush=True)
    """
)


def _start_writer(path, interval, pace, total):
    """The writer stops after ``total`` frames or when its stdin is closed."""
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(interval), str(pace), str(total)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def _check_intact(stream, at_least: int) -> int:
    n = len(stream)
    assert n >= at_least
    seq = stream.sequence
    np.testing.assert_array_equal(seq, np.arange(n))
    np.testing.assert_array_equal(stream.samples, seq[:, None] * np.ones((n, 16), "float32"))
    return n


def test_swmr_reader_in_another_process_sees_frames_grow(tmp_path):
    """The writer goes on until the reader is done (however late the reader
    process starts), and the reader reads until it has seen three lengths."""
    path = tmp_path / "live.h5"
    proc = _start_writer(path, 0.05, 0.01, 10**9)
    try:
        first = proc.stdout.readline()  # the file exists and has had a flush
        assert first.strip().isdigit()
        reader = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(
                f"""
                import time
                from demine.recording import Recording
                r = Recording({str(path)!r})
                counts = []
                end = time.monotonic() + 60
                while len(set(counts)) < 3 and time.monotonic() < end:
                    r.refresh()
                    counts.append(len(r.streams["emi"]))
                    time.sleep(0.02)
                print(*counts)
                """)],
            capture_output=True, text=True, timeout=120,
        )
        assert reader.returncode == 0, reader.stderr
        counts = [int(c) for c in reader.stdout.split()]
        assert counts == sorted(counts) and len(set(counts)) >= 3  # it saw the file grow
    finally:
        out, _ = proc.communicate(timeout=60)  # (closes stdin: the writer stops)
    closed = [ln for ln in out.splitlines() if ln.startswith("closed ")]
    assert len(closed) == 1, out
    total = int(closed[0].split()[1])
    assert total >= max(counts) and total % 10 == 0
    with Recording(path) as r:
        assert _check_intact(r.streams["emi"], total) == total


def test_sigkill_at_random_moments_keeps_everything_flushed(tmp_path):
    rng = random.Random(1234)
    for trial in range(20):
        path = tmp_path / f"kill{trial}.h5"
        proc = _start_writer(path, 0.02, 0.002, 10**9)
        flushed = 0
        lines_to_wait = rng.randint(1, 8)
        for _ in range(lines_to_wait):
            line = proc.stdout.readline()
            flushed = int(line)
        time.sleep(rng.uniform(0.0, 0.05))  # die anywhere, also mid-flush
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        rest = proc.stdout.read()
        for line in rest.split():
            flushed = max(flushed, int(line))
        with Recording(path) as r:
            n = _check_intact(r.streams["emi"], flushed)
            assert n >= flushed


def test_extra_device_fields(tmp_path):
    path = tmp_path / "extra.h5"
    with RecordingWriter(path) as w:
        g = w.add_stream("gpr", "gpr", n_channels=4, dtype="int16",
                         fields={"encoder": "int32", "status": "uint16"})
        with pytest.raises(SchemaError, match="clashes"):
            w.add_stream("gpr2", "gpr", n_channels=4, fields={"time": "int64"})
        g.append(np.zeros((2, 4), "int16"), time=[1, 2], encoder=[10, 11])
    with Recording(path) as r:
        s = r.streams["gpr"]
        assert list(s["encoder"]) == [10, 11] and list(s["status"]) == [0, 0]
        assert s["status"].dtype == np.uint16


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
       flush_after=st.integers(0, 6), start=st.integers(0, 40), n=st.integers(1, 40))
def test_update_patches_written_and_buffered_rows(tmp_path, sizes, flush_after, start, n):
    """Positions filled in later (the recorder's case) land in the right rows
    whether those rows are already in the file or still buffered."""
    path = tmp_path / "upd.h5"
    total = sum(sizes)
    start = start % total
    n = min(n, total - start)
    expect = np.full(total, np.nan)
    with RecordingWriter(path, flush_interval=60, overwrite=True) as w:
        s = w.add_stream("emi", "emi", n_channels=2)
        row = 0
        for i, k in enumerate(sizes):
            s.append(np.zeros((k, 2), "float32"), time=np.arange(row, row + k))
            row += k
            if i + 1 == flush_after:
                w.flush()
        new = np.arange(start, start + n, dtype=float) * 10.0
        s.update(start, x=new, y=-new)
        expect[start:start + n] = new
        with pytest.raises(SchemaError, match="not all appended"):
            s.update(total - 1, x=[1.0, 2.0])
        with pytest.raises(SchemaError, match="never rewritten"):
            s.update(0, samples=np.zeros((1, 2), "float32"))
    with Recording(path) as r:
        np.testing.assert_array_equal(r.streams["emi"].x, expect)
        np.testing.assert_array_equal(r.streams["emi"].y, -expect)
        np.testing.assert_array_equal(r.streams["emi"].time, np.arange(total))


def test_info_and_export_take_text_attributes_written_as_arrays(tmp_path, capsys):
    """A file whose site was written by another tool as an array of strings
    made `demine info` end in a traceback (the truth value of an array), and
    `demine export` wrote NumPy's text of the array; a paused stream's rate was
    its frames over its whole span (77 Hz for a 1000/s detector paused 60 s)."""
    import h5py

    from demine.cli import main
    from demine.recording import Recording, RecordingWriter, attr_text

    p = tmp_path / "arr.h5"
    with RecordingWriter(p) as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5], attrs={"sample_rate": 1000.0})
        g = w.add_stream("g2", "emi", gate_times=[1e-5, 2e-5])
        t = np.arange(2000) * 1_000_000
        t[1000:] += 60_000_000_000   # (paused a minute)
        s.append(np.zeros((2000, 2), np.float32), time=t, x=np.zeros(2000), y=np.zeros(2000))
        g.append(np.zeros((50, 2), np.float32), time=t[:50] * 2)
        w.append_alarms({"time": [5], "stream": ["emi"], "x": [0.0], "y": [0.0],
                         "score": [9.0]})
    with h5py.File(p, "a") as f:
        f.attrs["site"] = np.array([b"Site A", b"Lane 2"])
        f.attrs["notes"] = np.array(["one", "two"], dtype=h5py.string_dtype())
    assert attr_text(np.array([b"Site A", b"Lane 2"])) == "Site A; Lane 2"
    assert attr_text(None) == "" and attr_text(b"x") == "x" and attr_text(3) == "3"
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "site 'Site A; Lane 2'" in out and "notes: one; two" in out
    assert "1000.0 Hz" in out and "500.0 Hz" in out   # (stated; the median step of g2)
    with Recording(p) as r:
        assert r.summary()["streams"]["emi"]["rate_hz"] == 1000.0
    csv_out = tmp_path / "a.csv"
    assert main(["export", str(p), "-o", str(csv_out), "--local"]) == 0
    assert "Site A; Lane 2" in csv_out.read_text() and "[b'" not in csv_out.read_text()
