"""Control channel of a running recorder: JSON lines over a local socket.

An HDF5 recording has exactly one writer, the recorder process.  Other
processes (the field console) that want something written — an operator's
mark, a pause — send a command over this channel and the recorder writes it.

Transport: one JSON object per line, request then response, over a Unix
domain socket (an address that is a filesystem path) or TCP on the loopback
interface (``HOST:PORT``, e.g. ``127.0.0.1:0`` for any free port).  Each
request is answered with ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.

A request may carry an ``"id"`` (a string of 1 to 128 characters, unique per
request: :class:`ControlClient` sends a random one).  Its reply then carries
the same ``"id"``, and the server remembers the replies to the last 256 ids
(whatever the connection): a request that repeats an id — a client's retry
after its reply timed out or its connection broke — gets the first one's
reply and the command is not carried out again (a retry that arrives while the
first still runs waits for it).  A request without ``"id"`` is carried out
every time it is sent.

Commands understood by :class:`RecorderControl` (the recorder's handler):

``{"cmd": "ping"}``
    liveness.
``{"cmd": "status"}``
    ``status``: the recorder's :meth:`~demine.recorder.Recorder.status`
    (per-device CRC errors, gaps, connection) plus ``paused`` and ``threshold``.
``{"cmd": "mark", "x": X, "y": Y, "label": "...", "note": "...", "time": NS}``
    append a row to the markers table; missing ``time`` is now, missing
    ``x``/``y`` are the recorder's position at that time: its GPS track there,
    or its last fix when that is less than a fix interval before (the track's
    gap limit), else NaN -- never a fix from before the GPS lost its fix or
    went quiet.  A reply without a position says why in ``"position"``.
``{"cmd": "pause"}`` / ``{"cmd": "resume"}``
    stop / restart writing frames (readers keep running); both leave a marker.
``{"cmd": "null"}``
    the operator nulled (ground-balanced) the detector here: a ``null`` marker.
    Live detection is not reset, so live and batch alarms stay equal; the
    marker lets processing honour it.
``{"cmd": "threshold", "value": V}`` or ``{"cmd": "threshold", "delta": D}``
    set the live EMI detector's start threshold (floor); leaves a marker
    with the new value.

Examples
--------
>>> from demine.control import ControlServer, ControlClient
>>> srv = ControlServer("127.0.0.1:0", lambda req: {"echo": req}).start()  # doctest: +SKIP
>>> ControlClient(srv.address).request("ping")  # doctest: +SKIP
{'echo': {'cmd': 'ping'}, 'ok': True, 'id': '3f0c...'}
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import socketserver
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, DemineError

__all__ = ["ControlClient", "ControlError", "ControlServer", "RecorderControl",
           "parse_address"]

_MAX_LINE = 1 << 16
_MAX_ID = 128


class ControlError(DemineError):
    """The control channel failed: no recorder listening, bad reply, refused command.

    Parameters
    ----------
    message : str
        The full message (the client's start with the command's name).
    summary : str, optional
        The same in a few words, what matters first and without the address,
        for a one-line display such as the console's (default: ``message``).
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = message if summary is None else summary


