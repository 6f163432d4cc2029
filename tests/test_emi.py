"""EMI stages: compiled kernels against plain NumPy reference twins, edge cases,
the missing-value policy, and streaming-equals-batch (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from demine import emi
from demine.errors import ConfigError
from demine.process import Chain, run_stage

GATES = np.geomspace(1e-5, 1e-3, 16)
MAD = math.sqrt(math.pi / 2)


# --------------------------------------------------------------------------------------
# NumPy reference twins: the algorithms written frame by frame, in float64
# --------------------------------------------------------------------------------------

def ref_soil(x, basis):
    x = np.asarray(x, dtype=np.float64)
    coef = np.linalg.pinv(basis)
    out = x - (x @ coef.T) @ basis.T
    out[~np.isfinite(x).all(axis=1)] = np.nan
    return out


def ref_quiet_level(readings, sig):
    """Per-gate median of the quarter of ``readings`` whose noise-weighted mean
    over the gates lies in the shortest interval holding that many."""
    v = np.array([np.mean(np.where(sig > 0, r / np.where(sig > 0, sig, 1), 0.0))
                  for r in readings])
    k = max(1, len(v) // 4)
    srt = np.sort(v)
    widths = [srt[j + k - 1] - srt[j] for j in range(len(v) - k + 1)]
    j = int(np.argmin(widths))
    pick = (v >= srt[j]) & (v <= srt[j + k - 1])
    return np.median(np.asarray(readings)[pick], axis=0)


def ref_baseline(x, window, noise_window, threshold, hold, max_freeze, warmup, clip,
                 retune="quiet"):
    x = np.asarray(x, dtype=np.float64)
    n, g = x.shape
    out = np.full_like(x, np.nan)
    frozen_flags = np.zeros(n, dtype=bool)
    base = np.zeros(g)
    sig = np.zeros(g)
    n_seen = hold_left = frozen_run = 0
    freeze = []  # the readings of the current freeze
    for i in range(n):
        row = x[i]
        fin = np.isfinite(row)
        if not fin.all():
            if n_seen > 0:
                out[i, fin] = row[fin] - base[fin]
            continue
        if n_seen == 0:
            base = row.copy()
            sig = np.zeros(g)
            out[i] = 0.0
            n_seen = 1
            continue
        r = row - base
        out[i] = r
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(sig > 0, (r / np.where(sig > 0, sig, 1)) ** 2,
                             np.where(r != 0, np.inf, 0.0))
        s = math.sqrt(terms.sum() / g)
        anomalous = n_seen >= warmup and s > threshold
        if anomalous:
            hold_left = hold
            frozen = True
        elif hold_left > 0:
            hold_left -= 1
            frozen = True
        else:
            frozen = False
        if frozen:
            frozen_run += 1
            if max_freeze > 0 and frozen_run > max_freeze:  # retune
                base = ref_quiet_level(freeze, sig) if retune == "quiet" else row.copy()
                hold_left = frozen_run = 0
                freeze = []
                continue
            freeze.append(row)
        else:
            frozen_run = 0
            freeze = []
        frozen_flags[i] = frozen
        if not frozen:
            a = max(1.0 / window, 1.0 / (n_seen + 1))
            an = max(1.0 / noise_window, 1.0 / n_seen)
            base = base + a * r
            v = np.abs(r) * MAD
            if n_seen >= warmup and clip > 0:
                v = np.minimum(v, clip * sig)
            sig = sig + an * (v - sig)
            n_seen += 1
    return out, frozen_flags


def ref_detect(x, noise_window, threshold, warmup, clip, min_noise, max_freeze):
    x = np.asarray(x, dtype=np.float64)
    n, g = x.shape
    z = np.full_like(x, np.nan)
    stat = np.full(n, np.nan)
    sig = np.zeros(g)
    n_seen = skipped = 0

    def norm(r):
        d = np.maximum(sig, min_noise)
        with np.errstate(divide="ignore", invalid="ignore"):
            zz = np.where(d > 0, r / np.where(d > 0, d, 1),
                          np.where(r == 0, 0.0, np.copysign(np.inf, r)))
        return zz

    for i in range(n):
        r = x[i]
        if not np.isfinite(r).all():
            zz = norm(np.where(np.isfinite(r), r, 0))
            z[i] = np.where(np.isfinite(r), zz, np.nan)
            continue
        if n_seen < warmup:
            sig = sig + (np.abs(r) * MAD - sig) / (n_seen + 1)
            n_seen += 1
            z[i] = norm(r)
            stat[i] = math.sqrt((z[i] ** 2).sum() / g)
            continue
        z[i] = norm(r)
        s = math.sqrt((z[i] ** 2).sum() / g)
        stat[i] = s
        skipped = 0 if s <= threshold else skipped + 1
        if s <= threshold or (max_freeze > 0 and skipped > max_freeze):
            v = np.abs(r) * MAD
            if clip > 0:
                v = np.minimum(v, clip * sig)
            sig = sig + (v - sig) / noise_window
            n_seen += 1
    return z, stat


def ref_matched(x, window, noise_window, threshold, warmup, clip, min_noise, max_freeze,
                basis=None):
    x = np.asarray(x, dtype=np.float64)
    n, g = x.shape
    proj = np.eye(g) if basis is None else np.asarray(basis, dtype=np.float64)
    stat = np.full(n, np.nan)
    sig = np.zeros(g)
    zs, prev = [], []
    n_seen = skipped = 0
    for i in range(n):
        r = x[i]
        if not np.isfinite(r).all():
            continue
        d = np.maximum(sig, min_noise)
        zs.append(np.where(d > 0, r / np.where(d > 0, d, 1), 0.0))
        zs = zs[-window:]
        u = np.sum(zs, axis=0) / math.sqrt(len(zs))
        w = proj @ u
        s = math.sqrt((w ** 2).sum() / proj.shape[0])
        stat[i] = s
        if len(prev) == 2:
            v = np.abs(r - 2 * prev[-1] + prev[-2]) * MAD / math.sqrt(6)
            if n_seen < warmup:
                sig = sig + (v - sig) / (n_seen + 1)
                n_seen += 1
            else:
                skipped = 0 if s <= threshold else skipped + 1
                if s <= threshold or (max_freeze > 0 and skipped > max_freeze):
                    if clip > 0:
                        v = np.minimum(v, clip * sig)
                    sig = sig + (v - sig) / noise_window
                    n_seen += 1
        prev = (prev + [r])[-2:]
    return stat


def ref_notch(x, sos):
    """sosfilt per gate started in the steady state of the first value (no NaN)."""
    x = np.asarray(x, dtype=np.float64)
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    y, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    return y


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def synthetic(n=3000, g=16, seed=0, target_at=None, dtype=np.float32):
    """Noise + drift + height-modulated 1/t soil (+ an optional target)."""
    rng = np.random.default_rng(seed)
    t = np.geomspace(1e-5, 1e-3, g)
    height = 1.0 + 0.3 * np.sin(np.arange(n) / 70.0)
    x = rng.normal(scale=0.01, size=(n, g))
    x += (1e-5 / t)[None, :] / height[:, None] ** 3
    x += np.linspace(0, 0.5, n)[:, None]
    if target_at is not None:
        lo, hi = target_at
        bump = np.hanning(hi - lo)[:, None] * (2.0 * np.exp(-t / 2e-4))[None, :]
        x[lo:hi] += bump
    return x.astype(dtype), t


def assert_same(a, b):
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)  # NaN == NaN here


# --------------------------------------------------------------------------------------
# kernels against the twins
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soil_matches_twin_and_removes_soil(dtype):
    x, t = synthetic(dtype=dtype)
    st_ = emi.SoilCompensation(gate_times=t)
    y = run_stage(st_, x)
    assert y.dtype == dtype
    ref = ref_soil(x, emi.soil_basis(t))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 if dtype == np.float32 else 1e-10)
    # the 1/t soil changed by ~2x in amplitude along the line; afterwards only
    # noise, drift (not 1/t shaped) and float rounding remain
    pure_soil = (1e-5 / t)[None, :] * np.linspace(0.3, 3, 50)[:, None]
    np.testing.assert_allclose(run_stage(st_, pure_soil), 0, atol=1e-12)


def test_soil_band_component_follows_a_band_limited_viscous_decay():
    t = GATES
    soil = (np.exp(-t / 3e-3) - np.exp(-t / 1e-7)) / t  # relaxation times 0.1 us - 3 ms
    amp = np.linspace(1.0, 50.0, 200)[:, None]
    x = amp * soil[None, :]
    left = np.abs(ref_soil(x, emi.soil_basis(t))).max()
    band = np.abs(ref_soil(x, emi.soil_basis(t, ("viscous", "offset", "band")))).max()
    assert band < 0.05 * left  # about 40x less residue
    out = run_stage(emi.SoilCompensation(gate_times=t, components=["viscous", "offset", "band"]),
                    x)
    np.testing.assert_allclose(out, ref_soil(x, emi.soil_basis(t, ("viscous", "offset", "band"))),
                               atol=1e-9 * np.abs(x).max())


@pytest.mark.parametrize("pulse", [50e-6, 150e-6, 400e-6])
def test_soil_models_a_declared_transmitter_pulse(pulse):
    """A viscous soil under a finite transmitter pulse decays as
    1/t - 1/(t + T): the 1/t balance leaves a residue proportional to the soil
    amplitude (it moves as the head pumps); with the pulse declared, as a
    parameter or in the stream's calibration, the balance removes it."""
    t = GATES
    soil = 1.0 / t - 1.0 / (t + pulse)
    amp = (1.0 + 0.4 * np.sin(np.arange(300) / 20.0))[:, None]
    x = amp * soil[None, :]
    basis = emi.soil_basis(t, pulse_length=pulse)
    np.testing.assert_allclose(basis[:, 0], soil / np.linalg.norm(soil), rtol=1e-12)
    plain = np.abs(ref_soil(x, emi.soil_basis(t))).max()
    assert plain > 1e-3 * np.abs(x).max()  # what the 1/t balance leaves
    want = ref_soil(x, basis)
    assert np.abs(want).max() < 1e-9 * np.abs(x).max()
    explicit = emi.SoilCompensation(gate_times=t, pulse_length=pulse)
    np.testing.assert_allclose(run_stage(explicit, x), want, atol=1e-9 * np.abs(x).max())
    from_cal = emi.SoilCompensation()
    from_cal.configure({"gate_times": t, "pulse_length": pulse})
    np.testing.assert_allclose(run_stage(from_cal, x), want, atol=1e-9 * np.abs(x).max())
    assert from_cal.params()["pulse_length"] == pulse  # the history says which
    # the parameter wins over the calibration; 0 is a long on-time (1/t)
    step = emi.SoilCompensation(gate_times=t, pulse_length=0)
    step.configure({"pulse_length": pulse})
    np.testing.assert_array_equal(step.basis, emi.SoilCompensation(gate_times=t).basis)
    # the learned balance is built on the declared decay too, and forgets
    # what it learnt against another balance
    learn = emi.SoilCompensation(gate_times=t, learn=True, learn_block=10, learn_min=50)
    run_stage(learn, np.tile(x, (10, 1)))
    assert learn.learned_shape is not None
    learn.configure({"pulse_length": pulse})
    np.testing.assert_array_equal(learn.basis, basis)
    assert learn.learned_shape is None
    # a later configuration without the pulse goes back to 1/t
    from_cal.configure({"gate_times": t})
    np.testing.assert_array_equal(from_cal.basis, emi.soil_basis(t))
    assert from_cal.params()["pulse_length"] is None


