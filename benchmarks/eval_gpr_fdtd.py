"""The GPR hyperbola detector on full-wave FDTD B-scans (gprMax), not demine's own physics.

    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd          # all models
    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd plastic-5cm-e6 empty-e6 -v
    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd --background 0.3 --noise 0.02
    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd --shipped   # shared/data B-scan
    python benchmarks/eval_gpr_fdtd.py --3d --cache /tmp/gpr-fdtd3d -v    # the 3-D models
    python benchmarks/eval_gpr_fdtd.py --3d --cache /tmp/gpr-fdtd3d --cached-only  # no gprMax
    python benchmarks/eval_gpr_fdtd.py --3d --cache /tmp/gpr-fdtd3d --cached-only --pad 1
    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd --frequency 2.5e9 metal-5cm-e6
    python benchmarks/eval_gpr_fdtd.py --cache /tmp/gpr-fdtd --frequency 2.5e9 --no-scaling

``--frequency`` gives the models' Ricker another centre frequency (the 2 mm
cells kept: see :func:`input_file`); the detector is told the frequency the
reader finds in the model's input file, as ``demine import`` writes it into
the calibration, and scales its wavelet-tied parameters unless
``--no-scaling``.

demine's radar simulator sums wavelets along rays (plus Born-like terms); the
detector was developed on it.  Here the same detector meets traces computed by
gprMax (an open finite-difference time-domain solver of Maxwell's equations,
installed in its OWN environment: ``--gprmax-python``, by default
``/work/venv-gprmax/bin/python``, or ``$DEMINE_GPRMAX_PYTHON``; it is run as a
separate process and never imported here).  Its output is read with
:func:`demine.io.read_gprmax`, so the reader is exercised too.

The models (2-D, TMz: every object is a prism infinite across the line):

* a 0.6 m line, traces every 6 mm (101 traces), a z-directed Hertzian dipole
  fed a 1.5 GHz Ricker pulse, Tx-Rx offset 4 cm, 2 cm above the ground
  (ground-coupled); 2 mm cells (grid phase-velocity error at 4.2 GHz -0.7 %
  in eps_r 6, -1.6 % in eps_r 12, about 8 times less at 1.5 GHz), 5.5 ns
  window;
* soil: a homogeneous half-space of relative permittivity 4-12 with
  conductivity 2-10 mS/m, its surface rough on the cell scale (1 cm columns
  0, +/-2 mm high, fixed seed per model), or (``-rough``) a smooth random
  surface of 5 mm rms (correlation ~2 cm, peaks about +/-1 cm), and
  (``-stones``) 10 stones (cylinders of eps_r 7-10, 0.8-2.4 cm across, tops
  1-14 cm deep, none within 8 cm of the target), or (``-fractal``) the
  heterogeneous soil of gprMax's own landmine examples: a Peplinski sand/clay
  mix whose water content (0.1-10 %) follows a fractal distribution, eps_r
  3.7-9.4 (mean 6.5, the value the velocity error is measured against) and
  11-51 mS/m, Debye-dispersive, with a fractal surface within +/-3 mm;
* targets, centred at x = 0.33 m of the line: a plastic AP mine (a 7 cm wide,
  3.5 cm tall box of eps_r 2.8, TNT-like) at 2, 5 and 10 cm (top below the
  mean surface); a metal one (PEC box of the same size); a rock (eps_r 8
  cylinder, 6 cm across); empty lines.

The 3-D models (``--3d``, :func:`input_file_3d`; objects of their real
shape, which the 2-D prisms overstate):

* a 0.36 m line (the detector warns below 0.5 m, ``MIN_LINE_LENGTH``: on
  so short a line a target still scores about a third of what it does
  padded to 1.1 m, though its clutter level leaves guard cells around it:
  docs/evaluation.md), traces every 9 mm (41 traces), the same Ricker dipole
  pair polarised across the line (y), Tx-Rx 4.2 cm, 2.1 cm above the ground
  (distances on the grid); 3 mm cells (grid phase-velocity error at 4.2 GHz
  along an axis -1.7 % in eps_r 6, -2.4 % in eps_r 8, -0.5 % along the cube
  diagonal; -0.2 % at 1.5 GHz), a 0.492 x 0.18 x 0.201 m domain (soil
  0.141 m, air 0.06 m, PML 10 cells = 3 cm on every side), 5 ns window:
  20-23 s of one core per trace, 14-16 min per model;
* soil: the half-space of eps_r 6 and 5 mS/m under 1.2 cm square tiles
  whose tops are 0 or +/-1 cell (3 mm), or (``-fractal``) the fractal
  Peplinski soil above, in 3-D (surface within +/-3 mm);
* targets centred at x = 0.18 m of the line: a plastic AP mine as a disc (a
  vertical cylinder 7.5 cm across and 3.5 cm tall, eps_r 2.8) at 2 and 5 cm,
  a PEC disc of the same size at 5 cm, a rock (eps_r 8 sphere, 5 cm across,
  top 6 cm deep), empty lines; ``-side``: the line passes 3.6 cm beside the
  5 cm plastic disc's centre, as a cart's neighbouring line would;
* decimated by 5 (28.9 ps); everything else as for 2-D.  ``--pad N``
  (diagnosis of the line's length) puts N copies of the empty line's traces
  on each side of the other homogeneous eps_r 6 lines, whose false alarms
  then count over the padded length.

Each B-scan is decimated to a radar-like sample interval (6 x 4.717 ps =
28.3 ps, anti-alias filtered), given white noise of ``--noise`` (default
0.004) times the direct wave's peak (the noise convention of demine's own
simulator: 0.4 % of the direct wave at 4 stacks), then the benchmark chain of
``eval_gpr_detection.py`` with the background window of this line (dewow
1.2 ns, background removal over ``--background`` metres of line, default the
whole line = mean-trace removal, band-pass 0.5-3 GHz, SEC gain), then
``demine.hyperbola.detect_gpr`` with its DEFAULT parameters (threshold 12)
and the geometry a radar user would give: time zero = the source's emission
time (from the reader: centre of the Ricker pulse), antenna height 0.02 m.

Per model it reports (``-v``) every alarm scoring above 5 (x, depth,
velocity, score, fit quality) and the scoring at threshold 12: a target is
*found* when the strongest alarm within its halo (0.25 m, AP-sized) reaches
the threshold -- with that alarm's x, depth and velocity errors (velocity
against c / sqrt(eps_r) of the soil) --; every other alarm at or above the
threshold is a false alarm, unless it lies within 3 cm of a stone or is the
rock's (clutter, counted apart).  ``--time-zero direct`` takes time zero from
the direct wave as ``demine calibrate time-zero`` would; ``--shipped`` runs the
gprMax cylinder B-scan of shared/data instead (a 0.12 m line, see its output
for why the default detector finds nothing there).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from demine.evaluate import AP_HALO
from demine.gpr import FusedChain
from demine.hyperbola import C0, GPRDetector, detect_gpr, surface_time
from demine.io import read_gprmax

DX = 0.002          # cell size, m
LINE = 0.6          # line length (mid-points), m
STEP = 0.006        # trace step, m (3 cells)
OFFSET = 0.04       # Tx-Rx separation, m
HEIGHT = 0.02       # antenna height above the mean surface, m
MARGIN = 0.06       # domain beyond the line ends (PML 10 cells + half the offset), m
SOIL_DEPTH = 0.18   # soil below the mean surface, m
AIR = 0.05          # air above the mean surface, m
WINDOW = 5.5e-9     # time window, s
FREQ = 1.5e9        # Ricker centre frequency, Hz (--frequency: another)
TARGET_X = 0.33     # target centre along the line (from the first mid-point), m
DECIMATE = 6        # FDTD steps per radar sample

# 3-D models (--3d): coordinates on the 3 mm grid
DX3 = 0.003         # cell size, m
LINE3 = 0.36        # line length (mid-points), m
STEP3 = 0.009       # trace step, m (3 cells)
OFFSET3 = 0.042     # Tx-Rx separation, m (14 cells: both on the grid)
HEIGHT3 = 0.021     # antenna height above the mean surface, m (7 cells)
MARGIN3 = 0.066     # domain beyond the line ends (PML 10 cells + half the offset + 1 cm), m
ACROSS3 = 0.18      # domain across the line (y), m: PML 3 cm + 12 cm + PML 3 cm
SOIL3 = 0.141       # soil below the mean surface, m (47 cells)
AIR3 = 0.06         # air above the mean surface, m (PML from 3 cm above the antenna)
WINDOW3 = 5.0e-9    # time window, s
TARGET_X3 = 0.18    # target centre along the line, m
DECIMATE3 = 5       # FDTD steps (5.777 ps) per radar sample: 28.9 ps


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    eps: float                 # soil relative permittivity
    sigma: float               # soil conductivity, S/m
    target: str                # "plastic", "metal", "rock" or "none"
    depth: float = 0.05        # top of the target below the mean surface, m
    width: float = 0.07        # m
    height: float = 0.035      # m
    seed: int = 1              # surface roughness
    rough: float = 0.0         # rms height of a smooth rough surface, m (0: cell-scale steps)
    stones: int = 0            # pebbles/stones scattered in the soil (clutter)
    fractal: bool = False      # heterogeneous Peplinski soil (eps: its mean, for scoring)
    three_d: bool = False      # a 3-D model (``--3d``; see input_file_3d)
    y_offset: float = 0.0      # 3-D: the line passes this far beside the target's centre, m

    @property
    def is_mine(self) -> bool:
        return self.target in ("plastic", "metal")

    @property
    def line(self) -> float:
        return LINE3 if self.three_d else LINE

    @property
    def step(self) -> float:
        return STEP3 if self.three_d else STEP

    @property
    def target_x(self) -> float:
        return TARGET_X3 if self.three_d else TARGET_X

    @property
    def n_traces(self) -> int:
        return int(round(self.line / self.step)) + 1

    @property
    def velocity(self) -> float:
        return C0 / math.sqrt(self.eps)


MODELS = (
    Model("plastic-2cm-e6", 6.0, 0.005, "plastic", depth=0.02, seed=2),
    Model("plastic-5cm-e6", 6.0, 0.005, "plastic", depth=0.05, seed=3),
    Model("plastic-10cm-e6", 6.0, 0.005, "plastic", depth=0.10, seed=4),
    Model("plastic-5cm-e4", 4.0, 0.002, "plastic", depth=0.05, seed=5),
    Model("plastic-5cm-e12", 12.0, 0.01, "plastic", depth=0.05, seed=6),
    Model("metal-5cm-e6", 6.0, 0.005, "metal", depth=0.05, seed=7),
    Model("metal-10cm-e12", 12.0, 0.01, "metal", depth=0.10, seed=8),
    Model("rock-6cm-e6", 6.0, 0.005, "rock", depth=0.06, width=0.06, height=0.06, seed=9),
    Model("empty-e6", 6.0, 0.005, "none", seed=10),
    Model("empty-e12", 12.0, 0.01, "none", seed=11),
    Model("plastic-5cm-e6-rough", 6.0, 0.005, "plastic", depth=0.05, seed=12, rough=0.005),
    Model("empty-e6-rough", 6.0, 0.005, "none", seed=13, rough=0.005),
    Model("plastic-5cm-e6-stones", 6.0, 0.005, "plastic", depth=0.05, seed=14, stones=10),
    Model("empty-e6-stones", 6.0, 0.005, "none", seed=15, stones=10),
    Model("plastic-2cm-e6-rough", 6.0, 0.005, "plastic", depth=0.02, seed=16, rough=0.005),
    Model("plastic-5cm-e9-rough-stones", 9.0, 0.01, "plastic", depth=0.05, seed=17,
          rough=0.005, stones=10),
    Model("empty-e9-rough-stones", 9.0, 0.01, "none", seed=18, rough=0.005, stones=10),
    Model("plastic-5cm-fractal", 6.5, 0.036, "plastic", depth=0.05, seed=19, fractal=True),
    Model("plastic-2cm-fractal", 6.5, 0.036, "plastic", depth=0.02, seed=20, fractal=True),
    Model("metal-5cm-fractal", 6.5, 0.036, "metal", depth=0.05, seed=21, fractal=True),
    Model("empty-fractal", 6.5, 0.036, "none", seed=22, fractal=True),
    Model("empty-fractal-2", 6.5, 0.036, "none", seed=23, fractal=True),
)

# 3-D: discs (cylinders, axis vertical) 7.5 cm across and 3.5 cm tall, a
# sphere for the rock
MODELS3D = (
    Model("plastic-5cm-e6-3d", 6.0, 0.005, "plastic", depth=0.05, width=0.075, seed=31,
          three_d=True),
    Model("plastic-2cm-e6-3d", 6.0, 0.005, "plastic", depth=0.02, width=0.075, seed=34,
          three_d=True),
    Model("plastic-5cm-e6-3d-side", 6.0, 0.005, "plastic", depth=0.05, width=0.075,
          seed=35, three_d=True, y_offset=0.036),
    Model("metal-5cm-e6-3d", 6.0, 0.005, "metal", depth=0.05, width=0.075, seed=33,
          three_d=True),
    Model("rock-5cm-e6-3d", 6.0, 0.005, "rock", depth=0.06, width=0.05, height=0.05,
          seed=36, three_d=True),
    Model("empty-e6-3d", 6.0, 0.005, "none", seed=32, three_d=True),
    Model("plastic-5cm-fractal-3d", 6.5, 0.036, "plastic", depth=0.05, width=0.075,
          seed=37, fractal=True, three_d=True),
    Model("empty-fractal-3d", 6.5, 0.036, "none", seed=38, fractal=True, three_d=True),
)
EMPTY3D = MODELS3D[5]   # the padding of --pad


def stones(m: Model) -> list[tuple[float, float, float, float]]:
    """Stones of model ``m``: (x along the line, depth of the top, radius, eps_r);
    none within 8 cm of the target's centre."""
    rng = np.random.default_rng(m.seed + 1000)
    out: list[tuple[float, float, float, float]] = []
    while len(out) < m.stones:
        x = float(rng.uniform(0.0, m.line))
        r = float(rng.uniform(0.004, 0.012))
        top = float(rng.uniform(0.01, 0.14))
        eps = float(rng.uniform(7.0, 10.0))
        if m.target != "none" and abs(x - m.target_x) < 0.08 + r:
            continue
        out.append((round(x, 3), round(top, 3), round(r, 3), round(eps, 1)))
    return out



