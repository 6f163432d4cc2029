"""GPR kernels against plain NumPy/SciPy twins, streaming = batch, NaN policy.

Every compiled stage of :mod:`demine.gpr` is compared with a reference twin
written here in plain NumPy/SciPy (float64), over random inputs and edge cases;
hypothesis then proves that cutting a stream into arbitrary chunks (down to one
trace) gives the same output as one call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from demine import gpr
from demine.errors import ConfigError
from demine.process import get_stage, load_chain, run_stage

DATA = Path(__file__).parents[1].parent / "shared" / "data" / "gpr"
DT = 16e-9 / 512  # reference radar: 512 samples over 16 ns


# ---------------------------------------------------------------------------------------
# reference twins (float64, the missing-sample policy written out explicitly)
# ---------------------------------------------------------------------------------------

def _zeroed(x):
    x = np.asarray(x, dtype=np.float64)
    miss = ~np.isfinite(x)
    return np.where(miss, 0.0, x), miss


def ref_dewow(x, window):
    v, miss = _zeroed(x)
    h = window // 2
    ns = v.shape[1]
    out = np.empty_like(v)
    for j in range(ns):
        lo, hi = max(0, j - h), min(ns - 1, j + h)
        out[:, j] = v[:, j] - v[:, lo:hi + 1].mean(axis=1)
    out[miss] = np.nan
    return out


def ref_background(x, window, mode):
    v, miss = _zeroed(x)
    n = v.shape[0]
    out = np.empty_like(v)
    for i in range(n):
        if mode == "centred":
            h = window // 2
            lo, hi = max(0, i - h), min(n - 1, i + h)
        else:
            lo, hi = max(0, i - window + 1), i
        out[i] = v[i] - v[lo:hi + 1].mean(axis=0)
    out[miss] = np.nan
    return out


def ref_bandpass(x, sos):
    v, miss = _zeroed(x)
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    padlen = min(padlen, v.shape[1] - 1)
    out = signal.sosfiltfilt(sos, v, axis=1, padlen=padlen)
    out[miss] = np.nan
    return out


def ref_gain(ns, power, attenuation=0.0, dt=None, t0=0, max_gain=None):
    g = np.ones(ns)
    for j in range(t0, ns):
        tau = j - t0 + 1
        g[j] = tau ** power * (np.exp(attenuation * (tau - 1) * dt) if attenuation else 1.0)
    if max_gain is not None:
        g = np.minimum(g, max_gain)
    return g


def ref_agc(x, window, eps):
    v, miss = _zeroed(x)
    h = window // 2
    ns = v.shape[1]
    out = np.empty_like(v)
    for j in range(ns):
        lo, hi = max(0, j - h), min(ns - 1, j + h)
        rms = np.sqrt((v[:, lo:hi + 1] ** 2).mean(axis=1))
        out[:, j] = v[:, j] / (rms + eps)
    out[miss] = np.nan
    return out


def ref_time_zero(x, threshold, target, mode, search, fill):
    v, miss = _zeroed(x)
    n, ns = v.shape
    m = search if 0 < search < ns else ns
    out = np.full((n, ns), fill, dtype=np.float64)
    picks = np.zeros(n, dtype=int)
    raw = np.asarray(x, dtype=np.float64)
    for i in range(n):
        a = np.abs(v[i, :m])
        p = 0
        if a.max() > 0:
            p = int(np.nonzero(a >= threshold * a.max())[0][0])
            if mode == "peak":
                while p + 1 < m and not miss[i, p + 1] and a[p + 1] > a[p]:
                    p += 1
        picks[i] = p
        s = p - target
        for j in range(ns):
            if 0 <= j + s < ns:
                out[i, j] = raw[i, j + s]
    return out, picks


def ref_exp_background(x, alpha):
    v = np.asarray(x, dtype=np.float64)
    out = np.empty_like(v)
    bg = np.where(np.isfinite(v[0]), v[0], 0.0)
    for i in range(v.shape[0]):
        ok = np.isfinite(v[i])
        bg = np.where(ok, bg + alpha * (np.where(ok, v[i], 0.0) - bg), bg)
        out[i] = np.where(ok, v[i] - bg, np.nan)
    return out


def ref_stack(x, fold):
    v = np.asarray(x, dtype=np.float64)
    groups = [v[i:i + fold].mean(axis=0) for i in range(0, v.shape[0], fold)]
    return np.array(groups).reshape(-1, v.shape[1])


def ref_resample(x, d, spacing, min_move):
    v = np.asarray(x, dtype=np.float64)
    keep, last = [], -np.inf
    for i, di in enumerate(d):
        if di > last + min_move or not keep:
            keep.append(i)
            last = di
    kd = np.asarray(d)[keep]
    q = kd[0] + spacing * np.arange(int(np.floor((kd[-1] - kd[0]) / spacing + 1e-9)) + 1)
    out = np.empty((len(q), v.shape[1]))
    for j in range(v.shape[1]):
        out[:, j] = np.interp(q, kd, v[keep, j])
    return out, q


def ref_kirchhoff(x, dt, dx, v, aperture, t0):
    d = np.gradient(np.asarray(x, dtype=np.float64), dt, axis=1)
    nx, ns = d.shape
    out = np.zeros((nx, ns))
    tmax = (ns - 1 - t0) * dt
    for x0 in range(nx):
        for xx in range(max(0, x0 - aperture), min(nx, x0 + aperture + 1)):
            h = 2 * (xx - x0) * dx / v
            for i in range(t0 + 1, ns):
                tau = (i - t0) * dt
                t = np.sqrt(tau ** 2 + h ** 2)
                if t > tmax + 1e-15:
                    continue
                fi = t / dt + t0
                k = min(int(fi), ns - 1)
                f = fi - k
                val = d[xx, k] if k == ns - 1 else (1 - f) * d[xx, k] + f * d[xx, k + 1]
                out[x0, i] += tau / t * val / (2 * np.pi * v)
    return out


def close(a, b, rel=2e-5):
    """Float32 kernel vs float64 twin: same NaN positions, values to float rounding."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = max(1.0, float(np.nanmax(np.abs(b))) if np.isfinite(b).any() else 1.0)
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=rel,
                               atol=rel * scale)


