"""The control channel between the console and the recorder (JSON lines, local socket)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import tty

import numpy as np
import pytest
from test_acquisition import wait_for

from demine.control import ControlClient, ControlError, ControlServer, parse_address
from demine.drivers import get_driver
from demine.errors import ConfigError
from demine.recorder import DeviceSpec, Recorder
from demine.recording import Recording


def _handler(req):
    if req["cmd"] == "fail":
        raise ValueError("refused on purpose")
    return {"echo": req, "thread": threading.current_thread().name != "MainThread"}


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_round_trip(tmp_path, kind):
    addr = str(tmp_path / "c.sock") if kind == "unix" else "127.0.0.1:0"
    with ControlServer(addr, _handler) as srv:
        if kind == "tcp":
            assert srv.address.startswith("127.0.0.1:") and not srv.address.endswith(":0")
        # (a bound for a loaded machine: the server thread may wait for a core)
        with ControlClient(srv.address, timeout=30.0) as c:
            r = c.request("mark", x=1.5, y=float("nan"), label="target")
            assert r["ok"] is True and r["thread"] is True
            # NaN travels as null (strict JSON)
            assert r["echo"] == {"cmd": "mark", "x": 1.5, "y": None, "label": "target"}
            with pytest.raises(ControlError, match="refused on purpose"):
                c.request("fail")
            assert c.request("ping")["ok"]  # the connection survives an error reply
    if kind == "unix":
        assert not (tmp_path / "c.sock").exists()  # removed on close


def test_client_reconnects_after_server_restart(tmp_path):
    addr = str(tmp_path / "c.sock")
    c = ControlClient(addr, timeout=30.0)  # (refusals are immediate)
    with pytest.raises(ControlError, match="no recorder listening"):
        c.request("ping")
    with ControlServer(addr, lambda req: {"server": 1}):
        assert c.request("ping")["server"] == 1
    # the first server ended the client's connection on close: the retry
    # reaches the second, not a thread left behind by the first
    with ControlServer(addr, lambda req: {"server": 2}):
        assert c.request("ping")["server"] == 2
    c.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_close_ends_open_connections(tmp_path, kind):
    """Once a recorder's control server is closed, no request reaches its
    handler: a console still connected must not run commands against a
    recorder that has stopped (and closed its file)."""
    calls = []

    def handler(req):
        calls.append(req["cmd"])
        return {}

    addr = str(tmp_path / "c.sock") if kind == "unix" else "127.0.0.1:0"
    srv = ControlServer(addr, handler).start()
    family, sockaddr = parse_address(srv.address)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30.0)
        s.connect(sockaddr)
        f = s.makefile("rwb")
        f.write(b'{"cmd": "ping"}\n')
        f.flush()
        assert json.loads(f.readline())["ok"] is True
        srv.close()
        try:
            f.write(b'{"cmd": "mark"}\n')
            f.flush()
        except OSError:
            pass  # (the server end may already be gone)
        assert f.readline() == b""  # the connection was ended, nothing answered
    assert calls == ["ping"]


def test_bad_addresses(tmp_path):
    with pytest.raises(ConfigError, match="loopback"):
        ControlServer("0.0.0.0:0", _handler)
    with pytest.raises(ConfigError, match="port"):
        parse_address("localhost:http")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        ControlServer(str(f), _handler)


# ----------------------------------------------------------------- retries
# A client that gets no reply (timeout, broken connection) sends the request
# again with the same id; the server answers a repeated id with the first
# reply instead of carrying the command out twice (a duplicate marker).

class _Held:
    """A handler whose marks wait until released, as behind a recorder's long flush."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.marks: list[dict] = []

    def __call__(self, req):
        if req["cmd"] == "mark":
            self.marks.append(req)
            self.entered.set()
            assert self.release.wait(60)
            return {"marker": len(self.marks)}
        return {}


