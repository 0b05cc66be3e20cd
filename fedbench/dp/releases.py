"""Differentially private releases on top of secure aggregation.

Every release here is a secure sum of a vector whose per-record sensitivity is
known from declared bounds, plus integer noise on the encoding's fixed-point
grid, drawn with OpenDP's exact discrete samplers (see
:mod:`fedbench.dp.mechanisms`).  By default the noise is **distributed**: each
of the k parties adds its own share to its integer-encoded local aggregate
*before encrypting it*, so the decrypted sum already carries the noise and
nobody, the key holder included, ever sees the un-noised aggregate.  Shares
are sized against the parties themselves, who know their own share: a full
discrete Laplace share per party (epsilon holds against any coalition of up
to k - 1 parties) or a discrete Gaussian share of variance sigma^2/(k-1)
(epsilon holds against any single party).  With ``noise="central"`` the key
holder adds the noise to the decrypted integer aggregate before sending it to
the analyst: the key holder sees the exact aggregate, so epsilon holds against
the analyst and the parties but not the key holder.  Every result records
which adversary its epsilon is against (:meth:`NoisePlan.record`).

A release's vector is charged as one mechanism: Laplace with the vector's L1
sensitivity, or Gaussian with its L2 sensitivity.  When its entries have very
different sensitivities (a mean is the pair (clamped centred sum, count), whose
entries move by at most ``(upper - lower) / 2`` and 1 when one record is added
or removed) each entry is divided by its own sensitivity first, so that the
noise on each entry is proportional to what one record can change in it; for
Laplace this equals splitting epsilon evenly between the entries.  In grid
units each entry's sensitivity is raised by two grid units (rounding of the
local aggregate, and the correctly rounded ``math.fsum`` of local sums).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError
from ..stats import column_values
from ._checks import check_delta, check_epsilon, check_positive
from .accounting import AccountingEvent, GaussianEvent, PureDPEvent
from .mechanisms import (
    MAX_KLS_TAU,
    check_grid_scale,
    discrete_gaussian,
    discrete_laplace,
    gaussian_epsilon,
    gaussian_sigma,
    kls_tau,
)

__all__ = [
    "MECHANISMS",
    "NOISE_PLACEMENTS",
    "GridNoise",
    "NoisePlan",
    "local_clamped_sum",
    "local_dp_histogram",
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

    def grid_scales(self, names: Sequence[str], shapes: Sequence[tuple[int, ...]], frac_bits: int) -> np.ndarray:
        """Scale of the *total* noise of every scalar of the vector, in grid units of ``2**-frac_bits``.

        Each entry's sensitivity in grid units is its real sensitivity times
        ``2**frac_bits`` plus two grid units per scalar (rounding the local
        aggregate to the grid, and the floating-point rounding of the local
        sum); the noise of each entry grows in proportion, which keeps the
        accounted epsilon exact on the integers.
        """
        unit = math.ldexp(1.0, frac_bits)
        sizes = [math.prod(s) for s in shapes]
        if self.weights:
            w = dict(self.weights)
            unknown = [n for n in names if n not in w]
            if unknown:
                raise ConfigurationError(f"no declared sensitivity for the entries {unknown}")
            per = [self.scale * (w[n] * unit + 2.0 * k) for n, k in zip(names, sizes, strict=True)]
        else:
            slack = 2.0 * sum(sizes)  # L1 (and a fortiori L2) of two grid units per scalar
            per = [self.scale * (self.sensitivity * unit + slack) / self.sensitivity] * len(names)
        return np.repeat(np.asarray(per, dtype=np.float64), sizes)

    def share_factor(self, n_parties: int) -> float:
        """Scale of one party's share relative to the total noise: 1 (Laplace) or ``1/sqrt(k - 1)`` (Gaussian)."""
        if self.mechanism == "laplace":
            return 1.0
        return 1.0 / math.sqrt(max(1, n_parties - 1))

    def check_grid(self, frac_bits: int, n_parties: int) -> None:
        """Refuse, before any data is read, a plan whose noise does not fit 64-bit integer noise.

        Raises
        ------
        ConfigurationError
            The scale in grid units is too large, or (distributed Gaussian) the
            Kairouz-Liu-Steinke tau of the shares is not negligible.
        """
        unit = math.ldexp(1.0, frac_bits)
        big = max([self.scale * w for _, w in self.weights] or [self.scale])
        check_grid_scale(big * unit, f"{self.mechanism} noise scale at frac_bits={frac_bits}")
        if self.mechanism == "gaussian" and self.noise == "distributed" and n_parties > 2:
            small = min([self.scale * w for _, w in self.weights] or [self.scale]) * unit
            tau = kls_tau(small * self.share_factor(n_parties), n_parties - 1)
            if tau > MAX_KLS_TAU:
                raise ConfigurationError(
                    f"discrete Gaussian shares of {small * self.share_factor(n_parties):.3g} grid units are too "
                    f"coarse (Kairouz-Liu-Steinke tau {tau:.2g} > {MAX_KLS_TAU:g}); use more frac_bits"
                )

    def record(self, n_parties: int, frac_bits: int) -> dict[str, Any]:
        """The privacy record of a result: parameters plus the adversary the epsilon holds against.

        ``epsilon`` (and ``delta``) hold against ``adversary``: for distributed
        Gaussian noise any single party, for distributed Laplace any coalition
        of up to ``n_parties - 1`` parties, for central noise the analyst and
        the parties but not the key holder.  For distributed noise,
        ``epsilon_outsider`` is the guarantee against someone who knows no
        share, for information (the ledger charges ``epsilon``).
        """
        out = self.as_dict()
        out["frac_bits"] = int(frac_bits)
        out["n_parties"] = int(n_parties)
        out["sampler"] = (f"OpenDP exact discrete {self.mechanism} (OpenSSL CSPRNG), integer noise on the "
                          f"2^-{frac_bits} grid")
        if self.noise == "central":
            out["adversary"] = "analyst and parties; not the key holder (it decrypts the exact aggregate)"
            return out
        if self.mechanism == "laplace":
            out["adversary"] = (f"any coalition of up to {n_parties - 1} of the {n_parties} parties "
                                "(each party adds a full noise share)")
            out["share_scale"] = self.scale
            out["epsilon_outsider"] = self.epsilon  # pure DP: k full shares give no better worst-case bound
            return out
        out["adversary"] = "any single party (knows only its own noise share)"
        out["share_scale"] = self.scale * self.share_factor(n_parties)
        k = max(2, n_parties)
        out["epsilon_outsider"] = gaussian_epsilon(self.scale * math.sqrt(k / (k - 1)), self.sensitivity, self.delta)
        unit = math.ldexp(1.0, frac_bits)
        small = min([self.scale * w for _, w in self.weights] or [self.scale]) * unit
        out["kls_tau"] = kls_tau(small * self.share_factor(n_parties), max(1, n_parties - 1))
        return out

    def sampler(self, n_parties: int, *, share: bool) -> GridNoise:
        """The integer noise one party adds (``share=True``) or the key holder adds (``share=False``)."""
        return GridNoise(self, n_parties, share)


