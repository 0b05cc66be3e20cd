"""Horizontal FedAvg and FedProx, with optional DP-FedAvg, over secure sums.

FedAvg (McMahan et al., 2017): each round a sample of parties trains a copy of
the global model on its own rows for ``local_epochs`` and the coordinator
replaces the global parameters by the average of the local ones, weighted by
the parties' training-row counts.  Each party contributes ``n_k * theta_k`` and
``n_k`` to one secure sum, so only the weighted average is decrypted (and the
federation-wide row count, which the weights need).

FedProx (Li et al., 2020) adds ``mu / 2 ||theta - theta_global||^2`` to each
party's local objective, which keeps local models of very different parties
from drifting apart (see :mod:`fedbench.learn.models` for how each family
applies it).

DP-FedAvg (McMahan et al., 2018) when ``dp=DPConfig(...)``: parties are
Poisson-sampled with ``dp.sample_rate``; each sampled party clips its update
``theta_k - theta_global`` to L2 norm ``dp.clip`` and adds its share
``N(0, (noise_multiplier * clip)^2 / k)`` of the noise before encrypting (``k``
= parties sampled that round), so the decrypted sum carries the full noise and
no party's update is ever seen without it.  If some sampled parties drop out,
the key holder tops the noise up centrally before release.  The sum is divided
by the *expected* number of participants (``sample_rate * parties``), which
keeps the sensitivity fixed; updates are not weighted by row counts (that
would reveal them and raise the sensitivity).  Epsilon after each round comes
from :class:`fedbench.dp.DPFedAvgAccountant` (RDP), at the unit of one party's
whole contribution.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError
from .data import DataSpec, as_matrix
from .engine import Session
from .models import Adapter, make_adapter
from .stages import Prefix, StageContext, stage_xy
from .strategy import FitInstruction, Strategy

__all__ = ["FedAvg", "FedProx", "local_fedavg"]


def training_loss(model: Any, x: Any, y: Any, kind: str) -> float | None:
    """The party's training loss after its local step (log-loss, 0-1 error or MSE)."""
    if len(y) == 0:
        return None
    if kind == "classifier":
        if hasattr(model, "predict_proba"):
            try:
                proba = np.clip(model.predict_proba(x), 1e-15, 1.0)
            except AttributeError:  # e.g. SGDClassifier(loss="hinge") exposes the method but refuses it
                proba = None
            if proba is not None:
                idx = np.searchsorted(np.asarray(model.classes_), y)
                return float(-np.mean(np.log(proba[np.arange(len(y)), idx])))
        return float(np.mean(model.predict(x) != y))
    pred = np.asarray(model.predict(x), dtype=float).ravel()
    return float(np.mean((np.asarray(y, dtype=float) - pred) ** 2))


def local_fedavg(
    df: pl.DataFrame,
    *,
    spec: DataSpec,
    prefix: Prefix | None,
    adapter: Adapter,
    model: Any,
    kind: str,
    epochs: int,
    mu: float,
    seed: int,
    n_total: float,
    dp: Any = None,
    n_sampled: int = 1,
) -> dict[str, Any]:
    """One party's local step of FedAvg/FedProx (runs inside the party).

    Returns ``n * theta`` and ``n`` (and ``n * loss``) for the secure sum, or
    under DP the clipped update plus this party's noise share.
    """
    x, y = stage_xy(df, spec, prefix, "train")
    if isinstance(x, pl.DataFrame):
        # The broadcast copy has no feature names: plain arrays skip scikit-learn's costly frame checks.
        x = as_matrix(x)
    local = copy.deepcopy(model)
    anchor = adapter.get(local)
    adapter.train(local, x, y, epochs=epochs, mu=mu, anchor=anchor, seed=seed, n_total=n_total)
    theta = adapter.get(local)
    n = float(len(y))
    loss = adapter.loss(local, x, y, kind)
    if dp is not None:
        from ..dp import clip_update, update_noise_share

        delta = clip_update(theta - anchor, dp.clip)
        delta = delta + update_noise_share(delta, dp, max(1, n_sampled))
        return {"sum": {"delta": delta}, "party": {"loss": loss, "n": n}}
    out: dict[str, Any] = {"theta": n * theta, "n": n, "loss": n * (loss if loss is not None else 0.0)}
    t = getattr(local, "t_", None)
    if t is not None:
        out["t"] = n * float(t)  # the SGD learning-rate schedule's step count, averaged like the weights
    return {"sum": out, "party": {"loss": loss, "n": n}}


