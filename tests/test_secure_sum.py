"""Secure sums equal plaintext sums; every bad input is refused and changes nothing."""

from __future__ import annotations

import math
import struct

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fedbench as fb
from fedbench.errors import (
    ConfigurationError,
    DataLoadError,
    DtypeConflictError,
    DuplicatePartyError,
    EmptyPartyError,
    EncodingRangeError,
    InsecureParameterError,
    LocalComputationError,
    MissingColumnError,
    NonFiniteValueError,
    NonNumericColumnError,
    NullValuesError,
    ProtocolError,
    SchemaWarning,
    TooFewPartiesError,
    UnknownPartyError,
)

from .conftest import make_fed

# One federation reused across hypothesis examples: key generation is the slow part.
_FED = make_fed()


def _fresh(frames: list[pl.DataFrame]) -> fb.Federation:
    f = make_fed()
    f._keys = _FED.keys  # reuse the test key pair
    for i, df in enumerate(frames):
        f.add_party(f"p{i}", df)
    return f


values = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(st.lists(st.lists(values, min_size=1, max_size=20), min_size=2, max_size=6))
def test_column_sum_equals_plaintext(columns):
    frames = [pl.DataFrame({"x": c}) for c in columns]
    # Local sums reach 2e10: beyond the default range, so a declared public one.
    res = _fresh(frames).secure_sum("x", max_abs=2.0**35, frac_bits=24)
    expected = math.fsum(v for c in columns for v in c)
    # Fixed point with 24 fractional bits: each party's local sum is rounded once.
    assert res.value["x"] == pytest.approx(expected, rel=1e-12, abs=len(columns) * 2**-24)
    assert res.parties == [f"p{i}" for i in range(len(columns))]


small_values = st.floats(min_value=-4e4, max_value=4e4, allow_nan=False, allow_infinity=False)


@given(st.lists(st.lists(small_values, min_size=1, max_size=20), min_size=2, max_size=6))
def test_default_range_sum_equals_plaintext(columns):
    """Default encoding of a function sum (public 2**20 range, 16 fractional bits): each local sum is
    rounded once to 2**-16; column sums keep the wide statistics encoding (24 fractional bits)."""
    frames = [pl.DataFrame({"x": c}) for c in columns]
    fed = _fresh(frames)
    res = fed.secure_sum(lambda df: {"x": math.fsum(df["x"].to_list())})
    assert (res.frac_bits, res.value_bits) == (16, 37)
    expected = math.fsum(v for c in columns for v in c)
    assert res.value["x"] == pytest.approx(expected, rel=1e-12, abs=len(columns) * 2**-17 + 1e-9)
    col = fed.secure_sum("x")
    assert col.frac_bits == 24
    assert col.value["x"] == pytest.approx(expected, rel=1e-12, abs=len(columns) * 2**-25 + 1e-9)


@given(
    st.integers(2, 5),
    st.integers(1, 40),
    st.integers(-(2**40), 2**40),
    st.data(),
)
def test_vector_sum_with_negatives_and_large_magnitudes(n_parties, length, scale, data):
    vecs = [
        data.draw(arrays(np.int64, length, elements=st.integers(-abs(scale), abs(scale))))
        for _ in range(n_parties)
    ]
    frames = [pl.DataFrame({"i": [i]}) for i in range(n_parties)]
    fed = _fresh(frames)
    res = fed.secure_sum(lambda df: {"v": vecs[int(df["i"][0])], "n": 1.0}, max_abs=2.0**41, frac_bits=0)
    np.testing.assert_array_equal(res.value["v"].astype(np.int64), np.sum(vecs, axis=0))
    assert res.value["n"] == n_parties


