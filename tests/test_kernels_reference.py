"""Compiled kernels against plain NumPy/SciPy references: the gaps of the
per-module test files.

An audit of every kernel that ``ext/_*.pyx`` exports found each one checked
against a reference somewhere in ``tests/``, except for these parts, which
feed detection or features:

* ``_detect.hysteresis_run`` / ``flush_event``: the float columns of the
  events and peaks (path length, which the detector's ``min_extent`` filter
  reads, the threshold and background at the start, bounding box, times,
  sums) and a chunked call of the kernel itself;
* ``_hyperbola.bin_traces`` / ``flush_bin``: random tracks with stops and
  reversals, missing samples, and chunking of the kernel itself (one fixed
  input before);
* ``_hyperbola.hyperbola_scan``: random inputs (one fixed line before), and
  its exact symmetries (sign, power-of-two scale);
* the baseline build ``demine._gpr``: on a CPU with AVX2 + FMA the stages run
  ``demine._gpr_avx2`` and the baseline build's kernels were only run through
  ``chain`` once; here every GPR stage runs on both builds;
* ``_features.decay_frames`` / ``orientation_histogram``: edge cases and the
  invariances their docstrings promise;
* ``_emi``: the linear-algebra properties of the ground balance and of the
  notch, and ``matched_run`` with both a projection basis and the novelty;
* CRC-16 chaining through ``init`` (how a stream is checked in pieces).

References are written from the docstrings (and the physics), in float64;
tolerances are justified where they are set.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from demine import _detect, _emi, _features, _framing, gpr
from demine import _gpr as _gpr_base
from demine import _hyperbola as _hyp
from demine._core import crc16_ccitt
from demine.emi import MainsNotch, MatchedDetect, SoilCompensation, soil_basis
from demine.features import decay_frames
from demine.framing import crc16
from demine.process import run_stage


def fast(examples):
    """The project's profile (tests/conftest.py), with no deadline: the
    references are plain Python loops."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _avx2_build():
    """``demine._gpr_avx2`` where this CPU can run it (importing it elsewhere
    could fault), else None."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover
        return None
    if not (feats.get("AVX2") and feats.get("FMA3")):
        return None
    from demine import _gpr_avx2

    return _gpr_avx2


BUILDS = [pytest.param("baseline", id="baseline"),
          pytest.param("avx2", id="avx2", marks=pytest.mark.skipif(
              _avx2_build() is None, reason="CPU without AVX2+FMA"))]


def _build(name):
    return _gpr_base if name == "baseline" else _avx2_build()


@contextlib.contextmanager
def _using(name):
    """demine.gpr's stages run on the compiled build ``name`` inside (both
    builds are real: the one this CPU picks, and the other)."""
    kept = gpr._gpr
    gpr._gpr = _build(name)
    try:
        yield
    finally:
        gpr._gpr = kept


# ======================================================================================
# GPR stages on both compiled builds
# ======================================================================================

def _missing(x):
    """float64 copy with missing samples (NaN, inf) as 0, and where they were."""
    v = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(v)
    return np.where(bad, 0.0, v), bad


def _centred_mean(v, half):
    """Mean of each row over a centred window of 2*half+1 samples, truncated at
    the ends of the row."""
    ns = v.shape[1]
    c = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)
    j = np.arange(ns)
    lo, hi = np.maximum(j - half, 0), np.minimum(j + half, ns - 1)
    return (c[:, hi + 1] - c[:, lo]) / (hi - lo + 1)


def ref_dewow(x, half):
    v, bad = _missing(x)
    return np.where(bad, np.nan, v - _centred_mean(v, half))


def ref_background(x, window, mode):
    """Trace minus the mean trace of the window (centred: i-h..i+h, causal:
    i-window+1..i, truncated at the ends of the stream)."""
    v, bad = _missing(x)
    n = len(v)
    out = np.empty_like(v)
    for i in range(n):
        if mode == "centred":
            lo, hi = max(0, i - window // 2), min(n, i + window // 2 + 1)
        else:
            lo, hi = max(0, i - window + 1), i + 1
        out[i] = v[i] - v[lo:hi].mean(axis=0)
    return np.where(bad, np.nan, out)


def ref_bandpass(x, sos):
    v, bad = _missing(x)
    # sosfiltfilt's own default pad length, at most n_samples - 1 (BandPass docstring)
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    out = signal.sosfiltfilt(sos, v, axis=1, padlen=min(padlen, v.shape[1] - 1))
    return np.where(bad, np.nan, out)


def ref_agc(x, half, eps):
    v, bad = _missing(x)
    rms = np.sqrt(_centred_mean(v * v, half))
    return np.where(bad, np.nan, v / (rms + eps))


def ref_exp_background(x, alpha):
    """b_0 = x_0 (missing: 0), b_i = b_{i-1} + alpha (x_i - b_{i-1}) skipping
    missing samples, out = x_i - b_i."""
    v, bad = _missing(x)
    b = v[0].copy()
    out = np.empty_like(v)
    for i in range(len(v)):
        b = np.where(bad[i], b, b + alpha * (v[i] - b))
        out[i] = np.where(bad[i], np.nan, v[i] - b)
    return out


def ref_time_zero(x, threshold, target, mode, search, fill):
    v, bad = _missing(x)
    n, ns = v.shape
    m = search if 0 < search < ns else ns
    picks = np.zeros(n, dtype=np.int64)
    out = np.full((n, ns), float(fill))
    for i in range(n):
        a = np.abs(v[i, :m])
        if a.max() > 0:
            p = int(np.argmax(a >= threshold * a.max()))   # the first break
            while mode == "peak" and p + 1 < m and not bad[i, p + 1] and a[p + 1] > a[p]:
                p += 1   # on to the peak of that arrival
            picks[i] = p
        src = np.arange(ns) + picks[i] - target
        ok = (src >= 0) & (src < ns)
        out[i, ok] = np.where(bad[i, src[ok]], np.nan, v[i, src[ok]])
    return out, picks


def ref_stack(x, fold):
    """Mean of each group of ``fold`` traces (an incomplete last group too); NaN
    where a sample of the group is missing."""
    v, bad = _missing(x)
    return np.array([np.where(bad[i:i + fold].any(axis=0), np.nan, v[i:i + fold].mean(axis=0))
                     for i in range(0, len(v), fold)])


#: stages whose kernels pass an infinite sample through as it is; their
#: wrappers make it NaN, as the module's policy says (before, +-inf came out)
INF_PASSES: set[str] = set()


def ref_gain(ns, power, attenuation, dt, max_gain):
    """gain_curve's docstring with time_zero 0: (j + 1)**power * exp(att * j dt)."""
    j = np.arange(ns)
    return np.minimum((j + 1.0) ** power * np.exp(attenuation * j * dt), max_gain)


DT = 16e-9 / 512
SOS = gpr.design_bandpass(0.5e9, 3e9, DT, 2)

