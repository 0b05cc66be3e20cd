"""What each party trains on: feature selection, the local train/test split, and input checks.

Everything here either runs *inside* a party (the ``local_*`` functions, passed
to :meth:`fedbench.party.Party.compute`) or works on the parties' declared
schemas only (:func:`resolve_features`).  No function returns rows to the
coordinator except :func:`local_rows`, which the comparison's
*simulation-only* centralized baseline uses and labels as such.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..errors import (
    ConfigurationError,
    DtypeConflictError,
    EmptyPartyError,
    MissingColumnError,
    NonFiniteValueError,
    NonNumericColumnError,
    NullValuesError,
)
from ..party import column_kind, party_state

__all__ = [
    "DataSpec",
    "as_matrix",
    "is_id_column",
    "local_rows",
    "local_xy",
    "resolve_features",
    "split_mask",
]

# Column names that identify records rather than describe them: never used as features by default.
_ID_RE = re.compile(r"(^|[_\-.\s])(id|ids|uuid|guid|key|index|idx)$|^(id|uuid|guid|index|idx|row|rowid|row_id)$",
                    re.IGNORECASE)
_NUMERIC = {"numeric", "boolean"}


def is_id_column(name: str) -> bool:
    """Whether a column name looks like a record identifier (``patient_id``, ``id``, ``uuid``...)."""
    return bool(_ID_RE.search(name))


@dataclass(frozen=True)
class DataSpec:
    """Public description of the training data, identical in every party.

    Attributes
    ----------
    features : tuple of str
        Input columns, in model order.
    target : str or None
        Label column (``None`` for unsupervised estimators).
    test_size : float
        Fraction of each party's rows held out for evaluation (0 keeps all rows for training).
    seed : int
        Seed of the local split (every party splits its own rows with it).
    stratify : bool
        Split each class separately (classification).
    numeric : tuple of bool
        Whether each feature is numeric (or boolean) in the declared schemas.
    """

    features: tuple[str, ...]
    target: str | None
    test_size: float = 0.0
    seed: int = 0
    stratify: bool = False
    numeric: tuple[bool, ...] = ()

    @property
    def all_numeric(self) -> bool:
        """Whether every feature is numeric."""
        return all(self.numeric) if self.numeric else True


def split_mask(n: int, test_size: float, seed: int, y: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the held-out rows of one party (``True`` = test).

    The split is drawn inside the party from ``seed`` and the party's own row
    count, so it needs no communication and is reproducible.  With ``y`` each
    class is split separately (stratified), keeping at least one row of every
    class with two or more rows in the training part.
    """
    mask = np.zeros(n, dtype=bool)
    if test_size <= 0 or n == 0:
        return mask
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, n])
    if y is None:
        k = min(n - 1, int(np.ceil(test_size * n))) if n > 1 else 0
        mask[rng.permutation(n)[:k]] = True
        return mask
    for cls in _unique(y):
        idx = np.flatnonzero(y == cls)
        k = int(np.ceil(test_size * idx.size))
        if idx.size >= 2:
            k = min(k, idx.size - 1)
        elif idx.size == 1:
            k = 0  # a single example of a class stays in training
        mask[rng.permutation(idx)[:k]] = True
    return mask


def _unique(y: np.ndarray) -> list[Any]:
    try:
        return list(np.unique(y))
    except TypeError:  # mixed, unorderable labels
        return list(dict.fromkeys(y.tolist()))


def _target(df: pl.DataFrame, target: str) -> np.ndarray:
    s = df.get_column(target)
    n_null = s.null_count()
    if n_null:
        raise NullValuesError(
            f"target column {target!r} has missing values; drop those rows first "
            "(a label cannot be imputed)",
            column=target,
        )
    y = s.to_numpy()
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise NonFiniteValueError(f"target column {target!r} holds NaN or infinity", column=target)
    return y


#: Key of the party-side cache of split rows, ``{(spec, part): (x, y)}``, in the party's store: it lives
#: wherever the party's frame lives, so a round's local step does not redo the split every time.
_SPLITS = "fedbench.learn.splits"


