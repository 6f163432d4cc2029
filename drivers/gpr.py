"""``gpr``: binary trace frames of a ground-penetrating radar.

Layout (little-endian; full table in ``gpr.md``)::

    0   2   sync 0xA5 0x5C
    2   1   protocol version (1)
    3   1   bytes per sample: 2 (int16) or 4 (int32)
    4   2   M, samples per trace, uint16 (128..4096)
    6   2   stacking (traces averaged by the radar), uint16
    8   4   sequence number, uint32 (wraps)
    12  8   device clock, microseconds, uint64
    20  4   encoder count (survey wheel ticks), int32
    24  2   status flags, uint16
    26  2   reserved (0)
    28  M*b samples, int16 or int32
    end-2 2 CRC-16/CCITT-FALSE of bytes [2, end-2), uint16
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from demine import _framing

from .base import BinaryLayout, Driver, FrameBatch, decode_columns

__all__ = ["GprDriver", "GprFrame", "STATUS"]

SYNC = b"\xa5\x5c"
VERSION = 1
HEADER = 28
MIN_SAMPLES = 128
MAX_SAMPLES = 4096

#: Status flag bits.
STATUS = {
    "overrange": 1 << 0,
    "low_battery": 1 << 1,
    "encoder_fault": 1 << 2,
    "marker": 1 << 3,
}


class GprFrame(NamedTuple):
    """One radar trace."""

    sequence: int
    device_time_us: int
    encoder: int
    stacking: int
    samples: np.ndarray  # int16 or int32, (n_samples,)
    status: int = 0


def _dtype(n_samples: int, bps: int) -> np.dtype:
    return np.dtype(
        [
            ("sync", "<u2"),
            ("version", "u1"),
            ("bps", "u1"),
            ("n_samples", "<u2"),
            ("stacking", "<u2"),
            ("sequence", "<u4"),
            ("clock", "<u8"),
            ("encoder", "<i4"),
            ("status", "<u2"),
            ("reserved", "<u2"),
            ("samples", "<i2" if bps == 2 else "<i4", (n_samples,)),
            ("crc", "<u2"),
        ]
    )


#: Header columns for the compiled gather: (byte offset, wire type, output type).
_COLUMNS = np.array(
    [
        [8, _framing.WIRE_U4, np.dtype(np.int64).num],  # sequence
        [12, _framing.WIRE_U8, np.dtype(np.int64).num],  # device clock (uint64 as int64)
        [20, _framing.WIRE_I4, np.dtype(np.int32).num],  # encoder
        [6, _framing.WIRE_U2, np.dtype(np.uint16).num],  # stacking
        [24, _framing.WIRE_U2, np.dtype(np.uint16).num],  # status
    ],
    dtype=np.int64,
)
#: Sample wire type by sample width (the header byte 3): int16 or int32.
_SAMPLE_WIRE = np.array([0, 0, _framing.WIRE_I2, 0, _framing.WIRE_I4], dtype=np.int64)


class GprDriver(Driver):
    """Ground-penetrating radar, one trace per binary frame with CRC-16/CCITT."""

    name = "gpr"
    kind = "gpr"
    framing = "binary"
    units = "1"  # raw ADC counts
    encoder_fault_bit = STATUS["encoder_fault"]
    serial_settings = {
        "baudrate": 4000000,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "xonxoff": False,
        "rtscts": True,
    }
    frame_format = (
        "sync A5 5C | version u8 | bytes/sample u8 (2|4) | n_samples u16 | stacking u16 | "
        "sequence u32 | clock_us u64 | encoder i32 | status u16 | reserved u16 | samples | "
        "CRC-16/CCITT-FALSE u16 over bytes 2..end-2 (little-endian)"
    )
    layout = BinaryLayout(
        sync=SYNC,
        header_len=6,
        version_off=2,
        version=VERSION,
        count_off=4,
        count_width=2,
        count_min=MIN_SAMPLES,
        count_max=MAX_SAMPLES,
        base=HEADER + 2,
        unit_off=3,
        unit_allowed=(2, 4),
    )

    def encode(self, frame: GprFrame) -> bytes:
        samples = np.asarray(frame.samples)
        return self.encode_arrays(
            [frame.sequence], [frame.device_time_us], samples.reshape(1, -1),
            encoder=[frame.encoder], stacking=[frame.stacking], status=[frame.status],
        )

    def encode_arrays(
        self,
        sequence: np.ndarray,
        device_time_us: np.ndarray,
        samples: np.ndarray,
        *,
        encoder: np.ndarray | int = 0,
        stacking: np.ndarray | int = 1,
        status: np.ndarray | int = 0,
    ) -> bytes:
        """Encode many traces at once (vectorised; for simulators).

        ``samples`` is (n, n_samples) of int16 or int32; other integer types are
        rejected rather than silently truncated.
        """
        samples = np.asarray(samples)
        if samples.ndim != 2:
            raise ValueError("samples must be 2-D (traces x samples)")
        if samples.dtype == np.int16:
            bps = 2
        elif samples.dtype == np.int32:
            bps = 4
        else:
            raise ValueError(f"gpr samples must be int16 or int32, not {samples.dtype}")
        n, m = samples.shape
        if not MIN_SAMPLES <= m <= MAX_SAMPLES:
            raise ValueError(f"gpr traces carry {MIN_SAMPLES}..{MAX_SAMPLES} samples, not {m}")
        rec = np.zeros(n, dtype=_dtype(m, bps))
        rec["sync"] = int.from_bytes(SYNC, "little")
        rec["version"] = VERSION
        rec["bps"] = bps
        rec["n_samples"] = m
        rec["stacking"] = stacking
        rec["sequence"] = np.asarray(sequence, dtype=np.int64) & 0xFFFFFFFF
        rec["clock"] = np.asarray(device_time_us, dtype=np.int64)
        rec["encoder"] = encoder
        rec["status"] = status
        rec["samples"] = samples
        raw = rec.view(np.uint8).reshape(n, -1)
        from demine.framing import crc16_rows

        rec["crc"] = crc16_rows(raw, 2, raw.shape[1] - 2)
        return rec.tobytes()

    def decode(
        self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
    ) -> list[FrameBatch]:
        # one batch per run of equal length and sample width (byte 3)
        return self._column_batches(
            decode_columns(buf, offsets, lengths, _COLUMNS, HEADER, 2, 3, 0, _SAMPLE_WIRE),
            ("encoder", "stacking", "status"))
