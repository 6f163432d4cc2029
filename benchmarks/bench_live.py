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
* latency to a frame's being in the file (the end of the flush that wrote it),
  median and 99th percentile, from two starts: the frame's host receive time
  (the serial read that completed it) and its acquisition time (the device
  clock mapped to host time, so the wait in the serial buffer before the read
  counts too);
* where the CPU goes, per thread (readers, writer, flusher, detectors, OpenMP
  workers);
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


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by thread role (Linux /proc)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                st = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "")
        role = ("detect " + name.split("-")[-1] if name.startswith("demine-detect-")
                else "writer" if name == "demine-recorder"
                else "flush" if name.startswith("demine-flush")
                else "read " + name.split("-", 1)[1] if name.startswith("demine-")
                else "main" if name == "MainThread" else "other (OpenMP)")
        out[role] = out.get(role, 0.0) + (int(st[11]) + int(st[12])) / tick
    return out


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
        cpu0, thr0, t0 = _cpu(), _thread_cpu(), time.monotonic()
        rec.run(seconds)
        cpu, thr1 = _cpu() - cpu0, _thread_cpu()
        wall = time.monotonic() - t0
    finally:
        rec.stop()
        sim.stdin.write("\n")
        sim.stdin.flush()
        sim.wait(timeout=30)
    with Recording(out) as r:
        host = np.concatenate([r.streams[n]["host_time"] for n in ("emi", "gpr")])
        acq = np.concatenate([r.streams[n].time for n in ("emi", "gpr")])
        n_emi, n_gpr = len(r.streams["emi"]), len(r.streams["gpr"])
    # latency: each frame is in the file at the end of the first flush that
    # started after it was received (the flushes recorded (end time, frames
    # written) pairs; a frame is in the flush whose count first covers it)
    flush_t = np.array([t for t, _ in written], dtype=np.int64)
    idx = np.searchsorted(flush_t, host, side="left")
    ok = idx < flush_t.size
    lat = (flush_t[idx[ok]] - host[ok]) / 1e6
    lat_acq = (flush_t[idx[ok]] - acq[ok]) / 1e6
    os.unlink(out)
    threads = {k: 100 * (v - thr0.get(k, 0.0)) / wall for k, v in thr1.items()}
    return {"cpu_core_pct": 100 * cpu / wall, "lat_median_ms": float(np.median(lat)),
            "lat_p99_ms": float(np.percentile(lat, 99)),
            "acq_median_ms": float(np.median(lat_acq)),
            "acq_p99_ms": float(np.percentile(lat_acq, 99)), "emi_frames": n_emi,
            "gpr_frames": n_gpr, "alarms": rec.alarms_written, "seconds": wall,
            "threads": threads}


def run(seconds: float | None = None) -> list[dict[str, object]]:
    seconds = float(seconds or os.environ.get("DEMINE_BENCH_LIVE_SECONDS", 20))
    rows = []
    for label, detect, fi in (("record + detect, flush 25 ms", True, 0.025),
                              ("record + detect, flush 1 s", True, 1.0),
                              ("record only, flush 25 ms", False, 0.025)):
        m = measure(seconds, detect, fi)
        where = ", ".join(f"{k} {v:.1f}" for k, v in
                          sorted(m["threads"].items(), key=lambda kv: -kv[1]) if v >= 0.1)
        rows.append({"suite": "live", "case": label,
                     "value": f"{m['cpu_core_pct']:.1f} % core",
                     "note": f"read->file median {m['lat_median_ms']:.0f} ms, "
                             f"p99 {m['lat_p99_ms']:.0f} ms; acquired->file median "
                             f"{m['acq_median_ms']:.0f} ms, p99 {m['acq_p99_ms']:.0f} ms; "
                             f"{m['emi_frames']} EMI + {m['gpr_frames']} GPR frames, "
                             f"{m['alarms']} alarms; % core by thread: {where}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    for row in run(args.seconds):
        print(f"{row['case']:<32} {row['value']:>12}   {row['note']}")


if __name__ == "__main__":
    main()
