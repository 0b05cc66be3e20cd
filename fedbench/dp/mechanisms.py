"""Noise mechanisms: discrete Laplace and Gaussian on the fixed-point grid, quantiles, DP-FedAvg noise.

Sensitivities assume add/remove-one neighbours (one record, or one party's
whole contribution, is added or removed) and values clamped to declared
bounds; the helpers refuse to guess bounds from the data, which would leak.

Exact discrete noise on the encoding grid
-----------------------------------------
Secure aggregation carries every value as an integer on the public
fixed-point grid ``2**-frac_bits`` (:class:`fedbench.crypto.packing.Encoding`).
Noise is therefore *integer* noise in grid units, drawn with OpenDP's exact
samplers (``opendp.measurements.make_laplace`` / ``make_gaussian`` over an
``i64`` vector domain): the discrete Laplace ``P(k) ∝ exp(-|k|/t)`` and the
discrete Gaussian ``P(k) ∝ exp(-k**2 / (2 s**2))`` of Canonne, Kamath and
Steinke (NeurIPS 2020).  OpenDP draws every random bit from OpenSSL's
``RAND_bytes`` (``fill_bytes`` in ``src/traits/samplers/mod.rs``, built with
the ``use-openssl`` feature in the PyPI wheel), a CSPRNG, and its samplers use
exact integer/rational arithmetic.  A real scale ``b`` becomes
``t = b * 2**frac_bits`` grid units; scales above :data:`MAX_GRID_SCALE` are
refused with :class:`~fedbench.errors.ConfigurationError` (the samples are
64-bit integers).

Inside a secure sum (:mod:`fedbench.secagg`) the integer noise is added to the
integer-encoded values (distributed noise, inside each party) or to the
decrypted integer aggregate (central noise, by the key holder), so the
released value is a deterministic function of *exact fixed-point aggregate +
integer noise*.  Mironov's attack (CCS 2012) exploits the irregular set of
doubles a floating-point sampler can output; it does not apply to integer
noise added to integers.  Rounding a party's local aggregate to the grid can
move it by one more grid unit than the real sensitivity, and the floating-point
evaluation of a local sum (``math.fsum``, correctly rounded) by one more while
the local sum is below ``2**53`` grid units (``2**29``, about 5.4e8, at 24
fractional bits): the calibration accounts two extra grid units per entry
(:meth:`fedbench.dp.releases.NoisePlan.grid_scales`).  Above that magnitude the
float rounding of a local sum (half an ulp) can exceed the two grid units; the
effect on epsilon is a relative ``ulp / sensitivity`` (about 1e-6 for a local
sum of 1e12 and a sensitivity of 100) and is not accounted.

The stand-alone helpers (:func:`laplace_noise`, :func:`gaussian_noise`,
:func:`laplace_mechanism`, shares, :func:`update_noise_share`) return floats
that are exact multiples of ``2**-frac_bits``; the mechanisms round the value
to the grid before adding, which is exact while ``|value| * 2**frac_bits <
2**53``, and account the extra grid unit of rounding.

Distributed noise and who the guarantee holds against
-----------------------------------------------------
When each of ``k`` parties adds a share of the noise, each party knows its own
share, so calibrating the *sum* of the shares protects only against outsiders.
fedbench sizes the shares so that the shares a party does **not** know already
carry the full noise:

* Laplace (pure DP): every party adds a *full* discrete Laplace(t) share.  Any
  one unknown share gives epsilon-DP, so the guarantee holds against any
  coalition of up to ``k - 1`` parties.  The cost is utility: the released
  value carries ``k`` times the variance of central noise; with many parties
  prefer ``mechanism="gaussian"``.
* Gaussian: every party adds a discrete Gaussian share of variance
  ``sigma**2 / (k - 1)`` (``k >= 2``), so the ``k - 1`` shares a party does not
  know sum to variance ``sigma**2``: the guarantee holds against any single
  party (not against coalitions).  A sum of discrete Gaussians is not exactly a
  discrete Gaussian; Kairouz, Liu and Steinke (ICML 2021, "The Distributed
  Discrete Gaussian Mechanism") bound the gap by
  ``tau = 10 * sum_{j=1}^{m-1} exp(-2 pi**2 s**2 j / (j + 1))`` for ``m`` shares
  of grid standard deviation ``s``; :func:`kls_tau` computes it, and
  releases refuse parameters with ``tau > 1e-12`` (at ``s = 3`` grid units it
  is below 1e-37; from ``s`` of about 30 grid units it underflows to 0, which
  any real-world sigma reaches at 24 fractional bits).  The (epsilon, delta)
  accounting uses the continuous Gaussian's privacy profile.  CKS 2020 prove
  the discrete Gaussian has the same concentrated-DP bound
  ``Delta**2 / (2 sigma**2)`` as the continuous one and that their (epsilon,
  delta) curves agree closely once ``sigma`` is more than a few grid units;
  fedbench does not compute the discrete curve exactly.
* Against an outsider who knows no share the Gaussian release is stronger
  (variance ``k sigma**2 / (k - 1)``); result records report that epsilon
  for information only.  The ledger charges the epsilon against a party.

Central noise is added by the key holder after decrypting: the key holder
sees the exact aggregate (a trusted curator), so the guarantee holds against
the analyst and the parties but not against the key holder.

Distributed noise assumes every share is added: the secure-sum engine aborts
rather than release a sum with missing shares.

Randomness
----------
Noise comes from OpenDP (OpenSSL CSPRNG) unless a numpy generator ``rng`` is
passed, a hook for reproducible tests only: with ``rng`` the discrete Laplace
is drawn as a difference of two geometric variables (the exact law) and the
discrete Gaussian is *approximated* by a rounded normal, from a seeded PRNG;
never pass ``rng`` for a real release.  :func:`make_rng` (numpy seeded from
``secrets``) remains for the exponential-mechanism quantile's Gumbel draws.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from functools import lru_cache
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import dp_accounting
import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigurationError, MissingBoundsError, NonFiniteValueError
from ._checks import check_count, check_delta, check_epsilon, check_positive

if TYPE_CHECKING:
    from .config import DPConfig

__all__ = [
    "DEFAULT_FRAC_BITS",
    "MAX_GRID_SCALE",
    "add_update_noise",
    "check_bounds",
    "check_grid_scale",
    "clip_to_bounds",
    "clip_update",
    "count_sensitivity",
    "discrete_gaussian",
    "discrete_laplace",
    "dp_mean",
    "exponential_quantile",
    "gaussian_epsilon",
    "gaussian_mechanism",
    "gaussian_noise",
    "gaussian_share",
    "gaussian_share_std",
    "gaussian_shares",
    "gaussian_sigma",
    "histogram_counts",
    "histogram_sensitivity",
    "kls_tau",
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
    "to_grid",
    "update_noise_share",
]

Size = int | tuple[int, ...] | None
Update = TypeVar("Update", np.ndarray, list[np.ndarray])

#: Fractional bits of the federation's default encoding: the grid of the stand-alone helpers.
DEFAULT_FRAC_BITS = 24
#: Largest noise scale in grid units: 128 scales below the int64 limit, so a sample never saturates.
MAX_GRID_SCALE = 2.0**56
#: Largest Kairouz-Liu-Steinke tau accepted for a sum of discrete Gaussian shares.
MAX_KLS_TAU = 1e-12


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
    shape = (int(size),) if isinstance(size, Integral | int) else tuple(size)
    if any(isinstance(s, bool) or not isinstance(s, Integral) or s < 0 for s in shape):
        raise ConfigurationError(f"size must be a non-negative int or tuple of ints, got {size!r}")
    return tuple(int(s) for s in shape)


def _as_output(x: np.ndarray, size: Size) -> float | np.ndarray:
    return float(x) if size is None else x


# -- exact discrete samplers (OpenDP) ----------------------------------------------------------
def check_grid_scale(scale: float, what: str = "noise scale") -> float:
    """Validate a noise scale in grid units: positive, finite, at most :data:`MAX_GRID_SCALE`.

    Raises
    ------
    ConfigurationError
        With a hint to lower ``frac_bits`` when the scale is too large.
    """
    scale = check_positive(scale, what)
    if not scale <= MAX_GRID_SCALE:
        raise ConfigurationError(
            f"{what} of {scale:.4g} grid units exceeds 2**56, the largest that 64-bit integer noise "
            "carries safely; use fewer fractional bits (frac_bits=...) or a larger epsilon"
        )
    return scale


@lru_cache(maxsize=256)
def _opendp_measurement(kind: str, scale: float) -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")  # the integer samplers are "contrib" in OpenDP 0.16
    if kind == "laplace":
        space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
        return dp.m.make_laplace(*space, scale=scale)
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
    return dp.m.make_gaussian(*space, scale=scale)


def _opendp_sample(kind: str, scale: float, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(_opendp_measurement(kind, float(scale))([0] * count), dtype=np.int64)


def discrete_laplace(scale: float, size: Size = None, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Integers from the discrete Laplace law ``P(k) ∝ exp(-|k| / scale)`` (OpenDP, CSPRNG).

    Parameters
    ----------
    scale : float
        Scale in grid units (at most :data:`MAX_GRID_SCALE`).
    size : int or tuple of int, optional
        Output shape (``None``: a 0-d array).
    rng : numpy.random.Generator, optional
        Tests only: draw from this seeded PRNG instead (difference of two geometric variables).

    Returns
    -------
    numpy.ndarray of int64
    """
    scale = check_grid_scale(scale)
    shape = _size(size) or ()
    count = math.prod(shape)
    if rng is not None:
        p = -math.expm1(-1.0 / scale)
        flat = rng.geometric(p, count).astype(np.int64) - rng.geometric(p, count).astype(np.int64)
    else:
        flat = _opendp_sample("laplace", scale, count)
    return flat.reshape(shape)


