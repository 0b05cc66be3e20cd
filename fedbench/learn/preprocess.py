"""Federated preprocessing: imputation, scaling, encoding and column transformers.

======================  ======================================================================
``SimpleImputer``       ``strategy="mean"``: per column, securely summed non-missing counts and
                        sums; ``"constant"``: nothing leaves a party.  (``median`` and
                        ``most_frequent`` would reveal individual values: not offered.)
``StandardScaler``      per column, counts and sums, then squared deviations from the released
                        means (missing values ignored, as scikit-learn does)
``OneHotEncoder``,      categories: each party sends the *set* of distinct values of each
``OrdinalEncoder``      encoded column to the coordinator, which returns their union (what is
                        revealed: which values each party holds, never how many rows have them;
                        declare ``categories=[...]`` on the encoder to reveal nothing)
``ColumnTransformer``   each branch is fitted federatedly on its columns; the assembled transformer
                        is a genuine fitted ``ColumnTransformer``
``FunctionTransformer`` stateless: nothing leaves a party
======================  ======================================================================

Every fitted step is broadcast to the parties (its statistics become public to
them) before the next step is trained on the transformed rows.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..clear_union import first_seen_union, union_in_the_clear
from ..errors import ConfigurationError, UnsupportedEstimatorError
from .data import DataSpec
from .engine import GLOBAL, Session
from .exact import local_moments, moments, secure_round
from .stages import Prefix, Select, StageContext, quiet, stage_xy

__all__ = ["fit_column_transformer", "fit_encoder", "fit_imputer", "fit_scaler", "fit_stateless"]


# -- SimpleImputer ------------------------------------------------------------------------------------
def fit_imputer(est: Any, session: Session, ctx: StageContext) -> Any:
    """``SimpleImputer`` with ``strategy="mean"`` (securely summed) or ``"constant"`` (no data needed)."""
    from sklearn.base import clone

    if est.add_indicator:
        raise UnsupportedEstimatorError("SimpleImputer(add_indicator=True) is not supported federatedly")
    if est.strategy == "constant":
        return fit_stateless(est, session, ctx)
    if est.strategy != "mean":
        raise UnsupportedEstimatorError(
            f"SimpleImputer(strategy={est.strategy!r}) would reveal individual values (a median or mode is one "
            "row's value); use strategy='mean' or 'constant'"
        )
    missing = est.missing_values
    if missing is not np.nan and not isinstance(missing, int | float):
        raise UnsupportedEstimatorError(f"SimpleImputer(missing_values={missing!r}): only numeric markers")
    missing = float(missing)
    v = secure_round(session, ctx, partial(local_moments, spec=ctx.spec, prefix=ctx.prefix, missing=missing),
                     round=1, note="non-missing counts and sums per column")
    count = np.asarray(v["count"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0.5, np.asarray(v["sum"], dtype=float) / np.maximum(count, 1.0), np.nan)
    model = clone(est)
    quiet(model.fit, ctx.surrogate_x(1, means))
    stats = np.asarray(model.statistics_, dtype=float).copy()
    known = ~np.isnan(means)
    stats[known] = means[known]  # the exact federated means (the surrogate fit may round differently)
    model.statistics_ = stats
    return model


# -- StandardScaler -----------------------------------------------------------------------------------
def fit_scaler(est: Any, session: Session, ctx: StageContext) -> Any:
    """``StandardScaler``: means and population variances per column, missing values ignored."""
    from sklearn.base import clone
    from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

    _, count, means, ssd = moments(session, ctx)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 0.5, ssd / np.maximum(count, 1.0), np.nan)
    seen = np.rint(count).astype(np.int64)
    model = clone(est)
    sur = np.vstack([np.nan_to_num(means) - np.sqrt(np.nan_to_num(var)), np.nan_to_num(means)
                     + np.sqrt(np.nan_to_num(var))])
    x = ctx.surrogate_x(len(sur), sur)
    quiet(model.fit, x)
    # Same type as scikit-learn's own fit gives (a scalar when every column has the same count).
    dtype = np.asarray(model.n_samples_seen_).dtype
    model.n_samples_seen_ = seen.astype(dtype)[0] if seen.size and np.ptp(seen) == 0 else seen.astype(dtype)
    if model.mean_ is not None:
        model.mean_ = means
    if model.var_ is not None:
        model.var_ = var
        constant = _is_constant_feature(var, means, seen)
        model.scale_ = _handle_zeros_in_scale(np.sqrt(var), copy=False, constant_mask=constant)
    return model


# -- encoders ---------------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def local_categories(df: pl.DataFrame, *, spec: DataSpec, prefix: Prefix | None) -> list[list[Any]]:
    """The distinct values of each column of the step's input, as scikit-learn orders them (inside a party)."""
    from sklearn.preprocessing import OrdinalEncoder

    x, _ = stage_xy(df, spec, prefix, "train")
    enc = quiet(OrdinalEncoder().fit, x)
    return [[_jsonable(v) for v in cats] for cats in enc.categories_]


