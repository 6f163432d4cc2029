"""Scene files: shipped scenes parse, bad files fail with the field named."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from demine.errors import ConfigError
from demine.simulate import CLASS_DEFAULTS, list_scenes, load_scene, parse_scene
from demine.simulate.scene import topp_permittivity

MINIMAL = """
[lane]
width = 1.0
length = 2.0
"""


def test_shipped_scenes_parse():
    names = list_scenes()
    for required in ("benign-soil", "magnetic-laterite", "battle-area", "empty-lane"):
        assert required in names
    for name in names:
        sc = load_scene(name)
        assert sc.name == name
        t = sc.truth()
        assert set(t) == {"id", "type", "is_mine", "x", "y", "depth", "metal_mass", "notes"}
        assert len(t["id"]) == len(sc.objects) == len(set(t["id"].tolist()))
        assert np.all(t["depth"] >= 0)
        assert len(sc.gate_times) >= 4 and np.all(np.diff(sc.gate_times) > 0)
    assert len(load_scene("empty-lane").objects) == 0
    # laterite is far more viscous than benign loam
    assert load_scene("magnetic-laterite").soil.viscosity > 50 * load_scene(
        "benign-soil").soil.viscosity
    battle = load_scene("battle-area")
    clutter = sum(not o.is_mine for o in battle.objects)
    assert clutter >= 5 * sum(o.is_mine for o in battle.objects)


def test_scene_contents_cover_the_classes():
    classes = {o.cls for name in list_scenes() for o in load_scene(name).objects}
    for c in ("ap-mine", "ap-mine-min-metal", "at-mine", "uxo", "fragment", "nail", "can",
              "cartridge", "rock", "root"):
        assert c in classes
    # minimum-metal AP mines carry under a gram of metal (mass stored in kg)
    mm = [o for o in load_scene("benign-soil").objects if o.cls == "ap-mine-min-metal"]
    assert mm and all(0 < o.metal_mass < 0.001 for o in mm)


def test_minimal_scene_defaults_and_topp():
    sc = parse_scene(tomllib.loads(MINIMAL), "mini.toml")
    assert sc.width == 1.0 and sc.length == 2.0 and sc.objects == ()
    assert sc.soil.permittivity == pytest.approx(topp_permittivity(0.1))
    # Topp: dry soil ~3, wet soil ~ 20+
    assert topp_permittivity(0.0) == pytest.approx(3.03)
    assert 20 < topp_permittivity(0.35) < 30


def test_file_and_name_loading(tmp_path):
    p = tmp_path / "lane.toml"
    p.write_text(MINIMAL + '\n[[objects]]\nclass = "nail"\nx = 0.5\ny = 1.0\ndepth = 0.02\n')
    sc = load_scene(p)
    assert sc.objects[0].cls == "nail"
    assert sc.objects[0].metal_mass == pytest.approx(CLASS_DEFAULTS["nail"]["metal_mass_g"]
                                                     / 1000)
    assert load_scene(str(p)).objects == sc.objects


def test_random_clutter_is_reproducible_by_layout_seed():
    text = MINIMAL + """
