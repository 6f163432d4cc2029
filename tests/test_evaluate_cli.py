"""``demine evaluate`` and evaluation plots on small recordings."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from demine.cli import main
from demine.errors import ConfigError
from demine.evaluate import evaluate_recordings, lane_from_recording
from demine.recording import RecordingWriter

T0 = 1_700_000_000_000_000_000


def _zigzag(n: int = 4000, width: float = 1.0, length: float = 4.0) -> np.ndarray:
    t = np.linspace(0, 1, n)
    x = width / 2 + width / 2 * np.sin(2 * np.pi * 20 * t)
    return np.column_stack([x, length * t])


def _write(path, *, alarms=True, soil="benign", lane="L1", truth=True):
    """A 1 m x 4 m lane, EMI positions sweeping it, 4 mines and 1 clutter item
    (``truth=False``: without its truth table, as a blind trial's recording)."""
    xy = _zigzag()
    with RecordingWriter(path, site="test", lane_id=lane, attrs={"soil": soil}) as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5, 4e-5, 8e-5],
                         attrs={"footprint_width": 0.24})
        s.append(np.zeros((xy.shape[0], 4), np.float32),
                 time=T0 + np.arange(xy.shape[0], dtype=np.int64) * 1_000_000,
                 x=xy[:, 0], y=xy[:, 1], z=np.full(xy.shape[0], 0.05))
        if truth:
            w.add_truth({
                "id": np.array([b"m1", b"m2", b"m3", b"m4", b"c1"]),
                "type": np.array([b"ap-mine", b"ap-mine", b"at-mine", b"ap-mine-min-metal",
                                  b"can"]),
                "is_mine": np.array([1, 1, 1, 1, 0], np.int8),
                "x": np.array([0.3, 0.7, 0.5, 0.2, 0.8]),
                "y": np.array([0.5, 1.5, 2.5, 3.5, 3.0]),
                "depth": np.array([0.05, 0.10, 0.20, 0.02, 0.05]),
                "metal_mass": np.array([3e-3, 3e-3, 2.5, 6e-4, 1.5e-2]),
            })
        if alarms:
            w.append_alarms({
                "time": T0 + np.arange(5, dtype=np.int64),
                "stream": np.array([b"emi"] * 5),
                "x": np.array([0.32, 0.75, 0.9, 0.55, 0.8]),
                "y": np.array([0.52, 1.45, 2.5, 2.9, 3.05]),
                "depth": np.array([0.06, 0.08, np.nan, 0.15, 0.05]),
                "score": np.array([0.9, 0.8, 0.7, 0.6, 0.3]),
            })
    return path


def test_evaluate_recording_numbers(tmp_path):
    path = _write(tmp_path / "lane.h5")
    lane = lane_from_recording(path)
    assert lane.footprint == 0.24 and lane.soil == "benign" and "L1" in lane.name
    r = evaluate_recordings([path])
    # m1, m2 found (AP halo 0.25 m); alarm 3 at (0.9, 2.5) is 0.4 m from the AT mine
    # (halo 0.5 m): found; alarm 4 at (0.55, 2.9) is a false alarm; alarm 5 is on the can.
    assert r.n_targets == 4 and r.n_found == 3 and r.pd == 0.75
    assert r.n_false_alarms == 2 and r.n_clutter_alarms == 1
    area = r.area_m2
    assert (1 + 0.24) * 4 * 0.9 < area < (1 + 0.24) * (4 + 0.24)
    assert r.far_per_m2 == pytest.approx(2 / area)
    assert r.localisation["depth_n"] == 2


