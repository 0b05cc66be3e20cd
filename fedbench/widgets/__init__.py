"""Interactive dashboards (ipywidgets + plotly) for notebooks.

Every dashboard is a class with ``.widget`` (the ipywidgets root), a text
``repr``, a static HTML repr, ``.refresh()``/``.update(...)``, and two figure
backends: ``"widget"`` (live plotly ``FigureWidget``, needs anywidget) and
``"static"`` (plain plotly figures re-rendered on change, for front-ends where
anywidget models fail to load).  ipywidgets and plotly are imported only when
a dashboard is built, so ``import fedbench.widgets`` is cheap.

* :class:`FederationPanel`: parties, rows, schema agreement;
* :class:`TrainingDashboard`: federated vs local-only vs centralized curves, live;
* :class:`BudgetPanel`: privacy budgets, the spend curve, the ledger, refusals;
* :class:`PSIOverlapView`: Venn diagram or overlap heatmap of a PSI result;
* :class:`CryptoCostPanel`: ciphertexts, bytes and encryption time per party;
* :class:`ProtocolComparison`: secure-aggregation set-ups side by side, cost and trust
  (also ``CryptoCostPanel.compare``);
* :class:`TranscriptViewer`: every message, filterable by party, kind and run;
* :class:`Progress`: a progress bar in notebooks, silent in plain Python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "AttackLab": ".attacks",
    "Dashboard": "._base",
    "FIGURE_BACKENDS": "._base",
    "in_notebook": "._base",
    "FederationPanel": ".federation",
    "TrainingDashboard": ".training",
    "BudgetPanel": ".budget",
    "PSIOverlapView": ".psi",
    "CryptoCostPanel": ".transcript",
    "ProtocolComparison": ".comparison",
    "TranscriptViewer": ".transcript",
    "Progress": ".progress",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:
    from ._base import FIGURE_BACKENDS as FIGURE_BACKENDS
    from ._base import Dashboard as Dashboard
    from ._base import in_notebook as in_notebook
    from .budget import BudgetPanel as BudgetPanel
    from .comparison import ProtocolComparison as ProtocolComparison
    from .federation import FederationPanel as FederationPanel
    from .progress import Progress as Progress
    from .psi import PSIOverlapView as PSIOverlapView
    from .training import TrainingDashboard as TrainingDashboard
    from .transcript import CryptoCostPanel as CryptoCostPanel
    from .transcript import TranscriptViewer as TranscriptViewer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedbench.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
