"""EMI alarm detector: hysteresis, minimum extent, adaptive threshold, merging."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_positions import _cart, _swings

from demine.detect import ALARM_FIELDS, MATCHED_PARAMS, EMIDetector, concat_alarms, detect_emi
from demine.errors import ConfigError
from demine.evaluate import evaluate

T0 = 1_772_352_000_000_000_000
RATE = 1000.0


def _sweep(seconds: float, *, width: float = 1.0, speed: float = 0.7, advance: float = 0.04):
    """Side-to-side sweep across x in [0, width], advancing ``advance`` per swing."""
    x, y, _ = _swings(seconds, width=width, speed=speed, advance=advance, rate=RATE)
    return x, y, T0 + np.arange(x.size, dtype=np.int64) * 1_000_000


def _statistic(x, y, objects, *, seed=0, gates=16, level=0.0, width=0.08):
    """RMS of noise-normalised gates: N(0, 1) noise plus each object's bump."""
    rng = np.random.default_rng(seed)
    a = np.full(x.size, level)
    for ox, oy, amp in objects:
        a += amp * np.exp(-((x - ox) ** 2 + (y - oy) ** 2) / (2 * width**2))
    z = rng.standard_normal((x.size, gates)) + a[:, None]
    return np.sqrt(np.mean(z**2, axis=1))


OBJECTS = [(0.3, 0.5, 40.0), (0.7, 1.2, 12.0), (0.5, 2.0, 400.0)]


@pytest.fixture(scope="module")
def lane():
    x, y, t = _sweep(90.0)  # 90 s: 2.2 m of lane
    return x, y, t, _statistic(x, y, OBJECTS)


def test_one_alarm_per_object_at_its_peak(lane):
    x, y, t, s = lane
    al = detect_emi(s, x, y, t)
    assert set(al) == set(ALARM_FIELDS)
    assert al["x"].size == 3
    order = np.argsort(al["y"])
    for k, (ox, oy, amp) in zip(order, OBJECTS, strict=True):
        assert np.hypot(al["x"][k] - ox, al["y"][k] - oy) < 0.03
        assert al["n_passes"][k] >= 3  # seen on several swings, merged
        assert amp * 0.8 < al["score"][k] < amp * 1.3
        assert al["time"][k] == t[al["peak_index"][k]]
    # Evaluated against the truth: every object found, no false alarm.
    truth = {"x": np.array([o[0] for o in OBJECTS]), "y": np.array([o[1] for o in OBJECTS])}
    r = evaluate(truth, al, path=np.column_stack([x, y]), footprint=0.24)
    assert r.pd == 1.0 and r.n_false_alarms == 0 and r.localisation["max"] < 0.03


@pytest.mark.parametrize("frame", ["utm", "rot90"])
def test_alarms_follow_the_position_frame(lane, frame):
    """Positions in another frame (UTM-sized coordinates, or the lane swept along
    the other axis) give the same alarms, moved with the frame: nothing in the
    detector depends on where the lane is or which way it runs."""
    x, y, t, s = lane
    ref = detect_emi(s, x, y, t)
    if frame == "utm":
        x0, y0 = 512_345.0, 4_096_789.0
        got = detect_emi(s, x + x0, y + y0, t)
        gx, gy = got["x"] - x0, got["y"] - y0
    else:
        got = detect_emi(s, -y, x, t)
        gx, gy = got["y"], -got["x"]
    assert got["x"].size == ref["x"].size == 3
    np.testing.assert_allclose(gx, ref["x"], atol=1e-6)
    np.testing.assert_allclose(gy, ref["y"], atol=1e-6)
    np.testing.assert_array_equal(got["score"], ref["score"])
    np.testing.assert_array_equal(got["n_passes"], ref["n_passes"])


def test_noise_alone_raises_no_alarm():
    x, y, t = _sweep(60.0)
    s = _statistic(x, y, [], seed=3)
    assert detect_emi(s, x, y, t)["x"].size == 0