@pytest.mark.parametrize("bad", [-1e-4, float("nan"), float("inf"), 2.0, 150, "long", [1e-4],
                                 True])
def test_soil_refuses_a_bad_pulse_length(bad):
    with pytest.raises(ConfigError, match="pulse_length"):
        emi.SoilCompensation(gate_times=GATES, pulse_length=bad)
    with pytest.raises(ConfigError, match="stream 'emi': calibration 'pulse_length'"):
        emi.SoilCompensation().configure({"stream": "emi", "gate_times": GATES,
                                          "pulse_length": bad})


def test_soil_extra_components_and_amplitudes():
    t = GATES
    st_ = emi.SoilCompensation(gate_times=t, components=["viscous", "conductive", "offset"],
                               append_amplitudes=True)
    rng = np.random.default_rng(3)
    coeffs = rng.normal(size=(40, 3))
    basis = emi.soil_basis(t, ["viscous", "conductive", "offset"])
    x = coeffs @ basis.T
    y = run_stage(st_, x)
    assert y.shape == (40, 16 + 3)
    np.testing.assert_allclose(y[:, :16], 0, atol=1e-9)
    np.testing.assert_allclose(y[:, 16:], coeffs, rtol=1e-8, atol=1e-9)
    # a measured profile enters the basis too
    prof = np.exp(-t / 1e-4)
    st2 = emi.SoilCompensation(gate_times=t, profiles=[prof.tolist()])
    np.testing.assert_allclose(run_stage(st2, np.stack([prof * 3, prof])), 0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_baseline_matches_twin(dtype):
    x, t = synthetic(target_at=(1500, 1800), dtype=dtype)
    x = run_stage(emi.SoilCompensation(gate_times=t), x)  # as in the chain
    kw = dict(window=300.0, noise_window=300.0, threshold=4.0, hold=50, max_freeze=400,
              warmup=100, clip=3.0)
    st_ = emi.Baseline(**kw)
    y = run_stage(st_, x)
    ref, frozen = ref_baseline(x, **kw)
    tol = 2e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    np.testing.assert_array_equal(st_.last_frozen, frozen)
    # the baseline froze over the target, and only there (plus hold)
    assert frozen[1550:1750].all()
    assert not frozen[:1450].any()


def test_baseline_freezes_so_target_does_not_bleed():
    """A long target: the frozen baseline keeps the full target amplitude, the
    same baseline without freezing (huge threshold) absorbs part of it."""
    n, g = 4000, 8
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.01, size=(n, g)) + 1.0
    x[2000:2600] += 0.5
    frz = run_stage(emi.Baseline(window=200, threshold=4, hold=20, max_freeze=0), x)
    nof = run_stage(emi.Baseline(window=200, threshold=1e9, hold=0), x)
    assert abs(frz[2590].mean() - 0.5) < 0.02
    assert nof[2590].mean() < 0.1
    # after the target the frozen baseline is still right: residual back to ~0
    assert abs(frz[2800:].mean()) < 0.01


