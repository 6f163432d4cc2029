"""The one-command demo: simulated devices -> recording -> detection -> report.

:func:`run_demo` starts a simulated pulse-induction detector, radar and RTK
tracker on pseudo-terminals (each speaking its real wire protocol), records
them through pyserial with :class:`demine.recorder.Recorder` exactly as
``demine record`` does with real devices, runs the EMI and GPR detectors over
the recording, writes the alarms into it, and evaluates them against the
scene's ground truth the way mine-action T&E does (PD with its Clopper–Pearson
lower bound, false alarms per m²), with a lane map and ROC when matplotlib is
installed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._params import check_number
from .errors import ConfigError, DemineError

__all__ = ["run_demo"]


def run_demo(out_dir: str | Path = "demine-demo", *, scene: str = "demo-lane",
             duration: float | None = None, seed: int = 1, speed: float = 2.0,
             devices: tuple[str, ...] = ("emi-pi", "gpr", "nmea"), plots: bool = True,
             say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the demo; returns the evaluation as a dict and the paths written.

    Parameters
    ----------
    out_dir : path
        Directory for the recording, alarms CSV, report and figures.
    scene : str
        Shipped scene name or scene TOML path.
    duration : float, optional
        Seconds to record (default: one full coverage of the lane).
    seed : int
        Simulation seed.
    speed : float
        Real-time factor of the simulated devices (their clocks and the GPS
        time run ``speed`` times faster than the host's, and the recording's
        time stamps, mapped to host time, are compressed by that factor).
    devices : tuple of str
        Which simulated devices to run.
    plots : bool
        Write the lane map and ROC (needs matplotlib).
    say : callable
        Receives each progress line (default: print).
    """
    from .evaluate import evaluate_recordings
    from .pipeline import append_alarms, detect_recording, write_alarms_csv
    from .positions import LocalFrame
    from .recorder import DeviceSpec, Recorder, format_status
    from .recording import Recording
    from .simulate import LaneSimulator, SimulatedDevice, load_scene

    # before anything is created or started
    seed = check_number("demo", "seed", seed, lo=0, integer=True)
    speed = check_number("demo", "speed", speed, lo=0, lo_open=True)
    if duration is not None:
        duration = check_number("demo", "duration", duration, lo=0, lo_open=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sc = load_scene(scene)
    sim = LaneSimulator(sc, seed)
    if duration is None:
        duration = sim.coverage_duration / speed
    if not duration > 0:
        raise ConfigError(f"duration must be > 0 s, got {duration}")
    rec_path = out / "recording.h5"
    say(f"demine demo: scene {sc.name!r} ({sc.width:g} m x {sc.length:g} m, "
        f"{len(sc.objects)} buried objects), seed {seed}")
    say(f"  starting simulated devices on pseudo-terminals: {', '.join(devices)}")
    sims = [SimulatedDevice(d, sc, seed=seed, speed=speed) for d in devices]
    specs = []
    for dev in sims:
        cal: dict[str, Any] = {}
        if dev.stream == "emi":
            cal["gate_times"] = sc.gate_times.tolist()
        if dev.stream == "gpr":
            cal["sample_interval"] = float(sc.gpr.time_window / sc.gpr.samples)
            # what `demine calibrate time-zero` and the cart's set-up would give
            cal["time_zero"] = float(sc.gpr.direct_wave_delay)
            cal["antenna_height"] = float(sc.sweep.height)
        if dev.stream == "gps":
            # the simulated receiver sends each fix its latency after measuring
            # it, in simulated time, which runs `speed` times the host's: the
            # receiver's calibration, as a bench measurement would give it
            cal["latency"] = float(sc.gps.latency) / speed
        specs.append(DeviceSpec(dev.driver_name, dev.port, calibration=cal))
        say(f"    {dev.driver_name:<7} on {dev.port}")
    frame = LocalFrame(sc.anchor_lon, sc.anchor_lat, sc.anchor_alt, sc.bearing_deg)
    recorder = Recorder(rec_path, specs, frame=frame, truth=sc.truth(), overwrite=True,
                        site="simulated", operator="demine demo", lane_id=sc.name,
                        notes=f"demine demo, scene {sc.name}, seed {seed}")
    say(f"  recording {duration:.0f} s through pyserial into {rec_path} ...")
    status_line = {"last": ""}

    def show(st: dict) -> None:
        line = format_status(st)
        status_line["last"] = line
        if sys.stdout.isatty():
            print("\r  " + line, end="", flush=True)
        else:
            say("  " + line)

    try:
        for dev in sims:
            dev.start()
        recorder.start()
        recorder.run(duration, status=show, status_interval=2.0)
    finally:
        recorder.stop()
        for dev in sims:
            dev.stop()
    if sys.stdout.isatty():
        print()
    with Recording(rec_path) as rec:
        counts = {n: len(s) for n, s in rec.streams.items()}
    dropped = sum(r.stats.crc_errors for r in recorder._readers.values())
    say(f"  recorded {', '.join(f'{n} {c} frames' for n, c in counts.items())}; "
        f"CRC errors {dropped}")

    say("  detecting (EMI: soil compensation, baseline, CFAR; GPR: hyperbola fit) ...")
    t0 = time.perf_counter()
    alarms = detect_recording(rec_path)
    dt = time.perf_counter() - t0
    classified = False
    if len(alarms["x"]):
        try:
            from .classify import apply_model

            alarms = apply_model(rec_path, alarms=alarms)
            classified = True
        except DemineError as exc:  # no usable packaged model: alarms stay unclassified
            say(f"  (alarms not classified: {exc})")
    append_alarms(rec_path, alarms)
    csv_path = write_alarms_csv(alarms, out / "alarms.csv")
    by_stream = {s: int(np.sum(alarms["stream"] == s)) for s in sorted(set(alarms["stream"]))}
    say(f"  {len(alarms['x'])} alarms in {dt:.1f} s "
        f"({', '.join(f'{k} {v}' for k, v in by_stream.items()) or 'none'}) -> {csv_path}")

    evaluation = evaluate_recordings([rec_path])
    report = evaluation.summary()
    if classified:
        after = evaluate_recordings([rec_path], score="p_mine")
        report += ("\n\nafter classification (alarms ranked by p_mine from the default model):\n"
                   + "\n".join(after.summary().splitlines()[:6]))
    (out / "report.txt").write_text(report + "\n", encoding="utf-8")
    say("")
    say(report)
    figures = []
    if plots:
        try:
            from .report import write_report

            say("  writing the report (B-scan with fitted hyperbolae, lane maps, ROC, "
                "PD tables, coverage) ...")
            html = write_report(rec_path, out / "report")
            figures = [html, *sorted((out / "report").glob("*.png"))]
        except ImportError as exc:
            say(f"  (no figures: {exc}; install matplotlib: pip install 'demine[plot]')")
    say("")
    say(f"  written: {rec_path}, {csv_path}, {out / 'report.txt'}")
    if figures:
        say(f"  report: {figures[0]} ({len(figures) - 1} figures)")
    say(f"  look inside: demine info {rec_path}")
    return {"evaluation": evaluation.to_dict(roc=False), "recording": str(rec_path),
            "alarms": str(csv_path), "figures": [str(f) for f in figures],
            "frames": counts}
