"""Streaming GPR (ground-penetrating radar) processing stages and offline migration.

A B-scan arrives as chunks of shape ``(n_traces, n_samples)``: one radar trace
(A-scan) per row, two-way travel time along the row.  Every stage below is a
:class:`demine.process.Stage`: it carries its state across chunks, so a radargram
processed in one call or trace by trace gives the same numbers (to float
rounding).  The arithmetic runs in the compiled, multi-threaded kernels of
``demine._gpr`` (float32 samples, float64 running sums).  Inputs may be int16,
int32, float32 or float64 (read without a copy); other dtypes are cast to
float32.  Outputs are float32.

The usual chain, shipped as ``chains/gpr_default.toml``, is::

    gpr.dewow -> gpr.background -> gpr.bandpass -> gpr.gain_sec

and :class:`FusedChain` (``gpr.fused``) does those four steps in one pass over
memory with the same result.

Missing-sample policy (all stages): a non-finite input sample (NaN, +-inf)
counts as 0 for the neighbours that use it (running means, filters, picks) and
comes out as NaN at its own position (for :class:`TimeZero`, at the position it
is shifted to).  State never holds a NaN, so a stream recovers at once.  The
exceptions are :class:`ExpBackgroundRemoval`, whose background simply skips a
missing sample, and :class:`Stack` and :class:`Resample`, whose output samples
are NaN when any input sample they average is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from scipy import signal

from ._params import check_number as _num
from .errors import ConfigError, MissingCalibrationError
from .process import RADAR_FREQUENCY_RANGE, Stage, register_stage

__all__ = [
    "DeWow",
    "TimeZero",
    "BackgroundRemoval",
    "ExpBackgroundRemoval",
    "TPowerGain",
    "SECGain",
    "AGC",
    "BandPass",
    "FusedChain",
    "fuse_chain",
    "Stack",
    "Resample",
    "gain_curve",
    "design_bandpass",
    "stolt_migrate",
    "kirchhoff_migrate",
]

def _pick_kernels() -> ModuleType:
    """The compiled kernels for this CPU: the AVX2+FMA build where the CPU has both
    (checked before importing it), else the baseline build.  The environment
    variable ``DEMINE_GPR_KERNELS=baseline`` forces the baseline build."""
    if os.environ.get("DEMINE_GPR_KERNELS", "").lower() != "baseline":
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # pragma: no cover - older or unusual NumPy
            feats = {}
        if feats.get("AVX2") and feats.get("FMA3"):
            from . import _gpr_avx2

            return _gpr_avx2
    from . import _gpr as baseline

    return baseline


_gpr = _pick_kernels()

#: dtypes the kernels read directly (others are cast to float32)
_NATIVE = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.float32),
           np.dtype(np.float64))
_NO_SOS = np.empty((0, 6), dtype=np.float64)
_NO_ZI = np.empty((0, 2), dtype=np.float64)
_NO_GAIN = np.empty(0, dtype=np.float32)
_MAX_SECTIONS = 8
#: bound of integer window and count parameters (traces or samples): the
#: kernels take C ints, with room for their tiles
_MAX_INT = 2 ** 30
#: bytes a background window's ring of traces may take per thread
_MAX_RING_BYTES = 2 ** 31




def _opt_num(stage: str, name: str, value: Any, **kw: Any) -> Any:
    return None if value is None else _num(stage, name, value, **kw)


def _as_bscan(stage: str, chunk: Any, n_samples: int | None) -> np.ndarray:
    """Validate a chunk: 2-D (n_traces, n_samples), a kernel dtype, C-contiguous."""
    arr = np.asarray(chunk)
    if arr.ndim != 2:
        raise ValueError(f"{stage}: chunk must be 2-D (n_traces, n_samples), got shape "
                         f"{arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{stage}: chunk has no samples per trace")
    if n_samples is not None and arr.shape[1] != n_samples:
        raise ValueError(f"{stage}: chunk has {arr.shape[1]} samples per trace, earlier "
                         f"chunks had {n_samples}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{stage}: chunk dtype must be numeric, got {arr.dtype}")
    dtype = arr.dtype if arr.dtype in _NATIVE else np.dtype(np.float32)
    return np.ascontiguousarray(arr, dtype=dtype)


def _empty(n_samples: int | None) -> np.ndarray:
    return np.empty((0, n_samples or 0), dtype=np.float32)


def design_bandpass(low: float | None, high: float | None, sample_interval: float,
                    order: int = 2) -> np.ndarray:
    """Butterworth second-order sections for the zero-phase band-pass.

    Parameters
    ----------
    low, high : float or None
        Corner frequencies in Hz; ``low`` None or 0 gives a low-pass, ``high`` None
        (or at/above Nyquist) a high-pass.
    sample_interval : float
        Time between samples in seconds.
    order : int
        Butterworth order of each edge (the forward-backward pass doubles it).

    Returns
    -------
    ndarray, shape (n_sections, 6)
    """
    fs = 1.0 / sample_interval
    nyq = fs / 2.0
    lo = None if not low else float(low)
    hi = None if (high is None or high >= nyq) else float(high)
    if lo is None and hi is None:
        raise ConfigError("gpr.bandpass: neither 'low' nor 'high' gives a filter")
    if lo is not None and lo >= nyq:
        raise ConfigError(f"gpr.bandpass: parameter 'low' ({lo:g} Hz) must be below Nyquist "
                          f"({nyq:g} Hz); a radar sampled this coarsely is of a lower centre "
                          "frequency: declare it (calibration 'frequency'; `demine detect` and "
                          "`demine process` take --calibration STREAM=PROFILE), and a band "
                          "with a frequency_range, as the packaged chain's, follows it")
    if lo is not None and hi is not None:
        if lo >= hi:
            raise ConfigError(f"gpr.bandpass: parameter 'low' ({lo}) must be < 'high' ({hi})")
        sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")
    elif lo is not None:
        sos = signal.butter(order, lo, btype="highpass", fs=fs, output="sos")
    else:
        sos = signal.butter(order, hi, btype="lowpass", fs=fs, output="sos")
    return np.ascontiguousarray(sos, dtype=np.float64)


def _default_padlen(sos: np.ndarray) -> int:
    """scipy.signal.sosfiltfilt's default pad length."""
    return 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()),
                                       int((sos[:, 5] == 0).sum())))


