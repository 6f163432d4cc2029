"""The field console as a deminer and a supervisor use it (Textual pilot), against
recordings that other processes write: alarms, a recorder that stops or dies, a
file replaced under the console, GPS loss, pauses, Ctrl-C.

Most tests drive a *step writer*: a process that writes what the test tells it,
flushes, and says ``ok``; frame times are chosen by the test and the console's
clock is the test's, so what the console shows does not depend on scheduling.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("textual")

from demine.console import Follower  # noqa: E402
from demine.console.app import ConsoleApp  # noqa: E402
from demine.console.launch import (  # noqa: E402
    start_recorder,
    start_simulator,
    stop_process,
    wait_for_control,
)
from demine.console.widgets import AlarmList, StripChart  # noqa: E402
from demine.control import ControlClient, ControlServer  # noqa: E402
from demine.recording import Recording  # noqa: E402

T0 = 1_700_000_000 * 10**9  # frame times of the step writer start here (UTC ns)
S = 10**9

# Writes what the test sends on stdin (one Python statement a line, run with the
# helpers below), flushes, and answers "ok"; "close" closes the file.
STEP_WRITER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from demine.recording import RecordingWriter
    path, spec = sys.argv[1], json.loads(sys.argv[2])
    w = RecordingWriter(path, flush_interval=0.05, overwrite=spec.get("overwrite", False))
    gates = np.geomspace(1e-5, 1e-3, 8)
    streams = {}
    for name in spec["streams"]:
        kind = name.rstrip("0123456789")
        if kind == "emi":
            streams[name] = w.add_stream(name, "emi", n_channels=8, gate_times=gates,
                                         attrs={"sample_rate": 1000.0})
        elif kind == "gpr":
            streams[name] = w.add_stream(name, "gpr", n_channels=32, dtype="int16",
                                         sample_interval=1e-10)
        else:
            streams[name] = w.add_stream(name, "gps")
    seq = dict.fromkeys(streams, 0)
    rng = np.random.default_rng(0)
    T0, S = spec["t0"], 10**9

    def frames(name, t0, n, rate, x=0.0, y=0.0, fix=4):
        t = np.int64(t0) + (np.arange(n) * (1e9 / rate)).astype(np.int64)
        s = np.arange(seq[name], seq[name] + n)
        seq[name] += n
        xs = np.full(n, np.nan if x is None else float(x))
        ys = np.full(n, np.nan if y is None else float(y))
        kind = name.rstrip("0123456789")
        if kind == "emi":
            v = 1e-3 * gates[None, :] ** -0.5 * (1 + 0.01 * rng.standard_normal((n, 8)))
            streams[name].append(v, time=t, sequence=s, x=xs, y=ys)
        elif kind == "gpr":
            v = (1000 * rng.standard_normal((n, 32))).astype("int16")
            streams[name].append(v, time=t, sequence=s, x=xs, y=ys)
        else:
            streams[name].append(time=t, sequence=s, x=xs, y=ys, lon=np.full(n, 10.0),
                                 lat=np.full(n, 50.0), alt=np.full(n, 100.0),
                                 fix_quality=np.full(n, fix, dtype="int8"),
                                 satellites=np.full(n, 12, dtype="int16"),
                                 hdop=np.full(n, 0.7))

    def alarm(t, x, y, stream="emi", p=0.8):
        w.append_alarms({"time": [t], "stream": [stream], "x": [x], "y": [y],
                         "depth": [0.1], "score": [9.0], "p_mine": [p]})

    for line in sys.stdin:
        line = line.strip()
        if line == "close":
            break
        exec(line)
        w.flush()
        print("ok", flush=True)
    w.close()
    print("closed", flush=True)
""")


