"""Mutation fuzzing of demine's vendor radar readers.

Usage::

    python tests/fuzz/fuzz_readers.py [--cases 10000] [--seed 0] [--reader gssi ...]

For every reader, small seed files are built from the real sample data in
``../shared/data`` (or synthesised), then each case applies random mutations
(bit flips, interesting byte values, 16/32-bit header field overwrites, chunk
duplication/deletion, truncation, appended garbage) to one of the profile's files
(header, data or sidecar) and reads it.  The only acceptable outcomes are a
:class:`~demine.io.RadarData` or :class:`demine.errors.VendorFormatError`; any
other exception, a case slower than the hang limit, or a result whose sample
array is larger than the data file (a lying header turned into an allocation)
is a failure.  The address space is capped so a huge allocation fails loudly.

Exit status 0 when every case passed.  Not collected by pytest (no ``test_``
prefix); ``tests/test_io_fuzz.py`` runs a fast subset with the same engine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DATA = HERE.parents[2].parent / "shared" / "data"
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING32 = [0, 1, -1, 2**31 - 1, -(2**31), 2**16, 2**24, 1024, 65535, 0x7FFF]


# ----------------------------------------------------------------------------- seeds
def _nm(body: str) -> str:
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"${body}*{c:02X}"


def make_seeds(root: Path) -> dict[str, dict[str, bytes]]:
    """Small seed profiles per reader: {reader: {filename: bytes}}; entry file first."""
    seeds: dict[str, dict[str, bytes]] = {}
    g16 = (DATA / "gpr" / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT").read_bytes()
    g32 = (DATA / "gpr" / "impdar-test-data" / "test_gssi.DZT").read_bytes()
    dzg = (DATA / "gpr" / "impdar-test-data" / "test_gssi.DZG").read_bytes()
    dzx = (DATA / "gpr" / "impdar-test-data" / "test_gssi.DZX").read_bytes()
    extra_dzg = "\r\n".join(
        [
            "$GSSIS,2,-1",
            _nm("GNRMC,235959.50,A,4807.038,N,01131.000,E,0.1,0,311224,,"),
            _nm("GNGGA,235959.50,4807.038,N,01131.000,E,4,12,0.7,545.4,M,46.9,M,,"),
            "",
        ]
    ).encode()
    dzx_marks = dzx.replace(
        b"<WayPt>", b"<WayPt><mark>User</mark>", 1
    )
    seeds["gssi"] = {
        "s.DZT": g16[: 1024 + 12 * 1024],  # 16-bit, 12 scans of 512 samples
        "s.DZG": extra_dzg + dzg,
        "s.DZX": dzx_marks,
    }
    # 32-bit with its 128 kB header: keep the real header, 2 scans
    seeds["gssi32"] = {"t.DZT": g32[: 131072 + 2 * 8192], "t.DZG": dzg}
    ten = DATA / "gpr" / "impdar-test-data"
    seeds["mala"] = {
        "ten_col.rd3": (ten / "ten_col.rd3").read_bytes(),
        "ten_col.rad": (ten / "ten_col.rad").read_bytes(),
        "ten_col.cor": (ten / "ten_col.cor").read_bytes(),
    }
    sns = DATA / "gpr" / "gprpy-exampledata" / "SnS" / "WARR"
    hd = (sns / "XLINE00.HD").read_bytes().replace(b"= 164", b"= 3")
    dt1 = (sns / "XLINE00.DT1").read_bytes()[: 3 * (128 + 1900 * 2)]
    gps = "\r\n".join(
        [
            "Trace #1 at position 0.000000",
            _nm("GPGGA,120000.00,4729.69357,N,12218.83298,W,2,07,1.4,62.1,M,-18.5,M,,"),
            "Trace #3 at position 0.200000",
            _nm("GPGGA,120001.00,,,,,0,00,,,M,,M,,"),
            "",
        ]
    ).encode()
    seeds["pulseekko"] = {"L.DT1": dt1, "L.HD": hd, "L.GPS": gps}
    from demine import io as dio

    tmp = root / "_segy_seed.sgy"
    d = (np.arange(6 * 48, dtype=np.float32).reshape(6, 48) - 100) / 3
    dio.write_segy(tmp, d, 1e-10, x=np.arange(6) * 0.01, text="fuzz seed")
    seeds["segy"] = {"f.sgy": tmp.read_bytes()}
    tmp.unlink()
    return seeds


# ----------------------------------------------------------------------------- mutation
def mutate(data: bytes, rng: random.Random, header_bias: int = 1024) -> bytes:
    """Apply 1-4 random mutations, biased towards the first *header_bias* bytes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        n = len(b)

        def pos(width: int = 1, n: int = n) -> int:
            hi = max(n - width, 0)
            if rng.random() < 0.7:
                hi = min(hi, header_bias)
            return rng.randint(0, hi) if hi > 0 else 0

        if n == 0:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op < 0.25:
            i = pos()
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.40:
            i = pos()
            b[i] = rng.choice(INTERESTING)
        elif op < 0.55 and n >= 4:
            i = pos(4)
            v = rng.choice(INTERESTING32)
            fmt = rng.choice(["<i", ">i", "<h", ">h"])
            w = struct.calcsize(fmt)
            if "h" in fmt:
                v = max(min(v, 32767), -32768)
            if i + w <= n:
                b[i : i + w] = struct.pack(fmt, v)
        elif op < 0.62 and n >= 4:
            i = pos(4)
            if i + 4 <= n:
                b[i : i + 4] = struct.pack("<f", rng.choice([0.0, -1.0, 1e30, float("nan"),
                                                             float("inf"), 1e-40]))
        elif op < 0.72:
            b = b[: rng.randint(0, n)]  # truncation
        elif op < 0.78:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        elif op < 0.84 and n > 2:
            i, j = sorted(rng.sample(range(n), 2))
            del b[i:j]
        elif op < 0.90 and n > 2:
            i, j = sorted(rng.sample(range(n), 2))
            k = pos()
            b[k:k] = b[i : min(j, i + 512)]
        elif op < 0.95 and n > 0:  # ASCII-level edit for text headers
            i = pos()
            b[i : i + 1] = rng.choice([b"9", b"-", b".", b"\n", b":", b"=", b"", b"99999999999",
                                       b"\xb2", b"nan", b"1e999", b" ", b"\x00"])
        else:
            i = pos()
            b[i] = rng.randrange(256)
    return bytes(b)


