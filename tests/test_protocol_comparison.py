"""The set-up comparison of the crypto-cost panel, built headless: rows, figures, trust, bad input."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fedbench as fb
from fedbench.errors import ConfigurationError
from fedbench.secagg import get_protocol
from fedbench.secagg.keyholders import threshold_trust_text
from fedbench.widgets import CryptoCostPanel, ProtocolComparison
from fedbench.widgets.comparison import _DEALER_CLAUSE, setup_trust

from .conftest import make_fed

HOSPITALS = Path(__file__).resolve().parents[1] / "data_samples" / "hospitals"
COLUMNS = ["age", "mean_radius"]


def small_fed(**kwargs) -> fb.Federation:
    fed = make_fed(**kwargs)  # TEST_KEY_BITS, insecure size allowed
    for name in ("north", "south", "east"):
        fed.add_party(name, HOSPITALS / f"{name}.csv")
    return fed


@pytest.fixture(scope="module")
def results() -> dict[str, fb.SecureSumResult]:
    fed = small_fed()
    return {
        "Paillier": fed.secure_sum(COLUMNS),
        "masking": fed.secure_sum(COLUMNS, protocol="masking", neighbours=2, threshold=2),
    }


@pytest.fixture(scope="module")
def with_threshold(results) -> dict[str, fb.SecureSumResult]:
    """Paillier, threshold Paillier (dealt 2-of-3 key; dealing safe primes takes seconds) and masking."""
    tfed = small_fed(keys="threshold", threshold=2)
    tfed.secure_sum(COLUMNS)  # the first run deals the key; the compared run has no dealer message
    return {"Paillier": results["Paillier"], "threshold": tfed.secure_sum(COLUMNS), "masking": results["masking"]}


def released_texts(results: dict[str, fb.SecureSumResult]) -> set[str]:
    """Ways a released sum could be printed."""
    out = set()
    for r in results.values():
        for v in r.value.values():
            x = float(np.asarray(v))
            out |= {str(v), repr(x), f"{x:.4g}", f"{x:,.0f}", f"{x:.0f}", f"{x:.3f}"}
    return out


def test_compare_shows_cost_and_trust_per_setup(results):
    comp = CryptoCostPanel.compare(results, figure_backend="static")
    rows = comp.rows
    assert rows["setup"].to_list() == ["Paillier", "masking"]
    assert rows["key_setup"].to_list() == ["single key", "no key"]
    assert rows["trusted"].to_list() == [["aggregator", "keyholder"], ["aggregator"]]
    for label, r in results.items():
        row = rows.row(rows["setup"].to_list().index(label), named=True)
        assert (row["seconds"], row["bytes"], row["messages"]) == (r.elapsed, r.nbytes, len(r.transcript))
    assert "masked vectors" in repr(comp) and "must trust: aggregator, keyholder" in repr(comp)


@pytest.mark.slow
def test_compare_with_threshold_shows_cost_and_trust_per_setup(with_threshold):
    results = with_threshold
    comp = CryptoCostPanel.compare(results, figure_backend="static")
    assert isinstance(comp, ProtocolComparison)
    rows = comp.rows
    assert rows["setup"].to_list() == ["Paillier", "threshold", "masking"]
    assert rows["protocol"].to_list() == ["paillier", "paillier", "masking"]
    assert rows["key_setup"].to_list() == ["single key", "threshold 2 (dealer)", "no key"]
    for label, r in results.items():
        row = rows.row(rows["setup"].to_list().index(label), named=True)
        assert row["seconds"] == pytest.approx(r.elapsed)
        assert row["bytes"] == r.nbytes > 0
        assert row["messages"] == len(r.transcript)
        assert row["ciphertexts"] == r.ciphertexts > 0
        assert row["encrypted_bytes"] == sum(m.nbytes for m in r.transcript if m.encrypted)
        assert row["threat_model"] == r.threat_text
        assert row["error_bound"] is None
    assert rows["unit"].to_list() == ["ciphertexts", "ciphertexts", "masked vectors"]
    assert rows["trusted"].to_list() == [["aggregator", "keyholder"], ["aggregator", "dealer"], ["aggregator"]]
    broken = rows["broken_by"].to_list()
    assert broken[0] == get_protocol("paillier").trust_model.broken_by
    assert "any 2 share-holding parties" in broken[1] and "dealer" in broken[1]
    assert "t = 2 share holders" in broken[2]
    # The table and the text repr carry the same rows.
    for label in results:
        assert f"<td style='text-align:left;padding:0 6px'>{label}</td>" in comp.table.value
        assert f"  {label} [" in repr(comp)
    assert "must trust: aggregator, dealer" in repr(comp)
    assert repr(comp).startswith("ProtocolComparison: 3 set-ups")
    assert comp._repr_html_().startswith("<div class='fedbench-dashboard'>")


def test_figures_plot_time_and_bytes_per_setup(results):
    comp = ProtocolComparison(results, figure_backend="static")
    labels = list(results)
    (time_bar,) = comp.figures["time"].data
    assert list(time_bar.x) == labels
    assert list(time_bar.y) == pytest.approx([r.elapsed for r in results.values()])
    enc, plain = comp.figures["bytes"].data
    assert (enc.name, plain.name) == ("encrypted", "plain")
    assert [e + p for e, p in zip(enc.y, plain.y, strict=True)] == [r.nbytes for r in results.values()]
    assert comp.widget.children[1].children[0].outputs[0]["data"]["text/plain"] == "<plotly figure: Time per set-up>"


def test_no_released_value_is_shown(results):
    comp = ProtocolComparison(results, figure_backend="static")
    shown = repr(comp) + comp._repr_html_() + comp.rows.write_json()
    shown += "".join(json.dumps(f.to_plotly_json(), default=str) for f in comp.figures.values())
    leaks = [t for t in released_texts(results) if t in shown]
    assert not leaks


def test_widget_backend_and_update(results):
    comp = ProtocolComparison({"Paillier": results["Paillier"]}, figure_backend="widget")
    assert comp.rows.height == 1
    comp.update({"masking": results["masking"], "Paillier": results["Paillier"]})
    assert comp.rows["setup"].to_list() == ["masking", "Paillier"]
    assert list(comp.figures["time"].data[0].x) == ["masking", "Paillier"]
    assert comp._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"] == comp.widget.model_id


def test_setup_trust_follows_the_protocol_trust_model(results):
    for r in results.values():
        model = get_protocol(r.protocol).trust_model
        trust = setup_trust(r)
        assert trust.trusted == model.trusted
        assert trust.broken_by.replace("t = 2 share holders", "t share holders") == model.broken_by


def test_bad_input_is_refused_and_changes_nothing(results):
    with pytest.raises(ConfigurationError, match="non-empty mapping"):
        ProtocolComparison({}, figure_backend="static")
    with pytest.raises(ConfigurationError, match="set-up 'stats'.*SecureSumResult.*float"):
        ProtocolComparison({"Paillier": results["Paillier"], "stats": 1.0}, figure_backend="static")
    with pytest.raises(ConfigurationError, match="labels must be strings"):
        ProtocolComparison({1: results["Paillier"]}, figure_backend="static")
    comp = ProtocolComparison({"Paillier": results["Paillier"]}, figure_backend="static")
    before = repr(comp)
    with pytest.raises(ConfigurationError, match="set-up 'x'"):
        comp.update({"x": "not a result"})
    assert repr(comp) == before and list(comp.results) == ["Paillier"]
    with pytest.raises(ConfigurationError, match="figure_backend"):
        ProtocolComparison({"Paillier": results["Paillier"]}, figure_backend="svg")


@pytest.mark.skipif(importlib.util.find_spec("tenseal") is None, reason="tenseal not installed")
def test_ckks_row_reports_its_error_bound(results):
    r = small_fed().secure_sum(COLUMNS, protocol="ckks")
    comp = ProtocolComparison({"Paillier": results["Paillier"], "CKKS": r}, figure_backend="static")
    row = comp.rows.row(1, named=True)
    assert row["error_bound"] == r.error_bound > 0
    assert row["key_setup"] == "single key" and row["trusted"] == ["aggregator", "keyholder"]
    assert f"±{r.error_bound:.3g}" in comp.table.value and "exact" in comp.table.value
    assert "error bound" in repr(comp)


def fake_threshold_keys(setup: str) -> SimpleNamespace:
    """What ``threshold_trust_text`` reads of a threshold key: t, n and how it was set up."""
    return SimpleNamespace(threshold=2, params=SimpleNamespace(n_shares=3), setup=setup)


def test_dealer_is_told_apart_from_dealerless_by_the_threat_text():
    # setup_trust recognises a dealt key by this clause of the threat model: keep them in step.
    assert _DEALER_CLAUSE in threshold_trust_text(fake_threshold_keys("dealer"))
    assert _DEALER_CLAUSE not in threshold_trust_text(fake_threshold_keys("dealerless"))


@pytest.mark.slow
def test_dealerless_threshold_run_trusts_no_dealer(with_threshold):
    # The dealt run's messages with the dealerless threat model (a real dealerless key takes minutes to make).
    run = dataclasses.replace(with_threshold["threshold"],
                              threat_model=threshold_trust_text(fake_threshold_keys("dealerless")))
    trust = setup_trust(run)
    assert trust.key_setup == "threshold 2 (dealerless)"
    assert trust.trusted == ("aggregator",)
    assert trust.broken_by == "the aggregator colluding with any 2 share-holding parties"


def test_multiparty_ckks_row_states_its_own_collusion_not_a_threshold_one():
    fed = small_fed()
    r = fed.secure_sum(lambda df: {"age": float(df["age"].sum())}, max_abs=2.0**20, protocol="ckks-multiparty")
    trust = setup_trust(r)
    model = get_protocol("ckks-multiparty").trust_model
    # n-of-n key shares: the collusion named is the protocol's own (the other n - 1 parties through the sum,
    # or a deviating aggregator), never "any n share-holding parties", which would include the victim.
    assert trust.broken_by == model.broken_by and "other n - 1 parties" in trust.broken_by
    assert trust.key_setup == f"{len(r.parties)}-of-{len(r.parties)} key shares (no dealer)"
    assert trust.trusted == ("aggregator",)
