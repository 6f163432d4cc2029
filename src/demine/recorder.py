"""Record several serial devices at once into one recording.

:class:`Recorder` runs one :class:`~demine.acquisition.DeviceReader` per
device and one writer thread that appends their frames to a
:class:`~demine.recording.RecordingWriter`.  The readers of local ports
(device paths, pseudo-terminals) share one thread
(:class:`~demine.acquisition.ReaderGroup`: one wake-up per period for all of
them); a network port (``socket://``…) has a thread of its own.  Readers never
wait for the disk: frames pass through a queue, so a slow flush delays
writing, never reading.

Positions: the GPS/tracker stream is recorded as it comes (``lon``, ``lat``,
``alt``, fix quality) together with its position in the recording's local
frame.  Detector and radar frames get ``x``, ``y``, ``z`` interpolated from
that track, never extrapolated, nor across a gap between fixes longer than
``max_gap`` (by default 2.5 fix intervals, at least 1 s: the median interval
of the last fixes, so 1 s at 2.5 Hz and faster, 2.5 s at 1 Hz).  A lone fix
that implies more than ``max_fix_speed`` both to reach it and to leave it
for the next one, while those two agree, is a multipath error and places
nothing (:class:`demine.positions.FixFilter`; the GPS stream keeps it as
received).  A fix is timed
when the receiver measured it: its arrival, less the receiver's ``latency``
from the GPS device's calibration (seconds, default 0).  A frame is written
as soon as it arrives (so it is in the file one flush after its arrival),
and its position columns stay NaN until a fix later than the frame has
arrived (at most ``position_wait`` seconds: by default long enough for the
next fix across the longest interval bridged); they are then filled in place,
the positions of ``position_write_interval`` seconds of frames (several
fixes) with one write per column.  The detectors see a frame as soon as its
position is final (they get it in memory), so live alarms equal batch ones.
Without a GPS stream, positions stay NaN.  The local frame's origin, when not
given, is the first fix with a position, at the altitude of the first fix that
has one when the file is opened (NaN, and every ``z`` NaN, when none has).

The writer thread makes one pass every ``pass_interval`` (the flush interval,
at most 50 ms): the frames that arrived from each device since the last pass
are appended together, positions filled in, and, when the flush interval is
due, the file is flushed; then the live detectors run on the frames placed in
that pass (``detect_threads=True``: each in a thread of its own instead), all
in that one wake-up.  The readers wake on the same grid of the monotonic clock, just
before the pass (``DeviceReader(align=True)``), so a frame waits at most about
one period in the serial buffer and the queue together, and the threads wake
tens of times a second, not hundreds.

Stream layout must be known before HDF5's SWMR mode starts, so the recorder
waits (up to ``startup_timeout``) for the first frames of every device before
it declares the streams; frames that arrive meanwhile are kept.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import numbers
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .acquisition import DeviceReader, ReaderEvent, ReaderGroup
from .drivers import FrameBatch, get_driver
from .errors import ConfigError, DemineError, RecordingError, SchemaError
from .positions import (
    FIX_JUDGE_WINDOW_S,
    GAP_TOLERANCE,
    MAX_FIX_SPEED,
    WHEEL_JUMP_M,
    FixFilter,
    LocalFrame,
    PreparedTrack,
    wheel_positions,
)
from .recording import RecordingWriter, check_stream_name

__all__ = ["DeviceSpec", "Recorder", "parse_device", "stream_names"]

log = logging.getLogger("demine.recorder")

_GPS_COLUMNS = ("lon", "lat", "alt", "fix_quality", "satellites", "hdop")


@dataclass
class DeviceSpec:
    """One device to record: driver name, port URL and options.

    ``name`` is the stream name in the recording (default: the stream kind,
    ``emi``, ``gpr`` or ``gps``, numbered when several devices share a kind).
    ``calibration`` is stored with the stream (its ``calibration`` attribute,
    JSON: NumPy arrays and scalars are taken as lists and numbers) and read by
    the recorder: ``gate_times`` (EMI, s), ``sample_interval`` (GPR, s), and
    for a GPS ``latency``, the seconds from the moment the receiver measures
    a fix to the moment it sends it (>= 0, default 0): fixes are timed when
    they were measured, so a moving sensor is not placed ``speed x latency``
    behind where it was.  The detectors' keys: see
    :data:`demine.process.CALIBRATION_CONTEXT`.
    """

    driver: str
    url: str
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    serial_options: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)


def parse_device(text: str) -> DeviceSpec:
    """Parse a ``--device`` argument: ``[NAME:]DRIVER=PORT``.

    Examples: ``emi-pi=/dev/ttyUSB0``, ``gps:nmea=socket://10.0.0.2:5000``.
    """
    if "=" not in text:
        raise ConfigError(f"--device {text!r}: expected DRIVER=PORT (e.g. emi-pi=/dev/ttyUSB0)")
    left, url = text.split("=", 1)
    name = None
    if ":" in left:
        name, left = left.split(":", 1)
    if not left or not url:
        raise ConfigError(f"--device {text!r}: expected DRIVER=PORT (e.g. emi-pi=/dev/ttyUSB0)")
    get_driver(left)  # unknown driver -> clear error now, not in a thread
    return DeviceSpec(driver=left, url=url, name=name or None)


class _Inbox:
    """The readers' frame batches on their way to the writer thread.

    What ``queue.Queue`` offers the recorder (``put``, ``get`` with a timeout,
    ``get_nowait``, raising :class:`queue.Empty`), on a bare deque: its appends
    and pops are atomic, so neither side takes a lock or signals a condition
    (a queue took four locks per pass on each side, for nothing: the writer
    never waits on it while recording).  Only the start-up wait for the first
    frames blocks, by polling every 2 ms.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[Any] = deque()

    def put(self, item: Any) -> None:
        self._items.append(item)

    def get_nowait(self) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            if not block or (timeout is not None and timeout <= 0):
                raise queue.Empty from None
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            time.sleep(0.002 if end is None else max(0.0, min(0.002, end - time.monotonic())))
            try:
                return self._items.popleft()
            except IndexError:
                if end is not None and time.monotonic() >= end:
                    raise queue.Empty from None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


#: Largest receiver latency (s) a GPS calibration may declare (more is a
#: mistake, e.g. milliseconds given for seconds: no fix would place anything).
MAX_GPS_LATENCY = 5.0


