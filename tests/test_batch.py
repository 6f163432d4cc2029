"""demine batch: the per-file job on a real Dask cluster, skips, force, the campaign table."""

from __future__ import annotations

import json
import os
import re
import time
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
from demine.errors import ConfigError, ModelError
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


def test_progress_lines_say_what_each_recording_came_to(campaign, tmp_path):
    """One progress line per recording: its alarms, the targets found and false
    alarms against its ground truth and its time, or its error."""
    import io
    import re

    d, good, bad = campaign
    buf = io.StringIO()
    res = run_batch([str(d / "rec" / "*.h5")], tmp_path / "out", workers=1, processes=False,
                    progress=buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and all(ln.startswith("[") for ln in lines)
    assert [ln.split("] ")[1].split(" files")[0] for ln in lines] == ["1/3", "2/3", "3/3"]
    by_name = {r["name"]: r for r in res.files}
    for ln in lines:
        m = re.search(r"  (lane\d\.h5): (.*)$", ln)
        assert m, ln
        row = by_name[m.group(1)]
        if row["status"] == "done":
            assert re.fullmatch(
                rf"{row['n_alarms']} alarms?, {row['n_found']}/{row['n_targets']} targets "
                rf"found, {row['n_false_alarms']} false alarms?, \d+\.\d s", m.group(2)), ln
        else:
            assert m.group(1) == "lane3.h5"
            assert re.fullmatch(r"failed after \d+\.\d s: " + re.escape(row["error"]),
                                m.group(2)), ln
            assert "RecordingError" in ln
    # a lane whose truth lists targets, none of them searched, is no blank lane
    # (22 targets had been called one: campaign audit)
    from demine.batch import _outcome

    row = {"status": "done", "n_alarms": 2, "has_truth": True, "n_targets": 0,
           "n_false_alarms": 2, "seconds": 1.0}
    assert _outcome({**row, "n_truth_mines": 22}) == \
        "2 alarms, none of its 22 targets in the searched area, 2 false alarms, 1.0 s"
    assert _outcome({**row, "n_truth_mines": 0}) == "2 alarms, blank lane, 2 false alarms, 1.0 s"
    # clutter alone is a blank lane (review: 7 clutter rows had been called targets)
    from demine.batch import _truth_mines

    assert _truth_mines({"x": np.zeros(7), "is_mine": np.zeros(7)}, Path("l.h5")) == 0
    assert _truth_mines({"x": np.zeros(3), "is_mine": np.array(["yes", "no", "1"])},
                        Path("l.h5")) == 2
    assert _truth_mines({"x": np.zeros(2)}, Path("l.h5")) == 2   # (no column: all mines)


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
        # false alarms per metre of the path (the unit of line surveys)
        assert r["path_m"] > 0.5
        assert r["far_per_m"] == pytest.approx(r["n_false_alarms"] / r["path_m"])


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
    assert ev.path_m == pytest.approx(ref.path_m, rel=1e-9) and ev.path_m > 0
    assert ev.pd_lower95 == pytest.approx(ref.pd_lower95)
    np.testing.assert_allclose(ev.roc.pd, ref.roc.pd)
    np.testing.assert_allclose(ev.roc.far, ref.roc.far)
    # and its notes (the batch audit: that a target found by both sensors
    # counts once, the other alarm as a false alarm, had been dropped)
    assert ev.notes == ref.notes and any("pooled" in n for n in ev.notes), ev.notes
    summary = json.loads((out / "summary.json").read_text())
    s = summary["evaluation"]["all"]
    assert s["notes"] == ref.notes
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


def test_outputs_record_the_size_and_time_of_the_recording_they_were_made_from(campaign,
                                                                             tmp_path):
    """done.json and files.parquet hold the recording's size and modification
    time (ns) as the job read it, for `demine report` to tell whether it
    changed since; a rerun reusing the outputs of an earlier demine, which did
    not record them, takes them from the file its unchanged key was made of."""
    d, good, bad = campaign
    out = tmp_path / "out"
    run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)

    def recorded() -> dict[str, tuple[int, int]]:
        return {r["name"]: (r["size"], r["mtime_ns"])
                for r in pq.read_table(out / "files.parquet").to_pylist()}

    want = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in good}
    assert recorded() == want
    for p in good:
        done = json.loads((file_dir(out, p) / "done.json").read_text())
        assert (done["size"], done["mtime_ns"]) == want[p.name]
    # outputs written before these were recorded
    for name in ("done.json", "metrics.json"):
        f = file_dir(out, good[0]) / name
        doc = json.loads(f.read_text())
        del doc["size"], doc["mtime_ns"]
        f.write_text(json.dumps(doc))
    res = run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert len(res.skipped) == 2
    assert recorded() == want


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
        # (audit) --workers shapes the local cluster: it had been ignored with a scheduler
        rc = main(["batch", *map(str, good), "--out", str(out), "--scheduler", addr,
                   "--workers", "8", "-q"])
        assert rc == 2 and "--workers is for the local cluster" in capsys.readouterr().err
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
    # (audit) a chain file not named .toml, which the chain loader reads as a
    # file too, had been keyed by its name: an edited file reused old results
    other = tmp_path / "mychain.chain"
    other.write_text(chain_file.read_text())
    cfg_file.write_text('[emi]\nchain = "mychain.chain"\n')
    before = resolve_config(cfg_file)
    assert before["emi"]["chain"]["chain"]["kind"] == "emi"
    other.write_text(chain_file.read_text().replace('"append"', '"replace"'))
    assert job_key(good[0], resolve_config(cfg_file)) != job_key(good[0], before)
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


