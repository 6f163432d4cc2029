"""Fault injection on a stream of encoded frames, with the exact counts expected.

Shared by the framing tests (in memory) and the acquisition tests (through a
pseudo-terminal).  Every fault is applied to one whole frame so the expected
outcome is exact:

ok       frame sent intact                      -> delivered once
flip     one bit flipped in the payload or CRC  -> crc_errors
trunc    frame cut short (past its header)      -> truncated
drop     bytes dropped from inside the frame    -> truncated
dup      frame sent twice                       -> delivered once, duplicates
garbage  random bytes (no sync byte) before it  -> resyncs, delivered
lost     frame never sent                       -> sequence gap
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAULTS = ("ok", "flip", "trunc", "drop", "dup", "garbage", "lost")
_DAMAGING = ("flip", "trunc", "drop", "lost")


@dataclass
class Expected:
    delivered: list[int] = field(default_factory=list)
    crc_errors: int = 0
    truncated: int = 0
    duplicates: int = 0
    resyncs: int = 0
    sequence_gaps: int = 0
    frames_missing: int = 0
    bytes_skipped: int = 0

    def check(self, stats, sequences) -> None:
        got = {
            "crc_errors": stats.crc_errors,
            "truncated": stats.truncated,
            "duplicates": stats.duplicates,
            "resyncs": stats.resyncs,
            "sequence_gaps": stats.sequence_gaps,
            "frames_missing": stats.frames_missing,
            "bytes_skipped": stats.bytes_skipped,
        }
        want = {k: getattr(self, k) for k in got}
        assert got == want
        assert list(sequences) == self.delivered


def plan_faults(rng: np.random.Generator, n: int, p_fault: float = 0.3) -> list[str]:
    """A fault per frame: first and last frames intact, a frame after trunc/drop intact."""
    plan = []
    for i in range(n):
        if i == 0 or i == n - 1 or (plan and plan[-1] in ("trunc", "drop", "lost")):
            plan.append("ok")
        elif rng.random() < p_fault:
            plan.append(str(rng.choice(FAULTS[1:])))
        else:
            plan.append("ok")
    return plan


def inject(frames: list[bytes], plan: list[str], rng: np.random.Generator, sync0: int,
           header_len: int, payload_start: int) -> tuple[bytes, Expected]:
    """Apply ``plan`` to ``frames`` (sequence i = frames[i]); return wire bytes and counts."""
    out = bytearray()
    exp = Expected()
    prev = None
    valid_bytes = 0
    for i, (fr, fault) in enumerate(zip(frames, plan, strict=True)):
        L = len(fr)
        if fault == "ok":
            out += fr
            exp.delivered.append(i)
            valid_bytes += L
        elif fault == "flip":
            b = bytearray(fr)
            pos = int(rng.integers(payload_start, L))
            b[pos] ^= 1 << int(rng.integers(0, 8))
            out += b
            exp.crc_errors += 1
        elif fault == "trunc":
            out += fr[: int(rng.integers(header_len + 1, L))]
            exp.truncated += 1
        elif fault == "drop":
            k = int(rng.integers(1, 4))
            pos = int(rng.integers(header_len, L - k))
            out += fr[:pos] + fr[pos + k :]
            exp.truncated += 1
        elif fault == "dup":
            out += fr + fr
            exp.delivered.append(i)
            exp.duplicates += 1
            valid_bytes += 2 * L
        elif fault == "garbage":
            g = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)
            g[g == sync0] = 0
            out += g.tobytes() + fr
            exp.delivered.append(i)
            valid_bytes += L
            if prev != "flip":  # garbage right after a rejected frame is the same run
                exp.resyncs += 1
        elif fault == "lost":
            continue  # nothing on the wire: prev stays the last frame sent
        prev = fault
    missing = [f in _DAMAGING for f in plan]
    exp.frames_missing = sum(missing)
    exp.sequence_gaps = sum(
        1 for i in range(len(plan)) if missing[i] and (i == 0 or not missing[i - 1])
    )
    exp.bytes_skipped = len(out) - valid_bytes
    return bytes(out), exp


def uart_resample(data: bytes, tx_baud: float, rx_baud: float) -> bytes:
    """What a UART receiving at ``rx_baud`` makes of ``data`` sent 8N1 at ``tx_baud``.

    The line is modelled bit by bit: the receiver waits for a falling edge, samples
    the middle of each of its own bit periods (start, 8 data LSB first, stop) and
    delivers the byte (framing errors included, as a raw-mode tty does).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    bits = np.unpackbits(raw[:, None], axis=1, bitorder="little")
    line = np.concatenate(
        [np.zeros((raw.size, 1), np.uint8), bits, np.ones((raw.size, 1), np.uint8)], axis=1
    ).ravel()
    line = np.concatenate([[1], line, [1] * 20]).astype(np.uint8)
    edges = np.flatnonzero((line[:-1] == 1) & (line[1:] == 0)) + 1  # index of first 0 bit
    t_edges = edges / tx_baud
    n_line = line.size
    out = bytearray()
    t = 0.0
    rx = 1.0 / rx_baud
    k = 0
    while True:
        k = int(np.searchsorted(t_edges, t, side="left"))
        if k >= t_edges.size:
            break
        t0 = t_edges[k]
        idx = ((t0 + (np.arange(10) + 0.5) * rx) * tx_baud).astype(np.int64)
        if idx[-1] >= n_line:
            break
        s = line[idx]
        if s[0] != 0:  # glitch, not a start bit
            t = t0 + 1e-12 + 0.5 * rx
            continue
        out.append(int(np.packbits(s[1:9], bitorder="little")[0]))
        t = t0 + 9.5 * rx
    return bytes(out)
