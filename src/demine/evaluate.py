"""Mine-action test & evaluation: probability of detection, false alarms per m², ROC.

The measures follow the practice of mine-action test and evaluation (IMAS 03.40,
CWA 14747, the US Army standardised UXO sites):

* **Matching.**  An alarm *finds* a ground-truth target when it lies within the
  target's *halo* (a radius around the target; inclusive).  One alarm clears one
  target and one target is cleared by one alarm.  The default halo depends on the
  target's size class (:func:`size_class`): 0.25 m for anti-personnel-sized
  objects, 0.5 m for larger ones (anti-tank mines, UXO).  See
  :func:`match_alarms` for the exact, deterministic rule for ties.
* **Probability of detection (PD)** = targets found / targets present, with the
  exact one-sided Clopper–Pearson lower confidence bound
  (:func:`clopper_pearson_lower`): 10 of 10 found proves only PD >= 0.741 at 95 %.
  With no target PD is undefined: NaN in the attributes, ``None`` in
  :meth:`Evaluation.to_dict`, and a note says so.
* **False alarms per square metre** of ground actually searched: the searched
  area is the union of the sensor footprint swept along its x, y path
  (:func:`searched_area`).
* **ROC**: PD against FA/m² over every distinct score threshold, PD at given
  FA/m² levels (default 0.5 and 1.0), localisation error of the detections, and
  the fraction of false alarms rejected at full mine recovery.
* Breakdowns by target class (truth ``type``), size class, depth band and soil.

Everything works from plain arrays (:func:`evaluate`, :func:`evaluate_lanes`)
and from demine recordings (:func:`evaluate_recordings`), optionally with alarms
from a CSV file (:func:`read_alarms_csv`).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._params import is_number as _is_number
from ._params import real_array as _real
from ._params import real_scalar as _float
from .errors import ConfigError, RecordingError

__all__ = [
    "AP_HALO",
    "DEFAULT_DEPTH_BANDS",
    "DEFAULT_FOOTPRINT",
    "LARGE_HALO",
    "ROC",
    "Coverage",
    "Evaluation",
    "GroupStat",
    "Lane",
    "LaneResult",
    "clopper_pearson_interval",
    "clopper_pearson_lower",
    "evaluate",
    "evaluate_lanes",
    "evaluate_recordings",
    "lane_from_recording",
    "match_alarms",
    "path_length",
    "read_alarms_csv",
    "read_truth_csv",
    "write_table_csv",
    "searched_area",
    "size_class",
]

#: The note of a recording scored without ground truth (:func:`evaluate_recordings`).
NO_TRUTH_NOTE = ("no ground truth (a survey, or truth kept apart): every alarm counts as a "
                 "false alarm; give the truth with --truth CSV")

#: Default halo radius (m) of anti-personnel-sized targets.
AP_HALO = 0.25
#: Default halo radius (m) of larger targets (anti-tank mines, UXO).
LARGE_HALO = 0.5
#: Default sensor footprint width (m): a typical hand-held detector coil.
DEFAULT_FOOTPRINT = 0.3
#: Default depth-band edges (m) of the by-depth breakdown.
DEFAULT_DEPTH_BANDS: tuple[float, ...] = (0.0, 0.05, 0.10, 0.20, 0.30)

# Type names (lower case) that mark a target larger than anti-personnel size.
_LARGE_PATTERNS = re.compile(
    r"(^|[^a-z])(at|atm|uxo|tank|antitank|shell|mortar|projectile|bomb|rocket|grenade_rifle|"
    r"large|tm|tm\d+\w*|tma\w*|tmm\w*|tmrp\w*|tms\w*|m15|m19|m21|m6|m7a2|vs-?2\.2|vs-?1\.6|"
    r"vs-?hct\w*|pt-?mi\w*|pt-?mi-?\w*|ptmi\w*|tc-?\d[\w.]*|prb-?m3\w*|sb-?81\w*)([^a-z]|$)"
)


def size_class(target_type: str) -> str:
    """Size class of a target from its type name: ``"ap"`` or ``"large"``.

    A type is *large* when its name contains one of the usual anti-tank or UXO
    words as a separate token (``AT``, ``anti-tank``, ``UXO``, ``shell``,
    ``mortar``, ``bomb``, ``large``, or an anti-tank model such as ``TM-62``,
    ``TMA-3``, ``M15``, ``VS-2.2``, ``PT-Mi-Ba``); everything else, including an
    empty or unknown type, is anti-personnel sized (the tighter halo).

    Parameters
    ----------
    target_type : str
        The ``type`` column of a ground-truth row.

    Returns
    -------
    str
        ``"large"`` or ``"ap"``.
    """
    name = str(target_type).strip().lower().replace("anti-tank", "antitank")
    name = name.replace("anti_tank", "antitank").replace("anti tank", "antitank")
    return "large" if _LARGE_PATTERNS.search(name) else "ap"


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def _check_confidence(where: str, confidence: Any) -> None:
    """A :class:`ConfigError` unless ``confidence`` is a number in (0, 1)."""
    if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
            or not 0.0 < confidence < 1.0):
        shown = confidence if isinstance(confidence, numbers.Real) else repr(confidence)
        raise ConfigError(f"{where}: confidence must be in (0, 1), got {shown}")


# --------------------------------------------------------------------------
# Binomial confidence bounds
# --------------------------------------------------------------------------


def _counts(where: str, k: Any, n: Any) -> tuple[int, int]:
    """``k`` successes of ``n`` trials as whole numbers (2.7 is not a count)."""
    out = []
    for name, v in (("k", k), ("n", n)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {name} must be a whole number, got {v!r}") from None
        if not (math.isfinite(f) and f == int(f)):
            raise ConfigError(f"{where}: {name} must be a whole number, got {v!r}")
        out.append(int(f))
    k, n = out
    if n < 0 or k < 0 or k > n:
        raise ConfigError(f"{where}: need 0 <= k <= n, got k={k}, n={n}")
    return k, n


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """Exact one-sided Clopper–Pearson lower bound of a binomial proportion.

    Parameters
    ----------
    k : int
        Successes (targets found), ``0 <= k <= n``.
    n : int
        Trials (targets present).
    confidence : float, optional
        One-sided confidence level, default 0.95.

    Returns
    -------
    float
        The largest ``p`` such that ``P(X >= k | p) <= 1 - confidence``:
        ``beta.ppf(1 - confidence, k, n - k + 1)``; 0 when ``k == 0`` and NaN
        when ``n == 0`` (nothing to estimate).

    Examples
    --------
    >>> round(clopper_pearson_lower(10, 10), 3)
    0.741
    >>> round(clopper_pearson_lower(50, 50), 2)
    0.94
    """
    from scipy.stats import beta

    k, n = _counts("clopper_pearson_lower", k, n)
    _check_confidence("clopper_pearson_lower", confidence)
    if n == 0:
        return math.nan
    if k == 0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, k, n - k + 1))


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper–Pearson interval of a binomial proportion.

    Parameters
    ----------
    k, n : int
        Successes and trials.
    confidence : float, optional
        Two-sided confidence level, default 0.95 (2.5 % in each tail).

    Returns
    -------
    (float, float)
        Lower and upper bound; ``(nan, nan)`` when ``n == 0``.
    """
    from scipy.stats import beta

    k, n = _counts("clopper_pearson_interval", k, n)
    _check_confidence("clopper_pearson_interval", confidence)
    if n == 0:
        return math.nan, math.nan
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


