"""Federated scikit-learn: train across parties, compare with local-only and pooled models.

Entry points (also reachable as ``fed.fit(...)`` and ``fed.fit_vertical(...)``):

* :func:`fit`: horizontal federated training of an estimator or pipeline.
  Exact protocols from securely summed sufficient statistics
  (``LinearRegression``, ``Ridge``, ``GaussianNB``, ``PCA``, ``KMeans``,
  ``StandardScaler``, ``SimpleImputer``, encoders), federated Newton/L-BFGS
  for GLMs (``LogisticRegression``...), which reaches the pooled optimum, and
  FedAvg/FedProx (optionally DP-FedAvg) for SGD and MLP models.  Returns a
  :class:`FitRun` with the fitted scikit-learn model, history and comparison.
* :func:`fit_vertical`: vertical logistic regression after PSI alignment,
  with Paillier-encrypted residuals (Hardy et al. 2017); package
  :mod:`~fedbench.learn.vertical` (protocol, result, API).
* :data:`REGISTRY`: estimator type -> federated protocol (strategies, exact
  fitter, FedAvg adapter, vertical support); :mod:`~fedbench.learn.pipeline`
  fits a pipeline step by step.
* :func:`partition`, :func:`to_federation` and the partitioners: simulate
  federations from one dataset (defined in :mod:`fedbench.partition`).
* :class:`FedAvgClassifier`, :class:`FedAvgRegressor`: scikit-learn estimators
  whose ``fit(X, y, parties=...)`` trains federatedly over row groups (defined
  in :mod:`fedbench.estimators`).

The last two groups build a :class:`~fedbench.Federation`, which itself
imports this package to train; they are re-exported lazily here (first use
imports them) so that nothing in ``fedbench.learn`` imports Federation and the
dependency points one way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import fit
from .engine import PartyFailure, Release
from .fedavg import FedAvg, FedProx
from .glm import FedNewton
from .registry import REGISTRY, SUPPORTED, ModelProtocol
from .results import FitRun, PrivacySummary, StepInfo
from .strategy import FitInstruction, Strategy
from .vertical import VerticalRun, fit_vertical

if TYPE_CHECKING:
    from ..estimators import FedAvgClassifier, FedAvgRegressor
    from ..partition import (
        dirichlet_partition,
        iid_partition,
        natural_partition,
        partition,
        quantity_partition,
        to_federation,
    )

#: Names defined above Federation (they build one), re-exported on first use.
_LAZY = {
    "FedAvgClassifier": "estimators",
    "FedAvgRegressor": "estimators",
    "dirichlet_partition": "partition",
    "iid_partition": "partition",
    "natural_partition": "partition",
    "partition": "partition",
    "quantity_partition": "partition",
    "to_federation": "partition",
}

__all__ = [
    "REGISTRY",
    "SUPPORTED",
    "FedAvg",
    "FedAvgClassifier",
    "FedAvgRegressor",
    "FedNewton",
    "FedProx",
    "FitInstruction",
    "FitRun",
    "ModelProtocol",
    "PartyFailure",
    "PrivacySummary",
    "Release",
    "StepInfo",
    "Strategy",
    "VerticalRun",
    "dirichlet_partition",
    "fit",
    "fit_vertical",
    "iid_partition",
    "natural_partition",
    "partition",
    "quantity_partition",
    "to_federation",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedbench.learn' has no attribute {name!r}")
    # Plain imports (not importlib) so that the import-cycle test sees these edges too.
    if module == "estimators":
        from .. import estimators

        value = getattr(estimators, name)
    else:
        from .. import partition

        value = getattr(partition, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