def gain_curve(n_samples: int, *, power: float = 0.0, attenuation: float = 0.0,
               sample_interval: float | None = None, time_zero: int = 0,
               max_gain: float | None = None) -> np.ndarray:
    """The gain applied by :class:`TPowerGain` and :class:`SECGain`.

    With ``tau_j = (j - time_zero + 1)`` samples after time zero,
    ``g_j = tau_j**power * exp(attenuation * (tau_j - 1) * sample_interval)`` for
    ``j >= time_zero`` and 1 before it, clipped to ``max_gain``.  The first sample
    at time zero therefore has gain 1.
    """
    j = np.arange(n_samples, dtype=np.float64)
    tau = np.maximum(j - time_zero + 1.0, 1.0)
    g = tau ** power
    if attenuation:
        if not sample_interval:
            raise ConfigError("gpr gain: 'sample_interval' is needed for an attenuation")
        g = g * np.exp(attenuation * (tau - 1.0) * sample_interval)
    if max_gain is not None:
        g = np.minimum(g, max_gain)
    return g.astype(np.float32)



def _inf_to_nan(out: np.ndarray) -> np.ndarray:
    """``out`` with its infinite samples made NaN, in place (the missing-sample
    policy): for the kernels that copy, average or interpolate samples, whose
    outputs of finite samples are finite, an infinite output came from an
    infinite input sample."""
    if out.size and not np.isfinite(out).all():
        out[np.isinf(out)] = np.nan
    return out

class _GPRStage(Stage):
    """Shared bookkeeping of the GPR stages (sample count, helpers)."""

    def __init__(self) -> None:
        super().__init__()
        self._ns: int | None = None

    def reset(self) -> None:
        super().reset()
        self._ns = None

    def _in(self, chunk: Any) -> np.ndarray:
        x = _as_bscan(self.name, chunk, self._ns)
        if self._ns is None:
            self._ns = int(x.shape[1])
            self._n_channels = self._ns
            self._on_first(self._ns)
        return x

    def _on_first(self, n_samples: int) -> None:
        """Hook: set up what depends on the trace length."""

    def finish(self) -> np.ndarray:
        return _empty(self._ns)


class _ChainCore(_GPRStage):
    """Streaming driver of the compiled chain kernel (dewow, moving background,
    band-pass, gain), shared by the stages that use any subset of it."""

    def __init__(self) -> None:
        super().__init__()
        self._dewow_half = -1  # -1: no dewow
        self._bg_window = 0
        self._bg_delay = 0
        self._sos = _NO_SOS
        self._zi = _NO_ZI
        self._padlen = 0
        self._gain = _NO_GAIN
        self._hist: np.ndarray | None = None
        # the history is the view _hbuf[_h0:_h1] of a buffer with spare rows
        # (None: it is not), so a live chunk appends its rows instead of
        # copying the whole history
        self._hbuf: np.ndarray | None = None
        self._h0 = self._h1 = 0
        self._seen = 0

    def reset(self) -> None:
        super().reset()
        self._hist = None
        self._hbuf = None
        self._seen = 0

    def _set_sos(self, sos: np.ndarray | None, padlen: int | None) -> None:
        if sos is None:
            self._sos, self._zi, self._padlen, self._padlen_req = _NO_SOS, _NO_ZI, 0, 0
            return
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi = np.ascontiguousarray(signal.sosfilt_zi(self._sos), dtype=np.float64)
        self._padlen_req = _default_padlen(self._sos) if padlen is None else int(padlen)

    def _on_first(self, n_samples: int) -> None:
        ring = (self._bg_window + 32) * n_samples * 4 if self._bg_window > 0 else 0
        if ring > _MAX_RING_BYTES:   # (a failed allocation in the kernel's threads)
            raise ConfigError(f"{self.name}: a background window of {self._bg_window} traces "
                              f"of {n_samples} samples needs {ring / 2**30:.1f} GiB per "
                              f"thread, more than {_MAX_RING_BYTES / 2**30:.0f}: give a "
                              "shorter window")
        if len(self._sos):
            self._padlen = max(0, min(self._padlen_req, n_samples - 1))
        self._hist = np.empty((0, n_samples), dtype=np.float32)
        self._hbuf = None

    def process(self, chunk: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process ``chunk``; return the traces now complete.

        ``out``, optional, is a C-contiguous float32 array of shape
        ``(n_out, n_samples)`` to write them into (``n_out`` is the chunk length
        minus the traces still held back), not the chunk itself; a live loop
        or a benchmark can thus reuse one buffer instead of allocating each call.
        A call that fails (``MemoryError`` when the kernel's work tiles cannot be
        allocated) may leave ``out`` partly written; the stream itself is left
        as it was, so the chunk can be given again.
        """
        x = self._in(chunk)
        n = x.shape[0]
        if n == 0:
            return _empty(self._ns)
        seen = self._seen
        first = max(0, self._bg_delay - seen)
        n_out = max(0, n - first)
        if out is None:
            out = np.empty((n_out, self._ns), dtype=np.float32)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.float32
              or out.shape != (n_out, self._ns) or not out.flags.c_contiguous
              or not out.flags.writeable):
            raise ValueError(f"{self.name}: 'out' must be a writeable C-contiguous float32 "
                             f"array of shape {(n_out, self._ns)}")
        elif np.shares_memory(out, x):
            # (the kernel's threads and the next chunk's background read raw
            # traces this call would already have overwritten)
            raise ValueError(f"{self.name}: 'out' must not share memory with the chunk")
        assert self._hist is not None
        _gpr.chain(x, self._hist, seen, out, self._dewow_half, self._bg_window,
                   self._bg_delay, self._sos, self._zi, self._padlen, self._gain, 0)
        if self._bg_window > 1:
            keep = self._bg_window - 1
            k = min(n, keep)
            # this chunk's last dewowed traces, made before the history changes
            # (a kernel that fails, e.g. for memory, leaves the stream as it was)
            rows = np.empty((k, self._ns), dtype=np.float32)
            _gpr.dewow_rows(np.ascontiguousarray(x[n - k:]), rows, self._dewow_half, 0)
            if k < keep:
                # the last `keep` dewowed traces: the old ones still needed, then these
                self._hist_rows(k, keep)[...] = rows
            else:
                self._hist = rows
                self._hbuf = None
        self._seen = seen + n
        return out

    def _hist_rows(self, k: int, keep: int) -> np.ndarray:
        """Make the history its last ``keep - k`` traces followed by ``k`` new
        rows; return those rows (a view, to fill)."""
        h = self._hist
        assert h is not None
        old = min(len(h), keep - k)
        if self._hbuf is not None and self._h1 + k <= len(self._hbuf):
            self._h0 = self._h1 - old
        else:
            buf = np.empty((max(4 * keep, keep + k), h.shape[1]), dtype=np.float32)
            buf[:old] = h[len(h) - old:]
            self._hbuf, self._h0, self._h1 = buf, 0, old
        self._h1 += k
        self._hist = self._hbuf[self._h0:self._h1]
        return self._hbuf[self._h1 - k:self._h1]

    def finish(self) -> np.ndarray:
        if self._ns is None or self._bg_delay == 0 or self._seen == 0:
            return _empty(self._ns)
        assert self._hist is not None
        n_out = min(self._bg_delay, self._seen)
        out = np.empty((n_out, self._ns), dtype=np.float32)
        _gpr.chain_finish(self._hist, self._seen, out, self._bg_window, self._bg_delay,
                          self._sos, self._zi, self._padlen, self._gain)
        return out


def _window_half(stage: str, window: Any) -> int:
    w = _num(stage, "window", window, lo=1, hi=_MAX_INT, integer=True)
    return w // 2


def _frequency_range(stage: str, value: Any) -> tuple[float, float] | None:
    """A stage's ``frequency_range`` checked: None, or ``[low, high]`` Hz."""
    if value is None:
        return None
    if (isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray)
            or len(value) != 2):
        raise ConfigError(f"{stage}: parameter 'frequency_range' must be [low, high] in Hz, "
                          f"got {value!r}")
    lo = _num(stage, "frequency_range", value[0], lo=0.0, lo_open=True)
    hi = _num(stage, "frequency_range", value[1], lo=float(lo))
    return float(lo), float(hi)


