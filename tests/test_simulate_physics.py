"""Forward-model physics sanity: loop field, dipole fall-off, viscous soil, decay laws,
radar hyperbolae and reflection polarity."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demine.errors import ConfigError
from demine.simulate import parse_scene, simulate_lane
from demine.simulate.emi import (
    EMIModel,
    dipole_response,
    loop_field,
    object_polarizability,
    polarizability_curve,
    soil_response,
)
from demine.simulate.gpr import C0, GPRModel, reflection_coefficient

QUIET_EMI = {"noise": 0.0, "pink_noise": 0.0, "drift": 0.0, "mains": 0.0}
QUIET_GPR = {"noise": 0.0, "ringing": 0.0, "wow": 0.0, "time_zero_jitter": 0.0}


def biot_savart_loop(a: float, points: np.ndarray, n: int = 20000) -> np.ndarray:
    """Plain NumPy reference: H per ampere of a loop in the z=0 plane, by summing segments."""
    phi = (np.arange(n) + 0.5) * 2 * math.pi / n
    src = np.stack([a * np.cos(phi), a * np.sin(phi), np.zeros(n)], axis=1)
    dl = np.stack([-np.sin(phi), np.cos(phi), np.zeros(n)], axis=1) * (2 * math.pi * a / n)
    r = points[:, None, :] - src[None, :, :]
    rn = np.linalg.norm(r, axis=2)[..., None]
    return (np.cross(dl[None], r) / rn**3).sum(axis=1) / (4 * math.pi)


def test_loop_field_matches_biot_savart():
    a = 0.12
    pts = np.array([[0.0, 0, -0.05], [0.05, 0, -0.1], [0.2, 0, -0.03], [0.3, 0, 0.4],
                    [0.001, 0, -0.2], [0.119, 0, -0.02]])
    ref = biot_savart_loop(a, pts)
    hr, hz = loop_field(a, pts[:, 0], pts[:, 2])
    np.testing.assert_allclose(hz, ref[:, 2], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(hr, ref[:, 0], rtol=1e-5, atol=1e-9)
    # on axis, the textbook a^2 / (2 (a^2 + z^2)^1.5)
    z = np.array([0.0, 0.1, 1.0])
    _, hz = loop_field(a, np.zeros(3), z)
    np.testing.assert_allclose(hz, a * a / (2 * (a * a + z * z) ** 1.5), rtol=1e-12)


def _sphere_response(depths: np.ndarray, a: float = 0.12, h: float = 0.05) -> np.ndarray:
    n = len(depths)
    axes = np.tile(np.eye(3), (n, 1, 1))[:1]
    curves = np.ones((1, 3, 1))
    out = [dipole_response(a, np.zeros(1), np.zeros(1), np.full(1, h), np.zeros(1),
                           np.zeros(1), np.array([-d]), axes, curves)[0, 0] for d in depths]
    return np.asarray(out)


def test_dipole_response_falls_as_distance_to_the_minus_six_far_from_the_coil():
    h = 0.05
    d = np.geomspace(1.0, 4.0, 6)
    r = _sphere_response(d, h=h)
    slope = np.polyfit(np.log(d + h), np.log(r), 1)[0]
    assert slope == pytest.approx(-6.0, abs=0.05)
    # near the coil (depth ~ radius) it falls more slowly than r^-6
    dn = np.array([0.02, 0.04])
    rn = _sphere_response(dn, h=h)
    near = math.log(rn[1] / rn[0]) / math.log((dn[1] + h) / (dn[0] + h))
    assert -6.0 < near < 0


def test_dipole_response_is_quadratic_in_the_axis_projection():
    # a thin rod (one principal value) along x gives nothing directly below the coil
    # centre (field vertical), and its full response when turned vertical
    axes_x = np.array([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]])
    axes_z = np.array([[[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]])
    curves = np.zeros((1, 3, 2))
    curves[0, 0] = [1.0, 0.5]
    args = (0.12, np.zeros(1), np.zeros(1), np.full(1, 0.05), np.zeros(1), np.zeros(1),
            np.array([-0.1]))
    flat = dipole_response(*args, axes_x, curves)
    upright = dipole_response(*args, axes_z, curves)
    assert abs(flat[0, 0]) < 1e-12 * upright[0, 0]
    _, hz = loop_field(0.12, np.zeros(1), np.array([-0.15]))
    np.testing.assert_allclose(upright[0], hz[0] ** 2 * curves[0, 0], rtol=1e-12)


def test_a_transmitter_pulse_gives_each_response_minus_itself_delayed():
    """With an on-time T, every response is its step-off law at t minus the
    same at t + T (the switch-on T earlier): soil, band-limited soil,
    conductive ground and objects alike; 0 is the step-off."""
    g = np.geomspace(1.2e-5, 1e-3, 16)
    h = np.array([0.03, 0.06])
    T = 150e-6
    for kw in ({}, {"band": (1e-7, 3e-3)}, {"conductivity": 0.5}):
        visc = np.full(2, 0.0 if "conductivity" in kw else 2e-4)
        step = soil_response(g, 0.12, h, visc, **kw)
        late = soil_response(g + T, 0.12, h, visc, **kw)
        np.testing.assert_allclose(soil_response(g, 0.12, h, visc, pulse_length=T, **kw),
                                   step - late, rtol=1e-12, atol=1e-30)
        np.testing.assert_array_equal(soil_response(g, 0.12, h, visc, pulse_length=0.0, **kw),
                                      step)
    objs = [{"class": "uxo", "x": 0.5, "y": 1.0, "depth": 0.05},
            {"class": "hot-rock", "x": 0.5, "y": 1.5, "depth": 0.05}]
    sc = _emi_scene(objs)
    sp = _emi_scene(objs, emi={"pulse_length": T})
    assert sp.emi.pulse_length == T and sc.emi.pulse_length == 0.0
    m_step, m_pulse = EMIModel(sc, 1), EMIModel(sp, 1)
    later = dataclasses.replace(sc, emi=dataclasses.replace(
        sc.emi, gate_times=tuple(np.asarray(sc.gate_times) + T)))
    np.testing.assert_allclose(m_pulse.curves, m_step.curves - EMIModel(later, 1).curves,
                               rtol=1e-12)
    # a slow steel object loses much of its late response to a short pulse
    assert abs(m_pulse.curves[0, 0, -1]) < 0.5 * abs(m_step.curves[0, 0, -1])
    # how far an object is simulated stays the step-off's (a bound for the
    # pulse's response; the continuous-wave model uses it too)
    noisy = {"noise": 5e-5, "pulse_length": T}
    np.testing.assert_array_equal(EMIModel(_emi_scene(objs, emi=noisy), 1).reach,
                                  EMIModel(_emi_scene(objs, emi={**noisy, "pulse_length": 0}),
                                           1).reach)
    with pytest.raises(ConfigError, match="pulse_length"):
        _emi_scene(objs, emi={"pulse_length": -1e-4})
    # the alternative physics' eddy-current modes the same way
    alt = {"physics": {"emi_decay": "sphere-modes"}}
    sc_alt = parse_scene({**_emi_scene_dict(objs), **alt}, "alt.toml")
    sp_alt = parse_scene({**_emi_scene_dict(objs, emi={"pulse_length": T}), **alt}, "alt.toml")
    later_alt = dataclasses.replace(sc_alt, emi=dataclasses.replace(
        sc_alt.emi, gate_times=tuple(np.asarray(sc_alt.gate_times) + T)))
    np.testing.assert_allclose(EMIModel(sp_alt, 1).curves,
                               EMIModel(sc_alt, 1).curves - EMIModel(later_alt, 1).curves,
                               rtol=1e-12)


def test_a_pulse_reaches_the_simulated_readings_and_nothing_else(tmp_path):
    """Through the whole lane simulation: viscous ground alone reads as
    1/t - 1/(t + T) in every reading; the continuous-wave detector of the same
    scene is not touched by the pulse-induction detector's pulse; the lane
    file says which pulse it simulated, its EMI stream does not declare it."""
    T = 150e-6
    soil = {"viscosity": 3e-4, "heterogeneity": 0.3}
    sc = _emi_scene([], soil=soil, emi={"pulse_length": T})
    res = simulate_lane(sc, duration=1.0, seed=4, streams=["emi"])
    g = np.asarray(sc.gate_times)
    shape = 1 / g - 1 / (g + T)
    s = res.emi["samples"].astype(np.float64) / shape[None, :]
    np.testing.assert_allclose(s, np.broadcast_to(s[:, :1], s.shape), rtol=2e-6)
    objs = [{"class": "uxo", "x": 0.5, "y": 1.0, "depth": 0.05}]
    cw = [simulate_lane(_emi_scene(objs, soil=soil, emi=emi), duration=2.0, seed=4,
                        streams=["emi", "cw"]) for emi in ({}, {"pulse_length": T})]
    np.testing.assert_array_equal(cw[0].streams["cw"]["samples"], cw[1].streams["cw"]["samples"])
    assert not np.array_equal(cw[0].emi["samples"], cw[1].emi["samples"])
    import h5py

    from demine.recording import Recording

    for i, lane in enumerate(cw):
        path = tmp_path / f"lane{i}.h5"
        lane.write(path)
        with h5py.File(path, "r") as f:
            assert f.attrs.get("emi_pulse_length") == (T if i else None)
        with Recording(path) as rec:
            assert "pulse_length" not in (rec.streams["emi"].calibration or {})


def test_pasion_oldenburg_curve_and_decay_ordering():
    t = np.geomspace(1e-5, 1e-3, 16)
    k, al, be, ga = 2.0, 3e-5, 0.8, 2e-4
    np.testing.assert_allclose(polarizability_curve(t, [k], [al], [be], [ga])[0],
                               k * (t + al) ** -be * np.exp(-t / ga), rtol=1e-12)
    scene = _emi_scene([
        {"class": "can", "x": 0.5, "y": 1.0, "depth": 0.05},
        {"class": "uxo", "x": 0.5, "y": 1.0, "depth": 0.05, "dip": 0.0},
        {"class": "ap-mine-min-metal", "x": 0.5, "y": 1.0, "depth": 0.05},
    ])
    gam = [object_polarizability(o)["gamma"][0] for o in scene.objects]
    # thick steel decays slowly, an aluminium can wall and a tiny spring fast
    assert gam[1] > 10 * gam[0] and gam[1] > 10 * gam[2]


def _emi_scene(objects, soil=None, emi=None, sweep=None):
    return parse_scene(_emi_scene_dict(objects, soil, emi, sweep), "physics.toml")


def _emi_scene_dict(objects, soil=None, emi=None, sweep=None):
    return {
        "lane": {"width": 1.0, "length": 2.0},
        "soil": {"roughness": 0.0, "conductivity": 0.0, "viscosity": 0.0,
                 **(soil or {})},
        "emi": {**QUIET_EMI, **(emi or {})},
        "sweep": {"pattern": "line", "line_x": 0.5, "speed": 0.5, "height": 0.05,
                  "height_variation": 0.0, **(sweep or {})},
        "objects": objects,
    }


def test_viscous_soil_decays_as_one_over_t_and_weakens_with_height():
    g = np.geomspace(1.2e-5, 1e-3, 16)
    h = np.array([0.02, 0.05, 0.1])
    r = soil_response(g, 0.12, h, np.full(3, 1e-4))
    # r * t is the same in every gate: a 1/t decay
    rt = r * g[None, :]
    np.testing.assert_allclose(rt, np.broadcast_to(rt[:, :1], rt.shape), rtol=1e-12)
    assert r[0, 0] > r[1, 0] > r[2, 0]
    # conductive ground: a steeper t^-2.5 decay
    rc = soil_response(g, 0.12, h, np.zeros(3), conductivity=1.0)
    slope = np.polyfit(np.log(g), np.log(rc[0]), 1)[0]
    assert slope == pytest.approx(-2.5, abs=1e-9)
    # the same through the whole lane simulation (no objects, no instrument noise)
    sc = _emi_scene([], soil={"viscosity": 3e-4, "heterogeneity": 0.3})
    res = simulate_lane(sc, duration=1.0, seed=4, streams=["emi"])
    s = res.emi["samples"].astype(np.float64) * sc.gate_times[None, :]
    np.testing.assert_allclose(s, np.broadcast_to(s[:, :1], s.shape), rtol=2e-6)
    assert np.ptp(s[:, 0]) > 0  # heterogeneous soil varies along the path


def test_single_object_response_has_its_polarizability_shape():
    sc = _emi_scene([{"class": "fragment", "x": 0.5, "y": 1.0, "depth": 0.05, "dip": 0.0}])
    model = EMIModel(sc, seed=0)
    y = np.linspace(0.6, 1.4, 81)
    v = model.clean(np.full_like(y, 0.5), y, np.full_like(y, 0.05))
    peak = int(np.argmax(v[:, 0]))
    assert abs(y[peak] - 1.0) < 0.011  # peak over the object
    p = object_polarizability(sc.objects[0])
    curve = polarizability_curve(sc.gate_times, p["k"][0], p["alpha"][0], p["beta"][0],
                                 p["gamma"][0])
    np.testing.assert_allclose(v[peak] / v[peak, 0], curve / curve[0], rtol=1e-9)
    # no object, no soil, no noise: nothing
    quiet = EMIModel(_emi_scene([]), seed=0).clean(np.full(3, 0.5), np.ones(3), np.full(3, .05))
    assert np.all(quiet == 0)


def _gpr_scene(objects, height=0.05, **soil):
    return parse_scene({
        "lane": {"width": 1.0, "length": 2.0},
        "soil": {"roughness": 0.0, "permittivity": 9.0, "conductivity": 0.001,
                 "radar_clutter_density": 0.0, **soil},
        "gpr": dict(QUIET_GPR),
        "sweep": {"pattern": "line", "line_x": 0.5, "speed": 0.2, "height": height,
                  "height_variation": 0.0},
        "objects": objects,
    }, "radar.toml")


def _object_traces(objects, height=0.05):
    """Radar response of the objects alone (traces with minus traces without)."""
    sc = _gpr_scene(objects, height)
    y = np.linspace(0.5, 1.5, 401)
    x = np.full_like(y, 0.5)
    h = np.full_like(y, height)
    t = np.zeros_like(y)
    with_obj = GPRModel(sc, 0).clean(t, x, y, h)
    without = GPRModel(sc.replace(objects=()), 0).clean(t, x, y, h)
    return sc, y, with_obj - without, without


def test_hyperbola_apex_at_object_position_and_depth_for_the_soil_velocity():
    depth = 0.10
    sc, y, diff, _ = _object_traces([{"class": "fragment", "x": 0.5, "y": 1.0,
                                      "depth": depth, "size": 0.004}])
    g = sc.gpr
    dt = g.time_window / g.samples
    v = C0 / 3.0  # permittivity 9
    t_gb = g.direct_wave_delay + 2 * 0.05 / C0
    pick = np.argmax(np.abs(diff), axis=1) * dt
    near = np.abs(y - 1.0) < 0.15
    earliest = np.where(near, pick, np.inf)
    at_apex = earliest == earliest.min()  # the traces whose pick is the earliest sample
    assert abs(y[at_apex].mean() - 1.0) <= 0.003
    assert earliest.min() == pytest.approx(t_gb + 2 * depth / v, abs=1.01 * dt)
    # the strongest reflection is at the apex too
    assert abs(y[np.argmax(np.abs(diff).max(axis=1))] - 1.0) <= 0.003
    expected = t_gb + 2.0 / v * np.sqrt((y - 1.0) ** 2 + (depth + 0.002) ** 2) - 2 * 0.002 / v
    np.testing.assert_allclose(pick[near], expected[near], atol=1.01 * dt)
    # velocity from the hyperbola: (t - t_gb)^2 = 4/v^2 (dx^2 + z^2)
    slope = np.polyfit((y[near] - 1.0) ** 2, (pick[near] - t_gb) ** 2, 1)[0]
    assert 2.0 / math.sqrt(slope) == pytest.approx(v, rel=0.03)


def test_reflection_polarity_follows_permittivity_contrast():
    assert reflection_coefficient(1.0, 9.0) < 0  # ground bounce
    signs = {}
    for name, perm in (("metal", 1e6), ("water", 80.0), ("plastic", 2.8), ("air", 1.0)):
        _, y, diff, _ = _object_traces([{"class": "rock", "x": 0.5, "y": 1.0, "depth": 0.1,
                                         "size": 0.08, "permittivity": perm}])
        apex = diff[np.argmin(np.abs(y - 1.0))]
        signs[name] = np.sign(apex[np.argmax(np.abs(apex))])
    assert signs["metal"] == signs["water"] == -1
    assert signs["plastic"] == signs["air"] == 1
    # the ground bounce has the metal's sign (antenna high enough to separate it)
    sc, _, _, base = _object_traces([], height=0.3)
    g = sc.gpr
    k = int(round((g.direct_wave_delay + 2 * 0.3 / C0) / (g.time_window / g.samples)))
    assert np.sign(base[0, k]) == -1
    # and metal reflects more strongly than plastic
    _, y, dm, _ = _object_traces([{"class": "rock", "x": 0.5, "y": 1.0, "depth": 0.1,
                                   "size": 0.08, "permittivity": 1e6}])
    _, _, dp, _ = _object_traces([{"class": "rock", "x": 0.5, "y": 1.0, "depth": 0.1,
                                   "size": 0.08, "permittivity": 2.8}])
    assert np.abs(dm).max() > 3 * np.abs(dp).max()


def test_conductive_soil_attenuates_deeper_reflections():
    obj = [{"class": "fragment", "x": 0.5, "y": 1.0, "depth": 0.2, "size": 0.03}]
    amps = []
    for sigma in (0.001, 0.05):
        sc = _gpr_scene(obj, conductivity=sigma)
        y = np.array([1.0])
        a = GPRModel(sc, 0).clean(np.zeros(1), np.full(1, 0.5), y, np.full(1, 0.05))
        b = GPRModel(sc.replace(objects=()), 0).clean(np.zeros(1), np.full(1, 0.5), y,
                                                     np.full(1, 0.05))
        amps.append(np.abs(a - b).max())
    alpha = 188.37 * np.array([0.001, 0.05]) / 3.0
    assert amps[1] / amps[0] == pytest.approx(math.exp(-2 * 0.2 * (alpha[1] - alpha[0])),
                                              rel=0.02)


def test_radar_synthesis_matches_a_per_event_reference():
    """The table-driven wavelet placement equals summing exact Ricker wavelets."""
    from demine.simulate import LaneSimulator
    from demine.simulate.gpr import ricker

    sim = LaneSimulator("battle-area", seed=0)
    sc = sim.scene.replace(gpr=dataclasses.replace(sim.scene.gpr, **QUIET_GPR))
    model = GPRModel(sc, 0)
    t = 40.0 + np.arange(50) / sc.gpr.rate
    x, y, h = sim.trajectory(t)
    fast = model.clean(t, x, y, h)
    ii, tt, aa = model.events(t, x, y, h)
    ref = np.zeros_like(fast)
    for i, tk, ak in zip(ii, tt, aa, strict=True):
        ref[i] += ak * ricker(model.time - tk, sc.gpr.frequency)
    # wavelet timing quantised to dt/64 and truncated at 1.1 periods: tiny differences
    assert np.abs(fast - ref).max() < 0.02 * np.abs(ref).max()
    assert np.abs(fast - ref).mean() < 1e-3 * np.abs(ref).max()


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 399), max_size=4, unique=True))
def test_noise_free_models_do_not_depend_on_chunking(cuts):
    from demine.simulate import LaneSimulator

    sim = LaneSimulator("benign-soil", seed=0)
    t = 50.0 + np.arange(400) / 400.0
    x, y, h = sim.trajectory(t)
    edges = [0, *sorted(cuts), 400]
    for _model, call in ((sim.emi_model, lambda a, b: sim.emi_model.clean(x[a:b], y[a:b],
                                                                          h[a:b])),
                         (sim.gpr_model, lambda a, b: sim.gpr_model.clean(t[a:b], x[a:b],
                                                                          y[a:b], h[a:b]))):
        whole = call(0, 400)
        parts = np.concatenate([call(a, b) for a, b in zip(edges[:-1], edges[1:],
                                                           strict=True)])
        np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-15)


def test_cw_detector_soil_line_and_metal_phases():
    """CW: viscous soil sits at a small constant phase lag (-atan(pi/2 dchi/chi));
    thick or large conductors tend to 180 degrees, small thin pieces lag less."""
    from demine.simulate import LaneSimulator

    chi, dchi = 1e-3, 2e-5
    sc = _emi_scene([], soil={"magnetic_susceptibility": chi, "viscosity": dchi,
                              "heterogeneity": 0.0})
    sc = sc.replace(cw=dataclasses.replace(sc.cw, noise=0.0, drift=0.0))
    sim = LaneSimulator(sc, 0)
    h = np.array([0.02, 0.05, 0.1])
    v = sim.cw_model.clean(np.full(3, 0.5), np.ones(3), h)
    np.testing.assert_allclose(np.angle(v), -np.arctan(np.pi / 2 * dchi / chi), rtol=1e-9)
    assert abs(v[0]) > abs(v[1]) > abs(v[2])  # the soil signal weakens with height
    phases = {}
    for cls in ("can", "ap-mine-min-metal", "at-mine"):
        s2 = _emi_scene([{"class": cls, "x": 0.5, "y": 1.0, "depth": 0.03, "dip": 0.0}],
                        soil={"magnetic_susceptibility": 0.0})
        m = LaneSimulator(s2.replace(objects=tuple(
            dataclasses.replace(o, gain_jitter=1.0, decay_jitter=1.0) for o in s2.objects)),
            0).cw_model
        phases[cls] = np.degrees(np.angle(m.clean(np.full(1, 0.5), np.ones(1),
                                                  np.full(1, 0.05))[0]))
    assert abs(phases["at-mine"]) > abs(phases["can"]) > abs(phases["ap-mine-min-metal"])
    assert abs(phases["at-mine"]) > 170
    # readings: amplitude and phase columns, deterministic
    r = simulate_lane(sc, 1.0, seed=3, streams=["cw"]).streams["cw"]
    assert r["samples"].shape == (50, 2) and np.all(r["samples"][:, 0] > 0)


def test_alternative_physics_models():
    from demine.simulate.emi import sphere_modes_curve
    from demine.simulate.gpr import gaussian_derivative, refracted_distance
    from demine.simulate.scene import Physics

    # sphere eddy-current modes: ~t^-1/2 well before gamma, ~exp(-t/gamma) well after
    gamma = 1e-3
    t = np.array([1e-7, 4e-7, 3e-3, 4e-3])
    c = sphere_modes_curve(t, np.array([1.0]), np.array([gamma]), n_modes=2000)[0]
    assert math.log(c[1] / c[0]) / math.log(4.0) == pytest.approx(-0.5, abs=0.05)
    assert c[3] / c[2] == pytest.approx(math.exp(-1e-3 / gamma), rel=1e-3)
    # band-limited viscous soil: 1/t times the band factor
    g = np.geomspace(1e-5, 1e-3, 8)
    r = soil_response(g, 0.12, np.array([0.05]), np.array([1e-4]), band=(1e-7, 3e-3))[0]
    band = np.exp(-g / 3e-3) - np.exp(-g / 1e-7)
    np.testing.assert_allclose(r * g / band, (r * g / band)[0], rtol=1e-12)
    assert r[-1] * g[-1] < 0.8 * r[0] * g[0]  # visibly not 1/t at the late gates
    # antisymmetric pulse
    tau = np.linspace(-1e-9, 1e-9, 201)
    w = gaussian_derivative(tau, 1.5e9)
    np.testing.assert_allclose(w, -w[::-1], atol=1e-15)
    assert np.abs(w).max() == pytest.approx(1.0, rel=5e-3)
    # refraction: Fermat's principle by brute force over the crossing point
    n = 3.0
    for h, rho, d in ((0.05, 0.2, 0.1), (0.1, 0.05, 0.2), (0.02, 0.4, 0.05)):
        xs = np.linspace(0, rho, 200001)
        best = np.min(np.sqrt(h * h + xs * xs) / n + np.sqrt(d * d + (rho - xs) ** 2)) - h / n
        assert refracted_distance(np.array([h]), np.array([rho]), np.array([d]), n)[0] == (
            pytest.approx(best, abs=1e-7))
        assert best < math.hypot(rho, d)  # the bent ray is faster: flatter hyperbola
    assert refracted_distance(np.array([0.05]), np.zeros(1), np.array([0.1]), n)[0] == (
        pytest.approx(0.1))
    # a lane with every alternative runs and differs from the default
    sc = parse_scene({"lane": {"width": 1, "length": 1},
                      "physics": {"emi_decay": "sphere-modes",
                                  "soil_relaxation": "band-limited",
                                  "gpr_wavelet": "gaussian-derivative",
                                  "gpr_refraction": True},
                      "objects": [{"class": "fragment", "x": 0.5, "y": 0.3, "depth": 0.05}]})
    assert sc.physics == Physics.alternative()
    alt = simulate_lane(sc, 1.0, seed=0)
    base = simulate_lane(sc.replace(physics=Physics()), 1.0, seed=0)
    assert not np.array_equal(alt.emi["samples"], base.emi["samples"])
    assert not np.array_equal(alt.gpr["samples"], base.gpr["samples"])
