"""Validation of numeric parameters, shared by every stage and detector.

A bad parameter is a :class:`~demine.errors.ConfigError` that names where it
was given (stage or detector) and which parameter, whether it came from Python
or from a TOML chain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

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


def is_number(v: Any) -> bool:
    """Whether ``v`` reads as one real number (not complex, not other text)."""
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, complex | np.complexfloating)


def real_array(where: str, name: str, values: Any, *, copy: bool = True) -> NDArray[np.float64]:
    """``values`` as float64 (a copy unless ``copy=False`` and already float64).

    Raises
    ------
    ConfigError
        Complex numbers (whose imaginary part the cast would drop) or text that
        is not a number; the message names ``where``, ``name`` and the first
        bad value.
    """
    a = np.asarray(values)
    if a.dtype.kind == "c":
        raise ConfigError(f"{where}: {name} must be real numbers, got complex values")
    try:
        return a.astype(np.float64, copy=copy)
    except (TypeError, ValueError):
        bad = next((v for v in a.reshape(-1) if not is_number(v)), None)
        bad = bad.item() if isinstance(bad, np.generic) else bad
        raise ConfigError(f"{where}: {name} must be numbers, got {bad!r}") from None


def real_scalar(where: str, name: str, value: Any) -> float:
    """``value`` as a float, or a :class:`ConfigError` naming ``where`` and ``name``
    (booleans, arrays, complex numbers and other text are refused)."""
    if isinstance(value, bool) or np.ndim(value) != 0 or not is_number(value):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    return float(value)
