"""``demine report``: figures and one HTML page for a recording or a batch output."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="figures and an HTML page: radar B-scan, lane map, ROC, PD tables, coverage",
        description="Write figures a person would rather look at than read (radar B-scan with "
        "the alarms and fitted hyperbolae, detector lane map coloured by the EMI statistic with "
        "truth and alarms, ROC with its Clopper-Pearson band, PD by class and depth, searched "
        "area) and gather them into one self-contained HTML page. FILE is a recording, or a "
        "'demine batch' output directory. Needs matplotlib (pip install 'demine[plot]').",
    )
    p.add_argument("source", type=Path, metavar="FILE|DIR",
                   help="a demine recording, or a demine batch output directory")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                   help="output directory (report.html and the PNG figures)")
    p.add_argument("--config", metavar="CFG",
                   help="a recording: detect its alarms again with this detection config "
                   "(default: the alarms of its alarms table, as evaluate and export read "
                   "them; the default chains for a recording without alarms, and for the "
                   "B-scans' fitted hyperbolae)")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help="a recording: use calibration PROFILE (shipped name or .toml) for "
                   "stream STREAM instead of what it holds, for detection and the figures "
                   "(as demine detect --calibration; repeatable)")
    p.add_argument("--truth", type=Path, metavar="CSV",
                   help="a recording: ground truth kept apart from it (as demine evaluate "
                   "--truth; from a table with a 'file' column, its rows), replacing its own")
    p.add_argument("--max-files", type=int, default=12, metavar="N",
                   help="batch directory: per-recording figures for at most N recordings")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report
    from .detect import calibration_items

    html = write_report(args.source, args.out, config=args.config, max_files=args.max_files,
                        calibration=calibration_items(args.calibration) or None,
                        truth=args.truth)
    print(f"report: {html}")
    return 0
