"""Calibration procedures that produce profiles from recordings.

* :func:`null_profile`: detector nulling — the mean reading of every gate while
  the coil is held in air, away from metal, becomes the ``null``, and the
  per-gate noise ``noise``: a record of the detector's in-air level and noise
  (to compare detectors, or one detector over a campaign).  The processing
  chains do not subtract it: their drift baseline (``emi.baseline``) and the
  ground balance's level term remove a constant level from the readings by
  themselves, and the detection statistic measures its own noise.
* :func:`time_zero_profile`: radar time zero — the two-way time of the direct
  wave, picked trace by trace (:class:`demine.gpr.TimeZero`, on each trace
  with its DC offset and slow drift removed) and summarised by the median,
  becomes ``time_zero``.

* :func:`wheel_profile`: a radar's survey wheel — the distance the wheel was
  pushed over a known stretch, divided by how far its count moved, becomes
  ``distance_per_count``, by which the recorder places a radar without a GPS.
* :func:`pulse_profile`: a metal detector's transmitter on-time, measured
  from the ground — the pulse length ``T`` whose viscous soil response
  ``1/t - 1/(t + T)`` best explains how the readings change as the head moves
  over magnetic ground, when it explains them clearly better than a
  step-off's 1/t, becomes ``pulse_length`` (used by the ground balance,
  :func:`demine.emi.soil_basis`).

Each starts from a base profile (a shipped one by name or a file) and returns a
new dict; :func:`write_profile` stores it as TOML.  ``demine calibrate`` is the
command line of all four, and of :func:`reposition`, which places a line
recorded before its wheel was calibrated again by the wheel's profile.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from demine._outputs import refuse_special_output, replace_text
from demine.emi import PULSE_GRID
from demine.errors import ConfigError

from . import is_shipped, load_profile

_KINDS = {"emi": "metal detector (EMI)", "gpr": "radar (GPR)", "gps": "GPS receiver"}


def _stream(rec: Any, recording: str | Path, name: str, kind: str) -> Any:
    """The stream ``name`` of an open recording, which must be of ``kind``."""
    if name not in rec.streams or rec.streams[name].kind != kind:
        have = ", ".join(f"{n} ({s.kind})" for n, s in rec.streams.items()) or "none"
        why = (f"{name!r} is its {rec.streams[name].kind} stream" if name in rec.streams
               else "no stream of that name")
        raise ConfigError(f"{recording}: no {kind.upper()} stream {name!r} ({why}; its streams: "
                          f"{have}); --stream names the one to calibrate")
    return rec.streams[name]


def check_segment(start: float | None, stop: float | None) -> None:
    """Refuse segment bounds that are not seconds from a stream's start
    (``--start``, ``--stop``), or a stop not after the start."""
    for name, v in (("start", start), ("stop", stop)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) \
                or not (math.isfinite(v) and 0 <= v < 1e9):
            raise ConfigError(f"segment {name} must be seconds from the stream's start "
                              f"(finite, >= 0), got {v} (--{name})")
    if start is not None and stop is not None and not stop > start:
        raise ConfigError(f"segment stop {stop:g} s is not after its start {start:g} s "
                          "(--stop must be after --start)")


def _segment(stream: Any, start: float | None, stop: float | None, *,
             min_frames: int = 2) -> slice:
    """The frames of ``stream`` from ``start`` to ``stop`` seconds after its
    first frame (default: from its start, to its end).  A segment that starts
    or stops beyond the stream's end, stops before it starts, or holds fewer
    than ``min_frames`` frames is refused, naming the stream's length."""
    check_segment(start, stop)
    t = np.asarray(stream.time, dtype=np.int64)
    if t.size == 0:
        raise ConfigError(f"stream {stream.name!r} has no frames")
    t0 = int(t[0])
    length = (int(t[-1]) - t0) / 1e9
    dt = float(np.median(np.diff(t))) / 1e9 if t.size > 1 else 0.0
    said = (f"stream {stream.name!r} holds {t.size} frames over {length:.6g} s "
            f"(from 0 to {length:.6g} s after its first frame)")
    if start is not None and start > length:
        raise ConfigError(f"segment start (--start) {start:g} s is beyond the end: {said}")
    # (a stop up to one frame interval past the last frame is the stream's end,
    # as its duration shows; further is a segment that is not there)
    if stop is not None and stop > length + max(dt, 0.0) + 1e-9:
        raise ConfigError(f"segment stop (--stop) {stop:g} s is beyond the end: {said}")
    lo = 0 if start is None else int(np.searchsorted(t, t0 + round(start * 1e9)))
    hi = t.size if stop is None else int(np.searchsorted(t, t0 + round(stop * 1e9)))
    if hi - lo < min_frames:
        seg = f"{0.0 if start is None else start:g}..{length if stop is None else stop:g} s"
        raise ConfigError(
            f"stream {stream.name!r}: the segment {seg} holds {max(hi - lo, 0)} frames; need at "
            f"least {min_frames} (the stream holds {t.size} frames over {length:.6g} s)"
        )
    return slice(lo, hi)


