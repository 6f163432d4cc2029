"""Mine or clutter: a calibrated classifier over alarm features, in code-free model files.

The classifier turns the features of an alarm (:mod:`demine.features`) into a
calibrated probability that it is a mine, ``p_mine``.  One model file holds a
sub-model per *feature set* (:data:`demine.features.FEATURE_SETS`): ``"emi"``
and ``"gpr"`` for a sensor alone, ``"emi+gpr"`` and ``"gpr+emi"`` for the
alarms of one sensor with the other's features fused in; :func:`apply_model`
picks, per alarm, the set that the recording's sensors give.

Training (:func:`train_model`, ``demine train``):

* **labels** come from matching each stream's alarms to the recording's
  ground truth with :func:`demine.evaluate.match_alarms` (halo 0.25 m for
  anti-personnel-sized targets, 0.5 m for larger): an alarm that finds a mine
  is a mine (1); one that finds nothing or a clutter object is clutter (0); an
  unmatched alarm within the halo of a mine another alarm already found is
  ambiguous and left out of training;
* the estimator is a scikit-learn :class:`~sklearn.pipeline.Pipeline` around a
  :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (missing features
  are handled natively), made by :func:`make_estimator`;
* **cross-validation is grouped by lane** (:func:`grouped_splits`, a
  :class:`~sklearn.model_selection.GroupKFold` over the recordings' site and
  lane id): neighbouring alarms of one lane are never split between training
  and test; with ``cv_groups="site"`` no site is.  The out-of-fold scores give
  the cross-validated figures (AUC,
  clutter rejection at full recovery, Brier score, calibration error) and
  fit the **isotonic calibration** from score to ``p_mine``.

Model files (:func:`save_model`, :func:`load_model`) are JSON (gzip-compressed
when the name ends in ``.gz``): the boosted trees as plain arrays of numbers,
the isotonic map as two arrays, the feature list of every set, a summary of the
training data, the software and features versions, and a SHA-256 of the
content.  Loading parses JSON and numbers only -- nothing in a file can execute
code -- and checks everything (format, checksum, types, shapes, indices, tree
structure, size, depth and score limits) as if the file had been crafted; a file
that fails any check raises :class:`~demine.errors.ModelError` naming it.  The
checksum tells a damaged or edited file, not who wrote it: compare
:attr:`Model.digest` with a published one to trust a file.  Predictions are
computed by this module from those arrays (no scikit-learn object is rebuilt),
so a model does not depend on the scikit-learn version that trained it.

The default model (``demine/models/default.json.gz``) is trained on simulated
lanes; rebuild it with ``python benchmarks/train_default_model.py`` (``--check``:
rebuild elsewhere and compare, :func:`model_differences`).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import math
import os
import stat
import tomllib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._version import __version__
from .errors import ConfigError, DemineError, ModelError
from .features import (
    BASE_FEATURE_SETS,
    FEATURE_SETS,
    FEATURES_VERSION,
    NEIGHBOUR_RADIUS,
    AlarmFeatures,
    alarm_features,
    neighbourhood_features,
)

__all__ = [
    "MODEL_FORMAT", "TRAINING_PHYSICS", "TRAINING_PLANS", "Model", "SetModel", "TrainingSet",
    "apply_model",
    "build_training_set",
    "clutter_rejection", "default_model_path", "detector_fingerprint", "grouped_splits",
    "CV_GROUPS", "label_alarms", "lane_group", "lane_site", "load_default_model", "load_model",
    "localisation_radius", "make_estimator",
    "make_training_lane", "model_differences",
    "simulate_training_lanes", "simulated_detect_config",
    "save_model", "train_model", "training_lanes", "training_scene",
]

#: ``format`` field of model files.
MODEL_FORMAT = "demine-classifier"
MODEL_FORMAT_VERSION = 1
# Limits of a model file, far above any model ``demine train`` makes (the default
# model is 0.65 MB of JSON, 600 trees, 13 800 nodes, 4 197 levels), so that a crafted file can
# neither exhaust memory while it is parsed nor make loading or every prediction take
# minutes (before these limits a 0.5 MB gzip file of a million one-node trees took
# 6 min and 2.6 GB to load, one of a chain a million nodes deep 30 s per prediction;
# at these, a crafted file takes at most about 10 s and 0.5 GB to load or refuse).
_MAX_FILE_BYTES = 16 * 2**20
_MAX_JSON_BYTES = 16 * 2**20
_MAX_NODES = 1_000_000
#: trees in all the feature sets
_MAX_TREES = 10_000
#: Most feature sets a model file may hold (demine computes a few).
_MAX_SETS = 64
#: sum over all trees of their depth: the steps of a prediction with every set
_MAX_STEPS = 100_000
#: a raw score stays below this in magnitude, however the leaves add up
_MAX_SCORE = 1e300


def _shown(value: Any, n: int = 60) -> str:
    """A value from a model file as an error shows it: its first ``n``
    characters, control and non-ASCII characters escaped (a version string of
    terminal escapes had rewritten the error line; a feature name of 15 MB had
    made a 15 MB message)."""
    return ascii(str(value)[:n])[1:-1]


_TIE = 1e-6


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


def _text(v: Any, n: int) -> np.ndarray:
    a = np.asarray(v).reshape(-1)
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8").astype(str)
    return np.array([s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in a],
                    dtype=object).astype(str) if a.size else np.full(n, "")


def label_alarms(truth: Mapping[str, ArrayLike] | None, alarms: Mapping[str, ArrayLike],
                 rows: ArrayLike, *, halo: float | None = None,
                 strict: bool = False, te: bool = False) -> NDArray[np.int8]:
    """Labels of alarms ``rows`` (all of one sensor) from the ground truth.

    Returns 1 (found a mine), 0 (clutter or nothing) or -1 (ambiguous: within
    the halo of a mine that another alarm found).  The alarms are matched with
    :func:`demine.evaluate.match_alarms` (score priority), to the mines first,
    then the left-over alarms to the other truth rows.  With ``strict``, an
    alarm that found a mine but lies nearer a non-mine truth object (a
    cartridge 0.2 m from a mine "finds" the mine within its halo) is
    ambiguous too: its features describe the clutter, not the mine.  With
    ``te`` (test-and-evaluation labels) nothing is ambiguous: an alarm is 1
    exactly when the halo rule matches it to a mine, and every other alarm,
    a duplicate within a found mine's halo included, is 0, as the
    full-recovery figure counts them (``strict`` is then ignored).
    """
    from .evaluate import _HALO_SLACK, AP_HALO, LARGE_HALO, match_alarms, size_class

    rows = np.asarray(rows, dtype=np.intp)
    out = np.zeros(rows.size, dtype=np.int8)
    if rows.size == 0 or truth is None or len(truth.get("x", ())) == 0:
        return out
    nt = len(truth["x"])
    tx = np.asarray(truth["x"], dtype=np.float64)
    ty = np.asarray(truth["y"], dtype=np.float64)
    types = _text(truth.get("type", np.full(nt, "")), nt)
    if "is_mine" in truth:
        mine = np.asarray(truth["is_mine"]).astype(bool)
    else:
        mine = np.array(["mine" in t.lower() or "uxo" in t.lower() for t in types])
    h = np.full(nt, float(halo)) if halo is not None else np.array(
        [LARGE_HALO if size_class(t) == "large" else AP_HALO for t in types])
    ax = np.asarray(alarms["x"], dtype=np.float64)[rows]
    ay = np.asarray(alarms["y"], dtype=np.float64)[rows]
    score = np.asarray(alarms.get("score", np.zeros(len(alarms["x"]))), dtype=np.float64)[rows]
    score = np.where(np.isfinite(score), score, 0.0)
    axy = np.column_stack([ax, ay])
    mi = np.nonzero(mine)[0]
    if mi.size:
        m, _ = match_alarms(axy, np.column_stack([tx[mi], ty[mi]]), h[mi], score)
        out[m >= 0] = 1
        left = m < 0
        d = np.hypot(ax[:, None] - tx[mi][None, :], ay[:, None] - ty[mi][None, :])
        near_mine = np.any(d <= h[mi][None, :] * _HALO_SLACK, axis=1)  # (as matched)
        if not te:
            out[left & near_mine] = -1
        if strict and not te and (~mine).any():
            dm = d.min(axis=1)
            dc = np.hypot(ax[:, None] - tx[~mine][None, :],
                          ay[:, None] - ty[~mine][None, :]).min(axis=1)
            out[(out == 1) & (dc < dm)] = -1
    return out


# --------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Features, labels, lane groups and sites of many recordings, per feature set.

    ``groups`` holds each alarm's lane (:func:`lane_group`), ``sites`` its
    recording's site (:func:`lane_site`): the cross-validation groups of
    :func:`train_model` (``cv_groups``).
    """

    X: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    y: dict[str, NDArray[np.int8]] = field(default_factory=dict)
    groups: dict[str, NDArray[np.str_]] = field(default_factory=dict)
    recordings: list[str] = field(default_factory=list)
    lanes: list[str] = field(default_factory=list)
    radius: float = NEIGHBOUR_RADIUS
    labels: str = "halo"
    sites: dict[str, NDArray[np.str_]] = field(default_factory=dict)

    def add(self, name: str, X: np.ndarray, y: np.ndarray, group: str,
            site: str = "") -> None:
        if name in self.X:
            self.X[name] = np.vstack([self.X[name], X])
            self.y[name] = np.concatenate([self.y[name], y])
            self.groups[name] = np.concatenate([self.groups[name], np.full(y.size, group)])
            self.sites[name] = np.concatenate([self.sites[name], np.full(y.size, site)])
        else:
            self.X[name], self.y[name] = X, y.astype(np.int8)
            self.groups[name] = np.full(y.size, group)
            self.sites[name] = np.full(y.size, site)

    def summary(self) -> dict[str, Any]:
        sets = {}
        for name in self.X:
            y = self.y[name]
            sets[name] = {"alarms": int(y.size), "mine": int((y == 1).sum()),
                          "clutter": int((y == 0).sum()), "ambiguous": int((y < 0).sum()),
                          "lanes": len(set(self.groups[name].tolist()))}
        return {"recordings": len(self.recordings), "lanes": len(set(self.lanes)),
                "lane_ids": sorted(set(self.lanes))[:200], "sets": sets,
                "labels": self.labels, "neighbourhood_radius": self.radius}


