"""The field console (Textual pilot) following recordings that other processes write."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("textual")

from demine.cli import main as cli_main  # noqa: E402
from demine.console import Follower  # noqa: E402
from demine.console.app import CONTROL_TIMEOUT, ConsoleApp  # noqa: E402
from demine.console.launch import (  # noqa: E402
    start_recorder,
    start_simulator,
    stop_process,
    wait_for_control,
)
from demine.console.widgets import AlarmList, StripChart, Waterfall  # noqa: E402
from demine.control import ControlClient, ControlServer  # noqa: E402
from demine.recording import Recording  # noqa: E402

# A writer process: live EMI, GPR and GPS frames stamped with the current time,
# one alarm after ~1 s, until its stdin is closed (at most DURATION seconds);
# then it closes the file and exits.
WRITER = textwrap.dedent("""
    import select, sys, time
    import numpy as np
    from demine.recording import RecordingWriter
    path, duration = sys.argv[1], float(sys.argv[2])
    rng = np.random.default_rng(1)
    gates = np.geomspace(1e-5, 1e-3, 16)
    with RecordingWriter(path, flush_interval=0.1) as w:
        emi = w.add_stream("emi", "emi", n_channels=16, gate_times=gates,
                           attrs={"sample_rate": 500.0})
        gpr = w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=1e-10)
        gps = w.add_stream("gps", "gps")
        t0 = time.time(); k = 0; alarm_done = False
        while time.time() - t0 < duration:
            if select.select([sys.stdin], [], [], 0)[0]:  # closed: stop
                break
            now = time.time_ns()
            x = 0.5 * (time.time() - t0)
            emi.append(1e-3 * gates[None, :] ** -0.5 * (1 + 0.01 * rng.standard_normal((25, 16))),
                       time=now - np.arange(25)[::-1] * 2_000_000,
                       sequence=np.arange(k * 25, k * 25 + 25),
                       x=np.full(25, x), y=np.full(25, 2.0))
            gpr.append((1000 * rng.standard_normal((4, 64))).astype("int16"),
                       time=now - np.arange(4)[::-1] * 12_500_000,
                       sequence=np.arange(k * 4, k * 4 + 4),
                       x=np.full(4, x), y=np.full(4, 2.0))
            if k % 5 == 0:
                gps.append(time=[now], x=[x], y=[2.0], lon=[10.0], lat=[50.0], alt=[100.0],
                           fix_quality=[4], satellites=[12], hdop=[0.7])
            if not alarm_done and time.time() - t0 > 1.0:
                w.append_alarms({"time": [now], "stream": ["emi"], "x": [1.25], "y": [2.0],
                                 "depth": [0.12], "score": [9.0], "p_mine": [0.8]})
                w.flush()
                alarm_done = True
            if k == 2:
                w.flush()
                print("started", flush=True)
            k += 1
            time.sleep(0.05)