def _json_value(value: Any, where: str) -> Any:
    """A calibration value as JSON holds it: NumPy arrays and scalars (and
    tuples) become lists and Python numbers; anything else JSON cannot hold is
    a :class:`ConfigError` naming it (it failed inside ``start()`` before)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: key {k!r} is not a string (JSON object keys are)")
            out[k] = _json_value(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | int | float):  # (bool is an int)
        return value
    raise ConfigError(f"{where} = {value!r}: a {type(value).__name__}, which a calibration "
                      "(stored as JSON) cannot hold; give numbers, strings, lists or tables")


def _checked_calibration(spec: DeviceSpec, name: str, kind: str) -> dict[str, Any]:
    """The device's calibration as it will be stored (a JSON-ready copy), with
    the keys the recorder reads checked: a clear error now, before any port is
    opened, rather than a JSON or type error inside ``start()``."""
    cal = spec.calibration
    if not isinstance(cal, Mapping):
        raise ConfigError(f"device {name!r}: calibration must be a mapping of keys to values, "
                          f"got a {type(cal).__name__}")
    cal = _json_value(cal, f"device {name!r}: calibration")
    if "latency" in cal:
        lat = cal["latency"]
        where = f"device {name!r}: calibration 'latency'"
        if kind != "gps":
            raise ConfigError(f"{where}: only a GPS device's fixes are moved by a latency "
                              f"(this is a {kind} device)")
        if isinstance(lat, bool) or not isinstance(lat, int | float):
            raise ConfigError(f"{where} must be a number of seconds, got {lat!r}")
        if not 0.0 <= lat <= MAX_GPS_LATENCY:  # (NaN fails too)
            raise ConfigError(f"{where} = {lat!r}: must be seconds from 0 to "
                              f"{MAX_GPS_LATENCY:g} (a receiver's delay is typically "
                              "0.02-0.3 s; milliseconds given for seconds?)")
    return cal


def _join_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The columns of consecutive row blocks, joined (a single block as is)."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Track:
    """The last seconds of the position track, for interpolation.

    ``max_gap_s``: fixes farther apart are a gap, across which nothing is
    interpolated.  Given (a number), it is used as is; by default (None) it
    follows the receiver: :attr:`GAP_INTERVALS` times the median interval
    between the fixes kept (all of them, with a position or not: a receiver
    that lost its fix still sends its sentences), at least
    :attr:`MIN_GAP_S`.  A 10 Hz receiver's limit is then 1 s, as it always
    was; a 1 Hz one's 2.5 s, where the fixed 1 s made every other interval
    of the host-timed track a gap, and slower ones placed nothing at all.
    """

    #: Default gap limit: this many median fix intervals ...
    GAP_INTERVALS = 2.5
    #: ... and at least this many seconds.
    MIN_GAP_S = 1.0

    def __init__(self, keep_s: float = 5.0, max_gap_s: float | None = None,
                 max_speed: float | None = MAX_FIX_SPEED) -> None:
        #: Rejects lone fixes off their neighbours (None: keeps every fix);
        #: the track holds the fixes it has decided on.
        self.filter = FixFilter(max_speed) if max_speed is not None else None
        self._keep_s = keep_s
        self._fixed_gap = max_gap_s
        self._set_gap(self.MIN_GAP_S if max_gap_s is None else float(max_gap_s))
        self._t: deque[np.ndarray] = deque()
        self._xyz: deque[np.ndarray] = deque()
        self._joined: PreparedTrack | None = None
        # the fixes kept, joined (what np.concatenate of the deques gives),
        # kept up to date at each fix: one join of two arrays instead of one
        # of the last seconds' ~50 fixes
        self._cat: tuple[np.ndarray, np.ndarray] | None = None
        self._last: int | None = None

    def add(self, t: np.ndarray, xyz: np.ndarray) -> None:
        if self.filter is not None:
            t, xyz = self.filter.add(t, xyz)
            if t.size == 0:  # (a fix held until the next one decides it)
                return
        self._append(t, xyz)

    def finish(self) -> None:
        """At the end of the recording: the fixes still held, kept."""
        if self.filter is not None:
            t, xyz = self.filter.finish()
            if t.size:
                self._append(t, xyz)

    @property
    def holding(self) -> bool:
        """Whether the filter holds a fix (the track ends before it)."""
        return self.filter is not None and self.filter.holding

    def expire(self, t: int) -> None:
        """The held fix kept once ``t`` (ns, a measuring time) is past its
        judging window (:meth:`demine.positions.FixFilter.expire`)."""
        if self.holding:
            assert self.filter is not None
            t_kept, xyz = self.filter.expire(t)
            if t_kept.size:
                self._append(t_kept, xyz)

    def _append(self, t: np.ndarray, xyz: np.ndarray) -> None:
        self._t.append(t)
        self._xyz.append(xyz)
        self._joined = None
        dropped = 0
        while len(self._t) > 1 and self._t[-1][-1] - self._t[0][-1] > self.keep_ns:
            dropped += len(self._t.popleft())
            self._xyz.popleft()
        if self._cat is None or len(self._t) == 1:
            self._cat = (np.concatenate(self._t), np.concatenate(self._xyz))
        else:
            ct, cx = self._cat
            self._cat = (np.concatenate((ct[dropped:], t)), np.concatenate((cx[dropped:], xyz)))
        self._last = None
        if self._fixed_gap is None:  # (once per fix: ~50 intervals at 10 Hz)
            d = np.diff(self._cat[0])
            d = d[d > 0]
            if d.size:
                self._set_gap(max(self.MIN_GAP_S,
                                  self.GAP_INTERVALS * float(np.median(d)) / 1e9))

    def _set_gap(self, gap: float) -> None:
        #: The gap limit in force (s).
        self.max_gap_s = gap
        # the fixes kept: at least a few of the longest intervals bridged (a
        # slow receiver would otherwise keep 5 s, two or three fixes)
        self.keep_ns = int(max(self._keep_s, 4.0 * gap) * 1e9)

    @property
    def last_time(self) -> int | None:
        if self._last is None and self._t:  # (asked several times per pass)
            self._last = int(self._t[-1][-1])
        return self._last

    def at(self, t: np.ndarray) -> np.ndarray:
        if not self._t:
            return np.full((t.size, 3), np.nan)
        if self._joined is None:  # (prepared once per fix, not once per call)
            assert self._cat is not None
            self._joined = PreparedTrack(*self._cat, max_gap_s=self.max_gap_s)
        return self._joined.at(t)


class _DetectWorker:
    """One stream's detector, run by the writer thread or in a thread of its own.

    Inline (the default, ``threaded=False``): :meth:`submit` keeps the chunk,
    and the writer thread calls :meth:`run_pending` at the end of each pass,
    after its writes and its flush when one is due, so a detector never
    delays a frame's way into the file by more than its own call (and one
    that fails costs none: the recorder stops with its error and writes
    everything received).  With its own thread the compiled kernels release
    the GIL and radar detection can run on another core, but at the reference
    load that parallelism is worth less than it costs: the threads hand the
    GIL to each other thousands of times a second (every NumPy call on more
    than a few hundred values releases it), and each hand-over is a futex
    call and a context switch (``benchmarks/bench_live.py`` compares both).
    Either way frames reach the detector in the order they were written, so
    live alarms still equal batch ones.

    Detectors that cannot keep up inline (a slow machine, a heavy
    configuration) would delay the writer's passes more and more; the
    recorder then moves the busiest to a thread of its own
    (:meth:`move_to_thread`, see :attr:`Recorder.detect_max_busy`), where a
    backlog of chunks waits for it while the frames keep reaching the file
    on time.
    """

    def __init__(self, name: str, detector: Any, sink: Callable[[Any], None],
                 on_error: Callable[[BaseException], None], threaded: bool = False) -> None:
        self.name = name
        self.detector = detector
        self._sink = sink
        self._on_error = on_error
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._failed = False
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        #: Seconds spent in inline calls since the recorder last looked.
        self.busy = 0.0
        #: Whether the detector was moved to a thread because it could not keep up inline.
        self.moved = False
        if threaded:
            self._start_thread()

    def _start_thread(self) -> None:
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"demine-detect-{self.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def threaded(self) -> bool:
        """Whether the detector runs in a thread of its own."""
        return self._queue is not None

    @property
    def failed(self) -> bool:
        """Whether the detector raised (or finished): it takes no more chunks."""
        return self._failed

    @property
    def backlog(self) -> int:
        """Chunks waiting for the detector."""
        return self._queue.qsize() if self._queue is not None else len(self._pending)

    def submit(self, samples: np.ndarray, x: np.ndarray, y: np.ndarray,
               t: np.ndarray) -> None:
        if self._failed:
            return  # (its error is reported; the frames are in the file)
        if self._queue is not None:
            self._queue.put((samples, x, y, t))
        else:
            self._pending.append((samples, x, y, t))

    def run_pending(self) -> None:
        """Inline: run the detector on the chunks submitted since the last call
        (in the calling thread: the writer's, at the end of its pass)."""
        items, self._pending = self._pending, []
        if not items or self._failed:
            return
        start = time.monotonic()
        try:
            self._process(items)
        except BaseException as exc:  # noqa: BLE001 - reported by the recorder
            self._fail(exc)
            return
        self.busy += time.monotonic() - start

    def move_to_thread(self) -> None:
        """From now on, run in a thread of its own (inline chunks already
        processed; called by the writer thread, which alone submits).  A
        detector that failed stays where it is (it takes nothing more)."""
        if self._queue is None and not self._failed:
            self.moved = True
            self._start_thread()
            assert self._queue is not None
            for item in self._pending:  # (none when called after run_pending)
                self._queue.put(item)
            self._pending = []

    def close(self, timeout: float = 120.0) -> None:
        """Finish the stream (remaining alarms written) and end the thread.

        A thread that has not finished ``timeout`` seconds later (a detector
        that fell behind) is reported as an error: its last alarms are not in
        the file (the file is closed after this; the thread's later writes
        fail and change nothing)."""
        if self._queue is None:
            self.run_pending()
            if not self._failed:
                self._failed = True  # (finished: nothing more to take)
                try:
                    self._sink(self.detector.finish())
                except BaseException as exc:  # noqa: BLE001 - reported by the recorder
                    self._on_error(exc)
            return
        self._queue.put(None)
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._on_error(RecordingError(
                f"detection of stream {self.name!r} had not finished when the recording was "
                f"closed ({self._queue.qsize()} chunks still waiting): its last alarms are "
                "not in the file (run 'demine detect --stream NAME --write --replace' on "
                "the recording)"))

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self._pending = []
        self._on_error(exc)

    def _process(self, items: list[tuple[np.ndarray, ...]]) -> None:
        if len(items) == 1:  # (the usual case: no copies)
            self._sink(self.detector.process(*items[0]))
        else:
            self._sink(self.detector.process(
                *(np.concatenate([it[k] for it in items]) for k in range(4))))

    #: Least time between the starts of two detector calls in a thread of its
    #: own: chunks that arrive meanwhile are joined, because per-call costs
    #: dominate at serial-read sizes (a radar detector fed 4-trace chunks
    #: costs 3-4x what it costs fed 400-trace ones).  A chunk that comes later
    #: than that is processed at once: with a 10 Hz GPS (frames are handed
    #: over when the fix after them is in) the detectors run about once per
    #: fix, plus a small call for the frames of a fix that were read in the
    #: pass after it, which must not wait for the next fix.  Joining does not
    #: change the alarms (the detectors are chunk-invariant).
    min_interval = 0.02

    def _run(self) -> None:
        assert self._queue is not None
        last = -1e9
        try:
            while True:
                items = [self._queue.get()]
                wait = self.min_interval - (time.monotonic() - last)
                if wait > 0:
                    time.sleep(wait)
                last = time.monotonic()
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                end = None in items
                items = [it for it in items if it is not None]
                if items:
                    self._process(items)
                if end:
                    self._sink(self.detector.finish())
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the recorder
            self._failed = True  # (no more chunks queued for a thread that ended)
            self._on_error(exc)


def stream_names(devices: Sequence[DeviceSpec]) -> list[str]:
    """The stream name each device records as (what ``demine info`` shows): its
    NAME when given, else its kind (``emi``, ``gpr``, ``gps``), numbered when
    several devices share one (``emi1``, ``emi2``).

    Raises
    ------
    ConfigError
        Two devices would record as one stream.
    """
    names: list[str] = []
    kinds = [get_driver(d.driver).kind for d in devices]
    for spec, kind in zip(devices, kinds, strict=True):
        if spec.name:
            name = spec.name
        elif kinds.count(kind) == 1:
            name = kind
        else:
            name = f"{kind}{sum(1 for n in names if n.startswith(kind)) + 1}"
        if name in names:
            raise ConfigError(f"two devices would both record as stream {name!r}; name them")
        try:
            check_stream_name(name)
        except SchemaError as exc:
            raise ConfigError(f"device {spec.driver}={spec.url}: {exc}") from None
        names.append(name)
    return names


class Recorder:
    """Record devices into one file until stopped.

    Parameters
    ----------
    out : path
        Recording to create.  If recording fails before its first frame is
        written (a detector that cannot be made, the file that cannot take
        the streams, …) the file is removed again; a detector that cannot be
        made fails before the file is created (an existing file given with
        ``overwrite`` is then left as it was).
    devices : sequence of DeviceSpec
        The devices.  Their calibrations are used as given: no shipped
        default profile is added (``demine record`` adds one; see
        :func:`demine.cli.record.default_calibrations`).
    frame : LocalFrame, optional
        The local metric frame; without it the first valid GPS fix becomes
        the origin (bearing 0).
    truth : list of dict or mapping of columns, optional
        Ground truth to store in the truth table.
    site, operator, lane_id, notes : str
        Root attributes.
    flush_interval, fsync, overwrite :
        As for :class:`~demine.recording.RecordingWriter`.
    startup_timeout : float
        Seconds to wait for the first frames of every device, and (with a GPS
        and no ``frame``) for its first fix with a position, the origin of the
        local frame; without one by then the recording has no frame.
    position_wait : float, optional
        Longest time a detector or radar frame waits for a later GPS fix.  By
        default long enough for the next fix across the longest interval the
        track bridges (``max_gap``), plus the receiver's latency and 0.1 s, at
        least 1 s.
    max_gap : float, optional
        Fixes farther apart (s) are a gap: frames between them get no position.
        By default 2.5 times the receiver's median fix interval, at least 1 s
        (see :class:`_Track`).
    max_fix_speed : float or None, optional
        A lone fix that implies more than this speed (m/s) both from the fix
        before it and to the one after it, while those two agree, is a
        measurement error (multipath) and places nothing
        (:class:`demine.positions.FixFilter`; default
        :data:`demine.positions.MAX_FIX_SPEED`, None: every fix is used).  The
        GPS stream keeps it as received; :attr:`processing_notes` counts them.
    on_event : callable, optional
        Called with every reader event (stall, disconnect, diagnosis, …).
    detect : bool, path or mapping, optional
        Run the detectors live (``True`` for the defaults, or a detection
        configuration, see :mod:`demine.pipeline`) and write each alarm into
        the recording's alarms table as it completes.  The same
        :class:`~demine.pipeline.StreamDetector` runs on the same frames as
        ``demine detect`` does later, so live and batch alarms are equal.
    reader_options : mapping, optional
        Options of every :class:`~demine.acquisition.DeviceReader` (e.g.
        ``poll_interval``, ``align``); ``group=False`` gives each reader a
        thread of its own.
    writer_options : mapping, optional
        More options of the :class:`~demine.recording.RecordingWriter` (e.g.
        ``compression``, ``chunk_cache``, ``min_free_bytes``); not those the
        recorder sets itself (:class:`ConfigError`).
    control : str, optional
        Serve the control channel (:mod:`demine.control`) on this address (a
        Unix socket path or ``127.0.0.1:PORT``) once recording starts, so
        another process (the console) can add marks, pause and resume.
    detect_threads : bool
        Run each live detector in a thread of its own instead of in the
        writer thread at the end of each pass (the default; see
        :class:`_DetectWorker`).  The alarms are the same.
    """

    def __init__(self, out: str | Path, devices: Sequence[DeviceSpec], *,
                 frame: LocalFrame | None = None, truth: Any = None, site: str = "",
                 operator: str = "", lane_id: str = "", notes: str = "",
                 flush_interval: float = 1.0, fsync: bool = False, overwrite: bool = False,
                 startup_timeout: float = 10.0, position_wait: float | None = None,
                 max_gap: float | None = None,
                 max_fix_speed: float | None = MAX_FIX_SPEED,
                 on_event: Callable[[ReaderEvent], Any] | None = None,
                 reader_options: Mapping[str, Any] | None = None,
                 detect: Any = None, control: str | None = None,
                 writer_options: Mapping[str, Any] | None = None,
                 detect_threads: bool = False) -> None:
        if not devices:
            raise ConfigError("no devices to record (give at least one --device DRIVER=PORT)")
        self.out = Path(out)
        # (checked before any port is opened: found when the file was created,
        # after the devices' first frames, a silent device hid it, and HDF5 said
        # it in its own words)
        if self.out.is_dir():
            raise ConfigError(f"{self.out}: a directory; give the recording's file name "
                              f"(e.g. {self.out / 'lane1.h5'})")
        if not self.out.parent.is_dir():
            raise ConfigError(f"{self.out}: no directory {self.out.parent} to create it in")
        if self.out.exists() and not overwrite:
            raise RecordingError(f"{self.out}: file exists (use --overwrite to replace it)")
        for what, value in (("position_wait", position_wait), ("max_gap", max_gap)):
            if value is not None and not (isinstance(value, int | float)
                                          and not isinstance(value, bool)
                                          and math.isfinite(value) and value > 0):
                raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
        if max_fix_speed is not None and not (isinstance(max_fix_speed, numbers.Real)
                                              and not isinstance(max_fix_speed, bool)
                                              and math.isfinite(max_fix_speed)
                                              and max_fix_speed > 0):
            raise ConfigError(f"max_fix_speed must be a positive number of m/s (or None: no "
                              f"fix rejected), got {max_fix_speed!r}")
        self.devices = list(devices)
        self._names = stream_names(self.devices)
        kinds = [get_driver(d.driver).kind for d in devices]
        # the calibrations as stored (JSON-ready copies; the caller's are left as they are)
        self.devices = [
            DeviceSpec(d.driver, d.url, d.name, d.options, d.serial_options,
                       _checked_calibration(d, name, kind))
            for d, name, kind in zip(devices, self._names, kinds, strict=True)]
        self.writer_options = dict(writer_options or {})
        self.frame = frame
        self.truth = truth
        self.meta = {"site": site, "operator": operator, "lane_id": lane_id, "notes": notes}
        # checked now, not in start() after the ports are open: options the
        # recorder sets itself clashed there ("multiple values for keyword")
        own = {"path", "flush_interval", "fsync", "overwrite", "attrs", "autoflush",
               "flush_on_append", *self.meta}
        allowed = set(inspect.signature(RecordingWriter).parameters) - own
        bad = sorted(set(self.writer_options) - allowed)
        if bad:
            raise ConfigError(f"writer_options {', '.join(map(str, bad))}: not an option the "
                              f"recorder leaves to choose ({', '.join(sorted(allowed))})")
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.overwrite = overwrite
        self.startup_timeout = startup_timeout
        #: Longest wait of a frame for a later fix (s); None: derived (see _update_wait)
        self.position_wait = position_wait
        self.on_event = on_event
        # the GPS streams' receiver latencies (ns), subtracted from their fix times
        self._latency_ns = {
            name: round(float(d.calibration.get("latency", 0.0)) * 1e9)
            for d, name, kind in zip(self.devices, self._names, kinds, strict=True)
            if kind == "gps"}
        if not self.flush_interval > 0:
            raise ConfigError(f"flush interval must be > 0 s, got {flush_interval}")
        #: Seconds between two passes of the writer thread (and reads of the readers).
        self.pass_interval = min(self.flush_interval, 0.05)
        self._queue = _Inbox()  # (name, FrameBatch) from the readers
        self._readers: dict[str, DeviceReader] = {}
        # The readers wake on the writer's grid, at most every 25 ms: a pty
        # holds about 18 KB and the radar sends 10 KB in 25 ms (at 50 ms its
        # frames were lost); with slower passes they wake twice per pass.
        ropts = {"poll_interval": self.pass_interval / math.ceil(self.pass_interval / 0.025),
                 "align": True, **dict(reader_options or {})}
        # local ports (device paths, pseudo-terminals) are read by one thread,
        # in one wake-up per period; network ports (which may take seconds to
        # connect) each by their own; reader_options={"group": False}: all by
        # their own (the previous design, for comparison)
        group = ropts.pop("group", True)
        for spec, name in zip(self.devices, self._names, strict=True):
            drv = get_driver(spec.driver, **spec.options)
            self._readers[name] = DeviceReader(
                spec.url, drv, name=name, serial_options=spec.serial_options or None,
                on_frames=lambda b, n=name: self._queue.put((n, b)),
                on_event=self._event, **ropts,
            )
        local = [r for r in self._readers.values() if "://" not in r.url]
        self._group = ReaderGroup(local) if group and len(local) > 1 else None
        self.writer: RecordingWriter | None = None
        self._streams: dict[str, Any] = {}
        self._kinds = {n: r.driver.kind for n, r in self._readers.items()}
        self._has_gps = "gps" in self._kinds.values()
        # each stream's frame shape (from its first frames) and those that changed it
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._changed: set[str] = set()
        # radars placed by their survey wheel (no GPS): metres per count, and
        # the last count and x (None: the wheel has not turned yet)
        self._wheel: dict[str, float] = {}
        self._wheel_at: dict[str, tuple[float, float | None]] = {}
        self._wheel_jumps: dict[str, int] = {}
        # the status bit its driver sets on a count not to be trusted, and how
        # many traces had it
        self._wheel_fault_bit: dict[str, int] = {}
        self._wheel_faults: dict[str, int] = {}
        # frames received in this pass of the writer thread, per stream
        self._incoming: dict[str, list[FrameBatch]] = {n: [] for n in self._readers}
        # written frames not yet handed to the detectors: (first row, batch,
        # positions, or None while they are not final)
        self._unplaced: dict[str, deque[tuple[int, FrameBatch, dict | None]]] = {
            n: deque() for n in self._readers}
        self._rows: dict[str, int] = dict.fromkeys(self._readers, 0)
        # final positions not yet written: stream -> (first row, column parts)
        self._pos_pending: dict[str, tuple[int, list[dict[str, np.ndarray]]]] = {}
        self._pos_due = 0.0
        self._track = _Track(max_gap_s=max_gap, max_speed=max_fix_speed)
        self._wait_s = 1.0  # the position wait in force (s), see _update_wait
        self._update_wait()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.frames_written: dict[str, int] = dict.fromkeys(self._readers, 0)
        self.detect_config = None
        if detect is not None and detect is not False:
            from .pipeline import load_detect_config

            self.detect_config = load_detect_config(None if detect is True else detect)
        self._detectors: dict[str, _DetectWorker] = {}
        self.detect_threads = bool(detect_threads)
        self._load_since = 0.0  # start of the detectors' current load window
        self._alarm_lock = threading.Lock()
        self.alarms_written = 0
        #: what the detectors' chains decided from the data, one line per
        #: decision prefixed with the stream's name (filled in at stop)
        self.processing_notes: list[str] = []
        # set with the first error (see the ``error`` property): run() waits on it
        self._error_set = threading.Event()
        self.error = None
        self._writer_failed = False  # the writer itself (not a detector) failed
        self.started_at: float | None = None
        self.events: list[ReaderEvent] = []
        self.control = control
        self.paused = False  # set over the control channel: frames are dropped
        self._control_server: Any = None

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the recording or a detector (None: none)."""
        return self._error

    @error.setter
    def error(self, exc: BaseException | None) -> None:
        self._error = exc
        if exc is not None:
            self._error_set.set()

    def _event(self, ev: ReaderEvent) -> None:
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    # ------------------------------------------------------------------ control
    def start(self) -> Recorder:
        """Start the readers, wait for every device's first frames, open the file."""
        ports: dict[str, str] = {}
        for d, name in zip(self.devices, self._names, strict=True):
            if "://" in d.url:   # (a URL may name independent ports: loop://, socket://)
                continue
            port = os.path.realpath(d.url)
            if port in ports:   # (each would get part of the bytes: "no frames" said)
                raise ConfigError(f"streams {ports[port]!r} and {name!r} are both on port "
                                  f"{d.url}: give each device its own port")
            ports[port] = name
        self.started_at = time.monotonic()
        if self._group is not None:
            self._group.start()
        for r in self._readers.values():
            if r._group is None:
                r.start()
        first: dict[str, list[FrameBatch]] = {n: [] for n in self._readers}
        deadline = time.monotonic() + self.startup_timeout
        # Without a given frame its origin is the first GPS fix with a position,
        # and it cannot change once the file is open: a receiver starting
        # without a fix (the usual cold start) is waited for, up to the
        # startup timeout, rather than leaving every x and y of the recording NaN.
        gps = [n for n, k in self._kinds.items() if k == "gps"]
        need_fix = self.frame is None and bool(gps)

        def has_fix() -> bool:
            return any(bool((np.isfinite(b.samples[:, 0]) & np.isfinite(b.samples[:, 1])).any())
                       for n in gps for b in first[n])

        def framed() -> bool:
            return all(sum(len(b) for b in v) >= 2 for v in first.values())

        def enough() -> bool:
            return framed() and (not need_fix or has_fix())

        said_waiting = interrupted = False
        try:
            while not enough() and time.monotonic() < deadline:
                if need_fix and not said_waiting and framed():
                    said_waiting = True
                    self._event(ReaderEvent(
                        time.time_ns(), "waiting",
                        f"waiting up to {deadline - time.monotonic():.0f} s for a fix with a "
                        "position, the origin of the recording's local frame (--origin "
                        "gives it)", gps[0]))
                try:
                    name, batch = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                first[name].append(batch)
        except KeyboardInterrupt:
            if not (said_waiting and framed()):
                raise   # (nothing to keep yet: the start-up is cut short as before)
            # stopped while waiting for a fix: what every device sent is kept,
            # recorded without a local frame, and the interrupt goes on after
            interrupted = True
        missing = [n for n, v in first.items() if not v]
        if missing:
            self.stop_readers()
            diag = "; ".join(
                f"{n} on {self._readers[n].url}: "
                + (self._readers[n].stats.diagnosis or "no frame")
                + _bad_lines_text(self._readers[n])
                for n in missing
            )
            raise RecordingError(
                f"no frames within {self.startup_timeout:g} s from {', '.join(missing)} ({diag})"
            )
        if need_fix and not has_fix():
            msg = ("stopped before a fix with a position came: " if interrupted else
                   f"no fix with a position within {self.startup_timeout:g} s: ") + (
                   "the recording has no local frame, so every x and y stays NaN (give the "
                   "origin, --origin LON,LAT, or a longer --startup-timeout)")
            self.processing_notes.append(f"{gps[0]}: {msg}")
            self._event(ReaderEvent(time.time_ns(), "no_fix", msg, gps[0]))
        try:
            self._open_writer(first)
        except BaseException:  # (e.g. the file cannot be created): no reader left running
            self.stop_readers()
            raise
        # The first frames go ahead of whatever the readers queued meanwhile.
        for name, batches in first.items():
            for b in batches:
                self._dispatch(name, b)
        self._thread = threading.Thread(target=self._write_loop, name="demine-recorder",
                                        daemon=True)
        self._thread.start()
        if interrupted:
            raise KeyboardInterrupt   # (stop() writes what was held, and closes the file)
        if self.control:
            from .control import ControlServer, RecorderControl

            self._control_server = ControlServer(self.control, RecorderControl(self)).start()
        return self

    def _origin(self, first: dict[str, list[FrameBatch]]) -> LocalFrame | None:
        """The local frame from the first fixes: the first position, at the
        altitude of the first fix with a position and an altitude (a
        receiver's first fixes may have none, e.g. 2D fixes: 0 m would make
        every ``z`` a height above sea level).  Without one among these fixes
        the altitude is NaN (unknown: the root attributes cannot change once
        the file is open), and so is every ``z``."""
        origin: tuple[float, float] | None = None
        for name, batches in first.items():
            if self._kinds[name] != "gps":
                continue
            for b in batches:
                lon, lat, alt = b.samples[:, 0], b.samples[:, 1], b.samples[:, 2]
                pos = np.isfinite(lon) & np.isfinite(lat)
                ok = np.flatnonzero(pos)
                if not ok.size:
                    continue
                if origin is None:
                    origin = (float(lon[ok[0]]), float(lat[ok[0]]))
                with_alt = np.flatnonzero(pos & np.isfinite(alt))
                if with_alt.size:
                    return LocalFrame(*origin, float(alt[with_alt[0]]))
            if origin is not None:  # (one GPS device gives the origin)
                break
        return None if origin is None else LocalFrame(*origin, math.nan)

    def _open_writer(self, first: dict[str, list[FrameBatch]]) -> None:
        if self.frame is None:
            self.frame = self._origin(first)
        elif not math.isfinite(self.frame.origin_alt):
            # an origin given without its altitude: the first fix's that has one
            got = self._origin(first)
            if got is not None and math.isfinite(got.origin_alt):
                self.frame = dataclasses.replace(self.frame, origin_alt=got.origin_alt)
        # what each stream is, from its first frames and its calibration
        plan: list[tuple[str, DeviceSpec, Any, dict[str, Any], dict[str, Any],
                         dict[str, Any]]] = []
        for (name, reader), spec in zip(self._readers.items(), self.devices, strict=True):
            drv = reader.driver
            sample = first[name][0]
            extra = {k: v.dtype for k, v in sample.fields.items()}
            extra["device_time_us"] = np.dtype("int64")
            extra["host_time"] = np.dtype("int64")
            kw: dict[str, Any] = {}
            if drv.kind == "emi":
                gates = spec.calibration.get("gate_times")
                kw["n_channels"] = sample.samples.shape[1]
                if gates is not None and len(gates) == sample.samples.shape[1]:
                    kw["gate_times"] = gates
                elif gates is not None:
                    # (e.g. an 8-gate detector given the shipped 16-gate profile:
                    # recorded without gate times, and said now, not at processing)
                    msg = (f"its calibration gives {len(gates)} gate times and the device "
                           f"sends {sample.samples.shape[1]} gates: the stream is recorded "
                           "without gate times (give --calibration "
                           f"{name}=PROFILE with this detector's)")
                    self.processing_notes.append(f"{name}: {msg}")
                    self._event(ReaderEvent(time.time_ns(), "calibration", msg, name))
            elif drv.kind == "gpr":
                kw["n_channels"] = sample.samples.shape[1]
                kw["dtype"] = sample.samples.dtype
                dt = spec.calibration.get("sample_interval")
                if dt:
                    kw["sample_interval"] = float(dt)
            self._shapes[name] = tuple(sample.samples.shape[1:])
            dpc = spec.calibration.get("distance_per_count")
            if (drv.kind == "gpr" and not self._has_gps and "encoder" in sample.fields
                    and isinstance(dpc, int | float) and not isinstance(dpc, bool)
                    and math.isfinite(dpc) and dpc != 0):
                # (without a GPS the radar's survey wheel places it, as vendor
                # files place their traces: x along the line, y = 0; its traces
                # had been left out of detection)
                self._wheel[name] = float(dpc)
                if "status" in sample.fields and int(getattr(drv, "encoder_fault_bit", 0)):
                    self._wheel_fault_bit[name] = int(drv.encoder_fault_bit)
                self.processing_notes.append(
                    f"{name}: placed by its survey wheel (distance_per_count {dpc:g} m, no "
                    "GPS): x along the line from where the wheel first turned, y = 0"
                    + ("" if spec.calibration.get("distance_per_count_from") else
                       "; the profile does not say it was measured for this wheel "
                       "(demine calibrate wheel measures it)"))
            t = np.concatenate([b.time_ns for b in first[name]])
            dt = np.diff(t)
            dt = dt[dt > 0]
            attrs = {"sample_rate": 1e9 / float(np.median(dt))} if dt.size else {}
            plan.append((name, spec, drv, kw, attrs, extra))
        try:
            # the detectors first: one that cannot be made for this stream (a
            # calibration missing, a bad config) fails before the file is
            # created, so an existing file given with overwrite is left as it was
            for name, spec, drv, kw, attrs, _ in plan:
                if self.detect_config is not None and drv.kind in ("emi", "gpr"):
                    self._make_detector(name, drv.kind,
                                        {**kw, "calibration": spec.calibration}, attrs)
        except BaseException:
            self._close_detectors()
            raise
        attrs = self.frame.attrs() if self.frame is not None else {}
        # the write loop flushes at the end of its passes: no flush thread, and
        # no flush from inside an append in the middle of a pass
        try:
            w = RecordingWriter(self.out, flush_interval=self.flush_interval, fsync=self.fsync,
                                overwrite=self.overwrite, attrs=attrs, autoflush=False,
                                flush_on_append=False, **dict(self.writer_options),
                                **self.meta)
        except BaseException:
            self._close_detectors()
            raise
        self.writer = w
        # a GPS places the streams: their z is its altitude less the origin's,
        # not the sensor's height above the ground (nothing here measures that)
        placed = {"z_datum": "frame"} if any(p[2].kind == "gps" for p in plan) else {}
        try:
            for name, spec, drv, kw, attrs, extra in plan:
                self._streams[name] = w.add_stream(
                    name, drv.kind, driver=drv.name,
                    device=f"{drv.name} on {self._readers[name].url}",
                    # (the profile's, else the driver's: had been left empty)
                    units=str(spec.calibration.get("units") or getattr(drv, "units", "")
                              or ""),
                    calibration=spec.calibration, fields=extra, attrs={**attrs, **placed},
                    geo=drv.kind in ("emi", "gpr") and self.frame is not None, **kw,
                )
            if self.truth is not None:
                w.add_truth(self.truth)
            w.start()
        except BaseException:
            self._close_detectors()
            try:
                w.close()
            finally:
                # nothing was written into it: the file this writer created (an
                # existing one given with overwrite was already emptied by it)
                # is removed, so the same command runs again once fixed
                self._remove_empty_file()
            raise

    def _close_detectors(self) -> None:
        """End the detectors made for the streams (their threads wait for
        frames; they were given none, so they have no alarm to write)."""
        for worker in self._detectors.values():
            worker.close(timeout=5.0)
        self._detectors.clear()

    def _remove_empty_file(self) -> None:
        """Remove the file this recorder created when it holds no frame."""
        self.writer = None
        try:
            self.out.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: could not remove the empty recording: %s", self.out, exc)

    def _make_detector(self, name: str, kind: str, kw: Mapping[str, Any],
                       attrs: Mapping[str, Any]) -> None:
        from .pipeline import StreamDetector
        from .process import _calibration_context

        sec = self.detect_config[kind]
        if not sec["enabled"]:
            return
        # The same facts demine.process._stream_context reads back from the file.
        ctx: dict[str, Any] = {"stream": name, "kind": kind, "n_channels": kw["n_channels"]}
        if kw.get("gate_times") is not None:
            ctx["gate_times"] = np.asarray(kw["gate_times"], dtype=np.float64)
        if kw.get("sample_interval"):
            ctx["sample_interval"] = float(kw["sample_interval"])
        if "sample_rate" in attrs:
            ctx["sample_rate"] = float(attrs["sample_rate"])
        ctx.update(_calibration_context(kw.get("calibration"), kind))
        params = dict(sec["detector"])
        if kind == "gpr":
            # one thread: live chunks are small, the cores are shared with the
            # readers and the writer, and waking OpenMP workers ten times a
            # second costs more than it saves (the alarms do not depend on it)
            params.setdefault("nthreads", 1)
        self._detectors[name] = _DetectWorker(
            name, StreamDetector(kind, ctx, sec["chain"], params),
            self._write_alarms, self._detector_failed, threaded=self.detect_threads)

    def _detector_failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def _write_alarms(self, alarms: Mapping[str, np.ndarray]) -> None:
        n = len(alarms["x"])
        if n == 0 or self.writer is None:
            return  # (most detector calls complete no alarm)
        from .recording import TABLES

        cols = {c.name for c in TABLES["alarms"]}
        self.writer.append_alarms({k: v for k, v in alarms.items() if k in cols})
        with self._alarm_lock:
            self.alarms_written += n
        self.writer.flush()  # alarms are rare: make them visible to readers (consoles) now

    def stop_readers(self) -> None:
        if self._group is not None:
            self._group.stop()
        for r in self._readers.values():
            r.stop()  # (a grouped reader is already stopped: returns at once)

    #: Longest wait (s) in :meth:`stop` for the detectors running in threads
    #: of their own to finish (all together).
    detect_close_timeout = 120.0
    #: :meth:`stop` warns every this many seconds while the writer thread is
    #: still busy.
    stop_warn_interval = 30.0

    def stop(self) -> None:
        """Stop reading, write everything received, close the file.

        A detector that failed stops nothing else: every frame received is
        still written and placed, and the other detectors finish (their last
        alarms written).  Only a failure of the writer itself (disk full, …)
        leaves the file as it was at its last good flush (removed when it
        failed before the first frame was written: it holds no data, and the
        same command can then run again).  The writer thread is
        waited for however long it takes (it may be inside a detector's call):
        the final writes must not run beside it.
        """
        self.stop_readers()
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None
        self._stop.set()
        if self._thread is not None:
            waited = 0.0
            self._thread.join(timeout=self.stop_warn_interval)
            while self._thread.is_alive():
                waited += self.stop_warn_interval
                log.warning("recording %s: the writer thread is still busy after %.0f s "
                            "(a detector's call or a flush); waiting for it", self.out, waited)
                self._thread.join(timeout=self.stop_warn_interval)
        if self.writer is None:
            return
        if not self._writer_failed:
            try:
                self._drain(final=True)
            except Exception as exc:  # noqa: BLE001 - e.g. disk full while draining
                self._writer_failed = True
                if self.error is None:
                    self.error = exc
        # every detector is closed, whatever failed: threads of their own end
        deadline = time.monotonic() + self.detect_close_timeout
        for worker in self._detectors.values():
            try:
                worker.close(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - reported like a detector's error
                self._detector_failed(exc)
        self._collect_notes()
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001 - the file keeps its last good flush
            if self.error is None:
                self.error = exc
        if self.error is not None and not any(self.frames_written.values()):
            # it failed before its first frame was written: no data to keep
            self._remove_empty_file()

    def _collect_notes(self) -> None:
        """What each detector's chain decided (:attr:`processing_notes`), also
        when the recording stopped on an error (a chain's notes are read from
        immutable state, so a detector thread left running is no hazard)."""
        for worker in self._detectors.values():
            notes = list(worker.detector.notes())
            if worker.moved:
                notes.append("detection could not keep up in the writer thread (more than "
                             f"{self.detect_max_busy:.0%} of the time): moved to a thread of "
                             "its own")
            for note in notes:
                line = f"{worker.name}: {note}"
                if line not in self.processing_notes:  # (stop may be called again)
                    self.processing_notes.append(line)
                    log.info("%s", line)
        for name, reader in self._readers.items():
            n, fmt = _bad_lines(reader)
            n = n if n > _bad_lines_allowed(reader.stats) else 0
            hint = (f" (the driver's options set its format: --option {name}.columns=...)"
                    if getattr(reader.driver, "columns", None) else "")
            line = (f"{name}: {n} line(s) not in the driver's format ({fmt}) were left out"
                    + hint if n else "")
            if line and line not in self.processing_notes:
                self.processing_notes.append(line)
                log.info("%s", line)
            st = reader.stats
            if getattr(st, "frames_missing", 0):
                # (lost before the recorder had them: the device's or the port's
                # buffer overran, or the link dropped them; demine info counts them)
                line = (f"{name}: {st.frames_missing} frame(s) missing in {st.sequence_gaps} "
                        "gap(s) of the device's sequence numbers (never received: a buffer "
                        "overran or the link dropped them)")
                if line not in self.processing_notes:
                    self.processing_notes.append(line)
                    log.warning("%s", line)
            restarts = getattr(st, "sequence_resets", 0)
            dups = getattr(st, "duplicates", 0)
            if restarts or dups:
                # (a device's restarts and resends had been counted and said nowhere)
                line = (f"{name}: " + ", ".join(
                    p for p in ((f"{restarts} restart(s) of the device's sequence numbers "
                                 "(its frames kept)" if restarts else ""),
                                (f"{dups} frame(s) received twice (a resend, same number and "
                                 "content) left out" if dups else "")) if p))
                if line not in self.processing_notes:
                    self.processing_notes.append(line)
                    log.info("%s", line)
        gps = [n for n, k in self._kinds.items() if k == "gps"]
        if gps and self._track.filter is not None:
            for note in self._track.filter.notes():
                line = f"{gps[0]}: {note}"
                if line not in self.processing_notes:
                    self.processing_notes.append(line)
                    log.info("%s", line)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, duration: float | None = None,
            status: Callable[[dict[str, Any]], Any] | None = None,
            status_interval: float = 1.0) -> None:
        """Record until ``duration`` seconds have passed (or forever), calling
        ``status`` with :meth:`status` every ``status_interval`` seconds."""
        end = None if duration is None else time.monotonic() + duration
        next_status = time.monotonic()
        while end is None or time.monotonic() < end:
            if self.error is not None:
                if isinstance(self.error, DemineError):
                    raise self.error
                raise RecordingError(f"{self.out}: recording stopped: {self.error}")
            now = time.monotonic()
            if status is not None and now >= next_status:
                status(self.status())
                next_status += status_interval
            # until the next status line or the end, or at once on an error
            # (setting ``error`` wakes this wait; it took 20 wake-ups a second)
            wait = 1.0 if status is None else max(0.0, next_status - now)
            if end is not None:
                wait = min(wait, max(0.0, end - now))
            self._error_set.wait(wait)

    # ------------------------------------------------------------------ writing
    #: The writer's pass comes this long after the readers' wake-up (a share of
    #: the pass interval), so that their frames of that period are in.
    pass_lag = 0.004
    #: Share of the time the inline detectors may keep the writer thread busy
    #: (over ``detect_busy_window`` seconds) before the busiest of them is
    #: moved to a thread of its own.
    detect_max_busy = 0.5
    #: Seconds over which that share is measured.
    detect_busy_window = 2.0
    #: Final positions of frames already in the file are written at most this
    #: often (s): one write per column for several GPS fixes' worth of rows
    #: instead of one per fix (position columns were a fifth of the writer's
    #: CPU).  Until then the file shows NaN there; the detectors are not kept
    #: waiting (they get the positions in memory).
    position_write_interval = 0.25

    def _write_loop(self) -> None:
        # One pass per period, on the readers' grid (they read at multiples of
        # the period, the pass follows pass_lag later): the frames of every
        # serial read since the last pass are appended at once (per-append
        # costs dominate), then the file is flushed when due.
        period = self.pass_interval
        lag = min(self.pass_lag, period / 4)
        w = self.writer
        self._load_since = time.monotonic()
        # The first pass flushes at once: its frames were read while the recorder
        # waited for every device's first ones (seconds, for a slow device), and
        # waiting another flush_interval would leave them only in memory longer.
        first = True
        try:
            while not self._stop.is_set():
                self._drain(final=False)
                if w.dirty and (first or time.monotonic() - w.last_flush
                                >= self.flush_interval - period / 2):
                    w.flush()
                    first = False
                # this pass's frames are written (and flushed when due): the detectors' turn
                for det in self._detectors.values():
                    det.run_pending()
                self._check_detect_load()
                now = time.monotonic()
                rest = period - (now - lag) % period
                self._stop.wait(rest)
        except BaseException as exc:  # disk full, …: stop cleanly, keep what is written
            self._writer_failed = True
            self.error = exc
            log.debug("recording %s stopped: %s", self.out, exc)
            self.stop_readers()

    def _check_detect_load(self) -> None:
        """Move the busiest inline detector to a thread of its own when the
        inline detectors together took more than :attr:`detect_max_busy` of
        the last :attr:`detect_busy_window` seconds."""
        now = time.monotonic()
        span = now - self._load_since
        if span < self.detect_busy_window or self._stop.is_set():
            return
        inline = [d for d in self._detectors.values() if not d.threaded and not d.failed]
        total = sum(d.busy for d in inline)
        if inline and total > self.detect_max_busy * span:
            worst = max(inline, key=lambda d: d.busy)
            log.warning("live detection took %.0f %% of the writer's time: the detector of "
                        "stream %s (%.0f %%) moved to a thread of its own", 100 * total / span,
                        worst.name, 100 * worst.busy / span)
            worst.move_to_thread()
        for d in self._detectors.values():
            d.busy = 0.0
        self._load_since = now

    def _drain(self, final: bool, block: float = 0.0) -> None:
        got_any = False
        while True:
            try:
                name, batch = self._queue.get(timeout=block if not got_any and block else 0)
            except queue.Empty:
                break
            got_any = True
            self._dispatch(name, batch)
        if final:  # (the last fix held by the filter: nothing more will judge it)
            self._track.finish()
        elif self._track.holding:
            # a fix held by the filter (it jumped from the last one kept) is kept
            # once no fix measured inside its judging window can still arrive: a
            # receiver gone quiet after it does not leave the frames before it
            # unplaced (batch keeps it too, the next fix coming that late)
            self._track.expire(time.time_ns() - self._hold_slack_ns())
        self._write_incoming()
        self._place(final)

    def _dispatch(self, name: str, batch: FrameBatch) -> None:
        if name in self._changed:
            return
        if self.paused:
            # nothing is written; but the track still follows the receiver, so
            # that marks made while paused, and the resume marker, are placed
            # (they had been NaN, and the console had said the GPS was lost)
            if self._kinds[name] == "gps":
                self._gps_track(name, batch)
            return
        shape = self._shapes.get(name)
        if shape is not None and batch.samples.shape[1:] != shape:
            # A device set to other gates or another trace length: not a stream
            # of this file.  Recording stops, as on any error, but cleanly: the
            # frames received before it (those waiting for a position too) are
            # written and placed by stop(); the change is said in words.
            self._changed.add(name)
            what = {"emi": "gates", "gpr": "samples per trace"}.get(self._kinds[name],
                                                                    "values per frame")
            self.error = RecordingError(
                f"{name}: the device changed from {shape[0] if shape else 1} to "
                f"{batch.samples.shape[1] if batch.samples.ndim > 1 else 1} {what} while "
                "recording; recording stopped with every frame before the change (record "
                "the new setting into a new file)")
            self.stop_readers()
            return
        if self._kinds[name] == "gps":
            self._write_gps(name, batch)
        else:
            self._incoming[name].append(batch)

    def _gps_track(self, name: str, b: FrameBatch
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Add a GPS batch's fixes to the position track; return their times,
        local positions and columns."""
        cols = {c: b.samples[:, i] for i, c in enumerate(_GPS_COLUMNS)}
        xyz = np.full((len(b), 3), np.nan)
        if self.frame is not None:
            xyz[:, 0], xyz[:, 1] = self.frame.to_local(cols["lon"], cols["lat"])
            xyz[:, 2] = cols["alt"] - self.frame.origin_alt
        # when the receiver measured the fixes: their arrival (the device
        # clock mapped to the host's, which carries the receiver's delay) less
        # its calibrated latency
        lat = self._latency_ns.get(name, 0)
        t = b.time_ns - lat if lat else b.time_ns
        self._track.add(t, xyz)
        self._update_wait()
        return t, xyz, cols

    def _write_gps(self, name: str, b: FrameBatch) -> None:
        t, xyz, cols = self._gps_track(name, b)
        self._streams[name].append(
            time=t, sequence=b.sequence, x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2],
            lon=cols["lon"], lat=cols["lat"], alt=cols["alt"],
            # (missing -> 0 / -1; np.nan_to_num costs tens of NumPy calls)
            fix_quality=np.where(np.isfinite(cols["fix_quality"]),
                                 cols["fix_quality"], 0).astype("int8"),
            satellites=np.where(np.isfinite(cols["satellites"]),
                                cols["satellites"], -1).astype("int16"),
            hdop=cols["hdop"], device_time_us=b.device_time_us, host_time=b.host_time_ns,
            **b.fields,
        )
        self.frames_written[name] += len(b)

    #: Slack (s) over the receiver's latency before a held fix is kept for want
    #: of a later one: a fix measured inside the judging window may still be in
    #: the serial buffer or the queue.
    HOLD_SLACK_S = 0.5

    def _hold_slack_ns(self) -> int:
        return max(self._latency_ns.values(), default=0) + int(self.HOLD_SLACK_S * 1e9)

    def _update_wait(self) -> None:
        """The longest wait of a frame for a later fix, after a fix (the gap
        limit may have changed): as given, or long enough for the next fix
        across the longest interval the track bridges, sent the receiver's
        latency later (a slow receiver's frames were given up on before their
        fix came), plus 0.1 s; at least 1 s (the fixed wait before)."""
        if self.position_wait is not None:
            self._wait_s = float(self.position_wait)
            return
        latency = max(self._latency_ns.values(), default=0) / 1e9
        self._wait_s = max(1.0, self._track.max_gap_s * (1.0 + GAP_TOLERANCE) + latency + 0.1)

    def _positions(self, t: np.ndarray) -> dict[str, np.ndarray]:
        xyz = self._track.at(t)
        cols = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
        if self.frame is not None:
            cols["lon"], cols["lat"] = self.frame.to_geo(xyz[:, 0], xyz[:, 1])
        return cols

    def _covered(self, b: FrameBatch) -> bool:
        """Whether every frame of ``b`` lies before the last fix: its positions
        are final.  By its latest time, not its last frame's: mapped times can
        step back within a batch (a refit of the clock, ClockFit.max_hold_s),
        and frames after the last fix had been written without a position
        for good."""
        last_fix = self._track.last_time
        return last_fix is not None and last_fix >= int(b.time_ns.max())

    def _write_incoming(self) -> None:
        """Append each stream's new frames at once, positions where already known."""
        has_gps = self._has_gps
        for name, batches in self._incoming.items():
            if not batches:
                continue
            b = batches[0] if len(batches) == 1 else FrameBatch.concatenate(batches)
            batches.clear()
            final = not has_gps or self._covered(b)
            pos = self._positions(b.time_ns) if final else {}
            if name in self._wheel:
                pos = self._wheel_positions(name, b, pos)
            self._streams[name].append(
                b.samples, time=b.time_ns, sequence=b.sequence,
                device_time_us=b.device_time_us, host_time=b.host_time_ns,
                **b.fields, **pos,
            )
            self._unplaced[name].append((self._rows[name], b, pos if final else None))
            self._rows[name] += len(b)
            self.frames_written[name] += len(b)

    #: A survey wheel's count moving more than this between two traces (m) is a
    #: reset (the device restarted or re-zeroed), not a move: positions go on
    #: from the last one
    WHEEL_JUMP_M = WHEEL_JUMP_M

    def _wheel_positions(self, name: str, b: FrameBatch,
                         pos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Positions of a radar's traces from its survey wheel
        (:func:`demine.positions.wheel_positions`): ``x`` the distance along
        the line from where the wheel first turned, ``y`` 0."""
        fault = None
        bit = self._wheel_fault_bit.get(name)
        if bit:
            fault = (np.asarray(b.fields["status"]).astype(np.int64) & bit) != 0
            if fault.any():
                n = self._wheel_faults[name] = self._wheel_faults.get(name, 0) + int(fault.sum())
                self.processing_notes[:] = [line for line in self.processing_notes
                                            if not line.startswith(f"{name}: the radar flagged")]
                self.processing_notes.append(
                    f"{name}: the radar flagged an encoder fault on {n} trace(s): not placed "
                    "(x NaN); the next trace moved by its count less the last trusted one's")
        x, self._wheel_at[name], jumps = wheel_positions(
            b.fields["encoder"], self._wheel[name], state=self._wheel_at.get(name),
            jump_m=self.WHEEL_JUMP_M, fault=fault)
        if jumps:
            n = self._wheel_jumps[name] = self._wheel_jumps.get(name, 0) + jumps
            self.processing_notes[:] = [line for line in self.processing_notes
                                        if not line.startswith(f"{name}: its survey wheel's")]
            self.processing_notes.append(
                f"{name}: its survey wheel's count jumped (a reset?) {n} time(s); positions "
                "went on from the last one")
        if not np.isfinite(x).any():
            return pos
        out = dict(pos)
        out["x"], out["y"] = x, np.where(np.isfinite(x), 0.0, np.nan)
        if self.frame is not None:
            out["lon"], out["lat"] = self.frame.to_geo(out["x"], out["y"])
        return out

    def _place(self, final: bool) -> None:
        """Fill in the positions of frames now covered by the track; hand them
        to the detectors in the order they were written."""
        now = time.time_ns()
        last_fix = self._track.last_time
        wait = self._wait_s
        if self._track.holding and self.position_wait is None:
            # frames before a held fix wait until it is decided (at most its
            # judging window and the slack after it, see _drain), not given up
            wait = max(wait, FIX_JUDGE_WINDOW_S + self._hold_slack_ns() / 1e9 + 0.5)
        todo: list[tuple[str, list[tuple[int, FrameBatch, dict | None]], FrameBatch]] = []
        for name, unplaced in self._unplaced.items():
            ready: list[tuple[int, FrameBatch, dict | None]] = []
            while unplaced:
                row, b, pos = unplaced[0]
                if pos is None and not (
                        final or self._covered(b)
                        or (now - int(b.host_time_ns[-1])) / 1e9 >= wait):
                    # the frames up to the last fix can be placed now; the
                    # rest of the batch waits for the next fix (a batch holds
                    # one pass's frames, which a fix may fall in the middle of)
                    k = 0 if last_fix is None else int(
                        np.searchsorted(b.time_ns, last_fix, side="right"))
                    # (times run forward within a batch, except across a
                    # device clock reset: then the batch waits as a whole)
                    if 0 < k < len(b) and int(b.time_ns[:k].max()) <= last_fix:
                        ready.append((row, b.select(slice(0, k)), None))
                        unplaced[0] = (row + k, b.select(slice(k, None)), None)
                    break
                ready.append(unplaced.popleft())
            if not ready:
                continue
            b = ready[0][1] if len(ready) == 1 else \
                FrameBatch.concatenate([r[1] for r in ready])
            todo.append((name, ready, b))
        # the positions of every stream's frames placed now, in one
        # interpolation (the numbers are the same: each frame's position
        # depends on its own time only)
        times = [b.time_ns for _, ready, b in todo if any(r[2] is None for r in ready)]
        joined = self._positions(np.concatenate(times)) if len(times) > 1 else None
        at = 0
        for name, ready, b in todo:
            late = [i for i, r in enumerate(ready) if r[2] is None]
            if late:
                if joined is None:
                    pos = self._positions(b.time_ns)
                else:
                    pos = {k: v[at:at + len(b)] for k, v in joined.items()}
                    at += len(b)
                # the rows are contiguous: one write per column fills them all
                skip = sum(len(r[1]) for r in ready[:late[0]])
                self._defer_positions(name, ready[late[0]][0],
                                      {k: v[skip:] for k, v in pos.items()})
            else:
                pos = {k: np.concatenate([r[2][k] for r in ready]) for k in ("x", "y")}
            det = self._detectors.get(name)
            if det is not None:
                # Exactly what the file holds (EMI samples as float32), so the
                # batch path sees the same input.  Driver frames may be read-only
                # views of the serial buffer; the kernels take const views.
                samples = (b.samples.astype(np.float32) if self._kinds[name] == "emi"
                           else b.samples)
                det.submit(samples, pos["x"], pos["y"], b.time_ns)
        if self._pos_pending and (final or time.monotonic() >= self._pos_due):
            self._write_positions()

    def _defer_positions(self, name: str, row: int, cols: dict[str, np.ndarray]) -> None:
        """Keep the final positions of rows ``row, …`` of a stream for the next
        position write (contiguous rows join the pending ones)."""
        pend = self._pos_pending.get(name)
        if pend is not None:
            start, parts = pend
            if start + sum(len(p["x"]) for p in parts) == row:
                parts.append(cols)
                return
            self._streams[name].update(start, **_join_columns(parts))
        if not self._pos_pending:
            self._pos_due = time.monotonic() + self.position_write_interval
        self._pos_pending[name] = (row, [cols])

    def _write_positions(self) -> None:
        """Write every stream's pending positions, one write per column."""
        pending, self._pos_pending = self._pos_pending, {}
        for name, (start, parts) in pending.items():
            self._streams[name].update(start, **_join_columns(parts))

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Per-device counters, frames written and file size, for a status line."""
        out: dict[str, Any] = {"elapsed_s": 0.0 if self.started_at is None
                               else time.monotonic() - self.started_at,
                               "file_bytes": self.out.stat().st_size if self.out.exists() else 0,
                               "devices": {},
                               "alarms": self.alarms_written if self._detectors else None}
        for name, r in self._readers.items():
            st = r.stats
            out["devices"][name] = {
                "frames": self.frames_written[name],
                "crc_errors": getattr(st, "crc_errors", 0),
                "gaps": getattr(st, "sequence_gaps", 0),
                "connected": st.connected,
                "diagnosis": st.diagnosis,
                "stats": st.as_dict(),
            }
        return out


def _bad_lines_allowed(stats: Any) -> int:
    """Lines a well set-up line device may still give its driver that it cannot
    read: the first of each connection, cut where the port was opened."""
    n = stats.get("reconnects", 0) if isinstance(stats, Mapping) else \
        getattr(stats, "reconnects", 0)
    return 1 + int(n or 0)


def _bad_lines(reader: DeviceReader) -> tuple[int, str]:
    """Lines the reader's driver could not read, and the format it reads."""
    n = int(getattr(reader.stats, "bad_lines", 0) or 0)
    drv = reader.driver
    cols = getattr(drv, "columns", None)
    want = (f"columns {','.join(cols)}" if cols else
            getattr(drv, "frame_format", "") or "its format")
    return n, f"{drv.name}: {want}"


def _bad_lines_text(reader: DeviceReader) -> str:
    """``"; N line(s) not in the driver's format (...)"``, or ``""`` when none."""
    n, fmt = _bad_lines(reader)
    return f"; {n} line(s) not in the driver's format ({fmt})" if n else ""


def format_status(status: Mapping[str, Any]) -> str:
    """One status line: per device frames/s, CRC errors and gaps (and lines the
    driver could not read, when any); file size."""
    parts = []
    elapsed = max(status["elapsed_s"], 1e-9)
    for name, d in status["devices"].items():
        flag = "" if d["connected"] else " DISCONNECTED"
        st = d.get("stats", {})
        bad = st.get("bad_lines", 0)
        bad = bad if bad > _bad_lines_allowed(st) else 0
        parts.append(f"{name} {d['frames'] / elapsed:7.1f}/s crc {d['crc_errors']} "
                     f"gaps {d['gaps']}" + (f" bad lines {bad}" if bad else "") + flag)
    alarms = f" | alarms {status['alarms']}" if status.get("alarms") is not None else ""
    return f"[{elapsed:6.1f} s] " + " | ".join(parts) + \
        f" | {status['file_bytes'] / 1e6:.1f} MB" + alarms
