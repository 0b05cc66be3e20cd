"""Federated statistics: the analyst's side of every statistic, over a :class:`~fedbench.coordinator.Coordinator`.

Each function here selects the parties, validates the request, runs one or
two secure sums through ``coordinator.aggregate`` and returns a
:class:`~fedbench.results.Result`.  What runs *inside* each party (the local
aggregates) lives in :mod:`fedbench.stats`.  :class:`~fedbench.Federation`
exposes every function as a method of the same name (``fed.mean("age")`` is
``statistics.mean(fed.coordinator, "age")``).

Conventions shared by every statistic

* ``columns``: a column name or a list of names (statistics of one column
  accept a one-element list).  The older spellings ``column=`` and ``what=``
  still work for one release, with a :class:`FutureWarning`.
* ``nulls``: ``"skip"`` (default) or ``"error"`` (see :mod:`fedbench.stats`);
  the old alias ``"drop"`` means ``"skip"`` and warns.
* Differential privacy: ``privacy=Privacy(...)``, or the keywords ``epsilon,
  delta, bounds, mechanism, noise`` that build one (:mod:`fedbench.dp.privacy`;
  turned into ``privacy=`` in one place, :func:`privacy_keywords`);
  ``bounds`` is a ``(lower, upper)`` pair or a mapping column -> pair.
* ``protocol``: the secure-aggregation protocol of one call, ``"paillier"``,
  ``"masking"`` or any registered name (default: the federation's
  ``secagg``, with its ``secagg_options``); :func:`secure_sum` also takes the
  masking options ``threshold``, ``neighbours`` and ``dropout``.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import EllipsisType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import polars as pl

from . import stats as _local
from .backend import check_local_timeout, run_local_function
from .clear_union import first_seen_union, union_in_the_clear
from .crypto.packing import WIDE_MAX_ABS, Encoding
from .dp.privacy import Bounds, Privacy, resolve_privacy
from .errors import ConfigurationError, EmptyPartyError, ProtocolError
from .party import Party, column_kind
from .results import HistogramResult, QuantileResult, Result, ScalarResult, SecureSumResult, TableResult
from .schema import SchemaReport, check_numeric_columns
from .secagg import check_enough_parties

if TYPE_CHECKING:
    from .coordinator import Coordinator, LocalFn
    from .dp.releases import NoisePlan

__all__ = [
    "corr",
    "count",
    "cov",
    "group_counts",
    "histogram",
    "mean",
    "quantile",
    "secure_sum",
    "stats",
    "std",
    "sum",
    "var",
]

Parties = Sequence[str] | str | None


# -- argument conventions ----------------------------------------------------------------
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside fedbench: a warning points at the user's line.

    Counted for a ``warnings.warn`` made by the function that calls this one.
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    return level


def renamed(options: dict[str, Any], new_value: Any, *, new: str, old: Sequence[str], call: str) -> Any:
    """Take a deprecated keyword out of ``options`` (warning) and return the value of ``new``.

    Raises
    ------
    ConfigurationError
        The old and the new spelling both given, or an unknown keyword left over.
    """
    for name in old:
        if name in options:
            value = options.pop(name)
            warnings.warn(f"{call}: {name}= is deprecated, use {new}= instead", FutureWarning,
                          stacklevel=_caller_level())
            if new_value is not None:
                raise ConfigurationError(f"{call}: pass {new}= only (got both {new}= and {name}=)")
            new_value = value
    if options:
        raise TypeError(f"{call}() got unexpected keyword argument(s) {', '.join(map(repr, options))}")
    return new_value


def null_policy(nulls: str) -> str:
    """The null policy, with the deprecated alias ``"drop"`` mapped to ``"skip"`` (warning)."""
    if nulls == "drop":
        warnings.warn('nulls="drop" is deprecated, use nulls="skip" instead', FutureWarning, stacklevel=_caller_level())
        return "skip"
    return _local.check_null_policy(nulls)


def columns_arg(columns: str | Sequence[str] | None) -> list[str]:
    """A column name or a non-empty list of distinct names, as a list."""
    cols = [columns] if isinstance(columns, str) else list(columns) if columns is not None else []
    if not cols or not all(isinstance(c, str) for c in cols):
        raise ConfigurationError(f"expected a column name or a non-empty list of names, got {columns!r}")
    if len(set(cols)) != len(cols):
        raise ConfigurationError(f"columns listed twice in {cols}")
    return cols


def one_column(columns: str | Sequence[str] | None, call: str) -> str:
    """The single column of a one-column statistic (a name or a one-element list)."""
    cols = columns_arg(columns)
    if len(cols) != 1:
        raise ConfigurationError(f"{call} takes one column, got {cols}; use stats({cols}) for several")
    return cols[0]


F = TypeVar("F", bound=Callable[..., Any])

#: The keywords that are sugar for ``privacy=Privacy(...)``, with their annotations.
_PRIVACY_SUGAR: dict[str, Any] = {"epsilon": float | None, "delta": float | None, "bounds": Bounds | None,
                                  "mechanism": str | None, "noise": str | None}


def privacy_keywords(*, bounds: bool = True) -> Callable[[F], F]:
    """Accept ``epsilon, delta, mechanism, noise`` (and ``bounds``) as sugar for ``privacy=Privacy(...)``.

    The one place the keywords become a :class:`~fedbench.dp.Privacy`: the
    decorated statistic receives ``privacy=`` only, already resolved (``None``
    for an exact release), and its signature lists the keywords (keyword-only,
    before ``**deprecated``).  Both spellings at once are refused.
    """
    names = [n for n in _PRIVACY_SUGAR if bounds or n != "bounds"]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sugar = {n: kwargs.pop(n) for n in names if n in kwargs}
            kwargs["privacy"] = resolve_privacy(kwargs.pop("privacy", None), **sugar)
            return fn(*args, **kwargs)

        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        at = next((i for i, q in enumerate(params) if q.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_PRIVACY_SUGAR[n])
                 for n in names]
        wrapper.__dict__["__signature__"] = sig.replace(parameters=[*params[:at], *extra, *params[at:]])
        return cast(F, wrapper)

    return decorate


def _plan(p: Privacy, l1: float = 1.0, l2: float = 1.0, weights: Mapping[str, float] | None = None) -> NoisePlan:
    from .dp.releases import NoisePlan

    return NoisePlan.make(epsilon=p.epsilon, delta=p.delta, mechanism=p.mechanism, noise=p.noise, l1=l1, l2=l2,
                          weights=weights)


def _bounds(p: Privacy, column: str | None) -> tuple[float, float]:
    from .dp.mechanisms import check_bounds

    return check_bounds(*p.bounds_for(column), column=column)


def _run(coord: Coordinator, chosen: list[Party], local: LocalFn, *, label: str = "stats", description: str,
         plan: NoisePlan | None = None) -> tuple[dict[str, Any], SecureSumResult]:
    v, res = coord.aggregate(chosen, local, encoding=coord.encoding, plan=plan, label=label,
                             description=description)
    coord.history.append(res)
    return v, res


class _Using:
    """The coordinator, with another secure-aggregation protocol (and its options) for one call."""

    def __init__(self, coord: Coordinator, protocol: str | None, options: Mapping[str, Any] | None) -> None:
        self._coord = coord
        self._protocol = protocol
        self._options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coord, name)

    def aggregate(self, parties: list[Party], local_fn: LocalFn, **kwargs: Any) -> tuple[dict[str, Any],
                                                                                           SecureSumResult]:
        if self._protocol is not None:
            kwargs.setdefault("protocol", self._protocol)
        if self._options is not None:
            kwargs.setdefault("options", self._options)
        return self._coord.aggregate(parties, local_fn, **kwargs)


def _using(coord: Coordinator, protocol: str | None, options: Mapping[str, Any] | None = None) -> Coordinator:
    """``coord`` whose secure sums run ``protocol`` (default: the federation's ``secagg``) with ``options``."""
    if protocol is None and options is None:
        return coord
    from .secagg import check_protocol_options, get_protocol

    check_protocol_options(get_protocol(protocol or coord.secagg), options)  # refused before any party runs
    return cast("Coordinator", _Using(coord, protocol, options))


def _names(chosen: list[Party]) -> list[str]:
    return [p.name for p in chosen]


# -- local helpers (run inside each party) ----------------------------------------------------
def _row_count(df: pl.DataFrame) -> dict[str, float]:
    return {"rows": float(df.height)}


def _only(df: pl.DataFrame, *, local_fn: LocalFn, keys: Sequence[str]) -> dict[str, Any]:
    out = local_fn(df)
    return {k: out[k] for k in keys}


def _local_clamped_sums(df: pl.DataFrame, *, bounds: Mapping[str, tuple[float, float]], nulls: str
                        ) -> dict[str, float]:
    out = {}
    for c, (lo, hi) in bounds.items():
        v, _ = _local.column_values(df, c, nulls)
        out[c] = math.fsum(np.clip(v, lo, hi))  # correctly rounded: its one rounding is in the DP calibration
    return out


# -- secure sum ----------------------------------------------------------------------------------
@privacy_keywords(bounds=True)
def secure_sum(
    coord: Coordinator,
    columns: str | Sequence[str] | LocalFn | None = None,
    *,
    parties: Parties = None,
    nulls: str = "skip",
    max_abs: float | None = None,
    frac_bits: int | None = None,
    privacy: Privacy | None = None,
    sensitivity: float | None = None,
    local_timeout: float | EllipsisType | None = ...,
    protocol: str | None = None,
    threshold: int | None = None,
    neighbours: int | None = None,
    dropout: Mapping[str, int] | None = None,
    **deprecated: Any,
) -> SecureSumResult:
    """Securely sum columns, or the named results of a function run inside each party.

    Parameters
    ----------
    coord : Coordinator
        The federation's coordinator (``fed.coordinator``; omitted in the ``Federation`` method).
    columns : str, list of str, or callable
        Column name(s) to sum, or ``fn(df) -> dict[str, float | numpy.ndarray]``
        run once inside each party on its polars DataFrame.  The function's
        entries must have the same names and shapes in every party.  (Formerly
        ``what=``, which still works with a ``FutureWarning``.)
    parties : list of str, optional
        Parties taking part (default: all, at least two).
    nulls : {"skip", "error"}, default "skip"
        Column sums only: skip nulls and report how many were skipped in
        total, or raise on the first null.
    max_abs, frac_bits : optional
        Override the public fixed-point encoding for this call.  Default:
        the federation's (``2**20`` and 16 fractional bits for sums of a
        function unless set there; ``2**62`` and 24 bits for column sums
        and for DP sums, whose noise shares can be large): a party whose local aggregate reaches ``max_abs`` gets
        :class:`~fedbench.errors.EncodingRangeError` naming it and the
        entry.  Integer entries are summed exactly either way.
    privacy : Privacy, optional
        Make the release differentially private (charged to every party's
        budget first; see :meth:`fedbench.Federation.set_budget`).  Or use the keywords:
    epsilon, delta, bounds, mechanism, noise : optional
        Sugar for ``privacy=Privacy(epsilon, delta, mechanism, noise, bounds)``.
        ``bounds`` (DP column sums): a ``(lower, upper)`` pair for every column
        or a mapping column -> pair; values are clamped to them.
        ``mechanism``: ``"laplace"`` (default) or ``"gaussian"`` (needs
        ``delta``); distributed Laplace puts a full noise share in every party,
        so with many parties prefer ``"gaussian"``.  ``noise``:
        ``"distributed"`` (default: each party adds a noise share to its encoded
        values before encrypting; epsilon holds against any single party, for
        Laplace any coalition of up to k - 1) or ``"central"`` (the key holder
        adds it after decrypting; epsilon holds against the analyst and the
        parties, not the key holder).  ``result.privacy["adversary"]`` says which.
    sensitivity : float, optional
        DP function sums: how much one record can change the function's
        output vector (L1 for Laplace, L2 for Gaussian).  You declare it;
        fedbench cannot check it for an arbitrary function.
    local_timeout : float or None, optional
        Function sums only: seconds the function may run inside a party
        (default: the federation's ``local_timeout``).  The function gets a
        copy of the party's rows, so it cannot change them.
    protocol : str, optional
        Secure-aggregation protocol of this call: ``"paillier"``,
        ``"masking"`` or any registered name (default: the federation's ``secagg``).
    threshold, neighbours, dropout : optional
        Options of the ``"masking"`` protocol for this call (they override
        the federation's ``secagg_options``): Shamir threshold ``t`` over a
        party's share holders, SecAgg+ graph degree, and simulated dropouts
        ``{party: round}`` (round 1..4; the party stops answering there).
        The sum then covers the parties whose masked input arrived
        (``result.parties``; ``result.dropped`` lists the others), or the call
        raises :class:`~fedbench.errors.MaskingDropoutError` when fewer than
        ``t`` remain.  Refused for a protocol that takes no such option.
    **deprecated
        ``what=``: the former name of ``columns`` (works, with a ``FutureWarning``).

    Returns
    -------
    SecureSumResult
        ``.value`` maps each column (or entry) to its sum: integer columns and
        integer entries are summed exactly, as Python ints; ``.privacy``
        describes the noise of a DP release.

    Raises
    ------
    TooFewPartiesError, MissingColumnError, NonNumericColumnError, DtypeConflictError,
    NullValuesError, NonFiniteValueError, EncodingRangeError, LocalComputationError, ProtocolError,
    MissingBoundsError, BudgetNotSetError, BudgetExceededError, LocalResultError, PartyTimeoutError,
    ConfigurationError
    """
    columns = renamed(deprecated, columns, new="columns", old=("what",), call="secure_sum")
    options = {k: v for k, v in (("threshold", threshold), ("neighbours", neighbours), ("dropout", dropout))
               if v is not None}
    coord = _using(coord, protocol, options or None)
    p = privacy  # resolved by @privacy_keywords
    chosen = coord.select(parties)
    # The tight public default range serves exact sums of functions (typically vectors of modest
    # values); column sums, like the statistics, and DP sums (noise shares of large scale) keep the
    # wide encoding, so that a column total in the millions is never refused by default.
    tight = p is None and callable(columns)
    encoding = coord.encoding_for(max_abs, frac_bits, base=coord.sum_encoding if tight else coord.encoding)
    # Entries every party returns as integers (public dtype) need no fractional bits: with no declared
    # range they get the wide one, so that large integer sums stay exact under the tight default.
    ints = None if (max_abs is not None or frac_bits is not None or coord.range_declared) else \
        Encoding.for_range(WIDE_MAX_ABS, 0)
    if callable(columns):
        timeout = coord.local_timeout if local_timeout is ... else check_local_timeout(local_timeout)
        # The user's function runs on a copy of the party's rows, under a time limit.
        local = partial(run_local_function, fn=columns, timeout=timeout)
        plan = None
        if p is not None:
            if sensitivity is None:
                raise ConfigurationError(
                    "a DP sum of a function needs sensitivity=...: how much one record can change its output"
                )
            plan = _plan(p, sensitivity, sensitivity)
        _, result = coord.aggregate(chosen, local, encoding=encoding, plan=plan, description="secure_sum(fn)",
                                    integer_encoding=ints)
    else:
        cols = columns_arg(columns)
        nulls = null_policy(nulls)
        check_numeric_columns(chosen, cols)
        if p is None:
            value, result = coord.aggregate(
                chosen, partial(_local.local_column_sums, columns=cols, nulls=nulls), encoding=encoding,
                description=f"sum({', '.join(cols)})", integer_encoding=ints,
            )
            result.value = {c: value[f"sum:{c}"] for c in cols}
            result.nulls_skipped = {c: round(value[f"nulls:{c}"]) for c in cols}
        else:
            per = {c: _bounds(p, c) for c in cols}
            # Each column's noise is proportional to how much one record can move it.
            reach = {c: max(abs(lo), abs(hi), 1e-12) for c, (lo, hi) in per.items()}
            value, result = coord.aggregate(
                chosen, partial(_local_clamped_sums, bounds=per, nulls=nulls), encoding=encoding,
                plan=_plan(p, weights=reach), description=f"dp sum({', '.join(cols)})",
            )
            result.value = {c: value[c] for c in cols}
    coord.history.append(result)
    return result


# -- one-column statistics --------------------------------------------------------------------
_MEAN_RELEASED = (
    "a noisy sum of the values clamped to the bounds and centred on their midpoint, and a noisy count, in one "
    "{mechanism} release; the mean is their ratio, clamped to the bounds (post-processing)"
)


def _dp_clamped(coord: Coordinator, column: str | None, chosen: list[Party], nulls: str, p: Privacy,
                what: str) -> tuple[dict[str, float], SecureSumResult]:
    from .dp.releases import local_clamped_sum, mean_weights

    if column is not None:
        check_numeric_columns(chosen, [column])
    if what == "count":
        lo = hi = centre = 0.0
        plan = _plan(p, 1.0, 1.0)
    else:
        lo, hi = _bounds(p, column)
        if what == "mean":
            centre = (lo + hi) / 2
            plan = _plan(p, weights=mean_weights(lo, hi))
        else:
            centre = 0.0
            reach = max(abs(lo), abs(hi), 1e-12)
            plan = _plan(p, reach, reach)
    local: LocalFn = partial(local_clamped_sum, column=column, lower=lo, upper=hi, centre=centre, nulls=nulls)
    if what != "mean":  # release only the entry the statistic needs
        local = partial(_only, local_fn=local, keys=["count" if what == "count" else "sum"])
    return _run(coord, chosen, local, plan=plan, description=f"dp {what}({column or 'rows'})")


@privacy_keywords(bounds=False)
def count(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    *,
    parties: Parties = None,
    privacy: Privacy | None = None,
    protocol: str | None = None,
    **deprecated: Any,
) -> ScalarResult:
    """Number of rows (or non-null cells of ``columns``) across parties, securely (one secure round).

    With ``privacy`` (or ``epsilon``) the count is differentially private
    (sensitivity 1), rounded and floored at 0 (post-processing).  ``int(result)``
    gives the number.
    """
    coord = _using(coord, protocol)
    columns = renamed(deprecated, columns, new="columns", old=("column",), call="count")
    column = None if columns is None else one_column(columns, "count")
    p = privacy  # resolved by @privacy_keywords
    chosen = coord.select(parties)
    name = f"count({column or 'rows'})"
    if p is not None:
        v, res = _dp_clamped(coord, column, chosen, "skip", p, "count")
        return ScalarResult(max(0, round(v["count"])), _names(chosen), name=name, privacy=res.privacy, runs=[res],
                            released="a noisy count, rounded and floored at 0 (post-processing)")
    if column is None:
        v, res = _run(coord, chosen, _row_count, description=name)
        return ScalarResult(round(v["rows"]), _names(chosen), name=name, runs=[res])
    check_numeric_columns(chosen, [column])
    local = partial(_only, local_fn=partial(_local.local_column_sums, columns=[column], nulls="skip"),
                    keys=[f"count:{column}"])  # release the count only, not the sum
    v, res = _run(coord, chosen, local, description=name)
    return ScalarResult(round(v[f"count:{column}"]), _names(chosen), name=name, runs=[res])


@privacy_keywords(bounds=True)
def sum(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    *,
    parties: Parties = None,
    nulls: str = "skip",
    privacy: Privacy | None = None,
    protocol: str | None = None,
    **deprecated: Any,
) -> ScalarResult:
    """Sum of a numeric column across parties, securely.

    The exact sum of an integer column is a Python int.  With ``privacy`` (or
    ``epsilon``) the sum is differentially private: values are clamped to the
    declared ``bounds`` (required) and noise calibrated to
    ``max(|lower|, |upper|)`` is added.
    """
    coord = _using(coord, protocol)
    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="sum"), "sum")
    p = privacy  # resolved by @privacy_keywords
    nulls = null_policy(nulls)
    if p is not None:
        chosen = coord.select(parties)
        v, res = _dp_clamped(coord, column, chosen, nulls, p, "sum")
        return ScalarResult(float(v["sum"]), _names(chosen), name=f"sum({column})", privacy=res.privacy,
                            runs=[res], released="a noisy sum of the values clamped to the bounds")
    res = secure_sum(coord, [column], parties=parties, nulls=nulls)
    total = res.value[column]
    total = total if isinstance(total, int) else float(total)  # integer columns sum exactly
    return ScalarResult(total, res.parties, name=f"sum({column})", runs=[res])


