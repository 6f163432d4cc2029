"""Keys do not wait behind a status request the recorder is slow to answer
(Textual pilot, a real control socket)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest

pytest.importorskip("textual")

from test_console import _FakeControl, _until  # noqa: E402

from demine.console import Follower  # noqa: E402
from demine.console.app import ConsoleApp  # noqa: E402
from demine.control import ControlClient  # noqa: E402


class _StatusHangs(_FakeControl):
    """A recorder's control socket that answers marks and pauses at once but
    holds every status request until :meth:`release` (a recorder whose status
    is stuck behind a long write).  A held status is answered with the state
    from when it came (before the commands answered meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.paused = False
        self.seen: list[str] = []
        self.held = threading.Event()  # a status request is being held
        self._release = threading.Event()
        super().__init__(path)

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                req = json.loads(line)
                self.seen.append(req["cmd"])
                reply = {"ok": True, "id": req["id"]}
                if req["cmd"] == "status":
                    paused = self.paused  # (the state when it came)
                    if not self._release.is_set():
                        self.held.set()
                        self._release.wait()
                        if self._stop.is_set():
                            return
                    reply["status"] = {"paused": paused, "devices": {}, "threshold": None}
                elif req["cmd"] in ("pause", "resume"):
                    self.paused = req["cmd"] == "pause"
                    reply["paused"] = self.paused
                elif req["cmd"] == "mark":
                    reply["marker"] = {"x": 1.0, "y": 2.0}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        super().close()


def test_keys_are_answered_while_a_status_request_hangs(tmp_path):
    """The recorder holds a status request (no reply for as long as the test
    wants): m and r pressed meanwhile waited behind it (one control thread), for
    up to twice the control timeout each, with nothing said. Now they are sent
    and answered at once; the held status, answered later with the state from
    before the pause, does not undo what the pause's reply said."""
    rec = _StatusHangs(tmp_path / "c.sock")
    follower = Follower(tmp_path / "not-yet.h5")
    # (a timeout far longer than the test: the status request stays outstanding)
    app = ConsoleApp(follower, control=ControlClient(rec.path, timeout=3600.0),
                     refresh_hz=10, status_interval=0.1)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, rec.held.is_set, 30, "a status request to hang")
            await pilot.press("m")
            try:
                await _until(pilot, lambda: "marked target at x 1.00 y 2.00" in app.messages,
                             30, "the mark's reply")
            except AssertionError:
                rec.close()  # (the console would wait for the status on its way out)
                raise
            await pilot.press("r")
            await _until(pilot, lambda: app.paused, 30, "the pause's reply")
            assert rec.seen.count("status") == 1  # still the one held: no pile of them
            assert app.recorder_answers is None  # (its reply has not come)
            rec.release()
            await _until(pilot, lambda: app.recorder_answers is True, 30, "the held status")
            assert app.paused, "a status from before the pause undid it"
            n = app.ticks  # (further status requests, answered with the state now)
            await _until(pilot, lambda: rec.seen.count("status") >= 3 and app.ticks > n + 3,
                         30, "more status requests")
            assert app.paused
            await pilot.press("q")
        assert app.return_code == 0

    try:
        asyncio.run(scenario())
    finally:
        rec.close()
        follower.close()
    assert rec.seen.count("mark") == 1 and rec.seen.count("pause") == 1


def test_quit_does_not_wait_for_a_status_request_that_hangs(tmp_path):
    """q while a status request is held: the console ends (a status changes
    nothing in the recorder, so it is not waited for); the key pressed before
    q is carried out."""
    rec = _StatusHangs(tmp_path / "c.sock")
    follower = Follower(tmp_path / "not-yet.h5")
    app = ConsoleApp(follower, control=ControlClient(rec.path, timeout=3600.0),
                     refresh_hz=10, status_interval=0.1)
    ended = threading.Event()

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, rec.held.is_set, 30, "a status request to hang")
            await pilot.press("m")
            await pilot.press("q")
        ended.set()

    def run() -> None:
        asyncio.run(scenario())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        assert ended.wait(60), "the console waited for the status request"
        assert app.return_code == 0
    finally:
        rec.close()
        t.join(60)
        follower.close()
    assert rec.seen.count("mark") == 1
