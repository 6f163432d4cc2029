"""Calibration procedures that produce profiles from recordings.

* :func:`null_profile`: detector nulling — the mean reading of every gate while
  the coil is held in air, away from metal, becomes the ``null`` subtracted
  from later readings; the per-gate noise is kept as ``noise``.
* :func:`time_zero_profile`: radar time zero — the two-way time of the direct
  wave, picked trace by trace (:class:`demine.gpr.TimeZero`) and summarised by
  the median, becomes ``time_zero``.

* :func:`pulse_profile`: a metal detector's transmitter on-time, measured
  from the ground — the pulse length ``T`` whose viscous soil response
  ``1/t - 1/(t + T)`` best explains how the readings change as the head moves
  over magnetic ground, when it explains them clearly better than a
  step-off's 1/t, becomes ``pulse_length`` (used by the ground balance,
  :func:`demine.emi.soil_basis`).

Each starts from a base profile (a shipped one by name or a file) and returns a
new dict; :func:`write_profile` stores it as TOML.  ``demine calibrate`` is the
command line of all three.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from demine.emi import PULSE_GRID
from demine.errors import ConfigError

from . import load_profile


def _segment(stream: Any, start: float | None, stop: float | None) -> slice:
    t = stream.time
    if t.size == 0:
        raise ConfigError(f"stream {stream.name!r} has no frames")
    for name, v in (("start", start), ("stop", stop)):
        if v is not None and not (math.isfinite(v) and 0 <= v < 1e9):
            raise ConfigError(f"segment {name} must be seconds from the stream's start "
                              f"(finite, >= 0), got {v}")
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


def _pulse_scores(x: np.ndarray, gates: np.ndarray, block: int,
                  pulses: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Median noise-whitened residual energy of the block-to-block changes of
    the readings ``x`` left by a ground balance (viscous + offset) built for
    each pulse length (``inf``: a step-off), and the same for the offset alone:
    the medians over blocks of :func:`demine.emi._pulse_energies` (the
    ground balance's own pulse search), which ignore the minority of blocks a
    target touches.
    """
    from demine.emi import _pulse_energies, pulse_bases

    e = _pulse_energies(x, gates, block, pulse_bases(gates, pulses))
    e_off = _pulse_energies(x, gates, block, np.ones((1, gates.size, 1)))
    if e.shape[1] < 2:  # (at most one usable block change: nothing to measure)
        return np.full(pulses.size, np.nan), math.nan, int(e.shape[1])
    return np.median(e, axis=1), float(np.median(e_off[0])), int(e.shape[1])


