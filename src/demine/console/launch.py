"""Start and stop the processes a console drives: the recorder and the simulator.

The recorder is a separate process (``python -m demine record --control ...``)
in its own session, so neither a console crash nor a Ctrl-C in its terminal
stops the recording.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, RecordingError

__all__ = ["start_recorder", "start_simulator", "stop_process", "wait_for_control"]


def start_simulator(scene: str, devices: Sequence[str] = ("emi-pi", "gpr", "nmea"), *,
                    seed: int = 0, speed: float = 1.0, duration: float | None = None,
                    log: Path | None = None,
                    timeout: float = 30.0) -> tuple[subprocess.Popen, list[tuple[str, str]]]:
    """Run ``demine simulate SCENE --device ...``; return the process and (driver, port)s."""
    cmd = [sys.executable, "-m", "demine", "simulate", str(scene), "--seed", str(seed),
           "--speed", str(speed)]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    for d in devices:
        cmd += ["--device", d]
    err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log is not None:
            err.close()
    ports: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    buf = b""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        while len(ports) < len(devices):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                stop_process(proc)
                raise ConfigError(f"simulator for scene {scene!r} did not start its devices "
                                  f"(exit status {proc.returncode}; see {log})")
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    parts = line.decode().split()
                    if len(parts) == 2:
                        ports.append((parts[0], parts[1]))
    except BaseException:  # (Ctrl-C while it starts: not left running)
        stop_process(proc)
        raise
    return proc, ports


def start_recorder(devices: Sequence[str], out: str | os.PathLike, control: str, *,
                   extra: Sequence[str] = (), log: Path | None = None) -> subprocess.Popen:
    """Run ``demine record --device ... --out OUT --control ADDR --quiet`` plus ``extra``."""
    cmd = [sys.executable, "-m", "demine", "record", "--out", str(out), "--control", control,
           "--quiet"]
    for d in devices:
        cmd += ["--device", d]
    cmd += list(extra)
    err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        if log is not None:
            err.close()


def wait_for_control(address: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until the recorder answers on its control channel (it opens the file first)."""
    from ..control import ControlClient, ControlError

    deadline = time.monotonic() + timeout
    with ControlClient(address, timeout=1.0) as client:
        while True:
            try:
                client.request("ping")
                return
            except ControlError:
                if proc.poll() is not None:
                    raise RecordingError(
                        f"recorder exited with status {proc.returncode} before recording"
                    ) from None
                if time.monotonic() > deadline:
                    raise RecordingError(
                        f"recorder did not open its control channel within {timeout:g} s"
                    ) from None
                time.sleep(0.1)


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> int | None:
    """SIGTERM (a recorder closes its file cleanly), then SIGKILL after ``timeout``."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
