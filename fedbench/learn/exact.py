"""Exact federated models from securely summed sufficient statistics.

Each model here is a closed-form (or Lloyd) function of sums over rows, so the
federated fit equals scikit-learn's fit on the pooled rows up to floating-point
rounding (the sums use 48 fractional bits; see
:func:`fedbench.learn.engine.learn_encoding`).  Second moments always take two
rounds, means first and then squared deviations from the released means, which
avoids the cancellation of ``E[x^2] - E[x]^2``.

=====================  ===========================================================
``LinearRegression``   n, sums; centred Gram ``[X y]'[X y]``; one refinement round
``Ridge``              ``X'r`` of the residual of the first solve (iterative refinement)
``GaussianNB``         per class: count and sums; per class squared deviations
``PCA``                n and sums; centred Gram (covariance)
``KMeans``             moments, a federated initialisation, then per Lloyd round
                       per-cluster sums and counts, and labels changed
=====================  ===========================================================

What each party reveals: nothing individually; the coordinator learns the
summed statistics listed above (and, for KMeans, the per-round cluster sizes).

KMeans initialisation
---------------------
scikit-learn's k-means++ and ``init="random"`` pick *rows* of the data as
centres, which would copy a party's raw rows.  fedbench instead (unless
``init`` is an explicit array of centres) initialises by **rank-aligned
averaging of local k-means++ centres**: each party runs k-means++ (seeded) on
its own rows and orders its ``k`` local centres by their projection on the
federation's first principal axis (from the secure covariance); the
coordinator securely sums, per rank, the local centres weighted by their
cluster sizes, and divides.  Lloyd iterations then run on secure sums and
follow scikit-learn's Lloyd algorithm and stopping rules exactly (strict
convergence when no label changed, else total squared centre shift at most
``tol * mean feature variance``).  One deviation: a cluster that loses all its
rows keeps its previous centre (scikit-learn moves it onto a far-away *row*).
The fitted model has no ``labels_`` (those are per row and stay with the
parties); ``fit_predict`` on the federation is therefore not available.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import scipy.linalg

from ..errors import ConfigurationError, EmptyPartyError, UnsupportedEstimatorError
from .data import DataSpec
from .engine import GLOBAL, Session
from .glm import glm_problem
from .stages import Prefix, StageContext, quiet, stage_matrix

__all__ = ["fit_gaussian_nb", "fit_kmeans", "fit_linear", "fit_pca", "secure_round"]


def secure_round(session: Session, ctx: StageContext, fn: Callable[[pl.DataFrame], dict[str, Any]], *,
                 round: int, note: str, protocol: str = "fit") -> dict[str, Any]:
    """One sum of ``fn`` over every party, recorded as a history row of the current step."""
    t0 = time.perf_counter()
    b0 = session.transcript.nbytes
    value, _ = session.sum_local(session.parties, fn, encoding=ctx.exact_encoding, protocol=protocol,
                                 description=f"{ctx.name}: {note}")
    n = value.get("n")
    session.record(stage=ctx.name, round=round, party=GLOBAL, status="ok", n=None if n is None else float(n),
                   seconds=time.perf_counter() - t0, bytes=session.transcript.nbytes - b0, note=note)
    return value


def publish(session: Session, obj: Any, kind: str = "statistics") -> None:
    """The coordinator sends released statistics (or a fitted step) to every party."""
    session.broadcast([p.name for p in session.parties], kind, obj)


# -- local functions (inside each party) ---------------------------------------------------------
def local_moments(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, with_y: bool = False,
                  missing: Any = np.nan) -> dict[str, Any]:
    """Rows, non-missing counts and sums per column (and of the target)."""
    x, y = stage_matrix(df, spec, prefix, "train", allow_missing=True)
    miss = np.isnan(x) if _is_nan(missing) else (x == missing) | np.isnan(x)
    out: dict[str, Any] = {"n": float(x.shape[0]), "count": (~miss).sum(axis=0).astype(float),
                           "sum": np.where(miss, 0.0, x).sum(axis=0)}
    if with_y:
        out["ysum"] = float(np.sum(np.asarray(y, dtype=float)))
    return out


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and np.isnan(v)


def local_ssd(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, means: np.ndarray,
              missing: Any = np.nan) -> dict[str, Any]:
    """Per column: sum of squared deviations of non-missing values from the released means."""
    x, _ = stage_matrix(df, spec, prefix, "train", allow_missing=True)
    miss = np.isnan(x) if _is_nan(missing) else (x == missing) | np.isnan(x)
    dev = np.where(miss, 0.0, x - means)
    return {"ssd": (dev**2).sum(axis=0)}


def local_gram(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, xmean: np.ndarray,
               ymean: float | None) -> dict[str, Any]:
    """Upper triangle of the centred Gram matrix of ``[X y]`` (``y`` only when ``ymean`` is given)."""
    x, y = stage_matrix(df, spec, prefix, "train")
    z = x - xmean
    if ymean is not None:
        z = np.hstack([z, (np.asarray(y, dtype=float) - ymean)[:, None]])
    g = z.T @ z
    return {"gram": g[np.triu_indices(g.shape[0])]}


def local_residual(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, xmean: np.ndarray, ymean: float,
                   coef: np.ndarray) -> dict[str, Any]:
    """``Xc' (yc - Xc w)``, computed from the rows (for iterative refinement of a normal-equations solve)."""
    x, y = stage_matrix(df, spec, prefix, "train")
    xc = x - xmean
    r = (np.asarray(y, dtype=float) - ymean) - xc @ coef
    return {"xr": xc.T @ r}


