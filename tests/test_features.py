"""Alarm features: the compiled kernels against NumPy twins, and physics on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_simulate_physics import biot_savart_loop

from demine import _features
from demine.errors import ConfigError
from demine.features import (
    BODY_FEATURES,
    EMI_FEATURES,
    FEATURE_SETS,
    GPR_FEATURES,
    EMIContext,
    GPRContext,
    decay_frames,
    feature_set_name,
)


def decay_twin(resid, gate_times, noise, snr=2.0):
    """Plain NumPy reference of demine._features.decay_frames."""
    lt = np.log(gate_times)
    out = np.empty((resid.shape[0], 6))
    for i, r in enumerate(resid):
        ok = r > snr * noise
        out[i, 0] = math.sqrt(np.sum((r / noise) ** 2))
        out[i, 3] = ok.mean()
        sa = np.abs(r).sum()
        out[i, 4] = r.sum() / sa if sa > 0 else 0.0
        out[i, 5] = lt[ok][-1] if ok.any() else np.nan
        n = ok.sum()
        if n < 2:
            out[i, 1], out[i, 2] = np.nan, 0.0
            continue
        u = lt[ok] - lt[ok].mean()
        v = np.log(r[ok])
        if n < 4:
            out[i, 1], out[i, 2] = np.sum(u * (v - v.mean())) / np.sum(u * u), 0.0
            continue
        A = np.column_stack([np.ones(n), u, u * u - np.mean(u * u)])
        c, *_ = np.linalg.lstsq(A, v, rcond=None)
        out[i, 1], out[i, 2] = c[1], c[2]
    return out


GATES = np.geomspace(1e-5, 1e-3, 16)


def test_power_law_decay_gives_its_exponent():
    k = np.array([1.0, 0.3, 5.0])[:, None]
    beta = np.array([0.8, 1.5, 2.5])[:, None]
    resid = k * (GATES[None, :] / 1e-5) ** (-beta)
    out = decay_frames(resid, GATES, np.full(16, 1e-9))
    np.testing.assert_allclose(out[:, 1], -beta[:, 0], atol=1e-9)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-9)
    np.testing.assert_allclose(out[:, 3], 1.0)
    np.testing.assert_allclose(out[:, 4], 1.0)


def test_exponential_tail_bends_down():
    # Pasion-Oldenburg: t^-1 exp(-t / gamma): the log-log curve bends down
    resid = (GATES / 1e-5) ** -1.0 * np.exp(-GATES / 2e-4)
    out = decay_frames(resid[None, :], GATES, np.full(16, 1e-12))
    assert out[0, 2] < -0.05
    assert out[0, 1] < -1.0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 6), st.integers(2, 12)),
              elements=st.floats(-10, 10, allow_nan=False)),
       st.floats(0.5, 3.0))
def test_decay_kernel_matches_numpy_twin(resid, snr):
    g = resid.shape[1]
    gt = np.geomspace(1e-5, 1e-3, g)
    noise = np.linspace(0.2, 1.0, g)
    got = decay_frames(resid, gt, noise, snr)
    ref = decay_twin(resid, gt, noise, snr)
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-8)


def test_decay_frames_rejects_bad_input():
    with pytest.raises(ConfigError, match="gates"):
        decay_frames(np.zeros((3, 4)), GATES, np.ones(16))
    with pytest.raises(ConfigError, match="positive"):
        decay_frames(np.zeros((3, 4)), np.zeros(4), np.ones(4))
    with pytest.raises(ConfigError, match="gates >= 1"):
        decay_frames(np.zeros((3, 0)), np.zeros(0), np.ones(0))


def test_decay_frames_of_a_reading_with_a_missing_gate_is_nan():
    """A NaN gate had given a NaN amplitude beside a slope fitted on the other
    gates and polarity 0; -inf an infinite amplitude (kernel audit)."""
    rng = np.random.default_rng(3)
    resid = rng.normal(0, 1, (4, 16)) + 20 * (GATES[0] / GATES) ** 0.7
    good = decay_frames(resid, GATES, np.ones(16))
    bad = resid.copy()
    bad[1, 5] = np.nan
    bad[2, 0] = -np.inf
    got = decay_frames(bad, GATES, np.ones(16))
    assert np.isnan(got[1:3]).all()
    np.testing.assert_array_equal(got[[0, 3]], good[[0, 3]])


def eoh_twin(patch, bins):
    gy = 0.5 * (patch[2:, 1:-1] - patch[:-2, 1:-1])
    gx = 0.5 * (patch[1:-1, 2:] - patch[1:-1, :-2])
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    # a tiny negative angle folds to pi - tiny == pi in floating point: that is 0
    ang = np.where(ang >= np.pi, ang - np.pi, ang)
    b = np.minimum((ang / np.pi * bins).astype(int), bins - 1)
    out = np.zeros(bins)
    np.add.at(out, b[mag > 0], mag[mag > 0])
    return out


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 12)),
              elements=st.floats(-5, 5, allow_nan=False)), st.integers(1, 9))
def test_orientation_histogram_matches_numpy_twin(patch, bins):
    out = np.zeros(bins)
    _features.orientation_histogram(np.ascontiguousarray(patch), bins, out)
    np.testing.assert_allclose(out, eoh_twin(patch, bins), rtol=1e-9, atol=1e-9)


def test_orientation_histogram_folds_a_tiny_negative_angle_to_zero():
    patch = np.zeros((3, 5))
    patch[1, 0] = -1.0
    patch[2, 1] = -4.04232781e-170  # gradient angle -8e-170: folds to pi, i.e. 0
    out = np.zeros(2)
    _features.orientation_histogram(patch, 2, out)
    np.testing.assert_allclose(out, eoh_twin(patch, 2))
    assert out[0] == pytest.approx(0.5) and out[1] == 0


def test_orientation_histogram_of_vertical_edges():
    patch = np.zeros((10, 10))
    patch[:, 5:] = 1.0  # an edge along the rows: gradient along x, angle 0
    out = np.zeros(4)
    _features.orientation_histogram(patch, 4, out)
    assert out[0] > 0 and out[1:].sum() == 0


def _sweep_lane(beta, amp=1.0, depth=0.08, soil=0.0, seed=0, sign=1.0, unit=1.0):
    """Readings of a coil sweeping over a dipole-like target at (0.5, 1.0), times ``unit``."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 60, 0.002)
    x = 0.5 + 0.5 * np.sin(2 * np.pi * t / 1.4)
    y = 0.4 + 0.02 * t
    r2 = (x - 0.5) ** 2 + (y - 1.0) ** 2 + (depth + 0.05) ** 2
    spatial = amp * ((depth + 0.05) ** 2 / r2) ** 3
    decay = (GATES / GATES[0]) ** (-beta)
    samples = sign * spatial[:, None] * decay[None, :]
    samples += soil * (GATES / GATES[0]) ** -1.0
    samples += 1e-3 * rng.standard_normal(samples.shape)
    tns = (t * 1e9).astype(np.int64)
    return EMIContext._make(samples * unit, x, y, tns, GATES)


