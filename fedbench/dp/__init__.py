"""Differential privacy: mechanisms, accounting, budgets and the privacy ledger.

Secure aggregation hides each party's contribution from the aggregator, but
the released aggregate can still reveal individuals.  This subpackage adds
calibrated noise to releases and keeps per-party privacy budgets:

* :mod:`~fedbench.dp.mechanisms`: exact discrete Laplace and Gaussian noise on
  the fixed-point grid from OpenDP's CSPRNG samplers (central, or distributed as
  per-party shares sized so that the epsilon holds against the parties
  themselves), sensitivities from declared bounds,
  exponential-mechanism quantiles on histograms, DP-FedAvg clipping and noise;
* :mod:`~fedbench.dp.accounting`: events and composition through Google's
  ``dp-accounting`` (RDP for live figures, PLD for headline figures);
* :mod:`~fedbench.dp.ledger`: the append-only, persisted ledger with
  check-then-spend;
* :mod:`~fedbench.dp.planner`: noise for a target epsilon, rounds a budget affords;
* :class:`Privacy`: the DP settings of one statistic (``privacy=`` everywhere);
* :class:`PrivacyBudget`: the per-federation facade exposed as ``fed.budget``.
"""

from __future__ import annotations

from ..errors import BudgetExceededError, BudgetNotSetError, LedgerFileError, MissingBoundsError
from .accounting import (
    PLD_DISCRETIZATION,
    DPFedAvgAccountant,
    GaussianEvent,
    NonPrivateEvent,
    PureDPEvent,
    compose_epsilon,
    delta_pld,
    epsilon_basic,
    epsilon_pld,
    epsilon_rdp,
    party_spend,
)
from .budget import PrivacyBudget
from .config import DPConfig
from .ledger import LedgerEntry, PrivacyLedger, Refusal
from .mechanisms import (
    add_update_noise,
    check_bounds,
    clip_to_bounds,
    clip_update,
    count_sensitivity,
    discrete_gaussian,
    discrete_laplace,
    dp_mean,
    exponential_quantile,
    gaussian_epsilon,
    gaussian_mechanism,
    gaussian_noise,
    gaussian_share,
    gaussian_share_std,
    gaussian_shares,
    gaussian_sigma,
    histogram_counts,
    histogram_sensitivity,
    kls_tau,
    l2_norm,
    laplace_mechanism,
    laplace_noise,
    laplace_scale,
    laplace_share,
    laplace_shares,
    make_rng,
    mean_sensitivity,
    quantile_edges,
    sum_sensitivity,
    to_grid,
    update_noise_share,
)
from .planner import epsilon_for_rounds, noise_multiplier_for_epsilon, rounds_affordable
from .privacy import Privacy

__all__ = [
    "PLD_DISCRETIZATION",
    "BudgetExceededError",
    "BudgetNotSetError",
    "DPConfig",
    "DPFedAvgAccountant",
    "GaussianEvent",
    "LedgerEntry",
    "LedgerFileError",
    "MissingBoundsError",
    "NonPrivateEvent",
    "Privacy",
    "PrivacyBudget",
    "PrivacyLedger",
    "PureDPEvent",
    "Refusal",
    "add_update_noise",
    "check_bounds",
    "clip_to_bounds",
    "clip_update",
    "compose_epsilon",
    "count_sensitivity",
    "delta_pld",
    "discrete_gaussian",
    "discrete_laplace",
    "dp_mean",
    "epsilon_basic",
    "epsilon_for_rounds",
    "epsilon_pld",
    "epsilon_rdp",
    "exponential_quantile",
    "gaussian_epsilon",
    "gaussian_mechanism",
    "gaussian_noise",
    "gaussian_share",
    "gaussian_share_std",
    "gaussian_shares",
    "gaussian_sigma",
    "histogram_counts",
    "histogram_sensitivity",
    "kls_tau",
    "l2_norm",
    "laplace_mechanism",
    "laplace_noise",
    "laplace_scale",
    "laplace_share",
    "laplace_shares",
    "make_rng",
    "mean_sensitivity",
    "noise_multiplier_for_epsilon",
    "party_spend",
    "quantile_edges",
    "rounds_affordable",
    "sum_sensitivity",
    "to_grid",
    "update_noise_share",
]