def lane_group(rec: Any, fallback: str) -> str:
    """Cross-validation group of a recording: ``site/lane_id`` (file name when unset).

    Recordings of one lane of one site (e.g. a layout simulated with two
    physics, or a lane surveyed twice) are one group; lanes of one id at
    different sites are different lanes.
    """
    from .recording import attr_text

    # (as text, as `demine info` reads it: a lane id written as an array of
    # strings had been a group of its own, "['L1']", apart from the same lane
    # written as a string, and its alarms on both sides of a fold)
    lane = attr_text(rec.attrs.get("lane_id"))
    return f"{lane_site(rec)}/{lane}" if lane else f"{lane_site(rec)}/{fallback}"


def lane_site(rec: Any) -> str:
    """Site of a recording (its root attribute ``site``; empty when unset)."""
    from .recording import attr_text

    return attr_text(rec.attrs.get("site"))


#: Modules whose code decides the alarms of :func:`demine.pipeline.detect_recording`
#: (their bytes are part of :func:`detector_fingerprint`).
_DETECTION_MODULES = ("pipeline.py", "process.py", "detect.py", "hyperbola.py", "emi.py",
                      "gpr.py", "_params.py")
_DETECTION_KERNELS = ("_core", "_detect", "_emi", "_gpr", "_gpr_avx2", "_hyperbola")

#: A detection configuration for :func:`build_training_set` (``redetect_config``):
#: a mapping (``demine.pipeline.load_detect_config`` format) or a function of the
#: recording's path and open :class:`~demine.recording.Recording` returning one.
RedetectConfig = Mapping[str, Any] | Callable[[Path, Any], Mapping[str, Any] | None] | None


def detector_fingerprint(config: Mapping[str, Any] | None = None) -> str:
    """SHA-256 of what decides the detectors' alarms: their code, chains and ``config``.

    Hashes the bytes of the detection modules, the compiled kernels they call,
    the packaged processing chains and the resolved detection configuration,
    so cached detection results are used only while none of them changed.
    """
    from .pipeline import load_detect_config

    pkg = Path(str(resources.files("demine")))
    h = hashlib.sha256(__version__.encode())
    names = list(_DETECTION_MODULES)
    for k in _DETECTION_KERNELS:
        names += sorted(q.name for q in pkg.glob(k + ".*") if q.suffix in (".so", ".pyd"))
    names += sorted("chains/" + q.name for q in (pkg / "chains").glob("*.toml"))
    for nm in names:
        q = pkg / nm
        h.update(nm.encode() + b"\0" + (q.read_bytes() if q.is_file() else b"<missing>"))
    h.update(json.dumps(load_detect_config(config), sort_keys=True, default=str).encode())
    return h.hexdigest()


def simulated_detect_config(path: Path, rec: Any) -> dict[str, Any] | None:
    """Detection configuration for a simulated lane whose radar calibration lacks the height.

    Lanes simulated before the radar calibration recorded ``antenna_height``
    give the GPR detector no ground surface (depths then count from the direct
    wave).  For such a lane of a known scene (root attribute ``scene``: a
    shipped scene or ``training-N`` of :func:`training_scene`), the scene's
    sweep height is given as ``[gpr.detector] antenna_height``; ``None`` for
    any other recording (the detectors read the calibration as recorded).
    """
    gpr = [s for s in rec.streams.values() if s.kind == "gpr"]
    if not gpr or all("antenna_height" in (s.calibration or {}) for s in gpr):
        return None
    scene = str(rec.attrs.get("scene", "") or "")
    if not rec.attrs.get("simulated") or not scene:
        return None
    try:
        if scene.startswith("training-"):
            seed, _, pattern = scene.split("-", 1)[1].partition("-")
            sc = training_scene(int(seed), length=float(rec.attrs.get("lane_length", 5.0)),
                                pattern=pattern or "sweep")
        else:
            from .simulate.scene import load_scene

            sc = load_scene(scene)
    except (ValueError, DemineError):
        return None
    return {"gpr": {"detector": {"antenna_height": float(sc.sweep.height)}}}


def _cache_file(cache: Path, path: Path, kind: str, *parts: Any) -> Path:
    """Cache file of ``path`` for ``kind``, keyed by the file (resolved path,
    size, modification time) and ``parts``: a changed file or part is a new key."""
    st = path.stat()
    text = "|".join(str(v) for v in (path.resolve(), st.st_size, st.st_mtime_ns, *parts))
    return cache / f"{path.stem}{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"


