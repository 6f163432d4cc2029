"""Turn vendor radar files into demine recordings (``demine import``)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, VendorFormatError
from ._common import NO_TIME, RadarData, jsonable


def trace_times_ns(rd: RadarData) -> tuple[np.ndarray, str]:
    """Best UTC time of every trace, and a sentence saying where it came from.

    Order of preference: GPS sidecar times tied to traces (anchored with the
    file's trace timing), the file's own start time, the DZT creation time, and
    finally the trace index (1 ns apart, so order is kept but no time claimed).
    """
    n = rd.n_traces
    rel: np.ndarray | None = None
    rel_src = ""
    if rd.trace_time_s is not None and len(rd.trace_time_s) == n and n:
        t = np.asarray(rd.trace_time_s, np.float64)
        wraps = np.concatenate([[0.0], np.cumsum(np.diff(t) < -43200.0) * 86400.0])
        rel = t + wraps - t[0]
        rel_src = "file trace times"
    elif math.isfinite(rd.trace_interval_s) and rd.trace_interval_s > 0:
        rel = np.arange(n) * rd.trace_interval_s
        rel_src = "file trace interval"
    if rel is not None and rd.gps is not None and rd.gps["trace"].size:
        g = rd.gps
        ok = (g["time_ns"] != NO_TIME) & (g["trace"] >= 0) & (g["trace"] < n)
        if np.any(ok):
            k = int(np.flatnonzero(ok)[0])
            t0 = int(g["time_ns"][k]) - round(rel[int(g["trace"][k])] * 1e9)
            return t0 + np.rint(rel * 1e9).astype(np.int64), f"GPS sidecar time + {rel_src}"
    t0: int | None = rd.start_time_ns
    src = "file start time"
    if t0 is None and rd.vendor == "gssi" and rd.header.get("rhb_cdt"):
        created = dt.datetime.fromisoformat(rd.header["rhb_cdt"]).replace(tzinfo=dt.UTC)
        t0 = int(created.timestamp()) * 1_000_000_000
        src = "DZT creation time (controller clock, time zone unknown)"
    if t0 is not None and rel is not None:
        return t0 + np.rint(rel * 1e9).astype(np.int64), f"{src} + {rel_src}"
    base = t0 if t0 is not None else 0
    return base + np.arange(n, dtype=np.int64), (
        f"{src} + trace index in ns (file has no trace timing)"
        if t0 is not None
        else "trace index in ns (file has no time)"
    )


def _stream_samples(rd: RadarData) -> tuple[np.ndarray, dict[str, Any]]:
    """Samples in a recording GPR type (int16/int32/float32), losslessly."""
    s = rd.samples
    note: dict[str, Any] = {"vendor_dtype": str(s.dtype), "vendor_zero_offset": rd.zero_offset}
    if s.dtype in (np.int16, np.int32, np.float32):
        return np.asarray(s), note
    if s.dtype in (np.uint16, np.uint8) and rd.zero_offset:
        out = rd.signed().astype(np.int16, copy=False)
        note["sample_conversion"] = (
            f"stored = vendor value - {rd.zero_offset:g} (unsigned mid-scale to signed; exact)"
        )
        return out, note
    if s.dtype.kind in "iu" and s.dtype.itemsize <= 2:
        note["sample_conversion"] = "widened to int32 (exact)"
        return s.astype(np.int32), note
    if s.dtype.kind in "iu":
        if s.size and (s.min() < np.iinfo(np.int32).min or s.max() > np.iinfo(np.int32).max):
            raise VendorFormatError(f"{rd.path}: {s.dtype} samples do not fit a recording's "
                                    "int32 (values beyond 2**31 - 1), which keeps them exact")
        note["sample_conversion"] = "narrowed to int32 (all values fit; exact)"
        return s.astype(np.int32), note
    note["sample_conversion"] = f"{s.dtype} cast to float32"
    return s.astype(np.float32), note


def _units(rd: RadarData) -> str:
    """Sample units: simulated fields have physical units, radar files counts."""
    return str(rd.header.get("units", "counts")) if rd.vendor == "gprmax" else "counts"


def _spaced(rd: RadarData, spacing: float) -> np.ndarray:
    """Trace positions ``spacing`` m apart (``--trace-spacing``), from the file's
    first position (0 without one) and in the file's direction: a line whose
    file places its traces at decreasing positions (a gprMax model run towards
    -x) had been laid on beyond the model, from its far end."""
    tp = rd.trace_position_m
    known = tp is not None and rd.n_traces > 0 and math.isfinite(tp[0])
    back = known and rd.n_traces > 1 and math.isfinite(tp[-1]) and tp[-1] < tp[0]
    x0 = float(tp[0]) if known else 0.0
    return x0 + (-spacing if back else spacing) * np.arange(rd.n_traces, dtype=np.float64)


def _calibration(rd: RadarData) -> dict[str, Any] | None:
    """Calibration the file itself gives: its time zero, and a simulation's source.

    ``time_zero`` (two-way time of time zero from the first sample, s, the
    entry ``demine calibrate time-zero`` writes) with ``time_zero_sample`` and
    ``time_zero_source`` (the header field it came from), when the reader
    found one inside the trace: pulseEKKO's ``TIMEZERO AT POINT``, SEG-Y's
    ``delrt`` (standard units only), gprMax's source centre (the emission
    time; the detectors place the ground surface there when the antenna sits
    on it, and ``antenna_height`` is left to the user).  The radar's centre
    ``frequency`` (Hz, with ``frequency_source``), when the file names it:
    the antenna of a GSSI, MALÅ or pulseEKKO header, a gprMax source's
    waveform; the GPR detector scales its wavelet-tied parameters by it.
    gprMax output also gives the Tx-Rx ``antenna_offset``; an 8- or 16-bit
    GSSI file ``header_samples`` (2: each trace's first words are the scan
    counter and mark flag, which the time-zero pick skips).  None when there
    is nothing (GSSI: ``rhf_position`` has no confirmed meaning; use
    ``demine calibrate time-zero``).
    """
    cal: dict[str, Any] = {}
    tz = rd.time_zero_sample
    if math.isfinite(tz) and 0.0 <= tz < rd.n_samples:
        cal["time_zero"] = float(tz * rd.sample_interval_s)
        cal["time_zero_sample"] = float(tz)
        src = rd.header.get("time_zero_source")
        cal["time_zero_source"] = str(src) if src else f"{rd.vendor} file header"
    if rd.header.get("header_samples"):
        cal["header_samples"] = int(rd.header["header_samples"])
    if math.isfinite(rd.frequency_hz) and rd.frequency_hz > 0:
        cal["frequency"] = float(rd.frequency_hz)
        cal["frequency_source"] = (
            f"spectral peak of the {rd.header['waveform']} source waveform" if rd.vendor == "gprmax"
            and rd.header.get("waveform") else f"{rd.vendor} header: antenna {rd.antenna!r}")
    if rd.vendor != "gprmax":
        return cal or None
    off = rd.header.get("antenna_offset_m")
    if isinstance(off, float) and math.isfinite(off):
        cal["antenna_offset"] = off
    return cal or None


def _add_radar_stream(w: Any, name: str, rd: RadarData, samples: np.ndarray,
                      conv: dict[str, Any], label: str, time_src: str,
                      extra: dict[str, Any]) -> Any:
    """The stream of radar data ``rd`` in recording writer ``w``: raw samples'
    type, the file's calibration (:func:`_calibration`), and its vendor
    header and facts as attributes (``extra`` adds to or replaces them)."""
    attrs = {
        "vendor": rd.vendor,
        "vendor_file": label,
        "vendor_header": json.dumps(jsonable(rd.header)),
        "time_source": time_src,
        "antenna": rd.antenna,
        "frequency_hz": float(rd.frequency_hz),
        "trace_interval_m": float(rd.trace_interval_m),
        "time_zero_sample": float(rd.time_zero_sample),
        "channel": rd.channel,
        **conv,
        **extra,
    }
    return w.add_stream(name, "gpr", n_channels=rd.n_samples, dtype=samples.dtype,
                        device=f"{rd.vendor} {rd.antenna}".strip(),
                        driver=f"demine.io.{rd.vendor}", units=_units(rd),
                        sample_interval=rd.sample_interval_s, calibration=_calibration(rd),
                        attrs=attrs)


def import_file(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    vendor: str | None = None,
    site: str = "",
    operator: str = "",
    lane_id: str = "",
    notes: str = "",
    overwrite: bool = False,
    allow_partial: bool = False,
    truth: Any = None,
    trace_spacing: float | None = None,
    line_spacing: float | None = None,
) -> dict[str, Any]:
    """Write a vendor radar file (all channels, GPS, marks) into a new recording.

    The radar stream keeps the raw samples (GSSI's unsigned samples become the
    same values minus the mid-scale offset in int16, exactly) and the vendor
    header as JSON in the ``vendor_header`` attribute.  ``truth`` (rows as
    :meth:`demine.recording.RecordingWriter.add_truth` takes them: id, type,
    is_mine, x, y, depth, ...) is stored in the truth table, so that
    ``demine evaluate`` can score alarms on the file; positions of a profile
    without GPS are along the line (x from the file, y = 0).

    ``path`` may also be a list of gprMax outputs, one run per trace (the
    files ``gprMax model.in -n N`` writes before ``outputfiles_merge``): they
    are read as one line by :func:`demine.io.read_gprmax_series`.

    ``trace_spacing`` (m) replaces the file's positions along the line with
    equal steps from its first trace's (from 0 when it has none): for a
    header whose distance interval is wrong, or an uncalibrated survey
    wheel.  The stream's ``trace_interval_m`` is then that spacing, and
    ``trace_interval_source`` says it was given and what the file said (the
    vendor header is kept as it was).

    ``line_spacing`` (m) reads several files as the parallel lines of a
    gridded survey instead (:func:`_import_lines`): one stream, the files in
    the natural order of their names at ``y = 0, line_spacing, ...``, each
    line along ``x`` from its own trace positions (or ``trace_spacing``).

    Returns
    -------
    dict
        Summary: streams written, traces, samples, time source.
    """
    from .._params import check_number
    from ..recording import RecordingWriter
    from . import detect, read_channels
    from .gprmax import read_gprmax_series

    if trace_spacing is not None:
        # (at most a kilometre: positions stay finite, and no survey steps further)
        trace_spacing = check_number("import", "trace_spacing", trace_spacing, lo=0.0,
                                     lo_open=True, hi=1000.0)
    if isinstance(path, str | os.PathLike):
        paths = [path]
    else:
        paths = list(path)
    if line_spacing is not None:
        line_spacing = check_number("import", "line_spacing", line_spacing, lo=0.0,
                                    lo_open=True, hi=1000.0)
        return _import_lines(paths, out, line_spacing, vendor=vendor,
                             trace_spacing=trace_spacing, allow_partial=allow_partial,
                             truth=truth, overwrite=overwrite,
                             meta={"site": site, "operator": operator, "lane_id": lane_id,
                                   "notes": notes})
    if len(paths) == 1:
        channels = read_channels(paths[0], vendor=vendor, allow_partial=allow_partial)
        src = Path(paths[0])
    else:
        for p in paths:
            kind = vendor or detect(p)
            if kind != "gprmax":
                raise VendorFormatError(
                    f"{os.fspath(p)}: read as {kind}: several files are joined only as the runs "
                    "of a gprMax B-scan (one output per trace); import other files one by one")
        channels = [read_gprmax_series(paths)]
        src = Path(channels[0].path)
    if not any(rd.n_traces for rd in channels):
        raise VendorFormatError(f"{os.fspath(paths[0])}: no traces after the header: nothing "
                                "to import (a file cut at the end of its header?)")
    files = channels[0].header.get("files") if len(paths) > 1 else None
    label = src.name if files is None else f"{files[0]} … {files[-1]} ({len(files)} gprMax runs)"
    summary: dict[str, Any] = {"source": os.fspath(src) if files is None else
                               os.fspath(src.parent / label), "out": os.fspath(out),
                               "streams": {}}
    with RecordingWriter(
        out,
        site=site,
        operator=operator,
        lane_id=lane_id,
        notes=notes or f"imported from {label}",
        overwrite=overwrite,
    ) as w:
        plans = []
        for rd in channels:
            spacing_source = None
            if trace_spacing is not None:
                said = (f"{rd.trace_interval_m:g} m" if math.isfinite(rd.trace_interval_m)
                        else "no interval")
                rd.trace_position_m = _spaced(rd, trace_spacing)
                rd.trace_interval_m = float(trace_spacing)
                spacing_source = f"given at import ({trace_spacing:g} m); the file said {said}"
            name = "gpr" if len(channels) == 1 else f"gpr_ch{rd.channel}"
            samples, conv = _stream_samples(rd)
            times, time_src = trace_times_ns(rd)
            s = _add_radar_stream(w, name, rd, samples, conv, label, time_src,
                                  {} if spacing_source is None
                                  else {"trace_interval_source": spacing_source})
            plans.append((rd, s, samples, times, time_src))
        first = channels[0]
        gps_stream = None
        if first.gps is not None and first.gps["trace"].size:
            gps_stream = w.add_stream("gps", "gps", device=f"{first.vendor} GPS sidecar",
                                      driver=f"demine.io.{first.vendor}")
        if truth is not None:  # (after the streams: writing starts SWMR)
            summary["truth"] = w.add_truth(truth)
        for rd, s, samples, times, time_src in plans:
            x = rd.trace_position_m if rd.trace_position_m is not None else None
            step = 4096
            for i in range(0, rd.n_traces, step):  # bounded memory per append
                kw: dict[str, Any] = {"sequence": np.arange(i, min(i + step, rd.n_traces))}
                if x is not None:
                    # positions along the profile: the line's own frame (y = 0), so
                    # the GPR detector, which skips unpositioned traces, sees them
                    kw["x"] = np.asarray(x[i : i + step], np.float64)
                    kw["y"] = np.zeros(len(kw["x"]))
                s.append(np.asarray(samples[i : i + step]), time=times[i : i + step], **kw)
            summary["streams"][s.name] = {
                "traces": rd.n_traces,
                "samples": rd.n_samples,
                "dtype": str(samples.dtype),
                "time_source": time_src,
            }
        rd0, _, _, times0, _ = plans[0]
        if gps_stream is not None:
            g = first.gps
            t = g["time_ns"].copy()
            unknown = t == NO_TIME
            inside = (g["trace"] >= 0) & (g["trace"] < rd0.n_traces)
            t[unknown & inside] = times0[g["trace"][unknown & inside]]
            keep = ~unknown | inside
            gps_stream.append(
                time=t[keep],
                sequence=g["trace"][keep],
                lon=g["lon"][keep],
                lat=g["lat"][keep],
                alt=g["alt"][keep],
                fix_quality=g["fix_quality"][keep].astype(np.int8),
                satellites=g["satellites"][keep],
                hdop=g["hdop"][keep].astype(np.float32),
            )
            summary["streams"]["gps"] = {"rows": int(keep.sum()), "dropped": int((~keep).sum())}
        if rd0.marks.size:
            m = rd0.marks
            placed = rd0.trace_position_m is not None
            xs = rd0.trace_position_m[m] if placed else np.full(m.size, np.nan)
            # (y as the traces': 0 on the profile's line; it had been NaN)
            ys = np.zeros(m.size) if placed else np.full(m.size, np.nan)
            w.append_markers({"time": times0[m], "x": xs, "y": ys,
                              "label": [b"vendor mark"] * m.size,
                              "note": [f"trace {int(k)}".encode() for k in m]})
            summary["markers"] = int(m.size)
    return summary


def _import_lines(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                  line_spacing: float, *, vendor: str | None, trace_spacing: float | None,
                  allow_partial: bool, truth: Any, overwrite: bool,
                  meta: dict[str, str]) -> dict[str, Any]:
    """Several single-channel radar files as the parallel lines of one survey.

    One ``gpr`` stream holds every file's traces in turn: the files in the
    natural order of their names (line 2 before line 10), file ``k`` at
    ``y = k * line_spacing`` with ``x`` its own positions along the line
    (``trace_spacing`` replaces them, as for one file).  So the detectors see
    the survey as a cart would record it, one line after another, and their
    noise and clutter statistics run on over the lines.  The files must agree
    on samples per trace, sample interval, sample type and centre frequency;
    a file with a GPS sidecar (positioned in another frame) or several
    channels is refused, as is one without trace positions when no
    ``trace_spacing`` is given.  Times: each file's own when every file has
    them, else the trace index over the whole survey (1 ns apart).  The first
    file's vendor header is kept; ``survey_lines`` (JSON) lists each file with
    its ``y`` and traces.
    """
    from ..recording import RecordingWriter
    from . import read_channels
    from .gprmax import _natural_key

    files = sorted((Path(p) for p in paths), key=_natural_key)
    if len(files) < 2:
        raise ConfigError("--line-spacing: give the files of two lines or more")
    lines = []
    for k, p in enumerate(files):
        chans = read_channels(p, vendor=vendor, allow_partial=allow_partial)
        if len(chans) != 1:
            raise VendorFormatError(f"{p}: {len(chans)} channels: survey lines are imported "
                                    "from single-channel files (import this one alone)")
        rd = chans[0]
        if rd.n_traces < 2:
            raise VendorFormatError(
                f"{p}: {rd.n_traces} trace(s): not a line"
                + (" (the runs of a gprMax B-scan are one line: import them without "
                   "--line-spacing, or merge each line's runs first)"
                   if rd.vendor == "gprmax" else ""))
        if rd.gps is not None and rd.gps["trace"].size:
            raise VendorFormatError(f"{p}: has a GPS sidecar: lines positioned by GPS are not "
                                    "laid on a grid; import the files one by one")
        if trace_spacing is not None:
            x = _spaced(rd, trace_spacing)
        elif rd.trace_position_m is not None:
            x = np.asarray(rd.trace_position_m, dtype=np.float64)
        else:
            raise VendorFormatError(f"{p}: gives no trace positions: give --trace-spacing")
        samples, conv = _stream_samples(rd)
        lines.append((p, rd, samples, conv, x, np.full(rd.n_traces, k * line_spacing)))
    first = lines[0][1]
    for p, rd, samples, conv, _, _ in lines[1:]:
        for what, a, b in (("samples per trace", rd.n_samples, first.n_samples),
                           ("sample type", str(samples.dtype), str(lines[0][2].dtype)),
                           ("vendor", rd.vendor, first.vendor),
                           ("sample conversion", conv, lines[0][3])):
            if a != b:
                raise VendorFormatError(f"{p}: {what} {a}, but {files[0].name} has {b}: not "
                                        "lines of one survey")
        for what, a, b in (("sample interval", rd.sample_interval_s, first.sample_interval_s),
                           ("centre frequency", rd.frequency_hz, first.frequency_hz)):
            if not (math.isnan(a) and math.isnan(b)) and not math.isclose(a, b, rel_tol=1e-6):
                raise VendorFormatError(f"{p}: {what} {a:g}, but {files[0].name} has {b:g}: "
                                        "not lines of one survey")
        # one stream has one calibration: a time zero (or antenna offset) that
        # differs between the files would put one line's depths off
        mine, theirs = _calibration(rd) or {}, _calibration(first) or {}
        for key, tol in (("time_zero_sample", 0.5), ("antenna_offset", 1e-6)):
            a, b = mine.get(key), theirs.get(key)
            if (a is None) != (b is None) or (a is not None and abs(a - b) > tol):
                raise VendorFormatError(
                    f"{p}: {key.replace('_', ' ')} {a!r}, but {files[0].name} has {b!r}: one "
                    "stream has one calibration; import the lines one by one")
    timed = [trace_times_ns(rd) for _, rd, *_ in lines]
    times = np.concatenate([t for t, _ in timed])
    time_src = "each line's own: " + timed[0][1]
    if any(src.startswith("trace index") for _, src in timed) or np.any(np.diff(times) < 0):
        # (lines whose own times run back at a join were named in another order
        # than they were recorded in: their times would put the survey out of order)
        times = np.arange(times.size, dtype=np.int64)
        time_src = ("trace index in ns over the lines ("
                    + ("not every file has trace times)" if any(
                        src.startswith("trace index") for _, src in timed)
                       else "the files' own times do not increase from line to line)"))
    label = f"{files[0].name} … {files[-1].name} ({len(files)} lines)"
    survey = [{"file": p.name, "y": float(y[0]) if y.size else k * line_spacing,
               "traces": int(rd.n_traces)}
              for k, (p, rd, _, _, _, y) in enumerate(lines)]
    attrs: dict[str, Any] = {"line_spacing_m": float(line_spacing),
                             "survey_lines": json.dumps(survey)}
    if trace_spacing is not None:
        attrs["trace_interval_m"] = float(trace_spacing)
        said = (f"{first.trace_interval_m:g} m" if math.isfinite(first.trace_interval_m)
                else "no interval")
        attrs["trace_interval_source"] = (f"given at import ({trace_spacing:g} m); the first "
                                          f"file said {said}")
    summary: dict[str, Any] = {"source": os.fspath(files[0].parent / label),
                               "out": os.fspath(out), "streams": {}, "lines": len(files)}
    with RecordingWriter(out, site=meta["site"], operator=meta["operator"],
                         lane_id=meta["lane_id"],
                         notes=meta["notes"] or f"imported from {label}",
                         overwrite=overwrite) as w:
        s = _add_radar_stream(w, "gpr", first, lines[0][2], lines[0][3], label, time_src,
                              attrs)
        if truth is not None:
            summary["truth"] = w.add_truth(truth)
        start = 0
        marks = []
        for p, rd, samples, _, x, y in lines:
            n = rd.n_traces
            step = 4096
            for i in range(0, n, step):
                j = min(n, i + step)
                s.append(np.asarray(samples[i:j]), time=times[start + i:start + j],
                         sequence=np.arange(start + i, start + j), x=x[i:j], y=y[i:j])
            marks.extend((start + int(m), float(x[m]), float(y[m]),
                          f"{p.name} trace {int(m)}") for m in rd.marks)
            start += n
        if marks:
            idx = np.array([m[0] for m in marks])
            w.append_markers({"time": times[idx], "x": [m[1] for m in marks],
                              "y": [m[2] for m in marks],
                              "label": [b"vendor mark"] * len(marks),
                              "note": [m[3].encode()[:128] for m in marks]})
            summary["markers"] = len(marks)
        summary["streams"]["gpr"] = {"traces": start, "samples": first.n_samples,
                                     "dtype": str(lines[0][2].dtype), "time_source": time_src}
    return summary


def import_emi_table(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    gate_times: Any = None,
    rate: float | None = None,
    units: str = "",
    footprint: float | None = None,
    coil_radius: float | None = None,
    allow_partial: bool = False,
    site: str = "",
    operator: str = "",
    lane_id: str = "",
    notes: str = "",
    overwrite: bool = False,
    truth: Any = None,
) -> dict[str, Any]:
    """Write a metal detector's readings table (CSV, TSV, Geosoft XYZ) into a
    new recording, as its stream ``emi``.

    The readings keep their values (float32), the gate times go to the
    stream's ``gate`` scale (unknown when neither the column names nor
    ``gate_times`` give them: detection then asks for a calibration profile),
    and the table's layout (column roles, columns not read, comments) to the
    ``vendor_header`` attribute.  ``footprint`` (m, the width of ground one
    reading senses: an EM61's 1 m coil) becomes the stream's
    ``footprint_width``, and ``coil_radius`` (m) its calibration's, which the
    detector's distances scale with.  ``truth`` is stored as for
    :func:`import_file`.  See :mod:`demine.io.emi_table` for the layouts read.

    Returns
    -------
    dict
        Summary: the stream's readings, gates and time source.
    """
    from .._params import check_number
    from ..recording import RecordingWriter
    from .emi_table import read_emi_table

    for name, v in (("footprint", footprint), ("coil_radius", coil_radius)):
        if v is not None:
            check_number("import", name, v, lo=0.0, lo_open=True, hi=10.0)
    tab = read_emi_table(path, gate_times=gate_times, rate=rate, allow_partial=allow_partial)
    extra: dict[str, Any] = {}
    if footprint is not None:
        extra["footprint_width"] = float(footprint)
    lines = tab.header.get("line_readings") or []
    if len(lines) > 1:   # (Geosoft Line markers: each line its own path in the evaluation)
        extra["survey_lines"] = json.dumps(lines)
    label = Path(tab.path).name
    summary: dict[str, Any] = {"source": tab.path, "out": os.fspath(out), "streams": {}}
    with RecordingWriter(out, site=site, operator=operator, lane_id=lane_id,
                         notes=notes or f"imported from {label}", overwrite=overwrite) as w:
        s = w.add_stream(
            "emi", "emi", n_channels=tab.samples.shape[1], device=f"readings table {label}",
            driver="demine.io.emi_table", units=units, gate_times=tab.gate_times,
            calibration=None if coil_radius is None else {"coil_radius": float(coil_radius)},
            attrs={"vendor": "emi-table", "vendor_file": label,
                   "vendor_header": json.dumps(jsonable(tab.header)),
                   "time_source": tab.time_source, **extra})
        if truth is not None:  # (after the streams: writing starts SWMR)
            summary["truth"] = w.add_truth(truth)
        step = 65536
        for i in range(0, tab.n_readings, step):  # bounded memory per append
            sl = slice(i, i + step)
            s.append(tab.samples[sl], time=tab.time_ns[sl],
                     sequence=np.arange(i, min(i + step, tab.n_readings)),
                     x=tab.x[sl], y=tab.y[sl], z=tab.z[sl])
    summary["streams"]["emi"] = {
        "readings": tab.n_readings, "gates": int(tab.samples.shape[1]),
        "gate_times": None if tab.gate_times is None else tab.gate_times.tolist(),
        "time_source": tab.time_source,
    }
    return summary
