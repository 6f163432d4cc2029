"""NMEA 0183 sentence parser (GGA, GNS, RMC, ZDA, VTG).

A pure, dependency-free parser for the sentences a GPS receiver sends over a
serial line and that radar controllers store in sidecar files (GSSI ``.DZG``).

* The checksum (XOR of every character between ``$`` and ``*``, written as two
  hexadecimal digits, upper or lower case) is checked; a missing checksum is an
  error unless the caller passes ``require_checksum=False``.
* The talker is not interpreted: ``$GPGGA``, ``$GNGGA``, ``$GLGGA``, ``$BDGGA``…
  all parse as GGA, and the talker is kept in the record.
* Latitude ``ddmm.mmmm`` and longitude ``dddmm.mmmm`` become signed decimal
  degrees (south and west negative).  Numbers are plain decimals (``12.5``,
  ``-3``): Python's other spellings (``1_0``, ``1e3``, non-ASCII digits) are
  malformed fields, not numbers.
* A sentence that reports no fix (GGA fix quality 0, RMC status ``V``, VTG mode
  ``N``, GNS mode all ``N``) or leaves the position fields empty is a valid "no
  fix" record with NaN position, never an exception: receivers send those for
  minutes after power-up.  So are the positions a receiver did not measure:
  GGA fix quality 7 (manual input) and 8 (simulator), RMC and GNS modes ``M``
  and ``S`` (the record keeps the quality or mode that says so).  Dead
  reckoning (GGA quality 6, mode ``E``) is a fix, marked by its quality.
* A sentence that is malformed (bad checksum, too few fields, a number that is
  not a number, minutes >= 60, hemisphere not N/S/E/W, …) raises
  :class:`demine.errors.FrameError` whose message names the sentence and field.
* GGA and GNS carry a UTC time of day without a date: :class:`UtcDate`
  gives them the date of the latest RMC or ZDA, across UTC midnight.

Sentence types other than the five above parse to :class:`OtherSentence` (the
checksum is still checked) so a driver can skip them without special cases.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass

from .errors import ChecksumError, FrameError

__all__ = [
    "GGA",
    "GNS",
    "MODE_QUALITY",
    "RMC",
    "ZDA",
    "VTG",
    "OtherSentence",
    "Sentence",
    "UtcDate",
    "checksum",
    "parse",
    "parse_latlon",
    "parse_time_of_day",
    "utc_ns",
]

NAN = math.nan
_MAX_LEN = 164  # NMEA 0183 says 82; allow generous slack for vendor extensions
#: A control character (code < 32) or a '$' inside a sentence (one C-level scan
#: instead of a Python generator step per character: the GPS reader runs this per
#: sentence after a 25 ms sleep).
_CONTROL_OR_DOLLAR = re.compile("[\x00-\x1f$]")
#: The number fields of NMEA 0183: plain decimals (float() would also take
#: "1_0", "1e3", " 1" or non-ASCII digits, which no receiver writes).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_TIME = re.compile(r"[0-9]{6}(?:\.[0-9]*)?")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
#: GGA fix qualities that are no measured position: 7 manual input, 8 simulator.
_NOT_MEASURED = (7, 8)
#: Mode indicator (RMC, GNS, VTG; NMEA 2.3+) -> GGA fix quality.  ``M`` (manual
#: input) and ``S`` (simulator) are not measured positions; ``N`` is no fix.
MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8, "N": 0}


@dataclass(frozen=True, slots=True)
class GGA:
    """Global positioning fix data.

    ``time_of_day`` is seconds since UTC midnight (NaN when empty); ``lat``/``lon``
    are decimal degrees, NaN when there is no fix (quality 0), the position was
    not measured (7 manual input, 8 simulator) or the fields are empty;
    ``altitude`` is metres above mean sea level (NaN when empty) and
    ``geoid_separation`` metres, both converted from feet when their units
    field says ``F``.
    """

    talker: str
    time_of_day: float
    lat: float
    lon: float
    fix_quality: int
    satellites: int
    hdop: float
    altitude: float
    geoid_separation: float
    dgps_age: float
    dgps_station: str

    @property
    def has_fix(self) -> bool:
        """True when the receiver reports a measured fix and a position is present."""
        return (self.fix_quality > 0 and self.fix_quality not in _NOT_MEASURED
                and not (math.isnan(self.lat) or math.isnan(self.lon)))


@dataclass(frozen=True, slots=True)
class GNS:
    """GNSS fix data (NMEA 4.x multi-constellation receivers; GGA's fields).

    ``mode`` holds one mode indicator per constellation (``"AAN"``: GPS and
    GLONASS autonomous, Galileo no fix); the fix is the best of them.
    ``nav_status`` (NMEA 4.1: ``S`` safe, ``C`` caution, ``U`` unsafe, ``V``
    not given) is kept, not judged: u-blox receivers always send ``V``.
    """

    talker: str
    time_of_day: float
    lat: float
    lon: float
    mode: str
    satellites: int
    hdop: float
    altitude: float
    geoid_separation: float
    dgps_age: float
    dgps_station: str
    nav_status: str

    @property
    def fix_quality(self) -> int:
        """The GGA fix quality of the best constellation's mode (0: no fix)."""
        return _best_quality(self.mode)

    @property
    def has_fix(self) -> bool:
        """True when a constellation has a measured fix and a position is present."""
        q = self.fix_quality
        return q > 0 and q not in _NOT_MEASURED and not (math.isnan(self.lat)
                                                         or math.isnan(self.lon))


#: Preference among fixes of several constellations (GNS): RTK fixed first.
_QUALITY_RANK = {4: 0, 5: 1, 3: 2, 2: 3, 1: 4, 6: 5, 7: 6, 8: 7, 0: 8}


def _best_quality(mode: str) -> int:
    qs = [MODE_QUALITY.get(c, 0) for c in mode]
    return min(qs, key=_QUALITY_RANK.__getitem__) if qs else 0


@dataclass(frozen=True, slots=True)
class RMC:
    """Recommended minimum data: time, date, position, speed, course."""

    talker: str
    time_of_day: float
    status: str
    lat: float
    lon: float
    speed_knots: float
    course_deg: float
    date: _dt.date | None
    magnetic_variation: float
    mode: str

    @property
    def has_fix(self) -> bool:
        """True when status is ``A``, the mode is not ``N`` (no fix), ``M``
        (manual input) or ``S`` (simulator) and a position is present."""
        return (
            self.status == "A"
            and self.mode not in ("N", "M", "S")
            and not (math.isnan(self.lat) or math.isnan(self.lon))
        )

    @property
    def fix_quality(self) -> int:
        """The GGA fix quality this RMC stands for: from its mode (NMEA 2.3+),
        else 1 for status ``A``; 0 for status ``V``."""
        if self.status != "A":
            return 0
        return MODE_QUALITY.get(self.mode, 1) if self.mode else 1

    @property
    def time_ns(self) -> int | None:
        """UTC nanoseconds since the Unix epoch, or None without date or time."""
        return utc_ns(self.date, self.time_of_day)


@dataclass(frozen=True, slots=True)
class ZDA:
    """Time and date (with the local zone offset)."""

    talker: str
    time_of_day: float
    date: _dt.date | None
    zone_hours: int
    zone_minutes: int

    @property
    def time_ns(self) -> int | None:
        """UTC nanoseconds since the Unix epoch, or None without date or time."""
        return utc_ns(self.date, self.time_of_day)


@dataclass(frozen=True, slots=True)
class VTG:
    """Course over ground and ground speed."""

    talker: str
    course_true_deg: float
    course_magnetic_deg: float
    speed_knots: float
    speed_kmh: float
    mode: str

    @property
    def has_fix(self) -> bool:
        """True unless the mode is ``N`` (data not valid) or the speed is empty."""
        return self.mode != "N" and not math.isnan(self.speed_kmh + self.speed_knots)


@dataclass(frozen=True, slots=True)
class OtherSentence:
    """Any other (valid-checksum) sentence, fields kept as strings."""

    talker: str
    kind: str
    fields: tuple[str, ...]


Sentence = GGA | GNS | RMC | ZDA | VTG | OtherSentence


def checksum(body: str | bytes) -> int:
    """XOR of the characters of *body* (the text between ``$`` and ``*``)."""
    if isinstance(body, str):
        body = body.encode("ascii", "replace")
    c = 0
    for b in body:
        c ^= b
    return c


def _err(kind: str, field: str, value: str, why: str) -> FrameError:
    return FrameError(f"NMEA {kind}: field {field!r} = {value!r}: {why}")


def _float(kind: str, field: str, value: str) -> float:
    value = value.strip()
    if value == "":
        return NAN
    if not _DECIMAL.fullmatch(value):
        raise _err(kind, field, value, "not a number")
    x = float(value)
    if not math.isfinite(x):
        raise _err(kind, field, value, "not a finite number")
    return x


def _digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits ("²".isdigit() is True, int("²") fails)."""
    return text.isascii() and text.isdigit()


def _int(kind: str, field: str, value: str, default: int = 0) -> int:
    value = value.strip()
    if value == "":
        return default
    if not _digits(value) or len(value) > 9:
        raise _err(kind, field, value, "not a non-negative integer")
    return int(value)


def parse_time_of_day(value: str, kind: str = "NMEA", field: str = "time") -> float:
    """``hhmmss[.sss]`` to seconds since midnight (NaN when empty).

    A leap second, ``235960.x``, is ``86400 + x``: the seconds since midnight
    it is (:func:`utc_ns` says which Unix time that is).

    Raises
    ------
    FrameError
        When the text is not a valid time of day.
    """
    value = value.strip()
    if value == "":
        return NAN
    if not _TIME.fullmatch(value):
        raise _err(kind, field, value, "expected hhmmss[.sss]")
    hh, mm = int(value[:2]), int(value[2:4])
    ss = float(value[4:])
    if hh > 23 or mm > 59 or not (0.0 <= ss < 61.0):
        raise _err(kind, field, value, "hour, minute or second out of range")
    return hh * 3600.0 + mm * 60.0 + ss


def parse_latlon(value: str, hemisphere: str, kind: str = "NMEA", field: str = "lat") -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` plus hemisphere to signed decimal degrees.

    Empty value or hemisphere gives NaN.  South and west are negative.

    Raises
    ------
    FrameError
        When the number, the minutes or the hemisphere are invalid.
    """
    value = value.strip()
    hemisphere = hemisphere.strip().upper()
    if value == "" or hemisphere == "":
        return NAN
    is_lat = field.startswith("lat")
    allowed = "NS" if is_lat else "EW"
    if len(hemisphere) != 1 or hemisphere not in allowed:
        raise _err(kind, field + " hemisphere", hemisphere, f"expected one of {allowed}")
    dot = value.find(".")
    int_part = value if dot < 0 else value[:dot]
    if not _digits(int_part) or len(int_part) > (4 if is_lat else 5):
        raise _err(kind, field, value, "expected ddmm.mmmm / dddmm.mmmm")
    x = _float(kind, field, value)
    degrees = int(int_part[:-2] or "0")
    minutes = x - degrees * 100.0
    if not (0.0 <= minutes < 60.0):
        raise _err(kind, field, value, "minutes must be below 60")
    dec = degrees + minutes / 60.0
    if dec > (90.0 if is_lat else 180.0):
        raise _err(kind, field, value, "out of range")
    return -dec if hemisphere in "SW" else dec


def _date(kind: str, field: str, value: str) -> _dt.date | None:
    value = value.strip()
    if value == "":
        return None
    if len(value) != 6 or not _digits(value):
        raise _err(kind, field, value, "expected ddmmyy")
    dd, mo, yy = int(value[:2]), int(value[2:4]), int(value[4:])
    # NMEA two-digit years: 80..99 -> 1980s/90s, otherwise 20xx (GPS epoch 1980).
    year = 1900 + yy if yy >= 80 else 2000 + yy
    try:
        return _dt.date(year, mo, dd)
    except ValueError:
        raise _err(kind, field, value, "not a calendar date") from None


def utc_ns(date: _dt.date | None, time_of_day: float) -> int | None:
    """Combine a UTC date and seconds-of-day into nanoseconds since the Unix epoch.

    Returns None without a date or time, or when the instant does not fit int64
    nanoseconds (years outside 1678-2261).

    Unix time has no leap seconds: a leap second ``23:59:60.x`` gets the time
    of the next day's ``00:00:00.x``, as ``calendar.timegm`` gives it (the
    receiver's clock, as the recorder reads it, steps back one second after
    it).  Deliberately not a time inside ``23:59:59`` (mapped there, the
    receiver's clock would stand still for a second, which the clock fit
    takes for a delay: every later fix would be placed a second early until
    the fit caught up).  The clock fit takes the step back for what it is,
    a clock reset (:class:`demine.acquisition.ClockFit`), so the fix times of
    a recording, mapped to the host clock, stay distinct and in order; only
    ``gps_time_ns`` repeats that second.
    """
    if date is None or math.isnan(time_of_day):
        return None
    days = date.toordinal() - _EPOCH_ORDINAL
    ns = days * 86_400_000_000_000 + round(time_of_day * 1e9)
    if not -(2**63) < ns < 2**63:
        return None
    return ns


_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_HALF_DAY = 43200.0
_ONE_DAY = _dt.timedelta(days=1)


class UtcDate:
    """The UTC date of a stream of NMEA sentences, kept across midnight.

    GGA and GNS carry a time of day without a date; the date comes from
    RMC or ZDA, which a receiver sends after GGA in its epoch (or once a
    second, or not at all).  The first GGA after UTC midnight would then take
    the previous day's date: a time a day early.  This follows the times of
    day: one more than 12 hours before the last one seen has crossed midnight
    (the date moves on a day); one more than 12 hours after it belongs to the
    day before (a sentence from before midnight, late).

    ``see(date, time_of_day)`` for every RMC and ZDA (``date`` None when it
    had none), ``utc_ns(time_of_day)`` for the other sentences.
    """

    __slots__ = ("date", "_tod")

    def __init__(self) -> None:
        #: The date of the latest time of day seen (None until one is known).
        self.date: _dt.date | None = None
        self._tod = NAN

    def see(self, date: _dt.date | None, time_of_day: float) -> int | None:
        """A sentence with a date (RMC, ZDA): the date from now on; its time (ns)."""
        if date is None:
            return self.utc_ns(time_of_day)
        self.date = date
        self._tod = time_of_day
        return utc_ns(date, time_of_day)

    def utc_ns(self, time_of_day: float) -> int | None:
        """UTC ns of a time of day, or None before any date (or without a time)."""
        date = self.date
        if date is None or math.isnan(time_of_day):
            return None
        last = self._tod
        try:
            if time_of_day < last - _HALF_DAY:  # past midnight
                date = self.date = date + _ONE_DAY
            elif time_of_day > last + _HALF_DAY:  # before midnight, late
                return utc_ns(date - _ONE_DAY, time_of_day)
        except OverflowError:  # (years 1 and 9999 of a corrupt date)
            return None
        self._tod = time_of_day
        return utc_ns(date, time_of_day)


def _need(kind: str, fields: list[str], n: int) -> None:
    if len(fields) < n:
        raise FrameError(
            f"NMEA {kind}: {len(fields)} fields, at least {n} expected (sentence truncated?)"
        )


#: GGA units fields: metres per unit (an empty field is metres: NMEA has no other default)
_UNITS = {"M": 1.0, "": 1.0, "F": 0.3048}


def _metres(kind: str, field: str, value: str) -> float:
    """Metres per unit of a GGA units field: ``M`` metres, ``F`` feet (some
    receivers configured for imperial units); anything else is refused (it
    would be taken for metres)."""
    try:
        return _UNITS[value.strip().upper()]
    except KeyError:
        raise _err(kind, field, value, "expected M (metres) or F (feet)") from None


def _parse_gga(talker: str, f: list[str]) -> GGA:
    k = "GGA"
    _need(k, f, 9)
    f = f + [""] * (14 - len(f))
    tod = parse_time_of_day(f[0], k)
    lat = parse_latlon(f[1], f[2], k, "lat")
    lon = parse_latlon(f[3], f[4], k, "lon")
    quality = _int(k, "fix quality", f[5], 0)
    if quality > 8:
        raise _err(k, "fix quality", f[5], "expected 0..8")
    sats = _int(k, "satellites", f[6], 0)
    if sats > 999:
        raise _err(k, "satellites", f[6], "more than 999 satellites")
    hdop = _float(k, "hdop", f[7])
    alt = _float(k, "altitude", f[8]) * _metres(k, "altitude units", f[9])
    sep = _float(k, "geoid separation", f[10]) * _metres(k, "geoid separation units", f[11])
    age = _float(k, "dgps age", f[12])
    if quality == 0 or quality in _NOT_MEASURED or math.isnan(lat) or math.isnan(lon):
        lat = lon = NAN
    return GGA(talker, tod, lat, lon, quality, sats, hdop, alt, sep, age, f[13].strip())


def _parse_gns(talker: str, f: list[str]) -> GNS:
    k = "GNS"
    # time,lat,N/S,lon,E/W,mode,sats,hdop,alt,sep,age,station[,nav status]
    _need(k, f, 9)
    f = f + [""] * (13 - len(f))
    tod = parse_time_of_day(f[0], k)
    lat = parse_latlon(f[1], f[2], k, "lat")
    lon = parse_latlon(f[3], f[4], k, "lon")
    mode = f[5].strip().upper()
    if any(c not in MODE_QUALITY for c in mode):
        raise _err(k, "mode", f[5], f"expected letters of {''.join(MODE_QUALITY)}")
    sats = _int(k, "satellites", f[6], 0)
    if sats > 999:
        raise _err(k, "satellites", f[6], "more than 999 satellites")
    hdop = _float(k, "hdop", f[7])
    alt = _float(k, "altitude", f[8])
    sep = _float(k, "geoid separation", f[9])
    age = _float(k, "dgps age", f[10])
    status = f[12].strip().upper()[:1]
    quality = _best_quality(mode)
    if quality == 0 or quality in _NOT_MEASURED:
        lat = lon = NAN
    return GNS(talker, tod, lat, lon, mode, sats, hdop, alt, sep, age, f[11].strip(), status)


def _parse_rmc(talker: str, f: list[str]) -> RMC:
    k = "RMC"
    _need(k, f, 9)
    f = f + [""] * (12 - len(f))
    tod = parse_time_of_day(f[0], k)
    status = f[1].strip().upper()
    if status not in ("A", "V", ""):
        raise _err(k, "status", f[1], "expected A or V")
    lat = parse_latlon(f[2], f[3], k, "lat")
    lon = parse_latlon(f[4], f[5], k, "lon")
    speed = _float(k, "speed", f[6])
    course = _float(k, "course", f[7])
    date = _date(k, "date", f[8])
    var = _float(k, "magnetic variation", f[9])
    vdir = f[10].strip().upper()
    if vdir not in ("", "E", "W"):
        raise _err(k, "magnetic variation direction", f[10], "expected E or W")
    if vdir == "W":
        var = -var
    mode = f[11].strip().upper()[:1]
    if status != "A" or mode in ("N", "M", "S") or math.isnan(lat) or math.isnan(lon):
        lat = lon = NAN
    return RMC(talker, tod, status or "V", lat, lon, speed, course, date, var, mode)


def _parse_zda(talker: str, f: list[str]) -> ZDA:
    k = "ZDA"
    _need(k, f, 4)
    f = f + [""] * (6 - len(f))
    tod = parse_time_of_day(f[0], k)
    day = _int(k, "day", f[1], -1)
    month = _int(k, "month", f[2], -1)
    year = _int(k, "year", f[3], -1)
    date: _dt.date | None = None
    if day >= 0 and month >= 0 and year >= 0:
        try:
            date = _dt.date(year, month, day)
        except ValueError:
            raise _err(k, "date", ",".join(f[1:4]), "not a calendar date") from None
    zh_text = f[4].strip()
    sign = -1 if zh_text.startswith("-") else 1
    zh = sign * _int(k, "zone hours", zh_text.lstrip("+-"), 0)
    zm = _int(k, "zone minutes", f[5], 0)
    if abs(zh) > 13 or zm > 59:
        raise _err(k, "zone", f"{f[4]},{f[5]}", "out of range")
    return ZDA(talker, tod, date, zh, zm)


def _parse_vtg(talker: str, f: list[str]) -> VTG:
    k = "VTG"
    # NMEA 2.3: course,T,course,M,speed,N,speed,K,mode ; pre-2.0: course,course,speed,speed
    if len(f) == 4:
        f = [f[0], "T", f[1], "M", f[2], "N", f[3], "K"]
    _need(k, f, 8)
    f = f + [""] * (9 - len(f))
    return VTG(
        talker,
        _float(k, "course true", f[0]),
        _float(k, "course magnetic", f[2]),
        _float(k, "speed knots", f[4]),
        _float(k, "speed km/h", f[6]),
        f[8].strip().upper()[:1],
    )


_PARSERS = {"GGA": _parse_gga, "GNS": _parse_gns, "RMC": _parse_rmc, "ZDA": _parse_zda,
            "VTG": _parse_vtg}


def parse(line: str | bytes, *, require_checksum: bool = True) -> Sentence:
    """Parse one NMEA 0183 sentence.

    Parameters
    ----------
    line
        The sentence, with or without trailing CR LF; ``str`` or ASCII ``bytes``.
    require_checksum
        When True (default) a sentence without ``*hh`` is an error.  A checksum
        that is present is always checked.

    Returns
    -------
    GGA | GNS | RMC | ZDA | VTG | OtherSentence

    Raises
    ------
    FrameError
        The sentence is malformed; the message names the sentence type and field.
    """
    if isinstance(line, bytes | bytearray | memoryview):
        try:
            line = bytes(line).decode("ascii")
        except UnicodeDecodeError:
            raise FrameError("NMEA: sentence contains non-ASCII bytes") from None
    text = line.strip()
    if not text.isascii():  # (bytes were checked above; str may hold anything)
        raise FrameError("NMEA: sentence contains non-ASCII characters")
    if len(text) > _MAX_LEN:
        raise FrameError(f"NMEA: sentence of {len(text)} characters is too long")
    if not text.startswith("$") and not text.startswith("!"):
        raise FrameError(f"NMEA: sentence does not start with '$': {text[:20]!r}")
    star = text.rfind("*")
    if star >= 0:
        body = text[1:star]
        given = text[star + 1 :]
        # (int(x, 16) alone would take "+4", " 4" or "-0")
        if not _HEX2.fullmatch(given):
            raise FrameError(f"NMEA: field 'checksum' = {given!r}: expected two hex digits")
        want = int(given, 16)
        got = checksum(body)
        if got != want:
            raise ChecksumError(
                f"NMEA: field 'checksum' = {given!r}: computed {got:02X} "
                f"from {body[:16]!r}…"
            )
    else:
        if require_checksum:
            raise FrameError(f"NMEA: field 'checksum' missing in {text[:20]!r}")
        body = text[1:]
    if _CONTROL_OR_DOLLAR.search(body):
        raise FrameError("NMEA: control character or '$' inside the sentence")
    parts = body.split(",")
    address = parts[0]
    if not address.isalnum() or not (2 <= len(address) <= 6):
        raise FrameError(f"NMEA: field 'address' = {address!r}: expected e.g. GPGGA")
    if address.startswith("P"):  # proprietary: P + manufacturer + type
        return OtherSentence("P", address[1:], tuple(parts[1:]))
    talker, kind = address[:2], address[2:]
    fn = _PARSERS.get(kind)
    if fn is None or len(address) != 5:
        return OtherSentence(talker, address[2:], tuple(parts[1:]))
    return fn(talker, parts[1:])
