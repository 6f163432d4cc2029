"""The shape-novelty channel: a small object on a stronger one's flank, found by
its other decay (``emi.matched`` ``novelty_window``, the detector's
``shape_radius``)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_positions import _swings

from demine.detect import ALARM_FIELDS, MATCHED_PARAMS, EMIDetector, concat_alarms, detect_emi
from demine.emi import MatchedDetect
from demine.errors import ConfigError
from demine.pipeline import StreamDetector

T0 = 1_772_352_000_000_000_000
RATE = 1000.0
GATES = np.geomspace(12e-6, 1e-3, 16)
# a steel case's slow decay, and a small fuze's fast one
SLOW = (GATES / GATES[0]) ** -0.5
FAST = np.exp(-GATES / 6e-5) * (GATES / GATES[0]) ** -0.5
STRONG = (0.3, 1.0)
WEAK = (0.75, 1.0)  # 0.45 m from the strong object, along the swings
PARAMS = dict(MATCHED_PARAMS, shape_radius=0.4)


def _gates(objects, *, seconds=70.0, seed=1):
    """Readings (n, 16) in receiver-noise units of a sweep over objects ``(x, y,
    amplitude, shape, scale)`` whose response falls off like a dipole's with
    the horizontal offset (``scale``: depth plus head height, m)."""
    x, y, _ = _swings(seconds, width=1.0, speed=0.7, advance=0.04, rate=RATE)
    y = y + 0.7
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((x.size, GATES.size))
    for ox, oy, amp, shape, scale in objects:
        fall = (1.0 + ((x - ox) ** 2 + (y - oy) ** 2) / scale**2) ** -3
        g += amp * fall[:, None] * (shape / shape[0])[None, :]
    t = T0 + np.arange(x.size, dtype=np.int64) * 1_000_000
    return g, x, y, t


@functools.cache
def _lane(weak_shape: str = "fast"):
    # a large deep object's wide response, and a small shallow one on its flank
    objects = [(*STRONG, 4000.0, SLOW, 0.2)]
    if weak_shape:
        objects.append((*WEAK, 40.0, FAST if weak_shape == "fast" else SLOW, 0.08))
    g, x, y, t = _gates(objects)
    out = MatchedDetect(window=31, min_noise=1.0, novelty_window=500).process(g)
    return out, x, y, t


def _alarms(out, x, y, t, **kw):
    pol = out[:, :8].mean(axis=1)
    return detect_emi(out[:, -1], x, y, t, pol, out[:, -2], **{**PARAMS, **kw})


def _near(al, point, r=0.1):
    return np.hypot(al["x"] - point[0], al["y"] - point[1]) < r


def test_a_weak_object_of_another_decay_beside_a_strong_one_gets_its_own_alarm():
    out, x, y, t = _lane("fast")
    without = _alarms(out, x, y, t, shape_radius=0.0)
    # the statistic alone: one alarm, on the strong object; the weak one is
    # its shoulder
    assert without["x"].size == 1 and _near(without, STRONG).all()
    assert not without["shape"].any()
    al = _alarms(out, x, y, t)
    assert al["x"].size == 2
    strong, weak = _near(al, STRONG), _near(al, WEAK)
    assert strong.sum() == 1 and weak.sum() == 1
    assert al["shape"][weak].all() and not al["shape"][strong].any()
    # scored by its novelty: far below the strong object, above the noise
    assert 8.0 < al["score"][weak][0] < 0.2 * al["score"][strong][0]


@pytest.mark.parametrize("weak", ["", "slow"])
def test_one_decay_law_gives_no_shape_alarm(weak):
    """An object alone, or a weak one decaying like the strong one, leaves
    little novelty and no shape alarm (the limit: the channel sees a
    different decay, not a second object of the same)."""
    out, x, y, t = _lane(weak)
    nov, stat = out[1000:, -2], out[1000:, -1]
    # (the noise scale's slow changes under a long event move the normalised
    # shape a little; a fuze beside it gives 25-40 here)
    assert np.nanmax(nov) < 0.002 * np.nanmax(stat)
    al = _alarms(out, x, y, t)
    assert _near(al, STRONG).sum() == 1 and not al["shape"].any()


def test_shape_objects_near_the_statistic_s_alarms_are_dropped():
    out, x, y, t = _lane("fast")
    # the weak object is 0.45 m away: within a radius of 0.5 m it is taken for
    # the strong object's own shape changing
    al = _alarms(out, x, y, t, shape_radius=0.5)
    assert al["x"].size == 1 and not al["shape"].any()


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 70_000), max_size=6), wait=st.sampled_from([0.0, 5.0, 120.0]))
def test_any_chunking_gives_the_same_alarms(cuts, wait):
    g, x, y, t = _gates([(*STRONG, 4000.0, SLOW, 0.2), (*WEAK, 40.0, FAST, 0.08)],
                        seconds=45.0, seed=4)
    edges = sorted({0, len(g), *(c % (len(g) + 1) for c in cuts)})
    stage = MatchedDetect(window=31, min_noise=1.0, novelty_window=500)
    det = EMIDetector(**{**PARAMS, "shape_wait": wait})
    parts, outs = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        o = stage.process(g[a:b])
        outs.append(o)
        parts.append(det.process(o[:, -1], x[a:b], y[a:b], t[a:b], o[:, :8].mean(axis=1),
                                 o[:, -2]))
    parts.append(det.finish())
    stream = concat_alarms(parts)
    whole = MatchedDetect(window=31, min_noise=1.0, novelty_window=500).process(g)
    np.testing.assert_array_equal(np.concatenate(outs), whole)
    batch = _alarms(whole, x, y, t, shape_wait=wait)
    assert batch["shape"].any()
    ob, os_ = np.lexsort((batch["x"], batch["time"])), np.lexsort((stream["x"], stream["time"]))
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(stream[k][os_], batch[k][ob], err_msg=k)


def _reference(x, window, novelty_window, scale):
    """Plain NumPy: the integrated gates with a fixed noise scale, the
    statistic, and the novelty against the strongest of the last frames."""
    z = x / scale
    n = len(z)
    u = np.empty_like(z)
    for i in range(n):
        lo = max(0, i - window + 1)
        u[i] = z[lo:i + 1].sum(axis=0) / np.sqrt(i + 1 - lo)
    stat = np.sqrt((u**2).mean(axis=1))
    nov = np.empty(n)
    for i in range(n):
        lo = max(0, i - novelty_window + 1)
        w = stat[lo:i + 1]
        j = lo + np.flatnonzero(w == w.max())[-1]  # the latest of equals
        d = u[j] / np.linalg.norm(u[j])
        nov[i] = np.sqrt(max(u[i] @ u[i] - (u[i] @ d) ** 2, 0.0) / x.shape[1])
    return stat, nov


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_kernel_equals_plain_numpy(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 6)) * 0.01
    x[700:1100] += np.hanning(400)[:, None] * np.linspace(1.0, 0.2, 6)
    x[1300:1500] += np.hanning(200)[:, None] * np.linspace(0.1, 0.3, 6)
    x = x.astype(dtype)
    # min_noise far above the noise: the scale is min_noise throughout
    out = MatchedDetect(window=31, min_noise=100.0, novelty_window=700).process(x)
    stat, nov = _reference(x.astype(np.float64), 31, 700, 100.0)
    # (where a frame is its own dominant its novelty is 0 up to rounding, which
    # the square root lifts to ~1e-8 of the statistic)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    atol = (1e-3 if dtype == np.float32 else 1e-7) * stat.max()
    np.testing.assert_allclose(out[:, -1], stat, rtol=tol, atol=atol)
    np.testing.assert_allclose(out[:, -2], nov, rtol=100 * tol, atol=atol)
    assert (nov > 0.1 * stat.max()).any()  # the second bump is novel
    assert out.shape == (3000, 8)  # gates, novelty, statistic


def test_missing_readings_give_nan_and_change_nothing_else():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, 4))
    x[400:700] += 30 * np.hanning(300)[:, None] * np.array([1.0, 0.6, 0.3, 0.1])
    holed = np.insert(x, [500, 900], np.nan, axis=0)  # rows 500 and 901
    a = MatchedDetect(window=31, novelty_window=300).process(x)
    b = MatchedDetect(window=31, novelty_window=300).process(holed)
    assert np.isnan(b[[500, 901], -2]).all()
    np.testing.assert_array_equal(np.delete(b, [500, 901], axis=0), a)


def test_output_columns_and_options():
    x = np.random.default_rng(0).standard_normal((100, 5))
    assert MatchedDetect(window=5).process(x).shape == (100, 6)  # off: gates, statistic
    assert MatchedDetect(window=5, novelty_window=50, output="statistic").process(x).shape \
        == (100, 2)
    assert MatchedDetect(window=5, novelty_window=50).params()["novelty_window"] == 50
    with pytest.raises(ConfigError, match="novelty_window"):
        MatchedDetect(novelty_window=-1)
    with pytest.raises(ConfigError, match="novelty_window"):
        MatchedDetect(novelty_window=2.5)
    with pytest.raises(ConfigError, match="novelty_window"):
        MatchedDetect(novelty_window=10**7)  # 1.3 GB of state for 16 gates
    with pytest.raises(ConfigError, match="shape_radius"):
        EMIDetector(shape_radius=-0.1)
    with pytest.raises(ConfigError, match="shape_wait"):
        EMIDetector(shape_wait=float("nan"))


def test_stream_detector_labels_shape_alarms():
    g, x, y, t = _gates([(*STRONG, 4000.0, SLOW, 0.2), (*WEAK, 40.0, FAST, 0.08)])
    chain = {"chain": {"name": "t", "kind": "emi"},
             "step": [{"name": "emi.matched", "window": 31, "min_noise": 1.0,
                       "novelty_window": 500}]}
    labels = {}
    for nw in (0, 500):
        chain["step"][0]["novelty_window"] = nw
        det = StreamDetector("emi", {"gate_times": GATES.tolist(), "sample_rate": RATE}, chain,
                             {"shape_radius": 0.4})
        parts = [det.process(g[a:a + 7000], x[a:a + 7000], y[a:a + 7000], t[a:a + 7000])
                 for a in range(0, len(g), 7000)]
        parts.append(det.finish())
        labels[nw] = sorted(lab for p in parts for lab in p["label"])
    assert labels[0] == ["emi-alarm"]
    assert labels[500] == ["emi-alarm", "emi-shape-alarm"]


def test_a_stream_ending_soon_after_the_weak_object_keeps_its_shape_alarm():
    """finish() closes the shape channel's open clusters before judging them."""
    out, x, y, t = _lane("fast")
    full = _alarms(out, x, y, t)
    weak = full["shape"] == 1
    stop = int(full["end_index"][weak][0]) + 200
    cut = _alarms(out[:stop], x[:stop], y[:stop], t[:stop])
    assert (cut["shape"] == 1).sum() == 1
    assert _near(cut, WEAK)[cut["shape"] == 1].all()