@privacy_keywords(bounds=True)
def mean(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    *,
    parties: Parties = None,
    nulls: str = "skip",
    privacy: Privacy | None = None,
    protocol: str | None = None,
    **deprecated: Any,
) -> ScalarResult:
    """Mean of a numeric column across parties, securely.

    Parameters
    ----------
    coord : Coordinator
        The federation's coordinator (``fed.coordinator``; omitted in the ``Federation`` method).
    columns : str
        Numeric column (formerly ``column=``).
    parties : list of str, optional
        Parties taking part (default: all).
    nulls : {"skip", "error"}, default "skip"
        Null policy.
    privacy : Privacy, optional
        Release the mean with differential privacy, charged to every touched
        party; or the keywords ``epsilon, bounds, delta, mechanism, noise``
        (``bounds`` required: the declared value range; values are clamped).
    epsilon, bounds, delta, mechanism, noise : optional
        Sugar for ``privacy=Privacy(...)`` (see :class:`fedbench.dp.Privacy`).
    **deprecated
        ``column=``: the former name of ``columns`` (works, with a ``FutureWarning``).

    Returns
    -------
    ScalarResult
        ``float(result)`` is the mean; ``result.privacy`` the DP record.

    Notes
    -----
    The DP mean releases the pair (sum of clamped values minus the bounds'
    midpoint, count) with one mechanism of L1 sensitivity
    ``(upper - lower) / 2 + 1`` and divides (post-processing), clamping the
    result to the bounds.  The result shows the mean only.
    """
    coord = _using(coord, protocol)
    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="mean"), "mean")
    p = privacy  # resolved by @privacy_keywords
    nulls = null_policy(nulls)
    chosen = coord.select(parties)
    if p is not None:
        from .dp.mechanisms import dp_mean

        v, res = _dp_clamped(coord, column, chosen, nulls, p, "mean")
        lo, hi = _bounds(p, column)
        return ScalarResult(dp_mean(v["sum"], v["count"], lo, hi), _names(chosen), name=f"mean({column})",
                            privacy=res.privacy, runs=[res], released=_MEAN_RELEASED.format(mechanism=p.mechanism))
    check_numeric_columns(chosen, [column])
    v, res = _run(coord, chosen, partial(_local.local_column_sums, columns=[column], nulls=nulls),
                  description=f"mean({column})")
    n = v[f"count:{column}"]
    if n < 0.5:
        raise EmptyPartyError(f"column {column!r} has no non-null value in any party")
    return ScalarResult(v[f"sum:{column}"] / n, _names(chosen), name=f"mean({column})", runs=[res])


