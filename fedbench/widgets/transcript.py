"""Transcript dashboards: the message viewer and the crypto-cost panel.

Both read a :class:`~fedbench.Transcript` (a federation's by default) and
never a payload: only who sent what kind of message to whom, its size, and
how long it took to produce.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from ..transcript import ROLE_NAMES, _fmt_bytes, _n
from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    from collections.abc import Mapping

    import plotly.graph_objects as go
    import polars as pl

    from ..results import SecureSumResult
    from .comparison import ProtocolComparison

__all__ = ["CryptoCostPanel", "TranscriptViewer"]

ALL = "(all)"
#: Value of the "all runs" choice (run identifiers start at 1; a dropdown value of None means "no selection").
ALL_RUNS = -1
_VIEW_COLUMNS = ["run_id", "protocol", "sender", "receiver", "kind", "nbytes", "encrypted", "seconds"]


def _source(source: Any) -> tuple[Any, int | None]:
    """(transcript, key_bits) of a Federation or a Transcript."""
    transcript = getattr(source, "transcript", source)
    if not hasattr(transcript, "to_polars"):
        from ..errors import ConfigurationError

        raise ConfigurationError(f"expected a Federation or a Transcript, got {type(source).__name__}")
    return transcript, getattr(source, "key_bits", None)


def _run_options(frame: pl.DataFrame) -> list[tuple[str, Any]]:
    import polars as pl

    runs = frame.group_by("run_id", maintain_order=True).agg(pl.col("protocol").first(), pl.len().alias("n"))
    return [(ALL, ALL_RUNS)] + [(f"#{r} {p} ({_n(n, 'message')})", r) for r, p, n in runs.iter_rows()]


class TranscriptViewer(Dashboard):
    """Every message of a federation's protocol runs, filterable by party, kind and run.

    Parameters
    ----------
    source : Federation or Transcript
        Where the messages come from (a federation's transcript grows as it runs).
    party, kind : str, optional
        Initial filters: messages sent or received by ``party``, of ``kind``.
    run : int, optional
        Initial filter on the run identifier.
    max_rows : int, default 20
        Rows shown in the table (the filtered frame holds all).
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Examples
    --------
    >>> viewer = TranscriptViewer(fed)            # doctest: +SKIP
    >>> viewer.party.value = "north"; viewer.filtered.height
    """

    title = "Transcript"

    def __init__(
        self,
        source: Any,
        *,
        party: str | None = None,
        kind: str | None = None,
        run: int | None = None,
        max_rows: int = 20,
        figure_backend: str = "widget",
    ) -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.source = source
        self.max_rows = max_rows
        self.party = w.Dropdown(description="party", options=[ALL], value=ALL)
        self.kind = w.Dropdown(description="kind", options=[ALL], value=ALL)
        self.run = w.Dropdown(description="run", options=[(ALL, ALL_RUNS)], value=ALL_RUNS)
        self.table = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        #: List every message of the filter, not only the first ``max_rows``.
        self.show_all = w.ToggleButton(description="show all", value=False)
        self.show_all.observe(self._guard(lambda _: self._draw()), names="value")
        #: The messages currently shown (polars DataFrame, all of them, not only ``max_rows``).
        self.filtered: pl.DataFrame | None = None
        for dd in (self.party, self.kind, self.run):
            dd.observe(self._guard(lambda _: self._draw()), names="value")
        self.refresh_button.on_click(self._guard(lambda _: self.refresh()))
        holder = self._figure_holder("bytes", self._figure(None))
        self.widget = w.VBox([
            w.HBox([self.header, self.refresh_button]),
            w.HBox([self.party, self.kind, self.run, self.show_all]),
            holder,
            self.table,
            self.log,
        ])
        self.refresh()
        self._preset(party=party, kind=kind, run=run)

    def _preset(self, **filters: Any) -> None:
        for name, value in filters.items():
            if value is None:
                continue
            dd = getattr(self, name)
            values = [o[1] if isinstance(o, tuple) else o for o in dd.options]
            if value not in values:
                from ..errors import ConfigurationError

                shown = [v for v in values if v not in (ALL, ALL_RUNS)]
                raise ConfigurationError(f"no message with {name} {value!r} in the transcript (known: {shown})")
            dd.value = value

    @property
    def transcript(self) -> Any:
        """The transcript shown."""
        return _source(self.source)[0]

    def refresh(self) -> None:
        """Re-read the transcript (new runs appear in the run filter) and redraw."""
        frame = self.transcript.to_polars()
        parties = sorted(set(frame["sender"].to_list()) | set(frame["receiver"].to_list()))
        self._set_choices(self.party, [ALL, *parties])
        self._set_choices(self.kind, [ALL, *dict.fromkeys(frame["kind"].to_list())])
        self._set_choices(self.run, _run_options(frame))
        self._draw()

    def update(self, source: Any | None = None) -> None:
        """Show another federation or transcript (or re-read this one) and redraw."""
        if source is not None:
            self.source = source
        self.refresh()

    def _draw(self) -> None:
        import polars as pl

        frame = self.transcript.to_polars()
        if self.party.value != ALL:
            frame = frame.filter((pl.col("sender") == self.party.value) | (pl.col("receiver") == self.party.value))
        if self.kind.value != ALL:
            frame = frame.filter(pl.col("kind") == self.kind.value)
        if self.run.value != ALL_RUNS:
            frame = frame.filter(pl.col("run_id") == self.run.value)
        self.filtered = frame.select(_VIEW_COLUMNS)
        enc = int(frame["encrypted"].sum()) if frame.height else 0
        self.header.value = (
            f"<b>{_n(frame.height, 'message')}</b> shown ({enc} encrypted), {_fmt_bytes(int(frame['nbytes'].sum()))} · "
            f"transcript total {_n(len(self.transcript), 'message')}"
        )
        rows = [
            (r, p, s, rc, k, _fmt_bytes(n), "🔒" if e else "plain", f"{sec * 1000:.1f} ms")
            for r, p, s, rc, k, n, e, sec in self.filtered.iter_rows()
        ]
        self.table.value = html_table(["run", "protocol", "from", "to", "kind", "bytes", "content", "time"], rows,
                                      max_rows=len(rows) if self.show_all.value else self.max_rows,
                                      hint=": press <i>show all</i>, or use <code>viewer.filtered</code>")
        self._show("bytes", self._figure(frame))

    def _figure(self, frame: pl.DataFrame | None) -> go.Figure:
        import plotly.graph_objects as go
        import polars as pl

        fig = go.Figure()
        if frame is not None and frame.height:
            by = frame.group_by(["kind", "encrypted"], maintain_order=True).agg(pl.col("nbytes").sum())
            for enc, colour in ((True, "#4c78a8"), (False, "#bab0ac")):
                part = by.filter(pl.col("encrypted") == enc)
                if part.height:
                    fig.add_bar(x=part["kind"].to_list(), y=part["nbytes"].to_list(),
                                name="encrypted" if enc else "plain", marker_color=colour)
        fig.update_layout(title="Bytes by message kind", barmode="stack", yaxis_title="bytes", height=260,
                          margin={"t": 40, "b": 40, "l": 60, "r": 10})
        return fig

    def _text(self) -> str:
        n = self.filtered.height if self.filtered is not None else 0
        filters = ", ".join(f"{k}={v}" for k, v in (("party", self.party.value), ("kind", self.kind.value),
                                                     ("run", self.run.value)) if v not in (ALL, ALL_RUNS))
        return f"TranscriptViewer: {n} of {_n(len(self.transcript), 'message')}" + (f" ({filters})" if filters else "")

    def _html_body(self) -> str:
        return self.table.value


class CryptoCostPanel(Dashboard):
    """What the cryptography cost each party: ciphertexts, bytes, encryption time, and the key size.

    Parameters
    ----------
    source : Federation or Transcript
        A federation (its transcript and key size) or a transcript.
    key_bits : int, optional
        Paillier modulus size, when ``source`` is a bare transcript (needed to count ciphertexts).
    run : int, optional
        Show one run only.
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Notes
    -----
    A Paillier ciphertext is an integer modulo ``n**2``, so it takes
    ``key_bits / 4`` bytes on the wire; ciphertexts are counted from the bytes
    of each party's ``ciphertexts`` messages.  Encryption time is the time the
    party spent producing its encrypted messages.
    """

    title = "Crypto cost"

    def __init__(
        self, source: Any, *, key_bits: int | None = None, run: int | None = None, figure_backend: str = "widget"
    ) -> None:
        import ipywidgets as w

        super().__init__(figure_backend=figure_backend)
        self.source = source
        self.key_bits = key_bits
        self.run = w.Dropdown(description="run", options=[(ALL, ALL_RUNS)], value=ALL_RUNS)
        self.table = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        #: Per-party costs currently shown (polars DataFrame).
        self.costs: pl.DataFrame | None = None
        self.run.observe(self._guard(lambda _: self._draw()), names="value")
        self.refresh_button.on_click(self._guard(lambda _: self.refresh()))
        bytes_fig = self._figure_holder("bytes", self._bytes_figure())
        time_fig = self._figure_holder("time", self._time_figure())
        self.widget = w.VBox([
            w.HBox([self.header, self.refresh_button]),
            self.run,
            w.HBox([bytes_fig, time_fig], layout=figure_row()),
            self.table,
            self.log,
        ])
        self.refresh()
        if run is not None:
            if run not in [o[1] for o in self.run.options]:
                from ..errors import ConfigurationError

                raise ConfigurationError(f"no run {run!r} in the transcript")
            self.run.value = run

    @property
    def bits(self) -> int | None:
        """Paillier modulus size used to count ciphertexts."""
        return self.key_bits if self.key_bits is not None else _source(self.source)[1]

    def refresh(self) -> None:
        """Re-read the transcript and redraw."""
        self._set_choices(self.run, _run_options(_source(self.source)[0].to_polars()))
        self._draw()

    def update(self, source: Any | None = None) -> None:
        """Show another federation or transcript (or re-read this one) and redraw."""
        if source is not None:
            self.source = source
        self.refresh()

    def _frame(self) -> pl.DataFrame:
        import polars as pl

        frame = _source(self.source)[0].to_polars()
        if self.run.value != ALL_RUNS:
            frame = frame.filter(pl.col("run_id") == self.run.value)
        return frame

    def _compute(self) -> pl.DataFrame:
        import polars as pl

        frame = self._frame()
        ct_bytes = self.bits // 4 if self.bits else None
        parties = [s for s in dict.fromkeys(frame["sender"].to_list()) if s not in ROLE_NAMES]
        rows = []
        for p in parties:
            sent = frame.filter(pl.col("sender") == p)
            enc = sent.filter(pl.col("encrypted"))
            cts = sent.filter(pl.col("kind") == "ciphertexts")["nbytes"].sum()
            rows.append({
                "party": p,
                "messages": sent.height,
                "bytes": int(sent["nbytes"].sum()),
                "encrypted_bytes": int(enc["nbytes"].sum()),
                "ciphertexts": int(cts // ct_bytes) if ct_bytes else None,
                "encrypt_seconds": float(enc["seconds"].sum()),
            })
        schema = {"party": pl.String, "messages": pl.Int64, "bytes": pl.Int64, "encrypted_bytes": pl.Int64,
                  "ciphertexts": pl.Int64, "encrypt_seconds": pl.Float64}
        return pl.DataFrame(rows, schema=schema)

    def _draw(self) -> None:
        self.costs = self._compute()
        frame = self._frame()
        bits = self.bits
        total_cts = self.costs["ciphertexts"].sum() if bits else None
        key = f"{bits}-bit Paillier (ciphertexts of {bits // 4} bytes)" if bits else "key size unknown"
        if self._masking_only():
            key = "pairwise masking: no Paillier ciphertexts, one masked vector per party (8 bytes per value)"
        self.header.value = (
            f"<b>{escape(key)}</b> · {total_cts if total_cts is not None else '?'} ciphertexts from parties · "
            f"{_fmt_bytes(int(frame['nbytes'].sum()))} in {_n(frame.height, 'message')} · "
            f"{_n(frame['run_id'].n_unique() if frame.height else 0, 'run')}"
        )
        self._show("bytes", self._bytes_figure())
        self._show("time", self._time_figure())
        self.table.value = html_table(
            ["party", "messages", "bytes sent", "encrypted bytes", "ciphertexts", "encryption s"],
            list(self.costs.iter_rows()),
        )

    def _bytes_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        c = self.costs
        if c is not None and c.height:
            fig.add_bar(x=c["party"].to_list(), y=c["encrypted_bytes"].to_list(), name="encrypted",
                        marker_color="#4c78a8")
            fig.add_bar(x=c["party"].to_list(), y=(c["bytes"] - c["encrypted_bytes"]).to_list(), name="plain",
                        marker_color="#bab0ac")
        fig.update_layout(title="Bytes sent per party", barmode="stack", height=280, yaxis_title="bytes",
                          margin={"t": 40, "b": 40, "l": 60, "r": 10})
        return fig

    def _time_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        c = self.costs
        if c is not None and c.height:
            fig.add_bar(x=c["party"].to_list(), y=c["encrypt_seconds"].to_list(), name="encryption",
                        marker_color="#f58518",
                        hovertext=[f"{n} ciphertexts" for n in c["ciphertexts"].to_list()])
        fig.update_layout(title="Encryption time per party", height=280, yaxis_title="seconds",
                          margin={"t": 40, "b": 40, "l": 60, "r": 10})
        return fig

    @staticmethod
    def compare(results: Mapping[str, SecureSumResult], *, figure_backend: str = "widget") -> ProtocolComparison:
        """Compare secure-aggregation set-ups: cost and trust of one result per set-up.

        Parameters
        ----------
        results : mapping of str to SecureSumResult
            Label -> result, e.g. ``{"Paillier": r1, "threshold": r2, "masking": r3, "CKKS": r4}``.
        figure_backend : {"widget", "static"}, default "widget"
            See :class:`~fedbench.widgets.Dashboard`.

        Returns
        -------
        ProtocolComparison
            The comparison dashboard (see :class:`~fedbench.widgets.ProtocolComparison`).
        """
        from .comparison import ProtocolComparison

        return ProtocolComparison(results, figure_backend=figure_backend)

    def _masking_only(self) -> bool:
        """Whether the runs shown are masking runs only (masked inputs, no Paillier ciphertexts)."""
        kinds = set(self._frame()["kind"].to_list())
        return "masked-input" in kinds and "ciphertexts" not in kinds

    def _text(self) -> str:
        if self._masking_only():
            lines = ["CryptoCostPanel: pairwise masking (no Paillier ciphertexts)"]
            for r in (self.costs.iter_rows(named=True) if self.costs is not None else ()):
                lines.append(f"  {r['party']}: {r['messages']} messages, {_fmt_bytes(r['bytes'])}")
            return "\n".join(lines)
        lines = [f"CryptoCostPanel: {self.bits or '?'}-bit Paillier"]
        if self.costs is not None:
            for r in self.costs.iter_rows(named=True):
                lines.append(f"  {r['party']}: {r['ciphertexts']} ciphertexts, {_fmt_bytes(r['bytes'])}, "
                             f"{r['encrypt_seconds'] * 1000:.1f} ms encrypting")
        return "\n".join(lines)

    def _html_body(self) -> str:
        return self.table.value
