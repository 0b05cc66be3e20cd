"""The :class:`PrivacyBudget` facade: one per federation, exposed as ``fed.budget``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import ConfigurationError, UnknownPartyError
from ..party import validate_party_name
from ..transcript import _n
from ._checks import check_delta, check_epsilon
from .accounting import AccountingEvent
from .config import DPConfig
from .ledger import LedgerEntry, PrivacyLedger, Refusal, default_ledger_path
from .planner import rounds_affordable

__all__ = ["PrivacyBudget", "federation_budget"]

Pair = tuple[float, float]


class PrivacyBudget:
    """Privacy budgets of a federation's parties, and what they have spent.

    A :class:`~fedbench.Federation` holds one and delegates to it: protocols
    call :meth:`charge` before drawing noise or reading data, and the analyst
    reads :meth:`spent`, :meth:`remaining`, :attr:`ledger` and :attr:`refusals`.

    Parameters
    ----------
    path : str or Path, optional
        Ledger file (JSON), reloaded if it exists so budgets survive a kernel
        restart.  ``None`` or ``":memory:"`` keeps everything in memory (shown
        as "not persistent").  A :class:`~fedbench.Federation` passes a
        default file next to the notebook; see :func:`federation_budget`.
    federation : str, optional
        Federation name recorded in the ledger file.
    parties : callable returning an iterable of str, optional
        The federation's current party names; used as the default of
        :meth:`set_budget` and to reject unknown parties.
    ledger : PrivacyLedger, optional
        Use this ledger instead of opening ``path``.
    study : Mapping of str to str, optional
        Party identities recorded in a new ledger file (see
        :func:`fedbench.dp.ledger.party_identity`).
    key_path : str or Path, optional
        Key authenticating the ledger file (default: per user, see
        :func:`fedbench.dp.ledger.default_key_path`).

    Examples
    --------
    >>> from fedbench.dp import PrivacyBudget, PureDPEvent
    >>> budget = PrivacyBudget()  # or PrivacyBudget("heart.ledger.json") to persist
    >>> _ = budget.set_budget(epsilon=1.0, delta=1e-6, parties=["a", "b"], overrides={"b": (2.0, 1e-6)})
    >>> _ = budget.charge(["a", "b"], PureDPEvent(0.25), mechanism="laplace", description="count")
    >>> budget.spent("a"), budget.remaining("b")
    ((0.25, 0.0), (1.75, 1e-06))
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        federation: str | None = None,
        parties: Callable[[], Iterable[str]] | None = None,
        ledger: PrivacyLedger | None = None,
        study: Mapping[str, str] | None = None,
        key_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if ledger is not None and path is not None:
            raise ConfigurationError("pass either path or ledger, not both")
        self._ledger = (
            ledger if ledger is not None else PrivacyLedger(path, federation=federation, study=study, key_path=key_path)
        )
        self._party_names = parties
        self.default_location = False  # set by federation_budget for the default file

    @property
    def path(self) -> Path | None:
        """The ledger file, or ``None`` when the ledger lives in memory only."""
        return self._ledger.path

    @property
    def persistent(self) -> bool:
        """Whether spending survives the kernel (``False`` for ``ledger_path=":memory:"``)."""
        return self._ledger.persistent

    # -- parties -----------------------------------------------------------------------------
    def _known(self) -> list[str] | None:
        return None if self._party_names is None else list(self._party_names())

    def _check_known(self, parties: Iterable[str]) -> None:
        known = self._known()
        if known is None:
            return
        for p in parties:
            if p not in known:
                raise UnknownPartyError(
                    f"party {p!r} is not in the federation (parties: {', '.join(known) or 'none'})", party=p
                )

    @property
    def parties(self) -> tuple[str, ...]:
        """Parties that have a budget."""
        return self._ledger.parties

    # -- budgets -----------------------------------------------------------------------------
    def set_budget(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        parties: Iterable[str] | None = None,
        overrides: Mapping[str, tuple[float, float]] | None = None,
        *,
        description: str = "",
        allow_increase: bool = False,
    ) -> LedgerEntry | None:
        """Set the budget ``(epsilon, delta)`` of parties, with per-party overrides.

        Setting the same budget again changes nothing (re-running a notebook cell
        is harmless); a change is recorded in the ledger (old and new budget,
        when, ``description``).  A budget can be lowered, but not below what a
        party has already spent.  Raising the budget of a party that has spent
        something needs ``allow_increase=True`` and a reason in ``description``;
        the raise is recorded and flagged in the repr.

        Parameters
        ----------
        epsilon : float, default 1.0
            Epsilon budget (> 0) of each listed party.
        delta : float, default 1e-6
            Delta budget, in (0, 1).
        parties : iterable of str, optional
            Parties to set; by default every party of the federation.
        overrides : Mapping of str to (epsilon, delta), optional
            Per-party budgets replacing the default, e.g. ``{"cleveland": (2.0, 1e-6)}``.
        description : str
            Recorded with the ledger entry (the reason for a change).
        allow_increase : bool, default False
            Allow raising the budget of a party that has already spent some.

        Returns
        -------
        LedgerEntry or None
            The budget entry, or ``None`` if nothing changed.

        Raises
        ------
        ConfigurationError
            Invalid epsilon or delta (naming the party for overrides), no parties,
            a budget below what is already spent, or a raise after spending
            without ``allow_increase=True`` and a reason.  Nothing changes.
        UnknownPartyError
            A party that is not in the federation.
        """
        epsilon = check_epsilon(epsilon)
        delta = check_delta(delta)
        if parties is None:
            known = self._known()
            if known is None:
                raise ConfigurationError("name the parties: set_budget(..., parties=['a', 'b'])")
            names = known
        elif isinstance(parties, str):
            names = [parties]
        else:
            names = list(parties)
        overrides = dict(overrides or {})
        budgets: dict[str, Pair] = {}
        for p in names:
            validate_party_name(p)
            budgets[p] = (epsilon, delta)
        for p, b in overrides.items():
            validate_party_name(p)
            if isinstance(b, str) or not isinstance(b, tuple | list) or len(b) != 2:
                raise ConfigurationError(f"party {p!r}: override must be a pair (epsilon, delta), got {b!r}")
            budgets[p] = (check_epsilon(b[0], party=p), check_delta(b[1], party=p))
        if not budgets:
            raise ConfigurationError("set_budget needs at least one party")
        self._check_known(budgets)
        return self._ledger.set_budget(budgets, description=description, allow_increase=allow_increase)

    def limit(self, party: str) -> Pair:
        """The party's budget ``(epsilon, delta)`` (raises ``BudgetNotSetError`` if unset)."""
        return self._ledger.budget(party)

    def spent(self, party: str) -> Pair:
        """What ``party`` has spent: ``(epsilon, delta)``.

        Spent epsilon is the composition's epsilon at the budget's delta; spent
        delta is its delta at the budget's epsilon (0 while only pure-DP
        releases were made).  See :mod:`fedbench.dp.accounting` for the rule.
        Reading never changes anything.
        """
        return self._ledger.spent(party)

    def remaining(self, party: str) -> Pair:
        """Budget minus :meth:`spent`, per component, floored at 0."""
        return self._ledger.remaining(party)

    # -- spending ----------------------------------------------------------------------------
    def charge(
        self,
        parties: Iterable[str],
        event: AccountingEvent,
        *,
        mechanism: str | None = None,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Check and charge a release on ``parties``; see :meth:`PrivacyLedger.charge`."""
        names = [parties] if isinstance(parties, str) else list(parties)
        self._check_known(names)
        return self._ledger.charge(names, event, mechanism=mechanism, description=description, parameters=parameters)

    def record_exact(
        self,
        parties: Iterable[str],
        *,
        mechanism: str,
        description: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record an exact, not differentially private release (e.g. a PSI size); charges nothing."""
        names = [parties] if isinstance(parties, str) else list(parties)
        self._check_known(names)
        return self._ledger.record_exact(names, mechanism=mechanism, description=description, parameters=parameters)

    def preview(self, parties: Iterable[str], event: AccountingEvent) -> dict[str, Pair]:
        """What each party would have spent after ``event``; nothing is charged."""
        names = [parties] if isinstance(parties, str) else list(parties)
        self._check_known(names)
        return self._ledger.preview(names, event)

    def fits(self, parties: Iterable[str], event: AccountingEvent) -> bool:
        """Whether :meth:`charge` would admit ``event`` on ``parties``; nothing is charged."""
        names = [parties] if isinstance(parties, str) else list(parties)
        self._check_known(names)
        return self._ledger.fits(names, event)

    def affordable_rounds(
        self, config: DPConfig, parties: Iterable[str] | None = None, *, max_rounds: int = 1_000_000
    ) -> int:
        """How many DP-FedAvg rounds of ``config`` every party's remaining budget still admits.

        Parameters
        ----------
        config : DPConfig
            Noise multiplier and sample rate of the planned rounds.
        parties : iterable of str, optional
            Parties taking part; by default every party with a budget.
        max_rounds : int
            Search cap.
        """
        if not isinstance(config, DPConfig):
            raise ConfigurationError(f"config must be a DPConfig, got {type(config).__name__}")
        names = list(self.parties if parties is None else ([parties] if isinstance(parties, str) else parties))
        if not names:
            raise ConfigurationError("no party has a budget yet")
        self._check_known(names)
        return min(
            rounds_affordable(
                *self._ledger.budget(p),
                config.noise_multiplier,
                sample_rate=config.sample_rate,
                history=self._ledger.events(p),
                max_rounds=max_rounds,
            )
            for p in names
        )

    # -- views -------------------------------------------------------------------------------
    @property
    def ledger(self) -> PrivacyLedger:
        """The append-only ledger (``.entries``, ``.to_polars()``)."""
        return self._ledger

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """Requests refused this session, kept apart from the ledger."""
        return self._ledger.refusals

    def summary(self) -> pl.DataFrame:
        """One row per party: budget, spent, remaining, releases."""
        rows = []
        for p in self.parties:
            (eb, db), (es, ds), (er, dr) = self.limit(p), self.spent(p), self.remaining(p)
            rows.append(
                {
                    "party": p,
                    "epsilon_budget": eb,
                    "delta_budget": db,
                    "epsilon_spent": es,
                    "delta_spent": ds,
                    "epsilon_remaining": er,
                    "delta_remaining": dr,
                    "dp_releases": self._ledger.dp_releases(p),
                    "exact_releases": self._ledger.exact_releases(p),
                }
            )
        schema = {
            "party": pl.String,
            **{f"{a}_{b}": pl.Float64 for b in ("budget", "spent", "remaining") for a in ("epsilon", "delta")},
            "dp_releases": pl.Int64,
            "exact_releases": pl.Int64,
        }
        return pl.DataFrame(rows, schema=schema)

    def location(self) -> str:
        """Where the ledger lives, in words (shown by the reprs and the budget panel)."""
        if self._ledger.path is None:
            return "in memory only: NOT persistent, lost when the kernel stops"
        return f"ledger file {self._ledger.path}" + (
            ", the default ledger of these parties" if self.default_location else ""
        )

    def _header(self) -> str:
        return (
            f"PrivacyBudget ({self.location()}): {_n(len(self.parties), 'party', 'parties')}, "
            f"{_n(len(self._ledger), 'ledger entry', 'ledger entries')}, "
            f"{_n(len(self.refusals), 'refused request')}"
        )

    def _increases(self) -> list[str]:
        out = []
        for p in self.parties:
            raised = self._ledger.budget_increases(p)
            if raised:
                out.append(f"{p} ({len(raised)}x, last: {raised[-1].description})")
        return out

    def __repr__(self) -> str:
        lines = [self._header()]
        raised = self._increases()
        if raised:
            lines.append("  budget raised after spending (recorded in the ledger): " + "; ".join(raised))
        if not self.parties:
            lines.append("  no budget set: budget.set_budget(epsilon=..., delta=..., parties=[...])")
            return "\n".join(lines)
        width = max(5, *(len(p) for p in self.parties))
        lines.append(
            f"  {'party':<{width}}  {'budget ε':>9} {'δ':>8}  {'spent ε':>9} {'δ':>8}  "
            f"{'left ε':>9} {'δ':>8}  {'DP':>4}  exact"
        )
        for row in self.summary().iter_rows(named=True):
            exact = row["exact_releases"]
            lines.append(
                f"  {row['party']:<{width}}  {row['epsilon_budget']:>9.4g} {row['delta_budget']:>8.2g}  "
                f"{row['epsilon_spent']:>9.4g} {row['delta_spent']:>8.2g}  "
                f"{row['epsilon_remaining']:>9.4g} {row['delta_remaining']:>8.2g}  "
                f"{row['dp_releases']:>4}  {exact}{' (not DP)' if exact else ''}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = f"<p><b>{escape(self._header())}</b></p>"
        raised = self._increases()
        if raised:
            head += (
                "<p style='color:#c62828'>Budget raised after spending (recorded in the ledger): "
                + escape("; ".join(raised))
                + "</p>"
            )
        if not self.parties:
            return head + "<p>No budget set: <code>budget.set_budget(epsilon=..., delta=..., parties=[...])</code></p>"
        cells = []
        for row in self.summary().iter_rows(named=True):
            frac = min(1.0, row["epsilon_spent"] / row["epsilon_budget"])
            colour = "#2e7d32" if frac < 0.75 else ("#f9a825" if frac < 1.0 else "#c62828")
            bar = (
                f'<div style="width:120px;background:#eee;height:10px" title="{frac:.0%} of ε spent">'
                f'<div style="width:{frac * 100:.1f}%;background:{colour};height:10px"></div></div>'
            )
            exact = row["exact_releases"]
            exact_cell = f"{exact} <span style='color:#c62828'>(not DP)</span>" if exact else "0"
            cells.append(
                "<tr>"
                f"<td>{escape(row['party'])}</td>"
                f"<td>{row['epsilon_budget']:.4g}</td><td>{row['delta_budget']:.2g}</td>"
                f"<td>{row['epsilon_spent']:.4g}</td><td>{row['delta_spent']:.2g}</td>"
                f"<td>{row['epsilon_remaining']:.4g}</td><td>{row['delta_remaining']:.2g}</td>"
                f"<td>{bar}</td><td>{row['dp_releases']}</td><td>{exact_cell}</td>"
                "</tr>"
            )
        table = (
            "<table><thead><tr><th>party</th><th>budget ε</th><th>budget δ</th><th>spent ε</th>"
            "<th>spent δ</th><th>remaining ε</th><th>remaining δ</th><th></th><th>DP releases</th>"
            "<th>exact releases</th></tr></thead><tbody>" + "".join(cells) + "</tbody></table>"
        )
        refused = ""
        if self.refusals:
            items = "".join(f"<li>{escape(r.message)}</li>" for r in self.refusals[-5:])
            summary = _n(len(self.refusals), "refused request")
            refused = f"<details><summary>{summary}</summary><ul>{items}</ul></details>"
        return head + table + refused


def federation_budget(
    current: PrivacyBudget | None,
    ledger_path: str | os.PathLike[str] | None,
    study: Callable[[], Mapping[str, str]],
    parties: Callable[[], Iterable[str]],
) -> PrivacyBudget:
    """The privacy budget of a :class:`~fedbench.Federation` (its ``budget`` property).

    With an explicit ``ledger_path`` (a file, or ``":memory:"``) the budget is
    opened once.  Without one the ledger is persisted by default next to the
    notebook, in the file :func:`~fedbench.dp.ledger.default_ledger_path`
    picks for the parties' identities (``./.fedbench/<hash>.ledger.json``),
    so a restarted kernel, or a new federation over the same parties (or a
    subset or superset of them), charges the same ledger.  The choice follows
    the party set while the ledger is still empty; once anything is recorded
    it stays bound for this federation object, and parties added later are
    noted in it.

    Parameters
    ----------
    current : PrivacyBudget or None
        The budget made so far.
    ledger_path : str, Path or None
        The federation's ``ledger_path`` argument.
    study : callable returning Mapping of str to str
        Current party identities.
    parties : callable returning iterable of str
        Current party names.

    Raises
    ------
    LedgerFileError
        When the parties' spending is split over several default ledgers.
    """
    if ledger_path is not None:
        if current is None:
            current = PrivacyBudget(ledger_path, parties=parties)
        return current
    ids = dict(study())
    if current is not None and (len(current.ledger) or current.refusals):
        current.ledger.note_parties(ids)  # bound: something was recorded in this file
        return current
    path = default_ledger_path(ids)
    if current is not None and current.path == path:
        current.ledger.note_parties(ids)
        return current
    budget = PrivacyBudget(path, parties=parties, study=ids)
    budget.ledger.note_parties(ids)
    budget.default_location = True
    return budget
