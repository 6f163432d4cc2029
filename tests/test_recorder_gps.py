"""The recorder's GPS path on real pseudo-terminals: receiver latency, slow
receivers, the origin's altitude, GGA altitude units and calibrations that are
not JSON as given."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import tty

import numpy as np
import pytest
from test_recorder import _write_all

from demine import nmea
from demine.drivers import get_driver
from demine.drivers.nmea import GpsFix, sentence
from demine.errors import ConfigError, FrameError
from demine.positions import LocalFrame
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording

GATES = np.geomspace(10e-6, 1e-3, 8)
FRAME = LocalFrame(104.9, 12.5, 10.0)
SPEED = 0.5  # m/s along x
EMI_RATE = 500.0


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def _gga_rmc(t_ns: int, x: float, alt: float = 10.05, rmc: bool = True,
             y: float = 1.0) -> bytes:
    lon, lat = FRAME.to_geo(np.array([x]), np.array([y]))
    wire = get_driver("nmea").encode(GpsFix(time_ns=t_ns, lat=float(lat[0]), lon=float(lon[0]),
                                            alt=alt, fix_quality=4, satellites=14, hdop=0.6))
    return wire if rmc else wire.splitlines(keepends=True)[0]


def _record(out, *, seconds: float, gps_period: float = 0.1, gps_delay: float = 0.0,
            gps_calibration: dict | None = None, alt=lambda k: 10.05, gps_start: float = 0.0,
            frame: LocalFrame | None = FRAME, missing: frozenset[int] = frozenset(),
            recorders: list | None = None, y=lambda k: 1.0, **rec_kw) -> Recording:
    """EMI readings at 500 Hz (device clock from 0) and a GPS receiver on two
    ptys.  The sensor moves along x at SPEED from the moment the feed starts
    (``start``); fix k is measured at ``start + gps_start + k * gps_period``
    (its GPS time, in host UTC) and sent ``gps_delay`` s later, as a receiver
    with that latency does; the fixes numbered in ``missing`` are not sent;
    fix k is ``y(k)`` m across.  Reading k is sent at ``start + k / 500``.
    ``recorders`` gets the Recorder."""
    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    emi = get_driver("emi-pi")
    rec = Recorder(out, [
        DeviceSpec("emi-pi", emi_path, calibration={"gate_times": GATES.tolist()}),
        DeviceSpec("nmea", gps_path, calibration=dict(gps_calibration or {})),
    ], frame=frame, flush_interval=0.2, startup_timeout=10, **rec_kw)
    if recorders is not None:
        recorders.append(rec)
    failure: list[BaseException] = []

    def feed():
        try:
            while not all(r.stats.connected for r in rec._readers.values()):
                time.sleep(0.01)
            start = time.monotonic()
            utc0 = time.time_ns()
            k_emi = k_gps = 0
            while True:
                el = time.monotonic() - start
                if el > seconds:
                    break
                n = int(el * EMI_RATE) - k_emi
                if n > 0:
                    k = np.arange(k_emi, k_emi + n)
                    _write_all(emi_m, emi.encode_arrays(
                        k, k * int(1e6 / EMI_RATE), np.zeros((n, GATES.size), "float32")))
                    k_emi += n
                wire = b""  # (the fixes due, in one write: a burst at the start)
                while gps_start + k_gps * gps_period + gps_delay <= el:
                    tm = gps_start + k_gps * gps_period  # when fix k was measured
                    if k_gps not in missing:
                        wire += _gga_rmc(utc0 + round(tm * 1e9), SPEED * tm, alt(k_gps),
                                         y=y(k_gps))
                    k_gps += 1
                if wire:
                    _write_all(gps_m, wire)
                time.sleep(0.004)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)

    th = threading.Thread(target=feed)
    th.start()
    try:
        rec.start()
        th.join()
        time.sleep(0.3)
    finally:
        th.join()
        rec.stop()
        for fd in (emi_m, emi_s, gps_m, gps_s):
            os.close(fd)
    assert not failure, failure
    return Recording(out)


# ---------------------------------------------------------------- latency
def test_receiver_latency_from_the_calibration_places_readings_where_they_were(tmp_path):
    """A receiver that sends each fix 200 ms after measuring it: with its
    ``latency`` calibrated, readings are placed where the sensor was (before,
    SPEED x 0.2 s = 10 cm behind), and the GPS stream's time is the fix's."""
    lat = 0.2
    r = _record(tmp_path / "lag.h5", seconds=3.0, gps_delay=lat,
                gps_calibration={"latency": lat})
    with r:
        e, g = r.streams["emi"], r.streams["gps"]
        ok = np.isfinite(e.x)
        assert ok.sum() > 0.6 * len(e)
        err = e.x[ok] - SPEED * e.sequence[ok] / EMI_RATE
        assert abs(float(np.median(err))) < 0.02, np.median(err)
        # the fix's time is when it was measured (its GPS time: host UTC here),
        # its host time when it arrived
        gt = g["gps_time_ns"]
        assert abs(float(np.median(g.time - gt)) / 1e9) < 0.03
        assert float(np.median(g["host_time"] - g.time)) / 1e9 == pytest.approx(lat, abs=0.03)
        assert json.loads(r.streams["gps"].attrs["calibration"]) == {"latency": lat}


def test_without_a_latency_the_fix_times_are_as_before(tmp_path):
    """The default (no ``latency``): fixes are timed as they arrive, the
    placement lags by SPEED x delay, as it always did."""
    r = _record(tmp_path / "nolag.h5", seconds=2.0, gps_delay=0.2)
    with r:
        e = r.streams["emi"]
        ok = np.isfinite(e.x)
        err = e.x[ok] - SPEED * e.sequence[ok] / EMI_RATE
        assert float(np.median(err)) == pytest.approx(-SPEED * 0.2, abs=0.02)


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, "0.2", True, 250.0, [0.1]])
def test_a_latency_that_is_not_seconds_is_refused_before_any_port_opens(tmp_path, value):
    with pytest.raises(ConfigError, match="latency"):
        Recorder(tmp_path / "a.h5", [DeviceSpec("emi-pi", "/dev/null"),
                                     DeviceSpec("nmea", "/dev/null",
                                                calibration={"latency": value})])
    assert not (tmp_path / "a.h5").exists()


def test_a_latency_on_a_device_that_is_no_gps_is_refused(tmp_path):
    """Only the GPS's fix times are moved: a ``latency`` elsewhere would be ignored."""
    with pytest.raises(ConfigError, match="latency.*GPS"):
        Recorder(tmp_path / "a.h5", [DeviceSpec("emi-pi", "/dev/null",
                                                calibration={"latency": 0.1}),
                                     DeviceSpec("nmea", "/dev/null")])


