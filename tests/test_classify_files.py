"""Model files an adversary crafted, and training's cross-validation groups.

Every crafted file is *re-signed* (its SHA-256 recomputed, as anyone can), so
it reaches the checks behind the checksum; each must be refused with a
:class:`ModelError` that names the file, quickly and in little memory.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from demine import classify
from demine.classify import (
    Model,
    TrainingSet,
    apply_model,
    grouped_splits,
    lane_group,
    load_model,
    model_differences,
    save_model,
    train_model,
)
from demine.cli import main
from demine.errors import ConfigError, ModelError
from demine.features import FEATURE_SETS, FEATURES_VERSION

SMALL = {"min_samples_leaf": 2, "max_iter": 8, "max_leaf_nodes": 4}
_make_estimator = classify.make_estimator
NF = len(FEATURE_SETS["emi"])


def _training(lanes: dict[str, str], per_lane: int = 30, seed: int = 0) -> TrainingSet:
    """A synthetic EMI training set: ``lanes`` maps each lane group to its site.

    Column 0 holds the lane's index and column 1 its site's, so an estimator
    can tell which lanes and sites it is given.
    """
    rng = np.random.default_rng(seed)
    ts = TrainingSet()
    sites = sorted(set(lanes.values()))
    for k, (group, site) in enumerate(lanes.items()):
        X = rng.normal(size=(per_lane, NF))
        X[:, 0] = k
        X[:, 1] = sites.index(site)
        y = (rng.random(per_lane) < 0.4).astype(np.int8)
        y[:2] = [0, 1]
        X[:, 2] += 2.0 * y  # something to learn
        ts.add("emi", X, y, group, site)
        ts.lanes.append(group)
        ts.recordings.append(f"{group}.h5")
    return ts


@pytest.fixture(scope="module")
def model() -> Model:
    lanes = {f"site/lane{k}": "site" for k in range(4)}
    return train_model(_training(lanes), n_splits=4, estimator_kw=SMALL)


def _signed(payload: dict, **outer) -> bytes:
    """A model file with a checksum that matches its (crafted) payload."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    doc = {"format": "demine-classifier", "format_version": 1,
           "sha256": hashlib.sha256(body).hexdigest(), "payload": payload, **outer}
    return json.dumps(doc).encode()


def _crafted(model: Model, edit) -> dict:
    p = copy.deepcopy(model.to_payload())
    edit(p)
    return p


def _leaf() -> dict:
    return {"feature": [0], "threshold": [0.0], "missing_left": [0], "left": [0],
            "right": [0], "is_leaf": [1], "value": [0.0]}


def _chain(depth: int) -> dict:
    """A tree ``depth`` levels deep: inner node 2i goes left to 2i+2, right to leaf 2i+1."""
    n = 2 * depth + 1
    left, right, leaf = [0] * n, [0] * n, [1] * n
    for i in range(depth):
        leaf[2 * i], left[2 * i], right[2 * i] = 0, 2 * i + 2, 2 * i + 1
    return {"feature": [0] * n, "threshold": [1e300] * n, "missing_left": [1] * n,
            "left": left, "right": right, "is_leaf": leaf, "value": [0.0] * n}


def _tree0(p: dict) -> dict:
    return p["sets"]["emi"]["trees"][0]


def _set_tree0(p: dict, tree: dict) -> None:
    p["sets"]["emi"]["trees"][0] = tree


