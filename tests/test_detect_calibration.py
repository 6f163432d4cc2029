"""``demine detect --calibration STREAM=PROFILE``: a profile made after the
recording (``demine calibrate``) used for its detection.

``demine calibrate time-zero`` measures a radar's time zero on a recording and
writes a profile for ``demine record``; an imported vendor file (GSSI: no
time zero in the header) had no way to use it short of copying its value into
a detection config.  The same holds for a metal detector recorded without a
profile (no gate times: its soil compensation cannot run).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from demine.cli import main
from demine.errors import ConfigError
from demine.io.convert import import_file
from demine.pipeline import detect_recording
from demine.recording import Recording, RecordingWriter

DZT = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr" /
       "gprpy-exampledata" / "GSSI" / "FILE____032.DZT")


@pytest.fixture(scope="module")
def dzt(tmp_path_factory):
    assert DZT.is_file(), f"real sample file missing: {DZT}"
    d = tmp_path_factory.mktemp("dzt")
    out = d / "dzt.h5"
    import_file(DZT, out)
    prof = d / "tz.toml"
    assert main(["calibrate", "time-zero", str(out), "-o", str(prof)]) == 0
    return out, prof


def test_a_time_zero_calibrated_after_import_is_used(dzt, capsys):
    rec, prof = dzt
    import tomllib

    tz = tomllib.loads(prof.read_text())["time_zero"]
    assert tz > 0
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*gives no time zero")
        got = detect_recording(rec, calibration={"gpr": prof}, notes=notes)
    assert (f"gpr: calibration from {prof}: antenna_height 0, frequency 4e+08, "
            f"time_zero {tz:g}") in notes   # (the DZT's 400 MHz antenna, kept)
    # the same as giving its value to the detector
    want = detect_recording(rec, {"gpr": {"detector": {"time_zero": tz,
                                                         "antenna_height": 0.0}}})
    assert len(got["x"]) > 0
    for k in ("x", "depth", "score"):
        assert np.array_equal(got[k], want[k])
    # and not as without it (depths counted from the first sample)
    with pytest.warns(UserWarning, match="gives no time zero"):
        before = detect_recording(rec)
    assert not np.array_equal(np.sort(before["depth"]), np.sort(got["depth"]))
    # through the command line
    capsys.readouterr()
    assert main(["detect", str(rec), "--calibration", f"gpr={prof}"]) == 0
    out = capsys.readouterr().out
    assert f"{len(got['x'])} alarms" in out and "note: gpr: calibration from" in out


def test_another_radars_profile_is_refused(dzt):
    rec, _ = dzt
    # the shipped profile of the 1.5 GHz reference radar: 31.25 ps, not the DZT's
    with pytest.raises(ConfigError, match=r"gpr-default: sample_interval 3\.125e-11 s, but "
                       r"stream 'gpr' was recorded at .*another radar's"):
        detect_recording(rec, calibration={"gpr": "gpr-default"})


@pytest.mark.parametrize(("args", "message"), [
    (["--calibration", "tz.toml"], "expected STREAM=PROFILE"),
    (["--calibration", "gpr="], "expected STREAM=PROFILE"),
    (["--calibration", "gps=PROF", ], "no stream 'gps'"),
    (["--calibration", "gpr=PROF", "--calibration", "gpr=PROF"], "'gpr' given twice"),
    (["--calibration", "gpr=no-such-profile"], "no calibration profile 'no-such-profile'"),
])
def test_bad_calibration_options(dzt, capsys, args, message):
    rec, prof = dzt
    args = [a.replace("PROF", str(prof)) for a in args]
    assert main(["detect", str(rec), *args]) == 2
    assert message in capsys.readouterr().err


def _emi_lane(tmp_path) -> tuple[Path, Path, np.ndarray]:
    """A short simulated EMI lane, and a copy of it recorded without gate times
    (a detector recorded with no profile)."""
    from demine.simulate import load_scene, simulate_lane

    sc = load_scene("demo-lane")
    res = simulate_lane(sc, 20.0, seed=3, streams=("emi",))
    full = res.write(tmp_path / "full.h5")
    bare = tmp_path / "bare.h5"
    e = res.streams["emi"]
    with RecordingWriter(bare) as w:
        s = w.add_stream("emi", "emi", n_channels=e["samples"].shape[1], driver="emi-pi",
                         calibration={"coil_radius": sc.emi.coil_radius})
        s.append(e["samples"], time=e["time"], sequence=e["sequence"], x=e["x"], y=e["y"],
                 z=e["z"])
        w.add_truth(sc.truth())
    with Recording(bare) as rec:
        assert rec.streams["emi"].gate_times is None
    return full, bare, np.asarray(sc.gate_times)


def test_gate_times_given_at_detection(tmp_path, capsys):
    full, bare, gates = _emi_lane(tmp_path)
    from demine.errors import MissingCalibrationError

    # the error names the stream and says how to give what it lacks
    with pytest.raises(MissingCalibrationError, match=r"stream 'emi': emi.soil: gate times "
                       r"unknown.*--calibration emi=PROFILE.*shipped emi-pi-default") as info:
        detect_recording(bare)
    assert info.value.key == "gate_times"
    for cmd in (["detect", str(bare)],
                ["process", str(bare), "-c", "emi_default", "-o", str(tmp_path / "p.h5")]):
        assert main(cmd) == 2
        assert "--calibration emi=PROFILE" in capsys.readouterr().err
    got = detect_recording(bare, calibration={"emi": {"gate_times": gates.tolist()}})
    want = detect_recording(full)
    assert len(want["x"]) > 0
    for k in ("x", "y", "score", "time"):
        assert np.array_equal(got[k], want[k])
    with pytest.raises(ConfigError, match=r"15 gate times for stream 'emi', which has 16"):
        detect_recording(bare, calibration={"emi": {"gate_times": gates[:-1].tolist()}})
    with pytest.raises(ConfigError, match="not detected"):
        detect_recording(full, {"emi": {"enabled": False}},
                         calibration={"emi": {"gate_times": gates.tolist()}})


@pytest.mark.parametrize(("profile", "message"), [
    ({"sample_interval": "x"}, "sample_interval must be seconds > 0, got 'x'"),
    ({"sample_interval": -1.0}, "sample_interval must be seconds > 0"),
    ({"frequency": 200.0}, "'frequency' 200 Hz is not a radar centre frequency"),
    ({"frequency": 1e-300}, "is not a radar centre frequency"),
    ({"time_zero": "soon"}, "calibration 'time_zero' must be a number"),
    ({"driver": "emi-pi", "gate_times": [1e-5, 2e-5]},
     "the profile is for a metal detector .driver .emi-pi.., not for the radar stream"),
])
def test_bad_profiles_are_refused_naming_the_profile(dzt, profile, message):
    rec, _ = dzt
    with pytest.raises(ConfigError, match="the profile given for 'gpr': .*" + message):
        detect_recording(rec, calibration={"gpr": profile})


def test_bad_gate_times_are_refused(tmp_path):
    _, bare, _ = _emi_lane(tmp_path)
    with pytest.raises(ConfigError, match=r"gate_times must be a list of seconds, got \['a'"):
        detect_recording(bare, calibration={"emi": {"gate_times": ["a", "b"]}})


def _gpr_lane(tmp_path) -> Path:
    """A 1 m cart line of the shipped gpr-lines scene, antenna 4 cm up."""
    import dataclasses

    from demine.simulate import load_scene, simulate_lane

    sc = load_scene("gpr-lines")
    sw = dataclasses.replace(sc.sweep, pattern="line", line_x=0.45, speed=0.5, height=0.04,
                             start_y=0.2, end_y=1.2)
    path = tmp_path / "gl.h5"
    simulate_lane(dataclasses.replace(sc, sweep=sw), seed=0, streams=("gpr",),
                  sweeps=1).write(path)
    return path


def test_a_time_zero_profile_keeps_what_the_recording_says_of_its_radar(tmp_path):
    """The time-zero profile started from the shipped template, whose nominal
    antenna height of 0 then replaced the recording's 4 cm in `detect
    --calibration` (a mine's depth 0.398 -> 0.416 m in the review)."""
    import tomllib

    lane = _gpr_lane(tmp_path)
    prof = tmp_path / "tz.toml"
    assert main(["calibrate", "time-zero", str(lane), "-o", str(prof)]) == 0
    p = tomllib.loads(prof.read_text())
    assert p["antenna_height"] == 0.04 and p["frequency"] == 1.5e9
    assert p["description"].startswith(f"the radar of {lane}:gpr (its antenna_height")
    got = detect_recording(lane, calibration={"gpr": prof})
    want = detect_recording(lane)
    assert len(want["x"]) and all(np.array_equal(got[k], want[k])
                                  for k in ("x", "y", "depth", "score"))
    # a base profile of the user's keeps its own values
    base = tmp_path / "mine.toml"
    base.write_text('driver = "gpr"\nantenna_height = 0.1\ndescription = "my cart"\n')
    assert main(["calibrate", "time-zero", str(lane), "--base", str(base), "-o",
                 str(tmp_path / "tz2.toml")]) == 0
    p2 = tomllib.loads((tmp_path / "tz2.toml").read_text())
    assert p2["antenna_height"] == 0.1 and p2["description"] == "my cart"
    assert p2["frequency"] == 1.5e9   # (which it did not give)


RECT = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr" /
        "impdar-test-data" / "rectangle_gprMax_Bscan.h5")


def test_process_takes_a_profile_too(tmp_path, capsys):
    """A gprMax 3.1 B-scan without a waveform (no frequency), sampled at 0.85
    GHz: the packaged chain's 0.5 GHz corner is above its Nyquist frequency
    (the error now says what to declare); with the radar's 100 MHz declared
    by a profile, its band follows, and the derived data say so."""
    assert RECT.is_file(), f"real sample file missing: {RECT}"
    rec = tmp_path / "rect.h5"
    import_file(RECT, rec)
    prof = tmp_path / "f100.toml"
    prof.write_text('driver = "gpr"\nfrequency = 1.0e8\n')
    out = tmp_path / "p.h5"
    capsys.readouterr()
    assert main(["process", str(rec), "-c", "gpr_default", "-o", str(out)]) == 2
    assert "declare it (calibration 'frequency'" in capsys.readouterr().err
    assert main(["process", str(rec), "-c", "gpr_default", "-o", str(out),
                 "--calibration", f"gpr={prof}"]) == 0
    import json

    import h5py

    with h5py.File(out) as f:
        d = f["derived/gpr/gpr_default"]
        assert d.attrs["calibration"] == f"calibration from {prof}: frequency 1e+08"
        hist = {h["step"]: h["params"] for h in json.loads(d.attrs["history"])}
        assert hist["gpr.bandpass"]["low"] == pytest.approx(1e8)
        assert hist["gpr.bandpass"]["frequency_scale"] == pytest.approx(0.2)
        data = d["data"][()]
        assert np.isfinite(data).all() and np.abs(data).max() > 0
    # the same profile through the Python API, for a stream it does not process
    from demine.process import process_recording

    with pytest.raises(ConfigError, match="calibration given for stream 'gps', which is not "
                       "processed"):
        process_recording(rec, "gpr_default", tmp_path / "q.h5", calibration={"gps": prof})
    assert main(["process", str(rec), "-c", "gpr_default", "-o", str(tmp_path / "r.h5"),
                 "--calibration", "emi=x.toml"]) == 2
    assert "which no chain processes" in capsys.readouterr().err


def test_the_classifier_sees_the_same_profile(tmp_path):
    """Alarms detected with a profile are classified with it too: the EMI
    features of a detector recorded without gate times equal those of the
    same readings recorded with them (before: log-spaced gates assumed)."""
    from demine.classify import apply_model
    from demine.pipeline import append_alarms

    full, bare, gates = _emi_lane(tmp_path)
    prof = {"emi": {"gate_times": gates.tolist()}}
    alarms = detect_recording(bare, calibration=prof)
    assert len(alarms["x"]) > 0
    append_alarms(bare, alarms)
    append_alarms(full, detect_recording(full))
    with_profile = apply_model(bare, calibration=prof)["p_mine"]
    want = apply_model(full)["p_mine"]
    assert np.allclose(with_profile, want, equal_nan=True)
    assert not np.allclose(apply_model(bare)["p_mine"], want, equal_nan=True)


def test_evaluate_model_takes_the_profile(tmp_path, capsys):
    """A gprMax 3.1 B-scan sampled at 0.85 GHz without a declared frequency:
    an alarm on it could not be classified, the classifier's chain refusing
    the 0.5-3 GHz band; with the radar's frequency given by a profile (as at
    its detection) the band follows and the alarm gets its p_mine."""
    from demine.pipeline import append_alarms

    rec = tmp_path / "rect.h5"
    import_file(RECT, rec, trace_spacing=0.01)
    with Recording(rec) as r:
        t = int(np.asarray(r.streams["gpr"].time)[40])
    append_alarms(rec, {"time": [t], "stream": ["gpr"], "x": [0.40], "y": [0.0],
                        "depth": [0.05], "velocity": [1e8], "score": [20.0]})
    prof = tmp_path / "f100.toml"
    prof.write_text('driver = "gpr"\nfrequency = 1.0e8\n')
    capsys.readouterr()
    assert main(["evaluate", str(rec), "--model", "default"]) == 2
    assert "declare it (calibration 'frequency'" in capsys.readouterr().err
    assert main(["evaluate", str(rec), "--model", "default", "--calibration",
                 f"gpr={prof}", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["n_alarms"] == 1
    assert main(["evaluate", str(rec), "--calibration", f"gpr={prof}"]) == 2
    assert "--calibration goes with --model" in capsys.readouterr().err


def test_batch_takes_the_profile_for_every_recording(tmp_path):
    """`demine batch --calibration`: a campaign recorded without gate times
    failed file by file; with the profile its alarms and p_mine equal those of
    the same readings recorded with the gate times, and the profile keys the
    outputs (another profile recomputes them)."""
    pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    from demine.batch import run_batch

    full, bare, gates = _emi_lane(tmp_path)
    prof = tmp_path / "gates.toml"
    prof.write_text('driver = "emi-pi"\ngate_times = [' + ", ".join(repr(float(g)) for g in gates)
                    + "]\n")
    kw = dict(workers=1, processes=False, progress=False, model=None)
    res = run_batch([bare], tmp_path / "none", **kw)
    assert [r["status"] for r in res.files] == ["failed"]
    assert "--calibration emi=PROFILE" in res.files[0]["error"]

    from demine.classify import default_model_path

    kw["model"] = default_model_path()
    got = run_batch([bare], tmp_path / "out", calibration={"emi": str(prof)}, **kw)
    want = run_batch([full], tmp_path / "ref", **kw)
    assert [r["status"] for r in got.files] == ["done"]
    a, b = pq.read_table(got.campaign).to_pydict(), pq.read_table(want.campaign).to_pydict()
    assert len(a["x"]) == len(b["x"]) > 0 and np.isfinite(a["p_mine"]).all()
    for k in ("x", "y", "score", "p_mine"):
        assert np.allclose(a[k], b[k], equal_nan=True), k
    # the same profile: up to date; another: recomputed
    again = run_batch([bare], tmp_path / "out", calibration={"emi": str(prof)}, **kw)
    assert [r["cached"] for r in again.files] == [True]
    prof.write_text(prof.read_text().replace("driver", "coil_radius = 0.1\ndriver"))
    other = run_batch([bare], tmp_path / "out", calibration={"emi": str(prof)}, **kw)
    assert [r["cached"] for r in other.files] == [False]
    # a stream the recordings do not have is refused, naming it
    bad = run_batch([bare], tmp_path / "bad", calibration={"gpr": "gpr-default"}, **kw)
    assert "calibration given for stream 'gpr', which it does not have" in bad.files[0]["error"]


def test_training_features_take_the_profile(tmp_path, capsys):
    """`demine train --calibration`: the features of alarms detected with a
    profile are computed with it (before: a detector recorded without gate
    times was trained on log-spaced gates it never had)."""
    from demine.classify import build_training_set
    from demine.pipeline import append_alarms

    full, bare, gates = _emi_lane(tmp_path)
    prof = {"emi": {"gate_times": gates.tolist()}}
    append_alarms(bare, detect_recording(bare, calibration=prof))
    append_alarms(full, detect_recording(full))
    want = build_training_set([full], radius=0.2)
    got = build_training_set([bare], radius=0.2, calibration=prof, cache=tmp_path / "c")
    assert set(got.X) == set(want.X) and got.X["emi"].shape[0] > 0
    for name in want.X:
        assert np.allclose(got.X[name], want.X[name], equal_nan=True), name
        assert np.array_equal(got.y[name], want.y[name])
    # the cache is keyed by the profile: without it, other (log-spaced gate) features
    plain = build_training_set([bare], radius=0.2, cache=tmp_path / "c")
    assert not np.allclose(plain.X["emi"], want.X["emi"], equal_nan=True)
    again = build_training_set([bare], radius=0.2, calibration=prof, cache=tmp_path / "c")
    assert np.array_equal(again.X["emi"], got.X["emi"], equal_nan=True)

    assert main(["train", str(bare), "--simulate", "1", "--calibration", "emi=emi-pi-default",
                 "--out", str(tmp_path / "m.json.gz")]) == 2
    assert "--calibration is for the RECORDINGs given" in capsys.readouterr().err
