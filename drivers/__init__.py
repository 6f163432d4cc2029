"""Device drivers of demine, found by name.

Built-in drivers:

================  ======  ==============================================================
name              kind    device
================  ======  ==============================================================
``emi-pi``        emi     pulse-induction metal detector, binary frames, CRC-16/CCITT
``gpr``           gpr     ground-penetrating radar, one trace per binary frame, CRC
``nmea``          gps     NMEA 0183 GPS (GGA, RMC, ZDA, VTG), checksums checked
``ascii-md``      emi     line-based detector output with configurable columns
================  ======  ==============================================================

Third-party packages can ship drivers through the ``demine.drivers`` entry-point
group; the entry point's name is the driver name and it must load a
:class:`~demine.drivers.base.Driver` subclass (or a callable returning an
instance)::

    [project.entry-points."demine.drivers"]
    my-radar = "my_package.radar:MyRadarDriver"

Built-in names win over entry points of the same name.

Example
-------
>>> from demine.drivers import get_driver
>>> drv = get_driver("emi-pi")
>>> drv.serial_settings["baudrate"]
921600
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from ..errors import ConfigError
from .base import BinaryLayout, Driver, FrameBatch, LineDecodeResult

__all__ = [
    "BinaryLayout",
    "Driver",
    "FrameBatch",
    "LineDecodeResult",
    "available_drivers",
    "get_driver",
    "register_driver",
]

ENTRY_POINT_GROUP = "demine.drivers"

_BUILTIN: dict[str, str] = {
    "emi-pi": "demine.drivers.emi_pi:EmiPiDriver",
    "gpr": "demine.drivers.gpr:GprDriver",
    "nmea": "demine.drivers.nmea:NmeaDriver",
    "ascii-md": "demine.drivers.ascii_md:AsciiMdDriver",
}
_REGISTERED: dict[str, Any] = {}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata of some other package
        return {}
    return {ep.name: ep for ep in eps}


def register_driver(name: str, factory: Any) -> None:
    """Register a driver class (or factory) under ``name`` for this process.

    Useful for drivers defined in a script or a test; installed packages should use
    the ``demine.drivers`` entry-point group instead.
    """
    if not name or not isinstance(name, str):
        raise ConfigError("a driver name must be a non-empty string")
    _REGISTERED[name] = factory


def available_drivers() -> list[str]:
    """Names of every driver that :func:`get_driver` can create, sorted."""
    return sorted(set(_BUILTIN) | set(_REGISTERED) | set(_entry_points()))


def get_driver(name: str | Driver, **options: Any) -> Driver:
    """Create the driver called ``name`` (keyword ``options`` go to its constructor).

    A :class:`Driver` instance is returned unchanged (so APIs can take either).

    Raises
    ------
    ConfigError
        If no driver has that name, or the entry point fails to load.
    """
    if isinstance(name, Driver):
        if options:
            raise ConfigError("options cannot be applied to a driver instance")
        return name
    if name in _BUILTIN:
        factory = _load(_BUILTIN[name])
    elif name in _REGISTERED:
        factory = _REGISTERED[name]
    else:
        eps = _entry_points()
        if name not in eps:
            raise ConfigError(
                f"unknown driver {name!r}; available: {', '.join(available_drivers())}"
            )
        try:
            factory = eps[name].load()
        except Exception as exc:
            raise ConfigError(
                f"driver {name!r} (entry point {eps[name].value}) failed to load: {exc}"
            ) from exc
    try:
        drv = factory(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"driver {name!r}: bad options {sorted(options)}: {exc}") from exc
    if not isinstance(drv, Driver):
        raise ConfigError(f"driver {name!r} did not produce a demine Driver (got {drv!r})")
    return drv