# --------------------------------------------------------------------------
# Searched area
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """The ground a sensor footprint swept, as a boolean raster.

    Attributes
    ----------
    mask : ndarray of bool, shape (ny, nx)
        True where the cell centre lies within ``footprint / 2`` of the path.
    x0, y0 : float
        Centre of cell ``mask[0, 0]`` (m).
    cell : float
        Cell size (m).
    footprint : float
        Footprint width (m) that was swept.
    """

    mask: NDArray[np.bool_]
    x0: float
    y0: float
    cell: float
    footprint: float

    @property
    def area(self) -> float:
        """Searched area in m² (covered cells times cell area)."""
        return float(np.count_nonzero(self.mask)) * self.cell * self.cell

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the raster's outer cell edges (m)."""
        ny, nx = self.mask.shape
        h = self.cell / 2
        return (self.x0 - h, self.x0 + (nx - 1) * self.cell + h,
                self.y0 - h, self.y0 + (ny - 1) * self.cell + h)

    def contains(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.bool_]:
        """Whether points lie in the searched area (their raster cell is covered).

        Parameters
        ----------
        x, y : array_like
            Point coordinates (m); NaN is never inside.

        Returns
        -------
        ndarray of bool
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ny, nx = self.mask.shape
        out = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            ix = np.floor((x - self.x0) / self.cell + 0.5)
            iy = np.floor((y - self.y0) / self.cell + 0.5)
            ok = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        ixi = np.where(ok, ix, 0).astype(np.intp)
        iyi = np.where(ok, iy, 0).astype(np.intp)
        out[ok] = self.mask[iyi[ok], ixi[ok]]
        return out


_GRID_PHASE = 0.381966011250105  # (3 - sqrt(5)) / 2
#: Largest grid (cells over the path's extent) that a ``cell`` given to
#: :func:`searched_area` may ask for: 1000 times the default 1 cm cells of a
#: 100 m x 100 m lane (the grid is coarsened to ``max_cells`` anyway, but the
#: path is still sampled at the cell size asked for).
_MAX_GRID_CELLS = 1e11


def _as_paths(path: Any) -> list[NDArray[np.float64]]:
    """Normalise a path argument to a list of (n, 2) float arrays."""
    if path is None:
        return []
    if isinstance(path, np.ndarray) and path.ndim == 2 and path.shape[1] == 2:
        return [_real("path", "positions", path)]
    if isinstance(path, tuple) and len(path) == 2 and np.ndim(path[0]) == 1:
        x = _real("path", "x", path[0])
        y = _real("path", "y", path[1])
        if x.shape != y.shape:
            raise ConfigError(f"path: x and y lengths differ ({x.size} vs {y.size})")
        return [np.column_stack([x, y])]
    if isinstance(path, Sequence) and not isinstance(path, str | bytes):
        out: list[NDArray[np.float64]] = []
        for p in path:
            out.extend(_as_paths(p))
        return out
    if np.ndim(path) == 0:  # (a list of [x, y] pairs is read as a list of paths)
        raise ConfigError(f"path: expected an (n, 2) array of x, y, a tuple (x, y) of 1-D "
                          f"arrays, or a list of those, got {path!r} (give a list of [x, y] "
                          f"points as an array: np.asarray(points))")
    arr = _real("path", "positions", path)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConfigError(f"path: expected an (n, 2) array of x, y, got shape {arr.shape}")
    return [arr]


def path_length(path: Any, *, max_gap: float = 1.0) -> float:
    """Metres the sensor travelled along ``path`` (as :func:`searched_area`
    takes it): steps between finite positions at most ``max_gap`` apart
    (longer ones: the sensor was lifted or the fix lost, not a search).

    For a radar on lines it is the metres of line, the unit of the
    false-alarm rate of line surveys (``far_per_m``).
    """
    max_gap = _float("path_length", "max_gap", max_gap)
    if not max_gap > 0:
        raise ConfigError(f"path_length: max_gap must be positive, got {max_gap}")
    total = 0.0
    for p in _as_paths(path):
        if p.shape[0] < 2:
            continue
        d = np.hypot(*(p[1:] - p[:-1]).T)
        total += float(np.sum(d[np.isfinite(d) & (d <= max_gap)]))
    return total


def searched_area(
    path: Any,
    footprint: float = DEFAULT_FOOTPRINT,
    *,
    cell: float | None = None,
    max_gap: float = 1.0,
    max_cells: int = 4_000_000,
) -> Coverage:
    """Ground swept by a sensor footprint along its path.

    The searched area is the union of discs of diameter ``footprint`` centred on
    every point of the polyline through the path positions (the path buffered by
    ``footprint / 2``, with round ends), rasterised on a grid of ``cell`` metres:
    a cell counts when its centre lies within ``footprint / 2`` of the polyline.
    Consecutive positions farther apart than ``max_gap`` (the sensor was lifted,
    the tracker lost its fix, a new pass starts) are not joined, and NaN
    positions break the path.

    Parameters
    ----------
    path : array_like or sequence of array_like
        Sensor positions: an (n, 2) array of x, y, a tuple ``(x, y)`` of 1-D
        arrays, or a list of those (several passes or streams; their union).
    footprint : float, optional
        Footprint width (m), default 0.3.
    cell : float, optional
        Raster cell size (m), at most ``footprint``; default ``footprint / 30``
        (1 cm for 0.3 m).  It is enlarged when the grid would exceed
        ``max_cells``.  A cell so small that the grid over the path's extent
        would exceed 1e11 cells (or ``max_cells``, if larger) is refused.
    max_gap : float, optional
        Longest step (m) between consecutive positions that is still swept.
    max_cells : int, optional
        Upper bound on the raster size, to keep memory bounded on large areas.

    Returns
    -------
    Coverage
        The raster; ``Coverage.area`` is the searched area in m².  A path with
        no finite position gives an empty coverage of area 0.
    """
    where = "searched_area"
    footprint = _float(where, "footprint", footprint)
    if not footprint > 0 or not math.isfinite(footprint):
        raise ConfigError(f"searched_area: footprint must be a positive width (m), "
                          f"got {footprint}")
    max_gap = _float(where, "max_gap", max_gap)
    if not max_gap > 0:
        raise ConfigError(f"searched_area: max_gap must be positive, got {max_gap}")
    if (isinstance(max_cells, bool) or not isinstance(max_cells, numbers.Real)
            or not max_cells >= 1):
        raise ConfigError(f"searched_area: max_cells must be a number >= 1, got {max_cells!r}")
    radius = footprint / 2.0
    given = cell is not None
    cell = _float(where, "cell", cell) if given else footprint / 30.0
    if not cell > 0:
        raise ConfigError(f"searched_area: cell must be positive, got {cell}")
    if given and not cell <= footprint:  # (inf too)
        raise ConfigError(f"searched_area: cell {cell:g} m is wider than the footprint "
                          f"({footprint:g} m): the grid can miss the swept strip altogether")
    paths = _as_paths(path)
    if given:
        # The path is sampled at half the cell asked for before the grid is
        # coarsened to max_cells: a tiny cell runs out of memory there.
        ends = [q[np.all(np.isfinite(q), axis=1)] for q in paths]
        ends = [q for q in ends if q.shape[0]]
        if ends:
            allp = np.concatenate(ends)
            extent = allp.max(axis=0) - allp.min(axis=0)
            ncell = float(np.prod(np.ceil((extent + 2 * (radius + cell)) / cell) + 1))
            limit = max(_MAX_GRID_CELLS, float(max_cells))
            if ncell > limit:
                raise ConfigError(
                    f"searched_area: cell {cell:g} m would need a grid of {ncell:.3g} cells "
                    f"over the path's {extent[0] + footprint:.4g} m x "
                    f"{extent[1] + footprint:.4g} m bounding box (at most "
                    f"{limit:.3g}); use a larger cell (default footprint / 30 = "
                    f"{footprint / 30.0:g} m)")

    # Dense samples along every swept segment (spacing <= cell / 2).
    step = cell / 2.0
    pieces: list[NDArray[np.float64]] = []
    for p in paths:
        if p.shape[0] == 0:
            continue
        finite = np.all(np.isfinite(p), axis=1)
        pts = p[finite]
        if pts.shape[0] == 0:
            continue
        pieces.append(pts)  # isolated points still sweep a disc
        if p.shape[0] < 2:
            continue
        a, b = p[:-1], p[1:]
        seg_ok = finite[:-1] & finite[1:]
        d = np.hypot(*(b - a).T)
        seg_ok &= d <= max_gap
        a, b, d = a[seg_ok], b[seg_ok], d[seg_ok]
        nsub = np.ceil(d / step).astype(np.int64)
        keep = nsub > 1
        if np.any(keep):
            a, b, nsub = a[keep], b[keep], nsub[keep]
            seg = np.repeat(np.arange(a.shape[0]), nsub)
            start = np.cumsum(nsub) - nsub
            t = (np.arange(seg.size) - start[seg]) / nsub[seg]
            pieces.append(a[seg] + (b[seg] - a[seg]) * t[:, None])
    if not pieces:
        return Coverage(np.zeros((0, 0), dtype=bool), 0.0, 0.0, cell, footprint)
    pts = np.concatenate(pieces)

    lo = pts.min(axis=0) - radius - cell
    hi = pts.max(axis=0) + radius + cell
    span = hi - lo
    ncell = float(np.prod(np.ceil(span / cell) + 1))
    if ncell > max_cells:
        cell = float(math.sqrt(span[0] * span[1] / max_cells)) * 1.01
        cell = max(cell, float(max(span)) / max_cells)
        if cell > footprint / 4.0:
            far = " (cells wider than the footprint can miss the strip)" \
                if cell > footprint else ""
            warnings.warn(
                f"searched_area: the path spans {span[0]:.4g} m x {span[1]:.4g} m, so the "
                f"{max_cells:g}-cell grid has cells of {cell:.3g} m, more than a quarter of "
                f"the {footprint:g} m footprint: the area is approximate{far}. "
                f"A position far from the rest (a bad GPS fix) does this; evaluate such "
                f"areas in parts",
                RuntimeWarning, stacklevel=2)
    nx = int(math.ceil(span[0] / cell)) + 1
    ny = int(math.ceil(span[1] / cell)) + 1
    # The grid is offset by an irrational fraction of a cell so that paths along
    # round coordinates (y = 0, footprints that are a whole number of cells) do
    # not put rows of cell centres exactly on the boundary of the swept strip.
    x0 = float(lo[0]) - _GRID_PHASE * cell
    y0 = float(lo[1]) - _GRID_PHASE * cell

    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import cKDTree

    # Coarse pass: distance from each cell centre to the nearest cell holding a path
    # sample (exact to within one cell diagonal) prunes the grid ...
    marked = np.ones((ny, nx), dtype=bool)
    ix = np.clip(np.floor((pts[:, 0] - x0) / cell + 0.5).astype(np.intp), 0, nx - 1)
    iy = np.clip(np.floor((pts[:, 1] - y0) / cell + 0.5).astype(np.intp), 0, ny - 1)
    marked[iy, ix] = False
    coarse = distance_transform_edt(marked, sampling=cell)
    cand = coarse <= radius + 1.5 * cell
    del coarse, marked
    # ... and an exact pass measures the candidates' distance to the dense samples,
    # which is the distance to the polyline to within (step / 2)^2 / (2 radius).
    cy, cx = np.nonzero(cand)
    mask = np.zeros((ny, nx), dtype=bool)
    if cy.size:
        tree = cKDTree(pts)
        centres = np.column_stack([x0 + cx * cell, y0 + cy * cell])
        dist, _ = tree.query(centres, k=1, distance_upper_bound=radius + cell)
        inside = dist <= radius
        mask[cy[inside], cx[inside]] = True
    return Coverage(mask, x0, y0, cell, footprint)


# --------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------


#: A distance counts as within a halo up to this factor of it: an alarm logged
#: exactly on a halo (positions to the centimetre, 0.15 and 0.20 m off a
#: target with a 0.25 m halo) comes out of floating point as 0.25000000000000006
#: m, and the k-d tree's own distance may differ from ``hypot`` in the last bit.
_HALO_SLACK = 1.0 + 1e-9


def match_alarms(
    alarm_xy: ArrayLike,
    target_xy: ArrayLike,
    halo: ArrayLike | float,
    score: ArrayLike | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Match alarms to targets within a halo; one alarm clears one target.

    The rule is a greedy assignment over every (alarm, target) pair whose
    distance is at most the target's halo (inclusive, to within a relative
    1e-9, so that an alarm logged exactly on a halo is within it whatever
    floating point makes of its distance), taking pairs in this
    order, each accepted when neither its alarm nor its target is matched yet:

    1. nearer first (every alarm goes to its nearest unmatched target,
       globally by ascending distance);
    2. at equal distance, the higher-scoring alarm first;
    3. then the target that comes first in the truth table;
    4. then the alarm that comes first in the alarms table.

    This is the unique stable matching of alarms and targets under these
    preferences.  Adding an alarm changes it only along one chain of
    displacements: no target found before is lost, at most one more is found,
    and the number of unmatched alarms never falls.  So the matching of the
    alarms above any score threshold (how the ROC is computed) gives a PD and
    a false-alarm count that never decrease as the threshold is lowered, and
    the lowest-threshold point equals the overall figures.

    Parameters
    ----------
    alarm_xy : array_like, shape (n, 2)
        Alarm positions (m).
    target_xy : array_like, shape (m, 2)
        Target positions (m).
    halo : float or array_like, shape (m,)
        Halo radius of every target (m).
    score : array_like, shape (n,), optional
        Alarm scores (higher is more confident); all equal when omitted.

    Returns
    -------
    alarm_target : ndarray of intp, shape (n,)
        Index of the target each alarm found, or -1.
    distance : ndarray of float64, shape (n,)
        Distance from each alarm to the target it found (NaN when none).
    """
    a = _real("match_alarms", "alarm_xy", alarm_xy)
    t = _real("match_alarms", "target_xy", target_xy)
    for name, v in (("alarm_xy", a), ("target_xy", t)):
        if not (v.ndim == 2 and v.shape[1] == 2) and v.size:
            raise ConfigError(f"match_alarms: {name} must have shape (n, 2), got {v.shape}")
    a, t = a.reshape(-1, 2), t.reshape(-1, 2)
    na, nt = a.shape[0], t.shape[0]
    hv = _real("match_alarms", "halo", halo)
    if hv.ndim and hv.shape != (nt,):
        raise ConfigError(f"match_alarms: halo must be one radius or one per target "
                          f"({nt}), got shape {hv.shape}")
    if not np.all(np.isfinite(hv) & (hv >= 0)):  # (NaN, inf or < 0 matched nothing)
        bad = hv.reshape(-1)[~(np.isfinite(hv.reshape(-1)) & (hv.reshape(-1) >= 0))]
        raise ConfigError(f"match_alarms: halo must be finite radii >= 0 (m), got "
                          f"{bad[0]}" + (f" and {bad.size - 1} more" if bad.size > 1 else ""))
    h = np.broadcast_to(hv, (nt,))
    s = np.zeros(na) if score is None else _real("match_alarms", "score", score).reshape(-1)
    if s.shape[0] != na:
        raise ConfigError(f"match_alarms: {s.shape[0]} scores for {na} alarms")
    out = np.full(na, -1, dtype=np.intp)
    dist_out = np.full(na, np.nan)
    okt = np.all(np.isfinite(t), axis=1) & np.isfinite(h) & (h >= 0)
    oka = np.all(np.isfinite(a), axis=1)
    if na == 0 or not okt.any() or not oka.any():
        return out, dist_out
    from scipy.spatial import cKDTree

    tidx = np.nonzero(okt)[0]
    aidx = np.nonzero(oka)[0]
    tree = cKDTree(t[tidx])
    lists = tree.query_ball_point(a[aidx], r=float(h[tidx].max()) * _HALO_SLACK)
    counts = np.fromiter((len(x) for x in lists), dtype=np.intp, count=len(lists))
    if counts.sum() == 0:
        return out, dist_out
    ai = np.repeat(aidx, counts)
    ti = tidx[np.concatenate([np.asarray(x, dtype=np.intp) for x in lists if len(x)])]
    d = np.hypot(a[ai, 0] - t[ti, 0], a[ai, 1] - t[ti, 1])
    keep = d <= h[ti] * _HALO_SLACK
    ai, ti, d = ai[keep], ti[keep], d[keep]
    order = np.lexsort((ai, ti, -s[ai], d))
    free_t = np.ones(nt, dtype=bool)
    for k in order:
        i, j = ai[k], ti[k]
        if out[i] < 0 and free_t[j]:
            out[i] = j
            dist_out[i] = d[k]
            free_t[j] = False
    return out, dist_out


