"""One object for the differential-privacy settings of a statistic.

Every statistic that can be released with differential privacy accepts
``privacy=Privacy(...)``; the keywords ``epsilon, delta, bounds, mechanism,
noise`` remain as sugar that builds it (:func:`resolve_privacy`).  ``bounds``
has one accepted form everywhere: a ``(lower, upper)`` pair for the column(s)
of the call, or a mapping ``column -> (lower, upper)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import ConfigurationError
from ._checks import check_delta, check_epsilon
from .releases import MECHANISMS, NOISE_PLACEMENTS

__all__ = ["MECHANISMS", "NOISE_PLACEMENTS", "Bounds", "Privacy", "check_bounds_form", "resolve_privacy"]

#: Declared value bounds: one (lower, upper) pair, or a pair per column.
Bounds = tuple[float, float] | Mapping[str, tuple[float, float]]


def _pair(value: object, where: str) -> tuple[float, float]:
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigurationError(
            f"{where}: bounds must be a (lower, upper) pair or a mapping column -> (lower, upper), got {value!r}"
        )
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where}: bounds must be two numbers (lower, upper), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ConfigurationError(f"{where}: bounds need finite lower <= upper, got {value!r}")
    return lo, hi


def check_bounds_form(bounds: object) -> tuple[float, float] | Mapping[str, tuple[float, float]] | None:
    """Validate the one accepted form of ``bounds`` and return it normalised (floats, read-only mapping).

    Raises
    ------
    ConfigurationError
        Anything other than ``None``, a ``(lower, upper)`` pair or a mapping of
        column names to such pairs.
    """
    if bounds is None:
        return None
    if isinstance(bounds, Mapping):
        out = {}
        for column, pair in bounds.items():
            if not isinstance(column, str):
                raise ConfigurationError(f"bounds: mapping keys must be column names, got {column!r}")
            out[column] = _pair(pair, f"bounds of column {column!r}")
        return MappingProxyType(out)
    if isinstance(bounds, tuple | list):
        return _pair(bounds, "bounds")
    raise ConfigurationError(
        f"bounds must be a (lower, upper) pair or a mapping column -> (lower, upper), got {bounds!r}"
    )


@dataclass(frozen=True)
class Privacy:
    """Differential-privacy settings of one release.

    Parameters
    ----------
    epsilon : float
        Privacy cost, charged to every party the release touches.
    delta : float, optional
        With ``mechanism="gaussian"``: the release's delta (required there).
    mechanism : {"laplace", "gaussian"}, default "laplace"
        Noise distribution (exact discrete noise on the encoding grid).
    noise : {"distributed", "central"}, default "distributed"
        Each party adds a noise share before encrypting, or the key holder adds
        the noise after decrypting (see :meth:`fedbench.Federation.secure_sum`).
    bounds : (lower, upper) or mapping of column to (lower, upper), optional
        Declared value bounds (public, never read from the data); values are
        clamped to them.  Required by sums, means and quantiles.

    Raises
    ------
    ConfigurationError
        A parameter out of range or ``bounds`` in another form.

    Examples
    --------
    >>> from fedbench.dp import Privacy
    >>> p = Privacy(epsilon=0.5, bounds=(0, 120))
    >>> p.bounds_for("age")
    (0.0, 120.0)
    """

    epsilon: float
    delta: float | None = None
    mechanism: str = "laplace"
    noise: str = "distributed"
    bounds: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        if self.delta is not None and self.delta != 0:
            object.__setattr__(self, "delta", check_delta(self.delta))
        if self.mechanism not in MECHANISMS:
            raise ConfigurationError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if self.noise not in NOISE_PLACEMENTS:
            raise ConfigurationError(f"noise must be one of {NOISE_PLACEMENTS}, got {self.noise!r}")
        object.__setattr__(self, "bounds", check_bounds_form(self.bounds))

    def bounds_for(self, column: str | None) -> tuple[float | None, float | None]:
        """The declared bounds of ``column`` (``(None, None)`` when none are declared for it)."""
        if self.bounds is None:
            return None, None
        if isinstance(self.bounds, Mapping):
            if column is None:
                return None, None
            return self.bounds.get(column, (None, None))
        return self.bounds

    def __hash__(self) -> int:
        b = tuple(sorted(self.bounds.items())) if isinstance(self.bounds, Mapping) else self.bounds
        return hash((self.epsilon, self.delta, self.mechanism, self.noise, b))


def resolve_privacy(
    privacy: Privacy | None = None,
    *,
    epsilon: float | None = None,
    delta: float | None = None,
    bounds: Any = None,
    mechanism: str | None = None,
    noise: str | None = None,
) -> Privacy | None:
    """The :class:`Privacy` of a call: ``privacy=`` itself, or one built from the keywords.

    Returns ``None`` for an exact (not differentially private) release.  The
    form of ``bounds`` is checked even then, so a malformed value never passes
    silently.

    Raises
    ------
    ConfigurationError
        ``privacy=`` together with any of the keywords, or invalid settings.
    """
    keywords = {"epsilon": epsilon, "delta": delta, "bounds": bounds, "mechanism": mechanism, "noise": noise}
    given = [k for k, v in keywords.items() if v is not None]
    if privacy is not None:
        if not isinstance(privacy, Privacy):
            raise ConfigurationError(f"privacy must be a fedbench.Privacy, got {type(privacy).__name__}")
        if given:
            raise ConfigurationError(
                f"pass either privacy=Privacy(...) or the keywords, not both (got privacy= and {', '.join(given)})"
            )
        return privacy
    checked = check_bounds_form(bounds)
    if epsilon is None:  # an exact release; the other keywords only matter with epsilon (as before)
        return None
    return Privacy(epsilon=epsilon, delta=delta, mechanism=mechanism or "laplace", noise=noise or "distributed",
                   bounds=checked)
