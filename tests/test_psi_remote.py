"""PSI with parties that live elsewhere (the path Ray actors take), without needing Ray.

A :class:`Remote` party behaves like a Ray party as far as the protocol can tell:
``remote`` is set, and every function it runs is round-tripped through
cloudpickle (as Ray ships it to the actor).  Every value that comes back from
the party is recorded, so the tests can show what reaches the driver: blinded
elements, positions and public counts, never an identifier encoding, a secret
scalar or a shuffle.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from typing import Any

import cloudpickle
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbench import party as party_module
from fedbench.errors import DuplicateKeyError, EmptyPartyError, NullValuesError
from fedbench.party import Party
from fedbench.psi import intersect
from fedbench.psi._parties import SetInfo
from fedbench.transcript import Channel


class Remote(Party):
    """A party whose functions travel as a Ray actor's would; records what it sends back."""

    remote = True

    def __init__(self, name: str, df: pl.DataFrame) -> None:
        super().__init__(name, df)
        self.returned: list[Any] = []

    def compute(self, fn):
        out = super().compute(pickle.loads(cloudpickle.dumps(fn)))
        self.returned.append(out)
        return out

    def psi_keys(self) -> list[str]:
        """Protocol state this party still keeps in its memory."""
        _ref, store = party_module._MEMORY.get(id(self._df), (None, {}))
        return [k for k in (store or {}) if k.startswith("psi-")]


def ids(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(start, start + n)]


def chan() -> Channel:
    return Channel("psi", [], keep_payloads=True)


def _leaked(parties: list[Remote], secrets_: list[str]) -> list[str]:
    blob = b"".join(pickle.dumps(v) for p in parties for v in p.returned)
    return [s for s in secrets_ if s.encode() in blob]


def test_cardinality_matches_the_local_path_and_returns_no_identifier():
    a_ids, b_ids, c_ids = ids("p", 300), ids("p", 200, 150), ids("p", 100, 250)
    remote = [Remote("a", pl.DataFrame({"id": a_ids})), Remote("b", pl.DataFrame({"id": b_ids})),
              Remote("c", pl.DataFrame({"id": c_ids}))]
    local = [Party(p.name, pl.DataFrame({"id": v})) for p, v in zip(remote, (a_ids, b_ids, c_ids), strict=True)]
    r = intersect(remote, "id", mode="cardinality", channel=chan())
    expected = intersect(local, "id", mode="cardinality", channel=chan())
    assert r.size == expected.size == len(set(a_ids) & set(b_ids) & set(c_ids))
    assert r.overlap.equals(expected.overlap)
    assert r.set_sizes == expected.set_sizes
    assert _leaked(remote, a_ids + b_ids + c_ids) == []
    assert all(p.psi_keys() == [] for p in remote)  # the run's secrets were dropped in every party


def test_reveal_returns_only_the_receivers_matches():
    a_ids, b_ids = ids("p", 120), ids("p", 80, 100)
    a, b = Remote("a", pl.DataFrame({"id": a_ids, "x": range(120)})), Remote("b", pl.DataFrame({"id": b_ids}))
    r = intersect([a, b], "id", mode="reveal", receiver="a", channel=chan())
    shared = sorted(set(a_ids) & set(b_ids))
    assert sorted(r.ids["id"].to_list()) == shared
    # The receiver's output (its own matched ids) is the only identifier data that came back.
    outputs = [v for v in a.returned if isinstance(v, pl.DataFrame)]
    assert len(outputs) == 1 and outputs[0].equals(r.ids)
    a.returned = [v for v in a.returned if not isinstance(v, pl.DataFrame)]
    assert _leaked([a, b], a_ids + b_ids) == []


def test_align_positions_match_the_local_path():
    a_ids, b_ids = ids("p", 50), list(reversed(ids("p", 40, 30)))
    a, b = Remote("a", pl.DataFrame({"id": a_ids})), Remote("b", pl.DataFrame({"id": b_ids}))
    r = intersect([a, b], "id", mode="align", channel=chan())
    pa, pb = r.positions["a"], r.positions["b"]
    assert [a_ids[i] for i in pa] == [b_ids[j] for j in pb]
    assert len(pa) == 20
    assert _leaked([a, b], a_ids + b_ids) == []


