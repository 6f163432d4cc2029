"""Trained on one or two physics families, how does the EMI classifier rank alarms on another?

Issue 5 asks how the classifier degrades when trained on one family of scenes
and tested on another; detection is judged on physics demine has never seen.
This trains EMI-alone models (:func:`demine.classify.train_model`, sets
``emi``) on lanes of one or more *families* and tests each on lanes of every
family, so that a family a model never saw is one of its tests:

* ``D`` demine's simulator, default forward models
  (:func:`demine.classify.training_scene`, random ``random-minefield``
  layouts; per replicate 24 swept layouts and 12 surveyed in lines);
* ``A`` the same layouts, soil and sweep with the EMI forward models switched
  to their alternatives (sphere eddy-current modes; band-limited soil
  relaxation, its band drawn per layout as ``--physics mixed`` draws it);
* ``I`` the independent induced-dipole model of
  ``benchmarks/eval_emi_independent.py`` (exact loop field, eddy-current
  decays, viscous soil; NumPy and SciPy only), 12 seeds x 3 soils, 6 m.

An arm is a ``+``-joined list of replicates, e.g. ``D1+I1``: replicate ``r``
of a family uses layouts ``r000-r035`` (``D``, ``A``) or seeds ``r00-r11``
(``I``), so replicates never share a lane, and ``D1+D2`` is the control for
simply training on more lanes of one family.  The recipe is the same for
every arm: T&E labels, the packaged model's neighbourhood radius, default
boosting; lanes carry EMI and GPS only, detected by the default detector.

Test sets, never trained on: the independent model's seeds 1-12 x 3 soils
(8 m; ``indep1-3`` is the 9 lanes of ``eval_emi_independent.py``'s default
run) and 40 layouts (5000-5039, 30 swept, 10 in lines) under each of demine's
two physics.  Reported per arm and test set: AUC of ``p_mine`` against the T&E
labels with its standard deviation over a lane bootstrap of the test set,
Brier score, PD at 0.5 FA/m² ranked by ``p_mine`` and clutter rejected at full
recovery.  The model is deterministic, so the spread between replicates of
one recipe is the spread from the lanes it was trained on.

Run (EMI-only lanes take 1-3 s each; about 10 min of simulation for the
default arms, then about a minute an arm)::

    python benchmarks/eval_physics_transfer.py --workdir /tmp/transfer
    python benchmarks/eval_physics_transfer.py --workdir /tmp/transfer \\
        --arms shipped,D1,D2,D1+I1,D2+I2,D1+A1,D2+A2,D1+D2 --json out.json

``shipped`` is the packaged model (trained with the radar too, on both of
demine's physics).  Measured in session 32 (docs/classify.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOILS = ("benign", "moderate", "strong")
#: detection config of every lane (EMI only)
CONFIG = {"gpr": {"enabled": False}}
DEFAULT_ARMS = "shipped,D1,D2,D1+I1,D2+I2,D1+A1,D2+A2,D1+D2"
TESTS = ("indep1-12", "indep1-3", "alternative", "default")


def alternative_physics(seed: int):
    """Demine's EMI forward models switched to their alternatives, the soil's
    relaxation band drawn as ``training_scene(physics="mixed")`` draws it."""
    from demine.simulate.scene import Physics

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC1A55, 1]))
    rng.random(4)
    tmin = float(math.exp(rng.uniform(math.log(3e-8), math.log(1e-6))))
    tmax = float(math.exp(rng.uniform(math.log(3e-4), math.log(1e-2))))
    return Physics(emi_decay="sphere-modes", soil_relaxation="band-limited",
                   soil_tau_min=tmin, soil_tau_max=tmax)


def _finish(tmp: Path, out: Path) -> None:
    """Detect on a written lane and keep its alarms in it (as training lanes do)."""
    import h5py

    from demine.classify import FINGERPRINT_ATTR, detector_fingerprint
    from demine.pipeline import append_alarms, detect_recording

    append_alarms(tmp, detect_recording(tmp, CONFIG))
    with h5py.File(tmp, "r+") as f:
        f.attrs[FINGERPRINT_ATTR] = detector_fingerprint(CONFIG)
    tmp.replace(out)


def demine_lane(out: Path, seed: int, family: str, pattern: str) -> Path:
    """A lane of demine's simulator, ``family`` "D" or "A"."""
    if not out.exists():
        from demine.classify import training_scene
        from demine.simulate import simulate_lane

        sc = training_scene(seed, physics="default", pattern=pattern)
        if family == "A":
            sc = dataclasses.replace(sc, physics=alternative_physics(seed))
        tmp = out.with_suffix(".partial.h5")
        simulate_lane(sc, seed=seed % 7, streams=("emi", "gps")).write(
            tmp, overwrite=True, lane_id=f"training-{seed}")
        _finish(tmp, out)
    return out


def indep_lane(out: Path, seed: int, soil: str, length: float) -> Path:
    """A lane of the independent induced-dipole model."""
    if not out.exists():
        sys.path.insert(0, str(HERE))
        import eval_emi_independent as ind

        lane = ind.simulate(seed, soil, length=length)
        tmp = out.with_suffix(".partial.h5")
        ind.write_lane(lane, tmp, soil=soil, seed=seed, a=0.12, length=length, pulse=None)
        _finish(tmp, out)
    return out


