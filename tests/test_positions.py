"""Local metric frame and position interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.errors import ConfigError
from demine.positions import LocalFrame, interpolate_positions


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
