"""Pipeline stages: what one step trains on, inside each party, and how it is scored.

A pipeline is fitted step by step.  When a step is done it is broadcast to the
parties (its fitted statistics are public to them), and the next step's local
functions first push each party's rows through the fitted steps before them:
the :class:`Prefix`.  :class:`StageContext` is the public description of the
step being trained; every local function here runs inside a party.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from ..crypto.packing import Encoding
from ..errors import ConfigurationError, NullValuesError
from ..party import column_kind
from .data import DataSpec, as_matrix, local_xy

__all__ = [
    "METRICS",
    "Prefix",
    "Select",
    "StageContext",
    "combine_scores",
    "local_scores",
    "plural",
    "quiet",
    "stage_xy",
    "surrogate_fit",
    "surrogate_input",
]


@dataclass(frozen=True)
class Select:
    """Select columns (by name for data frames, by position for arrays): a ColumnTransformer branch."""

    columns: tuple[Any, ...]

    def transform(self, x: Any) -> Any:
        """The selected columns of ``x``."""
        if isinstance(x, pl.DataFrame):
            cols = [x.columns[c] if isinstance(c, int | np.integer) else c for c in self.columns]
            return x.select(cols)
        if hasattr(x, "tocsc"):
            return x.tocsc()[:, list(self.columns)]
        return np.asarray(x)[:, list(self.columns)]


@dataclass(frozen=True)
class Prefix:
    """Fitted steps applied, in order, to a party's rows before the step being trained."""

    steps: tuple[Any, ...] = ()

    def transform(self, x: Any) -> Any:
        """``x`` through every step."""
        for step in self.steps:
            x = step.transform(x)
        return x

    def then(self, step: Any) -> Prefix:
        """The prefix followed by ``step``."""
        return Prefix((*self.steps, step))

    def __bool__(self) -> bool:
        return bool(self.steps)


@dataclass
class StageContext:
    """Public description of the step being trained (identical for every party).

    Attributes
    ----------
    name : str
        Pipeline step name (``"model"`` for a bare estimator).
    spec : DataSpec
        Columns, target and local split.
    prefix : Prefix
        Fitted steps before this one.
    kind : {"classifier", "regressor", "clusterer", "transformer"}
        What the step is.
    classes : numpy.ndarray or None
        Agreed class labels (classification).
    class_counts : numpy.ndarray or None
        Securely summed training rows per class.
    n_train : float
        Securely summed training rows.
    n_features : int
        Width of this step's input.
    feature_names : list of str or None
        Input column names when the step sees the raw feature frame.
    metric : str
        Evaluation metric of the history and comparison.
    seed : int
        Run seed.
    encoding : Encoding
        Encoding of model-update sums (the federation's).
    exact_encoding : Encoding
        Encoding of exact and second-order sums (48 fractional bits).
    evaluate_part : {"test", "train"}
        Which split the history's metric uses.
    party_metrics : bool
        Whether per-party loss and metric rows are reported (simulation diagnostics).
    schema : dict, optional
        Declared polars dtypes of the raw feature columns.
    categories : dict, optional
        Category lists agreed so far, by raw column (shared by the contexts of one run).
    """

    name: str
    spec: DataSpec
    prefix: Prefix = field(default_factory=Prefix)
    kind: str = "transformer"
    classes: np.ndarray | None = None
    class_counts: np.ndarray | None = None
    n_train: float = 0.0
    n_features: int = 0
    feature_names: list[str] | None = None
    metric: str | None = "accuracy"
    seed: int = 0
    encoding: Encoding = field(default_factory=Encoding)
    exact_encoding: Encoding = field(default_factory=Encoding)
    evaluate_part: str = "test"
    party_metrics: bool = True
    schema: dict[str, Any] | None = None
    categories: dict[str, list[Any]] | None = None

    def with_prefix(self, prefix: Prefix, name: str) -> StageContext:
        """The context of the next step."""
        return replace(self, prefix=prefix, name=name)

    def surrogate_x(self, rows: int, values: Any = None, *, distinct: float = 0.0) -> Any:
        """A public input of this step's shape (see :func:`surrogate_input`)."""
        return surrogate_input(rows, n_features=self.n_features, feature_names=self.feature_names,
                               schema=self.schema, categories=self.categories, values=values, distinct=distinct)


