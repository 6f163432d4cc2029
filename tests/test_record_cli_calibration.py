"""``demine record`` on real devices (simulated ones, on pseudo-terminals):
calibration defaults, ``--calibration DEVICE=PROFILE``, and no empty file left
behind by a recorder that could not start."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from demine.calibration import load_profile
from demine.cli import main
from demine.errors import ConfigError
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording
from demine.simulate import SimulatedDevice

OWN_GATES = np.geomspace(20e-6, 2e-3, 16)  # a detector of our own, unlike the reference


@pytest.fixture
def port():
    """Start a simulated device (real wire protocol on a pty) and return its port."""
    started: list[SimulatedDevice] = []

    def start(driver: str) -> str:
        dev = SimulatedDevice(driver, "demo-lane", seed=3)
        dev.start()
        started.append(dev)
        return dev.port

    yield start
    for dev in started:
        dev.stop()


def _record(capsys, *argv: str, duration: str = "1.5") -> tuple[int, str]:
    code = main(["record", "--quiet", "--duration", duration, *argv])
    return code, " ".join(capsys.readouterr().err.split())


def _toml(path, **values) -> str:
    lines = []
    for k, v in values.items():
        lines.append(f"{k} = {list(map(float, v)) if isinstance(v, np.ndarray) else repr(v)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_readme_command_uses_the_shipped_emi_profile_and_says_so(port, tmp_path, capsys):
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", f"emi-pi={port('emi-pi')}", "--device",
                        f"nmea={port('nmea')}", "--out", str(out), "--detect")
    assert code == 0, err
    assert "emi-pi: no --calibration, using the shipped profile emi-pi-default" in err
    assert "the reference device's gate times, not necessarily yours" in err
    assert "--calibration emi-pi=PROFILE" in err
    assert "nmea: no --calibration" not in err  # (no shipped profile for it)
    shipped = load_profile("emi-pi-default")
    with Recording(out) as rec:
        emi = rec.streams["emi"]
        assert emi.n_frames > 0
        np.testing.assert_allclose(emi.gate_times, shipped["gate_times"])
        assert emi.calibration["gains"] == shipped["gains"]
        assert rec.streams["gps"].calibration == {}


def test_gpr_without_calibration_uses_the_shipped_profile(port, tmp_path, capsys):
    out = tmp_path / "gpr.h5"
    code, err = _record(capsys, "--device", f"gpr={port('gpr')}", "--out", str(out),
                        "--detect")
    assert code == 0, err
    assert "gpr: no --calibration, using the shipped profile gpr-default" in err
    assert "the reference device's sample interval" in err
    with Recording(out) as rec:
        assert rec.streams["gpr"].n_frames > 0
        assert rec.streams["gpr"].sample_interval == pytest.approx(3.125e-11)


@pytest.mark.parametrize("device, key", [("emi-pi", "emi"),         # the stream name
                                         ("emi-pi", "emi-pi"),      # the driver
                                         ("det:emi-pi", "det")])    # the device's NAME
def test_calibration_by_device_or_stream_name(port, tmp_path, capsys, device, key):
    own = _toml(tmp_path / "own.toml", gate_times=OWN_GATES)
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", f"{device}={port('emi-pi')}", "--out", str(out),
                        "--calibration", f"{key}={own}", "--detect")
    assert code == 0, err
    assert "shipped profile" not in err  # (a profile was given: no default added)
    with Recording(out) as rec:
        (stream,) = rec.streams.values()
        np.testing.assert_allclose(stream.gate_times, OWN_GATES)


def test_calibration_naming_no_device_lists_names_and_streams(tmp_path, capsys):
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", "emi-pi=/nonexistent/a", "--device",
                        "nmea=/nonexistent/b", "--out", str(out), "--calibration",
                        "radar=gpr-default")
    assert code == 2
    assert "no device 'radar'" in err
    assert "'emi-pi' (stream 'emi')" in err and "'nmea' (stream 'gps')" in err
    assert not out.exists()


def test_calibration_naming_two_devices_is_refused(tmp_path, capsys):
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", "emi-pi=/nonexistent/a", "--device",
                        "emi-pi=/nonexistent/b", "--out", str(out), "--calibration",
                        "emi-pi=emi-pi-default")
    assert code == 2
    assert "'emi-pi' names 2 devices" in err and "'emi1'" in err and "'emi2'" in err
    assert not out.exists()


def test_failure_before_the_first_frame_leaves_no_file_and_says_how(port, tmp_path, capsys):
    partial = _toml(tmp_path / "partial.toml", units="counts")  # no sample interval
    out = tmp_path / "gpr.h5"
    gpr = port("gpr")
    code, err = _record(capsys, "--device", f"gpr={gpr}", "--out", str(out),
                        "--calibration", f"gpr={partial}", "--detect")
    assert code == 2
    assert "sample interval" in err
    assert "--calibration DEVICE=PROFILE" in err and "--calibration gpr=PROFILE" in err
    assert not out.exists()
    # the same command, fixed, runs at once (no "file exists")
    code, err = _record(capsys, "--device", f"gpr={gpr}", "--out", str(out),
                        "--calibration", "gpr=gpr-default", "--detect")
    assert code == 0, err
    with Recording(out) as rec:
        assert rec.streams["gpr"].n_frames > 0


def test_overwrite_keeps_the_old_file_when_the_detector_cannot_start(port, tmp_path, capsys):
    out = tmp_path / "gpr.h5"
    gpr = port("gpr")
    code, err = _record(capsys, "--device", f"gpr={gpr}", "--out", str(out), duration="1")
    assert code == 0, err
    before = _sha(out)
    partial = _toml(tmp_path / "partial.toml", units="counts")
    code, err = _record(capsys, "--device", f"gpr={gpr}", "--out", str(out), "--overwrite",
                        "--calibration", f"gpr={partial}", "--detect")
    assert code == 2
    assert _sha(out) == before


def test_failure_after_frames_were_written_keeps_them(port, tmp_path, capsys):
    # a profile without gate times: the ground balance fails on its first chunk,
    # after the recorder has written frames
    nogates = _toml(tmp_path / "nogates.toml", units="V")
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", f"emi-pi={port('emi-pi')}", "--out", str(out),
                        "--calibration", f"emi={nogates}", "--detect")
    assert code == 2
    assert "gate times" in err and "--calibration emi-pi=PROFILE" in err
    assert f"{out} keeps the" in err
    with Recording(out) as rec:
        assert rec.streams["emi"].n_frames > 0


def test_recorder_api_removes_the_file_it_created_when_start_fails(port, tmp_path):
    out = tmp_path / "api.h5"
    rec = Recorder(out, [DeviceSpec("gpr", port("gpr"), calibration={"units": "counts"})],
                   detect=True)
    with pytest.raises(ConfigError, match="sample interval"):
        rec.start()
    rec.stop()
    assert not out.exists()


def test_recorder_api_adds_no_default_profile(port, tmp_path):
    out = tmp_path / "api.h5"
    rec = Recorder(out, [DeviceSpec("emi-pi", port("emi-pi"))])
    rec.start()
    try:
        rec.run(0.5)
    finally:
        rec.stop()
    with Recording(out) as r:
        assert r.streams["emi"].calibration == {}
        assert r.streams["emi"].gate_times is None


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_names_device_and_shares_metadata_help(capsys):
    record = _help(capsys, "record")
    assert "--calibration DEVICE=PROFILE" in record and "STREAM=PROFILE" not in record
    assert "stream name in the recording" in record
    imp = _help(capsys, "import")
    for text in ("site name stored in the recording", "operator stored in the recording",
                 "lane identifier stored in the recording", "free text stored in the recording"):
        assert text in record and text in imp
    console = _help(capsys, "console")
    assert "--calibration DEVICE=PROFILE" in console and "STREAM=PROFILE" not in console


def test_profile_with_other_gate_count_is_named_in_the_error(port, tmp_path, capsys):
    eight = _toml(tmp_path / "eight.toml", gate_times=np.geomspace(20e-6, 2e-3, 8))
    out = tmp_path / "lane.h5"
    code, err = _record(capsys, "--device", f"emi-pi={port('emi-pi')}", "--out", str(out),
                        "--calibration", f"emi={eight}", "--detect")
    assert code == 2
    assert "The 8 gate times of its profile do not match the device" in err
    assert "--calibration emi-pi=PROFILE" in err


def test_scene_values_replace_the_shipped_defaults(port, tmp_path, capsys):
    out = tmp_path / "sim.h5"
    code, err = _record(capsys, "--device", f"gpr={port('gpr')}", "--out", str(out),
                        "--scene", "demo-lane", "--detect")
    assert code == 0, err
    assert "using the shipped profile gpr-default" in err
    assert "sample interval and frequency from the scene" in err
    from demine.simulate import load_scene

    scene = load_scene("demo-lane")
    with Recording(out) as rec:
        assert rec.streams["gpr"].sample_interval == pytest.approx(
            scene.gpr.time_window / scene.gpr.samples)
        # (the radar's centre frequency too, which scales the GPR detector as
        # for the same scene simulated straight into a file)
        assert rec.streams["gpr"].calibration["frequency"] == scene.gpr.frequency
        assert rec.streams["gpr"].calibration["velocity"] == load_profile(
            "gpr-default")["velocity"]


def test_only_a_missing_calibration_gets_the_hint():
    """The hint is given for a MissingCalibrationError, by its key, not for
    another error that merely mentions a sample interval."""
    from demine.cli.record import _with_hint
    from demine.errors import ConfigError, MissingCalibrationError
    from demine.recorder import parse_device

    devices = [parse_device("gpr=/dev/null"), parse_device("nmea=/dev/null")]
    other = ConfigError("gpr.dewow: configured again with another sample interval after "
                        "processing began")
    assert _with_hint(other, devices) is other
    hinted = _with_hint(MissingCalibrationError("gpr.dewow: 'window_time' needs the stream's "
                                                "sample interval", "sample_interval"), devices)
    assert "--calibration gpr=PROFILE" in str(hinted) and "gpr-default" in str(hinted)
