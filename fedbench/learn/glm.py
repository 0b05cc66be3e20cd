"""Second-order federated optimisation of GLMs: Newton (IRLS) and L-BFGS over secure sums.

The objective is scikit-learn's, written as a sum over all parties' rows::

    F(theta) = sum_i s_i * loss(y_i, x_i . w + b) + l2 / 2 * ||w||^2

with the intercept ``b`` unpenalised.  ``LogisticRegression`` minimises
``C * sum loss + ||w||^2 / 2`` (so ``l2 = 1 / C``; ``s_i`` are class weights),
``PoissonRegressor``/``GammaRegressor`` minimise ``mean loss + alpha/2 ||w||^2``
(so ``l2 = n * alpha``), ``Ridge`` minimises ``||y - Xw||^2 + alpha ||w||^2``
(half squared loss, ``l2 = alpha``).  Because ``F``, its gradient and its
Hessian are sums over rows, each round every party sends the securely summed
``(loss, gradient, Hessian)`` of its own rows at the broadcast point; the
coordinator adds the penalty and takes a Newton step.  The iterates are those
of Newton's method on the pooled data, so the fit converges (quadratically) to
the pooled optimum: the same coefficients as scikit-learn on pooled data.

Steps are safeguarded by Armijo backtracking: a trial point whose summed loss
does not decrease enough is halved and re-evaluated in the next round.  For
models with many parameters (default: more than 300) L-BFGS replaces Newton:
only the loss and gradient are summed, and the two-loop recursion runs at the
coordinator.

What leaves a party each round: the sum over its rows of the loss, the gradient
(``p`` values) and, for Newton, the upper triangle of the Hessian, inside the
secure sum; only the federation-wide totals are decrypted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import scipy.linalg
from scipy.special import expit, logsumexp

from ..errors import ColumnError, ConfigurationError, UnsupportedEstimatorError
from .data import DataSpec
from .engine import Session
from .stages import Prefix, StageContext, stage_matrix, surrogate_fit
from .strategy import FitInstruction, Strategy

__all__ = ["FedNewton", "GLMProblem", "glm_problem", "local_glm"]

FAMILIES = ("binomial", "multinomial", "squared", "poisson", "gamma")


@dataclass(frozen=True)
class GLMProblem:
    """Public description of a GLM fit (identical in every party).

    Attributes
    ----------
    family : {"binomial", "multinomial", "squared", "poisson", "gamma"}
    n_features : int
    n_classes : int
        Number of classes (multinomial), else 1.
    fit_intercept : bool
    l2 : float
        Penalty weight on the coefficients in the summed objective.
    classes : tuple or None
        Class labels (classification).
    class_weight : tuple of float or None
        Weight of each class's rows.
    """

    family: str
    n_features: int
    n_classes: int = 1
    fit_intercept: bool = True
    l2: float = 0.0
    classes: tuple[Any, ...] | None = None
    class_weight: tuple[float, ...] | None = None

    @property
    def width(self) -> int:
        """Parameters per output (coefficients and intercept)."""
        return self.n_features + int(self.fit_intercept)

    @property
    def n_outputs(self) -> int:
        """Rows of the parameter matrix."""
        return self.n_classes if self.family == "multinomial" else 1

    @property
    def n_params(self) -> int:
        """Length of the parameter vector."""
        return self.n_outputs * self.width

    def penalty_mask(self) -> np.ndarray:
        """1.0 on penalised entries (coefficients), 0.0 on intercepts."""
        row = np.ones(self.width)
        if self.fit_intercept:
            row[-1] = 0.0
        return np.tile(row, self.n_outputs)

    def intercept_mask(self) -> np.ndarray:
        """1.0 on intercept entries."""
        return (1.0 - self.penalty_mask()) if self.fit_intercept else np.zeros(self.n_params)


def penalty_of(est: Any) -> str | None:
    """LogisticRegression's effective penalty, resolved as scikit-learn 1.8+ does."""
    pen = getattr(est, "penalty", "deprecated")
    if pen != "deprecated":
        return pen
    l1 = getattr(est, "l1_ratio", 0.0)
    if l1 in (0, None):
        return None if np.isinf(float(est.C)) else "l2"
    return "l1" if l1 == 1 else "elasticnet"