def surrogate_input(rows: int, *, n_features: int, feature_names: Sequence[str] | None = None,
                    schema: dict[str, Any] | None = None, categories: dict[str, list[Any]] | None = None,
                    values: Any = None, distinct: float = 0.0) -> Any:
    """A public input of a step's shape, built from no party's data (the one surrogate builder).

    Fitting an estimator on it gives a correctly fitted structure whose learned
    parameters are then overwritten with the federated ones.

    Parameters
    ----------
    rows : int
        Number of rows.
    n_features : int
        Number of columns.
    feature_names : list of str, optional
        Named raw columns: a polars DataFrame is returned (string columns get a
        placeholder, columns with known categories their first category);
        otherwise a float matrix.
    schema, categories : dict, optional
        Column dtypes and known categories (named columns only).
    values : array, optional
        Numeric values: one per column (repeated on every row) or a ``rows x n_features`` matrix; default 0.
    distinct : float, default 0.0
        Add ``distinct * i`` to row ``i``'s numbers (some solvers need distinct rows).
    """
    num = np.zeros((rows, n_features)) if values is None else np.broadcast_to(
        np.asarray(values, dtype=float), (rows, n_features)).copy()
    if distinct:
        num = num + np.arange(rows)[:, None] * distinct
    if feature_names is None:
        return num
    cols = {}
    for i, c in enumerate(feature_names):
        dtype = (schema or {}).get(c, pl.Float64)
        known = (categories or {}).get(c)
        if known:
            cols[c] = pl.Series(c, [known[0]] * rows, dtype=dtype, strict=False)
        elif column_kind(dtype) == "string":
            cols[c] = pl.Series(c, ["a"] * rows, dtype=pl.String)
        else:
            cols[c] = pl.Series(c, num[:, i], dtype=pl.Float64)
    return pl.DataFrame(cols)


def quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with warnings silenced (surrogate fits always 'fail to converge')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def surrogate_fit(est: Any, ctx: StageContext) -> Any:
    """Fit ``est`` on a public all-zero input of the right shape (structure only, no party data)."""
    params = est.get_params(deep=False)
    tweaks = {k: 1 for k in ("max_iter",) if k in params}
    if "early_stopping" in params:
        tweaks["early_stopping"] = False
    if "n_iter_no_change" in params and params.get("early_stopping"):
        tweaks["n_iter_no_change"] = params["n_iter_no_change"]
    est.set_params(**tweaks)
    if ctx.kind == "classifier":
        classes = np.asarray(ctx.classes)
        m = max(len(classes), 2)
        # Distinct rows keep every solver happy (a named frame stays all-zero, as before).
        x = ctx.surrogate_x(m, distinct=1e-3 if ctx.feature_names is None else 0.0)
        quiet(est.fit, x, np.resize(classes, m))
    else:
        quiet(est.fit, ctx.surrogate_x(2), np.array([1.0, 2.0]))
    est.set_params(**{k: params[k] for k in tweaks})
    return est


def plural(n: int, word: str) -> str:
    """``"1 round"``, ``"2 rounds"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stage_xy(df: pl.DataFrame, spec: DataSpec, prefix: Prefix | None, part: str = "train") -> tuple[Any, Any]:
    """A party's input to the step being trained (its rows through the fitted prefix) and labels."""
    x, y = local_xy(df, spec, part)
    if prefix:
        x = prefix.transform(x)
    return x, y


def stage_matrix(df: pl.DataFrame, spec: DataSpec, prefix: Prefix | None, part: str = "train", *,
                 allow_missing: bool = False) -> tuple[np.ndarray, Any]:
    """Like :func:`stage_xy` but as a float64 matrix; missing values raise unless ``allow_missing``."""
    x, y = stage_xy(df, spec, prefix, part)
    names = list(x.columns) if isinstance(x, pl.DataFrame) else _output_names(prefix)
    m = as_matrix(x)
    if not allow_missing:
        bad = np.flatnonzero(np.isnan(m).any(axis=0))
        if bad.size:
            col = names[int(bad[0])] if names else f"input column {int(bad[0])}"
            raise NullValuesError(
                f"{col!r} has missing values where the model needs complete rows; put SimpleImputer() before "
                "this step in a pipeline (or drop those rows)",
                column=col,
            )
    return m, y


def _output_names(prefix: Prefix | None) -> list[str] | None:
    """Column names after the prefix, for error messages (when its last step can name them)."""
    if not prefix:
        return None
    try:
        return [str(c) for c in prefix.steps[-1].get_feature_names_out()]
    except Exception:  # not every step names its outputs
        return None


