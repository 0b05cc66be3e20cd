"""Result objects: what a protocol run hands back to the analyst.

Every result carries the value, the parties that took part, what the run cost
(time, bytes, ciphertexts) and the threat model it was computed under, and
shows all of that both as text (``__repr__``) and as an HTML card
(``_repr_html_``).  No result ever holds a party's rows.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import polars as pl

from .secagg import get_protocol
from .transcript import Transcript, _fmt_bytes

__all__ = [
    "THREAT_MODEL",
    "Cost",
    "HistogramResult",
    "QuantileResult",
    "Result",
    "ScalarResult",
    "SecureSumResult",
    "TableResult",
    "render_card",
]

#: One line on every result: the model the guarantees hold under, and what breaks them.
# The Paillier protocol declares its trust model once (fedbench.secagg.paillier); results quote it.
THREAT_MODEL = get_protocol("paillier").trust_model.text


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
        f"differentially private: {privacy['mechanism']} noise, epsilon={privacy['epsilon']:g}{delta}, "
        f"{_fmt_scale(privacy)}, "
        f"{privacy['noise']} (added {where})"
    )
    if privacy.get("adversary"):
        text += f"; epsilon holds against: {privacy['adversary']}"
    if privacy.get("epsilon_outsider") is not None:
        text += f" (against an outsider who knows no noise share: epsilon={privacy['epsilon_outsider']:.4g})"
    return text


def render_card(title: str, rows: list[tuple[str, str]], body_html: str = "", threat_model: str | None = None) -> str:
    """Render a small HTML card (title, key/value rows, optional body, threat-model footer).

    ``threat_model`` is the footer's text (default: the single-key-holder Paillier model).
    """
    trs = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows
    )
    return (
        "<div class='fedbench-card' style='border:1px solid #ccc;border-radius:6px;padding:8px 12px;"
        "max-width:52em'>"
        f"<div style='font-weight:bold;margin-bottom:4px'>{escape(title)}</div>"
        f"<table>{trs}</table>{body_html}"
        "<div style='color:#666;font-size:85%;margin-top:6px'>🔒 Threat model: "
        f"{escape(threat_model or THREAT_MODEL)}</div>"
        "</div>"
    )



@dataclass(frozen=True)
class Cost:
    """What a result cost: wall-clock seconds, bytes sent and ciphertexts sent (all parties together)."""

    seconds: float
    bytes: int
    ciphertexts: int
    rounds: int = 1

    def __str__(self) -> str:
        rounds = f" in {self.rounds} secure rounds" if self.rounds != 1 else ""
        return f"{self.seconds:.3f} s, {_fmt_bytes(self.bytes)}, {self.ciphertexts} ciphertexts{rounds}"


@dataclass(eq=False, repr=False)
class Result:
    """What every statistic returns: the released value and how it was obtained.

    Attributes
    ----------
    value : object
        The released value (a number, a list, a mapping or a polars DataFrame).
    parties : list of str
        Parties that contributed.
    name : str
        What was computed, e.g. ``"mean(age)"``.
    released : str
        For a differentially private statistic: one line on what was released
        (the noisy aggregates) and how the value follows from it.
    privacy : dict or None
        The privacy record of a DP release (mechanism, epsilon, delta, noise
        scale and placement, ``adversary``: who the epsilon holds against);
        ``None`` for an exact release.
    runs : list of SecureSumResult
        The secure rounds behind the value (cost and transcript of each).
    transcript : Transcript
        Every message of those rounds.
    threat_model : str
        The trust model the value was computed under (empty: that of its runs, else
        :data:`THREAT_MODEL`); see :attr:`threat_text`.
    """

    value: Any
    parties: list[str]
    name: str = field(default="", kw_only=True)
    released: str = field(default="", kw_only=True)
    privacy: dict[str, Any] | None = field(default=None, kw_only=True)
    runs: list[SecureSumResult] = field(default_factory=list, kw_only=True)
    transcript: Transcript | None = field(default=None, kw_only=True)
    threat_model: str = field(default="", kw_only=True)

    @property
    def threat_text(self) -> str:
        """The threat model this result was computed under (its own, else its first run's, else the default)."""
        return self.threat_model or next((r.threat_model for r in self.runs if r.threat_model), THREAT_MODEL)

    def __post_init__(self) -> None:
        if self.transcript is None:
            self.transcript = Transcript(m for r in self.runs for m in (r.transcript or ()))

    @property
    def cost(self) -> Cost:
        """Seconds, bytes and ciphertexts of all the secure rounds behind the value."""
        return Cost(seconds=sum(r.elapsed for r in self.runs), bytes=sum(r.nbytes for r in self.runs),
                    ciphertexts=sum(r.ciphertexts for r in self.runs), rounds=len(self.runs))

    @property
    def nbytes(self) -> int:
        """Bytes sent during the run(s)."""
        return self.cost.bytes

    @property
    def title(self) -> str:
        """Card title: the statistic, flagged when differentially private."""
        return (self.name or type(self).__name__) + (" (differentially private)" if self.privacy else "")

    def to_polars(self) -> pl.DataFrame:
        """The value as a polars DataFrame (one row ``statistic, value`` for a scalar)."""
        return pl.DataFrame({"statistic": [self.name], "value": [self.value]})

    def _value_text(self) -> str:
        return _fmt_value(self.value)

    def _value_html(self) -> str:
        return escape(self._value_text())

    def _info(self) -> list[tuple[str, str]]:
        rows = [("parties", ", ".join(self.parties)), ("cost", str(self.cost))]
        protocols = list(dict.fromkeys(r.protocol for r in self.runs))
        if protocols and protocols != ["paillier"]:
            rows.append(("protocol", ", ".join(protocols)))
            dropped = {p: r for run in self.runs for p, r in run.dropped.items()}
            if dropped:
                rows.append(("dropped out", ", ".join(f"{p} (round {r})" for p, r in dropped.items())))
        bounds = [r.error_bound for r in self.runs if r.error_bound is not None]
        if bounds:  # an approximate protocol (CKKS): the bound of the sums this value was computed from
            rows.append(("error bound", f"approximate: each secure sum behind this value is within ±{max(bounds):.3g} "
                                        "per entry of the exact sum (declare a tight max_abs for a tighter bound)"))
        if self.released:
            rows.append(("released", self.released))
        rows.append(("privacy", _fmt_privacy(self.privacy)))
        return rows

    def __repr__(self) -> str:
        lines = [f"{self.title} = {self._value_text()}"]
        lines += [f"  {k}: {v}" for k, v in self._info()]
        lines.append(f"  threat model: {self.threat_text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [("value", self._value_html())] + [(k, escape(v)) for k, v in self._info()]
        return render_card(self.title, rows, threat_model=self.threat_text)


def _binary(op: Callable[[Any, Any], Any], reflected: bool = False) -> Callable[[ScalarResult, Any], Any]:
    def method(self: ScalarResult, other: Any) -> Any:
        if isinstance(other, Result):
            other = other.value
        if not isinstance(other, numbers.Number | np.number):
            return NotImplemented
        return op(other, self.value) if reflected else op(self.value, other)

    return method


@dataclass(eq=False, repr=False)
class ScalarResult(Result):
    """A result whose value is one number (count, sum, mean, variance, standard deviation, a quantile).

    It behaves as that number in arithmetic and comparisons (``float(r)``,
    ``round(r, 2)``, ``r == pytest.approx(...)``, ``f"{r:.1f}"``), so code
    written when statistics returned bare numbers keeps working.
    """

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self.value, ndigits)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # numpy functions (np.isfinite, np.isclose) see the number itself.
        return np.asarray(self.value, dtype=dtype)

    def __hash__(self) -> int:
        return hash(self.value)

    def __neg__(self) -> Any:
        return -self.value

    def __abs__(self) -> Any:
        return abs(self.value)

    __eq__ = _binary(operator.eq)
    __ne__ = _binary(operator.ne)
    __lt__ = _binary(operator.lt)
    __le__ = _binary(operator.le)
    __gt__ = _binary(operator.gt)
    __ge__ = _binary(operator.ge)
    __add__ = _binary(operator.add)
    __radd__ = _binary(operator.add, reflected=True)
    __sub__ = _binary(operator.sub)
    __rsub__ = _binary(operator.sub, reflected=True)
    __mul__ = _binary(operator.mul)
    __rmul__ = _binary(operator.mul, reflected=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __pow__ = _binary(operator.pow)


# pytest.approx and numpy treat registered Reals as numbers.
numbers.Real.register(ScalarResult)


@dataclass(eq=False, repr=False)
class QuantileResult(Result):
    """Several quantiles of one column (``value`` is a list aligned with ``q``)."""

    q: list[float] = field(default_factory=list, kw_only=True)

    def __iter__(self) -> Iterator[float]:
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, i: int) -> float:
        return self.value[i]

    def to_polars(self) -> pl.DataFrame:
        """One row per level: ``q, value``."""
        return pl.DataFrame({"q": self.q, "value": list(self.value)})


@dataclass(eq=False, repr=False)
class TableResult(Result):
    """A result whose value is a table (``stats``, ``cov``, ``corr``, ``group_counts``).

    ``to_polars()`` gives the polars DataFrame.  For compatibility with code
    written when these statistics returned the frame itself, indexing,
    ``len`` and the frame's methods (``filter``, ``row``, ``sort``...) are
    forwarded to it.
    """

    def to_polars(self) -> pl.DataFrame:
        """The table."""
        return self.value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "value":  # never forward private or dataclass-internal lookups
            raise AttributeError(name)
        return getattr(self.value, name)

    def __getitem__(self, key: Any) -> Any:
        return self.value[key]

    def equals(self, other: TableResult | pl.DataFrame, **kwargs: Any) -> bool:
        """Whether the tables are equal (polars' ``DataFrame.equals``; ``other`` may be a result or a frame)."""
        frame = other.to_polars() if isinstance(other, TableResult) else other
        return self.value.equals(frame, **kwargs)

    def __len__(self) -> int:
        return self.value.height

    def __iter__(self) -> Iterator[pl.Series]:
        return iter(self.value)

    def _value_text(self) -> str:
        with pl.Config(tbl_rows=40, tbl_cols=12):
            return "\n" + str(self.value)

    def _value_html(self) -> str:
        return self.value._repr_html_()

    def _repr_html_(self) -> str:
        rows = [(k, escape(v)) for k, v in self._info()]
        return render_card(self.title, rows, self.value._repr_html_(), threat_model=self.threat_text)


@dataclass(eq=False, repr=False)
class SecureSumResult(Result):
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
    protocol : str
        The secure-aggregation protocol that ran (its trust model is quoted in the repr).
    error_bound : float or None
        For an approximate protocol (``"ckks"``, ``"ckks-multiparty"``), the bound on each entry's absolute error;
        ``None`` for an exact sum.
    scheme : str
        The encryption scheme and its parameters when it is not the federation's Paillier key.
    dropped : dict of str to int
        Parties that dropped out, with the round they dropped at (masking);
        ``parties`` lists the ones whose contribution is in the sum.
    protocol_details : dict
        Protocol parameters (masking: ``neighbours``, ``threshold``).
    """

    key_bits: int
    ciphertexts: int
    slots_per_ciphertext: int
    frac_bits: int
    value_bits: int
    fast_encryption: bool
    seconds: dict[str, float]
    elapsed: float
    nulls_skipped: dict[str, int] = field(default_factory=dict)
    backend: str = "inprocess"
    protocol: str = "paillier"
    error_bound: float | None = None
    scheme: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    protocol_details: dict[str, Any] = field(default_factory=dict)

    def _crypto_text(self) -> str:
        if self.scheme or self.protocol == "paillier" or self.key_bits:
            return f"{self.ciphertexts} ciphertexts ({self.slots_per_ciphertext} values each), {self._scheme_text()}"
        d = self.protocol_details
        text = f"{self.ciphertexts} masked vectors, protocol {self.protocol}"
        if "threshold" in d:
            text += f" (neighbours {d.get('neighbours')}, threshold {d['threshold']})"
        return text

    def _dropout_text(self) -> str:
        if not self.dropped:
            return ""
        return ", ".join(f"{p} (round {r})" for p, r in self.dropped.items())

    @property
    def cost(self) -> Cost:
        """Seconds, bytes and ciphertexts of this run."""
        return Cost(seconds=self.elapsed, bytes=self.nbytes, ciphertexts=self.ciphertexts)

    @property
    def nbytes(self) -> int:
        """Bytes sent during the run."""
        return self.transcript.nbytes if self.transcript is not None else 0

    def __getitem__(self, key: str) -> float | np.ndarray:
        return self.value[key]

    def to_polars(self) -> pl.DataFrame:
        """One row per summed scalar: ``entry`` (``name`` or ``name[i]`` for arrays) and ``value``."""
        names: list[str] = []
        values: list[float] = []
        for k, v in self.value.items():
            arr = np.asarray(v, dtype=np.float64)
            if arr.ndim == 0:
                names.append(k)
                values.append(float(arr))
            else:
                for i, x in enumerate(arr.ravel()):
                    names.append(f"{k}[{i}]")
                    values.append(float(x))
        return pl.DataFrame({"entry": names, "value": values}, schema={"entry": pl.String, "value": pl.Float64})

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={_fmt_value(v)}" for k, v in list(self.value.items())[:8])
        if len(self.value) > 8:
            vals += f", … ({len(self.value)} entries)"
        nulls = f"\n  nulls skipped: {self.nulls_skipped}" if any(self.nulls_skipped.values()) else ""
        nulls += f"\n  privacy: {_fmt_privacy(self.privacy)}"
        dropped = f"\n  dropped out (not in the sum): {self._dropout_text()}" if self.dropped else ""
        return (
            f"SecureSumResult({vals})\n"
            f"  parties: {', '.join(self.parties)}{dropped}\n"
            f"  protocol: {self.protocol}\n"
            f"  cost: {self.elapsed:.3f} s, {_fmt_bytes(self.nbytes)}, {self._crypto_text()}{nulls}\n"
            f"{self._error_text()}"
            f"  threat model: {self.threat_text}"
        )

    @property
    def scheme_text(self) -> str:
        """The encryption scheme of the run, for display (e.g. ``"2048-bit Paillier (DJN fast encryption)"``)."""
        return self._scheme_text()

    def _scheme_text(self) -> str:
        if self.scheme:
            return self.scheme
        return f"{self.key_bits}-bit Paillier{' (DJN fast encryption)' if self.fast_encryption else ''}"

    def _error_text(self) -> str:
        if self.error_bound is None:
            return ""
        return f"  approximate: every entry within ±{self.error_bound:.3g} of the exact sum (reported bound)\n"

    def _repr_html_(self) -> str:
        rows = [(k, escape(_fmt_value(v))) for k, v in list(self.value.items())[:20]]
        rows += [
            ("parties", escape(", ".join(self.parties))),
            ("time", f"{self.elapsed:.3f} s (encrypt {self.seconds.get('encrypt', 0):.3f} s, "
                     f"decrypt {self.seconds.get('decrypt', 0):.3f} s)"),
            ("traffic", f"{_fmt_bytes(self.nbytes)} in {len(self.transcript or ())} messages"),
            ("protocol", escape(self.protocol)),
            ("crypto", escape(self._crypto_text())),
        ]
        if self.error_bound is not None:
            rows.append(("error bound", f"±{self.error_bound:.3g} per entry (approximate protocol)"))
        if self.dropped:
            rows.insert(2, ("dropped out", escape(self._dropout_text())))
        if any(self.nulls_skipped.values()):
            rows.append(("nulls skipped", escape(str(self.nulls_skipped))))
        rows.append(("privacy", escape(_fmt_privacy(self.privacy))))
        return render_card("Secure sum" + (" (differentially private)" if self.privacy else ""), rows,
                           threat_model=self.threat_text)


@dataclass(eq=False, repr=False)
class HistogramResult(Result):
    """A securely aggregated fixed-bin histogram (``value``: the count per bin).

    Attributes
    ----------
    column : str
        The column binned.
    edges : numpy.ndarray
        Bin edges (public, declared before the run).
    counts : numpy.ndarray
        Count per bin, summed over parties (``value``).
    below, above : int
        Values below the first edge and above the last edge (noisy when the
        histogram is differentially private).
    nulls : int
        Null cells skipped (noisy when differentially private).
    sum_result : SecureSumResult
        The underlying secure sum (cost, transcript).
    """

    column: str = field(default="", kw_only=True)
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0), kw_only=True)
    below: int = field(default=0, kw_only=True)
    above: int = field(default=0, kw_only=True)
    nulls: int = field(default=0, kw_only=True)

    @property
    def counts(self) -> np.ndarray:
        """Count per bin (the value)."""
        return self.value

    @property
    def sum_result(self) -> SecureSumResult:
        """The underlying secure sum."""
        return self.runs[0]

    def to_polars(self) -> pl.DataFrame:
        """One row per bin: left edge, right edge, count."""
        return pl.DataFrame({"left": self.edges[:-1], "right": self.edges[1:], "count": self.counts.astype(int)})

    def _outside(self) -> str:
        if self.privacy:  # released with noise like every bin: say so, so that no one reads them as exact
            return f"{self.below} below, {self.above} above, {self.nulls} nulls (all noisy, like the bins)"
        return f"{self.below} below, {self.above} above; {self.nulls} nulls"

    def __repr__(self) -> str:
        dp = " (differentially private, noisy counts)" if self.privacy else ""
        lines = [f"Histogram of {self.column!r} over {', '.join(self.parties)}{dp}"]
        peak = max(1, int(self.counts.max()) if self.counts.size else 1)
        for lo, hi, c in zip(self.edges[:-1], self.edges[1:], self.counts, strict=True):
            lines.append(f"  [{lo:>10.4g}, {hi:>10.4g}) {int(c):>8d} {'█' * int(30 * c / peak)}")
        lines.append(f"  outside the bins: {self._outside()}")
        lines.append(f"  cost: {self.cost}")
        lines.append(f"  privacy: {_fmt_privacy(self.privacy)}")
        lines.append(f"  threat model: {self.threat_text}")
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
            ("outside range", escape(self._outside())),
            ("cost", escape(str(self.cost))),
            ("privacy", escape(_fmt_privacy(self.privacy))),
        ]
        title = f"Histogram of {self.column}" + (" (differentially private)" if self.privacy else "")
        return render_card(title, rows, f"<table>{bars}</table>", threat_model=self.threat_text)
