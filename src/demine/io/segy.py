"""SEG-Y reader and SEG-Y revision 1 writer, in NumPy (no segyio needed).

Reading supports fixed-length traces in sample formats 1 (IBM float, converted
to float32), 2 (int32), 3 (int16), 5 (IEEE float32), 6 (float64), 8 (int8),
10 (uint32), 11 (uint16) and 16 (uint8), big-endian (standard) or little-endian
(detected from the format code), with extended textual headers skipped.

Writing produces revision 1 files (EBCDIC textual header, big-endian binary
header and 240-byte trace headers) that seismic tools open.  SEG-Y stores the
sample interval as an integer number of microseconds, far too coarse for radar
(0.1 ns typical), so, as radar exporters commonly do, the writer stores
**picoseconds** in the microsecond fields when the interval is below 1 µs and
says so in textual header line C37 (``SAMPLE INTERVAL UNIT: PICOSECONDS``);
the reader honours that line.  Without it the standard unit (µs) is assumed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ._common import RadarData, fail, file_size

PS_TOKEN = "SAMPLE INTERVAL UNIT: PICOSECONDS"
_EXACT_DT = re.compile(r"SAMPLE INTERVAL ([0-9.E+-]+) NS")

_FORMATS: dict[int, tuple[str, int]] = {
    1: ("ibm", 4),
    2: ("i4", 4),
    3: ("i2", 2),
    5: ("f4", 4),
    6: ("f8", 8),
    8: ("i1", 1),
    10: ("u4", 4),
    11: ("u2", 2),
    16: ("u1", 1),
}

#: Trace-header fields read (name, byte offset, type), SEG-Y rev 1 numbering - 1
#: (SU names; ``time_scalar``, bytes 215-216, is rev 1's scalar for the times of
#: bytes 95-114, ``delrt`` among them).
TRACE_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("tracl", 0, "i4"), ("tracr", 4, "i4"), ("fldr", 8, "i4"), ("tracf", 12, "i4"),
    ("cdp", 20, "i4"), ("trid", 28, "i2"), ("offset", 36, "i4"), ("gelev", 40, "i4"),
    ("selev", 44, "i4"), ("scalel", 68, "i2"), ("scalco", 70, "i2"), ("sx", 72, "i4"),
    ("sy", 76, "i4"), ("gx", 80, "i4"), ("gy", 84, "i4"), ("counit", 88, "i2"),
    ("delrt", 108, "i2"), ("ns", 114, "u2"), ("dt", 116, "u2"), ("year", 156, "i2"),
    ("day", 158, "i2"), ("hour", 160, "i2"), ("minute", 162, "i2"), ("sec", 164, "i2"),
    ("timbas", 166, "i2"), ("cdpx", 180, "i4"), ("cdpy", 184, "i4"),
    ("time_scalar", 214, "i2"),
)  # fmt: skip


def _trace_dtype(endian: str) -> np.dtype:
    return np.dtype(
        {
            "names": [n for n, _, _ in TRACE_FIELDS],
            "formats": [endian + t for _, _, t in TRACE_FIELDS],
            "offsets": [o for _, o, _ in TRACE_FIELDS],
            "itemsize": 240,
        }
    )


def ibm_to_float32(words: np.ndarray) -> np.ndarray:
    """Convert IBM System/360 single-precision floats (as uint32) to float32."""
    w = np.asarray(words, dtype=np.uint32)
    sign = np.where(w >> 31, -1.0, 1.0)
    expo = ((w >> 24) & 0x7F).astype(np.int32) - 64
    mant = (w & 0x00FFFFFF).astype(np.float64) / float(1 << 24)
    with np.errstate(over="ignore"):
        return (sign * mant * np.power(16.0, expo)).astype(np.float32)


def _bin_header(raw: bytes, endian: str) -> dict[str, int]:
    def i2(off: int) -> int:
        return int(np.frombuffer(raw, dtype=endian + "i2", count=1, offset=off)[0])

    def i4(off: int) -> int:
        return int(np.frombuffer(raw, dtype=endian + "i4", count=1, offset=off)[0])

    return {
        "job_id": i4(0),
        "line": i4(4),
        "reel": i4(8),
        "traces_per_ensemble": i2(12),
        "dt": i2(16) & 0xFFFF,
        "dt_original": i2(18) & 0xFFFF,
        "ns": i2(20) & 0xFFFF,
        "ns_original": i2(22) & 0xFFFF,
        "format": i2(24),
        "sorting": i2(28),
        "measurement_system": i2(54),
        "revision": i2(300) & 0xFFFF,
        "fixed_length": i2(302),
        "n_extended_headers": i2(304),
    }


def _decode_text(raw: bytes) -> tuple[str, str]:
    """Textual header as text, and its encoding ("ebcdic" or "ascii")."""
    ebcdic = raw[:1] == b"\xc3" or (raw.count(0x40) > raw.count(0x20))
    if ebcdic:
        return raw.decode("cp037"), "ebcdic"
    return raw.decode("latin-1"), "ascii"


def read_segy(
    path: str | os.PathLike[str],
    *,
    mmap: bool = False,
    allow_partial: bool = False,
) -> RadarData:
    """Read a SEG-Y file with fixed-length traces.

    Parameters
    ----------
    path
        The ``.sgy``/``.segy`` file.
    mmap
        Memory-map the samples (big-endian samples are byte-swapped on access,
        so this returns a read-only view only for native-order data; otherwise
        the samples are loaded).
    allow_partial
        Drop an incomplete last trace instead of raising.

    Raises
    ------
    VendorFormatError
        Header or data malformed or truncated (message names file and field).
    """
    size = file_size(path)
    if size < 3600:
        raise fail(path, "binary header", f"file of {size} bytes is shorter than the 3600-byte "
                   "SEG-Y headers")
    with open(path, "rb") as f:
        text_raw = f.read(3200)
        bin_raw = f.read(400)
    endian = ">"
    bh = _bin_header(bin_raw, endian)
    if bh["format"] not in _FORMATS:
        le = _bin_header(bin_raw, "<")
        if le["format"] in _FORMATS:
            endian, bh = "<", le
        else:
            raise fail(path, "format", f"sample format code {bh['format']} is not supported")
    code, bps = _FORMATS[bh["format"]]
    n_ext = bh["n_extended_headers"]
    if n_ext < 0:
        raise fail(path, "n_extended_headers", f"{n_ext}: variable extended headers unsupported")
    offset = 3600 + 3200 * n_ext
    if offset > size:
        raise fail(path, "n_extended_headers", f"{n_ext} extended headers run past the end "
                   f"of the {size}-byte file")
    text, encoding = _decode_text(text_raw)
    ns = bh["ns"]
    tdt = _trace_dtype(endian)
    if size >= offset + 240:
        first = np.fromfile(path, dtype=tdt, count=1, offset=offset)[0]
        ns_tr = int(first["ns"])
        if ns_tr and ns_tr != ns:
            # Trust whichever one the file size agrees with (the trace's first).
            for cand in (ns_tr, ns):
                if cand and (size - offset) % (240 + cand * bps) == 0:
                    ns = cand
                    break
    if ns <= 0:
        raise fail(path, "ns", "0 samples per trace in the binary and trace headers")
    rec = 240 + ns * bps
    n, rest = divmod(size - offset, rec)
    if rest and not allow_partial:
        raise fail(path, "payload", f"{size - offset} bytes of traces is not a whole number of "
                   f"{rec}-byte traces ({ns} samples x {bps} bytes + 240): {rest} bytes "
                   "more than whole traces (truncated, or extra bytes at the end?)")
    sample_code = "u4" if code == "ibm" else code
    rdtype = np.dtype([("h", tdt), ("d", endian + sample_code, (ns,))])
    mm = np.memmap(path, dtype=rdtype, mode="r", offset=offset, shape=(n,)) if n else None
    th = np.array(mm["h"]) if mm is not None else np.zeros(0, tdt)
    if mm is None:
        samples = np.zeros((0, ns), np.float32 if code == "ibm" else np.dtype(sample_code))
    elif code == "ibm":
        samples = ibm_to_float32(mm["d"])
    elif mmap and (endian == "=" or np.dtype(endian + sample_code).isnative or bps == 1):
        samples = mm["d"]
    else:
        samples = np.asarray(mm["d"]).astype(np.dtype(sample_code).newbyteorder("="))
    del mm
    in_ps = PS_TOKEN in text.upper()
    dt_raw = bh["dt"] or (int(th["dt"][0]) if n else 0)
    if dt_raw <= 0:
        raise fail(path, "dt", "sample interval is 0 in the binary and trace headers")
    dt_s = dt_raw * (1e-12 if in_ps else 1e-6)
    exact = _EXACT_DT.search(text.upper()) if in_ps else None
    if exact:  # demine writes the interval to 12 digits in the text (the field is whole ps)
        try:
            v = float(exact.group(1)) * 1e-9
        except ValueError:
            v = math.nan
        if math.isfinite(v) and abs(v - dt_s) <= 0.5e-12:
            dt_s = v
    header: dict[str, Any] = {
        "textual_header": text,
        "textual_encoding": encoding,
        "binary_header": bh,
        "byte_order": "big" if endian == ">" else "little",
        "sample_format": bh["format"],
        "sample_interval_unit": "ps" if in_ps else "us",
        "trace_header_fields": [n_ for n_, _, _ in TRACE_FIELDS],
    }
    if code == "ibm":
        header["converted_from"] = "IBM float (format 1) to float32"
    rd = RadarData(
        samples=samples,
        sample_interval_s=dt_s,
        vendor="segy",
        path=os.fspath(path),
        header=header,
    )
    if n:
        rd.trace_headers = np.stack(
            [th[name].astype(np.float64) for name, _, _ in TRACE_FIELDS], axis=1
        )
        scal = th["scalco"].astype(np.float64)
        factor = np.where(scal > 0, scal, np.where(scal < 0, -1.0 / np.where(scal < 0, scal, 1),
                                                   1.0))
        x = th["sx"] * factor
        y = th["sy"] * factor
        if th["counit"][0] in (0, 1) and (np.ptp(x) > 0 or np.ptp(y) > 0):
            step = np.hypot(np.diff(x), np.diff(y))
            rd.trace_position_m = np.concatenate([[0.0], np.cumsum(step)])
        _time_zero(rd, th, in_ps)
    return rd


def _time_zero(rd: RadarData, th: np.ndarray, in_ps: bool) -> None:
    """Time zero from the trace headers' delay recording time, when it is usable.

    SEG-Y rev 1, trace header bytes 109-110 (``delrt``): "time in milliseconds
    between initiation time of energy source and the time when recording of
    data samples begins"; it "can be negative to accommodate negative start
    times (i.e. data recorded before time zero)", and the scalar of bytes
    215-216 applies (positive: multiplier, negative: divisor, 0: 1).  The
    first sample is therefore at ``delrt`` after time zero, and time zero at
    sample ``-delrt / dt``.  Used only when every trace gives the same non-zero
    value, the file keeps the standard units (a file storing picoseconds in
    the microsecond fields gives no unit for ``delrt``) and the time zero falls
    inside the trace; otherwise ``header["time_zero_note"]`` says why not.
    ``delrt`` = 0, the value of an unset field, claims nothing.
    """
    header = rd.header
    delrt = th["delrt"].astype(np.float64)
    if not np.any(delrt):
        return
    sc = th["time_scalar"].astype(np.float64)
    factor = np.where(sc > 0, sc, np.where(sc < 0, -1.0 / np.where(sc < 0, sc, 1.0), 1.0))
    ms = delrt * factor
    what = "SEG-Y trace header 'delrt' (bytes 109-110, x 'time_scalar' bytes 215-216)"
    if np.ptp(ms) > 0:
        header["time_zero_note"] = (f"{what} not used: it varies from trace to trace "
                                    f"({ms.min():g} to {ms.max():g} ms)")
        return
    first_ms = float(ms[0])
    if in_ps:
        header["time_zero_note"] = (
            f"{what} = {first_ms:g} not used: the file stores the sample interval in "
            "picoseconds, and no unit of 'delrt' goes with that")
        return
    tz = -first_ms * 1e-3 / rd.sample_interval_s
    if not 0.0 <= tz < rd.n_samples:
        where = "before the first sample" if tz < 0 else "after the last sample"
        header["time_zero_note"] = (
            f"{what} = {first_ms:g} ms not used: it puts time zero {where} "
            f"(sample {tz:.6g} of {rd.n_samples})")
        return
    rd.time_zero_sample = tz
    header["time_zero_source"] = (
        f"{what} = {first_ms:g} ms: the first sample lies {first_ms:g} ms from time zero, "
        f"which is sample {tz:g}")


def _ebcdic_text(lines: list[str]) -> bytes:
    card = []
    for i in range(40):
        body = lines[i] if i < len(lines) else ""
        line = f"C{i + 1:02d} {body}"
        line = line.encode("ascii", "replace").decode("ascii")[:80].upper().ljust(80)
        card.append(line)
    return "".join(card).encode("cp037")


def write_segy(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_interval_s: float,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    elevation: np.ndarray | None = None,
    text: str | list[str] = "",
    start_time: dt.datetime | None = None,
) -> Path:
    """Write a processed B-scan as a SEG-Y revision 1 file.

    Parameters
    ----------
    path
        Output file (overwritten).
    samples
        ``(n_traces, n_samples)`` array.  int16 is written as format 3, int32 as
        format 2, everything else as IEEE float32 (format 5).
    sample_interval_s
        Sample interval in seconds.  Below 1 µs it is stored in picoseconds
        (see the module docstring); it must then be at most 65.535 ns.
    x, y, elevation
        Optional per-trace coordinates in metres (stored with scalar -1000, i.e.
        to the millimetre, in source, group and CDP coordinates).
    text
        Free text (processing history…) for textual header lines C05–C36.
    start_time
        Optional acquisition time (UTC) written to every trace header.

    Returns
    -------
    Path
        The path written.
    """
    a = np.asarray(samples)
    if a.ndim != 2:
        raise ValueError(f"samples must be 2-D (traces x samples), got shape {a.shape}")
    n, ns = a.shape
    if not 0 < ns <= 65535:
        raise ValueError(f"SEG-Y allows 1..65535 samples per trace, got {ns}")
    if not (math.isfinite(sample_interval_s) and sample_interval_s > 0):
        raise ValueError(f"sample interval must be positive, got {sample_interval_s!r}")
    if a.dtype == np.int16:
        fmt, sdt = 3, np.dtype(">i2")
    elif a.dtype == np.int32:
        fmt, sdt = 2, np.dtype(">i4")
    else:
        fmt, sdt = 5, np.dtype(">f4")
    if sample_interval_s < 1e-6:
        dt_int = round(sample_interval_s * 1e12)
        unit = "ps"
    else:
        dt_int = round(sample_interval_s * 1e6)
        unit = "us"
    if not 0 < dt_int <= 65535:
        raise ValueError(f"sample interval {sample_interval_s} s does not fit SEG-Y's 16-bit "
                         f"field in {unit}")
    lines = [
        "DEMINE GPR B-SCAN (GROUND-PENETRATING RADAR)",
        f"WRITTEN BY DEMINE {__version__}",
        f"TRACES {n}  SAMPLES PER TRACE {ns}  SAMPLE FORMAT {fmt}",
        f"SAMPLE INTERVAL {sample_interval_s * 1e9:.12g} NS",
    ]
    free = text if isinstance(text, list) else [t for t in str(text).splitlines()]
    wrapped: list[str] = []
    for t in free:
        while t and len(wrapped) < 32:
            wrapped.append(t[:76])
            t = t[76:]
    lines += wrapped[:32]
    lines += [""] * (36 - len(lines))
    lines.append(PS_TOKEN if unit == "ps" else "SAMPLE INTERVAL UNIT: MICROSECONDS")
    lines += ["COORDINATES: METRES, SCALAR -1000", "SEG Y REV1", "END TEXTUAL HEADER"]
    textual = _ebcdic_text(lines)

    binh = np.zeros(400, np.uint8)

    def put(off: int, value: int, typ: str) -> None:
        binh[off : off + np.dtype(typ).itemsize] = np.frombuffer(
            np.array([value], dtype=typ).tobytes(), np.uint8
        )

    put(12, 1, ">i2")  # traces per ensemble
    put(16, dt_int, ">u2")
    put(18, dt_int, ">u2")
    put(20, ns, ">u2")
    put(22, ns, ">u2")
    put(24, fmt, ">i2")
    put(26, 1, ">i2")  # ensemble fold
    put(28, 1, ">i2")  # sorting: as recorded
    put(54, 1, ">i2")  # measurement system: metres
    put(300, 0x0100, ">u2")  # revision 1.0
    put(302, 1, ">i2")  # fixed-length traces
    put(304, 0, ">i2")  # no extended textual headers

    tdt = np.dtype([("h", _trace_dtype(">")), ("d", sdt, (ns,))])
    out = np.zeros(n, tdt)
    h = out["h"]
    h["tracl"] = h["tracr"] = h["tracf"] = h["cdp"] = np.arange(1, n + 1)
    h["fldr"] = 1
    h["trid"] = 1
    h["ns"] = ns
    h["dt"] = dt_int
    h["scalco"] = h["scalel"] = -1000
    h["counit"] = 1
    for arr, names in ((x, ("sx", "gx", "cdpx")), (y, ("sy", "gy", "cdpy"))):
        if arr is not None:
            v = np.rint(np.asarray(arr, np.float64) * 1000.0)
            if v.shape != (n,) or not np.all(np.abs(v) < 2**31):
                raise ValueError("coordinates must have one finite value per trace, < 2e6 m")
            for name in names:
                h[name] = v.astype(np.int32)
    if elevation is not None:
        v = np.rint(np.asarray(elevation, np.float64) * 1000.0)
        h["gelev"] = h["selev"] = v.astype(np.int32)
    if start_time is not None:
        h["year"] = start_time.year
        h["day"] = start_time.timetuple().tm_yday
        h["hour"], h["minute"], h["sec"] = start_time.hour, start_time.minute, start_time.second
        h["timbas"] = 4  # UTC
    out["d"] = a
    p = Path(path)
    with open(p, "wb") as f:
        f.write(textual)
        f.write(binh.tobytes())
        out.tofile(f)
    return p