def test_a_zero_latency_is_accepted(tmp_path):
    Recorder(tmp_path / "a.h5", [DeviceSpec("nmea", "/dev/null", calibration={"latency": 0})])


# ---------------------------------------------------------------- slow receivers
def test_a_receiver_slower_than_1_hz_places_the_readings(tmp_path):
    """Fixes every 1.5 s: the gap limit follows the receiver's own interval
    (before, a fixed 1 s made every interval a gap: nothing was placed), and
    readings wait long enough for the next fix (before: 1 s, too short)."""
    r = _record(tmp_path / "slow.h5", seconds=5.2, gps_period=1.5)
    with r:
        e, g = r.streams["emi"], r.streams["gps"]
        assert len(g) >= 4
        inside = (e.time > g.time[0]) & (e.time < g.time[-1])
        assert inside.sum() > 1000
        assert np.isfinite(e.x[inside]).mean() > 0.99
        err = e.x[inside] - SPEED * e.sequence[inside] / EMI_RATE
        # No latency is calibrated, so a fix is timed when it arrives, and a
        # reading is placed behind by as far as the sensor moves in that
        # delay: a few ms on an idle host, tens under load (a fixed 3 cm
        # failed once in CI).  A reading held at the last fix instead of
        # placed between two would be up to SPEED x 1.5 s = 0.75 m off.
        dated = g["gps_time_ns"] > 0
        delay = float(np.max(g.time[dated] - g["gps_time_ns"][dated])) / 1e9
        assert np.abs(err).max() < min(0.02 + SPEED * max(delay, 0.0), 0.2), delay


