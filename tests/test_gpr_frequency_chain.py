"""The default GPR chain follows a radar's centre frequency outside the
range it is set for, and vendor files declare the frequency on import.

The packaged ``gpr_default`` chain's dewow window and band-pass are kept for
radars of 0.5-2.6 GHz (``frequency_range``; scaled with the frequency there,
they lost mines at 0.8 GHz and added false alarms at 2.6 on the simulated
cart lanes).  Outside it they follow the stream's calibration ``frequency``:
before, the 0.5-3 GHz band removed the whole echo of a 100 MHz radar, and
``demine detect`` refused a real 200 MHz GSSI file outright (its 0.5 GHz
corner above the file's Nyquist frequency).  Vendor headers name the
antenna's frequency; ``demine import`` wrote it into the calibration for
gprMax files only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demine.errors import ConfigError
from demine.gpr import BandPass, DeWow, FusedChain, SECGain, fuse_chain, gain_curve
from demine.io.convert import import_file
from demine.pipeline import detect_recording
from demine.process import default_chain
from demine.recording import Recording

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GPR = DATA / "gpr"
FILES = {
    "mala-1.5GHz": (DATA / "landmine" / "iwagpr2017-rd3-subset" /
                    "buried_objects_xdir_bscan_19.rd3", 1.5e9, "mala header"),
    "gssi-400MHz": (GPR / "gprpy-exampledata" / "GSSI" / "FILE____032.DZT", 4e8, "gssi header"),
    "gssi-200MHz": (GPR / "impdar-test-data" / "test_gssi.DZT", 2e8, "gssi header"),
    "pulseekko-50MHz": (GPR / "gprpy-exampledata" / "SnS" / "ComOffs" / "XLINE00.DT1", 5e7,
                        "pulseekko header"),
    "mala-500MHz": (GPR / "impdar-test-data" / "ten_col.rd3", 5e8, "mala header"),
}
DT = 31.25e-12   # the reference radar's sample interval


@pytest.mark.parametrize("name", sorted(FILES))
def test_import_writes_the_antennas_frequency_into_the_calibration(tmp_path, name):
    path, freq, source = FILES[name]
    assert path.is_file(), f"real sample file missing: {path}"
    out = tmp_path / "r.h5"
    import_file(path, out)
    with Recording(out) as rec:
        cal = dict(rec.streams["gpr"].calibration)
    assert cal["frequency"] == pytest.approx(freq)
    assert cal["frequency_source"].startswith(source)


def test_detect_runs_on_a_200_mhz_gssi_file(tmp_path):
    """Sampled at 0.89 GHz (Nyquist 445 MHz): the 0.5-3 GHz band cannot be
    designed there; moved to the antenna's 200 MHz (x 0.4) it is 0.2-1.2 GHz,
    its upper corner then kept at 0.9 times the Nyquist frequency: 0.2-0.401."""
    out = tmp_path / "r.h5"
    import_file(FILES["gssi-200MHz"][0], out)
    notes: list[str] = []
    with pytest.warns(UserWarning, match="gives no time zero"):   # (a DZT gives none)
        detect_recording(out, notes=notes)   # (raised ConfigError: 'low' above Nyquist)
    band = [n for n in notes if "gpr.bandpass" in n]
    assert band == ["gpr: gpr.bandpass: radar centre frequency 0.2 GHz, outside the 0.5-2.6 "
                    "GHz its band is set for: 0.5-3 GHz -> 0.2-0.401 GHz"]
    assert any("gpr.dewow" in n and "scaled by 2.5" in n for n in notes)


RANGE = [0.5e9, 2.6e9]


@pytest.mark.parametrize(("f", "low", "high"), [
    (0.1e9, 0.1e9, 0.6e9),          # a 100 MHz antenna: x 0.1 / 0.5
    (0.4e9, 0.4e9, 2.4e9),
    (0.5e9, 0.5e9, 3e9),            # inside the range: as given
    (0.8e9, 0.5e9, 3e9),
    (2.6e9, 0.5e9, 3e9),
    (None, 0.5e9, 3e9),             # no frequency declared
    (0.0, 0.5e9, 3e9),              # nonsense: the GPR detector refuses it, naming the stream
    (5.2e9, 1e9, 6e9),              # x 5.2 / 2.6
    (15e9, 0.5e9 * 15 / 2.6, 0.9 * 0.5 / DT),   # kept below Nyquist (16 GHz)
])
def test_bandpass_corners_follow_the_frequency_outside_its_range(f, low, high):
    bp = BandPass(0.5e9, 3e9, frequency_range=RANGE)
    bp.configure({"sample_interval": DT} | ({} if f is None else {"frequency": f}))
    assert bp.low == pytest.approx(low) and bp.high == pytest.approx(high)
    p = bp.params()
    assert p["frequency_range"] == RANGE
    assert p["frequency_scale"] == pytest.approx(low / 0.5e9)
    assert len(bp.notes()) == (0 if low == 0.5e9 else 1)
    # without a range nothing moves (a band chosen for this radar)
    plain = BandPass(0.5e9, 3e9)
    plain.configure({"sample_interval": DT, "frequency": 0.1e9})
    assert (plain.low, plain.high) == (0.5e9, 3e9) and "frequency_scale" not in plain.params()


def test_bandpass_refuses_a_band_the_sampling_cannot_hold():
    bp = BandPass(0.5e9, 3e9, frequency_range=RANGE)
    with pytest.raises(Exception, match=r"gpr.bandpass.*Nyquist.*give 'low' and 'high'"):
        bp.configure({"sample_interval": 1e-9, "frequency": 5e9})   # low 0.96 GHz > 0.45 GHz


@pytest.mark.parametrize("bad", [[1e9], [2e9, 1e9], [0.0, 1e9], "0.5-2.6", [1e9, float("nan")]])
def test_frequency_range_is_checked(bad):
    with pytest.raises(ConfigError, match="frequency_range"):
        BandPass(0.5e9, 3e9, frequency_range=bad)
    with pytest.raises(ConfigError, match="frequency_range"):
        DeWow(window=41, frequency_range=bad)


@pytest.mark.parametrize(("kw", "f", "window"), [
    ({"window_time": 1.28e-9}, None, 41),
    ({"window_time": 1.28e-9}, 0.8e9, 41),        # inside the range: as given
    ({"window_time": 1.28e-9}, 0.25e9, 83),       # half the lower end: twice the window
    ({"window_time": 1.28e-9}, 5.2e9, 21),
    ({"window": 41}, 0.25e9, 83),
    ({"window": 41}, 1.5e9, 41),
])
def test_dewow_window_follows_the_frequency_outside_its_range(kw, f, window):
    dw = DeWow(**kw, frequency_range=RANGE)
    dw.configure({"sample_interval": DT} | ({} if f is None else {"frequency": f}))
    assert dw.window == window
    plain = DeWow(**kw)
    plain.configure({"sample_interval": DT, "frequency": 0.25e9})
    assert plain.window == 41


def _ricker(t: np.ndarray, f: float) -> np.ndarray:
    a = (np.pi * f * t) ** 2
    return (1 - 2 * a) * np.exp(-a)


def _hyperbola_bscan(f: float, dt: float, n_samples: int = 512, n_traces: int = 301,
                     seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A point diffractor under a line, wavelet a Ricker of centre ``f``
    (apex at 1/4 of the window, velocity 0.1 m/ns, traces every 50/f metres)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) * dt
    dx = 0.05 * 1e9 / f
    x = (np.arange(n_traces) - n_traces // 2) * dx
    t0 = n_samples * dt / 4
    tt = np.sqrt(t0 ** 2 + (2 * x / 0.1e9) ** 2)
    b = _ricker(t[None, :] - tt[:, None], f)
    return (b + noise * rng.standard_normal(b.shape)).astype(np.float32)


def _sec_params() -> dict:
    (sec,) = [st for st in default_chain("gpr_default").steps if isinstance(st, SECGain)]
    return {k: v for k, v in sec.params().items() if k != "sample_interval"}


def _run_default_chain(traces: np.ndarray, context: dict) -> tuple[np.ndarray, np.ndarray]:
    ch = default_chain("gpr_default")
    ch.configure(context)
    stepwise = np.concatenate([ch.process(traces), ch.finish()])
    fused = fuse_chain(ch.steps)
    assert isinstance(fused, FusedChain)
    fused.configure(context)
    return stepwise, np.concatenate([fused.process(traces), fused.finish()])


def _kept(freq: float, declare: bool, noise: float = 0.01) -> float:
    """The share of a hyperbola's RMS amplitude (what background removal
    leaves of it) the default chain keeps, before its SEC gain (a curve in
    seconds); its square is the share of the energy."""
    dt = DT * 1.5e9 / freq   # 32 samples per period of the wavelet
    b = _hyperbola_bscan(freq, dt, noise=noise)
    ctx = {"sample_interval": dt} | ({"frequency": freq} if declare else {})
    out, fused = _run_default_chain(b, ctx)
    assert np.array_equal(out, fused)   # the fused kernel does the same
    gain = gain_curve(b.shape[1], **_sec_params(), sample_interval=dt)
    return float(np.linalg.norm(out / gain) / np.linalg.norm(b - b.mean(axis=0)))


@pytest.mark.parametrize("f", [0.05e9, 0.1e9, 0.25e9, 5.2e9])
def test_default_chain_keeps_the_echo_of_a_radar_outside_its_range(f):
    """A radar outside 0.5-2.6 GHz keeps as much of its echo as a radar at
    that end of the range (its centre frequency sits where the end's does);
    with the band as given, much or all of it is lost."""
    at_edge = _kept(0.5e9 if f < 0.5e9 else 2.6e9, True)   # 0.57 / 0.66 (1.5 GHz: 0.96)
    assert _kept(f, True) == pytest.approx(at_edge, rel=0.02)
    assert _kept(f, False) < 0.8 * at_edge
    if f <= 0.1e9:
        # noise-free: the band as given leaves nothing of the wavelet
        assert _kept(f, False, noise=0.0) < 0.05 * _kept(f, True, noise=0.0)


@pytest.mark.parametrize("f", [0.5e9, 0.8e9, 2.6e9])
def test_default_chain_inside_its_range_is_as_given(f):
    dt = DT * 1.5e9 / f
    b = _hyperbola_bscan(f, dt)
    with_f, _ = _run_default_chain(b, {"sample_interval": dt, "frequency": f})
    without, _ = _run_default_chain(b, {"sample_interval": dt})
    assert np.array_equal(with_f, without)


@pytest.mark.parametrize("f", [None, 1.5e9, 1.45e9])
def test_reference_radar_chain_unchanged(f):
    b = _hyperbola_bscan(1.5e9, DT)
    plain = FusedChain(dewow_window=41, background_window=101, low=0.5e9, high=3.0e9,
                       gain_power=1.0, gain_attenuation=1e8, sample_interval=DT)
    want = np.concatenate([plain.process(b), plain.finish()])
    out, fused = _run_default_chain(b, {"sample_interval": DT} | (
        {} if f is None else {"frequency": f}))
    assert np.array_equal(out, want) and np.array_equal(fused, want)


@pytest.mark.parametrize("bad", ["59", [True, 2e9], [1e9, 2e9, 3e9]])
def test_frequency_range_must_be_two_numbers(bad):
    # (a string was read letter by letter: "59" became 5-9 Hz)
    with pytest.raises(ConfigError, match="frequency_range"):
        BandPass(0.5e9, 3e9, frequency_range=bad)


@pytest.mark.parametrize("f", [200.0, 1e-300, 1e13])
def test_a_frequency_in_the_wrong_unit_is_refused(f):
    # (200 for 200 MHz had made a 2.85-million-sample dewow window; 1e-300 overflowed)
    for stage in (BandPass(0.5e9, 3e9, frequency_range=RANGE),
                  DeWow(window_time=1.28e-9, frequency_range=RANGE)):
        with pytest.raises(ConfigError, match="not a radar centre frequency"):
            stage.configure({"sample_interval": DT, "frequency": f})


@pytest.mark.parametrize(("low", "high", "note"), [
    (None, 3e9, "below 3 GHz -> below 0.6 GHz"),
    (0.5e9, None, "above 0.5 GHz -> above 0.1 GHz"),
])
def test_one_sided_band_notes(low, high, note):
    bp = BandPass(low, high, frequency_range=RANGE)
    bp.configure({"sample_interval": DT, "frequency": 0.1e9})
    assert bp.notes()[0].endswith(note)


def test_a_stage_without_a_range_does_not_judge_the_frequency():
    # (only a stage that scales by it needs it to be a radar's)
    bp = BandPass(0.5e9, 3e9)
    bp.configure({"sample_interval": DT, "frequency": 200.0})
    assert (bp.low, bp.high) == (0.5e9, 3e9)
