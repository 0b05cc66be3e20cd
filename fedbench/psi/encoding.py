"""Local preparation of each party's identifiers: validation, canonical encoding, policies.

Everything here runs *inside* a party (through :meth:`Party.compute`) and before
any message is sent, so that bad input raises with nothing recorded.

Canonical encoding
------------------
An identifier is a tuple of one value per key column.  Each component is written
as ``<tag><length>:<text>`` (a typed netstring: the tag says which kind of value
it is, the length counts UTF-8 bytes), and the components are concatenated.
Because every component carries its own length, the encoding is injective on
tuples: ``("ab", "c")`` and ``("a", "bc")`` encode differently, and a string
``"1"`` never collides with the number ``1`` (tags ``s`` and ``n``).

===========  ====  ==========================================================
kind          tag  text
===========  ====  ==========================================================
string        s    the (normalised) text; Categorical and Enum are strings
number        n    integers in decimal; floats equal to an integer likewise
                   (so ``3`` matches ``3.0``), other floats in polars' shortest
                   round-trip form; NaN and infinities count as missing
boolean       b    ``true`` / ``false``
date          d    ISO ``YYYY-MM-DD``
datetime      t/z  microseconds since the epoch; ``z`` for time-zone aware
                   values (compared as instants), ``t`` for naive ones
===========  ====  ==========================================================

Policies
--------
nulls
    A row whose key has a null component, or a string component that is empty
    after normalisation, has no identifier.  ``"drop"`` (default) leaves it out
    and counts it; ``"error"`` raises :class:`~fedbench.errors.NullValuesError`
    naming the party and the first such column.
duplicates
    Rows sharing one canonical identifier.  ``"first"`` keeps the first such row
    (PSI works on sets; ``align`` pairs that first row); ``"error"`` raises
    :class:`~fedbench.errors.DuplicateKeyError`.  The default is ``"first"``
    for ``reveal`` and ``cardinality`` and ``"error"`` for ``align``, where
    silently picking one of several rows would misalign a vertical analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import (
    DtypeConflictError,
    DuplicateKeyError,
    EmptyPartyError,
    KeyTypeError,
    NormalizationError,
    NullValuesError,
)
from ..party import Party
from .normalize import Normalizer

__all__ = ["LocalSet", "key_context", "key_kind", "set_builders"]

_NUMERIC = "number"


def key_kind(dtype: pl.DataType) -> str | None:
    """Identifier kind of a polars dtype, or ``None`` if it cannot be an identifier.

    Returns one of ``"string"``, ``"number"``, ``"boolean"``, ``"date"``,
    ``"datetime"`` (naive) or ``"datetime-tz"``.
    """
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical):
        return "string"
    if dtype.is_integer() or dtype.is_float():
        return _NUMERIC
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime-tz" if dtype.time_zone else "datetime"
    return None


def key_context(kinds: Sequence[str]) -> bytes:
    """Public description of the identifier, bound into the hash (domain separation)."""
    return ("key:" + ",".join(f"{len(k)}:{k}" for k in kinds)).encode()


@dataclass
class LocalSet:
    """One party's prepared identifiers; lives inside the party, never sent.

    Attributes
    ----------
    name : str
        Party name.
    encodings : list of bytes
        Distinct canonical encodings, in order of first occurrence.
    first_rows : numpy.ndarray
        Row index of the first occurrence of each distinct identifier.
    n_rows, n_missing, n_duplicates : int
        Rows in the party, rows without identifier, rows repeating an identifier.
    """

    name: str
    encodings: list[bytes]
    first_rows: np.ndarray
    n_rows: int
    n_missing: int
    n_duplicates: int

    @property
    def size(self) -> int:
        """Number of distinct identifiers."""
        return len(self.encodings)


def resolve_kinds(parties: Sequence[Party], on: Sequence[str], cast: str | None) -> list[str]:
    """Check that every key column has one compatible kind across parties.

    Raises
    ------
    KeyTypeError
        A column's dtype cannot be an identifier.
    DtypeConflictError
        Two parties hold different kinds for one column (and ``cast`` is not ``"string"``).
    """
    kinds: list[str] = []
    for col in on:
        first: tuple[str, pl.DataType, str] | None = None
        for p in parties:
            dtype = p.schema[col]
            if isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object) or dtype in (pl.Binary, pl.Null):
                raise KeyTypeError(
                    f"party {p.name!r}: column {col!r} has dtype {dtype}, which cannot be an identifier",
                    party=p.name,
                    column=col,
                )
            kind = "string" if cast == "string" else key_kind(dtype)
            if kind is None:
                raise KeyTypeError(
                    f"party {p.name!r}: column {col!r} has dtype {dtype}, which cannot be an identifier; "
                    "pass cast='string' to compare its text",
                    party=p.name,
                    column=col,
                )
            if first is None:
                first = (p.name, dtype, kind)
            elif first[2] != kind:
                raise DtypeConflictError(
                    f"column {col!r} is {first[1]} ({first[2]}) in party {first[0]!r} but {dtype} ({kind}) "
                    f"in party {p.name!r}: identifiers must be of one kind in every party; "
                    "fix the data or pass cast='string' to compare their text",
                    party=p.name,
                    column=col,
                )
        assert first is not None
        kinds.append(first[2])
    return kinds


def _component(s: pl.Series, kind: str) -> pl.Series:
    """Typed netstring of one key column (null where the value is missing)."""
    if kind == "string":
        text, tag = s, "s"
    elif kind == _NUMERIC:
        tag = "n"
        if s.dtype.is_float():
            f = pl.col("v")
            expr = (
                pl.when(f.is_nan() | f.is_infinite())
                .then(None)
                .when(f == f.floor())
                # integral floats encode like integers so that 3 matches 3.0
                .then(f.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(f.cast(pl.String))
            )
            text = pl.DataFrame({"v": s}).select(expr).to_series()
        else:
            text = s.cast(pl.String)
    elif kind == "boolean":
        text, tag = s.cast(pl.String), "b"
    elif kind == "date":
        text, tag = s.cast(pl.String), "d"
    else:  # datetime: microseconds since the epoch, whatever the stored unit
        text, tag = s.dt.epoch("us").cast(pl.String), ("z" if kind == "datetime-tz" else "t")
    return (
        pl.DataFrame({"v": text})
        .select(pl.concat_str([pl.lit(tag), pl.col("v").str.len_bytes().cast(pl.String), pl.lit(":"), pl.col("v")]))
        .to_series()
    )


def _normalise(party: str, col: str, s: pl.Series, label: str, fn: Normalizer) -> pl.Series:
    values = s.to_list()
    out: list[str | None] = []
    try:
        for v in values:
            r = None if v is None else fn(v)
            if r is not None and not isinstance(r, str):
                raise NormalizationError(
                    f"party {party!r}: normaliser {label!r} returned {type(r).__name__} for column {col!r}; "
                    "it must return a str (or None for a missing value)",
                    party=party,
                    column=col,
                )
            out.append(r)
    except NormalizationError:
        raise
    except Exception as exc:
        # The message deliberately omits the value: errors are shown outside the party.
        raise NormalizationError(
            f"party {party!r}: normaliser {label!r} failed on column {col!r} ({type(exc).__name__})",
            party=party,
            column=col,
        ) from exc
    return pl.Series(col, out, dtype=pl.String)


def _builder(
    party: Party,
    on: Sequence[str],
    kinds: Sequence[str],
    normalizers: dict[str, tuple[str, Normalizer]],
    strict_normalize: bool,
    cast: str | None,
    nulls: str,
    duplicates: str,
    mode: str,
) -> Callable[[pl.DataFrame], LocalSet]:
    for col, kind in zip(on, kinds, strict=True):
        if col in normalizers and strict_normalize and kind != "string":
            raise NormalizationError(
                f"party {party.name!r}: column {col!r} is {party.schema[col]}, but normalisation applies to "
                "string identifiers only; pass cast='string' to normalise its text",
                party=party.name,
                column=col,
            )

    # The closure captures the name, not the Party: a remote party (e.g. a Ray actor)
    # ships the function to where its rows live, and a Party refuses to be pickled.
    name = party.name

    def build(df: pl.DataFrame) -> LocalSet:
        parts: list[pl.Series] = []
        for col, kind in zip(on, kinds, strict=True):
            s = df.get_column(col)
            if cast == "string" and s.dtype != pl.String:
                try:
                    s = s.cast(pl.String)
                except Exception as exc:  # e.g. a dtype polars cannot print
                    raise KeyTypeError(
                        f"party {name!r}: column {col!r} ({s.dtype}) cannot be cast to string",
                        party=name,
                        column=col,
                    ) from exc
            elif kind == "string" and s.dtype != pl.String:
                s = s.cast(pl.String)  # Categorical / Enum
            if kind == "string" and col in normalizers:
                s = _normalise(name, col, s, *normalizers[col])
            if kind == "string":
                s = (
                    pl.DataFrame({"v": s})
                    .select(pl.when(pl.col("v") == "").then(None).otherwise(pl.col("v")))
                    .to_series()
                )  # empty identifiers are missing ones
            comp = _component(s, kind)
            if nulls == "error" and comp.null_count():
                # No count in the message: errors reach the driver, and counts are the party's.
                raise NullValuesError(
                    f"party {name!r}: key column {col!r} has missing or empty identifiers; "
                    "clean them or pass nulls='drop'",
                    party=name,
                    column=col,
                )
            parts.append(comp.alias(f"k{len(parts)}"))
        frame = pl.DataFrame(parts).with_row_index("row")
        key = pl.concat_str([pl.col(f"k{i}") for i in range(len(parts))]) if len(parts) > 1 else pl.col("k0")
        keyed = frame.select("row", key.cast(pl.Binary).alias("enc")).filter(pl.col("enc").is_not_null())
        distinct = keyed.unique(subset="enc", keep="first", maintain_order=True)
        n_missing = df.height - keyed.height
        n_dup = keyed.height - distinct.height
        if n_dup and duplicates == "error":
            raise DuplicateKeyError(
                f"party {name!r}: rows repeat an identifier of key {list(on)!r} "
                f"(after normalisation); {mode} needs unique keys: deduplicate, or pass duplicates='first' "
                "to use the first row of each identifier",
                party=name,
                column=on[0],
            )
        if distinct.height == 0:
            raise EmptyPartyError(
                f"party {name!r} has no usable identifier in {list(on)!r} "
                "(every row's key is missing or empty)",
                party=name,
            )
        return LocalSet(
            name=name,
            encodings=distinct.get_column("enc").to_list(),
            first_rows=distinct.get_column("row").to_numpy().astype(np.int64),
            n_rows=df.height,
            n_missing=n_missing,
            n_duplicates=n_dup,
        )

    return build


def set_builders(
    parties: Sequence[Party],
    on: Sequence[str],
    *,
    normalizers: dict[str, tuple[str, Normalizer]],
    strict_normalize: bool,
    cast: str | None,
    nulls: str,
    duplicates: str,
    mode: str,
) -> tuple[dict[str, Callable[[pl.DataFrame], LocalSet]], list[str]]:
    """Check the key columns against every party's public schema and return each party's set builder.

    A builder runs inside its party (:meth:`Party.compute`, or the party's own
    node) and validates and encodes the identifiers there; no message is sent.

    Returns
    -------
    (dict of party name to callable, list of str)
        Each party's builder and the kinds of the key columns.
    """
    for p in parties:
        p.require_columns(list(on))
    kinds = resolve_kinds(parties, on, cast)
    builds = {p.name: _builder(p, on, kinds, normalizers, strict_normalize, cast, nulls, duplicates, mode)
              for p in parties}
    return builds, kinds