def test_a_shape_alarm_comes_once_the_clusters_beside_it_are_released():
    """A shape object waits for the statistic's clusters near it (the strong
    object's, open as long as the sweep reaches it), then is judged: its alarm
    comes with the strong object's, not ``shape_wait`` (120 s, longer than
    this 70 s stream) after it is due, nor only when the stream ends."""
    out, x, y, t = _lane("fast")
    pol = out[:, :8].mean(axis=1)
    det = EMIDetector(**PARAMS)
    assert det.shape_wait > (t[-1] - t[0]) / 1e9
    when = {}  # shape flag -> stream time (s) of the call that returned the alarm
    for a in range(0, len(out), 500):
        r = det.process(out[a:a + 500, -1], x[a:a + 500], y[a:a + 500], t[a:a + 500],
                        pol[a:a + 500], out[a:a + 500, -2])
        for k in range(r["x"].size):
            when[int(r["shape"][k])] = (t[min(a + 500, len(t)) - 1] - t[0]) / 1e9
    assert det.finish()["x"].size == 0
    assert sorted(when) == [0, 1]
    # not before the strong object's cluster is released (its alarm might
    # have been within shape_radius), and long before the stream ends
    assert when[0] <= when[1] < 0.6 * (t[-1] - t[0]) / 1e9


