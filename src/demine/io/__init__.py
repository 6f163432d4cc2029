"""Readers for the radar files the field already has, and a SEG-Y writer.

``read(path)`` picks the reader from the file extension (or, failing that, from
the first bytes) and returns a :class:`RadarData`: the raw samples in the
file's own type plus metadata.  Supported:

=================  ==========================================  ====================
vendor             files                                       reader
=================  ==========================================  ====================
GSSI               ``.DZT`` (+ ``.DZG`` GPS, ``.DZX`` marks)   :func:`read_dzt`
MALÅ RAMAC         ``.rad`` + ``.rd3``/``.rd7`` (+ ``.cor``)   :func:`read_ramac`
S&S pulseEKKO      ``.HD`` + ``.DT1`` (+ ``.GPS``)             :func:`read_dt1`
SEG-Y              ``.sgy``/``.segy``                          :func:`read_segy`
gprMax (FDTD)      ``.out`` (3.x), ``.h5`` (4.x, by content)   :func:`read_gprmax`
                   one file per trace (runs, not merged)       :func:`read_gprmax_series`
=================  ==========================================  ====================

A metal detector's readings table (CSV, TSV, Geosoft XYZ) is read by
:func:`read_emi_table` (:mod:`demine.io.emi_table`).

A ``.h5``/``.hdf5`` file is taken as gprMax output only when its root has a
``gprMax`` attribute (demine's own recordings are HDF5 too and are refused).

Every malformed or truncated file raises :class:`demine.errors.VendorFormatError`
naming the file and the field; sizes in headers are checked against the file
size before anything is allocated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import VendorFormatError
from ._common import GPS_COLUMNS, NO_TIME, RadarData, check_plausible, file_size
from .emi_table import EMITable, read_emi_table
from .gprmax import _HDF5_MAGIC, is_gprmax, read_gprmax, read_gprmax_series
from .gssi import channel_count, read_dzg, read_dzt, read_dzx
from .mala import read_cor, read_ramac
from .pulseekko import read_dt1
from .segy import read_segy, write_segy

__all__ = [
    "EMITable",
    "GPS_COLUMNS",
    "NO_TIME",
    "RadarData",
    "VENDORS",
    "detect",
    "read",
    "read_channels",
    "read_cor",
    "read_dt1",
    "read_dzg",
    "read_dzt",
    "read_dzx",
    "read_emi_table",
    "read_gprmax",
    "read_gprmax_series",
    "read_ramac",
    "read_segy",
    "write_segy",
]

_BY_EXT = {
    ".dzt": "gssi",
    ".rad": "mala",
    ".rd3": "mala",
    ".rd7": "mala",
    ".dt1": "pulseekko",
    ".hd": "pulseekko",
    ".sgy": "segy",
    ".segy": "segy",
    ".seg": "segy",
    ".out": "gprmax",
}

_READERS = {"gssi": read_dzt, "mala": read_ramac, "pulseekko": read_dt1, "segy": read_segy,
            "gprmax": read_gprmax}
#: HDF5 extensions: gprMax 4 output only when the content says so.
_HDF5_EXT = (".h5", ".hdf5", ".hdf")

#: Vendor names accepted by ``read(..., vendor=...)``.
VENDORS = tuple(_READERS)


def detect(path: str | os.PathLike[str]) -> str:
    """Return the vendor of *path* from its extension, else from its first bytes.

    Raises
    ------
    VendorFormatError
        The format cannot be recognised.
    """
    p = Path(path)
    v = _BY_EXT.get(p.suffix.lower())
    if v is not None:
        return v
    if p.suffix.lower() in _HDF5_EXT:
        file_size(p)  # a clear error for a missing file
        if is_gprmax(p):
            return "gprmax"
        with open(p, "rb") as f:  # (at 0, or after a user block of 512 * 2**k bytes)
            head = f.read(1 << 16)
        signed = any(head[o:o + 8] == _HDF5_MAGIC
                     for o in (0, *(512 << k for k in range(7))))
        if not signed:  # (a damaged file had been called an HDF5 file of another tool)
            raise VendorFormatError(f"{os.fspath(p)}: not an HDF5 file (no HDF5 signature at "
                                    "its start: damaged, or another format named .h5?)")
        try:   # (signed but unreadable: a cut gprMax output had been called another tool's)
            import h5py

            h5py.File(p, "r").close()
        except OSError as exc:
            raise VendorFormatError(f"{os.fspath(p)}: HDF5 file that cannot be opened "
                                    f"(truncated or damaged?): {exc}") from None
        raise VendorFormatError(f"{os.fspath(p)}: HDF5 file without a root 'gprMax' attribute: "
                                "not a radar file this reader knows (a demine recording "
                                "opens with demine.recording.Recording)")
    v = _detect_content(p)
    if v is not None:
        return v
    raise VendorFormatError(f"{os.fspath(p)}: unrecognised radar file format (extension "
                            f"{p.suffix!r}); expected one of {sorted(set(_BY_EXT))}")


#: The formats whose files :func:`_detect_content` always tells from their bytes
#: (SEG-Y is told only by a textual header beginning with "C", which the reader
#: does not require: a SEG-Y file it misses is not said to be something else).
_BY_CONTENT = ("gssi", "gprmax")


def _detect_content(p: Path) -> str | None:
    """The vendor of a file from its first bytes (SEG-Y, GSSI, gprMax), or None."""
    size = file_size(p)
    with open(p, "rb") as f:
        head = f.read(3600)
    from .gssi import looks_like_dzt
    from .segy import _FORMATS

    if len(head) >= 3600:
        fmt_be = int.from_bytes(head[3224:3226], "big")
        fmt_le = int.from_bytes(head[3224:3226], "little")
        if head[:1] in (b"\xc3", b"C") and (fmt_be in _FORMATS or fmt_le in _FORMATS):
            return "segy"
    if looks_like_dzt(head, size):
        return "gssi"
    if head.startswith(_HDF5_MAGIC) and is_gprmax(p):
        return "gprmax"
    return None


def read(path: str | os.PathLike[str], *, vendor: str | None = None, **kwargs: Any) -> RadarData:
    """Read a vendor radar file.

    Parameters
    ----------
    path
        The data or header file.
    vendor
        Force a reader (``"gssi"``, ``"mala"``, ``"pulseekko"``, ``"segy"``,
        ``"gprmax"``) instead of detecting it.
    **kwargs
        Passed to the reader (``mmap=True``, ``allow_partial=True``,
        ``channel=k`` for GSSI, ``sidecars=False``; ``component="Hz"``,
        ``rx=2`` for gprMax).

    Returns
    -------
    RadarData

    Raises
    ------
    VendorFormatError
        Unknown format, or a malformed or truncated file.
    """
    v = vendor or detect(path)
    if v not in _READERS:
        raise VendorFormatError(f"{os.fspath(path)}: unknown vendor {v!r}; use one of {VENDORS}")
    channel = kwargs.pop("channel", 0)
    if v == "gssi":
        kwargs["channel"] = channel
    elif channel != 0:
        raise VendorFormatError(
            f"{os.fspath(path)}: field 'channel': {v} files hold one channel, {channel} asked"
        )
    return check_plausible(
        _hinted(path, v, vendor is not None, lambda: _READERS[v](path, **kwargs)))


def _hinted(path: str | os.PathLike[str], v: str, given: bool, reader: Any) -> Any:
    """``reader()``; a file read by its extension that fails says so, and what
    its bytes look like (a renamed file had got only the other format's
    complaint, e.g. "sample format code 1633 is not supported")."""
    try:
        return reader()
    except VendorFormatError as exc:
        if given or _BY_EXT.get(Path(path).suffix.lower()) != v:
            raise
        try:
            other = _detect_content(Path(path))
        except (OSError, VendorFormatError):
            other = None
        if other == v or (other is None and v not in _BY_CONTENT):
            raise   # (its bytes are of the format chosen, or cannot be told)
        hint = (f"its bytes look like a {other} file: give --vendor {other}" if other else
                f"its bytes do not look like a {v} file, the format its extension "
                f"{Path(path).suffix!r} chose; --vendor (vendor=) chooses another reader")
        raise VendorFormatError(f"{exc} ({hint})") from exc


def read_channels(path: str | os.PathLike[str], **kwargs: Any) -> list[RadarData]:
    """Read every channel of a file (one :class:`RadarData` per channel)."""
    given = kwargs.pop("vendor", None)
    v = given or detect(path)
    if v == "gssi":
        return [check_plausible(rd) for rd in _hinted(path, v, given is not None, lambda: [
            read_dzt(path, channel=k, **kwargs) for k in range(channel_count(path))])]
    return _hinted(path, v, given is not None, lambda: [read(path, vendor=v, **kwargs)])
