"""Simulated devices on pseudo-terminals, read through pyserial and decoded by the drivers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import serial

from demine.cli import main
from demine.drivers import get_driver
from demine.drivers.base import FrameBatch
from demine.errors import ConfigError
from demine.framing import Framer
from demine.recording import Recording
from demine.simulate import SimulatedDevice, simulate_lane

STREAM = {"emi-pi": "emi", "gpr": "gpr", "nmea": "gps", "ascii-md": "cw"}


def _read_all(port, driver: str, done, n_expected: int, timeout: float = 30.0):
    """Read a pty with pyserial until n_expected frames are decoded (or the device is done
    and nothing more comes).  ``port``: a path, or a port already open (closed here)."""
    ser = serial.serial_for_url(port, timeout=0.05) if isinstance(port, str) else port
    framer = Framer(get_driver(driver))
    batches: list[FrameBatch] = []
    got = 0
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end and got < n_expected:
            data = ser.read(max(1, ser.in_waiting))
            if data:
                new = framer.feed(data)
                batches += new
                got += sum(len(b) for b in new)
            elif done():
                break
    finally:
        ser.close()
    batches += framer.flush()
    assert batches, f"no frame read from {port}"
    return FrameBatch.concatenate(batches), framer.stats


@contextlib.contextmanager
def _opened_then_started(dev: SimulatedDevice):
    """The device's port opened by pyserial (which flushes its input) before the
    device sends anything, so no frame can fall into that flush, however late the
    reader's thread runs (``wait_reader`` gives a reader 0.2 s to flush)."""
    try:
        assert os.path.exists(dev.port)
        ser = serial.serial_for_url(dev.port, timeout=0.05)
        dev.start()
        yield dev, ser
    finally:
        dev.stop()


