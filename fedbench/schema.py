"""Schema agreement across parties.

Parties may hold different columns (vertical federations need that).  What
matters is whether the columns a computation uses exist everywhere and mean
the same kind of thing; a kind conflict is reported when a party is added and
becomes an error only when a computation uses that column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from .errors import DtypeConflictError, NonNumericColumnError
from .party import column_kind

if TYPE_CHECKING:
    import polars as pl

    from .party import Party

__all__ = ["SchemaReport", "check_numeric_columns"]

_NUMERIC_KINDS = {"numeric", "boolean"}


@dataclass(frozen=True)
class SchemaReport:
    """Columns of every party side by side.

    Attributes
    ----------
    dtypes : dict
        ``{party: {column: dtype string}}``.
    kinds : dict
        ``{party: {column: kind}}`` with kinds numeric/boolean/string/temporal/other.
    """

    dtypes: Mapping[str, Mapping[str, str]]
    kinds: Mapping[str, Mapping[str, str]]

    @classmethod
    def of(cls, parties: Sequence[Party]) -> SchemaReport:
        """Build the report from the parties' declared schemas."""
        return cls(
            dtypes={p.name: {c: str(t) for c, t in p.schema.items()} for p in parties},
            kinds={p.name: {c: column_kind(t) for c, t in p.schema.items()} for p in parties},
        )

    @property
    def parties(self) -> list[str]:
        """Party names."""
        return list(self.kinds)

    @property
    def columns(self) -> list[str]:
        """Every column of any party, in first-seen order."""
        seen: dict[str, None] = {}
        for cols in self.kinds.values():
            seen.update(dict.fromkeys(cols))
        return list(seen)

    @property
    def shared(self) -> list[str]:
        """Columns every party holds."""
        return [c for c in self.columns if all(c in k for k in self.kinds.values())]

    @property
    def conflicts(self) -> dict[str, dict[str, str]]:
        """Columns whose kind differs between parties: ``{column: {party: dtype}}``."""
        out = {}
        for c in self.columns:
            kinds = {p: k[c] for p, k in self.kinds.items() if c in k}
            # Booleans sum as 0/1, so they agree with numbers.
            if len({"numeric" if k in _NUMERIC_KINDS else k for k in kinds.values()}) > 1:
                out[c] = {p: self.dtypes[p][c] for p in kinds}
        return out

    @property
    def missing(self) -> dict[str, list[str]]:
        """Columns some parties lack: ``{column: [parties without it]}``."""
        return {
            c: [p for p, k in self.kinds.items() if c not in k]
            for c in self.columns
            if not all(c in k for k in self.kinds.values())
        }

    def to_polars(self) -> pl.DataFrame:
        """One row per column, one dtype column per party (null where absent)."""
        import polars as pl

        data: dict[str, list[str | None]] = {"column": self.columns}
        for p, d in self.dtypes.items():
            data[p] = [d.get(c) for c in self.columns]
        return pl.DataFrame(data, schema={k: pl.String for k in data})

    def __repr__(self) -> str:
        lines = [f"Schema of {len(self.parties)} parties: {len(self.shared)} shared columns"]
        if self.shared:
            lines.append("  shared: " + ", ".join(self.shared))
        for c, miss in self.missing.items():
            lines.append(f"  {c!r} missing in: {', '.join(miss)}")
        for c, d in self.conflicts.items():
            lines.append(f"  {c!r} kind conflict: " + ", ".join(f"{p}={t}" for p, t in d.items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(p)}</th>" for p in self.parties)
        body = []
        conflicts = self.conflicts
        for c in self.columns:
            cells = []
            for p in self.parties:
                t = self.dtypes[p].get(c)
                style = "color:#b00;font-weight:bold" if c in conflicts else ("color:#999" if t is None else "")
                cells.append(f"<td style='{style}'>{escape(t) if t else '—'}</td>")
            body.append(f"<tr><td><code>{escape(c)}</code></td>{''.join(cells)}</tr>")
        return (
            f"<div><b>Schema</b>: {len(self.parties)} parties, {len(self.shared)} shared columns, "
            f"{len(conflicts)} conflicts<table><thead><tr><th>column</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )


def check_numeric_columns(parties: Sequence[Party], columns: Sequence[str]) -> None:
    """Check from the declared schemas that ``columns`` are numeric in every party.

    Raises
    ------
    MissingColumnError
        A party lacks a column.
    DtypeConflictError
        Parties disagree on the kind of a column.
    NonNumericColumnError
        A column is not numeric (or boolean) anywhere.
    """
    for p in parties:
        p.require_columns(list(columns))
    for c in columns:
        kinds = {p.name: column_kind(p.schema[c]) for p in parties}
        numeric = {n for n, k in kinds.items() if k in _NUMERIC_KINDS}
        if numeric and len(numeric) < len(kinds):
            odd = next(n for n in kinds if n not in numeric)
            raise DtypeConflictError(
                f"column {c!r} is numeric in {', '.join(sorted(numeric))} but {kinds[odd]} "
                f"({next(p for p in parties if p.name == odd).schema[c]}) in party {odd!r}; cast it to a number there",
                party=odd,
                column=c,
            )
        if not numeric:
            first = next(iter(kinds))
            raise NonNumericColumnError(
                f"party {first!r}: column {c!r} is {kinds[first]}, not numeric; "
                "choose a numeric column or encode it first (e.g. group_counts for categories)",
                party=first,
                column=c,
            )


def _kind_conflicts_involving(report: SchemaReport, party: str) -> dict[str, dict[str, str]]:
    return {c: d for c, d in report.conflicts.items() if party in d}