class StepWriter:
    """A writer process that does what it is told, one statement at a time."""

    def __init__(self, path: Path, streams=("emi", "gps"), overwrite: bool = False) -> None:
        spec = json.dumps({"streams": list(streams), "overwrite": overwrite, "t0": T0})
        self.proc = subprocess.Popen([sys.executable, "-c", STEP_WRITER, str(path), spec],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def __call__(self, *statements: str) -> None:
        for st in statements:
            self.proc.stdin.write(st + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline().strip()
            if line != "ok":
                self.proc.wait(30)
                raise AssertionError(f"step writer failed on {st!r}: "
                                     f"{self.proc.stderr.read()[-800:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "closed"
            assert self.proc.wait(30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Clock:
    """The console's clock (UTC ns), moved by the test."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def _until(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def _run(app: ConsoleApp, scenario, size=(80, 24)) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)
            if app.return_code is None:
                await pilot.press("q")

    asyncio.run(main())


def _text(app: ConsoleApp, wid: str) -> str:
    return app.query_one(wid).render().plain


def _line_styles(widget, y: int) -> list[tuple[str, str]]:
    """(text, style) of the segments of a widget's line ``y`` as last drawn."""
    return [(seg.text, str(seg.style)) for seg in widget.render_line(y) if seg.text.strip()]


# ---------------------------------------------------------------------- alarms
def test_alarms_newest_first_by_time_each_new_one_announced_and_lit_for_3_s(tmp_path):
    """The recorder's detectors write their alarms as each completes: a radar
    alarm and an EMI shape alarm come after alarms that are newer. The list is
    newest first by time (what its time column says), every alarm that came
    in a poll is lit and named (not only the last row), and the light goes out
    after 3 s."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    clock = Clock(T0 + 3 * S)
    follower = Follower(path, clock=clock, stale_after=1e9)
    app = ConsoleApp(follower, refresh_hz=10)
    try:
        w("frames('emi', T0, 100, 1000)", "frames('gps', T0, 5, 10, x=1.0, y=2.0)")
        w(f"alarm({T0 + 10 * S}, 1.0, 2.0)", f"alarm({T0 + 20 * S}, 2.0, 2.0)")

        async def scenario(pilot):
            alarms = app.query_one(AlarmList)

            def lit() -> list[int]:  # lines of the list drawn black on yellow
                return [i for i in range(2, 2 + len(follower.alarms))
                        if any("on #ffff00" in s for _, s in _line_styles(alarms, i))]

            await _until(pilot, lambda: len(follower.alarms) == 2, 30, "two alarms")
            await pilot.pause(0.1)
            assert lit() == [2, 3]
            # 3 s later the light goes out (it stayed on until the next alarm)
            await _until(pilot, lambda: lit() == [], 10, "the light to go out")
            # a late one (older than the newest) ...
            w(f"alarm({T0 + 15 * S}, 1.5, 2.0, stream='gpr')")
            await _until(pilot, lambda: len(follower.alarms) == 3, 30, "the late alarm")
            await pilot.pause(0.1)
            rows = _text(app, "#alarms").splitlines()
            times = [r.split()[0] for r in rows[2:5]]
            assert times == [time.strftime("%H:%M:%S", time.gmtime(T0 / S + k))
                             for k in (20, 15, 10)], rows
            assert "UTC" in rows[1]
            # ... is lit where it is, in the middle of the list
            assert lit() == [3]
            assert app.message == "ALARM gpr at x 1.50 y 2.00"
            bells = app.bells
            # two in one flush (one without a position): both lit and named
            w(f"alarm({T0 + 30 * S}, 3.0, 2.0); alarm({T0 + 31 * S}, float('nan'), "
              "float('nan'), p=float('nan'))")
            await _until(pilot, lambda: len(follower.alarms) == 5, 30, "two more alarms")
            await pilot.pause(0.1)
            assert app.bells == bells + 1
            assert app.message == "2 ALARMS: emi at no position; emi at x 3.00 y 2.00"
            rows = _text(app, "#alarms").splitlines()
            # a row without position keeps its columns where the others have them
            assert len(rows[2]) == len(rows[3]) == 30, rows
            assert rows[2][9:20] == "   --,   --" and rows[2].endswith(" 0.10  -- "), rows
            # (the late one, now fourth, may still be lit: its 3 s are not over)
            assert lit() in ([2, 3], [2, 3, 5])
            w.close()

        _run(app, scenario)
    finally:
        w.kill()
        follower.close()


# ---------------------------------------------------------------------- rates
def test_rate_after_a_pause_counts_the_frames_since_and_every_frame_reaches_the_chart(
        tmp_path):
    """A recorder paused for a minute, then resumed: the stream's rate is the
    frames per second since it resumed (it was the frames since before the
    pause over the minute: 8/s for a 1000/s detector, for 2 s), and the EMI
    chart is fed every frame (it skipped nine in ten of them for as long: the
    catch-up limit was taken from that rate). A stream that stops shows 0/s,
    not its last rate."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path, streams=("emi",))
    clock = Clock(T0 + 2 * S)
    follower = Follower(path, clock=clock, stale_after=3.0)
    app = ConsoleApp(follower, refresh_hz=10)
    fed: list[int] = []
    try:
        w("frames('emi', T0, 2000, 1000)")

        async def scenario(pilot):
            await _until(pilot, lambda: follower.streams.get("emi") is not None
                         and follower.streams["emi"].frames == 2000, 30, "the first 2 s")
            det = follower._det
            process = det.process

            def counted(samples, *a):
                fed.append(len(samples))
                return process(samples, *a)

            det.process = counted
            st = follower.streams["emi"]
            assert st.rate == pytest.approx(1000, rel=0.01)
            # resumed a minute later: 0.5 s of frames, then 0.1 s more
            clock.now = T0 + 62 * S + S // 2
            w("frames('emi', T0 + 62 * S, 500, 1000)")
            await _until(pilot, lambda: st.frames == 2500, 30, "the frames after the pause")
            w("frames('emi', T0 + 62 * S + S // 2, 100, 1000)")
            await _until(pilot, lambda: st.frames == 2600, 30, "more frames")
            await pilot.pause(0.2)
            assert sum(fed) == 600
            assert st.rate == pytest.approx(1000, rel=0.01)
            assert f"{1000.0:>9.1f}" in _text(app, "#streams").splitlines()[1]
            # the detector stops sending: after 2 s without a frame, 0/s
            clock.now += 5 * S
            await _until(pilot, lambda: st.stale, 30, "the stream to go stale")
            await pilot.pause(0.2)
            assert st.rate == 0.0
            line = _text(app, "#streams").splitlines()[1]
            assert line.split()[3] == "0.0" and "STALE" in line
            w.close()

        _run(app, scenario)
    finally:
        w.kill()
        follower.close()


def test_a_console_far_behind_shows_the_last_seconds_at_once(tmp_path):
    """A console that fell behind (its laptop slept, its terminal was stopped)
    reads only the last ``max_catch_up_s`` seconds of frames for its displays,
    whatever the rate it showed before, and counts every frame."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path, streams=("emi",))
    try:
        w("frames('emi', T0, 10, 10)")  # a slow start: 10 frames/s
        f = Follower(path, clock=Clock(T0 + S), max_catch_up_s=5.0, stale_after=1e9)
        assert f.poll() and f.streams["emi"].rate == pytest.approx(10, rel=0.01)
        fed: list[int] = []
        process = f._det.process
        f._det.process = lambda s, *a: (fed.append(len(s)), process(s, *a))[1]
        w("frames('emi', T0 + S, 60000, 1000)")  # then a minute at 1000/s
        t = time.monotonic()
        assert f.poll()
        assert time.monotonic() - t < 5.0
        assert f.streams["emi"].frames == 60010
        assert sum(fed) == pytest.approx(5000, abs=1)  # the last 5 s, not 50 frames
        assert f.streams["emi"].rate == pytest.approx(1000, rel=0.01)
        f.close()
        w.close()
    finally:
        w.kill()


# ---------------------------------------------------------------------- GPS loss
GATES = np.geomspace(10e-6, 1e-3, 8)


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)  # a write never hangs on a reader that stopped
    return master, slave, os.ttyname(slave)


def _write_all(fd: int, data: bytes, stop: threading.Event) -> None:
    view = memoryview(data)
    while view and not stop.is_set():
        _, ready, _ = select.select([], [fd], [], 0.1)
        if ready:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                pass


class _Devices:
    """A pulse-induction detector (500 readings/s) and an RTK receiver (10 Hz)
    on pseudo-terminals; the receiver can lose its fix or go quiet."""

    def __init__(self) -> None:
        from demine.positions import LocalFrame

        self.frame = LocalFrame(104.9, 12.5, 10.0)
        self.emi = _pty()
        self.gps = _pty()
        self.gps_mode = "fix"  # "fix", "nofix" (sentences without position), "quiet"
        self.stop = threading.Event()
        self.recorder = None
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def start(self, recorder) -> None:
        self.recorder = recorder
        self._thread.start()

    def _feed(self) -> None:
        from demine.drivers import get_driver
        from demine.drivers.nmea import GpsFix

        emi, nmea = get_driver("emi-pi"), get_driver("nmea")
        # pyserial flushes the input when it opens a port: start once both are open
        while not self.stop.is_set() and not all(
                r.stats.connected for r in self.recorder._readers.values()):
            time.sleep(0.01)
        rng = np.random.default_rng(2)
        k, t0 = 0, time.time_ns()
        while not self.stop.is_set():
            samples = (1e-3 * GATES ** -0.5 * (1 + 0.01 * rng.standard_normal((25, 8)))
                       ).astype("float32")
            _write_all(self.emi[0], emi.encode_arrays(np.arange(k * 25, k * 25 + 25),
                                                      np.arange(k * 25, k * 25 + 25) * 2000,
                                                      samples), self.stop)
            if k % 2 == 0 and self.gps_mode != "quiet":
                now = time.time_ns()
                x = 0.2 * (now - t0) / 1e9
                lon, lat = self.frame.to_geo(np.array([x]), np.array([1.0]))
                fix = self.gps_mode == "fix"
                _write_all(self.gps[0], nmea.encode(GpsFix(
                    time_ns=now, lat=float(lat[0]) if fix else math.nan,
                    lon=float(lon[0]) if fix else math.nan, alt=10.0,
                    fix_quality=4 if fix else 0, satellites=14 if fix else 3,
                    hdop=0.6 if fix else math.nan)), self.stop)
            k += 1
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        for fd in (*self.emi[:2], *self.gps[:2]):
            os.close(fd)


def test_gps_loss_is_shown_and_marks_get_no_position_from_before_it(tmp_path):
    """The receiver goes quiet, then sends sentences without a fix: the top line
    says GPS LOST / no fix and NO POSITION instead of the last fix ("RTK fixed"
    in green) and the last position, and a mark is written without a position
    and said so in red (it was placed at the position from before the loss,
    which the console kept showing)."""
    from demine.recorder import DeviceSpec, Recorder

    devices = _Devices()
    out = tmp_path / "lane.h5"
    sock = str(tmp_path / "control.sock")
    rec = Recorder(out, [DeviceSpec("emi-pi", devices.emi[2],
                                    calibration={"gate_times": GATES.tolist()}),
                         DeviceSpec("nmea", devices.gps[2])],
                   frame=devices.frame, flush_interval=0.1, startup_timeout=30,
                   control=sock)
    devices.start(rec)
    follower = None
    try:
        rec.start()
        follower = Follower(out, stale_after=1.5, position_stale_s=1.5)
        app = ConsoleApp(follower, control=ControlClient(sock, timeout=30.0), refresh_hz=10,
                         status_interval=0.3)

        def said(prefix: str) -> list[str]:
            return [m for m in app.messages if m.startswith(prefix)]

        async def scenario(pilot):
            await _until(pilot, lambda: "GPS RTK fixed" in _text(app, "#top")
                         and " x " in _text(app, "#top"), 60, "an RTK fix")
            top = _text(app, "#top")
            assert "GPS RTK fixed" in top and " x " in top and "NO POSITION" not in top
            await pilot.press("m")
            await _until(pilot, lambda: said("marked target"), 30, "the first mark")
            assert said("marked target")[-1].startswith("marked target at x ")
            # the receiver goes quiet (unplugged): the detector goes on
            devices.gps_mode = "quiet"
            await _until(pilot, lambda: "GPS LOST" in _text(app, "#top")
                         and "NO POSITION" in _text(app, "#top"), 30, "GPS LOST")
            await pilot.press("m")
            await _until(pilot, lambda: len(said("marked target")) == 2, 30, "the 2nd mark")
            assert said("marked target")[-1].startswith(
                "marked target WITHOUT POSITION (no GPS fix for "), app.messages
            # it sends again, without a fix
            devices.gps_mode = "nofix"
            await _until(pilot, lambda: "GPS no fix" in _text(app, "#top"), 30, "no fix")
            assert "NO POSITION" in _text(app, "#top")
            await pilot.press("m")
            await _until(pilot, lambda: len(said("marked target")) == 3, 30, "the 3rd mark")
            assert said("marked target")[-1] == (
                "marked target WITHOUT POSITION (the GPS has no fix): mark the spot on the "
                "ground")
            await pilot.press("q")

        _run(app, scenario)
    finally:
        rec.stop()
        devices.close()
        if follower is not None:
            follower.close()
    with Recording(out) as r:
        m = r.markers
    assert list(m["label"]) == ["target"] * 3
    assert np.isfinite(m["x"][0]) and np.isfinite(m["y"][0])
    assert np.isnan(m["x"][1:]).all() and np.isnan(m["y"][1:]).all()


# ---------------------------------------------------------------------- the file
def test_a_recorder_restarted_on_the_followed_file_records_and_is_followed(tmp_path):
    """The recording a console follows ends, and a recorder is started again on
    the same path (--overwrite) with one stream more. The console's HDF5 lock
    made that recorder fail ("unable to lock file") after HDF5 had truncated
    the file; now it records, and the console follows the new recording: its
    streams, its alarms only, and says what happened."""
    path = tmp_path / "lane.h5"
    first = StepWriter(path)
    clock = Clock(T0 + S)
    follower = Follower(path, clock=clock, stale_after=1e9)
    app = ConsoleApp(follower, refresh_hz=10)
    second = None
    try:
        first("frames('emi', T0, 500, 1000, x=1.0, y=2.0)", "frames('gps', T0, 5, 10, x=1.0)",
              f"alarm({T0 + S // 10}, 1.0, 2.0)")

        async def scenario(pilot):
            nonlocal second
            await _until(pilot, lambda: len(follower.alarms) == 1
                         and follower.streams["emi"].frames == 500, 30, "the first recording")
            first.close()
            second = StepWriter(path, streams=("emi", "gps", "gpr"), overwrite=True)
            second("frames('emi', T0 + 60 * S, 100, 1000, x=5.0, y=6.0)",
                   "frames('gpr', T0 + 60 * S, 40, 400, x=5.0, y=6.0)",
                   "frames('gps', T0 + 60 * S, 2, 10, x=5.0, y=6.0)",
                   f"alarm({T0 + 60 * S}, 5.0, 6.0, stream='gpr')")
            await _until(pilot, lambda: "gpr" in follower.streams
                         and follower.streams["gpr"].frames == 40, 30, "the new recording")
            await _until(pilot, lambda: len(follower.alarms) == 1, 30, "the new alarm")
            await pilot.pause(0.2)
            assert follower.alarms[0]["stream"] == "gpr"
            assert follower.streams["emi"].frames == 100
            assert follower.position == (5.0, 6.0)
            assert any(m.startswith("lane.h5 was ") and m.endswith(": following it afresh")
                       for m in app.messages), app.messages
            text = _text(app, "#alarms")
            assert "ALARMS 1" in text and "5.0,  6.0" in text and "1.0,  2.0" not in text
            assert "gpr" in _text(app, "#streams")
            second.close()

        _run(app, scenario)
    finally:
        first.kill()
        if second is not None:
            second.kill()
        follower.close()


@pytest.mark.parametrize("how", ["moved over", "truncated"])
def test_a_file_replaced_or_cut_under_the_console(tmp_path, how):
    """Another recording moved over the followed file is followed instead (the
    console read the old one, deleted, for ever); a file cut short is said so
    and waited for (it read what HDF5 had cached, or zeros)."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    follower = Follower(path, clock=Clock(T0 + S), stale_after=1e9)
    app = ConsoleApp(follower, refresh_hz=10)
    try:
        w("frames('emi', T0, 500, 1000)", f"alarm({T0}, 1.0, 2.0)")
        other = tmp_path / "other.h5"
        if how == "moved over":
            w2 = StepWriter(other, streams=("emi", "gpr"))
            w2("frames('emi', T0, 300, 1000)", "frames('gpr', T0, 20, 400)")
            w2.close()

        async def scenario(pilot):
            await _until(pilot, lambda: follower.is_open and len(follower.alarms) == 1,
                         30, "the recording")
            if how == "moved over":
                os.replace(other, path)
                await _until(pilot, lambda: "gpr" in follower.streams
                             and follower.streams["emi"].frames == 300, 30, "the other one")
                assert follower.alarms == []
                assert "ALARMS 0" in _text(app, "#alarms")
                assert any("lane.h5 was replaced by another file" in m for m in app.messages)
            else:
                w.close()
                os.truncate(path, os.path.getsize(path) // 2)
                await _until(pilot, lambda: not follower.is_open, 30, "the console to see it")
                await _until(pilot, lambda: "truncated" in (follower.error or ""), 30,
                             "the reason")
                assert "WAITING" in _text(app, "#top")
                assert "truncated" in _text(app, "#streams")
                assert app.return_code is None  # (it was a recording: not given up)

        _run(app, scenario)
    finally:
        w.kill()
        follower.close()


def test_a_recording_written_over_in_place_is_told_from_the_old_one_when_larger(tmp_path):
    """A new recording written over the followed one in place, grown past the
    old one's size before the console looks again (its laptop slept): the old
    HDF5 handle reads the new file's datasets (their layout is the same), so
    neither the size nor a read error tells; the first frame's time does."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    w("frames('emi', T0, 20, 1000)", f"alarm({T0}, 1.0, 2.0)")
    f = Follower(path, clock=Clock(T0 + S), stale_after=1e9)
    try:
        assert f.poll() and f.streams["emi"].frames == 20 and len(f.alarms) == 1
        w.close()
        size = os.path.getsize(path)
        w = StepWriter(path, overwrite=True)
        w("frames('emi', T0 + 100 * S, 3000, 1000)", "frames('gps', T0 + 100 * S, 30, 10)",
          f"alarm({T0 + 100 * S}, 7.0, 8.0); alarm({T0 + 101 * S}, 7.0, 9.0)")
        assert os.path.getsize(path) > size
        assert f.poll()
        assert f.reopened == 1 and "rewritten" in f.notice
        f.poll()
        assert f.streams["emi"].frames == 3000
        assert [a["y"] for a in f.alarms] == [8.0, 9.0]
        w.close()
    finally:
        w.kill()
        f.close()


# ---------------------------------------------------------------------- leaving
def test_ctrl_c_leaves_at_once_with_status_130(tmp_path):
    """Ctrl-C put up Textual's "Do you want to quit? Press ctrl+q" notice over
    the alarms for seconds and left the console running; it leaves now, with
    the status of an interrupt."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    follower = Follower(path, clock=Clock(T0 + S), stale_after=1e9)
    app = ConsoleApp(follower, refresh_hz=10)
    try:
        w("frames('emi', T0, 100, 1000)")

        async def scenario(pilot):
            from textual.widgets._toast import Toast

            await _until(pilot, lambda: follower.is_open, 30, "the recording")
            await pilot.press("ctrl+c")
            await _until(pilot, lambda: app.return_code is not None or app.query(Toast),
                         10, "Ctrl-C to do something")
            assert not app.query(Toast)

        _run(app, scenario)
        assert app.return_code == 130
        w.close()
    finally:
        w.kill()
        follower.close()


def _run_in_terminal(args: list[str], keys: bytes, ready: bytes, timeout: float = 120.0,
                     cols: int = 80, rows: int = 24, steps=None) -> tuple[int, bytes]:
    """Run ``demine ARGS`` on a pseudo-terminal of ``cols`` x ``rows``, type
    ``keys`` once ``ready`` is on the screen; its exit status and output.
    ``steps``: instead, (what to wait for, bytes to type or a function of the
    process) pairs, in order."""
    import fcntl
    import struct
    import termios

    steps = list(steps) if steps is not None else [(ready, keys)]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    proc = subprocess.Popen([sys.executable, "-m", "demine", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    seen = 0  # output already matched by the steps done
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # (the terminal's other end closed: it exited)
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            if steps and steps[0][0] in out[seen:]:
                seen = len(out)
                _, action = steps.pop(0)
                time.sleep(0.5)  # (a few screen updates)
                if callable(action):
                    action(proc)
                else:
                    os.write(master, action)
            if proc.poll() is not None and not r:
                break
        else:
            raise AssertionError(f"demine {' '.join(args)} did not end; output "
                                 f"{out[-2000:]!r}")
        return proc.wait(30), out
    finally:
        if proc.poll() is None:  # (failed: end what it started too)
            for pid in _children(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.kill()
            proc.wait(30)
        os.close(master)


def own_tmpdir(tmp_path: Path, monkeypatch) -> Path:
    """Give the processes the test starts (and this one) an empty TMPDIR, where
    ``demine console --simulate/--device`` makes its directory; return it."""
    import tempfile

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", None)  # (gettempdir() looks again)
    return d


@pytest.fixture
def console_tmpdir(tmp_path, monkeypatch):
    return own_tmpdir(tmp_path, monkeypatch)


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(k) for k in fh.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


@pytest.mark.parametrize(("key", "status"), [(b"q", 0), (b"\x03", 130)])
def test_cli_console_in_a_terminal_q_and_ctrl_c(tmp_path, key, status):
    """On a real terminal: q ends with status 0, Ctrl-C with 130."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    try:
        w("frames('emi', T0, 100, 1000)")
        code, out = _run_in_terminal(["console", str(path)], key, b"FOLLOW")
        assert code == status, out[-2000:]
        w.close()
    finally:
        w.kill()


def test_cli_ctrl_c_leaves_the_recorder_it_started_recording(tmp_path, console_tmpdir):
    """``demine console --simulate``: Ctrl-C ends the console (130) and not the
    recording, and says how to follow it again and stop it (as a console crash
    does; q stops it). The directory of its control socket stays (it is used)."""
    out = tmp_path / "sim.h5"
    code, text = _run_in_terminal(["console", "--simulate", "demo-lane", "--out", str(out)],
                                  b"\x03", b"REC")
    said = text.decode(errors="replace")
    pids = [int(p) for p in __import__("re").findall(r"pid (\d+)", said)]
    try:
        assert code == 130, said[-2000:]
        assert "keeps recording" in said and len(pids) == 2, said[-2000:]
        (kept,) = console_tmpdir.iterdir()
        assert f"--control {kept / 'control.sock'}" in said.replace("\r\n", "")
        assert (kept / "control.sock").exists()
        recorder = pids[0]
        os.kill(recorder, 0)  # still there
        size = os.path.getsize(out)
        deadline = time.monotonic() + 30
        while os.path.getsize(out) == size and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.getsize(out) > size  # and recording
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:  # (not our children: wait for them to go)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


# ---------------------------------------------------------------------- the recorder
@pytest.mark.parametrize("started", [True, False], ids=["started", "--control"])
def test_a_recorder_killed_is_said_and_stays_said(tmp_path, started):
    """kill -9 of the recorder: the top line went on saying "● REC", and the
    reason it exited was replaced a second later by "recorder not answering",
    said again every second. Now the top line says STOPPED (a recorder this
    console started) or NO RECORDER (one it reaches by --control), the exit is
    said once and stays, and a key says at once that nothing is recorded."""
    sim, ports = start_simulator("demo-lane", ("emi-pi", "nmea"), seed=3,
                                 log=tmp_path / "sim.log")
    out = tmp_path / "rec.h5"
    sock = str(tmp_path / "control.sock")
    rec = follower = None
    try:
        rec = start_recorder([f"{d}={p}" for d, p in ports], out, sock,
                             log=tmp_path / "rec.log", extra=["--flush-interval", "0.1"])
        wait_for_control(sock, rec, timeout=60)
        follower = Follower(out, stale_after=10.0)
        app = ConsoleApp(follower, control=ControlClient(sock, timeout=30.0),
                         recorder=rec if started else None, recorder_log=tmp_path / "rec.log",
                         refresh_hz=10, status_interval=0.2)

        async def scenario(pilot):
            await _until(pilot, lambda: app.recorder_status is not None
                         and follower.streams.get("emi") is not None
                         and follower.streams["emi"].frames > 100, 60, "recording")
            assert "● REC" in _text(app, "#top")
            os.kill(rec.pid, signal.SIGKILL)
            rec.wait(30)
            word = "STOPPED" if started else "NO RECORDER"
            await _until(pilot, lambda: word in _text(app, "#top"), 30, word)
            assert "● REC" not in _text(app, "#top")
            said = list(app.messages)[-1]
            if started:
                assert said.startswith("recorder exited (status -9): NOT RECORDING")
            else:
                assert said.startswith("recorder not answering: status: no recorder listening")
            ticks = app.ticks
            await _until(pilot, lambda: app.ticks > ticks + 15, 30, "ten status intervals")
            assert list(app.messages)[-1] == said == app.message
            if started:
                await pilot.press("m")
                await pilot.pause()
                assert app.message == ("mark: the recorder exited (status -9): nothing is "
                                       "being recorded")

        _run(app, scenario)
    finally:
        if follower is not None:
            follower.close()
        stop_process(rec)
        stop_process(sim)


def test_streams_of_a_paused_recorder_are_paused_not_stale(tmp_path):
    """Paused by the operator (r), the recorder drops every frame: the streams
    were all drawn STALE, white on red, as a failure would be."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    clock = Clock(T0 + S)
    follower = Follower(path, clock=clock, stale_after=3.0)

    gps = {"connected": True}

    def recorder(req):
        return {"status": {"paused": True, "threshold": None,
                           "devices": {"gps": {"crc_errors": 0, **gps}}}}

    try:
        w("frames('emi', T0, 100, 1000)", "frames('gps', T0, 2, 10)")
        with ControlServer(str(tmp_path / "c.sock"), recorder) as srv:
            app = ConsoleApp(follower, control=ControlClient(srv.address, timeout=30.0),
                             refresh_hz=10, status_interval=0.1)

            async def scenario(pilot):
                await _until(pilot, lambda: app.paused and follower.is_open, 30, "paused")
                clock.now += 60 * S
                await _until(pilot, lambda: all(s.stale for s in follower.streams.values()),
                             30, "no frames for a minute")
                await pilot.pause(0.2)
                lines = _text(app, "#streams").splitlines()[1:]
                assert len(lines) == 2 and all(ln.endswith("PAUSED") for ln in lines), lines
                top = _text(app, "#top")
                assert "PAUSED" in top
                # nor the GPS lost: the recorder still follows it (console audit)
                assert "GPS (paused)" in top and "GPS LOST" not in top, top
                # unless the recorder has lost the receiver meanwhile (review)
                gps["connected"] = False
                await _until(pilot, lambda: "GPS LOST" in _text(app, "#top"), 30,
                             "the receiver lost while paused")

            _run(app, scenario)
        w.close()
    finally:
        w.kill()
        follower.close()


def test_chart_axis_says_large_statistics_in_five_characters(tmp_path):
    """The chart's top label was the number cut to six characters: 1247811 read
    124781. Now 1.2M (and 248k for 247811)."""
    from textual.app import App

    class ChartApp(App):
        def compose(self):
            yield StripChart()

    app = ChartApp()

    async def main():
        async with app.run_test(size=(40, 10)) as pilot:
            chart = app.query_one(StripChart)
            for top, label in ((1247811 / 1.1, "  1.2M "), (247811 / 1.1, "  248k "),
                               (500 / 1.1, "   500 ")):
                chart.set_data([top, 1.0], [2.0, 2.0], "EMI statistic")
                await pilot.pause()
                first = chart.render_line(1).text
                assert first.startswith(label[1:]), (first, label)

    asyncio.run(main())


def test_ctrl_c_while_the_recorder_starts_leaves_nothing_running(tmp_path, console_tmpdir):
    """Ctrl-C while the console waits for the recorder it started (its device
    has not sent a frame yet): the recorder was left running, holding the
    serial port the next console needs, with nothing said; now it is stopped
    (and its directory removed: nothing failed)."""
    master, slave = pty.openpty()  # a device that sends nothing
    tty.setraw(slave)
    # (SIGINT at its default, as a terminal's foreground process has it: a suite
    # run in the background without job control starts with it ignored, and the
    # child would inherit that)
    proc = subprocess.Popen([sys.executable, "-m", "demine", "console", "--device",
                             f"emi-pi={os.ttyname(slave)}", "--out", str(tmp_path / "x.h5")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started: list[int] = []
    try:
        assert proc.stderr.readline().startswith("starting recorder -> ")
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            started = _children(proc.pid)
            time.sleep(0.05)
        (recorder,) = started
        with open(f"/proc/{recorder}/cmdline", "rb") as fh:
            assert b"record" in fh.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        assert "interrupted" in proc.stderr.read()
        # (the recorder would wait 10 s for the device's first frames)
        try:
            with open(f"/proc/{recorder}/stat") as fh:
                state = fh.read().split()[2]
        except FileNotFoundError:  # (stopped and waited for)
            state = "gone"
        assert state in ("Z", "X", "gone"), "the recorder is still running"
        assert list(console_tmpdir.iterdir()) == []
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        os.close(master)
        os.close(slave)


def test_a_recording_that_gets_shorter_but_is_whole_is_not_read_again(tmp_path):
    """HDF5 may give back free space at the end of a file when its writer
    closes it: the file is shorter, and still the recording followed. It is
    not followed afresh (its alarms would be announced again)."""
    path = tmp_path / "lane.h5"
    w = StepWriter(path)
    w("frames('emi', T0, 200, 1000)", f"alarm({T0}, 1.0, 2.0)")
    w.close()
    size = os.path.getsize(path)
    with open(path, "ab") as fh:  # space past the end of the HDF5 file ...
        fh.write(b"\0" * 100_000)
    f = Follower(path, clock=Clock(T0 + S), stale_after=1e9)
    try:
        assert f.poll() and len(f.alarms) == 1
        f.poll()
        os.truncate(path, size)  # ... given back
        assert not f.poll()
        assert f.reopened == 0 and f.notice is None and f.new_alarms == 0
        os.truncate(path, size - 1000)  # cut into the recording: that is news
        assert f.poll() and f.reopened == 1
        assert "truncated: the HDF5 superblock says" in f.notice
    finally:
        w.kill()
        f.close()


def test_cli_q_after_the_recorder_died_says_so_and_stops_the_simulator(tmp_path,
                                                                        console_tmpdir):
    """The recorder the console started is killed; q then printed "recording
    stopped" and ended with status 0, as after a good recording. Now it says
    the recorder had exited, with its status and log, and ends with 1; the
    simulator is stopped either way. The directory with the logs is kept."""
    out = tmp_path / "sim.h5"
    started: list[int] = []

    def kill_recorder(proc) -> None:
        started.extend(_children(proc.pid))
        for pid in started:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b" record" in fh.read().replace(b"\0", b" "):
                    os.kill(pid, signal.SIGKILL)

    try:
        code, text = _run_in_terminal(
            ["console", "--simulate", "demo-lane", "--out", str(out)], b"", b"",
            steps=[(b"REC", kill_recorder), (b"STOPPED", b"q")])
        said = text.decode(errors="replace")
        assert code == 1, said[-2000:]
        assert "the recorder had exited with status -9 (its log: " in said
        assert "recording stopped" not in said
        (kept,) = console_tmpdir.iterdir()
        assert f"logs kept in {kept}" in said.replace("\r\n", "")
        assert (kept / "recorder.log").exists() and (kept / "simulator.log").exists()
        assert len(started) == 2
        for pid in started:  # the simulator too (not our child: wait for it to go)
            deadline = time.monotonic() + 30
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().split()[2] == "Z":
                        break
                time.sleep(0.1)
            else:
                assert not os.path.exists(f"/proc/{pid}"), f"process {pid} left running"
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_recorder_control_places_a_marker_on_its_track_at_the_time_given():
    """The recorder's side of a mark without x, y: its track at the time of the
    key (a recorder slow to answer still places it where the key was pressed),
    its last fix when the key came a little after it, none after a gap or
    without GPS -- with the reason in the reply."""
    from demine.control import RecorderControl
    from demine.recorder import _Track

    class Writer:
        def __init__(self):
            self.rows = []

        def append_markers(self, row):
            self.rows.append(row)

        def flush(self):
            pass

    class Rec:
        def __init__(self, has_gps=True):
            self.writer, self._track, self._has_gps = Writer(), _Track(), has_gps
            self.paused = False

    rec = Rec()
    t = T0 + np.arange(11) * (S // 10)  # 1 s of 10 Hz fixes along x at 1 m/s
    rec._track.add(t, np.column_stack([np.linspace(0, 1, 11), np.full(11, 2.0),
                                       np.zeros(11)]))
    control = RecorderControl(rec)

    def mark(when):
        reply = control({"cmd": "mark", "time": int(when)})
        return reply["marker"]["x"], reply["marker"]["y"], reply.get("position")

    x, y, why = mark(T0 + S // 4)  # pressed a while ago: the track then
    assert (x, y, why) == (pytest.approx(0.25), pytest.approx(2.0), None)
    assert mark(T0 + S + S // 20)[:2] == (pytest.approx(1.0), pytest.approx(2.0))  # last fix
    x, y, why = mark(T0 + 13 * S)
    assert np.isnan(x) and np.isnan(y) and why == "no GPS fix for 12 s"
    assert control({"cmd": "mark", "x": 5.0, "y": 6.0})["marker"]["x"] == 5.0  # as given
    assert control({"cmd": "pause", "time": int(T0 + S // 2)})["marker"]["x"] == \
        pytest.approx(0.5)
    with pytest.raises(Exception, match="'time' must be an integer"):
        control({"cmd": "mark", "time": "now"})
    x, y, why = RecorderControl(Rec(has_gps=False))._position(T0)
    assert np.isnan(x) and why == "no GPS in this recording"
    x, y, why = RecorderControl(Rec())._position(T0)
    assert np.isnan(x) and why == "no GPS fix yet"
