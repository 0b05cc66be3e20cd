"""One Privacy object, one result type, one column/null vocabulary across the statistics (issue 14)."""

from __future__ import annotations

import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import ConfigurationError

from .conftest import make_fed


def _fed(hospitals):
    f = make_fed()
    for name, df in hospitals.items():
        f.add_party(name, df)
    f.set_budget(epsilon=1e4, delta=1e-6)
    return f


def test_every_statistic_returns_a_result(hospitals):
    fed = _fed(hospitals)
    pooled = pl.concat(hospitals.values())
    m = fed.mean("age")
    assert isinstance(m, fb.Result) and float(m) == pytest.approx(pooled["age"].mean())
    assert round(m, 2) == round(pooled["age"].mean(), 2) and f"{m:.1f}" == f"{pooled['age'].mean():.1f}"
    assert int(fed.count()) == pooled.height and m.cost.ciphertexts > 0 and m.privacy is None
    for res in (fed.sum("age"), fed.var("age"), fed.std("age"), fed.stats(["age"]), fed.cov(["age", "chol"]),
                fed.corr(["age", "chol"]), fed.histogram("age", 4, (0, 100)), fed.secure_sum(["age"])):
        assert isinstance(res, fb.Result) and isinstance(res.to_polars(), pl.DataFrame)
    assert fed.stats(["age"]).to_polars()["count"][0] == pooled["age"].drop_nulls().len()
    # Table results compare with each other and with frames, as the frames they replaced did.
    counts = fed.group_counts("sex")
    assert counts.equals(fed.group_counts("sex")) and counts.equals(counts.to_polars())
    assert not counts.equals(counts.to_polars().head(1))


def test_count_of_a_column_is_one_round(hospitals):
    fed = _fed(hospitals)
    n = len(fed.history)
    res = fed.count("chol")
    assert len(fed.history) == n + 1 and len(res.runs) == 1
    assert set(res.runs[0].value) == {"count:chol"}  # only the count is released, not the sum


def test_privacy_object_and_keywords_are_the_same(hospitals):
    fed = _fed(hospitals)
    p = fb.Privacy(epsilon=500.0, bounds={"age": (0, 120)})
    a = fed.mean("age", privacy=p)
    b = fed.mean("age", epsilon=500.0, bounds=(0, 120))
    assert a.privacy["epsilon"] == b.privacy["epsilon"] == 500.0
    with pytest.raises(ConfigurationError, match="either privacy"):
        fed.mean("age", privacy=p, epsilon=1.0)
    with pytest.raises(ConfigurationError, match="bounds"):
        fed.sum("age", epsilon=1.0, bounds=[0, 1, 2])
    with pytest.raises(ConfigurationError, match="bounds"):
        fb.Privacy(epsilon=1.0, bounds="0-120")


def test_dp_mean_card_shows_only_the_released_mean(hospitals):
    fed = _fed(hospitals)
    m = fed.mean("age", epsilon=500.0, bounds=(0, 120))
    for text in (repr(m), m._repr_html_()):
        assert "differentially private" in text and "epsilon=500" in text
        assert m.privacy["adversary"] in text
        assert "count " not in text and "sum -" not in text


def test_dp_histogram_labels_outside_cells_noisy(hospitals):
    fed = _fed(hospitals)
    h = fed.histogram("age", 4, (0, 100), epsilon=100.0)
    for text in (repr(h), h._repr_html_()):
        assert "differentially private" in text and "noisy" in text and h.privacy["adversary"] in text
    exact = fed.histogram("age", 4, (0, 100))
    assert "noisy" not in repr(exact)


def test_old_argument_names_warn(hospitals):
    fed = _fed(hospitals)
    with pytest.warns(FutureWarning, match="columns="):
        assert float(fed.mean(column="age")) == float(fed.mean("age"))
    with pytest.warns(FutureWarning, match="columns="):
        fed.secure_sum(what=["age"])
    with pytest.raises(ConfigurationError, match="one column"):
        fed.mean(["age", "chol"])


def test_privacy_keywords_are_one_sugar_listed_in_every_signature():
    import inspect

    from fedbench import statistics

    dp = {"secure_sum": True, "count": False, "sum": True, "mean": True, "histogram": False, "quantile": True}
    for name, with_bounds in dp.items():
        params = inspect.signature(getattr(fb.Federation, name)).parameters
        sugar = {"epsilon", "delta", "mechanism", "noise"} | ({"bounds"} if with_bounds else set())
        assert sugar <= set(params) and all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in sugar)
        assert ("bounds" in params) == with_bounds
        assert list(params)[-1] == "deprecated"  # the sugar comes before **deprecated
        assert getattr(statistics, name).__wrapped__.__name__ == name  # one decorator builds the Privacy
    assert "epsilon" not in inspect.signature(fb.Federation.var).parameters