def glm_problem(est: Any, ctx: StageContext) -> GLMProblem:
    """The GLM objective of a scikit-learn estimator, or :class:`UnsupportedEstimatorError`."""
    from sklearn.linear_model import (
        GammaRegressor,
        LinearRegression,
        LogisticRegression,
        PoissonRegressor,
        Ridge,
    )

    d = ctx.n_features
    if isinstance(est, LogisticRegression):
        pen = penalty_of(est)
        if pen in ("l1", "elasticnet"):
            raise UnsupportedEstimatorError(
                f"LogisticRegression with an {pen} penalty has no federated Newton protocol; use l1_ratio=0 "
                "(L2, the default) or C=np.inf (no penalty)"
            )
        l2 = 0.0 if pen is None or np.isinf(float(est.C)) else 1.0 / float(est.C)
        classes = tuple(np.asarray(ctx.classes).tolist())
        k = len(classes)
        if k < 2:
            raise ConfigurationError(
                f"the target has a single class ({classes[0]!r}) across all parties; a classifier needs two"
            )
        return GLMProblem("binomial" if k == 2 else "multinomial", d, k if k > 2 else 1, bool(est.fit_intercept), l2,
                          classes, _class_weights(est.class_weight, classes, ctx.class_counts))
    if isinstance(est, PoissonRegressor | GammaRegressor):
        fam = "poisson" if isinstance(est, PoissonRegressor) else "gamma"
        return GLMProblem(fam, d, 1, bool(est.fit_intercept), float(est.alpha) * ctx.n_train)
    if isinstance(est, Ridge | LinearRegression):
        if getattr(est, "positive", False):
            raise UnsupportedEstimatorError(f"{type(est).__name__}(positive=True) has no federated protocol")
        alpha = float(np.ravel(est.alpha)[0]) if isinstance(est, Ridge) else 0.0
        return GLMProblem("squared", d, 1, bool(est.fit_intercept), alpha)
    raise UnsupportedEstimatorError(f"{type(est).__name__} is not a GLM fedbench can optimise")


def _class_weights(cw: Any, classes: Sequence[Any], counts: np.ndarray | None) -> tuple[float, ...] | None:
    if cw is None:
        return None
    if isinstance(cw, str):
        if cw != "balanced":
            raise ConfigurationError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")
        assert counts is not None
        n = float(np.sum(counts))
        return tuple(float(n / (len(classes) * c)) if c > 0 else 1.0 for c in counts)
    if isinstance(cw, Mapping):
        return tuple(float(cw.get(c, 1.0)) for c in classes)
    raise ConfigurationError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")