def test_emi_features_recover_decay_and_footprint():
    slow = _sweep_lane(0.8).features_at(0.5, 1.0, 30.0)
    fast = _sweep_lane(2.0).features_at(0.5, 1.0, 30.0)
    assert set(slow) == set(EMI_FEATURES)
    assert slow["emi_slope"] == pytest.approx(-0.8, abs=0.1)
    assert fast["emi_slope"] < slow["emi_slope"] - 0.8
    assert slow["emi_polarity"] > 0.9
    assert slow["emi_snr_log"] > 2
    assert 0.01 < slow["emi_halfmax_r"] < 0.2
    deep = _sweep_lane(0.8, depth=0.2, amp=1.0).features_at(0.5, 1.0, 30.0)
    assert deep["emi_halfmax_r"] > slow["emi_halfmax_r"]


def test_emi_features_see_soil_and_negative_anomalies():
    f = _sweep_lane(1.0, soil=5.0).features_at(0.5, 1.0, 30.0)
    assert f["emi_soil_slope"] == pytest.approx(-1.0, abs=0.05)
    assert f["emi_soil_level"] > 2
    neg = _sweep_lane(1.0, sign=-1.0).features_at(0.5, 1.0, 30.0)
    assert neg["emi_polarity"] < -0.9


def test_emi_features_far_from_data_are_nan():
    f = _sweep_lane(1.0).features_at(30.0, 30.0, 30.0)
    assert all(math.isnan(v) for v in f.values())


