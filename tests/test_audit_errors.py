"""Audit item 2: no error, warning or log line carries a value computed from a party's data.

Every error path a party's data can trigger is provoked with distinctive data (a party
whose local sum is 6933.123456, 37 nulls, 29 duplicated identifiers...) and everything
the caller can see of the error is searched for those values in several renderings:
``str``, ``repr``, ``args``, every attribute, the ``__cause__``/``__context__`` chain,
warnings and log records.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import EncodingRangeError, FedbenchError

from .conftest import make_fed

#: east's column ``v`` sums to this (its local aggregate the audit read out of an error).
EAST_SUM = 6933.123456
N_NULLS = 37  # nulls in east's column ``w``
N_DUP = 13  # identifiers repeated in east's ``id``


def _east() -> pl.DataFrame:
    n = 120
    v = np.full(n, 1.0)
    v[:29] = 150.0  # with the last row, 30 rows above 100: a data-dependent shape
    v[-1] = EAST_SUM - v[:-1].sum()
    w = [None if i < N_NULLS else float(i) for i in range(n)]
    ids = [f"id-{i % (n - N_DUP)}" for i in range(n)]
    inf_col = [math.inf if i == 5 else 1.0 for i in range(n)]
    return pl.DataFrame({"v": v, "w": w, "id": ids, "u": inf_col})


def _west() -> pl.DataFrame:
    n = 50
    return pl.DataFrame({"v": np.linspace(1.0, 2.0, n), "w": np.arange(n, dtype=float),
                         "id": [f"id-{i}" for i in range(n)], "u": np.ones(n)})


def _secrets() -> list[float]:
    """Every value computed from east's data that an error might quote."""
    east = _east()
    v = east["v"].to_numpy()
    out = [EAST_SUM, float(v.sum()), float(v.mean()), float((v**2).sum()), float(v[-1]), N_NULLS, N_DUP,
           int((v > 100).sum()),
           float(east["w"].drop_nulls().sum()), float(east["v"].sum() * 2**24)]
    return out


def _renderings(x: float) -> set[str]:
    out = {repr(x), str(x), f"{x:g}", f"{x:.6g}", f"{x:.2f}", f"{x:.1f}", f"{x:.4g}", f"{x:e}"}
    if math.isfinite(x):
        out |= {str(round(x)), str(int(x)), repr(float(x))}
    return {s for s in out if s}


def _leaks(text: str, secrets: list[float]) -> list[str]:
    found = []
    for x in secrets:
        for s in _renderings(x):
            if re.search(rf"(?<![\w.]){re.escape(s)}(?![\w])", text):
                found.append(s)
    # Non-finite values are data too: an "inf" or "nan" quoted as a value (not "infinity", "NaN and").
    found += re.findall(r"(?<![\w])-?inf(?![\w])|(?<![\w])nan(?![\w])", text)
    return found


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _visible(exc: BaseException) -> str:
    """Everything the caller can read off an exception, without walking traceback frames."""
    parts = []
    for e in _chain(exc):
        parts += [str(e), repr(e), repr(e.args)]
        parts += [repr(v) for v in vars(e).values()]
    return "\n".join(parts)


def _fed() -> fb.Federation:
    fed = make_fed(audit=True)
    fed.add_party("east", _east())
    fed.add_party("west", _west())
    return fed


def _state(fed: fb.Federation) -> tuple[Any, ...]:
    return (fed.party_names, str(fed.schema.kinds), len(fed.transcript), len(fed.history))


def _boom(df: pl.DataFrame) -> dict[str, float]:
    raise ValueError(f"could not handle local sum {df['v'].sum()!r} ({df.height} rows)")


def _shape_by_data(df: pl.DataFrame) -> dict[str, np.ndarray]:
    return {"x": np.zeros(int((df["v"] > 100).sum()))}


def _nan_result(df: pl.DataFrame) -> dict[str, float]:
    return {"r": float(df["v"].sum()) * math.inf}


#: (name, call, expected error type): each provokes one error path with east's data.
PATHS: list[tuple[str, Callable[[fb.Federation], Any], type[Exception]]] = [
    ("column sum beyond max_abs", lambda f: f.secure_sum(["v"], max_abs=1000), EncodingRangeError),
    ("two columns beyond max_abs", lambda f: f.secure_sum(["w", "v"], max_abs=3000), EncodingRangeError),
    ("function sum beyond max_abs",
     lambda f: f.secure_sum(lambda df: {"s": float(df["v"].sum())}, max_abs=100), EncodingRangeError),
    ("non-finite column", lambda f: f.secure_sum(["u"]), fb.NonFiniteValueError),
    ("non-finite function result", lambda f: f.secure_sum(_nan_result), fb.NonFiniteValueError),
    ("nulls refused", lambda f: f.secure_sum(["w"], nulls="error"), fb.NullValuesError),
    ("stats nulls refused", lambda f: f.stats(["w"], nulls="error"), fb.NullValuesError),
    ("local function raises", lambda f: f.secure_sum(_boom), fb.LocalComputationError),
    ("data-dependent shapes", lambda f: f.secure_sum(_shape_by_data), fb.ProtocolError),
    ("psi duplicates", lambda f: f.intersect("id", mode="align", duplicates="error"), fb.DuplicateKeyError),
]


