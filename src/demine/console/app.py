"""The field console: a Textual app that follows a recording as it grows."""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static

from ..control import ControlClient, ControlError
from .follow import Follower
from .widgets import AlarmList, StripChart, Waterfall

__all__ = ["CONTROL_TIMEOUT", "ConsoleApp"]

#: Seconds the console waits for the recorder's reply, per attempt (a request
#: without a reply is sent once more, with the same id: the recorder carries it
#: out once).  The requests run in a thread of their own: the screen keeps
#: updating while a busy recorder answers.
CONTROL_TIMEOUT = 5.0

_CSS = """
Screen { background: #000000; color: #ffffff; layout: vertical; }
#top { height: 1; background: #000000; }
#streams { height: auto; max-height: 6; background: #000000; }
#body { height: 1fr; }
#left { width: 1fr; }
#chart { height: 1fr; min-height: 8; }
#waterfall { height: 2fr; min-height: 3; max-height: 25; }
#alarms { width: 31; border-left: solid #ffffff; padding: 0 0 0 0; }
#msg { height: 1; background: #000000; }
#keys { height: 1; background: #ffffff; color: #000000; }
"""

#: (short enough for the message line at 80 columns with what comes before it:
#: the way out had been cut off)
_READ_ONLY = "read-only: give --control ADDR to act"