@given(st.integers(2, 4), st.integers(1, 3000))
def test_fast_packing_path_long_vectors(n_parties, length):
    rng = np.random.default_rng(length)
    vecs = [rng.integers(-(2**15) + 1, 2**15, length).astype(float) for _ in range(n_parties)]
    fed = _fresh([pl.DataFrame({"i": [i]}) for i in range(n_parties)])
    res = fed.secure_sum(lambda df: {"v": vecs[int(df["i"][0])]}, max_abs=2**15, frac_bits=0)
    np.testing.assert_array_equal(res.value["v"], np.sum(vecs, axis=0))
    assert res.slots_per_ciphertext > 15  # many values share one ciphertext


def test_textbook_encryption_gives_same_sums(hospitals):
    f = make_fed(fast_encryption=False)
    for name, df in hospitals.items():
        f.add_party(name, df)
    res = f.secure_sum(["age"])
    assert not res.fast_encryption
    assert res.value["age"] == pl.concat(hospitals.values())["age"].sum()


def test_nulls_are_skipped_and_counted(fed, hospitals):
    pooled = pl.concat(hospitals.values())
    res = fed.secure_sum(["age", "chol"])
    assert res.value["chol"] == pytest.approx(pooled["chol"].sum())
    assert res.nulls_skipped == {"age": 0, "chol": pooled["chol"].null_count()}
    assert pooled["chol"].null_count() > 0
    with pytest.raises(NullValuesError, match="'chol'") as err:
        fed.secure_sum(["chol"], nulls="error")
    assert err.value.column == "chol" and err.value.party in hospitals


def test_boolean_columns_sum_as_counts(fed, hospitals):
    assert fed.secure_sum("smoker").value["smoker"] == pl.concat(hospitals.values())["smoker"].sum()


def test_default_key_size_is_2048():
    assert fb.Federation().key_bits == 2048
    with pytest.raises(InsecureParameterError):
        fb.Federation(1024)


# -- bad input: clear errors naming party and column, nothing recorded -------------
def _state(fed):
    return (list(fed.parties), len(fed.transcript), len(fed.history))


def test_missing_file_and_unknown_format(tmp_path):
    fed = make_fed()
    with pytest.raises(DataLoadError, match="party 'a'.*no such file"):
        fed.add_party("a", tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("nope")
    with pytest.raises(DataLoadError, match="unknown format"):
        fed.add_party("a", tmp_path / "x.xlsx")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataLoadError, match="party 'a': cannot read"):
        fed.add_party("a", tmp_path / "bad.parquet")
    assert len(fed) == 0


def test_empty_party_and_duplicate_name(tmp_path, fed):
    before = _state(fed)
    (tmp_path / "empty.csv").write_text("age,chol\n")
    with pytest.raises(EmptyPartyError, match="'west' has no rows"):
        fed.add_party("west", tmp_path / "empty.csv")
    with pytest.raises(DuplicatePartyError, match="'north' already exists"):
        fed.add_party("north", pl.DataFrame({"age": [1]}))
    with pytest.raises(ConfigurationError, match="reserved"):
        fed.add_party("aggregator", pl.DataFrame({"age": [1]}))
    with pytest.raises(ConfigurationError, match="not an identifier"):
        fed.add_party("bad name!", pl.DataFrame({"age": [1]}))
    assert _state(fed) == before


def test_non_numeric_and_missing_columns(fed):
    before = _state(fed)
    with pytest.raises(NonNumericColumnError, match="'sex'") as err:
        fed.secure_sum(["sex"])
    assert err.value.column == "sex"
    with pytest.raises(MissingColumnError, match="party 'north' has no column 'bp'") as err:
        fed.secure_sum(["age", "bp"])
    assert (err.value.party, err.value.column) == ("north", "bp")
    assert _state(fed) == before


