"""Review of ``demine info``, ``simulate``, ``drivers`` and ``process`` as a user meets them:
numbers that match the file, options that are used or refused, one error line and
status 2 for bad input, no file damaged."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import demine.simulate
from demine.cli import main
from demine.recording import Recording
from demine.simulate.device import SimulatedDevice


def _one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"demine {command}: error: "), err
    return err


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    """A short simulated lane with EMI and GPS streams."""
    path = tmp_path_factory.mktemp("lane") / "lane.h5"
    assert main(["simulate", "demo-lane", "--out", str(path), "--duration", "3",
                 "--streams", "emi,gps"]) == 0
    return path


# ---------------------------------------------------------------------------- info
def test_info_of_several_files_lists_each_it_can_read(lane, tmp_path, capsys):
    """`info zero.h5 lane.h5` stopped at the first, never listing the second
    (calibration audit); each bad one is named and the status is 2."""
    bad = tmp_path / "zero.h5"
    bad.write_bytes(b"")
    capsys.readouterr()
    assert main(["info", str(bad), str(lane)]) == 2
    cap = capsys.readouterr()
    assert cap.out.startswith(f"{lane}: demine recording")
    assert cap.err.count("\n") == 1 and "zero.h5: not an HDF5 file" in cap.err


def test_info_extent_shows_degrees_to_centimetres_and_units(lane, capsys):
    capsys.readouterr()
    assert main(["info", str(lane)]) == 0
    out = capsys.readouterr().out
    with Recording(lane) as rec:
        ext = rec.summary()["streams"]["gps"]["extent"]
    # three decimals of a degree (about 100 m) showed the lane as one point
    for axis in ("lon", "lat"):
        m = re.search(rf"{axis} (-?[\d.]+)\.\.(-?[\d.]+) deg", out)
        assert m, out
        lo, hi = (float(v) for v in m.groups())
        assert lo == pytest.approx(ext[axis][0], abs=1e-7)
        assert hi == pytest.approx(ext[axis][1], abs=1e-7)
        assert lo != hi  # the lane has an extent
    assert re.search(r"x -?[\d.]+\.\.-?[\d.]+ m,", out), out


def test_info_json_with_array_and_nan_attributes(lane, tmp_path):
    # attributes another tool wrote: an array, numpy scalars, a NaN
    rec = tmp_path / "attrs.h5"
    rec.write_bytes(lane.read_bytes())
    with h5py.File(rec, "r+") as f:
        f.attrs["calibration"] = np.arange(3.0)
        f.attrs["count"] = np.int64(3)
        f.attrs["gain"] = np.nan
    proc = _demine("info", "--json", str(rec))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    doc = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert doc["attrs"]["calibration"] == [0.0, 1.0, 2.0]
    assert doc["attrs"]["count"] == 3 and doc["attrs"]["gain"] is None
    assert doc["streams"]["emi"]["frames"] == 3000


def test_info_text_with_attributes_written_as_arrays(lane, tmp_path, capsys):
    """A stream's driver, the root's software (arrays of strings, as other tools
    write lists) and a stream's kind (a one-element array) had crashed the
    text output with a traceback; --json took them (train audit, session 34)."""
    rec = tmp_path / "arrays.h5"
    rec.write_bytes(lane.read_bytes())
    text = h5py.string_dtype()
    with h5py.File(rec, "r+") as f:
        f["streams/emi"].attrs["driver"] = np.array(["emi-pi", "v2"], dtype=text)
        f.attrs["software"] = np.array(["tool", "1.0"], dtype=text)
        f["streams/gps"].attrs["kind"] = np.array(["gps"], dtype=text)
    assert main(["info", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "by tool; 1.0 " in out and "[emi-pi; v2]" in out
    assert re.search(r"\n    gps +gps ", out), out


def test_info_shows_an_implausible_extent_in_a_few_digits(tmp_path, capsys):
    """(train audit, session 34) a y of 1e300 had been printed as 300 digits."""
    from demine.recording import RecordingWriter

    path = tmp_path / "far.h5"
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=np.geomspace(1e-5, 1e-3, 4)).append(
            np.zeros((3, 4), np.float32), time=np.arange(3) * 10**6, x=[0.0, 1.0, 2.0],
            y=[0.0, 1e300, 0.5])
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "x 0.000..2.000 m, y 0.000..1e+300 m" in out, out


# ------------------------------------------------------------------------ simulate
@pytest.mark.parametrize("extra", [["--faults", "drop=0.5"], ["--speed", "3"], ["--fast"],
                                   ["--link", "emi-pi=lnk"], ["--unplug-every", "2:1"]])
def test_simulate_out_refuses_device_options(tmp_path, capsys, extra):
    out = tmp_path / "o.h5"
    assert main(["simulate", "demo-lane", "--out", str(out), "--duration", "0.2",
                 *extra]) == 2
    err = _one_error_line(capsys, "simulate")
    assert f"{extra[0]} applies to --device" in err
    assert not out.exists()


def test_simulate_device_refuses_out_options(capsys):
    assert main(["simulate", "demo-lane", "--device", "emi-pi", "--duration", "0.2",
                 "--streams", "emi"]) == 2
    assert "--streams applies to --out" in _one_error_line(capsys, "simulate")


def test_simulate_empty_stream_list(tmp_path, capsys):
    out = tmp_path / "o.h5"
    assert main(["simulate", "demo-lane", "--out", str(out), "--streams", ","]) == 2
    assert "--streams ','" in _one_error_line(capsys, "simulate")
    assert not out.exists()


@pytest.mark.parametrize("option, value, says", [
    ("--layout-seed", "-5", "'--layout-seed' must be >= 0, got -5"),
    ("--seed", "-1", "'--seed' must be >= 0, got -1"),
    ("--duration", "-1", "'--duration' must be > 0"),
])
def test_simulate_out_numbers_checked(tmp_path, capsys, option, value, says):
    out = tmp_path / "o.h5"
    assert main(["simulate", "demo-lane", "--out", str(out), option, value]) == 2
    assert says in _one_error_line(capsys, "simulate")
    assert not out.exists()


def test_simulate_out_over_its_scene_file(tmp_path, capsys):
    scene = tmp_path / "lane.toml"
    scene.write_bytes((Path(demine.simulate.__file__).parent / "scenes"
                       / "demo-lane.toml").read_bytes())
    before = _sha(scene)
    capsys.readouterr()
    assert main(["simulate", str(scene), "--out", str(scene), "--overwrite",
                 "--duration", "0.1"]) == 2
    assert "is the input" in _one_error_line(capsys, "simulate")
    assert _sha(scene) == before


def test_simulate_out_existing_refused_before_simulating(lane, capsys):
    before = _sha(lane)
    assert main(["simulate", "demo-lane", "--out", str(lane)]) == 2
    assert "file exists" in _one_error_line(capsys, "simulate")
    assert _sha(lane) == before


@pytest.mark.parametrize("extra, says", [
    (["--unplug-every", "inf:1"], "--unplug-every 'inf:1'"),
    (["--speed", "0"], "'--speed' must be > 0"),
    (["--faults", "drop=1.5"], "--faults 'drop=1.5'"),
    (["--link", "emi-pi=/nonexistent/dir/l"], "no such directory /nonexistent/dir"),
    (["--device", "emi-pi", "--link", "emi-pi=LINK"], "2 devices emi-pi would share one link"),
    (["--link", "emi-pi=LINK", "--link", "emi-pi=LINK2"], "--link emi-pi: given twice"),
])
def test_simulate_device_options_checked(tmp_path, capsys, extra, says):
    extra = [e.replace("LINK", str(tmp_path / "link")) for e in extra]
    assert main(["simulate", "demo-lane", "--device", "emi-pi", "--duration", "0.2",
                 *extra]) == 2
    assert says in _one_error_line(capsys, "simulate")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- drivers
def test_drivers_ignored_options_refused(capsys):
    assert main(["drivers", "--baud", "9600"]) == 2
    assert "--baud applies to --probe" in _one_error_line(capsys, "drivers")
    assert main(["drivers", "emi-pi", "--seconds", "2"]) == 2
    assert "--seconds applies to --probe" in _one_error_line(capsys, "drivers")
    assert main(["drivers", "--option", "columns=a"]) == 2
    assert "--option needs a driver NAME" in _one_error_line(capsys, "drivers")


def test_drivers_name_json(capsys):
    assert main(["drivers", "nmea", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "nmea" and doc["baudrate"] == 9600 and "NMEA" in doc["protocol"]


def _demine(*argv, timeout=30):
    return subprocess.run([sys.executable, "-m", "demine", *argv], capture_output=True,
                          text=True, timeout=timeout)


def test_drivers_probe_missing_port_one_line(tmp_path):
    proc = _demine("drivers", "emi-pi", "--probe", str(tmp_path / "ttyNONE"),
                   "--seconds", "0.3")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("demine drivers: error: cannot read"), \
        proc.stderr


def test_drivers_probe_wrong_driver_reports_once_on_stdout():
    # a real pseudo-terminal speaking emi-pi, probed as a radar
    # (as fast as it is read: more than the 64 KiB after which the reader diagnoses)
    with SimulatedDevice("emi-pi", "empty-lane", seed=1, duration=5.0, realtime=False) as dev:
        proc = _demine("drivers", "gpr", "--probe", dev.port, "--seconds", "0.6")
    assert proc.returncode == 1, proc.stderr
    assert "no valid frame in 64 KiB" in proc.stdout and "diagnosis:" in proc.stdout
    assert proc.stderr == ""  # the reader's log line said it a second time, unprefixed


# ------------------------------------------------------------------------- process
def _chain(path, name):
    path.write_text(f'[chain]\nname = "{name}"\nkind = "emi"\n'
                    '[[step]]\nname = "emi.baseline"\n')
    return path


def test_process_later_chain_does_not_replace_existing_derived(lane, tmp_path, capsys):
    rec = tmp_path / "r.h5"
    rec.write_bytes(lane.read_bytes())
    first, other = _chain(tmp_path / "a.toml", "kept"), _chain(tmp_path / "b.toml", "other")
    assert main(["process", str(rec), "-c", str(first), "-o", str(rec)]) == 0
    before = _sha(rec)
    capsys.readouterr()
    # the second chain added to OUT with overwrite and replaced 'kept' silently
    assert main(["process", str(rec), "-c", str(other), "-c", str(first), "-o", str(rec)]) == 2
    err = _one_error_line(capsys, "process")
    assert f"{rec} already holds derived emi/kept" in err
    assert _sha(rec) == before


def test_process_input_with_derived_names_input_not_temp(lane, tmp_path, capsys):
    rec = tmp_path / "r.h5"
    rec.write_bytes(lane.read_bytes())
    chain = _chain(tmp_path / "a.toml", "kept")
    assert main(["process", str(rec), "-c", str(chain), "-o", str(rec)]) == 0
    capsys.readouterr()
    out = tmp_path / "o.h5"
    assert main(["process", str(rec), "-c", str(chain), "-o", str(out)]) == 2
    err = _one_error_line(capsys, "process")
    assert ".tmp" not in err and f"{rec} already holds derived emi/kept" in err
    # (IN is never changed: said, the audit having read it as a threat to IN)
    assert f"--overwrite replaces it in {out}, which copies it; {rec} is never changed" in err
    assert not out.exists()
    assert main(["process", str(rec), "-c", str(chain), "-o", str(out), "--overwrite"]) == 0
    # an OUT in no directory is said before any work, naming the option
    assert main(["process", str(rec), "-c", str(chain), "-o",
                 str(tmp_path / "nodir" / "o.h5")]) == 2
    assert f"--out {tmp_path / 'nodir' / 'o.h5'}: directory {tmp_path / 'nodir'} does not " \
        "exist" in _one_error_line(capsys, "process")


def test_process_two_chains_same_name(lane, tmp_path, capsys):
    a, b = _chain(tmp_path / "a.toml", "same"), _chain(tmp_path / "b.toml", "same")
    out = tmp_path / "o.h5"
    assert main(["process", str(lane), "-c", str(a), "-c", str(b), "-o", str(out)]) == 2
    assert "both write derived emi/same" in _one_error_line(capsys, "process")
    assert not out.exists()


def test_process_stream_named_twice_is_processed_once(lane, tmp_path, capsys):
    out = tmp_path / "o.h5"
    chain = _chain(tmp_path / "a.toml", "once")
    assert main(["process", str(lane), "-c", str(chain), "-o", str(out),
                 "--stream", "emi", "--stream", "emi"]) == 0
    assert capsys.readouterr().out.count("emi -> /derived/emi/once") == 1
    with Recording(out) as rec:
        assert sorted(rec.derived()) == ["emi/once"]


def test_process_chunk_names_option(lane, tmp_path, capsys):
    out = tmp_path / "o.h5"
    assert main(["process", str(lane), "-c", "emi_default", "-o", str(out), "--chunk", "0"]) == 2
    assert "'--chunk' must be >= 1" in _one_error_line(capsys, "process")
    assert not out.exists()
    with h5py.File(lane, "r") as f:
        assert len(f.get("derived", {})) == 0


@pytest.mark.parametrize("args", [["simulate", "--list"], ["drivers"]])
def test_output_into_a_closed_pipe_stops_quietly(args):
    """`demine ... | head -1`: the reader goes away; the command stops with the
    shell's status for SIGPIPE (141) and says nothing (before: an error line
    "[Errno 32] Broken pipe" and status 2, or Python's "Exception ignored")."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # (the reader has gone before anything is written)
    try:
        proc = subprocess.run([sys.executable, "-m", "demine", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("name", ["", "a/b", "two words"])
def test_process_name_checked_before_the_work(lane, tmp_path, capsys, name):
    # '' had been taken as no name (the chain's), and a name the derived
    # group cannot have was refused only after the whole stream was processed
    out = tmp_path / "o.h5"
    assert main(["process", str(lane), "-c", "emi_default", "-o", str(out),
                 "--name", name]) == 2
    assert f"--name: derived name {name!r} must be" in _one_error_line(capsys, "process")
    assert not out.exists()


def test_process_refuses_a_chain_of_another_stream_kind(tmp_path, capsys):
    # an EMI chain on a radar stream had asked for the radar's gate times
    rec = tmp_path / "radar.h5"
    assert main(["simulate", "demo-lane", "--out", str(rec), "--duration", "1",
                 "--streams", "gpr,gps"]) == 0
    capsys.readouterr()
    out = tmp_path / "o.h5"
    assert main(["process", str(rec), "-c", "emi_default", "-o", str(out),
                 "--stream", "gpr"]) == 2
    err = _one_error_line(capsys, "process")
    assert "stream 'gpr' is a gpr stream; chain emi_default is for emi streams" in err
    assert not out.exists()
