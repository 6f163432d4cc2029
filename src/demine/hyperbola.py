"""GPR detection: prescreen and automatic diffraction-hyperbola fit on B-scans.

A small buried object seen by a radar moving along a line draws a diffraction
hyperbola in the radargram (B-scan)::

    t(x) = t_s + sqrt(tau**2 + (2 * max(|x - x0| - w, 0) / v) ** 2),   z = v * tau / 2

with ``x0`` the position of the apex along the line, ``tau`` the two-way time
of the apex after the ground surface (time ``t_s``), ``v`` the wave velocity in
the soil, ``z`` the depth of the object's top, and ``w`` the half-width of a
flat top (0 for a point or a sphere; a disc-shaped mine seen from above is flat
for about its radius).  :class:`GPRDetector` finds them automatically on
background-removed B-scans (for example the output of the
``gpr_default`` chain of :mod:`demine.gpr`):

1. **Binning by path length.**  Traces are averaged into bins of equal length
   along the antenna's track (``bin_size``, 1 cm by default), computed from the
   trace positions, so irregular spacing, stops and changes of speed do not
   distort the hyperbolae, and the detector's cost follows distance, not the
   trace rate.
2. **Surface following.**  What a moving-mean background removal leaves of
   the ground bounce is mostly its *shift*: the antenna height and the
   surface roughness move the surface reflection by a few picoseconds from
   trace to trace, and ``r(t - d) - r(t) ~ -d r'(t)`` is one fixed waveform
   times a varying weight, 10-40 times the noise for a millimetre-scale
   wobble at 1.5 GHz.  In the surface zone (``surface_before`` before to
   ``surface_after`` after the surface), the bins are projected out of the
   ``surface_components`` principal components of that zone, estimated over
   ``surface_window`` metres of line around them without the
   ``surface_trim`` most energetic bins (targets).  A buried object changes
   the surface reflection's amplitude and shape, not only its arrival, so
   the echo of a mine 0-3 cm deep (inside the ground bounce) keeps most of
   its energy while the wobble residue drops to about the noise.
3. **Noise normalisation.**  Every sample is divided by a scale of its time
   row, the larger of (a) the random noise, from the lower quartile of
   ``|difference|`` between neighbouring bins over ``noise_window`` metres of
   line around it (flat and slowly varying events cancel in the differences;
   a target filling most of the window does not bias it) and (b) the level of
   coherent clutter (ground-bounce and antenna-ringing residue left by the
   background removal), from the lower quartile of ``|amplitude|`` over the
   trailing ``clutter_window`` metres (long, so that a target fills little of
   it) without the ``clutter_guard`` metres on each side of the window's
   centre (guard cells, as in a CFAR detector: at the start of a line or on a
   short one the object's own echo would otherwise be much of its clutter
   window), measured around the row's median (``robust_clutter``: the flat
   imprint that a long flat target, such as an anti-tank mine's top, leaves
   over the whole background window is no clutter, and the flat penalty
   deals with it); both scaled to a Gaussian standard deviation, with a floor of
   ``noise_floor`` times the largest amplitude nearby.  ``noise`` fixes the
   scale instead (noiseless full-wave simulations, calibrated systems).
   Thresholds are therefore in units of the noise, whatever the gain.
4. **Prescreen.**  An apex cell (bin, time) is considered only when the mean
   square of the normalised data in a small window around it (``prescreen_dx``
   metres by ``prescreen_dt`` seconds) reaches ``prescreen_threshold ** 2``:
   an energy CFAR detector.
5. **Hyperbola fit.**  For each apex cell that passes, the normalised B-scan is
   stacked (summed with linear interpolation in time) along the curve above for
   every velocity of ``velocities`` and every flat-top half-width of
   ``widths``, using the traces within the flat top ``w`` plus limbs of
   ``z * tan(aperture_angle)`` (at least ``min_aperture`` and ``w``, at most
   ``max_aperture``) on each side of the apex.  The
   templates are ranked by ``(|sum| - flat_penalty * flat) / sqrt(n)``, where
   ``flat`` is what a horizontal line at the apex time collects beyond the flat
   top (with the sign of the sum): a diffraction scores, a specular flat event
   (layer, surface or ringing residue) does not.  The best template gives
   ``S = sum / sqrt(n)`` (a matched-filter statistic: about N(0, 1) on noise),
   the velocity, the depth and the polarity (sign of S); the semblance
   ``sum**2 / (n * sum of squares)`` (1 for a perfect fit, ~1/n on noise) is
   the fit quality.  This is a Hough transform over ``(x0, tau, v, w)`` that
   votes with amplitudes instead of picked edges.
6. **Alarms.**  A bin gives an alarm when its best ranking score reaches
   ``threshold``, its fit quality reaches ``min_fit_quality``, and it is the
   largest among the bins within ``suppression_radius`` metres of line whose
   apex is within ``suppression_time`` of its own and either lies on their
   fitted diffraction curve (within ``suppression_curve``: a limb of their
   hyperbola) or sits under their flat top: an event at another depth that
   no neighbour's hyperbola explains is another object.

Streaming: every quantity of a bin depends only on a fixed neighbourhood of
line around it, so :meth:`GPRDetector.process` releases an alarm as soon as the
line has gone far enough past it, and a line processed in one call or in any
chunks gives the same alarms.  The compiled kernels live in
``demine._hyperbola``.

Radar frequency: the windows above that are sizes of the wavelet (the
prescreen's, the surface zone, ``min_time``, the suppression's times, the
bins) are given for ``reference_frequency`` (1.5 GHz, the radar they were
developed on).  Told the radar's centre ``frequency`` (a stream's calibration
``frequency``), the detector scales them by ``reference_frequency /
frequency`` (:data:`WAVELET_PARAMS`, :func:`frequency_factor`) and says so
in :meth:`GPRDetector.notes`.

Units: positions and depths in metres, times in seconds (``time`` of an alarm
in UTC nanoseconds), velocities in m/s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _hyperbola as _k
from ._params import check_number
from .errors import ConfigError

__all__ = ["GPRDetector", "detect_gpr", "ALARM_COLUMNS", "C0", "FREQUENCY_TOLERANCE",
           "MIN_LINE_LENGTH", "REFERENCE_FREQUENCY", "WAVELET_PARAMS", "frequency_factor",
           "surface_time"]

#: Shortest line (m) whose clutter statistics a target does not largely fill;
#: :meth:`GPRDetector.finish` warns below it.  On 3-D gprMax lines over a
#: 7.5 cm plastic or metal AP mine (docs/evaluation.md) scores are 22-28 on
#: 0.36 m of line and 60-138 on 1.1 m (threshold 12; 15-18 and 47-116 before
#: the clutter level had guard cells): a short line still costs a target about
#: two thirds of its score.
MIN_LINE_LENGTH = 0.5

C0 = 299_792_458.0

#: Radar centre frequency (Hz) the wavelet-tied parameters of
#: :class:`GPRDetector` are given for by default (the reference 1.5 GHz
#: ground-coupled radar they were developed on).
REFERENCE_FREQUENCY = 1.5e9

#: A declared centre frequency within this fraction of ``reference_frequency``
#: keeps the wavelet-tied parameters as given (vendors round their nominal
#: frequencies: a "1.6 GHz" antenna is 7 % off 1.5 GHz and scales).
FREQUENCY_TOLERANCE = 0.05

#: Parameters tied to the wavelet's length, scaled by ``reference_frequency /
#: frequency`` (:func:`frequency_factor`): times (s) that are fractions or
#: multiples of its period (``"time"``), and lengths (m) that are fractions
#: of its wavelength in the soil (``"length"``; the wavelength scales with 1/f
#: at a given velocity).  ``"sampling"``: the bins' step along the line, which
#: must resolve the limbs' wavefronts (a fraction of the wavelength), shrinks
#: for a higher frequency but never grows: coarser bins buy nothing but CPU,
#: and the noise scale, from differences of neighbouring bins, then also
#: takes the echoes' variation along the line for noise (on the simulated
#: cart lanes at 0.8 GHz, 1.875 cm bins: PD 0.974 at 0.122 false alarms per
#: metre, 1 cm bins: 0.974 at 0.094; docs/evaluation.md).  Not
#: scaled, because they are about the soil, the objects or the line, not the
#: wavelet: ``velocities``, ``widths`` (a flat top is the object's own
#: half-width), the apertures (antenna beam and depth), ``max_depth``,
#: ``max_time``, ``suppression_radius`` (an object's halo) and the noise,
#: clutter and surface windows along the line.
WAVELET_PARAMS: dict[str, str] = {
    # half-size in time of the prescreen's energy window: a third of a period
    "prescreen_dt": "time",
    # apex times skipped after the surface: the ground bounce's tail
    "min_time": "time",
    # the surface zone: the ground-bounce wavelet around the surface time
    "surface_before": "time",
    "surface_after": "time",
    # rows whose clutter level applies: ground-bounce ringing (if given)
    "surface_zone": "time",
    # one object's echo spreads over its wavelet and side lobes: events
    # closer in time are the same object
    "suppression_time": "time",
    # tolerance of a neighbour's fitted curve: a fraction of a period
    "suppression_curve": "time",
    # bins along the line: the limbs' wavefronts are sampled at no less than
    # a fixed fraction of the wavelength (no spatial aliasing)
    "bin_size": "sampling",
    # half-size along the line of the prescreen window: the horizontal
    # resolution (first Fresnel zone) shrinks with the wavelength
    "prescreen_dx": "length",
}


def frequency_factor(frequency: float | None,
                     reference_frequency: float | None = REFERENCE_FREQUENCY) -> float:
    """By how much the wavelet-tied parameters (:data:`WAVELET_PARAMS`) stretch
    for a radar of centre ``frequency`` (Hz); the ``"sampling"`` one
    (``bin_size``) takes the factor only when it is below 1.

    ``reference_frequency / frequency``, or 1 when either is None or the two
    agree within :data:`FREQUENCY_TOLERANCE` (parameters as given).

    Raises
    ------
    ConfigError
        A frequency (or reference) that is not a finite number > 0 (a
        calibration's 0, negative or NaN centre frequency).
    """
    if frequency is None or reference_frequency is None:
        return 1.0
    f = check_number("GPRDetector", "frequency", frequency, lo=0.0, lo_open=True)
    ref = check_number("GPRDetector", "reference_frequency", reference_frequency, lo=0.0,
                       lo_open=True)
    r = ref / f
    return r if abs(f / ref - 1.0) > FREQUENCY_TOLERANCE else 1.0

#: Columns of the alarm tables returned by the detector.
ALARM_COLUMNS = ("x", "y", "s", "depth", "velocity", "score", "time", "two_way_time",
                 "polarity", "fit_quality", "amplitude", "width")

_DEFAULT_VELOCITIES = tuple(float(v) for v in np.geomspace(0.06e9, 0.2e9, 10))


def _num(name: str, value: Any, **kw: Any) -> float:
    return check_number("GPRDetector", name, value, **kw)


def _grid(name: str, values: Any, *, lo: float, lo_open: bool) -> NDArray[np.float64]:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or len(arr) == 0:
        raise ConfigError(f"GPRDetector: parameter {name!r} must be a non-empty list")
    for v in arr:
        _num(name, v, lo=lo, lo_open=lo_open)
    return np.ascontiguousarray(arr)


def _make_empty() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {c: np.zeros(0) for c in ALARM_COLUMNS}
    out["time"] = np.zeros(0, dtype=np.int64)
    out["polarity"] = np.zeros(0, dtype=np.int8)
    for v in out.values():
        v.flags.writeable = False
    return out


_EMPTY = _make_empty()


def _empty_alarms() -> dict[str, np.ndarray]:
    """No alarms: a new dict of shared empty (read-only) columns; the live
    detector returns it ~40 times a second, twelve np.zeros calls each."""
    return dict(_EMPTY)


def _quantile_index(n: int, q: float) -> tuple[int, int, float]:
    """The order statistics (indices, -1 for the last) and the weight of the
    upper one that NumPy's "linear" quantile method uses for ``n`` values and
    a Python-float ``q`` (weak promotion): its own virtual index arithmetic."""
    vi = (n - 1) * float(q)
    prev = math.floor(vi)
    nxt = prev + 1
    if vi >= n - 1:
        prev = nxt = -1
    elif vi < 0:
        prev = nxt = 0
    return prev, nxt, vi - prev


def _column_quantile(a: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(a, q, axis=0)`` of a 2-D float32 block, bit for bit, with
    the selection done by a compiled quickselect (NumPy's partition along
    axis 0 was most of the detector's CPU time)."""
    n = a.shape[0]
    prev, nxt, gamma = _quantile_index(n, q)
    lo = np.empty(a.shape[1], dtype=np.float32)
    hi = np.empty(a.shape[1], dtype=np.float32)
    _k.column_order_stats(np.ascontiguousarray(a, dtype=np.float32), prev % n, nxt % n, lo, hi)
    diff = hi - lo
    out = np.add(lo, diff * gamma)
    np.subtract(hi, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe",
                dtype=type(out.dtype))
    return out


def _quantile_1d(a: np.ndarray, q: float) -> float:
    """``float(np.quantile(a, q))`` of a 1-D float64 array, bit for bit (the
    same order statistics and interpolation in the same float64 arithmetic),
    with one partition instead of np.quantile's dozens of NumPy calls."""
    n = len(a)
    prev, nxt, gamma = _quantile_index(n, q)
    # the partition np.quantile makes (the same kth: equal values, signed
    # zeros, land where they land there)
    p = np.partition(a, sorted({0, -1, prev, nxt}))   # (np.unique's kth, in Python)
    if p[n - 1] != p[n - 1]:   # NaN sorts last: np.quantile gives NaN
        return math.nan
    lo, hi = float(p[prev % n]), float(p[nxt % n])
    d = hi - lo
    if gamma >= 0.5:
        return hi - d * (1 - gamma)
    return lo + d * gamma


def _gradient(f: np.ndarray) -> np.ndarray:
    """``np.gradient(f)`` of a 1-D float64 array of at least 2 values, bit for
    bit (central differences / 2 inside, one-sided at the ends), in a few calls
    instead of np.gradient's dozens."""
    out = np.empty(len(f))
    np.subtract(f[2:], f[:-2], out=out[1:-1])
    out[1:-1] /= 2.0
    out[0] = f[1] - f[0]
    out[-1] = f[-1] - f[-2]
    return out


def _column_median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=0)`` of a 2-D float32 block, bit for bit (the mean
    of the middle order statistics, taken by NumPy as np.median does)."""
    n = a.shape[0]
    h = n // 2
    lo = np.empty(a.shape[1], dtype=np.float32)
    hi = np.empty(a.shape[1], dtype=np.float32)
    k0 = h - 1 if n % 2 == 0 else h
    _k.column_order_stats(np.ascontiguousarray(a, dtype=np.float32), k0, h, lo, hi)
    return np.mean(np.stack([lo, hi]) if n % 2 == 0 else lo[None, :], axis=0)


def _window_scales_numpy(blk: np.ndarray, cl: np.ndarray, q: float, noise_scale: float,
                         clutter_scale: float, robust: bool, flat_level: float, half: int,
                         zone: np.ndarray, noise_floor: float) -> np.ndarray:
    """The noise scale of every time row of one window, in NumPy: the
    reference twin of the compiled ``window_scales`` (same arguments; ``cl``
    without rows: no clutter term; ``zone`` without values: no zone)."""
    absb = np.abs(blk)
    # (1) differences of neighbouring bins: flat or slowly varying events
    # (layers, flat tops) cancel, random noise does not
    if len(blk) > 1:
        d = np.abs(np.diff(blk, axis=0))
        s_noise = _column_quantile(d, q) * noise_scale
    else:
        s_noise = absb[0] * clutter_scale
    sig = s_noise
    if len(cl):
        # (2) level of coherent clutter in the row (ground-bounce and
        # ringing residue): lower quartile of |a| over the trailing
        # clutter window (long, so that a target fills little of it),
        # widened over half a wavelet in time.  Measured around the
        # row's median: the moving-mean background removal leaves a flat
        # imprint of a long flat target (an anti-tank mine's top) over
        # its whole window, which is no clutter that hides a diffraction
        # (the flat penalty deals with it)
        if robust:
            med = _column_median(cl)
            s_clut = _column_quantile(np.abs(cl - med), q) * clutter_scale
            # a flat event keeps a share of its level in the scale, as a
            # margin for the flat penalty (which a flat event beats by
            # its curved limbs' near-apex part)
            s_clut = np.maximum(s_clut, flat_level * np.abs(med))
        else:
            s_clut = _column_quantile(np.abs(cl), q) * clutter_scale
        if half > 0:
            pad = np.pad(s_clut, half, mode="edge")
            s_clut = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1).max(axis=1)
        if len(zone):
            s_clut = s_clut * zone
        sig = np.maximum(sig, s_clut)
    floor = noise_floor * float(absb.max()) if absb.size else 0.0
    sig = np.maximum(sig, floor)
    return np.where(sig > 0, sig, np.inf).astype(np.float32)


class _Rows:
    """Rows appended at the end and dropped from the front of a buffer with
    spare room: an append copies the new rows only (a concatenation copied
    every row kept, ~1 MB per array and call of the live detector), and the
    live rows are a view ``buf[start:end]`` (C-contiguous for 2-D buffers)."""

    __slots__ = ("buf", "start", "end")

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.buf = np.empty((64, *shape), dtype=dtype)
        self.start = self.end = 0

    def view(self) -> np.ndarray:
        return self.buf[self.start:self.end]

    def grow(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Make room for ``k`` more rows; return the live rows (including the
        new ones, uninitialised) and the new rows, both views."""
        if self.end + k > len(self.buf):
            live = self.end - self.start
            # a new buffer (never moved in place: earlier views stay valid)
            buf = np.empty((max(2 * (live + k), 64), *self.buf.shape[1:]), dtype=self.buf.dtype)
            buf[:live] = self.buf[self.start:self.end]
            self.buf, self.start, self.end = buf, 0, live
        self.end += k
        return self.buf[self.start:self.end], self.buf[self.end - k:self.end]

    def drop(self, k: int) -> np.ndarray:
        self.start += k
        return self.buf[self.start:self.end]