def _frequency_scale(frequency_range: tuple[float, float] | None,
                     context: Mapping[str, Any]) -> tuple[float, float | None]:
    """``(scale, frequency)``: the radar's centre frequency (the stream's
    calibration ``frequency``, Hz; None when unknown) over the nearer end of
    ``frequency_range`` when it lies outside it, else 1.  A stage multiplies
    its frequencies by ``scale`` and divides its times by it."""
    f = context.get("frequency")
    try:
        f = float(f)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0, None
    if not f > 0 or not np.isfinite(f):
        return 1.0, None   # (nonsense the GPR detector refuses, naming the stream)
    if frequency_range is None:
        return 1.0, f
    if not RADAR_FREQUENCY_RANGE[0] <= f <= RADAR_FREQUENCY_RANGE[1]:
        name = context.get("stream")
        raise ConfigError(f"{f'stream {name!r}: ' if name else ''}"
                          f"the stream's calibration 'frequency' {f:g} Hz is not a radar "
                          f"centre frequency ({RADAR_FREQUENCY_RANGE[0]:g} to "
                          f"{RADAR_FREQUENCY_RANGE[1]:g} Hz): give it in Hz")
    lo, hi = frequency_range
    return f / min(max(f, lo), hi), f


def _range_text(frequency_range: tuple[float, float]) -> str:
    return f"{frequency_range[0] / 1e9:.3g}-{frequency_range[1] / 1e9:.3g} GHz"


