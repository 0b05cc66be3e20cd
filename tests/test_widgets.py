"""Dashboards built headless and driven like a user would: clicks, dropdowns, trait changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import ConfigurationError
from fedbench.psi import PSIResult
from fedbench.transcript import Transcript
from fedbench.widgets import (
    BudgetPanel,
    CryptoCostPanel,
    FederationPanel,
    Progress,
    PSIOverlapView,
    TrainingDashboard,
    TranscriptViewer,
)
from fedbench.widgets.psi import overlap_matrix, venn_regions

REPO = Path(__file__).resolve().parents[1]
HOSPITALS = REPO / "data_samples" / "hospitals"


def small_fed() -> fb.Federation:
    fed = fb.Federation(512, allow_insecure_key_size=True)
    for name in ("north", "south", "east"):
        fed.add_party(name, HOSPITALS / f"{name}.csv")
    return fed


@pytest.fixture(scope="module")
def fed() -> fb.Federation:
    f = small_fed()
    f.secure_sum(["age"])
    f.stats(["age", "mean_radius"])
    return f


def check_reprs(dash, *, widget_view: bool = True) -> None:
    assert repr(dash).startswith(type(dash).__name__)
    assert dash._repr_html_().startswith("<div class='fedbench-dashboard'>")
    bundle = dash._repr_mimebundle_()
    assert bundle["text/plain"] == repr(dash)
    assert bundle["text/html"].startswith("<div class='fedbench-dashboard'>")
    if widget_view:
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.widget.model_id
    assert set(dash._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert "text/html" not in dash._repr_mimebundle_(exclude=["text/html"])


# -- federation panel ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["static", "widget"])
def test_federation_panel_refreshes_and_never_shows_values(backend):
    fed = small_fed()
    panel = FederationPanel(fed, figure_backend=backend)
    assert list(panel.figures["rows"].data[0].x) == ["north", "south", "east"]
    assert list(panel.figures["rows"].data[0].y) == [230, 150, 129]
    fed.add_party("clinic", pl.DataFrame({"age": [99, 98], "secret": ["Alice Example", "Bob Example"]}))
    panel.refresh_button.click()
    assert list(panel.figures["rows"].data[0].x)[-1] == "clinic"
    schema = panel.figures["schema"].data[0]
    assert "secret" in schema.y and "clinic" in schema.x
    panel.party.value = "clinic"
    assert "secret" in panel.detail.value and "Alice" not in panel.detail.value
    html = panel._repr_html_() + repr(panel)
    assert "Alice" not in html and "99" not in panel.detail.value
    assert "kind conflicts" in panel.header.value
    check_reprs(panel)
    if backend == "static":
        out = panel._holders["rows"].outputs[0]["data"]
        assert "application/vnd.plotly.v1+json" in out and "text/html" in out


def test_federation_panel_update_swaps_federation():
    panel = FederationPanel(fb.Federation(512, allow_insecure_key_size=True), figure_backend="static")
    assert panel.figures["rows"].data[0].x in (None, ())
    assert "no party yet" in panel.detail.value
    panel.update(small_fed())
    assert len(panel.figures["rows"].data[0].x) == 3 and panel.party.value == "north"


# -- training dashboard ----------------------------------------------------------------------
def test_training_dashboard_live_rounds_and_metric_switch():
    dash = TrainingDashboard(rounds=3, figure_backend="static")
    assert dash.progress.value == 0 and "waiting" in dash.status.value
    for r in (1, 2, 3):
        dash.update(round=r, federated_accuracy=0.7 + r / 10, local_accuracy=0.6, centralized_accuracy=0.95,
                    federated_loss=1 / r, **{"accuracy@north": 0.5 + r / 10}, seconds=0.5, nbytes=1000 * r)
    assert dash.progress.value == 3 and dash.progress.bar_style == "success"
    assert dash.metric.value == "accuracy"  # a score is shown before a loss
    names = [t.name for t in dash.figures["metric"].data]
    assert names == ["federated", "local-only", "centralized"]
    assert list(dash.figures["metric"].data[0].y) == pytest.approx([0.8, 0.9, 1.0])
    assert list(dash.figures["parties"].data[0].y) == pytest.approx([0.6, 0.7, 0.8])
    assert list(dash.figures["cost"].data[1].y) == [1000, 2000, 3000]
    dash.metric.value = "loss"  # a trait change redraws
    assert list(dash.figures["metric"].data[0].y) == pytest.approx([1.0, 0.5, 1 / 3])
    assert "loss per round" in dash.figures["metric"].layout.title.text
    assert "round 3/3" in dash.status.value
    check_reprs(dash)
    assert "round 3" in repr(dash)


def test_training_dashboard_replays_long_form_history_and_baselines():
    history = pl.DataFrame({
        "stage": ["fedavg", "fedavg", "fedavg", "fedavg", "centralized"],
        "round": [1, 1, 2, 2, None],
        "party": ["<global>", "north", "<global>", "north", "<global>"],
        "status": ["ok"] * 5,
        "loss": [0.9, 1.0, 0.5, 0.6, 0.3],
        "metric": [0.8, 0.7, 0.9, 0.85, 0.95],
        "n": [100.0, 40.0, 100.0, 40.0, 100.0],
        "seconds": [0.2, 0.1, 0.3, 0.1, None],
        "bytes": [500, None, 700, None, None],
    })
    dash = TrainingDashboard(figure_backend="static")
    dash.replay(history)
    assert [r.round for r in dash.records] == [1, 2]
    assert dash.metric.value == "metric" and "n" not in dash.metrics
    assert dash.records[1].parties["north"] == {"loss": 0.6, "metric": 0.85}
    assert dash.baselines == {"centralized": {"loss": 0.3, "metric": 0.95}}
    traces = {t.name: list(t.y) for t in dash.figures["metric"].data}
    assert traces["federated"] == [0.8, 0.9] and traces["centralized (baseline)"] == [0.95, 0.95]
    assert dash.progress.value == 2
    dash.set_baselines(local={"metric": 0.6})
    assert "local-only (baseline)" in [t.name for t in dash.figures["metric"].data]
    dash.reset()
    assert dash.records == [] and dash.figures["metric"].data == ()


def test_training_dashboard_follows_the_model_stage_of_a_pipeline_and_takes_a_comparison():
    history = pl.DataFrame({
        "stage": ["setup", "standardscaler", "standardscaler", "logisticregression", "logisticregression",
                  "logisticregression"],
        "round": [0, 1, 2, 1, 1, 2],
        "party": ["<global>", "<global>", "<global>", "<global>", "north", "<global>"],
        "accuracy": [None, None, None, 0.6, 0.8, 0.95],
        "seconds": [0.01, 0.02, 0.02, 0.1, 0.01, 0.1],
    })
    dash = TrainingDashboard(figure_backend="static")
    dash.replay(history)
    assert [(r.round, r.series["federated"]["accuracy"]) for r in dash.records] == [(1, 0.6), (2, 0.95)]
    assert dash.records[0].parties == {"north": {"accuracy": 0.8}}
    comparison = pl.DataFrame({"model": ["local:north", "local:south", "federated", "centralized"],
                               "score": [0.9, 0.8, 0.95, 0.96]})
    dash.set_comparison(comparison, metric="accuracy")
    assert dash.baselines == {"centralized": {"accuracy": 0.96}, "local-only": {"accuracy": pytest.approx(0.85)}}
    assert "local:south" in dash.comparison.value and "local:south" in dash._repr_html_()


def test_training_dashboard_as_a_callback():
    dash = TrainingDashboard(rounds=2, metric="loss", figure_backend="static")
    dash(1, {"loss": 0.5, "metric": 0.7})  # (round, metrics), as fedbench.learn's on_round hook
    dash({"loss": 0.4})  # a bare record: next round
    dash(loss=0.3, round=2)  # same round again: merged
    assert [r.round for r in dash.records] == [1, 2]
    assert dash.records[1].series["federated"] == {"loss": 0.3}
    with pytest.raises(TypeError):
        dash("nonsense")


def test_training_dashboard_widget_backend_updates_figure_in_place():
    dash = TrainingDashboard(rounds=2, figure_backend="widget")
    fig = dash.figures["metric"]
    dash.update(round=1, accuracy=0.5)
    dash.update(round=2, accuracy=0.6)
    assert dash.figures["metric"] is fig and list(fig.data[0].y) == [0.5, 0.6]


# -- budget panel ----------------------------------------------------------------------------
def test_budget_panel_tracks_spending_ledger_and_refusals():
    from fedbench.dp import BudgetExceededError, PrivacyBudget, PureDPEvent

    budget = PrivacyBudget(parties=lambda: ["a", "b"])
    budget.set_budget(1.0, 1e-6, parties=["a", "b"])
    panel = BudgetPanel(budget, figure_backend="static")
    assert list(panel.figures["spent"].data[0].y) == [0.0, 0.0]
    assert list(panel.figures["spent"].data[1].y) == [1.0, 1.0]
    for _ in range(3):
        budget.charge(["a", "b"], PureDPEvent(0.2), description="count")
    budget.charge(["a"], PureDPEvent(0.1), description="mean")
    panel.refresh_button.click()
    assert list(panel.figures["spent"].data[0].y) == pytest.approx([0.7, 0.6])
    assert panel.ledger_view.height == 2 + 2 * 3 + 1  # budget entry (a, b), 3 spends on a and b, 1 on a
    panel.party.value = "b"
    assert set(panel.ledger_view["party"]) == {"b"} and panel.ledger_view.height == 4
    curve = {t.name: t for t in panel.figures["curve"].data}
    assert list(curve["b ε"].y) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert list(curve["budget"].y) == [1.0, 1.0]
    # Two more releases of 0.2 fit; the projection goes one step further, across the budget line.
    assert list(curve["projection"].y) == pytest.approx([0.6, 0.8, 1.0, 1.2])
    assert "≈2 more releases" in panel.figures["curve"].layout.title.text
    with pytest.raises(BudgetExceededError):
        budget.charge(["a", "b"], PureDPEvent(0.5), description="too much")
    panel.refresh()
    assert "Refused requests (1)" in panel.refused.value and "too much" in panel.refused.value
    assert "1 refused request<" in panel.header.value
    panel.party.value = "(all parties)"
    assert panel.ledger_view.height == 9
    check_reprs(panel)
    assert "PrivacyBudget" in repr(panel)


def test_budget_panel_planned_projection():
    from fedbench.dp import DPConfig, PrivacyBudget

    budget = PrivacyBudget(parties=lambda: ["a", "b"])
    budget.set_budget(2.0, 1e-5, parties=["a", "b"])
    config = DPConfig(noise_multiplier=5.0, clip=1.0)
    panel = BudgetPanel(budget, party="a", plan=(config, 4), figure_backend="static")
    projection = next(t for t in panel.figures["curve"].data if t.name == "projection")
    assert list(projection.x) == [0, 1, 2, 3, 4]
    assert list(projection.y) == sorted(projection.y) and projection.y[-1] > 0
    assert "4 planned rounds" in panel.figures["curve"].layout.title.text


def test_budget_panel_from_a_federation(fed):
    f = small_fed()
    f.set_budget(epsilon=1.0, delta=1e-6)
    f.secure_sum(lambda df: {"n": df.height}, epsilon=0.5, sensitivity=1.0)
    panel = BudgetPanel(f.budget, figure_backend="static")
    assert list(panel.figures["spent"].data[0].y) == pytest.approx([0.5, 0.5, 0.5])


# -- PSI view --------------------------------------------------------------------------------
def psi_result(parties, sizes, size, overlap=None, mode="cardinality"):
    frame = None
    if overlap is not None:
        frame = pl.DataFrame({"party": list(parties)} | {p: [row[i] for row in overlap] for i, p in enumerate(parties)})
    return PSIResult(mode=mode, parties=tuple(parties), on=("id",), size=size, receiver=None, leakage="sizes",
                     transcript=Transcript(), elapsed=0.1, nbytes=100, set_sizes=dict(zip(parties, sizes, strict=True)),
                     overlap=frame)


def test_psi_view_two_parties_venn_and_matrix_toggle():
    res = psi_result(["a", "b"], [50, 60], 20, mode="reveal")
    assert venn_regions(res) == {"a": 30, "a&b": 20, "b": 40}
    view = PSIOverlapView(res, figure_backend="static")
    assert list(view.view.options) == ["Venn", "Matrix"]
    fig = view.figures["overlap"]
    assert len(fig.layout.shapes) == 2 and list(fig.data[0].text) == ["30", "20", "40"]
    # Area-proportional: the circles' overlap area matches the intersection size.
    from fedbench.widgets.psi import _lens

    (c1, c2) = fig.layout.shapes
    r1, r2 = (c1.x1 - c1.x0) / 2, (c2.x1 - c2.x0) / 2
    d = (c2.x0 + r2) - (c1.x0 + r1)
    assert _lens(r1, r2, d) == pytest.approx(20, rel=1e-6)
    view.view.value = "Matrix"
    fig = view.figures["overlap"]
    assert fig.data[0].type == "heatmap" and fig.layout.shapes == ()
    assert fig.data[0].z[0][1] == 20
    check_reprs(view)


def test_psi_view_three_and_four_parties(fed):
    parties = ["a", "b", "c"]
    m = [[50, 20, 10], [20, 60, 50], [10, 50, 80]]
    res = psi_result(parties, [50, 60, 80], 10, overlap=m)
    assert venn_regions(res) == {"a": 30, "b": 0, "c": 30, "a&b": 10, "a&c": 0, "b&c": 40, "a&b&c": 10}
    view = PSIOverlapView(res, figure_backend="static")
    assert len(view.figures["overlap"].layout.shapes) == 3
    assert "approximate" in view.figures["overlap"].layout.title.text
    four = psi_result(list("abcd"), [5, 6, 7, 8], 1, overlap=[[5, 2, 2, 1], [2, 6, 3, 1], [2, 3, 7, 4], [1, 1, 4, 8]])
    view.update(four)
    assert list(view.view.options) == ["Matrix"] and view.figures["overlap"].data[0].type == "heatmap"
    # Reveal mode with three parties: pairwise overlaps were not revealed, so no Venn is drawn.
    hidden = psi_result(parties, [50, 60, 80], 10, mode="reveal")
    assert overlap_matrix(hidden)[0][1] is None and venn_regions(hidden) is None
    view.update(hidden)
    assert view.figures["overlap"].data[0].type == "heatmap"
    assert "not revealed" in view.figures["overlap"].data[0].text[0][1]


def test_psi_view_from_a_real_intersection():
    f = fb.Federation(512, allow_insecure_key_size=True)
    f.add_party("a", pl.DataFrame({"id": [f"c{i}" for i in range(30)]}))
    f.add_party("b", pl.DataFrame({"id": [f"c{i}" for i in range(20, 45)]}))
    view = PSIOverlapView(f.intersect("id"), figure_backend="static")
    assert list(view.figures["overlap"].data[0].text) == ["20", "10", "15"]
    assert "10 shared identifiers" in view.header.value


# -- transcript dashboards -------------------------------------------------------------------
def test_transcript_viewer_filters(fed):
    viewer = TranscriptViewer(fed, figure_backend="static")
    total = len(fed.transcript)
    assert viewer.filtered.height == total
    viewer.party.value = "north"
    assert viewer.filtered.height < total
    assert all("north" in (s, r) for s, r in viewer.filtered.select("sender", "receiver").iter_rows())
    viewer.kind.value = "ciphertexts"
    assert viewer.filtered.height == 3 and set(viewer.filtered["sender"]) == {"north"}  # sum + 2 stats rounds
    assert viewer.table.value.count("<tr>") == 1 + 3
    first_run = viewer.run.options[1][1]
    viewer.run.value = first_run
    assert set(viewer.filtered["run_id"]) == {first_run} and viewer.filtered.height == 1
    assert list(viewer.figures["bytes"].data[0].x) == ["ciphertexts"]
    check_reprs(viewer)
    assert "party=north" in repr(viewer)
    fed.count()  # a new run appears after refresh, and the filters survive it
    viewer.refresh_button.click()
    assert len(viewer.run.options) == len(set(fed.transcript.to_polars()["run_id"])) + 1
    assert viewer.party.value == "north" and viewer.run.value == first_run
    with pytest.raises(ConfigurationError, match="no message with party 'mars'"):
        TranscriptViewer(fed, party="mars", figure_backend="static")


def test_crypto_cost_panel(fed):
    panel = CryptoCostPanel(fed, figure_backend="static")
    costs = panel.costs
    assert costs["party"].to_list() == fed.party_names
    per_party = sum(r.ciphertexts for r in fed.history) // len(fed)
    assert costs["ciphertexts"].to_list() == [per_party] * len(fed)
    assert all(costs["encrypted_bytes"] > 0) and all(costs["encrypt_seconds"] > 0)
    assert "512-bit Paillier" in panel.header.value
    run_id = panel.run.options[1][1]
    panel.run.value = run_id
    assert panel.costs["ciphertexts"].to_list() == [fed.history[0].ciphertexts // len(fed)] * len(fed)
    assert list(panel.figures["bytes"].data[0].y) == panel.costs["encrypted_bytes"].to_list()
    check_reprs(panel)
    bare = CryptoCostPanel(fed.transcript, figure_backend="static")
    assert bare.bits is None and bare.costs["ciphertexts"].null_count() == len(fed)
    with pytest.raises(ConfigurationError):
        CryptoCostPanel(42, figure_backend="static")


# -- shared machinery ------------------------------------------------------------------------
def test_progress_is_quiet_outside_a_kernel_and_drivable_headless():
    quiet = Progress(3, "parties")
    assert not quiet.enabled and quiet.widget is None
    with quiet as bar:
        bar.advance()
    assert "quiet" in repr(quiet)
    bar = Progress(3, "parties", enabled=True)
    bar.advance(note="north")
    assert bar.bar.value == 1 and bar.label.value == "north"
    bar.close(success=False)
    assert bar.bar.bar_style == "danger"
    with Progress(2, enabled=True) as ok:
        ok.advance()
    assert ok.bar.value == 2 and ok.bar.bar_style == "success" and ok.widget.layout.display == "none"


def test_callback_errors_go_to_the_output_widget():
    dash = TrainingDashboard(figure_backend="static")
    boom = dash._guard(lambda: 1 / 0)
    assert boom() is None
    assert dash.log.outputs[-1]["name"] == "stderr" and "ZeroDivisionError" in dash.log.outputs[-1]["text"]


def test_bad_figure_backend_and_widget_fallback(monkeypatch):
    with pytest.raises(ConfigurationError, match="figure_backend"):
        TrainingDashboard(figure_backend="svg")
    import plotly.graph_objects as go

    def no_anywidget(*a, **k):
        raise ImportError("anywidget is missing")

    monkeypatch.setattr(go, "FigureWidget", no_anywidget)
    dash = TrainingDashboard(figure_backend="widget")
    assert dash.figure_backend == "static" and "anywidget is missing" in dash.log.outputs[0]["text"]
    dash.update(round=1, accuracy=0.5)
    assert isinstance(dash.figures["metric"], go.Figure) and list(dash.figures["metric"].data[0].y) == [0.5]


def test_dashboards_render_without_a_widget_front_end(fed):
    # nbconvert, GitHub, email: the static HTML carries tables and figures.
    html = TranscriptViewer(fed, figure_backend="static")._repr_html_()
    assert "<table class='fedbench-table'>" in html and "plotly" in html
    assert np.isfinite(fed.mean("age"))


def test_layout_paths_removed_by_a_new_figure():
    from fedbench.widgets._base import removed_layout_paths

    old = {"shapes": [{}], "template": {}, "xaxis": {"visible": False, "scaleanchor": "y", "title": "x"}}
    assert removed_layout_paths(old, {"xaxis": {"title": "y"}}) == ["shapes", "xaxis.visible", "xaxis.scaleanchor"]


def test_psi_toggle_replaces_the_live_figure_and_training_updates_in_place():
    # In the browser a relayout merges: the Venn shapes and numeric axes survived under the heatmap.
    res = psi_result(["a", "b"], [50, 60], 20, mode="reveal")
    view = PSIOverlapView(res, figure_backend="widget")
    venn = view.figures["overlap"]
    view.view.value = "Matrix"
    heat = view.figures["overlap"]
    assert heat is not venn and view._holders["overlap"].children == (heat,)
    assert heat.data[0].type == "heatmap" and heat.layout.shapes == ()


def test_budget_panel_curves_distinct_ticks_integer_and_marker_visible_at_full_spend():
    from fedbench.dp import PrivacyBudget, PureDPEvent

    budget = PrivacyBudget(parties=lambda: ["a", "b", "c", "d"])
    budget.set_budget(1.0, 1e-6)
    panel = BudgetPanel(budget, figure_backend="static")
    budget.charge(["a", "b", "c", "d"], PureDPEvent(1.0), mechanism="laplace", description="count")
    assert panel.refresh_if_changed() and not panel.refresh_if_changed()
    spent = panel.figures["spent"]
    assert list(spent.data[0].y) == [1.0] * 4 and spent.layout.yaxis.range[1] > 1.0  # marker not at the edge
    assert spent.data[1].text[0] == "budget 1"
    curve = panel.figures["curve"]
    assert len(curve.data) == 4 and len({t.x for t in curve.data}) == 4  # coinciding lines shifted apart
    assert len({t.line.dash for t in curve.data}) == 4
    assert curve.layout.xaxis.dtick == 1 and curve.layout.margin.t >= 60


def test_training_cost_axis_of_a_constant_byte_series_starts_at_zero():
    dash = TrainingDashboard(rounds=3, figure_backend="static")
    for r in (1, 2, 3):
        dash.update(round=r, accuracy=0.5, nbytes=9651.7, seconds=0.1)
    axis = dash.figures["cost"].layout.yaxis2
    assert tuple(axis.range) == pytest.approx((0, 13000)) and axis.tickformat == "~s"


def test_cardinality_psi_card_names_no_receiver():
    res = psi_result(["a", "b"], [50, 60], 20, mode="cardinality")
    res.receiver = "a"  # the comparer, which receives no identifier
    html = res._repr_html_()
    assert "receiver" not in html and "Nobody learned which identifiers are shared" in html
    assert "a compared the fully blinded sets" in html and "receiver" not in repr(res)
    res.mode = "reveal"
    assert "receiver <b>a</b>" in res._repr_html_()


def test_refusal_repr_is_one_readable_line():
    from fedbench.dp import BudgetExceededError, PrivacyBudget, PureDPEvent

    budget = PrivacyBudget(parties=lambda: ["a", "b"])
    budget.set_budget(1.0, 1e-6)
    with pytest.raises(BudgetExceededError):
        budget.charge(["a"], PureDPEvent(2.0), mechanism="laplace", description="mean of age")
    text = repr(budget.refusals[0])
    assert text.startswith("<Refusal ") and "a asked ε=2 with ε=1 left of 1" in text
    assert "Refusal(" not in text and "\n" not in text


def test_long_transcript_and_schema_reprs_are_summarised_with_a_way_to_see_all(fed):
    fed.secure_sum(["age"])
    fed.secure_sum(["age"])
    t = fed.transcript
    assert len(t) > t.HTML_ROWS
    html = t._repr_html_()
    assert html.count("<tr><td>") < len(t) and f"{len(t) - t.HTML_ROWS} more messages" in html
    assert "By sender, receiver and kind" in html and ".show(all=True)" in html
    assert t.show(all=True).data.count("<tr><td>") >= len(t)
    schema = fed.schema
    if len(schema.columns) > schema.HTML_ROWS:
        assert "more columns" in schema._repr_html_() and "more columns" not in schema.show(all=True).data
    viewer = TranscriptViewer(fed, figure_backend="static")
    assert "more rows" in viewer.table.value and "show all" in viewer.table.value
    viewer.show_all.value = True
    assert "more rows" not in viewer.table.value


def test_budget_panel_refreshes_after_a_cell_that_charged(monkeypatch):
    # In JupyterLab the panel went stale after Run All until Refresh was clicked.
    from IPython.core.interactiveshell import InteractiveShell

    from fedbench.dp import PrivacyBudget, PureDPEvent

    shell = InteractiveShell.instance()
    monkeypatch.setattr("fedbench.widgets._base.in_notebook", lambda: True)
    budget = PrivacyBudget(parties=lambda: ["a", "b"])
    budget.set_budget(1.0, 1e-6)
    panel = BudgetPanel(budget, figure_backend="static")
    before = panel.header.value
    budget.charge(["a"], PureDPEvent(0.5), mechanism="laplace", description="count")
    assert panel.header.value == before  # nothing redraws in the middle of a cell
    shell.run_cell("x = 1")
    assert panel.header.value != before and f"{len(budget.ledger)} ledger entries" in panel.header.value
    assert list(panel.figures["spent"].data[0].y) == [0.5, 0.0]