def var(coord: Coordinator, columns: str | Sequence[str] | None = None, *, parties: Parties = None,
        nulls: str = "skip", ddof: int = 1, protocol: str | None = None, **deprecated: Any) -> ScalarResult:
    """Variance of a numeric column across parties (two secure rounds)."""
    coord = _using(coord, protocol)
    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="var"), "var")
    table, runs, chosen = _moments(coord, [column], coord.select(parties), null_policy(nulls), ddof)
    return ScalarResult(float(table["var"][0]), _names(chosen), name=f"var({column})", runs=runs)


def std(coord: Coordinator, columns: str | Sequence[str] | None = None, *, parties: Parties = None,
        nulls: str = "skip", ddof: int = 1, protocol: str | None = None, **deprecated: Any) -> ScalarResult:
    """Standard deviation of a numeric column across parties (two secure rounds)."""
    coord = _using(coord, protocol)
    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="std"), "std")
    table, runs, chosen = _moments(coord, [column], coord.select(parties), null_policy(nulls), ddof)
    return ScalarResult(float(table["std"][0]), _names(chosen), name=f"std({column})", runs=runs)


# -- tables ---------------------------------------------------------------------------------------
def _moments(coord: Coordinator, columns: list[str], chosen: list[Party], nulls: str,
             ddof: int) -> tuple[pl.DataFrame, list[SecureSumResult], list[Party]]:
    check_numeric_columns(chosen, columns)
    v1, r1 = coord.aggregate(chosen, partial(_local.local_column_sums, columns=columns, nulls=nulls),
                             encoding=coord.encoding, label="stats")
    counts = [round(v1[f"count:{c}"]) for c in columns]
    means = [v1[f"sum:{c}"] / n if n else math.nan for c, n in zip(columns, counts, strict=True)]
    usable = [c for c, mu in zip(columns, means, strict=True) if not math.isnan(mu)]
    ssd: dict[str, float] = {}
    runs = [r1]
    if usable:
        v2, r2 = coord.aggregate(
            chosen,
            partial(_local.local_squared_deviations, columns=usable,
                    means=[m for c, m in zip(columns, means, strict=True) if c in usable], nulls=nulls),
            encoding=coord.encoding, label="stats",
        )
        ssd = {c: max(0.0, v2[f"ssd:{c}"]) for c in usable}
        coord.history.append(r2)
        runs.append(r2)
    coord.history.append(r1)
    var_ = [ssd[c] / (n - ddof) if c in ssd and n > ddof else math.nan for c, n in zip(columns, counts, strict=True)]
    table = pl.DataFrame(
        {
            "column": columns,
            "count": counts,
            "nulls": [round(v1[f"nulls:{c}"]) for c in columns],
            "sum": [v1[f"sum:{c}"] for c in columns],
            "mean": means,
            "var": var_,
            "std": [math.sqrt(v) if not math.isnan(v) else math.nan for v in var_],
            "parties": [len(chosen)] * len(columns),
        },
        schema={"column": pl.String, "count": pl.Int64, "nulls": pl.Int64, "sum": pl.Float64,
                "mean": pl.Float64, "var": pl.Float64, "std": pl.Float64, "parties": pl.Int64},
    )
    return table, runs, chosen


