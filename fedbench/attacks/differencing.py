"""Differencing and small-group attacks on exact aggregates, and the same attack against DP releases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigurationError
from ._display import table_html, table_text
from ._simulation import SIMULATION_NOTE, SimulationBudget, check_column, check_epsilons, check_party, to_polars


@dataclass
class DifferencingResult:
    """Outcome of a differencing attack on one party's sum of ``column``.

    ``reconstructed`` is what the attacker computes from two exact releases (exact, so it is also
    the reference the DP errors are measured against); ``error_at``
    maps each epsilon to the mean absolute error of the same attack on simulated DP releases,
    and ``laplace_scale_at`` to the Laplace scale of the difference's noise per release.
    """

    column: str
    target_party: str
    reconstructed: float
    epsilons: list[float] = field(default_factory=list)
    error_at: dict[float, float] = field(default_factory=dict)
    laplace_scale_at: dict[float, float] = field(default_factory=dict)
    sensitivity: float = 0.0
    note: str = SIMULATION_NOTE

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

    def __repr__(self) -> str:
        return table_text(f"Differencing attack on {self.target_party}'s sum of {self.column!r}",
                          ["epsilon", "mean abs error", "Laplace scale", "verdict"], self._rows(), self.note)

    def _repr_html_(self) -> str:
        return table_html(f"Differencing attack on {self.target_party}'s sum of {self.column!r}",
                          ["epsilon", "mean abs error", "Laplace scale", "verdict"], self._rows(), self.note)


def differencing(
    fed: object,
    column: str,
    *,
    target_party: str,
    epsilons: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
    bounds: tuple[float, float] | None = None,
    n_releases: int = 200,
    seed: int = 0,
    budget: SimulationBudget | None = None,
) -> DifferencingResult:
    """Reconstruct ``target_party``'s sum of ``column`` from two releases (all parties, all but the target).

    Parameters
    ----------
    fed : Federation
        The workbench; two exact secure sums are computed through its public API.
    column : str
        Numeric column.
    target_party : str
        Party whose sum the attacker wants.
    epsilons : sequence of float
        DP grid; each release pair is simulated ``n_releases`` times with Laplace noise
        of scale ``(hi - lo) / epsilon`` per release (the workbench's sum sensitivity for ``bounds``).
    bounds : (float, float), optional
        Clamping bounds for the DP simulation; default ``(0, 1)`` if omitted is refused: pass them.
    n_releases : int
        Simulated release pairs per epsilon.
    seed : int
        Seed of the simulation noise (reproducible; these are not releases).
    budget : SimulationBudget, optional
        Separate budget charged for the simulated releases; never the study's.

    Returns
    -------
    DifferencingResult
    """
    check_party(fed, target_party)
    check_column(fed, column)
    eps = check_epsilons(epsilons) if epsilons else []
    if eps and bounds is None:
        raise ConfigurationError(f"pass bounds=(lo, hi) for column {column!r} to simulate DP releases")
    others = [p for p in fed.party_names if p != target_party]  # type: ignore[attr-defined]
    if not others:
        raise ConfigurationError("a differencing attack needs at least two parties")
    # The two exact releases the attacker is assumed to have seen (the workbench's own secure sums).
    total = float(fed.sum(column))  # type: ignore[attr-defined]
    rest = float(fed.sum(column, parties=others))  # type: ignore[attr-defined]
    reconstructed = total - rest
    # Exact releases make the difference exact, so it is the reference for the DP errors (the workbench
    # refuses a release over the target alone, and the lab never reads the target's rows).
    truth = reconstructed
    result = DifferencingResult(column, target_party, reconstructed)
    if eps:
        (budget or SimulationBudget()).spend(eps, 2 * n_releases)
        lo, hi = bounds  # type: ignore[misc]
        sens = max(abs(lo), abs(hi))
        result.sensitivity = sens
        rng = np.random.default_rng(seed)
        for e in eps:
            scale = sens / e if math.isfinite(e) else 0.0
            noise = rng.laplace(0.0, scale, (n_releases, 2)) if scale else np.zeros((n_releases, 2))
            guesses = (total + noise[:, 0]) - (rest + noise[:, 1])
            result.epsilons.append(e)
            result.error_at[e] = float(np.mean(np.abs(guesses - truth)))
            result.laplace_scale_at[e] = scale
    return result


@dataclass
class SmallGroupResult:
    """Groups of ``by`` whose count is below ``min_group_size`` (a count of 1 identifies a person)."""

    by: list[str]
    min_group_size: int
    small_groups: list[dict[str, object]]
    note: str = "Counts below min_group_size single out individuals when combined with other releases."

    def __repr__(self) -> str:
        rows = [[str(g), "< " + str(self.min_group_size)] for g in self.small_groups]
        return table_text(f"Small groups of {self.by}", ["group", "count"], rows, self.note)

    def _repr_html_(self) -> str:
        rows = [[str(g), "< " + str(self.min_group_size)] for g in self.small_groups]
        return table_html(f"Small groups of {self.by}", ["group", "count"], rows, self.note)


def small_groups(fed: object, by: str | Sequence[str], *, min_group_size: int = 5) -> SmallGroupResult:
    """Find groups an exact ``group_counts`` release would reveal with fewer than ``min_group_size`` rows."""
    cols = [by] if isinstance(by, str) else list(by)
    for c in cols:
        check_column(fed, c)
    if min_group_size < 1:
        raise ConfigurationError(f"min_group_size must be >= 1, got {min_group_size}")
    frame = to_polars(fed.group_counts(cols))  # type: ignore[attr-defined]
    count_col = next(c for c in frame.columns if c not in cols)
    small = frame.filter((frame[count_col] > 0) & (frame[count_col] < min_group_size))
    return SmallGroupResult(cols, min_group_size, [{c: r[c] for c in cols} for r in small.iter_rows(named=True)])