@register_stage
class DeWow(_ChainCore):
    """Remove the slow "wow" of each trace: subtract its centred running mean.

    Each sample ``j`` becomes ``x_j - mean(x_{j-h} .. x_{j+h})`` with
    ``h = window // 2``, the window truncated at both ends of the trace.  Works
    within each trace, so it needs no look-ahead across traces.

    Parameters
    ----------
    window : int, optional
        Window length in samples (an even value acts as ``window + 1``); about one
        period of the antenna's centre frequency or a little more.  Default 31
        unless ``window_time`` is given.
    window_time : float, optional
        The window as a length of time, s, instead: the window in samples is
        the nearest odd number to ``window_time / sample_interval``, set when
        the stage is configured with the stream's sample interval.  The same
        chain then does the same to radars (or simulations) that sample the
        same wavelet more or less finely.
    frequency_range : [float, float], optional
        Radar centre frequencies (Hz) the window is meant for.  Configured
        with a stream whose calibration gives a ``frequency`` outside it, the
        window is multiplied by the nearer end over that frequency (a radar of
        half the lower end gets twice the window: as many of its periods as
        the lower end's).  None (default): used as given.
    """

    name: ClassVar[str] = "gpr.dewow"

    def __init__(self, window: int | None = None, window_time: float | None = None,
                 frequency_range: Sequence[float] | None = None) -> None:
        super().__init__()
        if window is not None and window_time is not None:
            raise ConfigError(f"{self.name}: give 'window' (samples) or 'window_time' (s), "
                              "not both")
        self.window_time = _opt_num(self.name, "window_time", window_time, lo=0.0,
                                    lo_open=True)
        self.frequency_range = _frequency_range(self.name, frequency_range)
        self.frequency_scale = 1.0
        self._frequency: float | None = None
        self.window: int | None = None
        self._given_window: int | None = None
        if self.window_time is None:
            self._dewow_half = _window_half(self.name, 31 if window is None else window)
            self.window = self._given_window = 2 * self._dewow_half + 1

    def configure(self, context: Mapping[str, Any]) -> None:
        scale, self._frequency = _frequency_scale(self.frequency_range, context)
        if self.window_time is None:
            assert self._given_window is not None
            half = max(0, int(round(self._given_window / scale)) // 2)
            if half != self._dewow_half and self._ns is not None:
                raise ConfigError(f"{self.name}: configured again with another frequency "
                                  "after processing began")
            self._dewow_half, self.window = half, 2 * half + 1
            self.frequency_scale = scale
            return
        dt = context.get("sample_interval")
        if not dt or not dt > 0:
            raise MissingCalibrationError(
                f"{self.name}: 'window_time' needs the stream's sample interval, which it "
                "does not give; set 'window' in samples instead", "sample_interval")
        half = max(0, int(round(self.window_time / scale / float(dt))) // 2)
        if self.window is not None and half != self._dewow_half and self._ns is not None:
            raise ConfigError(f"{self.name}: configured again with another sample interval "
                              "or frequency after processing began")
        self.frequency_scale = scale
        self._dewow_half = half
        self.window = 2 * half + 1

    def _on_first(self, n_samples: int) -> None:
        if self.window is None:
            raise ConfigError(f"{self.name}: 'window_time' is set but the stage was not "
                              "configured with the stream's sample interval")
        super()._on_first(n_samples)

    def notes(self) -> list[str]:
        if self.frequency_scale == 1.0 or self.frequency_range is None:
            return []
        assert self._frequency is not None
        k = 1.0 / self.frequency_scale
        change = (f"{self._given_window} -> {self.window} samples" if self.window_time is None
                  else f"{self.window_time * 1e9:.3g} -> {self.window_time * k * 1e9:.3g} ns, "
                  f"{self.window} samples")
        return [f"{self.name}: radar centre frequency {self._frequency / 1e9:.3g} GHz, outside "
                f"the {_range_text(self.frequency_range)} its window is set for: scaled by "
                f"{k:.4g} ({change})"]

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = ({"window": self.window} if self.window_time is None else
                               {"window_time": self.window_time, "window": self.window})
        if self.frequency_range is not None:
            out["frequency_range"] = list(self.frequency_range)
            out["frequency_scale"] = self.frequency_scale
        return out


@register_stage
class BackgroundRemoval(_ChainCore):
    """Subtract the mean trace over a moving window of traces.

    Removes what is the same from trace to trace: the direct wave, the ground
    bounce, flat layers and antenna ringing, while keeping the hyperbolae of
    buried objects.  Sums run per sample in float64.

    Parameters
    ----------
    window : int
        Number of traces in the window (``mode="centred"`` uses ``2*(window//2)+1``);
        its ring of traces may take at most 2 GiB per thread.
    mode : {"centred", "causal"}
        ``"centred"``: trace ``i`` minus the mean of traces ``i-h .. i+h``
        (truncated at the ends of the stream), released ``h`` traces late
        (:meth:`finish` releases the last ``h``).  ``"causal"``: trace ``i`` minus
        the mean of traces ``i-window+1 .. i``, released at once.
    """

    name: ClassVar[str] = "gpr.background"

    def __init__(self, window: int = 51, mode: str = "centred") -> None:
        super().__init__()
        w = _num(self.name, "window", window, lo=1, hi=_MAX_INT, integer=True)
        if mode in ("centred", "centered"):
            self._bg_delay = w // 2
            self._bg_window = 2 * self._bg_delay + 1
            mode = "centred"
        elif mode == "causal":
            self._bg_window = w
            self._bg_delay = 0
        else:
            raise ConfigError(f"{self.name}: parameter 'mode' must be 'centred' or 'causal', "
                              f"got {mode!r}")
        self.window = self._bg_window
        self.mode = mode

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "mode": self.mode}


@register_stage
class BandPass(_ChainCore):
    """Zero-phase Butterworth band-pass along time, per trace.

    The second-order sections run forward then backward over each trace (as
    :func:`scipy.signal.sosfiltfilt`, odd extension of ``padlen`` samples, start
    state in the steady state of the first sample), in float32.

    Parameters
    ----------
    low, high : float or None
        Corner frequencies in Hz (``low`` None: low-pass; ``high`` None: high-pass).
    order : int
        Butterworth order per edge, 1..8 (band-pass: as many sections as ``order``).
    sample_interval : float, optional
        Seconds between samples; taken from the stream when not given.
    padlen : int, optional
        Edge extension in samples; default as sosfiltfilt's, at most
        ``n_samples - 1``.
    frequency_range : [float, float], optional
        Radar centre frequencies (Hz) the corners are meant for.  Configured
        with a stream whose calibration gives a ``frequency`` outside it, both
        corners are multiplied by that frequency over the nearer end, so that
        the pass band follows the wavelet's spectrum (a 0.5-3 GHz band meant
        for 0.5-2.6 GHz radars is 0.1-0.6 GHz for a 100 MHz one); ``high`` is
        then kept below 0.9 times the Nyquist frequency.  None (default): used
        as given.
    """

    name: ClassVar[str] = "gpr.bandpass"

    def __init__(self, low: float | None = None, high: float | None = None, order: int = 2,
                 sample_interval: float | None = None, padlen: int | None = None,
                 frequency_range: Sequence[float] | None = None) -> None:
        super().__init__()
        self.low = _opt_num(self.name, "low", low, lo=0.0)
        self.high = _opt_num(self.name, "high", high, lo=0.0, lo_open=True)
        self._given = (self.low, self.high)
        self.frequency_range = _frequency_range(self.name, frequency_range)
        self.frequency_scale = 1.0
        self._frequency: float | None = None
        if self.low is None and self.high is None:
            raise ConfigError(f"{self.name}: give 'low', 'high' or both (Hz)")
        self.order = _num(self.name, "order", order, lo=1, hi=_MAX_SECTIONS // 2 * 2,
                          integer=True)
        self.sample_interval = _opt_num(self.name, "sample_interval", sample_interval,
                                        lo=0.0, lo_open=True)
        self.padlen = _opt_num(self.name, "padlen", padlen, lo=0, hi=_MAX_INT, integer=True)
        self._designed = False

    def configure(self, context: Mapping[str, Any]) -> None:
        si = context.get("sample_interval")
        if self._stream_fact("sample_interval", float(si) if si else None) and (
                self.low is not None or self.high is not None):
            self._designed = False   # (a fused chain without a band has nothing to design)
        rng = getattr(self, "frequency_range", None)  # (None for a FusedChain: as given)
        if rng is None:
            return
        scale, self._frequency = _frequency_scale(rng, context)
        low, high = (None if v is None else v * scale for v in self._given)
        if scale != 1.0 and high is not None and self.sample_interval is not None:
            high = min(high, 0.9 * 0.5 / self.sample_interval)
            if low is not None and low >= high:
                raise ConfigError(
                    f"{self.name}: the band {self._given[0]:g}-{self._given[1]:g} Hz, moved "
                    f"to the stream's calibration frequency {self._frequency:g} Hz (outside "
                    f"the {_range_text(rng)} it is set for), starts above 0.9 times the "
                    f"Nyquist frequency ({0.45 / self.sample_interval:g} Hz): the radar is "
                    "sampled too coarsely for it; give 'low' and 'high' for this radar")
        if (low, high) != (self.low, self.high):
            if self._designed and self._ns is not None:
                raise ConfigError(f"{self.name}: configured again with another frequency "
                                  "after processing began")
            self.low, self.high, self._designed = low, high, False
        self.frequency_scale = scale

    def _on_first(self, n_samples: int) -> None:
        if not self._designed:
            if self.sample_interval is None:
                raise ConfigError(f"{self.name}: 'sample_interval' is not set and the "
                                  "stream does not give it")
            sos = design_bandpass(self.low, self.high, self.sample_interval, self.order)
            if len(sos) > _MAX_SECTIONS:
                raise ConfigError(f"{self.name}: parameter 'order' gives {len(sos)} "
                                  f"sections, at most {_MAX_SECTIONS} are supported")
            self._set_sos(sos, self.padlen)
            self._designed = True
        super()._on_first(n_samples)

    @property
    def sos(self) -> np.ndarray:
        """The second-order sections (designed at the first chunk)."""
        if not self._designed and self.sample_interval is not None:
            return design_bandpass(self.low, self.high, self.sample_interval, self.order)
        return self._sos

    def notes(self) -> list[str]:
        rng = getattr(self, "frequency_range", None)
        if rng is None or (self.low, self.high) == self._given:
            return []

        def band(lo: float | None, hi: float | None) -> str:
            if lo is None:
                return f"below {hi / 1e9:.3g} GHz"   # type: ignore[operator]
            if hi is None:
                return f"above {lo / 1e9:.3g} GHz"
            return f"{lo / 1e9:.3g}-{hi / 1e9:.3g} GHz"

        assert self._frequency is not None
        return [f"{self.name}: radar centre frequency {self._frequency / 1e9:.3g} GHz, outside "
                f"the {_range_text(rng)} its band is set for: {band(*self._given)} -> "
                f"{band(self.low, self.high)}"]

    def params(self) -> dict[str, Any]:
        out = {"low": self.low, "high": self.high, "order": self.order,
               "sample_interval": self.sample_interval, "padlen": self.padlen}
        if getattr(self, "frequency_range", None) is not None:
            out["frequency_range"] = list(self.frequency_range)
            out["frequency_scale"] = self.frequency_scale
        return out


class _GainBase(_ChainCore):
    """A fixed gain curve along time (see :func:`gain_curve`)."""

    def __init__(self, power: float, attenuation: float, sample_interval: float | None,
                 time_zero: int, max_gain: float | None) -> None:
        super().__init__()
        self.power = _num(self.name, "power", power)
        self.attenuation = _num(self.name, "attenuation", attenuation)
        self.sample_interval = _opt_num(self.name, "sample_interval", sample_interval,
                                        lo=0.0, lo_open=True)
        self.time_zero = _num(self.name, "time_zero", time_zero, lo=0, hi=_MAX_INT, integer=True)
        self.max_gain = _opt_num(self.name, "max_gain", max_gain, lo=0.0, lo_open=True)

    def configure(self, context: Mapping[str, Any]) -> None:
        si = context.get("sample_interval")
        self._stream_fact("sample_interval", float(si) if si else None)

    def _on_first(self, n_samples: int) -> None:
        if self.attenuation and self.sample_interval is None:
            raise ConfigError(f"{self.name}: 'sample_interval' is not set and the stream "
                              "does not give it")
        self._gain = gain_curve(n_samples, power=self.power, attenuation=self.attenuation,
                                sample_interval=self.sample_interval,
                                time_zero=self.time_zero, max_gain=self.max_gain)
        super()._on_first(n_samples)

    def params(self) -> dict[str, Any]:
        return {"power": self.power, "attenuation": self.attenuation,
                "sample_interval": self.sample_interval, "time_zero": self.time_zero,
                "max_gain": self.max_gain}


@register_stage
class TPowerGain(_GainBase):
    """t-power gain: sample ``j`` times ``(j - time_zero + 1) ** power``.

    Parameters
    ----------
    power : float
        Exponent (1 to 2 compensates geometric spreading).
    time_zero : int
        Sample of time zero; samples before it keep gain 1.
    max_gain : float, optional
        Upper limit of the gain.
    """

    name: ClassVar[str] = "gpr.gain_tpow"

    def __init__(self, power: float = 1.0, time_zero: int = 0,
                 max_gain: float | None = None) -> None:
        super().__init__(power, 0.0, None, time_zero, max_gain)

    def params(self) -> dict[str, Any]:
        return {"power": self.power, "time_zero": self.time_zero, "max_gain": self.max_gain}


@register_stage
class SECGain(_GainBase):
    """Spherical and exponential compensation: t-power times ``exp(attenuation t)``.

    Parameters
    ----------
    power : float
        t-power exponent.
    attenuation : float
        Exponential coefficient in 1/s of two-way time (e.g. ``2e8`` is 0.2/ns).
    sample_interval : float, optional
        Seconds between samples; taken from the stream when not given.
    time_zero : int
        Sample of time zero.
    max_gain : float, optional
        Upper limit of the gain (default 1e6).
    """

    name: ClassVar[str] = "gpr.gain_sec"

    def __init__(self, power: float = 1.0, attenuation: float = 0.0,
                 sample_interval: float | None = None, time_zero: int = 0,
                 max_gain: float | None = 1e6) -> None:
        super().__init__(power, attenuation, sample_interval, time_zero, max_gain)


@register_stage
class AGC(_GPRStage):
    """Automatic gain control: divide each sample by the RMS of its trace over a
    centred window of ``window`` samples (truncated at the trace ends).

    Parameters
    ----------
    window : int
        Window length in samples (an even value acts as ``window + 1``).
    eps : float
        Added to the RMS, so that a silent stretch stays 0 instead of dividing by 0.
    """

    name: ClassVar[str] = "gpr.agc"

    def __init__(self, window: int = 64, eps: float = 1e-12) -> None:
        super().__init__()
        self._half = _window_half(self.name, window)
        self.window = 2 * self._half + 1
        self.eps = _num(self.name, "eps", eps, lo=0.0, lo_open=True)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._in(chunk)
        out = np.empty(x.shape, dtype=np.float32)
        if x.shape[0]:
            _gpr.agc(x, out, self._half, self.eps, 0)
        return out

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "eps": self.eps}


