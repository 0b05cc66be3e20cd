"""Result objects: what a protocol run hands back to the analyst.

Every result carries the value, the parties that took part, what the run cost
(time, bytes, ciphertexts) and the threat model it was computed under, and
shows all of that both as text (``__repr__``) and as an HTML card
(``_repr_html_``).  No result ever holds a party's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from .transcript import Transcript, _fmt_bytes

if TYPE_CHECKING:
    import polars as pl

__all__ = ["THREAT_MODEL", "HistogramResult", "SecureSumResult", "render_card"]

#: One line on every result: the model the guarantees hold under, and what breaks them.
THREAT_MODEL = (
    "honest-but-curious parties, aggregator and key holder: the aggregator sees only ciphertexts and the "
    "key holder decrypts only the aggregate; if aggregator and key holder collude they can decrypt each "
    "party's local aggregates (never its raw rows)"
)


def _fmt_value(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 6:
            return np.array2string(v, precision=6, separator=", ")
        return f"array(shape={v.shape})"
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v)


def _fmt_scale(privacy: dict[str, Any]) -> str:
    # With per-entry sensitivities the plan's scale is per unit of sensitivity: show what each entry got.
    entries = privacy.get("entry_sensitivity") or {}
    if not entries:
        return f"scale={privacy['scale']:.4g}"
    if len(entries) <= 4:
        return "scale " + ", ".join(f"{k}={privacy['scale'] * v:.4g}" for k, v in entries.items())
    return f"scale={privacy['scale']:.4g} per unit of each entry's sensitivity"


def _fmt_privacy(privacy: dict[str, Any] | None) -> str:
    if not privacy:
        return "exact release (not differentially private)"
    delta = f", delta={privacy['delta']:g}" if privacy.get("delta") else ""
    where = "by each party before encryption" if privacy["noise"] == "distributed" else "by the key holder"
    text = (
        f"{privacy['mechanism']} noise, epsilon={privacy['epsilon']:g}{delta}, {_fmt_scale(privacy)}, "
        f"{privacy['noise']} (added {where})"
    )
    if privacy.get("adversary"):
        text += f"; epsilon holds against: {privacy['adversary']}"
    if privacy.get("epsilon_outsider") is not None:
        text += f" (against an outsider who knows no noise share: epsilon={privacy['epsilon_outsider']:.4g})"
    return text


def render_card(title: str, rows: list[tuple[str, str]], body_html: str = "") -> str:
    """Render a small HTML card (title, key/value rows, optional body, threat-model footer)."""
    trs = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows
    )
    return (
        "<div class='fedbench-card' style='border:1px solid #ccc;border-radius:6px;padding:8px 12px;"
        "max-width:52em'>"
        f"<div style='font-weight:bold;margin-bottom:4px'>{escape(title)}</div>"
        f"<table>{trs}</table>{body_html}"
        f"<div style='color:#666;font-size:85%;margin-top:6px'>🔒 Threat model: {escape(THREAT_MODEL)}</div>"
        "</div>"
    )


@dataclass
class SecureSumResult:
    """The outcome of a secure sum.

    Attributes
    ----------
    value : dict of str to float or numpy.ndarray
        The securely summed entries.
    parties : list of str
        Parties that contributed.
    nulls_skipped : dict of str to int
        Per column, how many null cells were skipped across all parties (a
        securely summed total; per-party counts are not revealed).  Empty for
        callable sums.
    key_bits : int
        Paillier modulus size.
    ciphertexts : int
        Ciphertexts sent by all parties together.
    slots_per_ciphertext : int
        Values packed in one ciphertext.
    frac_bits, value_bits : int
        The public fixed-point encoding.
    fast_encryption : bool
        Whether the DJN fixed-base encryption was used.
    seconds : dict of str to float
        Time spent encrypting (summed over parties), aggregating and decrypting.
    elapsed : float
        Wall-clock time of the whole run.
    transcript : Transcript
        Every message of the run.
    privacy : dict or None
        For a differentially private release: mechanism, epsilon, delta, noise
        scale and placement, ``adversary`` (who the epsilon holds against: any
        single party or any coalition of up to k - 1 parties for distributed
        noise; the analyst and the parties but not the key holder for central
        noise), ``epsilon_outsider`` for distributed noise (against someone who
        knows no share, for information) and the sampler (``None`` for an exact
        release).
    """

    value: dict[str, float | np.ndarray]
    parties: list[str]
    key_bits: int
    ciphertexts: int
    slots_per_ciphertext: int
    frac_bits: int
    value_bits: int
    fast_encryption: bool
    seconds: dict[str, float]
    elapsed: float
    transcript: Transcript = field(repr=False)
    nulls_skipped: dict[str, int] = field(default_factory=dict)
    backend: str = "inprocess"
    privacy: dict[str, Any] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes sent during the run."""
        return self.transcript.nbytes

    def __getitem__(self, key: str) -> float | np.ndarray:
        return self.value[key]

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={_fmt_value(v)}" for k, v in list(self.value.items())[:8])
        if len(self.value) > 8:
            vals += f", … ({len(self.value)} entries)"
        nulls = f"\n  nulls skipped: {self.nulls_skipped}" if any(self.nulls_skipped.values()) else ""
        nulls += f"\n  privacy: {_fmt_privacy(self.privacy)}"
        return (
            f"SecureSumResult({vals})\n"
            f"  parties: {', '.join(self.parties)}\n"
            f"  cost: {self.elapsed:.3f} s, {_fmt_bytes(self.nbytes)}, {self.ciphertexts} ciphertexts "
            f"({self.slots_per_ciphertext} values each), {self.key_bits}-bit Paillier"
            f"{' (DJN fast encryption)' if self.fast_encryption else ''}{nulls}\n"
            f"  threat model: {THREAT_MODEL}"
        )

    def _repr_html_(self) -> str:
        rows = [(k, escape(_fmt_value(v))) for k, v in list(self.value.items())[:20]]
        rows += [
            ("parties", escape(", ".join(self.parties))),
            ("time", f"{self.elapsed:.3f} s (encrypt {self.seconds.get('encrypt', 0):.3f} s, "
                     f"decrypt {self.seconds.get('decrypt', 0):.3f} s)"),
            ("traffic", f"{_fmt_bytes(self.nbytes)} in {len(self.transcript)} messages"),
            ("ciphertexts", f"{self.ciphertexts} × {self.key_bits}-bit Paillier, "
                            f"{self.slots_per_ciphertext} values each"),
        ]
        if any(self.nulls_skipped.values()):
            rows.append(("nulls skipped", escape(str(self.nulls_skipped))))
        rows.append(("privacy", escape(_fmt_privacy(self.privacy))))
        return render_card("Secure sum" + (" (differentially private)" if self.privacy else ""), rows)