@settings(max_examples=10, deadline=None)
@given(step=st.sampled_from([37, 250, 1000, 6000]), wait=st.sampled_from([0.0, 3.0]),
       release=st.sampled_from([0.3, 1.0, 3.0]))
def test_fine_uniform_chunks_give_the_same_alarms(step, wait, release):
    """Short waits and releases, so that shape objects are judged while other
    clusters and events are still open at the cuts."""
    g, x, y, t = _gates([(*STRONG, 4000.0, SLOW, 0.2), (*WEAK, 40.0, FAST, 0.08),
                         (0.6, 1.3, 25.0, FAST, 0.08)], seconds=45.0, seed=5)
    out = MatchedDetect(window=31, min_noise=1.0, novelty_window=500).process(g)
    pol = out[:, :8].mean(axis=1)
    kw = {**PARAMS, "shape_wait": wait, "release_time": release}
    det = EMIDetector(**kw)
    parts = [det.process(out[a:a + step, -1], x[a:a + step], y[a:a + step], t[a:a + step],
                         pol[a:a + step], out[a:a + step, -2])
             for a in range(0, len(out), step)]
    stream = concat_alarms([*parts, det.finish()])
    batch = detect_emi(out[:, -1], x, y, t, pol, out[:, -2], **kw)
    ob, os_ = np.lexsort((batch["x"], batch["time"])), np.lexsort((stream["x"], stream["time"]))
    for k in ALARM_FIELDS:
        np.testing.assert_array_equal(stream[k][os_], batch[k][ob], err_msg=k)