def test_detect_relearns_a_lasting_noise_rise():
    rng = np.random.default_rng(8)
    x = rng.normal(scale=1.0, size=(20000, 8))
    x[5000:] *= 10  # the noise level rises for good
    keep = run_stage(emi.Detect(noise_window=500, max_freeze=0, output="statistic"), x)
    learn = run_stage(emi.Detect(noise_window=500, max_freeze=1000, output="statistic"), x)
    assert np.median(keep[-2000:]) > 5  # never relearnt: looks like a target forever
    assert 0.7 < np.median(learn[-2000:]) < 1.3


def dense_clutter(n=12000, g=8, seed=3):
    """Ground at level 1 with targets on most readings: bumps of random
    strength and sign, 60-250 readings long, 20-120 readings apart."""
    rng = np.random.default_rng(seed)
    x = 1.0 + rng.normal(scale=0.01, size=(n, g))
    shape = np.linspace(1.0, 0.4, g)
    i = 300
    while i < n:
        w = int(rng.integers(60, 250))
        amp = rng.choice([-1, 1]) * rng.uniform(0.2, 2.0)
        x[i:i + w] += amp * np.hanning(w)[:, None] * shape
        i += w + int(rng.integers(20, 120))
    return x


@pytest.mark.parametrize("retune", ["quiet", "reading"])
def test_baseline_retunes_match_twin(retune):
    """Retunes every max_freeze frames in dense clutter, both rules, against the
    plain reference, and in chunks of any size."""
    x = dense_clutter()
    kw = dict(window=200.0, noise_window=200.0, threshold=4.0, hold=20, max_freeze=300,
              warmup=100, clip=3.0)
    st_ = emi.Baseline(retune=retune, **kw)
    y = run_stage(st_, x)
    ref, frozen = ref_baseline(x, retune=retune, **kw)
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(st_.last_frozen, frozen)
    assert np.count_nonzero(np.diff(frozen.astype(int)) == -1) > 5  # freezes ended
    st_.reset()
    cuts = np.cumsum(np.random.default_rng(4).integers(1, 700, size=40))
    parts = [st_.process(c) for c in np.split(x, cuts[cuts < len(x)])]
    np.testing.assert_array_equal(np.concatenate(parts), y)


