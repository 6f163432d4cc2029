"""Review of the GPS path as a field user meets it: the NMEA parser and the
``nmea`` driver on sentences that used to give wrong values in silence.

Each test names what it caught.  Sentences are built with an independently
computed checksum; the serial test goes through real pyserial on a
pseudo-terminal and demine's own framer.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import tty
from functools import reduce

import numpy as np
import pytest
import serial

from demine import nmea
from demine.drivers import get_driver
from demine.drivers.nmea import GpsFix
from demine.errors import ChecksumError, FrameError
from demine.framing import Framer

GGA_BODY = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"


def cs(body: str) -> int:
    return reduce(lambda a, ch: a ^ ord(ch), body, 0)


def with_checksum(body: str) -> str:
    return f"${body}*{cs(body):02X}\r\n"


def wire(body: str) -> bytes:
    return with_checksum(body).encode("ascii")


# ----------------------------------------------------------------------------- parser
def test_checksum_field_must_be_two_hex_digits():
    # int(x, 16) took "+2", " 2" (and "-0"): a checksum field of one hex digit
    # with a sign or a space in front passed for the two-digit one.
    body = GGA_BODY.replace("545.4", "0.4") + "A"
    assert cs(body) == 2
    assert nmea.parse(f"${body}*02").lat == pytest.approx(48 + 7.038 / 60)
    lower = GGA_BODY.replace("545.4", "108.4")  # checksum 4A, written lowercase
    assert f"{cs(lower):02x}" == "4a" and nmea.parse(f"${lower}*4a").has_fix
    for given in ("+2", " 2"):
        with pytest.raises(FrameError, match="checksum"):
            nmea.parse(f"${body}*{given}")


@pytest.mark.parametrize(("field", "body"), [
    # float() reads "1_000" as 1000, "4807.0_38" as 4807.038, "4807.038e0" as
    # 4807.038; the time's seconds "01_0" as 10: corrupted fields that a
    # sentence without checksum (DZG, pulseEKKO sidecars) passed as numbers
    ("lat", "GPGGA,123519,4807.0_38,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ("lat", "GPGGA,123519,4807.038e0,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ("lon", "GPGGA,123519,4807.038,N,01131.0_00,E,1,08,0.9,545.4,M,46.9,M,,"),
    ("time", "GPGGA,123501_0,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ("altitude", "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,1_000,M,46.9,M,,"),
    ("hdop", "GPGGA,123519,4807.038,N,01131.000,E,1,08,1e1,545.4,M,46.9,M,,"),
    ("speed", "GPRMC,225446,A,4916.45,N,12311.12,W,0_5,054.7,191194,,"),
])
def test_numbers_are_plain_decimals(field, body):
    for require in (True, False):
        with pytest.raises(FrameError, match=f"'{field}'"):
            nmea.parse(with_checksum(body), require_checksum=require)
        if not require:
            with pytest.raises(FrameError, match=f"'{field}'"):
                nmea.parse("$" + body, require_checksum=False)


def test_non_ascii_text_is_refused():
    # As str (a DZG sidecar read as text), full-width digits passed float():
    # "５45.4" was an altitude of 545.4; bytes were refused already.
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,\uff145.4,M,46.9,M,,"
    for line in (f"${body}*{nmea.checksum(body):02X}", "$" + body):
        with pytest.raises(FrameError, match="non-ASCII"):
            nmea.parse(line, require_checksum=False)


@pytest.mark.parametrize(("quality", "fix"), [(1, True), (2, True), (4, True), (5, True),
                                              (6, True), (7, False), (8, False)])
def test_gga_fix_qualities(quality, fix):
    # 7 (manual input) and 8 (simulator) are no measured position: they used
    # to place every reading at the typed-in or simulated point.  6 (dead
    # reckoning) is a fix, marked by its quality.
    g = nmea.parse(with_checksum(GGA_BODY.replace(",E,1,", f",E,{quality},")))
    assert g.fix_quality == quality and g.has_fix is fix
    assert math.isnan(g.lat) is (not fix) and math.isnan(g.lon) is (not fix)


@pytest.mark.parametrize(("mode", "quality", "fix"), [
    ("", 1, True), ("A", 1, True), ("D", 2, True), ("R", 4, True), ("F", 5, True),
    ("E", 6, True), ("M", 7, False), ("S", 8, False), ("N", 0, False)])
def test_rmc_modes(mode, quality, fix):
    r = nmea.parse(with_checksum(
        f"GNRMC,123519.00,A,4807.038,S,01131.000,W,0.10,,010426,,,{mode}"))
    assert (r.fix_quality, r.has_fix) == (quality, fix)
    if fix:
        assert r.lat == pytest.approx(-(48 + 7.038 / 60)) and r.lon < 0
    else:
        assert math.isnan(r.lat)
    void = nmea.parse(with_checksum(f"GNRMC,123519.00,V,,,,,,,010426,,,{mode}"))
    assert void.fix_quality == 0 and not void.has_fix


def test_gns():
    # NMEA 4.x multi-constellation fix data: used to be an OtherSentence, so a
    # receiver sending GNS instead of GGA gave no position frame.
    g = nmea.parse(with_checksum(
        "GNGNS,014035.00,4332.69262,S,17235.48549,E,RRN,13,0.9,25.63,11.24,1.2,0021,V"))
    assert isinstance(g, nmea.GNS) and g.talker == "GN"
    assert g.lat == pytest.approx(-(43 + 32.69262 / 60))
    assert g.lon == pytest.approx(172 + 35.48549 / 60)
    assert (g.fix_quality, g.satellites, g.hdop, g.altitude) == (4, 13, 0.9, 25.63)
    assert g.geoid_separation == 11.24 and g.dgps_station == "0021"
    assert g.has_fix  # nav status V is "not given" (u-blox always sends it), not "invalid"
    assert nmea.parse(with_checksum(
        "GPGNS,014035.00,4332.69,S,17235.48,E,NA,5,1.4,25.6,11.2,,")).fix_quality == 1
    nofix = nmea.parse(with_checksum("GNGNS,014035.00,,,,,NNN,0,,,,,,V"))
    assert not nofix.has_fix and math.isnan(nofix.lat)
    sim = nmea.parse(with_checksum("GNGNS,014035.00,4332.69,S,17235.48,E,SS,5,1.4,25.6,,,"))
    assert sim.fix_quality == 8 and not sim.has_fix and math.isnan(sim.lat)
    with pytest.raises(FrameError, match="'mode'"):
        nmea.parse(with_checksum("GNGNS,014035.00,4332.69,S,17235.48,E,AX,5,1.4,25.6,,,"))


def test_utc_date_follows_midnight():
    u = nmea.UtcDate()
    assert u.utc_ns(100.0) is None  # no date yet
    day = dt.date(2026, 3, 31)
    def at(d: dt.date, s: float) -> int:
        return _utc(d.year, d.month, d.day) + round(s * 1e9)

    assert u.see(day, 86399.9) == at(day, 86399.9)
    assert u.utc_ns(86399.95) == at(day, 86399.95)
    # the GGA of the first epoch of the next day, before its RMC
    nxt = dt.date(2026, 4, 1)
    assert u.utc_ns(0.0) == at(nxt, 0.0)
    assert u.date == nxt
    assert u.utc_ns(86399.99) == at(day, 86399.99)  # a late one from before midnight
    assert u.see(nxt, 0.1) == at(nxt, 0.1)
    assert u.utc_ns(0.2) == at(nxt, 0.2)
    assert u.utc_ns(math.nan) is None
    end = nmea.UtcDate()
    end.see(dt.date(9999, 12, 31), 86000.0)
    assert end.utc_ns(10.0) is None  # (no year 10000: no time, no exception)


# ----------------------------------------------------------------------------- driver
def _epochs(t0_ns: int, n: int, *, step_ns: int = 100_000_000, order: str = "GGA,RMC"):
    enc = get_driver("nmea", talker="GN")
    lines = []
    for k in range(n):
        gga, rmc = enc.encode(GpsFix(t0_ns + k * step_ns, -33.5, 151.25, 40.0, 4, 18, 0.6,
                                     0.5, 90.0)).splitlines()
        lines += [gga, rmc] if order == "GGA,RMC" else [rmc, gga]
    return lines


def _utc(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 10**9


def test_driver_time_goes_on_across_utc_midnight():
    # The GGA comes before the epoch's RMC: at 00:00:00.0 the date was still
    # the previous day's, and that fix went a day back in time (device time
    # and gps_time_ns; the recorder's clock fit restarted twice).
    t0 = _utc(2026, 3, 31, 23, 59, 59) + 500_000_000
    lines = _epochs(t0, 10)
    b = get_driver("nmea").decode_lines(lines).batch
    want = t0 + np.arange(10) * 100_000_000
    assert b.fields["gps_time_ns"][0] == -1  # before the first RMC: no GPS date
    np.testing.assert_array_equal(b.fields["gps_time_ns"][1:], want[1:])
    np.testing.assert_array_equal(b.device_time_us[1:], want[1:] // 1000)
    # sentence by sentence, as the serial reader hands them over
    drv = get_driver("nmea")
    got = [drv.decode_lines([ln]).batch for ln in lines]
    gps = np.concatenate([g.fields["gps_time_ns"] for g in got if g is not None])
    np.testing.assert_array_equal(gps[1:], want[1:])


def test_driver_rmc_only_receiver():
    # satellites were 0 ("no satellites", where RMC just does not say) and the
    # fix quality always 1, whatever the mode (RTK, differential, …)
    lines = [ln for ln in _epochs(_utc(2026, 4, 1, 10, 0, 0), 4) if b"RMC" in ln]
    b = get_driver("nmea").decode_lines(lines).batch
    assert len(b) == 4
    assert np.isnan(b.samples[:, 4]).all() and np.isnan(b.samples[:, 2]).all()
    assert b.samples[:, 3].tolist() == [2.0] * 4  # the encoder's mode D
    np.testing.assert_allclose(b.samples[:, 1], -33.5, atol=1e-9)
    # fed one at a time: the first is held until the second says "RMC only"
    drv = get_driver("nmea")
    assert drv.decode_lines(lines[:1]).batch is None
    assert len(drv.decode_lines(lines[1:2]).batch) == 2
    assert len(drv.decode_lines(lines[2:]).batch) == 2


def test_driver_rmc_before_gga_gives_one_frame_per_epoch():
    # u-blox order (RMC, VTG, GGA): the first RMC made a frame of its own, a
    # duplicate fix time with no altitude, and the recorder took that first
    # fix's missing altitude as the origin's (0 m: every z an altitude above
    # the sea instead of above the first fix)
    t0 = _utc(2026, 4, 1, 10, 0, 0)
    b = get_driver("nmea").decode_lines(_epochs(t0, 5, order="RMC,GGA")).batch
    assert len(b) == 5
    np.testing.assert_array_equal(b.fields["gps_time_ns"], t0 + np.arange(5) * 100_000_000)
    np.testing.assert_array_equal(b.samples[:, 2], 40.0)
    assert b.samples[:, 3].tolist() == [4.0] * 5


def test_driver_gns_receiver():
    body = "GNGNS,{},4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,,V"
    zda = with_checksum("GNZDA,014035.00,01,04,2026,00,00").encode()
    lines = [zda] + [wire(body.format(f"01403{k}.00")) for k in range(5, 9)]
    lines.insert(3, wire("GNRMC,014036.00,A,4332.69262,S,17235.48549,E,0.1,,010426,,,R"))
    b = get_driver("nmea").decode_lines(lines).batch
    assert len(b) == 4  # one per GNS; the RMC gives the date only
    assert b.samples[:, 3].tolist() == [4.0] * 4 and b.samples[:, 4].tolist() == [13.0] * 4
    np.testing.assert_allclose(b.samples[:, 2], 25.63)
    np.testing.assert_array_equal(b.fields["gps_time_ns"],
                                  _utc(2026, 4, 1, 1, 40, 35) + np.arange(4) * 10**9)


def test_driver_manual_and_simulated_fixes_place_nothing():
    lines = [wire(GGA_BODY.replace(",E,1,", f",E,{q},")) for q in (1, 6, 7, 8)]
    b = get_driver("nmea").decode_lines(lines).batch
    assert b.samples[:, 3].tolist() == [1.0, 6.0, 7.0, 8.0]
    assert np.isfinite(b.samples[:2, :2]).all() and np.isnan(b.samples[2:, :2]).all()


def test_driver_over_a_serial_line():
    """A receiver on a pseudo-terminal read with pyserial: sentences cut
    across writes, garbage, an over-long line, non-ASCII bytes and a bad
    checksum around an epoch sequence that crosses UTC midnight; every good
    fix is decoded once, in order, with its time."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    t0 = _utc(2026, 12, 31, 23, 59, 59) + 700_000_000
    lines = _epochs(t0, 6)
    good = b"".join(ln + b"\r\n" for ln in lines)
    bad = bytearray(lines[0] + b"\r\n")
    bad[12] ^= 0x04
    noise = [b"\x00\xff\xfe garbage\r\n", b"$GPGGA," + b"9" * 300 + b"\r\n",
             b"$GPGGA,caf\xc3\xa9*00\r\n", bytes(bad)]
    framer = Framer(get_driver("nmea"))
    ser = serial.serial_for_url(port, timeout=0.05)
    ends = np.cumsum([len(ln) + 2 for ln in lines])  # where each sentence ends
    try:
        # sentences 2 and 5 cut in two across writes (a pause between the
        # halves); noise between whole sentences
        chunks = [noise[0], good[:ends[1] + 9], good[ends[1] + 9:ends[2]], noise[1],
                  good[ends[2]:ends[4] + 30], good[ends[4] + 30:ends[5]], noise[2],
                  good[ends[5]:], noise[3]]
        batches = []
        for c in chunks:
            os.write(master, c)
            time.sleep(0.02)
            while data := ser.read(max(1, ser.in_waiting)):
                batches += framer.feed(data)
        batches += framer.flush()
    finally:
        ser.close()
        os.close(master)
        os.close(slave)
    gps = np.concatenate([b.fields["gps_time_ns"] for b in batches])
    want = t0 + np.arange(6) * 100_000_000
    assert gps[0] == -1
    np.testing.assert_array_equal(gps[1:], want[1:])
    s = framer.stats
    assert s.crc_errors == 1 and s.bad_lines >= 3