#: (stage, reference) for the wrappers of the chain kernel and the per-trace kernels
GPR_STAGES = {
    "dewow": (lambda: gpr.DeWow(window=7), lambda x: ref_dewow(x, 3)),
    "background": (lambda: gpr.BackgroundRemoval(window=5),
                   lambda x: ref_background(x, 5, "centred")),
    "background_causal": (lambda: gpr.BackgroundRemoval(window=4, mode="causal"),
                          lambda x: ref_background(x, 4, "causal")),
    "bandpass": (lambda: gpr.BandPass(low=0.5e9, high=3e9, sample_interval=DT),
                 lambda x: ref_bandpass(x, SOS)),
    "gain_sec": (lambda: gpr.SECGain(power=1.0, attenuation=1e9, sample_interval=DT,
                                     max_gain=30.0),
                 lambda x: _missing(x)[0] * ref_gain(x.shape[1], 1.0, 1e9, DT, 30.0)
                 + np.where(_missing(x)[1], np.nan, 0.0)),
    "fused": (lambda: gpr.FusedChain(dewow_window=5, background_window=7, low=0.5e9,
                                     high=3e9, sample_interval=DT, max_gain=30.0),
              lambda x: ref_bandpass(ref_background(ref_dewow(x, 2), 7, "centred"), SOS)
              * ref_gain(x.shape[1], 1.0, 0.0, DT, 30.0)),
    "agc": (lambda: gpr.AGC(window=9, eps=1e-3), lambda x: ref_agc(x, 4, 1e-3)),
    "time_zero": (lambda: gpr.TimeZero(threshold=0.4, target=2, search=20),
                  lambda x: ref_time_zero(x, 0.4, 2, "peak", 20, 0.0)[0]),
    "time_zero_threshold": (lambda: gpr.TimeZero(threshold=0.7, target=0, mode="threshold",
                                                 fill=-1.0),
                            lambda x: ref_time_zero(x, 0.7, 0, "threshold", 0, -1.0)[0]),
    "background_exp": (lambda: gpr.ExpBackgroundRemoval(alpha=0.3),
                       lambda x: ref_exp_background(x, 0.3)),
    "stack": (lambda: gpr.Stack(fold=3), lambda x: ref_stack(x, 3)),
}


def _compare32(got, ref, rel):
    """A float32 kernel against a float64 reference: the same NaN positions and
    the values within ``rel`` of the reference's largest magnitude."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    scale = max(1.0, float(np.nanmax(np.abs(ref)))) if np.isfinite(ref).any() else 1.0
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(ref), rtol=rel,
                               atol=rel * scale)


@st.composite
def bscans(draw, min_samples=2):
    n = draw(st.integers(1, 30))
    ns = draw(st.integers(min_samples, 40))
    dtype = np.dtype(draw(st.sampled_from(["int16", "int32", "float32", "float64"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(n, ns)) * 100 + 60 * np.sin(np.arange(ns) / 3.0)
    if dtype.kind == "i":
        x = np.round(x)
    elif draw(st.booleans()):   # missing samples
        for _ in range(draw(st.integers(1, 4))):
            x[rng.integers(n), rng.integers(ns)] = rng.choice([np.nan, np.inf, -np.inf])
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=5).filter(
        lambda s: max(s) > 0))
    return x.astype(dtype), sizes


@pytest.mark.parametrize("build", BUILDS)
@fast(80)
@given(name=st.sampled_from(sorted(GPR_STAGES)), data=bscans())
def test_gpr_stages_match_numpy_on_each_build(build, name, data):
    """Each GPR stage, run on the baseline and on the AVX2 build, equals its
    NumPy reference whole and in any chunking.  Tolerance: the kernels work in
    float32 (running sums in float64), so values are good to a few float32
    epsilons (6e-8) of the trace's scale; the zero-phase IIR band-pass in
    float32 loses a little more (2e-5 of the largest value)."""
    x, sizes = data
    if name in INF_PASSES:
        x = np.where(np.isinf(x), np.nan, x).astype(x.dtype)
    make, ref = GPR_STAGES[name]
    with _using(build):
        whole = run_stage(make(), x)
        parts = run_stage(make(), x, sizes)
    _compare32(whole, ref(x), rel=2e-5)
    # chunking changes only the order of the float64 running sums
    _compare32(parts, whole.astype(np.float64), rel=1e-6)


@pytest.mark.parametrize("build", BUILDS)
def test_gpr_stages_edge_cases_on_each_build(build):
    """One trace of one sample (two for the band-pass), all zeros, a constant."""
    with _using(build):
        for name, (make, ref) in GPR_STAGES.items():
            for x in (np.zeros((1, 2), np.float32), np.zeros((5, 9), np.float64),
                      np.full((4, 6), 7.0, np.float32), np.array([[3.0, np.nan]])):
                if name == "bandpass" or name == "fused":
                    x = np.pad(x, ((0, 0), (0, 4)), constant_values=1.0)
                _compare32(run_stage(make(), x), ref(x), rel=2e-5)
            if name not in ("bandpass", "fused"):
                one = np.array([[5.0]])
                _compare32(run_stage(make(), one), ref(one), rel=2e-5)


def test_time_zero_picks_are_the_references():
    """The picks themselves (TimeZero.last_picks), on both builds and in both modes."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 50)) * 0.2
    x[np.arange(60), rng.integers(5, 40, 60)] += rng.choice([-3.0, 3.0], 60)
    x[3] = 0.0   # a silent trace picks 0
    x[7, 10] = np.nan
    for build in ("baseline", "avx2"):
        if _build(build) is None:
            continue
        with _using(build):
            for mode in ("peak", "threshold"):
                tz = gpr.TimeZero(threshold=0.5, target=4, mode=mode)
                out = tz.process(x)
                want, picks = ref_time_zero(x, 0.5, 4, mode, 0, 0.0)
                np.testing.assert_array_equal(tz.last_picks, picks)
                _compare32(out, want, rel=1e-7)


def ref_kirchhoff(data, dt, dx, v, aperture, t0):
    """kirchhoff_migrate's docstring: the time derivative of the section summed
    along t(x) = sqrt(tau^2 + (2 (x - x0) dx / v)^2), times tau / t / (2 pi v),
    read by linear interpolation, for tau = (i - t0) dt > 0 and traces within
    ``aperture`` traces; curves leaving the section add nothing."""
    d = np.gradient(np.asarray(data, dtype=np.float64), dt, axis=1)
    nx, ns = d.shape
    out = np.zeros((nx, ns))
    tau = (np.arange(t0 + 1, ns) - t0) * dt
    samples = np.arange(ns)
    for x0 in range(nx):
        for xx in range(max(0, x0 - aperture), min(nx, x0 + aperture + 1)):
            t = np.sqrt(tau ** 2 + (2 * (xx - x0) * dx / v) ** 2)
            pos = t / dt + t0
            inside = pos <= ns - 1
            val = np.interp(pos[inside], samples, d[xx])
            out[x0, t0 + 1:][inside] += tau[inside] / t[inside] * val / (2 * np.pi * v)
    return out


