"""``demine record``: record serial devices into one recording."""

from __future__ import annotations

import argparse
import csv
import math
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record metal detector, radar and GPS serial devices into one recording",
        description="Record several serial devices at once into one HDF5 recording, "
        "with a live status line. Ctrl-C or SIGTERM stops cleanly; the file is valid "
        "at every moment (flushed at least every --flush-interval seconds).",
        epilog="PORT is any pyserial URL: /dev/ttyUSB0, COM3, socket://host:port, "
        "rfc2217://host:port. Example: demine record --device emi-pi=/dev/ttyUSB0 "
        "--device nmea=/dev/ttyUSB1 --out lane1.h5 --duration 60",
    )
    p.add_argument("--device", action="append", required=True, metavar="[NAME:]DRIVER=PORT",
                   help="a device to record (repeat for several); `demine drivers` lists "
                   "the drivers (emi-pi, gpr, nmea, ascii-md and any installed through the "
                   "demine.drivers entry point)")
    p.add_argument("--out", "-o", required=True, type=Path, help="recording to create (.h5)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--site", default="")
    p.add_argument("--operator", default="")
    p.add_argument("--lane-id", default="")
    p.add_argument("--notes", default="")
    p.add_argument("--origin", metavar="LON,LAT[,ALT]",
                   help="WGS 84 origin of the local frame (default: the first GPS fix; "
                   "without ALT, the first fix's altitude)")
    p.add_argument("--bearing", type=float, default=0.0, metavar="DEG",
                   help="azimuth of the local +y axis, clockwise from north (default 0)")
    p.add_argument("--calibration", action="append", default=[], metavar="STREAM=PROFILE",
                   help="calibration profile (shipped name or .toml path) for a stream")
    p.add_argument("--truth", type=Path, metavar="CSV",
                   help="ground truth table (columns id,type,is_mine,x,y,depth,metal_mass,notes)")
    p.add_argument("--scene", metavar="SCENE",
                   help="a simulator scene: its ground truth, local frame and gate times")
    p.add_argument("--flush-interval", type=float, default=1.0, metavar="S",
                   help="longest time received data stays only in memory (default 1 s; "
                   "0.025 puts every frame and alarm in the file within ~50 ms at the reference "
                   "load, for about 3 %% more of a core: docs/benchmarks.md)")
    p.add_argument("--fsync", action="store_true", help="fsync the file after every flush")
    p.add_argument("--startup-timeout", type=float, default=10.0, metavar="S",
                   help="how long to wait for the first frames of every device (default 10 s)")
    p.add_argument("--detect", nargs="?", const=True, default=None, metavar="CONFIG",
                   help="run the detectors live and write alarms into the recording "
                   "(optionally with a detection config TOML; see demine detect)")
    p.add_argument("--control", metavar="ADDR", default=None,
                   help="serve the control channel (marks, pause/resume; used by demine "
                   "console) on a Unix socket path or 127.0.0.1:PORT")
    p.add_argument("--quiet", "-q", action="store_true", help="no status line")
    p.set_defaults(run=run)


def origin_frame(text: str, bearing: float) -> Any:
    """The local frame of ``--origin LON,LAT[,ALT]`` and ``--bearing``.

    Without ALT the altitude is NaN: the recorder takes the first GPS fix's
    (0 would make every ``z`` a height above the sea).
    """
    from ..positions import LocalFrame

    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--origin {text!r}: expected LON,LAT[,ALT]") from exc
    if len(parts) not in (2, 3):
        raise ConfigError(f"--origin {text!r}: expected LON,LAT[,ALT]")
    return LocalFrame(parts[0], parts[1], parts[2] if len(parts) == 3 else math.nan, bearing)


