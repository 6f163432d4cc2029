"""The compiled column selection behind the GPR detector's noise and clutter
scales: bit for bit what ``np.quantile``/``np.median`` along axis 0 give, so
the detector's alarms do not change with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from demine import _hyperbola as K
from demine.hyperbola import (
    _column_median,
    _column_quantile,
    _gradient,
    _quantile_1d,
    _top_eigenvectors,
    _window_scales_numpy,
)

_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),   # ties and signed zeros
    st.just(float("nan")),
)
_blocks = st.integers(1, 60).flatmap(lambda n: st.integers(1, 20).flatmap(
    lambda m: hnp.arrays(np.float32, (n, m), elements=_values)))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(_blocks, st.sampled_from([0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0, 1 / 3]))
def test_column_quantile_is_numpy_quantile(a, q):
    assert _same(_column_quantile(a, q), np.quantile(a, q, axis=0))


@settings(max_examples=300, deadline=None)
@given(_blocks)
def test_column_median_is_numpy_median(a):
    assert _same(_column_median(a), np.median(a, axis=0))


@pytest.mark.parametrize("shape", [(100, 512), (175, 512), (7, 3), (1, 5)])
@pytest.mark.parametrize("fill", ["noise", "zeros", "few values"])
def test_order_statistics_match_a_full_sort(shape, fill):
    rng = np.random.default_rng(3)
    if fill == "noise":
        a = rng.standard_normal(shape).astype(np.float32)
    elif fill == "zeros":
        a = np.zeros(shape, dtype=np.float32)
    else:
        a = rng.integers(0, 3, shape).astype(np.float32)
    srt = np.sort(a, axis=0)
    lo = np.empty(shape[1], dtype=np.float32)
    hi = np.empty(shape[1], dtype=np.float32)
    for k0 in sorted({0, shape[0] // 4, shape[0] // 2, shape[0] - 1}):
        k1 = min(k0 + 1, shape[0] - 1)
        K.column_order_stats(a, k0, k1, lo, hi)
        assert np.array_equal(lo, srt[k0]) and np.array_equal(hi, srt[k1])


def test_order_statistics_refuse_bad_ranks():
    a = np.zeros((4, 2), dtype=np.float32)
    out = np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError):
        K.column_order_stats(a, 2, 4, out, out.copy())
    with pytest.raises(ValueError):
        K.column_order_stats(a, 2, 1, out, out.copy())


_wvalues = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)


@st.composite
def _windows(draw):
    ns = draw(st.integers(1, 24))
    # up to 80 rows: the selection splits around a guess from 32 values on
    blk = draw(hnp.arrays(np.float32, (draw(st.integers(1, 80)), ns), elements=_wvalues))
    cl = draw(hnp.arrays(np.float32, (draw(st.integers(0, 80)), ns), elements=_wvalues))
    if draw(st.booleans()):
        zone = draw(hnp.arrays(np.float32, ns, elements=st.sampled_from([0.0, 1.0])))
    else:
        zone = np.zeros(0, dtype=np.float32)
    return blk, cl, zone


@settings(max_examples=400, deadline=None)
@given(_windows(), st.sampled_from([0.01, 0.25, 0.5, 0.99, 1 / 3]),
       st.floats(0.1, 3.0), st.floats(0.1, 3.0), st.booleans(), st.sampled_from([0.0, 0.5, 1.3]),
       st.integers(0, 4), st.sampled_from([0.0, 1e-3, 0.7]), st.data())
def test_window_scales_match_numpy_twin(win, q, nscale, cscale, robust, flat, half, floor,
                                        data):
    blk, cl, zone = win
    ns = blk.shape[1]
    # any guesses of the order statistics (NaN: none; wild; the last window's)
    guess = data.draw(hnp.arrays(np.float32, (3, ns), elements=_wvalues))
    with np.errstate(all="ignore"):   # inf - inf and the like: NaN, in both
        ref = _window_scales_numpy(blk, cl, q, nscale, cscale, robust, flat, half, zone, floor)
    for _ in range(2):
        out = np.empty(ns, dtype=np.float32)
        K.window_scales(blk, cl, q, nscale, cscale, robust, flat, half, zone, floor, out, guess)
        assert _same(out, ref)


@pytest.mark.parametrize("robust", [True, False])
def test_window_scales_match_numpy_twin_on_detector_sized_windows(robust):
    # the live detector's windows: 101 bins of noise, 176 of clutter, 512 samples
    rng = np.random.default_rng(5)
    blk = (rng.standard_normal((101, 512)) * np.linspace(0.1, 30, 512)).astype(np.float32)
    cl = (rng.standard_normal((176, 512)) + rng.standard_normal(512)).astype(np.float32)
    cl[:, 40:60] = np.round(cl[:, 40:60])   # ties
    blk[:, 100:110] = 0.0
    zone = (np.arange(512) < 300).astype(np.float32)
    guess = np.full((3, 512), np.nan, dtype=np.float32)
    for c, z in [(cl, zone), (cl, zone), (cl[:1], zone[:0]), (cl[:0], zone)]:
        ref = _window_scales_numpy(blk, c, 0.25, 1.3, 1.8, robust, 0.5, 6, z, 1e-3)
        for g in (guess, np.full((3, 512), np.nan, np.float32),
                  np.full((3, 512), 0.0, np.float32), guess[:, ::-1].copy()):
            out = np.empty(512, dtype=np.float32)
            K.window_scales(blk, c, 0.25, 1.3, 1.8, robust, 0.5, 6, z, 1e-3, out, g)
            assert _same(out, ref)
        assert np.all(out > 0)
        blk = np.roll(blk, 3, axis=0)   # the next window, with the last one's guesses
    # the windows' order statistics were kept (no median without robust)
    assert np.isfinite(guess[[0, 2]]).all() and np.isfinite(guess[1]).all() == robust


def test_window_scales_refuse_mismatched_shapes():
    out = np.empty(3, dtype=np.float32)
    z = np.zeros(0, dtype=np.float32)
    g = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ValueError):
        K.window_scales(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32),
                        0.25, 1.0, 1.0, True, 0.5, 0, z, 0.0, out, g[:2])
    with pytest.raises(ValueError):
        K.window_scales(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
                        0.25, 1.0, 1.0, True, 0.5, 0, z, 0.0, out, g)
    with pytest.raises(ValueError):
        K.window_scales(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32),
                        0.25, 1.0, 1.0, True, 0.5, 0, z, 0.0, out, g)
    with pytest.raises(ValueError):
        K.window_scales(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32),
                        0.25, 1.0, 1.0, True, 0.5, 0, np.zeros(2, np.float32), 0.0, out, g)


@st.composite
def _row_windows(draw):
    """A block of bins, a window of it, clutter rows and a surface zone given
    apart (as the detector hands them to ``window_scales_rows``)."""
    ns = draw(st.integers(1, 24))
    a = draw(hnp.arrays(np.float32, (draw(st.integers(1, 90)), ns), elements=_wvalues))
    lo = draw(st.integers(0, len(a) - 1))
    hi = draw(st.integers(lo + 1, len(a)))
    rows = np.asarray(draw(st.lists(st.integers(0, len(a) - 1), max_size=80)), dtype=np.int64)
    z0 = draw(st.integers(0, ns))
    nz = draw(st.integers(0, ns - z0))
    zb = draw(hnp.arrays(np.float32, (hi - lo, nz), elements=_wvalues))
    zc = draw(hnp.arrays(np.float32, (len(rows), nz), elements=_wvalues))
    zone = (draw(hnp.arrays(np.float32, ns, elements=st.sampled_from([0.0, 1.0])))
            if draw(st.booleans()) else np.zeros(0, dtype=np.float32))
    return a, lo, hi, rows, z0, zb, zc, zone


@settings(max_examples=400, deadline=None)
@given(_row_windows(), st.sampled_from([0.01, 0.25, 0.5, 1 / 3]), st.booleans(),
       st.integers(0, 3), st.data())
def test_window_scales_of_rows_in_place_are_those_of_the_blocks(win, q, robust, half, data):
    """The detector's windows read where they are (rows of the bins, the
    surface zone apart): the same scales, bit for bit, and the same guesses
    afterwards, as ``window_scales`` of the blocks put together."""
    a, lo, hi, rows, z0, zb, zc, zone = win
    ns = a.shape[1]
    nz = zb.shape[1]
    blk = a[lo:hi].copy()
    blk[:, z0:z0 + nz] = zb
    cl = a[rows].copy() if len(rows) else np.zeros((0, ns), dtype=np.float32)
    if len(rows):
        cl[:, z0:z0 + nz] = zc
    guess = data.draw(hnp.arrays(np.float32, (3, ns), elements=_wvalues))
    g1, g2 = guess.copy(), guess.copy()
    ref = np.empty(ns, dtype=np.float32)
    got = np.empty(ns, dtype=np.float32)
    with np.errstate(all="ignore"):
        K.window_scales(blk, cl, q, 1.3, 1.8, robust, 0.5, half, zone, 1e-3, ref, g1)
        K.window_scales_rows(a, lo, hi, rows, z0, zb, zc, q, 1.3, 1.8, robust, 0.5, half,
                             zone, 1e-3, got, g2)
    assert _same(got, ref)
    assert _same(g2, g1)


def test_window_scales_of_rows_refuse_rows_and_zones_that_do_not_fit():
    a = np.zeros((6, 4), dtype=np.float32)
    out = np.empty(4, dtype=np.float32)
    g = np.zeros((3, 4), dtype=np.float32)
    z = np.zeros(0, dtype=np.float32)
    rows = np.arange(0, 6, 2, dtype=np.int64)
    zb, zc = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    args = (0.25, 1.0, 1.0, True, 0.5, 0, z, 0.0, out, g)
    K.window_scales_rows(a, 1, 4, rows, 1, zb, zc, *args)   # (fits)
    for bad in [(a, 4, 4, rows, 1, zb, zc), (a, 1, 7, rows, 1, zb, zc),
                (a, 1, 4, rows + 2, 1, zb, zc), (a, 1, 4, rows - 1, 1, zb, zc),
                (a, 1, 4, rows, 3, zb, zc),
                (a, 1, 3, rows, 1, zb, zc), (a, 1, 4, rows, 1, zb, zc[:2]),
                (a, 1, 4, rows, 1, zb, zc[:, :1])]:
        with pytest.raises(ValueError):
            K.window_scales_rows(*bad, *args)


@settings(max_examples=400, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 50), elements=st.one_of(
    st.floats(-1e9, 1e9), st.sampled_from([0.0, -0.0, 2.0, float("inf"), float("nan")]))),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1 / 3]))
def test_quantile_1d_is_numpy_quantile(a, q):
    with np.errstate(all="ignore"):
        ref = float(np.quantile(a, q))
    got = _quantile_1d(a, q)
    if math.isnan(ref):
        assert math.isnan(got)
    else:   # the same number, signed zeros included
        assert got == ref and math.copysign(1.0, got) == math.copysign(1.0, ref)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(2, 40), elements=st.one_of(
    st.floats(-1e300, 1e300), st.sampled_from([0.0, -0.0, float("inf"), float("nan")]))))
def test_gradient_is_numpy_gradient(f):
    with np.errstate(all="ignore"):
        ref = np.gradient(f)
        got = _gradient(f)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert np.array_equal(got, ref, equal_nan=True)
    num = ~np.isnan(ref)
    assert np.array_equal(np.signbit(got[num]), np.signbit(ref[num]))   # signed zeros


def _ranges_numpy(g, pos, j0, j1, wa, wp, dx):
    """The detector's former NumPy code for the ranges of hyperbola_scan."""
    n = len(pos)
    gn = g[:n]
    jj = np.arange(j0, j1)
    lo = np.searchsorted(gn, g[jj] - wa, side="left")
    hi = np.searchsorted(gn, g[jj] + wa, side="right")
    plo = np.searchsorted(gn, g[jj] - wp, side="left")
    phi = np.searchsorted(gn, g[jj] + wp, side="right")
    plo2 = [plo[r] + np.searchsorted(pos[plo[r]:phi[r]], pos[j] - dx - 1e-12)
            for r, j in enumerate(jj)]
    phi2 = [plo[r] + np.searchsorted(pos[plo[r]:phi[r]], pos[j] + dx + 1e-12, side="right")
            for r, j in enumerate(jj)]
    out = np.zeros((4, n), dtype=np.int64)
    out[0, jj], out[1, jj], out[2, jj], out[3, jj] = lo, hi, plo2, phi2
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=60), st.integers(0, 3),
       st.integers(1, 12), st.integers(0, 5), st.sampled_from([0.0, 0.005, 0.02, 0.031]),
       st.booleans(), st.data())
