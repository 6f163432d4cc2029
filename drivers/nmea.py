"""``nmea``: an NMEA 0183 GPS receiver (GGA, GNS, RMC, ZDA, VTG).

Sentences are parsed by :mod:`demine.nmea` (checksums checked).  One frame is
emitted per GGA sentence (position, altitude, fix quality, satellites, HDOP); the
date comes from the latest RMC or ZDA, and moves on at UTC midnight
(:class:`demine.nmea.UtcDate`: the GGA that comes before the epoch's RMC has
the new day's date).  A receiver configured without GGA gets one frame per GNS
instead, and one without GGA and GNS one frame per RMC (fix quality from its
mode, no altitude, satellites unknown); which one is decided by the second
such sentence (a receiver that sends RMC before GGA, as u-blox ones do, gives
no RMC frame for its first epoch).  "No fix" sentences and empty fields become
frames with ``fix_quality`` 0 and NaN position, never an error; positions a
receiver did not measure (fix quality 7 manual input, 8 simulator) are NaN
with their quality.

Samples columns (float64): ``lon, lat, alt, fix_quality, satellites, hdop``
(``satellites`` NaN when the sentence has none; ``alt`` in metres, converted
when the GGA gives feet).  The receiver's delay is the recorder's business: a
``latency`` in the device's calibration (see ``nmea.md``).
``device_time_us`` is the GPS UTC time in microseconds since the Unix epoch (before
the receiver has sent a date, the host's UTC date is assumed; ``-1`` without a
time); the field ``gps_time_ns`` holds the GPS UTC time only when the GPS gave the
date (else -1).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import NamedTuple

import numpy as np

from demine import nmea as _nmea
from demine.errors import ChecksumError, FrameError

from .base import Driver, FrameBatch, LineDecodeResult

__all__ = ["COLUMNS", "GpsFix", "NmeaDriver", "sentence"]

COLUMNS = ("lon", "lat", "alt", "fix_quality", "satellites", "hdop")
_KNOT = 1852.0 / 3600.0  # m/s
# (sentence type tuples made once: a union in each isinstance call builds it anew)
_RMC_ZDA = (_nmea.RMC, _nmea.ZDA)
#: A sentence with its checksum, whole (``$...*hh``): what came before another
#: '$' on one line is kept when it is one.
_WHOLE = re.compile(rb"\$[^$*]*\*[0-9A-Fa-f]{2}\s*$")
_KNOWN = (_nmea.GGA, _nmea.GNS, _nmea.RMC, _nmea.ZDA, _nmea.VTG)


class GpsFix(NamedTuple):
    """One position fix, as the simulator or a test wants it on the wire."""

    time_ns: int  # UTC ns since the epoch
    lat: float  # decimal degrees, NaN for no fix
    lon: float
    alt: float = 0.0
    fix_quality: int = 1  # 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float
    satellites: int = 12
    hdop: float = 0.9
    speed_knots: float = 0.0
    course_deg: float = 0.0


def sentence(body: str) -> bytes:
    """Wrap a sentence body (``GPGGA,...``) as ``$body*hh\\r\\n``."""
    return f"${body}*{_nmea.checksum(body):02X}\r\n".encode("ascii")


def _latlon(value: float, is_lat: bool) -> tuple[str, str]:
    if math.isnan(value):
        return "", ""
    hemi = ("N" if value >= 0 else "S") if is_lat else ("E" if value >= 0 else "W")
    value = abs(value)
    deg = int(value)
    minutes = (value - deg) * 60.0
    if round(minutes, 7) >= 60.0:
        deg += 1
        minutes = 0.0
    width = 2 if is_lat else 3
    return f"{deg:0{width}d}{minutes:011.8f}", hemi


def _hms(time_ns: int) -> tuple[str, str]:
    day, rem = divmod(int(time_ns), 86_400_000_000_000)
    date = _dt.date(1970, 1, 1) + _dt.timedelta(days=day)
    sec = rem / 1e9
    h = int(sec // 3600)
    m = int((sec - h * 3600) // 60)
    s = sec - h * 3600 - m * 60
    return f"{h:02d}{m:02d}{s:06.3f}", date.strftime("%d%m%y")


def _utc_from_host_date(time_of_day: float) -> int:
    """UTC ns for a GPS time of day before the receiver sent a date: the host's UTC
    date, moved by a day when the two times of day are more than 12 h apart."""
    now = _dt.datetime.now(_dt.UTC)
    host_tod = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    date = now.date()
    if time_of_day - host_tod > 43200:
        date -= _dt.timedelta(days=1)
    elif host_tod - time_of_day > 43200:
        date += _dt.timedelta(days=1)
    ns = _nmea.utc_ns(date, time_of_day)
    assert ns is not None
    return ns


class NmeaDriver(Driver):
    """NMEA 0183 GPS; one instance per stream (it remembers the date)."""

    name = "nmea"
    kind = "gps"
    framing = "line"
    units = "deg"
    has_sequence = False
    max_line = 164
    line_start = b"$"
    serial_settings = {
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "xonxoff": False,
        "rtscts": False,
    }
    frame_format = "NMEA 0183 text sentences $ttSSS,...*hh CR LF (GGA, GNS, RMC, ZDA, VTG used)"
    columns = COLUMNS

    def __init__(self, *, talker: str = "GP") -> None:
        self.talker = talker
        self._utc = _nmea.UtcDate()
        #: The sentence the frames come from: "GGA", "GNS" or "RMC" (None: not
        #: known yet; GGA once one is seen, else the second GNS or RMC decides)
        self._source: str | None = None
        #: The first GNS or RMC frame while the source is not known:
        #: (kind, row, device time us, gps ns, motion)
        self._held: tuple[str, tuple[float, ...], int, int, tuple[float, float]] | None = None
        self._count = 0
        self._speed = math.nan  # m/s, latest RMC/VTG
        self._course = math.nan  # degrees true, latest RMC/VTG

    # -- encoding -----------------------------------------------------------------------
    def encode(self, frame: GpsFix) -> bytes:
        """GGA then RMC sentences for one fix."""
        tod, ddmmyy = _hms(frame.time_ns)
        lat, ns = _latlon(frame.lat, True)
        lon, ew = _latlon(frame.lon, False)
        has_fix = frame.fix_quality > 0 and lat != ""
        alt = "" if math.isnan(frame.alt) else f"{frame.alt:.3f}"
        hdop = "" if math.isnan(frame.hdop) else f"{frame.hdop:.1f}"
        t = self.talker
        gga = (
            f"{t}GGA,{tod},{lat},{ns},{lon},{ew},{int(frame.fix_quality) if has_fix else 0},"
            f"{int(frame.satellites):02d},{hdop},{alt},M,0.0,M,,"
        )
        rmc = (
            f"{t}RMC,{tod},{'A' if has_fix else 'V'},{lat},{ns},{lon},{ew},"
            f"{frame.speed_knots:.2f},{frame.course_deg:.1f},{ddmmyy},,,{'D' if has_fix else 'N'}"
        )
        return sentence(gga) + sentence(rmc)

    # -- decoding -----------------------------------------------------------------------
    def decode_lines(self, lines: list[bytes]) -> LineDecodeResult:
        rows: list[tuple[float, ...]] = []
        times: list[int] = []
        gps_ns: list[int] = []
        motion: list[tuple[float, float]] = []
        res = LineDecodeResult(batch=None)
        pieces: list[bytes] = []
        for line in lines:
            # a '$' inside a line: the sentence before it was cut short, or whole
            # with its line end lost (a 2-byte overrun): kept when its checksum is
            cut = line.find(b"$", 1)
            while cut > 0:
                head = line[:cut]
                if _WHOLE.match(head):
                    pieces.append(head)
                elif head[:1] == b"$":
                    res.truncated += 1
                else:
                    res.bad_lines += 1
                line = line[cut:]
                cut = line.find(b"$", 1)
            pieces.append(line)
        for line in pieces:
            try:
                s = _nmea.parse(line)
            except ChecksumError:
                res.bad_checksum += 1
                continue
            except FrameError:
                res.bad_lines += 1
                continue
            if not isinstance(s, _KNOWN):
                res.ignored += 1
                continue
            if isinstance(s, _RMC_ZDA):
                ns = self._utc.see(s.date, s.time_of_day)
            elif isinstance(s, _nmea.VTG):
                ns = None
            else:
                ns = self._utc.utc_ns(s.time_of_day)
            if isinstance(s, _nmea.RMC) and s.has_fix:
                self._speed, self._course = s.speed_knots * _KNOT, s.course_deg
            elif isinstance(s, _nmea.VTG) and s.has_fix:
                self._speed = (s.speed_kmh / 3.6 if not math.isnan(s.speed_kmh)
                               else s.speed_knots * _KNOT)
                self._course = s.course_true_deg
            if isinstance(s, _nmea.GGA):
                self._source, self._held = "GGA", None
                row: tuple[float, ...] = (s.lon, s.lat, s.altitude, float(s.fix_quality),
                                          float(s.satellites), s.hdop)
            elif isinstance(s, _nmea.GNS) and self._source in (None, "GNS", "RMC"):
                row = (s.lon, s.lat, s.altitude, float(s.fix_quality), float(s.satellites),
                       s.hdop)
            elif isinstance(s, _nmea.RMC) and self._source in (None, "RMC"):
                row = (s.lon, s.lat, math.nan, float(s.fix_quality), math.nan, math.nan)
            else:
                continue
            tod = s.time_of_day
            gps = -1 if ns is None else ns
            if ns is None and not math.isnan(tod):
                ns = _utc_from_host_date(tod)
            us = -1 if ns is None else ns // 1000
            kind = type(s).__name__
            if kind != self._source:
                # GNS or RMC while no GGA (or, for RMC, GNS) was seen: the
                # first one is held; a second one, with none of the others
                # since, makes it the source of the frames
                held = self._held
                if held is None or (held[0] == "RMC" and kind == "GNS"):
                    self._held = (kind, row, us, gps, (self._speed, self._course))
                    continue
                if held[0] != kind:  # (an RMC after a held GNS: the GNS decides)
                    continue
                self._source, self._held = kind, None
                rows.append(held[1])
                times.append(held[2])
                gps_ns.append(held[3])
                motion.append(held[4])
            rows.append(row)
            motion.append((self._speed, self._course))
            gps_ns.append(gps)
            times.append(us)
        if rows:
            n = len(rows)
            res.batch = FrameBatch(
                driver=self.name,
                kind=self.kind,
                sequence=np.arange(self._count, self._count + n, dtype=np.int64),
                device_time_us=np.asarray(times, dtype=np.int64),
                samples=np.asarray(rows, dtype=np.float64).reshape(n, len(COLUMNS)),
                fields={
                    "gps_time_ns": np.asarray(gps_ns, dtype=np.int64),
                    "speed_mps": np.asarray([m[0] for m in motion], dtype=np.float64),
                    "course_deg": np.asarray([m[1] for m in motion], dtype=np.float64),
                },
            )
            self._count += n
        return res
