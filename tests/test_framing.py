"""Framing engine: CRC kernel against its reference, chunking invariance, every fault
with exact counts (in memory; the pty tests are in test_acquisition.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _wirefaults import inject, plan_faults
from hypothesis import given, settings
from hypothesis import strategies as st

from demine._core import crc16_ccitt
from demine.drivers import get_driver
from demine.drivers.emi_pi import EmiFrame
from demine.framing import Framer, crc16, crc16_rows, sequence_gaps


def crc_reference(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE catalogue value
    assert crc16(b"") == 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=100))
def test_crc_matches_reference_and_core(data):
    want = crc_reference(data)
    assert crc16(data) == want
    assert crc16_ccitt(np.frombuffer(data, np.uint8)) == want


def test_crc_rows():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (20, 37), dtype=np.uint8)
    got = crc16_rows(rows, 3, 30)
    assert got.tolist() == [crc_reference(r[3:30].tobytes()) for r in rows]
    with pytest.raises(ValueError, match="bad CRC range"):
        crc16_rows(rows, 3, 99)
    # bytes, not values taken mod 256 (an int16 300 had been read as byte 44)
    with pytest.raises(TypeError, match="rows must be uint8 bytes, got int16"):
        crc16_rows(np.array([[300, 2, 3]], np.int16), 0, 3)


def test_crc_of_an_array_is_of_its_bytes():
    """As memoryview and tobytes() give: a uint16 [0x1234, 0xABCD] had been
    cast to the bytes [0x34, 0xCD], a float 1.7 to byte 1 (kernel audit)."""
    for a in (np.array([0x1234, 0xABCD], np.uint16), np.array([1.7, 300.0]),
              np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]):
        want = crc_reference(a.tobytes())
        assert crc16(a) == want
        if a.flags.c_contiguous:
            assert crc16(memoryview(a)) == want
    for init in (-1, 0x1FFFF, 1.5, True):
        with pytest.raises(ValueError, match="init must be an integer 0..0xFFFF"):
            crc16(b"ab", init=init)


def emi_frames(n, n_gates=16, seed=0):
    d = get_driver("emi-pi")
    rng = np.random.default_rng(seed)
    samples = rng.normal(size=(n, n_gates)).astype(np.float32)
    return d, [d.encode(EmiFrame(i, 1000 * i, samples[i])) for i in range(n)]


def gpr_frames(n, m=256, seed=0):
    d = get_driver("gpr")
    rng = np.random.default_rng(seed)
    tr = rng.integers(-30000, 30000, (n, m), dtype=np.int16)
    wire = d.encode_arrays(np.arange(n), np.arange(n) * 2500, tr, encoder=np.arange(n))
    L = len(wire) // n
    return d, [wire[i * L : (i + 1) * L] for i in range(n)]


def feed_chunks(framer, wire, cuts):
    seqs = []
    pos = 0
    for c in [*sorted(cuts), len(wire)]:
        for b in framer.feed(wire[pos:c]):
            seqs.extend(b.sequence.tolist())
        pos = c
    for b in framer.flush():
        seqs.extend(b.sequence.tolist())
    return seqs


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 84 * 30), max_size=40))
def test_chunking_invariance_clean(cuts):
    d, frames = emi_frames(30)
    wire = b"".join(frames)
    fr = Framer(d)
    assert feed_chunks(fr, wire, cuts) == list(range(30))
    assert fr.stats.bytes_skipped == 0 and fr.pending == 0


@pytest.mark.parametrize("kind", ["emi", "gpr"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_cuts=st.integers(0, 60))
def test_every_fault_exact_counts_any_chunking(kind, seed, n_cuts):
    """Random mix of faults, random read boundaries: exact counts every time."""
    rng = np.random.default_rng(seed)
    # bit flips hit everything after the length fields (a flipped length field makes
    # the frame look truncated, or its header invalid: tested separately)
    if kind == "emi":
        d, frames = emi_frames(60, seed=seed % 1000)
        header = 4
    else:
        d, frames = gpr_frames(40, seed=seed % 1000)
        header = 6
    plan = plan_faults(rng, len(frames))
    wire, exp = inject(frames, plan, rng, 0xA5, header, payload_start=header)
    cuts = rng.integers(0, len(wire) + 1, n_cuts).tolist()
    fr = Framer(d)
    seqs = feed_chunks(fr, wire, cuts)
    exp.check(fr.stats, seqs)


def test_each_fault_alone():
    d, frames = emi_frames(10)
    rng = np.random.default_rng(5)
    for fault in ("flip", "trunc", "drop", "dup", "garbage", "lost"):
        plan = ["ok"] * 10
        plan[4] = fault
        wire, exp = inject(frames, plan, rng, 0xA5, 4, 4)
        fr = Framer(d)
        seqs = feed_chunks(fr, wire, [])
        exp.check(fr.stats, seqs)


def test_header_corruption_is_garbage_and_gap():
    d, frames = emi_frames(5)
    bad = bytearray(frames[2])
    bad[3] = 200  # 200 gates: impossible, header rejected
    fr = Framer(d)
    seqs = feed_chunks(fr, frames[0] + frames[1] + bytes(bad) + frames[3] + frames[4], [])
    assert seqs == [0, 1, 3, 4]
    s = fr.stats
    assert (s.bad_headers, s.crc_errors, s.truncated) == (1, 0, 0)
    assert (s.sequence_gaps, s.frames_missing, s.resyncs) == (1, 1, 1)
    assert s.bytes_skipped == len(bad)


def test_lying_length_waits_bounded_and_recovers():
    """A length field corrupted to the largest legal value: no huge wait or allocation,
    the following intact frames come out as soon as they are complete."""
    d, frames = gpr_frames(6)
    bad = bytearray(frames[1])
    bad[3] = 4  # int32 samples
    bad[4:6] = (4096).to_bytes(2, "little")  # claims 16 kB
    fr = Framer(d)
    out = fr.feed(frames[0] + bytes(bad) + frames[2] + frames[3])
    assert [s for b in out for s in b.sequence.tolist()] == [0, 2, 3]
    assert fr.pending == 0
    assert fr.stats.truncated == 1 and fr.stats.frames_missing == 1


def test_random_garbage_never_loses_intact_frames():
    d, frames = emi_frames(200, seed=3)
    rng = np.random.default_rng(9)
    wire = bytearray()
    for f in frames:
        wire += rng.integers(0, 256, int(rng.integers(0, 50)), dtype=np.uint8).tobytes()
        wire += f
    fr = Framer(d)
    seqs = feed_chunks(fr, bytes(wire), rng.integers(0, len(wire), 100).tolist())
    assert seqs == list(range(200))


def test_sequence_wrap_reset_and_duplicates():
    d = get_driver("emi-pi")
    z = np.zeros((1, 4), np.float32)

    def f(seq):
        return d.encode_arrays([seq], [seq], z)

    seqs = [2**32 - 2, 2**32 - 1, 0, 1, 1, 0, 5, 6, 100000, 3, 4]
    fr = Framer(d)
    got = [s for b in fr.feed(b"".join(f(s) for s in seqs)) for s in b.sequence.tolist()]
    assert got == [2**32 - 2, 2**32 - 1, 0, 1, 5, 6, 100000, 3, 4]
    s = fr.stats
    assert s.duplicates == 2  # 1 repeated, 0 resent
    assert (s.sequence_gaps, s.frames_missing) == (2, 3 + 99993)
    assert s.sequence_resets == 1  # 100000 -> 3


def test_flush_counts_pending_partial_frame():
    d, frames = emi_frames(3)
    fr = Framer(d)
    out = fr.feed(frames[0] + frames[1] + frames[2][:40])
    assert sum(len(b) for b in out) == 2 and fr.pending == 40
    assert fr.flush() == [] and fr.stats.truncated == 1 and fr.pending == 0


def test_line_framer_long_line_and_partial():
    d = get_driver("ascii-md", columns=("a",))
    fr = Framer(d)
    assert fr.feed(b"1\n2\n3") and fr.pending == 1
    fr.feed(b"x" * 600)  # no newline for longer than max_line: dropped as garbage
    assert fr.pending == 0 and fr.stats.bad_lines == 1
    out = fr.feed(b"\n4\n")
    assert [b.samples.ravel().tolist() for b in out] == [[4.0]]
    fr.feed(b"5")
    (b,) = fr.flush()
    assert b.samples.ravel().tolist() == [5.0]
    # a last line cut where the stream ended is truncated, not a line in another
    # format (a well set-up device had been told its lines were)
    bad, cut = fr.stats.bad_lines, fr.stats.truncated
    fr.feed(b"6\n7,")
    assert fr.flush() == [] and (fr.stats.bad_lines, fr.stats.truncated) == (bad, cut + 1)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=30), crlf=st.booleans())
def test_line_framing_chunking_invariance(cuts, crlf):
    """NMEA and ASCII lines: the same frames and counts however the reads cut them."""
    from demine.drivers.nmea import GpsFix, sentence

    n = get_driver("nmea")
    wire = n.encode_many(GpsFix(1_780_000_000 * 10**9 + i * 10**8, 1.0 + i * 1e-6, 2.0)
                         for i in range(8))
    bad = bytearray(sentence("GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"))
    bad[12] ^= 4
    wire = wire[:200] + bytes(bad) + b"noise\r\n" + wire[200:]
    if not crlf:
        wire = wire.replace(b"\r\n", b"\n")
    cuts = [c for c in cuts if c <= len(wire)]
    ref = Framer(get_driver("nmea"))
    want = np.concatenate([b.samples for b in ref.feed(wire)])
    fr = Framer(get_driver("nmea"))
    got, pos = [], 0
    for c in [*sorted(cuts), len(wire)]:
        got += [b.samples for b in fr.feed(wire[pos:c])]
        pos = c
    got += [b.samples for b in fr.flush()]
    np.testing.assert_array_equal(np.concatenate(got), want)
    assert fr.stats.as_dict() == {**ref.stats.as_dict(), "bytes_in": fr.stats.bytes_in}
    # sentence cut at byte 200: its head is truncated (a '$' follows), its tail and
    # the noise are bad lines, the flipped sentence a checksum error
    assert (fr.stats.crc_errors, fr.stats.bad_lines, fr.stats.truncated) == (1, 2, 1)


# ---------------------------------------------------------------------------------------
# reference twin of the compiled scan kernel (plain Python, same rules)
# ---------------------------------------------------------------------------------------
def _twin_scan(buf: bytes, layout, final: bool):
    s0, s1 = layout.sync

    def flen(q):
        h = buf[q:]
        if h[layout.version_off] != layout.version:
            return -1
        c = int.from_bytes(h[layout.count_off : layout.count_off + layout.count_width], "little")
        if not layout.count_min <= c <= layout.count_max:
            return -1
        if layout.unit_off >= 0:
            u = h[layout.unit_off]
            if u not in layout.unit_allowed:
                return -1
        else:
            u = layout.unit_const
        return layout.base + c * u

    def crc_ok(q, L):
        return crc_reference(buf[q + layout.crc_start : q + L - 2]) == int.from_bytes(
            buf[q + L - 2 : q + L], "little")

    stop = len(buf)

    def find_sync(a):
        while a + 1 < stop:
            if buf[a] == s0 and buf[a + 1] == s1:
                return a
            a += 1
        return -1

    def nested(a, b):
        q, undecided = a, False
        while q < b:
            q = find_sync(q)
            if q < 0 or q >= b:
                break
            if q + layout.header_len > stop:
                undecided = True
                break
            L = flen(q)
            if L > 0:
                if q + L > stop:
                    undecided = True
                elif crc_ok(q, L):
                    return q
            q += 1
        if not undecided and b >= stop and buf[stop - 1] == s0:
            undecided = True
        return -2 if (undecided and not final) else -1

    C = dict(crc=0, trunc=0, skipped=0, resyncs=0, garbage=False, bad=0)

    def skip(n):
        if n > 0:
            C["skipped"] += n
            if not C["garbage"]:
                C["resyncs"] += 1
                C["garbage"] = True

    frames, pos, keep = [], 0, stop
    while True:
        p = find_sync(pos)
        if p < 0:
            keep = stop - 1 if (stop and buf[stop - 1] == s0 and stop - 1 >= pos
                                and not final) else stop
            skip(keep - pos)
            break
        skip(p - pos)
        if p + layout.header_len > stop:
            if final:
                C["trunc"] += 1
                C["garbage"] = True
                skip(stop - p)
                keep = stop
            else:
                keep = p
            break
        L = flen(p)
        if L < 0:
            C["bad"] += 1
            skip(1)
            pos = p + 1
            continue
        if p + L > stop:
            q = nested(p + 1, stop)
            if q >= 0 or final:
                C["trunc"] += 1
                C["garbage"] = True
                if q >= 0:
                    skip(q - p)
                    pos = q
                    continue
                skip(stop - p)
                keep = stop
                break
            keep = p
            break
        q = nested(p + 1, p + L)
        if crc_ok(p, L) and q < 0 and q != -2:
            frames.append((p, L))
            pos = p + L
            C["garbage"] = False
            continue
        if q == -2:
            keep = p
            break
        if q >= 0:
            C["trunc"] += 1
            C["garbage"] = True
            skip(q - p)
            pos = q
            continue
        C["crc"] += 1
        C["garbage"] = True
        skip(1)
        pos = p + 1
    return frames, keep, C


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), final=st.booleans(), kind=st.sampled_from(["emi", "gpr"]))
def test_scan_kernel_matches_python_twin(seed, final, kind):
    """Random frames, faults and hostile garbage (sync words with plausible headers)."""
    from demine import _framing

    rng = np.random.default_rng(seed)
    if kind == "emi":
        d, frames = emi_frames(12, n_gates=int(rng.integers(4, 33)), seed=seed % 97)
        fake = b"\xa5\x5a\x01" + bytes([int(rng.integers(4, 33))])
    else:
        d, frames = gpr_frames(5, m=128, seed=seed % 97)
        fake = b"\xa5\x5c\x01\x02\x80\x00"
    layout = d.layout
    wire = bytearray()
    for f in frames:
        r = rng.random()
        if r < 0.15:
            f = f[: int(rng.integers(1, len(f)))]
        elif r < 0.3:
            b = bytearray(f)
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            f = bytes(b)
        elif r < 0.45:
            wire += fake if rng.random() < 0.5 else bytes([0xA5])
        elif r < 0.55:
            wire += rng.integers(0, 256, int(rng.integers(1, 30)), dtype=np.uint8).tobytes()
        wire += f
    wire = bytes(wire[: int(rng.integers(len(wire) // 2, len(wire) + 1))])
    arr = np.frombuffer(wire, np.uint8)
    cap = len(wire) // layout.min_len + 2
    off = np.empty(cap, np.int64)
    lens = np.empty(cap, np.int64)
    c = np.zeros(6, np.int64)
    n, keep = _framing.scan_binary(arr, 0, len(wire), layout.as_array(), off, lens, c, final)
    frames_t, keep_t, C = _twin_scan(wire, layout, final)
    assert list(zip(off[:n].tolist(), lens[:n].tolist(), strict=True)) == frames_t
    assert keep == keep_t
    assert c.tolist() == [C["crc"], C["trunc"], C["skipped"], C["resyncs"], int(C["garbage"]),
                          C["bad"]]


def test_line_endings_lf_crlf_cr():
    d = get_driver("ascii-md", columns=("a", "b"))
    for eol in (b"\n", b"\r\n", b"\r"):
        fr = Framer(d)
        out = fr.feed(eol.join([b"1,2", b"3,4", b"5,6"]) + eol)
        assert np.concatenate([b.samples for b in out]).tolist() == [[1, 2], [3, 4], [5, 6]]
        assert fr.stats.bad_lines == 0


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 2**32 - 1),
       steps=st.lists(st.sampled_from([1, 1, 1, 0, 2, 2**32 - 1, 2**32 - 1024, 7]),
                      min_size=0, max_size=12),
       prev=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_sequence_kernel_matches_numpy(start, steps, prev):
    """The compiled check of the usual case (every step +1 modulo 2**32,
    wrapping included) against its NumPy twin."""
    from demine import _framing

    seq = (start + np.cumsum([0, *steps])) % 2**32
    seq = seq.astype(np.int64)
    p = seq[0] - 1 if prev is None else prev
    want = bool(np.all(np.diff(seq, prepend=p) % 2**32 == 1))
    assert _framing.sequence_steps_one(seq, prev or 0, prev is not None) == want


def test_bytes_in_counts_bytes_of_any_buffer():
    """A memoryview of 2-byte items fed as is counted its items (210 for 420
    bytes) though its frames decoded right (kernel audit)."""
    d, frames = emi_frames(6)
    wire = b"".join(frames)
    wire += b"\0" * (len(wire) % 2)
    ref = Framer(d)
    want = [b.samples for b in ref.feed(wire)]
    for view in (memoryview(wire).cast("H"), memoryview(bytearray(wire)),
                 memoryview(np.frombuffer(wire, np.uint8).reshape(2, -1))):
        fr = Framer(d)
        got = [b.samples for b in fr.feed(view)]
        np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))
        assert fr.stats.bytes_in == len(wire)


@settings(deadline=None)
@given(steps=st.lists(st.sampled_from([1, 1, 1, 1, 2, 5, 0, -1, -3, -5000, 2**31 + 7]),
                      max_size=80),
       start=st.integers(0, 2**32 - 1))
def test_sequence_gaps_of_the_written_frames_are_the_framers_count(steps, start):
    """demine info counts a stream's missing frames from its recorded sequence
    column (demine.framing.sequence_gaps): the count the framer made live,
    whatever the gaps, duplicates (dropped), wraps and restarts."""
    d = get_driver("emi-pi")
    z = np.zeros((1, 4), np.float32)
    seqs = (start + np.cumsum([0, *steps])) % 2**32
    fr = Framer(d)
    got = [s for b in fr.feed(b"".join(d.encode_arrays([s], [0], z) for s in seqs.tolist()))
           for s in b.sequence.tolist()]
    assert sequence_gaps(np.array(got, np.int64)) == (fr.stats.sequence_gaps,
                                                      fr.stats.frames_missing)


def test_sequence_gaps_pass_over_frames_without_a_number():
    assert sequence_gaps([-1, -1, -1]) == (0, 0)
    assert sequence_gaps([5, -1, 6, 9, -1, 10]) == (1, 2)
    assert sequence_gaps([]) == (0, 0)


@settings(deadline=None)
@given(steps=st.lists(st.sampled_from([1, 1, 1, 1, 2, 5, -1, -3, -300, -5000, "resend"]),
                      max_size=80),
       start=st.integers(0, 2**32 - 1))
def test_every_new_frame_is_delivered_and_every_resend_dropped(steps, start):
    """A device that restarts near its old count (a brown-out, a USB replug) had
    its new readings dropped as duplicates until its counter passed the old one;
    a small counter (an Arduino's byte) lost everything after its first wrap.  A
    resend (same number, same content) is dropped, any other frame delivered, and
    the recorded column still gives the framer's count of gaps."""
    d = get_driver("emi-pi")
    rng = np.random.default_rng(abs(hash((start, len(steps)))) % 2**32)
    sent, new = [], []
    seq = start
    for k, st_ in enumerate([1, *steps]):
        if st_ == "resend" and sent:   # (the link repeats the frame it just sent)
            sent.append(sent[-1])
            new.append(False)
            continue
        seq = (seq + (1 if st_ == "resend" else st_)) % 2**32
        sent.append((seq, k, rng.normal(size=(1, 4)).astype(np.float32)))
        new.append(True)
    fr = Framer(d)
    wire = b"".join(d.encode_arrays([s], [t], z) for s, t, z in sent)
    got = [*fr.feed(wire), *fr.flush()]   # (a frame whose payload looks like a sync waits)
    rows = np.concatenate([b.samples for b in got]) if got else np.zeros((0, 4))
    want = np.concatenate([z for (s, t, z), n in zip(sent, new, strict=True) if n])
    np.testing.assert_array_equal(rows, want)
    assert fr.stats.duplicates == new.count(False)
    delivered = np.concatenate([b.sequence for b in got])
    assert sequence_gaps(delivered) == (fr.stats.sequence_gaps, fr.stats.frames_missing)


@pytest.mark.parametrize("seed", range(4))
def test_long_runs_with_steps_back_about_the_window_lose_nothing(seed):
    """Steps back of 1 to 1100 frames (about DUPLICATE_WINDOW, 1024), gaps, and
    reads cut anywhere: every frame is delivered once, and the recorded column
    gives the framer's count of gaps (the batches the framer keeps to judge a
    step back may hold a few more than the window)."""
    d = get_driver("emi-pi")
    rng = np.random.default_rng(seed)
    seqs, s = [], 0
    for _ in range(3000):
        r = rng.random()
        s = (s + 1 if r < 0.9 else s - int(rng.integers(1, 1100)) if r < 0.95
             else s + int(rng.integers(2, 50)))
        seqs.append(s % 2**32)
    z = rng.normal(size=(len(seqs), 4)).astype(np.float32)
    wire = b"".join(d.encode_arrays([q], [i], z[i:i + 1]) for i, q in enumerate(seqs))
    fr, out, i = Framer(d), [], 0
    while i < len(wire):
        n = int(rng.integers(1, 3000))
        out += fr.feed(wire[i:i + n])
        i += n
    out += fr.flush()
    got = np.concatenate([b.sequence for b in out])
    np.testing.assert_array_equal(got, seqs)
    assert fr.stats.duplicates == 0
    assert sequence_gaps(got) == (fr.stats.sequence_gaps, fr.stats.frames_missing)
