"""Federated statistics equal the same statistics on pooled data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedbench.errors import ConfigurationError, EmptyPartyError

from .conftest import make_fed
from .test_secure_sum import _FED, _fresh

floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_null = st.one_of(st.none(), floats)


@given(st.lists(st.lists(st.tuples(floats, maybe_null), min_size=1, max_size=15), min_size=2, max_size=4))
def test_stats_match_pooled(parts):
    frames = [pl.DataFrame({"x": [a for a, _ in p], "y": [b for _, b in p]}, schema={"x": pl.Float64,
                                                                                      "y": pl.Float64})
              for p in parts]
    pooled = pl.concat(frames)
    table = _fresh(frames).stats(["x", "y"])
    for col in ("x", "y"):
        row = table.filter(pl.col("column") == col).row(0, named=True)
        s = pooled[col].drop_nulls()
        assert row["count"] == s.len()
        assert row["nulls"] == pooled[col].null_count()
        if s.len():
            assert row["mean"] == pytest.approx(s.mean(), rel=1e-9, abs=1e-6)
        if s.len() > 1:
            assert row["var"] == pytest.approx(s.var(), rel=1e-6, abs=1e-5)
            assert row["std"] == pytest.approx(s.std(), rel=1e-6, abs=1e-3)
        else:
            assert np.isnan(row["var"])


def test_stats_default_columns_and_ddof(fed, hospitals):
    pooled = pl.concat(hospitals.values())
    table = fed.stats()
    assert table["column"].to_list() == ["age", "chol"]  # shared numeric columns
    t0 = fed.stats("age", ddof=0)
    assert t0["var"][0] == pytest.approx(pooled["age"].var(ddof=0))
    assert fed.mean("age") == pytest.approx(pooled["age"].mean())
    assert fed.std("chol") == pytest.approx(pooled["chol"].std())
    assert fed.var("chol") == pytest.approx(pooled["chol"].var())
    assert fed.count() == pooled.height
    assert fed.count("chol") == pooled["chol"].drop_nulls().len()
    assert fed.sum("age") == pooled["age"].sum()


def test_stats_on_large_values_are_stable():
    # E[x^2] - E[x]^2 would lose every digit here; two rounds keep them.
    frames = [pl.DataFrame({"x": [1e8 + 1.0, 1e8 + 2.0]}), pl.DataFrame({"x": [1e8 + 3.0]})]
    table = _fresh(frames).stats("x")
    assert table["var"][0] == pytest.approx(1.0, rel=1e-6)


@given(st.lists(st.lists(st.tuples(floats, floats, st.one_of(st.none(), floats)), min_size=2, max_size=12),
                min_size=2, max_size=3))
def test_cov_corr_match_pooled(parts):
    frames = [pl.DataFrame(p, schema={"a": pl.Float64, "b": pl.Float64, "c": pl.Float64}, orient="row")
              for p in parts]
    pooled = pl.concat(frames).drop_nulls()
    fed = _fresh(frames)
    if pooled.height < 2:
        with pytest.raises(EmptyPartyError):
            fed.cov(["a", "b", "c"])
        return
    cov = fed.cov(["a", "b", "c"]).drop("column").to_numpy()
    expected = np.cov(pooled.to_numpy(), rowvar=False)
    np.testing.assert_allclose(cov, expected, rtol=1e-6, atol=1e-3)
    corr = fed.corr(["a", "b"]).drop("column").to_numpy()
    x = pl.concat(frames).select("a", "b").drop_nulls().to_numpy()  # complete cases over a, b only
    if x.shape[0] > 1 and x.std(axis=0).min() > 1e-3 * max(1.0, np.abs(x).max()):
        np.testing.assert_allclose(corr, np.corrcoef(x, rowvar=False), atol=1e-5)


@given(st.lists(st.lists(st.one_of(st.none(), st.floats(-50, 150)), min_size=1, max_size=30), min_size=2,
                max_size=4), st.integers(1, 12))
def test_histogram_matches_numpy(parts, bins):
    frames = [pl.DataFrame({"v": p}, schema={"v": pl.Float64}) for p in parts]
    pooled = pl.concat(frames)["v"].drop_nulls().to_numpy()
    h = _fresh(frames).histogram("v", bins, (0, 100))
    counts, edges = np.histogram(pooled, bins, (0, 100))
    np.testing.assert_array_equal(h.counts, counts)
    np.testing.assert_allclose(h.edges, edges)
    assert h.below == int((pooled < 0).sum()) and h.above == int((pooled > 100).sum())
    assert h.nulls == sum(f["v"].null_count() for f in frames)
    assert h.to_polars().height == bins
    assert "Histogram" in repr(h) and "<table>" in h._repr_html_()


def test_histogram_needs_declared_bins(fed):
    with pytest.raises(ConfigurationError, match="range=.*declared up front"):
        fed.histogram("age", 10)
    with pytest.raises(ConfigurationError, match="strictly increasing"):
        fed.histogram("age", [10, 5])
    h = fed.histogram("age", [0, 50, 120])
    assert h.counts.sum() + h.below + h.above == fed.count()


def test_group_counts(fed, hospitals):
    pooled = pl.concat(hospitals.values())
    expected = pooled.group_by("sex").len().sort("sex")
    got = fed.group_counts("sex").sort("sex")
    assert got["count"].to_list() == expected["len"].to_list()
    # Undeclared categories need a plaintext agreement step, which the transcript records.
    assert len(fed.transcript.filter(kind="category-set")) == len(hospitals)
    before = len(fed.transcript.filter(kind="category-set"))
    two = fed.group_counts(["sex", "smoker"], categories={"sex": ["f", "m", "x"], "smoker": [True, False]})
    assert len(fed.transcript.filter(kind="category-set")) == before  # declared: no agreement step
    assert two.height == 6
    assert two.filter(pl.col("sex") == "x")["count"].sum() == 0
    exp2 = pooled.group_by(["sex", "smoker"]).len()
    for row in exp2.iter_rows(named=True):
        got_n = two.filter((pl.col("sex") == row["sex"]) & (pl.col("smoker") == row["smoker"]))["count"][0]
        assert got_n == row["len"]
    with pytest.raises(ConfigurationError, match="lacks the grouping column"):
        fed.group_counts(["sex", "smoker"], categories={"sex": ["f"]})


def test_empty_column_mean():
    frames = [pl.DataFrame({"x": [None, None]}, schema={"x": pl.Float64}), pl.DataFrame({"x": [None]},
                                                                                       schema={"x": pl.Float64})]
    with pytest.raises(EmptyPartyError, match="no non-null value"):
        _fresh(frames).mean("x")


def test_history_records_runs(fed):
    n = len(fed.history)
    fed.stats(["age"])
    assert len(fed.history) == n + 2  # two secure rounds
    assert all(r.key_bits == _FED.key_bits for r in fed.history)


def test_bad_null_policy(fed):
    with pytest.raises(ConfigurationError, match="nulls must be one of"):
        fed.stats(["age"], nulls="ignore")


def test_nulls_drop_is_a_deprecated_alias_of_skip(fed):
    # One null vocabulary: "skip" | "error"; the PSI-style "drop" still works for one release, with a warning.
    with pytest.warns(FutureWarning, match='nulls="skip"'):
        old = fed.stats(["chol"], nulls="drop")
    assert old["mean"][0] == fed.stats(["chol"], nulls="skip")["mean"][0]
    with pytest.warns(FutureWarning, match='nulls="skip"'):
        fed.mean("chol", nulls="drop")


def test_column_argument_validation():
    fed = make_fed()
    with pytest.raises(ConfigurationError):
        fed.secure_sum([])
    with pytest.raises(ConfigurationError):
        fed.secure_sum(["a", "a"])
