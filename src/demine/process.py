"""Processing chains: stateful streaming stages, their registry, and chains of them.

Every processing step of demine (EMI baseline removal, soil compensation, GPR
dewow, gain, …) is a :class:`Stage`: an object with state that takes a chunk of
frames and returns a chunk of frames.  Running a recording through a stage in
one call, or frame by frame as a device delivers it, gives the same numbers (to
float rounding).  The live console and the offline job therefore run the same
code.

The stage protocol
------------------
``name``
    Class attribute, the registry key used in TOML chain files
    (``"emi.baseline"``, ``"gpr.dewow"``, …).
``__init__(**params)``
    Keyword parameters only, all JSON-able; a bad value raises
    :class:`demine.errors.ConfigError` naming the parameter.
``configure(context)``
    Optional.  Receives facts about the stream the stage will see
    (``sample_rate`` in frames/s, ``gate_times`` in s, ``sample_interval`` in s,
    ``n_channels``, ``kind``, ``stream``); a stage fills in parameters it was not
    given explicitly.  Called before the first chunk.
``process(chunk)``
    ``chunk`` is an ndarray of shape ``(n_frames, n_channels)``; returns the
    frames that are now complete, in order.  A stage that needs look-ahead may
    return fewer frames than it was given (possibly zero) and release them later.
``finish()``
    End of stream: returns the frames still held back.  Over a whole stream the
    concatenation of every ``process`` output and ``finish`` has exactly as many
    frames as went in, and output frame ``k`` corresponds to input frame ``k``
    (except for stages with the class attribute ``resamples = True``, such as
    trace stacking, which change the number of frames on purpose).
``reset()``
    Forget all state (start of a new stream); parameters are kept.
``params()``
    A JSON-able dict of the effective parameters, stored in the history of
    derived datasets.

Stages register themselves with :func:`register_stage` and are found by name
with :func:`get_stage`.  A :class:`Chain` is itself a stage; it is built in code
(``Chain([Baseline(), Detect()])``) or from TOML (:func:`load_chain`)::

    [chain]
    name = "my_emi"
    kind = "emi"            # apply to streams of this kind (optional)

    [[step]]
    name = "emi.baseline"
    params = { window = 256 }

    [[step]]
    name = "emi.detect"     # parameters may also be given as plain keys
    threshold = 3.5
"""

from __future__ import annotations

import importlib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._outputs import refuse_special_output
from ._params import check_number
from .errors import ConfigError, MissingCalibrationError

__all__ = [
    "Stage",
    "Chain",
    "register_stage",
    "get_stage",
    "available_stages",
    "chain_from_dict",
    "load_chain",
    "default_chain",
    "run_stage",
    "process_recording",
]

_REGISTRY: dict[str, type[Stage]] = {}

#: Modules that register built-in stages when imported; looked up lazily so that
#: ``get_stage("gpr.dewow")`` works without the caller importing ``demine.gpr``.
_BUILTIN_STAGE_MODULES: tuple[str, ...] = ("demine.emi", "demine.gpr")

S = TypeVar("S", bound="type[Stage]")

#: A stream whose reading rate is within this fraction of a chain's
#: ``reference_rate`` gets the chain's frame counts as written (a device's
#: clock and the host's timestamps put a nominal 1000 readings/s anywhere
#: within a fraction of a per cent of it).
RATE_TOLERANCE = 0.02


def rate_factor(reference_rate: float | None, context: Mapping[str, Any]) -> float:
    """How many frames of the stream in ``context`` make one frame at
    ``reference_rate``: its ``sample_rate`` over the reference, or 1 without
    either, or when the two agree within :data:`RATE_TOLERANCE`."""
    rate = context.get("sample_rate")
    if not reference_rate or not rate or not math.isfinite(float(rate)) or float(rate) <= 0:
        return 1.0
    f = float(rate) / reference_rate
    return f if abs(f - 1.0) > RATE_TOLERANCE else 1.0


def scale_count(value: Any, factor: float, least: int) -> Any:
    """A frame count ``value`` times ``factor``, rounded to whole frames and at
    least ``least`` (``factor`` 1: ``value`` itself); a float stays a float."""
    if factor == 1.0:
        return value
    v = max(least, int(round(float(value) * factor)))
    return float(v) if isinstance(value, float) else v