def _batch_and_stream(s, x, y, t, cuts, **kw):
    """Alarms of one call, and of the stream cut at ``cuts`` (frame indices)."""
    batch = detect_emi(s, x, y, t, **kw)
    det = EMIDetector(**kw)
    edges = sorted({0, s.size, *(c % (s.size + 1) for c in cuts)})
    parts = [det.process(s[a:b], x[a:b], y[a:b], t[a:b])
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return batch, concat_alarms([*parts, det.finish()])


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 90_000), max_size=8), seed=st.integers(0, 3))
def test_streaming_equals_batch_for_any_chunking(lane, cuts, seed):
    x, y, t, s = lane
    # odd seeds: the parameters that go with emi.matched (prominence split,
    # min_passes, no max_frames abort)
    kw = {} if seed % 2 == 0 else dict(MATCHED_PARAMS, threshold=4.0, threshold_lo=2.5)
    kw["release_time"] = 1.0 + seed
    batch, stream = _batch_and_stream(s, x, y, t, cuts, **kw)
    ob, os_ = np.lexsort((batch["x"], batch["time"])), np.lexsort((stream["x"], stream["time"]))
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(stream[k][os_], batch[k][ob], err_msg=k)


def _lines(length: float = 6.0, *, spacing: float = 0.1, n_lines: int = 6, speed: float = 0.7,
           turn: float = 0.5):
    """A cart: straight lines along y, ``spacing`` apart in x, alternate directions,
    ``turn`` seconds stepping across between lines."""
    x, y, _ = _cart(n_lines, length=length, spacing=spacing, speed=speed, turn=turn,
                    rate=RATE, x0=0.2)
    return x, y, T0 + np.arange(x.size, dtype=np.int64) * 1_000_000


LINE_OBJECTS = [(0.35, 1.0, 60.0), (0.45, 3.0, 30.0), (0.55, 5.2, 200.0)]


@pytest.fixture(scope="module")
def cart():
    x, y, t = _lines()
    return x, y, t, _statistic(x, y, LINE_OBJECTS, seed=5, width=0.06)


def test_a_cart_s_lines_are_one_pass_each(cart):
    """A cart passes over an object again only a whole line later (~9 s here,
    up to two lines for an object near a line's start): the detector waits for
    that pass (the durations of the passes come from the path), so each object
    is one alarm seen on its neighbouring lines, not one alarm per line or
    none (one pass each, below ``min_passes``)."""
    x, y, t, s = cart
    kw = dict(MATCHED_PARAMS, threshold=4.0, threshold_lo=2.5)
    al = detect_emi(s, x, y, t, **kw)
    assert al["x"].size == len(LINE_OBJECTS)
    order = np.argsort(al["y"])
    for k, (ox, oy, _) in zip(order, LINE_OBJECTS, strict=True):
        assert np.hypot(al["x"][k] - ox, al["y"][k] - oy) < 0.05
        assert al["n_passes"][k] >= 2
    # waiting only release_time (5 s): the next line comes back in time only
    # near the ends of the lines; an object in the middle is seen on one pass
    # at a time and dropped, a strong one gives an alarm per pair of lines
    old = detect_emi(s, x, y, t, **kw, release_passes=0.0)

    def near(a, ox, oy):
        return np.count_nonzero(np.hypot(a["x"] - ox, a["y"] - oy) < 0.1)

    assert [near(old, ox, oy) for ox, oy, _ in LINE_OBJECTS] == [1, 0, 2]
    # the wait is capped by max_release_time
    capped = detect_emi(s, x, y, t, **kw, max_release_time=5.0)
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(capped[k], old[k], err_msg=k)