def read_truth_csv(path: Path) -> list[dict[str, Any]]:
    """Ground truth rows from a CSV file with a header line."""
    numeric = {"is_mine": int, "x": float, "y": float, "depth": float, "metal_mass": float}
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                if "id" not in row:
                    raise ConfigError(f"{path}: no 'id' column")
                out: dict[str, Any] = {}
                for k, v in row.items():
                    if k is None or v is None or v == "":
                        continue
                    try:
                        out[k] = numeric[k](v) if k in numeric else v
                    except ValueError as exc:
                        raise ConfigError(f"{path}:{i}: column {k!r}: {v!r} is not a number") \
                            from exc
                rows.append(out)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read truth table: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: truth table is not a text CSV file "
                          f"(byte {exc.start} is not UTF-8)") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: truth table is not a text CSV file ({exc})") from None
    return rows


_QUIET_EVENTS = frozenset({"connected", "stopped"})


def _print_event(ev: Any) -> None:
    """Warnings (stall, disconnect, wrong baud, …) on their own line."""
    if ev.kind not in _QUIET_EVENTS:
        print(f"\n{ev.device}: {ev.kind}: {ev.message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from .._params import check_number
    from ..calibration import load_profile
    from ..positions import LocalFrame
    from ..recorder import Recorder, format_status, parse_device

    # options checked before any device is opened or file created
    if args.duration is not None:
        args.duration = check_number("record", "--duration", args.duration, lo=0,
                                     lo_open=True)
    if getattr(args, "control", None):
        from ..control import parse_address

        parse_address(args.control)
    devices = [parse_device(d) for d in args.device]
    frame = None
    truth: Any = None
    gate_times = None
    if args.scene:
        from ..simulate import load_scene

        scene = load_scene(args.scene)
        frame = LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt,
                           scene.bearing_deg)
        truth = scene.truth()
        gate_times = scene.gate_times.tolist()
    if args.origin:
        frame = origin_frame(args.origin, args.bearing)
    if args.truth:
        truth = read_truth_csv(args.truth)
    names = {d.name or d.driver for d in devices}
    for item in args.calibration:
        if "=" not in item:
            raise ConfigError(f"--calibration {item!r}: expected STREAM=PROFILE")
        stream, profile = item.split("=", 1)
        matches = [d for d in devices if stream in (d.name, d.driver)]
        if not matches:
            raise ConfigError(f"--calibration {item!r}: no device {stream!r} among {names}")
        for d in matches:
            d.calibration.update(load_profile(profile))
    if gate_times is not None:
        for d in devices:
            d.calibration.setdefault("gate_times", gate_times)

    rec = Recorder(args.out, devices, frame=frame, truth=truth, site=args.site,
                   operator=args.operator, lane_id=args.lane_id, notes=args.notes,
                   flush_interval=args.flush_interval, fsync=args.fsync,
                   overwrite=args.overwrite, startup_timeout=args.startup_timeout,
                   on_event=_print_event, detect=args.detect,
                   control=getattr(args, "control", None))

    def on_term(signum: int, frame_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    tty = sys.stderr.isatty()

    def show(status: dict) -> None:
        if args.quiet:
            return
        line = format_status(status)
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr,
              flush=True)

    stopped_by_user = False
    try:
        rec.start()
        try:
            rec.run(args.duration, status=show)
        except KeyboardInterrupt:
            stopped_by_user = True
    finally:
        # a SIGTERM repeated while the file is being closed must not cut the
        # final writes short (Ctrl-C again still interrupts)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            rec.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
        if not args.quiet:
            print(file=sys.stderr)
    for note in rec.processing_notes:
        print(f"  note: {note}", file=sys.stderr if rec.error is not None else sys.stdout)
    if rec.error is not None:
        from ..errors import DemineError, RecordingError

        if isinstance(rec.error, DemineError):
            raise rec.error
        raise RecordingError(f"{args.out}: recording stopped: {rec.error}")
    total = sum(rec.frames_written.values())
    how = "stopped" if stopped_by_user else "done"
    alarms = f", {rec.alarms_written} alarms" if args.detect else ""
    print(f"{how}: {total} frames in {args.out} "
          + ", ".join(f"{k} {v}" for k, v in rec.frames_written.items()) + alarms)
    return 0
