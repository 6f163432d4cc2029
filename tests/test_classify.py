"""Classifier: lane-grouped CV, labels, code-free model files, feature checks, CLI."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.classify import (
    TRAINING_PLANS,
    Model,
    apply_model,
    build_training_set,
    clutter_rejection,
    grouped_splits,
    label_alarms,
    load_default_model,
    load_model,
    make_estimator,
    make_training_lane,
    save_model,
    simulate_training_lanes,
    train_model,
    training_lanes,
    training_scene,
)
from demine.cli import main
from demine.errors import ConfigError, ModelError
from demine.features import FEATURE_SETS

SMALL = {"min_samples_leaf": 2, "max_iter": 30, "max_leaf_nodes": 4}


@pytest.fixture(scope="module")
def lanes(tmp_path_factory):
    """Four short EMI-only simulated lanes with alarms and truth (distinct lane ids)."""
    d = tmp_path_factory.mktemp("lanes")
    return [make_training_lane(s, d / f"lane{s}.h5", seed=s, length=2.0,
                               streams=("emi", "gps")) for s in range(4)]


@pytest.fixture(scope="module")
def trained(lanes, tmp_path_factory):
    ts = build_training_set(lanes, cache=tmp_path_factory.mktemp("cache"))
    return ts, train_model(ts, n_splits=4, estimator_kw=SMALL)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=4, max_size=80), st.integers(2, 6))
def test_grouped_splits_never_share_a_lane(groups, k):
    g = np.array([f"site/lane{v}" for v in groups])
    if len(set(groups)) < 2:
        with pytest.raises(Exception, match="at least 2 lanes"):
            grouped_splits(g, k)
        return
    splits = grouped_splits(g, k)
    seen = np.zeros(g.size, dtype=int)
    for tr, te in splits:
        assert not set(g[tr]) & set(g[te])
        seen[te] += 1
    assert np.all(seen == 1)  # every alarm is tested exactly once


def test_training_lanes_are_cross_validated_by_lane(trained):
    ts, _ = trained
    g = ts.groups["emi"]
    assert len(set(g.tolist())) == 4
    for tr, te in grouped_splits(g, 4):
        assert not set(g[tr].tolist()) & set(g[te].tolist())


def test_labels_by_matching():
    truth = {"x": np.array([0.0, 2.0, 4.0]), "y": np.zeros(3), "is_mine": np.array([1, 0, 1]),
             "type": np.array([b"ap-mine", b"fragment", b"at-mine"])}
    alarms = {"x": np.array([0.05, 0.1, 2.0, 4.4, 7.0]), "y": np.zeros(5),
              "score": np.array([5.0, 9.0, 3.0, 1.0, 1.0])}
    lab = label_alarms(truth, alarms, np.arange(5))
    # one of the two alarms on the AP mine finds it, the other within its halo is
    # ambiguous; the AT mine has a 0.5 m halo; the fragment and the far alarm are clutter
    assert sorted(lab[:2].tolist()) == [-1, 1]
    assert lab[2:].tolist() == [0, 1, 0]


def test_strict_labels_leave_out_hits_that_sit_on_clutter():
    truth = {"x": np.array([0.0, 0.2, 2.0]), "y": np.zeros(3), "is_mine": np.array([1, 0, 0]),
             "type": np.array([b"ap-mine", b"cartridge", b"nail"])}
    alarms = {"x": np.array([0.19, 2.0]), "y": np.zeros(2), "score": np.array([5.0, 3.0])}
    # the alarm on the cartridge 0.2 m from the mine finds the mine (halo 0.25 m) ...
    assert label_alarms(truth, alarms, np.arange(2)).tolist() == [1, 0]
    # ... but describes the cartridge: left out of training with strict labels
    assert label_alarms(truth, alarms, np.arange(2), strict=True).tolist() == [-1, 0]


def test_clutter_rejection_at_full_recovery():
    p = np.array([0.9, 0.4, 0.1, 0.2, 0.5, 0.3])
    mine = np.array([1, 1, 0, 0, 0, 0], bool)
    assert clutter_rejection(p, mine) == pytest.approx(0.75)  # 0.5 survives the 0.4 cut


def test_full_recovery_threshold_ignores_a_weak_duplicate_on_a_covered_mine():
    from demine.evaluate import evaluate

    truth = {"x": np.array([0.0, 1.0]), "y": np.zeros(2), "type": np.array(["ap-mine", "can"]),
             "is_mine": np.array([1, 0])}
    # a weak alarm right on the mine, a strong one 0.2 m off (inside its 0.25 m halo),
    # and one on the can scoring between them
    alarms = {"x": np.array([0.02, 0.2, 1.0]), "y": np.zeros(3),
              "score": np.array([0.1, 0.9, 0.5])}
    r = evaluate(truth, alarms, area=2.0)
    assert r.n_found == 1 and r.lanes[0].alarm_kind[0] == "hit"
    # the strong alarm alone keeps the mine: the can at 0.5 is rejected, and at that
    # threshold the strong alarm is the mine's hit, no false alarm is kept (at the
    # lowest threshold the weak alarm, nearer, takes the mine and it is false)
    assert r.clutter_rejected_at_full_recovery == 1.0
    assert r.fa_rejected_at_full_recovery == 1.0
    # without the strong alarm the weak one holds the threshold: nothing is rejected
    r2 = evaluate(truth, {k: v[[0, 2]] for k, v in alarms.items() if k != "y"} |
                  {"y": np.zeros(2)}, area=2.0)
    assert r2.clutter_rejected_at_full_recovery == 0.0


def test_model_round_trips_and_matches_sklearn(trained, tmp_path):
    ts, model = trained
    assert set(model.sets) == {"emi"}
    path = save_model(model, tmp_path / "m.json.gz")
    back = load_model(path)
    X = ts.X["emi"]
    np.testing.assert_array_equal(back.sets["emi"].predict(X), model.sets["emi"].predict(X))
    p = back.sets["emi"].predict(X)
    assert np.all((p >= 0) & (p <= 1))
    meta = back.meta
    assert meta["software_version"] and meta["training"]["lanes"] == 4
    assert back.sets["emi"].features == FEATURE_SETS["emi"]
    # the exported trees reproduce scikit-learn's own decision function
    keep = ts.y["emi"] >= 0
    est = make_estimator(**SMALL).fit(X[keep], ts.y["emi"][keep])
    from demine.classify import SetModel, _export_trees

    base, trees = _export_trees(est)
    sm = SetModel(FEATURE_SETS["emi"], base, trees, np.array([0.0]), np.array([0.5]))
    Xn = X.copy()
    Xn[::3, 1] = np.nan  # missing values take the learned side
    np.testing.assert_allclose(sm.raw_score(Xn), est.decision_function(Xn), rtol=1e-10,
                               atol=1e-10)


def test_apply_model_fills_p_mine(trained, lanes):
    _, model = trained
    out = apply_model(lanes[0], model)
    emi = np.array([str(s) == "emi" for s in out["stream"]])
    assert emi.any()
    assert np.all(np.isfinite(out["p_mine"][emi]))
    assert set(out["label"][emi].tolist()) <= {"mine?", "clutter?"}


def test_tampered_model_file_is_refused(trained, tmp_path):
    _, model = trained
    path = save_model(model, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    doc["payload"]["sets"]["emi"]["trees"][0]["value"][0] += 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="modified or corrupted"):
        load_model(path)
    gz = save_model(model, tmp_path / "m.json.gz")
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(ModelError, match=str(gz.name)):
        load_model(gz)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_file_crafted_to_run_code_does_not(tmp_path):
    marker = tmp_path / "pwned"
    for name, data in [
        ("evil.json.gz", pickle.dumps(_Exploit(marker))),
        ("evil2.json.gz", gzip.compress(pickle.dumps(_Exploit(marker)))),
        ("evil.skops", pickle.dumps({"model": _Exploit(marker)})),
    ]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelError, match="not a demine model file"):
            load_model(p)
    # JSON that names Python objects is just data, and not a valid model
    p = tmp_path / "evil.json"
    p.write_text(json.dumps({"format": "demine-classifier", "format_version": 1,
                             "sha256": "0", "payload": {"py/reduce": ["os.system",
                                                                       f"touch {marker}"]}}))
    with pytest.raises(ModelError):
        load_model(p)
    assert not marker.exists()


def test_structurally_invalid_model_is_refused(trained, tmp_path):
    _, model = trained
    payload = model.to_payload()
    tree = payload["sets"]["emi"]["trees"][0]
    inner = [k for k, leaf in enumerate(tree["is_leaf"]) if not leaf]
    if inner:
        tree["left"][inner[0]] = inner[0]  # a loop: must never be followed
    else:
        tree["feature"] = [99] * len(tree["feature"])
        tree["is_leaf"] = [0] * len(tree["is_leaf"])
    with pytest.raises(ModelError, match="tree 0"):
        Model.from_payload(payload, "x")


def test_feature_mismatch_is_refused(trained, lanes, tmp_path):
    _, model = trained
    sm = model.sets["emi"]
    other = Model({"emi": type(sm)(sm.features[:-1] + ("emi_something_else",), sm.baseline,
                                   sm.trees, sm.iso_x, sm.iso_y)}, model.meta)
    path = save_model(other, tmp_path / "old.json")
    with pytest.raises(ModelError, match="do not match"):
        apply_model(lanes[0], path)
    with pytest.raises(ModelError, match="no sub-model for feature set 'emi'"):
        Model({"gpr": sm}, {}).check_features("emi", FEATURE_SETS["emi"])


def test_train_cli(lanes, tmp_path, capsys):
    out = tmp_path / "cli.json.gz"
    assert main(["train", *map(str, lanes[:3]), "--out", str(out), "--folds", "2",
                 "--workdir", str(tmp_path / "w")]) == 0
    m = load_model(out)
    assert "emi" in m.sets
    # the packaged model's recipe by default: T&E labels, disc from the localisation error
    assert m.meta["training"]["labels"] == "te"
    out2 = tmp_path / "strict.json.gz"
    assert main(["train", *map(str, lanes[:3]), "--out", str(out2), "--folds", "2",
                 "--workdir", str(tmp_path / "w"), "--labels", "strict", "--radius", "0.1"]) == 0
    m2 = load_model(out2)
    assert m2.meta["training"]["labels"] == "strict"
    assert m2.meta["training"]["neighbourhood_radius"] == 0.1
    capsys.readouterr()
    assert main(["train", *map(str, lanes[:2]), "--out", str(out2), "--radius", "-1"]) == 2
    assert "--radius must be a finite number of metres > 0" in capsys.readouterr().err
    # (train audit, session 34) inf, a --halo below 0 (it had waited for every
    # recording's features), a --workdir that is a file (a raw errno)
    for opt, value, says in (("--radius", "inf", "--radius must be a finite number"),
                             ("--halo", "-1", "--halo must be a finite number"),
                             ("--workdir", str(lanes[0]), "exists and is not a directory")):
        assert main(["train", *map(str, lanes[:2]), "--out", str(out2), opt, value]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert main(["train", "--out", str(out)]) == 2
    assert main(["train", str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["train", "--lines", "-1", "--out", str(out)]) == 2
    assert "--lines" in capsys.readouterr().err
    assert main(["train", "--lines", "1", "--jobs", "0", "--out", str(out)]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_training_scene_mixed_physics_draws_each_model_from_its_own_stream():
    from demine.simulate.scene import Physics

    seen: dict[str, set] = {"emi_decay": set(), "soil_relaxation": set(), "gpr_wavelet": set(),
                            "gpr_refraction": set()}
    for seed in range(40):
        plain, mixed = training_scene(seed, length=2.0), training_scene(
            seed, length=2.0, physics="mixed")
        assert plain.physics == Physics()
        # the same lane, only simulated with other forward models
        assert (mixed.objects, mixed.soil, mixed.sweep) == (plain.objects, plain.soil,
                                                             plain.sweep)
        assert mixed == training_scene(seed, length=2.0, physics="mixed")
        ph = mixed.physics
        for name in seen:
            seen[name].add(getattr(ph, name))
        if ph.soil_relaxation == "band-limited":
            assert 3e-8 <= ph.soil_tau_min <= 1e-6 and 3e-4 <= ph.soil_tau_max <= 1e-2
        else:
            assert (ph.soil_tau_min, ph.soil_tau_max) == (Physics().soil_tau_min,
                                                          Physics().soil_tau_max)
    alt = Physics.alternative()
    for name, values in seen.items():
        assert values == {getattr(Physics(), name), getattr(alt, name)}, name
    with pytest.raises(ConfigError, match="training physics"):
        training_scene(1, physics="alternative")


def test_training_scene_lines_pattern_keeps_the_layout_and_draws_the_survey():
    spacings, speeds = [], []
    for seed in range(30):
        swept, carted = training_scene(seed, length=2.0), training_scene(
            seed, length=2.0, pattern="lines")
        assert swept.sweep.pattern == "sweep" and carted.sweep.pattern == "lines"
        # the same objects, soil, coil height and physics, only surveyed otherwise
        assert (carted.objects, carted.soil, carted.physics) == (swept.objects, swept.soil,
                                                                 swept.physics)
        assert carted.sweep.height == swept.sweep.height
        assert carted.name == f"training-{seed}-lines" and swept.name == f"training-{seed}"
        assert carted == training_scene(seed, length=2.0, pattern="lines")
        mixed = training_scene(seed, length=2.0, physics="mixed", pattern="lines")
        assert mixed.sweep == carted.sweep and mixed.objects == carted.objects
        spacings.append(carted.sweep.line_spacing)
        speeds.append(carted.sweep.speed)
    assert 0.15 <= min(spacings) and max(spacings) <= 0.3 and np.ptp(spacings) > 0.08
    assert 0.3 <= min(speeds) and max(speeds) <= 0.8 and np.ptp(speeds) > 0.2
    with pytest.raises(ConfigError, match="survey pattern"):
        training_scene(1, pattern="zigzag")


def test_make_training_lane_in_lines(tmp_path):
    from demine.recording import Recording
    from demine.simulate import simulate_lane
    from demine.simulate.trajectory import Trajectory

    path = make_training_lane(3, tmp_path / "l.h5", seed=3, length=2.0, streams=("emi", "gps"),
                              pattern="lines")
    with Recording(path) as rec:
        # the scene names its pattern; the lane id is the layout's (one CV group)
        assert rec.attrs["scene"] == "training-3-lines"
        assert rec.attrs["lane_id"] == "training-3"
    sc = training_scene(3, length=2.0, pattern="lines")
    e = simulate_lane(sc, seed=3, streams=("emi",)).emi
    # the coil runs along straight lines: x stays on the lines' positions
    lines_x = Trajectory(sc).lines_x
    assert len(lines_x) >= 3
    moving = np.abs(np.gradient(e["y"])) > 0
    near = np.abs(e["x"][moving][:, None] - lines_x[None, :]).min(axis=1)
    assert np.median(near) < 0.02 and np.ptp(e["x"]) > 0.5 * np.ptp(lines_x)


def test_simulate_training_lanes_in_processes_equals_one_by_one_and_resumes(tmp_path):
    from demine.recording import Recording

    plan = training_lanes(3, 0, "both", lines=1)  # two short lanes in lines
    kw = {"length": 1.5, "streams": ("emi", "gps")}
    seen: list[str] = []
    one = simulate_training_lanes(tmp_path / "one", plan, **kw)
    two = simulate_training_lanes(tmp_path / "two", plan, jobs=2, progress=seen.append, **kw)
    assert [p.name for p in one] == [p.name for p in two] == [f"{s}.h5" for _, _, s, _ in plan]
    assert seen == [f"simulated lane {k}/2: {p}" for k, p in enumerate(two, 1)]
    for a, b in zip(one, two, strict=True):
        with Recording(a) as ra, Recording(b) as rb:
            np.testing.assert_array_equal(ra.streams["emi"].samples, rb.streams["emi"].samples)
            np.testing.assert_array_equal(ra.alarms["x"], rb.alarms["x"])
            assert ra.attrs["lane_id"] == rb.attrs["lane_id"] == "training-3"
    # no partial file left; a lane already there is reused, not simulated again
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in two)
    stamp = [p.stat().st_mtime_ns for p in two]
    again = simulate_training_lanes(tmp_path / "two", plan, jobs=2, **kw)
    assert again == two and [p.stat().st_mtime_ns for p in two] == stamp
    with pytest.raises(ConfigError, match="jobs"):
        simulate_training_lanes(tmp_path, plan, jobs=0)


def test_training_lanes_say_which_detectors_found_their_alarms(tmp_path):
    """A lane kept in a training workdir holds the alarms of the detectors it
    was simulated with; after a detector change a model was trained on the old
    alarms unless one remembered --redetect.  Lanes now record the detectors'
    fingerprint and the training script refuses stale ones."""
    import subprocess
    import sys

    import h5py

    from demine.classify import FINGERPRINT_ATTR, detector_fingerprint, stale_training_lanes

    plan = training_lanes(3, 0, "both", lines=1)
    lanes = simulate_training_lanes(tmp_path / "w", plan, length=1.5, streams=("emi", "gps"))
    assert stale_training_lanes(lanes) == []
    other = {"emi": {"detector": {"threshold": 9.0}}}
    assert stale_training_lanes(lanes, other) == lanes
    with h5py.File(lanes[1], "r+") as f:
        assert f.attrs[FINGERPRINT_ATTR] == detector_fingerprint()
        f.attrs[FINGERPRINT_ATTR] = "0" * 64  # (found by another detector)
    with h5py.File(lanes[0], "r+") as f:
        del f.attrs[FINGERPRINT_ATTR]  # (a lane made before lanes said)
    assert stale_training_lanes(lanes) == lanes
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_default_model.py"
    proc = subprocess.run([sys.executable, str(script), "--lanes", "0", "--lines", "1",
                           "--first-layout", "3", "--workdir", str(tmp_path / "w"),
                           "--out", str(tmp_path / "m.json.gz")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "2 of the 2 lanes" in proc.stderr and "--redetect emi,gpr" in proc.stderr
    assert not (tmp_path / "m.json.gz").exists()
    # (review) a misspelt kind had passed the check, redetecting nothing
    typo = subprocess.run([*proc.args, "--redetect", "emj"], capture_output=True, text=True,
                          timeout=600)
    assert typo.returncode == 2 and "--redetect takes emi and gpr, not emj" in typo.stderr
    part = subprocess.run([*proc.args, "--redetect", "emi"], capture_output=True, text=True,
                          timeout=600)
    assert "2 lanes hold other detectors' alarms: today's find the emi alarms again; their " \
        "gpr alarms are kept as found" in part.stdout, (part.stdout, part.stderr)


def test_training_lanes_plan():
    assert training_lanes(1000, 2) == [(1000, "default", "train-1000", "sweep"),
                                       (1001, "default", "train-1001", "sweep")]
    assert training_lanes(7, 1, "mixed") == [(7, "mixed", "train-7-mixed", "sweep")]
    # both: every layout once with each physics, so no file name is used twice
    both = training_lanes(7, 3, "both")
    assert [(s, p) for s, p, *_ in both] == [(7, "default"), (7, "mixed"), (8, "default"),
                                             (8, "mixed"), (9, "default"), (9, "mixed")]
    assert len({stem for _, _, stem, _ in both}) == 6
    # layouts in lines come after the swept ones, with seeds of their own
    plan = training_lanes(7, 2, "both", lines=2)
    assert plan[:4] == training_lanes(7, 2, "both")
    assert plan[4:] == [(9, "default", "train-9-lines", "lines"),
                        (9, "mixed", "train-9-lines-mixed", "lines"),
                        (10, "default", "train-10-lines", "lines"),
                        (10, "mixed", "train-10-lines-mixed", "lines")]
    assert training_lanes(7, 0, lines=1) == [(7, "default", "train-7-lines", "lines")]
    with pytest.raises(ConfigError, match="training physics"):
        training_lanes(7, 1, "alternative")
    with pytest.raises(ConfigError, match="training layouts"):
        training_lanes(7, 1, lines=-1)
    # demine train spells the plans out (importing classify would slow every command)
    from demine.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    physics = next(a for a in sub.choices["train"]._actions if a.dest == "physics")
    assert tuple(physics.choices) == TRAINING_PLANS and physics.default == "both"


def test_default_model_matches_features():
    m = load_default_model()
    for name, sm in m.sets.items():
        assert m.check_features(name, FEATURE_SETS[name]) is sm
    assert {"emi", "emi+gpr", "gpr", "gpr+emi"} <= set(m.sets)
    assert m.meta["training"]["lanes"] >= 10


def test_evaluate_cli_with_model(trained, lanes, tmp_path, capsys):
    _, model = trained
    path = save_model(model, tmp_path / "m.json.gz")
    capsys.readouterr()
    assert main(["evaluate", *map(str, lanes), "--model", str(path), "--alarm-stream", "emi",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "fa_rejected_at_full_recovery" in d and d["n_alarms"] > 0
    assert main(["evaluate", str(lanes[0]), "--model", str(tmp_path / "nope.json")]) == 2


def test_one_file_given_twice_is_trained_on_once(lanes, tmp_path):
    """Two spellings of one path and a hard link to it: one recording (it had
    been counted, and fitted, three times; train audit, session 34)."""
    import os

    link = tmp_path / "again.h5"
    os.link(lanes[0], link)
    said: list[str] = []
    twice = build_training_set([lanes[0], lanes[1], str(lanes[0].parent / "." / lanes[0].name),
                                link], cache=tmp_path / "c", progress=said.append)
    once = build_training_set([lanes[0], lanes[1]], cache=tmp_path / "c")
    assert twice.summary() == once.summary()
    for k in once.y:
        np.testing.assert_array_equal(twice.y[k], once.y[k])
    assert sum("given before (the same file), skipped" in s for s in said) == 2


def test_training_without_any_truth_or_with_one_lane_of_a_set_says_which(lanes, tmp_path):
    """(train audit, session 34) Recordings none of which has truth: said as
    such (it had been "no training alarms of any feature set" after a garbled
    progress line); a feature set with one lane names the set."""
    import h5py

    bare = tmp_path / "bare.h5"
    bare.write_bytes(lanes[0].read_bytes())
    with h5py.File(bare, "r+") as f:
        del f["truth"]
    with pytest.raises(ConfigError, match="none of the recordings given has ground truth"):
        build_training_set([bare], cache=tmp_path / "c")
    ts = build_training_set(lanes[:2], cache=tmp_path / "c")
    ts.groups["emi"][:] = ts.groups["emi"][0]   # (as if its alarms were of one lane)
    with pytest.raises(ConfigError, match=r"feature set 'emi' \(its alarms from .*\): "
                                          "grouped cross-validation needs at least 2 lanes"):
        train_model(ts, n_splits=2, estimator_kw=SMALL)


def test_a_lane_whose_truth_has_targets_without_a_position_is_left_out(lanes, tmp_path):
    """An alarm on a target without a position cannot be labelled: the lane
    is left out, and said so (its alarms on such targets had been labelled
    clutter in silence; train audit, session 34)."""
    import h5py

    bad = tmp_path / "unplaced.h5"
    bad.write_bytes(lanes[1].read_bytes())
    with h5py.File(bad, "r+") as f:
        x = f["truth"]["x"]
        v = x[...]
        v[0] = np.nan
        x[...] = v
    said: list[str] = []
    ts = build_training_set([lanes[0], bad, lanes[2]], cache=tmp_path / "c",
                            progress=said.append)
    assert ts.summary()["recordings"] == 2
    assert any("1 target(s) of its truth without a position" in s for s in said), said
