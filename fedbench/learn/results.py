"""Run results of federated training: the fitted model, the history, and the comparison.

A :class:`FitRun` holds only the fitted model (learned from securely
aggregated statistics), per-round aggregates, costs and settings; never a
party's rows.  Its comparison (:meth:`FitRun.compare`) and plot are computed on
request, because the centralized baseline pools raw rows, which only a
simulation can do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import polars as pl

from ..errors import ConfigurationError
from ..results import THREAT_MODEL, render_card
from ..transcript import Transcript, _fmt_bytes
from .compare import compare_models
from .stages import METRICS, plural

__all__ = ["FitRun", "PrivacySummary", "StepInfo", "comparison_figure", "history_figure"]


@dataclass
class StepInfo:
    """How one pipeline step was trained.

    Attributes
    ----------
    name : str
        Step name.
    estimator : str
        Estimator class.
    protocol : str
        Exact protocol or strategy used.
    rounds : int
        Communication rounds (secure sums or training rounds) of the step.
    converged : bool or None
        For iterative strategies: whether it converged.
    seconds : float
        Wall-clock time of the step.
    secure_sums : int
        Secure aggregations run.
    """

    name: str
    estimator: str
    protocol: str
    rounds: int
    converged: bool | None
    seconds: float
    secure_sums: int


@dataclass
class PrivacySummary:
    """Everything a training run released to the analyst, and its DP guarantee.

    Attributes
    ----------
    releases : list of Release
        One entry per decrypted sum or plaintext message (:class:`fedbench.learn.engine.Release`).
    dp : dict or None
        DP-FedAvg's guarantee: ``epsilon`` (against a party: any other party,
        the key holder or the analyst), ``epsilon_outsider`` (someone holding
        no noise share, for information), ``delta``, ``noise_multiplier``,
        ``sample_rate``, ``rounds``, ``participation`` and ``degraded_rounds``
        (rounds accounted at less noise because shares were missing).
    """

    releases: list[Any] = field(default_factory=list)
    dp: dict[str, Any] | None = None

    def table(self) -> pl.DataFrame:
        """The releases grouped by what was released: ``protocol, description, how, dp, count, parties``."""
        groups: dict[tuple[str, str, str, bool], tuple[int, set[str]]] = {}
        for r in self.releases:
            # Round numbers are dropped so that 30 rounds of one kind of sum are one line.
            what = _strip_round(r.description)
            key = (r.protocol, what, r.how, r.differentially_private)
            n, names = groups.get(key, (0, set()))
            groups[key] = (n + 1, names | set(r.parties))
        rows = [{"protocol": k[0], "description": k[1], "how": k[2],
                 "privacy": "DP" if k[3] else "exact, not DP", "count": n, "parties": ", ".join(sorted(ps))}
                for k, (n, ps) in groups.items()]
        return pl.DataFrame(rows, schema={"protocol": pl.String, "description": pl.String, "how": pl.String,
                                          "privacy": pl.String, "count": pl.Int64, "parties": pl.String})

    @property
    def exact(self) -> list[Any]:
        """The releases that are not differentially private."""
        return [r for r in self.releases if not r.differentially_private]

    def headline(self) -> str:
        """One line: the DP guarantee (or its absence) and the number of exact releases."""
        n_exact = len(self.exact)
        exact = f"{n_exact} exact release{'s' if n_exact != 1 else ''} (not DP)"
        if self.dp is None:
            return f"no differential privacy; {exact}"
        d = self.dp
        source = "" if d.get("delta_source", "declared") == "declared" else f" (δ from {d['delta_source']})"
        return (f"DP-FedAvg ε = {d['epsilon']:.3g} (RDP; {d['epsilon_pld']:.3g} by PLD) at δ = {d['delta']:g}{source} "
                f"against a party (ε = {d['epsilon_outsider']:.3g} against an outsider holding no noise share); "
                f"{d['participation']}; plus {exact}")

    def lines(self) -> list[str]:
        """The summary as text lines (the headline, then one line per kind of release)."""
        out = [self.headline()]
        for r in self.table().iter_rows(named=True):
            out.append(f"{r['privacy']}: {r['description']} ({r['how']}, {r['count']}x; {r['parties']})")
        return out

    def __repr__(self) -> str:
        return "PrivacySummary:\n  " + "\n  ".join(self.lines())


def _strip_round(description: str) -> str:
    import re

    return re.sub(r" round \d+:", ":", description)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


@dataclass(repr=False)
class FitRun:
    """The outcome of :func:`fedbench.learn.fit`.

    Attributes
    ----------
    model : estimator
        The fitted scikit-learn estimator or pipeline.
    history : polars.DataFrame
        One row per round and step for the federation (``party == "<global>"``)
        and one per party taking part in the round: ``stage, round, party,
        status, loss, metric, n, seconds, bytes, epsilon, note``.
    estimator : str
        What was trained.
    parties : list of str
    features : list of str
    skipped_columns : list of str
        Shared columns not used by default (identifiers, strings without an encoder).
    target : str or None
    metric : str
        Metric of the history and the comparison.
    steps : list of StepInfo
    secure : bool
        Whether sums went through Paillier secure aggregation.
    key_bits : int or None
    failures : list of PartyFailure
        Every party dropout, by round.
    transcript : Transcript
        Every message of the run.
    elapsed : float
        Wall-clock seconds.
    test_size, seed : float, int
        The local split.
    classes : list or None
    single_class_parties : dict
        Parties whose training rows hold one class (warned about).
    epsilon, delta : float or None
        DP-FedAvg guarantee after the run against a party (RDP accountant).
    privacy : PrivacySummary or None
        Every release of the run (DP ones and exact ones flagged "exact, not
        DP") and the DP guarantee, against a party and against an outsider.
    secagg : str
        The secure-aggregation protocol of the run's sums (``"paillier"``, ``"masking"``...).
    """

    model: Any
    history: pl.DataFrame
    estimator: str
    parties: list[str]
    features: list[str]
    skipped_columns: list[str]
    target: str | None
    metric: str | None
    steps: list[StepInfo]
    secure: bool
    key_bits: int | None
    failures: list[Any]
    transcript: Transcript
    elapsed: float
    test_size: float
    seed: int
    classes: list[Any] | None = None
    single_class_parties: dict[str, Any] = field(default_factory=dict)
    epsilon: float | None = None
    delta: float | None = None
    privacy: PrivacySummary | None = None
    secagg: str = "paillier"
    _fed: Any = field(default=None, repr=False)
    _template: Any = field(default=None, repr=False)
    _spec: Any = field(default=None, repr=False)
    _comparison: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    # -- derived ----------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes sent during the run."""
        return self.transcript.nbytes

    @property
    def global_history(self) -> pl.DataFrame:
        """The history's federation-wide rows only."""
        return self.history.filter(pl.col("party") == "<global>")

    @property
    def score(self) -> float | None:
        """The federated model's last federation-wide metric in the history (held-out rows)."""
        m = self.global_history.get_column("metric").drop_nulls()
        return float(m[-1]) if len(m) else None

    def compare(self, *, metric: str | None = None) -> pl.DataFrame:
        """Local-only, federated and centralized models scored on every party's held-out rows and pooled.

        Parameters
        ----------
        metric : str, optional
            Default: the run's metric.

        Returns
        -------
        polars.DataFrame
            Rows ``local:<party>``, ``federated``, ``centralized``; columns
            ``model, trained_on, score`` (pooled held-out rows), one column per
            party (its held-out rows) and ``note``.  The local and centralized
            rows are simulation-only baselines.
        """
        metric = metric or self.metric
        if metric is None:
            raise ConfigurationError(f"{self.estimator} has no score to compare; pass metric=...")
        if metric not in METRICS:
            raise ConfigurationError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
        if metric not in self._comparison:
            if self._fed is None:
                raise ConfigurationError("the comparison needs the federation; this run was unpickled without it")
            self._comparison[metric] = compare_models(self._fed.coordinator, self.parties, self._spec, self._template,
                                                      self.model, metric, self.classes)
        return self._comparison[metric]

    def plot(self, kind: str = "compare", *, metric: str | None = None) -> Any:
        """A plotly figure: ``"compare"`` (scores per model and held-out set) or ``"history"``."""
        if kind == "compare":
            table = self.compare(metric=metric)
            return comparison_figure(table, str(metric or self.metric))
        if kind == "history":
            return history_figure(self.history, str(self.metric))
        raise ConfigurationError(f"kind must be 'compare' or 'history', got {kind!r}")

    # -- pickling: the federation (and its parties' rows) stays behind --------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fed"] = None
        return state

    # -- display ------------------------------------------------------------------
    def _crypto(self) -> str:
        if not self.secure:
            return "plaintext sums (secure=False: simulation only)"
        if self.secagg != "paillier":
            return f"secure aggregation by {self.secagg} (no Paillier key)"
        return f"{self.key_bits}-bit Paillier secure aggregation"

    @property
    def threat_model(self) -> str:
        """The trust model of the run's secure-aggregation protocol, under the federation's key set-up."""
        if not self.secure:
            return THREAT_MODEL
        coord = getattr(self._fed, "coordinator", None)
        if coord is not None:  # single key holder or t-of-n threshold keys decide Paillier's trust model
            return str(coord.trust_text_for(self.secagg))
        from ..secagg import get_protocol

        return get_protocol(self.secagg).trust_model.text

    def __repr__(self) -> str:
        lines = [f"FitRun: {self.estimator} on {len(self.parties)} parties ({', '.join(self.parties)})"]
        what = f"target {self.target!r}, " if self.target else ""
        lines.append(f"  {what}{len(self.features)} features; {self.test_size:.0%} of each party's rows held out "
                     f"(seed {self.seed})")
        for s in self.steps:
            conv = "" if s.converged is None else (", converged" if s.converged else ", NOT converged")
            lines.append(f"  step {s.name}: {s.protocol}, {plural(s.rounds, 'round')}{conv}")
        lines.append(f"  {self._crypto()}: {len(self.transcript)} messages, {_fmt_bytes(self.nbytes)}, "
                     f"{self.elapsed:.2f} s")
        if self.privacy is not None:
            lines.append("  privacy: " + self.privacy.headline())
            lines.extend(f"    {line}" for line in self.privacy.lines()[1:])
        elif self.epsilon is not None:
            lines.append(f"  differential privacy: ε = {self.epsilon:.3g} at δ = {self.delta:g} (per party)")
        if self.score is not None:
            lines.append(f"  {self.metric} of the federated model on held-out rows: {self.score:.4f}")
        if self.failures:
            lines.append(f"  dropouts: {len(self.failures)} ("
                         + ", ".join(f"{f.party}@{f.round}" for f in self.failures[:6])
                         + (" …" if len(self.failures) > 6 else "") + ")")
        tab = self._comparison.get(self.metric) if self.metric else None
        if tab is not None:
            lines.append(f"  comparison ({self.metric}, pooled held-out): " + ", ".join(
                f"{m}={_fmt(s)}" for m, s in zip(tab["model"], tab["score"], strict=True)))
        elif self.metric is not None:
            lines.append("  .compare() for local-only and centralized baselines (simulation only)")
        lines.append(f"  threat model: {self.threat_model}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            ("model", escape(self.estimator)),
            ("parties", escape(", ".join(self.parties))),
            ("data", escape(f"{'target ' + repr(self.target) + ', ' if self.target else ''}{len(self.features)} "
                            f"features, {self.test_size:.0%} held out per party")),
            ("training", "<br>".join(escape(f"{s.name}: {s.protocol}, {plural(s.rounds, 'round')}")
                                     for s in self.steps)),
            ("aggregation", escape(self._crypto())),
            ("cost", f"{self.elapsed:.2f} s, {_fmt_bytes(self.nbytes)} in {len(self.transcript)} messages"),
        ]
        if self.score is not None:
            rows.append((f"{self.metric} (held out)", f"<b>{self.score:.4f}</b>"))
        if self.privacy is not None:
            rows.append(("privacy", escape(self.privacy.headline())))
            rows.append(("releases", "<br>".join(escape(line) for line in self.privacy.lines()[1:]) or "none"))
        elif self.epsilon is not None:
            rows.append(("privacy", f"ε = {self.epsilon:.3g}, δ = {self.delta:g} per party (DP-FedAvg)"))
        if self.failures:
            rows.append(("dropouts", escape(", ".join(f"{f.party} (round {f.round}, {f.kind})"
                                                       for f in self.failures[:10]))))
        body = ""
        tab = self._comparison.get(self.metric) if self.metric else None
        if tab is not None:
            head = "".join(f"<th>{escape(c)}</th>" for c in tab.columns if c != "note")
            trs = "".join(
                "<tr>" + "".join(
                    f"<td>{escape(str(v)) if not isinstance(v, float) else f'{v:.4f}'}</td>"
                    for c, v in r.items() if c != "note") + "</tr>"
                for r in tab.iter_rows(named=True))
            body = (f"<p><b>Is collaboration worth it?</b> ({escape(str(self.metric))}; local and centralized rows are "
                    f"simulation-only baselines)</p><table><tr>{head}</tr>{trs}</table>")
        elif self.metric is not None:
            body = "<p style='color:#666'>Run <code>.compare()</code> for local-only and centralized baselines.</p>"
        return render_card("Federated training", rows, body, threat_model=self.threat_model)


def comparison_figure(table: pl.DataFrame, metric: str) -> Any:
    """Grouped bars: one group per held-out set (each party, pooled), one bar per model."""
    import plotly.graph_objects as go

    parties = [c for c in table.columns if c not in ("model", "trained_on", "score", "note")]
    sets = ["pooled", *parties]
    fig = go.Figure()
    for r in table.iter_rows(named=True):
        vals = [r["score"], *[r[p] for p in parties]]
        fig.add_trace(go.Bar(name=r["model"], x=sets, y=vals, hovertext=r["trained_on"]))
    better = "higher" if METRICS.get(metric, True) else "lower"
    fig.update_layout(barmode="group", title=f"Is collaboration worth it? {metric} on held-out rows ({better} is "
                      "better; local and centralized are simulation-only baselines)",
                      xaxis_title="held-out rows of", yaxis_title=metric, legend_title="model")
    return fig


def history_figure(history: pl.DataFrame, metric: str) -> Any:
    """Loss and metric per round: federation-wide lines and per-party markers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", f"{metric} on held-out rows"))
    trained = history.filter(pl.col("stage") != "setup")
    stages = trained.get_column("stage").unique(maintain_order=True).to_list()
    last = stages[-1] if stages else None
    h = trained.filter(pl.col("stage") == last)
    for party in h.get_column("party").unique(maintain_order=True).to_list():
        sub = h.filter(pl.col("party") == party)
        if sub.select(pl.col("loss", "metric").is_not_null().any()).row(0) == (False, False):
            continue  # a party's own values stayed with it (party_metrics=False): nothing to draw

        mode = "lines+markers" if party == "<global>" else "markers"
        for col, idx in (("loss", 1), ("metric", 2)):
            fig.add_trace(go.Scatter(x=sub["round"].to_list(), y=sub[col].to_list(), mode=mode, name=party,
                                     legendgroup=party, showlegend=idx == 1), row=1, col=idx)
    fig.update_xaxes(title_text="round")
    fig.update_layout(title=f"Training history of {last}")
    return fig
