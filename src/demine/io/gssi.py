"""GSSI ``.DZT`` reader, with the ``.DZG`` (GPS) and ``.DZX`` (marks) sidecars.

Layout (GSSI SIR-3000/4000 and older controllers): one 1024-byte header per
channel, then scans, each scan holding ``rh_nsamp`` samples of every channel in
turn.  Facts that other readers get wrong, and this one keeps:

* The data offset is **not** a fixed 1024 bytes: when ``rh_data`` is below 1024
  it counts kilobytes (SIR-4000 files have ``rh_data`` = 128, i.e. a 131 072-byte
  header); otherwise the headers take ``1024 * rh_nchan`` bytes.
* 8- and 16-bit samples are **unsigned** with the zero at mid-scale (128 or
  32768), whatever ``rh_zero`` says; 32-bit samples are signed.  Samples are
  returned in their own type and :attr:`RadarData.zero_offset` says where zero is.
* Antenna names are free text that varies by controller and year; an unknown
  one is kept as text with ``frequency_hz`` NaN, never an error.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import struct
import warnings
import xml.etree.ElementTree as ET
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
    load_block,
    read_text,
)

MINHEADSIZE = 1024

#: Antenna model strings/codes to nominal centre frequency in MHz (from GSSI manuals
#: and readgssi's table); anything else is kept as text with unknown frequency.
ANTENNA_MHZ: dict[str, float] = {
    "3207": 100, "3207AP": 100, "5106": 200, "5106A": 200, "50300": 300, "350": 350,
    "350HS": 350, "D400HS": 350, "50270": 270, "50270S": 270, "D50300": 300, "5103": 400,
    "5103A": 400, "50400": 400, "50400S": 400, "800": 800, "D50800": 800, "3101": 900,
    "3101A": 900, "51600": 1600, "51600S": 1600, "62000": 2000, "62000-003": 2000,
    "62300": 2300, "62300XT": 2300, "52600": 2600, "52600S": 2600,
}  # fmt: skip

#: ``rh_system`` codes (byte 113 >> 3) to controller names.
SYSTEMS = {0: "unknown", 1: "SIR-2000", 2: "SIR-3000", 3: "SIR-3000", 4: "TerraSIRch",
           6: "SIR-20", 7: "StructureScan Mini", 8: "SIR-4000", 9: "SIR-30",
           12: "UtilityScan DF", 13: "HS", 14: "StructureScan Mini XT"}  # fmt: skip

_FIXED = struct.Struct("<HHHHHfffffH")  # rh_tag .. rh_npass, bytes 0..32


def _decode_date(word: int) -> str | None:
    """GSSI packed date (sec/2:5 min:6 hour:5 day:5 month:4 year-1980:7) to ISO text."""
    if word == 0:
        return None
    sec = (word & 0x1F) * 2
    minute = (word >> 5) & 0x3F
    hour = (word >> 11) & 0x1F
    day = (word >> 16) & 0x1F
    month = (word >> 21) & 0x0F
    year = 1980 + ((word >> 25) & 0x7F)
    try:
        return dt.datetime(year, month, day, hour, minute, min(sec, 59)).isoformat()
    except ValueError:
        return None


def _antenna_frequency(name: str) -> float:
    name = name[:64]
    if name in ANTENNA_MHZ:
        return ANTENNA_MHZ[name] * 1e6
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([MG])Hz.*", name, flags=re.IGNORECASE)
    if m:
        return float(m.group(1)) * (1e9 if m.group(2).upper() == "G" else 1e6)
    return math.nan


def parse_header(block: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Decode one 1024-byte (or shorter, at least 128-byte) DZT channel header."""
    if len(block) < 128:
        raise fail(path, "header", f"{len(block)} bytes, a DZT header needs at least 128")
    (tag, rh_data, nsamp, bits, zero, sps, spm, mpm, position, rng, npass) = _FIXED.unpack_from(
        block, 0
    )
    cdt, mdt = struct.unpack_from("<II", block, 32)
    rgain, nrgain, text, ntext, proc, nproc, nchan = struct.unpack_from("<HHHHHHH", block, 40)
    epsr, top, depth = struct.unpack_from("<fff", block, 54)
    ant = block[98:112].split(b"\x00", 1)[0].decode("latin-1").strip()
    vsbyte = block[113]
    name = block[114:126].split(b"\x00", 1)[0].decode("latin-1").strip()
    h: dict[str, Any] = {
        "rh_tag": tag,
        "rh_data": rh_data,
        "rh_nsamp": nsamp,
        "rh_bits": bits,
        "rh_zero": zero,
        "rhf_sps": sps,
        "rhf_spm": spm,
        "rhf_mpm": mpm,
        "rhf_position": position,
        "rhf_range": rng,
        "rh_npass": npass,
        "rhb_cdt": _decode_date(cdt),
        "rhb_mdt": _decode_date(mdt),
        "rh_rgain": rgain,
        "rh_nrgain": nrgain,
        "rh_text": text,
        "rh_ntext": ntext,
        "rh_proc": proc,
        "rh_nproc": nproc,
        "rh_nchan": nchan,
        "rhf_epsr": epsr,
        "rhf_top": top,
        "rhf_depth": depth,
        "rh_dtype": block[97],
        "rh_antname": ant,
        "rh_version": vsbyte & 7,  # bits 0-2 (bits 3-7 are the system)
        "rh_system": vsbyte >> 3,
        "rh_system_name": SYSTEMS.get(vsbyte >> 3, "unknown"),
        "rh_name": name,
    }
    return h


