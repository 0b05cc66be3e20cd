"""Every deprecated spelling (issue 14, item 7) warns, names its replacement, and gives the same result.

The deprecated names are found in the code by their warning helpers:
``statistics.renamed`` (``what=``, ``column=``), ``statistics.null_policy``
(``nulls="drop"``), ``Federation.intersect`` (``nulls="drop"``),
``learn.api.DEPRECATED_OPTIONS`` (strategy options on ``fit``) and
``learn.vertical.api._features_arg`` (``fit_vertical(features=)``).
``test_every_deprecation_site_is_covered`` fails when a new one appears
without a case here.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import fedbench as fb
from fedbench import statistics
from fedbench.learn import FedAvg, FedNewton, FedProx
from fedbench.learn.api import DEPRECATED_OPTIONS

from .conftest import make_fed

PACKAGE = Path(fb.__file__).parent
HERE = Path(__file__).resolve()

#: (method, positional args, old keywords, new keywords, text the warning must contain).
RENAMED: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any], str]] = [
    ("secure_sum", (), {"what": ["age", "chol"]}, {"columns": ["age", "chol"]}, "use columns="),
    ("count", (), {"column": "chol"}, {"columns": "chol"}, "use columns="),
    ("sum", (), {"column": "age"}, {"columns": "age"}, "use columns="),
    ("mean", (), {"column": "chol"}, {"columns": "chol"}, "use columns="),
    ("var", (), {"column": "chol"}, {"columns": "chol"}, "use columns="),
    ("std", (), {"column": "chol"}, {"columns": "chol"}, "use columns="),
    ("histogram", (), {"column": "age", "bins": 4, "range": (0, 100)},
     {"columns": "age", "bins": 4, "range": (0, 100)}, "use columns="),
    ("quantile", (), {"column": "age", "q": [0.25, 0.5], "epsilon": 1e3, "bounds": (0, 120)},
     {"columns": "age", "q": [0.25, 0.5], "epsilon": 1e3, "bounds": (0, 120)}, "use columns="),
]
#: Every statistic with a ``nulls`` argument: ``"drop"`` is the old spelling of ``"skip"``.
NULLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("secure_sum", (["chol"],), {}),
    ("sum", ("chol",), {}),
    ("mean", ("chol",), {}),
    ("var", ("chol",), {}),
    ("std", ("chol",), {}),
    ("stats", (["age", "chol"],), {}),
    ("cov", (["age", "chol"],), {}),
    ("corr", (["age", "chol"],), {}),
    ("histogram", ("chol", 4, (100, 400)), {}),
    ("quantile", ("chol", 0.5), {"epsilon": 1e3, "bounds": (100, 400)}),
]
DP = {"quantile"}  # noisy releases: equal up to the (tiny, epsilon 1000) noise


@pytest.fixture
def dfed(hospitals):
    f = make_fed()
    for name, df in hospitals.items():
        f.add_party(name, df)
    f.set_budget(epsilon=1e5, delta=1e-6)
    return f


def _strict() -> warnings.catch_warnings:
    """The new spelling must not warn at all."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", FutureWarning)
    warnings.simplefilter("error", DeprecationWarning)
    return ctx


def _same(method: str, old: Any, new: Any) -> None:
    assert type(old) is type(new)
    a, b = old.to_polars(), new.to_polars()
    if method in DP:
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-2, abs_tol=1.0)
    else:
        assert_frame_equal(a, b)
    assert old.parties == new.parties


def _call(dfed: fb.Federation, via: str, method: str, *args: Any, **kwargs: Any) -> Any:
    if via == "federation":
        return getattr(dfed, method)(*args, **kwargs)
    return getattr(statistics, method)(dfed.coordinator, *args, **kwargs)


@pytest.mark.parametrize("via", ["federation", "statistics"])
@pytest.mark.parametrize(("method", "args", "old", "new", "text"), RENAMED, ids=[c[0] for c in RENAMED])
def test_renamed_argument_warns_and_gives_the_new_spellings_result(dfed, via, method, args, old, new, text):
    old_name = next(k for k in old if k not in new)
    with pytest.warns(FutureWarning, match=rf"{method}: {old_name}= is deprecated, {re.escape(text)}") as rec:
        before = _call(dfed, via, method, *args, **old)
    # The warning points at the user's line, not into fedbench.
    assert {Path(w.filename).resolve() for w in rec if issubclass(w.category, FutureWarning)} == {HERE}
    ctx = _strict()
    try:
        after = _call(dfed, via, method, *args, **new)
    finally:
        ctx.__exit__(None, None, None)
    _same(method, before, after)


