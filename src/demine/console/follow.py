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

The file is read without HDF5's file lock, so a console never keeps a recorder
from creating a new recording at the same path (HDF5 truncates the file before
it finds the lock taken: the old recording was lost *and* the new recorder
failed).  A file replaced (another file moved there, or a new recording
written over it) or cut shorter is noticed at the next poll and followed
afresh (:attr:`Follower.reopened`, :attr:`Follower.notice`).
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

__all__ = ["CREATE_GRACE_S", "FIX_NAMES", "RATE_WINDOW_S", "Follower", "StreamStatus"]

#: Seconds a file that exists but holds no HDF5 signature yet (empty, or a
#: first few bytes of one) is taken for a recording its writer is creating:
#: counted from the file's last modification.  A writer puts the signature
#: there at once (HDF5 writes its superblock when it creates the file).
CREATE_GRACE_S = 5.0

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: Seconds of frames a stream's rate is counted over (frames per second over
#: the last this many seconds of its frames; 0 when none came for as long).
RATE_WINDOW_S = 2.0

#: Most frame times read in one poll (8 bytes each): a console further behind
#: reads only the newest ones (it counts every frame all the same).
_MAX_TIME_ROWS = 1 << 22

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
    _recent: deque = field(default_factory=deque)  # times of the last RATE_WINDOW_S


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


class _FileChanged(Exception):
    """The file read is not the recording followed any more (why: the message)."""


def _without(exc: BaseException, path: Path) -> str:
    """The error's words without the path they start with (said once already)."""
    return str(exc).removeprefix(f"{path}: ")


