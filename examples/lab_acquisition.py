"""Record a metal detector, a radar and a GPS from a lab script.

Usage::

    python examples/lab_acquisition.py OUT.h5 --device emi-pi=/dev/ttyUSB0 \\
        --device nmea=/dev/ttyUSB1 --seconds 60
    python examples/lab_acquisition.py OUT.h5 --simulate benign-soil --seconds 10

``--simulate SCENE`` starts simulated devices on pseudo-terminals first, so the
script runs anywhere; the recording path through pyserial is the same as with
real instruments.  This is what ``demine record`` does, from Python.
"""

from __future__ import annotations

import argparse
import sys

from demine.positions import LocalFrame
from demine.recorder import DeviceSpec, Recorder, format_status, parse_device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--device", action="append", default=[], metavar="DRIVER=PORT")
    ap.add_argument("--simulate", metavar="SCENE", help="record simulated devices instead")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)

    devices = [parse_device(d) for d in args.device]
    simulated = []
    frame = truth = None
    if args.simulate:
        from demine.simulate import SimulatedDevice, load_scene

        scene = load_scene(args.simulate)
        for driver in ("emi-pi", "gpr", "nmea"):
            dev = SimulatedDevice(driver, scene, seed=1).start()
            simulated.append(dev)
            cal = {}
            if driver == "emi-pi":
                cal["gate_times"] = scene.gate_times.tolist()
            if driver == "gpr":
                cal["sample_interval"] = scene.gpr.time_window / scene.gpr.samples
            devices.append(DeviceSpec(driver, dev.port, calibration=cal))
        frame = LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt,
                           scene.bearing_deg)
        truth = scene.truth()
    if not devices:
        ap.error("give --device DRIVER=PORT (repeatable) or --simulate SCENE")

    recorder = Recorder(args.out, devices, frame=frame, truth=truth, overwrite=True,
                        site="lab", operator="example script", detect=True)
    try:
        recorder.start()
        recorder.run(args.seconds, status=lambda st: print(format_status(st), file=sys.stderr))
    finally:
        recorder.stop()
        for dev in simulated:
            dev.stop()
    print(f"{args.out}: {recorder.frames_written}, {recorder.alarms_written} alarms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
