"""Exports for mine-action information systems: alarms and coverage in WGS 84.

Mine-action information systems (IMSMA Core and its peers) keep geometry in
WGS 84 decimal degrees; GeoJSON (RFC 7946: longitude first, no ``crs``
member) and CSV with decimal-degree latitude/longitude are the practical
exchange formats, KML the one field teams open in a globe viewer.  Each alarm
carries the fields recorded for a found item: class/label, depth, confidence,
sensor, operator, UTC time and the GPS fix quality at that moment.

Positions come from the recording's local frame (``origin_lon``,
``origin_lat``, ``bearing_deg`` root attributes, see ``docs/format.md``),
which the recorder anchors on the GPS stream.  A recording without any
geographic reference cannot be exported in WGS 84: :func:`export_alarms` says
so, and exports local coordinates only when asked (``local=True``, CSV only).

Coverage is the ground the sensor actually searched: the footprint swept along
the path while the sensor was at a valid height, as a raster
(:func:`coverage`) and as polygons (:func:`coverage_polygons`), with the
uncovered holes larger than a given area flagged as gaps.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from .errors import ConfigError
from .positions import LocalFrame

__all__ = [
    "CoverageResult", "alarm_records", "coverage", "coverage_polygons", "export_alarms", "utm",
]

FORMATS = ("geojson", "csv", "kml")


def utm(lon: np.ndarray, lat: np.ndarray, zone_of: tuple[float, float] | None = None
        ) -> tuple[str, np.ndarray, np.ndarray] | None:
    """UTM zone name, easting and northing (m) of WGS 84 points, via pyproj.

    The zone is that of ``zone_of`` (lon, lat; default the first point), so a
    lane that straddles a zone boundary stays in one zone.  Returns None when
    pyproj is not installed (``pip install 'demine[campaign]'``).
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
    zone = int((zone_of[0] + 180.0) // 6.0) % 60 + 1
    north = zone_of[1] >= 0
    epsg = (32600 if north else 32700) + zone
    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    e, n = tr.transform(lon, lat)
    return f"{zone}{'N' if north else 'S'}", np.asarray(e), np.asarray(n)


def _iso(ns: int) -> str:
    if ns <= 0:
        return ""
    return (_dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def _fix_at(rec: Any, t: np.ndarray) -> np.ndarray:
    """GPS fix quality of the last fix at or before each time (-1 without GPS)."""
    out = np.full(t.shape, -1, dtype=np.int64)
    for s in rec.streams.values():
        if s.kind != "gps" or len(s) == 0:
            continue
        d = s.read(fields=["time", "fix_quality"])
        order = np.argsort(d["time"], kind="stable")
        ts, fq = d["time"][order], d["fix_quality"][order]
        idx = np.searchsorted(ts, t, side="right") - 1
        ok = idx >= 0
        out[ok] = fq[idx[ok]]
        break
    return out


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
    from .recording import Recording

    with Recording(path) as rec:
        frame = LocalFrame.from_attrs(rec.attrs)
        if frame is None and not local:
            raise ConfigError(
                f"{path}: no geographic reference (no GPS stream anchored the local frame, no "
                "origin_lon/origin_lat attributes); cannot export WGS 84 positions. "
                "Use --local to export local x, y coordinates (CSV only)"
            )
        a = rec.alarms if alarms is None else alarms
        n = len(a["x"]) if "x" in a else 0
        t = np.asarray(a.get("time", np.zeros(n)), dtype=np.int64)
        fix = _fix_at(rec, t)
        operator = str(rec.attrs.get("operator", ""))
        site = str(rec.attrs.get("site", ""))
        lane = str(rec.attrs.get("lane_id", ""))
    x = np.asarray(a["x"], dtype=np.float64)
    y = np.asarray(a["y"], dtype=np.float64)
    lon = lat = np.full(n, np.nan)
    zone, east, north = "", np.full(n, np.nan), np.full(n, np.nan)
    if frame is not None:
        lon, lat = frame.to_geo(x, y)
        u = utm(lon, lat, (frame.origin_lon, frame.origin_lat))
        if u is not None:
            zone, east, north = u

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
            "fix_quality": int(fix[i]),
        })
    return records, frame


def _write_geojson(records: list[dict], out: Path, extra: list[dict] | None = None) -> None:
    features = []
    for r in records:
        if r["lon"] is None:
            continue
        props = {k: v for k, v in r.items() if k not in ("lon", "lat")}
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                         "properties": props})
    features.extend(extra or [])
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1),
                   encoding="utf-8")


