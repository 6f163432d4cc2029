"""Vendor-file read time, peak memory and correctness: demine.io vs readgssi and ImpDAR.

Every (file, reader) pair runs in a fresh subprocess so that peak memory is the
child's own: after the imports the child resets its RSS high-water mark
(``/proc/self/clear_refs``), reads once, and reports ``VmHWM`` minus the RSS at
the reset (``ru_maxrss`` is not used: Linux keeps it across ``exec``, so it would
include the benchmark parent's peak).  Read time is the best of ``repeat``
reads in that process.  The arrays each reader returns are compared with the
file's raw samples (demine's array, itself checked against struct-decoded bytes
in tests/test_io_*.py): a peer that
returns the same values, or the same values minus GSSI's mid-scale offset, is
"exact"; otherwise the fraction of samples that differ is reported.

The peers are never project dependencies: they live in their own virtualenv,
``$DEMINE_PEER_PYTHON`` (default ``/work/venv-io/bin/python``; readgssi needs
``setuptools<81``).  A peer that cannot be imported there is skipped and the row
says so.

Besides the real sample files (``../shared/data``), two ~53 MB files are built
in a temporary directory by tiling real traces: a 16-bit DZT and an int16 DT1.

Run ``python benchmarks/bench_io.py`` (``--markdown`` for the docs table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DATA = HERE.parents[1].parent / "shared" / "data"
PEER_PYTHON = os.environ.get("DEMINE_PEER_PYTHON", "/work/venv-io/bin/python")

CHILD = r"""
import json, os, sys, time, warnings, io as _io, contextlib
warnings.simplefilter("ignore")
reader, path, out, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
res = {"reader": reader}
try:
    import numpy as np
    if reader.startswith("demine"):
        from demine import io as dio
        mm = reader.endswith("mmap")
        def load():
            r = dio.read(path, mmap=mm)
            if mm:  # a memory map costs nothing until touched: include one full pass
                float(np.sum(r.samples, dtype=np.float64))
            return r.samples
    elif reader == "readgssi":
        from readgssi.dzt import readdzt
        def load():
            with contextlib.redirect_stdout(_io.StringIO()):
                r = readdzt(path)
            return r[1][0].T
    elif reader == "impdar":
        from impdar.lib.load import load_gssi, load_pulse_ekko, load_ramac
        ext = os.path.splitext(path)[1].lower()
        fn = {".dzt": load_gssi.load_gssi, ".dt1": load_pulse_ekko.load_pe,
              ".rd3": load_ramac.load_ramac}[ext]
        def load():
            with contextlib.redirect_stdout(_io.StringIO()):
                return fn(path).data.T
    else:
        raise SystemExit("unknown reader " + reader)
except ImportError as exc:
    res.update(status="skipped", error=f"not importable: {exc}")
    print(json.dumps(res)); raise SystemExit(0)
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0
# ru_maxrss survives exec (it would include the parent's peak), so reset the
# high-water mark of this process and measure VmHWM against the current RSS.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
rss0 = _status("VmRSS")
try:
    t0 = time.perf_counter(); a = load(); times = [time.perf_counter() - t0]
    rss1 = _status("VmHWM")
    for _ in range(repeat - 1):
        del a
        t0 = time.perf_counter(); a = load(); times.append(time.perf_counter() - t0)
    res.update(status="ok", time_s=min(times), first_s=times[0], peak_mb=(rss1 - rss0) / 1024,
               shape=list(np.shape(a)), dtype=str(np.asarray(a[:1]).dtype))
    if out != "-":
        np.save(out, np.asarray(a))
except Exception as exc:
    res.update(status="error", error=f"{type(exc).__name__}: {exc}"[:200])
print(json.dumps(res))
"""


def _child(python: str, reader: str, path: Path, out: str, repeat: int) -> dict:
    env = dict(os.environ)
    proc = subprocess.run(
        [python, "-c", CHILD, reader, str(path), out, str(repeat)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"reader": reader, "status": "error",
                "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(lines[-1])


def make_big_files(tmp: Path, target_mb: float = 53.0) -> list[Path]:
    """~53 MB DZT (16-bit) and DT1 built by tiling the real traces."""
    out = []
    src = (DATA / "gpr" / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT").read_bytes()
    head, body = src[:1024], src[1024:]
    reps = max(1, int(target_mb * 2**20 // len(body)))
    p = tmp / "BIG16.DZT"
    with open(p, "wb") as f:
        f.write(head)
        for _ in range(reps):
            f.write(body)
    out.append(p)
    sns = DATA / "gpr" / "gprpy-exampledata" / "SnS" / "ComOffs"
    dt1 = (sns / "XLINE00.DT1").read_bytes()
    reps = max(1, int(target_mb * 2**20 // len(dt1)))
    n = 531 * reps
    hd = (sns / "XLINE00.HD").read_text(encoding="latin-1").replace("= 531", f"= {n}")
    (tmp / "BIGPE.HD").write_text(hd, encoding="latin-1")
    p = tmp / "BIGPE.DT1"
    with open(p, "wb") as f:
        for _ in range(reps):
            f.write(dt1)
    out.append(p)
    return out


def _compare(p: np.ndarray, r: np.ndarray, zero: float) -> float:
    """Fraction of samples equal to the file's value (or to it minus the offset)."""
    p = p.astype(np.float64)
    r = r.astype(np.float64)
    same = float(np.mean(p == r))
    signed = float(np.mean(p == r - zero)) if zero else 0.0
    # a signed misreading of unsigned words still matches the low 16 bits
    return max(same, signed)