def test_missed_fixes_of_a_10_hz_receiver_are_bridged_up_to_1_s_as_before(tmp_path):
    """The reference 10 Hz receiver keeps the 1 s gap limit: 0.7 s without
    fixes is bridged, 1.5 s is not (and readings there get no position)."""
    missing = set(range(10, 17)) | set(range(30, 45))  # 0.7 s from 1.0 s, 1.5 s from 3.0 s
    recs: list = []
    r = _record(tmp_path / "gaps.h5", seconds=5.0, missing=frozenset(missing), recorders=recs)
    with r:
        e, g = r.streams["emi"], r.streams["gps"]
        t = g.time
        d = np.diff(t) / 1e9
        short, long_ = np.argmax((d > 0.6) & (d < 1.0)), np.argmax(d > 1.2)
        assert 0.6 < d[short] < 1.0 and d[long_] > 1.2
        in_short = (e.time > t[short]) & (e.time < t[short + 1])
        in_long = (e.time > t[long_]) & (e.time < t[long_ + 1])
        assert in_short.sum() > 200 and in_long.sum() > 500
        assert np.isfinite(e.x[in_short]).all()
        assert np.isnan(e.x[in_long]).all()
        assert recs[0]._track.max_gap_s == 1.0


def test_the_gap_limit_can_be_given(tmp_path):
    """``max_gap`` given: used as it is, whatever the fix interval (a 0.7 s
    hole in a 10 Hz track is a gap when the limit is 0.5 s)."""
    out = tmp_path / "given.h5"
    rec = Recorder(out, [DeviceSpec("nmea", "/dev/null")], max_gap=0.5)
    t0 = 1_700_000_000 * 10**9
    k = np.r_[0:10, 17:30]
    rec._track.add(t0 + k * 100_000_000, np.c_[k * 0.05, k * 0.0, k * 0.0])
    assert rec._track.max_gap_s == 0.5
    xyz = rec._track.at(t0 + np.array([500, 1200, 2500]) * 1_000_000)
    np.testing.assert_allclose(xyz[[0, 2], 0], [0.25, 1.25])
    assert np.isnan(xyz[1]).all()
    # a long limit keeps the fixes it bridges (the track kept 5 s: one 6 s interval
    # left a single fix, nothing to interpolate)
    slow = Recorder(out, [DeviceSpec("nmea", "/dev/null")], max_gap=10.0)
    for i in range(3):
        slow._track.add(t0 + np.array([i * 6_000_000_000]), np.array([[i * 3.0, 0.0, 0.0]]))
    assert slow._track.at(t0 + np.array([9_000_000_000]))[0, 0] == pytest.approx(4.5)
    derived = Recorder(out, [DeviceSpec("nmea", "/dev/null")])
    derived._track.add(t0 + k * 100_000_000, np.c_[k * 0.05, k * 0.0, k * 0.0])
    assert derived._track.max_gap_s == 1.0
    assert derived._track.at(t0 + np.array([1200]) * 1_000_000)[0, 0] == pytest.approx(0.6)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="max_gap"):
            Recorder(out, [DeviceSpec("nmea", "/dev/null")], max_gap=bad)
    for bad in (-1.0, math.nan):
        with pytest.raises(ConfigError, match="position_wait"):
            Recorder(out, [DeviceSpec("nmea", "/dev/null")], position_wait=bad)


