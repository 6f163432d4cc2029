"""What an outside audit of acquisition found: real devices on pseudo-terminals
(their wire protocols written by the test), real pyserial, real HDF5 files."""

from __future__ import annotations

import os
import termios
import threading
import time
import warnings

import numpy as np
import pytest
from test_recorder import _pty
from test_recorder import _write_all as _write

from demine.cli import main
from demine.drivers import get_driver
from demine.errors import RecordingError
from demine.positions import LocalFrame
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording

GATES = np.geomspace(10e-6, 1e-3, 8)
FRAME = LocalFrame(104.9, 12.5, 10.0)


class _Feeder(threading.Thread):
    """Send ``make(k)`` every ``period`` s to a pty once the recorder's readers are
    connected (pyserial drops what came before the port was opened)."""

    def __init__(self, rec: Recorder | None, fd: int, make, period: float = 0.02):
        super().__init__(daemon=True)
        self.rec, self.fd, self.make, self.period = rec, fd, make, period
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while self.rec is not None and not all(
                r.stats.connected for r in self.rec._readers.values()):
            if self.stop.wait(0.01):
                return
        k = 0
        while not self.stop.is_set():
            data = self.make(k)
            if data is None:
                return
            try:
                _write(self.fd, data, timeout=5)
            except (AssertionError, OSError):
                return
            self.sent = k + 1
            k += 1
            self.stop.wait(self.period)


def _run(rec: Recorder, feeds: list[_Feeder], fds: tuple[int, ...], *,
         seconds: float | None = None, during=None) -> dict:
    """Start the feeds and the recorder; run ``during()``, or until the feeds end
    (or ``seconds``); stop everything and close the ptys.  Returns the
    recorder's last status."""
    for f in feeds:
        f.start()
    try:
        rec.start()
        if during is not None:
            during()
        elif seconds is None:
            for f in feeds:
                f.join(timeout=20)
        else:
            time.sleep(seconds)
        time.sleep(0.3)
        return rec.status()
    finally:
        for f in feeds:
            f.stop.set()
            f.join()
        rec.stop()
        for fd in fds:
            os.close(fd)


def _emi_block(k: int, n: int = 20, gates: int = GATES.size) -> bytes:
    seq = np.arange(k * n, (k + 1) * n)
    return get_driver("emi-pi").encode_arrays(
        seq, seq * 1000, np.repeat(seq[:, None], gates, 1).astype("f4"))


def _gga(t_ns: int, fix: bool, x: float = 0.0) -> bytes:
    from demine.drivers.nmea import GpsFix

    lon, lat = FRAME.to_geo(np.array([x]), np.array([1.0]))
    return get_driver("nmea").encode(GpsFix(
        time_ns=int(t_ns), lat=float(lat[0]) if fix else float("nan"),
        lon=float(lon[0]) if fix else float("nan"), alt=10.05 if fix else float("nan"),
        fix_quality=4 if fix else 0, satellites=14 if fix else 0, hdop=0.6))


def test_frames_read_while_starting_are_flushed_at_once(tmp_path):
    """Frames read while the recorder waited for every device's first ones were
    first flushed a whole flush interval after the file opened: a kill -9
    then lost seconds (with a slow GPS, 8.9 s of readings, all of them)."""
    m, s, path = _pty()
    out = tmp_path / "start.h5"
    rec = Recorder(out, [DeviceSpec("emi-pi", path, calibration={"gate_times": GATES.tolist()})],
                   flush_interval=30.0, startup_timeout=10)
    feed = _Feeder(rec, m, _emi_block)
    feed.start()
    try:
        rec.start()
        deadline = time.monotonic() + 5
        seen = 0
        while time.monotonic() < deadline and not seen:
            time.sleep(0.1)
            with Recording(out) as r:   # a reader beside the live writer (SWMR)
                seen = len(r.streams["emi"])
        assert seen > 0, "nothing on disk well before the 30 s flush interval"
    finally:
        feed.stop.set()
        feed.join()
        rec.stop()
        os.close(m)
        os.close(s)


