"""Ray backend: every party is a Ray actor that loads its own data where it lives.

When a federation outgrows one machine, or each institution runs its own node,
``Federation(backend="ray")`` keeps the same notebook: each party becomes an
actor created on the node that holds its data, reads its file *there*, and only
protocol messages (ciphertexts, blinded identifiers, public metadata) come back
to the driver.  Raw rows never enter Ray's object store: a party declared from
an in-memory DataFrame is refused, because its rows would have to be shipped.

Placement
    A node started with ``ray start --resources='{"party:cleveland": 1}'``
    advertises the resource ``party:cleveland``; the actor of party
    ``cleveland`` then asks for it and lands on exactly that node, and the
    party's path is resolved on that node's file system.  Parties without such
    a resource are placed by Ray (any node; they reserve no CPU), each in its
    own actor or, with ``max_actors``, sharing a small pool of actors (for
    simulating many parties on one machine).

Concurrency
    Every protocol step submits its calls to all parties before waiting for
    any (:meth:`RayBackend.compute_each`, :meth:`RayBackend.settle`), so the
    parties' local work, encryption and PSI blinding overlap.

Failure
    An actor that dies, or a call that exceeds ``timeout`` seconds, raises
    :class:`~fedbench.errors.PartyUnavailableError` naming the party; the driver
    never waits forever.  Federated training treats that as a dropped party.

Key holder
    :meth:`RayBackend.map` (decryption) runs on the driver's own cores, never on
    cluster nodes: the private key stays with the key holder.

Trust
    A Ray cluster is **one trust domain**: any member of the cluster (the
    driver, and every node that joined it) can submit code that runs on every
    other node, read any actor's memory and any file the Ray worker can read.
    Placing each party on its own node keeps rows off the wire and off other
    nodes' disks in normal operation, but it is not isolation against a
    curious or malicious cluster member.  Between organisations that do not
    trust each other, run one cluster per organisation and connect them only
    through the protocols' messages, which this backend does not yet do.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from .backend import Backend, InProcessBackend, ProcessPoolBackend, Settled, _bind_party
from .errors import BackendStartError, ConfigurationError, FedbenchError, LocalComputationError, PartyUnavailableError
from .party import Party, validate_party_name

__all__ = ["RayBackend", "RayParty"]

R = TypeVar("R")


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError("the Ray backend needs the 'ray' extra: pip install 'fedbench[ray]'") from None
    return ray


def _quietly(fn: Callable[[pl.DataFrame], Any]) -> Callable[[pl.DataFrame], None]:
    return partial(_run_quietly, fn)


def _run_quietly(fn: Callable[[pl.DataFrame], Any], df: pl.DataFrame) -> None:
    with contextlib.suppress(Exception):  # clean-up: nobody waits for the answer
        fn(df)


_KEYS = itertools.count()


def _start_failure(address: str | None, exc: BaseException) -> str:
    """One paragraph for a Ray start-up failure: what failed, Ray's first line, how to retry."""
    lines = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
    if address is None:
        return (f"could not start a local Ray instance ({reason}). This happens on a loaded machine (the node "
                "did not come up in time) or while an earlier instance is still shutting down. Retry: run "
                "the cell again; if it fails again, run `ray stop --force` in a terminal first, or use the "
                "default backend (leave out backend=\"ray\"), which needs no Ray at all.")
    return (f"could not connect to the Ray cluster at {address!r} ({reason}). Check that the head node "
            f"runs and is reachable (`ray status --address={address}`), then retry.")


