"""Neighbourhood (investigation-disc) features, T&E labels, detection cache, model radius."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.classify import (
    Model,
    _redetected,
    apply_model,
    build_training_set,
    detector_fingerprint,
    label_alarms,
    load_model,
    make_training_lane,
    save_model,
    simulated_detect_config,
    train_model,
)
from demine.errors import ConfigError, ModelError
from demine.features import (
    BASE_FEATURE_SETS,
    FEATURE_SETS,
    NEIGHBOUR_RADIUS,
    AlarmFeatures,
    neighbourhood_features,
)
from demine.recording import Recording

SMALL = {"min_samples_leaf": 2, "max_iter": 20, "max_leaf_nodes": 4}


def _reference(af: AlarmFeatures, radius: float) -> dict[str, np.ndarray]:
    """Plain-loop twin of the neighbourhood columns (one alarm, one neighbour at a time)."""
    strength = {"emi": "emi_snr_log", "gpr": "gpr_det_score"}
    body = {"emi+gpr": "fus_gpr_body_pos_log", "gpr": "gpr_body_pos_log",
            "gpr+emi": "gpr_body_pos_log"}
    x, y = af.alarms["x"], af.alarms["y"]
    kinds = {n.split("+")[0]: n for n in af.sets}
    out = {}
    for name, (rows, X) in af.sets.items():
        cols = BASE_FEATURE_SETS[name]
        kind = name.split("+")[0]
        res = []
        for k, i in enumerate(rows):
            f = {"nb_own_n": 0.0}
            best, bbest = None, None
            for k2, j in enumerate(rows):
                if k2 == k or math.hypot(x[j] - x[i], y[j] - y[i]) > radius:
                    continue
                f["nb_own_n"] += 1
                s = X[k2, cols.index(strength[kind])]
                best = s if best is None or s > best else best
                if name in body:
                    b = X[k2, cols.index(body[name])]
                    bbest = b if bbest is None or b > bbest else bbest
            f["nb_own_gain"] = -5.0 if best is None else best - X[k, cols.index(strength[kind])]
            if name in body:
                f["nb_own_body_pos"] = -5.0 if bbest is None else bbest
            if "+" in name:
                other = kinds.get("gpr" if kind == "emi" else "emi")
                f.update(nb_oth_n=0.0, nb_oth_strength=-5.0, nb_oth_body_pos=-5.0,
                         nb_oth_dist=2 * radius)
                if other is not None:
                    orows, oX = af.sets[other]
                    ocols = BASE_FEATURE_SETS[other]
                    for k2, j in enumerate(orows):
                        d = math.hypot(x[j] - x[i], y[j] - y[i])
                        if d > radius:
                            continue
                        f["nb_oth_n"] += 1
                        f["nb_oth_strength"] = max(f["nb_oth_strength"],
                                                   oX[k2, ocols.index(strength[other[:3]])])
                        if other in body:
                            f["nb_oth_body_pos"] = max(f["nb_oth_body_pos"],
                                                       oX[k2, ocols.index(body[other])])
                        f["nb_oth_dist"] = min(f["nb_oth_dist"], d)
            extra = FEATURE_SETS[name][len(cols):]
            res.append([f[c] for c in extra])
        out[name] = np.array(res, dtype=np.float64).reshape(rows.size, -1)
    return out


def _features(rng: np.random.Generator, n_emi: int, n_gpr: int) -> AlarmFeatures:
    n = n_emi + n_gpr
    alarms = {"x": rng.uniform(0, 1.0, n), "y": rng.uniform(0, 1.0, n)}
    sets = {}
    if n_emi:
        sets["emi+gpr"] = (np.arange(n_emi), rng.normal(size=(n_emi,
                                                              len(BASE_FEATURE_SETS["emi+gpr"]))))
    if n_gpr:
        sets["gpr+emi"] = (np.arange(n_emi, n), rng.normal(size=(n_gpr,
                                                                 len(BASE_FEATURE_SETS["gpr+emi"]))))
    return AlarmFeatures(alarms=alarms, sets=sets, sensors=frozenset({"emi", "gpr"}))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 12), st.integers(0, 12),
       st.floats(0.05, 0.6))
def test_neighbourhood_matches_plain_loop(seed, n_emi, n_gpr, radius):
    af = _features(np.random.default_rng(seed), n_emi, n_gpr)
    out = neighbourhood_features(af, radius)
    ref = _reference(af, radius)
    assert out.radius == radius
    for name, (rows, X) in out.sets.items():
        nb = len(BASE_FEATURE_SETS[name])
        assert X.shape == (rows.size, len(FEATURE_SETS[name]))
        np.testing.assert_array_equal(X[:, :nb], af.sets[name][1])  # base columns untouched
        np.testing.assert_allclose(X[:, nb:], ref[name], rtol=0, atol=1e-12)
    # recomputing from the extended matrices (another radius, then back) is the same
    again = neighbourhood_features(neighbourhood_features(out, radius * 2), radius)
    for name in out.sets:
        np.testing.assert_array_equal(again.sets[name][1], out.sets[name][1])


def test_neighbourhood_of_a_chance_hit():
    """An EMI alarm on a cartridge 0.2 m from a GPR alarm on a plastic body sees that body."""
    cols_e, cols_g = BASE_FEATURE_SETS["emi+gpr"], BASE_FEATURE_SETS["gpr+emi"]
    Xe = np.zeros((2, len(cols_e)))
    Xe[:, cols_e.index("emi_snr_log")] = [2.0, 3.0]
    Xg = np.zeros((1, len(cols_g)))
    Xg[0, cols_g.index("gpr_det_score")] = 1.5
    Xg[0, cols_g.index("gpr_body_pos_log")] = 2.2
    af = AlarmFeatures(alarms={"x": np.array([0.0, 3.0, 0.2]), "y": np.zeros(3)},
                       sets={"emi+gpr": (np.array([0, 1]), Xe), "gpr+emi": (np.array([2]), Xg)},
                       sensors=frozenset({"emi", "gpr"}))
    out = neighbourhood_features(af, 0.25)
    nb = dict(zip(FEATURE_SETS["emi+gpr"], out.sets["emi+gpr"][1][0], strict=True))
    assert nb["nb_oth_n"] == 1 and nb["nb_oth_body_pos"] == 2.2
    assert nb["nb_oth_strength"] == 1.5 and nb["nb_oth_dist"] == pytest.approx(0.2)
    assert nb["nb_own_n"] == 0 and nb["nb_own_gain"] == -5.0
    far = dict(zip(FEATURE_SETS["emi+gpr"], out.sets["emi+gpr"][1][1], strict=True))
    assert far["nb_oth_n"] == 0 and far["nb_oth_dist"] == 0.5
    # a smaller disc no longer reaches the radar alarm
    small = neighbourhood_features(af, 0.15).sets["emi+gpr"][1][0]
    assert small[FEATURE_SETS["emi+gpr"].index("nb_oth_n")] == 0


def test_neighbourhood_refuses_bad_input():
    af = _features(np.random.default_rng(0), 3, 2)
    with pytest.raises(ConfigError, match="radius"):
        neighbourhood_features(af, 0.0)
    bad = AlarmFeatures(alarms=af.alarms, sets={"emi+gpr": (np.arange(3), np.zeros((3, 4)))})
    with pytest.raises(ConfigError, match="columns"):
        neighbourhood_features(bad, 0.25)


def test_te_labels_count_duplicates_as_clutter():
    truth = {"x": np.array([0.0, 0.2, 2.0]), "y": np.zeros(3), "is_mine": np.array([1, 0, 0]),
             "type": np.array([b"ap-mine", b"cartridge", b"nail"])}
    # an alarm on the mine, one on the cartridge 0.2 m away (a duplicate within the halo),
    # one on the nail
    alarms = {"x": np.array([0.01, 0.2, 2.0]), "y": np.zeros(3), "score": np.ones(3)}
    assert label_alarms(truth, alarms, np.arange(3)).tolist() == [1, -1, 0]
    assert label_alarms(truth, alarms, np.arange(3), te=True).tolist() == [1, 0, 0]
    # a chance hit (the only alarm near the mine sits on the cartridge) is a mine for T&E
    one = {k: v[1:] for k, v in alarms.items()}
    assert label_alarms(truth, one, np.arange(2), te=True).tolist() == [1, 0]
    assert label_alarms(truth, one, np.arange(2), te=True, strict=True).tolist() == [1, 0]


def test_detector_fingerprint_follows_the_config():
    a = detector_fingerprint()
    assert a == detector_fingerprint({})
    assert a != detector_fingerprint({"gpr": {"detector": {"antenna_height": 0.05}}})
    assert len(a) == 64


@pytest.fixture(scope="module")
def lanes(tmp_path_factory):
    d = tmp_path_factory.mktemp("nblanes")
    return [make_training_lane(s, d / f"lane{s}.h5", seed=s, length=2.0,
                               streams=("emi", "gps")) for s in range(3)]


def test_redetection_is_cached_by_fingerprint(lanes, tmp_path):
    path = lanes[0]
    cache = tmp_path / "cache"
    with Recording(path) as rec:
        first = _redetected(rec, path, ("emi",), None, cache)
        files = sorted(cache.glob("*-alarms-*.npz"))
        assert len(files) == 1
        # the cached table is what a second call returns (no detection run: a marker
        # written into the cache comes back)
        with np.load(files[0]) as z:
            arrs = {k: z[k] for k in z.files}
        arrs["score"] = arrs["score"] + 1000.0
        np.savez(files[0], **arrs)
        second = _redetected(rec, path, ("emi",), None, cache)
        emi = np.array([str(s) == "emi" for s in second["stream"]])
        assert emi.any()
        np.testing.assert_allclose(np.sort(second["score"][emi]),
                                   np.sort(first["score"][emi] + 1000.0))
        # another detector configuration is another cache entry
        _redetected(rec, path, ("emi",), {"emi": {"detector": {"min_passes": 3}}}, cache)
        assert len(sorted(cache.glob("*-alarms-*.npz"))) == 2
        # a lane whose calibration is complete needs no configuration
        assert simulated_detect_config(path, rec) is None


def test_te_model_keeps_its_radius(lanes, tmp_path):
    ts = build_training_set(lanes, cache=tmp_path / "c", te=True, radius=0.3)
    assert ts.summary()["labels"] == "te" and ts.summary()["neighbourhood_radius"] == 0.3
    assert not (ts.y["emi"] < 0).any()  # T&E labels leave nothing out
    model = train_model(ts, n_splits=3, estimator_kw=SMALL)
    path = save_model(model, tmp_path / "m.json.gz")
    back = load_model(path)
    assert back.radius == 0.3
    out = apply_model(lanes[0], back)
    emi = np.array([str(s) == "emi" for s in out["stream"]])
    assert np.all(np.isfinite(out["p_mine"][emi]))
    # features computed with another disc are recomputed with the model's
    from demine.features import alarm_features

    af = alarm_features(lanes[0], radius=NEIGHBOUR_RADIUS)
    np.testing.assert_allclose(apply_model(af, back)["p_mine"], out["p_mine"])
    bad = Model(back.sets, {**back.meta, "neighbourhood_radius": -1})
    with pytest.raises(ModelError, match="neighbourhood_radius"):
        apply_model(af, bad)


def test_localisation_radius_from_hits_on_the_mine():
    from demine.classify import localisation_radius

    rng = np.random.default_rng(3)
    n = 40
    truth = {"x": np.arange(n) * 2.0, "y": np.zeros(n), "is_mine": np.ones(n, dtype=bool),
             "type": np.array(["ap-mine"] * n)}
    # EMI alarms 0-0.05 m off their mine, GPR alarms 0-0.1 m off
    de, dg = rng.uniform(0, 0.05, n), rng.uniform(0, 0.1, n)
    alarms = {"x": np.concatenate([truth["x"] + de, truth["x"] + dg]),
              "y": np.zeros(2 * n), "score": np.ones(2 * n)}
    af = AlarmFeatures(alarms=alarms, sets={
        "emi+gpr": (np.arange(n), np.zeros((n, len(BASE_FEATURE_SETS["emi+gpr"])))),
        "gpr+emi": (np.arange(n, 2 * n), np.zeros((n, len(BASE_FEATURE_SETS["gpr+emi"]))))})
    r, errs = localisation_radius([(af, truth)])
    assert errs["emi"] == pytest.approx(np.percentile(de, 95))
    assert errs["gpr"] == pytest.approx(np.percentile(dg, 95))
    assert r == pytest.approx(math.hypot(errs["emi"], errs["gpr"]))
    # too few hits: the default radius
    few = AlarmFeatures(alarms=alarms, sets={"emi+gpr": (np.arange(3), af.sets["emi+gpr"][1][:3])})
    r2, errs2 = localisation_radius([(few, truth)])
    assert errs2["emi"] == NEIGHBOUR_RADIUS and r2 == NEIGHBOUR_RADIUS


def test_old_simulated_lane_gets_its_scenes_antenna_height(tmp_path):
    """A radar stream recorded without antenna_height: the scene's sweep height is given."""
    from demine.classify import training_scene
    from demine.recording import RecordingWriter

    def lane(name, scene, calibration):
        path = tmp_path / name
        with RecordingWriter(path, attrs={"simulated": True, "scene": scene}) as w:
            s = w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=3e-11,
                             calibration=calibration)
            s.append(np.zeros((3, 64), np.int16), time=np.arange(3, dtype=np.int64))
        return path

    old = lane("old.h5", "training-7", {"time_zero": 2e-9})
    with Recording(old) as rec:
        cfg = simulated_detect_config(old, rec)
    assert cfg == {"gpr": {"detector": {"antenna_height": training_scene(7).sweep.height}}}
    carted = lane("old-lines.h5", "training-9-lines", {"time_zero": 2e-9})
    with Recording(carted) as rec:
        cfg = simulated_detect_config(carted, rec)
    assert cfg == {"gpr": {"detector": {"antenna_height": training_scene(
        9, pattern="lines").sweep.height}}}
    shipped = lane("ship.h5", "battle-area", {"time_zero": 2e-9})
    with Recording(shipped) as rec:
        from demine.simulate.scene import load_scene

        assert simulated_detect_config(shipped, rec)["gpr"]["detector"]["antenna_height"] == (
            load_scene("battle-area").sweep.height)
    for name, scene, cal in (("new.h5", "training-7", {"time_zero": 2e-9,
                                                      "antenna_height": 0.05}),
                             ("unknown.h5", "no-such-scene", {"time_zero": 2e-9}),
                             ("odd.h5", "training-7-zigzag", {"time_zero": 2e-9})):
        p = lane(name, scene, cal)
        with Recording(p) as rec:
            assert simulated_detect_config(p, rec) is None