def local_class_moments(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, classes: list[Any],
                        means: np.ndarray | None) -> dict[str, Any]:
    """Per class: counts and sums (first round) or squared deviations from the class means (second)."""
    x, y = stage_matrix(df, spec, prefix, "train")
    cls = np.asarray(classes)
    idx = np.searchsorted(cls, y)
    k, d = len(classes), x.shape[1]
    if means is None:
        sums = np.zeros((k, d))
        np.add.at(sums, idx, x)
        return {"n": float(len(y)), "count": np.bincount(idx, minlength=k).astype(float), "sum": sums}
    ssd = np.zeros((k, d))
    np.add.at(ssd, idx, (x - means[idx]) ** 2)
    return {"ssd": ssd}


def _unpack_triu(v: np.ndarray, p: int) -> np.ndarray:
    h = np.zeros((p, p))
    h[np.triu_indices(p)] = v
    return h + np.triu(h, 1).T


def moments(session: Session, ctx: StageContext, *, round0: int = 1, with_y: bool = False,
            missing: Any = np.nan) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Two secure rounds: counts and means, then squared deviations.  Returns (first sums, counts, means, ssd)."""
    v1 = secure_round(session, ctx, partial(local_moments, spec=ctx.spec, prefix=ctx.prefix, with_y=with_y,
                                            missing=missing), round=round0, note="counts and sums")
    count = np.asarray(v1["count"], dtype=float)
    total = np.asarray(v1["sum"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0.5, total / np.maximum(count, 1.0), np.nan)
    publish(session, means)
    v2 = secure_round(session, ctx, partial(local_ssd, spec=ctx.spec, prefix=ctx.prefix,
                                            means=np.nan_to_num(means), missing=missing),
                      round=round0 + 1, note="squared deviations from the released means")
    return v1, count, means, np.asarray(v2["ssd"], dtype=float)


# -- LinearRegression and Ridge ------------------------------------------------------------------------
def fit_linear(est: Any, session: Session, ctx: StageContext, *, refine: int = 1) -> Any:
    """``LinearRegression`` or ``Ridge`` from the centred Gram matrix of ``[X y]``, refined iteratively.

    The normal equations square the condition number; one refinement round
    computes ``Xc'(yc - Xc w)`` from the rows themselves and corrects ``w``,
    which brings the solution to the accuracy of scikit-learn's own solver.
    """
    from sklearn.base import clone
    from sklearn.linear_model import Ridge


    problem = glm_problem(est, ctx)  # validates options (positive=True...)
    v1 = secure_round(session, ctx, partial(local_moments, spec=ctx.spec, prefix=ctx.prefix, with_y=True),
                      round=1, note="row count and sums of X and y")
    n = float(v1["n"])
    if n < 1:
        raise EmptyPartyError("no training rows in any party")
    d = ctx.n_features
    if problem.fit_intercept:
        xmean, ymean = np.asarray(v1["sum"]) / n, float(v1["ysum"]) / n
    else:
        xmean, ymean = np.zeros(d), 0.0
    publish(session, np.append(xmean, ymean))
    v2 = secure_round(session, ctx, partial(local_gram, spec=ctx.spec, prefix=ctx.prefix, xmean=xmean, ymean=ymean),
                      round=2, note="centred Gram matrix of [X y]")
    g = _unpack_triu(np.asarray(v2["gram"]), d + 1)
    xtx, xty = g[:d, :d], g[:d, d]
    alpha = problem.l2
    a = xtx + alpha * np.eye(d)

    def solve(rhs: np.ndarray) -> np.ndarray:
        if alpha > 0:
            try:
                return scipy.linalg.solve(a, rhs, assume_a="pos")
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                pass
        return scipy.linalg.lstsq(a, rhs, cond=None)[0]  # minimum-norm solution, as scikit-learn's lstsq

    coef = solve(xty)
    for r in range(refine):
        publish(session, coef, "coefficients")
        v = secure_round(session, ctx, partial(local_residual, spec=ctx.spec, prefix=ctx.prefix, xmean=xmean,
                                               ymean=ymean, coef=coef),
                         round=3 + r, note="residual correlations (iterative refinement)")
        coef = coef + solve(np.asarray(v["xr"]) - alpha * coef)
    model = _surrogate_regressor(clone(est), ctx)
    model.coef_ = coef
    model.intercept_ = float(ymean - xmean @ coef) if problem.fit_intercept else 0.0
    if not isinstance(est, Ridge):
        sv = np.sqrt(np.clip(np.linalg.eigvalsh(xtx)[::-1], 0.0, None))
        model.singular_ = sv
        model.rank_ = int(np.sum(sv > sv[0] * max(xtx.shape) * np.finfo(float).eps)) if sv.size else 0
    return model


def _surrogate_regressor(est: Any, ctx: StageContext) -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(max(3, ctx.n_features + 2), ctx.n_features))
    quiet(est.fit, ctx.surrogate_x(len(x), x), rng.normal(size=x.shape[0]))
    return est


# -- GaussianNB ------------------------------------------------------------------------------------------
def fit_gaussian_nb(est: Any, session: Session, ctx: StageContext) -> Any:
    """``GaussianNB`` from per-class counts, means and squared deviations (two secure rounds)."""
    from sklearn.base import clone

    classes = list(np.asarray(ctx.classes).tolist())
    k, d = len(classes), ctx.n_features
    v1 = secure_round(session, ctx, partial(local_class_moments, spec=ctx.spec, prefix=ctx.prefix, classes=classes,
                                            means=None), round=1, note="per-class counts and sums")
    counts = np.asarray(v1["count"], dtype=float)
    sums = np.asarray(v1["sum"], dtype=float).reshape(k, d)
    theta = sums / np.maximum(counts, 1.0)[:, None]
    publish(session, theta)
    v2 = secure_round(session, ctx, partial(local_class_moments, spec=ctx.spec, prefix=ctx.prefix, classes=classes,
                                            means=theta), round=2, note="per-class squared deviations")
    ssd = np.asarray(v2["ssd"], dtype=float).reshape(k, d)
    n = float(counts.sum())
    mean = sums.sum(axis=0) / n
    # Law of total variance: pooled variance per feature from the per-class statistics.
    pooled_var = (ssd.sum(axis=0) + (counts[:, None] * (theta - mean) ** 2).sum(axis=0)) / n
    epsilon = float(est.var_smoothing) * float(np.max(pooled_var))
    var = ssd / np.maximum(counts, 1.0)[:, None] + epsilon
    model = clone(est)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(2 * k, d))
    quiet(model.fit, ctx.surrogate_x(len(xs), xs), np.asarray(classes * 2, dtype=np.asarray(ctx.classes).dtype))
    model.theta_ = theta
    model.var_ = var
    model.class_count_ = counts
    model.epsilon_ = epsilon
    model.class_prior_ = (np.asarray(est.priors, dtype=float) if est.priors is not None else counts / n)
    return model


# -- PCA --------------------------------------------------------------------------------------------------
def fit_pca(est: Any, session: Session, ctx: StageContext) -> Any:
    """``PCA`` from the securely summed covariance (scikit-learn's ``covariance_eigh`` solver)."""
    from sklearn.base import clone
    from sklearn.decomposition._pca import _infer_dimension
    from sklearn.utils.extmath import svd_flip

    if est.svd_solver not in ("auto", "full", "covariance_eigh", "randomized", "arpack"):
        raise ConfigurationError(f"unknown svd_solver {est.svd_solver!r}")
    d = ctx.n_features
    v1 = secure_round(session, ctx, partial(local_moments, spec=ctx.spec, prefix=ctx.prefix),
                      round=1, note="row count and column sums")
    n = round(float(v1["n"]))
    if n < 2:
        raise EmptyPartyError(f"PCA needs at least 2 training rows across the parties, got {n}")
    mean = np.asarray(v1["sum"]) / n
    publish(session, mean)
    v2 = secure_round(session, ctx, partial(local_gram, spec=ctx.spec, prefix=ctx.prefix, xmean=mean, ymean=None),
                      round=2, note="centred Gram matrix (covariance)")
    cov = _unpack_triu(np.asarray(v2["gram"]), d) / (n - 1)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1].copy(), vecs[:, ::-1]
    vals[vals < 0.0] = 0.0
    _, vt = svd_flip(None, vecs.T.copy(), u_based_decision=False)
    total = float(vals.sum())
    ratio = vals / total if total > 0 else np.zeros_like(vals)
    nc = est.n_components
    limit = min(n, d)
    if nc is None:
        k = limit if est.svd_solver != "arpack" else limit - 1
    elif nc == "mle":
        if n < d:
            raise ConfigurationError("n_components='mle' is only supported if n_samples >= n_features")
        k = int(_infer_dimension(vals, n))
    elif isinstance(nc, float) and 0 < nc < 1:
        k = int(np.searchsorted(np.cumsum(ratio), nc, side="right")) + 1
    else:
        k = int(nc)
        if not 0 <= k <= limit:
            raise ConfigurationError(f"n_components={k} must be between 0 and min(n_samples, n_features)={limit}")
    k = min(k, d)
    model = clone(est)
    rng = np.random.default_rng(0)
    m = max(d + 2, k + 2)
    model.set_params(n_components=k, svd_solver="full")
    quiet(model.fit, ctx.surrogate_x(m, rng.normal(size=(m, d))))
    model.set_params(n_components=est.n_components, svd_solver=est.svd_solver)
    vals = vals[:limit] if limit < d else vals
    model.components_ = vt[:k].copy()
    model.explained_variance_ = vals[:k].copy()
    model.explained_variance_ratio_ = ratio[:k].copy()
    model.singular_values_ = np.sqrt(vals[:k] * (n - 1))
    model.mean_ = mean
    model.n_components_ = k
    model.n_samples_ = n
    model.noise_variance_ = float(np.mean(vals[k:])) if k < limit else 0.0
    model._fit_svd_solver = "covariance_eigh"
    return model


