"""Recording format v1: lossless, append-only HDF5 recordings of sensor streams.

A recording holds one group per sensor stream under ``/streams`` (kinds
``emi``, ``gpr``, ``gps``, ``marker``), the tables ``/truth``, ``/alarms`` and
``/markers``, and derived (processed) data under ``/derived``.  The layout is
specified in ``docs/format.md``; this module is its only writer and reader.

Writing uses HDF5's single-writer/multiple-reader (SWMR) mode so that a console
can follow a file while it grows.  Appended frames are buffered in memory and
written on a time budget (``flush_interval``, default 1 s, also enforced by a
background thread when appends stop), so a killed process loses at most the
frames since the last flush and leaves a file that still opens.

Examples
--------
>>> import numpy as np
>>> from demine.recording import RecordingWriter, Recording
>>> with RecordingWriter("lane.h5", site="test site", operator="A. N.") as rec:  # doctest: +SKIP
...     emi = rec.add_stream("emi", "emi", n_channels=4, gate_times=[1e-5, 3e-5, 1e-4, 3e-4])
...     emi.append(np.zeros((10, 4)), time=np.arange(10) * 1_000_000)
>>> Recording("lane.h5").streams["emi"].samples.shape  # doctest: +SKIP
(10, 4)
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import math
import os
import shutil
import threading
import time as _time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakSet

import h5py
import numpy as np

from ._version import __version__
from .errors import (
    FormatVersionError,
    NotARecordingError,
    RecordingError,
    SchemaError,
)

FORMAT_NAME = "demine-recording"
FORMAT_VERSION = 1
STREAM_KINDS = ("emi", "gpr", "gps", "marker")
#: What a stream's ``z`` is measured from (its ``z_datum`` attribute):
#: ``"ground"``, the sensor's height above the ground (the default), or
#: ``"frame"``, up in the local frame (the GPS altitude less the root's
#: ``origin_alt``, as ``demine record`` writes it).
Z_DATUMS = ("ground", "frame")
#: Where the median of a ``"ground"`` stream's ``z`` must lie (m) for it to
#: be read as heights (:meth:`StreamReader.heights`): from a sensor dragged
#: half a metre below the surface's model to one flown at 20 m
PLAUSIBLE_HEIGHT = (-0.5, 20.0)
TIME_UNITS = "nanoseconds since 1970-01-01T00:00:00Z"

#: Attribute names that generic readers (xarray, netCDF) interpret and would
#: silently apply to the data: demine never writes them.
FORBIDDEN_ATTRS = frozenset(
    {"scale_factor", "add_offset", "_FillValue", "missing_value", "valid_range",
     "valid_min", "valid_max", "_Unsigned", "calendar"}
)

_GPR_DTYPES = (np.dtype("int16"), np.dtype("int32"), np.dtype("float32"))


@dataclass(frozen=True)
class Column:
    """One column of a stream or table: a 1-D (or n x width) appendable dataset."""

    name: str
    dtype: np.dtype
    width: int | None = None  # None: 1-D; int: 2-D (n, width)
    fill: Any = None  # value used when an append omits the column; None: required
    units: str | None = None
    description: str = ""


def _f64(name: str, units: str | None, description: str, fill: Any = np.nan) -> Column:
    return Column(name, np.dtype("float64"), None, fill, units, description)


_POSITION_COLUMNS = (
    _f64("x", "m", "sensor position, local east"),
    _f64("y", "m", "sensor position, local north"),
    _f64("z", "m", "sensor height above ground"),
)
_GEO_COLUMNS = (
    _f64("lon", "degrees_east", "WGS 84 longitude"),
    _f64("lat", "degrees_north", "WGS 84 latitude"),
)
_GPS_COLUMNS = (
    _f64("lon", "degrees_east", "WGS 84 longitude (NaN without fix)"),
    _f64("lat", "degrees_north", "WGS 84 latitude (NaN without fix)"),
    _f64("alt", "m", "altitude above mean sea level"),
    Column("fix_quality", np.dtype("int8"), None, 0, None, "NMEA GGA fix quality 0-8"),
    Column("satellites", np.dtype("int16"), None, -1, None, "satellites used (-1 unknown)"),
    Column("hdop", np.dtype("float32"), None, np.nan, None, "horizontal dilution of precision"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "truth": (
        Column("id", np.dtype("S32"), None, None, None, "target identifier"),
        Column("type", np.dtype("S32"), None, b"", None, "target type or class"),
        Column("is_mine", np.dtype("int8"), None, 0, None, "1 for a mine, 0 for clutter"),
        _f64("x", "m", "target position, local east"),
        _f64("y", "m", "target position, local north"),
        _f64("depth", "m", "depth of the target's top below the surface"),
        _f64("metal_mass", "kg", "mass of metal in the target"),
        Column("notes", np.dtype("S128"), None, b"", None, "free text"),
    ),
    "alarms": (
        Column("time", np.dtype("int64"), None, None, TIME_UNITS, "time of the alarm"),
        Column("stream", np.dtype("S32"), None, b"", None, "stream that raised it"),
        _f64("x", "m", "alarm position, local east"),
        _f64("y", "m", "alarm position, local north"),
        _f64("depth", "m", "estimated depth"),
        _f64("velocity", "m s-1", "estimated wave velocity (GPR)"),
        _f64("score", None, "detector score"),
        _f64("p_mine", None, "classifier probability of a mine"),
        Column("label", np.dtype("S32"), None, b"", None, "label given by operator or model"),
    ),
    "markers": (
        Column("time", np.dtype("int64"), None, None, TIME_UNITS, "time of the mark"),
        _f64("x", "m", "marked position, local east"),
        _f64("y", "m", "marked position, local north"),
        Column("label", np.dtype("S64"), None, b"", None, "what was marked"),
        Column("note", np.dtype("S128"), None, b"", None, "free text"),
    ),
}

_CHUNK_BYTES = 1 << 18  # ~256 KiB per chunk


def _is_nan(value: Any) -> bool:
    """Whether ``value`` is a floating-point NaN (and not, e.g., bytes or None)."""
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


_MAX_PENDING_BYTES = 64 << 20


def utc_now_ns() -> int:
    """Current UTC time in integer nanoseconds since the Unix epoch."""
    return _time.time_ns()


def _iso_utc(ns: int) -> str:
    return (
        _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _check_attrs(attrs: Mapping[str, Any], where: str) -> None:
    """Refuse, naming it, an attribute demine does not allow or HDF5 cannot
    hold, before anything is written (a value that failed after its group was
    made had left a stream without columns: the whole file unreadable)."""
    for key in attrs:
        if key in FORBIDDEN_ATTRS:
            raise SchemaError(
                f"{where}: attribute {key!r} is not allowed (generic readers such as "
                "xarray would silently apply it to the data); store calibration under "
                "another name"
            )
    _check_attr_values(attrs, where)


#: Writers not closed yet: closed when the interpreter exits normally (a
#: script that ended without ``close()`` had lost every frame since the last
#: flush; the flush thread is a daemon and dies with the interpreter).
_OPEN_WRITERS: WeakSet[RecordingWriter] = WeakSet()
# a forked child's copies are the parent's writers: it must not flush or close
# them into the parent's file at its exit
os.register_at_fork(after_in_child=_OPEN_WRITERS.clear)


@atexit.register
def _close_open_writers() -> None:
    import logging

    for writer in list(_OPEN_WRITERS):
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
            logging.getLogger(__name__).error("%s: not closed at exit: %s", writer.path, exc)


def _check_attr_values(attrs: Mapping[str, Any], where: str) -> None:
    """Refuse, naming it, an attribute value HDF5 cannot hold."""
    if not attrs:
        return
    # (in memory, laid out as recordings are: libver "latest" stores large
    # attributes densely)
    with h5py.File(f"demine-attr-check-{id(attrs)}", "w", driver="core",
                   backing_store=False, libver="latest") as scratch:
        for key, value in attrs.items():
            try:
                scratch.attrs[key] = value
            except (TypeError, ValueError, OSError) as exc:
                text = repr(value)
                text = text if len(text) <= 60 else text[:57] + "..."
                raise SchemaError(f"{where}: attribute {key!r} = {text} cannot be stored in "
                                  f"HDF5 ({exc})") from None


def _json_text(value: Any, where: str) -> str:
    """``value`` as JSON text, NumPy arrays and scalars as lists and numbers;
    anything JSON cannot hold is a :class:`SchemaError` naming ``where``."""
    def plain(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"a {type(o).__name__} ({o!r:.60}) is not JSON")

    try:
        return json.dumps(value, default=plain)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: cannot be stored as JSON: {exc}") from None


def _stream_columns(kind: str, n_channels: int | None, dtype: np.dtype | None,
                    geo: bool) -> tuple[Column, ...]:
    cols = [
        Column("time", np.dtype("int64"), None, None, TIME_UNITS, "host-corrected UTC time"),
        Column("sequence", np.dtype("int64"), None, -1, None, "device sequence number"),
    ]
    if kind in ("emi", "gpr"):
        assert n_channels is not None and dtype is not None
        cols.append(Column("samples", dtype, n_channels, None, None, "raw samples"))
    if kind == "gps":
        cols.extend(_POSITION_COLUMNS)
        cols.extend(_GPS_COLUMNS)
    else:
        cols.extend(_POSITION_COLUMNS)
        if geo:
            cols.extend(_GEO_COLUMNS)
    if kind == "marker":
        cols.append(Column("code", np.dtype("int32"), None, 0, None, "event code"))
        cols.append(Column("label", np.dtype("S64"), None, b"", None, "event label"))
    return tuple(cols)


def create_columns(group: h5py.Group, columns: tuple[Column, ...], *, table: bool,
                   dims: dict[str, np.ndarray] | None = None,
                   compression: Any = None) -> h5py.Group:
    """Create empty resizable datasets for ``columns`` in ``group``, with dimension
    scales (``index`` for a table, ``time`` for a stream), as the format lays out."""
    index_name = "index" if table else "time"
    index = None
    if table:
        index = group.create_dataset("index", shape=(0,), maxshape=(None,), dtype="int64",
                                     chunks=(4096,))
    for col in columns:
        if col.width is None:
            rows = max(256, min(4096, _CHUNK_BYTES // col.dtype.itemsize))
            # NaN-filled columns (positions, …) say so to HDF5 too: rows
            # not written yet read as NaN (only NaN: a fill value is also
            # netCDF's _FillValue, which generic readers mask)
            ds = group.create_dataset(col.name, shape=(0,), maxshape=(None,),
                                      dtype=col.dtype, chunks=(rows,),
                                      fillvalue=col.fill if _is_nan(col.fill) else None)
        else:
            rows = max(1, _CHUNK_BYTES // (col.width * col.dtype.itemsize))
            ds = group.create_dataset(
                col.name, shape=(0, col.width), maxshape=(None, col.width), dtype=col.dtype,
                chunks=(rows, col.width), compression=compression,
            )
        if col.units:
            ds.attrs["units"] = col.units
        if col.description:
            ds.attrs["long_name"] = col.description
    scale = group[index_name] if not table else index
    scale.make_scale(index_name)
    for col in columns:
        if col.name == index_name:
            continue
        group[col.name].dims[0].attach_scale(scale)
    for dim_name, values in (dims or {}).items():
        dscale = group.create_dataset(dim_name, data=values)
        dscale.make_scale(dim_name)
        for col in columns:
            if col.width is not None:
                group[col.name].dims[1].attach_scale(dscale)
    return group


class _Appender:
    """Buffered appends to a set of equal-length columns in one HDF5 group."""

    def __init__(self, writer: RecordingWriter, group: h5py.Group, columns: tuple[Column, ...],
                 where: str, last: str | None = None) -> None:
        self._writer = writer
        self._group = group
        self.columns = {c.name: c for c in columns}
        self.where = where
        self._pending: list[dict[str, np.ndarray]] = []
        # per pending append: the columns it omitted whose fill is NaN (see
        # _write_pending: when no pending append gave them, only their extent
        # grows and the rows read as the dataset's NaN fill value)
        self._omitted: list[set[str]] = []
        self._pending_bytes = 0
        # column -> (DatasetID, file space, memory space, memory type, dtype)
        self._datasets: dict[str, tuple[Any, ...]] = {}
        self._nan_fill: dict[str, bool] = {}  # column -> dataset's fill value is NaN
        self._nans: dict[tuple[int, np.dtype], np.ndarray] = {}  # read-only NaN columns
        self.n_written = 0
        self.n_frames = 0  # written + pending
        # ``last``: the column whose extent is always the rows written, grown
        # after every other column's rows are in the file; the others grow a
        # whole chunk at a time (their extent is metadata HDF5 rewrites at each
        # growth, 40 % of a column's cost when it grew at every flush) and are
        # trimmed to the rows written at close.  A reader takes the shortest
        # column's length, so it sees complete rows only, as before.
        self._last = last
        # column -> rows its dataset has (what HDF5 holds, kept as a number:
        # asking HDF5 at every flush would be one more call per column)
        self._extent: dict[str, int] = {}
        # bytes of one row over all columns (every buffered column holds the
        # column's dtype and width, so an append of n rows buffers n times this)
        self._row_bytes = sum(c.dtype.itemsize * (c.width or 1) for c in columns)
        # fields given to append() (their names in the order given) -> the
        # order they are coerced in
        self._orders: dict[tuple[str, ...], tuple[str, ...]] = {}
        # 1-D columns whose fill is NaN (an omitted one shares a NaN column)
        self._nan_cols = frozenset(c.name for c in columns
                                   if c.width is None and _is_nan(c.fill))

    def _coerce(self, name: str, value: Any, n: int | None) -> np.ndarray:
        col = self.columns[name]
        if (type(value) is np.ndarray and value.dtype == col.dtype and col.dtype.kind != "S"
                and (value.ndim == 1 if col.width is None
                     else value.ndim == 2 and value.shape[1] == col.width)
                and (n is None or value.shape[0] == n)):
            return value  # already what the checks below would make of it
        if col.dtype.kind == "S":
            if isinstance(value, (str, bytes)):
                value = [value]
            items = []
            for v in np.asarray(value, dtype=object).ravel():
                b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
                if len(b) > col.dtype.itemsize:
                    raise SchemaError(
                        f"{self.where}: field {name!r} value {v!r} is longer than "
                        f"{col.dtype.itemsize} bytes"
                    )
                items.append(b)
            arr = np.array(items, dtype=col.dtype)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise SchemaError(
                    f"{self.where}: field {name!r} has dtype {arr.dtype}; expected numbers "
                    f"for the column's {col.dtype}"
                )
            if col.dtype.kind in "iu" and arr.dtype.kind == "f":
                raise SchemaError(
                    f"{self.where}: field {name!r} is floating point but the column "
                    f"holds {col.dtype} (integer data is never converted from floats)"
                )
            if (col.dtype.kind in "iu" and arr.size
                    and not np.can_cast(arr.dtype, col.dtype, "safe")):
                info = np.iinfo(col.dtype)
                if arr.min() < info.min or arr.max() > info.max:
                    raise SchemaError(
                        f"{self.where}: field {name!r} has values outside the range of "
                        f"the column's {col.dtype}"
                    )
            if (col.dtype.kind == "f" and arr.dtype.kind == "f"
                    and arr.dtype.itemsize > col.dtype.itemsize and arr.size):
                # a finite value beyond the column's range would be stored as inf
                big = float(np.finfo(col.dtype).max)
                fin = arr[np.isfinite(arr)]
                if fin.size and float(np.abs(fin).max()) > big:
                    raise SchemaError(
                        f"{self.where}: field {name!r} has finite values beyond the range of "
                        f"the column's {col.dtype} (they would be stored as inf)")
            arr = arr.astype(col.dtype, copy=False)
        if col.width is None:
            if arr.ndim == 0:
                arr = arr.reshape(1)
            if arr.ndim != 1:
                raise SchemaError(
                    f"{self.where}: field {name!r} must be 1-D, got shape {arr.shape}"
                )
        else:
            if arr.ndim == 1:
                arr = arr.reshape(1, -1)
            if arr.ndim != 2 or arr.shape[1] != col.width:
                raise SchemaError(
                    f"{self.where}: field {name!r} must have shape (n, {col.width}), "
                    f"got {arr.shape}"
                )
        if n is not None and arr.shape[0] != n:
            if arr.shape[0] == 1 and col.width is None:
                arr = np.repeat(arr, n)
            else:
                raise SchemaError(
                    f"{self.where}: field {name!r} has {arr.shape[0]} rows, expected {n}"
                )
        return arr

    def _order(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """The order in which the fields of ``values`` are coerced, 2-D columns
        first (checked and sorted once per set of fields: live, every append
        of a stream gives the same ones)."""
        key = tuple(values)
        order = self._orders.get(key)
        if order is None:
            unknown = set(values) - set(self.columns)
            if unknown:
                raise SchemaError(
                    f"{self.where}: unknown field(s) {sorted(unknown)}; "
                    f"fields are {sorted(self.columns)}"
                )
            order = tuple(sorted(values, key=lambda k: self.columns[k].width is None))
            if len(self._orders) < 64:
                self._orders[key] = order
        return order

    def append(self, values: Mapping[str, Any]) -> int:
        order = self._order(values)
        # The number of rows comes from the first 2-D column, else the longest 1-D one.
        n = None
        arrays: dict[str, np.ndarray] = {}
        for name in order:
            value = values[name]
            if value is None:
                continue
            arr = self._coerce(name, value, n)
            if arr is value or not arr.flags.owndata:
                # buffered until the next flush: a copy, never the caller's own
                # memory (a script re-using one acquisition buffer between
                # appends had every buffered block turn into its last one)
                arr = arr.copy()
            arrays[name] = arr
            if n is None and (self.columns[name].width is not None or arr.shape[0] > 1):
                n = arr.shape[0]
        if n is None:
            n = max((a.shape[0] for a in arrays.values()), default=0)
        omitted: set[str] = set()
        nan_cols = self._nan_cols
        for name, col in self.columns.items():
            arr = arrays.get(name)
            if arr is not None:
                if arr.shape[0] != n:
                    arrays[name] = self._coerce(name, arr, n)
                continue
            if col.fill is None:
                raise SchemaError(f"{self.where}: field {name!r} is required")
            if name in nan_cols:
                # one read-only NaN column per length, shared: most are never
                # written (see _write_pending), update() copies before patching
                arrays[name] = self._nan_column(n, col.dtype)
                omitted.add(name)
                continue
            shape = (n,) if col.width is None else (n, col.width)
            arrays[name] = np.full(shape, col.fill, dtype=col.dtype)
        if n == 0:
            return 0
        with self._writer._lock:
            self._writer._check_open()
            self._pending.append(arrays)
            self._omitted.append(omitted)
            # (every column now holds n rows of its dtype and width)
            self._pending_bytes += n * self._row_bytes
            self.n_frames += n
            self._writer._after_append(self._pending_bytes)
        return n

    def _nan_column(self, n: int, dtype: np.dtype) -> np.ndarray:
        """A read-only column of ``n`` NaN (made once per length and type)."""
        col = self._nans.get((n, dtype))
        if col is None:
            if len(self._nans) > 64:
                self._nans.clear()
            col = self._nans[(n, dtype)] = np.full(n, np.nan, dtype=dtype)
            col.flags.writeable = False
        return col

    def _write_rows(self, name: str, start: int, arr: np.ndarray, grow: bool,
                    write: bool = True) -> None:
        # HDF5's low-level calls, not h5py's Dataset slicing: this runs for every
        # column at every flush (tens of times a second when recording live), and
        # h5py's selection machinery costs 4x the write itself.  The file and
        # memory dataspaces and the memory type are made once per column and
        # reshaped in place: every new h5py identifier costs a registration in
        # h5py's object registry, which was a third of a column write.
        # The memory space keeps the shape of the column's last write (most
        # writes of a live stream have the same number of rows): it is set
        # again only when the shape changes.
        ids = self._datasets.get(name)
        if ids is None:
            dsid = self._group[name].id
            fspace = dsid.get_space()
            ids = self._datasets[name] = [dsid, fspace, fspace.copy(),
                                          h5py.h5t.py_create(arr.dtype), arr.dtype, None,
                                          fspace.shape[1:]]
        dsid, fspace, mspace, mtype, dtype, mshape, _ = ids
        n = arr.shape[0]
        if grow and start + n > self._extent.get(name, 0):
            rows = start + n
            if self._last is not None and name != self._last:
                step = dsid.get_create_plist().get_chunk()[0]
                rows = -(-rows // step) * step  # to the end of its chunk
            self._set_extent(name, rows)
        if not write:
            return
        if not arr.flags.c_contiguous:  # (a numpy call less on most columns)
            arr = np.ascontiguousarray(arr)
        if arr.dtype != dtype:  # (the columns' dtypes are fixed; never in practice)
            mtype = h5py.h5t.py_create(arr.dtype)
        shape = arr.shape
        fspace.select_hyperslab((start, 0) if len(shape) == 2 else
                                (start,) + (0,) * (len(shape) - 1), shape)
        if shape != mshape:
            mspace.set_extent_simple(shape)
            ids[5] = shape
        dsid.write(mspace, fspace, arr, mtype)

    def _set_extent(self, name: str, rows: int) -> None:
        dsid, fspace, *_, rest = self._datasets[name]
        dsid.set_extent((rows,) + rest)
        fspace.set_extent_simple((rows,) + rest, (h5py.h5s.UNLIMITED,) + rest)
        self._extent[name] = rows

    def trim(self) -> None:
        """Cut every column grown ahead of the rows written back to them."""
        for name, rows in list(self._extent.items()):
            if rows > self.n_written:
                self._set_extent(name, self.n_written)

    def update(self, start: int, values: Mapping[str, Any]) -> None:
        """Overwrite columns of rows ``start, start + n`` already appended
        (written to the file or still buffered)."""
        n = None
        arrays = {}
        for name, value in values.items():
            if name not in self.columns:
                raise SchemaError(f"{self.where}: unknown field {name!r}")
            arrays[name] = arr = self._coerce(name, value, n)
            n = arr.shape[0]
        if not arrays or not n:
            return
        with self._writer._lock:
            self._writer._check_open()
            if start < 0 or start + n > self.n_frames:
                raise SchemaError(
                    f"{self.where}: rows {start}..{start + n - 1} are not all appended yet "
                    f"({self.n_frames} frames)"
                )
            # rows already in the file: written in place (SWMR writers may
            # modify existing data; readers see the old or the new values)
            done = max(0, min(start + n, self.n_written) - start)
            if done:
                self._writer._dirty = True
                for name, arr in arrays.items():
                    self._write_rows(name, start, arr[:done], grow=False)
            # rows still buffered: patched in the buffer
            row, i = self.n_written, done
            for part, omitted in zip(self._pending, self._omitted, strict=True):
                m = next(iter(part.values())).shape[0]
                lo, hi = max(start + i, row), min(start + n, row + m)
                if lo < hi:
                    for name, arr in arrays.items():
                        if name in omitted:  # a shared NaN column: patch a copy
                            part[name] = part[name].astype(self.columns[name].dtype)
                            omitted.discard(name)
                        part[name][lo - row:hi - row] = arr[lo - start:hi - start]
                row += m

    def _write_pending(self) -> None:
        if not self._pending:
            return
        if len(self._pending) == 1:  # the usual case when flushing every pass
            batch = self._pending[0]
        else:
            batch = {
                name: np.concatenate([p[name] for p in self._pending]) for name in self.columns
            }
        n = next(iter(batch.values())).shape[0]
        start = self.n_written
        # Columns no pending append gave (positions not known yet, filled in
        # later by update()) whose dataset's fill value is NaN: their extent
        # grows, nothing is written (the rows read as NaN until then).  The
        # recorder appends each pass's frames before the GPS fix that places
        # them; this skips a third of its column writes.
        skip = set.intersection(*self._omitted)
        for name in list(skip):
            nan = self._nan_fill.get(name)
            if nan is None:
                nan = self._nan_fill[name] = _is_nan(self._group[name].fillvalue)
            if not nan:
                skip.discard(name)
        # The last column grows after the others' rows are written: readers
        # take the shortest column's length, so they see complete rows only.
        for name, arr in batch.items():
            if name != self._last:
                self._write_rows(name, start, arr, grow=True, write=name not in skip)
        if self._last is not None:
            self._write_rows(self._last, start, batch[self._last], grow=True)
        self.n_written += n
        self._pending.clear()
        self._omitted.clear()
        self._pending_bytes = 0


class StreamWriter:
    """Appends frames to one sensor stream of a :class:`RecordingWriter`.

    Obtained from :meth:`RecordingWriter.add_stream`; not created directly.
    """

    def __init__(self, writer: RecordingWriter, name: str, kind: str, group: h5py.Group,
                 columns: tuple[Column, ...]) -> None:
        self.name = name
        self.kind = kind
        self._appender = _Appender(writer, group, columns, f"stream {name!r}", last="time")

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the per-frame fields of this stream."""
        return tuple(self._appender.columns)

    @property
    def n_frames(self) -> int:
        """Frames appended so far (written or still buffered)."""
        return self._appender.n_frames

    def append(self, samples: Any = None, *, time: Any, **fields: Any) -> int:
        """Append one or more frames.

        Parameters
        ----------
        samples : array_like, optional
            ``(n, n_channels)`` (or ``(n_channels,)`` for one frame) for ``emi``
            and ``gpr`` streams; not used by ``gps`` and ``marker`` streams.
            Integer radar samples are stored in the stream's integer type and
            never converted from floating point.
        time : array_like of int64
            UTC time of each frame in nanoseconds since the Unix epoch.
        **fields
            Other per-frame fields: ``sequence``, ``x``, ``y``, ``z`` and the
            kind's own (``lon``, ``lat``, ``alt``, ``fix_quality``,
            ``satellites``, ``hdop`` for GPS; ``code``, ``label`` for markers).
            Scalars are repeated for every frame; omitted optional fields get
            their fill value (NaN, -1 or 0, see ``docs/format.md``).

        Returns
        -------
        int
            Number of frames appended.
        """
        values = dict(fields)
        values["time"] = time
        if samples is not None:
            if "samples" not in self._appender.columns:
                raise SchemaError(f"stream {self.name!r} ({self.kind}) has no samples")
            values["samples"] = samples
        return self._appender.append(values)

    def update(self, start: int, **fields: Any) -> None:
        """Overwrite per-frame fields of frames already appended.

        Used by the recorder to fill in positions once the fix after a frame
        has arrived.  Samples and times are never rewritten this way.

        Parameters
        ----------
        start : int
            Index of the first frame to overwrite.
        **fields
            Columns (``x``, ``y``, ``z``, ``lon``, ``lat``, …), each with one
            value per frame from ``start`` on.
        """
        bad = {"samples", "time", "sequence"} & set(fields)
        if bad:
            raise SchemaError(f"stream {self.name!r}: {sorted(bad)} are never rewritten")
        self._appender.update(start, fields)


