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
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float's range
        as_float = math.inf
    # finite first: int() of inf/NaN raises OverflowError/ValueError, not ConfigError
    if not math.isfinite(as_float):
        raise ConfigError(f"{where}: parameter {name!r} must be finite, got {value!r}")
    if integer:
        if not isinstance(value, int | np.integer) and as_float != int(as_float):
            raise ConfigError(f"{where}: parameter {name!r} must be an integer, got {value!r}")
        value = int(value)
        if not -(2 ** 63) <= value < 2 ** 63:  # the kernels take int64
            raise ConfigError(f"{where}: parameter {name!r} is too large, got {value!r}")
    else:
        value = as_float
    if lo is not None and (value < lo or (lo_open and value == lo)):
        op = ">" if lo_open else ">="
        raise ConfigError(f"{where}: parameter {name!r} must be {op} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: parameter {name!r} must be <= {hi}, got {value!r}")
    return value
