"""Fitting a pipeline step by step: the one pipeline loop, and the dispatch of one step to its protocol."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ConfigurationError, UnsupportedEstimatorError
from .engine import GLOBAL, Session
from .fedavg import FedAvg
from .glm import FedNewton
from .registry import STRATEGIES, default_rounds, entry_for
from .results import StepInfo
from .stages import StageContext
from .strategy import Strategy, run_rounds

__all__ = ["FinalStep", "check_supported", "fit_step", "fit_steps", "n_params", "output_width", "step_info", "steps_of"]


@dataclass
class FinalStep:
    """How the final estimator is trained: the strategy (a name or an object), rounds and options.

    ``options`` holds the ``fit`` keywords that build a named strategy
    (``min_parties``, ``evaluate_every`` and the deprecated FedAvg/Newton
    settings) and the round ``callback``.  After the fit, ``strategy_obj`` is
    the strategy that trained it (``None`` for an exact fit).
    """

    strategy: str | Strategy = "auto"
    rounds: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    strategy_obj: Strategy | None = None
    description: str = ""


def steps_of(est: Any) -> list[tuple[str, Any]]:
    """``(name, step)`` pairs of a pipeline, or ``[("model", est)]``."""
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        if not est.steps:
            raise ConfigurationError("the pipeline has no steps")
        return list(est.steps)
    return [("model", est)]


def fit_steps(steps: list[tuple[str, Any]], session: Session, ctx: StageContext, *, final: FinalStep | None,
              kind: str, name_prefix: str = "", on_step: Callable[..., Any] | None = None) -> list[tuple[str, Any]]:
    """Fit ``steps`` in order, each on the previous ones' output (the one pipeline loop).

    ``final`` trains the last step (``None``: its default strategy);
    ``on_step(name, step, fitted, last, t0, rows0, sums0)`` is called after
    each step (the top level records it and broadcasts it to the parties).
    """
    fitted_steps: list[tuple[str, Any]] = []
    prefix = ctx.prefix
    for i, (name, step) in enumerate(steps):
        if step is None or step == "passthrough":
            fitted_steps.append((name, step))
            continue
        last = i == len(steps) - 1
        ctx = replace(ctx, name=f"{name_prefix}{name}", prefix=prefix, kind=kind if last else "transformer")
        t0, rows0, sums0 = time.perf_counter(), len(session.rows), session.secure_sums
        fitted = fit_step(step, session, ctx, final if last else None)
        fitted_steps.append((name, fitted))
        if on_step is not None:
            on_step(name, step, fitted, last, t0, rows0, sums0)
        if not last:
            prefix = prefix.then(fitted)
            ctx = replace(ctx, feature_names=None, n_features=output_width(fitted, ctx))
    return fitted_steps


def fit_step(est: Any, session: Session, ctx: StageContext, final: FinalStep | None = None) -> Any:
    """Fit one step (a transformer, a nested pipeline, a column transformer or the final estimator)."""
    from sklearn.base import clone

    entry = entry_for(est)
    if entry.composite:
        model = clone(est)
        model.steps = fit_steps(list(est.steps), session, ctx, final=final, kind=ctx.kind,
                                name_prefix=f"{ctx.name}/")
        return model
    final = final if final is not None else FinalStep()
    strategy = final.strategy
    if entry.exact and not (isinstance(strategy, str) and strategy not in ("auto", "exact")):
        if isinstance(strategy, Strategy):
            raise UnsupportedEstimatorError(
                f"{type(est).__name__} is fitted exactly from sufficient statistics, not by a strategy")
        _refuse_dp(final, type(est).__name__, "exactly")
        final.description = "exact (sufficient statistics)"
        assert entry.fitter is not None
        return entry.fitter(est, session, ctx, fit_step)
    strat = _strategy(est, entry.strategies, ctx, final)
    if final.options.get("dp") is not None and not isinstance(strat, FedAvg):
        _refuse_dp(final, type(est).__name__, f"with {strat.name}")
    n_rounds = final.rounds if final.rounds is not None else default_rounds(strat)
    if not isinstance(n_rounds, int | np.integer) or n_rounds < 1:
        raise ConfigurationError(f"rounds must be a positive integer, got {final.rounds!r}")
    model = run_rounds(session, strat, ctx, int(n_rounds), on_round=final.options.get("callback"))
    final.description = strat.describe()
    final.strategy_obj = strat
    if isinstance(strat, FedNewton) and not strat.converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"federated {strat.method} did not converge in {n_rounds} rounds; raise rounds=",
                      ConvergenceWarning, stacklevel=4)
    return model


def _refuse_dp(final: FinalStep, name: str, how: str) -> None:
    if final.options.get("dp") is not None:
        raise ConfigurationError(
            f"dp= applies to FedAvg training; {name} is trained {how}, whose exact releases are not "
            "noised. Use strategy=fb.learn.FedAvg(dp=...) (or an estimator trained by FedAvg) for DP-FedAvg"
        )


def _strategy(est: Any, accepted: tuple[str, ...], ctx: StageContext, final: FinalStep) -> Strategy:
    """The strategy object that trains ``est``: the given one (bound to ``est``) or one built from its name."""
    name = type(est).__name__
    entry = entry_for(est)
    strategy = final.strategy
    if isinstance(strategy, Strategy):
        strat = strategy
        if getattr(strat, "estimator", None) is None:
            strat.estimator = est  # type: ignore[attr-defined]
    else:
        choice = accepted[0] if strategy == "auto" else strategy
        if choice not in accepted or STRATEGIES[choice].build is None:
            raise UnsupportedEstimatorError(
                f"{name} cannot be trained with strategy={strategy!r}; it supports {', '.join(accepted)}"
            )
        if choice == "newton" and strategy == "auto" and n_params(ctx) > 300:
            choice = "lbfgs"  # a Hessian of more than 300^2 entries costs more than L-BFGS's extra rounds
        build = STRATEGIES[choice].build
        assert build is not None
        strat = build(est, final.options)
    if isinstance(strat, FedAvg) and strat.adapter_type is None:
        strat.adapter_type = entry.adapter
    return strat


def n_params(ctx: StageContext) -> int:
    """Parameters of a GLM on this step's input (one vector per class beyond two)."""
    k = len(ctx.classes) if ctx.classes is not None and len(ctx.classes) > 2 else 1
    return k * (ctx.n_features + 1)


