"""Follow a growing recording: the console's data model, free of any display code.

:class:`Follower` opens a recording with the SWMR reader, and on each
:meth:`Follower.poll` reads only the frames appended since the last poll:

- per stream: frames, rate, sequence gaps, age of the last frame (stale when
  older than ``stale_after`` seconds);
- the EMI detection statistic, computed here with the same
  :class:`~demine.pipeline.StreamDetector` (processing chain + detector) the
  recorder and ``demine detect`` use, fed incrementally, and the detector's
  threshold, both reduced to fixed-width bins for a strip chart;
- a radar waterfall (B-scan): stacked traces, background removed, scaled to
  [-1, 1], one column per ``gpr_stack`` traces, in a ring buffer;
- the alarms and markers tables (new rows only), GPS fix quality and HDOP,
  the current sensor position, recording duration and file size.

A console opened on a long recording does not replay it: the chart and the
waterfall start from the last ``history_s`` seconds.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DemineError, FormatVersionError, NotARecordingError, SchemaError

__all__ = ["CREATE_GRACE_S", "FIX_NAMES", "Follower", "StreamStatus"]

#: Seconds a file that exists but holds no HDF5 signature yet (empty, or a
#: first few bytes of one) is taken for a recording its writer is creating:
#: counted from the file's last modification.  A writer puts the signature
#: there at once (HDF5 writes its superblock when it creates the file).
CREATE_GRACE_S = 5.0

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: NMEA GGA fix quality names.
FIX_NAMES = {0: "no fix", 1: "GPS", 2: "DGPS", 3: "PPS", 4: "RTK fixed", 5: "RTK float",
             6: "dead reckoning", 7: "manual", 8: "simulated"}


@dataclass
class StreamStatus:
    """What the status panel shows for one stream."""

    name: str
    kind: str
    frames: int = 0
    rate: float = 0.0
    gaps: int = 0
    crc_errors: int | None = None  # known only from the recorder (control channel)
    connected: bool | None = None
    last_time_ns: int | None = None
    age: float | None = None
    stale: bool = True
    _last_seq: int | None = None
    _history: deque = field(default_factory=lambda: deque(maxlen=64))


class _ChartDetector:
    """A StreamDetector that also hands out the statistic and threshold it saw."""

    def __init__(self, kind: str, context: Mapping[str, Any], chain: Any,
                 detector: Mapping[str, Any]) -> None:
        from ..pipeline import StreamDetector

        class _Tap(StreamDetector):
            def _detect(inner, out: np.ndarray) -> dict[str, np.ndarray]:  # noqa: N805
                alarms = super()._detect(out)
                if out.shape[0]:
                    inner.taps.append((out[:, -1].astype(np.float64),
                                       np.asarray(inner.detector.last_threshold,
                                                  dtype=np.float64)))
                return alarms

        self.sd = _Tap(kind, context, chain, detector)
        self.sd.taps = []

    @property
    def threshold(self) -> float:
        return float(self.sd.detector.threshold)

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.sd.detector.set_threshold(float(value))  # (its shape channel too)

    def process(self, samples: np.ndarray, x: np.ndarray, y: np.ndarray,
                t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.sd.process(samples, x, y, t)
        taps, self.sd.taps = self.sd.taps, []
        if not taps:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([a for a, _ in taps]), np.concatenate([b for _, b in taps]))


class _Binner:
    """Reduce a per-frame series to bins of ``size`` frames (max), in a ring."""

    def __init__(self, size: int, length: int) -> None:
        self.size = max(1, int(size))
        self.values: deque[float] = deque(maxlen=length)
        self.thresholds: deque[float] = deque(maxlen=length)
        self._part_v: list[np.ndarray] = []
        self._part_t: list[np.ndarray] = []
        self._part_n = 0

    def add(self, v: np.ndarray, thr: np.ndarray) -> None:
        if v.size == 0:
            return
        if thr.shape != v.shape:
            thr = np.full(v.shape, thr[-1] if thr.size else np.nan)
        self._part_v.append(v)
        self._part_t.append(thr)
        self._part_n += v.size
        if self._part_n < self.size:
            return
        v = np.concatenate(self._part_v)
        thr = np.concatenate(self._part_t)
        nb = v.size // self.size
        cut = nb * self.size
        vb = np.nanmax(v[:cut].reshape(nb, self.size), axis=1) if nb else v[:0]
        tb = thr[:cut].reshape(nb, self.size)[:, -1] if nb else thr[:0]
        self.values.extend(vb.tolist())
        self.thresholds.extend(tb.tolist())
        self._part_v = [v[cut:]] if cut < v.size else []
        self._part_t = [thr[cut:]] if cut < v.size else []
        self._part_n = v.size - cut


class _Waterfall:
    """Radar B-scan ring: columns of ``stack`` traces, ``px`` depth cells each."""

    def __init__(self, n_samples: int, stack: int, length: int, px: int = 64,
                 background_columns: float = 50.0) -> None:
        self.stack = max(1, int(stack))
        self.px = max(2, min(int(px), n_samples))
        self.edges = np.linspace(0, n_samples, self.px + 1).astype(np.intp)[:-1]
        self.counts = np.diff(np.append(self.edges, n_samples)).astype(np.float32)
        self.data = np.zeros((self.px, length), dtype=np.float32)
        self.n_columns = 0  # columns written in total
        self._alpha = 1.0 / max(1.0, background_columns)
        self._bg: np.ndarray | None = None
        self._scale = 0.0
        self._part: list[np.ndarray] = []
        self._part_n = 0

    def add(self, traces: np.ndarray) -> None:
        if traces.shape[0] == 0:
            return
        self._part.append(traces)
        self._part_n += traces.shape[0]
        if self._part_n < self.stack:
            return
        tr = np.concatenate(self._part) if len(self._part) > 1 else self._part[0]
        nc = tr.shape[0] // self.stack
        cut = nc * self.stack
        rest = tr[cut:]
        self._part = [rest] if rest.shape[0] else []
        self._part_n = rest.shape[0]
        cols = tr[:cut].reshape(nc, self.stack, tr.shape[1]).mean(axis=1, dtype=np.float32)
        # depth cells: mean of the samples in each cell
        cells = np.add.reduceat(cols, self.edges, axis=1) / self.counts  # (nc, px)
        L = self.data.shape[1]
        for c in cells:
            if self._bg is None:
                self._bg = c.copy()
            d = c - self._bg
            self._bg += self._alpha * d
            peak = float(np.max(np.abs(d)))
            self._scale = peak if self._scale == 0.0 else max(
                0.98 * self._scale + 0.02 * peak, 1e-12)
            self.data[:, self.n_columns % L] = np.clip(d / (self._scale + 1e-12), -1, 1)
            self.n_columns += 1

    def latest(self, width: int) -> np.ndarray:
        """The newest ``width`` columns, oldest first, shape (px, <=width)."""
        L = self.data.shape[1]
        n = min(width, self.n_columns, L)
        if n == 0:
            return self.data[:, :0]
        idx = np.arange(self.n_columns - n, self.n_columns) % L
        return self.data[:, idx]


class Follower:
    """Read what a recorder appends to a recording, a little at a time.

    Parameters
    ----------
    path : path
        The recording (it may not exist yet: :meth:`poll` keeps trying).
    detect_config : path, mapping or None
        Detection configuration (see :mod:`demine.pipeline`) for the EMI
        statistic; the defaults are the pipeline's.
    stale_after : float
        A stream whose last frame is older than this (s) is stale.
    chart_bin_s : float
        Seconds of EMI frames per strip-chart bin.
    chart_len : int
        Bins kept.
    gpr_stack : int
        Radar traces per waterfall column.
    waterfall_len : int
        Columns kept.
    history_s : float
        When opening a recording that is already long, start the chart and the
        waterfall this many seconds before its end.
    max_catch_up_s : float
        Most seconds of new frames shown per poll: a console that fell
        further behind skips ahead to the last that long (for the displays
        only; gaps in the sequence are still counted over all of them).
    clock : callable
        UTC nanoseconds now (tests may replace it).
    """

    def __init__(self, path: str | os.PathLike, *, detect_config: Any = None,
                 stale_after: float = 3.0, chart_bin_s: float = 0.05, chart_len: int = 400,
                 gpr_stack: int = 16, waterfall_len: int = 400, history_s: float = 20.0,
                 max_catch_up_s: float = 5.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        from ..pipeline import load_detect_config

        self.path = Path(path)
        self.config = load_detect_config(detect_config)
        self.stale_after = float(stale_after)
        self.chart_bin_s = chart_bin_s
        self.chart_len = chart_len
        self.gpr_stack = gpr_stack
        self.waterfall_len = waterfall_len
        self.history_s = history_s
        self.max_catch_up_s = max_catch_up_s
        self.clock = clock
        self.rec: Any = None
        self.error: str | None = None
        #: the error that ended the wait: the file is not, and cannot become, a recording
        self.failed: DemineError | None = None
        self.streams: dict[str, StreamStatus] = {}
        self.alarms: list[dict[str, Any]] = []
        self.markers: list[dict[str, Any]] = []
        self.new_alarms = 0  # alarms that arrived in the last poll
        self.gps: dict[str, Any] = {}
        self.position: tuple[float, float] = (math.nan, math.nan)
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.file_bytes = 0
        self.emi_name: str | None = None
        self.gpr_name: str | None = None
        self.chart: _Binner | None = None
        self.waterfall: _Waterfall | None = None
        self.threshold: float | None = None  # detector start threshold (floor)
        self.polls = 0
        self._det: _ChartDetector | None = None
        self._ds: dict[str, dict[str, Any]] = {}
        self._read: dict[str, int] = {}
        self._table_read: dict[str, int] = {"alarms": 0, "markers": 0}
        self._table_ds: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ open
    @property
    def is_open(self) -> bool:
        return self.rec is not None

    def open(self) -> bool:
        """Try to open the recording; False (with :attr:`error`) while it is not there yet.

        Waits (returns False) while the file does not exist, while a writer
        holds it open without letting readers in yet (a recorder between
        creating the file and its first frames: HDF5 locks it, or marks it
        open for writing) and while it is empty or shorter than HDF5's
        signature for less than :data:`CREATE_GRACE_S` after its last change.

        Raises
        ------
        NotARecordingError
            The file exists and is not, and cannot become, a recording: not
            HDF5 (text, another format, or empty for longer than
            :data:`CREATE_GRACE_S`), HDF5 without demine's format attribute
            (which a demine writer sets before any reader can open the
            file), or a directory.
        FormatVersionError
            A recording of a newer format version than this demine reads.
        SchemaError
            A recording without its ``/streams`` group.

        Once raised, the same error is raised again by every later call
        (see :attr:`failed`).
        """
        if self.rec is not None:
            return True
        if self.failed is not None:
            raise self.failed
        from ..recording import Recording

        if not self.path.exists():
            self.error = f"waiting for {self.path}"
            return False
        try:
            if self.path.is_dir():
                raise NotARecordingError(f"{self.path}: is a directory, not a recording")
            if self._being_created():
                self.error = f"waiting for {self.path}: empty (a writer may be creating it)"
                return False
            rec = Recording(self.path)
        except (NotARecordingError, FormatVersionError, SchemaError) as exc:
            # what a writer never shows a reader: this file will not become a recording
            self.failed = exc
            self.error = str(exc)
            raise
        except (DemineError, OSError) as exc:
            if "unable to lock file" in str(exc):
                # (HDF5's words are errno 11, "Resource temporarily unavailable")
                self.error = (f"waiting for {self.path}: a writer holds it open and keeps "
                              "readers out (HDF5 file lock) until it lets them in, as "
                              "demine record does at its first frames, or closes it")
            else:
                self.error = f"waiting for {self.path}: {exc}"
            return False
        self.rec = rec
        self.error = None
        for name, s in rec.streams.items():
            st = StreamStatus(name, s.kind)
            self.streams[name] = st
            g = s._group
            want = ["time", "sequence"]
            if s.kind in ("emi", "gpr"):
                want += ["samples", "x", "y"]
            elif s.kind == "gps":
                want += ["x", "y", "fix_quality", "hdop", "satellites"]
            self._ds[name] = {k: g[k] for k in want if k in g}
            if s.kind == "emi" and self.emi_name is None:
                self.emi_name = name
            if s.kind == "gpr" and self.gpr_name is None:
                self.gpr_name = name
        for table in self._table_read:
            g = rec._file[table]
            self._table_ds[table] = {k: v for k, v in g.items() if k != "index"}
        self._start_streams()
        return True

    def _being_created(self) -> bool:
        """Whether the file may be a recording whose writer is creating it.

        That is a file changed less than :data:`CREATE_GRACE_S` ago that is too
        short to hold HDF5's signature (a writer has just made it) or holds the
        signature but not yet a superblock HDF5 recognises.  An older file too
        short for the signature is not a recording (:class:`NotARecordingError`).
        """
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(_HDF5_SIGNATURE))
            age = abs(time.time() - self.path.stat().st_mtime)
        except OSError:
            return False  # (Recording says what is wrong)
        if not _HDF5_SIGNATURE.startswith(head):
            return False  # (not HDF5: Recording says so)
        fresh = age < CREATE_GRACE_S
        if len(head) < len(_HDF5_SIGNATURE):
            if fresh:
                return True
            raise NotARecordingError(
                f"{self.path}: {f'only {len(head)} bytes' if head else 'empty'}, unchanged "
                f"for {CREATE_GRACE_S:g} s: not a demine recording")
        if fresh:
            import h5py

            return not h5py.is_hdf5(self.path)
        return False

    def _start_streams(self) -> None:
        from ..process import _stream_context

        for name, dss in self._ds.items():
            for ds in dss.values():
                ds.refresh()
            n = min(ds.shape[0] for ds in dss.values())
            self._read[name] = 0
            s = self.rec.streams[name]
            if name == self.emi_name and self.config["emi"]["enabled"]:
                ctx = _stream_context(s)
                sec = self.config["emi"]
                self._det = _ChartDetector("emi", ctx, sec["chain"], sec["detector"])
                self.threshold = self._det.threshold
                rate = float(ctx.get("sample_rate") or 1000.0)
                self.chart = _Binner(round(self.chart_bin_s * rate), self.chart_len)
            if name == self.gpr_name and "samples" in dss:
                self.waterfall = _Waterfall(int(dss["samples"].shape[1]), self.gpr_stack,
                                            self.waterfall_len)
            if n:
                # Start the displays from the last history_s seconds; count the
                # gaps of the whole sequence so far.
                t = dss["time"]
                st = self.streams[name]
                st.gaps = self._count_gaps(dss["sequence"], 0, n, st)
                t_end = int(t[n - 1])
                lo, hi = 0, n - 1
                target = t_end - int(self.history_s * 1e9)
                while lo < hi:  # first frame at or after target (times ascend)
                    mid = (lo + hi) // 2
                    if int(t[mid]) < target:
                        lo = mid + 1
                    else:
                        hi = mid
                self._read[name] = lo
                st.frames = lo
                self.start_ns = int(t[0]) if self.start_ns is None else min(self.start_ns,
                                                                             int(t[0]))

    @staticmethod
    def _count_gaps(ds: Any, start: int, stop: int, st: StreamStatus) -> int:
        gaps = 0
        for a in range(start, stop, 1 << 20):
            seq = np.asarray(ds[a:min(stop, a + (1 << 20))], dtype=np.int64)
            gaps += Follower._gaps_in(seq, st)
        return gaps

    @staticmethod
    def _gaps_in(seq: np.ndarray, st: StreamStatus) -> int:
        seq = seq[seq >= 0]
        if seq.size == 0:
            return 0
        prev = st._last_seq
        full = seq if prev is None else np.concatenate(([prev], seq))
        st._last_seq = int(seq[-1])
        d = np.diff(full)
        return int(np.count_nonzero(d > 1))

    # ------------------------------------------------------------------ poll
    def poll(self) -> bool:
        """Read what was appended since the last poll; True when anything changed."""
        self.new_alarms = 0
        if not self.open():
            return False
        self.polls += 1
        changed = False
        now = self.clock()
        for name, dss in self._ds.items():
            for ds in dss.values():
                ds.refresh()
            n = min(ds.shape[0] for ds in dss.values())
            if self._advance(name, dss, n):
                changed = True
        for st in self.streams.values():
            st.age = None if st.last_time_ns is None else (now - st.last_time_ns) / 1e9
            st.stale = st.age is None or st.age > self.stale_after
        changed |= self._poll_tables()
        try:
            self.file_bytes = self.path.stat().st_size
        except OSError:
            pass
        return changed

    def _advance(self, name: str, dss: Mapping[str, Any], n: int) -> bool:
        st = self.streams[name]
        start = self._read[name]
        if n <= start:
            return False
        t_all = dss["time"]
        # A console that fell far behind skips ahead (for the displays only).
        rate = st.rate or 1000.0
        max_rows = max(1, int(self.max_catch_up_s * rate))
        lo = max(start, n - max_rows)
        t = np.asarray(t_all[lo:n], dtype=np.int64)
        seq = np.asarray(dss["sequence"][start:n], dtype=np.int64)
        st.gaps += self._gaps_in(seq, st)
        st.frames = n
        st.last_time_ns = int(t[-1])
        if self.start_ns is None:
            self.start_ns = int(t_all[0])
        self.end_ns = st.last_time_ns if self.end_ns is None else max(self.end_ns,
                                                                       st.last_time_ns)
        st._history.append((st.last_time_ns, n))
        t_old, n_old = st._history[0]
        while len(st._history) > 2 and st.last_time_ns - st._history[1][0] > 2e9:
            st._history.popleft()
            t_old, n_old = st._history[0]
        if st.last_time_ns > t_old:
            st.rate = (n - n_old) / ((st.last_time_ns - t_old) / 1e9)
        elif len(t) > 1 and t[-1] > t[0]:
            st.rate = (len(t) - 1) / ((t[-1] - t[0]) / 1e9)
        self._read[name] = n
        if st.kind == "gps":
            row = n - 1
            fix = int(dss["fix_quality"][row])
            self.gps = {"fix_quality": fix, "fix": FIX_NAMES.get(fix, str(fix)),
                        "hdop": float(dss["hdop"][row]),
                        "satellites": int(dss["satellites"][row])}
            if self.emi_name is None and self.gpr_name is None:
                self._set_position(dss["x"][lo:n], dss["y"][lo:n])
        elif name == self.emi_name:
            samples = np.asarray(dss["samples"][lo:n], dtype=np.float32)
            x = np.asarray(dss["x"][lo:n])
            y = np.asarray(dss["y"][lo:n])
            self._set_position(x, y)
            if self._det is not None and self.chart is not None:
                stat, thr = self._det.process(samples, x, y, t)
                self.chart.add(stat, thr)
        elif name == self.gpr_name:
            if self.emi_name is None:
                self._set_position(dss["x"][lo:n], dss["y"][lo:n])
            if self.waterfall is not None:
                self.waterfall.add(np.asarray(dss["samples"][lo:n], dtype=np.float32))
        return True

    def _set_position(self, x: Any, y: Any) -> None:
        # The newest frames' positions are NaN until the recorder has the GPS
        # fix after them (it fills them in place): keep the last known one.
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        if ok.size:
            self.position = (float(x[ok[-1]]), float(y[ok[-1]]))

    def _poll_tables(self) -> bool:
        changed = False
        for table, dss in self._table_ds.items():
            for ds in dss.values():
                ds.refresh()
            n = min(ds.shape[0] for ds in dss.values())
            start = self._table_read[table]
            if n <= start:
                continue
            cols = {}
            for k, ds in dss.items():
                v = ds[start:n]
                if v.dtype.kind == "S":
                    v = [b.decode("utf-8", "replace") for b in v]
                else:
                    v = v.tolist()
                cols[k] = v
            rows = [{k: cols[k][i] for k in cols} for i in range(n - start)]
            if table == "alarms":
                self.alarms.extend(rows)
                self.new_alarms += len(rows)
            else:
                self.markers.extend(rows)
            self._table_read[table] = n
            changed = True
        return changed

    def alarms_waiting(self) -> bool:
        """Cheap check (one dataset refresh): has the alarms table grown since the last poll?"""
        if self.rec is None:
            return False
        ds = self._table_ds["alarms"].get("time")
        if ds is None:
            return False
        ds.refresh()
        return ds.shape[0] > self._table_read["alarms"]

    # ------------------------------------------------------------------ misc
    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    def set_threshold(self, value: float) -> None:
        """Change the chart detector's start threshold (the console's own copy)."""
        if self._det is not None:
            self._det.threshold = max(0.5, float(value))
            self.threshold = self._det.threshold

    def renull(self) -> None:
        """Restart the chart's statistic (chain and detector state) from the next frame."""
        if self._det is not None and self.emi_name is not None:
            from ..process import _stream_context

            sec = self.config["emi"]
            thr = self._det.threshold
            self._det = _ChartDetector("emi", _stream_context(self.rec.streams[self.emi_name]),
                                       sec["chain"], sec["detector"])
            self._det.threshold = thr

    def close(self) -> None:
        if self.rec is not None:
            self.rec.close()
            self.rec = None
