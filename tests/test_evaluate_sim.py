"""Evaluation end to end on simulated lanes: simulate -> recording -> detect -> evaluate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from demine.cli import main
from demine.evaluate import evaluate_recordings

simulate = pytest.importorskip("demine.simulate")
pipeline = pytest.importorskip("demine.pipeline")

EMI_ONLY = {"gpr": {"enabled": False}}


def _lane(tmp_path, scene, seed=0, duration=None):
    res = simulate.simulate_lane(scene, seed=seed, duration=duration, streams=("emi",))
    path = tmp_path / f"{getattr(scene, 'name', scene)}-{seed}.h5"
    res.write(path)
    alarms = pipeline.detect_recording(path, EMI_ONLY)
    return path, res, alarms


def test_empty_lane_false_alarms_only(tmp_path, capsys):
    path, res, alarms = _lane(tmp_path, "empty-lane", duration=60.0)
    r = evaluate_recordings([path], alarms=[alarms])
    assert r.n_targets == 0 and np.isnan(r.pd)
    assert r.n_false_alarms == alarms["x"].size
    assert 1.0 < r.area_m2 < 4.0  # a minute of sweeping a 1 m wide lane
    assert r.far_per_m2 == pytest.approx(r.n_false_alarms / r.area_m2)
    assert r.far_per_m2 <= 0.5  # benign soil, nothing buried
    # Through the CLI, with the alarms written to a CSV.
    csv = tmp_path / "alarms.csv"
    csv.write_text("x,y,score\n" + "".join(
        f"{x},{y},{s}\n" for x, y, s in zip(alarms["x"], alarms["y"], alarms["score"],
                                            strict=True)))
    assert main(["evaluate", str(path), "--alarms", str(csv), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pd"] is None and d["n_targets"] == 0 and d["far_per_m2"] == pytest.approx(
        r.far_per_m2)


def test_lane_where_nothing_is_detectable_gives_pd_zero(tmp_path):
    # Two minimum-metal mines deep in magnetic soil: below what the detector sees.
    base = simulate.load_scene("empty-lane")
    objs = tuple(o for o in simulate.load_scene("benign-soil").objects
                 if o.cls == "ap-mine-min-metal")
    assert objs
    deep = tuple(dataclasses.replace(o, depth=0.25, y=1.0 + i) for i, o in enumerate(objs))
    scene = base.replace(objects=deep, name="undetectable")
    path, res, alarms = _lane(tmp_path, scene, duration=90.0)
    r = evaluate_recordings([path], alarms=[alarms])
    assert r.n_targets == len(deep)
    assert r.pd == 0.0 and r.pd_lower95 == 0.0
    assert r.to_dict()["by_class"]["ap-mine-min-metal"]["pd"] == 0.0
