"""Read path through the real pyserial stack on pseudo-terminals (os.openpty).

Every fault of the wire is injected on a pty and the exact outcome asserted: every
intact frame delivered once, every corrupt one counted, nothing delivered before a
fault lost.  Waits are bounded (a test fails instead of hanging) but nothing here
asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tty

import numpy as np
import pytest
from _wirefaults import inject, plan_faults, uart_resample

from demine.acquisition import ClockFit, DeviceReader
from demine.drivers import get_driver
from demine.drivers.nmea import GpsFix

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")


class PtyPort:
    """A simulated USB-serial adapter: a pty whose slave is reached by a stable path
    (like /dev/serial/by-id/...), that can be unplugged and plugged back."""

    def __init__(self, tmp_path, name="ttyDEMO"):
        self.path = str(tmp_path / name)
        self.master = self.slave = None
        self.plug()

    def plug(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)  # write() waits with a deadline, never hangs
        tmp = self.path + ".new"
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self):
        # The stable path goes first, as a by-id link does when the adapter is
        # pulled: left in place, it named a /dev/pts number that any process
        # could be given next, and a reader retrying it reconnected to that
        # stranger's pty (a loaded run with other ptys in use: reconnects 2,
        # "timed out waiting for reconnect").
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def write(self, data: bytes, chunk: int | None = None, rng=None):
        """Write everything (waiting while the reader catches up), in random pieces.

        Fails after 30 s without progress instead of hanging on a reader that died.
        """
        import select

        view = memoryview(data)
        stalled = time.monotonic() + 30.0
        while view:
            n = len(view) if chunk is None else int(rng.integers(1, chunk)) if rng else chunk
            try:
                k = os.write(self.master, view[:n])
            except BlockingIOError:
                if time.monotonic() > stalled:
                    raise AssertionError("pty reader took no data for 30 s") from None
                select.select([], [self.master], [], 0.1)
                continue
            view = view[k:]
            stalled = time.monotonic() + 30.0

    def close(self):
        self.unplug()


@pytest.fixture
def port(tmp_path):
    p = PtyPort(tmp_path)
    yield p
    p.close()


def wait_for(cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Collector:
    def __init__(self):
        self.batches = []
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.batches.append(batch)

    @property
    def seqs(self):
        with self.lock:
            return [s for b in self.batches for s in b.sequence.tolist()]


def start_reader(port, driver, **kw):
    col = Collector()
    kw.setdefault("stall_timeout", 5.0)
    kw.setdefault("backoff", (0.01, 0.1))
    r = DeviceReader(port.path, driver, on_frames=col, **kw).start()
    wait_for(lambda: r.stats.connected, what="reader connected")
    return r, col


def stall_kinds(events):
    """The "stall" and "resumed" events of a reader, in order."""
    return [e.kind for e in events if e.kind in ("stall", "resumed")]


def one_stall_per_silence(kinds):
    """Stalls and resumes alternate, a stall first: one event per silence, not
    one per empty read (whatever the scheduling made of the silences)."""
    return (kinds[0::2] == ["stall"] * len(kinds[0::2])
            and kinds[1::2] == ["resumed"] * len(kinds[1::2]))


def drain(reader, n_bytes):
    wait_for(lambda: reader.stats.bytes_read >= n_bytes, what=f"{n_bytes} bytes read")


def emi_wire(seqs, n_gates=16, seed=0):
    d = get_driver("emi-pi")
    seqs = np.asarray(seqs)
    rng = np.random.default_rng(seed)
    samples = rng.normal(size=(seqs.size, n_gates)).astype(np.float32)
    return d, d.encode_arrays(seqs, seqs * 1000, samples), samples


# ----------------------------------------------------------------------------------------
def test_clean_streams_every_driver(port, tmp_path):
    """Each driver through a pty: all frames, in order, with both timestamps."""
    rng = np.random.default_rng(0)
    d, wire, samples = emi_wire(np.arange(500))
    r, col = start_reader(port, d)
    port.write(wire, chunk=700, rng=rng)
    drain(r, len(wire))
    r.stop()
    assert col.seqs == list(range(500))
    got = np.concatenate([b.samples for b in col.batches])
    np.testing.assert_array_equal(got, samples)
    host = np.concatenate([b.host_time_ns for b in col.batches])
    mapped = np.concatenate([b.time_ns for b in col.batches])
    assert np.all(np.diff(host) >= 0) and np.all(mapped > 0)
    assert r.stats.frames == 500 and r.stats.bytes_skipped == 0 and r.error is None

    g = get_driver("gpr")
    tr = rng.integers(-2**31, 2**31 - 1, (60, 1024), dtype=np.int32)
    wire = g.encode_arrays(np.arange(60), np.arange(60) * 2500, tr, encoder=np.arange(60))
    p2 = PtyPort(tmp_path, "ttyGPR")
    r, col = start_reader(p2, g)
    p2.write(wire, chunk=5000, rng=rng)
    drain(r, len(wire))
    r.stop()
    p2.close()
    assert col.seqs == list(range(60))
    np.testing.assert_array_equal(np.concatenate([b.samples for b in col.batches]), tr)

    n = get_driver("nmea")
    t0 = time.time_ns()
    wire = n.encode_many(GpsFix(t0 + i * 10**8, 45 + i * 1e-6, 7.5, 300.0) for i in range(30))
    p3 = PtyPort(tmp_path, "ttyGPS")
    r, col = start_reader(p3, n)
    p3.write(wire, chunk=40, rng=rng)
    drain(r, len(wire))
    r.stop()
    p3.close()
    lat = np.concatenate([b.samples[:, 1] for b in col.batches])
    np.testing.assert_allclose(lat, 45 + np.arange(30) * 1e-6, atol=1e-9)

    a = get_driver("ascii-md", columns=("millis", "amplitude", "phase"))
    lines = b"".join(b"%d,%d,%d\r\n" % (i, 500 + i, -i) for i in range(200))
    p4 = PtyPort(tmp_path, "ttyACM")
    r, col = start_reader(p4, a)
    p4.write(lines, chunk=33, rng=rng)
    drain(r, len(lines))
    r.stop()
    p4.close()
    amp = np.concatenate([b.samples[:, 0] for b in col.batches])
    np.testing.assert_array_equal(amp, 500 + np.arange(200))


@pytest.mark.parametrize("kind", ["emi-pi", "gpr"])
def test_every_fault_through_pty_exact_counts(port, kind):
    """garbage, bit flips, truncation, dropped bytes, duplicates, lost frames."""
    rng = np.random.default_rng(42 if kind == "emi-pi" else 43)
    if kind == "emi-pi":
        d, wire, _ = emi_wire(np.arange(400))
        L, header = len(wire) // 400, 4
        frames = [wire[i * L : (i + 1) * L] for i in range(400)]
    else:
        d = get_driver("gpr")
        tr = rng.integers(-5000, 5000, (150, 512), dtype=np.int16)
        wire = d.encode_arrays(np.arange(150), np.arange(150) * 2500, tr)
        L, header = len(wire) // 150, 6
        frames = [wire[i * L : (i + 1) * L] for i in range(150)]
    plan = plan_faults(rng, len(frames), p_fault=0.4)
    assert {"flip", "trunc", "drop", "dup", "garbage", "lost"} <= set(plan)
    bad_wire, exp = inject(frames, plan, rng, 0xA5, header, payload_start=header)
    r, col = start_reader(port, d)
    port.write(bad_wire, chunk=3000, rng=rng)
    drain(r, len(bad_wire))
    r.stop()
    exp.check(r.stats, col.seqs)
    assert r.stats.frames == len(exp.delivered)


def test_stall_warns_and_continues(port):
    """A silence longer than stall_timeout is one "stall" event, "resumed" when
    bytes come back, and the stream goes on without a loss.

    The reader also stalls whenever this thread is slower than stall_timeout
    (before the first write, before stop): the test waits for the stall of the
    silence it makes, and checks one event per silence, however many there were.
    """
    d, wire, _ = emi_wire(np.arange(100))
    events = []
    r, col = start_reader(port, d, stall_timeout=0.15, on_event=events.append)
    port.write(wire[: 50 * 84])
    drain(r, 50 * 84)  # ("resumed" comes before the bytes are counted)
    wait_for(lambda: stall_kinds(events)[-1:] == ["stall"], what="stall event")
    resumed = stall_kinds(events).count("resumed")
    time.sleep(0.3)  # the silence goes on: empty reads that must not add a stall
    port.write(wire[50 * 84 :])
    drain(r, len(wire))
    wait_for(lambda: stall_kinds(events).count("resumed") > resumed, what="resumed event")
    r.stop()
    assert col.seqs == list(range(100))
    kinds = stall_kinds(events)
    assert one_stall_per_silence(kinds), kinds
    assert r.stats.stalls == kinds.count("stall") >= 1
    assert r.stats.disconnects == 0


def test_unplug_and_replug_continue_same_stream(port):
    """Unplugged mid-frame, port gone for a while (reopen fails with backoff), plugged
    back: everything before is kept, the cut frame counted, the gap recorded."""
    d, wire, samples = emi_wire(np.arange(100))
    events = []
    r, col = start_reader(port, d, on_event=events.append, backoff=(0.01, 0.05))
    port.write(wire[: 50 * 84 + 40])  # frames 0..49 and the first 40 bytes of 50
    drain(r, 50 * 84 + 40)
    port.unplug()
    wait_for(lambda: r.stats.disconnects == 1, what="disconnect seen")
    wait_for(lambda: r.stats.open_failures >= 2, what="reopen attempts")
    assert r.stats.connected is False
    assert col.seqs == list(range(50))  # nothing before the fault lost
    port.plug()
    wait_for(lambda: r.stats.reconnects == 1, what="reconnect")
    port.write(wire[60 * 84 :])  # the device went on counting: 50..59 never arrived
    drain(r, 50 * 84 + 40 + 40 * 84)
    r.stop()
    assert col.seqs == list(range(50)) + list(range(60, 100))
    s = r.stats
    assert (s.truncated, s.sequence_gaps, s.frames_missing) == (1, 1, 10)
    assert (s.disconnects, s.reconnects, s.crc_errors) == (1, 1, 0)
    assert len(s.gaps) == 1 and s.gaps[0][0] < s.gaps[0][1]
    lost = [e for e in events if e.kind == "disconnected"][0]
    # a pty whose other side went away reads like an unplugged adapter: select says
    # ready, then the read returns nothing or EIO (pyserial words it either way) while
    # the port object still says is_open
    assert any(m in lost.message for m in ("no data", "read failed", "Input/output error"))
    assert [e.kind for e in events if e.kind in ("connected", "reconnected")] == [
        "connected", "reconnected"]
    got = np.concatenate([b.samples for b in col.batches])
    np.testing.assert_array_equal(got, np.concatenate([samples[:50], samples[60:]]))


def test_wrong_baud_rate_diagnosed(port):
    """The device talks 460800 baud, the port is set to 921600: the bytes are the
    ones a real UART would see; the reader names the problem, then recovers when
    the rates agree."""
    d, wire, _ = emi_wire(np.arange(800))
    garbled = uart_resample(wire, 460800, 921600)
    assert len(garbled) > 65536
    events = []
    r, col = start_reader(port, d, on_event=events.append)
    port.write(garbled)
    drain(r, len(garbled))
    # (the event, not stats.diagnosis: that is set just before the event is sent)
    wait_for(lambda: any(e.kind == "no_valid_frames" for e in events), what="diagnosis")
    diag = [e for e in events if e.kind == "no_valid_frames"]
    assert len(diag) == 1 and r.stats.diagnosis == diag[0].message
    assert diag[0].message.startswith("no valid frame in 64 KiB at 921600 baud on ")
    assert r.stats.frames == 0 and col.seqs == []
    _, good, _ = emi_wire(np.arange(1000, 1010))
    port.write(good)
    drain(r, len(garbled) + len(good))
    r.stop()
    assert col.seqs == list(range(1000, 1010))


def devices_independent(tmp_path, start):
    """One device unplugged and one spewing garbage while a third reads on: the
    scenario for readers in their own threads and in one ReaderGroup.

    ``start(ports_and_drivers, bad_kw)`` starts the readers and returns
    ``(stop, readers, collectors)``; ``bad_kw`` are the garbage port's options.
    Returns the readers, collectors and the EMI samples sent, after stopping.
    """
    emi_port, gps_port, bad_port = (PtyPort(tmp_path, n) for n in ("e", "g", "b"))
    d, wire, samples = emi_wire(np.arange(300))
    n = get_driver("nmea")
    t0 = time.time_ns()
    gwire = n.encode_many(GpsFix(t0 + i * 10**8, 10.0, 20.0 + i * 1e-6) for i in range(50))
    stop, (re, rg, rb), (ce, cg, cb) = start(
        [(emi_port, d), (gps_port, n), (bad_port, "gpr")], {"diagnose_bytes": 4096})
    emi_port.write(wire[: 100 * 84])
    gps_port.write(gwire[: len(gwire) // 2])
    bad_port.write(np.random.default_rng(1).integers(0, 256, 20000, np.uint8).tobytes())
    drain(re, 100 * 84)
    emi_port.unplug()
    gps_port.write(gwire[len(gwire) // 2 :])
    drain(rg, len(gwire))
    drain(rb, 20000)
    wait_for(lambda: re.stats.disconnects == 1, what="unplug seen")
    stop()
    for p in (gps_port, bad_port):
        p.close()
    assert ce.seqs == list(range(100))
    assert sum(len(b) for b in cg.batches) == 50
    assert rb.stats.frames == 0 and rb.stats.diagnosis
    assert re.stats.disconnects == 1 and rg.stats.disconnects == 0
    assert all(r.error is None for r in (re, rg, rb))
    return (re, rg, rb), (ce, cg, cb), samples


def test_devices_are_independent(tmp_path):
    """One device unplugged and one spewing garbage do not disturb the others."""
    def start(ports_drivers, bad_kw):
        started = [start_reader(p, d, **(bad_kw if d == "gpr" else {}))
                   for p, d in ports_drivers]
        readers = [r for r, _ in started]

        def stop():
            for r in readers:
                r.stop()
        return stop, readers, [c for _, c in started]

    devices_independent(tmp_path, start)


def test_socket_url_and_queue_mode():
    """Any pyserial URL: socket://; without a callback frames go to a queue."""
    d, wire, _ = emi_wire(np.arange(200))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    connected = threading.Event()

    def serve():
        conn, _ = srv.accept()
        connected.wait(10)  # pyserial flushes what arrives before open() returns
        conn.sendall(wire)
        time.sleep(0.2)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = DeviceReader(f"socket://127.0.0.1:{port}", d, reconnect=False).start()
    wait_for(lambda: r.stats.connected)
    connected.set()
    seqs = []
    # (stats count the frames before they are queued: wait for the queue itself)
    while len(seqs) < 200:
        b = r.get(timeout=30)
        assert b is not None, f"{len(seqs)} frames queued, {r.stats.frames} framed"
        seqs.extend(b.sequence.tolist())
    r.stop()
    srv.close()
    assert seqs == list(range(200))
    assert r.get(timeout=0) is None  # nothing more


