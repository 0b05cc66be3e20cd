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
budget.  A :class:`~fedbench.Federation` without ``ledger_path`` persists by
default to ``./.fedbench/<hash>.ledger.json``, named from its parties' names
and sources (:func:`default_ledger_path`); ``":memory:"`` is the explicit,
non-persistent option::

    {
      "format": "fedbench-privacy-ledger",
      "version": 2,
      "federation": "<name or null>",
      "study": {"<party>": "<identity>", ...} | null,
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
      "chain": "<head of the SHA-256 hash chain over the entries>",
      "key_id": "<which key authenticates the file>",
      "hmac": "<HMAC-SHA256 of everything above, canonical JSON>"
    }

Budgets are themselves entries (kind ``"budget"``: old and new budget, when,
why; mechanism ``"budget_increase"`` for a raise after spending, which needs
``allow_increase=True`` and a reason), so the file is a pure append-only log
and the current state is its replay.

Integrity
---------
* Concurrency: every charge and budget change holds an OS lock on
  ``<file>.lock`` (the ``filelock`` package: ``fcntl.flock`` on POSIX) across
  reload, check and write, so two kernels sharing a file cannot both spend
  the last of a budget; reads reload the file when it changed.
* Tamper evidence: the HMAC key is a per-user secret (32 CSPRNG bytes) in
  :func:`default_key_path` (``~/.config/fedbench/ledger.key``, mode 0600),
  never next to the ledger.  A file edited, with entries removed, reordered or
  added, and its checksum or hash chain recomputed, fails the HMAC.
