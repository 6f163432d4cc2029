"""A pulse-induction detector swept over magnetic ground, as arrays: shared by the
pulse calibration's tests and the ground balance's pulse search."""

from __future__ import annotations

import numpy as np

SWEEP_GATES = np.geomspace(12e-6, 1e-3, 16)


def viscous_sweep(pulse, *, n=20000, seed=3, soil=300.0, decay=None, metal=5):
    """Readings (n, 16) of a detector swept over viscous ground (its amplitude
    moving with the head's height, 3-7 cm) under a transmitter pulse of
    ``pulse`` s (``None``: a step-off), or over ground of another ``decay``
    (a function of the gate times), with noise, drift and ``metal`` objects.
    Returns ``(gates, x)``."""
    rng = np.random.default_rng(seed)
    gates = SWEEP_GATES
    k = np.arange(n)
    h = 0.05 + 0.02 * np.sin(2 * np.pi * k / 1200.0) + 0.004 * np.sin(k / 2900.0)
    if decay is None:
        decay = 1 / gates - (1 / (gates + pulse) if pulse else 0.0)
    else:
        decay = decay(gates) / decay(gates[6]) / gates[6]
    sigma = 1e-3 * np.sqrt(1e-4 / gates)
    x = soil * sigma[6] * 1e-4 * (0.05 / h)[:, None] ** 3 * decay[None, :]
    x += rng.normal(size=x.shape) * sigma
    x += np.linspace(0, 1, n)[:, None] * rng.normal(scale=3.0, size=gates.size) * sigma
    for start in rng.integers(0, n - 400, metal):
        tau = 10 ** rng.uniform(-4.5, -3.3)
        bump = 200 * sigma[0] * np.exp(-gates / tau) * (gates / 1e-5) ** -0.5
        x[start:start + 400] += np.hanning(400)[:, None] * bump[None, :]
    return gates, x
