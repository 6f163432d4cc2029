"""A leap second in NMEA times (``23:59:60``), from the sentence to the fix
times the recorder uses.

Decision (see :func:`demine.nmea.utc_ns`): the leap second gets the Unix time
of the next ``00:00:00``, as ``calendar.timegm`` does, so the receiver's
clock steps back one second after it; the reader's clock fit takes that for
a clock reset and the fix times mapped to the host clock stay distinct, in
order and right.  Mapping it into ``23:59:59.999…`` instead (a monotonic GPS
time) makes the receiver's clock stand still for a second: the clock fit
takes that for a delay and places every later fix about a second early.
"""

from __future__ import annotations

import calendar
import datetime as dt

import numpy as np
import pytest

from demine import nmea
from demine.acquisition import ClockFit
from demine.drivers import get_driver
from demine.drivers.nmea import sentence

S = 1_000_000_000
DAY = dt.date(2016, 12, 31)  # a day that had a leap second


def test_a_leap_second_is_seconds_since_midnight_and_the_next_days_unix_time():
    assert nmea.parse_time_of_day("235960.50") == 86400.5
    want = calendar.timegm((2016, 12, 31, 23, 59, 60)) * S + S // 2
    assert nmea.utc_ns(DAY, 86400.5) == want
    assert nmea.utc_ns(DAY, 86400.5) == nmea.utc_ns(DAY + dt.timedelta(days=1), 0.5)
    with pytest.raises(Exception, match="out of range"):
        nmea.parse_time_of_day("235961.00")


def test_the_date_moves_on_once_across_a_leap_second():
    # GGA times of a 10 Hz receiver around the leap second, dated by the
    # RMC of the day before: the date moves on at 00:00:00, not before
    # and not twice
    utc = nmea.UtcDate()
    utc.see(DAY, 86399.0)
    tods = np.r_[86399 + np.arange(10) / 10, 86400 + np.arange(10) / 10, np.arange(10) / 10]
    got = [utc.utc_ns(float(x)) for x in tods]
    midnight = calendar.timegm((2017, 1, 1, 0, 0, 0)) * S
    assert got[:10] == [midnight - S + k * S // 10 for k in range(10)]
    assert got[10:20] == got[20:] == [midnight + k * S // 10 for k in range(10)]
    assert utc.date == DAY + dt.timedelta(days=1)


def _epoch(tod: float, date: str) -> bytes:
    hh, rem = divmod(tod, 3600)
    mm, ss = divmod(rem, 60)
    if tod >= 86400:  # the leap second
        hh, mm, ss = 23, 59, tod - 86340
    t = f"{int(hh):02d}{int(mm):02d}{ss:05.2f}"
    return (sentence(f"GPGGA,{t},1230.0000,N,10454.0000,E,4,14,0.6,10.0,M,0.0,M,,")
            + sentence(f"GPRMC,{t},A,1230.0000,N,10454.0000,E,0.0,0.0,{date},,,R"))


def test_fix_times_stay_distinct_and_right_through_the_clock_fit():
    # The real driver reads a 10 Hz receiver through 23:59:60; the receiver
    # sends each fix 30 ms (plus a jittery link delay) after measuring it.
    # The reader's clock fit maps the receiver's clock to the host's: every
    # fix time must be distinct, in order, and within 3 ms of when the fix
    # was measured (+ the 30 ms the fit cannot see).
    drv = get_driver("nmea")
    # (a first RMC gives the date: a GGA before any takes the host's)
    drv.decode_lines(_epoch(86339.9, "311216").splitlines(keepends=True))
    rng = np.random.default_rng(3)
    seconds = [(86340 + k / 10, "311216") for k in range(600)]  # the last minute
    seconds += [(86400 + k / 10, "311216") for k in range(10)]  # 23:59:60.x
    seconds += [(k / 10, "010117") for k in range(300)]  # the new day's first 30 s
    dev = []
    for tod, date in seconds:
        batch = drv.decode_lines(_epoch(tod, date).splitlines(keepends=True)).batch
        dev.append(int(batch.device_time_us[0]))
    dev = np.array(dev, dtype=np.int64)
    # the receiver's clock steps back one second after the leap second
    assert np.diff(dev)[609] == -900_000 and (np.delete(np.diff(dev), 609) == 100_000).all()
    true = np.arange(dev.size, dtype=np.int64) * (S // 10) + 1_483_228_000 * S
    host = true + 30_000_000 + rng.exponential(2e6, dev.size).astype(np.int64)
    fit = ClockFit()
    mapped = np.concatenate([fit.update(dev[i:i + 1], host[i:i + 1]) for i in range(dev.size)])
    assert fit.resets == 1
    assert (np.diff(mapped) > 0).all()
    err = (mapped - true - 30_000_000) / 1e6  # ms
    assert np.abs(err[50:]).max() < 3.0, np.abs(err[50:]).max()
