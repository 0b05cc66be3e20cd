"""``fed.fit``: train a scikit-learn estimator or pipeline across the parties of a federation."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError, FederatedLearningWarning, TooFewPartiesError, UnsupportedEstimatorError
from ..wire import dumps, loads
from .data import DataSpec, check_local, local_xy, resolve_features
from .engine import GLOBAL, Session, learn_encoding
from .stages import METRICS, Prefix, StageContext, default_metric

__all__ = ["SUPPORTED", "fit"]

#: Estimators with a federated protocol, and the strategies each accepts (the first is the default).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "LogisticRegression": ("newton", "lbfgs", "fedavg", "fedprox"),
    "LinearRegression": ("exact", "newton", "lbfgs"),
    "Ridge": ("exact", "newton", "lbfgs"),
    "PoissonRegressor": ("newton", "lbfgs"),
    "GammaRegressor": ("newton", "lbfgs"),
    "SGDClassifier": ("fedavg", "fedprox"),
    "SGDRegressor": ("fedavg", "fedprox"),
    "Perceptron": ("fedavg", "fedprox"),
    "PassiveAggressiveClassifier": ("fedavg", "fedprox"),
    "PassiveAggressiveRegressor": ("fedavg", "fedprox"),
    "MLPClassifier": ("fedavg", "fedprox"),
    "MLPRegressor": ("fedavg", "fedprox"),
    "GaussianNB": ("exact",),
    "KMeans": ("exact",),
    "PCA": ("exact",),
    "StandardScaler": ("exact",),
    "SimpleImputer": ("exact",),
    "OneHotEncoder": ("exact",),
    "OrdinalEncoder": ("exact",),
    "FunctionTransformer": ("exact",),
    "ColumnTransformer": ("exact",),
    "Pipeline": ("exact",),
}

#: Default number of rounds per strategy (Newton and L-BFGS stop earlier once converged).
DEFAULT_ROUNDS = {"newton": 25, "lbfgs": 200, "fedavg": 20, "fedprox": 20}


def supported_list() -> str:
    """The supported estimators, for error messages."""
    return ", ".join(f"{k} ({'/'.join(v)})" for k, v in SUPPORTED.items())


def _unsupported(est: Any, why: str = "") -> UnsupportedEstimatorError:
    return UnsupportedEstimatorError(
        f"{type(est).__name__} has no federated training protocol{': ' + why if why else ''}. "
        f"Supported (strategies): {supported_list()}"
    )


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


def _steps(est: Any) -> list[tuple[str, Any]]:
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        if not est.steps:
            raise ConfigurationError("the pipeline has no steps")
        return list(est.steps)
    return [("model", est)]


def _check_supported(est: Any, *, final: bool, strategy: Any) -> None:
    """Raise :class:`UnsupportedEstimatorError` for any step without a protocol (before any data is read)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from .strategy import Strategy

    if est is None or (isinstance(est, str) and est in ("passthrough", "drop")):
        return
    if not hasattr(est, "fit") or not hasattr(est, "get_params"):
        raise UnsupportedEstimatorError(
            f"expected a scikit-learn estimator, got {type(est).__name__}. Supported: {supported_list()}"
        )
    name = type(est).__name__
    if isinstance(est, Pipeline):
        for i, (_, s) in enumerate(est.steps):
            _check_supported(s, final=final and i == len(est.steps) - 1, strategy=strategy)
        return
    if isinstance(est, ColumnTransformer):
        for _, t, _ in est.transformers:
            _check_supported(t, final=False, strategy=None)
        _check_supported(est.remainder, final=False, strategy=None)
        return
    if name not in SUPPORTED:
        raise _unsupported(est)
    if final and isinstance(strategy, str) and strategy != "auto" and strategy not in SUPPORTED[name]:
        raise UnsupportedEstimatorError(
            f"{name} cannot be trained with strategy={strategy!r}; it supports {', '.join(SUPPORTED[name])}"
        )
    if final and isinstance(strategy, Strategy) and SUPPORTED[name][0] == "exact":
        raise UnsupportedEstimatorError(f"{name} is fitted exactly from sufficient statistics, not by a strategy")


