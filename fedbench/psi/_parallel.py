"""Run PSI kernels on all cores with a persistent pool of worker processes.

A blinding costs ~40 microseconds per element (X25519 plus a Legendre symbol to
validate the input) and neither ``cryptography`` nor PyNaCl releases the GIL for
so short a call (measured: 2 threads give 1.2x, 2 processes 1.9x), so the
protocol uses processes.  The pool is created on first use, kept for later runs
(a notebook intersects many times) and stopped at
exit.

The workers are plain ``python -c`` subprocesses speaking length-prefixed pickles
over their stdin/stdout, not a :class:`~concurrent.futures.ProcessPoolExecutor`:
``fork`` can deadlock a child of a process whose polars thread pool is running,
and ``spawn``/``forkserver`` re-execute the user's main script in every worker,
which breaks (or silently re-runs) a script that calls fedbench without an
``if __name__ == "__main__"`` guard.  Our workers load only the kernel module
(hashlib and PyNaCl) and run nothing of the caller's.

Work is submitted as *batches of jobs*: every job of one protocol step (say,
each party blinding the set it just received) is cut into chunks and all chunks
are queued at once, so both cores stay busy even when one party's set is much
smaller than another's.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from ..pipe_worker import PipeClosed, PipeWorker
from . import _kernels

__all__ = ["BlindJob", "Executor", "GroupElementError", "HashJob", "available_cores", "shutdown_pool"]

#: Below this many group operations in a step, the pool's overhead (pickling,
#: scheduling) outweighs the gain; run in the calling process.
PARALLEL_MIN_OPS = 4096

_MIN_CHUNK = 1024
_MAX_CHUNK = 2048

# The worker loads the kernel module from its file, not through the fedbench package:
# the package imports polars, numpy and the rest of fedbench, which a worker never
# needs (a worker then starts in ~0.1 s and holds ~20 MB instead of ~0.5 s / 100+ MB).
_BOOT = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('fedbench_psi_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s)\n"
    "s.loader.exec_module(m)\n"
    "m.serve()\n"
)


def available_cores() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


class GroupElementError(ProtocolError):
    """A group element was rejected: not the canonical u-coordinate of a point of Curve25519 of large order.

    Parameters
    ----------
    message : str
        Explanation; names the party that sent the element when known.
    party : str or None
        The party that sent the rejected element (``None`` for the party's own hash).
    job : int or None
        Index of the failing job in the batch given to :meth:`Executor.run`.
    """

    def __init__(self, message: str, *, party: str | None = None, job: int | None = None) -> None:
        super().__init__(message)
        self.party = party
        self.job = job

    def __reduce__(self) -> Any:  # keyword-only arguments: pickle (Ray) needs help
        return (_rebuild_group_element_error, (str(self), self.party, self.job))


def _rebuild_group_element_error(message: str, party: str | None, job: int | None) -> GroupElementError:
    return GroupElementError(message, party=party, job=job)


class _WorkerDied(RuntimeError):
    pass


class _TaskFailed(Exception):
    def __init__(self, index: int, exc: ValueError) -> None:
        super().__init__(str(exc))
        self.index = index
        self.exc = exc


class _Worker(PipeWorker):
    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker must import the same PyNaCl as this process, wherever it came from.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        super().__init__([sys.executable, "-c", _BOOT, _kernels.__file__], env)

    def call(self, op: str, args: tuple[Any, ...]) -> Any:
        try:
            self.send(op, args)
            ok, result = self.receive()
        except PipeClosed as exc:
            raise _WorkerDied(f"PSI worker failed: {exc}") from exc
        if not ok:
            bad, message = result
            raise (_kernels.BadElementError if bad else ValueError)(message)
        return result


class _Pool:
    def __init__(self, workers: int) -> None:
        self.workers = [_Worker() for _ in range(workers)]

    def map(self, tasks: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run tasks on the workers (one thread per worker feeds it) and return results in order."""
        results: list[Any] = [None] * len(tasks)
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(tasks)):
            todo.put(i)
        errors: list[BaseException] = []

        def feed(w: _Worker) -> None:
            while not errors:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = w.call(*tasks[i])
                except ValueError as exc:  # the task failed, the worker is fine
                    errors.append(_TaskFailed(i, exc))
                    return
                except BaseException as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def close(self, *, kill: bool = False) -> None:
        for w in self.workers:
            w.close(kill=kill)


_pool: _Pool | None = None
_lock = threading.Lock()


