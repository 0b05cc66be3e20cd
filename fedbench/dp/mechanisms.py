"""Noise mechanisms: Laplace, Gaussian, exponential-mechanism quantiles, DP-FedAvg noise.

Sensitivities assume add/remove-one neighbours (one record, or one party's
whole contribution, is added or removed) and values clamped to declared
bounds; the helpers refuse to guess bounds from the data, which would leak.

Noise can be added *centrally* (by the key holder, after decryption) or
*distributed*: each of ``k`` parties draws a share before encrypting its local
aggregate so that the secure sum carries exactly the full noise and nobody,
the aggregator included, ever sees the noiseless value:

* Gaussian: ``k`` shares N(0, sigma**2 / k) sum to N(0, sigma**2);
* Laplace: the Laplace law is infinitely divisible, Laplace(b) is the sum of
  ``k`` shares ``G1 - G2`` with ``G1, G2 ~ Gamma(1/k, b)`` independent.

Distributed noise assumes every share is added: if a party drops out, or
parties collude and subtract their own shares, the released value carries less
noise than accounted.  The secure-sum engine must abort rather than release a
sum with missing shares.

Randomness
----------
Every function draws from a generator seeded with 128 bits from the operating
system's CSPRNG (:func:`make_rng`, ``secrets.randbits(128)``) unless a
generator is passed explicitly, which is meant for tests only: a seeded
generator makes the noise reproducible and voids the guarantee.

Floating-point caveat
---------------------
The samplers are numpy's floating-point Laplace, Gamma and normal samplers.
Mironov (2012, "On significance of the least significant bits for differential
privacy") showed that textbook floating-point implementations of the Laplace
mechanism leak through the pattern of representable doubles, and the same
concern applies to the Gaussian and Gamma samplers.  The guarantees reported
by fedbench hold for the idealised real-valued mechanisms; hardened
implementations (snapping mechanism, discrete Laplace/Gaussian of Canonne,
Kamath and Steinke 2020) are not used here.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Literal, TypeVar

import dp_accounting
import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigurationError, MissingBoundsError, NonFiniteValueError
from ._checks import check_count, check_delta, check_epsilon, check_positive

if TYPE_CHECKING:
    from .config import DPConfig

__all__ = [
    "add_update_noise",
    "check_bounds",
    "clip_to_bounds",
    "clip_update",
    "count_sensitivity",
    "dp_mean",
    "exponential_quantile",
    "gaussian_epsilon",
    "gaussian_mechanism",
    "gaussian_noise",
    "gaussian_share",
    "gaussian_shares",
    "gaussian_sigma",
    "histogram_counts",
    "histogram_sensitivity",
    "l2_norm",
    "laplace_mechanism",
    "laplace_noise",
    "laplace_scale",
    "laplace_share",
    "laplace_shares",
    "make_rng",
    "mean_sensitivity",
    "quantile_edges",
    "sum_sensitivity",
    "update_noise_share",
]

Size = int | tuple[int, ...] | None
Update = TypeVar("Update", np.ndarray, list[np.ndarray])


def make_rng() -> np.random.Generator:
    """A numpy generator seeded with 128 bits from the OS CSPRNG (``secrets``).

    A fresh seed per call: no generator state is shared between releases.
    """
    return np.random.default_rng(secrets.randbits(128))


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return make_rng() if rng is None else rng


def _size(size: Size) -> tuple[int, ...] | None:
    if size is None:
        return None
    shape = (size,) if isinstance(size, Integral) else tuple(size)
    if any(isinstance(s, bool) or not isinstance(s, Integral) or s < 0 for s in shape):
        raise ConfigurationError(f"size must be a non-negative int or tuple of ints, got {size!r}")
    return tuple(int(s) for s in shape)


def _as_output(x: np.ndarray, size: Size) -> float | np.ndarray:
    return float(x) if size is None else x


# -- bounds and sensitivities ------------------------------------------------------------------
def check_bounds(
    lower: float | None, upper: float | None, *, column: str | None = None, party: str | None = None
) -> tuple[float, float]:
    """Validate declared bounds and return them as floats.

    Parameters
    ----------
    lower, upper : float or None
        Declared range of the column's values (public, not read from the data).
    column, party : str, optional
        Named in the error message.

    Raises
    ------
    MissingBoundsError
        If a bound is missing, not finite, or ``lower > upper``.
    """
    where = f"column {column!r}" if column is not None else "this statistic"
    if party is not None:
        where = f"party {party!r}, {where}"
    if lower is None or upper is None:
        raise MissingBoundsError(
            f"{where}: differential privacy needs declared bounds (lower=..., upper=...); "
            "they are not read from the data because that would leak",
            party=party,
            column=column,
        )
    bad = [b for b in (lower, upper) if isinstance(b, bool) or not isinstance(b, Real) or not math.isfinite(b)]
    if bad:
        raise MissingBoundsError(
            f"{where}: bounds must be finite numbers, got lower={lower!r}, upper={upper!r}",
            party=party,
            column=column,
        )
    if lower > upper:
        raise MissingBoundsError(
            f"{where}: lower bound {lower!r} is above upper bound {upper!r}", party=party, column=column
        )
    return float(lower), float(upper)


def clip_to_bounds(
    values: ArrayLike,
    lower: float | None,
    upper: float | None,
    *,
    column: str | None = None,
    party: str | None = None,
) -> np.ndarray:
    """Clamp values to ``[lower, upper]`` (run inside the party, before aggregation).

    Raises
    ------
    MissingBoundsError
        Invalid bounds.
    NonFiniteValueError
        If a value is NaN (clamping cannot bound it).
    """
    lo, hi = check_bounds(lower, upper, column=column, party=party)
    arr = np.asarray(values, dtype=float)
    if np.isnan(arr).any():
        where = f"party {party!r}, column {column!r}" if party is not None else f"column {column!r}"
        raise NonFiniteValueError(f"{where}: NaN values cannot be clamped to bounds", party=party, column=column)
    return np.clip(arr, lo, hi)


def count_sensitivity() -> float:
    """Sensitivity (L1 and L2) of a count under add/remove-one neighbours: 1."""
    return 1.0


def sum_sensitivity(lower: float | None, upper: float | None, *, column: str | None = None) -> float:
    """Sensitivity (L1 and L2) of a sum of values clamped to ``[lower, upper]``.

    Adding or removing one record changes the sum by its value, at most
    ``max(|lower|, |upper|)``.
    """
    lo, hi = check_bounds(lower, upper, column=column)
    return max(abs(lo), abs(hi))


def mean_sensitivity(lower: float | None, upper: float | None, *, column: str | None = None) -> tuple[float, float]:
    """Sensitivities of the two releases behind a DP mean.

    The mean is released as a noisy *centred* sum ``sum(x - m)`` with
    ``m = (lower + upper) / 2`` and a noisy count, combined by :func:`dp_mean`
    (post-processing).  Centring halves the sum's sensitivity.

    Returns
    -------
    (sum_sensitivity, count_sensitivity) : tuple of float
        ``((upper - lower) / 2, 1.0)``.
    """
    lo, hi = check_bounds(lower, upper, column=column)
    return (hi - lo) / 2.0, 1.0


def histogram_sensitivity(norm: Literal["l1", "l2"] = "l1") -> float:
    """Sensitivity of a histogram of counts (fixed public bins): 1 in L1 and in L2.

    Adding or removing one record changes exactly one bin by one.
    """
    if norm not in ("l1", "l2"):
        raise ConfigurationError(f"norm must be 'l1' or 'l2', got {norm!r}")
    return 1.0


def dp_mean(noisy_centred_sum: float, noisy_count: float, lower: float, upper: float) -> float:
    """Combine a noisy centred sum and a noisy count into a mean (post-processing).

    The count is floored at 1 and the result clamped to ``[lower, upper]``;
    neither step costs privacy.
    """
    lo, hi = check_bounds(lower, upper)
    mid = (lo + hi) / 2.0
    return float(np.clip(mid + noisy_centred_sum / max(noisy_count, 1.0), lo, hi))


# -- calibration -------------------------------------------------------------------------------
def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """Scale ``b = sensitivity / epsilon`` of the epsilon-DP Laplace mechanism (L1 sensitivity)."""
    return check_positive(sensitivity, "sensitivity") / check_epsilon(epsilon)


def gaussian_sigma(
    sensitivity: float,
    epsilon: float,
    delta: float,
    *,
    method: Literal["analytic", "classic"] = "analytic",
) -> float:
    """Noise standard deviation making the Gaussian mechanism (epsilon, delta)-DP.

    Parameters
    ----------
    sensitivity : float
        L2 sensitivity of the released value.
    epsilon, delta : float
        Target guarantee of this one release.
    method : {"analytic", "classic"}
        ``"analytic"``: the exact (smallest) sigma of Balle and Wang (2018), from
        ``dp_accounting.get_sigma_gaussian``.  ``"classic"``: Dwork and Roth's
        ``sqrt(2 ln(1.25/delta)) / epsilon``, valid for epsilon < 1 only.
    """
    sensitivity = check_positive(sensitivity, "sensitivity")
    epsilon = check_epsilon(epsilon)
    delta = check_delta(delta)
    if method == "analytic":
        return sensitivity * float(dp_accounting.get_sigma_gaussian(epsilon, delta))
    if method == "classic":
        if epsilon >= 1:
            raise ConfigurationError(f"the classic Gaussian bound needs epsilon < 1, got {epsilon}")
        return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    raise ConfigurationError(f"method must be 'analytic' or 'classic', got {method!r}")


def gaussian_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """Exact epsilon at ``delta`` of one Gaussian release (``dp_accounting.get_epsilon_gaussian``)."""
    z = check_positive(sigma, "sigma") / check_positive(sensitivity, "sensitivity")
    return float(dp_accounting.get_epsilon_gaussian(z, check_delta(delta)))


# -- central noise -----------------------------------------------------------------------------
def laplace_noise(scale: float, size: Size = None, *, rng: np.random.Generator | None = None) -> float | np.ndarray:
    """Laplace(0, ``scale``) noise from a CSPRNG-seeded generator (see the floating-point caveat)."""
    scale = check_positive(scale, "scale")
    return _as_output(_rng(rng).laplace(0.0, scale, _size(size)), size)


def gaussian_noise(sigma: float, size: Size = None, *, rng: np.random.Generator | None = None) -> float | np.ndarray:
    """N(0, ``sigma**2``) noise from a CSPRNG-seeded generator (see the floating-point caveat)."""
    sigma = check_positive(sigma, "sigma")
    return _as_output(_rng(rng).normal(0.0, sigma, _size(size)), size)


def laplace_mechanism(
    value: float | ArrayLike,
    *,
    sensitivity: float,
    epsilon: float,
    rng: np.random.Generator | None = None,
) -> float | np.ndarray:
    """Release ``value`` plus Laplace noise: epsilon-DP for an L1 ``sensitivity``.

    Charge the ledger *before* calling this.
    """
    scale = laplace_scale(sensitivity, epsilon)
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return float(arr) + float(laplace_noise(scale, rng=rng))
    return arr + laplace_noise(scale, arr.shape, rng=rng)


def gaussian_mechanism(
    value: float | ArrayLike,
    *,
    sensitivity: float,
    sigma: float,
    rng: np.random.Generator | None = None,
) -> float | np.ndarray:
    """Release ``value`` plus N(0, sigma**2) noise; its guarantee is ``GaussianEvent.from_sigma(sigma, sensitivity)``.

    Charge the ledger *before* calling this.
    """
    check_positive(sensitivity, "sensitivity")
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return float(arr) + float(gaussian_noise(sigma, rng=rng))
    return arr + gaussian_noise(sigma, arr.shape, rng=rng)


# -- distributed noise -------------------------------------------------------------------------
def laplace_share(
    scale: float, n_parties: int, size: Size = None, *, rng: np.random.Generator | None = None
) -> float | np.ndarray:
    """One party's share of Laplace(0, ``scale``) noise split among ``n_parties``.

    The share is ``G1 - G2`` with ``G1, G2 ~ Gamma(1/n_parties, scale)``: the sum
    of ``n_parties`` independent shares is exactly Laplace(0, ``scale``).
    """
    scale = check_positive(scale, "scale")
    k = check_count(n_parties, "n_parties")
    gen, shape = _rng(rng), _size(size)
    return _as_output(gen.gamma(1.0 / k, scale, shape) - gen.gamma(1.0 / k, scale, shape), size)


def laplace_shares(
    scale: float, n_parties: int, size: Size = None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """All ``n_parties`` shares of Laplace noise at once, stacked on axis 0 (for simulation)."""
    shape = _size(size) or ()
    return np.asarray(laplace_share(scale, n_parties, (n_parties, *shape), rng=rng))


def gaussian_share(
    sigma: float, n_parties: int, size: Size = None, *, rng: np.random.Generator | None = None
) -> float | np.ndarray:
    """One party's share N(0, sigma**2 / n_parties); ``n_parties`` shares sum to N(0, sigma**2)."""
    sigma = check_positive(sigma, "sigma")
    k = check_count(n_parties, "n_parties")
    return gaussian_noise(sigma / math.sqrt(k), size, rng=rng)


