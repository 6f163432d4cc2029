"""MALÅ RAMAC reader: ASCII ``.rad`` header + ``.rd3`` (int16) / ``.rd7`` (int32) + ``.cor`` GPS.

The ``.rad`` header is ``KEY:value`` lines.  ``SAMPLES`` is the trace length,
``FREQUENCY`` the *sampling* frequency in MHz (so ``dt = 1 / FREQUENCY``), and
``LAST TRACE`` the number of traces.  The data file holds the traces one after
the other, little-endian, with no trace headers.  The ``.cor`` file lists GPS
fixes per (1-based) trace: ``trace date time lat N|S lon E|W alt M quality``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    NO_TIME,
    PLAUSIBLE,
    RadarData,
    fail,
    file_size,
    find_sibling,
    gps_sidecar,
    gps_table,
    load_block,
    parse_count,
    parse_number,
    read_text,
)

_DTYPES = {"rd3": np.dtype("<i2"), "rd7": np.dtype("<i4")}


def parse_rad(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY:value`` lines of a ``.rad`` header (keys upper-cased, values stripped)."""
    text = read_text(path, "rad")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, v = line.split(":", 1)
        k = k.strip().upper()
        if k:
            out[k] = v.strip()
    return out


def _antenna_frequency(name: str) -> float:
    name = name[:64]  # bounded regex work whatever the header holds
    m = re.search(r"(\d+(?:\.\d+)?)\s*([MG])HZ", name.upper())
    if m:
        return float(m.group(1)) * (1e9 if m.group(2) == "G" else 1e6)
    m = re.match(r"\s*(\d+(?:\.\d+)?)", name)
    if m and 10 <= float(m.group(1)) <= 10000:  # "500_shielded", "800" -> MHz
        return float(m.group(1)) * 1e6
    return math.nan


