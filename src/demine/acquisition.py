"""Read path: one reader thread per serial device, frames out with timestamps.

:class:`DeviceReader` opens any pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``,
``rfc2217://…``, a pseudo-terminal) with :func:`serial.serial_for_url`, reads in bulk
whatever the port has buffered (never ``readline``/``read_until``), cuts frames with
the shared :class:`~demine.framing.Framer`, stamps every frame with its host receive
time and with the device clock mapped to host time (:class:`ClockFit`), and hands
the frames to a callback or a queue.

Faults and their outcome:

* **garbage, bit flips, truncation, dropped bytes, duplicates**: handled by the
  framer and counted (see :mod:`demine.framing`); good frames continue.
* **stall** (no bytes for ``stall_timeout`` s): a ``"stall"`` event and a warning;
  ``"resumed"`` when bytes come back.
* **unplug**: the read fails (the port disappeared, or the adapter "reports
  readiness to read but returned no data" while ``is_open`` still says True) or the
  device path vanished during a stall: ``"disconnected"`` event, the port is closed
  and reopened with exponential backoff; on success ``"reconnected"`` with the gap
  recorded in :attr:`DeviceReader.gaps`; the same stream and the same framer
  continue (a frame cut by the unplug is counted as truncated, frames the device
  sent meanwhile as a sequence gap).
* **wrong baud rate** (or wrong driver): after ``diagnose_bytes`` bytes without a
  single valid frame, a ``"no_valid_frames"`` event whose message reads e.g.
  ``no valid frame in 64 KiB at 115200 baud on /dev/ttyUSB0 (driver emi-pi)…``,
  also kept in ``stats.diagnosis``.

Nothing a device does stops the reader threads of other devices; an exception in
the consumer callback is counted and reported as an event, never kills the reader.

Examples
--------
>>> from demine.acquisition import DeviceReader
>>> def consume(batch):
...     print(batch.driver, len(batch), batch.time_ns[:1])
>>> reader = DeviceReader("/dev/ttyUSB0", "emi-pi", on_frames=consume)  # doctest: +SKIP
>>> reader.start(); ...; reader.stop(); print(reader.stats)              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _drain, _framing
from .drivers import Driver, FrameBatch, get_driver
from .framing import Framer, FramingStats

__all__ = ["ClockFit", "DeviceReader", "ReaderEvent", "ReaderGroup", "ReaderStats"]

log = logging.getLogger("demine.acquisition")

#: pyserial back-ends whose ``in_waiting`` is the exact number of bytes buffered.
_EXACT_IN_WAITING = ("serial.serialposix", "serial.serialwin32")
#: A read at least this long may have emptied a full tty buffer (N_TTY holds 4 KiB).
_TTY_FULL = 3584
_INT64 = np.dtype(np.int64)


def _read_until_empty(fd: int, limit: int) -> list[bytes]:
    """Non-blocking reads of a port's descriptor until it is empty (EAGAIN), it
    fails or ends, or ``limit`` bytes are read."""
    parts: list[bytes] = []
    total = 0
    while total < limit:
        try:
            more = os.read(fd, limit - total)
        except OSError:  # EAGAIN (empty), or the device is gone: the next read tells
            break
        if not more:
            break
        parts.append(more)
        total += len(more)
    return parts


# --------------------------------------------------------------------------------------
# device clock -> host clock
# --------------------------------------------------------------------------------------
class ClockFit:
    """Map a device clock to host time by a robust running fit of the lower envelope.

    USB and OS scheduling only ever *delay* the moment a frame is read, so the host
    time minus the device time of each frame is the clock offset plus a positive,
    jittery latency.  The fit keeps, per block of ``block_s`` seconds of device time,
    the frame with the smallest such difference (the least delayed one), and fits a
    straight line (offset and rate difference, i.e. drift in ppm) through those
    minima over the last ``window_s`` seconds (robustly: Theil-Sen and median, then
    least squares on the blocks near that line, so blocks in which every frame was
    late, e.g. a backlog read after a stall, do not move it).  The mapped time is
    free of the read jitter; it carries the (constant) minimum latency of the link.

    A device clock that jumps (device restarted, clock reset) or a host clock step
    larger than ``max_step_s`` restarts the fit.

    Between restarts a small move back of the line does not make the mapped times
    decrease: when a refit moves it back by at most ``max_hold_s`` (tens of µs in
    a steady run, a few ms while the first blocks settle), frames mapped before
    the latest mapped time are given that time instead.  A larger move (a backlog
    at start-up, a host clock stepped back by less than ``max_step_s``) is kept
    as a step back, as every stream of that host steps back with it.

    Parameters
    ----------
    window_s : float
        Length of history used by the fit (device seconds).
    block_s : float
        Block length for the lower envelope.
    max_step_s : float
        A frame that arrives this much earlier than the fit allows restarts it.
    max_latency_s : float
        A frame delayed this much beyond the fit restarts it (a host clock step;
        smaller delays are latency, e.g. bytes buffered during a stall).
    max_hold_s : float
        The largest move back of the line over which mapped times are held
        rather than stepped back.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        block_s: float = 0.5,
        max_step_s: float = 1.0,
        max_latency_s: float = 30.0,
        max_hold_s: float = 0.005,
    ):
        if not (window_s > 0 and block_s > 0 and window_s >= 2 * block_s):
            raise ValueError("need window_s >= 2 * block_s > 0")
        if not max_hold_s >= 0:
            raise ValueError("need max_hold_s >= 0")
        self.max_hold_ns = int(round(float(max_hold_s) * 1e9))
        self.window_s = float(window_s)
        self.block_s = float(block_s)
        self.max_step_s = float(max_step_s)
        self.max_latency_s = float(max_latency_s)
        self.resets = 0
        self._ref_dev: int | None = None
        self._ref_host = 0
        self._blocks: deque[tuple[int, float, float]] = deque()  # (block id, x, r)
        self._coef = (0.0, 0.0)
        self._last_x = -np.inf
        self._last_t: int | None = None  # latest mapped time of this fit (ns)

    def reset(self) -> None:
        """Forget the history (next frame starts a new fit)."""
        self._ref_dev = None
        self._blocks.clear()
        self._coef = (0.0, 0.0)
        self._last_x = -np.inf
        self._last_t = None

    def _in_order(self, out: np.ndarray) -> None:
        """Hold mapped times (in place) at the fit's latest one until they pass it,
        where the line moved back by at most ``max_hold_s``.

        Within one line the mapping is increasing (device times are, or the fit
        restarts); a refit can move the line back, so only a segment's start can
        lie before the previous segment's end."""
        if out.shape[0] == 0:
            return
        last = self._last_t
        if last is not None and out[0] < last and last - int(out[0]) <= self.max_hold_ns:
            np.maximum(out, last, out=out)
        self._last_t = int(out[-1])

    @property
    def drift_ppm(self) -> float:
        """Current estimate of the device clock rate error, in parts per million."""
        return self._coef[1] * 1e6

    def update(self, device_us: np.ndarray, host_ns: np.ndarray) -> np.ndarray:
        """Add frames (device µs, host receive ns) and return their mapped times (ns).

        Frames without a device clock (``device_us < 0``) get their host time.
        """
        device_us = np.ascontiguousarray(device_us, dtype=np.int64)
        host_ns = np.ascontiguousarray(host_ns, dtype=np.int64)
        if device_us.size == 0:
            return host_ns.copy()
        if device_us.min() >= 0:  # the usual case: every frame has a device clock
            out = np.empty_like(host_ns)
            start = 0
            while start < device_us.size:
                stop = start + self._add(device_us[start:], host_ns[start:])
                a, b = self._coef  # (as _map, straight into out)
                _framing.clock_map(device_us[start:stop], self._ref_dev, self._ref_host,
                                   a, b, out[start:stop])
                self._in_order(out[start:stop])
                start = stop
            return out
        out = host_ns.copy()
        idx = np.flatnonzero(device_us >= 0)
        if idx.size:
            out[idx] = self.update(device_us[idx], host_ns[idx])
        return out

    def update_read(self, device_us: np.ndarray, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Add the frames of one read, all received at ``t_ns``; return their host
        times (``t_ns`` each) and mapped times (ns), as :meth:`update` of
        ``np.full(n, t_ns)`` does.

        The reader's usual case (every frame has a device clock, the read lies in
        one block, no discontinuity) is one compiled call that also makes both
        arrays; a refit (twice a second) maps again with the new line.
        """
        res = None
        if (self._ref_dev is not None and type(device_us) is np.ndarray
                and device_us.dtype is _INT64):
            a, b = self._coef
            try:
                res = _framing.clock_read(device_us, t_ns, self._ref_dev, self._ref_host,
                                          a, b, bool(self._blocks))
            except ValueError:  # not 1-D, contiguous and non-empty (as decoders make them)
                pass
        if res is None:
            host = np.full(len(device_us), t_ns, dtype=np.int64)
            return host, self.update(device_us, host)
        host, out, neg, *scan = res
        # frames without a device clock, a discontinuity or a read across two
        # blocks: the general path
        if neg or not self._take_scanned(*scan):
            return host, self.update(device_us, host)
        # update's mapping was done above with the line as it was; again if the
        # line was refitted
        if self._coef != (a, b):
            a, b = self._coef
            _framing.clock_map(device_us, self._ref_dev, self._ref_host, a, b, out)
        self._in_order(out)
        return host, out

    def _take_scanned(self, lo: float, hi: float, dmin: float, j: int, xj: float, rj: float,
                      x0: float, xl: float) -> bool:
        """The usual case of a read, from its compiled scan (``clock_scan`` or
        ``clock_read``): within one block and without a discontinuity, take it
        (refitting the line when a block closed) and return True; else take
        nothing and return False."""
        bid = math.floor(x0 / self.block_s)
        if (x0 < self._last_x - 1e-6 or lo < -self.max_step_s or hi > self.max_latency_s
                or dmin < -1e-6 or bid != math.floor(xl / self.block_s)):
            return False
        self._last_x = xl
        closed = self._block(bid, xj, rj)
        keep_from = self._blocks[-1][0] - int(self.window_s / self.block_s)
        while self._blocks and self._blocks[0][0] < keep_from:
            self._blocks.popleft()
        if closed or len(self._blocks) < 3:
            self._fit()
        return True

    def _add(self, dev: np.ndarray, host: np.ndarray) -> int:
        """Take frames until a discontinuity; return how many were taken."""
        if self._ref_dev is None:
            self._ref_dev = int(dev[0])
            self._ref_host = int(host[0])
        # the usual case (a read within one block, no discontinuity) in one
        # compiled pass; anything else below, with the same arithmetic
        a, b = self._coef
        if self._take_scanned(*_framing.clock_scan(
                dev, host, self._ref_dev, self._ref_host, a, b, bool(self._blocks))):
            return dev.shape[0]
        x = (dev - self._ref_dev) * 1e-6
        r = (host - self._ref_host) * 1e-9 - x
        n = x.shape[0]
        # discontinuity: device clock going back, a frame "earlier than possible"
        # (device clock jumped ahead, host clock stepped back), or a delay longer
        # than any buffering explains (host clock stepped ahead)
        a, b = self._coef
        off = r - (a + b * x) if self._blocks else r - r[0]
        lo, hi = float(off.min()), float(off.max())
        if (float(x[0]) < self._last_x - 1e-6 or lo < -self.max_step_s
                or hi > self.max_latency_s or (n > 1 and float(np.diff(x).min()) < -1e-6)):
            bad = (off < -self.max_step_s) | (off > self.max_latency_s)
            bad[0] |= float(x[0]) < self._last_x - 1e-6
            bad[1:] |= np.diff(x) < -1e-6
            k = int(np.argmax(bad))
            if k == 0:
                self.resets += 1
                self.reset()
                return self._add(dev, host)
            n = k
            x, r = x[:n], r[:n]
        self._last_x = float(x[-1])
        closed = False
        b0 = math.floor(float(x[0]) / self.block_s)
        b1 = math.floor(float(x[-1]) / self.block_s)
        if b0 == b1:  # the usual case: the whole read falls in one block
            j = int(np.argmin(r))
            closed = self._block(b0, float(x[j]), float(r[j]))
        else:
            blk = np.floor(x / self.block_s).astype(np.int64)
            cuts = np.flatnonzero(np.diff(blk)) + 1
            starts = [0, *cuts.tolist()]
            ends = [*cuts.tolist(), n]
            for s0, e0 in zip(starts, ends, strict=True):
                j = s0 + int(np.argmin(r[s0:e0]))
                closed |= self._block(int(blk[s0]), float(x[j]), float(r[j]))
        keep_from = self._blocks[-1][0] - int(self.window_s / self.block_s)
        while self._blocks and self._blocks[0][0] < keep_from:
            self._blocks.popleft()
        # the line is refitted when a block closes (twice a second), not per read;
        # until three blocks exist the offset follows every new minimum
        if closed or len(self._blocks) < 3:
            self._fit()
        return n

    def _block(self, bid: int, x: float, r: float) -> bool:
        """Fold a block minimum in; True if it opened a new block."""
        if self._blocks and self._blocks[-1][0] == bid:
            if r < self._blocks[-1][2]:
                self._blocks[-1] = (bid, x, r)
            return False
        self._blocks.append((bid, x, r))
        return True

    def _fit(self) -> None:
        bx = np.array([b[1] for b in self._blocks])
        br = np.array([b[2] for b in self._blocks])
        if bx.size < 3 or bx[-1] - bx[0] < 2 * self.block_s:
            self._coef = (float(br.min()), self._coef[1] if bx.size > 1 else 0.0)
            return
        # robust line first (Theil-Sen slope, median intercept): blocks in which
        # every frame was delayed (a backlog after a stall) cannot drag it; then a
        # least-squares refit on the blocks close to it (|residual| < 5 median
        # |residual| + 0.1 ms), for precision.  The robust part is compiled: the
        # ~7000 pairwise slopes of a full window and three medians took ~100 us
        # of NumPy calls per refit (twice a second per device)
        a0, b0, ok, n_ok = _framing.robust_line(bx, br)
        if n_ok >= 3:
            b, a = np.polyfit(bx[ok], br[ok], 1)
        else:
            a, b = a0, b0
        self._coef = (float(a), float(b))

    def _map(self, dev: np.ndarray) -> np.ndarray:
        a, b = self._coef
        # ns since the reference: device ns scaled by (1 + b), plus the offset
        # (ref_host + rint((dev - ref_dev) * 1000 (1 + b) + a 1e9), compiled)
        out = np.empty(dev.shape[0], dtype=np.int64)
        _framing.clock_map(np.ascontiguousarray(dev), self._ref_dev, self._ref_host, a, b, out)
        return out


# --------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------
@dataclass
class ReaderEvent:
    """Something that happened to a device: connection, stall, diagnosis…"""

    time_ns: int
    kind: str  # connected, disconnected, reconnected, open_failed, stall, resumed,
    # no_valid_frames, callback_error, stopped
    message: str
    device: str = ""


@dataclass
class ReaderStats(FramingStats):
    """Counts of a :class:`DeviceReader` (framing counts plus link counts)."""

    reads: int = 0
    bytes_read: int = 0
    stalls: int = 0
    disconnects: int = 0
    reconnects: int = 0
    open_failures: int = 0
    callback_errors: int = 0
    connected: bool = False
    diagnosis: str = ""
    cpu_seconds: float = 0.0
    last_frame_ns: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceReader:
    """Read one device in a background thread.

    Parameters
    ----------
    url : str
        Any pyserial URL or device path.
    driver : Driver or str
        Driver instance or registry name (e.g. ``"emi-pi"``).
    name : str, optional
        Name of the device in events and logs (default: the driver name).
    on_frames : callable, optional
        Called in the reader thread with every :class:`~demine.drivers.FrameBatch`
        (``host_time_ns`` and ``time_ns`` filled in).  Without it batches go to an
        internal queue read with :meth:`get`.
    on_event : callable, optional
        Called with every :class:`ReaderEvent` (also kept in :attr:`events`).
    serial_options : dict, optional
        Overrides of the driver's serial settings (``baudrate``, ``parity``…).
    read_timeout : float
        Longest wait of one read for the first byte (seconds).
    poll_interval : float
        Least time between two reads while data flows: bytes accumulate in the
        driver's buffer meanwhile, so each read takes a large block (few system
        calls per second at any data rate).  A read that (nearly) filled the
        4 KiB tty buffer is followed at once by more reads, and the bytes of
        all of them are framed together.
    align : bool
        Wake at multiples of ``poll_interval`` on the monotonic clock instead
        of ``poll_interval`` after the last read: the readers of one recorder
        then read together, just before its writer's pass, so a frame waits
        for one period in all rather than one per thread.
    stall_timeout : float
        Seconds without bytes before a ``"stall"`` event.
    reconnect : bool
        Reopen the port after an unplug (with backoff); otherwise the thread ends.
    backoff : tuple of float
        First and largest wait between reopen attempts (seconds).
    diagnose_bytes : int
        Bytes without one valid frame before the wrong-baud diagnosis.
    clock : ClockFit, optional
        Clock mapper (default: a new :class:`ClockFit`).
    read_block : int
        Largest read on URL ports whose ``in_waiting`` is not a byte count
        (``socket://``, ``rfc2217://``); local ports read exactly what is buffered.
    native_drain : bool
        Drain a local port (POSIX) into a large buffer from a native loop that
        never holds the GIL, and read that buffer (default True).  The port's
        own buffer holds 25-50 ms of a radar; a reader thread the interpreter
        keeps from running longer than that (another thread's long call, a
        garbage collection, a loaded machine) lost frames in the kernel.  The
        bytes keep the host time at which the native loop read them.

    Notes
    -----
    pyserial empties the input buffer when it opens a port: bytes a device sent
    before the ``"connected"``/``"reconnected"`` event are not seen.
    """

    def __init__(
        self,
        url: str,
        driver: Driver | str,
        *,
        name: str | None = None,
        on_frames: Callable[[FrameBatch], Any] | None = None,
        on_event: Callable[[ReaderEvent], Any] | None = None,
        serial_options: dict[str, Any] | None = None,
        read_timeout: float = 0.1,
        poll_interval: float = 0.01,
        align: bool = False,
        stall_timeout: float = 2.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.05, 2.0),
        diagnose_bytes: int = 65536,
        clock: ClockFit | None = None,
        read_block: int = 65536,
        native_drain: bool = True,
    ) -> None:
        self.url = str(url)
        self.driver = get_driver(driver)
        self.name = name or self.driver.name
        self.on_frames = on_frames
        self.on_event = on_event
        self.settings = dict(self.driver.serial_settings)
        if serial_options:
            self.settings.update(serial_options)
        self.read_timeout = float(read_timeout)
        self.poll_interval = float(poll_interval)
        self.align = bool(align)
        self.stall_timeout = float(stall_timeout)
        self.reconnect = bool(reconnect)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.diagnose_bytes = int(diagnose_bytes)
        self.read_block = int(read_block)
        self.native_drain = bool(native_drain) and _drain.AVAILABLE
        self.clock = clock if clock is not None else ClockFit()
        self.framer = Framer(self.driver)
        self._events: deque[ReaderEvent] = deque(maxlen=10_000)
        self._queue: queue.Queue[FrameBatch] = queue.Queue()
        self._stats = ReaderStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ser: Any = None
        self._drain: Any = None  # a _drain.PortDrain while a local port is open
        self._drain_thread: threading.Thread | None = None
        self._group: ReaderGroup | None = None
        self._done = threading.Event()  # set when a grouped reader has finished
        self.error: BaseException | None = None

    # -- control ------------------------------------------------------------------------
    def start(self) -> DeviceReader:
        """Start the reader thread (returns self)."""
        if self._thread is not None:
            raise RuntimeError(f"reader {self.name!r} already started")
        if self._group is not None:
            raise RuntimeError(f"reader {self.name!r} is read by a ReaderGroup; start that")
        self._thread = threading.Thread(target=self._run, name=f"demine-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread, close the port, deliver what the framer still holds."""
        self._stop.set()
        ser = self._ser
        if ser is not None and hasattr(ser, "cancel_read"):
            try:
                ser.cancel_read()
            except Exception:  # noqa: BLE001 - port may be half closed already
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._group is not None and self._group.started:
            self._group._wakeup()  # its thread finishes this reader at once
            self._done.wait(timeout)

    def __enter__(self) -> DeviceReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the reader thread is alive."""
        if self._group is not None:
            return self._group.started and not self._done.is_set()
        return self._thread is not None and self._thread.is_alive()

    def get(self, timeout: float | None = None) -> FrameBatch | None:
        """Next batch from the queue (only without ``on_frames``); None on timeout."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def stats(self) -> ReaderStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            s = ReaderStats(**{**asdict(self._stats), **self.framer.stats.as_dict()})
            s.gaps = list(self._stats.gaps)
            return s

    @property
    def events(self) -> list[ReaderEvent]:
        """The latest events (at most 10 000, so a flapping device cannot grow it)."""
        with self._lock:
            return list(self._events)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Disconnections as (host ns when lost, host ns when back)."""
        with self._lock:
            return list(self._stats.gaps)

    # -- internals ----------------------------------------------------------------------
    def _event(self, kind: str, message: str) -> None:
        ev = ReaderEvent(time.time_ns(), kind, message, self.name)
        with self._lock:
            self._events.append(ev)
        level = logging.INFO if kind in ("connected", "reconnected", "resumed", "stopped") \
            else logging.WARNING
        log.log(level, "%s (%s): %s", self.name, self.url, message)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001 - consumer bug must not kill the reader
                log.exception("on_event callback of %s failed", self.name)

    def _open(self) -> Any:
        import serial

        return serial.serial_for_url(self.url, timeout=self.read_timeout, **self.settings)

    def _path_gone(self) -> bool:
        return "://" not in self.url and not os.path.exists(self.url)

    def _deliver(self, batches: list[FrameBatch], t_ns: int) -> None:
        for b in batches:
            b.host_time_ns, b.time_ns = self.clock.update_read(b.device_time_us, t_ns)
            if self.on_frames is None:
                self._queue.put(b)
                continue
            try:
                self.on_frames(b)
            except Exception as exc:  # noqa: BLE001
                with self._lock:
                    self._stats.callback_errors += 1
                self._event("callback_error", f"frame consumer failed: {exc!r}")

    def _drain_full(self, ser: Any, data: bytes) -> bytes:
        """More reads after one that (nearly) filled the tty buffer, without
        waiting, until the port is empty (or ``read_block`` is reached).

        A non-blocking read of an empty tty first lets the kernel move what is
        queued behind it (up to 64 KiB) into the buffer, so only an empty read
        means nothing is left; a short read may just have caught the kernel's
        refill half-way, and stopping there would leave the rest to the next
        wake-up.
        """
        fd = getattr(ser, "fd", None)
        limit = self.read_block - len(data)
        if fd is not None:
            parts = _read_until_empty(fd, limit)
        else:
            parts, total = [], 0
            while total < limit:
                try:
                    waiting = ser.in_waiting
                    more = ser.read(waiting) if waiting else b""
                except OSError:  # the device went: the next read tells
                    break
                if not more:
                    break
                parts.append(more)
                total += len(more)
        if not parts:
            return data
        with self._lock:
            self._stats.reads += len(parts)
        return data + b"".join(parts)

    def _read_tail(self) -> bytes:
        """Non-blocking reads of whatever a local port still holds (at most
        ``read_block`` bytes); nothing on other ports or after an error."""
        ser = self._ser
        fd = getattr(ser, "fd", None)
        if ser is None or fd is None or type(ser).__module__ not in _EXACT_IN_WAITING:
            return b""
        parts = []
        if self._drain is not None:  # what the native loop read, then the rest
            self._stop_drain()
            while data := self._drain.take(1 << 30)[0]:
                parts.append(data)
        parts += _read_until_empty(fd, self.read_block)
        if not parts:
            return b""
        tail = b"".join(parts)
        with self._lock:
            self._stats.reads += len(parts)
            self._stats.bytes_read += len(tail)
        return tail

    def _start_drain(self, ser: Any) -> None:
        """Start the native loop on a local port's (non-blocking) descriptor."""
        fd = getattr(ser, "fd", None)
        if not self.native_drain or fd is None or os.get_blocking(fd):
            return
        self._drain = _drain.PortDrain(fd)
        # (it rests half a poll interval between reads, at most 5 ms: a few
        # hundred wake-ups a second, bytes wait in the kernel at most that
        # long, and a stop is seen at once; a reader on a long grid had its
        # stop wait out a rest of half that grid)
        self._drain_thread = threading.Thread(target=self._drain.run,
                                              args=(min(self.poll_interval / 2, 0.005),),
                                              name=f"demine-drain-{self.name}", daemon=True)
        self._drain_thread.start()

    def _stop_drain(self) -> None:
        """Stop the native loop (it returns within its 20 ms poll); the bytes it
        read stay in :attr:`_drain` to be taken."""
        th, self._drain_thread = self._drain_thread, None
        if self._drain is not None:
            self._drain.stop()
        if th is not None:
            th.join()

    def _take(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The bytes the native loop read, cut where reads lie more than a
        poll interval apart, with the host time of each part's last read."""
        data, ends, times = self._drain.take(self.read_block)
        if not data:
            err = self._drain.error
            if err:
                import serial

                raise serial.SerialException(
                    "device reports readiness to read but returned no data (device "
                    "disconnected or multiple access on port?)" if err == _drain.HANGUP
                    else f"[Errno {err}] {os.strerror(err)}")
            return data, []
        span = max(int(self.poll_interval * 1e9), 1_000_000)
        parts: list[tuple[int, int]] = []
        first = int(times[0])
        for end, t in zip(ends.tolist(), times.tolist(), strict=True):
            if parts and t - first <= span:
                parts[-1] = (end, t)
            else:
                parts.append((end, t))
                first = t
        return data, parts

    def _close(self) -> None:
        self._stop_drain()
        self._drain = None
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass

    def _rest(self, t_read: float) -> float:
        """Seconds to wait before the next read (the next multiple of the poll
        interval when aligned, else the poll interval after ``t_read``)."""
        now = time.monotonic()
        if self.align and self.poll_interval > 0:
            return self.poll_interval - now % self.poll_interval
        return self.poll_interval - (now - t_read)

    def _run(self) -> None:
        """Thread body: the reader's steps, waiting between them."""
        cpu0 = time.thread_time()
        for wait in self._steps():
            with self._lock:
                self._stats.cpu_seconds = time.thread_time() - cpu0
            if wait > 0:
                self._stop.wait(wait)
        with self._lock:
            self._stats.cpu_seconds = time.thread_time() - cpu0

    def _steps(self) -> Iterator[float]:
        """The reader's loop, as a generator that yields how long to wait
        before its next step (never blocking itself when the reader is part of
        a :class:`ReaderGroup`: its reads do not wait for bytes)."""
        import serial

        st = self._stats
        delay = self.backoff[0]
        ever_connected = False
        exact_waiting = True
        fd = None  # a local port's descriptor, read directly by a group
        outage_failures = 0
        lost_at = 0
        last_data = time.monotonic()
        stalled = False
        since_good = 0
        diagnosed = False
        shared = self._group is not None
        try:
            while not self._stop.is_set():
                if self._ser is None:
                    try:
                        self._ser = self._open()
                    except (serial.SerialException, OSError, ValueError) as exc:
                        with self._lock:
                            st.open_failures += 1
                        if not ever_connected and not self.reconnect:
                            raise
                        outage_failures += 1
                        if outage_failures == 1:  # once per outage, not per retry
                            self._event("open_failed", f"cannot open {self.url}: {exc} "
                                        f"(retrying every <= {self.backoff[1]:g} s)")
                        yield delay
                        delay = min(delay * 2, self.backoff[1])
                        continue
                    delay = self.backoff[0]
                    outage_failures = 0
                    # local ports report the exact byte count buffered; URL handlers
                    # (socket://, rfc2217://, loop://) do not: read blocks with a
                    # short timeout instead
                    exact_waiting = type(self._ser).__module__ in _EXACT_IN_WAITING
                    fd = None
                    if shared:  # never block the other devices of the group
                        self._ser.timeout = 0
                        # a local port's non-blocking descriptor is read directly
                        # (what pyserial's read does, without its in_waiting
                        # ioctl, select and timeout objects per read)
                        fd = getattr(self._ser, "fd", None) if exact_waiting else None
                        if fd is not None and os.get_blocking(fd):
                            fd = None  # (pyserial keeps it non-blocking; else its reads)
                    elif not exact_waiting:
                        self._ser.timeout = min(self.read_timeout,
                                                max(self.poll_interval, 0.01))
                    if exact_waiting:
                        self._start_drain(self._ser)
                    last_data = time.monotonic()
                    stalled = False
                    with self._lock:
                        st.connected = True
                        if ever_connected:
                            st.reconnects += 1
                            st.gaps.append((lost_at, time.time_ns()))
                    if ever_connected:
                        gap = (time.time_ns() - lost_at) / 1e9
                        self._event("reconnected", f"reconnected to {self.url} after {gap:.2f} s")
                    else:
                        self._event("connected", f"opened {self.url} at "
                                    f"{self.settings.get('baudrate')} baud")
                    ever_connected = True
                # ---- one bulk read ----
                t_read = time.monotonic()
                parts: list[tuple[int, int]] = []
                try:
                    ser = self._ser
                    if self._drain is not None:
                        data, parts = self._take()
                    elif fd is not None:
                        # pyserial's port (VMIN = VTIME = 0): b"" when nothing is
                        # buffered, or when the device hung up; as pyserial's read,
                        # ready for select but no data is an unplugged device
                        try:
                            data = os.read(fd, self.read_block)
                        except BlockingIOError:  # (VMIN > 0 set by serial_options)
                            data = b""
                        if not data and select.select((fd,), (), (), 0)[0]:
                            data = os.read(fd, self.read_block)
                            if not data:
                                raise serial.SerialException(
                                    "device reports readiness to read but returned no data "
                                    "(device disconnected or multiple access on port?)")
                        if len(data) >= _TTY_FULL:
                            data = self._drain_full(ser, data)
                    elif exact_waiting:
                        waiting = ser.in_waiting
                        data = ser.read(waiting if waiting else 1)
                        if data and not waiting:
                            more = ser.in_waiting
                            if more:
                                data += ser.read(more)
                        # a (nearly) full tty buffer: more is queued behind it
                        # (the kernel refills the 4 KiB as it is read); read it
                        # now and frame everything at once
                        if len(data) >= _TTY_FULL:
                            data = self._drain_full(ser, data)
                    else:
                        data = ser.read(self.read_block)
                except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                    if self._stop.is_set():
                        break
                    lost_at = time.time_ns()
                    with self._lock:
                        st.disconnects += 1
                        st.connected = False
                    self._close()
                    self._event("disconnected", f"lost {self.url}: {exc}")
                    if not self.reconnect:
                        break
                    continue
                now_ns = time.time_ns()
                if not data:
                    idle = time.monotonic() - last_data
                    if idle >= self.stall_timeout and not stalled:
                        stalled = True
                        with self._lock:
                            st.stalls += 1
                        self._event("stall", f"no data from {self.url} for {idle:.1f} s")
                    if stalled and self._path_gone():
                        lost_at = now_ns
                        with self._lock:
                            st.disconnects += 1
                            st.connected = False
                        self._close()
                        self._event("disconnected", f"{self.url} disappeared")
                        if not self.reconnect:
                            break
                    if shared or self._drain is not None:
                        # (a reader in its own thread waited in its read)
                        yield self._rest(t_read)
                    continue
                if stalled:
                    self._event("resumed", f"data again after "
                                f"{time.monotonic() - last_data:.1f} s")
                    stalled = False
                last_data = time.monotonic()
                frames_before = self.framer.stats.frames
                timed: list[tuple[list[FrameBatch], int]] = []
                with self._lock:
                    st.reads += 1
                    st.bytes_read += len(data)
                    if parts:  # each part with the time its bytes were read
                        start = 0
                        for end, t in parts:
                            timed.append((self.framer.feed(data[start:end]), t))
                            start = end
                    else:
                        timed.append((self.framer.feed(data), now_ns))
                batches = [b for bs, _ in timed for b in bs]
                if self.framer.stats.frames > frames_before or batches:
                    since_good = 0
                    diagnosed = False
                    st.last_frame_ns = now_ns
                else:
                    since_good += len(data)
                    if since_good >= self.diagnose_bytes and not diagnosed:
                        diagnosed = True
                        amount = (f"{self.diagnose_bytes // 1024} KiB"
                                  if self.diagnose_bytes % 1024 == 0
                                  else f"{self.diagnose_bytes} bytes")
                        msg = (
                            f"no valid frame in {amount} at "
                            f"{self.settings.get('baudrate')} baud on {self.url} "
                            f"(driver {self.driver.name}): wrong baud rate, wrong driver "
                            f"or wrong port?"
                        )
                        with self._lock:
                            st.diagnosis = msg
                        self._event("no_valid_frames", msg)
                for bs, t in timed:
                    if bs:
                        self._deliver(bs, t)
                # let bytes accumulate: few large reads instead of many small ones;
                # but a read that (nearly) filled the 4 KiB tty line-discipline
                # buffer means more is queued behind it: read again at once
                # (a read that stopped at read_block may have left more behind)
                full = len(data) >= (self.read_block if exact_waiting else _TTY_FULL)
                yield 0.0 if full else self._rest(t_read)
        except GeneratorExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported, never silent
            self.error = exc
            self._event("error", f"reader stopped: {exc!r}")
        finally:
            # what the port already holds when stopping was received too: the
            # reader reads on a grid, so up to one period of bytes may wait
            tail = self._read_tail()
            self._close()
            with self._lock:
                batches = self.framer.feed(tail) if tail else []
                batches += self.framer.flush()
                st.connected = False
            if batches:
                self._deliver(batches, time.time_ns())
            self._event("stopped", f"reader of {self.url} stopped")


class ReaderGroup:
    """Several :class:`DeviceReader` objects read by one thread.

    Each reader keeps its own port, framer, clock fit, counters, events and
    fault handling (stalls, unplug and reconnection, diagnosis); the group's
    thread runs their steps in turn, each when its next read is due, with
    reads that never wait for bytes.  Aligned readers of one poll interval are
    then read one after the other in a single wake-up per period, instead of
    one wake-up (and hand-over of the interpreter lock) per device.

    Meant for local ports (device paths, pseudo-terminals), whose opening and
    reading never block; a port reached over the network (``socket://``,
    ``rfc2217://``) can take seconds to connect and is better read by its own
    thread.

    Parameters
    ----------
    readers : sequence of DeviceReader
        Readers not started yet; from now on they are started and stopped
        with the group (:meth:`DeviceReader.stop` of one of them still stops
        that one alone).
    name : str
        Name of the thread.
    """

    def __init__(self, readers: Sequence[DeviceReader], name: str = "demine-readers") -> None:
        self.readers = list(readers)
        for r in self.readers:
            if r._thread is not None or r._group is not None:
                raise RuntimeError(f"reader {r.name!r} already started or grouped")
            r._group = self
        self.name = name
        # held while nobody asks the thread to look at the stop flags; released
        # to end its wait early (a bare lock: one C call per wait, where an
        # Event's wait runs a Condition in Python)
        self._wake = threading.Lock()
        self._wake.acquire()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> ReaderGroup:
        """Start the thread (returns self)."""
        if self._thread is not None:
            raise RuntimeError(f"reader group {self.name!r} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop every reader (each delivers what it still holds) and the thread."""
        for r in self.readers:
            r._stop.set()
        self._wakeup()
        if self._thread is not None:
            self._thread.join(timeout)

    def _wakeup(self) -> None:
        """End the thread's wait: it looks at the readers' stop flags at once."""
        try:
            self._wake.release()
        except RuntimeError:  # a wake-up is pending already
            pass

    def _run(self) -> None:
        steps = {r: r._steps() for r in self.readers}
        due = dict.fromkeys(self.readers, 0.0)
        try:
            while steps:
                # readers due within a millisecond go now: aligned readers
                # share one wake-up per period
                soon = time.monotonic() + 1e-3
                cpu = time.thread_time()
                for r in list(steps):
                    if due[r] > soon and not r._stop.is_set():
                        continue
                    try:
                        wait = next(steps[r])
                    except StopIteration:
                        del steps[r]
                        r._done.set()
                        wait = 0.0
                    except BaseException as exc:  # noqa: BLE001 - never kill the others
                        del steps[r]
                        r.error = exc
                        r._done.set()
                        wait = 0.0
                    now = time.thread_time()  # (one clock read per step)
                    with r._lock:
                        r._stats.cpu_seconds += now - cpu
                    cpu = now
                    due[r] = time.monotonic() + wait
                if steps:
                    rest = min(due[r] for r in steps) - time.monotonic()
                    if rest > 0:
                        # returns early when released (a stop); a release that
                        # came during the steps ends this wait at once and the
                        # loop looks at the stop flags again
                        self._wake.acquire(timeout=rest)
        finally:
            for r, gen in steps.items():
                gen.close()
                r._done.set()