def pulse_profile(recording: str | Path, stream: str = "emi", *, start: float | None = None,
                  stop: float | None = None, base: str | Path = "emi-pi-default",
                  max_left: float = 0.01) -> dict:
    """Measure a metal detector's transmitter on-time from a sweep over magnetic ground.

    A viscous soil answers a rectangular pulse of on-time ``T`` with
    ``1/t - 1/(t + T)`` (1/t after a long on-time).  Over the readings of
    ``start``..``stop`` seconds of ``stream`` (a sweep over ground whose
    response moves with the head's height, ideally with little metal), the
    pulse lengths of :data:`PULSE_GRID` and a step-off are each tried as the
    ground balance's viscous component; the one that leaves the least of the
    readings' changes wins (see :func:`_pulse_scores`).

    The profile gets ``pulse_length`` only when that pulse explains clearly
    more than a step-off (at least half the noise's share per block more) and
    explains the ground: it leaves at most 4 times what noise alone leaves, or
    at most ``max_left`` of the soil part (what exceeds the noise) a step-off
    leaves.  Otherwise a :class:`~demine.errors.ConfigError` names the figures:
    the ground does not tell a pulse from a step-off (a long on-time, or too
    little soil signal), or its decay is no viscous soil's under any pulse
    (frequency-dependent or band-limited ground, which the learnt balance,
    ``learn``, follows instead).
    ``pulse_fit`` records the residual energies (noise alone: about
    ``gates - 2``).
    """
    from demine.process import _stream_context
    from demine.recording import Recording

    with Recording(recording) as rec:
        if stream not in rec.streams or rec.streams[stream].kind != "emi":
            raise ConfigError(f"{recording}: no EMI stream {stream!r}")
        s = rec.streams[stream]
        seg = _segment(s, start, stop)
        x = np.asarray(s.samples[seg], dtype=np.float64)
        gates = s.gate_times
        # the reading rate as the processing chains see it
        rate = _stream_context(s).get("sample_rate", 1000.0)
    profile = load_profile(base)
    if gates is None:
        gates = profile.get("gate_times")
    if gates is None:
        raise ConfigError(f"{recording}: stream {stream!r} has no gate_times and the base "
                          "profile gives none")
    gates = np.asarray(gates, dtype=np.float64)
    if gates.size != x.shape[1]:
        raise ConfigError(f"{recording}: stream {stream!r} has {x.shape[1]} channels but "
                          f"{gates.size} gate times")
    if gates.size < 4:
        raise ConfigError(f"{recording}: {gates.size} gates cannot tell a pulse from a "
                          "step-off (need at least 4)")
    block = max(2, int(round(0.05 * float(rate))))  # 50 ms of readings
    if x.shape[0] < 40 * block:
        raise ConfigError(f"{recording}: stream {stream!r}: {x.shape[0]} readings are too "
                          f"few to measure the pulse (need {40 * block}, 2 s)")
    pulses = np.append(PULSE_GRID, np.inf)
    scores, offset_only, nblocks = _pulse_scores(x, gates, block, pulses)
    if nblocks < 39 or not (np.isfinite(scores).all() and math.isfinite(offset_only)):
        raise ConfigError(f"{recording}: stream {stream!r}: {nblocks} blocks of {block} "
                          "readings with every gate finite (need 39, 2 s): too many missing "
                          "values to measure the pulse")
    k = int(np.argmin(scores))
    floor = gates.size - 2.0  # what noise alone leaves per block
    step = float(scores[-1])
    best = float(scores[k])
    soil_step = max(step - floor, 0.0)
    soil_best = max(best - floor, 0.0)
    # a pulse is measured when it explains clearly more than a step-off does (at
    # least half the noise's share per block), and explains the ground: what it
    # leaves is near the noise, or a small part of what the step-off leaves
    figures = (f"median residual per block of {nblocks}: step-off {step:.3g}, "
               + (f"best pulse {pulses[k] * 1e6:.4g} us {best:.3g}" if np.isfinite(pulses[k])
                  else "no pulse fits better")
               + f"; noise alone about {floor:g}, the offset alone {offset_only:.3g}")
    if not np.isfinite(pulses[k]) or step - best < 0.5 * floor:
        raise ConfigError(
            f"{recording}:{stream}: the ground does not tell a pulse from a step-off "
            f"({figures}); sweep over magnetic ground, or keep the profile's long on-time"
            + ("; what a step-off leaves is not noise either: metal under much of the "
               "sweep, noise that is not white, or ground no pulse explains"
               if step > 4 * floor else ""))
    if best > 4 * floor and soil_best > max_left * soil_step:
        raise ConfigError(
            f"{recording}:{stream}: the ground's decay is not a viscous soil's under any "
            f"pulse ({figures}): no on-time to declare; the learnt balance (emi.soil "
            "learn = true) follows such ground")
    profile["pulse_length"] = float(pulses[k])
    profile["pulse_fit"] = [step, best, offset_only]
    if len(profile.get("gains", [])) != gates.size:
        profile["gains"] = [1.0] * gates.size
    if len(profile.get("null", [])) != gates.size:
        profile["null"] = [0.0] * gates.size
    profile["gate_times"] = [float(v) for v in gates]
    return _stamp(profile, f"{recording}:{stream}[{seg.start}:{seg.stop}]",
                  "transmitter on-time from the viscous soil's decay "
                  "(pulse_fit: residual per block after a step-off, after this pulse, "
                  "after the offset alone)")


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