def output_width(fitted: Any, ctx: StageContext) -> int:
    """Columns a fitted transformer outputs (for the next step's context)."""
    try:
        return len(fitted.get_feature_names_out())
    except Exception:  # not every transformer names its outputs; transform a public zero row instead
        out = fitted.transform(ctx.surrogate_x(1))
        return int(np.shape(out)[1])


def step_info(session: Session, name: str, step: Any, final: FinalStep | None, t0: float, rows0: int,
              sums0: int) -> StepInfo:
    """What one step cost and how it was trained (a row of ``FitRun.steps``)."""
    rows = [r for r in session.rows[rows0:] if r["party"] == GLOBAL]
    strat = final.strategy_obj if final is not None else None
    return StepInfo(
        name=name,
        estimator=type(step).__name__,
        protocol=(final.description if final is not None and final.description else "exact (sufficient statistics)"),
        rounds=len(rows),
        converged=strat.converged if strat is not None and strat.exact else None,
        seconds=time.perf_counter() - t0,
        secure_sums=session.secure_sums - sums0,
    )



def check_supported(est: Any, *, final: bool, strategy: Any) -> None:
    """Raise :class:`UnsupportedEstimatorError` for any step without a protocol (before any data is read)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from .registry import supported_list

    if est is None or (isinstance(est, str) and est in ("passthrough", "drop")):
        return
    if not hasattr(est, "fit") or not hasattr(est, "get_params"):
        raise UnsupportedEstimatorError(
            f"expected a scikit-learn estimator, got {type(est).__name__}. Supported: {supported_list()}"
        )
    if isinstance(est, Pipeline):
        for i, (_, s) in enumerate(est.steps):
            check_supported(s, final=final and i == len(est.steps) - 1, strategy=strategy)
        return
    if isinstance(est, ColumnTransformer):
        for _, t, _ in est.transformers:
            check_supported(t, final=False, strategy=None)
        check_supported(est.remainder, final=False, strategy=None)
        return
    entry = entry_for(est)
    name = type(est).__name__
    if final and isinstance(strategy, str) and strategy != "auto" and strategy not in entry.strategies:
        raise UnsupportedEstimatorError(
            f"{name} cannot be trained with strategy={strategy!r}; it supports {', '.join(entry.strategies)}"
        )
    if final and isinstance(strategy, Strategy) and entry.exact:
        raise UnsupportedEstimatorError(f"{name} is fitted exactly from sufficient statistics, not by a strategy")