def _top_eigenvectors(c: np.ndarray, k: int, iterations: int = 60) -> np.ndarray:
    """The ``k`` leading eigenvectors of the symmetric matrix ``c`` (columns),
    by orthogonal (subspace) iteration from a fixed start: deterministic, and
    on a loaded machine far cheaper than a LAPACK call on a small matrix."""
    n = c.shape[0]
    k = min(k, n)
    v = np.eye(n, k) + c[:, :k] / (np.abs(c).max() or 1.0)
    if k == 1:
        # as a 1-D vector: the same BLAS calls (a matrix-vector product, and
        # np.linalg.norm's own arithmetic, the sqrt of the dot product), with
        # the fewest Python calls per iteration (x 60, ~14 times a second
        # live), into two buffers (np.dot's matrix-vector product is the
        # same BLAS gemv as the @ operator's)
        w = v[:, 0].copy()
        t = np.empty_like(w)
        dot, div, sqrt = np.dot, np.divide, math.sqrt
        for _ in range(iterations):
            dot(c, w, out=t)
            div(t, sqrt(t.dot(t)) or 1.0, out=w)
        # one column: no order to find; the sign makes its largest entry
        # positive (np.sign and the product below, as for several columns)
        sgn = np.sign(w[int(np.argmax(np.abs(w)))])
        return (w * (1.0 if sgn == 0 else sgn)).reshape(n, 1)
    else:
        for _ in range(iterations):
            v, _r = np.linalg.qr(c @ v)
    # order by Rayleigh quotient, fix the sign (largest entry positive)
    lam = np.einsum("ij,ij->j", v, c @ v)
    v = v[:, np.argsort(-lam, kind="stable")]
    sgn = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return np.ascontiguousarray(v * np.where(sgn == 0, 1.0, sgn))


