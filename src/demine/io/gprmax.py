"""Reader of gprMax output: 3.x ``.out`` files and 4.x (merged) ``.h5`` files.

gprMax (an open full-wave FDTD simulator of GPR) writes one HDF5 file per model
run: root attributes ``dt`` (s), ``Iterations`` (samples per trace), ``nrx``
and, from version 3.1, ``gprMax`` (the version string); one group per receiver,
``rxs/rx1 … rxs/rxN``, holding the field components ``Ex Ey Ez Hx Hy Hz`` as
datasets of shape ``(Iterations,)`` (an A-scan).  A B-scan is one run per trace
merged by gprMax's ``outputfiles_merge`` into datasets of shape
``(Iterations, ntraces)``.  Where the file says, the reader also takes:

* the receiver and source positions (``Position`` attributes of
  ``rxs/rxK`` and ``srcs/src1``; gprMax 3.0 ``rxs/rxK/Position`` and
  ``txs/tx1/Position`` datasets; per-trace tables in
  ``trace_metadata/{rxs/rxK,srcs/src1}/Position`` of gprMax 4 merged files)
  and their steps between traces (``rxsteps``, ``srcsteps`` / ``txsteps`` in
  cells, times ``dx_dy_dz`` / ``dx, dy, dz``).  A trace's position is the
  mid-point of source and receiver; along the line it is the projection of
  that point on the line's direction (for a line along x, its x coordinate in
  the model), so positions compare directly with the model's geometry.  The
  source-receiver distance is ``header["antenna_offset_m"]``.
* the source waveform: ``srcs/src1/excitation`` (gprMax 4 single runs:
  ``WaveformType``, ``WaveformFrequency``, the sampled excitation), or the
  ``#waveform:`` of the model's input file next to the output (the ``.in``
  whose stem begins the output's: gprMax names its outputs
  ``<input stem>[N|_merged]``), when ``sidecars`` is true.  Its centre frequency is
  ``frequency_hz``; the time of its centre (the emission time, i.e. the time
  zero of a zero-length path) is ``time_zero_sample``.  Without either, both
  are NaN.

Samples are the chosen field component as ``(n_traces, n_samples)`` floats
in the file's own type (float32 as gprMax writes them), in V/m for E and A/m
for H (``header["units"]``).  By default the electric component of most
energy over the line: the one the transmitting dipole is polarised along,
whose direct wave dominates (``Ez`` for a 2-D TMz model, whose other E
components are zero; ``Ey`` for a 3-D model with ``#hertzian_dipole: y``,
whose ``Ez`` is a cross-polarised field 1/40 as strong).  The choice is in
``header["component"]`` and ``header["component_choice"]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VendorFormatError
from ._common import RadarData, fail, file_size, find_sibling, read_text

__all__ = ["COMPONENTS", "is_gprmax", "read_gprmax", "read_gprmax_series"]

#: Field components gprMax writes per receiver.
COMPONENTS = ("Ex", "Ey", "Ez", "Hx", "Hy", "Hz")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Largest plausible counts (a lying attribute is refused before any allocation).
_MAX_ITERATIONS = 1 << 31
_MAX_TRACES = 1 << 24
#: Compressed datasets may expand; refuse more than this many times the file size.
_MAX_EXPANSION = 100

# centre (s * frequency) of gprMax's analytic waveforms: delay = t - chi
_CHI = {
    "gaussian": 1.0, "gaussiandot": 1.0, "gaussiandotnorm": 1.0, "gaussianprime": 1.0,
    "gaussiandoubleprime": 1.0, "gaussiandotdot": math.sqrt(2.0),
    "gaussiandotdotnorm": math.sqrt(2.0), "ricker": math.sqrt(2.0),
}  # fmt: skip
# spectral peak / frequency parameter of gprMax's analytic waveforms: the n-th
# derivative of exp(-zeta t^2) peaks at omega = sqrt(2 n zeta); zeta = 2 pi^2 f^2
# for the gaussian family, pi^2 f^2 for ricker and gaussiandotdot(norm), so only
# gaussiandoubleprime (n = 2, zeta = 2 pi^2 f^2) peaks off f (sqrt 2 f).  The
# gaussian itself (n = 0) peaks at 0 Hz: its f is kept as the nominal frequency.
_PEAK = {"gaussiandoubleprime": math.sqrt(2.0)}
_SRC_CMDS = ("#hertzian_dipole:", "#magnetic_dipole:", "#voltage_source:",
             "#transmission_line:")


def _model_axis(u: np.ndarray) -> np.ndarray:
    """The line's direction ``u`` turned, if need be, to point along its main
    model axis: a line run towards -x is placed at its model x coordinates
    (they had come out negated, so truth in model coordinates missed it)."""
    return -u if u[int(np.argmax(np.abs(u)))] < 0 else u


def _h5py() -> Any:
    import h5py

    return h5py


def is_gprmax(path: str | os.PathLike[str]) -> bool:
    """True when *path* is an HDF5 file whose root has a ``gprMax`` attribute,
    or a ``.out`` HDF5 file with gprMax's ``dt``/``Iterations``/``rxs`` layout.

    Never raises for an unreadable or non-HDF5 file (returns False).
    """
    try:
        with open(path, "rb") as f:
            if f.read(8) != _HDF5_MAGIC:
                return False
        h5py = _h5py()
        with h5py.File(path, "r") as h:
            if "gprMax" in h.attrs:
                return True
            return (Path(path).suffix.lower() == ".out" and "dt" in h.attrs
                    and "Iterations" in h.attrs and "rxs" in h)
    except Exception:  # noqa: BLE001 - any failure means "not gprMax output"
        return False


def _attr(h: Any, path: Any, name: str, *, required: bool = True) -> Any:
    if name not in h.attrs:
        if required:
            raise fail(path, name, "root attribute missing (not gprMax output?)")
        return None
    return h.attrs[name]


def _scalar(path: Any, name: str, value: Any) -> float:
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "iuf":
        raise fail(path, name, f"{value!r} is not a number")
    v = float(a.reshape(-1)[0])
    if not math.isfinite(v):
        raise fail(path, name, f"{v!r} is not finite")
    return v


def _count(path: Any, name: str, value: Any, lo: int, hi: int) -> int:
    v = _scalar(path, name, value)
    if v != int(v) or not lo <= v <= hi:
        raise fail(path, name, f"{v:g} is not an integer in [{lo}, {hi}]")
    return int(v)


def _vec3(path: Any, name: str, value: Any) -> np.ndarray | None:
    if value is None:
        return None
    a = np.asarray(value)
    if a.dtype.kind not in "iuf" or a.size != 3:
        raise fail(path, name, f"expected 3 numbers, got {a.tolist()!r}"[:120])
    a = a.astype(np.float64).reshape(3)
    if not np.all(np.isfinite(a)):
        raise fail(path, name, "not finite")
    return a


def _position(h: Any, path: Any, group: str) -> np.ndarray | None:
    """``Position`` of a receiver/source group: attribute (3.1+, 4.x) or dataset (3.0)."""
    if group not in h:
        return None
    g = h[group]
    if "Position" in g.attrs:
        return _vec3(path, f"{group}.Position", g.attrs["Position"])
    if "Position" in g and getattr(g["Position"], "shape", None) == (3,):
        return _vec3(path, f"{group}/Position", g["Position"][()])
    return None


def _table(h: Any, path: Any, name: str, n: int) -> np.ndarray | None:
    """Per-trace ``(n, 3)`` position table of a merged gprMax 4 file, if present."""
    if name not in h:
        return None
    d = h[name]
    if getattr(d, "shape", None) != (n, 3) or d.dtype.kind not in "iuf":
        raise fail(path, name, f"shape {getattr(d, 'shape', None)} does not match {n} traces")
    a = np.asarray(d[()], dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise fail(path, name, "positions are not finite")
    return a


def _waveform_from_input(path: Path) -> dict[str, Any] | None:
    """Type and frequency of the first source's ``#waveform:`` in the input file
    next to the output, and the source's start delay (s, 0 if none), or None."""
    cand = find_sibling(path, "in")
    if cand is None:  # gprMax names outputs <input stem>[N|_merged].h5/.out
        try:
            ins = [q for q in path.parent.iterdir()
                   if q.suffix.lower() == ".in" and q.is_file()
                   and path.stem.lower().startswith(q.stem.lower())]
        except OSError:
            ins = []
        if not ins:
            return None
        cand = max(ins, key=lambda q: (len(q.stem), q.name))
    try:
        text = read_text(cand, "input file")
    except VendorFormatError:
        return None
    waves: dict[str, tuple[str, float]] = {}
    src_wave = None
    delay = 0.0
    for line in text.splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "#waveform:" and len(tok) >= 5:
            try:
                waves[tok[4]] = (tok[1].lower(), float(tok[3]))
            except ValueError:
                continue
        elif tok[0] in _SRC_CMDS and src_wave is None:
            # "#hertzian_dipole: pol x y z ID [start stop]" (and magnetic); a
            # voltage source or transmission line has its resistance before
            # the ID.  (The last word had been taken for the ID: with a start
            # delay, it is the stop time.)
            i = 5 if tok[0] in ("#hertzian_dipole:", "#magnetic_dipole:") else 6
            if len(tok) > i:
                src_wave = tok[i]
                try:
                    delay = float(tok[i + 1]) if len(tok) > i + 1 else 0.0
                except ValueError:
                    delay = 0.0
    pick = waves.get(src_wave) if src_wave else None
    if pick is None and len(waves) == 1:
        pick = next(iter(waves.values()))
    if pick is None:
        return None
    return {"type": pick[0], "frequency": pick[1], "source": cand.name,
            "delay": delay if math.isfinite(delay) and delay > 0 else 0.0}