def _write_csv(records: list[dict], out: Path, local: bool) -> None:
    keys = [k for k in (records[0] if records else {
        "id": 0, "class": 0, "lon": 0, "lat": 0, "utm_zone": 0, "easting_m": 0,
        "northing_m": 0, "x_m": 0, "y_m": 0, "depth_m": 0,
        "confidence": 0, "score": 0, "sensor": 0, "operator": 0, "site": 0, "lane": 0,
        "time_utc": 0, "fix_quality": 0})]
    if local:
        keys = [k for k in keys if k not in ("lon", "lat", "utm_zone", "easting_m", "northing_m")]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: "" if r[k] is None else r[k] for k in keys})


def _write_kml(records: list[dict], out: Path) -> None:
    marks = []
    for r in records:
        if r["lon"] is None:
            continue
        desc = ", ".join(f"{k}: {v}" for k, v in r.items()
                         if k not in ("id", "lon", "lat") and v not in (None, ""))
        marks.append(
            f"  <Placemark><name>{escape(r['id'])}</name>"
            f"<description>{escape(desc)}</description>"
            f"<Point><coordinates>{r['lon']},{r['lat']},0</coordinates></Point></Placemark>"
        )
    out.write_text('<?xml version="1.0" encoding="UTF-8"?>\n'
                   '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>\n'
                   + "\n".join(marks) + "\n</Document></kml>\n", encoding="utf-8")


def export_alarms(path: str | Path, out: str | Path, fmt: str | None = None, *,
                  alarms: dict[str, np.ndarray] | None = None, local: bool = False,
                  with_coverage: bool = False) -> int:
    """Export the alarms of a recording; returns how many were written.

    ``fmt`` is ``geojson``, ``csv`` or ``kml`` (default: from ``out``'s suffix).
    With ``with_coverage`` a GeoJSON export also carries the searched area as
    a MultiPolygon feature and the coverage gaps.
    """
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt == "json":
        fmt = "geojson"
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {FORMATS}")
    if local and fmt != "csv":
        raise ConfigError(f"local coordinates can only be exported as CSV ({fmt} is WGS 84 "
                          "by definition)")
    records, frame = alarm_records(path, alarms=alarms, local=local)
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

    def geojson_features(self, frame: LocalFrame) -> list[dict[str, Any]]:
        """A MultiPolygon of the searched area and a Point per gap, in WGS 84."""
        polys = []
        for ring in self.polygons():
            xs, ys = np.array(ring).T
            lon, lat = frame.to_geo(xs, ys)
            polys.append([[[round(float(a), 9), round(float(b), 9)] for a, b in zip(
                lon, lat, strict=True)]])
        feats: list[dict[str, Any]] = [{
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": polys},
            "properties": {"kind": "searched area", "area_m2": round(self.area, 3)},
        }]
        for g in self.gaps:
            lon, lat = frame.to_geo(np.array([g["x"]]), np.array([g["y"]]))
            feats.append({"type": "Feature",
                          "geometry": {"type": "Point",
                                       "coordinates": [float(lon[0]), float(lat[0])]},
                          "properties": {"kind": "coverage gap", **g}})
        return feats


def coverage(path: str | Path, *, stream: str | None = None, footprint: float | None = None,
             max_height: float = 0.3, gap_area: float = 0.01,
             cell: float | None = None) -> CoverageResult:
    """Ground searched in a recording, with gaps larger than ``gap_area`` m² flagged.

    Positions count only while the sensor is at a valid height (``0 <= z <=
    max_height`` when heights are known).  ``footprint`` defaults to the
    stream's (see :func:`demine.evaluate.lane_from_recording`).
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
            ok = ~(np.isfinite(d["z"]) & ((d["z"] < 0) | (d["z"] > max_height)))
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
            gaps.append({"area_m2": round(area, 4), "x": float(gx.mean()),
                         "y": float(gy.mean()), "xmin": float(gx.min()),
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


def polygons_area(rings: list[list[tuple[float, float]]]) -> float:
    """Total area of non-overlapping rings (shoelace formula)."""
    total = 0.0
    for ring in rings:
        xs, ys = np.array(ring).T
        total += 0.5 * abs(float(np.dot(xs[:-1], ys[1:]) - np.dot(xs[1:], ys[:-1])))
    return total if math.isfinite(total) else float("nan")
