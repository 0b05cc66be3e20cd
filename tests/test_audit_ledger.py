"""Audit item 8: ledger integrity across processes and restarts.

Each test here failed on the code before the fix: two processes could both
spend a whole budget, the default ledger lived in memory only, a file with an
entry removed and its checksum recomputed was accepted, an older copy of the
file could be restored, and budgets could be raised after running out.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import fedbench as fb
from fedbench.dp import BudgetExceededError, LedgerFileError, PrivacyBudget, PrivacyLedger, PureDPEvent
from fedbench.errors import ConfigurationError


def _fed(**kwargs: Any) -> fb.Federation:
    # Self-contained (no conftest import) so that the file also runs against older code.
    return fb.Federation(512, allow_insecure_key_size=True, **kwargs)


def _frames() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(3)
    return {name: pl.DataFrame({"age": rng.integers(20, 90, n)}) for name, n in [("north", 30), ("south", 20)]}


# -- 1. persisted by default, next to the notebook -----------------------------------------------
def test_default_ledger_persists_across_federations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDBENCH_LEDGER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    first = _fed()
    first.add_parties(_frames())
    first.set_budget(epsilon=0.5, delta=1e-6)
    first.budget.charge(["north", "south"], PureDPEvent(0.3), mechanism="laplace", description="count")
    files = list(tmp_path.glob(".fedbench/*.ledger.json"))
    assert len(files) == 1

    # "Restart the kernel": a new Federation over the same parties sees the same spending.
    second = _fed()
    second.add_parties(_frames())
    assert second.budget.spent("north") == (0.3, 0.0)
    with pytest.raises(BudgetExceededError):
        second.budget.charge(["north"], PureDPEvent(0.3))
    assert str(files[0]) in repr(second.budget) and str(files[0]) in second.budget._repr_html_()
    assert second.budget.persistent


def test_default_ledger_of_file_parties_is_named_from_resolved_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, df in _frames().items():
        df.write_csv(data / f"{name}.csv")
    ledgers = tmp_path / "ledgers"
    monkeypatch.setenv("FEDBENCH_LEDGER_DIR", str(ledgers))
    monkeypatch.chdir(tmp_path)
    one = fb.Federation.from_dir("data", key_bits=512, allow_insecure_key_size=True)
    one.set_budget(1.0, 1e-6)
    monkeypatch.chdir(data)  # another working directory, same files: same study
    two = fb.Federation.from_dir(".", key_bits=512, allow_insecure_key_size=True)
    assert two.budget.path == one.budget.path and two.budget.limit("north") == (1.0, 1e-6)
    assert len(list(ledgers.glob("*.ledger.json"))) == 1


def test_a_party_keeps_its_ledger_in_any_federation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBENCH_LEDGER_DIR", str(tmp_path))
    frames = _frames()
    pair = _fed()
    pair.add_parties(frames)
    pair.set_budget(1.0, 1e-6)
    pair.budget.charge(["north", "south"], PureDPEvent(0.75))
    # A subset of the parties: the same ledger, the same spending.
    alone = _fed()
    alone.add_party("north", frames["north"])
    assert alone.budget.path == pair.budget.path and alone.budget.spent("north") == (0.75, 0.0)
    with pytest.raises(BudgetExceededError):
        alone.budget.charge(["north"], PureDPEvent(0.5))
    # A superset: the same ledger again; the new party is noted in it and found later on its own.
    wider = _fed()
    wider.add_parties({**frames, "east": pl.DataFrame({"age": [50, 60, 70]})})
    assert wider.budget.path == pair.budget.path and wider.budget.remaining("south") == (0.25, 1e-6)
    wider.set_budget(1.0, 1e-6, parties=["east"])
    east = _fed()
    east.add_party("east", pl.DataFrame({"age": [1, 2]}))
    assert east.budget.path == pair.budget.path and east.budget.limit("east") == (1.0, 1e-6)
    assert len(list(tmp_path.glob("*.ledger.json"))) == 1


def test_spending_split_over_two_default_ledgers_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBENCH_LEDGER_DIR", str(tmp_path))
    frames = _frames()
    for name in frames:
        solo = _fed()
        solo.add_party(name, frames[name])
        solo.set_budget(1.0, 1e-6)
    both = _fed()
    both.add_parties(frames)
    with pytest.raises(LedgerFileError, match=r"split over several ledgers.*ledger_path="):
        both.budget  # noqa: B018
    pinned = _fed(ledger_path=next(tmp_path.glob("*.ledger.json")))
    pinned.add_parties(frames)
    assert len(pinned.budget.parties) == 1


def test_explicit_memory_ledger_is_labelled_not_persistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fed = _fed(ledger_path=":memory:")
    fed.add_parties(_frames())
    fed.set_budget(1.0, 1e-6)
    assert fed.budget.path is None and not fed.budget.persistent
    assert "NOT persistent" in repr(fed.budget) and "NOT persistent" in fed.budget._repr_html_()
    assert not list(tmp_path.iterdir())


def test_no_file_is_written_until_a_budget_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDBENCH_LEDGER_DIR", raising=False)
    fed = _fed()
    fed.add_parties(_frames())
    assert fed.budget.parties == () and "ledger file" in repr(fed.budget)
    assert not list(tmp_path.iterdir())


# -- 2. one OS lock across reload, check and write ------------------------------------------------
def _racer(jobs: Any, results: Any, barrier: Any) -> None:
    while (path := jobs.get()) is not None:
        ledger = PrivacyLedger(path)  # both processes load the ledger before either spends
        barrier.wait()
        try:
            ledger.charge(["a"], PureDPEvent(0.5), mechanism="laplace")
            results.put("spent")
        except BudgetExceededError:
            results.put("refused")
        except Exception as exc:  # reported, so that the parent's assertion shows it
            results.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_racing_for_one_budget_never_both_spend(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    jobs, results, barrier = ctx.Queue(), ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_racer, args=(jobs, results, barrier), daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = []
    try:
        for trial in range(20):
            path = tmp_path / f"race-{trial}.ledger.json"
            PrivacyLedger(path).set_budget({"a": (0.5, 1e-6)})
            jobs.put(str(path))
            jobs.put(str(path))
            got = sorted(results.get(timeout=120) for _ in range(2))
            outcomes.append(got)
            assert got == ["refused", "spent"], f"trial {trial}: {got}"
            final = PrivacyLedger(path)
            assert final.spent("a") == (0.5, 0.0) and len(final) == 2
    finally:
        for _ in workers:
            jobs.put(None)
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    assert len(outcomes) == 20


def _spender(path: str, n: int) -> None:
    ledger = PrivacyLedger(path)
    for _ in range(n):
        ledger.charge(["a"], PureDPEvent(0.01))


def test_a_reader_in_another_kernel_never_sees_a_false_rollback_or_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.ledger.json"
    PrivacyLedger(path).set_budget({"a": (1.0, 1e-6)})
    reader = PrivacyLedger(path)
    writer = mp.get_context("spawn").Process(target=_spender, args=(str(path), 40))
    writer.start()
    seen = [0.0]
    while writer.is_alive():
        eps = reader.spent("a")[0]  # reloads whenever the other process wrote
        assert eps >= seen[-1]
        seen.append(eps)
    writer.join()
    assert writer.exitcode == 0 and reader.spent("a")[0] == pytest.approx(0.4) and len(reader) == 41


# -- 3. budget changes are entries; raising after spending is explicit ---------------------------
def test_raising_an_exhausted_budget_needs_an_explicit_recorded_action(tmp_path: Path) -> None:
    path = tmp_path / "study.ledger.json"
    budget = PrivacyBudget(path)
    budget.set_budget(0.5, 1e-6, ["a"])
    budget.charge(["a"], PureDPEvent(0.5))
    raw = path.read_bytes()
    with pytest.raises(ConfigurationError, match=r"allow_increase=True.*Nothing was changed"):
        budget.set_budget(1.0, 1e-6, ["a"])
    assert path.read_bytes() == raw and budget.limit("a") == (0.5, 1e-6)
    with pytest.raises(ConfigurationError, match="reason"):
        budget.set_budget(1.0, 1e-6, ["a"], allow_increase=True)  # no reason given
    assert path.read_bytes() == raw

    entry = budget.set_budget(1.0, 1e-6, ["a"], allow_increase=True, description="ethics board approved 2nd wave")
    assert entry is not None and entry.mechanism == "budget_increase"
    assert entry.parameters["previous"]["a"] == (0.5, 1e-6) and entry.parameters["budgets"]["a"] == (1.0, 1e-6)
    again = PrivacyBudget(path)  # recorded in the file, shown after a restart
    assert again.remaining("a") == (0.5, 1e-6)
    assert "raised after spending" in repr(again) and "ethics board" in repr(again)
    table = again.ledger.to_polars()
    assert table.filter(pl.col("mechanism") == "budget_increase").height == 1
    # Raising before anything is spent, and lowering, stay plain recorded changes.
    budget.set_budget(1.0, 1e-6, ["b"])
    assert budget.set_budget(2.0, 1e-6, ["b"]) is not None
    assert budget.ledger.budget_increases("b") == ()


# -- 4. tamper evidence ---------------------------------------------------------------------------
def _spent_ledger(path: Path) -> bytes:
    ledger = PrivacyLedger(path)
    ledger.set_budget({"a": (1.0, 1e-6)})
    ledger.charge(["a"], PureDPEvent(0.5), mechanism="laplace")
    ledger.charge(["a"], PureDPEvent(0.4), mechanism="laplace")
    return path.read_bytes()


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_removed_entry_with_recomputed_checksum_and_chain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.ledger.json"
    _spent_ledger(path)
    doc = json.loads(path.read_text())
    del doc["entries"][2]  # drop the last spend...
    if "chain" in doc:  # ...and redo everything that can be redone without the key
        head = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").digest()
        for item in doc["entries"]:
            head = hashlib.sha256(head + _canonical(item)).digest()
        doc["chain"] = head.hex()
    seal = "hmac" if "hmac" in doc else "sha256"
    body = {k: v for k, v in doc.items() if k != seal}
    doc[seal] = hashlib.sha256(_canonical(body)).hexdigest()
    forged = json.dumps(doc, indent=1).encode()
    path.write_bytes(forged)
    with pytest.raises(LedgerFileError, match="authentication") as info:
        PrivacyLedger(path)
    assert "untouched" in str(info.value) and path.read_bytes() == forged


def test_restoring_an_older_copy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.ledger.json"
    ledger = PrivacyLedger(path)
    ledger.set_budget({"a": (1.0, 1e-6)})
    shutil.copy(path, tmp_path / "backup")
    ledger.charge(["a"], PureDPEvent(0.9))
    shutil.copy(tmp_path / "backup", path)  # "undo" the spend with a genuine older file
    with pytest.raises(LedgerFileError, match="rolled back"):
        PrivacyLedger(path)


def test_deleting_the_file_is_refused_until_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "study.ledger.json"
    _spent_ledger(path)
    path.unlink()
    with pytest.raises(LedgerFileError, match=r"is missing.*PrivacyLedger.forget"):
        PrivacyLedger(path)
    assert PrivacyLedger.forget(path)
    assert PrivacyLedger(path).parties == ()


def test_a_file_under_another_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.ledger.json"
    raw = _spent_ledger(path)
    other = tmp_path / "other.key"
    other.write_text("11" * 32)
    with pytest.raises(LedgerFileError, match="another key"):
        PrivacyLedger(path, key_path=other)
    with pytest.raises(LedgerFileError, match="is missing"):
        PrivacyLedger(path, key_path=tmp_path / "no.key")
    assert path.read_bytes() == raw


def test_version_1_files_are_refused_then_migrated_with_a_recorded_entry(tmp_path: Path) -> None:
    path = tmp_path / "old.ledger.json"
    entries = [
        {"seq": 0, "timestamp": "2025-01-01T12:00:00.000000+00:00", "kind": "budget", "mechanism": "budget",
         "parties": ["a"], "description": "privacy budget set",
         "parameters": {"budgets": {"a": [1.0, 1e-6]}, "previous": {"a": None}}, "event": None,
         "before": {"a": [0.0, 0.0]}, "after": {"a": [0.0, 0.0]}},
        {"seq": 1, "timestamp": "2025-01-01T12:01:00.000000+00:00", "kind": "spend", "mechanism": "laplace",
         "parties": ["a"], "description": "count", "parameters": {},
         "event": {"type": "pure", "epsilon": 0.25, "count": 1},
         "before": {"a": [0.0, 0.0]}, "after": {"a": [0.25, 0.0]}},
    ]
    body = {
        "format": "fedbench-privacy-ledger", "version": 1, "federation": None,
        "accounting": {"neighboring_relation": "add_or_remove_one", "pld_value_discretization_interval": 0.0001,
                       "tolerance": 1e-09},
        "entries": entries,
    }
    raw = json.dumps({**body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}).encode()
    path.write_bytes(raw)
    with pytest.raises(LedgerFileError, match=r"version 1.*PrivacyLedger.migrate"):
        PrivacyLedger(path)
    assert path.read_bytes() == raw
    migrated = PrivacyLedger.migrate(path)
    assert migrated[-1].mechanism == "migration" and migrated.spent("a") == (0.25, 0.0)
    assert PrivacyLedger(path).spent("a") == (0.25, 0.0)


def test_budget_magic_records_a_raise_only_with_a_reason() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext fedbench")
    fed = _fed(ledger_path=":memory:")
    fed.add_parties(_frames())
    ip.user_ns["study"] = fed
    try:
        assert ip.run_cell("%fedbench budget --fed study --epsilon 0.5 --static").success
        fed.budget.charge(["north"], PureDPEvent(0.5))
        assert not ip.run_cell("%fedbench budget --fed study --epsilon 1 --static").success
        assert fed.budget.limit("north") == (0.5, 1e-6)
        cell = '%fedbench budget --fed study --epsilon 1 --increase-reason "second wave approved" --static'
        assert ip.run_cell(cell).success
        assert fed.budget.limit("north") == (1.0, 1e-6)
        assert fed.budget.ledger[-1].description == "second wave approved"
    finally:
        ip.user_ns.pop("study", None)
