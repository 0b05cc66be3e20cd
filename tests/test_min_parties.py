"""One fewer-than-two-parties check (``secagg.check_enough_parties``) serves every multi-party computation."""

from __future__ import annotations

import ast

import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import TooFewPartiesError
from fedbench.secagg import MIN_PARTIES, check_enough_parties

from .conftest import make_fed

PACKAGE = fb.__file__.rsplit("/", 1)[0]


@pytest.fixture
def solo():
    f = make_fed()
    f.add_party("solo", pl.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"],
                                      "y": [0, 1, 0]}))
    return f


@pytest.mark.parametrize(("call", "what"), [
    (lambda f: f.mean("x"), "a secure computation"),
    (lambda f: f.secure_sum(lambda df: {"n": float(df.height)}), "a secure computation"),
    (lambda f: f.group_counts("g"), "a secure computation"),
    (lambda f: f.intersect("id"), "private set intersection"),
    (lambda f: f.fit(__import__("sklearn.linear_model").linear_model.LinearRegression(), target="y",
                     features=["x"]), "secure training"),
], ids=["mean", "secure_sum", "group_counts", "intersect", "fit"])
def test_one_party_is_refused_by_the_one_check_naming_it(solo, call, what):
    with pytest.raises(TooFewPartiesError, match=rf"^{what} needs at least {MIN_PARTIES} parties, got 1 \(solo\)"):
        call(solo)
    assert len(solo.transcript) == 0  # refused before any message


def test_the_check_counts_names_or_numbers():
    check_enough_parties(["a", "b"])
    check_enough_parties(2)
    with pytest.raises(TooFewPartiesError, match=r"^a secure sum needs at least 2 parties, got 0 \(none\): over one"):
        check_enough_parties([])
    with pytest.raises(TooFewPartiesError, match=r"^x needs at least 2 parties, got 1$"):
        check_enough_parties(1, what="x", hint="")


def test_no_other_module_writes_its_own_check():
    """No ``TooFewPartiesError("... at least ...")`` outside secagg/base.py: they call the helper."""
    from pathlib import Path

    found = []
    for path in Path(PACKAGE).rglob("*.py"):
        if path.name == "base.py" and path.parent.name == "secagg":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "TooFewPartiesError"
                    and "at least" in ast.unparse(node)):
                found.append(f"{path}:{node.lineno}")
    assert not found, found
