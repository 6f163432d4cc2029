"""The directory ``demine console --simulate/--device`` makes for the recorder's
control socket and the logs: removed after a good run, kept and named after a
failure (its logs say why)."""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from test_console_review import _run_in_terminal, own_tmpdir  # noqa: E402

from demine.cli import main as cli_main  # noqa: E402


@pytest.fixture
def console_tmpdir(tmp_path, monkeypatch):
    return own_tmpdir(tmp_path, monkeypatch)


def test_a_good_run_leaves_no_directory_behind(tmp_path, console_tmpdir):
    """q after a good recording: the control socket's directory, with the
    recorder's and the simulator's logs, was left in /tmp after every run."""
    out = tmp_path / "sim.h5"
    code, text = _run_in_terminal(["console", "--simulate", "demo-lane", "--out", str(out)],
                                  b"q", b"REC")
    said = text.decode(errors="replace")
    assert code == 0, said[-2000:]
    assert "recording stopped" in said and "logs kept" not in said, said[-2000:]
    assert out.exists()
    assert list(console_tmpdir.iterdir()) == []


def test_a_recorder_that_fails_to_start_keeps_its_log_and_says_where(tmp_path, console_tmpdir,
                                                                     capsys):
    """The recorder exits before recording (its device is not there): the
    directory with its log stays, and the console says where it is."""
    code = cli_main(["console", "--device", f"emi-pi={tmp_path / 'no-such-port'}",
                     "--out", str(tmp_path / "x.h5")])
    err = capsys.readouterr().err
    assert code == 2, err
    (kept,) = console_tmpdir.iterdir()
    assert kept.name.startswith("demine-console-")
    assert f"logs kept in {kept}" in err
    assert "no-such-port" in (kept / "recorder.log").read_text()


def test_a_device_on_the_shipped_profile_is_said_on_the_screen(tmp_path, console_tmpdir):
    """A device started without --calibration is recorded with its driver's
    shipped profile (the reference detector's gate times); the recorder says so
    in its log, which the operator does not see: the console shows it. With
    --simulate (the shipped profiles are the simulated devices') it does not."""
    from demine.simulate import SimulatedDevice

    out = tmp_path / "dev.h5"
    with SimulatedDevice("emi-pi", "demo-lane", seed=1, duration=60.0) as dev:
        code, text = _run_in_terminal(
            ["console", "--device", f"emi-pi={dev.port}", "--out", str(out)], b"q", b"REC")
    said = text.decode(errors="replace")
    assert code == 0, said[-2000:]
    assert "no --calibration, using the shipped profile emi-pi-default" in said, said[-3000:]

    code, text = _run_in_terminal(["console", "--simulate", "demo-lane", "--out",
                                   str(tmp_path / "sim.h5")], b"q", b"REC")
    assert code == 0
    assert b"no --calibration" not in text
