"""Alarm detector throughput (EMI ``demine.detect.EMIDetector``, GPR chain and
``demine.hyperbola.GPRDetector``), side by side.

Cases, in the same run on one core, over a simulated-like statistic (noise
around 1, a target bump every ~2 s) with positions and times:

* demine's detector in one call, and in live-sized 1000-frame (1 s) chunks;
* the same hysteresis / CFAR / peak-splitting loop written in plain Python
  (the reference twin of ``tests/test_detect.py``), timed on a slice; events
  checked identical before timing.

The live figure is the share of one core the detector needs at the reference
rate of 1000 readings/s (the whole live path must stay under 10 %).

GPR cases, on 40 s of a simulated radar lane (``benign-soil``, 512 samples x
400 traces/s, seed 1) through the live detector (``StreamDetector``: the
packaged GPR chain, then the hyperbola detector, one thread):

* in 10-trace chunks, as the live recorder calls it every 25 ms: CPU of the
  calling thread per second of radar data (share of one core);
* the same in one call over the whole lane (batch);
* in 10-trace chunks with the noise and clutter scales of each window computed
  by the NumPy code they replaced (``_window_scales_numpy``, the kernel's twin);
  alarms checked identical in all three before timing counts.

Back-to-back runs keep the caches warm; the live recorder's thread wakes every
25 ms with cold caches and needs about 1.3x these figures.

Run alone with ``python benchmarks/bench_detect.py [--frames N]`` or through
``python benchmarks/run.py detect``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

RATE = 1000.0


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    swing = 1 / 0.7
    ph = (t / swing) % 2
    x = np.where(ph < 1, ph, 2 - ph)
    y = np.floor(t / swing) * 0.04 + (t % swing) / swing * 0.04
    s = np.abs(1 + 0.3 * rng.standard_normal(n))
    for c in range(1000, n - 400, 2000):
        s[c:c + 300] += 40 * np.hanning(300)
    tn = 1_772_352_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    return s, x, y, tn


def python_twin(s: np.ndarray, *, alpha: float, k_hi: float, k_lo: float, floor_hi: float,
                floor_lo: float, clip: float, warmup: int, hold: int, split: float,
                max_frames: int) -> list[tuple[int, int, int]]:
    """The kernel's frame loop in plain Python; returns (start, end, max index) per event."""
    m = v = wm = wq = 0.0
    nbg = 0
    ev: dict[str, Any] | None = None
    events = []
    for i, si in enumerate(s.tolist()):
        if si != si:
            continue
        if nbg < warmup:
            hi, lo = floor_hi, floor_lo
            sd = v ** 0.5 if nbg > 0 else 0.0
        else:
            sd = v ** 0.5
            hi, lo = max(floor_hi, m + k_hi * sd), max(floor_lo, m + k_lo * sd)
        lo = min(lo, hi)
        if ev is not None:
            ev["age"] += 1  # frames with a statistic since the event's first
        if ev is not None and max_frames > 0 and ev["age"] >= max_frames:
            m = ev["sum"] / ev["n"]
            ev = None
            continue
        if ev is not None:
            if si >= lo:
                ev["gap"] = 0
                ev["n"] += 1
                ev["sum"] += si
                ev["end"] = i
                if si > ev["max"]:
                    ev["max"], ev["max_i"] = si, i
                if ev["mode"] == 0:
                    if si > ev["cand"]:
                        ev["cand"] = si
                    elif si * split < ev["cand"]:
                        ev["mode"], ev["valley"] = 1, si
                elif si < ev["valley"]:
                    ev["valley"] = si
                elif si > ev["valley"] * split:
                    ev["mode"], ev["cand"] = 0, si
                continue
            ev["gap"] += 1
            if ev["gap"] <= hold:
                continue
            events.append((ev["start"], ev["end"], ev["max_i"]))
            ev = None
        if si >= hi:
            ev = dict(start=i, end=i, max=si, max_i=i, n=1, sum=si, gap=0, mode=0, cand=si,
                      age=0)
            continue
        if nbg < warmup:
            nbg += 1  # Welford
            d = si - wm
            wm += d / nbg
            wq += d * (si - wm)
            m, v = wm, wq / nbg
        else:
            d = si - m
            if d < 0:
                v += alpha * (d * d - v)
            if clip > 0 and sd > 0:
                d = min(max(d, -clip * sd), clip * sd)
            m += alpha * d
            nbg += 1
    return events


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n_frames: int | None = None, repeat: int = 3) -> list[dict[str, Any]]:
    """Run the detector benchmark; one row per case for ``benchmarks/run.py``."""
    from demine import _detect
    from demine.detect import EMIDetector

    n = int(n_frames or os.environ.get("DEMINE_BENCH_DETECT_FRAMES", 1_000_000))
    s, x, y, tn = make_data(n)
    rows: list[dict[str, Any]] = []

    def chunks(size: int) -> None:
        det = EMIDetector()
        for a in range(0, n, size):
            det.process(s[a:a + size], x[a:a + size], y[a:a + size], tn[a:a + size])
        det.finish()

    def row(case: str, secs: float, frames: int, ref: float | None, note: str = "") -> float:
        rate = frames / secs
        rows.append({
            "suite": "detect", "case": case, "time_s": f"{secs * n / frames:.4f}",
            "Mframes/s": f"{rate / 1e6:.2f}",
            "vs demine": "1.00x" if ref is None else f"{ref / rate:.0f}x slower",
            "note": note,
        })
        return rate

    ref = row("demine EMIDetector, one call", _best(lambda: chunks(n), repeat), n, None)
    live = _best(lambda: chunks(1000), repeat)
    row("demine EMIDetector, 1000-frame chunks (live)", live, n, ref,
        f"{100 * live / (n / RATE):.3f} % of a core at {RATE:g} readings/s")
    det = EMIDetector()
    p = dict(alpha=1 / det.background_window, k_hi=det.k_hi, k_lo=det.k_lo,
             floor_hi=det.threshold, floor_lo=det.threshold_lo, clip=det.clip,
             warmup=det.warmup, hold=det.hold, split=det.split, max_frames=det.max_frames)
    m = min(n, 200_000)
    twin = python_twin(s[:m], **p)
    f = np.zeros(_detect.NFS)
    st = np.zeros(_detect.NIS, dtype=np.int64)
    seg_f, seg_i = np.empty((m + 1, _detect.NSF)), np.empty((m + 1, _detect.NSI), np.int64)
    pk_f, pk_i = np.empty((2 * m + 2, _detect.NPF)), np.empty((2 * m + 2, _detect.NPI), np.int64)
    k, _ = _detect.hysteresis_run(s[:m], x[:m], y[:m], np.arange(m) / RATE, tn[:m],
                                  np.empty(m), f, st, seg_f, seg_i, pk_f, pk_i,
                                  p["alpha"], p["k_hi"], p["k_lo"], p["floor_hi"],
                                  p["floor_lo"], p["clip"], p["warmup"], p["hold"],
                                  p["split"], p["max_frames"])
    kernel = [tuple(int(v) for v in r) for r in seg_i[:k, :3]]
    kernel = [e for e, ab in zip(kernel, seg_i[:k, 5], strict=True) if not ab]
    if kernel != twin[:len(kernel)] or len(twin) - len(kernel) > 1:
        raise AssertionError("Python twin and demine kernel disagree")
    secs = _best(lambda: python_twin(s[:m], **p), 1)
    row("plain Python, same frame loop", secs, m, ref,
        f"timed on {m} frames; events checked equal")
    rows += gpr_rows(float(os.environ.get("DEMINE_BENCH_GPR_SECONDS", 40.0)))
    return rows