def test_a_model_is_loaded_once_per_process_and_again_when_its_file_changes(
        campaign, tmp_path, monkeypatch):
    """Every task had loaded the model file again (0.2 s for the default one)."""
    import shutil

    import demine.batch as batch
    import demine.classify as classify

    model = tmp_path / "model.json.gz"
    shutil.copyfile(classify.default_model_path(), model)
    loads = []
    real = classify.load_model

    def counting(path):
        loads.append(str(path))
        return real(path)

    monkeypatch.setattr(classify, "load_model", counting)
    monkeypatch.setattr(batch, "_MODELS", {})
    d, good, bad = campaign
    res = run_batch([str(p) for p in good], tmp_path / "out", model=model, workers=2,
                    processes=False, progress=False)
    assert not res.failed and len(res.computed) == len(good) >= 2
    assert loads == [str(model)]  # the run's check; the tasks took the same model
    # a file changed in place is read again
    first = batch._loaded_model(model, classify.load_model)
    m = real(model)
    m.meta["note"] = "changed"
    classify.save_model(m, model)
    os.utime(model, ns=(1, 1))
    again = batch._loaded_model(model, classify.load_model)
    assert again is not first and again.meta.get("note") == "changed"
    assert len(loads) == 2
    # overwritten in place with the same size and modification time (cp -p,
    # rsync -t): only the status change time tells
    time.sleep(0.05)   # (status change times tick at a few ms on some filesystems)
    st = os.stat(model)
    tmp = tmp_path / "same.json.gz"
    for k in range(500):  # a model file of the very same size
        m.meta["note"] = f"other {k}"
        classify.save_model(m, tmp)
        if tmp.stat().st_size == st.st_size:
            break
    else:
        pytest.fail("no model file of the same size was made")
    with open(model, "r+b") as f:
        f.write(tmp.read_bytes())
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(model).st_ino == st.st_ino and os.stat(model).st_size == st.st_size
    third = batch._loaded_model(model, classify.load_model)
    assert third is not again and third.meta.get("note") == f"other {k}"
    # a task of a run that began with another model file refuses this one
    # (batch audit: its outputs would have been kept under the old model's key)
    began = batch._file_hash(tmp)
    assert batch._loaded_model(model, classify.load_model, began) is third
    m.meta["note"] = "replaced during the run"
    classify.save_model(m, model)
    with pytest.raises(ModelError, match="the model file changed during the run"):
        batch._loaded_model(model, classify.load_model, began)


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
    import io

    said = io.StringIO()
    out = run_batch([str(blank)], tmp_path / "out", workers=1, processes=False,
                    progress=said)
    row = out.done[0]
    assert (f"blank.h5: {row['n_alarms']} alarm{'' if row['n_alarms'] == 1 else 's'}, "
            "blank lane, ") in said.getvalue()
    assert row["has_truth"] and row["n_targets"] == 0
    assert row["n_false_alarms"] == row["n_alarms"] and row["far_per_m2"] is not None
    assert load_campaign(tmp_path / "out")["lanes"]


def test_an_alarm_the_model_cannot_score_fails_the_file(campaign):
    """Alarms the classifier leaves without p_mine are refused, as evaluate refuses
    them, rather than ranked as 0 (clutter)."""
    from demine.batch import _apply_model
    from demine.classify import default_model_path

    d, good, bad = campaign
    alarms = detect_recording(good[0])
    assert len(alarms["x"]) >= 1
    scored = _apply_model(default_model_path(), good[0], alarms)
    assert np.all(np.isfinite(scored["p_mine"]))
    foreign = dict(alarms)
    foreign["stream"] = np.asarray(alarms["stream"], dtype=object).copy()
    foreign["stream"][0] = "gps"   # (an alarm of no EMI or GPR stream, no sensor label)
    foreign["label"] = np.full(len(alarms["x"]), "", dtype=object)
    with pytest.raises(ModelError, match=r"no p_mine for 1 of .*alarms of gps"):
        _apply_model(default_model_path(), good[0], foreign)


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


