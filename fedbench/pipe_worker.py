"""A child process that answers length-prefixed pickled requests on its stdin/stdout, one at a time.

Used by the PSI worker pool (:mod:`fedbench.psi._parallel`) and the OpenFHE engines
(:mod:`fedbench.secagg.openfhe_engine`).  Plain subprocesses rather than a
multiprocessing pool: ``fork`` can deadlock a child of a process whose polars
thread pool is running, ``spawn`` re-runs the user's main script, and the OpenFHE
engines run under another interpreter.  Each frame is an 8-byte little-endian
length and a pickle: requests ``(id, op, args)``, replies ``(id, ok, result)``.
The child is the only peer of the parent and the reverse, so unpickling is safe.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PipeClosed", "PipeWorker"]


class PipeClosed(Exception):
    """The child process exited, broke its stream, or answered out of turn."""


class PipeWorker:
    """One child process speaking framed pickles; requests are answered strictly in turn.

    Parameters
    ----------
    argv : sequence of str
        Command line of the child.
    env : mapping of str to str
        Its environment.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(env))
        self.next_id = 0

    def send(self, op: str, args: tuple[Any, ...]) -> None:
        """Write one request without waiting for its answer.

        Raises
        ------
        PipeClosed
            The child's stdin is closed.
        """
        assert self.proc.stdin is not None
        self.next_id += 1
        data = pickle.dumps((self.next_id, op, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PipeClosed(type(exc).__name__) from None

    def receive(self) -> tuple[bool, Any]:
        """Read the answer to the last request: ``(ok, result)``.

        Raises
        ------
        PipeClosed
            The child exited, its stream broke, or it answered another request.
        """
        assert self.proc.stdout is not None
        try:
            head = self.proc.stdout.read(8)
            if len(head) < 8:
                raise PipeClosed("exited")
            (n,) = struct.unpack("<Q", head)
            task_id, ok, result = pickle.loads(self.proc.stdout.read(n))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise PipeClosed(type(exc).__name__) from None
        if task_id != self.next_id:
            raise PipeClosed("answered out of turn")
        return ok, result

    def close(self, *, kill: bool = False) -> None:
        """Stop the child: end of input (its loop returns), or ``kill``; idempotent."""
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError):
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None and not f.closed:
                with contextlib.suppress(OSError):
                    f.close()
