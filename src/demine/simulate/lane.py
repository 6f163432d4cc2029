"""Simulate a lane: every stream block by block, deterministic given a seed.

:class:`LaneSimulator` produces the EMI readings, radar traces and tracker
fixes of one run over a scene in fixed blocks (one second of each stream by
default), in order.  The same blocks feed :func:`simulate_lane` (whole arrays
in memory, for tests, demos and training) and the simulated serial devices
(:mod:`demine.simulate.device`), so a recording made through the serial path
holds the same numbers as the Python API gives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._params import check_number
from ..errors import ConfigError
from .cw import CWModel
from .emi import EMIModel
from .gpr import GPRModel
from .scene import Scene, load_scene
from .trajectory import SmoothProcess, Trajectory, lane_to_geo, local_frame

__all__ = ["ALL_STREAMS", "LaneSimulator", "SimulationResult", "simulate_lane", "STREAMS"]

#: Streams of the dual-sensor rig, produced by default.
STREAMS = ("emi", "gpr", "gps")
#: Every stream the simulator can produce ("cw": a continuous-wave detector's
#: amplitude and phase, what the ``ascii-md`` driver reads).
ALL_STREAMS = (*STREAMS, "cw")
_STREAM_IDS = {"emi": 1, "gpr": 2, "gps": 3, "cw": 4}
#: Device clock offsets at the start of a run (µs since the device powered up).
_CLOCK_OFFSET_US = {"emi": 41_234_567, "gpr": 38_765_432, "cw": 1_234_567}


class LaneSimulator:
    """Block-by-block simulation of one run over a scene.

    Parameters
    ----------
    scene : Scene, str or Path
        A scene, a scene file or the name of a shipped scene.
    seed : int
        Seed of everything random in the run (noise, sweep irregularities,
        tracker noise).  The layout of the scene (random clutter, soil
        heterogeneity) comes from the scene's ``layout_seed``.
    block_seconds : float
        Length of the blocks the streams are produced in.  Results depend on
        it only through the random draws, so keep the default for
        reproducibility.
    """

    def __init__(self, scene: Scene | str | Path, seed: int = 0,
                 block_seconds: float = 1.0) -> None:
        self.scene = load_scene(scene)
        if not block_seconds > 0:
            raise ConfigError(f"block_seconds must be > 0, got {block_seconds}")
        # numpy's seeds are non-negative integers
        self.seed = check_number("simulation", "seed", seed, lo=0, integer=True)
        self.block_seconds = float(block_seconds)
        self.trajectory = Trajectory(self.scene, self.seed)
        self._emi: EMIModel | None = None
        self._gpr: GPRModel | None = None
        self._cw: CWModel | None = None

    @property
    def emi_model(self) -> EMIModel:
        if self._emi is None:
            self._emi = EMIModel(self.scene, self.seed)
        return self._emi

    @property
    def gpr_model(self) -> GPRModel:
        if self._gpr is None:
            self._gpr = GPRModel(self.scene, self.seed)
        return self._gpr

    @property
    def cw_model(self) -> CWModel:
        if self._cw is None:
            self._cw = CWModel(self.scene, self.seed, self.emi_model)
        return self._cw

    @property
    def coverage_duration(self) -> float:
        """Seconds the sweep pattern takes to cover the lane once."""
        return self.trajectory.duration

    def duration_for(self, sweeps: float) -> float:
        """Seconds taken by ``sweeps`` passes (swings, or lines for line patterns)."""
        return float(sweeps) * self.trajectory.pass_time

    def rate(self, stream: str) -> float:
        """Readings (traces, fixes) per second of ``stream``."""
        return {"emi": self.scene.emi.rate, "gpr": self.scene.gpr.rate,
                "gps": self.scene.gps.rate, "cw": self.scene.cw.rate}[self._check(stream)]

    @staticmethod
    def _check(stream: str) -> str:
        if stream not in ALL_STREAMS:
            raise ConfigError(f"unknown stream {stream!r}: one of {', '.join(ALL_STREAMS)}")
        return stream

    def n_frames(self, stream: str, duration: float) -> int:
        """Frames of ``stream`` in ``duration`` seconds."""
        return int(math.floor(duration * self.rate(stream) + 1e-9))

    def times(self, stream: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Seconds from the start, and UTC ns, of frames ``start:stop``."""
        i = np.arange(start, stop, dtype=np.int64)
        rate = self.rate(stream)
        ns_rel = np.rint(i * (1e9 / rate)).astype(np.int64)
        return ns_rel / 1e9, self.scene.start_time_ns + ns_rel

    def _clock_us(self, stream: str, t: np.ndarray) -> np.ndarray:
        ppm = {"emi": self.scene.emi.clock_ppm, "gpr": self.scene.gpr.clock_ppm,
               "cw": self.scene.cw.clock_ppm}[stream]
        return (_CLOCK_OFFSET_US[stream]
                + np.floor(t * 1e6 * (1.0 + ppm * 1e-6))).astype(np.int64)

    def iter_blocks(self, stream: str, duration: float | None = None) -> Iterator[dict]:
        """Yield the frames of ``stream`` block by block (dicts of arrays).

        ``duration=None`` runs for ever (the sweep pattern repeats after it has
        covered the lane).  Fields: EMI ``time`` (UTC ns), ``samples`` float32
        volts (n, gates), ``x``/``y``/``z`` (true head position, lane metres,
        z = height above ground), ``sequence``, ``device_time_us``, ``status``;
        GPR the same with int16/int32 ``samples`` and ``encoder``,
        ``stacking``; GPS ``time`` (epoch), ``lon``, ``lat``, ``alt``,
        ``fix_quality``, ``satellites``, ``hdop``, ``speed_knots``,
        ``course_deg`` and the true ``x``/``y``/``z``.
        """
        self._check(stream)
        per_block = max(1, int(round(self.block_seconds * self.rate(stream))))
        total = None if duration is None else self.n_frames(stream, duration)
        gen = {"emi": self._emi_block, "gpr": self._gpr_block, "gps": self._gps_block,
               "cw": self._cw_block}[stream]
        state: dict[str, Any] = {}
        k = 0
        while True:
            start = k * per_block
            stop = start + per_block if total is None else min(start + per_block, total)
            if stop <= start:
                return
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, _STREAM_IDS[stream], k]))
            # always draw a whole block, so that a shorter run is a prefix of a longer one
            block = gen(start, start + per_block, rng, state)
            if stop < start + per_block:
                block = {key: v[: stop - start] for key, v in block.items()}
            yield block
            k += 1

    # ------------------------------------------------------------------ streams
    def _emi_block(self, start: int, stop: int, rng: np.random.Generator,
                   state: dict) -> dict:
        model = self.emi_model
        t, tns = self.times("emi", start, stop)
        x, y, h = self.trajectory(t)
        volts = model.clean(x, y, h) + model.instrument(t, rng, state)
        fs = self.scene.emi.full_scale
        over = np.any(np.abs(volts) >= fs, axis=1)
        if over.any():  # the receiver saturates: clipped, status bit 0 (overrange)
            volts = np.clip(volts, -fs, fs)
        return {
            "time": tns, "samples": volts.astype(np.float32), "x": x, "y": y, "z": h,
            "sequence": np.arange(start, stop, dtype=np.int64),
            "device_time_us": self._clock_us("emi", t),
            "status": over.astype(np.uint16),
        }

    def _cw_block(self, start: int, stop: int, rng: np.random.Generator,
                  state: dict) -> dict:
        t, tns = self.times("cw", start, stop)
        x, y, h = self.trajectory(t)
        return {
            "time": tns, "samples": self.cw_model.readings(t, x, y, h, rng),
            "x": x, "y": y, "z": h,
            "sequence": np.arange(start, stop, dtype=np.int64),
            "device_time_us": self._clock_us("cw", t),
        }

    def _gpr_block(self, start: int, stop: int, rng: np.random.Generator,
                   state: dict) -> dict:
        model = self.gpr_model
        t, tns = self.times("gpr", start, stop)
        x, y, h = self.trajectory(t)
        traces = model.quantise(model.clean(t, x, y, h), rng)
        info = np.iinfo(traces.dtype)
        over = np.any((traces == info.max) | (traces == info.min), axis=1)
        # survey-wheel-like distance count along the path
        px = np.concatenate([[state.get("x", x[0])], x])
        py = np.concatenate([[state.get("y", y[0])], y])
        path = state.get("path", 0.0) + np.cumsum(np.hypot(np.diff(px), np.diff(py)))
        state.update(x=x[-1], y=y[-1], path=path[-1])
        cfg = self.scene.gpr
        enc = np.floor(path / cfg.encoder_resolution).astype(np.int64)
        enc = ((enc + 2**31) % 2**32 - 2**31).astype(np.int32)
        return {
            "time": tns, "samples": traces, "x": x, "y": y, "z": h,
            "sequence": np.arange(start, stop, dtype=np.int64),
            "device_time_us": self._clock_us("gpr", t),
            "encoder": enc, "stacking": np.full(stop - start, cfg.stacking, dtype=np.uint16),
            "status": over.astype(np.uint16),  # bit 0: overrange (clipped samples)
        }

    def _gps_block(self, start: int, stop: int, rng: np.random.Generator,
                   state: dict) -> dict:
        cfg = self.scene.gps
        if "noise" not in state:
            r = np.random.default_rng(np.random.SeedSequence([self.seed, 0x695]))
            state["noise"] = [SmoothProcess(r, 0.05, 2.0, 6) for _ in range(3)]
        t, tns = self.times("gps", start, stop)
        x, y, h = self.trajectory(t)
        n = stop - start
        nx, ny, nz = state["noise"]
        sig = cfg.position_noise
        mx = x + sig * (0.9 * nx(t) + 0.3 * rng.standard_normal(n))
        my = y + sig * (0.9 * ny(t) + 0.3 * rng.standard_normal(n))
        mz = h + 1.5 * sig * (0.9 * nz(t) + 0.3 * rng.standard_normal(n))
        lon, lat = lane_to_geo(self.scene, mx, my)
        dt = 0.01
        x2, y2, _ = self.trajectory(t + dt)
        vx, vy = (x2 - x) / dt, (y2 - y) / dt
        frame = local_frame(self.scene)
        b = math.radians(frame.bearing_deg)
        ve = vx * math.cos(b) + vy * math.sin(b)
        vn = -vx * math.sin(b) + vy * math.cos(b)
        return {
            "time": tns, "lon": lon, "lat": lat,
            "alt": self.scene.anchor_alt + mz,
            "fix_quality": np.full(n, cfg.fix_quality, dtype=np.int8),
            "satellites": np.full(n, cfg.satellites, dtype=np.int16),
            "hdop": np.full(n, cfg.hdop, dtype=np.float32),
            "speed_knots": np.hypot(ve, vn) * 3600.0 / 1852.0,
            "course_deg": np.degrees(np.arctan2(ve, vn)) % 360.0,
            "x": x, "y": y, "z": h,
            "sequence": np.arange(start, stop, dtype=np.int64),
        }


