"""Tests of demine.nmea, the NMEA 0183 sentence parser."""

from __future__ import annotations

import datetime as dt
import math
from functools import reduce
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine import nmea
from demine.errors import FrameError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DZG = DATA / "gpr" / "impdar-test-data" / "test_gssi.DZG"


def with_checksum(body: str) -> str:
    """Build ``$body*hh`` with an independently computed checksum (functools.reduce)."""
    c = reduce(lambda a, ch: a ^ ord(ch), body, 0)
    return f"${body}*{c:02X}\r\n"


def test_checksum_known_sentence():
    # The classic example from the NMEA literature; checksum 47 is printed on it.
    s = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
    g = nmea.parse(s)
    assert isinstance(g, nmea.GGA)
    assert g.talker == "GP"
    assert g.time_of_day == 12 * 3600 + 35 * 60 + 19
    # 48 deg 07.038 min = 48 + 7.038/60
    assert g.lat == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert g.lon == pytest.approx(11 + 31.0 / 60, abs=1e-12)
    assert (g.fix_quality, g.satellites) == (1, 8)
    assert g.hdop == pytest.approx(0.9)
    assert g.altitude == pytest.approx(545.4)
    assert g.geoid_separation == pytest.approx(46.9)
    assert g.has_fix


def test_bad_checksum_names_field():
    s = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48"
    with pytest.raises(FrameError, match="checksum"):
        nmea.parse(s)


def test_missing_checksum_policy():
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    with pytest.raises(FrameError, match="checksum"):
        nmea.parse("$" + body)
    assert nmea.parse("$" + body, require_checksum=False).fix_quality == 1


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD"])
def test_talker_agnostic(talker):
    g = nmea.parse(with_checksum(f"{talker}GGA,000000,0100.000,S,00200.000,W,2,5,1.0,3.0,M,,M,,"))
    assert isinstance(g, nmea.GGA) and g.talker == talker
    # South and west are negative
    assert g.lat == pytest.approx(-(1 + 0 / 60)) and g.lon == pytest.approx(-2.0)


def test_gga_no_fix_is_a_record_not_a_crash():
    # Exactly the line in ImpDAR's test_gssi.DZG: quality 0, empty HDOP and altitude.
    g = nmea.parse("$GPGGA,000320,4739.2552,N,12218.5815,W,0,00,,,M,,M,,*46")
    assert isinstance(g, nmea.GGA)
    assert g.fix_quality == 0 and g.satellites == 0
    assert math.isnan(g.lat) and math.isnan(g.lon)
    assert math.isnan(g.hdop) and math.isnan(g.altitude)
    assert not g.has_fix
    assert g.time_of_day == 3 * 60 + 20


def test_gga_all_empty_fields():
    g = nmea.parse(with_checksum("GNGGA,,,,,,0,,,,,,,,"))
    assert math.isnan(g.time_of_day) and math.isnan(g.lat) and not g.has_fix


def test_real_dzg_file_parses_every_gga():
    lines = [ln for ln in DZG.read_text().splitlines() if ln.startswith("$GPGGA")]
    assert len(lines) > 5
    recs = [nmea.parse(ln) for ln in lines]
    assert all(isinstance(r, nmea.GGA) and not r.has_fix for r in recs)
    # times advance by 1 s per sentence in this file
    times = [r.time_of_day for r in recs]
    assert times[1] - times[0] == 1.0


def test_rmc_date_and_time_ns():
    s = with_checksum("GPRMC,225446.50,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E")
    r = nmea.parse(s)
    assert isinstance(r, nmea.RMC) and r.has_fix
    assert r.date == dt.date(1994, 11, 19)
    want = dt.datetime(1994, 11, 19, 22, 54, 46, 500000, tzinfo=dt.UTC)
    assert r.time_ns == int(want.timestamp() * 1_000_000) * 1000
    assert r.lat == pytest.approx(49 + 16.45 / 60)
    assert r.lon == pytest.approx(-(123 + 11.12 / 60))
    assert r.speed_knots == pytest.approx(0.5)
    assert r.magnetic_variation == pytest.approx(20.3)


