"""Start and talk to OpenFHE engine processes (:mod:`fedbench.secagg.openfhe_worker`).

The OpenFHE wheel pip picks here (``openfhe==1.6.1.0.22.4``) carries an
extension for CPython 3.10, so it cannot be imported into fedbench's Python
(3.11+).  Its lattice work therefore runs in a separate CPython 3.10 process
per role and run, found by :func:`openfhe_python`.  Like the PSI workers
(:mod:`fedbench.psi._parallel`) these are plain subprocesses speaking
length-prefixed pickles over stdin/stdout, not a multiprocessing pool: a pool
would fork a process with live polars threads or re-run the user's script,
and it could not use another interpreter anyway.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from ..errors import FeatureUnavailableError, ProtocolError
from ..pipe_worker import PipeClosed, PipeWorker

__all__ = ["DEFAULT_VENV", "OPENFHE_REQUIREMENT", "Engine", "EngineError", "find_python310", "install_openfhe",
           "openfhe_python", "setup_instructions"]

#: The one pinned OpenFHE wheel (``.ci/run`` installs this same pin; keep them equal).
OPENFHE_REQUIREMENT = "openfhe==1.6.1.0.22.4"
#: Environment variable naming the interpreter that can ``import openfhe``.
ENV_VAR = "FEDBENCH_OPENFHE_PYTHON"

#: Where ``fedbench setup-openfhe`` (:func:`install_openfhe`) makes the interpreter; a discovery candidate.
DEFAULT_VENV = "~/.fedbench-openfhe"

_WORKER = str(Path(__file__).with_name("openfhe_worker.py"))
_found: dict[str, str | None] = {}
_lock = threading.Lock()


def setup_instructions() -> str:
    """How to make an OpenFHE interpreter, for error messages and docs."""
    return (f"fedbench setup-openfhe (or by hand: python3.10 -m venv {DEFAULT_VENV} && "
            f"{DEFAULT_VENV}/bin/pip install {OPENFHE_REQUIREMENT} && export {ENV_VAR}={DEFAULT_VENV}/bin/python)")


def find_python310() -> str | None:
    """A CPython 3.10 on this machine (``python3.10`` on ``PATH``, else pyenv's newest 3.10), or ``None``."""
    cands = [shutil.which("python3.10") or ""]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")), reverse=True)
    return next((c for c in cands if c and os.access(c, os.X_OK) and _is_python310(c)), None)


def _is_python310(python: str) -> bool:
    # A pyenv shim named python3.10 exists even when no 3.10 is selected, and then fails: run it.
    try:
        done = subprocess.run([python, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def install_openfhe(target: str = DEFAULT_VENV, *, python310: str | None = None) -> str:
    """Make a CPython 3.10 virtual environment with OpenFHE (the pinned wheel) and return its interpreter.

    Idempotent: an environment at ``target`` that already imports OpenFHE is kept.  The
    environment is a discovery candidate, so :func:`openfhe_python` finds it afterwards
    without ``$FEDBENCH_OPENFHE_PYTHON``.

    Parameters
    ----------
    target : str, default ``~/.fedbench-openfhe``
        Folder of the virtual environment.
    python310 : str, optional
        The CPython 3.10 to build it from (default: :func:`find_python310`).

    Returns
    -------
    str
        Path of the environment's interpreter.

    Raises
    ------
    FeatureUnavailableError
        No CPython 3.10 was found, or the environment could not be made (pip's last lines are quoted).
    """
    venv = Path(os.path.expanduser(target))
    python = str(venv / "bin" / "python")
    if os.path.exists(python) and _imports_openfhe(python):
        return python
    base = python310 or find_python310()
    if base is None:
        raise FeatureUnavailableError(
            "OpenFHE's wheel needs a CPython 3.10 and none was found (python3.10 on PATH or ~/.pyenv/versions/3.10*); "
            "install one (e.g. pyenv install 3.10), then run fedbench setup-openfhe again")
    for cmd in ([base, "-m", "venv", str(venv)],
                [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", OPENFHE_REQUIREMENT]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise FeatureUnavailableError(f"could not make the OpenFHE environment in {venv} ({tail})")
    if not _imports_openfhe(python):
        raise FeatureUnavailableError(f"the environment in {venv} was made but does not import openfhe")
    with _lock:
        _found.clear()  # a later openfhe_python() looks again and finds it
    return python


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
    out = [os.path.expanduser(f"{DEFAULT_VENV}/bin/python")]  # fedbench setup-openfhe's: tried first
    on_path = shutil.which("python3.10")
    if on_path:
        out.append(on_path)
    out += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")), reverse=True)
    return out


def openfhe_python() -> str:
    """The interpreter that runs OpenFHE engines (checked once per setting and cached).

    ``$FEDBENCH_OPENFHE_PYTHON`` if set, else ``~/.fedbench-openfhe/bin/python``
    (made by ``fedbench setup-openfhe``), ``python3.10`` on ``PATH`` or
    ``~/.pyenv/versions/3.10*/bin/python``, whichever first runs ``import openfhe``.

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
            "the secure-aggregation protocol 'ckks-multiparty' runs OpenFHE, whose wheel pip picks here needs "
            f"CPython 3.10 ({where}); set one up with: {setup_instructions()}; or use protocol='ckks' or 'paillier'")
    return found


class EngineError(ProtocolError):
    """An engine process failed or refused an operation (``died``: the process is gone)."""

    def __init__(self, message: str, *, died: bool = False) -> None:
        super().__init__(message)
        self.died = died


class Engine(PipeWorker):
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
        super().__init__([openfhe_python(), "-I", _WORKER], env)
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
        if self.pending is not None:
            raise EngineError(f"the OpenFHE engine of {self.role!r} still owes the answer to {self.pending!r}")
        try:
            self.send(op, args)
        except PipeClosed as exc:
            raise EngineError(f"the OpenFHE engine of {self.role!r} failed ({exc})", died=True) from None
        self.pending = op

    def receive(self) -> Any:
        """The answer to the last :meth:`submit`.

        Raises
        ------
        EngineError
            The engine refused (``died=False``) or is gone (``died=True``).
        """
        op, self.pending = self.pending, None
        try:
            ok, result = super().receive()
        except PipeClosed as exc:
            raise EngineError(f"the OpenFHE engine of {self.role!r} {exc}" if str(exc) == "exited" else
                              f"the OpenFHE engine of {self.role!r} failed ({exc})", died=True) from None
        if not ok:
            raise EngineError(f"the OpenFHE engine of {self.role!r} refused {op!r}: {result}")
        return result

    def close(self, *, kill: bool = False) -> None:
        """Stop the process (its secret key share goes with it); idempotent."""
        super().close(kill=kill)

    def wipe(self) -> None:
        """Alias of :meth:`close` (party state is wiped on forget)."""
        self.close()