@pytest.mark.parametrize("build", BUILDS)
@fast(25)
@given(nx=st.integers(1, 9), ns=st.integers(2, 30), t0=st.integers(0, 5),
       aperture=st.sampled_from([None, 0.0, 0.011, 0.03]), seed=st.integers(0, 2**32 - 1))
def test_kirchhoff_matches_numpy_on_each_build(build, nx, ns, t0, aperture, seed):
    """Tolerance: the kernel sums float32 products of a float32 derivative,
    1e-5 of the largest output is several float32 epsilons per term."""
    t0 = min(t0, ns - 1)
    dt, dx, v = 2.0 ** -33, 0.0071, 1.1e8   # dt a power of two: sample times are exact
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(nx, ns)).astype(np.float32)
    with _using(build):
        got = gpr.kirchhoff_migrate(data, dt, dx, v, aperture=aperture, time_zero=t0)
    ap = nx if aperture is None else int(math.floor(aperture / dx))
    ref = ref_kirchhoff(data, dt, dx, v, ap, t0)
    assert np.all(got[:, :t0 + 1] == 0)   # time zero and before: nothing
    _compare32(got, ref, rel=1e-5)


@pytest.mark.parametrize("build", BUILDS)
def test_gain_interpolation_and_dewow_rows_kernels(build):
    """``apply_gain`` (no wrapper uses it), ``interp_rows`` (gpr.Resample) and
    ``dewow_rows`` (the chain's history) against their one-line definitions."""
    k = _build(build)
    rng = np.random.default_rng(9)
    for n, ns in ((1, 1), (3, 7), (600, 33)):   # 600: above the threading threshold
        x = (rng.normal(size=(n, ns)) * 50).astype(np.float32)
        g = rng.uniform(0.5, 3.0, ns).astype(np.float32)
        out = np.empty_like(x)
        k.apply_gain(x, g, out, 0)
        np.testing.assert_array_equal(out, x * g)   # one float32 product each
        m = 2 * n
        i0 = rng.integers(0, max(n - 1, 1), m).astype(np.int64)
        frac = np.where(rng.random(m) < 0.2, 0.0, rng.random(m)) if n > 1 else np.zeros(m)
        out = np.empty((m, ns), np.float32)
        k.interp_rows(x, i0, frac, out, 0)
        nxt = np.minimum(i0 + 1, n - 1)
        want = ((1 - frac)[:, None] * x[i0].astype(np.float64)
                + frac[:, None] * x[nxt].astype(np.float64))
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6 * np.abs(x).max())
        x[0, 0] = np.nan
        out = np.empty_like(x)
        k.dewow_rows(x, out, 2, 0)
        _compare32(out, ref_dewow(x, 2), rel=1e-6)


# ======================================================================================
# _detect.hysteresis_run: every column of the events and peaks, and chunking
# ======================================================================================

DETECT_PARAMS = dict(alpha=1 / 200, k_hi=6.0, k_lo=3.0, floor_hi=4.0, floor_lo=2.5, clip=3.0)


def ref_hysteresis(s, x, y, t, tn, *, alpha, k_hi, k_lo, floor_hi, floor_lo, clip, warmup,
                   hold, split, max_frames):
    """The hysteresis detector as its docstring tells it, frame by frame; the
    columns of each event computed afterwards, with NumPy, from the frames it
    counted (start and the frames at or above ``lo``, in order).  Returns the
    high threshold per frame, event rows (float, int) and peak rows."""
    n = len(s)
    thr = np.full(n, np.nan)
    warm = []           # statistics of the warm-up frames
    level = var = 0.0   # background level and spread (a variance)
    nbg = 0
    events, peaks = [], []
    ev = None

    def emit(aborted):
        fr = np.array(ev["frames"])
        imax = fr[np.argmax(s[fr])]   # the first of equal maxima
        pos = fr[np.isfinite(x[fr]) & np.isfinite(y[fr])]
        box = ([x[pos].min(), x[pos].max(), y[pos].min(), y[pos].max()] if len(pos)
               else [np.nan] * 4)
        events.append((
            [s[imax], x[imax], y[imax], t[imax],
             np.hypot(np.diff(x[pos]), np.diff(y[pos])).sum(), s[fr].sum(),
             ev["hi"], ev["level"], *box, t[fr[0]], t[fr[-1]], ev["sd"]],
            [fr[0], fr[-1], imax, len(fr), tn[imax], int(aborted)]))

    def emit_peak(i):
        peaks.append(([s[i], x[i], y[i], t[i]], [ev["frames"][0], i, tn[i]]))

    for i in range(n):
        si = s[i]
        if not np.isfinite(si):
            continue
        if nbg < warmup:   # only the floors during the warm-up
            sd = math.sqrt(var) if nbg else 0.0
            hi, lo = floor_hi, floor_lo
        else:
            sd = math.sqrt(var)
            hi = max(floor_hi, level + k_hi * sd)
            lo = max(floor_lo, level + k_lo * sd)
        lo = min(lo, hi)
        thr[i] = hi
        if ev is not None:
            ev["age"] += 1   # frames with a statistic since the event's first
        if ev is not None and max_frames > 0 and ev["age"] >= max_frames:
            emit(aborted=True)   # a change of background: restart from the event's mean
            level = float(np.mean(s[ev["frames"]]))
            ev = None
            continue
        if ev is not None:
            if si >= lo:
                ev["frames"].append(i)
                ev["gap"] = 0
                if not ev["falling"]:
                    if si > s[ev["cand"]]:
                        ev["cand"] = i
                    elif si < s[ev["cand"]] / split:   # fell below max / split: a peak
                        emit_peak(ev["cand"])
                        ev["falling"], ev["valley"] = True, si
                else:
                    if si < ev["valley"]:
                        ev["valley"] = si
                    elif si > ev["valley"] * split:   # rose again: the next peak starts
                        ev["falling"], ev["cand"] = False, i
                continue
            ev["gap"] += 1
            if ev["gap"] <= hold:
                continue
            emit(aborted=False)
            if not ev["falling"]:
                emit_peak(ev["cand"])
            ev = None   # (this frame is quiet: it updates the background below)
        if si >= hi:
            ev = dict(frames=[i], gap=0, falling=False, cand=i, hi=hi, level=level, sd=sd,
                      age=0)
            continue
        if nbg < warmup:
            warm.append(si)
            level, var = float(np.mean(warm)), float(np.var(warm))
        else:
            d = si - level
            if d < 0:   # the spread from deviations below the level only
                var += alpha * (d * d - var)
            if clip > 0 and sd > 0:
                d = min(max(d, -clip * sd), clip * sd)
            level += alpha * d
        nbg += 1
    if ev is not None:   # flush_event at the end of the stream
        emit(aborted=False)
        if not ev["falling"]:
            emit_peak(ev["cand"])
    return thr, events, peaks


