"""Simulator speed: how much faster than real time each stream is produced.

Measured side by side in the same run, on one core:

* demine's vectorised forward models (:func:`demine.simulate.simulate_lane`),
  per stream and scene, reported as simulated seconds per wall second
  ("x real time") at the reference rates (EMI 1000 readings/s x 16 gates, CW 50 Hz,
  radar 400 traces/s x 512 samples, tracker 10 Hz);
* the same physics written straightforwardly, one reading (or trace) at a time
  in a Python loop over objects and events (the obvious way to write a forward
  model), timed on a slice and scaled;
* a simulated device on a pseudo-terminal in fast mode, read by pyserial and
  decoded by the driver: the end-to-end rate of the serial path.

Run alone with ``python benchmarks/bench_simulate.py``, or through
``python benchmarks/run.py simulate``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

SCENES = ("benign-soil", "magnetic-laterite", "battle-area")
SECONDS = 20.0


def _vectorised(scene: str, stream: str) -> float:
    from demine.simulate import simulate_lane

    t = time.perf_counter()
    simulate_lane(scene, SECONDS, seed=1, streams=[stream])
    return SECONDS / (time.perf_counter() - t)


def _naive_emi(scene: str, n: int = 300) -> float:
    """EMI one reading at a time, objects in a Python loop (same equations)."""
    from demine.simulate import LaneSimulator
    from demine.simulate.emi import loop_field, soil_response

    sim = LaneSimulator(scene, 1)
    m = sim.emi_model
    cfg = sim.scene.emi
    t0 = 30.0  # a stretch with objects around
    ts = t0 + np.arange(n) / cfg.rate
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for t in ts:
        x, y, h = (float(v[0]) for v in sim.trajectory(np.array([t])))
        out = cfg.gain * cfg.soil_gain * soil_response(
            m.gates, cfg.coil_radius, np.array([h]), m.viscosity_at(np.array([x]),
                                                                    np.array([y])))[0]
        for j in range(len(m.ox)):
            dx, dy, dz = m.ox[j] - x, m.oy[j] - y, m.oz[j] - h
            rho = math.hypot(dx, dy)
            hr, hz = loop_field(cfg.coil_radius, np.array([rho]), np.array([dz]))
            hvec = np.array([hr[0] * dx / max(rho, 1e-12), hr[0] * dy / max(rho, 1e-12),
                             hz[0]])
            proj = m.axes[j] @ hvec
            out = out + cfg.gain * (proj**2) @ m.curves[j]
        out = out + cfg.noise * rng.standard_normal(len(m.gates))
    el = time.perf_counter() - start
    return (n / cfg.rate) / el


def _naive_gpr(scene: str, n: int = 40) -> float:
    """Radar one trace at a time, one wavelet per event in a Python loop."""
    from demine.simulate import LaneSimulator
    from demine.simulate.gpr import ricker

    sim = LaneSimulator(scene, 1)
    m = sim.gpr_model
    cfg = sim.scene.gpr
    ts = 30.0 + np.arange(n) / cfg.rate
    start = time.perf_counter()
    for t in ts:
        tt = np.array([t])
        x, y, h = sim.trajectory(tt)
        ii, times, amps = m.events(tt, x, y, h)
        trace = np.zeros(cfg.samples)
        for tk, ak in zip(times, amps, strict=True):
            trace += ak * ricker(m.time - tk, cfg.frequency)
    el = time.perf_counter() - start
    return (n / cfg.rate) / el


def _device(driver: str, seconds: float = 5.0) -> tuple[float, float]:
    import serial

    from demine.drivers import get_driver
    from demine.framing import Framer
    from demine.simulate import SimulatedDevice

    with SimulatedDevice(driver, "benign-soil", seed=1, duration=seconds, realtime=False,
                         wait_reader=10.0) as dev:
        ser = serial.serial_for_url(dev.port, timeout=0.05)
        framer = Framer(get_driver(driver))
        t = time.perf_counter()
        nbytes = 0
        while True:
            data = ser.read(max(1, ser.in_waiting))
            if data:
                nbytes += len(data)
                framer.feed(data)
            elif dev.wait(0):
                break
        el = time.perf_counter() - t
        ser.close()
    return seconds / el, nbytes / el


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for scene in SCENES:
        for stream in ("emi", "gpr", "gps", "cw"):
            rows.append({"suite": "simulate", "case": f"{scene} {stream} vectorised",
                         "x_real_time": round(_vectorised(scene, stream), 1)})
        rows.append({"suite": "simulate", "case": f"{scene} emi naive loop",
                     "x_real_time": round(_naive_emi(scene), 2)})
        rows.append({"suite": "simulate", "case": f"{scene} gpr naive loop",
                     "x_real_time": round(_naive_gpr(scene), 2)})
    for driver in ("emi-pi", "gpr", "nmea"):
        xrt, bps = _device(driver)
        rows.append({"suite": "simulate", "case": f"pty device {driver} (fast, decoded)",
                     "x_real_time": round(xrt, 1), "MB_per_s": round(bps / 1e6, 2)})
    return rows


if __name__ == "__main__":
    import argparse
    import os
    import sys

    # (no options: --help had started the benchmark)
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run import print_table

    print_table(run())
