"""From recorded frames to alarms: processing chain + detector, per stream.

A :class:`StreamDetector` couples the processing chain of a stream (a
:class:`~demine.process.Chain`) with its detector and keeps the frames'
positions and times aligned with the chain's output, even when a stage holds
frames back for look-ahead.  It is the one object both the live path
(``demine record``) and the batch path (``demine detect``) feed, so they give
the same alarms.

Configuration (TOML, all optional)::

    [emi]
    chain = "emi_default"          # packaged chain name, TOML path or inline table
    [emi.detector]                 # demine.detect.EMIDetector parameters
    threshold = 6.0

    [gpr]
    chain = "gpr_default"
    [gpr.detector]                 # demine.hyperbola.GPRDetector parameters
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, RecordingError
from .process import Chain, _stream_context, load_chain

__all__ = [
    "ALARM_COLUMNS", "StreamDetector", "append_alarms", "detect_recording", "load_detect_config",
    "write_alarms_csv",
]

#: Columns of the alarm tables this module returns (those of the recording's
#: alarms table plus detector-specific ones).
ALARM_COLUMNS = ("time", "stream", "x", "y", "depth", "velocity", "score", "p_mine", "label")

DEFAULT_CONFIG: dict[str, Any] = {
    "emi": {"chain": "emi_default", "detector": {}},
    "gpr": {"chain": "gpr_default", "detector": {}},
}


def load_detect_config(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """Detection configuration from a TOML file or a mapping, over the defaults."""
    if source is None:
        doc: Mapping[str, Any] = {}
    elif isinstance(source, Mapping):
        doc = source
    else:
        path = Path(source)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read detection config: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(doc) - set(DEFAULT_CONFIG)
    if unknown:
        raise ConfigError(f"detection config: unknown section(s) {sorted(unknown)}; "
                          f"sections are {sorted(DEFAULT_CONFIG)}")
    out: dict[str, Any] = {}
    for kind, default in DEFAULT_CONFIG.items():
        sec = dict(doc.get(kind, {}))
        bad = set(sec) - {"chain", "detector", "enabled"}
        if bad:
            raise ConfigError(f"detection config [{kind}]: unknown key(s) {sorted(bad)}")
        out[kind] = {"chain": sec.get("chain", default["chain"]),
                     "detector": dict(sec.get("detector", {})),
                     "enabled": bool(sec.get("enabled", True))}
    return out


def _make_detector(kind: str, params: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    if kind == "emi":
        from .detect import EMIDetector

        p = dict(params)
        if "sample_rate" in context:
            p.setdefault("sample_rate", context["sample_rate"])
        try:
            return EMIDetector(**p)
        except TypeError as exc:
            raise ConfigError(f"[emi.detector]: {exc}") from exc
    if kind == "gpr":
        try:
            from .hyperbola import GPRDetector
        except ImportError as exc:  # pragma: no cover - module ships with demine
            raise ConfigError(f"GPR detection is not available: {exc}") from exc
        p = dict(params)
        if "sample_interval" in context:
            p.setdefault("sample_interval", context["sample_interval"])
        if "sample_interval" not in p:
            raise ConfigError(
                f"GPR stream {context.get('stream', '?')!r} has no sample interval: record it "
                "with a calibration profile (e.g. --calibration gpr=gpr-default) or give "
                "[gpr.detector] sample_interval"
            )
        try:
            return GPRDetector(**p)
        except TypeError as exc:
            raise ConfigError(f"[gpr.detector]: {exc}") from exc
    raise ConfigError(f"no detector for streams of kind {kind!r}")


class StreamDetector:
    """Processing chain and detector of one stream, fed chunk by chunk.

    Parameters
    ----------
    kind : {"emi", "gpr"}
        Stream kind.
    context : mapping
        Stream facts for the chain (``gate_times``, ``sample_rate``,
        ``sample_interval``, ``n_channels``, ``stream``).
    chain : Chain, str, path or mapping
        The processing chain (default: the packaged default of the kind).
    detector : mapping
        Detector parameters.
    """

    def __init__(self, kind: str, context: Mapping[str, Any], chain: Any = None,
                 detector: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.stream = str(context.get("stream", kind))
        self.chain: Chain = load_chain(chain or DEFAULT_CONFIG[kind]["chain"])
        self.chain.configure(context)
        self.detector = _make_detector(kind, detector or {}, context)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _aligned(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions and times of the next ``m`` frames the chain released."""
        xs, ys, ts = [], [], []
        while m > 0:
            x, y, t = self._pending[0]
            take = min(m, x.shape[0])
            xs.append(x[:take])
            ys.append(y[:take])
            ts.append(t[:take])
            if take == x.shape[0]:
                self._pending.pop(0)
            else:
                self._pending[0] = (x[take:], y[take:], t[take:])
            m -= take
        if not xs:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)

    def _detect(self, out: np.ndarray) -> dict[str, np.ndarray]:
        x, y, t = self._aligned(out.shape[0])
        if self.kind == "emi":
            stat = out[:, -1]
            polarity = out[:, :-1].mean(axis=1) if out.shape[1] > 1 else None
            return self.detector.process(stat, x, y, t, polarity)
        return self.detector.process(out, x, y, t)

    def process(self, samples: np.ndarray, x: np.ndarray, y: np.ndarray,
                time: np.ndarray) -> dict[str, np.ndarray]:
        """Feed frames; return the alarms completed so far (columns :data:`ALARM_COLUMNS`)."""
        n = samples.shape[0]
        self._pending.append((np.asarray(x, dtype=np.float64).reshape(n),
                              np.asarray(y, dtype=np.float64).reshape(n),
                              np.asarray(time, dtype=np.int64).reshape(n)))
        out = self.chain.process(samples)
        return self._standard(self._detect(out))

    def finish(self) -> dict[str, np.ndarray]:
        """End of stream: the alarms still open."""
        out = self.chain.finish()
        parts = [self._detect(out)] if out.shape[0] else []
        parts.append(self.detector.finish())
        return self._standard(_concat(parts))

    def _standard(self, alarms: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(alarms.values()))) if alarms else 0
        out: dict[str, np.ndarray] = {}
        for col in ALARM_COLUMNS:
            if col in alarms:
                out[col] = np.asarray(alarms[col])
            elif col == "stream":
                out[col] = np.array([self.stream] * n, dtype=object)
            elif col == "label":
                out[col] = np.array([f"{self.kind}-alarm"] * n, dtype=object)
            elif col == "time":
                out[col] = np.zeros(n, dtype=np.int64)
            else:
                out[col] = np.full(n, np.nan)
        for col, v in alarms.items():
            out.setdefault(col, np.asarray(v))
        out["time"] = out["time"].astype(np.int64)
        return out