def _gps_recorder(tmp_path, fix_after: float, startup: float = 5.0):
    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    rec = Recorder(tmp_path / "gps.h5", [
        DeviceSpec("emi-pi", emi_path, calibration={"gate_times": GATES.tolist()}),
        DeviceSpec("nmea", gps_path)], flush_interval=0.2, startup_timeout=startup)
    t0 = []

    def gps(k):
        now = time.time_ns()
        t0.append(now) if not t0 else None
        return _gga(now, fix=(now - t0[0]) / 1e9 >= fix_after, x=0.1 * k)

    feeds = [_Feeder(rec, emi_m, _emi_block), _Feeder(rec, gps_m, gps, period=0.1)]
    return rec, feeds, (emi_m, emi_s, gps_m, gps_s)


@pytest.mark.parametrize("fix_after", [0.5, None])
def test_a_receiver_without_a_fix_at_first(tmp_path, fix_after):
    """A GPS without a fix for its first 0.5 s (a cold start) left the whole
    recording without a local frame: every x NaN, no alarm. The recorder now
    waits for a fix, up to its start-up timeout; a receiver that never gets one
    is recorded without positions, and that is said."""
    events = []
    rec, feeds, fds = _gps_recorder(tmp_path, 0.5 if fix_after else 1e9, startup=5.0
                                    if fix_after else 1.5)
    rec.on_event = events.append
    _run(rec, feeds, fds, seconds=0.7)
    with Recording(rec.out) as r:
        x = r.streams["emi"].x
        if fix_after:
            assert "origin_lon" in r.attrs
            assert np.isfinite(x).mean() > 0.5
        else:
            assert "origin_lon" not in r.attrs and not np.isfinite(x).any()
            assert len(r.streams["emi"]) > 0   # (recorded all the same)
    said = [n for n in rec.processing_notes if "no fix with a position within 1.5 s" in n]
    assert bool(said) == (fix_after is None)
    assert any(e.kind == "no_fix" for e in events) == (fix_after is None)


def _ascii_lines(k: int) -> bytes:
    lines = [f"{1000 * (10 * k + i)},{500 + i},{-30 - i}\n" for i in range(10)]
    return "".join(lines).encode()


def _record_cli(capsys, port_m, make, *argv: str, duration: float = 1.5):
    feed = _Feeder(None, port_m, make)
    feed.start()
    try:
        code = main(["record", "--quiet", "--duration", str(duration), *argv])
    finally:
        feed.stop.set()
        feed.join()
    cap = capsys.readouterr()
    return code, " ".join((cap.out + cap.err).split()), feed


def test_ascii_detector_columns_given_on_the_command_line(tmp_path, capsys):
    """An ascii-md detector printing millis,amplitude,phase could not be set up
    from `demine record` (its lines were all dropped, exit 0, nothing said)."""
    m, s, path = _pty()
    try:
        out = tmp_path / "ascii.h5"
        code, said, feed = _record_cli(capsys, m, _ascii_lines, "--device",
                                       f"ascii-md={path}", "--option",
                                       "columns=millis,amplitude,phase", "--out", str(out))
        assert code == 0, said
        # (a line cut where the port opened, or where it stopped, is no format error)
        assert "not in the driver's format" not in said, said
        with Recording(out) as r:
            e = r.streams["emi"]
            assert len(e) >= 20 and e.samples.shape[1] == 2
            np.testing.assert_array_equal(e.samples[:, 0] - 500, np.arange(len(e)) % 10)
            assert e.attrs["units"] == "1"
        # with the driver's default columns (amplitude, phase) every line is
        # refused: the start-up error says so, naming the format expected
        out2 = tmp_path / "ascii2.h5"
        code, said, _ = _record_cli(capsys, m, _ascii_lines, "--device", f"ascii-md={path}",
                                    "--out", str(out2), "--startup-timeout", "1")
        assert code == 2
        assert "line(s) not in the driver's format (ascii-md: columns amplitude,phase)" in said
    finally:
        os.close(m)
        os.close(s)