def window(base: float, freq: float) -> float:
    """Time window (s) of a model whose Ricker has centre ``freq``: ``base``
    (for 1.5 GHz), longer by as much as a lower frequency's pulse centre
    (gprMax's Ricker peaks at sqrt(2) / f) comes later, so the same time of
    echoes follows it."""
    return base if freq >= FREQ else base + math.sqrt(2.0) * (1.0 / freq - 1.0 / FREQ)


def input_file(m: Model, freq: float = FREQ) -> str:
    """The gprMax input of model ``m`` (2-D: one cell across), its Ricker's
    centre frequency ``freq`` (Hz).  The 2 mm cells serve up to 2.5 GHz: the
    grid's phase-velocity error in eps_r 6 is -0.25 % at 2.5 GHz and -2.0 %
    at 7 GHz (2.8 f, the Ricker's upper tail; -0.7 % at 4.2 GHz for 1.5 GHz);
    in eps_r 12 twice that."""
    x0 = MARGIN                         # first mid-point
    width = LINE + 2 * MARGIN
    ys = SOIL_DEPTH                     # mean surface
    ya = ys + HEIGHT                    # antenna
    n = int(round(LINE / STEP)) + 1
    lines = [
        f"#title: demine FDTD check {m.name}",
        f"#domain: {width:.3f} {SOIL_DEPTH + AIR:.3f} {DX}",
        f"#dx_dy_dz: {DX} {DX} {DX}",
        f"#time_window: {window(WINDOW, freq):g}",
        f"#material: {m.eps:g} {m.sigma:g} 1 0 soil",
        "#material: 2.8 0 1 0 tnt",
        "#material: 8 0.001 1 0 granite",
        f"#waveform: ricker 1 {freq:g} pulse",
        f"#hertzian_dipole: z {x0 - OFFSET / 2:.3f} {ya:.3f} 0 pulse",
        f"#rx: {x0 + OFFSET / 2:.3f} {ya:.3f} 0",
        f"#src_steps: {STEP} 0 0",
        f"#rx_steps: {STEP} 0 0",
        f"#box: 0 0 0 {width:.3f} {ys - DX:.3f} {DX} soil",
    ]
    rng = np.random.default_rng(m.seed)
    if m.fractal:
        # heterogeneous soil as in gprMax's landmine examples: Peplinski mix
        # (50 % sand, 50 % clay, bulk density 2 g/cm3, sand particles 2.66)
        # with volumetric water 0.1-10 % in a fractal (D 1.5) distribution of
        # 20 materials: eps_r 3.7-9.4 (mean 6.5) at 1.5 GHz, 11-51 mS/m; the
        # surface fractally rough within +/-3 mm
        lines[4] = "#soil_peplinski: 0.5 0.5 2.0 2.66 0.001 0.10 mix"
        lines[-1] = (f"#fractal_box: 0 0 0 {width:.3f} {ys:.3f} {DX} 1.5 1 1 1 20 mix "
                     f"soilbox {m.seed}")
        lines.append(f"#add_surface_roughness: 0 {ys:.3f} 0 {width:.3f} {ys:.3f} {DX} 1.5 "
                     f"1 1 {ys - 0.003:.3f} {ys + 0.003:.3f} soilbox {m.seed + 500}")
    elif m.rough > 0:
        # smooth rough surface: white noise smoothed over ~2 cm, rms m.rough,
        # one column per cell
        from scipy.ndimage import gaussian_filter1d

        nc = int(round(width / DX))
        h = gaussian_filter1d(rng.standard_normal(nc), 0.02 / DX, mode="wrap")
        h = np.rint(h / h.std() * m.rough / DX).astype(int)
        base = ys + DX * (int(h.min()) - 1)
        lines[-1] = f"#box: 0 0 0 {width:.3f} {base:.3f} {DX} soil"
        for i, k in enumerate(h):
            lines.append(f"#box: {i * DX:.3f} {base:.3f} 0 {(i + 1) * DX:.3f} "
                         f"{ys + k * DX:.3f} {DX} soil")
    col = 0.01   # else: 1 cm columns whose top is at ys + (-1, 0, +1) cells
    for i in range(int(math.ceil(width / col)) if m.rough == 0 and not m.fractal else 0):
        top = ys + DX * int(rng.integers(-1, 2))
        a, b = i * col, min((i + 1) * col, width)
        if top <= ys - DX:
            continue
        lines.append(f"#box: {a:.3f} {ys - DX:.3f} 0 {b:.3f} {top:.3f} {DX} soil")
    xc = x0 + TARGET_X
    top = ys - m.depth
    if m.target in ("plastic", "metal"):
        mat = "tnt" if m.target == "plastic" else "pec"
        lines.append(f"#box: {xc - m.width / 2:.3f} {top - m.height:.3f} 0 "
                     f"{xc + m.width / 2:.3f} {top:.3f} {DX} {mat}")
    elif m.target == "rock":
        r = m.width / 2
        lines.append(f"#cylinder: {xc:.3f} {top - r:.3f} 0 {xc:.3f} {top - r:.3f} {DX} "
                     f"{r:.3f} granite")
    for k, (sx, stop, r, eps) in enumerate(stones(m)):
        lines.append(f"#material: {eps:g} 0.001 1 0 stone{k}")
        lines.append(f"#cylinder: {x0 + sx:.3f} {ys - stop - r:.3f} 0 {x0 + sx:.3f} "
                     f"{ys - stop - r:.3f} {DX} {r:.3f} stone{k}")
    lines.append(f"{n} traces (a line without # is a comment for gprMax)")
    return "\n".join(lines) + "\n"


