"""Metal-detector readings from a text table (CSV, TSV, Geosoft XYZ).

Pulse-induction and time-domain EMI instruments, their processing software
and other simulators export readings as a table: one row per reading, columns
for time, position and one amplitude per time gate (EM61-style ``ch1..ch4``,
``gate_0..gate_15``, ``12us`` ...).  :func:`read_emi_table` reads such a file
into an :class:`EMITable`; ``demine import FILE.csv`` writes it as a
recording's EMI stream (:func:`demine.io.convert.import_emi_table`).

The layout it reads
-------------------
* Text in UTF-8 (with or without a byte-order mark), UTF-16 with its mark
  (Excel's "Unicode text"), else Windows-1252 (said in the header).
* Lines starting with ``#`` or ``/`` are comments; a Geosoft XYZ file's
  column names are its last ``/`` comment line with as many fields as the
  data (``//`` keyword lines and empty comments are not names), and its
  ``Line``/``Tie`` lines divide the readings into survey lines (the header's
  ``line_readings``; the imported stream's ``survey_lines``).  ``*`` (Geosoft's
  dummy), ``NaN`` and empty fields are missing values.
* The header row (the first non-comment line, unless a comment line of the
  data's width names the columns) names them; the delimiter is the one of
  tab, semicolon, comma and white space that splits the header and the first
  row alike; a delimiter ending some rows only (or only the header line) is
  an empty last field.  Quoted fields may hold a tab, semicolon or comma
  delimiter.  With semicolons, a decimal comma is a decimal point.  Names
  are matched without case; a unit in brackets (``x [cm]``, ``time (ms)``)
  scales positions (m, cm, mm, km, ft) and times (s, ms, us, ns, min, h), a
  label (``time (UTC)``) is ignored, and any other is refused.  Numbered
  gates are taken in the order of their numbers.
* **Time** (``time``, ``t``, ``timestamp``, ``seconds``, ...): ISO 8601
  (UTC), a time of day ``hh:mm:ss[.s]`` (with a ``date`` column
  ``YYYY-MM-DD`` or ``YYYY/MM/DD``, taken as UTC), or a number: epoch
  seconds, milliseconds, microseconds or nanoseconds (by magnitude: from
  1973 to 2100), else seconds from the file's start.  Without a time column,
  give the reading rate.
* **Position** (m, local frame), by name in order of preference:
  ``x``/``easting``/``east``/``e``, ``y``/``northing``/``north``/``n`` (none:
  a line along x at y = 0) and ``z``/``height``/``sensor_height`` (none:
  unknown; a GNSS altitude is not a height above the ground and is not
  taken).  ``x`` is required.
* **Gates**: every column named ``gate``, ``g``, ``ch``, ``channel`` or
  ``tg`` followed by a number (``ch1``, ``gate_03``), or by a time with its
  unit, or a time alone (``12us``, ``0.216ms``, ``g_1.2e-05s``,
  ``gate 1 [12 us]``, ``t=12e-6``).  Gate times in the names are used (all
  gates must have one), else those given, else the stream records gate
  indices and detection asks for a calibration.
* Every other column is kept by name in the stream's ``vendor_header``, not
  as data.
"""

from __future__ import annotations

import codecs
import csv
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from ..recording import UNIT_SCALES
from ._common import MAX_TEXT_BYTES, fail, file_size

__all__ = ["EMI_TABLE_SUFFIXES", "EMITable", "read_emi_table"]

#: File name endings read as EMI tables by ``demine import``.
EMI_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xyz", ".dat", ".asc")

#: Column names of each role, in order of preference (a table with both
#: ``y`` and ``n`` takes ``y``).
_ROLES = {
    "time": ("time", "timestamp", "utc_time", "time_s", "seconds", "epoch", "t"),
    "x": ("x", "x_local", "x_m", "easting", "east", "e"),
    "y": ("y", "y_local", "y_m", "northing", "north", "n"),
    "z": ("z", "height", "sensor_height", "z_m", "sensor_z"),
}
_TIME_RE = re.compile(r"^[\s_@(\[-]*(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)\s*"
                      r"(sec|msec|usec|µsec|nsec|s|ms|us|µs|ns)[)\]]?$")