@register_stage
class TimeZero(_GPRStage):
    """Align traces on the direct wave (time-zero correction).

    Each trace is picked independently: the first sample (within the first
    ``search`` samples) whose ``|x|`` reaches ``threshold`` times the trace's
    largest ``|x|`` there (the first break); with ``mode="peak"`` the pick then
    moves on to the peak of that arrival (next local maximum of ``|x|``).  The
    trace is shifted by whole samples so that the pick lands on sample
    ``target``; samples shifted in from outside are ``fill``.  The picks of the
    last chunk are in :attr:`last_picks`.

    The traces are picked as they are: put a DC removal (or a dewow) before
    this stage when they carry a DC offset, which on raw samples can reach
    the wave's amplitude and put every pick on the first samples
    (``demine calibrate time-zero`` removes each trace's level itself).

    Parameters
    ----------
    threshold : float
        Fraction of the peak amplitude, in (0, 1].
    target : int
        Sample where the direct wave is put.
    mode : {"peak", "threshold"}
        Align on the peak of the direct wave or on its first break.
    search : int
        Samples searched for the direct wave (0: the whole trace).
    fill : float
        Value of samples shifted in from outside the trace.
    """

    name: ClassVar[str] = "gpr.time_zero"

    def __init__(self, threshold: float = 0.5, target: int = 0, mode: str = "peak",
                 search: int = 0, fill: float = 0.0) -> None:
        super().__init__()
        self.threshold = _num(self.name, "threshold", threshold, lo=0.0, lo_open=True, hi=1.0)
        self.target = _num(self.name, "target", target, lo=0, hi=_MAX_INT, integer=True)
        if mode not in ("peak", "threshold"):
            raise ConfigError(f"{self.name}: parameter 'mode' must be 'peak' or 'threshold', "
                              f"got {mode!r}")
        self.mode = mode
        self.search = _num(self.name, "search", search, lo=0, hi=_MAX_INT, integer=True)
        self.fill = _num(self.name, "fill", fill)
        self.last_picks = np.empty(0, dtype=np.int64)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._in(chunk)
        picks = np.zeros(x.shape[0], dtype=np.int64)
        out = np.empty(x.shape, dtype=np.float32)
        if x.shape[0]:
            _gpr.time_zero_picks(x, picks, self.threshold, self.search,
                                 self.mode == "peak", 0)
            _gpr.shift_rows(x, picks - self.target, out, self.fill, 0)
            _inf_to_nan(out)
        self.last_picks = picks
        return out

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "target": self.target, "mode": self.mode,
                "search": self.search, "fill": self.fill}