def test_a_rerun_after_an_interrupted_one_still_says_what_it_leaves_out(campaign, first_run,
                                                                       tmp_path):
    """(audit) An interrupted run removes the campaign tables before its first
    task; the next, with fewer recordings, then named none it left out. The
    per-file outputs there say which recordings had been processed."""
    import shutil

    out, _ = first_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    for name in ("files.parquet", "campaign.parquet", "summary.json"):
        (again / name).unlink()   # (as an interrupted run leaves the directory)
    _, good, _ = campaign
    run_batch([str(good[0])], again, workers=1, processes=False, progress=False)
    assert json.loads((again / "summary.json").read_text())["left_out"] == [
        os.path.abspath(good[1])]


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
    left = sorted(before - {os.path.abspath(good[0])})
    assert note[0].endswith(": " + ", ".join(left))   # (named, not only counted)
    assert json.loads((again / "summary.json").read_text())["left_out"] == left
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


def test_recordings_of_one_name_in_two_directories_keep_their_own_outputs(campaign, tmp_path):
    paths = same_name_recordings(campaign, tmp_path / "rec")
    out = tmp_path / "out"
    res = run_batch([str(tmp_path / "rec" / "**" / "*.h5")], out, workers=2, processes=False,
                    progress=False)
    assert len(res.done) == 2
    dirs = {file_dir(out, p) for p in paths}
    assert len(dirs) == 2 and {Path(r["out_dir"]) for r in res.done} == dirs
    t = pq.read_table(out / "campaign.parquet")
    files = t.column("file").to_pylist()
    for p in paths:
        assert (file_dir(out, p) / "done.json").exists()
        n = len(detect_recording(p)["x"])
        assert files.count(os.path.abspath(p)) == n > 0
        assert len(pq.read_table(file_dir(out, p) / "alarms.parquet")) == n


