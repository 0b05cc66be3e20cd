"""Noise mechanisms, distributed noise shares, sensitivities, quantiles and DP-FedAvg helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # always installed: dp-accounting depends on it

from fedbench.dp import (
    DPConfig,
    MissingBoundsError,
    add_update_noise,
    check_bounds,
    clip_to_bounds,
    clip_update,
    count_sensitivity,
    dp_mean,
    exponential_quantile,
    gaussian_mechanism,
    gaussian_noise,
    gaussian_share,
    gaussian_shares,
    histogram_counts,
    histogram_sensitivity,
    l2_norm,
    laplace_mechanism,
    laplace_noise,
    laplace_scale,
    laplace_share,
    laplace_shares,
    make_rng,
    mean_sensitivity,
    quantile_edges,
    sum_sensitivity,
    update_noise_share,
)
from fedbench.errors import ColumnError, ConfigurationError, NonFiniteValueError

# Statistical tests use a fixed seed and a fixed sample size, so they are deterministic;
# the bounds are generous (a correct sampler passes with overwhelming probability for any seed).
N = 40_000


def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


# -- distributed noise -------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 10])
def test_gaussian_shares_sum_to_the_full_gaussian(k: int) -> None:
    sigma = 2.5
    shares = gaussian_shares(sigma, k, N, rng=rng())
    assert shares.shape == (k, N)
    assert np.var(shares[0]) == pytest.approx(sigma**2 / k, rel=0.05)
    total = shares.sum(axis=0)
    assert np.var(total) == pytest.approx(sigma**2, rel=0.05)
    assert stats.kstest(total, stats.norm(scale=sigma).cdf).pvalue > 1e-3


@pytest.mark.parametrize("k", [1, 3, 10])
def test_laplace_shares_sum_to_the_full_laplace(k: int) -> None:
    scale = 1.7
    shares = laplace_shares(scale, k, N, rng=rng())
    assert shares.shape == (k, N)
    # Each share is a difference of Gamma(1/k, b): variance 2 b^2 / k.
    assert np.var(shares[0]) == pytest.approx(2 * scale**2 / k, rel=0.07)
    total = shares.sum(axis=0)
    assert np.var(total) == pytest.approx(2 * scale**2, rel=0.05)
    assert stats.kstest(total, stats.laplace(scale=scale).cdf).pvalue > 1e-3
    if k > 1:  # a single share is not itself Laplace(b): it is more peaked
        assert stats.kstest(shares[0], stats.laplace(scale=scale).cdf).pvalue < 1e-6


def test_single_party_shares_have_the_right_shape() -> None:
    share = laplace_share(1.0, 4, (3, 2), rng=rng())
    assert isinstance(share, np.ndarray) and share.shape == (3, 2)
    assert isinstance(gaussian_share(1.0, 4, rng=rng()), float)
    assert isinstance(laplace_share(1.0, 4), float)
    with pytest.raises(ConfigurationError, match="n_parties"):
        gaussian_share(1.0, 0)
    with pytest.raises(ConfigurationError, match="scale"):
        laplace_share(0.0, 3)


def test_update_noise_shares_sum_to_the_dpfedavg_noise() -> None:
    config = DPConfig(noise_multiplier=1.5, clip=2.0)
    like = [np.zeros((N // 4, 2)), np.zeros(N // 2)]
    gen = rng()
    shares = [update_noise_share(like, config, 5, rng=gen) for _ in range(4)]  # any 4 of 5 give the full noise
    total = np.concatenate([np.sum([s[i] for s in shares], axis=0).ravel() for i in range(2)])
    assert np.std(total) == pytest.approx(config.noise_std, rel=0.05)
    central = add_update_noise(np.zeros(N), config, rng=rng())
    assert np.std(central) == pytest.approx(3.0, rel=0.05)


# -- central noise -----------------------------------------------------------------------------
def test_central_mechanisms() -> None:
    assert laplace_scale(2.0, 0.5) == 4.0
    noisy = laplace_mechanism(np.zeros(N), sensitivity=2.0, epsilon=0.5, rng=rng())
    assert np.mean(np.abs(noisy)) == pytest.approx(4.0, rel=0.05)  # E|Laplace(b)| = b
    assert isinstance(laplace_mechanism(10.0, sensitivity=1.0, epsilon=1.0), float)
    gauss = gaussian_mechanism(np.ones((N, 2)), sensitivity=1.0, sigma=3.0, rng=rng())
    assert gauss.shape == (N, 2) and np.std(gauss) == pytest.approx(3.0, rel=0.05)
    assert np.std(laplace_noise(1.0, N, rng=rng())) == pytest.approx(math.sqrt(2), rel=0.05)
    assert np.std(gaussian_noise(1.0, N, rng=rng())) == pytest.approx(1.0, rel=0.05)


def test_default_randomness_is_fresh() -> None:
    assert isinstance(make_rng(), np.random.Generator)
    draws = {float(gaussian_noise(1.0)) for _ in range(5)}
    assert len(draws) == 5  # unseeded: every call draws a fresh CSPRNG seed


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf, math.nan])
def test_bad_epsilon_in_mechanisms(epsilon: float) -> None:
    with pytest.raises(ConfigurationError, match="epsilon"):
        laplace_mechanism(1.0, sensitivity=1.0, epsilon=epsilon)


# -- sensitivities and bounds ------------------------------------------------------------------
def test_sensitivities() -> None:
    assert count_sensitivity() == 1.0
    assert histogram_sensitivity() == histogram_sensitivity("l2") == 1.0
    assert sum_sensitivity(-3.0, 2.0) == 3.0
    assert sum_sensitivity(0, 120) == 120.0
    assert mean_sensitivity(0.0, 10.0) == (5.0, 1.0)
    assert dp_mean(10.0, 4.0, 0.0, 10.0) == 7.5
    assert dp_mean(1e9, 0.2, 0.0, 10.0) == 10.0  # clamped post-processing


@pytest.mark.parametrize(
    ("lower", "upper", "match"),
    [
        (None, 10.0, "declared bounds"),
        (0.0, None, "declared bounds"),
        (math.nan, 1.0, "finite"),
        (0.0, math.inf, "finite"),
        ("0", 1.0, "finite"),
        (5.0, 1.0, "above upper bound"),
    ],
)
def test_missing_or_invalid_bounds_name_the_column(lower: object, upper: object, match: str) -> None:
    with pytest.raises(MissingBoundsError, match=match) as info:
        sum_sensitivity(lower, upper, column="chol")  # type: ignore[arg-type]
    assert isinstance(info.value, ColumnError) and isinstance(info.value, ValueError)
    assert info.value.column == "chol" and "'chol'" in str(info.value)
    with pytest.raises(MissingBoundsError, match="party 'cleveland', column 'age'") as info:
        check_bounds(lower, upper, column="age", party="cleveland")  # type: ignore[arg-type]
    assert info.value.party == "cleveland"


def test_clip_to_bounds() -> None:
    assert clip_to_bounds([-5, 3, 500], 0, 120).tolist() == [0.0, 3.0, 120.0]
    with pytest.raises(NonFiniteValueError, match="party 'cleveland', column 'chol'") as info:
        clip_to_bounds([1.0, math.nan], 0, 10, column="chol", party="cleveland")
    assert info.value.party == "cleveland" and info.value.column == "chol"
    with pytest.raises(MissingBoundsError):
        clip_to_bounds([1.0], None, 10, column="chol")


# -- quantiles ---------------------------------------------------------------------------------
def test_exponential_quantile_is_accurate_at_high_epsilon() -> None:
    edges = quantile_edges(0, 100, 100)
    values = rng().normal(50, 10, 5000)
    counts = histogram_counts(values, edges, column="age")
    assert counts.sum() == 5000
    gen = rng()
    estimates = [exponential_quantile(counts, edges, 0.5, epsilon=5.0, rng=gen) for _ in range(50)]
    assert abs(np.median(estimates) - np.median(values)) <= 2.0
    q90 = exponential_quantile(counts, edges, 0.9, epsilon=5.0, rng=gen)
    assert abs(q90 - np.quantile(values, 0.9)) <= 3.0
    assert exponential_quantile(counts, edges, 0.0, epsilon=5.0, rng=gen) <= 30.0


def test_exponential_quantile_is_spread_at_tiny_epsilon() -> None:
    edges = quantile_edges(0, 10, 10)
    counts = np.zeros(10)
    counts[5] = 3
    gen = rng()
    draws = {exponential_quantile(counts, edges, 0.5, epsilon=1e-6, rng=gen) for _ in range(500)}
    assert len(draws) == 11  # essentially uniform over the grid: the data barely matter


def test_exponential_quantile_validation() -> None:
    edges = quantile_edges(0, 1, 4)
    with pytest.raises(ConfigurationError, match="counts"):
        exponential_quantile([1, 2], edges, 0.5, 1.0)
    with pytest.raises(ConfigurationError, match="non-negative"):
        exponential_quantile([1, -2, 0, 0], edges, 0.5, 1.0)
    with pytest.raises(ConfigurationError, match="q must"):
        exponential_quantile([1, 2, 0, 0], edges, 1.5, 1.0)
    with pytest.raises(ConfigurationError, match="edges"):
        exponential_quantile([1, 2, 0, 0], [0, 1, 0.5, 2, 3], 0.5, 1.0)
    with pytest.raises(ConfigurationError, match="epsilon"):
        exponential_quantile([1, 2, 0, 0], edges, 0.5, 0.0)
    with pytest.raises(MissingBoundsError, match="'age'"):
        quantile_edges(None, 1, 4, column="age")
    with pytest.raises(MissingBoundsError, match="lower < upper"):
        quantile_edges(1, 1, 4, column="age")


# -- DP-FedAvg ---------------------------------------------------------------------------------
def test_clip_update() -> None:
    big = np.array([3.0, 4.0])
    clipped = clip_update(big, 1.0)
    assert l2_norm(clipped) == pytest.approx(1.0) and clipped.tolist() == pytest.approx([0.6, 0.8])
    small = np.array([0.1, 0.2])
    assert clip_update(small, 1.0).tolist() == small.tolist()
    layered = clip_update([np.ones((2, 2)), np.ones(5)], 1.5)  # global norm 3 across arrays
    assert isinstance(layered, list) and l2_norm(layered) == pytest.approx(1.5)
    assert layered[1].tolist() == pytest.approx([0.5] * 5)
    with pytest.raises(NonFiniteValueError, match="party 'hungary'") as info:
        clip_update(np.array([1.0, math.inf]), 1.0, party="hungary")
    assert info.value.party == "hungary"
    with pytest.raises(ConfigurationError, match="clip"):
        clip_update(big, 0.0)


def test_dpconfig_validation() -> None:
    config = DPConfig(noise_multiplier=1.1, clip=0.5, sample_rate=0.01, delta=1e-5)
    assert config.noise_std == pytest.approx(0.55)
    assert config.share_std(4) == pytest.approx(0.275)
    assert config.event(10).count == 10 and config.event().sample_rate == 0.01
    for bad in (
        {"noise_multiplier": 0.0, "clip": 1.0},
        {"noise_multiplier": 1.0, "clip": -1.0},
        {"noise_multiplier": 1.0, "clip": 1.0, "sample_rate": 0.0},
        {"noise_multiplier": 1.0, "clip": 1.0, "sample_rate": 1.5},
        {"noise_multiplier": 1.0, "clip": 1.0, "delta": 1.0},
        {"noise_multiplier": math.nan, "clip": 1.0},
    ):
        with pytest.raises(ConfigurationError):
            DPConfig(**bad)
    with pytest.raises(ConfigurationError, match="rounds"):
        config.event(0)
