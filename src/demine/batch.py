"""Campaign analysis: the per-file detection job on every recording, on Dask.

``demine batch GLOB… --out DIR`` runs one task per recording on a Dask
distributed cluster (a :class:`distributed.LocalCluster` by default, or an
existing scheduler for a team that scales past one machine).  Every task opens
its own recording read-only and writes its own outputs; no HDF5 handle is ever
shared or shipped between processes.  The per-file job
(:func:`process_file`) is the batch path of :mod:`demine.pipeline` (the same
code as the live path), then the classifier when a model is given, then the
per-file evaluation against the recording's ground truth (:mod:`demine.evaluate`).

Output directory::

    DIR/campaign.parquet      every alarm of every recording (file, stream, time,
                              x, y, lon, lat, depth, velocity, score, p_mine,
                              outcome, truth_id and the detector's extra columns)
    DIR/files.parquet         one row per recording: status, error, counts, PD,
                              FA/m², searched area, seconds
    DIR/summary.json          pooled evaluation per sensor (PD with its
                              Clopper–Pearson bounds, FA/m², ROC, by class and depth)
    DIR/files/<name>-<hash>/  the per-file outputs: alarms.parquet, metrics.json,
                              lane.npz (truth + searched-area rasters), done.json

``done.json`` holds a key made of the file's absolute path, size and
modification time, the resolved configuration, the model file's hash and the
demine version; a re-run skips every file whose key still matches (unless
``force``), and a failed file (no ``done.json``) is tried again.  The file's size
and modification time (ns) when its job began are also stored plainly, in
``done.json`` and ``files.parquet`` (``size``, ``mtime_ns``), for ``demine
report`` to tell a recording changed since.  The three
campaign tables are written when every file is done (``summary.json`` last),
after those of an earlier run were removed before the first task: a run that
does not finish (Ctrl-C: :class:`BatchInterrupted`) leaves none.

Dask, ``distributed`` and ``pyarrow`` are the optional extra
``pip install 'demine[campaign]'``.  With an external scheduler the
recordings and the output directory must be reachable at the same paths from
every worker (a shared file system).
"""

from __future__ import annotations

import contextlib
import glob as _glob
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import tomllib
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, ModelError, RecordingError

__all__ = [
    "BatchInterrupted", "BatchResult", "expand_inputs", "file_dir", "job_key", "load_campaign",
    "process_file", "resolve_config", "run_batch",
]

#: Version of the batch output layout (changes invalidate done markers).
LAYOUT_VERSION = 1

#: The campaign tables, written together at the end of a run (``summary.json``
#: last): an output directory without ``summary.json`` holds no finished run.
TABLES = ("campaign.parquet", "files.parquet", "summary.json")

#: Seconds the workers of a local cluster have to start.
WORKER_START_TIMEOUT = 120.0

#: Columns of ``files.parquet``.
FILE_COLUMNS = ("file", "name", "status", "error", "cached", "seconds", "key", "has_truth",
                "n_alarms", "alarms_by_stream", "n_targets", "n_found", "pd", "pd_lower95",
                "n_false_alarms", "far_per_m2", "area_m2", "far_per_m", "path_m",
                "duration_s", "out_dir", "size", "mtime_ns")


