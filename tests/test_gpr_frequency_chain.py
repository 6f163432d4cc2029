"""The default GPR chain follows the radar's centre frequency, and vendor
files declare it on import.

The packaged ``gpr_default`` chain's dewow window and band-pass are given for
the 1.5 GHz reference radar (``reference_frequency``).  A stream whose
calibration gives another centre ``frequency`` gets them scaled, as the GPR
detector scales its wavelet-tied parameters: before, the 0.5-3 GHz band
removed the whole echo of a 100 MHz radar, and ``demine detect`` refused a
real 200 MHz GSSI file outright (its 0.5 GHz corner above the file's Nyquist
frequency).  Vendor headers name the antenna's frequency; ``demine import``
wrote it into the calibration for gprMax files only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    """Sampled at 0.89 GHz (Nyquist 445 MHz): the reference band (0.5-3 GHz)
    cannot be designed there; scaled to the antenna's 200 MHz it is 67-400 MHz."""
    out = tmp_path / "r.h5"
    import_file(FILES["gssi-200MHz"][0], out)
    notes: list[str] = []
    with pytest.warns(UserWarning, match="gives no time zero"):   # (a DZT gives none)
        detect_recording(out, notes=notes)   # (raised ConfigError: 'low' above Nyquist)
    band = [n for n in notes if "gpr.bandpass" in n]
    assert band == ["gpr: gpr.bandpass: radar centre frequency 0.2 GHz, band 0.5-3 GHz given "
                    "for 1.5 GHz -> 0.0667-0.4 GHz"]
    assert any("gpr.dewow" in n and "scaled by 7.5" in n for n in notes)


@pytest.mark.parametrize(("f", "low", "high"), [
    (0.1e9, 0.5e9 / 15, 0.2e9),     # a 100 MHz antenna
    (0.8e9, 0.5e9 * 0.8 / 1.5, 1.6e9),
    (2.6e9, 0.5e9 * 2.6 / 1.5, 3e9 * 2.6 / 1.5),
    (1.55e9, 0.5e9, 3e9),           # within FREQUENCY_TOLERANCE: as given
    (None, 0.5e9, 3e9),             # no frequency declared
    (0.0, 0.5e9, 3e9),              # nonsense: the GPR detector refuses it, naming the stream
    (10e9, 0.5e9 * 10 / 1.5, 0.9 * 0.5 / DT),   # above the sampling: kept below Nyquist
])
def test_bandpass_corners_follow_the_frequency(f, low, high):
    bp = BandPass(0.5e9, 3e9, reference_frequency=1.5e9)
    bp.configure({"sample_interval": DT} | ({} if f is None else {"frequency": f}))
    assert bp.low == pytest.approx(low) and bp.high == pytest.approx(high)
    p = bp.params()
    assert p["reference_frequency"] == 1.5e9
    assert p["frequency_factor"] == pytest.approx(1.0 if high == 3e9 else 1.5e9 / f)
    assert bp.notes() == [] if high == 3e9 else len(bp.notes()) == 1
    # without a reference frequency nothing scales (a band chosen for this radar)
    plain = BandPass(0.5e9, 3e9)
    plain.configure({"sample_interval": DT, "frequency": 0.1e9})
    assert (plain.low, plain.high) == (0.5e9, 3e9) and "frequency_factor" not in plain.params()


def test_bandpass_refuses_a_band_the_sampling_cannot_hold():
    bp = BandPass(0.5e9, 3e9, reference_frequency=1.5e9)
    with pytest.raises(Exception, match=r"gpr.bandpass.*Nyquist.*give 'low' and 'high'"):
        bp.configure({"sample_interval": 1e-9, "frequency": 5e9})   # low 1.67 GHz > 0.45 GHz


@pytest.mark.parametrize(("kw", "f", "window"), [
    ({"window_time": 1.28e-9}, None, 41),
    ({"window_time": 1.28e-9}, 0.75e9, 83),       # two periods of a 0.75 GHz wavelet
    ({"window_time": 1.28e-9}, 3e9, 21),
    ({"window": 41}, 0.75e9, 83),
    ({"window": 41}, 1.5e9, 41),
])
def test_dewow_window_follows_the_frequency(kw, f, window):
    dw = DeWow(**kw, reference_frequency=1.5e9)
    dw.configure({"sample_interval": DT} | ({} if f is None else {"frequency": f}))
    assert dw.window == window
    plain = DeWow(**kw)
    plain.configure({"sample_interval": DT, "frequency": 0.75e9})
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


@pytest.mark.parametrize("f", [0.1e9, 0.4e9, 2.6e9])
def test_default_chain_keeps_the_echo_of_another_radar(f):
    """The hyperbola's echo (what background removal leaves of it) keeps as
    much of its energy through the scaled chain as the reference radar's
    through the chain at 1.5 GHz; the band as for 1.5 GHz takes much of it
    away, at 0.1 GHz all of the wavelet."""
    def kept(freq: float, declare: bool) -> float:
        dt = DT * 1.5e9 / freq   # 32 samples per period of the wavelet
        b = _hyperbola_bscan(freq, dt)
        ctx = {"sample_interval": dt} | ({"frequency": freq} if declare else {})
        out, fused = _run_default_chain(b, ctx)
        assert np.array_equal(out, fused)   # the fused kernel does the same
        bg = b - b.mean(axis=0)
        # the energy kept before the SEC gain (a curve in seconds, not periods)
        gain = gain_curve(b.shape[1], **_sec_params(), sample_interval=dt)
        return float(np.linalg.norm(out / gain) / np.linalg.norm(bg))

    reference = kept(1.5e9, True)   # 0.96
    # every window and corner in the wavelet's own units: the same, whatever f
    assert kept(f, True) == pytest.approx(reference, rel=0.02)
    # the band as for 1.5 GHz: 0.14 of it at 0.1 GHz, 0.34 at 0.4, 0.66 at 2.6
    assert kept(f, False) < 0.75 * reference
    if f == 0.1e9:
        # (0.1 GHz sampled at 0.47 ns: Nyquist 1.07 GHz; the fixed 0.5-3 GHz band
        # cannot even be designed there, and at a 10x finer sampling it leaves
        # nothing of the wavelet)
        b = _hyperbola_bscan(f, DT * 1.5, noise=0.0)
        fixed, _ = _run_default_chain(b, {"sample_interval": DT * 1.5})
        ctx = {"sample_interval": DT * 1.5, "frequency": f}
        ok, _ = _run_default_chain(b, ctx)
        assert np.linalg.norm(fixed) < 0.05 * np.linalg.norm(ok)


@pytest.mark.parametrize("f", [None, 1.5e9, 1.45e9])
def test_reference_radar_chain_unchanged(f):
    b = _hyperbola_bscan(1.5e9, DT)
    plain = FusedChain(dewow_window=41, background_window=101, low=0.5e9, high=3.0e9,
                       gain_power=1.0, gain_attenuation=1e8, sample_interval=DT)
    want = np.concatenate([plain.process(b), plain.finish()])
    out, fused = _run_default_chain(b, {"sample_interval": DT} | (
        {} if f is None else {"frequency": f}))
    assert np.array_equal(out, want) and np.array_equal(fused, want)