def test_lines_wider_than_the_coil_s_reach_need_one_pass():
    """Under lines 0.25 m apart an object right under one line gives nothing
    on the next: ``min_passes`` applies only while the passes measured on the
    path lie within ``max_pass_spacing``; noise alone still raises nothing."""
    x, y, t = _lines(spacing=0.25)
    objects = [(0.45, 1.0, 60.0), (0.7, 3.0, 30.0), (0.95, 5.2, 200.0)]
    s = _statistic(x, y, objects, seed=6, width=0.06)
    kw = dict(MATCHED_PARAMS, threshold=4.0, threshold_lo=2.5)
    al = detect_emi(s, x, y, t, **kw)
    assert al["x"].size == len(objects)
    for k, (ox, oy, _) in zip(np.argsort(al["y"]), objects, strict=True):
        assert np.hypot(al["x"][k] - ox, al["y"][k] - oy) < 0.03
        assert al["n_passes"][k] == 1
    assert detect_emi(s, x, y, t, **dict(kw, max_pass_spacing=0.0))["x"].size == 0
    assert detect_emi(_statistic(x, y, [], seed=7), x, y, t, **kw)["x"].size == 0
    # a side-to-side sweep advancing 4 cm a swing keeps min_passes: a one-pass
    # spike is dropped there
    xs, ys, ts = _sweep(20.0)
    spike = _statistic(xs, ys, [], seed=8)
    spike[12_000:12_030] += 40.0
    assert detect_emi(spike, xs, ys, ts, **kw)["x"].size == 0
    assert detect_emi(spike, xs, ys, ts, **dict(kw, min_passes=1))["x"].size == 1


def test_one_line_and_no_positions_need_one_pass():
    """On a single line (a track) every object is seen once, and without
    positions passes cannot be told apart: ``min_passes`` cannot apply."""
    x, y, t = _lines(n_lines=1)
    objects = [(0.2, 1.0, 60.0), (0.2, 3.0, 30.0), (0.2, 5.2, 200.0)]
    s = _statistic(x, y, objects, seed=9, width=0.06)
    kw = dict(MATCHED_PARAMS, threshold=4.0, threshold_lo=2.5)
    al = detect_emi(s, x, y, t, **kw)
    assert np.round(np.sort(al["y"]), 1).tolist() == [1.0, 3.0, 5.2]
    assert (al["n_passes"] == 1).all()
    assert detect_emi(s, x, y, t, **dict(kw, max_pass_spacing=0.0))["x"].size == 0
    assert detect_emi(s, None, None, t, **kw)["x"].size == 3
    # a cluster waits for the spacing of the passes to be known, up to
    # max_release_time after it was due: here 2 s after 5 s, so the object
    # passed at 1.4 s is released by the line's end (9.1 s), the others later
    det = EMIDetector(**dict(kw, max_release_time=2.0))
    assert np.round(det.process(s, x, y, t)["y"], 1).tolist() == [1.0]
    assert np.round(np.sort(det.finish()["y"]), 1).tolist() == [3.0, 5.2]


@functools.cache
def _other_path(kind):
    if kind == "line":
        x, y, t = _lines(n_lines=1)
        objects = [(0.2, 1.0, 60.0), (0.2, 3.0, 30.0), (0.2, 5.2, 200.0)]
    else:
        x, y, t = _lines(spacing=0.25)
        objects = [(0.45, 1.0, 60.0), (0.7, 3.0, 30.0), (0.95, 5.2, 200.0)]
    return x, y, t, _statistic(x, y, objects, seed=6, width=0.06)


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 60_000), max_size=8),
       path=st.sampled_from(["cart", "wide", "line"]))
def test_cart_streaming_equals_batch_for_any_chunking(cart, cuts, path):
    x, y, t, s = cart if path == "cart" else _other_path(path)
    kw = dict(MATCHED_PARAMS, threshold=4.0, threshold_lo=2.5)
    batch, stream = _batch_and_stream(s, x, y, t, cuts, **kw)
    assert stream["x"].size == batch["x"].size == 3
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(stream[k], batch[k], err_msg=k)


def _quiet(n=400):
    return np.ones(n)


