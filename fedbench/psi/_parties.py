"""Where each party's PSI secrets live, and how a protocol step reaches them.

A PSI run needs, per party, its identifier encodings, a secret scalar and a
secret shuffle.  None of them ever leaves the party; the protocol
(:mod:`fedbench.psi.protocol`) only asks a party to *do* something with them
(hash and blind its set, blind a set it received, map matched positions to its
rows) and gets back blinded elements or positions.  Two implementations:

:class:`InProcessParties`
    Every party lives in this process (the simulation's default).  Their states
    are kept here, and all blinding work of one protocol step, every party's,
    runs as one batch on the PSI worker pool, so all cores stay busy even when
    the sets differ in size.
:class:`RemoteParties`
    Parties live elsewhere (Ray actors).  Each state stays in the party's own
    memory (:func:`fedbench.party.remember_in_party`), each step is one call
    per party submitted concurrently through the backend, and the party hashes
    and blinds on its own node's cores.  Only blinded elements, CPU seconds,
    matched row positions and the set size (public: every party sees it in the
    message sizes) come back; the counts of missing and duplicate identifiers
    stay in the party.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Any

import numpy as np
import polars as pl

from ..errors import FedbenchError
from ..party import Party, recall_in_party, remember_in_party
from ._kernels import ELEMENT_BYTES, new_scalar
from ._parallel import BlindJob, Executor, GroupElementError, HashJob, available_cores
from .encoding import LocalSet

__all__ = ["TAG_BYTES", "InProcessParties", "PSIParties", "RemoteParties", "SetInfo", "Step"]

#: Bytes of a fully blinded element kept for comparison: the first 16 bytes of its
#: u-coordinate, i.e. its low 128 bits.  Distinct points of the subgroup that are not
#: each other's negatives have distinct u, and the low 128 bits of u of a random
#: subgroup point are heuristically uniform, so two distinct identifiers share a tag
#: with probability ~2^-128 (a point and its negative share u, but ``H(x) = -H(x')``
#: has probability 2^-252).  Comparing
#: n x m elements thus gives a false match with probability at most ~n*m / 2^128:
#: 2^-88 for 2^20 x 2^20, 2^-68 for 2^30 x 2^30.
TAG_BYTES = 16

#: One blinding step of one party: ``(party, values, shuffle, truncate, sender)``.  The
#: party blinds the concatenated elements it received from ``sender`` with its scalar,
#: then (if asked) shuffles them with a fresh secret permutation and truncates them to
#: comparison tags.  ``sender`` is named if an element is rejected.
Step = tuple[str, bytes, bool, bool, str]

_RUN_IDS = count()


@dataclass(frozen=True)
class SetInfo:
    """What a party declares about its prepared identifiers: public facts only.

    ``size`` (distinct identifiers) is public because every party sees it in the
    message sizes.  The counts of missing and duplicate identifiers are not public
    and are not here: they stay in the party (see :meth:`PSIParties.local_counts`).
    """

    name: str
    size: int


@dataclass
class _State:
    """One party's protocol secrets for one run; kept where the party lives."""

    local: LocalSet
    scalar: bytes  # secret scalar in [1, L) for this run
    perm: np.ndarray  # the owner's shuffle: sent position k holds distinct identifier perm[k]

    @classmethod
    def new(cls, local: LocalSet) -> _State:
        return cls(local=local, scalar=new_scalar(), perm=permutation(local.size))

    def info(self) -> SetInfo:
        return SetInfo(self.local.name, self.local.size)

    def hash_job(self, hkey: bytes) -> HashJob:
        enc = self.local.encodings
        return HashJob(self.scalar, hkey, [enc[i] for i in self.perm])

    def rows(self, idx: np.ndarray, sort: bool) -> np.ndarray:
        distinct = self.perm[np.asarray(idx, dtype=np.int64)]
        return self.local.first_rows[np.sort(distinct) if sort else distinct]


# --------------------------------------------------------------------------- helpers
def permutation(n: int) -> np.ndarray:
    """Uniform random permutation from the OS CSPRNG (numpy's generators are not one).

    Sorting 64-bit random keys gives a uniform permutation unless two keys tie, which
    happens with probability < n^2 / 2^65; the stable sort keeps even that case valid.
    """
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable")


def truncate(values: bytes) -> bytes:
    """Keep the first :data:`TAG_BYTES` bytes of every element (comparison tags)."""
    arr = np.frombuffer(values, dtype=np.uint8).reshape(-1, ELEMENT_BYTES)
    return arr[:, :TAG_BYTES].tobytes()


