"""The chain framework: stage registry, Chain semantics (look-ahead stages too),
TOML parsing and its errors, process_recording on real recording files, the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine import emi
from demine.cli import main
from demine.errors import ConfigError
from demine.process import (
    Chain,
    Stage,
    available_stages,
    default_chain,
    get_stage,
    load_chain,
    process_recording,
    register_stage,
    run_stage,
)
from demine.recording import Recording, RecordingWriter

DATA = Path(__file__).parents[1].parent / "shared" / "data"
GATES = np.geomspace(1e-5, 1e-3, 16)


@register_stage
class _Lag(Stage):
    """Test stage with look-ahead: output frame k = input k + input k+lag
    (beyond the end, + 0), so it holds ``lag`` frames back until finish()."""

    name: ClassVar[str] = "test.lag"

    def __init__(self, lag: int = 2) -> None:
        super().__init__()
        if not isinstance(lag, int) or lag < 0:
            raise ConfigError(f"{self.name}: parameter 'lag' must be an integer >= 0")
        self.lag = lag
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._buf: np.ndarray | None = None

    def process(self, chunk: Any) -> np.ndarray:
        x = self._check(chunk, np.float64)
        buf = x if self._buf is None else np.concatenate([self._buf, x])
        k = max(0, buf.shape[0] - self.lag)
        out = buf[:k] + buf[self.lag:self.lag + k]
        self._buf = buf[k:]
        return out

    def finish(self) -> np.ndarray:
        buf = self._buf if self._buf is not None else np.empty((0, self._n_channels or 0))
        self._buf = None
        pad = np.concatenate([buf, np.zeros((self.lag, buf.shape[1]))])
        return buf + pad[self.lag:self.lag + buf.shape[0]]

    def params(self) -> dict[str, Any]:
        return {"lag": self.lag}


def lag_ref(x: np.ndarray, lag: int) -> np.ndarray:
    pad = np.concatenate([x, np.zeros((lag, x.shape[1]))])
    return x + pad[lag:lag + x.shape[0]]


# --------------------------------------------------------------------------------------
# registry and Chain
# --------------------------------------------------------------------------------------

def test_registry_finds_emi_stages_by_name():
    names = available_stages()
    for n in ("emi.soil", "emi.baseline", "emi.detect", "emi.notch", "test.lag"):
        assert n in names
    assert get_stage("emi.baseline") is emi.Baseline
    with pytest.raises(ConfigError, match="unknown processing step 'emi.nope'"):
        get_stage("emi.nope")


def test_register_rejects_nameless_and_duplicate():
    with pytest.raises(TypeError):
        register_stage(type("NoName", (Stage,), {}))
    with pytest.raises(ValueError, match="already registered"):
        register_stage(type("Other", (Stage,), {"name": "emi.baseline"}))


def test_chain_pipes_look_ahead_stages_and_keeps_frame_alignment():
    x = np.random.default_rng(0).normal(size=(30, 3))
    chain = Chain([_Lag(lag=2), _Lag(lag=3)])
    ref = lag_ref(lag_ref(x, 2), 3)
    np.testing.assert_allclose(run_stage(chain, x), ref)
    np.testing.assert_allclose(run_stage(chain, x, 1), ref)
    # the chain holds back while stages need look-ahead
    chain.reset()
    assert chain.process(x[:4]).shape[0] == 0
    assert chain.process(x[4:10]).shape[0] == 5
    assert chain.history() == [{"step": "test.lag", "params": {"lag": 2}},
                               {"step": "test.lag", "params": {"lag": 3}}]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), lags=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       sizes=st.lists(st.integers(0, 9), min_size=1, max_size=8).filter(lambda s: max(s) > 0),
       seed=st.integers(0, 1000))
def test_chain_of_look_ahead_stages_streaming_equals_batch(n, lags, sizes, seed):
    x = np.random.default_rng(seed).normal(size=(n, 2))
    chain = Chain([_Lag(lag=k) for k in lags])
    ref = x
    for k in lags:
        ref = lag_ref(ref, k)
    out = run_stage(chain, x, sizes)
    assert out.shape[0] == n
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_finish_is_shaped_like_the_output():
    """process() + finish() concatenate even when a stage changes the channel count."""
    x = np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32)
    for stage in (emi.Detect(), Chain([emi.Baseline(), emi.Detect()]),
                  Chain([_Lag(lag=2), emi.Detect(output="statistic")])):
        stage.reset()
        out = stage.process(x)
        tail = stage.finish()
        both = np.concatenate([out, tail])
        assert both.shape[0] == 20 and tail.shape[1] == out.shape[1]


def test_chain_mixing_emi_and_look_ahead_stage():
    x = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    chain = Chain([emi.Baseline(window=20, warmup=5), _Lag(lag=4), emi.Detect(warmup=5)])
    np.testing.assert_array_equal(run_stage(chain, x, [3, 1, 17]), run_stage(chain, x))


# --------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------

GOOD = """
[chain]
name = "t1"
kind = "emi"