def _fixes(wire: bytes, chunk: int | None = None):
    from demine.framing import Framer

    fr = Framer("nmea")
    out = []
    step = chunk or len(wire)
    for i in range(0, len(wire), step):
        out += fr.feed(wire[i:i + step])
    out += fr.flush()
    return [round(float(t) / 1e6 % 86400, 2) for b in out for t in b.device_time_us], fr.stats


def test_whole_sentences_whose_line_end_was_lost_are_kept():
    """A UART overrun that drops the CR LF between two sentences had lost the
    first (counted as truncated though its checksum was whole), and both when
    together they were longer than a line."""
    from demine.drivers.nmea import sentence

    gga = sentence("GPGGA,120000.00,4807.03800000,N,01131.00000000,E,4,12,0.6,545.432,M,"
                   "46.900,M,,")
    long_gga = sentence("GNGGA,120001.00,4807.0380000000,N,01131.0000000000,E,4,12,0.6,"
                        "545.4321,M,46.9000,M,1.0,0000")
    rmc = sentence("GPRMC,120000.00,A,4807.03800000,N,01131.00000000,E,0.02,12.3,281126,,,R")
    for first in (gga, long_gga):
        tods, st = _fixes(first[:-2] + rmc + gga)
        assert len(tods) == 2 and st.truncated == 0, (tods, st)


