"""GPR detection on the shipped simulated scenes: PD and false alarms per metre of line.

    python benchmarks/eval_gpr_detection.py              # all scenes, 3 run seeds
    python benchmarks/eval_gpr_detection.py gpr-lines --seeds 5 --threshold 14
    python benchmarks/eval_gpr_detection.py --seed-list 7,8 --cache /tmp/gpr-lanes
    python benchmarks/eval_gpr_detection.py --frequency 0.8e9 --cache /tmp/gpr-lanes
    python benchmarks/eval_gpr_detection.py --frequency 0.8e9 --no-scaling

``--frequency`` simulates every scene's radar with a Ricker of that centre
frequency (nothing else changed); the detector is told the frequency, as the
stream's calibration tells ``demine detect``, and scales its wavelet-tied
parameters (:data:`demine.hyperbola.WAVELET_PARAMS`) unless ``--no-scaling``.
``--param NAME=VALUE`` sets another detector parameter.

Every shipped scene is surveyed by a radar cart on parallel straight lines
0.1 m apart along the lane (the ``gpr-lines`` scene is surveyed as it ships;
the others, written for hand-held sweeps, get the same cart pattern with the
scene's own soil, objects and radar).  The traces go through the default GPR
chain (dewow, background removal over about 2 m of line, band-pass, SEC
gain) and :class:`demine.hyperbola.GPRDetector`, one continuous stream per run.

Scoring, per line (an alarm belongs to the line nearest to it):

* a (line, mine) pair is *expected* when the line passes over the mine's body
  (lateral offset at most max(size / 2, 0.05) m); it is *detected* when an
  alarm of that line lies within the mine's halo (0.25 m AP-sized, 0.5 m
  larger, as :mod:`demine.evaluate`);
* alarms are matched one-to-one, strongest first, to the nearest unmatched
  object (mine or clutter) within its halo; an unmatched alarm is a false alarm;
  an alarm matched to a clutter object (rock, root, void, scrap) is reported
  separately as a clutter alarm (a radar sees those bodies too: they are for
  the classifier to reject);
* PD = detected / expected; FA per metre = false alarms / metres of line.

The ROC over the score threshold is printed too (PD and FA/m at thresholds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from demine.evaluate import AP_HALO, LARGE_HALO, size_class
from demine.gpr import FusedChain
from demine.hyperbola import GPRDetector
from demine.simulate import list_scenes, load_scene, simulate_lane

#: Mines shallower than this (m) have their top echo inside the ground bounce of
#: a 1.5 GHz radar (two-way time under about half a period): reported apart.
SHALLOW = 0.03


def cart_scene(name: str, frequency: float | None = None):
    """The scene ``name`` surveyed by a cart; ``frequency`` (Hz) replaces its
    radar's centre frequency (the simulator's wavelet, nothing else)."""
    sc = load_scene(name)
    if sc.sweep.pattern != "lines":
        sw = dataclasses.replace(sc.sweep, pattern="lines", speed=0.5, line_spacing=0.1,
                                 height=0.04, height_variation=0.003, turn_time=1.0,
                                 start_y=None, end_y=None)
        sc = dataclasses.replace(sc, sweep=sw)
    if frequency is not None and frequency != sc.gpr.frequency:
        sc = dataclasses.replace(sc, gpr=dataclasses.replace(sc.gpr, frequency=frequency))
    return sc


@dataclasses.dataclass
class Lane:
    """The radar stream of one simulated run (what the detector needs)."""

    gpr: dict
    truth: dict
    sample_interval: float


def simulate(sc, seed: int, cache: str | None = None) -> Lane:
    """Simulate the radar of one run, or load it from ``cache`` (a directory)."""
    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        tag = "" if sc.gpr.frequency == 1.5e9 else f"-{sc.gpr.frequency / 1e9:g}GHz"
        path = os.path.join(cache, f"{sc.name}{tag}-{seed}.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                gpr = {k[4:]: z[k] for k in z.files if k.startswith("gpr_")}
                truth = {k[6:]: z[k] for k in z.files if k.startswith("truth_")}
                return Lane(gpr, truth, float(z["dt"]))
    res = simulate_lane(sc, seed=seed, streams=("gpr",))
    lane = Lane(dict(res.gpr), {k: np.asarray(v) for k, v in res.truth.items()},
                res.sample_interval)
    if path:
        np.savez(path, dt=lane.sample_interval, **{f"gpr_{k}": v for k, v in lane.gpr.items()},
                 **{f"truth_{k}": v for k, v in lane.truth.items()})
    return lane


def run_scene(sc, seed: int, threshold: float | None = None, cache: str | None = None,
              scaling: bool = True, **det_kw):
    res = simulate(sc, seed, cache)
    g = res.gpr
    dt = res.sample_interval
    speed = sc.sweep.speed
    bg = int(round(2.0 / speed * sc.gpr.rate)) | 1   # about 2 m of line
    chain = FusedChain(dewow_window=41, background_window=bg, low=0.5e9, high=3.0e9,
                       gain_power=1.0, gain_attenuation=1.0e8, sample_interval=dt)
    p = np.concatenate([chain.process(g["samples"]), chain.finish()])
    kw = dict(time_zero=sc.gpr.direct_wave_delay, antenna_height=sc.sweep.height)
    if scaling:   # the stream's calibration 'frequency', as demine detect passes it
        kw["frequency"] = sc.gpr.frequency
    kw.update(det_kw)
    if threshold is not None:
        kw["threshold"] = threshold
    det = GPRDetector(dt, **kw)
    a = det.process(p, g["x"], g["y"], g["time"])
    b = det.finish()
    alarms = {k: np.concatenate([a[k], b[k]]) for k in a}
    return res, alarms


def line_positions(sc) -> np.ndarray:
    sw = sc.sweep
    n = max(1, int(np.floor(sc.width / sw.line_spacing + 1e-9)))
    off = 0.5 * (sc.width - (n - 1) * sw.line_spacing)
    return off + sw.line_spacing * np.arange(n)


def score(sc, truth, alarms, thr: float, verbose: bool = False) -> dict:
    lines = line_positions(sc)
    sw = sc.sweep
    y0 = sw.start_y if sw.start_y is not None else 0.0
    y1 = sw.end_y if sw.end_y is not None else sc.length
    length = len(lines) * (y1 - y0)
    keep = alarms["score"] >= thr
    ax, ay, asc = alarms["x"][keep], alarms["y"][keep], alarms["score"][keep]
    aline = np.argmin(np.abs(ax[:, None] - lines[None, :]), axis=1) if len(ax) else np.zeros(0, int)
    types = [t.decode() if isinstance(t, bytes) else str(t) for t in truth["type"]]
    objs = {o.id: o for o in sc.objects}
    ids = [t.decode() if isinstance(t, bytes) else str(t) for t in truth["id"]]
    size = np.array([objs[i].size if i in objs else 0.1 for i in ids])
    halo = np.array([LARGE_HALO if size_class(t) == "large" else AP_HALO for t in types])
    is_mine = np.asarray(truth["is_mine"]).astype(bool)
    tx, ty = np.asarray(truth["x"]), np.asarray(truth["y"])
    expected = detected = exp_shallow = det_shallow = 0
    fa = clutter = 0
    for li, lx in enumerate(lines):
        on = aline == li
        lax, lay, lsc = ax[on], ay[on], asc[on]
        # expected mines on this line
        for j in np.flatnonzero(is_mine):
            if abs(tx[j] - lx) <= max(size[j] / 2, 0.05):
                expected += 1
                shallow = float(truth["depth"][j]) < SHALLOW
                exp_shallow += shallow
                if np.any(np.hypot(lax - tx[j], lay - ty[j]) <= halo[j]):
                    detected += 1
                    det_shallow += shallow
                elif verbose:
                    print(f"  missed {ids[j]} ({types[j]}, depth {truth['depth'][j]:.2f} m) "
                          f"on the line at x = {lx:.2f}")
        # one-to-one matching of this line's alarms to objects
        used = np.zeros(len(tx), bool)
        for i in np.argsort(-lsc, kind="stable"):
            d = np.hypot(tx - lax[i], ty - lay[i])
            ok = (d <= halo) & ~used
            if not ok.any():
                fa += 1
                if verbose:
                    print(f"  false alarm at ({lax[i]:.2f}, {lay[i]:.2f}) score {lsc[i]:.1f}")
                continue
            j = int(np.flatnonzero(ok)[np.argmin(d[ok])])
            used[j] = True
            if not is_mine[j]:
                clutter += 1
    return dict(expected=expected, detected=detected, fa=fa, clutter=clutter, length=length,
                n_alarms=int(keep.sum()), exp_shallow=exp_shallow, det_shallow=det_shallow)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenes", nargs="*", help="scene names (default: all shipped)")
    ap.add_argument("--seeds", type=int, default=3, help="run seeds per scene (0 .. N-1)")
    ap.add_argument("--seed-list", default=None,
                    help="comma-separated run seeds instead of --seeds (e.g. 7,8)")
    ap.add_argument("--cache", default=None,
                    help="directory of simulated lanes (written once, then read)")
    ap.add_argument("--threshold", type=float, default=None, help="score threshold")
    ap.add_argument("--max-depth", type=float, default=None,
                    help="drop alarms deeper than this (m; GPRDetector max_depth)")
    ap.add_argument("--frequency", type=float, default=None,
                    help="radar centre frequency (Hz) instead of the scenes' own (1.5e9)")
    ap.add_argument("--no-scaling", action="store_true",
                    help="do not tell the detector the radar's frequency (its wavelet-tied "
                         "parameters stay those of reference_frequency)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a GPRDetector parameter (a number, or none), e.g. bin_size=0.02; "
                         "repeatable")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list missed mines and false alarms")
    args = ap.parse_args(argv)
    extra: dict = {}
    for item in args.param:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--param {item!r}: give NAME=VALUE")
        extra[key.strip()] = None if val.strip().lower() == "none" else float(val)
    names = args.scenes or list_scenes()
    seeds = (range(args.seeds) if args.seed_list is None
             else [int(v) for v in args.seed_list.split(",") if v.strip()])
    thr = args.threshold if args.threshold is not None else GPRDetector(1e-11).threshold
    roc_thr = np.array([5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 80], float)
    tot = dict(expected=0, detected=0, fa=0, clutter=0, length=0.0, exp_shallow=0,
               det_shallow=0)
    roc = np.zeros((len(roc_thr), 6))
    print(f"{'scene':<20}{'seed':>5}{'mines':>7}{'found':>7}{'PD':>7}{'FA':>5}"
          f"{'FA/m':>7}{'clutter':>8}{'m':>7}{'s':>7}")
    for name in names:
        sc = cart_scene(name, args.frequency)
        for seed in seeds:
            t = time.perf_counter()
            res, alarms = run_scene(sc, seed, threshold=min(roc_thr.min(), thr),
                                    cache=args.cache, max_depth=args.max_depth,
                                    scaling=not args.no_scaling, **extra)
            el = time.perf_counter() - t
            r = score(sc, res.truth, alarms, thr, verbose=args.verbose)
            for k in tot:
                tot[k] += r[k]
            for i, th in enumerate(roc_thr):
                q = score(sc, res.truth, alarms, th)
                roc[i] += (q["expected"], q["detected"], q["fa"], q["length"],
                           q["exp_shallow"], q["det_shallow"])
            pd = r["detected"] / r["expected"] if r["expected"] else float("nan")
            print(f"{name:<20}{seed:>5}{r['expected']:>7}{r['detected']:>7}{pd:>7.3f}"
                  f"{r['fa']:>5}{r['fa'] / r['length']:>7.3f}{r['clutter']:>8}"
                  f"{r['length']:>7.1f}{el:>7.1f}")
            sys.stdout.flush()
    pd = tot["detected"] / max(tot["expected"], 1)
    print(f"\nthreshold {thr:g}: PD = {tot['detected']}/{tot['expected']} = {pd:.3f}, "
          f"false alarms = {tot['fa']} over {tot['length']:.0f} m of line = "
          f"{tot['fa'] / tot['length']:.3f} /m; clutter-object alarms "
          f"{tot['clutter']} = {tot['clutter'] / tot['length']:.3f} /m")
    e2 = tot["expected"] - tot["exp_shallow"]
    d2 = tot["detected"] - tot["det_shallow"]
    print(f"  mines >= {SHALLOW:g} m deep: PD = {d2}/{e2} = {d2 / max(e2, 1):.3f}; "
          f"shallower: {tot['det_shallow']}/{tot['exp_shallow']}")
    print("target: PD >= 0.95 at <= 0.2 false alarms per metre of line: "
          + ("MET" if pd >= 0.95 and tot["fa"] / tot["length"] <= 0.2 else "NOT MET"))
    print("\nROC (all scenes):  threshold   PD     FA/m   PD(>= 3 cm deep)")
    for th, (e, d, f, L, es, ds) in zip(roc_thr, roc, strict=True):
        print(f"{'':19}{th:>9.1f}{d / max(e, 1):>7.3f}{f / max(L, 1e-9):>8.3f}"
              f"{(d - ds) / max(e - es, 1):>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
