"""EMI detection and classification on an independently written induced-dipole model.

demine's EMI detector and classifier were developed on lanes from
:mod:`demine.simulate`.  This benchmark simulates hand-held pulse-induction
lanes with a forward model written from the physics alone, with NumPy and
SciPy and nothing of :mod:`demine.simulate`, writes them through the public
writer (:class:`demine.recording.RecordingWriter`), runs the default batch
detection path (:func:`demine.pipeline.detect_recording`), ranks the alarms by
the packaged model's ``p_mine`` (:func:`demine.classify.apply_model`; these
lanes have no radar, so the EMI-alone sub-model) and evaluates both with
:func:`demine.evaluate.evaluate_recordings`.

Run::

    python benchmarks/eval_emi_independent.py            # 3 soils x seeds 1,2,3, 8 m lanes
    python benchmarks/eval_emi_independent.py --seeds 1,2,3,4,5,6,7,8,9,10,11,12  # 36 lanes

The default 9 lanes take under a minute but are too few to compare two
models or detectors by PD at 0.5 FA/m² or AUC: two trainings of one recipe
differ there by up to 0.12 AUC (session 32, docs/classify.md); compare on
the 36 lanes of seeds 1-12 (4 min).
    python benchmarks/eval_emi_independent.py --soils strong --seeds 4 --length 4
    python benchmarks/eval_emi_independent.py --cache /tmp/emi-indep --json out.json
    python benchmarks/eval_emi_independent.py --coil-radius 0.2 --pulse 150e-6

It prints, per lane and pooled over the lanes: PD (found/targets) with its
one-sided 95 % Clopper-Pearson lower bound and false alarms per m² of searched
ground, PD at 0.5 and 1.0 FA/m² when the alarms are ranked by the detector's
score and by ``p_mine``, the share of alarms on clutter that ``p_mine``
rejects at full recovery, and the median localisation error; once over all
mines and once over mines with at least ``--min-metal`` (1 g) of metal, the
subset ``examples/evaluate_emi_scenes.py`` reports.  ``--cache DIR`` keeps the
simulated recordings and reuses them.

The forward model
-----------------
Units are SI; the recorded samples are volts at the receiver input.

Sensor
    Pulse induction with one horizontal circular loop of radius ``a``
    (0.12 m; ``--coil-radius``) that transmits and receives (``N = 25`` turns,
    ``I0 = 3 A`` before switch-off).  1000 readings/s, each 16 gates
    log-spaced from 12 us to 1 ms after switch-off, sampled at the gate centre.
    By default the transmitter was on long enough for every response to reach
    its steady state (a step-off); ``--pulse T`` gives a rectangular pulse of
    ``T`` seconds instead, so that each response is ``r(t) - r(t + T)`` with
    ``r`` the step-off response (a viscous ground then decays as
    ``1/t - 1/(t + T)``, not ``1/t``).  The recording's calibration declares
    the pulse (``pulse_length``), as a user declares their detector's, so the
    ground balance models it; ``--undeclared-pulse`` leaves it out (the
    balance then assumes a long on-time until its pulse search, on in the
    packaged chain, finds the pulse from the ground).
Primary field
    The exact field of a circular current loop (Simpson et al. 2001, complete
    elliptic integrals ``scipy.special.ellipk``/``ellipe``), per ampere-turn,
    ``h(r)`` in 1/m; no dipole approximation of the coil.
Targets
    Induced dipoles, linear and without mutual coupling.  Each metal object
    has a symmetric polarizability tensor ``M(t) = R diag(M1, M2, M3)(t) R^T``
    (random orientation ``R``).  By reciprocity the received voltage of the
    coincident loop is ``V(t) = -I0 N^2 mu0 h(r)^T dM/dt h(r)``.  Each
    principal value is a sum of eddy-current modes,
    ``-dMi/dt = g_i V_eff sum_k w_k / tau_ik exp(-t / tau_ik)``:
    solid bodies have the modes of a diffusing body, ``tau_ik = tau_i1 / k^2``
    and ``w_k = 6 / (pi^2 k^2)`` (30 modes), which gives the early-time
    ``t^(-1/2)`` power law and the late exponential (the anti-tank mine's
    steel case too: its loop time constant, tens of ms, keeps it in that
    power law over all gates); thin-walled non-ferrous bodies (cartridge
    cases, cans) one dominant mode (weights 0.85, 0.10, 0.05).  Gains
    ``g_i`` come from demagnetising factors ``N_i`` of a spheroid of the
    object's aspect ratio: ferrous bodies ``1 / (N_i + 1 / (mu_r - 1))``
    (``mu_r = 100``; a nail along its axis reaches ~50 against 2 across),
    conductors ``1 / (1 - N_i)`` (field exclusion), times the effective
    volume ``V_eff`` (the metal's volume, or the enclosed volume of a thin
    shell).  Time constants follow from
    diffusion across the smallest dimension, ``tau = mu0 mu_r sigma r^2 /
    pi^2`` (solid) or ``mu0 sigma d r / 2`` (shell of wall ``d``); irregular
    fragments get independent random gains and time constants per axis.
    This is not the Pasion-Oldenburg law.
Object kinds (``KINDS``)
    Mines: ``AP-min-metal`` (0.3-0.8 g steel striker, top 0-5 cm),
    ``AP-fuzed`` (1-5 g steel fuze parts, 0-8 cm), ``AT-steel`` (steel case
    1.5-4 kg, 30 cm across, 10-20 cm), ``AT-min-metal`` (3-7 g fuze, 10-20 cm),
    ``UXO-shell`` (solid steel 0.4-3 kg, aspect 3.5, 10-30 cm).  Clutter:
    steel fragments (1-20 g, irregular), nails (2-8 g, aspect 8-20), brass
    cartridge cases (3-10 g, thin-walled, fast), aluminium cans (10-20 g,
    large, fast), wire (copper or steel, 1-5 g), and magnetic-viscous rocks.
    Depths are to the top; the dipole sits at the metal's centre below it.
    Per lane: 1.75 mines per metre of lane (+-1), at least 0.4 m apart and
    0.1 m inside the swept width; 2.5-5 clutter items per m² (40 % fragments,
    20 % nails, 20 % cases, 15 % wire, 5 % cans) anywhere, near mines too;
    rocks by soil level.
Magnetic soil
    A half-space of frequency-independent (log-uniform relaxation) viscous
    susceptibility, ``kappa`` per unit of ``ln(time)``, so that after a long
    on-time ``dchi/dt = -kappa / t``.  Its response is exact in the
    quasi-static, small-``chi`` limit by the image method: the ground
    reflects the loop as a coaxial image loop at depth ``h`` below the
    surface with strength ``(mu_r - 1)/(mu_r + 1) ~ chi/2``, so
    ``V_soil(t) = I0 N^2 (kappa / 2t) M_coax(a, 2h)``, with ``M_coax`` the
    mutual inductance of two coaxial loops of radius ``a`` at distance ``2h``
    (elliptic integrals).  ``M_coax`` falls as ``(2h)^-3`` for ``h >> a``
    (``mu0 pi a^4 / (16 h^3)``), more slowly near the ground; the same
    figure is the Born volume integral of the loop's own field, ``chi
    int mu0 |h|^2 dV`` over the half-space (checked numerically: equal to
    1e-4 at h = 5 cm, a = 12 cm).  ``kappa`` varies laterally: a
    Gaussian random field (correlation ``corr`` m, relative spread ``spread``)
    sampled under the coil centre after smoothing over the footprint, so the
    uniform half-space formula is used with the local value.  Rocks are
    viscous point dipoles (balls of 3-8 cm radius) whose ``kappa`` differs
    from the soil's: the anomaly ``(kappa_rock - kappa_soil) V mu0 |h|^2 /
    t`` is positive for a magnetic rock and negative for a rock less
    magnetic than its soil; rocks are clutter (``is_mine`` 0) named
    ``hot-rock`` / ``cold-rock``.  Soils (``SOILS``): ``benign`` (kappa
    1e-6: about twice the first gate's noise, its variation below it),
    ``moderate`` (2.5e-5: ~50 times the noise) and ``strong`` (3.5e-4,
    laterite-like: ~700 times the noise at the first gate, tens of times the
    peak of a small AP mine).
Sweep
    A 1 m wide lane swept side to side (head path from -0.05 to 1.05 m,
    a half-cosine in time, 0.7 m/s on average, each swing's speed +-10 %)
    advancing 4 cm per swing (+-0.5 cm), ``--length`` m long (8 m by default).  Head
    height 5 cm with a slow variation (+-1.5 cm over metres) and a fast one
    (+-0.5 cm within a swing), never below 1 cm; the recorded ``z`` is the
    true height.
Noise
    Gaussian per gate, ``1 uV * sqrt(100 us / t_gate)`` (narrow early gates
    are noisier), plus a slow drift of each gate's offset (twice that level,
    tens of seconds).

What it does not model: conductive ground, coil tilt, the transmitter's
switch-off ramp and earlier pulses, finite-size effects of bodies as large as
the coil (an anti-tank mine is still a dipole), mutual coupling of objects.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.special import ellipe, ellipk

MU0 = 4e-7 * math.pi
TURNS = 25
CURRENT = 3.0  # A before switch-off
GATES = np.geomspace(12e-6, 1e-3, 16)
RATE = 1000.0
NOISE_100US = 1e-6  # V, receiver noise of a gate at 100 us
MU_R_STEEL = 100.0
SIGMA = {"steel": 4e6, "brass": 1.5e7, "aluminium": 3.5e7, "copper": 5.8e7}
DENSITY = {"steel": 7850.0, "brass": 8500.0, "aluminium": 2700.0, "copper": 8960.0}

#: Soil levels: mean viscous susceptibility per unit ln(time), relative spread
#: of its lateral variation, correlation length (m), number of rocks.
SOILS: dict[str, dict[str, float]] = {
    "benign": {"kappa": 1e-6, "spread": 0.2, "corr": 0.5, "rocks": 1},
    "moderate": {"kappa": 2.5e-5, "spread": 0.25, "corr": 0.4, "rocks": 4},
    "strong": {"kappa": 3.5e-4, "spread": 0.35, "corr": 0.3, "rocks": 8},
}


# --------------------------------------------------------------------------
# Fields and couplings
# --------------------------------------------------------------------------


def loop_field(a: float, rho: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Field of a circular loop per unit current (A/m per A).

    Parameters
    ----------
    a : float
        Loop radius (m); the loop lies in the plane ``z = 0``, centred on the axis.
    rho, z : ndarray
        Cylindrical coordinates of the field points (m).

    Returns
    -------
    h_rho, h_z : ndarray
        Radial and axial components (1/m).
    """
    rho = np.maximum(np.abs(np.asarray(rho, dtype=float)), 1e-7 * a)
    z = np.asarray(z, dtype=float)
    r2 = rho**2 + z**2
    alpha2 = a**2 + r2 - 2 * a * rho
    beta2 = a**2 + r2 + 2 * a * rho
    beta = np.sqrt(beta2)
    m = 1.0 - alpha2 / beta2
    e, k = ellipe(m), ellipk(m)
    c = 1.0 / math.pi
    h_z = c / (2 * alpha2 * beta) * ((a**2 - r2) * e + alpha2 * k)
    h_rho = c * z / (2 * alpha2 * beta * rho) * ((a**2 + r2) * e - alpha2 * k)
    return h_rho, h_z


