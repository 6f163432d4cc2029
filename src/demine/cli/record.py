"""``demine record``: record serial devices into one recording."""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..recorder import DeviceSpec


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
    p.add_argument("--out", "-o", required=True, type=Path, metavar="RECORDING",
                   help="recording to create (.h5)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_metadata_options(p)
    # (a value such as "-70.25,-33.5", west or south of 0°, is a value, not an
    # option: argparse takes only a lone negative number for one)
    p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-?\d*\.?\d+(,-?\d*\.?\d+)+$")
    p.add_argument("--origin", metavar="LON,LAT[,ALT]",
                   help="WGS 84 origin of the local frame (default: the first GPS fix; "
                   "without ALT, the first fix's altitude)")
    p.add_argument("--bearing", type=float, default=0.0, metavar="DEG",
                   help="azimuth of the local +y axis, clockwise from north (default 0)")
    p.add_argument("--calibration", action="append", default=[], metavar="DEVICE=PROFILE",
                   help=CALIBRATION_HELP)
    p.add_argument("--option", action="append", default=[], metavar="DEVICE.KEY=VALUE",
                   help=OPTION_HELP)
    p.add_argument("--truth", type=Path, metavar="CSV",
                   help="ground truth table (columns id,type,is_mine,x,y,depth,metal_mass,notes)")
    p.add_argument("--scene", metavar="SCENE",
                   help="a simulator scene: its ground truth, local frame, gate times and "
                   "radar sample interval")
    p.add_argument("--flush-interval", type=float, default=1.0, metavar="S",
                   help="longest time received data stays only in memory (default 1 s; "
                   "0.025 puts every frame and alarm in the file within ~50 ms at the reference "
                   "load, for about 3 %% more of a core: docs/benchmarks.md)")
    p.add_argument("--fsync", action="store_true", help="fsync the file after every flush")
    p.add_argument("--startup-timeout", type=float, default=10.0, metavar="S",
                   help="how long to wait for the first frames of every device, and for a "
                   "GPS's first fix when no --origin is given (default 10 s)")
    p.add_argument("--detect", nargs="?", const=True, default=None, metavar="CFG",
                   help="run the detectors live and write alarms into the recording "
                   "(optionally with a detection config TOML; see demine detect)")
    p.add_argument("--control", metavar="ADDR", default=None,
                   help="serve the control channel (marks, pause/resume; used by demine "
                   "console) on a Unix socket path or 127.0.0.1:PORT")
    p.add_argument("--quiet", "-q", action="store_true", help="no status line")
    p.set_defaults(run=run)


#: Help of ``--calibration`` (``demine record``; ``demine console`` passes it on).
CALIBRATION_HELP = (
    "calibration profile (a shipped name such as emi-pi-default, or a .toml path, e.g. from "
    "demine calibrate) of one device (repeat for several); DEVICE is the device's NAME "
    "(NAME:DRIVER=PORT, or its DRIVER without a NAME) or its stream name in the recording "
    "(emi, gpr, gps: what demine info shows). A device without one gets its driver's "
    "shipped profile (DRIVER-default) when there is one: the reference device's values")

#: Help of ``--option`` (``demine record``; ``demine console`` passes it on).
OPTION_HELP = (
    "a driver or serial option of one device (repeat for several), DEVICE as in "
    "--calibration (may be left out with one device): e.g. emi.columns=millis,amplitude,phase "
    "for an ascii-md detector, gps.baudrate=115200 for a fast receiver; `demine drivers NAME` "
    "lists a driver's options, and serial ports take baudrate, bytesize, parity, stopbits, "
    "xonxoff, rtscts")

#: Serial settings ``--option`` gives the port (the others go to the driver), and their types.
SERIAL_OPTIONS = {"baudrate": int, "bytesize": int, "parity": str, "stopbits": float,
                  "xonxoff": bool, "rtscts": bool, "dsrdtr": bool}

#: What ``demine record`` says (on stderr, after the device's name) of a
#: device it records with its driver's shipped profile; ``demine console``
#: shows these lines of the recorder it started.
SHIPPED_PROFILE_NOTE = "no --calibration, using the shipped profile"

#: Help of the recording's metadata options, shared by ``demine record`` and ``demine import``.
METADATA_HELP = {
    "--site": "site name stored in the recording",
    "--operator": "operator stored in the recording",
    "--lane-id": "lane identifier stored in the recording",
    "--notes": "free text stored in the recording",
}

#: How to measure a device's own calibration, per stream kind.
_CALIBRATE = {"emi": "demine calibrate null (and calibrate pulse)",
              "gpr": "demine calibrate time-zero (and calibrate wheel for a survey wheel)"}

#: What a detector needs from its calibration, per stream kind: (key, what it is).
_NEEDS = {"emi": ("gate_times", "gate times"), "gpr": ("sample_interval", "sample interval")}


def add_metadata_options(p: argparse.ArgumentParser) -> None:
    """Add ``--site``, ``--operator``, ``--lane-id`` and ``--notes`` (root attributes)."""
    for option, text in METADATA_HELP.items():
        p.add_argument(option, default="", help=text)


def shipped_default(driver: str) -> str | None:
    """The name of the shipped default profile of ``driver`` (``<driver>-default``), or None."""
    from ..calibration import available_profiles

    name = f"{driver}-default"
    return name if name in available_profiles() else None


def _label(d: DeviceSpec) -> str:
    return d.name or d.driver


def apply_calibrations(devices: Sequence[DeviceSpec], items: Sequence[str], *,
                       scene: Any = None) -> list[str]:
    """Give each device its calibration, as ``demine record`` does.

    Parameters
    ----------
    devices : sequence of DeviceSpec
        The devices (their ``calibration`` is updated in place).
    items : sequence of str
        The ``--calibration DEVICE=PROFILE`` arguments.  DEVICE is a device's
        name (its ``NAME:``, or its driver) or its stream name; it must name
        exactly one device.
    scene : Scene, optional
        A simulator scene: its gate times (EMI) and sample interval (GPR) are
        those of the simulated devices.  They fill what a given profile
        lacks, and replace a shipped default's.

    Returns
    -------
    list of str
        One note per device given its driver's shipped default profile
        (``<driver>-default``) because no ``--calibration`` named it.

    Raises
    ------
    ConfigError
        An item without ``=``, naming no device or several, or an unknown profile.
    """
    from ..calibration import load_profile
    from ..drivers import get_driver
    from ..recorder import stream_names

    names = stream_names(devices)
    listing = ", ".join(f"{_label(d)!r} (stream {n!r})" for d, n in zip(devices, names,
                                                                         strict=True))
    given: set[int] = set()
    for item in items:
        key, sep, profile = item.partition("=")
        if not sep or not key or not profile:
            raise ConfigError(f"--calibration {item!r}: expected DEVICE=PROFILE, DEVICE a "
                              f"device's name or stream name ({listing})")
        i = _match_device(devices, key, "--calibration", item)
        loaded = load_profile(profile)
        d = devices[i]
        made_for = loaded.get("driver")
        if made_for and str(made_for) != d.driver and \
                _kind(str(made_for)) != get_driver(d.driver).kind:
            # (a radar's profile on a metal detector was stored with it silently)
            raise ConfigError(f"--calibration {item!r}: profile {profile!r} is for a "
                              f"{made_for} device, not for device {_label(d)!r} (driver "
                              f"{d.driver})")
        d.calibration.update(loaded)
        given.add(i)
    notes = []
    for i, d in enumerate(devices):
        kind = get_driver(d.driver).kind
        from_scene: dict[str, Any] = {}
        if scene is not None and kind == "emi":
            from_scene["gate_times"] = scene.gate_times.tolist()
        elif scene is not None and kind == "gpr":
            from_scene["sample_interval"] = scene.gpr.time_window / scene.gpr.samples
            from_scene["frequency"] = float(scene.gpr.frequency)
        default = None if i in given or d.calibration else shipped_default(d.driver)
        if default is None:
            for k, v in from_scene.items():
                d.calibration.setdefault(k, v)
            continue
        profile = load_profile(default)
        d.calibration.update({**profile, **from_scene})
        note = (f"{_label(d)}: {SHIPPED_PROFILE_NOTE} {default} "
                f"({profile.get('description', 'the reference device')})")
        if from_scene:
            note += "; " + " and ".join(k.replace("_", " ") for k in from_scene) \
                + " from the scene"
        else:
            values = _NEEDS[kind][1] if kind in _NEEDS else "values"
            note += (f": the reference device's {values}, not necessarily yours; calibrate "
                     f"yours ({_CALIBRATE.get(kind, 'demine calibrate')}) and give "
                     f"--calibration {_label(d)}=PROFILE")
        notes.append(note)
    return notes


def _kind(driver: str) -> str | None:
    """The stream kind of a driver (None: not installed here)."""
    from ..drivers import get_driver

    try:
        return str(get_driver(driver).kind)
    except ConfigError:
        return None


def _match_device(devices: Sequence[DeviceSpec], key: str, option: str, item: str) -> int:
    """The index of the one device ``key`` names (its NAME, DRIVER or stream name)."""
    from ..recorder import stream_names

    names = stream_names(devices)
    listing = ", ".join(f"{_label(d)!r} (stream {n!r})" for d, n in zip(devices, names,
                                                                         strict=True))
    matches = [i for i, (d, n) in enumerate(zip(devices, names, strict=True))
               if key in (n, d.name, d.driver)]
    if not matches:
        raise ConfigError(f"{option} {item!r}: no device {key!r}; the devices are "
                          f"{listing} (give a device's name or its stream name)")
    if len(matches) > 1:
        raise ConfigError(
            f"{option} {item!r}: {key!r} names {len(matches)} devices ("
            + ", ".join(f"streams {names[i]!r}" if j == 0 else repr(names[i])
                        for j, i in enumerate(matches))
            + "); give the stream name of the one meant")
    return matches[0]


def apply_options(devices: Sequence[DeviceSpec], items: Sequence[str]) -> None:
    """Give each device the ``--option DEVICE.KEY=VALUE`` meant for it.

    Serial settings (:data:`SERIAL_OPTIONS`) go to the port, the other keys to
    the driver (``columns`` split at commas, as ``demine drivers --probe
    --option`` takes it).  A driver that does not take an option, or a value it
    refuses, is an error now, before any port is opened.

    Raises
    ------
    ConfigError
        Naming the option and what was wrong with it.
    """
    from ..drivers import get_driver

    for item in items:
        left, sep, value = item.partition("=")
        dev, dot, key = left.rpartition(".")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected DEVICE.KEY=VALUE (e.g. "
                              "emi.columns=millis,amplitude,phase)")
        if not dot:
            if len(devices) != 1:
                raise ConfigError(f"--option {item!r}: which device? give DEVICE.KEY=VALUE "
                                  "(DEVICE as in --calibration)")
            i = 0
        else:
            i = _match_device(devices, dev, "--option", item)
        d = devices[i]
        if key in SERIAL_OPTIONS:
            kind = SERIAL_OPTIONS[key]
            try:
                if kind is bool:
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(value)
                    v: Any = value.lower() in ("1", "true", "yes")
                else:
                    v = kind(value)
            except ValueError:
                raise ConfigError(f"--option {item!r}: {key} must be "
                                  f"{'true or false' if kind is bool else kind.__name__}, "
                                  f"got {value!r}") from None
            if key == "baudrate" and v < 1:
                raise ConfigError(f"--option {item!r}: baudrate must be >= 1, got {v}")
            import serial

            try:   # (pyserial's own check of the value, without opening a port)
                serial.Serial(port=None, **{key: v})
            except (ValueError, serial.SerialException) as exc:
                raise ConfigError(f"--option {item!r}: {exc}") from None
            d.serial_options[key] = v
            continue
        d.options[key] = tuple(value.split(",")) if key == "columns" else value
        try:
            get_driver(d.driver, **d.options)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"--option {item!r}: {exc}") from None


