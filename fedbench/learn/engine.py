"""The training engine: sums over parties, broadcasts, local steps with dropout, and history.

A :class:`Session` is one training run's connection to a federation.  It sums
local aggregates over parties, through Paillier secure aggregation by default
(:meth:`fedbench.coordinator.Coordinator.aggregate`) or in the clear with ``secure=False`` (for
simulations at scale), records every message in the run's transcript, runs
local steps inside parties with failure injection and timeouts, and collects
the per-round history.

Two-phase rounds
----------------
A training round first runs the local step inside every selected party (phase
1), so that a party that fails or exceeds ``party_timeout`` can be left out,
then securely sums the survivors' results (phase 2).  Between the phases the
part of each result that is to be summed stays *with its party*, in the
party's own memory (:func:`fedbench.party.remember_in_party`; inside the Ray
actor on a cluster); phase 1 hands back only a token.  Phase 2's local
function recalls it, so it is encoded and encrypted inside the party before
anything is sent.

Per-party metrics
-----------------
A local step may also compute the party's own diagnostics (its loss, row
count, held-out metric) under ``"party"``.  They stay inside the party unless
the run opted in (``party_metrics=True``): then each party sends them to the
analyst in the clear, and that message is in the transcript and, when budgets
are in force, in the privacy ledger as an exact (not differentially private)
release.

Releases
--------
Every value the analyst learns is listed in :attr:`Session.releases` (a
:class:`Release` per decryption or plaintext message), so a run's privacy
summary names them all; exact ones are also logged in the ledger when budgets
are in force.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ..crypto.packing import Encoding
from ..errors import (
    DropoutError,
    FedbenchError,
    LocalComputationError,
    PartyUnavailableError,
    ProtocolError,
    TooFewPartiesError,
)
from ..party import recall_in_party, remember_in_party
from ..secagg import MIN_PARTIES, VectorSpec, check_enough_parties
from ..transcript import Transcript

if TYPE_CHECKING:
    from ..coordinator import Coordinator

__all__ = ["HISTORY_SCHEMA", "AggInfo", "PartyFailure", "Release", "Session", "learn_encoding"]

#: Fractional bits of the encoding used by exact and second-order protocols: sums of squares of
#: small values need far more than the default 24 bits to equal a float64 computation to 1e-6.
EXACT_FRAC_BITS = 48

HISTORY_SCHEMA: dict[str, Any] = {
    "stage": pl.String,
    "round": pl.Int64,
    "party": pl.String,
    "status": pl.String,
    "loss": pl.Float64,
    "metric": pl.Float64,
    "n": pl.Float64,
    "seconds": pl.Float64,
    "bytes": pl.Int64,
    "epsilon": pl.Float64,
    "note": pl.String,
}

#: Label of the history rows that describe the whole federation in a round.
GLOBAL = "<global>"


def learn_encoding(base: Encoding, frac_bits: int | None = None, max_abs: float | None = None) -> Encoding:
    """The fixed-point encoding of exact protocols: the federation's range with at least 48 fractional bits."""
    return Encoding.for_range(
        max_abs if max_abs is not None else base.max_abs,
        frac_bits if frac_bits is not None else max(base.frac_bits, EXACT_FRAC_BITS),
    )


@dataclass
class PartyFailure:
    """A party that dropped out of a round.

    Attributes
    ----------
    round : int
        Training round (1-based) within ``stage``.
    party : str
        The party.
    kind : {"injected", "error", "timeout"}
        Why: the failure hook said so, its local step raised, or it took longer than ``party_timeout``.
    reason : str
        Human-readable detail.
    stage : str
        Pipeline step being trained.
    """

    round: int
    party: str
    kind: str
    reason: str
    stage: str = ""


@dataclass
class AggInfo:
    """Cost of one sum over parties."""

    nbytes: int = 0
    seconds: float = 0.0
    messages: int = 0
    ciphertexts: int = 0


