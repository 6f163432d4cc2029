"""How the recorder paces its threads (constructed, not started: no ports opened)."""

from __future__ import annotations

import numpy as np
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


def _framed(driver, wire, t_ns):
    from demine.framing import Framer

    (b,) = Framer(driver).feed(wire)
    b.time_ns = np.asarray(t_ns, dtype=np.int64)
    b.host_time_ns = b.time_ns + 3_000_000
    return b


@pytest.mark.parametrize("write_every", [0.0, 1e9])
def test_positions_of_every_stream_are_the_track_interpolated(tmp_path, write_every):
    """The writer's passes, driven frame batch by frame batch (no ports): frames
    appended before the fix after them, placed when it comes (the streams'
    positions interpolated together), fixes falling inside passes.  Every
    stored position is exactly the interpolation of the whole track, whether
    the positions are written at every pass or all kept for the end (joined
    over many fixes)."""
    from demine.drivers import get_driver
    from demine.drivers.nmea import GpsFix
    from demine.positions import LocalFrame, interpolate_positions
    from demine.recording import Recording

    frame = LocalFrame(104.9, 12.5, 10.0)
    emi, gpr, nmea = (get_driver(d) for d in ("emi-pi", "gpr", "nmea"))
    rng = np.random.default_rng(3)
    t0 = 1_700_000_000 * 10**9
    ms = 10**6

    def emi_batch(k0, n):  # 1000 Hz
        k = np.arange(k0, k0 + n)
        return _framed(emi, emi.encode_arrays(k, k * 1000, rng.normal(size=(n, 16))),
                       t0 + k * ms)

    def gpr_batch(k0, n):  # 400 Hz
        k = np.arange(k0, k0 + n)
        wire = gpr.encode_arrays(k, k * 2500, rng.integers(-99, 99, (n, 128)).astype("int16"))
        return _framed(gpr, wire, t0 + k * 2500 * 1000)

    def fix(i):  # 10 Hz, walking 0.5 m/s along x with some wiggle in y
        t = t0 + i * 100 * ms
        lon, lat = frame.to_geo(np.array([0.05 * i]), np.array([0.01 * (i % 3)]))
        wire = nmea.encode(GpsFix(time_ns=t, lat=float(lat[0]), lon=float(lon[0]),
                                  alt=10.0, fix_quality=4, satellites=12, hdop=0.7))
        return _framed(nmea, wire, [t])

    # (made-up times: frames wait for their fix however long the test takes)
    rec = Recorder(tmp_path / "a.h5", _specs(), frame=frame, flush_interval=0.025,
                   position_wait=1e9)
    rec.position_write_interval = write_every
    first = {"emi": [emi_batch(0, 25)], "gpr": [gpr_batch(0, 10)], "gps": [fix(0)]}
    rec._open_writer(first)
    for name, batches in first.items():
        for b in batches:
            rec._dispatch(name, b)
    try:
        for p in range(1, 120):  # 25 ms passes; fix i arrives 30 ms after its time
            rec._queue.put(("emi", emi_batch(25 * p, 25)))
            rec._queue.put(("gpr", gpr_batch(10 * p, 10)))
            if (25 * p - 30) % 100 < 25 and 25 * p >= 130:
                rec._queue.put(("gps", fix((25 * p - 30) // 100)))
            rec._drain(final=False)
            rec.writer.flush()
            if write_every == 0:  # written in the pass that placed them
                assert not rec._pos_pending
        # kept for the end: the rows placed since the first fix, all pending
        assert bool(rec._pos_pending) == (write_every > 0)
    finally:
        rec.stop()
    assert not rec._pos_pending
    with Recording(tmp_path / "a.h5") as r:
        g = r.streams["gps"]
        track = np.stack([g.x, g.y, g.z], axis=1)
        placed = 0
        for name in ("emi", "gpr"):
            s = r.streams[name]
            want = interpolate_positions(g.time, track, s.time, max_gap_s=1.0)
            np.testing.assert_array_equal(s.x, want[:, 0])
            np.testing.assert_array_equal(s.y, want[:, 1])
            np.testing.assert_array_equal(s.z, want[:, 2])
            lon, lat = frame.to_geo(want[:, 0], want[:, 1])
            np.testing.assert_array_equal(s["lon"], lon)
            placed += np.isfinite(s.x).sum()
            assert np.isfinite(s.x).mean() > 0.9
        assert placed > 3000