def _pgroup_members(pgid: int) -> list[int]:
    """The processes of a process group (Linux: from /proc)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path("/proc", d, "stat").read_text()
            except OSError:  # (gone meanwhile)
                continue
            # state, ppid, pgrp follow the command name, which ends with ')'
            if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
                pids.append(int(d))
    return pids


def _ignores_sigint(pid: int) -> bool:
    import signal

    for line in Path("/proc", str(pid), "status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def _pgroup_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def held_recording(campaign, path: Path) -> Path:
    """A recording whose opening blocks until it is killed: a copy of a good one
    with one more stream, an HDF5 external link to a named pipe that nothing
    ever writes to.  Opening the recording resolves the link, and HDF5's
    open(2) of the pipe waits for a writer (a read hung on a dead network
    share, in effect).  Returns the pipe."""
    import shutil

    import h5py

    _, good, _ = campaign
    pipe = path.with_suffix(".pipe")
    os.mkfifo(pipe)
    shutil.copyfile(good[0], path)
    with h5py.File(path, "r+") as f:
        f["streams"]["held"] = h5py.ExternalLink(str(pipe), "/")
    return pipe


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_a_process_cluster_with_one_line(campaign, tmp_path, how):
    """Ctrl-C in a terminal goes to the whole foreground process group, the
    cluster's worker processes included: `demine batch` ends with one line and
    status 130, no process of it is left, and no campaign table is left behind
    (here an earlier run's, which no longer matches the per-file outputs); the
    same command run again skips what was finished and writes the tables.
    SIGTERM to `demine batch` alone (as a job scheduler stops a job) does the
    same with status 143; it had ended it at once, leaving leaked semaphores
    and empty per-file directories.

    No race with the run's end, whatever the machine's speed: one recording
    (held.h5) blocks its task for good (:func:`held_recording`), so the run
    cannot finish before the interrupt; the interrupt is sent once that task
    is seen running (its per-file directory, made before the recording is
    opened) and another recording is done."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    _, good, _ = campaign
    rec = tmp_path / "rec"
    rec.mkdir()
    held = rec / "held.h5"
    held_recording(campaign, held)
    paths = [held]
    for k in range(3):
        p = rec / f"lane{k:02d}.h5"
        shutil.copyfile(good[k % 2], p)
        paths.append(p)
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[1:3]], out, workers=1, processes=False, progress=False)
    assert (out / "summary.json").exists()  # an earlier run's tables
    cmd = [sys.executable, "-m", "demine", "batch", str(rec / "*.h5"), "--out", str(out),
           "--workers", "2", "--force"]
    # A command run in the background by a shell without job control (CI often
    # is) starts with SIGINT ignored, and its children inherit that: give this
    # one a terminal's foreground process's default, or the Ctrl-C below is lost
    # (the run then went on, hung on held.h5 or, before it, finished with 0).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120

        def done(p: Path) -> bool:
            return (file_dir(out, p) / "done.json").exists()

        # the held task runs (it cannot finish) and a recording is done
        while not (file_dir(out, held).is_dir() and any(done(p) for p in paths[1:])):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no task started or none finished"
            time.sleep(0.02)
        assert not (file_dir(out, held) / "error.json").exists(), \
            "held.h5 failed instead of blocking: does opening a named pipe still block?"
        if sys.platform == "linux" and how == "ctrl-c":
            # the Ctrl-C goes to every process of the group: all but demine batch
            # itself (its worker processes, and multiprocessing's helper) ignore it
            others = [pid for pid in _pgroup_members(proc.pid) if pid != proc.pid]
            assert len(others) >= 2 and all(_ignores_sigint(pid) for pid in others), \
                [(pid, _ignores_sigint(pid)) for pid in others]
            assert not _ignores_sigint(proc.pid), "demine batch itself ignores SIGINT"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # as the terminal's Ctrl-C
        else:
            os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == (130 if how == "ctrl-c" else 143), (stdout, stderr)
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("[")]  # (progress)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("demine batch: interrupted: ")
    assert "of 4 recordings processed" in lines[0] and "run the same command again" in lines[0]
    assert lines[0].endswith("(SIGTERM)") == (how == "sigterm")
    # (counted from the outputs: a task under way when it came may finish meanwhile)
    said = int(lines[0].split("interrupted: ")[1].split(" of ")[0])
    assert said == sum(done(p) for p in paths)
    # held.h5 neither finished nor failed: it was held until its worker was stopped
    assert not (file_dir(out, held) / "done.json").exists()
    assert not (file_dir(out, held) / "error.json").exists()
    # the workers are gone with it, the held one too (a moment for the kernel to reap them)
    deadline = time.monotonic() + 10
    while _pgroup_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pgroup_alive(proc.pid), "processes of the batch are left running"
    # no campaign table: neither this run's nor the earlier one's
    for name in ("campaign.parquet", "files.parquet", "summary.json"):
        assert not (out / name).exists(), name
    with pytest.raises(ConfigError, match="did not finish"):
        load_campaign(out)
    finished = [p for p in paths if done(p)]
    assert 0 < len(finished) < len(paths)
    # a re-run skips what was finished, does the rest (held.h5 among them, now
    # a plain recording) and writes the tables
    held.unlink()
    shutil.copyfile(good[1], held)
    res = run_batch([str(p) for p in paths], out, workers=1, processes=False, progress=False)
    assert [Path(r["file"]) for r in res.skipped] == [p.absolute() for p in finished]
    assert [Path(r["file"]) for r in res.computed] == [p.absolute() for p in paths
                                                       if p not in finished]
    assert len(load_campaign(out)["files"]) == len(paths)


def test_truth_kept_apart_scores_a_blind_campaign(tmp_path):
    """`demine batch --truth CSV`: the recordings of a blind trial have no
    truth; the scorer's table (a 'file' column) gives each its own, with the
    same figures as the truth inside the recordings."""
    import h5py
    import pyarrow.parquet as pq

    from demine.cli import main
    from demine.errors import ConfigError
    from demine.recording import Recording

    good, _ = make_campaign(tmp_path / "rec")
    want = run_batch([str(p) for p in good], tmp_path / "ref", workers=1, processes=False,
                     progress=False)
    blind_dir = tmp_path / "blind"
    blind_dir.mkdir()
    rows = []
    for p in good:
        with Recording(p) as rec:
            t = rec.truth
        cols = ["id", "type", "is_mine", "x", "y", "depth", "metal_mass"]
        rows += [",".join([p.name] + [str(t[c][i]) for c in cols])
                 for i in range(len(t["x"]))]
        b = blind_dir / p.name
        b.write_bytes(p.read_bytes())
        with h5py.File(b, "a") as f:   # (the truth table emptied, as a blind trial's)
            for name in list(f["truth"]):
                f["truth"][name].resize((0,))
            f["truth"].attrs["given"] = np.int8(0)
    csv = tmp_path / "truth.csv"
    csv.write_text("file," + ",".join(cols) + "\n" + "\n".join(rows) + "\n")
    blind = sorted(blind_dir.glob("*.h5"))
    no_truth = run_batch([str(p) for p in blind], tmp_path / "none", workers=1,
                         processes=False, progress=False)
    assert not no_truth.evaluations
    # (batch does not score a file without truth: its alarms are 'unknown', not false)
    assert not any("no ground truth" in n for r in no_truth.files for n in r["notes"])
    got = run_batch([str(p) for p in blind], tmp_path / "out", workers=1, processes=False,
                    progress=False, truth=csv)
    assert set(got.evaluations) == set(want.evaluations)
    for g, ev in want.evaluations.items():
        a, b = got.evaluations[g].to_dict(roc=False), ev.to_dict(roc=False)
        for k in ("n_targets", "n_found", "pd", "n_false_alarms", "far_per_m2", "by_class"):
            assert a[k] == b[k], (g, k)
    assert want.evaluations["all"].n_targets > 0
    ca, cb = pq.read_table(got.campaign).to_pydict(), pq.read_table(want.campaign).to_pydict()
    assert ca["outcome"] == cb["outcome"] and ca["truth_id"] == cb["truth_id"]
    # a changed truth table recomputes; the same one does not
    again = run_batch([str(p) for p in blind], tmp_path / "out", workers=1, processes=False,
                      progress=False, truth=csv)
    assert all(r["cached"] for r in again.files)
    csv.write_text(csv.read_text().replace(",1,", ",0,", 1))
    changed = run_batch([str(p) for p in blind], tmp_path / "out", workers=1,
                        processes=False, progress=False, truth=csv)
    assert sum(not r["cached"] for r in changed.files) == 1
    nofile = tmp_path / "nofile.csv"
    nofile.write_text("x,y\n0.5,0.5\n")
    with pytest.raises(ConfigError, match="needs a 'file' column"):
        run_batch([str(p) for p in blind], tmp_path / "x", progress=False, truth=nofile)
    assert main(["batch", str(blind[0]), "--out", str(tmp_path / "cli"), "--threads",
                 "--workers", "1", "--quiet", "--truth", str(nofile)]) == 0