def test_baseline_quiet_retune_finds_the_ground_between_targets():
    """A freeze that ends on a target: re-nulling on that reading leaves the
    target subtracted from what follows; the quiet retune re-nulls on the ground
    (level 1), even with targets on most of the freeze's readings."""
    n, g = 6000, 8
    rng = np.random.default_rng(9)
    x = 1.0 + rng.normal(scale=0.01, size=(n, g))
    bump = np.hanning(120)[:, None] * np.linspace(1.0, 0.5, g)
    for i in range(1000, 1700, 150):  # 80 % of 1000-1720 on targets
        x[i:i + 120] += 0.8 * bump
    # one freeze from 1011 (gaps shorter than the hold) ends after 650 frames,
    # on the top of the target at 1600-1720
    kw = dict(window=100, threshold=4, hold=100, max_freeze=650, warmup=100)
    quiet = emi.Baseline(**kw)
    yq = run_stage(quiet, x)
    reading = emi.Baseline(retune="reading", **kw)
    yr = run_stage(reading, x)
    assert quiet.last_frozen[1011:1661].all() and not quiet.last_frozen[1661]  # the retune
    after = slice(1800, 2250)  # ground only, after the retune
    assert np.abs(yq[after]).mean() < 0.02
    assert np.abs(yr[after]).mean() > 0.3  # the target's top, subtracted
    assert reading.last_frozen[after].all()  # and taken for a target


def test_baseline_retune_option_is_checked():
    with pytest.raises(ConfigError, match="retune must be 'quiet' or 'reading'.*'median'"):
        emi.Baseline(retune="median")


