"""``demine drivers --probe``: the frame rate leaves out what was buffered before the probe."""

from __future__ import annotations

import json
import os
import termios
import threading
import time
import tty

import numpy as np

from demine.cli import main
from demine.drivers import get_driver

RATE = 100  # frames per second the device streams
BACKLOG = 500  # frames it holds (its own FIFO) when the port is opened


def _device_with_a_backlog(stop: threading.Event) -> tuple[str, threading.Thread]:
    """An emi-pi device on a real pty: once a reader has opened (and flushed) the
    port, it sends the BACKLOG frames it buffered meanwhile at once, then RATE
    frames per second."""
    d = get_driver("emi-pi")
    m, s = os.openpty()
    tty.setraw(s)
    os.set_blocking(m, False)
    initial = termios.tcgetattr(s)

    def frames(first: int, n: int) -> bytes:
        seq = np.arange(first, first + n)
        return d.encode_arrays(seq, seq * 10_000, np.zeros((n, 16), np.float32))

    def run() -> None:
        try:
            while not stop.is_set() and termios.tcgetattr(s) == initial:
                stop.wait(0.005)
            stop.wait(0.2)  # pyserial flushes its input right after configuring the port
            pending, seq = frames(0, BACKLOG), BACKLOG
            due = time.monotonic()
            while not stop.is_set():
                if time.monotonic() >= due:  # 10 frames every 0.1 s
                    pending += frames(seq, RATE // 10)
                    seq += RATE // 10
                    due += 0.1
                try:
                    pending = pending[os.write(m, pending):]
                except BlockingIOError:
                    pass  # the pty is full: the rest later, never cut
                stop.wait(0.005)
        finally:
            os.close(m)
            os.close(s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return os.ttyname(s), t


def test_probe_rate_leaves_out_the_backlog_of_a_device(capsys):
    stop = threading.Event()
    path, t = _device_with_a_backlog(stop)
    try:
        rc = main(["drivers", "emi-pi", "--probe", path, "--seconds", "2", "--json"])
    finally:
        stop.set()
        t.join(timeout=10)
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] > BACKLOG  # every frame read is counted ...
    assert r["sequence_gaps"] == 0 and r["crc_errors"] == 0
    # ... but the backlog is not in the rate: counted, it would be > (500 + 150) / 2
    assert 0.4 * RATE < r["frames_per_s"] < 2 * RATE
    assert 0 < r["rate_window_s"] <= 2


def test_probe_text_says_how_long_the_rate_was_measured(capsys):
    stop = threading.Event()
    path, t = _device_with_a_backlog(stop)
    try:
        rc = main(["drivers", "emi-pi", "--probe", path, "--seconds", "1"])
    finally:
        stop.set()
        t.join(timeout=10)
    assert rc == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{path} with emi-pi at 921600 baud for 1 s: ")
    assert "/s, measured over " in first
