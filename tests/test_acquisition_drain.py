"""Readers that wake on a shared grid and drain a full tty buffer in one go
(real pseudo-terminals, real pyserial; no timed assertions)."""

from __future__ import annotations

import os
import threading
import tty

import numpy as np
import pytest
from test_acquisition import Collector, PtyPort, emi_wire, start_reader, wait_for

from demine.acquisition import DeviceReader

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")


@pytest.fixture
def port(tmp_path):
    p = PtyPort(tmp_path)
    yield p
    p.close()


def _pty_capacity() -> int:
    """Bytes a pseudo-terminal takes in 1 KiB writes before a writer must wait for
    its reader (the 4 KiB line-discipline buffer plus the queue behind it;
    kernel-dependent, and some kernels take less in larger writes)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        os.set_blocking(master, False)
        total = 0
        try:
            while True:
                total += os.write(master, bytes(1024))
        except BlockingIOError:
            return total
    finally:
        os.close(master)
        os.close(slave)


def test_backlog_beyond_the_tty_buffer_is_framed_at_once(port):
    """Bytes queued behind a full 4 KiB tty buffer are read in the same wake-up
    and framed together: every frame once, in order, in one batch of several tty
    buffers' worth.

    The backlog is queued while the reader is held in its consumer callback
    (delivering a first frame), so all of it is in the pty before the reader
    reads again: the batches depend neither on how the writer and the reader
    are scheduled nor (the drain reads until the port is empty) on how the
    kernel refills the tty buffer.
    """
    held, release = threading.Event(), threading.Event()
    col = Collector()

    def consume(batch):
        col(batch)
        if len(col.batches) == 1:
            held.set()
            release.wait(60)

    r = DeviceReader(port.path, "emi-pi", on_frames=consume, poll_interval=0.25, align=True,
                     stall_timeout=5.0, backoff=(0.01, 0.1)).start()
    frame = len(emi_wire(np.arange(1))[1])
    n = min(600, (_pty_capacity() - 1024) // frame)
    seqs = np.arange(n)
    _, wire, samples = emi_wire(seqs)
    assert len(wire) - frame >= 3 * 4096, f"this kernel's pty holds too little ({len(wire)} B)"
    try:
        wait_for(lambda: r.stats.connected, what="reader connected")
        port.write(wire[:frame])  # the reader delivers it and waits in consume()
        wait_for(held.is_set, what="the first frame delivered")
        # in the pieces _pty_capacity measured with (a kernel may take less in
        # larger writes): it all fits, so this returns at once
        port.write(wire[frame:], chunk=1024)
        release.set()
        wait_for(lambda: len(col.seqs) >= seqs.size, what="all frames")
    finally:
        release.set()
        r.stop()
    assert col.seqs == seqs.tolist()
    got = np.concatenate([b.samples for b in col.batches])
    np.testing.assert_array_equal(got, samples)
    assert r.stats.bytes_read == len(wire)
    # without the drain, each wake-up would frame at most one 4 KiB tty buffer
    # (>= 3 batches for the backlog); with it, the backlog is one batch
    assert [len(b.sequence) for b in col.batches] == [1, n - 1]


def test_aligned_reader_keeps_every_frame_of_a_steady_stream(port):
    """Polling on the grid (a period longer than the default) loses nothing."""
    r, col = start_reader(port, "emi-pi", poll_interval=0.05, align=True)
    seqs = np.arange(2000)
    _, wire, _ = emi_wire(seqs, seed=1)
    rng = np.random.default_rng(2)
    try:
        port.write(wire, chunk=3000, rng=rng)
        wait_for(lambda: len(col.seqs) >= seqs.size, what="all frames")
    finally:
        r.stop()
    assert col.seqs == seqs.tolist()
    assert r.stats.crc_errors == 0 and r.stats.truncated == 0


def test_clock_kernels_match_numpy():
    """The compiled per-read clock arithmetic is ClockFit's NumPy arithmetic."""
    from demine import _framing

    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 50))
        dev = np.cumsum(rng.integers(-50, 3000, n)).astype(np.int64) + 10**12
        host = (dev * 1000 + rng.integers(0, 5_000_000, n)).astype(np.int64) + 10**18
        ref_dev, ref_host = int(dev[0]) - 7, int(host[0]) - 11
        a, b = float(rng.normal(0, 1e-3)), float(rng.normal(0, 1e-4))
        for fitted in (False, True):
            x = (dev - ref_dev) * 1e-6
            r = (host - ref_host) * 1e-9 - x
            off = r - (a + b * x) if fitted else r - r[0]
            got = _framing.clock_scan(dev, host, ref_dev, ref_host, a, b, fitted)
            j = int(np.argmin(r))
            want = (off.min(), off.max(), np.diff(x).min() if n > 1 else 0.0, j, x[j], r[j],
                    x[0], x[-1])
            assert got == tuple(float(v) if k != 3 else v for k, v in enumerate(want))
        out = np.empty(n, dtype=np.int64)
        _framing.clock_map(dev, ref_dev, ref_host, a, b, out)
        d = (dev - ref_dev) * (1000.0 * (1.0 + b)) + a * 1e9
        np.testing.assert_array_equal(out, ref_host + np.rint(d).astype(np.int64))


def test_stop_reads_what_the_port_still_holds(port):
    """A reader on a long grid, stopped between two wake-ups, still delivers
    every frame already in the port's buffer."""
    r, col = start_reader(port, "emi-pi", poll_interval=30.0, align=True)
    seqs = np.arange(150)  # ~12 KB: less than a pty holds, so writing never waits
    _, wire, _ = emi_wire(seqs, seed=3)
    try:
        port.write(wire[:1000])
        wait_for(lambda: r.stats.bytes_read > 0, what="the first read")
        port.write(wire[1000:])  # the reader sleeps until its next tick meanwhile
    finally:
        r.stop()
    assert col.seqs == seqs.tolist()
    assert r.stats.bytes_read == len(wire)