def test_hysteresis_minimum_extent_and_hold():
    kw = dict(k_hi=0.0, k_lo=0.0, threshold=4.0, threshold_lo=2.5, warmup=10, hold=2,
              min_frames=5)
    # A 1-frame spike is dropped; a 5-frame response is an alarm at its peak.
    s = np.concatenate([_quiet(), [9.0], _quiet(50), [4.5, 6.0, 8.0, 3.0, 2.6], _quiet()])
    al = detect_emi(s, **kw)
    assert al["peak_index"].tolist() == [453]
    assert al["score"].tolist() == [8.0] and al["start_index"].tolist() == [451]
    assert al["end_index"].tolist() == [455]
    # Once started (>= 4) the event continues down to 2.5 and survives a 2-frame dip.
    s = np.concatenate([_quiet(), [5.0, 3.0, 2.6, 1.0, 1.0, 3.0, 2.7], _quiet()])
    al = detect_emi(s, **kw)
    assert al["start_index"].tolist() == [400] and al["end_index"].tolist() == [406]
    # A 3-frame dip ends it: two events, the second never reaches 4 so never starts.
    s = np.concatenate([_quiet(), [5.0, 3.0, 2.6, 3.0, 2.7, 1, 1, 1, 3.0, 3.5, 3.9], _quiet()])
    al = detect_emi(s, **dict(kw, min_frames=1))
    assert al["start_index"].tolist() == [400] and al["end_index"].tolist() == [404]


def test_minimum_extent_in_metres():
    s = np.concatenate([_quiet(), np.full(20, 8.0), _quiet()])
    x = np.zeros(s.size)
    y = np.arange(s.size) * 1e-3  # 1 mm per frame: the event covers 19 mm
    assert detect_emi(s, x, y, min_extent=0.01)["x"].size == 1
    assert detect_emi(s, x, y, min_extent=0.05)["x"].size == 0


def test_adaptive_threshold_follows_a_raised_background():
    # Magnetic soil: the statistic's background sits at 3.5 +- 0.3 over a long
    # stretch, above the fixed floor of 3.  A fixed threshold fires all along; the
    # CFAR threshold rises with the background and keeps only the real target.
    rng = np.random.default_rng(5)
    n = 60_000
    s = np.where(np.arange(n) < 10_000, 1.0, 3.5) + 0.3 * rng.standard_normal(n)
    s[40_000:40_200] += 30 * np.hanning(200)
    fixed = detect_emi(s, threshold=4.0, threshold_lo=3.9, k_hi=0.0, k_lo=0.0, min_frames=1)
    adaptive = detect_emi(s, threshold=3.0, threshold_lo=2.5)
    assert fixed["x"].size > 100
    assert adaptive["peak_index"].size == 1 and abs(adaptive["peak_index"][0] - 40_100) < 5
    det = EMIDetector(threshold=3.0, threshold_lo=2.5)
    det.process(s[:35_000])
    level, spread = det.background
    assert level == pytest.approx(3.5, abs=0.15) and spread == pytest.approx(0.3, rel=0.3)
    assert det.last_threshold[-1] > 4.5


def test_peaks_inside_one_event_are_split():
    # One event over two objects 0.5 m apart: a dip by more than `split` between them.
    n = 1000
    x = np.linspace(0, 1, n)
    bump = lambda c, a: a * np.exp(-((x - c) ** 2) / (2 * 0.08**2))  # noqa: E731
    s = 1 + bump(0.25, 50) + bump(0.75, 20)  # dips to ~1.5 between the objects
    s = np.concatenate([_quiet() / 2, s, _quiet() / 2])
    xx = np.concatenate([np.zeros(400), x, np.ones(400)])
    yy = np.zeros(s.size)
    kw = dict(threshold_lo=1.0, k_hi=0.0, k_lo=0.0)
    al = detect_emi(s, xx, yy, **kw)
    assert sorted(np.round(al["x"], 2).tolist()) == [0.25, 0.75]
    assert al["start_index"][0] == al["start_index"][1]  # one event, two peaks
    # Without splitting it is one alarm at the stronger peak.
    al1 = detect_emi(s, xx, yy, split=1e9, **kw)
    assert np.round(al1["x"], 2).tolist() == [0.25]


