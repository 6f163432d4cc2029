"""Reading a metal detector's readings table: demine vs NumPy and pandas.

``demine.io.read_emi_table`` finds the columns' roles, units and gate times,
checks every row and converts the times; the floors are the bare parsers it
could be compared with on the same file:

- ``np.loadtxt`` of the same numeric columns (the C parser demine itself uses
  for well-formed tables): what the checks and conversions cost on top;
- ``pandas.read_csv`` (when installed; not a demine dependency): the fastest
  CSV reader a Python user usually has.

The table: ``rows`` readings of 16 gates (names with their times, ``g_12us``
...), time in epoch seconds, x, y, z, written with full precision (about
250 bytes a row).  Each reader's result is checked against the values
written before it is timed.  Best of ``repeat`` reads.

Run ``python benchmarks/bench_emi_table.py [--rows N]`` or through
``benchmarks/run.py emi_table``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_table(path: Path, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the benchmark's table; return the values written."""
    rng = np.random.default_rng(seed)
    gates = np.geomspace(12e-6, 1e-3, 16)
    t = 1_796_115_600.0 + np.arange(rows) * 1e-3
    xyz = rng.uniform(0, 5, (rows, 3))
    v = rng.normal(0, 100, (rows, gates.size)).astype(np.float32)
    names = ["time", "x", "y", "z"] + [f"g_{g * 1e6:.6g}us" for g in gates]
    data = np.column_stack([t, xyz, v.astype(np.float64)])
    fmt = ["%.3f", "%.17g", "%.17g", "%.17g"] + ["%.9g"] * gates.size
    np.savetxt(path, data, delimiter=",", header=",".join(names), comments="", fmt=fmt)
    return {"samples": v, "x": xyz[:, 0]}


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(rows: int = 200_000, repeat: int = 3) -> list[dict[str, Any]]:
    from demine.io import read_emi_table

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "readings.csv"
        want = make_table(path, rows)
        mb = path.stat().st_size / 1e6
        cases: list[tuple[str, Any, Any]] = []

        def demine() -> Any:
            return read_emi_table(path)

        def check_demine(tab: Any) -> bool:
            return bool(np.array_equal(tab.samples, want["samples"])
                        and np.array_equal(tab.x, want["x"]))

        cases.append(("demine read_emi_table (roles, units, checks)", demine, check_demine))

        def loadtxt() -> Any:
            return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)

        def check_loadtxt(a: Any) -> bool:
            return bool(np.array_equal(a[:, 4:].astype(np.float32), want["samples"]))

        cases.append(("np.loadtxt, the same columns (no roles or checks)", loadtxt,
                      check_loadtxt))
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            def pandas() -> Any:
                return pd.read_csv(path)

            def check_pandas(df: Any) -> bool:
                return bool(np.array_equal(df.iloc[:, 4:].to_numpy(np.float32),
                                           want["samples"]))

            cases.append(("pandas.read_csv (no roles or checks)", pandas, check_pandas))
        out: list[dict[str, Any]] = []
        ref = None
        for name, fn, check in cases:
            sec, res = _best(fn, repeat)
            ref = sec if ref is None else ref
            out.append({
                "suite": "emi_table",
                "case": name,
                "rows": rows,
                "MB": round(mb, 1),
                "s": round(sec, 3),
                "Mrows/s": round(rows / sec / 1e6, 2),
                "vs demine": "1.00x" if sec == ref else (
                    f"{ref / sec:.2f}x faster" if sec < ref else f"{sec / ref:.2f}x slower"),
                "values": "exact" if check(res) else "DIFFER",
            })
        if pd is None:
            out.append({"suite": "emi_table", "case": "pandas.read_csv",
                        "values": "skipped: pandas not installed"})
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(args.rows, args.repeat))


if __name__ == "__main__":
    main()