def bscan(rng, n, ns, dtype=np.float32, offset=0.0):
    x = rng.normal(size=(n, ns)) * 100 + offset
    x += 50 * np.sin(np.arange(ns) / 7.0)  # a common "direct wave" shape
    if np.dtype(dtype).kind == "i":
        return np.round(x).astype(dtype)
    return x.astype(dtype)


RNG = np.random.default_rng(1234)
DTYPES = [np.int16, np.int32, np.float32, np.float64]


# ---------------------------------------------------------------------------------------
# kernels vs twins
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [1, 4, 9, 41, 1000])
def test_dewow_matches_twin(dtype, window):
    x = bscan(RNG, 150, 97, dtype, offset=300.0)
    out = run_stage(gpr.DeWow(window=window), x)
    assert out.dtype == np.float32
    close(out, ref_dewow(x, window))


def test_dewow_window_time_follows_the_sample_interval():
    """A dewow window given as a time becomes the nearest odd number of samples
    of the stream's interval: the packaged chain's 1.28 ns is the reference
    radar's 41 samples, and 165 samples of a radar (or an FDTD export) sampling
    four times as finely, so both remove the same slow part of the trace."""
    x = bscan(RNG, 40, 97, np.float32, offset=300.0)
    st_ = gpr.DeWow(window_time=1.28e-9)
    st_.configure({"sample_interval": DT})
    assert st_.window == 41 and st_.params() == {"window_time": 1.28e-9, "window": 41}
    close(run_stage(st_, x), ref_dewow(x, 41))
    fine = gpr.DeWow(window_time=1.28e-9)
    fine.configure({"sample_interval": DT / 4})
    assert fine.window == 165
    chain = load_chain("gpr_default")
    chain.configure({"sample_interval": DT, "n_channels": 97})
    assert chain.steps[0].window == 41
    # a slow "wow" under a 1.5 GHz wavelet, sampled at DT and at DT / 4
    outs = []
    for k in (1, 4):
        t = np.arange(512 * k) * (DT / k)
        tr = (np.exp(-((t - 8e-9) * 1.5e9 * np.pi) ** 2) * (1 - 2 * ((t - 8e-9) * 1.5e9
              * np.pi) ** 2) + 2.0 * np.exp(-t / 6e-9))[None, :].astype(np.float32)
        d = gpr.DeWow(window_time=1.28e-9)
        d.configure({"sample_interval": DT / k})
        outs.append(run_stage(d, tr)[0, ::k])
    # the same output at the common samples (within the wow's residue), where
    # 41 samples at DT / 4 would have cut into the wavelet itself
    assert np.max(np.abs(outs[0] - outs[1])) < 0.02
    narrow = run_stage(gpr.DeWow(window=41), tr)[0, ::4]
    assert np.max(np.abs(narrow - outs[0])) > 0.2
    with pytest.raises(ConfigError, match="not both"):
        gpr.DeWow(window=41, window_time=1e-9)
    with pytest.raises(ConfigError, match="sample interval"):
        gpr.DeWow(window_time=1e-9).configure({})
    with pytest.raises(ConfigError, match="not configured"):
        run_stage(gpr.DeWow(window_time=1e-9), x)


@pytest.mark.parametrize("mode", ["centred", "causal"])
@pytest.mark.parametrize("window", [1, 2, 7, 51, 400])
@pytest.mark.parametrize("n", [1, 5, 300])
def test_background_matches_twin(mode, window, n):
    x = bscan(RNG, n, 33, np.int16)
    st_ = gpr.BackgroundRemoval(window=window, mode=mode)
    out = run_stage(st_, x)
    w = st_.window
    close(out, ref_background(x, w, mode))


@pytest.mark.parametrize("order", [1, 2, 4])
@pytest.mark.parametrize("ns", [2, 5, 64, 512])
def test_bandpass_matches_sosfiltfilt(order, ns):
    x = bscan(RNG, 40, ns, np.float64)
    bp = gpr.BandPass(low=0.5e9, high=3e9, order=order, sample_interval=DT)
    out = run_stage(bp, x)
    close(out, ref_bandpass(x, bp.sos), rel=5e-5)


@pytest.mark.parametrize("low,high", [(None, 3e9), (0.8e9, None), (0.2e9, 6e9)])
def test_lowpass_highpass_variants(low, high):
    x = bscan(RNG, 20, 256, np.int16)
    bp = gpr.BandPass(low=low, high=high, order=3, sample_interval=DT)
    close(run_stage(bp, x), ref_bandpass(x, bp.sos), rel=5e-5)