def _centre_time(kind: str, freq: float) -> float:
    """Time of the centre of gprMax's analytic waveform ``kind`` (s), or NaN."""
    if not (math.isfinite(freq) and freq > 0):
        return math.nan
    if kind in _CHI:
        return _CHI[kind] / freq
    if kind == "gauspulse":  # keep in step with gprMax.waveforms
        zeta = -(math.pi * freq * 0.5) ** 2 / (4 * math.log(10 ** (-6 / 20)))
        return math.sqrt(-math.log(10 ** (-60 / 20)) / zeta)
    return math.nan


def read_gprmax(
    path: str | os.PathLike[str],
    *,
    component: str | None = None,
    rx: int = 1,
    sidecars: bool = True,
    mmap: bool = False,
    allow_partial: bool = False,
) -> RadarData:
    """Read a gprMax output file (A-scan or merged B-scan).

    Parameters
    ----------
    path
        gprMax ``.out`` (3.x) or ``.h5`` (4.x) output, single or merged.
    component
        Field component: one of :data:`COMPONENTS`; default the E component
        of most energy (the transmitter's polarisation).
    rx
        Receiver number (1-based, as in ``rxs/rx1``).
    sidecars
        Look for the model's input file (``.in``) next to the output for the
        source waveform when the output does not store it.
    mmap, allow_partial
        Accepted for the common reader interface; HDF5 datasets are always
        loaded whole and a truncated HDF5 file cannot be read in part.

    Returns
    -------
    RadarData
        ``vendor="gprmax"``; header holds the root attributes and the geometry.

    Raises
    ------
    VendorFormatError
        Not HDF5, a missing attribute or dataset, sizes that disagree.
    """
    del mmap, allow_partial
    p = Path(path)
    size = file_size(p)
    with open(p, "rb") as f:
        magic = f.read(8)
    if magic != _HDF5_MAGIC:
        raise fail(p, "signature", "not an HDF5 file (gprMax output is HDF5)")
    if component is not None and component not in COMPONENTS:
        raise fail(p, "component", f"{component!r} is not one of {COMPONENTS}")
    if isinstance(rx, bool) or not isinstance(rx, int | np.integer) or rx < 1:
        raise fail(p, "rx", f"{rx!r} is not a receiver number >= 1")
    h5py = _h5py()
    try:
        h = h5py.File(p, "r")
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(p, "HDF5", f"cannot be opened ({exc}; truncated?)") from None
    try:
        with h:
            return _read(h, p, size, component, int(rx), sidecars)
    except VendorFormatError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise fail(p, "HDF5", f"unreadable ({type(exc).__name__}: {exc})") from None


