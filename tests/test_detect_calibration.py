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
    assert f"gpr: calibration from {prof}: antenna_height 0, time_zero {tz:g}" in notes
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
    with Recording(bare) as rec:
        assert rec.streams["emi"].gate_times is None
    return full, bare, np.asarray(sc.gate_times)


def test_gate_times_given_at_detection(tmp_path):
    full, bare, gates = _emi_lane(tmp_path)
    with pytest.raises(ConfigError, match="gate times"):
        detect_recording(bare)
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
