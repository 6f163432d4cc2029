"""Simulated devices on pseudo-terminals, speaking a driver's real wire protocol.

A :class:`SimulatedDevice` opens a pseudo-terminal pair (``os.openpty``), puts it
in raw mode, and writes the frames of one stream of a simulated lane to the
master side, encoded by the driver's own encoder; a program opens the slave
path (``device.port``) with pyserial exactly as it would open
``/dev/ttyUSB0``.  In real time (the default) each frame leaves at its
acquisition time (NMEA sentences a little later, as a receiver's latency);
with ``realtime=False`` frames go out as fast as the reader takes them (for
tests), never dropped.

In real time, a device whose reader does not keep up (or is absent) behaves
like a serial device: bytes that have waited on a full pty for more than
``max_backlog`` seconds are dropped and counted in ``bytes_dropped``.  A frame
waits from its due time, or from when the device first offers it if the
simulation was late to compute it (a busy host): a real device is never late,
so that time is not held against the reader; and the device writes on while
the pty takes bytes, dropping only once it has taken none for 20 ms (or the
reader has fallen ``max_backlog`` behind).  After the last
frame, :meth:`SimulatedDevice.drain` lets a reader that has the port open take
what the pty still holds, and returns at once when nobody has it open.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import select
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .lane import LaneSimulator
from .scene import Scene

__all__ = ["SimulatedDevice", "DRIVER_STREAMS", "encode_block"]

_FAULTS = ("drop", "duplicate", "corrupt", "garbage", "truncate")

#: Driver name -> simulated stream it serves.
DRIVER_STREAMS = {"emi-pi": "emi", "gpr": "gpr", "nmea": "gps", "ascii-md": "cw"}


def encode_block(driver: Any, stream: str, block: dict, talker: str = "GN",
                 rate: float = 10.0) -> tuple[list[bytes], np.ndarray]:
    """Encode a block of a simulated stream with ``driver``.

    NMEA fixes are GGA + RMC (the driver's encoder), preceded by a ZDA
    sentence on whole seconds (``rate`` = fixes per second, ``talker`` its id).

    Returns
    -------
    frames : list of bytes
        The wire bytes of each frame (NMEA: the sentences of one fix).
    time_ns : ndarray of int64
        The acquisition time of each frame (UTC ns).
    """
    n = len(block["time"])
    if n == 0:
        return [], np.zeros(0, dtype=np.int64)
    if stream == "emi":
        raw = driver.encode_arrays(block["sequence"], block["device_time_us"],
                                   block["samples"], block["status"])
    elif stream == "gpr":
        raw = driver.encode_arrays(block["sequence"], block["device_time_us"],
                                   block["samples"], encoder=block["encoder"],
                                   stacking=block["stacking"], status=block["status"])
    elif stream == "cw":
        from ..drivers.ascii_md import AsciiMdFrame

        vals = block["samples"]
        nv = len(driver.value_columns)
        if nv > vals.shape[1]:
            raise ConfigError(f"ascii-md columns {driver.value_columns}: the simulated CW "
                              f"detector gives {vals.shape[1]} values (amplitude, phase)")
        frames = [driver.encode(AsciiMdFrame([round(float(v), 7) for v in vals[i, :nv]],
                                             int(block["sequence"][i]),
                                             int(block["device_time_us"][i])))
                  for i in range(n)]
        return frames, np.asarray(block["time"], dtype=np.int64)
    else:
        from ..drivers.nmea import GpsFix, sentence

        def zda(time_ns: int) -> bytes:
            # once a second, as receivers do: gives the date before the first RMC
            sec, frac = divmod(int(time_ns), 1_000_000_000)
            if frac >= 1_000_000_000 // max(int(round(rate)), 1):
                return b""
            tm = time.gmtime(sec)
            return sentence(f"{talker}ZDA,{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}."
                            f"{frac // 10_000_000:02d},{tm.tm_mday:02d},{tm.tm_mon:02d},"
                            f"{tm.tm_year:04d},00,00")

        rate = float(rate)
        b = block
        frames = [
            zda(b["time"][i]) + driver.encode(GpsFix(
                time_ns=int(b["time"][i]), lat=float(b["lat"][i]), lon=float(b["lon"][i]),
                alt=float(b["alt"][i]), fix_quality=int(b["fix_quality"][i]),
                satellites=int(b["satellites"][i]), hdop=float(b["hdop"][i]),
                speed_knots=float(b["speed_knots"][i]), course_deg=float(b["course_deg"][i])))
            for i in range(n)
        ]
        return frames, np.asarray(block["time"], dtype=np.int64)
    size = len(raw) // n
    return [raw[i * size:(i + 1) * size] for i in range(n)], np.asarray(block["time"],
                                                                         dtype=np.int64)


class SimulatedDevice:
    """One simulated serial device on its own pseudo-terminal.

    Parameters
    ----------
    driver : str
        ``"emi-pi"`` (pulse-induction detector), ``"gpr"``, ``"nmea"``
        (tracker) or ``"ascii-md"`` (a continuous-wave detector printing
        ``amplitude,phase`` lines): the wire protocol, encoded by that driver
        from :mod:`demine.drivers`.
    driver_options : dict, optional
        Options of the driver (e.g. ``{"columns": ["seq", "millis",
        "amplitude", "phase"]}`` for ``ascii-md``).
    faults : dict, optional
        Wire faults injected at random (seeded by ``seed``), as probabilities
        per frame: ``drop`` (frame never sent), ``duplicate`` (sent twice),
        ``corrupt`` (one bit flipped after the frame's first 4 bytes, so a
        CRC or checksum rejects it), ``garbage`` (1-64 random bytes sent
        before the frame), ``truncate`` (only the first part of the frame
        sent); only intact frames are duplicated.  What was injected is
        counted in :attr:`injected`.
    link : path, optional
        Keep a symbolic link at this path to the current pseudo-terminal, a
        stable name (like ``/dev/serial/by-id/...``) that survives
        :meth:`unplug` / :meth:`replug`.
    scene : Scene, str or Path
        Scene (object, file or shipped name).
    seed : int
        Run seed.  Devices of one scene with one seed share the same head
        path, so they describe the same sweep.
    duration : float, optional
        Seconds of data to send (default: until stopped; the sweep repeats).
    realtime : bool
        Pace frames at their acquisition times (scaled by ``speed``); if False
        write as fast as the reader reads.
    speed : float
        Real-time factor (2.0: twice as fast as real time).
    wall_clock : bool
        Shift the scene's start time to the moment the device starts, so that
        NMEA times are the current UTC (default: True in real time).
    max_backlog : float
        In real time, seconds of data the device holds while the pty is full
        before dropping the oldest (a UART FIFO and adapter buffer: short).
    wait_reader : float
        Wait at most this many seconds for a reader to open the port before
        sending the first byte (detected when the reader configures the port,
        as pyserial does on open; opening also flushes what was sent before).
        0 (default): start at once, like a device that is switched on.  With
        ``realtime=False``, no reader within that time ends the device with a
        :class:`ConfigError` in :attr:`error` (it would wait for one for ever).
    """

    def __init__(self, driver: str, scene: Scene | str | Path, *, seed: int = 0,
                 duration: float | None = None, realtime: bool = True, speed: float = 1.0,
                 wall_clock: bool | None = None, max_backlog: float = 0.1,
                 wait_reader: float = 0.0, driver_options: dict | None = None,
                 faults: dict[str, float] | None = None,
                 link: str | os.PathLike | None = None) -> None:
        from ..drivers import get_driver

        if driver not in DRIVER_STREAMS:
            raise ConfigError(
                f"no simulated device for driver {driver!r} (simulated: "
                f"{', '.join(DRIVER_STREAMS)})")
        if not speed > 0:
            raise ConfigError(f"speed must be > 0, got {speed}")
        if duration is not None and not duration > 0:
            raise ConfigError(f"duration must be > 0 s, got {duration}")
        self.driver_name = driver
        self.stream = DRIVER_STREAMS[driver]
        self.sim = LaneSimulator(scene, seed)
        self.scene = self.sim.scene
        opts = dict(driver_options or {})
        if driver == "nmea":
            opts.setdefault("talker", self.scene.gps.talker)
        self.driver = get_driver(driver, **opts)
        self.duration = duration
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.wall_clock = self.realtime if wall_clock is None else bool(wall_clock)
        self.max_backlog = float(max_backlog)
        self.wait_reader = float(wait_reader)
        self.frames_sent = 0
        self.bytes_sent = 0
        self.bytes_dropped = 0
        self.error: BaseException | None = None
        self.faults = {k: float(v) for k, v in (faults or {}).items()}
        bad = sorted(set(self.faults) - set(_FAULTS))
        if bad:
            raise ConfigError(f"unknown fault {bad[0]!r} (faults: {', '.join(_FAULTS)})")
        for k, v in self.faults.items():
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"fault {k!r}: probability must be in [0, 1], got {v}")
        self.injected = dict.fromkeys(_FAULTS, 0)
        self._fault_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xFA17]))
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.link = None if link is None else Path(link)
        if self.link is not None and self.link.exists() and not self.link.is_symlink():
            # (the link is replaced at start and removed at the end: never a file's path)
            raise ConfigError(f"link {self.link} exists and is not a symbolic link: "
                              "not replaced; give another path")
        self._io = threading.RLock()
        self._master = self._slave = -1
        self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            os.set_blocking(master, False)
            port = os.ttyname(slave)
            initial = termios.tcgetattr(slave)
            if self.link is not None:
                tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
                if tmp.is_symlink() or tmp.exists():
                    tmp.unlink()
                tmp.symlink_to(port)
                os.replace(tmp, self.link)  # atomic: readers see the old or the new pty
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        with self._io:
            self._master, self._slave = master, slave
            self.port = port
            self._initial_attrs = initial

    def _close_pty(self) -> None:
        with self._io:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = -1

    @property
    def plugged(self) -> bool:
        """False between :meth:`unplug` and :meth:`replug`."""
        return self._master >= 0

    def unplug(self) -> None:
        """Pull the cable: close the pseudo-terminal (a reader gets an error or no data,
        the ``link`` disappears).  The device keeps running; what it produces while
        unplugged is lost (counted in ``bytes_dropped``)."""
        with self._io:
            self._close_pty()
            if self.link is not None and self.link.is_symlink():
                self.link.unlink()

    def replug(self) -> None:
        """Plug back in: a new pseudo-terminal (new :attr:`port`; ``link`` points to it)."""
        with self._io:
            if self.plugged:
                return
            self._open_pty()

    # ------------------------------------------------------------------ control
    def start(self, t0: float | None = None) -> SimulatedDevice:
        """Start sending (``t0``: common ``time.monotonic()`` start of several devices)."""
        if self._thread is not None:
            raise RuntimeError("device already started")
        start_mono = time.monotonic() if t0 is None else float(t0)
        if self.wall_clock:
            now_ns = time.time_ns() + int((start_mono - time.monotonic()) * 1e9)
            self.sim = LaneSimulator(self.scene.replace(start_time_ns=now_ns), self.sim.seed)
        self._t0 = start_mono
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.driver_name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending and close the pseudo-terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_pty()
        if self.link is not None and self.link.is_symlink():
            try:
                self.link.unlink()
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until all data (``duration``) has been sent; True if finished."""
        return self._done.wait(timeout)

    def unread_bytes(self) -> int:
        """Bytes sent to the pty that no reader has taken yet."""
        if self._slave < 0:
            return 0
        try:
            buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(buf, sys.byteorder, signed=True)

    def _reader_holds_port(self) -> bool:
        """True if a program other than this device has :attr:`port` open.

        The device's own handle on the slave side is closed and the master
        polled: it reports a hang-up only when no handle on the slave is left.
        When a reader holds the port, the device takes a new handle (for
        :meth:`unread_bytes`); when nobody does, the pty's content is discarded
        and the raw settings are lost, so this is for the end of a run only.
        """
        with self._io:
            if self._master < 0:
                return False
            if self._slave >= 0:
                os.close(self._slave)
                self._slave = -1
            if not hasattr(select, "poll"):  # (no hang-up test: assume a reader)
                held = True
            else:
                poller = select.poll()
                poller.register(self._master, select.POLLIN)
                held = not any(ev & select.POLLHUP for _, ev in poller.poll(0))
            if held:
                try:
                    self._slave = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                except OSError:  # the reader has just closed it, and the pty with it
                    return False
            return held

    def drain(self, timeout: float = 10.0, cancel: threading.Event | None = None) -> None:
        """After the last frame: let a reader take what the pty still holds.

        Returns as soon as nobody has the port open (bytes nobody reads are not
        kept: a device without a listener ends with its duration), the reader
        has taken everything (the pty empty for 0.3 s, as bytes can be in
        flight inside it), ``timeout`` seconds have passed or ``cancel`` is set.

        Parameters
        ----------
        timeout : float
            Longest wait, seconds.
        cancel : threading.Event, optional
            Ends the wait at once when set (e.g. by a signal handler).
        """
        deadline = time.monotonic() + float(timeout)
        empty_since = None
        while not (cancel is not None and cancel.is_set()):
            now = time.monotonic()
            if now >= deadline or not self._reader_holds_port():
                return
            if self.unread_bytes() > 0:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since > 0.3:
                return
            if cancel is not None:
                cancel.wait(0.05)
            else:
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SimulatedDevice:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"<SimulatedDevice {self.driver_name} on {self.port} scene={self.scene.name!r}"
                f" sent={self.frames_sent}>")

    # ------------------------------------------------------------------ sending
    def _drain_input(self) -> None:
        """Discard whatever the host wrote to the device (commands are ignored)."""
        with self._io:
            if self._master < 0:
                return
            try:
                while os.read(self._master, 65536):
                    pass
            except OSError:
                pass

    def _write(self, data: memoryview, stall: float | None, most: float = math.inf) -> int:
        """Write as much of ``data`` as the pty takes until it has taken nothing
        for ``stall`` seconds (None: all, however long), and for at most
        ``most`` seconds (a reader slower than the device falls behind)."""
        done = 0
        t0 = time.monotonic()
        deadline = None if stall is None else t0 + stall
        while done < len(data) and not self._stop.is_set():
            with self._io:
                fd = self._master
                if fd >= 0:
                    try:
                        done += os.write(fd, data[done:])
                        if stall is not None:  # (the reader is taking: wait on)
                            deadline = min(time.monotonic() + stall, t0 + most)
                        continue
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EIO,
                                             errno.EBADF):
                            raise
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = 0.05 if deadline is None else min(0.05, deadline - now)
            if fd >= 0:
                try:
                    select.select([], [fd], [], max(wait, 0.001))
                except (OSError, ValueError):
                    self._stop.wait(max(wait, 0.001))
            else:
                self._stop.wait(max(wait, 0.001))  # unplugged: wait for replug
        return done

    def reader_configured(self) -> bool:
        """True once a reader has changed the port settings (pyserial does on open)."""
        try:
            return termios.tcgetattr(self._slave) != self._initial_attrs
        except (OSError, termios.error):
            return False

    def _await_reader(self) -> None:
        end = time.monotonic() + self.wait_reader
        while not self._stop.is_set() and time.monotonic() < end:
            if self.reader_configured():
                # the reader flushes its input right after configuring: let it
                self._stop.wait(0.2)
                return
            self._stop.wait(0.01)
        if not self.realtime and not self._stop.is_set():
            # sending as fast as nobody reads would fill the pty and block for ever
            raise ConfigError(f"no reader opened {self.port} within {self.wait_reader:g} s "
                              "(a device that sends as fast as it is read needs one)")

    def _inject(self, due: list[float], frames: list[bytes]
                ) -> tuple[list[float], list[bytes]]:
        """Apply the configured wire faults to a block of encoded frames."""
        rng = self._fault_rng
        f = self.faults
        out_due: list[float] = []
        out: list[bytes] = []
        for d, fr in zip(due, frames, strict=True):
            u = rng.random(5)
            if u[0] < f.get("drop", 0.0):
                self.injected["drop"] += 1
                continue
            if u[3] < f.get("garbage", 0.0):
                n = int(rng.integers(1, 65))
                out_due.append(d)
                out.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
                self.injected["garbage"] += 1
            intact = True
            if u[2] < f.get("corrupt", 0.0) and len(fr) > 4:
                b = bytearray(fr)
                i = int(rng.integers(4, len(b) - 2)) if len(b) > 6 else len(b) - 1
                b[i] ^= 1 << int(rng.integers(0, 8))
                if b[i] in (0x0A, 0x0D) and self.stream in ("gps", "cw"):
                    b[i] ^= 0x40  # keep text frames one line long
                fr = bytes(b)
                intact = False
                self.injected["corrupt"] += 1
            elif u[4] < f.get("truncate", 0.0) and len(fr) > 4:
                fr = fr[: int(rng.integers(2, len(fr) - 1))]
                intact = False
                self.injected["truncate"] += 1
            out_due.append(d)
            out.append(fr)
            if intact and u[1] < f.get("duplicate", 0.0):
                out_due.append(d)
                out.append(fr)
                self.injected["duplicate"] += 1
        return out_due, out

    def _run(self) -> None:
        try:
            if self.wait_reader > 0:
                self._await_reader()
                self._t0 = time.monotonic()
                if self.wall_clock:
                    self.sim = LaneSimulator(self.scene.replace(start_time_ns=time.time_ns()),
                                             self.sim.seed)
            latency = self.scene.gps.latency if self.stream == "gps" else 0.0
            t_start_ns = self.sim.scene.start_time_ns
            # (due monotonic, bytes); once a frame has been offered to the pty,
            # its time is when it was first offered, if later than its due time
            pending: list[tuple[float, bytes]] = []
            offered = 0  # how many of the first pending frames have been offered
            blocks = self.sim.iter_blocks(self.stream, self.duration)
            exhausted = False
            while not self._stop.is_set():
                # keep about one block ahead of the clock
                need = (not pending) if not self.realtime else (
                    not pending or pending[-1][0] < time.monotonic() + 0.5)
                if not exhausted and need:
                    block = next(blocks, None)
                    if block is None:
                        exhausted = True
                    else:
                        frames, tns = encode_block(self.driver, self.stream, block,
                                                   self.scene.gps.talker, self.scene.gps.rate)
                        rel = (tns - t_start_ns) / 1e9 + latency
                        due = (self._t0 + rel / self.speed).tolist()
                        if self.faults:
                            due, frames = self._inject(due, frames)
                        pending.extend(zip(due, frames, strict=True))
                        continue
                if not pending:
                    if exhausted:
                        break
                    continue
                self._drain_input()
                if not self.realtime:
                    k = min(len(pending), 256)
                    chunk = b"".join(f for _, f in pending[:k])
                    del pending[:k]
                    sent = self._write(memoryview(chunk), None)
                    self.bytes_sent += sent
                    if sent == len(chunk):
                        self.frames_sent += k
                    continue
                now = time.monotonic()
                k = 0
                while k < len(pending) and pending[k][0] <= now:
                    k += 1
                if k == 0:
                    self._stop.wait(min(pending[0][0] - now, 0.05))
                    continue
                if not self.plugged:  # the cable is out: what is due is lost
                    self.bytes_dropped += sum(len(f) for _, f in pending[:k])
                    del pending[:k]
                    offered = max(offered - k, 0)
                    continue
                # A frame's backlog allowance runs from when it is first
                # offered: the time the simulation was late to compute it (a
                # busy host) is not the reader's, whom a real device, never
                # late, would have sent it to in time.
                for j in range(offered, k):
                    if pending[j][0] < now:
                        pending[j] = (now, pending[j][1])
                offered = max(offered, k)
                chunk = b"".join(f for _, f in pending[:k])
                sent = self._write(memoryview(chunk), 0.02, self.max_backlog)
                self.bytes_sent += sent
                if sent == len(chunk):
                    self.frames_sent += k
                    del pending[:k]
                    offered -= k
                    continue
                # partial: keep the unsent tail of the frames as pending bytes
                acc, j = 0, 0
                while j < k and acc + len(pending[j][1]) <= sent:
                    acc += len(pending[j][1])
                    j += 1
                self.frames_sent += j
                if j < k:
                    due, data = pending[j]
                    pending[j] = (due, data[sent - acc:])
                del pending[:j]
                offered -= j
                # drop what has waited on a full pty longer than the allowance
                limit = now - self.max_backlog
                while pending and pending[0][0] < limit:
                    self.bytes_dropped += len(pending.pop(0)[1])
                    offered = max(offered - 1, 0)
        except BaseException as exc:  # reported through .error
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._done.set()