def _finish(values: bytes, cpu: float, shuffle: bool, cut: bool) -> tuple[bytes, float]:
    t = time.perf_counter()
    if shuffle:
        arr = np.frombuffer(values, dtype=np.uint8).reshape(-1, ELEMENT_BYTES)
        values = arr[permutation(arr.shape[0])].tobytes()
    if cut:
        values = truncate(values)
    return values, cpu + time.perf_counter() - t


# --------------------------------------------------------------------------- interface
class PSIParties(ABC):
    """The parties of one PSI run, seen from the protocol."""

    @abstractmethod
    def open(self, builds: dict[str, Callable[[pl.DataFrame], LocalSet]]) -> dict[str, SetInfo]:
        """Prepare every party's identifiers and draw its secrets; return the public counts."""

    @abstractmethod
    def first(self, hkeys: dict[str, bytes]) -> dict[str, tuple[bytes, float]]:
        """Every party hashes its (shuffled) identifiers to the group with ``hkey`` and blinds them."""

    @abstractmethod
    def blind(self, steps: Sequence[Step]) -> list[tuple[bytes, float]]:
        """Run one blinding step per entry (see :data:`Step`); ``(values, seconds)`` each."""

    @abstractmethod
    def local_counts(self) -> dict[str, tuple[int, int]] | None:
        """Missing and duplicate counts per party, or ``None`` for remote parties.

        ``{party: (missing, duplicates)}`` where the caller already holds every party's
        state (a simulation in this process); ``None`` when the parties live elsewhere:
        those counts never leave a remote party.
        """

    @abstractmethod
    def rows(self, name: str, idx: np.ndarray, *, sort: bool) -> np.ndarray:
        """Rows of party ``name`` behind positions ``idx`` of the set it sent (sorted if ``sort``)."""

    @abstractmethod
    def close(self) -> None:
        """Forget every party's secrets for this run (idempotent, also after an error)."""


class InProcessParties(PSIParties):
    """All parties in this process; each step's work runs as one batch on the worker pool."""

    def __init__(self, parties: Sequence[Party], executor: Executor) -> None:
        self._parties = {p.name: p for p in parties}
        self._executor = executor
        self._states: dict[str, _State] = {}

    def open(self, builds: dict[str, Callable[[pl.DataFrame], LocalSet]]) -> dict[str, SetInfo]:
        sets = [self._parties[n].compute(b) for n, b in builds.items()]  # validation first: nothing drawn yet
        self._states = {s.name: _State.new(s) for s in sets}
        return {n: st.info() for n, st in self._states.items()}

    def first(self, hkeys: dict[str, bytes]) -> dict[str, tuple[bytes, float]]:
        names = list(hkeys)
        try:
            outs = self._executor.run([self._states[n].hash_job(hkeys[n]) for n in names])
        except GroupElementError as exc:
            raise _own_hash_error(names[exc.job] if exc.job is not None else None) from exc
        return dict(zip(names, outs, strict=True))

    def blind(self, steps: Sequence[Step]) -> list[tuple[bytes, float]]:
        try:
            outs = self._executor.run([BlindJob(self._states[n].scalar, v) for n, v, _, _, _ in steps])
        except GroupElementError as exc:
            if exc.job is None:
                raise
            name, _, _, _, sender = steps[exc.job]
            raise _rejected(sender, name) from exc
        return [_finish(v, cpu, sh, cut) for (_, _, sh, cut, _), (v, cpu) in zip(steps, outs, strict=True)]

    def local_counts(self) -> dict[str, tuple[int, int]] | None:
        # Every party lives in this process: reading its state sends nothing.
        return {n: (st.local.n_missing, st.local.n_duplicates) for n, st in self._states.items()}

    def rows(self, name: str, idx: np.ndarray, *, sort: bool) -> np.ndarray:
        return self._states[name].rows(idx, sort)

    def close(self) -> None:
        for st in self._states.values():
            st.scalar = b""
        self._states = {}