def _concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p and len(next(iter(p.values())))]
    if not parts:
        return {c: np.zeros(0) for c in ALARM_COLUMNS}
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}


def concat_alarms(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join alarm tables (columns common to all parts)."""
    out = _concat(parts)
    for col in ALARM_COLUMNS:
        out.setdefault(col, np.zeros(0))
    return out


def detect_recording(path: str | Path, config: Any = None, *,
                     streams: Sequence[str] | None = None,
                     chunk_frames: int = 65536) -> dict[str, np.ndarray]:
    """Alarms of every EMI and GPR stream of a recording (batch path).

    Streams are read in chunks of ``chunk_frames`` and fed through the same
    :class:`StreamDetector` the live recorder uses.
    """
    from .recording import Recording

    cfg = load_detect_config(config)
    parts = []
    with Recording(path) as rec:
        names = streams if streams is not None else [
            n for n, s in rec.streams.items() if s.kind in ("emi", "gpr")]
        for name in names:
            if name not in rec.streams:
                raise ConfigError(f"{path}: no stream {name!r}; streams are "
                                  f"{sorted(rec.streams)}")
            s = rec.streams[name]
            sec = cfg.get(s.kind)
            if sec is None or not sec["enabled"]:
                continue
            det = StreamDetector(s.kind, _stream_context(s), sec["chain"], sec["detector"])
            n = len(s)
            for start in range(0, n, chunk_frames):
                d = s.read(start, min(n, start + chunk_frames),
                           fields=["samples", "x", "y", "time"])
                parts.append(det.process(d["samples"], d["x"], d["y"], d["time"]))
            parts.append(det.finish())
    alarms = concat_alarms(parts)
    order = np.argsort(alarms["time"], kind="stable")
    return {k: v[order] for k, v in alarms.items()}


def write_alarms_csv(alarms: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write an alarm table (columns of :data:`demine.pipeline.ALARM_COLUMNS`) as CSV."""
    path = Path(path)
    n = len(alarms["x"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ALARM_COLUMNS)
        for i in range(n):
            w.writerow([alarms[c][i] for c in ALARM_COLUMNS])
    return path


def append_alarms(path: str | Path, alarms: dict[str, np.ndarray]) -> int:
    """Append alarms to the alarms table of a finished recording (raw data untouched)."""
    import h5py

    from .recording import TABLES

    cols = {c.name: c for c in TABLES["alarms"]}
    n = len(alarms["x"])
    if n == 0:
        return 0
    try:
        f = h5py.File(path, "r+", libver="latest")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open to add alarms: {exc}") from exc
    with f:
        g = f["alarms"]
        start = g["index"].shape[0]
        for name, col in cols.items():
            ds = g[name]
            ds.resize(start + n, axis=0)
            if name in alarms:
                v = np.asarray(alarms[name])
                if col.dtype.kind == "S":
                    v = np.array([str(s).encode("utf-8")[: col.dtype.itemsize] for s in v],
                                 dtype=col.dtype)
                ds[start:] = v.astype(col.dtype)
            else:
                ds[start:] = np.full(n, col.fill, dtype=col.dtype)
        g["index"].resize(start + n, axis=0)
        g["index"][start:] = np.arange(start, start + n)
    return n
