"""Metal-detector readings from a text table (CSV, TSV, Geosoft XYZ).

Pulse-induction and time-domain EMI instruments, their processing software
and other simulators export readings as a table: one row per reading, columns
for time, position and one amplitude per time gate (EM61-style ``ch1..ch4``,
``gate_0..gate_15``, ``12us`` ...).  :func:`read_emi_table` reads such a file
into an :class:`EMITable`; ``demine import FILE.csv`` writes it as a
recording's EMI stream (:func:`demine.io.convert.import_emi_table`).

The layout it reads
-------------------
* Lines starting with ``#``, ``/`` or ``//`` are comments; a Geosoft XYZ
  file's column names are its last ``/`` comment line before the data, and
  its ``Line``/``Tie`` lines start a new line of the survey.  ``*`` (Geosoft's
  dummy) and empty fields are missing values (NaN).
* The header row (the first non-comment line when it is not all numbers)
  names the columns; the delimiter is a comma, semicolon, tab or white space,
  whichever the header uses.  Names are matched without case, and without a
  unit in brackets (``x [m]``, ``time (s)``).
* **Time** (``time``, ``t``, ``timestamp``, ``seconds``; seconds): epoch
  seconds when the values are above 1e8 (after 1973), else seconds from the
  file's start.  Without a time column, give the reading rate.
* **Position** (m, local frame): ``x``/``easting``/``east``,
  ``y``/``northing``/``north`` (none: a line along x at y = 0) and
  ``z``/``height``/``sensor_height`` (none: unknown).  ``x`` is required.
* **Gates**: every column named ``gate``, ``g``, ``ch``, ``channel`` or
  ``tg`` followed by a number (``ch1``, ``gate_03``), or by a time with its
  unit, or a time alone (``12us``, ``0.216ms``, ``g_1.2e-05s``).  Gate times
  in the names are used (all gates must have one), else those given, else
  the stream records gate indices and detection asks for a calibration.
* Every other column is kept by name in the stream's ``vendor_header``, not
  as data.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from ._common import MAX_TEXT_BYTES, fail, file_size

__all__ = ["EMI_TABLE_SUFFIXES", "EMITable", "read_emi_table"]

#: File name endings read as EMI tables by ``demine import``.
EMI_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xyz", ".dat")

_ROLES = {
    "time": ("time", "t", "timestamp", "seconds", "time_s", "utc_time", "epoch"),
    "x": ("x", "easting", "east", "e", "x_m", "x_local"),
    "y": ("y", "northing", "north", "n", "y_m", "y_local"),
    "z": ("z", "height", "sensor_height", "z_m", "alt", "altitude"),
}
_UNIT_S = {"s": "1", "ms": "1e-3", "us": "1e-6", "µs": "1e-6", "ns": "1e-9"}
_TIME_RE = re.compile(r"^[\s_@(-]*(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)\s*"
                      r"(s|ms|us|µs|ns)\)?$")
_GATE_PREFIX = re.compile(r"^(?:channel|gate|ch|tg|g)[\s_-]*(.*)$")
_INDEX_THEN = re.compile(r"^(\d+)[\s_@-]*(.*)$")
_UNIT_IN_NAME = re.compile(r"\s*[\[(][^\])]*[\])]\s*$")


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


def _bare(name: str) -> str:
    return _UNIT_IN_NAME.sub("", name).strip().lower()


def _gate_time(name: str) -> tuple[bool, float | None]:
    """(is a gate column, its time in s or None) from a column name: ``ch1``,
    ``gate_03``, ``12us``, ``g_1.2e-05s``, ``ch1_0.216ms``, ``gate 3 (45 us)``."""
    b = name.strip().lower().replace("μ", "µ")
    u = _UNIT_IN_NAME.search(b)
    if u and not _TIME_RE.match(u.group()):   # (a unit: "ch2 [mV]")
        b = b[: u.start()]

    def time(m: re.Match[str]) -> float:   # (exact in decimal: 45 us is 4.5e-05)
        return float(Decimal(m[1]) * Decimal(_UNIT_S[m[2]]))

    t = _TIME_RE.match(b)
    if t:
        return True, time(t)
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


def _iso_times(p: str, rows: list[tuple[int, str]], delim: str | None, col: int,
               names: list[str]) -> np.ndarray:
    """ns since 1970 of a column of ISO 8601 UTC times (``Z`` or no zone)."""
    out = np.empty(len(rows), dtype=np.int64)
    for k, (lineno, line) in enumerate(rows):
        fields = _split(line, delim)
        v = fields[col] if col < len(fields) else ""
        if v.endswith(("Z", "z")):
            v = v[:-1]
        if re.search(r"[+-]\d\d:?\d\d$", v.split("T")[-1].split(" ")[-1]):
            raise fail(p, "time", f"line {lineno}, column {names[col]!r}: {fields[col]!r} has "
                       "a time-zone offset; give UTC times (ending in Z)")
        try:
            out[k] = np.datetime64(v, "ns").astype(np.int64)
        except ValueError:
            raise fail(p, "time", f"line {lineno}, column {names[col]!r}: not a time: "
                       f"{fields[col] if col < len(fields) else ''!r}") from None
    return out


def _split(line: str, delim: str | None) -> list[str]:
    return [v.strip().strip('"') for v in (line.split(delim) if delim else line.split())]


def _number(text: str) -> float:
    if text in ("", "*", "nan", "NaN", "NA", "-"):
        return math.nan
    return float(text)


def read_emi_table(path: str | os.PathLike[str], *, gate_times: Any = None,
                   rate: float | None = None) -> EMITable:
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
        with open(p, encoding="utf-8-sig", errors="strict") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise fail(p, "text", f"not a UTF-8 text table (byte {exc.start})") from None
    except OSError as exc:
        raise fail(p, "file", str(exc.strerror or exc)) from None
    comments: list[str] = []
    names: list[str] | None = None
    delim: str | None = None
    rows: list[tuple[int, str]] = []   # (line number, the line)
    lines_seen: list[str] = []
    last_comment = ""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("#", "/")):
            last_comment = line.lstrip("#/").strip()
            comments.append(last_comment)
            continue
        if line[0].isalpha() and line.split()[0].lower() in ("line", "tie") \
                and len(line.split()) <= 3:
            lines_seen.append(line)
            continue
        if names is None:
            delim = "," if "," in line else ";" if ";" in line else "\t" if "\t" in line \
                else None
            fields = _split(line, delim)
            try:
                [_number(v) for v in fields]
                numeric = True
            except ValueError:
                numeric = False
            if numeric:   # (Geosoft: the names are the last comment line)
                if not last_comment:
                    raise fail(p, "header", f"line {lineno}: numbers with no column names "
                               "before them (a header row, or a '/' comment line naming "
                               "the columns)")
                names = _split(last_comment, delim)
                if len(names) != len(fields):
                    names = _split(last_comment, None)
            else:
                names = fields
                continue
        rows.append((lineno, line))
    if names is None or not rows:
        raise fail(p, "data", "no readings (a header row naming the columns, then one row "
                   "per reading)")
    bare = [_bare(n) for n in names]
    twice = sorted({b for b in bare if bare.count(b) > 1})
    if twice:
        raise fail(p, "header", f"column {twice[0]!r} named more than once")
    roles: dict[str, int] = {}
    for role, words in _ROLES.items():
        for i, b in enumerate(bare):
            if b in words and role not in roles:
                roles[role] = i
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
    if "x" not in roles:
        raise fail(p, "header", f"no position column among {names} (x or easting, in m)")
    if delim == ";" and any("," in ln for _, ln in rows[:100]):
        # (a spreadsheet's CSV where the decimal mark is a comma: 0,125;1,5)
        rows = [(k, ln.replace(",", ".")) for k, ln in rows]
    # ISO 8601 times (2026-12-01T09:00:00.125Z): read apart, as UTC
    iso = None
    if "time" in roles:
        first = _split(rows[0][1], delim)
        tv = first[roles["time"]] if roles["time"] < len(first) else ""
        try:
            _number(tv)
        except ValueError:
            if re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d", tv):
                iso = _iso_times(p, rows, delim, roles["time"], names)
    wanted = sorted((set(gates) | set(roles.values())) - (
        {roles["time"]} if iso is not None else set()))
    data = np.full((len(rows), len(names)), np.nan)
    fast = None
    if not any("*" in ln or '"' in ln for _, ln in rows):
        try:  # (numpy's C parser: a 2-million-reading table in seconds, not minutes)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                fast = np.loadtxt(io.StringIO("\n".join(ln for _, ln in rows)),
                                  delimiter=delim, usecols=wanted, ndmin=2, dtype=np.float64)
        except (ValueError, UserWarning):
            fast = None   # (the line by line reading below says what is wrong)
    if fast is not None and fast.shape == (len(rows), len(wanted)) and (
            {ln.count(delim) for _, ln in rows} == {len(names) - 1} if delim
            else {len(ln.split()) for _, ln in rows} == {len(names)}):
        data[:, wanted] = fast
        rows_to_check: list[tuple[int, str]] = []
    else:
        rows_to_check = rows
    for k, (lineno, line) in enumerate(rows_to_check):
        fields = _split(line, delim)
        if len(fields) != len(names):
            raise fail(p, "data", f"line {lineno}: {len(fields)} fields, the header names "
                       f"{len(names)}")
        for i, v in enumerate(fields):
            if i in wanted:
                try:
                    data[k, i] = _number(v)
                except ValueError:
                    raise fail(p, "data", f"line {lineno}, column {names[i]!r}: not a "
                               f"number: {v!r}") from None
    # gate times: from the names, or given
    known = [t for t in named_times if t is not None]
    gt: np.ndarray | None = None
    if known and len(known) != len(gates):
        raise fail(p, "header", "some gate columns give their time and others do not: "
                   f"{[names[i] for i in gates]}")
    if known:
        gt = np.asarray(known, dtype=np.float64)
    if gate_times is not None:
        given = np.asarray(gate_times, dtype=np.float64).reshape(-1)
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
    if iso is not None:
        if rate is not None:
            raise fail(p, "rate", f"the table has a time column ({names[roles['time']]!r}): "
                       "the reading rate comes from it")
        if np.any(np.diff(iso) <= 0):
            bad = int(np.flatnonzero(np.diff(iso) <= 0)[0]) + 1
            raise fail(p, "time", f"line {rows[bad][0]}: its time does not follow the "
                       "line before's (times must increase)")
        time_ns = iso
        source = f"column {names[roles['time']]!r}, ISO 8601 UTC"
    elif "time" in roles:
        if rate is not None:
            raise fail(p, "rate", f"the table has a time column ({names[roles['time']]!r}): "
                       "the reading rate comes from it")
        t = data[:, roles["time"]]
        if not np.all(np.isfinite(t)):
            bad = int(np.flatnonzero(~np.isfinite(t))[0])
            raise fail(p, "time", f"line {rows[bad][0]}: no time")
        if np.any(np.diff(t) <= 0):
            bad = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
            raise fail(p, "time", f"line {rows[bad][0]}: time {t[bad]:g} s does not follow "
                       f"{t[bad - 1]:g} s (times must increase; in seconds)")
        if t[0] > 1e8:
            time_ns = np.round(t * 1e9).astype(np.int64)
            source = f"column {names[roles['time']]!r}, epoch seconds"
        else:
            time_ns = np.round((t - t[0]) * 1e9).astype(np.int64)
            source = (f"column {names[roles['time']]!r}, seconds from the file's start "
                      "(the file gives no date: from 1970-01-01)")
    else:
        if rate is None:
            raise fail(p, "time", f"no time column among {names}: give the reading rate "
                       "(demine import --rate HZ)")
        if not (math.isfinite(rate) and rate > 0):
            raise fail(p, "rate", f"readings per second must be > 0, got {rate}")
        time_ns = np.round(np.arange(n) * (1e9 / rate)).astype(np.int64)
        source = f"reading index at {rate:g} readings/s (the file gives no time; from 1970-01-01)"
    x = data[:, roles["x"]]
    y = data[:, roles["y"]] if "y" in roles else np.zeros(n)
    z = data[:, roles["z"]] if "z" in roles else np.full(n, np.nan)
    used = set(gates) | set(roles.values())
    header = {
        "format": "emi-table", "delimiter": delim or "whitespace",
        "columns": {r: names[i] for r, i in roles.items()},
        "gate_columns": [names[i] for i in gates],
        "gate_times_source": ("column names" if known else "given" if gate_times is not None
                              else "unknown"),
        "ignored_columns": [nm for i, nm in enumerate(names) if i not in used],
        "comments": comments[:50], "survey_lines": lines_seen[:1000],
    }
    return EMITable(path=p, samples=data[:, gates].astype(np.float32), time_ns=time_ns,
                    time_source=source, x=x, y=y, z=z, gate_times=gt,
                    gate_columns=[names[i] for i in gates], header=header)