def _hysteresis_kernel(s, x, y, t, tn, cuts, *, warmup, hold, split, max_frames, flush=True):
    """The kernel over the chunks ``cuts`` (state carried), as EMIDetector calls it."""
    f = np.zeros(_detect.NFS)
    st_ = np.zeros(_detect.NIS, dtype=np.int64)
    thr, ef, ei, pf, pi = [], [], [], [], []
    bounds = sorted({0, len(s), *[c for c in cuts if 0 < c < len(s)]})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        m = b - a
        seg_f, seg_i = np.empty((m + 1, _detect.NSF)), np.empty((m + 1, _detect.NSI), np.int64)
        pk_f, pk_i = np.empty((2 * m + 2, _detect.NPF)), np.empty((2 * m + 2, _detect.NPI),
                                                                    np.int64)
        th = np.empty(m)
        k, kp = _detect.hysteresis_run(
            s[a:b], x[a:b], y[a:b], t[a:b], tn[a:b], th, f, st_, seg_f, seg_i, pk_f, pk_i,
            DETECT_PARAMS["alpha"], DETECT_PARAMS["k_hi"], DETECT_PARAMS["k_lo"],
            DETECT_PARAMS["floor_hi"], DETECT_PARAMS["floor_lo"], DETECT_PARAMS["clip"],
            warmup, hold, split, max_frames)
        thr.append(th)
        ef.append(seg_f[:k])
        ei.append(seg_i[:k])
        pf.append(pk_f[:kp])
        pi.append(pk_i[:kp])
    if flush:
        seg_f, seg_i = np.empty((1, _detect.NSF)), np.empty((1, _detect.NSI), np.int64)
        pk_f, pk_i = np.empty((1, _detect.NPF)), np.empty((1, _detect.NPI), np.int64)
        k, kp = _detect.flush_event(f, st_, seg_f, seg_i, pk_f, pk_i)
        ef.append(seg_f[:k])
        ei.append(seg_i[:k])
        pf.append(pk_f[:kp])
        pi.append(pk_i[:kp])
    cat = np.concatenate
    return (cat(thr) if thr else np.empty(0), cat(ef), cat(ei), cat(pf), cat(pi))


def _statistic_lane(seed, n, positions):
    """A statistic of noise with bursts, a level step and missing values, and a
    sweep position per frame (some missing)."""
    rng = np.random.default_rng(seed)
    s = np.abs(1 + 0.3 * rng.standard_normal(n))
    for c in rng.integers(0, max(n, 1), 8):
        # an object's passage: one to three humps (peaks split inside one event)
        ln = int(rng.integers(1, 90))
        hump = np.sin(np.linspace(0.0, np.pi * rng.integers(1, 4), ln)) ** 2
        s[c:c + ln] += (rng.uniform(2, 40) * hump)[:len(s[c:c + ln])]
    if n > 400:
        s[n // 2:] += 3.0   # a level step: long events, aborted
    s[rng.integers(0, max(n, 1), 4)[:n and 4]] = np.nan
    x = np.cumsum(rng.uniform(-2e-3, 3e-3, n))
    y = 0.1 * np.sin(np.arange(n) / 50.0)
    if positions == "none":
        x = np.full(n, np.nan)
        y = np.full(n, np.nan)
    elif positions == "gaps":
        x[rng.integers(0, max(n, 1), 20)[:n and 20]] = np.nan
    t = 1000.0 + np.arange(n) / 1000.0
    tn = 10**15 + np.arange(n, dtype=np.int64) * 1_000_000
    return s, x, y, t, tn


def _assert_events_equal_reference(got, ref):
    thr, ef, ei, pf, pi = got
    rthr, events, peaks = ref
    # thresholds: float64 running statistics, summed in another order (np.var
    # vs Welford's running update): 1e-9 relative is far above that rounding
    np.testing.assert_allclose(thr, rthr, rtol=1e-9, equal_nan=True)
    assert ei.tolist() == [e[1] for e in events]
    want_f = np.array([e[0] for e in events]).reshape(-1, _detect.NSF)
    np.testing.assert_allclose(ef, want_f, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert pi.tolist() == [p[1] for p in peaks]
    want_pf = np.array([p[0] for p in peaks]).reshape(-1, _detect.NPF)
    np.testing.assert_array_equal(pf, want_pf)   # values read at the peak frame


@fast(40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 1500), hold=st.integers(0, 5),
       split=st.sampled_from([1.3, 2.0, 1e9]), max_frames=st.sampled_from([0, 60, 300]),
       warmup=st.integers(0, 80), positions=st.sampled_from(["all", "gaps", "none"]))
def test_hysteresis_events_and_peaks_match_reference(seed, n, hold, split, max_frames,
                                                     warmup, positions):
    """Every column of the event and peak rows, not only their frame indices."""
    s, x, y, t, tn = _statistic_lane(seed, n, positions)
    kw = dict(warmup=warmup, hold=hold, split=split, max_frames=max_frames)
    got = _hysteresis_kernel(s, x, y, t, tn, [], **kw)
    _assert_events_equal_reference(got, ref_hysteresis(s, x, y, t, tn, **DETECT_PARAMS, **kw))


@fast(40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 1200),
       cuts=st.lists(st.integers(0, 1200), max_size=10), hold=st.integers(0, 5),
       max_frames=st.sampled_from([0, 60]), warmup=st.integers(0, 50))
def test_hysteresis_kernel_chunked_is_bit_identical(seed, n, cuts, hold, max_frames, warmup):
    """The kernel's own promise: a stream cut into any chunks (state carried in
    ``f``/``st``) gives bit-identical thresholds, events and peaks."""
    s, x, y, t, tn = _statistic_lane(seed, n, "gaps")
    kw = dict(warmup=warmup, hold=hold, split=2.0, max_frames=max_frames)
    whole = _hysteresis_kernel(s, x, y, t, tn, [], **kw)
    parts = _hysteresis_kernel(s, x, y, t, tn, cuts, **kw)
    ones = _hysteresis_kernel(s, x, y, t, tn, range(n), **kw)
    for a, b, c in zip(whole, parts, ones, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_hysteresis_edge_cases():
    kw = dict(warmup=0, hold=0, split=2.0, max_frames=0)
    one = np.array([5.0])
    lane = (one, np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, np.int64))
    got = _hysteresis_kernel(*lane, [], **kw)
    _assert_events_equal_reference(got, ref_hysteresis(*lane, **DETECT_PARAMS, **kw))
    assert got[2].tolist() == [[0, 0, 0, 1, 0, 0]]   # one frame, one event, flushed
    # all zeros: never an event, thresholds at the floor; all NaN: nothing at all
    z = np.zeros(50)
    lane = (z, z, z, z, np.arange(50, dtype=np.int64))
    thr, ef, ei, pf, pi = _hysteresis_kernel(*lane, [], **kw)
    assert len(ei) == len(pi) == 0
    np.testing.assert_array_equal(thr, DETECT_PARAMS["floor_hi"])
    nan = np.full(50, np.nan)
    thr, ef, ei, pf, pi = _hysteresis_kernel(nan, z, z, z, lane[4], [], **kw)
    assert len(ei) == 0 and np.isnan(thr).all()


