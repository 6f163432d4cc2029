"""Display widgets of the field console: strip chart, radar waterfall, alarm list.

Each widget renders cached :class:`~textual.strip.Strip` lines built once per
data update (not once per paint), from pre-built styles, so a refresh at
10 Hz costs little.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

__all__ = ["AlarmList", "StripChart", "Waterfall"]

BG = "#000000"
FG = "#ffffff"
TITLE = Style(color="#ffff00", bgcolor=BG, bold=True)
AXIS = Style(color="#ffffff", bgcolor=BG)
BAR = Style(color="#00ffff", bgcolor=BG)
BAR_HOT = Style(color="#ff3030", bgcolor=BG, bold=True)
THRESH = Style(color="#ffff00", bgcolor=BG, bold=True)
BLANK = Style(color=FG, bgcolor=BG)
_EIGHTHS = " ▁▂▃▄▅▆▇█"
_CHAR_TABLE = np.array(list(_EIGHTHS) + ["─"])
_CHART_STYLES = (BLANK, BAR, BAR_HOT, THRESH)


def _strip(cells: Sequence[tuple[str, Style]], width: int) -> Strip:
    """A strip from (char, style) cells, equal neighbours merged into one segment."""
    segs = []
    n = 0
    for _, grp in groupby(cells, key=lambda cs: id(cs[1])):  # styles are shared objects
        grp = list(grp)
        text = "".join(c for c, _ in grp)
        n += len(text)
        segs.append(Segment(text, grp[0][1]))
    return Strip(segs, n).adjust_cell_length(width, BLANK)


def _title(text: str, width: int) -> Strip:
    return Strip([Segment(text[:width].ljust(width), TITLE)], width)


class _Cached(Widget):
    """A widget whose lines are rebuilt by :meth:`rebuild`, not at every paint."""

    DEFAULT_CSS = "_Cached { background: #000000; }"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._lines: list[Strip] = []
        self.paints = 0

    def render_line(self, y: int) -> Strip:
        if y == 0:
            self.paints += 1
        if y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width, BLANK)

    def on_resize(self) -> None:
        self.rebuild()
        self.refresh()

    def rebuild(self) -> None:  # pragma: no cover - overridden
        pass


class StripChart(_Cached):
    """EMI detection statistic per bin (bars, log scale) with the detector threshold."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.values: Sequence[float] = ()
        self.thresholds: Sequence[float] = ()
        self.title = "EMI statistic"

    def set_data(self, values: Sequence[float], thresholds: Sequence[float],
                 title: str) -> None:
        self.values, self.thresholds, self.title = values, thresholds, title
        self.rebuild()
        self.refresh()

    def rebuild(self) -> None:
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0:
            self._lines = []
            return
        lines = [_title(self.title, width)]
        rows = height - 1
        axis = 6
        ncol = max(0, width - axis)
        if rows <= 0 or ncol <= 0:
            self._lines = lines
            return
        v = np.asarray(list(self.values)[-ncol:], dtype=np.float64)
        thr = np.asarray(list(self.thresholds)[-ncol:], dtype=np.float64)
        pad = ncol - v.size
        if pad > 0:
            v = np.concatenate((np.full(pad, np.nan), v))
            thr = np.concatenate((np.full(pad, np.nan), thr))
        thr_now = float(thr[-1]) if thr.size and np.isfinite(thr[-1]) else math.nan
        vis = v[np.isfinite(v)]
        top_v = max(float(vis.max()) * 1.1 if vis.size else 1.0,
                    3.0 * thr_now if math.isfinite(thr_now) else 10.0, 1.0)
        top = math.log1p(top_v)
        levels = rows * 8
        h = np.where(np.isfinite(v), np.log1p(np.clip(np.nan_to_num(v), 0, None)) / top, 0.0)
        h = np.clip(np.round(h * levels), 0, levels).astype(int)
        th = np.where(np.isfinite(thr), np.log1p(np.clip(np.nan_to_num(thr), 0, None)) / top,
                      -1.0)
        trow = np.where(th >= 0, rows - 1 - np.clip((th * levels).astype(int) // 8, 0,
                                                     rows - 1), -1)
        hot = np.isfinite(v) & np.isfinite(thr) & (v > thr)
        thr_label_row = int(trow[-1]) if trow.size else -1
        for r in range(rows):
            base = (rows - 1 - r) * 8
            if r == 0:
                label = (f"{_axis_number(top_v)} ", AXIS)
            elif r == thr_label_row:
                label = (f"{thr_now:5.1f}-" if thr_now < 999.95
                         else f"{_axis_number(thr_now)}-", THRESH)
            elif r == rows - 1:
                label = ("    0 ", AXIS)
            else:
                label = ("      ", AXIS)
            fill = np.clip(h - base, 0, 8)
            # per cell: style code (0 blank, 1 bar, 2 bar over threshold, 3 threshold)
            # and character; runs of one style become one segment
            code = np.where(fill > 0, np.where(hot, 2, 1), np.where(trow == r, 3, 0))
            chars = _CHAR_TABLE[np.where(code == 3, 9, fill)]
            segs = [Segment(label[0][:axis].rjust(axis), label[1])]
            starts = np.concatenate(([0], np.flatnonzero(code[1:] != code[:-1]) + 1))
            ends = np.append(starts[1:], ncol)
            for k, a, b in zip(code[starts].tolist(), starts.tolist(), ends.tolist(),
                               strict=True):
                segs.append(Segment("".join(chars[a:b]), _CHART_STYLES[k]))
            lines.append(Strip(segs, axis + ncol).adjust_cell_length(width, BLANK))
        self._lines = lines