def _match_truth(axy: np.ndarray, txy: np.ndarray, h: np.ndarray, is_target: np.ndarray,
                 score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each alarm's truth row (or -1) and its distance: :func:`match_alarms`
    against the targets first (every target, searched or not, so an alarm on
    an unsearched target is not a false alarm), then the leftover alarms
    against the clutter rows."""
    na = axy.shape[0]
    alarm_target = np.full(na, -1, dtype=np.intp)
    alarm_dist = np.full(na, np.nan)
    tgt_idx = np.nonzero(is_target)[0]
    m, d = match_alarms(axy, txy[tgt_idx], h[tgt_idx], score)
    hit = m >= 0
    alarm_target[hit] = tgt_idx[m[hit]]
    alarm_dist[hit] = d[hit]
    clutter_idx = np.nonzero(~is_target)[0]
    left = np.nonzero(~hit)[0]
    if clutter_idx.size and left.size:
        m2, d2 = match_alarms(axy[left], txy[clutter_idx], h[clutter_idx], score[left])
        ok = m2 >= 0
        alarm_target[left[ok]] = clutter_idx[m2[ok]]
        alarm_dist[left[ok]] = d2[ok]
    return alarm_target, alarm_dist


def _false_above(r: LaneResult, threshold: float) -> tuple[int, int]:
    """False alarms of one lane among the alarms scoring at least ``threshold``,
    matched afresh as the ROC matches them, and how many of them lie on
    clutter rows."""
    sel = np.nonzero(r.alarm_score >= threshold)[0]
    if not sel.size:
        return 0, 0
    at, _ = _match_truth(np.column_stack([r.alarm_x[sel], r.alarm_y[sel]]),
                         np.column_stack([r.truth_x, r.truth_y]), r.halo,
                         r.is_target.astype(bool), r.alarm_score[sel])
    on_target = ((at >= 0) & r.is_target[np.maximum(at, 0)] if r.is_target.size
                 else np.zeros(sel.size, dtype=bool))
    false = ~on_target & r.alarm_inside[sel]
    return int(false.sum()), int((false & (at >= 0)).sum())


def _candidates(a: np.ndarray, t: np.ndarray, h: np.ndarray, s: np.ndarray,
                tidx: np.ndarray) -> list[list[tuple[tuple[float, float, int, int], int]]]:
    """Per alarm, the targets ``tidx`` within their halo, by the matching order."""
    na = a.shape[0]
    out: list[list[tuple[tuple[float, float, int, int], int]]] = [[] for _ in range(na)]
    okt = tidx[np.all(np.isfinite(t[tidx]), axis=1) & np.isfinite(h[tidx])]
    oka = np.nonzero(np.all(np.isfinite(a), axis=1))[0]
    if not okt.size or not oka.size:
        return out
    from scipy.spatial import cKDTree

    tree = cKDTree(t[okt])
    lists = tree.query_ball_point(a[oka], r=float(h[okt].max()) * _HALO_SLACK)
    for i, lst in zip(oka.tolist(), lists, strict=True):
        cand = []
        for k in lst:
            j = int(okt[k])
            d = float(math.hypot(a[i, 0] - t[j, 0], a[i, 1] - t[j, 1]))
            if d <= h[j] * _HALO_SLACK:
                cand.append(((d, -float(s[i]), j, i), j))
        cand.sort()
        out[i] = cand
    return out


def _roc_steps(r: LaneResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits and false alarms of one lane at each of its distinct scores (descending).

    Alarms are inserted by descending score into the stable matching of
    :func:`match_alarms` (deferred acceptance: a nearer alarm displaces a
    target's holder, which moves on to its next target), so the count after
    each score group equals a fresh matching of the alarms scoring at least
    that much.
    """
    a = np.column_stack([r.alarm_x, r.alarm_y])
    t = np.column_stack([r.truth_x, r.truth_y])
    s = r.alarm_score
    tidx = np.nonzero(r.is_target)[0]
    cand = _candidates(a, t, r.halo, s, tidx)
    na, nt = a.shape[0], t.shape[0]
    holder = np.full(nt, -1, dtype=np.intp)
    hkey: list[Any] = [None] * nt
    ptr = [0] * na
    match = np.full(na, -1, dtype=np.intp)
    inside = r.alarm_inside
    counted = r.counted
    active = np.zeros(na, dtype=bool)
    hits = fas = 0

    def status(i: int) -> tuple[int, int]:
        if not active[i]:
            return (0, 0)
        j = match[i]
        if j >= 0:
            return (1, 0) if counted[j] else (0, 0)
        return (0, 1) if inside[i] else (0, 0)

    def set_match(i: int, j: int) -> None:
        nonlocal hits, fas
        h0, f0 = status(i)
        match[i] = j
        h1, f1 = status(i)
        hits += h1 - h0
        fas += f1 - f0

    order = np.lexsort((np.arange(na), -s))
    thr, nh, nf = [], [], []
    for n, i0 in enumerate(order.tolist()):
        h0, f0 = status(i0)
        active[i0] = True  # a new alarm starts unmatched
        h1, f1 = status(i0)
        hits += h1 - h0
        fas += f1 - f0
        i = i0
        while i >= 0:
            nxt = -1
            while ptr[i] < len(cand[i]):
                key, j = cand[i][ptr[i]]
                ptr[i] += 1
                h = int(holder[j])
                if h < 0 or key < hkey[j]:
                    holder[j] = i
                    hkey[j] = key
                    set_match(i, j)
                    if h >= 0:
                        set_match(h, -1)
                        nxt = h
                    break
            i = nxt
        if n == na - 1 or s[order[n + 1]] != s[i0]:
            thr.append(float(s[i0]))
            nh.append(hits)
            nf.append(fas)
    return (np.asarray(thr, dtype=np.float64), np.asarray(nh, dtype=np.int64),
            np.asarray(nf, dtype=np.int64))


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def _column(table: Any, name: str, n: int | None, default: Any = None) -> np.ndarray | None:
    """Column ``name`` of a mapping / structured array, or ``default`` broadcast."""
    has = False
    if isinstance(table, Mapping):
        has = name in table
    elif isinstance(table, np.ndarray) and table.dtype.names:
        has = name in table.dtype.names
    if has:
        col = np.asarray(table[name])
        if col.dtype.kind == "S":
            col = np.char.decode(col, "utf-8")
        elif col.dtype.kind == "O":
            col = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in col])
        return col.reshape(-1)
    if default is None or n is None:
        return None
    return np.full(n, default)


def _table_len(table: Any, what: str) -> int:
    if table is None:
        return 0
    x = _column(table, "x", None)
    y = _column(table, "y", None)
    if x is None or y is None:
        raise ConfigError(f"{what}: needs columns 'x' and 'y'")
    if x.shape != y.shape:
        raise ConfigError(f"{what}: columns 'x' and 'y' differ in length ({x.size} vs {y.size})")
    return int(x.size)


def _check_rows(table: Any, what: str, n: int, names: Iterable[str]) -> None:
    """Every column of ``names`` in ``table`` has one value per row (``n``, as 'x')."""
    for name in names:
        col = _column(table, name, None)
        if col is not None and col.size != n:
            raise ConfigError(f"{what}: column {name!r} has {col.size} value(s) for {n} rows "
                              f"(as many as 'x' and 'y')")


#: text values of a truth ``is_mine`` column (lower case) that mean yes and no
_YES = ("1", "true", "yes", "y", "t")
_NO = ("0", "false", "no", "n", "f", "")


def _mine_flags(values: Any, what: str) -> np.ndarray:
    """A truth ``is_mine`` column as booleans: numbers, or text yes/no values
    (:data:`_YES`, :data:`_NO`, numbers written as text); anything else is an
    error naming ``what``."""
    tmine = np.asarray(values)
    if tmine.dtype.kind in "US":
        words = np.char.strip(np.char.lower(tmine.astype(str)))
        yes = np.isin(words, _YES)
        unknown = ~(yes | np.isin(words, _NO))
        for i in np.flatnonzero(unknown):  # numbers written as text ('1.0', '0.0')
            try:
                v = float(words[i])
            except ValueError:
                continue
            if math.isfinite(v):
                yes[i], unknown[i] = v != 0, False
        if unknown.any():  # ('mine' or 'nan' had been read as no)
            raise ConfigError(f"{what}: truth column 'is_mine' must hold yes/no values "
                              f"(1/0, true/false, yes/no, y/n, t/f), got "
                              f"{str(tmine[unknown][0])!r} ({int(unknown.sum())} such value(s))")
        return yes
    if tmine.dtype.kind == "f" and np.any(np.isnan(tmine)):  # (NaN read as yes)
        raise ConfigError(f"{what}: truth column 'is_mine' has NaN values (1: mine, "
                          f"0: not a mine)")
    return tmine.astype(bool)


@dataclass
class Lane:
    """One searched lane (or recording): its truth, alarms and searched area.

    Attributes
    ----------
    truth : mapping of column arrays or structured array
        Ground truth with at least ``x``, ``y``; optional ``id``, ``type``,
        ``is_mine`` (default True; numbers, booleans or yes/no text such as
        ``"1"``, ``"false"``, ``"yes"``), ``depth`` (m), ``soil``, ``halo``
        (m; a per-target override).  One value per row in every column.
    alarms : mapping of column arrays or structured array, or None
        Alarms with at least ``x``, ``y``; optional ``score`` (default 1),
        ``depth``.
    path : array_like, optional
        Sensor positions for :func:`searched_area`.
    footprint : float
        Footprint width (m) swept along ``path``.
    area : float, optional
        Searched area (m²) when known otherwise; overrides the one computed from
        ``path``.  With neither, every alarm and target counts as inside and
        FA/m² is undefined.
    soil : str
        Soil of the lane (used when the truth has no ``soil`` column).
    name : str
        Lane name in reports.
    coverage : Coverage, optional
        A precomputed coverage raster (takes precedence over ``path``).
    notes : list of str
        Conditions to pass on to the evaluation's notes.
    path_length : float, optional
        Metres of path when known otherwise (e.g. kept beside a coverage
        raster); overrides the one computed from ``path`` (the sum of its
        pieces).  :func:`lane_from_recording` gives the longest of its
        streams' paths (at its ``max_gap``): the streams of one recording
        travel one line.
    truth_given : bool
        Whether the lane's ground truth is known (:attr:`Recording.truth_given
        <demine.recording.Recording.truth_given>`, or truth given apart): an
        empty ``truth`` is then a blank lane; :func:`evaluate_recordings`
        notes a lane scored without it.
    """

    truth: Any
    alarms: Any = None
    path: Any = None
    footprint: float = DEFAULT_FOOTPRINT
    area: float | None = None
    soil: str = "unknown"
    name: str = ""
    coverage: Coverage | None = None
    notes: list[str] = field(default_factory=list)
    path_length: float | None = None
    truth_given: bool = True


