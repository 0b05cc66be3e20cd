"""Regression tests for the DP audit items (issue 12): noise against a party, honest transcript,
charging only released results, exact discrete noise from a CSPRNG."""

from __future__ import annotations

import math
import struct

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedbench as fb
import fedbench.dp.mechanisms as mech
from fedbench.dp import DPConfig, gaussian_shares, laplace_shares, update_noise_share
from fedbench.dp.releases import NoisePlan
from fedbench.errors import BudgetExceededError, ConfigurationError, EncodingRangeError, NonFiniteValueError

from .conftest import make_fed

N = 40_000
_FED = make_fed()  # one key pair reused: key generation is the slow part


def _fed(n_parties: int = 2, rows: int = 30, **kw) -> fb.Federation:
    f = make_fed(**kw)
    f._keys = _FED.keys
    rng = np.random.default_rng(11)
    for i in range(n_parties):
        f.add_party(f"p{i}", pl.DataFrame({"x": rng.integers(0, 100, rows).astype(float)}))
    return f


def _exact(fed: fb.Federation) -> float:
    return float(sum(p.compute(lambda df: float(df["x"].sum())) for p in fed))


# -- item 3: distributed noise holds against a party -------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 4])
def test_laplace_share_unknown_to_a_party_is_the_full_noise(k: int) -> None:
    b = 3.0
    shares = laplace_shares(b, k, N)  # OpenDP, CSPRNG
    released_minus_exact = shares.sum(axis=0)
    faced_by_party_0 = released_minus_exact - shares[0]
    # The noise party 0 cannot remove has at least the variance 2 b^2 of the full Laplace(b).
    assert np.var(faced_by_party_0) >= 2 * b**2 * 0.93
    # Even a coalition of k - 1 parties faces one full share.
    assert np.var(released_minus_exact - shares[:-1].sum(axis=0)) == pytest.approx(2 * b**2, rel=0.07)


@pytest.mark.parametrize("k", [2, 4])
def test_gaussian_shares_unknown_to_a_party_have_the_full_variance(k: int) -> None:
    sigma = 2.0
    shares = gaussian_shares(sigma, k, N)
    faced_by_party_0 = shares.sum(axis=0) - shares[0]
    assert np.var(faced_by_party_0) == pytest.approx(sigma**2, rel=0.05)


