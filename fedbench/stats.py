"""Federated statistics computed on secure sums.

Each statistic is a *local function* that runs inside every party and returns
named numbers, plus the arithmetic the analyst does on their secure sum.
Second moments use two rounds: the global mean is released first, then every
party sums squared deviations from it.  That costs one more round but avoids
the catastrophic cancellation of ``E[x^2] - E[x]^2`` on large values.

Null policy (per call, ``nulls=``)
    ``"skip"`` (default): null cells are left out and the number skipped is
    securely summed and reported as a total; ``"error"``: any null raises
    :class:`~fedbench.errors.NullValuesError` naming the party and column.
    NaN and infinity always raise :class:`~fedbench.errors.NonFiniteValueError`.

Integer columns are summed exactly (Python ints, also beyond ``2**53``).
Error messages name the party and column only: never how many nulls, nor
which non-finite value, a party holds (errors leave the party).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from .errors import ConfigurationError, NonFiniteValueError, NullValuesError

__all__ = [
    "NULL_POLICIES",
    "column_values",
    "exact_integer_sum",
    "local_column_sums",
    "local_complete_cases",
    "local_cross_deviations",
    "local_group_counts",
    "local_histogram",
    "local_squared_deviations",
]

NULL_POLICIES = ("skip", "error")


def check_null_policy(nulls: str) -> str:
    """Validate a null policy name."""
    if nulls not in NULL_POLICIES:
        raise ConfigurationError(f"nulls must be one of {NULL_POLICIES}, got {nulls!r}")
    return nulls


def column_values(df: pl.DataFrame, column: str, nulls: str) -> tuple[np.ndarray, int]:
    """Non-null values of a column as float64 and the number of nulls (inside a party)."""
    s = df.get_column(column)
    n_null = _check_nulls(s, column, nulls)
    v = s.drop_nulls().cast(pl.Float64).to_numpy()
    if not np.isfinite(v).all():
        raise NonFiniteValueError(
            f"column {column!r} holds NaN or infinity; NaN and infinity cannot be aggregated "
            "(turn them into nulls with fill_nan(None) or drop them)",
            column=column,
        )
    return v, n_null


def _check_nulls(s: pl.Series, column: str, nulls: str) -> int:
    n_null = s.null_count()
    if n_null and nulls == "error":
        # How many nulls is the party's own business: the message says only that there are some.
        raise NullValuesError(
            f"column {column!r} has null values; pass nulls='skip' to leave them out",
            column=column,
        )
    return n_null


def exact_integer_sum(values: np.ndarray) -> int:
    """Exact sum of a signed or unsigned integer array, as a Python int.

    Each value is split into its high and low 32 bits and both halves are summed
    in 64-bit arithmetic, which cannot overflow below 2**31 values; float64 would
    round sums beyond 2**53, and an int64 sum can wrap.
    """
    raw = np.asarray(values)
    if raw.size == 0:
        return 0
    hi: np.ndarray
    lo: np.ndarray
    if raw.dtype.kind == "u":
        u = raw.astype(np.uint64)
        hi, lo = u >> np.uint64(32), u & np.uint64(0xFFFFFFFF)
    else:
        s = raw.astype(np.int64)
        hi, lo = s >> np.int64(32), s & np.int64(0xFFFFFFFF)  # arithmetic shift: s == hi * 2**32 + lo
    total, step = 0, 1 << 31
    for i in range(0, raw.size, step):
        total += (int(hi[i : i + step].sum()) << 32) + int(lo[i : i + step].sum())
    return total


def local_column_sums(df: pl.DataFrame, *, columns: Sequence[str], nulls: str) -> dict[str, float | int]:
    """Per column: sum of non-null values, their count, and the nulls skipped.

    The sum of an integer column is an exact Python int.
    """
    out: dict[str, float | int] = {}
    for c in columns:
        s = df.get_column(c)
        if s.dtype.is_integer():
            n_null = _check_nulls(s, c, nulls)
            ints = s.drop_nulls().to_numpy()
            out[f"sum:{c}"] = exact_integer_sum(ints)  # a Python int: encoded and summed exactly
            out[f"count:{c}"] = float(ints.size)
        else:
            v, n_null = column_values(df, c, nulls)
            out[f"sum:{c}"] = float(v.sum())
            out[f"count:{c}"] = float(v.size)
        out[f"nulls:{c}"] = float(n_null)
    return out


def local_squared_deviations(
    df: pl.DataFrame, *, columns: Sequence[str], means: Sequence[float], nulls: str
) -> dict[str, float]:
    """Per column: sum of squared deviations from a released global mean."""
    out = {}
    for c, mu in zip(columns, means, strict=True):
        v, _ = column_values(df, c, nulls)
        out[f"ssd:{c}"] = float(np.sum((v - mu) ** 2))
    return out


def _complete(df: pl.DataFrame, columns: Sequence[str], nulls: str) -> np.ndarray:
    sub = df.select(columns)
    if nulls == "error":
        for c in columns:
            column_values(sub, c, "error")
    sub = sub.drop_nulls()
    x = sub.cast(pl.Float64).to_numpy() if sub.height else np.zeros((0, len(columns)))
    if not np.isfinite(x).all():
        col = columns[int(np.flatnonzero(~np.isfinite(x).all(axis=0))[0])]
        raise NonFiniteValueError(
            f"column {col!r} holds NaN or infinity; turn them into nulls or drop them", column=col
        )
    return x


def local_complete_cases(df: pl.DataFrame, *, columns: Sequence[str], nulls: str) -> dict[str, object]:
    """Count and column sums over rows with no null in ``columns``."""
    x = _complete(df, columns, nulls)
    return {"n": float(x.shape[0]), "sum": x.sum(axis=0), "dropped": float(df.height - x.shape[0])}


def local_cross_deviations(
    df: pl.DataFrame, *, columns: Sequence[str], means: Sequence[float], nulls: str
) -> dict[str, object]:
    """Sum of outer products of deviations from the global means (complete cases)."""
    x = _complete(df, columns, nulls) - np.asarray(means)
    return {"cross": x.T @ x}


def local_histogram(df: pl.DataFrame, *, column: str, edges: np.ndarray, nulls: str) -> dict[str, object]:
    """Counts per declared bin, and below/above-range and null counts."""
    v, n_null = column_values(df, column, nulls)
    counts, _ = np.histogram(v, bins=edges)
    return {
        "counts": counts.astype(np.float64),
        "below": float(np.sum(v < edges[0])),
        "above": float(np.sum(v > edges[-1])),
        "nulls": float(n_null),
    }


def local_group_counts(
    df: pl.DataFrame, *, by: Sequence[str], groups: Sequence[tuple[object, ...]]
) -> dict[str, object]:
    """Row counts for each agreed group (a tuple of values of ``by``)."""
    index = {g: i for i, g in enumerate(groups)}
    counts = np.zeros(len(groups))
    for row in df.group_by(list(by)).len().iter_rows():
        key = tuple(row[:-1])
        if key in index:
            counts[index[key]] += row[-1]
    return {"counts": counts}


def local_distinct(df: pl.DataFrame, *, by: Sequence[str]) -> list[tuple[object, ...]]:
    """Distinct value combinations of ``by`` (used only when categories are not declared)."""
    return [tuple(r) for r in df.select(list(by)).unique().iter_rows()]