def test_scan_ranges_match_numpy_searchsorted(steps, extra, wa, wp, dx, shuffle, data):
    g = np.cumsum(steps).astype(np.int64)          # bin indices with gaps
    pos = g * 0.01 + 0.004 * np.sin(g)             # positions within their bins
    if shuffle:   # positions out of order: the bisection must still be NumPy's
        pos = np.ascontiguousarray(pos[data.draw(st.permutations(range(len(pos))))])
    n = len(g) - min(extra, len(g) - 1)           # only the first n bins are searched
    pos = np.ascontiguousarray(pos[:n])
    j0 = data.draw(st.integers(0, n))
    j1 = data.draw(st.integers(j0, n))
    idx = np.zeros((4, n), dtype=np.int64)
    K.scan_ranges(g, pos, j0, j1, wa, wp, dx, idx)
    assert np.array_equal(idx, _ranges_numpy(g, pos, j0, j1, wa, wp, dx))


def test_scan_ranges_refuse_inconsistent_sizes():
    g = np.arange(5, dtype=np.int64)
    pos = g * 0.01
    with pytest.raises(ValueError):
        K.scan_ranges(g, pos, 0, 6, 2, 1, 0.01, np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError):
        K.scan_ranges(g[:3], pos, 0, 2, 2, 1, 0.01, np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError):
        K.scan_ranges(g, pos, 0, 2, 2, 1, 0.01, np.zeros((3, 5), np.int64))


def _top_eigenvector_2d(c, iterations=60):
    """The former k = 1 iteration, on an (n, 1) array (flattened for the norm)."""
    n = c.shape[0]
    v = np.eye(n, 1) + c[:, :1] / (np.abs(c).max() or 1.0)
    for _ in range(iterations):
        v = c @ v
        r = v.ravel(order="K")
        v /= math.sqrt(r.dot(r)) or 1.0
    sgn = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(1)])
    return np.ascontiguousarray(v * np.where(sgn == 0, 1.0, sgn))


@pytest.mark.parametrize("n", [3, 4, 7, 16, 38, 39, 40, 41, 64])
def test_top_eigenvector_as_a_vector_is_the_former_iteration(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((150, n)) * np.linspace(3, 0.1, n)
    for c in (x.T @ x, np.zeros((n, n)), np.eye(n)):
        got = _top_eigenvectors(c, 1)
        assert got.shape == (n, 1) and got.flags.c_contiguous
        assert np.array_equal(got, _top_eigenvector_2d(c))