def discrete_gaussian(sigma: float, size: Size = None, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Integers from the discrete Gaussian ``P(k) ∝ exp(-k**2 / (2 sigma**2))`` (OpenDP, CSPRNG).

    Parameters
    ----------
    sigma : float
        Scale in grid units (at most :data:`MAX_GRID_SCALE`).
    size : int or tuple of int, optional
        Output shape (``None``: a 0-d array).
    rng : numpy.random.Generator, optional
        Tests only: a rounded normal from this seeded PRNG (an approximation).

    Returns
    -------
    numpy.ndarray of int64
    """
    sigma = check_grid_scale(sigma, "noise standard deviation")
    shape = _size(size) or ()
    count = math.prod(shape)
    if rng is not None:
        flat = np.rint(rng.normal(0.0, sigma, count)).astype(np.int64)
    else:
        flat = _opendp_sample("gaussian", sigma, count)
    return flat.reshape(shape)


def kls_tau(share_sigma: float, n_shares: int) -> float:
    """Kairouz-Liu-Steinke (ICML 2021) gap between a sum of discrete Gaussians and one discrete Gaussian.

    ``tau = 10 * sum_{j=1}^{m-1} exp(-2 pi**2 s**2 j / (j + 1))`` for ``m = n_shares``
    independent shares of grid standard deviation ``s = share_sigma``.
    """
    s2 = check_positive(share_sigma, "share_sigma") ** 2
    m = check_count(n_shares, "n_shares")
    return 10.0 * math.fsum(math.exp(-2.0 * math.pi**2 * s2 * j / (j + 1)) for j in range(1, m))


def _grid(frac_bits: int) -> float:
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, Integral) or not 0 <= frac_bits <= 128:
        raise ConfigurationError(f"frac_bits must be an integer in [0, 128], got {frac_bits!r}")
    return math.ldexp(1.0, int(frac_bits))


def to_grid(x: ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Round values to the nearest multiple of ``2**-frac_bits`` (exact for ``|x| * 2**frac_bits < 2**53``)."""
    _grid(frac_bits)
    return np.ldexp(np.rint(np.ldexp(np.asarray(x, dtype=float), int(frac_bits))), -int(frac_bits))


def _grid_noise(kind: str, scale: float, size: Size, frac_bits: int,
                rng: np.random.Generator | None) -> float | np.ndarray:
    unit = _grid(frac_bits)
    sampler = discrete_laplace if kind == "laplace" else discrete_gaussian
    k = sampler(scale * unit, size, rng=rng)
    return _as_output(np.ldexp(k.astype(np.float64), -int(frac_bits)), size)


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


# -- noise on the grid -------------------------------------------------------------------------
def laplace_noise(
    scale: float,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """Discrete Laplace noise of real scale ``scale`` on the grid ``2**-frac_bits`` (OpenDP, CSPRNG).

    Returns exact multiples of ``2**-frac_bits``: ``k * 2**-frac_bits`` with ``k``
    discrete-Laplace of scale ``scale * 2**frac_bits``.
    """
    return _grid_noise("laplace", check_positive(scale, "scale"), size, frac_bits, rng)


def gaussian_noise(
    sigma: float,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """Discrete Gaussian noise of real scale ``sigma`` on the grid ``2**-frac_bits`` (OpenDP, CSPRNG)."""
    return _grid_noise("gaussian", check_positive(sigma, "sigma"), size, frac_bits, rng)


def laplace_mechanism(
    value: float | ArrayLike,
    *,
    sensitivity: float,
    epsilon: float,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """Release ``value`` rounded to the grid plus discrete Laplace noise: epsilon-DP for an L1 ``sensitivity``.

    Rounding to the grid can move a neighbouring value by one more grid unit
    per entry, so the scale is ``(sensitivity + d * 2**-frac_bits) / epsilon``
    for ``d`` entries.  Charge the ledger *before* calling this.
    """
    arr = np.asarray(value, dtype=float)
    unit = _grid(frac_bits)
    scale = laplace_scale(sensitivity + max(1, arr.size) / unit, epsilon)
    if arr.ndim == 0:
        return float(to_grid(arr, frac_bits)) + float(laplace_noise(scale, rng=rng, frac_bits=frac_bits))
    return to_grid(arr, frac_bits) + laplace_noise(scale, arr.shape, rng=rng, frac_bits=frac_bits)


def gaussian_mechanism(
    value: float | ArrayLike,
    *,
    sensitivity: float,
    sigma: float,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """Release ``value`` rounded to the grid plus discrete Gaussian noise.

    Its guarantee is ``GaussianEvent.from_sigma(sigma, sensitivity)``: the
    standard deviation is raised by the factor ``1 + sqrt(d) 2**-frac_bits /
    sensitivity`` to cover the grid rounding of ``d`` entries.  Charge the
    ledger *before* calling this.
    """
    sensitivity = check_positive(sensitivity, "sensitivity")
    arr = np.asarray(value, dtype=float)
    unit = _grid(frac_bits)
    sigma = check_positive(sigma, "sigma") * (1.0 + math.sqrt(max(1, arr.size)) / unit / sensitivity)
    if arr.ndim == 0:
        return float(to_grid(arr, frac_bits)) + float(gaussian_noise(sigma, rng=rng, frac_bits=frac_bits))
    return to_grid(arr, frac_bits) + gaussian_noise(sigma, arr.shape, rng=rng, frac_bits=frac_bits)


# -- distributed noise -------------------------------------------------------------------------
def laplace_share(
    scale: float,
    n_parties: int,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """One party's Laplace noise share when ``n_parties`` add noise: a *full* discrete Laplace(``scale``).

    Every party adds the full noise, so the one share a coalition of up to
    ``n_parties - 1`` parties does not know already makes the release
    epsilon-DP against it; the sum carries ``n_parties`` times the variance.
    """
    check_count(n_parties, "n_parties")
    return laplace_noise(scale, size, rng=rng, frac_bits=frac_bits)


def laplace_shares(
    scale: float,
    n_parties: int,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> np.ndarray:
    """All ``n_parties`` Laplace shares at once, stacked on axis 0 (for simulation)."""
    shape = _size(size) or ()
    return np.asarray(laplace_share(scale, n_parties, (n_parties, *shape), rng=rng, frac_bits=frac_bits))


def gaussian_share_std(sigma: float, n_parties: int) -> float:
    """Standard deviation of one Gaussian share: ``sigma / sqrt(n_parties - 1)`` (``sigma`` for one party).

    The ``n_parties - 1`` shares any one party does not know sum to variance
    ``sigma**2``.  With a single party there is nobody else's share to
    subtract, and the adversaries (everyone else) know no share: its share is
    the full ``sigma``.
    """
    k = check_count(n_parties, "n_parties")
    return check_positive(sigma, "sigma") / math.sqrt(max(1, k - 1))


def gaussian_share(
    sigma: float,
    n_parties: int,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> float | np.ndarray:
    """One party's discrete Gaussian share of variance ``sigma**2 / (n_parties - 1)`` (:func:`gaussian_share_std`)."""
    return gaussian_noise(gaussian_share_std(sigma, n_parties), size, rng=rng, frac_bits=frac_bits)


def gaussian_shares(
    sigma: float,
    n_parties: int,
    size: Size = None,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> np.ndarray:
    """All ``n_parties`` Gaussian shares at once, stacked on axis 0 (for simulation)."""
    shape = _size(size) or ()
    return np.asarray(gaussian_share(sigma, n_parties, (n_parties, *shape), rng=rng, frac_bits=frac_bits))


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


def add_update_noise(
    aggregate: Update,
    config: DPConfig,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Update:
    """Add discrete Gaussian noise of real scale ``noise_multiplier * clip`` to a sum of clipped updates.

    Central variant (after decryption): the sum is rounded to the grid
    ``2**-frac_bits`` first, and the noise is a grid multiple.  Dividing the
    noisy sum by the *expected* number of participants is post-processing.
    """
    noisy = [to_grid(a, frac_bits) + gaussian_noise(config.noise_std, np.shape(a), rng=rng, frac_bits=frac_bits)
             for a in _arrays(aggregate)]
    return noisy[0] if isinstance(aggregate, np.ndarray) else noisy


def update_noise_share(
    like: Update,
    config: DPConfig,
    n_parties: int,
    *,
    rng: np.random.Generator | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Update:
    """One party's discrete Gaussian noise share, shaped like ``like``, for distributed DP-FedAvg.

    Each of ``n_parties`` adds noise of variance ``noise_std**2 / (n_parties - 1)``
    (:meth:`DPConfig.share_std`), so the shares any one party does not know
    sum to the full ``noise_std**2``: the accounted epsilon holds against every
    party that receives the model.  The values are exact multiples of
    ``2**-frac_bits`` (the secure sum's grid; the federation's default is 24
    bits).  Add them to an update already rounded to that grid
    (:func:`to_grid`): the float sum is then exact (below ``2**53`` grid
    units) and encodes to the integer update plus the integer noise.
    """
    std = config.share_std(n_parties)
    shares = [np.asarray(gaussian_noise(std, np.shape(a), rng=rng, frac_bits=frac_bits)) for a in _arrays(like)]
    return shares[0] if isinstance(like, np.ndarray) else shares
