"""``fed.fit``: train a scikit-learn estimator or pipeline across the parties of a federation."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ..dp import DPConfig
from ..errors import (
    ConfigurationError,
    DtypeConflictError,
    FederatedLearningWarning,
    MissingColumnError,
    NonNumericColumnError,
    TooFewPartiesError,
)
from ..party import column_kind
from ..secagg import check_enough_parties
from ..wire import dumps, loads
from .data import DataSpec, check_local, local_xy, resolve_features
from .engine import GLOBAL, Session, learn_encoding
from .fedavg import FedAvg
from .pipeline import FinalStep, check_supported, fit_steps, step_info, steps_of
from .registry import REGISTRY, STRATEGIES, SUPPORTED, supported_list
from .results import FitRun, PrivacySummary, StepInfo
from .stages import METRICS, Prefix, StageContext, default_metric
from .strategy import Strategy

if TYPE_CHECKING:
    from ..coordinator import Coordinator, FederationView

__all__ = ["DEPRECATED_OPTIONS", "SUPPORTED", "fit", "supported_list"]

#: ``fit`` keywords that duplicate strategy options, and the strategy spelling that replaces each.
DEPRECATED_OPTIONS: dict[str, str] = {
    "local_epochs": "strategy=fb.learn.FedAvg(local_epochs=...)",
    "proximal_mu": "strategy=fb.learn.FedProx(proximal_mu=...)",
    "fraction_fit": "strategy=fb.learn.FedAvg(fraction_fit=...)",
    "server_learning_rate": "strategy=fb.learn.FedAvg(server_learning_rate=...)",
    "dp": "strategy=fb.learn.FedAvg(dp=fb.DPConfig(...))",
    "tol": "strategy=fb.learn.FedNewton(tol=...)",
}


def _kind(est: Any) -> str:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.cluster import KMeans

    if is_classifier(est):
        return "classifier"
    if is_regressor(est):
        return "regressor"
    if isinstance(est, KMeans):
        return "clusterer"
    return "transformer"


def _first_entry(est: Any) -> Any:
    first = steps_of(est)[0][1]
    return REGISTRY.get(type(first).__name__)


def _accepts_strings(est: Any) -> bool:
    entry = _first_entry(est)
    return bool(entry is not None and entry.accepts_strings)


def _allows_nulls(est: Any) -> bool:
    # Imputers fill them; encoders treat them as a category; scalers skip them (and a later step checks again).
    entry = _first_entry(est)
    return bool(entry is not None and entry.allows_nulls)


# -- local functions ------------------------------------------------------------------------------------
def local_labels(df: pl.DataFrame, *, spec: DataSpec) -> bytes:
    """The distinct labels of a party's training rows (sent to the coordinator to agree on the classes)."""
    _, y = local_xy(df, spec, "train")
    vals = sorted({v.item() if isinstance(v, np.generic) else v for v in np.asarray(y).tolist()},
                  key=lambda v: (str(type(v)), v))
    return dumps(vals)


def local_setup(df: pl.DataFrame, *, spec: DataSpec, classes: list[Any] | None) -> dict[str, Any]:
    """Training and held-out row counts, and training rows per class (summed securely)."""
    x_train, y_train = local_xy(df, spec, "train")
    x_test, _ = local_xy(df, spec, "test")
    out: dict[str, Any] = {"train": float(x_train.height), "test": float(x_test.height)}
    if classes is not None:
        if y_train is None:  # classes come from the target column: a spec without one cannot have them
            raise ConfigurationError("class counts need a target column; the data spec has none")
        cls = np.asarray(classes)
        out["class_counts"] = np.bincount(np.searchsorted(cls, y_train), minlength=len(cls)).astype(float)
    return out


def _agree_classes(session: Session, spec: DataSpec) -> tuple[list[Any], dict[str, list[Any]]]:
    channel = session.coord.channel("label_union")
    per_party: dict[str, list[Any]] = {}
    fn = partial(local_labels, spec=spec)
    for p, payload in zip(session.parties, session.coord.backend.compute(session.parties, fn), strict=True):
        per_party[p.name] = loads(channel.send(p.name, "coordinator", "label-set", payload, encrypted=False))
    union = {v for vals in per_party.values() for v in vals}
    try:
        classes = sorted(union)
    except TypeError:
        raise ConfigurationError(
            f"target labels mix types ({sorted({type(v).__name__ for v in union})}); cast them to one type"
        ) from None
    for p in session.parties:
        channel.send("coordinator", p.name, "label-union", dumps(classes), encrypted=False)
    session.transcript.extend(channel.run)
    for p in session.parties:  # each party's own label set, in the clear: one exact release each
        session.note_release("label_union", "the set of target labels the party holds", [p.name])
    return classes, per_party


