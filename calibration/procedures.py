"""Calibration procedures that produce profiles from recordings.

* :func:`null_profile`: detector nulling — the mean reading of every gate while
  the coil is held in air, away from metal, becomes the ``null`` subtracted
  from later readings; the per-gate noise is kept as ``noise``.
* :func:`time_zero_profile`: radar time zero — the two-way time of the direct
  wave, picked trace by trace (:class:`demine.gpr.TimeZero`) and summarised by
  the median, becomes ``time_zero``.

Both start from a base profile (a shipped one by name or a file) and return a
new dict; :func:`write_profile` stores it as TOML.  ``demine calibrate`` is the
command line of both.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from demine.errors import ConfigError

from . import load_profile


def _segment(stream: Any, start: float | None, stop: float | None) -> slice:
    t = stream.time
    if t.size == 0:
        raise ConfigError(f"stream {stream.name!r} has no frames")
    t0 = int(t[0])
    lo = 0 if start is None else int(np.searchsorted(t, t0 + int(start * 1e9)))
    hi = t.size if stop is None else int(np.searchsorted(t, t0 + int(stop * 1e9)))
    if hi - lo < 2:
        raise ConfigError(
            f"stream {stream.name!r}: the segment {start}..{stop} s holds {hi - lo} frames; "
            "need at least 2"
        )
    return slice(lo, hi)


def _stamp(profile: dict[str, Any], source: str, how: str) -> dict[str, Any]:
    profile = dict(profile)
    profile["calibrated_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    profile["calibrated_from"] = source
    profile["procedure"] = how
    return profile


def null_profile(recording: str | Path, stream: str = "emi", *, start: float | None = None,
                 stop: float | None = None, base: str | Path = "emi-pi-default") -> dict:
    """Null a detector from a reading in air (``start``..``stop`` seconds of ``stream``)."""
    from demine.recording import Recording

    with Recording(recording) as rec:
        if stream not in rec.streams or rec.streams[stream].kind != "emi":
            raise ConfigError(f"{recording}: no EMI stream {stream!r}")
        s = rec.streams[stream]
        seg = _segment(s, start, stop)
        x = s.samples[seg].astype(np.float64)
        gates = s.gate_times
    profile = load_profile(base)
    profile["null"] = [float(v) for v in np.nanmean(x, axis=0)]
    profile["noise"] = [float(v) for v in np.nanstd(x, axis=0)]
    if gates is not None:
        profile["gate_times"] = [float(v) for v in gates]
    if len(profile.get("gains", [])) != x.shape[1]:
        profile["gains"] = [1.0] * x.shape[1]
    return _stamp(profile, f"{recording}:{stream}[{seg.start}:{seg.stop}]", "null in air")


def time_zero_profile(recording: str | Path, stream: str = "gpr", *, threshold: float = 0.5,
                      base: str | Path = "gpr-default") -> dict:
    """Radar time zero from the direct wave of every trace of ``stream``."""
    from demine.gpr import TimeZero
    from demine.recording import Recording

    with Recording(recording) as rec:
        if stream not in rec.streams or rec.streams[stream].kind != "gpr":
            raise ConfigError(f"{recording}: no GPR stream {stream!r}")
        s = rec.streams[stream]
        data = s.samples
        dt = s.sample_interval
    if data.shape[0] == 0:
        raise ConfigError(f"{recording}: stream {stream!r} has no traces")
    profile = load_profile(base)
    if dt is None:
        dt = profile.get("sample_interval")
    if not dt:
        raise ConfigError(f"{recording}: stream {stream!r} has no sample_interval and the "
                          "base profile gives none")
    tz = TimeZero(threshold=threshold, mode="peak")
    tz.process(data.astype(np.float32))
    picks = tz.last_picks
    pick = float(np.median(picks))
    profile["sample_interval"] = float(dt)
    profile["time_zero"] = pick * float(dt)
    profile["time_zero_sample"] = pick
    profile["time_zero_spread"] = float(np.percentile(picks, 90) - np.percentile(picks, 10)) \
        * float(dt)
    return _stamp(profile, f"{recording}:{stream}", "direct-wave pick (peak, median of traces)")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
        return repr(f)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {type(v).__name__} to a calibration profile")


def write_profile(profile: dict[str, Any], path: str | Path) -> Path:
    """Write a flat profile (numbers, strings, lists) as TOML."""
    path = Path(path)
    lines = [f"{k} = {_toml_value(v)}" for k, v in profile.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
