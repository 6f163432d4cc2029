"""Alarms from a metal detector's detection statistic: one alarm per object.

:class:`EMIDetector` turns the noise-normalised statistic of
:class:`demine.emi.Detect` (about 1 over noise, large over metal) and the sensor
positions into alarms a deminer can act on, in three steps:

1. **Adaptive threshold (CFAR-style) with hysteresis**, in the compiled kernel
   ``demine._detect``: a running mean ``m`` and standard deviation ``sd`` of
   the statistic over the recent background (frames that are not part of a
   detection; a target never raises its own threshold) give a high threshold
   ``max(floor, m + k_hi * sd)`` that starts an *event* and a low one
   ``max(floor_lo, m + k_lo * sd)`` that keeps it going; an event ends after
   more than ``hold`` frames below the low threshold.  Over magnetic soil or
   clutter-rich ground the background level and spread rise, and so does the
   threshold: a constant false-alarm rate rather than a constant level.
2. **Minimum extent**: an event shorter than ``min_frames`` frames or whose
   sensor travel is shorter than ``min_extent`` metres is dropped (impulsive
   interference, a knock on the cable).
3. **Merging in space over repeated sweeps**: a side-to-side sweep passes over
   the same object many times, each pass giving one event peaking at the pass's
   closest approach.  An event whose peak lies within ``merge_radius`` of a peak
   of an open cluster joins it; a cluster that has received no event for
   ``release_time`` seconds, or ``release_passes`` times the duration of the
   sensor's passes when that is longer (a cart's next line comes back only a
   whole line later; :class:`demine.positions.PassTracker` measures the passes
   on the path), is closed and becomes one alarm, located at the
   squared-statistic-weighted centroid of the peaks of its passes that reach
   half its strongest peak, with the strongest peak as score.

4. **A shape channel** (``shape_radius``, with the ``novelty`` column of
   :class:`demine.emi.MatchedDetect`): a small object on a stronger one's
   flank adds no peak to the statistic, but decays differently; the same
   steps run on the novelty, and its objects away from every alarm of the
   statistic are alarms too (``shape`` 1), judged once the statistic's
   clusters near them are released (at most ``shape_wait`` after they are due).

The detector is a streaming object: :meth:`EMIDetector.process` takes any chunk
of frames and returns the alarms completed so far, :meth:`EMIDetector.finish`
the rest.  The alarms of a stream do not depend on how it is cut into chunks,
so live alarms equal batch ones (:func:`detect_emi`).
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _detect
from ._params import check_number
from .errors import ConfigError
from .positions import PassTracker
from .process import rate_factor, scale_count

__all__ = ["ALARM_FIELDS", "MATCHED_PARAMS", "EMIDetector", "detect_emi", "detector_defaults"]

#: Columns of the alarm tables returned by the detector.  ``time`` is the time
#: (int64 ns) of the strongest peak, or its frame index when no times were given.
ALARM_FIELDS: tuple[str, ...] = (
    "time", "x", "y", "depth", "score", "n_passes", "peak_index", "start_index",
    "end_index", "extent", "threshold", "shape",
)

#: Detector parameters that go with the integrating statistic of
#: :class:`demine.emi.MatchedDetect` (``emi.matched``, the default chain).  Its
#: noise is about 1 (gate RMS) over white receiver noise; coloured noise (1/f,
#: soil residue) reaches about 7 on object-free simulated lanes, in one pass:
#: floors 8/5, and an object must be seen on 2 passes each reaching 5 % of its
#: peak (``min_passes``, ``pass_ratio``).  A large object keeps the statistic
#: above the low threshold for many sweeps (tens of seconds for an AT mine under
#: a 1 m sweep advancing 4 cm a swing), which is a target, not a change of
#: background: only an event longer than 2 min (at 1 kHz) is one.  Clusters
#: wait 5 s for the next pass (a weak target may miss one), or 2.5 passes when
#: passes last longer (a cart's lines).  ``min_passes`` holds only while passes
#: lie at most 0.15 m apart (1.25 coil radii): with a coil of 0.12 m at 5 cm, a
#: shallow object's response 0.2 m to the side is about 5 % of its peak, so
#: under wider lines an object is seen on one.  Peaks are split
#: into objects by prominence (``link_radius`` 0.15 m, a few pass spacings); a weaker object that a
#: stronger one's dipole fall-off explains is merged into it (``depth_scale``
#: 0.23 m = sqrt(a**2 + z**2) for a 0.12 m coil radius and the deepest target
#: 0.15 m under a coil 0.05 m above ground), and so are the two similar lobes
#: of a horizontal dipole within ``lobe_radius`` 0.25 m (about a coil diameter).
MATCHED_PARAMS: dict[str, Any] = {"threshold": 8.0, "threshold_lo": 5.0, "max_frames": 120000,
                                  "link_radius": 0.15, "depth_scale": 0.23, "min_passes": 2,
                                  "pass_ratio": 0.05, "max_pass_spacing": 0.15,
                                  "lobe_radius": 0.25, "release_time": 5.0,
                                  "shape_radius": 0.4}


#: :class:`EMIDetector` parameters that count frames, with the least value each
#: may take when scaled to another reading rate (:func:`detector_defaults`).
_FRAME_PARAMS = {"background_window": 1, "warmup": 1, "hold": 0, "min_frames": 1,
                 "max_frames": 1}

#: Coil radius (m) the distances of :data:`MATCHED_PARAMS` were worked out for.
REFERENCE_COIL_RADIUS = 0.12


def detector_defaults(chain: Any, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Default :class:`EMIDetector` parameters for the statistic a chain ends with.

    :data:`MATCHED_PARAMS` when the chain's last step is ``emi.matched``, else
    none (the class defaults suit ``emi.detect``).  When the stream context
    gives the coil radius ``a`` (``coil_radius`` of the stream's calibration),
    ``lobe_radius`` (the two lobes of a horizontal dipole lie about a coil
    diameter apart), ``max_pass_spacing`` (a coil's reach to the side) and
    ``shape_radius`` (a coil's footprint) are scaled to it.  ``depth_scale`` is not: scaling it with
    the coil's dipole fall-off, ``sqrt(a**2 + 0.2**2)``, merged more mines into
    neighbours under a 0.2 m coil (simulated lanes: PD 0.906 -> 0.844) and
    changed nothing under a 0.08 m one.
    """
    steps = getattr(chain, "steps", None) or []
    if not (steps and getattr(steps[-1], "name", "") == "emi.matched"):
        return {}
    out = dict(MATCHED_PARAMS)
    a = (context or {}).get("coil_radius")
    if a is not None and math.isfinite(float(a)) and float(a) > 0:
        for k in ("lobe_radius", "max_pass_spacing", "shape_radius"):
            out[k] = MATCHED_PARAMS[k] * float(a) / REFERENCE_COIL_RADIUS
    # the frame counts were chosen at the chain's reference rate: at another
    # rate they keep their length in time, as the chain's own windows do
    f = rate_factor(getattr(chain, "reference_rate", None), context or {})
    if f != 1.0:
        defaults = inspect.signature(EMIDetector.__init__).parameters
        for k, least in _FRAME_PARAMS.items():
            v = out.get(k, defaults[k].default)
            out[k] = scale_count(v, f, least) if v else v  # (max_frames 0: no limit)
    return out


