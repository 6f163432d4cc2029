"""Positions: the local metric frame of a lane and WGS 84 coordinates.

Recordings keep positions in a local frame in metres (``x``, ``y`` and the
height ``z``) whose origin and orientation are stored as root attributes
(``origin_lon``, ``origin_lat``, ``origin_alt``, ``bearing_deg``; see
``docs/format.md``).  :class:`LocalFrame` scales longitude and latitude
differences by the WGS 84 radii of curvature at the origin (an
equirectangular projection about it) and converts both ways with the same
formulae, so a round trip returns the input to float rounding, and WGS 84
positions written from ``x``, ``y`` are those the ``x``, ``y`` came from.
Against the local tangent plane (pyproj's ``topocentric``) and geodesic
distances it is within 0.4 mm over 50 m of the origin up to 60° of latitude
(0.6 mm at 70°, 1.3 mm at 80°): exact at lane scale.  The error grows as
east × north × tan(latitude) / R: at 48° about 1 cm 300 m from the origin and
10 cm 1 km from it, 15 cm at 1 km at 60° (distances between points within
1 km of the origin: off by 0.1-0.2 mm per metre at most), so a frame hundreds
of metres across is a map projection, not a tangent plane.

``bearing_deg`` is the azimuth (clockwise from true north) of the frame's
``+y`` axis; ``+x`` points 90° clockwise from it.  With ``bearing_deg = 0``,
``x`` is east and ``y`` is north.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, SchemaError

log = logging.getLogger("demine.positions")

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
        if not math.isfinite(self.bearing_deg):  # (every x, y would be NaN)
            raise ConfigError(f"local frame bearing {self.bearing_deg} must be a finite "
                              "number of degrees")

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
        # beyond a pole this local frame has no meaning: no position (NaN), not a
        # latitude of 90.0004 written into GeoJSON and KML
        over = np.abs(lat) > 90.0
        if np.any(over):
            lat = np.where(over, np.nan, lat)
            lon = np.where(over, np.nan, lon)
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
        vals = []
        for key, default in (("origin_lon", None), ("origin_lat", None), ("origin_alt", 0.0),
                             ("bearing_deg", 0.0)):
            v = attrs.get(key, default)
            try:   # (text such as "north" had raised a bare ValueError in export)
                vals.append(float(v))
            except (TypeError, ValueError):
                raise SchemaError(f"recording attribute {key!r} is {v!r}, not a number "
                                  "(degrees, or m for origin_alt)") from None
        return cls(*vals)


#: A gap between fixes is longer than ``max_gap_s`` when it is by more than
#: this fraction: fix times mapped from the receiver's clock to the host's
#: (:class:`demine.acquisition.ClockFit`) are 1 s ± tens of µs apart at 1 Hz,
#: and a strict comparison made every other second of a 1 Hz track a gap.
GAP_TOLERANCE = 0.05


#: Default speed limit of :class:`FixFilter` (m/s): faster than any sensor a
#: deminer sweeps (a coil's tip peaks at 3-5 m/s) or a vehicle carries along a
#: lane (route clearance at up to about 30 km/h, 8 m/s); a fix 5 m off at a
#: 10 Hz receiver implies 50 m/s, one 1 m off 10 m/s.
MAX_FIX_SPEED = 10.0
#: A fix is judged against the next fix with a position at most this many
#: seconds later (:class:`FixFilter`); without one it is kept.
FIX_JUDGE_WINDOW_S = 2.0


def encoder_steps(counts: Any, *, prev: float | None = None) -> np.ndarray:
    """How far a survey wheel's count moved from each trace to the next.

    Parameters
    ----------
    counts : array_like
        The wheel's counts, one per trace (the ``encoder`` column).
    prev : float, optional
        The count of the trace before the first (the first step is then
        ``counts[0] - prev``; without it the result has one step fewer than
        ``counts``).

    Returns
    -------
    numpy.ndarray
        float64 steps.  For a counter of at most 32 bits (an integer
        ``counts``) each step is taken modulo the counter's range, the
        shortest way round: a 16-bit counter passing 65535 to 4 moved by 5,
        not -65531.  A reset (a count back to 0 from thousands) stays a
        large step, for the caller to tell from a move.
    """
    c = np.asarray(counts)
    x = c.astype(np.float64)
    step = np.diff(x) if prev is None else np.diff(x, prepend=float(prev))
    if c.dtype.kind in "iu" and c.dtype.itemsize <= 4:
        span = float(2 ** (8 * c.dtype.itemsize))
        step = (step + span / 2) % span - span / 2
    return step


#: A survey wheel's count moving more than this between two traces (m) is a
#: reset (the device restarted or re-zeroed), not a move: positions go on from
#: the last one (:func:`wheel_positions`).
WHEEL_JUMP_M = 0.5


def wheel_positions(counts: Any, distance_per_count: float, *,
                    state: tuple[float, float | None] | None = None,
                    jump_m: float = WHEEL_JUMP_M, fault: Any = None
                    ) -> tuple[np.ndarray, tuple[float, float | None] | None, int]:
    """Distance along the line of each trace, from a survey wheel's counts.

    ``x`` is the distance from where the wheel first turned (NaN before it
    did: a radar without a wheel, whose count stays put, is not placed at one
    point), ``distance_per_count`` m per count (signed), the counts followed
    across a counter's wrap (:func:`encoder_steps`); a step of more than
    ``jump_m`` (a reset) is not taken as a move.  This is how ``demine
    record`` places a radar without a GPS, block by block: ``state`` carries
    one block's end to the next (None for the first), so the blocks of a
    line give what the whole line at once gives.

    ``fault`` (bool per trace, optional) marks the traces whose count the
    device flagged as wrong (the radar's encoder-fault status bit): they are
    not placed (NaN), and the next trusted trace moves by its count less the
    last trusted one's, as if the faulted traces were not there.

    Returns
    -------
    x : numpy.ndarray
        float64 distance per trace, m.
    state : tuple or None
        The last count and the net count moved since the wheel first turned
        (None while it has not); the ``state`` given, for an empty block.
    jumps : int
        Steps left out as resets.
    """
    count = np.asarray(counts)
    if fault is not None:
        bad = np.asarray(fault, dtype=bool)
        if bad.shape != count.shape:
            raise ConfigError(f"wheel_positions: {bad.shape} fault flags for counts of shape "
                              f"{count.shape}")
        if bad.any():
            x = np.full(count.shape, np.nan)
            x[~bad], state, jumps = wheel_positions(count[~bad], distance_per_count,
                                                    state=state, jump_m=jump_m)
            return x, state, jumps
    if count.size == 0:  # (an empty block changes nothing; the next block starts)
        return np.zeros(0), state, 0
    last, net = state if state is not None else (float(count[0]), None)
    step = encoder_steps(count, prev=last)   # (across a counter's wrap)
    jump = np.abs(step) * abs(distance_per_count) > jump_m
    step[jump] = 0.0
    moved = np.cumsum(step != 0) > 0
    if net is None and not moved.any():
        return np.full(count.shape, np.nan), (float(count[-1]), None), int(jump.sum())
    # (the net count, exact in float64, carried from block to block: x is the
    # same however the line is cut into blocks)
    cum = (0.0 if net is None else net) + np.cumsum(step)
    x = cum * distance_per_count
    if net is None:   # (before the wheel first turned; however the blocks come)
        x[~moved] = np.nan
    return x, (float(count[-1]), float(cum[-1])), int(jump.sum())


def interpolate_positions(t_src: np.ndarray, values: np.ndarray, t_dst: np.ndarray, *,
                          max_gap_s: float = 1.0,
                          max_speed: float | None = MAX_FIX_SPEED) -> np.ndarray:
    """Linearly interpolate a position track to other times.

    ``t_src`` and ``t_dst`` are int64 UTC nanoseconds; ``values`` (n,) or
    (n, k) may hold NaN where the source had no value (no fix; a missing
    altitude leaves ``x``, ``y`` valid: each column is interpolated over its
    own valid values).  Destination times outside the track, or inside a gap
    between valid values longer than ``max_gap_s`` (by more than
    :data:`GAP_TOLERANCE`), get NaN rather than an invented position.

    Isolated fixes are rejected first (:class:`FixFilter` with ``max_speed``,
    m/s; None: none are), in the order the rows are given, as the live
    recorder does; a count of those rejected is logged (``demine.positions``,
    INFO).  Columns 0 and 1 are ``x`` and ``y`` in metres (a single column,
    one coordinate).
    """
    vals = np.asarray(values, dtype="float64")
    squeeze = vals.ndim == 1
    vals = vals[:, None] if squeeze else vals
    if max_speed is not None:
        f = FixFilter(max_speed)
        t_src = _ns("t_src", t_src)
        if vals.ndim == 2 and t_src.shape == vals.shape[:1]:  # (else PreparedTrack says)
            vals = np.concatenate((f.add(t_src, vals)[1], f.finish()[1]))
            for note in f.notes():
                log.info("%s", note)
    out = PreparedTrack(t_src, vals, max_gap_s).at(t_dst)
    return out[:, 0] if squeeze else out


def _ns(name: str, t: Any) -> np.ndarray:
    """Times as int64 nanoseconds; floats (a NaN would become INT64_MIN and
    spoil every interpolated value) are refused."""
    a = np.asarray(t)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer UTC nanoseconds (int64), got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


class FixFilter:
    """Reject isolated fixes inconsistent with their neighbours (multipath).

    A receiver now and then reports one fix metres off its neighbours (a
    reflected signal); interpolated, it drags every reading between its
    neighbours towards it.  A fix with a position is rejected when reaching
    it from the last fix kept, and leaving it for the next fix with a
    position (at most :data:`FIX_JUDGE_WINDOW_S` later), both imply a speed
    above ``max_speed`` while those two fixes agree (the speed between them
    is not above it).  No physical sensor moves there and back that fast, so
    the fix is a measurement error; its row is released with NaN values (no
    position; the column that says what the receiver sent is the caller's,
    e.g. the recording's ``lon``/``lat``).

    A sustained change is kept: the receiver switching to RTK fix, a DGPS
    correction arriving, a turn, the start of a lane.  The first fix after
    it jumps, but the next ones agree with it.  So are two fixes off in the
    same place, the first fix of the track, and a fix whose next fix with a
    position is missing or too late: only a lone fix is judged.

    Streaming and batch are the same code: :meth:`add` takes the fixes in
    chunks of any size and returns the rows decided so far, in order (a fix
    that jumped from the last kept one is held, with the rows after it,
    until the next fix with a position decides it); :meth:`finish` returns
    the rest.  The rows returned, joined, do not depend on the chunks.

    Parameters
    ----------
    max_speed : float
        Highest speed (m/s) the antenna can move at (default
        :data:`MAX_FIX_SPEED`).

    Attributes
    ----------
    rejected : int
        Fixes rejected so far.
    """

    def __init__(self, max_speed: float = MAX_FIX_SPEED) -> None:
        if not (max_speed > 0 and math.isfinite(max_speed)):
            raise ValueError(f"max_speed must be a positive number of m/s, got {max_speed}")
        self.max_speed = float(max_speed)
        self.rejected = 0
        self._kept: tuple[int, float, float] | None = None  # last kept fix (t, x, y)
        self._held_t: list[np.ndarray] = []  # the pending fix first, then the rows after it
        self._held_v: list[np.ndarray] = []
        self._pending: tuple[int, float, float] | None = None
        self._k = 0  # columns of the values (for an empty finish)

    def _jump(self, a: tuple[int, float, float], b: tuple[int, float, float]) -> bool:
        """Whether moving from fix ``a`` to fix ``b`` takes more than the speed limit."""
        dt = (b[0] - a[0]) / 1e9
        if not dt > 0:  # (times going back: no speed to judge by)
            return False
        return math.hypot(b[1] - a[1], b[2] - a[2]) > self.max_speed * dt

    def add(self, t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Take the next fixes; return the rows decided (times, values), in order.

        ``t`` (n,) int64 ns, ``values`` (n, k): a row is a fix with a position
        when its columns 0 and 1 (0 alone when k is 1) are finite.
        """
        t = np.asarray(t)
        vals = np.asarray(values, dtype="float64")
        if vals.ndim != 2 or t.shape != vals.shape[:1]:
            raise ValueError(f"fixes must be (n, k) values and (n,) times, got {vals.shape} "
                             f"and {t.shape}")
        self._k = vals.shape[1]
        xy = vals[:, :2] if vals.shape[1] > 1 else np.c_[vals[:, 0], np.zeros(len(vals))]
        ok = np.isfinite(xy).all(axis=1)
        if self._pending is None and t.size:
            # the usual case: no fix jumps from the one before it (the rows
            # pass through untouched: a clean track is placed as it was)
            idx = np.flatnonzero(ok)
            if idx.size == 0:
                return t, vals
            txy = np.c_[t[idx].astype("float64"), xy[idx]]
            if self._kept is not None:
                txy = np.r_[[self._kept], txy]
            dt = np.diff(txy[:, 0]) / 1e9
            dist = np.hypot(np.diff(txy[:, 1]), np.diff(txy[:, 2]))
            if not np.any((dt > 0) & (dist > self.max_speed * dt)):
                j = idx[-1]
                self._kept = (int(t[j]), float(xy[j, 0]), float(xy[j, 1]))
                return t, vals
        out_t: list[np.ndarray] = []
        out_v: list[np.ndarray] = []
        for i in range(t.size):
            ti, vi = t[i:i + 1], vals[i:i + 1]
            if ok[i]:
                fix = (int(t[i]), float(xy[i, 0]), float(xy[i, 1]))
                self._decide(fix, out_t, out_v)
                if self._kept is not None and self._jump(self._kept, fix):
                    self._pending = fix
                else:
                    self._kept = fix
            elif self._pending is not None and int(t[i]) - self._pending[0] > (
                    FIX_JUDGE_WINDOW_S * 1e9):
                self._decide(None, out_t, out_v)  # (no next fix in time: kept)
            if self._pending is not None:
                self._held_t.append(ti)
                self._held_v.append(vi)
            else:
                out_t.append(ti)
                out_v.append(vi)
        return self._joined(out_t, out_v, t, vals)

    def _decide(self, nxt: tuple[int, float, float] | None, out_t: list[np.ndarray],
                out_v: list[np.ndarray]) -> None:
        """Decide the pending fix (if any) by the next fix with a position
        (None: there is none in time) and release the rows held."""
        p = self._pending
        if p is None:
            return
        self._pending = None
        k = self._kept
        if (nxt is not None and k is not None and nxt[0] - p[0] <= FIX_JUDGE_WINDOW_S * 1e9
                and self._jump(p, nxt) and not self._jump(k, nxt)):
            self.rejected += 1
            self._held_v[0] = np.full_like(self._held_v[0], np.nan)
        else:
            self._kept = p
        out_t.extend(self._held_t)
        out_v.extend(self._held_v)
        self._held_t, self._held_v = [], []

    @staticmethod
    def _joined(out_t: list[np.ndarray], out_v: list[np.ndarray], t: np.ndarray,
                vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not out_t:
            return t[:0], vals[:0]
        return np.concatenate(out_t), np.concatenate(out_v)

    @property
    def holding(self) -> bool:
        """Whether a fix is held until the next fix with a position decides it."""
        return self._pending is not None

    def expire(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The held fix kept, and the rows held after it released, once ``t``
        (int ns) is more than :data:`FIX_JUDGE_WINDOW_S` after it: the next
        fix, measured later than that, would keep it too (:meth:`add`), so a
        live caller need not wait for that fix (a receiver gone quiet) to
        place what lies before the held one.  Rows as :meth:`add` returns them
        (none while the window is open)."""
        out_t: list[np.ndarray] = []
        out_v: list[np.ndarray] = []
        if self._pending is not None and int(t) - self._pending[0] > FIX_JUDGE_WINDOW_S * 1e9:
            self._decide(None, out_t, out_v)
        if not out_t:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._k))
        return np.concatenate(out_t), np.concatenate(out_v)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows still held (the last fix that jumped is kept: nothing
        follows to judge it by), as :meth:`add` returns them."""
        out_t: list[np.ndarray] = []
        out_v: list[np.ndarray] = []
        self._decide(None, out_t, out_v)
        if not out_t:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._k))
        return np.concatenate(out_t), np.concatenate(out_v)

    def notes(self) -> list[str]:
        """What the filter decided, one line (none when nothing was rejected)."""
        if not self.rejected:
            return []
        what = "fix" if self.rejected == 1 else "fixes"
        return [f"{self.rejected} isolated GPS {what} rejected (implied speed above "
                f"{self.max_speed:g} m/s to and from each, its neighbours agreeing)"]


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
        Positions; a NaN is no value of that column at that time (the others
        keep theirs: a GGA without altitude, or an RMC, still places ``x``
        and ``y``).
    max_gap_s : float
        Times inside a longer gap (by more than :data:`GAP_TOLERANCE`)
        between valid values get NaN.
    """

    def __init__(self, t_src: np.ndarray, values: np.ndarray, max_gap_s: float = 1.0) -> None:
        t_src = _ns("t_src", t_src)
        if not (max_gap_s > 0 and math.isfinite(max_gap_s)):
            raise ValueError(f"max_gap_s must be a positive number of seconds, got {max_gap_s}")
        vals = np.asarray(values, dtype="float64")
        if vals.ndim != 2 or t_src.ndim != 1:
            raise ValueError(f"positions must be (n, k) and times (n,), got {vals.shape} "
                             f"and {t_src.shape}")
        if vals.shape[0] != t_src.shape[0]:
            raise ValueError(f"{vals.shape[0]} positions for {t_src.shape[0]} times")
        self.k = vals.shape[1]
        self.max_gap_ns = max_gap_s * 1e9 * (1.0 + GAP_TOLERANCE)
        fin = np.isfinite(vals)
        d = np.diff(t_src) if t_src.size > 1 else None
        #: (times, times relative to the first, the columns, their values), one
        #: per set of columns valid at the same times
        self._parts: list[tuple[np.ndarray, np.ndarray, list[int], list[np.ndarray], bool]] = []
        if fin.all() and (d is None or bool((d >= 0).all())):
            # the usual case (the live recorder's track, once per fix): every
            # fix valid and in time order, so the selection and the stable
            # sort below would keep every row where it is (copies all the
            # same: the track must not change with the caller's arrays)
            self._add(t_src.copy(), vals, list(range(self.k)), d)
            return
        # Each column over its own valid values (columns valid at the same
        # times together: x and y always are).  Before, a row with any NaN
        # was dropped, so a receiver that gives no altitude (a GGA with an
        # empty altitude field, an RMC-only receiver) left every x, y NaN.
        groups: dict[bytes, list[int]] = {}
        for k in range(self.k):
            groups.setdefault(fin[:, k].tobytes(), []).append(k)
        for cols in groups.values():
            ok = fin[:, cols[0]]
            ts, vs = t_src[ok], vals[ok][:, cols]
            if ts.size:
                order = np.argsort(ts, kind="stable")
                ts, vs = ts[order], vs[order]
            self._add(ts, vs, cols, np.diff(ts) if ts.size > 1 else None)

    def _add(self, ts: np.ndarray, vs: np.ndarray, cols: list[int],
             d: np.ndarray | None) -> None:
        if ts.size == 0:
            return  # (its columns stay NaN)
        # Times relative to the first fix keep float64 exact to the nanosecond for days.
        rel = (ts - ts[0]).astype("float64")
        has_gap = bool(d is not None and np.any(d > self.max_gap_ns))
        # columns contiguous for np.interp (copies)
        self._parts.append((ts, rel, cols, [vs[:, j].copy() for j in range(len(cols))],
                            has_gap))

    def at(self, t_dst: np.ndarray) -> np.ndarray:
        """Positions ``(len(t_dst), k)`` at the times ``t_dst`` (int64 UTC ns)."""
        t_dst = _ns("t_dst", t_dst)
        if t_dst.ndim != 1:
            raise ValueError(f"t_dst must be one time per row, got shape {t_dst.shape}")
        out = np.empty((t_dst.shape[0], self.k))
        if len(self._parts) != 1 or len(self._parts[0][2]) != self.k:
            out.fill(np.nan)
        for ts, rel, cols, vs, has_gap in self._parts:
            rel_dst = (t_dst - ts[0]).astype("float64")
            for k, v in zip(cols, vs, strict=True):
                out[:, k] = np.interp(rel_dst, rel, v, left=np.nan, right=np.nan)
            if not has_gap:  # (the usual case: no gap to look for)
                continue
            idx = np.searchsorted(ts, t_dst, side="right")
            inside = (idx > 0) & (idx < ts.size)
            gap = np.zeros(t_dst.shape[0], dtype=bool)
            gap[inside] = (ts[idx[inside]] - ts[idx[inside] - 1]) > self.max_gap_ns
            if gap.any():
                exact = np.zeros(t_dst.shape[0], dtype=bool)
                after = idx > 0
                exact[after] = ts[idx[after] - 1] == t_dst[after]
                out[np.ix_(gap & ~exact, cols)] = np.nan
        return out


class PassTracker:
    """The passes of a sensor's path: where it turns back, how long passes
    last and how far apart they lie, from the positions alone (streaming).

    A side-to-side sweep passes over the ground in swings a second or two long
    and a few centimetres apart; a cart in lines along the lane, each a whole
    line long and a line spacing apart; a single line is one pass.  Detectors
    use this to wait for the next pass over an object for as long as passes
    take, and to know whether an object could have been seen on more than one.

    A frame every ``period`` seconds (counted in frames from the stream's
    first, so the result does not depend on the chunking) is compared with the
    anchor, the position where the last direction was taken; once it is
    ``turn_step`` away, that displacement is the new direction, and a
    direction against the current pass's (cosine below -0.5) starts a new
    pass.  A turn across the path (a cart stepping to its next line) is not a
    pass of its own.  When a pass ends, its spacing is the distance across its
    direction (from its first point to its last) between its middle (mean
    position) and the previous pass's.

    Parameters
    ----------
    turn_step : float
        Travel (m) over which the direction is taken.
    period : float
        Seconds between the frames looked at.
    """

    def __init__(self, turn_step: float = 0.05, period: float = 0.016) -> None:
        self.turn_step = float(turn_step)
        self.period = float(period)
        self._frames = 0
        self._anchor = (math.nan, math.nan)
        self._heading = (math.nan, math.nan)
        self._sum = (0.0, 0.0, 0)  # of the current pass's positions
        self._first = (math.nan, math.nan)  # its first position
        self._middle = (math.nan, math.nan)  # the last pass's middle
        #: Start times (s) of the passes, oldest first (see :meth:`forget`).
        self.starts: list[float] = []
        #: (time the pass ended, its spacing in m), oldest first.
        self.spacings: list[tuple[float, float]] = []
        #: When the first spacing was known (s; inf: not yet).
        self.first_spacing = math.inf
        #: When the first pass started and ended (s; inf: not yet); kept by
        #: :meth:`forget`.
        self.first_start = math.inf
        self.first_end = math.inf

    def track(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, rate: float) -> None:
        """Follow the path over the next frames (positions in m, times in s,
        ``rate`` frames per second); frames without a position are skipped."""
        n = x.shape[0]
        stride = max(1, int(self.period * rate))
        first = (-self._frames) % stride
        self._frames += n
        if first >= n:
            return
        sel = slice(first, n, stride)
        ax, ay = self._anchor
        hx, hy = self._heading
        sx, sy, sn = self._sum
        fx, fy = self._first
        mx, my = self._middle
        starts = self.starts
        step2 = self.turn_step ** 2
        for px, py, pt in zip(x[sel].tolist(), y[sel].tolist(), t[sel].tolist(), strict=True):
            if not (math.isfinite(px) and math.isfinite(py)):
                continue
            if not math.isfinite(ax):
                ax, ay = px, py
                continue
            ex, ey = px - ax, py - ay
            d2 = ex * ex + ey * ey
            if d2 >= step2:
                d = math.sqrt(d2)
                ex, ey = ex / d, ey / d
                ax, ay = px, py
                if not math.isfinite(hx) or ex * hx + ey * hy < -0.5:
                    if sn and math.isfinite(hx):
                        cx, cy = sx / sn, sy / sn
                        ux, uy = px - fx, py - fy
                        u = math.hypot(ux, uy)
                        if math.isfinite(mx) and u > 0:
                            self.spacings.append(
                                (pt, abs((cx - mx) * uy - (cy - my) * ux) / u))
                            self.first_spacing = min(self.first_spacing, pt)
                        mx, my = cx, cy
                    sx, sy, sn = 0.0, 0.0, 0
                    fx, fy = px, py
                    hx, hy = ex, ey
                    starts.append(pt)
                    if not math.isfinite(self.first_start):
                        self.first_start = pt
                    elif not math.isfinite(self.first_end):
                        self.first_end = pt
            if math.isfinite(hx):
                sx, sy, sn = sx + px, sy + py, sn + 1
        self._anchor, self._heading = (ax, ay), (hx, hy)
        self._sum, self._middle, self._first = (sx, sy, sn), (mx, my), (fx, fy)

    def forget(self, t: float, keep: int = 7) -> None:
        """Drop all but the last ``keep`` passes started and spacings known by
        ``t`` (later ones are kept), when the lists have grown."""
        for seq, when in ((self.starts, lambda v: v), (self.spacings, lambda v: v[0])):
            if len(seq) > 2 * keep + 2:  # (now and then: most calls add nothing)
                k = sum(1 for v in seq if when(v) <= t)
                del seq[:max(0, k - keep)]

    def duration(self, t: float) -> float:
        """How long passes last (s) as known at ``t``: the median of the last
        five completed, or the current one's so far when longer (0: no pass
        yet)."""
        starts = [s for s in self.starts if s <= t]
        if not starts:
            return 0.0
        durations = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)][-5:]
        typical = float(np.median(durations)) if durations else 0.0
        return max(typical, t - starts[-1])

    def spacing(self, t: float) -> float:
        """Median spacing (m) of the last five passes completed by ``t`` (NaN: none yet)."""
        got = [d for when, d in self.spacings if when <= t][-5:]
        return float(np.median(got)) if got else math.nan