def _check_target(parties: Sequence[Any], target: str, kind: str) -> None:
    """The target exists everywhere, has one kind, and is numeric for a regressor (declared schemas only)."""
    kinds = {}
    for p in parties:
        if target not in p.columns:
            raise MissingColumnError(
                f"party {p.name!r} has no target column {target!r} (it has: {', '.join(p.columns)})",
                party=p.name, column=target)
        kinds[p.name] = column_kind(p.schema[target])
    coarse = {"numeric" if k in ("numeric", "boolean") else k for k in kinds.values()}
    if len(coarse) > 1:
        odd = next(n for n, k in kinds.items() if k != next(iter(kinds.values())))
        raise DtypeConflictError(
            f"target {target!r} is {kinds[odd]} in party {odd!r} but "
            + ", ".join(f"{k} in {n!r}" for n, k in kinds.items() if n != odd) + "; cast it to one type everywhere",
            party=odd, column=target)
    if kind == "regressor" and coarse != {"numeric"}:
        first = next(iter(kinds))
        raise NonNumericColumnError(
            f"party {first!r}: target {target!r} is {kinds[first]}, not numeric; a regressor needs a numeric target "
            "(use a classifier for labels)", party=first, column=target)



def _deprecated_options(given: dict[str, Any], strategy: str | Strategy) -> dict[str, Any]:
    """The strategy options passed to ``fit`` itself, each with a ``FutureWarning`` naming its new spelling."""
    used = {k: v for k, v in given.items() if v is not None}
    for k in used:
        warnings.warn(f"fit({k}=...) is deprecated and will be removed in the next release; configure the "
                      f"strategy instead: {DEPRECATED_OPTIONS[k]}", FutureWarning, stacklevel=4)
    if used and isinstance(strategy, Strategy):
        raise ConfigurationError(f"{', '.join(used)} configure a strategy: set them on the strategy object")
    return used


@dataclass
class _Plan:
    """The checked request: parties, what each row holds, and how the final step is trained."""

    chosen: list[Any]
    spec: DataSpec
    kind: str
    feats: list[str]
    skipped: list[str]
    final: FinalStep
    dp: DPConfig | None