* Rollback and deletion: after each write the entry count and chain head are
  recorded (HMAC'd) under ``~/.config/fedbench/heads/``; a genuine older copy
  restored over the file, a truncated file, or a deleted file is refused until
  :meth:`PrivacyLedger.forget` is called deliberately.
* Not covered: anyone who can read the key file (the same user, root) can
  forge a ledger; deleting the ledger, the key and the head records together
  starts from zero; a lock on a network file system without working locks
  protects nothing; a ledger counts only what this fedbench installation ran
  (parties keeping their own ledgers elsewhere are not coordinated).

A file that is not JSON, lacks the format marker, has another version or
accounting settings, belongs to another federation, fails its HMAC or chain,
was rolled back, or holds an invalid entry raises :class:`LedgerFileError` and
is left untouched.  Version-1 files (checksum only) are refused with a pointer
to :meth:`PrivacyLedger.migrate`.  Refusals are kept in memory only: a refused
request leaves the file byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from filelock import FileLock, Timeout

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

__all__ = [
    "FORMAT",
    "MEMORY",
    "VERSION",
    "LedgerEntry",
    "PrivacyLedger",
    "Refusal",
    "config_dir",
    "default_key_path",
    "default_ledger_dir",
    "default_ledger_path",
    "party_identity",
]

#: Format marker of ledger files.
FORMAT = "fedbench-privacy-ledger"
#: Version of the ledger file format.
VERSION = 2
#: ``path`` value of an explicitly in-memory (not persistent) ledger.
MEMORY = ":memory:"
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

    def __repr__(self) -> str:
        # One readable line instead of the dataclass dump (the message is on .message).
        return (
            f"<Refusal {self.timestamp:%H:%M:%S} {self.mechanism} {self.description!r}: {self.party} asked "
            f"ε={self.requested[0]:.4g} with ε={self.remaining[0]:.4g} left of {self.budget[0]:.4g} "
            f"(spent {self.spent[0]:.4g}); nothing was computed>"
        )


class _RolledBack(LedgerFileError):
    """The file does not extend what this machine last wrote to it (checked again under the lock)."""


# -- keys, hash chain, atomic writes --------------------------------------------------------------
class _State(NamedTuple):
    federation: str | None
    study: dict[str, str] | None
    entries: list[LedgerEntry]
    budgets: dict[str, Pair]
    events: dict[str, list[AccountingEvent]]


def config_dir() -> Path:
    """Where fedbench keeps the ledger key and head records.

    ``$FEDBENCH_CONFIG_DIR`` if set, else ``$XDG_CONFIG_HOME/fedbench``, else
    ``~/.config/fedbench``: outside any project folder, so a ledger copied,
    committed or shared does not carry its key along.
    """
    env = os.environ.get("FEDBENCH_CONFIG_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "fedbench"


def default_key_path() -> Path:
    """The per-user secret key authenticating ledger files: ``config_dir() / "ledger.key"``."""
    return config_dir() / "ledger.key"


def _atomic_write(path: Path, data: bytes, *, sync: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (readers never see half a file)."""
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _read_or_create_key(path: Path, *, create: bool) -> bytes | None:
    """Read the 32-byte key (hex in the file); create it (mode 0600, CSPRNG) if asked and missing."""
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".ledger.key.", dir=path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
        text = path.read_text("ascii").strip()
    except UnicodeDecodeError as exc:
        raise ValueError("not a hex key") from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("not a hex key") from None
    if len(key) < 32:
        raise ValueError("key shorter than 32 bytes")
    return key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"fedbench-ledger-key-id\0" + key).hexdigest()[:16]


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    return hmac.new(key, _canonical(dict(body)), hashlib.sha256).hexdigest()


_CHAIN_SEED = hashlib.sha256(b"fedbench-privacy-ledger-chain-v2").hexdigest()


def _chain(items: list[Any]) -> list[str]:
    """Hash chain over the stored entries: ``h[0]`` is a fixed seed, ``h[i+1] = sha256(h[i] || entry i)``."""
    heads = [_CHAIN_SEED]
    for item in items:
        heads.append(hashlib.sha256(bytes.fromhex(heads[-1]) + _canonical(item)).hexdigest())
    return heads


# -- default location --------------------------------------------------------------------------
def party_identity(name: str, source: str, schema: Mapping[str, Any] | None = None) -> str:
    """A description of a party that stays the same across kernel restarts of one study.

    For a file-backed party: its name and the file's resolved absolute path
    (not the contents: a file that grows is still the same study).  For an
    in-memory DataFrame: its name and its schema (column names and dtypes),
    the only stable, public description of it; two studies with same-named
    parties over frames of the same schema in one folder share budgets
    (the conservative direction).

    Parameters
    ----------
    name : str
        Party name.
    source : str
        ``Party.source``: a path, or ``"<polars DataFrame>"`` / ``"<pandas DataFrame>"``.
    schema : Mapping, optional
        Column name to dtype, used for in-memory frames.
    """
    if source.startswith("<"):
        cols = ",".join(f"{c}:{t}" for c, t in (schema or {}).items())
        return f"{name}|frame|{cols}"
    return f"{name}|file|{Path(source).expanduser().resolve()}"


def default_ledger_dir() -> Path:
    """Folder of default ledgers: ``$FEDBENCH_LEDGER_DIR`` if set, else ``./.fedbench`` (next to the notebook)."""
    env = os.environ.get("FEDBENCH_LEDGER_DIR")
    return Path(env) if env else Path.cwd() / ".fedbench"


def default_ledger_path(study: Mapping[str, str]) -> Path:
    """The default ledger file of a set of parties.

    Privacy is spent per party, so a party's spending must stay in one ledger
    whatever federation it later joins.  The file is therefore, in
    :func:`default_ledger_dir`:

    * ``<hash>.ledger.json`` named from the sorted party identities (16 hex
      digits of SHA-256), if it exists: the same parties over the same sources
      after a restart or in a new :class:`~fedbench.Federation`;
    * otherwise the one existing ledger there that already records some of
      these parties (a federation over a subset or superset of them);
    * otherwise a new ``<hash>.ledger.json``.

    Raises
    ------
    LedgerFileError
        When these parties' spending is split over several ledgers there:
        pass ``ledger_path=`` explicitly (the others are then not counted).
    """
    digest = hashlib.sha256(_canonical(sorted(study.items()))).hexdigest()[:16]
    own = default_ledger_dir() / f"{digest}.ledger.json"
    if own.exists():
        return own
    others = overlapping_ledgers(own, study)
    if len(others) == 1:
        return next(iter(others))
    if others:
        where = "; ".join(f"{f} ({', '.join(p)})" for f, p in others.items())
        raise LedgerFileError(
            f"these parties' privacy spending is split over several ledgers: {where}. A federation must charge "
            "one ledger: pass ledger_path= explicitly (spending recorded only in the other files is then not "
            "counted)",
            path=str(next(iter(others))),
        )
    return own


def overlapping_ledgers(path: Path, study: Mapping[str, str]) -> dict[Path, list[str]]:
    """Other ledger files in ``path``'s folder with entries and some of the same parties (read, not verified)."""
    mine = {v: k for k, v in study.items()}
    out: dict[Path, list[str]] = {}
    with contextlib.suppress(OSError):
        for other in sorted(path.parent.glob("*.ledger.json")):
            if other.name == path.name:
                continue
            try:
                doc = json.loads(other.read_text("utf-8"))
                theirs = doc.get("study") or {}
                common = sorted(mine[v] for v in theirs.values() if v in mine)
            except (OSError, ValueError, AttributeError, TypeError):
                continue
            if common and doc.get("entries"):
                out[other] = common
    return out


# -- the ledger ---------------------------------------------------------------------------------
class PrivacyLedger:
    """Append-only record of privacy budgets and spending, per party, for one federation.

    Parameters
    ----------
    path : str or Path, optional
        JSON file to persist to (e.g. next to the notebook).  Loaded if it
        exists, created on the first change otherwise.  ``None`` or
        ``":memory:"`` keeps the ledger in memory only (nothing survives the
        kernel; meant for tests and throw-away sessions).
    federation : str, optional
        Federation name, stored in the file; loading a file written for another
        federation raises :class:`LedgerFileError`.
    study : Mapping of str to str, optional
        Identity of each party (name to a stable description of its data
        source), stored in a new file; see :func:`party_identity`.
    key_path : str or Path, optional
        Secret key authenticating the file (HMAC-SHA256); by default
        :func:`default_key_path`, created with permissions 0600 on first write.
    lock_timeout : float, default 60
        Seconds to wait for another process holding the ledger's lock file.

    Raises
    ------
    LedgerFileError
        If the file exists but is not a valid, authentic fedbench privacy
        ledger, or was deleted or rolled back since this machine last wrote it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        federation: str | None = None,
        study: Mapping[str, str] | None = None,
        key_path: str | os.PathLike[str] | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        if federation is not None and not isinstance(federation, str):
            raise ConfigurationError(f"federation must be a string, got {federation!r}")
        if study is not None and not (
            isinstance(study, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in study.items())
        ):
            raise ConfigurationError(f"study must map party names to identity strings, got {study!r}")
        if isinstance(path, str) and path == MEMORY:
            path = None
        self._path = None if path is None else Path(path)
        self._key_path = Path(key_path) if key_path is not None else None
        self._lock_timeout = float(lock_timeout)
        self._lock = threading.RLock()
        self._federation = federation
        self._study: dict[str, str] | None = None if study is None else dict(study)
        self._entries: list[LedgerEntry] = []
        self._budgets: dict[str, Pair] = {}
        self._events: dict[str, list[AccountingEvent]] = {}
        self._refusals: list[Refusal] = []
        self._disk_digest: str | None = None  # sha256 of the file bytes last read or written
        self._disk_stat: tuple[int, int, int] | None = None  # (inode, size, mtime) of that file
        if self._path is not None:
            if self._path.exists() or self._path.is_symlink():
                self._sync(force=True)
            else:
                self._check_not_deleted()

    # -- persistence -----------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The ledger file, or ``None`` for an in-memory ledger."""
        return self._path

    @property
    def persistent(self) -> bool:
        """Whether the ledger is kept in a file (``False``: in memory, lost with the kernel)."""
        return self._path is not None

    @property
    def key_path(self) -> Path:
        """The secret key file authenticating the ledger file."""
        return self._key_path if self._key_path is not None else default_key_path()

    @property
    def federation(self) -> str | None:
        """Federation name recorded in the ledger."""
        return self._federation

    @property
    def study(self) -> Mapping[str, str] | None:
        """Party identities the file was created for (``None`` if not recorded)."""
        return None if self._study is None else MappingProxyType(dict(self._study))

    def note_parties(self, study: Mapping[str, str]) -> None:
        """Add party identities to :attr:`study` (persisted with the next entry).

        Default ledgers are found by the identities in their ``study``, so a
        party added to a federation later keeps using this ledger.
        """
        with self._lock:
            self._study = {**study, **(self._study or {})}

    def _fail(self, why: str) -> LedgerFileError:
        return LedgerFileError(
            f"privacy ledger {str(self._path)!r}: {why}; the file was left untouched", path=str(self._path)
        )

    def _key(self, *, create: bool) -> bytes | None:
        try:
            return _read_or_create_key(self.key_path, create=create)
        except OSError as exc:
            raise self._fail(f"its key file {str(self.key_path)!r} cannot be used ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise self._fail(f"its key file {str(self.key_path)!r} is corrupt ({exc})") from exc

    def _head_file(self) -> Path:
        assert self._path is not None
        ident = hashlib.sha256(str(self._path.resolve()).encode()).hexdigest()[:32]
        return self.key_path.parent / "heads" / f"{ident}.json"

    def _head_mac(self, key: bytes, count: int, chain: str) -> str:
        assert self._path is not None
        msg = f"fedbench-ledger-head\0{self._path.resolve()}\0{count}\0{chain}".encode()
        return hmac.new(key, msg, hashlib.sha256).hexdigest()

    def _read_head(self, key: bytes | None) -> tuple[int, str] | None:
        """The (entry count, chain head) this machine last wrote to the file, if recorded."""
        head = self._head_file()
        try:
            rec = json.loads(head.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._fail(f"its head record {str(head)!r} cannot be read ({exc})") from exc
        ok = isinstance(rec, dict) and isinstance(rec.get("entries"), int) and isinstance(rec.get("chain"), str)
        if (
            not ok
            or key is None
            or not hmac.compare_digest(str(rec.get("mac")), self._head_mac(key, rec["entries"], rec["chain"]))
        ):
            raise self._fail(f"its head record {str(head)!r} is corrupt or was written with another key")
        return rec["entries"], rec["chain"]

    def _write_head(self, key: bytes, count: int, chain: str) -> None:
        head = self._head_file()
        rec = {"path": str(self._path), "entries": count, "chain": chain, "mac": self._head_mac(key, count, chain)}
        # Best effort: the ledger file is already written; a stale head only weakens rollback detection.
        with contextlib.suppress(OSError):
            head.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _atomic_write(head, (json.dumps(rec) + "\n").encode(), sync=False)

    def _check_not_deleted(self) -> None:
        """Refuse a missing file that this machine remembers writing (deleted to reset the budget?)."""
        if not self.key_path.exists() or not self._head_file().exists():
            return
        recorded = self._read_head(self._key(create=False))
        if recorded is not None and recorded[0] > 0:
            raise self._fail(
                f"is missing, but this machine recorded {recorded[0]} entries in it (head record "
                f"{str(self._head_file())!r}); restore the file, or call PrivacyLedger.forget({str(self._path)!r}) "
                "to start it over deliberately"
            )

    @classmethod
    def forget(cls, path: str | os.PathLike[str], *, key_path: str | os.PathLike[str] | None = None) -> bool:
        """Delete a ledger file and this machine's head record of it: its accounting starts over.

        This is the explicit way to reset a study's privacy budget (deleting
        only the file is refused on the next load).  Returns whether anything
        was removed.
        """
        ledger = cls.__new__(cls)
        ledger._path = Path(path)
        ledger._key_path = Path(key_path) if key_path is not None else None
        removed = False
        for f in (ledger._path, ledger._head_file()):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                removed = True
        return removed

    def _stat(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror or exc})") from exc
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _sync(self, *, force: bool = False) -> None:
        """Reload the file if another process (or ledger object) changed it since we last saw it."""
        if self._path is None:
            return
        with self._lock:
            try:
                self._sync_locked(force)
            except _RolledBack:
                # Without the file lock we may have read the file just before another kernel replaced it and
                # its head record just after: look again while holding the lock before calling it a rollback.
                with self._file_lock():
                    self._sync_locked(True)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self._path is not None
        lock_file = self._path.with_name(self._path.name + ".lock")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_file), timeout=self._lock_timeout)
            lock.acquire()
        except Timeout:
            raise self._fail(
                f"is locked by another process (lock file {str(lock_file)!r} held for over "
                f"{self._lock_timeout:g} s); nothing was charged"
            ) from None
        except OSError as exc:
            raise self._fail(f"cannot be locked ({exc.strerror or exc}); nothing was charged") from exc
        try:
            yield
        finally:
            lock.release()

    def _sync_locked(self, force: bool) -> None:
        assert self._path is not None
        stat = self._stat()
        if not force and stat is not None and stat == self._disk_stat:
            return
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror or exc})") from exc
        if raw is None:
            if self._disk_digest is not None:
                raise self._fail("was deleted since it was loaded; it is not recreated silently")
            self._check_not_deleted()
            return
        digest = hashlib.sha256(raw).hexdigest()
        if digest != self._disk_digest:
            self._adopt(self._parse(raw))
            self._disk_digest = digest
        self._disk_stat = stat

    def refresh(self) -> None:
        """Reload the file if another kernel wrote to it (reads do this too; charges always do)."""
        with self._lock:
            self._sync(force=True)

    def _parse(self, raw: bytes) -> _State:
        assert self._path is not None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._fail(f"is corrupt: not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise self._fail(f"is not a fedbench privacy ledger (no format marker {FORMAT!r})")
        version = doc.get("version")
        if version == 1:
            raise self._fail(
                "has format version 1, which carries only a checksum anyone can recompute; this fedbench "
                f"reads version {VERSION} (authenticated). Check its entries, then convert it once with "
                f"PrivacyLedger.migrate({str(self._path)!r}): the conversion is recorded in the ledger"
            )
        if version != VERSION:
            raise self._fail(f"has format version {version!r}; this fedbench reads version {VERSION}")
        expected_keys = {"format", "version", "federation", "study", "accounting", "entries", "chain", "key_id", "hmac"}
        if set(doc) != expected_keys:
            raise self._fail(f"is corrupt: top-level fields {sorted(doc)} differ from {sorted(expected_keys)}")
        if doc["accounting"] != _ACCOUNTING:
            raise self._fail(f"uses accounting settings {doc['accounting']!r}, expected {_ACCOUNTING!r}")
        key = self._key(create=False)
        if key is None:
            raise self._fail(
                f"cannot be authenticated: its key file {str(self.key_path)!r} is missing (restore the key, or "
                "pass key_path= / set FEDBENCH_CONFIG_DIR to where it is)"
            )
        if doc["key_id"] != _key_id(key):
            raise self._fail(
                f"was written with another key (key id {doc['key_id']!r}, the key at {str(self.key_path)!r} has id "
                f"{_key_id(key)!r}): copied from another user or machine? pass key_path= to that key"
            )
        body = {k: v for k, v in doc.items() if k != "hmac"}
        if not isinstance(doc["hmac"], str) or not hmac.compare_digest(doc["hmac"], _mac(key, body)):
            raise self._fail(
                "failed its authentication check (HMAC mismatch): entries were added, removed or edited outside "
                "fedbench (a recomputed checksum or hash chain does not help without the key)"
            )
        if not isinstance(doc["entries"], list):
            raise self._fail("is corrupt: entries must be a list")
        chain = _chain([item for item in doc["entries"]])
        if doc["chain"] != chain[-1]:
            raise self._fail("is corrupt: its hash chain does not match its entries")
        stored_fed = doc["federation"]
        if stored_fed is not None and not isinstance(stored_fed, str):
            raise self._fail("is corrupt: federation must be a string or null")
        if self._federation is not None and stored_fed is not None and stored_fed != self._federation:
            raise self._fail(f"belongs to federation {stored_fed!r}, not {self._federation!r}")
        study = doc["study"]
        if study is not None and not (isinstance(study, dict) and all(isinstance(v, str) for v in study.values())):
            raise self._fail("is corrupt: study must map party names to identities")
        budgets, events, entries = self._replay_all(doc["entries"])
        recorded = self._read_head(key)
        if recorded is not None:
            count, head = recorded
            if len(doc["entries"]) < count or chain[count] != head:
                raise _RolledBack(
                    f"privacy ledger {str(self._path)!r}: "
                    f"was rolled back or truncated: this machine last wrote {count} entries to it, it now holds "
                    f"{len(doc['entries'])} that do not extend them (restored from an older copy?); "
                    "the file was left untouched",
                    path=str(self._path),
                )
        federation = self._federation if stored_fed is None else stored_fed
        return _State(federation, study, entries, budgets, events)

    def _adopt(self, state: _State) -> None:
        self._federation = state.federation
        if state.study is not None:  # parties noted in memory since are kept (written with the next entry)
            self._study = {**(self._study or {}), **state.study}
        self._entries, self._budgets, self._events = state.entries, state.budgets, state.events

    def _replay_all(self, items: list[Any]) -> tuple[dict[str, Pair], dict[str, list[AccountingEvent]],
                                                     list[LedgerEntry]]:
        """Parse and replay stored entries in order; any invalid one makes the whole file corrupt."""
        budgets: dict[str, Pair] = {}
        events: dict[str, list[AccountingEvent]] = {}
        entries: list[LedgerEntry] = []
        for i, item in enumerate(items):
            try:
                entry = LedgerEntry.from_json(item)
                if entry.seq != i:
                    raise ValueError(f"sequence number {entry.seq} out of order")
                self._replay(entry, budgets, events)
            except (ValueError, TypeError, KeyError, ConfigurationError) as exc:
                raise self._fail(f"is corrupt: entry {i} is invalid ({exc})") from exc
            entries.append(entry)
        return budgets, events, entries

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

    def _document(self, entries: list[LedgerEntry], key: bytes) -> tuple[bytes, str]:
        items = [e.to_json() for e in entries]
        chain = _chain(items)[-1]
        body = {
            "format": FORMAT,
            "version": VERSION,
            "federation": self._federation,
            "study": self._study,
            "accounting": dict(_ACCOUNTING),
            "entries": items,
            "chain": chain,
            "key_id": _key_id(key),
        }
        body["hmac"] = _mac(key, body)
        return (json.dumps(body, indent=1, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8"), chain

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Hold the thread lock and the OS file lock across reload, check and write."""
        with self._lock:
            if self._path is None:
                yield
                return
            with self._file_lock():
                self._sync_locked(True)  # another kernel may have spent since we last looked
                yield

    def _persist(self, entries: list[LedgerEntry]) -> None:
        """Atomically write the ledger with ``entries`` (lock held); raise before changing anything on failure."""
        if self._path is None:
            return
        path = self._path
        key = self._key(create=True)
        assert key is not None
        data, chain = self._document(entries, key)
        try:
            _atomic_write(path, data, sync=True)
        except OSError as exc:
            raise LedgerFileError(
                f"privacy ledger {str(path)!r} cannot be written ({exc.strerror or exc}); nothing was charged",
                path=str(path),
            ) from exc
        self._disk_digest = hashlib.sha256(data).hexdigest()
        self._disk_stat = self._stat()
        self._write_head(key, len(entries), chain)

    def _append(self, entry: LedgerEntry) -> None:
        # Write first, then change memory: a failed write leaves the ledger as it was.
        self._persist([*self._entries, entry])
        self._entries.append(entry)

    @classmethod
    def migrate(
        cls, path: str | os.PathLike[str], *, key_path: str | os.PathLike[str] | None = None, reason: str = ""
    ) -> PrivacyLedger:
        """Convert a version-1 ledger file (checksum only) to the authenticated format, once.

        The version-1 file is checked as version 1 did (its SHA-256), then
        rewritten with the same entries plus a recorded ``"migration"`` budget
        entry naming the old checksum.  Only do this for a file you trust: a
        version-1 file could have been edited and resealed by anyone.

        Returns
        -------
        PrivacyLedger
            The migrated ledger.
        """
        p = Path(path)
        ledger = cls.__new__(cls)
        ledger.__init__(None, key_path=key_path)  # type: ignore[misc]
        ledger._path = p
        with ledger._lock:
            try:
                raw = p.read_bytes()
                doc = json.loads(raw.decode("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ledger._fail(f"cannot be read as a version-1 ledger ({exc})") from exc
            v1_keys = {"format", "version", "federation", "accounting", "entries", "sha256"}
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
                raise ledger._fail("is not a version-1 fedbench privacy ledger")
            if set(doc) != v1_keys or doc["accounting"] != _ACCOUNTING:
                raise ledger._fail("is a corrupt version-1 ledger")
            body = {k: v for k, v in doc.items() if k != "sha256"}
            if doc["sha256"] != hashlib.sha256(_canonical(body)).hexdigest():
                raise ledger._fail("was modified outside fedbench or is truncated (checksum mismatch)")
            budgets, events, entries = ledger._replay_all(doc["entries"] if isinstance(doc["entries"], list)
                                                          else [None])
            if not budgets:
                raise ledger._fail("holds no budget, so there is nothing to migrate; delete it instead")
            ledger._federation = doc["federation"] if isinstance(doc["federation"], str) else None
            ledger._entries, ledger._budgets, ledger._events = entries, budgets, events
            ledger._disk_digest = hashlib.sha256(raw).hexdigest()
            parties = tuple(budgets)
            spent = {q: ledger.spent(q) for q in parties}
            note = LedgerEntry(
                seq=len(entries),
                timestamp=cls._now(),
                kind="budget",
                mechanism="migration",
                parties=parties,
                description=reason or "converted from ledger format version 1 (checksum only)",
                parameters=_freeze(
                    {
                        "budgets": {q: list(budgets[q]) for q in parties},
                        "previous": {q: list(budgets[q]) for q in parties},
                        "migrated_from": {"version": 1, "sha256": doc["sha256"]},
                    }
                ),
                event=None,
                before=MappingProxyType(spent),
                after=MappingProxyType(dict(spent)),
            )
            lock = FileLock(str(p.with_name(p.name + ".lock")), timeout=ledger._lock_timeout)
            with lock:
                if hashlib.sha256(p.read_bytes()).hexdigest() != ledger._disk_digest:
                    raise ledger._fail("changed while it was being migrated")
                ledger._append(note)
        return ledger

    # -- reading ---------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """All entries, oldest first."""
        self._sync()
        return tuple(self._entries)

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """Refused requests of this session, oldest first (not persisted)."""
        return tuple(self._refusals)

    def __len__(self) -> int:
        self._sync()
        return len(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        self._sync()
        return iter(tuple(self._entries))

    def __getitem__(self, index: int) -> LedgerEntry:
        self._sync()
        return self._entries[index]

    @property
    def parties(self) -> tuple[str, ...]:
        """Parties that have a budget, in the order budgets were first set."""
        self._sync()
        return tuple(self._budgets)

    def has_budget(self, party: str) -> bool:
        """Whether ``party`` has a budget."""
        self._sync()
        return party in self._budgets

    def budget(self, party: str) -> Pair:
        """The party's budget ``(epsilon, delta)``.

        Raises
        ------
        BudgetNotSetError
            If the party has no budget.
        """
        self._sync()
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
        self._sync()
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
        self._sync()
        return sum(e.count for e in self._events.get(party, ()) if isinstance(e, NonPrivateEvent))

    def dp_releases(self, party: str) -> int:
        """Number of differentially private releases (event repetitions) charged to ``party``."""
        self._sync()
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

    def set_budget(
        self,
        budgets: Mapping[str, tuple[float, float]],
        *,
        description: str = "",
        allow_increase: bool = False,
    ) -> LedgerEntry | None:
        """Set or change parties' budgets; returns the entry, or ``None`` if nothing changed.

        Every change is a ledger entry (kind ``"budget"``) holding the old and
        new budget, when and why (``description``).  Raising a budget (epsilon
        or delta) of a party that has already spent some of it needs
        ``allow_increase=True`` and a ``description`` giving the reason; it is
        recorded as mechanism ``"budget_increase"`` and flagged in reprs.

        Parameters
        ----------
        budgets : Mapping of str to (epsilon, delta)
            New budget per party; epsilon > 0 and delta in (0, 1).
        description : str
            Recorded with the entry (the reason for a change).
        allow_increase : bool, default False
            Allow raising the budget of a party that has spent something.

        Raises
        ------
        ConfigurationError
            Invalid values, a budget below what the party has already spent, or
            a raise after spending without ``allow_increase=True`` and a reason.
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
        self._sync()
        if self._path is not None and all(self._budgets.get(p) == b for p, b in clean.items()):
            return None  # re-running the cell: no lock, no write
        with self._transaction():
            changed = {p: b for p, b in clean.items() if self._budgets.get(p) != b}
            if not changed:
                return None
            before, after, raised = {}, {}, []
            for p, (eps_b, delta_b) in changed.items():
                history = self._dp_events(p)
                before[p] = self.spent(p) if p in self._budgets else (0.0, 0.0)
                after[p] = party_spend(history, eps_b, delta_b)
                if after[p][0] > eps_b * (1 + TOLERANCE):
                    raise ConfigurationError(
                        f"party {p!r}: a budget of ε={eps_b:g}, δ={delta_b:g} is below what the party "
                        f"has already spent (ε={after[p][0]:.6g} at δ={delta_b:g})"
                    )
                old = self._budgets.get(p)
                if old is not None and history and (eps_b > old[0] or delta_b > old[1]):
                    raised.append(p)
            if raised and not (allow_increase and description.strip()):
                p = raised[0]
                (eps_o, delta_o), (eps_n, delta_n) = self._budgets[p], changed[p]
                raise ConfigurationError(
                    f"party {p!r}: raising the budget from ε={eps_o:g}, δ={delta_o:g} to ε={eps_n:g}, "
                    f"δ={delta_n:g} after it has spent ε={before[p][0]:.6g} needs allow_increase=True and a "
                    "reason (description=...); the raise is then recorded in the ledger. Nothing was changed"
                )
            parties = tuple(changed)
            params: dict[str, Any] = {
                "budgets": {p: list(changed[p]) for p in parties},
                "previous": {p: (list(self._budgets[p]) if p in self._budgets else None) for p in parties},
            }
            if raised:
                params["increased_after_spending"] = list(raised)
            entry = LedgerEntry(
                seq=len(self._entries),
                timestamp=self._now(),
                kind="budget",
                mechanism="budget_increase" if raised else "budget",
                parties=parties,
                description=description or "privacy budget set",
                parameters=_freeze(params),
                event=None,
                before=MappingProxyType(before),
                after=MappingProxyType(after),
            )
            self._append(entry)
            self._budgets.update(changed)
            return entry

    def budget_increases(self, party: str | None = None) -> tuple[LedgerEntry, ...]:
        """Budget entries that raised a budget after spending (of ``party``, or of anyone)."""
        self._sync()
        return tuple(
            e
            for e in self._entries
            if e.kind == "budget"
            and (
                (party is None and "increased_after_spending" in e.parameters)
                or party in e.parameters.get("increased_after_spending", ())
            )
        )

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
        if event.differentially_private:
            for p in parties:
                self.budget(p)  # BudgetNotSetError before locking (budgets are never removed)
        with self._transaction():
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
        self._sync()
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
                        "event": e.event.describe() if e.event is not None else _budget_change(e, p),
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


def _budget_change(entry: LedgerEntry, party: str) -> str:
    """A budget entry in words for the ledger table, e.g. ``budget ε=0.5, δ=1e-06 -> ε=1, δ=1e-06``."""
    new = entry.parameters.get("budgets", {}).get(party)
    old = entry.parameters.get("previous", {}).get(party)
    if new is None:
        return ""
    text = (
        f"budget ε={new[0]:g}, δ={new[1]:g}"
        if old is None
        else (f"budget ε={old[0]:g}, δ={old[1]:g} -> ε={new[0]:g}, δ={new[1]:g}")
    )
    if party in entry.parameters.get("increased_after_spending", ()):
        text += " (raised after spending)"
    return text


_TS = pl.Datetime("us", "UTC")
_LEDGER_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
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
_REFUSAL_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
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
