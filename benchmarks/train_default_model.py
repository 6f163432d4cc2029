"""Train the default mine/clutter model shipped with demine, from simulated lanes.

One command rebuilds ``src/demine/models/default.json.gz``::

    python benchmarks/train_default_model.py      # (36 swept + 18 in lines) layouts x 2 physics
    python benchmarks/train_default_model.py --lanes 60 --jobs 4 --workdir /data/train
    python benchmarks/train_default_model.py --check   # rebuild elsewhere, compare with it

``--check`` writes the rebuilt model to ``--out`` (default
``WORKDIR/check.json.gz``, never the packaged file) and compares it with the
packaged model (or ``--check MODEL``): every tree, calibration map,
cross-validated figure and meta field but the time stamp, the features version
and the CV groups (:data:`demine.classify.RUN_META`).  It prints each difference
and exits with 1 if there is one.  (Measured 2026-12-01 on 2 cores: 108 lanes
simulated in 29 min, features and training 6 min; the rebuilt model equal to
the packaged one in every parameter; training alone also with OMP_NUM_THREADS=1.
Again 2026-12-02 for the model trained on the exemption's alarms, from an
empty workdir while other jobs shared the cores: 23 min in all, every
parameter equal.)

Every lane is a random layout of the shipped ``random-minefield`` scene (AP,
minimum-metal AP, AT mines, UXO among fragments, cartridge cases, nails, cans,
rocks, hot rocks, roots and voids) over a soil whose magnetic susceptibility,
viscosity, conductivity, moisture, heterogeneity and radar clutter are drawn
at random, at a random sensor height (:func:`demine.classify.training_scene`),
5 m long, with both sensors: ``--lanes`` layouts swept side to side at a
random speed, then ``--lines`` layouts surveyed in parallel straight lines
0.15-0.3 m apart at 0.3-0.8 m/s (a cart: every object seen from one side,
the radar's long B-scans; a model trained on sweeps alone ranked cart alarms
worse, docs/classify.md).  Every
layout is simulated twice (``--physics both``): with the simulator's default
forward models and with each model switched to its alternative at random
(sphere-mode EMI decay, band-limited soil relaxation, Gaussian-derivative
radar pulse, refraction at the ground; ``--physics mixed``), the two lanes of
a layout sharing one cross-validation group.  The
default EMI and GPR detectors find the alarms, which are labelled by matching
them to the truth (T&E labels, ``--labels te``: an alarm is a mine exactly
when the halo rule matches it to one, as test and evaluation scores it, so an
alarm on a cartridge that "finds" a mine 0.2 m away is a mine, and a
duplicate beside a found mine is clutter; :func:`demine.classify.label_alarms`).
Every alarm also carries what the other alarms within its investigation disc
show (:func:`demine.features.neighbourhood_features`), the disc's radius
derived from the sensors' localisation error on these lanes (``--radius
auto``).  The model is cross-validated grouped by lane and calibrated
(isotonic, out of fold).  The shipped scenes are NOT used for training, so
``benchmarks/eval_classifier.py`` tests on scene families the model has not
seen.  Lanes, features and (with ``--redetect``) the detectors' alarms are
cached in ``--workdir``; the alarms are keyed by
:func:`demine.classify.detector_fingerprint`, so a change to the detectors'
code finds them again.  Without ``--redetect`` a lane already in
``--workdir`` keeps the alarms found when it was simulated: after a change
to the detectors (or to ``TRAINING_DETECT_CONFIG``) give ``--redetect
emi,gpr`` or an empty ``--workdir``.  A lane records the fingerprint of the
detectors that found its alarms, and the script refuses (exit 2) lanes of
other detectors (or lanes that do not say) without ``--redetect``, since
the model would be trained on the old detectors' alarms (session 30
retrained with ``--redetect emi`` over lanes simulated before the EMI
exemption).

The shipped model is trained on the alarms of today's default detectors
(``TRAINING_DETECT_CONFIG`` is empty), the EMI polarity rule's fast-decay
exemption included (session 29, ``level_drop``,
:class:`demine.detect.LevelDrop`; retrained on its alarms in session 30,
docs/classify.md).  A detector setting given there would be used for every
lane, and ``--check`` rebuilds the model with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from demine.classify import (
    TRAINING_PLANS,
    build_training_set,
    load_model,
    model_differences,
    save_model,
    simulate_training_lanes,
    simulated_detect_config,
    stale_training_lanes,
    train_model,
    training_lanes,
)
from demine.features import NEIGHBOUR_RADIUS

OUT = Path(__file__).resolve().parents[1] / "src" / "demine" / "models" / "default.json.gz"

#: Detector settings the shipped model was trained with, over the defaults
#: (``{kind: {section: {key: value}}}``, as ``demine detect --config``): none
TRAINING_DETECT_CONFIG: dict = {}


def _redetect_config(path, rec):
    """:func:`simulated_detect_config` (the radar's height on old lanes) over the
    training detectors."""
    out = {k: {kk: dict(vv) for kk, vv in v.items()} for k, v in TRAINING_DETECT_CONFIG.items()}
    for kind, sections in (simulated_detect_config(path, rec) or {}).items():
        for name, values in sections.items():
            out.setdefault(kind, {}).setdefault(name, {}).update(values)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, default=36,
                    help="swept layouts (default 36; twice as many lanes with --physics both)")
    ap.add_argument("--lines", type=int, default=18,
                    help="layouts surveyed in parallel straight lines (a cart), after the "
                    "swept ones (default 18)")
    ap.add_argument("--first-layout", type=int, default=1000, help="first layout seed")
    ap.add_argument("--jobs", type=int, default=2, help="parallel simulations")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/demine-train"),
                    help="lane and feature cache directory")
    ap.add_argument("--out", type=Path, help=f"model file (default {OUT}; with --check "
                    "WORKDIR/check.json.gz)")
    ap.add_argument("--check", nargs="?", const=OUT, type=Path, metavar="MODEL",
                    help="rebuild into --out (not the packaged file) and compare with MODEL "
                    "(default: the packaged model); exit 1 if they differ")
    ap.add_argument("--physics", choices=TRAINING_PLANS, default="both",
                    help="forward models of the lanes: default; mixed (each model "
                    "switched to its alternative at random per lane; "
                    "demine.classify.training_scene); both (default: every layout once "
                    "with each)")
    ap.add_argument("--redetect", default="", metavar="KINDS",
                    help="comma-separated sensor kinds (emi,gpr) whose alarms today's "
                    "detectors find again in cached lanes (after a detector changed; cached "
                    "by detector fingerprint; lanes without a recorded radar antenna height "
                    "get their scene's sweep height)")
    ap.add_argument("--labels", choices=("te", "strict", "halo"), default="te",
                    help="te (default): 1 exactly for the alarms the halo rule matches to a "
                    "mine, every other alarm 0, as test and evaluation scores them; strict: "
                    "hits nearer a clutter object than the mine and duplicates left out; "
                    "halo: duplicates left out")
    ap.add_argument("--radius", default="auto",
                    help="investigation disc of the neighbourhood features, m, or 'auto' "
                    "(default): the combined 95th-percentile localisation error of the two "
                    f"sensors' hits on the training lanes (fallback {NEIGHBOUR_RADIUS} m)")
    args = ap.parse_args()
    redetect = tuple(dict.fromkeys(k.strip() for k in args.redetect.split(",") if k.strip()))
    unknown = [k for k in redetect if k not in ("emi", "gpr")]
    if unknown:
        ap.error(f"--redetect takes emi and gpr, not {', '.join(unknown)}")
    if args.out is None:
        args.out = args.workdir / "check.json.gz" if args.check else OUT
    if args.check and args.out.resolve() == args.check.resolve():
        ap.error("--check compares the rebuilt model with MODEL: give another --out")
    reference = load_model(args.check) if args.check else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = simulate_training_lanes(
        args.workdir, training_lanes(args.first_layout, args.lanes, args.physics,
                                     lines=args.lines), jobs=args.jobs,
        detect_config=TRAINING_DETECT_CONFIG)
    print(f"{len(paths)} lanes ready in {time.perf_counter() - t0:.0f} s")
    stale = stale_training_lanes(paths, TRAINING_DETECT_CONFIG)
    if stale and not redetect:
        # (their alarms are other detectors' than today's: a model trained on
        # them ranks alarms today's detectors do not give)
        print(f"error: {len(stale)} of the {len(paths)} lanes in {args.workdir} hold alarms "
              "found by other detectors than today's, or do not say which (the first: "
              f"{stale[0].name}): give --redetect emi,gpr (today's detectors find them again, "
              "cached) or an empty --workdir", file=sys.stderr)
        return 2
    if stale:
        kept = [k for k in ("emi", "gpr") if k not in redetect]
        print(f"{len(stale)} lanes hold other detectors' alarms: today's find the "
              f"{' and '.join(redetect)} alarms again"
              + (f"; their {' and '.join(kept)} alarms are kept as found (the lanes' "
                 "fingerprint covers every detector: give them to --redetect too unless "
                 "only the others changed)" if kept else ""))
    ts = build_training_set(paths, cache=args.workdir / "features-cache",
                            strict=args.labels == "strict", te=args.labels == "te",
                            radius=args.radius if args.radius == "auto" else float(args.radius),
                            progress=print,
                            redetect=redetect,
                            redetect_config=_redetect_config)
    model = train_model(ts, notes="default model: simulated random-minefield layouts with "
                        f"randomised soil, {args.lanes} swept and {args.lines} in lines, "
                        f"{args.physics} physics "
                        "(benchmarks/train_default_model.py), "
                        f"{args.labels} labels, neighbourhood radius {ts.radius:.3f} m "
                        f"({args.radius})",
                        progress=print)
    save_model(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in "
          f"{time.perf_counter() - t0:.0f} s")
    if reference is not None:
        diff = model_differences(reference, load_model(args.out))
        for line in diff:
            print(f"differs from {args.check}: {line}")
        print(f"{args.out} {'differs from' if diff else 'reproduces'} {args.check}"
              + ("" if diff else " (every parameter equal)"))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
