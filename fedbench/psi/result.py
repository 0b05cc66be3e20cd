"""The result of a private set intersection run."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import numpy as np
import polars as pl

from ..transcript import Transcript, _fmt_bytes, _n

__all__ = ["PSIResult"]


@dataclass(repr=False, eq=False)
class PSIResult:
    """What a PSI run produced, and who learned what.

    Attributes
    ----------
    mode : {"reveal", "cardinality", "align"}
        The protocol mode.
    parties : tuple of str
        Parties of the run, in the order given.
    on : tuple of str
        Key columns.
    size : int
        Number of distinct identifiers every party holds (the intersection size).
    receiver : str or None
        ``reveal``: the party that learned the identifiers.  ``cardinality``: the
        party that compared the blinded sets.  ``align``: ``None``.
    ids : polars.DataFrame or None
        ``reveal`` only: the receiver's key columns for its rows in the
        intersection (its own raw values, first row of each identifier, in its row
        order).  Never holds another party's values.
    positions : dict of str to numpy.ndarray, or None
        ``align``: for each party, the row indices of its matched records, in one
        order common to both parties (``positions[a][t]`` and ``positions[b][t]``
        hold the same identifier), which is a pseudo-random order neither party
        chose.  ``reveal``: the receiver's rows of ``ids``.
    overlap : polars.DataFrame or None
        ``cardinality``: the pairwise overlap matrix, a ``party`` column then one
        column per party; the diagonal holds each set's size.
    set_sizes : dict of str to int
        Distinct identifiers per party (revealed to all parties by message sizes).
    missing : dict of str to int
        Rows dropped per party for a missing or empty identifier.  Filled only when
        every party lives in this process (a simulation: read from the parties'
        state, never sent); empty when parties live elsewhere (Ray), since these
        counts never leave a party.
    duplicates : dict of str to int
        Rows per party that repeated an identifier (kept out of the sets); filled
        like ``missing``.
    leakage : str
        Who learned what in this run.
    transcript : Transcript
        The run's messages.
    elapsed : float
        Wall-clock seconds of the whole run, validation included.
    nbytes : int
        Bytes sent between parties in this run.
    """

    mode: str
    parties: tuple[str, ...]
    on: tuple[str, ...]
    size: int
    receiver: str | None
    leakage: str
    transcript: Transcript
    elapsed: float
    nbytes: int
    set_sizes: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    ids: pl.DataFrame | None = None
    positions: dict[str, np.ndarray] | None = None
    overlap: pl.DataFrame | None = None

    @property
    def bytes_per_element(self) -> float:
        """Bytes on the wire per input element (distinct identifiers summed over parties)."""
        total = sum(self.set_sizes.values())
        return self.nbytes / total if total else 0.0

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        who = f", receiver {self.receiver!r}" if self.receiver and self.mode == "reveal" else ""
        extra = ""
        if self.ids is not None:
            extra = f", ids: {self.ids.height} rows"
        if self.mode == "align" and self.positions is not None:
            extra = ", positions: " + ", ".join(f"{p}[{len(v)}]" for p, v in self.positions.items())
        if self.overlap is not None and len(self.parties) > 2:
            extra = f", overlap: {len(self.parties)}x{len(self.parties)}"
        return (
            f"<PSIResult {self.mode}: {self.size:,} shared of "
            + " & ".join(f"{p} {self.set_sizes.get(p, 0):,}" for p in self.parties)
            + f" on {list(self.on)}{who}{extra}; {_n(len(self.transcript), 'message')}, "
            f"{_fmt_bytes(self.nbytes)}, {self.elapsed:.2f} s>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(p)}</td><td style='text-align:right'>{self.set_sizes.get(p, 0):,}</td>"
            f"<td style='text-align:right'>{_count(self.missing, p)}</td>"
            f"<td style='text-align:right'>{_count(self.duplicates, p)}</td></tr>"
            for p in self.parties
        )
        overlap = ""
        if self.overlap is not None:
            head = "".join(f"<th>{escape(p)}</th>" for p in self.parties)
            body = "".join(
                f"<tr><th>{escape(r[0])}</th>"
                + "".join(f"<td style='text-align:right'>{v:,}</td>" for v in r[1:])
                + "</tr>"
                for r in self.overlap.iter_rows()
            )
            overlap = f"<p><b>Pairwise overlap</b></p><table><tr><th></th>{head}</tr>{body}</table>"
        detail = ""
        if self.ids is not None and self.receiver is not None:
            detail = (
                f"<p><code>.ids</code>: {self.ids.height:,} rows of {escape(self.receiver)}'s "
                f"own key values (not shown here)</p>"
            )
        elif self.mode == "align" and self.positions is not None:
            detail = (
                "<p><code>.positions</code>: matched row indices of "
                + ", ".join(escape(p) for p in self.positions)
                + ", in one common order</p>"
            )
        receiver = ""
        if self.mode == "reveal" and self.receiver:
            receiver = f" &middot; receiver <b>{escape(self.receiver)}</b>"
        who = ""
        if self.mode == "cardinality":
            # Nobody receives identifiers here: the comparer counts fully blinded values and sends the counts.
            comparer = f" ({escape(self.receiver)} compared the fully blinded sets)" if self.receiver else ""
            who = (
                "<p style='font-size:0.9em'><b>Who learned what.</b> Every party learned the same counts: "
                f"the intersection size and the pairwise overlaps{comparer}. Nobody learned which "
                "identifiers are shared.</p>"
            )
        return (
            "<div style='border:1px solid #ccc;border-radius:6px;padding:8px 12px;max-width:720px'>"
            f"<div><b>Private set intersection</b> &middot; mode <code>{escape(self.mode)}</code>{receiver}"
            f" &middot; key <code>{escape(', '.join(self.on))}</code></div>"
            f"<div style='font-size:1.6em;margin:4px 0'>{self.size:,} shared identifiers</div>"
            "<table><tr><th>party</th><th>distinct ids</th><th>missing</th><th>duplicate rows</th></tr>"
            f"{rows}</table>{overlap}{detail}{who}"
            f"<p style='font-size:0.9em'><b>Leakage.</b> {escape(self.leakage)}</p>"
            f"<p style='font-size:0.85em;color:#555'>{_n(len(self.transcript), 'message')}, "
            f"{_fmt_bytes(self.nbytes)} ({self.bytes_per_element:.1f} B per element), "
            f"{self.elapsed:.2f} s</p></div>"
        )


def _count(counts: dict[str, int], party: str) -> str:
    # A remote party keeps these counts to itself: show that they are not known here.
    return f"{counts[party]:,}" if party in counts else "&ndash;"