def test_baseline_max_freeze_absorbs_level_step():
    n = 6000
    x = np.full((n, 4), 1.0) + np.random.default_rng(2).normal(scale=0.01, size=(n, 4))
    x[1000:] += 1.0  # a genuine retune-worthy step
    st_ = emi.Baseline(window=100, threshold=4, hold=10, max_freeze=500)
    y = run_stage(st_, x)
    assert abs(y[1100].mean() - 1.0) < 0.05  # frozen: the step shows as anomaly
    assert abs(y[1495].mean() - 1.0) < 0.05
    assert abs(y[1510:].mean()) < 0.01  # ... then a retune after max_freeze absorbs it
    assert st_.last_frozen[1100] and not st_.last_frozen[1600]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_detect_matches_twin(dtype):
    x, t = synthetic(target_at=(1500, 1800), dtype=dtype)
    x = run_stage(emi.SoilCompensation(gate_times=t), x)
    r = run_stage(emi.Baseline(window=300, threshold=4, hold=50), x)
    kw = dict(noise_window=500.0, threshold=3.0, warmup=100, clip=3.0, min_noise=0.0,
              max_freeze=150)
    out = run_stage(emi.Detect(output="zscore+statistic", **kw), r)
    z, stat = ref_detect(r, **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(out[:, :16], z, rtol=tol, atol=tol)
    np.testing.assert_allclose(out[:, 16], stat, rtol=tol, atol=tol)
    # statistic ~1 over noise, large over the target
    assert 0.7 < np.median(stat[500:1400]) < 1.3
    assert stat[1600:1700].min() > 10


def test_detect_output_modes_agree():
    x, _ = synthetic(n=500)
    r = run_stage(emi.Baseline(), x)
    both = run_stage(emi.Detect(output="zscore+statistic"), r)
    assert_same(run_stage(emi.Detect(output="statistic"), r), both[:, 16:])
    assert_same(run_stage(emi.Detect(output="zscore"), r), both[:, :16])
    app = run_stage(emi.Detect(output="append"), r)
    assert_same(app[:, :16], r)
    assert_same(app[:, 16:], both[:, 16:])


@pytest.mark.parametrize("fs,freq,harm", [(1000.0, 50.0, 1), (1000.0, 60.0, 3), (130.0, 50.0, 2)])
def test_notch_matches_twin_and_removes_mains(fs, freq, harm):
    n = 4000
    tt = np.arange(n) / fs
    rng = np.random.default_rng(0)
    x = 5.0 + rng.normal(scale=0.01, size=(n, 3))
    mains = np.sin(2 * np.pi * freq * tt) + 0.5 * np.sin(2 * np.pi * 2 * freq * tt + 1)
    x = x + mains[:, None] * (0.5 if harm >= 2 else 1.0)
    st_ = emi.MainsNotch(freq=freq, q=10.0, harmonics=harm, sample_rate=fs)
    y = run_stage(st_, x)
    np.testing.assert_allclose(y, ref_notch(x, st_.sos), rtol=1e-10, atol=1e-10)
    if harm >= 2:
        # after settling, mains is gone: residual is the white noise only
        assert np.std(y[2000:] - 5.0) < 0.03
    # starts in steady state: no start-up transient from a DC level of 5
    dc = 5.0 + rng.normal(scale=0.01, size=(50, 3))
    np.testing.assert_allclose(run_stage(st_, dc)[:10], 5.0, atol=0.05)


def test_notch_sample_rate_from_context_and_alias_errors():
    st_ = emi.MainsNotch(freq=50)
    with pytest.raises(ConfigError, match="reading rate"):
        st_.process(np.zeros((3, 2)))
    st_.configure({"sample_rate": 1000.0})
    assert st_.params()["sample_rate"] == 1000.0
    with pytest.raises(ConfigError, match="aliases to DC"):
        emi.MainsNotch(freq=50, sample_rate=50.0)
    with pytest.raises(ConfigError, match="Nyquist"):
        emi.MainsNotch(freq=50, sample_rate=100.0)
    with pytest.raises(ConfigError, match="Nyquist"):
        emi.MainsNotch(freq=50, sample_rate=1000.0, harmonics=10)
    with pytest.raises(ConfigError, match=r"emi.notch: no notch of harmonic 1 \(50 Hz\) at a "
                       "1e-300 Hz reading rate"):
        emi.MainsNotch(freq=50, sample_rate=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window,basis", [(1, None), (25, None), (9, "decays")])
def test_matched_matches_twin(dtype, window, basis):
    x, t = synthetic(target_at=(1500, 1800), dtype=dtype)
    x = run_stage(emi.SoilCompensation(gate_times=t), x)
    r = run_stage(emi.Baseline(window=300, threshold=4, hold=50), x)
    if basis == "decays":
        basis = np.exp(-t[None, :] / np.array([[2e-5], [1e-4], [5e-4]]))
    kw = dict(window=window, noise_window=500.0, threshold=3.0, warmup=100, clip=3.0,
              min_noise=0.0, max_freeze=150, basis=basis)
    out = run_stage(emi.MatchedDetect(output="append", **kw), r)
    stat = ref_matched(r, **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert_same(out[:, :16], r)
    np.testing.assert_allclose(out[:, 16], stat, rtol=tol, atol=tol)
    assert_same(run_stage(emi.MatchedDetect(output="statistic", **kw), r), out[:, 16:])
    if basis is None:
        # about 1 over white noise whatever the window, large over the target
        assert 0.7 < np.median(stat[500:1400]) < 1.3
        assert stat[1600:1700].min() > 10 * math.sqrt(min(window, 3))


def test_matched_noise_scale_ignores_smooth_targets():
    """A scale from second differences stays at the receiver noise over a slow
    target response that a level-based scale counts as noise."""
    rng = np.random.default_rng(3)
    n = 20000
    x = rng.normal(size=(n, 4))
    bumps = 20 * np.sin(np.arange(n) / 200.0)[:, None] ** 2  # slow, large "clutter"
    m = emi.MatchedDetect(window=1, threshold=1e9, noise_window=2000)
    run_stage(m, x + bumps)
    np.testing.assert_allclose(m.noise, 1.0, rtol=0.1)
    d = emi.Detect(threshold=1e9, noise_window=2000)
    run_stage(d, x + bumps)
    assert (d.noise > 5).all()


def test_matched_integration_gains_sqrt_window():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6000, 16))
    x[3000:3400] += 1.0  # a weak target, 1 sigma in every gate for 400 readings
    one = run_stage(emi.MatchedDetect(window=1), x)[:, -1]
    many = run_stage(emi.MatchedDetect(window=100), x)[:, -1]
    assert np.median(one[3100:3400]) < 2.0
    assert np.median(many[3100:3400]) > 8.0  # sqrt(100) x 1 sigma
    assert np.quantile(many[500:2900], 0.999) < 2.5


# --------------------------------------------------------------------------------------
# edge cases and the missing-value policy
# --------------------------------------------------------------------------------------

def all_stages():
    return [
        emi.SoilCompensation(gate_times=GATES),
        emi.SoilCompensation(gate_times=GATES, learn=True, learn_block=5, learn_min=100,
                             learn_snr=1.0),
        emi.Baseline(window=50, noise_window=50, hold=5, max_freeze=100, warmup=10),
        emi.Detect(noise_window=50, warmup=10),
        emi.MatchedDetect(window=9, noise_window=50, warmup=10),
        emi.MainsNotch(sample_rate=1000.0, harmonics=2),
    ]


@pytest.mark.parametrize("stage", all_stages(), ids=lambda s: s.name)
def test_one_frame_and_empty_chunks(stage):
    x, _ = synthetic(n=1)
    y = run_stage(stage, x)
    assert y.shape[0] == 1 and np.isfinite(y).all()
    stage.reset()
    e = stage.process(np.empty((0, 16), dtype=np.float32))
    assert e.shape[0] == 0
    with pytest.raises(ValueError, match="channels"):
        stage.process(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        stage.process(np.zeros(16, dtype=np.float32))


@pytest.mark.parametrize("stage", all_stages(), ids=lambda s: s.name)
def test_constant_input(stage):
    x = np.full((300, 16), 2.5, dtype=np.float64)
    y = run_stage(stage, x)
    assert np.isfinite(y).all()
    if stage.name == "emi.baseline":
        np.testing.assert_array_equal(y, 0.0)
    elif stage.name == "emi.notch":
        np.testing.assert_allclose(y, 2.5, rtol=1e-12)
    elif stage.name == "emi.detect":
        # constant non-zero input normalises to a constant statistic, no inf/NaN
        np.testing.assert_allclose(y[:, 16], y[-1, 16])
    elif stage.name == "emi.soil":
        ref = ref_soil(x, emi.soil_basis(GATES))
        np.testing.assert_allclose(y, ref, atol=1e-12)


@pytest.mark.parametrize("stage", all_stages(), ids=lambda s: s.name)
def test_nan_policy(stage):
    """A missing value gives NaN where it is used and leaves the rest of the
    stream exactly as if that frame had not been there."""
    x, _ = synthetic(n=400, dtype=np.float64)
    bad = x.copy()
    bad[200, 3] = np.nan
    bad[250, :] = np.inf
    y = run_stage(stage, bad)
    if stage.name == "emi.soil":
        assert np.isnan(y[200]).all() and np.isnan(y[250]).all()
    elif stage.name == "emi.detect":
        assert np.isnan(y[200, 3]) and np.isnan(y[200, 16]) and np.isfinite(y[200, :3]).all()
    elif stage.name == "emi.matched":
        assert np.isnan(y[200, 3]) and np.isnan(y[200, 16]) and np.isnan(y[250, 16])
    else:
        assert np.isnan(y[200, 3]) and np.isfinite(y[200, :3]).all()
        assert np.isnan(y[250]).all()
    assert np.isfinite(np.delete(y, [200, 250], axis=0)[:, :16]).all()
    if stage.name != "emi.notch":
        # stateful stages skip the frame entirely: the rest equals the clean run
        # without those frames (the notch feeds the last value instead)
        clean = run_stage(stage, np.delete(x, [200, 250], axis=0))
        assert_same(np.delete(y, [200, 250], axis=0), clean)
    else:
        clean = run_stage(stage, x)
        np.testing.assert_allclose(y[:200], clean[:200])


def test_notch_nan_feeds_last_value():
    fs = 1000.0
    st_ = emi.MainsNotch(sample_rate=fs)
    x = np.sin(np.arange(100) / 7.0)[:, None] + 1
    bad = x.copy()
    bad[40] = np.nan
    held = x.copy()
    held[40] = x[39]
    y, yh = run_stage(st_, bad), run_stage(st_, held)
    assert np.isnan(y[40, 0])
    np.testing.assert_array_equal(np.delete(y, 40), np.delete(yh, 40))
    # a gate that starts with NaN starts its filter at its first finite value
    lead = np.vstack([np.full((3, 1), np.nan), x])
    y2 = run_stage(st_, lead)
    assert np.isnan(y2[:3]).all()
    np.testing.assert_array_equal(y2[3:], run_stage(st_, x))


def test_integer_and_byte_swapped_input():
    y = run_stage(emi.Baseline(), np.arange(32, dtype=np.int16).reshape(2, 16))
    assert y.dtype == np.float32
    x, _ = synthetic(n=50, dtype=np.float64)
    be = x.astype(">f8")
    for stage in all_stages():
        out = run_stage(stage, be)
        assert out.dtype == np.float64
        assert_same(out, run_stage(stage, x))
    # a non-contiguous view works as well
    assert_same(run_stage(emi.Detect(), x[::2]), run_stage(emi.Detect(), x[::2].copy()))


# --------------------------------------------------------------------------------------
# parameter validation
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw,word", [
    (emi.Baseline, {"window": 0}, "window"),
    (emi.Baseline, {"threshold": -1}, "threshold"),
    (emi.Baseline, {"hold": 1.5}, "hold"),
    (emi.Baseline, {"window": "big"}, "window"),
    (emi.Detect, {"output": "nope"}, "output"),
    (emi.Detect, {"noise_window": float("nan")}, "noise_window"),
    (emi.MatchedDetect, {"window": 0}, "window"),
    (emi.MatchedDetect, {"basis": [[1.0, float("nan")]]}, "basis"),
    (emi.MatchedDetect, {"output": "zscore"}, "output"),
    (emi.SoilCompensation, {"components": ["clay"]}, "clay"),
    (emi.SoilCompensation, {"gate_times": [1e-5, -1e-4]}, "gate_times"),
    (emi.SoilCompensation, {"gate_times": [1e-5, 2e-5], "components": ["viscous", "offset"]},
     "2 gate\\(s\\) cannot be ground balanced against 2 soil components"),
    (emi.MainsNotch, {"q": 0}, "q"),
    (emi.MainsNotch, {"harmonics": 0}, "harmonics"),
])
def test_bad_params_raise_config_error_naming_them(cls, kw, word):
    with pytest.raises(ConfigError, match=word):
        cls(**kw)