def local_xy(df: pl.DataFrame, spec: DataSpec, part: str = "train") -> tuple[pl.DataFrame, np.ndarray | None]:
    """The party's features (a polars DataFrame) and labels for ``part`` (``train``, ``test`` or ``all``).

    Runs inside a party.  The result is cached with the party's frame; callers must not modify it.
    """
    if part not in ("train", "test", "all"):
        raise ConfigurationError(f"part must be 'train', 'test' or 'all', got {part!r}")
    cache: dict[tuple[DataSpec, str], tuple[pl.DataFrame, np.ndarray | None]] = (
        party_state(df).setdefault(_SPLITS, {}))
    hit = cache.get((spec, part))
    if hit is None:
        if len(cache) >= 8:
            cache.clear()
        hit = cache[(spec, part)] = _split(df, spec, part)
    return hit


def _split(df: pl.DataFrame, spec: DataSpec, part: str) -> tuple[pl.DataFrame, np.ndarray | None]:
    y = _target(df, spec.target) if spec.target is not None else None
    x = df.select(list(spec.features))
    if part == "all" or spec.test_size <= 0:
        if part == "test":
            return x.head(0), (y[:0] if y is not None else None)
        return x, y
    test = split_mask(df.height, spec.test_size, spec.seed, y if spec.stratify else None)
    keep = test if part == "test" else ~test
    return x.filter(pl.Series(keep)), (y[keep] if y is not None else None)


def local_rows(df: pl.DataFrame, spec: DataSpec, part: str = "train") -> tuple[pl.DataFrame, np.ndarray | None]:
    """Raw rows of one party, **for the simulation-only centralized baseline** (pooled data).

    A real federation cannot run this; :meth:`FitRun.compare` uses it to show
    what pooling would give and labels the result "simulation only".
    """
    return local_xy(df, spec, part)


def as_matrix(x: Any, *, what: str = "input") -> np.ndarray:
    """A float64 matrix from a polars DataFrame, sparse matrix or array (nulls become NaN).

    Raises
    ------
    NonNumericColumnError
        A column is not numeric (it needs an encoder earlier in the pipeline).
    """
    if isinstance(x, pl.DataFrame):
        for name, dtype in x.schema.items():
            if column_kind(dtype) not in _NUMERIC:
                raise NonNumericColumnError(
                    f"column {name!r} is {dtype}, not numeric: put an encoder (OneHotEncoder in a "
                    "ColumnTransformer) before this step",
                    column=name,
                )
        return x.cast(pl.Float64).to_numpy()
    if hasattr(x, "toarray"):
        x = x.toarray()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise NonNumericColumnError(
                f"the {what} holds non-numeric values; put an encoder before this step"
            ) from None
    return np.asarray(arr, dtype=np.float64)


def _shared(parties: Sequence[Any]) -> list[str]:
    first = list(parties[0].columns)
    return [c for c in first if all(c in p.columns for p in parties[1:])]


