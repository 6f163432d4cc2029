"""Radar time zero on traces with a DC offset or a slow drift, as real radars
record them: the level is removed before the direct wave is picked."""

from __future__ import annotations

import numpy as np
import pytest

from demine.calibration.procedures import time_zero_profile
from demine.cli import main
from demine.gpr import TimeZero
from demine.recording import RecordingWriter

M, DT, PICK = 256, 25e-12, 37


def _ricker(pick=PICK, amp=8000.0, width=3.0):
    u = (np.arange(M) - pick) / width
    return amp * (1 - 2 * u**2) * np.exp(-(u**2))


def _gauss(pick=PICK, amp=8000.0, width=2.0):
    return amp * np.exp(-(((np.arange(M) - pick) / width) ** 2))


def _traces(wave, *, dc=0.0, drift=0.0, n=200, noise=50.0, seed=1):
    """``n`` traces of ``wave`` plus noise, a constant ``dc`` and a linear
    drift of ``drift`` from the first sample to the last (centred on zero)."""
    rng = np.random.default_rng(seed)
    ramp = drift * (np.arange(M) / (M - 1) - 0.5)
    x = wave[None, :] + noise * rng.standard_normal((n, M)) + dc + ramp[None, :]
    return x.astype("int16")


def _write(path, traces):
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=M, sample_interval=DT).append(
            traces, time=np.arange(len(traces)))
    return path


@pytest.mark.parametrize("dc", [-6000.0, 9000.0, -20000.0, 20000.0])
@pytest.mark.parametrize("wave", [_ricker, _gauss])
def test_time_zero_is_not_misled_by_a_dc_offset(tmp_path, dc, wave):
    # a Ricker's trough under -6000 used to reach half the trace's largest |x|
    # with every sample of the offset: the pick was sample 0.5
    prof = time_zero_profile(_write(tmp_path / "dc.h5", _traces(wave(), dc=dc)))
    assert prof["time_zero_sample"] == PICK
    assert prof["time_zero_spread"] == 0.0


@pytest.mark.parametrize("dc, drift", [(0.0, 12000.0), (-3000.0, 8000.0), (5000.0, -16000.0)])
def test_time_zero_is_not_misled_by_a_slow_drift(tmp_path, dc, drift):
    # the drift inflated the traces' spread: "0 of 200 traces have a direct wave"
    prof = time_zero_profile(_write(tmp_path / "drift.h5", _traces(_ricker(), dc=dc, drift=drift)))
    assert prof["time_zero_sample"] == PICK
    assert prof["time_zero_spread"] == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("wave", [_ricker(), _gauss(), _ricker(pick=5), _gauss(pick=200),
                                  _ricker(pick=90.4, width=5.0), -_gauss(pick=60.6, amp=800)])
def test_time_zero_without_offset_is_the_raw_traces_pick(tmp_path, seed, wave):
    traces = _traces(wave, seed=seed)
    tz = TimeZero(threshold=0.5, mode="peak")
    tz.process(traces.astype(np.float32))
    raw = tz.last_picks
    prof = time_zero_profile(_write(tmp_path / "plain.h5", traces))
    assert prof["time_zero_sample"] == float(np.median(raw))
    assert prof["time_zero_spread"] == pytest.approx(
        float(np.percentile(raw, 90) - np.percentile(raw, 10)) * DT)


def test_cli_time_zero_with_a_dc_offset(tmp_path, capsys):
    path = _write(tmp_path / "dc.h5", _traces(_ricker(), dc=-6000.0, drift=4000.0))
    out = tmp_path / "tz.toml"
    assert main(["calibrate", "time-zero", str(path), "--out", str(out)]) == 0
    assert f"(sample {PICK})" in capsys.readouterr().out


def test_time_zero_with_missing_samples_and_an_offset(tmp_path):
    traces = _traces(_ricker(), dc=-6000.0).astype(np.float32)
    traces[::3, 150:] = np.nan  # (a late half missing on a third of the traces)
    traces[1::7, :] = np.nan    # (and some traces missing whole: no wave there)
    path = tmp_path / "nan.h5"
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=M, dtype="f4", sample_interval=DT).append(
            traces, time=np.arange(len(traces)))
    prof = time_zero_profile(path)
    assert prof["time_zero_sample"] == PICK


@pytest.mark.parametrize("drift", [0.0, 3000.0, -3000.0])
@pytest.mark.parametrize("pick", [37.0, 120.5])
def test_a_clipped_direct_wave_is_picked_at_the_centre_of_its_flat_top(tmp_path, drift, pick):
    """A direct wave that saturates the converter (int16 full scale) is flat
    over 7-8 samples.  The peak pick had stopped at one end of the top, which
    end depending on the sign of the drift removed first (up to 3.5 samples
    late or early); the centre is the wave's peak."""
    wave = _gauss(pick=pick, amp=90000.0, width=4.0)
    rng = np.random.default_rng(2)
    x = np.clip(wave[None, :] + 50 * rng.standard_normal((200, M))
                + drift * (np.arange(M) / (M - 1) - 0.5), -32768, 32767).astype("int16")
    top = np.flatnonzero(x[0] == 32767)
    assert top.size >= 7 and np.all(np.diff(top) == 1)  # really clipped
    prof = time_zero_profile(_write(tmp_path / "clip.h5", x))
    assert prof["time_zero_sample"] == pytest.approx(pick, abs=0.5)
    assert prof["time_zero_spread"] <= DT
