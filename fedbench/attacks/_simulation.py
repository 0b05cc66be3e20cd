"""The attack lab's own simulation budget: attacks never spend the study's privacy budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetError, ColumnError, ConfigurationError, UnknownPartyError

#: What every attack's DP runs cost: the attack lab's own budget and throwaway ledgers, never the study's.
SIMULATION_NOTE = (
    "DP runs here are charged to the attack lab's own simulation budget and throwaway in-memory ledgers; "
    "the study's privacy budget and ledger were not touched."
)


class SimulationBudgetError(BudgetError):
    """An epsilon grid would exceed the attack lab's separate simulation budget."""


@dataclass
class SimulationBudget:
    """Epsilon the attack lab may spend on simulated releases (never the study's ledger)."""

    epsilon: float = 1e8
    spent: float = field(default=0.0)

    def spend(self, epsilons: Sequence[float], releases: int) -> None:
        """Charge ``releases`` simulated releases at each finite epsilon, or refuse and change nothing."""
        cost = sum(e for e in epsilons if math.isfinite(e)) * releases
        if self.spent + cost > self.epsilon:
            raise SimulationBudgetError(
                f"the epsilon grid needs {cost:g} of simulation budget but only "
                f"{self.epsilon - self.spent:g} remains; shrink the grid or n_releases, or pass a larger "
                "SimulationBudget (the study's budget is never used)"
            )
        self.spent += cost


#: Largest finite epsilon of a DP-FedAvg run: beyond it the accountant's privacy-loss distribution
#: needs gigabytes (its discretisation grows with epsilon).
MAX_FEDAVG_EPSILON = 100.0


def check_epsilons(epsilons: Sequence[float], *, largest: float = math.inf) -> list[float]:
    """Validate an epsilon grid: positive numbers up to ``largest``, ``inf`` allowed (no noise)."""
    out = []
    try:
        values = [float(e) for e in epsilons]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"epsilons must be a sequence of positive numbers, got {epsilons!r}") from exc
    if not values:
        raise ConfigurationError("epsilons must not be empty")
    for e in values:
        if not (e > 0) or math.isnan(e):
            raise ConfigurationError(f"every epsilon must be > 0 (or inf for no noise), got {e!r}")
        if math.isfinite(e) and e > largest:
            raise ConfigurationError(f"every finite epsilon of a DP-FedAvg run must be at most {largest:g} "
                                     f"(the accountant's limit), got {e!r}; use inf for no noise")
        out.append(e)
    return out


def check_party(fed: object, party: str) -> None:
    """Raise :class:`UnknownPartyError` unless ``party`` belongs to ``fed``."""
    names = list(fed.party_names)  # type: ignore[attr-defined]
    if party not in names:
        raise UnknownPartyError(f"no party named {party!r}; parties are {names}", party=party)


def check_column(fed: object, column: str) -> None:
    """Raise :class:`ColumnError` unless every party holds ``column``."""
    for p in fed:  # type: ignore[attr-defined]
        if column not in p.columns:
            raise ColumnError(f"party {p.name!r} has no column {column!r}", party=p.name, column=column)


def to_polars(frame: object) -> Any:
    """Accept a polars frame or any result with ``.to_polars()`` (the redesigned result type)."""
    import polars as pl

    if isinstance(frame, pl.DataFrame):
        return frame
    if hasattr(frame, "to_polars"):
        return frame.to_polars()
    raise TypeError(f"expected a polars DataFrame or a result with .to_polars(), got {type(frame).__name__}")


def simulation_frames(source: object) -> dict:
    """The simulation copy of the parties' data, read again from the same files.

    ``source`` is a Federation whose parties were loaded from files, a folder of files, or a
    mapping of party name to polars frame. The attack lab plays every role in a simulation, so
    it reads the files itself instead of asking the study's parties for raw rows.
    """
    from pathlib import Path

    import polars as pl

    if isinstance(source, dict):
        return {k: to_polars(v) for k, v in source.items()}
    if isinstance(source, str | Path):
        files = sorted(p for p in Path(source).iterdir() if p.suffix in {".csv", ".parquet"})
        if not files:
            raise ConfigurationError(f"no .csv or .parquet files in {str(source)!r}")
        return {p.stem: (pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(p)) for p in files}
    out = {}
    for p in source:  # type: ignore[attr-defined]
        if p.source.startswith("<"):
            raise ConfigurationError(
                f"party {p.name!r} was added from an in-memory frame; the attack lab simulates from files: "
                "pass the folder or a dict of frames instead"
            )
        path = Path(p.source)
        out[p.name] = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    return out


def design(frames: dict, features: Sequence[str], target: str) -> tuple[dict, dict]:
    """Standardised feature matrix and 0/1 labels per party (standardised with pooled simulation stats)."""
    import numpy as np

    for name, df in frames.items():
        for c in [*features, target]:
            if c not in df.columns:
                raise ColumnError(f"party {name!r} has no column {c!r}", party=name, column=c)
    # Rows with a missing feature or label are dropped, as the workbench's learners do by default.
    frames = {k: df.select(list(dict.fromkeys([*features, target]))).drop_nulls() for k, df in frames.items()}
    xs = {k: df.select(features).to_numpy().astype(float) for k, df in frames.items()}
    ys = {k: df[target].to_numpy().astype(float) for k, df in frames.items()}
    for k, y in ys.items():
        if not set(np.unique(y)) <= {0.0, 1.0}:
            raise ConfigurationError(f"target {target!r} must be 0/1 for logistic regression (party {k!r})")
    pooled = np.vstack(list(xs.values()))
    mu, sd = pooled.mean(0), pooled.std(0)
    sd[sd == 0] = 1.0
    return {k: (x - mu) / sd for k, x in xs.items()}, ys