class _PartyActor:
    """Holds a party's rows on the node that stores them (wrapped by ``ray.remote`` lazily).

    One actor holds one party, unless the backend was asked to share actors
    (``max_actors``): then it holds several parties' rows, each reachable only
    through the key of its own declaration, with its own party-side memory.
    """

    def __init__(self) -> None:
        # Keyed by a handle unique to each declaration: a party re-declared under its old name
        # (replace=True) may land on the same shared actor before the old one is dropped.
        self.parties: dict[str, Party] = {}

    def load(self, key: str, name: str, source: str, format: str | None,
             read_options: dict[str, Any]) -> tuple[int, dict[str, pl.DataType], str]:
        import ray

        party = Party(name, source, format=format, **read_options)
        self.parties[key] = party
        return party.n_rows, party.declared_schema, ray.get_runtime_context().get_node_id()

    def drop(self, key: str) -> None:
        self.parties.pop(key, None)

    def compute(self, key: str, fn: Callable[[pl.DataFrame], R]) -> R:
        return self.parties[key].compute(fn)

    def run(self, key: str, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        # Encryption inside the actor uses the actor's own process; parallelism comes from many actors.
        party = self.parties[key]
        mapper = InProcessBackend().map
        return party.compute(partial(_bind_party, fn, party.name, mapper, args))


class RayParty(Party):
    """A party whose rows live in a Ray actor; this object holds only public metadata.

    Attributes
    ----------
    actor : ray.actor.ActorHandle
        The actor holding the rows.
    node_id : str
        The Ray node the actor runs on.
    """

    remote = True

    def __init__(self, name: str, source: str, actor: Any, backend: RayBackend, key: str, shared: bool,
                 described: tuple[int, dict[str, pl.DataType], str]) -> None:
        # Deliberately no super().__init__: the rows are never loaded in the driver.
        self.name = name
        self.source = source
        self.actor = actor
        self.key = key
        self.shared = shared
        self._backend = backend
        self._n_rows, self._schema, self.node_id = described

    def submit(self, fn: Callable[[pl.DataFrame], Any]) -> Any:
        """Queue ``fn`` in the actor; returns the Ray object reference of its result."""
        return self.actor.compute.remote(self.key, fn)

    @property
    def n_rows(self) -> int:
        """Number of rows (declared by the actor)."""
        return self._n_rows

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self._schema)

    @property
    def declared_schema(self) -> dict[str, pl.DataType]:
        """Column name to polars dtype, as read by the actor (``schema`` adds the agreed types)."""
        return dict(self._schema)

    def compute(self, fn: Callable[[pl.DataFrame], R]) -> R:
        """Run ``fn`` inside the actor and return its (small) result."""
        return self._backend._get(self.name, self.submit(fn))

    def __repr__(self) -> str:
        return f"<RayParty {self.name!r}: {self.n_rows} rows x {len(self.columns)} columns on node {self.node_id[:8]}>"


