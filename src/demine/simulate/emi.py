"""Pulse-induction metal-detector forward model (vectorised NumPy).

Received voltage in each time gate, for a monostatic horizontal loop of radius
``a`` at height ``h`` above the ground:

* **objects**: induced dipoles.  Each object has three principal
  polarizabilities along its body axes (Pasion–Oldenburg law)
  ``L_i(t) = k_i (t + alpha_i)^(-beta_i) exp(-t / gamma_i)``, and the signal is
  ``gain * sum_i (h . u_i)^2 L_i(t)``, ``h`` the loop field per ampere at the
  object (exact, with complete elliptic integrals), ``u_i`` the body axes.
  Magnetically viscous objects (hot rocks) add ``k_v * t_ref / t``.
* **soil**: viscous magnetic soil ``gain * soil_gain * dchi(x, y) * (t_ref/t) *
  a^3 / (a^2 + 4 h^2)^(3/2)`` (strongly height dependent), plus a conductive
  half-space term ``~ sigma^1.5 t^-2.5``.
* **transmitter**: a step-off by default (a pulse long enough for every
  response to reach its steady state); ``[emi] pulse_length`` T > 0 makes
  every response above, objects and soil, its step-off law at ``t`` minus the
  same at ``t + T`` (the switch-off minus the switch-on T earlier; earlier
  pulses of the train are ignored).
* **instrument**: baseline drift (smooth, minutes), 1/f noise (sum of AR(1)
  processes, common to all gates), mains pickup, white noise per gate
  (smaller on the later, wider gates).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal as _signal

from .._coil import loop_field
from .scene import METALS, BuriedObject, Scene
from .trajectory import RandomField2D, SmoothProcess

__all__ = ["EMIModel", "loop_field", "object_polarizability", "polarizability_curve",
           "dipole_response", "soil_response", "sphere_modes_curve", "T_REF"]

MU0 = 4e-7 * math.pi
#: Reference time of the viscous (1/t) terms, seconds.
T_REF = 1.0e-5


def polarizability_curve(t: np.ndarray, k: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
                         gamma: np.ndarray) -> np.ndarray:
    """Pasion–Oldenburg ``k (t + alpha)^-beta exp(-t/gamma)``, broadcast over the last axis = t."""
    t = np.asarray(t, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)[..., None]
    alpha = np.asarray(alpha, dtype=np.float64)[..., None]
    beta = np.asarray(beta, dtype=np.float64)[..., None]
    gamma = np.asarray(gamma, dtype=np.float64)[..., None]
    return k * (t + alpha) ** (-beta) * np.exp(-t / gamma)


def object_polarizability(obj: BuriedObject) -> dict[str, np.ndarray]:
    """Pasion–Oldenburg parameters ``k, alpha, beta, gamma`` (3 axes each) of an object.

    Heuristic from the metal part: size ``metal_size``, wall/wire
    ``metal_thickness``, mass, metal conductivity and permeability.  The
    early-time magnitude is ``2 pi r^3`` (r = metal_size/2) scaled by the cube
    root of the fill fraction (shells count as full); the late time constant is
    the diffusion time ``mu sigma d^2`` of the wall (compact/plate/rod) or the
    loop time ``mu sigma d r / 2`` of a closed shell; ferrous metal decays
    closer to ``t^-1`` early, non-ferrous to ``t^-1/2``.  An explicit
    ``polarizability`` table in the scene overrides all of this.
    """
    if obj.polarizability is not None:
        p = obj.polarizability
        return {key: np.asarray(p[key], dtype=np.float64) for key in ("k", "alpha", "beta",
                                                                      "gamma")}
    out = _heuristic_polarizability(obj)
    if obj.gain_jitter != 1.0 or obj.decay_jitter != 1.0:
        # k scales the amplitude; time constants scale together (shape kept)
        f = obj.decay_jitter
        out["k"] = out["k"] * obj.gain_jitter * f ** out["beta"]
        out["alpha"] = out["alpha"] * f
        out["gamma"] = out["gamma"] * f
    return out


def _heuristic_polarizability(obj: BuriedObject) -> dict[str, np.ndarray]:
    zero = {"k": np.zeros(3), "alpha": np.ones(3) * 1e-5, "beta": np.ones(3),
            "gamma": np.ones(3)}
    if obj.metal_mass <= 0 or obj.metal == "none":
        return zero
    sigma, mur, rho_m = METALS[obj.metal]
    r = 0.5 * obj.metal_size
    vol = obj.metal_mass / rho_m
    if obj.metal_shape == "shell":
        fill = 1.0
        gamma = MU0 * mur * sigma * obj.metal_thickness * r / 2.0
    else:
        fill = min(1.0, vol / (4.0 / 3.0 * math.pi * r**3))
        gamma = MU0 * mur * sigma * obj.metal_thickness**2
    gamma = min(max(gamma, 3e-6), 0.05)
    amp = 2.0 * math.pi * r**3 * fill ** (1.0 / 3.0)
    ratio, gfac = {
        "compact": ((1.0, 0.8, 0.8), (1.0, 1.0, 1.0)),
        "plate": ((1.0, 0.25, 0.25), (1.0, 0.3, 0.3)),
        "rod": ((1.0, 0.3, 0.3), (1.0, 0.5, 0.5)),
        "shell": ((1.0, 0.6, 0.6), (1.0, 0.7, 0.7)),
    }[obj.metal_shape]
    g = np.maximum(gamma * np.asarray(gfac), 3e-6)
    alpha = 0.2 * g
    beta = np.full(3, 1.0 if mur > 1.0 else 0.5)
    # k chosen so that L(0) = amp * ratio
    k = amp * np.asarray(ratio) * alpha**beta
    return {"k": k, "alpha": alpha, "beta": beta, "gamma": g}


def _body_axes(obj: BuriedObject) -> np.ndarray:
    """3 x 3 array, rows are the body axes (axis, and two perpendiculars)."""
    u = obj.axis
    ref = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    v = np.cross(u, ref)
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    return np.stack([u, v, w])


def dipole_response(coil_radius: float, cx: np.ndarray, cy: np.ndarray, cz: np.ndarray,
                    ox: np.ndarray, oy: np.ndarray, oz: np.ndarray, axes: np.ndarray,
                    curves: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
    """Monostatic induced-dipole response, summed over objects.

    Parameters
    ----------
    coil_radius : float
    cx, cy, cz : (n,) coil centre positions (cz = height, ground at 0).
    ox, oy, oz : (m,) dipole positions (oz negative below ground).
    axes : (m, 3, 3) body axes per object (rows).
    curves : (m, 3, g) principal polarizabilities at the gate times.
    reach : (m,) optional horizontal distance beyond which an object is ignored
        (decided per reading, so the result does not depend on how readings
        are grouped into calls).

    Returns
    -------
    (n, g) ndarray, sum over objects of ``sum_i (h . u_i)^2 L_i(t_g)``.
    """
    dx = ox[None, :] - cx[:, None]
    dy = oy[None, :] - cy[:, None]
    dz = oz[None, :] - cz[:, None]
    rho = np.hypot(dx, dy)
    hr, hz = loop_field(coil_radius, rho, dz)
    safe = np.where(rho > 0, rho, 1.0)
    hx = hr * dx / safe
    hy = hr * dy / safe
    # projections on the body axes: (n, m, 3)
    proj = (hx[..., None] * axes[None, :, :, 0] + hy[..., None] * axes[None, :, :, 1]
            + hz[..., None] * axes[None, :, :, 2])
    if reach is not None:
        proj *= (rho < reach[None, :])[..., None]
    n, m = proj.shape[:2]
    return (proj * proj).reshape(n, 3 * m) @ curves.reshape(3 * m, -1)


def sphere_modes_curve(t: np.ndarray, amp: np.ndarray, gamma: np.ndarray,
                       n_modes: int = 40) -> np.ndarray:
    """``amp * mean_k exp(-k^2 t / gamma)``: the eddy-current modes of a sphere
    (slowest time constant ``gamma``), broadcast over the last axis = t."""
    t = np.asarray(t, dtype=np.float64)
    k2 = (np.arange(1, n_modes + 1, dtype=np.float64) ** 2)
    g = np.asarray(gamma, dtype=np.float64)[..., None, None]
    modes = np.exp(-k2[:, None] * t[None, :] / g).mean(axis=-2)
    return np.asarray(amp, dtype=np.float64)[..., None] * modes


def soil_response(gate_times: np.ndarray, coil_radius: float, height: np.ndarray,
                  viscosity: np.ndarray, conductivity: float = 0.0,
                  band: tuple[float, float] | None = None,
                  pulse_length: float = 0.0) -> np.ndarray:
    """Soil response (before ``gain``): viscous ``dchi * t_ref/t * a^3/(a^2+4h^2)^1.5``
    plus conductive ``5e-6 sigma^1.5 (t_ref/t)^2.5 a^2/(a^2+4h^2)``; shape (n, g).

    ``band = (tau_min, tau_max)``: relaxation times only within the band, the
    1/t multiplied by ``exp(-t/tau_max) - exp(-t/tau_min)``.  ``pulse_length``
    T > 0: the response to a pulse of that on-time, each law ``f(t) - f(t + T)``
    (the switch-off minus the switch-on T earlier; 0: a step-off)."""
    a = coil_radius
    h = np.asarray(height, dtype=np.float64)[:, None]
    tg = np.asarray(gate_times, dtype=np.float64)[None, :]
    geom = a**3 / (a * a + 4.0 * h * h) ** 1.5

    def viscous(t: np.ndarray) -> np.ndarray:
        shape = T_REF / t
        if band is not None:
            shape = shape * (np.exp(-t / band[1]) - np.exp(-t / band[0]))
        return shape

    shape = viscous(tg)
    if pulse_length > 0:
        shape = shape - viscous(tg + pulse_length)
    out = np.asarray(viscosity, dtype=np.float64)[:, None] * shape * geom
    if conductivity > 0:
        cond = (T_REF / tg) ** 2.5
        if pulse_length > 0:
            cond = cond - (T_REF / (tg + pulse_length)) ** 2.5
        out = out + 5e-6 * conductivity**1.5 * cond * (a * a / (a * a + 4.0 * h * h))
    return out


def _step_off_curves(t: np.ndarray, obj: BuriedObject, p: dict[str, np.ndarray],
                     decay: str) -> np.ndarray:
    """An object's step-off response along its 3 principal axes at times ``t``:
    its eddy-current decay (``decay``: Pasion–Oldenburg or sphere modes) plus
    the viscous magnetisation of a magnetic one; (3, len(t))."""
    if decay == "sphere-modes":
        curve = sphere_modes_curve(t, p["k"] * p["alpha"] ** (-p["beta"]), p["gamma"])
    else:
        curve = polarizability_curve(t, p["k"], p["alpha"], p["beta"], p["gamma"])
    if obj.magnetic_viscosity > 0:
        vol = 4.0 / 3.0 * math.pi * (0.5 * obj.size) ** 3
        curve = curve + (vol * obj.magnetic_viscosity * T_REF / t)[None, :]
    return curve


class EMIModel:
    """Per-scene precomputation and per-block synthesis of EMI readings."""

    _PINK_TAUS = (0.01, 0.1, 1.0, 10.0, 100.0)

    def __init__(self, scene: Scene, seed: int) -> None:
        self.scene = scene
        cfg = scene.emi
        self.gates = scene.gate_times
        objs = [o for o in scene.objects
                if (o.metal_mass > 0 and o.metal != "none") or o.magnetic_viscosity > 0
                or o.polarizability is not None]
        self.objects = objs
        m, g = len(objs), len(self.gates)
        self.ox = np.array([o.x for o in objs], dtype=float)
        self.oy = np.array([o.y for o in objs], dtype=float)
        self.oz = -np.array([o.metal_depth for o in objs], dtype=float)
        self.axes = np.zeros((m, 3, 3))
        self.curves = np.zeros((m, 3, g))
        self.reach = np.zeros(m)
        pulse = cfg.pulse_length
        decay = scene.physics.emi_decay
        for j, o in enumerate(objs):
            self.axes[j] = _body_axes(o)
            p = object_polarizability(o)
            # a pulse of on-time T: the step-off response minus the one that the
            # switch-on T earlier would give
            step = _step_off_curves(self.gates, o, p, decay)
            self.curves[j] = step
            if pulse > 0:
                self.curves[j] -= _step_off_curves(self.gates + pulse, o, p, decay)
            # ignore an object where its response is below 1 % of the white noise:
            # peak P (coil 5 cm above ground, right over it) falling as (z/r)^6;
            # from the step-off response, which bounds a pulse's and which the
            # continuous-wave model's reach (cw.py) must not depend on
            a, z = cfg.coil_radius, 0.05 - self.oz[j]
            peak = cfg.gain * (a * a / (2 * (a * a + z * z) ** 1.5)) ** 2 * np.abs(
                step[:, 0]).max()
            floor = 0.01 * max(cfg.noise, 1e-6)
            far = z * max(peak / floor, 1.0) ** (1.0 / 6.0)
            self.reach[j] = min(max(far, 3.0 * a), 5.0) + 0.5 * max(o.size, o.metal_size)
        rng = np.random.default_rng(np.random.SeedSequence([scene.layout_seed, 0x501]))
        self._soil_field = RandomField2D(rng, 0.15, 3.0)
        self._rough = RandomField2D(rng, 0.05, 1.0)
        # instrument processes depend on the run seed
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE41]))
        self._drift = SmoothProcess(rng, 1.0 / 900.0, 1.0 / 30.0, 6)
        self._mains_phase = float(rng.uniform(0, 2 * math.pi))
        self.profile = np.sqrt(self.gates[0] / self.gates)  # later gates: smaller

    def viscosity_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Soil viscous susceptibility at lane positions (heterogeneous, >= 0)."""
        s = self.scene.soil
        return np.maximum(s.viscosity * (1.0 + s.heterogeneity * self._soil_field(x, y)), 0.0)

    def ground_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Local ground surface height (m) from roughness."""
        return self.scene.soil.roughness * self._rough(x, y)

    def clean(self, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Noise-free response (volts) at head positions: objects + soil; (n, g)."""
        cfg = self.scene.emi
        n = len(x)
        hg = np.maximum(h - self.ground_height(x, y), 0.002)
        ph = self.scene.physics
        band = ((ph.soil_tau_min, ph.soil_tau_max) if ph.soil_relaxation == "band-limited"
                else None)
        out = cfg.soil_gain * soil_response(self.gates, cfg.coil_radius, hg,
                                            self.viscosity_at(x, y),
                                            self.scene.soil.conductivity, band,
                                            cfg.pulse_length)
        if len(self.objects) and n:
            lo_x, hi_x = x.min(), x.max()
            lo_y, hi_y = y.min(), y.max()
            near = ((self.ox > lo_x - self.reach) & (self.ox < hi_x + self.reach)
                    & (self.oy > lo_y - self.reach) & (self.oy < hi_y + self.reach))
            if near.any():
                out = out + dipole_response(cfg.coil_radius, x, y, h, self.ox[near],
                                            self.oy[near], self.oz[near], self.axes[near],
                                            self.curves[near], self.reach[near])
        return out * cfg.gain

    def instrument(self, t: np.ndarray, rng: np.random.Generator,
                   state: dict | None = None) -> np.ndarray:
        """Drift, 1/f, mains and white noise (volts) at times t (s).

        The 1/f part is a filter whose state is carried in ``state`` from one
        block to the next (a fresh dict starts a new run).
        """
        cfg = self.scene.emi
        n, g = len(t), len(self.gates)
        dt = 1.0 / cfg.rate
        out = np.empty((n, g))
        common = cfg.drift * self._drift(t)
        if state is None:
            state = {}
        pink_state = state.setdefault("pink", np.zeros(len(self._PINK_TAUS)))
        if cfg.pink_noise > 0 and n:
            w = rng.standard_normal((len(self._PINK_TAUS), n))
            pink = np.zeros(n)
            for i, tau in enumerate(self._PINK_TAUS):
                a = math.exp(-dt / tau)
                b = math.sqrt(1.0 - a * a)
                y, zf = _signal.lfilter([b], [1.0, -a], w[i], zi=[a * pink_state[i]])
                pink_state[i] = y[-1]
                pink += y
            common = common + cfg.pink_noise * pink / math.sqrt(len(self._PINK_TAUS))
        if cfg.mains > 0:
            common = common + cfg.mains * np.sin(2 * math.pi * cfg.mains_frequency * t
                                                 + self._mains_phase)
        out[:] = common[:, None] * self.profile[None, :]
        out += cfg.noise * self.profile[None, :] * rng.standard_normal((n, g))
        return out
