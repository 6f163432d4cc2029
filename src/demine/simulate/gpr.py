"""Ground-penetrating radar forward model (ray/Born, vectorised NumPy).

Each trace is a sum of Ricker wavelets (centre frequency ``f``) at the arrival
times of: the direct wave (antenna coupling, time zero), the ground bounce at
``t_gb = t0 + 2 h / c``, flat soil layers, and every buried scatterer at

    t = t_gb + (2 / v) * r,     v = c / sqrt(eps_soil),

with ``r`` the distance from the surface point below the antenna to the
scatterer's nearest surface (a point for small bodies, a flat disc top of
diameter ``size``, or a horizontal segment for rods and roots), so that a
compact object draws the diffraction hyperbola ``t(x) = t_gb + 2/v sqrt((x -
x0)^2 + z^2)`` with its apex at the object's position and top depth.

Amplitudes: reflection coefficient ``(sqrt(eps_soil) - sqrt(eps_obj)) /
(sqrt(eps_soil) + sqrt(eps_obj))`` (metal and water: negative, the same sign
as the ground bounce; plastic and air: positive), surface transmission,
size/wavelength factor, geometric spreading, two-way attenuation ``exp(-2
alpha r)`` from soil conductivity, and a Gaussian antenna beam.  Added:
antenna ringing (the same on every trace), a slowly varying "wow",
a slow time-zero drift, soil texture scatterers (weak random point
reflectors, not in the truth table) and white noise.  Traces are quantised to
int16/int32 counts.
"""

from __future__ import annotations

import math

import numpy as np

from .scene import Scene
from .trajectory import RandomField2D, SmoothProcess

__all__ = ["GPRModel", "ricker", "gaussian_derivative", "refracted_distance",
           "reflection_coefficient", "C0"]

C0 = 299_792_458.0


def ricker(tau: np.ndarray, f: float) -> np.ndarray:
    """Ricker wavelet of peak frequency ``f`` (Hz), unit peak at ``tau = 0``."""
    a = (math.pi * f * np.asarray(tau)) ** 2
    return (1.0 - 2.0 * a) * np.exp(-a)


def gaussian_derivative(tau: np.ndarray, f: float) -> np.ndarray:
    """First derivative of a Gaussian with peak frequency ``f``, unit peak amplitude
    (antisymmetric: negative lobe first, zero crossing at ``tau = 0``)."""
    s = 1.0 / (2.0 * math.pi * f)
    x = np.asarray(tau) / s
    return x * np.exp(0.5 - 0.5 * x * x)


def refracted_distance(h: np.ndarray, rho: np.ndarray, d: np.ndarray, n: float,
                       iterations: int = 8) -> np.ndarray:
    """Equivalent soil distance of the refracted path antenna -> scatterer.

    The antenna is ``h`` above the surface, the scatterer ``rho`` away
    horizontally and ``d`` deep, in soil of refractive index ``n = sqrt(eps)``.
    The ray crosses the surface at ``x`` from below the antenna where Snell's
    law ``sin(i) = n sin(r)`` holds (Newton iterations on the travel time);
    returns ``(air path * 1/n) + soil path - h/n``, i.e. the soil path length
    that the straight model would need for the same time, so that the air
    part of the vertical path stays in the ground bounce time.
    """
    h = np.maximum(np.asarray(h, dtype=np.float64), 1e-6)
    rho = np.asarray(rho, dtype=np.float64)
    d = np.maximum(np.asarray(d, dtype=np.float64), 1e-6)
    # start from the straight-line crossing point, then Newton on
    # f(x) = x / sqrt(h^2 + x^2) - n (rho - x) / sqrt(d^2 + (rho - x)^2)
    x = rho * h / (h + d)
    for _ in range(iterations):
        ra = np.sqrt(h * h + x * x)
        rs = np.sqrt(d * d + (rho - x) ** 2)
        f = x / ra - n * (rho - x) / rs
        df = h * h / ra**3 + n * d * d / rs**3
        x = np.clip(x - f / df, 0.0, rho)
    ra = np.sqrt(h * h + x * x)
    rs = np.sqrt(d * d + (rho - x) ** 2)
    return (ra - h) / n + rs