""")


def _start_writer(path: Path, duration: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(duration)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


async def _until(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def _streams_text(app: ConsoleApp):
    return app.query_one("#streams").render()


def _red_lines(app: ConsoleApp) -> list[str]:
    """Lines of the stream panel drawn white on red."""
    text = _streams_text(app)
    red = []
    for span in text.spans:
        bg = getattr(span.style, "background", None)  # textual Content style
        rgb = (bg.r, bg.g, bg.b) if bg is not None and hasattr(bg, "r") else None
        if rgb == (192, 0, 0) or "#c00000" in str(span.style):
            red.append(text.plain[span.start:span.end])
    return red


def test_follows_writer_process_alarm_and_stale(tmp_path):
    """The writer runs until the test has seen the live state (however slowly the
    console starts), and the console's clock jumps ahead once it stopped: "live"
    and "stale" do not depend on how the two processes are scheduled."""
    path = tmp_path / "live.h5"
    writer = _start_writer(path, duration=300.0)
    skew = [0]  # ns added to the console's clock
    follower = Follower(path, stale_after=10.0, clock=lambda: time.time_ns() + skew[0])
    app = ConsoleApp(follower, refresh_hz=10)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: follower.streams.get("emi") is not None
                         and follower.streams["emi"].frames > 0, 30, "first frames")
            n0 = follower.streams["emi"].frames
            await _until(pilot, lambda: follower.streams["emi"].frames > n0 + 50, 30,
                         "the file to grow")
            # live streams are not stale, shown OK, and none of them red
            assert not any(s.stale for s in follower.streams.values())
            assert "OK" in _streams_text(app).plain
            assert _red_lines(app) == []
            # the alarm the writer appends shows up in the list, with a bell
            await _until(pilot, lambda: len(follower.alarms) == 1, 30, "the alarm")
            await pilot.pause(0.2)
            alarms = app.query_one(AlarmList)
            text = alarms.render().plain
            assert "ALARMS 1" in text and "1.2,  2.0" in text and "0.12 0.80" in text
            assert alarms.shown_at.get(0) is not None
            assert app.bells == 1
            assert "ALARM emi" in app.message
            # GPS fix and HDOP in the top line
            top = app.query_one("#top").render().plain
            assert "GPS RTK fixed" in top and "hdop 0.7" in top
            # the chart and waterfall hold data
            assert len(follower.chart.values) > 0
            assert follower.waterfall.n_columns > 0
            assert app.query_one(StripChart).paints > 0
            assert app.query_one(Waterfall).paints > 0
            # read-only: the keys that need the recorder say so and write nothing
            for key in ("m", "r"):
                await pilot.press(key)
                await pilot.pause()
                assert app.message.startswith("read-only"), (key, app.message)
                # (whole at 80 columns: the way out had been cut off)
                assert len(app.message) <= 78 and "--control ADDR" in app.message
            thr = follower.threshold
            await pilot.press("plus")
            await pilot.pause()
            assert follower.threshold == pytest.approx(thr + 0.5)
            assert "here only" in app.message and len(app.message) <= 78, app.message
            # the chart's detector moved its shape channel too
            shape = follower._det.sd.detector._shape
            assert shape is not None and shape.threshold == pytest.approx(thr + 0.5)
            # the writer stops and time passes: every stream turns stale, drawn in
            # red (in the same tick: the panel is drawn right after the poll)
            writer.stdin.close()
            assert writer.wait(30) == 0
            skew[0] = 2 * int(follower.stale_after * 1e9)
            await _until(pilot, lambda: all(s.stale for s in follower.streams.values()), 30,
                         "streams to go stale")
            red = _red_lines(app)
            assert len(red) == 3 and all("STALE" in r for r in red)
            await pilot.press("q")
        assert app.return_code == 0

    try:
        asyncio.run(scenario())
    finally:
        if writer.poll() is None:
            writer.kill()
        follower.close()
    with Recording(path) as rec:
        assert len(rec.table("markers")) == 0


def test_follower_counts_gaps_and_skips_history(tmp_path):
    from demine.recording import RecordingWriter

    path = tmp_path / "old.h5"
    t = np.arange(3000, dtype=np.int64) * 10_000_000  # 30 s at 100 Hz, in 1970
    seq = np.arange(3000)
    seq[1000:] += 5  # one gap
    seq[2000:] += 1  # another
    with RecordingWriter(path) as w:
        s = w.add_stream("gps", "gps")
        s.append(time=t, sequence=seq, fix_quality=np.full(3000, 1), hdop=np.full(3000, 1.5),
                 lon=np.zeros(3000), lat=np.zeros(3000), alt=np.zeros(3000),
                 satellites=np.full(3000, 7))
    f = Follower(path, history_s=5.0, stale_after=1.0)
    assert f.poll()
    st = f.streams["gps"]
    assert st.gaps == 2
    assert st.frames == 3000
    assert st.stale and st.age > 1e6
    assert f.gps == {"fix_quality": 1, "fix": "GPS", "hdop": 1.5, "satellites": 7}
    assert f.duration_s == pytest.approx(29.99)
    assert not f.poll()  # nothing new
    f.close()


def test_keys_reach_a_real_recorder(tmp_path):
    """Simulated devices -> `demine record --control` process <- console keys."""
    out = tmp_path / "rec.h5"
    sock = str(tmp_path / "control.sock")
    sim, ports = start_simulator("demo-lane", ("emi-pi", "nmea"), seed=3,
                                 log=tmp_path / "sim.log")
    rec = None
    try:
        devices = [f"{d}={p}" for d, p in ports]
        rec = start_recorder(devices, out, sock, log=tmp_path / "rec.log",
                             extra=["--detect", "--scene", "demo-lane",
                                    "--flush-interval", "0.2"])
        wait_for_control(sock, rec, timeout=60)
        # the recorder runs in its own session: a console crash or a closed terminal
        # (SIGHUP to the console's session) does not reach it
        assert os.getsid(rec.pid) == rec.pid != os.getsid(0)
        follower = Follower(out, stale_after=10.0)
        # (a bound for a loaded machine; the console's own is CONTROL_TIMEOUT)
        control = ControlClient(sock, timeout=30.0)
        app = ConsoleApp(follower, control=control, recorder=rec, refresh_hz=10,
                         status_interval=0.3)

        def emi_written() -> int:  # frames the recorder has appended (status request)
            return control.request("status")["status"]["devices"]["emi"]["frames"]

        async def settled(pilot) -> int:
            """EMI frames written, once two status replies agree and the file
            shows them all (the replies are a file flush and a tick apart)."""
            n = -1
            while (m := emi_written()) != n:
                n = m
                await _until(pilot, lambda n=n: follower.streams["emi"].frames >= n, 30,
                             f"{n} EMI frames in the file")
            return n

        start: dict[str, float] = {}

        async def scenario():
            async with app.run_test(size=(80, 24)) as pilot:
                await _until(pilot, lambda: app.recorder_status is not None
                             and follower.streams.get("emi") is not None
                             and follower.streams["emi"].frames > 200, 30, "recording")
                assert "● REC" in app.query_one("#top").render().plain
                assert app.query_one("#streams").render().plain.count("OK") == 2
                # crc errors come from the recorder over the channel
                assert follower.streams["emi"].crc_errors == 0
                # the replies come from the console's control thread; an alarm
                # notice may arrive in between: look in the message log
                await pilot.press("m")
                await _until(pilot, lambda: any(m.startswith("marked target at x")
                                                for m in app.messages), 30, "the mark")
                # the start threshold is the default detector's (its scale depends on
                # the chain); each key moves it by 0.5 in the recorder's detector
                t0 = start["threshold"] = follower.threshold
                assert t0 is not None and t0 > 1
                await pilot.press("plus")
                await _until(pilot, lambda: any(f"detector threshold {t0 + 0.5:.1f}" in m
                                                for m in app.messages), 30, "threshold +")
                assert follower.threshold == pytest.approx(t0 + 0.5)
                await pilot.press("minus")
                await pilot.press("minus")
                await _until(pilot, lambda: sum("detector threshold" in m
                                                for m in app.messages) == 3, 30, "threshold -")
                assert follower.threshold == pytest.approx(t0 - 0.5)
                await pilot.press("n")
                await _until(pilot, lambda: any(m.startswith("nulled") for m in app.messages),
                             30, "the null")
                await pilot.press("r")
                await _until(pilot, lambda: any("PAUSED" in m for m in app.messages), 30,
                             "the pause")
                assert app.paused
                await pilot.pause(0.5)
                assert "PAUSED" in app.query_one("#top").render().plain
                # what the recorder took in before the pause is still written (the
                # pass under way); after that nothing
                n_paused = await settled(pilot)
                await pilot.pause(1.0)
                assert await settled(pilot) == n_paused  # nothing written
                assert follower.streams["emi"].frames == n_paused
                await pilot.press("r")
                await _until(pilot, lambda: any("resumed" in m for m in app.messages), 30,
                             "the resume")
                assert not app.paused
                await _until(pilot, lambda: follower.streams["emi"].frames > n_paused + 100,
                             30, "recording to resume")
                await pilot.press("q")
            assert app.return_code == 0

        asyncio.run(scenario())
        follower.close()
        assert stop_process(rec) == 0
    finally:
        stop_process(rec)
        stop_process(sim)
    with Recording(out) as r:
        m = r.markers
    labels = list(m["label"])
    assert labels == ["target", "threshold", "threshold", "threshold", "null", "pause",
                      "resume"], labels
    t0 = start["threshold"]
    assert list(m["note"][1:4]) == [f"{t0 + 0.5:g}", f"{t0:g}", f"{t0 - 0.5:g}"]
    assert np.isfinite(m["x"][0]) and np.isfinite(m["y"][0])
    assert np.all(np.diff(m["time"]) > 0)


def test_keys_do_not_freeze_the_screen_while_the_recorder_is_busy(tmp_path):
    """The recorder takes its time over a mark (held here until the test lets it
    go): the console keeps updating meanwhile, and the keys pressed in between
    (r twice: pause, then resume) are sent in order once it answers."""
    entered, release = threading.Event(), threading.Event()
    done: list[str] = []

    def recorder(req):  # a recorder's control handler whose writes are slow
        if req["cmd"] == "status":
            return {"status": {"paused": done[-1:] == ["pause"],
                               "devices": {}, "threshold": None}}
        entered.set()
        assert release.wait(60)
        done.append(req["cmd"])
        return {"marker": {"x": 1.0, "y": 2.0}, "paused": req["cmd"] == "pause"}

    follower = Follower(tmp_path / "not-yet.h5")
    with ControlServer(str(tmp_path / "c.sock"), recorder) as srv:
        app = ConsoleApp(follower, control=ControlClient(srv.address, timeout=30.0),
                         refresh_hz=10, status_interval=0.2)

        async def scenario():
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("m")
                await _until(pilot, entered.is_set, 30, "the mark to reach the recorder")
                n = app.ticks
                await _until(pilot, lambda: app.ticks > n + 5, 30, "the screen to update")
                await pilot.press("r")
                await pilot.press("r")
                await pilot.pause()
                assert not any(m.startswith(("marked", "recording")) for m in app.messages)
                release.set()
                await _until(pilot, lambda: len(done) == 3
                             and any("resumed" in m for m in app.messages), 30, "the replies")
                assert done == ["mark", "pause", "resume"]
                said = [m for m in app.messages if m.startswith(("marked", "recording"))]
                assert said == ["marked target at x 1.00 y 2.00",
                                "recording PAUSED (frames are dropped until r)",
                                "recording resumed"]
                assert not app.paused
                await pilot.press("q")
            assert app.return_code == 0

        try:
            asyncio.run(scenario())
        finally:
            release.set()
            follower.close()


class _FakeControl:
    """A recorder's control socket (a real Unix socket, one thread per
    connection) whose subclass answers the requests (:meth:`_serve`)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self.path)
        self._listener.listen(8)
        self._listener.settimeout(0.1)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _hang_up(self) -> None:
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the reader; the client sees EOF
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._hang_up()
        for t in self._threads:
            t.join(30)
        self._listener.close()


