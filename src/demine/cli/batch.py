"""``demine batch``: the per-file detection job over a whole campaign, on Dask."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="detect, classify and evaluate many recordings on Dask (campaign table)",
        description="Run the per-file job (detection, the classifier when --model is given, "
        "evaluation against the recording's ground truth) on every recording, one Dask task "
        "per file, on a local cluster or an existing scheduler. Writes DIR/campaign.parquet "
        "(every alarm), DIR/files.parquet (per-file metrics) and DIR/summary.json (pooled PD "
        "with Clopper-Pearson bounds, FA/m², ROC). A failed file is reported and the others go "
        "on; a re-run skips files whose outputs are up to date (same file, config, model and "
        "demine version) unless --force. Needs pip install 'demine[campaign]'.",
    )
    p.add_argument("inputs", nargs="+", metavar="GLOB",
                   help="recordings or glob patterns (quote them; ** recurses)")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                   help="output directory")
    p.add_argument("--config", metavar="CFG",
                   help="detection config (TOML with [emi]/[gpr]), a chain TOML or a packaged "
                   "chain name (replaces the default chain of its stream kind)")
    p.add_argument("--model", metavar="MODEL",
                   help="classifier model file ('default': the packaged model): adds p_mine "
                   "and evaluates on it")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help="use calibration PROFILE (shipped name or .toml) for stream STREAM of "
                   "every recording instead of what it holds, for detection and the "
                   "classifier (as demine detect --calibration; repeatable; the recordings "
                   "are not changed)")
    p.add_argument("--truth", type=Path, metavar="CSV",
                   help="ground truth kept apart from the recordings (a blind trial's; as "
                   "demine evaluate --truth), with a 'file' column naming each row's "
                   "recording; replaces their own truth tables")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler (default: a local cluster); "
                   "its workers must see the recordings and DIR at the same paths")
    p.add_argument("--workers", type=int, metavar="N",
                   help="workers of the local cluster (default: one per core; not with "
                   "--scheduler)")
    p.add_argument("--threads", action="store_true",
                   help="local cluster workers as threads in this process, not processes "
                   "(not with --scheduler)")
    p.add_argument("--force", action="store_true",
                   help="recompute files whose outputs are up to date")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchInterrupted, run_batch
    from ..errors import ConfigError
    from .detect import calibration_items

    if args.scheduler and (args.workers is not None or args.threads):
        # (they shape the local cluster; a scheduler's cluster has its own workers)
        raise ConfigError(f"{'--workers' if args.workers is not None else '--threads'} is for "
                          "the local cluster: with --scheduler the scheduler's workers run "
                          "the files")
    calibration = calibration_items(args.calibration)
    model = args.model
    if model == "default":  # (as demine evaluate --model default)
        from ..classify import default_model_path

        model = default_model_path()
    terminated = []

    def on_term(signum: int, frame: Any) -> None:
        # (SIGTERM, as a job scheduler or systemd stops a job: as Ctrl-C, so the
        # cluster is shut down and nothing half-written is left; one repeated
        # meanwhile must not cut that shutdown short)
        terminated.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    installed = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if installed else None
    try:
        res = run_batch(args.inputs, args.out, config=args.config, model=model,
                        scheduler=args.scheduler, workers=args.workers,
                        processes=not args.threads, force=args.force,
                        progress=not args.quiet, say=lambda line: print(line, flush=True),
                        calibration=calibration or None, truth=args.truth)
    except BatchInterrupted as exc:  # Ctrl-C: one line, the shell's status for SIGINT
        # (nothing more from Dask while this process exits: thread workers still
        # finishing their tasks would log their cancelled shutdown)
        logging.disable(logging.CRITICAL)
        print(f"demine batch: {exc}" + (" (SIGTERM)" if terminated else ""), file=sys.stderr,
              flush=True)
        return 143 if terminated else 130
    except KeyboardInterrupt:
        if not terminated:
            raise
        # (before any recording was started: reading the inputs, the lock, the model)
        print("demine batch: interrupted before processing began (SIGTERM)", file=sys.stderr,
              flush=True)
        return 143
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    for group, ev in res.evaluations.items():
        print(f"\n[{group}] pooled over {len(ev.lanes)} recordings with ground truth")
        print(ev.summary())
    print(f"\nwritten: {res.campaign}, {res.files_table}, {res.summary}")
    return 1 if res.failed else 0