def _component_data(h: Any, p: Path, grp: str, component: str, iterations: int,
                    size: int) -> np.ndarray:
    """One receiver's field component, as floats, after the checks that come
    before any allocation (VendorFormatError names what is wrong)."""
    name = f"{grp}/{component}"
    if name not in h:
        have = sorted(k for k in h[grp].keys() if k in COMPONENTS)
        raise fail(p, name, f"dataset missing (components present: {have})")
    d = h[name]
    if not isinstance(d, _h5py().Dataset) or d.dtype.kind not in "iuf":
        raise fail(p, name, "is not a numeric dataset")
    if d.ndim not in (1, 2):
        raise fail(p, name, f"shape {d.shape}: expected (Iterations,) or (Iterations, ntraces)")
    if d.shape[0] != iterations:
        raise fail(p, name, f"{d.shape[0]} samples per trace, attribute Iterations says "
                   f"{iterations}")
    ntr = 1 if d.ndim == 1 else int(d.shape[1])
    nt_attr = _attr(h, p, "ntraces", required=False)
    if nt_attr is not None:
        nt = _count(p, "ntraces", nt_attr, 0, _MAX_TRACES)
        if nt != ntr:
            raise fail(p, "ntraces", f"{nt} traces, dataset {name} has {ntr}")
    if ntr == 0 or ntr > _MAX_TRACES:
        raise fail(p, name, f"{ntr} traces")
    nbytes = iterations * ntr * d.dtype.itemsize
    storage = int(d.id.get_storage_size())
    if d.compression is None and storage < nbytes:
        raise fail(p, name, f"holds {storage} bytes of data, its shape needs {nbytes} "
                   "(truncated or never written)")
    if d.compression is not None and nbytes > _MAX_EXPANSION * max(size, 1):
        raise fail(p, name, f"shape {d.shape} is implausible for a file of {size} bytes")
    raw = np.asarray(d[()])
    if raw.dtype.kind != "f":
        raw = raw.astype(np.float64)
    return raw