def resolve_features(
    parties: Sequence[Any],
    target: str | None,
    features: Sequence[str] | None,
    *,
    accepts_strings: bool,
    exclude: Sequence[str] = (),
) -> tuple[list[str], list[bool], list[str]]:
    """Choose and check the feature columns from the parties' declared schemas.

    Parameters
    ----------
    parties : sequence of Party
        Parties taking part.
    target : str or None
        Label column, required in every party.
    features : sequence of str or None
        Explicit features; ``None`` picks every shared numeric (or boolean)
        column except the target and identifier-like columns, plus shared
        string columns when ``accepts_strings`` (an encoder comes first).
    accepts_strings : bool
        Whether the model starts with an encoder that can take string columns.
    exclude : sequence of str
        Further columns never used by default (e.g. the PSI key).

    Returns
    -------
    features : list of str
    numeric : list of bool
        Whether each feature is numeric.
    skipped : list of str
        Shared columns left out by the default rule (for the run summary).

    Raises
    ------
    MissingColumnError, DtypeConflictError, NonNumericColumnError, ConfigurationError
    """
    if target is not None:
        for p in parties:
            if target not in p.columns:
                raise MissingColumnError(
                    f"party {p.name!r} has no target column {target!r} (it has: {', '.join(p.columns)})",
                    party=p.name,
                    column=target,
                )
    skipped: list[str] = []
    if features is None:
        chosen = []
        for c in _shared(parties):
            if c == target or c in exclude:
                continue
            kinds = {column_kind(p.schema[c]) for p in parties}
            if is_id_column(c):
                skipped.append(c)
            elif kinds <= _NUMERIC or (accepts_strings and kinds == {"string"}):
                chosen.append(c)
            else:
                skipped.append(c)
        if not chosen:
            raise ConfigurationError(
                "the parties share no usable feature column"
                + (f" besides the target {target!r}" if target else "")
                + "; name them with features=[...]"
            )
        features = chosen
    else:
        if isinstance(features, str):
            features = [features]
        features = list(features)
        if not features or not all(isinstance(c, str) for c in features):
            raise ConfigurationError(f"features must be a non-empty list of column names, got {features!r}")
        if len(set(features)) != len(features):
            raise ConfigurationError(f"features listed twice in {features}")
        if target is not None and target in features:
            raise ConfigurationError(f"the target {target!r} is also listed as a feature")
    for p in parties:
        p.require_columns(list(features))
    numeric = []
    for c in features:
        kind_of = {p.name: column_kind(p.schema[c]) for p in parties}
        coarse = {"numeric" if k in _NUMERIC else k for k in kind_of.values()}
        if len(coarse) > 1:
            odd = (
                next(n for n, k in kind_of.items() if k not in _NUMERIC) if "numeric" in coarse else next(iter(kind_of))
            )
            raise DtypeConflictError(
                f"column {c!r} is {kind_of[odd]} in party {odd!r} but "
                + ", ".join(f"{k} in {n!r}" for n, k in kind_of.items() if n != odd)
                + "; cast it to one type in every party",
                party=odd,
                column=c,
            )
        is_num = coarse == {"numeric"}
        if not is_num and not accepts_strings:
            first = next(iter(kind_of))
            raise NonNumericColumnError(
                f"party {first!r}: feature {c!r} is {kind_of[first]}, not numeric; add an encoder for it "
                "(e.g. make_column_transformer((OneHotEncoder(), [...]), remainder=...)) or leave it out",
                party=first,
                column=c,
            )
        numeric.append(is_num)
    return list(features), numeric, skipped


def check_local(df: pl.DataFrame, spec: DataSpec, *, allow_nulls: bool, min_train: int = 1) -> dict[str, float]:
    """Validate a party's data inside the party before any training message is sent.

    Returns the party's train and test row counts (sent to nobody: the
    protocols sum them securely); raises on missing labels, nulls the model
    cannot take, or an empty training split.
    """
    x, _ = local_xy(df, spec, "train")
    if x.height < min_train:
        raise EmptyPartyError(
            f"fewer than {min_train} training rows after holding out test_size={spec.test_size}"
        )
    if not allow_nulls:
        for c in spec.features:
            n_null = df.get_column(c).null_count()
            if n_null:
                raise NullValuesError(
                    f"feature {c!r} has missing values and the model cannot take them; "
                    "put SimpleImputer() first in a pipeline or drop those rows",
                    column=c,
                )
    for c, num in zip(spec.features, spec.numeric or [True] * len(spec.features), strict=True):
        s = df.get_column(c)
        if num and s.dtype.is_float():
            bad = int(s.is_infinite().sum()) + int(s.is_nan().sum())  # counts of a boolean series: ints
            if bad:
                raise NonFiniteValueError(
                    f"feature {c!r} holds NaN or infinite values; turn them into nulls "
                    "(fill_nan(None)) and impute them",
                    column=c,
                )
    return {"train": float(x.height), "test": float(df.height - x.height)}