class _MuteRecorder(_FakeControl):
    """A control socket that answers status but not marks, holding those
    connections open until :meth:`cut`; from then on it reads each request and
    hangs up without a reply (a recorder that stopped answering)."""

    def __init__(self, path: Path) -> None:
        self.seen: list[dict] = []
        self._cut = threading.Event()
        super().__init__(path)

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                req = json.loads(line)
                self.seen.append(req)
                if self._cut.is_set():
                    return
                if req["cmd"] == "status":
                    f.write(json.dumps({"ok": True, "id": req["id"], "status": {
                        "paused": False, "devices": {}, "threshold": None}}).encode() + b"\n")
                    f.flush()

    def cut(self) -> None:
        self._cut.set()
        self._hang_up()

    def close(self) -> None:
        self.cut()
        super().close()


def test_quit_skips_the_keys_queued_behind_a_recorder_that_stopped_answering(tmp_path):
    """A mark gets no reply and the operator presses m three more times, then q:
    the console waits for the mark under way (the recorder may still carry it out)
    but does not send the three queued behind it, each of which would have cost
    another timeout (2 x CONTROL_TIMEOUT) with the screen frozen."""
    rec = _MuteRecorder(tmp_path / "c.sock")
    follower = Follower(tmp_path / "not-yet.h5")
    app = ConsoleApp(follower, control=ControlClient(rec.path, timeout=30.0),
                     refresh_hz=10, status_interval=3600)

    def marks() -> list[str]:
        return [r["id"] for r in list(rec.seen) if r["cmd"] == "mark"]

    def cut_when_quitting() -> None:  # (the recorder dies once q was pressed)
        deadline = time.monotonic() + 60
        while app.return_code is None and time.monotonic() < deadline:
            time.sleep(0.01)
        rec.cut()

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("m")
            await _until(pilot, lambda: len(marks()) == 1, 30, "the mark to reach the recorder")
            for _ in range(3):
                await pilot.press("m")
            await pilot.press("q")
        assert app.return_code == 0

    cutter = threading.Thread(target=cut_when_quitting)
    cutter.start()
    try:
        asyncio.run(scenario())
    finally:
        cutter.join(60)
        rec.close()
        follower.close()
    # the first mark: sent, and sent again with the same id; the others: not sent
    ids = marks()
    assert len(ids) == 2 and len(set(ids)) == 1, rec.seen


