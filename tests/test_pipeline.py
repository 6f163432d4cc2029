"""Detection pipeline: chain + detector per stream, live chunks equal batch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_positions import _cart, _swings

from demine.errors import ConfigError
from demine.pipeline import StreamDetector, concat_alarms, detect_recording, load_detect_config
from demine.process import _calibration_context, _stream_context
from demine.recording import Recording


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    from demine.simulate import simulate_lane

    path = tmp_path_factory.mktemp("pipeline") / "lane.h5"
    simulate_lane("benign-soil", 40.0, seed=3, streams=("emi", "gps")).write(path)
    return path


def _emi_detector(rec):
    s = rec.streams["emi"]
    return s, StreamDetector("emi", _stream_context(s))


def test_batch_finds_alarms_with_positions(lane):
    alarms = detect_recording(lane, {"gpr": {"enabled": False}})
    assert len(alarms["x"]) >= 1
    assert set(alarms["stream"]) == {"emi"}
    assert np.all(np.isfinite(alarms["x"])) and np.all(np.isfinite(alarms["score"]))
    assert np.all(np.diff(alarms["time"]) >= 0)


@settings(max_examples=4, deadline=None)
@given(cuts=st.lists(st.integers(1, 40_000), min_size=1, max_size=12))
def test_live_chunks_give_the_batch_alarms(lane, cuts):
    batch = detect_recording(lane, {"gpr": {"enabled": False}})
    with Recording(lane) as rec:
        s, det = _emi_detector(rec)
        d = s.read(fields=["samples", "x", "y", "time"])
        n = len(s)
        edges = sorted({0, n, *(c % n for c in cuts)})
        parts = [det.process(d["samples"][a:b], d["x"][a:b], d["y"][a:b], d["time"][a:b])
                 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        parts.append(det.finish())
    live = concat_alarms(parts)
    assert len(live["x"]) == len(batch["x"])
    np.testing.assert_allclose(live["x"], batch["x"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(live["score"], batch["score"], rtol=1e-5)
    np.testing.assert_array_equal(live["time"], batch["time"])


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown section"):
        load_detect_config({"sonar": {}})
    with pytest.raises(ConfigError, match=r"\[emi\]: unknown key"):
        load_detect_config({"emi": {"chains": "x"}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[emi\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_detect_config(bad)
    cfg = load_detect_config({"emi": {"detector": {"threshold": 7.0}}})
    assert cfg["emi"]["detector"] == {"threshold": 7.0} and cfg["gpr"]["chain"] == "gpr_default"
    ctx = {"sample_interval": 3.125e-11, "time_zero": 1e-9}
    with pytest.raises(ConfigError, match=r"\[gpr.detector.merge\]: .*'radius_m'"):
        StreamDetector("gpr", ctx, detector={"merge": {"radius_m": 0.2}})
    with pytest.raises(ConfigError, match=r"\[gpr.detector.merge\]: release_passes"):
        StreamDetector("gpr", ctx, detector={"merge": {"release_passes": -1}})


def test_cli_detect_writes_csv_and_table(lane, tmp_path):
    import shutil
    import subprocess
    import sys

    from demine.evaluate import read_alarms_csv

    rec = tmp_path / "copy.h5"
    shutil.copy(lane, rec)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[gpr]\nenabled = false\n")
    out = tmp_path / "alarms.csv"
    proc = subprocess.run([sys.executable, "-m", "demine", "detect", str(rec), "--config",
                           str(cfg), "--out", str(out), "--write"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    batch = detect_recording(lane, cfg)
    n = len(batch["x"])
    assert f"{n} alarms" in proc.stdout
    # each row names its kind (the shape-novelty alarms are scored apart)
    assert proc.stdout.count("emi-alarm") + proc.stdout.count("emi-shape-alarm") == n
    csv_alarms = read_alarms_csv(out)
    np.testing.assert_allclose(csv_alarms["x"], batch["x"])
    with Recording(rec) as r:
        assert len(r.table("alarms")) == n
        np.testing.assert_allclose(r.alarms["score"], batch["score"])
    bad = subprocess.run([sys.executable, "-m", "demine", "detect", str(rec), "--stream", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no stream 'nope'" in bad.stderr


def test_cli_prints_demine_warnings_as_one_line(tmp_path):
    """A warning of demine's (here: a radar stream without a time zero) reaches the
    user of the command line as one line naming the command, as errors do, not
    as Python's two-line warning with a source path."""
    import subprocess
    import sys

    from demine.recording import RecordingWriter

    path = tmp_path / "bare.h5"
    rng = np.random.default_rng(0)
    with RecordingWriter(path) as w:
        s = w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=3.125e-11)
        s.append(rng.integers(-50, 50, (400, 64), dtype=np.int16),
                 time=np.arange(400, dtype=np.int64) * 2_500_000, x=np.linspace(0, 1, 400),
                 y=np.zeros(400))
    proc = subprocess.run([sys.executable, "-m", "demine", "detect", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["demine detect: warning: GPR stream 'gpr' gives no time zero (calibration "
                     "'time_zero'): apex times and depths count from its first sample; give "
                     "[gpr.detector] time_zero, or record with a calibration profile"]


def test_spatial_merger_one_alarm_per_object_any_chunking():
    from demine.pipeline import SpatialMerger

    rng = np.random.default_rng(0)
    # Two objects, each seen on 6 passes 1.5 s apart with 3 cm scatter, plus a
    # far-away single detection.
    t, x, y, s = [], [], [], []
    for k in range(6):
        for ox, oy in ((0.3, 0.3), (0.8, 0.35)):
            t.append(int((k * 1.5 + ox) * 1e9))
            x.append(ox + 0.03 * rng.standard_normal())
            y.append(oy + 0.03 * rng.standard_normal())
            s.append(10.0 + k)
    t.append(int(20e9))
    x.append(0.5)
    y.append(2.0)
    s.append(4.0)
    a = {"time": np.array(t), "x": np.array(x), "y": np.array(y), "score": np.array(s),
         "depth": np.full(len(t), 0.1)}

    def run(cuts):
        m = SpatialMerger(radius=0.2, release_time=3.0)
        rows = []
        edges = sorted({0, len(t), *cuts})
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            rows += m.process({k: v[lo:hi] for k, v in a.items()}, int(a["time"][hi - 1]))
        return sorted(rows + m.finish(), key=lambda r: r["time"])

    whole = run([])
    assert len(whole) == 3
    assert [r["n_passes"] for r in whole] == [6, 6, 1]
    assert abs(whole[0]["x"] - 0.3) < 0.05 and abs(whole[1]["x"] - 0.8) < 0.05
    assert whole[0]["score"] == 15.0
    for cuts in ([1], [3, 7], list(range(1, 13))):
        assert run(cuts) == whole


def _passes(objects, n_passes, spread, rng):
    """Per-pass radar alarms of a hand-held sweep: each object is crossed by
    ``n_passes`` passes advancing along y, its score falling off with the
    pass's offset from the object (the strongest pass right over it)."""
    t, x, y, s = [], [], [], []
    for k in range(n_passes):
        off = (k - (n_passes - 1) / 2) * spread
        for ox, oy, peak in objects:
            t.append(int((k * 1.0 + ox) * 1e9))
            x.append(ox + 0.005 * rng.standard_normal())
            y.append(oy + off)
            s.append(peak * np.exp(-0.5 * (off / 0.04) ** 2))
    o = np.argsort(t, kind="stable")
    return {"time": np.array(t)[o], "x": np.array(x)[o], "y": np.array(y)[o],
            "score": np.array(s)[o], "depth": np.full(len(t), 0.1)}


def test_spatial_merger_splits_two_objects_in_one_cluster():
    """A weak object 0.15 m from a strong one keeps its own alarm when the
    merger splits clusters by prominence; one object crossed by many passes
    stays one alarm; without link_radius the cluster is one alarm."""
    from demine.pipeline import SpatialMerger

    rng = np.random.default_rng(1)
    pair = _passes([(0.5, 0.5, 60.0), (0.5, 0.65, 20.0)], 9, 0.02, rng)
    one = _passes([(0.5, 0.5, 60.0)], 9, 0.02, rng)

    def run(a, **kw):
        m = SpatialMerger(radius=0.2, release_time=3.0, **kw)
        return sorted(m.process(a, None) + m.finish(), key=lambda r: -r["score"])

    old = run(pair)
    assert len(old) == 1
    new = run(pair, link_radius=0.05, split=2.0)
    assert len(new) == 2
    assert abs(new[0]["y"] - 0.5) < 0.02 and abs(new[1]["y"] - 0.65) < 0.02
    assert new[0]["score"] == pytest.approx(60.0) and new[1]["score"] == pytest.approx(20.0)
    assert sum(r["n_passes"] for r in new) == len(pair["x"])
    assert len(run(one, link_radius=0.05, split=2.0)) == 1
    # stray single passes join their neighbour instead of becoming objects
    lone = {k: np.concatenate([v, v[:1]]) for k, v in one.items()}
    lone["x"][-1] = 0.6
    lone["score"][-1] = 50.0
    assert len(run(lone, link_radius=0.05, split=2.0, min_members=2)) == 1
    with pytest.raises(ConfigError, match="split"):
        SpatialMerger(split=0.5)


def _cart_path():
    """Four cart lines 0.1 m apart from x = 0.05, 2 m at 0.5 m/s (4 s a line);
    x, y (m) and time (ns)."""
    x, y, t = _cart(4, length=2.0, spacing=0.1, speed=0.5, turn=0.5, rate=100.0, x0=0.05)
    return x, y, np.round(t * 1e9).astype(np.int64)


def _sweep_path():
    """A hand-held sweep over 1 m, swings of 1.43 s advancing 4 cm; x, y, time (ns)."""
    x, y, t = _swings(36.0, rate=100.0)
    return x, y, np.round(t * 1e9).astype(np.int64)


def _line_alarms(path, objects, reach):
    """The alarms a line detector reports: one per pass over each object (at
    the frame nearest to it along the pass), while the pass comes within
    ``reach`` of it, scored by that distance."""
    x, y, t = path
    rows = []
    turn = np.flatnonzero(np.diff(np.sign(np.diff(y + x))) != 0)
    edges = [0, *(turn + 1).tolist(), x.size]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        for ox, oy, peak in objects:
            d = np.hypot(x[lo:hi] - ox, y[lo:hi] - oy)
            if d.size == 0:
                continue
            i = lo + int(np.argmin(d))
            if d[i - lo] <= reach:
                rows.append((t[i], x[i], y[i], peak * np.exp(-0.5 * (d[i - lo] / 0.06) ** 2)))
    rows.sort()
    return {"time": np.array([r[0] for r in rows], dtype=np.int64),
            "x": np.array([r[1] for r in rows]), "y": np.array([r[2] for r in rows]),
            "score": np.array([r[3] for r in rows]), "depth": np.full(len(rows), 0.1)}


def _merge_streaming(path, alarms, cuts, lag=0.5, **kw):
    """Feed a merger the path and the alarms in chunks cut at frames ``cuts``,
    each alarm ``lag`` s after its frame (a detector's look-ahead)."""
    from demine.pipeline import SpatialMerger

    x, y, t = path
    m = SpatialMerger(**kw)
    rows, fed = [], 0
    edges = sorted({0, x.size, *[c for c in cuts if 0 < c < x.size]})
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m.track(x[lo:hi], y[lo:hi], t[lo:hi], 100.0)
        now = int(t[hi - 1] - lag * 1e9)
        upto = int(np.searchsorted(alarms["time"], now, side="right"))
        rows += m.process({k: v[fed:upto] for k, v in alarms.items()}, now)
        fed = max(fed, upto)
    rows += m.process({k: v[fed:] for k, v in alarms.items()}, None) + m.finish()
    return sorted(rows, key=lambda r: (r["time"], r["x"]))


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_spatial_merger_waits_for_a_carts_next_lines(cuts):
    """A cart's lines come back over an object only a whole line later: the
    merger waits ``release_passes`` passes (measured on the path) and gives one
    alarm per object, not one per line, in any chunking; objects on the first
    line wait until its duration is known.  Without the wait (release_passes
    0), each line's alarm is released on its own."""
    path = _cart_path()
    objects = [(0.08, 0.5, 50.0), (0.3, 0.8, 80.0)]
    alarms = _line_alarms(path, objects, reach=0.12)
    # lines 0.05 and 0.15 over the first, 0.25 and 0.35 over the second
    assert alarms["x"].tolist() == pytest.approx([0.05, 0.15, 0.25, 0.35])
    whole = _merge_streaming(path, alarms, [])
    assert len(whole) == 2
    assert [r["n_passes"] for r in whole] == [2, 2]
    for r, (ox, oy, _) in zip(whole, objects, strict=True):
        assert abs(r["x"] - ox) < 0.04 and abs(r["y"] - oy) < 0.01
    assert _merge_streaming(path, alarms, cuts) == whole
    assert len(_merge_streaming(path, alarms, [], release_passes=0)) == 4


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_spatial_merger_keeps_a_sweeps_release_time(cuts):
    """A hand-held sweep's swings last less than ``release_time``: the pass
    rule changes nothing there (the alarms of the shipped sweep lanes are
    those of the fixed release), in any chunking."""
    path = _sweep_path()
    alarms = _line_alarms(path, [(0.3, 0.3, 60.0), (0.7, 0.5, 40.0)], reach=0.1)
    # a gap of 4 s without passes over the first object: two clusters either way
    keep = ~((alarms["x"] < 0.5) & (alarms["time"] > 9e9) & (alarms["time"] < 13e9))
    alarms = {k: v[keep] for k, v in alarms.items()}
    fixed = _merge_streaming(path, alarms, [], release_passes=0)
    assert len(fixed) == 3
    assert _merge_streaming(path, alarms, cuts) == fixed


_CART_SCENE = """
[scene]
name = "cart-two"
description = "a radar cart on four lines 0.1 m apart over two AP mines"
layout_seed = 3
[lane]
width = 0.4
length = 2.0
anchor_lon = 104.9176
anchor_lat = 12.5652
anchor_alt = 24.0
start_time = "2026-03-01T10:00:00Z"
[soil]
viscosity = 2.0e-6
conductivity = 0.004
moisture = 0.15
roughness = 0.002
radar_clutter_density = 10.0
[sweep]
pattern = "lines"
line_spacing = 0.1
speed = 0.5
height = 0.04
height_variation = 0.003
[[objects]]
id = "M01"
class = "ap-mine"
x = 0.20
y = 0.70
depth = 0.05
[[objects]]
id = "M02"
class = "ap-mine"
x = 0.15
y = 1.40
depth = 0.07
"""


def test_radar_cart_lines_give_one_alarm_per_mine_live_and_batch(tmp_path):
    """Through ``demine detect``'s path: a radar cart crossing each mine on two
    or three lines gives one alarm per mine, not one per line, and the live
    detector fed in chunks gives the same alarms."""
    from demine.simulate import load_scene, simulate_lane

    scene_file = tmp_path / "cart.toml"
    scene_file.write_text(_CART_SCENE)
    path = tmp_path / "cart.h5"
    simulate_lane(load_scene(scene_file), seed=0, streams=("gpr",)).write(path)
    cfg = {"emi": {"enabled": False}}
    batch = detect_recording(path, cfg)
    per_line = detect_recording(path, {**cfg, "gpr": {"detector": {"merge": {
        "release_passes": 0}}}})
    for mx, my in ((0.20, 0.70), (0.15, 1.40)):
        near = np.hypot(batch["x"] - mx, batch["y"] - my) < 0.12
        assert near.sum() == 1, (mx, my)
        assert (np.hypot(per_line["x"] - mx, per_line["y"] - my) < 0.12).sum() >= 2
    assert len(batch["x"]) < len(per_line["x"])
    with Recording(path) as rec:
        s = rec.streams["gpr"]
        det = StreamDetector("gpr", _stream_context(s))
        d = s.read(fields=["samples", "x", "y", "time"])
    n = d["x"].size
    edges = [0, 37, 1000, 1001, 2900, n // 2, n - 5, n]
    parts = [det.process(d["samples"][a:b], d["x"][a:b], d["y"][a:b], d["time"][a:b])
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    live = concat_alarms([*parts, det.finish()])
    for k in ("x", "y", "score", "time"):
        np.testing.assert_array_equal(np.sort(live[k]), np.sort(batch[k]))


def test_a_declared_transmitter_pulse_reaches_the_ground_balance(tmp_path):
    """A metal detector's pulse length in the stream's calibration sets the
    viscous decay its ground balance removes (1/t - 1/(t + T)), as the recorder
    passes the same calibration to the live chain; without it, 1/t."""
    from demine.recording import RecordingWriter

    gates = np.geomspace(1.2e-5, 1e-3, 16)
    pulse = 1.5e-4
    path = tmp_path / "emi.h5"
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=gates,
                     calibration={"coil_radius": 0.12, "pulse_length": pulse})
        w.add_stream("emi2", "emi", gate_times=gates, calibration={"coil_radius": 0.12})
    with Recording(path) as rec:
        ctx = _stream_context(rec.streams["emi"])
        ctx2 = _stream_context(rec.streams["emi2"])
    assert ctx["pulse_length"] == pulse and "pulse_length" not in ctx2
    want = 1.0 / gates - 1.0 / (gates + pulse)
    soil = StreamDetector("emi", ctx).chain.steps[0]
    assert soil.name == "emi.soil"
    np.testing.assert_allclose(soil.basis[:, 0], want / np.linalg.norm(want), rtol=1e-12)
    plain = StreamDetector("emi", ctx2).chain.steps[0]
    np.testing.assert_allclose(plain.basis[:, 0], (1 / gates) / np.linalg.norm(1 / gates),
                               rtol=1e-12)
    with pytest.raises(ConfigError, match="pulse_length"):
        _calibration_context({"pulse_length": -1e-4})


def test_stream_calibration_reaches_the_detectors(lane, tmp_path):
    """The radar's time zero and antenna height place the ground surface for the
    GPR detector, and the coil radius scales the EMI detector's distances:
    read from the stream's calibration, in batch as in the live recorder."""
    from demine.detect import MATCHED_PARAMS
    from demine.hyperbola import C0
    from demine.recording import RecordingWriter

    with Recording(lane) as rec:
        ctx = _stream_context(rec.streams["emi"])
        assert ctx["coil_radius"] == pytest.approx(0.12)
        det = StreamDetector("emi", ctx)
    # the reference coil keeps the tuned distances
    assert det.detector.depth_scale == pytest.approx(MATCHED_PARAMS["depth_scale"])
    assert det.detector.lobe_radius == pytest.approx(MATCHED_PARAMS["lobe_radius"])
    big = StreamDetector("emi", {**ctx, "coil_radius": 0.24})
    assert big.detector.lobe_radius == pytest.approx(2 * MATCHED_PARAMS["lobe_radius"])
    # a larger coil's footprint: a shape novelty farther away is still its object's own
    assert big.detector.shape_radius == pytest.approx(2 * MATCHED_PARAMS["shape_radius"])
    assert det.detector.shape_radius == pytest.approx(MATCHED_PARAMS["shape_radius"])
    assert big.detector.depth_scale == pytest.approx(MATCHED_PARAMS["depth_scale"])
    # an explicit detector parameter wins over the calibration
    assert StreamDetector("emi", {**ctx, "coil_radius": 0.24},
                          detector={"lobe_radius": 0.1}).detector.lobe_radius == 0.1

    path = tmp_path / "gpr.h5"
    with RecordingWriter(path) as w:
        w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=3.125e-11,
                     calibration={"time_zero": 1.0e-9, "antenna_height": 0.05})
    with Recording(path) as rec:
        ctx = _stream_context(rec.streams["gpr"])
    assert ctx["time_zero"] == 1.0e-9 and ctx["antenna_height"] == 0.05
    gdet = StreamDetector("gpr", ctx).detector
    assert gdet.t_surf == pytest.approx(1.0e-9 + 2 * 0.05 / C0)
    assert StreamDetector("gpr", ctx, detector={"time_zero": 0.0,
                                                "antenna_height": 0.0}).detector.t_surf == 0.0

    # without a time zero the surface sits at the first sample, and the user is told
    bare = tmp_path / "bare.h5"
    with RecordingWriter(bare) as w:
        w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=3.125e-11)
    with Recording(bare) as rec:
        ctx = _stream_context(rec.streams["gpr"])
    with pytest.warns(UserWarning, match="'gpr' gives no time zero"):
        assert StreamDetector("gpr", ctx).detector.t_surf == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StreamDetector("gpr", ctx, detector={"time_zero": 0.0})

    bad = tmp_path / "bad.h5"
    with RecordingWriter(bad) as w:
        w.add_stream("gpr", "gpr", n_channels=64, dtype="int16", sample_interval=3.125e-11,
                     calibration={"antenna_height": "high"})
    with Recording(bad) as rec, pytest.raises(ConfigError, match="antenna_height"):
        _stream_context(rec.streams["gpr"])


def _emi_sweep(rate: float, seed: int = 0):
    """A coil swept side to side (1 m at 0.7 m/s, 4 cm per swing) over one small
    target at (0.4, 0.6), read ``rate`` times a second: 16 gates of a metal-like
    decay (t**-0.5 exp(-t / 0.2 ms)) under a dipole-like footprint, plus white
    noise of 1 % of its peak."""
    rng = np.random.default_rng(seed)
    n = int(40.0 * rate)
    t = np.arange(n) / rate
    phase = (t / (1.0 / 0.7)) % 2.0
    x = np.where(phase < 1, phase, 2 - phase)
    y = np.floor(t * 0.7) * 0.04 + (t * 0.7 % 1.0) * 0.04
    gates = np.geomspace(1.2e-5, 1e-3, 16)
    r2 = (x - 0.4) ** 2 + (y - 0.6) ** 2 + 0.1**2
    foot = (0.1**2 / r2) ** 3
    decay = (gates / gates[0]) ** -0.5 * np.exp(-(gates - gates[0]) / 2e-4)
    samples = foot[:, None] * decay[None, :]
    samples += 0.01 * rng.standard_normal(samples.shape)
    tns = (t * 1e9).astype(np.int64)
    return samples.astype(np.float32), x, y, tns, gates


@pytest.mark.parametrize("rate", [100.0, 400.0, 3000.0])
def test_emi_detection_keeps_its_windows_in_time_at_other_reading_rates(rate):
    """The packaged EMI chain's windows and the detector's frame counts were
    chosen at 1000 readings/s; at another rate they keep their length in time.
    Counted in readings, 31 readings integrate over 0.31 s at 100 readings/s,
    and the statistic's lag of half of that (10 cm of sweep) moved the alarm."""
    out = {}
    for r in (1000.0, rate):
        samples, x, y, tns, gates = _emi_sweep(r)
        ctx = {"stream": "emi", "kind": "emi", "gate_times": gates, "sample_rate": r,
               "coil_radius": 0.12, "n_channels": 16}
        det = StreamDetector("emi", ctx)
        al = concat_alarms([det.process(samples, x, y, tns), det.finish()])
        out[r] = al
        assert len(al["x"]) == 1, (r, al["x"], al["y"])
        assert np.hypot(al["x"][0] - 0.4, al["y"][0] - 0.6) < 0.03, (r, al["x"], al["y"])
    steps = {st.name: st for st in StreamDetector("emi", {
        "gate_times": _emi_sweep(rate)[4], "sample_rate": rate}).chain.steps}
    assert steps["emi.matched"].window == max(1, round(31 * rate / 1000))
    # near the reference rate (a device clock's error) the counts are as written
    near = StreamDetector("emi", {"gate_times": _emi_sweep(rate)[4], "sample_rate": 1010.0})
    assert near.chain.steps[-1].window == 31 and near.detector.max_frames == 120000


@pytest.mark.parametrize("text, match", [
    ("emi = 3\n", r"'emi' must be a section \[emi\], got 3"),
    ("[emi]\ndetector = 3\n", r"\[emi\]: 'detector' must be a table"),
    ("[emi]\nchain = 3\n", r"\[emi\]: 'chain' must be a chain name"),
    ('[emi]\nenabled = "no"\n', r"\[emi\]: 'enabled' must be true or false, got 'no'"),
])
def test_config_value_types_are_checked(lane, tmp_path, capsys, text, match):
    import re

    from demine.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_detect_config(cfg)
    assert main(["detect", str(lane), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err)


def test_a_detection_config_may_hold_a_chain_object():
    """StreamDetector takes a Chain: so does the config (only wrong types are refused)."""
    from demine.pipeline import load_detect_config
    from demine.process import load_chain

    chain = load_chain("emi_default")
    cfg = load_detect_config({"emi": {"chain": chain}})
    assert cfg["emi"]["chain"] is chain


def test_a_detector_key_it_does_not_take_is_refused_when_the_config_is_read():
    """(audit) A misspelt [gpr.detector] key was found by each file's detector:
    a batch failed every file one by one instead of refusing the config."""
    from demine.errors import ConfigError
    from demine.pipeline import load_detect_config

    ok = load_detect_config({"emi": {"detector": {"threshold": 5.0, "level_drop": False}},
                             "gpr": {"detector": {"threshold": 12.0, "merge": False}}})
    assert ok["emi"]["detector"]["level_drop"] is False
    with pytest.raises(ConfigError, match=r"\[gpr.detector\]: unknown key\(s\) \['thresold'\]; "
                       r"the GPR detector takes .*threshold"):
        load_detect_config({"gpr": {"detector": {"thresold": 12.0}}})
    with pytest.raises(ConfigError, match=r"\[emi.detector\]: unknown key\(s\) \['merge'\]"):
        load_detect_config({"emi": {"detector": {"merge": False}}})