def test_inputs_paths_and_output_directory_from_the_campaign_audit(campaign, tmp_path):
    """What an analyst's campaign met: a file named with [ ] processed another
    recording; a directory given as a recording failed as one; a 245-character
    name could not have its outputs; an output directory that is a file said
    only "[Errno 17] File exists"."""
    import shutil

    from demine.batch import expand_inputs

    _, good, _ = campaign
    d = tmp_path / "rb"
    d.mkdir()
    shutil.copyfile(good[0], d / "lane[1].h5")
    shutil.copyfile(good[1], d / "lane1.h5")
    assert expand_inputs([str(d / "lane[1].h5")]) == [d / "lane[1].h5"]
    assert expand_inputs([str(d / "lane[0-9].h5")]) == [d / "lane1.h5"]   # (a pattern still)
    with pytest.raises(ConfigError, match=r"rb: a directory; give its recordings \(e\.g\. "):
        expand_inputs([str(d)])
    for name in ("l" * 252 + ".h5", "地雷" * 41 + ".h5", "💣" * 63 + ".h5"):
        fdir = file_dir(tmp_path / "out", d / name)
        assert len(fdir.name.encode("utf-8")) <= 255, fdir.name
        assert fdir != file_dir(tmp_path / "out", d / ("x" + name))
    # names that fitted keep their directories (an earlier run's are found)
    assert file_dir(tmp_path, d / ("l" * 200 + ".h5")).name.startswith("l" * 200 + "-")
    long = d / ("l" * 252 + ".h5")
    shutil.copyfile(good[0], long)
    res = run_batch([str(long)], tmp_path / "out", workers=1, processes=False, progress=False)
    assert not res.failed and len(res.done) == 1
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="a-file: exists and is not a directory"):
        run_batch([str(good[0])], afile, workers=1, processes=False, progress=False)


def test_a_second_batch_into_the_same_directory_is_refused(campaign, tmp_path):
    """Two runs into one directory took each other's per-file outputs into their
    tables (a p_mine run pooled with raw scores: a threshold of 326 in a ROC of
    probabilities).  The lock is an flock, so a killed run leaves none."""
    import fcntl

    from demine.batch import LOCK_NAME, _gather

    _, good, _ = campaign
    out = tmp_path / "out"
    res = run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    with open(out / LOCK_NAME, "a+") as other:   # (another run holding it)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.seek(0)
        other.truncate()
        other.write("pid 4242 on elsewhere\n")
        other.flush()
        with pytest.raises(ConfigError, match=r"out: another demine batch is writing into it "
                           r"\(pid 4242 on elsewhere\); wait for it"):
            run_batch([str(good[0])], out, workers=1, processes=False, progress=False)
    run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    # outputs replaced under a run (an interrupted run's tasks still on a
    # scheduler): its tables are not written from them
    done = file_dir(out, good[1]) / "done.json"
    doc = json.loads(done.read_text())
    done.write_text(json.dumps({**doc, "key": "another run's"}))
    with pytest.raises(ConfigError, match="were replaced while this run went on"):
        _gather(res)