def _fmt_duration(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "--"
    if age < 100:
        return f"{age:.1f}"
    if age < 3600:
        return f"{age:.0f}"
    return f"{age / 3600:.0f}h" if age < 86400 * 9 else ">1w"


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


class ControlReply(Message):
    """The outcome of a control request, posted from the control thread to the app."""

    def __init__(self, cmd: str, reply: dict[str, Any] | None, error: Exception | None,
                 on_reply: Callable[[dict[str, Any]], Any],
                 on_error: Callable[[ControlError], Any] | None) -> None:
        super().__init__()
        self.cmd, self.reply, self.error = cmd, reply, error
        self.on_reply, self.on_error = on_reply, on_error


class ConsoleApp(App):
    """Field console.

    Parameters
    ----------
    follower : Follower
        The recording to follow.
    control : str or ControlClient, optional
        The recorder's control channel (an address gets a client with
        :data:`CONTROL_TIMEOUT`); without it the console is read-only (marks,
        pause, threshold and null keys say so).  Requests run one at a time,
        in the order of the keys, in a thread of their own; their replies are
        shown when they come.
    recorder : subprocess.Popen, optional
        The recorder process this console started (its exit is reported).
    recorder_log : path, optional
        Its stderr, whose last line is shown when it exits.
    refresh_hz : float
        Polls of the file (and display updates) per second.
    status_interval : float
        Seconds between status requests over the control channel.
    bell : bool
        Ring the terminal bell on each new alarm.
    notes : sequence of str
        Said when the screen opens (e.g. the recorder it started recording a
        device with its driver's shipped profile, not the device's own).
    """

    CSS = _CSS
    TITLE = "demine console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("r", "record", "rec/pause"),
        Binding("m", "mark", "mark"),
        Binding("n", "null", "null"),
        Binding("plus,equals_sign", "threshold(0.5)", "thr+"),
        Binding("minus,underscore", "threshold(-0.5)", "thr-"),
        Binding("q", "quit_console", "quit"),
        # Ctrl-C leaves the console at once (exit status 130, as an interrupt), the
        # recorder it started recording on; Textual's own only said "press ctrl+q",
        # in a notice over the alarms
        Binding("ctrl+c", "interrupt", "interrupt", show=False, priority=True),
    ]

    def __init__(self, follower: Follower, *, control: str | ControlClient | None = None,
                 recorder: subprocess.Popen | None = None, recorder_log: Path | None = None,
                 refresh_hz: float = 10.0, status_interval: float = 1.0,
                 bell: bool = True, notes: Sequence[str] = ()) -> None:
        super().__init__()
        self._notes = list(notes)
        self.follower = follower
        if isinstance(control, str):
            control = ControlClient(control, timeout=CONTROL_TIMEOUT)
        self.control: ControlClient | None = control
        self._control_thread = (ThreadPoolExecutor(1, thread_name_prefix="demine-console-control")
                                if control is not None else None)
        # status requests go on a connection and a thread of their own: the keys
        # do not wait behind a status request the recorder is slow to answer
        self._status_client = (ControlClient(control.address, timeout=control.timeout)
                               if control is not None else None)
        self._status_pending = False
        self._answered = 0  # replies (and errors) to the keys' commands so far
        self._status_after = 0  # _answered when the pending status request was sent
        self._control_lost = False  # the last request got no reply (control threads only)
        self._quitting = False
        self._pause_asked: bool | None = None  # pause (True) / resume sent, not answered yet
        self.recorder = recorder
        self.recorder_log = recorder_log
        self.refresh_hz = refresh_hz
        self.status_interval = status_interval
        self.bell_on_alarm = bell
        self.paused = False
        self.recorder_status: dict[str, Any] | None = None
        self.message = ""
        self.message_style = "#ffffff"
        #: the last messages shown (newest last), for the operator's log and tests
        self.messages: deque[str] = deque(maxlen=50)
        self.bells = 0
        #: why the console ended by itself (the file is not a recording), or None
        self.failure: str | None = None
        self.ticks = 0
        self.tick_seconds = 0.0
        self._next_status = 0.0
        self._recorder_exit_reported = False
        #: exit status of the recorder this console started, once it has exited
        self.recorder_exit: int | None = None
        #: whether the recorder answered the last status request (None: not asked yet)
        self.recorder_answers: bool | None = None
        self._interrupted = False
        self._reopened = 0  # follower.reopened seen
        self._notice: str | None = None  # follower.notice said
        self._shown: dict[str, Any] = {}

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="top")
        yield Static(id="streams")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield StripChart(id="chart")
                yield Waterfall(id="waterfall")
            yield AlarmList(id="alarms")
        yield Static(id="msg")
        keys = Text(no_wrap=True, overflow="crop")
        for k, what in (("r", "rec/pause"), ("m", "mark"), ("n", "null"), ("+/-", "threshold"),
                        ("q", "quit")):
            keys.append(f" {k} ", style="bold #ffffff on #000000")
            keys.append(f" {what} ", style="#000000 on #ffffff")
        yield Static(keys, id="keys")

    def on_mount(self) -> None:
        self.set_interval(1.0 / self.refresh_hz, self.tick)
        # alarms are looked for more often than the display refreshes (one dataset
        # refresh each time): a new alarm triggers a refresh at once
        self.set_interval(min(0.04, 0.5 / self.refresh_hz), self._alarm_watch)
        self.tick()
        for note in self._notes:
            self.say(note, "bold #000000 on #ffff00")

    def _alarm_watch(self) -> None:
        try:
            waiting = self.follower.alarms_waiting()
        except Exception:  # noqa: BLE001 - the next tick reports read errors
            return
        if waiting:
            self.tick()

    # ------------------------------------------------------------------ update
    def _update(self, wid: str, text: Text) -> None:
        """Update a Static only when its content changed (no needless repaint)."""
        key = (text.plain, tuple(text.spans))
        old = self._shown.get(wid)
        if old != key:
            self._shown[wid] = key
            # a new layout only when the height changes (layouts cost more than paints)
            lines = text.plain.count("\n")
            self.query_one(wid, Static).update(
                text, layout=old is None or old[0].count("\n") != lines)

    def say(self, text: str, style: str = "#ffffff") -> None:
        self.message, self.message_style = text, style
        self.messages.append(text)
        self.query_one("#msg", Static).update(Text(text, style=style, no_wrap=True,
                                                   overflow="ellipsis"), layout=False)

    def tick(self) -> None:
        t0 = time.thread_time()
        self.ticks += 1
        f = self.follower
        try:
            changed = f.poll()
        except Exception as exc:  # noqa: BLE001 - a bad read must not kill the console
            if f.failed is not None:  # not a recording, and it will not become one
                self._give_up(exc)
                return
            self.say(f"read error: {exc}", "bold #ff3030")
            changed = False
        if f.reopened != self._reopened:  # the file was replaced under the console
            self._reopened = f.reopened
            self.query_one(AlarmList).set_alarms(f.alarms, flash=False, reset=True)
            self.query_one(StripChart).set_data((), (), "EMI statistic")
            self.query_one(Waterfall).set_source(None, "GPR B-scan")
        if f.notice is not None and f.notice != self._notice:
            self._notice = f.notice
            self.say(f.notice, "bold #000000 on #ffff00")
        self._poll_control()
        self._check_recorder()
        self._draw_top()
        self._draw_streams()
        if changed:
            chart = self.query_one(StripChart)
            if f.chart is not None:
                emi = f.emi_name or "emi"
                thr = f.threshold if f.threshold is not None else math.nan
                chart.set_data(f.chart.values, f.chart.thresholds,
                               f"EMI statistic ({emi}), start threshold {thr:.1f}")
            if f.waterfall is not None:
                s = f.rec.streams[f.gpr_name]
                si = s.sample_interval
                depth = (f" 0-{si * s._group['samples'].shape[1] * 1e9:.0f} ns"
                         if si else "")
                self.query_one(Waterfall).set_source(
                    f.waterfall, f"GPR B-scan ({f.gpr_name}){depth}, newest right")
            if f.new_alarms:
                self.query_one(AlarmList).set_alarms(f.alarms, flash=True)
                self._say_alarms(f.alarms[-f.new_alarms:])
                if self.bell_on_alarm:
                    self.bell()
                    self.bells += 1
        self.tick_seconds += time.thread_time() - t0  # CPU time of the updates

    def _say_alarms(self, new: list[dict[str, Any]]) -> None:
        """Name the alarms that just came (newest first) on the message line."""
        def where(a: dict[str, Any]) -> str:
            x, y = a.get("x", math.nan), a.get("y", math.nan)
            at = (f"x {x:.2f} y {y:.2f}" if math.isfinite(x) and math.isfinite(y)
                  else "no position")
            return f"{a.get('stream', '')} at {at}"

        new = sorted(new, key=lambda a: a.get("time", 0), reverse=True)
        head = "ALARM" if len(new) == 1 else f"{len(new)} ALARMS:"
        self.say(f"{head} " + "; ".join(where(a) for a in new), "bold #000000 on #ffff00")

    def _give_up(self, exc: Exception) -> None:
        """End the console (return code 2): the file it waited for is not a recording."""
        if self.failure is None:
            self.failure = str(exc)
            self.say(self.failure, "bold #ffffff on #c00000")
            self.exit(return_code=2)

    # ------------------------------------------------------------------ control
    def _request(self, cmd: str, params: dict[str, Any],
                 on_reply: Callable[[dict[str, Any]], Any],
                 on_error: Callable[[ControlError], Any] | None = None) -> None:
        """Send a request from the control thread (a status request: from a
        thread of its own, on its own connection); ``on_reply(reply)`` or
        ``on_error(exc)`` (default: the error shown) run in the app when it is answered."""
        status = cmd == "status"
        control = self._status_client if status else self.control
        assert control is not None and self._control_thread is not None

        def run() -> None:
            if self._interrupted or (self._quitting or self.return_code is not None) and (
                    self._control_lost or status):
                # quitting: what is queued behind a request that got no reply is
                # not sent (each would cost another timeout with the screen frozen)
                return
            reply, error = None, None
            try:
                reply = control.request(cmd, **params)
            except Exception as exc:  # noqa: BLE001 - handed to the app (ControlError shown)
                error = exc
            # no reply at all (a refusal is a reply): the recorder is hung or gone
            if not status:  # (the keys' connection: a status has its own)
                self._control_lost = isinstance(getattr(error, "__cause__", None), OSError)
            if status and self._quitting:  # (not closed on the way out: it was under way)
                control.close()
            try:
                self.post_message(ControlReply(cmd, reply, error, on_reply, on_error))
            except RuntimeError:  # the app's loop closed meanwhile (quitting)
                pass

        if status:
            # a daemon thread: a status request the recorder does not answer holds
            # neither the keys nor the console's exit (it changes nothing there)
            threading.Thread(target=run, name="demine-console-status", daemon=True).start()
        else:
            self._control_thread.submit(run)

    def on_control_reply(self, msg: ControlReply) -> None:
        if msg.cmd != "status":
            self._answered += 1
        if msg.error is None:
            assert msg.reply is not None
            msg.on_reply(msg.reply)
        elif not isinstance(msg.error, ControlError):
            raise msg.error  # a bug, not the channel: let it show
        elif msg.on_error is not None:
            msg.on_error(msg.error)
        else:  # (the summary names the command: "mark: no reply in 10 s — ...")
            self.say(msg.error.summary, "bold #ff3030")

    def _poll_control(self) -> None:
        if (self.control is None or self._status_pending or self.recorder_exit is not None
                or time.monotonic() < self._next_status):
            return
        self._status_pending = True
        self._status_after = self._answered
        self._request("status", {}, self._status_reply, self._status_failed)

    def _status_failed(self, exc: ControlError) -> None:
        self._status_pending = False
        self._next_status = time.monotonic() + self.status_interval
        self.recorder_status = None
        was = self.recorder_answers
        self.recorder_answers = False
        # said once when it stops answering (asked every status_interval: the
        # same words every second hid what came in between, such as why the
        # recorder exited); the top line says NO RECORDER meanwhile
        if was is not False and self.recorder_exit is None and self.follower.is_open:
            self.say(f"recorder not answering: {exc.summary}", "bold #ff3030")

    def _status_reply(self, reply: dict[str, Any]) -> None:
        self._status_pending = False
        self._next_status = time.monotonic() + self.status_interval
        if self.recorder_answers is False:
            self.say("the recorder answers again", "#00ff00")
        self.recorder_answers = True
        st = reply["status"]
        self.recorder_status = st
        for name, d in st.get("devices", {}).items():
            s = self.follower.streams.get(name)
            if s is not None:
                s.crc_errors = int(d.get("crc_errors") or 0)
                s.connected = bool(d.get("connected"))
        if self._answered != self._status_after:
            # a command was answered while this status was on its way: the status
            # may be from before it (a pause, a threshold), and the next one is not
            return
        self.paused = bool(st.get("paused"))
        thr = st.get("threshold")
        if thr is not None and thr != self.follower.threshold:
            self.follower.set_threshold(float(thr))

    def _check_recorder(self) -> None:
        if self.recorder is None or self._recorder_exit_reported:
            return
        code = self.recorder.poll()
        if code is None:
            return
        self._recorder_exit_reported = True
        self.recorder_exit = code
        self.paused = False
        last = ""
        if self.recorder_log is not None:
            try:
                lines = [ln for ln in Path(self.recorder_log).read_text(
                    errors="replace").splitlines() if ln.strip()]
                last = lines[-1] if lines else ""
            except OSError:
                pass
        self.say(f"recorder exited (status {code}): NOT RECORDING {last}".rstrip(),
                 "bold #ffffff on #c00000")

    #: the top line's items that give way, first to last, when the line is wider
    #: than the terminal; the state, GPS, position and marks always stay
    _TOP_DROP_ORDER = ("file", "size", "hdop", "duration")

    def _draw_top(self) -> None:
        f = self.follower
        # (text, style, name): a named item is dropped when the line does not fit
        parts: list[tuple[str, str, str | None]] = [
            (" DEMINE ", "bold #000000 on #ffffff", None)]
        if self.recorder_exit is not None:  # the recorder this console started
            parts.append((" STOPPED ", "bold #ffffff on #c00000", None))
        elif not f.is_open:
            parts.append((" WAITING ", "bold #000000 on #ffff00", None))
        elif self.control is None:
            parts.append((" FOLLOW ", "bold #ffffff on #0000c0", None))
        elif self.recorder_answers is False:
            parts.append((" NO RECORDER ", "bold #ffffff on #c00000", None))
        elif self.paused:
            parts.append((" PAUSED ", "bold #000000 on #ffff00", None))
        else:
            parts.append((" ● REC ", "bold #ffffff on #c00000", None))
        parts.append((" ", "", None))
        parts.append((f"{_fmt_duration(f.duration_s)} ", "", "duration"))
        parts.append((f"{_fmt_bytes(f.file_bytes)} ", "", "size"))
        gps = f.gps
        gst = f.streams.get(f.gps_name) if f.gps_name else None
        if gst is not None and gst.stale and gst.age is not None and self.paused \
                and self.recorder_answers and gst.connected is not False:
            # (no fixes in the file because the recording is paused; the recorder
            # still follows the receiver, and places marks by it)
            parts.append(("GPS (paused) ", "#ffffff", None))
        elif gst is not None and gst.stale and gst.age is not None:
            # nothing from the receiver for --stale seconds: its last fix is not now
            parts.append((f"GPS LOST {_fmt_age(gst.age)}s ", "bold #ffffff on #c00000", None))
        elif gps:
            fixq = gps.get("fix_quality", 0)
            style = "bold #00ff00" if fixq in (4, 5) else ("#ffffff" if fixq else
                                                            "bold #ff3030")
            hdop = gps.get("hdop", math.nan)
            parts.append((f"GPS {gps.get('fix', '?')} ", style, None))
            parts.append((f"hdop {hdop:.1f} " if math.isfinite(hdop) else "hdop -- ", "",
                          "hdop"))
        else:
            parts.append(("GPS -- ", "#ffffff", None))
        x, y = f.position
        if f.position_lost:
            age = f.position_age
            parts.append(("NO POSITION" + (f" {_fmt_age(age)}s" if age is not None else ""),
                          "bold #ffffff on #c00000", None))
            parts.append((" ", "", None))
        elif math.isfinite(x) and math.isfinite(y):
            parts.append((f"x {x:.2f} y {y:.2f} ", "", None))
        parts.append((f"marks {len(f.markers)} ", "#ffffff", None))
        parts.append((f.path.name, "#a0a0a0", "file"))
        width = self.query_one("#top").size.width or self.size.width
        for name in self._TOP_DROP_ORDER:
            if sum(cell_len(p[0]) for p in parts) <= width:
                break
            parts = [p for p in parts if p[2] != name]
        t = Text(no_wrap=True, overflow="crop")
        for text, style, _ in parts:
            t.append(text, style=style or None)
        self._update("#top", t)

    def _draw_streams(self) -> None:
        f = self.follower
        t = Text(no_wrap=True, overflow="crop")
        if not f.is_open:
            t.append(f.error or f"waiting for {f.path}", style="bold #ffff00")
            self._update("#streams", t)
            return
        t.append(f"{'stream':<8}{'kind':<5}{'frames':>9}{'rate/s':>9}{'crc':>6}{'gaps':>6}"
                 f"{'age s':>8}  state\n", style="bold #ffff00")
        for name, s in f.streams.items():
            crc = "-" if s.crc_errors is None else str(s.crc_errors)
            age = _fmt_age(s.age)
            line = (f"{name[:7]:<8}{s.kind:<5}{s.frames:>9}{s.rate:>9.1f}{crc:>6}{s.gaps:>6}"
                    f"{age:>8}  ")
            if s.connected is False:
                t.append(line + "DISCONNECTED", style="bold #ffffff on #c00000")
            elif s.stale and self.paused and self.recorder_answers:
                # no frames because the operator paused the recorder: not a fault
                t.append(line + "PAUSED", style="bold #000000 on #ffff00")
            elif s.stale:
                t.append(line + "STALE", style="bold #ffffff on #c00000")
            else:
                t.append(line, style="#ffffff")
                t.append("OK", style="bold #00ff00")
            t.append("\n")
        t.rstrip()
        self._update("#streams", t)

    # ------------------------------------------------------------------ keys
    def _send(self, cmd: str, on_reply: Callable[[dict[str, Any]], Any], *,
              on_error: Callable[[ControlError], Any] | None = None, **params: Any) -> None:
        if self.control is None:
            self.say(_READ_ONLY, "bold #ffff00")
            return
        if self.recorder_exit is not None:  # (no one to send it to: say so at once)
            self.say(f"{cmd}: the recorder exited (status {self.recorder_exit}): nothing "
                     "is being recorded", "bold #ff3030")
            return
        self._request(cmd, params, on_reply, on_error)

    @staticmethod
    def _now() -> dict[str, int]:
        """When the key was pressed.  The recorder places the marker at its own
        position then (its latest GPS fix, or the track at that time; none when
        its GPS has lost the fix): fresher than the console's, which is a flush
        behind, and never a position kept from before the GPS was lost."""
        return {"time": time.time_ns()}

    def action_record(self) -> None:
        if self.control is None:
            self._send("pause", self._paused_reply)  # (says it cannot)
            return
        # a second r before the first is answered toggles what the first asked for
        pause = not (self.paused if self._pause_asked is None else self._pause_asked)
        self._pause_asked = pause
        self._send("pause" if pause else "resume", self._paused_reply,
                   on_error=self._pause_failed, **self._now())

    def _pause_failed(self, exc: ControlError) -> None:
        self._pause_asked = None
        self.say(exc.summary, "bold #ff3030")

    def _paused_reply(self, reply: dict[str, Any]) -> None:
        self.paused = bool(reply.get("paused"))
        if self._pause_asked == self.paused:  # the last one asked for is answered
            self._pause_asked = None
        self.say("recording PAUSED (frames are dropped until r)" if self.paused
                 else "recording resumed", "bold #ffff00" if self.paused else "#00ff00")
        self._draw_top()

    def action_mark(self) -> None:
        self._send("mark", self._mark_reply, label="target", **self._now())

    def _mark_reply(self, reply: dict[str, Any]) -> None:
        m = reply.get("marker", {})
        x, y = m.get("x"), m.get("y")
        if _number(x) and _number(y):
            self.say(f"marked target at x {x:.2f} y {y:.2f}", "bold #00ff00")
            return
        why = reply.get("position") or "no position"
        self.say(f"marked target WITHOUT POSITION ({why}): mark the spot on the ground",
                 "bold #ffffff on #c00000")

    def action_null(self) -> None:
        self.follower.renull()
        if self.control is None:
            self.say("chart re-nulled here only; " + _READ_ONLY,
                     "bold #ffff00")
            return
        self._send("null", lambda reply: self.say(
            "nulled: chart statistic restarted, null marker written", "bold #00ff00"),
            **self._now())

    def action_threshold(self, delta: float) -> None:
        f = self.follower
        if f.threshold is None:
            self.say("no EMI stream: no threshold", "bold #ffff00")
            return
        if self.control is None:
            f.set_threshold(f.threshold + delta)
            self.say(f"chart threshold {f.threshold:.1f} here only; "
                     + _READ_ONLY, "bold #ffff00")
            return
        self._send("threshold", self._threshold_reply, delta=delta)

    def _threshold_reply(self, reply: dict[str, Any]) -> None:
        f = self.follower
        f.set_threshold(float(reply["threshold"]))
        self.say(f"detector threshold {f.threshold:.1f}", "bold #00ff00")

    def action_quit_console(self) -> None:
        self.exit(0)

    def action_interrupt(self) -> None:
        """Ctrl-C: leave now (status 130); a recorder this console started goes on."""
        self._interrupted = True
        self.exit(return_code=130)

    def on_unmount(self) -> None:
        if self._control_thread is not None:
            # a command already sent (a mark just before q) is carried out before
            # the console stops the recorder it started; its reply is not shown.
            # Those queued behind one that got no reply are dropped (see _request),
            # and after Ctrl-C every one queued (the screen is not held for the
            # one under way either: the process ends once it is done)
            self._quitting = True
            self._control_thread.shutdown(wait=not self._interrupted,
                                          cancel_futures=self._interrupted)
        if self._status_client is not None and not self._status_pending:
            self._status_client.close()  # (else its thread closes it when it is done)
        if self.control is not None and not self._interrupted:
            self.control.close()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
