"""Execution backends: where party-local work and heavy crypto run.

The interface is deliberately narrow so that protocols never care where they
run:

* :meth:`Backend.run_in_parties` runs a function inside each party, where its
  rows live, and returns what the function returns: for secure aggregation that
  is the party's *ciphertexts*, so nothing else ever leaves the party;
* :meth:`Backend.compute_each` runs one function per party (each party's own
  protocol step, e.g. blinding the set it just received) and
  :meth:`Backend.settle` does the same but reports each party's outcome, error
  and latency instead of raising (training rounds drop failed parties);
  on a cluster the calls of one step run concurrently;
* :meth:`Backend.map` runs a picklable, stateless function over a list of
  items on the backend's workers, and :meth:`Backend.map_heavy` does the same
  for large CPU-bound crypto batches (encryption and decryption chunks) on
  every core available.

:class:`InProcessBackend` runs party-local work in the calling process; its
:meth:`~InProcessBackend.map_heavy` spreads large crypto batches over a
process pool shared by every in-process backend, started on first use and
reused (small batches never start it).
:class:`ProcessPoolBackend` keeps party data in the calling process (the
simulation's "party side") and spreads ``map`` over a pool of worker processes,
one per core.  A Ray backend fits the same two calls: actors hold the parties
and ``map`` fans out tasks.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing as mp
import os
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError, PartyTimeoutError

if TYPE_CHECKING:
    import polars as pl

    from .party import Party

__all__ = [
    "BACKENDS",
    "DEFAULT_LOCAL_TIMEOUT",
    "PLUGIN_BACKENDS",
    "Backend",
    "InProcessBackend",
    "ProcessPoolBackend",
    "Settled",
    "check_local_timeout",
    "get_backend",
    "run_local_function",
    "shutdown_shared_pool",
]

#: Seconds a user's local function may run inside a party before the call gives up on it.
DEFAULT_LOCAL_TIMEOUT = 300.0

A = TypeVar("A")
R = TypeVar("R")


@dataclass
class Settled:
    """What one party's call came to (see :meth:`Backend.settle`).

    Attributes
    ----------
    value : object
        The call's result (``None`` if it failed).
    error : Exception, optional
        The exception the call raised, or :class:`~fedbench.errors.PartyUnavailableError`.
    seconds : float
        Wall time from submitting the call until its answer (or until it was given up).
    timed_out : bool
        The backend stopped waiting for the party after ``timeout`` seconds.
    """

    value: Any = None
    error: Exception | None = None
    seconds: float = 0.0
    timed_out: bool = False


class Backend(ABC):
    """Where protocols run party-local and CPU-heavy work."""

    #: Short name shown in results and settings.
    name: str = "abstract"

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many items :meth:`map` processes at once."""

    def make_party(self, name: str, data: Any, *, format: str | None = None, **read_options: Any) -> Party:
        """Create the party where its data lives (here: load it in this process)."""
        from .party import Party

        return Party(name, data, format=format, **read_options)

    def release_party(self, party: Party) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds for a party that left the federation (here: nothing)."""

    def compute(self, parties: Sequence[Party], fn: Callable[[pl.DataFrame], R]) -> list[R]:
        """Run ``fn(df)`` on each party's rows, inside the party, in order."""
        return [p.compute(fn) for p in parties]

    def run_in_parties(self, parties: Sequence[Party], fn: Callable[..., R], *args: Any) -> list[R]:
        """Run ``fn(party_name, df, mapper, *args)`` inside each party, in order.

        ``mapper`` is a ``map(fn, items)`` the party may use for CPU-heavy work
        (this backend's :meth:`map_heavy` here; an actor's own cores on a cluster).
        """
        return [p.compute(partial(_bind_party, fn, p.name, self.map_heavy, args)) for p in parties]

    def compute_each(self, calls: Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]]) -> list[Any]:
        """Run each ``fn(df)`` inside its party (one protocol step of every party); raise the first error.

        Here the calls run one after the other and stop at the first error.
        """
        return [p.compute(fn) for p, fn in calls]

    def settle(self, calls: Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]], *,
               timeout: float | None = None) -> list[Settled]:
        """Run each ``fn(df)`` inside its party and report every outcome instead of raising.

        Parameters
        ----------
        calls : sequence of (Party, callable)
            One call per party.
        timeout : float, optional
            Seconds after which a backend that can stop waiting (Ray) gives a
            party up (``timed_out=True``); here calls cannot be interrupted, so
            ``seconds`` tells the caller how long each one took.
        """
        out: list[Settled] = []
        for p, fn in calls:
            t0 = time.perf_counter()
            try:
                out.append(Settled(value=p.compute(fn), seconds=time.perf_counter() - t0))
            except Exception as exc:  # reported, not raised: the caller decides (e.g. a dropout)
                out.append(Settled(error=exc, seconds=time.perf_counter() - t0))
        return out

    def post(self, party: Party, fn: Callable[[pl.DataFrame], Any]) -> None:
        """Run ``fn(df)`` inside the party without waiting where possible, ignoring its result and errors.

        Used for clean-up (forgetting a late result a party still keeps).
        """
        with contextlib.suppress(Exception):
            party.compute(fn)

    @abstractmethod
    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        """Apply a picklable top-level function to every item, results in order."""

    @property
    def heavy_workers(self) -> int:
        """How many items :meth:`map_heavy` processes at once (default: :attr:`workers`)."""
        return self.workers

    def map_heavy(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        """Like :meth:`map`, for large CPU-bound crypto batches; a single item runs in the caller.

        Callers pass one item when the batch is too small to be worth a
        dispatch (see :func:`fedbench.secagg.party_contribution`).
        """
        if len(items) <= 1:
            return [fn(x) for x in items]
        return self.map(fn, items)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release workers (idempotent)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} workers={self.workers}>"