[[step]]
name = "emi.baseline"
params = { window = 100, hold = 5 }

[[step]]
name = "emi.detect"
output = "statistic"
"""


def test_toml_chain_builds_with_both_param_styles(tmp_path):
    chain = load_chain(GOOD)
    assert chain.chain_name == "t1" and chain.kind == "emi"
    assert [s.name for s in chain] == ["emi.baseline", "emi.detect"]
    assert chain.steps[0].window == 100 and chain.steps[0].hold == 5
    assert chain.steps[1].output == "statistic"
    f = tmp_path / "c.toml"
    f.write_text(GOOD)
    assert load_chain(f).history() == chain.history()
    assert load_chain(str(f)).history() == chain.history()


@pytest.mark.parametrize("text,words", [
    ('[[step]]\nname = "emi.nope"\n', ["step 1", "emi.nope"]),
    ('[[step]]\nname = "emi.baseline"\n[[step]]\nname = "emi.detect"\nthreshhold = 3\n',
     ["step 2", "emi.detect", "threshhold"]),
    ('[[step]]\nname = "emi.baseline"\nwindow = -5\n', ["emi.baseline", "window"]),
    ('[[step]]\nname = "emi.baseline"\nwindow = "slow"\n', ["window"]),
    ('[[step]]\nname = "emi.baseline"\nwindow = 5\nparams = {window = 6}\n',
     ["window", "twice"]),
    ('[[step]]\nwindow = 5\n', ["step 1", "no 'name'"]),
    ('[chain]\nname = "x"\n', ["no [[step]]"]),
    ('[chain]\nkindd = "emi"\n[[step]]\nname = "emi.detect"\n', ["kindd"]),
    ('[[steps]]\nname = "emi.detect"\n', ["steps"]),
    ('[[step]]\nname = "emi.detect"\nparams = 3\n', ["params"]),
    ('[[step]]\nname = \n', ["invalid TOML"]),
    ('[[step]]\nname = "chain"\n', ["step 1"]),
])
def test_toml_errors_name_the_culprit(text, words):
    with pytest.raises(ConfigError) as exc:
        load_chain(text)
    for w in words:
        assert w in str(exc.value)


def test_missing_chain_file_and_unknown_packaged_chain(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_chain(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="no packaged chain"):
        load_chain("no_such_chain")


def test_packaged_emi_chain_loads_and_is_streaming_invariant():
    chain = default_chain("emi_default")
    assert chain.kind == "emi"
    assert [s.name for s in chain][:1] == ["emi.soil"]
    chain.configure({"gate_times": GATES, "sample_rate": 1000.0})
    x = np.random.default_rng(2).normal(size=(500, 16)).astype(np.float32) + 1e-5 / GATES
    np.testing.assert_array_equal(run_stage(chain, x, [7, 1, 64]), run_stage(chain, x))


def test_every_packaged_chain_parses():
    import importlib.resources as r

    names = [p.name[:-5] for p in r.files("demine").joinpath("chains").iterdir()
             if p.name.endswith(".toml")]
    assert "emi_default" in names
    for n in names:
        try:
            chain = default_chain(n)
        except ConfigError as exc:  # a stage family (gpr) that is not installed yet
            if "unknown processing step" in str(exc):
                pytest.skip(f"{n}: {exc}")
            raise
        assert len(chain) >= 1


# --------------------------------------------------------------------------------------
# recordings
# --------------------------------------------------------------------------------------

def write_emi_recording(path: Path, n: int = 3000) -> np.ndarray:
    target = (n // 2, n // 2 + max(20, n // 15))  # (1500, 1700) for n = 3000
    rng = np.random.default_rng(4)
    h = 1 + 0.3 * np.sin(np.arange(n) / 60)
    x = rng.normal(scale=0.01, size=(n, 16)) + (1e-5 / GATES)[None] / h[:, None] ** 3
    x[target[0]:target[1]] += np.hanning(target[1] - target[0])[:, None] * np.exp(
        -GATES / 2e-4)[None]
    x = x.astype(np.float32)
    with RecordingWriter(path, site="test lane") as w:
        s = w.add_stream("emi", "emi", gate_times=GATES, units="V")
        g = w.add_stream("gps", "gps")
        t = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
        for i in range(0, n, 700):  # appended in pieces like a live recording
            s.append(x[i:i + 700], time=t[i:i + 700])
        g.append(time=t[::100], lon=np.zeros(len(t[::100])), lat=np.zeros(len(t[::100])),
                 alt=np.zeros(len(t[::100])))
    return x


def test_process_recording_writes_derived_with_history(tmp_path):
    src = tmp_path / "raw.h5"
    x = write_emi_recording(src)
    raw_bytes = src.read_bytes()
    out = tmp_path / "out.h5"
    done = process_recording(src, "emi_default", out, chunk_frames=777)
    assert done == {"emi": "/derived/emi/emi_default"}
    assert src.read_bytes() == raw_bytes  # raw untouched
    with Recording(out) as rec:
        np.testing.assert_array_equal(rec.streams["emi"].samples, x)  # raw copied as is
        g = rec.derived()["emi/emi_default"]
        data = g["data"][()]
        hist = json.loads(g.attrs["history"])
        assert g.attrs["software_version"]
        np.testing.assert_array_equal(g["time"][()], rec.streams["emi"].time)
    assert [h["step"] for h in hist] == ["emi.soil", "emi.baseline", "emi.matched"]
    assert hist[0]["params"]["gate_times"] == pytest.approx(list(GATES))
    # same numbers as the chain run in memory in one call
    chain = default_chain("emi_default")
    chain.configure({"gate_times": GATES, "sample_rate": 1000.0})
    np.testing.assert_array_equal(data, run_stage(chain, x))
    # the target stands out in the statistic column
    stat = data[:, -1]
    assert stat[1580:1620].min() > 5 * np.median(stat[300:1400])


def test_process_recording_refuses_to_clobber_and_adds_in_place(tmp_path):
    src = tmp_path / "raw.h5"
    write_emi_recording(src, n=400)
    out = tmp_path / "out.h5"
    process_recording(src, "emi_default", out)
    with pytest.raises(ConfigError, match="exists"):
        process_recording(src, "emi_default", out)
    # in place: raw stream untouched, a second derived dataset added
    before = Recording(out).streams["emi"].samples
    process_recording(out, load_chain(GOOD), out, name="stat_only")
    with Recording(out) as rec:
        assert sorted(rec.derived()) == ["emi/emi_default", "emi/stat_only"]
        assert rec.derived()["emi/stat_only"]["data"].shape == (400, 1)
        np.testing.assert_array_equal(rec.streams["emi"].samples, before)
    with pytest.raises(ConfigError, match="no stream 'nope'"):
        process_recording(src, "emi_default", tmp_path / "o2.h5", streams=["nope"])
    assert not (tmp_path / "o2.h5").exists()


def test_streamed_derived_layout_equals_write_derived(tmp_path):
    """process_recording streams output into the copy chunk by chunk; the group
    it writes must equal the one recording.write_derived writes (in-place path)."""
    src = tmp_path / "raw.h5"
    write_emi_recording(src, n=1000)
    streamed = tmp_path / "streamed.h5"
    process_recording(src, "emi_default", streamed, chunk_frames=300)
    inplace = tmp_path / "inplace.h5"
    inplace.write_bytes(src.read_bytes())
    process_recording(inplace, "emi_default", inplace)

    def describe(path):
        with h5py.File(path, "r") as f:
            g = f["derived/emi/emi_default"]
            d = g["data"]
            return {
                "keys": sorted(g.keys()),
                "attrs": sorted(set(g.attrs) - {"created_utc"}),
                "history": g.attrs["history"],
                "dims": [[s.name.rsplit("/", 1)[-1] for s in dim.values()] for dim in d.dims],
                "time_units": g["time"].attrs["units"],
                "data": d[()],
                "time": g["time"][()],
                "channel": g["channel"][()],
            }

    a, b = describe(streamed), describe(inplace)
    np.testing.assert_array_equal(a.pop("data"), b.pop("data"))
    np.testing.assert_array_equal(a.pop("time"), b.pop("time"))
    np.testing.assert_array_equal(a.pop("channel"), b.pop("channel"))
    assert a == b
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(streamed, engine="h5netcdf", group="derived/emi/emi_default") as ds:
        assert ds["data"].shape == (1000, 18)  # 16 gates, shape novelty, statistic


@register_stage
class _Decimate(Stage):
    """Test stage that keeps every second frame (changes the frame count)."""

    name: ClassVar[str] = "test.decimate"
    resamples: ClassVar[bool] = True

    def process(self, chunk: Any) -> np.ndarray:
        return self._check(chunk)[::2]


def test_process_recording_refuses_frame_count_changing_steps(tmp_path):
    src = tmp_path / "raw.h5"
    write_emi_recording(src, n=100)
    chain = Chain([emi.Baseline(), _Decimate()], kind="emi")
    assert chain.resamples and not Chain([emi.Baseline()]).resamples
    with pytest.raises(ConfigError, match=r"step 2 \(test.decimate\) changes the number"):
        process_recording(src, chain, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


def test_process_recording_needs_notch_rate_from_time_axis(tmp_path):
    src = tmp_path / "raw.h5"
    write_emi_recording(src, n=400)
    chain = load_chain('[chain]\nkind="emi"\nname="n"\n[[step]]\nname="emi.notch"\nfreq=60\n')
    process_recording(src, chain, tmp_path / "o.h5")
    with h5py.File(tmp_path / "o.h5") as f:
        hist = json.loads(f["derived/emi/n"].attrs["history"])
    assert hist[0]["params"]["sample_rate"] == pytest.approx(1000.0)


def test_cli_process(tmp_path, capsys):
    src = tmp_path / "raw.h5"
    write_emi_recording(src, n=300)
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    out = tmp_path / "o.h5"
    assert main(["process", str(src), "--config", str(cfg), "--config", "emi_default",
                 "--out", str(out)]) == 0
    with Recording(out) as rec:
        assert sorted(rec.derived()) == ["emi/emi_default", "emi/t1"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\nname = "emi.baseline"\nwindoww = 3\n')
    assert main(["process", str(src), "--config", str(bad), "--out",
                 str(tmp_path / "o3.h5")]) == 2
    err = capsys.readouterr().err
    assert "windoww" in err and "bad.toml" in err and len(err.strip().splitlines()) == 1
    assert main(["process", "--list-steps"]) == 0
    assert "emi.detect" in capsys.readouterr().out


RD3 = DATA / "landmine" / "iwagpr2017-rd3-subset" / "buried_objects_xdir_bscan_19.rd3"


@pytest.mark.skipif(not RD3.exists(), reason="shared data not present")
def test_gpr_default_chain_on_real_rd3_bscan(tmp_path):
    """A real radar B-scan (MALÅ RD3, int16) recorded through RecordingWriter and
    processed with the packaged GPR chain, streaming in small chunks."""
    try:
        chain = default_chain("gpr_default")
    except ConfigError as exc:
        pytest.skip(f"GPR stages not available: {exc}")
    header = dict(line.split(":", 1) for line in RD3.with_suffix(".rad").read_text(
        errors="replace").splitlines() if ":" in line)
    ns = int(header["SAMPLES"])
    traces = np.fromfile(RD3, dtype="<i2").reshape(-1, ns)
    dt = 1e-6 / float(header["FREQUENCY"])
    src = tmp_path / "gpr.h5"
    with RecordingWriter(src) as w:
        s = w.add_stream("gpr", "gpr", n_channels=ns, dtype="int16", sample_interval=dt)
        s.append(traces, time=np.arange(len(traces), dtype=np.int64) * 2_500_000)
    out = tmp_path / "o.h5"
    process_recording(src, chain, out, chunk_frames=7)
    with Recording(out) as rec:
        data = rec.derived()["gpr/" + (chain.chain_name or "processed")]["data"][()]
    assert data.shape[0] == traces.shape[0]
    assert np.isfinite(data).all()
    chain.reset()
    chain.configure({"sample_interval": dt, "n_channels": ns, "kind": "gpr",
                     "sample_rate": 400.0})
    np.testing.assert_allclose(data, run_stage(chain, traces), rtol=1e-5, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 160), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8)
       .filter(lambda s: max(s) > 0), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(["int16", "int32", "float32"]))
def test_packaged_gpr_chain_streaming_equals_batch(n, sizes, seed, dtype):
    try:
        chain = default_chain("gpr_default")
    except ConfigError as exc:
        pytest.skip(f"GPR stages not available: {exc}")
    rng = np.random.default_rng(seed)
    x = (rng.normal(scale=3000, size=(n, 128)) + 500).astype(dtype)
    chain.configure({"sample_interval": 16e-9 / 128, "n_channels": 128, "kind": "gpr",
                     "sample_rate": 400.0})
    batch = run_stage(chain, x)
    assert batch.shape[0] == n
    chunked = run_stage(chain, x, sizes)
    np.testing.assert_allclose(chunked, batch, rtol=1e-5,
                               atol=1e-5 * float(np.abs(batch).max() or 1.0))


def test_default_chain_doc_is_a_fresh_editable_copy():
    from demine.process import default_chain, default_chain_doc, load_chain

    doc = default_chain_doc("emi_default")
    soil = next(s for s in doc["step"] if s["name"] == "emi.soil")
    assert soil.get("learn") is True
    soil["learn"] = False
    edited = load_chain(doc)
    assert next(s for s in edited.steps if s.name == "emi.soil").learn is False
    # the packaged chain itself is untouched
    assert next(s for s in default_chain("emi_default").steps if s.name == "emi.soil").learn
    assert default_chain_doc("emi_default") != doc
    with pytest.raises(ConfigError, match="no packaged chain"):
        default_chain_doc("no_such_chain")


def test_reference_rate_scales_frame_counts_once_and_is_checked():
    """A chain with a reference rate scales its steps' frame counts to the
    stream's rate before the first chunk; configured again for another rate
    after processing began it refuses (its state is sized by them), and a
    bad reference rate is named."""
    doc = {"chain": {"reference_rate": 1000.0},
           "step": [{"name": "emi.baseline", "window": 2000.0, "hold": 200},
                    {"name": "emi.matched", "window": 31}]}
    chain = load_chain(doc)
    chain.configure({"sample_rate": 250.0})
    base, matched = chain.steps
    assert (base.window, base.hold, matched.window) == (500.0, 50, 8)
    chain.configure({"sample_rate": 250.0})  # the same rate again: unchanged
    assert (base.window, matched.window) == (500.0, 8)
    chain.process(np.zeros((10, 4), dtype=np.float32))
    chain.configure({"sample_rate": 250.0})
    with pytest.raises(ConfigError, match="reading rate changed after processing began"):
        chain.configure({"sample_rate": 1000.0})
    # no reference rate: frame counts as written at any rate
    plain = load_chain({"step": doc["step"]})
    plain.configure({"sample_rate": 250.0})
    assert plain.steps[1].window == 31
    with pytest.raises(ConfigError, match=r"\[chain\].*reference_rate"):
        load_chain({"chain": {"reference_rate": -1.0}, "step": doc["step"]})


def test_a_chain_reset_for_another_stream_takes_that_streams_facts():
    """From the session-28 API audit: a chain re-used for a second stream
    (reset, then configure with its facts) had kept the first stream's gate
    times (EMI) and sample interval (the radar band-pass), in its output and
    its history."""
    rng = np.random.default_rng(0)
    gates_a = np.geomspace(12e-6, 1e-3, 16)
    gates_b = np.geomspace(50e-6, 5e-3, 16)
    emi_data = (1e-3 / gates_a[None, :] * rng.uniform(0.5, 2, (3000, 1))
                + rng.standard_normal((3000, 16))).astype("f4")
    ctx = {"sample_rate": 1000.0, "n_channels": 16, "kind": "emi"}
    gpr_data = rng.standard_normal((300, 256)).astype("f4")
    gctx = {"sample_rate": 400.0, "n_channels": 256, "kind": "gpr", "frequency": 1.5e9}
    for name, data, a, b in (
            ("emi_default", emi_data, {**ctx, "gate_times": gates_a},
             {**ctx, "gate_times": gates_b}),
            ("gpr_default", gpr_data, {**gctx, "sample_interval": 3.125e-11},
             {**gctx, "sample_interval": 1.5625e-11})):
        chain = default_chain(name)
        chain.configure(a)
        out_a = run_stage(chain, data)
        chain.reset()
        chain.configure(b)
        out_b = run_stage(chain, data)
        fresh = default_chain(name)
        fresh.configure(b)
        np.testing.assert_array_equal(out_b, run_stage(fresh, data), err_msg=name)
        assert not np.array_equal(out_a, out_b, equal_nan=True), name
        assert chain.history() == fresh.history(), name
    # once processing has begun, another stream's facts are refused, not mixed in
    chain = default_chain("emi_default")
    chain.configure({**ctx, "gate_times": gates_a})
    chain.process(emi_data[:100])
    with pytest.raises(ConfigError, match="gate"):
        chain.configure({**ctx, "gate_times": gates_b})
    # the stage itself, re-used after reset(), takes the new stream's gate times
    soil = emi.SoilCompensation()
    soil.configure({"gate_times": gates_a})
    soil.process(emi_data[:100])
    soil.reset()
    soil.configure({"gate_times": gates_b})
    assert soil.gate_times == pytest.approx(gates_b)
    # gate times given as a parameter stay
    mine = emi.SoilCompensation(gate_times=gates_a)
    mine.configure({"gate_times": gates_b})
    assert mine.gate_times == pytest.approx(gates_a)


def test_process_recording_works_beside_other_files(tmp_path):
    """From the session-28 API audit: the copy was made through a fixed
    ``OUT.tmp``, replacing a user's file of that name; and an output in a
    directory that does not exist was a bare FileNotFoundError."""
    src = tmp_path / "raw.h5"
    write_emi_recording(src)
    mine = tmp_path / "out.h5.tmp"
    mine.write_text("a file of the user's")
    plain = tmp_path / "plain"
    plain.write_text("")
    out = tmp_path / "out.h5"
    process_recording(src, "emi_default", out)
    assert mine.read_text() == "a file of the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "out.h5.tmp", "plain",
                                                          "raw.h5"]
    assert out.stat().st_mode == plain.stat().st_mode   # (made as any new file is)
    with pytest.raises(ConfigError, match="no directory .* to write it in"):
        process_recording(src, "emi_default", tmp_path / "none" / "out.h5")


def test_the_module_docstrings_chain_loads_and_a_chain_object_is_taken():
    """From the session-28 API audit: the TOML example of ``demine.process``
    gave ``emi.detect`` a parameter it does not have; ``StreamDetector`` (whose
    docstring takes a Chain) had parsed a Chain object's text as TOML."""
    import demine.process as proc
    from demine.pipeline import StreamDetector

    example = proc.__doc__.split("(:func:`load_chain`)::")[1]
    chain = load_chain("\n".join(line[4:] for line in example.splitlines()))
    assert [s.name for s in chain.steps] == ["emi.baseline", "emi.detect"]
    built = default_chain("emi_default")
    ctx = {"gate_times": np.geomspace(12e-6, 1e-3, 16), "sample_rate": 1000.0}
    det = StreamDetector("emi", ctx, built)
    assert det.chain is not built and det.chain.history() != built.history()  # (a copy)
    assert det.chain.history() == StreamDetector("emi", ctx, "emi_default").chain.history()
    with pytest.raises(ConfigError, match="give a Chain, a TOML file path.* not a int"):
        load_chain(42)


