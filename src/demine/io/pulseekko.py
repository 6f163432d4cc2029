"""Sensors & Software pulseEKKO reader: ASCII ``.HD`` + binary ``.DT1`` (+ ``.GPS``).

Each ``.DT1`` trace is a 128-byte header (25 little-endian float32 fields and a
28-byte comment) followed by ``NUMBER OF PTS/TRC`` samples: int16, or float32 in
the 4-byte file version (field 6 of the trace header holds the bytes per point).
Samples are returned exactly as stored: pulseEKKO traces carry a DC offset
(around -150 counts on the Yosemite line), and removing it is processing, not
reading.  ``dt = TOTAL TIME WINDOW / NUMBER OF PTS/TRC``, which the trace
headers confirm (field 7 holds the sample interval in picoseconds).
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

from .. import nmea
from ..errors import FrameError, VendorFormatError
from ._common import (
    NO_TIME,
    RadarData,
    fail,
    file_size,
    find_sibling,
    gps_sidecar,
    gps_table,
    parse_count,
    parse_number,
    read_text,
)

#: Names of the 25 float32 fields of a DT1 trace header.
TRACE_FIELDS = (
    "trace_number", "position", "n_points", "topography", "unused5", "bytes_per_point",
    "sample_interval_ps", "n_stacks", "gps_x_lo", "gps_x_hi", "gps_y_lo", "gps_y_hi",
    "gps_z_lo", "gps_z_hi", "rx_x", "rx_y", "rx_z", "tx_x", "tx_y", "tx_z",
    "time_zero_adjustment", "zero_flag", "n_channels", "time_of_day_s", "comment_flag",
)  # fmt: skip

_UNITS_M = {"m": 1.0, "metres": 1.0, "meters": 1.0, "ft": 0.3048, "feet": 0.3048, "cm": 0.01}
_CHUNK_BYTES = 16 * 1024 * 1024


def parse_hd(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``KEY = value`` lines of a ``.HD`` header, plus ``date`` and ``system`` lines."""
    text = read_text(path, "HD")
    out: dict[str, Any] = {}
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    free = [ln for ln in lines if ln and "=" not in ln]
    for line in lines:
        if "=" in line:
            k, v = line.split("=", 1)
            k = k.strip().upper()
            if k:
                out[k] = v.strip()
    if free:
        out["_FILE_TAG"] = free[0]
    for ln in free[1:]:
        if "pE" in ln or "pulse" in ln.lower() or "Collected" in ln:
            out.setdefault("_SYSTEM", ln)
        else:
            for fmt in ("%Y-%m-%d", "%Y-%b-%d", "%m/%d/%Y", "%m/%d/%y", "%d/%m/%Y"):
                try:
                    out.setdefault("_DATE", dt.datetime.strptime(ln, fmt).date().isoformat())
                    break
                except ValueError:
                    continue
    return out