class RayBackend(Backend):
    """Run each party as a Ray actor; decrypt on the driver's cores.

    Parameters
    ----------
    address : str, optional
        Address of an existing cluster (``"auto"``, ``"127.0.0.1:6379"``,
        ``"ray://host:10001"``).  ``None`` starts a local Ray instance.
    timeout : float, default 120
        Seconds any call to a party may take before it counts as unavailable.
    num_cpus : int, optional
        CPUs of a *local* instance (default: all).
    max_actors : int, optional
        Let parties that no node advertises share at most this many actors
        (assigned in turn), as Flower's simulation engine runs many virtual
        clients on a small pool of actors.  Each actor process costs ~190 MB,
        so simulating 100 parties on one machine needs sharing; calls to
        parties sharing an actor run one after the other.  Parties placed by a
        ``party:<name>`` resource always get their own actor.  Default: one
        actor per party.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, timeout: float = 120.0, num_cpus: int | None = None,
                 max_actors: int | None = None) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout!r}")
        if max_actors is not None and (isinstance(max_actors, bool) or not isinstance(max_actors, int)
                                       or max_actors < 1):
            raise ConfigurationError(f"max_actors must be a positive integer or None, got {max_actors!r}")
        self.address = address
        self.timeout = float(timeout)
        self.num_cpus = num_cpus
        self.max_actors = max_actors
        self._started = False
        self._local = ProcessPoolBackend()
        self._actors: dict[str, Any] = {}  # party key -> its actor (shared actors appear several times)
        self._pool: list[Any] = []  # the shared actors, when max_actors is set
        self._turn = 0

    # -- lifecycle ------------------------------------------------------------------
    def _init(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            # Ray's start-up warnings (token auth enabled by default, /dev/shm size...) would land in a red
            # stderr box on every notebook run; fedbench keeps Ray's secure defaults and shows errors only.
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                      "log_to_driver": False}
            if self.address is None:
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local simulation reports nothing
                if self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as exc:  # Ray raises bare Exception, TimeoutError, ConnectionError...
                with contextlib.suppress(Exception):  # a half-started instance must not block the retry
                    ray.shutdown()
                raise BackendStartError(_start_failure(self.address, exc), detail=str(exc)) from None
            self._started = True
        return ray

    @property
    def workers(self) -> int:
        """Cores of the driver used for the key holder's work."""
        return self._local.workers

    def close(self) -> None:
        """Kill this backend's actors and stop Ray if this backend started it."""
        self._local.close()
        ray = _ray()
        if ray.is_initialized():
            unique = {id(a): a for a in [*self._actors.values(), *self._pool]}
            for actor in unique.values():
                try:
                    ray.kill(actor)
                except Exception:  # already dead is fine
                    logging.getLogger(__name__).debug("actor already gone", exc_info=True)
            if self._started:
                ray.shutdown()
                self._started = False
        self._actors.clear()
        self._pool.clear()

    # -- parties ----------------------------------------------------------------------
    def make_party(self, name: str, data: Any, *, format: str | None = None, **read_options: Any) -> Party:
        """Create the party's actor on the node advertising ``party:<name>`` (if any) and load its file there.

        Raises
        ------
        ConfigurationError
            If ``data`` is an in-memory DataFrame (its rows would travel through the object store).
        """
        validate_party_name(name)
        if not isinstance(data, str | Path):
            raise ConfigurationError(
                f"party {name!r}: with the Ray backend declare parties by file path, resolved on the node "
                "that holds the data; an in-memory DataFrame would ship raw rows through Ray's object store"
            )
        ray = self._init()
        resource = f"party:{name}"
        options: dict[str, Any] = {"num_cpus": 0, "name": None, "max_restarts": 0}
        actor_cls = ray.remote(_PartyActor)
        shared = False
        if resource in ray.cluster_resources():
            # A small fraction pins the actor to that node while letting re-runs (a notebook cell run
            # twice, two federations) place their own actor for the same party there too.
            options["resources"] = {resource: 0.001}
            actor = actor_cls.options(**options).remote()
        elif self.max_actors is not None:
            shared = True
            if len(self._pool) < self.max_actors:
                self._pool.append(actor_cls.options(**options).remote())
            actor = self._pool[self._turn % len(self._pool)]
            self._turn += 1
        else:
            actor = actor_cls.options(**options).remote()
        key = f"{name}#{next(_KEYS)}"
        try:
            described = self._get(name, actor.load.remote(key, name, str(data), format, dict(read_options)))
        except FedbenchError:
            if not shared:
                ray.kill(actor)
            raise
        self._actors[key] = actor
        return RayParty(name, str(data), actor, self, key, shared, described)

    def release_party(self, party: Party) -> None:
        """Free a party's rows: kill its own actor, or drop it from the shared one."""
        if not isinstance(party, RayParty) or self._actors.pop(party.key, None) is None:
            return
        with contextlib.suppress(Exception):  # an actor already gone has nothing left to free
            if party.shared:
                party.actor.drop.remote(party.key)
            else:
                _ray().kill(party.actor)

    def _get(self, name: str, ref: Any) -> Any:
        ray = _ray()
        try:
            return ray.get(ref, timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            # Actor tasks cannot be force-cancelled; a queued call is dropped, a running one finishes unseen.
            with contextlib.suppress(Exception):
                ray.cancel(ref)
            raise PartyUnavailableError(
                f"party {name!r} did not answer within {self.timeout:g} s", party=name
            ) from None
        except ray.exceptions.RayActorError:
            raise PartyUnavailableError(
                f"party {name!r} is unavailable: its actor died (node lost or process killed)",
                party=name,
            ) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            err: BaseException
            if isinstance(cause, FedbenchError):
                err = cause  # the party's own error, already stripped of data by Party.compute
            else:
                # Anything else (a failure Party.compute did not wrap): its text and Ray's remote traceback
                # string may quote the party's data, so only the type name crosses.
                err = LocalComputationError(
                    f"party {name!r}: the call failed inside the party ({type(cause).__name__}); "
                    "details stay with the party",
                    party=name,
                    original_type=type(cause).__name__,
                )
        # Raised outside the handler: Ray's RayTaskError (which carries the remote traceback text)
        # must not ride along as __context__.
        err.__cause__ = None
        err.__context__ = None
        err.__suppress_context__ = True
        raise err

    def compute(self, parties: Sequence[Party], fn: Callable[[pl.DataFrame], R]) -> list[R]:
        """Run ``fn`` in every party's actor concurrently."""
        return self.compute_each([(p, fn) for p in parties])

    def run_in_parties(self, parties: Sequence[Party], fn: Callable[..., R], *args: Any) -> list[R]:
        """Run ``fn(name, df, mapper, *args)`` in every party's actor concurrently."""
        refs = {p.name: p.actor.run.remote(p.key, fn, args) for p in parties if isinstance(p, RayParty)}
        return [self._get(p.name, refs[p.name]) if p.name in refs
                else p.compute(partial(_bind_party, fn, p.name, self.map, args)) for p in parties]

    def compute_each(self, calls: Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]]) -> list[Any]:
        """Submit every call to its party's actor at once, then collect the answers in order.

        The first error (in call order) is raised once every answer is in or
        given up, so no call is left running unseen behind the error.
        """
        settled = self.settle(calls)
        for s in settled:
            if s.error is not None:
                raise s.error
        return [s.value for s in settled]

    def settle(self, calls: Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]], *,
               timeout: float | None = None) -> list[Settled]:
        """Run the calls concurrently; each answer is timed from submission, late parties are given up.

        A party still silent after ``timeout`` (at most the backend's own
        timeout) gets ``timed_out=True`` and a
        :class:`~fedbench.errors.PartyUnavailableError`; the driver stops waiting for it.
        """
        ray = _ray()
        limit = self.timeout if timeout is None else min(float(timeout), self.timeout)
        out = [Settled() for _ in calls]
        t0 = time.perf_counter()
        pending: dict[Any, int] = {}
        for i, (p, fn) in enumerate(calls):
            if isinstance(p, RayParty):
                pending[p.submit(fn)] = i
        for i, (p, fn) in enumerate(calls):  # a party living in the driver (none by default) runs here
            if not isinstance(p, RayParty):
                out[i] = super().settle([(p, fn)])[0]
        while pending:
            left = limit - (time.perf_counter() - t0)
            if left <= 0:
                break
            done, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            now = time.perf_counter() - t0
            for ref in done:
                i = pending.pop(ref)
                out[i].seconds = now
                try:
                    out[i].value = self._get(calls[i][0].name, ref)
                except Exception as exc:  # reported per party; compute_each re-raises
                    out[i].error = exc
        for ref, i in pending.items():
            with contextlib.suppress(Exception):  # a queued call is dropped; a running one finishes unseen
                ray.cancel(ref)
            name = calls[i][0].name
            out[i] = Settled(error=PartyUnavailableError(f"party {name!r} did not answer within {limit:g} s",
                                                         party=name), seconds=limit, timed_out=True)
        return out

    def post(self, party: Party, fn: Callable[[pl.DataFrame], Any]) -> None:
        """Queue ``fn`` in the party's actor (after any call still running there) and do not wait."""
        if isinstance(party, RayParty):
            with contextlib.suppress(Exception):
                party.submit(_quietly(fn))
        else:
            super().post(party, fn)

    def map(self, fn: Callable[[Any], R], items: Sequence[Any]) -> list[R]:
        """The driver's (key holder's) own cores: a local process pool."""
        return self._local.map(fn, items)

    def __repr__(self) -> str:
        return f"<RayBackend address={self.address or 'local'} parties={len(self._actors)}>"
