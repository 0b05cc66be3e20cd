"""The one clear-text union exchange (``fedbench.clear_union``) behind group_counts and the encoders."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from fedbench.clear_union import first_seen_union, union_in_the_clear
from fedbench.wire import loads


@given(st.lists(st.lists(st.integers(-3, 3), max_size=6), max_size=5))
def test_first_seen_union_is_the_set_union_in_first_seen_order(groups):
    out = first_seen_union(groups)
    assert set(out) == set().union(*map(set, groups)) and len(out) == len(set(out))
    flat = [v for g in groups for v in g]
    assert out == sorted(set(flat), key=flat.index)


def test_every_party_sends_its_set_and_receives_the_union(fed, hospitals):
    union, channel = union_in_the_clear(
        fed.coordinator, list(fed), lambda df: sorted(df["sex"].unique().to_list()),
        lambda sets: sorted(first_seen_union(sets)))
    assert union == sorted(pl.concat(hospitals.values())["sex"].unique().to_list())
    sent = [m for m in channel.run if m.kind == "category-set"]
    back = [m for m in channel.run if m.kind == "category-union"]
    assert [m.sender for m in sent] == [m.receiver for m in back] == list(hospitals)
    assert {m.receiver for m in sent} == {"coordinator"} and not any(m.encrypted for m in channel.run)
    assert all(loads(m.payload) == union for m in back)


def test_group_counts_uses_it(fed):
    before = len(fed.transcript)
    fed.group_counts("sex")
    kinds = [m.kind for m in list(fed.transcript)[before:]]
    assert kinds.count("category-set") == kinds.count("category-union") == len(fed)