def test_refusals_name_the_command_once(tmp_path):
    """The recorder refuses a mark and a pause: the message line names each
    command once ("mark: ...", not "mark: mark: ...")."""
    def recorder(req):
        if req["cmd"] == "status":
            return {"status": {"paused": False, "devices": {}, "threshold": None}}
        raise ValueError("the recording is not open yet")

    follower = Follower(tmp_path / "not-yet.h5")
    with ControlServer(str(tmp_path / "c.sock"), recorder) as srv:
        app = ConsoleApp(follower, control=ControlClient(srv.address, timeout=30.0),
                         refresh_hz=10, status_interval=3600)

        async def scenario():
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("m")
                await pilot.press("r")
                await _until(pilot, lambda: len([m for m in app.messages
                                                 if "not open" in m]) == 2, 30, "the refusals")
                assert [m for m in app.messages if "not open" in m] == [
                    "mark: the recording is not open yet",
                    "pause: the recording is not open yet"]
                await pilot.press("q")
            assert app.return_code == 0

        try:
            asyncio.run(scenario())
        finally:
            follower.close()


def _msg_line(app: ConsoleApp) -> str:
    """The message line as drawn on the screen."""
    return app.query_one("#msg").render_line(0).text.rstrip()


def test_a_request_without_reply_says_so_in_one_screen_line(tmp_path):
    """The recorder answers neither attempt of a mark and of a pause: the message
    line names the command once and says, within 80 columns, that the recorder
    may still carry it out (the channel's address is left out)."""
    rec = _MuteRecorder(tmp_path / "c.sock")
    follower = Follower(tmp_path / "not-yet.h5")
    # (a short timeout instead of waiting 2 x CONTROL_TIMEOUT; status is answered)
    app = ConsoleApp(follower, control=ControlClient(rec.path, timeout=0.05),
                     refresh_hz=10, status_interval=3600)
    said: dict[str, str] = {}

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            for key, cmd in (("m", "mark"), ("r", "pause")):
                await pilot.press(key)
                await _until(pilot, lambda cmd=cmd: _msg_line(app).startswith(f"{cmd}:"), 30,
                             f"the {cmd} to fail")
                said[cmd] = _msg_line(app)
            await pilot.press("q")
        assert app.return_code == 0

    try:
        asyncio.run(scenario())
    finally:
        rec.close()
        follower.close()
    assert said == {cmd: f"{cmd}: no reply in 0.1 s — it may still be carried out"
                    for cmd in ("mark", "pause")}
    # with the console's own timeout the longest command's message fits too
    long = ControlClient(rec.path, timeout=CONTROL_TIMEOUT)._no_reply(
        "threshold", [TimeoutError("timed out")] * 2).summary
    assert long == "threshold: no reply in 10 s — it may still be carried out"
    assert len(long) <= 80


def test_cli_console_errors(capsys, tmp_path):
    assert cli_main(["console"]) == 2
    assert "give a FILE" in capsys.readouterr().err
    assert cli_main(["console", "--device", "emi-pi=/dev/null"]) == 2
    assert "--out" in capsys.readouterr().err
    existing = tmp_path / "x.h5"
    existing.write_bytes(b"")
    assert cli_main(["console", "--simulate", "demo-lane", "--out", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err