def _resolve(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".dt1":
        hd = find_sibling(p, "HD")
        if hd is None:
            raise fail(p, "HD", "no .HD header next to the .DT1 file")
        return hd, p
    if ext == ".hd":
        dt1 = find_sibling(p, "DT1")
        if dt1 is None:
            raise fail(p, "DT1", "no .DT1 data file next to the header")
        return p, dt1
    raise fail(p, "extension", "expected .HD or .DT1")


def read_dt1(
    path: str | os.PathLike[str],
    *,
    mmap: bool = False,
    allow_partial: bool = False,
    sidecars: bool = True,
) -> RadarData:
    """Read a pulseEKKO profile given its ``.HD`` or ``.DT1`` file.

    Parameters
    ----------
    path
        The ``.HD`` or ``.DT1`` file; the other is found next to it.
    mmap
        Return a read-only (strided) memory map instead of loading the samples.
    allow_partial
        Accept a ``.DT1`` with fewer traces than the header says.
    sidecars
        Read the ``.GPS`` file when present.

    Raises
    ------
    VendorFormatError
        Header or data malformed or truncated (message names file and field).
    """
    hd_path, dt1 = _resolve(path)
    h = parse_hd(hd_path)
    for key in ("NUMBER OF TRACES", "NUMBER OF PTS/TRC", "TOTAL TIME WINDOW"):
        if key not in h:
            raise fail(hd_path, key, "missing from the header")
    n_hd = parse_count(hd_path, "NUMBER OF TRACES", h["NUMBER OF TRACES"])
    npts = parse_count(hd_path, "NUMBER OF PTS/TRC", h["NUMBER OF PTS/TRC"], lo=1)
    window = parse_number(hd_path, "TOTAL TIME WINDOW", h["TOTAL TIME WINDOW"])
    if not window > 0:
        raise fail(hd_path, "TOTAL TIME WINDOW", f"{window} ns is not positive")
    size = file_size(dt1)
    if size < 128:
        raise fail(dt1, "trace header", f"file of {size} bytes has no complete trace header")
    first = np.fromfile(dt1, dtype="<f4", count=25)
    bpp_field = first[5]
    candidates = [2, 4]
    if bpp_field in (2.0, 4.0):
        candidates = [int(bpp_field)] + [b for b in candidates if b != int(bpp_field)]
    bpp = None
    for b in candidates:
        if size % (128 + npts * b) == 0 and size // (128 + npts * b) >= min(n_hd, 1):
            bpp = b
            break
    if bpp is None:
        bpp = candidates[0]
    if bpp_field in (2.0, 4.0) and bpp != int(bpp_field):
        # (the file's size fits the other width: an int16 file read as float32 had
        # given values of 1e38 and NaN without a word)
        raise fail(hd_path, "NUMBER OF PTS/TRC",
                   f"{npts} points do not fit {dt1}: its first trace header says "
                   f"{_shown_count(first[2])} points of {int(bpp_field)} bytes, and "
                   f"{size} bytes hold no whole number of {npts}-point traces of that width")
    rec = 128 + npts * bpp
    n_file, rest = divmod(size, rec)
    header: dict[str, Any] = {k: v for k, v in h.items() if not k.startswith("_")}
    header["system"] = h.get("_SYSTEM", "")
    header["date"] = h.get("_DATE")
    header["bytes_per_point"] = bpp
    n = n_file
    if n_hd > n_file or rest:
        if not allow_partial:
            raise fail(
                dt1,
                "NUMBER OF TRACES",
                f"header says {n_hd} traces of {rec} bytes ({npts} points x {bpp} bytes + 128),"
                f" file has {size} bytes ({n_file} whole traces"
                + (f" and {rest} bytes more" if rest else "") + "): "
                + ("truncated, or a wrong NUMBER OF PTS/TRC" if n_hd > n_file else
                   "extra bytes after the last trace, or a wrong NUMBER OF PTS/TRC"),
            )
        header["dropped_traces"] = max(n_hd - n_file, 0)
    elif n_file > n_hd:
        header["extra_traces"] = n_file - n_hd
        warnings.warn(f"{hd_path}: NUMBER OF TRACES says {n_hd}, {dt1} holds {n_file}: all "
                      "are read", stacklevel=2)
    sdtype = np.dtype("<i2") if bpp == 2 else np.dtype("<f4")
    rdtype = np.dtype([("h", "<f4", (25,)), ("comment", "S28"), ("d", sdtype, (npts,))])
    assert rdtype.itemsize == rec
    if mmap:
        mm = np.memmap(dt1, dtype=rdtype, mode="r", shape=(n,)) if n else np.zeros(0, rdtype)
        th = np.array(mm["h"], dtype=np.float32)  # small: 100 bytes per trace
        samples = mm["d"]
    else:
        # Chunks of many traces read with np.fromfile (vectorised within a chunk):
        # peak memory is the output plus one chunk, and no file pages stay mapped.
        samples = np.empty((n, npts), sdtype)
        th = np.empty((n, 25), np.float32)
        step = max(1, _CHUNK_BYTES // rec)
        with open(dt1, "rb") as f:
            for i in range(0, n, step):
                m = min(step, n - i)
                chunk = np.fromfile(f, dtype=rdtype, count=m)
                if chunk.shape[0] != m:
                    raise fail(dt1, "payload", f"read {chunk.shape[0]} of {m} traces at trace {i}")
                samples[i : i + m] = chunk["d"]
                th[i : i + m] = chunk["h"]
    if n:
        bad_npts = int(np.count_nonzero(th[:, 2] != npts))
        if bad_npts:
            header["trace_headers_npts_mismatch"] = bad_npts
    rd = RadarData(
        samples=samples,
        sample_interval_s=window * 1e-9 / npts,
        vendor="pulseekko",
        path=os.fspath(dt1),
        header=header,
        frequency_hz=_mhz(h.get("NOMINAL FREQUENCY", "")),
        antenna=(h.get("NOMINAL FREQUENCY", "") + " MHz").strip(),
    )
    rd.trace_headers = th
    header["trace_header_fields"] = list(TRACE_FIELDS)
    if "TIMEZERO AT POINT" in h:
        tz = parse_number(hd_path, "TIMEZERO AT POINT", h["TIMEZERO AT POINT"])
        _time_zero(rd, tz, npts, th)
    unit = h.get("POSITION UNITS", "m").strip().lower()
    scale = _UNITS_M.get(unit, math.nan)
    header["position_units"] = unit
    if n and math.isfinite(scale):
        rd.trace_position_m = th[:, 1].astype(np.float64) * scale
        if "STEP SIZE USED" in h:
            step_u = parse_number(hd_path, "STEP SIZE USED", h["STEP SIZE USED"])
            if step_u > 0:
                rd.trace_interval_m = step_u * scale
    if n:
        tod = th[:, 23].astype(np.float64)
        if np.all((tod >= 0) & (tod < 86401)) and np.any(tod > 0):
            rd.trace_time_s = tod
            if header["date"]:
                d0 = dt.date.fromisoformat(header["date"])
                rd.start_time_ns = nmea.utc_ns(d0, float(tod[0]))
    if sidecars:
        gps = find_sibling(dt1, "GPS")
        if gps is not None:
            date = dt.date.fromisoformat(header["date"]) if header["date"] else None
            gps_sidecar(rd, "gps", gps, ".GPS", lambda: read_gps(gps, date=date))
    return rd


def _shown_count(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and v == int(v) else repr(float(v))


def _time_zero(rd: RadarData, point: float, npts: int, th: np.ndarray) -> None:
    """Set ``rd.time_zero_sample`` from the HD's ``TIMEZERO AT POINT``.

    The HD counts points from 1 (RGPR ``R/readDT1.R``: ``time0 = TIMEZERO * dz
    - dz`` on a time axis whose first point is at 0), so the 0-based sample is
    ``point - 1``.  ``header["time_zero_source"]`` says where the value came
    from; when it is not used (before the first sample, past the last, or
    per-trace time-zero adjustments in the trace headers, which RGPR gives
    precedence and whose meaning demine does not know) ``header["time_zero_note"]``
    says why and the time zero stays NaN.
    """
    header = rd.header
    where = f"pulseEKKO .HD 'TIMEZERO AT POINT' = {point:g}"
    tz = point - 1.0
    n_adjusted = int(np.count_nonzero(th[:, 20])) if th.size else 0
    if n_adjusted:
        header["time_zero_note"] = (
            f"{where} not used: {n_adjusted} trace headers carry a time-zero adjustment "
            "(field 21), so no single time zero is claimed")
    elif not 0.0 <= tz < npts:
        header["time_zero_note"] = (
            f"{where} not used: 1-based point {point:g} lies outside the {npts} points "
            "of a trace")
    else:
        rd.time_zero_sample = tz
        header["time_zero_source"] = f"{where} (1-based point: sample {tz:g})"


def _mhz(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        return math.nan
    return v * 1e6 if math.isfinite(v) and v > 0 else math.nan


_TRACE_RE = re.compile(r"Trace\s*#\s*(\d+)", re.IGNORECASE)


def read_gps(
    path: str | os.PathLike[str], *, date: dt.date | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a pulseEKKO ``.GPS`` sidecar (``Trace #N at position P`` + NMEA lines).

    Trace numbers are 1-based in the file and 0-based in the result.  GGA
    sentences without a fix give NaN positions; malformed sentences are counted
    and skipped.  A GGA's date is ``date`` (the ``.HD``'s) or the latest RMC's
    or ZDA's, moved on at UTC midnight (:class:`demine.nmea.UtcDate`: the GGA
    of 00:00:00 comes before the RMC that brings the new date); without
    either, its time is ``NO_TIME``.
    """
    text = read_text(path, "GPS")
    rows: list[tuple] = []
    trace: int | None = None
    bad = nofix = 0
    utc = nmea.UtcDate()  # the date, moved on at UTC midnight
    if date is not None:
        utc.see(date, math.nan)
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _TRACE_RE.match(line)
        if m:
            try:
                trace = int(m.group(1)) - 1
            except ValueError:   # (more digits than Python converts)
                raise VendorFormatError(f"{path}: trace number of {len(m.group(1))} "
                                        "digits") from None
            continue
        if not line.startswith("$"):
            continue
        try:
            s = nmea.parse(line, require_checksum=False)
        except FrameError:
            bad += 1
            continue
        if isinstance(s, nmea.RMC | nmea.ZDA):
            utc.see(s.date, s.time_of_day)
            continue
        if not isinstance(s, nmea.GGA) or trace is None:
            continue
        nofix += not s.has_fix
        t = utc.utc_ns(s.time_of_day)
        rows.append(
            (trace, NO_TIME if t is None else t, s.lat, s.lon, s.altitude, s.fix_quality,
             s.satellites, s.hdop)
        )
        trace = None
    return gps_table(rows), {"sentences": len(rows), "no_fix": nofix, "malformed": bad}
