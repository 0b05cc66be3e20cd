"""Shared machinery of the dashboards: figure backends, callback output, reprs."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["FIGURE_BACKENDS", "Dashboard", "check_figure_backend", "figure_output", "html_table", "in_notebook",
           "removed_layout_paths"]

#: ``widget``: live ``FigureWidget`` (anywidget); ``static``: plain ``Figure`` re-rendered into an ``Output``.
FIGURE_BACKENDS = ("widget", "static")

F = TypeVar("F", bound=Callable[..., Any])


def in_notebook() -> bool:
    """Whether code runs in a Jupyter kernel (not plain Python, not terminal IPython)."""
    ipython = sys.modules.get("IPython")  # never import IPython just to ask
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def check_figure_backend(value: str) -> str:
    """Return ``value`` if it is a known figure backend.

    Raises
    ------
    ConfigurationError
        For any other value.
    """
    if value not in FIGURE_BACKENDS:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"figure_backend must be one of {FIGURE_BACKENDS}, got {value!r}")
    return value


def figure_output(fig: go.Figure) -> dict[str, Any]:
    """An output record showing ``fig`` without any widget model.

    The plotly mimetype is rendered natively by JupyterLab (jupyterlab-plotly)
    and VS Code; the HTML (plotly.js from its CDN) serves other front-ends.
    """
    title = fig.layout.title.text or "figure"
    return {
        "output_type": "display_data",
        "data": {
            "application/vnd.plotly.v1+json": {**json.loads(fig.to_json()), "config": {"displaylogo": False}},
            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn"),
            "text/plain": f"<plotly figure: {title}>",
        },
        "metadata": {},
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, bool):
        text = "✔" if value else "✘"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = "" if value is None else str(value)
    align = "right" if isinstance(value, int | float) and not isinstance(value, bool) else "left"
    return f"<td style='text-align:{align};padding:0 6px'>{escape(text)}</td>"


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_rows: int = 200, hint: str = "") -> str:
    """A small HTML table (escaped), truncated to ``max_rows`` with a note (plus ``hint``, HTML, on how to see all)."""
    head = "".join(f"<th style='padding:0 6px'>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows[:max_rows])
    more = f"<p>… {len(rows) - max_rows} more rows{hint}</p>" if len(rows) > max_rows else ""
    return f"<table class='fedbench-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _same_shape(live: Any, fig: go.Figure) -> bool:
    """Whether ``fig`` can be drawn into the live figure ``live`` by an in-place update.

    Assigning a ``FigureWidget``'s ``layout`` reaches plotly.js as a *merging* relayout: properties
    the new layout lacks (Venn shapes, ``scaleanchor``, hidden axes) and the axis types and ranges
    plotly.js inferred for the old traces survive in the browser while Python has the new figure.
    A heatmap drawn over a Venn diagram that way kept the circles and a numeric x axis and logged
    ``<text> attribute x: Expected length, "NaN"`` errors.  So only same trace types and no
    removed layout property allow an in-place update (an empty live figure takes cartesian traces).
    """
    old_types = {t.type for t in live.data}
    new_types = {t.type for t in fig.data}
    if not new_types <= (old_types or {"scatter", "bar"}):
        return False
    return not removed_layout_paths(live.layout.to_plotly_json(), fig.layout.to_plotly_json())


def removed_layout_paths(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of layout properties set in ``old`` but absent from ``new`` (``template`` excluded).

    Lists (shapes, annotations) count as leaves: a list present in both is replaced whole anyway.

    Examples
    --------
    >>> removed_layout_paths({"shapes": [{}], "xaxis": {"visible": False, "title": "x"}}, {"xaxis": {"title": "y"}})
    ['shapes', 'xaxis.visible']
    """
    out: list[str] = []
    for key, value in old.items():
        if not prefix and key == "template":
            continue
        if key not in new:
            out.append(prefix + key)
        elif isinstance(value, dict) and isinstance(new[key], dict):
            out.extend(removed_layout_paths(value, new[key], f"{prefix}{key}."))
    return out


def figure_row() -> Any:
    """Layout of a row of figures: wrap to the next line rather than clip when the row is too narrow."""
    import ipywidgets as w

    return w.Layout(flex_flow="row wrap", width="100%")


