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

DP-FedAvg (McMahan et al., 2018) when ``dp=DPConfig(...)``:

* **Hidden participation.**  Every party is asked every round, and each one
  draws its own participation locally with the OS CSPRNG (:mod:`secrets`),
  with probability ``dp.sample_rate``; the run's ``seed`` plays no part.  A
  party that sits out still trains (so timing tells little) but contributes a
  zero update; either way it adds its noise share and sends one encrypted
  contribution of the same shape.  Neither the aggregator, the key holder, the
  other parties nor the analyst learns who took part, so amplification by
  subsampling at ``q = sample_rate`` applies also against a party.  The sum is
  divided by the fixed, public expected number of participants
  ``q * parties`` (McMahan et al.'s fixed-denominator estimator), so the count
  is never needed; updates are not weighted by row counts (that would reveal
  them and raise the sensitivity).
* **Distributed noise.**  Each of the ``k`` parties asked adds a share with
  variance ``(z * clip)^2 / (k - 1)`` (:func:`fedbench.dp.update_noise_share`),
  so the shares of any ``k - 1`` parties carry the full noise: a party that
  subtracts its own share still faces noise multiplier ``z``.  If only ``m``
  of the ``k`` parties reach the sum (dropouts, timeouts), the noise a
  surviving party cannot subtract has variance ``(m - 1) / (k - 1) * (z *
  clip)^2``: that round is accounted at ``z * sqrt((m - 1) / (k - 1))`` (and
  charged as an extra event when budgets are in force, before anything is
  decrypted), and with ``m < 2`` the round is aborted.
* **Accounting.**  Epsilon (RDP, dp-accounting) is against a party: the
  unit is one party's whole contribution, the adversary any other party or
  the analyst.  The figure against an outsider who holds no share is reported
  for information.  Only the noisy update sum is released per round (no loss,
  no participant count).
"""

from __future__ import annotations

import copy
import math
import secrets
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError, DropoutError
from .data import DataSpec, as_matrix
from .engine import Session
from .models import Adapter, make_adapter
from .stages import Prefix, StageContext, stage_xy
from .strategy import FitInstruction, Strategy

__all__ = ["FedAvg", "FedProx", "local_fedavg"]

#: Resolution of the participation coin: q is compared with a uniform 53-bit integer from the OS CSPRNG.
_COIN_BITS = 53

#: What the privacy summary says about DP-FedAvg's sampling.
PARTICIPATION_NOTE = "participation hidden (local CSPRNG sampling); amplification at q applies"


def participates(sample_rate: float) -> bool:
    """One party's secret Poisson-sampling coin for a round (OS CSPRNG; runs inside the party).

    Parameters
    ----------
    sample_rate : float
        Probability of taking part.

    Returns
    -------
    bool
    """
    if sample_rate >= 1.0:
        return True
    return secrets.randbits(_COIN_BITS) < round(sample_rate * (1 << _COIN_BITS))


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
    n_shares: int = 2,
    frac_bits: int = 24,
) -> dict[str, Any]:
    """One party's local step of FedAvg/FedProx (runs inside the party).

    Returns ``n * theta`` and ``n`` (and ``n * loss``) for the secure sum, or
    under DP the clipped update (zero if the party's secret coin says it sits
    the round out) plus this party's share of the noise, one of ``n_shares``.
    ``"party"`` holds its own loss and row count, which leave it only when the
    run opted in to per-party metrics.
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
        if not participates(dp.sample_rate):
            delta = np.zeros_like(delta)  # sits out, but sends a contribution like everyone else
        # Update and noise both on the secure sum's grid: the float sum is exact and encodes to the
        # integer update plus the integer (discrete Gaussian) noise share.  Truncating toward zero never
        # lengthens the vector, so the clipped norm (the sensitivity) still holds.
        delta = np.ldexp(np.trunc(np.ldexp(delta, frac_bits)), -frac_bits)
        delta = delta + update_noise_share(delta, dp, n_shares, frac_bits=frac_bits)
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
        DP-FedAvg: clipping, distributed Gaussian noise and secret Poisson
        sampling drawn by each party (``fraction_fit`` and the seed are then unused).
    evaluate_every : int, optional
        Evaluate on held-out rows every that many rounds (default 1; with
        ``dp`` the default is 0, no evaluation, because exact scores of
        held-out rows are not differentially private).
    rounds : int, optional
        Training rounds (default 20; ``fit(rounds=...)`` takes precedence).
    """

    name = "fedavg"
    #: The parameter adapter of the estimator's family (set by ``fit`` from the registry).
    adapter_type: type[Adapter] | None = None

    def __init__(self, estimator: Any = None, *, local_epochs: int = 1, proximal_mu: float = 0.0,
                 fraction_fit: float = 1.0,
                 min_parties: int | None = None, server_learning_rate: float = 1.0, dp: Any = None,
                 evaluate_every: int | None = None, rounds: int | None = None) -> None:
        if evaluate_every is None:
            evaluate_every = 0 if dp is not None else 1
        super().__init__(fraction_fit=fraction_fit, min_parties=min_parties, evaluate_every=evaluate_every,
                         rounds=rounds)
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
        self.adapter = make_adapter(self.estimator, ctx, self.adapter_type)
        rng = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 0x1217])
        self.global_model, vec = self.adapter.init(rng)
        self.n_parties = len(session.parties)
        self.t: float | None = getattr(self.global_model, "t_", None)
        self._asked = self.n_parties
        self.accountant: _PartyAccountant | None = None
        if self.dp is not None:
            if self.dp.delta is None:
                raise ConfigurationError(
                    "DP-FedAvg needs a target delta for its epsilon: DPConfig(..., delta=1e-5); choose delta "
                    f"well below 1/{self.n_parties} (the unit of privacy is one party)"
                )
            if self.n_parties < 2:
                raise ConfigurationError(
                    "DP-FedAvg splits the noise over the parties so that any one of them cannot subtract it: it "
                    f"needs at least 2 parties, got {self.n_parties}"
                )
            self.accountant = _PartyAccountant(self.dp)
            self._budget = session._budget
            self._parties = [p.name for p in session.parties]
        return vec

    def configure_fit(self, server_round: int, params: Any, parties: Sequence[str],
                      rng: np.random.Generator) -> list[FitInstruction]:
        """Choose the round's parties."""
        if self.dp is not None:
            # Every party is asked; each draws its own secret coin (Poisson sampling the coordinator never sees).
            chosen = list(parties)
        else:
            chosen = [i.party for i in super().configure_fit(server_round, params, parties, rng)]
        self._asked = len(chosen)
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
                       n_total=ctx.n_train, dp=self.dp, n_shares=self._asked, frac_bits=ctx.encoding.frac_bits)

    def aggregate_fit(self, server_round: int, params: Any, total: Mapping[str, Any],
                      party_info: Mapping[str, Mapping[str, Any]],
                      failures: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """New global parameters from the secure sum."""
        params = np.asarray(params)
        metrics: dict[str, Any] = {}
        if self.dp is not None:
            delta = np.asarray(total["delta"], dtype=float)
            expected = self.dp.sample_rate * self.n_parties  # fixed public denominator: the count stays hidden
            new = params + self.server_learning_rate * delta / expected
            assert self.accountant is not None
            metrics["epsilon"] = self.accountant.epsilon()
            if self._round_z < self.dp.noise_multiplier:
                metrics["note"] = (f"{len(party_info)} of {self._asked} noise shares: accounted at "
                                   f"z = {self._round_z:.3g}")
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

    def fit_protocol(self) -> str:
        """DP rounds are summed under their own protocol: the up-front DP charge covers them, nothing else."""
        return "dp-fedavg" if self.dp is not None else "fit"

    def fit_description(self) -> str:
        """What one round's sum releases."""
        if self.dp is not None:
            return "sum of clipped model updates plus distributed Gaussian noise (DP)"
        return "sums of row-weighted local parameters, training rows and training loss"

    def show_parties(self) -> bool:
        """Under DP who took part is secret: history rows name no party (dropouts excepted)."""
        return self.dp is None

    def before_sum(self, server_round: int, survivors: Sequence[str], asked: Sequence[str]) -> None:
        """Account the round at the noise a surviving party cannot subtract; abort if none is left."""
        if self.dp is None or self.accountant is None:
            return
        m, k = len(survivors), len(asked)
        if m - 1 < 1:
            raise DropoutError(
                f"DP-FedAvg round {server_round}: only {m} of {k} noise shares arrived; against the surviving "
                "party no noise would remain, so nothing is decrypted", round=server_round, failures=[])
        z = self.dp.noise_multiplier * math.sqrt((m - 1) / (k - 1))
        if m < k and self._budget is not None:
            from ..dp import GaussianEvent

            # The planned run was charged at z up front; the missing shares weaken this round, charged on top
            # (conservative) before release.  BudgetExceededError aborts the round with nothing decrypted.
            self._budget.charge(self._parties, GaussianEvent(z, self.dp.sample_rate), mechanism="dp-fedavg",
                                description=f"DP-FedAvg round {server_round}: {m} of {k} noise shares",
                                parameters={"noise_multiplier": z, "sample_rate": self.dp.sample_rate,
                                            "shares": m, "expected_shares": k})
        self._round_z = z
        self.accountant.add(z, outsider=self.dp.noise_multiplier * math.sqrt(m / (k - 1)))

    _round_z: float = math.inf

    def skip_round(self, server_round: int) -> dict[str, Any]:
        """A DP round where no contribution is summed releases nothing and costs nothing."""
        return {"epsilon": self.accountant.epsilon()} if self.accountant is not None else {}

    def privacy(self) -> dict[str, Any] | None:
        """The DP part of the run's privacy summary (``None`` without DP)."""
        if self.dp is None or self.accountant is None:
            return None
        acc = self.accountant
        return {
            "mechanism": "DP-FedAvg (distributed Gaussian noise, clipped updates)",
            "noise_multiplier": self.dp.noise_multiplier,
            "clip": self.dp.clip,
            "sample_rate": self.dp.sample_rate,
            "rounds": acc.rounds,
            "delta": acc.delta,
            "delta_source": getattr(self.dp, "delta_source", "declared"),
            "epsilon": acc.epsilon(),
            "epsilon_pld": acc.epsilon_pld(),
            "epsilon_outsider": acc.epsilon(outsider=True),
            "participation": PARTICIPATION_NOTE,
            "degraded_rounds": acc.degraded,
        }

    def model(self, params: Any) -> Any:
        """The fitted estimator for ``params``."""
        m = self.adapter.for_round(self.global_model, np.asarray(params))
        if self.t is not None:
            m.t_ = self.t
        return m

    @property
    def epsilon(self) -> float | None:
        """Epsilon against a party so far (DP only)."""
        return None if self.accountant is None else self.accountant.epsilon()

    def describe(self) -> str:
        """One line for the run summary."""
        what = "FedProx" if self.proximal_mu > 0 else "FedAvg"
        extra = f", mu={self.proximal_mu:g}" if self.proximal_mu > 0 else ""
        dp = (f", DP (z={self.dp.noise_multiplier:g}, clip={self.dp.clip:g}, q={self.dp.sample_rate:g}, "
              "hidden participation)" if self.dp is not None else "")
        return f"{what} ({self.local_epochs} local epoch{'s' if self.local_epochs != 1 else ''}{extra}{dp})"


class FedProx(FedAvg):
    """FedAvg with the FedProx proximal term (``proximal_mu`` defaults to 0.1)."""

    name = "fedprox"

    def __init__(self, estimator: Any = None, *, proximal_mu: float = 0.1, **kwargs: Any) -> None:
        super().__init__(estimator, proximal_mu=proximal_mu, **kwargs)
        self.name = "fedprox"


class _PartyAccountant:
    """DP-FedAvg rounds, each at its own effective noise multiplier, composed by dp-accounting.

    Kept twice: against a party (the noise it cannot subtract) and against an
    outsider who holds no share.  Rounds with the same multiplier are one
    event; :func:`fedbench.dp.accounting.epsilon_rdp` and
    :func:`~fedbench.dp.accounting.epsilon_pld` compose them.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.delta = float(config.delta)
        self.rounds = 0
        self.degraded = 0
        self._party: dict[float, int] = {}
        self._outsider: dict[float, int] = {}

    def add(self, z: float, *, outsider: float) -> None:
        """Account one round: ``z`` against a party, ``outsider`` against someone holding no share."""
        self.rounds += 1
        self.degraded += z < self.config.noise_multiplier
        self._party[z] = self._party.get(z, 0) + 1
        self._outsider[outsider] = self._outsider.get(outsider, 0) + 1

    def events(self, *, outsider: bool = False) -> list[Any]:
        """The rounds so far as accounting events, one per effective noise multiplier."""
        from ..dp import GaussianEvent

        counts = self._outsider if outsider else self._party
        return [GaussianEvent(z, self.config.sample_rate, n) for z, n in counts.items()]

    def epsilon_pld(self, *, outsider: bool = False) -> float:
        """Epsilon by PLD accounting (tighter; what the ledger uses) at ``delta``."""
        from ..dp.accounting import epsilon_pld

        events = self.events(outsider=outsider)
        return float(epsilon_pld(events, self.delta)) if events else 0.0

    def epsilon(self, *, outsider: bool = False) -> float:
        """Epsilon (RDP) at ``delta`` after the rounds so far."""
        from ..dp.accounting import epsilon_rdp

        events = self.events(outsider=outsider)
        return float(epsilon_rdp(events, self.delta)) if events else 0.0