# ---------------------------------------------------------------- origin altitude
def test_origin_altitude_is_the_first_fix_that_has_one(tmp_path):
    """The first fixes carry no altitude (a 2D fix): the origin's altitude is
    that of the first fix that has one (before: 0 m, so every z was the
    height above mean sea level)."""
    r = _record(tmp_path / "alt.h5", seconds=2.0, frame=None, gps_start=-0.5,
                alt=lambda k: math.nan if k < 2 else 123.25 + 0.01 * k)
    with r:
        assert r.attrs["origin_alt"] == pytest.approx(123.27)
        g, e = r.streams["gps"], r.streams["emi"]
        assert np.isnan(g.z[:2]).all()
        np.testing.assert_allclose(g.z[2:], 0.01 * (np.arange(2, len(g)) - 2), atol=1e-6)
        ok = np.isfinite(e.z)
        assert ok.mean() > 0.6 and np.abs(e.z[ok]).max() < 0.5


def test_origin_altitude_is_unknown_without_any(tmp_path):
    """A receiver that gives no altitude at all (here GGA with the field
    empty): the origin's altitude is NaN, and so is every z (before: origin
    0 m)."""
    r = _record(tmp_path / "noalt.h5", seconds=1.0, frame=None, alt=lambda k: math.nan)
    with r:
        assert math.isnan(r.attrs["origin_alt"])
        assert LocalFrame.from_attrs(dict(r.attrs)) is not None
        assert np.isnan(r.streams["gps"].z).all() and np.isnan(r.streams["emi"].z).all()
        assert np.isfinite(r.streams["emi"].x).mean() > 0.5


def test_an_origin_given_without_altitude_takes_the_first_fixs(tmp_path):
    """`demine record --origin LON,LAT` (no ALT) gives the frame a NaN altitude:
    the first fix's altitude fills it (before: 0 m, every z a height above the
    sea, and the export's coverage left every reading out as too high)."""
    frame = LocalFrame(FRAME.origin_lon, FRAME.origin_lat, math.nan, FRAME.bearing_deg)
    r = _record(tmp_path / "given.h5", seconds=1.0, frame=frame, alt=lambda k: 321.5)
    with r:
        assert r.attrs["origin_alt"] == pytest.approx(321.5)
        assert r.attrs["origin_lon"] == FRAME.origin_lon
        ok = np.isfinite(r.streams["emi"].z)
        assert ok.mean() > 0.5 and np.abs(r.streams["emi"].z[ok]).max() < 1e-6


def test_a_gps_altitude_is_not_taken_for_a_height_above_the_ground(tmp_path):
    """Down a slope the recorder's z (the GPS altitude less the origin's) goes
    below 0.  The searched area had dropped those readings as lifted or below
    the ground (a helper's audit: 8.2 -> 2.5 m² on a lane 4 % downhill), and
    the features took it for the coil's height; z_datum now says what z is."""
    from demine.evaluate import searched_area
    from demine.export import coverage
    from demine.features import EMIContext

    r = _record(tmp_path / "slope.h5", seconds=2.0, alt=lambda k: 10.05 - 0.02 * k)
    with r:
        assert {s.z_datum for s in r.streams.values()} == {"frame"}
        e = r.streams["emi"]
        placed = np.isfinite(e.x)
        assert placed.mean() > 0.6
        assert (e.z[placed] < -0.05).mean() > 0.5  # (the recording is the case meant)
        assert np.isnan(e.heights()).all() and np.isnan(e.heights(e.z[:5])).all()
        assert np.isnan(EMIContext.from_stream(e).height).all()
        want = searched_area([np.c_[e.x, e.y]], 0.3).area
    got = coverage(tmp_path / "slope.h5", footprint=0.3)
    assert got.area == pytest.approx(want) and want > 0.2
    from demine.cli.info import format_summary

    with Recording(tmp_path / "slope.h5") as r:
        text = format_summary(r.summary())
    assert text.count(" m (frame)") == 2, text  # (emi and gps: z is no height)