def test_gains_match_twin():
    x = bscan(RNG, 30, 128, np.int32)
    out = run_stage(gpr.TPowerGain(power=1.5, time_zero=10, max_gain=500.0), x)
    close(out, x * ref_gain(128, 1.5, t0=10, max_gain=500.0))
    sec = gpr.SECGain(power=1.0, attenuation=2e8, time_zero=3)
    sec.configure({"sample_interval": DT})
    close(run_stage(sec, x), x * ref_gain(128, 1.0, 2e8, DT, 3, 1e6))
    np.testing.assert_allclose(gpr.gain_curve(128, power=1.0, attenuation=2e8,
                                              sample_interval=DT, time_zero=3),
                               ref_gain(128, 1.0, 2e8, DT, 3), rtol=1e-6)


@pytest.mark.parametrize("window", [1, 16, 65, 300])
def test_agc_matches_twin(window):
    x = bscan(RNG, 50, 200, np.float32)
    x[3] = 0.0  # a silent trace stays 0
    out = run_stage(gpr.AGC(window=window, eps=1e-9), x)
    close(out, ref_agc(x, window, 1e-9))
    assert np.all(out[3] == 0)


@pytest.mark.parametrize("mode", ["peak", "threshold"])
@pytest.mark.parametrize("search", [0, 40])
def test_time_zero_matches_twin(mode, search):
    n, ns = 60, 120
    x = RNG.normal(size=(n, ns)) * 5
    arrival = RNG.integers(10, 30, size=n)
    for i, a in enumerate(arrival):   # a direct wave: a wavelet starting at `a`
        x[i, a:a + 9] += 1000 * np.sin(np.linspace(0, np.pi, 9))
    x = x.astype(np.float32)
    tz = gpr.TimeZero(threshold=0.4, target=5, mode=mode, search=search, fill=-1.0)
    out = tz.process(x)
    ref, picks = ref_time_zero(x, 0.4, 5, mode, search, -1.0)
    np.testing.assert_array_equal(tz.last_picks, picks)
    close(out, ref)
    if mode == "peak":   # peaks of every trace land on the target sample
        assert np.all(np.argmax(out[:, :40], axis=1) == 5)


@pytest.mark.parametrize("alpha", [1.0, 0.3, 0.01])
def test_exp_background_matches_twin(alpha):
    x = bscan(RNG, 200, 31, np.float64)
    close(run_stage(gpr.ExpBackgroundRemoval(alpha=alpha), x), ref_exp_background(x, alpha))


@pytest.mark.parametrize("fold", [1, 3, 8])
@pytest.mark.parametrize("n", [1, 7, 24, 100])
def test_stack_matches_twin(fold, n):
    x = bscan(RNG, n, 17, np.int16)
    close(run_stage(gpr.Stack(fold=fold), x), ref_stack(x, fold))
    close(run_stage(gpr.Stack(fold=fold), x, [1, 2, 5]), ref_stack(x, fold))


def _run_resample(stage, x, d, sizes):
    stage.reset()
    outs, pos, i, k = [], [], 0, 0
    while i < x.shape[0]:
        s = sizes[k % len(sizes)]
        k += 1
        outs.append(stage.process(x[i:i + s], d[i:i + s]))
        pos.append(stage.last_positions)
        i += s
    return np.concatenate(outs), np.concatenate(pos)


def test_resample_matches_twin_and_drops_standstill():
    n = 120
    x = bscan(RNG, n, 23, np.float32)
    steps = RNG.uniform(0.0, 0.02, size=n)
    steps[10:20] = 0.0        # antenna stopped
    steps[40] = -0.05         # went back
    d = np.cumsum(steps)
    ref, q = ref_resample(x, d, 0.01, 0.001)
    for sizes in ([n], [1], [3, 7, 1]):
        out, pos = _run_resample(gpr.Resample(spacing=0.01, min_move=0.001), x, d, sizes)
        close(out, ref)
        np.testing.assert_allclose(pos, q)
    np.testing.assert_allclose(np.diff(q), 0.01)


def test_resample_from_xy_positions():
    n = 50
    x = bscan(RNG, n, 8, np.float32)
    t = np.cumsum(RNG.uniform(0.001, 0.02, size=n))
    xy = np.column_stack([t * 0.6, t * 0.8])    # straight line: distance = t - t[0]
    out, _ = _run_resample(gpr.Resample(spacing=0.005), x, xy, [4, 1, 9])
    ref, _ = ref_resample(x, t - t[0], 0.005, 0.0)
    close(out, ref, rel=1e-4)


def test_resample_needs_positions():
    with pytest.raises(ConfigError, match="'spacing' must be >= 1e-05, got 1e-15"):
        gpr.Resample(spacing=1e-15)
    with pytest.raises(ValueError, match="positions"):
        gpr.Resample(spacing=0.01).process(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="positions"):
        gpr.Resample(spacing=0.01).process(np.zeros((3, 4), np.float32), np.zeros(2))


@pytest.mark.parametrize("aperture,t0", [(None, 0), (0.01, 3)])
def test_kirchhoff_matches_twin(aperture, t0):
    x = bscan(RNG, 14, 40, np.float32)
    dt, dx, v = 0.05e-9, 0.005, 1e8
    out = gpr.kirchhoff_migrate(x, dt, dx, v, aperture=aperture, time_zero=t0)
    ap = 14 if aperture is None else int(np.floor(aperture / dx))
    close(out, ref_kirchhoff(x, dt, dx, v, ap, t0), rel=1e-4)