def _redetected(rec: Any, path: Path, kinds: Sequence[str], config: RedetectConfig = None,
                cache: Path | None = None,
                calibration: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The recording's alarms with those of sensors ``kinds`` found again by today's detectors.

    With ``cache``, the detectors' alarms are kept in it keyed by the file
    (path, size, modification time), the streams and :func:`detector_fingerprint`.
    """
    from .pipeline import concat_alarms, detect_recording

    names = [n for n, s in rec.streams.items() if s.kind in kinds]
    old = {k: np.asarray(v) for k, v in rec.alarms.items()}
    n = len(old.get("x", ()))
    st = _text(old.get("stream", np.full(n, "")), n)
    keep = ~np.isin(st, names)
    kept = {k: v[keep] for k, v in old.items() if v.shape[:1] == (n,)}
    cfg = config(path, rec) if callable(config) else config
    new: dict[str, np.ndarray] = {}
    if names:
        key = None
        if cache is not None:
            key = _cache_file(cache, path, "-alarms", names, detector_fingerprint(cfg),
                              *([_profiles_key(calibration)] if calibration else []))
            if key.exists():
                with np.load(key, allow_pickle=False) as z:
                    new = {k: z[k] for k in z.files}
        if not new:
            new = detect_recording(path, cfg, streams=names, calibration={
                n: v for n, v in (calibration or {}).items() if n in names} or None)
            if key is not None:
                cache.mkdir(parents=True, exist_ok=True)
                tmp = key.with_suffix(".tmp.npz")
                np.savez(tmp, **{k: (np.asarray(v).astype(str) if np.asarray(v).dtype.kind
                                     == "O" else np.asarray(v)) for k, v in new.items()})
                tmp.replace(key)
    cols = [c for c in kept if c in new] if new else list(kept)
    parts = [{c: kept[c] for c in cols}] + ([{c: np.asarray(new[c]) for c in cols}]
                                            if new else [])
    return concat_alarms(parts)


def _profiles_key(calibration: Mapping[str, Any]) -> str:
    """Cache-key text of calibration profiles: their contents, not their names."""
    from .process import load_profiles

    return json.dumps({n: dict(p) for n, (p, _) in load_profiles(calibration).items()},
                      sort_keys=True, default=str)


def _features_for(path: Path, cache: Path | None, redetect: Sequence[str] = (),
                  redetect_config: RedetectConfig = None,
                  radius: float | None = NEIGHBOUR_RADIUS,
                  calibration: Mapping[str, Any] | None = None
                  ) -> tuple[AlarmFeatures, str, dict]:
    """Features, lane group and truth of a recording (cached by file size and time).

    ``redetect``: sensor kinds ("emi", "gpr") whose alarms are found again by
    the current detectors (with ``redetect_config``) instead of read from the
    recording's table; with ``cache`` their alarms are cached too.  The cache
    holds the base features; the neighbourhood columns (investigation disc of
    ``radius``; none when ``None``) are added after reading it.
    ``calibration``: stream name to the calibration profile the alarms were
    detected with (:func:`demine.features.alarm_features`); its contents key
    the cache.
    """
    from .recording import Recording

    with Recording(path) as rec:
        group = lane_group(rec, path.name)
        truth = rec.truth
        key = None
        alarms = _redetected(rec, path, tuple(redetect), redetect_config,
                             cache, calibration) if redetect else None
        tag = ""
        if alarms is not None:
            hh = hashlib.sha256()
            for k in sorted(alarms):
                v = np.asarray(alarms[k])
                hh.update(k.encode() + (v.astype(str) if v.dtype.kind == "O" else v).tobytes())
            tag = hh.hexdigest()
        if calibration:  # (the features of alarms detected with a profile use it)
            tag += "|" + _profiles_key(calibration)
        if cache is not None:
            key = _cache_file(cache, path, "", tag, __version__, FEATURES_VERSION,
                              sorted(BASE_FEATURE_SETS.items()))
            if key.exists():
                z = np.load(key, allow_pickle=False)
                alarms = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
                sets = {k[2:]: (z["r_" + k[2:]], z[k]) for k in z.files if k.startswith("X_")}
                sensors = frozenset(str(s) for s in z["sensors"])
                af = AlarmFeatures(alarms, sets, sensors, str(path))
                return (af if radius is None else neighbourhood_features(af, radius), group,
                        truth)
        af = alarm_features(rec, alarms, radius=None, calibration=calibration)
        if key is not None:
            cache.mkdir(parents=True, exist_ok=True)
            arrs: dict[str, np.ndarray] = {}
            for k, v in af.alarms.items():
                v = np.asarray(v)
                arrs["a_" + k] = v.astype(str) if v.dtype.kind == "O" else v
            for name, (rows, X) in af.sets.items():
                arrs["X_" + name] = X
                arrs["r_" + name] = rows
            arrs["sensors"] = np.array(sorted(af.sensors), dtype=str)
            tmp = key.with_suffix(".tmp.npz")
            np.savez(tmp, **arrs)
            tmp.replace(key)
        return (af if radius is None else neighbourhood_features(af, radius)), group, truth


def build_training_set(paths: Iterable[str | Path], *, cache: str | Path | None = None,
                       halo: float | None = None, strict: bool = False,
                       te: bool = False, radius: float | str = NEIGHBOUR_RADIUS,
                       redetect: Sequence[str] = (), redetect_config: RedetectConfig = None,
                       progress: Callable[[str], None] | None = None,
                       calibration: Mapping[str, Any] | None = None) -> TrainingSet:
    """Features and labels of the alarms of recordings that carry ground truth.

    Parameters
    ----------
    paths : iterable of str or Path
        Recordings with alarms (run ``demine detect --write`` first) and truth.
    cache : str or Path, optional
        Directory to cache the features of each recording in.
    halo : float, optional
        Matching radius for every target (default by size class).
    strict : bool
        Leave out of training the alarms that found a mine while lying nearer
        a clutter object (:func:`label_alarms`).
    te : bool
        Test-and-evaluation labels: every alarm the halo rule does not match
        to a mine is clutter, duplicates within a found mine's halo included
        (:func:`label_alarms`); what the full-recovery figure scores.
    radius : float or "auto"
        Radius (m) of the investigation disc of the neighbourhood features
        (:func:`demine.features.neighbourhood_features`); ``"auto"``: from the
        sensors' localisation error on these recordings
        (:func:`localisation_radius`).
    redetect : sequence of str
        Sensor kinds whose alarms the current detectors find again (the
        recordings' tables are not changed), e.g. after a detector changed;
        with ``cache`` their alarms are cached, keyed by
        :func:`detector_fingerprint`.
    redetect_config : mapping or callable, optional
        Detection configuration of ``redetect`` (or a function of the path and
        the open recording giving it, e.g. a radar antenna height for lanes
        whose calibration does not record it).
    progress : callable, optional
        Called with a line of text per recording.
    calibration : mapping, optional
        Stream name to the calibration profile (a shipped name, a ``.toml``
        path or a loaded dict) the recordings' alarms were detected with
        (``demine detect --calibration``), for their features, instead of
        what the recordings hold; every recording must have those streams.
    """
    from .recording import Recording

    lanes = []
    seen: set[Any] = set()
    for p in paths:
        p = Path(p)
        # one file given twice (two spellings, a hard link) is trained on once
        # (it had counted twice in the training summary and the fit)
        try:
            st = os.stat(p)
            ident: Any = (st.st_dev, st.st_ino)
        except OSError:
            ident = os.path.realpath(p)
        if ident in seen:
            if progress:
                progress(f"{p}: given before (the same file), skipped")
            continue
        seen.add(ident)
        af, group, truth = _features_for(p, Path(cache) if cache else None, redetect,
                                         redetect_config, None, calibration)
        if truth is None or len(truth.get("x", ())) == 0:
            if progress:
                progress(f"{p}: no ground truth, skipped")
            continue
        unplaced = ~(np.isfinite(np.asarray(truth["x"], dtype=np.float64))
                     & np.isfinite(np.asarray(truth.get("y", truth["x"]), dtype=np.float64)))
        if unplaced.any():
            # (an alarm on such a target had been labelled clutter, in silence)
            if progress:
                progress(f"{p}: {int(unplaced.sum())} target(s) of its truth without a "
                         "position: its alarms cannot all be labelled, skipped")
            continue
        with Recording(p) as rec:
            site = lane_site(rec)
        lanes.append((p, af, group, site, truth))
    if not lanes:
        # (it had gone on to "no training alarms of any feature set", after a
        # progress line "(95th percentile) of : 0.250 m")
        raise ConfigError("none of the recordings given has ground truth (a truth table of "
                          "mines and clutter): nothing to train on")
    if isinstance(radius, str):
        if radius != "auto":
            raise ConfigError(f"neighbourhood radius must be a number or 'auto', got {radius!r}")
        radius, errs = localisation_radius([(af, truth) for _, af, _, _, truth in lanes])
        if progress:
            progress("neighbourhood radius from the localisation error (95th percentile) of "
                     + ", ".join(f"{k} hits {v:.3f} m" for k, v in errs.items())
                     + f": {radius:.3f} m")
    ts = TrainingSet(radius=float(radius),
                     labels="te" if te else ("strict" if strict else "halo"))
    for p, af, group, site, truth in lanes:
        af = neighbourhood_features(af, float(radius))
        ts.recordings.append(str(p))
        ts.lanes.append(group)
        counts = []
        for name, (rows, X) in af.sets.items():
            y = label_alarms(truth, af.alarms, rows, halo=halo, strict=strict, te=te)
            ts.add(name, X, y, group, site)
            counts.append(f"{name}: {rows.size} alarms, {int((y == 1).sum())} on mines")
        if progress:
            progress(f"{p} [{group}] " + "; ".join(counts))
    return ts


def localisation_radius(lanes: Sequence[tuple[AlarmFeatures, Mapping[str, Any]]], *,
                        q: float = 95.0, min_hits: int = 10
                        ) -> tuple[float, dict[str, float]]:
    """Investigation-disc radius from the sensors' localisation error.

    Per sensor, the ``q``-th percentile of the distance from an alarm to the
    mine it found, over the hits that lie nearer the mine than any clutter
    object (:func:`label_alarms` ``strict``: alarms on the mine itself).  Two
    alarms on one object lie within the combined error of the two sensors
    (root of the sum of squares of theirs); an alarm of one sensor alone
    within its own.  Falls back to
    :data:`demine.features.NEIGHBOUR_RADIUS` for a sensor with fewer than
    ``min_hits`` hits; clipped to 0.05-0.5 m.

    Returns
    -------
    radius : float
    errors : dict
        Sensor kind -> its ``q``-th percentile error (m).
    """
    from .evaluate import AP_HALO, LARGE_HALO, match_alarms, size_class

    errs: dict[str, list[float]] = {}
    for af, truth in lanes:
        if truth is None or len(truth.get("x", ())) == 0:
            continue
        nt = len(truth["x"])
        tx = np.asarray(truth["x"], dtype=np.float64)
        ty = np.asarray(truth["y"], dtype=np.float64)
        types = _text(truth.get("type", np.full(nt, "")), nt)
        mine = np.asarray(truth.get("is_mine", np.zeros(nt))).astype(bool)
        mi = np.nonzero(mine)[0]
        if mi.size == 0:
            continue
        h = np.array([LARGE_HALO if size_class(t) == "large" else AP_HALO for t in types[mi]])
        for name, (rows, _) in af.sets.items():
            if rows.size == 0:
                continue
            ax = np.asarray(af.alarms["x"], dtype=np.float64)[rows]
            ay = np.asarray(af.alarms["y"], dtype=np.float64)[rows]
            sc = np.asarray(af.alarms.get("score", np.zeros(len(af.alarms["x"]))),
                            dtype=np.float64)[rows]
            m, _ = match_alarms(np.column_stack([ax, ay]), np.column_stack([tx[mi], ty[mi]]),
                                h, np.where(np.isfinite(sc), sc, 0.0))
            ok = (m >= 0) & (label_alarms(truth, af.alarms, rows, strict=True) == 1)
            d = np.hypot(ax[ok] - tx[mi][m[ok]], ay[ok] - ty[mi][m[ok]])
            errs.setdefault(name.split("+")[0], []).extend(d.tolist())
    out = {k: float(np.percentile(v, q)) if len(v) >= min_hits else NEIGHBOUR_RADIUS
           for k, v in errs.items()}
    if not out:
        return NEIGHBOUR_RADIUS, out
    r = math.sqrt(sum(v * v for v in out.values()))
    return float(np.clip(r, 0.05, 0.5)), out


# --------------------------------------------------------------------------
# Estimator and cross-validation
# --------------------------------------------------------------------------


#: Physically monotone features, used with ``estimator_kw={"monotone": True}``:
#: p_mine never falls as the radar's evidence of a low-permittivity (plastic)
#: body under the alarm grows, nor rises as the evidence of metal alone grows
#: (other features fixed).  Not used by the default model: on the tuning seed
#: of the shipped scenes it lowered the strict EMI rejection (86.8 % -> 65.8 %).
MONOTONE: dict[str, int] = {
    "gpr_body_pos_log": 1, "gpr_body_neg_log": -1,
    "fus_gpr_body_pos_log": 1, "fus_gpr_body_neg_log": -1,
}


def make_estimator(*, max_iter: int = 150, learning_rate: float = 0.06,
                   max_leaf_nodes: int = 12, min_samples_leaf: int = 15,
                   l2_regularization: float = 1.0, random_state: int = 0,
                   monotonic_cst: Sequence[int] | None = None) -> Any:
    """The scikit-learn estimator of one feature set: a Pipeline around gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    return Pipeline([("boost", HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
        monotonic_cst=None if monotonic_cst is None else list(monotonic_cst),
        early_stopping=False, class_weight="balanced", random_state=random_state))])


def grouped_splits(groups: ArrayLike, n_splits: int = 5, *, what: str = "lanes"
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs of a cross-validation grouped by lane (GroupKFold).

    No group (lane, or site) is ever in both the training and the test part
    of a split.  ``what`` names the groups in errors.
    """
    from sklearn.model_selection import GroupKFold

    if isinstance(n_splits, bool) or int(n_splits) != n_splits or int(n_splits) < 2:
        raise ConfigError(f"grouped cross-validation needs at least 2 folds, got {n_splits}")
    g = np.asarray(groups)
    n = len(np.unique(g))
    if n < 2:
        raise ConfigError(f"grouped cross-validation needs at least 2 {what}, got {n}")
    k = min(int(n_splits), n)
    return [(tr, te) for tr, te in GroupKFold(n_splits=k).split(np.zeros(g.size), groups=g)]


def clutter_rejection(p: ArrayLike, is_mine: ArrayLike) -> float:
    """Fraction of clutter alarms rejected at the highest threshold keeping every mine alarm.

    ``p`` are scores (higher: more mine-like); ``is_mine`` marks mine alarms.
    A clutter alarm is rejected when its score is strictly below the lowest
    mine score.  NaN when there is no clutter alarm; 1 when there is no mine.
    """
    p = np.asarray(p, dtype=np.float64)
    m = np.asarray(is_mine).astype(bool)
    if not (~m).any():
        return math.nan
    if not m.any():
        return 1.0
    return float(np.mean(p[~m] < p[m].min()))


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    e = 0.0
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        s = idx == b
        if s.any():
            e += s.mean() * abs(p[s].mean() - y[s].mean())
    return float(e)


# --------------------------------------------------------------------------
# Code-free model
# --------------------------------------------------------------------------


@dataclass(eq=False)  # (its arrays have no truth value: compare with model_differences)
class SetModel:
    """Boosted trees and isotonic calibration of one feature set (plain arrays).

    A node ``k`` of tree ``t`` is a leaf when ``is_leaf``; otherwise a sample
    goes to ``left`` when its feature ``feature`` is ``<= threshold`` (or is
    missing and ``missing_left``), else to ``right``.  The raw score is
    ``baseline`` plus the leaf values of all trees; ``p_mine`` is the isotonic
    map (``iso_x`` -> ``iso_y``, linear interpolation, clipped) of that score.
    """

    features: tuple[str, ...]
    baseline: float
    trees: list[dict[str, np.ndarray]]
    iso_x: NDArray[np.float64]
    iso_y: NDArray[np.float64]
    cv: dict[str, Any] = field(default_factory=dict)

    def raw_score(self, X: ArrayLike) -> NDArray[np.float64]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ModelError(f"model expects {len(self.features)} features per alarm, "
                             f"got array of shape {X.shape}")
        out = np.full(X.shape[0], self.baseline)
        rows = np.arange(X.shape[0])
        for t in self.trees:
            node = np.zeros(X.shape[0], dtype=np.int64)
            leaf = t["is_leaf"]
            while True:
                active = ~leaf[node]
                if not active.any():
                    break
                ni = node[active]
                xv = X[rows[active], t["feature"][ni]]
                go_left = np.where(np.isnan(xv), t["missing_left"][ni], xv <= t["threshold"][ni])
                node[active] = np.where(go_left, t["left"][ni], t["right"][ni])
            out += t["value"][node]
        return out

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probability of a mine for each row of ``X``."""
        s = self.raw_score(X)
        p = np.clip(np.interp(s, self.iso_x, self.iso_y), 0.0, 1.0)
        # isotonic maps are flat in places; a vanishing strictly increasing term
        # keeps the ranking of the raw score (ties would blur the threshold
        # that keeps every mine) without changing the calibration measurably
        return p * (1.0 - _TIE) + _TIE / (1.0 + np.exp(-np.clip(s, -500, 500)))


def _export_trees(est: Any) -> tuple[float, list[dict[str, np.ndarray]]]:
    clf = est[-1] if hasattr(est, "steps") else est
    base = float(np.asarray(clf._baseline_prediction).reshape(-1)[0])
    trees = []
    for it in clf._predictors:
        n = it[0].nodes
        if np.any(n["is_categorical"]):
            raise ModelError("categorical splits cannot be exported")
        trees.append({"feature": n["feature_idx"].astype(np.int64),
                      "threshold": n["num_threshold"].astype(np.float64),
                      "missing_left": n["missing_go_to_left"].astype(bool),
                      "left": n["left"].astype(np.int64), "right": n["right"].astype(np.int64),
                      "is_leaf": n["is_leaf"].astype(bool),
                      "value": n["value"].astype(np.float64)})
    return base, trees


@dataclass(eq=False)  # (its arrays have no truth value: compare with model_differences)
class Model:
    """A trained mine/clutter classifier: one :class:`SetModel` per feature set.

    ``source`` names where it was read from (the file; empty for a model made
    in memory), so that every refusal names the file; ``digest`` is the file's
    verified SHA-256 (the ``sha256`` it records), to compare with one
    published for the model: the checksum tells a damaged or edited file, not
    who wrote it (anyone who edits a file can recompute it).
    """

    sets: dict[str, SetModel]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    digest: str = ""

    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    @property
    def radius(self) -> float:
        """Radius (m) of the investigation disc of the neighbourhood features it was trained on."""
        r = self.meta.get("neighbourhood_radius", NEIGHBOUR_RADIUS)
        if isinstance(r, bool) or not isinstance(r, int | float | np.floating | np.integer):
            raise ModelError(f"{self._where()}model neighbourhood_radius must be a number, "
                             f"got {str(r)[:40]!r}")
        try:
            r = float(r)
        except OverflowError:
            r = math.inf
        if not (math.isfinite(r) and r > 0):
            raise ModelError(f"{self._where()}model neighbourhood_radius must be a positive "
                             f"finite number of metres, got {r}")
        return r

    def _version_note(self) -> str:
        v = self.meta.get("software_version")
        made = f"the model was written by demine {_shown(v)}" if v else \
            "the model does not say which demine wrote it"
        return (f"{made}, this is demine {__version__}: retrain the model with this demine, "
                "or use the demine that wrote it")

    def check_features(self, name: str, features: Sequence[str]) -> SetModel:
        """The sub-model of set ``name``, refusing a feature list that differs.

        Also refuses a model trained on other definitions of the features (its
        ``features_version`` differs from :data:`demine.features.FEATURES_VERSION`;
        models written before the version was recorded are not checked).
        """
        if name not in self.sets:
            raise ModelError(f"{self._where()}model has no sub-model for feature set {name!r} "
                             f"(it has {[_shown(n) for n in sorted(self.sets)][:8]})")
        sm = self.sets[name]
        if tuple(features) != tuple(sm.features):
            have, want = set(sm.features), set(features)
            missing = [_shown(f) for f in features if f not in have][:5]
            extra = [_shown(f) for f in sm.features if f not in want][:5]
            if missing or extra:
                what = f"only in demine: {missing}, only in model: {extra}"
            else:   # (the same names: it had said "only in demine: [], only in model: []")
                i = next(i for i, (a, b) in enumerate(zip(features, sm.features, strict=False))
                         if a != b)
                what = (f"the same names in another order: at position {i} the model has "
                        f"{_shown(sm.features[i])}, demine {_shown(features[i])}")
            raise ModelError(
                f"{self._where()}model features of set {_shown(name)} do not match this "
                f"demine's features (model has {len(sm.features)}, demine computes "
                f"{len(features)}; {what}); " + self._version_note())
        fv = self.meta.get("features_version")
        if fv is not None and (isinstance(fv, bool) or fv != FEATURES_VERSION):
            raise ModelError(
                f"{self._where()}model of set {name!r} was trained on features version "
                f"{_shown(repr(fv), 20)}, this demine computes version {FEATURES_VERSION} "
                "(the same names, defined otherwise); " + self._version_note())
        return sm

    def check_compatible(self) -> None:
        """Refuse the model now if any of its feature sets that this demine computes
        does not match (before any recording's features are computed)."""
        self.radius  # noqa: B018 - validates it
        for name in self.sets:
            if name in FEATURE_SETS:
                self.check_features(name, FEATURE_SETS[name])

    # -- serialisation
    def to_payload(self) -> dict[str, Any]:
        sets = {}
        for name, sm in self.sets.items():
            sets[name] = {
                "features": list(sm.features), "baseline": sm.baseline,
                "iso_x": [float(v) for v in sm.iso_x], "iso_y": [float(v) for v in sm.iso_y],
                "cv": sm.cv,
                "trees": [{k: (v.astype(int).tolist() if v.dtype.kind in "bi"
                               else [float(a) for a in v]) for k, v in t.items()}
                          for t in sm.trees],
            }
        return {"meta": self.meta, "sets": sets}

    @classmethod
    def from_payload(cls, payload: Any, src: str = "model") -> Model:
        """Rebuild a model from a file's payload, checking everything in it.

        Every array must have the type, length and range the evaluation needs;
        every tree must be a tree (each node but the root the child of exactly
        one inner node, children after their parent, so evaluation ends); the
        model must stay within the size, depth and score limits of this module.
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("sets"), dict):
            raise ModelError(f"{src}: not a demine classifier (no 'sets')")
        meta = payload.get("meta", {})
        if not isinstance(meta, dict):
            raise ModelError(f"{src}: 'meta' must be an object")
        sets: dict[str, SetModel] = {}
        total = steps = n_trees = 0
        if len(payload["sets"]) > _MAX_SETS:   # (each is loaded again by every batch task)
            raise ModelError(f"{src}: {len(payload['sets'])} feature sets, more than the "
                             f"{_MAX_SETS} a model may have")
        known = [n for n in payload["sets"] if n in FEATURE_SETS]
        if not known:
            # (it had loaded, and failed only after a recording's features were
            # computed; look-alike letters are shown as escapes)
            raise ModelError(f"{src}: model has no feature set this demine computes (it has "
                             f"{[_shown(n) for n in list(payload['sets'])[:8]]}; this demine "
                             f"computes {sorted(FEATURE_SETS)})")
        for name, d in payload["sets"].items():
            where = f"{src}: set {_shown(name)}"
            if not isinstance(d, dict):
                raise ModelError(f"{where}: must be an object")
            feats = d.get("features")
            if not (isinstance(feats, list) and feats and all(isinstance(f, str) for f in feats)):
                raise ModelError(f"{where}: 'features' must be a non-empty list of names")
            if len(set(feats)) != len(feats):
                raise ModelError(f"{where}: 'features' names a feature twice")
            nf = len(feats)
            base = _finite(d.get("baseline"), f"{where}: baseline")
            iso_x = _vec(d.get("iso_x"), f"{where}: iso_x", np.float64)
            iso_y = _vec(d.get("iso_y"), f"{where}: iso_y", np.float64)
            if iso_x.size < 1 or iso_x.size != iso_y.size or np.any(np.diff(iso_x) < 0) or \
                    np.any(np.diff(iso_y) < 0) or np.any((iso_y < 0) | (iso_y > 1)):
                # (a decreasing map had loaded: every alarm's rank inverted)
                raise ModelError(f"{where}: calibration map must be non-decreasing x and y, "
                                 "0 <= y <= 1, of equal length")
            trees_in = d.get("trees")
            if not isinstance(trees_in, list):
                raise ModelError(f"{where}: 'trees' must be a list")
            n_trees += len(trees_in)
            if n_trees > _MAX_TREES:
                raise ModelError(f"{src}: more than the {_MAX_TREES} trees a model may have")
            trees = []
            bound = abs(base)
            for ti, t in enumerate(trees_in):
                tw = f"{where} tree {ti}"
                if not isinstance(t, dict):
                    raise ModelError(f"{tw}: must be an object")
                n_in = t.get("value")
                if isinstance(n_in, list):
                    total += len(n_in)
                    if total > _MAX_NODES:
                        raise ModelError(f"{src}: more than {_MAX_NODES} tree nodes")
                tr = {
                    "feature": _vec(t.get("feature"), f"{tw}: feature", np.int64),
                    "threshold": _vec(t.get("threshold"), f"{tw}: threshold", np.float64,
                                      allow_inf=True),
                    "missing_left": _vec(t.get("missing_left"), f"{tw}: missing_left", bool),
                    "left": _vec(t.get("left"), f"{tw}: left", np.int64),
                    "right": _vec(t.get("right"), f"{tw}: right", np.int64),
                    "is_leaf": _vec(t.get("is_leaf"), f"{tw}: is_leaf", bool),
                    "value": _vec(t.get("value"), f"{tw}: value", np.float64),
                }
                n = tr["value"].size
                if n == 0 or any(v.size != n for v in tr.values()):
                    raise ModelError(f"{tw}: node arrays must be non-empty and of equal length")
                inner = ~tr["is_leaf"]
                k = np.nonzero(inner)[0]
                # children must come after their parent: every path ends at a leaf
                if np.any(tr["left"][k] <= k) or np.any(tr["right"][k] <= k) or \
                        np.any(tr["left"][k] >= n) or np.any(tr["right"][k] >= n):
                    raise ModelError(f"{tw}: child index out of order or range")
                # ... and each node but the root the child of exactly one inner node
                parents = np.bincount(np.concatenate([tr["left"][k], tr["right"][k]]),
                                      minlength=n)
                if parents[0] != 0 or np.any(parents[1:] != 1):
                    raise ModelError(f"{tw}: not a tree (a node with no parent or with two)")
                if np.any(tr["feature"][k] < 0) or np.any(tr["feature"][k] >= nf):
                    raise ModelError(f"{tw}: feature index out of range 0..{nf - 1}")
                steps += _tree_depth(tr["left"], tr["right"], inner, _MAX_STEPS - steps)
                if steps > _MAX_STEPS:
                    raise ModelError(f"{src}: the trees are deeper than a model may be (more "
                                     f"than {_MAX_STEPS} levels in all)")
                bound += float(np.max(np.abs(tr["value"])))
                if not bound < _MAX_SCORE:
                    raise ModelError(f"{where}: leaf values so large that scores overflow")
                tr["feature"] = np.where(inner, tr["feature"], 0)
                tr["left"] = np.where(inner, tr["left"], 0)
                tr["right"] = np.where(inner, tr["right"], 0)
                trees.append(tr)
            cv = d.get("cv", {})
            sets[str(name)] = SetModel(tuple(feats), base, trees, iso_x, iso_y,
                                       cv if isinstance(cv, dict) else {})
        if not sets:
            raise ModelError(f"{src}: model has no feature set")
        model = cls(sets, meta, src)
        model.radius  # noqa: B018 - refuse a bad radius now, naming the file
        return model


def _tree_depth(left: np.ndarray, right: np.ndarray, inner: np.ndarray, limit: int) -> int:
    """Depth of a tree (its root alone: 0), counting no further than ``limit + 1``.

    The tree must have been checked to be one (each node one parent), so the
    levels hold every node once.
    """
    level = np.zeros(1, dtype=np.int64)
    depth = 0
    while True:
        level = level[inner[level]]
        if level.size == 0 or depth > limit:
            return depth
        depth += 1
        level = np.concatenate([left[level], right[level]])


def _finite(v: Any, what: str) -> float:
    try:
        ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
    except OverflowError:  # an integer of hundreds of digits
        ok = False
    if not ok:
        raise ModelError(f"{what}: must be a finite number, got {str(v)[:40]!r}")
    return float(v)


def _vec(v: Any, what: str, dtype: Any, allow_inf: bool = False) -> np.ndarray:
    """A list of JSON numbers as an array of ``dtype`` (``bool``: of 0 and 1)."""
    if not isinstance(v, list):
        raise ModelError(f"{what}: must be a list of numbers")
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in v):
        raise ModelError(f"{what}: must contain numbers only")
    try:
        a = np.asarray(v, dtype=np.float64)
    except OverflowError:  # an integer of hundreds of digits
        raise ModelError(f"{what}: must be finite numbers (a number is too large)") from None
    if np.any(np.isnan(a)) or (not allow_inf and np.any(np.isinf(a))):
        raise ModelError(f"{what}: must be finite numbers")
    if dtype is bool:
        if np.any((a != 0) & (a != 1)):
            raise ModelError(f"{what}: must be 0 or 1")
        return a.astype(bool)
    if np.dtype(dtype).kind == "i":
        if np.any(a != np.round(a)) or np.any(np.abs(a) > 2**53):
            raise ModelError(f"{what}: must be integers")
        return a.astype(np.int64)
    return a.astype(dtype)


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def save_model(model: Model, path: str | Path) -> Path:
    """Write a model file (JSON; gzip-compressed when the name ends in ``.gz``).

    The model is checked as :func:`load_model` checks a file first, so a file
    is written only if it can be read back.

    Raises
    ------
    ModelError
        The model is one :func:`load_model` would refuse, or the file cannot
        be written.
    """
    path = Path(path)
    payload = model.to_payload()
    try:
        body = _canonical(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: model cannot be written: {exc}") from exc
    Model.from_payload(json.loads(body), str(path))
    doc = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
           "sha256": hashlib.sha256(body).hexdigest(), "payload": payload}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > _MAX_JSON_BYTES:
        raise ModelError(f"{path}: model too large for a model file ({len(data)} bytes of "
                         f"JSON, at most {_MAX_JSON_BYTES})")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    from ._outputs import replace_bytes

    try:
        # (renamed into place; a pipe or a device written into, and a link
        # written through: they had been replaced by a regular file, and as
        # root `-o /dev/null` would have replaced the system's /dev/null)
        replace_bytes(path, data)
    except OSError as exc:
        raise ModelError(f"{path}: cannot write model file: {exc.strerror or exc}") from exc
    return path


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # a key given twice would be read as its last value by this parser and as the
    # first by others: what a reviewer's tool shows must be what demine uses
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"key {k[:40]!r} given twice in one object")
        seen.add(k)
    return dict(pairs)


def load_model(path: str | Path) -> Model:
    """Read and verify a model file; nothing in it is executed.

    Raises
    ------
    ModelError
        The file is missing, too large, not a demine classifier (e.g. a pickle),
        of an unknown format version, modified after it was written (checksum
        mismatch), or structurally invalid.
    """
    path = Path(path)
    src = str(path)
    try:
        # a regular file, read no further than the limit: a device (/dev/zero) read
        # until memory ran out, a named pipe blocked for ever (open itself does not
        # block with O_NONBLOCK)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) |
                     getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ModelError(f"{src}: not a model file (not a regular file)")
            if st.st_size > _MAX_FILE_BYTES:
                raise ModelError(f"{src}: model file too large ({st.st_size} bytes, at most "
                                 f"{_MAX_FILE_BYTES})")
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # (a path with a NUL or a lone surrogate)
        raise ModelError(f"{_shown(src, 200)}: cannot read model file: "
                         f"{getattr(exc, 'strerror', None) or exc}") from exc
    if len(raw) > _MAX_FILE_BYTES:
        raise ModelError(f"{src}: model file too large (more than {_MAX_FILE_BYTES} bytes)")
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(_MAX_JSON_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ModelError(f"{src}: corrupt compressed model file: {exc}") from exc
        if len(raw) > _MAX_JSON_BYTES:
            raise ModelError(f"{src}: model file expands beyond {_MAX_JSON_BYTES} bytes")
    if raw[:1] in (b"\x80",) or raw[:2] in (b"PK",) or raw[:4] == b"\x89HDF":
        raise ModelError(f"{src}: not a demine model file (looks like a pickle, zip or HDF5 "
                         "file; demine only loads its own JSON model format and never "
                         "unpickles)")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                         object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{src}: not a demine model file (not valid JSON: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ModelError(f"{src}: not a demine classifier model (format field is "
                         f"{str(doc.get('format') if isinstance(doc, dict) else None)[:40]!r})")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or \
            version != MODEL_FORMAT_VERSION:
        payload = doc.get("payload")
        meta = payload.get("meta") if isinstance(payload, dict) else None
        by = meta.get("software_version") if isinstance(meta, dict) else None
        newer = isinstance(version, int) and not isinstance(version, bool) and \
            version > MODEL_FORMAT_VERSION
        shown = repr(version)[:40] if isinstance(version, int | float | str | None) else \
            f"of type {type(version).__name__}"
        raise ModelError(f"{src}: model format version {shown} is not supported "
                         f"(this demine {__version__} reads version {MODEL_FORMAT_VERSION})"
                         + (f"; it was written by demine {_shown(by)}" if by else "")
                         + ("; a newer demine reads it" if newer else ""))
    payload = doc.get("payload")
    digest = doc.get("sha256")
    try:
        body = _canonical(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{src}: invalid model content: {exc}") from exc
    if not isinstance(digest, str) or hashlib.sha256(body).hexdigest() != digest:
        raise ModelError(f"{src}: model file has been modified or corrupted (SHA-256 of its "
                         "content does not match the recorded checksum); refusing to use it")
    model = Model.from_payload(payload, src)
    model.digest = digest
    return model


def default_model_path() -> Path:
    """Path of the packaged default model."""
    return Path(str(resources.files("demine") / "models" / "default.json.gz"))


def load_default_model() -> Model:
    """The packaged default model (trained on simulated lanes)."""
    p = default_model_path()
    if not p.is_file():
        raise ModelError(f"{p}: the default model is not installed")
    return load_model(p)


#: meta fields that differ between two runs of one recipe (or between versions of
#: the model format's meta) without changing a prediction
RUN_META = ("created_utc", "features_version", "cv_groups")


def model_differences(a: Model, b: Model, *, ignore_meta: Sequence[str] = RUN_META
                      ) -> list[str]:
    """What differs between two models, one line per difference (none: the same model).

    Compares every sub-model's features, trees, baseline, calibration map and
    cross-validated figures exactly, and the meta data but ``ignore_meta``, so
    a model rebuilt from its recipe can be checked against the one it should
    reproduce.
    """
    out: list[str] = []
    for name in sorted(set(a.sets) | set(b.sets)):
        if name not in a.sets or name not in b.sets:
            out.append(f"set {name!r}: only in the {'second' if name in b.sets else 'first'}")
            continue
        sa, sb = a.sets[name], b.sets[name]
        if sa.features != sb.features:
            out.append(f"set {name!r}: features differ")
        if sa.baseline != sb.baseline:
            out.append(f"set {name!r}: baseline {sa.baseline!r} != {sb.baseline!r}")
        for key in ("iso_x", "iso_y"):
            va, vb = getattr(sa, key), getattr(sb, key)
            if va.shape != vb.shape or not np.array_equal(va, vb):
                out.append(f"set {name!r}: calibration map {key} differs")
        if len(sa.trees) != len(sb.trees):
            out.append(f"set {name!r}: {len(sa.trees)} trees != {len(sb.trees)}")
        else:
            bad = [k for k, (ta, tb) in enumerate(zip(sa.trees, sb.trees, strict=True))
                   if any(ta[f].shape != tb[f].shape or not np.array_equal(ta[f], tb[f])
                          for f in ta)]
            if bad:
                out.append(f"set {name!r}: {len(bad)} of {len(sa.trees)} trees differ "
                           f"(first: tree {bad[0]})")
        if sa.cv != sb.cv:
            keys = sorted(k for k in set(sa.cv) | set(sb.cv) if sa.cv.get(k) != sb.cv.get(k))
            out.append(f"set {name!r}: cross-validated figures differ "
                       f"({_shown(', '.join(map(str, keys)), 200)})")
    for key in sorted(set(a.meta) | set(b.meta)):
        if key not in ignore_meta and a.meta.get(key) != b.meta.get(key):
            out.append(f"meta {_shown(repr(key))}: {_shown(a.meta.get(key))} != "
                       f"{_shown(b.meta.get(key))}")
    return out


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _fit_set(X: np.ndarray, y: np.ndarray, groups: np.ndarray, name: str, *,
             n_splits: int = 5, estimator_kw: Mapping[str, Any] | None = None,
             cv_groups: np.ndarray | None = None, what: str = "lanes") -> SetModel:
    """Fit, cross-validate and calibrate one feature set.

    ``groups``: each row's lane (per-lane figures); ``cv_groups``: the groups
    of the cross-validation (default the lanes; e.g. the sites), named ``what``.
    """
    from sklearn.isotonic import IsotonicRegression

    kw = dict(estimator_kw or {})
    if kw.pop("monotone", False):
        cst = [MONOTONE.get(f, 0) for f in FEATURE_SETS[name]]
        if any(cst) and len(cst) == X.shape[1]:
            kw.setdefault("monotonic_cst", cst)
    keep = y >= 0
    cv_groups = groups if cv_groups is None else np.asarray(cv_groups)
    X, y, groups, cv_groups = X[keep], y[keep].astype(int), groups[keep], cv_groups[keep]
    if len(np.unique(y)) < 2:
        raise ConfigError(f"feature set {name!r}: training data needs both mine and clutter "
                          f"alarms (got {int(y.sum())} mine, {int((y == 0).sum())} clutter)")
    oof = np.full(y.size, np.nan)
    try:
        splits = grouped_splits(cv_groups, n_splits, what=what)
    except ConfigError as exc:
        # (one dual-sensor lane among EMI-only ones: "needs at least 2 lanes,
        # got 1" had named neither the feature set nor the lane)
        raise ConfigError(f"feature set {name!r} (its alarms from "
                          f"{', '.join(sorted(set(map(str, cv_groups)))[:5])}): {exc}") from None
    for tr, te in splits:
        if len(np.unique(y[tr])) < 2:
            continue
        est = make_estimator(**kw).fit(X[tr], y[tr])
        oof[te] = est.decision_function(X[te])
    ok = np.isfinite(oof)
    if not ok.any():
        raise ConfigError(f"feature set {name!r}: no cross-validation fold has both mine and "
                          f"clutter alarms in its training {what} (give more {what}, with "
                          "mines and clutter in several of them)")
    if len(np.unique(y[ok])) < 2:
        # (the calibration had been fitted on one class: every p_mine about 0,
        # and "100 % of clutter rejected" claimed with no mine scored)
        kind = "mine" if not y[ok].any() else "clutter"
        raise ConfigError(f"feature set {name!r}: no {kind} alarm was scored out of fold "
                          f"(the folds that could be trained held out only "
                          f"{'clutter' if kind == 'mine' else 'mine'} alarms: all the {kind} "
                          f"alarms in too few {what}?); give more {what}, with mines and "
                          "clutter in several of them")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
    iso.fit(oof[ok], y[ok])
    final = make_estimator(**kw).fit(X, y)
    base, trees = _export_trees(final)
    ix = np.asarray(iso.X_thresholds_, dtype=np.float64)
    iy = np.asarray(iso.y_thresholds_, dtype=np.float64)
    yo = y[ok]
    # calibration quality judged out of sample: each fold's scores mapped by an
    # isotonic map fitted on the other folds' out-of-fold scores
    p_oof = np.full(yo.size, np.nan)
    # (out-of-fold scores of one group alone, when every other fold could not be
    # trained: no calibration quality to measure)
    cal_splits = grouped_splits(cv_groups[ok], n_splits, what=what) if \
        len(np.unique(cv_groups[ok])) >= 2 else []
    for tr, te in cal_splits:
        if len(np.unique(yo[tr])) < 2:
            continue
        m = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            oof[ok][tr], yo[tr])
        p_oof[te] = m.predict(oof[ok][te])
    cal = np.isfinite(p_oof)
    p_oof, yc = p_oof[cal], yo[cal]
    # clutter rejection at full recovery per held-out lane group, and pooled
    per_lane = []
    for g in np.unique(groups[ok]):
        s = groups[ok] == g
        if (yo[s] == 1).any() and (yo[s] == 0).any():
            per_lane.append(clutter_rejection(oof[ok][s], yo[s] == 1))
    cv = {
        "folds": len(splits), "n": int(y.size), "mines": int(y.sum()),
        "auc": _auc(oof[ok], yo),
        "clutter_rejection_pooled": clutter_rejection(oof[ok], yo == 1),
        "clutter_rejection_per_lane_median": float(np.median(per_lane)) if per_lane
        else math.nan,
        "brier": float(np.mean((p_oof - yc) ** 2)) if yc.size else math.nan,
        "brier_prevalence": float(np.mean((yc.mean() - yc) ** 2)) if yc.size else math.nan,
        "ece": _ece(p_oof, yc) if yc.size else math.nan,
    }
    cv = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
          for k, v in cv.items()}
    return SetModel(FEATURE_SETS[name], base, trees, ix, iy, cv)


#: the cross-validation groups of :func:`train_model`
CV_GROUPS = ("lane", "site")


def train_model(training: TrainingSet, *, sets: Sequence[str] | None = None,
                n_splits: int = 5, estimator_kw: Mapping[str, Any] | None = None,
                notes: str = "", progress: Callable[[str], None] | None = None,
                cv_groups: str = "lane") -> Model:
    """Train and calibrate one sub-model per feature set present in ``training``.

    Sensor-alone sets are also trained from the fused ones (``"emi"`` from
    ``"emi+gpr"`` with its EMI columns), so a model trained on dual-sensor lanes
    works on single-sensor recordings too.

    ``cv_groups``: ``"lane"`` (default) keeps every lane of a site (every
    recording of it) in one fold; ``"site"`` keeps every site in one fold, so
    the cross-validated figures are those of a site the model has not seen
    (needs recordings of at least 2 sites).
    """
    if cv_groups not in CV_GROUPS:
        raise ConfigError(f"cross-validation groups must be one of {', '.join(CV_GROUPS)}, "
                          f"got {cv_groups!r}")
    X, y, g = dict(training.X), dict(training.y), dict(training.groups)
    # (a set built without sites: the site is the part of the lane group before "/")
    st = {n: training.sites[n] if n in training.sites else
          np.array([v.split("/", 1)[0] for v in g[n].tolist()]) for n in g}
    for fused, alone in (("emi+gpr", "emi"), ("gpr+emi", "gpr")):
        if fused in X:
            cols = [FEATURE_SETS[fused].index(c) for c in FEATURE_SETS[alone]]
            Xa = X[fused][:, cols]
            if alone in X:
                X[alone] = np.vstack([X[alone], Xa])
                y[alone] = np.concatenate([y[alone], y[fused]])
                g[alone] = np.concatenate([g[alone], g[fused]])
                st[alone] = np.concatenate([st[alone], st[fused]])
            else:
                X[alone], y[alone], g[alone], st[alone] = Xa, y[fused], g[fused], st[fused]
    names = [n for n in (sets or FEATURE_SETS) if n in X]
    if not names:
        raise ConfigError("no training alarms of any feature set")
    out = {}
    for name in names:
        sm = _fit_set(X[name], y[name], g[name], name, n_splits=n_splits,
                      estimator_kw=estimator_kw,
                      cv_groups=st[name] if cv_groups == "site" else None,
                      what="sites" if cv_groups == "site" else "lanes")
        out[name] = sm
        if progress:
            c = sm.cv

            def f(key: str, spec: str, c: dict = c) -> str:
                # (a figure the folds could not give is None: not measured)
                return "n/a" if c.get(key) is None else format(c[key], spec)

            progress(f"{name}: {c['n']} alarms ({c['mines']} mines), {cv_groups}-grouped "
                     f"{c['folds']}-fold CV: AUC {f('auc', '.3f')}, clutter rejected at full "
                     f"recovery {f('clutter_rejection_pooled', '.1%')} pooled / "
                     f"{f('clutter_rejection_per_lane_median', '.1%')} per-lane median, "
                     f"Brier {f('brier', '.3f')} (prevalence-only "
                     f"{f('brier_prevalence', '.3f')}), ECE {f('ece', '.3f')}")
    import sklearn

    meta = {
        "software": "demine", "software_version": __version__,
        "features_version": FEATURES_VERSION,
        "sklearn_version": sklearn.__version__,
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training": training.summary(), "estimator": dict(estimator_kw or {}),
        "calibration": f"isotonic on out-of-fold scores of a {cv_groups}-grouped CV",
        "cv_groups": cv_groups,
        "neighbourhood_radius": float(training.radius),
        "notes": notes,
    }
    return Model(out, meta)


# --------------------------------------------------------------------------
# Applying a model
# --------------------------------------------------------------------------


def apply_model(recording: Any, model: Model | str | Path | None = None,
                alarms: Mapping[str, ArrayLike] | None = None, *,
                calibration: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``p_mine`` of every alarm of a recording.

    Parameters
    ----------
    recording : str, Path, Recording or AlarmFeatures
        The recording (its alarms table unless ``alarms`` is given), or
        features already computed by :func:`demine.features.alarm_features`.
    model : Model, str or Path, optional
        A model or model file (default: the packaged default model).
    alarms : mapping, optional
        Alarms to classify instead of the recording's table.
    calibration : mapping, optional
        Stream name to a calibration profile used instead of what the
        recording holds, as for the alarms' detection (``demine detect
        --calibration``; :func:`demine.features.alarm_features`).

    Returns
    -------
    dict of column arrays
        The alarms with ``p_mine`` filled in (NaN for alarms of no EMI/GPR
        sensor) and ``label`` set to ``"mine?"`` / ``"clutter?"`` at p = 0.5
        (a display label; thresholds belong to the user).
    """
    if model is None:
        model = load_default_model()
    elif not isinstance(model, Model):
        model = load_model(model)
    # refused before the (slow) features of the recording are computed
    model.check_compatible()
    radius = model.radius
    af = recording if isinstance(recording, AlarmFeatures) else alarm_features(
        recording, alarms, radius=radius, calibration=calibration)
    if af.radius is None or abs(af.radius - radius) > 1e-12:
        af = neighbourhood_features(af, radius)
    out = {k: np.asarray(v).copy() for k, v in af.alarms.items()}
    n = len(out["x"])
    p = np.full(n, np.nan)
    for name, (rows, X) in af.sets.items():
        sm = model.check_features(name, FEATURE_SETS[name])
        if X.shape[1] != len(sm.features):
            raise ModelError(f"feature matrix of set {name!r} has {X.shape[1]} columns, "
                             f"model expects {len(sm.features)}")
        p[rows] = sm.predict(X)
    out["p_mine"] = p
    lab = np.array([("mine?" if v >= 0.5 else "clutter?") if np.isfinite(v) else ""
                    for v in p], dtype=object)
    if "label" in out:
        old = out["label"].astype(object)
        lab = np.where(lab == "", old, lab)
    out["label"] = lab
    return out


# --------------------------------------------------------------------------
# Simulated training lanes
# --------------------------------------------------------------------------


TRAINING_PHYSICS = ("default", "mixed")
#: the ``physics`` of :func:`training_lanes`: one of :data:`TRAINING_PHYSICS` per
#: layout, or ``"both"``
TRAINING_PLANS = (*TRAINING_PHYSICS, "both")
#: the survey patterns of :func:`training_scene`: hand-held side-to-side swings,
#: or parallel straight lines (a cart, or a radar's B-scan lines)
TRAINING_PATTERNS = ("sweep", "lines")


def training_scene(layout_seed: int, *, length: float = 5.0, physics: str = "default",
                   pattern: str = "sweep") -> Any:
    """A random training lane: random-minefield layout with randomised soil and survey.

    Parameters
    ----------
    layout_seed : int
        Draws the layout, the soil and the sweep.
    length : float
        Lane length, m.
    physics : {"default", "mixed"}
        ``"default"``: the simulator's default forward models.  ``"mixed"``
        (domain randomisation): each forward model independently, with
        probability 1/2, switched to its alternative
        (:class:`demine.simulate.scene.Physics`: sphere eddy-current modes
        for the EMI decay, band-limited soil relaxation with its band drawn at
        random, a Gaussian-derivative radar pulse, refraction at the ground),
        from a random stream of its own: the layout, soil and sweep are those
        of the ``"default"`` lane of the same seed.
    pattern : {"sweep", "lines"}
        ``"sweep"``: side-to-side swings across the lane (a hand-held
        detector).  ``"lines"``: parallel straight lines along it, 0.15-0.3 m
        apart, at 0.3-0.8 m/s (a cart; every object is seen from one pass or
        two, from one side, and the radar records long B-scans), drawn from a
        stream of their own: layout, soil, height and physics are those of the
        ``"sweep"`` lane of the same seed.  The scene is then named
        ``training-N-lines``.
    """
    from .simulate import parse_scene

    if physics not in TRAINING_PHYSICS:
        raise ConfigError(f"training physics must be one of {', '.join(TRAINING_PHYSICS)}, "
                          f"got {physics!r}")
    if pattern not in TRAINING_PATTERNS:
        raise ConfigError(f"training survey pattern must be one of "
                          f"{', '.join(TRAINING_PATTERNS)}, got {pattern!r}")

    text = (resources.files("demine.simulate") / "scenes" / "random-minefield.toml").read_text(
        encoding="utf-8")
    doc = tomllib.loads(text)
    rng = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 0xC1A55]))

    def logu(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    doc["scene"]["name"] = f"training-{int(layout_seed)}"
    doc["lane"]["length"] = float(length)
    doc["sweep"]["end_y"] = float(length) + 0.2
    doc["sweep"]["height"] = float(rng.uniform(0.03, 0.08))
    doc["sweep"]["speed"] = float(rng.uniform(0.5, 0.9))
    soil = doc["soil"]
    soil["magnetic_susceptibility"] = logu(5e-5, 3e-3)
    soil["viscosity"] = logu(1e-6, 6e-5)
    soil["conductivity"] = logu(1e-3, 3e-2)
    soil["moisture"] = float(rng.uniform(0.04, 0.28))
    soil["heterogeneity"] = float(rng.uniform(0.1, 0.35))
    soil["radar_clutter_density"] = float(rng.uniform(8.0, 32.0))
    soil["roughness"] = float(rng.uniform(0.002, 0.01))
    scale = length / 8.0
    extra = [
        {"class": "at-mine-min-metal", "count": int(rng.integers(0, 2)), "x": [0.3, 0.7],
         "y": [0.5, length - 0.5], "depth": [0.03, 0.15]},
        {"class": "uxo", "count": int(rng.integers(0, 2)), "x": [0.3, 0.7],
         "y": [0.5, length - 0.5], "depth": [0.05, 0.25]},
        {"class": "root", "count": int(rng.integers(0, 2)), "depth": [0.02, 0.15]},
        {"class": "void", "count": int(rng.integers(0, 3)), "depth": [0.02, 0.15]},
    ]
    groups = []
    for g in doc["clutter"]:
        g = dict(g)
        if "y" in g:
            g["y"] = [g["y"][0], min(g["y"][1], length - 0.3)]
        mult = rng.uniform(0.5, 1.6) if not g["class"].endswith("mine") and \
            "mine" not in g["class"] else 1.0
        g["count"] = max(0, int(round(g["count"] * scale * mult)))
        groups.append(g)
    groups.extend(e for e in extra if e["count"] > 0)
    doc["clutter"] = groups
    if physics == "mixed":
        prng = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 0xC1A55, 1]))
        half = prng.random(4) < 0.5
        ph: dict[str, Any] = {
            "emi_decay": "sphere-modes" if half[0] else "pasion-oldenburg",
            "soil_relaxation": "band-limited" if half[1] else "log-uniform",
            "gpr_wavelet": "gaussian-derivative" if half[2] else "ricker",
            "gpr_refraction": bool(half[3]),
        }
        tau_min = float(math.exp(prng.uniform(math.log(3e-8), math.log(1e-6))))
        tau_max = float(math.exp(prng.uniform(math.log(3e-4), math.log(1e-2))))
        if half[1]:
            ph.update(soil_tau_min=tau_min, soil_tau_max=tau_max)
        doc["physics"] = ph
    name = f"training-{int(layout_seed)}"
    if pattern == "lines":
        lrng = np.random.default_rng(np.random.SeedSequence([int(layout_seed), 0xC1A55, 2]))
        doc["sweep"]["pattern"] = "lines"
        doc["sweep"]["line_spacing"] = float(lrng.uniform(0.15, 0.3))
        doc["sweep"]["speed"] = float(lrng.uniform(0.3, 0.8))
        name += "-lines"
        doc["scene"]["name"] = name
    return parse_scene(doc, name, layout_seed=int(layout_seed))