def test_a_file_system_without_locks_runs_unlocked_and_says_so(campaign, tmp_path,
                                                               monkeypatch):
    """flock fails with ENOLCK on an NFS without lockd (and on some FUSE or CIFS
    mounts): the lock had made batch refuse such a directory outright."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    _, good, _ = campaign
    said = []
    res = run_batch([str(good[0])], tmp_path / "out", workers=1, processes=False,
                    progress=False, say=said.append)
    assert len(res.done) == 1
    assert any("cannot be locked (No locks available): run no other batch into it" in s
               for s in said), said


def test_sigterm_before_processing_began(campaign, tmp_path):
    """SIGTERM while `demine batch` is still reading its inputs (here a truth
    table on a named pipe, whose writer has not written yet) ends it with one
    line and status 143, and no output directory content but the lock."""
    import signal
    import subprocess
    import sys
    import time

    _, good, _ = campaign
    fifo = tmp_path / "truth.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "demine", "batch", str(good[0]),
                             "--truth", str(fifo), "--out", str(out), "--workers", "1",
                             "--threads"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # (opens once the batch has the pipe open to read it)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "demine batch never read its truth table"
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, (stdout, stderr)
    assert stderr.strip().splitlines() == [
        "demine batch: interrupted before processing began (SIGTERM)"], stderr
    assert sorted(p.name for p in out.iterdir()) == [".demine-batch.lock"]


def test_a_model_that_is_no_model_file_is_refused_before_it_is_read(campaign, tmp_path,
                                                                     monkeypatch):
    """From the session-28 model-file audit: batch hashed the whole model file
    before checking it (a sparse file of 20 GB was still being read after 50 s)
    and called a named pipe "no such model file"."""
    import demine.batch

    def hashed(path):
        raise AssertionError(f"{path} hashed before it was checked")

    monkeypatch.setattr(demine.batch, "_file_hash", hashed)
    _, good, _ = campaign
    sparse = tmp_path / "big.json"
    with open(sparse, "wb") as fh:
        fh.truncate(2 * 2**30)   # (no disk used)
    with pytest.raises(ModelError, match="too large"):
        run_batch([str(good[0])], tmp_path / "o1", model=sparse, workers=1,
                  processes=False, progress=False)
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="not a regular file"):
        run_batch([str(good[0])], tmp_path / "o2", model=fifo, workers=1,
                  processes=False, progress=False)


def test_a_file_name_that_is_not_utf8_is_one_file_of_the_campaign(campaign, tmp_path):
    """(audit) A recording whose name is not UTF-8 (a Latin-1 'é' copied from
    a field laptop) stopped the whole campaign with a traceback (its per-file
    directory, the Dask key and the Parquet tables hold UTF-8 text).  It is
    processed like the others, its bytes written as \\xe9, and reported."""
    import shutil

    d, good, _ = campaign
    odd = tmp_path / os.fsdecode(b"lane_\xe9.h5")
    shutil.copy(good[0], odd)
    out = tmp_path / "out"
    res = run_batch([str(odd), str(good[1])], out, workers=1, processes=False, progress=False)
    assert not res.failed and len(res.done) == 2
    files = pq.read_table(out / "files.parquet").to_pydict()
    assert files["name"][0] == "lane_\\xe9.h5" and files["status"] == ["done", "done"]
    assert file_dir(out, odd) == file_dir(out, files["file"][0])  # (the report finds it)
    assert (file_dir(out, odd) / "done.json").exists()
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "lane_\\xe9.h5" in html   # (named in the report as in the tables)
    figures = sorted((tmp_path / "rep").glob("*.png"))
    assert figures and all(f.stat().st_size > 1000 for f in figures)
    assert all(f.name in html for f in figures)
    res = run_batch([str(odd), str(good[1])], out, workers=1, processes=False, progress=False)
    assert len(res.skipped) == 2   # (resumed: its outputs are found again)


def test_per_file_outputs_replaced_after_the_tables_are_refused(campaign, tmp_path):
    """(audit) A task of an interrupted run, still running on a scheduler,
    finished after the next run and replaced a file's outputs: load_campaign
    and the report pooled those (13 alarms under a summary of 4) with exit 0.
    A per-file directory removed since had given only a file name."""
    import shutil

    from demine.batch import load_campaign

    d, good, _ = campaign
    out = tmp_path / "out"
    run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert len(load_campaign(out)["files"]) == 2
    done = file_dir(out, good[0]) / "done.json"
    doc = json.loads(done.read_text())
    done.write_text(json.dumps({**doc, "key": "0" * 64}))   # (another run's results)
    with pytest.raises(ConfigError, match="were replaced after this campaign's tables"):
        load_campaign(out)
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 2
    done.write_text(json.dumps(doc))
    shutil.rmtree(file_dir(out, good[1]))
    with pytest.raises(ConfigError, match="per-file output of .* is missing"):
        load_campaign(out)


@pytest.mark.parametrize("name", ["alarms.parquet", "lane.npz"])
def test_a_damaged_cached_output_is_computed_again(campaign, tmp_path, name):
    """(audit) An output cut short after its done.json was written (a power
    loss, a truncated copy) was reused, and every later run ended in pyarrow's
    or zipfile's traceback; only --force got past it."""
    d, good, _ = campaign
    out = tmp_path / "out"
    run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    f = file_dir(out, good[0]) / name
    f.write_bytes(f.read_bytes()[:300])
    res = run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert [Path(r["file"]).name for r in res.computed] == [good[0].name]
    assert [Path(r["file"]).name for r in res.skipped] == [good[1].name]
    assert f.stat().st_size > 300


