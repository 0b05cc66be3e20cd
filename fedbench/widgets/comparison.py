"""Compare secure-aggregation set-ups side by side: cost and who must be trusted.

Shows, per set-up (Paillier with one key holder, threshold Paillier, masking,
CKKS...), only the run's cost figures (time, bytes, messages, ciphertexts,
CKKS error bound) and its trust metadata (the protocol's trust model and the
result's threat model): never the released sums, never a payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from ..transcript import _fmt_bytes, _n
from ._base import Dashboard, figure_row, html_table

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import polars as pl

    from ..results import SecureSumResult

__all__ = ["ProtocolComparison", "SetupTrust", "setup_trust"]

#: Present in the threat model of a threshold key dealt by a dealer (``keyholders.threshold_trust_text``).
_DEALER_CLAUSE = "a dealer generated the key"


@dataclass(frozen=True)
class SetupTrust:
    """Who a run had to trust, and the smallest collusion that breaks it.

    Attributes
    ----------
    key_setup : str
        ``"single key"``, ``"threshold t (dealer)"``, ``"threshold t (dealerless)"`` or ``"no key"`` (masking).
    trusted : tuple of str
        Roles that must follow the protocol and not collude.
    broken_by : str
        The smallest collusion that exposes a party's local aggregate.
    """

    key_setup: str
    trusted: tuple[str, ...]
    broken_by: str


def setup_trust(result: SecureSumResult) -> SetupTrust:
    """The trust of the set-up ``result`` ran under: its protocol's trust model, adjusted for threshold keys.

    A Paillier run decrypted by ``t`` share holders (``partial-decryption`` messages in its
    transcript) has no key holder: it trusts the aggregator (and the dealer, when a dealer made
    the key), and any ``t`` share holders (or the dealer) colluding with the aggregator break it.
    """
    from ..secagg import get_protocol

    model = get_protocol(result.protocol).trust_model
    transcript = result.transcript if result.transcript is not None else ()
    decryptors = {m.sender for m in transcript if m.kind == "partial-decryption"}
    if result.protocol == "ckks-multiparty":  # n-of-n key shares: its own trust model, not threshold Paillier's
        return SetupTrust(f"{len(decryptors)}-of-{len(decryptors)} key shares (no dealer)", tuple(model.trusted),
                          model.broken_by)
    if decryptors:
        t = len(decryptors)
        dealer = _DEALER_CLAUSE in result.threat_text
        broken = f"the aggregator colluding with any {t} share-holding parties"
        if dealer:
            broken += ", or with the dealer (which saw the key)"
        return SetupTrust(f"threshold {t} ({'dealer' if dealer else 'dealerless'})",
                          ("aggregator", "dealer") if dealer else ("aggregator",), broken)
    broken = model.broken_by
    threshold = result.protocol_details.get("threshold")
    if threshold is not None:
        broken = broken.replace("with t share holders", f"with t = {threshold} share holders")
    key = "single key" if "keyholder" in model.trusted else "no key"
    return SetupTrust(key, tuple(model.trusted), broken)


def _check_results(results: Mapping[str, Any]) -> dict[str, SecureSumResult]:
    from ..errors import ConfigurationError
    from ..results import SecureSumResult

    if not isinstance(results, Mapping) or not results:
        raise ConfigurationError("results must be a non-empty mapping of set-up label -> SecureSumResult")
    for label, r in results.items():
        if not isinstance(label, str):
            raise ConfigurationError(f"set-up labels must be strings, got {type(label).__name__}")
        if not isinstance(r, SecureSumResult):
            raise ConfigurationError(
                f"set-up {label!r}: expected a SecureSumResult (fed.secure_sum(...)), got {type(r).__name__}"
            )
    return dict(results)


class ProtocolComparison(Dashboard):
    """Secure-aggregation set-ups side by side: time, bytes, messages, ciphertexts, error bound and trust.

    Parameters
    ----------
    results : mapping of str to SecureSumResult
        One result per set-up, keyed by the label to show (e.g. ``{"Paillier": r1, "masking": r2}``).
    figure_backend : {"widget", "static"}, default "widget"
        See :class:`~fedbench.widgets.Dashboard`.

    Attributes
    ----------
    rows : polars.DataFrame
        One row per set-up: ``setup, protocol, key_setup, scheme, seconds, bytes, encrypted_bytes, messages,
        ciphertexts, unit, error_bound, trusted, broken_by, threat_model``.

    Notes
    -----
    Only cost and trust metadata are shown; the released sums are not (compare them with
    ``result.value`` if needed).  ``ciphertexts`` counts what all parties sent: Paillier or
    CKKS ciphertexts, or masked vectors for masking (``unit`` says which).

    Examples
    --------
    >>> ProtocolComparison({"Paillier": r1, "masking": r2}, figure_backend="static")  # doctest: +SKIP
    """

    title = "Secure-aggregation set-ups compared"

    def __init__(self, results: Mapping[str, SecureSumResult], *, figure_backend: str = "widget") -> None:
        import ipywidgets as w

        self.results = _check_results(results)
        super().__init__(figure_backend=figure_backend)
        self.table = w.HTML()
        self.rows: pl.DataFrame | None = None
        time_fig = self._figure_holder("time", self._time_figure())
        bytes_fig = self._figure_holder("bytes", self._bytes_figure())
        self.widget = w.VBox([self.header, w.HBox([time_fig, bytes_fig], layout=figure_row()), self.table, self.log])
        self.refresh()

    def refresh(self) -> None:
        """Recompute the rows from the results and redraw."""
        self.rows = self._compute()
        self.header.value = (
            f"<b>{_n(self.rows.height, 'set-up')}</b> · cost and trust only (released values are not shown)"
        )
        self._show("time", self._time_figure())
        self._show("bytes", self._bytes_figure())
        table_rows = [
            (r["setup"], r["protocol"], r["key_setup"], f"{r['seconds']:.3f} s", _fmt_bytes(r["bytes"]),
             r["messages"], f"{r['ciphertexts']:,} {r['unit']}",
             "exact" if r["error_bound"] is None else f"±{r['error_bound']:.3g}",
             ", ".join(r["trusted"]), r["broken_by"])
            for r in self.rows.iter_rows(named=True)
        ]
        self.table.value = html_table(
            ["set-up", "protocol", "keys", "time", "bytes", "messages", "sent", "error bound", "must trust",
             "broken by"],
            table_rows,
        ) + self._threat_html()

    def update(self, results: Mapping[str, SecureSumResult] | None = None) -> None:
        """Show other results (or the same ones again) and redraw."""
        if results is not None:
            self.results = _check_results(results)
        self.refresh()

    def _compute(self) -> pl.DataFrame:
        import polars as pl

        out = []
        for label, r in self.results.items():
            trust = setup_trust(r)
            transcript = list(r.transcript or ())
            masked = r.protocol == "masking"
            out.append({
                "setup": label,
                "protocol": r.protocol,
                "key_setup": trust.key_setup,
                "scheme": "pairwise masking" if masked else r.scheme_text,
                "seconds": float(r.elapsed),
                "bytes": int(r.nbytes),
                "encrypted_bytes": sum(m.nbytes for m in transcript if m.encrypted),
                "messages": len(transcript),
                "ciphertexts": int(r.ciphertexts),
                "unit": "masked vectors" if masked else "ciphertexts",
                "error_bound": r.error_bound,
                "trusted": list(trust.trusted),
                "broken_by": trust.broken_by,
                "threat_model": r.threat_text,
            })
        schema: dict[str, pl.DataType | type[pl.DataType]] = {
            "setup": pl.String, "protocol": pl.String, "key_setup": pl.String, "scheme": pl.String,
            "seconds": pl.Float64, "bytes": pl.Int64, "encrypted_bytes": pl.Int64, "messages": pl.Int64,
            "ciphertexts": pl.Int64, "unit": pl.String, "error_bound": pl.Float64,
            "trusted": pl.List(pl.String), "broken_by": pl.String, "threat_model": pl.String,
        }
        return pl.DataFrame(out, schema=schema)

    def _threat_html(self) -> str:
        items = "".join(
            f"<li><b>{escape(r['setup'])}</b> ({escape(r['scheme'])}): {escape(r['threat_model'])}</li>"
            for r in (self.rows.iter_rows(named=True) if self.rows is not None else ())
        )
        return f"<details><summary>threat model of each run</summary><ul>{items}</ul></details>"

    def _time_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        rows = self.rows
        if rows is not None and rows.height:
            hover = [", ".join(f"{k} {v:.3f} s" for k, v in self.results[s].seconds.items())
                     for s in rows["setup"].to_list()]
            fig.add_bar(x=rows["setup"].to_list(), y=rows["seconds"].to_list(), name="wall-clock",
                        marker_color="#f58518", hovertext=hover)
        fig.update_layout(title="Time per set-up", height=280, yaxis_title="seconds",
                          margin={"t": 40, "b": 40, "l": 60, "r": 10})
        return fig

    def _bytes_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        rows = self.rows
        if rows is not None and rows.height:
            x = rows["setup"].to_list()
            fig.add_bar(x=x, y=rows["encrypted_bytes"].to_list(), name="encrypted", marker_color="#4c78a8")
            fig.add_bar(x=x, y=(rows["bytes"] - rows["encrypted_bytes"]).to_list(), name="plain",
                        marker_color="#bab0ac")
        fig.update_layout(title="Bytes sent per set-up", barmode="stack", height=280, yaxis_title="bytes",
                          margin={"t": 40, "b": 40, "l": 60, "r": 10})
        return fig

    def _text(self) -> str:
        lines = [f"ProtocolComparison: {_n(len(self.results), 'set-up')} (cost and trust only)"]
        for r in (self.rows.iter_rows(named=True) if self.rows is not None else ()):
            bound = "" if r["error_bound"] is None else f", error bound ±{r['error_bound']:.3g}"
            lines.append(
                f"  {r['setup']} [{r['protocol']}, {r['key_setup']}]: {r['seconds']:.3f} s, {_fmt_bytes(r['bytes'])}, "
                f"{_n(r['messages'], 'message')}, {r['ciphertexts']:,} {r['unit']}{bound}\n"
                f"    must trust: {', '.join(r['trusted'])}; broken by: {r['broken_by']}"
            )
        return "\n".join(lines)

    def _html_body(self) -> str:
        return self.table.value