# -- the entry point ------------------------------------------------------------------------------------------
def fit(
    fed: FederationView,
    estimator: Any,
    *,
    target: str | None = None,
    features: Sequence[str] | None = None,
    parties: Sequence[str] | None = None,
    strategy: str | Strategy = "auto",
    rounds: int | None = None,
    secure: bool = True,
    test_size: float = 0.25,
    seed: int = 0,
    min_parties: int | None = None,
    failure: Callable[[str, int], Any] | None = None,
    party_timeout: float | None = None,
    classes: Sequence[Any] | None = None,
    metric: str = "auto",
    evaluate_every: int | None = None,
    party_metrics: bool = False,
    frac_bits: int | None = None,
    max_abs: float | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    local_epochs: int | None = None,
    proximal_mu: float | None = None,
    fraction_fit: float | None = None,
    server_learning_rate: float | None = None,
    dp: DPConfig | None = None,
    tol: float | None = None,
    protocol: str | None = None,
) -> FitRun:
    """Train a scikit-learn estimator or pipeline across the parties; rows never leave them.

    Parameters
    ----------
    fed : Federation
        The parties.
    estimator : estimator or Pipeline
        Unfitted; a pipeline is fitted step by step (see :data:`SUPPORTED`).
    target : str, optional
        Label column (required for classifiers and regressors).
    features : list of str, optional
        Input columns.  ``None``: every shared numeric column except the target
        and identifier-like columns (plus string columns when the pipeline
        starts with an encoder or a ``ColumnTransformer``).
    parties : list of str, optional
        Parties taking part (default: all).
    strategy : str or Strategy, default "auto"
        ``"newton"``, ``"lbfgs"``, ``"fedavg"``, ``"fedprox"``, ``"exact"``, or a
        :class:`~fedbench.learn.Strategy` instance.  ``"auto"`` picks exact
        protocols where they exist, Newton for GLMs (L-BFGS above 300
        parameters) and FedAvg for SGD and MLP models.
    rounds : int, optional
        Training rounds (a maximum for Newton and L-BFGS, which stop once
        converged); takes precedence over the strategy object's ``rounds``.
    secure : bool, default True
        Sum every local aggregate through secure aggregation (the protocol
        ``protocol``); ``False`` sums in the clear (simulations at scale only).
    test_size : float, default 0.25
        Fraction of each party's rows held out (split inside the party with
        ``seed``; stratified for classifiers) for evaluation and :meth:`FitRun.compare`.
    seed : int, default 0
        Seed of the held-out split, of ``fraction_fit`` client sampling (without
        ``dp``) and of initialisation.  DP-FedAvg's sampling never uses it:
        each party draws its participation from the OS CSPRNG.
    min_parties : int, optional
        Fewest parties a round may keep after dropouts (default 2 when secure).
    failure : callable, optional
        ``failure(party, round) -> bool | str`` injects dropouts (a truthy result
        or an exception drops the party from that round).
    party_timeout : float, optional
        Seconds a party's local step may take before it is dropped from the round.
    classes : list, optional
        Declare the class labels; otherwise each party sends the set of labels
        it holds to the coordinator (revealing which labels each party has).
    metric : str, default "auto"
        One of ``accuracy``, ``balanced_accuracy``, ``log_loss``, ``r2``, ``mse``,
        ``mae``, ``inertia``, ``log_likelihood`` (auto: the estimator's own score).
    evaluate_every : int, optional
        Score the model on held-out rows every that many rounds (default 1;
        with ``dp`` the default is 0, no evaluation, because exact scores of
        held-out rows are not differentially private).
    party_metrics : bool, default False
        Release each party's own training loss, training-row count and
        held-out metric to the analyst, in the clear, every round (per-party
        history rows and the callback's ``parties``).  This is an explicit
        exact release: each message is in the transcript (party -> analyst)
        and, when budgets are in force, in the privacy ledger as not
        differentially private.  By default these values stay inside the
        parties, and only federation-wide aggregates are released.
    frac_bits, max_abs : optional
        Override the fixed-point encoding of model-update sums.
    local_epochs, proximal_mu, fraction_fit, server_learning_rate, dp, tol
        Deprecated (a ``FutureWarning``; removed in the next release): they
        configure the strategy, so they belong to the strategy object, e.g.
        ``strategy=fb.learn.FedAvg(local_epochs=2, fraction_fit=0.5, rounds=20)``,
        ``strategy=fb.learn.FedProx(proximal_mu=0.1)``,
        ``strategy=fb.learn.FedAvg(dp=fb.DPConfig(...))`` (DP-FedAvg) or
        ``strategy=fb.learn.FedNewton(tol=1e-8)``.
    callback : callable, optional
        Called after every training round of the final step with a record
        ``{"round", "stage", "seconds", "nbytes", "loss", <metric>, "epsilon",
        "parties": {party: {...}}}`` (``parties`` is empty unless
        ``party_metrics=True``), e.g. a ``fedbench.widgets.TrainingDashboard``.

    Returns
    -------
    FitRun
        ``.model`` (a fitted scikit-learn estimator), ``.history``,
        ``.compare()``, ``.plot()``.

    Raises
    ------
    UnsupportedEstimatorError, MissingColumnError, NonNumericColumnError, NullValuesError,
    DtypeConflictError, TooFewPartiesError, DropoutError, ConfigurationError

    Notes
    -----
    What leaves a party, always as a secure sum (a plain sum with
    ``secure=False``): its training and held-out row counts and rows per class;
    for each step the statistics of its protocol (:mod:`~fedbench.learn.exact`,
    :mod:`~fedbench.learn.preprocess`, :mod:`~fedbench.learn.glm`,
    :mod:`~fedbench.learn.fedavg`); the additive statistics of held-out scores.
    Only the sums are decrypted, and every fitted step is broadcast to the
    parties.  ``FitRun.privacy`` lists every release; with budgets in force
    each exact one (row and class counts, fitted statistics, evaluation sums)
    is logged in the ledger as not differentially private, also in a DP run,
    where only the noisy model-update sums are covered by the DP-FedAvg charge.
    Sent in the clear: the set of labels each party holds (unless
    ``classes`` is declared) and the category sets of encoded columns (unless the
    encoder declares ``categories``).  Errors about a party's data are raised
    inside that party and name the party and column.

    A party whose training rows hold a single class triggers a
    :class:`~fedbench.errors.FederatedLearningWarning` and keeps taking part
    (its rows are evidence about that class); only its local-only baseline in
    :meth:`FitRun.compare` cannot be trained and shows a null score with the
    reason.
    """
    from sklearn.base import clone

    t_start = time.perf_counter()
    coord = fed.coordinator
    legacy = _deprecated_options({"local_epochs": local_epochs, "proximal_mu": proximal_mu,
                                  "fraction_fit": fraction_fit, "server_learning_rate": server_learning_rate,
                                  "dp": dp, "tol": tol}, strategy)
    check_supported(estimator, final=True, strategy=strategy)
    est = clone(estimator)
    plan = _plan(coord, est, legacy, target=target, features=features, parties=parties, strategy=strategy,
                 rounds=rounds, secure=secure, test_size=test_size, seed=seed, min_parties=min_parties,
                 metric=metric)
    if protocol is not None:
        from ..secagg import get_protocol

        get_protocol(protocol)  # an unknown name is refused before any party runs
    session = Session(coord, plan.chosen, secure=secure, failure=failure, party_timeout=party_timeout,
                      secagg=protocol,
                      covered=frozenset({"dp-fedavg"}) if plan.dp is not None else frozenset(),
                      party_metrics=bool(party_metrics))
    class_list, single = _classes(session, plan, classes, target)
    ctx = _setup(session, coord, plan, class_list, est, metric, test_size, seed, max_abs, frac_bits,
                          party_metrics)
    plan.final.options = {**legacy, "min_parties": min_parties, "callback": callback,
                          "evaluate_every": evaluate_every if evaluate_every is not None
                          else (0 if plan.dp is not None else 1)}
    step_infos: list[StepInfo] = []

    def on_step(name: str, step: Any, fitted: Any, last: bool, t0: float, rows0: int, sums0: int) -> None:
        step_infos.append(step_info(session, name, step, plan.final if last else None, t0, rows0, sums0))
        if not last:
            session.broadcast([p.name for p in plan.chosen], "fitted-step", fitted)

    fitted_steps = fit_steps(steps_of(est), session, ctx, final=plan.final, kind=plan.kind, on_step=on_step)
    model = fitted_steps[0][1] if not _is_pipeline(estimator) else _with_steps(est, fitted_steps)
    run = _fit_run(fed, session, plan, estimator, model, step_infos, class_list, single, ctx.metric,
                   test_size=test_size, seed=seed, secure=secure, elapsed=time.perf_counter() - t_start)
    coord.history.append(run)
    return run