def _axis_number(v: float) -> str:
    """``v`` in at most 5 characters (the chart's axis: 248k, not 247811 cut to
    fit, which read as ten times less when it had 7 digits)."""
    if not math.isfinite(v):
        return f"{v:>5}"[:5]
    if v < 99999.5:
        return f"{v:5.0f}"
    for div, unit in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")):
        q = v / div
        if q < 9.95:
            return f"{q:4.1f}{unit}"
        if q < 999.5:
            return f"{q:4.0f}{unit}"
    return f"{v:5.0e}"[:5] if v < 1e100 else "  inf"


def _palette(levels: int = 8) -> list[str]:
    """Diverging, high contrast on black: negative cyan, zero black, positive yellow."""
    cols = []
    for k in range(-levels, levels + 1):
        a = abs(k) / levels
        g = int(round(255 * a ** 0.6))
        cols.append(f"#00{g:02x}{g:02x}" if k < 0 else f"#{g:02x}{g:02x}00")
    return cols


class Waterfall(_Cached):
    """Radar B-scan, newest trace on the right, two depth cells per character (▀)."""

    LEVELS = 6

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        pal = _palette(self.LEVELS)
        n = len(pal)
        self._n = n
        # style of a cell: upper cell colour as foreground, lower as background
        self._styles = [Style(color=pal[i], bgcolor=pal[j]) for i in range(n)
                        for j in range(n)]
        self._runs: dict[int, str] = {}
        self.source: Any = None
        self.title = "GPR B-scan"

    def set_source(self, waterfall: Any, title: str) -> None:
        self.source, self.title = waterfall, title
        self.rebuild()
        self.refresh()

    def rebuild(self) -> None:
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0:
            self._lines = []
            return
        lines = [_title(self.title, width)]
        rows = height - 1
        if rows <= 0 or self.source is None:
            self._lines = lines
            return
        data = self.source.latest(width)  # (px, w)
        px, w = data.shape
        if w == 0:
            self._lines = lines
            return
        npx = 2 * rows
        edges = np.linspace(0, px, npx + 1).astype(np.intp)
        edges = np.minimum(edges[:-1], px - 1)
        counts = np.maximum(np.diff(np.append(edges, px)), 1)
        img = np.add.reduceat(data, edges, axis=0) / counts[:, None]
        q = np.clip(np.rint(img * self.LEVELS), -self.LEVELS, self.LEVELS).astype(int)
        q += self.LEVELS
        codes = q[0::2] * self._n + q[1::2]  # (rows, w)
        pad = width - w
        styles = self._styles
        runs = self._runs
        for r in range(rows):
            c = codes[r]
            starts = np.concatenate(([0], np.flatnonzero(c[1:] != c[:-1]) + 1))
            lens = np.diff(np.append(starts, w))
            segs = [Segment(" " * pad, BLANK)] if pad else []
            for k, n in zip(c[starts].tolist(), lens.tolist(), strict=True):
                text = runs.get(n)
                if text is None:
                    text = runs[n] = "▀" * n
                segs.append(Segment(text, styles[k]))
            lines.append(Strip(segs, width))
        self._lines = lines


