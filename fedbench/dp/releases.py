"""Differentially private releases on top of secure aggregation.

Every release here is a secure sum of a vector whose per-record sensitivity is
known from declared bounds, plus noise calibrated to it.  By default the noise
is **distributed**: each of the k parties adds its own share (Laplace shares are
differences of Gamma(1/k) variables, Gaussian shares have variance sigma^2/k)
to its local aggregate *before encrypting it*, so the decrypted sum already
carries the full noise and nobody, the key holder included, ever sees the
un-noised aggregate.  With ``noise="central"`` the key holder adds the noise
after decryption instead (it then sees the exact aggregate).

A release's vector is charged as one mechanism: Laplace with the vector's L1
sensitivity, or Gaussian with its L2 sensitivity.  When its entries have very
different sensitivities (a mean is the pair (clamped centred sum, count), whose
entries move by at most ``(upper - lower) / 2`` and 1 when one record is added
or removed) each entry is divided by its own sensitivity first, so that the
noise on each entry is proportional to what one record can change in it; for
Laplace this equals splitting epsilon evenly between the entries.

Floating point: noise is drawn as IEEE doubles from a CSPRNG-seeded generator;
the textbook mechanisms are not exactly private on floats (Mironov, CCS 2012),
see :mod:`fedbench.dp.mechanisms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError
from ..stats import column_values
from ._checks import check_delta, check_epsilon, check_positive
from .accounting import AccountingEvent, GaussianEvent, PureDPEvent
from .mechanisms import gaussian_noise, gaussian_share, gaussian_sigma, laplace_noise, laplace_share

__all__ = [
    "MECHANISMS",
    "NOISE_PLACEMENTS",
    "NoisePlan",
    "local_clamped_sum",
    "local_dp_histogram",
    "with_noise_share",
]

MECHANISMS = ("laplace", "gaussian")
NOISE_PLACEMENTS = ("distributed", "central")


@dataclass(frozen=True)
class NoisePlan:
    """The public parameters of one DP release.

    Attributes
    ----------
    mechanism : {"laplace", "gaussian"}
    epsilon, delta : float
        The release's guarantee (delta 0 for Laplace).
    scale : float
        Laplace scale b, or Gaussian standard deviation sigma, of the total noise.
    noise : {"distributed", "central"}
    sensitivity : float
        L1 (Laplace) or L2 (Gaussian) sensitivity of the released vector.
    """

    mechanism: str
    epsilon: float
    delta: float
    scale: float
    noise: str
    sensitivity: float
    weights: tuple[tuple[str, float], ...] = ()

    def scale_for(self, key: str) -> float:
        """Noise scale of one entry: the normalised scale times the entry's sensitivity."""
        return self.scale * dict(self.weights)[key] if self.weights else self.scale

    @classmethod
    def make(
        cls,
        *,
        epsilon: float,
        delta: float | None,
        mechanism: str,
        noise: str,
        l1: float = 1.0,
        l2: float = 1.0,
        weights: Mapping[str, float] | None = None,
    ) -> NoisePlan:
        """Calibrate a release; raises :class:`ConfigurationError` on bad parameters.

        With ``weights`` (entry name to that entry's sensitivity), entries are
        normalised to sensitivity 1 each, so ``l1``/``l2`` become the number of
        entries and its square root.
        """
        w: tuple[tuple[str, float], ...] = ()
        if weights:
            w = tuple((k, check_positive(v, f"sensitivity of {k!r}")) for k, v in weights.items())
            l1, l2 = float(len(w)), math.sqrt(len(w))
        epsilon = check_epsilon(epsilon)
        if mechanism not in MECHANISMS:
            raise ConfigurationError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
        if noise not in NOISE_PLACEMENTS:
            raise ConfigurationError(f"noise must be one of {NOISE_PLACEMENTS}, got {noise!r}")
        if mechanism == "laplace":
            if delta not in (None, 0, 0.0):
                raise ConfigurationError("the Laplace mechanism is pure epsilon-DP: drop delta or use 'gaussian'")
            sens = check_positive(l1, "sensitivity")
            return cls("laplace", epsilon, 0.0, sens / epsilon, noise, sens, w)
        if delta is None:
            raise ConfigurationError("the Gaussian mechanism needs delta=..., e.g. delta=1e-6")
        delta = check_delta(delta)
        sens = check_positive(l2, "sensitivity")
        return cls("gaussian", epsilon, delta, gaussian_sigma(sens, epsilon, delta), noise, sens, w)

    @property
    def event(self) -> AccountingEvent:
        """The accounting event charged to every touched party."""
        if self.mechanism == "laplace":
            return PureDPEvent(self.epsilon)
        return GaussianEvent.from_sigma(self.scale, self.sensitivity)  # in normalised units when weighted

    def as_dict(self) -> dict[str, Any]:
        """Plain parameters, for the ledger and result cards."""
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "scale": self.scale,
            "noise": self.noise,
            "sensitivity": self.sensitivity,
            **({"entry_sensitivity": dict(self.weights)} if self.weights else {}),
        }

    def central_noise(self, value: Mapping[str, float | np.ndarray]) -> dict[str, float | np.ndarray]:
        """Add the full noise to a decrypted aggregate (key holder side)."""
        out: dict[str, float | np.ndarray] = {}
        for k, v in value.items():
            shape = np.shape(v)
            if self.mechanism == "laplace":
                noise = laplace_noise(self.scale_for(k), shape or None)
            else:
                noise = gaussian_noise(self.scale_for(k), shape or None)
            out[k] = float(v + noise) if shape == () else np.asarray(v) + noise
        return out


