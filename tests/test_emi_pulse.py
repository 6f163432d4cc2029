"""emi.soil with ``find_pulse = true``: the ground balance finds an undeclared
transmitter pulse from viscous ground as the lane goes, switches to it at a
fixed reading whatever the chunking, and takes nothing from ground that no
pulse explains (a step-off's, too weak, t^-1.5, a band of relaxation times)."""

from __future__ import annotations

import numpy as np
import pytest
from _sweeps import SWEEP_GATES, viscous_sweep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demine import emi
from demine.errors import ConfigError
from demine.process import load_chain, run_stage


def searcher(gates, **kw):
    return emi.SoilCompensation(gate_times=gates, find_pulse=True, **kw)


def ref_balance(x, basis):
    """The fixed ground balance in plain NumPy: each reading minus its
    least-squares fit of the basis."""
    return x - (x @ np.linalg.pinv(basis).T) @ basis.T


@pytest.mark.parametrize("pulse", [60e-6, 150e-6, 400e-6, 1e-3])
def test_the_search_finds_the_pulse_and_balances_with_it_from_then_on(pulse):
    gates, x = viscous_sweep(pulse)
    stage = searcher(gates)
    out = run_stage(stage, x)
    found, start = stage.found_pulse
    assert found == pytest.approx(pulse, rel=0.1)
    # three 2 s windows in a row, so at a window's end and not before the third
    assert start % stage.pulse_window == 0 and start >= 3 * stage.pulse_window
    scale = np.abs(x).max()
    np.testing.assert_allclose(out[:start], ref_balance(x[:start], emi.soil_basis(gates)),
                               atol=1e-9 * scale)
    after = emi.soil_basis(gates, pulse_length=found)
    np.testing.assert_allclose(out[start:], ref_balance(x[start:], after), atol=1e-9 * scale)
    # what the balance leaves of the ground's movement (changes of 50-reading
    # means, in units of each gate's noise), before and after
    noise = np.std(np.diff(x, axis=0), axis=0)
    means = out[: out.shape[0] // 50 * 50].reshape(-1, 50, x.shape[1]).mean(axis=1)
    moves = (np.diff(means, axis=0) / noise) ** 2 @ np.ones(x.shape[1])
    k = start // 50
    assert np.median(moves[k:]) < 0.2 * np.median(moves[:k - 1])
    assert stage.params()["found_pulse"] == {"pulse_length": found, "from_reading": start}
    assert stage.params()["pulse_length"] is None  # nothing was declared


def test_the_learnt_balance_restarts_at_the_switch():
    """What the learnt balance learnt against 1/t is forgotten: from the switch
    on, the output is a fresh stage's with the pulse declared."""
    gates, x = viscous_sweep(150e-6, n=12000, seed=11, metal=2)
    kw = dict(learn=True, learn_min=500)
    stage = searcher(gates, **kw)
    out = run_stage(stage, x)
    found, start = stage.found_pulse
    before = run_stage(emi.SoilCompensation(gate_times=gates, **kw), x[:start])
    np.testing.assert_array_equal(out[:start], before)
    after = run_stage(emi.SoilCompensation(gate_times=gates, pulse_length=found, **kw),
                      x[start:])
    np.testing.assert_array_equal(out[start:], after)


def _windows(*parts):
    """Readings made of 2000-reading windows of different grounds."""
    return np.concatenate([p[:2000] for p in parts])


def test_three_agreeing_windows_in_a_row_decide():
    """One window without soil breaks the row; pulses that disagree by more
    than the factor 1.3 decide nothing; of three that agree, the middle one
    is taken."""
    g, w150 = viscous_sweep(150e-6, n=2000, seed=21, metal=0)
    _, w160 = viscous_sweep(165e-6, n=2000, seed=22, metal=0)
    _, w140 = viscous_sweep(136e-6, n=2000, seed=23, metal=0)
    _, quiet = viscous_sweep(None, n=2000, seed=24, soil=0.0, metal=0)
    _, w60 = viscous_sweep(60e-6, n=2000, seed=25, metal=0)
    _, w400 = viscous_sweep(400e-6, n=2000, seed=26, metal=0)
    cases = [
        # hits, a miss, then three hits: taken after the fifth window
        (_windows(w150, w150, quiet, w150, w160, w140, quiet), 6 * 2000),
        # two 60 µs windows then a 400 µs one: nothing; then two more 400s
        (_windows(w60, w60, w400, w400, w400, quiet), 5 * 2000),
    ]
    for x, at in cases:
        stage = searcher(g)
        run_stage(stage, x)
        assert stage.found_pulse is not None and stage.found_pulse[1] == at
    stage = searcher(g)
    run_stage(stage, _windows(w150, w160, w140))
    # the three windows' own pulses, and the middle one of them taken
    hits = [searcher(g) for _ in range(3)]
    own = []
    for h, w in zip(hits, (w150, w160, w140), strict=True):
        h._search_window(w[:2000].astype(np.float64))
        own.append(h._pw_hits[-1])
    assert stage.found_pulse == (sorted(own)[1], 6000)


def test_the_search_looks_only_at_the_first_windows():
    """Ground that shows the pulse only after ``pulse_windows`` windows is not
    searched (the search then costs nothing however long the recording)."""
    g, w150 = viscous_sweep(150e-6, n=2000, seed=21, metal=0)
    _, quiet = viscous_sweep(None, n=2000, seed=24, soil=0.0, metal=0)
    x = _windows(quiet, quiet, w150, w150, w150, w150)
    late = searcher(g, pulse_windows=4)
    run_stage(late, x)
    assert late.found_pulse is None and late._pw_buf is None
    early = searcher(g, pulse_windows=5)
    run_stage(early, x)
    assert early.found_pulse is not None and early.found_pulse[1] == 5 * 2000
    with pytest.raises(ConfigError, match="pulse_windows"):
        searcher(g, pulse_windows=2)


@pytest.mark.parametrize("kind", ["step-off", "weak soil", "t^-1.5", "band"])
def test_the_search_takes_nothing_from_ground_no_pulse_explains(kind):
    kw = {"step-off": dict(pulse=None), "weak soil": dict(pulse=150e-6, soil=0.05),
          "t^-1.5": dict(pulse=None, decay=lambda t: t ** -1.5),
          "band": dict(pulse=None, decay=lambda t: np.exp(-t / 3e-4) / t)}[kind]
    gates, x = viscous_sweep(**kw)
    stage = searcher(gates, learn=True)
    out = run_stage(stage, x)
    assert stage.found_pulse is None
    assert stage.params()["found_pulse"] is None
    # bit for bit the balance without the search
    plain = run_stage(emi.SoilCompensation(gate_times=gates, learn=True), x)
    np.testing.assert_array_equal(out, plain)


def test_metal_under_every_sweep_is_not_taken_for_a_pulse():
    """Targets decay faster than 1/t, and a short pulse's soil decay
    (~T/t^2) resembles them: over ground too weak to matter, with metal
    passed again and again, no pulse is taken."""
    gates, x = viscous_sweep(None, soil=1.0, metal=60, n=30000, seed=5)
    stage = searcher(gates)
    run_stage(stage, x)
    assert stage.found_pulse is None


def test_a_declared_pulse_or_step_off_stops_the_search():
    gates, x = viscous_sweep(150e-6, n=12000)
    for declared in (150e-6, 0.0):
        stage = searcher(gates, pulse_length=declared)
        out = run_stage(stage, x)
        assert stage.found_pulse is None
        np.testing.assert_array_equal(
            out, run_stage(emi.SoilCompensation(gate_times=gates, pulse_length=declared), x))
    # declared in the stream's calibration, as `demine calibrate pulse` writes it
    from_cal = emi.SoilCompensation(find_pulse=True)
    from_cal.configure({"gate_times": gates, "pulse_length": 150e-6})
    run_stage(from_cal, x)
    assert from_cal.found_pulse is None
    np.testing.assert_array_equal(from_cal.basis, emi.soil_basis(gates, pulse_length=150e-6))


def test_reset_forgets_the_pulse_found():
    gates, x = viscous_sweep(150e-6, n=16000)
    stage = searcher(gates, learn=True)
    first = run_stage(stage, x)
    found = stage.found_pulse
    assert found is not None
    stage.reset()
    assert stage.found_pulse is None
    np.testing.assert_array_equal(stage.basis, emi.soil_basis(gates))
    np.testing.assert_array_equal(run_stage(stage, x), first)
    assert stage.found_pulse == found  # readings counted from the reset
    # a window left half full before the reset starts again from nothing
    half = searcher(gates, learn=True)
    run_stage(half, x[:4500])
    half.reset()
    np.testing.assert_array_equal(run_stage(half, x), first)
    assert half.found_pulse == found
    # a new calibration forgets it too
    stage.configure({"gate_times": gates, "pulse_length": 400e-6})
    assert stage.found_pulse is None
    np.testing.assert_array_equal(stage.basis, emi.soil_basis(gates, pulse_length=400e-6))


_X = viscous_sweep(150e-6, n=9000, seed=11)[1]
_GATES = SWEEP_GATES


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 2500), min_size=1, max_size=12).filter(
           lambda s: max(s) > 0),
       holes=st.lists(st.tuples(st.integers(0, 8999), st.integers(-1, 15)), max_size=3),
       learn=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_any_chunking_switches_at_the_same_reading(sizes, holes, learn, dtype):
    """Live (small chunks) and batch (whole recordings) give the same numbers,
    around the switch and with missing values (a gate, or -1: a whole reading),
    for recordings' float32 as for float64."""
    x = _X.astype(dtype)
    for i, g in holes:
        if g < 0:
            x[i] = np.nan
        else:
            x[i, g] = np.nan
    one = searcher(_GATES, learn=learn, learn_min=500)
    batch = run_stage(one, x)
    assert one.found_pulse is not None
    other = searcher(_GATES, learn=learn, learn_min=500)
    chunked = run_stage(other, x, sizes)
    np.testing.assert_array_equal(chunked, batch)
    assert other.found_pulse == one.found_pulse


