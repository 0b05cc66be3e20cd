"""The privacy ledger: per-party budgets, check-then-spend, and a durable audit log.

Check-then-spend
----------------
:meth:`PrivacyLedger.charge` first computes, for every party the request
touches, what that party would have spent after it (by the composition rule
of :func:`fedbench.dp.accounting.party_spend`).  If any party would go past its
budget the request is refused with :class:`BudgetExceededError`, recorded in
:attr:`PrivacyLedger.refusals`, and *nothing* changes: no entry, no file
write.  Otherwise the entry is written to disk and only then added in memory,
and the caller may draw noise and read data.  The charge therefore always
precedes the release: if the computation fails after a charge the budget stays
spent (conservative), so callers should validate their inputs before charging.

A request landing exactly on the budget is admitted: spends are compared with
a relative tolerance of :data:`~fedbench.dp.accounting.TOLERANCE` (1e-9), so a
budget of 1.0 admits ten releases at epsilon 0.1 and refuses the eleventh.
Reading a budget (``spent``, ``remaining``, ``preview``) never changes state.

File format
-----------
With a ``path`` the ledger lives in a UTF-8 JSON file, rewritten atomically
(temporary file in the same directory, ``fsync``, ``os.replace``) after every
change and reloaded on construction, so restarting a kernel does not reset a
budget::

    {
      "format": "fedbench-privacy-ledger",
      "version": 1,
      "federation": "<name or null>",
      "accounting": {"neighboring_relation": "add_or_remove_one",
                     "pld_value_discretization_interval": 0.0001,
                     "tolerance": 1e-09},
      "entries": [
        {"seq": 0, "timestamp": "2025-01-01T12:00:00.000000+00:00",
         "kind": "budget" | "spend" | "exact",
         "mechanism": "laplace", "parties": ["a", "b"], "description": "...",
         "parameters": {...}, "event": {"type": "pure", "epsilon": 0.1, "count": 1} | null,
         "before": {"a": [eps, delta], ...}, "after": {"a": [eps, delta], ...}},
        ...
      ],
      "sha256": "<digest of everything above, canonical JSON>"
    }

Budgets are themselves entries (kind ``"budget"``, ``parameters.budgets``), so
the file is a pure append-only log and the current state is its replay.  A
file that is not JSON, lacks the format marker, has another version or
accounting settings, belongs to another federation, fails its checksum, or
holds an invalid entry raises :class:`LedgerFileError` and is left untouched.
Before every write the ledger checks that the file still holds what it last
read or wrote, so two kernels sharing a file cannot silently overwrite each
other's spending.  Refusals are kept in memory only: a refused request leaves
the file byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import polars as pl

from ..errors import (
    BudgetExceededError,
    BudgetNotSetError,
    ConfigurationError,
    LedgerFileError,
)
from ..party import validate_party_name
from ._checks import check_delta, check_epsilon
from .accounting import (
    PLD_DISCRETIZATION,
    TOLERANCE,
    AccountingEvent,
    GaussianEvent,
    NonPrivateEvent,
    PureDPEvent,
    event_from_json,
    party_spend,
)

__all__ = ["FORMAT", "VERSION", "LedgerEntry", "PrivacyLedger", "Refusal"]

#: Format marker of ledger files.
FORMAT = "fedbench-privacy-ledger"
#: Version of the ledger file format.
VERSION = 1
_ACCOUNTING = {
    "neighboring_relation": "add_or_remove_one",
    "pld_value_discretization_interval": PLD_DISCRETIZATION,
    "tolerance": TOLERANCE,
}
_KINDS = ("budget", "spend", "exact")
_EVENT_CLASSES = (PureDPEvent, GaussianEvent, NonPrivateEvent)

Pair = tuple[float, float]


# -- immutable JSON values ----------------------------------------------------------------------
def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _normalise_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
        raise ConfigurationError(f"parameters must be a mapping with string keys, got {parameters!r}")
    try:
        return json.loads(json.dumps(dict(parameters), default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"parameters must be JSON-serialisable with finite numbers: {exc}") from exc


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerEntry:
    """One immutable entry of the ledger.

    Attributes
    ----------
    seq : int
        Position in the ledger (0, 1, 2, ...).
    timestamp : datetime
        When the entry was made (UTC).
    kind : {"budget", "spend", "exact"}
        A budget change, a differentially private release, or an exact
        (not differentially private) release.
    mechanism : str
        Mechanism name, e.g. ``"laplace"``, ``"gaussian"``, ``"dp_fedavg"``, ``"psi_size"``.
    parties : tuple of str
        Parties the entry touches.
    description : str
        What was released, in words.
    parameters : Mapping
        Mechanism parameters (read-only).
    event : PureDPEvent, GaussianEvent, NonPrivateEvent or None
        What the accountant composes (``None`` for budget changes).
    before, after : Mapping of str to (epsilon, delta)
        Each touched party's spent budget before and after the entry.
    """

    seq: int
    timestamp: datetime
    kind: Literal["budget", "spend", "exact"]
    mechanism: str
    parties: tuple[str, ...]
    description: str
    parameters: Mapping[str, Any]
    event: AccountingEvent | None
    before: Mapping[str, Pair]
    after: Mapping[str, Pair]

    @property
    def differentially_private(self) -> bool:
        """False for exact releases (recorded but not covered by any epsilon)."""
        return self.kind != "exact"

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the ledger file."""
        return {
            "seq": self.seq,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
            "kind": self.kind,
            "mechanism": self.mechanism,
            "parties": list(self.parties),
            "description": self.description,
            "parameters": _thaw(self.parameters),
            "event": None if self.event is None else self.event.to_json(),
            "before": {p: list(v) for p, v in self.before.items()},
            "after": {p: list(v) for p, v in self.after.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> LedgerEntry:
        """Parse and validate a stored entry (raises ``ValueError`` on any defect)."""
        if not isinstance(data, dict):
            raise ValueError("entry is not an object")
        expected = {
            "seq",
            "timestamp",
            "kind",
            "mechanism",
            "parties",
            "description",
            "parameters",
            "event",
            "before",
            "after",
        }
        if set(data) != expected:
            raise ValueError(f"entry fields {sorted(data)} differ from {sorted(expected)}")
        seq, kind = data["seq"], data["kind"]
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ValueError("seq is not an integer")
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        if not isinstance(data["mechanism"], str) or not isinstance(data["description"], str):
            raise ValueError("mechanism and description must be strings")
        if not isinstance(data["parameters"], dict):
            raise ValueError("parameters must be an object")
        parties = data["parties"]
        if not isinstance(parties, list) or not parties or len(set(parties)) != len(parties):
            raise ValueError("parties must be a non-empty list of distinct names")
        for p in parties:
            validate_party_name(p)
        timestamp = datetime.fromisoformat(data["timestamp"])
        if timestamp.tzinfo is None:
            raise ValueError("timestamp has no time zone")
        event = None if data["event"] is None else event_from_json(data["event"])
        if (kind == "budget") != (event is None) or (kind == "exact") != isinstance(event, NonPrivateEvent):
            raise ValueError(f"event {data['event']!r} does not match kind {kind!r}")

        def pairs(name: str) -> dict[str, Pair]:
            raw = data[name]
            if not isinstance(raw, dict) or set(raw) != set(parties):
                raise ValueError(f"{name} must give a figure for every party of the entry")
            out = {}
            for p, v in raw.items():
                ok = isinstance(v, list) and len(v) == 2
                ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
                if not ok or not all(math.isfinite(x) and x >= 0 for x in v):
                    raise ValueError(f"{name}[{p!r}] must be [epsilon, delta], got {v!r}")
                out[p] = (float(v[0]), float(v[1]))
            return out

        return cls(
            seq=seq,
            timestamp=timestamp,
            kind=kind,
            mechanism=data["mechanism"],
            parties=tuple(parties),
            description=data["description"],
            parameters=_freeze(data["parameters"]),
            event=event,
            before=MappingProxyType(pairs("before")),
            after=MappingProxyType(pairs("after")),
        )

    def __repr__(self) -> str:
        what = self.event.describe() if self.event is not None else "budget change"
        return (
            f"<LedgerEntry #{self.seq} {self.kind} {self.mechanism!r} on {', '.join(self.parties)}: "
            f"{what}; {self.description!r}>"
        )


@dataclass(frozen=True)
class Refusal:
    """A refused request (kept in memory, apart from the append-only ledger).

    Attributes
    ----------
    timestamp : datetime
        When the request was refused (UTC).
    parties : tuple of str
        Parties the request touched.
    mechanism, description : str
        As given with the request.
    event : PureDPEvent or GaussianEvent
        What the request would have released.
    party : str
        First offending party.
    spent, requested, remaining, budget : (epsilon, delta)
        Figures of the offending party.
    message : str
        The error message (covers every offending party).
    """

    timestamp: datetime
    parties: tuple[str, ...]
    mechanism: str
    description: str
    event: AccountingEvent
    party: str
    spent: Pair
    requested: Pair
    remaining: Pair
    budget: Pair
    message: str


# -- the ledger ---------------------------------------------------------------------------------
class PrivacyLedger:
    """Append-only record of privacy budgets and spending, per party, for one federation.

    Parameters
    ----------
    path : str or Path, optional
        JSON file to persist to (e.g. next to the notebook).  Loaded if it
        exists, created on the first change otherwise.  ``None`` keeps the
        ledger in memory only.
    federation : str, optional
        Federation name, stored in the file; loading a file written for another
        federation raises :class:`LedgerFileError`.

    Raises
    ------
    LedgerFileError
        If the file exists but is not a valid fedbench privacy ledger.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, federation: str | None = None) -> None:
        if federation is not None and not isinstance(federation, str):
            raise ConfigurationError(f"federation must be a string, got {federation!r}")
        self._path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self._federation = federation
        self._entries: list[LedgerEntry] = []
        self._budgets: dict[str, Pair] = {}
        self._events: dict[str, list[AccountingEvent]] = {}
        self._refusals: list[Refusal] = []
        self._disk_digest: str | None = None  # sha256 of the file bytes last read or written
        if self._path is not None and self._path.exists():
            self._load()

    # -- persistence -----------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The ledger file, or ``None`` for an in-memory ledger."""
        return self._path

    @property
    def federation(self) -> str | None:
        """Federation name recorded in the ledger."""
        return self._federation

    def _fail(self, why: str) -> LedgerFileError:
        return LedgerFileError(
            f"privacy ledger {str(self._path)!r}: {why}; the file was left untouched", path=str(self._path)
        )

    def _load(self) -> None:
        assert self._path is not None
        try:
            raw = self._path.read_bytes()
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror or exc})") from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._fail(f"is corrupt: not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise self._fail(f"is not a fedbench privacy ledger (no format marker {FORMAT!r})")
        version = doc.get("version")
        if version != VERSION:
            raise self._fail(f"has format version {version!r}; this fedbench reads version {VERSION}")
        expected_keys = {"format", "version", "federation", "accounting", "entries", "sha256"}
        if set(doc) != expected_keys:
            raise self._fail(f"is corrupt: top-level fields {sorted(doc)} differ from {sorted(expected_keys)}")
        if doc["accounting"] != _ACCOUNTING:
            raise self._fail(f"uses accounting settings {doc['accounting']!r}, expected {_ACCOUNTING!r}")
        body = {k: v for k, v in doc.items() if k != "sha256"}
        if doc["sha256"] != hashlib.sha256(_canonical(body)).hexdigest():
            raise self._fail("was modified outside fedbench or is truncated (checksum mismatch)")
        stored_fed = doc["federation"]
        if stored_fed is not None and not isinstance(stored_fed, str):
            raise self._fail("is corrupt: federation must be a string or null")
        if self._federation is not None and stored_fed is not None and stored_fed != self._federation:
            raise self._fail(f"belongs to federation {stored_fed!r}, not {self._federation!r}")
        if not isinstance(doc["entries"], list):
            raise self._fail("is corrupt: entries must be a list")
        budgets: dict[str, Pair] = {}
        events: dict[str, list[AccountingEvent]] = {}
        entries: list[LedgerEntry] = []
        for i, item in enumerate(doc["entries"]):
            try:
                entry = LedgerEntry.from_json(item)
                if entry.seq != i:
                    raise ValueError(f"sequence number {entry.seq} out of order")
                self._replay(entry, budgets, events)
            except (ValueError, TypeError, KeyError, ConfigurationError) as exc:
                raise self._fail(f"is corrupt: entry {i} is invalid ({exc})") from exc
            entries.append(entry)
        self._federation = self._federation if stored_fed is None else stored_fed
        self._entries, self._budgets, self._events = entries, budgets, events
        self._disk_digest = hashlib.sha256(raw).hexdigest()

    @staticmethod
    def _replay(entry: LedgerEntry, budgets: dict[str, Pair], events: dict[str, list[AccountingEvent]]) -> None:
        if entry.kind == "budget":
            new = entry.parameters.get("budgets")
            if not isinstance(new, Mapping) or set(new) != set(entry.parties):
                raise ValueError("budget entry must give a budget for each of its parties")
            for p, b in new.items():
                if not (isinstance(b, tuple) and len(b) == 2):
                    raise ValueError(f"budget of {p!r} must be [epsilon, delta]")
                budgets[p] = (check_epsilon(b[0], party=p), check_delta(b[1], party=p))
            return
        assert entry.event is not None
        for p in entry.parties:
            if entry.kind == "spend" and p not in budgets:
                raise ValueError(f"spend on party {p!r} before any budget was set")
            events.setdefault(p, []).append(entry.event)

    def _document(self, entries: list[LedgerEntry]) -> bytes:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "federation": self._federation,
            "accounting": dict(_ACCOUNTING),
            "entries": [e.to_json() for e in entries],
        }
        body["sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
        return (json.dumps(body, indent=1, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")

    def _persist(self, entries: list[LedgerEntry]) -> None:
        """Atomically write the ledger with ``entries``; raise before changing anything on failure."""
        if self._path is None:
            return
        path = self._path
        # Refuse to overwrite a file changed (or deleted) behind our back, e.g. by a second kernel.
        try:
            current = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        except OSError as exc:
            raise self._fail(f"cannot be read before writing ({exc.strerror or exc})") from exc
        if current != self._disk_digest:
            raise self._fail(
                "was changed by another process since it was loaded; create a new ledger object to reload it"
            )
        data = self._document(entries)
        tmp_name = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            raise LedgerFileError(
                f"privacy ledger {str(path)!r} cannot be written ({exc.strerror or exc}); nothing was charged",
                path=str(path),
            ) from exc
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        self._disk_digest = hashlib.sha256(data).hexdigest()

    def _append(self, entry: LedgerEntry) -> None:
        # Write first, then change memory: a failed write leaves the ledger as it was.
        self._persist([*self._entries, entry])
        self._entries.append(entry)

    # -- reading ---------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """All entries, oldest first."""
        return tuple(self._entries)

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """Refused requests of this session, oldest first (not persisted)."""
        return tuple(self._refusals)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(tuple(self._entries))

    def __getitem__(self, index: int) -> LedgerEntry:
        return self._entries[index]

    @property
    def parties(self) -> tuple[str, ...]:
        """Parties that have a budget, in the order budgets were first set."""
        return tuple(self._budgets)

    def has_budget(self, party: str) -> bool:
        """Whether ``party`` has a budget."""
        return party in self._budgets

    def budget(self, party: str) -> Pair:
        """The party's budget ``(epsilon, delta)``.

        Raises
        ------
        BudgetNotSetError
            If the party has no budget.
        """
        try:
            return self._budgets[party]
        except KeyError:
            raise BudgetNotSetError(
                f"party {party!r} has no privacy budget; set one first, e.g. "
                f"budget.set_budget(epsilon=1.0, delta=1e-6, parties=[{party!r}])",
                party=party,
            ) from None

    def events(self, party: str) -> tuple[AccountingEvent, ...]:
        """Every release charged to or recorded for ``party`` (DP and exact)."""
        return tuple(self._events.get(party, ()))

    def spent(self, party: str) -> Pair:
        """What ``party`` has spent: ``(epsilon at its budget's delta, delta at its budget's epsilon)``.

        See :func:`fedbench.dp.accounting.party_spend` for the composition rule.
        Reading never changes the ledger.
        """
        eps_b, delta_b = self.budget(party)
        return party_spend(self._dp_events(party), eps_b, delta_b)

    def remaining(self, party: str) -> Pair:
        """What ``party`` has left: budget minus :meth:`spent`, floored at 0, per component."""
        eps_b, delta_b = self.budget(party)
        eps_s, delta_s = self.spent(party)
        return max(0.0, eps_b - eps_s), max(0.0, delta_b - delta_s)

    def exact_releases(self, party: str) -> int:
        """Number of exact (not differentially private) releases touching ``party``."""
        return sum(e.count for e in self._events.get(party, ()) if isinstance(e, NonPrivateEvent))

    def dp_releases(self, party: str) -> int:
        """Number of differentially private releases (event repetitions) charged to ``party``."""
        return sum(e.count for e in self._dp_events(party))

    def _dp_events(self, party: str) -> list[AccountingEvent]:
        return [e for e in self._events.get(party, ()) if e.differentially_private]

    def preview(self, parties: Iterable[str], event: AccountingEvent) -> dict[str, Pair]:
        """What each party would have spent after ``event``, without charging anything.

        Raises
        ------
        BudgetNotSetError
            If a party has no budget.
        """
        parties = self._check_parties(parties)
        event = self._check_event(event)
        out = {}
        for p in parties:
            eps_b, delta_b = self.budget(p)
            out[p] = party_spend([*self._dp_events(p), event], eps_b, delta_b)
        return out

    def fits(self, parties: Iterable[str], event: AccountingEvent) -> bool:
        """Whether :meth:`charge` would admit ``event`` on ``parties`` (nothing is charged)."""
        after = self.preview(parties, event)
        return all(after[p][0] <= self.budget(p)[0] * (1 + TOLERANCE) for p in after)

    # -- changing ----------------------------------------------------------------------------
    @staticmethod
    def _check_parties(parties: Iterable[str]) -> tuple[str, ...]:
        if isinstance(parties, str):
            parties = [parties]
        try:
            out = tuple(parties)
        except TypeError:
            raise ConfigurationError(f"parties must be a list of party names, got {parties!r}") from None
        if not out:
            raise ConfigurationError("a request must touch at least one party")
        for p in out:
            validate_party_name(p)
        if len(set(out)) != len(out):
            raise ConfigurationError(f"parties must be distinct, got {list(out)}")
        return out

    @staticmethod
    def _check_event(event: object) -> AccountingEvent:
        if not isinstance(event, _EVENT_CLASSES):
            raise ConfigurationError(
                f"event must be a PureDPEvent, GaussianEvent or NonPrivateEvent, got {type(event).__name__}"
            )
        return event

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def set_budget(self, budgets: Mapping[str, tuple[float, float]], *, description: str = "") -> LedgerEntry | None:
        """Set or change parties' budgets; returns the entry, or ``None`` if nothing changed.

        Parameters
        ----------
        budgets : Mapping of str to (epsilon, delta)
            New budget per party; epsilon > 0 and delta in (0, 1).
        description : str
            Recorded with the entry.

        Raises
        ------
        ConfigurationError
            Invalid values, or a budget below what the party has already spent.
            Nothing changes when it is raised.
        """
        if not isinstance(budgets, Mapping) or not budgets:
            raise ConfigurationError("budgets must be a non-empty mapping of party name to (epsilon, delta)")
        if not isinstance(description, str):
            raise ConfigurationError(f"description must be a string, got {description!r}")
        clean: dict[str, Pair] = {}
        for p, b in budgets.items():
            validate_party_name(p)
            if isinstance(b, str) or not isinstance(b, tuple | list) or len(b) != 2:
                raise ConfigurationError(f"party {p!r}: budget must be a pair (epsilon, delta), got {b!r}")
            clean[p] = (check_epsilon(b[0], party=p), check_delta(b[1], party=p))
        with self._lock:
            changed = {p: b for p, b in clean.items() if self._budgets.get(p) != b}
            if not changed:
                return None
            before, after = {}, {}
            for p, (eps_b, delta_b) in changed.items():
                history = self._dp_events(p)
                before[p] = self.spent(p) if p in self._budgets else (0.0, 0.0)
                after[p] = party_spend(history, eps_b, delta_b)
                if after[p][0] > eps_b * (1 + TOLERANCE):
                    raise ConfigurationError(
                        f"party {p!r}: a budget of ε={eps_b:g}, δ={delta_b:g} is below what the party "
                        f"has already spent (ε={after[p][0]:.6g} at δ={delta_b:g})"
                    )
            parties = tuple(changed)
            entry = LedgerEntry(
                seq=len(self._entries),
                timestamp=self._now(),
                kind="budget",
                mechanism="budget",
                parties=parties,
                description=description or "privacy budget set",
                parameters=_freeze(
                    {
                        "budgets": {p: list(changed[p]) for p in parties},
                        "previous": {p: (list(self._budgets[p]) if p in self._budgets else None) for p in parties},
                    }
                ),
                event=None,
                before=MappingProxyType(before),
                after=MappingProxyType(after),
            )
            self._append(entry)
            self._budgets.update(changed)
            return entry

    def charge(
        self,
        parties: Iterable[str],
        event: AccountingEvent,
        *,
        mechanism: str | None = None,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Check every touched party's budget, then record the release; call *before* computing.

        Parameters
        ----------
        parties : iterable of str
            Parties whose data the release uses; each is charged the full event.
        event : PureDPEvent, GaussianEvent or NonPrivateEvent
            What is released.  A :class:`NonPrivateEvent` is recorded and flagged,
            never refused, and charges no epsilon (see :meth:`record_exact`).
        mechanism : str, optional
            Mechanism name; defaults to the event type.
        description : str
            What is released, in words (shown in the ledger).
        parameters : Mapping, optional
            JSON-serialisable mechanism parameters (sensitivity, scale, bounds...).

        Returns
        -------
        LedgerEntry
            The new entry.

        Raises
        ------
        BudgetExceededError
            If any touched party would exceed its budget; the message gives that
            party's spent, requested and remaining budget.  Nothing is charged and
            the refusal is added to :attr:`refusals`.
        BudgetNotSetError
            If a touched party has no budget (for a differentially private event).
        LedgerFileError
            If the ledger file cannot be written or changed behind our back;
            nothing is charged.
        """
        parties = self._check_parties(parties)
        event = self._check_event(event)
        if mechanism is None:
            mechanism = event.kind
        if not isinstance(mechanism, str) or not mechanism:
            raise ConfigurationError(f"mechanism must be a non-empty string, got {mechanism!r}")
        if not isinstance(description, str):
            raise ConfigurationError(f"description must be a string, got {description!r}")
        params = _normalise_parameters(parameters)
        with self._lock:
            if not event.differentially_private:
                return self._record(parties, event, "exact", mechanism, description, params)
            for p in parties:
                self.budget(p)  # BudgetNotSetError before any computation
            before = {p: self.spent(p) for p in parties}
            after = {p: party_spend([*self._dp_events(p), event], *self._budgets[p]) for p in parties}
            over = [p for p in parties if after[p][0] > self._budgets[p][0] * (1 + TOLERANCE)]
            if over:
                raise self._refuse(parties, event, mechanism, description, over, before, after)
            return self._record(parties, event, "spend", mechanism, description, params, before, after)

    def record_exact(
        self,
        parties: Iterable[str],
        *,
        mechanism: str,
        description: str,
        parameters: Mapping[str, Any] | None = None,
        count: int = 1,
    ) -> LedgerEntry:
        """Record an exact, not differentially private release (e.g. a PSI size).

        No epsilon is charged and no budget is needed; the entry is flagged
        ``differentially_private=False`` and counted per party.
        """
        return self.charge(
            parties, NonPrivateEvent(count), mechanism=mechanism, description=description, parameters=parameters
        )

    def _record(
        self,
        parties: tuple[str, ...],
        event: AccountingEvent,
        kind: Literal["spend", "exact"],
        mechanism: str,
        description: str,
        params: dict[str, Any],
        before: dict[str, Pair] | None = None,
        after: dict[str, Pair] | None = None,
    ) -> LedgerEntry:
        if before is None or after is None:  # exact releases change no figure
            before = {p: (self.spent(p) if p in self._budgets else (0.0, 0.0)) for p in parties}
            after = dict(before)
        entry = LedgerEntry(
            seq=len(self._entries),
            timestamp=self._now(),
            kind=kind,
            mechanism=mechanism,
            parties=parties,
            description=description,
            parameters=_freeze(params),
            event=event,
            before=MappingProxyType(before),
            after=MappingProxyType(after),
        )
        self._append(entry)
        for p in parties:
            self._events.setdefault(p, []).append(event)
        return entry

    def _refuse(
        self,
        parties: tuple[str, ...],
        event: AccountingEvent,
        mechanism: str,
        description: str,
        over: list[str],
        before: dict[str, Pair],
        after: dict[str, Pair],
    ) -> BudgetExceededError:
        lines, figures = [], {}
        for p in over:
            budget = self._budgets[p]
            spent = before[p]
            requested = (max(0.0, after[p][0] - spent[0]), max(0.0, after[p][1] - spent[1]))
            remaining = (max(0.0, budget[0] - spent[0]), max(0.0, budget[1] - spent[1]))
            figures[p] = (spent, requested, remaining, budget)
            lines.append(
                f"party {p!r}: spent ε={spent[0]:.6g}, requested ε={requested[0]:.6g}, "
                f"remaining ε={remaining[0]:.6g} (budget ε={budget[0]:g}, δ={budget[1]:g}; "
                f"spent δ={spent[1]:.3g}, remaining δ={remaining[1]:.3g})"
            )
        what = f"{mechanism} ({event.describe()})" + (f": {description}" if description else "")
        message = (
            f"privacy budget exceeded by {what}; refused before any noise was drawn or data read.\n  "
            + "\n  ".join(lines)
        )
        first = over[0]
        spent, requested, remaining, budget = figures[first]
        self._refusals.append(
            Refusal(
                timestamp=self._now(),
                parties=parties,
                mechanism=mechanism,
                description=description,
                event=event,
                party=first,
                spent=spent,
                requested=requested,
                remaining=remaining,
                budget=budget,
                message=message,
            )
        )
        return BudgetExceededError(
            message, party=first, spent=spent, requested=requested, remaining=remaining, budget=budget
        )

    # -- tables ----------------------------------------------------------------------------
    def to_polars(self) -> pl.DataFrame:
        """The ledger in long form: one row per entry and touched party."""
        rows = []
        for e in self._entries:
            for p in e.parties:
                b, a = e.before[p], e.after[p]
                rows.append(
                    {
                        "seq": e.seq,
                        "timestamp": e.timestamp,
                        "kind": e.kind,
                        "mechanism": e.mechanism,
                        "party": p,
                        "parties": list(e.parties),
                        "description": e.description,
                        "event": e.event.describe() if e.event is not None else "",
                        "differentially_private": e.differentially_private,
                        "epsilon_before": b[0],
                        "delta_before": b[1],
                        "epsilon_after": a[0],
                        "delta_after": a[1],
                        "parameters": json.dumps(_thaw(e.parameters), sort_keys=True),
                    }
                )
        return pl.DataFrame(rows, schema=_LEDGER_SCHEMA)

    def refusals_to_polars(self) -> pl.DataFrame:
        """Refused requests, one row each (figures of the first offending party)."""
        rows = [
            {
                "timestamp": r.timestamp,
                "mechanism": r.mechanism,
                "parties": list(r.parties),
                "description": r.description,
                "event": r.event.describe(),
                "party": r.party,
                "epsilon_spent": r.spent[0],
                "epsilon_requested": r.requested[0],
                "epsilon_remaining": r.remaining[0],
                "epsilon_budget": r.budget[0],
                "delta_budget": r.budget[1],
            }
            for r in self._refusals
        ]
        return pl.DataFrame(rows, schema=_REFUSAL_SCHEMA)

    def __repr__(self) -> str:
        where = str(self._path) if self._path is not None else "in memory"
        return (
            f"<PrivacyLedger ({where}): {len(self._entries)} entries, {len(self._budgets)} budgets, "
            f"{len(self._refusals)} refusals>"
        )


_TS = pl.Datetime("us", "UTC")
_LEDGER_SCHEMA = {
    "seq": pl.Int64,
    "timestamp": _TS,
    "kind": pl.String,
    "mechanism": pl.String,
    "party": pl.String,
    "parties": pl.List(pl.String),
    "description": pl.String,
    "event": pl.String,
    "differentially_private": pl.Boolean,
    "epsilon_before": pl.Float64,
    "delta_before": pl.Float64,
    "epsilon_after": pl.Float64,
    "delta_after": pl.Float64,
    "parameters": pl.String,
}
_REFUSAL_SCHEMA = {
    "timestamp": _TS,
    "mechanism": pl.String,
    "parties": pl.List(pl.String),
    "description": pl.String,
    "event": pl.String,
    "party": pl.String,
    "epsilon_spent": pl.Float64,
    "epsilon_requested": pl.Float64,
    "epsilon_remaining": pl.Float64,
    "epsilon_budget": pl.Float64,
    "delta_budget": pl.Float64,
}