def test_the_dominant_of_equal_statistics_is_the_latest():
    """Frames (3, 1) then (1, 3): equal statistics; the second is its own
    dominant (novelty 0), the third, equal to the second, too."""
    x = np.array([[3.0, 1.0], [1.0, 3.0], [1.0, 3.0], [2.0, 0.0]])
    out = MatchedDetect(window=1, min_noise=1e-3, novelty_window=10, warmup=0).process(x * 1e-3)
    np.testing.assert_array_equal(out[:3, -2], 0.0)
    assert out[0, -1] == out[1, -1]
    assert out[3, -2] > 0  # weaker, and turned away from the latest dominant


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 4000), max_size=6), f32=st.booleans())
def test_the_novelty_column_does_not_depend_on_the_chunking(cuts, f32):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4000, 5))
    x[1000:1600] += 40 * np.hanning(600)[:, None] * np.array([1.0, 0.7, 0.4, 0.2, 0.1])
    x[1500:1700] += 10 * np.hanning(200)[:, None] * np.array([0.1, 0.2, 0.4, 0.7, 1.0])
    x[[300, 1550]] = np.nan
    if f32:
        x = x.astype(np.float32)
    stage = MatchedDetect(window=31, novelty_window=400)
    stage.process(x[:777])  # state that reset() must forget
    stage.reset()
    edges = sorted({0, len(x), *cuts})
    got = np.concatenate([stage.process(x[a:b]) for a, b in zip(edges[:-1], edges[1:],
                                                                 strict=True)])
    want = MatchedDetect(window=31, novelty_window=400).process(x)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == x.dtype


def test_a_novelty_of_the_wrong_length_is_named():
    s = np.ones(10)
    with pytest.raises(ConfigError, match="novelty has 9 values for 10"):
        EMIDetector(shape_radius=0.4).process(s, novelty=np.ones(9))


def test_the_threshold_knob_moves_the_shape_channel_too():
    """The console's threshold command (``set_threshold``) reaches the shape
    channel as well: a threshold above the shape alarm's novelty set while the
    stream runs gives the alarms of a detector started with it."""
    out, x, y, t = _lane("fast")
    first = _alarms(out, x, y, t)
    shape = first["shape"].astype(bool)
    assert shape.sum() == 1
    high = 1.5 * first["score"][shape][0]
    assert high < first["score"][~shape].min()

    def run():
        det = EMIDetector(**PARAMS)
        parts = []
        for a, b, thr in ((0, 3000, None), (3000, len(out), high)):
            if thr is not None:
                assert det._shape is not None  # the channel runs already
                det.set_threshold(thr)
            o = out[a:b]
            parts.append(det.process(o[:, -1], x[a:b], y[a:b], t[a:b],
                                     o[:, :8].mean(axis=1), o[:, -2]))
        parts.append(det.finish())
        return concat_alarms(parts)

    moved, started = run(), _alarms(out, x, y, t, threshold=high)
    assert not moved["shape"].any() and moved["x"].size == 1
    # (the strong object's event began under the old threshold, so only where
    # it begins differs)
    for k in ("x", "y", "score", "time", "shape"):
        np.testing.assert_array_equal(moved[k], started[k], err_msg=k)
    with pytest.raises(ConfigError, match="threshold"):
        EMIDetector(**PARAMS).set_threshold(0.0)