@dataclass(frozen=True)
class Release:
    """One thing the analyst learned during a run.

    Attributes
    ----------
    protocol : str
        Protocol that released it (``fit``, ``evaluate``, ``dp-fedavg``, ``label_union``...).
    description : str
        What was released, in words.
    parties : tuple of str
        Parties whose data it is computed from.
    differentially_private : bool
        ``False`` for exact releases.
    how : str
        ``"secure sum"`` (only the sum decrypted), ``"plaintext sum"`` or ``"plaintext"`` (each party's value).
    """

    protocol: str
    description: str
    parties: tuple[str, ...]
    differentially_private: bool = False
    how: str = "secure sum"


@dataclass(frozen=True)
class Stashed:
    """Token for a result a party keeps in its own memory until the secure sum."""

    key: str

    def __repr__(self) -> str:  # never a value: the result is not here
        return f"<kept by the party under {self.key!r}>"


_STASH_IDS = itertools.count()


def _step_and_keep(df: pl.DataFrame, *, fn: Callable[[pl.DataFrame], Any], key: str,
                   share_metrics: bool = False) -> Any:
    """Phase 1 inside a party: run the local step, keep its ``sum`` part here, return the rest.

    A step result that is not a mapping with a ``sum`` key is returned unchanged.

    The party's own diagnostics (``"party"``: loss, row count, metric) are
    dropped here, inside the party, unless the run opted in to releasing them.
    """
    out = fn(df)
    if not isinstance(out, Mapping) or "sum" not in out:
        return out  # nothing to keep back
    remember_in_party(df, key=key, fn=lambda _df: out["sum"])
    return {k: v for k, v in out.items() if k != "sum" and (share_metrics or k != "party")}


def _forget_quietly(df: pl.DataFrame, *, key: str) -> None:
    with contextlib.suppress(FedbenchError):  # nothing kept (the step failed) is fine
        recall_in_party(df, key=key)


