"""Schema agreement across parties.

Parties may hold different columns (vertical federations need that).  What
matters is whether the columns a computation uses exist everywhere and mean
the same kind of thing.  Real multi-site files disagree in harmless ways, so
the federation agrees on one type per column from the *declared* schemas:

* integer and float widths unify to their common numeric supertype
  (``Int32`` + ``Int64`` -> ``Int64``; ``Int64`` + ``Float64`` -> ``Float64``;
  booleans with numbers -> the numbers' type; 128-bit supertypes -> ``Float64``);
* a column with no declared type in a party (dtype ``Null``: every cell empty
  or a declared null marker such as ``?``) takes the others' type;
* text against numbers (or any other kind mismatch) is a genuine conflict:
  reported when a party is added, and an error naming party, column, both
  types and the fix when a computation uses that column.

Each party then casts its own columns to the agreed type, inside the party
(:meth:`fedbench.party.Party.conform`).

What the schema reveals
    Column names and dtypes are public by design (README threat model): the
    agreement uses nothing else, and nothing computed from a party's rows
    leaves it.  A dtype inferred from a file is itself a coarse fact about the
    file's contents, as with any reader: ``Int64`` says no cell has decimals,
    ``String`` that some cell is not a number, and ``Null`` that the column
    holds no value at all in that party (every cell empty or a declared null
    marker).  :attr:`SchemaReport.notes` says which party declared no type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .errors import DtypeConflictError, NonNumericColumnError
from .party import column_kind

if TYPE_CHECKING:
    from .party import Party

__all__ = ["SchemaReport", "agree_dtypes", "check_numeric_columns", "conflict_fix"]

_NUMERIC_KINDS = {"numeric", "boolean"}


def _coarse(kind: str) -> str:
    return "numeric" if kind in _NUMERIC_KINDS else kind


def _numeric_supertype(dtypes: Sequence[pl.DataType]) -> pl.DataType:
    """The polars supertype of numeric/boolean dtypes, computed on empty series (no data)."""
    try:
        frames = [pl.Series("x", [], dtype=t).to_frame() for t in dtypes]
        out = pl.concat(frames, how="vertical_relaxed").schema["x"]
    except Exception:  # polars has no supertype: the widest safe choice
        return pl.Float64()
    if out in (pl.Int128, pl.UInt128) or not (out.is_numeric() or out == pl.Boolean):
        return pl.Float64()  # e.g. UInt64 with Int64: 128-bit ints do not reach numpy
    return out


def agree_dtypes(dtypes: Mapping[str, pl.DataType]) -> tuple[pl.DataType | None, list[str]]:
    """Agree on one dtype for a column from the parties' declared dtypes.

    Parameters
    ----------
    dtypes : mapping of party to polars dtype
        The declared dtype of the column in every party that holds it.

    Returns
    -------
    agreed : polars dtype or None
        The type every party casts to, or ``None`` when there is none: a
        genuine kind conflict, or kinds that agree with differing dtypes
        (e.g. ``Date`` and ``Datetime``), left as declared.
    notes : list of str
        Why: what was unified, which parties declared no type, the conflict.
    """
    typed = {p: t for p, t in dtypes.items() if t != pl.Null}
    untyped = [p for p in dtypes if p not in typed]
    if not typed:
        return pl.Null(), (["no party declares a type (all-null everywhere)"] if len(dtypes) > 1 else [])
    kinds = {p: _coarse(column_kind(t)) for p, t in typed.items()}
    if len(set(kinds.values())) > 1:
        return None, ["conflict: " + ", ".join(f"{p}={t}" for p, t in typed.items())]
    distinct = list(dict.fromkeys(typed.values()))
    notes: list[str] = []
    agreed: pl.DataType | None
    if len(distinct) == 1:
        agreed = distinct[0]
    elif next(iter(kinds.values())) == "numeric":
        agreed = _numeric_supertype(distinct)
        has_float = any(t.is_float() for t in distinct)
        has_int = any(t.is_integer() for t in distinct)
        has_bool = any(t == pl.Boolean for t in distinct)
        what = ("ints and floats" if has_int and has_float else "float widths" if has_float and not has_int
                and not has_bool else "booleans and numbers" if has_bool else "integer widths")
        notes.append(f"unified: {what} ({', '.join(str(t) for t in distinct)}) -> {agreed}")
    else:
        agreed = None
        notes.append(f"kinds agree ({next(iter(kinds.values()))}), dtypes differ "
                     f"({', '.join(str(t) for t in distinct)}): left as declared")
    if agreed is not None:
        notes += [f"{p}: all-null (no declared type), takes {agreed}" for p in untyped]
    return agreed, notes


def conflict_fix(column: str, party: str, source: str | None = None) -> str:
    """The advice given with a text-versus-numbers conflict on ``column`` in ``party`` (read from ``source``)."""
    where = f"the file of party {party!r}"
    if source and not source.startswith("<"):  # a path the analyst declared; "<polars DataFrame>" otherwise
        where = f"{Path(source).name} (party {party!r})"
    return (f"if {where} marks missing values with a code (e.g. '?', 'NA'), declare the codes once: "
            f"null_values=['?', 'NA'] on from_dir/add_party; otherwise fix column {column!r} in {where} "
            "(thousands separators, decimal commas: decimal_comma=True, units or text in a number cell)")


@dataclass(frozen=True)
class SchemaReport:
    """Columns of every party side by side, and the type agreed per column.

    Attributes
    ----------
    dtypes : dict
        ``{party: {column: declared dtype string}}`` (``Null``: no declared type).
    kinds : dict
        ``{party: {column: kind}}`` with kinds numeric/boolean/string/temporal/null/other.
    agreed : dict
        ``{column: agreed dtype string or None}``: the type computations see in
        every party (``None``: a conflict, or kinds that agree with differing dtypes).
    notes : dict
        ``{column: [why]}``: what was unified ("unified: ints and floats
        (Int64, Float64) -> Float64"), which party takes the others' type
        ("north: all-null (no declared type), takes Float64"), conflicts.
    """

    dtypes: Mapping[str, Mapping[str, str]]
    kinds: Mapping[str, Mapping[str, str]]
    agreed: Mapping[str, str | None] = field(default_factory=dict)
    notes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    agreed_dtypes: Mapping[str, pl.DataType | None] = field(default_factory=dict, repr=False, compare=False)
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, parties: Sequence[Party]) -> SchemaReport:
        """Build the report from the parties' declared schemas (nothing else)."""
        declared = {p.name: p.declared_schema for p in parties}
        columns: dict[str, None] = {}
        for sch in declared.values():
            columns.update(dict.fromkeys(sch))
        agreed: dict[str, pl.DataType | None] = {}
        notes: dict[str, list[str]] = {}
        for c in columns:
            agreed[c], why = agree_dtypes({p: sch[c] for p, sch in declared.items() if c in sch})
            if why:
                notes[c] = why
        return cls(
            dtypes={p: {c: str(t) for c, t in sch.items()} for p, sch in declared.items()},
            kinds={p: {c: column_kind(t) for c, t in sch.items()} for p, sch in declared.items()},
            agreed={c: None if t is None else str(t) for c, t in agreed.items()},
            notes=notes,
            agreed_dtypes=agreed,
            sources={p.name: p.source for p in parties},
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
    def unified(self) -> dict[str, list[str]]:
        """Columns whose declared dtypes differ but agree on a type: ``{column: notes}``."""
        return {c: list(self.notes.get(c, [])) for c in self.columns
                if c not in self.conflicts and self.agreed.get(c) is not None
                and any(self.dtypes[p].get(c) not in (None, self.agreed[c]) for p in self.parties)}

    @property
    def conflicts(self) -> dict[str, dict[str, str]]:
        """Columns whose kind differs between parties: ``{column: {party: dtype}}``.

        Booleans agree with numbers (they sum as 0/1); a party with no declared
        type (``Null``) agrees with anything.
        """
        out = {}
        for c in self.columns:
            kinds = {p: k[c] for p, k in self.kinds.items() if c in k}
            if len({_coarse(k) for k in kinds.values() if k != "null"}) > 1:
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
        """One row per column: a declared-dtype column per party (null where absent), ``agreed type``, ``note``."""
        data: dict[str, list[str | None]] = {"column": list[str | None](self.columns)}
        for p, d in self.dtypes.items():
            data[p] = [d.get(c) for c in self.columns]
        data["agreed type"] = [self.agreed.get(c) for c in self.columns]
        data["note"] = ["; ".join(self.notes.get(c, [])) or None for c in self.columns]
        return pl.DataFrame(data, schema={k: pl.String for k in data})

    def _conflict_line(self, c: str, d: Mapping[str, str]) -> str:
        kinds = {p: _coarse(self.kinds[p][c]) for p in d if self.kinds[p][c] != "null"}
        odd = next((p for p, k in kinds.items() if k != "numeric"), next(iter(kinds))) \
            if "numeric" in kinds.values() else next(iter(kinds))
        return (f"  {c!r} kind conflict: " + ", ".join(f"{p}={t}" for p, t in d.items())
                + f"; fix: {conflict_fix(c, odd, self.sources.get(odd))}")

    def __repr__(self) -> str:
        lines = [f"Schema of {len(self.parties)} parties: {len(self.shared)} shared columns"]
        if self.shared:
            lines.append("  shared: " + ", ".join(f"{c} ({self.agreed.get(c) or 'mixed'})" for c in self.shared))
        for c, miss in self.missing.items():
            lines.append(f"  {c!r} missing in: {', '.join(miss)}")
        conflicts = self.conflicts
        for c in self.columns:
            if c not in conflicts:
                lines += [f"  {c!r} {n}" for n in self.notes.get(c, [])]
        for c, d in conflicts.items():
            lines.append(self._conflict_line(c, d))
        return "\n".join(lines)

    #: Columns listed by the HTML repr before "N more" (columns with a conflict or a note are always listed).
    HTML_ROWS = 12

    def show(self, all: bool = False) -> Any:
        """HTML of the schema for a notebook; ``all=True`` lists every column, not only the first ones."""
        from IPython.display import HTML

        return HTML(self._html(None if all else self.HTML_ROWS))

    def _repr_html_(self) -> str:
        return self._html(self.HTML_ROWS)

    def _html(self, limit: int | None) -> str:
        head = "".join(f"<th>{escape(p)}</th>" for p in self.parties)
        body = []
        conflicts = self.conflicts
        listed = [c for i, c in enumerate(self.columns)
                  if limit is None or i < limit or c in conflicts or self.notes.get(c) or c in self.missing]
        left = len(self.columns) - len(listed)
        for c in listed:
            cells = []
            for p in self.parties:
                t = self.dtypes[p].get(c)
                style = ("color:#b00;font-weight:bold" if c in conflicts and t != "Null"
                         else "color:#999" if t in (None, "Null") else "")
                cells.append(f"<td style='{style}'>{escape(t) if t else '—'}</td>")
            agreed = self.agreed.get(c)
            agreed_cell = ("<td style='color:#b00;font-weight:bold'>conflict</td>" if c in conflicts
                           else f"<td><b>{escape(agreed)}</b></td>" if agreed else "<td>—</td>")
            note = "; ".join(self.notes.get(c, []))
            if c in conflicts:
                note = self._conflict_line(c, conflicts[c]).strip()
            body.append(f"<tr><td><code>{escape(c)}</code></td>{''.join(cells)}{agreed_cell}"
                        f"<td style='font-size:smaller'>{escape(note)}</td></tr>")
        return (
            f"<div><b>Schema</b>: {len(self.parties)} parties, {len(self.shared)} shared columns, "
            f"{len(self.unified)} unified, {len(conflicts)} conflicts"
            f"<table><thead><tr><th>column</th>{head}<th>agreed</th><th>note</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            + (f"<p>… {left} more columns: <code>.show(all=True)</code> lists them all, <code>.to_polars()</code> "
               "gives a DataFrame</p>" if left else "")
            + "</div>"
        )


def check_numeric_columns(parties: Sequence[Party], columns: Sequence[str]) -> None:
    """Check from the schemas (agreed types) that ``columns`` are numeric in every party.

    A column with no declared type (``Null``) in a party counts as numeric
    there: it holds no value to sum.

    Raises
    ------
    MissingColumnError
        A party lacks a column.
    DtypeConflictError
        Parties disagree on the kind of a column (text against numbers); the
        message names the party, the column, both types and the fix.
    NonNumericColumnError
        A column is not numeric (or boolean) anywhere.
    """
    for p in parties:
        p.require_columns(list(columns))
    for c in columns:
        kinds = {p.name: column_kind(p.schema[c]) for p in parties}
        typed = {n: k for n, k in kinds.items() if k != "null"}
        numeric = {n for n, k in typed.items() if k in _NUMERIC_KINDS}
        if numeric and len(numeric) < len(typed):
            odds = [n for n in typed if n not in numeric]
            odd = odds[0]
            num_types = sorted({str(p.schema[c]) for p in parties if p.name in numeric})
            also = f" (also in {', '.join(repr(n) for n in odds[1:])})" if len(odds) > 1 else ""
            raise DtypeConflictError(
                f"column {c!r} is numeric ({', '.join(num_types)}) in {', '.join(sorted(numeric))} but "
                f"{typed[odd]} ({next(p for p in parties if p.name == odd).schema[c]}) in party {odd!r}{also}, "
                f"so the types cannot be unified; {conflict_fix(c, odd, _source(parties, odd))}",
                party=odd,
                column=c,
            )
        if typed and not numeric:
            first = next(iter(typed))
            raise NonNumericColumnError(
                f"party {first!r}: column {c!r} is {typed[first]}, not numeric; "
                "choose a numeric column or encode it first (e.g. group_counts for categories); if it should be "
                f"numeric: {conflict_fix(c, first, _source(parties, first))}",
                party=first,
                column=c,
            )


def _source(parties: Sequence[Party], name: str) -> str | None:
    return next((getattr(p, "source", None) for p in parties if p.name == name), None)


def _kind_conflicts_involving(report: SchemaReport, party: str) -> dict[str, dict[str, str]]:
    return {c: d for c, d in report.conflicts.items() if party in d}