def _plan(coord: Coordinator, est: Any, legacy: dict[str, Any], *, target: str | None,
          features: Sequence[str] | None, parties: Sequence[str] | None, strategy: str | Strategy,
          rounds: int | None, secure: bool, test_size: float, seed: int, min_parties: int | None,
          metric: str) -> _Plan:
    """Check the request before any data is read; charge a DP run up front."""
    final_est = steps_of(est)[-1][1]
    kind = _kind(final_est)
    supervised = kind in ("classifier", "regressor")
    if supervised and target is None:
        raise ConfigurationError(f"{type(final_est).__name__} learns from labels: pass target='<column>'")
    if not 0 <= test_size < 1:
        raise ConfigurationError(f"test_size must be in [0, 1), got {test_size!r}")
    if metric != "auto" and metric not in METRICS:
        raise ConfigurationError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    chosen = coord.select(parties)
    if not chosen:
        raise TooFewPartiesError("the federation has no party")
    if secure:
        check_enough_parties(chosen, what="secure training",
                             hint="over one party the 'aggregate' is its own data (pass secure=False to simulate)")
    if min_parties is not None and not 1 <= min_parties <= len(chosen):
        raise ConfigurationError(f"min_parties must be between 1 and the {len(chosen)} parties, got {min_parties!r}")
    dp = legacy.get("dp")
    if dp is None and isinstance(strategy, FedAvg):
        dp = strategy.dp
    names = [p.name for p in chosen]
    if dp is not None:
        dp = _with_budget_delta(coord, names, dp)
        if "dp" in legacy:
            legacy["dp"] = dp
        elif isinstance(strategy, FedAvg):
            strategy.dp = dp
        # Check-then-spend before any data is read: a refused run leaves no trace.
        planned = rounds if rounds is not None else (
            strategy.rounds if isinstance(strategy, Strategy) and strategy.rounds else STRATEGIES["fedavg"].rounds)
        _charge_dp(coord, names, dp, planned, final_est, strategy)
    if supervised:
        assert target is not None
        _check_target(chosen, target, kind)
    feats, numeric, skipped = resolve_features(chosen, target, features, accepts_strings=_accepts_strings(est),
                                               exclude=() if supervised or target is None else (target,))
    spec = DataSpec(tuple(feats), target if supervised else None, float(test_size), int(seed),
                    kind == "classifier", tuple(numeric))
    for p in chosen:  # each party validates its own rows; errors name the party and column
        p.compute(partial(check_local, spec=spec, allow_nulls=_allows_nulls(est)))
    return _Plan(chosen, spec, kind, list(feats), list(skipped), FinalStep(strategy, rounds), dp)


