"""Exports in WGS 84 (GeoJSON, CSV, KML) and coverage of the searched ground."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from demine.errors import ConfigError
from demine.export import coverage, coverage_polygons, export_alarms, polygons_area
from demine.pipeline import append_alarms
from demine.positions import LocalFrame
from demine.recording import Recording, RecordingWriter

ALARMS = {"time": np.array([0, 0]), "stream": np.array(["emi", "gpr"], dtype=object),
          "x": np.array([0.3, 0.7]), "y": np.array([1.0, 2.0]),
          "depth": np.array([0.05, np.nan]), "score": np.array([12.0, 5.0]),
          "p_mine": np.array([0.9, 0.1]), "label": np.array(["emi-alarm", "gpr-alarm"])}


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    from demine.simulate import simulate_lane

    path = tmp_path_factory.mktemp("export") / "lane.h5"
    res = simulate_lane("benign-soil", 20.0, seed=4, streams=("emi", "gps"))
    res.write(path)
    a = dict(ALARMS)
    a["time"] = res.emi["time"][[1000, 5000]]
    append_alarms(path, a)
    return path


def test_geojson_is_rfc7946_longitude_first(lane, tmp_path):
    out = tmp_path / "a.geojson"
    assert export_alarms(lane, out) == 2
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    with Recording(lane) as r:
        frame = LocalFrame.from_attrs(r.attrs)
    lon, lat = frame.to_geo(ALARMS["x"], ALARMS["y"])
    for f, lo, la in zip(doc["features"], lon, lat, strict=True):
        assert f["geometry"]["type"] == "Point"
        np.testing.assert_allclose(f["geometry"]["coordinates"], [lo, la], atol=1e-8)
        assert 100 < f["geometry"]["coordinates"][0] < 110  # Cambodia: lon ~104.9 first
    p = doc["features"][0]["properties"]
    assert p["class"] == "suspected mine" and p["confidence"] == 0.9
    assert p["depth_m"] == 0.05 and p["sensor"] == "emi"
    assert p["time_utc"].endswith("Z") and p["fix_quality"] == 4
    assert doc["features"][1]["properties"]["class"] == "suspected clutter"


def test_fix_quality_is_that_of_a_recent_fix_only(lane, tmp_path):
    """(audit) The fix quality was the last fix's however old (an alarm a
    minute after the receiver stopped got its RTK 4), and a GPS stream
    without the column (a file from another tool) ended the export."""
    from demine.export import alarm_records

    with Recording(lane) as r:
        g = r.streams["gps"]
        t0, t1 = int(g.time[0]), int(g.time[-1])
    a = dict(ALARMS)
    a["time"] = np.array([t0 + 2_000_000_000, t1 + 60_000_000_000])
    recs, _ = alarm_records(lane, alarms=a)
    assert [r["fix_quality"] for r in recs] == [4, None]
    a["time"] = np.array([t1 + 500_000_000, t0 - 1])
    assert [r["fix_quality"] for r in alarm_records(lane, alarms=a)[0]] == [4, None]
    bare = tmp_path / "bare.h5"
    with Recording(lane) as r, RecordingWriter(bare, attrs=dict(LocalFrame.from_attrs(
            r.attrs).attrs())) as w:
        g = r.streams["gps"]
        s = w.add_stream("gps", "gps")
        s.append(time=g.time, x=g.x, y=g.y, z=g.z, lon=g["lon"], lat=g["lat"], alt=g["alt"])
    import h5py

    with h5py.File(bare, "r+") as f:
        del f["streams/gps/fix_quality"]
    with Recording(bare) as r:
        assert "fix_quality" not in r.streams["gps"].field_names
    recs, _ = alarm_records(bare, alarms=a)
    assert [r["fix_quality"] for r in recs] == [None, None]


def test_csv_and_kml(lane, tmp_path):
    export_alarms(lane, tmp_path / "a.csv")
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8")))
    assert len(rows) == 2 and 12 < float(rows[0]["lat"]) < 13
    assert {"lat", "lon", "depth_m", "confidence", "operator", "time_utc"} <= set(rows[0])
    export_alarms(lane, tmp_path / "a.kml")
    root = ET.parse(tmp_path / "a.kml").getroot()
    coords = [e.text for e in root.iter("{http://www.opengis.net/kml/2.2}coordinates")]
    assert len(coords) == 2 and coords[0].startswith("104.")


def test_no_gps_says_so_and_local_only_when_asked(tmp_path):
    path = tmp_path / "nogps.h5"
    with RecordingWriter(path) as w:
        w.add_stream("emi", "emi", n_channels=4).append(np.zeros((3, 4)), time=[1, 2, 3],
                                                       x=[0, 1, 2], y=0.0)
        w.append_alarms({"time": [2], "x": [1.0], "y": [0.0], "score": [3.0]})
    with pytest.raises(ConfigError, match="no geographic reference"):
        export_alarms(path, tmp_path / "a.geojson")
    with pytest.raises(ConfigError, match="only be exported as CSV"):
        export_alarms(path, tmp_path / "a.geojson", local=True)
    export_alarms(path, tmp_path / "a.csv", local=True)
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8")))
    assert rows[0]["x_m"] == "1.0" and "lon" not in rows[0]
    proc = subprocess.run([sys.executable, "-m", "demine", "export", str(path), "--out",
                           str(tmp_path / "b.kml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no geographic reference" in proc.stderr


def test_coverage_finds_a_gap_and_polygons_match_the_raster(tmp_path):
    # Back-and-forth lines 5 cm apart over 1 m x 1 m with a 10 cm footprint; on
    # three lines the sensor is lifted (z = 0.5 m) between x = 0.3 and 0.7 m,
    # which leaves an unsearched hole of about 0.4 m x 0.15 m.
    path = tmp_path / "cov.h5"
    xs, ys, zs = [], [], []
    for k, y in enumerate(np.arange(0, 1.0001, 0.05)):
        x = np.linspace(0, 1, 201)
        z = np.full(x.size, 0.05)
        if 0.4 < y < 0.6:
            z[(x > 0.3) & (x < 0.7)] = 0.5
        xs.append(x if k % 2 == 0 else x[::-1])
        zs.append(z if k % 2 == 0 else z[::-1])
        ys.append(np.full(x.size, y))
    x, y, z = np.concatenate(xs), np.concatenate(ys), np.concatenate(zs)
    with RecordingWriter(path, attrs=LocalFrame(10.0, 50.0).attrs()) as w:
        w.add_stream("emi", "emi", n_channels=4, calibration={"coil_radius": 0.05}).append(
            np.zeros((x.size, 4)), time=np.arange(x.size), x=x, y=y, z=z)
    cov = coverage(path, gap_area=0.005)
    assert len(cov.gaps) == 1
    g = cov.gaps[0]
    assert 0.35 < g["x"] < 0.65 and 0.4 < g["y"] < 0.6
    assert 0.01 < g["area_m2"] < 0.1
    rings = coverage_polygons(cov.raster)
    assert polygons_area(rings) == pytest.approx(cov.area, rel=1e-9)
    assert 0.9 < cov.area < 1.3
    out = tmp_path / "cov.geojson"
    export_alarms(path, out, with_coverage=True)
    kinds = [f["properties"]["kind"] for f in json.loads(out.read_text())["features"]]
    assert kinds == ["searched area", "coverage gap"]


def test_utm_coordinates_match_the_local_frame(lane, tmp_path):
    pytest.importorskip("pyproj")
    export_alarms(lane, tmp_path / "u.csv")
    rows = list(csv.DictReader(open(tmp_path / "u.csv", encoding="utf-8")))
    # Cambodia at 104.9 E, 12.6 N is in UTM zone 48N; distances between alarms in
    # UTM metres equal those in the local frame (to the UTM scale factor, < 0.1 %).
    assert rows[0]["utm_zone"] == "48N"
    e = np.array([float(r["easting_m"]) for r in rows])
    n = np.array([float(r["northing_m"]) for r in rows])
    d_utm = np.hypot(*(np.diff(e), np.diff(n)))[0]
    d_local = np.hypot(np.diff(ALARMS["x"]), np.diff(ALARMS["y"]))[0]
    assert d_utm == pytest.approx(d_local, rel=1e-3)
    assert 400_000 < e[0] < 600_000 and 1_000_000 < n[0] < 2_000_000


def test_without_pyproj_the_empty_utm_columns_are_said(lane, tmp_path):
    """pyproj is an optional dependency (demine[campaign]): without it the UTM
    columns are empty, and the export now says why (it had said nothing)."""
    import subprocess
    import sys

    out = tmp_path / "u.csv"
    code = ("import sys; sys.modules['pyproj'] = None\n"   # (as if not installed)
            "from demine.cli import main\n"
            f"raise SystemExit(main(['export', {str(lane)!r}, '-o', {str(out)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "UTM columns (utm_zone, easting_m, northing_m) left empty: pyproj is not " \
           "installed" in proc.stderr
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert rows and all(r["easting_m"] == "" and r["lon"] for r in rows)


def test_a_c_shaped_gap_is_pointed_at_inside_it(tmp_path):
    # the mean of a C-shaped pocket's cells lies on the searched ground it wraps
    # round: the point sent a team to ground already searched (0.16 m from the C's
    # centre, the pocket 0.7-1.2 m from it)
    xs, ys = [], []
    for k, yy in enumerate(np.arange(0, 3.001, 0.05)):
        x = np.arange(0, 3.001, 0.01)
        xs.append(x if k % 2 == 0 else x[::-1])
        ys.append(np.full(x.size, yy))
    x, y = np.concatenate(xs), np.concatenate(ys)
    r = np.hypot(x - 1.5, y - 1.5)
    c_shape = (r > 0.7) & (r < 1.2) & ~((x > 1.5) & (np.abs(y - 1.5) < 0.4))
    x, y = np.where(c_shape, np.nan, x), np.where(c_shape, np.nan, y)
    path = tmp_path / "c.h5"
    with RecordingWriter(path, attrs=LocalFrame(10.0, 48.0).attrs()) as w:
        w.add_stream("emi", "emi", n_channels=4, attrs={"footprint_width": 0.1}).append(
            np.zeros((x.size, 4)), time=np.arange(x.size), x=x, y=y, z=np.full(x.size, 0.05))
    (g,) = coverage(path).gaps
    assert 0.7 < np.hypot(g["x"] - 1.5, g["y"] - 1.5) < 1.2
    assert g["xmin"] <= g["x"] <= g["xmax"] and g["ymin"] <= g["y"] <= g["ymax"]


def _frame_lane(tmp_path, origin, xy, label="emi-alarm"):
    path = tmp_path / "f.h5"
    with RecordingWriter(path, attrs=LocalFrame(*origin).attrs()) as w:
        w.add_stream("emi", "emi", n_channels=4).append(
            np.zeros((3, 4)), time=np.arange(3), x=np.zeros(3), y=np.zeros(3))
        w.append_alarms([{"time": 0, "stream": "emi", "x": float(a), "y": float(b),
                          "score": 1.0, "label": label} for a, b in xy])
    return path


def test_an_alarm_beyond_a_pole_has_no_position_not_a_latitude_over_90(tmp_path):
    path = _frame_lane(tmp_path, (10.0, 89.9995), [(0.0, 100.0), (0.0, 1.0)])
    with pytest.warns(UserWarning, match="1 of 2 alarms have no position .*beyond a pole"):
        export_alarms(path, tmp_path / "a.geojson")
    feats = json.loads((tmp_path / "a.geojson").read_text())["features"]
    assert feats[0]["geometry"] is None
    assert abs(feats[1]["geometry"]["coordinates"][1]) <= 90.0


def test_coordinates_near_the_equator_are_written_in_plain_decimals(tmp_path):
    # (7.08e-06 in KML and CSV: valid, but not every GIS importer reads it)
    path = _frame_lane(tmp_path, (0.0, 5.6), [(0.788, 0.0)])
    export_alarms(path, tmp_path / "a.kml")
    export_alarms(path, tmp_path / "a.csv")
    coords = ET.parse(tmp_path / "a.kml").getroot().iter(
        "{http://www.opengis.net/kml/2.2}coordinates")
    (text,) = [c.text for c in coords]
    assert "e" not in text.lower() and text.startswith("0.0000071")
    row = next(csv.DictReader((tmp_path / "a.csv").open()))
    assert "e" not in row["lon"].lower() and float(row["lon"]) == pytest.approx(7.08e-6, rel=1e-2)


def test_a_text_that_cannot_be_encoded_leaves_no_temporary_file(tmp_path):
    path = _frame_lane(tmp_path, (10.0, 48.0), [(0.0, 0.0)])
    alarms = {"time": np.array([0]), "stream": np.array(["emi"], dtype=object),
              "x": np.array([0.0]), "y": np.array([0.0]), "score": np.array([1.0]),
              "label": np.array(["mine\udcff"], dtype=object)}
    export_alarms(path, tmp_path / "a.csv", alarms=alarms)
    assert ",mine?," in (tmp_path / "a.csv").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "f.h5"]
