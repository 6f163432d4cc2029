"""``demine export``: alarms (and coverage) for mine-action information systems."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export alarms as GeoJSON, CSV or KML in WGS 84 (with coverage)",
        description="Export the alarms of a recording with the fields mine-action information "
        "systems record for a found item (class, depth, confidence, sensor, operator, UTC "
        "time, GPS fix quality: empty when the last fix is older than 1 s or two of the "
        "receiver's intervals), in WGS 84 "
        "decimal degrees. GeoJSON follows RFC 7946 "
        "(longitude first). CSV is UTF-8 without a byte-order mark; a text cell starting "
        "with =, +, -, @, a tab or a carriage return (which a spreadsheet would evaluate as "
        "a formula) is written behind a single quote ('=...), numbers as they are. An "
        "existing output file is replaced.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="demine recording")
    p.add_argument("--format", "-f", choices=("geojson", "csv", "kml"), default=None,
                   help="output format (default: from --out's suffix)")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="FILE",
                   help="output file")
    p.add_argument("--alarms", type=Path, metavar="CSV",
                   help="alarms CSV (from demine detect) instead of the recording's table")
    p.add_argument("--coverage", action="store_true",
                   help="GeoJSON: add the searched area and its gaps")
    p.add_argument("--local", action="store_true",
                   help="allow a recording without a geographic reference (no GPS): export "
                   "local x, y (CSV only)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_alarms
    from ._paths import check_text_output

    check_text_output(args.out, [args.file] + ([args.alarms] if args.alarms else []))
    alarms = None
    if args.alarms:
        from ..evaluate import read_alarms_csv

        alarms = read_alarms_csv(args.alarms)
    n = export_alarms(args.file, args.out, args.format, alarms=alarms, local=args.local,
                      with_coverage=args.coverage)
    # (on stderr when the output is a pipe or /dev/stdout: not into the table)
    print(f"{args.out}: {n} alarms", file=sys.stdout if Path(args.out).is_file() else sys.stderr)
    if n == 0 and alarms is None:
        print(f"note: {args.file} holds no alarms (none detected, or not detected yet: "
              f"demine detect {args.file} --write adds them, or give --alarms CSV)",
              file=sys.stderr)
    return 0
