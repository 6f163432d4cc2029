"""Positions: the local metric frame of a lane and WGS 84 coordinates.

Recordings keep positions in a local frame in metres (``x``, ``y`` and the
height ``z``) whose origin and orientation are stored as root attributes
(``origin_lon``, ``origin_lat``, ``origin_alt``, ``bearing_deg``; see
``docs/format.md``).  A lane is at most a few hundred metres long, so a local
tangent plane on the WGS 84 ellipsoid is exact to well under a millimetre
there; :class:`LocalFrame` converts both ways with the same formulae, so a
round trip returns the input to float rounding.

``bearing_deg`` is the azimuth (clockwise from true north) of the frame's
``+y`` axis; ``+x`` points 90° clockwise from it.  With ``bearing_deg = 0``,
``x`` is east and ``y`` is north.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

#: WGS 84 semi-major axis (m) and first eccentricity squared.
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


@dataclass(frozen=True)
class LocalFrame:
    """A local east/north-like metric frame anchored at a WGS 84 point.

    Parameters
    ----------
    origin_lon, origin_lat : float
        WGS 84 degrees of the frame origin (x = 0, y = 0).
    origin_alt : float
        Height of the origin (m), for reference.
    bearing_deg : float
        Azimuth of ``+y`` clockwise from north.
    """

    origin_lon: float
    origin_lat: float
    origin_alt: float = 0.0
    bearing_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (-180.0 <= self.origin_lon <= 180.0) or not (-90.0 < self.origin_lat < 90.0):
            raise ConfigError(
                f"local frame origin lon={self.origin_lon}, lat={self.origin_lat} is not a "
                "WGS 84 position (lon in [-180, 180], lat in (-90, 90))"
            )

    @property
    def _radii(self) -> tuple[float, float]:
        """Metres per radian of latitude (meridian) and of longitude at the origin."""
        phi = math.radians(self.origin_lat)
        s2 = math.sin(phi) ** 2
        w = math.sqrt(1.0 - WGS84_E2 * s2)
        meridian = WGS84_A * (1.0 - WGS84_E2) / w**3
        prime_vertical = WGS84_A / w
        return meridian, prime_vertical * math.cos(phi)

    def to_local(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS 84 degrees to local ``x``, ``y`` in metres (NaN stays NaN)."""
        m_lat, m_lon = self._radii
        dlon = (np.asarray(lon, dtype="float64") - self.origin_lon + 180.0) % 360.0 - 180.0
        east = np.radians(dlon) * m_lon
        north = np.radians(np.asarray(lat, dtype="float64") - self.origin_lat) * m_lat
        b = math.radians(self.bearing_deg)
        x = east * math.cos(b) - north * math.sin(b)
        y = east * math.sin(b) + north * math.cos(b)
        return x, y

    def to_geo(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local ``x``, ``y`` in metres to WGS 84 longitude, latitude in degrees."""
        m_lat, m_lon = self._radii
        b = math.radians(self.bearing_deg)
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
        east = x * math.cos(b) + y * math.sin(b)
        north = -x * math.sin(b) + y * math.cos(b)
        lon = self.origin_lon + np.degrees(east / m_lon)
        lat = self.origin_lat + np.degrees(north / m_lat)
        return (lon + 180.0) % 360.0 - 180.0, lat

    def attrs(self) -> dict[str, float]:
        """Root attributes that record this frame in a recording."""
        return {"origin_lon": self.origin_lon, "origin_lat": self.origin_lat,
                "origin_alt": self.origin_alt, "bearing_deg": self.bearing_deg}

    @classmethod
    def from_attrs(cls, attrs: dict) -> LocalFrame | None:
        """The frame stored in a recording's root attributes, or None."""
        if "origin_lon" not in attrs or "origin_lat" not in attrs:
            return None
        return cls(float(attrs["origin_lon"]), float(attrs["origin_lat"]),
                   float(attrs.get("origin_alt", 0.0)), float(attrs.get("bearing_deg", 0.0)))


def interpolate_positions(t_src: np.ndarray, values: np.ndarray, t_dst: np.ndarray, *,
                          max_gap_s: float = 1.0) -> np.ndarray:
    """Linearly interpolate a position track to other times.

    ``t_src`` and ``t_dst`` are int64 UTC nanoseconds; ``values`` (n,) or
    (n, k) may hold NaN where the source had no fix.  Destination times
    outside the track, or inside a gap between valid fixes longer than
    ``max_gap_s``, get NaN rather than an invented position.
    """
    vals = np.asarray(values, dtype="float64")
    squeeze = vals.ndim == 1
    out = PreparedTrack(t_src, vals[:, None] if squeeze else vals, max_gap_s).at(t_dst)
    return out[:, 0] if squeeze else out


class PreparedTrack:
    """A position track sorted and checked once, for many interpolations.

    :func:`interpolate_positions` in two steps: the live recorder interpolates
    a few times per fix on the same track, so the work that depends on the
    track only (dropping fixes without a position, sorting, looking for gaps)
    is done once per fix instead of once per call.

    Parameters
    ----------
    t_src : array of int64
        Fix times (UTC ns).
    values : array (n, k)
        Positions; rows with a NaN are not fixes.
    max_gap_s : float
        Times inside a longer gap between valid fixes get NaN.
    """

    def __init__(self, t_src: np.ndarray, values: np.ndarray, max_gap_s: float = 1.0) -> None:
        t_src = np.asarray(t_src, dtype="int64")
        vals = np.asarray(values, dtype="float64")
        if vals.ndim != 2 or t_src.ndim != 1:
            raise ValueError(f"positions must be (n, k) and times (n,), got {vals.shape} "
                             f"and {t_src.shape}")
        if vals.shape[0] != t_src.shape[0]:
            raise ValueError(f"{vals.shape[0]} positions for {t_src.shape[0]} times")
        self.k = vals.shape[1]
        ok = np.all(np.isfinite(vals), axis=1)
        ts, vs = t_src[ok], vals[ok]
        if ts.size:
            order = np.argsort(ts, kind="stable")
            ts, vs = ts[order], vs[order]
        self.ts = ts
        # columns contiguous for np.interp
        self.vs = [np.ascontiguousarray(vs[:, k]) for k in range(self.k)]
        # Times relative to the first fix keep float64 exact to the nanosecond for days.
        self.rel = (ts - ts[0]).astype("float64") if ts.size else ts.astype("float64")
        self.max_gap_ns = max_gap_s * 1e9
        self.has_gap = bool(ts.size > 1 and np.any(np.diff(ts) > self.max_gap_ns))

    def at(self, t_dst: np.ndarray) -> np.ndarray:
        """Positions ``(len(t_dst), k)`` at the times ``t_dst`` (int64 UTC ns)."""
        t_dst = np.asarray(t_dst, dtype="int64")
        ts = self.ts
        out = np.empty((t_dst.shape[0], self.k))
        if ts.size == 0:
            out.fill(np.nan)
            return out
        rel_dst = (t_dst - ts[0]).astype("float64")
        for k, v in enumerate(self.vs):
            out[:, k] = np.interp(rel_dst, self.rel, v, left=np.nan, right=np.nan)
        if not self.has_gap:  # (the usual case: no gap to look for)
            return out
        idx = np.searchsorted(ts, t_dst, side="right")
        inside = (idx > 0) & (idx < ts.size)
        gap = np.zeros(t_dst.shape[0], dtype=bool)
        gap[inside] = (ts[idx[inside]] - ts[idx[inside] - 1]) > self.max_gap_ns
        if gap.any():
            exact = np.zeros(t_dst.shape[0], dtype=bool)
            after = idx > 0
            exact[after] = ts[idx[after] - 1] == t_dst[after]
            out[gap & ~exact] = np.nan
        return out