class RecordingWriter:
    """Create a recording and append frames to it.

    Parameters
    ----------
    path : str or Path
        File to create.  An existing file is refused unless ``overwrite``.
    site, operator, lane_id, notes : str
        Descriptive root attributes.
    flush_interval : float
        Upper bound in seconds on how long appended data stays only in
        memory; a background thread enforces it even when appends stop.
        A writer still open when the interpreter exits normally is closed
        (flushed) then; a killed process loses at most this much.
    fsync : bool
        Also ``fsync`` the file after each flush (survives power loss, costs
        latency on slow media).
    overwrite : bool
        Replace an existing file.
    compression : {None, "gzip", "lzf"}
        Lossless compression of sample datasets.
    attrs : mapping, optional
        Extra root attributes.
    autoflush : bool
        Flush from a background thread when appends stop.
    flush_on_append : bool
        Let an append flush when ``flush_interval`` has passed since the last
        flush.  False for a caller that flushes on its own schedule (the live
        recorder flushes at the end of each pass over its devices; a flush in
        the middle of a pass would double the flushes).
    min_free_bytes : int
        Space kept free on the disk: a flush that would eat into it stops
        the recording cleanly (:class:`RecordingError`, "disk full") instead
        of failing half-way through a write and leaving HDF5 metadata that
        points past the end of the file.
    chunk_cache : int, optional
        Bytes of HDF5's raw-data chunk cache per dataset.  Default: none for
        uncompressed recordings (each flush writes just the new rows; a cache
        makes every flush write each column's whole chunk again, 39 MB/s
        instead of 1.4 MB/s when recording live with 25 ms flushes), HDF5's
        default (1 MiB) with compression, whose filters work on whole chunks.

    Notes
    -----
    Streams must be declared with :meth:`add_stream` before the first append:
    the file then switches to SWMR mode, after which HDF5 allows no new
    objects.  The tables (truth, alarms, markers) exist from creation and can
    be appended to at any time.

    While the file is open, a stream's columns other than ``time`` run ahead
    of it to the end of their current chunk (``time`` holds exactly the frames
    written); :meth:`close` cuts them back.  Readers take the shortest
    column's length, as :class:`Recording` does (``docs/format.md``).
    """

    def __init__(self, path: str | os.PathLike, *, site: str = "", operator: str = "",
                 lane_id: str = "", notes: str = "", flush_interval: float = 1.0,
                 fsync: bool = False, overwrite: bool = False,
                 compression: str | None = None, attrs: Mapping[str, Any] | None = None,
                 autoflush: bool = True, min_free_bytes: int = 4 << 20,
                 flush_on_append: bool = True, chunk_cache: int | None = None) -> None:
        self.path = Path(path)
        if chunk_cache is not None and not (isinstance(chunk_cache, (int, np.integer))
                                            and not isinstance(chunk_cache, bool)
                                            and 0 <= chunk_cache < 2**63):
            raise ValueError(f"chunk_cache must be a number of bytes >= 0, got {chunk_cache!r}")
        if not (flush_interval > 0 and math.isfinite(flush_interval)):
            raise ValueError(f"flush_interval must be a finite number of seconds > 0, "
                             f"got {flush_interval}")
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        if self.path.exists() and not overwrite:
            raise RecordingError(f"{self.path}: file exists (--overwrite, or overwrite=True, "
                                 "replaces it)")
        extra = dict(attrs or {})
        _check_attrs(extra, str(self.path))
        self.flush_interval = float(flush_interval)
        self.fsync = bool(fsync)
        self.compression = compression
        self._lock = threading.RLock()
        self._closed = False
        self._swmr = False
        try:
            # No raw-data chunk cache for uncompressed recordings: HDF5 writes
            # each append's rows straight to the file instead of keeping the
            # chunk (32-256 KiB) in its cache and writing all of it again at
            # every flush.  Live, with a flush every 25 ms, the cache made the
            # writer put 39 MB/s through pwrite for 0.5 MB/s of frames (a
            # quarter of its CPU).  Compressed chunks must go through the
            # cache (the filter works on whole chunks), so they keep it.
            if chunk_cache is None:
                chunk_cache = 0 if compression is None else None
            cache = {} if chunk_cache is None else {"rdcc_nbytes": int(chunk_cache)}
            self._file = h5py.File(self.path, "w", libver="latest", **cache)
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot create recording: {exc}") from exc
        _OPEN_WRITERS.add(self)
        f = self._file
        created = utc_now_ns()
        f.attrs.update(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "created_utc": _iso_utc(created),
                "created_ns": np.int64(created),
                "software": "demine",
                "software_version": __version__,
                "site": site,
                "operator": operator,
                "lane_id": lane_id,
                "notes": notes,
            }
        )
        for key, value in extra.items():
            f.attrs[key] = value
        f.create_group("streams")
        f.create_group("derived")
        self._tables = {
            name: _Appender(self, create_columns(f.create_group(name), cols, table=True),
                            cols, f"table {name!r}")
            for name, cols in TABLES.items()
        }
        self._streams: dict[str, StreamWriter] = {}
        self._last_flush = _time.monotonic()
        self._oldest_pending: float | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._autoflush = autoflush
        self._flush_on_append = bool(flush_on_append)
        self._dirty = False  # anything appended or rewritten since the last flush
        # last disk-space query: (monotonic time, bytes free), and bytes
        # written since (the query costs two system calls)
        self._free_known: tuple[float, int] | None = None
        self._written_since_check = 0
        self.min_free_bytes = int(min_free_bytes)
        self.flush_count = 0
        #: The error that stopped writing (disk full, …), or None.
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ layout
    def add_stream(self, name: str, kind: str, *, n_channels: int | None = None,
                   dtype: Any = None, device: str = "", driver: str = "", units: str = "",
                   gate_times: Iterable[float] | None = None,
                   sample_interval: float | None = None,
                   calibration: Mapping[str, Any] | None = None, geo: bool = False,
                   fields: Mapping[str, Any] | None = None,
                   attrs: Mapping[str, Any] | None = None) -> StreamWriter:
        """Declare a sensor stream.

        Parameters
        ----------
        name : str
            Group name under ``/streams`` (letters, digits, ``_`` and ``-``; at most
            :data:`MAX_STREAM_NAME` bytes).
        kind : {"emi", "gpr", "gps", "marker"}
            What the stream holds.
        n_channels : int
            Time gates per EMI reading or samples per GPR trace.  Inferred
            from ``gate_times`` for EMI when omitted.
        dtype : numpy dtype
            Sample type: EMI is always ``float32``; GPR keeps the device's
            ``int16``/``int32`` (or ``float32``).
        device, driver : str
            Device description and name of the driver that produced it.
        units : str
            Units of the samples (e.g. ``"V"``, ``"counts"``).
        gate_times : sequence of float
            EMI gate centre times after transmitter switch-off, in seconds;
            stored as the ``gate`` dimension.
        sample_interval : float
            GPR sample interval in seconds; the ``sample`` dimension holds
            ``arange(n) * sample_interval``.
        calibration : mapping
            Calibration profile (stored as JSON in the ``calibration`` attribute).
        geo : bool
            Also store per-frame WGS 84 ``lon``/``lat``.
        fields : mapping of str to dtype
            Further per-frame device fields kept as they come (``status``,
            ``encoder``, ``stacking``, …): 1-D numeric columns, filled with 0
            (integers) or NaN (floats) when an append omits them.
        attrs : mapping
            Further stream attributes.
        """
        with self._lock:
            self._check_open()
            if self._swmr:
                raise RecordingError(
                    f"{self.path}: cannot add stream {name!r} after recording started "
                    "(HDF5 SWMR allows no new objects); declare all streams first"
                )
            check_stream_name(name)
            if name in self._streams:
                raise SchemaError(f"{self.path}: stream {name!r} already exists")
            if kind not in STREAM_KINDS:
                raise SchemaError(f"stream {name!r}: kind {kind!r} is not one of {STREAM_KINDS}")
            extra = dict(attrs or {})
            _check_attrs(extra, f"stream {name!r}")
            if "z_datum" in extra and extra["z_datum"] not in Z_DATUMS:
                raise SchemaError(f"stream {name!r}: z_datum {extra['z_datum']!r} is not one "
                                  f"of {Z_DATUMS}")
            cal_text = _json_text(dict(calibration or {}), f"stream {name!r}: calibration")
            dims: dict[str, np.ndarray] = {}
            sdtype = None
            if kind == "emi":
                if gate_times is not None:
                    gt = np.asarray(list(gate_times), dtype="float64")
                    if n_channels is None:
                        n_channels = gt.size
                    if gt.ndim != 1 or gt.size != n_channels:
                        raise SchemaError(
                            f"stream {name!r}: {gt.size} gate_times for {n_channels} gates"
                        )
                    if np.any(~np.isfinite(gt)) or np.any(gt <= 0):
                        raise SchemaError(f"stream {name!r}: gate_times must be positive seconds")
                    dims["gate"] = gt
                if dtype is not None and np.dtype(dtype) != np.float32:
                    raise SchemaError(f"stream {name!r}: EMI samples are float32, not {dtype}")
                sdtype = np.dtype("float32")
            elif kind == "gpr":
                sdtype = np.dtype(dtype if dtype is not None else "int16")
                if sdtype not in _GPR_DTYPES:
                    raise SchemaError(
                        f"stream {name!r}: GPR samples must be int16, int32 or float32, "
                        f"not {sdtype}"
                    )
            if kind in ("emi", "gpr"):
                if (n_channels is None or isinstance(n_channels, bool)
                        or not float(n_channels).is_integer() or int(n_channels) < 1):
                    raise SchemaError(f"stream {name!r}: n_channels must be a positive integer, "
                                      f"got {n_channels!r}")
                n_channels = int(n_channels)
                if kind == "emi" and "gate" not in dims:
                    dims["gate"] = np.arange(n_channels, dtype="float64")
                if kind == "gpr":
                    if sample_interval is not None:
                        if not (sample_interval > 0 and math.isfinite(sample_interval)):
                            raise SchemaError(f"stream {name!r}: sample_interval must be a "
                                              f"finite number of seconds > 0, got "
                                              f"{sample_interval!r}")
                        dims["sample"] = np.arange(n_channels) * float(sample_interval)
                    else:
                        dims["sample"] = np.arange(n_channels, dtype="float64")
            columns = _stream_columns(kind, n_channels, sdtype, geo)
            taken = {c.name for c in columns} | {"gate", "sample", "index"}
            for fname, fdtype in (fields or {}).items():
                fdt = np.dtype(fdtype)
                if fname in taken or not fname.isidentifier():
                    raise SchemaError(
                        f"stream {name!r}: extra field {fname!r} clashes with a standard "
                        "field or is not an identifier"
                    )
                if fdt.kind not in "biuf":
                    raise SchemaError(
                        f"stream {name!r}: extra field {fname!r} must be numeric, not {fdt}"
                    )
                fill = np.nan if fdt.kind == "f" else 0
                columns += (Column(fname, fdt, None, fill, None, "device field"),)
            group = self._file["streams"].create_group(name)
            try:
                group.attrs.update({"kind": kind, "device": device, "driver": driver,
                                    "units": units})
                if sample_interval is not None:
                    group.attrs["sample_interval"] = float(sample_interval)
                if "gate" in dims:
                    group.attrs["gate_times_known"] = gate_times is not None
                group.attrs["calibration"] = cal_text
                for key, value in extra.items():
                    group.attrs[key] = value
                create_columns(group, columns, table=False, dims=dims,
                               compression=self.compression)
            except BaseException:
                # (a stream without its columns would make the file unreadable)
                del self._file["streams"][name]
                raise
            for dim_name in dims:
                group[dim_name].attrs["units"] = "s" if (
                    dim_name == "sample" and sample_interval is not None
                    or dim_name == "gate" and gate_times is not None) else "1"
            if units and "samples" in group:
                group["samples"].attrs["units"] = units
            stream = StreamWriter(self, name, kind, group, columns)
            self._streams[name] = stream
            return stream

    @property
    def streams(self) -> dict[str, StreamWriter]:
        """Declared streams by name."""
        return dict(self._streams)

    # ------------------------------------------------------------------ tables
    def _append_table(self, table: str, rows: Any) -> int:
        appender = self._tables[table]
        if isinstance(rows, np.ndarray) and rows.dtype.names:
            values = {k: rows[k] for k in rows.dtype.names}
        elif isinstance(rows, Mapping):
            values = dict(rows)
        elif hasattr(rows, "columns") and hasattr(rows, "to_numpy"):
            # a pandas DataFrame (iterating one gives its column names, not rows)
            values = {str(c): rows[c].to_numpy() for c in rows.columns}
        else:
            rows = list(rows)
            if not rows:
                return 0
            keys: list[str] = []
            for r in rows:
                for k in r:
                    if k not in keys:
                        keys.append(k)
            values = {}
            for k in keys:
                if any(k not in r for r in rows):
                    col = appender.columns.get(k)
                    fill = col.fill if col is not None else None
                    values[k] = [r.get(k, fill) for r in rows]
                else:
                    values[k] = [r[k] for r in rows]
        self.start()
        return appender.append(values)

    def add_truth(self, rows: Any) -> int:
        """Append ground-truth targets (list of dicts, dict of columns, structured array
        or pandas DataFrame).

        Columns: ``id`` (required), ``type``, ``is_mine``, ``x``, ``y``, ``depth``
        (m, to the top of the target), ``metal_mass`` (kg), ``notes``.

        Called before the first frame is appended, even with no row, it also
        records that the lane's ground truth is known (the ``/truth``
        attribute ``given``): a blank lane, whose alarms are all false alarms,
        rather than a lane without ground truth
        (:attr:`Recording.truth_given`).
        """
        with self._lock:
            self._check_open()
            if not self._swmr:  # (no new attribute once readers may be looking)
                self._file["truth"].attrs["given"] = np.int8(1)
        return self._append_table("truth", rows)

    def append_alarms(self, rows: Any) -> int:
        """Append alarms: ``time`` (required), ``stream``, ``x``, ``y``, ``depth``,
        ``velocity``, ``score``, ``p_mine``, ``label``."""
        return self._append_table("alarms", rows)

    def append_markers(self, rows: Any) -> int:
        """Append operator markers: ``time`` (required), ``x``, ``y``, ``label``, ``note``."""
        return self._append_table("markers", rows)

    # ------------------------------------------------------------------ flushing
    def _check_open(self) -> None:
        if self._closed:
            raise RecordingError(f"{self.path}: recording is closed")
        if self.error is not None:
            raise RecordingError(str(self.error))

    def start(self) -> None:
        """Enter SWMR mode (done automatically at the first append)."""
        with self._lock:
            self._check_open()
            if self._swmr:
                return
            self._file.flush()
            self._file.swmr_mode = True
            self._swmr = True
            self._last_flush = _time.monotonic()
            if self._autoflush:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name=f"demine-flush:{self.path.name}", daemon=True
                )
                self._flusher.start()

    def _after_append(self, pending_bytes: int) -> None:
        # Called with the lock held.
        if not self._swmr:
            self.start()
        self._dirty = True
        now = _time.monotonic()
        if self._oldest_pending is None:
            self._oldest_pending = now
        if pending_bytes > _MAX_PENDING_BYTES or (
                self._flush_on_append and now - self._last_flush >= self.flush_interval):
            self.flush()

    def _flush_loop(self) -> None:
        period = min(0.25, self.flush_interval / 4)
        while not self._stop.wait(period):
            with self._lock:
                if self._closed:
                    return
                if (self._oldest_pending is not None
                        and _time.monotonic() - self._oldest_pending >= self.flush_interval * 0.75):
                    try:
                        self.flush()
                    except Exception as exc:  # noqa: BLE001 - disk full, …: report on next use
                        if self.error is None:
                            self.error = RecordingError(f"{self.path}: writing failed ({exc})")
                        return

    def _headroom(self) -> int:
        """Bytes the file may still grow by: free disk space, or the process's
        file-size limit (RLIMIT_FSIZE) when that is smaller."""
        size = self.path.stat().st_size
        free = shutil.disk_usage(self.path.parent).free
        try:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
            if soft != resource.RLIM_INFINITY:
                free = min(free, soft - size)
        except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
            pass
        return free

    @property
    def pending_bytes(self) -> int:
        """Bytes appended but not yet written to the file."""
        with self._lock:
            return (sum(s._appender._pending_bytes for s in self._streams.values())
                    + sum(t._pending_bytes for t in self._tables.values()))

    def _check_headroom(self) -> None:
        pending = sum(s._appender._pending_bytes for s in self._streams.values())
        pending += sum(t._pending_bytes for t in self._tables.values())
        if not pending:
            return
        # The free space is asked again at least twice a second, and whenever
        # what was written since the last answer could have used up the margin
        # (flushing tens of times a second, the query was an eighth of a flush)
        now = _time.monotonic()
        known = self._free_known
        if (known is not None and now - known[0] < 0.5
                and 4 * (self._written_since_check + 2 * pending) + self.min_free_bytes
                < known[1]):
            self._written_since_check += pending
            return
        free = self._headroom()
        self._free_known = (now, free)
        self._written_since_check = pending
        if free < 2 * pending + self.min_free_bytes:
            self.error = RecordingError(
                f"{self.path}: disk full ({free} bytes left, {pending} to write, "
                f"{self.min_free_bytes} kept in reserve): recording stopped; the file holds "
                "everything up to the last flush"
            )
            raise self.error

    def flush(self) -> None:
        """Write buffered frames and flush the file (and fsync when asked)."""
        with self._lock:
            self._check_open()
            if not self._swmr:
                self.start()
            self._check_headroom()
            try:
                for stream in self._streams.values():
                    stream._appender._write_pending()
                for name, table in self._tables.items():
                    before = table.n_written
                    table._write_pending()
                    if table.n_written > before:
                        idx = self._file[name]["index"]
                        idx.resize(table.n_written, axis=0)
                        idx[before:] = np.arange(before, table.n_written)
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.id.get_vfd_handle())
            except Exception as exc:
                self.error = RecordingError(
                    f"{self.path}: writing failed ({exc}); the file holds everything up to "
                    "the last successful flush"
                )
                raise self.error from exc
            self._last_flush = _time.monotonic()
            self._oldest_pending = None
            self._dirty = False
            self.flush_count += 1

    @property
    def dirty(self) -> bool:
        """Whether anything was appended or rewritten since the last flush."""
        return self._dirty

    @property
    def last_flush(self) -> float:
        """``time.monotonic()`` at the end of the last flush (or of opening)."""
        return self._last_flush

    def close(self) -> None:
        """Flush everything and close the file.  Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
            finally:
                try:
                    self._trim()
                finally:
                    self._closed = True
                    self._stop.set()
                    self._file.close()
                    _OPEN_WRITERS.discard(self)
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)

    def _trim(self) -> None:
        """Cut the columns grown ahead of the rows written back to them, so that
        generic readers see columns of one length (also after a failed flush:
        a shrink writes only metadata).  When that fails too, the flush's error
        stays the one raised, with this failure noted on it; demine's reader
        still takes the shortest column's length."""
        try:
            for stream in self._streams.values():
                stream._appender.trim()
        except (OSError, RuntimeError, ValueError) as exc:  # HDF5's failures via h5py
            if self.error is None:
                raise
            self.error.add_note(f"cutting the columns back to the frames written also "
                                f"failed ({exc}); readers take the shortest column's length")

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ====================================================================== reading


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_not_truncated(path: Path) -> None:
    """Compare the end-of-file address in the HDF5 superblock with the file size.

    HDF5 opened for SWMR reading skips this check and reads zeros past the end
    of a truncated file, so demine makes it itself.  Superblock versions 2 and
    3 (what demine writes) keep the EOF address at a fixed offset.
    """
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 48 or not head.startswith(_HDF5_SIGNATURE) or head[8] not in (2, 3):
        return
    size_of_offsets = head[9]
    if size_of_offsets != 8:
        return
    eof = int.from_bytes(head[28:36], "little")
    actual = path.stat().st_size
    if eof > actual:
        raise RecordingError(
            f"{path}: truncated: the HDF5 superblock says {eof} bytes, the file has {actual}"
        )