def stats(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    *,
    parties: Parties = None,
    nulls: str = "skip",
    ddof: int = 1,
    protocol: str | None = None,
) -> TableResult:
    """Count, nulls, sum, mean, variance and standard deviation per column, securely.

    Parameters
    ----------
    coord : Coordinator
        The federation's coordinator (``fed.coordinator``; omitted in the ``Federation`` method).
    columns : str or list of str, optional
        Numeric columns; default: every shared numeric column.
    parties : list of str, optional
        Parties taking part (default: all).
    nulls : {"skip", "error"}, default "skip"
        Null policy (see :mod:`fedbench.stats`).
    ddof : int, default 1
        Delta degrees of freedom of the variance (1: sample variance, like pandas).

    Returns
    -------
    TableResult
        ``to_polars()``: one row per column, ``column, count, nulls, sum, mean, var, std, parties``.

    Notes
    -----
    Two secure sums: counts and sums first, then squared deviations from
    the released global mean.  Minimum and maximum are not offered: they
    would reveal one individual's value.
    """
    coord = _using(coord, protocol)
    nulls = null_policy(nulls)
    chosen = coord.select(parties)
    if columns is None:
        report = SchemaReport.of(chosen)
        columns = [c for c in report.shared if all(column_kind(p.schema[c]) == "numeric" for p in chosen)]
        if not columns:
            raise ConfigurationError("the parties share no numeric column; name the columns to describe")
    cols = columns_arg(columns)
    table, runs, _ = _moments(coord, cols, chosen, nulls, ddof)
    return TableResult(table, _names(chosen), name=f"stats({', '.join(cols)})", runs=runs)