def _hyperbola(nx=81, nt=200, dt=0.05e-9, dx=0.005, v=1e8, x0=40, t_apex=4e-9):
    """A point diffractor: Ricker wavelets along t(x) = sqrt(t0^2 + (2 dx (x-x0)/v)^2)."""
    t = np.arange(nt) * dt
    d = np.zeros((nx, nt))
    f = 1.5e9
    for i in range(nx):
        ti = np.sqrt(t_apex ** 2 + (2 * (i - x0) * dx / v) ** 2)
        a = (np.pi * f * (t - ti)) ** 2
        d[i] = (1 - 2 * a) * np.exp(-a)
    return d


@pytest.mark.parametrize("method", ["stolt", "kirchhoff"])
def test_migration_collapses_a_diffraction(method):
    dt, dx, v = 0.05e-9, 0.005, 1e8
    d = _hyperbola(dt=dt, dx=dx, v=v)
    if method == "stolt":
        m = gpr.stolt_migrate(d, dt, dx, v)
    else:
        m = gpr.kirchhoff_migrate(d, dt, dx, v)
    env = np.abs(signal.hilbert(m, axis=1))
    xi, ti = np.unravel_index(np.argmax(env), env.shape)
    assert abs(xi - 40) <= 1
    assert abs(ti * dt - 4e-9) <= 3 * dt
    # focused: most energy within +-5 traces of the apex, unlike the input
    def frac(a):
        e = (a ** 2).sum(axis=1)
        return e[35:46].sum() / e.sum()
    assert frac(m) > 0.6 > frac(d)


def test_migration_of_gprmax_cylinder():
    """Real FDTD data: the PEC cylinder's hyperbola collapses to its apex."""
    h5py = pytest.importorskip("h5py")
    path = DATA / "gprmax-cylinder-bscan-generated" / "cylinder_Bscan_2D_n60_gprMax-4.0.1_merged.h5"
    if not path.exists():
        pytest.skip("shared sample data not present")
    with h5py.File(path, "r") as f:
        dt = float(f.attrs["dt"])
        ez = np.asarray(f["rxs/rx1/Ez"], dtype=np.float64).T   # (60 traces, 637 samples)
    bs = run_stage(gpr.BackgroundRemoval(window=1000, mode="centred"), ez)
    v, dx = 0.3 / np.sqrt(6.0) * 1e9, 0.002
    for m in (gpr.stolt_migrate(bs, dt, dx, v), gpr.kirchhoff_migrate(bs, dt, dx, v)):
        env = np.abs(signal.hilbert(m, axis=1))
        xi, _ = np.unravel_index(np.argmax(env), env.shape)
        assert 27 <= xi <= 33
        e_in = (bs ** 2).sum(axis=1)
        e_out = (m.astype(np.float64) ** 2).sum(axis=1)
        assert e_out[25:36].sum() / e_out.sum() > e_in[25:36].sum() / e_in.sum()


# ---------------------------------------------------------------------------------------
# edge cases: constant input, NaN policy, one-frame chunks, chains
# ---------------------------------------------------------------------------------------

def test_constant_input():
    x = np.full((40, 64), 123, dtype=np.int16)
    tiny = 1e-9 * 123   # zero to float rounding (FMA builds leave ~1e-14)
    assert np.abs(run_stage(gpr.DeWow(window=9), x)).max() < tiny
    assert np.abs(run_stage(gpr.BackgroundRemoval(window=5), x)).max() < tiny
    assert np.abs(run_stage(gpr.ExpBackgroundRemoval(alpha=0.1), x)).max() < tiny
    bp = run_stage(gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT), x)
    assert np.abs(bp).max() < 1e-3 * 123
    np.testing.assert_allclose(run_stage(gpr.AGC(window=9), x), 1.0, rtol=1e-6)
    tz = gpr.TimeZero(target=0)
    np.testing.assert_array_equal(tz.process(x), x)
    np.testing.assert_array_equal(run_stage(gpr.Stack(fold=3), x), 123)


def _with_nans(x):
    x = x.astype(np.float32)
    x[2, 5] = np.nan
    x[7, :] = np.nan
    x[9, 0] = np.inf
    x[11, -1] = -np.inf
    return x


@pytest.mark.parametrize("stage,twin", [
    (lambda: gpr.DeWow(window=7), lambda x: ref_dewow(x, 7)),
    (lambda: gpr.BackgroundRemoval(window=5), lambda x: ref_background(x, 5, "centred")),
    (lambda: gpr.BackgroundRemoval(window=4, mode="causal"),
     lambda x: ref_background(x, 4, "causal")),
    (lambda: gpr.AGC(window=9), lambda x: ref_agc(x, 9, 1e-12)),
    (lambda: gpr.ExpBackgroundRemoval(alpha=0.2), lambda x: ref_exp_background(x, 0.2)),
])
def test_nan_policy(stage, twin):
    """Missing samples count as 0 for neighbours, come out NaN, and leave no trace
    in the state: the output far from them equals the clean twin's."""
    x = _with_nans(bscan(RNG, 30, 40, np.float32))
    out = run_stage(stage(), x, [1, 4, 2])
    ref = twin(x)
    close(out, ref)
    assert np.isnan(out[2, 5]) and np.all(np.isnan(out[7])) and np.isnan(out[9, 0])
    assert np.isfinite(out[25:]).all()