@pytest.mark.parametrize("driver", ["emi-pi", "gpr", "nmea", "ascii-md"])
def test_device_frames_decode_to_the_simulated_arrays(driver):
    dur = 2.0
    ref = simulate_lane("battle-area", dur, seed=11,
                        streams=[STREAM[driver]]).streams[STREAM[driver]]
    n = len(ref["time"])
    with _opened_then_started(SimulatedDevice(driver, "battle-area", seed=11, duration=dur,
                                              realtime=False)) as (dev, ser):
        batch, stats = _read_all(ser, driver, lambda: dev.wait(0), n)
        assert dev.error is None
    assert len(batch) == n
    assert stats.crc_errors == 0 and stats.sequence_gaps == 0 and stats.bytes_skipped == 0
    if driver == "nmea":
        cols = {c: batch.samples[:, i] for i, c in enumerate(get_driver("nmea").columns)}
        np.testing.assert_allclose(cols["lat"], ref["lat"], atol=1e-9)
        np.testing.assert_allclose(cols["lon"], ref["lon"], atol=1e-9)
        np.testing.assert_allclose(cols["alt"], ref["alt"], atol=1e-3)
        np.testing.assert_array_equal(cols["fix_quality"], ref["fix_quality"])
        # the GPS time (from the date in ZDA/RMC) is the acquisition time
        np.testing.assert_array_equal(batch.device_time_us * 1000, ref["time"])
    elif driver == "ascii-md":  # text: amplitude and phase printed to 7 decimals
        np.testing.assert_allclose(batch.samples, ref["samples"], rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(batch.samples, ref["samples"])
        np.testing.assert_array_equal(batch.sequence, ref["sequence"])
        np.testing.assert_array_equal(batch.device_time_us, ref["device_time_us"])
        if driver == "gpr":
            np.testing.assert_array_equal(batch.fields["encoder"], ref["encoder"])
            np.testing.assert_array_equal(batch.fields["stacking"], ref["stacking"])
    assert dev.frames_sent == n


def test_ascii_md_device_with_sequence_and_clock_columns():
    cols = ["seq", "millis", "amplitude", "phase"]
    ref = simulate_lane("benign-soil", 1.0, seed=2, streams=["cw"]).streams["cw"]
    with SimulatedDevice("ascii-md", "benign-soil", seed=2, duration=1.0, realtime=False,
                         wait_reader=10.0, driver_options={"columns": cols}) as dev:
        ser = serial.serial_for_url(dev.port, timeout=0.05)
        framer = Framer(get_driver("ascii-md", columns=cols))
        batches = []
        end = time.monotonic() + 20
        while sum(len(b) for b in batches) < 50 and time.monotonic() < end:
            batches += framer.feed(ser.read(max(1, ser.in_waiting)))
        ser.close()
    batch = FrameBatch.concatenate(batches)
    np.testing.assert_array_equal(batch.sequence, ref["sequence"])
    np.testing.assert_array_equal(batch.device_time_us, ref["device_time_us"] // 1000 * 1000)
    np.testing.assert_allclose(batch.samples, ref["samples"], rtol=1e-6, atol=1e-6)


def test_realtime_device_paces_frames():
    with SimulatedDevice("emi-pi", "empty-lane", seed=1, duration=3.0) as dev:
        ser = serial.serial_for_url(dev.port, timeout=0.05)
        framer = Framer(get_driver("emi-pi"))
        got = 0
        t0 = time.monotonic()
        while (time.monotonic() - t0 < 0.3 or got == 0) and time.monotonic() - t0 < 10:
            got += sum(len(b) for b in framer.feed(ser.read(max(1, ser.in_waiting))))
        elapsed = time.monotonic() - t0
        ser.close()
    assert got > 0
    # after ~0.3 s a real-time device has sent about 300 of its 3000 readings, far from all
    assert got < 1000 * elapsed + 1000
    assert dev.wall_clock  # real-time devices stamp wall-clock UTC


def test_device_rejects_unknown_driver_and_bad_options():
    with pytest.raises(ConfigError, match="sonar"):
        SimulatedDevice("sonar", "empty-lane")
    with pytest.raises(ConfigError, match="duration"):
        SimulatedDevice("emi-pi", "empty-lane", duration=0)


def test_cli_serves_devices_on_ptys():
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "demine", "simulate", "empty-lane", "--device", "emi-pi",
         "--device", "nmea", "--duration", "1", "--fast", "--seed", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ports = dict(proc.stdout.readline().split() for _ in range(2))
        assert set(ports) == {"emi-pi", "nmea"}
        emi, _ = _read_all(ports["emi-pi"], "emi-pi", lambda: proc.poll() is not None, 1000)
        gps, _ = _read_all(ports["nmea"], "nmea", lambda: proc.poll() is not None, 10)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    ref = simulate_lane("empty-lane", 1.0, seed=2)
    np.testing.assert_array_equal(emi.samples, ref.emi["samples"])
    assert len(gps) == 10


def test_cli_sigterm_stops_cleanly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "demine", "simulate", "benign-soil", "--device", "gpr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gpr /dev/")
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_writes_a_recording_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "lane.h5"
    assert main(["simulate", "empty-lane", "--out", str(out), "--duration", "1"]) == 0
    with Recording(out) as rec:
        assert rec.streams["emi"].n_frames == 1000
        assert rec.streams["gpr"].n_frames == 400
    out2 = tmp_path / "cw.h5"
    assert main(["simulate", "empty-lane", "--out", str(out2), "--duration", "2",
                 "--streams", "cw,gps"]) == 0
    with Recording(out2) as rec:
        assert set(rec.streams) == {"cw", "gps"}
        assert rec.streams["cw"].samples.shape == (100, 2)
    assert main(["simulate", "empty-lane", "--out", str(tmp_path / "z.h5"), "--streams",
                 "sonar"]) == 2
    assert main(["simulate", "no-such-scene", "--device", "emi-pi"]) == 2
    assert "no-such-scene" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[lane]\nwidth = 1\nlength = 2\n[soil]\nviscosity = 'x'\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "x.h5")]) == 2
    assert "viscosity" in capsys.readouterr().err
    assert main(["simulate", "--list"]) == 0
    assert "benign-soil" in capsys.readouterr().out


def test_injected_faults_are_counted_exactly_by_the_framer():
    faults = {"drop": 0.02, "duplicate": 0.02, "corrupt": 0.02}
    with _opened_then_started(SimulatedDevice("emi-pi", "benign-soil", seed=5, duration=2.0,
                                              realtime=False, faults=faults)) as (dev, ser):
        batch, stats = _read_all(ser, "emi-pi", lambda: dev.wait(0), 10**9)
    inj = dev.injected
    assert inj["drop"] > 0 and inj["duplicate"] > 0 and inj["corrupt"] > 0
    assert stats.crc_errors == inj["corrupt"]
    assert stats.duplicates == inj["duplicate"]
    assert len(batch) == 2000 - inj["drop"] - inj["corrupt"]
    assert stats.frames_missing == inj["drop"] + inj["corrupt"]
    # every frame that arrived intact is the simulated one
    ref = simulate_lane("benign-soil", 2.0, seed=5, streams=["emi"]).emi
    np.testing.assert_array_equal(batch.samples, ref["samples"][batch.sequence])
    with pytest.raises(ConfigError, match="fault"):
        SimulatedDevice("emi-pi", "empty-lane", faults={"explode": 0.1})