def training_lanes(first_layout: int, n: int, physics: str = "default", *, lines: int = 0
                   ) -> list[tuple[int, str, str, str]]:
    """The lanes of a training run: ``(layout seed, physics, file stem, pattern)`` each.

    ``n`` swept layouts from ``first_layout``, then ``lines`` layouts surveyed
    in parallel lines (the ``pattern`` of :func:`training_scene`), each
    simulated once with ``physics`` (``"default"`` or ``"mixed"``, as
    :func:`training_scene`), or for ``"both"`` twice: with the default and with
    mixed physics (the two share the lane id, so grouped cross-validation keeps
    them in one fold).
    """
    if physics not in TRAINING_PLANS:
        raise ConfigError(f"training physics must be one of {', '.join(TRAINING_PHYSICS)} "
                          f"or both, got {physics!r}")
    if int(n) < 0 or int(lines) < 0:
        raise ConfigError(f"training layouts must be >= 0, got {n} swept and {lines} in lines")
    kinds = TRAINING_PHYSICS if physics == "both" else (physics,)
    first = int(first_layout)
    plan = [(seed, "sweep") for seed in range(first, first + int(n))]
    plan += [(seed, "lines") for seed in range(first + int(n), first + int(n) + int(lines))]
    return [(seed, ph, f"train-{seed}" + ("" if pat == "sweep" else f"-{pat}")
             + ("" if ph == "default" else f"-{ph}"), pat)
            for seed, pat in plan for ph in kinds]