def test_nan_policy_bandpass_and_fused():
    x = _with_nans(bscan(RNG, 30, 64, np.float32))
    bp = gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT)
    out = run_stage(bp, x, [3])
    close(out, ref_bandpass(x, bp.sos), rel=5e-5)
    assert np.isfinite(out[0]).all() and np.isnan(out[2, 5]) and np.isfinite(out[2, 6])
    fused = gpr.FusedChain(dewow_window=7, background_window=5, low=0.5e9, high=3e9,
                           gain_power=1.0, sample_interval=DT)
    ref = ref_bandpass(ref_background(ref_dewow(x, 7), 5, "centred"), bp.sos)
    ref = ref * ref_gain(64, 1.0, max_gain=1e6)
    close(run_stage(fused, x, [1, 6]), ref, rel=5e-5)


def test_time_zero_nan_moves_with_shift():
    x = np.zeros((3, 20), np.float32)
    x[:, 8] = 100.0
    x[1, 10] = np.nan
    out = gpr.TimeZero(threshold=0.5, target=2).process(x)
    assert np.all(out[:, 2] == 100.0)
    assert np.isnan(out[1, 4]) and np.isnan(out).sum() == 1


def test_time_zero_picks_ignore_missing():
    x = np.zeros((1, 20), np.float32)
    x[0, 3] = np.nan
    x[0, 9] = 50.0
    tz = gpr.TimeZero(threshold=0.5, target=9)
    tz.process(x)
    assert tz.last_picks[0] == 9


def test_fused_chain_equals_chain_of_stages():
    x = bscan(RNG, 400, 128, np.int16)
    kw = dict(dewow_window=21, background_window=31, low=0.5e9, high=3e9, order=2,
              gain_power=1.2, gain_attenuation=1e8, time_zero=4, max_gain=1e5,
              sample_interval=DT)
    fused = run_stage(gpr.FusedChain(**kw), x, [1, 100, 7])
    chain = load_chain("""
        [[step]]
        name = "gpr.dewow"
        window = 21
        [[step]]
        name = "gpr.background"
        window = 31
        [[step]]
        name = "gpr.bandpass"
        low = 0.5e9
        high = 3e9
        [[step]]
        name = "gpr.gain_sec"
        power = 1.2
        attenuation = 1e8
        time_zero = 4
        max_gain = 1e5
    """)
    chain.configure({"sample_interval": DT})
    close(fused, run_stage(chain, x), rel=1e-6)
    ref = ref_bandpass(ref_background(ref_dewow(x, 21), 31, "centred"),
                       gpr.design_bandpass(0.5e9, 3e9, DT, 2))
    close(fused, ref * ref_gain(128, 1.2, 1e8, DT, 4, 1e5), rel=5e-5)


def test_default_chain_runs_and_is_registered():
    for name in ("gpr.dewow", "gpr.background", "gpr.background_exp", "gpr.bandpass",
                 "gpr.gain_tpow", "gpr.gain_sec", "gpr.agc", "gpr.time_zero", "gpr.fused",
                 "gpr.stack", "gpr.resample"):
        assert get_stage(name).name == name
    chain = load_chain("gpr_default")
    chain.configure({"sample_interval": DT})
    x = bscan(RNG, 120, 512, np.int16)
    out = run_stage(chain, x, [50, 1, 13])
    assert out.shape == x.shape and np.isfinite(out).all()
    hist = chain.history()
    names = [h.get("step", h.get("name")) for h in hist]
    assert names == ["gpr.dewow", "gpr.background", "gpr.bandpass", "gpr.gain_sec"]


def test_bad_parameters_and_input_name_the_problem():
    with pytest.raises(ConfigError, match="window"):
        gpr.DeWow(window=0)
    with pytest.raises(ConfigError, match="mode"):
        gpr.BackgroundRemoval(mode="sideways")
    with pytest.raises(ConfigError, match="alpha"):
        gpr.ExpBackgroundRemoval(alpha=1.5)
    with pytest.raises(ConfigError, match="low"):
        gpr.BandPass(low=3e9, high=1e9, sample_interval=DT).process(np.zeros((2, 8)))
    with pytest.raises(ConfigError, match="sample_interval"):
        gpr.BandPass(low=1e9).process(np.zeros((2, 8)))
    with pytest.raises(ConfigError, match="order"):
        gpr.BandPass(low=1e9, order=20)
    with pytest.raises(ConfigError, match="threshold"):
        gpr.TimeZero(threshold=0)
    with pytest.raises(ConfigError, match="fold"):
        gpr.Stack(fold=0)
    with pytest.raises(ConfigError, match="windw"):
        load_chain('[[step]]\nname = "gpr.dewow"\nwindw = 3\n')
    st_ = gpr.DeWow()
    with pytest.raises(ValueError, match="2-D"):
        st_.process(np.zeros(10))
    st_.process(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="10"):
        st_.process(np.zeros((2, 11)))
    with pytest.raises(ValueError, match="numeric"):
        gpr.DeWow().process(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="data"):
        gpr.kirchhoff_migrate(np.zeros(5), 1e-10, 0.01, 1e8)
    with pytest.raises(ConfigError, match="velocity"):
        gpr.stolt_migrate(np.zeros((4, 4)), 1e-10, 0.01, -1.0)
    # a speed no wave has in the ground (1e-300 gave a section of inf, 0.1 is m/ns)
    for migrate in (gpr.stolt_migrate, gpr.kirchhoff_migrate):
        for v in (1e-300, 0.1, 3.1e8):
            with pytest.raises(ConfigError, match=r"'velocity' is a wave speed in m/s, 1e\+06 "
                               r"to 2\.99792e\+08"):
                migrate(np.zeros((4, 4)), 1e-10, 0.01, v)
    with pytest.raises(ConfigError, match="'pad' must be <= 10"):
        gpr.stolt_migrate(np.zeros((4, 4)), 1e-10, 0.01, 1e8, pad=1e12)