def open_for_writing(path: str | Path) -> bool:
    """Whether a recording's superblock says a writer has it open: being
    recorded, or its recorder stopped without closing it (``h5clear -s PATH``
    marks such a file closed).  False for a file whose superblock is of a
    version without these flags (demine writes versions 2 and 3).

    Readers open such files (SWMR reading), as the console follows a lane
    being recorded; a campaign's analysis (:mod:`demine.batch`) refuses them,
    whose figures would be of part of a lane.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    if len(head) < 12 or not head.startswith(_HDF5_SIGNATURE) or head[8] not in (2, 3):
        return False
    return bool(head[11] & 0b101)  # (bit 0: open for writing; bit 2: SWMR writing)


# A SWMR reader retries a metadata block whose checksum fails (it may be
# half-written by the writer), sleeping 1 ns, 2 ns, 4 ns ... between tries.
# HDF5's default of 100 tries would sleep for millennia on a block that is
# corrupt on disk (a bit flip, a bad sector): opening or reading such a file
# hung.  30 tries wait about 1 s in all, ample for a writer's block write to
# complete, then the read fails with an error.
SWMR_READ_ATTEMPTS = 30
_set_read_attempts: Any = None


def _hdf5_read_attempts_setter() -> Any:
    """``H5Pset_metadata_read_attempts`` of the libhdf5 that h5py uses, or None.

    h5py does not wrap it; it is looked up by ctypes in the library already
    loaded in this process (the same instance, so h5py's property list ids are
    valid there).
    """
    global _set_read_attempts
    if _set_read_attempts is not None:
        return _set_read_attempts or None
    import ctypes

    fn: Any = False
    # h5py's own extension module first: a symbol lookup through it finds the
    # libhdf5 it links against (also with other libhdf5 copies loaded, and
    # where there is no /proc); then the libraries mapped into this process
    candidates: list[str] = [h5py.h5p.__file__]
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                lib = line.split()[-1]
                name = os.path.basename(lib)
                if name.startswith("libhdf5") and not name.startswith("libhdf5_hl") \
                        and lib not in candidates:
                    candidates.append(lib)
    except OSError:
        pass
    for cand in candidates:
        try:
            f = ctypes.CDLL(cand).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        f.argtypes = [ctypes.c_int64, ctypes.c_uint]
        f.restype = ctypes.c_int
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        locked = _under_h5py_lock(f)
        if locked(fapl.id, 2) >= 0:  # a valid id there: the instance h5py uses
            fn = locked
            break
    _set_read_attempts = fn
    return fn or None


def _under_h5py_lock(f: Any) -> Any:
    """``f`` called while holding h5py's global lock.

    libhdf5 is not thread-safe: h5py serialises every call into it with that
    lock (and releases the GIL during some, dataset reads among them), while a
    ctypes call releases the GIL.  Unlocked, a call here racing a read in
    another thread (a threaded batch, a detector thread) made that read fail
    or the process die (SIGBUS).
    """
    from h5py._objects import phil

    def call(*args: Any) -> Any:
        with phil:
            return f(*args)

    return call


def _open_swmr(path: Path, locking: bool = True) -> h5py.File:
    """Open read-only with SWMR, with a bounded number of metadata read attempts
    (``locking=False``: without HDF5's file lock)."""
    kw: dict[str, Any] = {} if locking else {"locking": False}
    setter = _hdf5_read_attempts_setter()
    if setter is None:  # not found (not Linux, or a static build): HDF5's default
        return h5py.File(path, "r", libver="latest", swmr=True, **kw)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    if not locking:
        fapl.set_file_locking(False, True)
    if setter(fapl.id, SWMR_READ_ATTEMPTS) < 0:
        return h5py.File(path, "r", libver="latest", swmr=True, **kw)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                        fapl=fapl)
    return h5py.File(fid)


