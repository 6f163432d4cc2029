"""``demine evaluate FILE…``: PD, FA/m² and ROC of alarms against ground truth."""

from __future__ import annotations

import argparse
import json
import math
import sys


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="probability of detection, false alarms per m² and ROC against ground truth",
        description="Match the alarms of recordings (their alarms table, or --alarms CSV) to "
        "their ground truth within a halo, and report PD with its exact one-sided 95% "
        "Clopper-Pearson lower bound, false alarms per m² of ground the sensor footprint "
        "swept, PD at 0.5 and 1.0 FA/m² from the ROC, localisation error, and the same by "
        "target class, size, depth band and soil. Several files are pooled.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="demine recording(s) (.h5)")
    p.add_argument("--alarms", action="append", metavar="CSV",
                   help="alarms CSV (columns x, y, optional score, depth, file); give one per "
                   "FILE, or one with a 'file' column for several FILEs")
    p.add_argument("--truth", action="append", metavar="CSV",
                   help="ground truth kept apart from the recordings (a blind trial's; CSV "
                   "columns x, y, optional id, type, is_mine, depth, metal_mass, halo, file), "
                   "replacing their own truth tables; give one per FILE, or one with a "
                   "'file' column for several FILEs")
    p.add_argument("--halo", type=_positive, metavar="R",
                   help="halo radius in m for every target (default 0.25 m for "
                   "anti-personnel-sized targets, 0.5 m for larger)")
    p.add_argument("--footprint", type=_positive, metavar="W",
                   help="sensor footprint width in m (default: stream attribute, else twice "
                   "the calibration's coil radius, else 0.3)")
    p.add_argument("--stream", metavar="NAME",
                   help="stream whose positions define the searched area (default: EMI)")
    p.add_argument("--alarm-stream", metavar="NAME",
                   help="evaluate only the alarms of this stream (e.g. emi or gpr); its "
                   "positions then define the searched area")
    p.add_argument("--score", default="score", metavar="FIELD",
                   help="alarm column used as score (default score; e.g. p_mine)")
    p.add_argument("--model", metavar="MODEL",
                   help="classify each recording's alarms with this model file ('default': "
                   "the packaged model) and rank them by p_mine: ROC and clutter rejected "
                   "at full recovery after classification (see demine train)")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help="with --model: the calibration profile the alarms were detected with "
                   "(demine detect --calibration), for the classifier's features of each FILE")
    p.add_argument("--targets", choices=("mines", "all"), default="mines",
                   help="which truth rows are targets (default mines; others are clutter)")
    p.add_argument("--min-metal", type=float, metavar="KG",
                   help="count only targets with at least this metal mass (kg) in PD; "
                   "alarms on the others are neither detections nor false alarms")
    p.add_argument("--include-unsearched", action="store_true",
                   help="count targets outside the searched area in PD")
    p.add_argument("--far", type=_positive, action="append", metavar="RATE",
                   help="FA/m² level(s) to read PD at (default 0.5 and 1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--target-table", metavar="CSV",
                   help="write one row per ground-truth row: found or not, by which alarm, "
                   "how far off (lane, id, type, depth, searched, counted, found, alarm, "
                   "alarm_score, distance, ...)")
    p.add_argument("--alarm-table", metavar="CSV",
                   help="write one row per alarm: its outcome (hit, false, clutter, ignored, "
                   "outside) and the truth row it matched")
    p.add_argument("--roc-plot", metavar="PNG", help="save the ROC with its confidence band")
    p.add_argument("--map-plot", metavar="PNG",
                   help="save a lane map (path, truth, alarms) of the first FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._params import check_number
    from ..errors import ConfigError
    from ..evaluate import evaluate_recordings

    if args.min_metal is not None:
        args.min_metal = check_number("evaluate", "--min-metal", args.min_metal, lo=0)
    from ._paths import check_text_output

    inputs = [*args.files, *(args.alarms or []), *(args.truth or [])]
    for opt in ("--target-table", "--alarm-table"):
        out = getattr(args, opt[2:].replace("-", "_"))
        if out:  # (never over a recording or an input)
            check_text_output(out, inputs, opt)
    if args.target_table and args.target_table == args.alarm_table:
        raise ConfigError(f"--target-table and --alarm-table are both {args.target_table}")
    if args.roc_plot or args.map_plot:
        from ..plots import check_figure_path

        # before the evaluation: a mistyped suffix should not cost a run
        if args.roc_plot:
            check_figure_path(args.roc_plot, "--roc-plot")
        if args.map_plot:
            check_figure_path(args.map_plot, "--map-plot")
    select = None
    if args.min_metal is not None:
        limit = float(args.min_metal)

        def select(truth):
            return truth["metal_mass"] >= limit

    alarms, score = args.alarms, args.score
    if getattr(args, "calibration", None) and not getattr(args, "model", None):
        raise ConfigError("--calibration goes with --model (the classifier's features); the "
                          "alarms' own calibration is that of their detection")
    if getattr(args, "model", None):
        from ..classify import apply_model, load_default_model, load_model
        if args.alarms:
            raise ConfigError("--model classifies the recordings' own alarms tables; "
                              "it cannot be combined with --alarms")
        from .detect import calibration_items

        calibration = calibration_items(getattr(args, "calibration", None) or [])
        model = load_default_model() if args.model == "default" else load_model(args.model)
        alarms = [apply_model(f, model, calibration=calibration) for f in args.files]
        score = "p_mine"
        import numpy as np

        for f, a in zip(args.files, alarms, strict=True):
            p = np.asarray(a.get("p_mine", ()), dtype=np.float64)
            if p.size and np.isnan(p).all() and args.alarm_stream is None:
                # (the generic hint, "use --model", would be given with --model)
                from ..recording import Recording

                with Recording(f) as rec:
                    det = [n for n, s in rec.streams.items() if s.kind in ("emi", "gpr")]
                named = sorted({str(v) for v in a.get("stream", [])} - {""})
                raise ConfigError(
                    f"{f}: the model scored none of its {p.size} alarms: it classifies "
                    "alarms whose 'stream' column names an EMI or GPR stream of the "
                    f"recording ({', '.join(det) or 'none'}); these name "
                    f"{', '.join(named) or 'no stream'}")
    result = evaluate_recordings(
        args.files, alarms=alarms, truth=args.truth, stream=args.stream, footprint=args.footprint,
        score=score, alarm_stream=args.alarm_stream, halo=args.halo, targets=args.targets,
        include_unsearched=args.include_unsearched, select=select,
        far_levels=tuple(args.far) if args.far else (0.5, 1.0),
    )
    if alarms is None:
        # (the usual slip: `demine detect FILE --out CSV` leaves the table as it was)
        from ..pipeline import alarm_counts

        for f, lane in zip(args.files, result.lanes, strict=True):
            if lane.alarm_x.size == 0 and not alarm_counts(f):
                print(f"note: {f} has no alarms in its alarms table (if it was never "
                      f"detected on: write them with 'demine detect {f} --write', or give "
                      "the detector's CSV with --alarms)", file=sys.stderr)
    elif args.alarms and all(ln.alarm_x.size == 0 for ln in result.lanes):
        # (a detection that found nothing, or the wrong file: PD 0 either way)
        print(f"note: {', '.join(str(a) for a in args.alarms)} hold(s) no alarm for "
              + ("this recording" if len(args.files) == 1 else "these recordings"),
              file=sys.stderr)
    from ..evaluate import write_table_csv

    if args.target_table:
        write_table_csv(result.target_table(), args.target_table)
    if args.alarm_table:
        write_table_csv(result.alarm_table(), args.alarm_table)
    if args.roc_plot or args.map_plot:
        from ..plots import plot_lane_map, plot_roc, save_figure

        if args.roc_plot:
            save_figure(plot_roc(result), args.roc_plot)
        if args.map_plot:
            save_figure(plot_lane_map(result.lanes[0]), args.map_plot)
    if args.json:
        d = result.to_dict()
        d["files"] = [str(f) for f in args.files]
        print(json.dumps(d, indent=1, allow_nan=False))
    else:
        print(result.summary())
    return 0
