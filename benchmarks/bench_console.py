"""Field console cost and alarm latency while following a recording at the reference rate.

Three processes, as in the field:

* a **writer** replays a simulated lane in real time at the reference load
  (radar 400 traces/s x 512 int16 samples, detector 1000 readings/s x 16
  gates, GPS 10 Hz) into a recording through ``RecordingWriter`` (flush
  interval 0.1 s, the console's default for the recorder it starts), and runs
  the live EMI detection as the recorder does (``StreamDetector``; each alarm
  appended and flushed at once).  It logs, for each alarm, the time stamp of the
  frame whose processing raised it;
* the **console** (``ConsoleApp`` with its ``Follower``, 10 Hz refresh) runs on a
  real pseudo-terminal of the given size, so the ANSI output is produced and
  written like on a laptop's terminal; the benchmark drains the terminal;
* this script measures, over a steady window after a warm-up: the console's CPU
  time (``getrusage``, all threads) as a share of one core, its display refreshes
  per second (repaints of the radar panel, and writes to the terminal), and, per
  alarm, the delay from the frame that raised it to the moment the alarm list
  first rendered it.

Cases, side by side in the same run: the console at 80x24 and at 160x48, and
the follower alone (no display; the data side of the cost).

Targets (issue 6): refresh >= 10 Hz using <= 10 % of a core; alarm on screen
within 200 ms of the frame that raised it.

Run alone with ``python benchmarks/bench_console.py [--seconds S]`` or through
``python benchmarks/run.py console``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import resource
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCENE = "battle-area"  # its detector raises alarms live (serpentine lanes hold them)
LANE_S = 245.0
OFFSET_S = 200.0  # replay from here: alarms raised ~13, 31, 34 and 35 s later


def make_lane(path: Path) -> None:
    """Simulate the lane once; the writer of every case replays it."""
    from demine.simulate import simulate_lane

    lane = simulate_lane(SCENE, LANE_S, seed=1)
    arrays = {}
    for name in ("emi", "gpr", "gps"):
        for k, v in getattr(lane, name).items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
                arrays[f"{name}.{k}"] = v
    np.savez(path, **arrays)


# ---------------------------------------------------------------- writer child
def writer_main(path: str, seconds: float, log: str, lane_path: str) -> None:
    from demine.pipeline import StreamDetector
    from demine.recording import RecordingWriter
    from demine.simulate import load_scene

    scene = load_scene(SCENE)
    z = np.load(lane_path)
    emi, gpr, gps = ({k.split(".", 1)[1]: z[k] for k in z.files if k.startswith(p + ".")}
                     for p in ("emi", "gpr", "gps"))
    rates = {"emi": 1000.0, "gpr": 400.0, "gps": 10.0}
    n_lane = {"emi": emi["samples"].shape[0], "gpr": gpr["samples"].shape[0],
              "gps": gps["lon"].shape[0]}
    raised: list[dict[str, int]] = []
    with RecordingWriter(path, flush_interval=0.1) as w:
        s_emi = w.add_stream("emi", "emi", n_channels=16, gate_times=scene.gate_times,
                             attrs={"sample_rate": 1000.0}, driver="emi-pi")
        s_gpr = w.add_stream("gpr", "gpr", n_channels=512, dtype="int16",
                             sample_interval=3.125e-11, attrs={"sample_rate": 400.0},
                             driver="gpr")
        s_gps = w.add_stream("gps", "gps", driver="nmea")
        ctx = {"stream": "emi", "kind": "emi", "n_channels": 16,
               "gate_times": np.asarray(scene.gate_times, dtype=np.float64),
               "sample_rate": 1000.0}
        det = StreamDetector("emi", ctx)
        done = {k: int(OFFSET_S * r) for k, r in rates.items()}
        first = dict(done)
        t0 = time.time_ns()
        print("started", flush=True)
        cpu0 = time.process_time()
        while True:
            now = time.time_ns()
            el = (now - t0) / 1e9
            if el >= seconds:
                break
            for name, rate in rates.items():
                due = first[name] + int(el * rate)
                a, b = done[name], due
                if b <= a:
                    continue
                idx = np.arange(a, b) % n_lane[name]
                t = t0 + ((np.arange(a, b) - first[name]) * (1e9 / rate)).astype(np.int64)
                if name == "emi":
                    x, y = emi["x"][idx], emi["y"][idx]
                    s_emi.append(emi["samples"][idx], time=t, sequence=np.arange(a, b), x=x,
                                 y=y, z=emi["z"][idx])
                    alarms = det.process(emi["samples"][idx].astype(np.float32), x, y, t)
                    if len(alarms["x"]):
                        w.append_alarms({k: alarms[k] for k in
                                         ("time", "stream", "x", "y", "depth", "score",
                                          "p_mine")})
                        w.flush()
                        for at in alarms["time"]:
                            raised.append({"alarm_time": int(at), "raised_ns": int(t[-1]),
                                           "appended_ns": time.time_ns()})
                elif name == "gpr":
                    s_gpr.append(gpr["samples"][idx], time=t, sequence=np.arange(a, b),
                                 x=gpr["x"][idx], y=gpr["y"][idx], z=gpr["z"][idx])
                else:
                    s_gps.append(time=t, sequence=np.arange(a, b), lon=gps["lon"][idx],
                                 lat=gps["lat"][idx], alt=gps["alt"][idx],
                                 fix_quality=gps["fix_quality"][idx],
                                 satellites=gps["satellites"][idx], hdop=gps["hdop"][idx],
                                 x=gps["x"][idx], y=gps["y"][idx], z=gps["z"][idx])
                done[name] = b
            time.sleep(0.01)
        cpu = time.process_time() - cpu0
    Path(log).write_text(json.dumps({"raised": raised, "cpu_s": cpu, "seconds": seconds,
                                     "frames": done}))


# ---------------------------------------------------------------- console child
def _rusage_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def console_main(path: str, stats: str, seconds: float, warmup: float, display: bool) -> None:
    from demine.console import Follower

    f = Follower(path, stale_after=3.0)
    out: dict[str, Any] = {}
    if not display:
        period = 0.1
        end = time.monotonic() + warmup + seconds
        mark = time.monotonic() + warmup
        c0 = None
        polls = 0
        while time.monotonic() < end:
            t = time.monotonic()
            if c0 is None and t >= mark:
                c0, w0, polls = _rusage_s(), t, 0
            f.poll()
            polls += 1
            time.sleep(max(0.0, period - (time.monotonic() - t)))
        out = {"cpu_s": _rusage_s() - c0, "wall_s": time.monotonic() - w0,
               "refreshes": polls, "writes": 0, "bytes": 0, "shown": []}
        Path(stats).write_text(json.dumps(out))
        return

    from demine.console.app import ConsoleApp
    from demine.console.widgets import AlarmList, Waterfall

    class BenchApp(ConsoleApp):
        def on_mount(self) -> None:  # Textual also runs ConsoleApp.on_mount
            wrap_driver()
            self.set_timer(warmup, start_window)
            self.set_timer(warmup + seconds, end_window)

    app = BenchApp(f, refresh_hz=10.0, bell=True)
    counters = {"writes": 0, "bytes": 0}
    state: dict[str, Any] = {}

    def wrap_driver() -> None:
        drv = app._driver
        orig = drv.write

        def write(data: str) -> None:
            counters["writes"] += 1
            counters["bytes"] += len(data)
            orig(data)
        drv.write = write

    def start_window() -> None:
        state["c0"] = _rusage_s()
        state["w0"] = time.monotonic()
        state["p0"] = app.query_one(Waterfall).paints
        state["writes0"], state["bytes0"] = counters["writes"], counters["bytes"]
        state["ticks0"], state["tick_s0"] = app.ticks, app.tick_seconds

    def end_window() -> None:
        wf = app.query_one(Waterfall)
        al = app.query_one(AlarmList)
        out.update({
            "cpu_s": _rusage_s() - state["c0"], "wall_s": time.monotonic() - state["w0"],
            "refreshes": wf.paints - state["p0"],
            "writes": counters["writes"] - state["writes0"],
            "bytes": counters["bytes"] - state["bytes0"],
            "ticks": app.ticks - state["ticks0"],
            "tick_s": app.tick_seconds - state["tick_s0"],
            "shown": [[int(al.alarms[i]["time"]), ns] for i, ns in al.shown_at.items()],
            "size": list(app.size),
        })
        app.exit(0)

    app.run()
    Path(stats).write_text(json.dumps(out))


# ---------------------------------------------------------------- parent
def _drain(fd: int, stop: threading.Event, counter: list[int]) -> None:
    import select

    while not stop.is_set():
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            counter[0] += len(data)


def run_case(size: tuple[int, int] | None, seconds: float, warmup: float,
             lane: Path) -> dict[str, Any]:
    here = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        rec = Path(tmp) / "live.h5"
        wlog, stats = Path(tmp) / "writer.json", Path(tmp) / "console.json"
        total = warmup + seconds + 3.0
        writer = subprocess.Popen([sys.executable, str(here), "--child-writer", str(rec),
                                   str(total), str(wlog), str(lane)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "started"
        time.sleep(0.5)
        args = [sys.executable, str(here), "--child-console", str(rec), str(stats),
                str(seconds), str(warmup), "1" if size else "0"]
        if size:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
            env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
            stop = threading.Event()
            got = [0]
            th = threading.Thread(target=_drain, args=(master, stop, got), daemon=True)
            th.start()
            con = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                   start_new_session=True)
            os.close(slave)
            con.wait(warmup + seconds + 120)
            stop.set()
            th.join(2)
            os.close(master)
        else:
            con = subprocess.Popen(args)
            con.wait(warmup + seconds + 120)
        writer.wait(total + 60)
        if con.returncode != 0 or not stats.exists():
            raise RuntimeError(f"console child failed (status {con.returncode})")
        c = json.loads(stats.read_text())
        wj = json.loads(wlog.read_text())
    raised = {r["alarm_time"]: r for r in wj["raised"]}
    lat = [(ns - raised[t]["raised_ns"]) / 1e6 for t, ns in c["shown"] if t in raised]
    lat_file = [(ns - raised[t]["appended_ns"]) / 1e6 for t, ns in c["shown"] if t in raised]
    wall = c["wall_s"]
    row: dict[str, Any] = {
        "suite": "console",
        "case": f"console {size[0]}x{size[1]} pty" if size else "follower only (no display)",
        "screen_updates_hz": round(c["writes"] / wall, 1) if size else "",
        "radar_panel_hz": round(c["refreshes"] / wall, 1) if size else "",
        "polls_hz": round(c.get("ticks", c["refreshes"]) / wall, 1),
        "cpu_%core": round(100 * c["cpu_s"] / wall, 1),
        "term_kB/s": round(c["bytes"] / wall / 1e3, 1) if size else "",
        "alarms": len(lat) if size else "",
        "alarm_ms_median": round(float(np.median(lat)), 0) if lat else "",
        "alarm_ms_max": round(float(np.max(lat)), 0) if lat else "",
        "file_to_screen_ms_max": round(float(np.max(lat_file)), 0) if lat_file else "",
        "writer_cpu_%core": round(100 * wj["cpu_s"] / wj["seconds"], 1),
    }
    if size and "tick_s" in c:
        row["of_which_poll+update_%core"] = round(100 * c["tick_s"] / wall, 1)
    return row


def run(seconds: float = 34.0, warmup: float = 6.0) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-console-lane-") as tmp:
        lane = Path(tmp) / "lane.npz"
        make_lane(lane)
        for size in ((80, 24), (160, 48), None):
            rows.append(run_case(size, seconds, warmup, lane))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-writer":
        writer_main(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-console":
        console_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]),
                     sys.argv[6] == "1")
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=34.0, help="measured window (s)")
    p.add_argument("--warmup", type=float, default=6.0, help="warm-up before it (s)")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print_table(run(a.seconds, a.warmup))


if __name__ == "__main__":
    main()