@dataclass
class LaneResult:
    """Matching outcome of one lane, kept for plots and further analysis.

    Attributes
    ----------
    name, soil : str
    area : float
        Searched area (m²), NaN when unknown.
    coverage : Coverage or None
    truth_x, truth_y, truth_depth : ndarray
    truth_type, truth_soil, truth_size : ndarray of str
    truth_id : ndarray
    is_target : ndarray of bool
        Truth rows that are targets (mines, or all rows with ``targets="all"``).
    truth_inside : ndarray of bool
        Truth rows inside the searched area.
    counted : ndarray of bool
        Targets that count in PD.
    halo : ndarray of float
        Halo radius of each truth row.
    found_by : ndarray of intp
        Alarm index that found each truth row (-1: none).
    alarm_x, alarm_y, alarm_score, alarm_depth : ndarray
    alarm_target : ndarray of intp
        Truth row each alarm matched (-1: none); for clutter rows too.
    alarm_distance : ndarray
    alarm_inside : ndarray of bool
    alarm_kind : ndarray of str
        ``"hit"`` (found a counted target), ``"clutter"`` (false alarm on a
        known non-target item), ``"false"`` (false alarm), ``"ignored"``
        (matched a target outside the searched area, neither hit nor false
        alarm) or ``"outside"`` (unmatched and outside the searched area).
    path : list of ndarray
    notes : list of str
    path_length : float
        Metres travelled along ``path`` (:func:`path_length`), NaN without one.
    """

    name: str
    soil: str
    area: float
    coverage: Coverage | None
    truth_id: np.ndarray
    truth_x: np.ndarray
    truth_y: np.ndarray
    truth_depth: np.ndarray
    truth_type: np.ndarray
    truth_soil: np.ndarray
    truth_size: np.ndarray
    is_target: np.ndarray
    truth_inside: np.ndarray
    counted: np.ndarray
    halo: np.ndarray
    found_by: np.ndarray
    alarm_x: np.ndarray
    alarm_y: np.ndarray
    alarm_score: np.ndarray
    alarm_depth: np.ndarray
    alarm_target: np.ndarray
    alarm_distance: np.ndarray
    alarm_inside: np.ndarray
    alarm_kind: np.ndarray
    path: list[np.ndarray] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path_length: float = math.nan

    @property
    def n_targets(self) -> int:
        """Targets counted in PD."""
        return int(np.count_nonzero(self.counted))

    @property
    def n_found(self) -> int:
        """Counted targets found."""
        return int(np.count_nonzero(self.counted & (self.found_by >= 0)))

    @property
    def n_false_alarms(self) -> int:
        """False alarms inside the searched area (including those on clutter)."""
        return int(np.count_nonzero(np.isin(self.alarm_kind, ("false", "clutter"))))

    def target_rows(self) -> dict[str, np.ndarray]:
        """One row per truth row: what became of it (columns of
        :meth:`Evaluation.target_table`, without ``lane``)."""
        j = self.found_by
        hit = j >= 0
        jj = np.where(hit, j, 0)

        def at(v: np.ndarray) -> np.ndarray:
            return np.where(hit, v[jj], np.nan) if v.size else np.full(j.size, np.nan)

        ax, ay = at(self.alarm_x), at(self.alarm_y)
        return {
            "id": self.truth_id.astype(str), "type": self.truth_type, "size": self.truth_size,
            "target": self.is_target, "x": self.truth_x, "y": self.truth_y,
            "depth": self.truth_depth, "soil": self.truth_soil, "halo": self.halo,
            "searched": self.truth_inside, "counted": self.counted,
            "found": self.counted & hit, "alarm": j, "alarm_x": ax, "alarm_y": ay,
            "alarm_score": at(self.alarm_score), "alarm_depth": at(self.alarm_depth),
            "distance": np.hypot(ax - self.truth_x, ay - self.truth_y),
        }

    def alarm_rows(self) -> dict[str, np.ndarray]:
        """One row per alarm: its outcome (columns of
        :meth:`Evaluation.alarm_table`, without ``lane``)."""
        k = self.alarm_target
        matched = k >= 0
        ids = self.truth_id.astype(str)
        return {
            "alarm": np.arange(k.size), "x": self.alarm_x, "y": self.alarm_y,
            "score": self.alarm_score, "depth": self.alarm_depth, "outcome": self.alarm_kind,
            "searched": self.alarm_inside,
            "target_id": np.where(matched, ids[np.where(matched, k, 0)] if ids.size else "",
                                  ""),
            "distance": np.where(matched, self.alarm_distance, np.nan),
        }


def _halo_for(types: np.ndarray, sizes: np.ndarray, halo: Any,
              override: np.ndarray | None) -> np.ndarray:
    n = types.size
    if isinstance(halo, numbers.Real) and not isinstance(halo, bool | np.bool_):
        if not (halo > 0 and math.isfinite(halo)):
            raise ConfigError(f"halo must be a positive finite radius in m, got {halo}")
        h = np.full(n, float(halo))
    else:
        table = {"ap": AP_HALO, "large": LARGE_HALO}
        if halo is not None:
            if not isinstance(halo, Mapping):
                raise ConfigError(f"halo must be a number or a mapping, got {type(halo).__name__}")
            for k, v in halo.items():
                if not (np.ndim(v) == 0 and _is_number(v) and not isinstance(v, bool)
                        and float(v) > 0 and math.isfinite(float(v))):
                    raise ConfigError(f"halo[{k!r}] must be a positive finite radius in m, "
                                      f"got {v!r}")
            table.update({str(k).lower(): float(v) for k, v in halo.items()})
        h = np.array([table.get(str(tt).lower(), table.get(sz, AP_HALO))
                      for tt, sz in zip(types, sizes, strict=True)], dtype=np.float64)
    if override is not None:
        ov = np.asarray(override, dtype=np.float64)
        h = np.where(np.isfinite(ov) & (ov > 0), ov, h)
    return h


def _evaluate_lane(lane: Lane, *, halo: Any, targets: str, include_unsearched: bool,
                   select: Callable[[dict[str, np.ndarray]], Any] | None,
                   cell: float | None, max_gap: float) -> LaneResult:
    what = f"lane {lane.name!r}" if lane.name else "lane"
    nt = _table_len(lane.truth, f"{what}: truth") if lane.truth is not None else 0
    na = _table_len(lane.alarms, f"{what}: alarms")
    truth = lane.truth if lane.truth is not None else {"x": np.zeros(0), "y": np.zeros(0)}
    _check_rows(truth, f"{what}: truth", nt,
                ("id", "type", "is_mine", "depth", "soil", "halo", "metal_mass"))
    if lane.alarms is not None:
        _check_rows(lane.alarms, f"{what}: alarms", na, ("score", "depth"))
    tx = _real(what, "truth column 'x'", _column(truth, "x", nt))
    ty = _real(what, "truth column 'y'", _column(truth, "y", nt))
    tid = _column(truth, "id", None)
    tid = np.arange(nt) if tid is None else tid
    ttype = _column(truth, "type", nt, "").astype(str)
    tmine = _mine_flags(_column(truth, "is_mine", nt, True), what)
    tdepth = _real(what, "truth column 'depth'", _column(truth, "depth", nt, np.nan))
    tsoil = _column(truth, "soil", nt, lane.soil or "unknown").astype(str)
    tsoil = np.where(tsoil == "", lane.soil or "unknown", tsoil)
    tsize = np.array([size_class(t) for t in ttype], dtype=str) if nt else np.zeros(0, str)
    hover = _column(truth, "halo", None)
    if hover is not None:
        hv = _real(what, "truth column 'halo'", hover)
        bad = (hv < 0) | np.isinf(hv)  # (NaN or 0: no override, the class's halo)
        if bad.any():
            raise ConfigError(f"{what}: truth column 'halo' must be radii in m (0 or empty: "
                              f"the class's halo), got {hv[bad][0]:g}")
    h = _halo_for(ttype, tsize, halo, hover)

    alarms = lane.alarms if lane.alarms is not None else {"x": np.zeros(0), "y": np.zeros(0)}
    ax = _real(what, "alarms column 'x'", _column(alarms, "x", na))
    ay = _real(what, "alarms column 'y'", _column(alarms, "y", na))
    ascore = _real(what, "alarms column 'score'", _column(alarms, "score", na, 1.0))
    if not np.all(np.isfinite(ascore)):
        bad = ascore[~np.isfinite(ascore)][0]
        raise ConfigError(f"{what}: alarms field 'score' must be finite, got {bad}")
    adepth = _real(what, "alarms column 'depth'", _column(alarms, "depth", na, np.nan))

    if targets == "mines":
        is_target = tmine
    elif targets == "all":
        is_target = np.ones(nt, dtype=bool)
    else:
        raise ConfigError(f"targets must be 'mines' or 'all', got {targets!r}")

    coverage = lane.coverage
    paths = _as_paths(lane.path)
    if coverage is None and paths:
        coverage = searched_area(paths, lane.footprint, cell=cell, max_gap=max_gap)
    if lane.area is not None:
        area = float(lane.area) if np.ndim(lane.area) == 0 and _is_number(lane.area) else -1.0
        if area < 0 or math.isinf(area):  # (NaN: unknown, noted below)
            raise ConfigError(f"{what}: searched area must be a finite number of m² >= 0 "
                              f"(NaN: unknown), got {lane.area}")
    elif coverage is not None:
        area = coverage.area
    else:
        area = math.nan
    if coverage is not None:
        t_in = coverage.contains(tx, ty)
        a_in = coverage.contains(ax, ay)
    else:
        t_in = np.ones(nt, dtype=bool)
        a_in = np.ones(na, dtype=bool)
    t_pos = np.isfinite(tx) & np.isfinite(ty)
    a_pos = np.isfinite(ax) & np.isfinite(ay)
    t_in &= t_pos
    a_in &= a_pos
    lane_notes = []
    if np.any(is_target & ~t_pos):
        lane_notes.append(f"{what}: {int(np.sum(is_target & ~t_pos))} target(s) without a "
                          "position not counted")
    if np.any(~a_pos):
        lane_notes.append(f"{what}: {int(np.sum(~a_pos))} alarm(s) without a position not "
                          "evaluated (reported as outside the searched area)")
    counted = is_target & t_pos & (t_in | include_unsearched)
    if select is not None:
        cols = {"id": tid, "type": ttype, "is_mine": tmine, "x": tx, "y": ty, "depth": tdepth,
                "soil": tsoil, "size": tsize,
                "metal_mass": _real(what, "truth column 'metal_mass'",
                                    _column(truth, "metal_mass", nt, np.nan))}
        keep = np.asarray(select(cols), dtype=bool).reshape(-1)
        if keep.shape != (nt,):
            raise ConfigError(f"{what}: select returned {keep.size} values for {nt} truth rows")
        counted &= keep

    alarm_target, alarm_dist = _match_truth(np.column_stack([ax, ay]),
                                            np.column_stack([tx, ty]), h, is_target, ascore)

    found_by = np.full(nt, -1, dtype=np.intp)
    matched = alarm_target >= 0
    found_by[alarm_target[matched]] = np.nonzero(matched)[0]

    kind = np.full(na, "false", dtype="<U7")
    safe = np.maximum(alarm_target, 0)
    on_target = matched & (is_target[safe] if nt else False)
    on_counted = on_target & (counted[safe] if nt else False)
    kind[on_counted] = "hit"
    kind[on_target & ~on_counted] = "ignored"
    on_clutter = matched & ~on_target
    kind[on_clutter & a_in] = "clutter"
    kind[on_clutter & ~a_in] = "outside"
    kind[~matched & ~a_in] = "outside"

    return LaneResult(
        name=lane.name, soil=lane.soil or "unknown", area=area, coverage=coverage,
        truth_id=tid, truth_x=tx, truth_y=ty, truth_depth=tdepth, truth_type=ttype,
        truth_soil=tsoil, truth_size=tsize, is_target=is_target, truth_inside=t_in,
        counted=counted, halo=h, found_by=found_by, alarm_x=ax, alarm_y=ay,
        alarm_score=ascore, alarm_depth=adepth, alarm_target=alarm_target,
        alarm_distance=alarm_dist, alarm_inside=a_in, alarm_kind=kind, path=paths,
        notes=lane_notes,
        path_length=(_float(what, "path_length", lane.path_length)
                     if lane.path_length is not None
                     else path_length(paths, max_gap=max_gap) if paths else math.nan),
    )


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


