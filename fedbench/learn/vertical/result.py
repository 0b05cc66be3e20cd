"""The result of vertical training: :class:`VerticalRun` (model, history, comparison, who learned what)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from html import escape
from typing import Any

import numpy as np
import polars as pl

from ...errors import ConfigurationError
from ...results import THREAT_MODEL, render_card
from ...transcript import Transcript, _fmt_bytes
from ..compare import failure_note
from ..stages import plural, quiet
from ..table import FullTextFrame
from .protocol import v_rows

__all__ = ["VERTICAL_THREAT_MODEL", "VerticalRun"]

#: Vertical learning has no aggregator: the parties exchange ciphertexts directly.
VERTICAL_THREAT_MODEL = (
    "honest-but-curious guest, host and key holder, no collusion of the key holder with a party; there is no "
    "aggregator: the guest and the host exchange encrypted partial scores and residuals directly, and the key "
    "holder decrypts only one-time-padded gradients and the loss"
)

#: One clause that introduces the two roles (shown on the card and in the text repr).
ROLES = "the guest holds the labels (and some features), the host holds only features"


@dataclass(repr=False)
class VerticalRun:
    """The outcome of :func:`fit_vertical`.

    Attributes
    ----------
    model : estimator
        A fitted ``LogisticRegression`` (or pipeline) over the guest's then the
        host's feature columns.  Simulation only: in a deployment each party
        keeps its own coefficients and prediction is joint.
    coef_by_party : dict of str to numpy.ndarray
        Each party's coefficients (original feature scale).
    intercept : float
        Held by the guest.
    features_by_party : dict of str to list of str
    guest, host : str
        Label holder and feature-only party.
    history : polars.DataFrame
        One row per iteration: ``round, loss`` (Taylor loss per row), ``seconds, bytes``.
    psi : PSIResult
        The alignment.
    n_aligned, n_train, n_test : int
    transcript : Transcript
    leakage : str
        Who learns what.
    elapsed : float
    """

    model: Any
    coef_by_party: dict[str, np.ndarray]
    intercept: float
    features_by_party: dict[str, list[str]]
    guest: str
    host: str
    target: str
    history: pl.DataFrame
    psi: Any
    n_aligned: int
    n_train: int
    n_test: int
    transcript: Transcript
    key_bits: int
    leakage: str
    elapsed: float
    seed: int
    test_size: float
    _fed: Any = field(default=None, repr=False)
    _template: Any = field(default=None, repr=False)
    _test: np.ndarray | None = field(default=None, repr=False)
    _comparison: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes sent by the training protocol (PSI excluded)."""
        return self.transcript.nbytes

    @property
    def test_mask(self) -> np.ndarray:
        """Which aligned rows (in the PSI's common order) are held out (public: both parties know it)."""
        assert self._test is not None
        return self._test

    @property
    def features(self) -> list[str]:
        """All feature columns, guest's first (the model's input order)."""
        return [*self.features_by_party[self.guest], *self.features_by_party[self.host]]

    def _aligned(self) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, pl.DataFrame]:
        fed = self._fed
        if fed is None:
            raise ConfigurationError("the comparison needs the federation; this run was unpickled without it")
        if fed[self.guest].remote or fed[self.host].remote:
            raise ConfigurationError(
                "the vertical comparison joins both parties' raw columns (simulation only); with parties on "
                "other nodes (the Ray backend) rows never leave them: compare on a local federation instead"
            )
        # The PSI order is fresh per run; the baselines use the guest's row order so that solvers that stop
        # early (row-order dependent) give the same baselines for the same seed.
        order = np.argsort(self.psi.positions[self.guest], kind="stable")
        pos = {p: v[order] for p, v in self.psi.positions.items()}
        xg, y = fed[self.guest].compute(partial(v_rows, rows=pos[self.guest], features=self.features_by_party[
            self.guest], target=self.target))
        xh, _ = fed[self.host].compute(partial(v_rows, rows=pos[self.host], features=self.features_by_party[self.host],
                                               target=None))
        return pl.concat([xg, xh], how="horizontal"), y, self.test_mask[order], xg

    def compare(self) -> pl.DataFrame:
        """Guest-only, vertical federated and centralized (joined) models on the aligned held-out rows.

        Simulation only: scoring the joined rows pools both parties' columns.
        """
        if self._comparison is not None:
            return self._comparison
        from sklearn.base import clone

        x, y, test, xg = self._aligned()
        tr, te = pl.Series(~test), pl.Series(test)
        rows: list[tuple[str, str, float | None, str]] = []
        local = clone(self._template)
        gcols = self.features_by_party[self.guest]
        try:
            quiet(local.fit, xg.filter(tr), y[~test])
            rows.append((f"local:{self.guest}", f"{self.guest}'s columns only", float(local.score(xg.filter(te),
                                                                                                 y[test])), ""))
        except Exception as exc:
            rows.append((f"local:{self.guest}", f"{self.guest}'s columns only", None, failure_note(exc)))
        rows.append((f"local:{self.host}", f"{self.host}'s columns only", None, "holds no labels: cannot train alone"))
        rows.append(("federated", "both parties' columns, vertical protocol (Taylor loss)",
                     float(self.model.score(x.filter(te), y[test])), "scored on joined rows (simulation only)"))
        central = clone(self._template)
        quiet(central.fit, x.filter(tr), y[~test])
        rows.append(("centralized", "joined rows (simulation only)", float(central.score(x.filter(te), y[test])),
                     "simulation only: joins raw rows"))
        del x, xg, gcols
        self._comparison = FullTextFrame(rows, schema={"model": pl.String, "trained_on": pl.String,
                                                      "score": pl.Float64, "note": pl.String}, orient="row")
        return self._comparison

    def plot(self, kind: str = "compare") -> Any:
        """Plotly figure: ``"compare"`` (accuracy per model) or ``"history"`` (loss per iteration)."""
        import plotly.graph_objects as go

        if kind == "compare":
            tab = self.compare()
            fig = go.Figure(go.Bar(x=tab["model"].to_list(), y=tab["score"].to_list(),
                                   hovertext=tab["trained_on"].to_list()))
            fig.update_layout(title="Vertical logistic regression: accuracy on aligned held-out rows "
                              "(local and centralized are simulation-only baselines)", yaxis_title="accuracy")
            return fig
        if kind == "history":
            fig = go.Figure(go.Scatter(x=self.history["round"].to_list(), y=self.history["loss"].to_list(),
                                       mode="lines+markers"))
            fig.update_layout(title="Taylor loss per iteration", xaxis_title="iteration", yaxis_title="loss")
            return fig
        raise ConfigurationError(f"kind must be 'compare' or 'history', got {kind!r}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fed"] = None
        return state

    def __repr__(self) -> str:
        last = self.history["loss"].drop_nulls()
        lines = [
            f"VerticalRun: logistic regression of {self.target!r} (guest {self.guest!r}, "
            f"{plural(len(self.features_by_party[self.guest]), 'feature')}) with host {self.host!r} "
            f"({plural(len(self.features_by_party[self.host]), 'feature')})",
            f"  roles: {ROLES}",
            f"  PSI: {self.n_aligned} shared rows ({self.n_train} train, {self.n_test} held out)",
            f"  {plural(self.history.height, 'iteration')}, {self.key_bits}-bit Paillier, "
            f"{plural(len(self.transcript), 'message')}, "
            f"{_fmt_bytes(self.nbytes)}, {self.elapsed:.2f} s; final Taylor loss "
            + (f"{float(last[-1]):.4f}" if len(last) else "—"),
        ]
        if self._comparison is not None:
            lines.append("  accuracy on held-out rows: " + ", ".join(
                f"{m}={'—' if s is None else f'{s:.4f}'}" for m, s in zip(self._comparison["model"],
                                                                        self._comparison["score"], strict=True)))
        else:
            lines.append("  .compare() for guest-only and centralized baselines (simulation only)")
        lines.append(f"  leakage: {self.leakage}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        last = self.history["loss"].drop_nulls()
        rows = [
            ("roles", escape(ROLES)),
            ("guest (labels)", escape(f"{self.guest}: {plural(len(self.features_by_party[self.guest]), 'feature')}")),
            ("host (features only)",
             escape(f"{self.host}: {plural(len(self.features_by_party[self.host]), 'feature')}")),
            ("aligned rows", f"{self.n_aligned} ({self.n_train} train, {self.n_test} held out)"),
            ("training", f"{plural(self.history.height, 'iteration')}, Taylor loss "
                         + (f"{float(last[-1]):.4f}" if len(last) else "—")),
            ("cost", f"{self.elapsed:.2f} s, {_fmt_bytes(self.nbytes)}, {self.key_bits}-bit Paillier"),
            ("who learns what", escape(self.leakage)),
        ]
        body = ""
        if self._comparison is not None:
            body = "<table><tr><th>model</th><th>accuracy</th><th>note</th></tr>" + "".join(
                f"<tr><td>{escape(m)}</td><td>{'—' if s is None else f'{s:.4f}'}</td><td>{escape(n)}</td></tr>"
                for m, s, n in self._comparison.select("model", "score", "note").iter_rows()) + "</table>"
        card = render_card("Vertical federated logistic regression", rows, body)
        # The shared card footer describes secure aggregation (an aggregator); vertical learning has none.
        return card.replace(escape(THREAT_MODEL), escape(VERTICAL_THREAT_MODEL))