CRAFTED = {
    # numbers Python parses but no float holds (OverflowError before)
    "huge-int-baseline": (lambda p: p["sets"]["emi"].__setitem__("baseline", 10**400),
                          "baseline: must be a finite number"),
    "huge-int-leaf": (lambda p: _tree0(p)["value"].__setitem__(0, 10**400),
                      "value: must be finite numbers"),
    # finite leaves that add up past the largest float: scores inf, p_mine 1 (or NaN)
    "overflowing-leaves": (lambda p: [t["value"].__setitem__(slice(None), [1e308] * len(
        t["value"])) for t in p["sets"]["emi"]["trees"]], "scores overflow"),
    # flags must be 0 or 1, not any number
    "leaf-flag-2": (lambda p: _tree0(p)["is_leaf"].__setitem__(0, 2), "is_leaf: must be 0 or 1"),
    # two inner nodes sharing a child: not a tree (its levels would double at each step)
    "shared-child": (lambda p: _set_tree0(p, {
        "feature": [0, 0, 0, 0], "threshold": [0.0] * 4, "missing_left": [0] * 4,
        "left": [1, 3, 0, 0], "right": [2, 3, 0, 0], "is_leaf": [0, 0, 1, 1],
        "value": [0.0] * 4}), "not a tree"),
    # a million one-node trees took 6 min and 2.6 GB to load; a long chain 30 s a prediction
    # (the limits: 10 000 trees, 100 000 levels in all)
    "too-many-trees": (lambda p: p["sets"]["emi"].__setitem__("trees", [_leaf()] * 10_001),
                       "trees a model may have"),
    "too-deep": (lambda p: _set_tree0(p, _chain(100_001)), "deeper than"),
    # radius checked at load, naming the file (before: at first use, without it)
    "radius-negative": (lambda p: p["meta"].__setitem__("neighbourhood_radius", -1.0),
                        "neighbourhood_radius"),
    "radius-text": (lambda p: p["meta"].__setitem__("neighbourhood_radius", "0.2"),
                    "neighbourhood_radius"),
    "radius-huge-int": (lambda p: p["meta"].__setitem__("neighbourhood_radius", 10**400),
                        "neighbourhood_radius"),
    # (from the session-28 model-file audit)
    # a decreasing calibration map had loaded: every alarm's rank inverted
    "decreasing-map": (lambda p: p["sets"]["emi"].__setitem__(
        "iso_y", [1.0 - v for v in p["sets"]["emi"]["iso_y"]]), "non-decreasing x and y"),
    # sets of look-alike names had loaded and failed after the features were computed
    "no-known-set": (lambda p: p.__setitem__("sets", {
        "\uff45\uff4d\uff49": p["sets"]["emi"]}),
        r"no feature set this demine computes \(it has \['\\\\uff45\\\\uff4d\\\\uff49'\]"),
    # a name given twice made the mismatch check quadratic (from review: 48 000
    # names, 18 s)
    "duplicate-feature": (lambda p: p["sets"]["emi"]["features"].append(
        p["sets"]["emi"]["features"][0]), "names a feature twice"),
    "too-many-sets": (lambda p: p.__setitem__("sets", {
        **p["sets"], **{f"x{k}": p["sets"]["emi"] for k in range(64)}}),
        "more than the 64 a model may have"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_payload_is_refused_naming_the_file(model, tmp_path, case):
    edit, problem = CRAFTED[case]
    path = tmp_path / f"{case}.json"
    path.write_bytes(_signed(_crafted(model, edit)))
    with pytest.raises(ModelError, match=problem) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_crafted_file_layers_are_refused_naming_the_file(model, tmp_path):
    good = save_model(model, tmp_path / "good.json.gz").read_bytes()
    raw = gzip.decompress(good)
    payload = model.to_payload()
    cases = {
        # a flipped bit inside the deflate stream: zlib.error before, not a ModelError
        "deflate.json.gz": (good[:10] + bytes([good[10] ^ 0x55]) + good[11:],
                            "corrupt compressed"),
        # a gzip bomb: 20 MB of blanks in a 20 kB file (read up to 256 MB before)
        "bomb.json.gz": (gzip.compress(raw[:-1] + b" " * (20 * 2**20) + raw[-1:]),
                         "expands beyond"),
        # a key given twice: other JSON readers show the first value, Python used the last
        "dupkey.json": (raw[:-1] + b',"format_version":1}', "given twice"),
        # true == 1 in Python
        "version-true.json": (_signed(payload, format_version=True), "format version"),
        "version-text.json": (_signed(payload, format_version="1"), "format version"),
    }
    for name, (data, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelError, match=problem) as err:
            load_model(path)
        assert str(path) in str(err.value), name


def test_newer_format_version_says_who_wrote_it(model, tmp_path):
    p = copy.deepcopy(model.to_payload())
    p["meta"]["software_version"] = "9.1.0"
    path = tmp_path / "newer.json"
    path.write_bytes(_signed(p, format_version=2))
    with pytest.raises(ModelError, match="version 2 is not supported") as err:
        load_model(path)
    assert "demine 9.1.0" in str(err.value) and "newer demine" in str(err.value)


def test_mismatched_model_is_refused_before_any_feature_is_computed(model, tmp_path,
                                                                    monkeypatch):
    def never(*a, **k):
        raise AssertionError("features computed for a model that does not match")

    monkeypatch.setattr(classify, "alarm_features", never)
    # a feature list of a newer demine
    p = copy.deepcopy(model.to_payload())
    p["sets"]["emi"]["features"] = p["sets"]["emi"]["features"] + ["emi_from_the_future"]
    p["meta"]["software_version"] = "9.1.0"
    path = tmp_path / "newer.json"
    path.write_bytes(_signed(p))
    with pytest.raises(ModelError, match="do not match") as err:
        apply_model(tmp_path / "lane.h5", path)
    msg = str(err.value)
    assert str(path) in msg and "demine 9.1.0" in msg and "emi_from_the_future" in msg
    # the same names, defined otherwise (an older features version)
    p = copy.deepcopy(model.to_payload())
    p["meta"]["features_version"] = FEATURES_VERSION - 1
    path = tmp_path / "older.json"
    path.write_bytes(_signed(p))
    with pytest.raises(ModelError, match=f"features version {FEATURES_VERSION - 1}") as err:
        apply_model(tmp_path / "lane.h5", path)
    assert str(path) in str(err.value)
    # a version written as text is refused saying so (it read "version 8, this demine
    # computes version 8")
    p["meta"]["features_version"] = str(FEATURES_VERSION)
    path.write_bytes(_signed(p))
    with pytest.raises(ModelError, match=f"features version '{FEATURES_VERSION}', this"):
        load_model(path).check_compatible()
    # a model that does not record it (written before it was recorded) is not refused
    del p["meta"]["features_version"]
    m = Model.from_payload(p, "old")
    assert m.check_features("emi", FEATURE_SETS["emi"]) is m.sets["emi"]


def test_trained_model_records_its_features_version(model, tmp_path):
    assert model.meta["features_version"] == FEATURES_VERSION
    back = load_model(save_model(model, tmp_path / "m.json"))
    assert back.meta["features_version"] == FEATURES_VERSION
    assert back.source == str(tmp_path / "m.json")


def test_save_model_writes_only_what_load_model_reads(model, tmp_path):
    # a model load_model would refuse is not written (before: written, refused on load)
    bad = Model(dict(model.sets), dict(model.meta))
    sm = bad.sets["emi"]
    bad.sets["emi"] = type(sm)(sm.features, sm.baseline, [sm.trees[0]] * 10_001, sm.iso_x,
                               sm.iso_y)
    with pytest.raises(ModelError, match="trees a model may have"):
        save_model(bad, tmp_path / "big.json")
    assert not (tmp_path / "big.json").exists()
    nan = Model({"emi": type(sm)(sm.features, float("nan"), sm.trees, sm.iso_x, sm.iso_y)},
                dict(model.meta))
    with pytest.raises(ModelError, match=str(tmp_path / "nan.json")):
        save_model(nan, tmp_path / "nan.json")
    # an unwritable place: the model's path in the error, not a temporary file's
    with pytest.raises(ModelError, match="cannot write model file") as err:
        save_model(model, tmp_path / "missing" / "m.json")
    assert ".tmp" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    # over a directory: refused, and no temporary file left beside it (one was, before)
    (tmp_path / "adir").mkdir()
    with pytest.raises(ModelError, match="cannot write model file"):
        save_model(model, tmp_path / "adir")
    assert [q.name for q in tmp_path.iterdir()] == ["adir"]


# --------------------------------------------------------------------------
# Cross-validation groups in training itself
# --------------------------------------------------------------------------


class _Spy:
    """An estimator that records the lanes and sites (columns 0, 1) it is fitted on and
    asked about."""

    log: list[tuple[str, set, set]] = []

    def __init__(self, **kw):
        self.est = _make_estimator(**kw)

    def fit(self, X, y):
        self.log.append(("fit", set(X[:, 0].tolist()), set(X[:, 1].tolist())))
        self.est.fit(X, y)
        return self

    def decision_function(self, X):
        self.log.append(("test", set(X[:, 0].tolist()), set(X[:, 1].tolist())))
        return self.est.decision_function(X)

    def __getitem__(self, i):
        return self.est[i]

    @property
    def steps(self):
        return self.est.steps


@pytest.fixture
def spy(monkeypatch):
    monkeypatch.setattr(classify, "make_estimator", _Spy)
    _Spy.log = []
    return _Spy.log


def _folds(log):
    """(training, test) lanes and sites of every cross-validation fold of the log."""
    folds = []
    for a, b in zip(log, log[1:], strict=False):
        if a[0] == "fit" and b[0] == "test":
            folds.append((a, b))
    return folds


def test_training_never_tests_on_a_lane_it_was_fitted_on(spy):
    # two sites with lanes of the same ids: four lanes, not two
    lanes = {"A/L1": "A", "A/L2": "A", "B/L1": "B", "B/L2": "B", "C/L1": "C"}
    train_model(_training(lanes), n_splits=5, estimator_kw=SMALL)
    folds = _folds(spy)
    assert len(folds) == 5  # one fold per lane
    tested = set()
    for (_, fit_lanes, _), (_, test_lanes, _) in folds:
        assert fit_lanes and test_lanes and not fit_lanes & test_lanes
        tested |= test_lanes
    assert tested == set(range(5))  # every lane tested, out of fold
    # and the final model is fitted on every lane
    assert spy[-1][0] == "fit" and spy[-1][1] == set(range(5))


def test_site_grouped_training_never_tests_on_a_site_it_was_fitted_on(spy):
    lanes = {"A/L1": "A", "A/L2": "A", "B/L1": "B", "B/L2": "B", "C/L1": "C", "C/L3": "C"}
    m = train_model(_training(lanes), n_splits=5, estimator_kw=SMALL, cv_groups="site")
    folds = _folds(spy)
    assert len(folds) == 3  # one fold per site
    for (_, _, fit_sites), (_, _, test_sites) in folds:
        assert len(test_sites) == 1 and not fit_sites & test_sites
    assert m.meta["cv_groups"] == "site" and m.sets["emi"].cv["folds"] == 3
    with pytest.raises(ConfigError, match="at least 2 sites"):
        train_model(_training({"A/L1": "A", "A/L2": "A"}), n_splits=2, estimator_kw=SMALL,
                    cv_groups="site")
    with pytest.raises(ConfigError, match="cross-validation groups"):
        train_model(_training(lanes), cv_groups="alarm")


def test_train_cli_offers_the_cv_groups_of_train_model():
    from demine.classify import CV_GROUPS
    from demine.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opt = next(a for a in sub.choices["train"]._actions if a.dest == "cv_groups")
    assert tuple(opt.choices) == CV_GROUPS and opt.default == "lane"


def test_lane_group_keeps_sites_apart():
    class Rec:
        def __init__(self, **attrs):
            self.attrs = attrs

    assert lane_group(Rec(site="A", lane_id="L1"), "f.h5") != lane_group(
        Rec(site="B", lane_id="L1"), "f.h5")
    # one lane of one site recorded twice (two files) is one group
    assert lane_group(Rec(site="A", lane_id="L1"), "day1.h5") == lane_group(
        Rec(site="A", lane_id="L1"), "day2.h5")
    assert lane_group(Rec(site="A"), "day1.h5") == "A/day1.h5"
    # a lane id or site written as an array of strings (as h5py writes a
    # list) is the same lane as the string (it had been "['L1']": its alarms
    # fell on both sides of a fold) and no ValueError for two elements
    assert lane_group(Rec(site=np.array(["A"]), lane_id=np.array([b"L1"])), "f.h5") == \
        lane_group(Rec(site="A", lane_id="L1"), "g.h5") == "A/L1"
    assert lane_group(Rec(lane_id=np.array(["L1", "x"])), "f.h5") == "/L1; x"


def test_folds_are_checked_apart_from_lanes():
    g = np.array(["a", "b", "c"])
    with pytest.raises(ConfigError, match="at least 2 folds, got 1"):
        grouped_splits(g, 1)
    with pytest.raises(ConfigError, match="at least 2 lanes, got 1"):
        grouped_splits(np.array(["a", "a"]), 3)


def test_training_lanes_without_a_trainable_fold(tmp_path):
    # one lane of mines alone, one of clutter alone: no fold can be trained
    ts = TrainingSet()
    rng = np.random.default_rng(1)
    ts.add("emi", rng.normal(size=(10, NF)), np.ones(10, np.int8), "s/a", "s")
    ts.add("emi", rng.normal(size=(10, NF)), np.zeros(10, np.int8), "s/b", "s")
    with pytest.raises(ConfigError, match="no cross-validation fold"):
        train_model(ts, n_splits=2, estimator_kw=SMALL, progress=lambda line: None)
    # the only fold that can be trained holds out a lane without a mine: no
    # mine is scored out of fold, so nothing calibrates p_mine.  (It had
    # trained, its calibration fitted on clutter alone: every p_mine about 0,
    # and "100 % of clutter rejected" claimed; train audit, session 34.)
    ts = _training({"s/a": "s", "s/b": "s"})
    ts.y["emi"][ts.groups["emi"] == "s/b"] = 0
    with pytest.raises(ConfigError, match="no mine alarm was scored out of fold"):
        train_model(ts, n_splits=2, estimator_kw=SMALL, progress=lambda line: None)
    # a fold whose test lane has no mine, beside folds that score mines,
    # leaves that lane's figures out: reported, not a TypeError
    ts = _training({"s/a": "s", "s/b": "s", "s/c": "s"})
    ts.y["emi"][ts.groups["emi"] == "s/b"] = 0
    lines: list[str] = []
    m = train_model(ts, n_splits=3, estimator_kw=SMALL, progress=lines.append)
    assert m.sets["emi"].cv["mines"] > 0 and lines


def test_train_cli_checks_its_output_and_folds_before_training(tmp_path, capsys,
                                                               monkeypatch):
    def never(*a, **k):
        raise AssertionError("trained before the arguments were checked")

    monkeypatch.setattr(classify, "build_training_set", never)
    lane = tmp_path / "lane.h5"
    lane.write_bytes(b"")
    for args, problem in [
        (["--out", str(tmp_path / "missing" / "m.json")], "does not exist"),
        (["--out", str(tmp_path)], "is a directory"),
        (["--out", str(tmp_path / "m.json"), "--folds", "1"], "--folds must be >= 2"),
    ]:
        assert main(["train", str(lane), *args]) == 2
        assert problem in capsys.readouterr().err
    # one lane cannot be cross-validated: said before 20 s of simulation, and why
    monkeypatch.setattr(classify, "simulate_training_lanes", never)
    assert main(["train", "--simulate", "1", "--out", str(tmp_path / "m.json")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "needs at least 2 lanes, and these are all of lane 'simulated/training-1000'" in err
    assert err.endswith("give --simulate 2 or more")
    # and a bad --radius before it too (it had come after the simulation)
    assert main(["train", "--simulate", "2", "--radius", "-1", "--out",
                 str(tmp_path / "m.json")]) == 2
    assert "--radius must be a finite number of metres > 0" in capsys.readouterr().err
    # (train audit, session 34) an --out that is a lane --simulate is about to
    # write (the model had replaced the lane it was trained on), and lanes
    # of other detectors already in --workdir (reused without a word)
    work = tmp_path / "work"
    work.mkdir()
    assert main(["train", "--simulate", "2", "--workdir", str(work), "--out",
                 str(work / "train-1001.h5")]) == 2
    assert "is the simulated lane train-1001.h5 of --workdir" in capsys.readouterr().err
    from demine.recording import RecordingWriter

    with RecordingWriter(work / "train-1000.h5", lane_id="training-1000",
                         site="simulated") as w:   # (no detector fingerprint)
        w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, 4))
    assert main(["train", "--simulate", "2", "--workdir", str(work), "--out",
                 str(tmp_path / "m.json")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "1 of the 1 lanes already in" in err and "the first: train-1000.h5" in err


def test_checksum_is_not_a_signature(model, tmp_path):
    """What the checksum does and does not do (docs/classify.md, Model files)."""
    path = save_model(model, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    doc["payload"]["sets"]["emi"]["baseline"] += 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="modified or corrupted"):
        load_model(path)  # an edit, a truncation, a flipped bit
    # ... but whoever edits the payload can recompute it: the file cannot run code, and
    # loads as the edited model. Its provenance is checked by comparing its digest with
    # one published out of band (Model.digest, the SHA-256 in the file).
    path.write_bytes(_signed(doc["payload"]))
    edited = load_model(path)
    assert edited.sets["emi"].baseline == model.sets["emi"].baseline + 1.0
    original = load_model(save_model(model, tmp_path / "o.json"))
    assert edited.digest != original.digest
    assert original.digest == json.loads((tmp_path / "o.json").read_text())["sha256"]


def test_model_differences_tells_a_rebuilt_model_from_another(model, tmp_path):
    from demine.classify import model_differences

    back = load_model(save_model(model, tmp_path / "m.json"))
    again = Model(back.sets, dict(back.meta, created_utc="2000-01-01T00:00:00Z"))
    assert model_differences(model, back) == [] == model_differences(back, again)
    p = copy.deepcopy(model.to_payload())
    p["sets"]["emi"]["trees"][3]["value"][1] += 1e-12
    p["meta"]["notes"] = "other"
    diff = model_differences(model, Model.from_payload(p))
    assert diff == ["set 'emi': 1 of 8 trees differ (first: tree 3)",
                    "meta 'notes':  != other"]
    # a crafted reference model's strings reach the terminal escaped (train_default_model
    # --check prints these lines: raw escapes could rewrite them into "reproduces")
    p["meta"]["notes"] = "\x1b[2K\r\x1b[1A reproduces the reference"
    p["sets"]["emi"]["cv"] = {"\x1b[31mauc": 0.5}
    diff = model_differences(model, Model.from_payload(p))
    assert len(diff) == 3 and not any("\x1b" in d or "\r" in d for d in diff)
    assert "\\x1b[2K" in diff[-1]
    # == is identity (it raised on the arrays' truth value); contents: model_differences
    assert model == model and back != model and back != again


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                    reason="needs /dev/zero and named pipes")
def test_device_or_pipe_given_as_model_is_refused_not_read_for_ever(tmp_path):
    # in a child with 1 GB of address space and a time limit: before, /dev/zero was read
    # until memory ran out and a named pipe blocked for ever
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
            "from demine.classify import load_model\n"
            "from demine.errors import ModelError\n"
            "for f in sys.argv[1:]:\n"
            "    try:\n"
            "        load_model(f)\n"
            "    except ModelError as e:\n"
            "        print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, "/dev/zero", str(fifo)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.splitlines() == ["/dev/zero: not a model file (not a regular file)",
                                     f"{fifo}: not a model file (not a regular file)"]


def test_a_model_too_deep_to_write_is_a_model_error(model, tmp_path):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ModelError, match="model cannot be written"):
        save_model(Model(model.sets, dict(model.meta, notes=deep)), tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("name", ["m\x00.json", "m\ud800.json"])
def test_a_path_the_system_cannot_name_is_a_model_error(name):
    # (a NUL or a lone surrogate: ValueError and UnicodeEncodeError had escaped)
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model(name)


def test_model_errors_show_the_files_strings_escaped_and_short(model, tmp_path):
    """A version string of terminal escapes had reached the terminal raw (it
    can erase the error line); a 15 MB feature name made a 15 MB message; a
    feature list of the same names in another order said "only in demine: [],
    only in model: []"."""
    p = copy.deepcopy(model.to_payload())
    p["meta"]["software_version"] = "\r\x1b[2K all alarms OK \x1b]0;pwned\x07"
    feats = list(p["sets"]["emi"]["features"])
    feats[0], feats[1] = feats[1], feats[0]
    p["sets"]["emi"]["features"] = feats
    path = tmp_path / "m.json"
    path.write_bytes(_signed(p))
    with pytest.raises(ModelError) as err:
        load_model(path).check_compatible()
    msg = str(err.value)
    assert "\x1b" not in msg and "\r" not in msg and "\\x1b[2K" in msg
    assert f"at position 0 the model has {feats[0]}, demine {feats[1]}" in msg
    p["sets"]["emi"]["features"] = ["x" * 15_000_000] + feats[1:]
    path.write_bytes(_signed(p))
    with pytest.raises(ModelError) as err:
        load_model(path).check_compatible()
    assert len(str(err.value)) < 2000


def test_a_model_written_to_a_link_a_pipe_or_a_device_leaves_it_in_place(tmp_path):
    """save_model renamed its temporary file over --out: a symbolic link, a
    named pipe, a device became a regular file (as root, `-o /dev/null` would
    have replaced the system's /dev/null; train audit, session 34).  Now a
    link is written through and a pipe or device written into."""
    import stat
    import threading

    m = train_model(_training({"s/a": "s", "s/b": "s", "s/c": "s"}), n_splits=3,
                    estimator_kw=SMALL, progress=lambda line: None)
    target = tmp_path / "target.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    save_model(m, link)
    assert link.is_symlink() and target.is_file()
    assert not model_differences(load_model(target), m)
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    save_model(m, fifo)
    reader.join(30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and got[0] == target.read_bytes()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