def with_noise_share(
    df: pl.DataFrame,
    *,
    local_fn: Callable[[pl.DataFrame], Mapping[str, Any]],
    plan: NoisePlan,
    n_parties: int,
) -> dict[str, Any]:
    """Run ``local_fn`` inside a party and add this party's share of the noise to every entry."""
    out: dict[str, Any] = {}
    for k, v in local_fn(df).items():
        arr = np.asarray(v, dtype=np.float64)
        size = arr.shape or None
        if plan.mechanism == "laplace":
            share = laplace_share(plan.scale_for(k), n_parties, size)
        else:
            share = gaussian_share(plan.scale_for(k), n_parties, size)
        out[k] = float(arr + share) if arr.shape == () else arr + share
    return out


def local_clamped_sum(
    df: pl.DataFrame, *, column: str | None, lower: float, upper: float, centre: float, nulls: str
) -> dict[str, float]:
    """Sum of ``clip(x, lower, upper) - centre`` and the count of non-null values (or of rows)."""
    if column is None:
        return {"sum": 0.0, "count": float(df.height)}
    v, _ = column_values(df, column, nulls)
    return {"sum": float(np.sum(np.clip(v, lower, upper) - centre)), "count": float(v.size)}


def local_dp_histogram(df: pl.DataFrame, *, column: str, edges: np.ndarray, nulls: str) -> dict[str, np.ndarray]:
    """Counts per bin, then below, above and null counts: each record lands in exactly one cell."""
    v, n_null = column_values(df, column, nulls)
    counts, _ = np.histogram(v, bins=edges)
    extra = [np.sum(v < edges[0]), np.sum(v > edges[-1]), n_null]
    return {"counts": np.concatenate([counts, extra]).astype(np.float64)}


def quantiles_from_noisy_histogram(counts: np.ndarray, edges: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of a noisy histogram by linear interpolation of its clipped, monotone CDF.

    Post-processing only: negative noisy counts are clipped to zero first.
    """
    c = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    total = c.sum()
    if total <= 0:
        return [float((edges[0] + edges[-1]) / 2) for _ in qs]
    cdf = np.concatenate([[0.0], np.cumsum(c)]) / total
    return [float(np.interp(q, cdf, edges)) for q in qs]


def check_quantiles(q: float | Sequence[float]) -> list[float]:
    """Validate quantile levels in [0, 1]."""
    qs = [q] if isinstance(q, int | float) else list(q)
    if not qs or any(isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= 1 for x in qs):
        raise ConfigurationError(f"quantile levels must be numbers in [0, 1], got {q!r}")
    return [float(x) for x in qs]


def mean_weights(lower: float, upper: float) -> dict[str, float]:
    """Per-entry sensitivities of (centred clamped sum, count) under add/remove-one."""
    return {"sum": max((upper - lower) / 2.0, 1e-12), "count": 1.0}
