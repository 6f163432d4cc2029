"""The reader's clock fit follows a GPS receiver's clock rate.

A GPS receiver's clock (its UTC) is mapped to the host clock by
:class:`demine.acquisition.ClockFit`: after its first seconds the mapped fix
times are right to a millisecond or two, for a crystal's drift and for a
clock twice as fast (the simulator's ``speed=2``).
"""

from __future__ import annotations

import numpy as np
import pytest

from demine.acquisition import ClockFit

S = 1_000_000_000


def _mapped(seed: int, ppm: float = 50.0, jitter_ms: float = 2.0, seconds: float = 10.0):
    """Errors (ms) of the mapped times of a 10 Hz receiver's fixes, against
    when they were measured plus its 30 ms latency (read with a jittery delay)."""
    rng = np.random.default_rng(seed)
    true = (np.arange(int(seconds * 10)) * (S // 10)).astype(np.int64)
    dev_us = np.round(true / 1e3 * (1 + ppm * 1e-6)).astype(np.int64) + 1_483_228_000 * 10**6
    host = true + 30_000_000 + rng.exponential(jitter_ms * 1e6, true.size).astype(np.int64)
    fit = ClockFit()
    mapped = np.concatenate([fit.update(dev_us[i:i + 1], host[i:i + 1])
                             for i in range(true.size)])
    return (mapped - true - 30_000_000) / 1e6


@pytest.mark.parametrize("ppm", [50.0, -150.0, 1e6])
def test_the_fit_still_follows_the_clock_rate(ppm):
    # a real drift, and a clock twice as fast (the simulator's speed=2):
    # after 10 s the fix times are right to within a millisecond or two
    err = _mapped(0, ppm=ppm, seconds=20.0)
    assert np.abs(err[100:]).max() < 2.5, np.abs(err[100:]).max()