@register_stage
class ExpBackgroundRemoval(_GPRStage):
    """Subtract an exponentially weighted running background trace (causal).

    ``b_i = b_{i-1} + alpha (x_i - b_{i-1})`` per sample, starting at the first
    trace (``b_0 = x_0``), and the output is ``x_i - b_i``.  A missing input sample
    leaves its background sample unchanged and comes out NaN.

    Parameters
    ----------
    alpha : float
        Update weight in (0, 1]; about ``2 / (N + 1)`` for an N-trace memory.
    """

    name: ClassVar[str] = "gpr.background_exp"

    def __init__(self, alpha: float = 0.02) -> None:
        super().__init__()
        self.alpha = _num(self.name, "alpha", alpha, lo=0.0, lo_open=True, hi=1.0)
        self._bg: np.ndarray | None = None
        self._started = False

    def reset(self) -> None:
        super().reset()
        self._bg = None
        self._started = False

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._in(chunk)
        if self._bg is None:
            self._bg = np.zeros(x.shape[1], dtype=np.float64)
        out = np.empty(x.shape, dtype=np.float32)
        if x.shape[0]:
            _gpr.background_exp(x, self._bg, out, self.alpha, self._started, 0)
            self._started = True
        return out

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register_stage
class FusedChain(BandPass):
    """Dewow, moving-window background removal, band-pass and SEC gain in one pass.

    Gives the same output as the chain ``DeWow -> BackgroundRemoval ->
    BandPass -> SECGain`` with the same parameters (bit for bit in the cases
    :func:`fuse_chain` fuses; a one-trace background window, where the chain's
    output is exactly zero, and samples near the float32 maximum can differ in
    rounding), but reads each trace from memory once: every thread takes a
    contiguous range of traces and pushes tiles of traces through all four
    steps while they are in cache.  A step is left out when its parameter says
    so (``dewow_window=0``, ``background_window=0``, ``low`` and ``high`` None,
    ``gain_power=0`` and ``gain_attenuation=0``).

    Parameters
    ----------
    dewow_window : int
        :class:`DeWow` window in samples (0: no dewow).
    background_window, background_mode
        :class:`BackgroundRemoval` window in traces (0: none) and mode.
    low, high, order, padlen
        :class:`BandPass` corners in Hz, order and edge extension.
    gain_power, gain_attenuation, time_zero, max_gain
        :class:`SECGain` parameters.
    sample_interval : float, optional
        Seconds between samples; taken from the stream when not given.
    """

    name: ClassVar[str] = "gpr.fused"

    def __init__(self, dewow_window: int = 31, background_window: int = 51,
                 background_mode: str = "centred", low: float | None = None,
                 high: float | None = None, order: int = 2,
                 gain_power: float = 1.0, gain_attenuation: float = 0.0,
                 time_zero: int = 0, max_gain: float | None = 1e6,
                 sample_interval: float | None = None, padlen: int | None = None) -> None:
        if low is None and high is None:
            _ChainCore.__init__(self)
            self.low = self.high = None
            self.order = _num(self.name, "order", order, lo=1, hi=_MAX_SECTIONS, integer=True)
            self.sample_interval = _opt_num(self.name, "sample_interval", sample_interval,
                                            lo=0.0, lo_open=True)
            self.padlen = _opt_num(self.name, "padlen", padlen, lo=0, hi=_MAX_INT, integer=True)
            self._designed = True
        else:
            super().__init__(low, high, order, sample_interval, padlen)
        dw = _num(self.name, "dewow_window", dewow_window, lo=0, hi=_MAX_INT, integer=True)
        self._dewow_half = dw // 2 if dw > 0 else -1
        self.dewow_window = 2 * self._dewow_half + 1 if dw > 0 else 0
        bw = _num(self.name, "background_window", background_window, lo=0, hi=_MAX_INT,
                  integer=True)
        if background_mode in ("centred", "centered"):
            background_mode = "centred"
            self._bg_delay = bw // 2 if bw > 0 else 0
            self._bg_window = 2 * self._bg_delay + 1 if bw > 0 else 0
        elif background_mode == "causal":
            self._bg_window, self._bg_delay = bw, 0
        else:
            raise ConfigError(f"{self.name}: parameter 'background_mode' must be 'centred' "
                              f"or 'causal', got {background_mode!r}")
        self.background_window = self._bg_window
        self.background_mode = background_mode
        self.gain_power = _num(self.name, "gain_power", gain_power)
        self.gain_attenuation = _num(self.name, "gain_attenuation", gain_attenuation)
        self.time_zero = _num(self.name, "time_zero", time_zero, lo=0, hi=_MAX_INT, integer=True)
        self.max_gain = _opt_num(self.name, "max_gain", max_gain, lo=0.0, lo_open=True)

    def _on_first(self, n_samples: int) -> None:
        if self.gain_power or self.gain_attenuation:
            if self.gain_attenuation and self.sample_interval is None:
                raise ConfigError(f"{self.name}: 'sample_interval' is not set and the "
                                  "stream does not give it")
            self._gain = gain_curve(n_samples, power=self.gain_power,
                                    attenuation=self.gain_attenuation,
                                    sample_interval=self.sample_interval,
                                    time_zero=self.time_zero, max_gain=self.max_gain)
        else:
            self._gain = _NO_GAIN
        if self.low is None and self.high is None:
            _ChainCore._on_first(self, n_samples)
        else:
            super()._on_first(n_samples)

    def params(self) -> dict[str, Any]:
        return {"dewow_window": self.dewow_window,
                "background_window": self.background_window,
                "background_mode": self.background_mode, "low": self.low,
                "high": self.high, "order": self.order, "padlen": self.padlen,
                "gain_power": self.gain_power, "gain_attenuation": self.gain_attenuation,
                "time_zero": self.time_zero, "max_gain": self.max_gain,
                "sample_interval": self.sample_interval}