@pytest.mark.parametrize("name,call,kind", PATHS, ids=[p[0] for p in PATHS])
def test_error_paths_quote_no_data(name, call, kind, caplog):
    fed = _fed()
    before = _state(fed)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(kind) as info:
            call(fed)
    assert getattr(info.value, "party", None) in ("east", None) and "east" in str(info.value)
    seen = _visible(info.value)
    seen += "\n".join(str(w.message) for w in caught)
    seen += "\n".join(r.getMessage() for r in caplog.records)
    assert not _leaks(seen, _secrets()), f"{name}: {_leaks(seen, _secrets())} in {seen!r}"
    assert _state(fed) == before


def _frame_locals(exc: BaseException) -> str:
    out = []
    tb = exc.__traceback__
    while tb is not None:
        out += [repr(v) for k, v in tb.tb_frame.f_locals.items() if k not in ("self", "fed", "f", "call")]
        tb = tb.tb_next
    return "\n".join(out)


def test_traceback_frames_hold_no_local_aggregate():
    # IPython's verbose tracebacks, pdb and pytest -l show every frame's locals.
    fed = _fed()
    with pytest.raises(EncodingRangeError) as info:
        fed.secure_sum(["v"], max_abs=1000)
    assert not _leaks(_frame_locals(info.value), [EAST_SUM, float(_east()["v"].sum())])


def test_foreign_exception_keeps_only_its_type():
    fed = _fed()
    with pytest.raises(fb.LocalComputationError) as info:
        fed.secure_sum(_boom)
    err = info.value
    assert err.original_type == "ValueError" and "ValueError" in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert "could not handle" not in _visible(err)


def test_chained_fedbench_error_crosses_without_its_chain():
    # Shared protocol code may raise a fedbench error "from" a foreign one that quotes a row.
    def normalise(df: pl.DataFrame) -> dict[str, float]:
        try:
            raise KeyError(f"row {df['v'][-1]!r}")
        except KeyError as exc:
            raise fb.NormalizationError("could not normalise", column="v") from exc

    fed = _fed()
    with pytest.raises(fb.NormalizationError) as info:
        fed.secure_sum(normalise)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert info.value.party == "east"
    assert not _leaks(_visible(info.value), [float(_east()["v"][-1])])


def test_unreadable_file_does_not_quote_its_cells(tmp_path):
    path = tmp_path / "east.csv"
    path.write_text("v,w\n1,2\n2,3\nsecret-6933.123456,4\n")
    fed = make_fed()
    with pytest.raises(fb.DataLoadError, match="party 'east'.*east.csv") as info:
        fed.add_party("east", path, infer_schema_length=1)
    seen = _visible(info.value)
    assert "secret" not in seen and not _leaks(seen, [EAST_SUM]), seen
    assert fed.party_names == []


def test_dp_release_beyond_max_abs_quotes_no_noisy_value():
    # Under DP, the refused value is the party's local sum plus its own noise share: still data.
    fed = _fed()
    fed.set_budget(10.0, 1e-6)
    with pytest.raises(EncodingRangeError) as info:
        fed.secure_sum(["v"], epsilon=1.0, bounds=(0.0, 200.0), max_abs=1000)
    seen = _visible(info.value)
    assert not re.search(r"\d+\.\d{3,}", seen), seen  # no noisy local sum, in any precision
    assert not _leaks(seen, _secrets())


def test_max_abs_probe_learns_only_the_power_of_two_bracket():
    """The audit's probe: the analyst bisects max_abs to read east's local sum out of refusals.

    A refusal is one bit ("exceeds / does not") and is inherent to refusing.  Because the
    encoding rounds max_abs up to a power of two, a whole bisection learns only the binary
    order of magnitude of the local sum: two parties whose sums differ but share the
    bracket [4096, 8192) give identical probe transcripts, and the messages quote nothing.
    """

    def probe(east: pl.DataFrame) -> list[tuple[float, str]]:
        fed = make_fed()
        fed.add_party("east", east)
        fed.add_party("west", _west())
        lo, hi, seen = 1.0, 1e6, []
        for _ in range(30):
            mid = (lo + hi) / 2
            try:
                fed.secure_sum(["v"], max_abs=mid)
                seen.append((mid, "ok"))
                hi = mid
            except EncodingRangeError as exc:
                assert exc.party == "east"
                seen.append((mid, str(exc)))
                lo = mid
        return seen

    other = _east().with_columns(pl.col("v") * (5000.5 / EAST_SUM))  # local sum 5000.5, same bracket
    a, b = probe(_east()), probe(other)
    assert [m for m, _ in a] == [m for m, _ in b]
    assert [r == "ok" for _, r in a] == [r == "ok" for _, r in b]
    assert not _leaks("\n".join(r for _, r in a), _secrets())
    assert not _leaks("\n".join(r for _, r in b), [5000.5])