def test_lines_dropped_while_recording_are_said(tmp_path):
    """A stray two-value line among three-value ones was the only thing kept,
    with crc 0 gaps 0 and no word of the 500 lines dropped."""
    m, s, path = _pty()

    def mixed(k):
        return (b"1,2\n" + _ascii_lines(k)) if k < 40 else None

    rec = Recorder(tmp_path / "mixed.h5", [DeviceSpec("ascii-md", path)],
                   flush_interval=0.2, startup_timeout=5)
    status = _run(rec, [_Feeder(rec, m, mixed)], (m, s))
    from demine.recorder import format_status

    assert "bad lines" in format_status(status)
    note = [n for n in rec.processing_notes if "line(s) not in the driver's format" in n]
    assert note and note[0].startswith("emi: ") and "--option emi.columns=" in note[0]


def test_a_device_that_changes_its_gates_stops_the_recording_keeping_its_frames(tmp_path):
    """A detector switched from 8 to 4 gates stopped the recording with numpy's
    "all the input array dimensions ..." and lost the frames still waiting for
    a position; now it says what changed, and keeps them."""
    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    rec = Recorder(tmp_path / "change.h5", [
        DeviceSpec("emi-pi", emi_path, calibration={"gate_times": GATES.tolist()}),
        DeviceSpec("nmea", gps_path)], frame=FRAME, flush_interval=0.2, startup_timeout=5)

    def emi(k):
        if k >= 40:
            return None
        return _emi_block(k) if k < 30 else _emi_block(k, gates=4)

    feeds = [_Feeder(rec, emi_m, emi), _Feeder(rec, gps_m, lambda k: _gga(time.time_ns(),
                                                                       True, 0.1 * k), 0.1)]
    def run():
        with pytest.raises(RecordingError, match=r"emi: the device changed from 8 to 4 gates "
                           "while recording; recording stopped with every frame before"):
            rec.run(10)

    _run(rec, feeds, (emi_m, emi_s, gps_m, gps_s), during=run)
    with Recording(rec.out) as r:
        e = r.streams["emi"]
        np.testing.assert_array_equal(e.sequence, np.arange(600))   # every 8-gate frame
        assert e.attrs["units"] == "V" and r.streams["gps"].attrs["units"] == "deg"


def test_record_options_checked_before_any_port_is_opened(tmp_path, capsys):
    """Refused at once, naming what is wrong (some had waited for the devices'
    frames, or said it in HDF5's words, or not at all).

    "Before any port is opened" is checked on the ports themselves: pyserial
    puts a terminal into raw mode at its speed when it opens it, and does not
    restore the settings when it closes it, so a refused command must leave
    both pseudo-terminals' settings as they were (the last case, which does
    open its port, shows that the check sees an opening)."""
    m, s, path = _pty()
    m2, s2, path2 = _pty()
    fresh = (termios.tcgetattr(s), termios.tcgetattr(s2))
    try:
        cases = [
            (["--device", f"emi-pi={path}", "--out", str(tmp_path / "no" / "x.h5")],
             "no directory"),
            (["--device", f"emi-pi={path}", "--out", str(tmp_path)], "a directory; give"),
            (["--device", f"emi-pi={path}", "--device", f"nmea={path}", "--out",
              str(tmp_path / "x.h5")], "are both on port"),
            (["--device", f"emi-pi={path}", "--calibration", "emi-pi=gpr-default", "--out",
              str(tmp_path / "x.h5")], "profile 'gpr-default' is for a gpr device"),
            (["--device", f"emi-pi={path}", "--option", "emi.columns=a,b", "--out",
              str(tmp_path / "x.h5")], "--option 'emi.columns=a,b': driver 'emi-pi'"),
            (["--device", f"emi-pi={path}", "--device", f"nmea={path2}", "--option",
              "baudrate=9600", "--out", str(tmp_path / "x.h5")], "which device?"),
            (["--device", f"nmea={path}", "--option", "gps.baudrate=fast", "--out",
              str(tmp_path / "x.h5")], "baudrate must be int"),
            (["--device", f"nmea={path}", "--option", "gps.parity=X", "--out",
              str(tmp_path / "x.h5")], "--option 'gps.parity=X': Not a valid parity"),
        ]
        for argv, says in cases:
            code = main(["record", "--quiet", "--startup-timeout", "20", *argv])
            err = " ".join(capsys.readouterr().err.split())
            assert code == 2 and says in err, (argv, err)
            assert (termios.tcgetattr(s), termios.tcgetattr(s2)) == fresh, \
                f"a port was opened before {argv} was refused"
        assert not (tmp_path / "x.h5").exists()
        # a negative longitude is a value, not an option (argparse had said
        # "expected one argument")
        code = main(["record", "--quiet", "--device", f"emi-pi={path}", "--out",
                     str(tmp_path / "x.h5"), "--origin", "-70.25,-33.5", "--startup-timeout",
                     "0.5"])
        err = capsys.readouterr().err
        assert code == 2 and "no frames within 0.5 s" in err, err
        assert termios.tcgetattr(s) != fresh[0]   # (this one was opened)
    finally:
        for fd in (m, s, m2, s2):
            os.close(fd)


