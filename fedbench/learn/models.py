"""Parameter adapters: scikit-learn estimators as flat parameter vectors, and their local training.

FedAvg averages parameter vectors; each adapter maps one family of estimators
to such a vector and back, builds a correctly fitted structure without any
party's data (:func:`surrogate_fit`), and trains a copy on one party's rows
(the local step, run inside the party).

Surrogate fits
--------------
A fitted scikit-learn estimator carries private bookkeeping (label binarizers,
output activations, dtypes...) besides its documented parameters.  Rather than
re-create it by hand, fedbench fits the estimator once on a tiny *public*
all-zero input with one row per class (no party's data), then overwrites every
learned parameter with the federated one.  The result is an ordinary fitted
estimator: ``predict``, ``score``, pickling and pipelines work.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ..errors import UnsupportedEstimatorError
from .data import as_matrix
from .glm import glm_arrays, glm_loss_grad_hess, glm_problem
from .stages import StageContext, quiet, surrogate_fit

__all__ = ["Adapter", "make_adapter", "quiet", "surrogate_fit", "training_loss"]


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


class Adapter:
    """Flat-vector view and local training of one estimator family."""

    @classmethod
    def check(cls, est: Any) -> None:
        """Refuse settings of ``est`` that FedAvg cannot aggregate (before any data is read)."""

    def __init__(self, template: Any, ctx: StageContext) -> None:
        self.template = template
        self.ctx = ctx

    def init(self, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        """A fitted structure and the initial parameter vector."""
        from sklearn.base import clone

        model = surrogate_fit(clone(self.template), self.ctx)
        self._shapes(model)
        vec = self.initial(model, rng)
        self.set(model, vec)
        return model, vec

    def _shapes(self, model: Any) -> None:
        self.shapes = [np.shape(a) for a in self.arrays(model)]

    def arrays(self, model: Any) -> list[np.ndarray]:
        """The learned arrays, in vector order."""
        raise NotImplementedError

    def initial(self, model: Any, rng: np.random.Generator) -> np.ndarray:
        """Initial parameters (zeros unless overridden)."""
        return np.zeros(sum(int(np.prod(s)) for s in self.shapes))

    def get(self, model: Any) -> np.ndarray:
        """Parameters as one float64 vector."""
        return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in self.arrays(model)])

    def set(self, model: Any, vec: np.ndarray) -> None:
        """Write a vector into the model's arrays (in place)."""
        raise NotImplementedError

    def split(self, vec: np.ndarray) -> list[np.ndarray]:
        """Cut a vector into arrays of the model's shapes."""
        out, i = [], 0
        for s in self.shapes:
            k = int(np.prod(s))
            out.append(vec[i : i + k].reshape(s).copy())
            i += k
        return out

    def train(self, model: Any, x: Any, y: Any, *, epochs: int, mu: float, anchor: np.ndarray, seed: int,
              n_total: float) -> None:
        """Train ``model`` in place on one party's rows."""
        raise NotImplementedError

    def loss(self, model: Any, x: Any, y: Any, kind: str) -> float | None:
        """The party's training loss after its local step (log-loss, 0-1 error or MSE)."""
        return training_loss(model, x, y, kind)

    def for_round(self, model: Any, vec: np.ndarray) -> Any:
        """The global model to broadcast for parameters ``vec``."""
        m = copy.deepcopy(model)
        self.set(m, vec)
        return m


def _prox(vec: np.ndarray, anchor: np.ndarray, mu: float) -> np.ndarray:
    # Proximal step of (mu / 2) ||w - anchor||^2 with unit step size.
    return (vec + mu * anchor) / (1.0 + mu)


class LinearAdapter(Adapter):
    """``SGDClassifier``, ``SGDRegressor``, ``Perceptron``, ``PassiveAggressive*``: ``coef_`` and ``intercept_``.

    Local step: ``local_epochs`` calls of the estimator's own ``partial_fit``
    on the party's training rows, continuing its learning-rate schedule from
    the global step count ``t_``.  FedProx applies the proximal step
    ``w <- (w + mu w_global) / (1 + mu)`` after each local epoch.
    """

    @classmethod
    def check(cls, est: Any) -> None:
        """An averaged SGD keeps a second weight vector that FedAvg would not aggregate."""
        if getattr(est, "average", False):
            raise UnsupportedEstimatorError(
                f"{type(est).__name__}(average=...) keeps a second, averaged copy of the weights that FedAvg "
                "would not aggregate; use average=False"
            )

    def arrays(self, model: Any) -> list[np.ndarray]:
        return [model.coef_, model.intercept_]

    def set(self, model: Any, vec: np.ndarray) -> None:
        coef, intercept = self.split(vec)
        model.coef_ = coef
        model.intercept_ = intercept
        if hasattr(model, "_standard_coef"):
            model._standard_coef = coef
            model._standard_intercept = intercept

    def train(self, model: Any, x: Any, y: Any, *, epochs: int, mu: float, anchor: np.ndarray, seed: int,
              n_total: float) -> None:
        if hasattr(model, "random_state"):
            model.random_state = seed  # direct: set_params inspects signatures, slow in a 100-party loop
        for _ in range(epochs):
            quiet(model.partial_fit, x, y)
            if mu > 0:
                self.set(model, _prox(self.get(model), anchor, mu))


    def loss(self, model: Any, x: Any, y: Any, kind: str) -> float | None:
        """Training loss from the linear scores, without scikit-learn's input validation."""
        if len(y) == 0:
            return None
        z = np.asarray(x, dtype=float) @ np.atleast_2d(model.coef_).T + model.intercept_
        if kind != "classifier":
            return float(np.mean((np.asarray(y, dtype=float) - z[:, 0]) ** 2))
        classes = np.asarray(model.classes_)
        if z.shape[1] == 1:
            pos = y == classes[1]
            if getattr(model, "loss", None) == "log_loss":
                s = np.where(pos, z[:, 0], -z[:, 0])
                return float(np.mean(np.logaddexp(0.0, -s)))
            return float(np.mean((z[:, 0] > 0) != pos))
        return float(np.mean(classes[np.argmax(z, axis=1)] != y))