def test_soil_needs_gate_times():
    st_ = emi.SoilCompensation()
    with pytest.raises(ConfigError, match="gate_times"):
        st_.process(np.zeros((2, 16)))
    st_.configure({"gate_times": GATES})
    assert st_.process(np.zeros((2, 16))).shape == (2, 16)
    with pytest.raises(ConfigError, match="chunk has 16 gates, gate_times has 8"):
        emi.SoilCompensation(gate_times=GATES[:8]).process(np.zeros((2, 16)))


# --------------------------------------------------------------------------------------
# streaming equals batch
# --------------------------------------------------------------------------------------

def make_stage(kind):
    return {
        "soil": lambda: emi.SoilCompensation(gate_times=GATES[:6],
                                             components=["viscous", "offset"]),
        # blocks of 2 readings: the warm-up (10 blocks) ends and learning
        # starts inside the drawn streams
        "soil_learn": lambda: emi.SoilCompensation(gate_times=GATES[:6], learn=True,
                                                   learn_block=2, learn_window=20.0,
                                                   learn_min=4, learn_snr=0.5),
        "baseline": lambda: emi.Baseline(window=20, noise_window=20, hold=3, max_freeze=40,
                                         warmup=5, threshold=3.0),
        "detect": lambda: emi.Detect(noise_window=20, warmup=5, threshold=2.0),
        "matched": lambda: emi.MatchedDetect(window=7, noise_window=20, warmup=5, threshold=2.0),
        "notch": lambda: emi.MainsNotch(sample_rate=1000.0, harmonics=2, q=5),
        "chain": lambda: Chain([
            emi.MainsNotch(sample_rate=1000.0),
            emi.SoilCompensation(gate_times=GATES[:6]),
            emi.Baseline(window=20, noise_window=20, hold=3, warmup=5),
            emi.MatchedDetect(window=5, noise_window=20, warmup=5)]),
    }[kind]()


