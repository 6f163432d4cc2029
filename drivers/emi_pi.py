"""``emi-pi``: binary frames of a pulse-induction metal detector.

Layout (little-endian; full table in ``emi_pi.md``)::

    0   2   sync 0xA5 0x5A
    2   1   protocol version (1)
    3   1   N, number of time gates (4..32)
    4   4   sequence number, uint32 (wraps)
    8   8   device clock, microseconds, uint64
    16  2   status flags, uint16
    18  4N  gate samples, float32, volts
    18+4N 2 CRC-16/CCITT-FALSE of bytes [2, 18+4N), uint16
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from demine import _framing

from .base import BinaryLayout, Driver, FrameBatch, decode_columns

__all__ = ["EmiFrame", "EmiPiDriver", "STATUS"]

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER = 18
MIN_GATES = 4
MAX_GATES = 32

#: Status flag bits.
STATUS = {
    "overrange": 1 << 0,
    "low_battery": 1 << 1,
    "coil_fault": 1 << 2,
    "marker": 1 << 3,
    "nulling": 1 << 4,
}


class EmiFrame(NamedTuple):
    """One reading of the detector."""

    sequence: int
    device_time_us: int
    samples: np.ndarray  # float32, (n_gates,)
    status: int = 0


def _header_dtype(n_gates: int) -> np.dtype:
    return np.dtype(
        [
            ("sync", "<u2"),
            ("version", "u1"),
            ("n_gates", "u1"),
            ("sequence", "<u4"),
            ("clock", "<u8"),
            ("status", "<u2"),
            ("samples", "<f4", (n_gates,)),
            ("crc", "<u2"),
        ]
    )


#: Header columns for the compiled gather: (byte offset, wire type, output type).
_COLUMNS = np.array(
    [
        [4, _framing.WIRE_U4, np.dtype(np.int64).num],  # sequence
        [8, _framing.WIRE_U8, np.dtype(np.int64).num],  # device clock (uint64 as int64)
        [16, _framing.WIRE_U2, np.dtype(np.uint16).num],  # status
    ],
    dtype=np.int64,
)
#: Sample wire type by sample width (bytes): float32.
_SAMPLE_WIRE = np.array([0, 0, 0, 0, _framing.WIRE_F4], dtype=np.int64)


class EmiPiDriver(Driver):
    """Pulse-induction metal detector, binary frames with CRC-16/CCITT."""

    name = "emi-pi"
    kind = "emi"
    framing = "binary"
    units = "V"
    serial_settings = {
        "baudrate": 921600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "xonxoff": False,
        "rtscts": False,
    }
    frame_format = (
        "sync A5 5A | version u8 | n_gates u8 | sequence u32 | clock_us u64 | status u16 | "
        "n_gates x float32 volts | CRC-16/CCITT-FALSE u16 over bytes 2..end-2 (little-endian)"
    )
    layout = BinaryLayout(
        sync=SYNC,
        header_len=4,
        version_off=2,
        version=VERSION,
        count_off=3,
        count_width=1,
        count_min=MIN_GATES,
        count_max=MAX_GATES,
        base=HEADER + 2,
        unit_const=4,
    )

    # -- encoding -----------------------------------------------------------------------
    def encode(self, frame: EmiFrame) -> bytes:
        samples = np.asarray(frame.samples, dtype="<f4").reshape(1, -1)
        return self.encode_arrays(
            [frame.sequence], [frame.device_time_us], samples, [frame.status]
        )

    def encode_arrays(
        self,
        sequence: np.ndarray,
        device_time_us: np.ndarray,
        samples: np.ndarray,
        status: np.ndarray | int = 0,
    ) -> bytes:
        """Encode many readings at once (vectorised; for simulators).

        Parameters
        ----------
        sequence : array of int, shape (n,)
            Sequence numbers (taken modulo 2**32).
        device_time_us : array of int, shape (n,)
            Device clock in microseconds.
        samples : array of float, shape (n, n_gates)
            Gate samples in volts, ``4 <= n_gates <= 32``.
        status : int or array of int, shape (n,)
            Status flags.
        """
        samples = np.asarray(samples, dtype="<f4")
        if samples.ndim != 2:
            raise ValueError("samples must be 2-D (frames x gates)")
        n, n_gates = samples.shape
        if not MIN_GATES <= n_gates <= MAX_GATES:
            raise ValueError(f"emi-pi frames carry {MIN_GATES}..{MAX_GATES} gates, not {n_gates}")
        rec = np.zeros(n, dtype=_header_dtype(n_gates))
        rec["sync"] = int.from_bytes(SYNC, "little")
        rec["version"] = VERSION
        rec["n_gates"] = n_gates
        rec["sequence"] = np.asarray(sequence, dtype=np.int64) & 0xFFFFFFFF
        rec["clock"] = np.asarray(device_time_us, dtype=np.int64)
        rec["status"] = status
        rec["samples"] = samples
        raw = rec.view(np.uint8).reshape(n, -1)
        from demine.framing import crc16_rows

        rec["crc"] = crc16_rows(raw, 2, raw.shape[1] - 2)
        return rec.tobytes()

    # -- decoding -----------------------------------------------------------------------
    def decode(
        self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
    ) -> list[FrameBatch]:
        return self._column_batches(
            decode_columns(buf, offsets, lengths, _COLUMNS, HEADER, 2, -1, 4, _SAMPLE_WIRE),
            ("status",))
