"""Which optional protocol modules this install has (PSI, learning, DP), checked without importing them.

PSI, federated learning and privacy budgets are built in their own
subpackages; the magics and dashboards wire into each one only when it exists,
and otherwise say so in one line instead of failing with a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ..errors import FeatureUnavailableError

__all__ = ["FEATURES", "available", "require"]

#: Feature name -> (module, what it gives, in words).
FEATURES: dict[str, tuple[str, str]] = {
    "psi": ("fedbench.psi", "private set intersection"),
    "learn": ("fedbench.learn", "federated learning"),
    "dp": ("fedbench.dp", "differential privacy budgets"),
}


def available(feature: str) -> bool:
    """Whether the module of ``feature`` is present (found, not imported: importing dp takes ~1 s)."""
    module = FEATURES[feature][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(feature: str) -> ModuleType:
    """Import and return the module of ``feature``.

    Raises
    ------
    FeatureUnavailableError
        The module is missing, or failed to import (the message gives the cause).
    """
    module, what = FEATURES[feature]
    if not available(feature):
        raise FeatureUnavailableError(f"{what} is not available in this fedbench install yet ({module} is missing)")
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a module under construction may fail in any way; say which, in one line
        raise FeatureUnavailableError(
            f"{what} is not usable: importing {module} failed with {type(exc).__name__}: {exc}"
        ) from exc
