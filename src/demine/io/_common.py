"""Shared pieces of the vendor readers: the result type and defensive helpers."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VendorFormatError

#: Text sidecars and headers above this size are refused (a header is a few kB).
MAX_TEXT_BYTES = 16 * 1024 * 1024


@dataclass
class RadarData:
    """Raw samples and metadata of one radar profile read from a vendor file.

    Attributes
    ----------
    samples
        ``(n_traces, n_samples)`` array in the file's own sample type (``uint8``,
        ``uint16``, ``int16``, ``int32``, ``float32``…); nothing is rescaled,
        offset-corrected or filtered.
    sample_interval_s
        Time between two samples of a trace, seconds.
    vendor
        ``"gssi"``, ``"mala"``, ``"pulseekko"`` or ``"segy"``.
    path
        The data file that was read.
    header
        Vendor header fields, JSON-serialisable (numbers, strings, lists, dicts).
    zero_offset
        Value that means zero amplitude (GSSI 8/16-bit samples are unsigned with
        a mid-scale offset: 128 or 32768); 0 for signed formats.
    channel, n_channels
        Which channel of a multi-channel file this is, and how many there are.
    trace_interval_m
        Nominal distance between traces (NaN when the file does not say).
    trace_interval_s
        Nominal time between traces (NaN when the file does not say).
    trace_position_m
        Along-line position of each trace from the file, or None.
    trace_time_s
        Time of each trace in seconds since UTC midnight of ``start_date`` (or
        since the start of the line), or None.
    start_time_ns
        UTC nanoseconds of the first trace when the file says, else None.
    marks
        Trace indices (0-based) that carry a user mark.
    gps
        Dict of column arrays (``trace``, ``time_ns``, ``lat``, ``lon``, ``alt``,
        ``fix_quality``, ``satellites``, ``hdop``) from the GPS sidecar, or None.
        ``trace`` is the 0-based trace index as the sidecar gives it (it may lie
        outside the data when the sidecar does); no-fix rows have NaN position.
    antenna
        Antenna name or code as the file stores it.
    frequency_hz
        Nominal antenna centre frequency, NaN when unknown.
    time_zero_sample
        Sample index of time zero when the file says, else NaN.
    trace_headers
        ``(n_traces, n_fields)`` per-trace header values for formats that have
        them (pulseEKKO, SEG-Y); the field names are in ``header["trace_header_fields"]``.
    """

    samples: np.ndarray
    sample_interval_s: float
    vendor: str
    path: str
    header: dict[str, Any] = field(default_factory=dict)
    zero_offset: float = 0.0
    channel: int = 0
    n_channels: int = 1
    trace_interval_m: float = math.nan
    trace_interval_s: float = math.nan
    trace_position_m: np.ndarray | None = None
    trace_time_s: np.ndarray | None = None
    start_time_ns: int | None = None
    marks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gps: dict[str, np.ndarray] | None = None
    antenna: str = ""
    frequency_hz: float = math.nan
    time_zero_sample: float = math.nan
    trace_headers: np.ndarray | None = None

    @property
    def n_traces(self) -> int:
        """Number of traces."""
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        """Samples per trace."""
        return int(self.samples.shape[1])

    def signed(self) -> np.ndarray:
        """Samples as signed integers with the mid-scale offset removed, losslessly.

        ``uint8`` becomes ``int8`` and ``uint16`` becomes ``int16`` by subtracting
        :attr:`zero_offset` (a bijection, no value is lost); signed and float
        samples are returned unchanged.
        """
        s = self.samples
        if s.dtype == np.uint16 and self.zero_offset == 32768:
            return (s ^ np.uint16(0x8000)).view(np.int16)
        if s.dtype == np.uint8 and self.zero_offset == 128:
            return (s ^ np.uint8(0x80)).view(np.int8)
        if s.dtype.kind == "u" and self.zero_offset:
            return s.astype(np.int64) - int(self.zero_offset)
        return s

    def amplitudes(self, dtype: Any = np.float32) -> np.ndarray:
        """Samples as floating point with the mid-scale offset removed."""
        return np.asarray(self.samples, dtype=dtype) - np.asarray(self.zero_offset, dtype=dtype)

    def times_s(self) -> np.ndarray:
        """Two-way travel time of each sample, seconds (from the first sample)."""
        return np.arange(self.n_samples) * self.sample_interval_s


def fail(path: str | os.PathLike[str], fld: str, why: str) -> VendorFormatError:
    """Build the error that names the file and the field."""
    return VendorFormatError(f"{os.fspath(path)}: field {fld!r}: {why}")


def file_size(path: str | os.PathLike[str]) -> int:
    """Size of *path* in bytes; VendorFormatError when it is not a regular file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise VendorFormatError(f"{os.fspath(path)}: no such file") from None
    if not p.is_file():
        raise VendorFormatError(f"{os.fspath(path)}: not a regular file")
    return int(st.st_size)


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """Read a small ASCII-ish header/sidecar; refuses absurd sizes. Never fails to decode."""
    n = file_size(path)
    if n > MAX_TEXT_BYTES:
        raise fail(path, what, f"{n} bytes is too large for a text header")
    return Path(path).read_bytes().decode("latin-1")