# -- inside each party ---------------------------------------------------------------------------
def glm_arrays(x: np.ndarray, y: np.ndarray, problem: GLMProblem, *, target: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix (with intercept column), encoded response and row weights."""
    if problem.fit_intercept:
        x = np.hstack([x, np.ones((x.shape[0], 1))])
    w = np.ones(x.shape[0])
    if problem.family in ("binomial", "multinomial"):
        assert problem.classes is not None
        classes = np.asarray(problem.classes, dtype=object if isinstance(problem.classes[0], str) else None)
        idx = np.searchsorted(classes, y)
        if problem.class_weight is not None:
            w = np.asarray(problem.class_weight)[idx]
        if problem.family == "binomial":
            return x, (idx == 1).astype(float), w
        return x, idx, w
    yy = np.asarray(y, dtype=float)
    if problem.family == "poisson" and np.any(yy < 0):
        raise ColumnError(f"PoissonRegressor needs a non-negative target; {target!r} has negative values",
                          column=target)
    if problem.family == "gamma" and np.any(yy <= 0):
        raise ColumnError(f"GammaRegressor needs a positive target; {target!r} has values <= 0", column=target)
    return x, yy, w


def glm_loss_grad_hess(theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, problem: GLMProblem,
                       hessian: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Summed loss, gradient and (optionally) Hessian of the unpenalised objective over the rows given."""
    fam = problem.family
    if fam == "multinomial":
        k, width = problem.n_classes, problem.width
        wm = theta.reshape(k, width)
        z = x @ wm.T
        lse = logsumexp(z, axis=1)
        p = np.exp(z - lse[:, None])
        loss = float(np.sum(w * (lse - z[np.arange(len(y)), y])))
        r = p.copy()
        r[np.arange(len(y)), y] -= 1.0
        grad = ((r * w[:, None]).T @ x).ravel()
        hess = None
        if hessian:
            # H = sum_i w_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T
            b = (p[:, :, None] * x[:, None, :]).reshape(len(y), k * width)
            hess = -(b * w[:, None]).T @ b
            for c in range(k):
                sl = slice(c * width, (c + 1) * width)
                hess[sl, sl] += (x * (w * p[:, c])[:, None]).T @ x
        return loss, grad, hess
    z = x @ theta
    if fam == "binomial":
        loss = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))
        p = expit(z)
        g, h = p - y, p * (1.0 - p)
    elif fam == "squared":
        r = z - y
        loss = float(0.5 * np.sum(w * r**2))
        g, h = r, np.ones_like(z)
    elif fam == "poisson":
        ez = np.exp(z)
        loss = float(np.sum(w * (ez - y * z)))
        g, h = ez - y, ez
    elif fam == "gamma":
        emz = np.exp(-z)
        loss = float(np.sum(w * (z + y * emz)))
        g, h = 1.0 - y * emz, y * emz
    else:  # pragma: no cover - guarded by glm_problem
        raise ConfigurationError(f"unknown family {fam!r}")
    grad = x.T @ (w * g)
    hess = (x * (w * h)[:, None]).T @ x if hessian else None
    return loss, grad, hess


def local_glm(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, problem: GLMProblem, theta: np.ndarray,
              hessian: bool) -> dict[str, Any]:
    """One party's summed loss, gradient and Hessian (upper triangle) at ``theta``."""
    x, y = stage_matrix(df, spec, prefix, "train")
    xd, yy, w = glm_arrays(x, y, problem, target=spec.target)
    loss, grad, hess = glm_loss_grad_hess(theta, xd, yy, w, problem, hessian)
    out: dict[str, Any] = {"n": float(np.sum(w)), "loss": loss, "grad": grad}
    if hess is not None:
        out["hess"] = hess[np.triu_indices(hess.shape[0])]
    n = float(len(yy))
    return {"sum": out, "party": {"loss": loss / n if n else None, "n": n}}


def _unpack_triu(v: np.ndarray, p: int) -> np.ndarray:
    h = np.zeros((p, p))
    h[np.triu_indices(p)] = v
    return h + np.triu(h, 1).T