def _cov(coord: Coordinator, cols: list[str], chosen: list[Party], nulls: str,
         ddof: int) -> tuple[np.ndarray, list[SecureSumResult]]:
    check_numeric_columns(chosen, cols)
    v1, r1 = coord.aggregate(chosen, partial(_local.local_complete_cases, columns=cols, nulls=nulls),
                             encoding=coord.encoding, label="cov")
    n = round(v1["n"])
    if n <= ddof:
        raise EmptyPartyError(f"only {n} complete rows over {cols} across all parties; cannot estimate")
    means = (np.asarray(v1["sum"]) / n).tolist()
    v2, r2 = coord.aggregate(chosen, partial(_local.local_cross_deviations, columns=cols, means=means, nulls=nulls),
                             encoding=coord.encoding, label="cov")
    coord.history.extend([r1, r2])
    m = np.asarray(v2["cross"])
    return (m + m.T) / 2 / (n - ddof), [r1, r2]


def _matrix_frame(cols: list[str], m: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"column": cols} | {c: m[:, i] for i, c in enumerate(cols)})


def cov(coord: Coordinator, columns: str | Sequence[str], *, parties: Parties = None, nulls: str = "skip",
        ddof: int = 1, protocol: str | None = None) -> TableResult:
    """Covariance matrix over rows complete in ``columns`` (two secure rounds).

    Returns
    -------
    TableResult
        ``to_polars()``: a ``column`` label column followed by one column per input column.
    """
    coord = _using(coord, protocol)
    cols = columns_arg(columns)
    chosen = coord.select(parties)
    m, runs = _cov(coord, cols, chosen, null_policy(nulls), ddof)
    return TableResult(_matrix_frame(cols, m), _names(chosen), name=f"cov({', '.join(cols)})", runs=runs)