def input_file_3d(m: Model, freq: float = FREQ) -> str:
    """The gprMax input of the 3-D model ``m`` (z up, the line along x, y across).

    3 mm cells, a 0.492 x 0.18 x 0.201 m domain (PML 10 cells on every side),
    the antenna pair (y-directed dipoles: polarised across the line, as the
    2-D models' z) 0.021 m above the mean surface, Tx-Rx 0.042 m; the line
    passes ``m.y_offset`` beside the target's centre (target and line each
    half of it off the domain's centre).  Soil surface: 1.2 cm square tiles
    whose tops are 0 or +/-1 cell (3 mm), or the fractal soil of the 2-D
    list.  No stones or smooth rough surface in 3-D.
    """
    if m.stones or m.rough:
        raise ValueError(f"{m.name}: stones and rough surfaces are 2-D only")
    x0 = MARGIN3                        # first mid-point
    width = LINE3 + 2 * MARGIN3
    zs = SOIL3                          # mean surface
    za = zs + HEIGHT3                   # antenna
    ya = ACROSS3 / 2 + m.y_offset / 2   # the line
    yc = ACROSS3 / 2 - m.y_offset / 2   # the target's centre
    lines = [
        f"#title: demine FDTD check {m.name}",
        f"#domain: {width:.3f} {ACROSS3:.3f} {SOIL3 + AIR3:.3f}",
        f"#dx_dy_dz: {DX3} {DX3} {DX3}",
        f"#time_window: {window(WINDOW3, freq):g}",
        f"#material: {m.eps:g} {m.sigma:g} 1 0 soil",
        "#material: 2.8 0 1 0 tnt",
        "#material: 8 0.001 1 0 granite",
        f"#waveform: ricker 1 {freq:g} pulse",
        f"#hertzian_dipole: y {x0 - OFFSET3 / 2:.3f} {ya:.4f} {za:.3f} pulse",
        f"#rx: {x0 + OFFSET3 / 2:.3f} {ya:.4f} {za:.3f}",
        f"#src_steps: {STEP3} 0 0",
        f"#rx_steps: {STEP3} 0 0",
    ]
    rng = np.random.default_rng(m.seed)
    if m.fractal:   # as input_file's, in 3-D
        lines[4] = "#soil_peplinski: 0.5 0.5 2.0 2.66 0.001 0.10 mix"
        lines.append(f"#fractal_box: 0 0 0 {width:.3f} {ACROSS3:.3f} {zs:.3f} 1.5 1 1 1 20 "
                     f"mix soilbox {m.seed}")
        lines.append(f"#add_surface_roughness: 0 0 {zs:.3f} {width:.3f} {ACROSS3:.3f} "
                     f"{zs:.3f} 1.5 1 1 {zs - 0.003:.3f} {zs + 0.003:.3f} soilbox "
                     f"{m.seed + 500}")
    else:
        lines.append(f"#box: 0 0 0 {width:.3f} {ACROSS3:.3f} {zs - DX3:.3f} soil")
        tile = 4 * DX3
        for i in range(int(math.ceil(width / tile))):
            for j in range(int(math.ceil(ACROSS3 / tile))):
                top = zs + DX3 * int(rng.integers(-1, 2))
                if top <= zs - DX3:
                    continue
                lines.append(f"#box: {i * tile:.3f} {j * tile:.3f} {zs - DX3:.3f} "
                             f"{min((i + 1) * tile, width):.3f} "
                             f"{min((j + 1) * tile, ACROSS3):.3f} {top:.3f} soil")
    xc = x0 + TARGET_X3
    top = zs - m.depth
    if m.target in ("plastic", "metal"):
        mat = "tnt" if m.target == "plastic" else "pec"
        lines.append(f"#cylinder: {xc:.3f} {yc:.4f} {top - m.height:.3f} {xc:.3f} {yc:.4f} "
                     f"{top:.3f} {m.width / 2:.4f} {mat}")
    elif m.target == "rock":
        r = m.width / 2
        lines.append(f"#sphere: {xc:.3f} {yc:.4f} {top - r:.3f} {r:.4f} granite")
    lines.append(f"{m.n_traces} traces (a line without # is a comment for gprMax)")
    return "\n".join(lines) + "\n"