def _check_base(profile: dict[str, Any], base: str | Path, kind: str) -> None:
    """Refuse a base profile made for another kind of device (a radar's for a
    metal detector's null, say): the result would mix the two."""
    driver = profile.get("driver")
    if not isinstance(driver, str):
        return
    from demine.drivers import get_driver

    try:
        its = get_driver(driver).kind
    except ConfigError:  # (a driver this installation does not have: not judged)
        return
    if its != kind:
        raise ConfigError(f"base profile {str(base)!r} is for a {_KINDS.get(its, its)} "
                          f"(driver {driver!r}), not for the {_KINDS.get(kind, kind)} stream "
                          "calibrated; give a base profile for this device (--base)")


#: A profile's entries that hold one value per gate.
_PER_GATE = ("gate_times", "gains", "null", "noise")


def _check_gates(profile: dict[str, Any], base: str | Path, n: int, stream: str) -> None:
    """Refuse a base profile of one's own whose per-gate entries are another
    detector's (a pulse added to an 8-gate detector's profile from a 16-gate
    recording had zeroed its null and kept its noise).  A shipped profile is a
    template: its values are replaced."""
    for k in _PER_GATE:   # (gains = 5 had raised TypeError: no len())
        v = profile.get(k)
        if v is not None and not (isinstance(v, list) and all(
                isinstance(e, int | float) and not isinstance(e, bool) for e in v)):
            raise ConfigError(f"base profile {str(base)!r}: {k!r} must be a list of numbers, "
                              f"one per gate, got {v!r:.60}")
    if is_shipped(base):
        return
    other = {k: len(profile[k]) for k in _PER_GATE
             if isinstance(profile.get(k), list) and len(profile[k]) != n}
    if other:
        k, m = next(iter(other.items()))
        raise ConfigError(f"base profile {str(base)!r} has {m} values of {k!r} and stream "
                          f"{stream!r} {n} gates: another detector's profile; give this "
                          "detector's base (--base), or none")


def _device(profile: dict[str, Any], base: str | Path, driver: Any) -> dict[str, Any]:
    """The profile named for the device calibrated: its driver (the stream's
    ``driver``), and no longer the shipped template's description (a measured
    null had kept "uncalibrated (unit gains, zero null)", and a 2-channel
    detector's the reference's driver)."""
    profile = dict(profile)
    if isinstance(driver, str) and driver:
        profile["driver"] = driver
    if is_shipped(base):
        profile["description"] = (f"calibrated with demine calibrate from the shipped "
                                  f"{base} ({profile.get('driver', 'device')})")
    return profile


#: Fewest readings a null is measured from, and how far (in noise standard
#: deviations) the mean may move between parts of the segment: more means the
#: detector was not reading steadily in air.
NULL_MIN_READINGS = 20
NULL_MAX_MOVE = 10.0


