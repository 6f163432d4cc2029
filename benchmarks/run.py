"""Run every benchmark and print one table.

    python benchmarks/run.py            # all benchmarks/bench_*.py modules
    python benchmarks/run.py emi gpr    # only bench_emi.py and bench_gpr.py
    python benchmarks/run.py --markdown # the table as Markdown (docs/benchmarks.md)
    python benchmarks/run.py --split    # one narrower table per suite instead

Each ``benchmarks/bench_<name>.py`` module defines ``run()``, which measures its
cases side by side in the same process and returns a list of rows (dicts of
column name to value; a ``suite`` key names the group).  Rows of all modules are
printed as one table whose columns are the union of the keys, in order of first
appearance.  A ``run()`` that returns a string has it printed as is; ``None``
means the module printed its own output.  A module that fails is reported in the
table and does not stop the others.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def discover(only: list[str] | None = None) -> list[Path]:
    mods = sorted(HERE.glob("bench_*.py"))
    if only:
        wanted = {f"bench_{n.removeprefix('bench_').removesuffix('.py')}.py" for n in only}
        missing = wanted - {m.name for m in mods}
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
        mods = [m for m in mods if m.name in wanted]
    return mods


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def print_table(rows: list[dict[str, Any]], markdown: bool = False, file=None) -> None:
    """Print ``rows`` (dicts) as an aligned text or Markdown table."""
    file = file or sys.stdout
    if not rows:
        print("(no rows)", file=file)
        return
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    if markdown:
        print("| " + " | ".join(cols) + " |", file=file)
        print("|" + "|".join("---" for _ in cols) + "|", file=file)
        for line in cells:
            print("| " + " | ".join(v.replace("|", "\\|") for v in line) + " |", file=file)
        return
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)), file=file)


def machine() -> str:
    try:
        import numpy as np

        np_v = np.__version__
    except ImportError:  # pragma: no cover
        np_v = "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"NumPy {np_v}, {platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run demine's benchmarks and print one table.")
    p.add_argument("names", nargs="*", help="benchmarks to run (emi, gpr, …); default all")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--split", action="store_true",
                   help="one table per suite (only its own columns) instead of one table")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    print(f"# machine: {machine()}", flush=True)
    for path in discover(args.names):
        t0 = time.perf_counter()
        print(f"# running {path.name} …", file=sys.stderr, flush=True)
        try:
            result = load(path).run()
        except Exception as exc:  # one failing suite must not hide the others
            traceback.print_exc()
            rows.append({"suite": path.stem.removeprefix("bench_"), "case": "FAILED",
                         "note": f"{type(exc).__name__}: {exc}"})
            continue
        print(f"# {path.name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
        if isinstance(result, str):
            texts.append(result)
        elif result:
            rows.extend(dict(r) for r in result)
    if args.split:
        suites: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            suites.setdefault(str(r.get("suite", "")), []).append(r)
        for suite, srows in suites.items():
            print(f"\n## {suite}\n")
            print_table(srows, markdown=args.markdown)
    else:
        print_table(rows, markdown=args.markdown)
    for t in texts:
        print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
