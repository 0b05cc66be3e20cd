"""The federation panel: parties, row counts and schema agreement, never a raw row."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..federation import Federation

__all__ = ["FederationPanel"]

# Schema matrix codes: absent, present everywhere alike, present but missing elsewhere, kind conflict.
_ABSENT, _SHARED, _PARTIAL, _CONFLICT = 0, 1, 2, 3
_SCHEMA_COLOURS = ["#eeeeee", "#4c78a8", "#9ecae9", "#e45756"]


def rows_figure(fed: Federation) -> go.Figure:
    """Bar chart of rows per party (row counts are public metadata)."""
    import plotly.graph_objects as go

    names = fed.party_names
    fig = go.Figure(go.Bar(x=names, y=[fed[n].n_rows for n in names], marker_color="#4c78a8", name="rows"))
    fig.update_layout(title="Rows per party", height=280, margin={"t": 40, "b": 30, "l": 40, "r": 10},
                      yaxis_title="rows")
    return fig


def schema_figure(fed: Federation) -> go.Figure:
    """Heatmap of columns x parties: shared, partial (missing somewhere), conflicting kind, absent."""
    import plotly.graph_objects as go

    report = fed.schema if len(fed) else None
    parties = fed.party_names
    columns = report.columns if report is not None else []
    conflicts = report.conflicts if report is not None else {}
    missing = report.missing if report is not None else {}
    z, text = [], []
    for c in columns:
        zr, tr = [], []
        for p in parties:
            dtype = report.dtypes[p].get(c) if report is not None else None
            if dtype is None:
                zr.append(_ABSENT)
            elif c in conflicts:
                zr.append(_CONFLICT)
            elif c in missing:
                zr.append(_PARTIAL)
            else:
                zr.append(_SHARED)
            tr.append(f"{p} · {c}: {dtype or 'absent'}")
        z.append(zr)
        text.append(tr)
    n = len(_SCHEMA_COLOURS) - 1
    scale = [[v / n, col] for i, col in enumerate(_SCHEMA_COLOURS) for v in (max(0, i - 0.5), min(n, i + 0.5))]
    fig = go.Figure(go.Heatmap(
        z=z, x=parties, y=columns, text=text, hoverinfo="text", zmin=0, zmax=n, colorscale=scale,
        xgap=1, ygap=1, colorbar={"tickvals": [0, 1, 2, 3], "ticktext": ["absent", "shared", "partial", "conflict"]},
    ))
    fig.update_layout(title="Schema agreement", height=max(260, 16 * len(columns) + 80),
                      margin={"t": 40, "b": 30, "l": 140, "r": 10}, yaxis={"autorange": "reversed"})
    return fig


class FederationPanel(Dashboard):
    """Parties, rows and schema agreement of a federation, with a per-party schema view.

    Shows only what parties declare to the federation (names, row counts,
    column names and types), never a value.

    Parameters
    ----------
    federation : Federation
        The federation to show.
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Examples
    --------
    >>> panel = FederationPanel(fed)          # doctest: +SKIP
    >>> panel.party.value = "north"           # the schema of one party
    >>> fed.add_party("clinic", "clinic.csv"); panel.refresh_button.click()
    """

    title = "Federation"

    def __init__(self, federation: Federation, *, figure_backend: str = "widget") -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.federation = federation
        self.party = w.Dropdown(description="party", options=[])
        self.detail = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="re-read the federation")
        self.party.observe(self._guard(lambda _: self._show_party()), names="value")
        self.refresh_button.on_click(self._guard(lambda _: self.refresh()))
        rows = self._figure_holder("rows", rows_figure(federation))
        schema = self._figure_holder("schema", schema_figure(federation))
        self.widget = w.VBox([
            w.HBox([self.header, self.refresh_button]),
            w.HBox([rows, schema], layout=figure_row()),
            w.HBox([self.party]),
            self.detail,
            self.log,
        ])
        self.refresh()

    def refresh(self) -> None:
        """Re-read parties and schema from the federation and redraw."""
        fed = self.federation
        total = sum(p.n_rows for p in fed)
        report = fed.schema if len(fed) else None
        shared = len(report.shared) if report is not None else 0
        conflicts = len(report.conflicts) if report is not None else 0
        self.header.value = (
            f"<b>{len(fed)} parties</b>, {total:,} rows · {fed.key_bits}-bit Paillier · backend "
            f"{escape(fed.backend.name)} · {shared} shared columns, "
            f"<span style='color:{'#c62828' if conflicts else 'inherit'}'>{conflicts} kind conflicts</span>"
        )
        self._show("rows", rows_figure(fed))
        self._show("schema", schema_figure(fed))
        self._set_choices(self.party, fed.party_names)
        self._show_party()

    def update(self, federation: Federation | None = None) -> None:
        """Show another federation (or re-read this one) and redraw."""
        if federation is not None:
            self.federation = federation
        self.refresh()

    def _show_party(self) -> None:
        name = self.party.value
        if name is None or name not in self.federation:
            self.detail.value = "<i>no party yet</i>"
            return
        from ..party import column_kind

        p = self.federation[name]
        rows = [(c, str(t), column_kind(t)) for c, t in p.schema.items()]
        others = {c for q in self.federation if q.name != name for c in q.columns}
        lacking = sorted(others - set(p.columns))
        note = (f"<p>columns other parties have but {escape(name)} lacks: {escape(', '.join(lacking))}</p>"
                if lacking else "")
        self.detail.value = (
            f"<p><b>{escape(name)}</b>: {p.n_rows:,} rows × {len(p.columns)} columns from "
            f"<code>{escape(p.source)}</code></p>{note}" + html_table(["column", "dtype", "kind"], rows)
        )

    def _text(self) -> str:
        fed = self.federation
        lines = [f"FederationPanel: {len(fed)} parties, {sum(p.n_rows for p in fed):,} rows"]
        lines += [f"  {p.name}: {p.n_rows} rows x {len(p.columns)} columns" for p in fed]
        if len(fed):
            rep = fed.schema
            lines.append(f"  shared columns: {len(rep.shared)}; kind conflicts: {len(rep.conflicts)}")
        return "\n".join(lines)

    def _html_body(self) -> str:
        fed = self.federation
        return html_table(["party", "rows", "columns", "source"],
                          [(p.name, p.n_rows, len(p.columns), p.source) for p in fed])