def _open_h5(path: Path, locking: bool = True) -> h5py.File:
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    if path.is_dir():
        raise RecordingError(f"{path}: is a directory, not a recording")
    if not h5py.is_hdf5(path):
        raise NotARecordingError(f"{path}: not an HDF5 file, so not a demine recording")
    _check_not_truncated(path)
    try:
        # SWMR read works for finished files, files still being written, and
        # files whose writer was killed (their consistency flags stay set).
        return _open_swmr(path, locking)
    except (OSError, RuntimeError):  # (RuntimeError: a damaged superblock's addresses)
        try:
            return h5py.File(path, "r", **({} if locking else {"locking": False}))
        except (OSError, RuntimeError) as exc:
            if "unable to lock file" in str(exc):
                # (a writer holds the file's lock: it is not damaged)
                raise RecordingError(f"{path}: open for writing by another program (it "
                                     f"holds the file's lock): {exc}") from exc
            raise RecordingError(f"{path}: HDF5 file cannot be opened (damaged?): "
                                 f"{exc}") from exc


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str) and any("\udc80" <= c <= "\udcff" for c in value):
        # (an attribute typed UTF-8 holding other bytes: h5py gives their surrogate
        # escapes, which no UTF-8 terminal can print)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def attr_text(value: Any) -> str:
    """A text attribute (``site``, ``operator``, ``lane_id``, ``notes``) as one
    string, as other tools may write it: bytes decoded, an array of strings
    joined with "; ", nothing (None) empty."""
    if value is None:
        return ""
    if isinstance(value, np.ndarray | list | tuple):
        return "; ".join(attr_text(v) for v in np.asarray(value, dtype=object).ravel())
    return str(_decode(value))


