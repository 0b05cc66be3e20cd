"""Partitioners: simulate a federation from one dataset (IID, label skew, quantity skew, natural split).

This module builds :class:`~fedbench.Federation` objects, so it sits above
``federation.py`` (and above :mod:`fedbench.learn`, which re-exports its names
lazily as ``fb.learn.partition`` etc.): the dependency points one way.

Every partitioner is seeded, keeps each row in exactly one party, keeps the
rows of a party in their original order, and returns ``{party name: polars
DataFrame}``; :func:`to_federation` (or ``as_federation=True``) turns that into a
:class:`~fedbench.Federation`.

* :func:`iid_partition`: rows shuffled and dealt into ``n`` parties of (nearly) equal size;
* :func:`dirichlet_partition`: label skew; for each class, the share of its
  rows going to each party is drawn from ``Dirichlet(alpha)`` (Hsu et al.,
  2019): small ``alpha`` gives parties dominated by few classes, large
  ``alpha`` approaches IID;
* :func:`quantity_partition`: quantity skew; party sizes drawn from
  ``Dirichlet(alpha)`` with a minimum size, rows otherwise IID;
* :func:`natural_partition`: one party per value of a column (hospital, region...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from .errors import ConfigurationError, MissingColumnError
from .federation import Federation

__all__ = [
    "dirichlet_partition",
    "iid_partition",
    "natural_partition",
    "partition",
    "quantity_partition",
    "to_federation",
]


def _names(parties: int | Sequence[str]) -> list[str]:
    if isinstance(parties, int | np.integer):
        if parties < 1:
            raise ConfigurationError(f"need at least one party, got {parties}")
        width = len(str(int(parties) - 1))
        return [f"party_{i:0{width}d}" for i in range(int(parties))]
    names = list(parties)
    if not names or len(set(names)) != len(names):
        raise ConfigurationError(f"party names must be non-empty and distinct, got {names!r}")
    return names


def _frame(data: Any) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if type(data).__module__.startswith("pandas"):
        return pl.from_pandas(data)
    raise ConfigurationError(f"expected a polars or pandas DataFrame, got {type(data).__name__}")


def _assemble(df: pl.DataFrame, names: list[str], owner: np.ndarray) -> dict[str, pl.DataFrame]:
    return {name: df.filter(pl.Series(owner == i)) for i, name in enumerate(names)}


def _check_min(names: list[str], owner: np.ndarray, min_rows: int, what: str) -> None:
    sizes = np.bincount(owner, minlength=len(names))
    if sizes.min() < min_rows:
        worst = names[int(np.argmin(sizes))]
        raise ConfigurationError(
            f"{what}: party {worst!r} would get {int(sizes.min())} rows (< min_rows={min_rows}); use fewer parties, "
            "a larger alpha or a smaller min_rows"
        )


def iid_partition(data: Any, parties: int | Sequence[str], *, seed: int = 0,
                  min_rows: int = 1) -> dict[str, pl.DataFrame]:
    """Shuffle the rows and deal them into parties of (nearly) equal size.

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame
        The dataset to split.
    parties : int or list of str
        Number of parties (named ``party_0``...) or their names.
    seed : int, default 0
        Seed of the shuffle.
    min_rows : int, default 1
        Refuse a split that gives a party fewer rows.

    Returns
    -------
    dict of str to polars.DataFrame
    """
    df, names = _frame(data), _names(parties)
    rng = np.random.default_rng(seed)
    owner = np.empty(df.height, dtype=np.int64)
    owner[rng.permutation(df.height)] = np.arange(df.height) % len(names)
    _check_min(names, owner, min_rows, "iid_partition")
    return _assemble(df, names, owner)


def dirichlet_partition(data: Any, parties: int | Sequence[str], *, label: str, alpha: float = 0.5, seed: int = 0,
                        min_rows: int = 1, max_tries: int = 100) -> dict[str, pl.DataFrame]:
    """Label skew: each class's rows are split over parties in ``Dirichlet(alpha)`` proportions.

    Draws are repeated (seeded) until every party has at least ``min_rows`` rows.

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame
        The dataset to split.
    parties : int or list of str
        Number of parties or their names.
    label : str
        Class column.
    alpha : float, default 0.5
        Concentration: small is skewed, large is close to IID.
    seed : int, default 0
        Seed of the draws.
    min_rows : int, default 1
        Fewest rows a party may get.
    max_tries : int, default 100
        Draws attempted before giving up on ``min_rows``.

    Raises
    ------
    MissingColumnError, ConfigurationError
    """
    df, names = _frame(data), _names(parties)
    if label not in df.columns:
        raise MissingColumnError(f"no label column {label!r} (columns: {', '.join(df.columns)})", column=label)
    if not alpha > 0:
        raise ConfigurationError(f"alpha must be > 0, got {alpha!r}")
    y = df.get_column(label).to_numpy()
    rng = np.random.default_rng(seed)
    k = len(names)
    for _ in range(max_tries):
        owner = np.empty(df.height, dtype=np.int64)
        for cls in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == cls))
            share = rng.dirichlet(np.full(k, float(alpha)))
            cuts = (np.cumsum(share)[:-1] * idx.size).round().astype(int)
            for i, part in enumerate(np.split(idx, cuts)):
                owner[part] = i
        if np.bincount(owner, minlength=k).min() >= min_rows:
            return _assemble(df, names, owner)
    _check_min(names, owner, min_rows, f"dirichlet_partition after {max_tries} draws")
    return _assemble(df, names, owner)  # pragma: no cover - _check_min raised


def quantity_partition(data: Any, parties: int | Sequence[str], *, alpha: float = 0.5, seed: int = 0,
                       min_rows: int = 1) -> dict[str, pl.DataFrame]:
    """Quantity skew: party sizes in ``Dirichlet(alpha)`` proportions (at least ``min_rows`` each), rows IID."""
    df, names = _frame(data), _names(parties)
    if not alpha > 0:
        raise ConfigurationError(f"alpha must be > 0, got {alpha!r}")
    k = len(names)
    if df.height < k * min_rows:
        raise ConfigurationError(f"{df.height} rows cannot give {k} parties {min_rows} rows each")
    rng = np.random.default_rng(seed)
    spare = df.height - k * min_rows
    props = rng.dirichlet(np.full(k, float(alpha))) * spare
    extra = np.floor(props).astype(int)
    extra[np.argsort(extra - props)[: spare - int(extra.sum())]] += 1  # largest remainders get the leftovers
    sizes = min_rows + extra
    owner = np.empty(df.height, dtype=np.int64)
    owner[rng.permutation(df.height)] = np.repeat(np.arange(k), sizes)
    return _assemble(df, names, owner)


_SAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def natural_partition(data: Any, by: str, *, drop: bool = False) -> dict[str, pl.DataFrame]:
    """One party per value of column ``by`` (named after the value; nulls go to party ``"null"``).

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame
        The dataset to split.
    by : str
        Grouping column.
    drop : bool, default False
        Remove ``by`` from the parties' frames.
    """
    df = _frame(data)
    if by not in df.columns:
        raise MissingColumnError(f"no column {by!r} (columns: {', '.join(df.columns)})", column=by)
    out: dict[str, pl.DataFrame] = {}
    for value in df.get_column(by).unique(maintain_order=True).sort(nulls_last=True).to_list():
        name = "null" if value is None else (_SAFE.sub("_", str(value)).strip("_") or "value")
        if name[0] in ".-":
            name = "g" + name
        base, i = name, 1
        while name in out:
            i += 1
            name = f"{base}_{i}"
        sub = df.filter(pl.col(by).is_null() if value is None else pl.col(by) == value)
        out[name] = sub.drop(by) if drop else sub
    return out


def partition(data: Any, parties: int | Sequence[str] | None = None, *, scheme: str = "iid", label: str | None = None,
              alpha: float = 0.5, by: str | None = None, seed: int = 0, min_rows: int = 1,
              as_federation: bool = False, **federation_options: Any) -> Any:
    """Split one dataset into parties with ``scheme`` = ``"iid"``, ``"dirichlet"``, ``"quantity"`` or ``"natural"``.

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame
        The dataset to split.
    parties : int or list of str, optional
        Not used by ``"natural"``.
    scheme : str, default "iid"
        Partitioner to use.
    label : str, optional
        Class column (``"dirichlet"``).
    alpha : float, default 0.5
        Dirichlet concentration (``"dirichlet"``, ``"quantity"``).
    by : str, optional
        Grouping column (``"natural"``).
    seed, min_rows
        See the individual partitioners.
    as_federation : bool, default False
        Return a :class:`~fedbench.Federation` instead of a dict.
    **federation_options
        Passed to :class:`~fedbench.Federation` when ``as_federation``.
    """
    if scheme == "natural":
        if by is None:
            raise ConfigurationError("scheme='natural' needs by='<column>'")
        parts = natural_partition(data, by)
    else:
        if parties is None:
            raise ConfigurationError(f"scheme={scheme!r} needs the number (or names) of parties")
        if scheme == "iid":
            parts = iid_partition(data, parties, seed=seed, min_rows=min_rows)
        elif scheme == "dirichlet":
            if label is None:
                raise ConfigurationError("scheme='dirichlet' needs label='<class column>'")
            parts = dirichlet_partition(data, parties, label=label, alpha=alpha, seed=seed, min_rows=min_rows)
        elif scheme == "quantity":
            parts = quantity_partition(data, parties, alpha=alpha, seed=seed, min_rows=min_rows)
        else:
            raise ConfigurationError(f"scheme must be 'iid', 'dirichlet', 'quantity' or 'natural', got {scheme!r}")
    return to_federation(parts, **federation_options) if as_federation else parts


def to_federation(parts: dict[str, pl.DataFrame], **federation_options: Any) -> Federation:
    """A :class:`~fedbench.Federation` with one party per entry (empty parts are skipped)."""
    return Federation.from_frames(parts, **federation_options)