def _variable_parts(path: str | os.PathLike[str], h: dict[str, Any], end: int) -> dict[str, Any]:
    """Range gain, text and processing history, kept only when inside the header area."""
    out: dict[str, Any] = {}
    with open(path, "rb") as f:
        for key, off, n in (
            ("range_gain", h["rh_rgain"], h["rh_nrgain"]),
            ("text", h["rh_text"], h["rh_ntext"]),
            ("processing_history", h["rh_proc"], h["rh_nproc"]),
        ):
            if 0 < n and 128 <= off and off + n <= end:
                f.seek(off)
                raw = f.read(n)
                if key == "text":
                    out[key] = raw.split(b"\x00", 1)[0].decode("latin-1")
                else:
                    out[key + "_hex"] = raw.hex()
    return out


def data_offset(h: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """Byte offset of the first scan (see the module docstring)."""
    rh_data = h["rh_data"]
    nchan = max(h["rh_nchan"], 1)
    if rh_data == 0:
        raise fail(path, "rh_data", "0: no offset to the data")
    if rh_data < MINHEADSIZE:
        return rh_data * MINHEADSIZE
    return MINHEADSIZE * nchan


def read_dzt(
    path: str | os.PathLike[str],
    *,
    channel: int = 0,
    mmap: bool = False,
    allow_partial: bool = False,
    sidecars: bool = True,
) -> RadarData:
    """Read one channel of a GSSI ``.DZT`` file (plus ``.DZG``/``.DZX`` when present).

    Parameters
    ----------
    path
        The ``.DZT`` file.
    channel
        Channel to return (0-based) of a multi-channel file.
    mmap
        Return a read-only memory map instead of loading the samples.
    allow_partial
        Drop a trailing incomplete scan (recorded in ``header["dropped_bytes"]``)
        instead of raising; a file cut by a crash can then still be read.
    sidecars
        Read the ``.DZG`` and ``.DZX`` files next to *path* when present.

    Raises
    ------
    VendorFormatError
        The header or payload is malformed or truncated; the message names the
        file and the field.
    """
    size = file_size(path)
    with open(path, "rb") as f:
        block0 = f.read(MINHEADSIZE)
    h = parse_header(block0, path)
    nchan = h["rh_nchan"] or 1
    if nchan > 64:
        raise fail(path, "rh_nchan", f"{h['rh_nchan']} channels is not plausible (max 64)")
    if not (0 <= channel < nchan):
        raise fail(path, "channel", f"channel {channel} requested, file has {nchan}")
    nsamp, bits = h["rh_nsamp"], h["rh_bits"]
    if nsamp < 2:
        raise fail(path, "rh_nsamp", f"{nsamp} samples per scan")
    dtypes = {8: np.dtype(np.uint8), 16: np.dtype("<u2"), 32: np.dtype("<i4")}
    if bits not in dtypes:
        raise fail(path, "rh_bits", f"{bits} bits per sample; expected 8, 16 or 32")
    dtype = dtypes[bits]
    offset = data_offset(h, path)
    if offset > size:
        raise fail(path, "rh_data", f"data offset {offset} beyond the end of the file ({size})")
    # Channel headers: channel k's header at k*1024 when it lies in the header area.
    ch = h
    if channel > 0 and (channel + 1) * MINHEADSIZE <= offset:
        with open(path, "rb") as f:
            f.seek(channel * MINHEADSIZE)
            chb = f.read(MINHEADSIZE)
        cand = parse_header(chb, path)
        if cand["rh_nsamp"] == nsamp and cand["rh_bits"] == bits:
            ch = cand
    rng = ch["rhf_range"]
    if not (math.isfinite(rng) and rng > 0):
        raise fail(path, "rhf_range", f"{rng!r} ns is not a finite positive time range")
    scan_items = nsamp * nchan
    payload = size - offset
    n_scans, rest = divmod(payload, scan_items * dtype.itemsize)
    header = dict(h)
    header["data_offset"] = offset
    header.update(_variable_parts(path, h, offset))
    if ch is not h:
        header["channel_header"] = ch
    if rest:
        if not allow_partial:
            raise fail(
                path,
                "payload",
                f"{payload} bytes after the {offset}-byte header is not a whole number of "
                f"{scan_items * dtype.itemsize}-byte scans (truncated file?)",
            )
        header["dropped_bytes"] = int(rest)
    flat = load_block(path, dtype, offset, n_scans * scan_items, mmap)
    data = flat.reshape(n_scans, nchan, nsamp)[:, channel, :]
    if not mmap and nchan > 1:
        data = np.ascontiguousarray(data)
    sps, spm = h["rhf_sps"], h["rhf_spm"]
    if bits in (8, 16):
        # SIR-3000 and its kind: the first two words of each scan are its
        # counter and mark flag, not samples (a time-zero pick had taken them
        # for the direct wave: depths 0.1 m off)
        header["header_samples"] = 2
    rd = RadarData(
        samples=data,
        sample_interval_s=rng * 1e-9 / nsamp,
        vendor="gssi",
        path=os.fspath(path),
        header=header,
        zero_offset={8: 128.0, 16: 32768.0}.get(bits, 0.0),
        channel=channel,
        n_channels=nchan,
        antenna=ch["rh_antname"],
        frequency_hz=_antenna_frequency(ch["rh_antname"]),
    )
    if math.isfinite(sps) and sps > 0:
        rd.trace_interval_s = 1.0 / sps
        rd.trace_time_s = np.arange(n_scans) / sps
    if math.isfinite(spm) and spm > 0:
        rd.trace_interval_m = 1.0 / spm
        rd.trace_position_m = np.arange(n_scans) / spm
    if sidecars:
        dzg = find_sibling(path, "DZG")
        if dzg is not None:
            created = dt.datetime.fromisoformat(h["rhb_cdt"]) if h["rhb_cdt"] else None
            gps_sidecar(rd, "dzg", dzg, "DZG", lambda: read_dzg(dzg, date=created))
        dzx = find_sibling(path, "DZX")
        if dzx is not None:
            try:
                info = read_dzx(dzx)
            except (ET.ParseError, ValueError, VendorFormatError) as exc:
                warnings.warn(f"{dzx}: unreadable DZX sidecar ignored: {exc}", stacklevel=2)
                header["dzx"] = {"path": os.fspath(dzx), "error": str(exc)}
            else:
                header["dzx"] = {"path": os.fspath(dzx), **info}
                try:
                    dzx_spm = float(info.get("scanPerMeters", "nan"))
                except ValueError:
                    dzx_spm = math.nan
                if rd.trace_position_m is None and math.isfinite(dzx_spm) and dzx_spm > 0:
                    # (SIR-4000: the header's rhf_spm is 0 and the DZX holds the
                    # survey wheel's scans per metre, as readgssi reads it)
                    rd.trace_interval_m = 1.0 / dzx_spm
                    rd.trace_position_m = np.arange(n_scans) / dzx_spm
                    header["trace_interval_source"] = "DZX scanPerMeters"
                rd.marks = np.unique(
                    np.asarray([m for m in info["marks"] if 0 <= m < n_scans], dtype=np.int64)
                )
                if rd.marks.size:
                    header["marks_source"] = "DZX"
    if not rd.marks.size and n_scans and "marks_source" not in header:
        # SIR-3000 and similar flag a marked scan in its second word (the first is
        # the scan counter); a flag on every scan means the word is something else.
        word = np.asarray(data[:, 1])
        marked = np.flatnonzero(word != 0)
        if 0 < marked.size < n_scans:
            rd.marks = marked.astype(np.int64)
            header["marks_source"] = "scan word 1"
    return rd


def read_dzg(
    path: str | os.PathLike[str], *, date: dt.date | dt.datetime | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a GSSI ``.DZG`` GPS sidecar.

    The file alternates ``$GSSIS,<scan>,<...>`` lines and NMEA sentences; each GGA
    is attached to the scan of the ``$GSSIS`` line before it.  GGA sentences
    without a fix (quality 0, empty fields) give rows with NaN position.  A date
    from an RMC or ZDA sentence turns GGA times into UTC ns (also those of the GGA
    sentences before the first one); without one, *date*
    (the DZT creation time, from the controller clock) is used, moved to the next
    day when the first GGA time of day is more than 12 h before its time of day.

    An empty file, or one of ``$GSSIS`` lines without sentences (a GPS that sent
    nothing), gives an empty table.

    Returns
    -------
    (table, stats)
        GPS column arrays (see :class:`RadarData`) and counts of sentences read,
        without fix, and skipped as malformed.

    Raises
    ------
    VendorFormatError
        The file has text but not one ``$GSSIS`` line or NMEA sentence (not a
        DZG file, or garbage): the message names the file and quotes the first
        line.
    """
    text = read_text(path, "DZG")
    rows: list[tuple] = []
    tods: list[float] = []  # each row's GGA time of day
    scan: int | None = None
    bad = nofix = 0
    known = 0  # lines recognised as a $GSSIS line or an NMEA sentence
    first_line = ""
    day: dt.date | None = None
    source = "none"
    creation_tod = math.nan
    if isinstance(date, dt.datetime):
        day = date.date()
        creation_tod = date.hour * 3600.0 + date.minute * 60.0 + date.second
        source = "DZT creation date (controller clock)"
    elif isinstance(date, dt.date):
        day, source = date, "caller"
    prev_tod = -1.0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        first_line = first_line or line
        if line.upper().startswith("$GSSIS"):
            parts = line.split("*", 1)[0].split(",")
            try:
                scan = int(parts[1])
            except (IndexError, ValueError):
                bad += 1
                scan = None
            else:
                known += 1
            continue
        try:
            s = nmea.parse(line, require_checksum=False)
        except FrameError:
            bad += 1
            continue
        known += 1
        if isinstance(s, nmea.RMC | nmea.ZDA) and s.date is not None:
            if source != "RMC/ZDA":
                # rows so far used a guessed date (or none): date them by this
                # sentence's, a day earlier for a time of day more than 12 h
                # after its own (before midnight; a receiver sends GGA first)
                rows = [r[:1] + (_dated(s.date, s.time_of_day, tod),) + r[2:]
                        for r, tod in zip(rows, tods, strict=True)]
            day, source = s.date, "RMC/ZDA"
            prev_tod = s.time_of_day if not math.isnan(s.time_of_day) else prev_tod
            continue
        if not isinstance(s, nmea.GGA) or scan is None:
            continue
        if not s.has_fix:
            nofix += 1
        tod = s.time_of_day
        t = NO_TIME
        if day is not None and not math.isnan(tod):
            try:
                if prev_tod < 0 and creation_tod - tod > 43200:  # began just before midnight
                    day = day + dt.timedelta(days=1)
                if 0 <= tod < prev_tod - 43200:  # crossed UTC midnight
                    day = day + dt.timedelta(days=1)
            except OverflowError:  # 31 Dec 9999 from a corrupt ZDA
                day = None
                continue
            prev_tod = tod
            t = nmea.utc_ns(day, tod) or NO_TIME
        rows.append((scan, t, s.lat, s.lon, s.altitude, s.fix_quality, s.satellites, s.hdop))
        tods.append(tod)
        scan = None
    if first_line and not known:
        raise fail(path, "DZG", f"none of its {bad} non-empty lines is a $GSSIS line or an "
                   f"NMEA sentence; first: {first_line[:60]!r}")
    stats = {"sentences": len(rows), "no_fix": nofix, "malformed": bad, "date_source": source}
    return gps_table(rows), stats


def _dated(date: dt.date, date_tod: float, tod: float) -> int:
    """UTC ns of a GGA time of day ``tod`` read before a sentence of ``date`` at
    ``date_tod``: that date, or the day before when ``tod`` is more than 12 h
    after ``date_tod`` (it was before midnight)."""
    if math.isnan(tod):
        return NO_TIME
    if not math.isnan(date_tod) and tod - date_tod > 43200:
        try:
            date = date - dt.timedelta(days=1)
        except OverflowError:  # (1 Jan of year 1 from a corrupt ZDA)
            return NO_TIME
    return nmea.utc_ns(date, tod) or NO_TIME


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_dzx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a GSSI ``.DZX`` XML sidecar: global properties, waypoints and user marks."""
    text = read_text(path, "DZX")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise fail(path, "xml", f"not a DZX XML file ({exc})") from None
    out: dict[str, Any] = {"global": {}, "waypoints": [], "marks": []}
    for el in root.iter():
        tag = _strip_ns(el.tag)
        if tag == "TargetWayPt":  # processed files: <scanSampChanProp>scan,sample,chan</...>
            for c in el:
                if _strip_ns(c.tag) == "scanSampChanProp" and c.text:
                    try:
                        out["marks"].append(int(c.text.split(",")[0]))
                    except ValueError:
                        pass
        if tag == "GlobalProperties":
            for child in el:
                out["global"][_strip_ns(child.tag)] = (child.text or "").strip()
        elif tag == "WayPt":
            wp: dict[str, str] = {
                _strip_ns(c.tag): (c.text or "").strip() for c in el if len(c) == 0
            }
            if "scan" not in wp:
                continue
            try:
                scan = int(wp["scan"])
            except ValueError:
                continue
            out["waypoints"].append(wp)
            if "mark" in wp or "markType" in wp:
                out["marks"].append(scan)
    for key in ("system", "softwareVersion", "scanPerMeters"):
        el = next((e for e in root.iter() if _strip_ns(e.tag) == key), None)
        if el is not None:
            out[key] = (el.text or "").strip()
    return out


def looks_like_dzt(head: bytes, size: int) -> bool:
    """Cheap magic test used when the extension does not say."""
    if len(head) < 128:
        return False
    tag, rh_data, nsamp, bits = struct.unpack_from("<HHHH", head, 0)
    return (tag & 0xFF) in (0x00, 0xFF) and bits in (8, 16, 32) and nsamp > 1 and rh_data > 0


def channel_count(path: str | os.PathLike[str]) -> int:
    """Number of channels of a DZT file."""
    with open(path, "rb") as f:
        h = parse_header(f.read(MINHEADSIZE), path)
    return max(int(h["rh_nchan"]), 1)


__all__ = ["read_dzt", "read_dzg", "read_dzx", "parse_header", "channel_count"]