_BARE_SECONDS = re.compile(r"^t\s*[=_]\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)$")
_GATE_PREFIX = re.compile(r"^(?:channel|gate|ch|tg|g)[\s_-]*(.*)$")
_INDEX_THEN = re.compile(r"^(\d+)[\s_@-]*(.*)$")
_UNIT_IN_NAME = re.compile(r"\s*[\[(]([^\])]*)[\])]\s*$")
_F32_MAX = float(np.finfo(np.float32).max)
#: Years a time in int64 nanoseconds can hold (1500 had wrapped round to 2084).
_YEARS = (1678, 2261)
#: Longest column name taken: the unit search is quadratic in a name's length (a
#: header cell of 80 000 "(" took 88 s).
_MAX_NAME = 256
#: Labels in a time column's brackets that say what it is, not a unit.
_TIME_LABELS = ("utc", "gmt", "iso", "iso 8601", "epoch", "unix", "hh:mm:ss", "hh:mm:ss.s",
                "hh:mm:ss.ss")
#: Epoch time units by magnitude (a first value from 1973 to 2100).
_EPOCH = ((1e8, 4.2e9, 1.0, "seconds"), (1e11, 4.2e12, 1e-3, "milliseconds"),
          (1e14, 4.2e15, 1e-6, "microseconds"), (1e17, 4.2e18, 1e-9, "nanoseconds"))
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d\d):(\d\d(?:\.\d*)?)$")
_DATE = re.compile(r"^(\d{4})[-/](\d\d)[-/](\d\d)$")
_ISO = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d*)?)?([+-]\d\d(:?\d\d)?)?$")


@dataclass
class EMITable:
    """Readings of a metal detector read from a text table.

    Attributes
    ----------
    path : str
    samples : ndarray of float32, (n, gates)
    time_ns : ndarray of int64
        Time of each reading, ns since 1970 (from the file's start at 1970 when
        the file gives seconds from its start, or no time: ``time_source``).
    time_source : str
    x, y, z : ndarray of float64
    gate_times : ndarray or None
        Gate centre times (s), or None when neither the file nor the caller
        gives them.
    gate_columns : list of str
    header : dict
        Column roles, the delimiter, the comment lines, the columns not read
        and the survey lines (Geosoft ``Line``), JSON-serialisable.
    """

    path: str
    samples: np.ndarray
    time_ns: np.ndarray
    time_source: str
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    gate_times: np.ndarray | None
    gate_columns: list[str]
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def n_readings(self) -> int:
        return int(self.samples.shape[0])


def _unit(name: str) -> tuple[str, str | None]:
    """(name without a bracketed unit, the unit in lower case or None)."""
    m = _UNIT_IN_NAME.search(name)
    if not m:
        return name.strip(), None
    return name[: m.start()].strip(), m[1].strip().lower().replace("μ", "µ")


def _bare(name: str) -> str:
    return _unit(name)[0].lower()


def _gate_time(name: str) -> tuple[bool, float | None]:
    """(is a gate column, its time in s or None) from a column name: ``ch1``,
    ``gate_03``, ``12us``, ``g_1.2e-05s``, ``ch1_0.216ms``, ``gate 3 (45 us)``,
    ``gate 1 [0.012 ms]``, ``12usec``, ``t=12e-6``."""
    b = name.strip().lower().replace("μ", "µ")
    u = _UNIT_IN_NAME.search(b)
    if u and not _TIME_RE.match(u.group()):   # (a unit of the readings: "ch2 [mV]")
        b = b[: u.start()]

    def time(m: re.Match[str]) -> float:   # (exact in decimal: 45 us is 4.5e-05)
        try:
            v = float(Decimal(m[1]) * Decimal(repr(UNIT_SCALES["s"][m[2]])))
        except ArithmeticError:
            return math.nan
        return v

    t = _TIME_RE.match(b)
    if t:
        return True, time(t)
    t = _BARE_SECONDS.match(b)
    if t:
        return True, float(t[1])
    m = _GATE_PREFIX.match(b)
    if not m or not m[1]:
        return False, None
    rest = m[1]
    t = _TIME_RE.match(rest)
    if t:
        return True, time(t)
    if rest.isdigit():
        return True, None
    k = _INDEX_THEN.match(rest)
    if k and (t := _TIME_RE.match(k[2])):
        return True, time(t)
    return False, None


