"""Scene files: a test lane, its soil, buried objects, the sweep and the sensors.

A scene is a TOML file.  Every section and field is optional except
``[lane]`` ``width``/``length``; anything unknown or out of range raises
:class:`demine.errors.ConfigError` naming the file, section and field.

Coordinates are lane coordinates in metres: ``x`` across the lane (the
operator's side-to-side sweep direction), ``y`` along it (the advancing
direction), the ground surface at height 0.  With ``bearing_deg = 0`` (the
default) ``x`` points east and ``y`` north, which is what recordings call
local east/north.  ``depth`` of an object is the depth of its top below the
surface (as in the truth table).

Example::

    [scene]
    name = "benign-soil"
    layout_seed = 7            # random clutter placement, soil pattern, variability
    variability = 0.15         # object-to-object spread of EMI amplitude and decay

    [lane]
    width = 1.0                # m across
    length = 6.0               # m along
    anchor_lon = 104.9
    anchor_lat = 12.5          # WGS 84 of lane origin (x=0, y=0)

    [soil]
    magnetic_susceptibility = 1e-4   # SI (static)
    viscosity = 2e-6                 # frequency-dependent susceptibility (per ln-decade)
    conductivity = 0.005             # S/m
    moisture = 0.12                  # volumetric; gives permittivity by Topp's law
                                     # unless permittivity is given

    [[objects]]
    class = "ap-mine-min-metal"
    x = 0.5
    y = 2.0
    depth = 0.05

    [[clutter]]                      # random objects drawn with layout_seed
    class = "fragment"
    count = 20
    depth = [0.0, 0.15]
    metal_mass_g = [1.0, 20.0]
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._params import check_number
from ..errors import ConfigError

__all__ = [
    "BuriedObject",
    "CLASS_DEFAULTS",
    "CWConfig",
    "EMIConfig",
    "GPRConfig",
    "GPSConfig",
    "Layer",
    "METALS",
    "Physics",
    "Scene",
    "Soil",
    "Sweep",
    "list_scenes",
    "load_scene",
    "parse_scene",
    "topp_permittivity",
]

#: Metal properties: conductivity S/m, relative permeability (effective, for
#: thin parts), density kg/m^3.
METALS: dict[str, tuple[float, float, float]] = {
    "steel": (5.0e6, 20.0, 7850.0),
    "stainless": (1.4e6, 1.0, 8000.0),
    "aluminium": (3.5e7, 1.0, 2700.0),
    "brass": (1.5e7, 1.0, 8500.0),
    "copper": (5.8e7, 1.0, 8960.0),
    "none": (0.0, 1.0, 1.0),
}

#: Radar permittivity used for a metallic body (reflection coefficient -1).
METAL_PERMITTIVITY = 1.0e6

# class -> defaults.  metal_shape: "compact" (solid piece), "plate" (thin flat),
# "rod" (thin elongated), "shell" (closed thin wall: cans, cases, casings).
# shape (radar body): "disc" (flat top of diameter size), "sphere", "rod" (length size).
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ap-mine": dict(is_mine=True, metal_mass_g=3.0, metal="steel", metal_shape="compact",
                    metal_size=0.02, metal_thickness=0.002, shape="disc", size=0.11,
                    height=0.055, permittivity=3.0, dip=0.0,
                    notes="AP blast mine-like, plastic body, steel fuze parts"),
    "ap-mine-min-metal": dict(is_mine=True, metal_mass_g=0.6, metal="steel",
                              metal_shape="compact", metal_size=0.012,
                              metal_thickness=0.001, shape="disc", size=0.07, height=0.035,
                              permittivity=2.9, dip=0.0,
                              notes="minimum-metal AP mine-like (<1 g: firing pin, spring)"),
    "at-mine": dict(is_mine=True, metal_mass_g=2500.0, metal="steel", metal_shape="shell",
                    metal_size=0.3, metal_thickness=0.0012, shape="disc", size=0.3,
                    height=0.1, permittivity=METAL_PERMITTIVITY, dip=0.0,
                    notes="AT mine-like, steel case"),
    "at-mine-min-metal": dict(is_mine=True, metal_mass_g=8.0, metal="steel",
                              metal_shape="compact", metal_size=0.03, metal_thickness=0.002,
                              shape="disc", size=0.3, height=0.1, permittivity=3.2, dip=0.0,
                              notes="AT mine-like, plastic case, small metal fuze"),
    "uxo": dict(is_mine=True, metal_mass_g=1300.0, metal="steel", metal_shape="shell",
                metal_size=0.25, metal_thickness=0.006, shape="rod", size=0.25, height=0.06,
                permittivity=METAL_PERMITTIVITY, dip=None,
                notes="UXO-like (60 mm mortar body), hazardous target"),
    "fragment": dict(is_mine=False, metal_mass_g=5.0, metal="steel", metal_shape="plate",
                     metal_size=0.03, metal_thickness=0.003, shape="sphere", size=0.03,
                     height=0.01, permittivity=METAL_PERMITTIVITY, dip=None,
                     notes="steel fragment"),
    "nail": dict(is_mine=False, metal_mass_g=3.0, metal="steel", metal_shape="rod",
                 metal_size=0.06, metal_thickness=0.003, shape="rod", size=0.06, height=0.003,
                 permittivity=METAL_PERMITTIVITY, dip=None, notes="steel nail"),
    "can": dict(is_mine=False, metal_mass_g=15.0, metal="aluminium", metal_shape="shell",
                metal_size=0.1, metal_thickness=1.0e-4, shape="sphere", size=0.1, height=0.066,
                permittivity=METAL_PERMITTIVITY, dip=None, notes="aluminium can"),
    "cartridge": dict(is_mine=False, metal_mass_g=6.0, metal="brass", metal_shape="shell",
                      metal_size=0.05, metal_thickness=5.0e-4, shape="rod", size=0.05,
                      height=0.012, permittivity=METAL_PERMITTIVITY, dip=None,
                      notes="brass cartridge case"),
    "rock": dict(is_mine=False, metal_mass_g=0.0, metal="none", metal_shape="compact",
                 metal_size=0.0, metal_thickness=0.0, shape="sphere", size=0.1, height=0.1,
                 permittivity=5.0, dip=0.0, notes="rock"),
    "hot-rock": dict(is_mine=False, metal_mass_g=0.0, metal="none", metal_shape="compact",
                     metal_size=0.0, metal_thickness=0.0, shape="sphere", size=0.08,
                     height=0.08, permittivity=9.0, dip=0.0, magnetic_viscosity=0.02,
                     notes="magnetic (viscous) rock, e.g. laterite nodule"),
    "root": dict(is_mine=False, metal_mass_g=0.0, metal="none", metal_shape="compact",
                 metal_size=0.0, metal_thickness=0.0, shape="rod", size=0.5, height=0.03,
                 permittivity=20.0, dip=90.0, notes="tree root"),
    "void": dict(is_mine=False, metal_mass_g=0.0, metal="none", metal_shape="compact",
                 metal_size=0.0, metal_thickness=0.0, shape="sphere", size=0.08, height=0.08,
                 permittivity=1.0, dip=0.0, notes="air void"),
}

_METAL_SHAPES = ("compact", "plate", "rod", "shell")
_BODY_SHAPES = ("disc", "sphere", "rod")
_PATTERNS = ("sweep", "lines", "line")
_EPOCH_DEFAULT = "2026-03-01T08:00:00Z"


def topp_permittivity(moisture: float) -> float:
    """Relative permittivity of mineral soil from volumetric moisture (Topp et al. 1980)."""
    th = float(moisture)
    return 3.03 + 9.3 * th + 146.0 * th**2 - 76.7 * th**3


@dataclass(frozen=True)
class Layer:
    """A flat soil interface at ``depth`` below which the soil has ``permittivity``."""

    depth: float
    permittivity: float
    conductivity: float = 0.0


@dataclass(frozen=True)
class Soil:
    """Soil electromagnetic properties (SI)."""

    magnetic_susceptibility: float = 1.0e-4
    viscosity: float = 2.0e-6
    permittivity: float = 6.0
    conductivity: float = 0.005
    moisture: float = 0.1
    roughness: float = 0.003
    heterogeneity: float = 0.2
    radar_clutter_density: float = 20.0
    layers: tuple[Layer, ...] = ()

    @property
    def velocity(self) -> float:
        """Radar wave velocity in the top soil, m/s."""
        return 299_792_458.0 / math.sqrt(self.permittivity)

    @property
    def attenuation(self) -> float:
        """Radar amplitude attenuation in Np/m (low-loss approximation)."""
        return 188.37 * self.conductivity / math.sqrt(self.permittivity)


@dataclass(frozen=True)
class BuriedObject:
    """One buried object; ``depth`` is the depth of its top (m), mass in kg."""

    id: str
    cls: str
    x: float
    y: float
    depth: float
    is_mine: bool
    metal_mass: float
    metal: str
    metal_shape: str
    metal_size: float
    metal_thickness: float
    shape: str
    size: float
    height: float
    permittivity: float
    azimuth: float
    dip: float
    magnetic_viscosity: float = 0.0
    notes: str = ""
    polarizability: Mapping[str, Any] | None = None
    #: Object-to-object variability (multiplies the EMI amplitude and decay time).
    gain_jitter: float = 1.0
    decay_jitter: float = 1.0

    @property
    def centre_depth(self) -> float:
        """Depth of the body's centre (where the induced dipole sits), m."""
        return self.depth + 0.5 * self.height

    @property
    def metal_depth(self) -> float:
        """Depth of the metal's centre (the induced dipole), m.

        In a non-metallic body (plastic-cased mine) the metal parts (fuze,
        striker, spring) sit just under the top; otherwise the body centre.
        """
        if self.permittivity < METAL_PERMITTIVITY and self.metal_mass > 0:
            return self.depth + min(0.5 * self.height, 0.5 * self.metal_size + 0.005)
        return self.centre_depth

    @property
    def axis(self) -> np.ndarray:
        """Unit vector of the body axis (rod axis, plate/disc normal), z up."""
        az = math.radians(self.azimuth)
        dp = math.radians(self.dip)
        return np.array([math.sin(dp) * math.sin(az), math.sin(dp) * math.cos(az),
                         math.cos(dp)])