@pytest.mark.parametrize("k", [2, 4])
def test_dpfedavg_share_unknown_to_a_party_has_the_full_variance(k: int) -> None:
    config = DPConfig(noise_multiplier=1.0, clip=1.0)
    shares = [update_noise_share(np.zeros(N // 2), config, k) for _ in range(k)]
    assert np.var(np.sum(shares[1:], axis=0)) == pytest.approx(config.noise_std**2, rel=0.05)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
def test_federation_shares_leave_the_calibrated_noise_to_each_party(k: int, mechanism: str) -> None:
    delta = 1e-6 if mechanism == "gaussian" else None
    plan = NoisePlan.make(epsilon=1.0, delta=delta, mechanism=mechanism, noise="distributed", l1=1.0, l2=1.0)
    frac_bits = 20
    sampler = plan.sampler(k, share=True)
    names, shapes = ["x"], [(N // 4,)]
    draws = np.array([sampler(names, shapes, frac_bits) for _ in range(k)], dtype=np.float64)
    total_scale = float(plan.grid_scales(names, shapes, frac_bits)[0])
    assert total_scale >= plan.scale * 2**frac_bits  # calibration in grid units never below the real one
    var_full = 2 * total_scale**2 if mechanism == "laplace" else total_scale**2
    # What party 0 cannot subtract: the k - 1 other shares carry (at least) the calibrated noise.
    assert np.var(draws[1:].sum(axis=0)) == pytest.approx(var_full * (k - 1 if mechanism == "laplace" else 1),
                                                          rel=0.1)


@pytest.mark.parametrize("k", [2, 4])
def test_recorded_epsilon_is_the_one_against_a_party(k: int) -> None:
    fed = _fed(k)
    fed.set_budget(epsilon=10.0, delta=1e-5)
    res = fed.secure_sum(["x"], epsilon=1.0, delta=1e-6, bounds=(0, 100), mechanism="gaussian")
    p = res.privacy
    assert p["epsilon"] == 1.0 and p["adversary"].startswith("any single party")
    # The outsider, who knows no share, faces variance k sigma^2 / (k - 1): a smaller epsilon, for information.
    assert p["epsilon_outsider"] < p["epsilon"]
    assert "epsilon holds against: any single party" in repr(res)
    assert "any single party" in res._repr_html_()
    assert p["share_scale"] == pytest.approx(p["scale"] / math.sqrt(k - 1))
    lap = fed.secure_sum(["x"], epsilon=1.0, bounds=(0, 100))
    assert f"any coalition of up to {k - 1}" in lap.privacy["adversary"]
    assert lap.privacy["share_scale"] == lap.privacy["scale"]
    entry = fed.budget.ledger.entries[-1]
    assert entry.parameters["adversary"] == lap.privacy["adversary"]
    h = fed.histogram("x", 4, (0, 100), epsilon=1.0)
    assert "epsilon holds against: any coalition" in repr(h) and "any coalition" in h._repr_html_()


# -- item 5: central noise is in the analyst's message ------------------------------------------------------------
def test_central_noise_is_in_the_message_to_the_analyst() -> None:
    fed = _fed(3, audit=True)
    fed.set_budget(epsilon=10.0, delta=1e-5)
    exact = _exact(fed)
    res = fed.secure_sum(["x"], epsilon=1.0, bounds=(0, 100), noise="central")
    (msg,) = res.transcript.filter(kind="aggregate")
    assert (msg.sender, msg.receiver) == ("keyholder", "analyst")
    to_analyst = struct.unpack("<d", msg.payload)[0]
    assert to_analyst == res.value["x"] != exact
    assert res.privacy["adversary"].startswith("analyst and parties; not the key holder")
    fed.mean("x", epsilon=1.0, bounds=(0, 100), noise="central")
    m = fed.history[-1]
    pair = np.frombuffer(m.transcript.filter(kind="aggregate")[0].payload, dtype="<f8")
    assert list(pair) == [m.value["sum"], m.value["count"]]


# -- item 9: a failed DP request spends nothing ------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["distributed", "central"])
def test_nan_in_one_party_spends_nothing(noise: str) -> None:
    fed = _fed(2, audit=True)
    fed.add_party("bad", pl.DataFrame({"x": [1.0, math.nan, 3.0]}))
    fed.set_budget(epsilon=1.0, delta=1e-6)
    before = {p: fed.budget.spent(p) for p in fed.party_names}
    n_entries, n_messages, n_history = len(fed.budget.ledger.entries), len(fed.transcript), len(fed.history)
    with pytest.raises(NonFiniteValueError):
        fed.sum("x", epsilon=0.5, bounds=(0, 100), noise=noise)
    with pytest.raises(NonFiniteValueError):
        fed.secure_sum(lambda df: {"s": float(df["x"].sum())}, epsilon=0.5, sensitivity=100.0, noise=noise)
    assert {p: fed.budget.spent(p) for p in fed.party_names} == before
    assert len(fed.budget.ledger.entries) == n_entries
    assert len(fed.transcript) == n_messages and len(fed.history) == n_history
    fed.remove_party("bad")
    fed.sum("x", epsilon=0.5, bounds=(0, 100), noise=noise)  # the federation is unchanged and still usable
    assert fed.budget.spent("p0")[0] == pytest.approx(0.5)


def test_dp_bounds_clamp_values_outside_them_instead_of_refusing() -> None:
    # Bounds far below most values: every value is clamped, none refused.
    fed = _fed(2, audit=True)
    fed.set_budget(epsilon=100.0, delta=1e-6)
    clamped = float(sum(p.compute(lambda df: float(np.clip(df["x"].to_numpy(), 0, 5).sum())) for p in fed))
    assert _exact(fed) > 10 * clamped  # the bounds really cut the data
    for hi in (5.0, 0.5):  # a bound below every positive value is no error either
        fed.sum("x", epsilon=1.0, bounds=(0, hi))
        fed.mean("x", epsilon=1.0, bounds=(0, hi))
    # Released value = clamped sum + noise of scale sensitivity / epsilon = 5 / 40 (per share).
    r = fed.sum("x", epsilon=40.0, bounds=(0, 5))
    assert abs(r.value - clamped) < 10
    assert fed.budget.spent("p0")[0] == pytest.approx(44.0)
    # What SECURITY.md states as the exception: the clamped local total must still fit a declared
    # max_abs, so with a small one the bounds decide whether a party is refused (named, not charged).
    small = _fed(2, audit=True, max_abs=1024.0)
    small.set_budget(epsilon=10.0, delta=1e-6)
    small.sum("x", epsilon=1.0, bounds=(0, 10))  # at most 30 x 10 = 300 per party: fits
    with pytest.raises(EncodingRangeError) as info:
        small.sum("x", epsilon=1.0, bounds=(0, 100))  # up to 3000 per party: refused
    assert info.value.party in small.party_names
    assert small.budget.spent("p0")[0] == pytest.approx(1.0)


def test_a_concurrent_spend_during_the_run_discards_the_result() -> None:
    fed = _fed(2, audit=True)
    fed.set_budget(epsilon=1.0, delta=1e-6)
    n_messages = len(fed.transcript)

    def local(df: pl.DataFrame) -> dict[str, float]:
        # Another kernel spends the budget while this request's parties compute.
        if fed.budget.spent("p0")[0] == 0:
            fed.budget.charge(["p0"], fb.dp.PureDPEvent(1.0), description="concurrent")
        return {"n": float(df.height)}

    with pytest.raises(BudgetExceededError):
        fed.secure_sum(local, epsilon=0.5, sensitivity=1.0)
    assert len(fed.transcript) == n_messages  # nothing reached the aggregator, key holder or analyst
    assert fed.budget.spent("p1")[0] == 0.0


# -- item 11: exact discrete noise from OpenDP ---------------------------------------------------------------------
def test_releases_are_grid_multiples_drawn_by_opendp(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float, int]] = []
    real = mech._opendp_sample

    def spy(kind: str, scale: float, count: int) -> np.ndarray:
        calls.append((kind, scale, count))
        return real(kind, scale, count)

    monkeypatch.setattr(mech, "_opendp_sample", spy)
    fed = _fed(3)
    fed.set_budget(epsilon=10.0, delta=1e-5)
    for noise in ("distributed", "central"):
        for mechanism, delta in (("laplace", None), ("gaussian", 1e-6)):
            calls.clear()
            res = fed.secure_sum(["x"], epsilon=1.0, delta=delta, bounds=(0, 100), mechanism=mechanism, noise=noise)
            scaled = res.value["x"] * 2**fed.encoding.frac_bits
            assert scaled == round(scaled)  # an integer number of grid units
            assert {c[0] for c in calls} == {mechanism}
            assert len(calls) == (3 if noise == "distributed" else 1)  # one share per party, or the key holder's


def test_discrete_laplace_matches_its_law() -> None:
    t = 1.5
    x = mech.discrete_laplace(t, N)
    assert x.dtype == np.int64
    r = math.exp(-1 / t)
    assert np.var(x) == pytest.approx(2 * r / (1 - r) ** 2, rel=0.06)
    for k in range(-4, 5):  # pmf (1 - r) / (1 + r) r^|k|, 6 standard errors
        p = (1 - r) / (1 + r) * r ** abs(k)
        assert abs(np.mean(x == k) - p) < 6 * math.sqrt(p * (1 - p) / N)


def test_discrete_gaussian_matches_its_law() -> None:
    s = 1.2
    x = mech.discrete_gaussian(s, N)
    ks = np.arange(-40, 41)
    w = np.exp(-(ks**2) / (2 * s**2))
    pmf = w / w.sum()
    assert np.var(x) == pytest.approx(float((pmf * ks**2).sum()), rel=0.05)
    for k, p in zip(ks[35:46], pmf[35:46], strict=True):
        assert abs(np.mean(x == k) - p) < 6 * math.sqrt(p * (1 - p) / N)


def test_grid_limits_are_refused_before_any_data_is_read() -> None:
    fed = _fed(2)
    fed.set_budget(epsilon=10.0, delta=1e-5)
    with pytest.raises(ConfigurationError, match="frac_bits"):
        fed.secure_sum(["x"], epsilon=1e-9, bounds=(0, 1e6))
    with pytest.raises(ConfigurationError, match="Kairouz-Liu-Steinke"):
        plan = NoisePlan.make(epsilon=50.0, delta=1e-3, mechanism="gaussian", noise="distributed")
        plan.check_grid(0, 4)
    assert fed.budget.spent("p0") == (0.0, 0.0) and len(fed.transcript) == 0
    assert mech.kls_tau(2.0**20, 10) == 0.0


# -- protocol vs plaintext: with the noise set to zero a DP sum is the fixed-point plaintext sum ------------------
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8), min_size=2, max_size=4),
       st.sampled_from(["distributed", "central"]), st.sampled_from(["laplace", "gaussian"]))
def test_noise_free_part_of_a_dp_sum_is_the_plaintext_sum(columns, noise, mechanism) -> None:
    zero = pytest.MonkeyPatch()
    zero.setattr(mech, "_opendp_sample", lambda kind, scale, count: np.zeros(count, dtype=np.int64))
    try:
        f = make_fed()
        f._keys = _FED.keys
        for i, c in enumerate(columns):
            f.add_party(f"p{i}", pl.DataFrame({"x": c}))
        f.set_budget(epsilon=100.0, delta=1e-5)
        delta = 1e-6 if mechanism == "gaussian" else None
        res = f.secure_sum(["x"], epsilon=1.0, delta=delta, bounds=(-1e5, 1e5), mechanism=mechanism, noise=noise)
    finally:
        zero.undo()
    grid = 2.0**-24
    expected = sum(round(math.fsum(np.clip(c, -1e5, 1e5)) / grid) for c in columns) * grid
    assert res.value["x"] == expected
