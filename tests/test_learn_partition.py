"""Partitioners: every row in exactly one party, seeded, with the requested skew."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench as fb
from fedbench.errors import ConfigurationError, MissingColumnError
from fedbench.learn import (
    dirichlet_partition,
    iid_partition,
    natural_partition,
    partition,
    quantity_partition,
    to_federation,
)


def data(n: int = 600, k: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"row": np.arange(n), "x": rng.normal(size=n), "label": rng.integers(0, k, n),
                         "site": rng.choice(["a b", "c/d", "e"], n)})


def rows(parts: dict[str, pl.DataFrame]) -> list[int]:
    return sorted(v for df in parts.values() for v in df["row"].to_list())


@settings(max_examples=20)
@given(n=st.integers(20, 300), k=st.integers(2, 8), seed=st.integers(0, 1000), alpha=st.floats(0.05, 10.0))
def test_every_partitioner_keeps_each_row_once(n, k, seed, alpha):
    df = data(n, seed=seed)
    for parts in (iid_partition(df, k, seed=seed), quantity_partition(df, k, alpha=alpha, seed=seed),
                  dirichlet_partition(df, k, label="label", alpha=alpha, seed=seed, min_rows=0)):
        assert len(parts) == k and rows(parts) == list(range(n))
        for p in parts.values():
            assert p["row"].is_sorted()  # original order kept inside a party


def test_iid_is_balanced_and_seeded():
    df = data()
    a, b, c = iid_partition(df, 4, seed=1), iid_partition(df, 4, seed=1), iid_partition(df, 4, seed=2)
    assert [p.height for p in a.values()] == [150] * 4 and list(a) == ["party_0", "party_1", "party_2", "party_3"]
    assert all(a[k].equals(b[k]) for k in a) and not all(a[k].equals(c[k]) for k in a)


def test_dirichlet_small_alpha_skews_labels():
    df = data(3000)
    skewed = dirichlet_partition(df, ["h1", "h2", "h3", "h4"], label="label", alpha=0.1, seed=0)
    flat = dirichlet_partition(df, 4, label="label", alpha=100.0, seed=0)

    def max_share(parts):
        return np.mean([p["label"].value_counts()["count"].max() / p.height for p in parts.values()])

    assert max_share(skewed) > 0.6 > 0.45 > max_share(flat)
    with pytest.raises(MissingColumnError):
        dirichlet_partition(df, 3, label="nope")


def test_quantity_skew_and_minimum():
    df = data(1000)
    parts = quantity_partition(df, 5, alpha=0.3, seed=3, min_rows=20)
    sizes = sorted(p.height for p in parts.values())
    assert sum(sizes) == 1000 and sizes[0] >= 20 and sizes[-1] > 3 * sizes[0]
    with pytest.raises(ConfigurationError, match="cannot give"):
        quantity_partition(df, 5, min_rows=300)


def test_natural_split_and_federation():
    df = data(90)
    parts = natural_partition(df, "site")
    assert set(parts) == {"a_b", "c_d", "e"} and rows(parts) == list(range(90))
    fed = partition(df, scheme="natural", by="site", as_federation=True, key_bits=512, allow_insecure_key_size=True)
    assert isinstance(fed, fb.Federation) and sorted(fed.party_names) == ["a_b", "c_d", "e"]
    fed2 = to_federation(iid_partition(df, 3), key_bits=512, allow_insecure_key_size=True)
    assert len(fed2) == 3
    with pytest.raises(ConfigurationError, match="by="):
        partition(df, scheme="natural")
    with pytest.raises(ConfigurationError, match="scheme"):
        partition(df, 3, scheme="bogus")