@dataclass(frozen=True)
class Sweep:
    """How the sensor head moves over the lane."""

    pattern: str = "sweep"
    speed: float = 0.7
    sweep_width: float | None = None
    advance: float = 0.04
    height: float = 0.05
    height_variation: float = 0.01
    lift: float = 0.03
    start_y: float | None = None
    end_y: float | None = None
    line_spacing: float = 0.1
    line_x: float | None = None
    turn_time: float = 0.5


@dataclass(frozen=True)
class EMIConfig:
    """Pulse-induction detector: gates, coil, rate, noise (volts)."""

    rate: float = 1000.0
    gate_times: tuple[float, ...] = ()
    coil_radius: float = 0.12
    gain: float = 1000.0
    noise: float = 5.0e-5
    pink_noise: float = 3.0e-5
    drift: float = 5.0e-4
    mains: float = 1.0e-5
    mains_frequency: float = 50.0
    soil_gain: float = 0.22
    clock_ppm: float = 30.0
    full_scale: float = 10.0
    device: str = "simulated PI detector"
    #: transmitter on-time (s) before each switch-off; 0: a step-off (a pulse
    #: long enough for every response to reach its steady state)
    pulse_length: float = 0.0


@dataclass(frozen=True)
class GPRConfig:
    """Ground-penetrating radar: time window, wavelet, rate, noise (relative units)."""

    rate: float = 400.0
    samples: int = 512
    time_window: float = 16.0e-9
    frequency: float = 1.5e9
    stacking: int = 4
    dtype: str = "int16"
    amplitude: float = 12000.0
    noise: float = 0.004
    direct_wave_delay: float = 2.0e-9
    ringing: float = 0.15
    wow: float = 0.03
    beam_width_deg: float = 40.0
    encoder_resolution: float = 0.001
    time_zero_jitter: float = 5.0e-12
    clock_ppm: float = -20.0
    device: str = "simulated 1.5 GHz GPR"