def coaxial_mutual(a: float, d: np.ndarray) -> np.ndarray:
    """Mutual inductance (H per turn²) of two coaxial loops of radius ``a`` at distance ``d``."""
    d = np.asarray(d, dtype=float)
    m = 4 * a**2 / (4 * a**2 + d**2)
    kk = np.sqrt(m)
    return MU0 * a * ((2 / kk - kk) * ellipk(m) - 2 / kk * ellipe(m))


def viscous_decay(t: np.ndarray, pulse: float | None) -> np.ndarray:
    """Time factor of a viscous (log-uniform) response: ``1/t`` or ``1/t - 1/(t+T)``."""
    t = np.asarray(t, dtype=float)
    return 1 / t if pulse is None else 1 / t - 1 / (t + pulse)


def soil_response(a: float, height: np.ndarray, kappa: np.ndarray, gates: np.ndarray,
                  pulse: float | None = None) -> np.ndarray:
    """Receiver voltage of a viscous half-space, ``(n, n_gates)``.

    Image method: ``V = I0 N^2 (kappa/2) M_coax(a, 2h) * decay(t)``.
    """
    coupling = coaxial_mutual(a, 2 * np.asarray(height, dtype=float))
    return (CURRENT * TURNS**2 * 0.5 * np.asarray(kappa) * coupling)[:, None] * \
        viscous_decay(gates, pulse)[None, :]


