"""``ascii-md``: line-based detector output with configurable columns.

Hobby and lab detectors (for instance the common Arduino induction-balance
designs) print one reading per line, e.g. ``512,-37`` or ``amp: 512 phase: -37``.
The driver is told the column names; special names give the frame its sequence
and device clock:

* ``seq``    : sequence number (gaps and duplicates are then counted);
* ``millis`` : device clock in milliseconds (Arduino ``millis()``, wraps at 2**32);
* ``micros`` : device clock in microseconds (Arduino ``micros()``, wraps at 2**32).

Every other column is a sample column (float32).  Tokens may carry a label
(``amp:512``, ``amp=512``, ``amp: 512``): the label is ignored.  Lines starting
with ``#`` and empty lines are skipped; a line with the wrong number of values or
a value that is not a number is counted as a bad line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .base import Driver, FrameBatch, LineDecodeResult

__all__ = ["AsciiMdDriver", "AsciiMdFrame"]

_SPECIAL = {"seq", "millis", "micros"}
_WRAP = 1 << 32
_LABEL = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\s*[:=]\s*")


class AsciiMdFrame(NamedTuple):
    """One reading line."""

    values: Sequence[float]
    sequence: int | None = None
    device_time_us: int | None = None


class AsciiMdDriver(Driver):
    """Line-based detector output; one instance per stream (it unwraps the clock)."""

    name = "ascii-md"
    kind = "emi"
    framing = "line"
    units = "1"
    max_line = 512
    serial_settings = {
        "baudrate": 115200,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "xonxoff": False,
        "rtscts": False,
    }
    frame_format = "text lines 'v1<sep>v2...', configured columns (seq/millis/micros special)"

    def __init__(
        self,
        *,
        columns: Sequence[str] = ("amplitude", "phase"),
        sep: str | None = ",",
        units: str = "1",
    ) -> None:
        columns = tuple(str(c) for c in columns)
        if not columns:
            raise ValueError("ascii-md needs at least one column")
        if len(set(columns)) != len(columns):
            raise ValueError(f"ascii-md columns repeat a name: {columns}")
        if "millis" in columns and "micros" in columns:
            raise ValueError("ascii-md: give either 'millis' or 'micros', not both")
        self.columns = columns
        self.value_columns = tuple(c for c in columns if c not in _SPECIAL)
        if not self.value_columns:
            raise ValueError("ascii-md needs at least one value column")
        if isinstance(sep, str) and sep.lower() in ("none", "whitespace", ""):
            sep = None   # (as given on a command line: --option sep=None)
        self.sep = sep
        self.units = units
        self.has_sequence = "seq" in columns
        self._value_idx = [i for i, c in enumerate(columns) if c not in _SPECIAL]
        self._seq_idx = columns.index("seq") if "seq" in columns else -1
        if "millis" in columns:
            self._clock_idx, self._clock_scale = columns.index("millis"), 1000
        elif "micros" in columns:
            self._clock_idx, self._clock_scale = columns.index("micros"), 1
        else:
            self._clock_idx, self._clock_scale = -1, 1
        self._count = 0
        self._clock_last: int | None = None
        self._clock_wraps = 0

    def describe(self) -> dict:
        d = super().describe()
        d["columns"] = list(self.columns)
        d["sep"] = self.sep
        return d

    # -- encoding -----------------------------------------------------------------------
    def encode(self, frame: AsciiMdFrame) -> bytes:
        tokens = []
        values = list(frame.values)
        if len(values) != len(self.value_columns):
            raise ValueError(
                f"ascii-md frame has {len(values)} values for columns {self.value_columns}"
            )
        it = iter(values)
        for c in self.columns:
            if c == "seq":
                tokens.append(str(int(frame.sequence or 0) % _WRAP))
            elif c in ("millis", "micros"):
                t = int(frame.device_time_us or 0) // (1000 if c == "millis" else 1)
                tokens.append(str(t % _WRAP))
            else:
                v = next(it)
                tokens.append(str(int(v)) if isinstance(v, int | np.integer) else repr(float(v)))
        sep = self.sep if self.sep is not None else " "
        return (sep.join(tokens) + "\r\n").encode("ascii")

    # -- decoding -----------------------------------------------------------------------
    def _split(self, line: bytes) -> list[bytes]:
        line = _LABEL.sub(b"", line)
        if self.sep is None:
            return line.split()
        return [t.strip() for t in line.split(self.sep.encode())]

    def decode_lines(self, lines: list[bytes]) -> LineDecodeResult:
        res = LineDecodeResult(batch=None)
        ncol = len(self.columns)
        vals: list[list[float]] = []
        seqs: list[int] = []
        clocks: list[int] = []
        for line in lines:
            if line.startswith(b"#"):
                res.ignored += 1
                continue
            tok = self._split(line)
            if len(tok) != ncol:
                res.bad_lines += 1
                continue
            try:
                row = [float(tok[i]) for i in self._value_idx]
                seq = int(tok[self._seq_idx]) if self._seq_idx >= 0 else None
                clk = int(tok[self._clock_idx]) if self._clock_idx >= 0 else None
            except ValueError:
                res.bad_lines += 1
                continue
            vals.append(row)
            if seq is None:
                seq = self._count
            self._count += 1
            seqs.append(seq)
            if clk is None:
                clocks.append(-1)
            else:
                if self._clock_last is not None and clk < self._clock_last - _WRAP // 2:
                    self._clock_wraps += 1
                self._clock_last = clk
                clocks.append((clk + self._clock_wraps * _WRAP) * self._clock_scale)
        if vals:
            res.batch = FrameBatch(
                driver=self.name,
                kind=self.kind,
                sequence=np.asarray(seqs, dtype=np.int64),
                device_time_us=np.asarray(clocks, dtype=np.int64),
                samples=np.asarray(vals, dtype=np.float32).reshape(len(vals), -1),
            )
        return res