def _resolve(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    ext = p.suffix.lower().lstrip(".")
    if ext in _DTYPES:
        rad = find_sibling(p, "rad")
        if rad is None:
            raise fail(p, "rad", "no .rad header next to the data file")
        return rad, p
    if ext == "rad":
        data = find_sibling(p, "rd3", "rd7")
        if data is None:
            raise fail(p, "data file", "no .rd3 or .rd7 data file next to the header")
        return p, data
    raise fail(p, "extension", "expected .rad, .rd3 or .rd7")


def read_ramac(
    path: str | os.PathLike[str],
    *,
    mmap: bool = False,
    allow_partial: bool = False,
    sidecars: bool = True,
) -> RadarData:
    """Read a MALÅ RAMAC profile given its ``.rad``, ``.rd3`` or ``.rd7`` file.

    Parameters
    ----------
    path
        Any of the profile's files; the others are found next to it.
    mmap
        Return a read-only memory map instead of loading the samples.
    allow_partial
        Accept a data file shorter than ``LAST TRACE`` says (keep the whole
        traces present) instead of raising.
    sidecars
        Read the ``.cor`` GPS file when present.

    Raises
    ------
    VendorFormatError
        Header or data malformed or truncated (message names file and field).
    """
    rad, data_path = _resolve(path)
    h = parse_rad(rad)
    for key in ("SAMPLES", "FREQUENCY"):
        if key not in h:
            raise fail(rad, key, "missing from the header")
    nsamp = parse_count(rad, "SAMPLES", h["SAMPLES"], lo=1)
    freq_mhz = parse_number(rad, "FREQUENCY", h["FREQUENCY"])
    if not freq_mhz > 0:
        raise fail(rad, "FREQUENCY", f"{freq_mhz} MHz is not a positive sampling frequency")
    _check_timewindow(rad, h, nsamp, freq_mhz)
    dtype = _DTYPES[data_path.suffix.lower().lstrip(".")]
    size = file_size(data_path)
    trace_bytes = nsamp * dtype.itemsize
    if trace_bytes > size and size > 0:
        raise fail(rad, "SAMPLES", f"{nsamp} samples per trace do not fit in {data_path} "
                   f"({size} bytes)")
    n_file, rest = divmod(size, trace_bytes)
    header: dict[str, Any] = dict(h)
    n = n_file
    if "LAST TRACE" in h:
        last = parse_count(rad, "LAST TRACE", h["LAST TRACE"])
        if last > n_file or rest:
            if not allow_partial:
                raise fail(
                    data_path,
                    "LAST TRACE",
                    f"header says {last} traces of {trace_bytes} bytes, data file has "
                    f"{size} bytes ({n_file} whole traces"
                    + (f" and {rest} bytes more" if rest else "") + "): "
                    + ("truncated" if last > n_file else
                       "extra bytes after the last trace, or a wrong SAMPLES or data type"),
                )
            header["dropped_traces"] = max(last - n_file, 0)
        elif last < n_file:
            if last > 1 and n_file % last == 0 and not allow_partial:
                # exactly k times the traces the header says: far likelier a
                # SAMPLES 1/k of the truth, which would cut every trace in k
                raise fail(rad, "SAMPLES",
                           f"the data file holds exactly {n_file // last} times the "
                           f"{last} traces LAST TRACE says, at SAMPLES {nsamp}: is SAMPLES "
                           f"{n_file // last * nsamp}? (every trace would be read cut "
                           f"in {n_file // last}; --allow-partial reads them as SAMPLES "
                           "says)")
            header["extra_traces"] = n_file - last  # keep them: data beats header
            warnings.warn(f"{rad}: LAST TRACE says {last} traces, {data_path} holds "
                          f"{n_file}: all are read", stacklevel=2)
    elif rest and not allow_partial:
        raise fail(data_path, "payload", f"{size} bytes is not a whole number of "
                   f"{trace_bytes}-byte traces ({rest} bytes more: truncated, or extra "
                   "bytes at the end?)")
    samples = load_block(data_path, dtype, 0, n * nsamp, mmap).reshape(n, nsamp)
    rd = RadarData(
        samples=samples,
        sample_interval_s=1e-6 / freq_mhz,
        vendor="mala",
        path=os.fspath(data_path),
        header=header,
        antenna=h.get("ANTENNAS", ""),
        frequency_hz=_antenna_frequency(h.get("ANTENNAS", "")),
    )
    if h.get("DISTANCE FLAG", "0").strip() == "1" and "DISTANCE INTERVAL" in h:
        dx = parse_number(rad, "DISTANCE INTERVAL", h["DISTANCE INTERVAL"])
        if dx > PLAUSIBLE["trace spacing"][1]:
            raise fail(rad, "DISTANCE INTERVAL", f"{dx:g} m between traces")
        if dx > 0:
            rd.trace_interval_m = dx
            rd.trace_position_m = np.arange(n) * dx
    if h.get("TIME FLAG", "0").strip() == "1" and "TIME INTERVAL" in h:
        dt_tr = parse_number(rad, "TIME INTERVAL", h["TIME INTERVAL"])
        if dt_tr > PLAUSIBLE["trace interval"][1]:
            raise fail(rad, "TIME INTERVAL", f"{dt_tr:g} s between traces")
        if dt_tr > 0:
            rd.trace_interval_s = dt_tr
            rd.trace_time_s = np.arange(n) * dt_tr
    if sidecars:
        cor = find_sibling(data_path, "cor")
        if cor is not None:
            if gps_sidecar(rd, "cor", cor, ".cor", lambda: read_cor(cor)):
                rd.start_time_ns, how = _start_time(rd.gps, rd.trace_interval_s)
                header["cor"]["start_time_source"] = how
    return rd


#: Relative disagreement of ``TIMEWINDOW`` with ``SAMPLES / FREQUENCY`` that is warned about
_TIMEWINDOW_TOLERANCE = 0.01


def _check_timewindow(rad: Path, h: dict[str, str], nsamp: int, freq_mhz: float) -> None:
    """Warn when the header's ``TIMEWINDOW`` (ns) is not ``SAMPLES / FREQUENCY``.

    The samples are timed by ``FREQUENCY`` (the sampling frequency, as ImpDAR's
    ``load_ramac`` reads it); a reader that divides ``TIMEWINDOW`` by ``SAMPLES``
    instead would time them differently.  In the ImpDAR test line (EGRIP,
    512 samples) ``TIMEWINDOW`` is 422 ns, that of 1024 samples, and the
    traces peak at 488 MHz for a 500 MHz antenna by ``FREQUENCY`` (244 MHz by
    ``TIMEWINDOW``), so ``FREQUENCY`` is kept and the disagreement said.
    """
    raw = h.get("TIMEWINDOW", "").strip()
    try:
        window_ns = float(raw)
    except ValueError:
        return  # (absent or not a number: nothing to compare; FREQUENCY times the samples)
    expect_ns = nsamp / freq_mhz * 1e3
    if not (math.isfinite(window_ns) and window_ns > 0):
        return
    if abs(window_ns - expect_ns) > _TIMEWINDOW_TOLERANCE * expect_ns:
        warnings.warn(
            f"{rad}: TIMEWINDOW says {window_ns:.6g} ns, but SAMPLES / FREQUENCY give "
            f"{expect_ns:.6g} ns ({nsamp} samples at {freq_mhz:.6g} MHz; ratio "
            f"{window_ns / expect_ns:.3g}); the samples are timed by FREQUENCY",
            stacklevel=3)


def _start_time(gps: dict[str, np.ndarray], interval_s: float) -> tuple[int | None, str]:
    """UTC ns of the first trace (trace 1 of the file) from the ``.cor`` rows.

    The ``.cor`` lists fixes against trace numbers and need not begin at trace 1
    (the EGRIP line's first row is trace 7).  In order of preference: the row
    of trace 1; the first row minus (its trace - 1) x ``TIME INTERVAL``; the
    straight line through the rows' times against trace numbers (traces
    triggered by distance are not evenly timed, so this is an estimate,
    labelled as such); else unknown.

    Returns
    -------
    (start, how)
        UTC ns or None, and a sentence saying how it was found.
    """
    t, tr = gps["time_ns"], gps["trace"]
    ok = (t != NO_TIME) & (tr >= 0)
    if not np.any(ok):
        return None, "unknown: no .cor row with a time and a trace number"
    t, tr = t[ok], tr[ok]
    first = int(np.argmin(tr))
    if tr[first] == 0:
        return int(t[first]), ".cor row of trace 1"
    k = int(tr[first])
    if math.isfinite(interval_s) and interval_s > 0:
        return (int(t[first]) - round(k * interval_s * 1e9),
                f".cor row of trace {k + 1} minus {k} x TIME INTERVAL")
    if np.unique(tr).size >= 2:
        x = (tr - k).astype(np.float64)
        y = (t - t[first]).astype(np.float64)
        slope, intercept = np.polyfit(x, y, 1)
        if math.isfinite(slope) and slope > 0:
            start = int(t[first]) + round(intercept - k * slope)
            return start, (f"estimated: straight line through {t.size} .cor rows' times "
                           f"against trace number ({slope / 1e9:.4g} s per trace), "
                           "extrapolated to trace 1")
    return None, (f"unknown: the .cor begins at trace {k + 1} and the file gives no "
                  "trace interval")


def read_cor(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a RAMAC ``.cor`` GPS file.

    Rows are ``trace date time lat N|S lon E|W [alt M [quality]]``, trace numbers
    1-based.  Malformed lines are counted and skipped, and an empty file (nothing
    logged) gives an empty table.

    Returns
    -------
    (table, stats)
        GPS column arrays (see :class:`~demine.io.RadarData`) and the counts of
        rows read and lines skipped as malformed.

    Raises
    ------
    VendorFormatError
        The file has text but not one line of it is a ``.cor`` row (not a
        ``.cor`` file, or garbage): the message names the file and quotes the
        first line.
    """
    text = read_text(path, "cor")
    rows: list[tuple] = []
    bad = 0
    first_bad = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            trace = int(parts[0]) - 1  # 1-based in the file
            day = dt.date.fromisoformat(parts[1])
            hh, mm, ss = parts[2].split(":")
            tod = int(hh) * 3600 + int(mm) * 60 + float(ss)
            lat = float(parts[3]) * (-1 if parts[4].upper() == "S" else 1)
            lon = float(parts[5]) * (-1 if parts[6].upper() == "W" else 1)
            if parts[4].upper() not in "NS" or parts[6].upper() not in "EW":
                raise ValueError("hemisphere")
            alt = float(parts[7]) if len(parts) > 7 else math.nan
            quality = float(parts[9]) if len(parts) > 9 else math.nan
            if not (abs(lat) <= 90 and abs(lon) <= 180 and 0 <= tod < 86401):
                raise ValueError("range")
        except (ValueError, IndexError):
            bad += 1
            first_bad = first_bad or line.strip()
            continue
        t = (day.toordinal() - dt.date(1970, 1, 1).toordinal()) * 86_400_000_000_000
        t += round(tod * 1e9)
        # the last column is the receiver's quality/HDOP figure, kept as hdop
        rows.append((trace, t if t else NO_TIME, lat, lon, alt, 1, 0, quality))
    if bad and not rows:
        raise fail(path, "cor", f"none of its {bad} non-empty lines is a .cor row "
                   f"(trace date time lat N|S lon E|W alt M quality); first: "
                   f"{first_bad[:60]!r}")
    return gps_table(rows), {"rows": len(rows), "malformed": bad}
