"""Local metric frame and position interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.errors import ConfigError
from demine.positions import LocalFrame, PreparedTrack, interpolate_positions


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
    """The plain per-call algorithm (what PreparedTrack splits in two)."""
    ok = np.all(np.isfinite(vals), axis=1)
    ts, vs = t_src[ok], vals[ok]
    out = np.full((t_dst.size, vals.shape[1]), np.nan)
    if ts.size == 0:
        return out
    order = np.argsort(ts, kind="stable")
    ts, vs = ts[order], vs[order]
    for k in range(vals.shape[1]):
        out[:, k] = np.interp((t_dst - ts[0]).astype(float), (ts - ts[0]).astype(float),
                              vs[:, k], left=np.nan, right=np.nan)
    for i, t in enumerate(t_dst):
        j = np.searchsorted(ts, t, side="right")
        if 0 < j < ts.size and ts[j] - ts[j - 1] > max_gap_s * 1e9 and ts[j - 1] != t:
            out[i] = np.nan
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20_000_000_000), st.floats(-50, 50),
                          st.booleans()), min_size=0, max_size=25),
       st.lists(st.integers(-1_000_000_000, 21_000_000_000), min_size=0, max_size=30),
       st.sampled_from([0.5, 1.0, 3.0]))
def test_prepared_track_matches_the_plain_algorithm(fixes, dst, max_gap_s):
    t_src = np.array([f[0] for f in fixes], dtype="int64")
    vals = np.array([[f[1], -f[1] if f[2] else np.nan] for f in fixes]).reshape(-1, 2)
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
