"""Randomised query sequences against the privacy ledger (hypothesis).

Invariants: spent never exceeds a budget (up to the 1e-9 relative tolerance),
a refused request leaves the ledger (in memory and on disk) byte-identical and
is recorded as a refusal, and for pure-DP releases the ledger agrees exactly
with an oracle that sums epsilons.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbench.dp import BudgetExceededError, GaussianEvent, PrivacyLedger, PureDPEvent
from fedbench.dp.accounting import TOLERANCE

PARTIES = ["a", "b", "c"]
DELTA = 1e-6

epsilons = st.one_of(
    st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0]),
    st.floats(min_value=1e-3, max_value=1.5, allow_nan=False, allow_infinity=False),
)
budget_values = st.one_of(
    st.sampled_from([0.5, 1.0, 2.0]),
    st.floats(min_value=0.05, max_value=3.0, allow_nan=False, allow_infinity=False),
)
budgets = st.fixed_dictionaries({p: budget_values for p in PARTIES})
touched = st.lists(st.sampled_from(PARTIES), min_size=1, max_size=3, unique=True)
pure_ops = st.tuples(st.just("pure"), touched, epsilons, st.integers(min_value=1, max_value=3))
exact_ops = st.tuples(st.just("exact"), touched, st.just(0.0), st.just(1))
sequences = st.lists(st.one_of(pure_ops, pure_ops, pure_ops, exact_ops), max_size=30)


def snapshot(ledger: PrivacyLedger) -> bytes:
    return json.dumps([e.to_json() for e in ledger.entries], sort_keys=True).encode()


def run_pure_sequence(ledger: PrivacyLedger, budget: dict[str, float], ops: list, path: Path | None) -> None:
    ledger.set_budget({p: (e, DELTA) for p, e in budget.items()})
    model: dict[str, list[float]] = {p: [] for p in PARTIES}
    for kind, parties, eps, count in ops:
        state = snapshot(ledger)
        raw = path.read_bytes() if path is not None else b""
        refusals = len(ledger.refusals)
        if kind == "exact":
            entry = ledger.record_exact(parties, mechanism="psi_size", description="exact")
            assert not entry.differentially_private
            assert all(entry.before[p] == entry.after[p] == (math.fsum(model[p]), 0.0) for p in parties)
            continue
        would = {p: math.fsum([*model[p], *([eps] * count)]) for p in parties}
        over = [p for p in parties if would[p] > budget[p] * (1 + TOLERANCE)]
        if not over:
            entry = ledger.charge(parties, PureDPEvent(eps, count), mechanism="laplace")
            for p in parties:
                model[p].extend([eps] * count)
                assert entry.after[p] == (would[p], 0.0)
        else:
            with pytest.raises(BudgetExceededError) as info:
                ledger.charge(parties, PureDPEvent(eps, count), mechanism="laplace")
            assert info.value.party == over[0]
            assert snapshot(ledger) == state
            if path is not None:
                assert path.read_bytes() == raw
            assert len(ledger.refusals) == refusals + 1
        for p in PARTIES:
            spent = ledger.spent(p)
            assert spent == (math.fsum(model[p]), 0.0)
            assert spent[0] <= budget[p] * (1 + TOLERANCE)
            remaining = ledger.remaining(p)
            assert remaining[0] == max(0.0, budget[p] - spent[0]) and remaining[1] == DELTA


@pytest.mark.slow  # 2000 examples, ~7 s
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budgets, sequences)
def test_random_pure_sequences_in_memory(budget: dict[str, float], ops: list) -> None:
    run_pure_sequence(PrivacyLedger(), budget, ops, None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budgets, sequences)
def test_random_pure_sequences_on_disk(budget: dict[str, float], ops: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.json"
        ledger = PrivacyLedger(path)
        run_pure_sequence(ledger, budget, ops, path)
        reloaded = PrivacyLedger(path)
        assert snapshot(reloaded) == snapshot(ledger)
        assert all(reloaded.spent(p) == ledger.spent(p) for p in PARTIES)


# Mixtures with Gaussian releases go through PLDs (slower): fewer, shorter sequences, and a
# small palette of events so that dp-accounting's PLDs are cached across examples.
mixed_events = st.one_of(
    st.sampled_from([0.1, 0.25, 0.5]).map(PureDPEvent),
    st.sampled_from([GaussianEvent(6.0), GaussianEvent(10.0), GaussianEvent(3.0, 0.2)]),
)
mixed_ops = st.lists(st.tuples(touched, mixed_events), max_size=8)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({p: st.sampled_from([1.0, 2.0, 3.0]) for p in PARTIES}), mixed_ops)
def test_random_mixed_sequences_never_exceed_a_budget(budget: dict[str, float], ops: list) -> None:
    ledger = PrivacyLedger()
    ledger.set_budget({p: (e, DELTA) for p, e in budget.items()})
    for parties, event in ops:
        preview = ledger.preview(parties, event)
        admit = all(preview[p][0] <= budget[p] * (1 + TOLERANCE) for p in parties)
        state, refusals = snapshot(ledger), len(ledger.refusals)
        if admit:
            entry = ledger.charge(parties, event)
            assert all(entry.after[p] == preview[p] == ledger.spent(p) for p in parties)
        else:
            with pytest.raises(BudgetExceededError):
                ledger.charge(parties, event)
            assert snapshot(ledger) == state and len(ledger.refusals) == refusals + 1
        for p in PARTIES:
            eps, delta = ledger.spent(p)
            assert eps <= budget[p] * (1 + TOLERANCE)
            assert delta <= DELTA * (1 + 1e-6)


def _forge(doc: dict, how: str, i: int, j: int) -> dict:
    """Edit a stored ledger the way someone without the key could, then redo chain and checksum."""
    import hashlib

    entries = doc["entries"]
    if how == "delete":
        del entries[i]
    elif how == "swap":
        entries[i], entries[j] = entries[j], entries[i]
    elif how == "renumber":  # delete and renumber, so that the sequence looks intact
        del entries[i]
        for k, e in enumerate(entries):
            e["seq"] = k
    else:  # "edit": shrink a recorded epsilon
        event = entries[i]["event"]
        if event is not None and event.get("type") == "pure":
            event["epsilon"] = event["epsilon"] / 2
        else:
            entries[i]["description"] += " (edited)"

    def canonical(v: object) -> bytes:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    head = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").digest()
    for item in entries:
        head = hashlib.sha256(head + canonical(item)).digest()
    doc["chain"] = head.hex()
    body = {k: v for k, v in doc.items() if k != "hmac"}
    doc["hmac"] = hashlib.sha256(canonical(body)).hexdigest()
    return doc


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(touched, epsilons), min_size=2, max_size=8),
    st.sampled_from(["delete", "swap", "renumber", "edit"]),
    st.data(),
)
def test_any_edit_without_the_key_is_refused(ops: list, how: str, data: st.DataObject) -> None:
    from fedbench.dp import LedgerFileError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.json"
        ledger = PrivacyLedger(path)
        ledger.set_budget({p: (100.0, DELTA) for p in PARTIES})
        for parties, eps in ops:
            ledger.charge(parties, PureDPEvent(eps))
        n = len(ledger)
        i = data.draw(st.integers(0, n - 1))
        j = data.draw(st.integers(0, n - 1).filter(lambda k: k != i))
        forged = json.dumps(_forge(json.loads(path.read_text()), how, i, j)).encode()
        path.write_bytes(forged)
        with pytest.raises(LedgerFileError, match="authentication check"):
            PrivacyLedger(path)
        assert path.read_bytes() == forged