GPR_RATE = 400.0


def gpr_rows(seconds: float = 40.0, repeat: int = 3) -> list[dict[str, Any]]:
    """GPR detector rows (see the module notes)."""
    import demine.hyperbola as hyp
    from demine.pipeline import StreamDetector
    from demine.simulate import load_scene, simulate_lane

    scene = load_scene("benign-soil")
    g = simulate_lane(scene, seconds, seed=1, streams=("gpr",)).gpr
    ctx = {"stream": "gpr", "kind": "gpr", "n_channels": g["samples"].shape[1],
           "sample_interval": scene.gpr.time_window / scene.gpr.samples}
    n = len(g["samples"])
    data_s = n / GPR_RATE

    def feed(size: int) -> tuple[float, list[dict[str, np.ndarray]]]:
        det = StreamDetector("gpr", ctx, None, {"nthreads": 1})
        clock = time.thread_time if size < n else time.process_time
        t0 = clock()
        out = [det.process(g["samples"][a:a + size], g["x"][a:a + size],
                           g["y"][a:a + size], g["time"][a:a + size])
               for a in range(0, n, size)]
        out.append(det.finish())
        return clock() - t0, out

    class _TwinScales:
        """demine._hyperbola with window_scales done by its NumPy twin."""

        def __getattr__(self, name: str) -> Any:
            return getattr(kernels, name)

        @staticmethod
        def window_scales(blk, cl, q, nscale, cscale, robust, flat, half, zone, floor, out,
                          guess):
            out[...] = hyp._window_scales_numpy(blk, cl, q, nscale, cscale, robust, flat,
                                                half, zone, floor)

    kernels = hyp._k

    def twin(size: int) -> tuple[float, list[dict[str, np.ndarray]]]:
        hyp._k = _TwinScales()
        try:
            return feed(size)
        finally:
            hyp._k = kernels

    def alarms(out: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.concatenate([np.column_stack([o["x"], o["score"]]) for o in out])

    cases = {"live": lambda: feed(10), "batch": lambda: feed(n), "twin": lambda: twin(10)}
    best: dict[str, float] = {}
    ref = None
    for _ in range(repeat):   # interleaved, best of `repeat`
        for name, fn in cases.items():
            secs, out = fn()
            a = alarms(out)
            if ref is None:
                ref = a
            elif not np.array_equal(a, ref):
                raise AssertionError(f"GPR alarms of case {name!r} differ")
            best[name] = min(best.get(name, float("inf")), secs)
    rows = []
    for name, case in [("live", "GPR chain + GPRDetector, 10-trace chunks (live)"),
                       ("batch", "GPR chain + GPRDetector, one call"),
                       ("twin", "GPR, 10-trace chunks, window scales in NumPy (before)")]:
        secs = best[name]
        rows.append({
            "suite": "detect", "case": case, "time_s": f"{secs:.4f}",
            "Mframes/s": f"{n / secs / 1e6:.3f}",
            "vs demine": "1.00x" if name == "live" else f"{secs / best['live']:.2f}x",
            "note": f"{100 * secs / data_s:.2f} % of a core at {GPR_RATE:g} traces/s "
                    f"({len(ref)} alarms, equal)",
        })
    return rows


def main() -> None:  # pragma: no cover
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    for r in run(args.frames):
        print(r)


if __name__ == "__main__":  # pragma: no cover
    main()
