"""Differencing and small-group attacks on exact aggregates, and the same attack against DP releases."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .. import statistics
from ..disclosure import DisclosureRiskWarning
from ..errors import ConfigurationError
from ._display import table_html, table_text
from ._simulation import SimulationBudget, check_column, check_epsilons, check_party, to_polars

T = TypeVar("T")

#: What the differencing result says about where its DP releases came from.
DP_RELEASES_NOTE = (
    "DP releases here are real DP sums of the workbench, computed by the same parties on a throwaway "
    "coordinator with its own in-memory ledger, charged to the attack lab's simulation budget; "
    "the study's privacy budget and ledger were not touched."
)


@dataclass
class DifferencingResult:
    """Outcome of a differencing attack on one party's sum of ``column``.

    ``reconstructed`` is what the attacker computes from two exact releases of the
    workbench (exact, so it is also the reference the DP errors are measured against);
    ``error_at`` maps each epsilon to the mean absolute error of the same attack on
    ``n_releases`` pairs of real DP sums, and ``laplace_scale_at`` to the scale of one
    central Laplace release (the workbench's distributed noise is larger: every party
    adds a full share).  ``policy_warning`` is the release policy's warning before the
    second exact release (``None`` if the policy did not warn).
    """

    column: str
    target_party: str
    reconstructed: float
    epsilons: list[float] = field(default_factory=list)
    error_at: dict[float, float] = field(default_factory=dict)
    laplace_scale_at: dict[float, float] = field(default_factory=dict)
    sensitivity: float = 0.0
    n_releases: int = 0
    policy_warning: str | None = None
    note: str = DP_RELEASES_NOTE

    def verdict(self, epsilon: float) -> str:
        """One sentence on whether the attack works at ``epsilon``."""
        if not math.isfinite(epsilon):
            return "Exact releases: the difference reveals the target's sum exactly."
        err, scale = self.error_at[epsilon], self.laplace_scale_at[epsilon]
        # What DP promises is that one row's largest contribution (the sensitivity) is blurred.
        return (f"At epsilon {epsilon:g} the attacker's error averages {err:.3g} (Laplace scale {scale:.3g}), "
                f"{err / self.sensitivity:.2g} times one row's largest contribution: the target's value is "
                "known only up to noise.")

    def _rows(self) -> list[list[object]]:
        rows: list[list[object]] = [["exact", 0.0, 0.0, self.verdict(math.inf)]]
        rows += [[e, self.error_at[e], self.laplace_scale_at[e], self.verdict(e)] for e in self.epsilons]
        return rows

    def _note(self) -> str:
        policy = ("The workbench's release policy warned before the second exact release: " + self.policy_warning
                  if self.policy_warning else "The release policy did not warn (it is off or configured not to).")
        return f"{policy}\n{self.note}" if self.epsilons else policy

    def __repr__(self) -> str:
        return table_text(f"Differencing attack on {self.target_party}'s sum of {self.column!r}",
                          ["epsilon", "mean abs error", "Laplace scale", "verdict"], self._rows(), self._note())

    def _repr_html_(self) -> str:
        return table_html(f"Differencing attack on {self.target_party}'s sum of {self.column!r}",
                          ["epsilon", "mean abs error", "Laplace scale", "verdict"], self._rows(), self._note())


def watch_policy(release: Callable[[], T]) -> tuple[T, str | None]:
    """Run ``release`` and return its value and the release policy's first warning (others pass on)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = release()
    message = None
    for w in caught:
        if issubclass(w.category, DisclosureRiskWarning):
            message = message or str(w.message)
        else:  # anything else goes on to the caller unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, message


def throwaway_coordinator(fed: Any) -> Any:
    """A coordinator over ``fed``'s parties with its own in-memory ledger, transcript and release history.

    The parties (and the party-local work) are the study's; only the bookkeeping is separate, so DP
    releases made here never touch the study's ledger.  The key pair is reused (same key holder).
    """
    from ..coordinator import FederationCoordinator

    coord = FederationCoordinator(dict(fed.parties), key_bits=fed.key_bits, backend=fed.backend,
                                  allow_insecure_key_size=fed.allow_insecure_key_size,
                                  fast_encryption=fed.fast_encryption, ledger_path=":memory:")
    coord.keys = fed.keys
    return coord


