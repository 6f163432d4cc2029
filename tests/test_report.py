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
