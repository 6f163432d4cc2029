"""``demine import FILE… --out RECORDING``: vendor radar file to a demine recording."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .evaluate import _positive
from .record import add_metadata_options


def _spacing(text: str) -> float:
    v = _positive(text)
    if v > 1000.0:
        raise argparse.ArgumentTypeError(f"metres between traces, at most 1000, got {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="convert a GSSI/MALÅ/pulseEKKO/SEG-Y/gprMax radar file into a demine recording",
        description="Read a vendor radar file (GSSI .DZT with .DZG/.DZX, MALÅ .rad+.rd3/.rd7 "
        "with .cor, pulseEKKO .HD+.DT1 with .GPS, SEG-Y, gprMax .out/.h5) and write a demine "
        "recording that keeps the raw samples and the vendor header (stream attribute "
        "'vendor_header'). Several FILEs are the runs of one gprMax B-scan (one output per "
        "trace, as `gprMax model.in -n N` writes them before merging), joined as one line "
        "in the natural order of their names; with --line-spacing, the lines of one survey.",
    )
    p.add_argument("file", nargs="+", metavar="FILE",
                   help="vendor data or header file (several: the runs of a gprMax B-scan)")
    p.add_argument("--out", "-o", required=True, metavar="RECORDING",
                   help="recording to create (.h5)")
    p.add_argument("--vendor", choices=("gssi", "mala", "pulseekko", "segy", "gprmax"),
                   help="force the reader instead of detecting it from the file")
    add_metadata_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace RECORDING if it exists")
    p.add_argument("--allow-partial", action="store_true",
                   help="keep the whole traces of a truncated file instead of failing")
    p.add_argument("--trace-spacing", type=_spacing, metavar="M",
                   help="metres between traces, replacing the file's positions along the "
                   "line (a header whose distance interval is wrong, an uncalibrated "
                   "survey wheel); the recording says it was given, and what the file said")
    p.add_argument("--line-spacing", type=_spacing, metavar="M",
                   help="several FILEs are the parallel lines of one survey, M metres apart: "
                   "one stream, the files in the natural order of their names at y = 0, M, "
                   "2M, ..., each along x from its own trace positions (or --trace-spacing)")
    p.add_argument("--truth", type=Path, metavar="CSV",
                   help="ground truth to store with it, in the file's position frame (columns "
                   "id,type,is_mine,x,y,depth,metal_mass,notes; a profile without GPS has x "
                   "along the line and y = 0), for demine evaluate")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io.convert import import_file
    from ._paths import check_not_input
    from .record import read_truth_csv

    check_not_input(args.out, list(args.file) + ([args.truth] if args.truth else []))

    # read the truth first: a bad table fails before anything is written
    truth = read_truth_csv(args.truth) if args.truth else None
    summary = import_file(
        args.file[0] if len(args.file) == 1 else args.file,
        args.out,
        vendor=args.vendor,
        site=args.site,
        operator=args.operator,
        lane_id=args.lane_id,
        notes=args.notes,
        overwrite=args.overwrite,
        allow_partial=args.allow_partial,
        truth=truth,
        trace_spacing=args.trace_spacing,
        line_spacing=args.line_spacing,
    )
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{summary['source']} -> {summary['out']}")
    for name, st in summary["streams"].items():
        if "traces" in st:
            print(f"  {name}: {st['traces']} traces x {st['samples']} samples {st['dtype']} "
                  f"(time: {st['time_source']})")
        else:
            print(f"  {name}: {st['rows']} rows")
    if summary.get("markers"):
        print(f"  markers: {summary['markers']}")
    if summary.get("truth"):
        print(f"  truth: {summary['truth']} targets")
    return 0
