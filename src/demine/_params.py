"""Validation of numeric parameters, shared by every stage and detector.

A bad parameter is a :class:`~demine.errors.ConfigError` that names where it
was given (stage or detector) and which parameter, whether it came from Python
or from a TOML chain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError


def check_number(where: str, name: str, value: Any, *, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False,
                 integer: bool = False) -> Any:
    """``value`` as a float (or int with ``integer``) within ``[lo, hi]``.

    Raises
    ------
    ConfigError
        Not a number (booleans are refused), not an integer when one is
        required, not finite, or out of range; the message names ``where``
        and ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{where}: parameter {name!r} must be a number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: parameter {name!r} must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: parameter {name!r} must be finite, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        op = ">" if lo_open else ">="
        raise ConfigError(f"{where}: parameter {name!r} must be {op} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: parameter {name!r} must be <= {hi}, got {value!r}")
    return value
