"""Record a simulated lane with the console following it, and save an SVG screenshot.

    python examples/console_screenshot.py docs/console.svg [--size 80x24] [--seconds 40]

Starts simulated devices (detector, radar, GPS) on pseudo-terminals and a recorder
process with live detection, exactly as ``demine console --simulate`` does, runs the
console headless (Textual's pilot), presses ``m`` to mark a target once alarms are on
screen, and writes the screenshot with ``App.save_screenshot``.

Live detection runs on the detector only (``[gpr] enabled = false``) unless
``--gpr-detection``: on a small, busy machine the recorder's live radar detection
falls seconds behind the reference rate, which the console then rightly shows as
stale streams.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from demine.console import Follower
from demine.console.app import ConsoleApp
from demine.console.launch import start_recorder, start_simulator, stop_process, wait_for_control


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="SVG file to write")
    p.add_argument("--scene", default="demo-lane")
    p.add_argument("--size", default="80x24", help="terminal size WxH (default 80x24)")
    p.add_argument("--gpr-detection", action="store_true",
                   help="also run the live radar detection in the recorder")
    p.add_argument("--seconds", type=float, default=40.0,
                   help="longest time to wait for alarms (default 40)")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="console-shot-") as tmp:
        tmp_p = Path(tmp)
        rec_path, sock = tmp_p / "lane.h5", str(tmp_p / "control.sock")
        detect = ["--detect"]
        if not a.gpr_detection:
            (tmp_p / "detect.toml").write_text("[gpr]\nenabled = false\n")
            detect.append(str(tmp_p / "detect.toml"))
        sim, ports = start_simulator(a.scene, seed=2, log=tmp_p / "sim.log")
        rec = None
        try:
            rec = start_recorder([f"{d}={port}" for d, port in ports], rec_path, sock,
                                 log=tmp_p / "rec.log",
                                 extra=[*detect, "--scene", a.scene, "--calibration",
                                        "gpr=gpr-default", "--flush-interval", "0.1"])
            wait_for_control(sock, rec, timeout=60)
            follower = Follower(rec_path)
            app = ConsoleApp(follower, control=sock, recorder=rec)

            async def shoot() -> None:
                async with app.run_test(size=(w, h)) as pilot:
                    end = time.monotonic() + a.seconds
                    while len(follower.alarms) < 2 and time.monotonic() < end:
                        await pilot.pause(0.2)
                    await pilot.press("m")
                    await pilot.pause(1.5)
                    app.save_screenshot(a.out.name, path=str(a.out.parent or "."))

            asyncio.run(shoot())
            follower.close()
        finally:
            stop_process(rec)
            stop_process(sim)
    print(f"{a.out}: {w}x{h} screenshot")


if __name__ == "__main__":
    main()
