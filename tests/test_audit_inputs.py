"""Audit item 10: smaller input defects, one test each; every bad input leaves the federation unchanged."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench as fb
from fedbench import errors

from .conftest import make_fed


def _frames() -> dict[str, pl.DataFrame]:
    return {
        "east": pl.DataFrame({"x": [1.0, 2.0, 3.0], "k": [1, 2, 3]}),
        "west": pl.DataFrame({"x": [4.0, 5.0], "k": [10, 20]}),
    }


def _fed(**kwargs: Any) -> fb.Federation:
    fed = make_fed(**kwargs)
    for name, df in _frames().items():
        fed.add_party(name, df)
    return fed


def _state(fed: fb.Federation) -> tuple[Any, ...]:
    return (fed.party_names, str(fed.schema.kinds), len(fed.transcript), len(fed.history),
            [fed[p].columns for p in fed.party_names], [fed[p].n_rows for p in fed.party_names])


# -- a local function gets a copy of the party's rows -----------------------------------
def test_local_function_cannot_mutate_the_party():
    fed = _fed()
    before = _state(fed)

    def vandal(df: pl.DataFrame) -> dict[str, float]:
        df.drop_in_place("x")
        df.insert_column(0, pl.Series("evil", [0] * df.height))
        return {"n": float(df.height)}

    assert fed.secure_sum(vandal).value["n"] == 5
    assert [fed[p].columns for p in fed.party_names] == [["x", "k"], ["x", "k"]]
    assert fed.secure_sum(["x"]).value["x"] == 15.0
    assert _state(fed)[0:2] == before[0:2]


# -- local functions time out ------------------------------------------------------------
def test_sleeping_local_function_times_out_and_federation_stays_usable():
    fed = _fed(local_timeout=30)
    before = _state(fed)
    release = threading.Event()

    def sleeper(df: pl.DataFrame) -> dict[str, float]:
        release.wait(20)
        return {"n": 1.0}

    t0 = time.perf_counter()
    with pytest.raises(errors.PartyTimeoutError, match="party 'east'.*local_timeout=0.3") as info:
        fed.secure_sum(sleeper, local_timeout=0.3)
    assert time.perf_counter() - t0 < 5
    assert info.value.party == "east"
    assert isinstance(info.value, errors.PartyUnavailableError)
    assert _state(fed) == before
    release.set()
    assert fed.secure_sum(["x"]).value["x"] == 15.0  # still usable


def test_local_timeout_default_and_validation():
    fed = _fed(local_timeout=0.2)
    before = _state(fed)
    with pytest.raises(errors.PartyTimeoutError, match="party 'east'"):
        fed.secure_sum(lambda df: (time.sleep(3), {"n": 1.0})[1])
    assert _state(fed) == before
    with pytest.raises(errors.ConfigurationError, match="local_timeout"):
        fed.secure_sum(lambda df: {"n": 1.0}, local_timeout=-1)
    with pytest.raises(errors.ConfigurationError, match="local_timeout"):
        make_fed(local_timeout=math.inf)
    assert _state(fed) == before
    assert fb.Federation.__init__.__kwdefaults__["local_timeout"] == 300.0


# -- histogram ranges and edges must be finite ---------------------------------------------
@pytest.mark.parametrize("bins,range_", [
    (5, (0.0, math.inf)), (5, (-math.inf, 0.0)), (5, (math.nan, 1.0)), (5, (0.0, math.nan)),
    ([0.0, 1.0, math.inf], None), ([-math.inf, 0.0, 1.0], None), ([0.0, math.nan, 1.0], None),
    (math.inf, (0.0, 1.0)), (math.nan, (0.0, 1.0)),
])
def test_histogram_refuses_non_finite_range_or_bins(bins, range_):
    fed = _fed()
    before = _state(fed)
    with pytest.raises(errors.ConfigurationError):
        fed.histogram("x", bins, range_)
    assert _state(fed) == before
    h = fed.histogram("x", 2, (0.0, 10.0))
    assert np.isfinite(h.edges).all() and h.counts.tolist() == [4, 1]


# -- complex results are refused ----------------------------------------------------------
@pytest.mark.parametrize("value", [np.array([1 + 2j, 3.0]), 1j, complex(2, 0), np.complex128(1.5)])
def test_complex_local_results_are_refused(value):
    fed = _fed()
    before = _state(fed)
    with pytest.raises(errors.LocalResultError, match="party 'east'.*'z'.*complex") as info:
        fed.secure_sum(lambda df: {"ok": 1.0, "z": value})
    assert info.value.party == "east" and info.value.column == "z"
    assert isinstance(info.value, errors.ProtocolError)
    assert _state(fed) == before


# -- integer sums are exact beyond 2**53 ------------------------------------------------------
_big = st.integers(min_value=-(2**60), max_value=2**60)


@settings(max_examples=12, deadline=None)
@given(east=st.lists(_big, min_size=1, max_size=3), west=st.lists(_big, min_size=1, max_size=3))
def test_integer_column_sums_are_exact(east, west):
    fed = make_fed()
    fed.add_party("east", pl.DataFrame({"v": east}, schema={"v": pl.Int64}))
    fed.add_party("west", pl.DataFrame({"v": west}, schema={"v": pl.Int64}))
    total = fed.secure_sum(["v"]).value["v"]
    assert isinstance(total, int) and total == sum(east) + sum(west)
    assert fed.sum("v") == sum(east) + sum(west)


@settings(max_examples=8, deadline=None)
@given(a=_big, b=_big, arr=st.lists(_big, min_size=2, max_size=2))
def test_integer_results_of_local_functions_are_exact(a, b, arr):
    fed = _fed()
    values = {"east": (a, arr), "west": (b, [1, 2])}

    def fn(df: pl.DataFrame) -> dict[str, Any]:
        mine = values["east" if df.height == 3 else "west"]
        return {"s": mine[0], "v": np.array(mine[1], dtype=np.int64), "f": 0.25}

    out = fed.secure_sum(fn).value
    assert isinstance(out["s"], int) and out["s"] == a + b
    assert [int(x) for x in out["v"]] == [arr[0] + 1, arr[1] + 2]
    assert out["f"] == 0.5


def test_sum_just_above_2_53_is_exact():
    fed = make_fed()
    fed.add_party("east", pl.DataFrame({"v": [2**53, 1]}))
    fed.add_party("west", pl.DataFrame({"v": [1, 2**60 + 1]}))
    assert fed.secure_sum(["v"]).value["v"] == 2**53 + 2**60 + 3


# -- duplicate CSV headers are refused ---------------------------------------------------------
@pytest.mark.parametrize("name,text,options", [
    ("east.csv", "id,x,x\n1,2,3\n", {}),
    ("east.csv", "\ufeffx,id,x\n1,2,3\n", {}),  # byte order mark before the first name
    ("east.csv", '"id","x","x"\n1,2,3\n', {}),
    ("east.tsv", "id\tx\tx\n1\t2\t3\n", {}),
    ("east.csv", "id;x;x\n1;2;3\n", {"separator": ";"}),
    ("east.csv", "junk line\nid,x,x\n1,2,3\n", {"skip_rows": 1}),
])
def test_duplicate_csv_headers_are_refused(tmp_path, name, text, options):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    fed = _fed()
    before = _state(fed)
    with pytest.raises(errors.DuplicateColumnError, match=r"party 'north'.*east\.[ct]sv.*'x'") as info:
        fed.add_party("north", path, **options)
    assert info.value.party == "north" and info.value.column == "x"
    assert isinstance(info.value, errors.DataLoadError)
    assert _state(fed) == before
    with pytest.raises(errors.DuplicateColumnError):
        fb.Federation.from_dir(tmp_path, allow_insecure_key_size=True, key_bits=512,
                               read_options=options or None)


def test_distinct_csv_headers_still_load(tmp_path):
    path = tmp_path / "east.csv"
    path.write_text("\ufeffid,x,y\n1,2,3\n", encoding="utf-8")
    fed = make_fed()
    assert fed.add_party("east", path).columns == ["id", "x", "y"]
    (tmp_path / "west.csv").write_text("a,a\n1,2\n")
    assert make_fed().add_party("w", tmp_path / "west.csv", has_header=False).n_rows == 2