def _number(text: str) -> float:
    if text in ("", "*", "nan", "NaN", "NA", "-", "N/A"):
        return math.nan
    return float(text)


def _numeric(text: str) -> bool:
    try:
        _number(text)
    except ValueError:
        return False
    return True


class _Splitter:
    """Fields of a line: csv's reading (quotes may hold the delimiter) for a
    delimiter, white space otherwise; a decimal comma made a point after a
    semicolon split."""

    def __init__(self, delim: str | None) -> None:
        self.delim = delim

    def __call__(self, line: str) -> list[str]:
        if self.delim is None:
            fields = line.split()
        else:
            try:
                fields = next(csv.reader([line], delimiter=self.delim), [])
            except csv.Error:   # (a field over csv's limit: split plainly, judged later)
                fields = line.split(self.delim)
            if fields and fields[-1] == "" and line.rstrip().endswith(self.delim):
                pass   # (kept: a trailing delimiter is an empty last field)
        out = [v.strip().strip('"') for v in fields]
        if self.delim == ";":
            out = [v.replace(",", ".") for v in out]
        return out


def _decode(p: str, raw: bytes) -> tuple[str, str]:
    """The text of a table and the encoding it was read in."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError as exc:
            raise fail(p, "text", f"not UTF-16 text after its byte-order mark (byte "
                       f"{exc.start})") from None
    if b"\0" in raw[:65536]:
        raise fail(p, "text", "binary data (NUL bytes), not a text table")
    try:
        return raw.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:   # (a Windows program's export: µ is byte 0xB5)
        return raw.decode("cp1252"), "Windows-1252 (not UTF-8)"
    except UnicodeDecodeError as exc:
        raise fail(p, "text", f"not a text table (byte {exc.start} is neither UTF-8 nor "
                   "Windows-1252)") from None


def _choose_delimiter(first: str, second: str | None) -> str | None:
    """Tab, semicolon, comma or white space: the first that splits ``first``
    and ``second`` into as many fields, more than one."""
    for d in ("\t", ";", ",", None):
        a = len(_Splitter(d)(first))
        if a > 1 and (second is None or len(_Splitter(d)(second)) == a):
            return d
    for d in ("\t", ";", ","):   # (rows of another width: said, naming the line, later)
        if len(_Splitter(d)(first)) > 1:
            return d
    return None


def _epoch_ns(t: np.ndarray) -> tuple[np.ndarray, str] | None:
    """ns of epoch times by magnitude of the first (None: not an epoch time)."""
    for lo, hi, scale, unit in _EPOCH:
        if lo <= abs(t[0]) < hi:
            if np.nanmax(np.abs(t)) >= hi:
                return None
            # (the first time exactly, the others from it: ns of epoch µs
            # exceed float64's integers)
            base = int(Decimal(repr(float(t[0]))) * Decimal(repr(scale)) * 10**9)
            rel = np.round((t - t[0]) * (scale * 1e9)).astype(np.int64)
            return base + rel, unit
    return None


def read_emi_table(path: str | os.PathLike[str], *, gate_times: Any = None,
                   rate: float | None = None, allow_partial: bool = False) -> EMITable:
    """Read a metal detector's readings from a CSV, TSV or Geosoft XYZ table.

    Parameters
    ----------
    path : str or path
    gate_times : sequence of float, optional
        Gate centre times (s), one per gate column, when the column names do
        not give them (names that do must agree).
    rate : float, optional
        Readings per second, for a table without a time column (refused with
        one: the times say it).
    allow_partial : bool
        Drop a last line cut short (a logger stopped while writing it, no line
        end) instead of refusing the file; the header says so.

    Returns
    -------
    EMITable

    Raises
    ------
    VendorFormatError
        Naming the file, line and column of what cannot be read.
    """
    p = os.fspath(path)
    if file_size(p) > 64 * MAX_TEXT_BYTES:
        raise fail(p, "size", f"larger than {64 * MAX_TEXT_BYTES} bytes: not a readings table")
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise fail(p, "file", str(exc.strerror or exc)) from None
    text, encoding = _decode(p, raw)
    del raw
    ends_in_newline = text.endswith(("\n", "\r"))
    comments: list[str] = []
    name_lines: list[str] = []   # comment lines that may name the columns
    lines_seen: list[str] = []
    line_at: list[int] = []   # file line of each Line/Tie marker
    body: list[tuple[int, str]] = []
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith(("#", "/")):
            c = line.lstrip("#/").strip()
            comments.append(c)
            if c and not line.startswith("//"):
                name_lines.append(c)
            continue
        if line[0].isalpha() and line.split()[0].lower() in ("line", "tie") \
                and len(line.split()) <= 3:
            lines_seen.append(line)
            line_at.append(lineno)
            continue
        body.append((lineno, line))
    del text
    if not body:
        raise fail(p, "data", "no readings (a header row naming the columns, then one row "
                   "per reading)")
    delim = _choose_delimiter(body[0][1], body[1][1] if len(body) > 1 else None)
    split = _Splitter(delim)
    first = split(body[0][1])
    # the column names: a comment line of the data's width (Geosoft), else the
    # first line when it is not a row of data
    named = [c for c in name_lines if len(split(c)) == len(first)
             or len(_Splitter(None)(c)) == len(first)]
    n_numeric = sum(_numeric(v) for v in first)
    if named and (n_numeric == len(first) or n_numeric * 2 >= len(first)):
        c = named[-1]
        names = split(c) if len(split(c)) == len(first) else _Splitter(None)(c)
        rows = body
    elif n_numeric == len(first):
        raise fail(p, "header", f"line {body[0][0]}: numbers with no column names before "
                   "them (a header row, or a '/' comment line naming the columns)")
    else:
        names = first
        rows = body[1:]
    long = [n for n in names if len(n) > _MAX_NAME]
    if long:
        raise fail(p, "header", f"a column name of {len(long[0])} characters (at most "
                   f"{_MAX_NAME}): {long[0][:40]!r}...")
    if delim == ";":   # (decimal commas in gate names: "0,012 ms")
        names = [n.replace(",", ".") for n in names]
    if not rows:
        raise fail(p, "data", "no readings after the header")
    partial = None
    if allow_partial and not ends_in_newline:   # (cut anywhere, even inside its last field)
        partial = rows[-1][0]
        rows = rows[:-1]
        if not rows:
            raise fail(p, "data", "no whole reading")
    bare = [_bare(n) for n in names]
    twice = sorted({b for b in bare if b and bare.count(b) > 1})
    if twice:
        raise fail(p, "header", f"column {twice[0]!r} named more than once")
    roles: dict[str, int] = {}
    for role, words in _ROLES.items():
        for w in words:   # (in order of preference)
            hits = [i for i, b in enumerate(bare) if b == w and i not in roles.values()]
            if hits:
                roles[role] = hits[0]
                break
    date_col = next((i for i, b in enumerate(bare) if b == "date"), None)
    gates: list[int] = []
    named_times: list[float | None] = []
    for i, n in enumerate(names):
        if i in roles.values():
            continue
        is_gate, t = _gate_time(n)
        if is_gate:
            gates.append(i)
            named_times.append(t)
    if not gates:
        raise fail(p, "header", f"no gate columns among {names} (name them gate_1, ch1, "
                   "12us ...)")
    if all(t is None for t in named_times):
        # (gates numbered, not timed: in the order of their numbers, as an
        # alphabetical export lists gate_1, gate_10, gate_2)
        idx = [int(m[1]) if (m := re.search(r"(\d{1,18})\D*$", _bare(names[i]))) else -1
               for i in gates]
        if min(idx) >= 0 and len(set(idx)) == len(idx):
            order = np.argsort(idx, kind="stable")
            gates = [gates[k] for k in order]
    if "x" not in roles:
        raise fail(p, "header", f"no position column among {names} (x or easting, in m)")
    scales: dict[str, float] = {}
    for role in ("x", "y", "z", "time"):
        if role not in roles:
            continue
        unit = _unit(names[roles[role]])[1]
        table = UNIT_SCALES["s" if role == "time" else "m"]
        if unit is not None and not (role == "time" and unit in _TIME_LABELS):
            if unit not in table:
                raise fail(p, "header", f"column {names[roles[role]]!r}: unit {unit!r} is not "
                           f"one demine reads ({', '.join(table)})")
            scales[role] = table[unit]
    # the time column, when it holds text (ISO 8601, hh:mm:ss)
    time_text = None
    if "time" in roles:
        v = split(rows[0][1])
        tv = v[roles["time"]] if roles["time"] < len(v) else ""
        if not _numeric(tv):
            time_text = tv
    wanted = sorted((set(gates) | set(roles.values()))
                    - ({roles["time"]} if time_text is not None else set()))
    fast = None
    if not any("*" in ln for _, ln in rows) and (delim != ";" or not any(
            "," in ln for _, ln in rows)):
        try:  # (numpy's C parser: a 2-million-reading table in seconds, not minutes)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                fast = np.loadtxt((ln for _, ln in rows), delimiter=delim, usecols=wanted,
                                  ndmin=2, dtype=np.float64, quotechar='"', comments=None)
        except (ValueError, UserWarning, TypeError):
            fast = None   # (the line by line reading below says what is wrong)
    if fast is not None and fast.shape == (len(rows), len(wanted)) and (
            not any('"' in ln for _, ln in rows) and (
                {ln.count(delim) for _, ln in rows} == {len(names) - 1} if delim
                else {len(ln.split()) for _, ln in rows} == {len(names)})):
        data = fast
        slow: list[tuple[int, str]] = []
    else:
        fast = None
        data = np.full((len(rows), len(wanted)), np.nan)
        slow = rows
    col = {c: j for j, c in enumerate(wanted)}
    texts: list[str] = []
    for k, (lineno, line) in enumerate(slow):
        fields = split(line)
        if len(fields) == len(names) + 1 and fields[-1] == "" and delim:
            fields.pop()   # (a trailing delimiter on some rows only: an empty last field)
        elif len(fields) == len(names) - 1 and names[-1] == "" and delim:
            fields.append("")   # (one on the header's line, not on this row's)
        if len(fields) != len(names):
            raise fail(p, "data", f"line {lineno}: {len(fields)} fields, the header names "
                       f"{len(names)}" + (" (the last line cut short? --allow-partial "
                                         "drops it)" if k == len(slow) - 1 else ""))
        for i, j in col.items():
            try:
                data[k, j] = _number(fields[i])
            except ValueError:
                raise fail(p, "data", f"line {lineno}, column {names[i]!r}: not a "
                           f"number: {fields[i]!r}") from None
    # a value beyond float32 (1e39, 1e400, inf) had become an infinite reading or
    # position, with only numpy's overflow warning
    big = ~(np.abs(data) <= _F32_MAX) & ~np.isnan(data)
    if big.any():
        k, j = (int(v[0]) for v in np.nonzero(big))
        name = names[wanted[j]]
        raise fail(p, "data", f"line {rows[k][0]}, column {name!r}: {data[k, j]:g} is out of "
                   f"range (a recording holds readings up to {_F32_MAX:.3g})")
    if time_text is not None or date_col is not None:
        texts = [split(ln) for _, ln in rows]
    # gate times: from the names, or given
    known = [t for t in named_times if t is not None]
    gt: np.ndarray | None = None
    if known and len(known) != len(gates):
        raise fail(p, "header", "some gate columns give their time and others do not: "
                   f"{[names[i] for i in gates]}")
    if known:
        gt = np.asarray(known, dtype=np.float64)
    if gate_times is not None:
        try:
            given = np.asarray(gate_times, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fail(p, "gate_times", f"gate times must be numbers (s), got "
                       f"{gate_times!r}") from None
        if given.size != len(gates):
            raise fail(p, "gate_times", f"{given.size} gate times given for {len(gates)} gate "
                       f"columns {[names[i] for i in gates]}")
        if gt is not None and not np.allclose(gt, given, rtol=1e-6):
            raise fail(p, "gate_times", f"the gate times given differ from the columns' "
                       f"names ({gt.tolist()})")
        gt = given
    if gt is not None:
        if not (np.all(np.isfinite(gt)) and np.all(gt > 0) and np.all(np.diff(gt) > 0)):
            raise fail(p, "gate_times", f"gate times must be seconds > 0 in increasing order, "
                       f"got {gt.tolist()}")
        if gt.max() > 1.0:
            raise fail(p, "gate_times", f"gate times up to {gt.max():g} s: give them in "
                       "seconds (12e-6 for 12 us)")
    # time
    n = len(rows)
    offset = None
    if "time" in roles and rate is not None:
        raise fail(p, "rate", f"the table has a time column ({names[roles['time']]!r}): "
                   "the reading rate comes from it")
    if time_text is not None:
        time_ns, source = _text_times(p, rows, texts, roles["time"], date_col, names)
    elif "time" in roles:
        t = data[:, col[roles["time"]]]
        if not np.all(np.isfinite(t)):
            bad = int(np.flatnonzero(~np.isfinite(t))[0])
            raise fail(p, "time", f"line {rows[bad][0]}: no time")
        tname = names[roles["time"]]
        sc = scales.get("time", 1.0)
        epoch = _epoch_ns(t * sc) if sc != 1.0 else _epoch_ns(t)
        if epoch is not None:
            time_ns, unit = epoch
            source = f"column {tname!r}, epoch {unit}"
        elif abs(t[0] * sc) >= _EPOCH[0][0]:
            raise fail(p, "time", f"column {tname!r}: {float(t[0])!r} is not a time demine reads "
                       "(epoch seconds, ms, us or ns from 1973 to 2100, or seconds from the "
                       "file's start)")
        else:
            offset = float(t[0] * sc)
            time_ns = np.round((t - t[0]) * (sc * 1e9)).astype(np.int64)
            source = (f"column {tname!r}, seconds from the file's start (the file gives no "
                      f"date: from 1970-01-01; the first reading at {offset:.9g} s)")
        bad = np.flatnonzero(np.diff(time_ns) <= 0)
        if bad.size:
            k = int(bad[0]) + 1
            raise fail(p, "time", f"line {rows[k][0]}: time {float(t[k])!r} does not follow "
                       f"{float(t[k - 1])!r} on the line before (times must increase)")
    else:
        if rate is None:
            raise fail(p, "time", f"no time column among {names}: give the reading rate "
                       "(demine import --rate HZ)")
        if not (math.isfinite(rate) and 1e-3 <= rate <= 1e7):
            raise fail(p, "rate", f"readings per second must be from 0.001 to 1e7, got {rate}")
        time_ns = np.round(np.arange(n) * (1e9 / rate)).astype(np.int64)
        source = f"reading index at {rate:g} readings/s (the file gives no time; from 1970-01-01)"

    def position(role: str, default: float) -> np.ndarray:
        if role not in roles:
            return np.full(n, default)
        return data[:, col[roles[role]]] * scales.get(role, 1.0)

    used = set(gates) | set(roles.values()) | (
        {date_col} if date_col is not None and "time of day" in source else set())
    header = {
        "format": "emi-table", "encoding": encoding, "delimiter": {
            "\t": "tab", ";": "semicolon", ",": "comma", None: "white space"}[delim],
        "columns": {r: names[i] for r, i in roles.items()},
        "unit_scales": scales,
        "gate_columns": [names[i] for i in gates],
        "gate_times_source": ("column names" if known else "given" if gate_times is not None
                              else "unknown"),
        "ignored_columns": [nm for i, nm in enumerate(names) if i not in used],
        "comments": comments[:50], "survey_lines": lines_seen[:1000],
    }
    if line_at:
        # the readings of each survey line (those before the first marker, if
        # any, are a line of their own), for the stream's survey_lines
        seg = np.searchsorted(np.asarray(line_at), [ln for ln, _ in rows])
        counts = np.bincount(seg, minlength=len(line_at) + 1)
        labels = ["(before the first line)", *lines_seen]
        header["line_readings"] = [{"line": labels[k], "traces": int(c)}
                                   for k, c in enumerate(counts) if c]
    if offset is not None:
        header["time_offset_s"] = offset
    if partial is not None:
        header["dropped_partial_line"] = partial
    return EMITable(path=p, samples=data[:, [col[i] for i in gates]].astype(np.float32),
                    time_ns=time_ns, time_source=source, x=position("x", math.nan),
                    y=position("y", 0.0), z=position("z", math.nan), gate_times=gt,
                    gate_columns=[names[i] for i in gates], header=header)


def _text_times(p: str, rows: list[tuple[int, str]], texts: list[list[str]], tcol: int,
                date_col: int | None, names: list[str]) -> tuple[np.ndarray, str]:
    """ns since 1970 of a time column of text: ISO 8601 (UTC) or a time of day
    ``hh:mm:ss[.s]`` (with a ``date`` column, taken as UTC)."""
    out = np.empty(len(rows), dtype=np.int64)
    zones = set()
    tod = _TIME_OF_DAY.match(texts[0][tcol]) is not None
    day0 = None
    for k, ((lineno, _), f) in enumerate(zip(rows, texts, strict=True)):
        v = f[tcol]
        if tod:
            m = _TIME_OF_DAY.match(v)
            if not m:
                raise fail(p, "time", f"line {lineno}, column {names[tcol]!r}: not a time "
                           f"of day hh:mm:ss: {v!r}")
            h, mi, sec = int(m[1]), int(m[2]), float(m[3])
            if h > 23 or mi > 59 or sec >= 61:
                raise fail(p, "time", f"line {lineno}, column {names[tcol]!r}: not a time of "
                           f"day: {v!r}")
            ns = round((h * 3600 + mi * 60 + sec) * 1e9)
            if date_col is not None:
                d = _DATE.match(f[date_col])
                if not d:
                    raise fail(p, "time", f"line {lineno}, column {names[date_col]!r}: not "
                               f"a date YYYY-MM-DD or YYYY/MM/DD: {f[date_col]!r}")
                try:
                    day = int(np.datetime64(f"{d[1]}-{d[2]}-{d[3]}", "D").astype(np.int64))
                except ValueError:
                    day = None
                if day is None or not _YEARS[0] <= int(d[1]) <= _YEARS[1]:
                    raise fail(p, "time", f"line {lineno}, column {names[date_col]!r}: not "
                               f"a date: {f[date_col]!r}")
                ns += day * 86_400_000_000_000
            out[k] = ns
            continue
        w = v.replace("t", "T") if re.match(r"^\d{4}-\d\d-\d\dt", v) else v
        zones.add(w.endswith(("Z", "z")))
        if w.endswith(("Z", "z")):
            w = w[:-1]
        if not _ISO.match(w):
            raise fail(p, "time", f"line {lineno}, column {names[tcol]!r}: not an ISO 8601 "
                       f"time (YYYY-MM-DDThh:mm:ss[.s][Z]): {v!r}")
        if re.search(r"[+-]\d\d(:?\d\d)?$", w.split("T")[-1].split(" ")[-1]):
            raise fail(p, "time", f"line {lineno}, column {names[tcol]!r}: {v!r} has a "
                       "time-zone offset; give UTC times (ending in Z)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[k] = np.datetime64(w, "ns").astype(np.int64)
            if not _YEARS[0] <= int(w[:4]) <= _YEARS[1]:
                raise ValueError(w)
        except (ValueError, OverflowError):
            raise fail(p, "time", f"line {lineno}, column {names[tcol]!r}: not a time: "
                       f"{v!r}") from None
    if tod and date_col is None:
        # (midnight passed: the time of day starts again)
        day0 = np.cumsum(np.concatenate([[0], np.diff(out) < -43_200_000_000_000]))
        out = out + day0 * 86_400_000_000_000
    bad = np.flatnonzero(out[1:] <= out[:-1])   # (not np.diff: it can overflow)
    if bad.size:
        k = int(bad[0]) + 1
        raise fail(p, "time", f"line {rows[k][0]}: time {texts[k][tcol]!r} does not follow "
                   f"{texts[k - 1][tcol]!r} on the line before (times must increase)")
    col = names[tcol]
    if tod:
        src = (f"column {col!r}, time of day, with column {names[date_col]!r} (taken as UTC)"
               if date_col is not None else
               f"column {col!r}, time of day (no date: from 1970-01-01)")
    elif zones == {True}:
        src = f"column {col!r}, ISO 8601 UTC"
    else:
        src = f"column {col!r}, ISO 8601 without a zone (taken as UTC)"
    return out, src
