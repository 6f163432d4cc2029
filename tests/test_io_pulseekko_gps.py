"""The pulseEKKO ``.GPS`` sidecar across UTC midnight, and altitudes in feet."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np
import pytest

from demine import io, nmea
from demine.io._common import NO_TIME
from demine.io.pulseekko import read_gps


def _nm(body: str) -> str:
    return f"${body}*{nmea.checksum(body):02X}"


def _gga(hms: str, alt: str = "62.1", unit: str = "M") -> str:
    return _nm(f"GPGGA,{hms},4729.69357,N,12218.83298,W,2,07,1.4,{alt},{unit},-18.5,M,,")


def _rmc(hms: str, ddmmyy: str) -> str:
    return _nm(f"GPRMC,{hms},A,4729.69357,N,12218.83298,W,0.5,90.0,{ddmmyy},,,D")


def _pair(tmp: Path, n: int, date_line: str = "2020-Jan-05") -> Path:
    """A pulseEKKO .HD + .DT1 of n blank 8-point traces."""
    (tmp / "L.HD").write_text(
        f"1234\r\nData Collected with pE PRO\r\n{date_line}\r\n"
        f"NUMBER OF TRACES   = {n}\r\nNUMBER OF PTS/TRC  = 8\r\nTOTAL TIME WINDOW  = 100\r\n"
        "POSITION UNITS     = m\r\nSTEP SIZE USED     = 0.05\r\n")
    blob = bytearray()
    for k in range(n):
        h = [0.0] * 25
        h[0], h[1], h[2], h[5] = k + 1, 0.05 * k, 8, 2
        blob += struct.pack("<25f", *h) + bytes(28) + bytes(16)
    (tmp / "L.DT1").write_bytes(bytes(blob))
    return tmp / "L.DT1"


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1e6) * 1000


def _write(path: Path, blocks: list[list[str]]) -> None:
    lines = []
    for k, sentences in enumerate(blocks):
        lines.append(f"Trace #{k + 1} at position {0.05 * k:.6f}")
        lines += sentences
    path.write_text("\r\n".join(lines) + "\r\n")


def test_a_gga_just_after_midnight_has_the_new_date_from_the_header_date(tmp_path):
    """The .HD's date, then GGAs across UTC midnight with no RMC until after
    it: the GGA of 00:00:00 is on the next day (before: the header's, a day
    early), and so are the ones after the RMC that confirms it."""
    p = _pair(tmp_path, 4)
    _write(tmp_path / "L.GPS", [
        [_gga("235959.00")],
        [_gga("235959.50")],
        [_gga("000000.00")],
        [_rmc("000000.00", "060120"), _gga("000000.50")],
    ])
    g = io.read(p).gps
    assert g["trace"].tolist() == [0, 1, 2, 3]
    assert g["time_ns"].tolist() == [
        _utc(2020, 1, 5, 23, 59, 59), _utc(2020, 1, 5, 23, 59, 59, 500000),
        _utc(2020, 1, 6, 0, 0, 0), _utc(2020, 1, 6, 0, 0, 0, 500000)]
    assert np.all(np.diff(g["time_ns"]) == 500_000_000)


def test_gga_before_rmc_across_midnight_without_a_header_date(tmp_path):
    """A receiver that sends GGA then RMC each epoch (as demine's own encoder
    does): the first GGA has no date yet; the GGA of 00:00:00 follows the RMC
    of 23:59:59.5 and is on the new day (before: on the old one)."""
    enc = []
    t0 = _utc(2026, 3, 31, 23, 59, 59)
    for k in range(4):
        t = t0 + k * 500_000_000
        d = dt.datetime.fromtimestamp(t / 1e9, dt.UTC)
        hms = d.strftime("%H%M%S.") + f"{d.microsecond // 10000:02d}"
        enc.append([_gga(hms), _rmc(hms, d.strftime("%d%m%y"))])
    _write(tmp_path / "x.GPS", enc)
    g, stats = read_gps(tmp_path / "x.GPS")
    assert stats == {"sentences": 4, "no_fix": 0, "malformed": 0}
    assert g["time_ns"][0] == NO_TIME  # (no date before the first RMC)
    assert g["time_ns"][1:].tolist() == [t0 + k * 500_000_000 for k in (1, 2, 3)]


def test_a_late_gga_from_before_midnight_keeps_its_day(tmp_path):
    _write(tmp_path / "y.GPS", [
        [_rmc("000000.00", "010426")],
        [_gga("235959.90")],  # measured before midnight, written after the RMC
        [_gga("000000.10")],
    ])
    g, _ = read_gps(tmp_path / "y.GPS")
    assert g["time_ns"].tolist() == [_utc(2026, 3, 31, 23, 59, 59, 900000),
                                     _utc(2026, 4, 1, 0, 0, 0, 100000)]


def test_altitude_in_feet_is_read_as_metres(tmp_path):
    _write(tmp_path / "z.GPS", [[_gga("120000.00", "1000.0", "F")],
                                [_gga("120001.00", "304.8", "M")],
                                [_gga("120002.00", "304.8", "Q")]])
    g, stats = read_gps(tmp_path / "z.GPS", date=dt.date(2020, 1, 5))
    assert g["alt"] == pytest.approx([304.8, 304.8])
    assert stats["malformed"] == 1  # (an unknown unit: not taken for metres)
