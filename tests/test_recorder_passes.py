"""How the recorder paces its threads (constructed, not started: no ports opened)."""

from __future__ import annotations

import pytest

from demine.errors import ConfigError
from demine.recorder import DeviceSpec, Recorder


def _specs():
    return [DeviceSpec("emi-pi", "/dev/null"), DeviceSpec("gpr", "/dev/null"),
            DeviceSpec("nmea", "/dev/null")]


@pytest.mark.parametrize(("flush", "period", "poll"), [
    (0.01, 0.01, 0.01), (0.025, 0.025, 0.025), (0.04, 0.04, 0.02), (1.0, 0.05, 0.025)])
def test_readers_wake_on_the_writers_grid_at_most_every_25_ms(tmp_path, flush, period, poll):
    rec = Recorder(tmp_path / "a.h5", _specs(), flush_interval=flush)
    assert rec.pass_interval == pytest.approx(period)
    for r in rec._readers.values():
        assert r.align
        assert r.poll_interval == pytest.approx(poll)
        # a whole number of reader periods per pass: they read just before it
        assert (period / r.poll_interval) == pytest.approx(round(period / r.poll_interval))


def test_reader_options_override_the_grid(tmp_path):
    rec = Recorder(tmp_path / "a.h5", _specs(), flush_interval=0.025,
                   reader_options={"poll_interval": 0.01, "align": False})
    assert all(not r.align and r.poll_interval == 0.01 for r in rec._readers.values())


@pytest.mark.parametrize("flush", [0.0, -1.0])
def test_flush_interval_must_be_positive(tmp_path, flush):
    with pytest.raises(ConfigError, match="flush interval"):
        Recorder(tmp_path / "a.h5", _specs(), flush_interval=flush)


def test_local_ports_share_one_reader_thread(tmp_path):
    specs = [*_specs(), DeviceSpec("nmea", "socket://127.0.0.1:9", name="gps2")]
    rec = Recorder(tmp_path / "a.h5", specs, flush_interval=0.025)
    assert [r.name for r in rec._group.readers] == ["emi", "gpr", "gps1"]
    assert rec._readers["gps2"]._group is None  # a network port: its own thread
    rec = Recorder(tmp_path / "a.h5", _specs(), flush_interval=0.025,
                   reader_options={"group": False})
    assert rec._group is None and all(r._group is None for r in rec._readers.values())
