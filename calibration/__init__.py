"""Calibration profiles per device, shipped as TOML package data.

A profile holds what turns a device's raw readings into physical quantities and
aligned axes: gate times, gains, nulling values, radar time zero, antenna
velocity, ground-balance settings.  ``load_profile(name)`` reads one shipped
here by name, or any TOML file by path.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from demine.errors import ConfigError


def available_profiles() -> list[str]:
    """Names of the profiles shipped with demine."""
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".toml")
    )


def is_shipped(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a profile shipped with demine: its name, the
    shipped file itself, or an unchanged copy of one (a template, whose values
    a calibration replaces, as opposed to a profile of one's own device)."""
    if str(name_or_path) in available_profiles():
        return True
    path = Path(name_or_path)
    try:
        if path.suffix != ".toml" or not path.is_file():
            return False
        data = path.read_bytes()
    except OSError:
        return False
    return any(p.name.endswith(".toml") and p.read_bytes() == data
               for p in resources.files(__name__).iterdir())


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """Load a calibration profile by shipped name or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:   # (an .h5 or garbage given as the profile)
            raise ConfigError(f"{path}: not a calibration profile (not UTF-8 TOML text)") \
                from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the calibration profile: "
                              f"{exc.strerror or exc}") from None
        where = str(path)
    else:
        res = resources.files(__name__) / f"{name_or_path}.toml"
        if not res.is_file():
            raise ConfigError(
                f"no calibration profile {str(name_or_path)!r}"
                + (" (no such file)" if path.suffix == ".toml" else "")
                + f"; shipped profiles are {available_profiles()} (or give a path to a "
                ".toml file)"
            )
        text = res.read_text(encoding="utf-8")
        where = f"calibration profile {name_or_path!r}"
    try:
        profile = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    return profile
