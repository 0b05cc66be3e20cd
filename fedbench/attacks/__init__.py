"""Attack lab: what each protection defends against, and what it does not.

Every attack runs against the workbench's own releases or a simulation built from the same files;
DP releases are simulated on a separate :class:`SimulationBudget`, never the study's ledger.

* :func:`differencing` / :func:`small_groups`: exact aggregates that differ by one party or row;
* :func:`gradient_reconstruction`: inverting a single-example logistic-regression update;
* :func:`membership_inference`: loss-threshold (Yeom et al.) and shadow-model (Shokri et al.) attacks;
* :class:`ReleasePolicy`, :func:`check_release`, :class:`DisclosureRiskWarning`: warn before a risky exact release.
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
