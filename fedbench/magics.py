"""IPython extension entry points: ``%load_ext fedbench`` registers ``%%federate`` and ``%fedbench``.

The implementation lives in :mod:`fedbench.notebook`; this thin module keeps
the documented names (``fedbench.magics.load_ipython_extension``,
``fedbench.magics.current_federation``) without importing IPython until the
extension is loaded.
"""

from __future__ import annotations

from .notebook import REGISTRY, current_federation, load_ipython_extension, unload_ipython_extension

__all__ = ["REGISTRY", "current_federation", "load_ipython_extension", "unload_ipython_extension"]