@dataclass
class SimulationResult:
    """Whole arrays of a simulated run (see :meth:`LaneSimulator.iter_blocks` for fields)."""

    scene: Scene
    seed: int
    duration: float
    streams: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def emi(self) -> dict[str, np.ndarray]:
        return self.streams["emi"]

    @property
    def gpr(self) -> dict[str, np.ndarray]:
        return self.streams["gpr"]

    @property
    def gps(self) -> dict[str, np.ndarray]:
        return self.streams["gps"]

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Ground-truth table (columns for ``RecordingWriter.add_truth``)."""
        return self.scene.truth()

    @property
    def gate_times(self) -> np.ndarray:
        return self.scene.gate_times

    @property
    def sample_interval(self) -> float:
        """GPR sample interval, s."""
        return self.scene.gpr.time_window / self.scene.gpr.samples

    def write(self, path: str | Path, *, overwrite: bool = False, **writer_kw: Any) -> Path:
        """Write the run as a demine recording (streams, positions, truth).

        Streams are named ``emi``, ``gpr`` and ``gps``; x/y/z of each frame are
        the true head positions (lane frame, which is local east/north when
        the scene's bearing is 0), and the lane's frame is stored in the root
        attributes ``origin_lon`` etc.
        """
        from ..recording import RecordingWriter

        sc = self.scene
        attrs = dict(local_frame(sc).attrs())
        attrs.update({"simulated": True, "scene": sc.name, "seed": self.seed,
                      "lane_width": sc.width, "lane_length": sc.length,
                      "soil_permittivity": sc.soil.permittivity,
                      "soil_viscosity": sc.soil.viscosity,
                      "physics": json.dumps(asdict(sc.physics), sort_keys=True)})
        if sc.emi.pulse_length:
            # the truth, as soil_viscosity is; the EMI stream's calibration does
            # not declare it (a detector's data would not), so the ground
            # balance has to find it
            attrs["emi_pulse_length"] = sc.emi.pulse_length
        attrs.update(writer_kw.pop("attrs", {}) or {})
        # (one lane per layout: its objects and soil; lanes of one layout under
        # other noise seeds are the same ground, one group to cross-validation)
        writer_kw.setdefault("lane_id", f"{sc.name}-layout{sc.layout_seed}")
        writer_kw.setdefault("site", "simulated")
        writer_kw.setdefault("notes", sc.description[:500])
        with RecordingWriter(path, overwrite=overwrite, attrs=attrs, **writer_kw) as w:
            handles = {}
            if "emi" in self.streams:
                handles["emi"] = w.add_stream(
                    "emi", "emi", gate_times=sc.gate_times, device=sc.emi.device,
                    driver="emi-pi", units="V",
                    calibration={"coil_radius": sc.emi.coil_radius, "rate": sc.emi.rate},
                    attrs={"sample_rate": sc.emi.rate})
            if "gpr" in self.streams:
                handles["gpr"] = w.add_stream(
                    "gpr", "gpr", n_channels=sc.gpr.samples, dtype=sc.gpr.dtype,
                    device=sc.gpr.device, driver="gpr", units="counts",
                    sample_interval=self.sample_interval,
                    calibration={"frequency": sc.gpr.frequency,
                                 "time_zero": sc.gpr.direct_wave_delay,
                                 "antenna_height": sc.sweep.height,
                                 "velocity": sc.soil.velocity},
                    attrs={"sample_rate": sc.gpr.rate, "stacking": sc.gpr.stacking})
            if "cw" in self.streams:
                handles["cw"] = w.add_stream(
                    "cw", "emi", n_channels=2, device=sc.cw.device, driver="ascii-md",
                    units="V, deg",
                    attrs={"sample_rate": sc.cw.rate, "frequency": sc.cw.frequency,
                           "columns": "amplitude,phase"})
            if "gps" in self.streams:
                handles["gps"] = w.add_stream("gps", "gps", device=sc.gps.device,
                                              driver="nmea", units="deg",
                                              attrs={"sample_rate": sc.gps.rate})
            # the truth is known, also when the scene buries nothing (a blank lane)
            w.add_truth(self.truth)
            for name, s in self.streams.items():
                if name == "gps":
                    handles[name].append(time=s["time"], sequence=s["sequence"],
                                         x=s["x"], y=s["y"], z=s["z"], lon=s["lon"],
                                         lat=s["lat"], alt=s["alt"],
                                         fix_quality=s["fix_quality"],
                                         satellites=s["satellites"], hdop=s["hdop"])
                else:
                    handles[name].append(s["samples"], time=s["time"], sequence=s["sequence"],
                                         x=s["x"], y=s["y"], z=s["z"])
        return Path(path)


def simulate_lane(scene: Scene | str | Path, duration: float | None = None, *, seed: int = 0,
                  sweeps: float | None = None,
                  streams: tuple[str, ...] | list[str] = STREAMS) -> SimulationResult:
    """Simulate a run over a scene and return every stream as whole arrays.

    Parameters
    ----------
    scene : Scene, str or Path
        A scene, a scene TOML file or the name of a shipped scene.
    duration : float, optional
        Seconds to simulate.  Default: one full coverage of the lane by the
        scene's sweep pattern (or ``sweeps`` passes).
    seed : int
        Run seed; the same seed gives the same arrays, bit for bit.
    sweeps : float, optional
        Number of passes (side-to-side swings, or lines) instead of ``duration``.
    streams : sequence of {"emi", "gpr", "gps", "cw"}
        Which streams to produce (default the dual-sensor rig's three; "cw" is
        a continuous-wave detector's amplitude and phase).

    Returns
    -------
    SimulationResult
        ``result.emi["samples"]`` (n, gates) float32 volts, ``result.gpr["samples"]``
        (n, samples) int16, ``result.gps[...]``, each with ``time`` (UTC ns) and
        the true head ``x``, ``y``, ``z``; ``result.truth``;
        ``result.write(path)`` makes a recording.
    """
    sim = LaneSimulator(scene, seed)
    if duration is not None and sweeps is not None:
        raise ConfigError("give duration or sweeps, not both")
    if sweeps is not None:
        duration = sim.duration_for(sweeps)
    if duration is None:
        duration = sim.coverage_duration
    if not (duration > 0) or not math.isfinite(duration):
        raise ConfigError(f"duration must be a positive number of seconds, got {duration}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in streams:
        blocks = list(sim.iter_blocks(name, duration))
        if not blocks:
            continue
        out[name] = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    return SimulationResult(scene=sim.scene, seed=sim.seed, duration=float(duration),
                            streams=out)