def test_open_failure_without_reconnect_reports(tmp_path):
    r = DeviceReader(str(tmp_path / "no-such-port"), "emi-pi", reconnect=False).start()
    wait_for(lambda: not r.running, what="reader end")
    assert r.error is not None and "no-such-port" in str(r.error)
    assert [e.kind for e in r.events][-2:] == ["error", "stopped"]


def test_consumer_exception_does_not_stop_reader(port):
    d, wire, _ = emi_wire(np.arange(50))
    seen = []

    def flaky(batch):
        seen.extend(batch.sequence.tolist())
        if len(seen) < 20:
            raise OSError("disk full")

    r = DeviceReader(port.path, d, on_frames=flaky).start()
    wait_for(lambda: r.stats.connected)
    for i in range(5):
        port.write(wire[i * 840 : (i + 1) * 840])
        drain(r, (i + 1) * 840)
    r.stop()
    assert seen == list(range(50))
    assert r.stats.callback_errors >= 1 and r.error is None


# ----------------------------------------------------------------------------------------
def test_clock_fit_removes_jitter_and_tracks_drift():
    rng = np.random.default_rng(3)
    n = 20000  # 20 s at 1 kHz
    dev = np.arange(n, dtype=np.int64) * 1000
    true = 1_700_000_000 * 10**9 + (dev * 1000 * (1 + 80e-6)).astype(np.int64)
    latency = (1e6 + rng.exponential(4e6, n)).astype(np.int64)  # 1 ms + exp(4 ms)
    # frames are read in bursts: all frames of a read get the read's time
    host = true + latency
    bursts = np.maximum.accumulate(host)
    cf = ClockFit()
    out = np.concatenate([cf.update(dev[i : i + 37], bursts[i : i + 37])
                          for i in range(0, n, 37)])
    err = (out - true)[5000:] / 1e6  # ms, after the fit settled
    raw = (bursts - true)[5000:] / 1e6
    assert np.std(err) < 0.05 * np.std(raw)
    assert abs(cf.drift_ppm - 80) < 5
    # the mapped time keeps the link's fixed latency, never runs ahead of the truth
    assert np.median(err) > 0.5 and np.median(err) < np.median(raw)