def test_rmc_void_status_has_nan_position_but_keeps_date():
    r = nmea.parse(with_checksum("GNRMC,010203,V,4916.45,N,12311.12,W,,,010224,,,N"))
    assert not r.has_fix and math.isnan(r.lat)
    assert r.date == dt.date(2024, 2, 1)


def test_zda():
    z = nmea.parse(with_checksum("GPZDA,201530.00,04,07,2002,-05,00"))
    assert isinstance(z, nmea.ZDA)
    assert z.date == dt.date(2002, 7, 4) and z.zone_hours == -5
    assert z.time_ns == int(dt.datetime(2002, 7, 4, 20, 15, 30, tzinfo=dt.UTC).timestamp()) * 10**9


def test_vtg_both_layouts():
    v = nmea.parse(with_checksum("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A"))
    assert isinstance(v, nmea.VTG) and v.has_fix
    assert (v.course_true_deg, v.speed_kmh) == (54.7, 10.2)
    old = nmea.parse(with_checksum("GPVTG,054.7,034.4,005.5,010.2"))
    assert old.speed_knots == 5.5
    nofix = nmea.parse(with_checksum("GPVTG,,T,,M,,N,,K,N"))
    assert not nofix.has_fix


def test_other_sentences_pass_through():
    o = nmea.parse(with_checksum("GPGSV,1,1,00"))
    assert isinstance(o, nmea.OtherSentence) and o.kind == "GSV"
    p = nmea.parse(with_checksum("PGRME,15.0,M,45.0,M,25.0,M"))
    assert isinstance(p, nmea.OtherSentence) and p.talker == "P"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "lat"),
        ("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "lat"),
        ("GPGGA,123519,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "lat hemisphere"),
        ("GPGGA,123519,4807.038,N,01131.000,N,1,08,0.9,545.4,M,46.9,M,,", "lon hemisphere"),
        ("GPGGA,12a519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "time"),
        ("GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "time"),
        ("GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,", "fix quality"),
        ("GPGGA,123519,4807.038,N,01131.000,E,1,x8,0.9,545.4,M,46.9,M,,", "satellites"),
        ("GPGGA,123519,4807.038,N,01131.000,E,1,08,abc,545.4,M,46.9,M,,", "hdop"),
        ("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,5e,M,46.9,M,,", "altitude"),
        ("GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,321194,,", "date"),
        ("GPRMC,225446,X,4916.45,N,12311.12,W,000.5,054.7,191194,,", "status"),
        ("GPZDA,201530.00,31,02,2002,00,00", "date"),
    ],
)
def test_malformed_fields_raise_frame_error_naming_field(body, field):
    with pytest.raises(FrameError, match=f"'{field}'"):
        nmea.parse(with_checksum(body))


def test_truncated_sentence():
    with pytest.raises(FrameError, match="GGA.*fields"):
        nmea.parse(with_checksum("GPGGA,123519,4807.038,N"))


def test_not_a_sentence():
    for bad in ["", "GPGGA,1,2", b"$GP\xffGGA*00", "$*00", "$GPGGA,,,*0G"]:
        with pytest.raises(FrameError):
            nmea.parse(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_only_frame_error(data):
    try:
        nmea.parse(data)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-89.999, 89.999, allow_nan=False),
    lon=st.floats(-179.999, 179.999, allow_nan=False),
)
def test_latlon_round_trip(lat, lon):
    def enc(x, width):
        total = round(abs(x) * 60, 6)  # minutes, rounded as written, so never "60.000000"
        d = int(total // 60)
        m = total - d * 60
        return f"{d:0{width}d}{m:09.6f}"

    body = (
        f"GNGGA,010203.5,{enc(lat, 2)},{'N' if lat >= 0 else 'S'},"
        f"{enc(lon, 3)},{'E' if lon >= 0 else 'W'},4,12,0.8,10.0,M,0.0,M,,"
    )
    g = nmea.parse(with_checksum(body))
    assert g.lat == pytest.approx(lat, abs=1e-7)
    assert g.lon == pytest.approx(lon, abs=1e-7)
