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


def _gate_list(text: str) -> list[float]:
    try:
        v = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"gate times in seconds, comma-separated (e.g. "
                                         f"12e-6,20e-6,...), got {text!r}") from None
    if not v:
        raise argparse.ArgumentTypeError("no gate times given")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="convert a GSSI/MALÅ/pulseEKKO/SEG-Y/gprMax radar file, or a metal detector's "
        "readings table, into a demine recording",
        description="Read a vendor radar file (GSSI .DZT with .DZG/.DZX, MALÅ .rad+.rd3/.rd7 "
        "with .cor, pulseEKKO .HD+.DT1 with .GPS, SEG-Y, gprMax .out/.h5) and write a demine "
        "recording that keeps the raw samples and the vendor header (stream attribute "
        "'vendor_header'). Several FILEs are the runs of one gprMax B-scan (one output per "
        "trace, as `gprMax model.in -n N` writes them before merging), joined as one line "
        "in the natural order of their names; with --line-spacing, the lines of one survey. "
        "A .csv/.tsv/.txt/.xyz/.dat/.asc FILE is a metal detector's readings table (a row per "
        "reading: time, x, y, z and one column per gate, e.g. ch1 or 12us; Geosoft XYZ too), "
        "written as the stream 'emi'.",
    )
    p.add_argument("file", nargs="+", metavar="FILE",
                   help="vendor data or header file (several: the runs of a gprMax B-scan)")
    p.add_argument("--out", "-o", required=True, metavar="RECORDING",
                   help="recording to create (.h5)")
    p.add_argument("--vendor", choices=("gssi", "mala", "pulseekko", "segy", "gprmax",
                                        "emi-table"),
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
    p.add_argument("--gate-times", type=_gate_list, metavar="T1,T2,...",
                   help="readings table: gate centre times in seconds, one per gate column, "
                   "when the column names do not give them")
    p.add_argument("--rate", type=_positive, metavar="HZ",
                   help="readings table without a time column: readings per second")
    p.add_argument("--units", default="", metavar="UNIT",
                   help="readings table: units of the readings (e.g. mV), recorded as is")
    p.add_argument("--footprint", type=_positive, metavar="M",
                   help="readings table: width of ground one reading senses, m (the coil's "
                   "size: 1.0 for an EM61), for the searched area (default: twice the coil "
                   "radius, else 0.3)")
    p.add_argument("--coil-radius", type=_positive, metavar="M",
                   help="readings table: radius of the detector's coil, m (its calibration; "
                   "the detector's distances scale with it; default 0.12)")
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
    from ..errors import ConfigError
    from ..io.emi_table import EMI_TABLE_SUFFIXES

    table = args.vendor == "emi-table" or (
        args.vendor is None and len(args.file) == 1
        and Path(args.file[0]).suffix.lower() in EMI_TABLE_SUFFIXES)
    if table:
        for opt, given in (("--trace-spacing", args.trace_spacing),
                           ("--line-spacing", args.line_spacing)):
            if given:
                raise ConfigError(f"{opt} is for radar files, not a readings table")
        if len(args.file) != 1:
            raise ConfigError("one readings table at a time")
        from ..io.convert import import_emi_table

        summary = import_emi_table(
            args.file[0], args.out, gate_times=args.gate_times, rate=args.rate,
            units=args.units, footprint=args.footprint, coil_radius=args.coil_radius,
            allow_partial=args.allow_partial, site=args.site, operator=args.operator,
            lane_id=args.lane_id, notes=args.notes, overwrite=args.overwrite, truth=truth)
        if args.json:
            print(json.dumps(summary))
            return 0
        st = summary["streams"]["emi"]
        gates = ("gate times unknown (give --gate-times, or detect with --calibration)"
                 if st["gate_times"] is None else
                 f"gates {st['gate_times'][0] * 1e6:g}-{st['gate_times'][-1] * 1e6:g} us")
        print(f"{summary['source']} -> {summary['out']}")
        print(f"  emi: {st['readings']} readings x {st['gates']} gates, {gates} "
              f"(time: {st['time_source']})")
        if summary.get("truth"):
            print(f"  truth: {summary['truth']} targets")
        return 0
    for opt, given in (("--gate-times", args.gate_times), ("--rate", args.rate),
                       ("--units", args.units), ("--footprint", args.footprint),
                       ("--coil-radius", args.coil_radius)):
        if given:
            raise ConfigError(f"{opt} is for a metal detector's readings table, not a radar "
                              "file")
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
