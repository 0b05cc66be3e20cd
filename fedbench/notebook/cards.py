"""Result objects of the magics that the core API does not already provide.

Each one shows as text (``__repr__``) and as an HTML card (``_repr_html_``),
like :class:`~fedbench.SecureSumResult`, and never holds a party's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from ..results import THREAT_MODEL, _fmt_value, render_card
from ..transcript import _fmt_bytes

if TYPE_CHECKING:
    import polars as pl

    from ..federation import Federation
    from ..results import SecureSumResult

__all__ = ["HelpCard", "Notice", "PartiesResult", "StatsResult", "StatusCard"]


def _cost(runs: Sequence[Any]) -> tuple[float, int]:
    return sum(getattr(r, "elapsed", 0.0) for r in runs), sum(getattr(r, "nbytes", 0) for r in runs)


@dataclass
class PartiesResult:
    """What a parties cell changed in the federation.

    Attributes
    ----------
    name : str
        Variable the federation is bound to.
    federation : Federation
        The federation, after the change.
    added, replaced, unchanged : list of str
        Parties added, re-read from a new source, or already declared with the same source.
    notes : list of str
        Schema warnings raised while adding parties.
    """

    name: str
    federation: Federation
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in
                 (("added", self.added), ("replaced", self.replaced), ("unchanged", self.unchanged)) if v]
        return ", ".join(parts) or "no change"

    def __repr__(self) -> str:
        lines = [f"{self.name}: {self._summary()}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(repr(self.federation))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        notes = "".join(f"<li style='color:#b26a00'>{escape(n)}</li>" for n in self.notes)
        head = (
            f"<p><code>{escape(self.name)}</code>: {escape(self._summary())}</p>"
            + (f"<ul>{notes}</ul>" if notes else "")
        )
        return head + self.federation._repr_html_()


@dataclass
class StatsResult:
    """Secure summary statistics of numeric columns.

    Attributes
    ----------
    table : polars.DataFrame
        One row per column: ``column, count, nulls, sum, mean, var, std, parties``.
    parties : list of str
        Parties that took part.
    runs : list
        The secure sums behind the table (cost, transcripts).
    """

    table: pl.DataFrame
    parties: list[str]
    runs: list[SecureSumResult] = field(default_factory=list, repr=False)

    @property
    def elapsed(self) -> float:
        """Wall-clock seconds of the secure rounds."""
        return _cost(self.runs)[0]

    @property
    def nbytes(self) -> int:
        """Bytes sent in the secure rounds."""
        return _cost(self.runs)[1]

    def to_polars(self) -> pl.DataFrame:
        """The statistics table."""
        return self.table

    def __getitem__(self, key: Any) -> Any:
        return self.table[key]

    def __repr__(self) -> str:
        return (
            f"Secure statistics over {', '.join(self.parties)} ({len(self.runs)} secure rounds, "
            f"{self.elapsed:.3f} s, {_fmt_bytes(self.nbytes)})\n{self.table}\n  threat model: {self._threat_text()}"
        )

    def _threat_text(self) -> str:
        # The runs carry the trust model they ran under (single key holder or t-of-n threshold).
        return next((r.threat_model for r in self.runs if getattr(r, "threat_model", "")), THREAT_MODEL)

    def _repr_html_(self) -> str:
        cols = self.table.columns
        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(
                f"<td style='text-align:right'>{escape(_fmt_value(v) if isinstance(v, float) else str(v))}</td>"
                for v in row
            ) + "</tr>"
            for row in self.table.iter_rows()
        )
        rows = [
            ("parties", escape(", ".join(self.parties))),
            ("cost", f"{len(self.runs)} secure rounds, {self.elapsed:.3f} s, {_fmt_bytes(self.nbytes)}"),
        ]
        return render_card("Secure statistics", rows, f"<table><tr>{head}</tr>{body}</table>",
                           threat_model=self._threat_text())


@dataclass
class StatusCard:
    """Settings, federations and available protocols of the notebook session."""

    settings: Mapping[str, Any]
    federations: list[tuple[str, int, int, bool]]
    features: Mapping[str, bool]

    def __repr__(self) -> str:
        lines = ["fedbench status"]
        if self.federations:
            for name, n, rows, cur in self.federations:
                lines.append(f"  {'*' if cur else ' '} {name}: {n} parties, {rows} rows")
        else:
            lines.append("  no federation yet: declare parties in a %%federate cell")
        lines.append("  protocols: " + ", ".join(f"{k} {'yes' if v else 'not yet'}" for k, v in self.features.items()))
        lines.append("  settings: " + ", ".join(f"{k}={v!r}" for k, v in self.settings.items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        feds = "".join(
            f"<tr><td>{'★' if cur else ''}</td><td><code>{escape(name)}</code></td>"
            f"<td style='text-align:right'>{n}</td><td style='text-align:right'>{rows}</td></tr>"
            for name, n, rows, cur in self.federations
        ) or "<tr><td colspan=4>no federation yet: declare parties in a <code>%%federate</code> cell</td></tr>"
        rows = [
            ("protocols", ", ".join(f"{escape(k)} {'✔' if v else '✘ not yet'}" for k, v in self.features.items())),
            *((f"Fedbench.{k}", escape(repr(v))) for k, v in self.settings.items()),
        ]
        table = ("<table><tr><th></th><th>federation</th><th>parties</th><th>rows</th></tr>"
                 f"{feds}</table>")
        return render_card("fedbench status", rows, table)


@dataclass
class HelpCard:
    """The magic grammar, as text and as HTML."""

    forms: Mapping[str, str]
    examples: Mapping[str, str]
    subcommands: Mapping[str, str]

    def __repr__(self) -> str:
        lines = ["%%federate forms:"]
        lines += [f"  {k:<8} {v}\n           e.g. {self.examples[k]}" for k, v in self.forms.items()]
        lines.append("%fedbench sub-commands:")
        lines += [f"  {k:<10} {v}" for k, v in self.subcommands.items()]
        lines.append("Options: %federate? and %fedbench?; settings: %config Fedbench")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        forms = "".join(
            f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}<br><code>{escape(self.examples[k])}</code></td></tr>"
            for k, v in self.forms.items()
        )
        subs = "".join(f"<tr><td><code>%fedbench {escape(k)}</code></td><td>{escape(v)}</td></tr>"
                       for k, v in self.subcommands.items())
        return (
            "<div class='fedbench-card' style='border:1px solid #ccc;border-radius:6px;padding:8px 12px;"
            "max-width:52em'><b>%%federate</b><table>" + forms + "</table><b>%fedbench</b><table>" + subs
            + "</table><p>Options: <code>%federate?</code>, <code>%fedbench?</code>; settings: "
            "<code>%config Fedbench</code></p></div>"
        )


@dataclass
class Notice:
    """A one-line message with an HTML twin (e.g. what ``%fedbench reset`` did)."""

    message: str

    def __repr__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        return f"<p>{escape(self.message)}</p>"
