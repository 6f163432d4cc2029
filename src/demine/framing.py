"""Shared framing engine: bytes in, checked frames out.

A :class:`Framer` takes whatever bytes a read returned (any amount, cut anywhere),
keeps an incomplete frame across calls, and returns decoded
:class:`~demine.drivers.FrameBatch` objects.  Binary drivers are framed by a
compiled kernel (``demine._framing``): sync search, length check against the
driver's :class:`~demine.drivers.BinaryLayout`, CRC-16/CCITT, resynchronisation
after garbage.  Line drivers (NMEA, ASCII detectors) are split into lines here and
validated by the driver.

What happens to each fault, and what is counted in :class:`FramingStats`:

=====================  ======================================================  ==================
fault                  outcome                                                 counter
=====================  ======================================================  ==================
garbage between frames bytes skipped, next sync found                          ``resyncs``,
                                                                               ``bytes_skipped``
bit flip in a frame    CRC rejects the frame                                   ``crc_errors``
truncated frame /      a frame cut short is recognised by the complete valid   ``truncated``
dropped bytes          frame that starts inside its announced length
header corrupted       header fails the version/length checks: garbage          ``bad_headers``
lost frames            gap in the device sequence number                       ``sequence_gaps``,
                                                                               ``frames_missing``
duplicated frame       a recent frame's number and content (payload, device    ``duplicates``
                       clock): dropped
device restarted       sequence jumps back far, or to a recent frame's number  ``sequence_resets``
                       with other content: accepted, new run
late frame             back a little to a number no recent frame had:          ``frames_missing``
                       delivered, filling a gap counted before it              less one
=====================  ======================================================  ==================

Every frame that arrives intact is delivered exactly once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _framing

if TYPE_CHECKING:
    from demine.drivers import Driver, FrameBatch

__all__ = ["Framer", "FramingStats", "crc16", "crc16_rows", "sequence_gaps"]

#: A frame whose sequence number steps back by at most this much (or repeats) is
#: judged against the frames delivered last: a duplicate (a resend) when one of
#: them had its number and the same content, a device restart when one had its
#: number and other content, a late frame when none had it.  Larger backward
#: jumps are a restart.
DUPLICATE_WINDOW = 1024
_SEQ_MOD = 1 << 32
def sequence_gaps(sequence: Any) -> tuple[int, int]:
    """Gaps in a stream's device sequence numbers, as the framer counts them.

    ``sequence`` is a recorded stream's ``sequence`` column (frames in the
    order written; -1, a frame without a number, is passed over).  A step
    forward by more than one (modulo 2**32) is a gap; a step back is a device
    restart (or a duplicate, which the framer has already dropped), not a gap,
    and a frame that comes late (a number the last frames did not have) fills
    one frame of the gaps counted before it.

    Returns
    -------
    gaps, missing : int
        The number of gaps and of frames missing in them
        (:attr:`FramingStats.sequence_gaps`, :attr:`FramingStats.frames_missing`).
    """
    seq = np.asarray(sequence, dtype=np.int64)
    seq = seq[seq >= 0]
    n = seq.size
    if n < 2:
        return 0, 0
    odd = np.flatnonzero(np.diff(seq) % _SEQ_MOD != 1) + 1   # steps other than +1
    gaps = missing = k = 0
    last = int(seq[0])
    i = 1
    while i < n:
        if last == seq[i - 1]:   # (frames up to here all +1: go to the next other step)
            k += int(np.searchsorted(odd[k:], i))
            if k == odd.size:
                break
            i = int(odd[k])
            last = int(seq[i - 1])
        value = int(seq[i])
        step = (value - last) % _SEQ_MOD
        if step == 0 or step >= _SEQ_MOD - DUPLICATE_WINDOW:
            # as the framer judged it: a number among the last frames delivered is a
            # restart (its duplicates were dropped), another a late frame
            if np.any(seq[max(0, i - DUPLICATE_WINDOW):i] == value):
                last = value
            elif missing:
                missing -= 1
        elif step == 1 or step >= _SEQ_MOD // 2:
            last = value
        else:
            gaps += 1
            missing += step - 1
            last = value
        i += 1
    return gaps, missing


def crc16(data: bytes | bytearray | memoryview | np.ndarray, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the bytes of ``data``.

    An array is taken as its bytes in memory (as ``data.tobytes()``), whatever its
    dtype; ``init`` is a 16-bit start value.
    """
    if isinstance(init, bool) or not isinstance(init, int | np.integer) \
            or not 0 <= init <= 0xFFFF:
        raise ValueError(f"crc16: init must be an integer 0..0xFFFF, got {init!r}")
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    return int(_framing.crc16(buf, 0, buf.shape[0], int(init)))


