"""Streaming EMI (pulse-induction metal detector) processing stages.

Readings arrive as chunks of shape ``(n_frames, n_gates)``.  Each stage below is
a :class:`demine.process.Stage`: it carries its state across chunks, so a
recording processed in one call or frame by frame gives identical numbers.  The
arithmetic runs in the compiled kernels of ``demine._emi`` (float64 internally);
outputs keep the input dtype (float32 or float64; other dtypes are cast to
float32).

The usual chain, shipped as ``chains/emi_default.toml``, is::

    emi.notch (optional) -> emi.soil -> emi.baseline -> emi.matched

(``emi.detect`` is the older per-reading statistic.)

Missing-value policy (all stages): a non-finite input value (NaN, +-inf) is
treated as missing.  It never enters any state, the outputs that depend on it
are NaN, and the frames after it are processed as if it were absent.  Soil
compensation mixes gates, so one missing gate makes its whole output frame NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from . import _emi
from ._params import check_number as _num
from .errors import ConfigError, MissingCalibrationError
from .process import Stage, register_stage

__all__ = ["MainsNotch", "SoilCompensation", "Baseline", "Detect", "MatchedDetect", "soil_basis",
           "pulse_bases", "DEFAULT_SOIL", "PULSE_GRID"]




def _alloc(x: np.ndarray, n_channels: int | None = None) -> np.ndarray:
    return np.empty((x.shape[0], x.shape[1] if n_channels is None else n_channels),
                    dtype=x.dtype)


@register_stage
class MainsNotch(Stage):
    """Notch out mains pickup (50/60 Hz and harmonics) aliased to the reading rate.

    A pulse-induction detector averages many pulses into one reading, so mains
    interference appears at its alias ``|f - k*fs|`` at the reading rate
    ``fs``; each harmonic is removed by one second-order IIR notch
    (:func:`scipy.signal.iirnotch`), run causally per gate and started in the
    steady state of the first reading (no start-up transient).

    Parameters
    ----------
    freq : float
        Mains frequency in Hz (50 or 60).
    q : float
        Quality factor of each notch (centre frequency / -3 dB bandwidth).
    harmonics : int
        Number of harmonics to remove (1 = fundamental only).
    sample_rate : float, optional
        Reading rate in Hz; taken from the stream when not given.
    """

    name: ClassVar[str] = "emi.notch"

    def __init__(self, freq: float = 50.0, q: float = 30.0, harmonics: int = 1,
                 sample_rate: float | None = None) -> None:
        super().__init__()
        self.freq = _num(self.name, "freq", freq, lo=0.0, lo_open=True)
        self.q = _num(self.name, "q", q, lo=0.0, lo_open=True)
        self.harmonics = _num(self.name, "harmonics", harmonics, lo=1, hi=64, integer=True)
        self.sample_rate = (None if sample_rate is None else
                            _num(self.name, "sample_rate", sample_rate, lo=0.0, lo_open=True))
        self._sos: np.ndarray | None = None
        if self.sample_rate is not None:
            self._sos = self._design(self.sample_rate)
        self._zs: np.ndarray | None = None
        self._last: np.ndarray | None = None

    def _design(self, fs: float) -> np.ndarray:
        from scipy.signal import iirnotch

        sections = []
        for h in range(1, self.harmonics + 1):
            f = h * self.freq
            alias = abs(f - fs * round(f / fs))
            if alias <= 1e-9 * fs or abs(alias - fs / 2) <= 1e-9 * fs:
                where = "DC" if alias <= 1e-9 * fs else "the Nyquist frequency"
                raise ConfigError(
                    f"{self.name}: harmonic {h} ({f:g} Hz) aliases to {where} at a "
                    f"{fs:g} Hz reading rate; a notch there would remove the signal")
            try:
                b, a = iirnotch(alias, self.q, fs=fs)
            except ValueError as exc:   # (a rate of 1e-300 Hz: scipy's own words)
                raise ConfigError(f"{self.name}: no notch of harmonic {h} ({f:g} Hz) at a "
                                  f"{fs:g} Hz reading rate: {exc}") from None
            sections.append(np.concatenate([b / a[0], a / a[0]]))
        return np.ascontiguousarray(np.array(sections, dtype=np.float64))

    def configure(self, context: Mapping[str, Any]) -> None:
        if self._is_given("sample_rate"):
            return   # (its design stays, whatever the stream's rate)
        rate = context.get("sample_rate") or None
        if rate is not None:
            rate = _num(self.name, "sample_rate", rate, lo=0.0, lo_open=True)
            sos = self._design(rate)   # (designed first: a refused rate changes nothing)
        if self._stream_fact("sample_rate", rate):
            self._sos = None if rate is None else sos

    @property
    def sos(self) -> np.ndarray:
        """The second-order sections (n_sections, 6) in use."""
        if self._sos is None:
            raise ConfigError(f"{self.name}: the reading rate is unknown; give sample_rate")
        return self._sos

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._check(chunk)
        sos = self.sos
        if self._zs is None:
            self._zs = np.zeros((sos.shape[0], x.shape[1], 2))
            self._last = np.full(x.shape[1], np.nan)
        out = _alloc(x)
        _emi.notch_run(x, out, sos, self._zs, self._last)
        return self._emit(out)

    def reset(self) -> None:
        super().reset()
        self._zs = None
        self._last = None

    def params(self) -> dict[str, Any]:
        return {"freq": self.freq, "q": self.q, "harmonics": self.harmonics,
                "sample_rate": self.sample_rate}


DEFAULT_SOIL = ("viscous", "offset")

# learned ground balance: blocks over which the starting scales are medians; a
# block is not learnt from when its amplitude change exceeds this many robust
# standard deviations; clip of the scale updates; rejected blocks in a row
# after which the scales are estimated again as at the start (so a lasting
# change, or a head held still at the start, does not stop the learning)
_LEARN_WARMUP = 10
_LEARN_TRIM_AMP = 4.0
_LEARN_CLIP = 3.0
_LEARN_MAX_REJECT = 100

#: transmitter on-times (s) that the pulse search of :class:`SoilCompensation`
#: and ``demine calibrate pulse`` try; longer ones look like a step-off
PULSE_GRID = np.geomspace(5e-6, 20e-3, 121)

# pulse search (find_pulse): a window is a hit when, over its blocks, the best
# pulse of the grid improves on a step-off by this many times the noise floor
# in three quarters of the blocks (its 0.25 quantile: soil moves under every
# block, metal under some), and explains the ground as ``demine calibrate
# pulse`` requires (its median leaves at most 4 times the noise floor, or 1 %
# of the soil residue a step-off leaves); the pulse is taken after this many
# hits in a row that agree within a factor
_PULSE_MIN_GAIN = 2.0
_PULSE_QUANTILE = 0.25
_PULSE_FIT_NOISE = 4.0
_PULSE_FIT_LEFT = 0.01
_PULSE_HITS = 3
_PULSE_AGREE = 1.3
_PULSE_MIN_BLOCKS = 20
#: scipy.stats.median_abs_deviation's scale "normal" (special.ndtri(0.75), the
#: constant scipy divides by)
_NORMAL_MAD = 0.6744897501960817


def _pulse_energies(x: np.ndarray, gates: np.ndarray, block: int,
                    bases: np.ndarray) -> np.ndarray:
    """Noise-whitened residual energy of each block-to-block change of the
    readings ``x`` after a fit of each of ``bases`` (n_bases, gates, k).

    The block means' changes drop drift and static levels; what is left is
    mostly the soil's amplitude moving with the head.  Each gate is scaled by
    its noise (second differences of the readings, which the smooth soil and
    metal responses hardly touch), so noise alone leaves about ``gates - k``
    per block.  Returns (n_bases, n_changes); changes with a missing value are
    left out (no column at all when fewer than two remain).
    """
    n = (x.shape[0] // block) * block
    means = x[:n].reshape(-1, block, x.shape[1]).mean(axis=1)
    d = np.diff(means, axis=0)
    d = d[np.isfinite(d).all(axis=1)]
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    d2 = d2[np.isfinite(d2).all(axis=1)]
    if d.shape[0] < 2 or d2.shape[0] < 2:
        return np.empty((bases.shape[0], 0))
    # scipy.stats.median_abs_deviation(d2, axis=0, scale="normal") in its own
    # arithmetic (the median of |d2 - median|, over the normal quantile at
    # 0.75), without the ~1.5 ms of its nan-policy wrapper per search window
    mad = np.median(np.abs(d2 - np.median(d2, axis=0)[None, :]), axis=0)
    noise = mad / _NORMAL_MAD / np.sqrt(6)
    if not noise.max() > 0:   # (readings without noise: no scale to judge changes by)
        return np.empty((bases.shape[0], 0))
    # (a gate without noise, e.g. a constant one, weighed as the quietest other
    # gate allows: a floor of tiny had overflowed bases / noise to inf)
    noise = np.maximum(noise, 1e-6 * noise.max()) * np.sqrt(2.0 / block)
    w = d / noise
    q, _ = np.linalg.qr(bases / noise[None, :, None])
    proj = w @ q  # (n_bases, n_changes, k)
    return np.einsum("bg,bg->b", w, w)[None, :] - np.einsum("pbk,pbk->pb", proj, proj)


def pulse_bases(gate_times: Sequence[float], pulses: Sequence[float]) -> np.ndarray:
    """The ground balance's default basis for each of several transmitter on-times.

    Parameters
    ----------
    gate_times : sequence of float
        Gate centre times after switch-off, in seconds.
    pulses : sequence of float
        On-times in seconds; ``inf`` (or 0) for a step-off.

    Returns
    -------
    numpy.ndarray
        ``(n_pulses, n_gates, 2)``: for each pulse, the unit-norm ``viscous``
        and ``offset`` columns of :func:`soil_basis`.
    """
    return np.stack([soil_basis(gate_times, ("viscous", "offset"),
                                pulse_length=float(T) if np.isfinite(T) else None)
                     for T in pulses])


def soil_basis(gate_times: Sequence[float], components: Sequence[str] = DEFAULT_SOIL,
               profiles: Sequence[Sequence[float]] | None = None,
               pulse_length: float | None = None) -> np.ndarray:
    """Soil response components across gates, one column each (unit norm).

    Parameters
    ----------
    gate_times : sequence of float
        Gate centre times after switch-off, in seconds (all > 0).
    components : sequence of {"viscous", "conductive", "offset"}
        Default ``("viscous", "offset")``.  ``viscous``: magnetic viscosity,
        decaying as 1/t; ``conductive``: conductive ground, t^-5/2 (its fast
        decay resembles small targets'); ``offset``: a level common to all gates
        (transmitter leakage/coupling, which changes with sensor height);
        ``band``: a component linear in t, which with ``viscous`` and ``offset``
        spans the first terms of a viscous decay whose relaxation times stop at
        a finite ``tau_max`` (``exp(-t/tau_max) / t ~ 1/t - 1/tau_max +
        t/(2 tau_max**2)``); it also removes part of the late decay of slowly
        decaying targets.
    profiles : sequence of sequences, optional
        Further measured components (one value per gate), e.g. a calibrated
        height-sensitivity profile: the change of the soil response between two
        sensor heights, measured over clean ground.
    pulse_length : float, optional
        The transmitter's on-time T (s) before each switch-off.  ``viscous``
        is then the response of a viscous soil to that pulse,
        ``1/t - 1/(t + T)`` (the switch-off minus the switch-on T earlier),
        instead of the 1/t of a long on-time.  A 150 µs pulse takes 40 %
        off the soil's response at 100 µs and two thirds at 300 µs, which
        the 1/t balance leaves, in proportion to the soil amplitude, as it
        moves with the head's height.  ``None`` or 0: a long on-time (0 in a chain
        overrides a calibration that declares a pulse).
    """
    t = np.asarray(gate_times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ConfigError("emi.soil: gate_times must be a 1-D list of positive seconds")
    pulse = _pulse_length(pulse_length)
    cols = []
    for comp in components:
        if comp == "viscous":
            cols.append(1.0 / t - 1.0 / (t + pulse) if pulse else 1.0 / t)
        elif comp == "conductive":
            cols.append(t ** -2.5)
        elif comp == "offset":
            cols.append(np.ones_like(t))
        elif comp == "band":
            cols.append(t / t.max())
        else:
            raise ConfigError(f"emi.soil: unknown component {comp!r} "
                              "(known: viscous, conductive, offset, band)")
    for i, p in enumerate(profiles or ()):
        v = np.asarray(p, dtype=np.float64)
        if v.shape != t.shape or not np.all(np.isfinite(v)) or not np.any(v):
            raise ConfigError(f"emi.soil: profile {i} must have one finite value per gate "
                              f"({t.size}) and not be all zero")
        cols.append(v)
    if not cols:
        raise ConfigError("emi.soil: no soil components given")
    basis = np.stack(cols, axis=1)
    basis /= np.linalg.norm(basis, axis=0)
    if basis.shape[1] >= t.size:
        raise ConfigError(f"emi.soil: {t.size} gate(s) cannot be ground balanced against "
                          f"{basis.shape[1]} soil components (it takes at least "
                          f"{basis.shape[1] + 1} gates): give fewer components, or process "
                          "with a chain without emi.soil")
    if np.linalg.matrix_rank(basis) < basis.shape[1]:
        raise ConfigError(f"emi.soil: {basis.shape[1]} soil components are not independent "
                          f"across {t.size} gates")
    return basis


def _pulse_length(value: Any) -> float | None:
    """A transmitter on-time in seconds (``None`` or 0: a long on-time), checked."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"emi.soil: pulse_length must be a number of seconds, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"emi.soil: pulse_length must be a number of seconds, "
                          f"got {value!r}") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ConfigError(f"emi.soil: pulse_length must be between 0 and 1 s "
                          f"(the transmitter's on-time), got {v}")
    return v


