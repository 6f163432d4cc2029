"""``demine drivers``: listing, protocol notes, and probing a pty device."""

from __future__ import annotations

import json
import os
import threading
import time
import tty

import numpy as np
import pytest
from _wirefaults import uart_resample

from demine.cli import main
from demine.drivers import get_driver


def test_list_and_note(capsys):
    assert main(["drivers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["emi-pi"]["baudrate"] == 921600 and rows["nmea"]["kind"] == "gps"
    assert main(["drivers", "emi-pi"]) == 0
    assert "| offset" in capsys.readouterr().out
    assert main(["drivers", "no-such"]) == 2
    assert "unknown driver 'no-such'" in capsys.readouterr().err


def _serve(data_fn, stop):
    m, s = os.openpty()
    tty.setraw(s)
    # Non-blocking: once the probe has closed the port nobody reads, and a
    # blocking write would hang this thread (and the test's join) for ever.
    os.set_blocking(m, False)
    path = os.ttyname(s)

    def loop():
        pending = b""
        while not stop.is_set():
            pending = pending or data_fn()
            if pending:
                # what a full pty does not take is sent later, never cut: how
                # far the reader has fallen behind cannot garble a frame
                try:
                    pending = pending[os.write(m, pending):]
                except BlockingIOError:
                    pass  # the pty buffer is full (nobody reads once the probe closed)
                except OSError:
                    return
            time.sleep(0.005)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return m, s, path, t


@pytest.mark.parametrize("case", ["good", "wrong_baud", "silent"])
def test_probe(case, capsys):
    d = get_driver("emi-pi")
    seq = [0]

    def good():
        block = np.arange(seq[0], seq[0] + 20)
        seq[0] += 20
        return d.encode_arrays(block, block * 1000, np.zeros((20, 16), np.float32))

    garbled = uart_resample(d.encode_arrays(np.arange(300), np.arange(300), np.zeros((300, 16))),
                            115200, 921600)

    def bad():
        return garbled[:8192]

    stop = threading.Event()
    fn = {"good": good, "wrong_baud": bad, "silent": lambda: b""}[case]
    m, s, path, t = _serve(fn, stop)
    try:
        rc = main(["drivers", "emi-pi", "--probe", path, "--seconds", "1.0", "--json"])
    finally:
        stop.set()
        t.join(timeout=10)
        os.close(m)
        os.close(s)
    rep = json.loads(capsys.readouterr().out)
    if case == "good":
        assert rc == 0 and rep["frames"] > 0 and rep["crc_errors"] == 0
        assert rep["diagnosis"] == ""
    elif case == "wrong_baud":
        assert rc == 1 and rep["frames"] == 0 and rep["bytes"] > 65536
        assert rep["diagnosis"].startswith("no valid frame in 64 KiB at 921600 baud")
    else:
        assert rc == 1 and rep["bytes"] == 0
        assert rep["diagnosis"].startswith("no bytes from")


@pytest.mark.parametrize("args, says", [
    (["--seconds", "0"], "'--seconds' must be > 0, got 0.0"),
    (["--seconds", "-1"], "'--seconds' must be > 0, got -1.0"),
    (["--seconds", "nan"], "'--seconds' must be finite, got nan"),
    (["--baud", "0"], "'--baud' must be >= 1, got 0"),
])
def test_probe_options_checked_before_the_port_is_opened(capsys, args, says):
    assert main(["drivers", "emi-pi", "--probe", "/nonexistent/port", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine drivers: error: ") and says in err