def surface_time(traces: ArrayLike, sample_interval: float, *, antenna_height: float = 0.0,
                 offset: float = 0.0) -> float:
    """Estimate the two-way time of the ground surface from raw traces.

    Takes the time of the strongest absolute peak of the mean trace (the
    direct wave of a ground-coupled antenna, which the background removal
    takes away) and adds the air travel time ``2 * antenna_height / c``, less
    the direct wave's own travel time over the antenna separation ``offset``.

    Parameters
    ----------
    traces : array_like, shape (n_traces, n_samples)
        Raw (not background-removed) traces.
    sample_interval : float
        Seconds between samples.
    antenna_height : float
        Antenna height above ground, m.
    offset : float
        Transmitter-receiver separation, m.

    Returns
    -------
    float
        Two-way time of the surface, s, measured from the first sample.
    """
    a = np.asarray(traces, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise ConfigError("surface_time: traces must be a non-empty (n_traces, n_samples) array")
    mean = np.nanmean(a, axis=0)
    mean = mean - np.median(mean)
    k = int(np.argmax(np.abs(mean)))
    return max(k * float(sample_interval) - offset / C0, 0.0) + 2.0 * antenna_height / C0


class GPRDetector:
    """Streaming detector of diffraction hyperbolae in a background-removed B-scan.

    Parameters
    ----------
    sample_interval : float
        Seconds between samples of a trace.
    time_zero : float
        Two-way time (s from the first sample) of the ground surface, or of the
        direct wave when ``antenna_height`` is given: the surface is then at
        ``time_zero + 2 * antenna_height / c``.  Apex times and depths count
        from the surface.
    antenna_height : float
        Antenna height above ground, m (see ``time_zero``).
    velocities : sequence of float
        Soil velocities tried by the fit, m/s (default 10 values from 0.06 to
        0.2 m/ns, relative permittivity about 25 down to 2.2).
    widths : sequence of float
        Flat-top half-widths tried, m (default 0 to 0.2 in steps of 0.04).
    bin_size : float
        Path length per bin, m.
    noise_window : float
        Length of line (m) over which the noise of each time row is estimated.
    noise_quantile : float
        Quantile of ``|difference|`` (noise) and ``|amplitude|`` (clutter)
        taken as the scale, converted to a Gaussian standard deviation: 0.25
        stays right while targets fill up to 3/4 of the window.
    clutter_window : float or None
        Metres of line before a point (plus ``noise_window / 2`` after it)
        over which the clutter level of each row is measured; None: no
        clutter term.
    clutter_guard : float
        Metres of line on each side of a window's centre left out of its
        clutter level (the guard cells of a CFAR detector): an object's own
        echo, a flat top and the limbs near its apex, is not clutter that
        hides it.  It matters where the clutter window is short (the start
        of a line, short lines): there the echo is much of the window.
    surface_zone : float, optional
        Apply the clutter term only to rows less than this many seconds below
        the surface (default: to all rows).
    flat_penalty : float
        Weight of the flat-event penalty in the ranking score (0: plain
        matched filter ``|S|``).
    noise : float, optional
        Fixed noise scale in data units, instead of estimating it.
    noise_floor : float
        Lower bound of the noise scale as a fraction of the largest amplitude in
        the noise window.
    prescreen_threshold : float
        RMS of the normalised data around an apex cell needed to fit it.
    prescreen_dx, prescreen_dt : float
        Half-size of the prescreen window: metres of line and seconds.
    threshold : float
        Minimum ranking score of an alarm (noise units; see the module notes).
    min_fit_quality : float
        Minimum semblance of an alarm (0..1).
    aperture_angle : float
        Half-angle (degrees) of the cone of traces used in the fit.
    min_aperture, max_aperture : float
        Bounds of the limbs of the fit aperture (m, on each side of the flat
        top).
    min_time, max_time : float, optional
        Apex times (s after the surface) searched; ``min_time`` skips the
        residual of the ground bounce.  ``max_time`` defaults to the end of the
        trace.
    suppression_radius : float
        An alarm is the strongest bin within this distance along the line, m...
    suppression_time : float, optional
        ... among the bins whose best apex time is within this many seconds of
        its own (an event at another depth is another object); None: all...
    suppression_curve : float, optional
        ... and whose fitted curve passes within this many seconds of its
        apex, or whose flat top covers it (None: no such condition).
    surface_components : int
        Principal components of the ground-bounce variation removed in the
        surface zone (0: none).
    surface_before, surface_after : float
        The surface zone: seconds before and after the surface time.
    surface_window : float
        Metres of line over which the surface components are estimated (the
        last ``noise_window / 2`` ahead of the bin, the rest behind).
    surface_trim : float
        Fraction of the most energetic bins left out of that estimate.
    surface_second_order : bool
        Also remove the second-order term of a shift of the surface wavelet
        (its time derivative, weighted by the square of the first
        component's weight).
    robust_clutter : bool
        Measure the clutter level around each row's median...
    flat_level : float
        ... but keep at least this fraction of the median's magnitude (a
        flat event) as the row's clutter level.
    max_depth : float, optional
        Drop alarms whose fitted depth is larger (m), e.g. 0.3 for a clearance
        depth; they still suppress weaker neighbours.
    reference_polarity : {1, -1}
        Multiplies the reported polarity.  Give the sign of the ground-bounce
        reflection in the data so that +1 means "same sign as the surface"
        (permittivity higher than the soil: metal, water) and -1 the opposite
        (plastic, air, dry rock).
    nthreads : int
        Threads of the fit kernel (0: one per core, capped at 8).
    frequency : float, optional
        Centre frequency of the radar, Hz (a stream's calibration
        ``frequency``; :class:`demine.pipeline.StreamDetector` passes it).
    reference_frequency : float, optional
        Centre frequency (Hz) the wavelet-tied parameters
        (:data:`WAVELET_PARAMS`: ``prescreen_dt``, ``min_time``,
        ``surface_before``, ``surface_after``, ``surface_zone``,
        ``suppression_time``, ``suppression_curve``, ``bin_size``,
        ``prescreen_dx``), given or default, are for: with a ``frequency``
        more than :data:`FREQUENCY_TOLERANCE` off it, each is multiplied by
        ``reference_frequency / frequency`` (:func:`frequency_factor`), so that
        it keeps its size relative to the wavelet (``bin_size`` by at most 1:
        it shrinks for a higher frequency, never grows).  None: never scaled.
        To give them for the radar's own frequency, set it to that frequency.

    Notes
    -----
    Alarms are dicts of column arrays (:data:`ALARM_COLUMNS`): ``x``, ``y``
    (mean trace position of the apex bin, in the position frame given),
    ``s`` (path length along the line, m), ``depth`` (m, top of the object),
    ``velocity`` (m/s), ``score`` (the ranking score), ``time`` (UTC ns of the apex),
    ``two_way_time`` (apex time after the surface, s), ``polarity`` (+1/-1),
    ``fit_quality`` (semblance), ``amplitude`` (mean amplitude along the
    curve, data units) and ``width`` (flat-top half-width, m).
    """

    def __init__(self, sample_interval: float, *, time_zero: float = 0.0,
                 antenna_height: float = 0.0,
                 velocities: Sequence[float] = _DEFAULT_VELOCITIES,
                 widths: Sequence[float] = (0.0, 0.04, 0.08, 0.12, 0.16, 0.2),
                 bin_size: float = 0.01, noise_window: float = 1.0,
                 noise_quantile: float = 0.25, clutter_window: float | None = 3.0,
                 clutter_guard: float = 0.1, surface_zone: float | None = None,
                 flat_penalty: float = 1.0, noise: float | None = None,
                 noise_floor: float = 1e-3, prescreen_threshold: float = 2.0,
                 prescreen_dx: float = 0.02, prescreen_dt: float = 0.2e-9,
                 threshold: float = 12.0, min_fit_quality: float = 0.3,
                 aperture_angle: float = 45.0, min_aperture: float = 0.05,
                 max_aperture: float = 0.35, min_time: float = 0.15e-9,
                 max_time: float | None = None, suppression_radius: float = 0.25,
                 suppression_time: float | None = 2.0e-9,
                 suppression_curve: float | None = 0.4e-9, max_depth: float | None = None,
                 reference_polarity: int = 1, surface_components: int = 1,
                 surface_before: float = 0.5e-9, surface_after: float = 0.7e-9,
                 surface_window: float = 2.0, surface_trim: float = 0.25,
                 surface_second_order: bool = True, robust_clutter: bool = True,
                 flat_level: float = 0.5,
                 nthreads: int = 0, frequency: float | None = None,
                 reference_frequency: float | None = REFERENCE_FREQUENCY) -> None:
        # the wavelet-tied parameters, scaled to the radar's frequency
        # (unchanged, the same floats, within the tolerance)
        self.frequency = None if frequency is None else _num("frequency", frequency, lo=0.0,
                                                             lo_open=True)
        self.reference_frequency = None if reference_frequency is None else _num(
            "reference_frequency", reference_frequency, lo=0.0, lo_open=True)
        self.frequency_factor = frequency_factor(self.frequency, self.reference_frequency)
        given = {"prescreen_dt": prescreen_dt, "min_time": min_time,
                 "surface_before": surface_before, "surface_after": surface_after,
                 "surface_zone": surface_zone, "suppression_time": suppression_time,
                 "suppression_curve": suppression_curve, "bin_size": bin_size,
                 "prescreen_dx": prescreen_dx}
        self._scaled: dict[str, tuple[float, float]] = {}
        fac = self.frequency_factor
        if fac != 1.0:
            for k, v in given.items():
                if v is None or (WAVELET_PARAMS[k] == "sampling" and fac > 1.0):
                    continue   # (not given; bins never coarser than given)
                v0 = _num(k, v)
                self._scaled[k] = (v0, v0 * fac)
            prescreen_dt, min_time, surface_before, surface_after, surface_zone, \
                suppression_time, suppression_curve, bin_size, prescreen_dx = (
                    self._scaled[k][1] if k in self._scaled else given[k] for k in given)
        self.dt = _num("sample_interval", sample_interval, lo=0.0, lo_open=True)
        self.time_zero = _num("time_zero", time_zero, lo=0.0)
        self.antenna_height = _num("antenna_height", antenna_height, lo=0.0)
        self.t_surf = self.time_zero + 2.0 * self.antenna_height / C0
        self.velocities = _grid("velocities", velocities, lo=0.0, lo_open=True)
        self.widths = _grid("widths", widths, lo=0.0, lo_open=False)
        self.bin_size = _num("bin_size", bin_size, lo=0.0, lo_open=True)
        self.noise_window = _num("noise_window", noise_window, lo=0.0, lo_open=True)
        self.noise_floor = _num("noise_floor", noise_floor, lo=0.0)
        self.noise_quantile = _num("noise_quantile", noise_quantile, lo=0.01, hi=0.99)
        self.flat_penalty = _num("flat_penalty", flat_penalty, lo=0.0)
        self.noise = None if noise is None else _num("noise", noise, lo=0.0, lo_open=True)
        self.clutter_window = None if clutter_window is None else _num(
            "clutter_window", clutter_window, lo=0.0, lo_open=True)
        self.clutter_guard = _num("clutter_guard", clutter_guard, lo=0.0)
        self.surface_zone = None if surface_zone is None else _num("surface_zone", surface_zone,
                                                                   lo=0.0)
        from scipy.special import erfinv

        # |N(0, s)| has quantile q at s * sqrt(2) * erfinv(q)
        self._q_scale = 1.0 / (math.sqrt(2.0) * float(erfinv(self.noise_quantile)))
        self.prescreen_threshold = _num("prescreen_threshold", prescreen_threshold, lo=0.0)
        self.prescreen_dx = _num("prescreen_dx", prescreen_dx, lo=0.0)
        self.prescreen_dt = _num("prescreen_dt", prescreen_dt, lo=0.0)
        self.threshold = _num("threshold", threshold, lo=0.0)
        self.min_fit_quality = _num("min_fit_quality", min_fit_quality, lo=0.0, hi=1.0)
        self.aperture_angle = _num("aperture_angle", aperture_angle, lo=0.0, hi=89.0)
        self.min_aperture = _num("min_aperture", min_aperture, lo=0.0)
        self.max_aperture = _num("max_aperture", max_aperture, lo=self.min_aperture)
        self.min_time = _num("min_time", min_time, lo=0.0)
        self.max_time = None if max_time is None else _num("max_time", max_time,
                                                           lo=self.min_time)
        self.suppression_radius = _num("suppression_radius", suppression_radius, lo=0.0)
        self.max_depth = None if max_depth is None else _num("max_depth", max_depth,
                                                             lo=0.0, lo_open=True)
        self.suppression_time = None if suppression_time is None else _num(
            "suppression_time", suppression_time, lo=0.0)
        self.suppression_curve = None if suppression_curve is None else _num(
            "suppression_curve", suppression_curve, lo=0.0)
        if reference_polarity not in (1, -1):
            raise ConfigError("GPRDetector: parameter 'reference_polarity' must be 1 or -1, "
                              f"got {reference_polarity!r}")
        self.reference_polarity = int(reference_polarity)
        self.surface_components = int(_num("surface_components", surface_components, lo=0,
                                           hi=8))
        self.surface_before = _num("surface_before", surface_before, lo=0.0)
        self.surface_after = _num("surface_after", surface_after, lo=0.0)
        if _num("surface_window", surface_window, lo=0.0) < self.noise_window:
            raise ConfigError(f"GPRDetector: parameter 'surface_window' must be at least "
                              f"'noise_window' ({self.noise_window:g}), got {surface_window!r}")
        self.surface_window = float(surface_window)
        self.surface_trim = _num("surface_trim", surface_trim, lo=0.0, hi=0.9)
        self.robust_clutter = bool(robust_clutter)
        self.flat_level = _num("flat_level", flat_level, lo=0.0)
        self.surface_second_order = bool(surface_second_order)
        nt = int(nthreads)
        if nt < 0:
            raise ConfigError(f"GPRDetector: parameter 'nthreads' must be >= 0, got {nthreads}")
        if nt == 0:
            import os

            nt = min(os.cpu_count() or 1, 8)
        self.nthreads = nt
        # windows in bins (bin index space, robust to gaps in the track)
        self._wn = max(1, int(round(0.5 * self.noise_window / self.bin_size)))
        self._wa = int(math.ceil((self.max_aperture + float(self.widths.max()))
                                 / self.bin_size)) + 1
        self._wp = int(math.ceil(self.prescreen_dx / self.bin_size)) + 1
        self._wr = int(math.ceil(self.suppression_radius / self.bin_size)) + 1
        self._pre_dk = int(round(self.prescreen_dt / self.dt))
        # the noise is estimated on a grid of window centres every ~5 cm
        self._noise_step = max(1, int(round(0.05 / self.bin_size)))
        self._wc = (0 if self.clutter_window is None
                    else int(math.ceil(self.clutter_window / self.bin_size)))
        # the surface subspace is estimated over the bins from _ws before a
        # window centre to _wn after it (the trimming keeps _wc behind)
        self._ws = max(self._wn, int(math.ceil((self.surface_window - 0.5 * self.noise_window)
                                               / self.bin_size)))
        self._wc = max(self._wc, self._ws)
        self._wg = int(round(self.clutter_guard / self.bin_size))
        self.reset()

    def notes(self) -> list[str]:
        """What the detector decided from the stream that its user should know:
        the wavelet-tied parameters scaled to the radar's centre frequency
        (none when they are as given)."""
        if not self._scaled:
            return []
        parts = []
        for k, (v0, v1) in self._scaled.items():
            if WAVELET_PARAMS[k] == "time":
                parts.append(f"{k} {v0 * 1e9:.4g} -> {v1 * 1e9:.4g} ns")
            else:
                parts.append(f"{k} {v0 * 100:.4g} -> {v1 * 100:.4g} cm")
        return [f"GPR detector: radar centre frequency {self.frequency / 1e9:.4g} GHz, "
                f"parameters given for {self.reference_frequency / 1e9:.4g} GHz: the "
                f"wavelet-tied ones scaled by {self.frequency_factor:.4g} ("
                + ", ".join(parts) + ")"]

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the line: the next :meth:`process` starts a new one."""
        self._ns: int | None = None
        self._st = np.zeros(_k.NST, dtype=np.float64)
        self._acc: np.ndarray | None = None
        self._t_ref: int | None = None
        self._seen = 0
        self._bins = np.zeros((0, 0), dtype=np.float32)   # averaged traces
        self._meta = np.zeros((0, 4))                      # s, x, y, t(rel ns)
        self._gidx = np.zeros(0, dtype=np.int64)
        # the buffers behind the row arrays (views), made with the first traces
        self._rb: dict[str, _Rows] = {}
        self._norm = np.zeros((0, 0), dtype=np.float32)   # normalised, first n_norm bins
        self._clean = np.zeros((0, 0), dtype=np.float32)  # surface-cleaned, first n_norm
        self._z0 = self._z1 = 0
        self._fit = np.zeros((0, 8))                        # fit rows, first n_fit bins
        self._n_norm = 0
        self._sig_cache: dict[int, np.ndarray] = {}
        self._n_fit = 0
        self._n_done = 0  # bins decided (alarm or not)
        self._trim_next = 0  # _n_done from which _trim looks again
        self._finished = False

    @property
    def latency(self) -> float:
        """Metres of line after a point before its alarm can be released."""
        return self.bin_size * (self._wn + self._wa + self._wr + 3)

    # ------------------------------------------------------------------ API
    def process(self, traces: ArrayLike, x: ArrayLike, y: ArrayLike | None = None,
                time: ArrayLike | None = None) -> dict[str, np.ndarray]:
        """Add a chunk of background-removed traces; return the alarms completed.

        Parameters
        ----------
        traces : array_like, shape (n, n_samples)
            Processed traces (any real dtype; cast to float32).
        x : array_like, shape (n,)
            Position of each trace, m (along the line when ``y`` is not given).
        y : array_like, shape (n,), optional
            Second coordinate of each trace, m; the detector works on the path
            length along ``(x, y)``, so lines in any direction, stops and
            reversals are fine.
        time : array_like of int64, shape (n,), optional
            UTC ns of each trace (alarm times); default: the trace index.

        Returns
        -------
        dict of ndarray
            Alarms (:data:`ALARM_COLUMNS`) whose neighbourhood is complete.
        """
        if self._finished:
            raise ConfigError("GPRDetector: process() after finish(); call reset() first")
        tr, xx, yy, tt = self._check(traces, x, y, time)
        n, ns = tr.shape
        if n == 0:
            return _empty_alarms()
        if self._ns is None:
            self._ns = ns
            t = np.arange(ns) * self.dt
            if self.surface_zone is not None:
                self._zone = (t <= self.t_surf + self.surface_zone).astype(np.float32)
            else:
                self._zone = np.zeros(0, dtype=np.float32)
            self._no_rows = np.zeros((0, ns), dtype=np.float32)
            self._no_index = np.zeros(0, dtype=np.int64)
            self._no_zone = np.zeros((0, 0), dtype=np.float32)
            # the order statistics of the last window: where the next
            # window's selection starts (any values give the same scales)
            self._guess = np.full((3, ns), np.nan, dtype=np.float32)
            self._acc = np.zeros(ns, dtype=np.float64)
            self._rb = {"bins": _Rows((ns,), np.float32), "meta": _Rows((4,), np.float64),
                        "gidx": _Rows((), np.int64), "norm": _Rows((ns,), np.float32),
                        "clean": _Rows((ns,), np.float32), "fit": _Rows((8,), np.float64)}
            self._bins = self._rb["bins"].view()
            self._meta = self._rb["meta"].view()
            self._gidx = self._rb["gidx"].view()
            self._norm = self._rb["norm"].view()
            self._clean = self._rb["clean"].view()
            self._fit = self._rb["fit"].view()
            k0 = int(math.floor((self.t_surf - self.surface_before) / self.dt))
            k1 = int(math.ceil((self.t_surf + self.surface_after) / self.dt)) + 1
            self._z0, self._z1 = max(k0, 0), min(max(k1, 0), ns)
        if self._t_ref is None:
            self._t_ref = int(tt[0])
        trel = (tt - self._t_ref).astype(np.float64)
        out = np.empty((n, ns), dtype=np.float32)
        meta = np.empty((n, 4), dtype=np.float64)
        gidx = np.empty(n, dtype=np.int64)
        m = _k.bin_traces(tr, xx, yy, trel, self.bin_size, self._st, self._acc, out, meta, gidx)
        self._append(out[:m], meta[:m], gidx[:m])
        return self._advance(final=False)

    def finish(self) -> dict[str, np.ndarray]:
        """End of the line: return the remaining alarms.  Then :meth:`reset`.

        Warns (``UserWarning``) when the whole line was shorter than
        :data:`MIN_LINE_LENGTH` and the noise and clutter scales are measured
        on it (no fixed ``noise``): a target then fills the window its own
        clutter statistics come from, and is missed.
        """
        if self._finished:
            return _empty_alarms()
        if self._ns is not None:
            out = np.empty((1, self._ns), dtype=np.float32)
            meta = np.empty((1, 4))
            gidx = np.empty(1, dtype=np.int64)
            m = _k.flush_bin(self._st, self._acc, out, meta, gidx)
            self._append(out[:m], meta[:m], gidx[:m])
        # (after the last bin is flushed: a line of one trace had none before)
        if self.clutter_window is not None and self.noise is None and len(self._gidx):
            length = (int(self._gidx[-1]) + 1) * self.bin_size
            if length < min(MIN_LINE_LENGTH, self.clutter_window):
                warnings.warn(
                    f"GPR line of {length:.2f} m is shorter than {MIN_LINE_LENGTH:g} m: a target "
                    "fills much of the window its clutter scale is measured over, so its score "
                    "is depressed (on FDTD lines about a third of the score on 1 m) and it may "
                    "be missed; record a few decimetres of background either side of a target",
                    UserWarning, stacklevel=2)
        res = self._advance(final=True)
        self._finished = True
        return res

    # ------------------------------------------------------------------ internals
    def _check(self, traces: ArrayLike, x: ArrayLike, y: ArrayLike | None,
               time: ArrayLike | None) -> tuple[np.ndarray, ...]:
        tr = np.asarray(traces)
        if tr.ndim != 2:
            raise ConfigError(f"GPRDetector: traces must be 2-D (n_traces, n_samples), "
                              f"got shape {tr.shape}")
        if not np.issubdtype(tr.dtype, np.number) or np.iscomplexobj(tr):
            raise ConfigError(f"GPRDetector: traces must be real numbers, got {tr.dtype}")
        n, ns = tr.shape
        if self._ns is not None and n and ns != self._ns:
            raise ConfigError(f"GPRDetector: traces have {ns} samples, the line has {self._ns}")
        if n and ns < 4:
            raise ConfigError(f"GPRDetector: traces need at least 4 samples, got {ns}")
        if n and self.time_zero >= ns * self.dt:
            # (every depth window would lie past the trace: no alarm, without a word)
            raise ConfigError(f"GPRDetector: time_zero {self.time_zero:g} s lies beyond the "
                              f"trace ({ns} samples of {self.dt:g} s)")
        if time is not None and (tdt := np.asarray(time).dtype).kind not in "iu":
            raise ConfigError(f"GPRDetector: time must be integer UTC nanoseconds (int64), "
                              f"got dtype {tdt}")
        tr = np.ascontiguousarray(tr, dtype=np.float32)

        def col(name: str, v: ArrayLike | None, dtype: Any) -> np.ndarray:
            a = np.ascontiguousarray(np.asarray(v, dtype=dtype).reshape(-1))
            if a.shape != (n,):
                raise ConfigError(f"GPRDetector: {name} has {a.size} values for {n} traces")
            if dtype is np.float64 and not np.all(np.isfinite(a)):
                raise ConfigError(f"GPRDetector: {name} has non-finite positions")
            return a

        xx = col("x", x, np.float64)
        yy = np.zeros(n) if y is None else col("y", y, np.float64)
        if time is None:  # an index clock
            tt = np.arange(self._seen, self._seen + n, dtype=np.int64)
        else:
            tt = col("time", time, np.int64)
        self._seen += n
        return tr, xx, yy, tt

    def _append(self, out: np.ndarray, meta: np.ndarray, gidx: np.ndarray) -> None:
        if len(out) == 0:
            return
        k = len(out)
        self._bins, new = self._rb["bins"].grow(k)
        new[...] = out
        self._meta, new = self._rb["meta"].grow(k)
        new[...] = meta
        self._gidx, new = self._rb["gidx"].grow(k)
        new[...] = gidx

    def _advance(self, final: bool) -> dict[str, np.ndarray]:
        nb = len(self._gidx)
        if nb == 0:
            return _empty_alarms()
        g = self._gidx
        g_last = int(g[-1])
        # 1. noise-normalise bins whose noise window is complete
        n_norm = nb if final else int(g.searchsorted(
            g_last - self._wn - self._noise_step // 2 - 1, side="right"))
        if n_norm > self._n_norm:
            self._normalise(self._n_norm, n_norm)
            self._n_norm = n_norm
        # 2. fit bins whose aperture is normalised
        if final:
            n_fit = nb
        else:
            g_norm = int(g[self._n_norm - 1]) if self._n_norm else -(1 << 62)
            n_fit = int(g.searchsorted(g_norm - self._wa - 1, side="left"))
        if n_fit > self._n_fit:
            self._fit_bins(self._n_fit, n_fit)
            self._n_fit = n_fit
        # 3. decide bins whose suppression window is fitted
        if final:
            n_done = nb
        else:
            g_fit = int(g[self._n_fit - 1]) if self._n_fit else -(1 << 62)
            n_done = int(g.searchsorted(g_fit - self._wr - 1, side="left"))
        alarms = _empty_alarms()
        if n_done > self._n_done:
            alarms = self._decide(self._n_done, n_done)
            self._n_done = n_done
        self._trim()
        return alarms

    def _surface_basis(self, x: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """Model of the ground-bounce variation of the bins ``x`` (background
        removed) in the surface zone, or None: an orthonormal basis ``u``
        (samples x k) and, for the second-order shift term, a unit waveform
        ``d`` with the coefficients ``(kappa, mu)`` of ``kappa * s**2 + mu``,
        ``s`` being a bin's weight on the first component."""
        k = self.surface_components
        z0, z1 = self._z0, self._z1
        if k == 0 or z1 - z0 < 3 or len(x) < 4 * k + 4:
            return None
        x = x[:, z0:z1].astype(np.float64)
        # leave out the most energetic bins (targets) from the estimate
        e = np.einsum("ij,ij->i", x, x)
        xk = x[e <= _quantile_1d(e, 1.0 - self.surface_trim)]
        u = _top_eigenvectors(xk.T @ xk, k)
        if not self.surface_second_order:
            return (u,)
        # a shift d of the surface wavelet g leaves -d g' + d**2 / 2 g'' - ...:
        # the first component is g' (weight s ~ d), the next term is the
        # time derivative of it with a weight proportional to s**2
        dv = _gradient(u[:, 0])
        dv -= u @ (u.T @ dv)
        nd = math.sqrt(dv.dot(dv))   # np.linalg.norm's arithmetic, without its wrappers
        if nd == 0.0:
            return (u,)
        dv /= nd
        sc = xk @ u
        r = (xk - sc @ u.T) @ dv
        # r ~ kappa * s**2 + mu by least squares, centred: the two columns of
        # [s**2, 1] differ in scale by the square of the amplitude unit, and a
        # rank-revealing solver (lstsq) dropped one of them for recordings in
        # large or small units, so the alarms depended on the unit
        w = sc[:, 0] * sc[:, 0]
        wm, rm = float(w.mean()), float(r.mean())
        w -= wm
        den = float(w.dot(w))
        kappa = float(w.dot(r)) / den if den > 0.0 else 0.0
        return (u, dv, kappa, rm - kappa * wm)

    def _project(self, blk: np.ndarray, model: tuple[np.ndarray, ...] | None) -> np.ndarray:
        """``blk`` with the ground-bounce variation removed from its surface zone
        (in place: pass a private copy)."""
        if model is None:
            return blk
        blk[:, self._z0:self._z1] = self._clean_zone(blk[:, self._z0:self._z1], model)
        return blk

    @staticmethod
    def _clean_zone(zone: np.ndarray, model: tuple[np.ndarray, ...]) -> np.ndarray:
        """The surface-zone columns ``zone`` of some bins with the ground-bounce
        variation removed (float64; :meth:`_project` without the other
        columns, so a window's bins need not be copied)."""
        u = model[0]
        z = zone.astype(np.float64)
        sc = z @ u
        z -= sc @ u.T
        if len(model) > 1:
            dv, kappa, mu = model[1], model[2], model[3]
            z -= (kappa * sc[:, 0] ** 2 + mu)[:, None] * dv[None, :]
        return z

    def _noise(self, c: int) -> np.ndarray:
        """Noise scale of every time row for the window centred on bin index ``c``."""
        return self._window(c)[0]

    def _window(self, c: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Noise scale of every time row and surface basis of the window of
        centre ``c``."""
        hit = self._sig_cache.get(c)
        if hit is not None:
            return hit
        g = self._gidx
        a = self._bins
        lo = int(g.searchsorted(c - self._wn, side="left"))
        hi = int(g.searchsorted(c + self._wn, side="right"))
        lo2 = int(g.searchsorted(c - self._wc, side="left"))
        los = int(g.searchsorted(c - self._ws, side="left"))
        basis = self._surface_basis(a[los:hi])
        if self.noise is not None:
            sig = np.full(self._bins.shape[1], self.noise, dtype=np.float32)
            self._sig_cache[c] = (sig, basis)
            return self._sig_cache[c]
        # The noise block is the bins [lo, hi), the clutter rows every other
        # bin of the clutter window (the quantiles of 3.5 m of line need no
        # more) without the guard cells around the centre; the kernel reads
        # them where they are, with the surface zone projected apart (the
        # same values as projecting copies of the whole bins)
        z0, z1 = self._z0, self._z1
        if self.clutter_window is not None:
            g0 = int(g.searchsorted(c - self._wg, side="left"))
            g1 = int(g.searchsorted(c + self._wg, side="right"))
            rows = None
            if self._wg > 0 and g1 > g0:
                rows = np.concatenate((np.arange(lo2, g0, 2),
                                       np.arange(g1 + (g1 - lo2) % 2, hi, 2)))
            if rows is not None and len(rows) >= 4:
                zc = None if basis is None else self._clean_zone(a[rows, z0:z1], basis)
            else:   # nothing to guard, or a line too short to leave it out
                rows = np.arange(lo2, hi, 2)
                zc = None if basis is None else self._clean_zone(a[lo2:hi:2, z0:z1], basis)
        else:
            rows = self._no_index
            zc = None if basis is None else self._no_zone
        if basis is None:
            z0, zb, zc = 0, self._no_zone, self._no_zone
        else:
            zb = self._clean_zone(a[lo:hi, z0:z1], basis).astype(np.float32)
            zc = zc.astype(np.float32)
        sig = np.empty(a.shape[1], dtype=np.float32)
        _k.window_scales_rows(a, lo, hi, rows, z0, zb, zc, self.noise_quantile,
                              self._q_scale / math.sqrt(2.0), self._q_scale,
                              self.robust_clutter, self.flat_level, self._pre_dk, self._zone,
                              self.noise_floor, sig, self._guess)
        self._sig_cache[c] = (sig, basis)
        return self._sig_cache[c]

    def _centre(self, g: int) -> int:
        st = self._noise_step
        return (g + st // 2) // st * st

    def _normalise(self, i0: int, i1: int) -> None:
        g = self._gidx
        # the rows [i0, i1) of the normalised and cleaned bins, written in place
        self._norm, out = self._rb["norm"].grow(i1 - i0)
        self._clean, clean = self._rb["clean"].grow(i1 - i0)
        cen = (g[i0:i1] + self._noise_step // 2) // self._noise_step * self._noise_step
        r = i0
        while r < i1:   # runs of bins sharing a window centre
            c = int(cen[r - i0])
            e = r + int(cen[r - i0:].searchsorted(c, side="right"))
            sig, basis = self._window(c)
            rows = clean[r - i0:e - i0]
            rows[...] = self._bins[r:e]
            if basis is not None:   # (what _project of a copy gives)
                rows[:, self._z0:self._z1] = self._clean_zone(
                    self._bins[r:e, self._z0:self._z1], basis)
            np.divide(rows, sig, out=out[r - i0:e - i0])
            r = e

    def _fit_bins(self, j0: int, j1: int) -> None:
        n = self._n_norm
        pos = np.ascontiguousarray(self._meta[:n, 0])
        # full-size index arrays (the kernel indexes by absolute bin): the
        # aperture and the prescreen window (restricted to the real distance)
        idx = np.zeros((4, n), dtype=np.int64)
        _k.scan_ranges(self._gidx, pos, j0, j1, self._wa, self._wp, self.prescreen_dx, idx)
        LO, HI, PLO, PHI = idx
        ns = self._ns or 0
        k_lo = max(int(math.ceil((self.t_surf + self.min_time) / self.dt)), 1)
        tmax = (ns - 2) * self.dt if self.max_time is None else min(
            self.t_surf + self.max_time, (ns - 2) * self.dt)
        k_hi = max(min(int(math.floor(tmax / self.dt)) + 1, ns - 1), k_lo)
        self._fit, out = self._rb["fit"].grow(j1 - j0)
        _k.hyperbola_scan(self._norm[:n], pos, LO, HI, j0, j1, self.velocities, self.widths,
                          self.t_surf, self.dt, k_lo, k_hi,
                          math.tan(math.radians(self.aperture_angle)), self.min_aperture,
                          self.max_aperture, PLO, PHI, self._pre_dk,
                          self.prescreen_threshold, 3, self.flat_penalty, out, self.nthreads)

    def _decide(self, i0: int, i1: int) -> dict[str, np.ndarray]:
        fit = self._fit
        g = self._gidx[: self._n_fit]
        pos = self._meta[: self._n_fit, 0]
        best = fit[:, 0]
        rows = []
        for j in range(i0, i1):
            b = best[j]
            if b < self.threshold or fit[j, 5] < self.min_fit_quality:
                continue
            if self.max_depth is not None and fit[j, 3] >= 0 and (
                    0.5 * self.velocities[int(fit[j, 3])] * fit[j, 7] > self.max_depth):
                continue
            lo = int(g.searchsorted(g[j] - self._wr, side="left"))
            hi = int(g.searchsorted(g[j] + self._wr, side="right"))
            dx = np.abs(pos[lo:hi] - pos[j])
            near = dx <= self.suppression_radius
            if self.suppression_time is not None:
                # an event at another depth is another object
                near &= np.abs(fit[lo:hi, 7] - fit[j, 7]) <= self.suppression_time
            if self.suppression_curve is not None:
                # ... unless it lies on the neighbour's own diffraction curve
                # (a limb of it) or below its flat top (the same object)
                nb = fit[lo:hi]
                vi = self.velocities[np.maximum(nb[:, 3], 0).astype(int)]
                wi = self.widths[np.maximum(nb[:, 4], 0).astype(int)]
                q = 2.0 * np.maximum(dx - wi, 0.0) / vi
                t_on = np.sqrt(nb[:, 7] ** 2 + q * q)
                near &= (np.abs(t_on - fit[j, 7]) <= self.suppression_curve) | (
                    dx <= np.maximum(wi, self.bin_size * 3))
            idx = np.arange(lo, hi)[near]
            # strongest in the window; ties go to the first bin
            if np.any(best[idx[idx < j]] >= b) or np.any(best[idx[idx > j]] > b):
                continue
            rows.append(j)
        if not rows:
            return _empty_alarms()
        r = np.asarray(rows)
        f = fit[r]
        v = self.velocities[f[:, 3].astype(int)]
        tau = f[:, 7]
        n_used = np.maximum(f[:, 6], 1.0)
        # mean amplitude along the curve, back in data units (noise scale of the apex)
        amp = f[:, 1] / np.sqrt(n_used)
        k = f[:, 2].astype(int)
        scale = np.abs(self._clean[r, k]) / np.maximum(np.abs(self._norm[r, k]), 1e-30)
        out = {
            "x": self._meta[r, 1].copy(),
            "y": self._meta[r, 2].copy(),
            "s": self._meta[r, 0].copy(),
            "depth": 0.5 * v * tau,
            "velocity": v,
            "score": f[:, 0].copy(),
            "time": (np.rint(self._meta[r, 3]).astype(np.int64) + np.int64(self._t_ref or 0)),
            "two_way_time": tau,
            "polarity": (np.sign(f[:, 1]) * self.reference_polarity).astype(np.int8),
            "fit_quality": f[:, 5].copy(),
            "amplitude": amp * scale,
            "width": self.widths[f[:, 4].astype(int)],
        }
        return out

    def _trim(self) -> None:
        """Drop bins no window of an undecided bin can reach (once per 16
        bins decided: keeping more bins for a while changes nothing but
        memory, and a live call decides ~2)."""
        if self._n_done == 0 or self._n_done < self._trim_next:
            return
        self._trim_next = self._n_done + 16
        g = self._gidx
        keep_from_g = int(g[self._n_done - 1]) - 2 * (self._wn + self._wa + self._wr) - 4
        keep_from_g = min(keep_from_g, int(g[self._n_norm - 1]) - self._wc
                          - self._noise_step - 2) if self._n_norm else keep_from_g
        cut = int(g.searchsorted(keep_from_g, side="left"))
        cut = min(cut, self._n_done, self._n_fit, self._n_norm)
        if cut <= 0:
            return
        for c in [c for c in self._sig_cache if c < keep_from_g]:
            del self._sig_cache[c]
        self._bins = self._rb["bins"].drop(cut)
        self._meta = self._rb["meta"].drop(cut)
        self._gidx = self._rb["gidx"].drop(cut)
        self._norm = self._rb["norm"].drop(cut)
        self._clean = self._rb["clean"].drop(cut)
        self._fit = self._rb["fit"].drop(cut)
        self._n_norm -= cut
        self._n_fit -= cut
        self._n_done -= cut
        self._trim_next -= cut


def detect_gpr(traces: ArrayLike, x: ArrayLike, y: ArrayLike | None = None,
               time: ArrayLike | None = None, *, sample_interval: float,
               **params: Any) -> dict[str, np.ndarray]:
    """Detect diffraction hyperbolae in one whole background-removed B-scan.

    Same as ``GPRDetector(sample_interval, **params)`` fed the whole line in one
    :meth:`~GPRDetector.process` call followed by :meth:`~GPRDetector.finish`.

    Parameters
    ----------
    traces : array_like, shape (n_traces, n_samples)
        Background-removed traces of one line.
    x, y : array_like, shape (n_traces,)
        Trace positions, m (``y`` optional).
    time : array_like of int64, optional
        UTC ns of each trace.
    sample_interval : float
        Seconds between samples.
    **params
        Other :class:`GPRDetector` parameters.

    Returns
    -------
    dict of ndarray
        Alarm columns (:data:`ALARM_COLUMNS`), in order along the line.
    """
    det = GPRDetector(sample_interval, **params)
    a = det.process(traces, x, y, time)
    b = det.finish()
    return {c: np.concatenate([a[c], b[c]]) for c in ALARM_COLUMNS}