# ======================================================================================
# _hyperbola.bin_traces / flush_bin: path-length bins
# ======================================================================================

def ref_bins(tr, x, y, t, ds):
    """bin_traces' docstring: path length s along the track (0 at the first
    trace), bin floor(s / ds); each run of traces in one bin gives its mean
    trace (missing samples as 0, still counted) and mean (s, x, y, t)."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    g = np.floor(s / ds)
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    last = np.r_[first[1:], len(g)]
    v = np.where(np.isfinite(tr), tr.astype(np.float64), 0.0)
    cols = np.column_stack([s, x, y, t])
    out = np.array([v[a:b].mean(axis=0) for a, b in zip(first, last, strict=True)])
    meta = np.array([cols[a:b].mean(axis=0) for a, b in zip(first, last, strict=True)])
    return out.reshape(-1, tr.shape[1]), meta.reshape(-1, 4), g[first].astype(np.int64)


def _bin_kernel(tr, x, y, t, ds, cuts):
    n, ns = tr.shape
    st_ = np.zeros(_hyp.NST)
    acc = np.zeros(ns)
    outs, metas, gis = [], [], []
    bounds = sorted({0, n, *[c for c in cuts if 0 < c < n]})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out = np.empty((b - a, ns), np.float32)
        meta = np.empty((b - a, 4))
        gi = np.empty(b - a, np.int64)
        m = _hyp.bin_traces(tr[a:b], x[a:b], y[a:b], t[a:b], ds, st_, acc, out, meta, gi)
        outs.append(out[:m])
        metas.append(meta[:m])
        gis.append(gi[:m])
    out, meta, gi = np.empty((1, ns), np.float32), np.empty((1, 4)), np.empty(1, np.int64)
    m = _hyp.flush_bin(st_, acc, out, meta, gi)
    assert _hyp.flush_bin(st_, acc, out, meta, gi) == 0   # nothing left after a flush
    return (np.concatenate(outs + [out[:m]]), np.concatenate(metas + [meta[:m]]),
            np.concatenate(gis + [gi[:m]]))


@st.composite
def tracks(draw):
    n = draw(st.integers(1, 150))
    ns = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    step = rng.uniform(-0.004, 0.008, n)                  # forward, some reversals
    step[rng.random(n) < draw(st.sampled_from([0.0, 0.3]))] = 0.0   # stops
    x = 1.5 + np.cumsum(step)
    y = -0.2 + np.cumsum(rng.uniform(-0.002, 0.002, n)) * draw(st.sampled_from([0.0, 1.0]))
    t = np.arange(n) * 2.5e6 + rng.uniform(0, 1e5, n)
    tr = (rng.normal(size=(n, ns)) * 100).astype(np.float32)
    if draw(st.booleans()):
        bad = rng.random((n, ns)) < 0.05
        tr[bad] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), bad.sum())
    ds = draw(st.sampled_from([0.002, 0.01, 0.05]))
    cuts = draw(st.lists(st.integers(0, n), max_size=8))
    return tr, x, y, t, ds, cuts


@fast(80)
@given(data=tracks())
def test_bin_traces_match_reference_and_chunking(data):
    """Tolerance: the kernel sums the traces of a bin in float64 and rounds the
    mean to float32 (2 float32 epsilons); the bins' (s, x, y, t) are float64
    means, 1e-12 relative."""
    tr, x, y, t, ds, cuts = data
    out, meta, gi = _bin_kernel(tr, x, y, t, ds, [])
    rout, rmeta, rgi = ref_bins(tr, x, y, t, ds)
    np.testing.assert_array_equal(gi, rgi)
    np.testing.assert_allclose(out, rout, rtol=2.5e-7, atol=2.5e-7 * np.abs(rout).max())
    np.testing.assert_allclose(meta, rmeta, rtol=1e-12, atol=1e-12 * np.abs(rmeta).max())
    assert np.isfinite(out).all()
    # "a line cut into any chunks gives bit-identical bins"
    for part, full in zip(_bin_kernel(tr, x, y, t, ds, cuts), (out, meta, gi), strict=True):
        np.testing.assert_array_equal(part, full)


def test_bin_traces_edge_cases():
    # one trace: no bin completes until the flush, which gives the trace itself
    tr = np.array([[1.0, -2.0, np.nan]], np.float32)
    out, meta, gi = _bin_kernel(tr, np.array([0.3]), np.array([0.4]), np.array([7.0]), 0.01,
                                [])
    np.testing.assert_array_equal(out, [[1.0, -2.0, 0.0]])
    np.testing.assert_array_equal(meta, [[0.0, 0.3, 0.4, 7.0]])
    np.testing.assert_array_equal(gi, [0])
    # a head held still: one bin, whatever the number of traces
    tr = np.arange(40, dtype=np.float32).reshape(10, 4)
    out, meta, gi = _bin_kernel(tr, np.full(10, 2.0), np.zeros(10), np.arange(10.0), 0.01, [3])
    np.testing.assert_allclose(out, tr.mean(axis=0, keepdims=True))
    assert gi.tolist() == [0]
    # all-zero traces average to zeros
    out, _, _ = _bin_kernel(np.zeros((20, 3), np.float32), np.linspace(0, 0.1, 20),
                            np.zeros(20), np.arange(20.0), 0.01, [])
    assert not out.any()


# ======================================================================================
# _hyperbola.hyperbola_scan: the matched filter along diffraction curves
# ======================================================================================

def ref_scan_bin(a, pos, j, lo, hi, plo, phi, vel, widths, t_surf, dt, k_lo, k_hi, tan_ap,
                 ap_min, ap_max, pre_dk, pre_thr, min_n, flat_penalty):
    """hyperbola_scan's docstring for apex bin j: the best template's row
    (score, S, apex sample, velocity index, width index, semblance, traces,
    tau), or the row of none."""
    ns = a.shape[1]
    best = [0.0, 0.0, -1, -1, -1, 0.0, 0, 0.0]
    d = np.abs(pos[lo[j]:hi[j]] - pos[j])          # distances of the candidate bins
    rows = np.arange(lo[j], hi[j])
    for k in range(k_lo, k_hi):
        # prescreen: mean square over the window's bins and samples k +- pre_dk
        win = a[plo[j]:phi[j], max(k - pre_dk, 0):min(k + pre_dk + 1, ns)]
        if win.size == 0:
            continue
        sq = (win * win).astype(np.float64)   # (float32 squares)
        if sq.sum() < pre_thr ** 2 * win.size:
            continue
        tau = k * dt - t_surf
        if tau <= 0:   # an apex at or above the surface
            continue
        for iv, v in enumerate(vel):
            for iw, w in enumerate(widths):
                limb = min(max(0.5 * v * tau * tan_ap, ap_min, w), ap_max)
                use = d <= w + limb
                tk = (t_surf + np.sqrt(tau ** 2 + (2 * np.maximum(d - w, 0.0) / v) ** 2)) / dt
                use &= tk < ns - 1 - 1e-9                  # the curve stays in the trace
                if use.sum() < min_n:
                    continue
                r, tku = rows[use], tk[use]
                k0 = tku.astype(np.int64)
                f = tku - k0
                vals = (1 - f) * a[r, k0] + f * a[r, k0 + 1]
                sm, n = vals.sum(), len(vals)
                flat = a[r[d[use] > w], k].astype(np.float64).sum() * np.sign(sm or 1.0)
                score = (abs(sm) - flat_penalty * max(flat, 0.0)) / math.sqrt(n)
                if score > best[0]:
                    best = [score, sm / math.sqrt(n), k, iv, iw,
                            sm * sm / (n * (vals ** 2).sum()) if (vals ** 2).sum() > 0 else 0.0,
                            n, tau]
    return np.array(best, dtype=np.float64)


@st.composite
def scan_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nb = draw(st.integers(1, 10))
    ns = draw(st.integers(8, 40))
    pos = np.cumsum(rng.uniform(0.004, 0.012, nb))
    a = rng.standard_normal((nb, ns))
    if draw(st.booleans()):   # a diffraction hyperbola and a flat layer
        x0, k0 = pos[rng.integers(nb)], rng.uniform(4, ns - 4)
        kk = np.sqrt(k0 ** 2 + ((pos - x0) / 0.003) ** 2)
        a += 4 * np.exp(-0.5 * (np.arange(ns)[None, :] - kk[:, None]) ** 2)
        a[:, int(rng.integers(ns))] += 3.0
    vel = np.array(draw(st.sampled_from([[1e8], [0.8e8, 1.2e8]])))
    widths = np.array(draw(st.sampled_from([[0.0], [0.0, 0.015]])))
    k_lo = draw(st.integers(0, ns - 1))
    k_hi = min(ns, k_lo + draw(st.integers(0, 14)))
    p = dict(vel=vel, widths=widths, t_surf=draw(st.sampled_from([0.0, 2.5e-10])), dt=1e-10,
             k_lo=k_lo, k_hi=k_hi, tan_ap=1.0, ap_min=0.01, ap_max=0.04,
             pre_dk=draw(st.integers(0, 2)), pre_thr=draw(st.sampled_from([0.0, 0.9, 1.3])),
             min_n=draw(st.sampled_from([1, 3])),
             flat_penalty=draw(st.sampled_from([0.0, 1.0])))
    reach = p["ap_max"] + widths.max()
    ranges = dict(lo=np.searchsorted(pos, pos - reach - 1e-9).astype(np.int64),
                  hi=np.searchsorted(pos, pos + reach + 1e-9, "right").astype(np.int64),
                  plo=np.searchsorted(pos, pos - 0.013).astype(np.int64),
                  phi=np.searchsorted(pos, pos + 0.013, "right").astype(np.int64))
    return a.astype(np.float32), pos, ranges, p, draw(st.sampled_from([1, 2]))


def _scan(a, pos, r, p, nthreads):
    out = np.full((len(pos), 8), np.nan)
    _hyp.hyperbola_scan(a, pos, r["lo"], r["hi"], 0, len(pos), p["vel"], p["widths"],
                        p["t_surf"], p["dt"], p["k_lo"], p["k_hi"], p["tan_ap"], p["ap_min"],
                        p["ap_max"], r["plo"], r["phi"], p["pre_dk"], p["pre_thr"], p["min_n"],
                        p["flat_penalty"], out, nthreads)
    return out


@fast(50)
@given(case=scan_cases())
def test_hyperbola_scan_matches_reference(case):
    """Tolerance: curve samples are interpolated and summed in float64 in
    another order than NumPy's, 1e-9 relative; the template chosen (indices,
    traces used) must be the same."""
    a, pos, r, p, nthreads = case
    out = _scan(a, pos, r, p, nthreads)
    for j in range(len(pos)):
        want = ref_scan_bin(a, pos, j, r["lo"], r["hi"], r["plo"], r["phi"], **p)
        np.testing.assert_array_equal(out[j, [2, 3, 4, 6]], want[[2, 3, 4, 6]],
                                      err_msg=f"bin {j}")
        np.testing.assert_allclose(out[j], want, rtol=1e-9, atol=1e-12, err_msg=f"bin {j}")


@fast(30)
@given(case=scan_cases(), p2=st.integers(-6, 6))
def test_hyperbola_scan_sign_and_scale_symmetry(case, p2):
    """Exact symmetries of a matched filter on amplitudes: a B-scan of the
    opposite sign gives the same templates and scores with S negated; one
    scaled by 2**p2 (the prescreen threshold with it) scales the score and S
    by 2**p2 and leaves the rest (every step of it scales exactly)."""
    a, pos, r, p, nthreads = case
    out = _scan(a, pos, r, p, nthreads)
    neg = _scan(-a, pos, r, p, nthreads)
    np.testing.assert_array_equal(neg[:, [0, 2, 3, 4, 5, 6, 7]], out[:, [0, 2, 3, 4, 5, 6, 7]])
    np.testing.assert_array_equal(neg[:, 1], -out[:, 1])
    c = 2.0 ** p2
    big = _scan(a * np.float32(c), pos, r, {**p, "pre_thr": p["pre_thr"] * c}, nthreads)
    np.testing.assert_array_equal(big[:, :2], out[:, :2] * c)
    np.testing.assert_array_equal(big[:, 2:], out[:, 2:])


# ======================================================================================
# _features: decay descriptors and the edge-orientation histogram
# ======================================================================================

GATES = np.geomspace(1e-5, 1e-3, 16)


@fast(40)
@given(beta=st.floats(0.3, 3.0), gamma=st.floats(-0.3, 0.3), amp=st.floats(1e-3, 1e3),
       g=st.integers(4, 24))
def test_decay_slope_and_curvature_of_a_quadratic_log_log_decay(beta, gamma, amp, g):
    """Physics reference: for ln r = ln A - beta L + gamma (L - Lm)^2 with
    L = ln t, the log-log slope at the valid gates' mean log time Lm is
    -beta and the curvature (per ln^2 t) is gamma (np.polyfit's answer as
    well).  Tolerance: a least-squares fit of 4..24 points, 1e-8."""
    t = np.geomspace(1e-5, 1e-3, g)
    L = np.log(t)
    r = amp * np.exp(-beta * (L - L[0]) + gamma * (L - L.mean()) ** 2)
    out = decay_frames(r[None, :], t, np.full(g, 1e-12 * amp))
    assert out.shape == (1, 6)
    c2, c1, _ = np.polyfit(L - L.mean(), np.log(r), 2)
    np.testing.assert_allclose(out[0, 1:3], [c1, c2], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(out[0, 1:3], [-beta, gamma], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(out[0, 3:6], [1.0, 1.0, L[-1]])   # all gates valid


def test_decay_few_valid_gates_fit_a_line_and_edge_cases():
    t = GATES[:3]
    r = np.array([[8.0, 3.0, 1.0]])
    out = decay_frames(r, t, np.full(3, 0.1))
    # fewer than 4 valid gates: the least-squares line's slope, no curvature
    np.testing.assert_allclose(out[0, 1], np.polyfit(np.log(t), np.log(r[0]), 1)[0])
    assert out[0, 2] == 0.0
    # one gate: no slope (NaN), curvature 0; the rest still defined
    out = decay_frames(np.array([[3.0], [-3.0], [0.0]]), [2e-5], [1.0])
    np.testing.assert_array_equal(out[:, 0], [3.0, 3.0, 0.0])
    assert np.isnan(out[:, 1]).all() and not out[:, 2].any()
    np.testing.assert_array_equal(out[:, 3], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[:, 4], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(out[:, 5], [np.log(2e-5), np.nan, np.nan])
    # all-zero readings: amplitude 0, no valid gate, polarity 0
    out = decay_frames(np.zeros((2, 16)), GATES, np.ones(16))
    np.testing.assert_array_equal(out, [[0.0, np.nan, 0.0, 0.0, 0.0, np.nan]] * 2)
    # no readings
    assert decay_frames(np.zeros((0, 16)), GATES, np.ones(16)).shape == (0, 6)
    # float32 readings are the same numbers in float64
    rng = np.random.default_rng(0)
    r32 = (rng.uniform(-1, 5, (7, 16)) * (GATES / GATES[0]) ** -1).astype(np.float32)
    np.testing.assert_array_equal(decay_frames(r32, GATES, np.full(16, 0.05)),
                                  decay_frames(r32.astype(np.float64), GATES, np.full(16, 0.05)))


@fast(40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), g=st.integers(1, 16),
       p2=st.integers(-30, 30), snr=st.sampled_from([0.0, 1.0, 2.5]))
def test_decay_descriptors_do_not_depend_on_the_amplitude_unit(seed, n, g, p2, snr):
    """The docstring's promise: readings and noise in another unit (x 2**p2,
    exact in binary) give the same descriptors; the fits see ln r shifted by a
    constant, so they agree to rounding (1e-9)."""
    rng = np.random.default_rng(seed)
    t = np.geomspace(1e-5, 1e-3, g)
    r = rng.uniform(-0.5, 1.0, (n, g)) * (t / t[0]) ** -rng.uniform(0.5, 2.5, (n, 1))
    noise = rng.uniform(0.01, 0.1, g)
    a = decay_frames(r, t, noise, snr)
    b = decay_frames(r * 2.0 ** p2, t, noise * 2.0 ** p2, snr)
    cols = [0, 3, 4, 5]   # scale-free exactly
    np.testing.assert_array_equal(a[:, cols], b[:, cols])
    np.testing.assert_allclose(b[:, 1:3], a[:, 1:3], rtol=1e-9, atol=1e-9)


def _eoh(patch, bins):
    out = np.zeros(bins)
    _features.orientation_histogram(np.ascontiguousarray(patch, dtype=np.float64), bins, out)
    return out


@fast(40)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 14), w=st.integers(1, 14),
       bins=st.sampled_from([1, 2, 4, 6, 8, 9]), p2=st.integers(-10, 10))
def test_orientation_histogram_properties(seed, h, w, bins, p2):
    """Edge histogram: the votes add up to the summed gradient magnitude of the
    interior pixels (whatever the binning); an edge and its negative fall in
    the same bin (orientation folded to [0, pi)); a patch in another unit
    (x 2**p2) scales the votes; the transposed patch swaps the gradient's
    components, which maps an orientation theta to pi/2 - theta."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(h, w))
    out = _eoh(p, bins)
    gy = 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])
    gx = 0.5 * (p[1:-1, 2:] - p[1:-1, :-2])
    np.testing.assert_allclose(out.sum(), np.hypot(gx, gy).sum(), rtol=1e-12)
    if h < 3 or w < 3:
        assert not out.any()   # no interior pixel
    np.testing.assert_array_equal(_eoh(-p, bins), out)
    np.testing.assert_array_equal(_eoh(p * 2.0 ** p2, bins), out * 2.0 ** p2)
    if bins % 2 == 0:
        mapped = np.zeros(bins)
        mapped[(bins // 2 - 1 - np.arange(bins)) % bins] = out
        np.testing.assert_allclose(_eoh(p.T, bins), mapped, rtol=1e-12, atol=1e-12)


# ======================================================================================
# _emi: linear algebra of the ground balance and the notch; matched statistic
# with a projection basis and the novelty
# ======================================================================================

@fast(40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), g=st.integers(3, 16),
       comps=st.sampled_from([("viscous",), ("viscous", "offset"),
                              ("viscous", "offset", "conductive")]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_soil_balance_is_the_orthogonal_projection(seed, n, g, comps, dtype):
    """emi.soil removes each reading's least-squares fit of the soil basis: its
    output is orthogonal to the basis, a second balance changes nothing, and
    the balance is linear.  A frame with a missing gate is NaN throughout.
    Tolerance: float64 projections, 1e-10 of the readings' scale (float32
    readings: output rounded to float32, 1e-5)."""
    rng = np.random.default_rng(seed)
    t = np.geomspace(1e-5, 1e-3, g)
    if len(comps) >= g:
        comps = comps[:g - 1]
    basis = soil_basis(t, comps)
    x = (rng.normal(size=(n, g)) + rng.normal(size=(n, len(comps))) @ basis.T * 50)
    y = rng.normal(size=(n, g)) * 3
    x, y = x.astype(dtype), y.astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-5

    def bal(v):
        return run_stage(SoilCompensation(gate_times=t, components=comps), v).astype(np.float64)

    scale = np.abs(x).max() + np.abs(y).max()
    bx = bal(x)
    np.testing.assert_allclose(bx, x - (x @ np.linalg.pinv(basis).T) @ basis.T,
                               atol=tol * scale)
    np.testing.assert_allclose(bx @ basis, 0.0, atol=tol * scale)
    np.testing.assert_allclose(bal(bx.astype(dtype)), bx, atol=tol * scale)
    np.testing.assert_allclose(bal((2 * x - 3 * y).astype(np.float64)),
                               2 * bal(x.astype(np.float64)) - 3 * bal(y.astype(np.float64)),
                               atol=tol * 5 * scale)
    bad = x.copy()
    bad[0, g // 2] = np.nan
    out = bal(bad)
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1:], bx[1:])


@fast(30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), g=st.integers(1, 4),
       fs=st.sampled_from([173.0, 1000.0, 2400.0]), harmonics=st.integers(1, 3))
def test_notch_is_linear(seed, n, g, fs, harmonics):
    """The notch (biquads started in the steady state of the first reading,
    which is proportional to it) is a linear filter of the stream.
    Tolerance: float64 recursions, 1e-9 of the scale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, g)) + 5
    y = np.sin(np.arange(n) / 3.0)[:, None] * rng.normal(size=g) - 2

    def notch(v):
        return run_stage(MainsNotch(freq=50.0, q=10.0, harmonics=harmonics, sample_rate=fs), v)

    np.testing.assert_allclose(notch(3 * x - 0.5 * y), 3 * notch(x) - 0.5 * notch(y),
                               rtol=1e-9, atol=1e-9 * 20)
    # and a linear time-invariant one: the same as scipy's sosfilt from that steady state
    sos = MainsNotch(freq=50.0, q=10.0, harmonics=harmonics, sample_rate=fs).sos
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    np.testing.assert_allclose(notch(x), signal.sosfilt(sos, x, axis=0, zi=zi)[0],
                               rtol=1e-9, atol=1e-9 * 20)


def ref_matched_fixed_scale(x, window, novelty_window, scale, proj):
    """MatchedDetect's docstring with a fixed noise scale: z = x / scale summed
    over the last ``window`` finite readings over sqrt(their number) (u); the
    statistic sqrt(sum((proj @ u)**2) / k); the novelty: RMS over the gates
    of u's part orthogonal to the u of the reading of highest statistic
    among the last ``novelty_window`` finite ones (the latest of equals).
    Readings with a missing value: NaN, and skipped."""
    ok = np.isfinite(x).all(axis=1)
    z = x[ok] / scale
    m, g = z.shape
    u = np.array([z[max(0, i - window + 1):i + 1].sum(axis=0)
                  / math.sqrt(min(i + 1, window)) for i in range(m)]).reshape(m, g)
    stat = np.sqrt(((u @ proj.T) ** 2).sum(axis=1) / len(proj))
    nov = np.empty(m)
    for i in range(m):
        lo = max(0, i - novelty_window + 1)
        w = stat[lo:i + 1]
        j = lo + np.flatnonzero(w == w.max())[-1]
        e = u[j] / np.linalg.norm(u[j]) if np.linalg.norm(u[j]) > 0 else np.zeros(g)
        nov[i] = math.sqrt(max(u[i] @ u[i] - (u[i] @ e) ** 2, 0.0) / g)
    s_full, n_full = np.full(len(x), np.nan), np.full(len(x), np.nan)
    s_full[ok], n_full[ok] = stat, nov
    return s_full, n_full


@fast(25)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), g=st.integers(2, 6),
       window=st.integers(1, 12), novelty_window=st.integers(1, 40), k=st.integers(1, 3),
       holes=st.integers(0, 3))
def test_matched_with_a_basis_and_the_novelty(seed, n, g, window, novelty_window, k, holes):
    """The projection basis and the novelty together (each was checked only
    without the other).  ``min_noise`` far above the readings' noise fixes
    the scale.  Tolerance: float64 running sums recomputed at each wrap of
    the ring, 1e-9; the novelty of a reading that is its own dominant is 0
    up to rounding that the square root lifts to ~1e-8 of the statistic."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, g))
    x[n // 3:n // 3 + 40] += np.hanning(40)[:len(x[n // 3:n // 3 + 40]), None] * rng.uniform(
        5, 30, g)
    for i in rng.integers(0, n, holes):
        x[i, rng.integers(g)] = np.nan
    proj = rng.normal(size=(k, g))
    st_ = MatchedDetect(window=window, min_noise=1e3, basis=proj.tolist(),
                        novelty_window=novelty_window, output="statistic")
    out = run_stage(st_, x)
    stat, nov = ref_matched_fixed_scale(x, window, novelty_window, 1e3, proj)
    big = max(np.nanmax(stat), 1e-300) if np.isfinite(stat).any() else 1.0
    np.testing.assert_allclose(out[:, -1], stat, rtol=1e-9, atol=1e-12 * big, equal_nan=True)
    np.testing.assert_allclose(out[:, -2], nov, rtol=1e-6, atol=1e-6 * big, equal_nan=True)


# ======================================================================================
# CRC-16/CCITT-FALSE: a stream checked in pieces
# ======================================================================================

@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80))
def test_crc_chains_through_init(a, b):
    """The CRC of a stream equals the CRC of its second part started from the
    CRC of the first (``init``): how a frame arriving in pieces is checked.
    Both compiled copies (``_core`` and ``_framing``) agree."""
    whole = crc16(a + b)
    assert crc16(b, init=crc16(a)) == whole
    buf = np.frombuffer(a + b, np.uint8).copy()
    assert crc16_ccitt(buf, len(a), len(a) + len(b), crc16_ccitt(buf, 0, len(a))) == whole
    assert _framing.crc16(buf, len(a), len(a) + len(b), crc16(a)) == whole


