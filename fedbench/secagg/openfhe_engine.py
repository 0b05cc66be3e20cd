"""Start and talk to OpenFHE engine processes (:mod:`fedbench.secagg.openfhe_worker`).

OpenFHE's only wheel pip installs here (``openfhe==1.6.1.0.22.4``) carries an
extension for CPython 3.10, so it cannot be imported into fedbench's Python
(3.11+).  Its lattice work therefore runs in a separate CPython 3.10 process
per role and run, found by :func:`openfhe_python`.  Like the PSI workers
(:mod:`fedbench.psi._parallel`) these are plain subprocesses speaking
length-prefixed pickles over stdin/stdout, not a multiprocessing pool: a pool
would fork a process with live polars threads or re-run the user's script,
and it could not use another interpreter anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

from ..errors import FeatureUnavailableError, ProtocolError

__all__ = ["OPENFHE_REQUIREMENT", "Engine", "EngineError", "openfhe_python", "setup_instructions"]

#: The one pinned OpenFHE wheel (``.ci/run`` installs this same pin; keep them equal).
OPENFHE_REQUIREMENT = "openfhe==1.6.1.0.22.4"
#: Environment variable naming the interpreter that can ``import openfhe``.
ENV_VAR = "FEDBENCH_OPENFHE_PYTHON"

_WORKER = str(Path(__file__).with_name("openfhe_worker.py"))
_found: dict[str, str | None] = {}
_lock = threading.Lock()


def setup_instructions() -> str:
    """How to make an OpenFHE interpreter, for error messages and docs."""
    return (f"python3.10 -m venv ~/.fedbench-openfhe && ~/.fedbench-openfhe/bin/pip install {OPENFHE_REQUIREMENT} "
            f"&& export {ENV_VAR}=~/.fedbench-openfhe/bin/python")


def _imports_openfhe(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import openfhe"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _candidates() -> list[str]:
    env = os.environ.get(ENV_VAR)
    if env:
        return [os.path.expanduser(env)]  # an explicit choice is the only one tried
    out = []
    on_path = shutil.which("python3.10")
    if on_path:
        out.append(on_path)
    out += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")), reverse=True)
    out.append(os.path.expanduser("~/.fedbench-openfhe/bin/python"))
    return out


def openfhe_python() -> str:
    """The interpreter that runs OpenFHE engines (checked once per setting and cached).

    ``$FEDBENCH_OPENFHE_PYTHON`` if set, else ``python3.10`` on ``PATH``,
    ``~/.pyenv/versions/3.10*/bin/python`` or ``~/.fedbench-openfhe/bin/python``,
    whichever first runs ``import openfhe``.

    Raises
    ------
    FeatureUnavailableError
        No candidate imports OpenFHE; the message says how to set one up.
    """
    key = os.environ.get(ENV_VAR, "")
    with _lock:
        if key not in _found:
            _found[key] = next((p for p in _candidates() if os.path.exists(p) and _imports_openfhe(p)), None)
        found = _found[key]
    if found is None:
        where = f"{ENV_VAR}={key!r} does not import openfhe" if key else "no Python 3.10 with openfhe was found"
        raise FeatureUnavailableError(
            "the secure-aggregation protocol 'ckks-multiparty' runs OpenFHE, whose only wheel needs CPython 3.10 "
            f"({where}); set one up with: {setup_instructions()}; or use protocol='ckks' or 'paillier'")
    return found


class EngineError(ProtocolError):
    """An engine process failed or refused an operation (``died``: the process is gone)."""

    def __init__(self, message: str, *, died: bool = False) -> None:
        super().__init__(message)
        self.died = died


class Engine:
    """One OpenFHE engine process (one role of one run); stop it with :meth:`close`.

    Parameters
    ----------
    role : str
        Party name or ``"aggregator"``, for error messages.
    """

    def __init__(self, role: str) -> None:
        self.role = role
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the 3.10 interpreter must not pick up fedbench's 3.11 packages
        # One OpenMP thread per engine: parties' engines already run side by side, and OpenFHE's default
        # (a thread per core) made encryption 13x slower on a loaded two-core machine (measured, 69 vs 5 ms).
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([openfhe_python(), "-I", _WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.next_id = 0
        self.pending: str | None = None

    def call(self, op: str, *args: Any) -> Any:
        """Run ``op`` in the engine and return its result (:meth:`submit` then :meth:`receive`).

        Raises
        ------
        EngineError
            The engine refused (``died=False``) or is gone (``died=True``).
        """
        self.submit(op, *args)
        return self.receive()

    def submit(self, op: str, *args: Any) -> None:
        """Send ``op`` without waiting, so that several engines (parties) compute at once.

        Every submit must be followed by one :meth:`receive` before the next submit.
        """
        assert self.proc.stdin is not None
        if self.pending is not None:
            raise EngineError(f"the OpenFHE engine of {self.role!r} still owes the answer to {self.pending!r}")
        self.next_id += 1
        data = pickle.dumps((self.next_id, op, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise EngineError(f"the OpenFHE engine of {self.role!r} failed ({type(exc).__name__})",
                              died=True) from None
        self.pending = op

    def receive(self) -> Any:
        """The answer to the last :meth:`submit`.

        Raises
        ------
        EngineError
            The engine refused (``died=False``) or is gone (``died=True``).
        """
        assert self.proc.stdout is not None
        op, self.pending = self.pending, None
        try:
            head = self.proc.stdout.read(8)
            if len(head) < 8:
                raise EngineError(f"the OpenFHE engine of {self.role!r} exited", died=True)
            (n,) = struct.unpack("<Q", head)
            task_id, ok, result = pickle.loads(self.proc.stdout.read(n))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise EngineError(f"the OpenFHE engine of {self.role!r} failed ({type(exc).__name__})",
                              died=True) from None
        if task_id != self.next_id:
            raise EngineError(f"the OpenFHE engine of {self.role!r} answered out of turn", died=True)
        if not ok:
            raise EngineError(f"the OpenFHE engine of {self.role!r} refused {op!r}: {result}")
        return result

    def close(self) -> None:
        """Stop the process (its secret key share goes with it); idempotent."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the worker's loop returns
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def wipe(self) -> None:
        """Alias of :meth:`close` (party state is wiped on forget)."""
        self.close()
