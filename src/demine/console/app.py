"""The field console: a Textual app that follows a recording as it grows."""

from __future__ import annotations

import math
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ..control import ControlClient, ControlError
from .follow import Follower
from .widgets import AlarmList, StripChart, Waterfall

__all__ = ["ConsoleApp"]

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

_READ_ONLY = ("read-only: this console follows {file}, it did not start its recorder "
              "(start with --device/--simulate, or give --control ADDR)")


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


class ConsoleApp(App):
    """Field console.

    Parameters
    ----------
    follower : Follower
        The recording to follow.
    control : str or ControlClient, optional
        The recorder's control channel; without it the console is read-only
        (marks, pause, threshold and null keys say so).
    recorder : subprocess.Popen, optional
        The recorder process this console started (its exit is reported).
    recorder_log : path, optional
        Its stderr, whose last line is shown when it exits.
    refresh_hz : float
        Polls of the file (and display updates) per second.
    status_interval : float
        Seconds between status requests over the control channel.
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
    ]

    def __init__(self, follower: Follower, *, control: str | ControlClient | None = None,
                 recorder: subprocess.Popen | None = None, recorder_log: Path | None = None,
                 refresh_hz: float = 10.0, status_interval: float = 1.0,
                 bell: bool = True) -> None:
        super().__init__()
        self.follower = follower
        if isinstance(control, str):
            control = ControlClient(control, timeout=1.0)
        self.control: ControlClient | None = control
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
        self.ticks = 0
        self.tick_seconds = 0.0
        self._next_status = 0.0
        self._recorder_exit_reported = False
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
            self.say(f"read error: {exc}", "bold #ff3030")
            changed = False
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
                a = f.alarms[-1]
                self.say(f"ALARM {a.get('stream', '')} at x {a.get('x', math.nan):.2f} "
                         f"y {a.get('y', math.nan):.2f}", "bold #000000 on #ffff00")
                if self.bell_on_alarm:
                    self.bell()
                    self.bells += 1
        self.tick_seconds += time.thread_time() - t0  # CPU time of the updates

    def _poll_control(self) -> None:
        if self.control is None or time.monotonic() < self._next_status:
            return
        self._next_status = time.monotonic() + self.status_interval
        try:
            st = self.control.request("status")["status"]
        except ControlError as exc:
            self.recorder_status = None
            if self.follower.is_open:
                self.say(f"recorder not answering: {exc}", "bold #ff3030")
            return
        self.recorder_status = st
        self.paused = bool(st.get("paused"))
        for name, d in st.get("devices", {}).items():
            s = self.follower.streams.get(name)
            if s is not None:
                s.crc_errors = int(d.get("crc_errors") or 0)
                s.connected = bool(d.get("connected"))
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
        last = ""
        if self.recorder_log is not None:
            try:
                lines = [ln for ln in Path(self.recorder_log).read_text(
                    errors="replace").splitlines() if ln.strip()]
                last = lines[-1] if lines else ""
            except OSError:
                pass
        self.say(f"recorder exited (status {code}) {last}", "bold #ffffff on #c00000")

    def _draw_top(self) -> None:
        f = self.follower
        t = Text(no_wrap=True, overflow="crop")
        t.append(" DEMINE ", style="bold #000000 on #ffffff")
        if not f.is_open:
            t.append(" WAITING ", style="bold #000000 on #ffff00")
        elif self.control is None:
            t.append(" FOLLOW ", style="bold #ffffff on #0000c0")
        elif self.paused:
            t.append(" PAUSED ", style="bold #000000 on #ffff00")
        else:
            t.append(" ● REC ", style="bold #ffffff on #c00000")
        t.append(f" {_fmt_duration(f.duration_s)} {_fmt_bytes(f.file_bytes)} ")
        gps = f.gps
        if gps:
            fixq = gps.get("fix_quality", 0)
            style = "bold #00ff00" if fixq in (4, 5) else ("#ffffff" if fixq else
                                                            "bold #ff3030")
            hdop = gps.get("hdop", math.nan)
            t.append(f"GPS {gps.get('fix', '?')} ", style=style)
            t.append(f"hdop {hdop:.1f} " if math.isfinite(hdop) else "hdop -- ")
        else:
            t.append("GPS -- ", style="#ffffff")
        x, y = f.position
        if math.isfinite(x) and math.isfinite(y):
            t.append(f"x {x:.2f} y {y:.2f} ")
        t.append(f"marks {len(f.markers)} ", style="#ffffff")
        t.append(f.path.name, style="#a0a0a0")
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
            if s.stale:
                t.append(line + "STALE", style="bold #ffffff on #c00000")
            elif s.connected is False:
                t.append(line + "DISCONNECTED", style="bold #ffffff on #c00000")
            else:
                t.append(line, style="#ffffff")
                t.append("OK", style="bold #00ff00")
            t.append("\n")
        t.rstrip()
        self._update("#streams", t)

    # ------------------------------------------------------------------ keys
    def _send(self, cmd: str, **params: Any) -> dict[str, Any] | None:
        if self.control is None:
            self.say(_READ_ONLY.format(file=self.follower.path.name), "bold #ffff00")
            return None
        try:
            return self.control.request(cmd, **params)
        except ControlError as exc:
            self.say(f"{cmd}: {exc}", "bold #ff3030")
            return None

    def _xy(self) -> dict[str, float]:
        x, y = self.follower.position
        return {"x": x, "y": y}

    def action_record(self) -> None:
        reply = self._send("resume" if self.paused else "pause", **self._xy())
        if reply is not None:
            self.paused = bool(reply.get("paused"))
            self.say("recording PAUSED (frames are dropped until r)" if self.paused
                     else "recording resumed", "bold #ffff00" if self.paused else "#00ff00")
            self._draw_top()

    def action_mark(self) -> None:
        reply = self._send("mark", label="target", **self._xy())
        if reply is not None:
            m = reply.get("marker", {})
            x, y = m.get("x"), m.get("y")
            where = (f"x {x:.2f} y {y:.2f}" if isinstance(x, float) and isinstance(y, float)
                     else "unknown position")
            self.say(f"marked target at {where}", "bold #00ff00")

    def action_null(self) -> None:
        self.follower.renull()
        if self.control is None:
            self.say("chart re-nulled here only; "
                     + _READ_ONLY.format(file=self.follower.path.name), "bold #ffff00")
            return
        if self._send("null", **self._xy()) is not None:
            self.say("nulled: chart statistic restarted, null marker written", "bold #00ff00")

    def action_threshold(self, delta: float) -> None:
        f = self.follower
        if f.threshold is None:
            self.say("no EMI stream: no threshold", "bold #ffff00")
            return
        if self.control is None:
            f.set_threshold(f.threshold + delta)
            self.say(f"chart threshold {f.threshold:.1f} (this console only); "
                     + _READ_ONLY.format(file=f.path.name), "bold #ffff00")
            return
        reply = self._send("threshold", delta=delta)
        if reply is not None:
            f.set_threshold(float(reply["threshold"]))
            self.say(f"detector threshold {f.threshold:.1f}", "bold #00ff00")

    def action_quit_console(self) -> None:
        self.exit(0)

    def on_unmount(self) -> None:
        if self.control is not None:
            self.control.close()