def run_gprmax(m: Model, cache: Path, python: str, run: bool = True,
               freq: float = FREQ) -> Path | None:
    """Run (or reuse) the B-scan of ``m`` with a Ricker of centre ``freq``;
    return the merged output (None when it is not cached and ``run`` is
    false)."""
    text = input_file_3d(m, freq) if m.three_d else input_file(m, freq)
    key = hashlib.sha256(text.encode()).hexdigest()[:10]
    stem = f"{m.name}-{key}"
    merged = cache / f"{stem}_merged.h5"
    if merged.exists():
        return merged
    if not run:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{stem}.in").write_text(text)
    n = m.n_traces
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(["nice", "-n", "19", python, "-m", "gprMax", f"{stem}.in", "-n", str(n),
                    "--hide-progress-bars"], cwd=cache, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([python, "-m", "gprMax.toolboxes.Utilities.outputfiles_merge",
                    str(cache / stem), "--remove-files"], cwd=cache, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    if not merged.exists():
        raise RuntimeError(f"gprMax did not write {merged}")
    return merged


def radar_traces(path: Path, noise: float, seed: int, three_d: bool = False
                 ) -> tuple[np.ndarray, float, np.ndarray, float, float]:
    """Decimated, noisy traces, sample interval, trace positions, time zero,
    and the source's centre frequency (Hz, from the model's input file, as
    ``demine import`` writes it into the calibration; NaN when unknown)."""
    from scipy.signal import decimate

    rd = read_gprmax(path, component="Ey" if three_d else "Ez")  # the dipoles' polarisation
    factor = DECIMATE3 if three_d else DECIMATE
    if rd.trace_position_m is None or not math.isfinite(rd.time_zero_sample):
        raise RuntimeError(f"{path}: reader gave no positions or time zero")
    a = decimate(rd.samples.astype(np.float64), factor, ftype="fir", axis=1,
                 zero_phase=True)
    dt = rd.sample_interval_s * factor
    direct = float(np.max(np.abs(np.median(a, axis=0))))
    rng = np.random.default_rng(seed)
    a = a + noise * direct * rng.standard_normal(a.shape)
    t0 = rd.time_zero_sample * rd.sample_interval_s
    return (a.astype(np.float32), dt, rd.trace_position_m - rd.trace_position_m[0], t0,
            float(rd.frequency_hz))


def detect(traces: np.ndarray, dt: float, x: np.ndarray, t0: float, background: float | None,
           threshold: float, time_zero: str = "source", height: float = HEIGHT,
           offset: float = OFFSET, frequency: float | None = None) -> tuple[dict, int]:
    """The benchmark chain and the default detector; ``frequency`` (Hz, the
    radar's centre frequency) scales the detector's wavelet-tied parameters
    (None: as given for 1.5 GHz)."""
    n = len(x)
    if time_zero == "direct":  # as demine calibrate time-zero: the direct wave's peak
        t0 = surface_time(traces, dt, offset=offset)
    step = float(np.median(np.diff(x)))
    bg = 2 * n + 1 if background is None else int(round(background / step)) | 1
    dewow = int(round(1.2e-9 / dt)) | 1
    chain = FusedChain(dewow_window=dewow, background_window=bg, low=0.5e9, high=3.0e9,
                       gain_power=1.0, gain_attenuation=1.0e8, sample_interval=dt)
    p = np.concatenate([chain.process(traces), chain.finish()])
    alarms = detect_gpr(p, x, sample_interval=dt, time_zero=t0, antenna_height=height,
                        threshold=threshold, frequency=frequency)
    return alarms, bg


SHIPPED = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gpr"
           / "gprmax-cylinder-bscan-generated"
           / "cylinder_Bscan_2D_n60_gprMax-4.0.1_merged.h5")


def shipped_cylinder(path: Path, noise: float, threshold: float) -> None:
    """The B-scan shipped in shared/data: PEC cylinder (r 1 cm, top 8 cm deep,
    eps_r 6, x 0.120 m), 60 traces 2 mm apart = a 0.12 m line, antenna on the
    surface.  Same processing; default detector, then the diagnosis."""
    tr, dt, x, t0, _ = radar_traces(path, noise, seed=99)
    x = x + 0.06  # model coordinates (first mid-point at 0.060 m)
    n = len(x)
    dewow = int(round(1.2e-9 / dt)) | 1
    chain = FusedChain(dewow_window=dewow, background_window=2 * n + 1, low=0.5e9,
                       high=3.0e9, gain_power=1.0, gain_attenuation=1.0e8,
                       sample_interval=dt)
    p = np.concatenate([chain.process(tr), chain.finish()])
    v_true = C0 / math.sqrt(6.0)
    print(f"\nshipped cylinder ({path.name}): {n} traces, line {x[-1] - x[0]:.3f} m; "
          f"truth x 0.120 m, top 0.080 m, v {v_true / 1e9:.4f} m/ns")
    for label, kw in (("defaults", {}), ("no clutter term (clutter_window=None)",
                                         {"clutter_window": None})):
        det = GPRDetector(dt, time_zero=t0, threshold=0.0, **kw)
        q_min, det.min_fit_quality = det.min_fit_quality, 0.0  # list every fit, flag below
        det.process(p, x)
        a = det.finish()
        fit = det._fit  # diagnostic only: best score of every bin
        print(f"  {label}: best bin score {fit[:, 0].max():.1f} (threshold {threshold:g}); "
              f"max |normalised| at the line's centre "
              f"{float(np.abs(det._norm[len(det._norm) // 2]).max()):.1f}")
        for k in np.flatnonzero(a["score"] >= threshold):
            print(f"    alarm x {a['x'][k]:.3f} depth {a['depth'][k]:.3f} "
                  f"v {a['velocity'][k] / 1e9:.3f} m/ns "
                  f"({100 * (a['velocity'][k] / v_true - 1):+.0f} %) "
                  f"score {a['score'][k]:.1f} fitq {a['fit_quality'][k]:.2f}"
                  + (" (below min_fit_quality)" if a["fit_quality"][k] < q_min else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="model names (default: all)")
    ap.add_argument("--cache", required=True, help="directory of gprMax inputs and outputs")
    ap.add_argument("--gprmax-python", default=os.environ.get(
        "DEMINE_GPRMAX_PYTHON", "/work/venv-gprmax/bin/python"),
                    help="python of an environment with gprMax installed")
    ap.add_argument("--noise", type=float, default=0.004,
                    help="white noise, times the direct wave's peak (default 0.004)")
    ap.add_argument("--background", type=float, default=None,
                    help="background-removal window, m of line (default: whole line)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="score threshold (default: the detector's, 12)")
    ap.add_argument("--time-zero", choices=("source", "direct"), default="source",
                    help="time zero: the source pulse's centre from the reader (default), or "
                    "the direct wave's peak less the Tx-Rx travel time (surface_time)")
    ap.add_argument("--shipped", action="store_true",
                    help="run the gprMax cylinder B-scan shipped in shared/data (a 0.12 m "
                    "line) instead of the models")
    ap.add_argument("--3d", dest="three_d", action="store_true",
                    help="the 3-D models instead of the 2-D ones")
    ap.add_argument("--pad", type=int, default=0, metavar="N",
                    help="3-D diagnosis of the line's length: put N copies of the empty "
                    "line's traces (empty-e6-3d, reversed on the right) on each side of "
                    "every homogeneous eps_r 6 model's line")
    ap.add_argument("--cached-only", action="store_true",
                    help="skip models whose B-scan is not in the cache (run no gprMax)")
    ap.add_argument("--frequency", type=float, default=FREQ,
                    help="centre frequency of the models' Ricker source, Hz (default 1.5e9)")
    ap.add_argument("--no-scaling", action="store_true",
                    help="do not tell the detector the source's frequency (its wavelet-tied "
                    "parameters stay those of 1.5 GHz)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every alarm")
    args = ap.parse_args(argv)
    thr = GPRDetector(1e-11).threshold if args.threshold is None else args.threshold
    names = set(args.models)
    known = MODELS3D if args.three_d else MODELS
    models = [m for m in known if not names or m.name in names]
    if names - {m.name for m in models}:
        ap.error(f"unknown model(s) {sorted(names - {m.name for m in models})}; "
                 f"known: {[m.name for m in known]}")
    if args.shipped:
        shipped_cylinder(SHIPPED, args.noise, thr)
        return 0
    cache = Path(args.cache)
    print(f"{'model':<28}{'found':>6}{'dx cm':>7}{'dz cm':>7}{'dv %':>6}{'score':>7}"
          f"{'fitq':>6}{'FA':>4}{'clut':>5}{'best FA':>8}{'run s':>7}")
    found = expected = fa = 0
    length = 0.0
    for m in models:
        t = time.perf_counter()
        path = run_gprmax(m, cache, args.gprmax_python, run=not args.cached_only,
                          freq=args.frequency)
        el = time.perf_counter() - t
        if path is None:
            print(f"{m.name:<28}  (not in the cache)")
            continue
        tr, dt, x, t0, f_src = radar_traces(path, args.noise, seed=100 + m.seed,  # per model
                                            three_d=m.three_d)
        tx = m.target_x
        if args.pad and m.three_d and m.eps == EMPTY3D.eps and not m.fractal \
                and m is not EMPTY3D:
            pe = run_gprmax(EMPTY3D, cache, args.gprmax_python, run=not args.cached_only,
                            freq=args.frequency)
            if pe is None:
                ap.error(f"--pad needs {EMPTY3D.name} in the cache")
            te = radar_traces(pe, args.noise, seed=100 + EMPTY3D.seed, three_d=True)[0]
            tr = np.concatenate([te] * args.pad + [tr] + [te[::-1]] * args.pad)
            x = np.arange(len(tr)) * m.step
            tx += args.pad * len(te) * m.step
        length += float(x[-1] - x[0])
        alarms, bg = detect(tr, dt, x, t0, args.background, threshold=5.0,
                            time_zero=args.time_zero,
                            height=HEIGHT3 if m.three_d else HEIGHT,
                            offset=OFFSET3 if m.three_d else OFFSET,
                            frequency=None if args.no_scaling or not math.isfinite(f_src)
                            else f_src)
        ax, sc = alarms["x"], alarms["score"]
        keep = sc >= thr
        # the target takes the strongest alarm within its halo (one alarm
        # clears one target); every other alarm at or above the threshold is
        # a false alarm unless it lies within 3 cm of a stone (clutter)
        on = np.abs(ax - tx) <= AP_HALO if m.target != "none" else np.zeros(len(ax), bool)
        j = int(np.flatnonzero(on)[np.argmax(sc[on])]) if on.any() else -1
        hit = j >= 0 and keep[j]
        st = np.array([s_[0] for s_ in stones(m)])
        near_stone = (np.abs(ax[:, None] - st[None, :]) <= 0.03).any(axis=1) if len(st) \
            else np.zeros(len(ax), bool)
        rest = keep.copy()
        if j >= 0:
            rest[j] = False
        n_cl = int(np.sum(rest & near_stone)) + int(hit and m.target == "rock")
        n_fa = int(np.sum(rest & ~near_stone))
        others = np.ones(len(ax), bool)
        if j >= 0:
            others[j] = False
        others &= ~near_stone
        cols = ["", "", "", "", "", ""]
        if j >= 0:
            cols = [f"{100 * (ax[j] - tx):+.1f}",
                    f"{100 * (alarms['depth'][j] - m.depth):+.1f}",
                    f"{100 * (alarms['velocity'][j] / m.velocity - 1):+.0f}",
                    f"{sc[j]:.1f}", f"{alarms['fit_quality'][j]:.2f}"]
        if m.is_mine:
            expected += 1
            found += bool(hit)
            status = "yes" if hit else "NO"
        elif m.target == "rock":
            status = "(rock)"
        else:
            status = "-"
        fa += n_fa
        best_fa = f"{sc[others].max():.1f}" if others.any() else "-"
        print(f"{m.name:<28}{status:>6}{cols[0]:>7}{cols[1]:>7}{cols[2]:>6}{cols[3]:>7}"
              f"{cols[4]:>6}{n_fa:>4}{n_cl:>5}{best_fa:>8}{el:>7.1f}")
        if args.verbose:
            for k in range(len(ax)):
                print(f"    alarm x {ax[k]:.3f} depth {alarms['depth'][k]:.3f} "
                      f"v {alarms['velocity'][k] / 1e9:.3f} m/ns score "
                      f"{alarms['score'][k]:.1f} fitq {alarms['fit_quality'][k]:.2f} "
                      f"width {alarms['width'][k]:.2f} pol {alarms['polarity'][k]:+d}")
        sys.stdout.flush()
    if not length:
        return 0
    print(f"\nthreshold {thr:g}, background window {bg} traces "
          f"({'whole line' if args.background is None else f'{args.background} m'}), "
          f"noise {args.noise:g} x direct wave, dt {dt * 1e12:.1f} ps, time zero from the "
          f"{args.time_zero}; source {args.frequency / 1e9:g} GHz, detector "
          f"{'not told the frequency' if args.no_scaling else 'scaled to it'}")
    print(f"mines found {found}/{expected}; false alarms {fa} over {length:.1f} m of line = "
          f"{fa / length:.2f} /m")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