def test_bad_input_in_one_party_sends_nothing_and_leaves_no_state():
    a = Remote("a", pl.DataFrame({"id": ids("p", 10)}))
    b = Remote("b", pl.DataFrame({"id": [*ids("p", 5), None]}))
    c = chan()
    with pytest.raises(NullValuesError, match="party 'b': key column 'id'"):
        intersect([a, b], "id", nulls="error", channel=c)
    assert len(c.run) == 0
    assert a.psi_keys() == [] and b.psi_keys() == []
    d = Remote("d", pl.DataFrame({"id": ["x", "x", "y"]}))
    with pytest.raises(DuplicateKeyError, match="party 'd'"):
        intersect([a, d], "id", mode="align", channel=c)
    assert len(c.run) == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=30), min_size=2, max_size=4),
    st.sampled_from(["cardinality", "reveal"]),
)
def test_remote_path_equals_set_intersection(sets, mode):
    parties = [Remote(f"p{k}", pl.DataFrame({"id": s})) for k, s in enumerate(sets)]
    expected = set.intersection(*(set(s) for s in sets))
    r = intersect(parties, "id", mode=mode, receiver="p0" if mode == "reveal" else None, channel=chan())
    assert r.size == len(expected)
    if mode == "reveal":
        assert set(r.ids["id"].to_list()) == expected


# --------------------------------------------------------------------------- leakage claims vs what came back
#: A leakage sentence that says something is not sent (or stays in a party).
NOT_SENT = re.compile(r"\b(no party sent|not sent|never (?:sent|left|leaves?)|stayed in|does not hold)\b")


def _returned_shapes(parties: list[Remote]) -> list[str]:
    """Describe every value a party returned; fail on anything not in the protocol's list."""
    shapes = []
    for p in parties:
        for v in p.returned:
            if v is None:
                shapes.append("nothing")  # clean-up calls
            elif isinstance(v, SetInfo):
                # The only declaration a party makes: public facts, nothing else.
                assert {f.name for f in dataclasses.fields(v)} == {"name", "size"}, v
                shapes.append("set-info")
            elif isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], bytes) and isinstance(v[1], float):
                shapes.append("blinded-elements")
            elif isinstance(v, np.ndarray) and v.dtype.kind == "i":
                shapes.append("row-positions")
            elif isinstance(v, pl.DataFrame):
                shapes.append("receiver-ids")
            else:
                raise AssertionError(f"{p.name} returned an unexpected value of type {type(v).__name__}")
    return shapes


def _counts_not_returned(parties: list[Remote], r: Any) -> None:
    # "Counts of missing and duplicate identifiers stayed in each party: no party sent
    # them, and this result does not hold them."
    _returned_shapes(parties)
    for p in parties:
        for v in p.returned:
            if isinstance(v, SetInfo):
                assert v.size == r.set_sizes[v.name]
    assert r.missing == {} and r.duplicates == {}
    assert r._repr_html_().count("&ndash;") == 2 * len(parties)  # shown as unknown, per party


#: Each "not sent" claim a leakage statement can make, and the check that proves it.
CLAIMS = {"missing and duplicate": _counts_not_returned}


@pytest.mark.parametrize(
    "mode,kw,n",
    [("cardinality", {}, 2), ("cardinality", {}, 3), ("reveal", {"receiver": "p1"}, 2),
     ("reveal", {"receiver": "p0"}, 3), ("align", {"duplicates": "first"}, 2)],
)
def test_every_not_sent_claim_holds_for_what_the_parties_return(mode, kw, n):
    # Every party has missing and duplicate identifiers, in distinctive numbers.
    parties = []
    for k in range(n):
        values = [*ids("p", 40 + 10 * k, 5 * k), *([None] * (3 + k)), *ids("p", 2 + k, 5 * k)]
        parties.append(Remote(f"p{k}", pl.DataFrame({"id": values})))
    r = intersect(parties, "id", mode=mode, channel=chan(), **kw)
    local = [Party(p.name, p._df) for p in parties]
    assert intersect(local, "id", mode=mode, channel=chan(), **kw).missing == {
        f"p{k}": 3 + k for k in range(n)}  # the simulation still shows them, read locally
    claims = [s for s in re.split(r"(?<=\.) ", r.leakage) if NOT_SENT.search(s)]
    assert claims, r.leakage
    for sentence in claims:
        checks = [fn for key, fn in CLAIMS.items() if key in sentence]
        assert checks, f"no test checks this claim of the leakage statement: {sentence!r}"
        for check in checks:
            check(parties, r)


@pytest.mark.parametrize(
    "values,kw,error",
    [([*ids("p", 5), *([None] * 7)], {"nulls": "error"}, NullValuesError),
     ([*ids("p", 5), *(["p-00001"] * 13)], {"mode": "align"}, DuplicateKeyError),
     ([None] * 11, {}, EmptyPartyError)],
)
def test_errors_from_a_remote_party_carry_no_count(values, kw, error):
    # Errors travel from the party to the driver: the party's counts must not ride on them.
    a = Remote("a", pl.DataFrame({"id": ids("p", 10)}))
    b = Remote("b", pl.DataFrame({"id": pl.Series(values, dtype=pl.String)}))
    with pytest.raises(error, match="party 'b'") as err:
        intersect([a, b], "id", channel=chan(), **kw)
    assert not re.search(r"\d", str(err.value)), str(err.value)