def corr(coord: Coordinator, columns: str | Sequence[str], *, parties: Parties = None,
         nulls: str = "skip", protocol: str | None = None) -> TableResult:
    """Pearson correlation matrix over rows complete in ``columns`` (two secure rounds)."""
    coord = _using(coord, protocol)
    cols = columns_arg(columns)
    chosen = coord.select(parties)
    m, runs = _cov(coord, cols, chosen, null_policy(nulls), 1)
    sd = np.sqrt(np.diag(m))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = m / np.outer(sd, sd)
    np.fill_diagonal(r, 1.0)
    return TableResult(_matrix_frame(cols, np.clip(r, -1.0, 1.0)), _names(chosen), name=f"corr({', '.join(cols)})",
                       runs=runs)


def _group_order(g: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in g)


def _category_union(coord: Coordinator, chosen: list[Party], by_cols: list[str]) -> list[tuple[Any, ...]]:
    """The union of the parties' group combinations, each sent in the clear to the coordinator."""
    groups, _ = union_in_the_clear(
        coord, chosen, partial(_local.local_distinct, by=by_cols),
        lambda sets: sorted(first_seen_union(sets), key=_group_order),
    )
    return groups


def group_counts(
    coord: Coordinator,
    by: str | Sequence[str],
    *,
    categories: Mapping[str, Sequence[Any]] | None = None,
    parties: Parties = None,
    protocol: str | None = None,
) -> TableResult:
    """Row counts per group of ``by`` across parties, securely.

    Parameters
    ----------
    coord : Coordinator
        The federation's coordinator (``fed.coordinator``; omitted in the ``Federation`` method).
    by : str or list of str
        Grouping columns (any type; nulls form their own group).  Named ``by``,
        not ``columns``, because it groups rows (as in polars' ``group_by``)
        rather than choosing the columns a statistic is computed on.
    categories : mapping of column to values, optional
        The declared values of each column; groups are their combinations.
        When omitted, parties first agree on the union of the combinations
        they hold: each sends its distinct combinations in the clear to the
        coordinator (recorded in the transcript), which reveals *which*
        groups each party has, though not how many rows.  Declare the
        categories to avoid that.
    parties : list of str, optional
        Parties taking part.

    Returns
    -------
    TableResult
        ``to_polars()``: the ``by`` columns and ``count``, sorted by the groups.
    """
    coord = _using(coord, protocol)
    by_cols = columns_arg(by)
    chosen = coord.select(parties)
    for p in chosen:
        p.require_columns(by_cols)
    check_enough_parties(chosen, what="a secure computation")  # before the categories are exchanged
    if categories is not None:
        missing = [c for c in by_cols if c not in categories]
        if missing:
            raise ConfigurationError(f"categories lacks the grouping column(s) {missing}")
        groups: list[tuple[Any, ...]] = [()]
        for c in by_cols:
            groups = [(*g, v) for g in groups for v in categories[c]]
    else:
        groups = _category_union(coord, chosen, by_cols)
    if not groups:
        raise ProtocolError("no groups to count")
    v, res = _run(coord, chosen, partial(_local.local_group_counts, by=by_cols, groups=groups),
                  label="group_counts", description=f"group_counts({', '.join(by_cols)})")
    counts = np.rint(v["counts"]).astype(np.int64)
    data: dict[str, list[Any]] = {c: [g[i] for g in groups] for i, c in enumerate(by_cols)}
    data["count"] = counts.tolist()
    schema = {c: chosen[0].schema[c] for c in by_cols} | {"count": pl.Int64}
    return TableResult(pl.DataFrame(data, schema=schema), _names(chosen),
                       name=f"group_counts({', '.join(by_cols)})", runs=[res])