def _get_pool(workers: int) -> _Pool:
    global _pool
    if _pool is None or len(_pool.workers) != workers or any(w.proc.poll() is not None for w in _pool.workers):
        if _pool is not None:
            _pool.close(kill=True)
        _pool = _Pool(workers)
    return _pool


def _discard_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.close(kill=True)
    _pool = None


def shutdown_pool() -> None:
    """Stop the PSI worker processes (they restart on the next large run)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
        _pool = None


atexit.register(shutdown_pool)


@dataclass(frozen=True)
class HashJob:
    """Hash a party's identifier encodings to the group and blind them."""

    scalar: bytes
    hkey: bytes
    items: list[bytes]

    @property
    def size(self) -> int:
        """Number of group operations."""
        return len(self.items)


@dataclass(frozen=True)
class BlindJob:
    """Blind concatenated 32-byte elements with a party's scalar."""

    scalar: bytes
    values: bytes

    @property
    def size(self) -> int:
        """Number of group operations."""
        return len(self.values) // _kernels.ELEMENT_BYTES


Job = HashJob | BlindJob


class Executor:
    """Runs batches of :class:`HashJob` / :class:`BlindJob` serially or on the pool.

    Parameters
    ----------
    workers : int
        Number of worker processes; 1 runs everything in the calling process.
    force : bool, default False
        Use the pool even for small batches (``workers`` was given explicitly).
    """

    def __init__(self, workers: int, *, force: bool = False) -> None:
        self.workers = workers
        self.force = force

    def run(self, jobs: list[Job]) -> list[tuple[bytes, float]]:
        """Run every job and return ``(output, cpu_seconds)`` per job, in order.

        Raises
        ------
        GroupElementError
            If a group element is rejected; ``job`` says which job held it.
        ProtocolError
            If a worker dies.
        """
        total = sum(j.size for j in jobs)
        if self.workers <= 1 or (not self.force and total < PARALLEL_MIN_OPS):
            out = []
            for k, j in enumerate(jobs):
                try:
                    out.append(self._run_one(j))
                except ValueError as exc:
                    raise _failure(exc, k) from exc
            return out
        return self._run_pool(jobs, total)

    @staticmethod
    def _run_one(job: Job) -> tuple[bytes, float]:
        if isinstance(job, HashJob):
            return _kernels.hash_and_blind(job.scalar, job.hkey, job.items)
        return _kernels.blind(job.scalar, job.values)

    def _run_pool(self, jobs: list[Job], total: int) -> list[tuple[bytes, float]]:
        # ~8 chunks per worker even out the tail; bounded so that one chunk stays well under
        # a tenth of a second of work (2048 elements at ~50 us): the last chunk of a step leaves
        # the other core idle for at most that long.
        chunk = min(_MAX_CHUNK, max(_MIN_CHUNK, total // (8 * self.workers) + 1))
        tasks: list[tuple[str, tuple[Any, ...]]] = []
        spans: list[tuple[int, int]] = []
        for job in jobs:
            start = len(tasks)
            if isinstance(job, HashJob):
                for s in range(0, len(job.items), chunk):
                    tasks.append(("hash_and_blind", (job.scalar, job.hkey, job.items[s : s + chunk])))
            else:
                step = chunk * _kernels.ELEMENT_BYTES
                for s in range(0, len(job.values), step):
                    tasks.append(("blind", (job.scalar, job.values[s : s + step])))
            spans.append((start, len(tasks)))
        with _lock:  # one batch at a time: workers answer strictly in turn
            pool = _get_pool(self.workers)
            try:
                parts = pool.map(tasks)
            except _TaskFailed as failed:
                k = next(k for k, (a, b) in enumerate(spans) if a <= failed.index < b)
                raise _failure(failed.exc, k) from failed.exc
            except BaseException as exc:
                # A dead worker, or an interrupt that left replies in flight: start afresh.
                _discard_pool()
                if isinstance(exc, _WorkerDied):
                    raise ProtocolError(f"a PSI worker process failed ({exc}); the run was abandoned") from exc
                raise
        return [(b"".join(p[0] for p in parts[a:b]), sum(p[1] for p in parts[a:b])) for a, b in spans]


def _failure(exc: ValueError, job: int) -> ProtocolError:
    if isinstance(exc, _kernels.BadElementError):
        return GroupElementError(f"PSI group operation failed: {exc}", job=job)
    return ProtocolError(f"PSI group operation failed: {exc}")
