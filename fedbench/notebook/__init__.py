"""Jupyter front-end of fedbench: the ``%%federate`` and ``%fedbench`` magics.

Load with ``%load_ext fedbench``.  This package imports IPython only when the
extension is loaded, so that ``import fedbench`` stays fast:

* :mod:`.config`: the ``Fedbench`` settings (``%config Fedbench.key_bits = 2048``);
* :mod:`.command`: parsing of one magic invocation into a checked command;
* :mod:`.registry`: the long-lived state (federations by name, budgets, live dashboards);
* :mod:`.cards`: result objects the magics hand back (text and HTML reprs);
* :mod:`.magics`: the ``Magics`` class itself.
"""

from __future__ import annotations

from typing import Any

from .registry import REGISTRY, FederationRegistry, current_federation

__all__ = [
    "REGISTRY",
    "FederationRegistry",
    "current_federation",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython`` (idempotent: reloading replaces the previous instance)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics from ``ipython``; federations stay in the registry."""
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