@pytest.mark.parametrize("per_read", [False, True])
def test_clock_fit_times_never_step_back(per_read):
    """A refit moves the line by tens of µs in a steady run; frames mapped after it
    must not get times before those mapped before it (session 27 measured 76 µs
    steps back in a steady 1000/s recording)."""
    rng = np.random.default_rng(11)
    n = 30_000  # 30 s at 1 kHz, read in bursts of 1-40 frames
    dev = np.arange(n, dtype=np.int64) * 1000
    true = 1_700_000_000 * 10**9 + (dev * 1000 * (1 - 40e-6)).astype(np.int64)
    host = np.maximum.accumulate(true + (2e5 + rng.exponential(3e6, n)).astype(np.int64))
    cf = ClockFit()
    parts, i = [], 0
    while i < n:
        k = int(rng.integers(1, 40))
        if per_read:
            parts.append(cf.update_read(dev[i:i + k], int(host[min(i + k, n) - 1]))[1])
        else:
            parts.append(cf.update(dev[i:i + k], np.full(len(dev[i:i + k]),
                                                         host[min(i + k, n) - 1])))
        i += k
    out = np.concatenate(parts)
    assert cf.resets == 0
    assert np.diff(out).min() >= 0
    # held only where the line moved back: the times still follow the device clock
    err = (out - true)[5000:] / 1e6
    assert np.std(err) < 0.5
    # (the frame before a hold, and at most max_hold_s (5 ms) of 1 kHz frames)
    assert _longest_equal_run(out) <= 6


