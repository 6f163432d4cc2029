"""Exports for mine-action information systems: alarms and coverage in WGS 84.

Mine-action information systems (IMSMA Core and its peers) keep geometry in
WGS 84 decimal degrees; GeoJSON (RFC 7946: longitude first, no ``crs``
member) and CSV with decimal-degree latitude/longitude are the practical
exchange formats, KML the one field teams open in a globe viewer.  Each alarm
carries the fields recorded for a found item: class/label, depth, confidence,
sensor, operator, UTC time and the GPS fix quality at that moment (empty or
null when unknown: no GPS stream with fix qualities, or the last fix older
than :data:`FIX_MAX_AGE` or two of the receiver's intervals).

Positions come from the recording's local frame (``origin_lon``,
``origin_lat``, ``bearing_deg`` root attributes, see ``docs/format.md``),
which the recorder anchors on the GPS stream.  A recording without any
geographic reference cannot be exported in WGS 84: :func:`export_alarms` says
so, and exports local coordinates only when asked (``local=True``, CSV only).

The CSV is UTF-8 without a byte-order mark (as GDAL and most scientific tools
write it); its text cells are guarded against formula injection when a
spreadsheet opens the file (see :func:`export_alarms`).

An alarm without a position (NaN ``x``, ``y``: the tracker had no fix) is
still exported, never dropped: a GeoJSON Feature with a ``null`` geometry
(RFC 7946, section 3.2), a KML Placemark without a Point, a CSV row with
empty coordinates; a warning says how many.

Coverage is the ground the sensor actually searched: the footprint swept along
the path while the sensor was at a valid height, as a raster
(:func:`coverage`) and as polygons (:func:`coverage_outlines`: the covered
cells dissolved into valid polygons whose holes are the unsearched pockets;
:func:`coverage_polygons`: the same area as rectangles), with the uncovered
holes larger than a given area flagged as gaps.  In GeoJSON the searched area
is one valid MultiPolygon (exterior rings counter-clockwise, holes clockwise,
polygons meeting at most at a point), cut in two at the antimeridian
(RFC 7946, section 3.1.9).
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib.util
import io
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from ._outputs import replace_text
from .errors import ConfigError
from .positions import LocalFrame

__all__ = [
    "CoverageResult", "alarm_records", "coverage", "coverage_outlines", "coverage_polygons",
    "export_alarms", "utm",
]

FORMATS = ("geojson", "csv", "kml")


def utm(lon: np.ndarray, lat: np.ndarray, zone_of: tuple[float, float] | None = None
        ) -> tuple[str, np.ndarray, np.ndarray] | None:
    """UTM zone name, easting and northing (m) of WGS 84 points, via pyproj.

    The zone is that of ``zone_of`` (lon, lat; default the first point), so a
    lane that straddles a zone boundary stays in one zone; the grid's
    exceptions are followed (zone 32 over south-western Norway, 31/33/35/37
    over Svalbard).  So is its hemisphere: a lane whose origin lies just north
    of the equator gives the points south of it negative northings in the
    northern zone (``35N``, -18.96 m), not ``35S`` 9 999 981.04 m.  Returns
    None when pyproj is not installed (``pip install 'demine[campaign]'``) or
    the zone's point lies outside UTM's latitudes (80° S to 84° N; the polar
    regions use UPS).
    """
    try:
        from pyproj import Transformer
    except ImportError:
        return None
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if zone_of is None:
        ok = np.isfinite(lon) & np.isfinite(lat)
        if not ok.any():
            return None
        zone_of = (float(lon[ok][0]), float(lat[ok][0]))
    if not -80.0 <= zone_of[1] <= 84.0:
        return None
    zone = _utm_zone(*zone_of)
    north = zone_of[1] >= 0
    epsg = (32600 if north else 32700) + zone
    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    e, n = tr.transform(lon, lat)
    return f"{zone}{'N' if north else 'S'}", np.asarray(e), np.asarray(n)


def _utm_zone(lon: float, lat: float) -> int:
    """UTM zone number of a point, with the Norway and Svalbard exceptions."""
    lon = (lon + 180.0) % 360.0 - 180.0
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        return 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return zone


def _iso(ns: int) -> str:
    if ns <= 0:
        return ""
    return (_dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))


#: Oldest fix (s) whose quality :func:`alarm_records` gives an alarm, unless
#: the receiver's own interval is longer (then twice that).
FIX_MAX_AGE = 1.0


def _fix_at(rec: Any, t: np.ndarray) -> np.ndarray:
    """GPS fix quality at each time: that of the last fix at or before it, if
    that fix is at most :data:`FIX_MAX_AGE` s old (or twice the receiver's
    median interval); -1 when unknown (no GPS stream with fix qualities, no
    time, or the fixes had stopped: a quality from minutes before says
    nothing of the position then)."""
    out = np.full(t.shape, -1, dtype=np.int64)
    for s in rec.streams.values():
        if s.kind != "gps" or len(s) == 0 or "fix_quality" not in s.field_names:
            continue
        d = s.read(fields=["time", "fix_quality"])
        order = np.argsort(d["time"], kind="stable")
        ts, fq = d["time"][order].astype(np.int64), d["fix_quality"][order]
        step = np.diff(ts)
        step = step[step > 0]
        age_ns = max(FIX_MAX_AGE * 1e9, 2.0 * float(np.median(step)) if step.size else 0.0)
        idx = np.searchsorted(ts, t, side="right") - 1
        ok = (idx >= 0) & (t > 0)
        ok[ok] &= (t[ok] - ts[idx[ok]]) <= age_ns
        out[ok] = fq[idx[ok]]
        break
    return out


def _times_ns(t: Any, n: int) -> np.ndarray:
    """Alarm times as int64 UTC ns; a missing time (NaN in a CSV) becomes 0 (none)."""
    if t is None:
        return np.zeros(n, dtype=np.int64)
    t = np.asarray(t)
    if t.dtype.kind in "iu":
        return t.astype(np.int64)
    t = np.asarray(t, dtype=np.float64)
    ok = np.isfinite(t) & (np.abs(t) < 2.0**63)
    return np.where(ok, t, 0.0).astype(np.int64)


def _this_recordings(alarms: dict[str, np.ndarray], path: str | Path) -> dict[str, np.ndarray]:
    """The alarms of a table with a ``file`` column (one table for several
    recordings, as ``demine evaluate`` takes) that belong to ``path``: those
    naming it (:func:`demine.evaluate.file_rows`: by path, or a bare file name
    by name), or no file.  The others are in another recording's local frame
    and would be placed wrongly."""
    from .evaluate import file_rows

    if "file" not in alarms:
        return alarms
    values = np.array([str(v).strip() for v in alarms["file"]], dtype=object)
    mine = file_rows(values, path) | (values == "")
    if mine.all():
        return alarms
    others = sorted(set(values[~mine].tolist()))
    shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
    if not mine.any():
        raise ConfigError(f"{path}: the alarms' 'file' column names only other recordings "
                          f"({shown}), none is {Path(path).name}")
    warnings.warn(f"{int((~mine).sum())} alarms of other recordings ({shown}) left out: "
                  f"their positions are in another local frame than {Path(path).name}'s",
                  stacklevel=3)
    return {k: np.asarray(v)[mine] for k, v in alarms.items()}


def alarm_records(path: str | Path, *, alarms: dict[str, np.ndarray] | None = None,
                  local: bool = False) -> tuple[list[dict[str, Any]], LocalFrame | None]:
    """Alarms of a recording as records with WGS 84 (and local) coordinates.

    Parameters
    ----------
    path : path
        The recording (its alarms table is used unless ``alarms`` is given).
    alarms : mapping of column arrays, optional
        Alarms to export instead (e.g. from :func:`demine.pipeline.detect_recording`).
    local : bool
        Allow a recording without geographic reference (local x, y only).

    Raises
    ------
    ConfigError
        No geographic reference and ``local`` is False.
    """
    from .recording import Recording, attr_text

    with Recording(path) as rec:
        frame = LocalFrame.from_attrs(rec.attrs)
        if frame is None and not local:
            raise ConfigError(
                f"{path}: no geographic reference (no GPS stream anchored the local frame, no "
                "origin_lon/origin_lat attributes); cannot export WGS 84 positions. "
                "Use --local to export local x, y coordinates (CSV only)"
            )
        a = rec.alarms if alarms is None else _this_recordings(alarms, path)
        for need in ("x", "y"):
            if need not in a:
                raise ConfigError(f"{path}: the alarms have no {need!r} column")
        n = len(a["x"])
        t = _times_ns(a.get("time"), n)
        fix = _fix_at(rec, t)
        operator = attr_text(rec.attrs.get("operator"))
        site = attr_text(rec.attrs.get("site"))
        lane = attr_text(rec.attrs.get("lane_id"))
    x = np.asarray(a["x"], dtype=np.float64)
    y = np.asarray(a["y"], dtype=np.float64)
    lon = lat = np.full(n, np.nan)
    zone, east, north = "", np.full(n, np.nan), np.full(n, np.nan)
    if frame is not None:
        lon, lat = frame.to_geo(x, y)
        u = utm(lon, lat, (frame.origin_lon, frame.origin_lat))
        if u is not None:
            zone, east, north = u
        elif n and importlib.util.find_spec("pyproj") is None:
            # (the columns had come out empty without a word)
            warnings.warn("UTM columns (utm_zone, easting_m, northing_m) left empty: pyproj "
                          "is not installed (pip install 'demine[campaign]')", stacklevel=2)

    def col(name: str, default: Any) -> np.ndarray:
        return np.asarray(a[name]) if name in a else np.full(n, default, dtype=object)

    p_mine = col("p_mine", np.nan).astype(float)
    score = col("score", np.nan).astype(float)
    label = col("label", "")
    stream = col("stream", "")
    depth = col("depth", np.nan).astype(float)
    records = []
    for i in range(n):
        cls = str(label[i]) or "alarm"
        if np.isfinite(p_mine[i]):
            cls = "suspected mine" if p_mine[i] >= 0.5 else "suspected clutter"
        records.append({
            "id": f"{lane or 'lane'}-A{i + 1:04d}",
            "class": cls,
            "lon": None if not np.isfinite(lon[i]) else round(float(lon[i]), 8),
            "lat": None if not np.isfinite(lat[i]) else round(float(lat[i]), 8),
            "utm_zone": zone,
            "easting_m": None if not np.isfinite(east[i]) else round(float(east[i]), 3),
            "northing_m": None if not np.isfinite(north[i]) else round(float(north[i]), 3),
            "x_m": None if not np.isfinite(x[i]) else round(float(x[i]), 4),
            "y_m": None if not np.isfinite(y[i]) else round(float(y[i]), 4),
            "depth_m": None if not np.isfinite(depth[i]) else round(float(depth[i]), 4),
            "confidence": None if not np.isfinite(p_mine[i]) else round(float(p_mine[i]), 4),
            "score": None if not np.isfinite(score[i]) else round(float(score[i]), 4),
            "sensor": str(stream[i]),
            "operator": operator,
            "site": site,
            "lane": lane,
            "time_utc": _iso(int(t[i])),
            "fix_quality": int(fix[i]) if fix[i] >= 0 else None,
        })
    return records, frame


def _write_geojson(records: list[dict], out: Path, extra: list[dict] | None = None) -> None:
    features = []
    for r in records:
        props = {k: v for k, v in r.items() if k not in ("lon", "lat")}
        # (no position: a null geometry, RFC 7946 section 3.2, rather than no feature)
        geometry = None if r["lon"] is None else {"type": "Point",
                                                  "coordinates": [r["lon"], r["lat"]]}
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    features.extend(extra or [])
    # (allow_nan=False: NaN is not JSON; every number here is finite or null)
    replace_text(out, json.dumps({"type": "FeatureCollection", "features": features},
                                  indent=1, allow_nan=False))


_CSV_KEYS = ("id", "class", "lon", "lat", "utm_zone", "easting_m", "northing_m", "x_m", "y_m",
             "depth_m", "confidence", "score", "sensor", "operator", "site", "lane",
             "time_utc", "fix_quality")


#: What a spreadsheet takes for the start of a formula in a CSV cell (OWASP,
#: "CSV injection"): a text cell starting with one is written behind a ``'``.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# a plain decimal number, which a spreadsheet reads as the number it is
_CSV_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _plain(value: float) -> str:
    """A number in plain decimals (``0.00000708``, not ``7.08e-06``)."""
    return np.format_float_positional(float(value), trim="0")


def _csv_cell(value: Any) -> Any:
    """A value as a CSV cell a spreadsheet does not evaluate: empty for None,
    a text starting with one of :data:`CSV_FORMULA_START` behind a single
    quote (``'=1+1``, shown as the text ``=1+1``), unless it is a plain
    number (``-0.12``); numbers and other text as they are."""
    if value is None:
        return ""
    if isinstance(value, float):   # (7.08e-06 near the equator: not every GIS reads it)
        return _plain(value)
    # (a text that already starts with quotes before such a character gets one
    # more, so that reading it back, one quote off, gives it as it was)
    if isinstance(value, str) and value.lstrip("'").startswith(CSV_FORMULA_START) \
            and not _CSV_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _write_csv(records: list[dict], out: Path, local: bool) -> None:
    """Write the alarm records as CSV: UTF-8 without a byte-order mark, a
    header row, an empty cell for a value that is None, and the text cells
    guarded against formula injection (:func:`_csv_cell`)."""
    keys = list(records[0]) if records else list(_CSV_KEYS)
    if local:
        keys = [k for k in keys if k not in ("lon", "lat", "utm_zone", "easting_m", "northing_m")]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: _csv_cell(r[k]) for k in keys})
    replace_text(out, buf.getvalue())


def _write_kml(records: list[dict], out: Path) -> None:
    marks = []
    for r in records:
        desc = ", ".join(f"{k}: {v}" for k, v in r.items()
                         if k not in ("id", "lon", "lat") and v not in (None, ""))
        # (no position: a Placemark without geometry, listed but not on the map)
        point = ("" if r["lon"] is None else
                 f"<Point><coordinates>{_plain(r['lon'])},{_plain(r['lat'])},0"
                 "</coordinates></Point>")
        if r["lon"] is None:
            desc = "no position; " + desc
        marks.append(f"  <Placemark><name>{escape(_xml_text(r['id']))}</name>"
                     f"<description>{escape(_xml_text(desc))}</description>{point}</Placemark>")
    replace_text(out, '<?xml version="1.0" encoding="UTF-8"?>\n'
                  '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>\n'
                  + "\n".join(marks) + "\n</Document></kml>\n")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (control characters
    other than tab and newline), which would make the whole file unreadable."""
    return "".join(ch if ch in "\t\n\r" or (" " <= ch and ch not in "\ufffe\uffff"
                                                and not "\ud800" <= ch <= "\udfff")
                   else "\ufffd" for ch in text)


def export_alarms(path: str | Path, out: str | Path, fmt: str | None = None, *,
                  alarms: dict[str, np.ndarray] | None = None, local: bool = False,
                  with_coverage: bool = False) -> int:
    """Export the alarms of a recording; returns how many were written.

    ``fmt`` is ``geojson``, ``csv`` or ``kml`` (default: from ``out``'s suffix).
    With ``with_coverage`` a GeoJSON export also carries the searched area as
    a MultiPolygon feature and the coverage gaps (other formats refuse it).
    Every alarm is written, also one without a position (see the module's
    documentation); a warning says how many have none.  ``alarms`` with a
    ``file`` column (one table for several recordings) give only the rows
    naming this recording's file (or none).

    The CSV is UTF-8 without a byte-order mark.  Its text cells (class,
    sensor, operator, site, lane, id: from users and files) that start with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are written behind a
    single quote (``'=1+1``), so that a spreadsheet opening the file shows
    them as text rather than evaluating a formula (CSV injection); numbers,
    and text that is a plain number (``-0.12``), are written as they are.
    """
    out = Path(out)
    given = fmt is not None
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt == "json":
        fmt = "geojson"
    if fmt not in FORMATS:
        if not fmt:
            raise ConfigError(f"{out}: no file suffix to tell the export format; give it a "
                              ".geojson, .csv or .kml suffix, or the format (--format)")
        raise ConfigError(f"export format {fmt!r}{'' if given else f' (the suffix of {out})'} "
                          f"is not one of {', '.join(FORMATS)}"
                          + ("" if given else "; give the format (--format)"))
    if local and fmt != "csv":
        raise ConfigError(f"local coordinates can only be exported as CSV ({fmt} is WGS 84 "
                          "by definition)")
    if with_coverage and fmt != "geojson":
        raise ConfigError(f"the coverage (searched area and gaps) can only be exported as "
                          f"GeoJSON, not {fmt}: export it to a .geojson file")
    records, frame = alarm_records(path, alarms=alarms, local=local)
    unplaced = sum(1 for r in records
                   if (r["lon"] is None if frame is not None else r["x_m"] is None))
    beyond = sum(1 for r in records if frame is not None and r["lon"] is None
                 and r["x_m"] is not None and r["y_m"] is not None)
    if unplaced:
        warnings.warn(f"{unplaced} of {len(records)} alarms have no position (NaN x, y: no "
                      f"fix when they were raised"
                      + (f"; {beyond} beyond a pole of the lane's local frame" if beyond else "")
                      + "); written without coordinates"
                      + (" (GeoJSON null geometry)" if fmt == "geojson" else
                         " (KML Placemark without Point)" if fmt == "kml" else ""),
                      stacklevel=2)
    if fmt == "csv":
        _write_csv(records, out, local=frame is None)
    elif fmt == "kml":
        _write_kml(records, out)
    else:
        extra = []
        if with_coverage and frame is not None:
            cov = coverage(path)
            extra = cov.geojson_features(frame)
        _write_geojson(records, out, extra)
    return len(records)


# ---------------------------------------------------------------------- coverage


@dataclass
class CoverageResult:
    """Searched ground of a recording: raster, area and gaps.

    Attributes
    ----------
    raster : demine.evaluate.Coverage
        Boolean raster of the swept footprint (local metres).
    gaps : list of dict
        Uncovered holes inside the searched region larger than the gap size:
        ``area_m2``, centre ``x``, ``y`` and bounding box.
    """

    raster: Any
    gaps: list[dict[str, float]]

    @property
    def area(self) -> float:
        return self.raster.area

    def polygons(self) -> list[list[tuple[float, float]]]:
        """The covered area as rectangles (closed rings of local x, y)."""
        return coverage_polygons(self.raster)

    def outlines(self) -> list[list[list[tuple[float, float]]]]:
        """The covered area as polygons with holes (see :func:`coverage_outlines`)."""
        return coverage_outlines(self.raster)

    def geojson_features(self, frame: LocalFrame) -> list[dict[str, Any]]:
        """A MultiPolygon of the searched area and a Point per gap, in WGS 84.

        The MultiPolygon is valid (OGC simple features, RFC 7946 winding: the
        polygons of :func:`coverage_outlines`), and an area across the
        antimeridian is cut there into its eastern and western parts (RFC 7946,
        section 3.1.9; the cells are split by their centres, so a sliver of
        at most half a cell along the cut is left out rather than claimed).
        """
        polys = _geo_outlines(self.raster, frame)
        feats: list[dict[str, Any]] = [{
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": polys},
            # (no position at a valid height: the area is unknown, not 0 m²)
            "properties": {"kind": "searched area", "area_m2": round(self.area, 3)}
            if self.raster.mask.size else
            {"kind": "searched area", "area_m2": None,
             "note": "no positions at a valid height: searched area unknown"},
        }]
        for g in self.gaps:
            lon, lat = frame.to_geo(np.array([g["x"]]), np.array([g["y"]]))
            feats.append({"type": "Feature",
                          "geometry": {"type": "Point",
                                       "coordinates": [float(lon[0]), float(lat[0])]},
                          "properties": {"kind": "coverage gap", **g}})
        return feats


#: Lowest height limit (m) of :func:`coverage`: a hand-held coil swung a few
#: centimetres above the ground is searching up to about this height.
MIN_VALID_HEIGHT = 0.3
#: Highest height limit (m) :func:`coverage` takes from the heights alone
#: (a stream's ``max_height`` attribute may give more).
MAX_AUTO_HEIGHT = 1.0


def coverage(path: str | Path, *, stream: str | None = None, footprint: float | None = None,
             max_height: float | None = None, gap_area: float = 0.01,
             cell: float | None = None) -> CoverageResult:
    """Ground searched in a recording, with gaps larger than ``gap_area`` m² flagged.

    Positions count only while the sensor is at a valid height (``0 <= z <=
    max_height`` when heights are known: a stream whose ``z`` is a GPS
    altitude, as ``demine record`` writes it, has none; see
    :meth:`demine.recording.StreamReader.heights`).  ``max_height`` defaults to the
    stream's ``max_height`` attribute, else 1.5 times the 20th percentile of
    its heights, from :data:`MIN_VALID_HEIGHT` (0.3 m) to
    :data:`MAX_AUTO_HEIGHT` (1 m): the sensor's own working height, whether
    a hand-held coil at 5 cm or an EM61-style cart at 0.4 m, counts, and
    lifts well above it do not, even when they make most of the readings.  ``footprint`` defaults
    to the stream's (see :func:`demine.evaluate.lane_from_recording`).
    """
    from scipy import ndimage

    from .evaluate import DEFAULT_FOOTPRINT, searched_area
    from .recording import Recording

    with Recording(path) as rec:
        names = [stream] if stream else (
            [n for n, s in rec.streams.items() if s.kind == "emi"]
            or [n for n, s in rec.streams.items() if s.kind == "gpr"]
            or [n for n, s in rec.streams.items() if s.kind == "gps"])
        paths = []
        fp = footprint
        for n in names:
            if n not in rec.streams:
                raise ConfigError(f"{path}: no stream {n!r}")
            s = rec.streams[n]
            d = s.read(fields=["x", "y", "z"])
            # heights above the ground only: a recorder's z is a GPS altitude
            # (less the origin's), which on a slope says nothing of a lift
            d["z"] = s.heights(d["z"])
            top = max_height if max_height is not None else s.attrs.get("max_height")
            if top is None:
                # (the low fifth of the heights: the sensor's working height even
                # when it was lifted for most of the readings)
                z = d["z"][np.isfinite(d["z"]) & (d["z"] >= 0)]
                top = min(MAX_AUTO_HEIGHT, max(
                    MIN_VALID_HEIGHT, 1.5 * float(np.percentile(z, 20)))) if z.size \
                    else MIN_VALID_HEIGHT
            ok = ~(np.isfinite(d["z"]) & ((d["z"] < 0) | (d["z"] > float(top))))
            x = np.where(ok, d["x"], np.nan)
            y = np.where(ok, d["y"], np.nan)
            paths.append(np.column_stack([x, y]))
            if fp is None:
                fp = s.attrs.get("footprint_width") or s.attrs.get("footprint")
                cr = s.calibration.get("coil_radius")
                if fp is None and cr:
                    fp = 2 * float(cr)
    raster = searched_area(paths, float(fp or DEFAULT_FOOTPRINT), cell=cell)
    gaps: list[dict[str, float]] = []
    mask = raster.mask
    if mask.any():
        # Holes: uncovered cells not connected to the outside of the raster.
        padded = np.pad(~mask, 1, constant_values=True)
        labels, n = ndimage.label(padded)
        outside = labels[0, 0]
        c = raster.cell
        for lab in range(1, n + 1):
            if lab == outside:
                continue
            iy, ix = np.nonzero(labels[1:-1, 1:-1] == lab)
            area = iy.size * c * c
            if area < gap_area:
                continue
            gx = raster.x0 + ix * c
            gy = raster.y0 + iy * c
            # the gap's cell nearest its mean: the mean of a C-shaped gap lies on
            # searched ground, where a team sent to it finds nothing to search
            k = int(np.argmin((gx - gx.mean()) ** 2 + (gy - gy.mean()) ** 2))
            gaps.append({"area_m2": round(area, 4), "x": float(gx[k]),
                         "y": float(gy[k]), "xmin": float(gx.min()),
                         "xmax": float(gx.max()), "ymin": float(gy.min()),
                         "ymax": float(gy.max())})
    return CoverageResult(raster, gaps)


def coverage_polygons(raster: Any) -> list[list[tuple[float, float]]]:
    """Covered cells of a coverage raster merged into rectangles.

    Runs of covered cells along each row are merged, and identical runs on
    consecutive rows are stacked into one taller rectangle, so a swept lane
    becomes a few hundred rectangles rather than a polygon per cell.  Each
    rectangle is a closed counter-clockwise ring (RFC 7946 exterior rings).
    """
    mask = np.asarray(raster.mask, dtype=bool)
    c = raster.cell
    h = c / 2
    open_runs: dict[tuple[int, int], int] = {}  # (start, stop) -> first row
    rects: list[tuple[int, int, int, int]] = []
    ny = mask.shape[0]
    for iy in range(ny + 1):
        runs: set[tuple[int, int]] = set()
        if iy < ny:
            row = np.concatenate([[False], mask[iy], [False]])
            edges = np.flatnonzero(np.diff(row.astype(np.int8)))
            runs = {(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)}
        for run in list(open_runs):
            if run not in runs:
                rects.append((run[0], run[1], open_runs.pop(run), iy))
        for run in runs:
            open_runs.setdefault(run, iy)
    rings = []
    for x0, x1, y0, y1 in rects:
        xa = raster.x0 + x0 * c - h
        xb = raster.x0 + (x1 - 1) * c + h
        ya = raster.y0 + y0 * c - h
        yb = raster.y0 + (y1 - 1) * c + h
        rings.append([(xa, ya), (xb, ya), (xb, yb), (xa, yb), (xa, ya)])
    return rings


def _outline_polygons(mask: np.ndarray) -> list[list[np.ndarray]]:
    """Outlines of the True cells of ``mask``: polygons ``[shell, hole, ...]``
    whose rings are closed ``(k, 2)`` integer arrays of cell-corner indices
    (column, row; corner ``(j, i)`` is the lower-left corner of cell
    ``mask[i, j]``), shells counter-clockwise and holes clockwise, without
    collinear vertices.

    Cells that share an edge belong to the same polygon, cells that share
    only a corner do not (4-connectivity), so polygons meet at most at a
    corner; a ring that would pass a corner twice is split there into a shell
    and a hole that touch at that point.  The rings are simple and the result
    is a valid MultiPolygon (OGC simple features).
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return []
    ny, nx = mask.shape
    p = np.pad(mask, 1)
    c = p[1:-1, 1:-1]
    w = nx + 1  # corners per row: corner (j, i) has the number i * w + j
    # The boundary edges, directed with the covered cell on their left
    # (0 east along a bottom side, 1 north along a right side, 2 west along a
    # top side, 3 south along a left side).
    starts, ends, dirs = [], [], []
    for d, outside, (si, sj), (ei, ej) in (
            (0, p[:-2, 1:-1], (0, 0), (0, 1)),
            (1, p[1:-1, 2:], (0, 1), (1, 1)),
            (2, p[2:, 1:-1], (1, 1), (1, 0)),
            (3, p[1:-1, :-2], (1, 0), (0, 0))):
        iy, ix = np.nonzero(c & ~outside)
        starts.append((iy + si) * w + ix + sj)
        ends.append((iy + ei) * w + ix + ej)
        dirs.append(np.full(iy.size, d, dtype=np.int64))
    s = np.concatenate(starts)
    e = np.concatenate(ends)
    d = np.concatenate(dirs)
    order = np.lexsort((d, s))
    first = np.searchsorted(s[order], e, side="left")
    two = (np.searchsorted(s[order], e, side="right") - first) == 2
    nxt = order[first]
    if two.any():
        # a corner where two covered cells meet only diagonally has two edges
        # out: turn left, to stay along the cell the edge came along
        second = order[np.minimum(first + 1, order.size - 1)]
        nxt = np.where(two & (d[nxt] != (d + 1) % 4), second, nxt)
    nxt_l, s_l, d_l = nxt.tolist(), s.tolist(), d.tolist()
    seen = bytearray(len(s_l))
    loops: list[list[int]] = []
    for k0 in range(len(s_l)):
        if seen[k0]:
            continue
        walk = []
        k = k0
        while not seen[k]:
            seen[k] = 1
            walk.append(k)
            k = nxt_l[k]
        # a corner met twice: split the walk there into simple loops
        stack: list[int] = []
        pos: dict[int, int] = {}
        for k in walk:
            v = s_l[k]
            if v in pos:
                at = pos[v]
                loops.append(stack[at:])
                for kk in stack[at + 1:]:
                    del pos[s_l[kk]]
                del stack[at:]
            pos[v] = len(stack)
            stack.append(k)
        loops.append(stack)
    labels, _ = ndimage.label(mask)  # (4-connectivity, as the rings)
    shells: dict[int, list[np.ndarray]] = {}
    holes: dict[int, list[np.ndarray]] = {}
    left_of = {0: (0, 0), 1: (0, -1), 2: (-1, -1), 3: (-1, 0)}  # start corner -> cell
    for loop in loops:
        keep = [k for i, k in enumerate(loop) if d_l[k] != d_l[loop[i - 1]]]
        v = np.array([s_l[k] for k in keep], dtype=np.int64)
        ring = np.column_stack([v % w, v // w])
        area2 = int(np.dot(ring[:, 0], np.roll(ring[:, 1], -1))
                    - np.dot(np.roll(ring[:, 0], -1), ring[:, 1]))
        k = loop[0]
        di, dj = left_of[d_l[k]]
        lab = int(labels[s_l[k] // w + di, s_l[k] % w + dj])
        (shells if area2 > 0 else holes).setdefault(lab, []).append(
            np.vstack([ring, ring[:1]]))
    polys: list[list[np.ndarray]] = []
    for lab, sh in shells.items():
        hs = holes.get(lab, [])
        if len(sh) == 1:
            polys.append([sh[0], *hs])
            continue
        # (not expected: one shell per connected set of cells; should it
        # happen, each hole goes to the smallest shell around it)
        parts: list[list[np.ndarray]] = [[r] for r in sorted(sh, key=_ring_area)]
        for h in hs:
            # (a point a quarter cell to the right of the hole's first side:
            # in the unsearched pocket, on no ring)
            (ax, ay), (bx, by) = h[0].tolist(), h[1].tolist()
            n = math.hypot(bx - ax, by - ay)
            pt = np.array([(ax + bx) / 2 + 0.25 * (by - ay) / n,
                           (ay + by) / 2 - 0.25 * (bx - ax) / n])
            for part in parts:
                if _inside(pt, part[0]):
                    part.append(h)
                    break
        polys.extend(parts)
    return polys


def _ring_area(ring: np.ndarray) -> float:
    x, y = np.asarray(ring, dtype=np.float64).T
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def _inside(pt: np.ndarray, ring: np.ndarray) -> bool:
    """Whether a point lies inside a closed ring (even-odd rule)."""
    x, y = np.asarray(ring, dtype=np.float64).T
    x0, y0, x1, y1 = x[:-1], y[:-1], x[1:], y[1:]
    cross = (y0 > pt[1]) != (y1 > pt[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (pt[1] - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(cross & (pt[0] < xi)) % 2)


def coverage_outlines(raster: Any) -> list[list[list[tuple[float, float]]]]:
    """The covered cells of a coverage raster as polygons with holes.

    Each polygon is a list of closed rings of local ``(x, y)`` (m): its
    exterior ring first (counter-clockwise), then its holes (clockwise), the
    winding RFC 7946 asks for.  Cells sharing an edge are one polygon; the
    polygons meet at most at a corner, and the whole is a valid MultiPolygon
    (unlike :func:`coverage_polygons`' rectangles, which share edges).  The
    holes are every unsearched pocket, also those smaller than the gap size.
    """
    c = float(raster.cell)
    x0 = float(raster.x0) - c / 2
    y0 = float(raster.y0) - c / 2
    return [[[(x0 + float(j) * c, y0 + float(i) * c) for j, i in ring.tolist()]
             for ring in poly] for poly in _outline_polygons(raster.mask)]


def _clip_ring(lon: np.ndarray, lat: np.ndarray, seam: float,
               low: bool) -> list[tuple[float, float]] | None:
    """A closed ring clipped to ``lon <= seam`` (``low``) or ``lon >= seam``
    (Sutherland-Hodgman on one straight edge); None when nothing is left."""
    pts = list(zip(lon[:-1].tolist(), lat[:-1].tolist(), strict=True))
    out: list[tuple[float, float]] = []
    for k, cur in enumerate(pts):
        prev = pts[k - 1]
        c_in = cur[0] <= seam if low else cur[0] >= seam
        p_in = prev[0] <= seam if low else prev[0] >= seam
        if c_in != p_in:
            t = (seam - prev[0]) / (cur[0] - prev[0])
            out.append((seam, prev[1] + t * (cur[1] - prev[1])))
        if c_in:
            out.append(cur)
    return out if len(out) >= 3 else None


def _geo_ring(pts: list[tuple[float, float]], shift: float) -> list[list[float]] | None:
    """A ring of (unwrapped lon, lat) in GeoJSON: longitudes shifted into
    [-180, 180], 9 decimals (0.1 mm), repeated points dropped, closed; None
    when fewer than three distinct points are left."""
    ring: list[list[float]] = []
    for lo, la in pts:
        q = [round(min(180.0, max(-180.0, lo + shift)), 9), round(la, 9)]
        if not ring or q != ring[-1]:
            ring.append(q)
    while len(ring) > 1 and ring[-1] == ring[0]:
        ring.pop()
    if len(ring) < 3:
        return None
    return [*ring, ring[0]]


def _geo_outlines(raster: Any, frame: LocalFrame) -> list[list[list[list[float]]]]:
    """:func:`coverage_outlines` in WGS 84 GeoJSON coordinates, cut at the antimeridian."""
    mask = np.asarray(raster.mask, dtype=bool)
    if not mask.any():
        return []
    c = float(raster.cell)

    def lonlat(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # corner indices -> local metres -> longitude unwrapped around the origin
        x = float(raster.x0) + (ring[:, 0] - 0.5) * c
        y = float(raster.y0) + (ring[:, 1] - 0.5) * c
        lon, lat = frame.to_geo(x, y)
        return frame.origin_lon + (lon - frame.origin_lon + 180.0) % 360.0 - 180.0, lat

    polys = _outline_polygons(mask)
    geo = [[lonlat(r) for r in poly] for poly in polys]
    if all(np.all(np.abs(lo) <= 180.0) for poly in geo for lo, _ in poly):
        out = []
        for poly in geo:
            rings = [_geo_ring(list(zip(lo.tolist(), la.tolist(), strict=True)), 0.0)
                     for lo, la in poly]
            if rings[0] is not None:
                out.append([r for r in rings if r is not None])
        return out
    # Across the antimeridian: the cells on either side of it (by their
    # centres) outlined apart, each clipped to its side and given its longitudes.
    seam = 180.0 if frame.origin_lon >= 0 else -180.0
    ny, nx = mask.shape
    cx = float(raster.x0) + np.arange(nx) * c
    cy = float(raster.y0) + np.arange(ny) * c
    lon_c, _ = frame.to_geo(np.broadcast_to(cx, (ny, nx)), np.broadcast_to(cy[:, None], (ny, nx)))
    lon_c = frame.origin_lon + (lon_c - frame.origin_lon + 180.0) % 360.0 - 180.0
    out = []
    for low in (True, False):
        part = mask & ((lon_c < seam) if low else (lon_c >= seam))
        shift = (0.0 if low else -360.0) if seam > 0 else (360.0 if low else 0.0)
        for poly in _outline_polygons(part):
            rings = []
            for k, r in enumerate(poly):
                lo, la = lonlat(r)
                clipped = _clip_ring(lo, la, seam, low)
                ring = None if clipped is None else _geo_ring(clipped, shift)
                if ring is None and k == 0:
                    break
                if ring is not None:
                    rings.append(ring)
            if rings:
                out.append(rings)
    return out


def polygons_area(rings: list[list[tuple[float, float]]]) -> float:
    """Total area of non-overlapping rings (shoelace formula)."""
    total = 0.0
    for ring in rings:
        xs, ys = np.array(ring).T
        total += 0.5 * abs(float(np.dot(xs[:-1], ys[1:]) - np.dot(xs[1:], ys[:-1])))
    return total if math.isfinite(total) else float("nan")