class Stage:
    """Base class of every streaming processing stage (see the module docstring).

    Subclasses set the class attribute ``name``, store their parameters and
    implement :meth:`process`; stages without look-ahead need not override
    :meth:`finish`.  The helper :meth:`_check` validates a chunk.
    """

    name: ClassVar[str] = ""
    #: True for a stage that changes the number of frames (stacking,
    #: resampling); then output frame k no longer corresponds to input frame k.
    resamples: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        if params:
            bad = ", ".join(sorted(params))
            raise ConfigError(f"stage {self.name or type(self).__name__!r}: "
                              f"unknown parameter(s) {bad}")
        self._n_channels: int | None = None
        self._out_like: tuple[tuple[int, ...], np.dtype] | None = None

    #: Parameters that count frames (readings) and scale with the reading rate
    #: when a chain gives a ``reference_rate`` (see :meth:`Chain.configure`),
    #: with the least value each may take.
    frame_params: ClassVar[dict[str, int]] = {}

    # -- protocol -----------------------------------------------------------------
    def configure(self, context: Mapping[str, Any]) -> None:
        """Take stream facts (sample rate, gate times, …) for parameters not set.

        The default does nothing.
        """

    def _is_given(self, attr: str) -> bool:
        """Whether parameter ``attr`` was given (set, and not to the value a
        stream's facts gave it: see :meth:`_stream_fact`)."""
        current = getattr(self, attr)
        taken = self.__dict__.get("_from_stream", {})
        return current is not None and (attr not in taken or taken[attr] != current)

    def _stream_fact(self, attr: str, value: Any) -> bool:
        """Set parameter ``attr`` to a stream fact ``value`` (None: the stream
        gives none) unless it was given; return whether it changed.

        Given is a value set before any stream's facts were taken, or set by
        hand since (it differs from the one taken).  A fact taken from one
        stream is replaced by the next stream's after :meth:`reset` (a stage
        re-used for another detector had kept the first one's reading rate or
        sample interval), or cleared when the next stream gives none, and
        refused while processing.
        """
        taken = self.__dict__.setdefault("_from_stream", {})
        current = getattr(self, attr)
        if self._is_given(attr):
            taken.pop(attr, None)
            return False   # given as a parameter: it stays
        if value is None:
            if current is None or self._n_channels is not None:
                return False   # (mid-stream, a context without the fact changes nothing)
            del taken[attr]
            setattr(self, attr, None)
            return True
        taken[attr] = value
        if current is not None and current == value:
            return False
        if current is not None and self._n_channels is not None:
            taken[attr] = current
            raise ConfigError(f"{self.name}: configured again with another {attr} "
                              f"({current!r} -> {value!r}) after processing began")
        setattr(self, attr, value)
        return True

    def scale_frames(self, factor: float) -> None:
        """Set the :attr:`frame_params` to their values as constructed times
        ``factor``, rounded to whole frames (``factor`` 1: as constructed).

        Only before the first chunk: the stage's state is sized by them.
        """
        if not self.frame_params:
            return
        base = self.__dict__.setdefault("_frames_as_built",
                                        {k: getattr(self, k) for k in self.frame_params})
        want = {k: scale_count(v, factor, self.frame_params[k]) for k, v in base.items()}
        if self._n_channels is not None:
            if want != {k: getattr(self, k) for k in self.frame_params}:
                raise ConfigError(f"{self.name}: reading rate changed after processing began")
            return
        for k, v in want.items():
            setattr(self, k, v)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Process ``chunk`` (n_frames, n_channels); return the frames now complete."""
        raise NotImplementedError

    def finish(self) -> np.ndarray:
        """Return the frames still held back at the end of the stream.

        The default (no look-ahead) returns no frames, shaped like the last
        output (see :meth:`_emit`).
        """
        return self._empty_output()

    def reset(self) -> None:
        """Forget the state carried across chunks (parameters are kept)."""
        self._n_channels = None
        self._out_like = None

    def params(self) -> dict[str, Any]:
        """The effective parameters as a JSON-able dict."""
        return {}

    def notes(self) -> list[str]:
        """What the stage has decided from the data so far that its user should
        know (e.g. a transmitter pulse the ground balance found); none by default."""
        return []

    # -- helpers ------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """``{"step": name, "params": {...}}``, one entry of a processing history."""
        return {"step": self.name, "params": _jsonable(self.params())}

    def _check(self, chunk: Any, dtype: Any = None) -> np.ndarray:
        """Validate ``chunk`` as a 2-D array with the channel count seen so far.

        Returns a C-contiguous array (cast to ``dtype`` if given, else to float32
        unless it already is float32 or float64).
        """
        arr = np.asarray(chunk)
        if arr.ndim != 2:
            raise ValueError(f"stage {self.name!r}: chunk must be 2-D (n_frames, n_channels), "
                             f"got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":  # (complex lost its imaginary part, text parsed)
            raise ValueError(f"stage {self.name!r}: chunk must hold real numbers, got dtype "
                             f"{arr.dtype}")
        if self._n_channels is None:
            if arr.shape[1] == 0:
                raise ValueError(f"stage {self.name!r}: chunk has no channels")
            self._n_channels = int(arr.shape[1])
        elif arr.shape[1] != self._n_channels:
            raise ValueError(f"stage {self.name!r}: chunk has {arr.shape[1]} channels, "
                             f"earlier chunks had {self._n_channels}")
        if dtype is None:  # native float64 stays float64, everything else float32
            dtype = np.float64 if arr.dtype.kind == "f" and arr.dtype.itemsize == 8 \
                else np.float32
        return np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))

    def _emit(self, out: np.ndarray) -> np.ndarray:
        """Remember the channel count and dtype of an output; return it."""
        self._out_like = (out.shape[1:], out.dtype)
        return out

    def _empty_output(self) -> np.ndarray:
        """Zero frames shaped like the outputs so far (or like the input)."""
        like = getattr(self, "_out_like", None)  # subclasses may skip __init__
        if like is not None:
            return np.empty((0, *like[0]), dtype=like[1])
        return np.empty((0, self._n_channels or 0), dtype=np.float32)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def register_stage(cls: S) -> S:
    """Class decorator: register a :class:`Stage` subclass under ``cls.name``."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no registry name (class attribute 'name')")
    other = _REGISTRY.get(name)
    if other is not None and other is not cls and (
        other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"stage name {name!r} already registered by "
                         f"{other.__module__}.{other.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load_builtin_stages() -> None:
    for mod in _BUILTIN_STAGE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a stage family not built yet
            if exc.name != mod:
                raise


def get_stage(name: str) -> type[Stage]:
    """The stage class registered as ``name``; :class:`ConfigError` if unknown."""
    if name not in _REGISTRY:
        _load_builtin_stages()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"unknown processing step {name!r} (known: {known})") from None