def test_merging_radius_release_and_side_lobes():
    x, y, t = _sweep(60.0)
    s = _statistic(x, y, [(0.3, 0.5, 40.0), (0.3, 1.1, 40.0)], seed=1)
    al = detect_emi(s, x, y, t)
    assert np.sort(np.round(al["y"], 1)).tolist() == [0.5, 1.1]
    # Revisiting a spot after more than release_time gives a new alarm there.
    x2 = np.concatenate([x[:20_000], x[:20_000]])
    y2 = np.concatenate([y[:20_000], y[:20_000]])
    s2 = np.concatenate([s[:20_000], s[:20_000]])
    assert detect_emi(s2, x2, y2, release_time=3.0)["x"].size == 2
    assert detect_emi(s2, x2, y2, release_time=60.0)["x"].size == 1
    # A weak detection 0.45 m from a 100x stronger one is its side lobe.
    s3 = _statistic(x, y, [(0.3, 0.5, 800.0), (0.75, 0.5, 6.0)], seed=2)
    assert detect_emi(s3, x, y, t)["x"].size == 1
    assert detect_emi(s3, x, y, t, dominance_ratio=0.0)["x"].size == 2


def test_missing_values_and_no_positions():
    s = np.concatenate([_quiet(), [8.0, np.nan, 9.0, 8.0, 7.0, 6.0], _quiet()])
    al = detect_emi(s, min_frames=5)
    assert al["peak_index"].tolist() == [402] and al["score"].tolist() == [9.0]
    assert np.isnan(al["x"]).all()
    # Without positions every event is its own alarm; time defaults to frame index.
    s2 = np.concatenate([s, s])
    al2 = detect_emi(s2, min_frames=5)
    assert al2["time"].tolist() == [402, 402 + s.size]
    # Polarity: frames of the wrong sign are quiet.
    assert detect_emi(s, polarity=-np.ones(s.size))["x"].size == 0


def test_bad_parameters_and_inputs():
    with pytest.raises(ConfigError, match="threshold_lo"):
        EMIDetector(threshold=3.0, threshold_lo=4.0)
    with pytest.raises(ConfigError, match="'split'"):
        EMIDetector(split=1.0)
    with pytest.raises(ConfigError, match="x has 3 values for 4"):
        detect_emi(np.ones(4), np.ones(3), np.ones(3))
    with pytest.raises(ConfigError, match="1-D"):
        detect_emi(np.ones((4, 3)))
    with pytest.raises(ConfigError, match="nanoseconds"):
        detect_emi(np.ones(4), time=np.ones(4))


def test_a_weaker_object_beside_a_strong_one_keeps_its_own_alarm():
    # 0.5 m apart, merged into one cluster by a generous merge radius: the weak
    # object's peak is far stronger than the strong one's response can be that far
    # off to the side, so the cluster closes as two alarms.
    x, y, t = _sweep(60.0)
    s = _statistic(x, y, [(0.3, 0.5, 400.0), (0.7, 0.8, 60.0)], seed=4)
    al = detect_emi(s, x, y, t, merge_radius=0.6)
    assert al["x"].size == 2
    for ox, oy in [(0.3, 0.5), (0.7, 0.8)]:
        assert np.min(np.hypot(al["x"] - ox, al["y"] - oy)) < 0.04
    assert detect_emi(s, x, y, t, merge_radius=0.6, tolerance=1e9)["x"].size == 1


# The kernel against a plain reference of its docstring, every column of its
# events and peaks: tests/test_kernels_reference.py (ref_hysteresis).