def test_cli_json_on_a_small_recording(tmp_path, capsys):
    path = _write(tmp_path / "lane.h5")
    assert main(["evaluate", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("pd", "pd_lower95", "far_per_m2", "n_targets", "n_alarms", "pd_at_far",
                "by_class", "by_depth", "by_soil", "roc"):
        assert key in d
    assert d["n_targets"] == 4 and d["n_alarms"] == 5 and d["pd"] == 0.75
    assert d["pd_lower95"] == pytest.approx(0.2486, abs=1e-4)  # 3 of 4
    assert d["by_class"]["ap-mine"] == {"n_targets": 2, "n_found": 2, "pd": 1.0,
                                        "pd_lower95": pytest.approx(math.sqrt(0.05))}
    assert d["by_class"]["ap-mine-min-metal"]["pd"] == 0.0
    assert set(d["pd_at_far"]) == {"0.5", "1"}
    assert d["by_soil"]["benign"]["n_false_alarms"] == 2
    assert d["files"] == [str(path)]

    # One halo for all targets: the AT mine alarm 0.4 m off is no longer a hit.
    assert main(["evaluate", str(path), "--json", "--halo", "0.1"]) == 0
    d2 = json.loads(capsys.readouterr().out)
    assert d2["n_found"] == 2  # 0.1 m keeps m1 (0.028 m) and m2 (0.064 m) only


def test_cli_table_alarms_csv_and_two_files(tmp_path, capsys):
    a = _write(tmp_path / "a.h5", alarms=False, soil="benign")
    b = _write(tmp_path / "b.h5", alarms=False, soil="laterite")
    csv = tmp_path / "alarms.csv"
    csv.write_text("file,x,y,score\n"
                   "a.h5,0.3,0.5,0.9\n"
                   "b.h5,0.3,0.5,0.8\nb.h5,0.7,1.5,0.7\nb.h5,0.5,2.5,0.6\nb.h5,0.2,3.5,0.5\n")
    assert main(["evaluate", str(a), str(b), "--alarms", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "targets 8  found 5  PD 0.625" in out
    assert "by soil" in out and "laterite" in out
    assert main(["evaluate", str(a), str(b), "--alarms", str(csv), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["by_soil"]["laterite"]["pd"] == 1.0 and d["by_soil"]["benign"]["pd"] == 0.25
    assert [ln["n_found"] for ln in d["lanes"]] == [1, 4]


def test_one_recording_with_a_table_naming_recordings(tmp_path, capsys):
    """A table with a 'file' column is read by it for one recording too: before,
    all its rows were taken as that recording's alarms (b.h5's four alarms on
    a.h5: PD 1.0 instead of 0.25)."""
    a = _write(tmp_path / "a.h5", alarms=False)
    csv = tmp_path / "alarms.csv"
    csv.write_text("file,x,y,score\n"
                   "a.h5,0.3,0.5,0.9\n"
                   "b.h5,0.7,1.5,0.7\nb.h5,0.5,2.5,0.6\nb.h5,0.2,3.5,0.5\n")
    with pytest.raises(ConfigError, match=r"the alarms table names recordings not given: b\.h5 "
                       r"\(given: a\.h5; "):
        evaluate_recordings([a], alarms=[csv])
    assert main(["evaluate", str(a), "--alarms", str(csv)]) == 2
    assert "b.h5" in capsys.readouterr().err
    only_a = tmp_path / "a_alarms.csv"
    only_a.write_text("file,x,y,score\n" + str(a) + ",0.3,0.5,0.9\n")  # (a path: its name)
    r = evaluate_recordings([a], alarms=[only_a])
    assert r.n_alarms == 1 and r.n_found == 1 and r.pd == 0.25
    # one table per recording: its rows must be that recording's
    b = _write(tmp_path / "b.h5", alarms=False)
    with pytest.raises(ConfigError, match=r"the alarms given for a\.h5 name other "
                       r"recordings in their 'file' column: b\.h5"):
        evaluate_recordings([a, b], alarms=[csv, only_a])


def test_cli_min_metal_and_defaults_from_the_recording(tmp_path, capsys):
    path = _write(tmp_path / "lane.h5")
    # Only targets with >= 1 g of metal: the 0.6 g mine (missed) is set aside.
    assert main(["evaluate", str(path), "--json", "--min-metal", "0.001"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_targets"] == 3 and d["pd"] == 1.0
    assert main(["evaluate", str(path), "--footprint", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "by soil" in out and "FA/m²" in out
    # Without a footprint attribute the coil radius of the calibration is used,
    # and a simulator's scene name stands in for the soil.
    xy = _zigzag(1000)
    p2 = tmp_path / "coil.h5"
    with RecordingWriter(p2, attrs={"scene": "magnetic-laterite"}) as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5],
                         calibration={"coil_radius": 0.1})
        s.append(np.zeros((xy.shape[0], 2), np.float32),
                 time=T0 + np.arange(xy.shape[0], dtype=np.int64), x=xy[:, 0], y=xy[:, 1])
    lane = lane_from_recording(p2)
    assert lane.footprint == pytest.approx(0.2) and lane.soil == "magnetic-laterite"


def test_alarms_of_two_sensors_are_evaluated_per_stream(tmp_path, capsys):
    path = tmp_path / "dual.h5"
    xy = _zigzag()
    with RecordingWriter(path) as w:
        emi = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5])
        gpr = w.add_stream("gpr", "gpr", n_channels=4, dtype="int16")
        t = T0 + np.arange(xy.shape[0], dtype=np.int64)
        emi.append(np.zeros((xy.shape[0], 2), np.float32), time=t, x=xy[:, 0], y=xy[:, 1])
        gpr.append(np.zeros((xy.shape[0], 4), np.int16), time=t, x=xy[:, 0], y=xy[:, 1])
        w.add_truth({"id": np.array([b"m1"]), "type": np.array([b"ap-mine"]),
                     "is_mine": np.array([1], np.int8), "x": [0.5], "y": [2.0]})
        # Both sensors alarm on the mine; the radar also on an empty spot.
        w.append_alarms({"time": np.array([T0, T0 + 1, T0 + 2], np.int64),
                         "stream": np.array([b"emi", b"gpr", b"gpr"]),
                         "x": [0.5, 0.52, 0.2], "y": [2.0, 2.03, 3.0], "score": [5, 7, 2]})
    assert main(["evaluate", str(path), "--json"]) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert pooled["n_false_alarms"] == 2 and any("pooled" in n for n in pooled["notes"])
    assert main(["evaluate", str(path), "--json", "--alarm-stream", "gpr"]) == 0
    gpr = json.loads(capsys.readouterr().out)
    assert gpr["n_alarms"] == 2 and gpr["pd"] == 1.0 and gpr["n_false_alarms"] == 1
    assert not any("pooled" in n for n in gpr["notes"])
    assert main(["evaluate", str(path), "--json", "--alarm-stream", "emi"]) == 0
    emi = json.loads(capsys.readouterr().out)
    assert emi["n_alarms"] == 1 and emi["pd"] == 1.0 and emi["n_false_alarms"] == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = _write(tmp_path / "lane.h5")
    assert main(["evaluate", str(tmp_path / "missing.h5")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("east,north\n1,2\n")
    assert main(["evaluate", str(path), "--alarms", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no column 'x'" in err and err.count("\n") == 1
    assert main(["evaluate", str(path), "--stream", "gpr"]) == 2
    assert "no stream 'gpr'" in capsys.readouterr().err


def test_empty_lane_reports_undefined_pd(tmp_path, capsys):
    path = tmp_path / "empty.h5"
    xy = _zigzag(1000)
    with RecordingWriter(path) as w:
        s = w.add_stream("emi", "emi", gate_times=[1e-5, 2e-5])
        s.append(np.zeros((xy.shape[0], 2), np.float32),
                 time=T0 + np.arange(xy.shape[0], dtype=np.int64), x=xy[:, 0], y=xy[:, 1])
        w.append_alarms({"time": np.array([T0], np.int64), "x": [0.5], "y": [2.0],
                         "score": [1.0]})
    assert main(["evaluate", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pd"] is None and d["n_targets"] == 0 and d["n_false_alarms"] == 1
    assert d["far_per_m2"] > 0 and any("PD undefined" in n for n in d["notes"])
    assert main(["evaluate", str(path)]) == 0
    assert "PD n/a" in capsys.readouterr().out


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    from demine.plots import plot_lane_map, plot_roc, save_figure

    path = _write(tmp_path / "lane.h5")
    r = evaluate_recordings([path])
    roc_png = save_figure(plot_roc(r), tmp_path / "roc.png")
    map_png = save_figure(plot_lane_map(r.lanes[0]), tmp_path / "map.png")
    for p in (roc_png, map_png):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert main(["evaluate", str(path), "--roc-plot", str(tmp_path / "r2.png"),
                 "--map-plot", str(tmp_path / "m2.png")]) == 0
    assert (tmp_path / "r2.png").stat().st_size > 5000


def test_cli_notes_a_recording_without_alarms(tmp_path, capsys):
    """The alarms table of a recording never detected on (`demine detect
    --out CSV` leaves it empty) gives PD 0 with a note saying how to fill it;
    with alarms, or with --alarms, no note."""
    empty = _write(tmp_path / "empty.h5", alarms=False)
    full = _write(tmp_path / "full.h5", lane="L2")
    assert main(["evaluate", str(empty), str(full)]) == 0
    err = capsys.readouterr().err
    assert f"note: {empty} has no alarms in its alarms table" in err
    assert "--write" in err and str(full) not in err
    csv = tmp_path / "a.csv"
    csv.write_text("x,y,score\n0.3,0.5,1\n")
    assert main(["evaluate", str(empty), "--alarms", str(csv)]) == 0
    assert "note:" not in capsys.readouterr().err
    # a CSV with its header and no rows: PD 0, said
    csv.write_text("x,y,score\n")
    assert main(["evaluate", str(full), "--alarms", str(csv)]) == 0
    assert f"note: {csv} hold(s) no alarm for this recording" in capsys.readouterr().err


def _one_error_line(capsys, command="evaluate"):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"demine {command}: error: "), err
    return err


def test_cli_alarms_csv_not_text_is_one_line(tmp_path, capsys):
    path = _write(tmp_path / "lane.h5")
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    assert main(["evaluate", str(path), "--alarms", str(binary)]) == 2
    err = _one_error_line(capsys)
    assert "random.bin: not a text CSV file" in err


def test_cli_plot_suffix_checked_before_the_evaluation(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = _write(tmp_path / "lane.h5")
    for option, name in (("--roc-plot", "roc.txt"), ("--map-plot", "map.h5")):
        assert main(["evaluate", str(path), option, str(tmp_path / name)]) == 2
        err = _one_error_line(capsys)
        assert option in err and name in err and ".png" in err and ".pdf" in err
        assert not (tmp_path / name).exists()


def test_cli_unknown_alarm_stream_is_an_error(tmp_path, capsys):
    path = _write(tmp_path / "lane.h5")
    assert main(["evaluate", str(path), "--alarm-stream", "nope"]) == 2
    err = _one_error_line(capsys)
    assert "'nope'" in err and "streams: emi" in err and "alarms of: emi" in err
    assert main(["evaluate", str(path), "--alarm-stream", "emi", "--json"]) == 0


@pytest.mark.parametrize("value, says", [("nan", "must be finite"), ("-1", "must be >= 0"),
                                         ("inf", "must be finite")])
def test_cli_min_metal_must_be_a_mass(tmp_path, capsys, value, says):
    path = _write(tmp_path / "lane.h5")
    assert main(["evaluate", str(path), "--min-metal", value]) == 2
    err = _one_error_line(capsys)
    assert "'--min-metal'" in err and says in err


@pytest.mark.parametrize("opt", ["--halo", "--footprint", "--far"])
def test_cli_refuses_an_infinite_radius_or_rate(tmp_path, capsys, opt):
    """An infinite halo matched nothing (PD 0, every alarm false) without a word."""
    path = _write(tmp_path / "lane.h5")
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(path), opt, "inf"])
    assert exc.value.code == 2
    assert "must be a positive finite number, got inf" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="positive finite radius"):
        evaluate_recordings([path], halo=math.inf)


def _blind(path, lane="B1"):
    """The lane of `_write` without its truth table (a blind trial's recording)."""
    return _write(path, lane=lane, truth=False)


_TRUTH_CSV = ("id,type,is_mine,x,y,depth,metal_mass\n"
              "m1,ap-mine,yes,0.3,0.5,0.05,0.003\n"
              "m2,ap-mine,1,0.7,1.5,0.10,0.003\n"
              "m3,at-mine,true,0.5,2.5,0.20,2.5\n"
              "m4,ap-mine-min-metal,1,0.2,3.5,0.02,0.0006\n"
              "c1,can,no,0.8,3.0,0.05,0.015\n")


def test_truth_kept_apart_scores_a_blind_recording(tmp_path, capsys):
    """A blind trial keeps the truth from the recordings: `--truth CSV` scores
    them exactly as the same truth inside the recording would; without it, the
    alarms are all false alarms and a note says why."""
    blind = _blind(tmp_path / "blind.h5")
    truth = tmp_path / "truth.csv"
    truth.write_text(_TRUTH_CSV)
    inside = evaluate_recordings([_write(tmp_path / "lane.h5")]).to_dict()
    assert main(["evaluate", str(blind), "--truth", str(truth), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("n_targets", "n_found", "pd", "pd_lower95", "far_per_m2", "n_false_alarms",
                "n_clutter_alarms", "pd_at_far", "by_class", "by_depth", "localisation"):
        assert d[key] == inside[key], key
    assert d["pd"] == 0.75 and d["n_clutter_alarms"] == 1  # ('no' read as clutter)

    assert main(["evaluate", str(blind), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_targets"] == 0 and d["n_false_alarms"] == 5
    assert any("blind.h5: no ground truth" in n and "--truth" in n for n in d["notes"])


def test_truth_csv_replaces_the_recordings_own_and_splits_by_file(tmp_path):
    a = _write(tmp_path / "a.h5")
    b = _blind(tmp_path / "b.h5")
    truth = tmp_path / "truth.csv"
    # a.h5 gets one mine only (where its first alarm is); b.h5 the five rows
    rows = _TRUTH_CSV.splitlines()
    truth.write_text("file," + rows[0] + "\n" + "a.h5,only,ap-mine,1,0.3,0.5,0.05,0.003\n"
                     + "".join(f"b.h5,{r}\n" for r in rows[1:]))
    r = evaluate_recordings([a, b], truth=[truth])
    assert [ln.n_targets for ln in r.lanes] == [1, 4]
    assert [ln.n_found for ln in r.lanes] == [1, 3]
    assert any("a.h5: the truth given replaces the recording's own truth table (5 row(s))"
               in n for n in r.notes)
    assert not any("b.h5: the truth given replaces" in n for n in r.notes)
    # one table per recording, in order
    ta, tb = tmp_path / "ta.csv", tmp_path / "tb.csv"
    ta.write_text(rows[0] + "\nonly,ap-mine,1,0.3,0.5,0.05,0.003\n")
    tb.write_text(_TRUTH_CSV)
    r2 = evaluate_recordings([a, b], truth=[ta, tb])
    assert r2.to_dict()["lanes"] == r.to_dict()["lanes"]
    with pytest.raises(ConfigError, match=r"one truth table for several recordings needs a "
                       r"'file' column"):
        evaluate_recordings([a, b], truth=[tb])
    with pytest.raises(ConfigError, match=r"the truth table names recordings not given: c\.h5"):
        bad = tmp_path / "bad.csv"
        bad.write_text("file,x,y\nc.h5,0.3,0.5\n")
        evaluate_recordings([a], truth=[bad])
    with pytest.raises(ConfigError, match="truth must be a list of truth tables"):
        evaluate_recordings([a], truth=truth)


@pytest.mark.parametrize(("text", "says"), [
    ("id,y\nm1,0.5\n", r"truth CSV has no column 'x'"),
    ("x,y,depth\n0.3,0.5,deep\n", r"row 2, field 'depth': not a number: 'deep'"),
    ("x,y,is_mine\n0.3,0.5,mine\n", r"truth column 'is_mine' must hold yes/no values"),
    ("", r"truth CSV is empty"),
])
def test_cli_bad_truth_csv_is_one_line(tmp_path, capsys, text, says):
    blind = _blind(tmp_path / "blind.h5")
    truth = tmp_path / "truth.csv"
    truth.write_text(text)
    assert main(["evaluate", str(blind), "--truth", str(truth)]) == 2
    err = _one_error_line(capsys)
    assert re.search(says, err), err
    assert main(["evaluate", str(blind), "--truth", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: cannot read truth CSV" in _one_error_line(capsys)


def test_read_truth_csv_columns(tmp_path):
    from demine.evaluate import read_truth_csv

    p = tmp_path / "t.csv"
    p.write_text("id,type,is_mine,x,y,depth,halo,notes\n"
                 "m1,PMN,yes,1.5,2,,0.3,'=sum\n")
    t = read_truth_csv(p)
    assert t["x"].tolist() == [1.5] and t["y"].tolist() == [2.0]
    assert np.isnan(t["depth"][0]) and t["halo"].tolist() == [0.3]
    assert t["is_mine"].tolist() == [1] and t["type"].tolist() == ["PMN"]
    assert t["notes"].tolist() == ["=sum"]  # (without the formula guard's quote)


def test_target_and_alarm_tables(tmp_path, capsys):
    """`--target-table` lists every truth row with what became of it (the
    per-target list of a T&E report: which mines were missed), and
    `--alarm-table` every alarm's outcome; both agree with the headline."""
    import csv as csvlib

    path = _write(tmp_path / "lane.h5")
    tt, at = tmp_path / "targets.csv", tmp_path / "alarms.csv"
    assert main(["evaluate", str(path), "--target-table", str(tt), "--alarm-table", str(at),
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    targets = list(csvlib.DictReader(tt.open()))
    alarms = list(csvlib.DictReader(at.open()))
    assert [r["id"] for r in targets] == ["m1", "m2", "m3", "m4", "c1"]
    assert [r["found"] for r in targets] == ["1", "1", "1", "0", "0"]
    assert sum(r["found"] == "1" for r in targets) == d["n_found"] == 3
    m3 = targets[2]
    assert m3["alarm"] == "2" and float(m3["distance"]) == pytest.approx(0.4)
    assert m3["halo"] == "0.5" and m3["alarm_score"] == "0.7"
    assert targets[3]["alarm"] == "-1" and targets[3]["distance"] == ""   # (the missed mine)
    assert targets[4]["target"] == "0" and targets[4]["alarm"] == "4"     # (clutter, its alarm)
    assert [r["outcome"] for r in alarms] == ["hit", "hit", "hit", "false", "clutter"]
    assert [r["target_id"] for r in alarms] == ["m1", "m2", "m3", "", "c1"]
    assert sum(r["outcome"] in ("false", "clutter") for r in alarms) == d["n_false_alarms"]
    assert {r["lane"] for r in targets + alarms} == {"lane.h5 (L1)"}
    # never over the recording
    assert main(["evaluate", str(path), "--target-table", str(path)]) == 2
    assert "--target-table" in _one_error_line(capsys)
    with RecordingWriter(tmp_path / "other.h5"):
        pass
    assert main(["evaluate", str(path), "--alarm-table", str(tmp_path / "other.h5")]) == 2
    assert "is an HDF5 file" in _one_error_line(capsys)


def test_tables_pool_lanes_and_keep_their_names(tmp_path):
    a, b = _write(tmp_path / "a.h5", lane="A"), _write(tmp_path / "b.h5", lane="B")
    r = evaluate_recordings([a, b])
    t = r.target_table()
    assert t["lane"].tolist() == ["a.h5 (A)"] * 5 + ["b.h5 (B)"] * 5
    assert int(np.sum(t["found"])) == r.n_found == 6
    al = r.alarm_table()
    assert al["alarm"].tolist() == [0, 1, 2, 3, 4] * 2
    assert int(np.isin(al["outcome"], ("false", "clutter")).sum()) == r.n_false_alarms


def test_truth_by_file_name_refuses_recordings_of_one_name(tmp_path):
    """(review) Two recordings called lane.h5 in two folders each got the rows
    of both."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    a, b = _blind(tmp_path / "d1" / "lane.h5"), _blind(tmp_path / "d2" / "lane.h5")
    t = tmp_path / "truth.csv"
    t.write_text("file,x,y\nlane.h5,0.3,0.5\n")
    with pytest.raises(ConfigError, match="2 of the recordings are called 'lane.h5'"):
        evaluate_recordings([a, b], truth=[t])
    # named by path (absolute, or relative: the end of the recording's path),
    # the rows of each are told apart
    t.write_text(f"file,x,y\n{a},0.3,0.5\nd2/lane.h5,0.7,1.5\nd2/lane.h5,0.5,2.5\n")
    r = evaluate_recordings([a, b], truth=[t])
    assert [ln.n_targets for ln in r.lanes] == [1, 2]
    t.write_text(f"file,x,y\n{a},0.3,0.5\nd3/lane.h5,0.7,1.5\n")
    with pytest.raises(ConfigError, match="names recordings not given: d3/lane.h5"):
        evaluate_recordings([a, b], truth=[t])


def test_file_rows_by_path_or_by_name(tmp_path):
    from demine.evaluate import file_rows

    (tmp_path / "s").mkdir()
    p = tmp_path / "s" / "lane.h5"
    values = [str(p), "s/lane.h5", "lane.h5", "", "t/lane.h5", str(tmp_path / "lane.h5"),
              str(tmp_path / "s" / ".." / "s" / "lane.h5"), "other.h5"]
    assert file_rows(values, p).tolist() == [True, True, True, False, False, False, True,
                                             False]
    # a table made elsewhere (the campaign folder moved, another machine,
    # Windows): its absolute paths name recordings by as many last parts as
    # tell them apart
    moved = ["/media/usb0/camp/s/lane.h5", "/media/usb0/camp/t/lane.h5"]
    assert file_rows(moved, p).tolist() == [True, False]
    windows = [r"D:\camp\s\lane.h5", r"D:\camp\t\lane.h5", r"s\lane.h5"]
    assert file_rows(windows, p).tolist() == [True, False, True]
    assert file_rows(["D:/camp/s/lane.h5", "D:/camp/t/lane.h5"], p).tolist() == [True, False]
    assert file_rows(["/elsewhere/lane.h5"], p).tolist() == [True]  # (one: by its name)
    assert file_rows(["/a/2025/s/lane.h5", "/a/2026/s/lane.h5"], p).tolist() == [False, False]


def test_a_blank_is_mine_is_refused(tmp_path, capsys):
    """(review) A blank is_mine cell had read as clutter (the missing column
    reads as a mine)."""
    blind = _blind(tmp_path / "blind.h5")
    t = tmp_path / "truth.csv"
    t.write_text("id,is_mine,x,y\nm1,1,0.3,0.5\nm2,,0.7,1.5\n")
    assert main(["evaluate", str(blind), "--truth", str(t)]) == 2
    assert "row 3: 'is_mine' is empty" in _one_error_line(capsys)