def test_pulse_search_on_readings_without_noise_warns_of_nothing():
    """Constant readings had numpy print "overflow encountered in divide"."""
    from demine.emi import _pulse_energies, pulse_bases

    bases = np.stack([pulse_bases(GATES, [np.inf]), pulse_bases(GATES, [150e-6])])[:, 0]
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, GATES.size))
    x[:, 3] = 5.0   # one dead gate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _pulse_energies(np.ones((400, GATES.size)), GATES, 20, bases).shape[1] == 0
        e = _pulse_energies(x, GATES, 20, bases)
    assert e.shape[1] > 0 and np.isfinite(e).all()


def test_a_profile_of_other_gates_is_said_when_recording_starts(tmp_path):
    """An 8-gate detector given the shipped 16-gate profile, without --detect,
    was recorded with no word of it (found only when the file was processed)."""
    m, s, path = _pty()
    events = []
    rec = Recorder(tmp_path / "g.h5", [DeviceSpec(
        "emi-pi", path, calibration={"gate_times": np.geomspace(12e-6, 1e-3, 16).tolist()})],
        flush_interval=0.2, startup_timeout=5, on_event=events.append)
    _run(rec, [_Feeder(rec, m, _emi_block)], (m, s), seconds=0.0)
    said = "its calibration gives 16 gate times and the device sends 8 gates"
    assert any(said in e.message and e.kind == "calibration" for e in events)
    assert any(said in n for n in rec.processing_notes)
    with Recording(rec.out) as r:
        assert len(r.streams["emi"]) > 0 and r.streams["emi"].gate_times is None


def record_wheel_radar(out, counts, calibration, status=None, sequence=None) -> Recorder:
    """Record a radar (the gpr driver, no GPS) over a pty, one trace per count of
    its survey wheel's ``counts`` (300), with ``calibration`` (and each trace's
    ``status`` flags, default 0, and device ``sequence`` numbers, default 0, 1, ...)."""
    m, s, path = _pty()
    gpr = get_driver("gpr")

    def traces(k):
        if 10 * k >= len(counts):
            return None
        seq = np.arange(10 * k, 10 * k + 10)
        return gpr.encode_arrays(seq if sequence is None else sequence[seq], seq * 2500,
                                 np.zeros((10, 128), np.int16), encoder=counts[seq],
                                 status=0 if status is None else status[seq])

    rec = Recorder(out, [DeviceSpec("gpr", path, calibration=calibration)],
                   flush_interval=0.2, startup_timeout=5)
    _run(rec, [_Feeder(rec, m, traces)], (m, s))
    return rec


#: a survey wheel's counts: still for 50 traces, 10 per trace, then reset to 0
#: by the device (a restart) and on at 10 per trace
_COUNTS = np.concatenate([np.full(50, 5000), 5000 + 10 * np.arange(1, 151),
                          10 * np.arange(100)])