def _with_hint(exc: ConfigError, devices: Sequence[DeviceSpec]) -> ConfigError:
    """``exc`` with how to fix it, when a device's calibration lacks what its
    processing or detector needs (:class:`MissingCalibrationError`: gate
    times, sample interval)."""
    from ..drivers import get_driver
    from ..errors import MissingCalibrationError
    from ..recorder import stream_names

    if not isinstance(exc, MissingCalibrationError):
        return exc
    names = stream_names(devices)
    for kind, (key, what) in _NEEDS.items():
        if key != exc.key:
            continue
        of_kind = [(d, n) for d, n in zip(devices, names, strict=True)
                   if get_driver(d.driver).kind == kind]
        lacking = [(d, n) for d, n in of_kind if not d.calibration.get(key)] or of_kind
        if not lacking:
            continue
        d, n = lacking[0]
        had = d.calibration.get(key)
        shipped = None if had else shipped_default(d.driver)
        return ConfigError(
            f"{exc}. " + (f"(The {len(had)} {what} of its profile do not match the device.) "
                          if isinstance(had, list) else "")
            + f"Give device {_label(d)!r} (stream {n!r}) a calibration profile with its "
            f"{what} (--calibration DEVICE=PROFILE): --calibration {_label(d)}=PROFILE, "
            f"PROFILE a .toml from {_CALIBRATE.get(kind, 'demine calibrate')}"
            + (f" or the shipped {shipped} (the reference device's)" if shipped else ""))
    return exc


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