def find_sibling(path: str | os.PathLike[str], *exts: str) -> Path | None:
    """Return a file next to *path* with the same stem and one of *exts* (case-insensitive)."""
    p = Path(path)
    wanted = {e.lower().lstrip(".") for e in exts}
    for e in exts:  # fast path: exact spellings
        for cand in (p.with_suffix("." + e.lower()), p.with_suffix("." + e.upper())):
            if cand.is_file():
                return cand
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        return None
    stem = p.stem.lower()
    for cand in sorted(entries):
        if cand.stem.lower() == stem and cand.suffix.lower().lstrip(".") in wanted:
            if cand.is_file():
                return cand
    return None


def finite_positive(path: str | os.PathLike[str], fld: str, value: float) -> float:
    """Check a header number that must be a finite positive float."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise fail(path, fld, f"{value!r} is not a finite positive number")
    return float(value)


#: Bounds outside which a reader's timing or spacing is a header read wrong, not
#: a radar: sample intervals (s), the time (s) and distance (m) between traces.
PLAUSIBLE = {"sample interval": (1e-15, 1.0, "s"), "trace interval": (1e-9, 86400.0, "s"),
             "trace spacing": (1e-9, 1000.0, "m")}


def check_plausible(rd: RadarData) -> RadarData:
    """Refuse a :class:`RadarData` whose timing or positions no radar has (a
    header field of 1e-320 or 1e308 had made infinite positions and trace
    times that wrapped round the int64 clock, imported without a word)."""
    for what, v in (("sample interval", rd.sample_interval_s),
                    ("trace interval", rd.trace_interval_s),
                    ("trace spacing", rd.trace_interval_m)):
        lo, hi, unit = PLAUSIBLE[what]
        if what == "sample interval" or not math.isnan(v):
            if not lo <= v <= hi:
                raise VendorFormatError(f"{rd.path}: {what} {v:g} {unit} (from its header) is "
                                        f"outside {lo:g}-{hi:g} {unit}: a wrong header field?")
    for what, arr, hi in (("trace positions", rd.trace_position_m, 1e9),
                          ("trace times", rd.trace_time_s, 1e10)):
        if arr is not None and np.size(arr):
            a = np.asarray(arr, dtype=np.float64)
            bad = np.isinf(a) | (np.abs(np.nan_to_num(a)) > hi)
            if bad.any():
                raise VendorFormatError(f"{rd.path}: {what} reach {a[bad][0]:g} (from its "
                                        "header's spacing or rate): a wrong header field?")
    if rd.start_time_ns is not None and not 0 <= rd.start_time_ns < 2**63 - 2 * 10**17:
        # (the samples do not depend on it: the time is unknown, as without one)
        warnings.warn(f"{rd.path}: start time {rd.start_time_ns} ns is outside 1970-2262 "
                      "(a wrong header field?): not used", stacklevel=3)
        rd.header["start_time_refused_ns"] = int(rd.start_time_ns)
        rd.start_time_ns = None
    return rd


def gps_sidecar(rd: RadarData, key: str, path: str | os.PathLike[str], label: str,
                read: Any) -> bool:
    """``rd.gps`` from a GPS sidecar, ``read()`` giving ``(table, stats)``; the
    stats (or the error) go to ``rd.header[key]``.  An unreadable sidecar is
    ignored with a warning: the radar data does not depend on it."""
    try:
        rd.gps, stats = read()
    except VendorFormatError as exc:
        warnings.warn(f"unreadable {label} sidecar ignored: {exc}", stacklevel=3)
        rd.header[key] = {"path": os.fspath(path), "error": str(exc)}
        return False
    rd.header[key] = {"path": os.fspath(path), **stats}
    return True


def load_block(
    path: str | os.PathLike[str],
    dtype: np.dtype,
    offset: int,
    count: int,
    mmap: bool,
) -> np.ndarray:
    """Read *count* items of *dtype* at *offset*, after checking the file holds them."""
    size = file_size(path)
    need = offset + count * dtype.itemsize
    if offset < 0 or count < 0 or need > size:
        raise fail(path, "payload", f"needs {need} bytes, file has {size} (truncated?)")
    if count == 0:
        return np.zeros(0, dtype)
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))
    out = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    if out.shape[0] != count:  # file shrank under us
        raise fail(path, "payload", f"read {out.shape[0]} of {count} items (truncated?)")
    return out


def parse_number(path: str | os.PathLike[str], key: str, text: str) -> float:
    """Parse a header number, with the key named in the error."""
    t = text.strip()
    try:
        v = float(t)
    except ValueError:
        raise fail(path, key, f"{t[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise fail(path, key, f"{t[:40]!r} is not finite")
    return v


def parse_count(path: str | os.PathLike[str], key: str, text: str, lo: int = 0) -> int:
    """Parse a non-negative integer header field (accepts ``512`` and ``512.0``)."""
    v = parse_number(path, key, text)
    if v != int(v) or v < lo or v > 2**40:
        raise fail(path, key, f"{text.strip()[:40]!r} is not an integer >= {lo}")
    return int(v)


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars / bytes / NaN into JSON-friendly Python values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


GPS_COLUMNS = ("trace", "time_ns", "lat", "lon", "alt", "fix_quality", "satellites", "hdop")
_GPS_DTYPES = {
    "trace": np.int64,
    "time_ns": np.int64,
    "lat": np.float64,
    "lon": np.float64,
    "alt": np.float64,
    "fix_quality": np.int16,
    "satellites": np.int16,
    "hdop": np.float64,
}

#: ``time_ns`` value of a GPS row whose absolute time is unknown.
NO_TIME = np.iinfo(np.int64).min


def gps_table(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Column arrays from rows ordered as :data:`GPS_COLUMNS`.

    Rows whose trace number does not fit int64 are dropped; times that do not
    fit become :data:`NO_TIME`; satellite counts are clipped to int16.
    """
    lim = 2**62
    clean = []
    for r in rows:
        trace, t = r[0], r[1]
        if not -lim < trace < lim:
            continue
        if not -lim < t < lim:
            t = NO_TIME
        sats = min(max(int(r[6]), -1), 32767)
        quality = min(max(int(r[5]), -1), 32767)
        clean.append((trace, t, *r[2:5], quality, sats, r[7]))
    rows = clean
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(GPS_COLUMNS)
    return {
        name: np.asarray(col, dtype=_GPS_DTYPES[name])
        for name, col in zip(GPS_COLUMNS, cols, strict=True)
    }
