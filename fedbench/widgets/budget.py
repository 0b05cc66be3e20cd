"""The privacy-budget panel: epsilon spent vs budget per party, the spend curve, the ledger, refusals."""

from __future__ import annotations

import itertools
from html import escape
from typing import TYPE_CHECKING, Any

from ..transcript import _n
from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import polars as pl

__all__ = ["BudgetPanel"]

ALL = "(all parties)"
_LEDGER_COLUMNS = [
    "seq", "kind", "mechanism", "party", "description", "event", "epsilon_after", "differentially_private",
]


_DASHES = ("solid", "dash", "dot", "dashdot")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross")
# Room above the plot for the toolbar (modebar), so that it never covers the title.
_MARGIN = {"t": 80, "b": 40, "l": 50, "r": 10}


def _title(text: str, note: str = "") -> dict[str, Any]:
    """A title placed below the toolbar, with an optional smaller second line."""
    full = f"{text}<br><sup>{escape(note)}</sup>" if note else text
    return {"text": full, "y": 0.98, "yref": "container", "yanchor": "top", "pad": {"t": 30}}


def _colour(frac: float) -> str:
    return "#2e7d32" if frac < 0.75 else ("#f9a825" if frac < 1.0 else "#c62828")


class BudgetPanel(Dashboard):
    """Per-party privacy budgets of a federation, live.

    Shows epsilon spent against each party's budget, the cumulative epsilon
    of one party (or all) release after release with the budget line and a
    projection, the ledger as a table filtered by party, and refused requests.

    Parameters
    ----------
    budget : fedbench.dp.PrivacyBudget
        The budget to show (``fed.budget``).
    party : str, optional
        Party selected first (default: all parties).
    plan : (DPConfig, int), optional
        A planned DP-FedAvg configuration and number of rounds: the projection
        is then the accountant's exact epsilon after those rounds, instead of a
        straight line through the recent releases.
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Examples
    --------
    >>> panel = BudgetPanel(fed.budget)            # doctest: +SKIP
    >>> panel.party.value = "north"               # curve and ledger of one party
    >>> panel.refresh()                            # after more releases (the magics do it for you)
    """

    title = "Privacy budget"

    def __init__(
        self,
        budget: Any,
        *,
        party: str | None = None,
        plan: tuple[Any, int] | None = None,
        figure_backend: str = "widget",
    ) -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.budget = budget
        self.plan = plan
        self.party = w.Dropdown(description="party", options=[ALL], value=ALL)
        self.ledger_table = w.HTML()
        self.refused = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        #: The ledger rows currently shown (polars DataFrame).
        self.ledger_view: pl.DataFrame | None = None
        self.refresh_button.on_click(self._guard(lambda _: self.refresh()))
        self.party.observe(self._guard(lambda _: self._draw_party()), names="value")
        spent = self._figure_holder("spent", self._spent_figure())
        curve = self._figure_holder("curve", self._curve_figure())
        self.widget = w.VBox([
            w.HBox([self.header, self.refresh_button]),
            w.HBox([spent, curve], layout=figure_row()),
            self.party,
            w.HTML("<b>Ledger</b>"),
            self.ledger_table,
            self.refused,
            self.log,
        ])
        self.refresh()
        if party is not None:
            self.party.value = party
        self._watch_cells()

    def _signature(self) -> tuple[int, int]:
        # Cheap: what the panel shows changes only when the ledger or the refusals grow.
        return len(self.budget.ledger), len(self.budget.refusals)

    def _watch_cells(self) -> None:
        """Refresh after every notebook cell that charged or refused something (no Refresh click needed)."""
        import weakref

        from ._base import in_notebook

        if not in_notebook():
            return
        from IPython import get_ipython

        shell = get_ipython()
        ref = weakref.ref(self)

        def after_cell(*_: Any) -> None:
            panel = ref()
            if panel is None:
                shell.events.unregister("post_run_cell", after_cell)
            else:
                panel.refresh_if_changed()

        shell.events.register("post_run_cell", after_cell)

    def refresh_if_changed(self) -> bool:
        """Redraw if the ledger or the refusals changed since the last redraw; return whether it did."""
        try:
            changed = self._signature() != self._seen
        except Exception:  # a ledger that cannot be read now: the next refresh reports it
            return False
        if changed:
            self._guard(lambda: self.refresh())()
        return changed

    # -- data ----------------------------------------------------------------------------
    def _parties(self) -> list[str]:
        return list(self.budget.parties)

    def _spend_points(self, party: str) -> tuple[list[int], list[float]]:
        """Cumulative epsilon of ``party`` after each of its differentially private releases."""
        xs, ys = [0], [0.0]
        for entry in self.budget.ledger.entries:
            if entry.kind == "spend" and party in entry.parties:
                xs.append(len(xs))
                ys.append(float(entry.after[party][0]))
        return xs, ys

    def _projection(self, party: str, xs: list[int], ys: list[float]) -> tuple[list[int], list[float], str]:
        limit = float(self.budget.limit(party)[0])
        if self.plan is not None:
            config, rounds = self.plan
            steps = sorted({max(1, round(rounds * k / 8)) for k in range(1, 9)})
            pts = [self.budget.preview([party], config.event(k))[party][0] for k in steps]
            return [xs[-1]] + [xs[-1] + k for k in steps], [ys[-1], *pts], f"{rounds} planned rounds"
        if len(xs) < 2:
            return [], [], ""
        recent = [b - a for a, b in itertools.pairwise(ys)][-5:]
        step = sum(recent) / len(recent)
        if step <= 0:
            return [], [], ""
        left = max(0.0, limit - ys[-1])
        more = int(left / step + 1e-9)
        n = max(1, min(more + 1, 50))
        px = [xs[-1] + k for k in range(n + 1)]
        py = [ys[-1] + k * step for k in range(n + 1)]
        return px, py, f"≈{more} more releases like the recent ones fit"

    # -- figures -------------------------------------------------------------------------
    def _spent_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        parties = self._parties()
        spent = [self.budget.spent(p)[0] for p in parties]
        limits = [self.budget.limit(p)[0] for p in parties]
        fig = go.Figure()
        top = max([*spent, *limits, 0.0]) or 1.0
        fig.add_bar(x=parties, y=spent, name="ε spent", opacity=0.8,
                    marker_color=[_colour(s / b) for s, b in zip(spent, limits, strict=True)],
                    hovertext=[f"spent {s:.4g} of {b:.4g} (remaining {max(0.0, b - s):.4g})"
                               for s, b in zip(spent, limits, strict=True)])
        # Drawn above the bars, with room above the tallest one: still visible once spent equals budget.
        fig.add_scatter(x=parties, y=limits, mode="markers+text", name="ε budget", cliponaxis=False,
                        text=[f"budget {b:.3g}" for b in limits], textposition="top center",
                        marker={"symbol": "line-ew-open", "size": 36, "color": "#111",
                                "line": {"width": 3, "color": "#111"}})
        fig.update_layout(title=_title("ε spent vs budget"), yaxis_title="epsilon", height=320,
                          yaxis={"range": [0, top * 1.25]}, margin=_MARGIN, legend={"orientation": "h", "y": -0.2})
        return fig

    def _curve_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        selected = self.party.value if hasattr(self, "party") else ALL
        parties = self._parties() if selected == ALL else [selected]
        note = ""
        curves = {p: self._spend_points(p) for p in parties if p in self.budget.parties}
        # Parties touched by the same releases have identical curves: shift each a little sideways and give
        # it its own dash and symbol so that every party of the legend stays visible.
        same = len(curves) > 1 and len({(tuple(x), tuple(y)) for x, y in curves.values()}) < len(curves)
        for i, (p, (xs, ys)) in enumerate(curves.items()):
            dx = (i - (len(curves) - 1) / 2) * 0.08 if same else 0.0
            fig.add_scatter(x=[x + dx for x in xs], y=ys, mode="lines+markers", name=f"{p} ε", customdata=xs,
                            hovertemplate=f"{escape(p)}: release %{{customdata}}, ε %{{y:.4g}}<extra></extra>",
                            line={"dash": _DASHES[i % len(_DASHES)]},
                            marker={"symbol": _SYMBOLS[i % len(_SYMBOLS)], "size": 8})
            if selected != ALL:
                limit = float(self.budget.limit(p)[0])
                px, py, note = self._projection(p, xs, ys)
                if px:
                    fig.add_scatter(x=px, y=py, mode="lines", name="projection", line={"dash": "dot", "color": "#888"})
                right = max(xs[-1], px[-1] if px else 0, 1)
                fig.add_scatter(x=[0, right], y=[limit, limit], mode="lines", name="budget",
                                line={"dash": "dash", "color": "#c62828"})
        # Releases are counted: integer ticks only.
        fig.update_layout(title=_title("ε after each release", note), xaxis_title="differentially private release",
                          xaxis={"tick0": 0, "dtick": 1, "tickformat": "d", "rangemode": "tozero"},
                          yaxis_title="epsilon", height=320, margin=_MARGIN, legend={"orientation": "h", "y": -0.3})
        return fig

    # -- redraw --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read budgets, ledger and refusals and redraw."""
        parties = self._parties()
        self._set_choices(self.party, [ALL, *parties], ALL)
        refusals = self.budget.refusals
        self._seen = self._signature()
        self.header.value = (
            f"<b>{_n(len(parties), 'party', 'parties')} with a budget</b> · "
            f"{_n(len(self.budget.ledger), 'ledger entry', 'ledger entries')} · "
            f"<span style='color:{'#c62828' if refusals else 'inherit'}'>{_n(len(refusals), 'refused request')}</span>"
            + self._location_html()
        )
        self._show("spent", self._spent_figure())
        self._draw_party()
        if refusals:
            rows = [(r.timestamp.strftime("%H:%M:%S"), r.mechanism, r.description, r.party, r.requested[0],
                     r.remaining[0], r.budget[0]) for r in refusals]
            self.refused.value = (
                f"<b style='color:#c62828'>Refused requests ({len(refusals)})</b>: nothing was computed for these"
                + html_table(["time", "mechanism", "description", "party", "ε requested", "ε remaining",
                              "ε budget"], rows)
            )
        else:
            self.refused.value = "<i>no refused request</i>"

    def _location_html(self) -> str:
        """Where the ledger lives: a file path, or a warning that it is not persistent."""
        location = getattr(self.budget, "location", None)
        if not callable(location):
            return ""
        colour = "inherit" if getattr(self.budget, "persistent", True) else "#c62828"
        return f"<br><small style='color:{colour}'>{escape(location())}</small>"

    def update(self, budget: Any | None = None) -> None:
        """Show another budget (or re-read this one) and redraw."""
        if budget is not None:
            self.budget = budget
        self.refresh()

    def _draw_party(self) -> None:
        self._show("curve", self._curve_figure())
        frame = self.budget.ledger.to_polars()
        if self.party.value != ALL:
            frame = frame.filter(frame["party"] == self.party.value)
        self.ledger_view = frame.select(_LEDGER_COLUMNS)
        self.ledger_table.value = (
            html_table(["#", "kind", "mechanism", "party", "description", "event", "ε after", "DP"],
                       list(self.ledger_view.iter_rows()))
            if self.ledger_view.height else "<i>the ledger is empty</i>"
        )

    # -- reprs ---------------------------------------------------------------------------
    def _text(self) -> str:
        return f"BudgetPanel\n{self.budget!r}"

    def _html_body(self) -> str:
        return self.budget._repr_html_() if hasattr(self.budget, "_repr_html_") else escape(repr(self.budget))