def test_configuring_again_keeps_the_users_edits_and_stage_objects():
    """From the review of the fix above: restarting the chain from copies of
    its steps lost a parameter the user set after a first configure (the
    derived history said 4.0 where 6.0 had been set), and failed on a stage
    that cannot be copied."""
    import threading

    @register_stage
    class _Locked(Stage):
        name = "test.locked"

        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

        def process(self, chunk):
            return self._check(chunk)

    gates = np.geomspace(12e-6, 1e-3, 16)
    ctx = {"gate_times": gates, "sample_rate": 1000.0}
    chain = default_chain("emi_default")
    chain.configure(ctx)
    soil = chain.steps[0]
    chain.steps[1].threshold = 6.0
    chain.configure({**ctx, "gate_times": gates * 2})
    assert chain.steps[0] is soil and soil.gate_times == pytest.approx(gates * 2)
    assert chain.history()[1]["params"]["threshold"] == 6.0
    locked = load_chain({"step": [{"name": "test.locked"}]})
    locked.configure(ctx)
    locked.configure(ctx)
    assert run_stage(locked, np.ones((3, 2))).shape == (3, 2)


def test_stream_facts_are_cleared_kept_or_refused_as_a_fresh_stage_would_be():
    """From the second review: a re-used chain whose next stream gives no gate
    times (or sample interval) had processed with the first stream's; a value
    set by hand after configure was replaced by the stream's; a notch whose new
    rate it cannot design for kept its old filter at a second configure; a
    fused chain without a band could not give its filter after configure."""
    from demine import gpr
    from demine.errors import MissingCalibrationError

    gates = np.geomspace(12e-6, 1e-3, 16)
    emi_data = np.random.default_rng(0).standard_normal((300, 16)).astype("f4")
    chain = default_chain("emi_default")
    chain.configure({"gate_times": gates, "sample_rate": 1000.0})
    run_stage(chain, emi_data)
    chain.reset()
    chain.configure({"sample_rate": 1000.0})     # a stream that gives no gate times
    with pytest.raises(MissingCalibrationError, match="gate times unknown"):
        run_stage(chain, emi_data)
    band = gpr.BandPass(low=5e8, high=3e9)
    band.configure({"sample_interval": 3.125e-11})
    band.reset()
    band.configure({})
    assert band.sample_interval is None
    # set by hand after configure: given, kept at the next configure
    band.configure({"sample_interval": 3.125e-11})
    band.sample_interval = 2.5e-11
    band.configure({"sample_interval": 3.125e-11})
    assert band.sample_interval == 2.5e-11
    # a refused rate changes nothing, however often it is given
    notch = emi.MainsNotch()
    notch.configure({"sample_rate": 1000.0})
    sos = notch.sos.copy()
    for _ in range(2):
        with pytest.raises(ConfigError, match="aliases to the Nyquist"):
            notch.configure({"sample_rate": 100.0})
    assert notch.sample_rate == 1000.0 and np.array_equal(notch.sos, sos)
    # a notch given its rate keeps it, whatever the stream's
    fixed = emi.MainsNotch(sample_rate=1000.0)
    fixed.configure({"sample_rate": 100.0})
    assert fixed.sample_rate == 1000.0
    # a fused chain without a band keeps its (empty) filter
    fused = gpr.FusedChain(dewow_window=5, background_window=7, low=None, high=None)
    fused.configure({"sample_interval": 3.125e-11})
    assert fused.sos.shape == (0, 6)