def _bscan(sign, depth=0.1, v=1e8, noise=0.02, seed=0):
    """A radar line over a point reflector at x = 1 m (direct wave in the raw traces)."""
    rng = np.random.default_rng(seed)
    dt = 3.125e-11
    ns, n = 256, 400
    x = np.linspace(0, 2, n)
    ts = 2e-10
    t = np.arange(ns) * dt
    tk = ts + np.sqrt((2 * depth / v) ** 2 + (2 * (x - 1.0) / v) ** 2)
    f0 = 1.5e9

    def ricker(tt):
        a = (np.pi * f0 * tt) ** 2
        return (1 - 2 * a) * np.exp(-a)

    b = sign * ricker(t[None, :] - tk[:, None]) + noise * rng.standard_normal((n, ns))
    raw = b + ricker(t - ts)[None, :] * 5
    tns = (np.arange(n) * 2.5e6).astype(np.int64)
    ctx = GPRContext._make(b.astype(np.float32), raw, x, np.zeros(n), tns, dt)
    ctx.velocity = v
    return ctx, float(tns[n // 2]) / 1e9


def test_gpr_polarity_follows_reflection_sign():
    pos, t = _bscan(+1.0)
    neg, _ = _bscan(-1.0)
    fp = pos.features_at(t, 0.1, 1e8)
    fn = neg.features_at(t, 0.1, 1e8)
    assert set(fp) == set(GPR_FEATURES)
    assert fp["gpr_polarity"] == 1.0 and fn["gpr_polarity"] == -1.0
    assert fp["gpr_amp_log"] > 1.0
    assert fp["gpr_fit"] > 0.5
    assert fp["gpr_eoh0"] + fp["gpr_eoh5"] + fp["gpr_eoh1"] > 0  # a normalised histogram
    assert sum(fp[f"gpr_eoh{j}"] for j in range(6)) == pytest.approx(1.0)
    near = pos.features_near(1.0, 0.0, t)
    assert near["gpr_depth"] == pytest.approx(0.1, abs=0.02)
    assert near["gpr_polarity"] == 1.0


def test_gpr_fit_is_low_on_noise():
    ctx, t = _bscan(0.0, noise=1.0)
    f = ctx.features_at(t, 0.1, 1e8)
    assert f["gpr_fit"] < 0.3


def test_feature_sets_by_sensor():
    assert feature_set_name("emi", {"emi"}) == "emi"
    assert feature_set_name("emi", {"emi", "gpr"}) == "emi+gpr"
    assert feature_set_name("gpr", {"emi", "gpr"}) == "gpr+emi"
    assert FEATURE_SETS["emi+gpr"][: len(EMI_FEATURES)] == EMI_FEATURES
    for names in FEATURE_SETS.values():
        assert len(set(names)) == len(names)
    with pytest.raises(ConfigError):
        feature_set_name("gps", {"emi"})


def _raw_line(sign, *, depth=0.05, refl=0.1, seed=0, wavelet="ricker", unit=1.0):
    """Raw radar traces of a line over a body at x = 1 m: direct wave, a ground bounce
    moving with the head height, and the body's reflection (sign: +1 plastic-like)."""
    rng = np.random.default_rng(seed)
    dt, ns, n, f0 = 3.125e-11, 512, 400, 1.5e9
    c, v = 299_792_458.0, 1.2e8
    x = np.linspace(0, 2, n)
    h = 0.05 + 0.01 * rng.standard_normal(n)
    t = np.arange(ns) * dt

    def w(tt):
        a = (np.pi * f0 * tt) ** 2
        if wavelet == "ricker":
            return (1 - 2 * a) * np.exp(-a)
        s = 1 / (2 * np.pi * f0)
        return (tt / s) * np.exp(0.5 - 0.5 * (tt / s) ** 2)

    t0 = 2e-9
    t_gb = t0 + 2 * h / c
    raw = w(t[None, :] - t0) - 0.4 * w(t[None, :] - t_gb[:, None])
    r = np.hypot(x - 1.0, depth)
    tk = t_gb + 2 * r / v
    beam = np.exp(-((np.arctan2(np.abs(x - 1.0), depth + h) / np.radians(40)) ** 2))
    raw += sign * refl * beam[:, None] * w(t[None, :] - tk[:, None])
    raw += 0.004 * rng.standard_normal(raw.shape)
    raw *= unit
    tns = (np.arange(n) * 2.5e6).astype(np.int64)
    ctx = GPRContext._make(raw.astype(np.float32), raw, x, np.zeros(n), tns, dt, height=h)
    ctx.velocity = v
    return ctx, float(tns[n // 2]) / 1e9


@pytest.mark.parametrize("wavelet", ["ricker", "gaussian-derivative"])
def test_gpr_body_sign_tells_plastic_from_metal(wavelet):
    plastic, t = _raw_line(+1.0, wavelet=wavelet)
    metal, _ = _raw_line(-1.0, refl=0.4, wavelet=wavelet)
    fp = plastic.body_features(1.0, 0.0, t)
    fm = metal.body_features(1.0, 0.0, t)
    assert set(fp) == set(BODY_FEATURES)
    # the body's reflectivity relative to the direct wave, with its sign, in spite of
    # the ground bounce moving with the head height
    # (smeared by the traces' spread around the point: a fraction of 0.1 and -0.4)
    assert 0.01 < fp["gpr_body_refl"] < 0.1 and -0.4 < fm["gpr_body_refl"] < -0.04
    assert 2 < -fm["gpr_body_refl"] / fp["gpr_body_refl"] < 8
    assert fp["gpr_body_pos_log"] > fp["gpr_body_neg_log"] + 0.5
    assert fm["gpr_body_neg_log"] > fm["gpr_body_pos_log"] + 0.5
    assert fp["gpr_body_depth"] == pytest.approx(0.05, abs=0.03)
    # nothing buried: no event stands out
    empty, _ = _raw_line(0.0, wavelet=wavelet)
    fe = empty.body_features(1.0, 0.0, t)
    assert max(fe["gpr_body_pos_log"], fe["gpr_body_neg_log"]) < fp["gpr_body_pos_log"] - 0.5
    # a point far from every trace: no features
    assert math.isnan(plastic.body_features(1.0, 5.0, t)["gpr_body_refl"])


@pytest.mark.parametrize("exponent", [-60, -30, 30])
def test_features_do_not_depend_on_the_amplitude_unit(exponent):
    """Detectors record in volts, millivolts or counts: the same data in another
    unit (a power of two) gives the same features.  The noise levels had
    absolute floors (1e-12), which swamped the noise of readings in small
    units and flattened every decay feature."""
    f = 2.0 ** exponent
    ref = _sweep_lane(1.2, soil=0.5).features_at(0.5, 1.0, 30.0)
    got = _sweep_lane(1.2, soil=0.5, unit=f).features_at(0.5, 1.0, 30.0)
    assert np.isfinite(ref["emi_slope"]) and ref["emi_snr_log"] > 2
    for k in EMI_FEATURES:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-9, nan_ok=True), k
    plastic, t = _raw_line(+1.0)
    scaled, _ = _raw_line(+1.0, unit=f)
    ref = {**plastic.body_features(1.0, 0.0, t), **plastic.features_near(1.0, 0.0, t)}
    got = {**scaled.body_features(1.0, 0.0, t), **scaled.features_near(1.0, 0.0, t)}
    assert set(ref) == set(BODY_FEATURES) | set(GPR_FEATURES)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-6, nan_ok=True), k


def _tensor_lane(ratios, betas, tilt_deg=30.0, depth=0.06, height=0.05, seed=0,
                 unit=1.0, amp=3e4, line=None):
    """A coil of radius 0.12 m sweeping at ``height`` over an induced dipole at
    (0.5, 1.0, ``depth``) whose principal polarizabilities are ``ratio_i *
    (t/t0)^-beta_i`` along axes tilted by ``tilt_deg``; noise 1 per gate.
    ``line``: instead, straight passes along x (back and forth, 4 s each) at
    y = 1.0 + each of these offsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 60, 0.004)
    x = 0.5 + 0.5 * np.sin(2 * np.pi * t / 1.4)
    y = 0.4 + 0.02 * t
    if line is not None:
        u = np.arange(0, 4, 0.004)
        t = np.concatenate([u + 4 * k for k in range(len(line))])
        x = np.concatenate([-0.3 + 0.4 * (u if k % 2 == 0 else 4 - u) for k in range(len(line))])
        y = np.concatenate([np.full(u.size, 1.0 + off) for off in line])
    keep = np.hypot(x - 0.5, y - 1.0) < 0.85
    t, x, y = t[keep], x[keep], y[keep]
    rel = np.stack([0.5 - x, 1.0 - y, np.full(x.size, -(depth + height))], axis=1)
    hv = biot_savart_loop(0.12, rel, n=180)
    c, s = math.cos(math.radians(tilt_deg)), math.sin(math.radians(tilt_deg))
    axes = np.array([[s, 0.0, c], [c, 0.0, -s], [0.0, 1.0, 0.0]])  # rows: body axes
    proj = hv @ axes.T
    curves = np.asarray(ratios)[:, None] * (GATES / GATES[0])[None, :] ** -np.asarray(
        betas)[:, None]
    samples = amp * (proj**2) @ curves + rng.standard_normal((x.size, GATES.size))
    tns = (t * 1e9).astype(np.int64)
    return EMIContext._make(samples * unit, x, y, tns, GATES,
                            height=np.full(x.size, height), coil_radius=0.12)


def test_the_dipole_fit_tells_a_compact_piece_from_a_plate():
    # (the alarm on the object: see the docs for what an alarm a centimetre
    # off a compact piece does to this search)
    compact = _tensor_lane((1.0, 0.9, 0.9), (1.0, 1.0, 1.0)).features_at(0.5, 1.0, 30.0)
    plate = _tensor_lane((1.0, 0.25, 0.25), (1.0, 1.6, 1.6)).features_at(0.5, 1.0, 30.0)
    for f in (compact, plate):
        assert f["emi_dip_fit"] > 0.99
        assert f["emi_dip_depth"] == pytest.approx(0.06, abs=0.01)
        assert f["emi_dip_slope1"] == pytest.approx(-1.0, abs=0.05)
    assert compact["emi_dip_r2"] > 0.85 and compact["emi_dip_r3"] > 0.85
    # (summed over the gates, where the thin directions' faster decay counts)
    g = GATES / GATES[0]
    ratio = 0.25 * np.sum(g**-1.6) / np.sum(g**-1.0)
    assert plate["emi_dip_r2"] == pytest.approx(ratio, abs=0.03)
    assert plate["emi_dip_r3"] == pytest.approx(ratio, abs=0.03)
    # the plate's thin directions decay faster, and so do its late gates
    assert plate["emi_dip_slope23"] == pytest.approx(-1.6, abs=0.1)
    assert plate["emi_dip_late"] < 0.5 * plate["emi_dip_r2"]
    assert compact["emi_dip_slope23"] == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("offset", [0.0, 0.05])
def test_one_pass_leaves_the_dipole_s_shape_unknown(offset):
    """One straight pass (a single line, a cart's lines wider apart than the
    coil's reach) does not determine the whole tensor: the shape features
    are NaN, not lstsq's minimum-norm answer (which read this compact piece
    as a rod on the line and as nothing physical beside it); the dominant
    decay, the fit and the depth stay."""
    f = _tensor_lane((1.0, 0.9, 0.9), (1.0, 1.0, 1.0), line=(offset,)).features_at(0.5, 1.0, 2.0)
    for k in ("emi_dip_r2", "emi_dip_r3", "emi_dip_late", "emi_dip_slope23"):
        assert math.isnan(f[k]), k
    assert f["emi_dip_fit"] > 0.99
    assert f["emi_dip_slope1"] == pytest.approx(-1.0, abs=0.05)
    assert f["emi_dip_depth"] == pytest.approx(0.06, abs=0.02)
    # three passes 4 cm apart determine it
    g = _tensor_lane((1.0, 0.9, 0.9), (1.0, 1.0, 1.0),
                     line=(offset - 0.04, offset, offset + 0.04)).features_at(0.5, 1.0, 6.0)
    assert g["emi_dip_r2"] > 0.8 and g["emi_dip_r3"] > 0.8


def test_dipole_features_do_not_depend_on_the_unit_and_fail_soft_on_noise():
    f1 = _tensor_lane((1.0, 0.3, 0.3), (1.0, 1.0, 1.0)).features_at(0.5, 1.0, 30.0)
    f2 = _tensor_lane((1.0, 0.3, 0.3), (1.0, 1.0, 1.0), unit=1e-3).features_at(0.5, 1.0, 30.0)
    for k in f1:
        if k.startswith("emi_dip"):
            assert f2[k] == pytest.approx(f1[k], rel=1e-6, abs=1e-9), k
    # nothing there: whatever fits the noise explains little of it
    noise = _tensor_lane((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), amp=0.0).features_at(0.5, 1.0, 30.0)
    assert math.isnan(noise["emi_dip_fit"]) or noise["emi_dip_fit"] < 0.5


def test_dipole_fit_names_bad_input():
    from demine.features import dipole_fit
    d = np.ones((20, 4))
    xy = np.linspace(0, 1, 20)
    with pytest.raises(ConfigError, match="n positions"):
        dipole_fit(d, xy, xy[:10], np.full(20, 0.05), 0.12, 0.5, 0.0)
    bad = d.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        dipole_fit(bad, xy, xy, np.full(20, 0.05), 0.12, 0.5, 0.0)
    with pytest.raises(ConfigError, match="coil radius"):
        dipole_fit(d, xy, xy, np.full(20, 0.05), 0.0, 0.5, 0.0)


def test_dipole_features_check_shapes_up_front():
    from demine.features import dipole_features
    rng = np.random.default_rng(0)
    d = rng.normal(size=(20, 8)) + 5
    xy = rng.uniform(-0.1, 0.1, 20)
    h = np.full(20, 0.05)
    gates = np.geomspace(1e-5, 1e-3, 8)
    # (one noise level or gate time too few or many: a NumPy broadcasting error)
    for noise, gt in ((np.ones(7), gates), (np.ones(9), gates), (np.ones(8), gates[:7]),
                      (1.0, gates)):
        with pytest.raises(ConfigError, match="readings of 8 gates need 8 noise levels and 8 "
                           "gate times"):
            dipole_features(d, noise, gt, xy, xy, h, 0.12, 0.0, 0.0)
    with pytest.raises(ConfigError, match="20 readings need 20 values of height"):
        dipole_features(d, np.ones(8), gates, xy, xy, h[:5], 0.12, 0.0, 0.0)
    with pytest.raises(ConfigError, match=r"readings must be \(n, gates\)"):
        dipole_features(d[:, 0], np.ones(1), gates[:1], xy, xy, h, 0.12, 0.0, 0.0)
    # (zero or negative noise: NaN or the same features; a NaN gate time: LinAlgError)
    for noise, gt in ((np.zeros(8), gates), (-np.ones(8), gates),
                      (np.ones(8), np.r_[gates[:7], np.nan])):
        with pytest.raises(ConfigError, match="positive and finite"):
            dipole_features(d, noise, gt, xy, xy, h, 0.12, 0.0, 0.0)
    with pytest.raises(ConfigError, match="real numbers"):  # (imaginary part dropped)
        dipole_features(d + 1j, np.ones(8), gates, xy, xy, h, 0.12, 0.0, 0.0)
    with pytest.raises(ConfigError, match=r"alarm position \(ax, ay\) must be finite"):
        dipole_features(d, np.ones(8), gates, xy, xy, h, 0.12, np.nan, 0.0)
    # nothing to fit is still no answer, not an error
    empty = dipole_features(np.zeros((0, 8)), np.ones(8), gates, [], [], [], 0.12, 0.0, 0.0)
    assert all(math.isnan(v) for v in empty.values())


def test_the_dipole_fit_uses_the_head_height():
    # a head 15 cm up: the fit places the object 6 cm below the ground only
    # if it takes the height from the stream
    lane = _tensor_lane((1.0, 0.9, 0.9), (1.0, 1.0, 1.0), height=0.15)
    f = lane.features_at(0.5, 1.0, 30.0)
    assert f["emi_dip_depth"] == pytest.approx(0.06, abs=0.01)
    assert f["emi_dip_r2"] > 0.85 and f["emi_dip_r3"] > 0.85
    lane.height = None  # unknown: the nominal 5 cm, and the object comes out deeper
    assert lane.features_at(0.5, 1.0, 30.0)["emi_dip_depth"] > 0.12


def test_the_dipole_fit_returns_the_tensor_with_its_signs():
    from demine.features import dipole_fit
    rng = np.random.default_rng(3)
    x = np.repeat(np.linspace(0.2, 0.8, 31), 31)
    y = np.tile(np.linspace(0.7, 1.3, 31), 31)
    keep = np.hypot(x - 0.5, y - 1.0) < 0.2
    x, y = x[keep], y[keep]
    h = np.full(x.size, 0.05)
    hv = biot_savart_loop(0.12, np.stack([0.5 - x, 1.0 - y, np.full(x.size, -0.11)], axis=1))
    truth = np.array([[3.0, 0.5, 1.0], [0.5, 2.0, -0.7], [1.0, -0.7, 4.0]]) * 1e4
    decay = np.array([1.0, 0.5, 0.2])  # three gates
    data = np.einsum("ni,ij,nj->n", hv, truth, hv)[:, None] * decay + 0.01 * rng.standard_normal(
        (x.size, 3))
    _, tensor, pos = dipole_fit(data, x, y, h, 0.12, 0.5, 1.0)
    assert pos == pytest.approx((0.5, 1.0, 0.06), abs=2e-3)
    want = truth[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    np.testing.assert_allclose(tensor[:, 0], want, rtol=0.08)  # signs included


def test_emi_features_skip_readings_with_a_missing_gate_and_check_heights():
    lane = _tensor_lane((1.0, 0.9, 0.9), (1.0, 1.0, 1.0))
    clean = lane.features_at(0.5, 1.0, 30.0)
    tns = (lane.time_s * 1e9).astype(np.int64)
    s = lane.samples.copy()
    near = np.flatnonzero(np.hypot(lane.x - 0.5, lane.y - 1.0) < 0.05)[::7]
    s[near, 3] = np.nan
    holed = EMIContext._make(s, lane.x, lane.y, tns, GATES, height=lane.height,
                             coil_radius=0.12).features_at(0.5, 1.0, 30.0)
    assert set(holed) == set(clean)
    for k in ("emi_snr_log", "emi_dip_r2", "emi_dip_depth"):
        assert holed[k] == pytest.approx(clean[k], abs=0.05), k
    with pytest.raises(ConfigError, match="head heights"):
        EMIContext._make(s, lane.x, lane.y, tns, GATES, height=np.ones(5))
    flat = EMIContext._make(lane.samples, lane.x, lane.y, tns, GATES, height=0.05)
    assert flat.height.shape == tns.shape


def test_emi_features_of_flat_readings_are_missing_not_a_crash():
    # (all-zero readings, a dead or unplugged head: the noise floor's norm underflowed
    # to 0 and features_at raised ZeroDivisionError)
    from demine.features import EMIContext

    n = 3000
    for level in (0.0, 1e-300):
        ctx = EMIContext(samples=np.full((n, 16), level), x=np.linspace(0.0, 1.0, n),
                         y=np.zeros(n), time_s=np.arange(n) / 1000.0,
                         gate_times=np.geomspace(1e-5, 1e-3, 16))
        f = ctx.features_at(0.5, 0.0, 1.5)
        assert f["emi_snr_log"] == -3.0
        assert all(math.isnan(v) for k, v in f.items() if k != "emi_snr_log")
