"""The field of a circular coil: shared by the metal-detector simulator and the
dipole fit of :mod:`demine.features` (physics, not a model of either)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special as _special

__all__ = ["loop_field"]


def loop_field(a: float, rho: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnetic field per ampere (1/m) of a circular loop of radius ``a``.

    Parameters
    ----------
    a : float
        Loop radius, m.
    rho, z : ndarray
        Cylindrical coordinates of the field points relative to the loop centre.

    Returns
    -------
    h_rho, h_z : ndarray
        Radial and axial field components, A/m per A.
    """
    rho0 = np.abs(np.asarray(rho, dtype=np.float64))
    rho = np.maximum(rho0, 1e-7 * a)
    z = np.asarray(z, dtype=np.float64)
    s = (a + rho) ** 2 + z * z
    m = 4.0 * a * rho / s
    m = np.minimum(m, 1.0 - 1e-12)
    kk = _special.ellipk(m)
    ee = _special.ellipe(m)
    d = (a - rho) ** 2 + z * z
    inv = 1.0 / (2.0 * math.pi * np.sqrt(s))
    hz = inv * (kk + (a * a - rho * rho - z * z) / d * ee)
    hr = inv * z / rho * (-kk + (a * a + rho * rho + z * z) / d * ee)
    # near the axis the bracket cancels to rounding: use the first-order expansion
    small = rho < 1e-4 * a
    if np.any(small):
        near = 0.75 * a * a * z * rho0 / (a * a + z * z) ** 2.5
        hr = np.where(small, near, hr)
    return hr, hz