# -- histogram and quantiles ------------------------------------------------------------------------
def _edges(column: str, bins: int | Sequence[float], range: tuple[float, float] | None) -> np.ndarray:
    if isinstance(bins, int | np.integer):
        if range is None:
            raise ConfigurationError(
                f"histogram of {column!r}: pass range=(low, high) or explicit bin edges; "
                "bins are declared up front so that no party's extremes are revealed"
            )
        try:
            low, high = (float(r) for r in range)
        except (TypeError, ValueError):
            raise ConfigurationError(f"histogram of {column!r}: range must be two numbers (low, high)") from None
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigurationError(
                f"histogram of {column!r}: range must be finite, got {range}; values beyond a finite range "
                "are counted in 'below' and 'above'"
            )
        if bins < 1 or not low < high:
            raise ConfigurationError(f"need bins >= 1 and range low < high, got {bins}, {range}")
        edges = np.linspace(low, high, int(bins) + 1)
        if not np.all(np.diff(edges) > 0):  # e.g. more bins than floats between low and high
            raise ConfigurationError(f"histogram of {column!r}: {bins} bins do not fit in {range}")
        return edges
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigurationError("bin edges must be a sequence of numbers") from None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise ConfigurationError("bin edges must be a strictly increasing sequence of at least 2 numbers")
    if not np.isfinite(edges).all():
        raise ConfigurationError(
            f"histogram of {column!r}: bin edges must be finite; values beyond the outer edges are "
            "counted in 'below' and 'above'"
        )
    return edges