@register_stage
class SoilCompensation(Stage):
    """Ground balance: remove the soil response from every reading.

    Each reading (a vector across gates) is projected onto the complement of
    the soil subspace: the least-squares fit of the soil components is
    subtracted frame by frame.  The default subspace holds the
    magnetic-viscosity 1/t decay and a level common to all gates (offset
    drift, and coupling that changes with sensor height).  Because the fit is
    redone for every reading, the sensor-height dependence of the soil
    amplitude is removed with it.  Add ``conductive`` (t^-5/2) for conductive
    ground, at a price: that shape resembles the fast decay of small, thin
    targets such as minimum-metal mines, whose signal it partly removes.  A
    measured height-sensitivity profile can be added with ``profiles``.  A
    target whose decay differs from the components survives, minus its own
    projection on them (as with any ground balance).

    On the shipped simulated lanes (``demine simulate``, 400 s, each lane also
    simulated without its objects to find the readings they do not touch),
    the default kept the statistic's 99.9 % quantile on untouched readings at
    1.6-1.8 (Gaussian noise alone: about 1.8), and every mine peaked above it,
    the weakest by 2.4x or more; adding ``conductive`` cut the weakest mines'
    margin to 1.1-1.3x.  The simulated soil follows exactly the laws removed
    here, so this is a best case.

    Parameters
    ----------
    gate_times : sequence of float, optional
        Gate times in seconds; taken from the stream when not given.
    components : sequence of str
        See :func:`soil_basis`.
    profiles : sequence of sequences, optional
        Measured extra components; see :func:`soil_basis`.
    pulse_length : float, optional
        The transmitter's on-time in seconds (see :func:`soil_basis`); taken
        from the stream's calibration (``pulse_length``) when not given.  A
        detector whose pulse is not long against the last gate should declare
        it: on an independent induced-dipole model (150 µs pulse, strongly
        viscous soil, docs/evaluation.md) the 1/t balance left 2.67 false
        alarms per m², the declared pulse 0.84 (0.78 after a step-off).
    find_pulse : bool
        When no pulse is declared (neither ``pulse_length`` nor the stream's
        calibration; 0 declares a step-off), find the on-time from the ground
        as the lane goes (see *Pulse search* below).  Off here; on in the
        packaged ``emi_default`` chain.
    pulse_window : int
        Readings per window of the pulse search; at least 21 blocks of
        ``learn_block``.  Both scale with the reading rate (see
        :class:`~demine.process.Chain`); a rate so low that the scaled window
        holds fewer blocks turns the search off, with a warning.
    pulse_windows : int
        Windows searched from the start of the stream (at least 3); the pulse
        is the instrument's, so ground that shows it early is enough, and the
        search then costs nothing however long the recording.
    append_amplitudes : bool
        Append the fitted amplitude of each component as extra output channels
        (the viscous amplitude tracks sensor height over uniform soil).
    learn : bool
        Also learn the soil's decay from the lane, as a detector ground
        balances over the ground, and remove it (see *Learned ground
        balance* below).  Off here; on in the packaged ``emi_default`` chain.
    learn_block : int
        Readings averaged into one learning step.
    learn_window : float
        Memory of the learning (exponential forgetting), in readings.
    learn_min : int
        Readings the learning must have accepted before its correction is used.
    learn_snr : float
        The correction is used in part from this ratio of explained to
        unexplained variance (see below), fully from 1.5 times it.
    learn_trim : float
        A block is not learnt from when its residual energy exceeds this many
        times the usual (targets, clutter).

    Notes
    -----
    **Learned ground balance** (``learn = true``).  A magnetic soil responds
    with one decay shape whose amplitude changes with the head's height and
    the ground under it; where that shape is not exactly in the fixed
    components (relaxation times limited to a band, frequency-dependent
    susceptibility, conductive ground), the fixed balance leaves a residue
    proportional to the soil amplitude, and the residue moves as the head
    pumps over the ground.  The amplitude of the first component (``viscous``
    by default) measures that soil amplitude, so the stage learns the residue
    as the regression of the balanced readings on it: every ``learn_block``
    readings, the change of the block mean of the balanced gates ``dy`` is
    regressed on the change of the block mean amplitude ``da`` (changes
    between blocks: drift and static levels drop out), with exponential
    forgetting over ``learn_window`` readings: ``R``, the residue per unit
    amplitude, so that ``basis[:, 0] + R`` is the soil's decay as learnt. Each
    reading is then balanced against that learnt decay in place of the first
    component (with the other components as before): a least-squares fit, so
    the soil is removed whole and a target loses only its projection on the
    learnt decay, as it lost its projection on 1/t before.  Robust to targets:
    a block whose change the current model does not explain (residual energy
    above ``learn_trim`` times its running level) or whose amplitude change
    exceeds 4 robust standard deviations is not learnt from; the scales start
    as medians over the first 10 blocks (over later ones while any is zero),
    and are estimated so again after 100 rejected blocks in a row (a head held
    still at the start gives scales of its noise alone, which every block of
    the sweep then exceeds);
    the correction is applied with a gain that is 0 until ``learn_min``
    readings were learnt from, and rises from 0 to 1 as the variance ``R``
    explains, over what it leaves (mean over gates), goes from ``learn_snr``
    to 1.5 times it.  Targets (each its own decay, localised) do not explain
    one another's changes: on the shipped simulated lanes with exact 1/t soil
    that ratio stayed below 20 (below 4 at the reference coil and rate), while
    band-limited viscous laterite gave medians of 45-330.  A target whose
    decay resembles the soil's loses part of its signal, as under any ground
    balance.  The learning is causal (a block's update applies from the next
    reading on) and counts finite readings only, so any chunking gives the
    same output.  :attr:`learned_shape`, :attr:`learned_gain` and
    :attr:`learned_snr` show its state.

    **Pulse search** (``find_pulse = true``).  A detector whose transmitter
    pulse is not long against its last gate sees viscous ground decay as
    ``1/t - 1/(t + T)``; undeclared, the 1/t balance leaves a residue that
    moves with the head (on an independent induced-dipole model, strongly
    viscous ground under a 150 µs pulse gave 2.7 false alarms per m² instead
    of 0.8).  The learnt balance does not follow it there (targets keep its
    gain low), so the stage looks for the pulse itself, as ``demine calibrate
    pulse`` does offline: over each window of ``pulse_window`` readings
    (counted from the start, every reading), the changes between blocks of
    ``learn_block`` readings are balanced with the viscous decay of each pulse
    of :data:`PULSE_GRID` and with 1/t (:func:`_pulse_energies`).  A window is
    a hit when the pulse that leaves the least (median over blocks), not at
    the grid's ends, leaves less than a step-off by twice the noise floor
    (``gates - 2``) in three quarters of the blocks (the soil moves under
    every block, metal only under some), and explains the ground as
    ``demine calibrate pulse`` requires (it leaves at most 4 times the noise
    floor, or 1 % of the soil residue a step-off leaves).
    After three hits in a row whose pulses agree within a factor 1.3, the
    middle one of the three is taken, from the next reading on, as if
    declared (the learning restarts); the search then stops, and so it does
    after ``pulse_windows`` windows (60 s by default) without one: each
    window costs a few milliseconds, which over a whole campaign processed in
    batch would cost more than the rest of the chain.  No window of
    demine's own simulated lanes (1/t and band-limited ground, 124 lanes)
    leads to a pulse; on the independent model's strongly viscous pulse lanes
    the pulse (147.8 µs for 150) is taken after 6-16 s.  :attr:`found_pulse`
    gives the on-time found and the reading it applies from.
    """

    name: ClassVar[str] = "emi.soil"
    #: Called with each chunk's fitted amplitudes (a new (n, k) array, in
    #: reading order) when set on a stage: :class:`demine.pipeline.StreamDetector`
    #: reads the level from them (:class:`demine.detect.LevelDrop`).  Not part
    #: of a copy or a pickle of the stage.
    amplitude_tap: Any = None
    frame_params: ClassVar[dict[str, int]] = {"learn_block": 1, "learn_window": 1,
                                                 "learn_min": 0, "pulse_window": 2}

    def __init__(self, gate_times: Sequence[float] | None = None,
                 components: Sequence[str] = DEFAULT_SOIL,
                 profiles: Sequence[Sequence[float]] | None = None,
                 pulse_length: float | None = None, find_pulse: bool = False,
                 pulse_window: int = 2000, pulse_windows: int = 30,
                 append_amplitudes: bool = False, learn: bool = False,
                 learn_block: int = 50, learn_window: float = 20000.0,
                 learn_min: int = 1000, learn_snr: float = 25.0,
                 learn_trim: float = 9.0) -> None:
        super().__init__()
        n = self.name
        if not isinstance(learn, bool):
            raise ConfigError(f"{n}: parameter 'learn' must be true/false")
        self.learn = learn
        self.learn_block = _num(n, "learn_block", learn_block, lo=1, hi=1_000_000, integer=True)
        self.learn_window = _num(n, "learn_window", learn_window, lo=float(self.learn_block))
        self.learn_min = _num(n, "learn_min", learn_min, lo=0, integer=True)
        self.learn_snr = _num(n, "learn_snr", learn_snr, lo=0.0, lo_open=True)
        self.learn_trim = _num(n, "learn_trim", learn_trim, lo=0.0, lo_open=True)
        if not isinstance(find_pulse, bool):
            raise ConfigError(f"{n}: parameter 'find_pulse' must be true/false")
        self.find_pulse = find_pulse
        self.pulse_window = _num(n, "pulse_window", pulse_window, lo=2, hi=10_000_000,
                                 integer=True)
        self.pulse_windows = _num(n, "pulse_windows", pulse_windows, lo=_PULSE_HITS,
                                  hi=1_000_000, integer=True)
        if find_pulse and not self._window_holds_blocks():
            raise ConfigError(f"{n}: pulse_window ({self.pulse_window} readings) must hold "
                              f"at least {_PULSE_MIN_BLOCKS + 1} blocks of learn_block "
                              f"({self.learn_block}) for the pulse search")
        if isinstance(components, str):
            components = (components,)
        if not isinstance(components, Sequence) or not all(
                isinstance(c, str) for c in components):
            raise ConfigError(f"{self.name}: parameter 'components' must be a list of names")
        if not isinstance(append_amplitudes, bool):
            raise ConfigError(f"{self.name}: parameter 'append_amplitudes' must be true/false")
        self.components = tuple(components)
        if find_pulse and "viscous" not in self.components:
            raise ConfigError(f"{n}: find_pulse looks for the transmitter pulse of the "
                              "'viscous' component, which components do not include")
        self.profiles = None if profiles is None else [list(map(float, p)) for p in profiles]
        self.pulse_length = _pulse_length(pulse_length)
        # the pulse declared: the parameter, else the stream's calibration; and
        # the one in force (the declared one, or the one the search found)
        self._declared = self._pulse = self.pulse_length
        self._found: tuple[float, int] | None = None
        self.append_amplitudes = append_amplitudes
        self.gate_times: list[float] | None = None
        self._basis: np.ndarray | None = None
        self._coef: np.ndarray | None = None
        self.reset()
        if gate_times is not None:
            self._set_gates(gate_times)
        elif self.profiles is not None or self.components:
            # validate component names now, so a TOML typo fails at load time
            soil_basis(np.geomspace(1e-5, 1e-3, 40), self.components, None)

    def scale_frames(self, factor: float) -> None:
        super().scale_frames(factor)
        # the forgetting memory never shorter than one learning block
        self.learn_window = max(self.learn_window, float(self.learn_block))
        if self.find_pulse and not self._window_holds_blocks():
            warnings.warn(f"{self.name}: at this reading rate a pulse_window of "
                          f"{self.pulse_window} readings holds fewer than "
                          f"{_PULSE_MIN_BLOCKS + 1} blocks of learn_block "
                          f"({self.learn_block}): no pulse search; declare the "
                          "transmitter pulse (calibration pulse_length) if it is not long",
                          stacklevel=2)

    def _window_holds_blocks(self) -> bool:
        return self.pulse_window >= (_PULSE_MIN_BLOCKS + 1) * self.learn_block

    def _set_gates(self, gate_times: Sequence[float]) -> None:
        basis = soil_basis(gate_times, self.components, self.profiles, self._pulse)
        self.gate_times = [float(t) for t in np.asarray(gate_times, dtype=np.float64)]
        self._basis = np.ascontiguousarray(basis)
        self._coef = np.ascontiguousarray(np.linalg.pinv(basis))
        # the first component's part orthogonal to the others (learned balance)
        rest = basis[:, 1:]
        w0 = basis[:, 0] - rest @ (np.linalg.pinv(rest) @ basis[:, 0]) if rest.size \
            else basis[:, 0].copy()
        self._w0 = np.ascontiguousarray(w0)
        self._kappa2 = float(w0 @ w0)
        self._pulse_bases: np.ndarray | None = None  # made when the search first needs them

    def configure(self, context: Mapping[str, Any]) -> None:
        pulse = self.pulse_length
        if pulse is None:
            try:
                pulse = _pulse_length(context.get("pulse_length"))
            except ConfigError as exc:
                raise ConfigError(f"stream {context.get('stream', '?')!r}: calibration "
                                  f"'pulse_length': {exc}") from None
        if pulse != self._declared:
            self._declared = self._pulse = pulse
            if self.gate_times is not None:
                self._set_gates(self.gate_times)
            # what was learnt (or found) was against the other balance
            self.reset()
        if self._is_given("gate_times"):
            return
        given = context.get("gate_times")
        want = None if given is None else [float(t) for t in np.asarray(
            given, dtype=np.float64).reshape(-1)]
        if want is not None:   # (checked before they are taken)
            soil_basis(want, self.components, self.profiles, self._pulse)
        if self._stream_fact("gate_times", want):
            if want is None:
                self._basis = None
            else:
                self._set_gates(want)

    @property
    def basis(self) -> np.ndarray:
        """Soil components (n_gates, k), unit-norm columns."""
        if self._basis is None:
            raise MissingCalibrationError(f"{self.name}: gate times unknown; give gate_times "
                                          "(the stream did not declare them)", "gate_times")
        return self._basis

    def __getstate__(self) -> dict[str, Any]:
        # (a copy is not tapped by whoever tapped this stage: its amplitudes
        # would go on piling up in that reader's queue)
        state = self.__dict__.copy()
        state.pop("amplitude_tap", None)
        return state

    def _searching(self) -> bool:
        return (self.find_pulse and self._declared is None and self._found is None
                and self._basis is not None and self._basis.shape[0] >= 4
                and self._window_holds_blocks()
                and self._pw_seen < self.pulse_windows * self.pulse_window)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._check(chunk)
        basis = self.basis
        if x.shape[1] != basis.shape[0]:
            raise ConfigError(f"{self.name}: chunk has {x.shape[1]} gates, gate_times has "
                              f"{basis.shape[0]}")
        if not self._searching() or not x.shape[0]:
            return self._emit(self._balance(x))
        # the search decides at fixed reading counts, so any chunking switches
        # the balance at the same reading
        parts = []
        pos = 0
        while pos < x.shape[0]:
            if not self._searching():
                parts.append(self._balance(x[pos:]))
                break
            if self._pw_buf is None:
                self._pw_buf = np.empty((self.pulse_window, x.shape[1]))
            take = min(x.shape[0] - pos, self.pulse_window - self._pw_fill)
            seg = x[pos:pos + take]
            parts.append(self._balance(seg))
            self._pw_buf[self._pw_fill:self._pw_fill + take] = seg
            self._pw_fill += take
            self._pw_seen += take
            pos += take
            if self._pw_fill == self.pulse_window:
                self._pw_fill = 0
                self._search_window(self._pw_buf)
                if not self._searching():  # (found, or the windows are spent)
                    self._pw_buf = None
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self._emit(out)

    def _search_window(self, xw: np.ndarray) -> None:
        """Judge one window of the pulse search; take the pulse after enough hits."""
        if self._pulse_bases is None:
            self._pulse_bases = pulse_bases(self.gate_times, np.append(PULSE_GRID, np.inf))
        e = _pulse_energies(xw, np.asarray(self.gate_times), self.learn_block,
                            self._pulse_bases)
        hit = None
        if e.shape[1] >= _PULSE_MIN_BLOCKS:
            step = e[-1]
            med = np.median(e[:-1], axis=1)
            j = int(np.argmin(med))  # the pulse `demine calibrate pulse` would take
            gain = float(np.quantile(step - e[j], _PULSE_QUANTILE))
            floor = len(self.gate_times) - 2.0  # what noise alone leaves per block
            best = float(med[j])
            left_step = max(float(np.median(step)) - floor, 0.0)
            left_best = max(best - floor, 0.0)
            if (0 < j < PULSE_GRID.size - 1 and gain >= _PULSE_MIN_GAIN * floor
                    and (best <= _PULSE_FIT_NOISE * floor
                         or left_best <= _PULSE_FIT_LEFT * left_step)):
                hit = float(PULSE_GRID[j])
        self._pw_hits = (self._pw_hits + [hit])[-_PULSE_HITS:]
        hits = self._pw_hits
        if (len(hits) == _PULSE_HITS and all(h is not None for h in hits)
                and max(hits) <= _PULSE_AGREE * min(hits)):
            pulse = sorted(hits)[_PULSE_HITS // 2]
            self._found = (pulse, self._pw_seen)
            self._pulse = pulse
            self._set_gates(self.gate_times)
            self._reset_learning()  # learnt against the 1/t balance

    def _balance(self, x: np.ndarray) -> np.ndarray:
        basis = self._basis
        out = _alloc(x)
        amp = np.empty((x.shape[0], basis.shape[1]), dtype=np.float64)
        if self.learn:
            ng = basis.shape[0]
            if self._vstate is None:
                self._vstate = np.zeros((7, ng))
                self._wbuf = np.zeros((_LEARN_WARMUP, ng + 1))
            _emi.soil_learn_run(x, out, self._coef, basis, self._w0, self._kappa2, amp,
                                self._vstate, self._wbuf,
                                self._dstate, self._istate, self.learn_block,
                                self.learn_block / self.learn_window,
                                -(-self.learn_min // self.learn_block), self.learn_snr,
                                self.learn_trim, _LEARN_TRIM_AMP, _LEARN_CLIP,
                                _LEARN_MAX_REJECT)
        else:
            _emi.soil_run(x, out, self._coef, basis, amp)
        if self.amplitude_tap is not None:
            self.amplitude_tap(amp)
        if self.append_amplitudes:
            out = np.concatenate([out, amp.astype(x.dtype)], axis=1)
        return out

    def reset(self) -> None:
        super().reset()
        self._reset_learning()
        self._pw_buf: np.ndarray | None = None
        self._pw_fill = 0
        self._pw_seen = 0
        self._pw_hits: list[float | None] = []
        if getattr(self, "_found", None) is not None:
            self._found = None
            self._pulse = self._declared
            if self.gate_times is not None:
                self._set_gates(self.gate_times)

    def _reset_learning(self) -> None:
        self._vstate: np.ndarray | None = None
        self._wbuf: np.ndarray | None = None
        self._dstate = np.zeros(7)
        self._istate = np.zeros(5, dtype=np.int64)

    def notes(self) -> list[str]:
        found = self._found  # (one read: the detector thread may still write it)
        if found is None:
            return []
        pulse, start = found
        return [f"{self.name}: a transmitter pulse of {pulse * 1e6:.1f} us was found in the "
                f"ground's decay and balanced from reading {start} on; declare it "
                f"(calibration pulse_length = {pulse:.4g}, or the emi.soil step's "
                "pulse_length in a detection config, docs/processing.md) to balance "
                "with it from the start"]

    @property
    def found_pulse(self) -> tuple[float, int] | None:
        """The on-time the pulse search found (s) and the reading (counted from
        the start) from which it balances with it; None while none is found."""
        return self._found

    @property
    def learned_shape(self) -> np.ndarray | None:
        """The learnt soil residue: change of each balanced gate per unit of the
        first component's amplitude (None before any is learnt or without
        ``learn``).  ``basis[:, 0] + learned_shape`` is the soil's decay as
        learnt from the lane, per unit of that amplitude."""
        if self._vstate is None or self._istate[2] == 0:
            return None
        return self._vstate[5].copy()

    @property
    def learned_gain(self) -> float:
        """How much of :attr:`learned_shape` is removed now (0 to 1)."""
        return float(self._dstate[5])

    @property
    def learned_snr(self) -> float:
        """Variance of the block-to-block changes the learnt shape explains,
        over what it leaves, averaged over gates (0 before any learning)."""
        return float(self._dstate[4])

    def params(self) -> dict[str, Any]:
        return {"gate_times": self.gate_times, "components": list(self.components),
                "profiles": self.profiles, "pulse_length": self._declared,
                "find_pulse": self.find_pulse, "pulse_window": self.pulse_window,
                "pulse_windows": self.pulse_windows,
                "found_pulse": None if self._found is None else
                {"pulse_length": self._found[0], "from_reading": self._found[1]},
                "append_amplitudes": self.append_amplitudes,
                "learn": self.learn, "learn_block": self.learn_block,
                "learn_window": self.learn_window, "learn_min": self.learn_min,
                "learn_snr": self.learn_snr, "learn_trim": self.learn_trim}


@register_stage
class Baseline(Stage):
    """Remove the slowly drifting baseline of each gate, freezing over targets.

    The baseline is an exponential moving average with time constant
    ``window`` frames.  An anomaly is active while the residual's
    noise-normalised RMS across gates, ``sqrt(mean((r / sigma)**2))``, exceeds
    ``threshold`` (``sigma`` is the stage's own running robust noise scale);
    while it is active and for ``hold`` frames after, the baseline and noise
    scale stay frozen, so a target under the coil does not bleed into the
    baseline.  A freeze longer than ``max_freeze`` frames ends in a retune,
    so a genuine level step or drift during a long freeze is absorbed; choose
    it longer than any pass over a target.  The retune sets the baseline to
    the level of the quietest of the freeze's readings (``retune="quiet"``):
    the per-gate median of the quarter of them whose noise-weighted mean over
    the gates lies in the shortest interval, the densest cluster, which is the
    ground between targets even when targets are most of the readings (each
    target is at its own level).  In dense clutter a freeze lasts as long as
    the passes keep meeting metal, and the reading it ends on is often on a
    target; re-nulling on that reading (``retune="reading"``, as a detector's
    re-null button does) leaves the target's response subtracted from every
    reading until the next retune.  On a battle-area lane it did: offsets of
    over a hundred noise levels for seconds, raising the statistic over
    whole passes.  The first ``warmup`` frames never freeze and use a cumulative
    mean.

    Output: the residual ``x - baseline`` (baseline from previous frames); the
    first frame is all zeros.  :attr:`last_frozen` holds, for the last chunk,
    where the baseline was frozen.

    Parameters
    ----------
    window : float
        Baseline time constant in frames (EWMA weight 1/window).
    noise_window : float
        Time constant of the noise-scale average, in frames.
    threshold : float
        Anomaly threshold on the normalised RMS.
    hold : int
        Frames the freeze persists after the anomaly ends.
    max_freeze : int
        Longest freeze in frames before a retune (0: never; at most 10 million).
    warmup : int
        Frames before freezing is allowed.
    clip : float
        Noise updates are clipped at ``clip * sigma`` (0: no clipping).
    retune : {"quiet", "reading"}
        What a retune sets the baseline to: the level of the quietest quarter
        of the freeze's readings, or the reading that ends it.
    """

    name: ClassVar[str] = "emi.baseline"
    frame_params: ClassVar[dict[str, int]] = {"window": 1, "noise_window": 1, "hold": 0,
                                                 "max_freeze": 0, "warmup": 1}

    def __init__(self, window: float = 2000.0, noise_window: float = 2000.0,
                 threshold: float = 4.0, hold: int = 200, max_freeze: int = 2000,
                 warmup: int = 200, clip: float = 3.0, retune: str = "quiet") -> None:
        super().__init__()
        n = self.name
        if retune not in ("quiet", "reading"):
            raise ConfigError(f"{n}: retune must be 'quiet' or 'reading', got {retune!r}")
        self.retune = retune
        self.window = _num(n, "window", window, lo=1.0)
        self.noise_window = _num(n, "noise_window", noise_window, lo=1.0)
        self.threshold = _num(n, "threshold", threshold, lo=0.0, lo_open=True)
        self.hold = _num(n, "hold", hold, lo=0, integer=True)
        # (the quiet retune keeps up to max_freeze readings: 10 million of 16
        # gates are 1.3 GB, 2.8 hours at 1000 readings/s)
        self.max_freeze = _num(n, "max_freeze", max_freeze, lo=0, hi=10_000_000, integer=True)
        self.warmup = _num(n, "warmup", warmup, lo=1, integer=True)
        self.clip = _num(n, "clip", clip, lo=0.0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._base: np.ndarray | None = None
        self._sig: np.ndarray | None = None
        self._istate = np.zeros(3, dtype=np.int64)
        self._fbuf: np.ndarray | None = None  # the readings of the current freeze
        self.last_frozen = np.zeros(0, dtype=bool)

    @property
    def baseline(self) -> np.ndarray | None:
        """Current baseline per gate (None before the first frame)."""
        return None if self._base is None or self._istate[0] == 0 else self._base.copy()

    @property
    def noise(self) -> np.ndarray | None:
        """Current noise scale per gate (None before the first frame)."""
        return None if self._sig is None or self._istate[0] == 0 else self._sig.copy()

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._check(chunk)
        if self._base is None:
            self._base = np.zeros(x.shape[1])
            self._sig = np.zeros(x.shape[1])
        # the freeze's readings, for the quiet retune (no rows: re-null on the reading)
        rows = self.max_freeze if self.retune == "quiet" else 0
        if self._fbuf is None or self._fbuf.shape != (rows, x.shape[1]):
            self._fbuf = np.zeros((rows, x.shape[1]))
        out = _alloc(x)
        frozen = np.zeros(x.shape[0], dtype=np.uint8)
        _emi.baseline_run(x, out, self._base, self._sig, self._istate, frozen,
                          1.0 / self.window, 1.0 / self.noise_window, self.threshold,
                          self.hold, self.max_freeze, self.warmup, self.clip,
                          self._fbuf)
        self.last_frozen = frozen.view(bool)
        return self._emit(out)

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "noise_window": self.noise_window,
                "threshold": self.threshold, "hold": self.hold,
                "max_freeze": self.max_freeze, "warmup": self.warmup, "clip": self.clip,
                "retune": self.retune}


_DETECT_OUTPUTS = ("append", "statistic", "zscore", "zscore+statistic")


@register_stage
class Detect(Stage):
    """Noise-normalised detection statistic.

    Each gate is divided by a running robust noise scale ``sigma`` (an
    exponential average of ``sqrt(pi/2) * |x|`` with time constant
    ``noise_window`` frames, each update clipped at ``clip * sigma``, and
    skipped while the statistic exceeds ``threshold`` so that a target does
    not inflate its own noise estimate).  The statistic is the RMS of the
    normalised gates, ``s = sqrt(mean(z**2))``: about 1 over noise, large over
    a target.  Feed it baseline-removed (and soil-compensated) readings.

    Parameters
    ----------
    noise_window : float
        Time constant of the noise scale in frames.
    threshold : float
        Statistic above which the noise scale is not updated.
    warmup : int
        Frames during which the noise scale is the plain running mean
        (including the current frame).
    clip : float
        Clip of each noise update, in units of the current scale (0: none).
    min_noise : float
        Floor of the noise scale (a zero scale with a non-zero input gives inf).
    max_freeze : int
        After this many consecutive frames above ``threshold`` the (clipped)
        noise updates resume, so a lasting rise of the noise level is learnt
        (0: never).
    output : {"append", "statistic", "zscore", "zscore+statistic"}
        ``append``: the input gates followed by the statistic (n_gates + 1
        channels); ``statistic``: only the statistic; ``zscore``: the
        normalised gates; ``zscore+statistic``: both.
    """

    name: ClassVar[str] = "emi.detect"

    def __init__(self, noise_window: float = 5000.0, threshold: float = 3.0,
                 warmup: int = 200, clip: float = 3.0, min_noise: float = 0.0,
                 max_freeze: int = 5000, output: str = "append") -> None:
        super().__init__()
        n = self.name
        self.noise_window = _num(n, "noise_window", noise_window, lo=1.0)
        self.threshold = _num(n, "threshold", threshold, lo=0.0, lo_open=True)
        self.warmup = _num(n, "warmup", warmup, lo=0, integer=True)
        self.clip = _num(n, "clip", clip, lo=0.0)
        self.min_noise = _num(n, "min_noise", min_noise, lo=0.0)
        self.max_freeze = _num(n, "max_freeze", max_freeze, lo=0, integer=True)
        if output not in _DETECT_OUTPUTS:
            raise ConfigError(f"{n}: parameter 'output' must be one of {_DETECT_OUTPUTS}, "
                              f"got {output!r}")
        self.output = output
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._sig: np.ndarray | None = None
        self._istate = np.zeros(2, dtype=np.int64)

    @property
    def noise(self) -> np.ndarray | None:
        """Current noise scale per gate."""
        return None if self._sig is None else self._sig.copy()

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._check(chunk)
        ng = x.shape[1]
        if self._sig is None:
            self._sig = np.zeros(ng)
        if self.output == "statistic":
            z = _alloc(x)
            out = _alloc(x, 1)
            stat = out[:, 0]
        elif self.output == "zscore":
            z = out = _alloc(x)
            stat = np.empty(x.shape[0], dtype=x.dtype)
        else:
            out = _alloc(x, ng + 1)
            stat = np.empty(x.shape[0], dtype=x.dtype)
            z = out[:, :ng] if self.output == "zscore+statistic" else _alloc(x)
        if not z.flags.c_contiguous:
            zbuf = _alloc(x)
        else:
            zbuf = z
        sbuf = stat if stat.flags.c_contiguous else np.empty(x.shape[0], dtype=x.dtype)
        _emi.detect_run(x, zbuf, sbuf, self._sig, self._istate, 1.0 / self.noise_window,
                        self.threshold, self.warmup, self.clip, self.min_noise,
                        self.max_freeze)
        if zbuf is not z:
            z[...] = zbuf
        if sbuf is not stat:
            stat[...] = sbuf
        if self.output == "append":
            out[:, :ng] = x
            out[:, ng] = sbuf
        elif self.output == "zscore+statistic":
            out[:, ng] = sbuf
        return self._emit(out)

    def params(self) -> dict[str, Any]:
        return {"noise_window": self.noise_window, "threshold": self.threshold,
                "warmup": self.warmup, "clip": self.clip, "min_noise": self.min_noise,
                "max_freeze": self.max_freeze, "output": self.output}


_MATCHED_OUTPUTS = ("append", "statistic")


@register_stage
class MatchedDetect(Stage):
    """Integrating (matched) detection statistic with a clutter-proof noise scale.

    A target under a moving coil gives a response that lasts the whole
    passage of the coil over it (tens to hundreds of readings), while the
    receiver noise changes from one reading to the next.  Two consequences
    that :class:`Detect` does not use:

    * **Noise scale from second differences.**  Each gate's noise ``sigma`` is
      a running robust scale of ``x[i] - 2 x[i-1] + x[i-2]`` (for white noise
      ``sqrt(6) sigma``), which a smooth target response barely changes.  A
      scale taken from the level of the signal, as in :class:`Detect`, grows
      over ground full of metal (every object's tails count as "noise") and
      then hides the small targets among it; on the shipped battle-area lane
      that level-based scale was 2-30 times the receiver noise.
      Updates are clipped at ``clip * sigma`` and skipped while the
      statistic exceeds ``threshold`` (resuming after ``max_freeze`` frames).
    * **Integration over the passage.**  The normalised gates ``z = x / sigma``
      are summed over the last ``window`` readings and divided by
      ``sqrt(window)``: unit variance for white noise, and a target that stays
      under the coil for ``window`` readings gains up to ``sqrt(window)`` in
      signal-to-noise ratio (a matched filter for a flat-topped passage).  The
      statistic is the RMS of the integrated gates (optionally of their
      projection on ``basis``, e.g. expected decay shapes): about 1 over white
      noise (more over coloured noise or soil residue, which the
      detector's adaptive threshold follows), large over metal.  It lags the
      readings by about ``window / 2`` frames.
    * **Shape novelty** (``novelty_window`` > 0).  A small object on the flank
      of a much stronger one (a minimum-metal AP mine 0.4 m from a steel-cased
      AT mine, a fuze beside a fragment) adds little to the statistic there,
      and no peak of its own; but it decays differently.  The novelty of a
      reading is the RMS over the gates of the part of its integrated gates
      ``u`` orthogonal to those of the *dominant* reading: the one with the
      highest statistic among the last ``novelty_window`` readings (this one
      included, so over an isolated object's own peak it is 0).  Over one
      object it stays a small fraction of the statistic (its decay shape
      barely changes across its footprint), about 1 over noise, and rises
      where a second decay law adds to the dominant one.  The detector
      (:class:`demine.detect.EMIDetector`, ``shape_radius``) runs its own
      events on it and keeps the objects it finds away from every alarm of
      the statistic.  Causal: it lags no more than the statistic.

    Parameters
    ----------
    window : int
        Integration length in readings (about the time the coil takes to pass
        over a small target: coil diameter / sweep speed).
    noise_window : float
        Time constant of the noise scale in frames.
    threshold : float
        Statistic above which the noise scale is not updated.
    warmup : int
        Number of differences over which the noise scale is a plain mean.
    clip : float
        Clip of each noise update, in units of the current scale (0: none).
    min_noise : float
        Floor of the noise scale.
    max_freeze : int
        Consecutive frames above ``threshold`` after which noise updates
        resume (0: never).
    basis : sequence of sequences, optional
        ``k`` rows of ``n_gates`` weights; the statistic is
        ``sqrt(sum((basis @ u)**2) / k)``.  Default: the identity (RMS over
        gates).
    output : {"append", "statistic"}
        ``append``: the input gates followed by the statistic; ``statistic``:
        only the statistic.  With ``novelty_window`` > 0 the novelty column
        comes just before the statistic (which stays the last column).
    novelty_window : int
        Readings over which the dominant reading of the shape novelty is
        sought (0: no novelty column).
    """

    name: ClassVar[str] = "emi.matched"
    frame_params: ClassVar[dict[str, int]] = {"window": 1, "noise_window": 1, "warmup": 0,
                                                 "max_freeze": 0, "novelty_window": 0}

    def __init__(self, window: int = 1, noise_window: float = 5000.0,
                 threshold: float = 3.0, warmup: int = 200, clip: float = 3.0,
                 min_noise: float = 0.0, max_freeze: int = 5000,
                 basis: Sequence[Sequence[float]] | None = None,
                 output: str = "append", novelty_window: int = 0) -> None:
        super().__init__()
        n = self.name
        self.window = _num(n, "window", window, lo=1, hi=100000, integer=True)
        self.noise_window = _num(n, "noise_window", noise_window, lo=1.0)
        self.threshold = _num(n, "threshold", threshold, lo=0.0, lo_open=True)
        self.warmup = _num(n, "warmup", warmup, lo=0, integer=True)
        self.clip = _num(n, "clip", clip, lo=0.0)
        self.min_noise = _num(n, "min_noise", min_noise, lo=0.0)
        self.max_freeze = _num(n, "max_freeze", max_freeze, lo=0, integer=True)
        self.basis = None
        if basis is not None:
            b = np.asarray(basis, dtype=np.float64)
            if b.ndim != 2 or b.shape[0] < 1 or not np.isfinite(b).all():
                raise ConfigError(f"{n}: parameter 'basis' must be a non-empty list of "
                                  "rows of finite gate weights")
            self.basis = b.tolist()
        if output not in _MATCHED_OUTPUTS:
            raise ConfigError(f"{n}: parameter 'output' must be one of {_MATCHED_OUTPUTS}, "
                              f"got {output!r}")
        self.output = output
        self.novelty_window = _num(n, "novelty_window", novelty_window, lo=0, hi=10**6,
                                   integer=True)
        self.reset()

    @property
    def n_extra(self) -> int:
        """Columns after the gates: the statistic, and the novelty before it."""
        return 2 if self.novelty_window > 0 else 1

    def reset(self) -> None:
        super().reset()
        self._nov_state: tuple[np.ndarray, ...] = ()
        self._sig: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._ring: np.ndarray | None = None
        self._acc: np.ndarray | None = None
        self._proj: np.ndarray | None = None
        self._istate = np.zeros(5, dtype=np.int64)

    @property
    def noise(self) -> np.ndarray | None:
        """Current noise scale per gate."""
        return None if self._sig is None else self._sig.copy()

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._check(chunk)
        ng = x.shape[1]
        if self._sig is None:
            self._sig = np.zeros(ng)
            self._prev = np.zeros((2, ng))
            self._ring = np.zeros((self.window, ng))
            self._acc = np.zeros(ng)
            if self.basis is None:
                self._proj = np.eye(ng)
            else:
                self._proj = np.ascontiguousarray(self.basis, dtype=np.float64)
                if self._proj.shape[1] != ng:
                    raise ConfigError(f"{self.name}: basis rows have {self._proj.shape[1]} "
                                      f"weights for {ng} gates")
            # the novelty's recent integrated gates (with their squared norms),
            # its running maximum as a deque, and [frames, head, length]
            w = max(self.novelty_window, 1)
            self._nov_state = (np.zeros((w, ng + 1)), np.zeros(w + 1, dtype=np.int64),
                               np.zeros(w + 1), np.zeros(3, dtype=np.int64))
        want = self.novelty_window > 0
        ncol = ng if self.output == "append" else 0
        out = _alloc(x, ncol + self.n_extra)
        if ncol:
            out[:, :ng] = x
        # the kernel writes the statistic and the novelty into their columns
        # (no separate arrays: fresh pages are much of a long chunk's cost)
        _emi.matched_run(x, out[:, -1], self._sig, self._prev, self._ring, self._acc,
                         self._istate, self._proj, self.basis is not None, np.empty(ng),
                         1.0 / self.noise_window, self.threshold, self.warmup, self.clip,
                         self.min_noise, self.max_freeze,
                         out[:, -2] if want else out[:0, -1], *self._nov_state, want)
        return self._emit(out)

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "noise_window": self.noise_window,
                "threshold": self.threshold, "warmup": self.warmup, "clip": self.clip,
                "min_noise": self.min_noise, "max_freeze": self.max_freeze,
                "basis": self.basis, "output": self.output,
                "novelty_window": self.novelty_window}
