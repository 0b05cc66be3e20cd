"""The privacy ledger and the PrivacyBudget facade: check-then-spend, persistence, bad input."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from pathlib import Path

import pytest

from fedbench.dp import (
    BudgetExceededError,
    BudgetNotSetError,
    DPConfig,
    GaussianEvent,
    LedgerFileError,
    NonPrivateEvent,
    PrivacyBudget,
    PrivacyLedger,
    PureDPEvent,
    epsilon_pld,
)
from fedbench.dp.ledger import FORMAT, VERSION, default_key_path
from fedbench.errors import BudgetError, ConfigurationError, PartyError, UnknownPartyError


def snapshot(ledger: PrivacyLedger) -> bytes:
    """Byte form of the in-memory ledger, to compare states."""
    return json.dumps([e.to_json() for e in ledger.entries], sort_keys=True).encode()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "privacy-ledger.json"


# -- check-then-spend --------------------------------------------------------------------------
def test_ten_queries_fill_a_budget_of_one_and_the_eleventh_is_refused(path: Path) -> None:
    budget = PrivacyBudget(path)
    budget.set_budget(epsilon=1.0, delta=1e-6, parties=["cleveland"])
    for i in range(10):
        budget.charge(["cleveland"], PureDPEvent(0.1), mechanism="laplace", description=f"count {i}")
    assert budget.spent("cleveland") == (1.0, 0.0)
    assert budget.remaining("cleveland") == (0.0, 1e-6)
    before = path.read_bytes()
    with pytest.raises(BudgetExceededError) as info:
        budget.charge(["cleveland"], PureDPEvent(0.1), mechanism="laplace", description="count 10")
    err = info.value
    assert isinstance(err, BudgetError) and isinstance(err, PartyError)
    assert err.party == "cleveland"
    assert err.spent == (1.0, 0.0)
    assert err.requested[0] == pytest.approx(0.1)
    assert err.remaining == (0.0, 1e-6)
    assert err.budget == (1.0, 1e-6)
    message = str(err)
    assert "'cleveland'" in message
    assert "spent ε=1" in message and "requested ε=0.1" in message and "remaining ε=0" in message
    assert "before any noise" in message
    assert path.read_bytes() == before
    assert len(budget.ledger) == 11  # budget entry + ten charges
    assert len(budget.refusals) == 1 and budget.refusals[0].party == "cleveland"


def test_one_grouped_charge_equals_ten_single_ones() -> None:
    budget = PrivacyBudget()
    budget.set_budget(1.0, 1e-6, ["a"])
    budget.charge("a", PureDPEvent(0.1, count=10))
    assert budget.spent("a") == (1.0, 0.0)
    assert not budget.fits("a", PureDPEvent(1e-6))


def test_refusal_names_the_offending_party_and_changes_nothing(path: Path) -> None:
    budget = PrivacyBudget(path)
    budget.set_budget(epsilon=1.0, delta=1e-6, parties=["a", "b"], overrides={"b": (0.15, 1e-6)})
    budget.charge(["a", "b"], PureDPEvent(0.1), mechanism="laplace", description="first")
    state, raw = snapshot(budget.ledger), path.read_bytes()
    with pytest.raises(BudgetExceededError) as info:
        budget.charge(["a", "b"], PureDPEvent(0.1), mechanism="laplace", description="second")
    assert info.value.party == "b"
    assert "'b'" in str(info.value) and "'a'" not in str(info.value).split("\n", 1)[1]
    assert budget.spent("a") == (0.1, 0.0)  # a was not charged either
    assert snapshot(budget.ledger) == state and path.read_bytes() == raw
    refusal = budget.refusals[-1]
    assert refusal.parties == ("a", "b") and refusal.description == "second"
    assert budget.ledger.refusals_to_polars().height == 1


def test_gaussian_charges_compose_with_pld() -> None:
    budget = PrivacyBudget()
    budget.set_budget(epsilon=3.0, delta=1e-6, parties=["a"])
    entry = budget.charge("a", GaussianEvent(3.0), mechanism="gaussian", description="sum")
    eps, delta = budget.spent("a")
    assert eps == pytest.approx(epsilon_pld([GaussianEvent(3.0)], 1e-6), rel=1e-9)
    assert 0 < delta < 1e-6
    assert entry.after["a"] == (eps, delta) and entry.before["a"] == (0.0, 0.0)
    # A Gaussian request that does not fit is refused before anything happens.
    with pytest.raises(BudgetExceededError, match="Gaussian"):
        budget.charge("a", GaussianEvent(0.5), mechanism="gaussian")
    assert budget.spent("a") == (eps, delta)


def test_dp_training_rounds_and_affordability() -> None:
    budget = PrivacyBudget()
    budget.set_budget(epsilon=1.0, delta=1e-5, parties=["a", "b"])
    config = DPConfig(noise_multiplier=3.0, clip=1.0, sample_rate=0.2)
    n = budget.affordable_rounds(config)
    assert n >= 1
    assert budget.fits(["a", "b"], config.event(n))
    assert not budget.fits(["a", "b"], config.event(n + 1))
    budget.charge(["a", "b"], config.event(n), mechanism="dp_fedavg", description=f"{n} rounds")
    assert budget.affordable_rounds(config) == 0
    with pytest.raises(BudgetExceededError):
        budget.charge(["a"], config.event(1), mechanism="dp_fedavg")


# -- exact releases ----------------------------------------------------------------------------
def test_exact_releases_are_recorded_flagged_and_free() -> None:
    budget = PrivacyBudget()
    budget.set_budget(1.0, 1e-6, ["a"])
    budget.charge("a", PureDPEvent(0.25))
    entry = budget.record_exact(["a", "b"], mechanism="psi_size", description="size of the intersection")
    assert not entry.differentially_private and entry.kind == "exact"
    assert entry.before == entry.after
    assert budget.spent("a") == (0.25, 0.0)
    assert budget.ledger.exact_releases("a") == 1 and budget.ledger.exact_releases("b") == 1
    frame = budget.ledger.to_polars()
    assert frame.filter(frame["kind"] == "exact")["differentially_private"].to_list() == [False, False]
    assert "not DP" in repr(budget) and "not DP" in budget._repr_html_()
    # charge() with a NonPrivateEvent is the same thing, and never refused.
    budget.charge("a", NonPrivateEvent(), mechanism="exact_count")
    assert budget.ledger.exact_releases("a") == 2


# -- reading -----------------------------------------------------------------------------------
def test_reading_the_budget_changes_nothing(path: Path) -> None:
    budget = PrivacyBudget(path)
    budget.set_budget(1.0, 1e-6, ["a", "b"])
    budget.charge(["a"], PureDPEvent(0.3))
    budget.charge(["a", "b"], GaussianEvent(8.0))
    raw, state, stat = path.read_bytes(), snapshot(budget.ledger), path.stat()
    for _ in range(3):
        budget.spent("a"), budget.remaining("a"), budget.limit("b")
        budget.preview(["a", "b"], PureDPEvent(0.1))
        budget.fits(["a"], GaussianEvent(1.0))
        budget.summary(), budget.ledger.to_polars(), repr(budget), budget._repr_html_()
        list(budget.ledger), budget.ledger.events("a"), budget.ledger.entries
    assert path.read_bytes() == raw and snapshot(budget.ledger) == state
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert budget.refusals == ()
    assert budget.spent("a") == budget.spent("a")


def test_entries_are_immutable() -> None:
    budget = PrivacyBudget()
    budget.set_budget(1.0, 1e-6, ["a"])
    entry = budget.charge("a", PureDPEvent(0.1), parameters={"bounds": [0, 10], "sensitivity": 10})
    with pytest.raises(TypeError):
        entry.parameters["sensitivity"] = 0  # type: ignore[index]
    with pytest.raises(AttributeError):
        entry.description = "changed"  # type: ignore[misc]
    assert entry.parameters["bounds"] == (0, 10)
    assert entry.to_json()["parameters"] == {"bounds": [0, 10], "sensitivity": 10}


def test_tables_and_reprs() -> None:
    budget = PrivacyBudget()
    assert "no budget set" in repr(budget) and "No budget set" in budget._repr_html_()
    budget.set_budget(1.0, 1e-6, ["a", "b"], overrides={"b": (2.0, 1e-7)})
    budget.charge(["a", "b"], PureDPEvent(0.5), mechanism="laplace", description="<b>count</b>")
    summary = budget.summary()
    assert summary["party"].to_list() == ["a", "b"]
    assert summary["epsilon_remaining"].to_list() == [0.5, 1.5]
    assert summary["delta_budget"].to_list() == [1e-6, 1e-7]
    frame = budget.ledger.to_polars()
    assert frame.height == 4  # budget entry and charge, one row per party each
    assert set(frame.columns) >= {"seq", "timestamp", "mechanism", "party", "epsilon_before", "epsilon_after"}
    with pytest.raises(BudgetExceededError):
        budget.charge(["a"], PureDPEvent(0.6), description="<script>")
    html = budget._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "1 refused" in repr(budget)


# -- budgets -----------------------------------------------------------------------------------
def test_set_budget_is_idempotent_and_changes_are_recorded(path: Path) -> None:
    budget = PrivacyBudget(path)
    assert budget.set_budget(1.0, 1e-6, ["a", "b"]) is not None
    raw = path.read_bytes()
    assert budget.set_budget(1.0, 1e-6, ["a", "b"]) is None  # re-running the cell
    assert path.read_bytes() == raw
    entry = budget.set_budget(1.0, 1e-6, ["a", "b"], overrides={"b": (3.0, 1e-6)})
    assert entry is not None and entry.parties == ("b",)
    assert entry.parameters["previous"]["b"] == (1.0, 1e-6)
    assert budget.limit("b") == (3.0, 1e-6)


def test_budget_cannot_drop_below_spent(path: Path) -> None:
    budget = PrivacyBudget(path)
    budget.set_budget(1.0, 1e-6, ["a"])
    budget.charge("a", PureDPEvent(0.6))
    raw = path.read_bytes()
    with pytest.raises(ConfigurationError, match="'a'.*already spent"):
        budget.set_budget(0.5, 1e-6, ["a"])
    assert budget.limit("a") == (1.0, 1e-6) and path.read_bytes() == raw
    budget.set_budget(0.6, 1e-6, ["a"])  # exactly what was spent is allowed
    assert budget.remaining("a") == (0.0, 1e-6)


def test_default_parties_come_from_the_federation() -> None:
    names = ["cleveland", "hungary"]
    budget = PrivacyBudget(parties=lambda: names)
    budget.set_budget(epsilon=1.0, delta=1e-6, overrides={"cleveland": (2.0, 1e-6)})
    assert budget.parties == ("cleveland", "hungary")
    assert budget.limit("cleveland") == (2.0, 1e-6) and budget.limit("hungary") == (1.0, 1e-6)
    with pytest.raises(UnknownPartyError, match="'swiss'") as info:
        budget.set_budget(1.0, 1e-6, overrides={"swiss": (1.0, 1e-6)})
    assert info.value.party == "swiss"
    with pytest.raises(UnknownPartyError):
        budget.charge(["swiss"], PureDPEvent(0.1))


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf, math.nan, "1", None, True])
def test_bad_epsilon(epsilon: object) -> None:
    budget = PrivacyBudget()
    with pytest.raises(ConfigurationError, match="epsilon"):
        budget.set_budget(epsilon=epsilon, delta=1e-6, parties=["a"])  # type: ignore[arg-type]
    assert budget.parties == () and len(budget.ledger) == 0


@pytest.mark.parametrize("delta", [0.0, 1.0, 1.5, -1e-6, math.nan, "1e-6"])
def test_bad_delta(delta: object) -> None:
    budget = PrivacyBudget()
    with pytest.raises(ConfigurationError, match="delta"):
        budget.set_budget(epsilon=1.0, delta=delta, parties=["a"])  # type: ignore[arg-type]
    assert len(budget.ledger) == 0


def test_bad_override_names_the_party() -> None:
    budget = PrivacyBudget()
    with pytest.raises(ConfigurationError, match="party 'hungary'.*delta"):
        budget.set_budget(1.0, 1e-6, ["cleveland"], overrides={"hungary": (1.0, 0.0)})
    with pytest.raises(ConfigurationError, match="party 'hungary'.*epsilon"):
        budget.set_budget(1.0, 1e-6, ["cleveland"], overrides={"hungary": (-2.0, 1e-6)})
    with pytest.raises(ConfigurationError, match="party 'hungary'.*pair"):
        budget.set_budget(1.0, 1e-6, ["cleveland"], overrides={"hungary": 2.0})  # type: ignore[dict-item]
    assert budget.parties == ()


def test_budget_not_set(path: Path) -> None:
    budget = PrivacyBudget(path)
    with pytest.raises(BudgetNotSetError, match="'a'") as info:
        budget.spent("a")
    assert info.value.party == "a"
    with pytest.raises(BudgetNotSetError):
        budget.remaining("a")
    budget.set_budget(1.0, 1e-6, ["a"])
    raw = path.read_bytes()
    with pytest.raises(BudgetNotSetError, match="'b'"):
        budget.charge(["a", "b"], PureDPEvent(0.1))
    assert budget.spent("a") == (0.0, 0.0) and path.read_bytes() == raw
    with pytest.raises(ConfigurationError, match="name the parties"):
        budget.set_budget(1.0, 1e-6)


def test_bad_requests_change_nothing() -> None:
    budget = PrivacyBudget()
    budget.set_budget(1.0, 1e-6, ["a"])
    state = snapshot(budget.ledger)
    with pytest.raises(ConfigurationError):
        budget.charge([], PureDPEvent(0.1))
    with pytest.raises(ConfigurationError):
        budget.charge(["a", "a"], PureDPEvent(0.1))
    with pytest.raises(ConfigurationError):
        budget.charge(["not a name!"], PureDPEvent(0.1))
    with pytest.raises(ConfigurationError):
        budget.charge(["a"], 0.1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="JSON"):
        budget.charge(["a"], PureDPEvent(0.1), parameters={"f": object()})
    with pytest.raises(ConfigurationError, match="JSON"):
        budget.charge(["a"], PureDPEvent(0.1), parameters={"x": math.nan})
    with pytest.raises(ConfigurationError):
        PureDPEvent(-0.1)
    assert snapshot(budget.ledger) == state and budget.refusals == ()


# -- persistence -------------------------------------------------------------------------------
def test_restart_reloads_the_same_spending(path: Path) -> None:
    first = PrivacyBudget(path, federation="heart")
    first.set_budget(epsilon=1.0, delta=1e-6, parties=["cleveland", "hungary"], overrides={"cleveland": (2.0, 1e-6)})
    first.charge(["cleveland", "hungary"], PureDPEvent(0.3), mechanism="laplace", description="count")
    first.charge(["cleveland"], GaussianEvent(4.0), mechanism="gaussian", description="sum")
    first.record_exact(["cleveland", "hungary"], mechanism="psi_size", description="PSI")
    del first  # "restart the kernel"

    second = PrivacyBudget(path, federation="heart")
    assert second.ledger.federation == "heart"
    assert second.limit("cleveland") == (2.0, 1e-6)
    assert second.spent("hungary") == (0.3, 0.0)
    eps, delta = second.spent("cleveland")
    assert 0.3 < eps < 2.0 and 0 < delta < 1e-6
    assert second.ledger.exact_releases("hungary") == 1
    assert [e.seq for e in second.ledger] == list(range(4))
    # Spending continues from where it was; a third load sees everything.
    second.charge(["hungary"], PureDPEvent(0.7))
    with pytest.raises(BudgetExceededError):
        second.charge(["hungary"], PureDPEvent(0.01))
    third = PrivacyLedger(path)
    assert third.spent("hungary") == (1.0, 0.0)
    assert third.spent("cleveland") == (eps, delta)
    assert snapshot(third) == snapshot(second.ledger)


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _key() -> bytes:
    return bytes.fromhex(default_key_path().read_text().strip())


def test_file_format_marker_chain_and_hmac(path: Path) -> None:
    ledger = PrivacyLedger(path, federation="f")
    ledger.set_budget({"a": (1.0, 1e-6)})
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION == 2
    assert doc["accounting"]["pld_value_discretization_interval"] == 1e-4
    body = {k: v for k, v in doc.items() if k != "hmac"}
    assert doc["hmac"] == hmac.new(_key(), _canonical(body), hashlib.sha256).hexdigest()
    head = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").digest()
    for item in doc["entries"]:
        head = hashlib.sha256(head + _canonical(item)).digest()
    assert doc["chain"] == head.hex()
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed away
    if os.name == "posix":
        assert default_key_path().stat().st_mode & 0o777 == 0o600


def _valid_document(path: Path) -> dict:
    ledger = PrivacyLedger(path)
    ledger.set_budget({"a": (1.0, 1e-6)})
    ledger.charge(["a"], PureDPEvent(0.5), mechanism="laplace")
    return json.loads(path.read_text())


def _resealed(doc: dict) -> bytes:
    """Reseal with the real key (what a fedbench bug, not an editor, could write)."""
    head = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").digest()
    for item in doc["entries"]:
        head = hashlib.sha256(head + _canonical(item)).digest()
    body = {k: v for k, v in doc.items() if k != "hmac"}
    body["chain"] = head.hex()
    return json.dumps({**body, "hmac": hmac.new(_key(), _canonical(body), hashlib.sha256).hexdigest()}).encode()


def _tampered(doc: dict) -> bytes:
    doc["entries"][1]["after"]["a"] = [0.0, 0.0]
    return json.dumps(doc).encode()


def _entry_removed_sha256_recomputed(doc: dict) -> bytes:
    # What an editor without the key can do: drop the spend, fix up the old-style checksum and the chain.
    del doc["entries"][1]
    head = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").digest()
    for item in doc["entries"]:
        head = hashlib.sha256(head + _canonical(item)).digest()
    doc["chain"] = head.hex()
    body = {k: v for k, v in doc.items() if k != "hmac"}
    doc["hmac"] = hashlib.sha256(_canonical(body)).hexdigest()
    return json.dumps(doc).encode()


def _bad_entry_resealed(doc: dict) -> bytes:
    doc["entries"][1]["event"] = {"type": "pure", "epsilon": -0.5, "count": 1}
    return _resealed(doc)


def _reordered_resealed(doc: dict) -> bytes:
    doc["entries"].reverse()
    return _resealed(doc)


def _newer_version(doc: dict) -> bytes:
    doc["version"] = VERSION + 1
    return _resealed(doc)


def _other_accounting(doc: dict) -> bytes:
    doc["accounting"]["pld_value_discretization_interval"] = 1e-3
    return _resealed(doc)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda doc: b"this is not json", "not valid JSON"),
        (lambda doc: b"\xff\xfe\x00garbage", "not valid JSON"),
        (lambda doc: json.dumps(doc).encode()[:200], "not valid JSON"),
        (lambda doc: b"{}", "not a fedbench privacy ledger"),
        (lambda doc: b"[1, 2, 3]", "not a fedbench privacy ledger"),
        (lambda doc: json.dumps({"cells": [], "nbformat": 4}).encode(), "not a fedbench privacy ledger"),
        (_newer_version, "version"),
        (_other_accounting, "accounting settings"),
        (_tampered, "authentication check"),
        (_entry_removed_sha256_recomputed, "authentication check"),
        (_bad_entry_resealed, "entry 1 is invalid"),
        (_reordered_resealed, "invalid"),
    ],
)
def test_corrupt_or_foreign_files_raise_and_stay_untouched(path: Path, make, reason: str) -> None:
    data = make(_valid_document(path))
    path.write_bytes(data)
    with pytest.raises(LedgerFileError, match=reason) as info:
        PrivacyBudget(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "untouched" in str(info.value)
    assert path.read_bytes() == data


def test_file_of_another_federation_is_refused(path: Path) -> None:
    PrivacyLedger(path, federation="heart").set_budget({"a": (1.0, 1e-6)})
    raw = path.read_bytes()
    with pytest.raises(LedgerFileError, match="belongs to federation 'heart'"):
        PrivacyLedger(path, federation="diabetes")
    assert path.read_bytes() == raw
    assert PrivacyLedger(path).federation == "heart"


def test_second_kernel_reloads_before_checking(path: Path) -> None:
    one = PrivacyLedger(path)
    one.set_budget({"a": (1.0, 1e-6)})
    two = PrivacyLedger(path)  # e.g. a second kernel on the same file
    one.charge(["a"], PureDPEvent(0.8))
    assert two.spent("a") == (0.8, 0.0)  # reads follow the file
    raw = path.read_bytes()
    with pytest.raises(BudgetExceededError, match=r"spent ε=0\.8, requested ε=0\.8, remaining ε=0\.2"):
        two.charge(["a"], PureDPEvent(0.8))
    assert path.read_bytes() == raw
    two.charge(["a"], PureDPEvent(0.2))
    assert one.spent("a") == (1.0, 0.0) and len(one) == len(two) == 3


def test_deleted_file_is_not_silently_recreated(path: Path) -> None:
    ledger = PrivacyLedger(path)
    ledger.set_budget({"a": (1.0, 1e-6)})
    path.unlink()
    with pytest.raises(LedgerFileError):
        ledger.charge(["a"], PureDPEvent(0.1))
    assert not path.exists()


def test_failed_write_charges_nothing(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = PrivacyLedger(path)
    ledger.set_budget({"a": (1.0, 1e-6)})
    raw, state = path.read_bytes(), snapshot(ledger)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(LedgerFileError, match="cannot be written.*nothing was charged"):
        ledger.charge(["a"], PureDPEvent(0.1))
    monkeypatch.undo()
    assert path.read_bytes() == raw and snapshot(ledger) == state
    assert ledger.spent("a") == (0.0, 0.0)
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [path.name]  # no temp file
    ledger.charge(["a"], PureDPEvent(0.1))  # and the ledger still works afterwards
    assert PrivacyLedger(path).spent("a") == (0.1, 0.0)


def test_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LedgerFileError, match="cannot be read"):
        PrivacyLedger(tmp_path)
