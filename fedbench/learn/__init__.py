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
* :mod:`~fedbench.learn.partition`: simulate federations from one dataset.
* :class:`FedAvgClassifier`, :class:`FedAvgRegressor`: scikit-learn estimators
  whose ``fit(X, y, parties=...)`` trains federatedly over row groups.
"""

from __future__ import annotations

from .api import fit
from .engine import PartyFailure, Release
from .estimators import FedAvgClassifier, FedAvgRegressor
from .fedavg import FedAvg, FedProx
from .glm import FedNewton
from .partition import (
    dirichlet_partition,
    iid_partition,
    natural_partition,
    partition,
    quantity_partition,
    to_federation,
)
from .registry import REGISTRY, SUPPORTED, ModelProtocol
from .results import FitRun, PrivacySummary, StepInfo
from .strategy import FitInstruction, Strategy
from .vertical import VerticalRun, fit_vertical

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