def _in_thread(fn):
    """Run ``fn`` in a thread; the dict gets its ``reply`` or ``error``."""
    out: dict = {}

    def run():
        try:
            out["reply"] = fn()
        except Exception as exc:  # noqa: BLE001 - looked at by the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _give_up_at_once(c: ControlClient) -> None:
    """Connect ``c`` and make its connection (only) give up on a reply at once, as
    the console's did after 1 s on a loaded machine; the retry opens a new
    connection, which waits the client's own timeout."""
    assert c.request("ping")["ok"]
    c._sock.settimeout(0.01)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_retry_while_the_command_runs_gets_its_reply_and_runs_it_once(tmp_path, kind):
    held = _Held()
    addr = str(tmp_path / "c.sock") if kind == "unix" else "127.0.0.1:0"
    with ControlServer(addr, held) as srv, ControlClient(srv.address, timeout=30.0) as c:
        _give_up_at_once(c)
        t, out = _in_thread(lambda: c.request("mark", label="target"))
        assert held.entered.wait(30)
        # the request timed out and came again (same id, new connection) while the
        # first one still runs: it waits for that one's reply
        wait_for(lambda: srv.repeated == 1, what="the retry")
        held.release.set()
        t.join(60)
        assert "error" not in out, out
        reply = out["reply"]
        assert reply["ok"] is True and reply["marker"] == 1
        assert len(reply["id"]) == 32
        assert c.request("ping")["ok"]  # the new connection serves on
    assert [m["label"] for m in held.marks] == ["target"]
    assert "id" not in held.marks[0]  # the handler sees the command, not the id
    assert srv.repeated == 1


def test_no_reply_to_either_attempt_is_an_error_and_the_command_runs_once(tmp_path):
    held = _Held()
    with ControlServer(str(tmp_path / "c.sock"), held) as srv:
        with ControlClient(srv.address, timeout=0.05) as c:
            with pytest.raises(ControlError, match=r"^mark: no reply in 0.1 s \(tried twice\) "
                               "— the recorder may still carry it out") as info:
                c.request("mark", label="target")
            # the summary (the console's message line): no address, what matters first
            assert info.value.summary == "mark: no reply in 0.1 s — it may still be carried out"
        held.release.set()
        # both attempts reach the server; one of them runs the command
        wait_for(lambda: srv.repeated == 1 and len(held.marks) == 1, what="both attempts")
        assert len(held.marks) == 1


def test_no_reply_to_a_status_request_does_not_warn_that_it_may_be_carried_out(tmp_path):
    """status and ping change nothing: their error just says there was no answer."""
    release = threading.Event()

    def handler(req):
        assert release.wait(60)
        return {}

    try:
        with ControlServer(str(tmp_path / "c.sock"), handler) as srv, \
                ControlClient(srv.address, timeout=0.05) as c:
            with pytest.raises(ControlError, match=r"^status: no reply in 0.1 s \(tried "
                               "twice; control channel ") as info:
                c.request("status")
            release.set()
    finally:
        release.set()
    assert info.value.summary == "status: no reply in 0.1 s"
    assert "carried out" not in str(info.value)