def test_dtype_conflict_warns_on_add_and_fails_on_use(fed):
    with pytest.warns(SchemaWarning, match="party 'odd': column 'age'"):
        fed.add_party("odd", pl.DataFrame({"age": ["forty"], "chol": [200.0]}))
    assert "age" in fed.schema.conflicts
    before = _state(fed)
    with pytest.raises(DtypeConflictError, match="party 'odd'") as err:
        fed.secure_sum("age")
    assert (err.value.party, err.value.column) == ("odd", "age")
    # Columns without a conflict still work.
    assert fed.secure_sum("chol", parties=["north", "odd"]).value["chol"] > 200
    assert _state(fed)[0] == before[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values(fed, bad):
    fed.add_party("west", pl.DataFrame({"age": [30, 40], "chol": [200.0, bad]}))
    before = _state(fed)
    with pytest.raises(NonFiniteValueError, match="party 'west'.*'chol'") as err:
        fed.secure_sum("chol")
    assert (err.value.party, err.value.column) == ("west", "chol")
    assert _state(fed) == before


def test_values_beyond_encodable_range(fed):
    fed.add_party("west", pl.DataFrame({"age": [30], "chol": [1e19]}))
    before = _state(fed)
    with pytest.raises(EncodingRangeError, match="party 'west'.*'sum:chol'"):
        fed.secure_sum("chol")
    assert _state(fed) == before
    # A wider declared range admits it.
    assert fed.secure_sum("chol", max_abs=1e20, frac_bits=8).value["chol"] > 1e19


def test_single_party_is_refused(fed):
    before = _state(fed)
    with pytest.raises(TooFewPartiesError, match="at least 2 parties"):
        fed.secure_sum("age", parties=["north"])
    with pytest.raises(TooFewPartiesError):
        fed.stats(["age"], parties=["north"])
    with pytest.raises(TooFewPartiesError):
        fed.group_counts("sex", parties=["north"])
    assert _state(fed) == before


def test_unknown_party(fed):
    with pytest.raises(UnknownPartyError, match="unknown party 'mars'"):
        fed.secure_sum("age", parties=["north", "mars"])


def test_callable_errors_name_the_party(fed):
    before = _state(fed)

    def shapes(df):
        return {"v": np.zeros(df.height)}  # differs per party

    with pytest.raises(ProtocolError, match="party 'south' returned entries"):
        fed.secure_sum(shapes)

    def boom(df):
        raise ZeroDivisionError("oops")

    with pytest.raises(LocalComputationError, match="party 'north'.*ZeroDivisionError") as err:
        fed.secure_sum(boom)
    assert err.value.party == "north"
    with pytest.raises(ProtocolError, match="not numeric"):
        fed.secure_sum(lambda df: {"s": "text"})
    assert _state(fed) == before


# -- what crosses the boundaries -----------------------------------------------------
def test_aggregator_never_receives_raw_values_or_local_aggregates(fed, hospitals):
    res = fed.secure_sum(["age", "chol"])
    to_aggregator = b"".join(res.transcript.received_by("aggregator"))
    assert to_aggregator
    needles = set()
    for df in hospitals.values():
        for col in ("age", "chol"):
            vals = df[col].drop_nulls().cast(pl.Float64).to_list()
            # Plain local aggregates (the sums each party computed) and their fixed-point encodings.
            local = math.fsum(vals)
            needles.add(struct.pack("<d", local))
            needles.add(struct.pack(">d", local))
            enc = round(local * 2**24) + (1 << (fed.encoding.value_bits - 1))
            needles.add(enc.to_bytes((enc.bit_length() + 7) // 8, "big"))
            needles.add(repr(local).encode())
            for v in vals[:20]:
                needles.add(struct.pack("<d", v))
    found = [n for n in needles if len(n) >= 6 and n in to_aggregator]
    assert not found
    # Only ciphertexts and public layout metadata reach the aggregator.
    kinds = {(m.kind, m.encrypted) for m in res.transcript if m.receiver == "aggregator"}
    assert kinds == {("ciphertexts", True), ("layout", False)}
    # The key holder receives only the aggregated ciphertexts, never a party's own ciphertexts.
    assert {m.sender for m in res.transcript if m.receiver == "keyholder"} == {"aggregator"}


def test_transcript_records_every_message(fed):
    res = fed.secure_sum(["age"])
    t = res.transcript
    names = fed.party_names
    assert {m.sender for m in t if m.kind == "ciphertexts"} == set(names)
    assert all(m.nbytes > 0 and m.encrypted for m in t if m.kind == "ciphertexts")
    # The key holder sends its public key once per party, not once per run.
    assert len(fed.transcript.filter(kind="public-key")) == len(names)
    fed.add_party("late", pl.DataFrame({"age": [50]}))
    again = fed.secure_sum(["age"])
    assert [m.receiver for m in again.transcript if m.kind == "public-key"] == ["late"]
    assert t.nbytes == sum(m.nbytes for m in t) == res.nbytes
    assert len(fed.transcript) >= len(t)
    df = t.to_polars()
    assert set(df.columns) >= {"sender", "receiver", "kind", "nbytes", "encrypted", "seconds"}


def test_repr_never_shows_rows(fed, hospitals):
    res = fed.secure_sum(["age"])
    text = repr(res) + res._repr_html_() + repr(fed) + fed._repr_html_() + repr(fed["north"])
    assert "honest-but-curious" in repr(res) and "collude" in res._repr_html_()
    first_ages = hospitals["north"]["age"].to_list()[:5]
    assert "age=" in repr(res)
    for a in first_ages:
        assert f"age={a}" not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        import pickle

        pickle.dumps(fed["north"])


def test_from_dir(tmp_path, hospitals):
    for name, df in hospitals.items():
        df.write_csv(tmp_path / f"{name}.csv")
    hospitals["east"].write_parquet(tmp_path / "extra.parquet")
    (tmp_path / "notes.txt").write_text("ignored")
    fed = fb.Federation.from_dir(tmp_path, key_bits=512, allow_insecure_key_size=True)
    assert fed.party_names == ["east", "extra", "north", "south"]
    assert fed["north"].n_rows == hospitals["north"].height
    (tmp_path / "north.ndjson").write_text('{"age": 1}\n')
    with pytest.raises(DuplicatePartyError, match="'north'"):
        fb.Federation.from_dir(tmp_path, key_bits=512, allow_insecure_key_size=True)
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataLoadError, match="no data files"):
        fb.Federation.from_dir(tmp_path / "sub")
    with pytest.raises(DataLoadError, match="no such folder"):
        fb.Federation.from_dir(tmp_path / "nowhere")


def test_pandas_and_polars_inputs(hospitals):
    fed = make_fed()
    fed.add_party("a", hospitals["north"].to_pandas())
    fed.add_party("b", hospitals["south"])
    assert fed.secure_sum("age").value["age"] == hospitals["north"]["age"].sum() + hospitals["south"]["age"].sum()


def test_process_backend_gives_same_result(hospitals):
    with make_fed(backend="process") as f:
        for name, df in hospitals.items():
            f.add_party(name, df)
        f._keys = _FED.keys
        res = f.secure_sum(["age", "chol"])
        vec = f.secure_sum(lambda df: {"v": np.arange(500.0) * df.height}, max_abs=1e6, frac_bits=0)
    pooled = pl.concat(hospitals.values())
    assert res.value["age"] == pooled["age"].sum()
    assert res.backend == "process"
    np.testing.assert_array_equal(vec.value["v"], np.arange(500.0) * pooled.height)


def test_unknown_backend():
    with pytest.raises(ConfigurationError, match="unknown backend"):
        make_fed(backend="gpu")


def test_add_parties_is_all_or_nothing(tmp_path, hospitals):
    fed = make_fed()
    hospitals["north"].write_csv(tmp_path / "north.csv")
    with pytest.raises(DataLoadError, match="party 'b'"):
        fed.add_parties({"a": tmp_path / "north.csv", "b": tmp_path / "missing.csv"})
    assert len(fed) == 0
    fed.add_parties({"a": tmp_path / "north.csv", "b": hospitals["south"]})
    assert fed.party_names == ["a", "b"]
    with pytest.raises(DuplicatePartyError, match="replace=True"):
        fed.add_parties({"b": hospitals["east"]})
    fed.add_parties({"b": hospitals["east"]}, replace=True)
    assert fed["b"].n_rows == hospitals["east"].height
