"""Evaluation maths against hand-worked cases: matching, PD bounds, FA/m², ROC."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from demine.errors import ConfigError
from demine.evaluate import (
    AP_HALO,
    LARGE_HALO,
    Lane,
    clopper_pearson_interval,
    clopper_pearson_lower,
    evaluate,
    evaluate_lanes,
    match_alarms,
    read_alarms_csv,
    searched_area,
    size_class,
)


def _truth(xy, **cols):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return {"x": xy[:, 0], "y": xy[:, 1], **{k: np.asarray(v) for k, v in cols.items()}}


def _alarms(xy, score=None, **cols):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    out = {"x": xy[:, 0], "y": xy[:, 1], **{k: np.asarray(v) for k, v in cols.items()}}
    if score is not None:
        out["score"] = np.asarray(score, dtype=float)
    return out


# ----------------------------------------------------------------- Clopper–Pearson


def test_lower_bound_ten_of_ten_and_fifty_of_fifty():
    assert round(clopper_pearson_lower(10, 10), 3) == 0.741
    assert clopper_pearson_lower(10, 10) == pytest.approx(0.05 ** (1 / 10))
    assert round(clopper_pearson_lower(50, 50), 2) == 0.94
    assert clopper_pearson_lower(0, 7) == 0.0
    assert math.isnan(clopper_pearson_lower(0, 0))
    # ~750 targets with no miss are needed to prove the historical 0.996 goal.
    assert clopper_pearson_lower(748, 748) > 0.996 > clopper_pearson_lower(700, 700)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1))
def test_lower_bound_is_exact_binomial_tail(n, frac):
    k = int(round(frac * n))
    lo = clopper_pearson_lower(k, n)
    if k == 0:
        assert lo == 0.0
        return
    # The bound is the p at which seeing k or more successes has probability 5 %.
    assert binom.sf(k - 1, n, lo) == pytest.approx(0.05, rel=1e-6, abs=1e-9)
    assert lo <= k / n
    two_lo, two_hi = clopper_pearson_interval(k, n)
    assert two_lo <= lo <= k / n <= two_hi


def test_bad_counts_are_config_errors():
    with pytest.raises(ConfigError, match="k <= n"):
        clopper_pearson_lower(5, 3)
    with pytest.raises(ConfigError, match="confidence"):
        clopper_pearson_lower(1, 3, confidence=1.5)


# ----------------------------------------------------------------- matching


def test_halo_is_inclusive_and_size_dependent():
    assert size_class("ap-mine") == "ap" and size_class("PMN-2") == "ap"
    assert size_class("at-mine-min-metal") == "large" and size_class("TM-62M") == "large"
    assert size_class("uxo") == "large" and size_class("cartridge") == "ap"
    # anti-tank mines an outside truth table names (they had the AP halo)
    assert [size_class(t) for t in ("TC-6", "TC-2.4", "PRB-M3", "SB-81")] == ["large"] * 4
    assert size_class("PMA-2") == "ap" and size_class("VS-50") == "ap"
    truth = _truth([[0, 0], [10, 0], [20, 0]], type=["ap-mine", "at-mine", "ap-mine"])
    # 0.25 m from the AP mine (on its halo), 0.5 m from the AT mine, 0.3 m from the 2nd AP.
    alarms = _alarms([[0.25, 0], [10, 0.5], [20, 0.3]])
    r = evaluate(truth, alarms, area=30.0)
    assert r.lanes[0].halo.tolist() == [AP_HALO, LARGE_HALO, AP_HALO]
    assert r.n_found == 2 and r.n_false_alarms == 1
    assert r.lanes[0].alarm_kind.tolist() == ["hit", "hit", "false"]
    # One radius for all, or per class / per type.
    assert evaluate(truth, alarms, area=30.0, halo=0.3).n_found == 2
    assert evaluate(truth, alarms, area=30.0, halo=0.5).n_found == 3
    assert evaluate(truth, alarms, area=30.0, halo={"ap": 0.31}).n_found == 3
    assert evaluate(truth, alarms, area=30.0, halo={"at-mine": 0.4}).n_found == 1


def test_an_alarm_logged_on_the_halo_off_axis_is_within_it():
    # Positions to the centimetre, 15 and 20 cm (or 30 and 40 cm) off the target:
    # 0.25 m (0.5 m) exactly, which the k-d tree's search dropped, or, from
    # (0, 0.88), 0.25000000000000006 m in floating point.
    truth = _truth([[0.35, 0], [5.21, 0], [10, 0.88]], type=["ap-mine", "at-mine", "ap-mine"])
    alarms = _alarms([[0.50, 0.20], [5.51, 0.40], [10.15, 1.08]], score=[0.3, 0.2, 0.1])
    r = evaluate(truth, alarms, area=30.0)
    assert r.n_found == 3 and r.n_false_alarms == 0
    assert r.roc.n_found.tolist() == [0, 1, 2, 3]
    m, _ = match_alarms(np.column_stack([alarms["x"], alarms["y"]]),
                        np.column_stack([truth["x"], truth["y"]]), [0.25, 0.5, 0.25])
    assert m.tolist() == [0, 1, 2]
    # a millimetre further is outside
    assert evaluate(truth, _alarms([[0.50, 0.201]]), area=30.0).n_found == 0


def test_tie_rules_global_nearest_first_not_table_order():
    # T0 at 0, T1 at 0.4; alarm A (listed first) is nearer T1 (0.18) than T0 (0.22),
    # alarm B is 0.05 from T1.  Globally nearest first: B-T1, then A-T0: both found.
    # (Taking alarms in table order would give A-T1 and leave T0 missed.)
    truth = _truth([[0, 0], [0.4, 0]])
    alarms = _alarms([[0.22, 0], [0.45, 0]])
    m, d = match_alarms(np.column_stack([alarms["x"], alarms["y"]]),
                        np.column_stack([truth["x"], truth["y"]]), 0.25)
    assert m.tolist() == [0, 1]
    assert d == pytest.approx([0.22, 0.05])
    assert evaluate(truth, alarms, area=1.0).pd == 1.0


def test_tie_rules_distance_before_score():
    truth = _truth([[0, 0], [0.4, 0]])
    alarms = _alarms([[0.22, 0], [0.45, 0]], score=[0.9, 0.5])
    r = evaluate(truth, alarms, area=1.0)
    # Nearest first whatever the scores: B-T1 (0.05), then A-T0 (0.22).
    assert r.lanes[0].alarm_target.tolist() == [0, 1]
    assert r.pd == 1.0 and r.n_false_alarms == 0
    # At threshold 0.9 only A is declared: it takes its nearest target, T1.
    assert r.roc.threshold.tolist() == [np.inf, 0.9, 0.5]
    assert r.roc.n_found.tolist() == [0, 1, 2] and r.roc.n_false.tolist() == [0, 0, 0]
    # At equal distance the higher score wins; the other alarm is a false alarm.
    r = evaluate(_truth([[0, 0]]), _alarms([[0.1, 0], [-0.1, 0]], score=[0.2, 0.9]), area=1.0)
    assert r.lanes[0].alarm_kind.tolist() == ["false", "hit"]


def test_tie_rules_exact_ties_go_to_table_order():
    # Alarm exactly halfway between two targets, equal distance 0.25: the first target.
    truth = _truth([[0, 0], [0.5, 0]])
    r = evaluate(truth, _alarms([[0.25, 0]]), area=1.0, halo=0.3)
    assert r.lanes[0].alarm_target.tolist() == [0]
    # Two alarms equally near one target, equal scores: the first alarm clears it,
    # the second is a false alarm (one alarm clears one target, one target one alarm).
    r = evaluate(_truth([[0, 0]]), _alarms([[0.1, 0], [-0.1, 0]]), area=1.0)
    assert r.lanes[0].alarm_kind.tolist() == ["hit", "false"]
    assert r.n_found == 1 and r.n_false_alarms == 1


def test_one_alarm_clears_one_target():
    # Two mines 0.1 m apart and a single alarm between them: only one is found.
    r = evaluate(_truth([[0, 0], [0.1, 0]]), _alarms([[0.05, 0]]), area=1.0)
    assert r.n_found == 1 and r.pd == 0.5


# ----------------------------------------------------------------- edge cases


def test_zero_targets_gives_undefined_pd_not_a_crash():
    r = evaluate(_truth(np.zeros((0, 2))), _alarms([[1, 1], [2, 2]]), area=4.0)
    assert r.n_targets == 0 and math.isnan(r.pd) and math.isnan(r.pd_lower95)
    assert r.far_per_m2 == 0.5 and r.n_false_alarms == 2
    d = r.to_dict()
    assert d["pd"] is None and d["pd_lower95"] is None and d["far_per_m2"] == 0.5
    assert any("PD undefined" in n for n in d["notes"])
    assert d["pd_at_far"]["0.5"]["pd"] is None
    json.dumps(d, allow_nan=False)


def test_zero_alarms_and_nothing_detectable():
    truth = _truth([[0, 0], [1, 0], [2, 0]], type=["ap-mine"] * 3)
    for alarms in (None, _alarms(np.zeros((0, 2))), _alarms([[5, 5]])):
        r = evaluate(truth, alarms, area=6.0)
        assert r.n_targets == 3 and r.n_found == 0 and r.pd == 0.0 and r.pd_lower95 == 0.0
        assert r.roc.pd[-1] == 0.0 and r.pd_at_far[0.5]["pd"] == 0.0
    assert evaluate(truth, None, area=6.0).far_per_m2 == 0.0
    assert evaluate(truth, None, area=6.0).roc.threshold.tolist() == [np.inf]


def test_ten_of_ten_found():
    truth = _truth(np.column_stack([np.arange(10.0), np.zeros(10)]), type=["ap-mine"] * 10)
    r = evaluate(truth, _alarms(np.column_stack([np.arange(10.0) + 0.1, np.zeros(10)])),
                 area=10.0)
    assert r.pd == 1.0 and round(r.pd_lower95, 3) == 0.741
    assert r.localisation["n"] == 10
    assert r.localisation["mean"] == pytest.approx(0.1)
    assert r.localisation["bias_x"] == pytest.approx(0.1)
    assert r.localisation["bias_y"] == pytest.approx(0.0)


def test_alarms_and_targets_outside_the_searched_lane():
    # Sensor swept y = 0 from x = 0 to 4 with a 0.4 m footprint: strip |y| <= 0.2.
    path = np.column_stack([np.linspace(0, 4, 401), np.zeros(401)])
    truth = _truth([[1, 0.15], [2, 0], [3, 1.0]], type=["ap-mine"] * 3)
    alarms = _alarms([
        [1.0, 0.3],   # outside the strip, 0.15 from the edge mine: still finds it
        [2.0, 3.0],   # far outside the strip, matches nothing: not a false alarm
        [2.5, 0.0],   # inside, matches nothing: false alarm
        [3.0, 1.05],  # on the unsearched mine: neither a hit nor a false alarm
    ])
    r = evaluate(truth, alarms, path=path, footprint=0.4)
    lane = r.lanes[0]
    assert lane.truth_inside.tolist() == [True, True, False]
    assert lane.alarm_inside.tolist() == [False, False, True, False]
    assert lane.alarm_kind.tolist() == ["hit", "outside", "false", "ignored"]
    assert r.n_targets == 2 and r.n_found == 1 and r.n_targets_outside == 1
    assert r.n_false_alarms == 1 and r.n_alarms_outside == 1 and r.n_alarms_ignored == 1
    assert r.area_m2 == pytest.approx(4 * 0.4 + math.pi * 0.2**2, rel=0.01)
    assert r.far_per_m2 == pytest.approx(1 / r.area_m2)
    # Counting the unsearched mine too.
    r2 = evaluate(truth, alarms, path=path, footprint=0.4, include_unsearched=True)
    assert r2.n_targets == 3 and r2.n_found == 2 and r2.n_alarms_ignored == 0


def test_clutter_alarms_are_false_alarms_and_labelled():
    truth = _truth([[0, 0], [1, 0], [2, 0]], type=["ap-mine", "can", "fragment"],
                   is_mine=[1, 0, 0])
    alarms = _alarms([[0.05, 0], [1.05, 0], [3, 0]], score=[0.9, 0.4, 0.2])
    r = evaluate(truth, alarms, area=2.0)
    assert r.n_targets == 1 and r.n_found == 1
    assert r.n_false_alarms == 2 and r.n_clutter_alarms == 1 and r.far_per_m2 == 1.0
    assert r.lanes[0].alarm_kind.tolist() == ["hit", "clutter", "false"]
    # Both false alarms score below the lowest hit: all rejected at full recovery.
    assert r.fa_rejected_at_full_recovery == 1.0
    assert r.clutter_rejected_at_full_recovery == 1.0
    # A can scoring above the mine cannot be rejected without losing the mine.
    r2 = evaluate(truth, _alarms([[0.05, 0], [1.05, 0], [3, 0]], score=[0.5, 0.9, 0.2]),
                  area=2.0)
    assert r2.fa_rejected_at_full_recovery == 0.5
    assert r2.clutter_rejected_at_full_recovery == 0.0
    # targets="all": every truth row is a target.
    r_all = evaluate(truth, alarms, area=2.0, targets="all")
    assert r_all.n_targets == 3 and r_all.n_found == 2 and r_all.n_false_alarms == 1


def test_breakdowns_by_class_size_depth_and_soil():
    types = ["ap-mine"] * 4 + ["at-mine"] * 2
    depth = [0.02, 0.08, 0.15, 0.40, 0.10, np.nan]
    xy = np.column_stack([np.arange(6.0) * 2, np.zeros(6)])
    truth = _truth(xy, type=types, depth=depth)
    # AP 0, 1, 2 found; AP 3 missed (alarm 0.4 m off, outside its 0.25 m halo);
    # both AT mines found by alarms 0.4 m off (inside their 0.5 m halo).
    ax = xy + np.array([[0.05, 0], [0, 0.1], [0.1, 0], [0.4, 0], [0.4, 0], [0, 0.4]])
    r = evaluate(truth, _alarms(ax), area=12.0, soil="laterite")
    d = r.to_dict()
    assert d["by_class"]["ap-mine"]["n_targets"] == 4
    assert d["by_class"]["ap-mine"]["n_found"] == 3
    assert d["by_class"]["ap-mine"]["pd"] == 0.75
    assert d["by_class"]["at-mine"]["pd"] == 1.0
    assert d["by_class"]["at-mine"]["pd_lower95"] == pytest.approx(0.05 ** 0.5)
    assert d["by_size"]["ap"]["n_found"] == 3 and d["by_size"]["large"]["n_found"] == 2
    assert {k: v["n_targets"] for k, v in d["by_depth"].items()} == {
        "0-5 cm": 1, "5-10 cm": 1, "10-20 cm": 2, ">=30 cm": 1, "unknown": 1}
    assert d["by_depth"][">=30 cm"]["pd"] == 0.0
    assert d["by_soil"]["laterite"]["n_targets"] == 6
    assert d["by_soil"]["laterite"]["far_per_m2"] == pytest.approx(1 / 12)
    assert r.n_found == 5 and r.n_false_alarms == 1


def test_lanes_are_matched_separately_and_pooled():
    lane_a = Lane(_truth([[0, 0]]), _alarms([[0, 0.05]]), area=2.0, soil="benign", name="a")
    # Lane b: the alarm at the same coordinates must not find lane a's mine.
    lane_b = Lane(_truth(np.zeros((0, 2))), _alarms([[0, 0.05], [1, 1]]), area=2.0,
                  soil="magnetic", name="b")
    r = evaluate_lanes([lane_a, lane_b])
    assert r.n_targets == 1 and r.n_found == 1 and r.n_false_alarms == 2
    assert r.far_per_m2 == 0.5 and r.area_m2 == 4.0
    d = r.to_dict()
    assert d["by_soil"]["magnetic"]["far_per_m2"] == 1.0
    assert d["by_soil"]["magnetic"]["pd"] is None
    assert d["by_soil"]["benign"]["far_per_m2"] == 0.0
    assert [ln["name"] for ln in d["lanes"]] == ["a", "b"]


def test_unknown_area_makes_far_undefined():
    r = evaluate(_truth([[0, 0]]), _alarms([[0, 0], [3, 3]]))
    assert r.pd == 1.0 and math.isnan(r.far_per_m2)
    assert r.to_dict()["far_per_m2"] is None
    assert any("area unknown" in n for n in r.notes)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ConfigError, match="'x' and 'y'"):
        evaluate({"x": [1.0]}, None, area=1.0)
    with pytest.raises(ConfigError, match="score"):
        evaluate(_truth([[0, 0]]), _alarms([[0, 0]], score=[np.nan]), area=1.0)
    with pytest.raises(ConfigError, match="targets"):
        evaluate(_truth([[0, 0]]), None, targets="some")
    with pytest.raises(ConfigError, match="halo"):
        evaluate(_truth([[0, 0]]), None, halo=-1.0)


# ----------------------------------------------------------------- searched area


def test_searched_area_of_a_straight_strip_and_union_of_passes():
    exact = 10 * 0.3 + math.pi * 0.15**2
    line = np.column_stack([np.linspace(0, 10, 501), np.zeros(501)])
    cov = searched_area(line, 0.3)
    assert cov.area == pytest.approx(exact, rel=2e-3)
    # A second identical pass adds nothing; a parallel one 1 m away doubles it.
    assert searched_area([line, line[::-1]], 0.3).area == pytest.approx(cov.area, rel=1e-3)
    other = line + [0, 1.5]
    assert searched_area([line, other], 0.3).area == pytest.approx(2 * exact, rel=2e-3)
    # A jump longer than max_gap is not swept (sensor lifted between passes).
    joined = np.concatenate([line, other[::-1]])
    assert searched_area(joined, 0.3).area == pytest.approx(2 * exact, rel=2e-3)
    assert searched_area(joined, 0.3, max_gap=2.0).area > 2 * exact + 0.3
    # NaN positions break the path; no position at all is an empty area.
    assert searched_area(np.full((5, 2), np.nan), 0.3).area == 0.0
    assert cov.contains([5.0, 5.0, np.nan], [0.1, 0.2, 0.0]).tolist() == [True, False, False]


def test_searched_area_refuses_a_cell_that_needs_an_unreasonable_grid():
    # (a line swept at cell=1e-9 was sampled every 0.5 nm: MemoryError; two
    # separate passes, as here, were silently coarsened to whatever cell fits)
    passes = np.array([[0.0, 0.0], [5.0, 0.0]])  # 5 m apart: not joined
    with pytest.raises(ConfigError, match=r"cell 1e-09 m would need a grid of 1\.59e\+18 cells "
                       r"over the path's 5\.3 m x 0\.3 m bounding box .*use a larger cell "
                       r"\(default footprint / 30 = 0\.01 m\)"):
        searched_area(passes, 0.3, cell=1e-9)
    # a 100 m x 100 m campaign lane at 1 mm (1e10 cells, 1000 times the default
    # 1 cm's) is still allowed, and the default cell is never refused
    corners = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]])
    assert searched_area(corners, 0.3, cell=1e-3).area == pytest.approx(
        4 * math.pi * 0.15**2, rel=0.1)  # (on the 5 cm cells max_cells allows)
    far = np.array([[0.0, 0.0], [1e6, 1e6]])  # (a bad fix far away: coarsened, as before)
    with pytest.warns(RuntimeWarning, match="approximate"):
        assert searched_area(far, 0.3).mask.size <= 4_000_000
    with pytest.raises(ConfigError, match="larger cell"):
        searched_area(far, 0.3, cell=0.01)


def test_searched_area_of_a_zigzag_sweep_matches_a_brute_force_twin():
    from scipy.spatial import cKDTree

    t = np.linspace(0, 1, 4001)
    x = 0.5 * np.sin(2 * np.pi * 10 * t)  # 10 sweeps over 1 m while advancing 2 m
    y = 2.0 * t
    path = np.column_stack([x, y])
    cov = searched_area(path, 0.24)
    # Twin: a 2 mm grid, each node's distance to a 0.5 mm resampling of the polyline.
    seg = np.linspace(0, 1, 40)[:-1]
    dense = (path[:-1, None, :] + (path[1:] - path[:-1])[:, None, :] * seg[None, :, None])
    tree = cKDTree(dense.reshape(-1, 2))
    gx, gy = np.meshgrid(np.arange(-0.63, 0.63, 0.002), np.arange(-0.13, 2.13, 0.002))
    d, _ = tree.query(np.column_stack([gx.ravel(), gy.ravel()]))
    ref = np.count_nonzero(d <= 0.12) * 0.002**2
    assert cov.area == pytest.approx(ref, rel=0.01)
    assert cov.area < (1 + 0.24) * (2 + 0.24)


def test_far_with_a_known_area():
    line = np.column_stack([np.linspace(0, 10, 1001), np.full(1001, 0.37)])
    alarms = _alarms([[1, 0.37], [4, 0.4], [9, 0.3]])
    r = evaluate(_truth(np.zeros((0, 2))), alarms, path=line, footprint=0.3)
    assert r.area_m2 == pytest.approx(3.0707, rel=2e-3)
    assert r.far_per_m2 == pytest.approx(3 / 3.0707, rel=2e-3)


# ----------------------------------------------------------------- ROC


def test_roc_and_pd_at_far_step_rule():
    # 4 targets, 10 m²; alarms by descending score: hit, FA, hit, FA, FA, hit.
    truth = _truth(np.column_stack([np.arange(4.0) * 2, np.zeros(4)]))
    xy = [[0, 0], [1, 5], [2, 0], [3, 5], [5, 5], [4, 0]]
    r = evaluate(truth, _alarms(xy, score=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), area=10.0,
                 far_levels=(0.1, 0.2, 0.25, 1.0))
    roc = r.roc
    assert roc.threshold.tolist() == [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert roc.n_found.tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert roc.n_false.tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert roc.far == pytest.approx([0, 0, 0.1, 0.1, 0.2, 0.3, 0.3])
    # Step rule: the lowest threshold whose FA/m² does not exceed the level.
    assert r.pd_at_far[0.1]["pd"] == 0.5 and r.pd_at_far[0.1]["threshold"] == 0.7
    assert r.pd_at_far[0.2]["pd"] == 0.5 and r.pd_at_far[0.2]["threshold"] == 0.6
    assert r.pd_at_far[0.25]["pd"] == 0.5
    assert r.pd_at_far[1.0]["pd"] == 0.75 and r.pd_at_far[1.0]["reached"] is False
    assert r.pd_at_far[1.0]["pd_lower95"] == pytest.approx(clopper_pearson_lower(3, 4))
    # The FA above the lowest hit (0.4) is all of them: nothing rejected at full recovery.
    assert r.fa_rejected_at_full_recovery == 0.0
    assert np.all(roc.pd_lo <= roc.pd) and np.all(roc.pd <= roc.pd_hi)


scenes = st.integers(0, 2**32 - 1).flatmap(lambda seed: st.tuples(
    st.just(seed), st.integers(0, 12), st.integers(0, 25), st.integers(1, 6)))


@settings(max_examples=150, deadline=None)
@given(scenes)
def test_roc_is_monotone_and_nested(case):
    seed, nt, na, nscore = case
    rng = np.random.default_rng(seed)
    truth = _truth(rng.uniform(0, 2, (nt, 2)),
                   type=rng.choice(["ap-mine", "at-mine"], nt),
                   is_mine=rng.integers(0, 2, nt) | (rng.uniform(size=nt) < 0.5))
    # Alarms near targets and anywhere; few distinct scores to force ties.
    near = truth["x"].size and rng.uniform(size=na) < 0.6
    idx = rng.integers(0, max(nt, 1), na)
    axy = rng.uniform(-0.5, 2.5, (na, 2))
    if nt:
        axy = np.where(np.asarray(near)[:, None] if na else axy,
                       np.column_stack([truth["x"][idx], truth["y"][idx]])
                       + rng.normal(0, 0.2, (na, 2)), axy)
    score = rng.integers(0, nscore, na) / nscore
    path = np.column_stack([np.linspace(0, 2, 200), np.linspace(0, 2, 200)])
    kw = dict(path=path, footprint=1.2)
    r = evaluate(truth, _alarms(axy, score=score), **kw)
    roc = r.roc
    assert np.all(np.diff(roc.pd) >= 0) or r.n_targets == 0
    assert np.all(np.diff(roc.far) >= 0)
    assert np.all(np.diff(roc.threshold) < 0)
    assert roc.n_found[-1] == r.n_found and roc.n_false[-1] == r.n_false_alarms
    # Nested: each ROC point equals a fresh evaluation of only the alarms above it.
    for t, k, f in zip(roc.threshold[1:], roc.n_found[1:], roc.n_false[1:], strict=True):
        sel = score >= t
        sub = evaluate(truth, _alarms(axy[sel], score=score[sel]), **kw)
        assert (sub.n_found, sub.n_false_alarms) == (k, f)
    # Full recovery saves what its ROC point shows: the false alarms (and those on
    # clutter) of a fresh evaluation of the alarms above its threshold are kept.
    if math.isfinite(r.fa_rejected_at_full_recovery):
        i = int(np.argmax(roc.n_found >= roc.n_found[-1]))
        sel = score >= roc.threshold[i]
        sub = evaluate(truth, _alarms(axy[sel], score=score[sel]), **kw)
        assert sub.n_false_alarms == roc.n_false[i]
        assert r.fa_rejected_at_full_recovery == pytest.approx(
            1 - sub.n_false_alarms / r.n_false_alarms)
        if r.n_clutter_alarms:
            assert r.clutter_rejected_at_full_recovery == pytest.approx(
                1 - sub.n_clutter_alarms / r.n_clutter_alarms)


# ----------------------------------------------------------------- files


def test_read_alarms_csv(tmp_path):
    p = tmp_path / "alarms.csv"
    p.write_text("x,y,score,label,file\n0.5,1.0,0.9,mine,a.h5\n2,3,,clutter,b.h5\n")
    a = read_alarms_csv(p)
    assert a["x"].tolist() == [0.5, 2.0] and a["label"].tolist() == ["mine", "clutter"]
    assert a["score"][0] == 0.9 and math.isnan(a["score"][1])
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,oops\n")
    with pytest.raises(ConfigError, match=r"bad.csv: row 2, field 'y'"):
        read_alarms_csv(bad)
    nohdr = tmp_path / "nox.csv"
    nohdr.write_text("east,north\n1,2\n")
    with pytest.raises(ConfigError, match="no column 'x'"):
        read_alarms_csv(nohdr)


def test_select_sets_targets_aside_without_making_false_alarms():
    truth = _truth([[0, 0], [1, 0], [2, 0]], type=["ap-mine", "ap-mine-min-metal", "ap-mine"],
                   metal_mass=[3e-3, 6e-4, 3e-3])
    alarms = _alarms([[0, 0.05], [1, 0.05], [3, 0]])
    r = evaluate(truth, alarms, area=4.0, select=lambda t: t["metal_mass"] >= 1e-3)
    assert r.n_targets == 2 and r.n_found == 1
    assert r.lanes[0].alarm_kind.tolist() == ["hit", "ignored", "false"]
    assert r.n_false_alarms == 1 and r.far_per_m2 == 0.25
    with pytest.raises(ConfigError, match="select returned 1 values for 3"):
        evaluate(truth, alarms, area=4.0, select=lambda t: [True])


def test_rows_without_positions_are_set_aside_with_a_note():
    truth = _truth([[0, 0], [np.nan, np.nan], [2, 0]])
    alarms = _alarms([[0, 0.05], [np.nan, 1.0], [5, 5]])
    r = evaluate(truth, alarms, area=4.0)
    assert r.n_targets == 2 and r.n_found == 1
    assert r.lanes[0].alarm_kind.tolist() == ["hit", "outside", "false"]
    assert r.n_false_alarms == 1 and r.n_alarms_outside == 1
    assert any("1 target(s) without a position" in n for n in r.notes)
    assert any("1 alarm(s) without a position" in n for n in r.notes)
    # set aside, not also counted as outside the searched area (with a path or not)
    assert r.n_targets_outside == 0
    path = np.column_stack([np.linspace(-1, 3, 50), np.zeros(50)])
    r = evaluate(truth, alarms, path=path)
    assert r.n_targets == 2 and r.n_targets_outside == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_score_that_is_not_finite_is_refused(bad):
    # (+inf made the ROC's "no alarm declared" origin, threshold +inf, ambiguous)
    alarms = _alarms([[0, 0], [1, 0]], score=[0.5, bad])
    with pytest.raises(ConfigError, match=r"'score' must be finite, got -?(nan|inf)"):
        evaluate(_truth([[0, 0]]), alarms, area=4.0)


def test_csv_tables_saved_by_a_spreadsheet_with_a_byte_order_mark_are_read(tmp_path):
    # (Excel's "CSV UTF-8" starts with a BOM, which made the first column '\ufeffx':
    # "no column 'x'" for alarms, "no 'id' column" for truth)
    from demine.cli.record import read_truth_csv
    from demine.evaluate import read_alarms_csv

    alarms = tmp_path / "alarms.csv"
    alarms.write_bytes(b"\xef\xbb\xbfx,y,score\r\n0.5,1.5,3\r\n")
    a = read_alarms_csv(alarms)
    assert a["x"].tolist() == [0.5] and a["score"].tolist() == [3.0]
    truth = tmp_path / "truth.csv"
    truth.write_bytes(b"\xef\xbb\xbfid,x,y,is_mine\r\nM1,0.5,1.5,1\r\n")
    t = read_truth_csv(truth)
    assert t["id"].tolist() == ["M1"] and t["x"].tolist() == [0.5]
    assert t["y"].tolist() == [1.5] and t["is_mine"].tolist() == [1]


def test_searched_area_warns_when_the_extent_makes_cells_coarser_than_the_footprint():
    # (one position 1.4 km from the rest coarsened the grid to 0.5 m cells and the
    # two swept discs gave an area of 0 without a word)
    import warnings

    from demine.evaluate import searched_area

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert searched_area(np.array([[0.0, 0.0], [20.0, 10.0]])).area > 0
    with pytest.warns(RuntimeWarning, match="bad GPS fix"):
        searched_area(np.array([[0.0, 0.0], [1000.0, 1000.0]]))
