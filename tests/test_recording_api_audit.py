"""From an outside audit of the Python API (session 28), as a lab script uses it:
the writer keeps what was appended, whatever the script does with its arrays
afterwards, and a refused call leaves the file as it was."""

from __future__ import annotations

import numpy as np
import pytest

from demine.recording import Recording, RecordingWriter

GATES = [1e-5, 3e-5, 1e-4, 3e-4]


@pytest.mark.parametrize("flush_interval", [60.0, 0.001])
def test_a_reused_acquisition_buffer_is_recorded_block_by_block(tmp_path, flush_interval):
    # A DAQ loop fills one buffer in place and appends it; the writer had kept
    # a reference until its flush, so every buffered block became the last.
    path = tmp_path / "r.h5"
    buf = np.empty((10, 4), dtype="float32")
    tbuf = np.empty(10, dtype="int64")
    xbuf = np.empty(10, dtype="float64")
    with RecordingWriter(path, flush_interval=flush_interval) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        for k in range(5):
            buf[:] = k
            tbuf[:] = np.arange(10) + 10 * k
            xbuf[:] = k
            s.append(buf, time=tbuf, x=xbuf)
    with Recording(path) as rec:
        e = rec.streams["emi"]
        np.testing.assert_array_equal(e.samples[::10, 0], np.arange(5))
        np.testing.assert_array_equal(e.time, np.arange(50))
        np.testing.assert_array_equal(e.x[::10], np.arange(5))


def test_update_of_buffered_rows_leaves_the_callers_arrays_alone(tmp_path):
    path = tmp_path / "u.h5"
    x = np.zeros(4)
    ro = np.broadcast_to(np.float64(0.0), (4,))   # read-only, as np.load(mmap_mode="r")
    with RecordingWriter(path, flush_interval=60) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        s.append(np.zeros((4, 4), "f4"), time=np.arange(4), x=x, y=ro)
        s.update(2, x=[5.0, 6.0], y=[5.0, 6.0])
    np.testing.assert_array_equal(x, 0.0)
    with Recording(path) as rec:
        np.testing.assert_array_equal(rec.streams["emi"].x, [0, 0, 5, 6])
        np.testing.assert_array_equal(rec.streams["emi"].y, [0, 0, 5, 6])


def test_numpy_values_in_a_calibration_and_a_history_are_stored(tmp_path):
    # they had raised json's TypeError after the stream's group was made,
    # leaving a stream without columns that made the whole file unreadable
    from demine.recording import write_derived

    path = tmp_path / "c.h5"
    gates = np.geomspace(1e-5, 1e-3, 4)
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=gates,
                         calibration={"coil_radius": np.float64(0.12), "gate_times": gates})
        s.append(np.ones((10, 4), "f4"), time=np.arange(10))
    write_derived(path, "emi", "scaled", np.ones((10, 4)),
                  history=[{"step": "scale", "params": {"factor": np.float32(2.0),
                                                        "gates": np.arange(3)}}])
    with Recording(path) as rec:
        assert rec.streams["emi"].calibration["gate_times"] == pytest.approx(gates)
        assert rec.streams["emi"].calibration["coil_radius"] == 0.12
        assert list(rec.derived()) == ["emi/scaled"]