@pytest.mark.parametrize(("method", "args", "kwargs"), NULLS, ids=[c[0] for c in NULLS])
def test_nulls_drop_warns_and_equals_nulls_skip(dfed, method, args, kwargs):
    with pytest.warns(FutureWarning, match='nulls="drop" is deprecated, use nulls="skip"') as rec:
        before = getattr(dfed, method)(*args, nulls="drop", **kwargs)
    assert {Path(w.filename).resolve() for w in rec if issubclass(w.category, FutureWarning)} == {HERE}
    ctx = _strict()
    try:
        after = getattr(dfed, method)(*args, nulls="skip", **kwargs)
    finally:
        ctx.__exit__(None, None, None)
    _same(method, before, after)


def test_both_spellings_at_once_are_refused(dfed):
    with pytest.warns(FutureWarning), pytest.raises(fb.ConfigurationError, match="pass columns= only"):
        dfed.mean("age", column="chol")
    with pytest.raises(TypeError, match="unexpected keyword"):
        dfed.mean("age", colum="chol")


def test_intersect_nulls_drop_warns_and_equals_skip():
    fed = make_fed()
    fed.add_party("a", pl.DataFrame({"id": [1, 2, 3, None, 5]}))
    fed.add_party("b", pl.DataFrame({"id": [2, 3, 4, None, 6, 5]}))
    with pytest.warns(FutureWarning, match='intersect: nulls="drop" is deprecated, use nulls="skip"') as rec:
        old = fed.intersect("id", nulls="drop")
    assert {Path(w.filename).resolve() for w in rec} == {HERE}
    ctx = _strict()
    try:
        new = fed.intersect("id", nulls="skip")
    finally:
        ctx.__exit__(None, None, None)
    assert old.size == new.size == 3 and old.missing == new.missing and old.set_sizes == new.set_sizes


# -- learn: strategy options on fit, features= on fit_vertical ---------------------------------------------
@pytest.fixture
def lfed():
    rng = np.random.default_rng(3)
    f = make_fed()
    for name, n in (("a", 60), ("b", 80)):
        x = rng.normal(size=(n, 3))
        y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
        f.add_party(name, pl.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "y": y,
                                        "label": (y > 0).astype(np.int64)}))
    return f


def _sgd() -> Any:
    from sklearn.linear_model import SGDRegressor

    return SGDRegressor(random_state=0)


def _logreg() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


#: option -> (estimator factory, target, old value, strategy object of the new spelling)
FIT_OPTIONS: dict[str, tuple[Any, str, Any, Any]] = {
    "local_epochs": (_sgd, "y", 3, lambda: FedAvg(local_epochs=3, rounds=3)),
    "proximal_mu": (_sgd, "y", 0.5, lambda: FedProx(proximal_mu=0.5, rounds=3)),
    "fraction_fit": (_sgd, "y", 1.0, lambda: FedAvg(fraction_fit=1.0, rounds=3)),
    "server_learning_rate": (_sgd, "y", 0.5, lambda: FedAvg(server_learning_rate=0.5, rounds=3)),
    "tol": (_logreg, "label", 1e-3, lambda: FedNewton(tol=1e-3, rounds=15)),
}
#: the strategy name the old spelling runs with (``fit(strategy=..., option=...)``)
FIT_STRATEGY = {"local_epochs": "fedavg", "proximal_mu": "fedprox", "fraction_fit": "fedavg",
                "server_learning_rate": "fedavg", "tol": "newton"}


def test_the_fit_cases_cover_every_deprecated_option():
    assert set(FIT_OPTIONS) | {"dp"} == set(DEPRECATED_OPTIONS)


@pytest.mark.parametrize("option", sorted(FIT_OPTIONS))
def test_fit_strategy_option_warns_and_equals_the_strategy_object(lfed, option):
    make, target, value, strategy = FIT_OPTIONS[option]
    feats = ["x0", "x1", "x2"]
    text = rf"fit\({option}=\.\.\.\) is deprecated.*{re.escape(DEPRECATED_OPTIONS[option])}"
    with pytest.warns(FutureWarning, match=text):
        old = lfed.fit(make(), target=target, features=feats, strategy=FIT_STRATEGY[option],
                       rounds=strategy().rounds, secure=False, test_size=0.0, **{option: value})
    ctx = _strict()
    try:
        new = lfed.fit(make(), target=target, features=feats, strategy=strategy(), secure=False, test_size=0.0)
    finally:
        ctx.__exit__(None, None, None)
    np.testing.assert_array_equal(old.model.coef_, new.model.coef_)
    np.testing.assert_array_equal(np.atleast_1d(old.model.intercept_), np.atleast_1d(new.model.intercept_))