def family_lanes(code: str, workdir: Path) -> list[Path]:
    """The training lanes of replicate ``code`` (``D1``, ``A2``, ``I1`` ...)."""
    fam, r = code[:1], code[1:]
    if fam not in "DAI" or not r.isdigit() or int(r) < 1:
        raise SystemExit(f"unknown replicate {code!r}: D, A or I and a number from 1")
    r = int(r)
    d = workdir / "train"
    d.mkdir(parents=True, exist_ok=True)
    if fam == "I":
        return [indep_lane(d / f"indep-{soil}-{s}-L6.h5", s, soil, 6.0)
                for s in range(100 * r, 100 * r + 12) for soil in SOILS]
    kind = "demine-default" if fam == "D" else "demine-alt"
    b = 1000 * r
    return ([demine_lane(d / f"{kind}-{s}.h5", s, fam, "sweep") for s in range(b, b + 24)]
            + [demine_lane(d / f"{kind}-{s}-lines.h5", s, fam, "lines")
               for s in range(b + 24, b + 36)])


def test_lanes(name: str, workdir: Path) -> list[Path]:
    d = workdir / "test"
    d.mkdir(parents=True, exist_ok=True)
    if name.startswith("indep"):
        last = 3 if name == "indep1-3" else 12
        return [indep_lane(d / f"indep-{soil}-{s}-L8.h5", s, soil, 8.0)
                for soil in SOILS for s in range(1, last + 1)]
    fam, kind = ("A", "demine-alt") if name == "alternative" else ("D", "demine-default")
    return ([demine_lane(d / f"{kind}-{s}.h5", s, fam, "sweep") for s in range(5000, 5030)]
            + [demine_lane(d / f"{kind}-{s}-lines.h5", s, fam, "lines")
               for s in range(5030, 5040)])


_FEATURES: dict[Path, tuple] = {}


def evaluate(model, paths: list[Path], radius: float, boot: int = 200) -> dict[str, float]:
    """AUC (and its lane-bootstrap spread), Brier, PD at 0.5 FA/m², rejection."""
    from demine.classify import _auc as auc
    from demine.classify import apply_model, label_alarms
    from demine.evaluate import evaluate_recordings
    from demine.features import alarm_features, neighbourhood_features
    from demine.recording import Recording

    ranked, ps, ys, lane = [], [], [], []
    for k, p in enumerate(paths):
        if p not in _FEATURES:
            with Recording(p) as rec:
                truth = rec.truth
                af = alarm_features(rec, radius=None)
            _FEATURES[p] = (neighbourhood_features(af, radius), truth)
        af, truth = _FEATURES[p]
        out = apply_model(af, model)
        ranked.append(out)
        rows, _ = af.sets["emi"]
        ps.append(out["p_mine"][rows])
        ys.append(label_alarms(truth, af.alarms, rows, te=True))
        lane.append(np.full(rows.size, k))
    p, y, ln = np.concatenate(ps), np.concatenate(ys).astype(int), np.concatenate(lane)
    er = evaluate_recordings(paths, alarms=ranked, score="p_mine")
    rng = np.random.default_rng(0)
    bs = []
    for _ in range(boot):
        pick = rng.integers(0, len(paths), len(paths))
        idx = np.concatenate([np.flatnonzero(ln == i) for i in pick])
        bs.append(auc(p[idx], y[idx]))
    return {"alarms": int(y.size), "mine_alarms": int(y.sum()), "auc": auc(p, y),
            "auc_sd": float(np.nanstd(bs)), "brier": float(np.mean((p - y) ** 2)),
            "pd_at_0.5": er.pd_at_far[0.5]["pd"],
            "clutter_rejected": er.clutter_rejected_at_full_recovery}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True,
                    help="lanes and models are kept here and reused")
    ap.add_argument("--arms", default=DEFAULT_ARMS,
                    help=f"comma-separated arms, replicates joined by + (default {DEFAULT_ARMS})")
    ap.add_argument("--tests", default=",".join(TESTS),
                    help=f"comma-separated test sets of {', '.join(TESTS)}")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args()
    from demine.classify import (
        build_training_set,
        load_default_model,
        load_model,
        save_model,
        train_model,
    )

    tests = [t.strip() for t in a.tests.split(",") if t.strip()]
    for t in tests:
        if t not in TESTS:
            ap.error(f"--tests: {t!r} is not one of {', '.join(TESTS)}")
    radius = load_default_model().radius
    sets = {t: test_lanes(t, a.workdir) for t in tests}
    results = []
    for arm in [s.strip() for s in a.arms.split(",") if s.strip()]:
        t0 = time.perf_counter()
        if arm == "shipped":
            model, cv = load_default_model(), None
        else:
            mfile = a.workdir / "models" / f"{arm}.json.gz"
            paths = [p for code in arm.split("+") for p in family_lanes(code, a.workdir)]
            if mfile.exists():
                model = load_model(mfile)
            else:
                ts = build_training_set(paths, cache=a.workdir / "features", te=True,
                                        radius=radius)
                model = train_model(ts, sets=["emi"], notes=f"physics-transfer arm {arm}")
                mfile.parent.mkdir(exist_ok=True)
                save_model(model, mfile)
            cv = model.sets["emi"].cv
        res = {"arm": arm, "cv_auc": None if cv is None else cv["auc"],
               "tests": {t: evaluate(model, sets[t], radius) for t in tests}}
        results.append(res)
        line = f"{arm:<12} {time.perf_counter() - t0:5.0f} s" + (
            f"  CV AUC {cv['auc']:.3f}" if cv else "  (packaged)   ")
        for t, r in res["tests"].items():
            line += (f" | {t}: AUC {r['auc']:.3f}±{r['auc_sd']:.3f} PD@0.5 {r['pd_at_0.5']:.3f}"
                     f" Brier {r['brier']:.3f} rej {r['clutter_rejected']:.3f}")
        print(line, flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
