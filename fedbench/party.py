"""Virtual parties: one data holder each, over a local file or data frame.

A :class:`Party` owns its rows.  Nothing outside the party reads them: protocols
call :meth:`Party.compute` with a function that runs *inside* the party and
returns local aggregates, which the protocol then encodes and encrypts before
anything leaves.  The repr shows the shape and the schema, never a value.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import MappingProxyType
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
    "SNIFFED_SEPARATORS",
    "Party",
    "check_csv_header",
    "column_kind",
    "conform_frame",
    "load_frame",
    "recall_in_party",
    "remember_in_party",
    "sniff_separator",
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


#: Separators sniffed from a ``.csv`` file's header line when none is given.
SNIFFED_SEPARATORS: tuple[str, ...] = (",", ";", "\t")

#: Spellings of the default encoding (polars' reader calls it ``"utf8"``).
_UTF8 = {"utf8", "utf-8", "utf_8", "utf-8-sig"}


def load_frame(
    name: str,
    source: Any,
    *,
    format: str | None = None,
    null_values: str | Sequence[str] | None = None,
    separator: str | None = None,
    encoding: str = "utf-8",
    **read_options: Any,
) -> pl.DataFrame:
    """Read a party's data into a polars DataFrame.

    Parameters
    ----------
    name : str
        Party name, used in error messages.
    source : str, Path, polars.DataFrame or pandas.DataFrame
        A file path or a data frame.
    format : {"csv", "tsv", "parquet", "ndjson"}, optional
        File format; by default inferred from the suffix.
    null_values : str or list of str, optional
        CSV/TSV: cell texts that mean "missing" (e.g. ``["?", "NA"]``), read
        as nulls so that a numeric column stays numeric.  Empty cells are
        always nulls.
    separator : str, optional
        CSV/TSV field separator.  By default ``.tsv`` files use a tab and
        ``.csv`` files the one of ``,``, ``;`` and tab that occurs most often
        in the header line (outside quotes; ``,`` on a tie or when the header
        has a single column).
    encoding : str, default "utf-8"
        CSV/TSV text encoding.  A UTF-8 byte order mark is ignored.  Other
        encodings (e.g. ``"latin-1"``) are decoded by Python before parsing;
        ``"utf8-lossy"`` replaces invalid bytes with U+FFFD.
    **read_options
        Passed to the polars reader (e.g. ``decimal_comma=True``).  CSV/TSV
        files are read with ``infer_schema_length=None`` unless given: the
        dtypes are inferred from every row, not the first 100.

    Returns
    -------
    polars.DataFrame
        For CSV/TSV files, a column whose every cell is empty or a declared
        null marker has dtype ``Null`` ("no declared type"): the federation
        gives it the type the other parties declare.  In-memory frames are
        returned as given (the reading options do not apply to them).

    Raises
    ------
    ConfigurationError
        Invalid reading options.
    DataLoadError
        Missing or unreadable file, unknown format, or bytes that are not in
        the declared encoding (naming the party, the file and the column).
    DuplicateColumnError
        A CSV/TSV header names a column twice.
    """
    nulls = _check_null_values(name, null_values)
    if separator is not None and (not isinstance(separator, str) or len(separator) != 1):
        raise ConfigurationError(f"party {name!r}: separator must be one character, got {separator!r}")
    if not isinstance(encoding, str) or not encoding:
        raise ConfigurationError(f"party {name!r}: encoding must be a codec name, got {encoding!r}")
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
        codec = _python_codec(name, encoding)
        skip = int(read_options.get("skip_rows", 0) or 0)
        quote = read_options.get("quote_char", '"')
        sep = separator or ("\t" if fmt == "tsv" else sniff_separator(path, encoding=codec, skip_rows=skip,
                                                                      quote_char=quote))
        check_csv_header(name, path, separator=sep, read_options={**read_options, "encoding": codec})
        read_options = {"infer_schema_length": None, **read_options, "separator": sep,
                        "encoding": "utf8" if encoding.lower() in _UTF8 else encoding}
        if nulls:
            read_options["null_values"] = nulls
    failure = None
    try:
        if fmt in ("csv", "tsv"):
            return _untyped_to_null(pl.read_csv(path, **read_options))
        if fmt == "parquet":
            return pl.read_parquet(path, **read_options)
        return pl.read_ndjson(path, **read_options)
    except Exception as exc:  # polars raises several error types for bad files
        failure = type(exc).__name__
    if fmt in ("csv", "tsv") and encoding.lower() in _UTF8:
        column = _first_non_utf8_column(path, separator=read_options["separator"], quote_char=quote, skip_rows=skip)
        if column is not None:
            raise DataLoadError(
                f"party {name!r}: {path.name} is not valid UTF-8 (column {column!r} holds bytes of another "
                "encoding); pass the file's encoding, e.g. encoding='latin-1' (or 'cp1252'), or "
                "encoding='utf8-lossy' to replace the undecodable bytes",
                party=name,
            )
    # Raised outside the handler and without the reader's message: polars quotes the cell it could not
    # parse, and errors leave the party.
    raise DataLoadError(
        f"party {name!r}: cannot read {path.name} as {fmt} ({failure}); the reader's message is withheld "
        "because it can quote the file's rows: inspect the file where it lives, or pass read options "
        "(e.g. null_values=[...], separator=..., encoding=...)",
        party=name,
    )


def _check_null_values(name: str, null_values: object) -> list[str] | None:
    if null_values is None:
        return None
    values = [null_values] if isinstance(null_values, str) else null_values
    if not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise ConfigurationError(
            f"party {name!r}: null_values must be a string or a list of strings (the cell texts that mean "
            f"'missing', e.g. ['?', 'NA']), got {null_values!r}"
        )
    return list(values)


def _python_codec(name: str, encoding: str) -> str:
    """The Python codec that reads the header the way polars will read the file."""
    low = encoding.lower()
    if low in _UTF8:
        return "utf-8-sig"
    if low == "utf8-lossy":
        return "utf-8-sig"  # opened with errors="replace" below
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigurationError(
            f"party {name!r}: unknown encoding {encoding!r}; use e.g. 'utf-8', 'latin-1', 'cp1252' or 'utf8-lossy'"
        ) from None
    return encoding


def sniff_separator(path: Path, *, encoding: str = "utf-8-sig", skip_rows: int = 0,
                    quote_char: str | None = '"') -> str:
    """Guess a CSV file's separator from its header line.

    Counts ``,``, ``;`` and tab outside quotes in the first line (after
    ``skip_rows``) and returns the most frequent, ``,`` on a tie or when none
    occurs.  Only the header (the column names, public by design) is read.
    """
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as fh:
            for _ in range(skip_rows):
                fh.readline()
            line = fh.readline()
    except OSError:
        return ","
    counts = dict.fromkeys(SNIFFED_SEPARATORS, 0)
    quoted = False
    for ch in line:
        if quote_char and ch == quote_char:
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(SNIFFED_SEPARATORS, key=lambda s: counts[s])  # max keeps the first (",") on a tie
    return best if counts[best] else ","


def _first_non_utf8_column(path: Path, *, separator: str, quote_char: str | None, skip_rows: int) -> str | None:
    """Name of the first column holding bytes that are not UTF-8 (None if the file is valid UTF-8).

    Runs inside the party, only after the reader failed; the column *name* is public, the bytes stay.
    """
    try:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
            return None
        except UnicodeDecodeError:
            pass
        text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=separator, quotechar=quote_char or '"',
                          quoting=csv.QUOTE_MINIMAL if quote_char else csv.QUOTE_NONE)
        for _ in range(skip_rows):
            next(rows, None)
        header = next(rows, [])
        if any(_has_surrogate(h) for h in header):
            return "(the header)"
        for row in rows:
            for i, cell in enumerate(row):
                if _has_surrogate(cell):
                    return header[i] if i < len(header) else f"(field {i + 1})"
    except (OSError, csv.Error):
        return None
    return "(unknown)"


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _untyped_to_null(df: pl.DataFrame) -> pl.DataFrame:
    """Give dtype ``Null`` to text columns whose every cell is empty or a declared null marker.

    polars types such a column ``String``, which would conflict with the other
    parties' numbers although the file declares nothing about it.
    """
    if df.height == 0:
        return df
    untyped = [c for c, t in df.schema.items() if t == pl.String and df.get_column(c).null_count() == df.height]
    return df.with_columns(pl.col(untyped).cast(pl.Null)) if untyped else df


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
        with path.open(encoding=opts.get("encoding", "utf-8-sig"), errors="replace", newline="") as fh:
            for _ in range(skip):
                fh.readline()
            reader = csv.reader(fh, delimiter=sep, quotechar=quote or '"', quoting=csv.QUOTE_MINIMAL
                                if quote else csv.QUOTE_NONE)
            header = next(reader, [])
    except (OSError, csv.Error, TypeError, LookupError):
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
    """Coarse kind of a polars dtype: numeric, boolean, string, temporal, null or other.

    ``null`` is the dtype of a column with no declared type (every cell empty
    or a declared null marker); it agrees with any other kind.
    """
    if dtype == pl.Null:
        return "null"
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype.is_temporal():
        return "temporal"
    return "other"


# Party-side memory: what a party computed and keeps until a later protocol step asks for it (e.g. a
# training round's local update, held until the secure sum; its split rows; its columns as read).  It
# lives in the process that holds the party's rows (the Ray actor on a cluster), keyed by the identity
# of the party's frame, and goes when the frame goes.  The one party-side store: every module uses it.
_MEMORY: dict[int, tuple[weakref.ref[pl.DataFrame], dict[str, Any]]] = {}


def party_state(df: pl.DataFrame) -> dict[str, Any]:
    """The party's own store of values kept between protocol steps (runs inside the party).

    Created empty on first use and dropped with the party's frame; callers
    use keys of their own (a module-qualified name).
    """
    ident = id(df)
    ref, store = _MEMORY.get(ident, (None, None))
    if ref is None or ref() is not df or store is None:
        store = {}
        _MEMORY[ident] = (weakref.ref(df, partial(_forget, ident)), store)
    return store


def remember_in_party(df: pl.DataFrame, *, key: str, fn: Callable[[pl.DataFrame], Any]) -> None:
    """Run ``fn(df)`` inside the party and keep its result there under ``key`` (returns nothing)."""
    party_state(df)[key] = fn(df)


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

    store = party_state(df)
    if key not in store:
        raise ProtocolError(f"the party holds no result under {key!r}")
    value = store[key] if keep else store.pop(key)
    return value if field is None else value[field]


_ORIGINALS = "fedbench.schema.originals"


def conform_frame(df: pl.DataFrame, *, targets: Mapping[str, pl.DataType | None]) -> None:
    """Cast columns of a party's frame, in place and inside the party, to the agreed types.

    ``targets`` maps a column to its agreed dtype, or to ``None`` to restore
    the column as read.  The columns as read are kept in the party (never
    returned), so that a later agreement (a party left) starts from them, not
    from a rounded cast.  Every cast is computed before any column changes.
    """
    originals: dict[str, pl.Series] = party_state(df).get(_ORIGINALS, {})
    new = {}
    for c, dtype in targets.items():
        src = originals.get(c, df.get_column(c))
        new[c] = (src, src if dtype is None else src.cast(dtype, strict=True))
    for c, (src, series) in new.items():
        originals.setdefault(c, src)
        df.replace_column(df.get_column_index(c), series)
    party_state(df)[_ORIGINALS] = originals


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

    :attr:`declared_schema` is the schema as read; :attr:`schema` is the
    schema computations see once the federation agreed on a type per column
    (see :mod:`fedbench.schema`): the party casts its own columns, inside
    itself, and nothing computed from its rows leaves it.
    """

    #: Columns whose agreed type differs from the declared one (set by :meth:`conform`; public).
    _agreed: Mapping[str, pl.DataType] = MappingProxyType({})

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
        self._declared = dict(df.schema)

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
    def declared_schema(self) -> dict[str, pl.DataType]:
        """Column name to polars dtype, as read (``Null``: no declared type)."""
        return dict(self._declared)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """Column name to the polars dtype computations see (the agreed type where one was agreed)."""
        return {c: self._agreed.get(c, t) for c, t in self.declared_schema.items()}

    def conform(self, agreed: Mapping[str, pl.DataType | None]) -> None:
        """Cast this party's columns, inside the party, to the federation's agreed types.

        Parameters
        ----------
        agreed : mapping of column to dtype or None
            The agreed type of each column (``None``: no agreement, keep the
            declared type).  Columns this party lacks are ignored.

        Notes
        -----
        Derived from declared schemas only; the party returns nothing.  A cast
        that fails raises (and changes nothing): the federation then refuses
        the party that made the agreement.
        """
        declared = self.declared_schema
        want = {c: t for c, t in agreed.items() if c in declared and t is not None and t != declared[c]}
        current = dict(self._agreed)
        targets: dict[str, pl.DataType | None] = {c: t for c, t in want.items() if current.get(c) != t}
        targets.update({c: None for c in current if c not in want})
        if not targets:
            return
        self.compute(partial(conform_frame, targets=targets))
        self._agreed = MappingProxyType(want)

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