def parse_address(address: str) -> tuple[int, Any]:
    """``(family, sockaddr)`` of a control address: a path (Unix socket) or ``HOST:PORT``."""
    text = str(address)
    if "/" not in text and ":" in text:
        host, _, port = text.rpartition(":")
        try:
            number = int(port)
        except ValueError as exc:
            raise ConfigError(f"control address {text!r}: port is not a number") from exc
        if not 0 <= number <= 65535:
            raise ConfigError(f"control address {text!r}: port must be 0 to 65535, "
                              f"got {number}")
        return socket.AF_INET, (host or "127.0.0.1", number)
    if not hasattr(socket, "AF_UNIX"):  # pragma: no cover - Windows without AF_UNIX
        raise ConfigError(f"control address {text!r}: Unix sockets are not available here; "
                          "use 127.0.0.1:PORT")
    return socket.AF_UNIX, text


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _execute(handler: Callable[[dict[str, Any]], Any], req: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = dict(handler(req) or {})
        reply.setdefault("ok", True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reply
        reply = {"ok": False, "error": str(exc)}
    return reply


class _Entry:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class _Replies:
    """The replies to the last ``size`` requests that carried an id.

    The first request with an id runs the command; a later one with the same
    id (a retry, on any connection) gets that reply, waiting for it when the
    command still runs.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        #: requests that repeated a remembered id (answered without running again)
        self.repeated = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def reply(self, rid: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get(rid)
            first = entry is None
            if entry is None:
                entry = self._entries[rid] = _Entry()
                excess = len(self._entries) - self.size
                if excess > 0:  # forget the oldest finished ones (never one still running)
                    old = [k for k, e in self._entries.items() if e.done.is_set()]
                    for k in old[:excess]:
                        del self._entries[k]
            else:
                self.repeated += 1
        if first:
            try:
                entry.reply = run()
            finally:
                if entry.reply is None:  # (run() turns every Exception into a reply)
                    entry.reply = {"ok": False, "error": "the command was interrupted"}
                entry.done.set()
        entry.done.wait()
        assert entry.reply is not None
        return entry.reply


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        super().setup()
        server: Any = self.server
        with server.conn_lock:
            server.conns[self.connection] = threading.current_thread()

    def finish(self) -> None:
        server: Any = self.server
        with server.conn_lock:
            server.conns.pop(self.connection, None)
        super().finish()

    def handle(self) -> None:
        server: Any = self.server
        while True:
            try:
                line = self.rfile.readline(_MAX_LINE)
            except OSError:
                return
            if not line:
                return
            if server.closed:
                return  # closed meanwhile: run nothing more (the client sees the end)
            rid = None
            try:
                req = json.loads(line)
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ValueError("request must be a JSON object with a 'cmd' string")
                rid = req.pop("id", None)  # the handler sees the command only
                if rid is not None and not (isinstance(rid, str) and 0 < len(rid) <= _MAX_ID):
                    got, rid = repr(rid), None
                    if len(got) > 40:
                        got = got[:37] + "..."
                    raise ValueError(f"'id' must be a string of 1 to {_MAX_ID} characters, "
                                     f"got {got}")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a reply
                reply = {"ok": False, "error": str(exc)}
            else:
                if rid is None:
                    reply = _execute(server.handler, req)
                else:
                    reply = {**server.replies.reply(
                        rid, functools.partial(_execute, server.handler, req)), "id": rid}
            try:
                self.wfile.write((json.dumps(_jsonable(reply)) + "\n").encode("utf-8"))
                self.wfile.flush()
            except OSError:
                return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if hasattr(socketserver, "ThreadingUnixStreamServer"):
    class _UnixServer(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True


class ControlServer:
    """Serve ``handler(request) -> reply`` on a local socket in a background thread.

    Parameters
    ----------
    address : str
        A filesystem path (Unix socket, created; removed on :meth:`close`) or
        ``HOST:PORT`` (TCP; port 0 picks a free port, see :attr:`address`).
        Only loopback hosts are accepted: the channel has no authentication.
    handler : callable
        Called in a server thread with each request dict (without its
        ``id``); returns the reply dict (``ok`` defaults to true).  Exceptions
        become ``ok: false``.  A request that repeats the id of one of the last
        256 is answered with that one's reply, without calling the handler.
    """

    def __init__(self, address: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        family, sockaddr = parse_address(address)
        self.handler = handler
        self._path: Path | None = None
        if family == socket.AF_INET:
            if sockaddr[0] not in ("127.0.0.1", "localhost", "::1"):
                raise ConfigError(f"control address {address!r}: only loopback hosts "
                                  "(127.0.0.1) are allowed")
            self._server: socketserver.BaseServer = _TCPServer(sockaddr, _Handler)
            host, port = self._server.server_address[:2]
            self.address = f"{host}:{port}"
        else:
            path = Path(sockaddr)
            if path.exists():
                if not path.is_socket():
                    raise ConfigError(f"control address {path}: exists and is not a socket")
                path.unlink()  # stale socket of a dead recorder
            self._server = _UnixServer(str(path), _Handler)
            os.chmod(path, 0o600)
            self._path = path
            self.address = str(path)
        self._replies = _Replies()
        self._server.handler = handler  # type: ignore[attr-defined]
        self._server.replies = self._replies  # type: ignore[attr-defined]
        # open connections and the threads that serve them, ended on close
        self._server.conns = {}  # type: ignore[attr-defined]
        self._server.conn_lock = threading.Lock()  # type: ignore[attr-defined]
        self._server.closed = False  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def repeated(self) -> int:
        """Requests that repeated the id of an earlier one (retries): not run again."""
        return self._replies.repeated

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="demine-control", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, end the open connections and remove the socket file.

        Connections a client still holds are shut down, so no request reaches
        the handler after this returns (the client sees the connection end,
        and its retry finds no one listening); a command being carried out is
        waited for, up to ``timeout`` seconds per connection.
        """
        server: Any = self._server
        server.closed = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=timeout)
            self._thread = None
        with server.conn_lock:
            open_ = list(server.conns.items())
        for conn, _ in open_:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in open_:
            if thread is not threading.current_thread():
                thread.join(timeout=timeout)
        self._server.server_close()
        if self._path is not None:
            try:
                self._path.unlink()
            except OSError:
                pass
            self._path = None

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Labels of the markers the recorder's control commands write (pause,
#: resume, a null, a threshold change), beside the operator's own marks.
CONTROL_MARK_LABELS = frozenset({"pause", "resume", "null", "threshold"})

#: commands that change nothing in the recorder: an error without a reply need
#: not warn that the recorder may still carry them out
_READ_ONLY = frozenset({"ping", "status"})


class ControlClient:
    """Send commands to a :class:`ControlServer`; one connection, reopened on failure.

    Each request carries a random ``id``.  When the reply does not come (a
    timeout, a broken connection) the request is sent once more, with the same
    id, on a new connection: the server answers a repeated id with the first
    reply and does not carry the command out a second time.

    Parameters
    ----------
    address : str
        The server's address (path or ``HOST:PORT``).
    timeout : float
        Seconds to wait for connection and reply (per attempt: a request that
        gets no reply fails after about twice this).
    """

    def __init__(self, address: str, timeout: float = 1.0) -> None:
        self.address = str(address)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        family, sockaddr = parse_address(self.address)
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(sockaddr)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._file = s.makefile("rwb")

    def _no_reply(self, cmd: str, errors: list[OSError],
                  retry: OSError | None = None) -> ControlError:
        """The error of a request sent without a reply (``errors``: one per attempt;
        ``retry``: why the retry could not connect)."""
        timed_out = [e for e in errors if isinstance(e, TimeoutError)]
        other = [e for e in errors if not isinstance(e, TimeoutError)]
        what = (f"no reply in {len(timed_out) * self.timeout:g} s" if timed_out
                else "no reply")
        why = f" ({_os_text(other[-1])})" if other else ""
        if cmd in _READ_ONLY:  # nothing to be carried out: just no answer
            return ControlError(f"{cmd}: {what}{why} (tried twice; control channel "
                                f"{self.address})", f"{cmd}: {what}{why}")
        if retry is None:
            return ControlError(
                f"{cmd}: {what}{why} (tried twice) — the recorder may still carry it out "
                f"(control channel {self.address})",
                f"{cmd}: {what} — it may still be carried out{why}")
        return ControlError(
            f"{cmd}: {what}{why}, and the retry found no recorder listening "
            f"({_os_text(retry)}) — it was sent once: the recorder may have carried it out "
            f"(control channel {self.address})",
            f"{cmd}: {what}, cannot reconnect — it may have been carried out{why}")

    def request(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Send one command and return the reply; :class:`ControlError` when refused.

        Also :class:`ControlError` when no reply came in either attempt, or the
        retry found no recorder listening: the recorder may still have carried
        the command out (once).  Every error's message starts with ``cmd``.
        """
        rid = uuid.uuid4().hex
        msg = (json.dumps(_jsonable({"cmd": cmd, **params, "id": rid})) + "\n").encode("utf-8")
        errors: list[OSError] = []  # one per attempt without a reply
        sent = False  # a request went out (it may be carried out)
        with self._lock:
            for attempt in (0, 1):
                if self._sock is None:
                    try:
                        self._connect()
                    except OSError as exc:
                        if sent:  # the first attempt went out: say so
                            raise self._no_reply(cmd, errors, exc) from exc
                        raise ControlError(
                            f"{cmd}: no recorder listening on {self.address}: {exc}",
                            f"{cmd}: no recorder listening ({_os_text(exc)})") from exc
                try:
                    self._file.write(msg)
                    self._file.flush()
                    sent = True
                    line = self._file.readline(_MAX_LINE)
                    if not line:
                        raise OSError("connection closed")
                    break
                except OSError as exc:
                    self._close_socket()
                    errors.append(exc)
                    if attempt:
                        raise self._no_reply(cmd, errors) from exc
                except BaseException:  # e.g. KeyboardInterrupt: no reply left to read later
                    self._close_socket()
                    raise
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ControlError(f"{cmd}: bad reply {line[:80]!r} (control channel "
                               f"{self.address})", f"{cmd}: bad reply from the recorder"
                               ) from exc
        if not isinstance(reply, dict) or reply.get("id", rid) != rid:
            self.close()  # out of step: the next request starts on a new connection
            raise ControlError(f"{cmd}: reply {line[:80]!r} is not the answer to this request "
                               f"(control channel {self.address})",
                               f"{cmd}: the recorder's reply is not the answer to it")
        if not reply.get("ok", False):
            raise ControlError(f"{cmd}: {reply.get('error', 'refused')}")
        return reply

    def _close_socket(self) -> None:
        for obj in (self._file, self._sock):
            try:
                if obj is not None:
                    obj.close()
            except OSError:
                pass
        self._sock = self._file = None

    def close(self) -> None:
        with self._lock:
            self._close_socket()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _os_text(exc: OSError) -> str:
    """An OS error in a few words: ``Connection refused``, not ``[Errno 111] ...``."""
    return exc.strerror or str(exc)


def _num(req: Mapping[str, Any], key: str) -> float | None:
    v = req.get(key)
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key!r} must be a number, got {v!r}") from exc


class RecorderControl:
    """The recorder's side of the channel: turns commands into writes.

    Parameters
    ----------
    recorder : demine.recorder.Recorder
        A started recorder (its writer is open).
    """

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def _position(self, t: int) -> tuple[float, float, str | None]:
        """The recorder's position at ``t`` (UTC ns): its track interpolated
        there, or its last fix when ``t`` is after it by at most the track's
        gap limit (as the recorder places its frames); else NaN and why."""
        rec = self.recorder
        track = getattr(rec, "_track", None)
        if not getattr(rec, "_has_gps", True):
            return math.nan, math.nan, "no GPS in this recording"
        try:
            last_t = None if track is None else track.last_time
            last = track._xyz[-1][-1] if last_t is not None else None
        except (AttributeError, IndexError):  # (no fix yet)
            last_t = last = None
        if last_t is None or last is None:
            return math.nan, math.nan, "no GPS fix yet"
        gap_ns = float(getattr(track, "max_gap_s", 1.0)) * 1e9
        if t <= last_t:
            try:
                import numpy as np

                xyz = track.at(np.array([t], dtype=np.int64))[0]
            except Exception:  # noqa: BLE001 - (the track moves on in the writer thread)
                xyz = None
            if xyz is not None and math.isfinite(xyz[0]) and math.isfinite(xyz[1]):
                return float(xyz[0]), float(xyz[1]), None
        if math.isfinite(last[0]) and math.isfinite(last[1]) and abs(t - last_t) <= gap_ns:
            return float(last[0]), float(last[1]), None
        if t <= last_t:
            return math.nan, math.nan, "no GPS fix at that time"
        if not (math.isfinite(last[0]) and math.isfinite(last[1])):
            return math.nan, math.nan, "the GPS has no fix"
        return math.nan, math.nan, f"no GPS fix for {(t - last_t) / 1e9:.0f} s"

    def _marker(self, label: str, note: str = "", x: float | None = None,
                y: float | None = None, t: int | None = None) -> dict[str, Any]:
        rec = self.recorder
        if rec.writer is None:
            raise ControlError("the recording is not open yet")
        t = int(t) if t is not None else time.time_ns()
        why = None
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            x, y, why = self._position(t)
        row = {"time": [t], "x": [float(x)], "y": [float(y)],
               "label": [label[:64]], "note": [note[:128]]}
        rec.writer.append_markers(row)
        rec.writer.flush()
        out: dict[str, Any] = {"marker": {k: v[0] for k, v in row.items()}}
        if why is not None:
            out["position"] = why
        return out

    def _emi_detectors(self) -> list[Any]:
        # recorder._detectors holds one detection worker per stream; its
        # StreamDetector's .detector is the EMIDetector whose threshold moves
        return [w.detector.detector for name, w in self.recorder._detectors.items()
                if self.recorder._kinds.get(name) == "emi"]

    def threshold(self) -> float | None:
        dets = self._emi_detectors()
        return float(dets[0].threshold) if dets else None

    def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        rec = self.recorder
        cmd = req["cmd"]
        if cmd == "ping":
            return {"ok": True}
        if cmd == "status":
            st = rec.status()
            st["paused"] = bool(getattr(rec, "paused", False))
            st["threshold"] = self.threshold()
            st["out"] = str(rec.out)
            return {"status": st}
        t = req.get("time")
        if t is not None and (isinstance(t, bool) or not isinstance(t, int)):
            raise ConfigError(f"'time' must be an integer (UTC nanoseconds), got {t!r}")
        if cmd == "mark":
            return self._marker(str(req.get("label") or "target"), str(req.get("note") or ""),
                                _num(req, "x"), _num(req, "y"), t)
        if cmd in ("pause", "resume"):
            rec.paused = cmd == "pause"
            out = self._marker(cmd, x=_num(req, "x"), y=_num(req, "y"), t=t)
            out["paused"] = rec.paused
            return out
        if cmd == "null":
            return self._marker("null", "operator null / ground balance",
                                _num(req, "x"), _num(req, "y"), t)
        if cmd == "threshold":
            dets = self._emi_detectors()
            if not dets:
                raise ControlError("no live EMI detector (record with --detect)")
            value, delta = _num(req, "value"), _num(req, "delta")
            new = value if value is not None else dets[0].threshold + (delta or 0.0)
            new = max(0.5, float(new))
            for d in dets:
                d.set_threshold(new)
            out = self._marker("threshold", f"{new:g}")
            out["threshold"] = new
            return out
        raise ControlError(f"unknown command {cmd!r}")