@dataclass(frozen=True)
class CWConfig:
    """Continuous-wave (induction-balance) detector printing amplitude and phase."""

    rate: float = 50.0
    frequency: float = 8000.0
    coil_radius: float = 0.1
    gain: float = 1000.0
    soil_gain: float = 1.0
    noise: float = 2.0e-4
    drift: float = 2.0e-3
    phase_offset_deg: float = 0.0
    clock_ppm: float = 50.0
    device: str = "simulated CW induction-balance detector"


@dataclass(frozen=True)
class GPSConfig:
    """RTK-like position tracker on the sensor head (NMEA 0183)."""

    rate: float = 10.0
    fix_quality: int = 4
    satellites: int = 16
    hdop: float = 0.6
    position_noise: float = 0.01
    talker: str = "GN"
    latency: float = 0.03
    device: str = "simulated RTK tracker"


@dataclass(frozen=True)
class Physics:
    """Which variant of each forward model to use.

    The defaults are the models described in the module docs.  The
    alternatives are different, equally physical descriptions, so a method
    developed on one can be checked on the other (``Physics.alternative()``):

    * ``emi_decay = "sphere-modes"``: each principal polarizability decays as
      the eddy-current modes of a conducting sphere, ``sum_k exp(-k^2 t /
      gamma)`` (equal weights, 40 modes: ``t^-1/2`` early, exponential late)
      instead of the Pasion–Oldenburg law;
    * ``soil_relaxation = "band-limited"``: viscous soil with relaxation times
      log-uniform between ``soil_tau_min`` and ``soil_tau_max`` only, so the
      decay is ``(exp(-t/tau_max) - exp(-t/tau_min)) / t``, not exactly 1/t;
    * ``gpr_wavelet = "gaussian-derivative"``: first derivative of a
      Gaussian (an antisymmetric pulse) instead of a Ricker wavelet;
    * ``gpr_refraction = true``: travel times bent at the ground surface
      (Snell's law between the antenna in air and the scatterer in soil)
      instead of straight vertical air paths.
    """

    emi_decay: str = "pasion-oldenburg"
    soil_relaxation: str = "log-uniform"
    soil_tau_min: float = 1.0e-7
    soil_tau_max: float = 3.0e-3
    gpr_wavelet: str = "ricker"
    gpr_refraction: bool = False

    @classmethod
    def alternative(cls) -> Physics:
        """Every model switched to its alternative."""
        return cls(emi_decay="sphere-modes", soil_relaxation="band-limited",
                   gpr_wavelet="gaussian-derivative", gpr_refraction=True)