def test_the_packaged_chain_searches_and_bad_options_are_refused():
    soil = load_chain("emi_default").steps[0]
    assert soil.name == "emi.soil" and soil.find_pulse and soil.pulse_window == 2000
    assert soil.pulse_windows == 30
    with pytest.raises(ConfigError, match="find_pulse"):
        emi.SoilCompensation(find_pulse="yes")
    with pytest.raises(ConfigError, match="pulse_window .* at least 21 blocks"):
        emi.SoilCompensation(find_pulse=True, pulse_window=500)
    with pytest.raises(ConfigError, match="pulse_window"):
        emi.SoilCompensation(pulse_window=0)
    with pytest.raises(ConfigError, match="find_pulse .* 'viscous'"):
        emi.SoilCompensation(find_pulse=True, components=["conductive", "offset"])
    # at a reading rate so low that the scaled window holds too few blocks, the
    # search is off, and says so
    slow = emi.SoilCompensation(find_pulse=True, learn_block=100, pulse_window=2100)
    with pytest.warns(UserWarning, match="no pulse search"):
        slow.scale_frames(0.335)  # 100 -> 34 readings a block, 2100 -> 704 a window
    gates, x = viscous_sweep(150e-6, n=12000)
    slow.configure({"gate_times": gates})
    run_stage(slow, x)
    assert slow.found_pulse is None
    # too few gates to tell a pulse: no search, no error
    gates = np.geomspace(1e-5, 1e-3, 3)
    x = viscous_sweep(150e-6, n=8000)[1][:, ::6][:, :3]
    stage = searcher(gates)
    run_stage(stage, x)
    assert stage.found_pulse is None


def test_demine_detect_says_which_pulse_it_found(tmp_path):
    """The user learns what the balance found, and how to declare it."""
    import subprocess
    import sys

    from demine.recording import RecordingWriter

    gates, x = viscous_sweep(150e-6, n=12000, seed=11, metal=2)
    path = tmp_path / "sweep.h5"
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=gates).append(
            x.astype(np.float32), time=(np.arange(x.shape[0]) * 1e6).astype(np.int64))
    proc = subprocess.run([sys.executable, "-m", "demine", "detect", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "note: emi: emi.soil: a transmitter pulse of 147.8 us was found" in proc.stdout
    assert "calibration pulse_length = 0.0001478" in proc.stdout
    stage = searcher(gates)
    assert stage.notes() == []
    run_stage(stage, x)
    assert stage.notes() and "from reading 6000" in stage.notes()[0]