def test_a_recording_made_before_z_datum_is_read_by_its_host_time(tmp_path):
    """A file `demine record` wrote before the attribute: the recorder's own
    host_time column in a file with a local frame says its z is an altitude;
    a stream without that column is read by the format's default."""
    import h5py

    from demine.errors import SchemaError
    from demine.recording import RecordingWriter

    r = _record(tmp_path / "old.h5", seconds=1.0)
    r.close()
    with h5py.File(tmp_path / "old.h5", "r+") as f:
        for g in f["streams"].values():
            del g.attrs["z_datum"]
    with Recording(tmp_path / "old.h5") as r:
        assert {s.z_datum for s in r.streams.values()} == {"frame"}
    with RecordingWriter(tmp_path / "w.h5") as w:
        s = w.add_stream("emi", "emi", gate_times=GATES, attrs={"z_datum": "ground"})
        w.add_stream("emi2", "emi", gate_times=GATES)
        with pytest.raises(SchemaError, match="z_datum 'height' is not one of"):
            w.add_stream("emi3", "emi", gate_times=GATES, attrs={"z_datum": "height"})
        s.append(np.ones((3, GATES.size), "float32"), time=np.arange(3) * 1000,
                 x=np.zeros(3), y=np.zeros(3), z=np.array([0.05, 0.5, 2.0]))
    with Recording(tmp_path / "w.h5") as r:
        assert r.streams["emi2"].z_datum == "ground"
        np.testing.assert_array_equal(r.streams["emi"].heights(), [0.05, 0.5, 2.0])


def test_cli_origin_without_altitude_leaves_it_to_the_fixes():
    from demine.cli.record import origin_frame

    frame = origin_frame("104.9,12.5", 30.0)
    assert (frame.origin_lon, frame.origin_lat, frame.bearing_deg) == (104.9, 12.5, 30.0)
    assert math.isnan(frame.origin_alt)
    assert origin_frame("104.9,12.5,7", 0.0).origin_alt == 7.0
    with pytest.raises(ConfigError, match="expected LON,LAT"):
        origin_frame("104.9", 0.0)


# ---------------------------------------------------------------- GGA altitude units
def _gga(alt: str, unit: str, sep: str = "46.9", sep_unit: str = "M") -> str:
    body = f"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,{alt},{unit},{sep},{sep_unit},,"
    return f"${body}*{nmea.checksum(body):02X}"


def test_gga_altitude_in_feet_is_converted_to_metres():
    s = nmea.parse(_gga("1000.0", "F", "100.0", "F"))
    assert s.altitude == pytest.approx(304.8)
    assert s.geoid_separation == pytest.approx(30.48)
    m = nmea.parse(_gga("545.4", "M"))
    assert m.altitude == 545.4 and m.geoid_separation == 46.9
    assert nmea.parse(_gga("545.4", "")).altitude == 545.4  # (no unit: metres)
    assert nmea.parse(_gga("545.4", "f")).altitude == pytest.approx(545.4 * 0.3048)


def test_gga_altitude_in_an_unknown_unit_is_refused():
    with pytest.raises(FrameError, match="altitude units"):
        nmea.parse(_gga("545.4", "K"))
    with pytest.raises(FrameError, match="geoid separation units"):
        nmea.parse(_gga("545.4", "M", "46.9", "X"))


def test_the_driver_gives_feet_in_metres():
    drv = get_driver("nmea")
    lines = [sentence("GPGGA,123519,4807.038,N,01131.000,E,4,12,0.6,100.0,F,0.0,M,,").strip(),
             sentence("GPGGA,123520,4807.038,N,01131.000,E,4,12,0.6,100.0,M,0.0,M,,").strip()]
    res = drv.decode_lines(lines)
    np.testing.assert_allclose(res.batch.samples[:, 2], [30.48, 100.0])