def test_a_chain_that_has_processed_is_given_to_a_detector_as_new():
    # (from review: its copy kept the old stream's state, and refused another rate)
    from demine.pipeline import StreamDetector

    gates = np.geomspace(12e-6, 1e-3, 16)
    chain = default_chain("emi_default")
    chain.steps.insert(0, emi.MainsNotch())
    chain.configure({"gate_times": gates, "sample_rate": 1000.0})
    run_stage(chain, np.random.default_rng(0).standard_normal((300, 16)).astype("f4"))
    det = StreamDetector("emi", {"gate_times": gates, "sample_rate": 500.0}, chain)
    assert det.chain.steps[0].sample_rate == 500.0


def test_process_of_a_file_still_being_recorded_names_it(tmp_path):
    # (the message had named an internal copy, '.out.h5.<hex>.tmp', and suggested h5clear)
    from demine.errors import RecordingError

    src = tmp_path / "live.h5"
    with RecordingWriter(src) as w:
        s = w.add_stream("emi", "emi", gate_times=GATES)
        n = 3000
        s.append(np.zeros((n, GATES.size), np.float32),
                 time=1_790_000_000_000_000_000 + np.arange(n) * 1_000_000,
                 x=np.zeros(n), y=np.zeros(n), z=np.full(n, 0.05))
        w.flush()
        with pytest.raises(RecordingError, match=r"live.h5: still open for writing by its "
                           r"recorder"):
            process_recording(src, "emi_default", tmp_path / "out.h5")
    assert not list(tmp_path.glob(".out.h5.*"))   # (the copy removed)
    assert process_recording(src, "emi_default", tmp_path / "out.h5")   # once closed


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_process_refuses_to_rename_its_output_over_a_pipe(tmp_path):
    src = tmp_path / "raw.h5"
    write_emi_recording(src)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        process_recording(src, "emi_default", fifo, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not list(tmp_path.glob(".fifo.*"))
