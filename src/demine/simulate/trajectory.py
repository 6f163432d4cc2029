"""Sensor-head motion over a lane, smooth random fields, and lane <-> WGS 84.

Everything here is an analytic function of time or position (sums of
sinusoids with random frequencies and phases drawn once from a seed), so any
stream can evaluate the head position at its own sample times, block by block,
and get the same path.
"""

from __future__ import annotations

import math

import numpy as np

from ..positions import LocalFrame
from .scene import Scene

__all__ = ["SmoothProcess", "RandomField2D", "Trajectory", "lane_to_geo", "geo_to_lane",
           "local_frame"]

class SmoothProcess:
    """A zero-mean, unit-variance smooth random function of time.

    Sum of ``n`` sinusoids with log-uniform frequencies in ``[fmin, fmax]`` Hz.
    """

    def __init__(self, rng: np.random.Generator, fmin: float, fmax: float, n: int = 8) -> None:
        self.f = np.exp(rng.uniform(math.log(fmin), math.log(fmax), n))
        self.phi = rng.uniform(0.0, 2 * math.pi, n)
        self.a = math.sqrt(2.0 / n)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape)
        for f, p in zip(self.f, self.phi, strict=True):
            out += np.sin(2 * math.pi * f * t + p)
        return out * self.a


class RandomField2D:
    """A zero-mean, unit-variance smooth random field of (x, y) (random plane waves)."""

    def __init__(self, rng: np.random.Generator, lmin: float, lmax: float, n: int = 16) -> None:
        lam = np.exp(rng.uniform(math.log(lmin), math.log(lmax), n))
        th = rng.uniform(0.0, 2 * math.pi, n)
        k = 2 * math.pi / lam
        self.kx = k * np.cos(th)
        self.ky = k * np.sin(th)
        self.phi = rng.uniform(0.0, 2 * math.pi, n)
        self.a = math.sqrt(2.0 / n)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
        for kx, ky, p in zip(self.kx, self.ky, self.phi, strict=True):
            out += np.cos(kx * x + ky * y + p)
        return out * self.a


def local_frame(scene: Scene) -> LocalFrame:
    """The lane's local metric frame (:class:`demine.positions.LocalFrame`)."""
    return LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt, scene.bearing_deg)


def lane_to_geo(scene: Scene, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lane coordinates (m) to WGS 84 longitude, latitude (degrees)."""
    return local_frame(scene).to_geo(x, y)


def geo_to_lane(scene: Scene, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`lane_to_geo`."""
    return local_frame(scene).to_local(lon, lat)


class Trajectory:
    """Position of the sensor head (x, y, height above ground) as a function of time.

    ``pattern = "sweep"``: side-to-side swings of width ``sweep_width`` centred on
    the lane, slow at the ends (sinusoidal), advancing ``advance`` per swing,
    the head lifted towards the swing ends and wandering in height; small
    random irregularities in width, pace and line.  ``"lines"``: parallel
    straight lines along the lane (a cart), ``line_spacing`` apart, alternate
    directions, ``turn_time`` between lines.  ``"line"``: one line at ``line_x``.
    After the lane is covered the pattern starts again.
    """

    def __init__(self, scene: Scene, seed: int = 0) -> None:
        self.scene = scene
        sw = scene.sweep
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A7]))
        self._n = [SmoothProcess(rng, 0.02, 0.5) for _ in range(5)]
        self.start_y = sw.start_y if sw.start_y is not None else 0.0
        self.end_y = sw.end_y if sw.end_y is not None else scene.length
        if self.end_y <= self.start_y:
            from ..errors import ConfigError

            raise ConfigError(f"{scene.source}: [sweep] field 'end_y' must be > start_y")
        if sw.pattern == "sweep":
            self.width = sw.sweep_width if sw.sweep_width is not None else scene.width
            self.xc = 0.5 * scene.width
            self.half_period = self.width / sw.speed
            self.n_passes = max(1, math.ceil((self.end_y - self.start_y) / sw.advance))
            self.pass_time = self.half_period
            self.duration = self.n_passes * self.half_period
        else:
            if sw.pattern == "line":
                xs = [sw.line_x if sw.line_x is not None else 0.5 * scene.width]
            else:
                n = max(1, int(math.floor(scene.width / sw.line_spacing + 1e-9)))
                off = 0.5 * (scene.width - (n - 1) * sw.line_spacing)
                xs = list(off + sw.line_spacing * np.arange(n))
            self.lines_x = np.asarray(xs, dtype=float)
            self.line_time = (self.end_y - self.start_y) / sw.speed
            self.pass_time = self.line_time + (sw.turn_time if len(xs) > 1 else 0.0)
            self.n_passes = len(xs)
            self.duration = self.n_passes * self.pass_time

    def __call__(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head position ``(x, y, h)`` in lane metres at times ``t`` (s from start)."""
        t = np.asarray(t, dtype=np.float64)
        sw = self.scene.sweep
        tm = np.mod(t, self.duration)
        n0, n1, n2, n3, n4 = self._n
        if sw.pattern == "sweep":
            w = self.width * (1.0 + 0.04 * n1(t))
            omega = math.pi / self.half_period
            phase = omega * tm + 0.06 * n0(t)
            u = -np.cos(phase)  # -1 .. 1 across the swing
            x = self.xc + 0.5 * w * u
            y = self.start_y + sw.advance * tm / self.half_period + 0.004 * n2(t)
            h = sw.height + sw.lift * u**4 + sw.height_variation * n3(t)
        else:
            k = np.minimum((tm // self.pass_time).astype(np.int64), self.n_passes - 1)
            tl = tm - k * self.pass_time
            moving = tl < self.line_time
            s = np.minimum(tl, self.line_time) * sw.speed
            fwd = (k % 2) == 0
            y = np.where(fwd, self.start_y + s, self.end_y - s)
            x0 = self.lines_x[k]
            if self.n_passes > 1:
                x1 = self.lines_x[np.minimum(k + 1, self.n_passes - 1)]
                frac = np.clip((tl - self.line_time) / max(sw.turn_time, 1e-9), 0, 1)
                x = np.where(moving, x0, x0 + (x1 - x0) * frac)
            else:
                x = x0.astype(float)
            x = x + 0.002 * n4(t)
            h = sw.height + sw.height_variation * n3(t)
        h = np.maximum(h, 0.005)
        return x, y, h
