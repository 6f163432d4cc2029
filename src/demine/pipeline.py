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
    reference_frequency = 1.5e9    # Hz the wavelet-tied ones are for (scaled to the
                                   # stream's calibration 'frequency')
    [gpr.detector.merge]           # SpatialMerger: per-pass alarms -> one per object
    release_passes = 0             # e.g. one alarm per line of a cart (merge = false: none)
"""

from __future__ import annotations

import csv
import math
import numbers
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, MissingCalibrationError, RecordingError
from .positions import PassTracker
from .process import (
    Chain,
    _stream_context,
    load_chain,
    load_profiles,
    missing_calibration_hint,
    with_profile,
)

__all__ = [
    "ALARM_COLUMNS", "StreamDetector", "append_alarms", "detect_recording", "load_detect_config",
    "write_alarms_csv",
]

#: Columns of the alarm tables this module returns (those of the recording's
#: alarms table plus detector-specific ones).
ALARM_COLUMNS = ("time", "stream", "x", "y", "depth", "velocity", "score", "p_mine", "label")

#: Default ``level_drop`` of the EMI detector config: readings whose polarity is
#: negative are still searched where the ground balance's level amplitude fell by
#: more than this many robust standard deviations (:class:`demine.detect.LevelDrop`);
#: ``level_drop = false`` turns that off.
LEVEL_DROP_THRESHOLD = 5.0

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
        raw = doc.get(kind, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"detection config: {kind!r} must be a section [{kind}], "
                              f"got {raw!r}")
        sec = dict(raw)
        bad = set(sec) - {"chain", "detector", "enabled"}
        if bad:
            raise ConfigError(f"detection config [{kind}]: unknown key(s) {sorted(bad)}")
        chain = sec.get("chain", default["chain"])
        if not isinstance(chain, str | Path | Mapping | Chain):
            raise ConfigError(f"detection config [{kind}]: 'chain' must be a chain name, a "
                              f"chain file or a table, got {chain!r}")
        detector = sec.get("detector", {})
        if not isinstance(detector, Mapping):
            raise ConfigError(f"detection config [{kind}]: 'detector' must be a table "
                              f"[{kind}.detector], got {detector!r}")
        enabled = sec.get("enabled", True)
        if not isinstance(enabled, bool | np.bool_):
            raise ConfigError(f"detection config [{kind}]: 'enabled' must be true or false, "
                              f"got {enabled!r}")
        _check_detector_keys(kind, detector)
        out[kind] = {"chain": chain, "detector": dict(detector), "enabled": bool(enabled)}
    return out


def _check_detector_keys(kind: str, detector: Mapping[str, Any]) -> None:
    """Refuse a ``[kind.detector]`` key the detector does not take, when the
    config is read (a misspelt one had failed every file of a batch, one by
    one, or a recording once its device was open)."""
    if not detector:
        return
    import inspect

    if kind == "emi":
        from .detect import EMIDetector as cls
    else:
        from .hyperbola import GPRDetector as cls
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    # (and what StreamDetector takes before the detector: the EMI polarity
    # rule's exemption, the radar's merging of line alarms)
    extra = {"emi": {"level_drop"}, "gpr": {"merge"}}[kind]
    bad = sorted(str(k) for k in detector
                 if (k not in params and k not in extra) or k == "self")
    if bad:
        known = sorted({k for k in params if k != "self"} | extra)
        raise ConfigError(f"detection config [{kind}.detector]: unknown key(s) {bad}; the "
                          f"{kind.upper()} detector takes {', '.join(known)}")


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
        for key in ("sample_interval", "time_zero", "antenna_height"):
            if key in context:
                p.setdefault(key, context[key])
        if "frequency" not in p and "frequency" in context:
            # the radar's centre frequency scales the detector's wavelet-tied
            # parameters (given for reference_frequency, 1.5 GHz by default)
            f = context["frequency"]
            if not (isinstance(f, int | float) and math.isfinite(f) and f > 0):
                raise ConfigError(
                    f"GPR stream {context.get('stream', '?')!r}: calibration 'frequency' must "
                    f"be the radar's centre frequency in Hz (> 0), got {f!r}; correct the "
                    "calibration or give [gpr.detector] frequency")
            p["frequency"] = float(f)
        if "sample_interval" not in p:
            raise MissingCalibrationError(
                f"GPR stream {context.get('stream', '?')!r} has no sample interval: record it "
                "with a calibration profile (e.g. --calibration gpr=gpr-default) or give "
                "[gpr.detector] sample_interval", "sample_interval")
        if "time_zero" not in p:
            warnings.warn(
                f"GPR stream {context.get('stream', '?')!r} gives no time zero (calibration "
                "'time_zero'): apex times and depths count from its first sample; give "
                "[gpr.detector] time_zero, or record with a calibration profile",
                UserWarning, stacklevel=3)
        try:
            return GPRDetector(**p)
        except TypeError as exc:
            raise ConfigError(f"[gpr.detector]: {exc}") from exc
    raise ConfigError(f"no detector for streams of kind {kind!r}")


class SpatialMerger:
    """Merge alarms of repeated passes over one object into one alarm (streaming).

    A radar line detector reports an object once per pass; a hand-held sweep
    passes over it every second or so.  An alarm within ``radius`` metres of an
    open cluster joins it; a cluster that received nothing for
    ``release_time`` seconds of stream time is closed and becomes one alarm:
    the score-weighted centroid of the members that reach half the strongest
    score, with the strongest member's score, depth and velocity, and
    ``n_passes`` members.

    Where the sensor's passes last longer than ``release_time`` (a cart's
    lines, a single line), the next pass cannot come back in time, and each
    line would give an alarm of its own over one object: there a cluster waits
    ``release_passes`` times the duration of the passes (at most
    ``max_release_time``), as the EMI detector does.  The passes are measured
    on the path fed to :meth:`track` (:class:`demine.positions.PassTracker`);
    a hand-held sweep's swings (a second or two) keep ``release_time``.

    Stream time closes clusters only ``latency`` seconds late: a detector
    reports an alarm after its look-ahead, with the (earlier) time of its
    apex, and no alarm may arrive for a cluster already closed.  As long as
    the detector's latency stays below ``latency``, the output depends only on
    the alarms and stream times fed, not on how they were chunked, so live
    equals batch.  The path must be tracked at least up to the time of each
    alarm fed (a detector's alarms lag its input).
    """

    def __init__(self, radius: float = 0.2, release_time: float = 3.0,
                 latency: float = 5.0, link_radius: float = 0.0, split: float = 2.0,
                 min_members: int = 2, release_passes: float = 2.5,
                 max_release_time: float = 120.0, turn_step: float = 0.05) -> None:
        if not radius > 0 or not release_time > 0 or not latency >= 0:
            raise ConfigError("[gpr.detector.merge]: radius and release_time must be "
                              "positive, latency non-negative")
        if not link_radius >= 0 or not split >= 1 or not int(min_members) >= 1:
            raise ConfigError("[gpr.detector.merge]: link_radius must be >= 0, split >= 1 "
                              "and min_members >= 1")
        if not release_passes >= 0 or not max_release_time >= release_time \
                or not turn_step > 0:
            raise ConfigError("[gpr.detector.merge]: release_passes must be >= 0, "
                              "max_release_time >= release_time and turn_step > 0")
        self.radius = float(radius)
        self.release_ns = int(release_time * 1e9)
        self.latency_ns = int(latency * 1e9)
        self.link_radius = float(link_radius)
        self.split = float(split)
        self.min_members = int(min_members)
        self.release_passes = float(release_passes)
        self.max_release_ns = int(max_release_time * 1e9)
        self._passes = PassTracker(float(turn_step))
        self._open: list[dict[str, Any]] = []

    def track(self, x: np.ndarray, y: np.ndarray, time: np.ndarray, rate: float) -> None:
        """Follow the sensor's path (every frame in order: positions in m, int64
        UTC ns, ``rate`` frames per second) to measure how long passes last."""
        if self.release_passes > 0:
            self._passes.track(x, y, np.asarray(time, dtype=np.float64) * 1e-9, rate)

    def _wait(self, duration: float) -> int:
        """Wait (ns) after a cluster's last alarm when passes last ``duration`` s."""
        longest = int(duration * 1e9)
        if longest <= self.release_ns:
            return self.release_ns
        return max(self.release_ns, min(self.max_release_ns, int(self.release_passes * longest)))

    def _due(self, t: int) -> int | None:
        """Stream time (ns) after which a cluster whose last alarm came at ``t``
        is closed; None while the path's first pass, which ``t`` falls in, is
        not over (how long passes last is not known yet)."""
        if self.release_passes <= 0:
            return t + self.release_ns
        p = self._passes
        ts = t * 1e-9
        if ts >= p.first_end:
            return t + self._wait(p.duration(ts))
        if math.isfinite(p.first_end):
            # an alarm of the first pass waits by that pass's duration (counted
            # from the alarm when it came before the pass had a direction)
            return t + self._wait(p.first_end - min(p.first_start, ts))
        return None

    def _closed(self, c: dict[str, Any], now: int) -> bool:
        """Whether cluster ``c`` is closed by stream time ``now`` (ns)."""
        if c["due"] is None:
            c["due"] = self._due(c["last"])
            if c["due"] is None:
                # the first pass is still going on at ``now`` (the path is
                # tracked beyond it), so it lasts longer than since the
                # alarm: only the longest wait can have passed
                return now - c["last"] > self.max_release_ns
        return now > c["due"]

    @staticmethod
    def _one(m: list[dict[str, Any]]) -> dict[str, Any]:
        score = np.array([a["score"] for a in m])
        best = m[int(np.argmax(score))]
        keep = score >= 0.5 * score.max()
        w = score[keep]
        out = dict(best)
        out["x"] = float(np.dot(w, [a["x"] for a, k in zip(m, keep, strict=True) if k]) / w.sum())
        out["y"] = float(np.dot(w, [a["y"] for a, k in zip(m, keep, strict=True) if k]) / w.sum())
        out["n_passes"] = len(m)
        return out

    def _close(self, cluster: dict[str, Any]) -> list[dict[str, Any]]:
        m = cluster["members"]
        if self.link_radius <= 0 or len(m) < 2 * self.min_members:
            return [self._one(m)]
        from .detect import prominence_groups

        order = sorted(range(len(m)), key=lambda i: (-m[i]["score"], m[i]["time"], m[i]["x"]))
        groups = prominence_groups([a["x"] for a in m], [a["y"] for a in m],
                                   [a["score"] for a in m], order, self.link_radius, self.split)
        # an object seen on fewer than min_members passes is a stray pass of
        # its nearest neighbour, not an object of its own
        big = [g for g in groups if len(g) >= self.min_members]
        if len(big) <= 1:
            return [self._one(m)]
        for g in groups:
            if len(g) < self.min_members:
                a = m[g[0]]
                near = min(big, key=lambda h: (m[h[0]]["x"] - a["x"]) ** 2
                           + (m[h[0]]["y"] - a["y"]) ** 2)
                near.extend(g)
        return [self._one([m[i] for i in g]) for g in big]

    def process(self, alarms: Mapping[str, np.ndarray], now_ns: int | None) -> list[dict]:
        """Add alarms (columns); return the clusters closed by stream time ``now_ns``."""
        n = len(alarms["x"]) if "x" in alarms else 0
        closed: list[dict[str, Any]] = []
        for i in range(n):
            a = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in alarms.items()}
            t = int(a["time"])
            # close what this alarm's time has already released
            still = []
            for c in self._open:
                (closed if self._closed(c, t) else still).append(c)
            self._open = still
            best, dist = None, self.radius
            for c in self._open:
                d = float(np.hypot(a["x"] - c["cx"], a["y"] - c["cy"]))
                if d <= dist:
                    best, dist = c, d
            if best is None:
                self._open.append({"members": [a], "cx": a["x"], "cy": a["y"], "last": t,
                                   "due": self._due(t), "wsum": max(a["score"], 1e-12)})
            else:
                best["members"].append(a)
                w = max(a["score"], 1e-12)
                best["cx"] = (best["cx"] * best["wsum"] + a["x"] * w) / (best["wsum"] + w)
                best["cy"] = (best["cy"] * best["wsum"] + a["y"] * w) / (best["wsum"] + w)
                best["wsum"] += w
                if t > best["last"]:
                    best["last"], best["due"] = t, self._due(t)
        if now_ns is not None:
            still = []
            for c in self._open:
                (closed if self._closed(c, now_ns - self.latency_ns) else still).append(c)
            self._open = still
            # no alarm fed later is older than now - latency
            self._passes.forget((now_ns - self.latency_ns) * 1e-9 - 1.0)
        return [a for c in closed for a in self._close(c)]

    def finish(self) -> list[dict]:
        closed, self._open = self._open, []
        return [a for c in closed for a in self._close(c)]


