"""``demine detect``: alarms of a recording, the same as ``demine record --detect`` live."""

from __future__ import annotations

import argparse
from pathlib import Path

CALIBRATION_HELP = (
    "use calibration PROFILE (shipped name or .toml) for stream STREAM instead of what the "
    "recording holds, e.g. the time zero of `demine calibrate time-zero` for an imported "
    "radar file, or its centre frequency (repeatable; the recording is not changed)")


def calibration_items(items: list[str]) -> dict[str, str]:
    """``{stream: profile}`` from ``--calibration STREAM=PROFILE`` arguments."""
    from ..errors import ConfigError

    out: dict[str, str] = {}
    for item in items:
        key, sep, profile = item.partition("=")
        if not sep or not key or not profile:
            raise ConfigError(f"--calibration {item!r}: expected STREAM=PROFILE (a stream "
                              "of the recording, as `demine info` lists them)")
        if key in out:
            raise ConfigError(f"--calibration: stream {key!r} given twice")
        out[key] = profile
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="find alarms in a recording (EMI and GPR detectors)",
        description="Run each EMI and GPR stream of a recording through its processing chain "
        "and detector, and report the alarms (position, depth, score). The raw data is not "
        "modified; --write appends the alarms to the recording's alarms table.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="demine recording")
    p.add_argument("--config", metavar="CFG", help="detection config (TOML), see demine.pipeline")
    p.add_argument("--stream", action="append", default=None, metavar="NAME",
                   help="only these streams (repeatable; default every EMI and GPR stream)")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help=CALIBRATION_HELP)
    p.add_argument("--out", "-o", type=Path, metavar="CSV",
                   help="write the alarms as CSV (not over the recording or another HDF5 file)")
    p.add_argument("--write", action="store_true",
                   help="append the alarms to the recording's alarms table (refused when it "
                   "already holds alarms of those streams: live or an earlier --write)")
    p.add_argument("--replace", action="store_true",
                   help="with --write: first remove the table's alarms of the streams "
                   "detected (those of other streams are kept)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..pipeline import (
        append_alarms,
        check_alarms_absent,
        detect_recording,
        load_detect_config,
        write_alarms_csv,
    )
    from ..recording import Recording
    from ._paths import check_text_output

    if args.replace and not args.write:
        raise ConfigError("--replace goes with --write")
    calibration = calibration_items(args.calibration)
    if args.out:
        check_text_output(args.out, [args.file])
    names: list[str] = []
    if args.write:  # (before the detection, which may take a while)
        cfg = load_detect_config(args.config)
        with Recording(args.file) as rec:
            names = args.stream or [n for n, s in rec.streams.items()
                                    if s.kind in ("emi", "gpr") and cfg[s.kind]["enabled"]]
        from ..recording import MAX_STREAM_NAME

        for name in names:  # (a file of another tool, or of a version before the limit)
            if len(name.encode("utf-8")) > MAX_STREAM_NAME:
                raise ConfigError(
                    f"{args.file}: stream {name!r} is longer than the alarms table's "
                    f"{MAX_STREAM_NAME} bytes: its alarms cannot be written into the "
                    "recording (write them to --out CSV, or rename the stream's group)")
        if not args.replace:
            check_alarms_absent(args.file, names)
    notes: list[str] = []
    alarms = detect_recording(args.file, args.config, streams=args.stream, notes=notes,
                              calibration=calibration)
    n = len(alarms["x"])
    if args.out:
        write_alarms_csv(alarms, args.out)
    if args.write:
        append_alarms(args.file, alarms, replace=names if args.replace else False)
    print(f"{args.file}: {n} alarms")
    if n:
        # (the label tells the EMI shape-novelty alarms, scored by their
        # novelty, from the statistic's)
        print(f"  {'stream':<8} {'x (m)':>8} {'y (m)':>8} {'depth (m)':>10} {'score':>10}  label")
        for i in range(n):
            print(f"  {alarms['stream'][i]:<8} {alarms['x'][i]:8.3f} {alarms['y'][i]:8.3f} "
                  f"{alarms['depth'][i]:10.3f} {alarms['score'][i]:10.2f}  {alarms['label'][i]}")
    if args.out:
        print(f"  written to {args.out}")
    for note in notes:
        print(f"  note: {note}")
    return 0