def differencing(
    fed: Any,
    column: str,
    *,
    target_party: str,
    epsilons: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
    bounds: tuple[float, float] | None = None,
    n_releases: int = 40,
    budget: SimulationBudget | None = None,
) -> DifferencingResult:
    """Reconstruct ``target_party``'s sum of ``column`` from two releases (all parties, all but the target).

    Parameters
    ----------
    fed : Federation
        The workbench; two exact secure sums are computed through its public API (its release
        policy sees them: by default it warns before the second, which the result records).
    column : str
        Numeric column.
    target_party : str
        Party whose sum the attacker wants.
    epsilons : sequence of float
        DP grid; at each epsilon ``n_releases`` pairs of real DP sums (the workbench's
        ``sum(column, epsilon=..., bounds=...)``, distributed Laplace noise) are released on a
        throwaway coordinator over the same parties (see :func:`throwaway_coordinator`).
    bounds : (float, float), optional
        Clamping bounds of the DP sums (required when ``epsilons`` is not empty).
    n_releases : int
        DP release pairs per epsilon.
    budget : SimulationBudget, optional
        The attack lab's separate budget, charged for the DP releases; never the study's.

    Returns
    -------
    DifferencingResult

    Raises
    ------
    UnknownPartyError, ColumnError, ConfigurationError, SimulationBudgetError, DisclosureRiskError
        The last when the study's release policy refuses the second exact release.
    """
    check_party(fed, target_party)
    check_column(fed, column)
    eps = check_epsilons(epsilons) if epsilons else []
    if eps and bounds is None:
        raise ConfigurationError(f"pass bounds=(lo, hi) for column {column!r} to release DP sums")
    if isinstance(n_releases, bool) or not isinstance(n_releases, int) or n_releases < 1:
        raise ConfigurationError(f"n_releases must be a positive integer, got {n_releases!r}")
    others = [p for p in fed.party_names if p != target_party]
    if not others:
        raise ConfigurationError("a differencing attack needs at least two parties")
    # The two exact releases the attacker is assumed to have seen (the workbench's own secure sums);
    # the study's release policy judges them like any other release.
    (total, rest), policy_warning = watch_policy(
        lambda: (float(fed.sum(column)), float(fed.sum(column, parties=others))))
    reconstructed = total - rest
    # Exact releases make the difference exact, so it is the reference for the DP errors (the workbench
    # refuses a release over the target alone, and the lab never reads the target's rows).
    result = DifferencingResult(column, target_party, reconstructed, policy_warning=policy_warning)
    if eps:
        (budget or SimulationBudget()).spend(eps, 2 * n_releases)
        lo, hi = bounds  # type: ignore[misc]
        sens = max(abs(lo), abs(hi))
        result.sensitivity, result.n_releases = sens, n_releases
        coord = throwaway_coordinator(fed)
        # Exactly what the simulation budget was charged (pure DP composes by summing epsilons).
        coord.budget.set_budget(epsilon=math.fsum(eps) * 2 * n_releases * (1 + 1e-9), delta=1e-6,
                                description="attack lab: throwaway ledger")
        for e in eps:
            errors = []
            for _ in range(n_releases):
                noisy_total = float(statistics.sum(coord, column, epsilon=e, bounds=(lo, hi)))
                noisy_rest = float(statistics.sum(coord, column, parties=others, epsilon=e, bounds=(lo, hi)))
                errors.append(abs((noisy_total - noisy_rest) - reconstructed))
            result.epsilons.append(e)
            result.error_at[e] = float(np.mean(errors))
            result.laplace_scale_at[e] = sens / e
    return result


@dataclass
class SmallGroupResult:
    """Groups of ``by`` whose count is below ``min_group_size`` (a count of 1 identifies a person)."""

    by: list[str]
    min_group_size: int
    small_groups: list[dict[str, object]]
    policy_warning: str | None = None
    note: str = "Counts below min_group_size single out individuals when combined with other releases."

    def _note(self) -> str:
        policy = (f" The workbench's release policy warned before the release: {self.policy_warning}"
                  if self.policy_warning else "")
        return self.note + policy

    def __repr__(self) -> str:
        rows = [[str(g), "< " + str(self.min_group_size)] for g in self.small_groups]
        return table_text(f"Small groups of {self.by}", ["group", "count"], rows, self._note())

    def _repr_html_(self) -> str:
        rows = [[str(g), "< " + str(self.min_group_size)] for g in self.small_groups]
        return table_html(f"Small groups of {self.by}", ["group", "count"], rows, self._note())


def small_groups(fed: object, by: str | Sequence[str], *, min_group_size: int = 5) -> SmallGroupResult:
    """Find groups an exact ``group_counts`` release would reveal with fewer than ``min_group_size`` rows."""
    cols = [by] if isinstance(by, str) else list(by)
    for c in cols:
        check_column(fed, c)
    if min_group_size < 1:
        raise ConfigurationError(f"min_group_size must be >= 1, got {min_group_size}")
    released, policy_warning = watch_policy(lambda: fed.group_counts(cols))  # type: ignore[attr-defined]
    frame = to_polars(released)
    count_col = next(c for c in frame.columns if c not in cols)
    small = frame.filter((frame[count_col] > 0) & (frame[count_col] < min_group_size))
    return SmallGroupResult(cols, min_group_size, [{c: r[c] for c in cols} for r in small.iter_rows(named=True)],
                            policy_warning=policy_warning)
