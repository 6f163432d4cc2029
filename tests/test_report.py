"""demine report: figures and one HTML page, for a recording and for a batch directory."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from test_batch import make_campaign, same_name_recordings

from demine.batch import run_batch
from demine.cli import main
from demine.report import bscan_figure, coverage_figure, recording_labels

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    good, bad = make_campaign(d / "rec")
    return d, good, bad


def _figures_referenced(out: Path) -> tuple[str, list[Path]]:
    html = (out / "report.html").read_text(encoding="utf-8")
    pngs = sorted(out.glob("*.png"))
    for p in pngs:
        assert p.stat().st_size > 5000, p
        assert f'href="{p.name}"' in html, p.name
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(pngs)
    for data in imgs:  # every embedded image is a real PNG
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    return html, pngs


def test_report_of_one_recording(recordings, tmp_path, capsys):
    d, good, bad = recordings
    out = tmp_path / "rep"
    assert main(["report", str(good[0]), "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    html, pngs = _figures_referenced(out)
    names = {p.name for p in pngs}
    assert names == {"bscan_gpr.png", "lane_map_emi.png", "lane_map_gpr.png", "roc.png",
                     "pd_by_class_depth.png", "coverage.png"}
    assert "PD by target class" in html and "PD by depth band" in html
    assert "ap-mine" in html and "0-5 cm" in html
    assert "Clopper" in html


def test_report_of_a_batch_directory(recordings, tmp_path):
    d, good, bad = recordings
    batch = tmp_path / "batch"
    run_batch([str(d / "rec" / "*.h5")], batch, workers=2, processes=False, progress=False)
    out = tmp_path / "rep"
    assert main(["report", str(batch), "--out", str(out), "--max-files", "1"]) == 0
    html, pngs = _figures_referenced(out)
    names = {p.name for p in pngs}
    # (a number, then the recording's name)
    assert {"roc.png", "pd_by_class_depth.png", "f000_lane1_bscan_gpr.png",
            "f000_lane1_lane_map_emi.png", "f000_lane1_coverage.png"} <= names
    assert not any(n.startswith("f001_") for n in names)  # --max-files 1
    # every recording listed, the corrupt one with its error
    for p in [*good, bad]:
        assert p.name in html
    assert "failed" in html and "truncated" in html
    assert "first 1 of 2" in html

    # A report of one recording into the same directory: the campaign's
    # figures it did not redraw go, a PNG the report never wrote stays.
    (out / "site_photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 6000)
    assert main(["report", str(good[0]), "--out", str(out)]) == 0
    left = {p.name for p in out.glob("*.png")}
    assert left == {"bscan_gpr.png", "lane_map_emi.png", "lane_map_gpr.png", "roc.png",
                    "pd_by_class_depth.png", "coverage.png", "site_photo.png"}


def test_report_errors(tmp_path):
    assert main(["report", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("damage, names", [
    ({"summary.json": b"{not json"}, "summary.json: damaged batch summary, not JSON"),
    ({"summary.json": b"[]"}, "summary.json: damaged batch summary, expected a JSON object"),
    ({"campaign.parquet": b"PAR1 garbage"}, "campaign.parquet: damaged batch output"),
    # (train audit, session 34: the message had been the path alone)
    ({}, "damaged batch output: campaign.parquet is missing beside summary.json"),
])
def test_report_on_a_damaged_batch_directory_is_one_line(tmp_path, capsys, damage, names):
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "summary.json").write_text('{"n_files": 0}', encoding="utf-8")
    for name, data in damage.items():
        (batch / name).write_bytes(data)
    assert main(["report", str(batch), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine report: error: ")
    assert names in err


def test_recordings_of_one_name_are_told_apart(recordings, tmp_path):
    """Two recordings named lane.h5 in two directories: the table, the sections,
    the figures' titles and their files name each by the directories that tell
    them apart, and neither's figures replace the other's."""
    import matplotlib.image

    d, good, bad = recordings
    paths = same_name_recordings((d, good, bad), tmp_path / "rec")
    batch = tmp_path / "batch"
    run_batch([str(p) for p in paths], batch, workers=2, processes=False, progress=False)
    out = tmp_path / "rep"
    assert main(["report", str(batch), "--out", str(out)]) == 0
    html, pngs = _figures_referenced(out)
    labels = ["site-a/day1/lane.h5", "site-b/day1/lane.h5"]
    assert html.count("<h2>lane.h5</h2>") == 0
    for k, (label, p) in enumerate(zip(labels, paths, strict=True)):
        assert html.count(f"<h2>{label}</h2>") == 1  # its section
        assert html.count(f'<td class="">{label}</td>') == 1  # its row
        assert f"Recording {p}" in html
        slug = label.replace("/", "_").removesuffix(".h5")
        own = {q.name for q in pngs if q.name.startswith(f"f{k:03d}_{slug}_")}
        assert own == {f"f{k:03d}_{slug}_{fig}.png" for fig in
                       ("bscan_gpr", "lane_map_emi", "lane_map_gpr", "coverage")}
    # each its own figures, not one drawn over the other
    for fig in ("bscan_gpr", "coverage", "lane_map_emi"):
        a, b = (matplotlib.image.imread(out / f"f{k:03d}_site-{s}_day1_lane_{fig}.png")
                for k, s in ((0, "a"), (1, "b")))
        assert a.shape != b.shape or (a != b).any(), fig
    # titled with the name that tells them apart
    import matplotlib.pyplot as plt

    fig = bscan_figure(paths[1], "gpr", label=labels[1])
    assert fig.axes[0].get_title().startswith(f"{labels[1]}: radar 'gpr'")
    plt.close(fig)
    fig, _ = coverage_figure(paths[1], label=labels[1])
    assert fig.axes[0].get_title().startswith(f"{labels[1]}: searched")
    plt.close(fig)


def test_recording_labels():
    assert recording_labels(["/c/site-a/day1/lane.h5", "/c/site-b/day1/lane.h5",
                             "/c/site-c/day2/lane.h5", "/c/other.h5"]) == [
        "site-a/day1/lane.h5", "site-b/day1/lane.h5", "day2/lane.h5", "other.h5"]
    # one path the tail of another: the longer one names its directory
    assert recording_labels(["lane.h5", "a/lane.h5"]) == ["lane.h5", "a/lane.h5"]
    assert recording_labels(["/lane.h5", "/x/lane.h5"]) == ["/lane.h5", "x/lane.h5"]
    assert recording_labels([]) == []


def test_a_recording_changed_since_the_batch_gets_a_note_not_figures(recordings, tmp_path):
    """The per-recording figures draw the recording as it is now with the
    alarms of the batch: a recording changed since (another one copied over
    it, or only touched) gets a note naming it instead of figures that mix the
    two; the tables of the batch stay, and an unchanged one is drawn."""
    import os
    import shutil

    d, good, bad = recordings
    rec = tmp_path / "rec"
    rec.mkdir()
    paths = [rec / "lane1.h5", rec / "lane2.h5", rec / "lane3.h5"]
    for src, dst in zip([*good, good[0]], paths, strict=True):
        shutil.copyfile(src, dst)
    batch = tmp_path / "batch"
    run_batch([str(p) for p in paths], batch, workers=2, processes=False, progress=False)
    out = tmp_path / "rep"
    assert main(["report", str(batch), "--out", str(out)]) == 0
    html, pngs = _figures_referenced(out)
    assert "changed since the batch" not in html and "cannot be checked" not in html
    assert {p.name[:4] for p in pngs if p.name.startswith("f")} == {"f000", "f001", "f002"}

    shutil.copyfile(good[1], paths[0])  # lane1.h5 re-recorded: another lane under its name
    st = os.stat(paths[1])  # lane2.h5 only touched: its modification time
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert main(["report", str(batch), "--out", str(out)]) == 0
    html, pngs = _figures_referenced(out)
    for p in paths[:2]:
        note = re.search(rf"<p class=\"note\">{re.escape(p.name)} \(([^)]*)\) changed since "
                         r"the batch: ([^<]*)</p>", html)
        assert note, p.name
        assert note.group(1) == str(p)
        assert "per-recording figures skipped" in note.group(2)
        assert "demine batch" in note.group(2)
    assert re.search(r"lane2\.h5 \([^)]*\) changed since the batch: modified [^<]*; same size",
                     html)
    # only the unchanged recording is drawn; the batch's tables and pooled figures stay
    assert {p.name[:4] for p in pngs if p.name.startswith("f")} == {"f002"}
    assert {"roc.png", "pd_by_class_depth.png"} <= {p.name for p in pngs}
    for p in paths:
        assert f'<td class="">{p.name}</td>' in html


def test_a_batch_that_did_not_record_size_and_time_cannot_be_checked(recordings, tmp_path):
    """A batch directory of an earlier demine (files.parquet without the
    recordings' size and modification time) still reports, with its figures,
    and says that it cannot check whether a recording changed since."""
    import pyarrow.parquet as pq

    d, good, bad = recordings
    batch = tmp_path / "batch"
    run_batch([str(good[0])], batch, workers=1, processes=False, progress=False)
    t = pq.read_table(batch / "files.parquet")
    assert {"size", "mtime_ns"} <= set(t.column_names)
    pq.write_table(t.drop_columns(["size", "mtime_ns"]), batch / "files.parquet")
    out = tmp_path / "rep"
    assert main(["report", str(batch), "--out", str(out)]) == 0
    html, pngs = _figures_referenced(out)
    assert not re.search(r"\) changed since the batch: ", html)
    assert re.search(r"lane1\.h5: [^<]*cannot be checked", html)
    assert "f000_lane1_bscan_gpr.png" in {p.name for p in pngs}


def test_bscan_hyperbolae_are_drawn_from_the_calibrated_surface(tmp_path):
    """The fitted hyperbola's apex is drawn at the stream's surface (its
    calibration's time zero and antenna height) plus the alarm's two-way
    time: the overlay had counted from time 0, 2.3 ns above the echoes of the
    demo's radar."""
    import matplotlib.pyplot as plt
    from test_detect_calibration import _gpr_lane

    from demine.batch import detect_file
    from demine.hyperbola import C0
    from demine.recording import Recording

    path = _gpr_lane(tmp_path)   # a 1 m cart line over a mine, antenna 4 cm up
    with Recording(path) as rec:
        cal = dict(rec.streams["gpr"].calibration)
    surface = cal["time_zero"] + 2 * cal["antenna_height"] / C0
    assert surface > 2e-9
    alarms = detect_file(path)
    assert len(alarms["x"]) == 1
    fig = bscan_figure(path, "gpr", alarms)
    apexes = [ln.get_ydata()[0] for ax in fig.axes for ln in ax.get_lines()
              if ln.get_marker() == "o"]
    plt.close(fig)
    want = (surface + float(alarms["two_way_time"][0])) * 1e9
    assert apexes == [pytest.approx(want, abs=1e-9)]


def test_report_takes_a_profile_and_truth_kept_apart(tmp_path, capsys):
    """`demine report FILE --calibration STREAM=PROFILE --truth CSV`: a
    detector recorded without gate times and without its truth could not be
    reported (no gate times: detection failed); with the profile and the truth
    its page has the detection performance and the EMI statistic's lane map."""
    from test_detect_calibration import _emi_lane

    from demine.recording import Recording, RecordingWriter

    full, bare, gates = _emi_lane(tmp_path)
    blind = tmp_path / "blind.h5"   # the bare lane without its truth table
    with Recording(bare) as rec, RecordingWriter(blind) as w:
        s = rec.streams["emi"]
        d = s.read()
        o = w.add_stream("emi", "emi", n_channels=s.n_channels, driver="emi-pi",
                         calibration=dict(s.calibration))
        o.append(d["samples"], time=d["time"], sequence=d["sequence"], x=d["x"], y=d["y"],
                 z=d["z"])
        truth = rec.truth
    csv = tmp_path / "truth.csv"
    cols = ["id", "type", "is_mine", "x", "y", "depth"]
    csv.write_text(",".join(cols) + "\n" + "".join(
        ",".join(str(truth[c][i]) for c in cols) + "\n" for i in range(len(truth["x"]))))
    prof = tmp_path / "gates.toml"
    prof.write_text("gate_times = [" + ", ".join(repr(float(g)) for g in gates) + "]\n")
    out = tmp_path / "rep"
    assert main(["report", str(blind), "--out", str(out)]) == 2
    assert "--calibration emi=PROFILE" in capsys.readouterr().err
    assert main(["report", str(blind), "--out", str(out), "--calibration", f"emi={prof}",
                 "--truth", str(csv)]) == 0
    html, pngs = _figures_referenced(out)
    assert "Detection performance" in html and "not computed" not in html
    assert {"roc.png", "lane_map_emi.png"} <= {p.name for p in pngs}
    want = tmp_path / "want"
    assert main(["report", str(full), "--out", str(want)]) == 0
    # the same alarms and evaluation as the recording that carried both
    table = re.compile(r"Detection performance</h2>\s*(<table>.*?</table>)", re.S)
    got = table.search(html).group(1)
    assert "<td" in got and got == table.search((want / "report.html").read_text()).group(1)
    from demine.errors import ConfigError
    from demine.report import write_report

    with pytest.raises(ConfigError, match="a batch directory is reported with"):
        write_report(tmp_path, tmp_path / "x", truth=csv)


def test_bscan_hyperbolae_follow_the_profile_given(tmp_path):
    """With a profile (another time zero) the overlay's surface is the
    profile's, as the detector's is."""
    import matplotlib.pyplot as plt
    from test_detect_calibration import _gpr_lane

    from demine.batch import detect_file
    from demine.hyperbola import C0
    from demine.recording import Recording

    path = _gpr_lane(tmp_path)
    with Recording(path) as rec:
        cal = dict(rec.streams["gpr"].calibration)
    prof = {"gpr": {"time_zero": cal["time_zero"] + 0.5e-9}}
    surface = cal["time_zero"] + 0.5e-9 + 2 * cal["antenna_height"] / C0
    alarms = detect_file(path, calibration=prof)
    assert len(alarms["x"]) == 1
    fig = bscan_figure(path, "gpr", alarms, calibration=prof)
    apexes = [ln.get_ydata()[0] for ax in fig.axes for ln in ax.get_lines()
              if ln.get_marker() == "o"]
    plt.close(fig)
    assert apexes == [pytest.approx((surface + float(alarms["two_way_time"][0])) * 1e9,
                                    abs=1e-9)]


def test_report_takes_a_recordings_own_rows_and_a_blind_batch_keeps_its_truth(
        tmp_path, monkeypatch):
    """(review) `report FILE --truth CSV` pooled every row of a table with a
    'file' column into the one recording; the report of a blind batch drew
    its lane maps without the truth the batch was given."""
    import h5py
    import numpy as np

    import demine.report as rep
    from demine.recording import Recording

    good, _ = make_campaign(tmp_path / "rec")
    blind_dir = tmp_path / "blind"
    blind_dir.mkdir()
    rows, counts = [], {}
    for p in good:
        with Recording(p) as r:
            t = r.truth
        counts[p.name] = int(np.sum(t["is_mine"]))
        rows += [f"{p.name},{t['id'][i]},{int(t['is_mine'][i])},"
                 f"{float(t['x'][i])!r},{float(t['y'][i])!r}" for i in range(len(t["x"]))]
        b = blind_dir / p.name
        b.write_bytes(p.read_bytes())
        with h5py.File(b, "r+") as f:
            for name in list(f["truth"]):
                f["truth"][name].resize((0,))
            f["truth"].attrs["given"] = np.int8(0)
    csv = tmp_path / "truth.csv"
    csv.write_text("file,id,is_mine,x,y\n" + "\n".join(rows) + "\n")
    blind = sorted(blind_dir.glob("*.h5"))
    seen: list[tuple[str, int]] = []
    real = rep.lane_map_figure

    def spy(lr, path, name, stat):
        seen.append((Path(path).name, int(lr.n_targets)))
        return real(lr, path, name, stat)

    monkeypatch.setattr(rep, "lane_map_figure", spy)
    assert main(["report", str(blind[0]), "--out", str(tmp_path / "one"), "--truth",
                 str(csv)]) == 0
    assert seen and all(n == counts[blind[0].name] for _, n in seen)
    seen.clear()
    run_batch([str(p) for p in blind], tmp_path / "b", workers=1, processes=False,
              progress=False, truth=csv)
    assert main(["report", str(tmp_path / "b"), "--out", str(tmp_path / "two")]) == 0
    assert seen and all(n == counts[name] for name, n in seen)
    assert sum(counts.values()) > 0


def test_report_of_a_recording_without_positions_says_the_area_is_unknown(tmp_path):
    """Without positions the searched area is unknown, as evaluate and batch say;
    the report had given 0.00 m² (an area of nothing)."""
    import numpy as np

    from demine.recording import RecordingWriter

    path = tmp_path / "nopos.h5"
    rng = np.random.default_rng(0)
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", gate_times=np.geomspace(12e-6, 1e-3, 16)).append(
            rng.standard_normal((3000, 16)).astype("f4"),
            time=(np.arange(3000) * 1_000_000).astype(np.int64))
    out = tmp_path / "rep"
    assert main(["report", str(path), "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Searched area unknown: no positions at a valid height." in html
    assert "0.00 m²" not in html
    fig, cov = coverage_figure(path)
    assert "searched area unknown" in fig.axes[0].get_title()



def test_a_recordings_own_alarms_are_reported(recordings, tmp_path):
    """The report had detected afresh whatever the recording held, so its PD and
    alarm table described other alarms than evaluate and export read (live
    alarms, a classifier's p_mine, an EMI-only table).  Now its alarms table is
    reported; --config detects again, and says the table was not used."""
    import shutil

    from demine.pipeline import append_alarms, detect_recording

    d, good, bad = recordings
    lane = tmp_path / "lane.h5"
    shutil.copy(good[0], lane)
    emi = detect_recording(lane, streams=["emi"])
    both = detect_recording(lane)
    n, n_gpr = len(emi["x"]), int((both["stream"] == "gpr").sum())
    assert n > 0 and n_gpr > 0
    append_alarms(lane, emi)   # (an alarms table of the metal detector's alarms only)
    out = tmp_path / "rep"
    assert main(["report", str(lane), "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"{n} alarms (emi {n}), from the recording&#x27;s alarms table" in html, html[:2000]
    assert "bscan_gpr.png" in html   # (the radar's B-scan is still drawn)
    # with a detection config the recording is detected again, and the page says
    # the table was not used
    out2 = tmp_path / "rep2"
    assert main(["report", str(lane), "--out", str(out2), "--config", "emi_default"]) == 0
    html = (out2 / "report.html").read_text(encoding="utf-8")
    assert re.search(rf"\b{len(both['x'])} alarms \(emi {n}, gpr {n_gpr}\), detected with the "
                     rf"batch pipeline \(its alarms table, {n} alarms, not used: --config "
                     r"given\)", html), html[:3000]


def test_path_length_does_not_jump_across_a_lost_fix():
    """A gap in the positions (NaN) had counted as a jump to (0, 0) and back:
    a 30 m line read 132 m and the B-scan's hyperbolae sat on the wrong traces."""
    import numpy as np

    from demine.report import _path_length

    x = 50.0 + np.arange(10.0)
    y = np.zeros(10)
    x[4:6] = np.nan
    s = _path_length(x, y)
    np.testing.assert_allclose(s, [0, 1, 2, 3, 3, 3, 6, 7, 8, 9])
    x[:2] = np.nan   # (before the first fix: at it)
    np.testing.assert_allclose(_path_length(x, y), [0, 0, 0, 1, 1, 1, 4, 5, 6, 7])
    np.testing.assert_array_equal(_path_length(np.full(3, np.nan), np.zeros(3)), 0.0)


def test_alarm_positions_are_shown_to_the_millimetre(tmp_path):
    """Positions had 3 significant digits: at x = 250 m alarms 0.4 m apart all
    read 250 (and a longitude -70.25004 read -70.3)."""
    import numpy as np

    from demine.report import _alarm_table, _Page

    page = _Page(tmp_path, "t")
    _alarm_table(page, {"stream": np.array(["emi", "emi"]), "x": np.array([250.2989, 250.6631]),
                        "y": np.array([-3.25, np.nan]), "lon": np.array([-70.2500432, -70.25]),
                        "lat": np.array([-33.5, -33.5000091]), "depth": np.array([0.05, 0.1]),
                        "score": np.array([12.345, 7.0])})
    html = "".join(page.parts)
    for want in ("250.299", "250.663", "-3.250", "-70.2500432", "-33.5000091", "0.050",
                 "12.3", "n/a"):
        assert f">{want}<" in html, want


def test_report_options_are_checked_before_anything_is_written(recordings, tmp_path):
    d, good, bad = recordings
    out = tmp_path / "r"
    assert main(["report", str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
    assert main(["report", str(good[0]), "--out", str(out), "--max-files", "-1"]) == 2
    assert main(["report", str(good[0]), "--out", str(out), "--config",
                 str(tmp_path / "nonexistent.toml")]) == 2
    assert not out.exists()   # (the directory had been made before the checks)
    (tmp_path / "file").write_text("x")
    assert main(["report", str(good[0]), "--out", str(tmp_path / "file")]) == 2


def test_a_campaign_truth_table_names_the_recording_by_path(tmp_path):
    """(review) `report site-a/lane.h5 --truth campaign.csv` took the rows of
    every lane.h5 (by file name): site-b's mines were counted as missed in
    site-a's report, with exit 0, where evaluate refuses."""
    from test_export_review import _recording

    for site in ("site-a", "site-b"):
        (tmp_path / site).mkdir()
        _recording(tmp_path / site / "lane.h5", alarms={"x": [0.5], "y": [0.5],
                                                        "score": [3.0], "stream": ["emi"]})
    t = tmp_path / "truth.csv"
    t.write_text("file,x,y,is_mine\nsite-a/lane.h5,0.5,0.5,1\nsite-b/lane.h5,0.2,0.8,1\n"
                 f"{tmp_path / 'site-b' / 'lane.h5'},0.8,0.2,1\n")
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "site-a" / "lane.h5"), "--truth", str(t),
                 "--out", str(out)]) == 0
    perf = re.search(r"Detection performance</h2>\s*<table>(.*?)</table>",
                     (out / "report.html").read_text(), re.S).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", perf)
    assert cells[:3] == ["all", "1", "1"], cells  # (1 target, found: not 3, 1 found)


def test_a_report_that_fails_leaves_no_empty_out_directory(tmp_path, capsys):
    """(train audit, session 34) --out was made before the truth table or the
    recording was read; a failed report left it behind, empty."""
    bad = tmp_path / "notes.h5"
    bad.write_bytes(b"not a recording")
    out = tmp_path / "rep"
    assert main(["report", str(bad), "--out", str(out)]) == 2
    assert not out.exists()
    capsys.readouterr()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["report", str(bad), "--out", str(kept)]) == 2
    assert kept.is_dir()   # (a directory that was there stays)
