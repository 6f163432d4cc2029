"""Drivers: registry (built-ins, entry points), encoders and decoders round trip."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest

from demine.drivers import (
    Driver,
    available_drivers,
    get_driver,
    register_driver,
)
from demine.drivers.ascii_md import AsciiMdFrame
from demine.drivers.emi_pi import EmiFrame
from demine.drivers.gpr import GprFrame
from demine.drivers.nmea import GpsFix, sentence
from demine.errors import ConfigError
from demine.framing import Framer


def test_builtin_drivers_listed_and_created():
    names = available_drivers()
    for n in ("emi-pi", "gpr", "nmea", "ascii-md"):
        assert n in names
        d = get_driver(n)
        assert d.name == n
        assert d.kind in ("emi", "gpr", "gps")
        assert d.serial_settings["baudrate"] > 0
        assert "|" in d.frame_format or "NMEA" in d.frame_format or "lines" in d.frame_format
        note = d.protocol_note()
        assert "|" in note and n in note  # a frame-layout table naming the driver


def test_unknown_driver_is_config_error():
    with pytest.raises(ConfigError, match="unknown driver 'nope'.*emi-pi"):
        get_driver("nope")
    with pytest.raises(ConfigError, match="bad options"):
        get_driver("emi-pi", n_gates=3)


def test_instance_passes_through():
    d = get_driver("gpr")
    assert get_driver(d) is d


def test_register_driver_in_process():
    class Dummy(Driver):
        name = "dummy-test"
        kind = "marker"

    register_driver("dummy-test", Dummy)
    assert "dummy-test" in available_drivers()
    assert isinstance(get_driver("dummy-test"), Dummy)


def test_entry_point_driver(tmp_path, monkeypatch):
    """A third-party package ships a driver through the demine.drivers entry-point group."""
    (tmp_path / "thirdparty_radar.py").write_text(
        textwrap.dedent(
            """
            from demine.drivers.base import Driver

            class ThirdPartyRadar(Driver):
                name = "tp-radar"
                kind = "gpr"
            """
        )
    )
    dist = tmp_path / "thirdparty_radar-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-radar\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[demine.drivers]\ntp-radar = thirdparty_radar:ThirdPartyRadar\n"
        "tp-broken = thirdparty_radar:DoesNotExist\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "tp-radar" in available_drivers()
    drv = get_driver("tp-radar")
    assert type(drv).__name__ == "ThirdPartyRadar"
    with pytest.raises(ConfigError, match="tp-broken.*failed to load"):
        get_driver("tp-broken")
    sys.modules.pop("thirdparty_radar", None)


def test_emi_round_trip_all_gate_counts():
    d = get_driver("emi-pi")
    rng = np.random.default_rng(1)
    for n_gates in (4, 16, 32):
        samples = rng.normal(size=(7, n_gates)).astype(np.float32)
        wire = d.encode_arrays(np.arange(7) + 2**32 - 3, np.arange(7) * 500 + 10**12,
                               samples, status=np.arange(7))
        assert len(wire) == 7 * (20 + 4 * n_gates)
        (b,) = Framer(d).feed(wire)
        np.testing.assert_array_equal(b.samples, samples)
        np.testing.assert_array_equal(b.sequence, (np.arange(7) + 2**32 - 3) % 2**32)
        np.testing.assert_array_equal(b.device_time_us, np.arange(7) * 500 + 10**12)
        np.testing.assert_array_equal(b.fields["status"], np.arange(7))
    one = d.encode(EmiFrame(5, 123, np.ones(8, np.float32), status=8))
    (b,) = Framer(d).feed(one)
    assert b.sequence.tolist() == [5] and b.fields["status"].tolist() == [8]
    with pytest.raises(ValueError, match="4..32 gates"):
        d.encode_arrays([0], [0], np.zeros((1, 33)))


def test_emi_wire_layout_matches_note():
    d = get_driver("emi-pi")
    w = d.encode(EmiFrame(0x01020304, 0x1122334455, np.array([1.0, 2, 3, 4], np.float32), 0xBEEF))
    assert w[:2] == b"\xa5\x5a" and w[2] == 1 and w[3] == 4
    assert w[4:8] == bytes([4, 3, 2, 1])
    assert int.from_bytes(w[8:16], "little") == 0x1122334455
    assert int.from_bytes(w[16:18], "little") == 0xBEEF
    assert np.frombuffer(w[18:34], "<f4").tolist() == [1, 2, 3, 4]
    from demine._core import crc16_ccitt

    assert int.from_bytes(w[-2:], "little") == crc16_ccitt(np.frombuffer(w[2:-2], np.uint8))


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
@pytest.mark.parametrize("m", [128, 512, 2048])
def test_gpr_round_trip(dtype, m):
    d = get_driver("gpr")
    rng = np.random.default_rng(m)
    info = np.iinfo(dtype)
    tr = rng.integers(info.min, info.max, size=(5, m), dtype=dtype, endpoint=True)
    wire = d.encode_arrays(np.arange(5), np.arange(5) * 2500, tr, encoder=[-2, -1, 0, 1, 2],
                           stacking=4)
    assert len(wire) == 5 * (30 + m * np.dtype(dtype).itemsize)
    (b,) = Framer(d).feed(wire)
    assert b.samples.dtype == dtype
    np.testing.assert_array_equal(b.samples, tr)
    assert b.fields["encoder"].tolist() == [-2, -1, 0, 1, 2]
    assert b.fields["stacking"].tolist() == [4] * 5
    with pytest.raises(ValueError, match="int16 or int32"):
        d.encode_arrays([0], [0], tr.astype(np.float32))


def test_gpr_type_change_splits_batches():
    d = get_driver("gpr")
    a = d.encode(GprFrame(0, 0, 0, 1, np.zeros(256, np.int32)))
    b = d.encode(GprFrame(1, 1, 0, 1, np.zeros(512, np.int16)))  # same byte length
    assert len(a) == len(b)
    batches = Framer(d).feed(a + b)
    assert [x.samples.dtype for x in batches] == [np.int32, np.int16]
    assert [x.samples.shape for x in batches] == [(1, 256), (1, 512)]


def test_nmea_round_trip_and_no_fix():
    d = get_driver("nmea")
    t0 = 1_780_000_000 * 10**9
    fixes = [GpsFix(t0 + i * 10**8, -33.5 + i * 1e-7, 151.25, 40.0, 4, 18, 0.6) for i in range(5)]
    fixes.append(GpsFix(t0 + 6 * 10**8, math.nan, math.nan, math.nan, 0, 0, math.nan))
    wire = d.encode_many(fixes)
    fr = Framer(d)
    (b,) = fr.feed(wire)
    assert len(b) == 6
    np.testing.assert_allclose(b.samples[:5, 1], [f.lat for f in fixes[:5]], atol=1e-9)
    np.testing.assert_allclose(b.samples[:5, 0], 151.25, atol=1e-9)
    assert b.samples[:5, 3].tolist() == [4] * 5 and b.samples[:5, 4].tolist() == [18] * 5
    assert np.isnan(b.samples[5, :3]).all() and b.samples[5, 3] == 0
    # the first GGA precedes the first RMC (date): its GPS time is unknown, the rest exact
    assert b.fields["gps_time_ns"][0] == -1
    np.testing.assert_array_equal(b.fields["gps_time_ns"][1:5], [f.time_ns for f in fixes[1:5]])
    assert fr.stats.crc_errors == 0 and fr.stats.bad_lines == 0
    # speed/course from the RMC of the previous epoch
    assert np.isnan(b.fields["speed_mps"][0])
    np.testing.assert_allclose(b.fields["speed_mps"][1:5], 0.0)
    vtg = sentence("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
    (b2,) = fr.feed(vtg + d.encode(fixes[0]))
    assert abs(b2.fields["speed_mps"][0] - 10.2 / 3.6) < 1e-12
    assert b2.fields["course_deg"][0] == 54.7


def test_nmea_faults_counted():
    d = get_driver("nmea")
    good = sentence("GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    bad = bytearray(good)
    bad[10] ^= 0x01  # checksum now wrong
    cut = good[:30]  # truncated: the next '$' starts inside the line
    empty = sentence("GPGGA,,,,,,0,,,,,,,,")
    other = sentence("GPGSV,1,1,00")
    fr = Framer(d)
    out = fr.feed(bytes(bad) + cut + good + b"junk line\r\n" + empty + other + good)
    assert sum(len(b) for b in out) == 3  # good, empty (no fix), good
    s = fr.stats
    assert (s.crc_errors, s.truncated, s.bad_lines, s.ignored) == (1, 1, 1, 1)


def test_ascii_md_columns_labels_and_clock_wrap():
    d = get_driver("ascii-md", columns=("seq", "micros", "amplitude", "phase"))
    frames = [AsciiMdFrame([10.5 + i, -3.0], i, 2**32 - 2000 + 1000 * i) for i in range(5)]
    fr = Framer(d)
    (b,) = fr.feed(d.encode_many(frames))
    assert b.samples.tolist() == [[10.5 + i, -3.0] for i in range(5)]
    assert b.device_time_us.tolist() == [2**32 - 2000 + 1000 * i for i in range(5)]  # unwrapped
    lab = get_driver("ascii-md", columns=("amplitude", "phase"), sep=None)
    fr2 = Framer(lab)
    (b2,) = fr2.feed(b"amp: 512 phase: -37\r\n# header\r\nfoo bar\r\namp=1 phase=2\n1 2 3\n")
    assert b2.samples.tolist() == [[512, -37], [1, 2]]
    assert fr2.stats.bad_lines == 2 and fr2.stats.ignored == 1
    # as a command line gives it (--option sep=None): white space, not the text "None"
    assert get_driver("ascii-md", sep="None").sep is None
    with pytest.raises(ConfigError, match="repeat"):
        get_driver("ascii-md", columns=("a", "a"))