def _classes(session: Session, plan: _Plan, classes: Sequence[Any] | None,
             target: str | None) -> tuple[list[Any] | None, dict[str, Any]]:
    """The class labels (declared, or agreed over the parties) and the parties that hold a single class."""
    if plan.kind != "classifier":
        return None, {}
    single: dict[str, Any] = {}
    if classes is not None:
        class_list = sorted(np.asarray(classes).tolist())
    else:
        class_list, per_party = _agree_classes(session, plan.spec)
        single = {p: v[0] for p, v in per_party.items() if len(v) == 1}
        for p, c in single.items():
            warnings.warn(
                f"party {p!r} holds only class {c!r} in its training rows: it still contributes to federated "
                "training (its rows are legitimate evidence), but its local-only baseline cannot be trained",
                FederatedLearningWarning, stacklevel=4)
    if len(class_list) < 2:
        raise ConfigurationError(
            f"target {target!r} has a single class {class_list!r} across all parties; a classifier needs two"
        )
    return class_list, single


def _setup(session: Session, coord: Coordinator, plan: _Plan, class_list: list[Any] | None, est: Any,
           metric: str, test_size: float, seed: int, max_abs: float | None, frac_bits: int | None,
           party_metrics: bool) -> StageContext:
    """Securely sum the row and class counts; the first step's context."""
    t0 = time.perf_counter()
    b0 = session.transcript.nbytes
    exact_enc = learn_encoding(coord.encoding, None, max_abs)
    setup, _ = session.sum_local(plan.chosen, partial(local_setup, spec=plan.spec, classes=class_list),
                                 encoding=exact_enc, protocol="fit", description="training and held-out row counts"
                                 + (" and training rows per class" if class_list is not None else ""))
    n_train = float(setup["train"])
    session.record(stage="setup", round=0, party=GLOBAL, status="ok", n=n_train, seconds=time.perf_counter() - t0,
                   bytes=session.transcript.nbytes - b0,
                   note=f"{n_train:.0f} training and {float(setup['test']):.0f} held-out rows in total")
    first = plan.chosen[0]
    steps = steps_of(est)
    ctx = StageContext(
        name=steps[0][0],
        spec=plan.spec,
        prefix=Prefix(),
        kind="transformer",
        classes=None if class_list is None else np.asarray(class_list),
        class_counts=None if class_list is None else np.asarray(setup["class_counts"], dtype=float),
        n_train=n_train,
        n_features=len(plan.feats),
        feature_names=list(plan.feats),
        metric=default_metric(plan.kind, steps[-1][1]) if metric == "auto" else metric,
        seed=int(seed),
        encoding=coord.encoding_for(max_abs, frac_bits),
        exact_encoding=exact_enc,
        evaluate_part="test" if test_size > 0 else "train",
        party_metrics=party_metrics,
        schema={c: first.schema[c] for c in plan.feats},
        categories={},
    )
    return ctx


