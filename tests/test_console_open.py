"""The console on a file that is not a recording (it ends) or not one yet (it waits)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("textual")

from demine.console import Follower  # noqa: E402
from demine.console.app import ConsoleApp  # noqa: E402
from demine.console.follow import CREATE_GRACE_S  # noqa: E402
from demine.errors import NotARecordingError  # noqa: E402

# A recorder's first moments: the file is created and its streams declared, then
# nothing is appended until the test says so (HDF5 keeps readers out meanwhile);
# then frames, and the file stays open until stdin is closed.
CREATING = textwrap.dedent("""
    import sys
    import numpy as np
    from demine.recording import RecordingWriter
    w = RecordingWriter(sys.argv[1], flush_interval=0.1, overwrite=True)
    emi = w.add_stream("emi", "emi", n_channels=4, gate_times=np.geomspace(1e-5, 1e-3, 4),
                       attrs={"sample_rate": 100.0})
    print("created", flush=True)
    sys.stdin.readline()
    emi.append(np.ones((50, 4)), time=np.arange(50) * 10_000_000, sequence=np.arange(50),
               x=np.zeros(50), y=np.zeros(50))
    w.flush()
    print("appended", flush=True)
    sys.stdin.read()
    w.close()
""")


async def _until(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def _run_until_it_ends(app: ConsoleApp, before=None, timeout: float = 20.0) -> None:
    """Run the app under its test pilot until it ends by itself (``before(pilot)``
    first, if given)."""

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            if before is not None:
                await before(pilot)
            await _until(pilot, lambda: app.return_code is not None, timeout,
                         "the console to end")

    asyncio.run(scenario())


def _not_recordings(d: Path) -> dict[str, tuple[Path, str]]:
    """Files that are there and are not recordings, with what the console says."""
    text = d / "notes.h5"
    text.write_text("lane 3 was swept twice\n", encoding="utf-8")
    plain = d / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    empty = d / "empty.h5"
    empty.write_bytes(b"")
    old = time.time() - 10 * CREATE_GRACE_S
    os.utime(empty, (old, old))  # left empty long ago: no writer is creating it
    return {"text": (text, "not an HDF5 file"),
            "hdf5": (plain, "HDF5 file but not a demine recording (no 'format' attribute)"),
            "empty": (empty, "empty, unchanged for")}


@pytest.mark.parametrize("kind", ["text", "hdf5", "empty"])
def test_console_ends_on_a_file_that_is_not_a_recording(tmp_path, kind):
    path, said = _not_recordings(tmp_path)[kind]
    follower = Follower(path)
    app = ConsoleApp(follower, refresh_hz=10)
    try:
        _run_until_it_ends(app)
    finally:
        follower.close()
    assert app.return_code == 2
    assert app.failure is not None and app.failure.startswith(f"{path}: ")
    assert said in app.failure
    assert isinstance(follower.failed, NotARecordingError)
    with pytest.raises(NotARecordingError):  # and so it stays
        follower.poll()


def test_console_ends_when_the_file_it_waits_for_turns_out_not_to_be_a_recording(tmp_path):
    path = tmp_path / "lane.h5"
    follower = Follower(path)
    app = ConsoleApp(follower, refresh_hz=10)

    async def wait_then_write(pilot):
        await _until(pilot, lambda: app.ticks >= 5, 20, "ticks")
        assert "WAITING" in app.query_one("#top").render().plain
        assert app.return_code is None
        path.write_text("not a recording\n", encoding="utf-8")

    try:
        _run_until_it_ends(app, wait_then_write)
    finally:
        follower.close()
    assert app.return_code == 2
    assert app.failure == f"{path}: not an HDF5 file, so not a demine recording"


@pytest.mark.parametrize("locking", ["TRUE", "FALSE"])
def test_console_waits_while_a_recorder_creates_its_file(tmp_path, monkeypatch, locking):
    """Between creating the file and its first frames a recorder keeps readers out
    (HDF5 locks the file; without file locking, it is marked open for writing); a
    file just made is empty. The console waits through both, then follows."""
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", locking)  # (the writer's too)
    path = tmp_path / "live.h5"
    path.write_bytes(b"")  # the first instant of a new file
    follower = Follower(path, stale_after=1e9)
    app = ConsoleApp(follower, refresh_hz=10)
    writer = None

    async def scenario():
        nonlocal writer
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ticks >= 5, 20, "ticks")
            assert follower.error == f"waiting for {path}: empty (a writer may be creating it)"
            writer = subprocess.Popen([sys.executable, "-c", CREATING, str(path)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert writer.stdout.readline().strip() == "created"
            # the file is HDF5 now, still held by its writer: the console waits
            ticks = app.ticks
            await _until(pilot, lambda: app.ticks >= ticks + 10, 20, "ticks")
            assert not follower.is_open and follower.failed is None
            assert app.return_code is None
            assert follower.error.startswith(f"waiting for {path}: ")
            if locking == "TRUE":  # (said in words, not HDF5's errno)
                assert "a writer holds it open and keeps readers out" in follower.error
            assert "WAITING" in app.query_one("#top").render().plain
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "appended"
            await _until(pilot, lambda: follower.is_open
                         and follower.streams["emi"].frames == 50, 30, "the frames")
            assert "FOLLOW" in app.query_one("#top").render().plain
            await pilot.press("q")
        assert app.return_code == 0

    try:
        asyncio.run(scenario())
    finally:
        follower.close()
        if writer is not None:
            writer.stdin.close()
            assert writer.wait(30) == 0


def test_follower_waits_for_a_new_empty_file_only_so_long(tmp_path):
    path = tmp_path / "new.h5"
    path.write_bytes(b"\x89HD")  # (a writer part way through the signature)
    f = Follower(path)
    assert not f.poll() and f.failed is None
    assert "a writer may be creating it" in f.error
    old = time.time() - 2 * CREATE_GRACE_S
    os.utime(path, (old, old))
    with pytest.raises(NotARecordingError, match="only 3 bytes, unchanged for"):
        f.poll()


def test_cli_console_on_a_file_that_is_not_a_recording_is_one_line_and_status_2(tmp_path):
    path, _ = _not_recordings(tmp_path)["text"]
    # (a bound, not a wait: before, the console waited for it for ever)
    proc = subprocess.run([sys.executable, "-m", "demine", "console", str(path)],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr == (f"demine console: error: {path}: not an HDF5 file, so not a "
                           "demine recording\n")
