"""``demine train RECORDINGS… --out MODEL``: train the mine/clutter classifier."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the mine/clutter classifier on recordings with ground truth",
        description="Compute the features of every alarm of the recordings (their alarms "
        "table: run 'demine detect --write' first), label the alarms by matching them to "
        "the ground truth (mine, or clutter/nothing), cross-validate grouped by lane (no "
        "lane is ever in both training and test), calibrate p_mine (isotonic, out of fold) "
        "and write a model file that cannot execute code when loaded (JSON; .gz "
        "compresses). Use --simulate N to train on N random simulated lanes instead.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="RECORDING",
                   help="demine recordings with alarms and a truth table")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="MODEL",
                   help="model file to write (e.g. model.json.gz)")
    p.add_argument("--simulate", type=int, default=0, metavar="N",
                   help="also simulate N random training layouts (random-minefield layouts "
                   "with randomised soil; see --physics), written to --workdir")
    p.add_argument("--lines", type=int, default=0, metavar="M",
                   help="also simulate M layouts surveyed in parallel straight lines (a cart, "
                   "0.15-0.3 m apart: each object seen from one side, long radar B-scans), "
                   "after the N swept ones")
    # classify.TRAINING_PLANS, spelt out: importing classify here would slow every command
    p.add_argument("--physics", choices=("default", "mixed", "both"), default="both",
                   help="forward models of the --simulate lanes: default; mixed (each model "
                   "switched to the simulator's alternative at random per lane); both "
                   "(default, as the packaged model: every layout once with each, so N "
                   "layouts make 2N lanes)")
    p.add_argument("--first-layout", type=int, default=1000, metavar="SEED",
                   help="layout seed of the first simulated lane (default 1000)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="simulate N lanes at once, in processes of their own (default 1)")
    p.add_argument("--workdir", type=Path, metavar="DIR",
                   help="where simulated lanes and the feature cache go "
                   "(default: a 'demine-train' directory next to --out)")
    p.add_argument("--folds", type=int, default=5, metavar="N",
                   help="grouped cross-validation folds (default 5; at least 2)")
    # classify.CV_GROUPS, spelt out as TRAINING_PLANS is
    p.add_argument("--cv-groups", choices=("lane", "site"), default="lane",
                   help="cross-validation groups: lane (default: every recording of a lane of "
                   "a site in one fold) or site (every site in one fold: figures for a site "
                   "the model has not seen; needs recordings of 2 sites or more)")
    p.add_argument("--halo", type=float, metavar="R",
                   help="matching radius (m) for every target (default 0.25 AP, 0.5 larger)")
    p.add_argument("--labels", choices=("te", "strict", "halo"), default="te",
                   help="te (default, as the packaged model): an alarm is a mine exactly when "
                   "the halo rule matches it to one, every other alarm is clutter, as test and "
                   "evaluation scores them; strict: hits nearer a clutter object than the mine "
                   "and duplicates left out; halo: duplicates left out")
    p.add_argument("--radius", default="auto", metavar="R",
                   help="investigation disc (m) of the neighbourhood features, or 'auto' "
                   "(default): the sensors' 95th-percentile localisation error on these "
                   "recordings")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help="the calibration PROFILE (shipped name or .toml) the RECORDINGs' "
                   "alarms of stream STREAM were detected with (demine detect "
                   "--calibration), for their features; repeatable; not with --simulate or "
                   "--lines, whose lanes carry their own")
    p.add_argument("--notes", default="", help="free text stored in the model file")
    p.set_defaults(run=run)


def _check_groups(files: list[Any], lanes: list[Any], cv_groups: str) -> None:
    """Refuse, before anything is simulated or read in full, training data of one
    cross-validation group (a lane, or a site with ``--cv-groups site``)."""
    from ..classify import lane_group, lane_site
    from ..errors import ConfigError, DemineError
    from ..recording import Recording

    groups: dict[str, list[str]] = {}
    for seed, _, stem, _ in lanes:
        key = "simulated" if cv_groups == "site" else f"simulated/training-{int(seed)}"
        groups.setdefault(key, []).append(stem)
    for f in files:
        try:
            with Recording(f) as rec:
                key = lane_site(rec) if cv_groups == "site" else lane_group(rec, Path(f).name)
        except (DemineError, OSError):
            return   # (an unreadable recording is reported by the training itself)
        groups.setdefault(key, []).append(Path(f).name)
    if len(groups) < 2:
        what = "site" if cv_groups == "site" else "lane"
        key, names = next(iter(groups.items()))
        raise ConfigError(
            f"grouped cross-validation needs at least 2 {what}s, and these are all of "
            f"{what} {key!r} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): "
            + ("give --simulate 2 or more" if not files and what == "lane" else
               "recordings of one site and lane_id are one lane (e.g. runs of demine "
               "simulate with one --layout-seed and other --seed values); give recordings "
               "of more lanes" if what == "lane" else "give recordings of another site"))


def run(args: argparse.Namespace) -> int:
    from ..classify import (
        build_training_set,
        save_model,
        simulate_training_lanes,
        train_model,
        training_lanes,
    )
    from ..errors import ConfigError
    from ._paths import check_text_output

    # checked before hours of simulation and training, not when the model is written
    check_text_output(args.out, args.files)
    parent = args.out.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {args.out}: directory {parent} is not writable")
    from .detect import calibration_items

    calibration = calibration_items(args.calibration)
    if calibration and (args.simulate or args.lines):
        raise ConfigError("--calibration is for the RECORDINGs given, not for the lanes of "
                          "--simulate and --lines, which carry their own calibration")
    if args.folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {args.folds}")
    work = args.workdir or args.out.parent / "demine-train"
    files = list(args.files)
    if args.simulate < 0:
        raise ConfigError("--simulate must be >= 0")
    if args.lines < 0:
        raise ConfigError("--lines must be >= 0")
    if args.jobs < 1:
        raise ConfigError("--jobs must be >= 1")
    radius: float | str = args.radius
    if radius != "auto":
        try:
            radius = float(radius)
        except ValueError:
            raise ConfigError(f"--radius must be a number of metres or 'auto', "
                              f"got {args.radius!r}") from None
        if not (radius > 0 and math.isfinite(radius)):
            raise ConfigError(f"--radius must be a finite number of metres > 0, got {radius}")
    if args.halo is not None and not (args.halo > 0 and math.isfinite(args.halo)):
        # (it had been refused only once every recording's features were made)
        raise ConfigError(f"--halo must be a finite number of metres > 0, got {args.halo}")
    if work.exists() and not work.is_dir():
        raise ConfigError(f"--workdir {work} exists and is not a directory")
    lanes = (training_lanes(args.first_layout, args.simulate, args.physics, lines=args.lines)
             if args.simulate or args.lines else [])
    if not files and not lanes:
        raise ConfigError("no recordings given (and no --simulate or --lines)")
    _check_groups(files, lanes, args.cv_groups)
    planned = [work / f"{stem}.h5" for _, _, stem, _ in lanes]
    out_real = os.path.realpath(args.out)
    for p in planned:   # (the model had been written over a lane it was trained on)
        if os.path.realpath(p) == out_real:
            raise ConfigError(f"--out {args.out} is the simulated lane {p.name} of --workdir "
                              f"{work}: give the model another path")
    if planned:
        from ..classify import stale_training_lanes

        there = [p for p in planned if p.is_file()]
        try:
            stale = stale_training_lanes(there)
        except OSError as exc:
            raise ConfigError(f"a lane already in {work} cannot be read ({exc}): remove it, "
                              "or give another --workdir") from None
        if stale:
            # (they had been reused without a word: a model trained on another
            # detector's alarms ranks alarms today's detectors do not give)
            raise ConfigError(f"{len(stale)} of the {len(there)} lanes already in {work} hold "
                              "alarms found by other detectors than today's, or do not say "
                              f"which (the first: {stale[0].name}): they would be reused; "
                              "remove them, or give another --workdir")

    def say(line: str) -> None:
        # (progress on stderr: `demine train ... | head` had lost the model, the
        # pipe closing before it was written)
        print(line, file=sys.stderr, flush=True)

    if lanes:
        files += simulate_training_lanes(work, lanes, jobs=args.jobs, progress=say)

    ts = build_training_set(files, cache=work / "features-cache", halo=args.halo,
                            strict=args.labels == "strict", te=args.labels == "te",
                            radius=radius, progress=say, calibration=calibration or None)
    model = train_model(ts, n_splits=args.folds, notes=args.notes, progress=say,
                        cv_groups=args.cv_groups)
    save_model(model, args.out)
    print(f"model written to {args.out} ({args.out.stat().st_size} bytes; feature sets "
          f"{', '.join(model.sets)})")
    return 0