# How h5py reports a damaged HDF5 block (checksum, bad address, dangling link)
_DAMAGE_ERRORS = (OSError, RuntimeError, KeyError, ValueError, AttributeError, TypeError)


class _ColumnGroup:
    """Read access to a group of equal-length columns (a stream or a table)."""

    def __init__(self, group: h5py.Group | None, where: str, index: str) -> None:
        # group None: a table the file does not have, read as empty
        self._group = group
        self.where = where
        self._index = index
        skip = {"gate", "sample"}
        if index == "index":
            skip.add("index")
        # listed once: SWMR allows no new objects after the writer's start
        try:
            self._fields = () if group is None else tuple(
                k for k, v in group.items() if isinstance(v, h5py.Dataset) and k not in skip)
        except _DAMAGE_ERRORS as exc:
            raise RecordingError(f"{group.file.filename}: {where}: columns cannot be "
                                 f"listed (damaged file?): {exc}") from exc

    @property
    def field_names(self) -> tuple[str, ...]:
        return self._fields

    def refresh(self) -> None:
        """See frames appended by a live writer since the last look."""
        if self._group is None:
            return
        try:
            for name in self.field_names:
                self._group[name].refresh()
            if self._index in self._group:
                self._group[self._index].refresh()
        except _DAMAGE_ERRORS as exc:
            raise RecordingError(f"{self._group.file.filename}: {self.where}: cannot be "
                                 f"refreshed (damaged file?): {exc}") from exc

    def __len__(self) -> int:
        # A crash or a concurrent writer can leave columns of unequal length:
        # only rows present in every column are complete.
        try:
            lengths = [self._group[n].shape[0] for n in self.field_names]
        except _DAMAGE_ERRORS as exc:
            raise self._failed("columns cannot be listed", exc) from exc
        return min(lengths) if lengths else 0

    def _failed(self, what: str, exc: BaseException) -> RecordingError:
        """The error for a read that failed: the file closed, or damaged."""
        if self._group is not None and not self._group.id.valid:
            # (h5py's "Not an id of a file object" had come out as it was)
            return RecordingError(f"{self.where}: the recording is closed (read it before "
                                  "Recording.close(), or inside its with block)")
        return RecordingError(f"{self._group.file.filename}: {self.where}: {what} "
                              f"(damaged file?): {exc}")

    def read(self, start: int = 0, stop: int | None = None,
             fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Read complete rows ``start:stop`` of the named fields (all by default).

        Negative ``start``/``stop`` count back from the last complete row (a
        live writer's columns may momentarily differ in length).
        """
        name = "(lengths)"
        for what, v in (("start", start), ("stop", stop)):
            if v is not None and not isinstance(v, int | np.integer):
                raise SchemaError(f"{self.where}: {what} must be a row number, got {v!r}")
        if isinstance(fields, str):  # (not its letters)
            fields = (fields,)
        try:
            n = len(self)
            start, stop, _ = slice(start, stop).indices(n)
            names = tuple(fields) if fields is not None else self.field_names
            out = {}
            for name in names:
                if self._group is None or name not in self._group:
                    fill = self._absent_position(name)
                    if fill is None:
                        raise SchemaError(f"{self.where}: no field {name!r}")
                    out[name] = np.full(stop - start if stop > start else 0, fill)
                    continue
                out[name] = self._group[name][start:stop]
        except _DAMAGE_ERRORS as exc:
            raise self._failed(f"field {name!r} cannot be read", exc) from exc
        return out

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(fields=[name])[name]

    def _absent_position(self, name: str) -> float | None:
        """What a stream's missing ``y`` (0: a profile line along x) or ``z``
        (NaN: unknown) reads as, in a file made by another tool; None for any
        other missing field, or when ``x`` is missing too."""
        if self._index != "time" or self._group is None or "x" not in self._group:
            return None
        return {"y": 0.0, "z": math.nan}.get(name)


#: Units that files made by other tools give (a ``units`` attribute, a
#: readings table's column name), by the unit demine stores, with their factor
#: to it.  Used for gate and sample scales, table columns and imported tables.
UNIT_SCALES: dict[str, dict[str, float]] = {
    "s": {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6,
          "usec": 1e-6, "µs": 1e-6, "µsec": 1e-6, "ns": 1e-9, "nsec": 1e-9, "min": 60.0,
          "h": 3600.0},
    "m": {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "cm": 1e-2,
          "mm": 1e-3, "km": 1e3, "ft": 0.3048},
    "kg": {"kg": 1.0, "g": 1e-3, "mg": 1e-6},
}


def _flag(value: Any, where: str) -> bool | None:
    """A yes/no attribute as written by h5py users: bool, 0/1, or text
    ("true"/"false", "yes"/"no", "1"/"0"); None when absent."""
    if isinstance(value, np.ndarray) and value.size == 1:  # (MATLAB's h5writeatt: [1])
        value = value.reshape(-1)[0]
    value = _decode(value)
    if value is None:
        return None
    if isinstance(value, bool | np.bool_ | int | np.integer | float | np.floating) \
            and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in ("true", "yes", "1", "t", "y"):
        return True
    if word in ("false", "no", "0", "f", "n", ""):
        return False
    raise SchemaError(f"{where} must be true or false, got {value!r}")


class _Streams(dict):
    """A recording's streams by name; an unknown name's KeyError lists them."""

    where = ""

    def __missing__(self, name: str) -> Any:
        raise KeyError(f"{self.where}: no stream {name!r} (streams: "
                       f"{', '.join(self) or 'none'})")


#: Stream attributes and calibration fields that are numbers wherever they are used.
_NUMERIC_ATTRS = ("sample_rate", "sample_interval", "footprint_width", "footprint")
_NUMERIC_CALIB = ("coil_radius", "rate", "pulse_length", "sample_rate", "time_zero")


class StreamReader(_ColumnGroup):
    """One sensor stream of a :class:`Recording`; fields are NumPy arrays."""

    def __init__(self, group: h5py.Group, name: str) -> None:
        super().__init__(group, f"stream {name!r}", "time")
        self.name = name
        self.attrs = {k: _decode(v) for k, v in group.attrs.items()}
        try:
            self.calibration = json.loads(self.attrs.get("calibration", "{}"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{self.where}: calibration attribute is not JSON: {exc}") from exc
        if not isinstance(self.calibration, dict):
            raise SchemaError(f"{self.where}: calibration attribute is JSON "
                              f"{type(self.calibration).__name__}, not an object of fields")
        # numbers other tools wrote as text ("12 cm", "1 kHz") had raised a bare
        # ValueError wherever they were used
        for where, table, keys in (("attribute", self.attrs, _NUMERIC_ATTRS),
                                   ("calibration field", self.calibration, _NUMERIC_CALIB)):
            for key in keys:
                v = table.get(key)
                if v is not None and not (isinstance(v, int | float | np.integer | np.floating)
                                          and not isinstance(v, bool)):
                    raise SchemaError(f"{self.where}: {where} {key!r} is {v!r}, not a number "
                                      "(in SI units: m, s, Hz)")
        self.kind: str = self.attrs.get("kind", "")
        if self.kind not in STREAM_KINDS:
            raise SchemaError(f"{self.where}: kind {self.kind!r} is not one of {STREAM_KINDS}")
        if "time" not in group:
            raise SchemaError(f"{self.where}: has no 'time' dataset")
        self._gate_times = None
        if "gate" in group:
            known = _flag(self.attrs.get("gate_times_known"),
                          f"{group.file.filename}: {self.where}: 'gate_times_known'")
            unit = str(_decode(group["gate"].attrs.get("units", "")) or "").strip()
            if known is None:
                # a file written by another tool may leave the flag out: the
                # dimension scale's unit says whether it holds times
                known = unit in UNIT_SCALES["s"]
            if known:
                scale = UNIT_SCALES["s"].get(unit or "s")
                if scale is None:
                    raise SchemaError(f"{group.file.filename}: {self.where}: 'gate' holds gate "
                                      f"times in units {unit!r}, which demine does not know "
                                      f"(one of {', '.join(UNIT_SCALES['s'])})")
                self._gate_times = group["gate"][()] * scale
        shape = group["samples"].shape if "samples" in self._fields else None
        if shape is not None and len(shape) != 2:
            raise SchemaError(f"{group.file.filename}: {self.where}: 'samples' has shape "
                              f"{shape}, not (frames, channels)")
        if shape is not None and shape[1] == 0:
            raise SchemaError(f"{group.file.filename}: {self.where}: 'samples' has no "
                              "channels")
        if shape is not None and group["samples"].dtype.kind not in "biuf":
            # (complex or text samples had raised a bare ValueError in the first stage)
            raise SchemaError(f"{group.file.filename}: {self.where}: 'samples' holds "
                              f"{group['samples'].dtype}, not real numbers")
        self.n_channels: int | None = None if shape is None else int(shape[1])
        tdt = group["time"].dtype
        if tdt.kind not in "iu":
            raise SchemaError(f"{group.file.filename}: {self.where}: 'time' is {tdt}, not "
                              "integer nanoseconds since 1970-01-01 UTC (int64)")
        for dim in ("gate", "sample"):
            if dim in group and self.n_channels is not None \
                    and group[dim].shape != (self.n_channels,):
                raise SchemaError(f"{group.file.filename}: {self.where}: '{dim}' has shape "
                                  f"{group[dim].shape}, not one value for each of the "
                                  f"{self.n_channels} channels of 'samples'")

    @property
    def n_frames(self) -> int:
        return len(self)

    @property
    def samples(self) -> np.ndarray:
        return self["samples"]

    @property
    def time(self) -> np.ndarray:
        return self["time"]

    @property
    def sequence(self) -> np.ndarray:
        return self["sequence"]

    @property
    def x(self) -> np.ndarray:
        return self["x"]

    @property
    def y(self) -> np.ndarray:
        return self["y"]

    @property
    def z(self) -> np.ndarray:
        return self["z"]

    @property
    def z_datum(self) -> str:
        """What the stream's ``z`` is measured from (:data:`Z_DATUMS`): its
        ``z_datum`` attribute, else ``"ground"`` (the format's default), except
        for a stream ``demine record`` wrote before it said so (one with a
        ``host_time`` column in a file with a local frame), whose ``z`` is the
        GPS altitude less ``origin_alt``: ``"frame"``.  Any other value is
        returned as it is (and :meth:`heights` knows no height from it)."""
        datum = self.attrs.get("z_datum")
        if datum is not None:
            return str(datum)
        if "host_time" in self._fields and self._group is not None \
                and "origin_lon" in self._group.file.attrs:
            return "frame"
        return "ground"

    def heights(self, z: np.ndarray | None = None) -> np.ndarray:
        """The sensor's height above the ground per frame, m (NaN: unknown).

        ``z`` when the stream's :attr:`z_datum` is ``"ground"``; NaN
        everywhere otherwise (an altitude says nothing of the height over the
        ground beneath without a ground model).  ``z``, when given, is the
        stream's ``z`` already read (or a part of it).

        A ``z`` that cannot be a height although the stream says it is (the
        median of its values outside :data:`PLAUSIBLE_HEIGHT`: an altitude
        or an elevation another tool wrote without a ``z_datum``) is unknown
        too, with a warning naming the stream: taken as heights, it had
        dropped every reading from the searched area as a lift and put the
        dipole fit's coil hundreds of metres up.
        """
        z = np.asarray(self["z"] if z is None else z, dtype=np.float64)
        if self.z_datum != "ground":
            return np.full(z.shape, np.nan)
        ok = z[np.isfinite(z)]
        if ok.size:
            med = float(np.median(ok))
            lo, hi = PLAUSIBLE_HEIGHT
            if not lo <= med <= hi:
                warnings.warn(f"stream {self.name!r}: its z (median {med:.3g} m) is no height "
                              f"above the ground ({lo:g} to {hi:g} m): taken as unknown; if "
                              "it is an altitude, set the stream's z_datum attribute to "
                              "'frame'", stacklevel=2)
                return np.full(z.shape, np.nan)
        return z

    @property
    def gate_times(self) -> np.ndarray | None:
        """EMI gate times in seconds, or None when the stream did not declare them."""
        return None if self._gate_times is None else self._gate_times.copy()

    @property
    def sample_interval(self) -> float | None:
        """GPR sample interval (s): the attribute, else the step of the
        ``sample`` time scale when it is in a unit of time (a file made by
        another tool may give only the scale); None when neither does."""
        value = self.attrs.get("sample_interval")
        if value is not None:
            return float(value)
        if self._group is None or "sample" not in self._group:
            return None
        scale = self._group["sample"]
        unit = UNIT_SCALES["s"].get(str(_decode(scale.attrs.get("units", "")) or "").strip())
        t = np.asarray(scale[()], dtype=np.float64)
        if unit is None or t.size < 2:
            return None
        step = np.diff(t)
        if not (np.all(step > 0) and np.allclose(step, step[0], rtol=1e-6)):
            return None
        return float(step[0]) * unit

    def to_xarray(self):
        """The stream as an :class:`xarray.Dataset` (time decoded to datetime64)."""
        import xarray as xr

        data = self.read()
        coords: dict[str, Any] = {"time": data.pop("time").astype("datetime64[ns]")}
        channel_dim = "gate" if self.kind == "emi" else "sample"
        variables = {}
        for name, arr in data.items():
            dims = ("time",) if arr.ndim == 1 else ("time", channel_dim)
            variables[name] = (dims, arr, self._column_attrs(name))
        if channel_dim in self._group:
            coords[channel_dim] = (channel_dim, self._group[channel_dim][()],
                                   self._column_attrs(channel_dim))
        attrs = {k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float))}
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    def _column_attrs(self, name: str) -> dict[str, Any]:
        return {k: _decode(v) for k, v in self._group[name].attrs.items()
                if k in ("units", "long_name")}


class TableReader(_ColumnGroup):
    """A table (truth, alarms, markers): ``to_dict()`` gives columns, strings decoded."""

    def __init__(self, group: h5py.Group | None, name: str) -> None:
        super().__init__(group, f"table {name!r}", "index")
        self.name = name

    def to_dict(self) -> dict[str, np.ndarray]:
        cols = self.read()
        schema = {c.name: c.units for c in TABLES[self.name]}
        for name, arr in cols.items():  # (a file made by another tool: cm, g ...)
            want = schema.get(name)
            if want in UNIT_SCALES and self._group is not None:
                unit = str(_decode(self._group[name].attrs.get("units", "")) or "").strip()
                if unit and unit != want:
                    scale = UNIT_SCALES[want].get(unit)
                    if scale is None:
                        raise SchemaError(
                            f"{self._group.file.filename}: {self.where}: column {name!r} is "
                            f"in {unit!r}; demine reads it in {want} (or one of "
                            f"{', '.join(UNIT_SCALES[want])})")
                    cols[name] = np.asarray(arr, dtype=np.float64) * scale
        return _table_columns(cols, self.name)


def _table_columns(columns: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """A table's columns with strings decoded; a table without rows (or
    without the group: a file made by another tool) has every column of the
    schema, empty, so that readers find ``x``, ``y`` ... in it."""
    out = {}
    for col, arr in columns.items():
        if arr.dtype.kind == "S" or (arr.dtype.kind == "O" and any(
                isinstance(v, bytes) for v in arr[:1])):
            arr = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                            for v in arr], dtype=object)
        out[col] = arr
    if all(len(v) == 0 for v in out.values()):
        for c in TABLES[name]:
            out.setdefault(c.name, np.zeros(0, dtype=object if c.dtype.kind == "S"
                                            else c.dtype))
    return out


class _DatasetTable:
    """A table written as one compound dataset (one field per column), as
    pandas or a plain h5py user may write it: read like a group of columns."""

    def __init__(self, dataset: h5py.Dataset, name: str) -> None:
        self._ds = dataset
        self.name = name
        self.where = f"table {name!r}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(n for n in self._ds.dtype.names if n != "index")

    def refresh(self) -> None:
        self._ds.refresh()

    def __len__(self) -> int:
        return int(self._ds.shape[0]) if self._ds.shape else 0

    def read(self, start: int = 0, stop: int | None = None,
             fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        start, stop, _ = slice(start, stop).indices(len(self))
        rows = self._ds[start:stop]
        names = (fields,) if isinstance(fields, str) else (
            tuple(fields) if fields is not None else self.field_names)
        for n in names:
            if n not in self._ds.dtype.names:
                raise SchemaError(f"{self.where}: no field {n!r}")
        return {n: np.asarray(rows[n]) for n in names}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(fields=[name])[name]

    def to_dict(self) -> dict[str, np.ndarray]:
        return _table_columns(self.read(), self.name)


class Recording:
    """Read a demine recording (also one that a writer is still appending to).

    Parameters
    ----------
    path : str or Path
        The recording.
    locking : bool
        Take HDF5's file lock while the file is open (the default).  A reader
        that keeps a recording open for long, following a live recorder,
        should not: its lock makes a writer's later create of the same path
        (a recorder restarted with ``--overwrite``) fail after HDF5 has
        already truncated the file.  Readers need no lock: SWMR orders what
        they see, and a writer that has not started SWMR keeps them out by the
        superblock's "open for writing" mark.  Without a lock, a process that
        has the file open already (as a writer) cannot open it again: HDF5
        refuses a second locking setting (a :class:`RecordingError`).

    Raises
    ------
    RecordingError
        The file does not exist or cannot be opened.
    NotARecordingError
        The file is not HDF5, or is HDF5 without demine's format attribute.
    FormatVersionError
        The recording was written in a newer format version.
    """

    def __init__(self, path: str | os.PathLike, *, locking: bool = True) -> None:
        self.path = Path(path)
        self._file = _open_h5(self.path, bool(locking))
        try:
            self._validate()
            self.attrs = {k: _decode(v) for k, v in self._file.attrs.items()}
            self.streams = _Streams(
                (name, StreamReader(group, name))
                for name, group in self._file["streams"].items())
            self.streams.where = str(self.path)
        except _DAMAGE_ERRORS as exc:
            self._file.close()
            raise RecordingError(f"{self.path}: damaged file: its attributes or streams "
                                 f"cannot be read: {exc}") from exc
        except Exception:
            self._file.close()
            raise

    def _validate(self) -> None:
        fmt = _decode(self._file.attrs.get("format"))
        if fmt != FORMAT_NAME:
            what = "no 'format' attribute" if fmt is None else f"format is {fmt!r}"
            raise NotARecordingError(
                f"{self.path}: HDF5 file but not a demine recording ({what})"
            )
        version = self._file.attrs.get("format_version")
        if version is None:
            raise FormatVersionError(f"{self.path}: no 'format_version' attribute")
        if int(version) > FORMAT_VERSION:
            raise FormatVersionError(
                f"{self.path}: format version {int(version)} is newer than this demine "
                f"{__version__} reads (<= {FORMAT_VERSION}); upgrade demine"
            )
        if "streams" not in self._file:
            raise SchemaError(f"{self.path}: recording has no '/streams' group")
        # a table a writer left out (a file made by another tool) reads as empty

    @property
    def format_version(self) -> int:
        return int(self.attrs["format_version"])

    def table(self, name: str) -> TableReader:
        if name not in TABLES:
            raise SchemaError(f"{self.path}: no table {name!r}; tables are {tuple(TABLES)}")
        try:
            group = self._file[name] if name in self._file else None
        except _DAMAGE_ERRORS as exc:
            raise RecordingError(f"{self.path}: table {name!r} cannot be read "
                                 f"(damaged file?): {exc}") from exc
        if isinstance(group, h5py.Dataset):
            if group.dtype.names and group.ndim == 1:
                return _DatasetTable(group, name)  # type: ignore[return-value]
            raise SchemaError(f"{self.path}: /{name} is a dataset of {group.dtype}, shape "
                              f"{group.shape}: a table is a group of equal-length 1-D "
                              "column datasets (or one 1-D compound dataset, one field per "
                              "column; docs/format.md)")
        return TableReader(group, name)

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Ground-truth targets as a dict of column arrays (strings decoded)."""
        return self.table("truth").to_dict()

    @property
    def truth_given(self) -> bool:
        """Whether the lane's ground truth is known: its table lists targets,
        or it was given with none (a blank lane, attribute ``given`` of
        ``/truth``).  False for a recording without ground truth (a field
        survey), whose alarms cannot be judged."""
        if len(self.table("truth")):
            return True
        g = self._file.get("truth")
        return bool(g is not None and g.attrs.get("given", 0))

    @property
    def alarms(self) -> dict[str, np.ndarray]:
        return self.table("alarms").to_dict()

    @property
    def markers(self) -> dict[str, np.ndarray]:
        return self.table("markers").to_dict()

    def refresh(self) -> None:
        """Pick up frames a live writer appended since opening or the last refresh."""
        for stream in self.streams.values():
            stream.refresh()
        for name in TABLES:
            self.table(name).refresh()

    def derived(self) -> dict[str, h5py.Group]:
        """Derived (processed) datasets by path ``stream/name``."""
        out = {}
        for sname, sgroup in self._file["derived"].items() if "derived" in self._file else ():
            for dname, dgroup in sgroup.items():
                out[f"{sname}/{dname}"] = dgroup
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        """Streams with frame counts, durations, rates and position extents; table sizes."""
        if not self._file.id.valid:
            raise RecordingError(f"{self.path}: the recording is closed")
        try:
            return self._summary()
        except _DAMAGE_ERRORS as exc:
            raise RecordingError(f"{self.path}: damaged file: cannot be summarised: "
                                 f"{exc}") from exc

    def _summary(self) -> dict[str, Any]:
        streams = {}
        for name, s in self.streams.items():
            n = len(s)
            entry: dict[str, Any] = {"kind": s.kind, "driver": s.attrs.get("driver", ""),
                                     "device": s.attrs.get("device", ""), "frames": n}
            if s.attrs.get("time_source"):  # (imported files: where the times came from)
                entry["time_source"] = str(s.attrs["time_source"])
            if s.n_channels is not None:
                entry["channels"] = s.n_channels
                entry["dtype"] = str(s._group["samples"].dtype)
            if n:
                t = s._group["time"][:n]
                duration = (int(t[-1]) - int(t[0])) / 1e9
                entry["start_utc"] = _iso_utc(int(t[0]))
                entry["duration_s"] = duration
                # the device's rate: its stated one, else the median time step (a
                # mean over the span fell to 77 Hz for a 1000/s detector paused
                # for a minute, and record drops frames while paused)
                stated = s.attrs.get("sample_rate")
                if isinstance(stated, int | float | np.integer | np.floating) \
                        and not isinstance(stated, bool) and math.isfinite(stated) \
                        and stated > 0:
                    entry["rate_hz"] = float(stated)
                else:
                    dt = np.diff(t.astype(np.int64))
                    dt = dt[dt > 0]
                    entry["rate_hz"] = 1e9 / float(np.median(dt)) if dt.size else None
                src = entry.get("time_source", "")
                if "trace index in ns" in src:
                    # an imported file without trace timing: its times are trace
                    # numbers (from its start time when it gives one)
                    entry["duration_s"] = entry["rate_hz"] = None
                    if src.startswith("trace index"):
                        entry["start_utc"] = None
                ext = {}
                for axis in ("x", "y", "z", "lon", "lat"):
                    if axis in s.field_names:
                        v = s._group[axis][:n]
                        v = v[np.isfinite(v)]
                        if v.size:
                            ext[axis] = (float(v.min()), float(v.max()))
                entry["extent"] = ext
                if "z" in ext:
                    entry["z_datum"] = s.z_datum
                if "sequence" in s.field_names:
                    # frames the device numbered that never reached the file
                    from .framing import sequence_gaps

                    entry["sequence_gaps"], entry["frames_missing"] = sequence_gaps(
                        s._group["sequence"][:n])
            streams[name] = entry
        return {
            "path": str(self.path),
            "format_version": self.format_version,
            "attrs": {k: v for k, v in self.attrs.items() if k not in ("format",)},
            "streams": streams,
            "tables": {name: len(self.table(name)) for name in TABLES},
            "derived": sorted(self.derived()),
        }


#: Longest stream name, in bytes: the width of the alarms table's ``stream``
#: column, which names the stream that raised each alarm.
MAX_STREAM_NAME = 32


def check_stream_name(name: Any) -> str:
    """Return ``name`` if it can name a stream (letters, digits, ``_`` or ``-``,
    at most :data:`MAX_STREAM_NAME` bytes), else raise :class:`SchemaError`."""
    check_derived_name(name, "stream")
    if len(name.encode("utf-8")) > MAX_STREAM_NAME:
        # (its alarms would have been labelled with a cut name, or refused
        # mid-recording at the first alarm)
        raise SchemaError(f"stream name {name!r} is longer than {MAX_STREAM_NAME} bytes, "
                          "the width of the alarms table's 'stream' column")
    return name


def check_derived_name(name: Any, what: str = "derived") -> str:
    """Return ``name`` if it can name a derived dataset (letters, digits, ``_``
    or ``-``), else raise :class:`SchemaError` saying so (``what`` names the
    kind of group in the message)."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-"
                                                         for c in name):
        raise SchemaError(f"{what} name {name!r} must be letters, digits, '_' or '-'")
    return name


def write_derived(path: str | os.PathLike, stream: str, name: str, data: np.ndarray, *,
                  history: list[Mapping[str, Any]], time: np.ndarray | None = None,
                  channel_dim: str | None = None, channel_values: np.ndarray | None = None,
                  attrs: Mapping[str, Any] | None = None, overwrite: bool = False) -> str:
    """Store processed data of ``stream`` in ``/derived/<stream>/<name>`` with its history.

    The raw stream is never touched.  ``history`` is the list of processing
    steps (each a mapping with at least ``step`` and ``params``) that produced
    ``data`` from the raw samples; it is stored as JSON together with the
    software version and the creation time, the way ObsPy keeps a trace's
    processing record.  ``time`` (int64 ns, one per row of ``data``) defaults
    to the stream's own time axis.

    Returns the HDF5 path of the new group.  The file must not be open by a
    live writer.
    """
    path = Path(path)
    with Recording(path) as rec:
        if stream not in rec.streams:
            raise SchemaError(f"{path}: no stream {stream!r}; streams are {sorted(rec.streams)}")
        if time is None:
            time = rec.streams[stream].time
    data = np.asarray(data)
    if data.ndim not in (1, 2) or data.shape[0] != len(time):
        raise SchemaError(
            f"{path}: derived {stream}/{name} has shape {data.shape}; expected "
            f"{len(time)} rows to match the time axis"
        )
    check_derived_name(name)
    extra = dict(attrs or {})
    _check_attrs(extra, f"derived {stream}/{name}")
    steps = [dict(h) for h in history]
    for i, h in enumerate(steps):
        if "step" not in h:
            raise SchemaError(f"derived {stream}/{name}: history entry {i} has no 'step'")
    history_text = _json_text(steps, f"derived {stream}/{name}: history")
    try:
        f = h5py.File(path, "r+", libver="latest")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open for adding derived data: {exc}") from exc
    with f:
        parent = f.require_group("derived").require_group(stream)
        if name in parent:
            if not overwrite:
                raise RecordingError(f"{path}: derived {stream}/{name} exists")
            del parent[name]
        g = parent.create_group(name)
        try:
            tds = g.create_dataset("time", data=np.asarray(time, dtype="int64"))
            tds.attrs["units"] = TIME_UNITS
            tds.make_scale("time")
            ds = g.create_dataset("data", data=data, chunks=True)
            ds.dims[0].attach_scale(tds)
            if data.ndim == 2:
                dim = channel_dim or "channel"
                values = (np.arange(data.shape[1], dtype="float64") if channel_values is None
                          else np.asarray(channel_values))
                cds = g.create_dataset(dim, data=values)
                cds.make_scale(dim)
                ds.dims[1].attach_scale(cds)
            g.attrs.update({
                "source": f"/streams/{stream}",
                "history": history_text,
                "software_version": __version__,
                "created_utc": _iso_utc(utc_now_ns()),
            })
            for key, value in extra.items():
                g.attrs[key] = value
        except BaseException:
            del parent[name]   # (a half-made group would be listed, and its name taken)
            raise
    return f"/derived/{stream}/{name}"
