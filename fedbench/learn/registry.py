"""One registry from estimator type to its federated protocol.

Each supported scikit-learn estimator has one :class:`ModelProtocol` entry in
:data:`REGISTRY`: the strategies it can be trained with (the first is the
default), its exact fitter from securely summed statistics, its FedAvg
parameter adapter, whether it can take part in vertical training, and what
input it accepts as a pipeline's first step.  Each strategy name has one
:class:`StrategySpec` in :data:`STRATEGIES` (its default rounds and how it is
built).  Adding a model touches one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UnsupportedEstimatorError
from . import exact, preprocess
from .engine import Session
from .fedavg import FedAvg
from .glm import FedNewton
from .models import Adapter, LinearAdapter, LogisticAdapter, MLPAdapter
from .stages import StageContext
from .strategy import Strategy

__all__ = ["REGISTRY", "STRATEGIES", "SUPPORTED", "ModelProtocol", "StrategySpec", "entry_for", "supported_list",
           "vertical_entry"]

#: ``fitter(estimator, session, ctx, fit_step)``: fit one step exactly (``fit_step`` fits sub-steps).
Fitter = Callable[[Any, Session, StageContext, Callable[..., Any]], Any]


def _plain(fn: Callable[[Any, Session, StageContext], Any]) -> Fitter:
    """A fitter that needs no sub-step fitting."""
    return lambda est, session, ctx, fit_step: fn(est, session, ctx)


@dataclass(frozen=True)
class ModelProtocol:
    """How one estimator type is trained federatedly.

    Attributes
    ----------
    strategies : tuple of str
        Strategy names it accepts; the first is the default (``"exact"``: the fitter).
    fitter : callable, optional
        Exact protocol from securely summed statistics (``strategy="exact"``).
    adapter : type, optional
        FedAvg/FedProx parameter adapter (:mod:`~fedbench.learn.models`).
    vertical : {"model", "preprocess"}, optional
        Role in :func:`~fedbench.learn.fit_vertical` (``None``: not supported there).
    accepts_strings : bool
        As a pipeline's first step, takes string columns (encoders).
    allows_nulls : bool
        As a pipeline's first step, takes missing values (imputers, encoders, scalers).
    composite : bool
        Holds other steps (``Pipeline``), fitted step by step.
    """

    strategies: tuple[str, ...]
    fitter: Fitter | None = None
    adapter: type[Adapter] | None = None
    vertical: str | None = None
    accepts_strings: bool = False
    allows_nulls: bool = False
    composite: bool = False

    @property
    def exact(self) -> bool:
        """Fitted exactly from sufficient statistics by default (no strategy object applies)."""
        return self.strategies[0] == "exact"


_ITERATIVE = ("newton", "lbfgs")
_FEDAVG = ("fedavg", "fedprox")

#: Estimator class name -> its protocol.
REGISTRY: dict[str, ModelProtocol] = {
    "LogisticRegression": ModelProtocol((*_ITERATIVE, *_FEDAVG), adapter=LogisticAdapter, vertical="model"),
    "LinearRegression": ModelProtocol(("exact", *_ITERATIVE), fitter=_plain(exact.fit_linear)),
    "Ridge": ModelProtocol(("exact", *_ITERATIVE), fitter=_plain(exact.fit_linear)),
    "PoissonRegressor": ModelProtocol(_ITERATIVE),
    "GammaRegressor": ModelProtocol(_ITERATIVE),
    "SGDClassifier": ModelProtocol(_FEDAVG, adapter=LinearAdapter),
    "SGDRegressor": ModelProtocol(_FEDAVG, adapter=LinearAdapter),
    "Perceptron": ModelProtocol(_FEDAVG, adapter=LinearAdapter),
    "PassiveAggressiveClassifier": ModelProtocol(_FEDAVG, adapter=LinearAdapter),
    "PassiveAggressiveRegressor": ModelProtocol(_FEDAVG, adapter=LinearAdapter),
    "MLPClassifier": ModelProtocol(_FEDAVG, adapter=MLPAdapter),
    "MLPRegressor": ModelProtocol(_FEDAVG, adapter=MLPAdapter),
    "GaussianNB": ModelProtocol(("exact",), fitter=_plain(exact.fit_gaussian_nb)),
    "KMeans": ModelProtocol(("exact",), fitter=_plain(exact.fit_kmeans)),
    "PCA": ModelProtocol(("exact",), fitter=_plain(exact.fit_pca)),
    "StandardScaler": ModelProtocol(("exact",), fitter=_plain(preprocess.fit_scaler), vertical="preprocess",
                                    allows_nulls=True),
    "SimpleImputer": ModelProtocol(("exact",), fitter=_plain(preprocess.fit_imputer), vertical="preprocess",
                                   allows_nulls=True),
    "OneHotEncoder": ModelProtocol(("exact",), fitter=_plain(preprocess.fit_encoder), accepts_strings=True,
                                   allows_nulls=True),
    "OrdinalEncoder": ModelProtocol(("exact",), fitter=_plain(preprocess.fit_encoder), accepts_strings=True,
                                    allows_nulls=True),
    "FunctionTransformer": ModelProtocol(("exact",), fitter=_plain(preprocess.fit_stateless)),
    "ColumnTransformer": ModelProtocol(("exact",), fitter=preprocess.fit_column_transformer, accepts_strings=True,
                                       allows_nulls=True),
    "Pipeline": ModelProtocol(("exact",), composite=True),
}


@dataclass(frozen=True)
class StrategySpec:
    """A named training strategy: its default rounds and how it is built for an estimator.

    ``build(estimator, options)`` returns the :class:`~fedbench.learn.Strategy`;
    ``options`` are the (deprecated) ``fit`` keywords that configure it.
    """

    rounds: int
    build: Callable[[Any, Mapping[str, Any]], Strategy] | None = None


def _newton(method: str) -> Callable[[Any, Mapping[str, Any]], Strategy]:
    def build(est: Any, options: Mapping[str, Any]) -> Strategy:
        return FedNewton(est, method=method, tol=options.get("tol"), min_parties=options.get("min_parties"),
                         evaluate_every=options.get("evaluate_every", 1))

    return build


def _fedavg(default_mu: float) -> Callable[[Any, Mapping[str, Any]], Strategy]:
    def build(est: Any, options: Mapping[str, Any]) -> Strategy:
        return FedAvg(est, local_epochs=options.get("local_epochs", 1),
                      proximal_mu=options.get("proximal_mu") or default_mu,
                      fraction_fit=options.get("fraction_fit", 1.0), min_parties=options.get("min_parties"),
                      server_learning_rate=options.get("server_learning_rate", 1.0), dp=options.get("dp"),
                      evaluate_every=options.get("evaluate_every", 1))

    return build


#: Strategy name -> default rounds (Newton and L-BFGS stop earlier once converged) and builder.
STRATEGIES: dict[str, StrategySpec] = {
    "exact": StrategySpec(rounds=1),
    "newton": StrategySpec(rounds=25, build=_newton("newton")),
    "lbfgs": StrategySpec(rounds=200, build=_newton("lbfgs")),
    "fedavg": StrategySpec(rounds=20, build=_fedavg(0.0)),
    "fedprox": StrategySpec(rounds=20, build=_fedavg(0.1)),
}

#: Estimators with a federated protocol, and the strategies each accepts (the first is the default).
SUPPORTED: dict[str, tuple[str, ...]] = {name: e.strategies for name, e in REGISTRY.items()}


def supported_list() -> str:
    """The supported estimators, for error messages."""
    return ", ".join(f"{k} ({'/'.join(v)})" for k, v in SUPPORTED.items())


def unsupported(est: Any, why: str = "") -> UnsupportedEstimatorError:
    """The error for an estimator without a federated protocol."""
    return UnsupportedEstimatorError(
        f"{type(est).__name__} has no federated training protocol{': ' + why if why else ''}. "
        f"Supported (strategies): {supported_list()}"
    )


def entry_for(est: Any) -> ModelProtocol:
    """The protocol of ``est`` or :class:`UnsupportedEstimatorError`."""
    entry = REGISTRY.get(type(est).__name__)
    if entry is None:
        raise unsupported(est)
    return entry


def vertical_entry(est: Any) -> ModelProtocol | None:
    """The protocol of ``est`` if it can take part in vertical training, else ``None``."""
    entry = REGISTRY.get(type(est).__name__)
    return entry if entry is not None and entry.vertical is not None else None


def default_rounds(strategy: Strategy) -> int:
    """``strategy.rounds`` or its name's default (20 for a custom strategy)."""
    if strategy.rounds is not None:
        return strategy.rounds
    spec = STRATEGIES.get(strategy.name)
    return spec.rounds if spec is not None else 20
