"""The PSI overlap view: a Venn diagram for two or three parties, an overlap heatmap for any number."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from ._base import Dashboard

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["PSIOverlapView", "overlap_matrix", "venn_regions"]

_COLOURS = ["#4c78a8", "#f58518", "#54a24b"]


def overlap_matrix(result: Any) -> list[list[int | None]]:
    """Pairwise overlaps of a PSI result as a k x k matrix (diagonal: set sizes; ``None``: not revealed).

    ``cardinality`` runs reveal every pair; with two parties any mode reveals
    the one overlap (the intersection size); otherwise only the sizes are known.
    """
    parties = list(result.parties)
    k = len(parties)
    if result.overlap is not None:
        frame = result.overlap
        by_name = {row[0]: list(row[1:]) for row in frame.iter_rows()}
        cols = frame.columns[1:]
        return [[int(by_name[p][cols.index(q)]) for q in parties] for p in parties]
    m: list[list[int | None]] = [[None] * k for _ in range(k)]
    for i, p in enumerate(parties):
        m[i][i] = int(result.set_sizes.get(p, 0))
    if k == 2:
        m[0][1] = m[1][0] = int(result.size)
    return m


def _revealed(m: list[list[int | None]]) -> list[list[int]] | None:
    """The matrix with its type narrowed to ``int``, or ``None`` if any overlap was not revealed."""
    full: list[list[int]] = []
    for row in m:
        known = [v for v in row if v is not None]
        if len(known) != len(row):
            return None
        full.append(known)
    return full


def venn_regions(result: Any) -> dict[str, int] | None:
    """Exclusive region counts of a 2- or 3-party Venn diagram, keyed by party names joined with ``&``.

    Returns ``None`` when the pairwise overlaps were not revealed.
    """
    parties = list(result.parties)
    m = _revealed(overlap_matrix(result))
    if m is None:
        return None
    if len(parties) == 2:
        a, b = parties
        both = m[0][1]
        return {a: m[0][0] - both, f"{a}&{b}": both, b: m[1][1] - both}
    if len(parties) == 3:
        a, b, c = parties
        t = int(result.size)
        ab, ac, bc = m[0][1] - t, m[0][2] - t, m[1][2] - t
        return {
            a: m[0][0] - ab - ac - t, b: m[1][1] - ab - bc - t, c: m[2][2] - ac - bc - t,
            f"{a}&{b}": ab, f"{a}&{c}": ac, f"{b}&{c}": bc, f"{a}&{b}&{c}": t,
        }
    return None


def _lens(r1: float, r2: float, d: float) -> float:
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        return math.pi * min(r1, r2) ** 2
    a1 = r1 * r1 * math.acos(max(-1.0, min(1.0, (d * d + r1 * r1 - r2 * r2) / (2 * d * r1))))
    a2 = r2 * r2 * math.acos(max(-1.0, min(1.0, (d * d + r2 * r2 - r1 * r1) / (2 * d * r2))))
    k = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
    return a1 + a2 - 0.5 * math.sqrt(max(0.0, k))


def _distance(r1: float, r2: float, area: float) -> float:
    """Centre distance at which two circles overlap by ``area`` (bisection; the lens shrinks with distance)."""
    lo, hi = abs(r1 - r2), r1 + r2
    for _ in range(60):
        mid = (lo + hi) / 2
        if _lens(r1, r2, mid) > area:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class PSIOverlapView(Dashboard):
    """How the parties' identifier sets overlap, from a :class:`~fedbench.psi.PSIResult`.

    Two or three parties: an area-proportional Venn diagram (exact for two,
    approximate for three) with the exclusive counts; any number: the pairwise
    overlap heatmap.  Only what the run revealed is drawn.

    Parameters
    ----------
    result : PSIResult
        The intersection to show.
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Examples
    --------
    >>> view = PSIOverlapView(fed.intersect("customer_id"))   # doctest: +SKIP
    >>> view.view.value = "Matrix"
    """

    title = "Private set intersection"

    def __init__(self, result: Any, *, figure_backend: str = "widget") -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.result = result
        self.view = w.ToggleButtons(options=self._views(), description="view")
        self.view.observe(self._guard(lambda _: self._draw()), names="value")
        holder = self._figure_holder("overlap", self._figure())
        self.widget = w.VBox([self.header, self.view, holder, self.log])
        self.refresh()

    def _views(self) -> list[str]:
        return ["Venn", "Matrix"] if 2 <= len(self.result.parties) <= 3 else ["Matrix"]

    def refresh(self) -> None:
        """Redraw from :attr:`result`."""
        r = self.result
        views = self._views()
        self._set_choices(self.view, views)
        self.header.value = (
            f"<b>{r.size:,} shared identifiers</b> · mode <code>{escape(r.mode)}</code> · key "
            f"<code>{escape(', '.join(r.on))}</code> · "
            + " · ".join(f"{escape(p)} {r.set_sizes.get(p, 0):,}" for p in r.parties)
        )
        self._draw()

    def update(self, result: Any | None = None) -> None:
        """Show another PSI result (or redraw this one)."""
        if result is not None:
            self.result = result
        self.refresh()

    def _draw(self) -> None:
        self._show("overlap", self._figure())

    def _figure(self) -> go.Figure:
        mode = self.view.value if hasattr(self, "view") else self._views()[0]
        if mode == "Venn":
            regions = venn_regions(self.result)
            if regions is not None:
                return self._venn(regions)
        return self._matrix()

    def _venn(self, regions: dict[str, int]) -> go.Figure:
        import plotly.graph_objects as go

        parties = list(self.result.parties)
        sizes = [max(1, self.result.set_sizes.get(p, 0)) for p in parties]
        radii = [math.sqrt(s / math.pi) for s in sizes]
        m = overlap_matrix(self.result)
        if len(parties) == 2:
            d = _distance(radii[0], radii[1], m[0][1] or 0)
            centres = [(0.0, 0.0), (d, 0.0)]
        else:
            d_ab = _distance(radii[0], radii[1], m[0][1] or 0)
            d_ac = _distance(radii[0], radii[2], m[0][2] or 0)
            d_bc = _distance(radii[1], radii[2], m[1][2] or 0)
            base = max(d_ab, 1e-9)
            x = (base * base + d_ac * d_ac - d_bc * d_bc) / (2 * base)
            centres = [(0.0, 0.0), (d_ab, 0.0), (x, math.sqrt(max(0.0, d_ac * d_ac - x * x)))]
        cx = sum(c[0] for c in centres) / len(centres)
        cy = sum(c[1] for c in centres) / len(centres)
        shapes = [
            {"type": "circle", "x0": x - r, "x1": x + r, "y0": y - r, "y1": y + r,
             "fillcolor": _COLOURS[i], "opacity": 0.35, "line": {"color": _COLOURS[i], "width": 2}}
            for i, ((x, y), r) in enumerate(zip(centres, radii, strict=True))
        ]

        def away(x: float, y: float, dist: float) -> tuple[float, float]:
            # Push a label from the diagram's centre so that exclusive counts sit in their own lobe.
            dx, dy = x - cx, y - cy
            n = math.hypot(dx, dy) or 1.0
            return x + dx / n * dist, y + dy / n * dist

        lx, ly, text = [], [], []
        for name, count in regions.items():
            members = [parties.index(p) for p in name.split("&")]
            if len(members) == 1:
                i = members[0]
                x, y = away(*centres[i], radii[i] * 0.5)
            elif len(members) == len(parties):
                x, y = cx, cy
            else:
                x = sum(centres[i][0] for i in members) / len(members)
                y = sum(centres[i][1] for i in members) / len(members)
                if len(parties) == 3:
                    x, y = away(x, y, 0.15 * min(radii[i] for i in members))
            lx.append(x)
            ly.append(y)
            text.append(f"{count:,}")
        names_x = [c[0] for c in centres]
        names_y = [c[1] + r * 1.1 for c, r in zip(centres, radii, strict=True)]
        fig = go.Figure([
            go.Scatter(x=lx, y=ly, text=text, mode="text", textfont={"size": 16}, name="counts",
                       hovertext=list(regions), hoverinfo="text"),
            go.Scatter(x=names_x, y=names_y, text=parties, mode="text", textfont={"size": 14, "color": "#333"},
                       name="parties", hoverinfo="skip"),
        ])
        approx = "" if len(parties) == 2 else " (areas approximate)"
        fig.update_layout(
            title=f"Overlap of identifiers{approx}", shapes=shapes, showlegend=False, height=380,
            xaxis={"visible": False, "scaleanchor": "y"}, yaxis={"visible": False},
            margin={"t": 40, "b": 10, "l": 10, "r": 10},
        )
        return fig

    def _matrix(self) -> go.Figure:
        import plotly.graph_objects as go

        parties = list(self.result.parties)
        m = overlap_matrix(self.result)
        text = [["not revealed" if v is None else f"{v:,}" for v in row] for row in m]
        fig = go.Figure(go.Heatmap(
            z=[[float("nan") if v is None else v for v in row] for row in m], x=parties, y=parties,
            text=text, texttemplate="%{text}", colorscale="Blues", hovertemplate="%{y} ∩ %{x}: %{text}<extra></extra>",
        ))
        fig.update_layout(title="Pairwise overlap (diagonal: distinct identifiers per party)", height=380,
                          yaxis={"autorange": "reversed"}, margin={"t": 40, "b": 40, "l": 80, "r": 10})
        return fig

    def _text(self) -> str:
        regions = venn_regions(self.result)
        extra = ("\n  regions: " + ", ".join(f"{k}={v:,}" for k, v in regions.items())) if regions else ""
        return f"PSIOverlapView {self.result!r}{extra}"

    def _html_body(self) -> str:
        return self.result._repr_html_() if hasattr(self.result, "_repr_html_") else ""