def _rows_to_columns(rows: list[dict], like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not rows:
        return {k: np.asarray(v)[:0] for k, v in like.items()} if like else {}
    keys = list(rows[0])
    return {k: np.array([r[k] for r in rows]) for k in keys}


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
        # what processes the frames: the chain, or for the packaged GPR chain
        # its four steps as one fused stage (the same output, one kernel call
        # per chunk instead of four)
        self._run: Any = self.chain
        if kind == "gpr":
            from .gpr import fuse_chain

            fused = fuse_chain(self.chain.steps)
            if fused is not None:
                fused.configure(context)
                self._run = fused
        det_params = dict(detector or {})
        level_drop: Any = None
        if kind == "emi":
            from .detect import detector_defaults

            det_params = {**detector_defaults(self.chain, context), **det_params}
            # the polarity rule's fast-decay exemption (LevelDrop): its threshold,
            # or false to turn it off
            level_drop = det_params.pop("level_drop", LEVEL_DROP_THRESHOLD)
        merge = det_params.pop("merge", {}) if kind == "gpr" else None
        self.detector = _make_detector(kind, det_params, context)
        # EMI alarms are merged over sweeps by the EMI detector itself; radar
        # line alarms are merged here.
        self.merger = None
        if kind == "gpr" and merge is not False:
            try:
                self.merger = SpatialMerger(**(merge or {}))
            except TypeError as exc:
                raise ConfigError(f"[gpr.detector.merge]: {exc}") from exc
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._unplaced = 0   # radar traces left out for want of a position
        self._placed = 0
        # frames per second for the merger's path tracking (0: unknown, every frame)
        self._rate = float(context.get("sample_rate") or 0.0)
        # columns after the EMI gates: the statistic (last), and the shape
        # novelty before it when the chain's last step gives one
        steps = getattr(self.chain, "steps", None) or []
        self._n_extra = int(getattr(steps[-1], "n_extra", 1)) if steps else 1
        self._last_time: int | None = None
        self._empty: dict[tuple, dict[str, np.ndarray]] = {}
        self._level: Any = None
        self._level_col = 0
        self._levels: list[np.ndarray] = []
        self._soil: Any = None
        if kind == "emi" and level_drop is not False:
            self._tap_level(steps, level_drop)

    def _tap_level(self, steps: Sequence[Any], threshold: Any) -> None:
        """Have the chain's ground balance hand over its fitted amplitudes, for
        the polarity rule's fast-decay exemption (:class:`demine.detect.LevelDrop`);
        nothing without an ``emi.soil`` step that fits ``offset``."""
        from .detect import LevelDrop
        from .emi import MatchedDetect, SoilCompensation

        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not threshold > 0 or not math.isfinite(threshold):
            raise ConfigError(f"emi detector: level_drop must be a positive number of robust "
                              f"standard deviations, or false to turn it off, not {threshold!r}")
        k = next((i for i, s in enumerate(steps) if isinstance(s, SoilCompensation)), None)
        if k is None or "offset" not in list(steps[k].components) \
                or any(getattr(s, "resamples", False) for s in steps[k + 1:]):
            # (no level to read, or frames after the balance that are not its
            # readings one for one: no exemption, the polarity rule as before)
            return
        soil = steps[k]
        self._level_col = list(soil.components).index("offset")
        matched = next((s for s in steps if isinstance(s, MatchedDetect)), None)
        window = int(getattr(matched, "window", 31)) if matched is not None else 31
        self._level = LevelDrop(block=int(soil.learn_block), window=window,
                                threshold=float(threshold))
        self._soil = soil
        self._retap()

    def _retap(self) -> None:
        """Tap the ground balance's amplitudes (each chunk's are a new array: kept,
        not copied); again in a copy or unpickled detector, whose stage has
        dropped the tap (:meth:`demine.emi.SoilCompensation.__getstate__`)."""
        if self._soil is not None and self._soil.amplitude_tap is None:
            self._soil.amplitude_tap = self._levels.append

    def _take_levels(self, m: int) -> np.ndarray:
        """Level amplitudes of the next ``m`` frames the chain released."""
        parts, q, col = [], self._levels, self._level_col
        if q and q[0].shape[0] == m:   # (the usual case: the chunk the chain just ran)
            return q.pop(0)[:, col]
        while m > 0 and q:
            h = q[0]
            take = min(m, h.shape[0])
            parts.append(np.asarray(h[:take, col], dtype=np.float64))
            if take == h.shape[0]:
                q.pop(0)
            else:
                q[0] = h[take:]
            m -= take
        if m > 0:  # (not expected: every stage releases its readings in order)
            parts.append(np.full(m, np.nan))
        return np.concatenate(parts) if parts else np.zeros(0)

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
        if t.size:
            self._seen_time = int(t[-1])
        if self.kind == "emi":
            stat = out[:, -1]
            novelty = out[:, -2] if self._n_extra == 2 else None
            # Polarity: sign of the early half of the normalised gates, where a
            # metal response is strongest and soil residue smallest; the late,
            # noise-dominated gates would dilute it (on unseen seeds of the
            # shipped scenes: PD 0.906 vs 0.875 on mines with >= 1 g of metal,
            # 0.81 vs 1.02 FA/m², against the mean of all gates).
            gates = out[:, : out.shape[1] - self._n_extra]
            polarity = gates[:, : max(1, gates.shape[1] // 2)].mean(axis=1) \
                if gates.shape[1] else None
            if self._level is not None:
                # ... except where the balance's level fell: a fast-decaying
                # object, not a departed target's negative copy nor soil
                # (LevelDrop; independent model with 10-40 us fuzes: 29 of 42
                # found instead of 16, no more false alarms off clutter)
                drop = self._level.process(self._take_levels(out.shape[0]))
                if polarity is not None and drop.any():
                    polarity = np.where(drop, np.abs(polarity), polarity)
            return self.detector.process(stat, x, y, t, polarity, novelty)
        # A trace without a position cannot be placed on the line: the GPR
        # detector sees only positioned traces (the same ones live and in batch).
        ok = np.isfinite(x) & np.isfinite(y)
        self._placed += int(np.count_nonzero(ok))
        if not ok.all():
            self._unplaced += int(ok.size - np.count_nonzero(ok))
            out, x, y, t = out[ok], x[ok], y[ok], t[ok]
        return self.detector.process(out, x, y, t)

    def process(self, samples: np.ndarray, x: np.ndarray, y: np.ndarray,
                time: np.ndarray) -> dict[str, np.ndarray]:
        """Feed frames; return the alarms completed so far (columns :data:`ALARM_COLUMNS`)."""
        n = samples.shape[0]
        frames = (np.asarray(x, dtype=np.float64).reshape(n),
                  np.asarray(y, dtype=np.float64).reshape(n),
                  np.asarray(time, dtype=np.int64).reshape(n))
        self._pending.append(frames)
        if self.merger is not None:
            # the path ahead of the alarms (which lag the frames)
            self.merger.track(*frames, self._rate)
        self._retap()
        out = self._run.process(samples)
        alarms = self._detect(out)
        if self.merger is not None:
            if out.shape[0]:
                # stream time of the last frame the detector has seen
                self._last_time = int(self._seen_time)
            rows = self.merger.process(alarms, self._last_time)
            if not rows:
                return self._no_alarms(alarms)
            alarms = _rows_to_columns(rows, alarms)
        elif alarms and not len(next(iter(alarms.values()))):
            return self._no_alarms(alarms)  # (the detector completed none)
        return self._standard(alarms)

    def _no_alarms(self, like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``_standard`` of no rows with the columns of ``like``: made once per
        set of columns and dtypes and handed out as a new dict of the same
        empty read-only arrays (most live calls release nothing, and building
        it cost ~50 NumPy calls per call)."""
        key = tuple([(k, getattr(v, "dtype", None)) for k, v in like.items()])
        hit = self._empty.get(key)
        if hit is None:
            hit = self._standard(_rows_to_columns([], like))
            if any(d is None for _, d in key):
                return hit
            for v in hit.values():
                v.flags.writeable = False
            self._empty[key] = hit
        return dict(hit)

    def finish(self) -> dict[str, np.ndarray]:
        """End of stream: the alarms still open."""
        self._retap()
        out = self._run.finish()
        parts = [self._detect(out)] if out.shape[0] else []
        parts.append(self.detector.finish())
        alarms = _concat(parts)
        if self.merger is not None:
            rows = self.merger.process(alarms, None) + self.merger.finish()
            alarms = _rows_to_columns(rows, alarms)
        return self._standard(alarms)

    def notes(self) -> list[str]:
        """What the processing chain decided from the data (:meth:`Chain.notes
        <demine.process.Chain.notes>`), e.g. a transmitter pulse the ground
        balance found, and what the detector decided from the stream (the GPR
        detector's parameters scaled to the radar's centre frequency)."""
        det = getattr(self.detector, "notes", None)
        # (a fused chain runs in place of the steps, which keep what they were
        # configured to: e.g. a band scaled to the radar's frequency)
        chain = self._run.notes() + ([] if self._run is self.chain else self.chain.notes())
        own = [f"{self._unplaced} radar trace(s) without a finite x, y position left out of "
               "detection (a line without y positions is read as y = 0 only when the "
               "stream has no y at all)"] if self._unplaced else []
        if self._unplaced and not self._placed:
            # (its "0 alarms" had read like a clean lane's)
            own.append("no radar trace has a position: nothing was searched; place the "
                       "traces when importing (demine import --trace-spacing M, or a GPS "
                       "sidecar beside the file)")
        return chain + (list(det()) if callable(det) else []) + own

    def _standard(self, alarms: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(alarms.values()))) if alarms else 0
        out: dict[str, np.ndarray] = {}
        for col in ALARM_COLUMNS:
            if col in alarms:
                out[col] = np.asarray(alarms[col])
            elif col == "stream":
                out[col] = np.array([self.stream] * n, dtype=object)
            elif col == "label":
                # alarms of the EMI shape-novelty channel are told apart
                shape = np.asarray(alarms.get("shape", np.zeros(n)))
                out[col] = np.array([f"{self.kind}-shape-alarm" if v else f"{self.kind}-alarm"
                                     for v in shape], dtype=object)
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
                     chunk_frames: int = 65536,
                     notes: list[str] | None = None,
                     calibration: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Alarms of every EMI and GPR stream of a recording (batch path).

    Streams are read in chunks of ``chunk_frames`` and fed through the same
    :class:`StreamDetector` the live recorder uses.  ``notes``, when given, is
    extended with what the processing chains decided from the data
    (:meth:`StreamDetector.notes`), each prefixed with its stream's name.

    ``calibration`` maps stream names to calibration profiles (a shipped
    name, a ``.toml`` path, or a loaded profile dict) used instead of what
    the recording holds: e.g. the time zero ``demine calibrate time-zero``
    measured on an imported file, or the gate times of a detector recorded
    without a profile.  The recording is not changed.
    """
    from .recording import Recording

    cfg = load_detect_config(config)
    profiles = load_profiles(calibration)
    parts = []
    with Recording(path) as rec:
        names = streams if streams is not None else [
            n for n, s in rec.streams.items() if s.kind in ("emi", "gpr")]
        for name in list(names) + [n for n in profiles if n not in names]:
            if name not in rec.streams:
                raise ConfigError(f"{path}: no stream {name!r}; streams are "
                                  f"{sorted(rec.streams)}")
        for name in profiles:
            kind = rec.streams[name].kind
            why = ("not an EMI or GPR stream" if kind not in ("emi", "gpr") else
                   "not among the streams asked for" if name not in names else
                   f"its kind's detection is off in the config ({kind}.enabled)"
                   if not cfg[kind]["enabled"] else None)
            if why:
                raise ConfigError(f"{path}: calibration given for stream {name!r}, which "
                                  f"is not detected: {why}")
        for name in names:
            s = rec.streams[name]
            sec = cfg.get(s.kind)
            if sec is None or not sec["enabled"]:
                continue
            ctx = _stream_context(s)
            if name in profiles:
                ctx, note = with_profile(ctx, s, *profiles[name])
                if notes is not None:
                    notes.append(f"{name}: {note}")
            try:  # (a stage may find what it lacks only at the first frames)
                det = StreamDetector(s.kind, ctx, sec["chain"], sec["detector"])
                n = len(s)
                for start in range(0, n, chunk_frames):
                    d = s.read(start, min(n, start + chunk_frames),
                               fields=["samples", "x", "y", "time"])
                    parts.append(det.process(d["samples"], d["x"], d["y"], d["time"]))
                parts.append(det.finish())
            except MissingCalibrationError as exc:
                raise missing_calibration_hint(exc, name) from None
            if notes is not None:
                notes.extend(f"{name}: {n}" for n in det.notes())
    alarms = concat_alarms(parts)
    order = np.argsort(alarms["time"], kind="stable")
    return {k: v[order] for k, v in alarms.items()}


def write_alarms_csv(alarms: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write an alarm table (columns of :data:`demine.pipeline.ALARM_COLUMNS`) as CSV.

    ``x`` and ``y`` are required; a missing column is written as empty cells.
    Text cells (``stream``, ``label``) that a spreadsheet would take for a
    formula are written behind a single quote, as by ``demine export``
    (:data:`demine.export.CSV_FORMULA_START`);
    :func:`demine.evaluate.read_alarms_csv` reads them back as they were.
    """
    from .export import _csv_cell

    path = Path(path)
    missing = [c for c in ("x", "y") if c not in alarms]
    if missing:
        raise ConfigError(f"alarms for {path}: column {missing[0]!r} is required")
    n = len(alarms["x"])
    cols = [alarms.get(c) for c in ALARM_COLUMNS]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ALARM_COLUMNS)
        for i in range(n):
            w.writerow(["" if c is None else _csv_cell(c[i]) for c in cols])
    return path


def _dtype_shown(dt: np.dtype) -> str:
    return f"text of {dt.itemsize} bytes" if dt.kind == "S" else str(dt)


def _check_appendable(path: str | Path, group: Any, names: Sequence[str]) -> None:
    """Refuse, naming the reason, an alarms table that cannot take more rows:
    one written by another tool without demine's columns, or with columns
    that are not chunked and resizable (h5py's default: contiguous)."""
    import h5py

    from .recording import TABLES, _decode

    units = {c.name: c.units for c in TABLES["alarms"] if c.units in ("m", "m s-1", "kg")}
    kinds = {c.name: c for c in TABLES["alarms"]}
    why = None
    if not isinstance(group, h5py.Group):
        why = "it is not a group of columns"
    else:
        for name in names:
            ds = group.get(name)
            if not isinstance(ds, h5py.Dataset):
                why = f"it has no column {name!r}"
                break
            if ds.chunks is None or ds.maxshape[:1] != (None,):
                why = (f"its column {name!r} is not resizable (datasets must be created "
                       "chunked with maxshape=(None,) to be appended to)")
                break
            col = kinds.get(name)
            vlen_text = col is not None and col.dtype.kind == "S" and ds.dtype.kind == "O"
            if col is not None and not vlen_text and (ds.dtype.kind != col.dtype.kind
                                                      or ds.dtype.itemsize < col.dtype.itemsize):
                # (an int32 label had failed halfway through an append, S4 text cut
                # 'operator' to 'oper', a float32 time lost its nanoseconds)
                why = (f"its column {name!r} holds {_dtype_shown(ds.dtype)}, and demine's "
                       f"alarms need {_dtype_shown(col.dtype)}")
                break
            unit = _decode(ds.attrs.get("units", ""))
            want = units.get(name)
            if unit and want and str(unit).strip() != want:
                why = (f"its column {name!r} is in {unit!r}, and demine's alarms are in "
                       f"{want}")
                break
    if why:
        raise RecordingError(f"{path}: cannot append alarms to its /alarms table: {why} "
                             "(written by another tool?). Nothing was changed; write the "
                             "alarms to a CSV file instead (demine detect --out CSV)")


def alarm_counts(path: str | Path) -> dict[str, int]:
    """Alarms already in a recording's alarms table, per stream."""
    from .recording import Recording

    with Recording(path) as rec:
        streams = rec.alarms.get("stream")
    if streams is None or not len(streams):
        return {}
    names, counts = np.unique(np.asarray(streams, dtype=str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def check_alarms_absent(path: str | Path, streams: Sequence[str]) -> None:
    """Raise :class:`RecordingError` when the recording's alarms table already
    holds alarms of one of ``streams`` (live detection, an earlier
    ``demine detect --write``): appending them again would count every
    object twice (twice the false alarms)."""
    have = alarm_counts(path)
    for s in streams:
        if have.get(str(s)):
            raise RecordingError(
                f"{path}: its alarms table already holds {have[str(s)]} alarms of stream "
                f"{s!r} (from live detection or an earlier --write); not appended again "
                "('demine detect --write --replace' replaces them; or compare with "
                "'demine detect --out CSV' and 'demine evaluate --alarms CSV')")


def append_alarms(path: str | Path, alarms: dict[str, np.ndarray], *,
                  replace: bool | Sequence[str] = False) -> int:
    """Append alarms to the alarms table of a finished recording (raw data untouched).

    Refused (:class:`RecordingError`) when the table already holds alarms of
    one of their streams (:func:`check_alarms_absent`), unless ``replace``:
    then the table's alarms of those streams (``True``), or of the streams
    named (a sequence: those detected, even when they gave no alarm now),
    are removed first; the other streams' are kept, in their order.
    """
    import h5py

    from .recording import TABLES, _decode, create_columns

    def _text(v: Any) -> str:  # (bytes decoded, not "b'emi'")
        return str(_decode(v))

    cols = {c.name: c for c in TABLES["alarms"]}
    n = len(alarms["x"])
    streams = sorted({_text(s) for s in np.asarray(alarms["stream"])}) \
        if "stream" in alarms else []
    if not isinstance(replace, bool):
        streams = sorted(set(streams) | {str(s) for s in replace})
    missing = [c.name for c in TABLES["alarms"] if c.fill is None and c.name not in alarms]
    if n and missing:
        raise ConfigError(f"alarms for {path}: column {missing[0]!r} is required")
    for name, col in cols.items():
        # (a text cut to the column's width had named another stream: a second
        # append of the same alarms was let in, and evaluation found none)
        if col.dtype.kind == "S" and name in alarms:
            long = [t for t in (_text(v) for v in np.asarray(alarms[name]))
                    if len(t.encode("utf-8")) > col.dtype.itemsize]
            if long:
                raise ConfigError(f"alarms for {path}: {name} {long[0]!r} is longer than "
                                  f"the alarms table's {col.dtype.itemsize} bytes")
    if n and not replace:
        check_alarms_absent(path, streams)
    try:
        f = h5py.File(path, "r+", libver="latest")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open to add alarms: {exc}") from exc
    with f:
        if "alarms" not in f:  # a file made by another tool may have no alarms table yet
            # (made even for no alarm: the lane was detected on, and found nothing)
            create_columns(f.create_group("alarms"), TABLES["alarms"], table=True)
        g = f["alarms"]
        _check_appendable(path, g, list(cols) + ["index"])
        if n == 0 and not (replace and streams):
            return 0
        # The table's rows are those every column holds, as readers count them: a
        # writer stopped between its columns and its index (or within its columns)
        # leaves them unequal, and appending at the index's length had written over
        # an alarm, and a replace had mixed two alarms' columns.
        start = min(g[name].shape[0] for name in cols)
        if any(g[name].shape[0] != start for name in list(cols) + ["index"]):
            for name in cols:
                g[name].resize(start, axis=0)
            g["index"].resize(start, axis=0)
            g["index"][...] = np.arange(start)
        if replace and streams and start:
            old = np.array([_text(s) for s in g["stream"][...]], dtype=object)
            keep = ~np.isin(old, streams)
            if not keep.all():
                k = int(keep.sum())
                for name in list(cols) + ["index"]:
                    data = g[name][...]
                    g[name].resize(k, axis=0)
                    g[name][...] = np.arange(k) if name == "index" else data[keep]
                start = k
        if not n:
            return 0
        name = ""
        try:
            for name, col in cols.items():
                ds = g[name]
                ds.resize(start + n, axis=0)
                if name in alarms:
                    v = np.asarray(alarms[name])
                    if col.dtype.kind == "S":
                        v = np.array([_text(s).encode("utf-8") for s in v], dtype=col.dtype)
                    ds[start:] = v.astype(col.dtype)
                else:
                    ds[start:] = np.full(n, col.fill, dtype=col.dtype)
            g["index"].resize(start + n, axis=0)
            g["index"][start:] = np.arange(start, start + n)
        except Exception as exc:
            # (no half-written alarm left for readers, nor one that blocks a retry)
            for c in [*cols, "index"]:
                if g[c].shape[0] > start:
                    g[c].resize(start, axis=0)
            raise RecordingError(f"{path}: could not append alarms to its /alarms table "
                                 f"(column {name!r}: {exc}); the table is as it was") from exc
    return n