# ----------------------------------------------------------------------------- one case
class Hang(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise Hang()


def run_case(
    workdir: Path,
    files: dict[str, bytes],
    rng: random.Random,
    mutate_fn: Callable[[bytes, random.Random], bytes] = mutate,
) -> tuple[str, str]:
    """Write a mutated profile into *workdir* and read it.

    Returns (outcome, detail) with outcome in {"ok", "documented", "FAIL"}.
    """
    from demine import io as dio
    from demine.errors import VendorFormatError

    for p in workdir.iterdir():
        p.unlink()
    names = list(files)
    target = rng.choice(names) if rng.random() < 0.8 else names[0]
    for name, data in files.items():
        if name == target:
            data = mutate_fn(data, rng)
        elif len(names) > 1 and rng.random() < 0.05:
            continue  # sidecar or header missing entirely
        (workdir / name).write_bytes(data)
    entry = workdir / names[0]
    if not entry.exists():
        entry = workdir / names[-1]
    if not entry.exists():
        return "ok", "nothing to read"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rd = dio.read(entry, mmap=rng.random() < 0.2)
        data_size = max(p.stat().st_size for p in workdir.iterdir())
        if rd.samples.nbytes > 2 * data_size + 4096:
            return "FAIL", f"samples of {rd.samples.nbytes} bytes from files <= {data_size}"
        if rd.samples.ndim != 2:
            return "FAIL", f"samples ndim {rd.samples.ndim}"
        if not (rd.sample_interval_s > 0):
            return "FAIL", f"sample interval {rd.sample_interval_s}"
        with np.errstate(all="ignore"):
            np.asarray(rd.samples[:1]).sum()  # touch the data (memmaps too)
        json.dumps(_jsonable_check(rd.header))
        return "ok", ""
    except VendorFormatError as exc:
        msg = str(exc)
        if str(workdir) not in msg:
            return "FAIL", f"VendorFormatError without the file name: {msg}"
        return "documented", msg
    except Hang:
        return "FAIL", "hang (over the time limit)"
    except Exception as exc:  # noqa: BLE001 - any other exception is the bug we look for
        return "FAIL", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"


def _jsonable_check(h):
    from demine.io._common import jsonable

    return jsonable(h)


def fuzz(reader: str, files: dict[str, bytes], cases: int, seed: int,
         hang_s: float = 5.0) -> dict:
    rng = random.Random(f"{seed}-{reader}")
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{reader}-"))
    counts = {"ok": 0, "documented": 0, "FAIL": 0}
    failures: list[str] = []
    slowest = 0.0
    old = signal.signal(signal.SIGALRM, _alarm)
    t_all = time.perf_counter()
    try:
        for _ in range(cases):
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, hang_s)
            try:
                outcome, detail = run_case(work, files, rng)
            except Hang:
                outcome, detail = "FAIL", "hang"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - t0)
            counts[outcome] += 1
            if outcome == "FAIL" and len(failures) < 20:
                failures.append(detail)
    finally:
        signal.signal(signal.SIGALRM, old)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "reader": reader,
        "cases": cases,
        **counts,
        "slowest_case_s": round(slowest, 4),
        "total_s": round(time.perf_counter() - t_all, 2),
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per reader")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reader", action="append", help="only these seed sets")
    ap.add_argument("--mem-gb", type=float, default=4.0, help="address-space cap")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        import demine  # noqa: F401
    except ImportError:  # run from a source checkout with an in-place build
        sys.path.insert(0, str(HERE.parents[2] / "src"))
    cap = int(args.mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    with tempfile.TemporaryDirectory() as td:
        seeds = make_seeds(Path(td))
    results = []
    for reader, files in seeds.items():
        if args.reader and reader not in args.reader:
            continue
        res = fuzz(reader, files, args.cases, args.seed)
        results.append(res)
        print(
            f"{reader:10s} {res['cases']:6d} cases: {res['ok']:6d} read, "
            f"{res['documented']:6d} VendorFormatError, {res['FAIL']:3d} FAIL; "
            f"slowest {res['slowest_case_s']:.3f} s, total {res['total_s']:.1f} s",
            flush=True,
        )
        for f in res["failures"][:5]:
            print("   FAIL:", f.strip().replace("\n", "\n         "))
    if args.json:
        print(json.dumps(results))
    return 1 if any(r["FAIL"] for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