class RemoteParties(PSIParties):
    """Parties elsewhere: secrets stay in each party's memory; one concurrent call per party and step.

    Parameters
    ----------
    parties : sequence of Party
        The run's parties (e.g. :class:`~fedbench.ray_backend.RayParty`).
    compute_each : callable
        ``compute_each([(party, fn), ...]) -> [result, ...]``, the backend's
        :meth:`~fedbench.backend.Backend.compute_each`.
    post : callable
        ``post(party, fn)``: run a clean-up call without waiting.
    workers : int, optional
        Processes each party uses for its group operations; default: the cores of its node.
    """

    def __init__(self, parties: Sequence[Party],
                 compute_each: Callable[[Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]]], list[Any]],
                 post: Callable[[Party, Callable[[pl.DataFrame], Any]], None], workers: int | None = None) -> None:
        self._parties = {p.name: p for p in parties}
        self._each = compute_each
        self._post = post
        self._workers = workers
        self._key = f"psi-{os.getpid()}-{next(_RUN_IDS)}-{secrets.token_hex(4)}"
        self._opened = False

    def _call(self, calls: list[tuple[str, Callable[[pl.DataFrame], Any]]]) -> list[Any]:
        return self._each([(self._parties[n], fn) for n, fn in calls])

    def open(self, builds: dict[str, Callable[[pl.DataFrame], LocalSet]]) -> dict[str, SetInfo]:
        self._opened = True  # even a failed open may have left some parties holding state
        infos = self._call([(n, partial(_open_in_party, key=self._key, build=b)) for n, b in builds.items()])
        return {i.name: i for i in infos}

    def first(self, hkeys: dict[str, bytes]) -> dict[str, tuple[bytes, float]]:
        names = list(hkeys)
        outs = self._call([(n, partial(_first_in_party, key=self._key, hkey=hkeys[n], workers=self._workers))
                           for n in names])
        return dict(zip(names, outs, strict=True))

    def blind(self, steps: Sequence[Step]) -> list[tuple[bytes, float]]:
        return self._call([(n, partial(_blind_in_party, key=self._key, values=v, shuffle=sh, cut=cut,
                                       workers=self._workers, sender=sender, me=n)) for n, v, sh, cut, sender in steps])

    def local_counts(self) -> dict[str, tuple[int, int]] | None:
        return None  # they stay in each party: no call asks for them

    def rows(self, name: str, idx: np.ndarray, *, sort: bool) -> np.ndarray:
        (out,) = self._call([(name, partial(_rows_in_party, key=self._key, idx=idx, sort=sort))])
        return out

    def close(self) -> None:
        if self._opened:
            for p in self._parties.values():
                self._post(p, partial(_close_in_party, key=self._key))
            self._opened = False


# --------------------------------------------------------------------------- inside a remote party
def _state(df: pl.DataFrame, key: str) -> _State:
    return recall_in_party(df, key=key, keep=True)


def _executor(workers: int | None) -> Executor:
    return Executor(workers if workers is not None else available_cores())


def _open_in_party(df: pl.DataFrame, *, key: str, build: Callable[[pl.DataFrame], LocalSet]) -> SetInfo:
    state = _State.new(build(df))
    remember_in_party(df, key=key, fn=lambda _df: state)
    return state.info()


def _first_in_party(df: pl.DataFrame, *, key: str, hkey: bytes, workers: int | None) -> tuple[bytes, float]:
    state = _state(df, key)
    try:
        ((values, cpu),) = _executor(workers).run([state.hash_job(hkey)])
    except GroupElementError as exc:
        raise _own_hash_error(state.local.name) from exc
    return values, cpu


def _blind_in_party(df: pl.DataFrame, *, key: str, values: bytes, shuffle: bool, cut: bool,
                    workers: int | None, sender: str, me: str) -> tuple[bytes, float]:
    try:
        ((out, cpu),) = _executor(workers).run([BlindJob(_state(df, key).scalar, values)])
    except GroupElementError as exc:
        raise _rejected(sender, me) from exc
    return _finish(out, cpu, shuffle, cut)


def _rows_in_party(df: pl.DataFrame, *, key: str, idx: np.ndarray, sort: bool) -> np.ndarray:
    return _state(df, key).rows(idx, sort)


def _close_in_party(df: pl.DataFrame, *, key: str) -> None:
    with contextlib.suppress(FedbenchError):  # a party whose preparation failed holds nothing
        recall_in_party(df, key=key).scalar = b""


def _rejected(sender: str, receiver: str) -> GroupElementError:
    return GroupElementError(
        f"party {sender!r} sent {receiver!r} a blinded set holding a value that is not the canonical "
        "u-coordinate of a point of Curve25519 of large order (twist point, small-order point or "
        f"non-canonical encoding); {receiver!r} refused to blind it and the run was abandoned",
        party=sender,
    )


def _own_hash_error(name: str | None) -> GroupElementError:
    who = f"party {name!r}" if name else "a party"
    return GroupElementError(
        f"{who}: libsodium/OpenSSL refused to blind a hashed identifier (the hash never yields a point of "
        "small order: an internal error); the run was abandoned",
        party=name,
    )
