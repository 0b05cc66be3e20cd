"""Virtual parties: one data holder each, over a local file or data frame.

A :class:`Party` owns its rows.  Nothing outside the party reads them: protocols
call :meth:`Party.compute` with a function that runs *inside* the party and
returns local aggregates, which the protocol then encodes and encrypts before
anything leaves.  The repr shows the shape and the schema, never a value.
"""

from __future__ import annotations

import csv
import re
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from .errors import (
    ConfigurationError,
    DataLoadError,
    DuplicateColumnError,
    EmptyPartyError,
    FedbenchError,
    LocalComputationError,
    MissingColumnError,
    PartyError,
)
from .transcript import ROLE_NAMES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS",
    "Party",
    "check_csv_header",
    "column_kind",
    "load_frame",
    "recall_in_party",
    "remember_in_party",
    "validate_party_name",
]

T = TypeVar("T")

#: File suffixes fedbench reads, and the format each means.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def validate_party_name(name: object) -> str:
    """Check that ``name`` is a usable party identifier and return it.

    Raises
    ------
    ConfigurationError
        If the name is not a non-empty string of letters, digits, ``_``, ``-``
        and ``.``, or if it is a reserved role name.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigurationError(
            f"party name {name!r} is not an identifier: use letters, digits, '_', '-' or '.'"
        )
    if name in ROLE_NAMES:
        raise ConfigurationError(
            f"party name {name!r} is reserved for a protocol role; choose another name"
        )
    return name


def load_frame(name: str, source: Any, *, format: str | None = None, **read_options: Any) -> pl.DataFrame:
    """Read a party's data into a polars DataFrame.

    Parameters
    ----------
    name : str
        Party name, used in error messages.
    source : str, Path, polars.DataFrame or pandas.DataFrame
        A file path or a data frame.
    format : {"csv", "tsv", "parquet", "ndjson"}, optional
        File format; by default inferred from the suffix.
    **read_options
        Passed to the polars reader (e.g. ``null_values="?"``).

    Raises
    ------
    DataLoadError
        Missing or unreadable file, or unknown format.
    """
    if isinstance(source, pl.DataFrame):
        return source.clone()
    if type(source).__module__.startswith("pandas"):
        dup = _first_duplicate([str(c) for c in source.columns])
        if dup is not None:
            raise DuplicateColumnError(
                f"party {name!r}: the pandas DataFrame has two columns named {dup!r}; rename one",
                party=name, column=dup,
            )
        failure: str | None = None
        try:
            return pl.from_pandas(source)
        except Exception as exc:  # pandas frames with exotic objects
            failure = type(exc).__name__
        # Raised outside the handler, with the type name only: the converter's message can quote cells.
        raise DataLoadError(f"party {name!r}: cannot convert the pandas DataFrame ({failure}); "
                            "check its column types inside the party", party=name)
    if not isinstance(source, str | Path):
        raise DataLoadError(
            f"party {name!r}: expected a file path or a polars/pandas DataFrame, got {type(source).__name__}",
            party=name,
        )
    path = Path(source)
    fmt = format or FORMATS.get(path.suffix.lower())
    if fmt not in set(FORMATS.values()):
        raise DataLoadError(
            f"party {name!r}: unknown format for {path.name!r}; "
            f"use one of {sorted(set(FORMATS.values()))} or pass format=...",
            party=name,
        )
    if not path.is_file():
        raise DataLoadError(f"party {name!r}: no such file: {path}", party=name)
    if fmt in ("csv", "tsv"):
        check_csv_header(name, path, separator="\t" if fmt == "tsv" else ",", read_options=read_options)
    failure = None
    try:
        if fmt == "csv":
            return pl.read_csv(path, **read_options)
        if fmt == "tsv":
            return pl.read_csv(path, separator="\t", **read_options)
        if fmt == "parquet":
            return pl.read_parquet(path, **read_options)
        return pl.read_ndjson(path, **read_options)
    except Exception as exc:  # polars raises several error types for bad files
        failure = type(exc).__name__
    # Raised outside the handler and without the reader's message: polars quotes the cell it could not
    # parse, and errors leave the party.
    raise DataLoadError(
        f"party {name!r}: cannot read {path.name} as {fmt} ({failure}); the reader's message is withheld "
        "because it can quote the file's rows: inspect the file where it lives, or pass read options "
        "(e.g. infer_schema_length=None, null_values=...)",
        party=name,
    )


def check_csv_header(name: str, path: Path, *, separator: str = ",", read_options: Mapping[str, Any] | None = None
                     ) -> None:
    """Refuse a CSV/TSV file whose header names a column twice.

    polars would silently rename the second one (``x_duplicated_0``), so a
    protocol could read the wrong column.  The header is read with the same
    separator, quote character, rows skipped and encoding (a UTF-8 byte order
    mark is ignored) as the reader.

    Raises
    ------
    DuplicateColumnError
        Naming the party, the file and the column.
    """
    opts = dict(read_options or {})
    if not opts.get("has_header", True) or opts.get("new_columns"):
        return  # polars names the columns itself (or the caller does)
    sep = opts.get("separator", separator)
    quote = opts.get("quote_char", '"')
    skip = int(opts.get("skip_rows", 0) or 0)
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            for _ in range(skip):
                fh.readline()
            reader = csv.reader(fh, delimiter=sep, quotechar=quote or '"', quoting=csv.QUOTE_MINIMAL
                                if quote else csv.QUOTE_NONE)
            header = next(reader, [])
    except (OSError, csv.Error, TypeError):
        return  # unreadable here: the reader reports it
    dup = _first_duplicate(header)
    if dup is not None:
        raise DuplicateColumnError(
            f"party {name!r}: {path.name} names the column {dup!r} twice in its header; rename one "
            "(polars would silently rename the second)",
            party=name,
            column=dup,
        )


def _first_duplicate(names: list[str]) -> str | None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def column_kind(dtype: pl.DataType) -> str:
    """Coarse kind of a polars dtype: numeric, boolean, string, temporal or other."""
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype.is_temporal():
        return "temporal"
    return "other"


# Party-side memory: results a party computed and keeps until a later protocol step asks for them
# (e.g. a training round's local update, held until the secure sum).  It lives in the process that
# holds the party's rows (the Ray actor on a cluster), keyed by the identity of the party's frame.
_MEMORY: dict[int, tuple[weakref.ref[pl.DataFrame], dict[str, Any]]] = {}


def remember_in_party(df: pl.DataFrame, *, key: str, fn: Callable[[pl.DataFrame], Any]) -> None:
    """Run ``fn(df)`` inside the party and keep its result there under ``key`` (returns nothing)."""
    value = fn(df)
    ident = id(df)
    ref, store = _MEMORY.get(ident, (None, None))
    if ref is None or ref() is not df or store is None:
        store = {}
        _MEMORY[ident] = (weakref.ref(df, partial(_forget, ident)), store)
    store[key] = value


def _forget(ident: int, _ref: object) -> None:
    _MEMORY.pop(ident, None)


def recall_in_party(df: pl.DataFrame, *, key: str, field: str | None = None, keep: bool = False) -> Any:
    """Return (and by default forget) what :func:`remember_in_party` kept under ``key``.

    Raises
    ------
    ProtocolError
        If the party holds nothing under ``key``.
    """
    from .errors import ProtocolError

    ref, store = _MEMORY.get(id(df), (None, None))
    if ref is None or ref() is not df or store is None or key not in store:
        raise ProtocolError(f"the party holds no result under {key!r}")
    value = store[key] if keep else store.pop(key)
    return value if field is None else value[field]


class Party:
    """A data holder in a federation.

    Parameters
    ----------
    name : str
        Unique identifier of the party.
    data : str, Path, polars.DataFrame or pandas.DataFrame
        The party's rows, or where to read them.
    format : str, optional
        File format when it cannot be inferred from the suffix.
    **read_options
        Passed to the polars reader.

    Notes
    -----
    The rows are kept in a private attribute and are never part of a repr, a
    result or a message.  Use :meth:`compute` to run code inside the party.
    """

    #: Whether the rows live in another process or node (a Ray actor): protocols then keep
    #: each party's secrets there instead of in this process.
    remote: bool = False

    def __init__(
        self,
        name: str,
        data: str | Path | pl.DataFrame | pd.DataFrame,
        *,
        format: str | None = None,
        **read_options: Any,
    ) -> None:
        self.name = validate_party_name(name)
        kind = type(data).__module__.split(".")[0]
        self.source = str(data) if isinstance(data, str | Path) else f"<{kind} DataFrame>"
        df = load_frame(self.name, data, format=format, **read_options)
        if df.height == 0:
            raise EmptyPartyError(f"party {self.name!r} has no rows ({self.source})", party=self.name)
        if df.width == 0:
            raise EmptyPartyError(f"party {self.name!r} has no columns ({self.source})", party=self.name)
        self._df = df

    # Public metadata: shape and schema are declared to the federation.
    @property
    def n_rows(self) -> int:
        """Number of rows the party holds."""
        return self._df.height

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return self._df.columns

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """Column name to polars dtype."""
        return dict(self._df.schema)

    def require_columns(self, columns: list[str]) -> None:
        """Raise :class:`MissingColumnError` naming the first absent column."""
        have = self.columns
        for c in columns:
            if c not in have:
                raise MissingColumnError(
                    f"party {self.name!r} has no column {c!r} (it has: {', '.join(have)})",
                    party=self.name,
                    column=c,
                )

    def compute(self, fn: Callable[[pl.DataFrame], T]) -> T:
        """Run ``fn`` on the party's rows, inside the party.

        Only the caller's protocol code should use this, and only to produce
        local aggregates that are then encrypted or otherwise protected.

        Raises
        ------
        FedbenchError
            A fedbench error raised inside the party, with the party attached,
            its ``__cause__``/``__context__`` chain cut (a chained foreign
            exception could quote the party's rows) and its party-side
            traceback frames dropped (their locals hold the party's data).
        LocalComputationError
            For any other exception: only its type name crosses (as
            ``original_type``); its message and traceback stay inside the party,
            i.e. they are not shown to the caller at all.
        """
        err: BaseException
        try:
            return fn(self._df)
        except PartyError as exc:
            if exc.party is None:  # raised by shared protocol code: attach the party it ran in
                exc.party = self.name
                exc.args = (f"party {self.name!r}: {exc.args[0] if exc.args else ''}", *exc.args[1:])
            err = exc
        except FedbenchError as exc:
            err = exc
        except Exception as exc:
            err = LocalComputationError(
                f"party {self.name!r}: the local computation raised {type(exc).__name__}; its message and "
                "traceback stay inside the party (they may quote its data)",
                party=self.name,
                original_type=type(exc).__name__,
            )
        # Raised here, outside the handler, so that no foreign exception rides along as __context__, and
        # without the party-side frames: their locals hold the party's rows and local aggregates (shown
        # by IPython's verbose tracebacks, debuggers, pytest -l).
        err.__cause__ = None
        err.__context__ = None
        err.__suppress_context__ = True
        raise err.with_traceback(None)

    def __repr__(self) -> str:
        return f"<Party {self.name!r}: {self.n_rows} rows x {len(self.columns)} columns from {self.source}>"

    def __reduce__(self) -> Any:
        # Pickling would copy raw rows somewhere else; the Ray backend places parties
        # by loading them where they live instead.
        raise TypeError(f"party {self.name!r} cannot be pickled: its rows stay where they are")
