"""Outputs of the CLI never destroy a recording: not over an input, not over
an HDF5 file, no alarms appended twice, no simulator link over a file."""

from __future__ import annotations

import numpy as np
import pytest

from demine.cli import main
from demine.errors import ConfigError, RecordingError
from demine.pipeline import alarm_counts, append_alarms
from demine.recording import Recording, RecordingWriter

T0 = 1_700_000_000_000_000_000


def _lane(path, alarms=True):
    """A small EMI recording (flat readings along a line), optionally with two
    alarms of stream emi in its table."""
    n = 2000
    with RecordingWriter(path, site="test", lane_id="L1") as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5, 4e-5, 8e-5])
        s.append(np.zeros((n, 4), np.float32),
                 time=T0 + np.arange(n, dtype=np.int64) * 1_000_000,
                 x=np.linspace(0, 2, n), y=np.zeros(n), z=np.full(n, 0.05))
        if alarms:
            w.append_alarms({"time": T0 + np.arange(2, dtype=np.int64),
                             "stream": np.array([b"emi", b"emi"]),
                             "x": np.array([0.5, 1.5]), "y": np.zeros(2),
                             "score": np.array([9.0, 5.0])})
    return path


@pytest.mark.parametrize("argv", [
    ["detect", "{rec}", "--out", "{rec}"],
    ["detect", "{rec}", "--out", "{other}"],
    ["export", "{rec}", "--out", "{rec}", "-f", "csv", "--local"],
    ["calibrate", "null", "{rec}", "--out", "{rec}"],
    ["train", "{rec}", "--out", "{rec}"],
    ["train", "{rec}", "--out", "{other}"],
], ids=["detect-over-input", "detect-over-hdf5", "export-over-input", "calibrate-over-input",
        "train-over-input", "train-over-hdf5"])
def test_a_text_output_is_never_written_over_a_recording(tmp_path, capsys, argv):
    rec = _lane(tmp_path / "rec.h5")
    other = _lane(tmp_path / "other.h5")
    before = {p: p.read_bytes() for p in (rec, other)}
    assert main([a.format(rec=rec, other=other) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "error: --out " in err and err.count("\n") == 1
    assert "is the input" in err or "is an HDF5 file" in err
    for p, data in before.items():
        assert p.read_bytes() == data
    with Recording(rec) as r:
        assert len(r.streams["emi"]) == 2000


def test_a_text_output_replaces_an_older_text_file(tmp_path, capsys):
    rec = _lane(tmp_path / "rec.h5", alarms=False)
    out = tmp_path / "alarms.csv"
    out.write_text("old\n")
    assert main(["detect", str(rec), "--out", str(out)]) == 0
    assert "old" not in out.read_text()


def test_alarms_are_not_appended_twice(tmp_path, capsys):
    """`detect --write` on a recording that already holds alarms of the
    stream (live detection, an earlier --write) is refused before detecting,
    and so is the library call."""
    rec = _lane(tmp_path / "rec.h5")
    assert alarm_counts(rec) == {"emi": 2}
    assert main(["detect", str(rec), "--write"]) == 2
    err = capsys.readouterr().err
    assert "already holds 2 alarms of stream 'emi'" in err and err.count("\n") == 1
    with pytest.raises(RecordingError, match="already holds 2 alarms"):
        append_alarms(rec, {"time": np.array([T0]), "x": np.array([1.0]), "y": np.array([0.0]),
                            "stream": np.array(["emi"]), "score": np.array([1.0])})
    assert alarm_counts(rec) == {"emi": 2}
    # another stream's alarms are welcome
    with pytest.raises(ConfigError, match="column 'time' is required"):
        append_alarms(rec, {"x": np.array([1.0]), "y": np.array([0.0]),
                            "stream": np.array(["gpr"]), "score": np.array([1.0])})
    assert append_alarms(rec, {"time": np.array([T0]), "x": np.array([1.0]),
                               "y": np.array([0.0]), "stream": np.array(["gpr"]),
                               "score": np.array([1.0])}) == 1
    assert alarm_counts(rec) == {"emi": 2, "gpr": 1}


def test_a_simulator_link_is_never_made_over_a_file(tmp_path):
    from demine.simulate import SimulatedDevice, load_scene

    precious = tmp_path / "precious.h5"
    precious.write_bytes(b"data")
    with pytest.raises(ConfigError, match="exists and is not a symbolic link"):
        SimulatedDevice("emi-pi", load_scene("demo-lane"), link=precious)
    assert precious.read_bytes() == b"data"


@pytest.mark.parametrize("opt,value", [("--start", "nan"), ("--stop", "inf"),
                                       ("--start", "1e300"), ("--start", "-1")])
def test_calibrate_refuses_a_segment_that_is_not_seconds(tmp_path, capsys, opt, value):
    rec = _lane(tmp_path / "rec.h5", alarms=False)
    assert main(["calibrate", "null", str(rec), opt, value, "--out",
                 str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert f"segment {opt[2:]} must be seconds" in err and value in err.replace("1e+300", "1e300")
    assert not (tmp_path / "p.toml").exists()


def test_import_never_writes_over_its_input(tmp_path, capsys):
    """Even with --overwrite: the input would be destroyed while it is read."""
    src = tmp_path / "line.h5"
    src.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert main(["import", str(src), "--out", str(src), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert src.read_bytes().endswith(bytes(100))


def test_detect_write_replace_and_streams_left_alone(tmp_path, capsys):
    """--replace removes the table's alarms of the streams detected first
    (even when none is found now), keeps the other streams' alarms; a
    stream switched off in the config is not checked; bytes stream names
    are the stream's name, not "b'emi'"."""
    rec = _lane(tmp_path / "rec.h5")
    assert append_alarms(rec, {"time": np.array([T0]), "x": np.array([1.0]),
                               "y": np.array([0.0]), "stream": np.array([b"gpr"]),
                               "score": np.array([1.0])}) == 1
    assert alarm_counts(rec) == {"emi": 2, "gpr": 1}
    with pytest.raises(RecordingError, match="already holds 1 alarms of stream 'gpr'"):
        append_alarms(rec, {"time": np.array([T0]), "x": np.array([1.0]),
                            "y": np.array([0.0]), "stream": np.array([b"gpr"]),
                            "score": np.array([1.0])})
    off = tmp_path / "off.toml"
    off.write_text("[emi]\nenabled = false\n")
    assert main(["detect", str(rec), "--config", str(off), "--write"]) == 0  # (nothing to do)
    assert alarm_counts(rec) == {"emi": 2, "gpr": 1}
    assert main(["detect", str(rec), "--replace"]) == 2
    assert "--replace goes with --write" in capsys.readouterr().err
    # flat readings: the detector finds nothing; --replace still clears emi's old alarms
    assert main(["detect", str(rec), "--write", "--replace"]) == 0
    assert alarm_counts(rec) == {"gpr": 1}
    with Recording(rec) as r:
        assert r.table("alarms")["index"].tolist() == [0]
