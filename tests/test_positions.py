"""Local metric frame and position interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.errors import ConfigError
from demine.positions import LocalFrame, PassTracker, PreparedTrack, interpolate_positions


@settings(max_examples=50, deadline=None)
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-80, 80), bearing=st.floats(-360, 360),
       x=st.floats(-500, 500), y=st.floats(-500, 500))
def test_round_trip(lon, lat, bearing, x, y):
    f = LocalFrame(lon, lat, bearing_deg=bearing)
    glon, glat = f.to_geo(x, y)
    bx, by = f.to_local(glon, glat)
    assert abs(bx - x) < 1e-6 and abs(by - y) < 1e-6


def test_scale_matches_known_distances():
    # One arc-second of latitude is ~30.7-30.9 m; of longitude at 60 N half of that.
    f = LocalFrame(10.0, 60.0)
    _, north = f.to_local(10.0, 60.0 + 1 / 3600)
    east, _ = f.to_local(10.0 + 1 / 3600, 60.0)
    assert 30.8 < north < 31.0
    assert abs(east - 30.92 * math.cos(math.radians(60)) * 1.0) < 0.2
    # Bearing 90: +y points east, +x points south.
    g = LocalFrame(10.0, 60.0, bearing_deg=90.0)
    x, y = g.to_local(10.0 + 1 / 3600, 60.0)
    assert abs(x) < 1e-9 and y > 15


def test_bad_origin():
    with pytest.raises(ConfigError, match="not a WGS 84 position"):
        LocalFrame(200.0, 0.0)


def test_interpolation_respects_gaps_and_ends():
    t = np.array([0, 1, 2, 10, 11]) * 1_000_000_000
    v = np.array([0.0, 1.0, 2.0, 10.0, np.nan])
    dst = np.array([-1, 0, 0.5, 1.5, 5, 10, 10.5]) * 1e9
    out = interpolate_positions(t, v, dst.astype("int64"), max_gap_s=2.0)
    np.testing.assert_allclose(out[[1, 2, 3, 5]], [0.0, 0.5, 1.5, 10.0])
    assert np.isnan(out[0])  # before the track
    assert np.isnan(out[4])  # inside an 8 s gap
    assert np.isnan(out[6])  # after the last valid fix (11 s has no fix)
    two = interpolate_positions(t, np.c_[v, -v], dst.astype("int64"), max_gap_s=2.0)
    np.testing.assert_allclose(two[3], [1.5, -1.5])


def _ref_interpolate(t_src, vals, t_dst, max_gap_s):
    """The plain per-call algorithm (what PreparedTrack splits in two): each
    column over its own valid values, gaps longer than max_gap_s by more than
    5 % (mapped fix times jitter) left NaN."""
    out = np.full((t_dst.size, vals.shape[1]), np.nan)
    for k in range(vals.shape[1]):
        ok = np.isfinite(vals[:, k])
        ts, vs = t_src[ok], vals[ok, k]
        if ts.size == 0:
            continue
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        out[:, k] = np.interp((t_dst - ts[0]).astype(float), (ts - ts[0]).astype(float),
                              vs, left=np.nan, right=np.nan)
        for i, t in enumerate(t_dst):
            j = np.searchsorted(ts, t, side="right")
            if 0 < j < ts.size and ts[j] - ts[j - 1] > max_gap_s * 1.05e9 and ts[j - 1] != t:
                out[i, k] = np.nan
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20_000_000_000), st.floats(-50, 50),
                          st.booleans(), st.booleans()), min_size=0, max_size=25),
       st.lists(st.integers(-1_000_000_000, 21_000_000_000), min_size=0, max_size=30),
       st.sampled_from([0.5, 1.0, 3.0]))
def test_prepared_track_matches_the_plain_algorithm(fixes, dst, max_gap_s):
    # x, y (a fix or not) and z (an altitude or not), as the recorder's track
    t_src = np.array([f[0] for f in fixes], dtype="int64")
    vals = np.array([[f[1], 2 * f[1], -f[1] if f[2] else np.nan] if f[3] else
                     [np.nan, np.nan, -f[1] if f[2] else np.nan] for f in fixes]).reshape(-1, 3)
    t_dst = np.array(dst, dtype="int64")
    track = PreparedTrack(t_src, vals, max_gap_s=max_gap_s)
    for _ in range(2):  # one preparation, several calls
        np.testing.assert_array_equal(track.at(t_dst),
                                      _ref_interpolate(t_src, vals, t_dst, max_gap_s))


def test_prepared_track_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        PreparedTrack(np.arange(3), np.arange(3.0))
    with pytest.raises(ValueError, match="3 positions for 2 times"):
        PreparedTrack(np.arange(2), np.zeros((3, 2)))


def _swings(seconds, *, width=1.0, speed=0.7, advance=0.04, rate=1000.0):
    """A side-to-side sweep across x in [0, width], advancing ``advance`` per
    swing; x, y (m) and time (s).  (test_detect and test_pipeline use it too.)"""
    t = np.arange(int(seconds * rate)) / rate
    swing = width / speed
    phase = (t / swing) % 2.0
    x = np.where(phase < 1, phase, 2 - phase) * width
    y = np.floor(t / swing) * advance + (t % swing) / swing * advance
    return x, y, t


def _cart(n_lines=5, *, length=5.0, spacing=0.2, speed=0.5, turn=1.0, rate=1000.0, x0=0.0):
    """A cart: lines along y from x = ``x0``, ``spacing`` apart, driven back and
    forth with a ``turn`` (s) across to the next; x, y (m) and time (s)."""
    xs, ys = [], []
    for k in range(n_lines):
        s = np.arange(int(length / speed * rate)) / rate * speed
        xs += [np.full(s.size, x0 + k * spacing), x0 + k * spacing + np.arange(int(turn * rate))
               / (turn * rate) * spacing]
        ys += [s if k % 2 == 0 else length - s, np.full(int(turn * rate), s[-1] if k % 2 == 0
                                                         else length - s[-1])]
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x, y, np.arange(x.size) / rate


@pytest.mark.parametrize("path", ["sweep", "cart"])
def test_pass_tracker_measures_passes(path):
    """Durations and spacings of the passes, from the positions alone: a swing
    (1 m at 0.7 m/s, 4 cm apart) and a cart's lines (5 m at 0.5 m/s with a 1 s
    step across, 0.2 m apart)."""
    if path == "sweep":
        x, y, t = _swings(30.0)
        want_duration, want_spacing, tol = 1.0 / 0.7, 0.04, 0.01
    else:
        x, y, t = _cart()
        want_duration, want_spacing, tol = 5.0 / 0.5 + 1.0, 0.2, 0.03
    tr = PassTracker()
    tr.track(x, y, t, 1000.0)
    end = float(t[-1])
    assert tr.duration(end) == pytest.approx(want_duration, rel=0.03)
    assert tr.spacing(end) == pytest.approx(want_spacing, abs=tol)
    assert tr.first_spacing < end
    # nothing known before the sensor has turned twice
    assert math.isnan(tr.spacing(tr.starts[1] - 1e-6))
    # the first pass (from where its direction was first taken) is remembered
    # after the lists are trimmed
    first = (tr.starts[0], tr.starts[1])
    assert (tr.first_start, tr.first_end) == first
    assert first[1] - first[0] == pytest.approx(want_duration, rel=0.08)
    tr.forget(end, keep=1)
    assert len(tr.starts) < 5 and (tr.first_start, tr.first_end) == first
    # standing still, or no positions: no pass at all
    still = PassTracker()
    still.track(np.full(5000, 0.3), np.full(5000, 0.2), t[:5000], 1000.0)
    still.track(np.full(5000, np.nan), np.full(5000, np.nan), t[5000:10000], 1000.0)
    assert still.starts == [] and math.isnan(still.spacing(end)) and still.duration(end) == 0.0
    assert still.first_start == still.first_end == math.inf


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 30_000), max_size=6))
def test_pass_tracker_does_not_depend_on_the_chunking(cuts):
    x, y, t = _swings(30.0)
    whole = PassTracker()
    whole.track(x, y, t, 1000.0)
    parts = PassTracker()
    edges = sorted({0, x.size, *(c % (x.size + 1) for c in cuts)})
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        parts.track(x[a:b], y[a:b], t[a:b], 1000.0)
    assert parts.starts == whole.starts and parts.spacings == whole.spacings
    assert (parts.first_start, parts.first_end) == (whole.first_start, whole.first_end)
