"""demine batch: the per-file job on a real Dask cluster, skips, force, the campaign table."""

from __future__ import annotations

import json
import os
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster

from demine.batch import (
    expand_inputs,
    file_dir,
    job_key,
    load_campaign,
    resolve_config,
    run_batch,
)
from demine.cli import main
from demine.errors import ConfigError
from demine.evaluate import evaluate_recordings
from demine.pipeline import ALARM_COLUMNS, detect_recording


def tiny_scene(mine: bool = True, clutter: bool = True):
    """A 0.6 m x 0.5 m lane (one AP mine and one fragment, unless switched
    off): about 5 s of sweep."""
    from demine.simulate import parse_scene

    text = (resources.files("demine.simulate") / "scenes" / "demo-lane.toml").read_text(
        encoding="utf-8")
    doc = tomllib.loads(text)
    doc["scene"]["name"] = "tiny-lane"
    doc["lane"].update(width=0.6, length=0.5)
    doc["sweep"].update(advance=0.08, start_y=-0.1, end_y=0.6)
    doc["objects"] = [{"id": "M01", "class": "ap-mine", "x": 0.3, "y": 0.25,
                       "depth": 0.03}] if mine else []
    doc["clutter"] = [{"class": "fragment", "count": 1, "depth": [0.0, 0.05],
                       "metal_mass_g": [5.0, 10.0]}] if clutter else []
    return parse_scene(doc, "tiny-lane")