@privacy_keywords(bounds=False)
def histogram(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    bins: int | Sequence[float] = 10,
    range: tuple[float, float] | None = None,
    *,
    parties: Parties = None,
    nulls: str = "skip",
    privacy: Privacy | None = None,
    protocol: str | None = None,
    **deprecated: Any,
) -> HistogramResult:
    """Fixed-bin histogram of a numeric column, securely.

    Parameters
    ----------
    coord, columns
        As in :func:`mean`.
    bins : int or sequence of float, default 10
        Number of equal-width bins over ``range``, or explicit increasing edges.
    range : (float, float), optional
        Required with an integer ``bins``: the bins must be declared up front,
        because deriving them from the data would reveal its minimum and maximum.
    parties, nulls
        As in :func:`secure_sum`.
    privacy : Privacy, optional
        Make the histogram differentially private (or the keywords ``epsilon,
        delta, mechanism, noise``): each record lands in one cell, bins or
        below/above/null, so the sensitivity is 1; every cell, ``below``,
        ``above`` and ``nulls`` included, is noisy, rounded and floored at 0.
    epsilon, delta, mechanism, noise, **deprecated
        As in :func:`mean`.

    Returns
    -------
    HistogramResult
    """
    coord = _using(coord, protocol)
    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="histogram"),
                        "histogram")
    p = privacy  # resolved by @privacy_keywords
    edges = _edges(column, bins, range)
    chosen = coord.select(parties)
    nulls = null_policy(nulls)
    check_numeric_columns(chosen, [column])
    if p is not None:
        from .dp.releases import local_dp_histogram

        v, res = _run(coord, chosen, partial(local_dp_histogram, column=column, edges=edges, nulls=nulls),
                      label="histogram", plan=_plan(p, 1.0, 1.0), description=f"dp histogram({column})")
        cells = np.maximum(0, np.rint(np.asarray(v["counts"]))).astype(np.int64)
        return HistogramResult(cells[:-3], _names(chosen), name=f"histogram({column})", column=column, edges=edges,
                               below=int(cells[-3]), above=int(cells[-2]), nulls=int(cells[-1]),
                               privacy=res.privacy, runs=[res],
                               released="noisy counts of every bin and of below, above and nulls, rounded and "
                                        "floored at 0")
    v, res = _run(coord, chosen, partial(_local.local_histogram, column=column, edges=edges, nulls=nulls),
                  label="histogram", description=f"histogram({column})")
    return HistogramResult(np.rint(v["counts"]).astype(np.int64), _names(chosen), name=f"histogram({column})",
                           column=column, edges=edges, below=round(v["below"]), above=round(v["above"]),
                           nulls=round(v["nulls"]), runs=[res])


@privacy_keywords(bounds=True)
def quantile(
    coord: Coordinator,
    columns: str | Sequence[str] | None = None,
    q: float | Sequence[float] = 0.5,
    *,
    privacy: Privacy | None = None,
    bins: int = 64,
    parties: Parties = None,
    nulls: str = "skip",
    protocol: str | None = None,
    **deprecated: Any,
) -> ScalarResult | QuantileResult:
    """Differentially private quantiles of a numeric column.

    A DP histogram over ``bins`` equal bins of the declared ``bounds`` is
    securely aggregated with distributed noise (nobody sees exact counts),
    and the quantiles are read off its monotone CDF (post-processing), so
    any number of levels costs one ``epsilon``.  Accuracy is limited by the
    bin width and the noise.

    Parameters
    ----------
    coord, columns
        As in :func:`mean`.
    q : float or list of float, default 0.5
        Quantile level(s) in [0, 1].
    privacy : Privacy
        Required (or the keywords ``epsilon``, ``bounds``, ``delta``,
        ``mechanism``, ``noise``); ``bounds`` is the declared value range.
    bins : int, default 64
        Histogram resolution.
    parties, nulls
        As in :func:`histogram`.
    epsilon, bounds, delta, mechanism, noise, **deprecated
        As in :func:`mean`.

    Returns
    -------
    ScalarResult or QuantileResult
        One level: a number-like result; several: a result iterating over the values.
    """
    coord = _using(coord, protocol)
    from .dp.releases import check_quantiles, quantiles_from_noisy_histogram

    column = one_column(renamed(deprecated, columns, new="columns", old=("column",), call="quantile"), "quantile")
    p = privacy  # resolved by @privacy_keywords
    if p is None:
        raise ConfigurationError("quantile is only released with differential privacy: pass epsilon=... "
                                 "(or privacy=Privacy(...)) and bounds=(lower, upper)")
    qs = check_quantiles(q)
    lo, hi = _bounds(p, column)
    if not isinstance(bins, int) or bins < 2:
        raise ConfigurationError(f"bins must be an integer >= 2, got {bins!r}")
    h = histogram(coord, column, bins, (lo, hi), parties=parties, nulls=nulls,
                  privacy=Privacy(p.epsilon, p.delta, p.mechanism, p.noise))
    # Values outside the bounds count at the edges (they would be clamped).
    counts = h.counts.astype(np.float64).copy()
    counts[0] += h.below
    counts[-1] += h.above
    out = quantiles_from_noisy_histogram(counts, h.edges, qs)
    released = "a noisy histogram over the bounds; the quantiles are read off its cumulative counts"
    common: dict[str, Any] = {"privacy": h.privacy, "runs": h.runs, "released": released}
    if isinstance(q, int | float):
        return ScalarResult(out[0], h.parties, name=f"quantile({column}, {q:g})", **common)
    return QuantileResult(out, h.parties, name=f"quantile({column})", q=list(qs), **common)


#: The statistics a Federation exposes as methods of the same name.
STATISTICS: tuple[Callable[..., Result], ...] = (
    secure_sum, count, sum, mean, var, std, stats, cov, corr, group_counts, histogram, quantile,
)