def _open_recording(path: Path) -> Any:
    """:class:`~demine.recording.Recording` ``(path)``, without HDF5's file lock
    (with it when this process has the file open already, as a writer: HDF5
    shares the open file, and refuses another locking setting)."""
    from ..recording import Recording

    try:
        return Recording(path, locking=False)
    except (DemineError, OSError) as exc:
        if "locking flag values don't match" not in str(exc):
            raise
    return Recording(path)


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
        only; frames and gaps in the sequence are still counted over all).
    position_stale_s : float
        The position is lost (:attr:`position_lost`) when the last one is
        this many seconds older than the newest frame of any stream.
    clock : callable
        UTC nanoseconds now (tests may replace it).
    """

    def __init__(self, path: str | os.PathLike, *, detect_config: Any = None,
                 stale_after: float = 3.0, chart_bin_s: float = 0.05, chart_len: int = 400,
                 gpr_stack: int = 16, waterfall_len: int = 400, history_s: float = 20.0,
                 max_catch_up_s: float = 5.0, position_stale_s: float = 5.0,
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
        self.position_stale_s = float(position_stale_s)
        self.clock = clock
        self.rec: Any = None
        self.error: str | None = None
        #: the error that ended the wait: the file is not, and cannot become, a recording
        self.failed: DemineError | None = None
        #: times the file was replaced or cut under the console and followed afresh
        self.reopened = 0
        #: what happened to the file, in words (replaced, deleted), or None
        self.notice: str | None = None
        self._was_open = False
        self._reset()

    def _reset(self) -> None:
        """Forget everything read (a new file at the path starts from nothing)."""
        self.streams: dict[str, StreamStatus] = {}
        self.alarms: list[dict[str, Any]] = []
        self.markers: list[dict[str, Any]] = []
        self.new_alarms = 0  # alarms that arrived in the last poll
        self.gps: dict[str, Any] = {}
        self.gps_name: str | None = None
        self.position: tuple[float, float] = (math.nan, math.nan)
        #: time (UTC ns) of the frame whose position is :attr:`position`
        self.position_ns: int | None = None
        self._position_from: str | None = None  # the stream it comes from
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
        self._ident: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._created: Any = None  # its created_ns attribute
        self._size_seen = 0  # the largest size seen since
        self._first: tuple[str, int] | None = None  # (stream, time of its first frame)

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
        (see :attr:`failed`) -- except for a file that was a recording when
        this follower had it open (then replaced or cut under it): that is
        waited for with the reason in :attr:`error`, as a new recorder may be
        writing it.
        """
        if self.rec is not None:
            return True
        if self.failed is not None:
            raise self.failed
        if not self.path.exists():
            self.error = f"waiting for {self.path}"
            return False
        try:
            st = os.stat(self.path)
            if self.path.is_dir():
                raise NotARecordingError(f"{self.path}: is a directory, not a recording")
            if self._being_created():
                self.error = f"waiting for {self.path}: empty (a writer may be creating it)"
                return False
            rec = _open_recording(self.path)
        except (NotARecordingError, FormatVersionError, SchemaError) as exc:
            self.error = str(exc)
            if self._was_open:
                # was a recording: whoever replaced or cut it may write one again
                self.error = f"waiting for {self.path}: {_without(exc, self.path)}"
                return False
            # what a writer never shows a reader: this file will not become a recording
            self.failed = exc
            raise
        except (DemineError, OSError) as exc:
            text = str(exc)
            if "unable to lock file" in text or "already open for write" in text:
                # (HDF5's words: errno 11, "Resource temporarily unavailable"; or,
                # without file locking, its superblock's "open for writing" mark)
                self.error = (f"waiting for {self.path}: a writer holds it open and keeps "
                              "readers out until it lets them in, as demine record does "
                              "at its first frames, or closes it")
            else:
                self.error = f"waiting for {self.path}: {_without(exc, self.path)}"
            return False
        self._ident = (st.st_dev, st.st_ino)
        self._size_seen = st.st_size
        self._created = rec.attrs.get("created_ns")
        self._was_open = True
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
            if s.kind == "gps" and self.gps_name is None:
                self.gps_name = name
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
        """Read what was appended since the last poll; True when anything changed.

        A file replaced or cut under the follower is followed afresh
        (:attr:`reopened` counts it, :attr:`notice` says what happened): True.
        """
        self.new_alarms = 0
        if self.rec is not None:
            why = self._changed_on_disk()
            if why is not None:
                return self._restart(why)
        if not self.open():
            return False
        try:
            return self._read_new()
        except _FileChanged as exc:
            return self._restart(str(exc))
        except Exception:
            # a file rewritten in place reads as garbage through the old handle
            why = self._changed_on_disk(deep=True)
            if why is not None:
                return self._restart(why)
            raise

    def _read_new(self) -> bool:
        self.polls += 1
        changed = False
        now = self.clock()
        for name, dss in self._ds.items():
            for ds in dss.values():
                ds.refresh()
            n = min(ds.shape[0] for ds in dss.values())
            if n < self._read[name]:
                raise _FileChanged(f"rewritten: stream {name!r} has {n} frames, it had "
                                   f"{self._read[name]}")
            if self._first is not None and self._first[0] == name and n:
                if int(dss["time"][0]) != self._first[1]:
                    # (the old handle reads the new file's datasets: its layout is
                    # the same, and it may have grown past the old one's size)
                    raise _FileChanged("rewritten with another recording")
            if self._advance(name, dss, n):
                changed = True
        for st in self.streams.values():
            st.age = None if st.last_time_ns is None else (now - st.last_time_ns) / 1e9
            st.stale = st.age is None or st.age > self.stale_after
            if st.age is None or st.age > RATE_WINDOW_S:
                st.rate = 0.0  # no frame for as long as the rate is counted over
        changed |= self._poll_tables()
        try:
            size = self.path.stat().st_size
            self.file_bytes = size
            self._size_seen = max(self._size_seen, size)
        except OSError:
            pass
        return changed

    def _changed_on_disk(self, deep: bool = False) -> str | None:
        """How the file at :attr:`path` is no longer the one followed, or None:
        another file there, or a shorter one that is not this recording as it
        was (HDF5 may give space back at the end of a file it closes).
        ``deep`` (after a read error): also its recording's creation time."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.notice is None or "deleted" not in self.notice:
                self.notice = (f"{self.path.name} was deleted: what its writer still "
                               "appends is lost when it closes it")
            return None
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._ident:
            return "replaced by another file"
        if st.st_size < self._size_seen:
            cut = (f"cut from {self._size_seen / 1e6:.1f} MB to {st.st_size / 1e6:.1f} MB "
                   "(rewritten or truncated)")
            why = self._fresh_look(unreadable=cut)
            if why is None:
                self._size_seen = st.st_size
            return why
        return self._fresh_look(unreadable=None) if deep else None

    def _fresh_look(self, unreadable: str | None) -> str | None:
        """Open the file afresh: None when it is the recording followed, whole;
        else why not (``unreadable`` when it cannot be opened now)."""
        import h5py

        from ..recording import _check_not_truncated

        try:
            _check_not_truncated(self.path)  # (SWMR reading reads zeros past the end)
            with h5py.File(self.path, "r", libver="latest", swmr=True, locking=False) as f:
                created = f.attrs.get("created_ns")
        except DemineError as exc:
            return str(exc).removeprefix(f"{self.path}: ")
        except Exception:  # noqa: BLE001 - a writer creating it, or no HDF5 now
            return unreadable
        return None if created == self._created else "rewritten with another recording"

    def _restart(self, why: str) -> bool:
        """Close the file and forget everything read from it; open what is there now."""
        self.close()
        self._reset()
        self.reopened += 1
        self.notice = f"{self.path.name} was {why}: following it afresh"
        try:
            self.open()
        except DemineError:  # (not raised for a file that was a recording)
            pass
        return True

    def _advance(self, name: str, dss: Mapping[str, Any], n: int) -> bool:
        st = self.streams[name]
        start = self._read[name]
        if n <= start:
            return False
        t_all = dss["time"]
        # The new frames' times (the newest _MAX_TIME_ROWS of them when far behind).
        # A console that fell behind shows the last max_catch_up_s seconds of
        # them (times ascend); every frame is counted, and its gaps.
        t_lo = max(start, n - _MAX_TIME_ROWS)
        t = np.asarray(t_all[t_lo:n], dtype=np.int64)
        lo = t_lo + int(np.searchsorted(t, t[-1] - int(self.max_catch_up_s * 1e9)))
        t = t[lo - t_lo:]
        seq = np.asarray(dss["sequence"][start:n], dtype=np.int64)
        st.gaps += self._gaps_in(seq, st)
        st.frames = n
        st.last_time_ns = int(t[-1])
        if self.start_ns is None:
            self.start_ns = int(t_all[0])
        self.end_ns = st.last_time_ns if self.end_ns is None else max(self.end_ns,
                                                                       st.last_time_ns)
        st.rate = self._rate(st, t)
        self._read[name] = n
        if self._first is None:  # what tells this recording from one written over it
            self._first = (name, int(t_all[0]))
        if st.kind == "gps":
            row = n - 1
            fix = int(dss["fix_quality"][row])
            self.gps = {"fix_quality": fix, "fix": FIX_NAMES.get(fix, str(fix)),
                        "hdop": float(dss["hdop"][row]),
                        "satellites": int(dss["satellites"][row])}
            if name == self._position_source():
                self._set_position(name, dss["x"][lo:n], dss["y"][lo:n], t)
        elif name == self.emi_name:
            samples = np.asarray(dss["samples"][lo:n], dtype=np.float32)
            x = np.asarray(dss["x"][lo:n])
            y = np.asarray(dss["y"][lo:n])
            if name == self._position_source():
                self._set_position(name, x, y, t)
            if self._det is not None and self.chart is not None:
                stat, thr = self._det.process(samples, x, y, t)
                self.chart.add(stat, thr)
        elif name == self.gpr_name:
            if name == self._position_source():
                self._set_position(name, dss["x"][lo:n], dss["y"][lo:n], t)
            if self.waterfall is not None:
                self.waterfall.add(np.asarray(dss["samples"][lo:n], dtype=np.float32))
        return True

    @staticmethod
    def _rate(st: StreamStatus, t: np.ndarray) -> float:
        """Frames per second over the last :data:`RATE_WINDOW_S` of the stream's
        frames (``t``: the times of those just read).  Counted from the frames'
        own times: after a pause, the frames since it over the time since it."""
        recent = st._recent
        recent.append(t)
        cut = int(t[-1]) - int(RATE_WINDOW_S * 1e9)
        while len(recent) > 1 and int(recent[0][-1]) <= cut:
            recent.popleft()
        times = np.concatenate(recent) if len(recent) > 1 else recent[0]
        times = times[times > cut]
        if times.size > 1 and times[-1] > times[0]:
            return (times.size - 1) / ((int(times[-1]) - int(times[0])) / 1e9)
        return times.size / RATE_WINDOW_S

    def _position_source(self) -> str | None:
        """The stream the current position is read from: the GPS stream's own
        fixes (the recorder places the sensors' frames on them only later, in
        place, after the console has read them: with a 1 Hz receiver, hardly
        ever before), else the EMI or radar frames (a writer that placed them)."""
        return self.gps_name or self.emi_name or self.gpr_name

    def _set_position(self, name: str, x: Any, y: Any, t: np.ndarray) -> None:
        # keep the last known position (and when it was): rows without one are
        # a GPS without fix, or frames not placed yet
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        if ok.size:
            self.position = (float(x[ok[-1]]), float(y[ok[-1]]))
            self.position_ns = int(t[ok[-1]])

    @property
    def position_age(self) -> float | None:
        """Seconds from the last known position to the newest frame of any
        stream (None: no position yet).  Grows while the GPS has no fix or
        sends nothing and the sensors go on."""
        if self.position_ns is None or self.end_ns is None:
            return None
        return max(0.0, (self.end_ns - self.position_ns) / 1e9)

    @property
    def position_lost(self) -> bool:
        """No position for :attr:`position_stale_s` (or none yet in a recording
        with a GPS stream): :attr:`position` is not where the sensor is."""
        if self.position_ns is None:
            return self.gps_name is not None
        return (self.position_age or 0.0) > self.position_stale_s

    def _poll_tables(self) -> bool:
        changed = False
        for table, dss in self._table_ds.items():
            for ds in dss.values():
                ds.refresh()
            n = min(ds.shape[0] for ds in dss.values())
            start = self._table_read[table]
            if n < start:
                raise _FileChanged(f"rewritten: its {table} table has {n} rows, it had {start}")
            if n == start:
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
