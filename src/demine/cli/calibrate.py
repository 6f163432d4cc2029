"""``demine calibrate``: detector nulling, transmitter on-time, radar time zero and
survey wheel, as profiles."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="null a detector (reading in air), measure its pulse, find radar time "
        "zero, or calibrate a survey wheel; write a profile",
        description="Calibration procedures. Each reads a recording and writes a profile "
        "(TOML) that `demine record --calibration DEVICE=PROFILE` uses; `reposition` places "
        "a wheel radar's recording again by a wheel profile.",
    )
    s = p.add_subparsers(dest="procedure", metavar="PROCEDURE", required=True)
    for name, helptext, segment in (
            ("null", "detector null from a reading held in air: each gate's in-air level "
             "and noise, kept in the profile (the processing removes the level by itself)",
             "the in-air segment"),
            ("pulse", "metal detector's transmitter on-time from a sweep over magnetic "
             "ground (the viscous soil's decay)", "the sweep")):
        e = s.add_parser(name, help=helptext)
        e.add_argument("recording", type=Path)
        e.add_argument("--stream", default="emi", help="EMI stream (default emi)")
        _segment_options(e, segment)
        _profile_options(e, "emi-pi-default")
    t = s.add_parser("time-zero", help="radar time zero from the direct wave")
    t.add_argument("recording", type=Path)
    t.add_argument("--stream", default="gpr", help="radar stream (default gpr)")
    t.add_argument("--threshold", type=float, default=0.5,
                   help="first-break threshold as a fraction of the trace's peak, both taken "
                   "about the trace's level (DC offset and slow drift removed); the pick is "
                   "the peak of that arrival, the centre of its flat top where the radar "
                   "clipped it (default 0.5)")
    _profile_options(t, "gpr-default")
    w = s.add_parser("wheel", help="radar's survey wheel from a run over a known distance: "
                     "distance_per_count, which places a radar recorded without a GPS")
    w.add_argument("recording", type=Path)
    w.add_argument("--distance", type=float, required=True, metavar="M",
                   help="metres the wheel was pushed in a straight line over the run (a tape "
                   "on the ground), one way, in the direction it surveys")
    w.add_argument("--stream", default="gpr", help="radar stream (default gpr)")
    w.add_argument("--marks", action="store_true",
                   help="the run is between the two marks made at the tape's ends: the "
                   "radar's marker flag, else the recording's markers (instead of "
                   "--start/--stop)")
    _segment_options(w, "the run")
    _profile_options(w, "gpr-default")
    r = s.add_parser("reposition", help="place a radar recorded without a GPS again by its "
                     "measured wheel (a profile from demine calibrate wheel): a new recording",
                     description="Write a copy of RECORDING whose radar stream is placed by "
                     "the distance_per_count of PROFILE, as demine record would have placed "
                     "it: x along the line from its wheel counts and the stream's calibration; "
                     "the stream's alarms, found on the old scale, are left out (demine detect "
                     "finds them again). RECORDING is not changed; its samples, counts, truth, "
                     "markers and other streams are copied as they are.")
    r.add_argument("recording", type=Path)
    r.add_argument("--profile", required=True, metavar="PROFILE",
                   help="wheel profile (.toml, from demine calibrate wheel, or a shipped name)")
    r.add_argument("--stream", default="gpr", help="radar stream (default gpr)")
    r.add_argument("--out", "-o", type=Path, required=True, metavar="RECORDING",
                   help="recording to write (not RECORDING itself)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(run=run)


def _segment_options(p: argparse.ArgumentParser, segment: str) -> None:
    """``--start``/``--stop`` of the part of the stream a procedure reads."""
    p.add_argument("--start", type=float, default=None, metavar="S",
                   help=f"start of {segment}, seconds from the stream's first frame "
                   "(default 0)")
    p.add_argument("--stop", type=float, default=None, metavar="S",
                   help=f"end of {segment}, seconds from the stream's first frame "
                   "(default: the stream's end; beyond it is refused)")


def _profile_options(p: argparse.ArgumentParser, base: str) -> None:
    """``--base``, ``--out`` and ``--overwrite``: the profile a procedure writes."""
    p.add_argument("--base", default=None,
                   help=f"profile to start from, shipped name or .toml path (default {base}); "
                   "give the --out profile to add this calibration to it")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="PROFILE",
                   help="profile to write (TOML)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out profile that is not the --base")


def _same_file(base: str | None, out: Path) -> bool:
    """Whether the ``--base`` given is the ``--out`` file (a profile added to)."""
    if base is None:
        return False
    try:
        return Path(base).is_file() and Path(base).samefile(out)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    from .._params import check_number
    from ..calibration.procedures import (
        check_segment,
        null_profile,
        pulse_profile,
        time_zero_profile,
        wheel_profile,
        write_profile,
    )
    from ..errors import ConfigError
    from ._paths import check_text_output

    if args.procedure == "reposition":
        from ..calibration.procedures import reposition
        from ._paths import check_not_input, check_output_place

        check_output_place(args.out)
        check_not_input(args.out, [args.recording])
        got = reposition(args.recording, args.out, args.profile, stream=args.stream,
                         overwrite=args.overwrite)
        before = got["distance_per_count_before"]
        print(f"{args.out}: {args.stream} placed by distance_per_count "
              f"{got['distance_per_count']:.6g} m (was "
              + (f"{before:.6g} m" if isinstance(before, int | float) else "not given")
              + f"): {got['placed']} of {got['traces']} traces, the line "
              f"{got['length_before']:.3f} m -> {got['length_after']:.3f} m"
              + (f"; its {got['alarms']} alarm(s), found on the old scale, left out (demine "
                 f"detect {args.out} --stream {args.stream} --write finds them again)"
                 if got["alarms"] else "")
              + (f"; {got['jumps']} count reset(s) not taken as moves" if got["jumps"]
                 else "")
              + (f"; {got['faults']} trace(s) flagged as an encoder fault not placed"
                 if got["faults"] else ""))
        return 0
    # options checked before the recording is opened
    if args.procedure == "time-zero":
        args.threshold = check_number("calibrate", "--threshold", args.threshold, lo=0.0,
                                      lo_open=True, hi=1.0)
    else:
        check_segment(args.start, args.stop)
    if args.procedure == "wheel":
        args.distance = check_number("calibrate", "--distance", args.distance, lo=0.0,
                                     lo_open=True, hi=1e6)
    check_text_output(args.out, [args.recording])
    # a calibration made after another (null, then pulse) into the same --out would
    # start from the shipped profile and throw the earlier one away: refused before
    # the recording is read (a pulse fit can take a while)
    if args.out.exists() and not args.overwrite and not _same_file(args.base, args.out):
        # (with another --base too: the profile written would be that base's,
        # and the calibrations kept in --out would be lost)
        raise ConfigError(f"{args.out} exists" + (f" and is not the --base ({args.base})"
                                                  if args.base is not None else "")
                          + f": give --base {args.out} to add this calibration to it, or "
                          "--overwrite to replace it")
    if args.base is None:
        args.base = ("gpr-default" if args.procedure in ("time-zero", "wheel")
                     else "emi-pi-default")
    if args.procedure == "null":
        prof = null_profile(args.recording, args.stream, start=args.start, stop=args.stop,
                            base=args.base)
        what = f"null of {len(prof['null'])} gates"
    elif args.procedure == "pulse":
        prof = pulse_profile(args.recording, args.stream, start=args.start, stop=args.stop,
                             base=args.base)
        fit = prof["pulse_fit"]
        what = (f"transmitter on-time {prof['pulse_length'] * 1e6:.1f} us (residual per "
                f"block {fit[1]:.3g}, {fit[0]:.3g} for a step-off)")
    elif args.procedure == "wheel":
        prof = wheel_profile(args.recording, args.stream, distance=args.distance,
                             start=args.start, stop=args.stop, base=args.base,
                             marks=args.marks)
        dpc = prof["distance_per_count"]
        what = (f"distance_per_count {dpc:.6g} m ({prof['wheel_counts']:.15g} counts over "
                f"{args.distance:g} m: {1 / abs(dpc):.6g} counts per m)")
    else:
        prof = time_zero_profile(args.recording, args.stream, threshold=args.threshold,
                                 base=args.base)
        what = f"time zero {prof['time_zero'] * 1e9:.3f} ns (sample {prof['time_zero_sample']:g})"
    write_profile(prof, args.out)
    print(f"{args.out}: {what}")
    return 0