def _need_campaign_deps() -> None:
    missing = []
    for mod in ("dask", "distributed", "pyarrow"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(
            f"demine batch needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'demine[campaign]' (dask[distributed] and pyarrow)")


# ---------------------------------------------------------------------- inputs


def expand_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """Recordings named by glob patterns (``**`` recurses) or plain paths, in order, once each
    (a file reached twice, also through a symbolic link, is taken once).

    Raises
    ------
    ConfigError
        A pattern matches nothing, or nothing at all is given.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for pat in patterns:
        s = str(pat)
        if Path(s).is_dir():   # (it would fail as a recording that cannot be read)
            raise ConfigError(f"{s}: a directory; give its recordings (e.g. '{s}/*.h5', or "
                              f"'{s}/**/*.h5' with its subdirectories)")
        if Path(s).is_file():   # (as named, also when it has [ ] or * in it)
            hits = [s]
        elif _glob.has_magic(s):
            hits = sorted(p for p in _glob.glob(s, recursive=True) if Path(p).is_file())
            if not hits:
                raise ConfigError(f"{s}: no file matches")
        else:
            raise ConfigError(f"{s}: no such file")
        for h in hits:
            # one file however reached: by symbolic links or hard links (a
            # `cp -al` snapshot in the campaign's tree had pooled it twice)
            try:
                st_ = os.stat(h)
                key: Any = (st_.st_dev, st_.st_ino)
            except OSError:
                key = os.path.realpath(h)
            if key not in seen:
                seen.add(key)
                out.append(Path(h))
    if not out:
        raise ConfigError("no recording given")
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _inline_chain(value: Any, base: Path | None) -> Any:
    """A chain reference made self-contained (file contents inlined) for hashing and shipping.

    A chain file is what :func:`demine.process.load_chain` reads as one: a
    path ending in ``.toml``, or naming an existing file (here or beside the
    config, ``base``); a ``mychain.chain`` had been hashed by its name, so a
    changed file reused results of the old one.
    """
    if isinstance(value, Path) or (isinstance(value, str) and "\n" not in value and (
            value.endswith(".toml") or Path(value).is_file()
            or (base is not None and (base / value).is_file()))):
        p = Path(value)
        if not p.is_absolute() and base is not None and not p.exists():
            p = base / p
        return _read_toml(p)
    return value


def resolve_config(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """A detection configuration, self-contained, from a chain or a detection config.

    ``source`` may be a detection config (TOML file or mapping with ``[emi]`` /
    ``[gpr]`` sections, see :mod:`demine.pipeline`), a processing chain (TOML
    file with a ``[chain]`` table, or a packaged chain name such as
    ``"gpr_default"``), which then replaces the default chain of its stream
    kind, or None (the defaults).  Chain files are inlined so the result can be
    hashed and shipped to workers that do not see the caller's directory.
    """
    from .pipeline import load_detect_config
    from .process import load_chain

    if source is None:
        return load_detect_config(None)
    if isinstance(source, Mapping):
        doc: dict[str, Any] = dict(source)
        base = None
    else:
        p = Path(source)
        if p.suffix == ".toml" or p.exists():
            doc = _read_toml(p)
            base = p.parent
        else:  # a packaged chain name
            chain = load_chain(str(source))
            if chain.kind not in ("emi", "gpr"):
                raise ConfigError(f"chain {source!r} is for streams of kind {chain.kind!r}; "
                                  "demine batch detects on emi and gpr streams")
            return load_detect_config({chain.kind: {"chain": str(source)}})
    if "chain" in doc or "step" in doc:
        kind = (doc.get("chain") or {}).get("kind")
        if kind not in ("emi", "gpr"):
            raise ConfigError(f"{source}: a chain given as --config must say kind = \"emi\" or "
                              f"\"gpr\" in its [chain] table, got {kind!r}")
        load_chain(doc)  # validate now, in the caller, not on every worker
        return load_detect_config({kind: {"chain": doc}})
    cfg = load_detect_config(doc)
    for sec in cfg.values():
        sec["chain"] = _inline_chain(sec["chain"], base)
    return cfg


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: The modules (and compiled kernels) whose code makes a per-file output
#: beside the detectors' (:func:`demine.classify.detector_fingerprint`): the
#: features and model, the evaluation, the file reader and this module.
_JOB_MODULES = ("features.py", "classify.py", "evaluate.py", "recording.py", "batch.py",
                "positions.py")
_JOB_KERNELS = ("_features",)


def code_fingerprint(config: Mapping[str, Any] | None = None) -> str:
    """SHA-256 of the code that makes a per-file output: the detectors'
    (:func:`demine.classify.detector_fingerprint`, with ``config``) and
    :data:`_JOB_MODULES`.  Part of :func:`job_key` in a run, so an output made
    by other code (an editable install changed, a build with other kernels:
    the version alone had not changed) is computed again."""
    from importlib import resources

    from .classify import detector_fingerprint

    pkg = Path(str(resources.files("demine")))
    h = hashlib.sha256(detector_fingerprint(config).encode())
    names = list(_JOB_MODULES)
    for k in _JOB_KERNELS:
        names += sorted(q.name for q in pkg.glob(k + ".*") if q.suffix in (".so", ".pyd"))
    for nm in names:
        q = pkg / nm
        h.update(nm.encode() + b"\0" + (q.read_bytes() if q.is_file() else b"<missing>"))
    return h.hexdigest()


def job_key(path: str | Path, config: Mapping[str, Any], model: str | Path | None = None,
            *, model_hash: str | None = None,
            calibration: Mapping[str, Any] | None = None,
            truth: Mapping[str, Any] | None = None, code: str | None = None) -> str:
    """Key of a per-file job: what a finished output must match to be reused.

    Made of the file's absolute path, size and modification time (ns), the
    resolved configuration, the model file's content hash, the calibration
    profiles' contents and the truth given apart from the recording (when
    given), the code's fingerprint (``code``, :func:`code_fingerprint`, when
    given), the demine version and the output layout version.
    """
    from ._version import __version__

    st = os.stat(path)
    if model is not None and model_hash is None:
        model_hash = _file_hash(Path(model))
    doc = {"file": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "config": config, "model": model_hash, "version": __version__,
           "layout": LAYOUT_VERSION}
    if calibration:  # (keys of runs without one stay as they were)
        doc["calibration"] = calibration
    if code is not None:
        doc["code"] = code
    if truth is not None:
        doc["truth"] = {k: np.asarray(v).tolist() for k, v in sorted(truth.items())}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def path_text(path: str | Path) -> str:
    """A recording's absolute path as the campaign tables hold it: UTF-8 text,
    the bytes of a name that is not UTF-8 (a Latin-1 ``é`` copied from a field
    laptop) written as ``\\xe9`` (they had stopped the campaign); the same text
    for the path and for that text, so :func:`file_dir` finds either."""
    return os.fsencode(os.path.abspath(path)).decode("utf-8", "backslashreplace")


def file_dir(out_dir: str | Path, path: str | Path) -> Path:
    """The per-file output directory of a recording (its name plus a hash of its full path).

    A name too long for the hash beside it within 255 bytes (the most a file
    system takes in one name) is cut, at a character, to fit; shorter names are
    kept whole, as they always were.
    """
    p = Path(path_text(path))
    tag = hashlib.sha1(str(p).encode("utf-8")).hexdigest()[:10]
    stem = p.stem.encode("utf-8", "surrogateescape")
    room = 255 - len(tag) - 1
    if len(stem) > room:
        stem = stem[:room]
        while True:   # (not in the middle of a character)
            try:
                stem.decode("utf-8")
                break
            except UnicodeDecodeError:
                stem = stem[:-1]
    return Path(out_dir) / "files" / f"{stem.decode('utf-8', 'surrogateescape')}-{tag}"


# ---------------------------------------------------------------------- the per-file job


def _union(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join alarm tables keeping every column (missing values NaN or "")."""
    from .pipeline import ALARM_COLUMNS

    parts = [p for p in parts if p and len(p.get("x", ()))]
    cols: list[str] = list(ALARM_COLUMNS)
    for p in parts:
        cols.extend(c for c in p if c not in cols)
    if not parts:
        out = {c: np.zeros(0) for c in cols}
        out["time"] = np.zeros(0, dtype=np.int64)
        out["stream"] = np.zeros(0, dtype=object)
        out["label"] = np.zeros(0, dtype=object)
        return out
    out = {}
    for c in cols:
        arrs = []
        textual = any(c in p and np.asarray(p[c]).dtype.kind in "OUS" for p in parts)
        for p in parts:
            n = len(p["x"])
            if c in p:
                v = np.asarray(p[c])
                arrs.append(v.astype(object) if textual else v)
            else:
                arrs.append(np.full(n, "", dtype=object) if textual else np.full(n, np.nan))
        v = np.concatenate(arrs)
        if not textual and v.dtype.kind not in "iub":
            v = v.astype(np.float64)
        out[c] = v
    order = np.argsort(out["time"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def detect_file(path: str | Path, config: Any = None,
                calibration: Mapping[str, Any] | None = None, *,
                kinds: Sequence[str] = ("emi", "gpr")) -> dict[str, np.ndarray]:
    """Alarms of every EMI and GPR stream of a recording, with each detector's extra columns.

    :func:`demine.pipeline.detect_recording` stream by stream, so that the
    GPR detector's hyperbola parameters (``two_way_time``, ``width``,
    ``fit_quality``, ``polarity``...) are kept next to the EMI detector's
    columns; missing values are NaN.  ``calibration`` maps stream names to
    calibration profiles, as for :func:`~demine.pipeline.detect_recording`.
    ``kinds``: the stream kinds detected (default both).
    """
    from .pipeline import detect_recording
    from .recording import Recording

    profiles = dict(calibration or {})
    with Recording(path) as rec:
        names = [n for n, s in rec.streams.items() if s.kind in ("emi", "gpr")]
        unknown = sorted(set(profiles) - set(names))
        names = [n for n in names if rec.streams[n].kind in kinds]
        if unknown:
            raise ConfigError(f"{path}: calibration given for stream {unknown[0]!r}, which it "
                              f"does not have as an EMI or GPR stream (streams: "
                              f"{', '.join(rec.streams) or 'none'})")
    return _union([detect_recording(path, config, streams=[n],
                                    calibration={n: profiles[n]} if n in profiles else None)
                   for n in names])


# Models loaded in this process, by file identity: a worker given many tasks loads
# the model once (0.2 s for the default model; a large one takes seconds), and
# again only if the file changes (its inode, size, modification time or status
# change time: a copy that keeps the size and modification time, as cp -p or
# rsync -t make, still changes the last)
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 4


def _loaded_model(model: str | Path, load: Callable[[Any], Any],
                  expect: str | None = None) -> Any:
    """``load(model)``, or the model this process loaded from the same file;
    with ``expect``, the SHA-256 the run's keys hold, a file whose contents
    are no longer those is refused (replaced during the run: its outputs
    would have been kept under the old model's key)."""
    try:
        st = os.stat(model)
    except OSError:
        return load(model)  # (the loader says what is wrong with the path)
    key = (os.path.abspath(model), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
           st.st_ctime_ns)
    with _MODELS_LOCK:
        m, h = _MODELS.get(key, (None, None))
    if m is None:
        m = load(model)   # (the loader checks the file: hashed only after)
    if expect is not None and h is None:
        h = _file_hash(Path(model))
    if expect is not None and h != expect:
        raise ModelError(f"{model}: the model file changed during the run (its SHA-256 is "
                         "no longer the one the run began with): run the command again")
    with _MODELS_LOCK:
        if key not in _MODELS:
            while len(_MODELS) >= _MODELS_KEPT:
                del _MODELS[next(iter(_MODELS))]
        _MODELS[key] = (m, h)
    return m


def _apply_model(model: str | Path, rec_path: Path, alarms: dict[str, np.ndarray],
                 calibration: Mapping[str, Any] | None = None,
                 model_hash: str | None = None) -> dict[str, np.ndarray]:
    """``p_mine`` of every alarm from a classifier model file (:mod:`demine.classify`).

    Uses ``demine.classify.apply_model(recording, model, alarms)``; the alarm
    table keeps its own columns and order, and takes ``p_mine`` (NaN for an
    alarm the model cannot score) and the classifier's display ``label``.
    """
    try:
        from . import classify
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelError(f"{model}: this demine has no classifier: {exc}") from exc
    apply = getattr(classify, "apply_model", None)
    if apply is None:
        raise ModelError(f"{model}: this demine has no classifier "
                         "(demine.classify.apply_model is missing)")
    load = getattr(classify, "load_model", None)
    loaded = _loaded_model(model, load, model_hash) if load is not None else model
    out = apply(rec_path, loaded, alarms, calibration=calibration)
    p = out["p_mine"] if isinstance(out, Mapping) else out
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    n = len(alarms["x"])
    if p.size != n:
        raise ModelError(f"{model}: the classifier gave {p.size} probabilities for "
                         f"{n} alarms of {rec_path}")
    unscored = ~np.isfinite(p)
    if unscored.any():   # (evaluate refuses such a column; ranked as 0 it would pass as clutter)
        names = sorted({str(v) for v in np.asarray(alarms.get("stream", np.full(n, "")),
                                                    dtype=object)[unscored].tolist()})
        raise ModelError(f"{model}: the classifier gave no p_mine for {int(unscored.sum())} "
                         f"of {n} alarms of {rec_path} (alarms of "
                         f"{', '.join(names) or 'no stream'}; it scores EMI and GPR alarms)")
    res = dict(alarms)
    res["p_mine"] = p
    if isinstance(out, Mapping) and "label" in out and len(out["label"]) == n:
        res["label"] = np.asarray(out["label"], dtype=object)
    return res


def _check_model(model: str | Path) -> None:
    """Load the model once in the caller so a bad file fails the run, not every task."""
    try:
        from . import classify
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelError(f"{model}: this demine has no classifier: {exc}") from exc
    load = getattr(classify, "load_model", None)
    if load is None or getattr(classify, "apply_model", None) is None:
        raise ModelError(f"{model}: this demine has no classifier "
                         "(demine.classify.load_model / apply_model are missing)")
    try:
        m = _loaded_model(model, load)
        check = getattr(m, "check_compatible", None)
        if check is not None:  # (a feature mismatch failed every task, not the run)
            check()
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is a bad model file
        raise ModelError(f"{model}: not a demine model: {type(exc).__name__}: {exc}") from exc


def _eval_alarms(alarms: Mapping[str, np.ndarray], score: str) -> dict[str, np.ndarray]:
    """Alarms with the evaluation score (``score`` or ``p_mine``) in ``score``.

    Every alarm has a ``p_mine`` here: :func:`_apply_model` refuses a file it
    leaves unscored, as :func:`demine.evaluate.lane_from_recording` does.
    """
    a = dict(alarms)
    a["score"] = np.asarray(a.get(score, a.get("score", np.ones(len(a["x"])))),
                            dtype=np.float64)
    return a


def _truth_mines(truth: Mapping[str, Any], path: Path) -> int:
    """The mines of a truth table (the targets PD counts), searched or not."""
    from .evaluate import _column, _mine_flags

    n = len(truth.get("x", ()))
    return int(_mine_flags(_column(truth, "is_mine", n, True), f"{path}: truth").sum()) \
        if n else 0


def _groups(alarms: Mapping[str, np.ndarray], stream_names: Sequence[str]) -> list[str]:
    """Evaluation groups of a file: "all" and one per detected stream."""
    return ["all", *stream_names]


def _to_arrow(columns: Mapping[str, np.ndarray]) -> Any:
    import pyarrow as pa

    arrays = {}
    for k, v in columns.items():
        v = np.asarray(v)
        if v.dtype.kind in "OUS":
            arrays[k] = pa.array([None if x is None else str(x) for x in v.tolist()],
                                 type=pa.string())
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays)


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=_json_default),
                   encoding="utf-8")
    os.replace(tmp, path)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _save_lane(path: Path, truth: Mapping[str, np.ndarray], lanes: Mapping[str, Any],
               meta: Mapping[str, Any]) -> None:
    """Truth and searched-area rasters of a file, without pickles (np.savez, plain arrays)."""
    arrays: dict[str, np.ndarray] = {}
    for k, v in truth.items():
        v = np.asarray(v)
        arrays[f"truth__{k}"] = v.astype(str) if v.dtype.kind in "OS" else v
    for g, ln in lanes.items():
        cov = ln.coverage
        if cov is not None:
            arrays[f"cov__{g}__mask"] = np.asarray(cov.mask, dtype=bool)
            arrays[f"cov__{g}__geom"] = np.array([cov.x0, cov.y0, cov.cell, cov.footprint])
    arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _load_lanes(fdir: Path, alarms: Mapping[str, np.ndarray], score: str) -> dict[str, Any]:
    """The :class:`demine.evaluate.Lane` of each group of a finished file."""
    from .evaluate import Coverage, Lane

    with np.load(fdir / "lane.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        truth = {k[len("truth__"):]: z[k] for k in z.files if k.startswith("truth__")}
        covs = {}
        for g in meta["groups"]:
            if f"cov__{g}__mask" in z.files:
                x0, y0, cell, fp = (float(v) for v in z[f"cov__{g}__geom"])
                covs[g] = Coverage(z[f"cov__{g}__mask"], x0, y0, cell, fp)
    out = {}
    stream = np.asarray(alarms.get("stream", np.zeros(0)), dtype=object).astype(str)
    for g in meta["groups"]:
        sel = np.ones(stream.size, dtype=bool) if g == "all" else stream == g
        a = _eval_alarms({k: np.asarray(v)[sel] for k, v in alarms.items()}, score)
        out[g] = Lane(truth=truth, alarms=a, coverage=covs.get(g),
                      footprint=float(meta["footprint"].get(g, 0.3)),
                      area=None if g in covs else math.nan, soil=meta["soil"],
                      name=meta["name"],
                      # (the lane's notes, as `demine evaluate` gives them: that
                      # a target found by two sensors counts once, the other
                      # alarm as a false alarm, had been dropped)
                      notes=list(meta.get("notes", [])) if g == "all" else [],
                      # (NaN for lanes cached before it was kept: per metre undefined)
                      path_length=meta.get("path_length", {}).get(g, math.nan))
    return out


def process_file(path: str | Path, out_dir: str | Path, config: Mapping[str, Any] | None = None,
                 model: str | Path | None = None, key: str = "", *,
                 gpr_threads: int | None = None,
                 calibration: Mapping[str, Any] | None = None,
                 truth: Mapping[str, Any] | None = None,
                 model_hash: str | None = None) -> dict[str, Any]:
    """The per-file job: detect, classify, evaluate, write outputs. Never raises.

    ``model_hash``: the SHA-256 of the model file the job's key holds (a model
    file whose contents are no longer those fails the file).

    Opens the recording read-only (several times, each handle closed before the
    next), and writes only into its own directory :func:`file_dir`.  On failure
    ``error.json`` is written and the returned dict has ``status = "failed"``
    and ``error`` (the exception type and message); otherwise ``done.json``
    (with ``key``, and the file's ``size`` and ``mtime_ns`` as the job began)
    is written last, so an interrupted job counts as not done.

    Returns
    -------
    dict
        The file's row of ``files.parquet`` (see :data:`FILE_COLUMNS`).
    """
    t0 = time.perf_counter()
    path = Path(path)
    fdir = file_dir(out_dir, path)
    row: dict[str, Any] = {"file": path_text(path), "name": Path(path_text(path)).name,
                           "status": "failed", "error": "", "cached": False, "key": key,
                           "out_dir": str(fdir)}
    try:
        fdir.mkdir(parents=True, exist_ok=True)
        for stale in ("done.json", "error.json"):
            (fdir / stale).unlink(missing_ok=True)
        st = os.stat(path)  # (what the outputs are of, for demine report to compare)
        row.update(_run_job(path, fdir, config, model, gpr_threads, calibration, truth,
                            model_hash))
        row["status"] = "done"
        row["seconds"] = time.perf_counter() - t0
        row["size"], row["mtime_ns"] = st.st_size, st.st_mtime_ns
        _write_json(fdir / "metrics.json", row)
        _write_json(fdir / "done.json", {"key": key, "file": row["file"],
                                         "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                         "finished": time.time()})
    except Exception as exc:  # noqa: BLE001 - reported per file, others go on
        row["status"] = "failed"
        msg = str(exc) or type(exc).__name__
        if str(path) not in msg and path.name not in msg:
            msg = f"{path}: {msg}"
        row["error"] = f"{type(exc).__name__}: {msg}"
        row["seconds"] = time.perf_counter() - t0
        try:
            fdir.mkdir(parents=True, exist_ok=True)
            _write_json(fdir / "error.json", {**row, "traceback": traceback.format_exc()})
        except OSError:
            pass
    return row


def _run_job(path: Path, fdir: Path, config: Mapping[str, Any] | None,
             model: str | Path | None, gpr_threads: int | None,
             calibration: Mapping[str, Any] | None = None,
             given_truth: Mapping[str, Any] | None = None,
             model_hash: str | None = None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from .evaluate import evaluate_lanes, lane_from_recording, searched_area
    from .positions import LocalFrame
    from .recording import Recording, open_for_writing

    if open_for_writing(path):
        # (it had been scored as a finished lane, part of one pooled into the
        # campaign without a word)
        raise RecordingError(f"{path}: still open for writing by its recorder (or its "
                             f"recorder stopped without closing it: `h5clear -s {path}` "
                             "marks it closed): analyse it once the recording has ended")
    cfg = dict(config) if config is not None else None
    if cfg is not None and gpr_threads and "gpr" in cfg:
        det = dict(cfg["gpr"].get("detector", {}))
        det.setdefault("nthreads", int(gpr_threads))
        cfg["gpr"] = {**cfg["gpr"], "detector": det}
    with Recording(path) as rec:
        streams = {n: (s.kind, len(s)) for n, s in rec.streams.items()}
        truth = rec.truth if given_truth is None else dict(given_truth)
        truth_given = rec.truth_given or given_truth is not None
        frame = LocalFrame.from_attrs(rec.attrs)
        durations = []
        for s in rec.streams.values():
            if len(s) >= 2:
                t = s.read(0, 1, fields=["time"])["time"][0]
                t1 = s.read(len(s) - 1, len(s), fields=["time"])["time"][0]
                durations.append((int(t1) - int(t)) / 1e9)
    alarms = detect_file(path, cfg, calibration)
    if model is not None:
        alarms = _apply_model(model, path, alarms, calibration, model_hash)
    n = len(alarms["x"])
    score = "p_mine" if model is not None else "score"
    has_truth = truth_given
    # the streams detected on: a kind switched off in the config is no sensor
    # group (it had been reported at PD 0); a recording with none to detect on
    # fails, rather than count its mines as missed
    on = [k for k in ("emi", "gpr") if ((cfg or {}).get(k) or {}).get("enabled", True)]
    det_streams = [s for s, (k, n_) in streams.items() if k in on and n_ > 0]
    empty = [s for s, (k, n_) in streams.items() if k in on and n_ == 0]
    if not det_streams and empty:
        # (it had been scored as a lane searched without an alarm: its mines
        # missed, the campaign's PD lowered and its FA/m² made unknown)
        raise ConfigError(f"{path}: no frame in its {', '.join(repr(e) for e in empty)} "
                          f"stream{'s' if len(empty) > 1 else ''} (the device sent none?): "
                          "nothing to detect on, and its mines would count as missed")
    if not det_streams:
        have = ", ".join(f"{s} ({k})" for s, (k, _) in streams.items()) or "none"
        raise ConfigError(f"{path}: no {' or '.join(k.upper() for k in on) or 'EMI or GPR'} "
                          f"stream to detect on (its streams: {have}"
                          + ("" if len(on) == 2 else "; the config switches the other kind off")
                          + ")")
    groups = _groups(alarms, det_streams)

    # Per-file evaluation (one lane per group: every alarm, and each sensor alone).
    lanes = {}
    results = {}
    footprints = {}
    lengths: dict[str, float | None] = {}
    notes: list[str] = []
    for g in groups:
        ln = lane_from_recording(path, alarms=_eval_alarms(alarms, score),
                                 alarm_stream=None if g == "all" else g, truth=given_truth)
        if ln.path is not None and ln.coverage is None:
            ln.coverage = searched_area(ln.path, ln.footprint)
            ln.path = None   # (its metres, lane_from_recording's path_length, stay with it)
        lengths[g] = ln.path_length
        lanes[g] = ln
        footprints[g] = ln.footprint
        if g == "all":
            notes.extend(ln.notes)
        results[g] = evaluate_lanes([ln])
    outcome = np.full(n, "", dtype=object)
    truth_id = np.full(n, "", dtype=object)
    stream_col = np.asarray(alarms["stream"], dtype=object).astype(str)
    tids = np.asarray(truth.get("id", np.arange(len(truth.get("x", ())))), dtype=object)
    for g in det_streams:
        sel = np.nonzero(stream_col == g)[0]
        lr = results[g].lanes[0]
        if has_truth:
            outcome[sel] = lr.alarm_kind
            m = lr.alarm_target
            truth_id[sel[m >= 0]] = tids[m[m >= 0]].astype(str)
        else:
            outcome[sel] = np.where(lr.alarm_inside, "unknown", "outside")

    cols = {"file": np.full(n, path_text(path), dtype=object),
            "file_name": np.full(n, Path(path_text(path)).name, dtype=object)}
    cols.update(alarms)
    if frame is not None:
        lon, lat = frame.to_geo(np.asarray(alarms["x"], float), np.asarray(alarms["y"], float))
    else:
        lon = lat = np.full(n, np.nan)
    cols["lon"] = np.asarray(lon, dtype=np.float64)
    cols["lat"] = np.asarray(lat, dtype=np.float64)
    cols["outcome"] = outcome
    cols["truth_id"] = truth_id
    tmp = fdir / "alarms.parquet.tmp"
    pq.write_table(_to_arrow(cols), tmp)
    os.replace(tmp, fdir / "alarms.parquet")

    # (the lane's own: read as text, as `demine evaluate` reads them; a soil
    # written as an array of strings had failed the file)
    soil, name = lanes["all"].soil, lanes["all"].name
    _save_lane(fdir / "lane.npz", truth, lanes,
               {"groups": groups, "footprint": footprints, "path_length": lengths,
                "soil": soil, "name": name,
                # (UTF-8 text, a name's bytes that are not as \xNN, as path_text
                # writes the path: the report writes them into its page)
                "notes": [n.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                          for n in notes],
                "score": score, "has_truth": has_truth})

    ev = results["all"]
    per_stream = {g: results[g].to_dict(roc=False) for g in groups}
    _write_json(fdir / "evaluation.json", per_stream)
    return {
        "has_truth": has_truth, "n_alarms": n,
        "alarms_by_stream": json.dumps({g: int(np.sum(stream_col == g)) for g in det_streams}),
        "n_targets": ev.n_targets if has_truth else 0,
        # (its truth's mines, searched or not: for the progress line; clutter
        # alone is a blank lane)
        "n_truth_mines": _truth_mines(truth, path) if has_truth else 0,
        "n_found": ev.n_found if has_truth else 0,
        "pd": _clean(ev.pd) if has_truth else None,
        "pd_lower95": _clean(ev.pd_lower95) if has_truth else None,
        "n_false_alarms": ev.n_false_alarms if has_truth else None,
        "far_per_m2": _clean(ev.far_per_m2) if has_truth else None,
        "area_m2": _clean(ev.area_m2),
        "far_per_m": _clean(ev.far_per_m) if has_truth else None,
        "path_m": _clean(ev.path_m),
        "duration_s": max(durations) if durations else None,
        "notes": notes,
    }


# ---------------------------------------------------------------------- the driver


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    out_dir : Path
    files : list of dict
        One row per recording (:data:`FILE_COLUMNS`), in input order.
    evaluations : dict
        Pooled :class:`demine.evaluate.Evaluation` per group (``"all"`` and each
        sensor stream) over the recordings with ground truth.
    campaign, files_table, summary : Path
        ``campaign.parquet``, ``files.parquet``, ``summary.json``.
    """

    out_dir: Path
    files: list[dict[str, Any]]
    evaluations: dict[str, Any] = field(default_factory=dict)
    campaign: Path | None = None
    files_table: Path | None = None
    summary: Path | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.files if r["status"] == "failed"]

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.files if r["status"] == "done"]

    @property
    def computed(self) -> list[dict[str, Any]]:
        """Files processed in this run (not reused from an earlier one)."""
        return [r for r in self.done if not r["cached"]]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Files whose finished outputs were reused."""
        return [r for r in self.done if r["cached"]]


class _Progress:
    """A one-line text progress bar on a stream (redrawn in place on a terminal)."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(total, 0)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.failed = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def update(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        if row.get("status") == "failed":
            self.failed += 1
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(round(frac * self.width))
        el = time.perf_counter() - self.t0
        line = (f"[{bar:<{self.width}}] {self.done}/{self.total} files"
                f"{f', {self.failed} failed' if self.failed else ''}  {el:5.1f} s  "
                f"{row.get('name', '')}: {_outcome(row)}")
        if not self.tty:
            print(line, file=self.stream, flush=True)
        elif row.get("status") == "failed":  # (whole, and kept on the screen)
            print("\r" + line.ljust(120), file=self.stream, flush=True)
        else:
            print("\r" + line[:120].ljust(120), end="", file=self.stream, flush=True)
            if self.done == self.total:
                print(file=self.stream, flush=True)

    def interrupted(self) -> None:
        """End a progress line left open on a terminal (before the interrupt's message)."""
        if self.tty and self.done < self.total:
            print(file=self.stream, flush=True)


def _outcome(row: Mapping[str, Any]) -> str:
    """What a finished recording came to, for its progress line: its alarms, and
    against its ground truth the targets found and the false alarms (or the
    error), and how long it took."""
    def n(k: Any, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    took = row.get("seconds")
    took = f"{took:.1f} s" if isinstance(took, (int, float)) else ""
    if row.get("status") == "failed":
        return f"failed{f' after {took}' if took else ''}: {row.get('error') or 'unknown error'}"
    parts = [n(row.get("n_alarms", 0), "alarm")]
    if row.get("has_truth"):
        if row.get("n_targets"):
            parts.append(f"{row.get('n_found', 0)}/{row['n_targets']} targets found")
        elif row.get("n_truth_mines"):   # (a truth that lists mines is no blank lane)
            parts.append(f"none of its {row['n_truth_mines']} targets in the searched area")
        else:
            parts.append("blank lane")
        if row.get("n_false_alarms") is not None:
            parts.append(n(row["n_false_alarms"], "false alarm"))
    else:
        parts.append("no ground truth")
    if took:
        parts.append(took)
    return ", ".join(parts)


def _own_truth_rows(path: Path) -> int:
    """How many rows a recording's own truth table has (0 when it cannot be
    read: the file then fails on its own)."""
    from .recording import Recording

    try:
        with Recording(path) as rec:
            return len(rec.truth.get("x", ()))
    except Exception:  # noqa: BLE001 - (reported by its job)
        return 0


def _cached_row(fdir: Path, key: str, path: Path) -> dict[str, Any] | None:
    """The row of recording ``path``'s finished outputs in ``fdir``, if their key is ``key``."""
    try:
        done = json.loads((fdir / "done.json").read_text(encoding="utf-8"))
        if done.get("key") != key:
            return None
        row = json.loads((fdir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (fdir / "alarms.parquet").exists() or not (fdir / "lane.npz").exists():
        return None
    # (an output cut short, by a power loss after done.json was written, say,
    # had ended every later run in a traceback: it is computed again)
    try:
        import zipfile

        import pyarrow.parquet as pq

        pq.read_metadata(fdir / "alarms.parquet")
        with zipfile.ZipFile(fdir / "lane.npz") as z:
            if z.testzip() is not None:
                return None
    except Exception:  # noqa: BLE001 - any unreadable output is recomputed
        return None
    row["cached"] = True
    row["out_dir"] = str(fdir)  # (where it is now: the output directory may have moved)
    if row.get("size") is None or row.get("mtime_ns") is None:
        # (outputs of a demine that did not record them: their key, made of the
        # size and modification time of the file, is that of the file as it is)
        with contextlib.suppress(OSError):
            st = os.stat(path)
            row["size"], row["mtime_ns"] = st.st_size, st.st_mtime_ns
    return row


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path, *,
              config: str | Path | Mapping[str, Any] | None = None,
              model: str | Path | None = None, scheduler: str | None = None,
              workers: int | None = None, processes: bool = True, force: bool = False,
              client: Any = None, progress: bool | Any = True,
              gpr_threads: int | None = None,
              say: Callable[[str], Any] | None = None,
              calibration: Mapping[str, Any] | None = None,
              truth: Any = None) -> BatchResult:
    """Run the per-file job over recordings on Dask; write the campaign table and summary.

    Parameters
    ----------
    inputs : sequence of str or Path
        Recordings or glob patterns (see :func:`expand_inputs`).
    out_dir : path
        Output directory (created).
    config : path, name or mapping, optional
        Detection config or processing chain (:func:`resolve_config`).
    model : path, optional
        Classifier model file: alarms get ``p_mine`` and the evaluation uses it
        as the score.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); default a
        :class:`distributed.LocalCluster` started and stopped here.
    workers : int, optional
        Workers of the local cluster (default: one per core, at most the
        number of files to process).
    processes : bool
        Local cluster workers as processes (default) or threads.
    force : bool
        Recompute files whose outputs are up to date.
    client : distributed.Client, optional
        Use this client (overrides ``scheduler`` and ``workers``).
    progress : bool or file
        Show a progress bar (on stderr, or on the given text stream).
    gpr_threads : int, optional
        Threads of the radar detector in each task (default: cores / workers
        on a local cluster, the detector's own default on a given scheduler).
        Results do not depend on it.
    say : callable, optional
        Where to print messages (default: nothing).
    calibration : mapping, optional
        Stream name to a calibration profile (a shipped name, a ``.toml``
        path or a loaded dict) used for that stream of every recording instead
        of what the recording holds (``demine detect --calibration``): by
        detection and by the classifier's features.  Every recording must
        have those streams.  The profiles' contents are part of the job key.
    truth : mapping or path, optional
        Ground truth kept apart from the recordings (a blind trial's: a CSV,
        :func:`demine.evaluate.read_truth_csv`, or a column mapping), with a
        ``file`` column naming each row's recording (by file name; without
        it, for a single recording).  It replaces the recordings' own truth
        tables; a recording with no row is a blank lane.  Each file's rows are
        part of its job key.

    Returns
    -------
    BatchResult
    """
    _need_campaign_deps()
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, int | np.integer) or workers < 1):
        # (before: checked once a cluster was made, after the "N to process"
        # line, and not at all when every file was up to date)
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
    workers = None if workers is None else int(workers)   # (Dask refuses NumPy integers)
    paths = expand_inputs(inputs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (the output directory)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot make the output directory: "
                          f"{exc.strerror or exc}") from None
    # (held to the end: a second batch into the same directory is refused)
    with _output_lock(out, say):
        cfg = resolve_config(config)
        if not any((cfg.get(k) or {}).get("enabled", True) for k in ("emi", "gpr")):
            raise ConfigError("the config switches both emi and gpr off: nothing to detect "
                              "on in any recording")
        model_hash = None
        if model is not None:
            mp = Path(model)
            if not mp.exists():
                raise ModelError(f"{model}: no such model file")
            # checked (regular file, size, contents) before it is hashed: a sparse
            # file of terabytes had been read whole first
            _check_model(mp)
            model_hash = _file_hash(mp)
            model = os.path.abspath(mp)
        # (loaded here: a bad profile fails the run, not every task; the tasks get
        # its contents, which also key the outputs)
        from .process import load_profiles

        profiles = {n: dict(p) for n, (p, _) in load_profiles(calibration).items()} or None
        truths: list[Any] = [None] * len(paths)
        notes: list[str] = []
        if truth is not None:
            from .evaluate import _per_recording, read_truth_csv

            if not isinstance(truth, str | Path | Mapping):
                raise ConfigError(f"truth must be a CSV path or a mapping of columns, got "
                                  f"{type(truth).__name__}")
            table = read_truth_csv(truth) if isinstance(truth, str | Path) else dict(truth)
            if "file" not in table and len(paths) > 1:
                raise ConfigError(f"{truth if isinstance(truth, str | Path) else 'truth'}: one "
                                  f"truth table for {len(paths)} recordings needs a 'file' "
                                  "column naming each row's recording")
            truths = _per_recording([table], paths, "truth", read_truth_csv)
            given = truth if isinstance(truth, str | Path) else "the truth given"
            for p, t in zip(paths, truths, strict=True):
                own = 0 if len(np.asarray(t.get("x", ()))) else _own_truth_rows(p)
                if own:
                    # (the truth given replaces the recording's own, as in
                    # demine evaluate; a row left out of it is worth a word)
                    notes.append(f"{p} has {own} truth row(s) of its own and none in {given}, "
                                 "which replaces them: it is scored as a blank lane (every "
                                 "alarm a false alarm)")
        code = code_fingerprint(cfg)
        keys = [job_key(p, cfg, model, model_hash=model_hash, calibration=profiles, truth=t,
                        code=code) for p, t in zip(paths, truths, strict=True)]
        rows: list[dict[str, Any] | None] = [None] * len(paths)
        todo = []
        for i, (p, k) in enumerate(zip(paths, keys, strict=True)):
            cached = None if force else _cached_row(file_dir(out, p), k, p)
            if cached is not None:
                rows[i] = cached
            else:
                todo.append(i)
        if say:
            say(f"demine batch: {len(paths)} recordings, {len(paths) - len(todo)} up to date, "
                f"{len(todo)} to process -> {out}")
            for note in notes:
                say(f"  note: {note}")
        bar = None
        if progress:
            bar = _Progress(len(todo), None if progress is True else progress)
        left_out = _earlier_files(out) - {path_text(p) for p in paths}
        gathering = gathered = False
        try:
            if todo:
                # (the tables of an earlier run go before the first task: see _run_tasks)
                _run_tasks(paths, keys, todo, rows, out, cfg, model, scheduler=scheduler,
                           workers=workers, processes=processes, client=client, bar=bar,
                           gpr_threads=gpr_threads, say=say, calibration=profiles,
                           truths=truths, model_hash=model_hash)
            result = BatchResult(out, [r for r in rows if r is not None])
            gathering = True
            _gather(result, cfg, profiles,
                    truth=None if truth is None else (os.fspath(truth) if isinstance(
                        truth, str | os.PathLike) else "given as columns"),
                    left_out=sorted(left_out), notes=notes)
            gathered = True
        except KeyboardInterrupt:
            if bar is not None:
                bar.interrupted()
            if gathering and not gathered:
                _remove_tables(out)  # (those _gather had written when interrupted)
            # (from the outputs: tasks under way when it came finish during the shutdown)
            finished = sum(1 for i in todo
                           if _cached_row(file_dir(out, paths[i]), keys[i], paths[i]) is not None)
            raise BatchInterrupted(out, finished, len(todo), len(paths) - len(todo)) from None
        except OSError as exc:
            if not gathering or gathered:
                raise
            # (a full disk had printed pyarrow's "Error writing bytes to file",
            # naming no file, and left its temporary tables)
            _remove_tables(out)
            raise OSError(exc.errno, f"cannot write the campaign tables in {out}: "
                          f"{exc.strerror or exc}. No campaign table was written; each "
                          "recording's outputs are kept, and the command run again once "
                          "there is room gathers them without recomputing") from exc
        if say:
            say(f"  done {len(result.computed)}, skipped (up to date) {len(result.skipped)}, "
                f"failed {len(result.failed)}")
            if left_out:
                names = sorted(left_out)
                say(f"  note: the campaign tables now cover these {len(paths)} recordings; "
                    f"{len(left_out)} recording(s) of the previous run into {out} are not in "
                    "them (their per-file outputs are kept: give them again to include them): "
                    + ", ".join(names[:10]) + (f" and {len(names) - 10} more"
                                                if len(names) > 10 else ""))
            for r in result.failed:
                say(f"  failed: {r['error']}")
        return result


#: the lock file of an output directory, held while a batch writes into it
LOCK_NAME = ".demine-batch.lock"


@contextlib.contextmanager
def _output_lock(out: Path, say: Callable[[str], Any] | None = None) -> Any:
    """Hold ``out``'s lock for a run: a second batch into the same directory is
    refused (the two would take each other's per-file outputs into their
    campaign tables, pooling two score scales in one ROC).

    An advisory ``flock`` on :data:`LOCK_NAME`: released by the system when
    the process ends however it ends, so a killed run leaves no stale lock.
    Where there is no ``fcntl`` (Windows), or the file system takes no lock
    (ENOLCK on an NFS without lockd, some FUSE and CIFS mounts), runs are not
    locked: said, not refused.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = out / LOCK_NAME
    try:
        fh = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write into the output directory: "
                          f"{exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = (fh.read().strip().splitlines() or [""])[-1]
            raise ConfigError(f"{out}: another demine batch is writing into it"
                              f"{f' ({who})' if who else ''}; wait for it to finish, or "
                              "give another output directory") from None
        except OSError as exc:
            if say:
                say(f"  note: {out} cannot be locked ({exc.strerror or exc}): run no other "
                    "batch into it meanwhile")
            yield
            return
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


class BatchInterrupted(KeyboardInterrupt):
    """:func:`run_batch` was interrupted (Ctrl-C): no campaign tables were written.

    The recordings finished before the interrupt keep their per-file outputs
    (with ``done.json``): a re-run of the same command skips them and does the
    rest.  A :class:`KeyboardInterrupt`, so code that stops on Ctrl-C still does.

    Attributes
    ----------
    out_dir : Path
        The output directory.
    finished : int
        Recordings processed in this run before the interrupt.
    to_process : int
        Recordings this run had to process.
    up_to_date : int
        Recordings whose outputs of an earlier run were up to date.
    """

    def __init__(self, out_dir: Path, finished: int, to_process: int, up_to_date: int) -> None:
        self.out_dir = Path(out_dir)
        self.finished = finished
        self.to_process = to_process
        self.up_to_date = up_to_date
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"interrupted: {self.finished} of {self.to_process} recordings processed "
                f"({self.up_to_date} already up to date); no campaign tables written in "
                f"{self.out_dir} (run the same command again to finish: it skips the "
                "recordings already processed)")


def _remove_tables(out: Path) -> None:
    """Remove the campaign tables (and their temporary files) from ``out``."""
    for name in TABLES:
        for p in (out / name, out / (name + ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _earlier_files(out: Path) -> set[str]:
    """The recordings of the campaign tables already in ``out``; without them
    (a run interrupted after it removed them: it had then named none), those
    with finished per-file outputs there."""
    try:
        return {str(r["file"]) for r in read_parquet(out / "files.parquet").to_pylist()}
    except (OSError, ConfigError, KeyError):
        pass
    found = set()
    for done in (out / "files").glob("*/done.json"):
        try:
            name = json.loads(done.read_text(encoding="utf-8")).get("file")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            found.add(name)
    return found


def _run_tasks(paths: list[Path], keys: list[str], todo: list[int],
               rows: list[dict[str, Any] | None], out: Path, cfg: Mapping[str, Any],
               model: str | Path | None, *, scheduler: str | None, workers: int | None,
               processes: bool, client: Any, bar: _Progress | None,
               gpr_threads: int | None = None,
               say: Callable[[str], Any] | None = None,
               calibration: Mapping[str, Any] | None = None,
               truths: Sequence[Any] | None = None,
               model_hash: str | None = None) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = client is None
    if client is None:
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: "
                                  f"{exc}") from exc
            except (ValueError, TypeError) as exc:  # (a traceback before)
                raise ConfigError(f"--scheduler {scheduler!r} is no scheduler address "
                                  f"(expected tcp://HOST:PORT): {exc}") from None
        else:
            ncpu = os.cpu_count() or 1
            n = workers if workers is not None else min(ncpu, len(todo))
            if n < 1:
                raise ConfigError(f"--workers must be >= 1, got {n}")
            if gpr_threads is None:
                gpr_threads = max(1, ncpu // n)
            # (worker processes are added below; each gets the share of the memory
            # it would have with n_workers=n: a fraction <= 1 is of the machine's)
            cluster = LocalCluster(n_workers=0 if processes else n, threads_per_worker=1,
                                   processes=processes, dashboard_address=":0",
                                   silence_logs=40,
                                   memory_limit=1.0 / n)
    futures: dict[Any, int] = {}
    interrupted = False
    try:
        if cluster is not None:
            if processes:
                _start_workers_without_sigint(cluster, n)
            client = Client(cluster)
            try:
                client.wait_for_workers(n, timeout=WORKER_START_TIMEOUT)
            except TimeoutError:
                raise ConfigError(f"the local Dask cluster did not start its {n} workers "
                                  f"within {WORKER_START_TIMEOUT:g} s") from None
        if say:
            info = client.scheduler_info()
            nw = len(info.get("workers", {}))
            where = (f"scheduler {scheduler}" if scheduler and cluster is None and own_client
                     else "local cluster" if cluster is not None else "given client")
            say(f"  Dask: {where}, {nw} workers")
        if bar is not None:
            bar.t0 = time.perf_counter()
        # The tables of an earlier run go before any per-file output changes: a run
        # that does not finish (Ctrl-C, a crash) leaves none, rather than an earlier
        # run's tables that look complete beside per-file outputs no longer theirs.
        _remove_tables(out)
        for i in todo:
            fut = client.submit(process_file, str(os.path.abspath(paths[i])), str(out.resolve()),
                                cfg, None if model is None else str(model), keys[i],
                                gpr_threads=gpr_threads, calibration=calibration,
                                truth=None if truths is None else truths[i],
                                model_hash=model_hash, pure=False,
                                key=f"demine-batch-{Path(path_text(paths[i])).stem}-"
                                    f"{uuid.uuid4().hex}")  # (a key is UTF-8 text)
            futures[fut] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died under this file
                row = {"file": path_text(paths[i]), "name": Path(path_text(paths[i])).name,
                       "status": "failed", "cached": False, "key": keys[i],
                       "error": f"{type(exc).__name__}: {paths[i]}: {exc}",
                       "out_dir": str(file_dir(out, paths[i]))}
            rows[i] = row
            if bar is not None:
                bar.update(row)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with _interrupt_shutdown(interrupted, shield=cluster is not None and processes):
            if client is not None:
                if interrupted and futures and not own_client:
                    # a client given by the caller stays open: take our tasks off its
                    # cluster (a task already running there still finishes)
                    with contextlib.suppress(Exception):
                        client.cancel(list(futures))
                if own_client:
                    client.close()
            if cluster is not None:
                cluster.close()


def _start_workers_without_sigint(cluster: Any, n: int, timeout: float = 30.0) -> None:
    """Start ``n`` worker processes of a local cluster that ignore SIGINT.

    A Ctrl-C in a terminal goes to every process of its foreground group, the
    cluster's worker processes included: they would die under it, each at its
    own moment, while this process shuts the cluster down, and Dask would print
    their tracebacks.  Started while this process ignores SIGINT, they inherit the
    ignored disposition through ``exec`` (Python then installs no
    KeyboardInterrupt handler in them), and only this process acts on a
    Ctrl-C: it stops the cluster, which stops its workers.  SIGINT is ignored
    here only until the worker processes exist (milliseconds), not while they
    start up, so a Ctrl-C is not lost; elsewhere than in the main thread
    (where signal handlers cannot be changed) the workers start as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        cluster.scale(n)
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: leave it alone
        cluster.scale(n)
        return
    before = set(multiprocessing.active_children())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster.scale(n)
        deadline = time.monotonic() + timeout
        while (len(set(multiprocessing.active_children()) - before) < n
               and time.monotonic() < deadline):
            time.sleep(0.005)
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _interrupt_shutdown(interrupted: bool, *, shield: bool) -> Any:
    """After an interrupt: no log output while the cluster is shut down (its
    workers' tasks are cut short, which Dask logs as errors).

    With ``shield`` (a local cluster of worker processes, whose shutdown takes
    a few seconds at most: a worker busy with a task is killed) a second
    Ctrl-C does not cut the shutdown short, leaving worker processes behind.
    Thread workers cannot be killed (their shutdown waits for the tasks under
    way): there a second Ctrl-C is left as it is.
    """
    if not interrupted:
        yield
        return
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    previous = None
    if shield and threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        logging.disable(disabled)


def _gather(result: BatchResult, config: Mapping[str, Any] | None = None,
            calibration: Mapping[str, Any] | None = None, truth: str | None = None,
            left_out: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
    """Write campaign.parquet, files.parquet and summary.json from the per-file outputs.

    Raises
    ------
    ConfigError
        A file's outputs are no longer those of this run (``done.json`` names
        another job key: written meanwhile by something else, such as the tasks
        of an interrupted run still running on a scheduler).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .evaluate import evaluate_lanes

    out = result.out_dir
    # summary.json marks a finished run: it goes first and comes back last
    (out / "summary.json").unlink(missing_ok=True)
    tables = []
    lanes: dict[str, list[Any]] = {}
    score = "score"
    for row in result.done:
        fdir = file_dir(out, row["file"])
        try:
            key = json.loads((fdir / "done.json").read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError):
            key = None
        if key != row["key"]:
            raise ConfigError(f"{row['file']}: its outputs in {fdir} were replaced while this "
                              "run went on (by another run's tasks?); run the command again")
        t = pq.read_table(fdir / "alarms.parquet")
        tables.append(t)
        if not row.get("has_truth"):
            continue
        d = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
        with np.load(fdir / "lane.npz", allow_pickle=False) as z:
            score = json.loads(str(z["meta"])).get("score", "score")
        for g, ln in _load_lanes(fdir, d, score).items():
            lanes.setdefault(g, []).append(ln)
    if tables:
        campaign = pa.concat_tables(tables, promote_options="permissive")
    else:
        campaign = _to_arrow({"file": np.zeros(0, dtype=object), "x": np.zeros(0),
                              "y": np.zeros(0)})
    result.campaign = out / "campaign.parquet"
    pq.write_table(campaign, str(result.campaign) + ".tmp")
    os.replace(str(result.campaign) + ".tmp", result.campaign)

    ftab: dict[str, list[Any]] = {c: [] for c in FILE_COLUMNS}
    for row in result.files:
        for c in FILE_COLUMNS:
            v = row.get(c)
            # (Parquet holds UTF-8: an error naming a file whose name is not
            # UTF-8 keeps its bytes as \\xNN, as path_text writes the path)
            ftab[c].append(v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                           if isinstance(v, str) else v)
    schema = pa.schema([
        ("file", pa.string()), ("name", pa.string()), ("status", pa.string()),
        ("error", pa.string()), ("cached", pa.bool_()), ("seconds", pa.float64()),
        ("key", pa.string()), ("has_truth", pa.bool_()), ("n_alarms", pa.int64()),
        ("alarms_by_stream", pa.string()), ("n_targets", pa.int64()),
        ("n_found", pa.int64()), ("pd", pa.float64()), ("pd_lower95", pa.float64()),
        ("n_false_alarms", pa.int64()), ("far_per_m2", pa.float64()),
        ("area_m2", pa.float64()), ("far_per_m", pa.float64()), ("path_m", pa.float64()),
        ("duration_s", pa.float64()), ("out_dir", pa.string()),
        ("size", pa.int64()), ("mtime_ns", pa.int64())])
    result.files_table = out / "files.parquet"
    pq.write_table(pa.Table.from_pydict(ftab, schema=schema), str(result.files_table) + ".tmp")
    os.replace(str(result.files_table) + ".tmp", result.files_table)

    summary: dict[str, Any] = {
        "n_files": len(result.files), "n_done": len(result.done),
        "n_failed": len(result.failed), "n_computed": len(result.computed),
        "n_skipped": len(result.skipped), "n_alarms": int(campaign.num_rows),
        "score": score, "config": config, "calibration": calibration,
        # (truth kept apart from the recordings: the report draws each file's
        # lane with the truth its job was given, kept in its lane.npz)
        "truth": truth,
        "failed": [{"file": r["file"], "error": r["error"]} for r in result.failed],
        # (recordings of the previous run into this directory that this one left out)
        "left_out": list(left_out),
        "notes": list(notes),
        "evaluation": {},
    }
    for g, lns in lanes.items():
        ev = evaluate_lanes(lns)
        result.evaluations[g] = ev
        summary["evaluation"][g] = ev.to_dict()
    if not lanes:
        summary["note"] = "no recording with ground truth: PD and FA/m² not evaluated"
    result.summary = out / "summary.json"
    _write_json(result.summary, summary)


def campaign_file_dir(out_dir: str | Path, row: Mapping[str, Any]) -> Path:
    """The per-file output directory of a ``files.parquet`` row, checked to hold
    that row's results: its ``done.json`` key is the row's (a task of an
    interrupted run, still running on a scheduler, may have replaced them
    after this run's tables were written: pooled figures and per-file tables
    would then disagree).  A missing or replaced one is a
    :class:`~demine.errors.ConfigError` saying to run the batch again."""
    fdir = file_dir(out_dir, row["file"])
    try:
        key = json.loads((fdir / "done.json").read_text(encoding="utf-8")).get("key")
    except FileNotFoundError:
        raise ConfigError(f"{fdir}: the per-file output of {row['file']} is missing (removed "
                          "since the batch?): run demine batch again") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{fdir / 'done.json'}: damaged per-file output ({exc}): run demine "
                          "batch again") from None
    if row.get("key") is not None and key != row["key"]:
        raise ConfigError(f"{fdir}: the outputs of {row['file']} were replaced after this "
                          "campaign's tables were written (by a task of another run still "
                          "running?): run demine batch again")
    return fdir


def load_campaign(out_dir: str | Path) -> dict[str, Any]:
    """Read a batch output directory: the alarm table, file table, summary and pooled lanes.

    Returns
    -------
    dict
        ``alarms`` (dict of column arrays), ``files`` (list of row dicts),
        ``summary`` (the parsed ``summary.json``), ``lanes`` (``{group: [Lane]}``
        of the files with ground truth, for :func:`demine.evaluate.evaluate_lanes`).
    """
    import zipfile

    out = Path(out_dir)
    if not (out / "summary.json").exists():
        if (out / "files").is_dir():
            raise ConfigError(f"{out}: no summary.json: the demine batch run into it did not "
                              "finish (interrupted, or still running); run it again to "
                              "write the campaign tables")
        raise ConfigError(f"{out}: not a demine batch output (no summary.json)")
    path = out / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: damaged batch summary, not JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path}: damaged batch summary, expected a JSON object, "
                          f"got {type(summary).__name__}")
    def table(name: str) -> Any:
        if not (out / name).is_file():
            # (the whole message had been the path: "demine report: error: DIR/...")
            raise ConfigError(f"{out}: damaged batch output: {name} is missing beside "
                              "summary.json; run the batch again to write the campaign tables")
        return read_parquet(out / name)

    t = table("campaign.parquet")
    alarms = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    ft = table("files.parquet")
    missing = {"name", "file", "status"} - set(ft.column_names)
    if missing:
        raise ConfigError(f"{out / 'files.parquet'}: damaged file table, no column(s) "
                          f"{sorted(missing)}")
    files = ft.to_pylist()
    lanes: dict[str, list[Any]] = {}
    for row in files:
        if row["status"] != "done" or not row.get("has_truth"):
            continue
        # (under the directory given, not the one recorded: it may have been moved
        # or copied, and the recorded one may hold another run's results)
        fdir = campaign_file_dir(out, row)
        ft = read_parquet(fdir / "alarms.parquet")
        d = {c: ft.column(c).to_numpy(zero_copy_only=False) for c in ft.column_names}
        try:
            found = _load_lanes(fdir, d, summary.get("score", "score"))
        except (ValueError, KeyError, TypeError, zipfile.BadZipFile):
            raise ConfigError(f"{fdir / 'lane.npz'}: damaged batch output, not the lane "
                              "archive demine batch writes") from None
        for g, ln in found.items():
            lanes.setdefault(g, []).append(ln)
    return {"alarms": alarms, "files": files, "summary": summary, "lanes": lanes}


def read_parquet(path: str | Path) -> Any:
    """The Parquet table at ``path`` (a :class:`pyarrow.Table`) of a batch output.

    Raises
    ------
    ConfigError
        The file is not a Parquet table (damaged, truncated, another format).
    OSError
        It cannot be read (missing, no permission).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except pa.ArrowInvalid:
        raise ConfigError(f"{path}: damaged batch output, not a Parquet table") from None
