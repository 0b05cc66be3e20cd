"""Strategies and the fixed round loop (in the style of Flower).

A :class:`Strategy` decides *what* happens in a round through hooks, and
:func:`run_rounds` decides *how* rounds run, always the same way:

1. ``configure_fit``: choose the round's parties (client sampling) and their instructions;
2. the coordinator broadcasts the global parameters (``payload``) to them;
3. each chosen party runs ``fit_fn`` on its own rows (phase 1); failures and
   timeouts drop the party from the round and are reported;
4. the survivors' local results are summed, through Paillier secure
   aggregation by default (phase 2); only the sum is decrypted;
5. ``aggregate_fit`` turns the sum into new global parameters;
6. every ``evaluate_every`` rounds, ``configure_evaluate`` / ``evaluate_fn`` /
   ``aggregate_evaluate`` score the new model on the parties' held-out rows,
   from securely summed additive statistics;
7. the round's history rows are recorded; the loop stops early when the
   strategy says it has converged.

Local functions return ``{"sum": {...}, "party": {...}}``: ``"sum"`` holds the
local aggregates that go into the secure sum; ``"party"`` holds the party's own
diagnostics (its local loss, row count, held-out metric).  They stay inside
the party unless the run opts in with ``party_metrics=True``, an explicit
plaintext release to the analyst recorded in the transcript and the ledger
(see :mod:`fedbench.learn.engine`); only then do per-party history rows carry
numbers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..crypto.packing import Encoding
from ..errors import ConfigurationError
from .engine import GLOBAL, Session
from .stages import StageContext, combine_scores, local_scores

__all__ = ["FitInstruction", "Strategy", "run_rounds"]


@dataclass(frozen=True)
class FitInstruction:
    """What the coordinator asks one party to do in a round.

    Attributes
    ----------
    party : str
        The party.
    config : dict
        Public settings of the round (local epochs, proximal weight...).
    """

    party: str
    config: Mapping[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class of federated training strategies: hooks called by the fixed round loop.

    Subclasses implement :meth:`initialize`, :meth:`fit_fn`,
    :meth:`aggregate_fit` and :meth:`model`; the defaults sample parties
    (``fraction_fit``, seeded), evaluate on held-out rows every
    ``evaluate_every`` rounds and never converge early.

    Parameters
    ----------
    fraction_fit : float, default 1.0
        Fraction of parties asked to train each round (at least ``min_parties``).
    min_parties : int, optional
        Fewest parties a round may keep after dropouts (default: 2 when the sum
        is secure, else 1).
    evaluate_every : int, default 1
        Evaluate every that many rounds (0: only after the last round).
    rounds : int, optional
        Training rounds (a maximum for strategies that stop once converged);
        ``fit(rounds=...)`` takes precedence, and the default depends on the
        strategy (:data:`fedbench.learn.registry.STRATEGIES`).
    """

    #: Short name shown in results.
    name = "strategy"
    #: Whether the fit sums need the high-precision encoding (exact and second-order protocols).
    exact = False

    def __init__(self, *, fraction_fit: float = 1.0, min_parties: int | None = None,
                 evaluate_every: int = 1, rounds: int | None = None) -> None:
        if rounds is not None and (not isinstance(rounds, int | np.integer) or rounds < 1):
            raise ConfigurationError(f"rounds must be a positive integer, got {rounds!r}")
        self.rounds = None if rounds is None else int(rounds)
        self.fraction_fit = fraction_fit
        self.min_parties = min_parties
        self.evaluate_every = evaluate_every
        self.converged = False

    # -- hooks -------------------------------------------------------------------
    @abstractmethod
    def initialize(self, ctx: StageContext, session: Session) -> Any:
        """Initial global parameters."""

    def configure_fit(self, server_round: int, params: Any, parties: Sequence[str],
                      rng: np.random.Generator) -> list[FitInstruction]:
        """Choose the round's parties: a seeded sample of ``fraction_fit`` of them."""
        k = max(self.required(len(parties)), int(np.ceil(self.fraction_fit * len(parties))))
        k = min(k, len(parties))
        chosen = sorted(rng.choice(len(parties), size=k, replace=False)) if k < len(parties) else range(k)
        return [FitInstruction(parties[i]) for i in chosen]

    def payload(self, params: Any) -> Any:
        """What the coordinator broadcasts (a parameter vector, by default the parameters themselves)."""
        return params

    @abstractmethod
    def fit_fn(self, server_round: int, params: Any, ctx: StageContext) -> Callable[[pl.DataFrame], dict[str, Any]]:
        """The local function of a round (top level or ``functools.partial``, so that it pickles)."""

    @abstractmethod
    def aggregate_fit(self, server_round: int, params: Any, total: Mapping[str, Any],
                      party_info: Mapping[str, Mapping[str, Any]],
                      failures: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """New global parameters from the summed local results; returns them and round metrics."""

    @abstractmethod
    def model(self, params: Any) -> Any:
        """The fitted scikit-learn estimator for ``params``."""

    def configure_evaluate(self, server_round: int, params: Any, parties: Sequence[str],
                           last: bool) -> list[FitInstruction]:
        """Parties that score the model this round: all of them every ``evaluate_every`` rounds."""
        every = self.evaluate_every
        if last or (every and server_round % every == 0):
            return [FitInstruction(p) for p in parties]
        return []

    def evaluate_fn(self, server_round: int, params: Any, ctx: StageContext) -> Callable[[pl.DataFrame], Any]:
        """Local scoring: additive statistics of the metric on the party's held-out rows."""
        return partial(_local_evaluate, spec=ctx.spec, model=self.model(params), prefix=ctx.prefix,
                       metric=ctx.metric, classes=_as_list(ctx.classes), part=ctx.evaluate_part)

    def aggregate_evaluate(self, server_round: int, total: Mapping[str, Any], ctx: StageContext) -> dict[str, Any]:
        """The federation-wide metric from the summed statistics."""
        if ctx.metric is None:  # unreachable in practice: the parties' local scoring refuses it first
            raise ConfigurationError(f"{ctx.name}: no evaluation metric to combine; pass metric=...")
        return {"metric": combine_scores(ctx.metric, dict(total))}

    def fit_protocol(self) -> str:
        """Protocol name of the round sums (the ledger and the privacy summary list releases by it)."""
        return "fit"

    def fit_description(self) -> str:
        """What one round's sum releases, in words."""
        return f"{self.name} round: sum of the parties' local model statistics"

    def before_sum(self, server_round: int, survivors: Sequence[str], asked: Sequence[str]) -> None:
        """Called between phase 1 and the sum; raise to abort the round before anything is decrypted."""
        return None

    def show_parties(self) -> bool:
        """Whether per-party history rows may name the round's parties (not when participation is secret)."""
        return True

    def skip_round(self, server_round: int) -> dict[str, Any]:
        """Called for a round with too few sampled parties; returns metrics to record (e.g. epsilon)."""
        return {}

    def encoding(self, ctx: StageContext) -> Encoding:
        """Encoding of the fit sums."""
        return ctx.exact_encoding if self.exact else ctx.encoding

    def required(self, n_parties: int) -> int:
        """Fewest parties a round may keep."""
        return self.min_parties if self.min_parties is not None else min(2, n_parties)

    def describe(self) -> str:
        """One line for the run summary."""
        return self.name


def _as_list(classes: Any) -> list[Any] | None:
    return None if classes is None else list(np.asarray(classes).tolist())


def _local_evaluate(df: pl.DataFrame, **kw: Any) -> dict[str, Any]:
    stats = local_scores(df, **kw)
    return {"sum": stats, "party": {"metric": combine_scores(kw["metric"], stats), "n_eval": stats["n"]}}


def _party_row_values(info: Mapping[str, Any], key: str) -> float | None:
    v = info.get(key)
    return None if v is None else float(v)


def run_rounds(session: Session, strategy: Strategy, ctx: StageContext, rounds: int, *,
               on_round: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Run the fixed round loop of ``strategy`` and return the fitted estimator.

    ``on_round``, if given, is called after every round with a flat record:
    ``round, stage, seconds, nbytes, loss, <metric>, epsilon`` and
    ``parties={party: {"loss": ..., <metric>: ...}}`` (e.g. a
    :class:`fedbench.widgets.TrainingDashboard`).

    Raises
    ------
    DropoutError
        A round kept fewer than ``min_parties`` parties.
    """
    rng = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 0x5EED])
    params = strategy.initialize(ctx, session)
    names = [p.name for p in session.parties]
    needed = max(strategy.required(len(names)), session.min_parties)
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        b0 = session.transcript.nbytes
        ins = strategy.configure_fit(rnd, params, names, rng)
        chosen = [i.party for i in ins]
        if len(chosen) < needed:
            # Only Poisson sampling (DP-FedAvg) can pick too few parties; the round still happened for privacy.
            extra = strategy.skip_round(rnd)
            session.record(stage=ctx.name, round=rnd, party=GLOBAL, status="skipped", n=float(len(chosen)),
                           seconds=time.perf_counter() - t0, bytes=0, epsilon=extra.get("epsilon"),
                           note=f"{len(chosen)} parties sampled, fewer than the minimum of {needed}")
            continue
        session.broadcast(chosen, "global-model", strategy.payload(params))
        fn = strategy.fit_fn(rnd, params, ctx)
        results, failures, seconds = session.run_local(chosen, fn, round=rnd, stage=ctx.name)
        held = {n: r["sum"] for n, r in results.items()}
        try:
            session.require(len(results), needed, round=rnd, stage=ctx.name, failures=failures)
            strategy.before_sum(rnd, list(results), chosen)
        except Exception:
            session.forget(held)  # aborted before anything was decrypted: the parties drop what they kept
            raise
        total, _ = session.sum_held(held, encoding=strategy.encoding(ctx), protocol=strategy.fit_protocol(),
                                    description=f"{ctx.name} round {rnd}: {strategy.fit_description()}")
        party_info = {n: r.get("party", {}) for n, r in results.items()}
        params, metrics = strategy.aggregate_fit(rnd, params, total, party_info, failures)
        last = rnd == rounds or strategy.converged
        party_eval: dict[str, Mapping[str, Any]] = {}
        evals = strategy.configure_evaluate(rnd, params, names, last)
        if evals:
            efn = strategy.evaluate_fn(rnd, params, ctx)
            eres, _, _ = session.run_local([i.party for i in evals], efn, round=rnd, stage=f"{ctx.name}:evaluate")
            if len(eres) >= session.min_parties:
                etotal, _ = session.sum_held({n: r["sum"] for n, r in eres.items()}, encoding=ctx.encoding,
                                             protocol="evaluate",
                                             description=f"{ctx.name} round {rnd}: summed statistics of the "
                                             f"{ctx.metric} on the parties' {ctx.evaluate_part} rows")
                metrics.update(strategy.aggregate_evaluate(rnd, etotal, ctx))
            party_eval = {n: r.get("party", {}) for n, r in eres.items()}
        elapsed = time.perf_counter() - t0
        session.record(stage=ctx.name, round=rnd, party=GLOBAL, status=metrics.pop("status", "ok"),
                       loss=metrics.get("loss"), metric=metrics.get("metric"), n=metrics.get("n"),
                       seconds=elapsed, bytes=session.transcript.nbytes - b0, epsilon=metrics.get("epsilon"),
                       note=metrics.get("note"))
        failed = {f.party: f for f in failures}
        for name in chosen:
            if name in failed:
                f = failed[name]
                session.record(stage=ctx.name, round=rnd, party=name, status=f"dropped ({f.kind})",
                               seconds=seconds.get(name), note=f.reason)
                continue
            if not strategy.show_parties():
                continue  # participation is secret: no row ties a party to a round
            # The values are here only when the run opted in (the engine released them to the analyst).
            info = results[name].get("party", {}) if ctx.party_metrics else {}
            pe = party_eval.get(name, {}) if ctx.party_metrics else {}
            session.record(stage=ctx.name, round=rnd, party=name, status="ok", loss=_party_row_values(info, "loss"),
                           metric=_party_row_values(pe, "metric"), n=_party_row_values(info, "n"),
                           seconds=seconds.get(name))
        if on_round is not None:
            label = ctx.metric or "metric"
            parties = {}
            if ctx.party_metrics:
                for name, r in results.items():
                    pe = party_eval.get(name, {})
                    parties[name] = {"loss": r.get("party", {}).get("loss"), label: pe.get("metric")}
            on_round({"round": rnd, "stage": ctx.name, "seconds": elapsed, "nbytes": session.transcript.nbytes - b0,
                      "loss": metrics.get("loss"), label: metrics.get("metric"), "epsilon": metrics.get("epsilon"),
                      "parties": parties})
        if strategy.converged:
            break
    return strategy.model(params)