@dataclass
class Session:
    """One training run's connection to the federation.

    Parameters
    ----------
    coord : Coordinator
        The federation's coordinator (``fed.coordinator``; a Federation is accepted and converted).
    parties : list of Party
        Parties taking part.
    secure : bool
        Sum through Paillier secure aggregation (``True``) or in the clear.
    failure : callable, optional
        ``failure(party_name, round) -> bool | str``: a truthy result makes the
        party drop out of that round (a string is reported as the reason); an
        exception raised by the hook counts as the party's failure.

    Notes
    -----
    A party drops out of a round when the failure hook says so, when its local
    step crashes (:class:`~fedbench.errors.LocalComputationError`, an
    unavailable node) or when it exceeds ``party_timeout``.  Errors about the
    data itself (missing values, wrong types, out-of-range values) are raised,
    not treated as dropouts.
    party_timeout : float, optional
        Seconds a party's local step may take; slower parties are dropped from the round.
    covered : frozenset of str
        Protocols whose releases a DP charge already covers (DP-FedAvg's noisy sums).
    party_metrics : bool, default False
        Release each party's own diagnostics to the analyst in the clear (recorded as exact releases).
    secagg : str, optional
        Secure-aggregation protocol of the secure sums (default: the federation's ``secagg``).
    """

    coord: Coordinator
    parties: list[Any]
    secure: bool = True
    failure: Callable[[str, int], Any] | None = None
    party_timeout: float | None = None
    transcript: Transcript = field(default_factory=Transcript)
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[PartyFailure] = field(default_factory=list)
    secure_sums: int = 0
    #: Protocols whose releases a DP charge made up front already covers (not logged as exact releases).
    covered: frozenset[str] = frozenset()
    #: Release each party's own diagnostics (loss, rows, metric) to the analyst (an exact release per party).
    party_metrics: bool = False
    releases: list[Release] = field(default_factory=list)
    secagg: str | None = None

    def __post_init__(self) -> None:
        if hasattr(type(self.coord), "coordinator"):  # a Federation: protocols use its coordinator
            self.coord = self.coord.coordinator  # type: ignore[attr-defined]
        self.transcript = Transcript(keep_payloads=bool(self.coord.audit))
        self._by_name = {p.name: p for p in self.parties}

    # -- sums --------------------------------------------------------------------
    @property
    def min_parties(self) -> int:
        """Fewest parties a sum may have (two when secure: one party's 'aggregate' is its own data)."""
        return MIN_PARTIES if self.secure else 1

    def sum_local(self, parties: Sequence[Any], fn: Callable[[pl.DataFrame], Mapping[str, Any]], *,
                  encoding: Encoding, protocol: str, description: str = "") -> tuple[dict[str, Any], AggInfo]:
        """Run ``fn`` inside every party and sum the results (securely unless ``secure=False``).

        ``description`` says what the sum releases (in the run's privacy summary and the ledger).
        """
        if self.secure:
            return self._secure(list(parties), fn, encoding, protocol, description)
        locals_ = self.coord.backend.compute(list(parties), fn)
        return self._plain({p.name: v for p, v in zip(parties, locals_, strict=True)}, protocol, description)

    def sum_held(self, held: Mapping[str, Any], *, encoding: Encoding,
                 protocol: str, description: str = "") -> tuple[dict[str, Any], AggInfo]:
        """Sum results the parties already computed and keep (phase 2 of a round).

        ``held`` maps party names to :class:`Stashed` tokens (or, for results
        that were not kept back, to the values themselves).
        """
        parties = [self._by_name[n] for n in held]
        tokens = {v.key for v in held.values() if isinstance(v, Stashed)}
        if held and len(tokens) == 1 and all(isinstance(v, Stashed) for v in held.values()):
            fn = partial(recall_in_party, key=next(iter(tokens)))
            if self.secure:
                return self._secure(parties, fn, encoding, protocol, description)
            locals_ = self.coord.backend.compute(parties, fn)  # plaintext simulation (secure=False)
            return self._plain({p.name: v for p, v in zip(parties, locals_, strict=True)}, protocol, description)
        if any(isinstance(v, Stashed) for v in held.values()):
            raise ProtocolError("a sum mixes results kept by parties under different rounds")
        if self.secure:
            raise ProtocolError("secure sums take results kept by the parties, not values held by the driver")
        return self._plain(dict(held), protocol, description)

    def forget(self, held: Mapping[str, Any]) -> None:
        """Discard results the parties keep for a sum that will not happen (an aborted round)."""
        for name, v in held.items():
            if isinstance(v, Stashed):
                self.coord.backend.post(self._by_name[name], partial(_forget_quietly, key=v.key))

    # -- releases ----------------------------------------------------------------------
    @property
    def _budget(self) -> Any:
        # The public property: it also finds a ledger persisted by an earlier kernel for these parties.
        budget = self.coord.budget
        return budget if budget is not None and budget.parties else None

    def note_release(self, protocol: str, description: str, parties: Sequence[str], *, how: str = "plaintext",
                     differentially_private: bool = False, ledger: bool = True) -> None:
        """List a release in the run's privacy summary; log an exact one in the ledger when budgets exist."""
        names = tuple(parties)
        self.releases.append(Release(protocol, description or protocol, names, differentially_private, how))
        budget = self._budget
        if ledger and not differentially_private and budget is not None:
            known = [n for n in names if n in budget.parties]  # parties without a budget have no ledger account
            if known:
                budget.record_exact(known, mechanism=protocol, description=description or protocol)

    def _secure(self, parties: list[Any], fn: Callable[[Any], Any], encoding: Encoding,
                protocol: str, description: str = "") -> tuple[dict[str, Any], AggInfo]:
        check_enough_parties(parties, hint="pass secure=False to simulate without encryption, or keep more parties "
                                           "in the round")
        options = None
        if protocol in self.covered:
            # A DP sum's noise shares are calibrated to the parties asked: a protocol that can sum fewer
            # (masking's dropout recovery) must release nothing instead.
            from ..secagg import get_protocol

            name = self.secagg or self.coord.secagg
            if "require_all" in get_protocol(name).option_names:
                options = {"require_all": True}  # on top of the federation's own options
        value, res = self.coord.aggregate(parties, fn, encoding=encoding, label=protocol, options=options,
                                         protocol=self.secagg, description=description or protocol,
                                         record_exact=protocol not in self.covered)
        # The federation logged an exact release in the ledger already (unless a DP charge covers it).
        self.note_release(protocol, description, [p.name for p in parties], how="secure sum",
                          differentially_private=protocol in self.covered, ledger=False)
        if res.transcript is None:  # the coordinator always attaches its channel's run; never seen otherwise
            raise ProtocolError(f"{protocol}: the coordinator returned a secure sum without its transcript")
        self.transcript.extend(res.transcript)
        self.secure_sums += 1
        return value, AggInfo(res.nbytes, res.elapsed, len(res.transcript), res.ciphertexts)

    def _plain(self, locals_: dict[str, Mapping[str, Any]], protocol: str,
               description: str = "") -> tuple[dict[str, Any], AggInfo]:
        # Same flow as the secure sum but unencrypted: for simulations where only the numbers matter.
        t0 = time.perf_counter()
        if not locals_:
            raise TooFewPartiesError("no party left to sum over")
        names = list(locals_)
        spec = VectorSpec.of(locals_[names[0]], names[0])
        channel = self.coord.channel(protocol)
        total = np.zeros(spec.size)
        for name in names:
            other = VectorSpec.of(locals_[name], name)
            if other != spec:
                raise ProtocolError(
                    f"party {name!r} returned entries {other.names} {other.shapes} but party {names[0]!r} "
                    f"returned {spec.names} {spec.shapes}"
                )
            vec = spec.flatten(locals_[name])
            channel.send(name, "aggregator", "local-aggregate", vec.astype("<f8").tobytes(), encrypted=False)
            total += vec
        channel.send("aggregator", "analyst", "aggregate", total.astype("<f8").tobytes(), encrypted=False)
        self.transcript.extend(channel.run)
        # secure=False: each party's local aggregate reaches the aggregator in the clear.
        self.note_release(protocol, description, names, how="plaintext sum",
                          differentially_private=protocol in self.covered, ledger=protocol not in self.covered)
        return spec.unflatten(total), AggInfo(channel.run.nbytes, time.perf_counter() - t0, len(channel.run), 0)

    # -- messages from the coordinator ------------------------------------------------------
    def broadcast(self, names: Sequence[str], kind: str, obj: Any, *, protocol: str = "fit") -> int:
        """Send public parameters (a model, fitted statistics) to parties; returns the bytes sent."""
        if isinstance(obj, np.ndarray):
            payload = np.ascontiguousarray(obj, dtype="<f8").tobytes()
        elif isinstance(obj, bytes):
            payload = obj
        else:
            payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        channel = self.coord.channel(protocol)
        for name in names:
            channel.send("coordinator", name, kind, payload, encrypted=False)
        self.transcript.extend(channel.run)
        return channel.run.nbytes

    # -- local steps -------------------------------------------------------------------------
    def run_local(self, names: Sequence[str], fn: Callable[[pl.DataFrame], Any], *, round: int,
                  stage: str) -> tuple[dict[str, Any], list[PartyFailure], dict[str, float]]:
        """Phase 1 of a round: run ``fn`` inside each party; failures and timeouts drop the party.

        Returns the results of the parties that succeeded (they stay with them
        until the secure sum), the failures, and each party's local seconds.
        """
        results: dict[str, Any] = {}
        failures: list[PartyFailure] = []
        seconds: dict[str, float] = {}
        key = f"round-{round}-{stage}-{next(_STASH_IDS)}"
        keep = partial(_step_and_keep, fn=fn, key=key, share_metrics=self.party_metrics)
        forget = partial(_forget_quietly, key=key)
        calls = []
        hook_seconds: dict[str, float] = {}  # a slow hook stands for a slow party: it counts towards its time
        for name in names:
            t0 = time.perf_counter()
            try:
                verdict = self.failure(name, round) if self.failure is not None else None
            except Exception as exc:  # the hook simulates a crash by raising
                verdict = f"{type(exc).__name__}: {exc}"
            if verdict:
                reason = verdict if isinstance(verdict, str) else "failure injected by the failure hook"
                failures.append(PartyFailure(round, name, "injected", reason, stage))
                seconds[name] = time.perf_counter() - t0
                continue
            hook_seconds[name] = time.perf_counter() - t0
            calls.append((self._by_name[name], keep))
        # Every selected party's step is submitted at once (concurrent on a cluster), then each outcome is judged.
        backend = self.coord.backend
        settled = backend.settle(calls, timeout=self.party_timeout)
        for (party, _), s in zip(calls, settled, strict=True):
            name = party.name
            s.seconds += hook_seconds[name]
            seconds[name] = s.seconds
            err = s.error
            if err is not None and not s.timed_out:
                if isinstance(err, FedbenchError) and not isinstance(err, LocalComputationError |
                                                                     PartyUnavailableError):
                    # Bad input (nulls, wrong types...) is an error to fix, never masked as a dropout;
                    # the other parties' kept results are discarded first.
                    for (other, _), o in zip(calls, settled, strict=True):
                        if o.error is None or o.timed_out:  # a late party keeps its result once it finishes
                            backend.post(other, forget)
                    raise err
                # A foreign exception's text may quote the party's data: its type name only.
                detail = str(err) if isinstance(err, FedbenchError) else type(err).__name__
                failures.append(PartyFailure(round, name, "error", detail, stage))
                continue
            if s.timed_out or (self.party_timeout is not None and s.seconds > self.party_timeout):
                why = (f"no answer within {s.seconds:g} s" if s.timed_out
                       else f"local step took {s.seconds:.3f} s > party_timeout={self.party_timeout} s")
                failures.append(PartyFailure(round, name, "timeout", why, stage))
                backend.post(party, forget)  # the late result is discarded where it is kept
                continue
            out = s.value
            if isinstance(out, Mapping):
                out = {**out, "sum": Stashed(key)}
            results[name] = out
        self.failures.extend(failures)
        if self.party_metrics:
            self._release_party_metrics(results, round=round, stage=stage)
        return results, failures, seconds

    def _release_party_metrics(self, results: Mapping[str, Any], *, round: int, stage: str) -> None:
        """Opted-in per-party diagnostics: each party -> analyst in the clear, recorded as exact releases."""
        channel = self.coord.channel("party_metrics")
        sent = []
        for name, out in results.items():
            info = out.get("party") if isinstance(out, Mapping) else None
            if not info:
                continue
            clean = {k: (None if v is None else float(v)) for k, v in info.items()}
            channel.send(name, "analyst", "party-metrics", pickle.dumps(clean, protocol=pickle.HIGHEST_PROTOCOL),
                         encrypted=False)
            sent.append(name)
        if sent:
            self.transcript.extend(channel.run)
            for name in sent:  # one ledger entry per party: each released its own values
                self.note_release("party_metrics", f"{stage} round {round}: the party's own "
                                  + "/".join(sorted(results[name]["party"])), [name], how="plaintext")

    def require(self, survivors: int, needed: int, *, round: int, stage: str, failures: list[PartyFailure]) -> None:
        """Raise :class:`DropoutError` if fewer than ``needed`` parties survived a round."""
        if survivors < needed:
            detail = "; ".join(f"{f.party} ({f.kind}: {f.reason})" for f in failures) or "none failed"
            raise DropoutError(
                f"{stage}: round {round} kept {survivors} parties, fewer than the minimum of {needed} "
                f"(dropped: {detail}); lower min_parties, raise party_timeout or fix the failing parties",
                round=round,
                failures=failures,
            )

    # -- history ----------------------------------------------------------------------------
    def record(self, **row: Any) -> None:
        """Append one history row (missing fields are null)."""
        self.rows.append({k: row.get(k) for k in HISTORY_SCHEMA})

    def history(self) -> pl.DataFrame:
        """The history as a polars DataFrame."""
        return pl.DataFrame(self.rows, schema=HISTORY_SCHEMA)