class MLPAdapter(Adapter):
    """``MLPClassifier``/``MLPRegressor``: every layer's ``coefs_`` and ``intercepts_``.

    Initial weights follow scikit-learn's Glorot-uniform rule from the run's
    seed.  Local step: ``local_epochs`` calls of ``partial_fit`` with a fresh
    optimiser each round (optimiser state is not averaged).
    """

    @classmethod
    def check(cls, est: Any) -> None:
        """L-BFGS cannot continue from the global weights for a few local epochs."""
        if est.solver == "lbfgs":
            raise UnsupportedEstimatorError(
                f"{type(est).__name__}(solver='lbfgs') cannot train incrementally; use solver='adam' or 'sgd' "
                "for FedAvg"
            )

    def arrays(self, model: Any) -> list[np.ndarray]:
        return [*model.coefs_, *model.intercepts_]

    def set(self, model: Any, vec: np.ndarray) -> None:
        parts = self.split(vec)
        k = len(model.coefs_)
        model.coefs_ = parts[:k]
        model.intercepts_ = parts[k:]

    def initial(self, model: Any, rng: np.random.Generator) -> np.ndarray:
        factor = 2.0 if model.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for c in model.coefs_:
            fan_in, fan_out = c.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(rng.uniform(-bound, bound, fan_out))
        return np.concatenate([a.ravel() for a in [*coefs, *intercepts]])

    def for_round(self, model: Any, vec: np.ndarray) -> Any:
        m = super().for_round(model, vec)
        if hasattr(m, "_optimizer"):
            del m._optimizer  # each round's local training starts a fresh optimiser
        return m

    def train(self, model: Any, x: Any, y: Any, *, epochs: int, mu: float, anchor: np.ndarray, seed: int,
              n_total: float) -> None:
        model.random_state = seed
        for _ in range(epochs):
            quiet(model.partial_fit, x, y)
            if mu > 0:
                self.set(model, _prox(self.get(model), anchor, mu))


class LogisticAdapter(Adapter):
    """``LogisticRegression`` under FedAvg/FedProx: local L-BFGS on the party's share of the objective.

    The local objective is ``C``-weighted log-loss over the party's rows plus
    its share ``n_party / n`` of the L2 penalty (so the local objectives sum
    to scikit-learn's), plus ``mu / 2 ||theta - theta_global||^2`` for FedProx;
    ``local_epochs`` bounds the L-BFGS iterations (10 per epoch).  This is the
    'warm-started local logistic regressions' baseline; Newton is the default.
    """

    def init(self, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        self.problem = glm_problem(self.template, self.ctx)
        model, vec = super().init(rng)
        return model, vec

    def arrays(self, model: Any) -> list[np.ndarray]:
        coef = np.atleast_2d(model.coef_)
        if self.problem.fit_intercept:
            return [np.hstack([coef, np.asarray(model.intercept_).reshape(-1, 1)])]
        return [coef]

    def set(self, model: Any, vec: np.ndarray) -> None:
        (w,) = self.split(vec)
        d = self.problem.n_features
        model.coef_ = w[:, :d].copy()
        model.intercept_ = w[:, d].copy() if self.problem.fit_intercept else np.zeros(w.shape[0])

    def train(self, model: Any, x: Any, y: Any, *, epochs: int, mu: float, anchor: np.ndarray, seed: int,
              n_total: float) -> None:
        p = self.problem
        xd, yy, w = glm_arrays(as_matrix(x), y, p)
        share = float(np.sum(w)) / max(n_total, 1.0)
        mask = p.penalty_mask()

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            f, g, _ = glm_loss_grad_hess(theta, xd, yy, w, p, False)
            f += 0.5 * share * p.l2 * float(np.sum(mask * theta**2)) + 0.5 * mu * float(np.sum((theta - anchor) ** 2))
            g = g + share * p.l2 * mask * theta + mu * (theta - anchor)
            return f, g

        res = minimize(objective, self.get(model), jac=True, method="L-BFGS-B",
                       options={"maxiter": 10 * max(1, epochs)})
        self.set(model, res.x)


def make_adapter(est: Any, ctx: StageContext, family: type[Adapter] | None) -> Adapter:
    """The ``family`` adapter for ``est`` (given by :mod:`~fedbench.learn.registry`).

    Raises
    ------
    UnsupportedEstimatorError
        No family, or settings the family cannot aggregate.
    """
    if family is None:
        raise UnsupportedEstimatorError(f"{type(est).__name__} has no FedAvg adapter")
    family.check(est)
    return family(est, ctx)
