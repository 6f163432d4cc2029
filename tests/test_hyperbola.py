"""GPR hyperbola detector: kernels against NumPy twins, recovery of known
hyperbolae, polarity, empty lines, chunking invariance and a full-wave (gprMax)
B-scan of a buried metal cylinder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demine import _hyperbola as K
from demine.errors import ConfigError
from demine.hyperbola import ALARM_COLUMNS, GPRDetector, detect_gpr, surface_time

DATA = Path(__file__).parents[1].parent / "shared" / "data"
GPRMAX = DATA / "gpr" / "gprmax-cylinder-bscan-generated" / (
    "cylinder_Bscan_2D_n60_gprMax-4.0.1_merged.h5")

DT = 16e-9 / 512
T_SURF = 2.0e-9
F = 1.5e9


def ricker(t: np.ndarray, f: float = F) -> np.ndarray:
    a = (math.pi * f * t) ** 2
    return (1 - 2 * a) * np.exp(-a)


def make_line(targets, *, length=3.0, noise=0.01, seed=0, ns=512, step=(0.002, 0.004)):
    """B-scan with point diffractors (x0, z, v, amplitude) on irregular positions."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(*step, size=int(length / np.mean(step)) + 1)
    x = np.cumsum(steps)
    x = x[x < length]
    t = np.arange(ns) * DT
    tr = noise * rng.standard_normal((len(x), ns))
    for x0, z, v, amp in targets:
        tt = T_SURF + 2.0 / v * np.sqrt((x - x0) ** 2 + z * z)
        beam = np.exp(-((np.arctan2(np.abs(x - x0), z) / math.radians(40)) ** 2))
        tr += amp * beam[:, None] * ricker(t[None, :] - tt[:, None])
    return tr.astype(np.float32), x


def params(**kw):
    p = dict(time_zero=T_SURF, threshold=10.0)
    p.update(kw)
    return p


# ---------------------------------------------------------------- NumPy twins
def ref_bins(tr, x, y, t, ds):
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    g = np.floor(s / ds).astype(np.int64)
    out, meta, gi = [], [], []
    for gg in np.unique(g):
        m = g == gg
        out.append(tr[m].astype(np.float64).mean(0))
        meta.append([s[m].mean(), x[m].mean(), y[m].mean(), t[m].mean()])
        gi.append(gg)
    return np.array(out), np.array(meta), np.array(gi)


