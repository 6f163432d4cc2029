"""``demine console``: the field console (live signals, radar image, alarms)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="field console: follow a recording live (status, EMI chart, radar, alarms)",
        description="A terminal console for the field. With FILE only, follow a recording "
        "that another process writes (read-only). With --device (or --simulate SCENE), start "
        "a recorder process with live detection and follow its file; keys then pause/resume "
        "(r), mark a target (m), null (n) and change the detector threshold (+/-), carried to "
        "the recorder over its control channel. q quits (and stops a recorder it started); "
        "Ctrl-C leaves (exit status 130) with the recorder recording, as a console crash does.",
        epilog="Examples: demine console lane1.h5 | demine console --device emi-pi=/dev/ttyUSB0 "
        "--device gpr=/dev/ttyUSB1 --device nmea=/dev/ttyUSB2 --calibration emi-pi=det.toml "
        "--out lane1.h5 | demine console --simulate demo-lane",
    )
    p.add_argument("file", nargs="?", type=Path, metavar="FILE",
                   help="recording to follow (or to create, with --device/--simulate)")
    p.add_argument("--device", action="append", default=[], metavar="[NAME:]DRIVER=PORT",
                   help="start a recorder on these devices (as demine record --device)")
    p.add_argument("--simulate", metavar="SCENE",
                   help="start simulated devices (emi-pi, gpr, nmea) on this scene and a "
                   "recorder on them: the console demo")
    p.add_argument("--out", "-o", type=Path, metavar="RECORDING",
                   help="recording the started recorder creates")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--control", metavar="ADDR",
                   help="control channel of a recorder started elsewhere with demine record "
                   "--control ADDR (makes the keys work when following FILE)")
    p.add_argument("--calibration", action="append", default=[], metavar="DEVICE=PROFILE",
                   help="passed to the recorder (demine record --calibration): a calibration "
                   "profile (shipped name or .toml path) for one device, DEVICE its NAME "
                   "(or DRIVER) as in --device, or its stream name (emi, gpr, gps); a device "
                   "without one gets its driver's shipped profile when there is one")
    p.add_argument("--option", action="append", default=[], metavar="DEVICE.KEY=VALUE",
                   help="passed to the recorder (demine record --option): a driver or serial "
                   "option of one device, e.g. gps.baudrate=115200")
    p.add_argument("--scene", metavar="SCENE",
                   help="passed to the recorder: ground truth, local frame and gate times")
    p.add_argument("--detect", metavar="CFG", default=None,
                   help="detection config TOML for the recorder's live detection and the "
                   "console's EMI chart (default: the pipeline defaults)")
    p.add_argument("--flush-interval", type=float, default=0.1, metavar="S",
                   help="flush interval of the started recorder: how often new frames "
                   "reach the file and the console (default 0.1 s)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (with --simulate)")
    p.add_argument("--stale", type=float, default=3.0, metavar="S",
                   help="a stream whose last frame is older than S seconds shows red "
                   "(default 3)")
    p.add_argument("--refresh", type=float, default=10.0, metavar="HZ",
                   help="display refresh rate (default 10 Hz)")
    p.add_argument("--no-bell", action="store_true", help="no terminal bell on a new alarm")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # (Textual not installed: one error line naming the extra, from demine.cli.main)
    from ..console.app import ConsoleApp
    from ..console.follow import Follower
    from ..console.launch import (
        start_recorder,
        start_simulator,
        stop_process,
        wait_for_control,
    )

    if args.refresh <= 0 or args.stale <= 0:
        raise ConfigError("--refresh and --stale must be positive")
    starts = bool(args.device or args.simulate)
    if args.device and args.simulate:
        raise ConfigError("give --device or --simulate, not both")
    out = args.out or args.file
    if not starts:
        if args.file is None:
            raise ConfigError("give a FILE to follow, or --device/--simulate to record")
        if args.out is not None:
            raise ConfigError("--out needs --device or --simulate (FILE alone is followed)")
    elif out is None:
        if not args.simulate:
            raise ConfigError("--device needs --out FILE (the recording to create)")
        out = Path(f"console-{Path(args.simulate).stem}-{time.strftime('%Y%m%d-%H%M%S')}.h5")
    if starts and out.exists() and not args.overwrite:
        raise ConfigError(f"{out}: file exists (use --overwrite to replace it)")

    sim = recorder = None
    control = args.control
    log = tmp = None
    if starts:
        # the control socket and the logs of the processes started: removed when
        # they end well, kept (and named) when one failed or the recorder goes on
        tmp = Path(tempfile.mkdtemp(prefix="demine-console-"))
        control = str(tmp / "control.sock")
        log = tmp / "recorder.log"
        extra = ["--flush-interval", str(args.flush_interval)]
        extra += ["--detect", args.detect] if args.detect else ["--detect"]
        if args.overwrite:
            extra.append("--overwrite")
        for c in args.calibration:
            extra += ["--calibration", c]
        for o in args.option:
            extra += ["--option", o]
        devices = list(args.device)
        try:
            if args.simulate:
                print(f"starting simulated devices on scene {args.simulate!r} ...",
                      file=sys.stderr)
                sim, ports = start_simulator(args.simulate, seed=args.seed,
                                             log=tmp / "simulator.log")
                devices = [f"{drv}={port}" for drv, port in ports]
                extra += ["--scene", args.scene or args.simulate]
            elif args.scene:
                extra += ["--scene", args.scene]
            print(f"starting recorder -> {out} (log {log}) ...", file=sys.stderr)
            recorder = start_recorder(devices, out, control, extra=extra, log=log)
            wait_for_control(control, recorder)
        except BaseException as exc:
            # (also Ctrl-C while they start: nothing is left holding the ports)
            stop_process(recorder)
            stop_process(sim)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] \
                if isinstance(exc, Exception) and log.exists() else []
            if tail:
                print(f"recorder: {tail[0]}", file=sys.stderr)
            if isinstance(exc, Exception):  # (failed: its log is wanted)
                print(f"logs kept in {tmp}", file=sys.stderr)
            else:  # (Ctrl-C: nothing failed, and nothing is left running)
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    follower = Follower(out, detect_config=args.detect, stale_after=args.stale)
    if not starts:
        # a file that is there but is not (and will not become) a recording is an
        # error now, before the screen opens; one that is not there yet, or that a
        # recorder is still creating, is waited for (the console ends with the same
        # error should it turn out not to be a recording)
        follower.open()
    from .record import SHIPPED_PROFILE_NOTE

    # what the recorder said of the devices' calibrations (a shipped profile
    # used for a device given none: the reference device's values, not its own)
    notes = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
             if f": {SHIPPED_PROFILE_NOTE}" in ln] \
        if log is not None and log.exists() and not args.simulate else []
    for note in notes:
        print(note, file=sys.stderr)
    app = ConsoleApp(follower, control=control, recorder=recorder, recorder_log=log,
                     refresh_hz=args.refresh, bell=not args.no_bell, notes=notes)
    code = None
    try:
        app.run()
        code = app.return_code
        if follower.failed is not None:
            raise follower.failed  # (one line, exit status 2)
    finally:
        follower.close()
        if recorder is not None:
            ended = recorder.poll()  # (not None: it stopped before the console did)
            if ended is None and code != 0:
                print(f"the console stopped; the recorder (pid {recorder.pid}) keeps "
                      f"recording {out}: follow it again with demine console {out} "
                      f"--control {control}, stop it with kill -TERM {recorder.pid}"
                      + (f" (simulator pid {sim.pid})" if sim is not None else ""),
                      file=sys.stderr)
            else:
                assert tmp is not None
                sim_ended = sim.poll() if sim is not None else None  # (by itself: failed)
                status = stop_process(recorder) if ended is None else ended
                sim_status = stop_process(sim)
                if status == 0:
                    print(f"recording stopped: {out}", file=sys.stderr)
                else:
                    # (it said "recording stopped" after a recorder killed or failed)
                    print(f"the recorder {'had exited' if ended is not None else 'stopped'} "
                          f"with status {status} (its log: {log}): {out} holds what it "
                          "wrote until then", file=sys.stderr)
                    if code == 0:
                        code = 1
                if sim is not None and (sim_ended is not None or sim_status != 0):
                    print(f"the simulator {'had exited' if sim_ended is not None else 'stopped'}"
                          f" with status {sim_status} (its log: {tmp / 'simulator.log'})",
                          file=sys.stderr)
                    if code == 0:
                        code = 1
                elif status == 0:
                    shutil.rmtree(tmp, ignore_errors=True)  # (nothing in it is wanted)
                if tmp.exists():
                    print(f"logs kept in {tmp}", file=sys.stderr)
    return int(code or 0)