@st.composite
def stream_and_chunks(draw):
    n = draw(st.integers(1, 160))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    x += np.cumsum(rng.normal(size=(n, 1)) * 0.1, axis=0)  # drift
    if draw(st.booleans()) and n > 10:  # a target bump
        i = draw(st.integers(0, n - 5))
        x[i:i + draw(st.integers(1, 40))] += 50 * rng.random(6)
    if draw(st.booleans()):  # missing values
        for _ in range(draw(st.integers(1, 3))):
            x[draw(st.integers(0, n - 1)), draw(st.integers(0, 5))] = np.nan
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = draw(st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(
        lambda s: max(s) > 0))
    return x.astype(dtype), sizes


@pytest.mark.parametrize("kind", ["soil", "soil_learn", "baseline", "detect", "matched", "notch",
                                  "chain"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream_and_chunks())
def test_streaming_equals_batch(kind, data):
    x, sizes = data
    stage = make_stage(kind)
    batch = run_stage(stage, x)
    chunked = run_stage(stage, x, sizes)
    one = run_stage(stage, x, 1)
    assert batch.shape[0] == x.shape[0]
    assert_same(chunked, batch)
    assert_same(one, batch)


# --------------------------------------------------------------------------------------
# the default chain on the simulated lanes (forward model of demine.simulate)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scene", ["magnetic-laterite", "benign-soil"])
def test_default_chain_on_simulated_lane(scene):
    """The same lane simulated with and without its objects (same seed: same
    soil, drift, noise and trajectory) tells where objects contribute nothing.
    There, soil, height changes, drift and the chain's own state after passing
    targets must leave the statistic at the noise level; mines must stand
    above that background's 99.9 % quantile."""
    simulate = pytest.importorskip("demine.simulate.lane")
    from demine.process import default_chain
    from demine.simulate.scene import load_scene

    sc = load_scene(scene)
    # the mines only: clutter tails would leave too few untouched readings
    sc = sc.replace(objects=tuple(o for o in sc.objects if o.is_mine))
    with_obj = simulate.simulate_lane(sc, duration=400.0, seed=1, streams=["emi"])
    without = simulate.simulate_lane(sc.replace(objects=()), duration=400.0, seed=1,
                                     streams=["emi"])
    x1 = with_obj.emi["samples"]
    x0 = without.emi["samples"].astype(np.float64)
    noise = np.std(np.diff(x0, axis=0), axis=0) / np.sqrt(2)
    quiet = (np.abs(x1 - x0) / noise).max(axis=1) < 0.3
    quiet[:5000] = False  # warm-up
    assert quiet.mean() > 0.01
    chain = default_chain("emi_default")
    chain.configure({"gate_times": np.asarray(sc.gate_times), "sample_rate": 1000.0})
    s = run_stage(chain, x1, 1000)[:, -1]
    q999 = np.quantile(s[quiet], 0.999)
    # emi.matched integrates 31 readings: white noise alone gives about 1.8, the
    # simulator's 1/f noise adds to that; the packaged detector floors are 20/10
    assert q999 < 10.0
    e, tr = with_obj.emi, with_obj.truth
    peaks = []
    for ox, oy, typ in zip(tr["x"], tr["y"], tr["type"], strict=True):
        near = (np.hypot(e["x"] - ox, e["y"] - oy) < 0.08) & (np.arange(len(s)) > 5000)
        if b"mine" in typ and near.any():
            peaks.append(s[near].max())
    assert len(peaks) >= 5
    # every mine, minimum-metal ones included, well above the quiet background
    # and above the detector's start threshold (the old per-reading statistic
    # left the weakest 1.4x above it)
    assert np.min(peaks) > 2.0 * max(q999, 10.0)


def test_a_baseline_freeze_too_long_to_keep_is_refused_when_given():
    """The quiet retune keeps max_freeze readings: 2**40 gave numpy's "Unable to
    allocate 24.0 TiB" at the first chunk, naming no parameter (kernel audit)."""
    with pytest.raises(ConfigError, match=r"emi.baseline: parameter 'max_freeze' must be <= "
                       "10000000"):
        emi.Baseline(max_freeze=2 ** 40)
    assert emi.Baseline(max_freeze=10_000_000).max_freeze == 10_000_000