class InProcessBackend(Backend):
    """Run party-local work in the calling process (the default); large crypto batches use every core.

    Parameters
    ----------
    parallel : bool, default True
        Let :meth:`map_heavy` (large encryption and decryption batches of a
        secure sum) run on a process pool with one worker per usable core.
        The pool is shared by every in-process backend, starts on the first
        large batch (that first call pays its start-up, about 1 s plus each
        worker's fixed-base table) and is reused; small batches never start
        it.  ``False`` keeps everything in the calling process.

    Notes
    -----
    The pool uses ``forkserver`` (``spawn`` where unavailable).  In a script
    run as ``python script.py``, keep the top level behind
    ``if __name__ == "__main__":`` as :mod:`multiprocessing` requires; if the
    pool cannot start or breaks, the batch runs in the calling process and a
    :class:`RuntimeWarning` says so once.
    """

    name = "inprocess"

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = bool(parallel)

    @property
    def workers(self) -> int:
        """Always one: :meth:`map` and party-local work run in the calling process."""
        return 1

    @property
    def heavy_workers(self) -> int:
        """Usable cores when ``parallel`` (and more than one core), else one."""
        return _usable_cores() if self.parallel and not _SHARED["broken"] else 1

    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        """Apply ``fn`` sequentially."""
        return [fn(x) for x in items]

    def map_heavy(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        """Apply ``fn`` on the shared process pool (a single item, or ``parallel=False``: in the caller)."""
        if len(items) <= 1 or self.heavy_workers <= 1:
            return [fn(x) for x in items]
        try:
            return list(_shared_pool(self.heavy_workers).map(fn, items))
        except (BrokenProcessPool, OSError) as exc:
            # A pool that cannot start (unguarded __main__, no /dev/shm, ...) must not fail the protocol: the
            # work is pure and idempotent, so it is redone here.
            _SHARED["broken"] = True
            shutdown_shared_pool()
            warnings.warn(f"fedbench: the crypto process pool is unavailable ({type(exc).__name__}); "
                          "encrypting and decrypting in this process from now on", RuntimeWarning, stacklevel=2)
            return [fn(x) for x in items]


#: The process pool shared by in-process backends (``map_heavy``), its size, and whether it failed.
_SHARED: dict[str, Any] = {"pool": None, "workers": 0, "broken": False}
_SHARED_LOCK = threading.Lock()


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    with _SHARED_LOCK:
        if _SHARED["pool"] is None or _SHARED["workers"] != workers:
            if _SHARED["pool"] is not None:
                _SHARED["pool"].shutdown(wait=False, cancel_futures=True)
            _SHARED["pool"] = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
            _SHARED["workers"] = workers
        return _SHARED["pool"]


def shutdown_shared_pool() -> None:
    """Stop the crypto process pool shared by in-process backends (it restarts on the next large batch)."""
    with _SHARED_LOCK:
        pool, _SHARED["pool"], _SHARED["workers"] = _SHARED["pool"], None, 0
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, cancel_futures=True)