def test_a_recording_left_out_of_the_truth_given_is_said(campaign, tmp_path):
    """(audit) --truth replaces the recordings' own truth; a recording with
    truth rows of its own and none in the table became a blank lane (its mines
    gone from the pooled PD) without a word, where evaluate says so."""
    d, good, _ = campaign
    t = tmp_path / "truth.csv"
    t.write_text(f"file,x,y\n{good[0].name},0.3,0.25\n")
    said: list[str] = []
    out = tmp_path / "out"
    run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False,
              truth=t, say=said.append)
    note = [s for s in said if "none in" in s]
    assert len(note) == 1 and str(good[1]) in note[0] and "scored as a blank lane" in note[0]
    assert json.loads((out / "summary.json").read_text())["notes"] == [note[0][len("  note: "):]]


def test_only_the_streams_detected_on_are_evaluated(campaign, tmp_path):
    """(audit) A GPS-only recording came out 'done, 0 alarms' with its mines
    counted as missed in the pooled PD, and a kind switched off in the config
    was reported as a sensor at PD 0."""
    from demine.recording import Recording, RecordingWriter

    d, good, _ = campaign
    gps = tmp_path / "gps_only.h5"
    with Recording(good[0]) as r, RecordingWriter(gps, attrs=dict(r.attrs)) as w:
        g = r.streams["gps"]
        w.add_stream("gps", "gps").append(time=g.time, x=g.x, y=g.y)
        w.add_truth(r.truth)
    out = tmp_path / "out"
    res = run_batch([str(good[0]), str(gps)], out, workers=1, processes=False, progress=False)
    assert [Path(r["file"]).name for r in res.failed] == ["gps_only.h5"]
    assert "no EMI or GPR stream to detect on (its streams: gps (gps))" in res.failed[0]["error"]
    cfg = tmp_path / "emi_only.toml"
    cfg.write_text("[gpr]\nenabled = false\n")
    run_batch([str(good[0])], tmp_path / "o2", config=cfg, workers=1, processes=False,
              progress=False)
    ev = json.loads((tmp_path / "o2" / "summary.json").read_text())["evaluation"]
    streams = {k for k in ev if k != "all"}
    assert streams and all("gpr" not in k for k in streams), sorted(ev)


def test_outputs_of_other_code_are_computed_again(campaign, tmp_path, monkeypatch):
    """(audit) The key held the version, fixed at 0.1.0: outputs made by other
    code (an editable install changed, kernels rebuilt) were reused."""
    import demine.batch as batch

    _, good, _ = campaign
    out = tmp_path / "out"
    run_batch([str(good[0])], out, workers=1, processes=False, progress=False)
    assert len(run_batch([str(good[0])], out, workers=1, processes=False,
                         progress=False).skipped) == 1
    fp = batch.code_fingerprint(None)
    assert fp == batch.code_fingerprint(None) and len(fp) == 64
    monkeypatch.setattr(batch, "_JOB_MODULES", (*batch._JOB_MODULES, "export.py"))
    assert batch.code_fingerprint(None) != fp   # (the modules' bytes are in it)
    res = run_batch([str(good[0])], out, workers=1, processes=False, progress=False)
    assert len(res.computed) == 1 and not res.skipped