def make_training_lane(layout_seed: int, path: str | Path, *, seed: int = 0,
                       length: float = 5.0, streams: tuple[str, ...] = ("emi", "gpr", "gps"),
                       detect_config: Any = None, physics: str = "default",
                       pattern: str = "sweep") -> Path:
    """Simulate a training lane, write it and add the detectors' alarms to it.

    ``physics`` and ``pattern`` are those of :func:`training_scene`.
    """
    from .pipeline import append_alarms, detect_recording
    from .simulate import simulate_lane

    res = simulate_lane(training_scene(layout_seed, length=length, physics=physics,
                                       pattern=pattern),
                        seed=seed, streams=streams)
    import h5py

    path = Path(path)
    res.write(path, overwrite=True, lane_id=f"training-{int(layout_seed)}")
    alarms = detect_recording(path, detect_config)
    append_alarms(path, alarms)
    with h5py.File(path, "r+") as f:  # (which detectors found them: stale_training_lanes)
        f.attrs[FINGERPRINT_ATTR] = detector_fingerprint(detect_config)
    return path


#: Root attribute of a training lane: the :func:`detector_fingerprint` of the
#: detectors whose alarms it holds.
FINGERPRINT_ATTR = "alarms_detector_fingerprint"


def stale_training_lanes(paths: Iterable[str | Path], detect_config: Any = None
                         ) -> list[Path]:
    """The training lanes whose alarms other detectors found than today's.

    A lane made by :func:`make_training_lane` records the
    :func:`detector_fingerprint` of the detectors (code, compiled kernels,
    chains and ``detect_config``) that found its alarms; a lane whose
    fingerprint differs, or that records none (made before it did, or by
    other means), is returned: a model trained on its alarms learns another
    detector's.
    """
    import h5py

    want = detector_fingerprint(detect_config)
    out = []
    for p in paths:
        with h5py.File(p, "r") as f:
            got = f.attrs.get(FINGERPRINT_ATTR)
        if isinstance(got, bytes):
            got = got.decode()
        if got != want:
            out.append(Path(p))
    return out