def test_a_radar_without_a_gps_is_placed_by_its_survey_wheel(tmp_path):
    """Without a GPS every trace of a wheel-driven radar had x NaN, so radar
    detection left them all out; the profile's distance_per_count was read by
    nothing.  Until the wheel turns, traces are not placed (a radar without a
    wheel, whose count stays 0, would all be at one point); a reset of the count
    is not a move."""
    rec = record_wheel_radar(tmp_path / "wheel.h5", _COUNTS, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.001})
    with Recording(rec.out) as r:
        g = r.streams["gpr"]
        assert len(g) == 300
        want = np.concatenate([np.full(50, np.nan), 0.01 * np.arange(1, 151),
                               1.5 + 0.01 * np.arange(100)])
        np.testing.assert_allclose(g.x, want, atol=1e-12)
        np.testing.assert_array_equal(np.isnan(g.y), np.isnan(want))
    assert any("placed by its survey wheel (distance_per_count 0.001 m" in n
               for n in rec.processing_notes)
    assert any("survey wheel's count jumped (a reset?) 1 time(s)" in n
               for n in rec.processing_notes)


def test_stopped_while_waiting_for_a_fix_keeps_what_came(tmp_path):
    """Waiting for a GPS's first fix held every frame in memory; a Ctrl-C
    then ended it with no file at all (5840 readings lost in a review's probe).
    The wait is said, and an interrupt during it records what came."""
    import signal
    import subprocess
    import sys

    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    out = tmp_path / "wait.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "demine", "record", "--quiet", "--device", f"emi-pi={emi_path}",
         "--device", f"nmea={gps_path}", "--out", str(out), "--startup-timeout", "60",
         "--calibration", "emi=emi-pi-default"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    feeds = [_Feeder(None, emi_m, lambda k: _emi_block(k, gates=16)),
             _Feeder(None, gps_m, lambda k: _gga(time.time_ns(), False), 0.1)]
    for f in feeds:
        f.start()
    try:
        time.sleep(4.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        for f in feeds:
            f.stop.set()
            f.join()
        if proc.poll() is None:
            proc.kill()
        for fd in (emi_m, emi_s, gps_m, gps_s):
            os.close(fd)
    assert proc.returncode == 130, stderr
    assert "gps: waiting: waiting up to" in stderr
    with Recording(out) as r:
        assert len(r.streams["emi"]) > 500 and len(r.streams["gps"]) > 5
        assert "origin_lon" not in r.attrs
    assert "stopped before a fix with a position came" in stdout + stderr


def test_marks_made_while_paused_are_placed_by_the_gps(tmp_path):
    """Pausing dropped the GPS's fixes too, so a mark made while paused and the
    resume marker had no position, and the console said the GPS was lost while
    it had an RTK fix (console audit)."""
    from demine.control import RecorderControl

    emi_m, emi_s, emi_path = _pty()
    gps_m, gps_s, gps_path = _pty()
    rec = Recorder(tmp_path / "paused.h5", [
        DeviceSpec("emi-pi", emi_path, calibration={"gate_times": GATES.tolist()}),
        DeviceSpec("nmea", gps_path)], frame=FRAME, flush_interval=0.2, startup_timeout=5)
    t0 = time.time_ns()
    feeds = [_Feeder(rec, emi_m, _emi_block),
             _Feeder(rec, gps_m, lambda k: _gga(time.time_ns(), True,
                                                (time.time_ns() - t0) / 1e9 * 0.5), 0.1)]
    control = RecorderControl(rec)
    replies = []

    def operate():
        # (the pause once the writer has a fix: on a loaded host the first
        # one can take longer than a fixed 0.8 s, and a mark before any fix
        # has no position, rightly)
        deadline = time.monotonic() + 15
        while rec._track.last_time is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        replies.append(control({"cmd": "pause"}))
        time.sleep(2.5)   # (longer than the track's gap limit)
        replies.append(control({"cmd": "mark"}))
        time.sleep(0.5)
        replies.append(control({"cmd": "resume"}))
        time.sleep(0.5)

    _run(rec, feeds, (emi_m, emi_s, gps_m, gps_s), during=operate)
    marks = [r["marker"] for r in replies]
    assert [m["label"] for m in marks] == ["pause", "target", "resume"]
    xs = [m["x"] for m in marks]
    assert np.isfinite(xs).all(), replies  # (a reply says why a mark has no position)
    assert xs[0] < xs[1] < xs[2]   # (moving along x at 0.5 m/s meanwhile)
    with Recording(rec.out) as r:   # nothing of the pause written
        g = r.streams["gps"].time
        assert np.diff(g).max() > 2.5e9


def test_frames_the_device_numbered_and_never_sent_are_said_and_counted_in_info(tmp_path):
    """Frames lost before the recorder had them (a device's buffer overran)
    had been counted only on the live status line: the recording's notes and
    `demine info` said nothing.  Both give the count now, the same count."""
    from demine.cli.info import format_summary

    counts = np.arange(300, dtype=np.int32)
    seq = np.arange(300) + np.repeat([0, 40, 47], 100)   # (40 lost, then 7)
    rec = record_wheel_radar(tmp_path / "lost.h5", counts, {
        "sample_interval": 3.125e-11, "distance_per_count": 0.001}, sequence=seq)
    assert "gpr: 47 frame(s) missing in 2 gap(s) of the device's sequence numbers" in " ".join(
        rec.processing_notes), rec.processing_notes
    with Recording(rec.out) as r:
        st = r.summary()["streams"]["gpr"]
        assert (st["sequence_gaps"], st["frames_missing"]) == (2, 47)
        text = format_summary(r.summary())
    assert "300 frames" in text and "47 frames missing in 2 gap(s)" in text
    ok = record_wheel_radar(tmp_path / "ok.h5", counts, {"sample_interval": 3.125e-11})
    assert not any("missing" in n for n in ok.processing_notes)
    with Recording(ok.out) as r:
        assert r.summary()["streams"]["gpr"]["frames_missing"] == 0
        assert "missing" not in format_summary(r.summary())


def test_a_device_restarting_near_its_old_count_loses_no_frame(tmp_path):
    """A radar that power-cycles (a brown-out, a USB replug) starts its sequence
    numbers again: its new frames had been dropped as "duplicates" until its
    counter passed the old one, with exit 0 and no word."""
    counts = np.arange(300, dtype=np.int32)
    seq = np.concatenate([np.arange(150), np.arange(150)])
    rec = record_wheel_radar(tmp_path / "restart.h5", counts,
                             {"sample_interval": 3.125e-11}, sequence=seq)
    with Recording(rec.out) as r:
        assert len(r.streams["gpr"]) == 300
        np.testing.assert_array_equal(r.streams["gpr"].sequence, seq)
    assert "gpr: 1 restart(s) of the device's sequence numbers (its frames kept)" in " ".join(
        rec.processing_notes), rec.processing_notes


def test_a_batch_whose_times_step_back_waits_for_the_fix_after_its_latest_frame(tmp_path):
    """A batch was taken as placed for good when its *last* frame lay before
    the last GPS fix; mapped times can step back within a batch (the clock
    fit keeps a move back of its line as a step), and the frames after the
    fix were written without a position, never revisited (2 and 60 radar
    readings of a loaded run).  Found by a helper's load runs."""
    from demine.drivers import FrameBatch

    rec = Recorder(tmp_path / "x.h5", [DeviceSpec("emi-pi", "/dev/null"),
                                       DeviceSpec("nmea", "/dev/null")])
    t0 = 1_700_000_000 * 10**9
    k = np.arange(20)
    rec._track.add(t0 + k * 100_000_000, np.c_[k * 0.05, k * 0.0, k * 0.0])
    last = rec._track.last_time
    times = np.array([last - 20_000_000, last + 30_000_000, last - 10_000_000], np.int64)
    b = FrameBatch("emi-pi", "emi", samples=np.zeros((3, 16), np.float32), sequence=np.arange(3),
                   device_time_us=np.arange(3) * 1000, time_ns=times)
    assert not rec._covered(b)  # (its middle frame needs the next fix)
    assert rec._covered(FrameBatch("emi-pi", "emi", samples=np.zeros((1, 16), np.float32),
                                   sequence=np.arange(1), device_time_us=np.zeros(1, np.int64),
                                   time_ns=times[[0]]))