@dataclass(frozen=True)
class Scene:
    """A simulated test lane: geometry, soil, objects, sweep and sensors."""

    name: str
    width: float
    length: float
    description: str = ""
    anchor_lon: float = 0.0
    anchor_lat: float = 0.0
    anchor_alt: float = 0.0
    bearing_deg: float = 0.0
    start_time_ns: int = 0
    layout_seed: int = 0
    soil: Soil = field(default_factory=Soil)
    sweep: Sweep = field(default_factory=Sweep)
    emi: EMIConfig = field(default_factory=EMIConfig)
    gpr: GPRConfig = field(default_factory=GPRConfig)
    gps: GPSConfig = field(default_factory=GPSConfig)
    cw: CWConfig = field(default_factory=CWConfig)
    physics: Physics = field(default_factory=Physics)
    objects: tuple[BuriedObject, ...] = ()
    source: str = "<scene>"

    @property
    def gate_times(self) -> np.ndarray:
        """EMI gate centre times, seconds."""
        return np.asarray(self.emi.gate_times, dtype=np.float64)

    def replace(self, **changes: Any) -> Scene:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def truth(self) -> dict[str, np.ndarray]:
        """Ground truth as columns ready for ``RecordingWriter.add_truth``."""
        objs = self.objects
        return {
            "id": np.array([o.id for o in objs], dtype="S32"),
            "type": np.array([o.cls for o in objs], dtype="S32"),
            "is_mine": np.array([int(o.is_mine) for o in objs], dtype=np.int8),
            "x": np.array([o.x for o in objs], dtype=np.float64),
            "y": np.array([o.y for o in objs], dtype=np.float64),
            "depth": np.array([o.depth for o in objs], dtype=np.float64),
            "metal_mass": np.array([o.metal_mass for o in objs], dtype=np.float64),
            "notes": np.array([o.notes.encode()[:128] for o in objs], dtype="S128"),
        }