def _check_quiet(x: np.ndarray, where: str) -> None:
    """Refuse a segment whose readings are not a steady reading in air.

    The segment is cut into (up to) ten parts; on every gate, the means of the
    parts must agree within :data:`NULL_MAX_MOVE` times the reading noise,
    which is measured from the differences of consecutive readings (so metal
    passing, the coil moving over ground or a drift do not inflate it).
    """
    n, g = x.shape
    fin = np.isfinite(x)
    count = fin.sum(axis=0)
    few = np.flatnonzero(count < NULL_MIN_READINGS)
    if few.size:
        raise ConfigError(f"{where}: gate {int(few[0])} has {int(count[few[0]])} finite readings "
                          f"(need at least {NULL_MIN_READINGS}): no null for it")
    parts = np.array_split(np.arange(n), min(10, n // 5))
    xz = np.where(fin, x, 0.0)
    sums = np.array([xz[i].sum(axis=0) for i in parts])
    counts = np.array([fin[i].sum(axis=0) for i in parts])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    move = np.nanmax(means, axis=0) - np.nanmin(means, axis=0)
    # mean |difference| of consecutive readings = 2 sigma / sqrt(pi) for white
    # noise; consecutive among a gate's finite readings (differences across a
    # missing one had been NaN: a gate that misses every other reading had no
    # noise, and its null was refused as "not steady")
    sigma = np.array([np.abs(np.diff(x[fin[:, j], j])).mean() for j in range(g)])
    sigma = sigma * math.sqrt(math.pi) / 2
    ratio = np.where(move > 0, move / np.where(sigma > 0, sigma, np.nan), 0.0)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    k = int(np.argmax(ratio))
    if ratio[k] > NULL_MAX_MOVE:
        raise ConfigError(
            f"{where}: not a steady reading in air: on gate {k} the mean moves by {move[k]:.3g} "
            f"between parts of the segment, "
            + (f"{ratio[k]:.0f} times the reading noise ({sigma[k]:.3g})"
               if math.isfinite(ratio[k]) else "with no reading noise")
            + f" (at most {NULL_MAX_MOVE:g}): metal near the coil, the coil moving over "
            "ground, or drift. Give --start/--stop of a stretch held still in air, away from "
            "metal")


def _stamp(profile: dict[str, Any], source: str, how: str, what: str) -> dict[str, Any]:
    """When, from what and how: ``calibrated_*`` and ``procedure`` of the latest
    calibration, and ``<what>_from`` / ``<what>_utc`` of each entry measured, so
    that a profile built in steps (a null, then a pulse with --base) keeps where
    each of its values came from."""
    profile = dict(profile)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    profile["calibrated_utc"] = now
    profile["calibrated_from"] = source
    profile["procedure"] = how
    profile[f"{what}_from"] = source
    profile[f"{what}_utc"] = now
    return profile


def null_profile(recording: str | Path, stream: str = "emi", *, start: float | None = None,
                 stop: float | None = None, base: str | Path = "emi-pi-default") -> dict:
    """Null a detector from a reading in air (``start``..``stop`` seconds of ``stream``).

    The segment must hold at least :data:`NULL_MIN_READINGS` readings, finite
    on every gate, and be steady (see :func:`_check_quiet`): a segment with
    metal near the coil or the coil swept over ground is refused rather than
    turned into a wrong null.  A coil held *still* over ground reads steadily
    too, and its soil response (a 1/t decay over magnetic ground) is then
    part of the null: nothing in the readings tells it from the detector's
    own in-air level, so the segment is taken as given.  Hold the head up,
    a metre or more from the ground and from metal, for the segment.
    """
    from demine.recording import Recording

    with Recording(recording) as rec:
        s = _stream(rec, recording, stream, "emi")
        seg = _segment(s, start, stop, min_frames=NULL_MIN_READINGS)
        x = s.samples[seg].astype(np.float64)
        gates = s.gate_times
        driver = s.attrs.get("driver")
    x[~np.isfinite(x)] = np.nan  # (an overrange reading, +-inf, is no reading either)
    profile = load_profile(base)
    _check_base(profile, base, "emi")
    _check_gates(profile, base, x.shape[1], stream)
    profile = _device(profile, base, driver)
    where = f"{recording}:{stream}[{seg.start}:{seg.stop}]"
    _check_quiet(x, where)
    profile["null"] = [float(v) for v in np.nanmean(x, axis=0)]
    profile["noise"] = [float(v) for v in np.nanstd(x, axis=0)]
    if gates is not None:
        profile["gate_times"] = [float(v) for v in gates]
    elif len(profile.get("gate_times", [])) not in (0, x.shape[1]):
        # (the base's gate times are another detector's: a profile that gave
        # them with this one's null would contradict itself)
        warnings.warn(f"base profile {str(base)!r} has {len(profile['gate_times'])} gate times, "
                      f"stream {stream!r} {x.shape[1]} gates and none recorded: the profile "
                      "is written without gate times", stacklevel=2)
        del profile["gate_times"]
    if len(profile.get("gains", [])) != x.shape[1]:
        profile["gains"] = [1.0] * x.shape[1]
    return _stamp(profile, where, "null in air", "null")


#: How far the direct wave's peak must stand out of its trace (in robust
#: standard deviations of the trace) for the trace to count in the time zero.
DIRECT_WAVE_CREST = 8.0


def _trace_level(data: np.ndarray) -> np.ndarray:
    """Each trace's level: its DC offset and a slow (linear) drift along it.

    The straight line through the medians of the trace's two halves, each at
    the half's centre (the median of the whole trace for a trace of fewer
    than 4 samples, or a half without a finite sample).  Medians, so the
    direct wave and the echoes, a few samples of each half, do not move it;
    missing samples (NaN) are left out.  Shape ``(traces, samples)``, float64.
    """
    x = np.asarray(data, dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    n, m = x.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN traces or halves)
        whole = np.nanmedian(x, axis=1) if m else np.full(n, np.nan)
        if m < 4:
            return np.repeat(whole[:, None], m, axis=1)
        h = m // 2
        a = np.nanmedian(x[:, :h], axis=1)
        b = np.nanmedian(x[:, h:], axis=1)
    ca, cb = (h - 1) / 2.0, h + (m - h - 1) / 2.0
    line = np.isfinite(a) & np.isfinite(b)
    slope = np.where(line, (b - a) / (cb - ca), 0.0)
    at = np.where(line, a, whole)
    centre = np.where(line, ca, 0.0)
    return at[:, None] + slope[:, None] * (np.arange(m)[None, :] - centre[:, None])


#: Entries of a radar stream's calibration that describe the radar itself
#: (not its time zero, which is measured): time-zero and wheel profiles keep them.
RADAR_DEVICE_KEYS = ("antenna_height", "antenna_offset", "frequency", "frequency_source",
                     "velocity")


def _radar_settings(profile: dict[str, Any], base: str | Path, own: dict[str, Any],
                    recording: str | Path, stream: str) -> dict[str, Any]:
    """What the recording says about its radar (antenna height, centre
    frequency, ...: :data:`RADAR_DEVICE_KEYS`) in the profile.  A shipped base
    is a template, the reference radar's: these replace its values; a base
    file of yours keeps its values, and takes the recording's where it has
    none."""
    profile = dict(profile)
    template = is_shipped(base)
    taken = [k for k in RADAR_DEVICE_KEYS if k in own and (template or k not in profile)]
    for k in taken:
        profile[k] = own[k]
    if template and taken:
        profile["description"] = (f"the radar of {recording}:{stream} (its {', '.join(taken)}), "
                                  f"other values the template {base}'s: "
                                  f"{profile.get('description', '')}")
    return profile


def time_zero_profile(recording: str | Path, stream: str = "gpr", *, threshold: float = 0.5,
                      base: str | Path = "gpr-default") -> dict:
    """Radar time zero from the direct wave of every trace of ``stream``.

    Each trace's level, its DC offset and a slow linear drift (see
    :func:`_trace_level`), is subtracted first; the direct wave is then picked
    at the peak of the first arrival whose ``|x|`` reaches ``threshold`` times
    the trace's largest ``|x|`` (:class:`demine.gpr.TimeZero`, ``mode="peak"``);
    a direct wave clipped by the radar's converter at the centre of its flat
    top (:func:`_clip_centres`).
    On raw samples an offset larger than about the wave's amplitude put the
    pick on the trace's first samples.  Traces without a direct wave (blank,
    or noise only) are left out; when they are the majority no time zero is
    given (ConfigError).
    """
    from demine.gpr import TimeZero
    from demine.recording import Recording

    with Recording(recording) as rec:
        s = _stream(rec, recording, stream, "gpr")
        data = s.samples
        dt = s.sample_interval
        own = dict(s.calibration or {})
        driver = s.attrs.get("driver")
    if data.shape[0] == 0:
        raise ConfigError(f"{recording}: stream {stream!r} has no traces")
    tz = TimeZero(threshold=threshold, mode="peak")  # (checks the threshold)
    profile = load_profile(base)
    _check_base(profile, base, "gpr")
    # (the template's nominal antenna height of 0 had replaced the
    # recording's own in `demine detect --calibration`)
    profile = _radar_settings(profile, base, own, recording, stream)
    if dt is None:
        dt = profile.get("sample_interval")
        if dt is not None and not (isinstance(dt, int | float) and not isinstance(dt, bool)
                                   and math.isfinite(dt) and dt > 0):
            # (-25e-12 had written a negative time zero, NaN and inf theirs)
            raise ConfigError(f"base profile {str(base)!r}: sample_interval must be a "
                              f"finite number of seconds > 0, got {dt!r}")
    if not dt:
        raise ConfigError(f"{recording}: stream {stream!r} has no sample_interval and the "
                          "base profile gives none")
    # the pick and the test for a direct wave look at the traces about their
    # level: a DC offset or a slow drift of the raw samples would pass for (or
    # drown) the direct wave
    skip = own.get("header_samples", 0)
    if isinstance(skip, int) and 0 < skip < data.shape[1]:
        # words that are not samples (a GSSI scan's counter and mark flag, at
        # -32768 once signed): given the first sample's value, as ImpDAR does
        data = np.array(data)
        data[:, :skip] = data[:, skip:skip + 1]
    x = (data.astype(np.float64) - _trace_level(data)).astype(np.float32)
    tz.process(x)
    # Only the traces with a direct wave count: one that stands out of the
    # trace (a peak of at least DIRECT_WAVE_CREST times the trace's robust
    # spread); a blank or noise-only trace gives a pick anywhere.
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN traces: no wave)
        med = np.nanmedian(x, axis=1, keepdims=True)
        dev = np.abs(x - med)
        spread = 1.4826 * np.nanmedian(dev, axis=1)
        peak = np.nanmax(np.where(np.isfinite(dev), dev, -np.inf), axis=1)
        wave = (peak > 0) & np.isfinite(peak) & (peak >= DIRECT_WAVE_CREST * spread)
    if np.count_nonzero(wave) * 2 < wave.size:
        raise ConfigError(
            f"{recording}: stream {stream!r}: {np.count_nonzero(wave)} of {wave.size} traces "
            f"have a direct wave (a peak at least {DIRECT_WAVE_CREST:g} times the trace's "
            "spread; blank or noise-only traces do not): no time zero to measure")
    picks = _clip_centres(data, tz.last_picks)[wave]
    pick = float(np.median(picks))
    profile["sample_interval"] = float(dt)
    profile["time_zero"] = pick * float(dt)
    profile["time_zero_sample"] = pick
    profile["time_zero_spread"] = float(np.percentile(picks, 90) - np.percentile(picks, 10)) \
        * float(dt)
    if isinstance(driver, str) and driver:
        profile["driver"] = driver
    return _stamp(profile, f"{recording}:{stream}", "direct-wave pick (peak, median of traces)",
                  "time_zero")


#: Fewest equal samples at a trace's extreme that are taken for a clipped
#: (saturated) direct wave: two can be chance.
CLIP_MIN_RUN = 3


def _clip_centres(raw: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``picks`` (float) with each pick on a clipped peak moved to the centre of
    its flat top.

    A direct wave that saturates the radar's converter is flat over its top: a
    run of at least :data:`CLIP_MIN_RUN` equal raw samples at the trace's
    largest or smallest value.  The peak pick stops at one end of it, which
    end depending on the level removed before the pick (late or early by half
    the top); the wave's peak is at its centre.
    """
    out = np.asarray(picks, dtype=np.float64).copy()
    n, m = raw.shape
    if n == 0 or m < CLIP_MIN_RUN:
        return out
    rows = np.arange(n)
    p = np.clip(np.asarray(picks, dtype=np.int64), 0, m - 1)
    v = raw[rows, p]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN traces)
        extreme = (v == np.nanmax(raw, axis=1)) | (v == np.nanmin(raw, axis=1))
    left = np.where(p > 0, raw[rows, np.maximum(p - 1, 0)] == v, False)
    right = np.where(p < m - 1, raw[rows, np.minimum(p + 1, m - 1)] == v, False)
    for i in np.flatnonzero(extreme & (left | right)):
        r, j = raw[i], int(p[i])
        lo, hi = j, j
        while lo > 0 and r[lo - 1] == v[i]:
            lo -= 1
        while hi < m - 1 and r[hi + 1] == v[i]:
            hi += 1
        if hi - lo + 1 >= CLIP_MIN_RUN:
            out[i] = (lo + hi) / 2
    return out


#: A move of a survey wheel's count between two traces more than this many
#: times its usual move (the 90th percentile of the run's moves) is a reset,
#: not a move.
WHEEL_JUMP = 20.0
#: Fewest moves of the count (between consecutive traces) a calibration run
#: must hold: a handful of traces cannot tell a reset from a move.
WHEEL_MIN_STEPS = 10
#: Most the count may go back over a calibration run, as a fraction of the
#: run's net count: a wheel rocking on uneven ground goes back a little; more
#: is the radar pulled back, or a run out and back, which the net count of
#: the run would not measure.
WHEEL_MAX_BACK = 0.02


def _encoder_faults(driver: Any, cols: Mapping[str, Any]) -> np.ndarray | None:
    """The traces whose wheel count the radar flagged as not to be trusted
    (its driver's ``encoder_fault_bit`` of the ``status`` column, as the
    recorder reads it); None when the stream's driver declares no such bit or
    the stream has no status."""
    if "status" not in cols or not driver:
        return None
    from demine.drivers import get_driver

    try:
        bit = int(getattr(get_driver(str(driver)), "encoder_fault_bit", 0))
    except (ConfigError, TypeError):   # (a driver not installed here, or needing options)
        return None
    return (np.asarray(cols["status"]).astype(np.int64) & bit) != 0 if bit else None


def _between_marks(rec: Any, s: Any, where: str) -> slice:
    """The traces of ``s`` from the first of two marks to the second: the
    radar's own marker flag (the ``gpr`` driver's status bit; a press held over
    several traces is one mark, at its first), else the operator's marks in
    the recording's markers table (by time; not the rows of control commands,
    :data:`demine.control.CONTROL_MARK_LABELS`)."""
    t = np.asarray(s.time, dtype=np.int64)
    t0 = int(t[0]) if t.size else 0
    flagged = None
    if s.attrs.get("driver") == "gpr" and "status" in s.field_names:
        from demine.drivers.gpr import STATUS

        on = (np.asarray(s["status"]).astype(np.int64) & STATUS["marker"]) != 0
        if on.any():
            flagged = np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))
    if flagged is not None:
        marks, what = flagged, "the radar's marker flag"
    else:
        from demine.control import CONTROL_MARK_LABELS

        tab = rec.table("markers").to_dict()
        mt = np.asarray(tab.get("time", []), dtype=np.int64)
        labels = [v.decode() if isinstance(v, bytes) else str(v)
                  for v in tab.get("label", [""] * mt.size)]
        # the operator's marks: not the rows control commands write (a pause,
        # a null, a threshold change)
        own = np.array([lb not in CONTROL_MARK_LABELS for lb in labels], dtype=bool)
        inside = own & (mt >= t0) & (mt <= (int(t[-1]) if t.size else t0))
        order = np.argsort(mt[inside], kind="stable")
        marks = np.searchsorted(t, mt[inside][order])
        shown = [labels[i] for i in np.flatnonzero(inside)[order]]
        what = "the markers table"
    if marks.size != 2:
        at = ", ".join(f"{(int(t[min(k, t.size - 1)]) - t0) / 1e9:.3f} s"
                       + (f" ({shown[i]!r})" if flagged is None else "")
                       for i, k in enumerate(marks[:6])) + (", ..." if marks.size > 6 else "")
        raise ConfigError(
            f"{where}: --marks needs exactly two marks (at the tape's start and end), "
            + (f"and {what} has {marks.size}: {at}" if marks.size else
               "and neither the radar's marker flag nor the markers table has any")
            + "; give --start/--stop of the run instead")
    if marks[1] <= marks[0]:
        # (before: a run of one trace, refused as "fewer than 2 traces with a
        # wheel count", which says nothing of the marks)
        at = f"{(int(t[min(int(marks[0]), t.size - 1)]) - t0) / 1e9:.3f} s"
        raise ConfigError(
            f"{where}: --marks needs two marks at the tape's start and end, and the two "
            f"in {what} fall on one trace, at {at}"
            + (f" ({shown[0]!r}, {shown[1]!r})" if flagged is None else "")
            + ": one mark made twice? Give --start/--stop of the run instead")
    return slice(int(marks[0]), int(marks[1]) + 1)


def wheel_profile(recording: str | Path, stream: str = "gpr", *, distance: float,
                  start: float | None = None, stop: float | None = None,
                  base: str | Path = "gpr-default", marks: bool = False) -> dict:
    """A radar's survey wheel calibrated over a known distance.

    The radar is recorded while its wheel is pushed in a straight line over
    ``distance`` metres (a tape laid on the ground), in the direction it
    surveys, from ``start`` to ``stop`` seconds of ``stream`` (or, with
    ``marks``, between the two marks made at the tape's ends: the radar's
    marker flag, else the recording's markers table); the wheel's
    count (the stream's ``encoder`` column) moves by ``N`` over that run,
    and ``distance_per_count = distance / N`` (signed: a wheel counting down
    as it goes forward gets a negative value, and is placed forward).  This
    is the survey-wheel calibration of the vendors' own software (ticks per
    metre, here its inverse).  The recorder places a radar without a GPS by
    this value (``docs/format.md``); the shipped profile's is the reference
    radar's, not yours.  An integer count that wraps (a 16-bit counter
    passing 65535) is followed across the wrap.  The recording's own radar
    settings (its sample interval and :data:`RADAR_DEVICE_KEYS`) are kept
    as :func:`time_zero_profile` keeps them.

    Refused, naming where: a stream without an ``encoder`` column; traces
    the radar flagged as an encoder fault (the ``gpr`` driver's status bit);
    a wheel that did not turn, or turned between fewer than
    :data:`WHEEL_MIN_STEPS` pairs of traces; a count that jumped between two
    traces by more than :data:`WHEEL_JUMP` times its usual move (a reset);
    and a run whose count went back by more than :data:`WHEEL_MAX_BACK` of
    its net count (pulled back, or out and back).
    """
    from demine.positions import encoder_steps
    from demine.recording import Recording

    d = distance
    if isinstance(d, bool) or not isinstance(d, int | float | np.integer | np.floating) \
            or not (math.isfinite(d) and 0 < d <= 1e6):
        raise ConfigError(f"the distance the wheel was pushed must be a number of metres "
                          f"(> 0, at most 1e6), got {distance!r} (--distance)")
    with Recording(recording) as rec:
        s = _stream(rec, recording, stream, "gpr")
        if "encoder" not in s.field_names:
            raise ConfigError(f"{recording}: stream {stream!r} has no survey wheel count (no "
                              f"'encoder' column; its columns: {', '.join(s.field_names)}): "
                              "no wheel to calibrate")
        if marks:
            if start is not None or stop is not None:
                raise ConfigError("give the run by its marks (--marks) or by --start/--stop, "
                                  "not both")
            seg = _between_marks(rec, s, f"{recording}:{stream}")
        else:
            seg = _segment(s, start, stop, min_frames=2)
        cols = s.read(seg.start, seg.stop,
                      fields=["encoder"] + (["status"] if "status" in s.field_names else []))
        driver = s.attrs.get("driver")
        dt = s.sample_interval
        own = dict(s.calibration or {})
    where = f"{recording}:{stream}[{seg.start}:{seg.stop}]"
    raw = np.asarray(cols["encoder"])
    faults = _encoder_faults(driver, cols)
    if faults is not None and faults.any():
        fault = np.flatnonzero(faults)
        raise ConfigError(f"{where}: the radar flagged an encoder fault on {fault.size} "
                          f"trace(s), the first trace {seg.start + int(fault[0])}: its "
                          "count is not to be trusted there; record the run again")
    index = np.flatnonzero(np.isfinite(raw.astype(np.float64)))
    if index.size < 2:
        raise ConfigError(f"{where}: fewer than 2 traces with a wheel count")
    count = raw[index]
    step = encoder_steps(count)
    moves = np.abs(step[step != 0])
    if moves.size == 0:
        raise ConfigError(f"{where}: the wheel's count did not move over the run "
                          f"(it stays at {float(count[0]):.15g}): the wheel did not turn, or "
                          "the radar has none; give --start/--stop of the run over the distance")
    if moves.size < WHEEL_MIN_STEPS:
        raise ConfigError(f"{where}: the wheel's count moved between only {moves.size} pairs "
                          f"of traces (need at least {WHEEL_MIN_STEPS}): too short a run to "
                          "calibrate by; push it over a longer distance")
    usual = float(np.percentile(moves, 90))
    big = np.flatnonzero(np.abs(step) > WHEEL_JUMP * usual)
    if big.size:
        k = int(big[0])
        raise ConfigError(
            f"{where}: the wheel's count jumped by {step[k]:.15g} (from "
            f"{float(count[k]):.15g} to {float(count[k + 1]):.15g}) between traces "
            f"{seg.start + int(index[k])} and {seg.start + int(index[k + 1])}, more than "
            f"{WHEEL_JUMP:g} times its usual move ({usual:.15g} counts): a reset of the "
            "counter. Record the run again, or give --start/--stop of a part without it")
    net = float(step.sum())
    if net == 0:
        raise ConfigError(f"{where}: the wheel's count came back to where it started (out and "
                          "back?): push it one way over the distance, or give --start/--stop "
                          "of the way out")
    back = float(-np.sign(net) * step[np.sign(step) == -np.sign(net)].sum())
    if back > WHEEL_MAX_BACK * abs(net):
        raise ConfigError(
            f"{where}: the wheel's count went back by {back:.15g} counts over the run, "
            f"{back / abs(net):.1%} of its net {net:.15g} (at most {WHEEL_MAX_BACK:.0%}: a "
            "wheel rocking on uneven ground): the radar was pulled back, or went out and "
            "back, and the net count does not measure the distance. Push it one way over "
            "the distance, or give --start/--stop of the way out")
    profile = load_profile(base)
    _check_base(profile, base, "gpr")
    profile = _radar_settings(_device(profile, base, driver), base, own, recording, stream)
    if dt:
        profile["sample_interval"] = float(dt)
    profile["distance_per_count"] = float(d) / net
    profile["wheel_counts"] = net
    profile["wheel_distance"] = float(d)
    return _stamp(profile, where, f"survey wheel over {float(d):g} m", "distance_per_count")


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
        s = _stream(rec, recording, stream, "emi")
        seg = _segment(s, start, stop)
        x = np.asarray(s.samples[seg], dtype=np.float64)
        gates = s.gate_times
        driver = s.attrs.get("driver")
        # the reading rate as the processing chains see it
        rate = _stream_context(s).get("sample_rate", 1000.0)
    profile = load_profile(base)
    _check_base(profile, base, "emi")
    _check_gates(profile, base, x.shape[1], stream)
    profile = _device(profile, base, driver)
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
                  "after the offset alone)", "pulse_length")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if _BARE_KEY.fullmatch(k) else _toml_str(k)


def _toml_str(v: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped
    (a newline in a path or a description would end the line)."""
    out = []
    for ch in v:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # (a lone surrogate is no character)
            out.append("\\uFFFD")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if not math.isfinite(f):
            return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
        return repr(f)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):  # (as tomllib reads them)
        return v.isoformat()
    if isinstance(v, list | tuple | np.ndarray):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {type(v).__name__} to a calibration profile")


