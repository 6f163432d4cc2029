"""The end of a simulated device's run: prompt with nobody listening, complete for a reader."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import serial

from demine.drivers import get_driver
from demine.framing import Framer
from demine.simulate import SimulatedDevice


def _drain_in_thread(dev: SimulatedDevice, timeout: float) -> threading.Thread:
    t = threading.Thread(target=dev.drain, args=(timeout,), daemon=True)
    t.start()
    return t


def test_drain_returns_when_nobody_has_the_port_open():
    dev = SimulatedDevice("nmea", "empty-lane", seed=1, duration=0.5, realtime=False)
    try:
        dev.start()
        assert dev.wait(60)
        for _ in range(1000):  # (the last bytes may still be on their way in the pty)
            if dev.unread_bytes() > 0:
                break
            time.sleep(0.01)
        assert dev.unread_bytes() > 0  # sent into the pty, read by nobody
        t = _drain_in_thread(dev, 600.0)
        t.join(60)  # (generous: it returns at once; 600 s would be the old wait's kind)
        assert not t.is_alive(), "drain kept waiting for a port nobody has open"
    finally:
        dev.stop()


def test_drain_waits_for_a_reader_that_holds_the_port():
    """A reader that has the port open gets every frame, even one reading slowly
    after the device has sent its last byte into the pty."""
    dev = SimulatedDevice("emi-pi", "empty-lane", seed=4, duration=1.0, realtime=False)
    framer = Framer(get_driver("emi-pi"))
    draining = threading.Event()
    frames = [0]
    ser = serial.serial_for_url(dev.port, timeout=0.01)

    def read() -> None:
        try:
            # as fast as the device sends, but the last frames are left in the pty
            # (read in small pieces near the end): the device ends with them unread
            # (reading until the device had ended could leave nothing unread: the
            # precondition below then failed under load)
            while frames[0] < 990:
                data = ser.read(4096 if frames[0] < 900 else 32)
                frames[0] += sum(len(b) for b in framer.feed(data))
            draining.wait(60)
            while frames[0] < 1000:  # the rest, slowly: small reads
                data = ser.read(256)
                if not data and not dev.plugged:
                    break
                frames[0] += sum(len(b) for b in framer.feed(data))
        except serial.SerialException:
            pass  # the port closed under the reader: frames lost, seen below
        finally:
            ser.close()

    reader = threading.Thread(target=read, daemon=True)
    try:
        dev.start()
        reader.start()
        assert dev.wait(60)
        # the last bytes wait in the pty (the kernel moves what the device wrote
        # to the reader's side in its own time: under load, after the device ended)
        for _ in range(1000):
            if dev.unread_bytes() > 0:
                break
            time.sleep(0.01)
        assert dev.unread_bytes() > 0
        draining.set()
        dev.drain(600.0)
    finally:
        dev.stop()
    reader.join(60)
    assert frames[0] == 1000


def test_cli_device_with_nobody_listening_ends_and_reports():
    proc = subprocess.run(
        [sys.executable, "-m", "demine", "simulate", "empty-lane", "--device", "emi-pi",
         "--device", "nmea", "--duration", "0.5"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ports = [line.split() for line in proc.stdout.splitlines()]
    assert [p[0] for p in ports] == ["emi-pi", "nmea"]
    assert all(p[1].startswith("/dev/") for p in ports)
    err = proc.stderr.splitlines()
    assert err[0].startswith("emi-pi: ") and " frames, " in err[0]
    assert err[1].startswith("nmea: 5 frames, ")


def test_fast_device_without_a_reader_ends_with_an_error():
    """A device sending as fast as it is read, whose port nobody opens, ends
    with an error naming the port (it filled the pty and then waited for ever)."""
    from demine.errors import ConfigError

    dev = SimulatedDevice("emi-pi", "empty-lane", seed=1, duration=5.0, realtime=False,
                          wait_reader=0.3)
    try:
        dev.start()
        assert dev.wait(60), "a fast device without a reader never ended"
        assert isinstance(dev.error, ConfigError)
        assert dev.port in str(dev.error) and "no reader" in str(dev.error)
        assert dev.frames_sent == 0
    finally:
        dev.stop()


def test_simulate_fast_without_a_reader_exits_2(monkeypatch, capsys):
    import demine.cli.simulate as cli_simulate
    from demine.cli import main

    monkeypatch.setattr(cli_simulate, "FAST_WAIT_READER", 0.3)
    rc = main(["simulate", "empty-lane", "--device", "emi-pi", "--duration", "5", "--fast"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "emi-pi: no reader opened" in err
