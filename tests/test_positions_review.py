"""Review of where readings are placed from the GPS track: interpolation
between fixes, gaps, and the local frame checked against pyproj.

Each regression test names what it caught.  The recorder test runs the real
recorder on pseudo-terminals into a real HDF5 file.
"""

from __future__ import annotations

import math
import os
import threading
import time
import tty

import numpy as np
import pytest

from demine.drivers import get_driver
from demine.drivers.nmea import GpsFix
from demine.positions import LocalFrame, PreparedTrack, interpolate_positions
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording

S = 1_000_000_000


# ------------------------------------------------------------------ interpolation
def test_a_missing_altitude_leaves_x_and_y():
    # The recorder's track is x, y, z; z is NaN when the receiver gives no
    # altitude (a GGA with an empty altitude field, a 2-D fix, an RMC-only
    # receiver).  A row with any NaN used to be no fix at all, so every
    # reading lost its x and y.
    t = np.arange(5) * S // 10
    xyz = np.c_[np.arange(5.0), 2 * np.arange(5.0), np.full(5, np.nan)]
    out = PreparedTrack(t, xyz).at(np.array([S // 20, 3 * S // 10]))
    np.testing.assert_allclose(out[:, :2], [[0.5, 1.0], [3.0, 6.0]])
    assert np.isnan(out[:, 2]).all()
    # altitude on some fixes only: z from those, x and y from all
    xyz[[0, 4], 2] = [10.0, 14.0]
    out = interpolate_positions(t, xyz, np.array([S // 20, 3 * S // 10]))
    np.testing.assert_allclose(out, [[0.5, 1.0, 10.5], [3.0, 6.0, 13.0]])
    # a gap in z alone (3.5 s) is a gap for z only
    t2 = np.array([0, 1, 2, 3, 4, 5]) * S // 2
    xyz2 = np.c_[np.arange(6.0), np.arange(6.0), [0.0, np.nan, np.nan, np.nan, np.nan, 5.0]]
    out = interpolate_positions(t2, xyz2, np.array([S]), max_gap_s=1.0)
    np.testing.assert_allclose(out[0, :2], [2.0, 2.0])
    assert np.isnan(out[0, 2])


def test_a_one_hertz_track_mapped_to_host_time_has_no_gaps():
    # A 1 Hz receiver's fix times, mapped to the host clock by the reader's
    # clock fit, are 1 s ± tens of µs apart (measured through the recorder:
    # 0.999965-1.000040 s).  With the recorder's max_gap_s = 1 every interval
    # a few µs over 1 s was a gap: a third of the readings had no position.
    jitter = np.array([0, 34_000, -35_000, 40_000, 14_000, -20_000, 2_600])
    t = np.cumsum(np.r_[0, S + jitter[1:]])
    x = np.arange(t.size, dtype=float)
    dst = t[:-1] + S // 2
    out = interpolate_positions(t, x, dst, max_gap_s=1.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, x[:-1] + 0.5, atol=1e-4)
    # a missed fix (2 s) is still a gap
    t_missed = np.array([0, 1, 3, 4]) * S
    out = interpolate_positions(t_missed, np.arange(4.0), np.array([S // 2, 2 * S]),
                                max_gap_s=1.0)
    assert out[0] == 0.5 and np.isnan(out[1])


def test_ends_duplicates_and_order():
    t = np.array([3, 1, 2, 2, 5]) * S  # out of order, one time twice (same place)
    v = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    dst = np.array([0, 1, 1.5, 2, 2.5, 4, 6]) * S
    out = interpolate_positions(t, v, dst.astype("int64"), max_gap_s=1.0)
    np.testing.assert_allclose(out[1:5], [1.0, 1.5, 2.0, 2.5])
    assert np.isnan(out[0]) and np.isnan(out[6])  # before the first fix, after the last
    assert np.isnan(out[5])  # 3 s -> 5 s: a gap


# ----------------------------------------------------------------------- the frame
@pytest.mark.parametrize(("lon0", "lat0"), [(104.9, 12.5), (-58.4, -34.6), (30.5, 50.4),
                                            (18.0, 69.6), (179.9998, -16.8), (-180.0, 65.0)])
def test_local_frame_against_pyproj(lon0, lat0):
    """Independently: pyproj's local tangent plane (topocentric) and WGS 84
    geodesics.  Lane scale (50 m): under a millimetre; the antimeridian
    (origin 0.0002° from it, points on both sides) the same."""
    pyproj = pytest.importorskip("pyproj")
    geod = pyproj.Geod(ellps="WGS84")
    rng = np.random.default_rng(7)
    az = rng.uniform(0, 360, 400)
    dist = rng.uniform(0, 50, 400)
    lon, lat, _ = geod.fwd(np.full(400, lon0), np.full(400, lat0), az, dist)
    enu = pyproj.Transformer.from_pipeline(
        "+proj=pipeline +step +proj=cart +ellps=WGS84 +step +proj=topocentric "
        f"+ellps=WGS84 +lon_0={lon0} +lat_0={lat0} +h_0=0")
    e, n, _ = enu.transform(lon, lat, np.zeros(400))
    for bearing in (0.0, 37.0, -90.0):
        f = LocalFrame(lon0, lat0, 0.0, bearing)
        x, y = f.to_local(lon, lat)
        b = math.radians(bearing)
        # +y along the bearing, +x 90° clockwise from it
        want_x = e * math.cos(b) - n * math.sin(b)
        want_y = e * math.sin(b) + n * math.cos(b)
        assert np.abs(np.hypot(x - want_x, y - want_y)).max() < 1e-3
        assert np.abs(np.hypot(x, y) - dist).max() < 1e-3
        glon, glat = f.to_geo(x, y)
        _, _, back = geod.inv(lon, lat, glon, glat)
        assert np.abs(back).max() < 1e-6
    if lon0 > 179:  # both sides of the antimeridian are on the lane
        assert (lon < 0).any() and (lon > 0).any()


# ---------------------------------------------------------------- the recorder
def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def _write_all(fd: int, data: bytes, timeout: float = 20.0) -> None:
    import select

    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        if time.monotonic() > deadline:
            raise TimeoutError("pty reader took no data")
        select.select([], [fd], [], 0.5)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            pass


@pytest.mark.parametrize("receiver", ["GGA without altitude", "RMC only"])
def test_recorder_places_readings_without_gps_altitude(tmp_path, receiver):
    """Real recorder, EMI and NMEA on pseudo-terminals: a receiver that gives
    no altitude (2-D fix, or RMC only) used to leave every reading's x and y
    NaN in the file."""
    frame = LocalFrame(104.9, 12.5, 10.0)
    gates = np.geomspace(10e-6, 1e-3, 8)
    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    out = tmp_path / "rec.h5"
    emi, nmea = get_driver("emi-pi"), get_driver("nmea")
    rec = Recorder(out, [DeviceSpec("emi-pi", emi_path, calibration={"gate_times": gates.tolist()}),
                         DeviceSpec("nmea", gps_path)], frame=frame, flush_interval=0.2,
                   startup_timeout=10)
    speed, rate, seconds = 0.5, 10.0, 2.0

    def gps(k: int, t_ns: int) -> bytes:
        lon, lat = frame.to_geo(np.array([k / rate * speed]), np.array([1.0]))
        gga, rmc = nmea.encode(GpsFix(t_ns, float(lat[0]), float(lon[0]), math.nan, 1, 7,
                                      1.2)).splitlines(keepends=True)
        return rmc if receiver == "RMC only" else gga + rmc

    def feed():
        while not all(r.stats.connected for r in rec._readers.values()):
            time.sleep(0.01)
        start, k_emi, k_gps = time.monotonic(), 0, 0
        t_gps0 = time.time_ns()
        while (el := time.monotonic() - start) < seconds:
            n = int(el * 500) - k_emi
            if n > 0:
                _write_all(emi_m, emi.encode_arrays(np.arange(k_emi, k_emi + n),
                                                    np.arange(k_emi, k_emi + n) * 2000,
                                                    np.zeros((n, gates.size), "float32")))
                k_emi += n
            while k_gps / rate <= el:
                _write_all(gps_m, gps(k_gps, t_gps0 + int(k_gps / rate * 1e9)))
                k_gps += 1
            time.sleep(0.005)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        rec.start()
        feeder.join()
        time.sleep(0.5)
    finally:
        rec.stop()
        feeder.join()
        for fd in (emi_m, emi_s, gps_m, gps_s):
            os.close(fd)
    with Recording(out) as r:
        g, e = r.streams["gps"], r.streams["emi"]
        assert np.isnan(g["alt"]).all() and np.isfinite(g.x).all()
        inside = (e.time > g.time[0]) & (e.time < g.time[-1])
        assert inside.sum() > 500
        x, y = e.x[inside], e.y[inside]
        assert np.isfinite(x).all() and np.isfinite(y).all()
        np.testing.assert_allclose(y, 1.0, atol=1e-3)
        # moving along x: x grows with the readings' time.  (In the order
        # received, not always: while the clock fit settles at start-up a move
        # back of its line over ClockFit.max_hold_s is kept as a step back of
        # the mapped times, 10-15 ms on a loaded host, and x steps back with them.)
        order = np.argsort(e.time[inside], kind="stable")
        assert np.all(np.diff(x[order]) >= -1e-3) and x[-1] - x[0] > 0.5
        assert np.isnan(e.z[inside]).all()
