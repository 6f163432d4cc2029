"""``demine export`` as a demanding user checks it: alarms without positions,
valid coverage polygons, the antimeridian, UTM zones, positions against
pyproj, and bad options."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from demine.cli import main
from demine.evaluate import Coverage
from demine.export import coverage, coverage_outlines, export_alarms
from demine.positions import LocalFrame
from demine.recording import RecordingWriter

KML = "{http://www.opengis.net/kml/2.2}"


KYIV = LocalFrame(30.5, 50.4, 0.0, 35.0)


def _recording(path, frame=KYIV, alarms=None, **meta):
    """A short recording anchored at ``frame`` (a 1 m x 1 m back-and-forth
    sweep, 5 cm lines, 10 cm footprint) with the given alarms."""
    xs, ys = [], []
    for k, y in enumerate(np.arange(0, 1.0001, 0.05)):
        x = np.linspace(0, 1, 101)
        xs.append(x if k % 2 == 0 else x[::-1])
        ys.append(np.full(x.size, y))
    x, y = np.concatenate(xs), np.concatenate(ys)
    t0 = 1_772_352_000_000_000_000
    with RecordingWriter(path, attrs=None if frame is None else frame.attrs(), **meta) as w:
        w.add_stream("emi", "emi", n_channels=4, calibration={"coil_radius": 0.05}).append(
            np.zeros((x.size, 4)), time=t0 + np.arange(x.size) * 10_000_000, x=x, y=y,
            z=np.full(x.size, 0.05))
        if alarms is not None:
            w.append_alarms({"time": np.full(len(alarms["x"]), t0 + 1_000_000_000), **alarms})
    return path


# ------------------------------------------------------------ alarms without positions


def test_an_alarm_without_position_is_kept_in_every_format(tmp_path):
    # (an alarm raised while the tracker had no fix has NaN x, y: it used to
    # vanish from the GeoJSON and KML while the command said "2 alarms")
    rec = _recording(tmp_path / "r.h5", alarms={"x": [0.5, np.nan], "y": [0.5, np.nan],
                                                "score": [3.0, 4.0]})
    with pytest.warns(UserWarning, match="1 of 2 alarms have no position"):
        assert export_alarms(rec, tmp_path / "a.geojson") == 2
    feats = json.loads((tmp_path / "a.geojson").read_text())["features"]
    assert len(feats) == 2
    assert feats[0]["geometry"]["type"] == "Point"
    assert feats[1]["geometry"] is None and feats[1]["properties"]["score"] == 4.0
    with pytest.warns(UserWarning, match="no position"):
        export_alarms(rec, tmp_path / "a.kml")
    marks = list(ET.parse(tmp_path / "a.kml").getroot().iter(f"{KML}Placemark"))
    assert len(marks) == 2
    assert marks[1].find(f"{KML}Point") is None
    assert marks[1].find(f"{KML}description").text.startswith("no position")
    with pytest.warns(UserWarning, match="no position"):
        export_alarms(rec, tmp_path / "a.csv")
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8", newline="")))
    assert [r["lon"] for r in rows][1] == "" and rows[1]["score"] == "4.0"


def test_cli_says_how_many_alarms_have_no_position(tmp_path, capsys):
    rec = _recording(tmp_path / "r.h5", alarms={"x": [0.5, np.nan], "y": [0.5, np.nan]})
    assert main(["export", str(rec), "--out", str(tmp_path / "a.geojson")]) == 0
    captured = capsys.readouterr()
    assert "a.geojson: 2 alarms" in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("demine export: warning: 1 of 2 alarms have no position")


@pytest.mark.parametrize("fmt", ["geojson", "csv", "kml"])
def test_an_empty_alarm_table_gives_an_empty_valid_file(tmp_path, fmt):
    rec = _recording(tmp_path / "r.h5")
    out = tmp_path / f"a.{fmt}"
    assert export_alarms(rec, out) == 0
    if fmt == "geojson":
        assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}
    elif fmt == "kml":
        assert not list(ET.parse(out).getroot().iter(f"{KML}Placemark"))
    else:
        assert out.read_text(encoding="utf-8").splitlines()[0].startswith("id,class,lon,lat")


def test_a_missing_alarm_time_is_no_time_and_no_numpy_warning(tmp_path):
    rec = _recording(tmp_path / "r.h5")
    table = tmp_path / "alarms.csv"
    table.write_text("time,x,y,score\n,0.1,0.2,3\n1772352001000000000,0.2,0.2,3\n")
    proc = subprocess.run([sys.executable, "-m", "demine", "export", str(rec), "--alarms",
                           str(table), "--out", str(tmp_path / "a.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # (NaN cast to int64 printed numpy's "invalid value" warning)
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8", newline="")))
    assert rows[0]["time_utc"] == "" and rows[0]["fix_quality"] == ""
    assert rows[1]["time_utc"] == "2026-03-01T08:00:01.000Z"


def test_kml_stays_readable_with_control_characters_in_the_metadata(tmp_path):
    rec = _recording(tmp_path / "r.h5", alarms={"x": [0.5], "y": [0.5]},
                     operator="A\x01B <&> \"q\"", site="s\x1b[1m")
    export_alarms(rec, tmp_path / "a.kml")
    root = ET.parse(tmp_path / "a.kml").getroot()  # (a \x01 made the whole file unreadable)
    desc = next(root.iter(f"{KML}description")).text
    assert "operator: A\ufffdB <&> \"q\"" in desc


# ------------------------------------------------------------------- alarms CSV


def test_an_alarms_table_for_several_recordings_gives_only_this_ones(tmp_path, capsys):
    # (a table with a 'file' column, as demine evaluate takes for several
    # recordings: the other recordings' rows are in other local frames, and
    # used to be exported at the wrong places)
    rec = _recording(tmp_path / "lane1.h5")
    table = tmp_path / "all.csv"
    table.write_text("file,x,y,score\nlane1.h5,0.1,0.2,3\nlanes/lane2.h5,5.0,6.0,4\n"
                     "lane1.h5,0.3,0.4,5\n")
    out = tmp_path / "a.csv"
    assert main(["export", str(rec), "--alarms", str(table), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert [r["x_m"] for r in rows] == ["0.1", "0.3"]
    err = capsys.readouterr().err
    assert "1 alarms of other recordings (lanes/lane2.h5) left out" in err
    only_other = tmp_path / "other.csv"
    only_other.write_text("file,x,y\nlane2.h5,5.0,6.0\n")
    out2 = tmp_path / "b.csv"
    assert main(["export", str(rec), "--alarms", str(only_other), "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "names only other recordings (lane2.h5), none is lane1.h5" in err
    assert not out2.exists()


def test_a_campaign_table_names_its_recordings_by_path(tmp_path, capsys):
    """(audit) A campaign's table (demine batch writes absolute paths) of two
    sites that both have a lane.h5: the export of one took the other's alarms
    too, at the wrong places, as they matched by file name only."""
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-b").mkdir()
    a = _recording(tmp_path / "site-a" / "lane.h5")
    b = tmp_path / "site-b" / "lane.h5"
    table = tmp_path / "campaign.csv"
    table.write_text(f"file,x,y,score\n{a},0.1,0.2,3\n{b},5.0,6.0,4\n"
                     "site-a/lane.h5,0.3,0.4,5\nsite-b/lane.h5,7.0,8.0,6\n")
    out = tmp_path / "a.csv"
    assert main(["export", str(a), "--alarms", str(table), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert [r["x_m"] for r in rows] == ["0.1", "0.3"]
    assert "2 alarms of other recordings" in capsys.readouterr().err


# ------------------------------------------------------------------- bad options


@pytest.mark.parametrize("suffix", ["csv", "kml"])
def test_coverage_is_refused_for_formats_that_cannot_hold_it(tmp_path, capsys, suffix):
    # (it used to be ignored without a word)
    rec = _recording(tmp_path / "r.h5", alarms={"x": [0.5], "y": [0.5]})
    out = tmp_path / f"a.{suffix}"
    assert main(["export", str(rec), "--out", str(out), "--coverage"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demine export: error: ")
    assert f"only be exported as GeoJSON, not {suffix}" in err
    assert not out.exists()


def test_an_output_without_suffix_asks_for_the_format(tmp_path, capsys):
    rec = _recording(tmp_path / "r.h5")
    assert main(["export", str(rec), "--out", str(tmp_path / "alarms")]) == 2
    err = capsys.readouterr().err
    assert "no file suffix to tell the export format" in err and "--format" in err
    assert main(["export", str(rec), "--out", str(tmp_path / "alarms.txt")]) == 2
    assert "'txt' (the suffix of" in capsys.readouterr().err


def test_an_existing_output_is_replaced_whole_and_a_link_stays_a_link(tmp_path):
    rec = _recording(tmp_path / "r.h5", alarms={"x": [0.5], "y": [0.5]})
    target = tmp_path / "target.geojson"
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.geojson"
    link.symlink_to(target)
    export_alarms(rec, link)
    assert link.is_symlink() and json.loads(target.read_text())["features"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.geojson", "r.h5",
                                                           "target.geojson"]  # (no temp file)


# ------------------------------------------------------ positions against pyproj


@pytest.mark.parametrize("lon0, lat0, bearing", [
    (104.9, 12.6, 0.0),         # Cambodia
    (30.5, 50.4, 35.0),         # Ukraine
    (-70.6, -33.4, 200.0),      # southern and western hemispheres
    (25.0, 69.5, 10.0),         # high latitude
    (15.6, 78.2, 300.0),        # Svalbard
    (179.9995, -16.8, 90.0),    # a lane across the antimeridian, eastwards
    (-179.9995, 65.0, 270.0),   # ... westwards
    (0.0, 0.0, 45.0),
])
def test_wgs84_positions_match_pyproj_geodesics(tmp_path, lon0, lat0, bearing):
    pyproj = pytest.importorskip("pyproj")
    geod = pyproj.Geod(ellps="WGS84")
    # alarms up to 100 m from the origin in every direction
    az = np.arange(0, 360, 30.0)
    d = np.resize([1.0, 20.0, 100.0], az.size)
    x, y = d * np.sin(np.radians(az)), d * np.cos(np.radians(az))
    rec = _recording(tmp_path / "r.h5", LocalFrame(lon0, lat0, 0.0, bearing),
                     alarms={"x": x, "y": y})
    export_alarms(rec, tmp_path / "a.geojson")
    feats = json.loads((tmp_path / "a.geojson").read_text())["features"]
    got = np.array([f["geometry"]["coordinates"] for f in feats])
    assert np.all(np.abs(got[:, 0]) <= 180) and np.all(np.abs(got[:, 1]) <= 90)
    lon, lat, _ = geod.fwd(np.full(az.size, lon0), np.full(az.size, lat0),
                           (az + bearing) % 360, d)
    _, _, miss = geod.inv(got[:, 0], got[:, 1], lon, lat)
    # the local tangent plane departs from the geodesic by d^2 tan(lat) / 2R:
    # under 5 mm at 100 m even at 78 degrees, far below a 0.25 m halo
    assert np.max(miss) < 0.005
    # GeoJSON keeps enough decimals for it (1e-8 degree: about a millimetre)
    assert np.max(miss[d == 1.0]) < 0.002


@pytest.mark.parametrize("lon0, lat0, zone", [
    (5.32, 60.39, "32N"),     # Bergen: south-western Norway is zone 32, not 31
    (10.0, 78.0, "33N"),      # Svalbard: no zone 32 there
    (4.0, 80.0, "31N"),
    (25.0, 79.0, "35N"),
    (40.0, 74.0, "37N"),
    (5.32, 50.0, "31N"),      # outside the exceptions: the regular zone
    (-70.6, -33.4, "19S"),
    (179.99, -16.8, "60S"),
])
def test_utm_zone_follows_the_grid_exceptions(tmp_path, lon0, lat0, zone):
    pyproj = pytest.importorskip("pyproj")
    rec = _recording(tmp_path / "r.h5", LocalFrame(lon0, lat0), alarms={"x": [3.0], "y": [4.0]})
    export_alarms(rec, tmp_path / "a.csv")
    row = next(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8", newline="")))
    assert row["utm_zone"] == zone
    epsg = (32600 if zone.endswith("N") else 32700) + int(zone[:-1])
    tr = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    e, n = tr.transform(float(row["lon"]), float(row["lat"]))
    assert float(row["easting_m"]) == pytest.approx(e, abs=0.002)
    assert float(row["northing_m"]) == pytest.approx(n, abs=0.002)


def test_no_utm_beyond_its_latitudes(tmp_path):
    pytest.importorskip("pyproj")
    rec = _recording(tmp_path / "r.h5", LocalFrame(20.0, 85.0), alarms={"x": [1.0], "y": [1.0]})
    export_alarms(rec, tmp_path / "a.csv")
    row = next(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8", newline="")))
    assert row["utm_zone"] == "" and row["easting_m"] == "" and row["lat"].startswith("85.0")


# ------------------------------------------------------------------- coverage


def _unit_edges(rings):
    """Undirected unit-length edges of rectilinear integer rings."""
    out = []
    for ring in rings:
        for (ax, ay), (bx, by) in zip(ring[:-1], ring[1:], strict=True):
            n = int(abs(bx - ax) + abs(by - ay))
            sx, sy = np.sign(bx - ax), np.sign(by - ay)
            for k in range(n):
                p = (ax + k * sx, ay + k * sy)
                q = (p[0] + sx, p[1] + sy)
                out.append((min(p, q), max(p, q)))
    return out


def _signed_area(ring):
    x, y = np.asarray(ring, dtype=float).T
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _check_valid(polys):
    """OGC validity of a MultiPolygon of rectilinear rings on the integer grid:
    closed rings of at least 4 points, no vertex met twice in a ring, no edge
    shared by two rings (polygons and holes may meet only at points), shells
    counter-clockwise and holes clockwise (RFC 7946), holes inside."""
    edges = []
    for poly in polys:
        for k, ring in enumerate(poly):
            assert ring[0] == ring[-1] and len(ring) >= 5
            assert len(set(ring[:-1])) == len(ring) - 1, "a ring passes a vertex twice"
            a = _signed_area(ring)
            assert (a > 0) if k == 0 else (a < 0)
        edges += _unit_edges(poly)
    assert len(edges) == len(set(edges)), "rings share an edge"


def _grid(polys, raster):
    c = raster.cell
    return [[[(round((x - raster.x0) / c + 0.5), round((y - raster.y0) / c + 0.5))
              for x, y in ring] for ring in poly] for poly in polys]


@pytest.mark.parametrize("rows", [
    ["1111", "1001", "1111"],                 # one polygon with a hole
    ["10", "01"],                             # two cells meeting at a corner only
    ["111", "101", "110"],                    # a hole touching its shell at a corner
    ["0110", "1001", "1001", "0110"],          # a ring of diagonal steps: four polygons
    ["11111", "10001", "10101", "10001", "11111"],   # an island in a hole
    ["1"],
    ["000"],
])
def test_coverage_outlines_are_valid_polygons(rows):
    mask = np.array([[c == "1" for c in r] for r in rows[::-1]])
    raster = Coverage(mask, 0.0, 0.0, 0.5, 1.0)
    polys = coverage_outlines(raster)
    grid = _grid(polys, raster)
    _check_valid(grid)
    area = sum(_signed_area(r) for p in grid for r in p)
    assert area == mask.sum()
    if rows[0] == "1111":
        assert len(polys) == 1 and len(polys[0]) == 2
    if rows == ["10", "01"]:
        assert len(polys) == 2


def test_random_coverage_outlines_are_valid_and_exact():
    rng = np.random.default_rng(5)
    for _ in range(200):
        mask = rng.random(tuple(rng.integers(1, 15, 2))) < rng.uniform(0.3, 0.8)
        raster = Coverage(mask, 0.0, 0.0, 1.0, 1.0)
        grid = _grid(coverage_outlines(raster), raster)
        _check_valid(grid)
        assert sum(_signed_area(r) for p in grid for r in p) == mask.sum()


def _gap_lane(tmp_path, frame):
    # back-and-forth lines 5 cm apart with the sensor lifted on three of them:
    # an unsearched hole (as in test_export)
    path = tmp_path / "cov.h5"
    xs, ys, zs = [], [], []
    for k, y in enumerate(np.arange(0, 1.0001, 0.05)):
        x = np.linspace(-0.5, 0.5, 201)
        z = np.full(x.size, 0.05)
        if 0.4 < y < 0.6:
            z[(x > -0.2) & (x < 0.2)] = 0.5
        xs.append(x if k % 2 == 0 else x[::-1])
        zs.append(z if k % 2 == 0 else z[::-1])
        ys.append(np.full(x.size, y))
    x, y, z = np.concatenate(xs), np.concatenate(ys), np.concatenate(zs)
    with RecordingWriter(path, attrs=frame.attrs()) as w:
        w.add_stream("emi", "emi", n_channels=4, calibration={"coil_radius": 0.05}).append(
            np.zeros((x.size, 4)), time=np.arange(x.size), x=x, y=y, z=z)
    return path


def test_geojson_searched_area_is_one_valid_polygon_with_its_gap_as_a_hole(tmp_path):
    # (it used to be hundreds of rectangles sharing edges: an invalid
    # MultiPolygon, "Self-intersection" to GEOS, PostGIS and QGIS)
    frame = LocalFrame(10.0, 50.0, 0.0, 30.0)
    path = _gap_lane(tmp_path, frame)
    out = tmp_path / "cov.geojson"
    export_alarms(path, out, with_coverage=True)
    feats = json.loads(out.read_text())["features"]
    area = feats[0]
    assert area["properties"]["kind"] == "searched area"
    polys = area["geometry"]["coordinates"]
    cov = coverage(path)
    grid = []
    for poly in polys:  # back to the raster's grid, through the local frame
        rings = []
        for ring in poly:
            lon, lat = np.array(ring).T
            x, y = frame.to_local(lon, lat)
            gx = (x - cov.raster.x0) / cov.raster.cell + 0.5
            gy = (y - cov.raster.y0) / cov.raster.cell + 0.5
            assert np.allclose(gx, np.round(gx), atol=0.02)
            assert np.allclose(gy, np.round(gy), atol=0.02)
            rings.append([(int(a), int(b)) for a, b in zip(np.round(gx), np.round(gy),
                                                           strict=True)])
        grid.append(rings)
    _check_valid(grid)
    assert len(polys) == 1 and len(polys[0]) >= 2  # the shell and the gap (and smaller pockets)
    assert sum(_signed_area(r) for p in grid for r in p) * cov.raster.cell ** 2 == \
        pytest.approx(cov.area, rel=1e-9)
    gap = [f for f in feats if f["properties"]["kind"] == "coverage gap"]
    assert len(gap) == 1


@pytest.mark.parametrize("lon0, bearing", [(180.0, 0.0), (179.999996, 30.0),
                                           (-179.999998, 120.0), (-180.0, 0.0)])
def test_searched_area_across_the_antimeridian_is_cut_there(tmp_path, lon0, bearing):
    # (Taveuni, Fiji: the 180th meridian crosses land.  Each rectangle used to
    # get corners at +179.99999 and -179.99999, a polygon around the globe.)
    frame = LocalFrame(lon0, -16.8, 0.0, bearing)
    path = _gap_lane(tmp_path, frame)
    out = tmp_path / "cov.geojson"
    export_alarms(path, out, with_coverage=True)
    polys = json.loads(out.read_text())["features"][0]["geometry"]["coordinates"]
    east = west = 0
    area = 0.0
    for poly in polys:
        lon = np.array([c[0] for c in poly[0]])
        assert np.all(np.abs(lon) <= 180.0)
        assert np.ptp(lon) < 1e-4  # a metre-wide lane spans 1e-5 degree, not 360
        east += bool(lon.min() > 179.0)
        west += bool(lon.max() < -179.0)
        for k, ring in enumerate(poly):
            lo, la = np.array(ring).T
            x, y = frame.to_local(lo, la)
            a = 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
            assert (a > 0) if k == 0 else (a < 0)  # right-hand rule on both sides
            area += a
    assert east and west
    cov = coverage(path)
    # at most a sliver of half a cell along the cut is left out, never more claimed
    assert cov.area - 0.5 * 1.5 * cov.raster.cell <= area <= cov.area + 1e-9
    assert not math.isnan(area)


def test_no_alarms_and_an_output_in_no_directory_are_said(tmp_path, capsys):
    """A recording without alarms exported an empty file without a word; an
    output in a directory that does not exist said only '[Errno 2] No such
    file or directory' (UI audit)."""
    rec = _recording(tmp_path / "r.h5")
    assert main(["export", str(rec), "-o", str(tmp_path / "a.geojson")]) == 0
    err = capsys.readouterr().err
    assert "holds no alarms (none detected, or not detected yet" in err
    assert "--write adds them" in err
    assert main(["export", str(rec), "-o", str(tmp_path / "nodir" / "a.geojson")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'nodir' / 'a.geojson'}: directory {tmp_path / 'nodir'} does " \
        "not exist" in err
    assert main(["export", str(rec), "-o", str(tmp_path)]) == 2
    assert "is a directory: give the output file's name" in capsys.readouterr().err


def test_an_output_on_a_pipe_is_written_not_waited_for(tmp_path):
    """-o /dev/stdout on a pipe: the check for an HDF5 signature read the pipe
    and waited for ever (review)."""
    rec = _recording(tmp_path / "r.h5", alarms={"x": np.array([0.5]), "y": np.array([0.5]),
                                                "score": np.array([3.0])})
    proc = subprocess.run([sys.executable, "-m", "demine", "export", str(rec), "-o",
                           "/dev/stdout", "-f", "csv"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("id,class,lon,lat") and len(lines) == 2, lines
    assert "/dev/stdout: 1 alarms" in proc.stderr


def test_a_searched_area_without_positions_is_unknown_not_zero(tmp_path):
    # (audit) a recording whose sensor was never at a valid height (here held
    # 2 m up throughout) wrote area_m2 0.0, a claim that nothing was searched
    path = tmp_path / "lifted.h5"
    x = np.linspace(0, 1, 101)
    with RecordingWriter(path, attrs=KYIV.attrs()) as w:
        w.add_stream("emi", "emi", n_channels=4, attrs={"z_datum": "ground"}).append(
            np.zeros((x.size, 4)), time=1_772_352_000_000_000_000 + np.arange(x.size) * 10**7,
            x=x, y=np.zeros(x.size), z=np.full(x.size, 2.0))
    out = tmp_path / "cov.geojson"
    export_alarms(path, out, with_coverage=True)
    props = json.loads(out.read_text())["features"][0]["properties"]
    assert props["kind"] == "searched area" and props["area_m2"] is None
    assert "unknown" in props["note"]
    export_alarms(_recording(tmp_path / "r.h5"), out, with_coverage=True)
    assert json.loads(out.read_text())["features"][0]["properties"]["area_m2"] > 0.5