def _num(name: str, value: Any, **kw: Any) -> Any:
    return check_number("emi detector", name, value, **kw)


def prominence_groups(x: Any, y: Any, s: Any, order: list[int], link_radius: float,
                      split: float) -> list[list[int]]:
    """Split peaks sampled over the ground into objects by topographic prominence.

    Peaks within ``link_radius`` of each other are neighbours.  Taken in
    ``order`` (strongest first; the caller breaks ties), a peak with no
    stronger neighbour starts an object (a local maximum), otherwise it joins
    the object of its strongest stronger neighbour; where two objects meet,
    the weaker one is absorbed when the saddle (the peak where they meet)
    times ``split`` exceeds its own maximum.  Peaks with a non-finite position
    start their own object and link to nothing.

    Returns
    -------
    list of list of int
        Indices of the peaks of each object, each list in ``order``'s order,
        objects by their strongest peak's rank in ``order``.
    """
    n = len(order)
    parent = list(range(n))
    top = list(range(n))  # rank of the strongest peak of each root's object

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    r2max = link_radius ** 2
    placed: list[int] = []
    for i, k in enumerate(order):
        px, py = x[k], y[k]
        ok = math.isfinite(px) and math.isfinite(py)
        nbrs = []
        if ok:
            for j in placed:
                q = order[j]
                if (x[q] - px) ** 2 + (y[q] - py) ** 2 <= r2max:
                    nbrs.append(j)
        if nbrs:
            # join the object of the strongest neighbour (steepest ascent)
            parent[i] = find(min(nbrs))
            roots = sorted({find(j) for j in nbrs}, key=lambda r: top[r])
            keep = roots[0]
            for r in roots[1:]:
                # peak k is the saddle between the objects keep and r
                if s[k] * split > s[order[top[r]]]:
                    parent[r] = keep
        if ok:
            placed.append(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(order[i])
    return [groups[r] for r in sorted(groups, key=lambda r: top[r])]


class LevelDrop:
    """Fast-decay evidence for the polarity rule: the ground balance's level
    amplitude falling well below its recent values.

    The EMI pipeline zeroes the statistic on readings whose balanced gates are
    negative on average over the early half of the gates (the baseline's
    negative copy of a target that has left it, and soil misfit, are not
    metal).  A metal object whose decay is fast against the gates (time
    constant below about 40 µs with gates from 12 µs to 1 ms: a small fuze)
    is negative there too after the balance, however strong.  The balance
    fits 1/t (the soil) and a level to every reading; such an object's
    response is one the 1/t fit overshoots at the late gates, so its fitted
    level *falls* (by 0.27 and 0.16 of its 1/t amplitude at 10 and 20 µs).
    A baseline copy, made after the balance, does not move the level; soil
    moves the 1/t (or learnt) amplitude; a slowly decaying object raises the
    level.  A reading whose level fell by more than ``threshold`` robust
    standard deviations is therefore kept from the polarity rule.

    Causal, and the same for any chunking: the level is averaged over the
    last ``window`` readings (the matched statistic's integration), compared
    with the median of the means of the last ``baseline_blocks`` whole blocks
    of ``block`` readings, in units of 1.4826 times the median absolute
    deviation of the last ``noise_blocks`` block means from the baseline they
    had then (over soil that moves the level, the bar rises with it).  No
    reading is exempt until half the baseline blocks and 10 deviations are
    known; non-finite levels are never exempt and skip their block.  (The
    scale is that of 50-reading block means; the 31-reading mean tested
    against it is about 1.27 times noisier on white noise, so 5 units are
    about 3.9 of its own standard deviations: on 2 million readings of white
    noise, 1e-4 of the readings were exempt.  An exempt reading only lets the
    statistic through; it makes no alarm by itself.)

    Parameters
    ----------
    block : int
        Readings per block (the ground balance's ``learn_block``: 50).
    baseline_blocks, noise_blocks : int
        Blocks in the level's baseline (2 s at 1 kHz) and its noise (5 s).
    window : int
        Readings the level is averaged over.
    threshold : float
        Robust standard deviations of fall that exempt a reading.
    """

    def __init__(self, block: int = 50, baseline_blocks: int = 40,
                 noise_blocks: int = 100, window: int = 31, threshold: float = 5.0) -> None:
        for name, v in (("block", block), ("baseline_blocks", baseline_blocks),
                        ("noise_blocks", noise_blocks), ("window", window)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ConfigError(f"LevelDrop: {name} must be a positive whole number, "
                                  f"not {v!r}")
        if not (isinstance(threshold, int | float) and math.isfinite(threshold)
                and threshold > 0):
            raise ConfigError(f"LevelDrop: threshold must be a positive number, not "
                              f"{threshold!r}")
        self.block = int(block)
        self.baseline_blocks = max(2, int(baseline_blocks))
        self.window = int(window)
        self.threshold = float(threshold)
        # the recent block means and deviations, in arrival order and sorted
        # (a median per block from the sorted copy: np.median on the deque was
        # most of the rule's time)
        self._means: Any = deque()
        self._devs: Any = deque()
        self._means_sorted: list[float] = []
        self._devs_sorted: list[float] = []
        self._noise_blocks = max(10, int(noise_blocks))
        self._buf = np.empty(self.block)
        self._fill = 0
        self._tail = np.zeros(0)
        self._cur: tuple[float, float] | None = None

    def process(self, level: ArrayLike) -> np.ndarray:
        """Boolean mask of the readings (of this chunk) whose level fell."""
        v = -np.asarray(level, dtype=np.float64).reshape(-1)  # a fall counts up
        n = v.size
        buf = np.concatenate([self._tail, v])
        sm = np.full(n, np.nan)
        w = self.window
        if buf.size >= w:
            # (the windows as sliding_window_view makes them, without its checks:
            # a live call of 25 readings had spent most of its time there)
            st = buf.strides[0]
            full = np.lib.stride_tricks.as_strided(
                buf, (buf.size - w + 1, w), (st, st), writeable=False).mean(axis=1)
            sm[n - full.size:] = full
        self._tail = buf[-(w - 1):].copy() if w > 1 else np.zeros(0)
        z = np.full(n, np.nan)
        i = 0
        while i < n:
            take = min(n - i, self.block - self._fill)
            if self._cur is not None:
                b, sd = self._cur
                z[i:i + take] = (sm[i:i + take] - b) / sd
            self._buf[self._fill:self._fill + take] = v[i:i + take]
            self._fill += take
            i += take
            if self._fill < self.block:
                continue
            self._fill = 0
            m = float(np.mean(self._buf))
            if not math.isfinite(m):
                continue
            half = self.baseline_blocks // 2
            if len(self._means) >= half:
                _push(self._devs, self._devs_sorted, abs(m - _median(self._means_sorted)),
                      self._noise_blocks)
            _push(self._means, self._means_sorted, m, self.baseline_blocks)
            self._cur = None
            if len(self._means) >= half and len(self._devs) >= 10:
                sd = 1.4826 * _median(self._devs_sorted)
                if sd > 0:
                    self._cur = (_median(self._means_sorted), sd)
        return z > self.threshold   # (NaN: False, and no warning)


def _push(recent: Any, ordered: list[float], v: float, keep: int) -> None:
    """Append ``v`` to ``recent`` (and its sorted copy ``ordered``), dropping the
    oldest beyond ``keep``."""
    recent.append(v)
    bisect.insort(ordered, v)
    if len(recent) > keep:
        old = recent.popleft()
        del ordered[bisect.bisect_left(ordered, old)]


def _median(ordered: list[float]) -> float:
    """Median of a sorted non-empty list, as ``numpy.median`` gives it."""
    n = len(ordered)
    k = n // 2
    return ordered[k] if n % 2 else (ordered[k - 1] + ordered[k]) / 2.0


@dataclass
class _Peak:
    s: float
    x: float
    y: float
    time: int
    index: int
    event_start: int
    event_end: int
    extent: float
    threshold: float
    t: float = math.nan  # time of the peak (s since the stream's first frame)


@dataclass
class _Cluster:
    peaks: list[_Peak] = field(default_factory=list)
    due: float = math.inf  # released once an event starts after this (s)

    @property
    def strongest(self) -> _Peak:
        return max(self.peaks, key=lambda p: p.s)

    def reaches(self, x: float, y: float, r2: float, by: float) -> bool:
        """Whether a peak of time at most ``by`` lies within ``sqrt(r2)`` of (x, y)."""
        return any(p.t <= by and (p.x - x) ** 2 + (p.y - y) ** 2 <= r2 for p in self.peaks)


def _empty_alarms() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k in ALARM_FIELDS:
        dt = np.int64 if k in ("time", "n_passes", "peak_index", "start_index",
                               "end_index", "shape") else np.float64
        out[k] = np.zeros(0, dtype=dt)
    return out


def _shared_empty() -> dict[str, np.ndarray]:
    out = _empty_alarms()
    for v in out.values():
        v.flags.writeable = False
    return out


#: No alarms, as read-only columns shared by every call that completes none
#: (most live calls: fourteen np.zeros each otherwise).
_NO_ALARMS = _shared_empty()


class EMIDetector:
    """Streaming EMI alarm detector (see the module docstring for the method).

    Parameters
    ----------
    threshold : float
        Floor of the high (start) threshold, in units of the statistic (noise
        level about 1).
    threshold_lo : float
        Floor of the low (continue) threshold.
    k_hi, k_lo : float
        Adaptive thresholds in background standard deviations above the
        background mean.
    background_window : float
        Time constant (frames) of the background mean and variance.
    warmup : int
        Frames of background before the adaptive part applies (only the floors
        until then); their mean and variance (Welford's update, stable for a
        statistic far from zero) start the running ones.
    clip : float
        Background updates are clipped at ``clip`` standard deviations.
    hold : int
        Frames below the low threshold tolerated inside an event.
    split : float
        Peak separation inside an event: a maximum is its own peak when the
        statistic falls ``split`` times below it before rising ``split`` times
        above the valley again (two objects under one long event).
    min_frames : int
        Shortest event kept, in frames.
    max_frames : int
        Longest event, in frames with a statistic (0: no limit).  A statistic
        that stays above threshold longer is a change of background (a soil
        patch, a level step), not a target: the event is dropped and the
        background level restarts from its mean.  Missing readings (a NaN
        statistic) count towards neither this nor ``hold`` nor ``min_frames``:
        a stream with dropped readings gives the events of the same stream
        without them.
    min_extent : float
        Shortest sensor travel during an event, in metres (checked only where
        positions are known).
    merge_radius : float
        A peak within this distance (m) of a peak of an open cluster joins it.
    dominance_radius, dominance_ratio : float
        A cluster whose strongest peak is at most ``dominance_ratio`` times the
        strongest peak of another open cluster within ``dominance_radius`` (m)
        is its side lobe and is merged into it (0 disables).
    depth_scale, tolerance : float
        When a cluster closes, its peaks are split among objects: a peak is
        explained by a stronger one at horizontal distance ``r`` when it is at
        most ``tolerance * s_strong * (1 + r**2 / depth_scale**2) ** -3`` (the
        fall-off of a dipole's response with the offset of the pass, for the
        deepest plausible depth plus sensor height ``depth_scale`` in m);
        otherwise it is another object with its own alarm.  Used only when
        ``link_radius`` is 0.
    link_radius : float
        When > 0 (m, a little more than the spacing of the passes), a closed
        cluster is split into objects by topographic prominence instead: peaks
        within ``link_radius`` are neighbours, each local maximum starts an
        object, and an object is absorbed by a stronger neighbour only when the
        saddle between them is above ``1 / split`` of its own maximum; then an
        object no stronger than the dipole rule above allows beside a stronger
        one (a duplicate on its flank) is merged into it.
    min_passes : int
        An object (after the split) seen on fewer passes is dropped: a buried
        object under a sweep that advances by less than the coil footprint is
        seen on several, a knock or a noise excursion on one (1: off).
    strong_score : float
        Objects whose peak reaches this are kept whatever their passes (0: no
        exemption).
    pass_ratio : float
        Only passes whose peak reaches ``pass_ratio`` times the object's
        strongest count towards ``min_passes`` (a point target seen from the
        next pass of the sweep still gives most of its response; a one-pass
        spike with faint neighbours does not).
    max_pass_spacing : float
        ``min_passes`` applies only where the passes lie at most this far
        apart (m; 0: always).  The spacing is the median, over the last five
        passes, of the distance across the path between the middles of
        consecutive passes (a swing's advance, a cart's line spacing), known
        when the object's cluster is due for release.  With passes wider apart
        than a coil's reach, an object right under one is seen on that one
        alone; so it is on a single line, or without positions (no spacing).
    lobe_radius, lobe_ratio : float
        With ``link_radius`` > 0, two objects whose maxima are within
        ``lobe_radius`` (m) and within ``lobe_ratio`` of each other in strength
        are one object: the two lobes of a horizontal dipole (a flat fragment
        or a rod on edge), which a coincident-loop sensor sees about a coil
        radius either side of it with a null right above (0: off).
    release_time : float
        A cluster without a new peak for this long (s) becomes its alarm(s).
    release_passes : float
        A cluster also waits this many times the duration of the sensor's
        passes for the next one (0: off).  A pass ends where the path turns
        back (its direction over ``turn_step`` m of travel reverses); the
        duration is the median of the last five passes, or the time since the
        current pass began when longer.  A side-to-side sweep comes back over
        an object a swing later, a cart's next line only after a whole line
        along the lane (and the line after it, back).
    max_release_time : float
        Longest wait that ``release_passes`` may set (s).
    turn_step : float
        Travel (m) over which the path's direction is taken.
    shape_radius : float
        With a shape-novelty channel (``novelty`` of :meth:`process`, the
        column :class:`demine.emi.MatchedDetect` gives with ``novelty_window``),
        the same events, clusters and objects are found on it by a second
        detector with these parameters, and each of its objects farther than
        ``shape_radius`` (m) from every alarm of the statistic becomes an alarm
        too (``shape`` 1, score: its novelty): a second object with another
        decay on a stronger one's flank (0: off).  Nearer, it is the stronger
        object's own shape changing across its footprint.
    shape_wait : float
        Longest wait (s) of a shape object for its judgement.  It is judged
        once the statistic's clusters near it are released (its first check
        is ``release_time`` after it is due; a cluster with a peak within
        ``shape_radius + merge_radius`` open then makes it wait for that
        cluster's release, and the check moves to its due), against the
        statistic's alarms due by then; at the latest ``shape_wait`` after it
        is due, against those due by that time.  A strong object's cluster
        stays open as long as passes keep reaching it, well after the shape
        object on its flank is due (on the independent model's lanes a fixed
        wait of 10 s kept duplicates beside AT mines that 60 s mostly and
        120 s entirely removed); waiting for that cluster instead gives the
        same alarms as the fixed 120 s on the 49 evaluation lanes, and the
        shape alarms come with their neighbours'.  Every check time is fixed
        by the stream, so the alarms do not depend on the chunking.
    sample_rate : float
        Frames per second, used for times when none are given.

    Examples
    --------
    >>> det = EMIDetector()
    >>> alarms = det.process(stat_chunk, x_chunk, y_chunk, time_chunk)  # doctest: +SKIP
    >>> alarms = det.finish()  # doctest: +SKIP
    """

    def __init__(self, *, threshold: float = 4.0, threshold_lo: float = 2.5,
                 k_hi: float = 6.0, k_lo: float = 3.0, background_window: float = 3000.0,
                 warmup: int = 300, clip: float = 3.0, hold: int = 5, split: float = 2.0,
                 min_frames: int = 5, max_frames: int = 3000, min_extent: float = 0.0,
                 merge_radius: float = 0.2,
                 dominance_radius: float = 0.5, dominance_ratio: float = 0.05,
                 depth_scale: float = 0.4, tolerance: float = 1.5,
                 link_radius: float = 0.0, min_passes: int = 1,
                 strong_score: float = 0.0, pass_ratio: float = 0.0,
                 max_pass_spacing: float = 0.0,
                 lobe_radius: float = 0.0, lobe_ratio: float = 0.5,
                 release_time: float = 3.0, release_passes: float = 2.5,
                 max_release_time: float = 120.0, turn_step: float = 0.05,
                 shape_radius: float = 0.0, shape_wait: float = 120.0,
                 sample_rate: float = 1000.0) -> None:
        self.threshold = _num("threshold", threshold, lo=0.0, lo_open=True)
        self.threshold_lo = _num("threshold_lo", threshold_lo, lo=0.0, lo_open=True)
        if self.threshold_lo > self.threshold:
            raise ConfigError("emi detector: 'threshold_lo' must not exceed 'threshold' "
                              f"({self.threshold_lo} > {self.threshold})")
        self.k_hi = _num("k_hi", k_hi, lo=0.0)
        self.k_lo = _num("k_lo", k_lo, lo=0.0)
        self.background_window = _num("background_window", background_window, lo=1.0)
        self.warmup = _num("warmup", warmup, lo=0, integer=True)
        self.clip = _num("clip", clip, lo=0.0)
        self.hold = _num("hold", hold, lo=0, integer=True)
        self.split = _num("split", split, lo=1.0, lo_open=True)
        self.min_frames = _num("min_frames", min_frames, lo=1, integer=True)
        self.max_frames = _num("max_frames", max_frames, lo=0, integer=True)
        self.min_extent = _num("min_extent", min_extent, lo=0.0)
        self.merge_radius = _num("merge_radius", merge_radius, lo=0.0)
        self.dominance_radius = _num("dominance_radius", dominance_radius, lo=0.0)
        self.dominance_ratio = _num("dominance_ratio", dominance_ratio, lo=0.0)
        self.depth_scale = _num("depth_scale", depth_scale, lo=0.0, lo_open=True)
        self.tolerance = _num("tolerance", tolerance, lo=1.0)
        self.link_radius = _num("link_radius", link_radius, lo=0.0)
        self.min_passes = _num("min_passes", min_passes, lo=1, integer=True)
        self.strong_score = _num("strong_score", strong_score, lo=0.0)
        self.pass_ratio = _num("pass_ratio", pass_ratio, lo=0.0, hi=1.0)
        self.max_pass_spacing = _num("max_pass_spacing", max_pass_spacing, lo=0.0)
        self.lobe_radius = _num("lobe_radius", lobe_radius, lo=0.0)
        self.lobe_ratio = _num("lobe_ratio", lobe_ratio, lo=0.0, hi=1.0)
        self.release_time = _num("release_time", release_time, lo=0.0)
        self.release_passes = _num("release_passes", release_passes, lo=0.0)
        self.max_release_time = _num("max_release_time", max_release_time, lo=0.0)
        self.turn_step = _num("turn_step", turn_step, lo=0.0, lo_open=True)
        self.shape_radius = _num("shape_radius", shape_radius, lo=0.0)
        self.shape_wait = _num("shape_wait", shape_wait, lo=0.0)
        self.sample_rate = _num("sample_rate", sample_rate, lo=0.0, lo_open=True)
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget all state (start of a new stream); parameters are kept."""
        self._f = np.zeros(_detect.NFS, dtype=np.float64)
        self._i = np.zeros(_detect.NIS, dtype=np.int64)
        self._t0: int | None = None
        self._pending: list[tuple[float, ...]] = []  # peaks of the open event
        self._clusters: list[_Cluster] = []
        self._done: list[dict[str, Any]] = []
        self.last_threshold = np.zeros(0)
        self._passes = PassTracker(self.turn_step)  # the sensor's passes
        # the shape-novelty channel: its own detector, its objects waiting for
        # the statistic's alarms they are judged against, and those alarms
        self._shape: EMIDetector | None = None
        self._shape_pending: list[dict[str, Any]] = []
        self._found: list[tuple[float, float, float]] = []  # (x, y, due)
        # released clusters of the statistic, with their dues, that a pending
        # shape object may still be judged against (kept while the shape
        # channel runs)
        self._settled: list[tuple[float, _Cluster]] = []
        self._t_released = -math.inf  # latest time clusters were released before

    def configure(self, context: Mapping[str, Any]) -> None:
        """Take ``sample_rate`` (frames/s) from a stream context."""
        rate = context.get("sample_rate")
        if rate:
            self.sample_rate = float(rate)

    def params(self) -> dict[str, Any]:
        """The effective parameters (JSON-able)."""
        keys = ("threshold", "threshold_lo", "k_hi", "k_lo", "background_window", "warmup",
                "clip", "hold", "split", "min_frames", "max_frames", "min_extent", "merge_radius",
                "dominance_radius", "dominance_ratio", "depth_scale", "tolerance", "link_radius",
                "min_passes", "strong_score", "pass_ratio", "max_pass_spacing", "lobe_radius",
                "lobe_ratio",
                "release_time", "release_passes", "max_release_time", "turn_step",
                "shape_radius", "shape_wait", "sample_rate")
        return {k: getattr(self, k) for k in keys}

    def set_threshold(self, threshold: float) -> None:
        """Move the alarm threshold while the detector runs (the console's knob).

        ``threshold_lo`` follows it down when it would exceed it.  The shape
        channel, whose novelty is in the statistic's units, moves with it.
        """
        value = _num("threshold", threshold, lo=0.0, lo_open=True)
        for d in (self, self._shape):
            if d is not None:
                d.threshold = value
                d.threshold_lo = min(d.threshold_lo, value)

    @property
    def background(self) -> tuple[float, float]:
        """Current background mean and standard deviation of the statistic."""
        return float(self._f[0]), float(math.sqrt(max(self._f[1], 0.0)))

    # ----------------------------------------------------------------- input
    def _inputs(self, stat: ArrayLike, x: ArrayLike | None, y: ArrayLike | None,
                time: ArrayLike | None, polarity: ArrayLike | None,
                novelty: ArrayLike | None = None) -> tuple[Any, ...]:
        s = np.asarray(stat, dtype=np.float64)
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.ndim != 1:
            raise ConfigError(f"emi detector: statistic must be 1-D (n_frames,), "
                              f"got shape {s.shape}")
        n = s.shape[0]

        def column(v: ArrayLike | None, name: str) -> np.ndarray:
            if v is None:
                return np.full(n, np.nan)
            a = np.ascontiguousarray(v, dtype=np.float64).reshape(-1)
            if a.shape[0] != n:
                raise ConfigError(f"emi detector: {name} has {a.shape[0]} values for "
                                  f"{n} statistic frames")
            return a

        xa, ya = column(x, "x"), column(y, "y")
        nov = None if novelty is None else column(novelty, "novelty")
        if polarity is not None:
            pol = column(polarity, "polarity")
            s = np.where(pol < 0, 0.0, s)
            if nov is not None:
                nov = np.where(pol < 0, 0.0, nov)
        s = np.ascontiguousarray(s)
        if time is None:
            idx = self._i[1] + np.arange(n, dtype=np.int64)
            tsec = idx / self.sample_rate
            tns = idx
        else:
            tns = np.asarray(time).reshape(-1)
            if tns.shape[0] != n:
                raise ConfigError(f"emi detector: time has {tns.shape[0]} values for "
                                  f"{n} statistic frames")
            if tns.dtype.kind not in "iu":
                raise ConfigError("emi detector: time must be integer UTC nanoseconds")
            tns = np.ascontiguousarray(tns, dtype=np.int64)
            if self._t0 is None and n:
                self._t0 = int(tns[0])
            t0 = self._t0 if self._t0 is not None else 0
            tsec = (tns - t0).astype(np.float64) / 1e9
        return s, xa, ya, np.ascontiguousarray(tsec), tns, nov

    # ----------------------------------------------------------------- events
    def _handle(self, seg_f: np.ndarray, seg_i: np.ndarray, k: int,
                pk_f: np.ndarray, pk_i: np.ndarray, kp: int) -> None:
        """Peaks join the open event's list; each completed event is accepted or not."""
        peaks = [(float(pk_f[r, 0]), float(pk_f[r, 1]), float(pk_f[r, 2]), int(pk_i[r, 2]),
                  int(pk_i[r, 1]), int(pk_i[r, 0]), float(pk_f[r, 3])) for r in range(kp)]
        j = 0
        for r in range(k):
            start = int(seg_i[r, 0])
            while j < len(peaks) and peaks[j][5] == start:
                self._pending.append(peaks[j])
                j += 1
            ev, self._pending = self._pending, []
            if seg_i[r, 5]:
                continue  # aborted: a change of background, not a target
            nfr = int(seg_i[r, 3])
            length = float(seg_f[r, 4])
            if nfr < self.min_frames:
                continue
            if self.min_extent > 0 and np.isfinite(seg_f[r, 1]) and length < self.min_extent:
                continue
            self._release(float(seg_f[r, 12]))
            for q in ev:
                self._add_peak(_Peak(q[0], q[1], q[2], q[3], q[4], start, int(seg_i[r, 1]),
                                     length, float(seg_f[r, 6]), q[6]), float(seg_f[r, 13]))
        self._pending.extend(peaks[j:])  # peaks of an event still open

    def _release(self, t_now: float) -> None:
        self._t_released = max(self._t_released, t_now)
        keep = []
        for c in self._clusters:
            due = self._release_due(c.due)
            if due < t_now:
                self._done.extend(self._due(self._alarms(c, due), due))
                if self._shape is not None:
                    self._settled.append((due, c))
            else:
                keep.append(c)
        self._clusters = keep

    @staticmethod
    def _due(alarms: list[dict[str, Any]], due: float) -> list[dict[str, Any]]:
        """Tag alarms with the (chunking-independent) time their cluster was due."""
        for a in alarms:
            a["_due"] = due
        return alarms

    def _add_peak(self, peak: _Peak, t_end: float) -> None:
        if not (math.isfinite(peak.x) and math.isfinite(peak.y)):
            self._done.extend(self._due(self._alarms(_Cluster([peak]), t_end), t_end))
            return
        best, best_d = None, math.inf
        for c in self._clusters:
            for p in c.peaks:
                d = math.hypot(p.x - peak.x, p.y - peak.y)
                if d < best_d:
                    best, best_d = c, d
        due = t_end + self._wait(t_end)
        if best is not None and best_d <= self.merge_radius:
            best.peaks.append(peak)
            best.due = max(best.due, due)
        else:
            best = _Cluster([peak], due)
            self._clusters.append(best)
        self._dominance(best)

    def _dominance(self, c: _Cluster) -> None:
        """Merge side lobes: weak clusters near a much stronger one."""
        if self.dominance_ratio <= 0 or self.dominance_radius <= 0:
            return
        changed = True
        while changed:
            changed = False
            sc = c.strongest
            for d in self._clusters:
                if d is c:
                    continue
                sd = d.strongest
                if math.hypot(sd.x - sc.x, sd.y - sc.y) > self.dominance_radius:
                    continue
                if sd.s <= self.dominance_ratio * sc.s:
                    strong, weak = c, d
                elif sc.s <= self.dominance_ratio * sd.s:
                    strong, weak = d, c
                else:
                    continue
                strong.peaks.extend(weak.peaks)
                strong.due = max(strong.due, weak.due)
                self._clusters.remove(weak)
                c = strong
                changed = True
                break

    def _alarms(self, c: _Cluster, due: float) -> list[dict[str, Any]]:
        """Alarms of a closed cluster: one per object its peaks cannot be explained without.

        The peaks of the passes sample the response over the ground.  With
        ``link_radius`` > 0 they are split by topographic prominence: peaks
        within ``link_radius`` of each other are neighbours; taken strongest
        first, a peak with no stronger neighbour starts an object (a local
        maximum of the response), otherwise it joins its strongest stronger
        neighbour's object; where two objects meet, the weaker one is absorbed
        when the saddle between them (the peak where they meet) is above
        ``1 / split`` of its own maximum (a bump on the other's flank, not a
        separate object).  A small object beside a large one keeps its own
        alarm however much weaker it is, because the large object's response
        keeps falling towards it.

        Objects are then merged, strongest first, by the dipole rule below
        applied to their maxima (a duplicate on a large object's flank).

        With ``link_radius`` = 0 only the dipole rule applies, per peak: a peak at distance
        ``r`` from an object already found is that object's when it is no
        stronger than ``tolerance * s_obj * (1 + r**2 / depth_scale**2) ** -3``.
        """
        if self.link_radius > 0:
            merged: list[list[_Peak]] = []
            for m in self._prominence_modes(c.peaks):
                p = m[0]
                for a in merged:
                    r2 = (p.x - a[0].x) ** 2 + (p.y - a[0].y) ** 2
                    if (p.s <= self.tolerance * a[0].s * (1.0 + r2 / self.depth_scale**2) ** -3
                            or (r2 <= self.lobe_radius**2 and p.s >= self.lobe_ratio * a[0].s)):
                        a.extend(m)
                        break
                else:
                    merged.append(m)
            return [self._alarm(m) for m in merged if self._enough_passes(m, due)]
        modes: list[list[_Peak]] = []
        for p in sorted(c.peaks, key=lambda q: (-q.s, q.index)):
            owner = None
            if math.isfinite(p.x) and math.isfinite(p.y):
                for m in modes:
                    a = m[0]
                    r2 = (p.x - a.x) ** 2 + (p.y - a.y) ** 2
                    if p.s <= self.tolerance * a.s * (1.0 + r2 / self.depth_scale**2) ** -3:
                        owner = m
                        break
            if owner is None:
                modes.append([p])
            else:
                owner.append(p)
        return [self._alarm(m) for m in modes if self._enough_passes(m, due)]

    # ----------------------------------------------------------------- passes
    def _release_due(self, due: float) -> float:
        """When a cluster due at ``due`` is released: not before the spacing of
        the passes is known (the end of the second pass; a cart's first line
        is otherwise over before it), unless that takes ``max_release_time``
        more (a single line).  A fixed time once known, whatever the chunking:
        the path is tracked up to the last frame before events are handled."""
        if self.max_pass_spacing <= 0 or self.min_passes <= 1:
            return due
        return min(max(due, self._passes.first_spacing), due + self.max_release_time)

    def _wait(self, t: float) -> float:
        """How long (s) a cluster whose last peak came at ``t`` waits for the next pass."""
        wait = self.release_time
        if self.release_passes <= 0:
            return wait
        longest = self._passes.duration(t)
        return max(wait, min(self.max_release_time, self.release_passes * longest))

    def _enough_passes(self, peaks: list[_Peak], due: float) -> bool:
        """Whether an object is seen on ``min_passes`` passes (or is exempt as
        strong, or the passes lie too far apart: their spacing as known when
        its cluster was ``due``, a time that does not depend on the chunking).

        Only passes whose peak reaches ``pass_ratio`` times the object's
        strongest count: a buried object seen from the neighbouring pass of a
        sweep still gives a good fraction of its response, a one-pass spike
        does not.
        """
        if self.min_passes <= 1:
            return True
        top = max(p.s for p in peaks)
        if 0 < self.strong_score <= top:
            return True
        if self.max_pass_spacing > 0 and not self._passes.spacing(due) <= self.max_pass_spacing:
            # passes too far apart to see it twice, or not yet two passes
            # (one line, no positions): it can only be seen once
            return True
        passes = {p.event_start for p in peaks if p.s >= self.pass_ratio * top}
        return len(passes) >= self.min_passes

    def _prominence_modes(self, peaks: list[_Peak]) -> list[list[_Peak]]:
        order = sorted(range(len(peaks)), key=lambda i: (-peaks[i].s, peaks[i].index))
        groups = prominence_groups([p.x for p in peaks], [p.y for p in peaks],
                                   [p.s for p in peaks], order, self.link_radius, self.split)
        return [[peaks[i] for i in g] for g in groups]

    @staticmethod
    def _alarm(peaks: list[_Peak]) -> dict[str, Any]:
        c = _Cluster(peaks)
        s = np.array([p.s for p in c.peaks])
        x = np.array([p.x for p in c.peaks])
        y = np.array([p.y for p in c.peaks])
        best = c.strongest
        sel = s >= 0.5 * best.s
        if np.isfinite(x[sel]).all() and np.isfinite(y[sel]).all():
            w = s[sel] ** 2
            ax = float(np.sum(w * x[sel]) / w.sum())
            ay = float(np.sum(w * y[sel]) / w.sum())
        else:
            ax, ay = best.x, best.y
        return {"time": best.time, "x": ax, "y": ay, "depth": math.nan, "score": best.s,
                "n_passes": len({p.event_start for p in c.peaks}), "peak_index": best.index,
                "start_index": min(p.event_start for p in c.peaks),
                "end_index": max(p.event_end for p in c.peaks),
                "extent": max(p.extent for p in c.peaks), "threshold": best.threshold,
                "shape": 0}

    def _collect(self) -> dict[str, np.ndarray]:
        if not self._done:
            return dict(_NO_ALARMS)
        out = _empty_alarms()
        if self._done:
            self._done.sort(key=lambda a: (a["start_index"], a["peak_index"]))
            for k in ALARM_FIELDS:
                out[k] = np.array([a[k] for a in self._done], dtype=out[k].dtype)
        self._done = []
        return out

    # ----------------------------------------------------------------- API
    def process(self, stat: ArrayLike, x: ArrayLike | None = None, y: ArrayLike | None = None,
                time: ArrayLike | None = None, polarity: ArrayLike | None = None,
                novelty: ArrayLike | None = None) -> dict[str, np.ndarray]:
        """Feed a chunk of frames; return the alarms completed so far.

        Parameters
        ----------
        stat : array_like, shape (n,)
            Detection statistic (e.g. the last channel of ``emi.detect``).
        x, y : array_like, shape (n,), optional
            Sensor position of each frame (m); without them alarms are not
            merged in space and have NaN positions.
        time : array_like of int64, shape (n,), optional
            UTC nanoseconds of each frame; default frame index / sample_rate.
        polarity : array_like, shape (n,), optional
            A signed companion of the statistic, positive where the response
            looks like metal (e.g. the mean of the noise-normalised gates);
            frames with negative polarity count as quiet (statistic 0), so a
            residual of the wrong sign (sensor lifted over soil) raises no alarm.
        novelty : array_like, shape (n,), optional
            The shape novelty of each frame (see ``shape_radius``); give it for
            every chunk of a stream or for none.

        Returns
        -------
        dict of ndarray
            Columns :data:`ALARM_FIELDS`, one row per alarm, in the order of
            their first frame.
        """
        s, xa, ya, tsec, tns, nov = self._inputs(stat, x, y, time, polarity,
                                                 novelty if self.shape_radius > 0 else None)
        if nov is not None:
            self._novelty_detector()  # (before the statistic's clusters are released)
        t_now = self._step(s, xa, ya, tsec, tns)
        if nov is not None:
            # the same frames, positions and times: one detector more on the novelty
            self._novelty_detector()._step(nov, xa, ya, tsec, tns)
            self._judge_shapes(t_now)
        return self._collect()

    def _step(self, s: np.ndarray, xa: np.ndarray, ya: np.ndarray, tsec: np.ndarray,
              tns: np.ndarray) -> float:
        """Events, peaks and clusters of one chunk; returns the time (s) before
        which every cluster is released (-inf for an empty chunk)."""
        n = s.shape[0]
        if self.release_passes > 0 or self.max_pass_spacing > 0:
            self._passes.track(xa, ya, tsec, self.sample_rate)
        thr = np.empty(n)
        seg_f = np.empty((n + 1, _detect.NSF))
        seg_i = np.empty((n + 1, _detect.NSI), dtype=np.int64)
        pk_f = np.empty((2 * n + 2, _detect.NPF))
        pk_i = np.empty((2 * n + 2, _detect.NPI), dtype=np.int64)
        k, kp = _detect.hysteresis_run(
            s, xa, ya, tsec, tns, thr, self._f, self._i, seg_f, seg_i, pk_f, pk_i,
            1.0 / self.background_window, self.k_hi, self.k_lo, self.threshold,
            self.threshold_lo, self.clip, self.warmup, self.hold, self.split,
            self.max_frames)
        self.last_threshold = thr
        self._handle(seg_f, seg_i, k, pk_f, pk_i, kp)
        if not n:
            return -math.inf
        # Clusters whose release time has passed before the current frame (or
        # before the start of an event still open) can never grow again.
        t_now = float(tsec[-1])
        if self._i[2]:
            t_now = min(t_now, float(self._f[18]))
        self._release(t_now)
        # (an event in its hold period may still end a little before the
        # last frame: keep the passes of the last seconds as well)
        self._passes.forget(t_now - self.hold / self.sample_rate - 1.0)
        return t_now

    # ----------------------------------------------------------------- shape
    def _novelty_detector(self) -> EMIDetector:
        if self._shape is None:
            self._shape = EMIDetector(**{**self.params(), "shape_radius": 0.0})
        return self._shape

    def _judge_shapes(self, t_now: float) -> None:
        """Alarms of the shape channel, once the statistic's alarms they are
        judged against are all known.

        A shape object due at ``d`` is judged at a check time ``c``, first
        ``d + min(release_time, shape_wait)``, against the statistic's alarms
        due by ``c``, once ``c < t_now``.  Before that, the statistic's
        clusters that had a peak within ``shape_radius + merge_radius`` of it
        by ``c`` must all have been released by ``c``: a strong object's
        cluster stays open as long as passes keep reaching it, and its alarm
        may lie beside the shape object.  While one of them is open the object
        waits; once they are all released, the check moves to the latest of
        their dues (and the rule applies again there).  An object still
        waiting at ``d + shape_wait`` is judged then, against the alarms due
        by that time.

        Every check time and every input of a judgement is fixed by the
        stream, not by its chunking: clusters due before ``t_now`` have been
        released and no later one can be due before it (dues only grow), the
        peaks counted are those up to ``c`` (all handled once ``c < t_now``),
        and a cluster open now is due after ``t_now``.
        """
        self._found.extend((a["x"], a["y"], a["_due"]) for a in self._done)
        shape = self._novelty_detector()  # (made by the first call with a novelty)
        self._shape_pending.extend(shape._done)
        shape._done = []
        keep = []
        r2 = self.shape_radius ** 2
        rb2 = (self.shape_radius + self.merge_radius) ** 2
        first_wait = min(self.release_time, self.shape_wait)
        for a in self._shape_pending:
            ax, ay = a["x"], a["y"]
            if not (math.isfinite(ax) and math.isfinite(ay)):
                if a["_due"] + self.shape_wait < t_now:
                    continue  # nothing to judge it against: the statistic's own
                keep.append(a)
                continue
            last = a["_due"] + self.shape_wait
            c = a.get("_check", a["_due"] + first_wait)
            decided = False
            while c < t_now:
                if c >= last:
                    c = last
                    decided = True
                    break
                # the latest due of the clusters it waits for (open ones are
                # due after t_now, so after c)
                later = -math.inf
                if any(cl.reaches(ax, ay, rb2, c) for cl in self._clusters):
                    later = math.inf
                else:
                    for due, cl in self._settled:
                        if due > c and cl.reaches(ax, ay, rb2, c):
                            later = max(later, due)
                if later == -math.inf:
                    decided = True
                    break
                if later == math.inf:
                    break  # wait for that cluster's release
                c = later
            if not decided:
                a["_check"] = c
                keep.append(a)
                continue
            if any(due <= c and (x - ax) ** 2 + (y - ay) ** 2 <= r2
                   for x, y, due in self._found):
                continue
            a["shape"] = 1
            self._done.append(a)
        self._shape_pending = keep
        # A released cluster matters only to checks before its due: those of
        # the pending objects (none earlier than its stored check or its due)
        # and of objects the shape channel has yet to release.  Those were
        # open at its last release time T, so were due after T then; a due
        # only moves down when the pass spacing becomes known, and by at most
        # max_release_time (_release_due), so they are due after that.
        horizon = min([shape._t_released - self.max_release_time]
                      + [a.get("_check", a["_due"]) for a in keep])
        self._settled = [(due, cl) for due, cl in self._settled if due > horizon]

    def finish(self) -> dict[str, np.ndarray]:
        """End of stream: close any open event and every cluster; return their alarms."""
        self._close()
        if self._shape is not None:
            self._shape._close()
            self._judge_shapes(math.inf)
        return self._collect()

    def _close(self) -> None:
        seg_f = np.empty((1, _detect.NSF))
        seg_i = np.empty((1, _detect.NSI), dtype=np.int64)
        pk_f = np.empty((1, _detect.NPF))
        pk_i = np.empty((1, _detect.NPI), dtype=np.int64)
        k, kp = _detect.flush_event(self._f, self._i, seg_f, seg_i, pk_f, pk_i)
        self._handle(seg_f, seg_i, k, pk_f, pk_i, kp)
        self._release(math.inf)


def concat_alarms(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate alarm tables column by column."""
    out = _empty_alarms()
    for k in ALARM_FIELDS:
        arrs = [p[k] for p in parts if p[k].size]
        if arrs:
            out[k] = np.concatenate(arrs)
    return out


def detect_emi(stat: ArrayLike, x: ArrayLike | None = None, y: ArrayLike | None = None,
               time: ArrayLike | None = None, polarity: ArrayLike | None = None,
               novelty: ArrayLike | None = None, **params: Any) -> dict[str, np.ndarray]:
    """Alarms of a whole stream in one call (same result as streaming).

    Parameters
    ----------
    stat, x, y, time, polarity, novelty
        See :meth:`EMIDetector.process`.
    **params
        :class:`EMIDetector` parameters.

    Returns
    -------
    dict of ndarray
        Columns :data:`ALARM_FIELDS`.
    """
    det = EMIDetector(**params)
    return concat_alarms([det.process(stat, x, y, time, polarity, novelty), det.finish()])
