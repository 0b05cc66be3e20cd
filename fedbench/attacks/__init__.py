"""Attack lab: what each protection defends against, and what it does not.

Every attack runs against real runs of the workbench: the study's own exact releases, DP sums
released by the same parties on a throwaway coordinator, models trained with ``fed.fit`` and
updates read from real transcripts on throwaway federations over the same files.  Each throwaway
run has its own in-memory ledger; DP runs are charged to a separate :class:`SimulationBudget`,
never the study's budget or ledger.

* :func:`differencing` / :func:`small_groups`: exact aggregates that differ by one party or row;
* :func:`gradient_reconstruction`: inverting a single-example logistic-regression update;
* :func:`membership_inference`: loss-threshold (Yeom et al.) and shadow-model (Shokri et al.) attacks;
* :class:`ReleasePolicy`, :func:`check_release`, :class:`DisclosureRiskWarning`: the release policy
  every federation applies before an exact release (``fed.release_policy``; see :mod:`fedbench.disclosure`).
"""

from __future__ import annotations

from ._simulation import SIMULATION_NOTE, SimulationBudget, SimulationBudgetError
from .differencing import DifferencingResult, SmallGroupResult, differencing, small_groups
from .membership import MembershipResult, membership_inference
from .policy import DisclosureRiskWarning, Release, ReleasePolicy, check_release
from .reconstruction import ReconstructionResult, gradient_reconstruction

__all__ = [
    "SIMULATION_NOTE",
    "DifferencingResult",
    "DisclosureRiskWarning",
    "MembershipResult",
    "ReconstructionResult",
    "Release",
    "ReleasePolicy",
    "SimulationBudget",
    "SimulationBudgetError",
    "SmallGroupResult",
    "check_release",
    "differencing",
    "gradient_reconstruction",
    "membership_inference",
    "small_groups",
]