def _fit_run(fed: FederationView, session: Session, plan: _Plan, estimator: Any, model: Any, steps: list[StepInfo],
             class_list: list[Any] | None, single: dict[str, Any], metric: str | None, *, test_size: float,
             seed: int, secure: bool, elapsed: float) -> FitRun:
    from sklearn.base import clone

    strat: Any = plan.final.strategy_obj  # the final step's strategy, when it was trained by one
    dp = plan.dp
    return FitRun(
        model=model,
        history=session.history(),
        estimator=_describe(estimator),
        parties=[p.name for p in plan.chosen],
        features=plan.feats,
        skipped_columns=plan.skipped,
        target=plan.spec.target,
        metric=metric,
        steps=steps,
        secure=secure,
        key_bits=fed.coordinator.key_bits if secure else None,
        secagg=session.secagg or fed.coordinator.secagg,
        failures=list(session.failures),
        transcript=session.transcript,
        elapsed=elapsed,
        test_size=float(test_size),
        seed=int(seed),
        classes=class_list,
        single_class_parties=single,
        epsilon=getattr(strat, "epsilon", None) if dp is not None else None,
        delta=getattr(dp, "delta", None) if dp is not None else None,
        privacy=PrivacySummary(releases=list(session.releases),
                               dp=strat.privacy() if dp is not None and hasattr(strat, "privacy") else None),
        _fed=fed,
        _template=clone(estimator),
        _spec=plan.spec,
    )


def _with_steps(est: Any, fitted_steps: list[tuple[str, Any]]) -> Any:
    from sklearn.base import clone

    model = clone(est)
    model.steps = fitted_steps
    return model


def _is_pipeline(est: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(est, Pipeline)


def _describe(est: Any) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        return "Pipeline(" + " → ".join(type(s).__name__ if not isinstance(s, str) else s
                                        for _, s in est.steps if s is not None) + ")"
    return type(est).__name__


def _with_budget_delta(coord: Coordinator, names: list[str], dp: Any) -> Any:
    """A ``DPConfig`` without ``delta`` takes the smallest delta of the parties' budgets, when they name one."""
    if not isinstance(dp, DPConfig) or dp.delta is not None:
        return dp
    budget = coord.budget
    known = [n for n in names if budget is not None and n in getattr(budget, "parties", ())]
    deltas = [budget.limit(n)[1] for n in known]
    if not deltas or min(deltas) <= 0:
        return dp  # no budget delta to take: FedAvg asks for one explicitly
    return dataclasses.replace(dp, delta=float(min(deltas)), delta_source="the parties' budgets (smallest delta)")


def _charge_dp(coord: Coordinator, names: list[str], dp: Any, rounds: int, est: Any, strategy: Any) -> None:
    """Check-then-spend the DP-FedAvg run on the parties' budgets, when budgets are in force."""
    if not isinstance(dp, DPConfig):
        raise ConfigurationError(f"dp must be a fedbench.dp.DPConfig, got {type(dp).__name__}")
    name = type(est).__name__
    fedavg_ok = isinstance(strategy, FedAvg) or (isinstance(strategy, str) and (
        strategy in ("fedavg", "fedprox") or (strategy == "auto" and SUPPORTED.get(name, ("",))[0] == "fedavg")))
    if not fedavg_ok:
        raise ConfigurationError(
            f"dp= applies to FedAvg training; {name} is trained exactly or by Newton/L-BFGS here, whose releases "
            "are not noised. Use strategy=fb.learn.FedAvg(dp=...) (or an estimator trained by FedAvg) for DP-FedAvg"
        )
    budget = coord.budget
    if budget is not None and getattr(budget, "parties", None):
        # Refused (BudgetExceededError) before any data is read; the whole planned run is charged up front.
        # Amplification at q is sound because each party's participation is a secret CSPRNG coin (fedavg.py).
        budget.charge(names, dp.event(rounds), mechanism="dp-fedavg",
                      description=f"DP-FedAvg of {type(est).__name__}, {rounds} rounds, participation hidden",
                      parameters={"noise_multiplier": dp.noise_multiplier, "clip": dp.clip,
                                  "sample_rate": dp.sample_rate, "rounds": rounds,
                                  "participation": "hidden (local CSPRNG sampling)"})
