"""The attack-lab dashboard: choose an attack and a protection, run it, see success against epsilon."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["AttackLab"]

ATTACKS = {
    "membership (loss threshold)": "loss_threshold",
    "membership (shadow model)": "shadow",
    "gradient reconstruction": "reconstruction",
    "differencing": "differencing",
}
PROTECTIONS = ("none", "secure_aggregation", "dp")
#: Why secure aggregation alone does not change some attacks (shown in the verdict table).
_SECAGG_NOTE = {
    "loss_threshold": "Secure aggregation hides updates, not the trained model: membership is unchanged.",
    "shadow": "Secure aggregation hides updates, not the trained model: membership is unchanged.",
    "differencing": "Secure aggregation hides each party's input, not two released totals: differencing works.",
}


def _label(e: float) -> str:
    return "no DP" if not math.isfinite(e) else f"ε={e:g}"


class AttackLab(Dashboard):
    """Run the attack lab's attacks against a protection and plot attack success against epsilon.

    Every attack runs the workbench itself: models trained with ``fed.fit`` and updates captured
    from real runs on throwaway federations (same files, in-memory ledgers), DP sums on a throwaway
    coordinator; DP runs are charged to the attack lab's simulation budget, never the study's.

    Parameters
    ----------
    source : Federation, folder or dict of frames
        Parties to attack, their files read again (see :func:`fedbench.attacks.membership_inference`).
    features, target : column names
        Model inputs and 0/1 label for the learning attacks.
    fed : Federation, optional
        Needed for the differencing attack (two exact releases through the workbench).
    column, target_party, bounds : optional
        Column, victim party and clamping bounds of the differencing attack.
    epsilons : sequence of float
        Grid used when the protection is ``"dp"``.
    trials : int, default 10
        Real runs per epsilon of the reconstruction attack.
    n_releases : int, default 20
        DP release pairs per epsilon of the differencing attack.
    key_bits : int, default 2048
        Paillier key size of the learning attacks' throwaway federations (tests may pass smaller keys).
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.
    """

    title = "Attack lab"

    def __init__(
        self,
        source: Any,
        features: Sequence[str],
        target: str,
        *,
        fed: Any = None,
        column: str | None = None,
        target_party: str | None = None,
        bounds: tuple[float, float] | None = None,
        epsilons: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        trials: int = 10,
        n_releases: int = 20,
        key_bits: int = 2048,
        figure_backend: str = "widget",
    ) -> None:
        import ipywidgets as w

        from ..attacks._simulation import check_epsilons

        super().__init__(figure_backend=figure_backend)
        self.source, self.features, self.target = source, list(features), target
        self.fed, self.column, self.target_party, self.bounds = fed, column, target_party, bounds
        self.epsilons = check_epsilons(epsilons)
        self.trials, self.n_releases, self.key_bits = trials, n_releases, key_bits
        options = [k for k, v in ATTACKS.items() if v != "differencing" or fed is not None]
        self.attack = w.Dropdown(description="attack", options=options, value=options[0])
        self.protection = w.Dropdown(description="protection", options=list(PROTECTIONS), value="none")
        self.run_button = w.Button(description="Run attack", icon="play")
        self.verdicts = w.HTML()
        #: The last attack result (a fedbench.attacks result dataclass), or None before a run.
        self.result: Any = None
        self.run_button.on_click(self._guard(lambda _: self.run()))
        success = self._figure_holder("success", self._success_figure())
        utility = self._figure_holder("utility", self._utility_figure())
        self.widget = w.VBox([
            self.header,
            w.HBox([self.attack, self.protection, self.run_button]),
            w.HBox([success, utility], layout=figure_row()),
            self.verdicts,
            self.log,
        ])
        self.refresh()

    # -- running -------------------------------------------------------------------------
    def run(self) -> Any:
        """Run the selected attack against the selected protection and redraw; returns the result."""
        from .. import attacks

        kind, protection = ATTACKS[self.attack.value], self.protection.value
        grid = [*self.epsilons, math.inf] if protection == "dp" else [math.inf]
        if kind in ("loss_threshold", "shadow"):
            self.result = attacks.membership_inference(self.source, self.features, self.target, attack=kind,
                                                       epsilons=grid, key_bits=self.key_bits)
        elif kind == "reconstruction":
            self.result = attacks.gradient_reconstruction(self.source, self.features, self.target,
                                                          protection=protection, epsilons=grid,
                                                          trials=self.trials, key_bits=self.key_bits)
        else:
            if self.column is None or self.target_party is None:
                missing = "column" if self.column is None else "target_party"
                raise ConfigurationError(f"the differencing attack needs {missing}=; pass it to AttackLab")
            self.result = attacks.differencing(self.fed, self.column, target_party=self.target_party,
                                               bounds=self.bounds, n_releases=self.n_releases,
                                               epsilons=self.epsilons if protection == "dp" else [])
        self._kind, self._protection = kind, protection
        self.refresh()
        return self.result

    def _points(self) -> tuple[str, list[float], list[float], list[float | None], list[str]]:
        """Metric name, epsilons, success values, accuracies and verdicts of the last result."""
        r, kind = self.result, getattr(self, "_kind", None)
        if r is None:
            return "", [], [], [], []
        if kind in ("loss_threshold", "shadow"):
            eps = list(r.epsilons)
            return ("advantage (TPR − FPR)", eps, [r.advantage[e] for e in eps], [r.accuracy[e] for e in eps],
                    [r.verdict(e) for e in eps])
        if kind == "reconstruction":
            eps = list(r.epsilons)
            return ("example identified (fraction)", eps, [r.identified[e] for e in eps], [None] * len(eps),
                    [r.verdict(e) for e in eps])
        eps = [math.inf, *r.epsilons]
        return ("mean abs. error of the attacker", eps, [0.0] + [r.error_at[e] for e in r.epsilons],
                [None] * len(eps), [r.verdict(e) for e in eps])

    # -- figures -------------------------------------------------------------------------
    def _success_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        metric, eps, ys, _, _ = self._points()
        fig = go.Figure(go.Scatter(x=[_label(e) for e in eps], y=ys, mode="lines+markers", name=metric))
        fig.update_layout(title="Attack success against epsilon", xaxis_title="protection",
                          yaxis_title=metric or "success", height=320, width=460, margin={"t": 40})
        return fig

    def _utility_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        metric, eps, ys, acc, _ = self._points()
        pts = [(a, y, _label(e)) for e, y, a in zip(eps, ys, acc, strict=True) if a is not None]
        fig = go.Figure(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], text=[p[2] for p in pts],
                                   mode="markers+text", textposition="top center", name="privacy-utility"))
        fig.update_layout(title="Privacy-utility (membership attacks)", xaxis_title="model accuracy",
                          yaxis_title=metric or "success", height=320, width=460, margin={"t": 40})
        return fig

    def refresh(self) -> None:
        """Redraw figures, header and verdicts from the last result."""
        self._show("success", self._success_figure())
        self._show("utility", self._utility_figure())
        _, eps, ys, _, verdicts = self._points()
        rows = [[_label(e), y, v] for e, y, v in zip(eps, ys, verdicts, strict=True)]
        note = _SECAGG_NOTE.get(getattr(self, "_kind", ""), "") if getattr(self, "_protection", "") == \
            "secure_aggregation" else ""
        self.verdicts.value = (html_table(["protection", "success", "verdict"], rows)
                               + (f"<p>{escape(note)}</p>" if note else "")) if rows else ""
        run = "no attack run yet" if self.result is None else f"{self.attack.value} vs {self.protection.value}"
        self.header.value = (f"<b>{escape(self.title)}</b>: {escape(run)}. Real workbench runs on throwaway "
                             "federations: the study's privacy budget is never spent.")

    def _text(self) -> str:
        _, eps, ys, _, verdicts = self._points()
        lines = [f"{self.title}: {self.attack.value} vs {self.protection.value}"]
        lines += [f"  {_label(e)}: {y:.4g}  {v}" for e, y, v in zip(eps, ys, verdicts, strict=True)]
        return "\n".join(lines)

    def _html_body(self) -> str:
        return self.verdicts.value