@pytest.mark.parametrize("where", ["file", "stream", "calibration", "derived"])
def test_a_refused_value_leaves_the_file_as_it_was(tmp_path, where):
    from demine.errors import SchemaError
    from demine.recording import write_derived

    path = tmp_path / "r.h5"
    if where == "file":
        with pytest.raises(SchemaError, match=r"attribute 'meta' = \{'a': 1\} cannot be stored"):
            RecordingWriter(path, attrs={"meta": {"a": 1}})
        assert not path.exists()
        return
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        if where in ("stream", "calibration"):
            kw = ({"attrs": {"meta": {"a": 1}}} if where == "stream"
                  else {"calibration": {"when": object()}})
            with pytest.raises(SchemaError, match="stream 'emi2'"):
                w.add_stream("emi2", "emi", gate_times=GATES, **kw)
            w.add_stream("emi2", "emi", gate_times=GATES)   # the name is free
        s.append(np.ones((10, 4), "f4"), time=np.arange(10))
    if where == "derived":
        with pytest.raises(SchemaError, match="history: cannot be stored as JSON"):
            write_derived(path, "emi", "scaled", np.ones((10, 4)),
                          history=[{"step": "scale", "params": {"f": object()}}])
        with pytest.raises(SchemaError, match="attribute 'meta'"):
            write_derived(path, "emi", "scaled", np.ones((10, 4)),
                          history=[{"step": "scale"}], attrs={"meta": {"a": 1}})
    with Recording(path) as rec:   # readable, the good stream whole
        assert len(rec.streams["emi"]) == 10
        assert not rec.derived()


