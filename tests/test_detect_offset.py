"""EMI detector: the warm-up background of a statistic with a large offset.

The warm-up spread used to be the mean of squares minus the squared mean, which
cancels catastrophically when the statistic sits far from zero (a raw amplitude
of 1e6 counts with a noise of 1e-3): the spread came out 0 (threshold at the
mean, noise alone crossing it) or several times too large.  Nothing in the
detector should depend on where the statistic's zero is: an offset moves its
thresholds with it and changes no event.
"""

from __future__ import annotations

import numpy as np
import pytest

from demine.detect import EMIDetector


@pytest.mark.parametrize("offset", [0.0, 1e5, 1e6, 1e9])
@pytest.mark.parametrize("noise", [1e-2, 1e-3])
def test_warmup_background_is_the_mean_and_spread_of_its_frames(offset, noise):
    rng = np.random.default_rng(7)
    s = offset + noise * rng.standard_normal(300)
    det = EMIDetector(threshold=offset + 50 * noise, threshold_lo=offset + 40 * noise,
                      warmup=300)
    det.process(s)
    level, spread = det.background
    # float64 rounding of s itself (ulp(1e9) = 1.2e-7) bounds what is possible
    assert level == pytest.approx(np.mean(s), rel=1e-15, abs=1e-9)
    assert spread == pytest.approx(np.std(s), rel=1e-6 + 2e-7 / noise)


@pytest.mark.parametrize("offset", [1e5, 1e6, 1e8])
def test_an_offset_moves_the_thresholds_and_changes_no_event(offset):
    """Noise of 1 about 10, two bursts: with the floors moved by ``offset``, the
    thresholds move by ``offset`` (to the rounding of the offset statistic) and
    the alarms are the same frames."""
    rng = np.random.default_rng(11)
    n = 8000
    s = 10.0 + rng.standard_normal(n)
    s[3000:3060] += 25 * np.hanning(60)
    s[6000:6040] += 12 * np.hanning(40)
    kw = dict(k_hi=6.0, k_lo=3.0, warmup=300, min_frames=3)
    base = EMIDetector(threshold=14.0, threshold_lo=12.0, **kw)
    moved = EMIDetector(threshold=offset + 14.0, threshold_lo=offset + 12.0, **kw)
    a = base.process(s)
    b = moved.process(s + offset)
    # after the warm-up the adaptive part rules: 10 + 6 * 1 = 16 > 14
    assert base.last_threshold[-1] == pytest.approx(16.0, abs=0.5)
    # the offset statistic is rounded to ulp(offset) per frame, and so is each
    # update of the running level: about sqrt(background_window) ulps of drift
    tol = 1000 * np.spacing(offset)
    np.testing.assert_allclose(moved.last_threshold - offset, base.last_threshold,
                               rtol=0, atol=tol)
    a = {k: np.concatenate([a[k], v]) for k, v in base.finish().items()}
    b = {k: np.concatenate([b[k], v]) for k, v in moved.finish().items()}
    assert np.abs(a["peak_index"] - [3030, 6020]).max() < 10   # the two bursts
    for k in ("start_index", "end_index", "peak_index", "n_passes"):
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    np.testing.assert_allclose(b["score"] - offset, a["score"], rtol=0, atol=tol)