def test_other_dtypes_are_cast_and_empty_chunks_pass():
    x = (RNG.integers(0, 65535, size=(20, 16))).astype(np.uint16)   # DZT-style unsigned
    close(run_stage(gpr.DeWow(window=5), x), ref_dewow(x.astype(np.float64), 5))
    st_ = gpr.BackgroundRemoval(window=3)
    assert st_.process(np.zeros((0, 16), np.int16)).shape == (0, 16)


def test_large_chunk_uses_threads_and_matches_small_chunks():
    """Above the threading threshold the chunk is split between threads, each warming
    up its window; the result equals trace-by-trace processing to float rounding."""
    x = bscan(RNG, 2000, 64, np.int16)
    f = gpr.FusedChain(dewow_window=9, background_window=41, low=0.5e9, high=4e9,
                       gain_power=1.0, sample_interval=DT)
    a = run_stage(f, x)
    b = run_stage(f, x, [1, 2, 3, 97])
    close(a, b, rel=1e-6)


# ---------------------------------------------------------------------------------------
# streaming equals batch, for every stage, over random chunkings (hypothesis)
# ---------------------------------------------------------------------------------------

STAGES = {
    "dewow": lambda: gpr.DeWow(window=9),
    "background": lambda: gpr.BackgroundRemoval(window=7),
    "background_causal": lambda: gpr.BackgroundRemoval(window=6, mode="causal"),
    "background_exp": lambda: gpr.ExpBackgroundRemoval(alpha=0.1),
    "bandpass": lambda: gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT),
    "gain_tpow": lambda: gpr.TPowerGain(power=2.0),
    "gain_sec": lambda: gpr.SECGain(attenuation=1e8, sample_interval=DT),
    "agc": lambda: gpr.AGC(window=11),
    "time_zero": lambda: gpr.TimeZero(threshold=0.3, target=2),
    "fused": lambda: gpr.FusedChain(dewow_window=5, background_window=9, low=0.5e9,
                                    high=3e9, sample_interval=DT),
    "stack": lambda: gpr.Stack(fold=3),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(STAGES)),
       n=st.integers(1, 90), ns=st.integers(2, 40),
       dtype=st.sampled_from(["int16", "int32", "float32", "float64"]),
       sizes=st.lists(st.integers(0, 25), min_size=1, max_size=6).filter(lambda s: max(s) > 0),
       seed=st.integers(0, 2**32 - 1))
def test_streaming_equals_batch(name, n, ns, dtype, sizes, seed):
    x = bscan(np.random.default_rng(seed), n, ns, np.dtype(dtype))
    whole = run_stage(STAGES[name](), x)
    parts = run_stage(STAGES[name](), x, sizes)
    ones = run_stage(STAGES[name](), x, 1)
    assert whole.shape == parts.shape == ones.shape
    close(parts, whole, rel=1e-6)
    close(ones, whole, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 80), sizes=st.lists(st.integers(1, 20), min_size=1, max_size=5),
       seed=st.integers(0, 2**32 - 1))
def test_resample_streaming_equals_batch(n, sizes, seed):
    rng = np.random.default_rng(seed)
    x = bscan(rng, n, 6, np.float32)
    d = np.cumsum(rng.uniform(-0.002, 0.02, size=n))
    a, pa = _run_resample(gpr.Resample(spacing=0.01), x, d, [n])
    b, pb = _run_resample(gpr.Resample(spacing=0.01), x, d, sizes)
    close(b, a, rel=1e-6)
    np.testing.assert_allclose(pb, pa)


def test_avx2_and_baseline_kernels_agree():
    """Both compiled builds of the kernels (the one not picked for this CPU too)."""
    from demine import _gpr as base

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        feats = {}
    if not (feats.get("AVX2") and feats.get("FMA3")):
        pytest.skip("CPU without AVX2+FMA: the AVX2 build cannot be loaded here")
    from demine import _gpr_avx2 as fast

    x = bscan(RNG, 1500, 96, np.int16)
    sos = gpr.design_bandpass(0.5e9, 3e9, DT, 2)
    zi = np.ascontiguousarray(signal.sosfilt_zi(sos))
    g = gpr.gain_curve(96, power=1.0)
    outs = []
    for mod in (base, fast):
        out = np.empty((1500 - 10, 96), np.float32)
        mod.chain(x, np.empty((0, 96), np.float32), 0, out, 8, 21, 10, sos, zi, 15, g, 0)
        outs.append(out)
    close(outs[0], outs[1], rel=1e-5)
    ref = ref_bandpass(ref_background(ref_dewow(x, 17), 21, "centred"), sos)[:1490] * g
    close(outs[0], ref, rel=5e-5)


def test_live_sized_chunks_equal_one_call_bit_for_bit():
    """Chunks shorter than the background window append to the kept history (a
    buffer with spare rows, wrapped many times here); chunks longer than it
    replace it: every chunking gives the one-call output exactly."""
    x = bscan(np.random.default_rng(4), 3000, 64, np.int16)

    def make():
        return gpr.FusedChain(dewow_window=9, background_window=41, low=0.5e9, high=3e9,
                              sample_interval=DT)

    whole = run_stage(make(), x)
    for sizes in (10, 1, [7, 3, 40, 39, 41, 200, 2], [60, 5]):
        np.testing.assert_array_equal(run_stage(make(), x, sizes), whole)