# -- the coordinator -------------------------------------------------------------------------------
class FedNewton(Strategy):
    """Federated Newton (IRLS) or L-BFGS on securely summed gradients and Hessians.

    Every party takes part in every round (the objective is the sum over all
    of them); a round in which a party drops out is reported and its partial
    sums are discarded, because a step on part of the data would lead to a
    different optimum.

    Parameters
    ----------
    estimator : LogisticRegression, LinearRegression, Ridge, PoissonRegressor or GammaRegressor, optional
        The (unfitted) estimator whose objective is minimised; ``fit`` binds the
        final step of the model when it is left out.
    method : {"newton", "lbfgs"}, default "newton"
        Second-order steps or the L-BFGS two-loop recursion.
    tol : float, optional
        Stop when the largest gradient entry per row falls below ``tol``
        (default 1e-10 for Newton, 1e-8 for L-BFGS), or when the Newton
        decrement says the remaining decrease is negligible.
    memory : int, default 10
        L-BFGS history length.
    min_parties : int, optional
        Fewest parties a round may keep (every party must take part: a dropout aborts the round).
    evaluate_every : int, default 1
        Evaluate on held-out rows every that many rounds.
    rounds : int, optional
        Maximum rounds (default 25 for Newton, 200 for L-BFGS; ``fit(rounds=...)`` takes precedence).
    """

    exact = True

    def __init__(self, estimator: Any = None, *, method: str = "newton", tol: float | None = None, memory: int = 10,
                 min_parties: int | None = None, evaluate_every: int = 1, rounds: int | None = None) -> None:
        super().__init__(fraction_fit=1.0, min_parties=min_parties, evaluate_every=evaluate_every, rounds=rounds)
        if method not in ("newton", "lbfgs"):
            raise ConfigurationError(f"method must be 'newton' or 'lbfgs', got {method!r}")
        self.estimator = estimator
        self.method = method
        self.name = method
        self.tol = tol if tol is not None else (1e-10 if method == "newton" else 1e-8)
        self.memory = memory
        self.n_iter = 0

    # hooks
    def initialize(self, ctx: StageContext, session: Session) -> np.ndarray:
        """Build the model structure and the initial parameters."""
        self.ctx = ctx
        self.problem = glm_problem(self.estimator, ctx)
        self.mask = self.problem.penalty_mask()
        self.theta = np.zeros(self.problem.n_params)  # accepted point
        self.trial = self.theta.copy()
        self.cur: tuple[float, np.ndarray, np.ndarray | None] | None = None
        self.direction: np.ndarray | None = None
        self.t = 1.0
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_total = max(float(ctx.n_train), 1.0)
        self._parties = len(session.parties)
        return self.theta

    def configure_fit(self, server_round: int, params: Any, parties: Sequence[str],
                      rng: np.random.Generator) -> list[FitInstruction]:
        """Choose the round's parties."""
        return [FitInstruction(p) for p in parties]  # Newton needs every party's rows in every round

    def payload(self, params: Any) -> np.ndarray:
        """The parameters broadcast to the round's parties."""
        return self.trial

    def fit_fn(self, server_round: int, params: Any, ctx: StageContext) -> Callable[[pl.DataFrame], dict[str, Any]]:
        """The round's local function."""
        return partial(local_glm, spec=ctx.spec, prefix=ctx.prefix, problem=self.problem, theta=self.trial.copy(),
                       hessian=self.method == "newton")

    def aggregate_fit(self, server_round: int, params: Any, total: Mapping[str, Any],
                      party_info: Mapping[str, Mapping[str, Any]],
                      failures: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        """New global parameters from the secure sum."""
        if failures:
            # A partial sum is the objective of other data: keep the point and ask again next round.
            return self.theta, {"status": "retry", "note": "partial sums discarded: "
                                + ", ".join(f.party for f in failures) + " dropped out"}
        n = float(total["n"])
        self.n_total = max(n, 1.0)
        th = self.trial
        f = float(total["loss"]) + 0.5 * self.problem.l2 * float(np.sum(self.mask * th**2))
        g = np.asarray(total["grad"]) + self.problem.l2 * self.mask * th
        h = None
        if self.method == "newton":
            h = _unpack_triu(np.asarray(total["hess"]), self.problem.n_params)
            h[np.diag_indices_from(h)] += self.problem.l2 * self.mask
        status = "accepted"
        if self.cur is not None and self.direction is not None:
            f0, g0, _ = self.cur
            slope = float(g0 @ self.direction)
            if not f <= f0 + 1e-4 * self.t * slope + 1e-12 * abs(f0):
                self.t *= 0.5
                if self.t < 1e-8:
                    self.converged = True  # no further decrease possible at float precision
                    return self.theta, {"status": "stalled", "loss": f0 / self.n_total, "n": n}
                self.trial = self.theta + self.t * self.direction
                return self.theta, {"status": "backtrack", "loss": f / self.n_total, "n": n,
                                    "note": f"step halved to {self.t:g}"}
            if self.method == "lbfgs":
                s, yv = th - self.theta, g - g0
                if float(s @ yv) > 1e-12 * float(yv @ yv):
                    self.pairs = [*self.pairs[-(self.memory - 1):], (s, yv)] if self.memory > 1 else [(s, yv)]
        self.theta = th.copy()
        self.cur = (f, g, h)
        self.n_iter += 1
        d = self._direction(g, h)
        self.direction = d
        self.t = 1.0
        decrement = float(-(g @ d))
        gmax = float(np.max(np.abs(g))) / self.n_total if g.size else 0.0
        if gmax <= self.tol or (self.method == "newton" and decrement / 2 <= 1e-15 * self.n_total) \
                or float(np.max(np.abs(d), initial=0.0)) <= 1e-13 * (1 + float(np.max(np.abs(th), initial=0.0))):
            self.converged = True
            if self.method == "newton":
                self.theta = th + d  # a last Newton step from inside the quadratic region is free precision
            return self.theta, {"status": "converged", "loss": f / self.n_total, "n": n}
        self.trial = th + d
        return self.theta, {"status": status, "loss": f / self.n_total, "n": n}

    def _direction(self, g: np.ndarray, h: np.ndarray | None) -> np.ndarray:
        if h is not None:
            hh = h.copy()
            im = self.problem.intercept_mask() if self.problem.family == "multinomial" else None
            if im is not None and im.any():
                # Softmax intercepts are free along their sum: regularise that direction in the solve only.
                hh[np.diag_indices_from(hh)] += 1e-10 * max(1.0, float(np.max(np.diag(hh)))) * im
            try:
                d = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(hh, check_finite=False), g, check_finite=False)
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                d = -scipy.linalg.lstsq(hh, g, check_finite=False)[0]
            if im is not None and im.any():
                ints = d.reshape(self.problem.n_outputs, self.problem.width)[:, -1]
                ints -= ints.mean()  # keep the intercepts centred like scikit-learn's symmetric softmax
            return d
        # L-BFGS two-loop recursion.
        q = g.copy()
        alphas = []
        for s, yv in reversed(self.pairs):
            rho = 1.0 / float(yv @ s)
            a = rho * float(s @ q)
            alphas.append((rho, a, s, yv))
            q -= a * yv
        if self.pairs:
            s, yv = self.pairs[-1]
            q *= float(s @ yv) / float(yv @ yv)
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for rho, a, s, yv in reversed(alphas):
            b = rho * float(yv @ q)
            q += (a - b) * s
        return -q

    def model(self, params: Any) -> Any:
        """The fitted estimator for ``params``."""
        return build_glm_model(self.estimator, self.problem, np.asarray(params), self.ctx, self.n_iter)

    def describe(self) -> str:
        """One line for the run summary."""
        return f"federated {'Newton (IRLS)' if self.method == 'newton' else 'L-BFGS'} on secure gradient sums"


def build_glm_model(est: Any, problem: GLMProblem, theta: np.ndarray, ctx: StageContext, n_iter: int) -> Any:
    """A fitted copy of ``est`` with parameters ``theta``."""
    from sklearn.base import clone

    model = surrogate_fit(clone(est), ctx)
    wm = theta.reshape(problem.n_outputs, problem.width)
    coef = wm[:, : problem.n_features]
    intercept = wm[:, -1] if problem.fit_intercept else np.zeros(problem.n_outputs)
    if problem.family in ("binomial", "multinomial"):
        model.coef_ = coef.copy()
        model.intercept_ = intercept.copy()
        model.n_iter_ = np.asarray([n_iter], dtype=np.int32)
    else:
        model.coef_ = coef[0].copy()
        model.intercept_ = float(intercept[0]) if problem.fit_intercept else 0.0
        if hasattr(model, "n_iter_"):
            model.n_iter_ = n_iter
    return model