def _agreement(peer: np.ndarray, raw: np.ndarray, zero: float) -> str:
    if peer.ndim != 2 or peer.shape[1:] != raw.shape[1:]:
        return f"shape {tuple(peer.shape)} vs {tuple(raw.shape)}"
    note = ""
    if peer.shape[0] != raw.shape[0]:
        d = raw.shape[0] - peer.shape[0]
        if d < 0:
            return f"{peer.shape[0]} of {raw.shape[0]} traces"
        # which traces were kept?  try "first d dropped" and "last d dropped"
        head = _compare(peer, raw[d:], zero)
        tail = _compare(peer, raw[: raw.shape[0] - d], zero)
        if head >= tail:
            raw, note = raw[d:], f"first {d} traces dropped; "
        else:
            raw, note = raw[: raw.shape[0] - d], f"last {d} traces dropped; "
    p = peer.astype(np.float64)
    r = raw.astype(np.float64)
    same = float(np.mean(p == r))
    signed = float(np.mean(p == r - zero)) if zero else 0.0
    best = max(same, signed)
    if best == 1.0:
        return note + ("exact" if same == 1.0 else "exact (offset removed)")
    if zero and peer.dtype.itemsize * 8 == 16 and peer.dtype.kind == "i":
        wrapped = float(np.mean(peer.view(np.uint16) == raw.astype(np.uint16)))
        if wrapped == 1.0:
            frac = float(np.mean(raw >= 32768))
            return note + (f"unsigned read as int16: {100 * frac:.1f} % of samples wrapped "
                           "to negative")
    return note + f"{100 * (1 - best):.1f} % samples differ"


def run(repeat: int = 3, big: bool = True, peer_python: str = PEER_PYTHON) -> list[dict]:
    """Run the benchmark; returns one dict per (file, reader)."""
    sys_python = sys.executable
    if not Path(peer_python).exists():
        peer_python = sys_python
    files = [
        DATA / "gpr" / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT",
        DATA / "gpr" / "impdar-test-data" / "test_gssi.DZT",
        DATA / "gpr" / "impdar-test-data" / "ten_col.rd3",
        DATA / "gpr" / "gprpy-exampledata" / "SnS" / "ComOffs" / "XLINE00.DT1",
        DATA / "landmine" / "iwagpr2017-rd3-subset" / "buried_objects_xdir_bscan_19.rd3",
    ]
    tmp = Path(tempfile.mkdtemp(prefix="bench-io-"))
    rows: list[dict] = []
    try:
        if big:
            files += make_big_files(tmp)
        from demine import io as dio

        for path in files:
            raw_rd = dio.read(path)
            raw, zero = np.asarray(raw_rd.samples), raw_rd.zero_offset
            ext = path.suffix.lower()
            readers = ["demine", "demine-mmap", "impdar"]
            if ext == ".dzt":
                readers.insert(2, "readgssi")
            for reader in readers:
                npy = str(tmp / f"{reader}.npy")
                python = sys_python if reader.startswith("demine") else peer_python
                res = _child(python, reader, path, npy, repeat)
                res.update(file=path.name, size_mb=path.stat().st_size / 2**20)
                if res.get("status") == "ok":
                    if os.path.exists(npy):
                        res["agreement"] = _agreement(np.load(npy), raw, zero)
                        os.unlink(npy)
                rows.append(_row(res))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _row(res: dict) -> dict:
    """One table row with a stable column order (``suite`` first, for run.py)."""
    ok = res.get("status") == "ok"
    return {
        "suite": "io",
        "file": res["file"],
        "size_mb": round(res["size_mb"], 1),
        "reader": res["reader"],
        "read_s": round(res["time_s"], 4) if ok else res.get("status"),
        "peak_rss_mb": round(res["peak_mb"], 1) if ok else "",
        "dtype": res.get("dtype", ""),
        "values_vs_file": res.get("agreement", "") if ok else res.get("error", ""),
    }


def markdown(rows: list[dict]) -> str:
    out = [
        "| file | MB | reader | read time (s) | peak RSS increase (MB) | dtype | values vs file |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['file']} | {r['size_mb']} | {r['reader']} | {r['read_s']} | "
            f"{r['peak_rss_mb']} | {r['dtype']} | {r['values_vs_file']} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the ~53 MB tiled files")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = run(repeat=args.repeat, big=not args.no_big)
    print(markdown(rows) if args.markdown else json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