def _configured(doc):
    chain = load_chain(doc)
    chain.configure({"sample_interval": DT, "kind": "gpr"})
    return chain


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300), ns=st.integers(8, 80),
       dtype=st.sampled_from(["int16", "float32", "float64"]), nan=st.booleans(),
       sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_fused_packaged_chain_equals_its_four_steps_bit_for_bit(n, ns, dtype, nan, sizes, seed):
    """The live detector runs the packaged chain fused (one kernel call per chunk):
    the same output as the four steps, every value, NaN policy included."""
    rng = np.random.default_rng(seed)
    x = bscan(rng, n, ns, np.dtype(dtype))
    if nan and x.dtype.kind == "f":
        x[rng.random(x.shape) < 0.02] = np.nan
    chain = _configured("gpr_default")
    fused = gpr.fuse_chain(chain.steps)
    assert fused is not None
    fused.configure({"sample_interval": DT})
    a = run_stage(chain, x, sizes)
    b = run_stage(fused, x, sizes)
    assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_fuse_chain_only_takes_the_four_steps_with_one_sample_interval_and_a_gain():
    head = ('[[step]]\nname = "gpr.dewow"\nwindow = 9\n[[step]]\nname = "gpr.background"\n'
            'window = 11\n[[step]]\nname = "gpr.bandpass"\nlow = 0.5e9\nhigh = 3e9\n')
    gain = '[[step]]\nname = "gpr.gain_sec"\npower = 1.0\nattenuation = 1e8\n'
    assert gpr.fuse_chain(_configured(head + gain).steps) is not None
    assert gpr.fuse_chain(_configured(head).steps) is None                  # three steps
    assert gpr.fuse_chain(_configured(gain + head).steps) is None           # other order
    assert gpr.fuse_chain(_configured(head + gain.replace("1.0", "0.0").replace(
        "1e8", "0.0")).steps) is None                                      # gain off
    assert gpr.fuse_chain(_configured(head + gain + "sample_interval = 2e-11\n").steps) is None
    assert gpr.fuse_chain(_configured(head.replace("gpr.dewow", "gpr.agc") + gain).steps) is None
    # a one-trace background leaves exact zeros, which the fused kernel's
    # running sums only round to (~1e-16, depending on the chunking)
    one = head.replace("window = 11", "window = 1")
    assert gpr.fuse_chain(_configured(one + gain).steps) is None


def test_process_into_preallocated_output():
    x = bscan(RNG, 50, 32, np.int16)
    st_ = gpr.FusedChain(dewow_window=5, background_window=7, low=0.5e9, high=4e9,
                         sample_interval=DT)
    ref = st_.process(x)
    st_.reset()
    buf = np.full((50 - 3, 32), 7.0, np.float32)
    got = st_.process(x, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, ref)
    st_.reset()
    with pytest.raises(ValueError, match="out"):
        st_.process(x, out=np.empty((50, 32), np.float32))
    # not into the chunk itself: the next chunk's background reads its raw
    # traces (they came out up to 300x too large from a second chunk)
    y = bscan(RNG, 100, 32, np.float32)
    st_.reset()
    st_.process(y[:50])
    second = y[50:].copy()
    with pytest.raises(ValueError, match="must not share memory with the chunk"):
        st_.process(second, out=second)
    np.testing.assert_array_equal(second, y[50:])   # (refused before anything is written)


def test_large_output_with_streaming_stores_matches_chunks():
    """Outputs of 4M samples and more bypass the caches (non-temporal stores)."""
    x = bscan(RNG, 8300, 512, np.int16)
    f = gpr.FusedChain(dewow_window=9, background_window=11, low=0.5e9, high=3e9,
                       sample_interval=DT)
    whole = run_stage(f, x)
    close(whole, run_stage(f, x, [3000, 7]), rel=1e-6)
    close(run_stage(gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT), x),
          run_stage(gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT), x, 4000), rel=1e-6)


def test_default_chain_over_a_recording(tmp_path):
    """`demine process` path: the packaged chain on a recorded GPR stream, taking
    the sample interval from the stream, equals the chain run in memory."""
    h5py = pytest.importorskip("h5py")
    from demine.process import process_recording
    from demine.recording import RecordingWriter

    x = bscan(RNG, 300, 512, np.int16)
    src = tmp_path / "in.h5"
    with RecordingWriter(src) as w:
        s = w.add_stream("gpr", "gpr", n_channels=512, dtype="int16", sample_interval=DT)
        s.append(x, time=np.arange(300, dtype=np.int64) * 2_500_000)
    done = process_recording(src, "gpr_default", tmp_path / "out.h5")
    chain = load_chain("gpr_default")
    chain.configure({"sample_interval": DT})
    with h5py.File(tmp_path / "out.h5", "r") as f:
        got = f[done["gpr"]]["data"][...]
    close(got, run_stage(chain, x), rel=1e-6)


def test_read_only_input_is_accepted():
    """Frames decoded from a serial buffer are read-only views; kernels only read them."""
    from demine.process import load_chain

    x = np.random.default_rng(0).integers(-3000, 3000, size=(64, 256)).astype(np.int16)
    ro = x.copy()
    ro.flags.writeable = False
    chain = load_chain("gpr_default")
    chain.configure({"sample_interval": 3.125e-11, "n_channels": 256, "kind": "gpr"})
    out_ro = np.concatenate([chain.process(ro), chain.finish()])
    chain.reset()
    out_rw = np.concatenate([chain.process(x), chain.finish()])
    np.testing.assert_array_equal(out_ro, out_rw)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_read_only_input(name):
    """Frames decoded from a serial buffer arrive as read-only arrays."""
    x = bscan(RNG, 40, 16, np.int16)
    ro = x.copy()
    ro.flags.writeable = False
    close(run_stage(STAGES[name](), ro, [7]), run_stage(STAGES[name](), x))
    d = np.cumsum(np.full(40, 0.01))
    d.flags.writeable = False
    out, _ = _run_resample(gpr.Resample(spacing=0.02), ro, d, [40])
    assert out.shape[0] == 20