def test_bin_traces_matches_numpy():
    rng = np.random.default_rng(3)
    n, ns = 400, 16
    tr = rng.standard_normal((n, ns)).astype(np.float32)
    x = np.cumsum(rng.uniform(0, 0.004, n))
    y = np.cumsum(rng.uniform(-0.001, 0.001, n))
    t = np.arange(n) * 2.5e6
    st_ = np.zeros(K.NST)
    acc = np.zeros(ns)
    out = np.empty((n, ns), np.float32)
    meta = np.empty((n, 4))
    gi = np.empty(n, np.int64)
    m = K.bin_traces(tr, x, y, t, 0.01, st_, acc, out, meta, gi)
    m += K.flush_bin(st_, acc, out[m:], meta[m:], gi[m:])
    ro, rm, rg = ref_bins(tr, x, y, t, 0.01)
    assert m == len(rg)
    np.testing.assert_array_equal(gi[:m], rg)
    np.testing.assert_allclose(out[:m], ro, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(meta[:m], rm, rtol=1e-9, atol=1e-9)


def ref_scan(a, pos, j, vel, widths, t_surf, dt, k_lo, k_hi, tan_ap, ap_min, ap_max,
             pre_dx, pre_dk, pre_thr, min_n, flat_penalty):
    ns = a.shape[1]
    best = (0.0, 0.0, -1, -1, -1, 0.0, 0, 0.0)
    pw = np.abs(pos - pos[j]) <= pre_dx + 1e-12
    for k in range(k_lo, k_hi):
        ks = np.arange(max(k - pre_dk, 0), min(k + pre_dk + 1, ns))
        blk = a[pw][:, ks].astype(np.float64)
        if blk.size == 0 or np.mean(blk**2) < pre_thr**2:
            continue
        tau = k * dt - t_surf
        if tau <= 0:
            continue
        for iv, v in enumerate(vel):
            z = 0.5 * v * tau
            for iw, w in enumerate(widths):
                ap = min(max(z * tan_ap, ap_min, w), ap_max) + w
                d = np.abs(pos - pos[j])
                sel = np.flatnonzero(d <= ap)
                dd = np.maximum(d[sel] - w, 0.0)
                tk = (t_surf + np.sqrt(tau**2 + (2 * dd / v) ** 2)) / dt
                ok = tk < ns - 1 - 1e-9
                sel, tk = sel[ok], tk[ok]
                if len(sel) < min_n:
                    continue
                k0 = tk.astype(int)
                fr = tk - k0
                vals = (1 - fr) * a[sel, k0] + fr * a[sel, k0 + 1]
                sm = vals.sum()
                lim = d[sel] > w
                fl = a[sel[lim], k].astype(np.float64).sum() * (1 if sm >= 0 else -1)
                e = abs(sm) - (flat_penalty * fl if fl > 0 else 0.0)
                e /= math.sqrt(len(sel))
                if e > best[0]:
                    best = (e, sm / math.sqrt(len(sel)), k, iv, iw,
                            sm * sm / (len(sel) * (vals**2).sum()), len(sel), tau)
    return np.array(best, dtype=float)


@pytest.mark.parametrize("flat_penalty", [0.0, 1.0])
def test_hyperbola_scan_matches_numpy(flat_penalty):
    tr, x = make_line([(0.3, 0.06, 0.1e9, 1.0)], length=0.6, noise=0.05, seed=1, ns=160,
                      step=(0.008, 0.012))
    a = np.ascontiguousarray(tr / 0.05, dtype=np.float32)
    n = len(x)
    vel = np.array([0.08e9, 0.1e9, 0.13e9])
    widths = np.array([0.0, 0.03])
    ap_max, pre_dx = 0.15, 0.02
    reach = ap_max + widths.max()
    lo = np.array([np.searchsorted(x, xi - reach - 1e-9) for xi in x], np.int64)
    hi = np.array([np.searchsorted(x, xi + reach + 1e-9, "right") for xi in x], np.int64)
    plo = np.array([np.searchsorted(x, xi - pre_dx - 1e-12) for xi in x], np.int64)
    phi = np.array([np.searchsorted(x, xi + pre_dx + 1e-12, "right") for xi in x], np.int64)
    out = np.zeros((n, 8))
    k_lo, k_hi = 70, 150
    K.hyperbola_scan(a, x, lo, hi, 0, n, vel, widths, T_SURF, DT, k_lo, k_hi, 1.0, 0.03,
                     ap_max, plo, phi, 3, 1.5, 3, flat_penalty, out, 2)
    for j in range(0, n, 3):
        ref = ref_scan(a, x, j, vel, widths, T_SURF, DT, k_lo, k_hi, 1.0, 0.03, ap_max,
                       pre_dx, 3, 1.5, 3, flat_penalty)
        np.testing.assert_allclose(out[j], ref, rtol=1e-6, atol=1e-6, err_msg=f"bin {j}")
    assert out[:, 0].max() > 10  # the hyperbola is there


def test_hyperbola_scan_same_on_one_thread_a_team_and_small_ranges():
    # a range of a few bins runs on the calling thread (no team to wake), a
    # large one on a team: bit for bit the same rows
    tr, x = make_line([(0.3, 0.06, 0.1e9, 1.0)], length=0.6, noise=0.05, seed=2, ns=160)
    a = np.ascontiguousarray(tr / 0.05, dtype=np.float32)
    n = len(x)
    vel, widths = np.array([0.08e9, 0.1e9, 0.13e9]), np.array([0.0, 0.03])
    lo = np.searchsorted(x, x - 0.18 - 1e-9).astype(np.int64)
    hi = np.searchsorted(x, x + 0.18 + 1e-9, "right").astype(np.int64)
    plo = np.searchsorted(x, x - 0.02).astype(np.int64)
    phi = np.searchsorted(x, x + 0.02, "right").astype(np.int64)

    def scan(j0, j1, nt):
        out = np.full((j1 - j0, 8), np.nan)
        K.hyperbola_scan(a, x, lo, hi, j0, j1, vel, widths, T_SURF, DT, 70, 150, 1.0, 0.03,
                         0.15, plo, phi, 3, 1.5, 3, 1.0, out, nt)
        return out

    whole = {nt: scan(0, n, nt) for nt in (1, 2, 4)}
    assert np.array_equal(whole[1], whole[2]) and np.array_equal(whole[1], whole[4])
    parts = np.concatenate([scan(j, min(j + 3, n), 4) for j in range(0, n, 3)])
    assert np.array_equal(parts, whole[1])
    assert scan(5, 5, 2).shape == (0, 8)
    assert whole[1][:, 0].max() > 10


def test_prescreen_decides_cells_at_the_threshold_by_the_exact_sum():
    # the kernel estimates a cell's energy from per-sample sums of squares and
    # sums exactly (bins outer, samples inner, float32 squares in float64)
    # only near the threshold: put the threshold a few ulps either side of
    # the exact energies of cells where the two orders round differently,
    # and check each decision against the exact sum
    rng = np.random.default_rng(7)
    nb, ns, pre_dk = 24, 64, 3
    a = (rng.standard_normal((nb, ns)) * np.exp(rng.uniform(-6, 6, (nb, ns)))).astype(np.float32)
    sq = (a * a).astype(np.float64)
    pos = np.arange(nb) * 0.01
    lo = np.zeros(nb, np.int64)
    hi = np.full(nb, nb, np.int64)
    plo = np.maximum(np.arange(nb) - 2, 0).astype(np.int64)
    phi = np.minimum(np.arange(nb) + 3, nb).astype(np.int64)
    vel, widths = np.array([0.1e9]), np.array([0.0])
    cells = []
    for j in range(0, nb, 5):
        col = [0.0] * ns
        for i in range(plo[j], phi[j]):
            col = [c + float(v) for c, v in zip(col, sq[i], strict=True)]
        for k in range(ns):
            e = 0.0
            for i in range(plo[j], phi[j]):
                for kk in range(max(k - pre_dk, 0), min(k + pre_dk + 1, ns)):
                    e += float(sq[i, kk])
            ea = 0.0
            for kk in range(max(k - pre_dk, 0), min(k + pre_dk + 1, ns)):
                ea += col[kk]
            if e != ea:
                cells.append((j, k, e, ea))
    assert len(cells) > 10
    differ = 0
    for j, k, e, ea in cells[:12]:
        cnt = (phi[j] - plo[j]) * (min(k + pre_dk + 1, ns) - max(k - pre_dk, 0))
        thr0 = math.sqrt(e / cnt)
        for step in range(-3, 4):
            pre_thr = thr0
            for _ in range(abs(step)):
                pre_thr = math.nextafter(pre_thr, math.inf if step > 0 else 0.0)
            passes = not (e < pre_thr * pre_thr * cnt)
            differ += passes != (not (ea < pre_thr * pre_thr * cnt))
            out = np.zeros((1, 8))
            K.hyperbola_scan(a, pos, lo, hi, j, j + 1, vel, widths, 0.0, 1e-10, k, k + 1,
                             1.0, 0.05, 0.1, plo, phi, pre_dk, pre_thr, 1, 0.0, out, 1)
            assert (out[0, 2] == k) == passes, (j, k, step)
    assert differ > 0   # the other order alone would have decided some wrongly


# ---------------------------------------------------------------- recovery
@pytest.mark.parametrize("x0,z,v", [(1.2, 0.08, 0.1e9), (1.7, 0.15, 0.125e9),
                                    (0.9, 0.05, 0.08e9)])
def test_recovers_known_hyperbola(x0, z, v):
    tr, x = make_line([(x0, z, v, 0.5)], seed=int(x0 * 10))
    al = detect_gpr(tr, x, sample_interval=DT, **params())
    assert len(al["x"]) == 1
    assert abs(al["x"][0] - x0) < 0.015
    assert abs(al["depth"][0] - z) < 0.2 * z + 0.01
    assert abs(al["velocity"][0] - v) < 0.25 * v
    tau = 2 * z / v
    assert abs(al["two_way_time"][0] - tau) < 0.15e-9
    assert al["fit_quality"][0] > 0.5
    assert set(al) >= set(ALARM_COLUMNS)


def test_polarity_and_reference_sign():
    tr, x = make_line([(0.8, 0.08, 0.1e9, -0.5), (2.0, 0.08, 0.1e9, 0.5)], seed=5)
    al = detect_gpr(tr, x, sample_interval=DT, **params())
    assert len(al["x"]) == 2
    order = np.argsort(al["x"])
    assert list(al["polarity"][order]) == [-1, 1]
    al2 = detect_gpr(tr, x, sample_interval=DT, **params(reference_polarity=-1))
    assert list(al2["polarity"][np.argsort(al2["x"])]) == [1, -1]


def test_two_dimensional_track_and_times():
    """A line along y (x nearly constant): positions and times of the alarm."""
    tr, s = make_line([(1.0, 0.08, 0.1e9, 0.5)], seed=2)
    y = s
    x = 0.35 + 0.001 * np.sin(np.arange(len(s)) / 50)
    t = 1_700_000_000_000_000_000 + (np.arange(len(s)) * 2.5e6).astype(np.int64)
    al = detect_gpr(tr, x, y, t, sample_interval=DT, **params())
    assert len(al["x"]) == 1
    assert abs(al["y"][0] - 1.0) < 0.015
    assert abs(al["x"][0] - 0.35) < 0.002
    i = np.argmin(np.abs(y - al["y"][0]))
    assert abs(int(al["time"][0]) - int(t[i])) < 5 * 2.5e6


def test_empty_line_no_alarms():
    tr, x = make_line([], seed=7)
    assert len(detect_gpr(tr, x, sample_interval=DT, **params())["x"]) == 0
    # a flat layer is not a diffraction
    t = np.arange(512) * DT
    tr2 = tr + 0.5 * ricker(t - 4e-9)[None, :].astype(np.float32)
    assert len(detect_gpr(tr2, x, sample_interval=DT, **params())["x"]) == 0
    # no traces at all
    det = GPRDetector(DT, **params())
    assert len(det.process(np.zeros((0, 512)), np.zeros(0))["x"]) == 0
    assert len(det.finish()["x"]) == 0


def test_bad_input():
    det = GPRDetector(DT)
    with pytest.raises(ConfigError, match="2-D"):
        det.process(np.zeros(10), np.zeros(10))
    with pytest.raises(ConfigError, match="x has 3 values for 4 traces"):
        det.process(np.zeros((4, 64)), np.zeros(3))
    with pytest.raises(ConfigError, match="non-finite"):
        det.process(np.zeros((2, 64)), np.array([0.0, np.nan]))
    with pytest.raises(ConfigError, match="sample_interval"):
        GPRDetector(0.0)
    with pytest.raises(ConfigError, match="velocities"):
        GPRDetector(DT, velocities=[])
    with pytest.raises(ConfigError, match="clutter_guard"):
        GPRDetector(DT, clutter_guard=-0.1)
    # (the bound comes from noise_window: named, not "must be >= 1e12, got 2.0")
    with pytest.raises(ConfigError, match=r"'surface_window' must be at least 'noise_window' "
                       r"\(1e\+12\), got 2"):
        GPRDetector(DT, noise_window=1e12)
    det.process(np.zeros((4, 64)), np.arange(4.0))
    with pytest.raises(ConfigError, match="samples"):
        det.process(np.zeros((4, 32)), np.arange(4.0))


# ---------------------------------------------------------------- streaming
_LINE = make_line([(0.7, 0.06, 0.1e9, 0.4), (1.5, 0.12, 0.11e9, -0.3),
                   (2.3, 0.09, 0.09e9, 0.2)], length=2.8, seed=11)
_BATCH = detect_gpr(*_LINE, sample_interval=DT, **params(threshold=6.0, nthreads=2))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_chunking_invariance(cuts):
    tr, x = _LINE
    det = GPRDetector(DT, **params(threshold=6.0, nthreads=2))
    parts = []
    i = 0
    for c in cuts:
        parts.append(det.process(tr[i:i + c], x[i:i + c]))
        i += c
        if i >= len(x):
            break
    if i < len(x):
        parts.append(det.process(tr[i:], x[i:]))
    parts.append(det.finish())
    got = {k: np.concatenate([p[k] for p in parts]) for k in ALARM_COLUMNS}
    assert len(_BATCH["x"]) == 3
    for k in ALARM_COLUMNS:
        np.testing.assert_array_equal(got[k], _BATCH[k], err_msg=k)


def test_streaming_releases_alarms_before_the_end():
    tr, x = _LINE
    det = GPRDetector(DT, **params(threshold=6.0))
    early = det.process(tr, x)
    # the first target is more than the detector's latency from the end
    assert 2.8 - 0.7 > det.latency
    assert len(early["x"]) >= 1 and abs(early["x"][0] - 0.7) < 0.02


# ---------------------------------------------------------------- full-wave data
@pytest.mark.skipif(not GPRMAX.exists(), reason="gprMax sample data not available")
def test_gprmax_cylinder_apex_matches_geometry():
    """gprMax 4 B-scan (cylinder_Bscan_2D.in): PEC cylinder of radius 0.01 m centred
    at x = 0.12 m, 0.09 m below the surface (top at 0.08 m) of a half-space of
    relative permittivity 6 (v = 0.1224 m/ns); transmitter and receiver 0.04 m
    apart on the surface, stepped 2 mm.  Noiseless, so the noise scale is given."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(GPRMAX, "r") as f:
        ez = f["rxs/rx1/Ez"][:].T.astype(np.float64)
        dt = float(f.attrs["dt"])
        rx = f["trace_metadata/rxs/rx1/Position"][:, 0]
        tx = f["trace_metadata/srcs/src1/Position"][:, 0]
    mid = 0.5 * (rx + tx)
    bscan = ez - ez.mean(axis=0)            # background removal (mean trace)
    t0 = surface_time(ez, dt, offset=0.04)  # direct wave -> surface time
    al = detect_gpr(bscan, mid, sample_interval=dt, time_zero=t0, threshold=10.0,
                    min_time=0.2e-9, bin_size=0.001, max_aperture=0.1,
                    suppression_radius=0.05, noise=1e-3 * np.abs(bscan).max())
    assert len(al["x"]) == 1
    assert abs(al["x"][0] - 0.12) <= 0.004
    # apex of a bistatic pair 0.04 m apart over a top at 0.08 m: effective depth
    # sqrt(0.08**2 + 0.02**2) = 0.082 m
    assert abs(al["depth"][0] - 0.082) < 0.02
    assert abs(al["velocity"][0] - 0.1224e9) < 0.025e9
    assert al["fit_quality"][0] > 0.5


# ---------------------------------------------------------------- simulated lanes
def _sim_line(scene_name: str, line_x: float, seed: int = 0):
    import dataclasses

    from demine.gpr import FusedChain
    from demine.simulate import load_scene, simulate_lane

    sc = load_scene(scene_name)
    sw = dataclasses.replace(sc.sweep, pattern="line", line_x=line_x, speed=0.5, height=0.04,
                             height_variation=0.003, start_y=None, end_y=None)
    sc = dataclasses.replace(sc, sweep=sw)
    res = simulate_lane(sc, seed=seed, streams=("gpr",), sweeps=1)
    g = res.gpr
    dt = res.sample_interval
    chain = FusedChain(dewow_window=41, background_window=1601, low=0.5e9, high=3.0e9,
                       gain_power=1.0, gain_attenuation=1.0e8, sample_interval=dt)
    p = np.concatenate([chain.process(g["samples"]), chain.finish()])
    al = detect_gpr(p, g["x"], g["y"], g["time"], sample_interval=dt,
                    time_zero=sc.gpr.direct_wave_delay, antenna_height=sc.sweep.height)
    return sc, al


def test_simulated_line_finds_the_mines_it_crosses():
    """A cart line at x = 0.45 of the gpr-lines scene crosses the steel-cased AT
    mine M01 (y 0.7) and the plastic AT mine M04 (y 2.8), passes 0.1 m from the
    AP mine M02 (y 1.4) and over the root R02 (y 3.7).  Alarms within the halo
    of each mine (0.5 m for AT-sized, 0.25 m for AP), with the polarity of its
    permittivity contrast (steel: the sign of the ground bounce, -1 here;
    plastic: +1)."""
    sc, al = _sim_line("gpr-lines", 0.45)
    assert np.all(np.abs(al["x"] - 0.45) < 0.01)
    for y0, halo, pol in ((0.7, 0.5, -1), (2.8, 0.5, 1), (1.4, 0.25, 1)):
        near = np.abs(al["y"] - y0) <= halo
        assert near.any(), f"no alarm near y = {y0}"
        best = np.argmax(np.where(near, al["score"], -np.inf))
        assert al["polarity"][best] == pol
        assert 0.0 < al["depth"][best] < 0.3
    # every alarm is on an object of the scene (mines or clutter)
    ys = np.array([o.y for o in sc.objects if abs(o.x - 0.45) < 0.35])
    assert np.all(np.min(np.abs(al["y"][:, None] - ys[None, :]), axis=1) < 0.5)


def test_simulated_empty_line_has_no_alarms():
    _, al = _sim_line("empty-lane", 0.5)
    assert len(al["x"]) == 0


# ---------------------------------------------------------------- surface, suppression
def _wobbly_surface_line(target_amp: float, seed: int = 4):
    """A 3 m line whose ground bounce (at T_SURF, the sign of the surface) moves by
    a few picoseconds as the antenna height and the surface wobble (slow drift and
    5-cm roughness), background removed by the line's mean trace, with a shallow
    plastic target (opposite sign) 1 cm under the surface at x = 1.5."""
    tr, x = make_line([(1.5, 0.01, 0.12e9, target_amp)] if target_amp else [], length=3.0,
                      noise=0.004, seed=seed)
    rng = np.random.default_rng(seed)
    k = 2 * np.pi / rng.uniform(0.05, 1.5, 12)
    ph = rng.uniform(0, 2 * np.pi, 12)
    dh = 0.003 * np.sqrt(2 / 12) * np.sin(np.outer(x, k) + ph).sum(axis=1)   # metres
    t = np.arange(tr.shape[1]) * DT
    gb = -0.33 * ricker(t[None, :] - (T_SURF + 2 * dh / 3e8)[:, None])
    tr = tr + gb.astype(np.float32)
    return (tr - tr.mean(axis=0)).astype(np.float32), x


def test_ground_bounce_wobble_is_projected_out():
    """The residue of a wobbling ground bounce is 10-20x the noise after the mean
    trace is removed; without its first-order (principal component) and
    second-order shift terms a target 1 cm deep (inside the ground bounce) is
    found alone.  Without the projection the residue hides it."""
    p = params(threshold=8.0, nthreads=1)
    for seed in (4, 5):
        tr, x = _wobbly_surface_line(0.08, seed=seed)
        al = detect_gpr(tr, x, sample_interval=DT, **p)
        assert len(al["x"]) == 1
        assert abs(al["x"][0] - 1.5) < 0.03
        assert al["depth"][0] < 0.04
        off = detect_gpr(tr, x, sample_interval=DT, **p, surface_components=0)
        assert not np.any(np.abs(off["x"] - 1.5) < 0.03)
        # no target: no alarm
        tr0, x0 = _wobbly_surface_line(0.0, seed=seed)
        assert len(detect_gpr(tr0, x0, sample_interval=DT, **p)["x"]) == 0


def test_events_at_other_depths_are_not_suppressed_unless_on_the_curve():
    """Two objects 0.18 m apart with apexes 1.2 ns apart: the weaker is no limb of
    the stronger's hyperbola (which is 3 ns later there), so both give alarms;
    the old rule (every event within 2 ns) kept one."""
    tr, x = make_line([(1.0, 0.04, 0.1e9, 0.5), (1.18, 0.10, 0.1e9, 0.3)], seed=8)
    al = detect_gpr(tr, x, sample_interval=DT, **params())
    assert len(al["x"]) == 2
    assert np.allclose(np.sort(al["x"]), [1.0, 1.18], atol=0.02)
    old = detect_gpr(tr, x, sample_interval=DT, **params(suppression_curve=None))
    assert len(old["x"]) == 1


def test_short_line_warns_that_targets_are_their_own_clutter():
    """A line shorter than MIN_LINE_LENGTH cannot give a target's rows any
    background for the clutter scale: the detector says so instead of
    silently finding nothing."""
    from demine.hyperbola import MIN_LINE_LENGTH

    tr, x = make_line([], seed=3)
    short = x < x[0] + 0.5 * MIN_LINE_LENGTH
    with pytest.warns(UserWarning, match="shorter than"):
        detect_gpr(tr[short], x[short], sample_interval=DT, **params())
    with pytest.warns(UserWarning, match="shorter than"):   # (one trace had said nothing)
        detect_gpr(tr[:1], x[:1], sample_interval=DT, **params())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_gpr(tr, x, sample_interval=DT, **params())           # a full line: silent
        detect_gpr(tr[short], x[short], sample_interval=DT,
                   **{**params(), "clutter_window": None})          # no clutter scale: silent


@pytest.mark.parametrize("exponent", [-40, -12, 12, 24])
def test_alarms_do_not_depend_on_the_amplitude_unit(exponent):
    """Radars record in counts of 16- or 32-bit digitisers, volts or field units:
    the same line in another unit (a power of two, so every float operation
    scales exactly) gives the same alarms, amplitude apart.  The ground-bounce
    model fitted ``kappa * s**2 + mu`` with a rank-revealing least-squares
    solver, which dropped one of the two columns (their scales differ by the
    square of the unit) for lines in large or small units."""
    p = params(threshold=8.0, nthreads=1)
    tr, x = _wobbly_surface_line(0.08, seed=4)
    ref = detect_gpr(tr, x, sample_interval=DT, **p)
    assert len(ref["x"]) == 1
    f = 2.0 ** exponent
    got = detect_gpr(tr * np.float32(f), x, sample_interval=DT, **p)
    for k in ALARM_COLUMNS:
        want = ref[k] * f if k == "amplitude" else ref[k]
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def _disc_line(x0: float, seed: int, length: float = 1.6):
    """A 1.5 GHz line over a flat-topped object (a 7.5 cm disc 5 cm deep, wide
    beam) in soil with weak point scatterers, background removed by the line's
    mean trace, traces every 9 mm."""
    rng = np.random.default_rng(seed)
    x = np.arange(0.0, length, 0.009)
    t = np.arange(512) * DT
    v = 0.12e9

    def echo(xs, zs, w, amp, beam_deg):
        d = np.maximum(np.abs(x - xs) - w, 0.0)
        tt = T_SURF + 2.0 / v * np.sqrt(d * d + zs * zs)
        beam = np.exp(-((np.arctan2(d, zs) / math.radians(beam_deg)) ** 2))
        return amp * beam[:, None] * ricker(t[None, :] - tt[:, None])

    tr = 0.004 * rng.standard_normal((len(x), 512)) + echo(x0, 0.05, 0.0375, 0.3, 60)
    for _ in range(50):
        tr += echo(rng.uniform(-0.1, length + 0.1), rng.uniform(0.01, 0.3), 0.0,
                   0.03 * rng.choice([-1, 1]), 40)
    return (tr - tr.mean(axis=0)).astype(np.float32), x


def test_an_object_at_the_start_of_a_line_is_not_its_own_clutter():
    """At the start of a line the clutter window holds little more than the
    object's own echo, which then sets the clutter scale it is divided by.
    With guard cells around each window's centre (``clutter_guard``, as a CFAR
    detector has) an object 0.12-0.2 m into the line scores within 20 % of the
    same object mid-line (the soil's scatterers and noise are the same draw);
    without them, most lines lose more."""
    def scores(guard):
        ratios = []
        for seed in range(4):
            got = {}
            for x0 in (0.12, 0.2, 1.0):
                tr, x = _disc_line(x0, seed)
                al = detect_gpr(tr, x, sample_interval=DT,
                                **params(threshold=3.0, clutter_guard=guard, nthreads=1))
                near = np.abs(al["x"] - x0) < 0.05
                got[x0] = al["score"][near].max() if near.any() else 0.0
            ratios.append(min(got[0.12], got[0.2]) / got[1.0])
        return np.array(ratios)

    assert GPRDetector(DT).clutter_guard == 0.1
    assert np.all(scores(0.1) >= 0.8)
    assert np.sum(scores(0.0) < 0.8) >= 3


@pytest.mark.parametrize("length", [1.4, 0.25])
@pytest.mark.parametrize("guard", [0.0, 0.05, 0.1, 0.3])
def test_clutter_scales_leave_out_the_guard_cells(guard, length):
    """Every window's scales against a plain-NumPy reference of the selection:
    the noise block over the noise window, and the clutter rows every other bin
    over the clutter window without the bins within ``clutter_guard`` of the
    window's centre (the whole window when fewer than four bins are left); so
    whatever lies within the guard cells leaves the clutter level as it is."""
    from demine.hyperbola import _window_scales_numpy

    tr, x = make_line([(0.12, 0.06, 0.1e9, 0.4), (1.0, 0.1, 0.1e9, -0.3)], length=length,
                      seed=12)
    det = GPRDetector(DT, **params(clutter_guard=guard, nthreads=1))
    det.process(tr, x)
    g, a = det._gidx, det._bins
    wg = int(round(guard / det.bin_size))
    checked = fallback = 0
    for c in range(0, int(g[-1]) + 1, det._noise_step):
        lo, hi = g.searchsorted(c - det._wn), g.searchsorted(c + det._wn, side="right")
        lo2 = g.searchsorted(c - det._wc)
        rows = np.arange(lo2, hi, 2)
        kept = rows[np.abs(g[rows] - c) > wg]
        if len(kept) < 4 or wg == 0:
            kept = rows
        basis = det._surface_basis(a[g.searchsorted(c - det._ws):hi])
        ref = _window_scales_numpy(det._project(a[lo:hi].copy(), basis),
                                   det._project(a[kept].copy(), basis), det.noise_quantile,
                                   det._q_scale / math.sqrt(2.0), det._q_scale,
                                   det.robust_clutter, det.flat_level, det._pre_dk, det._zone,
                                   det.noise_floor)
        det._sig_cache.pop(c, None)
        np.testing.assert_array_equal(det._window(c)[0], ref)
        checked += 1
        fallback += len(kept) == len(rows) and wg > 0
    assert checked > (20 if length > 1 else 3)
    assert fallback == 0 or length < 1
