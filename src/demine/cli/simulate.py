"""``demine simulate SCENE``: simulated devices on pseudo-terminals, or a lane to a file."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve simulated devices (metal detector, radar, GPS) on pseudo-terminals",
        description="Simulate a lane (a shipped scene name or a scene TOML file). With "
        "--device, serve each device's real wire protocol on its own pseudo-terminal and "
        "print one line 'DRIVER PATH' per device, then run until the duration ends, "
        "Ctrl-C or SIGTERM. When the duration ends, a reader that has a device's port open "
        "gets up to 10 s to take what the port still holds; a port nobody has open "
        "closes at once (its unread bytes are discarded). Each device's frames and "
        "bytes sent and dropped go to stderr at the end. With --out, write the run "
        "straight to a recording instead (with its ground truth). --list shows the "
        "shipped scenes.",
    )
    p.add_argument("scene", nargs="?", metavar="SCENE",
                   help="scene name (see --list) or path of a scene .toml file")
    p.add_argument("--device", action="append", default=[], metavar="DRIVER",
                   help="emi-pi (pulse-induction detector), gpr, nmea (RTK tracker) or "
                   "ascii-md (CW detector printing amplitude,phase); repeat for several")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds of data (devices: default until stopped; --out: default "
                   "one coverage of the lane)")
    p.add_argument("--seed", type=int, default=0, help="run seed, >= 0 (default 0)")
    p.add_argument("--layout-seed", type=int, default=None, metavar="N",
                   help="re-draw the random part of the scene's layout (random clutter "
                   "and mines, soil pattern) with this seed, >= 0 (default: the scene's "
                   "own layout)")
    p.add_argument("--alt-physics", action="store_true",
                   help="use the alternative forward models (sphere eddy modes, band-limited "
                   "soil relaxation, Gaussian-derivative radar pulse, refracted rays) to "
                   "check that a method does not depend on one model")
    p.add_argument("--speed", type=float, default=None, metavar="FACTOR",
                   help="real-time factor for devices, > 0 (default 1.0)")
    p.add_argument("--fast", action="store_true",
                   help="devices wait (up to 30 s) for a reader to open their port, then "
                   "send as fast as it reads, not in real time (no reader within 30 s is an "
                   "error, status 2)")
    p.add_argument("--faults", default="", metavar="SPEC",
                   help="inject wire faults on every device, probabilities per frame, e.g. "
                   "'drop=0.01,duplicate=0.01,corrupt=0.01,garbage=0.01,truncate=0.01'")
    p.add_argument("--link", action="append", default=[], metavar="DRIVER=PATH",
                   help="also keep a stable symbolic link PATH to that device's pty (it "
                   "survives --unplug-every)")
    p.add_argument("--unplug-every", default=None, metavar="PERIOD:DOWN",
                   help="unplug every device every PERIOD s for DOWN s, PERIOD > DOWN > 0 "
                   "(a new pty each time; use --link for a stable name)")
    p.add_argument("--out", "-o", metavar="RECORDING", default=None,
                   help="write the simulated lane to this recording (no devices)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--streams", default=None, metavar="LIST",
                   help="streams written by --out, comma-separated from emi, gpr, gps, cw "
                   "(default emi,gpr,gps)")
    p.add_argument("--list", action="store_true", help="list the shipped scenes and exit")
    p.set_defaults(run=run)


#: Options that only devices (not --out) use, by their attribute and option name.
#: Seconds a ``--fast`` device waits for a reader to open its port.
FAST_WAIT_READER = 30.0

_DEVICE_ONLY = (("speed", "--speed"), ("fast", "--fast"), ("faults", "--faults"),
                ("link", "--link"), ("unplug_every", "--unplug-every"))


def _check_args(args: argparse.Namespace) -> None:
    """Check the options of both modes before any file, scene or pty is touched."""
    from pathlib import Path

    from .._params import check_number
    from ..errors import ConfigError
    from ._paths import check_not_input

    def number(option: str, value: object, **kw: object) -> object:
        return check_number("simulate", option, value, **kw)

    if args.duration is not None:
        args.duration = number("--duration", args.duration, lo=0, lo_open=True)
    args.seed = number("--seed", args.seed, lo=0, integer=True)
    if args.layout_seed is not None:
        args.layout_seed = number("--layout-seed", args.layout_seed, lo=0, integer=True)
    if args.out:
        given = [opt for attr, opt in _DEVICE_ONLY if getattr(args, attr) not in (None, "", [],
                                                                                  False)]
        if args.device:
            raise ConfigError("--out writes a file; it does not take --device")
        if given:
            raise ConfigError(f"{given[0]} applies to --device, not to --out (a recording "
                              "is written at once, without a wire)")
        streams = [s.strip() for s in (args.streams or "emi,gpr,gps").split(",")]
        if not all(streams):
            raise ConfigError(f"--streams {args.streams!r}: expected stream names separated "
                              "by commas (emi, gpr, gps, cw)")
        args.streams = streams
        if args.scene and Path(args.scene).is_file():
            check_not_input(args.out, [args.scene])
        if Path(args.out).exists() and not args.overwrite:
            # before simulating, not after (a lane can take minutes)
            raise ConfigError(f"{args.out}: file exists (--overwrite replaces it)")
        return
    for attr, opt in (("streams", "--streams"), ("overwrite", "--overwrite")):
        if getattr(args, attr):
            raise ConfigError(f"{opt} applies to --out, not to --device")
    if args.speed is not None:
        args.speed = number("--speed", args.speed, lo=0, lo_open=True)
    else:
        args.speed = 1.0


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..simulate import list_scenes, load_scene, simulate_lane

    if args.list:
        for name in list_scenes():
            sc = load_scene(name)
            print(f"{name:<20} {sc.width:g} x {sc.length:g} m, {len(sc.objects)} objects "
                  f"({sum(o.is_mine for o in sc.objects)} mines): {sc.description}")
        return 0
    if not args.scene:
        raise ConfigError("a SCENE is required (name of a shipped scene or a .toml file)")
    _check_args(args)
    scene = load_scene(args.scene, layout_seed=args.layout_seed)
    if args.alt_physics:
        from ..simulate.scene import Physics

        scene = scene.replace(physics=Physics.alternative())
    if args.out:
        t = time.perf_counter()
        res = simulate_lane(scene, args.duration, seed=args.seed, streams=args.streams)
        res.write(args.out, overwrite=args.overwrite)
        el = time.perf_counter() - t
        print(f"{args.out}: scene {scene.name!r}, {res.duration:.1f} s simulated in {el:.1f} s "
              f"({res.duration / max(el, 1e-9):.0f}x real time), {len(scene.objects)} targets",
              flush=True)
        return 0
    if not args.device:
        raise ConfigError("give at least one --device (emi-pi, gpr, nmea, ascii-md) or "
                          "--out FILE")
    from ..simulate.device import SimulatedDevice

    faults: dict[str, float] = {}
    for item in (x.strip() for x in args.faults.split(",") if x.strip()):
        key, sep, value = item.partition("=")
        try:
            faults[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--faults {item!r}: expected NAME=PROBABILITY") from None
        if not sep:
            raise ConfigError(f"--faults {item!r}: expected NAME=PROBABILITY")
        if not 0.0 <= faults[key.strip()] <= 1.0:
            raise ConfigError(f"--faults {item!r}: the probability must be in [0, 1]")
    links: dict[str, str] = {}
    for item in args.link:
        drv, sep, path = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--link {item!r}: expected DRIVER=PATH")
        if drv in links:
            raise ConfigError(f"--link {drv}: given twice")
        if args.device.count(drv) > 1:
            raise ConfigError(f"--link {drv}: {args.device.count(drv)} devices {drv} would "
                              "share one link")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ConfigError(f"--link {item!r}: no such directory {parent}")
        links[drv] = path
    unknown = sorted(set(links) - set(args.device))
    if unknown:
        raise ConfigError(f"--link {unknown[0]}: no such --device")
    unplug = None
    if args.unplug_every:
        try:
            period, down = (float(v) for v in args.unplug_every.split(":"))
        except ValueError:
            raise ConfigError(f"--unplug-every {args.unplug_every!r}: expected PERIOD:DOWN "
                              "in seconds") from None
        if not (math.isfinite(period) and period > down > 0):
            raise ConfigError(f"--unplug-every {args.unplug_every!r}: need PERIOD > DOWN > 0 "
                              "seconds, both finite")
        unplug = (period, down)
    devices: list[SimulatedDevice] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name in args.device:
            devices.append(SimulatedDevice(name, scene, seed=args.seed, duration=args.duration,
                                           realtime=not args.fast, speed=args.speed,
                                           wait_reader=FAST_WAIT_READER if args.fast else 0.0,
                                           faults=faults or None, link=links.get(name)))
        for dev in devices:
            print(f"{dev.driver_name} {dev.link or dev.port}", flush=True)
        t0 = time.monotonic()
        for dev in devices:
            dev.start(t0)
        while not stop.is_set():
            if all(d.wait(0) for d in devices):
                break
            if unplug is not None:
                phase = (time.monotonic() - t0) % unplug[0]
                out = phase >= unplug[0] - unplug[1]
                for dev in devices:
                    if out and dev.plugged:
                        dev.unplug()
                        print(f"{dev.driver_name} unplugged", file=sys.stderr, flush=True)
                    elif not out and not dev.plugged:
                        dev.replug()
                        print(f"{dev.driver_name} plugged in on {dev.port}", file=sys.stderr,
                              flush=True)
            stop.wait(0.05 if unplug is not None else 0.2)
        for dev in devices:
            if dev.error is not None:
                print(f"demine simulate: {dev.driver_name}: {dev.error}", file=sys.stderr)
                return 2
        # readers that have the port open take what is still in the pty (at most
        # 10 s in all); a port nobody has open closes at once
        deadline = time.monotonic() + 10.0
        for dev in devices:
            dev.drain(max(deadline - time.monotonic(), 0.0), cancel=stop)
        return 0
    finally:
        for dev in devices:
            dev.stop()
        for s, h in old.items():
            signal.signal(s, h)
        for dev in devices:
            injected = ", ".join(f"{k} {v}" for k, v in dev.injected.items() if v)
            print(f"{dev.driver_name}: {dev.frames_sent} frames, {dev.bytes_sent} bytes sent, "
                  f"{dev.bytes_dropped} dropped" + (f"; injected {injected}" if injected else ""),
                  file=sys.stderr)