def make_campaign(d: Path) -> tuple[list[Path], Path]:
    """Two good simulated recordings and one corrupt one (a recording cut short)."""
    from demine.simulate import simulate_lane

    d.mkdir(parents=True, exist_ok=True)
    sc = tiny_scene()
    good = []
    for seed in (1, 2):
        p = d / f"lane{seed}.h5"
        simulate_lane(sc, seed=seed).write(p, overwrite=True)
        good.append(p)
    bad = d / "lane3.h5"
    simulate_lane(sc, seed=3, duration=1.0).write(bad, overwrite=True)
    with open(bad, "r+b") as fh:
        fh.truncate(os.path.getsize(bad) // 3)
    return good, bad


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    d = tmp_path_factory.mktemp("campaign")
    good, bad = make_campaign(d / "rec")
    return d, good, bad


@pytest.fixture(scope="module")
def first_run(campaign):
    d, good, bad = campaign
    out = d / "out"
    res = run_batch([str(d / "rec" / "*.h5")], out, workers=2, processes=False,
                    progress=False)
    return out, res


def test_corrupt_file_reported_others_done(campaign, first_run):
    d, good, bad = campaign
    out, res = first_run
    assert len(res.files) == 3
    assert sorted(Path(r["file"]).name for r in res.done) == ["lane1.h5", "lane2.h5"]
    assert len(res.failed) == 1
    err = res.failed[0]["error"]
    assert "lane3.h5" in err and "RecordingError" in err
    assert (file_dir(out, bad) / "error.json").exists()
    assert not (file_dir(out, bad) / "done.json").exists()
    for p in good:
        assert (file_dir(out, p) / "done.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_failed"] == 1 and summary["n_done"] == 2
    assert summary["failed"][0]["file"].endswith("lane3.h5")


def test_campaign_table_matches_the_per_file_pipeline(campaign, first_run):
    d, good, bad = campaign
    out, res = first_run
    t = pq.read_table(out / "campaign.parquet")
    cols = set(t.column_names)
    assert {"file", "file_name", "lon", "lat", "outcome", "truth_id", *ALARM_COLUMNS} <= cols
    # the radar detector's hyperbola fit is kept next to the EMI columns
    assert {"two_way_time", "width", "fit_quality"} <= cols
    files = t.column("file_name").to_pylist()
    assert "lane3.h5" not in files
    for p in good:
        ref = detect_recording(p)
        sel = np.array([f == p.name for f in files])
        assert sel.sum() == len(ref["x"]) > 0
        x = t.column("x").to_numpy()[sel]
        np.testing.assert_allclose(np.sort(x), np.sort(ref["x"]), rtol=0, atol=1e-9)
        assert sorted(t.column("stream").to_numpy(zero_copy_only=False)[sel].tolist()) == \
            sorted(ref["stream"].tolist())
    # WGS 84 positions near the scene's anchor
    lat = t.column("lat").to_numpy()
    lon = t.column("lon").to_numpy()
    assert np.all(np.abs(lat - 12.5652) < 1e-3) and np.all(np.abs(lon - 104.9173) < 1e-3)
    outcomes = set(t.column("outcome").to_pylist())
    assert outcomes <= {"hit", "false", "clutter", "outside", "ignored"}
    assert "hit" in outcomes
    ft = pq.read_table(out / "files.parquet").to_pylist()
    assert len(ft) == 3
    by = {Path(r["file"]).name: r for r in ft}
    assert by["lane3.h5"]["status"] == "failed" and by["lane3.h5"]["error"]
    assert sum(by[p.name]["n_alarms"] for p in good) == t.num_rows
    for p in good:
        r = by[p.name]
        assert r["status"] == "done" and r["has_truth"] and r["n_targets"] == 1
        assert r["area_m2"] > 0.3


def test_pooled_evaluation_equals_demine_evaluate(campaign, first_run):
    d, good, bad = campaign
    out, res = first_run
    per = []
    for p in good:
        per.append(pq.read_table(file_dir(out, p) / "alarms.parquet").to_pydict())
    per = [{k: np.asarray(v) for k, v in a.items()} for a in per]
    ref = evaluate_recordings(good, alarms=per)
    ev = res.evaluations["all"]
    assert (ev.n_targets, ev.n_found, ev.n_false_alarms) == (
        ref.n_targets, ref.n_found, ref.n_false_alarms)
    assert ev.area_m2 == pytest.approx(ref.area_m2, rel=1e-9)
    assert ev.pd_lower95 == pytest.approx(ref.pd_lower95)
    np.testing.assert_allclose(ev.roc.pd, ref.roc.pd)
    np.testing.assert_allclose(ev.roc.far, ref.roc.far)
    summary = json.loads((out / "summary.json").read_text())
    s = summary["evaluation"]["all"]
    assert s["n_targets"] == 2 and s["pd_lower95"] == pytest.approx(ref.pd_lower95)
    assert set(summary["evaluation"]) == {"all", "emi", "gpr"}
    assert len(s["roc"]["pd"]) == len(s["roc"]["far"]) >= 2
    # load_campaign gives the same pooled lanes back
    camp = load_campaign(out)
    assert len(camp["lanes"]["all"]) == 2
    assert len(camp["alarms"]["x"]) == summary["n_alarms"]


def test_rerun_skips_and_force_recomputes(campaign, first_run):
    d, good, bad = campaign
    out, _ = first_run
    marker = file_dir(out, good[0]) / "done.json"
    before = marker.stat().st_mtime_ns
    res = run_batch([str(d / "rec" / "*.h5")], out, workers=2, processes=False,
                    progress=False)
    assert len(res.skipped) == 2 and len(res.computed) == 0
    assert len(res.failed) == 1  # the failed file is tried again, and fails again
    assert marker.stat().st_mtime_ns == before
    assert pq.read_table(out / "campaign.parquet").num_rows == sum(
        r["n_alarms"] for r in res.done)

    # a changed file (new modification time) is recomputed, the other still skipped
    st = os.stat(good[1])
    os.utime(good[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    res = run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert [Path(r["file"]).name for r in res.computed] == [good[1].name]
    assert [Path(r["file"]).name for r in res.skipped] == [good[0].name]

    res = run_batch([str(p) for p in good], out, workers=2, processes=False, progress=False,
                    force=True)
    assert len(res.computed) == 2 and not res.skipped
    assert marker.stat().st_mtime_ns > before


def test_explicit_scheduler_address_via_cli(campaign, tmp_path, capsys):
    d, good, bad = campaign
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        addr = cluster.scheduler_address
        rc = main(["batch", str(d / "rec" / "lane*.h5"), "--out", str(out), "--scheduler", addr])
        captured = capsys.readouterr()
        assert rc == 1  # one file failed
        assert "3/3 files, 1 failed" in captured.err  # the progress bar
        assert "lane3.h5" in captured.err
        assert "lane3.h5" in captured.out and "failed" in captured.out
        assert "PD" in captured.out
        rc = main(["batch", *map(str, good), "--out", str(out), "--scheduler", addr, "-q"])
        captured = capsys.readouterr()
        assert rc == 0
        assert "skipped (up to date) 2" in captured.out
    assert pq.read_table(out / "files.parquet").num_rows == 2


def test_config_changes_the_key_and_is_self_contained(campaign, tmp_path):
    d, good, bad = campaign
    default = resolve_config(None)
    chain = resolve_config("gpr_default")
    assert chain["gpr"]["chain"] == "gpr_default"
    cfg_file = tmp_path / "detect.toml"
    chain_file = tmp_path / "mychain.toml"
    chain_file.write_text('[chain]\nkind = "emi"\n[[step]]\nname = "emi.detect"\n'
                          'output = "append"\n')
    cfg_file.write_text('[emi]\nchain = "mychain.toml"\n[emi.detector]\nthreshold = 9.0\n')
    cfg = resolve_config(cfg_file)
    assert cfg["emi"]["chain"]["chain"]["kind"] == "emi"  # inlined for the workers
    assert cfg["emi"]["detector"]["threshold"] == 9.0
    assert job_key(good[0], default) != job_key(good[0], cfg)
    assert job_key(good[0], default) == job_key(good[0], resolve_config(None))
    assert resolve_config(chain_file)["emi"]["chain"]["chain"]["kind"] == "emi"
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[radar]\n")
    with pytest.raises(ConfigError, match="unknown section"):
        resolve_config(bad_cfg)
    with pytest.raises(ConfigError, match="no file matches"):
        expand_inputs([str(tmp_path / "none*.h5")])
    assert main(["batch", str(tmp_path / "none*.h5"), "--out", str(tmp_path / "o")]) == 2


def test_bad_model_file_fails_fast(campaign, tmp_path, capsys):
    d, good, bad = campaign
    model = tmp_path / "model.json.gz"
    model.write_bytes(b"not a model")
    out = tmp_path / "out"
    rc = main(["batch", str(good[0]), "--out", str(out), "--model", str(model), "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.json.gz" in err
    assert not (out / "files").exists()  # nothing was started
    assert main(["batch", str(good[0]), "--out", str(out), "--model",
                 str(tmp_path / "missing.gz")]) == 2


def test_a_model_whose_features_do_not_match_fails_the_run_not_every_task(campaign, tmp_path,
                                                                         capsys):
    # (it loaded, so every task failed on it one by one)
    from demine.classify import Model, load_default_model, save_model

    m = load_default_model()
    sm = m.sets["emi"]
    other = Model({**m.sets, "emi": type(sm)(sm.features[:-1] + ("emi_from_elsewhere",),
                                             sm.baseline, sm.trees, sm.iso_x, sm.iso_y)},
                  m.meta)
    model = save_model(other, tmp_path / "other.json.gz")
    d, good, bad = campaign
    out = tmp_path / "out"
    rc = main(["batch", str(good[0]), "--out", str(out), "--model", str(model), "-q"])
    assert rc == 2
    assert "do not match" in capsys.readouterr().err
    assert not (out / "files").exists()  # nothing was started


def test_model_scores_every_alarm(campaign, tmp_path):
    """With the packaged classifier: p_mine in the table, and the evaluation runs on it."""
    from demine.classify import default_model_path

    model = default_model_path()
    # the wheel ships it as package data (models/*.json.gz): missing is a packaging bug
    assert model.is_file(), f"packaged default model missing: {model}"
    d, good, bad = campaign
    out = tmp_path / "out"
    res = run_batch([str(p) for p in good], out, model=model, workers=2, processes=False,
                    progress=False)
    assert not res.failed
    t = pq.read_table(out / "campaign.parquet")
    p = t.column("p_mine").to_numpy()
    assert p.size and np.all((p >= 0) & (p <= 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == "p_mine"
    # the ROC thresholds are the classifier's probabilities, not detector scores
    thr = [v for v in summary["evaluation"]["all"]["roc"]["threshold"] if v is not None]
    assert thr and all(0 <= v <= 1 for v in thr)
    # a different model file is a different job: nothing reused from a run without it
    res2 = run_batch([str(p) for p in good], out, progress=False, workers=1, processes=False)
    assert len(res2.computed) == 2


def test_process_workers_give_the_same_table(campaign, first_run, tmp_path):
    """The default: a LocalCluster of 2 worker processes, each opening its own files."""
    d, good, bad = campaign
    out = tmp_path / "out"
    assert main(["batch", *map(str, good), "--out", str(out), "--workers", "2", "-q"]) == 0
    a = pq.read_table(out / "campaign.parquet").sort_by([("file_name", "ascending"),
                                                          ("time", "ascending")])
    ref = pq.read_table(first_run[0] / "campaign.parquet").sort_by(
        [("file_name", "ascending"), ("time", "ascending")])
    assert a.num_rows == ref.num_rows > 0
    for c in ("x", "y", "depth", "score", "time"):
        np.testing.assert_array_equal(a.column(c).to_numpy(), ref.column(c).to_numpy())



def test_a_moved_or_copied_output_reads_its_own_files(campaign, first_run, tmp_path):
    """The per-file outputs are found under the directory given, not the one
    recorded in files.parquet: a copy whose original is gone (moved) still
    loads and reruns as up to date, and its table points into it."""
    import shutil

    out, res = first_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    first = load_campaign(copy)
    shutil.rmtree(copy)  # (a moved directory: the recorded paths are gone)
    camp = load_campaign(moved)
    assert camp["summary"] == first["summary"]
    assert sorted(camp["lanes"]) == sorted(first["lanes"])
    _, good, _ = campaign
    again = run_batch([str(p) for p in good], moved, workers=1, processes=False,
                      progress=False)
    assert all(r["cached"] for r in again.done)
    rows = pq.read_table(moved / "files.parquet").to_pylist()
    assert all(Path(r["out_dir"]).parent == moved / "files" for r in rows)


def test_a_blank_lane_counts_its_false_alarms(tmp_path):
    """A lane whose ground truth is given and lists nothing (a blank lane,
    the T&E way to measure false alarms) is evaluated: its alarms are false
    alarms, and it is pooled; a recording without ground truth is not."""
    from demine.recording import Recording, RecordingWriter
    from demine.simulate import simulate_lane

    sc = tiny_scene(mine=False, clutter=False)  # (nothing buried: the truth is empty)
    blank = tmp_path / "blank.h5"
    res = simulate_lane(sc, seed=4)
    res.write(blank, overwrite=True)
    none = tmp_path / "none.h5"
    with RecordingWriter(none) as w:
        w.add_stream("emi", "emi", gate_times=[1e-5, 1e-4]).append(
            np.zeros((10, 2), np.float32), time=np.arange(10, dtype=np.int64) * 1_000_000)
    with Recording(blank) as r:
        assert len(r.truth["x"]) == 0 and r.truth_given
    with Recording(none) as r:
        assert not r.truth_given
    out = run_batch([str(blank)], tmp_path / "out", workers=1, processes=False,
                    progress=False)
    row = out.done[0]
    assert row["has_truth"] and row["n_targets"] == 0
    assert row["n_false_alarms"] == row["n_alarms"] and row["far_per_m2"] is not None
    assert load_campaign(tmp_path / "out")["lanes"]


def test_model_default_and_a_file_reached_twice(campaign, tmp_path, capsys):
    """`--model default` is the packaged model (as for demine evaluate), and a
    recording named twice, also through a symbolic link, is processed once."""
    _, good, _ = campaign
    link = tmp_path / "again.h5"
    link.symlink_to(good[0])
    assert expand_inputs([str(good[0]), str(link)]) == [good[0]]
    out = tmp_path / "out"
    assert main(["batch", str(good[0]), str(link), "--out", str(out), "--model", "default",
                 "--threads", "--workers", "1", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == "p_mine"
    assert len(pq.read_table(out / "files.parquet")) == 1


def test_a_rerun_with_fewer_recordings_says_what_the_tables_leave_out(campaign, first_run,
                                                                        tmp_path):
    """The campaign tables describe the recordings of the run: a rerun into the
    same directory with fewer of them says so (their per-file outputs stay)."""
    import shutil

    out, _ = first_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    _, good, _ = campaign
    before = {r["file"] for r in pq.read_table(again / "files.parquet").to_pylist()}
    assert os.path.abspath(good[0]) in before and len(before) >= 2
    said = []
    run_batch([str(good[0])], again, workers=1, processes=False, progress=False,
              say=said.append)
    note = [s for s in said if "note:" in s]
    assert len(note) == 1 and f"{len(before) - 1} recording(s) of the previous run" in note[0]
    assert len(pq.read_table(again / "files.parquet")) == 1
    said.clear()
    run_batch([str(good[0])], again, workers=1, processes=False, progress=False,
              say=said.append)
    assert not [s for s in said if "note:" in s]
def same_name_recordings(campaign, d: Path) -> list[Path]:
    """Two different recordings of one file name, in two directories."""
    import shutil

    _, good, _ = campaign
    paths = [d / "site-a" / "day1" / "lane.h5", d / "site-b" / "day1" / "lane.h5"]
    for src, dst in zip(good, paths, strict=True):
        dst.parent.mkdir(parents=True)
        shutil.copyfile(src, dst)
    return paths

