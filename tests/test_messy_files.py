"""Issue 13, part 1: messy multi-site files just work (schema agreement and bad input).

Every bad-input test also checks that the federation is unchanged (party names,
schema, transcript length).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench as fb
from fedbench import errors

from .conftest import TEST_KEY_BITS, make_fed

SMALL = {"allow_insecure_key_size": True, "key_bits": TEST_KEY_BITS}


def _state(fed: fb.Federation) -> tuple[Any, ...]:
    return (fed.party_names, repr(fed.schema), str(fed.schema.kinds), len(fed.transcript), len(fed.history),
            {p.name: p.schema for p in fed})


def _write(path: Path, text: str, *, bom: bool = False, encoding: str = "utf-8") -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


# -- the four messy sites of one study ----------------------------------------------------
def _study(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(25, 85, n)
    bp = rng.normal(130, 15, n).round(1)
    chol = rng.normal(220, 35, n).round(1)
    logit = 0.08 * (age - 55) + 0.05 * (bp - 130)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"age": age, "bp": bp, "chol": chol, "y": y})


def _cell(v: object) -> str:
    return "?" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _messy_sites(folder: Path) -> dict[str, pd.DataFrame]:
    """Four site files; returns the ground truth (None where a cell is missing)."""
    truth = {}
    # north: BOM, ',' separator, chol entirely missing ('?'), some bp missing.
    north = _study(70, 1)
    north["chol"] = np.nan
    north.loc[north.index % 9 == 0, "bp"] = np.nan
    # south: ';' separator, chol stored as integers.
    south = _study(60, 2)
    south["chol"] = south["chol"].round().astype(int)
    # east: decimals with '?' markers in chol and age.
    east = _study(80, 3)
    east.loc[east.index % 7 == 0, "chol"] = np.nan
    east["age"] = east["age"].astype(object)
    east.loc[east.index % 11 == 0, "age"] = None
    # west: plain, decimals, BOM too.
    west = _study(90, 4)
    for name, df, sep, bom in [("north", north, ",", True), ("south", south, ";", False),
                               ("east", east, ",", False), ("west", west, ",", True)]:
        lines = [sep.join(df.columns)] + [sep.join(_cell(v) for v in row) for row in df.itertuples(index=False)]
        _write(folder / f"{name}.csv", "\n".join(lines) + "\n", bom=bom)
        truth[name] = df
    return truth


def _pooled(truth: dict[str, pd.DataFrame], column: str) -> np.ndarray:
    v = pd.concat([pd.to_numeric(df[column], errors="coerce") for df in truth.values()])
    return v.dropna().to_numpy(dtype=float)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> tuple[fb.Federation, dict[str, pd.DataFrame], Path]:
    folder = tmp_path_factory.mktemp("messy")
    truth = _messy_sites(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fb.SchemaWarning)  # harmless differences must not warn
        fed = fb.Federation.from_dir(folder, null_values=["?"], **SMALL)
    return fed, truth, folder


def test_messy_sites_agree_on_one_schema(messy):
    fed, _, _ = messy
    rep = fed.schema
    assert rep.conflicts == {}
    assert rep.shared == ["age", "bp", "chol", "y"]  # the BOM is not part of the first name
    assert rep.dtypes["north"]["chol"] == "Null" and rep.dtypes["south"]["chol"] == "Int64"
    assert rep.dtypes["east"]["chol"] == "Float64"
    assert rep.agreed["chol"] == "Float64" and rep.agreed["age"] == "Int64"
    assert any("ints and floats" in n and "Float64" in n for n in rep.notes["chol"])
    assert "north: all-null (no declared type), takes Float64" in rep.notes["chol"]
    assert "chol" in rep.unified
    assert all(p.schema["chol"] == pl.Float64 for p in fed)  # what computations see
    assert fed["north"].declared_schema["chol"] == pl.Null
    text, html = repr(rep), rep._repr_html_()
    assert "north: all-null" in text and "ints and floats" in text
    assert "Float64" in html and "agreed" in html and "north: all-null" in html
    frame = rep.to_polars()
    assert frame.filter(pl.col("column") == "chol")["agreed type"].to_list() == ["Float64"]


def test_messy_sites_give_the_pooled_secure_statistics(messy):
    fed, truth, _ = messy
    chol, age, bp = _pooled(truth, "chol"), _pooled(truth, "age"), _pooled(truth, "bp")
    assert fed.mean("chol") == pytest.approx(chol.mean(), rel=1e-9)
    res = fed.secure_sum(["chol", "age"])
    assert res.value["chol"] == pytest.approx(chol.sum(), abs=1e-4)
    assert res.value["age"] == int(age.sum())  # integers are still summed exactly
    n_rows = sum(len(df) for df in truth.values())
    assert res.nulls_skipped == {"chol": n_rows - chol.size, "age": n_rows - age.size}
    st_ = fed.stats(["chol", "bp", "age"])
    for col, v in [("chol", chol), ("bp", bp), ("age", age)]:
        row = st_.filter(pl.col("column") == col).row(0, named=True)
        assert row["count"] == v.size
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-9)
        assert row["std"] == pytest.approx(v.std(ddof=1), rel=1e-6)
    # The default column choice follows the agreed types: chol is numeric everywhere now.
    assert set(fed.stats()["column"].to_list()) == {"age", "bp", "chol", "y"}


def test_messy_sites_pooled_plaintext_matches_a_pandas_reading(messy):
    # The ground truth above equals what pandas reads from the very files (BOM, ';', '?').
    _, truth, folder = messy
    frames = [pd.read_csv(f, sep=None, engine="python", na_values=["?"], encoding="utf-8-sig")
              for f in sorted(folder.glob("*.csv"))]
    pooled = pd.concat(frames)
    assert list(pooled.columns) == ["age", "bp", "chol", "y"]
    assert pooled["chol"].sum() == pytest.approx(_pooled(truth, "chol").sum())


def test_messy_sites_train_a_federated_model(messy):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fed, truth, _ = messy
    run = fed.fit(make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()), target="y",
                  features=["age", "bp", "chol"], test_size=0.25, seed=0)
    pooled = pd.concat(truth.values())
    x = pooled[["age", "bp", "chol"]].apply(pd.to_numeric, errors="coerce")
    acc = run.model.score(x, pooled["y"].to_numpy())
    majority = max(pooled["y"].mean(), 1 - pooled["y"].mean())
    assert acc > majority + 0.03 and acc > 0.65


def test_main_would_refuse_the_all_null_column(tmp_path):
    # Without null_values the '?' column is text: a genuine conflict, named with its fix.
    _messy_sites(tmp_path)
    with pytest.warns(fb.SchemaWarning, match="null_values"):
        fed = fb.Federation.from_dir(tmp_path, **SMALL)
    before = _state(fed)
    with pytest.raises(errors.DtypeConflictError, match=r"column 'chol'.*party '(north|east)'.*null_values") as e:
        fed.mean("chol")
    assert e.value.column == "chol" and e.value.party in ("north", "east")
    assert "String" in str(e.value) and "Int64" in str(e.value)
    assert _state(fed) == before


# -- property: random int/float/null mixes -> secure sum equals the plaintext sum --------------
_column = st.one_of(
    st.lists(st.integers(-10**6, 10**6) | st.none(), min_size=1, max_size=8).map(lambda v: ("int", v)),
    st.lists(st.floats(-1e5, 1e5, allow_nan=False).map(lambda x: round(x, 3)) | st.none(), min_size=1,
             max_size=8).map(lambda v: ("float", v)),
    st.integers(1, 6).map(lambda n: ("null", [None] * n)),
)


@settings(max_examples=12, deadline=None)
@given(st.lists(_column, min_size=2, max_size=4), st.sampled_from([",", ";"]), st.booleans())
def test_secure_sum_over_mixed_party_types_equals_plaintext(columns, sep, bom):
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_, values) in enumerate(columns):
            lines = [f"id{sep}x"] + [f"{j}{sep}{'?' if v is None else repr(v)}" for j, v in enumerate(values)]
            _write(Path(tmp) / f"p{i}.csv", "\n".join(lines) + "\n", bom=bom)
        fed = fb.Federation.from_dir(tmp, null_values=["?"], **SMALL)
        fed._keys = _KEYS
        rep = fed.schema
        assert rep.conflicts == {}
        values = [v for _, vals in columns for v in vals if v is not None]
        res = fed.secure_sum(["x"])
        kinds = {k for k, vals in columns if any(v is not None for v in vals)}
        if kinds == {"int"}:
            assert res.value["x"] == sum(values)  # exact
        else:
            assert res.value["x"] == pytest.approx(math.fsum(values), abs=1e-5)
        assert res.nulls_skipped["x"] == sum(v is None for _, vals in columns for v in vals)


_KEYS = make_fed().keys


# -- agreement rules (declared types only) -----------------------------------------------------
@pytest.mark.parametrize(("types", "agreed"), [
    ([pl.Int64, pl.Float64], pl.Float64),
    ([pl.Int32, pl.Int64], pl.Int64),
    ([pl.Int8, pl.Float32], pl.Float32),
    ([pl.UInt64, pl.Int64], pl.Float64),  # polars would say Int128, which numpy cannot hold
    ([pl.Boolean, pl.Int64], pl.Int64),
    ([pl.Boolean, pl.Boolean], pl.Boolean),
    ([pl.Null, pl.Int64], pl.Int64),
    ([pl.Null, pl.String], pl.String),
    ([pl.Null, pl.Null], pl.Null),
    ([pl.String, pl.Int64], None),
    ([pl.Date, pl.Datetime], None),
])
def test_agreement_rules(types, agreed):
    from fedbench.schema import agree_dtypes

    got, notes = agree_dtypes({f"p{i}": t for i, t in enumerate(types)})
    assert got == agreed
    if agreed is None and pl.String in types:
        assert notes and notes[0].startswith("conflict")


def test_frames_unify_and_a_leaving_party_restores_the_agreement():
    fed = make_fed()
    fed._keys = _KEYS
    big = 2**53 + 1  # not representable as a float64: must come back exact
    fed.add_party("a", pl.DataFrame({"x": [big, 2]}))
    fed.add_party("b", pl.DataFrame({"x": [1, 3]}, schema={"x": pl.Int32}))
    assert fed.schema.agreed["x"] == "Int64" and fed["b"].schema["x"] == pl.Int64
    assert fed.sum("x") == big + 6
    fed.add_party("c", pl.DataFrame({"x": [0.5]}))
    assert {p.name: p.schema["x"] for p in fed} == dict.fromkeys("abc", pl.Float64)
    assert fed["a"].declared_schema["x"] == pl.Int64
    # The party itself casts: its frame (what every protocol and local function sees) is Float64 now.
    assert fed["a"].compute(lambda df: df.schema["x"]) == pl.Float64
    assert fed.secure_sum(lambda df: {"t": float(df.schema["x"] == pl.Float64)}).value["t"] == 3
    assert fed.sum("x") == pytest.approx(float(big) + 6.5)
    fed.remove_party("c")
    assert fed["a"].schema["x"] == pl.Int64
    assert fed["a"].compute(lambda df: (df.schema["x"], df["x"][0])) == (pl.Int64, big)
    assert fed["b"].compute(lambda df: df.schema["x"]) == pl.Int64  # Int32 agreed up to Int64 with a
    assert fed.sum("x") == big + 6  # restored from the column as read, not from the float cast


def test_ints_and_floats_unify_for_training():
    from sklearn.linear_model import LinearRegression

    fed = make_fed()
    fed._keys = _KEYS
    rng = np.random.default_rng(0)
    for name, n, dtype in [("a", 40, pl.Int64), ("b", 50, pl.Float64), ("c", 30, pl.Int32)]:
        x = rng.integers(0, 50, n)
        fed.add_party(name, pl.DataFrame({"x": x, "y": 2.0 * x + 1}).with_columns(pl.col("x").cast(dtype)))
    run = fed.fit(LinearRegression(), target="y", features=["x"], test_size=0.0)
    assert run.model.coef_[0] == pytest.approx(2.0, rel=1e-6)


# -- reading options ----------------------------------------------------------------------------------
def test_separator_is_sniffed_from_the_header(tmp_path):
    fed = make_fed()
    fed.add_party("semi", _write(tmp_path / "semi.csv", "a;b\n1;2\n3;4\n"))
    assert fed["semi"].columns == ["a", "b"]
    fed.add_party("tab", _write(tmp_path / "tab.csv", "a\tb\n1\t2\n"))
    assert fed["tab"].columns == ["a", "b"]
    fed.add_party("quoted", _write(tmp_path / "quoted.csv", '"a;x",b\n1,2\n'))
    assert fed["quoted"].columns == ["a;x", "b"]
    fed.add_party("comma", _write(tmp_path / "comma.csv", "a;b\n1;2\n"), separator=",")
    assert fed["comma"].columns == ["a;b"]
    fed.add_party("dc", _write(tmp_path / "dc.csv", "a;b\n1,5;2\n"), decimal_comma=True)
    assert fed["dc"].schema["a"] == pl.Float64


def test_bom_is_stripped_and_duplicates_still_refused(tmp_path):
    fed = make_fed()
    fed.add_party("bom", _write(tmp_path / "bom.csv", "age,x\n1,2\n", bom=True))
    assert fed["bom"].columns == ["age", "x"]
    before = _state(fed)
    with pytest.raises(errors.DuplicateColumnError, match=r"party 'dup'.*dup.csv.*'a' twice") as e:
        fed.add_party("dup", _write(tmp_path / "dup.csv", "a;b;a\n1;2;3\n", bom=True))
    assert e.value.column == "a" and e.value.party == "dup"
    assert _state(fed) == before


def test_header_only_file_is_an_empty_party(tmp_path):
    fed = make_fed()
    fed.add_party("ok", pl.DataFrame({"a": [1]}))
    before = _state(fed)
    with pytest.raises(errors.EmptyPartyError, match=r"party 'hdr'.*hdr.csv") as e:
        fed.add_party("hdr", _write(tmp_path / "hdr.csv", "a,b\n"))
    assert e.value.party == "hdr"
    assert _state(fed) == before
    with pytest.raises(errors.EmptyPartyError, match="hdr"):
        fb.Federation.from_dir(tmp_path, **SMALL)


def test_non_utf8_bytes_name_party_file_and_column(tmp_path):
    fed = make_fed()
    fed.add_party("ok", pl.DataFrame({"id": [1], "city": ["Orléans"]}))
    before = _state(fed)
    path = _write(tmp_path / "lat.csv", "id;city\n1;Orléans\n2;Besançon\n", encoding="latin-1")
    with pytest.raises(errors.DataLoadError, match=r"party 'lat'.*lat.csv.*UTF-8.*column 'city'.*latin-1") as e:
        fed.add_party("lat", path)
    assert e.value.party == "lat"
    assert "Orl" not in str(e.value) and "Besan" not in str(e.value)  # no cell is quoted
    assert _state(fed) == before
    fed.add_party("lat", path, encoding="latin-1")
    assert fed["lat"].compute(lambda df: df["city"].to_list()) == ["Orléans", "Besançon"]
    fed.add_party("lossy", path, encoding="utf8-lossy")
    assert fed["lossy"].columns == ["id", "city"]
    with pytest.raises(errors.ConfigurationError, match="unknown encoding"):
        fed.add_party("bad", path, encoding="no-such-codec")


def test_text_against_numbers_is_a_named_conflict_with_its_fix(tmp_path):
    fed = make_fed()
    fed._keys = _KEYS
    fed.add_party("a", _write(tmp_path / "a.csv", "x;y\n1,234;1\n5,678;2\n"))  # thousands separators
    with pytest.warns(fb.SchemaWarning, match=r"party 'b': column 'x'.*party 'a'"):
        fed.add_party("b", _write(tmp_path / "b.csv", "x;y\n12;1\n"))
    before = _state(fed)
    with pytest.raises(errors.DtypeConflictError) as e:
        fed.sum("x")
    msg = str(e.value)
    assert e.value.party == "a" and e.value.column == "x"
    assert "'x'" in msg and "String" in msg and "Int64" in msg and "party 'a'" in msg
    assert "thousands separators" in msg and "null_values" in msg
    assert "a.csv (party 'a')" in msg  # the file to fix
    assert "1,234" not in msg and "5,678" not in msg
    assert "'x' kind conflict" in repr(fed.schema) and "conflict" in fed.schema._repr_html_()
    assert _state(fed) == before
    assert fed.sum("y") == 4  # the rest of the federation works


def test_inf_and_nan_strings(tmp_path):
    fed = make_fed()
    fed._keys = _KEYS
    fed.add_party("a", _write(tmp_path / "a.csv", "x\n1.5\n2.5\n"))
    fed.add_party("b", _write(tmp_path / "b.csv", "x\n1.0\ninf\nNaN\n"))  # polars reads these as floats
    before = _state(fed)
    with pytest.raises(errors.NonFiniteValueError, match=r"party 'b'.*column 'x'") as e:
        fed.mean("x")
    assert e.value.party == "b" and e.value.column == "x"
    assert _state(fed) == before
    # Other spellings read as text: a conflict naming the fix; declaring them as null markers fixes both.
    with pytest.warns(fb.SchemaWarning):
        fed.add_party("c", _write(tmp_path / "c.csv", "x\n1.0\nInfinity\nnan\n"))
    with pytest.raises(errors.DtypeConflictError, match=r"party 'c'.*null_values"):
        fed.mean("x")
    fed.remove_party("b")
    fed.remove_party("c")
    fed.add_party("c", tmp_path / "c.csv", null_values=["Infinity", "nan"])
    assert fed.mean("x") == pytest.approx((1.5 + 2.5 + 1.0) / 3)


def test_bad_reading_options_are_refused(tmp_path):
    fed = make_fed()
    fed.add_party("ok", pl.DataFrame({"a": [1]}))
    before = _state(fed)
    path = _write(tmp_path / "x.csv", "a\n1\n")
    with pytest.raises(errors.ConfigurationError, match="null_values"):
        fed.add_party("x", path, null_values=[1, 2])
    with pytest.raises(errors.ConfigurationError, match="separator"):
        fed.add_party("x", path, separator=";;")
    with pytest.raises(errors.ConfigurationError, match="null_values"):
        fb.Federation.from_dir(tmp_path, null_values=3, **SMALL)
    assert _state(fed) == before


def test_add_parties_takes_the_reading_options_all_or_nothing(tmp_path):
    fed = make_fed()
    fed._keys = _KEYS
    a = _write(tmp_path / "a.csv", "x;y\n?;1\n?;2\n")
    b = _write(tmp_path / "b.csv", "x;y\n1.5;1\n?;2\n")
    bad = _write(tmp_path / "bad.csv", "x\n")
    before = _state(fed)
    with pytest.raises(errors.EmptyPartyError):
        fed.add_parties({"a": a, "b": b, "bad": bad}, null_values="?")
    assert _state(fed) == before
    fed.add_parties({"a": a, "b": b}, null_values="?")
    assert fed.schema.agreed["x"] == "Float64" and fed.sum("x") == pytest.approx(1.5)


@pytest.mark.slow  # starts Ray (~12 s)
def test_ray_parties_cast_inside_their_actor(tmp_path):
    pytest.importorskip("ray", reason="the Ray backend is an optional extra")
    import os

    from fedbench.ray_backend import RayBackend

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    _write(tmp_path / "a.csv", "x,y\n?,1\n?,2\n")
    _write(tmp_path / "b.csv", "x;y\n3;1\n4;2\n")
    _write(tmp_path / "c.csv", "x,y\n0.5,1\n?,2\n")
    fed = fb.Federation.from_dir(tmp_path, null_values=["?"], backend=RayBackend(num_cpus=1, timeout=60), **SMALL)
    try:
        assert {p.name: p.declared_schema["x"] for p in fed} == {"a": pl.Null, "b": pl.Int64, "c": pl.Float64}
        assert all(p.schema["x"] == pl.Float64 for p in fed)
        assert fed["a"].compute(lambda df: str(df.schema["x"])) == "Float64"  # cast inside the actor
        assert fed.sum("x") == pytest.approx(7.5)
        fed.remove_party("c")
        assert fed["b"].compute(lambda df: str(df.schema["x"])) == "Int64"
        assert fed.sum("x") == 7
    finally:
        fed.close()


def test_federate_magic_declares_null_values(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from fedbench.notebook import REGISTRY

    _write(tmp_path / "a.csv", "x,y\n?,1\n?,2\n", bom=True)
    _write(tmp_path / "b.csv", "x;y\n3;1\nNA;2\n")
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext fedbench")
    for line in ("key_bits = 512", "allow_insecure_key_size = True", "figure_backend = 'static'"):
        ip.run_cell(f"%config Fedbench.{line}")
    try:
        res = ip.run_cell(f"%%federate --fed messy --null-values ?,NA\na: {tmp_path / 'a.csv'}\n"
                          f"b: {tmp_path / 'b.csv'}\n")
        assert res.success, res.error_in_exec or res.error_before_exec
        fed = ip.user_ns["messy"]
        assert fed.schema.conflicts == {} and fed.schema.agreed["x"] == "Int64"
        assert fed.sum("x") == 3
    finally:
        for name, fed in zip(REGISTRY.names, REGISTRY.clear(), strict=True):
            ip.user_ns.pop(name, None)
            fed.close()
