"""Gaussian noise calibration for the simulations (classical Gaussian mechanism and RDP composition)."""

from __future__ import annotations

import math


def gaussian_sigma(epsilon: float, delta: float) -> float:
    """Noise multiplier of one Gaussian release with sensitivity 1 (classical Dwork-Roth bound).

    Proven for epsilon <= 1; above that it is only indicative, which is enough for a simulation.
    """
    if not math.isfinite(epsilon):
        return 0.0
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def rdp_epsilon(z: float, rounds: int, delta: float) -> float:
    """(epsilon, delta) of ``rounds`` full-batch Gaussian steps with noise multiplier ``z`` (RDP, Mironov 2017)."""
    orders = [1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 32, 48, 64, 128, 256]
    return min(rounds * a / (2 * z * z) + math.log(1 / delta) / (a - 1) for a in orders)


def calibrate_z(epsilon: float, rounds: int, delta: float) -> float:
    """Smallest noise multiplier (by bisection) reaching ``epsilon`` over ``rounds`` steps."""
    if not math.isfinite(epsilon):
        return 0.0
    lo, hi = 1e-3, 1e4
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if rdp_epsilon(mid, rounds, delta) > epsilon else (lo, mid)
    return hi