def test_prominence_split_keeps_a_small_object_beside_a_large_one():
    """The dipole-offset rule (link_radius 0) with a generous depth scale lets a
    large object 'explain' a small one 0.5 m away; the prominence rule keeps
    the small one, because the large one's response keeps falling towards it,
    and still gives one alarm for each object alone."""
    x, y, t = _sweep(60.0)
    objs = [(0.3, 0.5, 30000.0), (0.7, 0.8, 600.0)]
    s = _statistic(x, y, objs, width=0.1)
    kw = dict(threshold=20.0, threshold_lo=10.0, max_frames=0, merge_radius=0.6)
    old = detect_emi(s, x, y, t, depth_scale=0.6, **kw)
    new = detect_emi(s, x, y, t, link_radius=0.15, depth_scale=0.23, **kw)
    # a generous depth scale merges them again after the prominence split
    assert detect_emi(s, x, y, t, link_radius=0.15, depth_scale=0.6, **kw)["x"].size == 1
    assert old["x"].size == 1
    assert new["x"].size == 2
    for ox, oy, _ in objs:
        assert np.hypot(new["x"] - ox, new["y"] - oy).min() < 0.03
    for one in objs:
        s1 = _statistic(x, y, [one], width=0.1)
        assert detect_emi(s1, x, y, t, link_radius=0.15, depth_scale=0.23, **kw)["x"].size == 1


def test_detector_defaults_follow_the_chain():
    from demine.detect import detector_defaults
    from demine.process import default_chain, load_chain

    assert detector_defaults(default_chain("emi_default")) == MATCHED_PARAMS
    old = load_chain({"chain": {"name": "old", "kind": "emi"},
                      "step": [{"name": "emi.detect"}]})
    assert detector_defaults(old) == {}
    EMIDetector(**MATCHED_PARAMS)  # valid parameters


def test_min_passes_drops_single_pass_blips_but_not_objects():
    """An object under a sweep that advances less than the coil's footprint is
    seen on several passes; a blip (a knock, an excursion of 1/f noise) on one."""
    x, y, t = _sweep(60.0)
    s = _statistic(x, y, [(0.4, 0.6, 60.0)])
    blip = np.argmin(np.hypot(x - 0.8, y - 1.2))
    s[blip:blip + 20] += 50.0
    kw = dict(threshold=8.0, threshold_lo=5.0)
    one = detect_emi(s, x, y, t, **kw)
    two = detect_emi(s, x, y, t, min_passes=2, **kw)
    assert one["x"].size == 2
    assert two["x"].size == 1
    assert np.hypot(two["x"][0] - 0.4, two["y"][0] - 0.6) < 0.03
    assert two["n_passes"][0] >= 3
    # a strong enough blip is kept when strong_score exempts it
    assert detect_emi(s, x, y, t, min_passes=2, strong_score=40.0, **kw)["x"].size == 2
    with pytest.raises(ConfigError, match="min_passes"):
        EMIDetector(min_passes=0)


def test_one_pass_spike_and_dipole_lobes():
    """pass_ratio: a one-pass spike with faint neighbours is not an object;
    lobe_radius: the two equal lobes of a horizontal dipole are one alarm,
    placed between them."""
    x, y, t = _sweep(60.0)
    kw = dict(MATCHED_PARAMS)
    s = _statistic(x, y, [(0.3, 0.8, 9.0)])  # a faint response on several passes
    spike = np.argmin(np.hypot(x - 0.3, y - 0.8))
    s[spike:spike + 15] += 5000.0
    assert detect_emi(s, x, y, t, **dict(kw, pass_ratio=0.0))["x"].size == 1
    assert detect_emi(s, x, y, t, **kw)["x"].size == 0
    lobes = _statistic(x, y, [(0.5, 0.885, 800.0), (0.5, 1.115, 760.0)], width=0.03)
    apart = detect_emi(lobes, x, y, t, **dict(kw, lobe_radius=0.0))
    one = detect_emi(lobes, x, y, t, **kw)
    assert apart["x"].size == 2
    assert one["x"].size == 1
    assert abs(one["x"][0] - 0.5) < 0.03 and abs(one["y"][0] - 1.0) < 0.06
