"""The control channel between the console and the recorder (JSON lines, local socket)."""

from __future__ import annotations

import threading

import pytest

from demine.control import ControlClient, ControlError, ControlServer, parse_address
from demine.errors import ConfigError


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
    with ControlServer(addr, _handler):
        assert c.request("ping")["ok"]
    with ControlServer(addr, _handler):
        assert c.request("ping")["ok"]
    c.close()


def test_bad_addresses(tmp_path):
    with pytest.raises(ConfigError, match="loopback"):
        ControlServer("0.0.0.0:0", _handler)
    with pytest.raises(ConfigError, match="port"):
        parse_address("localhost:http")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        ControlServer(str(f), _handler)
