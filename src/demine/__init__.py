"""demine — an open toolkit for mine-action sensor research.

Metal detectors (EMI) and ground-penetrating radars (GPR) stream readings over
serial links; demine records them losslessly to HDF5, filters them and finds
anomalies in a compiled (Cython) signal-processing core, classifies alarms as
mine or clutter, and evaluates detection the way mine-action test & evaluation
does (probability of detection with its confidence bound, false alarms per m²).

The compiled core is imported here on purpose: if it failed to build or load,
``import demine`` fails with the loader's error instead of running a slow or
missing pure-Python fallback.
"""

from __future__ import annotations

import os as _os

# OpenMP worker threads spin between parallel regions by default; in a live
# recorder, whose kernels run on small chunks many times a second, that spinning
# cost a steady 4-5 % of a core for nothing.  Read once, when the OpenMP runtime
# loads with the compiled core below; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _core  # noqa: E402, F401  (fail loudly if the compiled core is missing)
from ._version import __version__
from .errors import (
    ConfigError,
    DemineError,
    FormatVersionError,
    FrameError,
    MissingCalibrationError,
    ModelError,
    NotARecordingError,
    RecordingError,
    SchemaError,
    VendorFormatError,
)
from .recording import Recording, RecordingWriter

__all__ = [
    "__version__",
    "ConfigError",
    "DemineError",
    "FormatVersionError",
    "FrameError",
    "MissingCalibrationError",
    "ModelError",
    "Recording",
    "RecordingWriter",
    "NotARecordingError",
    "RecordingError",
    "SchemaError",
    "VendorFormatError",
]
