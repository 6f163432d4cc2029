"""Features of alarms for the mine/clutter classifier (:mod:`demine.classify`).

Every alarm of a recording (its ``alarms`` table, or a table the detectors just
produced) is described by physically meaningful numbers that are normalised so
that they carry over between instruments, gains and soils:

**EMI** (metal detector; for alarms of ``emi`` streams, and evaluated at the
position of every GPR alarm when both sensors are present).  Readings around
the alarm are split into *near* frames (within ``near_radius`` of it) and a
*ring* of frames further out (``ring``), both within ``time_window`` seconds
of the alarm (the passes of a sweep over it).  The ring's per-gate median is
the local soil and drift background; the ring's per-gate robust spread is the
local noise.  For every near frame the compiled kernel
``demine._features.decay_frames`` fits the background-subtracted decay curve
against gate time in log-log (slope and curvature: the shape of the
Pasion-Oldenburg law ``L(t) = k t^-beta exp(-t/gamma)``), counts the gates
above noise, measures the polarity and the noise-normalised amplitude.

=================  ============================================================
emi_snr_log        log10 of the peak noise-normalised amplitude
emi_slope          mean log-log decay slope of the strongest frames (-beta)
emi_slope_sd       its spread over those frames (shape changing with aspect)
emi_curv           log-log curvature (the exp(-t/gamma) bend: thin or small)
emi_valid_frac     fraction of gates above noise
emi_polarity       sum r / sum |r| (negative: less magnetic than soil)
emi_po_beta        Pasion-Oldenburg beta fitted to the stacked curve
emi_po_gamma_log   log10(gamma / last gate time) of that fit (clipped to +-2)
emi_t_last_log     log10 of the last gate time above noise, s (stacked curve)
emi_halfmax_r      radius (m) of the half-maximum footprint (depth + size)
emi_aniso          minor/major axis ratio of that footprint
emi_moment_log     emi_snr_log + 6 log10(halfmax_r): dipole strength estimate
emi_soil_slope     log-log decay slope of the local background (soil)
emi_soil_level     log10(|background| / noise) (soil strength)
emi_det_score      log10 of the detector's score
emi_dip_r2         second / first principal polarizability of the fitted dipole
emi_dip_r3         third / first (both ~1 for a compact piece, small for a plate
                   or a rod; summed over the gates)
emi_dip_late       mean of the second and third / the first over the last gates
emi_dip_slope1     log-log decay slope of the first principal polarizability
emi_dip_slope23    the same of the second and third together
emi_dip_fit        fraction of the readings' energy the dipole explains
emi_dip_depth      fitted depth below the ground, m
=================  ============================================================

The ``emi_dip_*`` features invert the readings for an induced dipole, the
standard model of metal-detector discrimination: the monostatic response of a
coil at ``r`` to an object at ``r0`` is ``h^T M(t) h``, ``h`` the coil's field
per ampere at the object (:func:`demine._coil.loop_field`, the coil radius from
the stream's calibration, else 0.12 m; the head height from the stream's ``z``
when it holds heights within 1 m, else 5 cm) and ``M(t)`` the object's
symmetric polarizability tensor.  For a trial position the six tensor elements
of every gate are a linear least-squares fit (noise-weighted) to the readings
within ``dipole_radius`` of the alarm that stand above the noise; the position
(within 0.15 m of the alarm, 0-0.5 m deep) is found by a grid around the alarm
and a shrinking pattern search on the misfit.  The principal polarizabilities
of the fitted tensor tell the metal's shape, which the amplitude of one reading
does not: a fuze's compact steel parts respond alike along every axis, a
fragment's plate or a nail's rod along one.  The search is local: an alarm a
centimetre or more off a compact piece usually ends in a deeper position with
negative ratios (a search that finds the true position scored worse in the
classifier's cross-validation, docs/classify.md), and readings of a single
straight pass leave the tensor across it undetermined.

**GPR** (for alarms of ``gpr`` streams).  The stream is run through the
default GPR chain (dewow, background removal, band-pass, gain); the alarm's
apex is the trace nearest its time and the sample at the surface time plus
``2 depth / velocity``, refined to the strongest sample within half a period.

=================  ============================================================
gpr_amp_log        log10(|apex| / local noise)
gpr_polarity       apex sign relative to the direct wave (+1 like metal/water)
gpr_fit            semblance along the fitted hyperbola (1 perfect, ~1/n noise)
gpr_width          along-track width (m) where the hyperbola keeps half the apex
gpr_depth          alarm depth, m
gpr_vel            alarm velocity / c (1/sqrt(eps_r))
gpr_spec_ratio     spectral centroid of the apex wavelet / the stream's centroid
gpr_eoh0..5        edge-orientation histogram of the patch (6 bins, sum 1)
gpr_body_refl      signed reflectivity of the body under the point (see below)
gpr_body_pos_log   log10 SNR of the strongest low-permittivity (plastic, air) event
                   dominating its traces, within 0.1 m of the point (-1 = none)
gpr_body_neg_log   the same for high-permittivity (metal, water, wet stone) events
gpr_body_depth     depth (m) below the ground bounce of the strongest event
gpr_body_pos_frac  fraction of those points where a low-permittivity event
                   dominates (SNR > 10): the apparent size of a plastic body
gpr_body_pos_out_log, gpr_body_neg_out_log  the same as pos/neg 0.2 m away
gpr_det_score      log10 of the detector's score
=================  ============================================================

The ``gpr_body_*`` features come from the *raw* traces (not the processing
chain, whose background removal also removes the flat top of a mine-sized
disc): the traces passing within ``body_radius`` of the point, minus a
background fitted on a ring of traces 0.25-0.6 m away (per sample, a quadratic
in the head height, so that the ground bounce moving with the head height
cancels), are averaged; the residual is correlated with the direct wave's
wavelet, and the strongest correlation within ``max_depth`` below the ground
bounce gives the event's sign relative to the direct wave (positive: a body of
lower permittivity than the soil, like a plastic mine case; negative: metal,
water or a higher-permittivity stone) and its amplitude over the direct
wave's (``gpr_body_refl``: a reflectivity that carries over between radars).
The search is repeated at points 0.1 and 0.2 m around the alarm (an EMI
alarm is located to a few cm, and the metal that rang can lie beside the
mine body within the alarm's halo): at every point the event dominating the
residual is taken; the positive and negative evidence are the strongest such
events over the alarm and its 0.1 m ring (reflectivity and depth from the
strongest of them), and separately over the 0.2 m ring.

**Fused.**  An EMI alarm with radar present gets the distance to the nearest
GPR alarm (``fus_gpr_dist``, capped at 1 m) and the GPR features of the
strongest reflection under it (``fus_gpr_*``, from the trace passing nearest:
the radar tells whether the metal sits in a mine-sized, low-permittivity body);
a GPR alarm with a metal detector present gets the distance to the nearest EMI
alarm and the EMI features evaluated at its position (``fus_emi_*``: is there
metal, and what kind).

**Neighbourhood** (``nb_*``, :func:`neighbourhood_features`).  A deminer
investigates a disc around every alarm, and test and evaluation credits an
alarm with any mine within its halo.  Every alarm also gets what the other
alarms within its investigation disc show: how many alarms of its own sensor
and how much stronger the strongest is (a stronger alarm beside it covers the
same ground), the strongest radar evidence of a low-permittivity body under
them, and the number, strongest score, body evidence and nearest distance of
the other sensor's alarms.  They are computed from the alarms' own features
(no raw data), so a cache of the base features (:data:`BASE_FEATURE_SETS`)
serves any disc radius; a model records the radius it was trained with.

Feature sets are named by the alarm's sensor and the sensors available:
``"emi"``, ``"emi+gpr"``, ``"gpr"``, ``"gpr+emi"`` (:data:`FEATURE_SETS`).
Missing values are NaN (the classifier handles them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _features as _k
from ._coil import loop_field
from ._params import real_array
from ._params import real_scalar as _scalar
from .errors import ConfigError

__all__ = [
    "BASE_FEATURE_SETS", "EMI_FEATURES", "FEATURE_SETS", "GPR_FEATURES", "NEIGHBOUR_RADIUS",
    "AlarmFeatures", "DIPOLE_FEATURES", "EMIContext", "GPRContext", "alarm_features",
    "decay_frames", "dipole_features", "dipole_fit",
    "feature_set_name", "neighbourhood_features",
]

C0 = 299_792_458.0
#: Version of the feature definitions (part of cache keys; bump on any change).
FEATURES_VERSION = 8

#: the induced-dipole fit's features (:func:`dipole_features`), the last EMI features
DIPOLE_FEATURES: tuple[str, ...] = (
    "emi_dip_r2", "emi_dip_r3", "emi_dip_late", "emi_dip_slope1", "emi_dip_slope23",
    "emi_dip_fit", "emi_dip_depth")
EMI_FEATURES: tuple[str, ...] = (
    "emi_snr_log", "emi_slope", "emi_slope_sd", "emi_curv", "emi_valid_frac", "emi_polarity",
    "emi_po_beta", "emi_po_gamma_log", "emi_t_last_log", "emi_halfmax_r", "emi_aniso",
    "emi_moment_log", "emi_soil_slope", "emi_soil_level", "emi_det_score",
) + DIPOLE_FEATURES
GPR_FEATURES: tuple[str, ...] = (
    "gpr_amp_log", "gpr_polarity", "gpr_fit", "gpr_width", "gpr_depth", "gpr_vel",
    "gpr_spec_ratio", "gpr_eoh0", "gpr_eoh1", "gpr_eoh2", "gpr_eoh3", "gpr_eoh4", "gpr_eoh5",
    "gpr_body_refl", "gpr_body_pos_log", "gpr_body_neg_log", "gpr_body_depth",
    "gpr_body_pos_frac", "gpr_body_pos_out_log", "gpr_body_neg_out_log",
    "gpr_det_score",
)
BODY_FEATURES: tuple[str, ...] = (
    "gpr_body_refl", "gpr_body_pos_log", "gpr_body_neg_log", "gpr_body_depth",
    "gpr_body_pos_frac", "gpr_body_pos_out_log", "gpr_body_neg_out_log")
FUSED_EMI: tuple[str, ...] = ("fus_gpr_dist",) + tuple(
    "fus_" + f for f in GPR_FEATURES if f not in ("gpr_det_score", "gpr_vel"))
FUSED_GPR: tuple[str, ...] = ("fus_emi_dist",) + tuple(
    "fus_" + f for f in EMI_FEATURES if f != "emi_det_score")

#: Feature names of every feature set computed from the raw streams at the alarm
#: (what :func:`alarm_features` computes per alarm before the neighbourhood).
BASE_FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "emi": EMI_FEATURES,
    "emi+gpr": EMI_FEATURES + FUSED_EMI,
    "gpr": GPR_FEATURES,
    "gpr+emi": GPR_FEATURES + FUSED_GPR,
}
#: Radius (m) of the investigation disc around an alarm (neighbourhood features).
NEIGHBOUR_RADIUS = 0.25
#: Neighbourhood features from the other alarms of the same sensor within the disc.
NB_OWN: tuple[str, ...] = ("nb_own_n", "nb_own_gain")
#: ... and the radar body evidence found under them.
NB_BODY: tuple[str, ...] = ("nb_own_body_pos",)
#: Neighbourhood features from the alarms of the other sensor within the disc.
NB_OTHER: tuple[str, ...] = ("nb_oth_n", "nb_oth_strength", "nb_oth_body_pos", "nb_oth_dist")
#: Feature names of every feature set.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "emi": EMI_FEATURES + NB_OWN,
    "emi+gpr": EMI_FEATURES + FUSED_EMI + NB_OWN + NB_BODY + NB_OTHER,
    "gpr": GPR_FEATURES + NB_OWN + NB_BODY,
    "gpr+emi": GPR_FEATURES + FUSED_GPR + NB_OWN + NB_BODY + NB_OTHER,
}
#: Per set: the column that measures an alarm's strength, and its radar body evidence.
_STRENGTH = {"emi": "emi_snr_log", "emi+gpr": "emi_snr_log", "gpr": "gpr_det_score",
             "gpr+emi": "gpr_det_score"}
_BODY = {"emi": None, "emi+gpr": "fus_gpr_body_pos_log", "gpr": "gpr_body_pos_log",
         "gpr+emi": "gpr_body_pos_log"}
#: positive floors of noise levels, for all-zero data only (the floors that
#: matter are relative to the data, so features do not depend on its unit)
_TINY = float(np.finfo(np.float64).tiny)
_TINY32 = float(np.finfo(np.float32).tiny)
_NONE = -5.0  # value of a "strongest neighbour" feature when the disc holds none
_EOH_BINS = 6


def _real(where: str, name: str, values: Any) -> NDArray[np.float64]:
    """``values`` as float64, not copied when already so (:func:`real_array`)."""
    return real_array(where, name, values, copy=False)


def feature_set_name(kind: str, sensors: set[str] | frozenset[str]) -> str:
    """Name of the feature set of an alarm of sensor ``kind`` given the ``sensors`` present."""
    other = {"emi": "gpr", "gpr": "emi"}.get(kind)
    if other is None:
        raise ConfigError(f"no features for alarms of kind {kind!r} (emi or gpr)")
    return f"{kind}+{other}" if other in sensors else kind


def decay_frames(resid: ArrayLike, gate_times: ArrayLike, noise: ArrayLike,
                 snr: float = 2.0) -> NDArray[np.float64]:
    """Per-frame decay descriptors of background-subtracted EMI readings.

    Parameters
    ----------
    resid : array_like, shape (n, gates)
        Readings minus the local background.
    gate_times : array_like, shape (gates,)
        Gate times, s (positive).
    noise : array_like, shape (gates,)
        Noise level per gate (positive).
    snr : float
        A gate takes part in the fits when its residual exceeds ``snr * noise``.

    Returns
    -------
    ndarray, shape (n, 6)
        Columns: noise-normalised amplitude, log-log slope, log-log curvature,
        fraction of gates above noise, polarity, log of the last valid gate
        time (see :mod:`demine._features`).  A reading with a gate that is not
        finite (missing) gives a row of NaN.
    """
    r = np.ascontiguousarray(_real("decay_frames", "readings", resid))
    if r.ndim != 2 or r.shape[1] == 0:
        raise ConfigError(f"decay_frames: readings must be (n, gates) with gates >= 1, got "
                          f"shape {r.shape}")
    t = np.ascontiguousarray(_real("decay_frames", "gate times", gate_times)).reshape(-1)
    nz = np.ascontiguousarray(_real("decay_frames", "noise levels", noise)).reshape(-1)
    if t.size != r.shape[1] or nz.size != r.shape[1]:
        raise ConfigError(f"decay_frames: {r.shape[1]} gates but {t.size} gate times and "
                          f"{nz.size} noise levels")
    if not (np.all(np.isfinite(t) & (t > 0)) and np.all(np.isfinite(nz) & (nz > 0))):
        raise ConfigError("decay_frames: gate times and noise levels must be positive and "
                          "finite")
    snr = _scalar("decay_frames", "snr", snr)
    if not (math.isfinite(snr) and snr >= 0):
        raise ConfigError(f"decay_frames: snr must be a finite number >= 0, got {snr}")
    out = np.empty((r.shape[0], 6), dtype=np.float64)
    _k.decay_frames(r, np.log(t), nz, snr, out)
    # (the kernel would fit the other gates and give a NaN amplitude beside a
    # slope and a polarity of 0: a row describing no reading)
    out[~np.isfinite(r).all(axis=1)] = np.nan
    return out


# --------------------------------------------------------------------------
# EMI
# --------------------------------------------------------------------------

#: dipole fit: readings whose largest gate exceeds this many noise levels ...
_DIP_SNR = 3.0
#: ... at least this many of them, at most this many (evenly spread)
_DIP_MIN = 12
_DIP_MAX = 400


def _heights(stream: Any, z: np.ndarray) -> np.ndarray:
    """A stream's ``z`` as heights above the ground (NaN where it holds
    altitudes instead: :meth:`demine.recording.StreamReader.heights`)."""
    heights = getattr(stream, "heights", None)
    return heights(z) if callable(heights) else np.asarray(z, dtype=np.float64)


#: head height assumed when the stream has none, m
_NOMINAL_HEIGHT = 0.05
#: the fitted position stays within this distance of the alarm (m) and depth range (m)
_DIP_REACH = 0.15
_DIP_DEPTHS = (-0.03, 0.5)
#: below this ratio of the smallest to the largest singular value of the fit's
#: (column-scaled) design, the readings do not determine the whole tensor
_DIP_COND = 0.01


def _dipole_design(coil_radius: float, cx: np.ndarray, cy: np.ndarray, height: np.ndarray,
                   x0: float, y0: float, depth: float) -> np.ndarray:
    """Rows ``(hx^2, hy^2, hz^2, 2 hx hy, 2 hx hz, 2 hy hz)``: the coil's field at
    an object at (x0, y0, depth) for coil centres (cx, cy) at ``height``, so
    that a reading is the row times the six elements of the tensor."""
    dx, dy = x0 - cx, y0 - cy
    rho = np.hypot(dx, dy)
    hr, hz = loop_field(coil_radius, rho, -(height + depth))  # the object is below the coil
    inv = np.divide(hr, rho, out=np.zeros_like(hr), where=rho > 0)
    hx, hy = inv * dx, inv * dy
    return np.column_stack([hx * hx, hy * hy, hz * hz, 2 * hx * hy, 2 * hx * hz, 2 * hy * hz])


def dipole_fit(data: ArrayLike, cx: ArrayLike, cy: ArrayLike, height: ArrayLike,
               coil_radius: float, ax: float, ay: float
               ) -> tuple[float, NDArray[np.float64], tuple[float, float, float]]:
    """Fit an induced dipole to monostatic coil readings.

    Parameters
    ----------
    data : array_like, shape (n, gates)
        Readings minus the background, each gate divided by its noise level
        (the fit weighs them so).
    cx, cy, height : array_like, shape (n,)
        Coil centre (m) and its height above the ground (m) per reading.
    coil_radius : float
        Coil radius, m.
    ax, ay : float
        Where to start: the fitted object stays within 0.15 m of it.

    Returns
    -------
    misfit : float
        Sum of squared residuals (in noise units).
    tensor : ndarray, shape (6, gates)
        ``Mxx, Myy, Mzz, Mxy, Mxz, Myz`` per gate, in the data's units times
        m^2 (the coil's field per ampere is in 1/m).
    position : tuple of float
        Object x, y (m) and depth below the ground (m).
    """
    D = _real("dipole_fit", "readings", data)
    cx, cy = _real("dipole_fit", "cx", cx), _real("dipole_fit", "cy", cy)
    h = _real("dipole_fit", "height", height)
    if D.ndim != 2 or not (cx.shape == cy.shape == h.shape == D.shape[:1]):
        raise ConfigError(f"dipole_fit: readings must be (n, gates) with n positions and "
                          f"heights, got {D.shape}, {cx.shape}, {cy.shape}, {h.shape}")
    coil_radius = _scalar("dipole_fit", "coil radius", coil_radius)
    if not (math.isfinite(coil_radius) and coil_radius > 0):
        raise ConfigError(f"dipole_fit: the coil radius must be a positive finite number (m), "
                          f"got {coil_radius}")
    if not (np.all(np.isfinite(D)) and np.all(np.isfinite(cx)) and np.all(np.isfinite(cy))
            and np.all(np.isfinite(h))):
        raise ConfigError("dipole_fit: readings, positions and heights must be finite")
    ax, ay = _scalar("dipole_fit", "ax", ax), _scalar("dipole_fit", "ay", ay)
    if not (math.isfinite(ax) and math.isfinite(ay)):
        raise ConfigError(f"dipole_fit: the start position (ax, ay) must be finite, got "
                          f"({ax}, {ay})")
    total = float(np.sum(D * D))

    def solve(p: tuple[float, float, float]) -> tuple[float, np.ndarray]:
        G = _dipole_design(coil_radius, cx, cy, h, *p)
        scale = np.sqrt(np.sum(G * G, axis=0))
        scale[scale == 0] = 1.0
        Gs = G / scale
        coef, *_ = np.linalg.lstsq(Gs.T @ Gs, Gs.T @ D, rcond=1e-10)
        misfit = total - float(np.sum(coef * (Gs.T @ D)))
        return misfit, coef / scale[:, None]

    lo = np.array([ax - _DIP_REACH, ay - _DIP_REACH, _DIP_DEPTHS[0]])
    hi = np.array([ax + _DIP_REACH, ay + _DIP_REACH, _DIP_DEPTHS[1]])
    best, best_p = math.inf, (ax, ay, 0.05)
    for dep in np.linspace(0.0, 0.32, 9):
        for ox in (-0.06, 0.0, 0.06):
            for oy in (-0.06, 0.0, 0.06):
                p = (ax + ox, ay + oy, float(dep))
                m, _ = solve(p)
                if m < best:
                    best, best_p = m, p
    step = np.array([0.03, 0.03, 0.02])
    for _ in range(5):  # shrinking pattern search around the best point
        centre = np.array(best_p)
        for ox in (-1, 0, 1):
            for oy in (-1, 0, 1):
                for oz in (-1, 0, 1):
                    if ox == oy == oz == 0:
                        continue
                    p = tuple(np.clip(centre + step * (ox, oy, oz), lo, hi).tolist())
                    m, _ = solve(p)
                    if m < best:
                        best, best_p = m, p
        step = step / 2
    misfit, coef = solve(best_p)
    return misfit, coef, best_p


def dipole_features(data: ArrayLike, noise: ArrayLike, gate_times: ArrayLike, cx: ArrayLike,
                    cy: ArrayLike, height: ArrayLike, coil_radius: float, ax: float,
                    ay: float) -> dict[str, float]:
    """The ``emi_dip_*`` features of noise-normalised readings (:func:`dipole_fit`).

    Where the readings do not determine the whole tensor at the fitted
    position (the smallest singular value of the column-scaled design below
    ``_DIP_COND`` of the largest: one pass over the object), the ratios, the
    late ratio and the minor values' decay are NaN and the dominant decay is
    taken from the determined part.

    Parameters
    ----------
    data : array_like, shape (n, gates)
        Readings minus the background, each gate divided by its noise level.
        Readings that are not all finite give NaN features.
    noise : array_like, shape (gates,)
        Noise level per gate (positive), to give the tensor the data's units.
    gate_times : array_like, shape (gates,)
        Gate times, s (positive).
    cx, cy, height, coil_radius, ax, ay
        As for :func:`dipole_fit`.

    Returns
    -------
    dict
        The :data:`DIPOLE_FEATURES` (NaN where undetermined).
    """
    where = "dipole_features"
    D = _real(where, "readings", data)
    nz = _real(where, "noise levels", noise)
    gt = _real(where, "gate times", gate_times)
    if D.ndim != 2:
        raise ConfigError(f"{where}: readings must be (n, gates), got shape {D.shape}")
    n, ng = D.shape
    if nz.shape != (ng,) or gt.shape != (ng,):
        raise ConfigError(f"{where}: readings of {ng} gates need {ng} noise levels and {ng} "
                          f"gate times, got shapes {nz.shape} and {gt.shape}")
    pos = {k: _real(where, k, v) for k, v in (("cx", cx), ("cy", cy), ("height", height))}
    for k, v in pos.items():
        if v.shape != (n,):
            raise ConfigError(f"{where}: {n} readings need {n} values of {k}, got shape "
                              f"{v.shape}")
    if not (np.all(np.isfinite(nz) & (nz > 0)) and np.all(np.isfinite(gt) & (gt > 0))):
        raise ConfigError(f"{where}: noise levels and gate times must be positive and finite")
    r = _scalar(where, "coil radius", coil_radius)
    if not (math.isfinite(r) and r > 0):
        raise ConfigError(f"{where}: the coil radius must be a positive finite number (m), "
                          f"got {r}")
    if not (math.isfinite(_scalar(where, "ax", ax)) and math.isfinite(_scalar(where, "ay", ay))):
        raise ConfigError(f"{where}: the alarm position (ax, ay) must be finite, got "
                          f"({ax}, {ay})")
    out = dict.fromkeys(DIPOLE_FEATURES, math.nan)
    total = float(np.sum(D * D))
    if total <= 0 or not np.isfinite(total):
        return out
    misfit, coef, pos = dipole_fit(D, cx, cy, height, coil_radius, ax, ay)
    # Readings from one pass (a single line, or a cart's line spacing wider
    # than the coil's reach) see the object from one side only: the six
    # elements are not all determined (on the line through the object, the
    # three with a y component drop out), and lstsq's minimum-norm answer
    # sets the missing part to zero (beside that line, to amplified noise),
    # which reads as a rod, or as nothing physical, whatever the object is
    # (a compact piece: ratios 0 and 0, or 0.92 and -0.38 5 cm beside the
    # line, for 0.9 and 0.9).  The features that compare principal
    # values (ratios, the late ratio, the minor values' decay) are then
    # unknown (NaN, as the model treats a missing value), not that arbitrary
    # answer; the dominant decay, the fit fraction and the depth stay, the
    # decay taken from the determined part of the tensor alone (the nearly
    # undetermined directions otherwise amplify the late gates' noise).
    G = _dipole_design(coil_radius, np.asarray(cx, dtype=np.float64),
                       np.asarray(cy, dtype=np.float64), np.asarray(height, dtype=np.float64),
                       *pos)
    gn = np.sqrt(np.sum(G * G, axis=0))
    gn[gn == 0] = 1.0
    U, sv, Vt = np.linalg.svd(G / gn, full_matrices=False)
    keep = sv >= _DIP_COND * sv[0] if sv[0] > 0 else np.zeros(sv.size, dtype=bool)
    determined = bool(keep.all())
    if not determined:
        coef = (Vt[keep].T @ ((U[:, keep].T @ D) / sv[keep, None])) / gn[:, None]
    coef = coef * nz[None, :]  # back to the data's units: the decay's true shape
    M = np.empty((gt.size, 3, 3))
    M[:, 0, 0], M[:, 1, 1], M[:, 2, 2] = coef[0], coef[1], coef[2]
    M[:, 0, 1] = M[:, 1, 0] = coef[3]
    M[:, 0, 2] = M[:, 2, 0] = coef[4]
    M[:, 1, 2] = M[:, 2, 1] = coef[5]
    w, V = np.linalg.eigh(M.sum(axis=0))
    V = V[:, np.argsort(-np.abs(w))]
    L = np.einsum("ia,gij,ja->ga", V, M, V)  # principal polarizabilities per gate
    if L[:, 0].sum() < 0:
        L = -L
    ls = L.sum(axis=0)
    if ls[0] <= 0:
        return out
    lt = np.log(gt)
    decays = [("emi_dip_slope1", L[:, 0])]
    if determined:
        out["emi_dip_r2"] = float(np.clip(ls[1] / ls[0], -1.0, 1.0))
        out["emi_dip_r3"] = float(np.clip(ls[2] / ls[0], -1.0, 1.0))
        k = max(1, gt.size // 4)
        late = L[-k:].sum(axis=0)
        if late[0] > 0:
            out["emi_dip_late"] = float(np.clip((late[1] + late[2]) / (2 * late[0]), -1.0, 1.5))
        decays.append(("emi_dip_slope23", L[:, 1] + L[:, 2]))
    for name, c in decays:
        ok = c > 0.05 * float(np.max(np.abs(c)))
        if np.count_nonzero(ok) >= 3:
            out[name] = float(np.clip(np.polyfit(lt[ok], np.log(c[ok]), 1)[0], -5.0, 2.0))
    out["emi_dip_fit"] = float(np.clip(1.0 - misfit / total, 0.0, 1.0))
    out["emi_dip_depth"] = float(pos[2])
    return out


@dataclass
class EMIContext:
    """An EMI stream held in memory for feature extraction."""

    samples: NDArray[np.float64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    time_s: NDArray[np.float64]
    gate_times: NDArray[np.float64]
    time_window: float = 20.0
    near_radius: float = 0.3
    ring: tuple[float, float] = (0.35, 0.8)
    #: head height above the ground per reading, m (NaN: unknown)
    height: NDArray[np.float64] | None = None
    #: coil radius, m
    coil_radius: float = 0.12
    #: the dipole fit uses readings within this distance of the alarm, m
    dipole_radius: float = 0.2

    @classmethod
    def from_stream(cls, stream: Any, profile: tuple[Mapping[str, Any], str] | None = None,
                    **kw: Any) -> EMIContext:
        """The context of a recorded EMI stream; ``profile`` (a calibration
        profile and where it came from, :func:`demine.process.load_profiles`)
        replaces what the recording says of the detector (coil radius, gate
        times), as ``demine detect --calibration`` does."""
        fields = ["samples", "x", "y", "time"]
        if "z" in getattr(stream, "field_names", ()):
            fields.append("z")
        d = stream.read(fields=fields)
        if "z" in d and "height" not in kw:
            # (the height above the ground: a GPS altitude is not one)
            kw["height"] = _heights(stream, d["z"])
        cal = dict(getattr(stream, "calibration", None) or {})
        gt = stream.gate_times
        if profile is not None:
            from .process import _stream_context, with_profile

            ctx, _ = with_profile(_stream_context(stream), stream, *profile)
            cal.update({k: ctx[k] for k in ("coil_radius",) if k in ctx})
            gt = ctx.get("gate_times", gt)
        a = cal.get("coil_radius")
        if ("coil_radius" not in kw and isinstance(a, (int, float)) and not isinstance(a, bool)
                and 0 < a < 5):
            kw["coil_radius"] = float(a)
        s = np.asarray(d["samples"], dtype=np.float64)
        if s.ndim != 2 or s.shape[1] < 2:
            raise ConfigError(f"stream {stream.name!r}: EMI features need at least 2 gates")
        if gt is None or len(gt) != s.shape[1] or not np.all(np.asarray(gt) > 0):
            # unknown gates: assume log-spaced from 10 us to 1 ms (a typical PI detector)
            gt = np.geomspace(1e-5, 1e-3, s.shape[1])
        return cls._make(s, d["x"], d["y"], d["time"], gt, **kw)

    @classmethod
    def _make(cls, samples: ArrayLike, x: ArrayLike, y: ArrayLike, time_ns: ArrayLike,
              gate_times: ArrayLike, **kw: Any) -> EMIContext:
        t = np.asarray(time_ns, dtype=np.int64)
        t0 = t[0] if t.size else 0
        ts = (t - t0) / 1e9
        order = np.argsort(ts, kind="stable")
        h = kw.pop("height", None)
        if h is not None:
            h = np.broadcast_to(np.asarray(h, dtype=np.float64), t.shape) if np.ndim(h) == 0 \
                else np.asarray(h, dtype=np.float64).reshape(-1)
            if h.size != t.size:
                raise ConfigError(f"EMI features: {h.size} head heights for {t.size} readings")
            h = h[order]
        s = np.asarray(samples, dtype=np.float64)[order]
        x = np.asarray(x, dtype=np.float64)[order]
        y = np.asarray(y, dtype=np.float64)[order]
        if s.ndim == 2:  # a reading with a missing gate takes part in nothing
            bad = ~np.all(np.isfinite(s), axis=1)
            if bad.any():
                x, y = np.where(bad, np.nan, x), np.where(bad, np.nan, y)
        return cls(s, x, y, ts[order], np.asarray(gate_times, dtype=np.float64), height=h,
                   **kw)

    def _t_rel(self, time_ns: int, t0_ns: int) -> float:
        return (int(time_ns) - int(t0_ns)) / 1e9

    def features_at(self, ax: float, ay: float, t: float) -> dict[str, float]:
        """EMI features of the anomaly at (ax, ay), around relative time ``t`` (s)."""
        out = dict.fromkeys(EMI_FEATURES, math.nan)
        if not (math.isfinite(ax) and math.isfinite(ay)):
            return out
        lo = np.searchsorted(self.time_s, t - self.time_window)
        hi = np.searchsorted(self.time_s, t + self.time_window)
        if not math.isfinite(t) or hi - lo < 10:
            lo, hi = 0, self.time_s.size
        d = np.hypot(self.x[lo:hi] - ax, self.y[lo:hi] - ay)
        ring = (d >= self.ring[0]) & (d <= self.ring[1])
        near = d <= self.near_radius
        if np.count_nonzero(ring) < 20:  # widen to the whole stream
            lo, hi = 0, self.time_s.size
            d = np.hypot(self.x - ax, self.y - ay)
            ring = (d >= self.ring[0]) & (d <= self.ring[1])
            near = d <= self.near_radius
        if np.count_nonzero(near) < 3:
            return out
        S = self.samples[lo:hi]
        if np.count_nonzero(ring) >= 5:
            bgf = S[ring]
        else:
            bgf = (S[d > self.near_radius] if np.count_nonzero(d > self.near_radius) >= 5
                   else S[np.isfinite(d)])
        bg = np.median(bgf, axis=0)
        noise = 1.4826 * np.median(np.abs(bgf - bg), axis=0)
        # floors relative to the data (never an absolute level: detectors record
        # in volts, millivolts or counts, and a reading of 1e-12 V is not noise)
        floor = 1e-3 * float(np.max(np.abs(bg))) if bg.size else 0.0
        noise = np.maximum(noise, max(floor, 1e-6 * float(np.max(noise)) if noise.size else 0.0,
                                      _TINY))
        resid = S[near] - bg
        f = decay_frames(resid, self.gate_times, noise)
        amp = f[:, 0]
        amax = float(amp.max())
        out["emi_snr_log"] = math.log10(max(amax, 1e-3))
        strong = amp >= 0.5 * amax
        w = amp[strong] ** 2
        if not w.sum() > 0:  # flat readings (a dead or unplugged sensor): nothing to describe
            return out
        sl = f[strong, 1]
        ok = np.isfinite(sl)
        if ok.any():
            ws = w[ok] / w[ok].sum()
            m = float(np.sum(ws * sl[ok]))
            out["emi_slope"] = m
            out["emi_slope_sd"] = float(np.sqrt(np.sum(ws * (sl[ok] - m) ** 2)))
            out["emi_curv"] = float(np.sum(ws * f[strong, 2][ok]))
        wn = w / w.sum()
        out["emi_valid_frac"] = float(np.sum(wn * f[strong, 3]))
        out["emi_polarity"] = float(np.sum(wn * f[strong, 4]))
        # stacked decay of the strongest frames
        stack = np.sum(resid[strong] * wn[:, None], axis=0)
        n_eff = 1.0 / float(np.sum(wn**2))
        snoise = noise / math.sqrt(max(n_eff, 1.0))
        valid = stack > 2.0 * snoise
        gt = self.gate_times
        if np.count_nonzero(valid) >= 3:
            tv, lv = gt[valid], np.log(stack[valid])
            A = np.column_stack([np.ones(tv.size), -np.log(tv), -tv / gt[-1]])
            coef, *_ = np.linalg.lstsq(A, lv, rcond=None)
            if coef[2] <= 0:
                coef2, *_ = np.linalg.lstsq(A[:, :2], lv, rcond=None)
                beta, inv_g = coef2[1], 0.0
            else:
                beta, inv_g = coef[1], coef[2]
            out["emi_po_beta"] = float(np.clip(beta, -5.0, 10.0))
            g_rel = 1.0 / inv_g if inv_g > 0 else 100.0
            out["emi_po_gamma_log"] = float(np.clip(math.log10(max(g_rel, 1e-2)), -2.0, 2.0))
        if valid.any():
            out["emi_t_last_log"] = math.log10(float(gt[np.nonzero(valid)[0][-1]]))
        # half-maximum footprint
        px, py = self.x[lo:hi][near][strong], self.y[lo:hi][near][strong]
        cx, cy = np.sum(wn * px), np.sum(wn * py)
        cxx = np.sum(wn * (px - cx) ** 2)
        cyy = np.sum(wn * (py - cy) ** 2)
        cxy = np.sum(wn * (px - cx) * (py - cy))
        ev = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
        ev = np.maximum(ev, 0.0)
        r = math.sqrt(float(ev.sum())) + 0.005
        out["emi_halfmax_r"] = r
        out["emi_aniso"] = math.sqrt(ev[0] / ev[1]) if ev[1] > 0 else 1.0
        out["emi_moment_log"] = out["emi_snr_log"] + 6.0 * math.log10(r)
        # local soil
        bpos = bg > 0
        if np.count_nonzero(bpos) >= 3:
            out["emi_soil_slope"] = float(np.polyfit(np.log(gt[bpos]), np.log(bg[bpos]), 1)[0])
        nb, nn = float(np.linalg.norm(bg)), float(np.linalg.norm(noise))
        if not nn > 0:  # (noise at the floor: its norm underflows)
            nscale = float(np.max(noise))
            nb, nn = float(np.linalg.norm(bg / nscale)), float(np.linalg.norm(noise / nscale))
        out["emi_soil_level"] = math.log10(max(nb / nn, 1e-3))
        # induced-dipole fit of the readings nearest the alarm
        dip = near & (d <= self.dipole_radius)
        dip[near] &= np.max(np.abs(resid) / noise, axis=1) > _DIP_SNR
        idx = np.flatnonzero(dip)
        if idx.size >= _DIP_MIN:
            if idx.size > _DIP_MAX:  # evenly over the passes, in time order
                idx = idx[np.linspace(0, idx.size - 1, _DIP_MAX).astype(np.intp)]
            h = _NOMINAL_HEIGHT
            if self.height is not None:
                hh = self.height[lo:hi][idx]
                ok = np.isfinite(hh) & (hh >= 0.0) & (hh <= 1.0)
                h = np.where(ok, hh, np.median(hh[ok]) if ok.any() else _NOMINAL_HEIGHT)
            out.update(dipole_features(
                (S[idx] - bg) / noise, noise, self.gate_times, self.x[lo:hi][idx],
                self.y[lo:hi][idx], np.broadcast_to(h, idx.shape), self.coil_radius, ax, ay))
        return out


# --------------------------------------------------------------------------
# GPR
# --------------------------------------------------------------------------


@dataclass
class GPRContext:
    """A processed GPR stream held in memory for feature extraction."""

    bscan: NDArray[np.float32]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    time_s: NDArray[np.float64]
    path: NDArray[np.float64]
    dt: float
    t_surface: float
    direct_sign: float
    centroid: float
    period_samples: int
    velocity: float = 0.1e9
    half_aperture: float = 0.25
    time_window: float = 20.0
    raw: NDArray[Any] | None = None
    height: NDArray[np.float64] | None = None
    body_radius: float = 0.06
    body_ring: tuple[float, float] = (0.3, 0.7)
    body_offsets: tuple[float, ...] = (0.1, 0.2)
    _bref: tuple[int, int, np.ndarray, float] | None = field(default=None, repr=False)

    @classmethod
    def from_stream(cls, stream: Any, chain: Any = "gpr_default",
                    profile: tuple[Mapping[str, Any], str] | None = None) -> GPRContext:
        """The context of a recorded radar stream through ``chain``;
        ``profile`` (a calibration profile and where it came from) replaces
        what the recording says of the radar (centre frequency, velocity...),
        as ``demine detect --calibration`` does."""
        from .process import _stream_context, load_chain, with_profile

        context = _stream_context(stream)
        try:
            velocity = json.loads(stream.attrs.get("calibration", "{}") or "{}").get("velocity")
        except (AttributeError, TypeError, ValueError):
            velocity = None
        if profile is not None:
            context, _ = with_profile(context, stream, *profile)
            velocity = profile[0].get("velocity", velocity)
        dt = context.get("sample_interval", stream.sample_interval)
        if dt is None or not dt > 0:
            raise ConfigError(f"stream {stream.name!r}: GPR features need the sample interval")
        fields = ["samples", "x", "y", "time"] + (["z"] if "z" in stream.field_names else [])
        d = stream.read(fields=fields)
        raw = np.asarray(d["samples"])
        ch = load_chain(chain)
        ch.configure(context)
        parts = []
        step = 16384
        for a in range(0, raw.shape[0], step):
            parts.append(np.asarray(ch.process(raw[a:a + step]), dtype=np.float32))
        parts.append(np.asarray(ch.finish(), dtype=np.float32))
        b = np.concatenate([p for p in parts if p.size] or
                           [np.zeros((0, raw.shape[1]), np.float32)])
        if b.shape[0] != raw.shape[0]:
            raise ConfigError(f"stream {stream.name!r}: GPR chain returned {b.shape[0]} of "
                              f"{raw.shape[0]} traces")
        ctx = cls._make(b, raw, d["x"], d["y"], d["time"], float(dt),
                        _heights(stream, d["z"]) if "z" in d else None)
        try:
            v = float(velocity) if velocity is not None else 0.0
        except (TypeError, ValueError):
            v = 0.0
        if math.isfinite(v) and 0.03e9 < v <= C0:
            ctx.velocity = v
        return ctx

    @classmethod
    def _make(cls, bscan: np.ndarray, raw: np.ndarray, x: ArrayLike, y: ArrayLike,
              time_ns: ArrayLike, dt: float, height: ArrayLike | None = None) -> GPRContext:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        t = np.asarray(time_ns, dtype=np.int64)
        ts = (t - (t[0] if t.size else 0)) / 1e9
        step = np.hypot(np.diff(x, prepend=x[:1]), np.diff(y, prepend=y[:1]))
        path = np.cumsum(np.nan_to_num(step))
        sub = np.asarray(raw[:: max(1, raw.shape[0] // 2000)], dtype=np.float64)
        mean = sub.mean(axis=0)
        mean = mean - np.median(mean)
        k = int(np.argmax(np.abs(mean)))
        direct_sign = 1.0 if mean[k] >= 0 else -1.0
        bscan = np.asarray(bscan, dtype=np.float32)
        bs = np.asarray(bscan[:: max(1, bscan.shape[0] // 2000)], dtype=np.float64)
        # whiten each time row by its robust noise level over the line, so the
        # gain of the processing chain (which grows with time) cancels out
        row = np.median(np.abs(bs), axis=0) / 0.6745 if bs.size else np.ones(bscan.shape[1])
        row = np.maximum(row, max(1e-6 * float(row.max()) if row.size else 0.0, _TINY32))
        bscan = bscan / row.astype(np.float32)[None, :]
        bs = bs / row[None, :]
        spec = np.mean(np.abs(np.fft.rfft(bs, axis=1)) ** 2, axis=0)
        freqs = np.fft.rfftfreq(bs.shape[1], dt)
        centroid = float(np.sum(freqs * spec) / max(np.sum(spec), 1e-300))
        if not centroid > 0:
            centroid = 1.0 / (20 * dt)
        period = max(4, int(round(1.0 / (centroid * dt))))
        h = None
        if height is not None:
            h = np.asarray(height, dtype=np.float64).reshape(-1)
            if h.size != x.size or not np.isfinite(h).any():
                h = None
        return cls(bscan, x, y, ts, path, float(dt),
                   k * float(dt), direct_sign, centroid, period, raw=raw, height=h)

    def features_at(self, t: float, depth: float, velocity: float,
                    ax: float = math.nan, ay: float = math.nan) -> dict[str, float]:
        """GPR features of the alarm whose apex trace is nearest relative time ``t``.

        ``ax``, ``ay``: the alarm's position for the ``gpr_body_*`` features
        (default: the apex trace's position).
        """
        n, ns = self.bscan.shape
        if n < 3 or not math.isfinite(t):
            return dict.fromkeys(GPR_FEATURES, math.nan)
        i0 = int(np.clip(np.searchsorted(self.time_s, t), 0, n - 1))
        v = velocity if (math.isfinite(velocity) and velocity > 0) else self.velocity
        z = depth if (math.isfinite(depth) and depth >= 0) else math.nan
        P = self.period_samples
        if math.isfinite(z):
            k0 = int(round((self.t_surface + 2 * z / v) / self.dt))
        else:
            k0 = int(np.argmax(np.abs(self.bscan[i0])))
        k0 = int(np.clip(k0, 0, ns - 1))
        # the detector's depth convention (surface time) need not be ours: take the
        # strongest whitened sample within two periods of the expected apex
        a, b = max(0, k0 - 2 * P), min(ns, k0 + 2 * P + 1)
        k0 = a + int(np.argmax(np.abs(self.bscan[i0, a:b])))
        out = self._describe(i0, k0, v)
        out["gpr_depth"] = z
        if not (math.isfinite(ax) and math.isfinite(ay)):
            ax, ay = float(self.x[i0]), float(self.y[i0])
        out.update(self.body_features(ax, ay, t))
        return out

    def _time_slice(self, t: float, n: int) -> tuple[int, int]:
        """Traces within ``time_window`` of relative time ``t`` (all ``n`` when
        ``t`` is unknown or fewer than 3 traces fall in it)."""
        if math.isfinite(t):
            lo = int(np.searchsorted(self.time_s, t - self.time_window))
            hi = int(np.searchsorted(self.time_s, t + self.time_window))
            if hi - lo >= 3:
                return lo, hi
        return 0, n

    def features_near(self, ax: float, ay: float, t: float,
                      max_offset: float = 0.08, max_depth: float = 0.35) -> dict[str, float]:
        """GPR features of the strongest reflection under the point (ax, ay).

        The trace passing nearest the point (within ``time_window`` s of ``t``
        and ``max_offset`` m of it) is searched from one wavelet period below
        the surface to ``max_depth`` for its strongest sample, which is then
        described like an alarm's apex (NaN features when no trace passes
        near enough).
        """
        n, ns = self.bscan.shape
        out = dict.fromkeys(GPR_FEATURES, math.nan)
        if n < 3 or not (math.isfinite(ax) and math.isfinite(ay)):
            return out
        lo, hi = self._time_slice(t, n)
        d = np.hypot(self.x[lo:hi] - ax, self.y[lo:hi] - ay)
        if not np.isfinite(d).any():
            return out
        j = int(np.nanargmin(d))
        if d[j] > max_offset:
            return out
        i0 = lo + j
        v = self.velocity
        P = self.period_samples
        a = int(round(self.t_surface / self.dt)) + P
        b = int(round((self.t_surface + 2 * max_depth / v) / self.dt)) + 1
        a, b = min(max(a, 0), ns - 1), min(max(b, a + 1), ns)
        k0 = a + int(np.argmax(np.abs(self.bscan[i0, a:b])))
        out = self._describe(i0, k0, v)
        out["gpr_depth"] = max(0.0, v * (k0 * self.dt - self.t_surface) / 2)
        out.update(self.body_features(ax, ay, t))
        return out

    def _body_reference(self) -> tuple[int, int, np.ndarray, float] | None:
        """Direct-wave sample, half-width, unit wavelet template and its self-correlation."""
        if self._bref is not None:
            return self._bref
        raw = self.raw
        if raw is None or raw.ndim != 2 or raw.shape[0] < 3 or raw.shape[1] < 8:
            return None
        sub = np.asarray(raw[:: max(1, raw.shape[0] // 2000)], dtype=np.float64)
        m = (sub - sub.mean(axis=1, keepdims=True)).mean(axis=0)
        m = m - m.mean()
        # the direct wave: peak of the envelope (a symmetric or antisymmetric pulse
        # alike), the template one period of the raw pulse either side of it
        spec = np.fft.rfft(m)
        pw = np.abs(spec) ** 2
        cen = float(np.sum(np.fft.rfftfreq(m.size) * pw) / max(float(np.sum(pw)), 1e-300))
        an = spec.copy()
        an[1:] *= 2.0
        kd = int(np.argmax(np.abs(np.fft.irfft(an, m.size) + 1j * np.fft.irfft(
            -1j * an, m.size))))
        h = int(np.clip(round(1.0 / cen), 2, m.size // 8)) if cen > 0 else 2
        if kd - h < 0 or kd + h + 1 > m.size:
            return None
        seg = m[kd - h:kd + h + 1]
        tap = seg * np.hanning(2 * h + 1)
        nt = float(np.linalg.norm(tap))
        if not nt > 0:
            return None
        tmpl = tap / nt
        self._bref = (kd, h, tmpl, float(np.dot(seg, tmpl)))
        return self._bref

    def body_features(self, ax: float, ay: float, t: float,
                      max_depth: float = 0.35) -> dict[str, float]:
        """``gpr_body_*`` features of the point (ax, ay) from the raw traces (module doc)."""
        out = dict.fromkeys(BODY_FEATURES, math.nan)
        ref = self._body_reference()
        n = self.x.size
        if ref is None or not (math.isfinite(ax) and math.isfinite(ay)):
            return out
        kd, h, tmpl, c_dw = ref
        lo, hi = self._time_slice(t, n)
        xs, ys = self.x[lo:hi], self.y[lo:hi]
        d0 = np.hypot(xs - ax, ys - ay)
        ring = (d0 >= self.body_ring[0]) & (d0 <= self.body_ring[1])
        if np.count_nonzero(ring) < 20:
            return out
        hz = self.height[lo:hi] if self.height is not None else None
        zr = hz[ring] if hz is not None else None
        h_ok = zr is not None and bool(np.all(np.isfinite(zr)))
        use_h = h_ok and float(np.std(zr)) > 1e-4
        zbar = float(np.mean(zr)) if h_ok else math.nan
        ns = self.raw.shape[1]
        k_gb = kd + (2.0 * zbar / C0 / self.dt if math.isfinite(zbar) else h)
        v = self.velocity
        a = kd + max(1, h // 2)
        b = int(min(ns - h - 1, round(k_gb + 2.0 * max_depth / v / self.dt)))
        if b - a < 3:
            return out
        s0, s1 = a - h, b + h

        def design(zz: np.ndarray | None, m: int) -> np.ndarray:
            if not use_h or zz is None:
                return np.ones((m, 1))
            dz = (zz - zbar) / 0.01
            return np.column_stack([np.ones(m), dz, dz * dz])

        def traces(idx: np.ndarray) -> np.ndarray:
            r = np.asarray(self.raw[idx], dtype=np.float64)
            return r[:, s0:s1] - r.mean(axis=1, keepdims=True)

        ri = np.nonzero(ring)[0]
        if ri.size > 800:  # a background needs no more; keeps the cost per alarm bounded
            ri = ri[np.linspace(0, ri.size - 1, 800).astype(np.intp)]
            zr = hz[ri] if hz is not None else None
        Y = traces(ri + lo)
        A = design(zr, Y.shape[0])
        try:
            coef = np.linalg.solve(A.T @ A + 1e-9 * np.eye(A.shape[1]), A.T @ Y)
        except np.linalg.LinAlgError:
            return out
        noise = 1.4826 * np.median(np.abs(Y - A @ coef), axis=0)
        noise = np.maximum(noise, max(1e-6 * float(np.max(noise)), _TINY))
        pts = [(ax, ay)]
        for ro in self.body_offsets:
            m = max(6, int(round(2 * math.pi * ro / 0.1)))
            pts += [(ax + ro * math.cos(q), ay + ro * math.sin(q))
                    for q in np.linspace(0, 2 * math.pi, m, endpoint=False)]
        # inner points: the alarm and the first ring; outer: the rest
        n_in = 1 + (max(6, int(round(2 * math.pi * self.body_offsets[0] / 0.1)))
                    if self.body_offsets else 0)
        best = np.zeros((2, 2))  # [inner, outer] x [positive, negative]
        seen = np.zeros(2, dtype=bool)
        n_pos, n_seen_in, best_abs = 0, 0, -1.0
        cand = np.nonzero(d0 <= max(self.body_offsets, default=0.0) + self.body_radius)[0]
        for j, (px, py) in enumerate(pts):
            near = cand[np.hypot(xs[cand] - px, ys[cand] - py) <= self.body_radius]
            if near.size < 3:
                continue
            g = 0 if j < n_in else 1
            seen[g] = True
            Rn = traces(near + lo) - design(hz[near] if hz is not None else None,
                                            near.size) @ coef
            r = Rn.mean(axis=0)
            s = noise / math.sqrt(near.size)
            c = np.correlate(r, tmpl, mode="valid")
            cs = np.sqrt(np.correlate(s * s, tmpl * tmpl, mode="valid"))
            w = c / cs
            k = int(np.argmax(np.abs(w)))
            sgn = 0 if w[k] > 0 else 1
            best[g, sgn] = max(best[g, sgn], abs(float(w[k])))
            if g == 0:
                n_seen_in += 1
                n_pos += int(w[k] > 10.0)
                if abs(float(w[k])) > best_abs:
                    best_abs = abs(float(w[k]))
                    out["gpr_body_refl"] = float(c[k] / c_dw) if c_dw != 0 else math.nan
                    out["gpr_body_depth"] = max(0.0, (a + k - k_gb) * self.dt * v / 2.0)
        if seen[0]:
            out["gpr_body_pos_log"] = math.log10(max(best[0, 0], 0.1))
            out["gpr_body_neg_log"] = math.log10(max(best[0, 1], 0.1))
            out["gpr_body_pos_frac"] = n_pos / n_seen_in
        if seen[1]:
            out["gpr_body_pos_out_log"] = math.log10(max(best[1, 0], 0.1))
            out["gpr_body_neg_out_log"] = math.log10(max(best[1, 1], 0.1))
        return out

    def _describe(self, i0: int, k0: int, v: float) -> dict[str, float]:
        out = dict.fromkeys(GPR_FEATURES, math.nan)
        n, ns = self.bscan.shape
        P = self.period_samples
        s0 = self.path[i0]
        lo = int(np.searchsorted(self.path, s0 - self.half_aperture))
        hi = int(np.searchsorted(self.path, s0 + self.half_aperture, side="right"))
        lo, hi = max(lo, 0, i0 - 400), min(hi, n, i0 + 401)
        if hi - lo < 3:
            return out
        apex = float(self.bscan[i0, k0])
        # local noise: robust spread of the rows around the apex over +-1 m of track
        nlo = int(np.searchsorted(self.path, s0 - 1.0))
        nhi = int(np.searchsorted(self.path, s0 + 1.0, side="right"))
        nlo, nhi = max(nlo, 0, i0 - 1600), min(nhi, n, i0 + 1601)
        rows = self.bscan[nlo:nhi, max(0, k0 - 3 * P):min(ns, k0 + 3 * P + 1)]
        q = float(np.percentile(np.abs(rows), 25)) / 0.6745 if rows.size else 0.0
        noise = max(q, 1e-6 * float(np.max(np.abs(rows))) if rows.size else 0.0, _TINY)
        out["gpr_amp_log"] = math.log10(max(abs(apex) / noise, 1e-3))
        out["gpr_polarity"] = float(np.sign(apex) * self.direct_sign)
        # hyperbola through the apex
        ds = self.path[lo:hi] - s0
        tau = k0 * self.dt - self.t_surface
        tk = self.t_surface + np.sqrt(max(tau, 0.0) ** 2 + (2 * ds / v) ** 2)
        kk = np.rint(tk / self.dt).astype(np.int64)
        win = max(1, P // 4)
        okk = (kk - win >= 0) & (kk + win < ns)
        if np.count_nonzero(okk) >= 3:
            idx = np.arange(lo, hi)[okk]
            offs = np.arange(-win, win + 1)
            G = self.bscan[idx[:, None], kk[okk][:, None] + offs[None, :]].astype(np.float64)
            num = float(np.sum(G.sum(axis=0) ** 2))
            den = float(G.shape[0] * np.sum(G**2))
            out["gpr_fit"] = num / den if den > 0 else 0.0
            along = np.abs(self.bscan[idx, kk[okk]]).astype(np.float64)
            keep = along >= 0.5 * abs(apex)
            if keep.any():
                out["gpr_width"] = float(np.ptp(ds[okk][keep]))
        out["gpr_vel"] = v / C0
        # spectrum of the apex wavelet
        a, b = max(0, k0 - P), min(ns, k0 + P + 1)
        seg = self.bscan[i0, a:b].astype(np.float64)
        if seg.size >= 4:
            spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n=4 * seg.size)) ** 2
            fr = np.fft.rfftfreq(4 * seg.size, self.dt)
            if spec.sum() > 0:
                out["gpr_spec_ratio"] = float(np.sum(fr * spec) / spec.sum()) / self.centroid
        # edge-orientation histogram of the patch (rows: time, columns: traces)
        patch = self.bscan[lo:hi, max(0, k0 - 2 * P):min(ns, k0 + 2 * P + 1)].T
        patch = _resample(np.asarray(patch, dtype=np.float64), 32, 32)
        h = np.zeros(_EOH_BINS)
        _k.orientation_histogram(patch, _EOH_BINS, h)
        if h.sum() > 0:
            h /= h.sum()
            for j in range(_EOH_BINS):
                out[f"gpr_eoh{j}"] = float(h[j])
        return out


def _resample(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resampling of a 2-D array to ``rows`` x ``cols`` (C-contiguous)."""
    if a.shape[0] < 2 or a.shape[1] < 2:
        return np.zeros((rows, cols))
    r = np.linspace(0, a.shape[0] - 1, rows)
    c = np.linspace(0, a.shape[1] - 1, cols)
    tmp = np.array([np.interp(c, np.arange(a.shape[1]), row) for row in a])
    out = np.array([np.interp(r, np.arange(a.shape[0]), col) for col in tmp.T]).T
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------
# Alarms of a recording
# --------------------------------------------------------------------------


@dataclass
class AlarmFeatures:
    """Features of the alarms of one recording.

    Attributes
    ----------
    alarms : dict of column arrays
        The alarms (as given or read).
    sets : dict
        Feature-set name -> ``(rows, X)``: indices into the alarms table and
        the feature matrix (columns :data:`FEATURE_SETS` [name]).
    sensors : frozenset of str
        Sensor kinds present in the recording ("emi", "gpr").
    source : str
        The recording.
    radius : float or None
        Radius of the investigation disc of the neighbourhood columns, or
        ``None`` when the matrices hold the base columns only
        (:data:`BASE_FEATURE_SETS`).
    """

    alarms: dict[str, np.ndarray]
    sets: dict[str, tuple[NDArray[np.intp], NDArray[np.float64]]] = field(default_factory=dict)
    sensors: frozenset[str] = frozenset()
    source: str = ""
    radius: float | None = None


def _str_col(v: Any, n: int) -> np.ndarray:
    a = np.asarray(v).reshape(-1)
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8")
    if a.dtype.kind == "O":
        return np.array([s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in a],
                        dtype=object).astype(str)
    return a.astype(str) if a.size == n else np.full(n, "")


def _alarm_kinds(rec: Any, alarms: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    streams = _str_col(alarms.get("stream", np.full(n, "")), n)
    labels = _str_col(alarms.get("label", np.full(n, "")), n)
    kinds = np.full(n, "", dtype=object)
    for i in range(n):
        s = streams[i]
        if s in rec.streams and rec.streams[s].kind in ("emi", "gpr"):
            kinds[i] = rec.streams[s].kind
        elif labels[i].startswith("emi"):
            kinds[i] = "emi"
        elif labels[i].startswith("gpr"):
            kinds[i] = "gpr"
    return kinds


def _nearest_time(ctx: EMIContext | GPRContext, x: float, y: float, t0: int,
                  default: int) -> int:
    """UTC ns of the reading of ``ctx`` nearest (x, y) (``default`` when none is placed)."""
    d2 = (ctx.x - x) ** 2 + (ctx.y - y) ** 2
    if not (math.isfinite(x) and math.isfinite(y)) or not np.isfinite(d2).any():
        return default
    return t0 + int(round(float(ctx.time_s[int(np.nanargmin(d2))]) * 1e9))


def alarm_features(recording: Any, alarms: Mapping[str, ArrayLike] | None = None, *,
                   radius: float | None = NEIGHBOUR_RADIUS,
                   calibration: Mapping[str, Any] | None = None) -> AlarmFeatures:
    """Features of every EMI and GPR alarm of a recording.

    Parameters
    ----------
    recording : str, Path or Recording
        The recording (raw streams are read; nothing is written).
    alarms : mapping of column arrays, optional
        Alarms (columns ``time``, ``stream``, ``x``, ``y``, ``depth``,
        ``velocity``, ``score``; one value per alarm, ``time`` in whole UTC
        nanoseconds; without a ``time`` column each alarm is described at the
        reading of its sensor's stream nearest to it); default the
        recording's alarms table.
    radius : float or None
        Radius (m) of the investigation disc of the neighbourhood features
        (:func:`neighbourhood_features`); ``None``: base columns only.

    Returns
    -------
    AlarmFeatures
    """
    from .process import load_profiles
    from .recording import Recording

    profiles = load_profiles(calibration)
    own = not hasattr(recording, "streams")
    rec = Recording(recording) if own else recording
    try:
        src = str(getattr(rec, "path", recording))
        for nm in profiles:
            if nm not in rec.streams:
                raise ConfigError(f"{src}: calibration given for stream {nm!r}, which it "
                                  f"does not have (streams: {', '.join(rec.streams)})")
        if alarms is None:
            alarms = rec.alarms
        if not isinstance(alarms, Mapping):
            raise ConfigError(f"{src}: alarms must be a mapping of column arrays, got "
                              f"{type(alarms).__name__}")
        al = {k: np.asarray(v) for k, v in alarms.items()}
        if "x" not in al or "y" not in al:
            raise ConfigError(f"{src}: alarms need columns 'x' and 'y'")
        n = al["x"].size
        for col in ("x", "y", "time", "depth", "velocity", "score", "stream", "label"):
            if col not in al:
                continue
            v = al[col]
            text = col in ("stream", "label")
            if col == "x" and v.ndim != 1:
                raise ConfigError(f"{src}: alarms column 'x' must be 1-D (one value per "
                                  f"alarm), got shape {v.shape}")
            if v.size != n or (v.ndim != 1 and not text):
                raise ConfigError(f"{src}: alarms column {col!r} must hold one value per alarm "
                                  f"({n}, as many as 'x'), got shape {v.shape}")
            if text:
                continue
            f = _real(src, f"alarms column {col!r}", v)
            if col == "time" and v.dtype.kind not in "iu":
                bad = ~np.isfinite(f)
                bad[~bad] = f[~bad] != np.round(f[~bad])
                if bad.any():
                    i = int(np.argmax(bad))
                    raise ConfigError(f"{src}: alarms column 'time' must hold whole UTC "
                                      f"nanoseconds, got {np.asarray(v[i]).item()!r} in row {i} "
                                      f"({int(bad.sum())} such value(s))")
        for col in ("depth", "velocity", "score"):
            al.setdefault(col, np.full(n, np.nan))
        no_time = "time" not in al  # (placed below by position)
        al.setdefault("time", np.zeros(n, dtype=np.int64))
        kinds = _alarm_kinds(rec, al, n)
        emi_names = [nm for nm, s in rec.streams.items() if s.kind == "emi"
                     and "samples" in s.field_names and len(s) > 0]
        gpr_names = [nm for nm, s in rec.streams.items() if s.kind == "gpr"
                     and "samples" in s.field_names and len(s) > 0]
        sensors = frozenset(({"emi"} if emi_names else set()) | ({"gpr"} if gpr_names else set()))
        res = AlarmFeatures(alarms=al, sensors=sensors, source=src)
        if n == 0:
            return res if radius is None else neighbourhood_features(res, radius)
        streams = _str_col(al.get("stream", np.full(n, "")), n)
        emi_ctx = {nm: EMIContext.from_stream(rec.streams[nm], profile=profiles.get(nm))
                   for nm in emi_names}
        gpr_ctx: dict[str, GPRContext] = {}
        t0 = {nm: int(np.asarray(rec.streams[nm].read(0, 1, fields=["time"])["time"])[0])
              for nm in emi_names + gpr_names}
        if any(k == "gpr" for k in kinds):
            gpr_ctx = {nm: GPRContext.from_stream(rec.streams[nm], profile=profiles.get(nm))
                       for nm in gpr_names}
        tns = np.asarray(al["time"], dtype=np.int64)
        x = np.asarray(al["x"], dtype=np.float64)
        y = np.asarray(al["y"], dtype=np.float64)
        if no_time:
            # Alarms without times (a CSV of positions from another tool): each
            # at the time its sensor passed nearest to it, rather than at the
            # stream's start (whose radar trace would be described instead).
            tns = tns.copy()
            for i in range(n):
                ctxs = (gpr_ctx if kinds[i] == "gpr" else emi_ctx) or emi_ctx or gpr_ctx
                nm = streams[i] if streams[i] in ctxs else next(iter(ctxs), "")
                if nm:
                    tns[i] = _nearest_time(ctxs[nm], x[i], y[i], t0[nm], tns[i])
            al["time"] = tns
        depth = np.asarray(al["depth"], dtype=np.float64)
        vel = np.asarray(al["velocity"], dtype=np.float64)
        score = np.asarray(al["score"], dtype=np.float64)

        def det(s: float) -> float:
            return math.log10(s) if math.isfinite(s) and s > 0 else math.nan

        per: dict[int, dict[str, float]] = {}
        for i in range(n):
            if kinds[i] == "emi":
                nm = streams[i] if streams[i] in emi_ctx else (emi_names[0] if emi_names else "")
                if not nm:
                    continue
                f = emi_ctx[nm].features_at(x[i], y[i], (tns[i] - t0[nm]) / 1e9)
                f["emi_det_score"] = det(score[i])
                per[i] = f
            elif kinds[i] == "gpr":
                nm = streams[i] if streams[i] in gpr_ctx else (gpr_names[0] if gpr_names else "")
                if not nm:
                    continue
                f = gpr_ctx[nm].features_at((tns[i] - t0[nm]) / 1e9, depth[i], vel[i],
                                            x[i], y[i])
                f["gpr_det_score"] = det(score[i])
                per[i] = f
        emi_idx = np.array([i for i in per if kinds[i] == "emi"], dtype=np.intp)
        gpr_idx = np.array([i for i in per if kinds[i] == "gpr"], dtype=np.intp)
        # fused: the other sensor's features at the alarm's position
        if "gpr" in sensors and emi_idx.size:
            if not gpr_ctx:
                gpr_ctx = {nm: GPRContext.from_stream(rec.streams[nm], profile=profiles.get(nm))
                       for nm in gpr_names}
            gnm = gpr_names[0]
            for i in emi_idx:
                f = per[int(i)]
                f["fus_gpr_dist"] = _nearest(x, y, gpr_idx, int(i))
                g = gpr_ctx[gnm].features_near(x[i], y[i], (tns[i] - t0[gnm]) / 1e9)
                for c in GPR_FEATURES:
                    f["fus_" + c] = g[c]
        if "emi" in sensors and gpr_idx.size:
            enm = emi_names[0]
            for i in gpr_idx:
                f = per[int(i)]
                f["fus_emi_dist"] = _nearest(x, y, emi_idx, int(i))
                e = emi_ctx[enm].features_at(x[i], y[i], (tns[i] - t0[enm]) / 1e9)
                for c in EMI_FEATURES:
                    f["fus_" + c] = e[c]
        for kind, idx in (("emi", emi_idx), ("gpr", gpr_idx)):
            if idx.size == 0:
                continue
            name = feature_set_name(kind, sensors)
            cols = BASE_FEATURE_SETS[name]
            X = np.array([[per[int(i)].get(c, math.nan) for c in cols] for i in idx],
                         dtype=np.float64).reshape(idx.size, len(cols))
            X[~np.isfinite(X)] = np.nan
            res.sets[name] = (idx, X)
        return res if radius is None else neighbourhood_features(res, radius)
    finally:
        if own:
            rec.close()


def neighbourhood_features(af: AlarmFeatures,
                           radius: float = NEIGHBOUR_RADIUS) -> AlarmFeatures:
    """Append the neighbourhood columns: what else the sensors saw in each alarm's disc.

    A deminer investigates a disc around every alarm, and test and evaluation
    credits an alarm with any mine within its halo: an alarm on a cartridge
    0.2 m from a plastic mine that the sensor did not alarm on separately still
    leads to the mine.  Besides the evidence at its own position, each alarm
    gets, over the other alarms within ``radius`` of it:

    =================  ========================================================
    nb_own_n           number of other alarms of the same sensor in the disc
    nb_own_gain        strongest of them minus this alarm's strength
                       (``emi_snr_log`` or ``gpr_det_score``; -5 when none): a
                       stronger alarm beside it covers the same ground
    nb_own_body_pos    strongest radar evidence of a low-permittivity body
                       (``gpr_body_pos_log``) under them (-5 when none)
    nb_oth_n           number of alarms of the other sensor in the disc
    nb_oth_strength    strongest of them (their ``emi_snr_log`` or
                       ``gpr_det_score``; -5 when none)
    nb_oth_body_pos    strongest low-permittivity body evidence under them
    nb_oth_dist        distance (m) to the nearest of them (2 ``radius`` when none)
    =================  ========================================================

    Parameters
    ----------
    af : AlarmFeatures
        Features with the base columns (:data:`BASE_FEATURE_SETS`) or with
        neighbourhood columns of any radius (recomputed).
    radius : float
        Radius (m) of the investigation disc (positive).

    Returns
    -------
    AlarmFeatures
        The same alarms with the columns of :data:`FEATURE_SETS`.
    """
    radius = _scalar("neighbourhood_features", "radius", radius)
    if not (math.isfinite(radius) and radius > 0):
        raise ConfigError(f"neighbourhood radius must be positive, got {radius}")
    where = af.source or "neighbourhood_features"
    n_alarms = np.size(af.alarms.get("x", ()))
    if np.size(af.alarms.get("y", ())) != n_alarms:
        raise ConfigError(f"{where}: alarms have {n_alarms} x but "
                          f"{np.size(af.alarms.get('y', ()))} y values")
    base = {}
    for name, (rows, X) in af.sets.items():
        if name not in BASE_FEATURE_SETS:
            raise ConfigError(f"{where}: unknown feature set {name!r} "
                              f"(sets: {', '.join(BASE_FEATURE_SETS)})")
        rows, X = np.asarray(rows), np.asarray(X)
        if X.ndim != 2 or rows.shape != X.shape[:1]:
            raise ConfigError(f"{where}: feature set {name!r} needs one row index per row "
                              f"of its (rows, columns) matrix, got {rows.shape} indices "
                              f"and a matrix of shape {X.shape}")
        if rows.size and (rows.dtype.kind not in "iu" or rows.min() < 0
                          or rows.max() >= n_alarms):
            raise ConfigError(f"{where}: feature set {name!r} has row indices that are "
                              f"not rows of the {n_alarms} alarms (whole numbers 0 to "
                              f"{n_alarms - 1})")
        nb = len(BASE_FEATURE_SETS[name])
        if X.shape[1] not in (nb, len(FEATURE_SETS[name])):
            raise ConfigError(f"{af.source}: feature matrix of set {name!r} has {X.shape[1]} "
                              f"columns, expected {nb} or {len(FEATURE_SETS[name])}")
        base[name] = (np.asarray(rows, dtype=np.intp), np.asarray(X[:, :nb], dtype=np.float64))
    n = len(af.alarms.get("x", ()))
    x = np.asarray(af.alarms.get("x", np.zeros(n)), dtype=np.float64)
    y = np.asarray(af.alarms.get("y", np.zeros(n)), dtype=np.float64)
    by_kind = {name.split("+")[0]: name for name in base}
    out: dict[str, tuple[NDArray[np.intp], NDArray[np.float64]]] = {}
    for name, (rows, X) in base.items():
        kind = name.split("+")[0]
        own_s = X[:, BASE_FEATURE_SETS[name].index(_STRENGTH[name])]
        ob = _BODY[name]
        own_b = X[:, BASE_FEATURE_SETS[name].index(ob)] if ob else None
        fused = "+" in name
        oname = by_kind.get({"emi": "gpr", "gpr": "emi"}[kind])
        orows, oth_s, oth_b = np.zeros(0, dtype=np.intp), np.zeros(0), np.zeros(0)
        if fused and oname is not None:
            orows, oX = base[oname]
            oth_s = oX[:, BASE_FEATURE_SETS[oname].index(_STRENGTH[oname])]
            obb = _BODY[oname]
            oth_b = oX[:, BASE_FEATURE_SETS[oname].index(obb)] if obb else np.full(orows.size,
                                                                                 np.nan)
        cols = FEATURE_SETS[name][len(BASE_FEATURE_SETS[name]):]
        F = np.full((rows.size, len(cols)), np.nan)
        for k, i in enumerate(rows):
            f: dict[str, float] = {}
            d = np.hypot(x[rows] - x[i], y[rows] - y[i])
            m = d <= radius
            m[k] = False
            f["nb_own_n"] = float(np.count_nonzero(m))
            best = _max(own_s[m])
            f["nb_own_gain"] = best - own_s[k] if best != _NONE else _NONE
            if own_b is not None:
                f["nb_own_body_pos"] = _max(own_b[m])
            if fused:
                do = np.hypot(x[orows] - x[i], y[orows] - y[i])
                mo = do <= radius
                f["nb_oth_n"] = float(np.count_nonzero(mo))
                f["nb_oth_strength"] = _max(oth_s[mo])
                f["nb_oth_body_pos"] = _max(oth_b[mo])
                f["nb_oth_dist"] = float(np.min(do[mo])) if mo.any() else 2.0 * radius
            F[k] = [f.get(c, math.nan) for c in cols]
        F[~np.isfinite(F)] = np.nan
        out[name] = (rows, np.hstack([X, F]))
    return AlarmFeatures(alarms=af.alarms, sets=out, sensors=af.sensors, source=af.source,
                         radius=radius)


def _max(v: np.ndarray) -> float:
    """Largest finite value, or :data:`_NONE` when there is none."""
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else _NONE


def _nearest(x: np.ndarray, y: np.ndarray, idx: np.ndarray, i: int) -> float:
    """Distance (capped at 1 m) from alarm ``i`` to the nearest alarm of ``idx``."""
    if idx.size == 0:
        return 1.0
    dd = np.hypot(x[idx] - x[i], y[idx] - y[i])
    return float(min(np.nanmin(dd), 1.0)) if np.isfinite(dd).any() else 1.0


def recording_path(recording: Any) -> Path:
    """Path of a recording given as a path or an open Recording."""
    return Path(getattr(recording, "path", recording))