def crc16_rows(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """CRC-16/CCITT-FALSE of ``rows[i, start:stop]`` for every row of a 2-D uint8 array."""
    rows = np.asarray(rows)
    if rows.dtype != np.uint8:   # (a cast would take each value mod 256, not its bytes)
        raise TypeError(f"rows must be uint8 bytes, got {rows.dtype}")
    rows = np.ascontiguousarray(rows)
    if rows.ndim != 2:
        raise ValueError("rows must be 2-D")
    if not 0 <= start <= stop <= rows.shape[1]:
        raise ValueError(f"bad CRC range {start}:{stop} for rows of {rows.shape[1]} bytes")
    out = np.empty(rows.shape[0], dtype=np.uint16)
    _framing.crc16_rows(rows, start, stop, out)
    return out


@dataclass
class FramingStats:
    """Counts kept by a :class:`Framer` (all cumulative)."""

    bytes_in: int = 0
    frames: int = 0
    crc_errors: int = 0
    truncated: int = 0
    bad_headers: int = 0
    bad_lines: int = 0
    resyncs: int = 0
    bytes_skipped: int = 0
    sequence_gaps: int = 0
    frames_missing: int = 0
    duplicates: int = 0
    sequence_resets: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class Framer:
    """Stateful framing engine for one device stream.

    Parameters
    ----------
    driver : Driver or str
        The driver (or its registry name) that knows the wire protocol.
    check_sequence : bool
        Count sequence gaps and drop duplicates (binary drivers with a counter).

    Examples
    --------
    >>> from demine.drivers import get_driver
    >>> drv = get_driver("emi-pi")
    >>> import numpy as np
    >>> wire = drv.encode_arrays([0, 1], [0, 1000], np.zeros((2, 16)))
    >>> fr = Framer(drv)
    >>> [len(b) for b in fr.feed(wire[:50])], [len(b) for b in fr.feed(wire[50:])]
    ([], [2])
    """

    def __init__(self, driver: Driver | str, *, check_sequence: bool = True) -> None:
        from demine.drivers import get_driver

        self.driver = get_driver(driver)
        self.stats = FramingStats()
        self.check_sequence = check_sequence and self.driver.has_sequence
        self._buf = bytearray()
        self._last_seq: int | None = None
        # the batches that hold the last DUPLICATE_WINDOW frames delivered (their
        # arrays, not copies), to tell a resend from a restart by content
        self._recent: deque[FrameBatch] = deque()
        self._recent_n = 0
        if self.driver.framing == "binary":
            layout = self.driver.layout
            if layout is None:
                raise ValueError(f"binary driver {self.driver.name!r} has no layout")
            self._params = layout.as_array()
            self._min_len = layout.min_len
            self._counters = np.zeros(6, dtype=np.int64)
            self._counted = [0] * 6  # the counters as last added to the stats
        elif self.driver.framing != "line":
            raise ValueError(f"unknown framing {self.driver.framing!r}")

    # -- public -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Bytes held back (an incomplete frame or line)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[FrameBatch]:
        """Add bytes from the wire; return the frames they completed (in order)."""
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            # (len() of a cast('H') view counts items, not bytes)
            data = data.cast("B") if data.c_contiguous else data.tobytes()
        self.stats.bytes_in += len(data)
        if self.driver.framing == "binary":
            batches = self._feed_binary(data)
        else:
            batches = self._feed_lines(data)
        if self.check_sequence and batches:
            batches = [b for b in (self._sequence(b) for b in batches) if len(b)]
        self.stats.frames += sum(len(b) for b in batches)
        return batches

    def flush(self) -> list[FrameBatch]:
        """End of stream: decide what is pending (a partial line is parsed, a frame
        that never completed is counted as truncated) and return the last frames."""
        if not self._buf:
            return []
        if self.driver.framing == "line":
            # (a line cut where the stream ended is a truncated frame, not a line
            # in another format)
            bad = self.stats.bad_lines
            out = self.feed(b"\n")
            cut = self.stats.bad_lines - bad
            self.stats.bad_lines -= cut
            self.stats.truncated += cut
            return out
        batches = self._feed_binary(b"", final=True)
        if self.check_sequence and batches:
            batches = [b for b in (self._sequence(b) for b in batches) if len(b)]
        self.stats.frames += sum(len(b) for b in batches)
        return batches

    def reset_sequence(self) -> None:
        """Forget the last sequence number (the next frame starts a new run)."""
        self._last_seq = None
        self._recent.clear()
        self._recent_n = 0

    # -- binary -------------------------------------------------------------------------
    def _feed_binary(
        self, data: bytes | bytearray | memoryview, final: bool = False
    ) -> list[FrameBatch]:
        if self._buf:
            self._buf += data
            raw = self._buf
        else:
            raw = data
        arr = np.frombuffer(raw, dtype=np.uint8)
        n_bytes = arr.shape[0]
        if n_bytes == 0:
            return []
        # offsets and lengths of the good frames, and whether a fault counter
        # moved, in one compiled call (numpy calls cost tens of microseconds
        # each when a reader wakes with cold caches)
        off, lens, keep, counted = _framing.scan_frames(arr, self._params, self._counters,
                                                        final)
        if counted:
            now = self._counters.tolist()
            before, self._counted = self._counted, now
            s = self.stats
            s.crc_errors += now[0] - before[0]
            s.truncated += now[1] - before[1]
            s.bytes_skipped += now[2] - before[2]
            s.resyncs += now[3] - before[3]
            s.bad_headers += now[5] - before[5]
        batches = self.driver.decode(arr, off, lens) if off.shape[0] else []
        rest = bytearray(arr[keep:]) if keep < n_bytes else bytearray()
        del arr
        self._buf = rest
        return batches

    # -- lines --------------------------------------------------------------------------
    def _feed_lines(self, data: bytes | bytearray | memoryview) -> list[FrameBatch]:
        # LF, CR LF and bare CR (some detector firmware) all end a line
        data = bytes(data).replace(b"\r", b"\n")
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > self.driver.max_line:
                self._drop_long()
            return []
        parts = self._buf.split(b"\n")
        self._buf = bytearray(parts.pop())
        if len(self._buf) > self.driver.max_line:
            self._drop_long()
        lines = []
        for raw in parts:
            line = bytes(raw).strip(b"\r\x00 \t")
            if not line:
                continue
            if len(line) > self.driver.max_line:
                # (two sentences whose line end was lost make one line too long
                # for either: each is kept that is short enough to be one)
                keep = self._split_long(line)
                self.stats.bad_lines += 1
                self.stats.bytes_skipped += (len(raw) - sum(len(k) for k in keep) if keep
                                             else len(raw) + 1)   # (+ its line end)
                lines.extend(keep)
                continue
            lines.append(line)
        if not lines:
            return []
        res = self.driver.decode_lines(lines)
        self.stats.crc_errors += res.bad_checksum
        self.stats.bad_lines += res.bad_lines
        self.stats.truncated += res.truncated
        self.stats.ignored += res.ignored
        return [res.batch] if res.batch is not None and len(res.batch) else []

    def _tail(self, data: bytes | bytearray) -> bytes:
        """What of a run too long for a line may still be lines: from the first
        of the driver's line starts that leaves at most ``max_line`` bytes (two
        NMEA sentences joined by a lost line end, a binary packet sharing the
        port before one), else nothing."""
        start = self.driver.line_start
        if not start:
            return b""
        p = bytes(data).find(start, max(1, len(data) - self.driver.max_line))
        return bytes(data[p:]) if p > 0 else b""

    def _split_long(self, line: bytes) -> list[bytes]:
        """The pieces of a line too long for one that start with the driver's
        line start and are short enough to be a line (none without one)."""
        start = self.driver.line_start
        if not start:
            return []
        pieces = [start + p for p in line.split(start)[1:]]
        return [p for p in pieces if len(p) <= self.driver.max_line]

    def _drop_long(self) -> None:
        tail = self._tail(self._buf)
        self.stats.bad_lines += 1
        self.stats.bytes_skipped += len(self._buf) - len(tail)
        self._buf = bytearray(tail)

    # -- sequence -----------------------------------------------------------------------
    def _remember(self, batch: FrameBatch) -> None:
        """Keep a delivered batch among the recent ones (the last
        DUPLICATE_WINDOW frames); no copy, and O(1) per batch."""
        self._recent.append(batch)
        self._recent_n += len(batch)
        while self._recent_n - len(self._recent[0]) >= DUPLICATE_WINDOW:
            self._recent_n -= len(self._recent.popleft())

    def _seen(self, value: int, batch: FrameBatch, i: int, keep: np.ndarray
              ) -> bool | None:
        """Whether the latest frame delivered with number ``value`` had the
        content of frame ``i`` of ``batch`` (payload and device clock): True, a
        resend; False, other content (a restart); None, no such frame."""
        def same(b: FrameBatch, j: int) -> bool:
            return bool(b.device_time_us[j] == batch.device_time_us[i]
                        and np.array_equal(b.samples[j], batch.samples[i]))

        # among exactly the last DUPLICATE_WINDOW frames delivered, as
        # sequence_gaps looks at a recorded column
        budget = DUPLICATE_WINDOW
        earlier = np.flatnonzero(keep[:i])[-budget:]
        hit = earlier[batch.sequence[earlier] == value]
        if hit.size:
            return same(batch, int(hit[-1]))
        budget -= earlier.size
        for b in reversed(self._recent):
            if budget <= 0:
                break
            off = max(0, len(b) - budget)
            hit = np.flatnonzero(b.sequence[off:] == value)
            if hit.size:
                return same(b, off + int(hit[-1]))
            budget -= len(b)
        return None

    def _sequence(self, batch: FrameBatch) -> FrameBatch:
        seq = np.ascontiguousarray(batch.sequence, dtype=np.int64)
        if seq.shape[0] == 0:
            return batch
        # the usual case (every step +1) in one compiled pass
        if _framing.sequence_steps_one(seq, self._last_seq or 0, self._last_seq is not None):
            self._last_seq = int(seq[-1])
            self._remember(batch)
            return batch
        keep = np.ones(seq.shape[0], dtype=bool)
        last = None if self._last_seq is None else self._last_seq
        s = self.stats
        for i, value in enumerate(seq.tolist()):
            if last is not None:
                step = (value - last) % _SEQ_MOD
                if step == 0 or step >= _SEQ_MOD - DUPLICATE_WINDOW:
                    # back by a little: a resend of a frame delivered (dropped), a
                    # device restarted near its old count (a brown-out, a replug:
                    # its new readings had been dropped as duplicates), or a frame
                    # that comes late
                    seen = self._seen(value, batch, i, keep)
                    if seen:
                        s.duplicates += 1
                        keep[i] = False
                    elif seen is not None:
                        s.sequence_resets += 1
                        last = value
                    elif s.frames_missing:   # (late: it fills a gap counted before)
                        s.frames_missing -= 1
                elif step == 1:
                    last = value
                elif step < _SEQ_MOD // 2:
                    s.sequence_gaps += 1
                    s.frames_missing += step - 1
                    last = value
                else:
                    s.sequence_resets += 1
                    last = value
            else:
                last = value
        self._last_seq = last
        out = batch if keep.all() else batch.select(keep)
        self._remember(out)
        return out