def fit_encoder(est: Any, session: Session, ctx: StageContext) -> Any:
    """``OneHotEncoder``/``OrdinalEncoder`` over the union of the parties' category sets."""
    import time

    from sklearn.base import clone

    for opt in ("min_frequency", "max_categories"):
        if getattr(est, opt, None) is not None:
            raise UnsupportedEstimatorError(
                f"{type(est).__name__}({opt}=...) needs category counts; declare the categories instead"
            )
    t0 = time.perf_counter()
    b0 = session.transcript.nbytes
    d = ctx.n_features
    if isinstance(est.categories, str) and est.categories == "auto":
        union, channel = union_in_the_clear(
            session.coord, session.parties, partial(local_categories, spec=ctx.spec, prefix=ctx.prefix),
            lambda sets: [first_seen_union(s[j] for s in sets) for j in range(d)],
        )
        session.transcript.extend(channel.run)
        for p in session.parties:  # each party's own category sets, in the clear: one exact release each
            session.note_release("category_union", f"{ctx.name}: the category sets the party holds", [p.name])
        note = "union of the parties' category sets (reveals which values each party holds, not counts)"
    else:
        union = [list(np.asarray(c).tolist()) for c in est.categories]
        if len(union) != d:
            raise ConfigurationError(f"{type(est).__name__}: {len(union)} category lists for {d} columns")
        note = "declared categories: nothing revealed"
    m = max(1, max((len(u) for u in union), default=1))
    if ctx.feature_names is not None:
        cols = {}
        for j, c in enumerate(ctx.feature_names):
            vals = [union[j][i % len(union[j])] if union[j] else None for i in range(m)]
            dtype = (ctx.schema or {}).get(c)
            cols[c] = pl.Series(c, vals, dtype=dtype, strict=False)
            if ctx.categories is not None:
                ctx.categories[c] = [v for v in union[j] if v is not None]
        sur: Any = pl.DataFrame(cols)
    else:
        sur = np.empty((m, d), dtype=object)
        for j in range(d):
            for i in range(m):
                sur[i, j] = union[j][i % len(union[j])] if union[j] else None
    model = clone(est)
    quiet(model.fit, sur)
    session.record(stage=ctx.name, round=1, party=GLOBAL, status="ok", seconds=time.perf_counter() - t0,
                   bytes=session.transcript.nbytes - b0, note=note)
    return model


# -- stateless ----------------------------------------------------------------------------------------------
def fit_stateless(est: Any, session: Session, ctx: StageContext) -> Any:
    """A transformer whose fit learns nothing from the rows (``FunctionTransformer``, constant imputation)."""
    from sklearn.base import clone

    model = clone(est)
    quiet(model.fit, ctx.surrogate_x(1))
    session.record(stage=ctx.name, round=0, party=GLOBAL, status="ok", note="no data needed")
    return model


# -- ColumnTransformer -----------------------------------------------------------------------------------------
def _resolve_columns(ct: Any, ctx: StageContext, cols: Any) -> list[Any]:
    from sklearn.utils._indexing import _get_column_indices

    if callable(cols):
        raise UnsupportedEstimatorError(
            "ColumnTransformer column selectors given as callables (make_column_selector) need a pandas frame; "
            "list the columns by name"
        )
    probe = ctx.surrogate_x(0) if ctx.feature_names is not None else np.zeros((0, ctx.n_features))
    idx = _get_column_indices(probe, cols)
    return [ctx.feature_names[i] for i in idx] if ctx.feature_names is not None else list(idx)


def fit_column_transformer(est: Any, session: Session, ctx: StageContext, fit_step: Any) -> Any:
    """Fit each branch federatedly on its columns, then assemble a genuine fitted ``ColumnTransformer``."""
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    used: set[Any] = set()
    branches: list[tuple[str, Any, list[Any]]] = []
    for name, trans, cols in est.transformers:
        resolved = _resolve_columns(est, ctx, cols)
        used.update(resolved)
        branches.append((name, trans, resolved))
    everything = ctx.feature_names if ctx.feature_names is not None else list(range(ctx.n_features))
    rest = [c for c in everything if c not in used]
    if not isinstance(est.remainder, str):
        branches.append(("remainder", est.remainder, rest))
    fitted: dict[str, Any] = {}
    for name, trans, cols in branches:
        if isinstance(trans, str) or not cols:
            continue  # "drop", "passthrough", or nothing to fit
        sub = _sub_context(ctx, cols, f"{ctx.name}/{name}")
        fitted[name] = fit_step(trans, session, sub)
    frozen = [(n, FrozenEstimator(fitted[n]) if n in fitted else t, c)
              for n, t, c in ((n, t, c) for n, t, c in branches if n != "remainder")]
    rem = est.remainder if isinstance(est.remainder, str) else (
        FrozenEstimator(fitted["remainder"]) if "remainder" in fitted else "drop")
    model = clone(est)
    model.set_params(transformers=[(n, t, c) for n, t, c in frozen], remainder=rem)
    quiet(model.fit, ctx.surrogate_x(1))
    model.set_params(transformers=est.transformers, remainder=est.remainder)
    model.transformers_ = [(n, t.estimator if isinstance(t, FrozenEstimator) else t, c)
                           for n, t, c in model.transformers_]
    if getattr(model, "_remainder", None) is not None and isinstance(model._remainder[1], FrozenEstimator):
        model._remainder = (model._remainder[0], model._remainder[1].estimator, model._remainder[2])
    return model


def _sub_context(ctx: StageContext, cols: list[Any], name: str) -> StageContext:
    from dataclasses import replace

    prefix = ctx.prefix.then(Select(tuple(cols)))
    if ctx.feature_names is not None:
        return replace(ctx, name=name, prefix=prefix, feature_names=list(cols), n_features=len(cols))
    return replace(ctx, name=name, prefix=prefix, feature_names=None, n_features=len(cols))
