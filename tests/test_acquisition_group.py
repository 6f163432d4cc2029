"""Several devices read by one thread (ReaderGroup) through real pseudo-terminals.

The same faults as for readers in their own threads, asserted the same way:
every intact frame delivered once, a device's fault never disturbs the others.
Waits are bounded; nothing here asserts on elapsed time.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_acquisition import (
    Collector,
    PtyPort,
    devices_independent,
    drain,
    emi_wire,
    one_stall_per_silence,
    stall_kinds,
    wait_for,
)

from demine.acquisition import DeviceReader, ReaderGroup

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")


def make_group(ports_drivers, **kw):
    kw.setdefault("stall_timeout", 5.0)
    kw.setdefault("backoff", (0.01, 0.05))
    kw.setdefault("poll_interval", 0.01)
    kw.setdefault("align", True)
    readers, cols = [], []
    for port, driver in ports_drivers:
        col = Collector()
        readers.append(DeviceReader(port.path, driver, on_frames=col, **kw))
        cols.append(col)
    group = ReaderGroup(readers).start()
    for r in readers:
        wait_for(lambda r=r: r.stats.connected, what=f"{r.name} connected")
    return group, readers, cols


def test_one_thread_reads_every_device_and_faults_stay_apart(tmp_path):
    """One device unplugged and one spewing garbage do not disturb the others,
    all read by one thread (the scenario of test_acquisition's own-thread test)."""
    before = {t.name for t in threading.enumerate()}
    new = set()

    def start(ports_drivers, bad_kw):
        group, readers, cols = make_group(ports_drivers, **bad_kw)
        new.update({t.name for t in threading.enumerate()} - before)
        return group.stop, readers, cols

    (re, rg, rb), (ce, _, _), samples = devices_independent(tmp_path, start)
    # one thread reads them all; beside it, each port's native drain (a loop
    # that never holds the GIL: demine._drain)
    assert {n for n in new if not n.startswith("demine-drain-")} == {"demine-readers"}
    np.testing.assert_array_equal(np.concatenate([b.samples for b in ce.batches]),
                                  samples[:100])
    assert not any(r.running for r in (re, rg, rb))
    assert all(r.stats.cpu_seconds > 0 for r in (re, rg, rb))

def test_grouped_reader_reconnects_and_stalls_without_blocking_the_others(tmp_path):
    """Unplugged mid-frame and plugged back (reopen retried with backoff), and
    silent for a while: the same outcome as a reader in its own thread, while
    the other device of the group keeps every frame.

    b also stalls whenever this thread takes longer than stall_timeout between
    two of its writes: the test waits for the stall of the silence it makes
    (b's own events: both readers are named after their driver)."""
    a, b = PtyPort(tmp_path, "a"), PtyPort(tmp_path, "b")
    d, wire, samples = emi_wire(np.arange(100))
    _, wire_b, samples_b = emi_wire(np.arange(400), seed=1)
    group, (ra, rb), (ca, cb) = make_group([(a, d), (b, d)], stall_timeout=0.15)
    a.write(wire[: 50 * 84 + 40])
    b.write(wire_b[: 100 * 84])
    drain(ra, 50 * 84 + 40)
    a.unplug()
    wait_for(lambda: ra.stats.disconnects == 1, what="disconnect seen")
    wait_for(lambda: ra.stats.open_failures >= 2, what="reopen attempts")
    b.write(wire_b[100 * 84 : 200 * 84])  # read meanwhile
    drain(rb, 200 * 84)
    a.plug()
    wait_for(lambda: ra.stats.reconnects == 1, what="reconnect")
    a.write(wire[60 * 84 :])
    drain(ra, 50 * 84 + 40 + 40 * 84)
    wait_for(lambda: stall_kinds(rb.events)[-1:] == ["stall"], what="stall of b")
    resumed = stall_kinds(rb.events).count("resumed")
    b.write(wire_b[200 * 84 :])
    drain(rb, len(wire_b))
    wait_for(lambda: stall_kinds(rb.events).count("resumed") > resumed, what="b resumed")
    group.stop()
    b.close()
    assert ca.seqs == list(range(50)) + list(range(60, 100))
    s = ra.stats
    assert (s.truncated, s.sequence_gaps, s.frames_missing) == (1, 1, 10)
    assert (s.disconnects, s.reconnects) == (1, 1)
    np.testing.assert_array_equal(np.concatenate([x.samples for x in ca.batches]),
                                  np.concatenate([samples[:50], samples[60:]]))
    assert cb.seqs == list(range(400))
    assert rb.stats.disconnects == 0
    kinds = stall_kinds(rb.events)
    assert one_stall_per_silence(kinds), kinds
    assert rb.stats.stalls == kinds.count("stall") >= 1


def test_stopping_one_grouped_reader_leaves_the_others_reading(tmp_path):
    a, b = PtyPort(tmp_path, "a"), PtyPort(tmp_path, "b")
    d, wire, _ = emi_wire(np.arange(200))
    group, (ra, rb), (ca, cb) = make_group([(a, d), (b, d)])
    with pytest.raises(RuntimeError, match="ReaderGroup"):
        ra.start()
    a.write(wire[: 100 * 84])
    drain(ra, 100 * 84)
    ra.stop()
    assert not ra.running and rb.running
    assert ca.seqs == list(range(100))  # what it had read was delivered
    b.write(wire)
    drain(rb, len(wire))
    group.stop()
    for p in (a, b):
        p.close()
    assert cb.seqs == list(range(200))
    assert [e.kind for e in ra.events][-1] == "stopped"


def test_group_stop_delivers_what_the_ports_still_hold(tmp_path):
    """Bytes written just before stop are read and framed (the group reads on a
    grid: up to a period of bytes may be waiting)."""
    ports = [PtyPort(tmp_path, n) for n in ("a", "b")]
    d, wire, _ = emi_wire(np.arange(40))
    group, readers, cols = make_group([(p, d) for p in ports], poll_interval=0.5)
    for p in ports:
        p.write(wire)
    group.stop()
    for p in ports:
        p.close()
    assert [c.seqs for c in cols] == [list(range(40))] * 2


def test_a_reader_belongs_to_one_group(tmp_path):
    p = PtyPort(tmp_path, "a")
    r = DeviceReader(p.path, "emi-pi")
    ReaderGroup([r])
    with pytest.raises(RuntimeError, match="grouped"):
        ReaderGroup([r])
    p.close()


@pytest.mark.parametrize("serial_options", [None, {"inter_byte_timeout": 0.05}])
def test_grouped_reads_of_an_idle_port_are_no_disconnect(tmp_path, serial_options):
    """A group reads a local port's descriptor directly: an empty read of an idle
    port (b"" with pyserial's VMIN = 0, EAGAIN with VMIN > 0 from serial options)
    is no data, never an unplug; the frames around idle periods all arrive."""
    p = PtyPort(tmp_path, "a")
    d, wire, samples = emi_wire(np.arange(300))
    group, (r,), (col,) = make_group([(p, d)], serial_options=serial_options)
    cut = [0, 100 * 84 + 30, 200 * 84, len(wire)]
    for lo, hi in zip(cut[:-1], cut[1:], strict=True):
        p.write(wire[lo:hi])
        drain(r, hi)
        time.sleep(0.1)  # idle: about ten empty reads
    group.stop()
    p.close()
    assert col.seqs == list(range(300))
    np.testing.assert_array_equal(np.concatenate([b.samples for b in col.batches]), samples)
    s = r.stats
    assert (s.disconnects, s.reconnects, s.crc_errors, s.truncated) == (0, 0, 0, 0)
