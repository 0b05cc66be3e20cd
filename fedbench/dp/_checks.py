"""Argument checks shared by the differential-privacy modules (private)."""

from __future__ import annotations

import math
from numbers import Integral, Real

from ..errors import ConfigurationError


def _where(party: str | None) -> str:
    return f"party {party!r}: " if party is not None else ""


def check_epsilon(epsilon: object, *, name: str = "epsilon", party: str | None = None) -> float:
    """Return ``epsilon`` as a float if it is a finite number > 0, else raise."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, Real):
        raise ConfigurationError(f"{_where(party)}{name} must be a number > 0, got {epsilon!r}")
    value = float(epsilon)
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{_where(party)}{name} must be finite and > 0, got {epsilon!r}")
    return value


def check_delta(delta: object, *, name: str = "delta", party: str | None = None) -> float:
    """Return ``delta`` as a float if it lies in the open interval (0, 1), else raise."""
    if isinstance(delta, bool) or not isinstance(delta, Real):
        raise ConfigurationError(f"{_where(party)}{name} must be a number in (0, 1), got {delta!r}")
    value = float(delta)
    if not (0.0 < value < 1.0):
        raise ConfigurationError(f"{_where(party)}{name} must lie strictly between 0 and 1, got {delta!r}")
    return value


def check_positive(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
    out = float(value)
    if not (math.isfinite(out) and out > 0):
        raise ConfigurationError(f"{name} must be finite and > 0, got {value!r}")
    return out


def check_rate(value: object, name: str = "sample_rate") -> float:
    """Return ``value`` as a float if it lies in (0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigurationError(f"{name} must be a number in (0, 1], got {value!r}")
    out = float(value)
    if not (0.0 < out <= 1.0):
        raise ConfigurationError(f"{name} must lie in (0, 1], got {value!r}")
    return out


def check_count(value: object, name: str = "count", *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
