"""Framing throughput: demine's framing engine against a straightforward
pyserial + ``struct`` reader, side by side in the same run.

In memory (one core):

* demine :class:`~demine.framing.Framer` on ``emi-pi`` frames (16 gates, 84 B) and
  ``gpr`` frames (512 int16 samples, 1054 B), fed in 64 KiB and 4 KiB reads;
* the straightforward reader a lab script would write with pyserial: ``read(2)``
  for the sync word, ``read`` the header, ``struct.unpack``, ``read`` the payload,
  check the CRC with ``binascii.crc_hqx`` (C code, the fastest CRC-16/CCITT the
  standard library has), run here on an in-memory file with the same ``read`` API;
* the same straightforward parser on one big buffer (``bytes.find`` +
  ``struct.unpack_from`` + ``crc_hqx``), i.e. without any per-read overhead.

Over a pseudo-terminal (the real pyserial path), a writer thread paces a 3 Mbaud
stream (300 kB/s of ``emi-pi`` frames, 3571 readings/s) and the reference radar
load (400 traces/s of 512 int16, 422 kB/s): the CPU time of the reader thread
(``time.thread_time``) over wall time, for :class:`~demine.acquisition.DeviceReader`
and for the straightforward pyserial reader (``ser.read(n)`` per field).

Targets (issue 3): >= 50 MB/s per core in memory; a 3 Mbaud stream kept up with
under 5 % of a core.

Run alone with ``python benchmarks/bench_framing.py``, or through
``python benchmarks/run.py framing``.  ``DEMINE_BENCH_FRAMING_SECONDS`` sets the
length of each pty run (default 3 s).
"""

from __future__ import annotations

import binascii
import io
import math
import os
import struct
import threading
import time
import tty
from typing import Any

import numpy as np

TARGET_MBPS = 50.0
TARGET_CPU = 0.05
EMI_HEADER = struct.Struct("<2sBBIQH")  # sync, version, n_gates, seq, clock, status


def _wire(kind: str, n: int) -> bytes:
    from demine.drivers import get_driver

    rng = np.random.default_rng(0)
    if kind == "emi":
        d = get_driver("emi-pi")
        return d.encode_arrays(np.arange(n), np.arange(n) * 1000,
                               rng.normal(size=(n, 16)).astype(np.float32))
    d = get_driver("gpr")
    return d.encode_arrays(np.arange(n), np.arange(n) * 2500,
                           rng.integers(-3000, 3000, (n, 512), dtype=np.int16))


