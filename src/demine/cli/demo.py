"""``demine demo``: the whole toolkit on simulated devices, in one command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="record simulated devices over serial, detect, and report PD and FA/m²",
        description="Start a simulated metal detector, radar and RTK tracker on "
        "pseudo-terminals, record them through the real serial path, detect anomalies, "
        "and evaluate the alarms against the scene's ground truth.",
    )
    p.add_argument("--out", "-o", type=Path, default=Path("demine-demo"), metavar="DIR",
                   help="output directory (default: ./demine-demo)")
    p.add_argument("--scene", default="demo-lane", metavar="SCENE",
                   help="shipped scene name or scene TOML (default: demo-lane; "
                   "`demine simulate --list` lists them)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds to record (default: one full coverage of the lane)")
    p.add_argument("--seed", type=int, default=1, metavar="N",
                   help="run seed of the simulated devices, >= 0 (default 1)")
    p.add_argument("--speed", type=float, default=2.0, metavar="FACTOR",
                   help="real-time factor of the simulated devices (default 2: the 30 s "
                   "lane records in 15 s; 1 paces them as real devices)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON at the end")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    result = run_demo(args.out, scene=args.scene, duration=args.duration, seed=args.seed,
                      speed=args.speed, plots=not args.no_plots)
    if args.json:
        print(json.dumps(result["evaluation"]))
    return 0
