"""The polarity rule's fast-decay exemption (:class:`demine.detect.LevelDrop`).

A metal object whose response decays within a few tens of µs is negative over
the early gates once the ground balance has removed 1/t and a level, so the
polarity rule (readings negative there are the baseline's copy of a departed
target, or soil) had zeroed it however strong.  Its fitted level falls, which
neither a baseline copy nor soil does: those readings are searched again.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_positions import _swings

from demine.detect import LevelDrop
from demine.errors import ConfigError
from demine.pipeline import StreamDetector

RATE = 1000.0
T0 = 1_772_352_000_000_000_000
GATES = np.geomspace(12e-6, 1e-3, 16)


def _levels(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = 0.3 * np.sin(np.arange(n) / 900.0) + rng.normal(scale=0.05, size=n)
    v[12_000:12_300] -= 3.0   # a fall of ~60 of its noise
    v[15_000:15_300] += 3.0   # a rise: slow metal, not exempt
    return v


def test_a_fall_is_flagged_and_a_rise_is_not():
    v = _levels(0)
    m = LevelDrop().process(v)
    assert m.dtype == bool and m.shape == v.shape
    assert m[12_040:12_280].all()           # (once the 31-reading mean has fallen)
    assert not m[:11_990].any() and not m[12_340:].any()
    assert not m[:1000].any()               # no decision before its baseline exists


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(1, 3000), min_size=1,
                                               max_size=12))
def test_any_chunking_gives_the_same_mask(seed, cuts):
    v = _levels(seed, 12_500)
    rng = np.random.default_rng(seed)
    v[rng.integers(0, v.size, 5)] = np.nan     # missing readings: never exempt
    whole = LevelDrop().process(v)
    d, parts, i = LevelDrop(), [], 0
    for c in cuts * 10:
        if i >= v.size:
            break
        parts.append(d.process(v[i:i + c]))
        i += c
    parts.append(d.process(v[i:]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not whole[np.isnan(v)].any()


@pytest.mark.parametrize("kw", [{"block": 0}, {"window": 2.5}, {"threshold": 0},
                                {"threshold": float("nan")}, {"noise_blocks": True}])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ConfigError):
        LevelDrop(**kw)


def _lane(tau: float, amp: float, seed: int = 3):
    """A sweep over viscous (1/t) soil whose amplitude moves with the head, with
    one object decaying as exp(-t/tau) at (0.5, 0.6)."""
    x, y, ts = _swings(60.0, width=1.0, speed=0.7, advance=0.04, rate=RATE)
    rng = np.random.default_rng(seed)
    n = x.size
    soil = 50.0 * (1 + 0.05 * np.sin(ts * 2 * np.pi / 1.4))     # head height within a swing
    g = soil[:, None] * (GATES[0] / GATES)[None, :]
    g += rng.normal(scale=1.0, size=(n, GATES.size)) * np.sqrt(GATES[0] / GATES)[None, :]
    fall = (1.0 + ((x - 0.5) ** 2 + (y - 0.6) ** 2) / 0.08**2) ** -3
    g += amp * fall[:, None] * np.exp(-(GATES - GATES[0]) / tau)[None, :]
    return g.astype(np.float32), x, y, T0 + np.arange(n, dtype=np.int64) * 1_000_000


def _alarms(g, x, y, t, **detector):
    det = StreamDetector("emi", {"gate_times": GATES.tolist(), "sample_rate": RATE},
                         detector=detector)
    parts = [det.process(g[a:a + 4000], x[a:a + 4000], y[a:a + 4000], t[a:a + 4000])
             for a in range(0, len(g), 4000)]
    parts.append(det.finish())
    xs = np.concatenate([p["x"] for p in parts])
    ys = np.concatenate([p["y"] for p in parts])
    return np.hypot(xs - 0.5, ys - 0.6)


def test_a_fast_decaying_object_is_found_only_with_the_exemption():
    g, x, y, t = _lane(tau=15e-6, amp=400.0)
    with_rule = _alarms(g, x, y, t)
    without = _alarms(g, x, y, t, level_drop=False)
    assert (with_rule < 0.1).sum() == 1 and with_rule.size == 1
    assert without.size == 0 or (without > 0.1).all()


def test_a_slowly_decaying_object_is_found_either_way():
    g, x, y, t = _lane(tau=300e-6, amp=400.0)
    for kw in ({}, {"level_drop": False}):
        d = _alarms(g, x, y, t, **kw)
        assert d.size == 1 and d[0] < 0.1


def test_soil_alone_gives_no_alarm_with_the_exemption():
    g, x, y, t = _lane(tau=15e-6, amp=0.0)
    assert _alarms(g, x, y, t).size == 0


@pytest.mark.parametrize("bad", [0, -1.0, "5", float("inf"), True, None])
def test_a_bad_level_drop_setting_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="level_drop"):
        StreamDetector("emi", {"gate_times": GATES.tolist(), "sample_rate": RATE},
                       detector={"level_drop": bad})


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_detector_keeps_the_exemption(how):
    """A copy of the ground balance drops the tap (its amplitudes would go on
    piling up in the original's queue); a copied detector taps its own copy."""
    import copy
    import pickle

    g, x, y, t = _lane(tau=15e-6, amp=400.0)
    det = StreamDetector("emi", {"gate_times": GATES.tolist(), "sample_rate": RATE})
    det.process(g[:4000], x[:4000], y[:4000], t[:4000])
    other = copy.deepcopy(det) if how == "deepcopy" else pickle.loads(pickle.dumps(det))
    parts = [other.process(g[a:a + 4000], x[a:a + 4000], y[a:a + 4000], t[a:a + 4000])
             for a in range(4000, len(g), 4000)]
    parts.append(other.finish())
    d = np.hypot(np.concatenate([p["x"] for p in parts]) - 0.5,
                 np.concatenate([p["y"] for p in parts]) - 0.6)
    assert d.size == 1 and d[0] < 0.1
    assert not det._levels or len(det._levels) <= 1   # (the original's queue did not grow)


@pytest.mark.parametrize("value", [np.int64(5), np.float32(5.0), 4])
def test_numpy_and_whole_numbers_are_taken(value):
    det = StreamDetector("emi", {"gate_times": GATES.tolist(), "sample_rate": RATE},
                         detector={"level_drop": value})
    assert det._level is not None and det._level.threshold == float(value)