def test_retry_that_cannot_reconnect_says_the_first_attempt_may_have_been_carried_out(
        tmp_path):
    """The recorder reads the request and is gone before it answers (its socket
    closed): the retry finds nobody listening, and the error still says that the
    request went out once and may have been carried out."""
    path = str(tmp_path / "c.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    seen: list[dict] = []

    def recorder_that_dies():
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as f:
            seen.append(json.loads(f.readline()))
            listener.close()  # nobody listens any more ...
            os.unlink(path)
        # ... and the connection closes without a reply

    t = threading.Thread(target=recorder_that_dies)
    t.start()
    try:
        with ControlClient(path, timeout=30.0) as c:
            with pytest.raises(ControlError) as info:
                c.request("mark", label="target")
    finally:
        t.join(60)
        listener.close()
    msg = str(info.value)
    assert msg.startswith("mark: no reply (connection closed), and the retry found no "
                          "recorder listening (No such file or directory) — it was sent "
                          "once: the recorder may have carried it out"), msg
    assert info.value.summary == ("mark: no reply, cannot reconnect — it may have been "
                                  "carried out (connection closed)")
    assert [r["cmd"] for r in seen] == ["mark"]


def test_a_request_that_never_went_out_says_no_recorder_listening(tmp_path):
    """The recorder answered a ping and is gone (its socket closed): the next
    request cannot be written on the old connection nor on a new one, and the
    error does not claim it went out."""
    path = str(tmp_path / "c.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def recorder_that_answers_once():
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as f:
            req = json.loads(f.readline())
            f.write(json.dumps({"ok": True, "id": req["id"]}).encode() + b"\n")
            f.flush()
            listener.close()
            os.unlink(path)

    t = threading.Thread(target=recorder_that_answers_once)
    t.start()
    try:
        with ControlClient(path, timeout=30.0) as c:
            assert c.request("ping")["ok"]
            t.join(60)  # gone
            with pytest.raises(ControlError) as info:
                c.request("mark", label="target")
    finally:
        t.join(60)
        listener.close()
    assert str(info.value).startswith(f"mark: no recorder listening on {path}: "), info.value
    assert info.value.summary == "mark: no recorder listening (No such file or directory)"


def test_repeated_id_is_answered_from_memory_and_requests_without_id_run_every_time(
        tmp_path):
    runs: list[dict] = []

    def handler(req):
        runs.append(req)
        if req["cmd"] == "fail":
            raise ValueError("refused on purpose")
        return {"n": len(runs)}

    with ControlServer(str(tmp_path / "c.sock"), handler) as srv:
        def send(*requests):
            """Requests on a new connection, as a script or nc would send them."""
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(srv.address)
                f = s.makefile("rwb")
                replies = []
                for r in requests:
                    f.write((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n")
                    f.flush()
                    replies.append(json.loads(f.readline()))
                return replies

        first = send({"cmd": "mark", "label": "t", "id": "abc"})
        again = send({"cmd": "mark", "label": "t", "id": "abc"},
                     {"cmd": "mark", "id": "abd"}, {"cmd": "fail", "id": "f1"},
                     {"cmd": "fail", "id": "f1"})
        assert first[0] == again[0] == {"n": 1, "ok": True, "id": "abc"}
        assert again[1] == {"n": 2, "ok": True, "id": "abd"}
        # a refusal is remembered too: the retry is not run again
        assert again[2] == again[3] == {"ok": False, "error": "refused on purpose",
                                        "id": "f1"}
        assert len(runs) == 3
        # without an id (the protocol as it was): carried out every time
        assert send({"cmd": "mark"}, {"cmd": "mark"}) == [{"n": 4, "ok": True},
                                                          {"n": 5, "ok": True}]
        # an id must be a short string
        for bad, got in (({"cmd": "mark", "id": 7}, "got 7"),
                         ({"cmd": "mark", "id": ""}, "got ''"),
                         ({"cmd": "mark", "id": "x" * 129}, "got '" + "x" * 36 + "...")):
            (r,) = send(bad)
            assert r["ok"] is False and r["error"] == (
                f"'id' must be a string of 1 to 128 characters, {got}"), r
        assert len(runs) == 5
        # the last 256 ids are remembered: the oldest is forgotten (and runs again)
        send(*({"cmd": "ping", "id": f"p{k}"} for k in range(256)))
        assert send({"cmd": "ping", "id": "p0"})[0]["n"] == 6  # remembered
        assert send({"cmd": "mark", "id": "abc"})[0]["n"] == 5 + 256 + 1  # forgotten
        assert srv.repeated == 3  # abc, f1, p0
    assert runs[0] == {"cmd": "mark", "label": "t"}  # the handler never sees the id


def test_recorder_writes_one_marker_for_a_slow_mark_that_was_retried(tmp_path):
    """A real recorder whose writer is busy (its lock held, as during a long
    flush): the console's mark times out and is sent again; the file gets one
    marker row and the client the marker that was written."""
    master, slave = os.openpty()
    tty.setraw(slave)
    out = tmp_path / "rec.h5"
    rec = Recorder(out, [DeviceSpec("emi-pi", os.ttyname(slave))], startup_timeout=30,
                   control=str(tmp_path / "control.sock"))
    emi = get_driver("emi-pi")

    def feed():  # first frames once the port is open (opening flushes its input)
        while not all(r.stats.connected for r in rec._readers.values()):
            time.sleep(0.01)
        os.write(master, emi.encode_arrays(np.arange(20), np.arange(20) * 2000,
                                           np.zeros((20, 8), "float32")))

    starter = threading.Thread(target=feed)
    starter.start()
    try:
        rec.start()
        starter.join()
        srv = rec._control_server
        with ControlClient(srv.address, timeout=30.0) as c:
            _give_up_at_once(c)
            with rec.writer._lock:
                t, res = _in_thread(lambda: c.request("mark", x=1.5, y=2.5, label="target",
                                                      note="retried"))
                wait_for(lambda: srv.repeated == 1, what="the retry")
            t.join(60)
    finally:
        rec.stop()
        os.close(master)
        os.close(slave)
    assert "error" not in res, res
    marker = res["reply"]["marker"]
    assert (marker["label"], marker["x"], marker["y"]) == ("target", 1.5, 2.5)
    with Recording(out) as r:
        m = r.markers
    assert list(m["label"]) == ["target"] and list(m["note"]) == ["retried"]
    assert int(m["time"][0]) == marker["time"]