def gaussian_shares(
    sigma: float, n_parties: int, size: Size = None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """All ``n_parties`` Gaussian shares at once, stacked on axis 0 (for simulation)."""
    shape = _size(size) or ()
    return np.asarray(gaussian_share(sigma, n_parties, (n_parties, *shape), rng=rng))


# -- quantiles ---------------------------------------------------------------------------------
def quantile_edges(lower: float | None, upper: float | None, bins: int, *, column: str | None = None) -> np.ndarray:
    """Public grid of ``bins + 1`` equally spaced edges over the declared bounds."""
    lo, hi = check_bounds(lower, upper, column=column)
    if lo == hi:
        raise MissingBoundsError(f"column {column!r}: quantiles need lower < upper, got {lo} == {hi}", column=column)
    return np.linspace(lo, hi, check_count(bins, "bins") + 1)


def histogram_counts(values: ArrayLike, edges: ArrayLike, *, column: str | None = None) -> np.ndarray:
    """Counts of values (clamped to the edges' range) per bin; run inside each party.

    The per-party counts are then summed securely and fed to :func:`exponential_quantile`.
    """
    e = _check_edges(edges)
    clipped = clip_to_bounds(values, float(e[0]), float(e[-1]), column=column)
    counts, _ = np.histogram(clipped, bins=e)
    return counts.astype(np.int64)


def _check_edges(edges: ArrayLike) -> np.ndarray:
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.isfinite(e).all() or not (np.diff(e) > 0).all():
        raise ConfigurationError("edges must be a finite, strictly increasing 1-D array of at least two values")
    return e


def exponential_quantile(
    counts: ArrayLike,
    edges: ArrayLike,
    q: float,
    epsilon: float,
    *,
    rng: np.random.Generator | None = None,
) -> float:
    """Epsilon-DP ``q``-quantile from a histogram, by the exponential mechanism over the grid.

    Candidates are the bin edges ``t_j``; the utility of ``t_j`` is
    ``-|#{x < t_j} - q n|`` where ``#{x < t_j}`` is the count of the bins below
    ``t_j`` and ``n`` the total.  Adding or removing one record moves the
    utility by at most ``max(q, 1 - q) <= 1``, so sampling ``t_j`` with
    probability proportional to ``exp(epsilon * u_j / 2)`` is epsilon-DP.  The
    input is the exact histogram (e.g. a securely aggregated one, decrypted by
    the key holder); it is never released.  Accuracy is limited to the grid.

    Parameters
    ----------
    counts : array of non-negative numbers, length m
        Histogram counts.
    edges : array, length m + 1
        Public bin edges (e.g. :func:`quantile_edges`).
    q : float
        Quantile in [0, 1].
    epsilon : float
        Privacy parameter of this release.
    rng : numpy.random.Generator, optional
        For tests only; by default CSPRNG-seeded.
    """
    e = _check_edges(edges)
    c = np.asarray(counts, dtype=float)
    if c.shape != (e.size - 1,):
        raise ConfigurationError(f"counts must have {e.size - 1} entries (one per bin), got shape {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ConfigurationError("counts must be finite and non-negative")
    if isinstance(q, bool) or not isinstance(q, Real) or not 0.0 <= float(q) <= 1.0:
        raise ConfigurationError(f"q must be a number in [0, 1], got {q!r}")
    epsilon = check_epsilon(epsilon)
    below = np.concatenate([[0.0], np.cumsum(c)])
    utility = -np.abs(below - float(q) * below[-1])
    logits = epsilon * utility / 2.0
    # Gumbel-max trick: argmax(logits + Gumbel) samples from softmax(logits) without overflow.
    gumbel = _rng(rng).gumbel(size=logits.shape)
    return float(e[int(np.argmax(logits + gumbel))])


# -- DP-FedAvg ---------------------------------------------------------------------------------
def _arrays(update: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(update, np.ndarray):
        return [update]
    return [np.asarray(u, dtype=float) for u in update]


def l2_norm(update: np.ndarray | Sequence[np.ndarray]) -> float:
    """Global L2 norm of an update given as one array or a list of arrays (e.g. coef_, intercept_)."""
    return math.sqrt(math.fsum(float(np.sum(np.square(a, dtype=float))) for a in _arrays(update)))


def clip_update(update: Update, clip: float, *, party: str | None = None) -> Update:
    """Scale an update down to L2 norm at most ``clip`` (run inside each party).

    Parameters
    ----------
    update : numpy.ndarray or list of numpy.ndarray
        The party's model update (new minus old parameters); a list is clipped
        by its global norm across arrays.
    clip : float
        Clipping norm (``DPConfig.clip``).
    party : str, optional
        Named in error messages.

    Returns
    -------
    Same structure as ``update``, scaled by ``min(1, clip / norm)``.

    Raises
    ------
    NonFiniteValueError
        If the update holds NaN or infinity.
    """
    clip = check_positive(clip, "clip")
    arrays = _arrays(update)
    if not all(np.isfinite(a).all() for a in arrays):
        who = f"party {party!r}: " if party is not None else ""
        raise NonFiniteValueError(f"{who}model update holds NaN or infinity; cannot clip it", party=party)
    norm = l2_norm(arrays)
    factor = 1.0 if norm <= clip else clip / norm
    scaled = [np.asarray(a, dtype=float) * factor for a in arrays]
    return scaled[0] if isinstance(update, np.ndarray) else scaled


def add_update_noise(aggregate: Update, config: DPConfig, *, rng: np.random.Generator | None = None) -> Update:
    """Add N(0, (noise_multiplier * clip)**2) to every coordinate of a sum of clipped updates.

    Central variant (after decryption).  Dividing the noisy sum by the
    *expected* number of participants is post-processing.
    """
    gen = _rng(rng)
    noisy = [a + gen.normal(0.0, config.noise_std, np.shape(a)) for a in _arrays(aggregate)]
    return noisy[0] if isinstance(aggregate, np.ndarray) else noisy


def update_noise_share(
    like: Update, config: DPConfig, n_parties: int, *, rng: np.random.Generator | None = None
) -> Update:
    """One party's Gaussian noise share, shaped like ``like``, for distributed DP-FedAvg.

    Each of ``n_parties`` (>= 2) adds N(0, noise_std**2 / (n_parties - 1)) to
    its clipped update before encryption, so the shares of any
    ``n_parties - 1`` of them carry the full noise: a party that subtracts its
    own share still faces ``noise_std``.
    """
    if check_count(n_parties, "n_parties") < 2:
        raise ConfigurationError(f"distributed noise needs at least 2 parties, got n_parties={n_parties}")
    gen = _rng(rng)
    std = config.noise_std / math.sqrt(n_parties - 1)
    shares = [gen.normal(0.0, std, np.shape(a)) for a in _arrays(like)]
    return shares[0] if isinstance(like, np.ndarray) else shares