@dataclass(frozen=True)
class GridNoise:
    """Integer noise in grid units for one secure sum, drawn where it is added (picklable).

    Called as ``noise(names, shapes, frac_bits)`` inside a party (a share) or by
    the key holder (central noise) once the vector's public layout is known.
    """

    plan: NoisePlan
    n_parties: int
    share: bool

    def __call__(self, names: Sequence[str], shapes: Sequence[tuple[int, ...]], frac_bits: int) -> np.ndarray:
        """Draw the integer noise of a vector with these entry names and shapes (public layout)."""
        scales = self.plan.grid_scales(names, shapes, frac_bits)
        if self.share:
            scales = scales * self.plan.share_factor(self.n_parties)
        sampler = discrete_laplace if self.plan.mechanism == "laplace" else discrete_gaussian
        out = np.zeros(scales.size, dtype=np.int64)
        for t in np.unique(scales):  # one vectorised OpenDP call per distinct scale
            where = np.flatnonzero(scales == t)
            out[where] = sampler(float(t), where.size)
        return out


def local_clamped_sum(
    df: pl.DataFrame, *, column: str | None, lower: float, upper: float, centre: float, nulls: str
) -> dict[str, float]:
    """Sum of ``clip(x, lower, upper) - centre`` and the count of non-null values (or of rows)."""
    if column is None:
        return {"sum": 0.0, "count": float(df.height)}
    v, _ = column_values(df, column, nulls)
    # fsum is correctly rounded: one record moves the result by its value, up to one rounding (accounted).
    return {"sum": math.fsum(np.clip(v, lower, upper) - centre), "count": float(v.size)}


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