def _longest_equal_run(t):
    same = np.flatnonzero(np.diff(t) != 0)
    edges = np.concatenate([[-1], same, [t.size - 1]])
    return int(np.diff(edges).max())


def test_clock_fit_keeps_a_large_move_back_as_a_step():
    """A host clock stepped back 0.9 s (under max_step_s: no restart) moves the
    line back by 0.9 s: the times step back with it, as every stream of that host
    does, rather than standing still for 0.9 s of frames."""
    dev = np.arange(20_000, dtype=np.int64) * 1000   # 20 s at 1 kHz
    host = 10**18 + dev * 1000 + 2_000_000
    host[10_000:] -= 900_000_000
    cf = ClockFit()
    out = np.concatenate([cf.update(dev[i:i + 20], np.full(20, host[min(i + 20, 20_000) - 1]))
                          for i in range(0, 20_000, 20)])
    assert cf.resets == 0
    assert np.diff(out).min() < -0.5e9
    assert _longest_equal_run(out) <= 6


def test_clock_fit_restarts_on_device_reset_and_ignores_missing_clock():
    cf = ClockFit()
    dev = np.arange(100, dtype=np.int64) * 1000
    host = 5 * 10**18 + dev * 1000
    a = cf.update(dev, host)
    np.testing.assert_array_equal(a, host)
    b = cf.update(dev[:10], host[-1] + 10**6 + dev[:10] * 1000)  # clock restarted at 0
    assert cf.resets == 1
    np.testing.assert_array_equal(b, host[-1] + 10**6 + dev[:10] * 1000)
    c = cf.update(np.full(3, -1), np.array([1, 2, 3]))
    assert c.tolist() == [1, 2, 3]


def test_clock_fit_survives_stall_backlog_and_restarts_on_host_step():
    """Bytes buffered during a 5 s stall arrive late: latency, not a new clock.
    A host clock stepped back by NTP (frames 'earlier than possible'): restart."""
    cf = ClockFit()
    dev = np.arange(10_000, dtype=np.int64) * 1000  # 10 s at 1 kHz
    host = 10**18 + dev * 1000 + 2_000_000
    cf.update(dev[:5000], host[:5000])
    late = host[5000:6000] + 5 * 10**9  # a backlog read 5 s late
    out = cf.update(dev[5000:6000], late)
    assert cf.resets == 0
    assert np.abs(out - host[5000:6000]).max() < 10_000  # mapped on the clock: < 10 µs
    stepped = host[6000:] - 3 * 10**9  # host clock stepped back 3 s
    out = cf.update(dev[6000:], stepped)
    assert cf.resets == 1
    np.testing.assert_array_equal(out[-100:], stepped[-100:])
