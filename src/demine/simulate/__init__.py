"""Simulated lanes and devices: forward models of a metal detector, a radar and a
position tracker over a scene of buried objects, with exact ground truth.

Python API (no serial port needed)::

    from demine.simulate import load_scene, simulate_lane
    res = simulate_lane("benign-soil", duration=30.0, seed=1)
    res.emi["samples"]      # (n, 16) float32 volts, 1000 readings/s
    res.gpr["samples"]      # (n, 512) int16, 400 traces/s
    res.gps["lon"], res.gps["lat"]
    res.truth               # columns for RecordingWriter.add_truth
    res.write("lane.h5")    # a demine recording

Devices on pseudo-terminals, speaking the real wire protocol of a driver::

    from demine.simulate import SimulatedDevice
    with SimulatedDevice("emi-pi", "benign-soil", seed=1) as dev:
        print(dev.port)     # e.g. /dev/pts/7, open it with pyserial

Shipped scenes: :func:`list_scenes`; scene file format: :mod:`demine.simulate.scene`.
"""

from __future__ import annotations

from .lane import STREAMS, LaneSimulator, SimulationResult, simulate_lane
from .scene import (
    CLASS_DEFAULTS,
    BuriedObject,
    Physics,
    Scene,
    list_scenes,
    load_scene,
    parse_scene,
)

__all__ = [
    "CLASS_DEFAULTS",
    "STREAMS",
    "BuriedObject",
    "LaneSimulator",
    "Physics",
    "Scene",
    "SimulatedDevice",
    "SimulationResult",
    "list_scenes",
    "load_scene",
    "parse_scene",
    "simulate_lane",
]


def __getattr__(name: str):  # lazy: the device module pulls in the drivers
    if name == "SimulatedDevice":
        from .device import SimulatedDevice

        return SimulatedDevice
    raise AttributeError(f"module 'demine.simulate' has no attribute {name!r}")