def test_the_batch_audit_of_session_34(campaign, tmp_path, capsys):
    """What a helper's audit of the batch found: a recording whose detector
    stream never got a frame was scored as a lane searched without an alarm
    (its mine missed, the campaign's PD lowered, its FA/m² made unknown); a
    recording still open for writing was pooled as a finished lane; one file
    reached by two hard links was pooled twice; a soil written as an array of
    strings failed the file; a malformed --scheduler and a config switching
    both sensors off gave a traceback and a per-file error each."""
    import shutil

    import h5py

    from demine.batch import expand_inputs
    from demine.recording import RecordingWriter, open_for_writing
    from demine.simulate import simulate_lane
    from demine.simulate.lane import local_frame

    _, good, _ = campaign
    d = tmp_path / "rec"
    d.mkdir()
    sim = simulate_lane(tiny_scene(), seed=11, duration=0.5)
    sc = sim.scene
    with RecordingWriter(d / "nodata.h5", attrs=dict(local_frame(sc).attrs())) as w:
        w.add_stream("emi", "emi", gate_times=sc.gate_times, driver="emi-pi")
        w.add_truth(sim.truth)
    shutil.copyfile(good[0], d / "soil.h5")
    with h5py.File(d / "soil.h5", "r+") as f:
        f.attrs["soil"] = np.array([b"loam", b"wet"])
    shutil.copyfile(good[1], d / "open.h5")
    with open(d / "open.h5", "r+b") as fh:   # (as a recorder's file until it closes it)
        fh.seek(11)
        flags = fh.read(1)[0]
        fh.seek(11)
        fh.write(bytes([flags | 0b101]))
    assert open_for_writing(d / "open.h5") and not open_for_writing(good[1])
    res = run_batch([str(d / "*.h5")], tmp_path / "out", workers=1, processes=False,
                    progress=False)
    failed = {Path(r["file"]).name: r["error"] for r in res.failed}
    assert set(failed) == {"nodata.h5", "open.h5"}, failed
    assert "no frame in its 'emi' stream" in failed["nodata.h5"]
    assert "still open for writing by its recorder" in failed["open.h5"]
    assert "h5clear -s" in failed["open.h5"]
    (done,) = res.done
    assert Path(done["file"]).name == "soil.h5"
    assert res.evaluations["all"].n_targets == 1   # (nodata's mine is no missed mine)
    with np.load(file_dir(tmp_path / "out", d / "soil.h5") / "lane.npz") as z:
        assert json.loads(str(z["meta"]))["soil"] == "loam; wet"   # (as evaluate reads it)
    # one file by two hard links (and a symbolic link) is one recording
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    os.link(good[0], tmp_path / "day1" / "lane.h5")
    os.link(good[0], tmp_path / "day2" / "lane.h5")
    os.symlink(good[0], tmp_path / "day2" / "link.h5")
    assert len(expand_inputs([str(tmp_path / "day*" / "*.h5")])) == 1
    # options refused before any work, in one line
    for args, says in ((["--scheduler", "tcp://127.0.0.1"], "no scheduler address"),
                       (["--scheduler", "garbage"], "no scheduler address")):
        rc = main(["batch", str(good[0]), "--out", str(tmp_path / "o2"), "-q", *args])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
    for n in ("0", "-2"):   # (refused before anything is done, cached or not)
        rc = main(["batch", str(good[0]), "--out", str(tmp_path / "o4"), "-q", "--workers", n])
        assert rc == 2 and "--workers must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o4").exists()
    cfg = tmp_path / "off.toml"
    cfg.write_text("[emi]\nenabled = false\n[gpr]\nenabled = false\n")
    with pytest.raises(ConfigError, match="switches both emi and gpr off"):
        run_batch([str(good[0])], tmp_path / "o3", config=cfg, workers=1, processes=False,
                  progress=False)


def test_a_full_disk_while_gathering_names_the_directory_and_keeps_the_outputs(
        campaign, tmp_path, monkeypatch):
    """(batch audit, session 34) pyarrow's "Error writing bytes to file" named
    no file and left the temporary tables; now the error names the output
    directory, no campaign table is left, and the run again gathers the kept
    per-file outputs without recomputing them."""
    import errno

    import pyarrow.parquet

    _, good, _ = campaign
    out = tmp_path / "out"
    first = run_batch([str(p) for p in good], out, workers=np.int64(1), processes=False,
                      progress=False)
    assert len(first.computed) == len(good)
    real = pyarrow.parquet.write_table

    def full(table, where, *a, **k):
        if str(where).endswith("files.parquet.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(pyarrow.parquet, "write_table", full)
    with pytest.raises(OSError, match=re.escape(f"cannot write the campaign tables in {out}: "
                                                "No space left on device. No campaign table "
                                                "was written")):
        run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert not [p.name for p in out.iterdir() if p.is_file() and p.name != ".lock"
                and not p.name.startswith(".")], list(out.iterdir())
    monkeypatch.setattr(pyarrow.parquet, "write_table", real)
    again = run_batch([str(p) for p in good], out, workers=1, processes=False, progress=False)
    assert len(again.skipped) == len(good) and not again.computed
    assert (out / "files.parquet").exists() and (out / "summary.json").exists()