def fuse_chain(steps: Sequence[Any]) -> FusedChain | None:
    """One :class:`FusedChain` doing what the configured stages ``steps`` do, or None.

    ``steps`` qualify when they are exactly ``DeWow -> BackgroundRemoval ->
    BandPass -> SECGain`` (the packaged ``gpr_default`` chain) with one sample
    interval and a gain that is not switched off: the fused stage then runs
    the same compiled kernel once per chunk instead of four times, with the
    same arithmetic (the same output bit for bit; checked in the tests), and
    reads each chunk from memory once.  Give it configured stages (their
    sample interval known); configure the result with the same context.
    """
    if [type(st) for st in steps] != [DeWow, BackgroundRemoval, BandPass, SECGain]:
        return None
    dw, bg, bp, gn = steps
    if bp.sample_interval != gn.sample_interval or not (gn.power or gn.attenuation):
        return None
    if bg.window == 1:  # (every trace is its own background: the chain's exact zeros)
        return None
    return FusedChain(dewow_window=dw.window, background_window=bg.window,
                      background_mode=bg.mode, low=bp.low, high=bp.high, order=bp.order,
                      padlen=bp.padlen, gain_power=gn.power, gain_attenuation=gn.attenuation,
                      time_zero=gn.time_zero, max_gain=gn.max_gain,
                      sample_interval=bp.sample_interval)


@register_stage
class Stack(_GPRStage):
    """Average each group of ``fold`` consecutive traces into one (trace stacking).

    Changes the number of traces: output trace ``m`` is the mean of input traces
    ``m*fold .. m*fold+fold-1``.  :meth:`finish` releases the mean of an
    incomplete last group.  A missing sample makes its group's output sample NaN.

    Parameters
    ----------
    fold : int
        Traces per output trace.
    """

    name: ClassVar[str] = "gpr.stack"
    #: this stage changes the number of frames
    resamples: ClassVar[bool] = True

    def __init__(self, fold: int = 4) -> None:
        super().__init__()
        self.fold = _num(self.name, "fold", fold, lo=1, hi=_MAX_INT, integer=True)
        self._acc: np.ndarray | None = None
        self._have = 0

    def reset(self) -> None:
        super().reset()
        self._acc = None
        self._have = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = self._in(chunk)
        if self._acc is None:
            self._acc = np.zeros(x.shape[1], dtype=np.float64)
        n_out = (self._have + x.shape[0]) // self.fold
        out = np.empty((n_out, x.shape[1]), dtype=np.float32)
        self._have = _gpr.stack_rows(x, self._acc, self._have, self.fold, out, 0)
        return _inf_to_nan(out)

    def finish(self) -> np.ndarray:
        if self._acc is None or self._have == 0:
            return _empty(self._ns)
        out = _inf_to_nan((self._acc / self._have).astype(np.float32)[None, :])
        self._acc[:] = 0.0
        self._have = 0
        return out

    def params(self) -> dict[str, Any]:
        return {"fold": self.fold}


@register_stage
class Resample(_GPRStage):
    """Resample traces to equal spacing along the track (encoder or GPS positions).

    ``process(chunk, positions)`` takes, with each chunk, the along-track distance
    of every trace in metres (1-D), or its planar ``(x, y)`` coordinates in metres
    (shape ``(n, 2)``, turned into cumulative distance).  Output traces are at
    distances ``d0, d0 + spacing, ...`` from the first trace, each interpolated
    linearly between the two input traces around it.  Traces that do not advance
    by more than ``min_move`` beyond the last kept trace (the antenna stopped or
    went back) are dropped.  Changes the number of traces; the distances of the
    traces of the last output are in :attr:`last_positions`.  A missing sample
    makes the output samples interpolated from it NaN.

    Parameters
    ----------
    spacing : float
        Output trace spacing in metres (at least 1e-5).
    min_move : float
        Minimum advance in metres for a trace to be kept.
    """

    name: ClassVar[str] = "gpr.resample"
    resamples: ClassVar[bool] = True

    def __init__(self, spacing: float = 0.01, min_move: float = 0.0) -> None:
        super().__init__()
        # (from 10 µm: 1e-15 m asked numpy for petabytes of traces)
        self.spacing = _num(self.name, "spacing", spacing, lo=1e-5)
        self.min_move = _num(self.name, "min_move", min_move, lo=0.0)
        self.last_positions = np.empty(0, dtype=np.float64)
        self._reset_state()

    def _reset_state(self) -> None:
        self._prev: np.ndarray | None = None   # last kept trace (float32 row)
        self._prev_d = 0.0                     # its distance
        self._d0 = 0.0                         # distance of output trace 0
        self._m = 0                            # index of the next output trace
        self._xy: np.ndarray | None = None     # last (x, y) for cumulative distance
        self._dist = 0.0

    def reset(self) -> None:
        super().reset()
        self._reset_state()

    def _distances(self, positions: Any, n: int) -> np.ndarray:
        p = np.asarray(positions, dtype=np.float64)
        if p.ndim == 2 and p.shape[1] == 2 and p.shape[0] == n:
            if n == 0:
                return np.empty(0)
            prev = p[:1] if self._xy is None else self._xy
            steps = np.hypot(*(np.diff(np.vstack([prev, p]), axis=0).T))
            d = self._dist + np.cumsum(steps)
            self._xy = p[-1:].copy()
            self._dist = float(d[-1])
            return d
        if p.ndim != 1 or p.shape[0] != n:
            raise ValueError(f"{self.name}: 'positions' must have shape ({n},) or ({n}, 2) "
                             f"for a chunk of {n} traces, got {p.shape}")
        return p

    def process(self, chunk: np.ndarray, positions: Any = None) -> np.ndarray:
        if positions is None:
            raise ValueError(f"{self.name}: process(chunk, positions) needs the trace "
                             "positions")
        x = self._in(chunk)
        n = x.shape[0]
        d = self._distances(positions, n)
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{self.name}: 'positions' contain non-finite values")
        rows = [] if self._prev is None else [self._prev]
        dist = [] if self._prev is None else [self._prev_d]
        last = self._prev_d if self._prev is not None else -np.inf
        keep = []
        for i in range(n):  # positions only: O(n) scalar work, no trace copies
            if d[i] > last + self.min_move or (self._prev is None and not keep):
                keep.append(i)
                last = d[i]
        if self._prev is None and keep:
            self._d0 = float(d[keep[0]])
        src = np.ascontiguousarray(np.concatenate(rows + [x[keep].astype(np.float32)])
                                   if rows else x[keep].astype(np.float32))
        kd = np.asarray(dist + [float(d[i]) for i in keep])
        if len(kd) == 0:
            self.last_positions = np.empty(0)
            return _empty(self._ns)
        # output distances d0 + m*spacing within [kd[0], kd[-1]]
        m_hi = int(np.floor((kd[-1] - self._d0) / self.spacing + 1e-9))
        ms = np.arange(self._m, m_hi + 1)
        q = self._d0 + ms * self.spacing
        q = q[q >= kd[0] - 1e-12]
        idx = np.clip(np.searchsorted(kd, q, side="right") - 1, 0, len(kd) - 1)
        nxt = np.minimum(idx + 1, len(kd) - 1)
        span = kd[nxt] - kd[idx]
        frac = np.where(span > 0, (q - kd[idx]) / np.where(span > 0, span, 1.0), 0.0)
        frac = np.clip(frac, 0.0, 1.0)
        out = np.empty((len(q), self._ns), dtype=np.float32)
        _gpr.interp_rows(src, idx.astype(np.int64), frac.astype(np.float64), out, 0)
        _inf_to_nan(out)
        self._m = self._m + len(ms)
        self._prev = src[-1].copy()[None, :]
        self._prev_d = float(kd[-1])
        self.last_positions = q
        return out

    def params(self) -> dict[str, Any]:
        return {"spacing": self.spacing, "min_move": self.min_move}


