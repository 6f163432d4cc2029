"""Continuous-wave (induction-balance) detector forward model, as amplitude and phase.

The kind of detector hobby and lab builds print over a serial line (the
``ascii-md`` driver): a transmit coil driven at one frequency, and the
received signal's amplitude and phase.  Complex response at angular frequency
``w`` of a monostatic loop of radius ``a`` at height ``h``:

* **objects**: eddy currents as one relaxation per principal axis,
  ``-A_i (i w tau_i) / (1 + i w tau_i)`` (``A_i``, ``tau_i`` the same
  early-time magnitude and time constant as the pulse-induction model's
  Pasion–Oldenburg ``L_i(0)`` and ``gamma_i``), plus for ferrous metal a
  positive magnetisation term ``2 A_i / (1 + i w tau_i / mu_r)``; weighted by
  ``(h . u_i)^2`` like the PI model.
  Small or thin pieces (low ``w tau``) come out near 90° of phase, thick
  conductors near 180°, ferrous ones past it: the classic "phase tells the
  metal" of CW detectors.
* **soil**: magnetic susceptibility ``chi`` gives a large in-phase signal, its
  viscosity a constant quadrature part ``-dchi * pi / 2`` (log-uniform
  relaxation times), both scaled by ``a^3 / (a^2 + 4 h^2)^1.5``: the soil line
  that ground balancing removes by rotating I/Q.
* **instrument**: a fixed phase offset of the electronics, slow drift and white
  noise on I and Q.

Output per reading: amplitude (volts) and phase (degrees), as the driver's
default columns ``amplitude, phase``.
"""

from __future__ import annotations

import math

import numpy as np

from .emi import EMIModel, loop_field, object_polarizability
from .scene import METALS, Scene
from .trajectory import SmoothProcess

__all__ = ["CWModel"]


class CWModel:
    """Per-scene precomputation and per-block synthesis of CW readings."""

    def __init__(self, scene: Scene, seed: int, emi: EMIModel) -> None:
        self.scene = scene
        cfg = scene.cw
        self.emi = emi  # shares objects, body axes, soil field and ground surface
        w = 2 * math.pi * cfg.frequency
        m = len(emi.objects)
        self.resp = np.zeros((m, 3), dtype=np.complex128)
        for j, o in enumerate(emi.objects):
            p = object_polarizability(o)
            amp = p["k"] * p["alpha"] ** (-p["beta"])  # L(0), m^3
            tau = p["gamma"]
            z = 1j * w * tau
            r = -amp * z / (1 + z)
            mur = METALS[o.metal][1]
            if o.metal != "none" and mur > 1.0:
                # ferrous: magnetisation (+2x the eddy magnitude at low frequency,
                # as for a permeable sphere) that fades only when the skin depth
                # is below radius / mu_r
                r = r + 2.0 * amp / (1 + z / mur)
            if o.magnetic_viscosity > 0:
                vol = 4.0 / 3.0 * math.pi * (0.5 * o.size) ** 3
                r = r + vol * o.magnetic_viscosity * (1.0 - 1j * math.pi / 2)
            self.resp[j] = r
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC3]))
        self._drift_i = SmoothProcess(rng, 1.0 / 600.0, 1.0 / 20.0, 6)
        self._drift_q = SmoothProcess(rng, 1.0 / 600.0, 1.0 / 20.0, 6)

    def clean(self, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Noise-free complex response (volts) at head positions, shape (n,)."""
        cfg = self.scene.cw
        soil = self.scene.soil
        em = self.emi
        a = cfg.coil_radius
        hg = np.maximum(h - em.ground_height(x, y), 0.002)
        geom = a**3 / (a * a + 4.0 * hg * hg) ** 1.5
        chi = soil.magnetic_susceptibility
        out = cfg.soil_gain * geom * (chi - 1j * (math.pi / 2) * em.viscosity_at(x, y))
        if len(em.objects) and len(x):
            near = ((em.ox > x.min() - em.reach) & (em.ox < x.max() + em.reach)
                    & (em.oy > y.min() - em.reach) & (em.oy < y.max() + em.reach))
            if near.any():
                dx = em.ox[near][None, :] - x[:, None]
                dy = em.oy[near][None, :] - y[:, None]
                dz = em.oz[near][None, :] - h[:, None]
                rho = np.hypot(dx, dy)
                hr, hz = loop_field(a, rho, dz)
                safe = np.where(rho > 0, rho, 1.0)
                axes = em.axes[near]
                proj = ((hr * dx / safe)[..., None] * axes[None, :, :, 0]
                        + (hr * dy / safe)[..., None] * axes[None, :, :, 1]
                        + hz[..., None] * axes[None, :, :, 2])
                proj *= (rho < em.reach[near][None, :])[..., None]
                n, m = proj.shape[:2]
                out = out + (proj * proj).reshape(n, 3 * m) @ self.resp[near].reshape(3 * m)
        return cfg.gain * out

    def readings(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, h: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """Amplitude (V) and phase (degrees) with drift, noise and phase offset; (n, 2)."""
        cfg = self.scene.cw
        v = self.clean(x, y, h)
        v = v + cfg.drift * (self._drift_i(t) + 1j * self._drift_q(t))
        v = v + cfg.noise * (rng.standard_normal(len(t)) + 1j * rng.standard_normal(len(t)))
        v = v * np.exp(1j * math.radians(cfg.phase_offset_deg))
        return np.stack([np.abs(v), np.degrees(np.angle(v))], axis=1).astype(np.float32)