def test_fit_dp_option_warns_and_spends_what_the_strategy_object_spends(lfed):
    feats = ["x0", "x1", "x2"]
    lfed.set_budget(epsilon=100.0, delta=1e-5)
    cfg = dict(noise_multiplier=1.0, clip=1.0, sample_rate=1.0)
    with pytest.warns(FutureWarning, match=re.escape(DEPRECATED_OPTIONS["dp"])):
        old = lfed.fit(_sgd(), target="y", features=feats, strategy="fedavg", rounds=2, secure=False,
                       test_size=0.0, dp=fb.DPConfig(**cfg))
    ctx = _strict()
    try:
        new = lfed.fit(_sgd(), target="y", features=feats, strategy=FedAvg(dp=fb.DPConfig(**cfg), rounds=2),
                       secure=False, test_size=0.0)
    finally:
        ctx.__exit__(None, None, None)
    # DP noise is fresh in every run: the same mechanism, rounds and epsilon, not the same coefficients.
    assert old.privacy.dp is not None and new.privacy.dp is not None
    assert old.privacy.dp["epsilon"] == pytest.approx(new.privacy.dp["epsilon"], rel=1e-9)
    assert old.privacy.dp["epsilon"] > 0
    assert old.model.coef_.shape == new.model.coef_.shape


def test_fit_option_and_strategy_object_together_are_refused(lfed):
    with pytest.warns(FutureWarning), pytest.raises(fb.ConfigurationError, match="set them on the strategy"):
        lfed.fit(_sgd(), target="y", strategy=FedAvg(), local_epochs=2, secure=False)


def test_fit_vertical_features_warns_and_equals_party_features():
    rng = np.random.default_rng(5)
    n = 80
    x = rng.normal(size=(n, 3))
    y = (x @ np.array([1.5, -1.0, 0.5]) > 0).astype(np.int64)
    ids = np.arange(n)
    fed = make_fed()
    fed.add_party("bank", pl.DataFrame({"id": ids, "x0": x[:, 0], "y": y}))
    fed.add_party("shop", pl.DataFrame({"id": ids[::-1], "x1": x[::-1, 1], "x2": x[::-1, 2]}))
    cols = {"bank": ["x0"], "shop": ["x1", "x2"]}
    kw: dict[str, Any] = dict(on="id", target="y", label_party="bank", test_size=0.0, rounds=5)
    with pytest.warns(FutureWarning, match=r"fit_vertical\(features=\.\.\.\) is deprecated.*use party_features="):
        old = fed.fit_vertical(_logreg(), features=cols, **kw)
    ctx = _strict()
    try:
        new = fed.fit_vertical(_logreg(), party_features=cols, **kw)
    finally:
        ctx.__exit__(None, None, None)
    assert old.features_by_party == new.features_by_party == cols
    for party in cols:
        np.testing.assert_allclose(old.coef_by_party[party], new.coef_by_party[party], rtol=1e-9, atol=1e-12)
    assert old.intercept == pytest.approx(new.intercept, rel=1e-9, abs=1e-12)
    with pytest.raises(fb.ConfigurationError, match="pass party_features= only"):
        fed.fit_vertical(_logreg(), features=cols, party_features=cols, **kw)


# -- the cases above cover every deprecation in the code ------------------------------------------------------
def _renamed_calls() -> set[tuple[str, str]]:
    """(call, old name) of every ``renamed(...)`` call in fedbench/statistics.py."""
    tree = ast.parse((PACKAGE / "statistics.py").read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "renamed":
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg in ("old", "call")}
            out |= {(kw["call"], old) for old in kw["old"]}
    return out


def _functions_calling(name: str) -> set[str]:
    tree = ast.parse((PACKAGE / "statistics.py").read_text(encoding="utf-8"))
    out = set()
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(fn)):
            out.add(fn.name)
    return out


def test_every_deprecation_site_is_covered():
    covered = {(m, next(k for k in old if k not in new)) for m, _, old, new, _ in RENAMED}
    assert _renamed_calls() == covered
    public = {f.__name__ for f in statistics.STATISTICS}
    # quantile passes nulls on to histogram, which maps "drop"; it is covered as a public method all the same.
    assert (_functions_calling("null_policy") & public) | {"quantile"} == {m for m, _, _ in NULLS}