# --------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------


@dataclass
class Body:
    """One buried object: an induced dipole with a polarizability tensor."""

    id: str
    type: str
    is_mine: bool
    x: float
    y: float
    depth: float  # to the top (truth)
    centre: float  # depth of the dipole (m)
    metal_mass: float  # kg
    rotation: np.ndarray = field(repr=False)  # 3x3, body axes in columns
    gains: np.ndarray = field(repr=False)  # (3,) m³ (gain x effective volume)
    taus: np.ndarray = field(repr=False)  # (3,) first-mode time constants
    modes: str = "solid"  # "solid", "shell" or "viscous"

    def decay(self, gates: np.ndarray, pulse: float | None) -> np.ndarray:
        """``-dMi/dt`` at the gates, ``(3, n_gates)``, m³/s."""
        if self.modes == "viscous":
            return self.gains[:, None] * viscous_decay(gates, pulse)[None, :]
        if self.modes == "solid":
            k = np.arange(1, 31, dtype=float)
            w = 6 / (math.pi**2 * k**2)
        else:
            k = np.array([1.0, 2.0, 3.0])
            w = np.array([0.85, 0.10, 0.05])
        tau = self.taus[:, None] / k[None, :] ** 2  # (3, K)
        t = np.asarray(gates, dtype=float)[None, None, :]
        terms = np.exp(-t / tau[..., None])
        if pulse is not None:
            terms = terms * (1 - np.exp(-pulse / tau[..., None]))
        return self.gains[:, None] * np.sum((w[None, :] / tau)[..., None] * terms, axis=1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def demagnetising(aspect: float) -> np.ndarray:
    """Demagnetising factors (axial, transverse, transverse) of a spheroid of ``aspect`` = c/a."""
    c = float(aspect)
    if abs(c - 1) < 1e-6:
        return np.full(3, 1 / 3)
    if c > 1:
        e = math.sqrt(1 - 1 / c**2)
        n_ax = (1 - e**2) / e**3 * (math.atanh(e) - e)
    else:
        e = math.sqrt(1 / c**2 - 1)
        n_ax = (1 + e**2) / e**3 * (e - math.atan(e))
    n_tr = (1 - n_ax) / 2
    return np.array([n_ax, n_tr, n_tr])


def solid_body(material: str, mass: float, aspect: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Gains (m³), first-mode time constants (s) and length (m) of a solid spheroid."""
    vol = mass / DENSITY[material]
    r = (vol / (4 / 3 * math.pi * aspect)) ** (1 / 3)  # semi-axis across
    n = demagnetising(aspect)
    if material == "steel":
        gains = vol / (n + 1 / (MU_R_STEEL - 1))
        tau = MU0 * MU_R_STEEL * SIGMA[material] * r**2 / math.pi**2
        taus = np.array([tau, 0.6 * tau, 0.6 * tau])
    else:
        gains = vol / (1 - n)
        tau = MU0 * SIGMA[material] * r**2 / math.pi**2
        taus = np.array([0.7 * tau, tau, tau])
    return gains, taus, 2 * r * aspect


def shell_body(material: str, radius: float, length: float, wall: float,
               ferrous_gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gains and time constants of a thin-walled cylinder (axis first)."""
    vol = math.pi * radius**2 * length
    n = demagnetising(length / (2 * radius))
    gains = ferrous_gain * vol / (1 - n)
    mu = MU_R_STEEL if material == "steel" else 1.0
    tau = MU0 * mu * SIGMA[material] * wall * radius / 2
    return gains, np.array([tau, 0.5 * tau, 0.5 * tau])


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def make_body(kind: str, ident: str, x: float, y: float, rng: np.random.Generator,
              soil_kappa: float) -> Body:
    """Draw one object of ``kind`` at (x, y) (see ``KINDS``)."""
    mine = kind in MINE_KINDS
    modes = "solid"
    if kind == "AP-min-metal":
        mass = _u(rng, 0.3e-3, 0.8e-3)
        gains, taus, _ = solid_body("steel", mass, _u(rng, 4, 8))
        depth = _u(rng, 0.0, 0.05)
        centre = depth + 0.012
    elif kind == "AP-fuzed":
        mass = _u(rng, 1e-3, 5e-3)
        gains, taus, _ = solid_body("steel", mass, _u(rng, 1.5, 3))
        depth = _u(rng, 0.0, 0.08)
        centre = depth + 0.015
    elif kind == "AT-steel":
        mass = _u(rng, 1.5, 4.0)
        radius, length = 0.15, 0.10
        wall = mass / (DENSITY["steel"] * 2 * math.pi * radius * (radius + length))
        # a closed steel box: the field it holds decays through eddy currents
        # around the case (L/R time mu0 mu_r sigma d r / 2, tens of ms) but
        # diffuses into the wall first: the diffusing-body modes, whose
        # t^(-1/2) regime spans the gates
        gains, taus = shell_body("steel", radius, length, wall, ferrous_gain=1.5)
        depth = _u(rng, 0.10, 0.20)
        centre = depth + 0.05
    elif kind == "AT-min-metal":
        mass = _u(rng, 3e-3, 7e-3)
        gains, taus, _ = solid_body("steel", mass, _u(rng, 1.5, 3))
        depth = _u(rng, 0.10, 0.20)
        centre = depth + 0.02
    elif kind == "UXO-shell":
        mass = _u(rng, 0.4, 3.0)
        gains, taus, length = solid_body("steel", mass, 3.5)
        depth = _u(rng, 0.10, 0.30)
        centre = depth + length / 7
    elif kind == "fragment":
        mass = _u(rng, 1e-3, 20e-3)
        gains, taus, _ = solid_body("steel", mass, 1.0)
        gains = gains * rng.uniform(0.1, 1.5, 3) * np.array([1.5, 1.0, 0.5])
        taus = taus * rng.uniform(0.2, 1.0, 3)  # thin, jagged: shorter diffusion paths
        depth = _u(rng, 0.0, 0.15)
        centre = depth + 0.005
    elif kind == "nail":
        mass = _u(rng, 2e-3, 8e-3)
        gains, taus, _ = solid_body("steel", mass, _u(rng, 8, 20))
        depth = _u(rng, 0.0, 0.10)
        centre = depth + 0.01
    elif kind == "cartridge-case":
        mass = _u(rng, 3e-3, 10e-3)
        radius, length = _u(rng, 0.005, 0.0065), _u(rng, 0.035, 0.05)
        wall = mass / (DENSITY["brass"] * 2 * math.pi * radius * length)
        gains, taus = shell_body("brass", radius, length, wall)
        modes = "shell"
        depth = _u(rng, 0.0, 0.10)
        centre = depth + radius
    elif kind == "can":
        mass = _u(rng, 10e-3, 20e-3)
        radius, length = 0.033, _u(rng, 0.05, 0.115)  # crushed to full
        wall = mass / (DENSITY["aluminium"] * 2 * math.pi * radius * (length + radius))
        gains, taus = shell_body("aluminium", radius, length, wall)
        modes = "shell"
        depth = _u(rng, 0.0, 0.15)
        centre = depth + radius
    elif kind == "wire":
        mass = _u(rng, 1e-3, 5e-3)
        material = "copper" if rng.random() < 0.5 else "steel"
        gains, taus, _ = solid_body(material, mass, _u(rng, 10, 30))
        depth = _u(rng, 0.0, 0.10)
        centre = depth + 0.003
    elif kind in ("hot-rock", "cold-rock"):
        mass = 0.0
        radius = _u(rng, 0.03, 0.08)
        vol = 4 / 3 * math.pi * radius**3
        if kind == "hot-rock":  # maghemite-rich nodule: 3-30 x the soil's kappa (or 3e-5-3e-4)
            contrast = max(soil_kappa, 1e-5) * _u(rng, 3, 30) + 1e-5
        else:  # quartz or a non-magnetic stone in a magnetic soil
            contrast = -soil_kappa
        gains = np.full(3, contrast * vol)
        taus = np.ones(3)
        modes = "viscous"
        depth = _u(rng, 0.0, 0.15)
        centre = depth + radius
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return Body(ident, kind, mine, x, y, depth, centre, mass, random_rotation(rng),
                np.asarray(gains, dtype=float), np.asarray(taus, dtype=float), modes)


MINE_KINDS = {"AP-min-metal": 0.3, "AP-fuzed": 0.35, "AT-steel": 0.1, "AT-min-metal": 0.1,
              "UXO-shell": 0.15}
CLUTTER_KINDS = {"fragment": 0.4, "nail": 0.2, "cartridge-case": 0.2, "can": 0.05, "wire": 0.15}
KINDS = (*MINE_KINDS, *CLUTTER_KINDS, "hot-rock", "cold-rock")


def place_bodies(rng: np.random.Generator, length: float, soil: dict[str, float],
                 mines_per_m: float = 1.75, clutter_per_m: tuple[float, float] = (2.5, 5.0),
                 clutter_scale: float = 1.0) -> list[Body]:
    """Mines (at least 0.4 m apart, 0.1 m inside the swept width), clutter and rocks.

    ``clutter_scale`` multiplies the number of clutter items and rocks (0: mines
    alone); the mines and everything drawn before them stay the same.
    """
    bodies: list[Body] = []
    n_mines = max(1, int(round(mines_per_m * length + rng.integers(-1, 2))))
    kinds = list(MINE_KINDS)
    p = np.array(list(MINE_KINDS.values()))
    spots: list[tuple[float, float]] = []
    tries = 0
    while len(spots) < n_mines and tries < 10000:
        tries += 1
        x, y = rng.uniform(0.1, 0.9), rng.uniform(0.3, length - 0.3)
        if all(math.hypot(x - u, y - v) >= 0.4 for u, v in spots):
            spots.append((x, y))
    for i, (x, y) in enumerate(spots):
        kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
        bodies.append(make_body(kind, f"M{i + 1:02d}", x, y, rng, soil["kappa"]))
    n_clutter = int(rng.uniform(*clutter_per_m) * length * clutter_scale)
    ckinds = list(CLUTTER_KINDS)
    cp = np.array(list(CLUTTER_KINDS.values()))
    for i in range(n_clutter):
        kind = ckinds[rng.choice(len(ckinds), p=cp / cp.sum())]
        x, y = rng.uniform(0.0, 1.0), rng.uniform(0.1, length - 0.1)
        bodies.append(make_body(kind, f"C{i + 1:03d}", x, y, rng, soil["kappa"]))
    n_rocks = int(round(soil["rocks"] * length / 4 * clutter_scale))
    for i in range(n_rocks):
        kind = "hot-rock" if (i % 3 != 2 or soil["kappa"] < 1e-5) else "cold-rock"
        x, y = rng.uniform(0.0, 1.0), rng.uniform(0.1, length - 0.1)
        bodies.append(make_body(kind, f"R{i + 1:02d}", x, y, rng, soil["kappa"]))
    return bodies


def body_response(body: Body, a: float, cx: np.ndarray, cy: np.ndarray, cz: np.ndarray,
                  gates: np.ndarray, pulse: float | None = None) -> np.ndarray:
    """Receiver voltage of one object for coil centres (cx, cy, cz), ``(n, n_gates)``."""
    dx, dy = body.x - cx, body.y - cy
    rho = np.hypot(dx, dy)
    zrel = -(cz + body.centre)  # the object lies below the loop's plane
    h_rho, h_z = loop_field(a, rho, zrel)
    safe = np.where(rho > 0, rho, 1.0)
    ux, uy = np.where(rho > 0, dx / safe, 0.0), np.where(rho > 0, dy / safe, 0.0)
    h = np.stack([h_rho * ux, h_rho * uy, h_z], axis=1)  # (n, 3)
    u = h @ body.rotation  # components along the body axes
    decay = body.decay(gates, pulse)  # (3, G)
    return CURRENT * TURNS**2 * MU0 * (u**2) @ decay


# --------------------------------------------------------------------------
# Lane
# --------------------------------------------------------------------------


def _smooth_series(rng: np.random.Generator, n: int, width: float) -> np.ndarray:
    """Unit-variance Gaussian-filtered white noise of ``n`` samples (correlation ``width``)."""
    step = max(1.0, width / 8)  # filter on a coarse grid, then interpolate
    m = int(n / step) + 2
    coarse = gaussian_filter(rng.normal(size=m + 64), width / step, mode="wrap")[:m]
    s = np.interp(np.arange(n) / step, np.arange(m), coarse)
    return (s - s.mean()) / (s.std() + 1e-30)


def sweep_path(rng: np.random.Generator, length: float, speed: float = 0.7,
               advance: float = 0.04) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head positions (x across, y along, z height) at ``RATE`` readings/s."""
    x_lo, x_hi = -0.05, 1.05
    width = x_hi - x_lo
    n_swings = int(math.ceil((length + 0.1) / advance))
    xs, ys = [], []
    y0 = -0.05
    for k in range(n_swings):
        v = speed * _u(rng, 0.9, 1.1)
        dur = width / v  # a half-cosine swing of mean speed v (peak pi/2 v)
        n = max(2, int(round(dur * RATE)))
        ph = np.arange(n) / n
        s = 0.5 - 0.5 * np.cos(math.pi * ph)
        x = x_lo + width * (s if k % 2 == 0 else 1 - s)
        y = y0 + advance * (k + ph) + 0.005 * math.sin(2 * math.pi * _u(rng, 0, 1))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    n = x.size
    slow = 0.015 * _smooth_series(rng, n, 3.0 * RATE)
    t = np.arange(n) / RATE
    swing = 0.003 * np.sin(2 * math.pi * t / (width / speed) + _u(rng, 0, 6.3))
    fast = swing + 0.002 * _smooth_series(rng, n, 0.05 * RATE)
    z = np.maximum(0.05 + slow + fast, 0.01)
    return x, y, z


def soil_field(rng: np.random.Generator, length: float, soil: dict[str, float], a: float,
               x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Viscous susceptibility under the coil centres: ``kappa (1 + spread g)``, g a smooth
    Gaussian random field of unit variance, averaged over the footprint."""
    step = 0.02
    nx, ny = int(1.6 / step), int((length + 0.6) / step)
    g = gaussian_filter(rng.normal(size=(nx, ny)), soil["corr"] / step / 2, mode="wrap")
    g = (g - g.mean()) / g.std()
    g = gaussian_filter(g, a / step / 2, mode="nearest")  # the footprint's average
    kappa = soil["kappa"] * np.maximum(1 + soil["spread"] * g, 0.05)
    ix, iy = (x + 0.3) / step, (y + 0.3) / step
    return map_coordinates(kappa, [ix, iy], order=1, mode="nearest")


@dataclass
class Lane:
    """A simulated lane: readings, positions and the truth."""

    samples: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    bodies: list[Body]
    soil_part: np.ndarray  # soil voltage alone (for diagnosis)


def simulate(seed: int, soil_name: str, *, length: float = 4.0, a: float = 0.12,
             pulse: float | None = None, clutter_scale: float = 1.0) -> Lane:
    """Simulate one lane (see the module docstring for the physics)."""
    soil = SOILS[soil_name]
    rng = np.random.default_rng([seed, list(SOILS).index(soil_name), 7731])
    bodies = place_bodies(rng, length, soil, clutter_scale=clutter_scale)
    rng = np.random.default_rng([seed, list(SOILS).index(soil_name), 7732])
    x, y, z = sweep_path(rng, length)
    kappa = soil_field(rng, length, soil, a, x, y)
    soil_v = soil_response(a, z, kappa, GATES, pulse)
    v = soil_v.copy()
    reach = 0.6 + 2 * a
    for b in bodies:
        sel = np.flatnonzero((np.abs(x - b.x) < reach) & (np.abs(y - b.y) < reach))
        if sel.size:
            v[sel] += body_response(b, a, x[sel], y[sel], z[sel], GATES, pulse)
    sigma = NOISE_100US * np.sqrt(100e-6 / GATES)
    n = x.size
    v += rng.normal(size=(n, GATES.size)) * sigma
    v += 2 * _smooth_series(rng, n, 20 * RATE)[:, None] * sigma[None, :]
    return Lane(v.astype(np.float32), x, y, z, bodies, soil_v)


def write_lane(lane: Lane, path: Path, *, soil: str, seed: int, a: float, length: float,
               pulse: float | None, declare_pulse: bool = True) -> None:
    """Write a lane as a demine recording through the public writer."""
    from demine.recording import RecordingWriter

    part = path.with_suffix(".part")
    part.unlink(missing_ok=True)
    t0 = 1_790_000_000_000_000_000
    with RecordingWriter(part, site="independent induced-dipole model", lane_id=path.stem,
                         notes="benchmarks/eval_emi_independent.py", flush_interval=30.0,
                         attrs={"soil": soil, "seed": seed, "lane_length": length,
                                "generator": "eval_emi_independent"}) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES, units="V",
                         device="induced-dipole PI model",
                         calibration={"coil_radius": a, "rate": RATE,
                                      **({"pulse_length": pulse}
                                         if pulse and declare_pulse else {})})
        w.add_truth([{"id": b.id, "type": b.type, "is_mine": int(b.is_mine), "x": b.x,
                      "y": b.y, "depth": b.depth, "metal_mass": b.metal_mass}
                     for b in lane.bodies])
        n = lane.x.size
        times = t0 + np.round(np.arange(n) * (1e9 / RATE)).astype(np.int64)
        step = 20000
        for i in range(0, n, step):
            j = min(n, i + step)
            s.append(lane.samples[i:j], time=times[i:j], x=lane.x[i:j], y=lane.y[i:j],
                     z=lane.z[i:j])
    part.replace(path)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _fmt(ev, ranked) -> str:
    def f(v: float, spec: str = ".3f") -> str:
        return "n/a" if v is None or not math.isfinite(v) else format(v, spec)

    loc = ev.localisation.get("median", float("nan")) if ev.localisation.get("n") else float("nan")
    return (f"PD {f(ev.pd)} ({ev.n_found}/{ev.n_targets}, lower {f(ev.pd_lower95)})  "
            f"FA/m² {f(ev.far_per_m2, '.2f')}  "
            f"PD@0.5 {f(ev.pd_at_far[0.5]['pd'])}/{f(ranked.pd_at_far[0.5]['pd'])}  "
            f"PD@1 {f(ev.pd_at_far[1.0]['pd'])}/{f(ranked.pd_at_far[1.0]['pd'])}  "
            f"clutter rej. {f(ranked.clutter_rejected_at_full_recovery, '.1%')}  "
            f"loc {f(loc * 100, '.1f')} cm")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--soils", default=",".join(SOILS), help="comma-separated soil levels")
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated lane seeds")
    ap.add_argument("--length", type=float, default=8.0, help="lane length (m)")
    ap.add_argument("--coil-radius", type=float, default=0.12, help="loop radius (m)")
    ap.add_argument("--pulse", type=float, default=None,
                    help="transmitter on-time (s); default a step-off (long on-time)")
    ap.add_argument("--gates", metavar="FIRST,LAST,N", default=None,
                    help="the detector's gates: N log-spaced from FIRST to LAST s "
                    "(default 12e-6,1e-3,16, demine's reference detector's)")
    ap.add_argument("--undeclared-pulse", action="store_true",
                    help="do not declare the pulse in the recording's calibration "
                    "(pulse_length): the ground balance then assumes a long on-time "
                    "until its pulse search finds the pulse from the ground")
    ap.add_argument("--clutter-scale", type=float, default=1.0,
                    help="multiply the clutter and rock counts (0: mines alone)")
    ap.add_argument("--min-metal", type=float, default=1e-3,
                    help="metal mass (kg) of the 'mines that carry metal' subset")
    ap.add_argument("--cache", metavar="DIR", help="keep and reuse the recordings here")
    ap.add_argument("--json", metavar="FILE", help="write the evaluations as JSON")
    ap.add_argument("--model", metavar="MODEL",
                    help="model file whose p_mine ranks the alarms (default: the packaged model)")
    args = ap.parse_args()

    from demine.classify import apply_model, load_default_model, load_model
    from demine.evaluate import evaluate_recordings
    from demine.pipeline import detect_recording

    soils = [s for s in args.soils.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    model = load_model(args.model) if args.model else load_default_model()
    limit = args.min_metal
    tag = f"a{args.coil_radius:g}-L{args.length:g}" + (f"-p{args.pulse:g}" if args.pulse else "")
    if args.pulse:
        # declared and undeclared pulses are different recordings (calibration)
        tag += "-u" if args.undeclared_pulse else "-d"
    if args.gates:
        global GATES
        try:
            g0, g1, gn = (float(v) for v in args.gates.split(","))
        except ValueError:
            ap.error(f"--gates must be FIRST,LAST,N, got {args.gates!r}")
        if not (0 < g0 < g1 and gn >= 3 and gn == int(gn)):
            ap.error(f"--gates: need 0 < FIRST < LAST and N >= 3, got {args.gates!r}")
        GATES = np.geomspace(g0, g1, int(gn))
        tag += f"-g{g0:g}-{g1:g}-{int(gn)}"
    if args.clutter_scale != 1.0:
        tag += f"-c{args.clutter_scale:g}"
    config = {"gpr": {"enabled": False}}
    with tempfile.TemporaryDirectory(prefix="demine-indep-") as tmp:
        store = Path(args.cache) if args.cache else Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        paths, alarms, ranked = [], [], []
        for soil in soils:
            for seed in seeds:
                path = store / f"indep-{soil}-{seed}-{tag}.h5"
                t0 = time.perf_counter()
                if not path.is_file():
                    lane = simulate(seed, soil, length=args.length, a=args.coil_radius,
                                    pulse=args.pulse, clutter_scale=args.clutter_scale)
                    write_lane(lane, path, soil=soil, seed=seed, a=args.coil_radius,
                               length=args.length, pulse=args.pulse,
                               declare_pulse=not args.undeclared_pulse)
                t1 = time.perf_counter()
                found = detect_recording(path, config)
                found = {k: np.asarray(v) for k, v in found.items()}
                t2 = time.perf_counter()
                rk = apply_model(path, model, alarms=found)
                t3 = time.perf_counter()
                paths.append(path)
                alarms.append(found)
                ranked.append(rk)
                print(f"{soil} seed {seed}: {found['x'].size} alarms  (simulate {t1 - t0:.1f} s, "
                      f"detect {t2 - t1:.1f} s, classify {t3 - t2:.1f} s)", flush=True)

        pm = np.concatenate([r["p_mine"] for r in ranked]) if ranked else np.zeros(0)
        if pm.size:
            q = np.percentile(pm, [0, 50, 100])
            print(f"\np_mine over {pm.size} alarms: {np.unique(np.round(pm, 4)).size} distinct "
                  f"values, min {q[0]:.3f}, median {q[1]:.3f}, max {q[2]:.3f}")

        def metal(t):
            return t["metal_mass"] >= limit

        results: dict[str, dict] = {}
        print("\nper lane: PD  FA/m²  PD at 0.5 and 1 FA/m² (by score / by p_mine)  "
              "clutter rejected at full recovery by p_mine  median localisation")
        for subset, sel in (("all mines", None), (f"mines >= {limit * 1e3:g} g", metal)):
            kw = {} if sel is None else {"select": sel}
            print(f"\n== {subset}")
            for p, a_, r_ in zip(paths, alarms, ranked, strict=True):
                ev = evaluate_recordings([p], alarms=[a_], **kw)
                er = evaluate_recordings([p], alarms=[r_], score="p_mine", **kw)
                print(f"{p.stem:<28} {_fmt(ev, er)}")
            ev = evaluate_recordings(paths, alarms=alarms, **kw)
            er = evaluate_recordings(paths, alarms=ranked, score="p_mine", **kw)
            print(f"{'pooled':<28} {_fmt(ev, er)}")
            loc = ev.localisation
            if loc.get("n"):
                print(f"localisation bias x {loc['bias_x'] * 100:+.1f} cm, "
                      f"y {loc['bias_y'] * 100:+.1f} cm")
            print(ev.summary())
            print(f"-- ranked by p_mine\n{er.summary()}")
            results[subset] = {"by_score": ev.to_dict(), "by_p_mine": er.to_dict()}
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"soils": soils, "seeds": seeds, "length_m": args.length,
                 "coil_radius_m": args.coil_radius, "pulse_s": args.pulse,
                 "pulse_declared": bool(args.pulse and not args.undeclared_pulse),
                 "min_metal_kg": limit, **results}, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