def _toml_lines(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """A table's values, then each sub-table under its own header."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()
             if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            path = (*prefix, _toml_key(k))
            lines += ["", f"[{'.'.join(path)}]", *_toml_lines(v, path)]
    return lines


def write_profile(profile: dict[str, Any], path: str | Path) -> Path:
    """Write a profile (numbers, strings, lists, tables) as TOML that
    :func:`demine.calibration.load_profile` reads back unchanged.

    The file is written whole to a temporary file next to it and renamed over
    ``path``, so a failure leaves an earlier profile of that name as it was
    (``--base det.toml --out det.toml`` updates a profile in place); a pipe or
    a device (``-o /dev/stdout``) is written into, not renamed over
    (:func:`demine._outputs.replace_text`, as the exports are).
    """
    path = Path(path)
    replace_text(path, "\n".join(_toml_lines(profile)) + "\n")
    return path


#: What :func:`reposition` copies from the wheel profile into the stream's
#: calibration: the value and where it came from.
WHEEL_KEYS = ("distance_per_count", "distance_per_count_from", "distance_per_count_utc",
              "wheel_counts", "wheel_distance")


def reposition(recording: str | Path, out: str | Path, profile: str | Path | dict, *,
               stream: str = "gpr", overwrite: bool = False) -> dict[str, Any]:
    """Place a radar recorded without a GPS again, by a newly measured wheel.

    ``demine record`` places such a radar by its survey wheel
    (:func:`demine.positions.wheel_positions`) with the ``distance_per_count``
    its profile gave at the time, maybe the shipped reference radar's.  Once
    the wheel is calibrated (:func:`wheel_profile`), this writes ``out``, a
    copy of ``recording`` whose ``stream`` is placed by ``profile``'s value
    the way the recorder would have placed it: ``x`` (and ``y``, ``lon``,
    ``lat``; NaN without a local frame) and the stream's calibration (the
    value and its provenance, replacing the earlier wheel's, and
    ``repositioned_utc`` / ``repositioned_from`` with the value it replaces).
    The stream's alarms are left out of the copy: they were found on the old
    scale, and a hyperbola's fitted velocity, hence its depth, scales with it
    (``demine detect OUT --stream STREAM --write`` finds them again).
    Everything else is copied as it is: samples, counts, other streams and
    their alarms, truth, markers.  ``recording`` is not changed.

    Refused: ``out`` is ``recording`` (or exists, without ``overwrite``); a
    profile without a finite, non-zero ``distance_per_count``; a stream
    without an ``encoder`` column; a recording with a GPS stream or a stream
    placed off its line (``y`` not 0: not placed by its wheel).

    Returns
    -------
    dict
        ``traces``, ``placed`` (traces with a position), ``alarms`` (left out),
        ``jumps`` (count resets not taken as moves), ``faults`` (traces the
        radar flagged as an encoder fault, not placed), ``length_before``,
        ``length_after`` (m from the first placed trace to the last),
        ``distance_per_count`` and ``distance_per_count_before``.
    """
    import shutil

    import h5py

    from demine.positions import LocalFrame, wheel_positions
    from demine.recording import Recording, _json_text

    src, dst = Path(recording), Path(out)
    if not src.is_file():
        raise ConfigError(f"{src}: no such recording")
    if dst.exists() and (dst.is_dir() or os.path.samefile(src, dst)):
        raise ConfigError(f"{dst} is " + ("a directory" if dst.is_dir() else
                                          "the recording itself") +
                          ": write the repositioned copy to a new file (the recording is "
                          "kept as it was recorded)")
    if dst.exists() and not overwrite:
        raise ConfigError(f"{dst} exists: give --overwrite to replace it")
    refuse_special_output(dst)
    if not isinstance(profile, dict) and dst.exists() and Path(profile).exists() \
            and os.path.samefile(profile, dst):
        raise ConfigError(f"{dst} is the wheel profile: write the repositioned copy to a new "
                          "file (the profile is the measurement's only record)")
    prof = dict(profile) if isinstance(profile, dict) else load_profile(profile)
    dpc = prof.get("distance_per_count")
    if isinstance(dpc, bool) or not isinstance(dpc, int | float) or not math.isfinite(dpc) \
            or dpc == 0:
        raise ConfigError(f"{profile if not isinstance(profile, dict) else 'the profile'}: "
                          f"no finite, non-zero distance_per_count (got {dpc!r}): it is not a "
                          "wheel calibration (demine calibrate wheel makes one)")
    with Recording(src) as rec:
        s = _stream(rec, src, stream, "gpr")
        gps = [n for n, g in rec.streams.items() if g.kind == "gps"]
        if gps:
            raise ConfigError(f"{src}: it has a GPS stream ({', '.join(gps)}), which placed "
                              f"{stream!r}; only a radar recorded without a GPS is placed by "
                              "its wheel")
        if "encoder" not in s.field_names:
            raise ConfigError(f"{src}: stream {stream!r} has no survey wheel count (no "
                              "'encoder' column): it was not placed by a wheel")
        # (a file from another tool may have no positions at all: read as unknown)
        cols = s.read(fields=["time", "encoder"] + [c for c in ("x", "y", "status")
                                                    if c in s.field_names])
        n = len(cols["time"])
        y_old = np.asarray(cols.get("y", np.full(n, np.nan)), dtype=np.float64)
        off = np.isfinite(y_old) & (y_old != 0)
        if off.any():
            raise ConfigError(f"{src}: stream {stream!r} has {int(off.sum())} trace(s) off "
                              f"its line (y = {float(y_old[off][0]):g} m, not 0): it was not "
                              "placed by its wheel")
        before = s.calibration.get("distance_per_count")
        driver = s.attrs.get("driver")
        frame = LocalFrame.from_attrs(dict(rec.attrs))
        alarms = rec.table("alarms").to_dict()
        others = [nm for nm, g in rec.streams.items() if g.kind in ("emi", "gpr") and nm != stream]
    # (traces the radar flagged as an encoder fault are not placed, as the
    # recorder does not place them)
    fault = _encoder_faults(driver, cols)
    x, _, jumps = wheel_positions(cols["encoder"], float(dpc), fault=fault)
    placed = np.isfinite(x)
    y = np.where(placed, 0.0, np.nan)
    n_alarms = len(alarms.get("time", ()))
    a_stream = np.array([v.decode() if isinstance(v, bytes) else str(v)
                         for v in alarms.get("stream", [""] * n_alarms)], dtype=object)
    # the stream's alarms were found on the old scale: a hyperbola's fitted
    # velocity, hence its depth, scales with it, and so do the detector's
    # apertures in metres; they are left out of the copy (demine detect finds
    # them again), the others kept.  Alarms that name no stream (a table
    # written by another tool) are the stream's when it is the only one
    # detected on
    keep = (a_stream != stream) & ((a_stream != "") | bool(others))
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    cal = {k: v for k, v in (s.calibration or {}).items() if k not in WHEEL_KEYS}
    cal.update({k: prof[k] for k in WHEEL_KEYS if k in prof})
    cal["repositioned_utc"] = now
    cal["repositioned_from"] = before if before is not None else "none"
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copyfile(src, tmp)
        try:
            f = h5py.File(tmp, "r+")
        except OSError as exc:
            raise ConfigError(
                f"{src}: cannot be rewritten ({exc}): is it still being recorded, or was its "
                f"recording interrupted (then h5clear -s {src} marks it closed)?") from None
        with f:
            g = f["streams"][stream]
            for name, values in (("x", x), ("y", y)):
                if name not in g:  # (a file from another tool: the format's column)
                    ds = g.create_dataset(name, data=values, maxshape=(None,),
                                          chunks=(4096,), fillvalue=np.nan)
                    ds.attrs["units"] = "m"
                    ds.dims[0].attach_scale(g["time"])
                else:
                    g[name][...] = values
            if "lon" in g and "lat" in g:
                # (without a frame the copy cannot say where the new x is: unknown)
                lon, lat = frame.to_geo(x, y) if frame is not None else (
                    np.full(n, np.nan), np.full(n, np.nan))
                g["lon"][...] = lon
                g["lat"][...] = lat
            g.attrs["calibration"] = _json_text(cal, f"stream {stream!r}: calibration")
            if not keep.all():
                tab = f["alarms"]
                for name in list(tab):
                    if isinstance(tab[name], h5py.Dataset) and tab[name].shape[:1] == keep.shape:
                        kept = tab[name][...][keep]
                        if tab[name].chunks is None:   # (contiguous: another tool's)
                            attrs = dict(tab[name].attrs)
                            del tab[name]
                            tab.create_dataset(name, data=kept).attrs.update(attrs)
                            continue
                        tab[name].resize(kept.shape[0], axis=0)
                        tab[name][...] = kept
                if "index" in tab:  # (the rows' numbers, without the gaps)
                    tab["index"][...] = np.arange(tab["index"].shape[0])
        os.replace(tmp, dst)
    except OSError as exc:   # (named as given, not as the hidden temporary copy)
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(dst)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    x_old = np.asarray(cols.get("x", np.full(n, np.nan)), dtype=np.float64)

    def span(v: np.ndarray) -> float:
        v = v[np.isfinite(v)]
        return float(abs(v[-1] - v[0])) if v.size else math.nan

    return {"traces": n, "placed": int(placed.sum()), "alarms": int((~keep).sum()),
            "jumps": jumps, "faults": 0 if fault is None else int(fault.sum()),
            "length_before": span(x_old), "length_after": span(x),
            "distance_per_count": float(dpc),
            "distance_per_count_before": before}
