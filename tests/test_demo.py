"""The one-command demo, shortened: simulated devices -> recording -> alarms -> report."""

from __future__ import annotations

import json
import subprocess
import sys

from demine.recording import Recording


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "demine", "demo", "--out", str(out), "--duration", "5",
         "--speed", "2", "--no-plots", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"pd", "pd_lower95", "far_per_m2", "n_targets", "n_alarms"} <= set(result)
    assert result["n_targets"] >= 1
    with Recording(out / "recording.h5") as r:
        # 10 s of lane at the reference rates, through real ptys: nothing lost
        assert len(r.streams["emi"]) > 6000 and len(r.streams["gpr"]) > 2500
        assert len(r.streams["gps"]) > 60
        # the simulated receiver's latency (30 ms of simulated time, 15 ms of
        # the host's at speed 2) is declared, so fixes are timed when measured
        assert r.streams["gps"].calibration["latency"] == 0.015
        assert len(r.table("alarms")) == result["n_alarms"]
        assert len(r.table("truth")) >= 3
    assert (out / "alarms.csv").exists() and (out / "report.txt").exists()
    assert "PD" in (out / "report.txt").read_text()


def test_demo_options_checked_before_anything_starts(tmp_path, capsys):
    import pytest

    from demine.cli import main

    out = tmp_path / "demo"
    for args, says in ((["--seed", "-1"], "'seed' must be >= 0, got -1"),
                       (["--speed", "0"], "'speed' must be > 0, got 0.0"),
                       (["--speed", "nan"], "'speed' must be finite, got nan"),
                       (["--duration", "nan"], "'duration' must be finite, got nan"),
                       (["--duration", "-5"], "'duration' must be > 0, got -5.0")):
        assert main(["demo", "--out", str(out), "--no-plots", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("demine demo: error: ") and says in err
        assert not out.exists()
    from demine.errors import ConfigError
    from demine.simulate import LaneSimulator

    with pytest.raises(ConfigError, match="'seed' must be >= 0"):
        LaneSimulator("demo-lane", -1)