# -- KMeans -------------------------------------------------------------------------------------------------
def _assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = (x * x).sum(axis=1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(axis=1)[None, :]
    labels = np.argmin(d2, axis=1)
    dist = ((x - centers[labels]) ** 2).sum(axis=1)
    return labels, dist


def local_kmeans_init(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, k: int, axis: np.ndarray,
                      seed: int) -> dict[str, Any]:
    """Local k-means++ centres ranked along the public axis, weighted by cluster size (inside a party)."""
    from sklearn.cluster import KMeans

    x, _ = stage_matrix(df, spec, prefix, "train")
    d = x.shape[1]
    if x.shape[0] < k:
        return {"wsum": np.zeros((k, d)), "w": np.zeros(k)}  # too few rows to contribute k centres
    km = quiet(KMeans(n_clusters=k, n_init=1, random_state=seed).fit, x)
    sizes = np.bincount(km.labels_, minlength=k).astype(float)
    order = np.argsort(km.cluster_centers_ @ axis, kind="stable")
    return {"wsum": km.cluster_centers_[order] * sizes[order, None], "w": sizes[order]}


def local_lloyd(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None, centers: np.ndarray,
                previous: np.ndarray | None) -> dict[str, Any]:
    """One Lloyd step inside a party: per-cluster sums and counts, inertia, and labels changed."""
    x, _ = stage_matrix(df, spec, prefix, "train")
    k = centers.shape[0]
    labels, dist = _assign(x, centers)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    changed = float(x.shape[0])
    if previous is not None:
        # Labels of the previous round are recomputed from its (public) centres: parties keep no state.
        changed = float(np.sum(_assign(x, previous)[0] != labels))
    return {"sum": sums, "count": np.bincount(labels, minlength=k).astype(float), "inertia": float(dist.sum()),
            "changed": changed}


def fit_kmeans(est: Any, session: Session, ctx: StageContext) -> Any:
    """``KMeans`` by Lloyd rounds over secure sums, with a row-free federated initialisation."""
    from sklearn.base import clone

    if est.algorithm not in ("lloyd", "elkan", "auto", "full"):
        raise ConfigurationError(f"unknown algorithm {est.algorithm!r}")
    k, d = int(est.n_clusters), ctx.n_features
    v1 = secure_round(session, ctx, partial(local_moments, spec=ctx.spec, prefix=ctx.prefix),
                      round=1, note="row count and column sums")
    n = float(v1["n"])
    if n < k:
        raise EmptyPartyError(f"KMeans with n_clusters={k} needs at least {k} training rows, got {int(n)}")
    mean = np.asarray(v1["sum"]) / n
    publish(session, mean)
    v2 = secure_round(session, ctx, partial(local_gram, spec=ctx.spec, prefix=ctx.prefix, xmean=mean, ymean=None),
                      round=2, note="centred Gram matrix")
    gram = _unpack_triu(np.asarray(v2["gram"]), d)
    tol = float(np.mean(np.diag(gram) / n)) * float(est.tol)  # scikit-learn's _tolerance: tol * mean variance
    rnd = 3
    init = est.init
    if isinstance(init, str) and init == "k-means++":
        axis = np.linalg.eigh(gram)[1][:, -1]
        axis = axis * (1.0 if axis[np.argmax(np.abs(axis))] >= 0 else -1.0)
        publish(session, axis)
        seed = int(est.random_state) if isinstance(est.random_state, int | np.integer) else ctx.seed
        v = secure_round(session, ctx, partial(local_kmeans_init, spec=ctx.spec, prefix=ctx.prefix, k=k, axis=axis,
                                               seed=seed), round=rnd,
                         note="rank-aligned local k-means++ centres, size-weighted")
        w = np.asarray(v["w"], dtype=float)
        if np.any(w <= 0):
            raise EmptyPartyError(f"no party has {k} training rows: cannot initialise {k} clusters; pass init=array")
        centers = np.asarray(v["wsum"], dtype=float).reshape(k, d) / w[:, None]
        rnd += 1
    elif isinstance(init, str) or callable(init):
        raise UnsupportedEstimatorError(
            f"KMeans(init={init!r}) picks rows of the data as centres, which would reveal raw rows; use "
            "init='k-means++' (replaced by fedbench's rank-aligned federated initialisation) or an explicit array"
        )
    else:
        centers = np.asarray(init, dtype=float)
        if centers.shape != (k, d):
            raise ConfigurationError(f"init has shape {centers.shape}, expected ({k}, {d})")
    init_centers = centers.copy()
    previous: np.ndarray | None = None
    n_iter = 0
    for i in range(int(est.max_iter)):
        publish(session, centers, "centres")
        v = secure_round(session, ctx, partial(local_lloyd, spec=ctx.spec, prefix=ctx.prefix, centers=centers,
                                               previous=previous), round=rnd, note=f"Lloyd iteration {i + 1}")
        rnd += 1
        counts = np.asarray(v["count"], dtype=float)
        sums = np.asarray(v["sum"], dtype=float).reshape(k, d)
        new = np.where(counts[:, None] > 0.5, sums / np.maximum(counts, 1.0)[:, None], centers)
        n_iter = i + 1
        if previous is not None and float(v["changed"]) < 0.5:
            centers = new  # strict convergence: no label changed
            break
        shift = float(np.sum((new - centers) ** 2))
        previous, centers = centers, new
        if shift <= tol:
            break
    publish(session, centers, "centres")
    v = secure_round(session, ctx, partial(local_lloyd, spec=ctx.spec, prefix=ctx.prefix, centers=centers,
                                           previous=None), round=rnd, note="inertia at the final centres")
    model = clone(est)
    model.set_params(init=init_centers, n_init=1, max_iter=1)
    quiet(model.fit, ctx.surrogate_x(len(init_centers), init_centers))
    model.set_params(init=est.init, n_init=est.n_init, max_iter=est.max_iter)
    model.cluster_centers_ = centers
    model.inertia_ = float(v["inertia"])
    model.n_iter_ = n_iter
    model._n_features_out = k
    if hasattr(model, "labels_"):
        del model.labels_  # per-row labels belong to the parties
    model.init_centers_ = init_centers  # public: what the federated initialisation produced
    return model