# -- scores from additive statistics -------------------------------------------------------------
#: Metrics whose pooled value follows from per-party sums, and whether higher is better.
METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "log_loss": False,
    "r2": True,
    "mse": False,
    "mae": False,
    "inertia": False,
    "log_likelihood": True,
}


def default_metric(kind: str, estimator: Any) -> str | None:
    """The metric of an estimator's own ``score``: accuracy, R², inertia, log-likelihood, or None."""
    if kind == "classifier":
        return "accuracy"
    if kind == "regressor":
        return "r2"
    if kind == "clusterer":
        return "inertia"
    if hasattr(estimator, "score_samples"):
        return "log_likelihood"
    return None


def local_scores(
    df: pl.DataFrame,
    *,
    spec: DataSpec,
    model: Any,
    prefix: Prefix | None,
    metric: str,
    classes: Sequence[Any] | None,
    part: str,
) -> dict[str, Any]:
    """Additive statistics of ``metric`` for ``model`` on a party's ``part`` split (runs inside the party)."""
    x, y = stage_xy(df, spec, prefix, part)
    n = float(len(y) if y is not None else (x.height if isinstance(x, pl.DataFrame) else np.shape(x)[0]))
    k = len(classes) if classes is not None else 0
    if n == 0:
        return _empty(metric, k)
    if metric == "accuracy":
        return {"n": n, "correct": float(np.sum(model.predict(x) == y))}
    if metric == "balanced_accuracy":
        pred = model.predict(x)
        idx = np.searchsorted(np.asarray(classes), y)
        per_n = np.bincount(idx, minlength=k).astype(float)
        per_c = np.bincount(idx, weights=(pred == y).astype(float), minlength=k)
        return {"n": n, "class_n": per_n, "class_correct": per_c}
    if metric == "log_loss":
        proba = np.clip(model.predict_proba(x), np.finfo(np.float64).eps, 1.0)
        idx = np.searchsorted(np.asarray(model.classes_), y)
        return {"n": n, "loss": float(-np.sum(np.log(proba[np.arange(len(y)), idx])))}
    if metric in ("r2", "mse", "mae"):
        pred = np.asarray(model.predict(x), dtype=float).ravel()
        yy = np.asarray(y, dtype=float)
        return {"n": n, "sse": float(np.sum((yy - pred) ** 2)), "sae": float(np.sum(np.abs(yy - pred))),
                "sy": float(yy.sum()), "syy": float(np.sum(yy**2))}
    if metric == "inertia":
        return {"n": n, "inertia": -float(model.score(x))}  # KMeans.score is minus the inertia of x
    if metric == "log_likelihood":
        return {"n": n, "ll": float(np.sum(model.score_samples(x)))}
    raise ConfigurationError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")


def _empty(metric: str, k: int) -> dict[str, Any]:
    if metric == "balanced_accuracy":
        return {"n": 0.0, "class_n": np.zeros(k), "class_correct": np.zeros(k)}
    if metric in ("r2", "mse", "mae"):
        return {"n": 0.0, "sse": 0.0, "sae": 0.0, "sy": 0.0, "syy": 0.0}
    key = {"accuracy": "correct", "log_loss": "loss", "inertia": "inertia", "log_likelihood": "ll"}[metric]
    return {"n": 0.0, key: 0.0}


def combine_scores(metric: str, stats: dict[str, Any]) -> float | None:
    """The metric from (summed) additive statistics; ``None`` when there are no rows."""
    n = float(stats.get("n", 0.0))
    if n <= 0:
        return None
    if metric == "accuracy":
        return float(stats["correct"]) / n
    if metric == "balanced_accuracy":
        cn = np.asarray(stats["class_n"])
        seen = cn > 0.5
        return float(np.mean(np.asarray(stats["class_correct"])[seen] / cn[seen]))
    if metric == "log_loss":
        return float(stats["loss"]) / n
    if metric == "r2":
        sst = float(stats["syy"]) - float(stats["sy"]) ** 2 / n
        if sst <= 1e-12 * max(1.0, abs(float(stats["syy"]))):
            return None
        return 1.0 - float(stats["sse"]) / sst
    if metric == "mse":
        return float(stats["sse"]) / n
    if metric == "mae":
        return float(stats["sae"]) / n
    if metric == "inertia":
        return float(stats["inertia"])
    if metric == "log_likelihood":
        return float(stats["ll"]) / n
    raise ConfigurationError(f"unknown metric {metric!r}")