@pytest.mark.parametrize("make", [
    lambda: gpr.DeWow(window=2 ** 40),
    lambda: gpr.AGC(window=2 ** 40),
    lambda: gpr.BackgroundRemoval(window=2 ** 33, mode="causal"),
    lambda: gpr.Stack(fold=2 ** 31 + 1),
    lambda: gpr.TimeZero(search=2 ** 32 + 3),
    lambda: gpr.TimeZero(target=2 ** 32 + 2),
    lambda: gpr.FusedChain(background_window=2 ** 31),
])
def test_counts_beyond_the_kernels_are_refused_when_given(make):
    """Windows and counts the kernels' C ints cannot hold were taken and then
    raised a bare OverflowError (or shifted by the wrapped value: a TimeZero
    target of 2**32 + 2 acted as 2), naming no parameter (kernel audit)."""
    with pytest.raises(ConfigError, match=r"parameter '\w+' must be <= "):
        make()


@pytest.mark.parametrize("make", [
    lambda: gpr.BackgroundRemoval(window=3_000_001),
    lambda: gpr.FusedChain(background_window=3_000_001),
])
def test_a_background_ring_too_large_to_allocate_is_refused(make):
    """A window of 3 million traces of 4096 samples had the kernel write through
    a failed allocation (a segmentation fault)."""
    st_ = make()
    with pytest.raises(ConfigError, match=r"background window of 300000\d traces of 4096 "
                       r"samples needs 4\d\.\d GiB per thread"):
        st_.process(np.zeros((2, 4096), np.float32))


# -- a work tile the kernels cannot allocate is a MemoryError, not a crash -------------
_NO_TILE_MEMORY = r"""
import resource, sys
import numpy as np
import demine.gpr
from demine import _gpr as baseline

kernels = {id(baseline): baseline, id(demine.gpr._gpr): demine.gpr._gpr}.values()


def vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024


def limited(call):
    # room for a few MB more than now: the traces and outputs are made before,
    # the kernel's work tiles (tens of MB and more) cannot be
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + 8 * 2**20, hard))
    try:
        call()
        return "no error"
    except MemoryError as exc:
        return f"MemoryError: {exc}"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


no_sos, no_zi, no_gain = np.empty((0, 6)), np.empty((0, 2)), np.empty(0, np.float32)
for k in kernels:
    ns = 1 << 19          # tiles of 32 traces: 64 MB each
    x = np.ones((2, ns), np.float32)
    out = np.empty_like(x)
    print("chain", limited(lambda: k.chain(x, np.empty((0, ns), np.float32), 0, out, 5, 0, 0,
                                           no_sos, no_zi, 0, no_gain, 1)))
    print("dewow_rows", limited(lambda: k.dewow_rows(x, out, 5, 1)))
    print("chain_finish", limited(lambda: k.chain_finish(
        np.ones((2, ns), np.float32), 2, out[:1], 3, 1, no_sos, no_zi, 0, no_gain)))
    big = np.ones((2, 1 << 22), np.float32)   # a row of doubles: 32 MB
    big_out = np.empty_like(big)
    print("agc", limited(lambda: k.agc(big, big_out, 5, 1e-9, 1)))
"""


def test_kernels_say_when_their_work_tiles_cannot_be_allocated():
    """The compiled GPR chain, dewow, AGC and the chain's finish allocate their work
    tiles with malloc; an allocation that fails was written through (a crash). Run
    under an address-space limit in a child process."""
    import subprocess

    res = subprocess.run([sys.executable, "-c", _NO_TILE_MEMORY], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) >= 4, res.stdout
    for line in lines:
        name, _, said = line.partition(" ")
        assert said.startswith("MemoryError: ") and "no memory" in said, line


@pytest.mark.parametrize("first", [3, 200])
def test_a_chunk_whose_kernel_fails_leaves_the_stream_as_it_was(monkeypatch, first):
    """The fused chain's history (its last dewowed traces) was changed before the
    kernel that fills it ran; when that kernel failed (no memory), the stream went
    on with rows never filled.  The next chunks must come out as if the failed
    call had not been made."""
    x = bscan(RNG, 400, 64, np.float32)

    def make():
        return gpr.FusedChain(dewow_window=9, background_window=41, low=0.5e9, high=4e9,
                              gain_power=1.0, sample_interval=DT)

    ref = make()
    want = [ref.process(x[:first]), ref.process(x[first:first + 5]),
            ref.process(x[first + 5:])]
    stage = make()
    got = [stage.process(x[:first])]
    real = gpr._gpr

    class Failing:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def dewow_rows(*args):
            raise MemoryError("dewow: no memory for the work tiles")

    monkeypatch.setattr(gpr, "_gpr", Failing())
    with pytest.raises(MemoryError):
        stage.process(x[first:first + 5])
    monkeypatch.setattr(gpr, "_gpr", real)
    got += [stage.process(x[first:first + 5]), stage.process(x[first + 5:])]
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