def _num(v: float) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class GroupStat:
    """PD of one group of targets (a class, depth band, soil...).

    Attributes
    ----------
    n_targets, n_found : int
    pd : float
        NaN when ``n_targets == 0``.
    pd_lower95 : float
        One-sided Clopper–Pearson lower bound at the evaluation's confidence.
    far_per_m2 : float
        False alarms per m² where the group has its own searched area (soils
        given per lane); NaN otherwise.
    area_m2 : float
    n_false_alarms : int
    """

    n_targets: int
    n_found: int
    pd: float
    pd_lower95: float
    far_per_m2: float = math.nan
    area_m2: float = math.nan
    n_false_alarms: int = 0

    @classmethod
    def of(cls, k: int, n: int, confidence: float, **kw: Any) -> GroupStat:
        pd = k / n if n else math.nan
        return cls(int(n), int(k), pd, clopper_pearson_lower(k, n, confidence), **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (undefined values as None)."""
        out: dict[str, Any] = {
            "n_targets": self.n_targets, "n_found": self.n_found,
            "pd": _num(self.pd), "pd_lower95": _num(self.pd_lower95),
        }
        if math.isfinite(self.area_m2):
            out.update(far_per_m2=_num(self.far_per_m2), area_m2=self.area_m2,
                       n_false_alarms=self.n_false_alarms)
        return out


@dataclass(frozen=True)
class ROC:
    """PD against false alarms per m² over the score threshold.

    Point 0 is the threshold +inf (no alarm declared).  Then one point per
    distinct alarm score, thresholds descending: an alarm is declared when its
    score is >= the threshold.  ``pd`` never decreases and ``far`` never
    decreases along the arrays.

    Attributes
    ----------
    threshold, pd, far, n_found, n_false : ndarray
    pd_lo, pd_hi : ndarray
        Two-sided Clopper–Pearson interval of ``pd`` at each point (the
        confidence band).
    n_targets : int
    area_m2 : float
    """

    threshold: np.ndarray
    pd: np.ndarray
    far: np.ndarray
    n_found: np.ndarray
    n_false: np.ndarray
    pd_lo: np.ndarray
    pd_hi: np.ndarray
    n_targets: int
    area_m2: float

    def pd_at(self, far_level: float, confidence: float = 0.95) -> dict[str, Any]:
        """PD at a false-alarm rate, by the step rule (no interpolation).

        The operating point is the ROC point with the lowest threshold whose
        FA/m² does not exceed ``far_level`` (so the highest PD any real
        threshold reaches within that rate; reading between points would claim
        a detector nobody can set).  When even the lowest threshold stays
        below the level, that last point is used and ``"reached": False``.

        Returns
        -------
        dict
            ``pd``, ``pd_lower95``, ``far`` (of the point), ``threshold``,
            ``n_found``, ``reached``; PD is NaN without targets or area.
        """
        level = float(far_level) if np.ndim(far_level) == 0 and _is_number(far_level) \
            else math.nan
        if not (level >= 0 and math.isfinite(level)):
            raise ConfigError(f"false-alarm level must be a finite rate >= 0 (per m²), "
                              f"got {far_level}")
        bad = {"pd": math.nan, "pd_lower95": math.nan, "far": math.nan,
               "threshold": math.nan, "n_found": 0, "reached": False}
        if self.n_targets == 0 or not math.isfinite(self.area_m2) or self.area_m2 <= 0:
            return bad
        ok = np.nonzero(self.far <= level * (1 + 1e-12))[0]
        i = int(ok[-1])  # point 0 (far = 0) always qualifies
        k = int(self.n_found[i])
        return {"pd": float(self.pd[i]),
                "pd_lower95": clopper_pearson_lower(k, self.n_targets, confidence),
                "far": float(self.far[i]), "threshold": float(self.threshold[i]),
                "n_found": k, "reached": bool(i < self.far.size - 1 or self.far[i] >= level)}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists (undefined values as None)."""
        return {k: [_num(v) for v in getattr(self, k)]
                for k in ("threshold", "pd", "far", "pd_lo", "pd_hi")} | {
            "n_found": [int(v) for v in self.n_found],
            "n_false": [int(v) for v in self.n_false]}


@dataclass
class Evaluation:
    """Outcome of an evaluation over one or more lanes.

    Attributes
    ----------
    pd, pd_lower95 : float
        Pooled PD and its one-sided Clopper–Pearson lower bound (NaN without
        targets).
    far_per_m2 : float
        False alarms per m² of searched area (NaN when no area is known).
    far_per_m, path_m : float
        False alarms per metre of the sensors' path, and its metres
        (:func:`path_length`; NaN when a lane has no path): for a radar on
        lines, per metre of line.
    n_targets, n_found, n_alarms, n_false_alarms, n_clutter_alarms : int
    n_alarms_outside, n_alarms_ignored, n_targets_outside : int
        Alarms outside the searched area and unmatched; alarms on targets
        outside the searched area; targets outside it (not counted in PD).
    area_m2 : float
    roc : ROC
    pd_at_far : dict
        ``{level: ROC.pd_at(level)}``.
    groups : dict
        ``{"class"|"size"|"depth"|"soil": {name: GroupStat}}``.
    localisation : dict
        Radial error of hits (``n``, ``mean``, ``median``, ``rms``, ``p90``,
        ``max``, ``bias_x``, ``bias_y``) and depth error (``depth_n``,
        ``depth_bias``, ``depth_rms``) in m.
    fa_rejected_at_full_recovery : float
        Fraction of false alarms scoring below the highest threshold at which
        the alarms above it (re-matched, as on the ROC) still find every target
        found: what the strictest threshold that keeps every found mine rejects.
        A weak duplicate on a mine that a stronger alarm also covers does not
        lower it.
    clutter_rejected_at_full_recovery : float
        The same over the false alarms on known clutter items only (NaN
        without any).
    lanes : list of LaneResult
    notes : list of str
        Conditions a reader must know (undefined PD, unknown area, ...).
    """

    pd: float
    pd_lower95: float
    far_per_m2: float
    n_targets: int
    n_found: int
    n_alarms: int
    n_false_alarms: int
    n_clutter_alarms: int
    n_alarms_outside: int
    n_alarms_ignored: int
    n_targets_outside: int
    area_m2: float
    roc: ROC
    pd_at_far: dict[float, dict[str, Any]]
    groups: dict[str, dict[str, GroupStat]]
    localisation: dict[str, float]
    fa_rejected_at_full_recovery: float
    clutter_rejected_at_full_recovery: float
    confidence: float
    lanes: list[LaneResult]
    notes: list[str]
    far_per_m: float = math.nan
    path_m: float = math.nan

    def to_dict(self, *, roc: bool = True) -> dict[str, Any]:
        """JSON-ready dict: every NaN becomes None.

        Keys: ``pd``, ``pd_lower95``, ``far_per_m2``, ``far_per_m``,
        ``path_m``, ``n_targets``,
        ``n_found``, ``n_alarms``, ``n_false_alarms``, ``n_clutter_alarms``,
        ``n_alarms_outside``, ``n_alarms_ignored``, ``n_targets_outside``,
        ``area_m2``, ``confidence``, ``pd_at_far`` (keyed by the level as a
        string, e.g. ``"0.5"``), ``by_class``, ``by_size``, ``by_depth``,
        ``by_soil``, ``localisation``, ``fa_rejected_at_full_recovery``,
        ``clutter_rejected_at_full_recovery``,
        ``lanes`` (per-lane summary), ``notes`` and ``roc`` (unless
        ``roc=False``).
        """
        out: dict[str, Any] = {
            "pd": _num(self.pd), "pd_lower95": _num(self.pd_lower95),
            "far_per_m2": _num(self.far_per_m2),
            "far_per_m": _num(self.far_per_m), "path_m": _num(self.path_m),
            "n_targets": self.n_targets, "n_found": self.n_found, "n_alarms": self.n_alarms,
            "n_false_alarms": self.n_false_alarms, "n_clutter_alarms": self.n_clutter_alarms,
            "n_alarms_outside": self.n_alarms_outside,
            "n_alarms_ignored": self.n_alarms_ignored,
            "n_targets_outside": self.n_targets_outside,
            "area_m2": _num(self.area_m2), "confidence": self.confidence,
            "pd_at_far": {f"{k:g}": {kk: (_num(vv) if isinstance(vv, float) else vv)
                                     for kk, vv in v.items()}
                          for k, v in self.pd_at_far.items()},
        }
        for g, stats in self.groups.items():
            out[f"by_{g}"] = {k: s.to_dict() for k, s in stats.items()}
        out["localisation"] = {k: (_num(v) if isinstance(v, float) else v)
                               for k, v in self.localisation.items()}
        out["fa_rejected_at_full_recovery"] = _num(self.fa_rejected_at_full_recovery)
        out["clutter_rejected_at_full_recovery"] = _num(self.clutter_rejected_at_full_recovery)
        out["lanes"] = [{"name": ln.name, "soil": ln.soil, "area_m2": _num(ln.area),
                         "n_targets": ln.n_targets, "n_found": ln.n_found,
                         "n_alarms": int(ln.alarm_x.size),
                         "n_false_alarms": ln.n_false_alarms} for ln in self.lanes]
        out["notes"] = list(self.notes)
        if roc:
            out["roc"] = self.roc.to_dict()
        return out

    def _table(self, rows: Callable[[LaneResult], dict[str, np.ndarray]]
               ) -> dict[str, np.ndarray]:
        parts = [rows(ln) for ln in self.lanes]
        n = [len(p["x"]) for p in parts]
        out = {"lane": np.concatenate([np.full(k, ln.name, dtype=object)
                                       for k, ln in zip(n, self.lanes, strict=True)])
               if parts else np.zeros(0, dtype=object)}
        for c in (parts[0] if parts else {}):
            out[c] = np.concatenate([np.asarray(p[c]) for p in parts])
        return out

    def target_table(self) -> dict[str, np.ndarray]:
        """One row per ground-truth row of every lane: which were found, by
        which alarm, how far off (the per-target list of a T&E report).

        Columns: ``lane``, ``id``, ``type``, ``size`` (size class),
        ``target`` (counted as a target kind: a mine, or every row with
        ``targets="all"``), ``x``, ``y``, ``depth``, ``soil``, ``halo`` (m),
        ``searched`` (inside the searched area), ``counted`` (in PD),
        ``found``, ``alarm`` (index of the alarm in its lane's alarms, -1:
        none), ``alarm_x``, ``alarm_y``, ``alarm_score``, ``alarm_depth``
        and ``distance`` (m, alarm to target; NaN when not found).  Clutter
        rows are listed too (``target`` false): ``alarm`` is the false alarm
        that lay on them, if any.
        """
        return self._table(LaneResult.target_rows)

    def alarm_table(self) -> dict[str, np.ndarray]:
        """One row per alarm of every lane: its outcome.

        Columns: ``lane``, ``alarm`` (index in its lane's alarms), ``x``,
        ``y``, ``score``, ``depth``, ``outcome`` (``hit``, ``false``,
        ``clutter``, ``ignored``, ``outside``: :class:`LaneResult`),
        ``searched``, ``target_id`` (the truth row it matched, empty: none)
        and ``distance`` (m to it; NaN when none).
        """
        return self._table(LaneResult.alarm_rows)

    def summary(self) -> str:
        """Human-readable table of the headline figures and breakdowns."""
        def f(v: float, spec: str = ".3f") -> str:
            return "n/a" if not math.isfinite(v) else format(v, spec)

        lines = [
            f"targets {self.n_targets}  found {self.n_found}  PD {f(self.pd)}  "
            f"PD lower {self.confidence:.0%} {f(self.pd_lower95)}",
            f"alarms {self.n_alarms}  false {self.n_false_alarms} "
            f"(on clutter {self.n_clutter_alarms})  outside area {self.n_alarms_outside}  "
            f"searched {f(self.area_m2, '.2f')} m²  FA/m² {f(self.far_per_m2)}",
            f"path {f(self.path_m, '.2f')} m  false alarms per metre of path "
            f"{f(self.far_per_m)}",
        ]
        for lvl, r in self.pd_at_far.items():
            lines.append(f"PD at {lvl:g} FA/m²: {f(r['pd'])} (lower {f(r['pd_lower95'])}, "
                         f"threshold {f(r['threshold'], '.4g')}, FA/m² {f(r['far'])})")
        loc = self.localisation
        if loc.get("n", 0):
            lines.append(f"localisation (m): mean {f(loc['mean'])}  median {f(loc['median'])}  "
                         f"rms {f(loc['rms'])}  p90 {f(loc['p90'])}  max {f(loc['max'])}")
        if math.isfinite(self.fa_rejected_at_full_recovery):
            line = ("false alarms rejected at full recovery: "
                    f"{self.fa_rejected_at_full_recovery:.1%}")
            if math.isfinite(self.clutter_rejected_at_full_recovery):
                line += f" (clutter {self.clutter_rejected_at_full_recovery:.1%})"
            lines.append(line)
        width = max([len(k) for g in self.groups.values() for k in g] + [8])
        for g, stats in self.groups.items():
            if not stats:
                continue
            far_col = any(math.isfinite(s.area_m2) for s in stats.values())
            lines.append("")
            lines.append(f"{'by ' + g:<{width}}  {'n':>5} {'found':>5} {'PD':>6} {'lower':>6}"
                         + (f" {'FA':>5} {'m²':>7} {'FA/m²':>6}" if far_col else ""))
            for k, s in stats.items():
                extra = ""
                if far_col:
                    extra = (f" {s.n_false_alarms:>5} {f(s.area_m2, '.2f'):>7} "
                             f"{f(s.far_per_m2):>6}")
                lines.append(f"{k:<{width}}  {s.n_targets:>5} {s.n_found:>5} "
                             f"{f(s.pd):>6} {f(s.pd_lower95):>6}" + extra)
        if self.notes:
            lines.append("")
            lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _cp_band(k: np.ndarray, n: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised two-sided Clopper–Pearson interval of ``k`` successes in ``n``."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    if n == 0:
        return np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    a = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a, np.maximum(k, 1), n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1.0 - a, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def _depth_label(lo: float, hi: float) -> str:
    if math.isinf(hi):
        return f">={lo * 100:g} cm"
    return f"{lo * 100:g}-{hi * 100:g} cm"


def evaluate_lanes(
    lanes: Sequence[Lane],
    *,
    halo: float | Mapping[str, float] | None = None,
    targets: str = "mines",
    include_unsearched: bool = False,
    select: Callable[[dict[str, np.ndarray]], Any] | None = None,
    depth_bands: Sequence[float] = DEFAULT_DEPTH_BANDS,
    far_levels: Sequence[float] = (0.5, 1.0),
    confidence: float = 0.95,
    cell: float | None = None,
    max_gap: float = 1.0,
) -> Evaluation:
    """Evaluate alarms against ground truth over one or more lanes.

    Alarms are matched within each lane only (:func:`match_alarms`); the
    counts are then pooled.

    Rules for what lies outside the searched area (when a path, coverage or
    area is given; without, everything is inside and FA/m² is undefined):

    * a target outside the searched area is not counted in PD (it was not
      searched; ``include_unsearched=True`` counts it), but still takes part in
      matching, so an alarm on it is neither a hit nor a false alarm
      (``n_alarms_ignored``);
    * an alarm outside the searched area may still find a target inside (a
      localisation error at the edge of a sweep is not a miss); unmatched, it
      is not a false alarm (FA/m² counts alarms over ground that was searched)
      and is reported as ``n_alarms_outside``.

    With ``targets="mines"`` (default) the truth rows whose ``is_mine`` is false
    are clutter: alarms left over after matching the mines are matched to them
    to label them, and stay false alarms.  With ``targets="all"`` every truth
    row is a target (e.g. metal-detector trials where every metal item counts).

    Parameters
    ----------
    lanes : sequence of Lane
    halo : float or mapping, optional
        One radius (m) for every target, or a mapping from type name or size
        class (``"ap"``, ``"large"``) to radius; default 0.25 m for ``ap``,
        0.5 m for ``large`` (:func:`size_class`).  A truth column ``halo``
        overrides per target.
    targets : {"mines", "all"}
    include_unsearched : bool
        Count targets outside the searched area in PD (as misses unless found).
    select : callable, optional
        ``select(truth) -> bool mask`` of the targets to count in PD, given the
        truth columns (``id``, ``type``, ``is_mine``, ``x``, ``y``, ``depth``,
        ``soil``, ``size``, ``metal_mass``), e.g. ``lambda t: t["metal_mass"] >=
        1e-3`` for mines that carry at least a gram of metal.  Targets left out
        are set aside like unsearched ones: alarms on them are neither
        detections nor false alarms.
    depth_bands : sequence of float
        Ascending band edges (m) for the by-depth breakdown; the last band is
        open-ended; targets without depth go to ``"unknown"``.
    far_levels : sequence of float
        FA/m² levels at which to read PD off the ROC (:meth:`ROC.pd_at`).
    confidence : float
        Level of the one-sided lower bounds (default 0.95).
    cell, max_gap : float
        Passed to :func:`searched_area`.

    Returns
    -------
    Evaluation
    """
    _check_confidence("evaluate", confidence)
    if isinstance(lanes, Lane) or not isinstance(lanes, Iterable):
        raise ConfigError(f"evaluate_lanes: lanes must be a sequence of Lane, got "
                          f"{type(lanes).__name__}")
    lanes = list(lanes)
    for i, ln in enumerate(lanes):
        if not isinstance(ln, Lane):
            raise ConfigError(f"evaluate_lanes: lanes[{i}] must be a Lane, got "
                              f"{type(ln).__name__} (evaluate() takes one truth and alarms "
                              f"table)")
    if not (isinstance(include_unsearched, bool | np.bool_)
            or isinstance(include_unsearched, int | np.integer) and include_unsearched in (0, 1)):
        raise ConfigError(f"include_unsearched must be True or False, got "
                          f"{include_unsearched!r}")
    for name, seq in (("depth_bands", depth_bands), ("far_levels", far_levels)):
        if isinstance(seq, str | bytes) or not isinstance(seq, Iterable):
            raise ConfigError(f"{name} must be a sequence of numbers, got {seq!r}")
    try:
        edges = [float(e) for e in depth_bands]
    except (TypeError, ValueError):
        raise ConfigError(f"depth_bands must be a sequence of numbers (band edges, m), got "
                          f"{depth_bands!r}") from None
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or any(map(math.isnan, edges)):
        raise ConfigError(f"depth_bands must be strictly ascending numbers, got {edges}")
    res = [_evaluate_lane(ln, halo=halo, targets=targets,
                          include_unsearched=include_unsearched, select=select, cell=cell,
                          max_gap=max_gap)
           for ln in lanes]
    notes: list[str] = [n for ln in lanes for n in ln.notes] + [n for r in res for n in r.notes]

    def cat(attr: str) -> np.ndarray:
        arrs = [getattr(r, attr) for r in res]
        return np.concatenate(arrs) if arrs else np.zeros(0)

    counted = cat("counted").astype(bool)
    found = (cat("found_by") >= 0) & counted if counted.size else counted
    n_t, n_f = int(counted.sum()), int(found.sum())
    kind = cat("alarm_kind").astype(str)
    n_fa = int(np.isin(kind, ("false", "clutter")).sum())
    areas = [r.area for r in res]
    area = float(np.sum(areas)) if res and all(math.isfinite(a) for a in areas) else math.nan
    if res and not math.isfinite(area):
        unknown = [r.name or f"lane {i + 1}" for i, r in enumerate(res)
                   if not math.isfinite(r.area)]
        notes.append("searched area unknown (no path, coverage or area given"
                     + (f": {', '.join(unknown[:10])}" + (f" and {len(unknown) - 10} more"
                                                         if len(unknown) > 10 else "")
                        if len(res) > 1 else "")
                     + "): FA/m² undefined")
    far = n_fa / area if math.isfinite(area) and area > 0 else math.nan
    lengths = [r.path_length for r in res]
    path_m = (float(np.sum(lengths)) if res and all(math.isfinite(v) for v in lengths)
              else math.nan)
    if math.isfinite(area) and area <= 0:
        notes.append("searched area is zero: FA/m² undefined")
    if n_t == 0:
        notes.append("no targets in the searched area: PD undefined")

    # ROC over every distinct threshold: each lane's matching re-run on the alarms
    # above it (incrementally, see _roc_steps), counts summed over lanes.
    is_hit = kind == "hit"
    is_fa = np.isin(kind, ("false", "clutter"))
    steps = [_roc_steps(r) for r in res]
    thr = np.unique(np.concatenate([st[0] for st in steps])) if steps else np.zeros(0)
    thr = thr[::-1]
    nf = np.zeros(thr.size, dtype=np.int64)
    nfa = np.zeros(thr.size, dtype=np.int64)
    for lt, lh, lf in steps:
        if lt.size:
            # lane step k holds for global thresholds t with lt[k] >= t > lt[k+1]
            k = np.searchsorted(-lt, -thr, side="right") - 1
            ok = k >= 0
            nf[ok] += lh[k[ok]]
            nfa[ok] += lf[k[ok]]
    thr = np.concatenate([[np.inf], thr])
    nf = np.concatenate([[0], nf]).astype(np.int64)
    nfa = np.concatenate([[0], nfa]).astype(np.int64)
    roc_pd = nf / n_t if n_t else np.full(thr.size, np.nan)
    roc_far = nfa / area if math.isfinite(area) and area > 0 else np.full(thr.size, np.nan)
    lo_band, hi_band = _cp_band(nf, n_t, confidence)
    roc = ROC(thr, np.asarray(roc_pd, dtype=np.float64), np.asarray(roc_far, dtype=np.float64),
              nf, nfa, lo_band, hi_band, n_t, area)
    pd_at_far = {float(lv): roc.pd_at(lv, confidence) for lv in far_levels}

    # Breakdowns.
    ttype = cat("truth_type").astype(str)
    tsize = cat("truth_size").astype(str)
    tsoil = cat("truth_soil").astype(str)
    tdepth = cat("truth_depth").astype(np.float64)

    def group(labels: np.ndarray, order: Iterable[str] | None = None) -> dict[str, GroupStat]:
        keys = list(order) if order is not None else sorted(set(labels[counted].tolist()))
        out = {}
        for k in keys:
            sel = counted & (labels == k)
            if sel.any():
                out[k] = GroupStat.of(int((found & sel).sum()), int(sel.sum()), confidence)
        return out

    dlabels = np.full(tdepth.size, "unknown", dtype=object)
    bands = [*edges, math.inf]
    names = []
    for lo, hi in zip(bands[:-1], bands[1:], strict=True):
        lab = _depth_label(lo, hi)
        names.append(lab)
        dlabels[(tdepth >= lo) & (tdepth < hi)] = lab
    if edges:
        dlabels[np.isfinite(tdepth) & (tdepth < edges[0])] = f"<{edges[0] * 100:g} cm"
        names.insert(0, f"<{edges[0] * 100:g} cm")
    names.append("unknown")
    dlabels = dlabels.astype(str)

    by_soil = group(tsoil)
    # Soils given per lane also get their own searched area and FA/m².
    for s in {r.soil for r in res}:
        rs = [r for r in res if r.soil == s]
        a = sum(r.area for r in rs)
        nfs = sum(r.n_false_alarms for r in rs)
        k = sum(int((r.counted & (r.found_by >= 0) & (r.truth_soil == s)).sum()) for r in res)
        n = sum(int((r.counted & (r.truth_soil == s)).sum()) for r in res)
        by_soil[s] = GroupStat.of(k, n, confidence, area_m2=a, n_false_alarms=nfs,
                                  far_per_m2=nfs / a if math.isfinite(a) and a > 0
                                  else math.nan)
    groups = {"class": group(ttype), "size": group(tsize, ("ap", "large")),
              "depth": group(dlabels, names), "soil": dict(sorted(by_soil.items()))}

    # Localisation error of the hits.
    dist = cat("alarm_distance").astype(np.float64)[is_hit]
    loc: dict[str, Any] = {"n": int(dist.size)}
    if dist.size:
        hx, hy, dx, dy, ddep = [], [], [], [], []
        for r in res:
            sel = r.alarm_kind == "hit"
            j = r.alarm_target[sel]
            hx.append(r.alarm_x[sel])
            hy.append(r.alarm_y[sel])
            dx.append(r.alarm_x[sel] - r.truth_x[j])
            dy.append(r.alarm_y[sel] - r.truth_y[j])
            ddep.append(r.alarm_depth[sel] - r.truth_depth[j])
        dxa, dya, dda = np.concatenate(dx), np.concatenate(dy), np.concatenate(ddep)
        dda = dda[np.isfinite(dda)]
        loc.update(mean=float(dist.mean()), median=float(np.median(dist)),
                   rms=float(np.sqrt(np.mean(dist**2))), p90=float(np.percentile(dist, 90)),
                   max=float(dist.max()), bias_x=float(dxa.mean()), bias_y=float(dya.mean()),
                   depth_n=int(dda.size),
                   depth_bias=float(dda.mean()) if dda.size else math.nan,
                   depth_rms=float(np.sqrt(np.mean(dda**2))) if dda.size else math.nan)
    rej = crej = math.nan
    if is_hit.any() and is_fa.any():
        # The highest threshold at which every target found at the lowest one is
        # still found: the ROC re-matches the alarms above each threshold, so a
        # weak duplicate or mislocated alarm on a target that a stronger alarm
        # also covers does not hold the threshold down.
        # What that threshold saves is counted in that matching too: an alarm
        # that is a hit there but a false alarm at the lowest threshold (a
        # nearer, weaker alarm took its target) is not a false alarm kept.
        t_full = float(thr[int(np.argmax(nf >= nf[-1]))])
        kept = np.array([_false_above(r, t_full) for r in res]).sum(axis=0)
        rej = 1.0 - kept[0] / n_fa
        n_clutter = int((kind == "clutter").sum())
        if n_clutter:
            crej = 1.0 - kept[1] / n_clutter

    return Evaluation(
        pd=n_f / n_t if n_t else math.nan,
        pd_lower95=clopper_pearson_lower(n_f, n_t, confidence),
        far_per_m2=far, n_targets=n_t, n_found=n_f, n_alarms=int(kind.size),
        n_false_alarms=n_fa, n_clutter_alarms=int((kind == "clutter").sum()),
        n_alarms_outside=int((kind == "outside").sum()),
        n_alarms_ignored=int((kind == "ignored").sum()),
        # (a target without a position is neither: a note counts it)
        n_targets_outside=int((cat("is_target").astype(bool) & ~counted
                               & ~cat("truth_inside").astype(bool)
                               & np.isfinite(cat("truth_x")) & np.isfinite(cat("truth_y"))
                               ).sum()),
        area_m2=area, roc=roc, pd_at_far=pd_at_far, groups=groups, localisation=loc,
        fa_rejected_at_full_recovery=rej, clutter_rejected_at_full_recovery=crej,
        confidence=confidence, lanes=res, notes=notes,
        far_per_m=n_fa / path_m if math.isfinite(path_m) and path_m > 0 else math.nan,
        path_m=path_m,
    )


def evaluate(
    truth: Any,
    alarms: Any,
    *,
    path: Any = None,
    footprint: float = DEFAULT_FOOTPRINT,
    area: float | None = None,
    soil: str = "unknown",
    name: str = "",
    **kwargs: Any,
) -> Evaluation:
    """Evaluate one lane from arrays.

    Parameters
    ----------
    truth : mapping of column arrays or structured array
        Ground truth: ``x``, ``y`` and optionally ``id``, ``type``, ``is_mine``,
        ``depth``, ``soil``, ``halo`` (see :class:`Lane`).
    alarms : mapping of column arrays or structured array, or None
        Alarms: ``x``, ``y`` and optionally ``score``, ``depth``.
    path : array_like, optional
        Sensor positions whose swept footprint is the searched area.
    footprint : float
        Footprint width (m).
    area : float, optional
        Searched area (m²) instead of the one from ``path``.
    soil, name : str
    **kwargs
        Passed to :func:`evaluate_lanes` (``halo``, ``targets``,
        ``include_unsearched``, ``select``, ``depth_bands``, ``far_levels``,
        ``confidence``, ``cell``, ``max_gap``).

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> import numpy as np
    >>> truth = {"x": np.arange(10.0), "y": np.zeros(10), "type": ["PMN"] * 10}
    >>> alarms = {"x": np.arange(10.0) + 0.05, "y": np.zeros(10)}
    >>> r = evaluate(truth, alarms, area=10.0)
    >>> r.pd, round(r.pd_lower95, 3), r.far_per_m2
    (1.0, 0.741, 0.0)
    """
    return evaluate_lanes([Lane(truth, alarms, path=path, footprint=footprint, area=area,
                                soil=soil, name=name)], **kwargs)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def _read_csv_columns(path: str | Path, what: str, required: Sequence[str],
                      numeric: set[str]) -> dict[str, np.ndarray]:
    """Columns of a CSV file with a header row: ``numeric`` ones as floats
    (empty: NaN), the others as text without a formula guard's quote."""
    from .export import CSV_FORMULA_START

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise ConfigError(f"{path}: {what} CSV is empty (need a header with "
                                  f"{', '.join(required)})")
            cols = [c.strip() for c in reader.fieldnames]
            for need in required:
                if need not in cols:
                    raise ConfigError(f"{path}: {what} CSV has no column {need!r} "
                                      f"(header: {cols})")
            twice = sorted({c for c in cols if c and cols.count(c) > 1})
            if twice:  # (the last one's values were read for both)
                raise ConfigError(f"{path}: {what} CSV header names column {twice[0]!r} more "
                                  f"than once (header: {cols})")
            rows = []
            for row in reader:
                if None in row:  # (a row longer than the header: the extra fields)
                    raise ConfigError(f"{path}: line {reader.line_num} has "
                                      f"{len(cols) + len(row[None])} fields, the header "
                                      f"has {len(cols)}")
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} CSV: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text CSV file (byte {exc.start} is not UTF-8)") \
            from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a text CSV file ({exc})") from None
    out: dict[str, np.ndarray] = {}
    for c in cols:
        vals = [r.get(c, "") for r in rows]
        if c in numeric:
            arr = np.empty(len(vals))
            for i, v in enumerate(vals):
                try:
                    arr[i] = float(v) if v != "" else math.nan
                except ValueError:
                    raise ConfigError(f"{path}: row {i + 2}, field {c!r}: "
                                      f"not a number: {v!r}") from None
            out[c] = arr
        else:
            # (without the quote that guards a formula-like text)
            out[c] = np.array([v[1:] if v.startswith("'")
                               and v.lstrip("'").startswith(CSV_FORMULA_START) else v
                               for v in vals], dtype=str)
    return out


