"""The native port drain (``demine._drain``): a local port's bytes read by a loop
that never holds the GIL, so a reader the interpreter keeps from running loses
nothing.  Real pseudo-terminals; the devices are other processes (a device in
this process would stop with the interpreter too); the interpreter is held with
a C call made without releasing the GIL (``ctypes.PyDLL``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap
import threading
import time
import tty

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_acquisition import Collector, wait_for

from demine import _drain
from demine.acquisition import DeviceReader

pytestmark = pytest.mark.skipif(not (_drain.AVAILABLE and hasattr(os, "openpty")),
                                reason="needs POSIX pseudo-terminals")

_LIBC = ctypes.PyDLL(ctypes.util.find_library("c"))  # (PyDLL: calls keep the GIL)


def _hold_the_interpreter(seconds: float) -> None:
    """Keep every Python thread of this process from running for ``seconds``."""
    _LIBC.usleep(int(seconds * 1e6))


def _pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(slave, False)
    return master, slave


def _device(fd: int, script: str) -> subprocess.Popen:
    """A device in another process writing to ``fd`` (the pty's master) as a
    UART does: what the port cannot take now is lost, and counted (printed)."""
    code = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        fd = {fd}
        os.set_blocking(fd, False)
        lost = 0
        def send(b):
            global lost
            try:
                n = os.write(fd, b)
            except BlockingIOError:
                n = 0
            lost += len(b) - n
    """) + textwrap.dedent(script) + "\nprint(lost)\n"
    return subprocess.Popen([sys.executable, "-c", code], pass_fds=(fd,),
                            stdout=subprocess.PIPE, text=True)


def test_bytes_come_in_order_with_the_times_they_were_read():
    master, slave = _pty()
    d = _drain.PortDrain(slave, capacity=1000)  # (a small ring: it wraps many times)
    th = threading.Thread(target=d.run, args=(0.001,), daemon=True)
    th.start()
    data = np.random.default_rng(0).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    dev = _device(master, f"""
        data = bytes.fromhex({data.hex()!r})
        at = 0
        while at < len(data):
            try:
                at += os.write(fd, data[at:at + 1500])
            except BlockingIOError:
                time.sleep(0.001)
                continue
            time.sleep(0.002)
    """)
    got, ends_all, times_all = [], [], []
    t0 = time.time_ns()
    end = time.monotonic() + 30
    while sum(map(len, got)) < len(data) and time.monotonic() < end:
        b, ends, times = d.take(700)
        if b:
            assert ends[-1] == len(b) and np.all(np.diff(ends) > 0) and ends[0] > 0
            got.append(b)
            ends_all.append(ends)
            times_all.append(times)
        time.sleep(0.003)
    assert dev.wait(30) == 0
    d.stop()
    th.join()
    os.close(master)
    os.close(slave)
    assert b"".join(got) == data
    t = np.concatenate(times_all)
    assert np.all(np.diff(t) >= 0) and t[0] >= t0 and t[-1] <= time.time_ns()
    assert d.full_waits > 0  # a 1000-byte ring waited for the reader
    assert d.error == 0 and d.pending == 0


def test_a_hung_up_port_ends_the_loop_after_its_bytes():
    master, slave = _pty()
    d = _drain.PortDrain(slave)
    th = threading.Thread(target=d.run, daemon=True)
    th.start()
    os.write(master, b"last words")
    time.sleep(0.1)
    os.close(master)  # (the device goes: a pty's reads fail with EIO)
    th.join(5)
    assert not th.is_alive()
    assert d.error != 0
    assert d.take(100)[0] == b"last words"
    os.close(slave)


@settings(deadline=None, max_examples=20)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=30),
       limits=st.lists(st.integers(1, 5000), min_size=1, max_size=10),
       capacity=st.integers(1, 4096))
def test_whatever_the_ring_and_the_takes_every_byte_comes_once_in_order(sizes, limits,
                                                                        capacity):
    """Reads of any size into a ring of any capacity, taken in pieces of any
    size: the bytes in order, each piece's read ends within it."""
    master, slave = _pty()
    d = _drain.PortDrain(slave, capacity=capacity, max_reads=3)
    th = threading.Thread(target=d.run, args=(0.0,), daemon=True)
    th.start()
    rng = np.random.default_rng(len(sizes))
    data = rng.integers(0, 256, sum(sizes), dtype=np.uint8).tobytes()
    got = []

    def write():
        at = 0
        for n in sizes:
            while n:
                try:
                    k = os.write(master, data[at:at + n])
                except BlockingIOError:
                    time.sleep(0.0005)
                    continue
                at, n = at + k, n - k

    w = threading.Thread(target=write)
    w.start()
    end = time.monotonic() + 30
    i = 0
    while sum(map(len, got)) < len(data) and time.monotonic() < end:
        b, ends, times = d.take(limits[i % len(limits)])
        i += 1
        if b:
            assert len(b) <= limits[(i - 1) % len(limits)]
            assert ends[-1] == len(b) and np.all(np.diff(ends) > 0)
            assert times.size == ends.size and np.all(np.diff(times) >= 0)
            got.append(b)
    w.join()
    d.stop()
    th.join()
    os.close(master)
    os.close(slave)
    assert b"".join(got) == data


@pytest.mark.parametrize("native", [True, False])
def test_a_reader_held_half_a_second_loses_no_frame(native):
    """A radar's 400 frames/s (1 kB each) from another process while this
    interpreter is held for 0.5 s, twice: the port holds about 20 KiB (50 ms),
    so the Python reader alone loses frames in the kernel, and with the native
    drain none, each with the time it arrived (not when the reader ran)."""
    master, slave = _pty()
    path = os.ttyname(slave)
    col = Collector()
    r = DeviceReader(path, "gpr", on_frames=col, native_drain=native, stall_timeout=10,
                     poll_interval=0.01).start()
    wait_for(lambda: r.stats.connected, what="connected")
    n = 800
    dev = _device(master, f"""
        from demine.drivers import get_driver
        d = get_driver("gpr")
        k = np.arange({n})
        frames = [d.encode_arrays(k[i:i + 1], k[i:i + 1] * 2500,
                                  np.full((1, 256), i, np.int16)) for i in range({n})]
        sys.stdout.write("go\\n"); sys.stdout.flush()
        t0 = time.monotonic()
        for i, f in enumerate(frames):
            time.sleep(max(0.0, t0 + i / 400 - time.monotonic()))
            send(f)
    """)
    assert dev.stdout.readline() == "go\n"
    time.sleep(0.4)
    _hold_the_interpreter(0.5)
    time.sleep(0.3)
    _hold_the_interpreter(0.5)
    lost = int(dev.communicate(timeout=30)[0])
    if native:
        wait_for(lambda: len(col.seqs) == n, what="every frame")
    else:
        time.sleep(0.5)
    r.stop()
    os.close(master)
    os.close(slave)
    seqs = col.seqs
    if not native:
        # (the contrast: the port overran while the interpreter was held)
        assert lost > 0 and len(seqs) < n and r.stats.sequence_gaps > 0
        return
    assert lost == 0
    assert seqs == list(range(n))
    assert r.stats.sequence_gaps == 0
    # the frames read while the interpreter was held keep their arrival times:
    # host times follow the device's 2.5 ms steps, no 0.5 s jump then a burst
    host = np.concatenate([b.host_time_ns for b in col.batches]).astype(np.int64)
    assert np.diff(host).max() < 0.25e9
