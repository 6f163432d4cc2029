"""Base classes shared by every device driver.

A driver knows one wire protocol.  It declares the default serial settings of the
device, documents its frame layout (``drivers/<name>.md``), encodes frames into
bytes (for simulators and tests) and decodes the frames that the shared framing
engine (:mod:`demine.framing`) has cut out of the byte stream into a
:class:`FrameBatch`: NumPy arrays holding many frames at once.

Two framing families exist:

* ``"binary"`` drivers describe their frames with a :class:`BinaryLayout` (sync
  word, header fields that give the frame length, CRC-16/CCITT range).  The
  compiled framing kernel finds, length-checks and CRC-checks frames with it and
  hands the driver the offsets of the good ones.
* ``"line"`` drivers (NMEA, ASCII detectors) get whole text lines and validate
  them themselves (checksum, column count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from demine import _framing

__all__ = ["BinaryLayout", "Driver", "FrameBatch", "LineDecodeResult", "decode_columns",
           "gather_frames", "runs"]


@dataclass
class FrameBatch:
    """Many decoded frames of one stream, as arrays (one row per frame).

    Attributes
    ----------
    driver : str
        Name of the driver that decoded the frames.
    kind : str
        Recording stream kind: ``"emi"``, ``"gpr"``, ``"gps"`` or ``"marker"``.
    sequence : ndarray of int64, shape (n,)
        Frame sequence numbers (device counter, or a host counter for protocols
        without one).
    device_time_us : ndarray of int64, shape (n,)
        Device clock in microseconds, ``-1`` where the protocol has none.
    samples : ndarray, shape (n, k)
        The payload: gate samples (EMI), trace samples (GPR), GPS columns.
    fields : dict of str to ndarray
        Other per-frame fields (``status``, ``encoder``, ``stacking``…).
    host_time_ns : ndarray of int64 or None
        Host receive time (UTC ns) of each frame: the time of the read that
        completed it.  Filled in by the reader.
    time_ns : ndarray of int64 or None
        Best estimate of the acquisition time (UTC ns): the device clock mapped
        to host time by a robust running fit, free of USB jitter.  Filled in by
        the reader.
    """

    driver: str
    kind: str
    sequence: np.ndarray
    device_time_us: np.ndarray
    samples: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    host_time_ns: np.ndarray | None = None
    time_ns: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.sequence.shape[0])

    def select(self, keep: np.ndarray) -> FrameBatch:
        """Return the frames where the boolean mask (or index array) ``keep`` holds."""
        return FrameBatch(
            driver=self.driver,
            kind=self.kind,
            sequence=self.sequence[keep],
            device_time_us=self.device_time_us[keep],
            samples=self.samples[keep],
            fields={k: v[keep] for k, v in self.fields.items()},
            host_time_ns=None if self.host_time_ns is None else self.host_time_ns[keep],
            time_ns=None if self.time_ns is None else self.time_ns[keep],
        )

    @staticmethod
    def concatenate(batches: list[FrameBatch]) -> FrameBatch:
        """Join batches of the same driver and payload width into one."""
        if not batches:
            raise ValueError("no batches to concatenate")
        first = batches[0]

        def cat(name: str) -> np.ndarray | None:
            parts = [getattr(b, name) for b in batches]
            if any(p is None for p in parts):
                return None
            return np.concatenate(parts)

        return FrameBatch(
            driver=first.driver,
            kind=first.kind,
            sequence=np.concatenate([b.sequence for b in batches]),
            device_time_us=np.concatenate([b.device_time_us for b in batches]),
            samples=np.concatenate([b.samples for b in batches]),
            fields={k: np.concatenate([b.fields[k] for b in batches]) for k in first.fields},
            host_time_ns=cat("host_time_ns"),
            time_ns=cat("time_ns"),
        )


@dataclass(frozen=True)
class BinaryLayout:
    """How the framing kernel finds and checks frames of a binary protocol.

    The frame length is ``base + count * unit`` where ``count`` is an unsigned
    little-endian header field (``count_width`` bytes at ``count_off``) that must
    lie in ``[count_min, count_max]`` and ``unit`` is either the constant
    ``unit_const`` or the header byte at ``unit_off`` (which must be one of
    ``unit_allowed``).  The byte at ``version_off`` must equal ``version``.  The
    last two bytes of the frame are the CRC-16/CCITT-FALSE (little-endian) of
    ``frame[crc_start:-2]``.  A header that fails these checks is garbage (the
    engine moves on by one byte), so a lying length field can never cause a
    large allocation or a long wait.
    """

    sync: bytes
    header_len: int
    version_off: int
    version: int
    count_off: int
    count_width: int
    count_min: int
    count_max: int
    base: int
    unit_const: int = 1
    unit_off: int = -1
    unit_allowed: tuple[int, ...] = ()
    crc_start: int = 2

    def __post_init__(self) -> None:
        if len(self.sync) != 2:
            raise ValueError("the framing kernel expects a two-byte sync word")
        if self.count_width not in (1, 2, 4):
            raise ValueError("count_width must be 1, 2 or 4")

    @property
    def max_len(self) -> int:
        """Longest frame the header can announce."""
        unit = max(self.unit_allowed) if self.unit_off >= 0 else self.unit_const
        return self.base + self.count_max * unit

    @property
    def min_len(self) -> int:
        """Shortest frame the header can announce."""
        unit = min(self.unit_allowed) if self.unit_off >= 0 else self.unit_const
        return self.base + self.count_min * unit

    def as_array(self) -> np.ndarray:
        """Parameters packed for the compiled kernel (int64 vector)."""
        mask = 0
        for u in self.unit_allowed:
            mask |= 1 << u
        return np.array(
            [
                self.sync[0],
                self.sync[1],
                self.header_len,
                self.version_off,
                self.version,
                self.count_off,
                self.count_width,
                self.count_min,
                self.count_max,
                self.base,
                self.unit_const,
                self.unit_off,
                mask,
                self.crc_start,
                self.min_len,
            ],
            dtype=np.int64,
        )


@dataclass
class LineDecodeResult:
    """What a line driver made of a list of text lines."""

    batch: FrameBatch | None
    bad_checksum: int = 0
    bad_lines: int = 0
    truncated: int = 0
    ignored: int = 0


class Driver:
    """Base class of device drivers.

    Subclasses set the class attributes and implement :meth:`encode` and either
    :meth:`decode` (binary) or :meth:`decode_lines` (line).  Instances may carry
    options (for instance the column list of ``ascii-md``); :func:`demine.drivers.get_driver`
    passes keyword options to the constructor.
    """

    #: Registry name, e.g. ``"emi-pi"``.
    name: ClassVar[str] = ""
    #: Recording stream kind: ``"emi"``, ``"gpr"``, ``"gps"`` or ``"marker"``.
    kind: ClassVar[str] = ""
    #: ``"binary"`` or ``"line"``.
    framing: ClassVar[str] = "binary"
    #: Default serial settings, keyword arguments of :func:`serial.serial_for_url`.
    serial_settings: ClassVar[dict[str, Any]] = {
        "baudrate": 115200,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "xonxoff": False,
        "rtscts": False,
    }
    #: One-paragraph description of the frame format (the full table is in the .md note).
    frame_format: ClassVar[str] = ""
    #: Binary layout for the framing kernel (binary drivers only).
    layout: ClassVar[BinaryLayout | None] = None
    #: Unit of the samples (SI).
    units: ClassVar[str] = ""
    #: Whether frames carry a device sequence counter (sequence gaps are then counted).
    has_sequence: ClassVar[bool] = True
    #: Longest accepted text line (line drivers); longer runs without newline are garbage.
    max_line: ClassVar[int] = 1024
    #: The bytes that start every line of the protocol (line drivers; ``b"$"`` for
    #: NMEA), if any: a run too long for a line keeps what follows the last of
    #: them that leaves a line short enough, instead of dropping it all.
    line_start: ClassVar[bytes | None] = None
    #: Bit of the ``status`` field the device sets when its survey wheel's
    #: ``encoder`` count is not to be trusted (0: none); the recorder does not
    #: place such traces by the wheel.
    encoder_fault_bit: ClassVar[int] = 0

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"driver {self.name!r} takes no options, got {sorted(options)}")

    # -- metadata -----------------------------------------------------------------------
    def protocol_note(self) -> str:
        """Text of the protocol note ``drivers/<module>.md`` shipped with the package."""
        from importlib import resources

        module = type(self).__module__.rsplit(".", 1)[-1]
        try:
            return resources.files("demine.drivers").joinpath(f"{module}.md").read_text("utf-8")
        except (FileNotFoundError, ModuleNotFoundError):
            return self.frame_format

    def describe(self) -> dict[str, Any]:
        """Metadata for a recording stream (``device``/``driver`` attributes)."""
        return {"driver": self.name, "kind": self.kind, "units": self.units,
                "serial_settings": dict(self.serial_settings)}

    # -- encoding -----------------------------------------------------------------------
    def encode(self, frame: Any) -> bytes:
        """Encode one typed frame to its wire bytes (for simulators and tests)."""
        raise NotImplementedError

    def encode_many(self, frames: Any) -> bytes:
        """Encode an iterable of typed frames to one byte string."""
        return b"".join(self.encode(f) for f in frames)

    # -- decoding -----------------------------------------------------------------------
    def decode(
        self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
    ) -> list[FrameBatch]:
        """Decode frames already found and CRC-checked by the framing kernel.

        Returns one batch per run of frames with the same payload shape and type,
        in stream order (usually exactly one).

        Parameters
        ----------
        buf : ndarray of uint8
            The buffered bytes.
        offsets, lengths : ndarray of int64
            Start and length of every good frame in ``buf``.
        """
        raise NotImplementedError

    def _column_batches(self, runs: list[tuple], names: tuple[str, ...]) -> list[FrameBatch]:
        """One batch per run of :func:`decode_columns` whose header columns are
        the sequence number, the device clock, then the fields ``names``."""
        return [
            FrameBatch(driver=self.name, kind=self.kind, sequence=cols[0],
                       device_time_us=cols[1], samples=samples,
                       fields=dict(zip(names, cols[2:], strict=True)))
            for _lo, _hi, samples, *cols in runs
        ]

    def decode_lines(self, lines: list[bytes]) -> LineDecodeResult:
        """Decode complete text lines (without their line ending)."""
        raise NotImplementedError

    def new_framer(self) -> Any:
        """A fresh stateful framing engine (:class:`demine.framing.Framer`) for this driver."""
        from demine.framing import Framer

        return Framer(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def gather_frames(buf: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """Copy ``len(offsets)`` frames of ``length`` bytes into an (n, length) uint8 array.

    Contiguous runs (the usual case: frames back to back) are copied with one slice.
    """
    n = offsets.shape[0]
    if n == 0:
        return np.empty((0, length), dtype=np.uint8)
    first = int(offsets[0])
    # accepted frames never overlap, so equal span means back to back
    if int(offsets[-1]) - first == (n - 1) * length:
        return buf[first : first + n * length].reshape(n, length)
    return buf[offsets[:, None] + np.arange(length)]


def runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of the runs of equal consecutive values in ``keys``."""
    n = keys.shape[0]
    if n == 0:
        return []
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def decode_columns(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    fields: np.ndarray,
    head: int,
    tail: int,
    unit_off: int,
    unit_const: int,
    sample_wire: np.ndarray,
) -> list[tuple]:
    """Columns of fixed-layout frames, gathered by the compiled kernel in one pass.

    ``buf[offsets[i]:offsets[i] + lengths[i]]`` are frames checked by the framing
    kernel.  ``fields`` (int64, ``(k, 3)``) gives per header column its byte offset,
    wire type (``demine._framing.WIRE_*``, little-endian) and output NumPy type
    number; the samples run from byte ``head`` to ``tail`` bytes before the end,
    their width is the header byte at ``unit_off`` (``unit_const`` if ``unit_off <
    0``) and their wire type ``sample_wire[width]``.  Returns one tuple ``(lo, hi,
    samples, column 0, ...)`` per run of frames with equal length and sample width.

    The same values as a structured view of the gathered rows and ``astype`` of
    each field (the NumPy way), without a NumPy call per column: the reader runs
    this after a 25 ms sleep, when every NumPy call pays cold caches.
    """
    args = (fields, head, tail, unit_off, unit_const, sample_wire)
    try:  # the framer's arrays are already contiguous uint8 / int64
        return _framing.decode_columns(buf, offsets, lengths, offsets.shape[0], *args)
    except (TypeError, ValueError):
        buf = np.ascontiguousarray(buf, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        if offsets.shape != lengths.shape or offsets.ndim != 1:
            raise ValueError("offsets and lengths must be 1-D of equal length") from None
        return _framing.decode_columns(buf, offsets, lengths, offsets.shape[0], *args)
