"""Recordings written by another tool with plain h5py, from docs/format.md.

An outside evaluator may write its own simulated lanes straight to the format
instead of through :class:`demine.recording.RecordingWriter`.  An audit that
did so (every natural h5py choice where the specification leaves room) found
files that could not be scored, choices read silently wrong, and tracebacks;
each test here is one of its findings.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from demine.cli import main
from demine.errors import ConfigError, RecordingError, SchemaError
from demine.evaluate import evaluate_recordings
from demine.recording import Recording

T0 = 1_764_579_600 * 10**9  # 2025-12-01 09:00 UTC


def _emi_file(path, *, n=3000, rate=1000.0, times=None, tables=True, gate_units="s",
              known=None):
    """A bare EMI sweep written with h5py alone: 16 gates, one object at
    (0.5, 1.0), positions on a zig-zag; optionally a truth table."""
    gates = np.geomspace(12e-6, 1e-3, 16)
    t = np.linspace(0, 1, n)
    x = 0.5 + 0.45 * np.sin(2 * np.pi * 8 * t)
    y = 2.0 * t
    r2 = (x - 0.5) ** 2 + (y - 1.0) ** 2
    resp = 200.0 * np.exp(-r2 / 0.01)[:, None] * (gates / 1e-4) ** -0.5 * np.exp(-gates / 3e-4)
    rng = np.random.default_rng(0)
    samples = (resp + rng.normal(0, 1.0, (n, gates.size))).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "demine-recording"
        f.attrs["format_version"] = 1
        f.attrs["software"] = "evalsim"
        f.attrs["software_version"] = "2.1"
        g = f.create_group("streams/emi")
        g.attrs["kind"] = "emi"
        if known is not None:
            g.attrs["gate_times_known"] = known
        tt = times if times is not None else T0 + (np.arange(n) * 1e9 / rate).astype(np.int64)
        g.create_dataset("time", data=np.asarray(tt, dtype=np.int64))
        g.create_dataset("samples", data=samples)
        g.create_dataset("x", data=x)
        g.create_dataset("y", data=y)
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "banana": 1.0}[gate_units]
        g.create_dataset("gate", data=gates * scale).attrs["units"] = gate_units
        if tables:
            tr = f.create_group("truth")
            tr.create_dataset("id", data=np.array([b"m1"]))
            tr.create_dataset("type", data=np.array([b"PMN"]))
            tr.create_dataset("is_mine", data=np.array([1], np.int8))
            tr.create_dataset("x", data=[0.5])
            tr.create_dataset("y", data=[1.0])
            tr.create_dataset("depth", data=[5.0]).attrs["units"] = "cm"
    return path


def test_a_file_with_streams_only_is_detected_written_and_scored(tmp_path, capsys):
    """No /alarms and no /truth (the specification allows both): evaluate had
    failed ("alarms: needs columns 'x' and 'y'"), and a --write that found
    nothing left no table, so PD 0 could never be reported."""
    path = _emi_file(tmp_path / "bare.h5", tables=False)
    with Recording(path) as rec:
        assert rec.alarms["x"].size == 0 and rec.truth["x"].size == 0
        assert not rec.truth_given
    r = evaluate_recordings([path])
    assert r.n_targets == 0 and r.n_alarms == 0
    assert any("no ground truth" in n for n in r.notes)
    quiet = _emi_file(tmp_path / "quiet.h5", n=2000, tables=False)
    with h5py.File(quiet, "r+") as f:   # (nothing in it to find)
        f["streams/emi/samples"][...] = np.random.default_rng(1).normal(
            0, 1, f["streams/emi/samples"].shape)
    assert main(["detect", str(quiet), "--write"]) == 0
    assert "0 alarms" in capsys.readouterr().out
    with h5py.File(quiet, "r") as f:
        assert "alarms" in f and "index" in f["alarms"]


def test_a_truth_table_in_cm_or_as_one_compound_dataset_is_read(tmp_path):
    """A truth column whose `units` say cm was read as metres (every target in
    the >= 30 cm band); a truth table written as one compound dataset (as
    pandas writes it) was 'damaged'.  Other datasets are refused clearly."""
    path = _emi_file(tmp_path / "cm.h5")
    with Recording(path) as rec:
        assert rec.truth["depth"].tolist() == [0.05]
        assert rec.truth["type"].tolist() == ["PMN"]
    with h5py.File(path, "r+") as f:
        f["truth/depth"].attrs["units"] = "furlong"
    with Recording(path) as rec, pytest.raises(SchemaError, match="'depth' is in 'furlong'"):
        rec.table("truth").to_dict()
    comp = _emi_file(tmp_path / "compound.h5", tables=False)
    rows = np.array([(b"m1", b"PMN", 1, 0.5, 1.0, 0.05), (b"c1", b"nail", 0, 0.2, 0.3, 0.0)],
                    dtype=[("id", "S8"), ("type", "S8"), ("is_mine", "i1"), ("x", "f8"),
                           ("y", "f8"), ("depth", "f8")])
    with h5py.File(comp, "r+") as f:
        f.create_dataset("truth", data=rows)
    with Recording(comp) as rec:
        assert rec.truth["type"].tolist() == ["PMN", "nail"] and len(rec.table("truth")) == 2
        assert rec.truth_given
    assert evaluate_recordings([comp]).n_targets == 1
    with h5py.File(comp, "r+") as f:
        f.create_dataset("markers", data=np.zeros((3, 2)))
    with Recording(comp) as rec, pytest.raises(SchemaError, match="/markers is a dataset"):
        rec.table("markers").to_dict()


def test_alarms_are_not_appended_to_a_table_that_cannot_take_them(tmp_path, capsys):
    """An /alarms table written contiguously (h5py's default) or without
    demine's columns had crashed `detect --write` with a traceback."""
    path = _emi_file(tmp_path / "theirs.h5")
    with h5py.File(path, "r+") as f:
        a = f.create_group("alarms")
        a.create_dataset("time", data=np.array([T0], np.int64))
        a.create_dataset("x", data=[0.5])
        a.create_dataset("y", data=[1.0])
        a.create_dataset("score", data=[3.0])
        a.create_dataset("stream", data=np.array([b"theirs"]))
    before = path.read_bytes()
    assert main(["detect", str(path), "--write"]) == 2
    err = capsys.readouterr().err
    assert "cannot append alarms to its /alarms table" in err and "--out CSV" in err
    assert path.read_bytes() == before
    with pytest.raises(RecordingError, match="not resizable"):
        from demine.pipeline import append_alarms

        with h5py.File(path, "r+") as f:
            for c in ("index", "depth", "velocity", "p_mine", "label"):
                f["alarms"].create_dataset(c, data=np.zeros(1, "S32" if c == "label"
                                                           else np.float64))
        append_alarms(path, {"time": [T0], "x": [0.1], "y": [0.2], "score": [9.0]})
    # their alarm's stream is not one of the file's: the model scores nothing, and
    # says why (it had said "use --model", with --model given)
    assert main(["evaluate", str(path), "--model", "default"]) == 2
    assert "names an EMI or GPR stream of the recording (emi); these name theirs" \
        in capsys.readouterr().err


@pytest.mark.parametrize(("times", "says"), [
    (np.zeros(3000, np.int64), "all have the time 0"),
    (np.arange(3000, dtype=np.int64), "1e\\+09 frames per second"),
    (T0 + np.arange(3000, dtype=np.int64) * 1000, "1e\\+06 frames per second"),
])
def test_times_that_are_not_ns_are_refused(tmp_path, capsys, times, says):
    """Frame numbers as times had made the EMI chain allocate 238 GiB; times
    all 0 had run detection at a guessed rate, 10 times off."""
    path = _emi_file(tmp_path / "t.h5", times=times)
    with pytest.raises(ConfigError, match=says):
        from demine.pipeline import detect_recording

        detect_recording(path)
    assert main(["detect", str(path)]) == 2
    assert "nanoseconds since 1970" in capsys.readouterr().err


def test_gate_flags_and_units_of_another_tool(tmp_path):
    """`gate_times_known = "false"` (text) had counted as true; gate times in
    ms or us (the scale's units) were refused as unknown, or read as seconds."""
    want = np.geomspace(12e-6, 1e-3, 16)
    for units, known in (("ms", None), ("us", None), ("us", True), ("s", "yes")):
        p = _emi_file(tmp_path / f"{units}-{known}.h5", gate_units=units, known=known)
        with Recording(p) as rec:
            np.testing.assert_allclose(rec.streams["emi"].gate_times, want, rtol=1e-12)
    p = _emi_file(tmp_path / "false.h5", known="false")
    with Recording(p) as rec:
        assert rec.streams["emi"].gate_times is None
    with pytest.raises(SchemaError, match="'gate_times_known' must be true or false"):
        Recording(_emi_file(tmp_path / "maybe.h5", known="maybe"))
    with pytest.raises(SchemaError, match="units 'banana'"):
        Recording(_emi_file(tmp_path / "banana.h5", gate_units="banana", known=True))


def test_a_radar_line_without_y_or_sample_interval(tmp_path, capsys):
    """A radar profile written without `y` had failed ("no field 'y'"), one
    with y NaN gave no alarm and no word, and one without the
    `sample_interval` attribute was refused although its `sample` scale gave
    it."""
    from test_detect_calibration import _gpr_lane

    from demine.pipeline import detect_recording

    lane = _gpr_lane(tmp_path)   # a line along y at x = 0.45
    with h5py.File(lane, "r+") as f:   # the line along x at y = 0
        g = f["streams/gpr"]
        g["x"][...] = g["y"][...]
        g["y"][...] = 0.0
    want = detect_recording(lane)
    assert len(want["x"]) >= 1
    along = tmp_path / "along.h5"
    along.write_bytes(lane.read_bytes())
    with h5py.File(along, "r+") as f:   # the same with y and z left out
        g = f["streams/gpr"]
        del g["y"], g["z"]
        dt = float(g.attrs["sample_interval"])
        del g.attrs["sample_interval"]
        g["sample"][...] = np.arange(g["sample"].shape[0]) * dt * 1e9
        g["sample"].attrs["units"] = "ns"
    with Recording(along) as rec:
        s = rec.streams["gpr"]
        assert s.sample_interval == pytest.approx(dt, rel=1e-9)
        assert np.all(s.y == 0) and np.all(np.isnan(s.z))
    got = detect_recording(along)
    for k in ("x", "y", "depth", "score"):
        np.testing.assert_array_equal(got[k], want[k])
    with h5py.File(along, "r+") as f:
        f["streams/gpr"].create_dataset("y", data=np.full(f["streams/gpr/x"].shape, np.nan))
    notes: list[str] = []
    assert len(detect_recording(along, notes=notes)["x"]) == 0
    assert any("radar trace(s) without a finite x, y position left out" in n for n in notes)
    # none placed: said, so that "0 alarms" does not read like a clean lane's
    assert any("no radar trace has a position: nothing was searched" in n for n in notes)


def test_info_names_the_software_that_wrote_the_file(tmp_path, capsys):
    path = _emi_file(tmp_path / "e.h5")
    assert main(["info", str(path)]) == 0
    assert "by evalsim 2.1" in capsys.readouterr().out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_alarms_are_not_appended_in_metres_to_a_column_in_cm(tmp_path, capsys):
    """(review) Reading converts a foreign table's cm; appending did not, so the
    new alarms read back 100 times too small."""
    from demine.pipeline import append_alarms
    from demine.recording import TABLES, create_columns

    path = _emi_file(tmp_path / "cm.h5")
    with h5py.File(path, "r+") as f:
        create_columns(f.create_group("alarms"), TABLES["alarms"], table=True)
        f["alarms/x"].attrs["units"] = "cm"
    before = path.read_bytes()
    with pytest.raises(RecordingError, match="column 'x' is in 'cm'"):
        append_alarms(path, {"time": [T0], "x": [0.5], "y": [1.0], "score": [9.0]})
    assert path.read_bytes() == before


@pytest.mark.parametrize("value", [1.0, np.array([1]), np.float64(1), "TRUE"])
def test_gate_flags_as_matlab_and_others_write_them(tmp_path, value):
    """(review) MATLAB's h5writeatt writes doubles; a flag of 1.0 or [1] had
    stopped the file opening at all."""
    with Recording(_emi_file(tmp_path / "m.h5", known=value)) as rec:
        assert rec.streams["emi"].gate_times is not None


def test_slow_devices_and_a_live_file_s_first_frames_are_not_refused(tmp_path):
    """(review) Only rates too high betray times not in ns: a stop-and-go
    survey at 0.3 readings/s is real, and a live device without its own clock
    gives its first few frames one host time."""
    from demine.process import _stream_context

    slow = _emi_file(tmp_path / "slow.h5", n=200, rate=0.3)
    with Recording(slow) as rec:
        assert _stream_context(rec.streams["emi"])["sample_rate"] == pytest.approx(0.3)
    few = _emi_file(tmp_path / "few.h5", n=4, times=np.full(4, T0))
    with Recording(few) as rec:
        assert "sample_rate" not in _stream_context(rec.streams["emi"])
    fast = _emi_file(tmp_path / "attr.h5")
    with h5py.File(fast, "r+") as f:
        f["streams/emi"].attrs["sample_rate"] = 2e10
    with Recording(fast) as rec, pytest.raises(ConfigError, match="'sample_rate' attribute "
                                               "gives 2e\\+10 frames per second"):
        _stream_context(rec.streams["emi"])


def _torn(path, rows: int, extra: dict[str, int], emi_rows: tuple[int, ...] = ()):
    """A demine alarms table of ``rows`` whole rows, ``extra`` columns holding more
    (a writer stopped within a flush, or between its columns and its index)."""
    from demine.recording import TABLES, create_columns

    with h5py.File(path, "r+") as f:
        g = f.create_group("alarms")
        create_columns(g, TABLES["alarms"], table=True)
        for c in TABLES["alarms"]:
            n = rows + extra.get(c.name, 0)
            g[c.name].resize(n, axis=0)
            if c.name == "stream":
                g[c.name][...] = [b"emi" if k in emi_rows else b"operator" for k in range(n)]
            elif c.name == "label":
                g[c.name][...] = [b"op-%d" % k for k in range(n)]
            elif c.name == "time":
                g[c.name][...] = T0 + np.arange(n)
            elif c.dtype.kind == "f":
                g[c.name][...] = np.arange(n) + 0.5
        n = rows + extra.get("index", 0)
        g["index"].resize(n, axis=0)
        g["index"][...] = np.arange(n)


@pytest.mark.parametrize(("rows", "extra"), [
    (1, {"index": -1}),                       # columns written, index not yet
    (2, {"time": 1, "stream": 1, "x": 1}),   # a third row begun in some columns
])
@pytest.mark.parametrize("replace", [False, True])
def test_alarms_appended_to_a_torn_table_keep_every_whole_row(tmp_path, rows, extra, replace):
    """A table whose columns and index disagree: appending at the index's length
    had written over an operator's alarm; --replace had mixed two alarms' columns
    and died with an IndexError."""
    from demine.pipeline import append_alarms

    path = _emi_file(tmp_path / "torn.h5")
    _torn(path, rows, extra)
    assert len(Recording(path).alarms["x"]) == rows   # what readers see
    n = append_alarms(path, {"time": [T0 + 99], "stream": ["emi"], "x": [7.0], "y": [8.0],
                             "score": [9.0], "label": ["emi-alarm"]},
                      replace=["emi"] if replace else False)
    assert n == 1
    with Recording(path) as rec:
        a = rec.alarms
        assert [s.decode() if isinstance(s, bytes) else s for s in a["stream"]] == \
            ["operator"] * rows + ["emi"]
        assert a["x"].tolist() == [k + 0.5 for k in range(rows)] + [7.0]
        assert [s.decode() if isinstance(s, bytes) else s for s in a["label"]] == \
            [f"op-{k}" for k in range(rows)] + ["emi-alarm"]
    with h5py.File(path, "r") as f:
        assert {f["alarms"][c].shape[0] for c in f["alarms"]} == {rows + 1}
        assert f["alarms/index"][...].tolist() == list(range(rows + 1))


def test_replace_on_a_torn_table_keeps_the_other_streams_alarms_whole(tmp_path):
    """Rows 0 (operator) and 1 (emi) whole, a third emi row begun in three columns:
    --replace of emi had cut those three columns to one row and died, leaving the
    operator's alarm with the emi alarm's y, label and score."""
    from demine.pipeline import append_alarms

    path = _emi_file(tmp_path / "torn.h5")
    _torn(path, 2, {"time": 1, "stream": 1, "x": 1}, emi_rows=(1, 2))
    append_alarms(path, {"time": [T0 + 99], "stream": ["emi"], "x": [7.0], "y": [8.0],
                         "score": [9.0], "label": ["emi-alarm"]}, replace=["emi"])
    with Recording(path) as rec:
        a = rec.alarms
        assert a["x"].tolist() == [0.5, 7.0] and a["y"].tolist() == [0.5, 8.0]
        assert [s.decode() if isinstance(s, bytes) else s for s in a["label"]] == \
            ["op-0", "emi-alarm"]
        assert a["score"].tolist() == [0.5, 9.0]


def test_alarms_are_not_appended_to_columns_of_another_type(tmp_path):
    """An int32 label had failed halfway (every column but the index one row
    longer, and a retry refused); S4 text had cut 'operator' to 'oper'."""
    from demine.pipeline import append_alarms
    from demine.recording import TABLES, create_columns

    for name, dtype, says in (("label", "int32", "int32"), ("stream", "S4", "text of 4 bytes"),
                              ("time", "float32", "float32")):
        path = _emi_file(tmp_path / f"{name}.h5")
        with h5py.File(path, "r+") as f:
            g = f.create_group("alarms")
            create_columns(g, TABLES["alarms"], table=True)
            del g[name]
            g.create_dataset(name, shape=(0,), maxshape=(None,), chunks=True, dtype=dtype)
        before = path.read_bytes()
        with pytest.raises(RecordingError, match=f"column {name!r} holds {says}, "):
            append_alarms(path, {"time": [T0], "stream": ["emi"], "x": [0.5], "y": [1.0],
                                 "score": [9.0]})
        assert path.read_bytes() == before


@pytest.mark.parametrize(("attr", "value", "says"), [
    ("calibration", json.dumps([0.12]), "calibration attribute is JSON list"),
    ("calibration", json.dumps({"coil_radius": "12 cm"}), "calibration field 'coil_radius' "
     "is '12 cm', not a number"),
    ("footprint_width", "0.3 m", "attribute 'footprint_width' is '0.3 m', not a number"),
    ("sample_rate", "1 kHz", "attribute 'sample_rate' is '1 kHz', not a number"),
])
def test_stream_numbers_another_tool_wrote_as_text_are_named(tmp_path, capsys, attr, value,
                                                              says):
    # (each had raised a bare ValueError or AttributeError in detect or evaluate)
    path = _emi_file(tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:
        f["streams/emi"].attrs[attr] = value
    for cmd in ("detect", "evaluate"):
        assert main([cmd, str(path)]) == 2
        assert says in capsys.readouterr().err


def test_a_damaged_superblock_is_a_recording_error(tmp_path, capsys):
    # (a size-of-offsets byte of 7: h5py raised RuntimeError, a traceback from every command)
    path = _emi_file(tmp_path / "t.h5")
    b = bytearray(path.read_bytes())
    at = 9 if b[8] >= 2 else 13   # (the size-of-offsets byte of superblock v2+ / v0-1)
    assert b[at] == 8
    b[at] = 7
    path.write_bytes(bytes(b))
    with pytest.raises(RecordingError, match="cannot be opened \\(damaged\\?\\)"):
        Recording(path)
    assert main(["info", str(path)]) == 2
    assert "cannot be opened (damaged?)" in capsys.readouterr().err


def test_a_text_attribute_holding_other_bytes_than_utf8_prints(tmp_path, capsys):
    # an attribute typed UTF-8 holding Latin-1 bytes: its surrogate escapes had made
    # `demine info` fail on a UTF-8 terminal (UnicodeEncodeError)
    path = _emi_file(tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:
        f.attrs.create("notes", "Lane prés du café".encode("latin-1"),
                       dtype=h5py.string_dtype("utf-8"))
    with Recording(path) as rec:
        notes = rec.attrs["notes"]
    notes.encode("utf-8")   # (printable: no surrogate escapes left)
    assert notes == "Lane pr\ufffds du caf\ufffd"
    assert main(["info", str(path)]) == 0
    assert "Lane pr" in capsys.readouterr().out


def test_samples_that_are_not_real_numbers_are_named_when_the_stream_opens(tmp_path, capsys):
    # (complex or channel-less samples had raised a bare ValueError in the first stage)
    for name, data in (("complex", np.ones((3000, 16), np.complex64)),
                       ("empty", np.zeros((3000, 0), np.float32))):
        path = _emi_file(tmp_path / f"{name}.h5")
        with h5py.File(path, "r+") as f:
            del f["streams/emi/samples"]
            f["streams/emi"].create_dataset("samples", data=data)
            if name == "empty":
                del f["streams/emi/gate"]
        assert main(["detect", str(path)]) == 2
        err = capsys.readouterr().err
        assert ("holds complex64, not real numbers" if name == "complex"
                else "'samples' has no channels") in err


def test_frame_and_soil_attributes_of_another_type(tmp_path, capsys):
    # a bearing written as text had raised a bare ValueError in export; a scene
    # written as an array of strings, "truth value of an array is ambiguous"
    path = _emi_file(tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["origin_lon"] = 10.0
        f.attrs["origin_lat"] = 45.0
        f.attrs["bearing_deg"] = "north"
        f.attrs["scene"] = np.array([b"sand", b"wet"])
    assert main(["export", str(path), "--out", str(tmp_path / "a.geojson")]) == 2
    assert "'bearing_deg' is 'north', not a number" in capsys.readouterr().err
    ev = evaluate_recordings([path], alarms=[{"x": [0.5], "y": [1.0], "score": [1.0]}])
    assert [ln.soil for ln in ev.lanes] == ["sand; wet"]


def test_an_append_that_fails_midway_leaves_the_table_as_it_was(tmp_path):
    """A value that is no number fails once some columns have grown: every
    column is cut back (a half-written alarm had been left for readers, and a
    retry refused as "already holds alarms")."""
    from demine.pipeline import append_alarms

    path = _emi_file(tmp_path / "t.h5")
    append_alarms(path, {"time": [T0], "stream": ["emi"], "x": [0.5], "y": [1.0],
                         "score": [9.0]})
    with pytest.raises(RecordingError, match="could not append alarms .*column 'x'.*as it was"):
        append_alarms(path, {"time": [T0 + 1], "stream": ["other"], "x": ["oops"], "y": [1.0],
                             "score": [9.0]})
    with h5py.File(path, "r") as f:
        assert {f["alarms"][c].shape[0] for c in f["alarms"]} == {1}
    assert append_alarms(path, {"time": [T0 + 1], "stream": ["other"], "x": [0.2],
                                "y": [1.0], "score": [9.0]}) == 1
