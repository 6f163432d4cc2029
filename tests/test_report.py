"""demine report: figures and one HTML page, for a recording and for a batch directory."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from test_batch import make_campaign

from demine.batch import run_batch
from demine.cli import main

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
    assert {"roc.png", "pd_by_class_depth.png", "f000_bscan_gpr.png", "f000_lane_map_emi.png",
            "f000_coverage.png"} <= names
    assert not any(n.startswith("f001_") for n in names)  # --max-files 1
    # every recording listed, the corrupt one with its error
    for p in [*good, bad]:
        assert p.name in html
    assert "failed" in html and "truncated" in html
    assert "first 1 of 2" in html


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