def available_stages() -> list[str]:
    """Names of every registered stage (loading the built-in ones first)."""
    _load_builtin_stages()
    return sorted(_REGISTRY)


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if p is not None]
    nonempty = [p for p in parts if p.shape[0]]
    if not nonempty:
        return parts[-1] if parts else np.empty((0, 0))
    if len(nonempty) == 1:
        return nonempty[0]
    return np.concatenate(nonempty, axis=0)


class Chain(Stage):
    """A list of stages applied one after another; itself a :class:`Stage`.

    Parameters
    ----------
    steps : iterable of Stage
        The stages in order.
    name : str, optional
        Human-readable chain name stored in histories.
    kind : str, optional
        Stream kind the chain is meant for (``"emi"``, ``"gpr"``); used by
        :func:`process_recording` to pick streams.
    streams : sequence of str, optional
        Explicit stream names to apply to (overrides ``kind``).
    block_bytes : int or None
        A chunk larger than twice this goes through the steps in blocks of
        about this many bytes, so that intermediates stay in cache (same
        result: stages are streaming-invariant).  None: never split.
    reference_rate : float, optional
        Reading rate (frames/s) the steps' frame counts were chosen for (the
        packaged EMI chain: 1000).  Configured with a stream whose
        ``sample_rate`` differs from it by more than :data:`RATE_TOLERANCE`,
        every step's :attr:`Stage.frame_params` scale to that rate, so a
        window keeps its length in time (a detector reading 100 times a second
        integrates over the same 31 ms as one reading 1000 times).
    """

    name: ClassVar[str] = "chain"

    def __init__(self, steps: Iterable[Stage] = (), *, name: str = "",
                 kind: str | None = None, streams: Sequence[str] | None = None,
                 block_bytes: int | None = 4 << 20,
                 reference_rate: float | None = None) -> None:
        super().__init__()
        self.block_bytes = block_bytes
        self.reference_rate = None if reference_rate is None else check_number(
            "chain", "reference_rate", reference_rate, lo=0.0, lo_open=True)
        self.steps: list[Stage] = list(steps)
        for i, st in enumerate(self.steps):
            if not isinstance(st, Stage):
                raise ConfigError(f"chain step {i} is not a Stage: {st!r}")
        self.chain_name = name
        self.kind = kind
        self.streams = list(streams) if streams is not None else None

    @property
    def resamples(self) -> bool:  # type: ignore[override]
        """True when some step changes the number of frames."""
        return any(getattr(st, "resamples", False) for st in self.steps)

    def configure(self, context: Mapping[str, Any]) -> None:
        """Configure every step for a stream (see :meth:`Stage.configure`):
        after :meth:`reset`, for another stream, each step takes that stream's
        facts for the parameters that were not given."""
        factor = rate_factor(self.reference_rate, context)
        for st in self.steps:
            st.scale_frames(factor)
            st.configure(context)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk)
        rows = chunk.shape[0] if chunk.ndim else 0
        row_bytes = chunk[:1].nbytes if chunk.ndim else 0
        if self.block_bytes and len(self.steps) > 1 and rows * row_bytes > 2 * self.block_bytes:
            # a big chunk goes through in cache-sized blocks: the stages are
            # streaming-invariant, so the result is the same, and every
            # intermediate stays in cache instead of making a pass over memory
            step = max(256, self.block_bytes // max(1, row_bytes))
            parts = [self._pipe(chunk[i:i + step]) for i in range(0, rows, step)]
            out = _concat(parts)
        else:
            out = self._pipe(chunk)
        out = np.asarray(out)
        if out.ndim == 2 and (out.shape[0] or getattr(self, "_out_like", None) is None):
            self._emit(out)
        return out

    def _pipe(self, chunk: np.ndarray) -> np.ndarray:
        out = chunk
        for st in self.steps:
            out = st.process(out)
        return out

    def finish(self) -> np.ndarray:
        pending: np.ndarray | None = None
        for st in self.steps:
            parts = []
            if pending is not None and pending.shape[0]:
                parts.append(st.process(pending))
            parts.append(st.finish())
            pending = _concat(parts)
        if pending is None or pending.shape[0] == 0:
            return self._empty_output()
        return pending

    def reset(self) -> None:
        super().reset()
        for st in self.steps:
            st.reset()

    def params(self) -> dict[str, Any]:
        return {"steps": [st.describe() for st in self.steps]}

    def history(self) -> list[dict[str, Any]]:
        """One ``{"step", "params"}`` entry per step."""
        return [st.describe() for st in self.steps]

    def notes(self) -> list[str]:
        """Every step's :meth:`Stage.notes`, in order."""
        return [n for st in self.steps for n in st.notes()]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __repr__(self) -> str:
        return f"Chain({self.steps!r}, name={self.chain_name!r})"


def run_stage(stage: Stage, data: np.ndarray,
              chunk_sizes: Iterable[int] | int | None = None) -> np.ndarray:
    """Run ``data`` (n_frames, n_channels) through ``stage`` and return all output.

    ``chunk_sizes`` is ``None`` (one call), an int (equal chunks) or an iterable
    of chunk sizes (cycled until the data is used up).  The stage is
    :meth:`~Stage.reset` first and :meth:`~Stage.finish`-ed at the end.
    """
    data = np.asarray(data)
    stage.reset()
    n = data.shape[0]
    if chunk_sizes is None:
        sizes: list[int] = [n]
    elif isinstance(chunk_sizes, int | float | np.integer | np.floating):
        sizes = [check_number("run_stage", "chunk_sizes", chunk_sizes, lo=1, integer=True)]
    else:
        sizes = [check_number("run_stage", "chunk_sizes", s, lo=0, integer=True)
                 for s in chunk_sizes]
        if not sizes or max(sizes) == 0:
            raise ConfigError("run_stage: chunk sizes must be >= 0 with at least one > 0")
    parts = []
    i = k = 0
    while i < n:
        s = sizes[k % len(sizes)]
        k += 1
        parts.append(stage.process(data[i:i + s]))
        i += s
    if n == 0:
        parts.append(stage.process(data))
    parts.append(stage.finish())
    return _concat(parts)


# -- TOML chains ----------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _build_step(i: int, step: Any, where: str,
                factory: Callable[[str], type[Stage]] = get_stage) -> Stage:
    if not isinstance(step, Mapping):
        raise ConfigError(f"{where}: step {i + 1} is not a table")
    if "name" not in step:
        raise ConfigError(f"{where}: step {i + 1} has no 'name'")
    name = step["name"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: step {i + 1}: 'name' must be a string")
    params: dict[str, Any] = {}
    if "params" in step:
        if not isinstance(step["params"], Mapping):
            raise ConfigError(f"{where}: step {i + 1} ({name}): 'params' must be a table")
        params.update(step["params"])
    for key, val in step.items():
        if key in ("name", "params"):
            continue
        if key in params:
            raise ConfigError(f"{where}: step {i + 1} ({name}): parameter {key!r} given twice")
        params[key] = val
    try:
        cls = factory(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: step {i + 1}: {exc}") from None
    if cls is Chain:
        raise ConfigError(f"{where}: step {i + 1}: 'chain' cannot be a step")
    try:
        return cls(**params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: step {i + 1} ({name}): {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: step {i + 1} ({name}): bad parameters: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: step {i + 1} ({name}): {exc}") from None


def chain_from_dict(doc: Mapping[str, Any], where: str = "chain") -> Chain:
    """Build a :class:`Chain` from a parsed TOML document (see module docstring)."""
    unknown = set(doc) - {"chain", "step"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                          "(expected [chain] and [[step]])")
    meta = doc.get("chain", {})
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{where}: [chain] must be a table")
    bad = set(meta) - {"name", "kind", "streams", "description", "reference_rate"}
    if bad:
        raise ConfigError(f"{where}: [chain] has unknown key(s) {', '.join(sorted(bad))}")
    steps = doc.get("step", [])
    if not isinstance(steps, list):
        raise ConfigError(f"{where}: 'step' must be an array of tables ([[step]])")
    if not steps:
        raise ConfigError(f"{where}: chain has no [[step]]")
    kind = meta.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ConfigError(f"{where}: [chain] kind must be a string")
    streams = meta.get("streams")
    if streams is not None and (not isinstance(streams, list)
                                or not all(isinstance(s, str) for s in streams)):
        raise ConfigError(f"{where}: [chain] streams must be a list of strings")
    built = [_build_step(i, st, where) for i, st in enumerate(steps)]
    ref = meta.get("reference_rate")
    try:
        return Chain(built, name=str(meta.get("name", "")), kind=kind, streams=streams,
                     reference_rate=ref)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [chain] {exc}") from None


def load_chain(source: Chain | str | Path | Mapping[str, Any]) -> Chain:
    """Load a chain from a TOML file path, a TOML string, or a parsed dict.

    A string that names an existing file, or ends in ``.toml``, is read as a
    path; a bare name like ``"emi_default"`` loads the packaged default chain.
    A :class:`Chain` gives a copy of it, reset (configuring the copy for a
    stream leaves the original as it was).
    """
    if isinstance(source, Chain):
        import copy

        chain = copy.deepcopy(source)
        chain.reset()   # (a new stream: not the state of one it has processed)
        return chain
    if not isinstance(source, str | Path | Mapping):
        raise ConfigError(f"chain: give a Chain, a TOML file path, TOML text, a packaged "
                          f"chain name or a dict, not a {type(source).__name__}")
    if isinstance(source, Mapping):
        return chain_from_dict(source)
    if isinstance(source, Path) or (isinstance(source, str) and (
            source.endswith(".toml") or "\n" not in source and Path(source).is_file())):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"chain file {str(path)!r} not found") from None
        except OSError as exc:
            raise ConfigError(f"chain file {str(path)!r}: {exc}") from None
        where = str(path)
    elif isinstance(source, str) and "\n" not in source and "=" not in source:
        return default_chain(source)
    else:
        text, where = str(source), "chain"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return chain_from_dict(doc, where)


def default_chain(name: str) -> Chain:
    """The packaged chain ``name`` (``"emi_default"``, ``"gpr_default"``)."""
    return chain_from_dict(default_chain_doc(name), f"packaged chain {name!r}")


def default_chain_doc(name: str) -> dict[str, Any]:
    """The packaged chain ``name`` as its parsed TOML document, to edit a
    parameter before building it with :func:`load_chain`."""
    try:
        text = resources.files("demine").joinpath("chains", f"{name}.toml").read_text(
            encoding="utf-8")
    except (FileNotFoundError, OSError):
        raise ConfigError(f"no packaged chain named {name!r}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - packaged files are tested
        raise ConfigError(f"packaged chain {name!r}: invalid TOML: {exc}") from None
    return doc


#: Calibration entries that stages and detectors read from a stream's context:
#: a radar's time zero (two-way time of the direct wave's pick, s) and antenna
#: height above ground (m) place the ground surface for the GPR detector; a
#: metal detector's coil radius (m) sets the EMI detector's distances, and its
#: transmitter on-time (s, `pulse_length`) the ground balance's viscous decay;
#: a radar's centre frequency (Hz, `frequency`) scales the GPR detector's
#: wavelet-tied parameters (:data:`demine.hyperbola.WAVELET_PARAMS`).
CALIBRATION_CONTEXT = ("time_zero", "antenna_height", "coil_radius", "pulse_length",
                       "frequency")


#: Entries of :data:`CALIBRATION_CONTEXT` that mean something for one kind of
#: stream only (a metal detector's profile may carry its own ``frequency``,
#: e.g. a list for a multi-frequency head, that is none of the radar's).
_CALIBRATION_KIND = {"frequency": "gpr"}

#: Radar centre frequencies (Hz) a calibration ``frequency`` may give: GPR
#: antennas run from about 10 MHz to a few GHz.  A value outside is a unit
#: slip (200 for 200 MHz) that would scale the chain and detector absurdly.
RADAR_FREQUENCY_RANGE = (1e6, 1e11)


def _calibration_context(calibration: Mapping[str, Any] | None,
                         kind: str | None = None) -> dict[str, float]:
    """The entries of :data:`CALIBRATION_CONTEXT` a calibration profile holds, as
    floats (for a stream of ``kind``, the entries of other kinds left out)."""
    out: dict[str, float] = {}
    for key in CALIBRATION_CONTEXT:
        value = (calibration or {}).get(key)
        if value is None or _CALIBRATION_KIND.get(key, kind) != kind:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"calibration {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"calibration {key!r} must be finite and >= 0, got {v}")
        lo, hi = RADAR_FREQUENCY_RANGE
        if key == "frequency" and v > 0 and not lo <= v <= hi:
            raise ConfigError(f"calibration 'frequency' {v:g} Hz is not a radar centre "
                              f"frequency ({lo:g} to {hi:g} Hz): give it in Hz")
        out[key] = v
    return out


def load_profiles(calibration: Mapping[str, Any] | None
                  ) -> dict[str, tuple[Mapping[str, Any], str]]:
    """``{stream: (profile, where)}`` from ``{stream: profile}``, each profile
    a loaded dict, a shipped name or a ``.toml`` path (:func:`with_profile`)."""
    out: dict[str, tuple[Mapping[str, Any], str]] = {}
    for name, prof in (calibration or {}).items():
        if isinstance(prof, Mapping):
            out[str(name)] = (prof, f"the profile given for {name!r}")
        else:
            from .calibration import load_profile

            out[str(name)] = (load_profile(prof), str(prof))
    return out


#: What a stream of each kind needs from a calibration when it does not
#: declare it, and a shipped profile that gives it (the reference device's).
_NEEDED = {"gate_times": ("gate times", "emi-pi-default"),
           "sample_interval": ("sample interval", None)}


def missing_calibration_hint(exc: MissingCalibrationError, stream: str
                             ) -> MissingCalibrationError:
    """``exc`` with the stream it is about and how to give what it lacks after
    the recording was made (a profile: ``--calibration STREAM=PROFILE``)."""
    what, shipped = _NEEDED.get(exc.key, (exc.key.replace("_", " "), None))
    return MissingCalibrationError(
        f"stream {stream!r}: {exc}. Give it a calibration profile with its {what}: "
        f"--calibration {stream}=PROFILE (demine detect and demine process; in Python "
        f"calibration={{{stream!r}: PROFILE}}), PROFILE a .toml of `demine calibrate`"
        + (f" or the shipped {shipped} (the reference device's)" if shipped else ""),
        exc.key)


def with_profile(context: dict[str, Any], stream: Any, profile: Mapping[str, Any],
                 where: str) -> tuple[dict[str, Any], str]:
    """``context`` (a recorded stream's, :func:`_stream_context`) with what
    calibration ``profile`` says about the device, and a note of it.

    The entries of :data:`CALIBRATION_CONTEXT` replace the recording's own;
    EMI ``gate_times`` too (the stream's gate count must match).  A radar's
    ``sample_interval`` is the recording's when it has one: a profile giving
    another was made for another radar, and is refused.
    """
    ctx = dict(context)
    kind = stream.kind
    driver = profile.get("driver")
    if isinstance(driver, str):   # (a profile of another kind of device mixes the two)
        from .drivers import get_driver

        try:
            its = get_driver(driver).kind
        except ConfigError:  # (a driver this installation does not have: not judged)
            its = kind
        if its != kind:
            what = {"emi": "metal detector", "gpr": "radar", "gps": "GPS receiver"}
            raise ConfigError(f"{where}: the profile is for a {what.get(its, its)} (driver "
                              f"{driver!r}), not for the {what.get(kind, kind)} stream "
                              f"{stream.name!r}")
    try:
        applied = _calibration_context(profile, kind)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if kind == "emi" and profile.get("gate_times") is not None:
        try:
            gt = np.asarray(profile["gate_times"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: gate_times must be a list of seconds, got "
                              f"{profile['gate_times']!r}") from None
        n = ctx.get("n_channels")
        if n is not None and gt.size != int(n):
            raise ConfigError(f"{where}: {gt.size} gate times for stream {stream.name!r}, "
                              f"which has {n} gates")
        if not (np.all(np.isfinite(gt)) and np.all(gt > 0)):
            raise ConfigError(f"{where}: gate_times must be positive seconds")
        ctx["gate_times"] = gt
    if kind == "gpr" and profile.get("sample_interval") is not None:
        try:
            dt = float(profile["sample_interval"])
        except (TypeError, ValueError):
            dt = math.nan
        if not (dt > 0 and math.isfinite(dt)):
            raise ConfigError(f"{where}: sample_interval must be seconds > 0, got "
                              f"{profile['sample_interval']!r}")
        have = ctx.get("sample_interval")
        if have is None:
            ctx["sample_interval"] = dt
        elif not math.isclose(dt, float(have), rel_tol=1e-3):
            raise ConfigError(
                f"{where}: sample_interval {dt:g} s, but stream {stream.name!r} was recorded "
                f"at {float(have):g} s: the profile is another radar's (calibrate this one: "
                "demine calibrate time-zero)")
    ctx.update(applied)
    used = [f"{k} {v:g}" for k, v in sorted(applied.items())]
    if kind == "emi" and "gate_times" in profile:
        used.append(f"{len(ctx['gate_times'])} gate times")
    return ctx, f"calibration from {where}: " + (", ".join(used) if used else "nothing used")


#: Most frames per second a metal detector or radar stream can have (a fast
#: array's tens of thousands of traces).  A higher rate is a unit slip in
#: ``time`` (frame numbers as ns give 1e9), and would size the EMI chain's
#: windows, which follow the rate, absurdly.  (No lower bound: a slip gives
#: rates too high, and stop-and-go surveys are slow.)
MAX_FRAME_RATE = {"emi": 200_000.0, "gpr": 200_000.0}

#: Frames at one time beyond which a stream's times are taken as not given
#: (all 0): a live device without its own clock gives a few frames read
#: together the same host time.
_SAME_TIME_FRAMES = 1000


def _stream_context(stream: Any) -> dict[str, Any]:
    """Facts about a recorded stream that stages may need (see :meth:`Stage.configure`)."""
    ctx: dict[str, Any] = {"stream": stream.name, "kind": stream.kind}
    n_channels = getattr(stream, "n_channels", None)
    if n_channels is not None:
        ctx["n_channels"] = n_channels
    gt = stream.gate_times
    if gt is not None:
        ctx["gate_times"] = np.asarray(gt, dtype=np.float64)
    si = stream.sample_interval
    if si is not None:
        ctx["sample_interval"] = si
    ctx.update(_calibration_context(getattr(stream, "calibration", {}), stream.kind))
    rate = stream.attrs.get("sample_rate") or stream.attrs.get("reading_rate")
    from_attr = rate is not None
    # an imported file without trace timing counts its traces in ns: no rate
    index_times = "trace index in ns" in str(stream.attrs.get("time_source", ""))
    if rate is None:
        n = min(len(stream), 100_001)
        if n >= 2:
            t = np.asarray(stream.read(0, n, fields=["time"])["time"], dtype=np.int64)
            dt = np.diff(t)
            dt = dt[dt > 0]
            if dt.size:
                rate = 1e9 / float(np.median(dt))
            elif stream.kind in MAX_FRAME_RATE and n >= _SAME_TIME_FRAMES:
                raise ConfigError(
                    f"stream {stream.name!r}: its {n} first frames all have the time "
                    f"{int(t[0])}: 'time' must be each frame's time in nanoseconds since "
                    "1970-01-01 (docs/format.md)")
    if rate and stream.kind in MAX_FRAME_RATE and not index_times \
            and float(rate) > MAX_FRAME_RATE[stream.kind]:
        hi = MAX_FRAME_RATE[stream.kind]
        if from_attr:
            raise ConfigError(
                f"stream {stream.name!r}: its 'sample_rate' attribute gives {float(rate):.4g} "
                f"frames per second, more than {hi:g}: it is the stream's readings (or "
                "traces) per second, not a digitiser's sampling rate")
        raise ConfigError(
            f"stream {stream.name!r}: its times give {float(rate):.4g} frames per second, "
            f"more than {hi:g}: 'time' must be in nanoseconds since 1970-01-01 "
            "(docs/format.md; frame numbers, or times in microseconds, give such rates)")
    if rate:
        ctx["sample_rate"] = float(rate)
    return ctx


def _select_streams(rec: Any, chain: Chain, streams: Sequence[str] | None,
                    in_path: Path) -> list[str]:
    names = list(streams) if streams is not None else chain.streams
    if names is not None:
        for n in names:
            if n not in rec.streams:
                raise ConfigError(f"{in_path}: no stream {n!r} to process "
                                  f"(streams: {', '.join(sorted(rec.streams)) or 'none'})")
            kind = rec.streams[n].kind
            if chain.kind is not None and kind in ("emi", "gpr") and kind != chain.kind:
                # (its steps would ask for what the other kind's streams carry,
                # e.g. gate times of a radar)
                raise ConfigError(f"{in_path}: stream {n!r} is a {kind} stream; chain "
                                  f"{chain.chain_name or '(unnamed)'} is for {chain.kind} "
                                  "streams")
        return names
    if chain.kind is None:
        raise ConfigError(f"chain {chain.chain_name or '(unnamed)'} names neither a stream kind "
                          "nor streams; say which streams to process")
    names = [n for n, s in rec.streams.items() if s.kind == chain.kind]
    if not names:
        raise ConfigError(f"{in_path}: no {chain.kind} stream to process with chain "
                          f"{chain.chain_name or '(unnamed)'}")
    return sorted(names)


def process_recording(in_path: str | Path, chain: Chain | str | Path | Mapping[str, Any],
                      out_path: str | Path, *, streams: Sequence[str] | None = None,
                      name: str | None = None, chunk_frames: int = 65536,
                      overwrite: bool = False,
                      calibration: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Apply ``chain`` to the streams of a recording; write the results with their history.

    The raw recording ``in_path`` is never modified.  ``out_path`` receives a
    byte-for-byte copy of it (unless it is the same file, in which case the
    derived data is added to it, raw streams untouched), plus, for each
    processed stream, the derived dataset ``/derived/<stream>/<name>`` (see
    :func:`demine.recording.write_derived`) whose ``history`` attribute lists
    every step with its effective parameters, and which records the software
    version.  Streams are read and processed in chunks of ``chunk_frames``
    frames, through the same stateful stages the live path uses.

    Parameters
    ----------
    in_path : path
        The recording to process.
    chain : Chain, path, TOML text, packaged chain name or dict
        What to apply (see :func:`load_chain`).
    out_path : path
        Where to write; an existing different file is replaced only with
        ``overwrite``.
    streams : sequence of str, optional
        Streams to process; by default the chain's ``streams`` or every stream
        of the chain's ``kind``.
    name : str, optional
        Name of the derived dataset; default the chain's name, else ``"processed"``.
    chunk_frames : int
        Frames read per chunk.
    overwrite : bool
        Replace an existing ``out_path`` / derived dataset of the same name.
    calibration : mapping, optional
        Stream name to a calibration profile (dict, shipped name or ``.toml``
        path) used instead of what the recording holds (:func:`with_profile`;
        as ``demine detect --calibration``); the derived dataset's
        ``calibration`` attribute says what was used.

    Returns
    -------
    dict
        Stream name to the HDF5 path of its derived dataset.
    """
    import copy
    import secrets
    import shutil

    from .recording import Recording, check_derived_name, write_derived

    if not isinstance(chain, Chain):
        chain = load_chain(chain)
    chunk_frames = check_number("process_recording", "chunk_frames", chunk_frames, lo=1,
                                integer=True)
    for i, st in enumerate(chain.steps):
        if getattr(st, "resamples", False):
            raise ConfigError(
                f"chain {chain.chain_name or '(unnamed)'}: step {i + 1} ({st.name}) changes "
                "the number of frames; derived datasets keep the stream's time axis, so "
                "run stacking/resampling from Python on the derived data instead")
    in_path = Path(in_path)
    out_path = Path(out_path)
    # (checked before the work: the write comes after the whole stream is processed)
    dname = check_derived_name((chain.chain_name or "processed") if name is None else name)
    same = out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve()
    profiles = load_profiles(calibration)
    with Recording(in_path) as rec:
        names = _select_streams(rec, chain, streams, in_path)
        contexts: dict[str, dict[str, Any]] = {}
        for sname, prof in profiles.items():
            if sname not in names:
                raise ConfigError(f"{in_path}: calibration given for stream {sname!r}, which "
                                  f"is not processed (processed: {', '.join(names)})")
            s = rec.streams[sname]
            contexts[sname] = with_profile(_stream_context(s), s, *prof)
    if same:
        target = out_path
    else:
        if out_path.exists() and not overwrite:
            raise ConfigError(f"{out_path} exists; choose another output (--overwrite, or "
                              "overwrite=True, replaces it)")
        refuse_special_output(out_path)   # (the copy is renamed over OUT)
        if not out_path.parent.is_dir():
            raise ConfigError(f"{out_path}: no directory {str(out_path.parent)!r} to write it in")
        # a name of its own beside OUT (a fixed OUT.tmp had replaced a file of
        # that name, and a second run into OUT would have shared it)
        target = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.tmp")
        dst = open(target, "xb")  # noqa: SIM115 - (removed below only once it is ours)
        try:
            with open(in_path, "rb") as src, dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    done: dict[str, str] = {}
    attrs = {"chain": chain.chain_name, "source_file": str(in_path)}
    try:
        for sname in names:
            # a fresh copy per stream: a stage takes the facts its parameters
            # leave open (gate times, reading rate) from the first stream it is
            # configured for and keeps them, so a second stream was processed
            # (and its history recorded) with the first one's
            ch = copy.deepcopy(chain)
            ctx, note = contexts.get(sname, (None, None))
            sattrs = attrs if note is None else {**attrs, "calibration": note}
            if same:
                # the file cannot be open for reading and writing at once:
                # collect the output, then add it with recording.write_derived
                with Recording(in_path) as rec:
                    stream = rec.streams[sname]
                    sink = _ArraySink(len(stream))
                    _run_stream(ch, stream, chunk_frames, in_path, sink, ctx)
                    time = stream.read(0, len(stream), fields=["time"])["time"]
                done[sname] = write_derived(
                    target, sname, dname, sink.result(), history=ch.history(), time=time,
                    attrs=sattrs, overwrite=overwrite)
            else:
                # stream the output straight into the copy: memory stays one chunk
                with Recording(in_path) as rec, _H5Sink(target, sname, dname, rec.streams[sname],
                                                         overwrite, in_path) as sink:
                    _run_stream(ch, rec.streams[sname], chunk_frames, in_path, sink, ctx)
                    done[sname] = sink.commit(ch.history(), sattrs)
        if not same:
            target.replace(out_path)
    except BaseException:
        if not same:
            target.unlink(missing_ok=True)
        raise
    return done


class _ArraySink:
    """Collects a stream's output frames in one array."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.out: np.ndarray | None = None

    def put(self, start: int, block: np.ndarray) -> None:
        if self.out is None:
            self.out = np.empty((self.n, *block.shape[1:]), dtype=block.dtype)
        self.out[start:start + block.shape[0]] = block

    def result(self) -> np.ndarray:
        return self.out if self.out is not None else np.empty((0, 0), dtype=np.float32)


class _H5Sink:
    """Writes a stream's output frames into ``/derived/<stream>/<name>`` as they come.

    Same layout as :func:`demine.recording.write_derived` (docs/format.md):
    ``data`` rows along the ``time`` dimension scale copied from the source,
    a ``channel`` scale, and ``source``/``history``/``software_version``/
    ``created_utc`` attributes (written last, in :meth:`commit`).
    """

    def __init__(self, path: Path, stream_name: str, name: str, stream: Any,
                 overwrite: bool, source: Path | None = None) -> None:
        import h5py

        from .errors import SchemaError

        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise SchemaError(f"derived name {name!r} must be letters, digits, '_' or '-'")
        self.path, self.stream_name, self.name = path, stream_name, name
        self.stream = stream
        self.n = len(stream)
        try:
            self.file = h5py.File(path, "r+", libver="latest")
        except OSError as exc:
            from .errors import RecordingError

            if "SWMR write" in str(exc) and source is not None:
                # (the copy of a file still being recorded: the message had named
                # the internal copy and suggested h5clear)
                raise RecordingError(
                    f"{source}: still open for writing by its recorder (or its recorder "
                    "stopped without closing it): process it once the recording has "
                    "ended") from exc
            raise RecordingError(f"{path}: cannot open for adding derived data: {exc}") from exc
        parent = self.file.require_group("derived").require_group(stream_name)
        if name in parent:
            if not overwrite:
                self.file.close()
                from .errors import RecordingError

                raise RecordingError(f"{path}: derived {stream_name}/{name} exists")
            del parent[name]
        self.group = parent.create_group(name)
        self.data = None

    def put(self, start: int, block: np.ndarray) -> None:
        if self.data is None:
            self.data = self.group.create_dataset(
                "data", shape=(self.n, *block.shape[1:]), dtype=block.dtype,
                chunks=(max(1, min(self.n, (1 << 20) // max(1, block[:1].nbytes))),
                        *block.shape[1:]))
        self.data[start:start + block.shape[0]] = block

    def commit(self, history: list[dict[str, Any]], attrs: Mapping[str, Any]) -> str:
        from ._version import __version__
        from .recording import TIME_UNITS, _iso_utc, utc_now_ns

        g = self.group
        tds = g.create_dataset("time", shape=(self.n,), dtype="int64")
        step = 1 << 20
        for i in range(0, self.n, step):
            tds[i:i + step] = self.stream.read(i, min(self.n, i + step), fields=["time"])["time"]
        tds.attrs["units"] = TIME_UNITS
        tds.make_scale("time")
        if self.data is None:  # no frames
            self.data = g.create_dataset("data", shape=(0, 0), dtype="float32")
        self.data.dims[0].attach_scale(tds)
        if self.data.ndim == 2:
            cds = g.create_dataset("channel", data=np.arange(self.data.shape[1], dtype="float64"))
            cds.make_scale("channel")
            self.data.dims[1].attach_scale(cds)
        g.attrs.update({
            "source": f"/streams/{self.stream_name}",
            "history": json.dumps([dict(h) for h in history]),
            "software_version": __version__,
            "created_utc": _iso_utc(utc_now_ns()),
        })
        for key, value in attrs.items():
            g.attrs[key] = value
        return f"/derived/{self.stream_name}/{self.name}"

    def __enter__(self) -> _H5Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _run_stream(chain: Chain, stream: Any, chunk_frames: int, in_path: Path,
                sink: Any, context: Mapping[str, Any] | None = None) -> None:
    """Run every frame of ``stream`` through ``chain`` chunk by chunk into
    ``sink`` (configured with ``context``, default the stream's own)."""
    if "samples" not in stream.field_names:
        raise ConfigError(f"{in_path}: stream {stream.name!r} ({stream.kind}) has no samples "
                          "to process")
    try:  # (a stage may find what it lacks only at the first frames)
        _run_stream_chunks(chain, stream, chunk_frames, in_path, sink, context)
    except MissingCalibrationError as exc:
        raise missing_calibration_hint(exc, stream.name) from None


def _run_stream_chunks(chain: Chain, stream: Any, chunk_frames: int, in_path: Path,
                       sink: Any, context: Mapping[str, Any] | None) -> None:
    chain.reset()
    chain.configure(_stream_context(stream) if context is None else context)
    n = len(stream)
    filled = 0
    width: tuple[int, ...] | None = None
    starts = list(range(0, n, chunk_frames))
    for k in range(len(starts) + 1):
        if k < len(starts):
            i = starts[k]
            block = chain.process(stream.read(i, min(n, i + chunk_frames),
                                              fields=["samples"])["samples"])
        else:
            block = chain.finish()
        if block.shape[0] == 0:
            continue
        if width is None:
            width = block.shape[1:]
        elif block.shape[1:] != width:
            raise ConfigError(f"{in_path}: stream {stream.name!r}: chain output changed shape "
                              f"from {width} to {block.shape[1:]} per frame")
        if filled + block.shape[0] > n:
            raise ConfigError(f"{in_path}: stream {stream.name!r}: chain produced more frames "
                              f"than its {n} input frames")
        sink.put(filled, block)
        filled += block.shape[0]
    if filled != n:
        raise ConfigError(f"{in_path}: stream {stream.name!r}: chain produced {filled} frames "
                          f"for {n} input frames")