def test_a_sentence_after_binary_bytes_without_a_line_end_is_kept():
    """100 bytes of another protocol (a u-blox UBX packet sharing the port) with
    no line end before a sentence: the buffer grew past a line and all of it had
    been dropped, the sentence with it, however the reads were cut."""
    from demine.drivers.nmea import sentence

    def gga(t):
        return sentence(f"GPGGA,{t},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")

    ubx = bytes([0xB5, 0x62]) + bytes(v for v in range(1, 256) if v not in b"\r\n$")[:98]
    wire = gga("120000.00") + ubx + gga("120001.00") + gga("120002.00")
    for chunk in (None, 7, 64):
        tods, st = _fixes(wire, chunk)
        assert tods == [43200.0, 43201.0, 43202.0], (chunk, tods, st)
        assert st.bytes_skipped == len(ubx)


def test_a_malformed_checksum_field_is_a_bad_line_and_a_mismatch_a_crc_error():
    """Faults were sorted by searching the error's text for "checksum", so a
    sentence whose checksum field is no hex number (``*G1``) or names
    "checksum" elsewhere counted as a CRC error; a mismatch is now its own
    exception, :class:`demine.errors.ChecksumError`."""
    good = with_checksum(GGA_BODY).encode("ascii")
    mismatch = good.replace(b"545.4", b"545.5")  # a changed digit, checksum kept
    not_hex = f"${GGA_BODY}*G1\r\n".encode("ascii")
    missing = f"${GGA_BODY}\r\n".encode("ascii")
    with pytest.raises(ChecksumError, match="checksum"):
        nmea.parse(mismatch)
    for line in (not_hex, missing):
        with pytest.raises(FrameError, match="checksum") as info:
            nmea.parse(line)
        assert not isinstance(info.value, ChecksumError)
    framer = Framer(get_driver("nmea"))
    framer.feed(good + mismatch + not_hex + missing + good)
    framer.flush()
    assert framer.stats.crc_errors == 1
    assert framer.stats.bad_lines == 2