[scene]
layout_seed = {seed}
[[clutter]]
class = "fragment"
count = 12
depth = [0.0, 0.1]
metal_mass_g = [1.0, 10.0]
"""
    a = parse_scene(tomllib.loads(text.format(seed=1)))
    b = parse_scene(tomllib.loads(text.format(seed=1)))
    c = parse_scene(tomllib.loads(text.format(seed=2)))
    assert a.objects == b.objects
    assert a.objects != c.objects
    assert len(a.objects) == 12
    for o in a.objects:
        assert 0 <= o.x <= 1 and 0 <= o.y <= 2 and 0 <= o.depth <= 0.1
        assert 0.001 <= o.metal_mass <= 0.010 + 1e-12


@pytest.mark.parametrize(
    "extra, field",
    [
        ('[soil]\nviscocity = 1e-5\n', "viscocity"),
        ('[soil]\nconductivity = "high"\n', "conductivity"),
        ('[soil]\nmoisture = 0.9\n', "moisture"),
        ('[emi]\nrate = -5\n', "rate"),
        ('[emi]\ngate_times = [1e-5, 5e-6]\n', "gate_times"),
        ('[sweep]\npattern = "zigzag"\n', "pattern"),
        ('[gpr]\ndtype = "float64"\n', "dtype"),
        ('[[objects]]\nclass = "teapot"\nx = 0\ny = 0\ndepth = 0\n', "class"),
        ('[[objects]]\nclass = "nail"\nx = 0\ny = 0\n', "depth"),
        ('[[objects]]\nclass = "nail"\nx = 0\ny = 0\ndepth = -0.1\n', "depth"),
        ('[[objects]]\nclass = "rock"\nx = 0\ny = 0\ndepth = 0.1\nmetal_mass_g = 3\n',
         "metal_mass_g"),
        ('[[objects]]\nid = "A"\nclass = "nail"\nx = 0\ny = 0\ndepth = 0\n'
         '[[objects]]\nid = "A"\nclass = "nail"\nx = 0\ny = 1\ndepth = 0\n', "id"),
        ('[[clutter]]\nclass = "nail"\ncount = 3\ndepth = [0.2, 0.1]\n', "depth"),
        ('[bogus]\nx = 1\n', "bogus"),
    ],
)
def test_bad_fields_are_named(extra, field):
    with pytest.raises(ConfigError, match=field) as exc:
        parse_scene(tomllib.loads(MINIMAL + extra), "bad.toml")
    assert "bad.toml" in str(exc.value)


def test_missing_lane_size_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="width"):
        parse_scene({"lane": {"length": 2.0}}, "x.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("[lane\nwidth = 1")
    with pytest.raises(ConfigError, match="broken.toml.*not valid TOML"):
        load_scene(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_scene(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="shipped"):
        load_scene("no-such-scene")


def test_scene_file_shipped_as_package_data():
    from importlib import resources

    files = {p.name for p in (resources.files("demine.simulate") / "scenes").iterdir()}
    assert "benign-soil.toml" in files
    # and the shipped text is what load_scene parses
    text = (resources.files("demine.simulate") / "scenes" / "empty-lane.toml").read_text()
    assert load_scene("empty-lane") == parse_scene(tomllib.loads(text), "empty-lane.toml")


def test_layout_seed_redraws_random_layout_but_keeps_placed_objects():
    a = load_scene("battle-area")
    b = load_scene("battle-area", layout_seed=a.layout_seed + 1)
    placed = [o.id for o in a.objects if o.id.startswith("M0")]
    assert placed
    for oid in placed:
        oa = next(o for o in a.objects if o.id == oid)
        ob = next(o for o in b.objects if o.id == oid)
        assert (oa.x, oa.y, oa.depth, oa.cls) == (ob.x, ob.y, ob.depth, ob.cls)
    ca = [(o.x, o.y) for o in a.objects if o.id.startswith("C")]
    cb = [(o.x, o.y) for o in b.objects if o.id.startswith("C")]
    assert len(ca) == len(cb) and ca != cb
    assert load_scene("battle-area", layout_seed=a.layout_seed) == a
    # objects of one class differ a little from each other (variability)
    jit = [o.decay_jitter for o in a.objects if o.cls == "ap-mine"]
    assert len(set(jit)) == len(jit) and all(0.5 < j < 2 for j in jit)
    flat = parse_scene({"scene": {"variability": 0.0}, "lane": {"width": 1, "length": 1},
                        "objects": [{"class": "nail", "x": 0, "y": 0, "depth": 0}]})
    assert flat.objects[0].decay_jitter == 1.0 == flat.objects[0].gain_jitter


def test_random_minefield_spacing_holds_for_many_layouts():
    for seed in range(20):
        sc = load_scene("random-minefield", layout_seed=seed)
        mines = [o for o in sc.objects if o.is_mine]
        assert len(mines) == 9
        for i, a in enumerate(mines):
            for b in mines[i + 1:]:
                assert np.hypot(a.x - b.x, a.y - b.y) >= 0.6
    with pytest.raises(ConfigError, match="min_spacing"):
        parse_scene({"lane": {"width": 0.2, "length": 0.2},
                     "clutter": [{"class": "nail", "count": 5, "min_spacing": 1.0}]}, "t.toml")
