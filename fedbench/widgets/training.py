"""The training dashboard: live curves of federated vs local-only vs centralized models.

Feed it one record per round, live (``callback=dashboard`` where the trainer
accepts a per-round hook) or afterwards (:meth:`TrainingDashboard.replay` of a
run's ``history``).  A record is a flat mapping:

``round``
    Round number (default: one more than the last).
``seconds``, ``nbytes``
    Time and bytes of the round.
``federated_<metric>``, ``local_<metric>``, ``centralized_<metric>``
    A metric of the federated model and of the two baselines (``local_only_``,
    ``pooled_`` and ``centralised_`` are accepted too); a bare ``<metric>`` is
    the federated model's.
``<metric>@<party>`` or ``parties={party: {metric: value}}``
    Per-party metrics; a record with a ``party`` key holds that party's
    metrics (long-form histories, one row per round and party); ``party`` set
    to ``"<global>"`` (or null) means the whole federation.
``stage``
    In long-form histories, which model a row describes: ``federated``,
    ``local``, ``centralized``...; other stages count as the federated model.
    A baseline row without a ``round`` becomes a constant baseline.
``n``, ``status``, ``note``
    Ignored (sample counts and free text).

Constant baselines can be drawn as horizontal lines with
:meth:`TrainingDashboard.set_baselines`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from numbers import Real
from typing import TYPE_CHECKING, Any

from ..transcript import _fmt_bytes
from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["RoundRecord", "TrainingDashboard", "normalize_record"]

_SERIES_NAMES = {
    "federated": "federated", "fed": "federated",
    "local": "local-only", "local_only": "local-only",
    "centralized": "centralized", "centralised": "centralized", "pooled": "centralized",
}
_SERIES_ORDER = ("federated", "local-only", "centralized")
_SERIES_COLOURS = {"federated": "#4c78a8", "local-only": "#f58518", "centralized": "#54a24b"}
_PREFIX = re.compile(r"^(federated|fed|local_only|local|centralized|centralised|pooled)[_:](.+)$")
_RESERVED = {
    "round", "seconds", "nbytes", "bytes", "party", "parties", "rounds", "total_rounds", "time", "stage", "n",
    "status", "note",
}
_GLOBAL_PARTIES = {"<global>", "global", "federation", "all"}
_SKIP_STAGES = {"setup"}
# Shown first when no metric is asked for: a score reads better than a loss.
_PREFERRED = ("accuracy", "auc", "roc_auc", "r2", "f1", "score", "metric")


@dataclass
class RoundRecord:
    """One round, normalised.

    Attributes
    ----------
    round : int or None
        Round number (``None``: not given; the dashboard numbers it, or takes a baseline row as a constant).
    seconds, nbytes : float or None
        Cost of the round.
    series : dict
        ``{series: {metric: value}}`` with series federated, local-only, centralized.
    parties : dict
        ``{party: {metric: value}}``.
    """

    round: int | None
    seconds: float | None = None
    nbytes: float | None = None
    series: dict[str, dict[str, float]] = field(default_factory=dict)
    parties: dict[str, dict[str, float]] = field(default_factory=dict)

    def merge(self, other: RoundRecord) -> None:
        """Fold another record of the same round into this one (long-form histories)."""
        if other.seconds is not None:
            self.seconds = other.seconds
        if other.nbytes is not None:
            self.nbytes = other.nbytes
        for s, m in other.series.items():
            self.series.setdefault(s, {}).update(m)
        for p, m in other.parties.items():
            self.parties.setdefault(p, {}).update(m)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, Real):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _stage_series(stage: Any) -> str:
    """Series of a history ``stage`` label: ``local...`` is local-only, ``central...``/``pooled...`` centralized."""
    if not isinstance(stage, str):
        return "federated"
    s = stage.lower().replace("-", "_")
    if s.startswith("local"):
        return "local-only"
    if s.startswith(("central", "pooled")):
        return "centralized"
    return "federated"


def normalize_record(record: Mapping[str, Any]) -> RoundRecord:
    """Turn one per-round mapping (see the module docstring) into a :class:`RoundRecord`."""
    rnd: Any = record.get("round")  # int() below only once _number() found a finite real
    out = RoundRecord(round=int(rnd) if _number(rnd) is not None else None)
    out.seconds = _number(record.get("seconds", record.get("time")))
    out.nbytes = _number(record.get("nbytes", record.get("bytes")))
    series = _stage_series(record.get("stage"))
    party = record.get("party")
    if not isinstance(party, str) or party in _GLOBAL_PARTIES:
        party = None
    elif series != "federated":
        party = f"{party} ({series})"  # e.g. a party's local-only model next to its federated metrics
    for key, value in record.items():
        if key == "parties" and isinstance(value, Mapping):
            for p, metrics in value.items():
                if isinstance(metrics, Mapping):
                    got = {str(k): f for k, v in metrics.items() if (f := _number(v)) is not None}
                    out.parties.setdefault(str(p), {}).update(got)
            continue
        if key in _RESERVED:
            continue
        num = _number(value)
        if num is None:
            continue
        if party is not None:
            out.parties.setdefault(party, {})[key] = num
        elif "@" in key:
            metric, _, p = key.partition("@")
            out.parties.setdefault(p, {})[metric] = num
        elif (m := _PREFIX.match(key)) is not None:
            out.series.setdefault(_SERIES_NAMES[m[1]], {})[m[2]] = num
        else:
            out.series.setdefault(series, {})[key] = num
    return out


class TrainingDashboard(Dashboard):
    """Live training curves, per-party metrics, cost per round and a progress bar.

    Parameters
    ----------
    rounds : int, optional
        Planned number of rounds (the progress bar's end); grows if exceeded.
    metric : str, optional
        Metric shown first (default: the first one seen).
    title : str, default "Federated training"
        Heading.
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Examples
    --------
    >>> dash = TrainingDashboard(rounds=20)                    # doctest: +SKIP
    >>> dash.update(round=1, federated_accuracy=0.81, local_accuracy=0.74, seconds=0.4, nbytes=51_200)
    >>> run = fed.fit(model, target="diagnosis", callback=dash)   # live, where supported
    >>> dash.replay(run.history)                               # or afterwards
    """

    def __init__(
        self,
        rounds: int | None = None,
        *,
        metric: str | None = None,
        title: str = "Federated training",
        figure_backend: str = "widget",
    ) -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.title = title
        self.rounds = rounds
        self.records: list[RoundRecord] = []
        self.baselines: dict[str, dict[str, float]] = {}
        self._preferred = metric
        self.metric = w.Dropdown(description="metric", options=[metric] if metric else [], value=metric)
        self.progress = w.IntProgress(min=0, max=max(1, rounds or 1), value=0, description="round",
                                      bar_style="info")
        self.status = w.HTML("<i>waiting for the first round</i>")
        self.comparison = w.HTML()
        self.metric.observe(self._guard(lambda _: self._draw()), names="value")
        self.widget = w.VBox([
            w.HTML(f"<b>{escape(title)}</b>"),
            w.HBox([self.progress, self.status]),
            self.metric,
            w.HBox([self._figure_holder("metric", self._metric_figure()),
                    self._figure_holder("parties", self._parties_figure())], layout=figure_row()),
            self._figure_holder("cost", self._cost_figure()),
            self.comparison,
            self.log,
        ])

    # -- data in -------------------------------------------------------------------------
    def update(self, record: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Add one round (a mapping and/or keyword fields, see the module docstring) and redraw.

        A record with the same ``round`` as the last one is merged into it.
        """
        data = {**(record or {}), **fields}
        if data:
            self._add(normalize_record(data))
        self.refresh()

    def _add(self, rec: RoundRecord) -> None:
        if rec.round is None:
            if rec.series and "federated" not in rec.series and not rec.parties:
                for s, m in rec.series.items():  # a round-less baseline row: a constant line
                    self.baselines.setdefault(s, {}).update(m)
                return
            rec.round = (self.records[-1].round or 0) + 1 if self.records else 1
        same = next((r for r in reversed(self.records) if r.round == rec.round), None)
        if same is not None:
            same.merge(rec)  # long-form histories: one row per round and party
        else:
            self.records.append(rec)
            self.records.sort(key=lambda r: r.round or 0)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Per-round hook: ``dash(record)``, ``dash(round, record)`` or ``dash(**fields)``."""
        if len(args) == 2 and isinstance(args[1], Mapping):
            self.update({"round": args[0], **args[1]}, **kwargs)
        elif len(args) == 1 and isinstance(args[0], Mapping):
            self.update(args[0], **kwargs)
        elif not args:
            self.update(**kwargs)
        else:
            raise TypeError("call the dashboard with a record mapping, (round, record) or keyword fields")

    def replay(self, history: Any) -> None:
        """Replace the rounds with a whole history and redraw.

        Parameters
        ----------
        history : polars.DataFrame, pandas.DataFrame, iterable of mappings, or an object with ``.history``
            One row per round (or per round and party, with a ``party`` column).
        """
        if hasattr(history, "history") and not isinstance(history, Mapping):
            history = history.history
        if hasattr(history, "iter_rows"):
            rows: list[Mapping[str, Any]] = list(history.iter_rows(named=True))
        elif hasattr(history, "to_dict") and hasattr(history, "columns"):
            rows = history.to_dict("records")
        else:
            rows = list(history)
        # A pipeline's history has one stage per fitted step (imputer, scaler, model...), each with its own
        # rounds: the curves follow the last step, the model; setup rows carry no round to draw.
        stages = [s for s in dict.fromkeys(r.get("stage") for r in rows)
                  if isinstance(s, str) and s not in _SKIP_STAGES and _stage_series(s) == "federated"]
        if len(stages) > 1:
            rows = [r for r in rows if r.get("stage") == stages[-1] or _stage_series(r.get("stage")) != "federated"]
        self.records = []
        for row in rows:
            if row.get("stage") not in _SKIP_STAGES:
                self._add(normalize_record(row))
        self.refresh()

    def set_baselines(self, **series: Mapping[str, float]) -> None:
        """Draw constant baselines, e.g. ``set_baselines(centralized={"accuracy": 0.95}, local={"accuracy": 0.88})``."""
        for name, metrics in series.items():
            key = _SERIES_NAMES.get(name, name)
            self.baselines.setdefault(key, {}).update({k: float(v) for k, v in metrics.items()})
        self.refresh()

    def set_comparison(self, comparison: Any, metric: str | None = None) -> None:
        """Take the local-only and centralized baselines from a model comparison (``run.compare()``).

        Parameters
        ----------
        comparison : polars.DataFrame
            Rows ``local:<party>``, ``federated``, ``centralized`` with a ``model`` and a ``score`` column
            (pooled held-out rows), as :meth:`fedbench.learn.FitRun.compare` returns.
        metric : str, optional
            Name of the score (default: the metric shown).
        """
        metric = metric or self.metric.value or "score"
        scores = {m: s for m, s in zip(comparison["model"].to_list(), comparison["score"].to_list(), strict=True)
                  if s is not None}
        local = [s for m, s in scores.items() if m.startswith("local")]
        base: dict[str, dict[str, float]] = {}
        if "centralized" in scores:
            base["centralized"] = {metric: scores["centralized"]}
        if local:
            base["local-only"] = {metric: sum(local) / len(local)}  # mean of the parties' own models
        rows = list(scores.items())
        self.comparison.value = (
            f"<b>Held-out {escape(metric)}</b> (pooled held-out rows; local-only line: mean of {len(local)} "
            "parties' own models)" + html_table(["model", escape(metric)], rows)
        )
        self.set_baselines(**base)

    def reset(self) -> None:
        """Forget every round and baseline."""
        self.records = []
        self.baselines = {}
        self.refresh()

    # -- drawing -------------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """Every metric seen, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            for s in _SERIES_ORDER:
                seen.update(dict.fromkeys(r.series.get(s, {})))
            for m in r.series.values():
                seen.update(dict.fromkeys(m))
            for m in r.parties.values():
                seen.update(dict.fromkeys(m))
        for m in self.baselines.values():
            seen.update(dict.fromkeys(m))
        return list(seen)

    def refresh(self) -> None:
        """Redraw from the recorded rounds."""
        metrics = self.metrics
        options = metrics or ([self._preferred] if self._preferred else [])
        first = self._preferred if self._preferred in options else next((m for m in _PREFERRED if m in options), None)
        self._set_choices(self.metric, options, first)
        done = len(self.records)
        planned = max(self.rounds or 0, done, 1)
        self.progress.max = planned
        self.progress.value = done
        self.progress.bar_style = "success" if self.rounds and done >= self.rounds else "info"
        self._draw()

    def _draw(self) -> None:
        self._show("metric", self._metric_figure())
        self._show("parties", self._parties_figure())
        self._show("cost", self._cost_figure())
        self.status.value = self._status_html()

    def _status_html(self) -> str:
        if not self.records:
            return "<i>waiting for the first round</i>"
        last, metric = self.records[-1], self.metric.value
        bits = [f"round {last.round}" + (f"/{self.rounds}" if self.rounds else "")]
        for s in _SERIES_ORDER:
            v = last.series.get(s, {}).get(metric) if metric else None
            if v is not None:
                bits.append(f"{s} {escape(str(metric))} {v:.4g}")
        if last.seconds is not None:
            bits.append(f"{last.seconds:.2f} s")
        if last.nbytes is not None:
            bits.append(_fmt_bytes(last.nbytes))
        return " · ".join(bits)

    def _metric_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        metric = self.metric.value if hasattr(self, "metric") else None
        fig = go.Figure()
        xs = [r.round for r in self.records if r.round is not None]  # _add numbers every stored round
        for s in _SERIES_ORDER:
            pts = [(r.round, r.series[s][metric]) for r in self.records if metric in r.series.get(s, {})]
            if pts:
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=s,
                                line={"color": _SERIES_COLOURS[s]})
        span = [min(xs, default=1), max([*xs, self.rounds or 1])]
        for s, m in self.baselines.items():
            if metric in m:
                fig.add_scatter(x=span, y=[m[metric]] * 2, mode="lines", name=f"{s} (baseline)",
                                line={"dash": "dash", "color": _SERIES_COLOURS.get(s, "#888")})
        fig.update_layout(title=f"{metric or 'metric'} per round", xaxis_title="round", height=300,
                          margin={"t": 40, "b": 40, "l": 50, "r": 10}, legend={"orientation": "h", "y": -0.25})
        return fig

    def _parties_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        metric = self.metric.value if hasattr(self, "metric") else None
        fig = go.Figure()
        parties: dict[str, None] = {}
        for r in self.records:
            parties.update(dict.fromkeys(r.parties))
        for p in parties:
            pts = [(r.round, r.parties[p][metric]) for r in self.records if metric in r.parties.get(p, {})]
            if pts:
                fig.add_scatter(x=[q[0] for q in pts], y=[q[1] for q in pts], mode="lines+markers", name=p)
        fig.update_layout(title=f"{metric or 'metric'} per party" + ("" if fig.data else " (none reported)"),
                          xaxis_title="round", height=300, margin={"t": 40, "b": 40, "l": 50, "r": 10},
                          legend={"orientation": "h", "y": -0.25})
        return fig

    def _cost_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        secs = [(r.round, r.seconds) for r in self.records if r.seconds is not None]
        nbytes = [(r.round, r.nbytes) for r in self.records if r.nbytes is not None]
        if secs:
            fig.add_bar(x=[p[0] for p in secs], y=[p[1] for p in secs], name="seconds", marker_color="#4c78a8")
        if nbytes:
            fig.add_scatter(x=[p[0] for p in nbytes], y=[p[1] for p in nbytes], name="bytes", yaxis="y2",
                            mode="lines+markers", line={"color": "#e45756"})
        # Whole bytes with SI prefixes; a constant series starts at zero (autorange would zoom on rounding noise).
        yaxis2: dict[str, Any] = {"title": "bytes", "overlaying": "y", "side": "right", "showgrid": False,
                                  "tickformat": "~s", "rangemode": "tozero"}
        values = [p[1] for p in nbytes]
        if values and max(values) - min(values) <= 1e-9 * max(1.0, abs(max(values))):
            # Round the top up to whole units of the value's magnitude, so that the ticks are round numbers.
            high = max(1.0, abs(values[0])) * 1.25
            unit = 10.0 ** math.floor(math.log10(high / 1.25))
            yaxis2["range"] = [0, math.ceil(high / unit) * unit]
        fig.update_layout(title="Time and bytes per round", xaxis_title="round", height=260,
                          yaxis={"title": "seconds"}, yaxis2=yaxis2,
                          margin={"t": 40, "b": 40, "l": 50, "r": 50}, legend={"orientation": "h", "y": -0.3})
        return fig

    # -- reprs ---------------------------------------------------------------------------
    def _text(self) -> str:
        planned = f"/{self.rounds}" if self.rounds else ""
        noun = "round" if (self.rounds or len(self.records)) == 1 else "rounds"
        head = f"TrainingDashboard: {len(self.records)}{planned} {noun}"
        if not self.records:
            return head
        last = self.records[-1]
        vals = ", ".join(f"{s} {k}={v:.4g}" for s in _SERIES_ORDER for k, v in last.series.get(s, {}).items())
        return f"{head}; round {last.round}: {vals or 'no metric'}"

    def _html_body(self) -> str:
        metrics = self.metrics
        cols = ["round", "seconds", "bytes"] + [f"{s} {m}" for s in _SERIES_ORDER for m in metrics
                                                if any(m in r.series.get(s, {}) for r in self.records)]
        rows = []
        for r in self.records:
            row: list[Any] = [r.round, r.seconds, r.nbytes]
            for c in cols[3:]:
                s, _, m = c.partition(" ")
                row.append(r.series.get(s, {}).get(m))
            rows.append(row)
        return f"<p>{self._status_html()}</p>" + html_table(cols, rows) + self.comparison.value