class Dashboard:
    """Base class of the dashboards.

    Subclasses build their controls and figures in ``_build`` and redraw in
    :meth:`refresh`.  Figures are made as plain ``plotly.graph_objects.Figure``
    objects; :meth:`_show` puts them in a live ``FigureWidget`` (``widget``
    backend) or renders them into an ``Output`` widget (``static``).  Callbacks
    are wrapped by :meth:`_guard` so that their errors land in :attr:`log`, an
    ``Output`` widget (``print`` in a callback is lost in JupyterLab).

    Parameters
    ----------
    figure_backend : {"widget", "static"}, default "widget"
        How figures are drawn; ``widget`` falls back to ``static`` when anywidget is missing.
    """

    title = "fedbench"

    def __init__(self, *, figure_backend: str = "widget") -> None:
        import ipywidgets as w

        self.figure_backend = check_figure_backend(figure_backend)
        self.log = w.Output(layout=w.Layout(max_height="10em", overflow="auto"))
        #: Current figure per name: a ``FigureWidget`` (widget backend) or a ``Figure`` (static).
        self.figures: dict[str, Any] = {}
        self._holders: dict[str, Any] = {}
        self.header = w.HTML()
        self.widget: Any = None
        self._quiet = False  # set while the dashboard itself changes its controls

    def _set_choices(self, dropdown: Any, options: Sequence[Any], value: Any = None) -> None:
        """Give ``dropdown`` new options, keeping its choice if still offered (else ``value``, else the first).

        Callbacks wrapped by :meth:`_guard` do not fire meanwhile: the caller redraws once afterwards.
        """
        values = [o[1] if isinstance(o, tuple) else o for o in options]
        current = dropdown.value
        chosen = current if current in values else (value if value in values else (values[0] if values else None))
        self._quiet = True
        try:
            if list(dropdown.options) != list(options):
                dropdown.options = options
            dropdown.value = chosen
        finally:
            self._quiet = False

    # -- figures -------------------------------------------------------------------------
    def _figure_holder(self, name: str, fig: go.Figure) -> Any:
        """Create the widget that shows figure ``name`` (call once per figure, in ``_build``)."""
        import ipywidgets as w
        import plotly.graph_objects as go

        if self.figure_backend == "widget":
            try:
                live = go.FigureWidget(fig)
            except ImportError as exc:  # plotly >= 6 needs anywidget for FigureWidget
                self.figure_backend = "static"
                self.log.append_stderr(f"live figures unavailable ({exc}); using static figures\n")
            else:
                # A box around the FigureWidget, so that a figure of another shape can replace it whole.
                holder = w.VBox([live])
                self._holders[name] = holder
                self.figures[name] = live
                return holder
        holder = w.Output()
        self._holders[name] = holder
        self._show(name, fig)
        return holder

    def _show(self, name: str, fig: go.Figure) -> None:
        """Replace the content of figure ``name`` with ``fig``.

        With the widget backend the live figure is updated in place when only data and values change
        (smooth live curves), and replaced by a new ``FigureWidget`` when the figure changes shape.
        """
        holder = self._holders[name]
        if self.figure_backend == "widget":
            import plotly.graph_objects as go

            live = self.figures[name]
            if _same_shape(live, fig):
                with live.batch_update():
                    live.data = ()
                    live.add_traces(list(fig.data))
                    live.layout = fig.layout
            else:
                new = go.FigureWidget(fig)
                holder.children = (new,)
                self.figures[name] = new
                live.close()  # free the old model in the front end
        else:
            self.figures[name] = fig
            # Setting outputs directly works headless and in every front-end (no context manager needed).
            holder.outputs = (figure_output(fig),)

    def _guard(self, fn: F) -> F:
        """Wrap a widget callback so that an exception is written to :attr:`log` instead of vanishing."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._quiet:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self.log.append_stderr(f"{type(exc).__name__}: {exc}\n")
                return None

        return wrapper  # type: ignore[return-value]

    # -- updates -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw everything from the data source."""
        raise NotImplementedError

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Take new data (see the subclass) and redraw; without arguments, same as :meth:`refresh`."""
        self.refresh()

    # -- display -------------------------------------------------------------------------
    def _text(self) -> str:
        return self.title

    def _html_body(self) -> str:
        return ""

    def __repr__(self) -> str:
        return self._text()

    def _static_figures(self) -> list[go.Figure]:
        import plotly.graph_objects as go

        return [go.Figure(f) if not isinstance(f, go.Figure) else f for f in self.figures.values()]

    def _repr_html_(self) -> str:
        """Static HTML: header, tables and figures (plotly.js from its CDN), for front-ends without widgets."""
        figs = "".join(f.to_html(full_html=False, include_plotlyjs="cdn") for f in self._static_figures())
        return (
            f"<div class='fedbench-dashboard'><h4>{escape(self.title)}</h4>{self.header.value}"
            f"{self._html_body()}{figs}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        # The widget view wins where widgets render; HTML and text serve everywhere else.
        data: dict[str, Any] = {"text/plain": repr(self), "text/html": self._repr_html_()}
        view = self.widget._repr_mimebundle_() if self.widget is not None else None
        if view:
            data.update({k: v for k, v in view.items() if k != "text/plain"})
        if include:
            data = {k: v for k, v in data.items() if k in include}
        if exclude:
            data = {k: v for k, v in data.items() if k not in exclude}
        return data

    def display(self) -> None:
        """Display the dashboard (also what IPython does with it as a cell's last expression)."""
        from IPython.display import display

        display(self)
