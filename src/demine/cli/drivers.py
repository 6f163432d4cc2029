"""``demine drivers [NAME] [--probe PORT]``: list drivers, show a protocol, test a port."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drivers",
        help="list device drivers, print a driver's wire protocol, or probe a serial port",
        description="Without NAME: list the drivers (built-in and from the demine.drivers "
        "entry-point group) with their kind and default serial settings. With NAME: print "
        "the driver's protocol note. With --probe PORT: read the port for --seconds with "
        "that driver and report frames, rates, faults and a diagnosis (wrong baud, silence); "
        "the frame rate leaves out the first frames (up to 0.5 s), which include what the "
        "port held when it was opened. "
        "Exit status: 0, or with --probe 0 if frames were decoded and 1 if none; 2 on an "
        "error (unknown driver, port that cannot be opened, bad option).",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="driver name, e.g. emi-pi")
    p.add_argument("--probe", metavar="PORT",
                   help="pyserial URL or device path to read with the driver")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="with --probe: seconds to read, > 0 (default 3)")
    p.add_argument("--baud", type=int, metavar="BAUD",
                   help="with --probe: baud rate instead of the driver's default")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="driver option, e.g. columns=millis,amplitude,phase (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def _options(items: list[str]) -> dict:
    from ..errors import ConfigError

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        out[key] = tuple(v for v in value.split(",")) if key == "columns" else value
    return out


def run(args: argparse.Namespace) -> int:
    from .._params import check_number
    from ..drivers import available_drivers, get_driver
    from ..errors import ConfigError

    if not args.probe:
        # accepted and ignored, they would suggest a probe happened with them
        for opt, value in (("--seconds", args.seconds), ("--baud", args.baud)):
            if value is not None:
                raise ConfigError(f"{opt} applies to --probe PORT")
    args.seconds = check_number("drivers", "--seconds",
                                3.0 if args.seconds is None else args.seconds,
                                lo=0, lo_open=True)
    if args.baud is not None:
        args.baud = check_number("drivers", "--baud", args.baud, lo=1, integer=True)
    if args.name is None:
        if args.probe:
            raise ConfigError("--probe needs a driver NAME")
        if args.option:
            raise ConfigError("--option needs a driver NAME")
        rows = []
        for name in available_drivers():
            try:
                d = get_driver(name)
            except ConfigError as exc:
                rows.append({"name": name, "error": str(exc)})
                continue
            rows.append({"name": name, "kind": d.kind, "framing": d.framing,
                         "baudrate": d.serial_settings.get("baudrate"),
                         "format": d.frame_format})
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                if "error" in r:
                    print(f"{r['name']:<10} (cannot load: {r['error']})")
                else:
                    print(f"{r['name']:<10} {r['kind']:<4} {r['framing']:<6} "
                          f"{r['baudrate']:>8} baud  {r['format']}")
        return 0
    drv = get_driver(args.name, **_options(args.option))
    if not args.probe:
        if args.json:
            print(json.dumps({"name": drv.name, "kind": drv.kind, "framing": drv.framing,
                              "baudrate": drv.serial_settings.get("baudrate"),
                              "format": drv.frame_format, "protocol": drv.protocol_note()}))
        else:
            print(drv.protocol_note())
        return 0
    return _probe(drv, args)


def _probe(drv, args: argparse.Namespace) -> int:
    import logging

    # the reader's log lines would repeat, unprefixed on stderr, what the report says
    log = logging.getLogger("demine.acquisition")
    quiet = logging.NullHandler()
    log.addHandler(quiet)
    propagate, log.propagate = log.propagate, False
    try:
        return _probe_port(drv, args)
    finally:
        log.removeHandler(quiet)
        log.propagate = propagate


#: Longest wait after the first frames before the probe measures the frame rate:
#: what the port or the device's own buffer held when the port was opened (a
#: device streams whether or not anybody reads) arrives in that interval.
_SETTLE_S = 0.5


def _frame_rate(deliveries: Sequence[Sequence[float]], seconds: float) -> tuple[float, float]:
    """Frames per second of a probe, not counting what was buffered before it.

    Parameters
    ----------
    deliveries : sequence of (float, int) pairs
        Monotonic time of each read that completed frames, and how many.
    seconds : float
        How long the probe read (the rate when it cannot be measured).

    Returns
    -------
    rate : float
        The frames completed by the reads after the first read at least
        ``min(_SETTLE_S, seconds / 4)`` after the first frames, over the time
        between that read and the last; with fewer reads, the frames after the
        first read over the time from it to the last; with one read, its frames
        over ``seconds``.
    window : float
        The seconds the rate was measured over (``seconds`` in the last case).
    """
    if len(deliveries) < 2:
        return sum(n for _, n in deliveries) / seconds, seconds
    settled = deliveries[0][0] + min(_SETTLE_S, seconds / 4)
    start = next((i for i, (t, _) in enumerate(deliveries) if t >= settled), 0)
    if start >= len(deliveries) - 1:
        start = 0
    window = deliveries[-1][0] - deliveries[start][0]
    return sum(n for _, n in deliveries[start + 1:]) / window, window


def _probe_port(drv, args: argparse.Namespace) -> int:
    import time

    from ..acquisition import DeviceReader

    deliveries: list[list] = []  # [monotonic time of a read, frames it completed]

    def count(batch) -> None:
        now = time.monotonic()
        if deliveries and now - deliveries[-1][0] < 1e-3:  # (batches of one read)
            deliveries[-1][1] += len(batch)
        else:
            deliveries.append([now, len(batch)])

    opts = {"baudrate": args.baud} if args.baud is not None else None
    reader = DeviceReader(args.probe, drv, on_frames=count, serial_options=opts,
                          reconnect=False, stall_timeout=min(2.0, args.seconds / 2))
    reader.start()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end and reader.running:
        time.sleep(0.05)
    reader.stop()
    st = reader.stats
    if reader.error is not None and not st.bytes_read:
        from ..errors import ConfigError

        raise ConfigError(f"cannot read {args.probe}: {reader.error}")
    seconds = args.seconds
    rate, window = _frame_rate(deliveries, seconds)
    report = {
        "port": args.probe, "driver": drv.name,
        "baudrate": reader.settings.get("baudrate"),
        "bytes": st.bytes_read, "frames": st.frames, "frames_per_s": rate,
        "rate_window_s": window,
        "crc_errors": st.crc_errors, "truncated": st.truncated, "resyncs": st.resyncs,
        "bytes_skipped": st.bytes_skipped, "sequence_gaps": st.sequence_gaps,
        "frames_missing": st.frames_missing, "duplicates": st.duplicates,
        "bad_lines": st.bad_lines, "stalls": st.stalls, "disconnects": st.disconnects,
        "diagnosis": st.diagnosis,
        "error": None if reader.error is None else str(reader.error),
    }
    if not st.bytes_read:
        report["diagnosis"] = (f"no bytes from {args.probe} in {seconds:g} s: device off, "
                               f"wrong port, or it needs a command to start streaming?")
    elif not st.frames and not st.diagnosis:
        report["diagnosis"] = (f"{st.bytes_read} bytes but no valid {drv.name} frame at "
                               f"{report['baudrate']} baud: wrong baud rate or wrong driver?")
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.probe} with {drv.name} at {report['baudrate']} baud for {seconds:g} s: "
              f"{st.bytes_read} bytes, {st.frames} frames ({report['frames_per_s']:.1f}/s, "
              f"measured over {window:.1f} s)")
        print(f"  crc errors {st.crc_errors}, truncated {st.truncated}, resyncs {st.resyncs} "
              f"({st.bytes_skipped} bytes skipped), gaps {st.sequence_gaps} "
              f"({st.frames_missing} frames), duplicates {st.duplicates}, "
              f"bad lines {st.bad_lines}, stalls {st.stalls}")
        if report["diagnosis"]:
            print(f"  diagnosis: {report['diagnosis']}")
        if report["error"]:
            print(f"  reading stopped: {report['error']}")
    return 0 if st.frames else 1