def _best(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------
# the straightforward readers
# ---------------------------------------------------------------------------------------
def struct_reader_stream(ser, n_expected: int, deadline: float = math.inf) -> int:
    """What a lab script does with pyserial: read field by field, struct, crc_hqx.

    Works for emi-pi frames.  Returns the number of good frames.
    """
    good = 0
    while good < n_expected and time.monotonic() < deadline:
        b = ser.read(1)
        if not b:
            if isinstance(ser, io.BytesIO):
                break
            continue
        if b != b"\xa5":
            continue
        if ser.read(1) != b"\x5a":
            continue
        head = ser.read(16)
        if len(head) < 16:
            continue
        version, n_gates, seq, clock, status = struct.unpack("<BBIQH", head)
        if version != 1 or not 4 <= n_gates <= 32:
            continue
        body = ser.read(4 * n_gates + 2)
        if len(body) < 4 * n_gates + 2:
            continue
        (crc,) = struct.unpack_from("<H", body, 4 * n_gates)
        if binascii.crc_hqx(head + body[:-2], 0xFFFF) != crc:
            continue
        _samples = struct.unpack_from(f"<{n_gates}f", body)
        good += 1
    return good


def struct_reader_buffer(buf: bytes) -> int:
    """The same parser on one buffer: bytes.find, struct.unpack_from, crc_hqx."""
    pos = good = 0
    n = len(buf)
    while True:
        p = buf.find(b"\xa5\x5a", pos)
        if p < 0 or p + 18 > n:
            break
        _, version, n_gates, seq, clock, status = EMI_HEADER.unpack_from(buf, p)
        L = 20 + 4 * n_gates
        if version != 1 or not 4 <= n_gates <= 32 or p + L > n:
            pos = p + 1
            continue
        (crc,) = struct.unpack_from("<H", buf, p + L - 2)
        if binascii.crc_hqx(buf[p + 2 : p + L - 2], 0xFFFF) != crc:
            pos = p + 1
            continue
        _samples = struct.unpack_from(f"<{n_gates}f", buf, p + 18)
        good += 1
        pos = p + L
    return good


def demine_memory(kind: str, wire: bytes, chunk: int) -> int:
    from demine.framing import Framer

    fr = Framer("emi-pi" if kind == "emi" else "gpr")
    mv = memoryview(wire)
    n = 0
    for i in range(0, len(wire), chunk):
        for b in fr.feed(mv[i : i + chunk]):
            n += len(b)
    return n


# ---------------------------------------------------------------------------------------
# pty runs
# ---------------------------------------------------------------------------------------
def _paced_writer(fd: int, wire: bytes, rate: float, stop: threading.Event) -> None:
    """Write ``wire`` at ``rate`` bytes/s in 2 ms steps."""
    t0 = time.monotonic()
    sent = 0
    n = len(wire)
    while sent < n and not stop.is_set():
        due = min(n, int((time.monotonic() - t0) * rate))
        if due > sent:
            sent += os.write(fd, wire[sent:due])
        else:
            time.sleep(0.002)


def pty_run(kind: str, rate: float, seconds: float, reader: str) -> dict[str, Any]:
    """Stream ``seconds`` of frames at ``rate`` B/s through a pty; measure the reader."""
    import serial

    from demine.acquisition import DeviceReader

    frame_len = 84 if kind == "emi" else 1054
    n_frames = int(rate * seconds / frame_len)
    wire = _wire(kind, n_frames)
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()
    result: dict[str, Any] = {}
    try:
        if reader == "demine":
            got = [0]

            def count(b):
                got[0] += len(b)

            r = DeviceReader(path, "emi-pi" if kind == "emi" else "gpr",
                             on_frames=count).start()
            while not r.stats.connected:
                time.sleep(0.001)
            t0 = time.monotonic()
            w = threading.Thread(target=_paced_writer, args=(master, wire, rate, stop))
            w.start()
            w.join()
            end = time.monotonic() + 2.0
            while got[0] < n_frames and time.monotonic() < end:
                time.sleep(0.002)
            lag = time.monotonic() - t0 - seconds
            r.stop()
            cpu = r.stats.cpu_seconds
            wall = time.monotonic() - t0
            result = {"frames": got[0], "cpu": cpu, "wall": wall, "lag": lag}
        else:
            ser = serial.serial_for_url(path, baudrate=3000000, timeout=0.1)
            out: dict[str, float] = {}

            def read():
                c0 = time.thread_time()
                out["frames"] = struct_reader_stream(ser, n_frames,
                                                     time.monotonic() + seconds + 2.0)
                out["cpu"] = time.thread_time() - c0

            t0 = time.monotonic()
            rt = threading.Thread(target=read)
            rt.start()
            w = threading.Thread(target=_paced_writer, args=(master, wire, rate, stop))
            w.start()
            w.join()
            rt.join()
            wall = time.monotonic() - t0
            ser.close()
            result = {"frames": int(out["frames"]), "cpu": out["cpu"], "wall": wall,
                      "lag": wall - seconds}
    finally:
        stop.set()
        os.close(master)
        os.close(slave)
    result["sent"] = n_frames
    return result


# ---------------------------------------------------------------------------------------
def run(seconds: float | None = None, repeat: int = 3) -> list[dict[str, Any]]:
    """Run the framing benchmark; one row per case for ``benchmarks/run.py``."""
    seconds = float(seconds or os.environ.get("DEMINE_BENCH_FRAMING_SECONDS", 3.0))
    rows: list[dict[str, Any]] = []

    def mem_row(case: str, nbytes: int, secs: float, ref: float | None, note: str = ""):
        rate = nbytes / secs / 1e6
        rows.append({
            "suite": "framing",
            "case": case,
            "MB/s": f"{rate:.1f}",
            "vs demine": "1.00x" if ref is None else (
                f"{ref / rate:.1f}x slower" if ref >= rate else f"{rate / ref:.1f}x faster"),
            "cpu % of core": "",
            "kept up": "",
            "note": note,
        })
        return rate

    emi = _wire("emi", 200_000)  # 16.8 MB
    gpr = _wire("gpr", 16_000)  # 16.9 MB
    ref = mem_row("demine Framer, emi-pi, 64 KiB reads", len(emi),
                  _best(lambda: demine_memory("emi", emi, 65536), repeat), None,
                  f"target >= {TARGET_MBPS:.0f} MB/s")
    rows[-1]["note"] += "; MET" if float(rows[-1]["MB/s"]) >= TARGET_MBPS else "; MISSED"
    mem_row("demine Framer, emi-pi, 4 KiB reads", len(emi),
            _best(lambda: demine_memory("emi", emi, 4096), repeat), ref)
    mem_row("demine Framer, gpr 512 x int16, 64 KiB reads", len(gpr),
            _best(lambda: demine_memory("gpr", gpr, 65536), repeat), ref)
    part = emi[: 84 * 20_000]
    mem_row("pyserial-style read()+struct+crc_hqx, emi-pi", len(part),
            _best(lambda: struct_reader_stream(io.BytesIO(part), 20_000), repeat), ref,
            "per-field read() on an in-memory file")
    mem_row("bytes.find+struct.unpack_from+crc_hqx, emi-pi", len(part),
            _best(lambda: struct_reader_buffer(part), repeat), ref, "one buffer, no reads")

    def pty_row(case: str, res: dict[str, Any], note: str = "") -> None:
        frac = res["cpu"] / res["wall"]
        kept = res["frames"] == res["sent"] and res["lag"] < 0.5
        rows.append({
            "suite": "framing",
            "case": case,
            "MB/s": "",
            "vs demine": "",
            "cpu % of core": f"{100 * frac:.2f}",
            "kept up": f"{'yes' if kept else 'NO'} ({res['frames']}/{res['sent']} frames)",
            "note": note,
        })

    res = pty_run("emi", 300_000, seconds, "demine")
    ok = res["cpu"] / res["wall"] < TARGET_CPU and res["frames"] == res["sent"]
    pty_row("demine DeviceReader, pty, 3 Mbaud emi-pi (3571 frames/s)", res,
            f"target < 5 % of a core; {'MET' if ok else 'MISSED'}")
    res = pty_run("emi", 300_000, seconds, "struct")
    pty_row("pyserial read()+struct+crc_hqx, pty, 3 Mbaud emi-pi", res)
    res = pty_run("gpr", 421_600, seconds, "demine")
    pty_row("demine DeviceReader, pty, radar 400 x 512 int16 (422 kB/s)", res)
    return rows


if __name__ == "__main__":
    import argparse
    import sys

    # (no options: --help had started the benchmark)
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run import print_table

    print_table(run())