def _strongest_e(h: Any, p: Path, grp: str, iterations: int,
                 size: int) -> tuple[str, str, np.ndarray | None]:
    """The E component of most energy in receiver group ``grp``, how it was
    chosen, and its data.  Components that fail :func:`_component_data`'s
    checks are not compared; when none carries any signal, ``Ez`` (not read:
    its own checks then say what is wrong)."""
    data, energy = {}, {}
    for c in ("Ex", "Ey", "Ez"):
        try:
            a = _component_data(h, p, grp, c, iterations, size)
        except VendorFormatError:
            continue
        if np.all(np.isfinite(a)):
            data[c], energy[c] = a, float(np.sum(np.square(a, dtype=np.float64)))
    total = sum(energy.values())
    if not total > 0:
        return "Ez", "Ez (no E component with a signal to compare)", None
    best = max(energy, key=lambda c: (energy[c], c == "Ez"))
    return (best, f"strongest E field ({best}: {100.0 * energy[best] / total:.1f} % of the "
            "E energy)", data[best])


def _read(h: Any, p: Path, size: int, component: str | None, rx: int,
          sidecars: bool) -> RadarData:
    version = _attr(h, p, "gprMax", required=p.suffix.lower() != ".out")
    if isinstance(version, bytes):
        version = version.decode("latin-1")
    dt = _scalar(p, "dt", _attr(h, p, "dt"))
    if not dt > 0:
        raise fail(p, "dt", f"{dt!r} is not a positive sample interval")
    iterations = _count(p, "Iterations", _attr(h, p, "Iterations"), 1, _MAX_ITERATIONS)
    nrx_attr = _attr(h, p, "nrx", required=False)
    nrx = None if nrx_attr is None else _count(p, "nrx", nrx_attr, 0, 1 << 20)
    if nrx is not None and rx > nrx:
        raise fail(p, "nrx", f"receiver {rx} asked, the file has {nrx}")
    grp = f"rxs/rx{rx}"
    if grp not in h or not isinstance(h[grp], _h5py().Group):
        raise fail(p, grp, "receiver group missing")
    raw = None
    if component is None:
        component, choice, raw = _strongest_e(h, p, grp, iterations, size)
    else:
        choice = "given"
    if raw is None:
        raw = _component_data(h, p, grp, component, iterations, size)
    name = f"{grp}/{component}"
    ntr = raw.shape[1] if raw.ndim == 2 else 1
    samples = np.ascontiguousarray(raw.reshape(iterations, ntr).T)

    header: dict[str, Any] = {}
    for k, v in h.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        header[str(k)] = v
    header["component"] = component
    header["component_choice"] = choice
    header["receiver"] = rx
    header["units"] = "V/m" if component.startswith("E") else "A/m"
    header["dataset"] = name

    # geometry: positions of receiver and source per trace
    cell = _vec3(p, "dx_dy_dz", h.attrs.get("dx_dy_dz", h.attrs.get("dx, dy, dz")))

    def steps(*names: str) -> np.ndarray | None:
        for nm in names:
            if nm in h.attrs:
                s = _vec3(p, nm, h.attrs[nm])
                return None if cell is None else s * cell
        return None

    rx_step = steps("rxsteps")
    src_step = steps("srcsteps", "txsteps")
    idx = np.arange(ntr, dtype=np.float64)[:, None]
    rx_pos = _table(h, p, f"trace_metadata/{grp}/Position", ntr)
    if rx_pos is None:
        r0 = _position(h, p, grp)
        if r0 is not None:
            rx_pos = r0[None, :] + idx * (rx_step if rx_step is not None else np.zeros(3))
    src_pos = _table(h, p, "trace_metadata/srcs/src1/Position", ntr)
    if src_pos is None:
        s0 = _position(h, p, "srcs/src1")
        if s0 is None:
            s0 = _position(h, p, "txs/tx1")
        if s0 is not None:
            src_pos = s0[None, :] + idx * (src_step if src_step is not None else np.zeros(3))
    trace_pos = None
    interval = math.nan
    if rx_pos is not None:
        mid = rx_pos if src_pos is None else 0.5 * (rx_pos + src_pos)
        span = mid[-1] - mid[0]
        length = float(np.linalg.norm(span))
        if ntr > 1 and length > 0:
            u = _model_axis(span / length)
            trace_pos = mid @ u
            interval = length / (ntr - 1)
            header["line_direction"] = u.tolist()
        else:
            trace_pos = mid[:, 0].copy()
        header["rx_position_m"] = rx_pos[0].tolist()
        header["midpoint_first_m"] = mid[0].tolist()
        if src_pos is not None:
            header["src_position_m"] = src_pos[0].tolist()
            header["antenna_offset_m"] = float(np.linalg.norm(rx_pos[0] - src_pos[0]))
    elif ntr > 1 and rx_step is not None and np.any(rx_step != 0):
        interval = float(np.linalg.norm(rx_step))
        trace_pos = np.arange(ntr) * interval
        header["position_note"] = "no receiver position in the file: along-line distance only"
    if rx_step is not None:
        header["rx_step_m"] = rx_step.tolist()
    if src_step is not None:
        header["src_step_m"] = src_step.tolist()

    # source waveform: frequency and emission time
    freq = math.nan
    t0 = math.nan
    ex = "srcs/src1/excitation"
    if ex in h:
        a = h[ex].attrs
        kind = a.get("WaveformType")
        kind = kind.decode("latin-1") if isinstance(kind, bytes) else kind
        if "WaveformFrequency" in a:
            f = _scalar(p, f"{ex}.WaveformFrequency", a["WaveformFrequency"])
            freq = f if f > 0 else math.nan
        if kind is not None:
            header["waveform"] = str(kind)
            t0 = _centre_time(str(kind).lower(), freq)
        if not math.isfinite(t0) and "samples" in h[ex]:
            s = h[ex]["samples"]
            if s.ndim == 1 and 0 < s.shape[0] <= iterations and s.dtype.kind in "iuf":
                v = np.abs(np.asarray(s[()], dtype=np.float64))
                off = float(a.get("TimeSampleOffset", 0.0))
                if v.size and np.isfinite(v).all() and v.max() > 0:
                    t0 = int(np.argmax(v)) * dt + off
                    header["time_zero_source"] = "peak of the stored excitation"
        if math.isfinite(t0) and "time_zero_source" not in header:
            header["time_zero_source"] = f"centre of the {kind} waveform"
    elif sidecars:
        w = _waveform_from_input(p)
        if w is not None:
            freq = w["frequency"] if w["frequency"] > 0 else math.nan
            t0 = _centre_time(w["type"], freq) + w["delay"]
            header["waveform"] = w["type"]
            header["waveform_source"] = w["source"]
            if math.isfinite(t0):
                header["time_zero_source"] = (
                    f"centre of the {w['type']} waveform in {w['source']}"
                    + (f", after the source's start delay {w['delay']:g} s" if w["delay"]
                       else ""))
    if not math.isfinite(t0):
        off = header.get("antenna_offset_m")
        t0 = _direct_wave_emission(samples, dt, off)
        if math.isfinite(t0):
            header["time_zero_source"] = (
                "direct wave: peak of the median trace at the receiver minus the Tx-Rx "
                "distance / c" + ("" if off is not None else " (distance unknown: 0)")
                + "; no waveform in the file or beside it")
    title = header.get("Title", "")
    return RadarData(
        samples=samples,
        sample_interval_s=dt,
        vendor="gprmax",
        path=os.fspath(p),
        header=header,
        trace_interval_m=interval,
        trace_position_m=trace_pos,
        antenna=f"gprMax {version}: {title}".strip() if version else f"gprMax: {title}",
        # (the waveform's spectral peak: the radar's centre frequency)
        frequency_hz=freq * _PEAK.get(str(header.get("waveform", "")).lower(), 1.0),
        time_zero_sample=t0 / dt if math.isfinite(t0) else math.nan,
    )