def _accepts_strings(est: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    first = _steps(est)[0][1]
    return isinstance(first, ColumnTransformer | OneHotEncoder | OrdinalEncoder)


def _allows_nulls(est: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    first = _steps(est)[0][1]
    # Imputers fill them; encoders treat them as a category; scalers skip them (and a later step checks again).
    return isinstance(first, SimpleImputer | ColumnTransformer | OneHotEncoder | OrdinalEncoder | StandardScaler)


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
        cls = np.asarray(classes)
        out["class_counts"] = np.bincount(np.searchsorted(cls, y_train), minlength=len(cls)).astype(float)
    return out


def _agree_classes(session: Session, spec: DataSpec) -> tuple[list[Any], dict[str, list[Any]]]:
    channel = session.fed._channel("label_union")
    per_party: dict[str, list[Any]] = {}
    fn = partial(local_labels, spec=spec)
    for p, payload in zip(session.parties, session.fed.backend.compute(session.parties, fn), strict=True):
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
    from ..errors import DtypeConflictError, MissingColumnError, NonNumericColumnError
    from ..party import column_kind

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


def _output_width(fitted: Any, ctx: StageContext) -> int:
    try:
        return len(fitted.get_feature_names_out())
    except Exception:  # not every transformer names its outputs; transform a public zero row instead
        from .preprocess import _surrogate

        out = fitted.transform(_surrogate(ctx))
        return int(np.shape(out)[1])


# -- one step -------------------------------------------------------------------------------------------
def fit_step(est: Any, session: Session, ctx: StageContext, *, strategy: Any = "auto", rounds: int | None = None,
             options: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> Any:
    """Fit one step (a transformer, a nested pipeline, a column transformer or the final estimator)."""
    from sklearn.base import clone
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

    from . import exact, preprocess
    from .fedavg import FedAvg
    from .glm import FedNewton
    from .strategy import Strategy, run_rounds

    options = options or {}
    info = info if info is not None else {}
    if isinstance(est, Pipeline):
        fitted = []
        prefix = ctx.prefix
        sub = ctx
        for i, (name, step) in enumerate(est.steps):
            if step is None or step == "passthrough":
                fitted.append((name, step))
                continue
            sub = replace(sub, name=f"{ctx.name}/{name}", prefix=prefix)
            f = fit_step(step, session, sub)
            fitted.append((name, f))
            if i < len(est.steps) - 1:
                prefix = prefix.then(f)
                sub = replace(sub, feature_names=None, n_features=_output_width(f, sub))
        model = clone(est)
        model.steps = fitted
        return model
    if isinstance(est, ColumnTransformer):
        return preprocess.fit_column_transformer(est, session, ctx, fit_step)
    if isinstance(est, SimpleImputer):
        return preprocess.fit_imputer(est, session, ctx)
    if isinstance(est, StandardScaler):
        return preprocess.fit_scaler(est, session, ctx)
    if isinstance(est, OneHotEncoder | OrdinalEncoder):
        return preprocess.fit_encoder(est, session, ctx)
    if isinstance(est, FunctionTransformer):
        return preprocess.fit_stateless(est, session, ctx)
    if isinstance(est, PCA):
        return exact.fit_pca(est, session, ctx)
    if isinstance(est, GaussianNB):
        return exact.fit_gaussian_nb(est, session, ctx)
    if isinstance(est, KMeans):
        return exact.fit_kmeans(est, session, ctx)
    name = type(est).__name__
    if name not in SUPPORTED:
        raise _unsupported(est)
    if isinstance(strategy, Strategy):
        strat = strategy
        if getattr(strat, "estimator", None) is None:
            strat.estimator = est
    else:
        choice = SUPPORTED[name][0] if strategy == "auto" else strategy
        if choice not in SUPPORTED[name]:
            raise UnsupportedEstimatorError(
                f"{name} cannot be trained with strategy={strategy!r}; it supports {', '.join(SUPPORTED[name])}"
            )
        if choice == "newton" and strategy == "auto" and _n_params(est, ctx) > 300:
            choice = "lbfgs"  # a Hessian of more than 300^2 entries costs more than L-BFGS's extra rounds
        if choice == "exact" and isinstance(est, LinearRegression | Ridge):
            info["strategy"] = "exact (sufficient statistics)"
            return exact.fit_linear(est, session, ctx, refine=options.get("refine", 1))
        if choice in ("newton", "lbfgs"):
            strat = FedNewton(est, method=choice, tol=options.get("tol"), min_parties=options.get("min_parties"),
                              evaluate_every=options.get("evaluate_every", 1))
        else:
            mu = options.get("proximal_mu", 0.0)
            if choice == "fedprox" and not mu:
                mu = 0.1
            strat = FedAvg(est, local_epochs=options.get("local_epochs", 1), proximal_mu=mu,
                           fraction_fit=options.get("fraction_fit", 1.0), min_parties=options.get("min_parties"),
                           server_learning_rate=options.get("server_learning_rate", 1.0), dp=options.get("dp"),
                           evaluate_every=options.get("evaluate_every", 1))
    if options.get("dp") is not None and not isinstance(strat, FedAvg):
        raise ConfigurationError(
            f"dp= applies to FedAvg training; {name} is trained with {strat.name}, whose exact releases are not "
            "noised. Use strategy='fedavg' (or an estimator trained by FedAvg) for DP-FedAvg"
        )
    n_rounds = rounds if rounds is not None else DEFAULT_ROUNDS.get(strat.name, 20)
    if not isinstance(n_rounds, int | np.integer) or n_rounds < 1:
        raise ConfigurationError(f"rounds must be a positive integer, got {rounds!r}")
    model = run_rounds(session, strat, ctx, int(n_rounds), on_round=options.get("callback"))
    info["strategy"] = strat.describe()
    info["strategy_obj"] = strat
    if isinstance(strat, FedNewton) and not strat.converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"federated {strat.method} did not converge in {n_rounds} rounds; raise rounds=",
                      ConvergenceWarning, stacklevel=3)
    return model


def _n_params(est: Any, ctx: StageContext) -> int:
    k = len(ctx.classes) if ctx.classes is not None and len(ctx.classes) > 2 else 1
    return k * (ctx.n_features + 1)


# -- the entry point ------------------------------------------------------------------------------------------
def fit(
    fed: Any,
    estimator: Any,
    *,
    target: str | None = None,
    features: Sequence[str] | None = None,
    parties: Sequence[str] | None = None,
    strategy: str | Any = "auto",
    rounds: int | None = None,
    secure: bool = True,
    test_size: float = 0.25,
    seed: int = 0,
    local_epochs: int = 1,
    proximal_mu: float = 0.0,
    fraction_fit: float = 1.0,
    min_parties: int | None = None,
    dp: Any = None,
    failure: Callable[[str, int], Any] | None = None,
    party_timeout: float | None = None,
    classes: Sequence[Any] | None = None,
    metric: str = "auto",
    evaluate_every: int | None = None,
    tol: float | None = None,
    server_learning_rate: float = 1.0,
    party_metrics: bool = False,
    frac_bits: int | None = None,
    max_abs: float | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
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
        Training rounds (a maximum for Newton and L-BFGS, which stop once converged).
    secure : bool, default True
        Sum every local aggregate through Paillier secure aggregation;
        ``False`` sums in the clear (simulations at scale only).
    test_size : float, default 0.25
        Fraction of each party's rows held out (split inside the party with
        ``seed``; stratified for classifiers) for evaluation and :meth:`FitRun.compare`.
    seed : int, default 0
        Seed of the held-out split, of ``fraction_fit`` client sampling (without
        ``dp``) and of initialisation.  DP-FedAvg's sampling never uses it:
        each party draws its participation from the OS CSPRNG.
    local_epochs, proximal_mu, fraction_fit, server_learning_rate
        FedAvg/FedProx settings (see :class:`~fedbench.learn.FedAvg`).
    min_parties : int, optional
        Fewest parties a round may keep after dropouts (default 2 when secure).
    dp : fedbench.dp.DPConfig, optional
        DP-FedAvg (FedAvg-trained models only).
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
    tol : float, optional
        Convergence tolerance of Newton/L-BFGS.
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

    from .results import FitRun, PrivacySummary, StepInfo

    t_start = time.perf_counter()
    _check_supported(estimator, final=True, strategy=strategy)
    est = clone(estimator)
    steps = _steps(est)
    final = steps[-1][1]
    kind = _kind(final)
    supervised = kind in ("classifier", "regressor")
    if supervised and target is None:
        raise ConfigurationError(f"{type(final).__name__} learns from labels: pass target='<column>'")
    if not 0 <= test_size < 1:
        raise ConfigurationError(f"test_size must be in [0, 1), got {test_size!r}")
    if metric != "auto" and metric not in METRICS:
        raise ConfigurationError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    chosen = fed._select(parties)
    if not chosen:
        raise TooFewPartiesError("the federation has no party")
    if secure and len(chosen) < 2:
        raise TooFewPartiesError(
            f"secure training needs at least 2 parties, got {len(chosen)}: over one party the 'aggregate' is its "
            "own data (pass secure=False to simulate)"
        )
    if min_parties is not None and not 1 <= min_parties <= len(chosen):
        raise ConfigurationError(f"min_parties must be between 1 and the {len(chosen)} parties, got {min_parties!r}")
    if dp is not None:
        dp = _with_budget_delta(fed, [p.name for p in chosen], dp)
        # Check-then-spend before any data is read: a refused run leaves no trace.
        _charge_dp(fed, [p.name for p in chosen], dp, rounds or DEFAULT_ROUNDS["fedavg"], final, strategy)
    if supervised:
        _check_target(chosen, target, kind)
    feats, numeric, skipped = resolve_features(chosen, target, features, accepts_strings=_accepts_strings(est),
                                               exclude=() if supervised or target is None else (target,))
    spec = DataSpec(tuple(feats), target if supervised else None, float(test_size), int(seed),
                    kind == "classifier", tuple(numeric))
    for p in chosen:  # each party validates its own rows; errors name the party and column
        p.compute(partial(check_local, spec=spec, allow_nulls=_allows_nulls(est)))
    session = Session(fed, chosen, secure=secure, failure=failure, party_timeout=party_timeout,
                      covered=frozenset({"dp-fedavg"}) if dp is not None else frozenset(),
                      party_metrics=bool(party_metrics))
    class_list: list[Any] | None = None
    single: dict[str, Any] = {}
    if kind == "classifier":
        if classes is not None:
            class_list = sorted(np.asarray(classes).tolist())
        else:
            class_list, per_party = _agree_classes(session, spec)
            single = {p: v[0] for p, v in per_party.items() if len(v) == 1}
            for p, c in single.items():
                warnings.warn(
                    f"party {p!r} holds only class {c!r} in its training rows: it still contributes to federated "
                    "training (its rows are legitimate evidence), but its local-only baseline cannot be trained",
                    FederatedLearningWarning, stacklevel=3)
        if len(class_list) < 2:
            raise ConfigurationError(
                f"target {target!r} has a single class {class_list!r} across all parties; a classifier needs two"
            )
    t0 = time.perf_counter()
    b0 = session.transcript.nbytes
    base_enc = fed._encoding(max_abs, frac_bits) if hasattr(fed, "_encoding") else fed.encoding
    exact_enc = learn_encoding(fed.encoding, None, max_abs)
    setup, _ = session.sum_local(chosen, partial(local_setup, spec=spec, classes=class_list), encoding=exact_enc,
                                 protocol="fit", description="training and held-out row counts"
                                 + (" and training rows per class" if class_list is not None else ""))
    n_train = float(setup["train"])
    session.record(stage="setup", round=0, party=GLOBAL, status="ok", n=n_train, seconds=time.perf_counter() - t0,
                   bytes=session.transcript.nbytes - b0,
                   note=f"{n_train:.0f} training and {float(setup['test']):.0f} held-out rows in total")
    first = chosen[0]
    ctx = StageContext(
        name=steps[0][0],
        spec=spec,
        prefix=Prefix(),
        kind="transformer",
        classes=None if class_list is None else np.asarray(class_list),
        class_counts=None if class_list is None else np.asarray(setup["class_counts"], dtype=float),
        n_train=n_train,
        n_features=len(feats),
        feature_names=list(feats),
        metric=default_metric(kind, final) if metric == "auto" else metric,
        seed=int(seed),
        encoding=base_enc,
        exact_encoding=exact_enc,
        evaluate_part="test" if test_size > 0 else "train",
        party_metrics=party_metrics,
        schema={c: first.schema[c] for c in feats},
        categories={},
    )
    if evaluate_every is None:
        evaluate_every = 0 if dp is not None else 1
    options = {"local_epochs": local_epochs, "proximal_mu": proximal_mu, "fraction_fit": fraction_fit,
               "min_parties": min_parties, "dp": dp, "evaluate_every": evaluate_every, "tol": tol,
               "server_learning_rate": server_learning_rate, "callback": callback}
    fitted_steps: list[tuple[str, Any]] = []
    step_infos: list[StepInfo] = []
    prefix = Prefix()
    for i, (name, step) in enumerate(steps):
        if step is None or step == "passthrough":
            fitted_steps.append((name, step))
            continue
        last = i == len(steps) - 1
        ctx = replace(ctx, name=name, prefix=prefix, kind=kind if last else "transformer")
        t_step, rows0, sums0 = time.perf_counter(), len(session.rows), session.secure_sums
        info: dict[str, Any] = {}
        fitted = fit_step(step, session, ctx, strategy=strategy if last else "auto", rounds=rounds if last else None,
                          options=options if last else {}, info=info)
        step_rows = [r for r in session.rows[rows0:] if r["party"] == GLOBAL]
        step_infos.append(StepInfo(
            name=name,
            estimator=type(step).__name__,
            protocol=info.get("strategy", "exact (sufficient statistics)"),
            rounds=len(step_rows),
            converged=getattr(info["strategy_obj"], "converged", None) if info.get("strategy_obj") is not None
            and info["strategy_obj"].exact else None,
            seconds=time.perf_counter() - t_step,
            secure_sums=session.secure_sums - sums0,
        ))
        fitted_steps.append((name, fitted))
        if not last:
            session.broadcast([p.name for p in chosen], "fitted-step", fitted)
            prefix = prefix.then(fitted)
            ctx = replace(ctx, feature_names=None, n_features=_output_width(fitted, ctx))
    if not _is_pipeline(estimator):
        model = fitted_steps[0][1]
    else:
        model = clone(est)
        model.steps = fitted_steps
    strat: Any = info.get("strategy_obj")  # the final step's strategy, when it was trained by one
    run = FitRun(
        model=model,
        history=session.history(),
        estimator=_describe(estimator),
        parties=[p.name for p in chosen],
        features=list(feats),
        skipped_columns=skipped,
        target=spec.target,
        metric=ctx.metric,
        steps=step_infos,
        secure=secure,
        key_bits=fed.key_bits if secure else None,
        failures=list(session.failures),
        transcript=session.transcript,
        elapsed=time.perf_counter() - t_start,
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
        _spec=spec,
    )
    fed.history.append(run)
    return run


def _is_pipeline(est: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(est, Pipeline)


def _describe(est: Any) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        return "Pipeline(" + " → ".join(type(s).__name__ if not isinstance(s, str) else s
                                        for _, s in est.steps if s is not None) + ")"
    return type(est).__name__


def _with_budget_delta(fed: Any, names: list[str], dp: Any) -> Any:
    """A ``DPConfig`` without ``delta`` takes the smallest delta of the parties' budgets, when they name one."""
    import dataclasses

    from ..dp import DPConfig

    if not isinstance(dp, DPConfig) or dp.delta is not None:
        return dp
    budget = getattr(fed, "budget", None)
    known = [n for n in names if budget is not None and n in getattr(budget, "parties", ())]
    deltas = [budget.limit(n)[1] for n in known]
    if not deltas or min(deltas) <= 0:
        return dp  # no budget delta to take: FedAvg asks for one explicitly
    return dataclasses.replace(dp, delta=float(min(deltas)), delta_source="the parties' budgets (smallest delta)")


def _charge_dp(fed: Any, names: list[str], dp: Any, rounds: int, est: Any, strategy: Any) -> None:
    """Check-then-spend the DP-FedAvg run on the parties' budgets, when budgets are in force."""
    from ..dp import DPConfig
    from .fedavg import FedAvg

    if not isinstance(dp, DPConfig):
        raise ConfigurationError(f"dp must be a fedbench.dp.DPConfig, got {type(dp).__name__}")
    name = type(est).__name__
    fedavg_ok = isinstance(strategy, FedAvg) or (isinstance(strategy, str) and (
        strategy in ("fedavg", "fedprox") or (strategy == "auto" and SUPPORTED.get(name, ("",))[0] == "fedavg")))
    if not fedavg_ok:
        raise ConfigurationError(
            f"dp= applies to FedAvg training; {name} is trained exactly or by Newton/L-BFGS here, whose releases "
            "are not noised. Use strategy='fedavg' (or an estimator trained by FedAvg) for DP-FedAvg"
        )
    budget = getattr(fed, "budget", None)
    if budget is not None and getattr(budget, "parties", ()):
        # Refused (BudgetExceededError) before any data is read; the whole planned run is charged up front.
        # Amplification at q is sound because each party's participation is a secret CSPRNG coin (fedavg.py).
        budget.charge(names, dp.event(rounds), mechanism="dp-fedavg",
                      description=f"DP-FedAvg of {type(est).__name__}, {rounds} rounds, participation hidden",
                      parameters={"noise_multiplier": dp.noise_multiplier, "clip": dp.clip,
                                  "sample_rate": dp.sample_rate, "rounds": rounds,
                                  "participation": "hidden (local CSPRNG sampling)"})