def read_truth_csv(path: Path) -> dict[str, Any]:
    """Ground truth for a recording's truth table, from a CSV file read as
    :func:`demine.evaluate.read_truth_csv` reads it (``is_mine`` 1/0, yes/no
    or true/false, a blank cell refused), with every row a mine when there is
    no ``is_mine`` column and rows numbered ``1, 2, ...`` when there is no
    ``id``.  Columns the table cannot keep (``halo``, ``soil``, ...) are
    refused by name, before anything is written."""
    import numpy as np

    from ..evaluate import read_truth_csv as read_columns
    from ..recording import TABLES

    table = read_columns(path)
    known = {c.name for c in TABLES["truth"]}
    unknown = [c for c in table if c not in known]
    if unknown:
        raise ConfigError(
            f"{path}: column(s) {unknown} are not kept in a recording's truth table "
            f"({', '.join(sorted(known))}); give a table with those, or keep the truth apart "
            "and score with demine evaluate --truth, which reads halo and soil too")
    n = len(table["x"])
    table.setdefault("id", np.array([str(i + 1) for i in range(n)]))
    table.setdefault("is_mine", np.ones(n, dtype=np.int8))
    return table


def _frames_in(path: Path) -> int | None:
    """The frames a recording holds (None when it cannot be read)."""
    from ..errors import DemineError
    from ..recording import Recording

    try:
        with Recording(path) as r:
            return sum(len(s) for s in r.streams.values())
    except (DemineError, OSError):
        return None