def reflection_coefficient(eps1: np.ndarray | float, eps2: np.ndarray | float) -> np.ndarray:
    """Normal-incidence reflection coefficient from medium 1 into medium 2."""
    n1 = np.sqrt(np.asarray(eps1, dtype=np.float64))
    n2 = np.sqrt(np.asarray(eps2, dtype=np.float64))
    return (n1 - n2) / (n1 + n2)


class GPRModel:
    """Per-scene precomputation and per-block synthesis of radar traces."""

    _OVER = 64  # wavelet table oversampling (sub-sample event timing to dt/64)

    def __init__(self, scene: Scene, seed: int) -> None:
        self.scene = scene
        cfg = scene.gpr
        soil = scene.soil
        self.dt = cfg.time_window / cfg.samples
        self.v = soil.velocity
        self.r_ground = float(reflection_coefficient(1.0, soil.permittivity))
        self.t2 = 1.0 - self.r_ground**2
        lam = self.v / cfg.frequency
        objs = list(scene.objects)
        rng = np.random.default_rng(np.random.SeedSequence([scene.layout_seed, 0x6B2]))
        # soil texture: weak random point scatterers (not targets)
        area_w, area_l = scene.width + 1.0, scene.length + 1.0
        n_tex = int(round(soil.radar_clutter_density * area_w * area_l))
        tex_x = rng.uniform(-0.5, scene.width + 0.5, n_tex)
        tex_y = rng.uniform(-0.5, scene.length + 0.5, n_tex)
        tex_d = rng.uniform(0.01, 0.4, n_tex)
        tex_r = rng.uniform(-0.05, 0.05, n_tex)
        tex_s = rng.uniform(0.005, 0.02, n_tex)
        m = len(objs)
        self.n_targets = m
        self.ox = np.concatenate([[o.x for o in objs], tex_x]).astype(float)
        self.oy = np.concatenate([[o.y for o in objs], tex_y]).astype(float)
        self.od = np.concatenate([[o.depth for o in objs], tex_d]).astype(float)
        size = np.concatenate([[o.size for o in objs], tex_s]).astype(float)
        self.half = 0.5 * size
        refl = np.concatenate([reflection_coefficient(soil.permittivity,
                                                      [o.permittivity for o in objs]),
                               tex_r]) if m else tex_r
        self.amp0 = self.t2 * refl * size / (size + 0.5 * lam)
        # shape codes: 0 point/sphere, 1 disc, 2 rod (horizontal segment)
        code = {"sphere": 0, "disc": 1, "rod": 2}
        self.shape = np.concatenate([[code[o.shape] for o in objs],
                                     np.zeros(n_tex, dtype=int)]).astype(np.int64)
        ux, uy = [], []
        for o in objs:
            a = o.axis
            hn = math.hypot(a[0], a[1])
            ux.append(a[0] / hn if hn > 1e-9 else 1.0)
            uy.append(a[1] / hn if hn > 1e-9 else 0.0)
        self.ux = np.concatenate([ux, np.ones(n_tex)]).astype(float)
        self.uy = np.concatenate([uy, np.zeros(n_tex)]).astype(float)
        # projected half-length of rods (horizontal extent)
        hl = [0.5 * o.size * max(math.sin(math.radians(o.dip)), 0.0) if o.shape == "rod"
              else 0.0 for o in objs]
        self.half_len = np.concatenate([hl, np.zeros(n_tex)]).astype(float)
        # events far below the noise change nothing visible: skip them.  An
        # object's reflection is at most |amp0| * spread(depth) * beam(theta), so
        # beyond the angle where that falls under the floor it is not computed.
        self.floor = 0.05 * cfg.noise if cfg.noise > 0 else 1e-7
        amp_max = np.abs(self.amp0) * self.spread(self.od)
        ratio = np.maximum(amp_max / self.floor, 1.0)
        theta_lim = np.minimum(math.radians(cfg.beam_width_deg) * np.sqrt(np.log(ratio)),
                               math.radians(80.0))
        self.reach = np.where(
            amp_max > self.floor,
            np.minimum((self.od + 0.3) * np.tan(theta_lim) + self.half + self.half_len + 0.05,
                       1.5),
            -1.0)
        self.alpha = soil.attenuation
        self.beam = math.radians(cfg.beam_width_deg)
        # the same ground surface as the EMI model (same seed and draw order)
        rng2 = np.random.default_rng(np.random.SeedSequence([scene.layout_seed, 0x501]))
        RandomField2D(rng2, 0.15, 3.0)
        self._rough = RandomField2D(rng2, 0.05, 1.0)
        self._layer_field = RandomField2D(rng, 0.3, 3.0)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6B3]))
        self._t0_drift = SmoothProcess(rng, 1.0 / 300.0, 1.0 / 10.0, 6)
        self._wow_a = SmoothProcess(rng, 0.05, 2.0, 6)
        self._wow_b = SmoothProcess(rng, 0.05, 2.0, 6)
        self._ring_var = SmoothProcess(rng, 0.01, 0.5, 4)
        # layers: cumulative two-way times and amplitudes at normal incidence
        self.layers = []
        eps_above, t_acc, d_above, trans = soil.permittivity, 0.0, 0.0, self.t2
        for layer in soil.layers:
            v_above = C0 / math.sqrt(eps_above)
            t_acc += 2.0 * (layer.depth - d_above) / v_above
            r = float(reflection_coefficient(eps_above, layer.permittivity))
            self.layers.append((layer.depth, t_acc, trans * r))
            trans *= 1.0 - r * r
            eps_above, d_above = layer.permittivity, layer.depth
        self.time = np.arange(cfg.samples) * self.dt
        half_k = int(math.ceil(1.1 / (cfg.frequency * self.dt)))
        self.k = np.arange(-half_k, half_k + 2)
        # table[f, j] = ricker((k_j - f/_OVER) * dt): wavelet for an event at base + f/_OVER
        fr = np.arange(self._OVER + 1) / self._OVER
        wavelet = (gaussian_derivative if scene.physics.gpr_wavelet == "gaussian-derivative"
                   else ricker)
        self._table = wavelet((self.k[None, :] - fr[:, None]) * self.dt, cfg.frequency)
        self.refraction = bool(scene.physics.gpr_refraction)
        self.n_soil = math.sqrt(soil.permittivity)

    @staticmethod
    def spread(path: np.ndarray) -> np.ndarray:
        """Relative geometric spreading for a one-way path length (m)."""
        return 1.0 / (1.0 + path / 0.15)

    def ground_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.scene.soil.roughness * self._rough(x, y)

    def events(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, h: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All reflection events of a block: (trace index, time s, amplitude)."""
        cfg = self.scene.gpr
        n = len(x)
        idx = np.arange(n)
        t0 = cfg.direct_wave_delay + cfg.time_zero_jitter * self._t0_drift(t)
        hg = np.maximum(h - self.ground_height(x, y), 0.002)
        t_gb = t0 + 2.0 * hg / C0
        ii = [idx, idx]
        tt = [t0, t_gb]
        aa = [np.ones(n), self.r_ground * self.spread(hg)]
        for depth, t_l, amp in self.layers:
            und = 0.01 * self._layer_field(x, y)
            dd = depth + und
            ii.append(idx)
            tt.append(t_gb + t_l + 2.0 * und / self.v)
            aa.append(amp * self.spread(hg + dd) * np.exp(-2.0 * self.alpha * dd))
        if len(self.ox):
            near = ((self.ox > x.min() - self.reach) & (self.ox < x.max() + self.reach)
                    & (self.oy > y.min() - self.reach) & (self.oy < y.max() + self.reach))
            if near.any():
                sel = np.flatnonzero(near)
                dx = x[:, None] - self.ox[sel][None, :]
                dy = y[:, None] - self.oy[sel][None, :]
                # rods: distance to a horizontal segment
                ux, uy, hl = self.ux[sel], self.uy[sel], self.half_len[sel]
                along = dx * ux + dy * uy
                along_c = np.clip(along, -hl, hl)
                ex = dx - along_c * ux
                ey = dy - along_c * uy
                rho = np.hypot(ex, ey)
                mask = rho < self.reach[sel]
                ti, tj = np.nonzero(mask)
                if len(ti):
                    j = sel[tj]
                    rh = rho[ti, tj]
                    d = self.od[j]
                    rr = self.half[j]
                    shape = self.shape[j]
                    r_sphere = np.sqrt(rh**2 + (d + rr) ** 2) - rr
                    r_disc = np.sqrt(np.maximum(rh - rr, 0.0) ** 2 + d * d)
                    r_point = np.sqrt(rh**2 + d * d)
                    r = np.where(shape == 0, r_sphere, np.where(shape == 1, r_disc, r_point))
                    if self.refraction:
                        # the same nearest-surface geometry, with the bent ray's time
                        rh_eff = np.where(shape == 1, np.maximum(rh - rr, 0.0), rh)
                        d_eff = np.where(shape == 0, d + rr, d)
                        r = (refracted_distance(hg[ti], rh_eff, d_eff, self.n_soil)
                             - np.where(shape == 0, rr, 0.0))
                    theta = np.arctan2(np.maximum(rh - np.where(shape == 1, rr, 0.0), 0.0),
                                       d + hg[ti])
                    amp = (self.amp0[j] * self.spread(hg[ti] + r) * np.exp(-2 * self.alpha * r)
                           * np.exp(-((theta / self.beam) ** 2)))
                    ii.append(ti)
                    tt.append(t_gb[ti] + 2.0 * r / self.v)
                    aa.append(amp)
        return np.concatenate(ii), np.concatenate(tt), np.concatenate(aa)

    def clean(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Noise-free traces (relative amplitude, direct wave = 1); shape (n, samples)."""
        cfg = self.scene.gpr
        n, ns = len(x), cfg.samples
        ii, tt, aa = self.events(t, x, y, h)
        keep = np.abs(aa) > self.floor
        ii, tt, aa = ii[keep], tt[keep], aa[keep]
        # wavelet from a table oversampled _OVER times: event at pos = tt/dt
        pos = tt / self.dt
        base = np.floor(pos).astype(np.int64)
        frac = np.minimum(np.rint((pos - base) * self._OVER).astype(np.int64), self._OVER)
        cols = base[:, None] + self.k[None, :]
        w = (aa[:, None] * self._table[frac]).astype(np.float64)
        ok = (cols >= 0) & (cols < ns)
        if ok.all():
            flat = (ii[:, None] * ns + cols).ravel()
            wv = w.ravel()
        else:
            flat = (ii[:, None] * ns + cols)[ok]
            wv = w[ok]
        out = np.bincount(flat, weights=wv, minlength=n * ns).reshape(n, ns)
        # antenna ringing after the direct wave (same on every trace)
        if cfg.ringing > 0:
            tr = self.time - cfg.direct_wave_delay - 0.5 / cfg.frequency
            ring = np.where(tr > 0, np.sin(2 * math.pi * 0.7 * cfg.frequency * tr)
                            * np.exp(-np.maximum(tr, 0) / 1.5e-9), 0.0)
            out += cfg.ringing * (1.0 + 0.03 * self._ring_var(t))[:, None] * ring[None, :]
        if cfg.wow > 0:
            tw = self.time / cfg.time_window
            out += cfg.wow * (self._wow_a(t)[:, None] * np.exp(-self.time / 3e-9)[None, :]
                              + 0.5 * self._wow_b(t)[:, None] * tw[None, :])
        return out

    def quantise(self, traces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add white noise and convert to the device's integer counts."""
        cfg = self.scene.gpr
        noisy = traces + cfg.noise * math.sqrt(4.0 / cfg.stacking) * rng.standard_normal(
            traces.shape, dtype=np.float32)
        dtype = np.dtype(cfg.dtype)
        info = np.iinfo(dtype)
        return np.clip(np.rint(noisy * cfg.amplitude), info.min, info.max).astype(dtype)