# --------------------------------------------------------------------------- parsing
class _Section:
    """Typed access to one TOML table that remembers which keys were used."""

    def __init__(self, data: Any, where: str, src: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: {where} must be a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.src = src
        self.used: set[str] = set()

    def err(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.src}: {self.where} field {key!r}: {why}")

    def num(self, key: str, default: float | None, *, lo: float | None = None,
            hi: float | None = None, lo_open: bool = False, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.err(key, "is required")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(key, f"must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise self.err(key, f"must be finite, got {v}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.err(key, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(key, f"must be <= {hi}, got {v}")
        return v

    def integer(self, key: str, default: int, *, lo: int | None = None,
                hi: int | None = None) -> int:
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"must be an integer, got {v!r}")
        if lo is not None and v < lo:
            raise self.err(key, f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(key, f"must be <= {hi}, got {v}")
        return int(v)

    def string(self, key: str, default: str | None, choices: tuple[str, ...] | None = None
               ) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if not isinstance(v, str):
            raise self.err(key, f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.err(key, f"must be one of {', '.join(choices)}; got {v!r}")
        return v

    def boolean(self, key: str, default: bool | None) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v

    def num_range(self, key: str, default: tuple[float, float], *, lo: float | None = None
                  ) -> tuple[float, float]:
        """A number or a two-element [min, max] list."""
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v, v]
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in v)):
            raise self.err(key, f"must be a number or [min, max], got {v!r}")
        a, b = float(v[0]), float(v[1])
        if not (math.isfinite(a) and math.isfinite(b)) or b < a:
            raise self.err(key, f"must be [min, max] with min <= max, got {v!r}")
        if lo is not None and a < lo:
            raise self.err(key, f"must be >= {lo}, got {v!r}")
        return a, b

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ConfigError(f"{self.src}: {self.where} has unknown field {extra[0]!r}")


def _parse_time(sec: _Section, key: str, default: str) -> int:
    sec.used.add(key)
    v = sec.data.get(key, default)
    import datetime as _dt

    if isinstance(v, _dt.datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as exc:
            raise sec.err(key, f"is not an ISO 8601 time: {v!r}") from exc
    else:
        raise sec.err(key, f"must be an ISO 8601 UTC time, got {v!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return int(calendar.timegm(dt.utctimetuple())) * 1_000_000_000 + dt.microsecond * 1000


def _gates(sec: _Section) -> tuple[float, ...]:
    sec.used.add("gate_times")
    if "gate_times" in sec.data:
        v = sec.data["gate_times"]
        if (not isinstance(v, list) or not v
                or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in v)):
            raise sec.err("gate_times", "must be a list of numbers (seconds)")
        g = np.asarray(v, dtype=float)
        if len(g) < 1 or len(g) > 64 or np.any(g <= 0) or np.any(np.diff(g) <= 0):
            raise sec.err("gate_times", "must be 1-64 increasing positive times in seconds")
        for k in ("gates", "first_gate", "last_gate"):
            sec.used.add(k)
        return tuple(float(x) for x in g)
    n = sec.integer("gates", 16, lo=1, hi=64)
    t0 = sec.num("first_gate", 1.2e-5, lo=1e-7, hi=0.1, lo_open=True)
    t1 = sec.num("last_gate", 1.0e-3, lo=1e-7, hi=0.1, lo_open=True)
    if n > 1 and t1 <= t0:
        raise sec.err("last_gate", f"must be later than first_gate ({t0}), got {t1}")
    return tuple(float(x) for x in np.geomspace(t0, t1, n))


def _parse_object(d: Any, where: str, src: str, idx: int, rng: np.random.Generator | None,
                  width: float, length: float) -> BuriedObject:
    sec = _Section(d, where, src)
    cls = sec.string("class", None, tuple(CLASS_DEFAULTS))
    if cls is None:
        raise sec.err("class", f"is required (one of {', '.join(CLASS_DEFAULTS)})")
    dfl = CLASS_DEFAULTS[cls]
    oid = sec.string("id", None)
    x = sec.num("x", None, required=rng is None)
    y = sec.num("y", None, required=rng is None)
    depth = sec.num("depth", None, lo=0.0, hi=5.0, required=rng is None)
    mass_g = sec.num("metal_mass_g", dfl["metal_mass_g"], lo=0.0, hi=1e6)
    metal = sec.string("metal", dfl["metal"], tuple(METALS))
    metal_shape = sec.string("metal_shape", dfl["metal_shape"], _METAL_SHAPES)
    metal_size = sec.num("metal_size", dfl["metal_size"], lo=0.0, hi=5.0)
    metal_thickness = sec.num("metal_thickness", dfl["metal_thickness"], lo=0.0, hi=1.0)
    shape = sec.string("shape", dfl["shape"], _BODY_SHAPES)
    size = sec.num("size", dfl["size"], lo=0.001, hi=5.0)
    height = sec.num("height", dfl["height"], lo=0.0, hi=5.0)
    perm = sec.num("permittivity", dfl["permittivity"], lo=1.0)
    az = sec.num("azimuth", None, lo=-360.0, hi=360.0)
    dip = sec.num("dip", dfl["dip"], lo=0.0, hi=180.0)
    visc = sec.num("magnetic_viscosity", dfl.get("magnetic_viscosity", 0.0), lo=0.0, hi=1.0)
    is_mine = sec.boolean("is_mine", dfl["is_mine"])
    notes = sec.string("notes", dfl["notes"])
    pol = None
    sec.used.add("polarizability")
    if "polarizability" in sec.data:
        psec = _Section(sec.data["polarizability"], f"{where}.polarizability", src)
        vals = {}
        for key in ("k", "alpha", "beta", "gamma"):
            psec.used.add(key)
            v = psec.data.get(key)
            if v is None:
                raise psec.err(key, "is required")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = [v, v, v]
            if (not isinstance(v, list) or len(v) != 3
                    or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in v)
                    or any(not (e > 0) for e in v[1:] if key != "k") or any(e < 0 for e in v)):
                raise psec.err(key, "must be a non-negative number or a list of 3")
            vals[key] = tuple(float(e) for e in v)
        psec.finish()
        pol = vals
    sec.finish()
    if metal == "none" and mass_g > 0:
        raise sec.err("metal_mass_g", "is > 0 but metal is 'none'")
    if mass_g > 0 and metal_size <= 0:
        raise sec.err("metal_size", "must be > 0 for an object with metal")
    if rng is not None:  # random placement fills what is missing
        x = float(rng.uniform(0.0, width)) if x is None else x
        y = float(rng.uniform(0.0, length)) if y is None else y
        depth = 0.0 if depth is None else depth
    if az is None:
        az = float(rng.uniform(0.0, 360.0)) if rng is not None else 0.0
    if dip is None:
        dip = float(rng.uniform(0.0, 90.0)) if rng is not None else 45.0
    return BuriedObject(
        id=oid or f"T{idx:03d}", cls=cls, x=float(x), y=float(y), depth=float(depth),
        is_mine=bool(is_mine), metal_mass=mass_g / 1000.0, metal=metal,
        metal_shape=metal_shape, metal_size=metal_size, metal_thickness=metal_thickness,
        shape=shape, size=size, height=height, permittivity=perm, azimuth=float(az),
        dip=float(dip), magnetic_viscosity=visc, notes=notes, polarizability=pol,
    )


def _expand_clutter(d: Any, where: str, src: str, rng: np.random.Generator, start: int,
                    width: float, length: float,
                    placed: list[BuriedObject]) -> list[BuriedObject]:
    sec = _Section(d, where, src)
    cls = sec.string("class", None, tuple(CLASS_DEFAULTS))
    if cls is None:
        raise sec.err("class", "is required")
    count = sec.integer("count", 1, lo=0, hi=100_000)
    dr = sec.num_range("depth", (0.0, 0.15), lo=0.0)
    mr = sec.num_range("metal_mass_g", (CLASS_DEFAULTS[cls]["metal_mass_g"],) * 2, lo=0.0)
    xr = sec.num_range("x", (0.0, width))
    yr = sec.num_range("y", (0.0, length))
    sr = sec.num_range("size", (CLASS_DEFAULTS[cls]["size"],) * 2, lo=0.001)
    spacing = sec.num("min_spacing", 0.0, lo=0.0, hi=100.0)
    sec.finish()
    out: list[BuriedObject] = []

    def position() -> tuple[float, float]:
        """Uniform in the box, at least ``min_spacing`` from every object so far."""
        for _ in range(1000):
            x, y = float(rng.uniform(*xr)), float(rng.uniform(*yr))
            if spacing <= 0 or all(math.hypot(o.x - x, o.y - y) >= spacing
                                   for o in (*placed, *out)):
                return x, y
        raise sec.err("min_spacing", f"cannot place {count} objects {spacing} m apart")

    dfl = CLASS_DEFAULTS[cls]
    for k in range(count):
        mass = float(np.exp(rng.uniform(np.log(max(mr[0], 1e-6)), np.log(max(mr[1], 1e-6))))
                     ) if mr[1] > 0 else 0.0
        # metal size and body size scale with the cube root of mass (similar shapes)
        scale = (mass / dfl["metal_mass_g"]) ** (1 / 3) if dfl["metal_mass_g"] > 0 else 1.0
        size = float(rng.uniform(*sr)) * (scale if dfl["metal_mass_g"] > 0 else 1.0)
        x, y = position()
        spec = {
            "class": cls, "id": f"{'M' if dfl['is_mine'] else 'C'}{start + k:04d}",
            "x": x, "y": y,
            "depth": float(rng.uniform(*dr)),
            "metal_mass_g": mass if dfl["metal"] != "none" else 0.0,
            "size": min(size, 5.0),
        }
        if dfl["metal"] != "none":
            spec["metal_size"] = min(dfl["metal_size"] * scale, 5.0)
            # solid pieces (fragments, nails) thicken with mass: decay time ~ thickness^2;
            # shells (cases, cans) keep their wall
            if dfl["metal_shape"] != "shell":
                spec["metal_thickness"] = min(dfl["metal_thickness"] * scale, 1.0)
        out.append(_parse_object(spec, f"{where} (item {k})", src, start + k, rng, width,
                                 length))
    return out


def parse_scene(data: Mapping[str, Any], source: str = "<scene>",
                layout_seed: int | None = None) -> Scene:
    """Build a :class:`Scene` from parsed TOML (a dict); see the module docstring.

    ``layout_seed`` overrides the file's ``[scene] layout_seed``: the random
    ``[[clutter]]`` groups, the soil's heterogeneity and the object-to-object
    variability are drawn anew (explicit ``[[objects]]`` keep their places).
    """
    src = source
    root = _Section(dict(data), "scene file", src)
    for key in ("scene", "lane", "soil", "sweep", "emi", "gpr", "gps", "cw", "physics",
                "objects", "clutter"):
        root.used.add(key)
    root.finish()
    s = _Section(data.get("scene"), "[scene]", src)
    name = s.string("name", Path(src).stem if src != "<scene>" else "scene")
    description = s.string("description", "")
    file_seed = s.integer("layout_seed", 0, lo=0)
    # (-1 had been numpy's bare "expected non-negative integer", 1.5 taken as 1)
    layout_seed = file_seed if layout_seed is None else check_number(
        "scene", "layout_seed", layout_seed, lo=0, hi=2**63 - 1, integer=True)
    variability = s.num("variability", 0.15, lo=0.0, hi=1.0)
    s.finish()

    la = _Section(data.get("lane"), "[lane]", src)
    width = la.num("width", None, lo=0.05, hi=1000.0, required=True)
    length = la.num("length", None, lo=0.05, hi=10000.0, required=True)
    lon = la.num("anchor_lon", 0.0, lo=-180.0, hi=180.0)
    lat = la.num("anchor_lat", 0.0, lo=-89.0, hi=89.0)
    alt = la.num("anchor_alt", 0.0, lo=-500.0, hi=9000.0)
    bearing = la.num("bearing_deg", 0.0, lo=-360.0, hi=360.0)
    t0 = _parse_time(la, "start_time", _EPOCH_DEFAULT)
    la.finish()

    so = _Section(data.get("soil"), "[soil]", src)
    moisture = so.num("moisture", 0.1, lo=0.0, hi=0.6)
    perm = so.num("permittivity", None, lo=1.0, hi=81.0)
    soil_kw = dict(
        magnetic_susceptibility=so.num("magnetic_susceptibility", 1e-4, lo=0.0, hi=1.0),
        viscosity=so.num("viscosity", 2e-6, lo=0.0, hi=0.1),
        conductivity=so.num("conductivity", 0.005, lo=0.0, hi=10.0),
        moisture=moisture,
        permittivity=perm if perm is not None else topp_permittivity(moisture),
        roughness=so.num("roughness", 0.003, lo=0.0, hi=0.2),
        heterogeneity=so.num("heterogeneity", 0.2, lo=0.0, hi=2.0),
        radar_clutter_density=so.num("radar_clutter_density", 20.0, lo=0.0, hi=2000.0),
    )
    layers = []
    so.used.add("layers")
    lay = so.data.get("layers", [])
    if not isinstance(lay, list):
        raise so.err("layers", "must be an array of tables [[soil.layers]]")
    for i, ld in enumerate(lay):
        ls = _Section(ld, f"[[soil.layers]] #{i + 1}", src)
        layers.append(Layer(depth=ls.num("depth", None, lo=0.0, hi=20.0, lo_open=True,
                                         required=True),
                            permittivity=ls.num("permittivity", None, lo=1.0, hi=81.0,
                                                required=True),
                            conductivity=ls.num("conductivity", 0.0, lo=0.0, hi=10.0)))
        ls.finish()
    so.finish()
    soil = Soil(**soil_kw, layers=tuple(sorted(layers, key=lambda layer: layer.depth)))

    sw = _Section(data.get("sweep"), "[sweep]", src)
    sweep = Sweep(
        pattern=sw.string("pattern", "sweep", _PATTERNS),
        speed=sw.num("speed", 0.7, lo=0.01, hi=20.0),
        sweep_width=sw.num("sweep_width", None, lo=0.05, hi=100.0),
        advance=sw.num("advance", 0.04, lo=0.001, hi=10.0),
        height=sw.num("height", 0.05, lo=0.0, hi=2.0),
        height_variation=sw.num("height_variation", 0.01, lo=0.0, hi=1.0),
        lift=sw.num("lift", 0.03, lo=0.0, hi=1.0),
        start_y=sw.num("start_y", None),
        end_y=sw.num("end_y", None),
        line_spacing=sw.num("line_spacing", 0.1, lo=0.005, hi=100.0),
        line_x=sw.num("line_x", None),
        turn_time=sw.num("turn_time", 0.5, lo=0.0, hi=60.0),
    )
    sw.finish()

    em = _Section(data.get("emi"), "[emi]", src)
    emi = EMIConfig(
        rate=em.num("rate", 1000.0, lo=1.0, hi=20000.0),
        gate_times=_gates(em),
        coil_radius=em.num("coil_radius", 0.12, lo=0.01, hi=2.0),
        gain=em.num("gain", 1000.0, lo=0.0, lo_open=True),
        noise=em.num("noise", 5e-5, lo=0.0),
        pink_noise=em.num("pink_noise", 3e-5, lo=0.0),
        drift=em.num("drift", 5e-4, lo=0.0),
        mains=em.num("mains", 1e-5, lo=0.0),
        mains_frequency=em.num("mains_frequency", 50.0, lo=0.0, hi=1000.0),
        soil_gain=em.num("soil_gain", 0.22, lo=0.0),
        clock_ppm=em.num("clock_ppm", 30.0, lo=-1000.0, hi=1000.0),
        full_scale=em.num("full_scale", 10.0, lo=0.0, lo_open=True),
        device=em.string("device", "simulated PI detector"),
        pulse_length=em.num("pulse_length", 0.0, lo=0.0, hi=1.0),
    )
    em.finish()

    gp = _Section(data.get("gpr"), "[gpr]", src)
    gpr = GPRConfig(
        rate=gp.num("rate", 400.0, lo=1.0, hi=5000.0),
        samples=gp.integer("samples", 512, lo=16, hi=8192),
        time_window=gp.num("time_window", 16e-9, lo=1e-10, hi=1e-5, lo_open=True),
        frequency=gp.num("frequency", 1.5e9, lo=1e6, hi=2e10),
        stacking=gp.integer("stacking", 4, lo=1, hi=65535),
        dtype=gp.string("dtype", "int16", ("int16", "int32")),
        amplitude=gp.num("amplitude", 12000.0, lo=0.0, lo_open=True),
        noise=gp.num("noise", 0.004, lo=0.0),
        direct_wave_delay=gp.num("direct_wave_delay", 2e-9, lo=0.0),
        ringing=gp.num("ringing", 0.15, lo=0.0),
        wow=gp.num("wow", 0.03, lo=0.0),
        beam_width_deg=gp.num("beam_width_deg", 40.0, lo=1.0, hi=90.0),
        encoder_resolution=gp.num("encoder_resolution", 0.001, lo=1e-6, lo_open=True),
        time_zero_jitter=gp.num("time_zero_jitter", 5e-12, lo=0.0),
        clock_ppm=gp.num("clock_ppm", -20.0, lo=-1000.0, hi=1000.0),
        device=gp.string("device", "simulated 1.5 GHz GPR"),
    )
    gp.finish()
    if gpr.direct_wave_delay >= gpr.time_window:
        raise ConfigError(f"{src}: [gpr] field 'direct_wave_delay' must be inside time_window")

    gs = _Section(data.get("gps"), "[gps]", src)
    gps = GPSConfig(
        rate=gs.num("rate", 10.0, lo=0.1, hi=100.0),
        fix_quality=gs.integer("fix_quality", 4, lo=0, hi=8),
        satellites=gs.integer("satellites", 16, lo=0, hi=99),
        hdop=gs.num("hdop", 0.6, lo=0.0, hi=99.0),
        position_noise=gs.num("position_noise", 0.01, lo=0.0, hi=100.0),
        talker=gs.string("talker", "GN"),
        latency=gs.num("latency", 0.03, lo=0.0, hi=1.0),
        device=gs.string("device", "simulated RTK tracker"),
    )
    gs.finish()
    if len(gps.talker) != 2 or not gps.talker.isalpha() or not gps.talker.isupper():
        raise ConfigError(f"{src}: [gps] field 'talker' must be two capital letters")

    cs = _Section(data.get("cw"), "[cw]", src)
    cw = CWConfig(
        rate=cs.num("rate", 50.0, lo=1.0, hi=5000.0),
        frequency=cs.num("frequency", 8000.0, lo=10.0, hi=1e6),
        coil_radius=cs.num("coil_radius", 0.1, lo=0.01, hi=2.0),
        gain=cs.num("gain", 1000.0, lo=0.0, lo_open=True),
        soil_gain=cs.num("soil_gain", 1.0, lo=0.0),
        noise=cs.num("noise", 2e-4, lo=0.0),
        drift=cs.num("drift", 2e-3, lo=0.0),
        phase_offset_deg=cs.num("phase_offset_deg", 0.0, lo=-360.0, hi=360.0),
        clock_ppm=cs.num("clock_ppm", 50.0, lo=-1000.0, hi=1000.0),
        device=cs.string("device", "simulated CW induction-balance detector"),
    )
    cs.finish()

    ph = _Section(data.get("physics"), "[physics]", src)
    physics = Physics(
        emi_decay=ph.string("emi_decay", "pasion-oldenburg",
                            ("pasion-oldenburg", "sphere-modes")),
        soil_relaxation=ph.string("soil_relaxation", "log-uniform",
                                  ("log-uniform", "band-limited")),
        soil_tau_min=ph.num("soil_tau_min", 1e-7, lo=1e-12, hi=1.0, lo_open=True),
        soil_tau_max=ph.num("soil_tau_max", 3e-3, lo=1e-12, hi=100.0, lo_open=True),
        gpr_wavelet=ph.string("gpr_wavelet", "ricker", ("ricker", "gaussian-derivative")),
        gpr_refraction=ph.boolean("gpr_refraction", False),
    )
    ph.finish()
    if physics.soil_tau_max <= physics.soil_tau_min:
        raise ConfigError(f"{src}: [physics] field 'soil_tau_max' must be > soil_tau_min")

    objects: list[BuriedObject] = []
    objs = data.get("objects", [])
    if not isinstance(objs, list):
        raise ConfigError(f"{src}: 'objects' must be an array of tables [[objects]]")
    for i, od in enumerate(objs):
        objects.append(_parse_object(od, f"[[objects]] #{i + 1}", src, i + 1, None, width,
                                     length))
    rng = np.random.default_rng(np.random.SeedSequence([layout_seed, 0x5CE4E]))
    clut = data.get("clutter", [])
    if not isinstance(clut, list):
        raise ConfigError(f"{src}: 'clutter' must be an array of tables [[clutter]]")
    for i, cd in enumerate(clut):
        objects.extend(_expand_clutter(cd, f"[[clutter]] #{i + 1}", src, rng,
                                       len(objects) + 1, width, length, objects))
    if variability > 0 and objects:
        vr = np.random.default_rng(np.random.SeedSequence([layout_seed, 0x7A41]))
        g = np.exp(variability * vr.standard_normal(len(objects)))
        d = np.exp(variability * vr.standard_normal(len(objects)))
        objects = [dataclasses.replace(o, gain_jitter=float(gi), decay_jitter=float(di))
                   for o, gi, di in zip(objects, g, d, strict=True)]
    ids = [o.id for o in objects]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ConfigError(f"{src}: [[objects]] field 'id': duplicate id {sorted(dup)[0]!r}")
    return Scene(name=name, description=description, width=width, length=length,
                 anchor_lon=lon, anchor_lat=lat, anchor_alt=alt, bearing_deg=bearing,
                 start_time_ns=t0, layout_seed=layout_seed, soil=soil, sweep=sweep, emi=emi,
                 gpr=gpr, gps=gps, cw=cw, physics=physics, objects=tuple(objects),
                 source=src)


def list_scenes() -> list[str]:
    """Names of the scenes shipped with demine (``load_scene(name)`` loads one)."""
    pkg = resources.files("demine.simulate") / "scenes"
    return sorted(p.name[:-5] for p in pkg.iterdir() if p.name.endswith(".toml"))


def load_scene(scene: str | Path | Scene, *, layout_seed: int | None = None) -> Scene:
    """Load a scene from a TOML file path or the name of a shipped scene.

    ``layout_seed`` re-draws the random parts of the layout (see
    :func:`parse_scene`): one scene file gives many different lanes for training.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or a field is invalid (named).
    """
    if isinstance(scene, Scene):
        if layout_seed is not None and layout_seed != scene.layout_seed:
            raise ConfigError("layout_seed applies to scene files, not to a parsed Scene")
        return scene
    text: str
    src = str(scene)
    p = Path(scene)
    if p.suffix == ".toml" or p.exists() or "/" in src or "\\" in src:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"{src}: scene file not found") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{src}: cannot read scene file: {exc}") from exc
    else:
        res = resources.files("demine.simulate") / "scenes" / f"{src}.toml"
        if not res.is_file():
            raise ConfigError(
                f"{src}: no such scene file or shipped scene (shipped: "
                f"{', '.join(list_scenes())})"
            )
        text = res.read_text(encoding="utf-8")
        src = f"{src}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML: {exc}") from exc
    return parse_scene(data, src, layout_seed)