# ---------------------------------------------------------------- calibration values
def test_a_calibration_with_numpy_arrays_records_as_lists(tmp_path):
    """``gate_times`` given as an array (as a script computes them): recorded,
    not a JSON TypeError from inside start()."""
    emi_m, emi_s, emi_path = _pty()
    emi = get_driver("emi-pi")
    cal = {"gate_times": GATES, "gains": np.ones(8, np.float32), "coil_radius": np.float64(0.1),
           "n": np.int64(3)}
    rec = Recorder(tmp_path / "np.h5", [DeviceSpec("emi-pi", emi_path, calibration=cal)],
                   flush_interval=0.2, startup_timeout=10)

    def feed():
        while not rec._readers["emi"].stats.connected:
            time.sleep(0.01)
        k = np.arange(100)
        _write_all(emi_m, emi.encode_arrays(k, k * 2000, np.zeros((100, 8), "float32")))

    th = threading.Thread(target=feed)
    th.start()
    try:
        rec.start()
        th.join()
        time.sleep(0.3)
    finally:
        th.join()
        rec.stop()
        os.close(emi_m)
        os.close(emi_s)
    assert rec.error is None
    with Recording(tmp_path / "np.h5") as r:
        e = r.streams["emi"]
        assert len(e) == 100
        np.testing.assert_allclose(e.gate_times, GATES)
        stored = json.loads(e.attrs["calibration"])
        assert stored["gate_times"] == GATES.tolist()
        assert stored["gains"] == [1.0] * 8 and stored["coil_radius"] == 0.1 and stored["n"] == 3
    assert isinstance(cal["gate_times"], np.ndarray)  # (the caller's dict is left as it was)


def test_a_calibration_value_that_is_not_json_is_refused_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="emi.*'bad'.*JSON"):
        Recorder(tmp_path / "a.h5", [DeviceSpec("emi-pi", "/dev/null",
                                                calibration={"bad": object()})])
    with pytest.raises(ConfigError, match="calibration"):
        Recorder(tmp_path / "a.h5", [DeviceSpec("emi-pi", "/dev/null",
                                                calibration=[("gate_times", 1)])])


def test_an_altitude_written_as_z_without_a_datum_is_no_height(tmp_path):
    """Another tool writes its GPS altitude (312 m) as z and says nothing of
    z_datum, so the format's default calls it a height: every reading had
    been dropped from the searched area as a lift (0 m²) and the dipole fit
    put the coil 312 m up.  It is now an unknown height, with a warning."""
    from demine.export import coverage
    from demine.features import EMIContext
    from demine.recording import RecordingWriter

    n = 400
    x = np.linspace(0.0, 4.0, n)
    with RecordingWriter(tmp_path / "alt.h5") as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        g = w.add_stream("emi2", "emi", gate_times=GATES)
        s.append(np.ones((n, GATES.size), "float32"), time=np.arange(n) * 1_000_000,
                 x=x, y=np.zeros(n), z=312.0 + 0.01 * np.sin(x))
        g.append(np.ones((n, GATES.size), "float32"), time=np.arange(n) * 1_000_000,
                 x=x, y=np.zeros(n), z=np.full(n, 0.06))
    with Recording(tmp_path / "alt.h5") as r:
        e = r.streams["emi"]
        assert e.z_datum == "ground"
        with pytest.warns(UserWarning, match=r"stream 'emi': its z \(median 312 m\) is no height"):
            assert np.isnan(e.heights()).all()
        with pytest.warns(UserWarning, match="z_datum"):
            assert np.isnan(EMIContext.from_stream(e).height).all()
        np.testing.assert_array_equal(r.streams["emi2"].heights(), np.full(n, 0.06))
    with pytest.warns(UserWarning, match="no height"):
        got = coverage(tmp_path / "alt.h5", stream="emi", footprint=0.3)
    assert got.area > 0.9   # (4 m of line, 0.3 m wide)
    # a sensor at a plausible height above the ground is taken as it is, lifts and all
    assert coverage(tmp_path / "alt.h5", stream="emi2", footprint=0.3).area > 0.9