def test_unused_exports_exist():
    """Kernels the wrappers do not call still run (they are part of the build):
    thread counts and the AVX2 flag."""
    from demine._core import openmp_max_threads

    assert _gpr_base.max_threads() >= 1 and openmp_max_threads() >= 1
    assert _emi._quiet_level(np.ones((4, 3)), np.ones(3)).tolist() == [1.0, 1.0, 1.0]
    if _avx2_build() is not None:
        assert _avx2_build().COMPILED_FOR_AVX2 is True


def test_infinite_samples_come_out_nan_from_time_zero_stack_and_resample():
    """The missing-sample policy (demine.gpr): an infinite sample comes out NaN,
    also from the stages whose kernels copy, average or interpolate it."""
    x = np.array([[0, 5, np.inf, 1, 0, 0]], np.float32)
    out = gpr.TimeZero(threshold=0.5, target=0).process(x)
    np.testing.assert_array_equal(out, [[5, np.nan, 1, 0, 0, 0]])
    x2 = np.array([[1, np.inf], [1, 2], [1, -np.inf], [1, 1]], np.float32)
    np.testing.assert_array_equal(run_stage(gpr.Stack(fold=2), x2), [[1, np.nan], [1, np.nan]])
    st = gpr.Stack(fold=3)
    st.process(x2[:2])
    np.testing.assert_array_equal(st.finish(), [[1, np.nan]])  # (the incomplete group)
    r = gpr.Resample(spacing=0.5).process(x2, np.arange(4.0))
    assert np.isnan(r[:, 1]).any() and not np.isinf(r).any()
    np.testing.assert_array_equal(r[:, 0], 1)