# -- offline migration ------------------------------------------------------------------

def _section(name: str, data: Any) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ValueError(f"{name}: 'data' must be 2-D (n_traces, n_samples) with at least 2 "
                         f"samples, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: 'data' must be numeric, got {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:  # (a transform spreads one NaN over the whole section)
            raise ValueError(f"{name}: 'data' has {bad} NaN or infinite samples; fill or "
                             "cut them first")
    return arr


#: wave speeds a migration takes, m/s: from slower than in water (0.033 m/ns)
#: to the speed of light
_VELOCITY_RANGE = (1e6, 299_792_458.0)


def _migration_params(name: str, sample_interval: Any, trace_spacing: Any,
                      velocity: Any) -> None:
    for pname, val in (("sample_interval", sample_interval),
                       ("trace_spacing", trace_spacing)):
        _num(name, pname, val, lo=0.0, lo_open=True)
    v = _num(name, "velocity", velocity, lo=0.0, lo_open=True)
    lo, hi = _VELOCITY_RANGE
    if not lo <= v <= hi:   # (1e-300 m/s gave a section of inf; a unit slip, m/ns)
        raise ConfigError(f"{name}: parameter 'velocity' is a wave speed in m/s, "
                          f"{lo:g} to {hi:g} (e.g. 1e8 in moist soil), got {velocity!r}")


def stolt_migrate(data: Any, sample_interval: float, trace_spacing: float,
                  velocity: float, pad: float = 1.0) -> np.ndarray:
    """Stolt (f-k) migration at a constant velocity (exploding reflector).

    Parameters
    ----------
    data : array, shape (n_traces, n_samples)
        Section with equal trace spacing; sample 0 at time zero.
    sample_interval : float
        Seconds between samples.
    trace_spacing : float
        Metres between traces.
    velocity : float
        Wave speed in the ground in m/s (e.g. 1e8 for moist soil), 1e6 to c.
    pad : float
        Zero padding, as a fraction of each axis (at most 10), against wrap-around.

    Returns
    -------
    ndarray, float32, shape of ``data``
        The migrated section, still indexed by two-way time.
    """
    name = "stolt_migrate"
    d = _section(name, data).astype(np.float64)
    _migration_params(name, sample_interval, trace_spacing, velocity)
    _num(name, "pad", pad, lo=0.0, hi=10.0)
    nx, nt = d.shape
    NX = int(np.ceil(nx * (1 + pad)))
    NT = int(np.ceil(nt * (1 + pad)))
    vh = velocity / 2.0  # exploding-reflector speed
    D = np.fft.fft(np.fft.rfft(d, n=NT, axis=1), n=NX, axis=0)  # (kx, f)
    f = np.fft.rfftfreq(NT, sample_interval)                      # Hz, >= 0
    kx = np.fft.fftfreq(NX, trace_spacing)                        # cycles/m
    kz = f / vh                                                   # output grid, cycles/m
    KX, KZ = np.meshgrid(kx, kz, indexing="ij")
    fm = vh * np.sqrt(KX ** 2 + KZ ** 2)                          # input frequency
    df = f[1] - f[0]
    pos = fm / df
    i0 = np.floor(pos).astype(np.int64)
    w = pos - i0
    ok = i0 + 1 < len(f)
    i0c = np.clip(i0, 0, len(f) - 2)
    rows = np.arange(NX)[:, None]
    M = (1 - w) * D[rows, i0c] + w * D[rows, i0c + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(fm > 0, KZ / fm, 0.0) * vh
    M = np.where(ok, M * jac, 0.0)
    M[:, 0] = 0.0
    out = np.fft.irfft(np.fft.ifft(M, axis=0), n=NT, axis=1)[:nx, :nt]
    return out.astype(np.float32)


def kirchhoff_migrate(data: Any, sample_interval: float, trace_spacing: float,
                      velocity: float, aperture: float | None = None,
                      time_zero: int = 0) -> np.ndarray:
    """Kirchhoff (diffraction-summation) migration at a constant velocity.

    For every output point (trace ``x0``, time ``tau``) the time derivative of the
    section is summed along the diffraction hyperbola
    ``t(x) = sqrt(tau**2 + (2 (x - x0) / v)**2)`` with the obliquity factor
    ``tau / t`` and weight ``1 / (2 pi v)`` (far-field term), reading each trace
    at the computed sample position by linear interpolation (the positions are
    computed directly, no search).  Runs in parallel over output traces.

    Parameters
    ----------
    data : array, shape (n_traces, n_samples)
        Section with equal trace spacing.
    sample_interval : float
        Seconds between samples.
    trace_spacing : float
        Metres between traces.
    velocity : float
        Wave speed in m/s, 1e6 to c.
    aperture : float, optional
        Half-width of the summation in metres (default: the whole section).
    time_zero : int
        Sample of time zero (earlier samples come out 0).

    Returns
    -------
    ndarray, float32, shape of ``data``
    """
    name = "kirchhoff_migrate"
    d = _section(name, data)
    _migration_params(name, sample_interval, trace_spacing, velocity)
    t0 = _num(name, "time_zero", time_zero, lo=0, hi=d.shape[1] - 1, integer=True)
    if aperture is None:
        ap = d.shape[0]
    else:
        ap = int(np.floor(_num(name, "aperture", aperture, lo=0.0) / trace_spacing))
    grad = np.ascontiguousarray(np.gradient(d.astype(np.float32), sample_interval, axis=1),
                                dtype=np.float32)
    out = np.zeros(d.shape, dtype=np.float32)
    _gpr.kirchhoff(grad, out, float(sample_interval), float(trace_spacing), float(velocity),
                   int(min(ap, d.shape[0])), int(t0), 0)
    return out