def _pool_context() -> Any:
    # Never fork: polars and OpenMP keep threads that a fork would copy mid-flight.
    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


class ProcessPoolBackend(Backend):
    """Spread encryption and decryption over a pool of worker processes.

    Parameters
    ----------
    workers : int, optional
        Number of processes; defaults to the number of usable cores.

    Notes
    -----
    Workers start with ``forkserver`` (``spawn`` where unavailable), never
    ``fork``: polars and OpenMP keep threads that a fork would copy mid-flight.
    The pool starts on first use and is reused until :meth:`close`.
    """

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        n = workers if workers is not None else _usable_cores()
        if not isinstance(n, int) or n < 1:
            raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
        self._workers = n
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        """Number of worker processes."""
        return self._workers

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=_pool_context())
        return self._pool

    def map(self, fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
        """Apply ``fn`` over the pool; a single item runs in-process."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        return list(self._executor().map(fn, items))

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:  # best effort; explicit close() is preferred
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn modules down
            self.close()


BACKENDS: dict[str, type[Backend]] = {"inprocess": InProcessBackend, "process": ProcessPoolBackend}

#: Backends that build on this module, named by ``"module:class"`` and loaded on first use, as
#: matplotlib loads its backends: this module never depends on them, and ``import fedbench`` does
#: not load them.
PLUGIN_BACKENDS: dict[str, str] = {"ray": "fedbench.ray_backend:RayBackend"}


def _load_plugin(path: str) -> type[Backend]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigurationError(f"{path!r} does not name a Backend subclass")
    return cls


def get_backend(spec: str | Backend | None) -> Backend:
    """Return a backend from a name (``"inprocess"``, ``"process"``, ``"ray"``) or an instance.

    Parameters
    ----------
    spec : str, Backend or None
        A backend name, an instance (returned as is), or ``None`` for a new
        :class:`InProcessBackend`.

    Returns
    -------
    Backend

    Raises
    ------
    ConfigurationError
        Unknown name (the message lists the known ones).
    """
    if spec is None:
        return InProcessBackend()
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str) and spec in PLUGIN_BACKENDS:
        return _load_plugin(PLUGIN_BACKENDS[spec])()
    try:
        return BACKENDS[spec]()
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown backend {spec!r}; choose one of {sorted([*BACKENDS, *PLUGIN_BACKENDS])} "
            "or pass a Backend instance"
        ) from None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _bind_party(fn: Callable[..., R], name: str, mapper: Callable[..., Any], args: tuple[Any, ...],
                df: pl.DataFrame) -> R:
    return fn(name, df, mapper, *args)


def _identity(x: Any) -> Any:  # used by tests to exercise the pool
    return x


def check_local_timeout(timeout: float | None) -> float | None:
    """Validate a ``local_timeout``: a positive finite number of seconds, or ``None`` (wait forever)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError(f"local_timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def run_local_function(df: pl.DataFrame, *, fn: Callable[[pl.DataFrame], R], timeout: float | None) -> R:
    """Run a user's local function inside the party on a copy of its rows, with a time limit.

    The function gets ``df.clone()`` (cheap: polars shares the Arrow buffers
    copy-on-write), so dropping, renaming or replacing columns cannot change
    the party's data.  It runs in a daemon thread; after ``timeout`` seconds
    the party gives up with :class:`~fedbench.errors.PartyTimeoutError`.

    Notes
    -----
    A Python thread cannot be killed: a function that never returns keeps
    running in the background (its result is discarded) until the process
    exits; the federation stays usable meanwhile.  On the Ray backend the
    backend's own ``timeout`` also applies, whichever is shorter.
    """
    copy = df.clone()
    if timeout is None:
        return fn(copy)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(copy)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="fedbench-local-function", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PartyTimeoutError(
            f"the local function did not finish within local_timeout={timeout:g} s; it was abandoned "
            "(it may still run in the background, its result is discarded)"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]
