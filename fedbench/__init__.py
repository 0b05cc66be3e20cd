"""fedbench: a Jupyter-native workbench for privacy-preserving collaborative analytics.

The public surface is small: :class:`Federation` (parties and protocols), the
result classes (every statistic returns a :class:`Result`), :class:`Privacy`,
and the exception hierarchy in :mod:`fedbench.errors`.  Heavy
modules are imported lazily so that ``import fedbench`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F403 - the error hierarchy is part of the top-level API
from .errors import __all__ as _error_names

__version__ = "0.1.0"

_LAZY = {
    "Federation": "fedbench.federation",
    "Party": "fedbench.party",
    "Transcript": "fedbench.transcript",
    "Message": "fedbench.transcript",
    "Result": "fedbench.results",
    "SecureSumResult": "fedbench.results",
    "HistogramResult": "fedbench.results",
    "Privacy": "fedbench.dp.privacy",
    "SchemaReport": "fedbench.schema",
    "THREAT_MODEL": "fedbench.results",
    "Encoding": "fedbench.crypto.packing",
    "InProcessBackend": "fedbench.backend",
    "ProcessPoolBackend": "fedbench.backend",
    "Backend": "fedbench.backend",
    "DPConfig": "fedbench.dp.config",
    "PrivacyBudget": "fedbench.dp.budget",
    "FitRun": "fedbench.learn.results",
    "PSIResult": "fedbench.psi.result",
}

#: Public subpackages reachable as attributes (``fb.dp.DPConfig``) without importing them first.
_SUBMODULES = ("attacks", "crypto", "dp", "learn", "psi", "samples", "widgets")

__all__ = [*_LAZY, *_SUBMODULES, *_error_names, "__version__"]

if TYPE_CHECKING:
    from . import attacks as attacks
    from . import crypto as crypto
    from . import dp as dp
    from . import learn as learn
    from . import psi as psi
    from . import samples as samples
    from . import widgets as widgets
    from .backend import Backend as Backend
    from .backend import InProcessBackend as InProcessBackend
    from .backend import ProcessPoolBackend as ProcessPoolBackend
    from .crypto.packing import Encoding as Encoding
    from .dp.budget import PrivacyBudget as PrivacyBudget
    from .dp.config import DPConfig as DPConfig
    from .dp.privacy import Privacy as Privacy
    from .federation import Federation as Federation
    from .learn.results import FitRun as FitRun
    from .party import Party as Party
    from .psi.result import PSIResult as PSIResult
    from .results import THREAT_MODEL as THREAT_MODEL
    from .results import HistogramResult as HistogramResult
    from .results import Result as Result
    from .results import SecureSumResult as SecureSumResult
    from .schema import SchemaReport as SchemaReport
    from .transcript import Message as Message
    from .transcript import Transcript as Transcript


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%%federate`` and ``%fedbench`` magics (``%load_ext fedbench``)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Counterpart of :func:`load_ipython_extension`."""
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        # importing the submodule binds it as an attribute of this package
        value: Any = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