def test_local_function_oracles_are_not_protected():
    """What SECURITY.md lists as *not* protected about local functions, pinned so the text stays true.

    A local function is the analyst's code.  It can (a) shift a value before the range check, so
    refusals bisect one party's local aggregate far below the power-of-two bracket; (b) fail on
    purpose under DP, which names the party and spends nothing; (c) return zero everywhere but in
    one party, so the exact "aggregate" is that party's value; (d) under-declare its sensitivity,
    which voids its epsilon.  If fedbench ever closes one of these, this test fails and the
    documentation must change with it.
    """
    fed = _fed()
    fed.set_budget(epsilon=1.0, delta=1e-6)

    def refused(c: float) -> bool:
        try:
            fed.secure_sum(lambda df: {"s": float(df["v"].sum()) - c if df.height == 120 else 0.0}, max_abs=1.0)
        except EncodingRangeError as exc:
            assert exc.party == "east"
            return True
        return False

    # (a) both sides of EAST_SUM inside one power-of-two bracket [4096, 8192): finer than the bracket.
    assert refused(EAST_SUM - 2.0) and not refused(EAST_SUM - 0.5)

    # (b) a deliberate failure under DP names the party and leaves the budget untouched.
    def fails_if_above(c: float):
        def fn(df: pl.DataFrame) -> dict[str, float]:
            if df.height == 120 and float(df["v"].sum()) > c:  # east only
                raise KeyError("probe")
            return {"s": 0.0}
        return fn

    with pytest.raises(fb.errors.LocalComputationError) as info:
        fed.secure_sum(fails_if_above(EAST_SUM - 1), epsilon=0.5, sensitivity=1.0)
    assert info.value.party == "east" and "KeyError" in str(info.value)
    fed.secure_sum(fails_if_above(EAST_SUM + 1), epsilon=0.5, sensitivity=1.0)  # the other branch: released
    assert fed.budget.spent("east")[0] == pytest.approx(0.5)  # only the call that released was charged

    # ... and a failure can carry any value, in one request: a fedbench exception keeps its message,
    # and the type name of a foreign exception is whatever class the function defines.
    def carries(df: pl.DataFrame) -> dict[str, float]:
        if df.height == 120:
            raise fb.ConfigurationError(f"sum is {float(df['v'].sum())!r}")
        return {"s": 0.0}

    with pytest.raises(fb.ConfigurationError, match=re.escape(repr(float(_east()["v"].sum())))):
        fed.secure_sum(carries, epsilon=0.5, sensitivity=1.0)
    named = type(f"E{int(EAST_SUM)}", (Exception,), {})

    def named_after(df: pl.DataFrame) -> dict[str, float]:
        if df.height == 120:
            raise named()
        return {"s": 0.0}

    with pytest.raises(fb.errors.LocalComputationError, match=f"E{int(EAST_SUM)}"):
        fed.secure_sum(named_after, epsilon=0.5, sensitivity=1.0)
    assert fed.budget.spent("east")[0] == pytest.approx(0.5)  # neither was charged

    # (c) zero in every party but one: the exact "aggregate" is east's own local sum.
    only_east = fed.secure_sum(lambda df: {"s": float(df["v"].sum()) if df.height == 120 else 0.0})
    assert only_east.value["s"] == pytest.approx(EAST_SUM, abs=1e-4)

    # (d) a false sensitivity: the noise is sized for 1, the value scaled by 1e6, so the release reads it.
    fed2 = _fed()
    fed2.set_budget(epsilon=1.0, delta=1e-6)
    lied = fed2.secure_sum(lambda df: {"s": float(df["v"].sum()) * 1e6 if df.height == 120 else 0.0},
                           epsilon=1.0, sensitivity=1.0, max_abs=2.0**40)
    assert lied.value["s"] / 1e6 == pytest.approx(EAST_SUM, abs=1e-3)


@pytest.mark.slow  # starts Ray (~13 s)
def test_ray_party_error_crosses_without_remote_traceback(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from fedbench.ray_backend import RayBackend

    _east().drop("u").write_csv(tmp_path / "east.csv")
    _west().drop("u").write_csv(tmp_path / "west.csv")
    # A local instance on loopback (the sandbox's default node address does not work for the raylet).
    ray.init(address="local", num_cpus=1, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    backend = RayBackend(timeout=120)
    try:
        fed = make_fed(backend=backend)
        fed.add_party("east", tmp_path / "east.csv")
        fed.add_party("west", tmp_path / "west.csv")
        for call, kind in [(lambda: fed.secure_sum(_boom), fb.LocalComputationError),
                           (lambda: fed.secure_sum(["v"], max_abs=1000), EncodingRangeError)]:
            with pytest.raises(kind) as info:
                call()
            err = info.value
            assert err.party == "east"
            assert not isinstance(err.__context__, ray.exceptions.RayTaskError)
            seen = _visible(err)
            assert "could not handle" not in seen and not _leaks(seen, _secrets()), seen
    finally:
        backend.close()
        ray.shutdown()


def test_every_error_is_a_fedbench_error():
    fed = _fed()
    for name, call, _ in PATHS:
        with pytest.raises(FedbenchError):
            call(fed)
        assert name