def _direct_wave_emission(samples: np.ndarray, dt: float, offset: Any) -> float:
    """Emission time (s) from the direct wave, when the file gives no waveform.

    The strongest peak of the median trace is the direct wave (ground-coupled
    or in air: the target echoes move from trace to trace and drop out of the
    median); it left the source ``offset / c`` earlier.  On gprMax models
    with a known Ricker source this lands within 0.1 ns of the source's
    centre (docs/io.md).  NaN when the traces hold no signal.
    """
    if samples.size == 0 or samples.shape[1] < 3:
        return math.nan
    m = np.abs(np.median(np.asarray(samples, dtype=np.float64), axis=0))
    if not np.isfinite(m).all() or not m.max() > 0:
        return math.nan
    k = int(np.argmax(m))
    frac = 0.0
    if 0 < k < m.size - 1:   # parabola through the peak and its neighbours
        y0, y1, y2 = m[k - 1], m[k], m[k + 1]
        den = y0 - 2.0 * y1 + y2
        frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    from scipy.constants import c

    d = float(offset) if isinstance(offset, int | float) and math.isfinite(offset) else 0.0
    return max((k + frac) * dt - d / c, 0.0)


def _natural_key(p: Path) -> list[Any]:
    """Sort key that orders ``model2`` before ``model10`` (runs as gprMax numbers them)."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def read_gprmax_series(
    paths: Sequence[str | os.PathLike[str]],
    *,
    component: str | None = None,
    rx: int = 1,
    sidecars: bool = True,
) -> RadarData:
    """Read the A-scans of a gprMax B-scan run (one output per trace) as one line.

    ``gprMax model.in -n 60`` writes ``model1.h5 … model60.h5`` (``.out`` in
    3.x), one A-scan each, with the source and receiver moved by
    ``#src_steps``/``#rx_steps`` between runs; gprMax's ``outputfiles_merge``
    joins them into the merged file that :func:`read_gprmax` reads.  This reads
    them without that step: the files are taken in the natural order of their
    names (``model2`` before ``model10``, whatever order they are given in),
    each trace's position is the mid-point of its own run's source and
    receiver, projected on the line from the first to the last (as for a
    merged file), and every run must agree with the first on the sample
    interval, the number of samples, the model title and the source waveform.

    Parameters
    ----------
    paths
        The runs' output files (two or more; a merged B-scan is read alone
        with :func:`read_gprmax`).
    component, rx, sidecars
        As :func:`read_gprmax`; without ``component`` the first run's choice
        (its strongest E component) is read from every run.

    Returns
    -------
    RadarData
        One trace per file; ``header["files"]`` lists the files in trace order.

    Raises
    ------
    VendorFormatError
        A file that is no gprMax A-scan, or a run that disagrees with the first
        (naming the file and the field), or runs whose positions do not advance
        along one line.
    """
    files = sorted((Path(p) for p in paths), key=_natural_key)
    if len(files) < 2:
        raise VendorFormatError("a gprMax run series needs two or more output files "
                                f"(got {len(files)}); read a single file with read_gprmax")
    first = read_gprmax(files[0], component=component, rx=rx, sidecars=sidecars)
    comp = first.header["component"]
    direct = str(first.header.get("time_zero_source", "")).startswith("direct wave")
    parts = [first]
    for f in files[1:]:
        parts.append(read_gprmax(f, component=comp, rx=rx, sidecars=sidecars))
    for rd in parts:
        if rd.n_traces != 1:
            raise fail(rd.path, "traces", f"{rd.n_traces} traces: a merged B-scan, not one "
                       "run's A-scan; read it alone")
        for fld, a, b in (("Iterations", rd.n_samples, first.n_samples),
                          ("Title", rd.header.get("Title", ""), first.header.get("Title", ""))):
            if a != b:
                raise fail(rd.path, fld, f"{a!r} differs from {b!r} in {files[0].name}: "
                           "not a run of the same model")
        if not math.isclose(rd.sample_interval_s, first.sample_interval_s, rel_tol=1e-9):
            raise fail(rd.path, "dt", f"{rd.sample_interval_s!r} s differs from "
                       f"{first.sample_interval_s!r} s in {files[0].name}")
        picked = str(rd.header.get("time_zero_source", "")).startswith("direct wave")
        for fld, a, b in (("waveform frequency", rd.frequency_hz, first.frequency_hz),
                          ("time zero", math.nan if picked else rd.time_zero_sample,
                           math.nan if direct else first.time_zero_sample)):
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                raise fail(rd.path, fld, f"{a!r} differs from {b!r} in {files[0].name}")
    samples = np.concatenate([rd.samples for rd in parts], axis=0)
    time_zero = first.time_zero_sample
    if direct:   # picked on the whole line, as for a merged file
        t0 = _direct_wave_emission(samples, first.sample_interval_s,
                                   first.header.get("antenna_offset_m"))
        time_zero = t0 / first.sample_interval_s if math.isfinite(t0) else math.nan
    header = dict(first.header)
    header["files"] = [f.name for f in files]
    header.pop("line_direction", None)
    trace_pos = None
    interval = math.nan
    mids = [rd.header.get("midpoint_first_m") for rd in parts]
    if all(m is not None for m in mids):
        mid = np.asarray(mids, dtype=np.float64)
        span = mid[-1] - mid[0]
        length = float(np.linalg.norm(span))
        if length > 0:
            u = span / length
            trace_pos = mid @ u
            step = np.diff(trace_pos)
            bad = np.flatnonzero(step <= 0)
            if bad.size:
                i = int(bad[0]) + 1
                raise fail(parts[i].path, "Position",
                           f"trace {i} at {trace_pos[i]:.4f} m does not advance along the line "
                           f"from {files[i - 1].name} ({trace_pos[i - 1]:.4f} m): are these the "
                           "runs of one B-scan?")
            off = mid - mid[0] - np.outer(trace_pos - trace_pos[0], u)
            if float(np.abs(off).max()) > 1e-6 + 1e-3 * length:
                raise fail(parts[int(np.argmax(np.abs(off).max(axis=1)))].path, "Position",
                           "the runs' mid-points do not lie on one line")
            interval = length / (len(parts) - 1)
            u = _model_axis(u)
            trace_pos = mid @ u
            header["line_direction"] = u.tolist()
        else:
            trace_pos = mid[:, 0].copy()
    return RadarData(
        samples=samples,
        sample_interval_s=first.sample_interval_s,
        vendor="gprmax",
        path=os.fspath(files[0]),
        header=header,
        trace_interval_m=interval,
        trace_position_m=trace_pos,
        antenna=first.antenna,
        frequency_hz=first.frequency_hz,
        time_zero_sample=time_zero,
    )
