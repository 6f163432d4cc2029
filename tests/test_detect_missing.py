"""EMI detector: frames without a statistic (NaN: dropped readings) inside events.

A missing frame carries no evidence about the object under the sensor, so it
must neither start, extend nor end an event, and it must not count towards the
event-length limit ``max_frames`` either: a stream with missing frames gives the
events of the same stream with those frames cut out, only at other frame
indices.  Streaming over any chunking still equals the batch result.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine import _detect
from demine.detect import ALARM_FIELDS, EMIDetector, concat_alarms, detect_emi

PARAMS = dict(alpha=1 / 200, k_hi=6.0, k_lo=3.0, floor_hi=4.0, floor_lo=2.5, clip=3.0)


def _kernel(s, x, y, t, tn, cuts, *, warmup=20, hold=3, split=2.0, max_frames=0):
    """``_detect.hysteresis_run`` over the chunks ``cuts`` (state carried) and
    ``flush_event``: thresholds, event rows (float, int), peak rows (float, int)."""
    f = np.zeros(_detect.NFS)
    sti = np.zeros(_detect.NIS, dtype=np.int64)
    out = [[] for _ in range(5)]
    bounds = sorted({0, len(s), *[c for c in cuts if 0 < c < len(s)]})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        m = b - a
        seg_f, seg_i = np.empty((m + 1, _detect.NSF)), np.empty((m + 1, _detect.NSI), np.int64)
        pk_f = np.empty((2 * m + 2, _detect.NPF))
        pk_i = np.empty((2 * m + 2, _detect.NPI), np.int64)
        th = np.empty(m)
        k, kp = _detect.hysteresis_run(
            s[a:b], x[a:b], y[a:b], t[a:b], tn[a:b], th, f, sti, seg_f, seg_i, pk_f, pk_i,
            PARAMS["alpha"], PARAMS["k_hi"], PARAMS["k_lo"], PARAMS["floor_hi"],
            PARAMS["floor_lo"], PARAMS["clip"], warmup, hold, split, max_frames)
        for o, v in zip(out, (th, seg_f[:k], seg_i[:k], pk_f[:kp], pk_i[:kp]), strict=True):
            o.append(v)
    seg_f, seg_i = np.empty((1, _detect.NSF)), np.empty((1, _detect.NSI), np.int64)
    pk_f, pk_i = np.empty((1, _detect.NPF)), np.empty((1, _detect.NPI), np.int64)
    k, kp = _detect.flush_event(f, sti, seg_f, seg_i, pk_f, pk_i)
    for o, v in zip(out[1:], (seg_f[:k], seg_i[:k], pk_f[:kp], pk_i[:kp]), strict=True):
        o.append(v)
    return tuple(np.concatenate(o) if o else np.empty(0) for o in out)


def _lane(seed: int, n: int):
    """Noise with object passages (one to three humps) and a level step (long
    events that ``max_frames`` aborts), positions and times per frame."""
    rng = np.random.default_rng(seed)
    s = np.abs(1 + 0.3 * rng.standard_normal(n))
    for c in rng.integers(0, n, 8):
        ln = int(rng.integers(5, 120))
        hump = np.sin(np.linspace(0.0, np.pi * rng.integers(1, 4), ln)) ** 2
        s[c:c + ln] += (rng.uniform(3, 40) * hump)[:len(s[c:c + ln])]
    s[n // 2:] += 4.0
    x = np.cumsum(rng.uniform(-2e-3, 3e-3, n))
    y = 0.1 * np.sin(np.arange(n) / 50.0)
    t = np.arange(n) / 1000.0
    tn = 10**15 + np.arange(n, dtype=np.int64) * 1_000_000
    return s, x, y, t, tn


def _with_gaps(lane, gaps):
    """The lane with runs of missing statistics inserted: ``gaps`` is a list of
    (position in the compact lane, run length).  Positions and times of the
    inserted frames are made up (they must not matter).  Returns the longer
    lane and, for each compact frame, its index in the longer one."""
    s, x, y, t, tn = lane
    n = len(s)
    extra = np.zeros(n + 1, dtype=np.int64)
    for pos, ln in gaps:
        extra[min(pos, n)] += ln
    where = np.arange(n) + np.cumsum(extra)[:n]
    total = n + int(extra.sum())
    keep = np.zeros(total, dtype=bool)
    keep[where] = True
    out = []
    for v, fill in ((s, np.nan), (x, 7.0), (y, -3.0), (t, -1.0)):
        w = np.full(total, fill)
        w[where] = v
        out.append(w)
    wtn = np.full(total, -5, dtype=np.int64)
    wtn[where] = tn
    return (*out, wtn), where


def _assert_same_up_to_indices(compact, gapped, where):
    """The gapped run is the compact run with frame indices mapped by ``where``."""
    thr, ef, ei, pf, pi = compact
    gthr, gef, gei, gpf, gpi = gapped
    keep = np.zeros(len(gthr), dtype=bool)
    keep[where] = True
    np.testing.assert_array_equal(gthr[where], thr)
    assert np.isnan(gthr[~keep]).all()
    mapped = ei.copy()
    mapped[:, :3] = where[ei[:, :3]]   # start, end and maximum frame
    np.testing.assert_array_equal(gei, mapped)
    np.testing.assert_array_equal(gef, ef)
    mapped = pi.copy()
    mapped[:, :2] = where[pi[:, :2]]   # event start and peak frame
    np.testing.assert_array_equal(gpi, mapped)
    np.testing.assert_array_equal(gpf, pf)


def test_a_gap_inside_an_event_does_not_count_towards_max_frames():
    """60 frames over an object with 40 readings missing among them: 60 frames
    with a statistic, under the limit of 80; on the old kernel the 100 elapsed
    frames aborted it (no event)."""
    quiet = np.ones(200)
    high = np.full(60, 8.0)
    s = np.concatenate([quiet, high[:30], np.full(40, np.nan), high[30:], quiet])
    n = s.size
    z = np.zeros(n)
    tn = np.arange(n, dtype=np.int64)
    thr, ef, ei, pf, pi = _kernel(s, z, z, z, tn, [], max_frames=80)
    assert ei[:, [0, 1, 3, 5]].tolist() == [[200, 299, 60, 0]]   # whole, not aborted
    # Detector level: one alarm over the object.
    al = detect_emi(s, max_frames=80, min_frames=5, warmup=20)
    assert al["start_index"].tolist() == [200] and al["end_index"].tolist() == [299]


def test_max_frames_aborts_at_the_limit_of_frames_with_a_statistic():
    """A level step (the statistic stays at 8) with a gap of 30 missing frames
    soon after it starts: the event is aborted at its 80th frame with a
    statistic, and the next one starts right after that frame.  The old kernel
    aborted it 30 frames early (at 80 elapsed frames)."""
    s = np.concatenate([np.ones(200), np.full(10, 8.0), np.full(30, np.nan),
                        np.full(300, 8.0)])
    n = s.size
    z = np.zeros(n)
    tn = np.arange(n, dtype=np.int64)
    thr, ef, ei, pf, pi = _kernel(s, z, z, z, tn, [], max_frames=80)
    # frames 200..209 and 240..309 are the first 80 with a statistic; frame 310
    # is the 81st (age 80): aborted there, the next event starts at 311
    assert ei[0].tolist() == [200, 309, 200, 80, 200, 1]
    assert ei[1, 0] == 311
    # the same stream without the gap: aborted at the same frame with a statistic
    c = np.concatenate([s[:210], s[240:]])
    z = np.zeros(c.size)
    cthr, cef, cei, cpf, cpi = _kernel(c, z, z, z, np.arange(c.size, dtype=np.int64), [],
                                       max_frames=80)
    assert cei[0].tolist() == [200, 279, 200, 80, 200, 1] and cei[1, 0] == 281


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(300, 2000),
       gaps=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 60)), min_size=1,
                     max_size=12),
       max_frames=st.sampled_from([0, 25, 60, 300]), hold=st.integers(0, 5),
       warmup=st.integers(0, 60), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_missing_frames_change_nothing_but_frame_indices(seed, n, gaps, max_frames, hold,
                                                         warmup, cuts):
    """Cutting the missing frames out of a stream gives the same thresholds,
    events (every column) and peaks, at the mapped frame indices; and the
    gapped stream chunked anywhere gives bit-identical output to one call."""
    lane = _lane(seed, n)
    gapped, where = _with_gaps(lane, gaps)
    kw = dict(warmup=warmup, hold=hold, max_frames=max_frames)
    whole = _kernel(*gapped, [], **kw)
    _assert_same_up_to_indices(_kernel(*lane, [], **kw), whole, where)
    for a, b in zip(whole, _kernel(*gapped, cuts, **kw), strict=True):
        np.testing.assert_array_equal(a, b)


def _stream(s, x, y, t, cuts, **kw):
    det = EMIDetector(**kw)
    edges = sorted({0, s.size, *(c % (s.size + 1) for c in cuts)})
    parts = [det.process(s[a:b], x[a:b], y[a:b], t[a:b])
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return concat_alarms([*parts, det.finish()])


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 30_000), max_size=8), seed=st.integers(0, 3))
def test_alarms_with_missing_frames_stream_as_batch(cuts, seed):
    """Alarms of a sweep lane with dropped readings inside object passages and a
    short ``max_frames`` (aborts happen): streaming over any chunking equals
    the batch result bit for bit."""
    rng = np.random.default_rng(seed)
    n = 20_000
    x = 0.5 + 0.5 * np.sin(np.arange(n) / 700.0)
    y = np.arange(n) * 2e-5
    t = 1_772_352_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    s = np.abs(1 + 0.3 * rng.standard_normal(n))
    for ox, oy, amp in [(0.3, 0.05, 30.0), (0.7, 0.2, 60.0), (0.5, 0.3, 15.0)]:
        s += amp * np.exp(-((x - ox) ** 2 + (y - oy) ** 2) / (2 * 0.05**2))
    s[12_000:14_000] += 10.0   # a soil patch: a long event, aborted
    for c in np.flatnonzero(s > 8.0)[::400]:
        s[c:c + int(rng.integers(1, 40))] = np.nan
    kw = dict(max_frames=150, warmup=100, release_time=1.0 + seed)
    batch = detect_emi(s, x, y, t, **kw)
    stream = _stream(s, x, y, t, cuts, **kw)
    assert batch["x"].size > 0
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(stream[k], batch[k], err_msg=k)


def test_state_arrays_of_the_wrong_size_are_refused():
    """The event age takes a state slot more: arrays sized for the old layout
    are refused instead of written past their end."""
    s = np.ones(3)
    z = np.zeros(3)
    args = (s, z, z, z, np.arange(3, dtype=np.int64), np.empty(3))
    rows = (np.empty((4, _detect.NSF)), np.empty((4, _detect.NSI), np.int64),
            np.empty((8, _detect.NPF)), np.empty((8, _detect.NPI), np.int64))
    short = (np.zeros(_detect.NFS), np.zeros(_detect.NIS - 1, np.int64))
    want = f"{_detect.NIS} integers, got {_detect.NFS} and {_detect.NIS - 1}"
    with pytest.raises(ValueError, match=want):
        _detect.hysteresis_run(*args, *short, *rows, 0.01, 6.0, 3.0, 4.0, 2.5, 3.0, 0, 0,
                               2.0, 0)
    with pytest.raises(ValueError, match="flush_event: state arrays"):
        _detect.flush_event(*short, *rows)
