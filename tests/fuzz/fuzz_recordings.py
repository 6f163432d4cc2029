"""Long-run fuzzer of demine's own recordings (not collected by pytest).

Byte mutations (``fuzz_readers.mutate``, anywhere in the file) of a small
recording with EMI, GPR and truth, then ``Recording`` (every stream and table
read), ``demine info`` and ``demine detect`` on it.  Allowed outcomes: success
or a ``DemineError`` naming the file (the CLI: exit 2, one line, no
traceback).  Each case runs in a worker process, so a hang shows as a case
that never finishes and a libhdf5 crash as a dead worker.

It found that a bit flip in an HDF5 object header made SWMR reads hang for
ever (HDF5 retries a block whose checksum fails with doubling sleeps) and that
h5py's errors on damaged groups escaped as KeyError/RuntimeError.

Run::

    python tests/fuzz/fuzz_recordings.py 300            # cases 0..299
    python tests/fuzz/fuzz_recordings.py 1000 --start 300
    python tests/fuzz/fuzz_recordings.py 300 --unclosed   # a killed writer's file
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import random
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import fuzz_readers  # noqa: E402

_SEED: dict[str, Path] = {}


def make_seed(path: Path, unclosed: bool = False) -> None:
    """The seed recording; ``unclosed``: as a killed writer leaves it (flushed, not
    closed: the columns other than ``time`` run to the end of their chunk)."""
    from demine.recording import RecordingWriter

    rng = np.random.default_rng(0)
    n = 200
    t = np.arange(n, dtype=np.int64) * 1_000_000
    live = path.with_name(path.stem + "-live.h5") if unclosed else path
    with RecordingWriter(live, site="s", lane_id="L", overwrite=True) as w:
        e = w.add_stream("emi", "emi", n_channels=4, dtype="float32",
                         gate_times=[1e-5, 2e-5, 4e-5, 8e-5], calibration={"coil_radius": 0.12})
        g = w.add_stream("gpr", "gpr", n_channels=32, dtype="int16", sample_interval=1e-10,
                         calibration={"time_zero": 1e-9})
        e.append(rng.normal(size=(n, 4)).astype(np.float32), time=t,
                 x=np.linspace(0, 1, n), y=np.zeros(n))
        g.append((rng.normal(size=(n, 32)) * 100).astype(np.int16), time=t,
                 x=np.linspace(0, 1, n), y=np.zeros(n))
        w.add_truth([{"id": "M1", "type": "ap-mine", "is_mine": True, "x": 0.5, "y": 0.0,
                      "depth": 0.05, "metal_mass": 3.0, "notes": ""}])
        if unclosed:
            w.flush()
            path.write_bytes(live.read_bytes())
    if unclosed:
        live.unlink()


def case(args: tuple[int, str]) -> tuple[int, str, str]:
    """Mutate the seed with case number ``i`` and read the result every way."""
    i, seed = args
    from demine.cli import main
    from demine.errors import DemineError
    from demine.recording import Recording

    data = Path(seed).read_bytes()
    d = Path(tempfile.mkdtemp(prefix="demine-fuzzrec-"))
    try:
        p = d / "x.h5"
        p.write_bytes(fuzz_readers.mutate(data, random.Random(i), header_bias=len(data)))
        outcome = "ok"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Recording(p) as r:
                    for s in r.streams.values():
                        s.read()
                    r.truth, r.alarms, r.markers  # noqa: B018
        except DemineError as exc:
            if str(p) not in str(exc):
                return i, "FAIL", f"error without the file name: {exc}"
            outcome = "error"
        except Exception as exc:  # noqa: BLE001 - the point of a fuzzer
            return i, "FAIL", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        for argv in (["info", str(p)], ["detect", str(p), "--out", str(d / "a.csv")]):
            buf = io.StringIO()
            try:
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), \
                        warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rc = main(argv)
            except SystemExit as exc:
                rc = exc.code
            except Exception as exc:  # noqa: BLE001
                return i, "FAIL", f"{argv[0]}: {type(exc).__name__}: {exc}\n" \
                                  f"{traceback.format_exc()}"
            if rc not in (0, 1, 2) or "Traceback" in buf.getvalue():
                return i, "FAIL", f"{argv[0]} exit {rc}: {buf.getvalue()[-600:]}"
        return i, outcome, ""
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="run cases up to this number")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--unclosed", action="store_true",
                    help="mutate a recording as a killed writer leaves it (flushed, not closed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demine-fuzzrec-seed-"))
    seed = work / "seed.h5"
    make_seed(seed, unclosed=args.unclosed)
    counts: dict[str, int] = {}
    fails: dict[str, tuple[int, str]] = {}
    with mp.Pool(1, maxtasksperchild=50) as pool:
        for i, outcome, detail in pool.imap_unordered(
                case, [(i, str(seed)) for i in range(args.start, args.n)]):
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "FAIL":
                fails.setdefault(detail.split("\n")[0][:80], (i, detail))
    shutil.rmtree(work, ignore_errors=True)
    print(counts, f"{len(fails)} distinct failures")
    for i, detail in fails.values():
        print(f"--- case {i}\n{detail}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