def test_stream_names_fit_the_alarms_table(tmp_path):
    # the alarms table names each alarm's stream in 32 bytes: a longer stream
    # name had its alarms cut to another name (a second append of the same
    # alarms let in, evaluation finding none), or stopped a live recording
    # at its first alarm
    from demine.errors import ConfigError, SchemaError
    from demine.pipeline import append_alarms
    from demine.recorder import DeviceSpec, Recorder

    path = tmp_path / "n.h5"
    with RecordingWriter(path) as w:
        with pytest.raises(SchemaError, match="longer than 32 bytes"):
            w.add_stream("e" * 33, "emi", gate_times=GATES)
        w.add_stream("e" * 32, "emi", gate_times=GATES).append(
            np.ones((10, 4), "f4"), time=np.arange(10))
    with pytest.raises(ConfigError, match="longer than 32 bytes"):
        Recorder(tmp_path / "r.h5", [DeviceSpec("emi-pi", "/dev/null", name="e" * 33)])
    assert not (tmp_path / "r.h5").exists()
    alarm = {"x": np.zeros(1), "y": np.zeros(1), "score": np.ones(1), "time": np.zeros(1, "i8"),
             "stream": np.array(["f" * 33])}
    with pytest.raises(ConfigError, match=r"stream 'f{33}' is longer than the alarms "
                                          r"table's 32 bytes"):
        append_alarms(path, alarm)
    with Recording(path) as rec:
        assert len(rec.alarms["x"]) == 0


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_script_that_ends_without_close_keeps_its_frames(tmp_path, ending):
    # the flush thread is a daemon: a script that ended without close() (or
    # with an uncaught error before it) had left 0 of its 500 frames
    import subprocess
    import sys

    path = tmp_path / "s.h5"
    code = (
        "import numpy as np\n"
        "from demine.recording import RecordingWriter\n"
        f"w = RecordingWriter({str(path)!r}, flush_interval=60)\n"
        "s = w.add_stream('emi', 'emi', gate_times=[1e-5, 2e-5, 4e-5])\n"
        "for k in range(5):\n"
        "    s.append(np.full((100, 3), k, 'f4'), time=np.arange(100) + 100 * k)\n"
        + ("raise SystemExit(3)\n" if ending == "raise" else ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == (3 if ending == "raise" else 0), proc.stderr
    with Recording(path) as rec:
        e = rec.streams["emi"]
        assert len(e) == 500
        np.testing.assert_array_equal(e.samples[::100, 0], np.arange(5))


def test_clear_errors_for_what_a_script_gets_wrong(tmp_path):
    """Each had been a bare Python, NumPy or h5py error (or a silent wrong value)."""
    import pandas as pd  # (installed with xarray, a test dependency)

    from demine import emi
    from demine.errors import ConfigError, RecordingError, SchemaError
    from demine.process import process_recording, run_stage
    from demine.simulate import load_scene

    path = tmp_path / "m.h5"
    with RecordingWriter(path) as w:
        with pytest.raises(SchemaError, match="sample_interval must be a finite number"):
            w.add_stream("g", "gpr", n_channels=4, sample_interval=float("inf"))
        s = w.add_stream("emi", "emi", gate_times=GATES)
        # a DataFrame's rows (iterating one gives its column names)
        assert w.add_truth(pd.DataFrame({"id": ["T1", "T2"], "x": [1.0, 2.0],
                                         "y": [0.0, 0.5], "is_mine": [1, 0]})) == 2
        s.append(np.ones((10, 4), "f4"), time=np.arange(10))
    rec = Recording(path)
    truth = rec.truth
    assert [str(t) for t in truth["id"]] == ["T1", "T2"] and list(truth["x"]) == [1.0, 2.0]
    stream = rec.streams["emi"]
    rec.close()
    with pytest.raises(RecordingError, match="stream 'emi': the recording is closed"):
        stream.read(0, 3)
    with pytest.raises(RecordingError, match="the recording is closed"):
        rec.summary()
    with pytest.raises(ConfigError, match="'chunk_sizes' must be an integer, got 2.5"):
        run_stage(emi.Baseline(), np.ones((5, 3)), 2.5)
    with pytest.raises(ConfigError, match="'chunk_frames' must be an integer, got 2.5"):
        process_recording(path, "emi_default", tmp_path / "o.h5", chunk_frames=2.5)
    with pytest.raises(ConfigError, match="'layout_seed' must be >= 0, got -1"):
        load_scene("random-minefield", layout_seed=-1)
    with pytest.raises(ConfigError, match="'layout_seed' must be an integer, got 1.5"):
        load_scene("random-minefield", layout_seed=1.5)


def test_a_large_attribute_a_recording_holds_is_not_refused(tmp_path):
    # (the check's scratch file had not been laid out as recordings are: an
    # array of 10 000 values was refused with h5py's bare OSError)
    big = np.arange(10_000, dtype=np.float64)
    with RecordingWriter(tmp_path / "b.h5", attrs={"big": big}) as w:
        w.add_stream("emi", "emi", gate_times=GATES, attrs={"big": big})
    with Recording(tmp_path / "b.h5") as rec:
        np.testing.assert_array_equal(rec.attrs["big"], big)
        np.testing.assert_array_equal(rec.streams["emi"].attrs["big"], big)


def test_a_forked_child_does_not_close_its_parents_writer(tmp_path):
    # (the exit of a child made by os.fork had flushed the parent's buffered
    # frames into the parent's file: two processes writing one recording)
    import subprocess
    import sys

    path = tmp_path / "f.h5"
    code = (
        "import os, sys\n"
        "import numpy as np\n"
        "from demine.recording import RecordingWriter\n"
        f"w = RecordingWriter({str(path)!r}, flush_interval=3600)\n"
        "s = w.add_stream('emi', 'emi', gate_times=[1e-5, 2e-5, 4e-5, 8e-5])\n"
        "s.append(np.ones((10, 4), 'f4'), time=np.arange(10))\n"
        "w.flush()\n"
        "s.append(np.full((5, 4), 2, 'f4'), time=np.arange(10, 15))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "os._exit(0)\n")   # (the parent leaves without closing: what did the child write?)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with Recording(path) as rec:
        assert len(rec.streams["emi"]) == 10


def test_detect_write_refuses_a_long_stream_name_before_detecting(tmp_path, capsys):
    # a file of another tool (or an older demine) may name a stream in more than
    # 32 bytes: detect --write says so before the detection, not after it
    import h5py

    from demine.cli import main
    from demine.simulate import simulate_lane

    path = tmp_path / "l.h5"
    simulate_lane("benign-soil", 3.0, seed=1, streams=("emi", "gps")).write(path)
    long = "emi_left_handheld_detector_unit_01"
    with h5py.File(path, "r+") as f:
        f.move("streams/emi", f"streams/{long}")
    assert main(["detect", str(path), "--write"]) == 2
    err = capsys.readouterr().err
    assert f"stream {long!r} is longer than the alarms table's 32 bytes: its alarms " \
           "cannot be written into the recording (write them to --out CSV" in err
    assert main(["detect", str(path), "-o", str(tmp_path / "a.csv")]) == 0   # (CSV is fine)