class AlarmList(Widget):
    """The alarms table, newest first by the alarms' own times (UTC).

    The detectors write their alarms as each completes, not in time order (a
    radar alarm or an EMI shape alarm comes after newer ones): each new alarm
    takes its place by time and is lit for :attr:`FLASH_S` seconds, wherever
    it lands.  Records when each alarm row was first drawn.
    """

    DEFAULT_CSS = "AlarmList { background: #000000; color: #ffffff; }"

    #: seconds a new alarm stays lit
    FLASH_S = 3.0

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.alarms: list[dict[str, Any]] = []
        self.shown_at: dict[int, int] = {}  # alarm row -> time.time_ns() of first paint
        self.flash_until = 0.0
        self._n = 0  # rows given so far
        self._order: list[int] = []  # alarm rows, newest first
        self._lit: dict[int, float] = {}  # alarm row -> time.monotonic() its light ends

    def set_alarms(self, alarms: list[dict[str, Any]], flash: bool,
                   reset: bool = False) -> None:
        """Show ``alarms`` (the table's rows, in file order: the list may be the
        one given before, grown); with ``flash``, light the rows after those
        given before.  ``reset``: another recording, whose rows are all new."""
        old = self._n
        if reset or len(alarms) < old:
            self.shown_at = {}
            self._lit = {}
            old = 0
        self._n = len(alarms)
        self.alarms = alarms
        self._order = sorted(range(len(alarms)), key=lambda i: (_time(alarms[i]), i),
                             reverse=True)
        if flash and len(alarms) > old:
            now = time.monotonic()
            self._lit = {i: end for i, end in self._lit.items() if end > now}
            self.flash_until = now + self.FLASH_S
            self._lit.update(dict.fromkeys(range(old, len(alarms)), self.flash_until))
            # drawn again when the light goes out (nothing else redraws the list:
            # the newest alarm stayed lit until the next one came)
            self.set_timer(self.FLASH_S + 0.05, self.refresh)
        self.refresh()

    def render(self) -> Text:
        now_ns = time.time_ns()
        for i in range(len(self.shown_at), len(self.alarms)):
            self.shown_at[i] = now_ns
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"ALARMS {len(self.alarms)}\n", style="bold #ffff00")
        t.append("UTC      x,y (m)      dep  p\n", style="bold #ffffff")
        rows = max(0, self.size.height - 2)
        now = time.monotonic()
        for i in self._order[:rows]:
            a = self.alarms[i]
            ts = time.strftime("%H:%M:%S", time.gmtime(_time(a) / 1e9))
            x, y = a.get("x", math.nan), a.get("y", math.nan)
            pos = (f"{x:5.1f},{y:5.1f}" if math.isfinite(x) and math.isfinite(y)
                   else f"{'--':>5},{'--':>5}")
            d, p = a.get("depth", math.nan), a.get("p_mine", math.nan)
            dep = f"{d:4.2f}" if math.isfinite(d) else " -- "
            pm = f"{p:4.2f}" if math.isfinite(p) else " -- "
            if self._lit.get(i, 0.0) > now:
                style = "bold #000000 on #ffff00"
            elif math.isfinite(p) and p >= 0.5:
                style = "bold #ff3030"
            else:
                style = "#ffffff"
            t.append(f"{ts} {pos} {dep} {pm}\n", style=style)
        return t


def _time(alarm: dict[str, Any]) -> int:
    t = alarm.get("time", 0)
    return int(t) if isinstance(t, (int, np.integer)) else 0
