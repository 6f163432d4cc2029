"""``demine info FILE…``: what a recording holds."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="list the streams, frame counts, durations, rates and tables of recordings",
        description="List the streams of each recording (frames, duration, rate, position "
        "extent) and the sizes of its truth, alarm and marker tables.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="demine recording(s) (.h5)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(run=run)


def _m(v: float) -> str:
    """Metres to the millimetre; a value no survey has (a damaged or
    foreign file's 1e300) in a few digits, not 300."""
    return f"{v:.3f}" if abs(v) < 1e9 else f"{v:.4g}"


def _fmt_extent(ext: dict, z_datum: str = "ground") -> str:
    # x, y, z in metres to the millimetre; lon, lat in degrees to 1e-7 (about 1 cm):
    # three decimals of a degree (about 100 m) would show a lane as a point
    parts = []
    for k, (lo, hi) in ext.items():
        if k in ("lon", "lat"):
            parts.append(f"{k} {lo:.7f}..{hi:.7f} deg")
        elif k == "z" and z_datum != "ground":
            # (a GPS altitude less the origin's, not a height above the ground)
            parts.append(f"z {_m(lo)}..{_m(hi)} m ({z_datum})")
        else:
            parts.append(f"{k} {_m(lo)}..{_m(hi)} m")
    return ", ".join(parts) or "no positions"


def format_summary(s: dict) -> str:
    """Human-readable text of :meth:`demine.recording.Recording.summary`."""
    from ..recording import attr_text

    a = s["attrs"]
    # (every attribute shown as text: another tool may write any of them as
    # bytes or an array of strings, which had crashed the text output)
    lines = [
        f"{s['path']}: demine recording, format v{s['format_version']}, "
        f"created {attr_text(a.get('created_utc')) or '?'} by "
        f"{attr_text(a.get('software')) or 'demine'} "
        f"{attr_text(a.get('software_version')) or '?'}",
    ]

    # (another tool may write these as bytes or arrays of strings)
    meta = [f"{k} {attr_text(a.get(k))!r}" for k in ("site", "operator", "lane_id")
            if attr_text(a.get(k))]
    if meta:
        lines.append("  " + ", ".join(meta))
    if attr_text(a.get("notes")):
        lines.append(f"  notes: {attr_text(a.get('notes'))}")
    lines.append(f"  streams ({len(s['streams'])}):")
    for name, st in s["streams"].items():
        shape = f", {st['channels']} x {st['dtype']}" if "channels" in st else ""
        drv = attr_text(st.get("driver"))
        driver = f" [{drv}]" if drv else ""
        line = f"    {name:<10} {attr_text(st['kind']):<6}{driver}{shape}, {st['frames']} frames"
        if st["frames"] and "trace index in ns" in st.get("time_source", ""):
            # (an imported file without trace timing: its "times" are trace numbers)
            start = f" (starts {st['start_utc']})" if st.get("start_utc") else ""
            line += (f", no trace times in the file{start}, "
                     f"{_fmt_extent(st['extent'], st.get('z_datum', 'ground'))}")
        elif st["frames"]:
            rate = f"{st['rate_hz']:.1f} Hz" if st.get("rate_hz") else "n/a"
            line += (f", {st['duration_s']:.3f} s from {st['start_utc']}, {rate}, "
                     f"{_fmt_extent(st['extent'], st.get('z_datum', 'ground'))}")
        if st.get("frames_missing"):
            line += (f", {st['frames_missing']} frames missing in {st['sequence_gaps']} "
                     "gap(s) of the device's sequence numbers")
        lines.append(line)
    t = s["tables"]
    lines.append(f"  truth targets: {t['truth']}, alarms: {t['alarms']}, markers: {t['markers']}")
    if s["derived"]:
        lines.append("  derived: " + ", ".join(s["derived"]))
    return "\n".join(lines)


def _jsonable(v: object) -> object:
    """``v`` with numpy values (arrays, scalars, bytes attributes of files written by
    other tools) as JSON types, and non-finite numbers as null: ``json.dumps`` raised
    on the first and wrote ``NaN`` (not JSON) for the second."""
    import math

    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run(args: argparse.Namespace) -> int:
    from ..errors import DemineError
    from ..recording import Recording

    if len(args.files) == 1:   # (one file: its error is the command's, as for any)
        with Recording(args.files[0]) as rec:
            summary = rec.summary()
        print(json.dumps(_jsonable(summary), allow_nan=False) if args.json
              else format_summary(summary))
        return 0
    # several: each one that can be read is listed, those that cannot are named
    # (the first bad one had ended the listing)
    failed = 0
    for path in args.files:
        try:
            with Recording(path) as rec:
                summary = rec.summary()
        except (DemineError, OSError) as exc:
            failed += 1
            print(f"demine info: error: {exc}", file=sys.stderr, flush=True)
            continue
        if args.json:
            print(json.dumps(_jsonable(summary), allow_nan=False), flush=True)
        else:
            print(format_summary(summary), flush=True)
    return 2 if failed else 0