def read_alarms_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read alarms from a CSV file with a header row.

    Required columns ``x`` and ``y`` (m, in the recording's position frame);
    numeric columns ``score``, ``depth``, ``p_mine``, ``time`` are read as
    floats when present; any other column (``label``, ``file``, ``stream``) is
    kept as text.  Empty numeric fields read as NaN (an empty ``score`` is an
    error at evaluation).  A text field that :func:`demine.pipeline.write_alarms_csv`
    guarded against formula injection (``'=x``: a single quote before one of
    :data:`demine.export.CSV_FORMULA_START`) is read without the quote.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of ndarray
    """
    return _read_csv_columns(path, "alarms", ("x", "y"),
                             {"x", "y", "z", "score", "depth", "p_mine", "time"})


def read_truth_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ground-truth table from a CSV file with a header row.

    The columns of a recording's truth table (docs/format.md): ``x`` and ``y``
    (m, in the recording's position frame) are required; ``depth`` (m, to the
    target's top), ``metal_mass`` (kg) and ``halo`` (m, a per-target halo
    radius; empty: the size class's) are read as numbers; ``is_mine`` (1/0,
    true/false, yes/no; anything else is an error) as 1 or 0, as a
    recording's truth table holds it (no column: every row a mine);
    ``id``, ``type``, ``soil``, ``notes``, ``file`` and any other column as
    text.  This is the truth of a blind trial, kept apart from the recordings
    (``demine evaluate FILE --truth CSV``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of ndarray
    """
    out = _read_csv_columns(path, "truth", ("x", "y"),
                            {"x", "y", "depth", "metal_mass", "halo"})
    if "is_mine" in out:  # (as a recording's truth table holds it: 1 or 0)
        blank = np.flatnonzero(np.char.strip(out["is_mine"].astype(str)) == "")
        if blank.size:  # (a blank had read as clutter, the missing column as a mine)
            raise ConfigError(f"{path}: row {int(blank[0]) + 2}: 'is_mine' is empty "
                              f"({blank.size} such row(s)); give 1 or 0")
        out["is_mine"] = _mine_flags(out["is_mine"], str(path)).astype(np.int8)
    return out


def write_table_csv(table: Mapping[str, Any], path: str | Path) -> Path:
    """Write a table of columns (:meth:`Evaluation.target_table`,
    :meth:`Evaluation.alarm_table`) as CSV with a header row.

    NaN is written as an empty cell and booleans as 1 and 0; text a
    spreadsheet would take for a formula goes behind a single quote, as
    :func:`demine.pipeline.write_alarms_csv` writes it.
    """
    from .export import _csv_cell

    path = Path(path)
    cols = list(table)
    arrays = [np.asarray(table[c]) for c in cols]
    n = len(arrays[0]) if arrays else 0

    def cell(v: Any) -> Any:
        if isinstance(v, bool | np.bool_):
            return int(v)
        if isinstance(v, float | np.floating):
            return "" if math.isnan(v) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return _csv_cell(str(v))

    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for i in range(n):
                w.writerow([cell(a[i]) for a in arrays])
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the table: {exc.strerror or exc}") from None
    return path


def _check_columns(table: Mapping[str, Any], what: str) -> None:
    """Every column of an alarms mapping has as many rows as its ``x`` (before
    the rows of a stream or file are selected from all of them)."""
    if "x" not in table:
        return
    nx = np.shape(table["x"])
    for k, v in table.items():
        nv = np.shape(v)
        if nv[:1] != nx[:1]:
            raise ConfigError(f"{what}: column {k!r} has {nv[0] if nv else 'one'} value(s) "
                              f"for {nx[0] if nx else 1} alarm(s) (rows of 'x')")


def _pick_path_streams(rec: Any, stream: str | None) -> list[Any]:
    streams = rec.streams
    if stream is not None:
        if stream not in streams:
            raise RecordingError(f"{rec.path}: no stream {stream!r} "
                                 f"(streams: {', '.join(streams) or 'none'})")
        return [streams[stream]]
    by_kind: dict[str, list[Any]] = {}
    for s in streams.values():
        kind = str(getattr(s, "kind", "") or s.attrs.get("kind", ""))
        by_kind.setdefault(kind, []).append(s)
    for kind in ("emi", "gpr", "gps"):
        if kind in by_kind:
            return by_kind[kind]
    return []


def _survey_line_starts(survey: Any, n: int) -> list[int]:
    """Indices where the lines of an imported survey (the stream attribute
    ``survey_lines``: JSON list of ``{"traces": k, ...}``) begin, after the
    first; none when there is no such attribute or it does not add up."""
    if not survey:
        return []
    try:
        counts = [int(v["traces"]) for v in json.loads(survey)]
    except (TypeError, ValueError, KeyError):
        return []
    if sum(counts) != n or any(c < 0 for c in counts):
        return []
    return [int(v) for v in np.cumsum(counts)[:-1]]


def lane_from_recording(
    path: str | Path,
    *,
    alarms: Any = None,
    stream: str | None = None,
    footprint: float | None = None,
    score: str = "score",
    alarm_stream: str | None = None,
    truth: Any = None,
    max_gap: float = 1.0,
) -> Lane:
    """Build a :class:`Lane` from a demine recording.

    Truth comes from the recording's truth table unless ``truth`` is given;
    alarms from its alarms table unless ``alarms`` is given; the searched path from the positions of
    ``stream`` (default: every EMI stream, else every GPR stream, else the GPS
    stream).  The footprint width is ``footprint``, else the stream attribute
    ``footprint_width`` or ``footprint`` (m), else twice the ``coil_radius`` of
    the stream's calibration, else 0.3 m.  The soil is the root attribute
    ``soil`` (or ``soil_name``, or the simulator's ``scene``), else
    ``"unknown"``.

    Alarms of several sensors in one table (an EMI and a GPR stream) are not
    independent: a mine found by both would count once and its second alarm as
    a false alarm.  ``alarm_stream`` keeps only the alarms of one stream (and
    its positions define the searched area unless ``stream`` is given);
    without it, a table with several streams is pooled and a note says so.

    Parameters
    ----------
    path : str or Path
    alarms : mapping of column arrays, optional
    stream : str, optional
    footprint : float, optional
    score : str
        Alarm column used as the score (e.g. ``"p_mine"``).
    alarm_stream : str, optional
        Evaluate only the alarms whose ``stream`` column is this name.
    truth : mapping of column arrays, optional
        Ground truth kept apart from the recording (a blind trial's,
        :func:`read_truth_csv`), in its position frame.  It replaces the
        recording's own truth table, if it has one, and a note says so.
    max_gap : float
        A step longer than this (m) breaks the path, for its length
        (:attr:`Lane.path_length`); give the evaluation's own, as
        :func:`evaluate_recordings` does, so that the metres of line and the
        searched area cut the path alike.

    Returns
    -------
    Lane
    """
    from .recording import Recording, attr_text

    rec = Recording(path)
    notes: list[str] = []
    try:
        truth_given = truth is not None or rec.truth_given
        if truth is None:
            truth = rec.truth
        else:
            if not isinstance(truth, Mapping):
                raise ConfigError(f"{path}: truth must be a mapping of column arrays, got "
                                  f"{type(truth).__name__}")
            _check_columns(truth, f"{path}: truth")
            own = len(rec.table("truth"))
            if own:
                notes.append(f"{Path(path).name}: the truth given replaces the recording's "
                             f"own truth table ({own} row(s))")
        if alarms is None:
            alarms = rec.alarms
        if alarms is not None and not isinstance(alarms, Mapping):
            raise ConfigError(f"{path}: alarms must be a mapping of column arrays, got "
                              f"{type(alarms).__name__}")
        alarms = dict(alarms) if alarms is not None else {"x": np.zeros(0), "y": np.zeros(0)}
        if score != "score":
            if score not in alarms:
                raise ConfigError(f"{path}: alarms have no column {score!r} to use as score")
            alarms["score"] = alarms[score]
        if "score" in alarms:
            sc = _real(str(path), f"alarms column {score!r}"
                       + (" (used as score)" if score != "score" else ""), alarms["score"])
            if sc.size and np.all(np.isnan(sc)):
                if score != "score":
                    # (a detector that gives no score ranks its alarms alike; a column
                    # asked for by name, empty, would silently do the same: PD 0 at
                    # every FA/m2 level and no threshold)
                    hint = ("; use --model default (or MODEL) to score them"
                            if score == "p_mine" else "")
                    raise ConfigError(f"{path}: alarms have no {score} values{hint}")
                alarms["score"] = np.ones(sc.size)
        scol = _column(alarms, "stream", None)
        if alarm_stream is not None:
            if scol is None:
                raise ConfigError(f"{path}: alarms have no 'stream' column to select "
                                  f"{alarm_stream!r} by")
            _check_columns(alarms, f"{path}: alarms")
            keep = scol.astype(str) == alarm_stream
            if not keep.any() and alarm_stream not in rec.streams:
                # a misspelt name would otherwise evaluate no alarm at all: PD 0
                have = sorted({str(v) for v in scol.tolist()} - {""})
                raise RecordingError(
                    f"{path}: no stream {alarm_stream!r} to evaluate the alarms of "
                    f"(streams: {', '.join(rec.streams) or 'none'}; "
                    f"alarms of: {', '.join(have) or 'none'})")
            alarms = {k: np.asarray(v)[keep] for k, v in alarms.items()}
            if stream is None and alarm_stream in rec.streams:
                stream = alarm_stream
        elif scol is not None:
            names = sorted({str(v) for v in scol.tolist()} - {""})
            if len(names) > 1:
                notes.append(f"{Path(path).name}: alarms of streams {', '.join(names)} "
                             "pooled (a target found by both counts once, the other alarm "
                             "as a false alarm); choose one with alarm_stream / "
                             "--alarm-stream")
        if score != "score" and "score" in alarms:
            empty = np.isnan(_real(str(path), f"alarms column {score!r}", alarms["score"]))
            if empty.any():
                raise ConfigError(
                    f"{path}: alarms column {score!r} (used as score) has no value for "
                    f"{int(empty.sum())} of {empty.size} alarms"
                    + (" (a model scores EMI and GPR alarms only: choose their stream "
                       "with --alarm-stream)" if score == "p_mine" else ""))
        sel = _pick_path_streams(rec, stream)
        paths = []
        per_stream: list[list[np.ndarray]] = []
        fp = footprint
        for s in sel:
            x = np.asarray(s.x, dtype=np.float64)
            y = np.asarray(s.y, dtype=np.float64)
            if x.size and np.isfinite(x).any():
                xy = np.column_stack([x, y])
                # the lines of a survey imported from several files: one path
                # each (the jump from one line's end to the next's start was
                # never searched, and may be shorter than max_gap)
                cuts = _survey_line_starts(s.attrs.get("survey_lines"), len(xy))
                per_stream.append(np.split(xy, cuts) if cuts else [xy])
                paths.extend(per_stream[-1])
            if fp is None:
                for key in ("footprint_width", "footprint"):
                    if key in s.attrs:
                        fp = float(s.attrs[key])
                        break
                else:
                    coil = (getattr(s, "calibration", None) or {}).get("coil_radius")
                    if coil:
                        fp = 2.0 * float(coil)
        attrs = rec.attrs
        soil = next((attr_text(attrs[k]) for k in ("soil", "soil_name", "scene")
                     if attrs.get(k) is not None and attr_text(attrs[k])), "unknown")
        lane_id = str(attrs.get("lane_id", "") or "")
    finally:
        close = getattr(rec, "close", None)
        if close is not None:
            close()
    name = Path(path).name + (f" ({lane_id})" if lane_id else "")
    # the streams of one recording ride one rig (the channels of a radar, an
    # EMI head and a radar on one cart): the metres of line are those of the
    # longest stream's path, not their sum (their searched areas overlap too)
    length = max((sum(path_length(p, max_gap=max_gap) for p in ps) for ps in per_stream),
                 default=None)
    return Lane(truth=truth, alarms=alarms, path=paths or None,
                footprint=fp if fp is not None else DEFAULT_FOOTPRINT, soil=soil, name=name,
                notes=notes, path_length=length, truth_given=truth_given)


def _path_parts(text: str) -> tuple[tuple[str, ...], bool]:
    """The parts of a path written in a table (POSIX or Windows: ``D:\\a\\b``)
    and whether it is absolute."""
    if "\\" in text or re.match(r"^[A-Za-z]:[\\/]", text):
        from pathlib import PureWindowsPath

        w = PureWindowsPath(text)
        return tuple(p for p in w.parts if p not in ("\\", w.anchor)), bool(w.anchor)
    p = Path(os.path.normpath(text))
    return tuple(q for q in p.parts if q != "/"), p.is_absolute()


def file_rows(values: Iterable[Any], path: str | Path) -> NDArray[np.bool_]:
    """Which rows of a table's ``file`` column name the recording ``path``.

    A bare file name names every recording of that name.  A relative path
    names the recording whose path ends with it (``site-a/lane.h5`` names
    ``/data/site-a/lane.h5``).  An absolute path (POSIX or Windows) names that
    file; one that is no file here (a table made elsewhere: a campaign folder
    moved, remounted, or written on another machine) names the recording
    whose path ends with as many of its last parts as tell the table's
    absolute paths apart (``site-a/lane.h5``
    of ``D:\\camp\\site-a\\lane.h5`` when the table also names
    ``...\\site-b\\lane.h5``; the file name alone when its names differ).  An
    empty value names none (callers decide what it means).
    """
    values = [str(v).strip() for v in values]
    target = os.path.abspath(path)
    real = os.path.realpath(path)
    ends = (Path(target).parts, Path(real).parts)
    parsed = {v: _path_parts(v) for v in set(values) if v}
    # (an absolute path that is a file here names that file only)
    here = {v for v, (_, is_abs) in parsed.items() if is_abs and "\\" not in v
            and os.path.exists(v)}
    # the fewest last parts that tell the table's absolute paths apart
    absolute = sorted({parts for parts, is_abs in parsed.values() if is_abs and parts})
    k = 1
    while k < max((len(p) for p in absolute), default=1) and \
            len({p[-k:] for p in absolute}) < len(absolute):
        k += 1
    out = []
    for v in values:
        if not v:
            out.append(False)
            continue
        parts, is_abs = parsed[v]
        if len(parts) <= 1 and not is_abs:
            out.append(bool(parts) and parts[-1] == Path(target).name)
        elif "\\" not in v and (os.path.abspath(v) in (target, real)
                                 or os.path.realpath(v) == real):
            out.append(True)  # (that file, also through a link or from here)
        elif v in here:
            out.append(False)
        else:
            tail = parts[-k:] if is_abs else parts
            out.append(any(e[-len(tail):] == tail for e in ends))
    return np.array(out, dtype=bool)


def _per_recording(tables: Sequence[Any], paths: list[Path], what: str,
                   read: Callable[[str | Path], dict[str, np.ndarray]]) -> list[Any]:
    """One table per recording, from one per recording (in order) or one with a
    ``file`` column naming each row's recording (:func:`file_rows`)."""
    loaded = [read(a) if isinstance(a, str | Path) else a for a in tables]
    # (a table that names each row's recording is read by those names, also
    # for one recording: a campaign's table given with one of its lanes)
    one_named = len(loaded) == 1 and _column(loaded[0], "file", None) is not None
    if len(loaded) == len(paths) and not one_named:
        for p, table in zip(paths, loaded, strict=True):
            fcol = _column(table, "file", None)
            other = sorted({str(v) for v, ok in zip(fcol, file_rows(fcol, p), strict=True)
                            if not ok}) if fcol is not None else []
            if other:
                raise ConfigError(f"the {what} given for {p.name} name other recordings "
                                  f"in their 'file' column: {', '.join(other)}")
        return loaded
    if len(loaded) != 1:
        raise ConfigError(f"{len(loaded)} {what} tables for {len(paths)} recordings "
                          "(give one per recording, or one with a 'file' column)")
    table = loaded[0]
    fcol = _column(table, "file", None)
    if fcol is None:
        raise ConfigError(f"one {what} table for several recordings needs a 'file' "
                          f"column naming each row's recording")
    if isinstance(table, Mapping):
        _check_columns(table, what)
    fcol = np.asarray(fcol)
    rows = np.stack([file_rows(fcol, p) for p in paths]) if paths \
        else np.zeros((0, fcol.size), dtype=bool)
    twice = rows.sum(axis=0) > 1
    if twice.any():  # (each would get the rows of all of them)
        v = str(fcol[np.flatnonzero(twice)[0]])
        n = int(rows[:, np.flatnonzero(twice)[0]].sum())
        raise ConfigError(f"the {what} table's 'file' column names recordings by file name, "
                          f"and {n} of the recordings are called {v!r}: it cannot tell "
                          f"their rows apart (name them by path in the table, or give one "
                          f"{what} table per recording to demine evaluate)")
    unknown = sorted({str(v) for v in fcol[~rows.any(axis=0)]})
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ConfigError(f"the {what} table names recordings not given: {shown} "
                          f"(given: {', '.join(sorted(p.name for p in paths))}; evaluate "
                          "them too, or keep only the given recordings' rows)")
    return [{k: np.asarray(v)[r] for k, v in table.items()} for r in rows]


def evaluate_recordings(
    paths: Sequence[str | Path],
    *,
    alarms: Sequence[Any] | None = None,
    truth: Sequence[Any] | None = None,
    stream: str | None = None,
    footprint: float | None = None,
    score: str = "score",
    alarm_stream: str | None = None,
    **kwargs: Any,
) -> Evaluation:
    """Evaluate one or more demine recordings, pooled.

    Parameters
    ----------
    paths : sequence of str or Path
        Recordings (HDF5).
    alarms : sequence, optional
        Alarms per recording (mapping of columns or a CSV path), in the order
        of ``paths``; or a list of a single entry (mapping or CSV path) for all of them,
        which then needs a ``file`` column naming each alarm's recording (by
        file name) when there are several recordings.  Default: each
        recording's own alarms table.
    truth : sequence, optional
        Ground truth kept apart from the recordings (a blind trial's): per
        recording or one table with a ``file`` column, as ``alarms``
        (mappings of columns or CSV paths, :func:`read_truth_csv`).  It
        replaces the recordings' own truth tables.  Default: each recording's
        own truth table.
    stream, footprint, score, alarm_stream
        See :func:`lane_from_recording`.
    **kwargs
        Passed to :func:`evaluate_lanes`.

    Returns
    -------
    Evaluation
    """
    for name, v, want in (("paths", paths, "a list of recordings"),
                          ("alarms", alarms, "a list of alarm tables (one per recording, or "
                           "one with a 'file' column)"),
                          ("truth", truth, "a list of truth tables (one per recording, or "
                           "one with a 'file' column)")):
        if isinstance(v, str | bytes | PathLike | Mapping):  # (a path was read letter by letter)
            raise ConfigError(f"evaluate_recordings: {name} must be {want}, got the single "
                              f"{type(v).__name__} {str(v)[:60]!r}: wrap it in a list")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("evaluate_recordings: no recording given")
    per: list[Any] = [None] * len(paths)
    if alarms is not None:
        per = _per_recording(alarms, paths, "alarms", read_alarms_csv)
    per_truth: list[Any] = [None] * len(paths)
    if truth is not None:
        per_truth = _per_recording(truth, paths, "truth", read_truth_csv)
    lanes = [lane_from_recording(p, alarms=a, stream=stream, footprint=footprint, score=score,
                                 alarm_stream=alarm_stream, truth=t,
                                 max_gap=kwargs.get("max_gap", 1.0))
             for p, a, t in zip(paths, per, per_truth, strict=True)]
    for p, ln in zip(paths, lanes, strict=True):
        if not ln.truth_given:  # (scored as a blank lane: say why its alarms are all false)
            ln.notes.append(f"{p.name}: {NO_TRUTH_NOTE}")
    return evaluate_lanes(lanes, **kwargs)