class FedAvg(Strategy):
    """Federated averaging of locally trained scikit-learn models, weighted by row counts.

    Parameters
    ----------
    estimator : estimator, optional
        ``SGDClassifier``, ``SGDRegressor``, ``Perceptron``, ``PassiveAggressive*``,
        ``MLPClassifier``, ``MLPRegressor`` or ``LogisticRegression``; ``fit``
        binds the final step of the model when it is left out.
    local_epochs : int, default 1
        Local passes over each party's rows per round.
    proximal_mu : float, default 0.0
        FedProx proximal weight (0: plain FedAvg).
    fraction_fit : float, default 1.0
        Fraction of parties sampled each round (seeded).
    min_parties : int, optional
        Fewest parties a round may keep after dropouts.
    server_learning_rate : float, default 1.0
        Step of the global update towards the average (1: replace).
    dp : fedbench.dp.DPConfig, optional
        DP-FedAvg: clipping, distributed Gaussian noise and Poisson sampling.
    evaluate_every : int, default 1
        Evaluate on held-out rows every that many rounds.
    """

    name = "fedavg"

    def __init__(self, estimator: Any = None, *, local_epochs: int = 1, proximal_mu: float = 0.0,
                 fraction_fit: float = 1.0,
                 min_parties: int | None = None, server_learning_rate: float = 1.0, dp: Any = None,
                 evaluate_every: int = 1) -> None:
        super().__init__(fraction_fit=fraction_fit, min_parties=min_parties, evaluate_every=evaluate_every)
        if not isinstance(local_epochs, int | np.integer) or local_epochs < 1:
            raise ConfigurationError(f"local_epochs must be a positive integer, got {local_epochs!r}")
        if not proximal_mu >= 0:
            raise ConfigurationError(f"proximal_mu must be >= 0, got {proximal_mu!r}")
        if not 0 < fraction_fit <= 1:
            raise ConfigurationError(f"fraction_fit must be in (0, 1], got {fraction_fit!r}")
        self.estimator = estimator
        self.local_epochs = int(local_epochs)
        self.proximal_mu = float(proximal_mu)
        self.server_learning_rate = float(server_learning_rate)
        self.dp = dp
        if proximal_mu > 0:
            self.name = "fedprox"

    def initialize(self, ctx: StageContext, session: Session) -> np.ndarray:
        """Build the model structure and the initial parameters."""
        self.ctx = ctx
        self.adapter = make_adapter(self.estimator, ctx)
        rng = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 0x1217])
        self.global_model, vec = self.adapter.init(rng)
        self.n_parties = len(session.parties)
        self.t: float | None = getattr(self.global_model, "t_", None)
        self._sampled = self.n_parties
        self.accountant = None
        if self.dp is not None:
            from ..dp import DPFedAvgAccountant

            if self.dp.delta is None:
                raise ConfigurationError(
                    "DP-FedAvg needs a target delta for its epsilon: DPConfig(..., delta=1e-5); choose delta "
                    f"well below 1/{self.n_parties} (the unit of privacy is one party)"
                )
            self.accountant = DPFedAvgAccountant(self.dp)
        return vec

    def configure_fit(self, server_round: int, params: Any, parties: Sequence[str],
                      rng: np.random.Generator) -> list[FitInstruction]:
        """Choose the round's parties."""
        if self.dp is not None:
            # Poisson sampling: each party independently with probability sample_rate (what the accountant assumes).
            keep = rng.random(len(parties)) < self.dp.sample_rate
            chosen = [p for p, k in zip(parties, keep, strict=True) if k]
        else:
            chosen = [i.party for i in super().configure_fit(server_round, params, parties, rng)]
        self._sampled = len(chosen)
        return [FitInstruction(p, {"local_epochs": self.local_epochs, "proximal_mu": self.proximal_mu})
                for p in chosen]

    def payload(self, params: Any) -> np.ndarray:
        """The parameters broadcast to the round's parties."""
        return np.asarray(params)

    def fit_fn(self, server_round: int, params: Any, ctx: StageContext) -> Callable[[pl.DataFrame], dict[str, Any]]:
        """The round's local function."""
        model = self.adapter.for_round(self.global_model, params)
        if self.t is not None:
            model.t_ = self.t
        if hasattr(model, "feature_names_in_"):
            del model.feature_names_in_  # parties train on arrays in the model's column order
        seed = zlib.crc32(f"{ctx.seed}:{server_round}".encode()) & 0x7FFFFFFF
        return partial(local_fedavg, spec=ctx.spec, prefix=ctx.prefix, adapter=self.adapter, model=model,
                       kind=ctx.kind, epochs=self.local_epochs, mu=self.proximal_mu, seed=seed,
                       n_total=ctx.n_train, dp=self.dp, n_sampled=self._sampled)

    def aggregate_fit(self, server_round: int, params: Any, total: Mapping[str, Any],
                      party_info: Mapping[str, Mapping[str, Any]],
                      failures: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """New global parameters from the secure sum."""
        params = np.asarray(params)
        metrics: dict[str, Any] = {}
        if self.dp is not None:
            delta = np.asarray(total["delta"], dtype=float)
            dropped = self._sampled - len(party_info)
            if dropped > 0:
                # Shares of the dropped parties are missing: the key holder adds them centrally before release.
                from ..dp import make_rng

                std = self.dp.noise_std * math.sqrt(dropped / max(1, self._sampled))
                delta = delta + make_rng().normal(0.0, std, delta.shape)
            expected = self.dp.sample_rate * self.n_parties
            new = params + self.server_learning_rate * delta / expected
            assert self.accountant is not None
            metrics["epsilon"] = self.accountant.step()
            metrics["n"] = float(len(party_info))
        else:
            n = float(total["n"])
            avg = np.asarray(total["theta"]) / n
            new = params + self.server_learning_rate * (avg - params)
            metrics["loss"] = float(total["loss"]) / n
            metrics["n"] = n
            if "t" in total and self.t is not None:
                self.t = float(total["t"]) / n
        return new, metrics

    def configure_evaluate(self, server_round: int, params: Any, parties: Sequence[str],
                           last: bool) -> list[FitInstruction]:
        """Parties that score the model this round."""
        if self.dp is not None and not self.evaluate_every:
            return []  # exact scores of held-out rows are not differentially private: only on request
        return super().configure_evaluate(server_round, params, parties, last)

    def skip_round(self, server_round: int) -> dict[str, Any]:
        """A DP round where too few parties were sampled still counts for the accountant."""
        if self.accountant is not None:
            return {"epsilon": self.accountant.step()}
        return {}

    def model(self, params: Any) -> Any:
        """The fitted estimator for ``params``."""
        m = self.adapter.for_round(self.global_model, np.asarray(params))
        if self.t is not None:
            m.t_ = self.t
        return m

    @property
    def epsilon(self) -> float | None:
        """Epsilon so far (DP only)."""
        return None if self.accountant is None else self.accountant.epsilon()

    def describe(self) -> str:
        """One line for the run summary."""
        what = "FedProx" if self.proximal_mu > 0 else "FedAvg"
        extra = f", mu={self.proximal_mu:g}" if self.proximal_mu > 0 else ""
        dp = (f", DP (z={self.dp.noise_multiplier:g}, clip={self.dp.clip:g}, q={self.dp.sample_rate:g})"
              if self.dp is not None else "")
        return f"{what} ({self.local_epochs} local epoch{'s' if self.local_epochs != 1 else ''}{extra}{dp})"


class FedProx(FedAvg):
    """FedAvg with the FedProx proximal term (``proximal_mu`` defaults to 0.1)."""

    name = "fedprox"

    def __init__(self, estimator: Any = None, *, proximal_mu: float = 0.1, **kwargs: Any) -> None:
        super().__init__(estimator, proximal_mu=proximal_mu, **kwargs)
        self.name = "fedprox"