@dataclass
class HistogramResult:
    """A securely aggregated fixed-bin histogram.

    Attributes
    ----------
    column : str
        The column binned.
    edges : numpy.ndarray
        Bin edges (public, declared before the run).
    counts : numpy.ndarray
        Count per bin, summed over parties.
    below, above : int
        Values below the first edge and above the last edge.
    nulls : int
        Null cells skipped.
    sum_result : SecureSumResult
        The underlying secure sum (cost, transcript).
    """

    column: str
    edges: np.ndarray
    counts: np.ndarray
    below: int
    above: int
    nulls: int
    sum_result: SecureSumResult = field(repr=False)

    @property
    def parties(self) -> list[str]:
        """Parties that contributed."""
        return self.sum_result.parties

    def to_polars(self) -> pl.DataFrame:
        """One row per bin: left edge, right edge, count."""
        import polars as pl

        return pl.DataFrame({"left": self.edges[:-1], "right": self.edges[1:], "count": self.counts.astype(int)})

    def __repr__(self) -> str:
        lines = [f"Histogram of {self.column!r} over {', '.join(self.parties)}"]
        peak = max(1, int(self.counts.max()) if self.counts.size else 1)
        for lo, hi, c in zip(self.edges[:-1], self.edges[1:], self.counts, strict=True):
            lines.append(f"  [{lo:>10.4g}, {hi:>10.4g}) {int(c):>8d} {'█' * int(30 * c / peak)}")
        lines.append(f"  below: {self.below}, above: {self.above}, nulls: {self.nulls}")
        if self.sum_result.privacy:
            lines.append(f"  privacy: {_fmt_privacy(self.sum_result.privacy)}")
        lines.append(f"  threat model: {THREAT_MODEL}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        peak = max(1, int(self.counts.max()) if self.counts.size else 1)
        bars = "".join(
            f"<tr><td>[{lo:.4g}, {hi:.4g})</td><td style='text-align:right'>{int(c)}</td>"
            f"<td><div style='background:#4c78a8;height:10px;width:{int(200 * c / peak)}px'></div></td></tr>"
            for lo, hi, c in zip(self.edges[:-1], self.edges[1:], self.counts, strict=True)
        )
        rows = [
            ("parties", escape(", ".join(self.parties))),
            ("outside range", f"{self.below} below, {self.above} above; {self.nulls} nulls"),
            ("cost", f"{self.sum_result.elapsed:.3f} s, {_fmt_bytes(self.sum_result.nbytes)}"),
        ]
        if self.sum_result.privacy:
            rows.append(("privacy", escape(_fmt_privacy(self.sum_result.privacy))))
        return render_card(f"Histogram of {self.column}", rows, f"<table>{bars}</table>")