def test_unplug_and_replug_behind_a_stable_link(tmp_path):
    link = tmp_path / "ttyEMI"
    dev = SimulatedDevice("emi-pi", "empty-lane", seed=1, duration=30.0, link=link)
    try:
        dev.start()
        assert link.is_symlink() and os.path.realpath(link) == dev.port
        framer = Framer(get_driver("emi-pi"))
        ser = serial.serial_for_url(str(link), timeout=0.05)
        seqs: list[np.ndarray] = []
        end = time.monotonic() + 10
        while sum(len(s) for s in seqs) < 100 and time.monotonic() < end:
            seqs += [b.sequence for b in framer.feed(ser.read(max(1, ser.in_waiting)))]
        first_port = dev.port
        dev.unplug()
        assert not dev.plugged and not link.exists()
        with pytest.raises((serial.SerialException, OSError)):
            for _ in range(100):  # the reader notices the cable is out
                ser.read(max(1, ser.in_waiting))
        ser.close()
        time.sleep(0.2)
        dev.replug()
        assert dev.plugged and os.path.realpath(link) == dev.port
        ser = serial.serial_for_url(str(link), timeout=0.05)
        after: list[np.ndarray] = []
        end = time.monotonic() + 10
        while sum(len(s) for s in after) < 100 and time.monotonic() < end:
            after += [b.sequence for b in framer.feed(ser.read(max(1, ser.in_waiting)))]
        ser.close()
    finally:
        dev.stop()
    before = np.concatenate(seqs)
    resumed = np.concatenate(after)
    assert len(before) >= 100 and len(resumed) >= 100
    # the device kept running: a gap in the sequence, no repeat
    assert resumed[0] > before[-1] + 100
    assert dev.bytes_dropped > 0
    assert first_port is not None and not link.exists()  # stop() removes the link


def test_a_device_late_to_compute_its_frames_drops_none_a_steady_reader_takes():
    """The device's backlog allowance counts the time its frames wait on a full
    pty (a reader not keeping up), not the time the simulation took to compute
    them.  Before, a host slow to compute the first blocks (the demo's start-up
    on a busy machine) made the first write late and larger than the pty
    holds (20 KiB), and what the pty had not taken within 20 ms was dropped
    if older than the allowance, as if the reader had overrun (the demo lost
    29 radar frames so), though the reader was idle.  Here the computation is
    1.5 s late against an allowance of 0.5 s, and the reader, emptying the
    port every 30 ms, takes the 1.5 s of readings in a fraction of that."""
    dev = SimulatedDevice("emi-pi", "battle-area", seed=3, duration=2.5, wall_clock=False,
                          max_backlog=0.5)
    blocks = dev.sim.iter_blocks

    def slow_blocks(stream, duration=None):
        for i, block in enumerate(blocks(stream, duration)):
            if i < 2:
                time.sleep(0.75)  # a busy host computing the forward model
            yield block

    dev.sim.iter_blocks = slow_blocks
    framer = Framer(get_driver("emi-pi"))
    batches: list[FrameBatch] = []
    with _opened_then_started(dev) as (dev, ser):
        end = time.monotonic() + 20
        while sum(len(b) for b in batches) < 2500 and time.monotonic() < end:
            while data := ser.read(ser.in_waiting):
                batches += framer.feed(data)
            time.sleep(0.03)
        ser.close()
        assert dev.wait(10) and dev.error is None
    assert dev.bytes_dropped == 0
    assert framer.stats.sequence_gaps == 0
    np.testing.assert_array_equal(FrameBatch.concatenate(batches).sequence, np.arange(2500))


def test_a_device_writes_on_while_its_reader_takes_bytes():
    """A write gives up only once the pty has taken nothing for its stall time
    (20 ms in real time), not 20 ms after it began: a burst larger than the
    pty holds (a device back from a busy host's pause) goes to a reader that
    keeps taking it, here 4 KiB every 10 ms, instead of being dropped."""
    dev = SimulatedDevice("gpr", "battle-area", seed=3, duration=1.0, wall_clock=False)
    ser = serial.serial_for_url(dev.port, timeout=0)
    got = bytearray()
    done = False

    def read():
        while not done:
            got.extend(ser.read(4096))
            time.sleep(0.01)

    th = threading.Thread(target=read)
    th.start()
    try:
        burst = bytes(range(256)) * 800  # 200 KiB, ten times what the pty holds
        t0 = time.monotonic()
        sent = dev._write(memoryview(burst), 0.2)  # (20 ms in real time; 0.2 for a loaded host)
        took = time.monotonic() - t0
        assert sent == len(burst), (sent, took)
        time.sleep(0.3)
        assert bytes(got) == burst
        # but no longer than the device's backlog allowance: a reader slower
        # than the device falls behind, and what it has not taken is dropped
        t1 = time.monotonic()
        cut = dev._write(memoryview(burst), 0.02, 0.1)
        assert 0 < cut < len(burst) and time.monotonic() - t1 < 0.5
    finally:
        done = True
        th.join()
        ser.close()
        dev.stop()