def _training_lane_file(args: tuple[int, str, str, str, str, dict[str, Any]]) -> str:
    seed, physics, stem, pattern, work, kw = args
    path = Path(work) / f"{stem}.h5"
    if not path.exists():
        # written under another name, renamed when complete: an interrupted
        # run leaves no lane that looks finished
        tmp = path.with_name(f"{stem}.partial.h5")
        make_training_lane(seed, tmp, seed=seed % 7, physics=physics, pattern=pattern, **kw)
        tmp.replace(path)
    return str(path)


def simulate_training_lanes(workdir: str | Path, lanes: Sequence[tuple[int, str, str, str]],
                            *, jobs: int = 1, progress: Callable[[str], Any] | None = None,
                            **kwargs: Any) -> list[Path]:
    """Simulate the lanes of a training plan into ``workdir`` (those not there yet).

    Parameters
    ----------
    workdir : path
        Directory of the lanes (``STEM.h5``; created if missing).  A lane
        already there is reused, so an interrupted run resumes.
    lanes : sequence
        The plan, as :func:`training_lanes` gives it.
    jobs : int
        Lanes simulated at once (processes).
    progress : callable, optional
        Called with a line per lane ready, in the plan's order.
    **kwargs
        More arguments of :func:`make_training_lane` (``length``, ``streams``,
        ``detect_config``).

    Returns
    -------
    list of Path
        The lanes' files, in the plan's order.
    """
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    todo = [(int(seed), ph, stem, pat, str(work), dict(kwargs))
            for seed, ph, stem, pat in lanes]
    out: list[Path] = []
    if int(jobs) == 1 or len(todo) < 2:
        done = map(_training_lane_file, todo)
        pool = None
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=min(int(jobs), len(todo)))
        done = pool.map(_training_lane_file, todo)
    try:
        for k, path in enumerate(done):
            out.append(Path(path))
            if progress is not None:
                progress(f"simulated lane {k + 1}/{len(todo)}: {path}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out
