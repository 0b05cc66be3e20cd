"""Differential privacy wired into the Federation: check-then-spend, distributed noise, persistence."""

from __future__ import annotations

import struct

import numpy as np
import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import BudgetExceededError, BudgetNotSetError, ConfigurationError, MissingBoundsError

from .conftest import make_fed


def _fed(hospitals, **kw):
    f = make_fed(**kw)
    for name, df in hospitals.items():
        f.add_party(name, df)
    return f


def test_dp_mean_charges_every_party_and_is_accurate_at_large_epsilon(hospitals):
    fed = _fed(hospitals)
    fed.set_budget(epsilon=1000.0, delta=1e-6)
    pooled = pl.concat(hospitals.values())
    m = fed.mean("age", epsilon=500.0, bounds=(0, 120))
    assert m == pytest.approx(pooled["age"].mean(), abs=0.5)
    for p in hospitals:
        assert fed.budget.spent(p) == (pytest.approx(500.0), 0.0)
        assert fed.budget.remaining(p)[0] == pytest.approx(500.0)
    res = fed.history[-1]
    assert res.privacy["mechanism"] == "laplace" and res.privacy["noise"] == "distributed"
    # Noise per entry follows each entry's own sensitivity: the count is not drowned by the sum's noise.
    assert res.privacy["entry_sensitivity"] == {"sum": 60.0, "count": 1.0}
    assert abs(res.value["count"] - pooled.height) < 50
    assert "laplace noise, epsilon=500" in repr(res)


def test_exactly_on_budget_then_refused_before_any_data_is_read(hospitals):
    fed = _fed(hospitals)
    fed.set_budget(epsilon=1.0, delta=1e-6)
    for _ in range(10):
        fed.count(epsilon=0.1)
    assert fed.budget.spent("north")[0] == pytest.approx(1.0)
    reads = []

    def spy(df):
        reads.append(df.height)
        return {"n": float(df.height)}

    n_messages, n_entries = len(fed.transcript), len(fed.budget.ledger.entries)
    with pytest.raises(BudgetExceededError, match="spent ε=1.*requested ε=0.1.*remaining ε=0") as err:
        fed.secure_sum(spy, epsilon=0.1, sensitivity=1.0)
    assert err.value.party in hospitals
    assert reads == []  # refused before the local function ran
    assert len(fed.transcript) == n_messages and len(fed.budget.ledger.entries) == n_entries
    assert len(fed.budget.refusals) == 1


def test_budget_must_be_set_and_bounds_declared(hospitals):
    fed = _fed(hospitals)
    with pytest.raises(BudgetNotSetError):
        fed.mean("age", epsilon=0.1, bounds=(0, 120))
    assert len(fed.transcript) == 0
    fed.set_budget(epsilon=1.0, delta=1e-6)
    with pytest.raises(MissingBoundsError, match="'age'") as err:
        fed.mean("age", epsilon=0.1)
    assert err.value.column == "age"
    with pytest.raises(ConfigurationError, match="needs delta"):
        fed.mean("age", epsilon=0.1, bounds=(0, 120), mechanism="gaussian")
    with pytest.raises(ConfigurationError, match="sensitivity"):
        fed.secure_sum(lambda df: {"n": 1.0}, epsilon=0.1)
    with pytest.raises(ConfigurationError, match="epsilon"):
        fed.count(epsilon=-1.0)
    assert fed.budget.spent("north") == (0.0, 0.0)
    assert len(fed.transcript) == 0


def test_distributed_noise_means_nobody_sees_the_exact_aggregate(hospitals):
    fed = _fed(hospitals, audit=True)
    fed.set_budget(epsilon=10.0, delta=1e-6)
    exact = float(pl.concat(hospitals.values())["age"].clip(0, 120).sum())
    res = fed.secure_sum(["age"], epsilon=1.0, bounds=(0, 120))
    released = struct.unpack("<d", res.transcript.filter(kind="aggregate")[0].payload)[0]
    assert released == res.value["age"] != exact
    assert abs(released - exact) < 120 * 60  # Laplace(120) noise, 60 scales out is vanishingly rare
    central = fed.secure_sum(["age"], epsilon=1.0, bounds=(0, 120), noise="central")
    # Central noise: the key holder adds the noise before its message to the analyst, which carries the release.
    to_analyst = struct.unpack("<d", central.transcript.filter(kind="aggregate")[0].payload)[0]
    assert to_analyst == central.value["age"] != exact
    assert "not the key holder" in central.privacy["adversary"]


def test_gaussian_release_and_ledger_accounting(hospitals):
    fed = _fed(hospitals)
    fed.set_budget(epsilon=5.0, delta=1e-5)
    fed.sum("age", epsilon=1.0, delta=1e-6, bounds=(0, 120), mechanism="gaussian")
    eps, delta = fed.budget.spent("south")
    assert 0.5 < eps <= 1.0 + 1e-6 and 0 < delta <= 1e-5
    entries = fed.budget.ledger.to_polars()
    assert "gaussian" in entries["mechanism"].to_list()


def test_histogram_and_quantiles(hospitals):
    fed = _fed(hospitals)
    fed.set_budget(epsilon=5000.0, delta=1e-6)
    pooled = pl.concat(hospitals.values())["age"].to_numpy()
    h = fed.histogram("age", 8, (10, 100), epsilon=1000.0)
    exact, _ = np.histogram(pooled, 8, (10, 100))
    assert h.counts.dtype == np.int64 and (h.counts >= 0).all()
    np.testing.assert_allclose(h.counts, exact, atol=2)
    assert h.sum_result.privacy["sensitivity"] == 1.0
    qs = fed.quantile("age", [0.25, 0.5, 0.75], epsilon=1000.0, bounds=(0, 120), bins=120)
    np.testing.assert_allclose(qs, np.quantile(pooled, [0.25, 0.5, 0.75]), atol=2.5)
    one = fed.quantile("age", 0.5, epsilon=100.0, bounds=(0, 120))
    assert isinstance(one, fb.Result) and isinstance(float(one), float)  # a result that converts to a number
    with pytest.raises(ConfigurationError, match="quantile levels"):
        fed.quantile("age", 1.5, epsilon=1.0, bounds=(0, 120))


def test_exact_releases_are_logged_as_not_dp_once_budgets_exist(hospitals):
    fed = _fed(hospitals)
    fed.secure_sum(["age"])  # no budget yet: nothing to log
    fed.set_budget(epsilon=1.0, delta=1e-6)
    fed.secure_sum(["age"])
    exact = [e for e in fed.budget.ledger.entries if e.kind == "exact"]
    assert len(exact) == 1 and set(exact[0].parties) == set(hospitals)
    assert fed.budget.spent("north") == (0.0, 0.0)


def test_ledger_survives_a_restart(tmp_path, hospitals):
    path = tmp_path / "study.ledger.json"
    fed = _fed(hospitals, ledger_path=path)
    fed.set_budget(epsilon=1.0, delta=1e-6, overrides={"east": (2.0, 1e-6)})
    fed.mean("age", epsilon=0.4, bounds=(0, 120))
    again = _fed(hospitals, ledger_path=path)  # a new kernel: same file, same spend
    assert again.budget.spent("north") == fed.budget.spent("north") == (pytest.approx(0.4), 0.0)
    assert again.budget.remaining("east")[0] == pytest.approx(1.6)
    with pytest.raises(BudgetExceededError):
        again.mean("age", epsilon=0.7, bounds=(0, 120))


def test_budget_repr_and_federation_api_names():
    fed = fb.Federation()
    assert fed.budget.parties == ()
    assert "PrivacyBudget" in repr(fed.budget)