_QUIET_EVENTS = frozenset({"connected", "stopped"})


def _print_event(ev: Any) -> None:
    """Warnings (stall, disconnect, wrong baud, …) on their own line."""
    if ev.kind not in _QUIET_EVENTS:
        print(f"\n{ev.device}: {ev.kind}: {ev.message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from .._params import check_number
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
    scene = None
    if args.scene:
        from ..simulate import load_scene

        scene = load_scene(args.scene)
        frame = LocalFrame(scene.anchor_lon, scene.anchor_lat, scene.anchor_alt,
                           scene.bearing_deg)
        truth = scene.truth()
    if args.origin:
        frame = origin_frame(args.origin, args.bearing)
    if args.truth:
        truth = read_truth_csv(args.truth)
    apply_options(devices, args.option)
    for note in apply_calibrations(devices, args.calibration, scene=scene):
        print(note, file=sys.stderr)

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
    except ConfigError as exc:  # (a detector lacking its calibration: say how to give it)
        raise _with_hint(exc, devices) from None
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
        if rec.error is not None and any(rec.frames_written.values()):
            kept = _frames_in(args.out)   # (not those appended: the flushed ones)
            print(f"{args.out} keeps the {kept} frames written before the error"
                  if kept is not None else
                  f"{args.out} could not be read after the error", file=sys.stderr)
    if rec.error is not None:
        for note in rec.processing_notes:
            print(f"  note: {note}", file=sys.stderr)
        from ..errors import DemineError, RecordingError

        if isinstance(rec.error, ConfigError):
            raise _with_hint(rec.error, devices)
        if isinstance(rec.error, DemineError):
            raise rec.error
        raise RecordingError(f"{args.out}: recording stopped: {rec.error}")
    total = sum(rec.frames_written.values())
    how = "stopped" if stopped_by_user else "done"
    alarms = f", {rec.alarms_written} alarms" if args.detect else ""
    # the summary first, then its notes: a script reads the first line
    print(f"{how}: {total} frames in {args.out} "
          + ", ".join(f"{k} {v}" for k, v in rec.frames_written.items()) + alarms)
    for note in rec.processing_notes:
        print(f"  note: {note}")
    return 0
