"""Long-lived notebook state: federations by name, privacy budgets and live dashboards.

A notebook usually works with one federation, bound to ``fed`` in the user
namespace, but may hold several (``%%federate --fed banks``).  The registry is
a module-level singleton, so it survives ``%reload_ext fedbench`` and is
reachable from plain Python through :func:`current_federation`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import NoFederationError

if TYPE_CHECKING:
    from ..federation import Federation

__all__ = ["REGISTRY", "FederationRegistry", "current_federation"]


class FederationRegistry:
    """Federations of a notebook session, by the variable name they are bound to.

    The registry also holds what a :class:`~fedbench.Federation` does not keep
    itself (yet): a privacy budget per federation when the federation has no
    ``budget`` attribute, and the dashboards to refresh after each magic.
    """

    def __init__(self) -> None:
        self._feds: dict[str, Federation] = {}
        self._current: str | None = None
        # Keyed weakly so that dropping a federation drops its budget and dashboards too.
        self._budgets: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._watchers: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()
        self._sources: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()

    # -- federations ---------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the registered federations, in registration order."""
        return list(self._feds)

    @property
    def current_name(self) -> str | None:
        """Name of the current federation, or ``None``."""
        return self._current

    @property
    def current(self) -> Federation | None:
        """The current federation, or ``None`` when none is declared."""
        return self._feds.get(self._current) if self._current is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._feds

    def __iter__(self) -> Iterator[str]:
        return iter(self._feds)

    def __len__(self) -> int:
        return len(self._feds)

    def get(self, name: str | None = None) -> Federation:
        """Return the federation called ``name`` (default: the current one).

        Raises
        ------
        NoFederationError
            No such federation, or none declared yet.
        """
        if name is None:
            if self._current is None:
                raise NoFederationError(
                    "no federation yet: declare parties in a '%%federate' cell (lines 'name: path') "
                    "or run '%federate parties --dir FOLDER'"
                )
            name = self._current
        try:
            return self._feds[name]
        except KeyError:
            known = ", ".join(self._feds) or "none"
            raise NoFederationError(f"no federation called {name!r} (federations: {known})") from None

    def set(self, name: str, federation: Federation, *, current: bool = True) -> None:
        """Register ``federation`` under ``name`` (replacing any previous one) and make it current."""
        self._feds[name] = federation
        if current or self._current is None:
            self._current = name

    def use(self, name: str) -> Federation:
        """Make the federation called ``name`` current and return it."""
        fed = self.get(name)
        self._current = name
        return fed

    def remove(self, name: str | None = None) -> Federation:
        """Unregister a federation (default: the current one) and return it."""
        fed = self.get(name)
        key = name if name is not None else self._current
        del self._feds[key]  # type: ignore[arg-type]
        if self._current == key:
            self._current = next(reversed(self._feds), None)
        return fed

    def clear(self) -> list[Federation]:
        """Unregister every federation and return them."""
        feds = list(self._feds.values())
        self._feds.clear()
        self._current = None
        return feds

    def sync(self, namespace: MutableMapping[str, Any], default_name: str) -> None:
        """Adopt federations the user rebound in ``namespace`` (``fed = fb.Federation(...)``).

        The user namespace wins: if a registered name now holds another
        :class:`~fedbench.Federation`, that one replaces the registered one; if
        nothing is registered and ``default_name`` holds a federation, it becomes
        current.
        """
        from ..federation import Federation

        for name in list(self._feds):
            value = namespace.get(name)
            if isinstance(value, Federation) and value is not self._feds[name]:
                self._feds[name] = value
        if self._current is None:
            value = namespace.get(default_name)
            if isinstance(value, Federation):
                self.set(default_name, value)

    def sources(self, federation: Federation) -> dict[str, str]:
        """Where each party of ``federation`` declared through the magics came from (path or object key).

        Lets a re-run parties cell recognise parties it already added, including
        those made from a DataFrame variable (whose ``Party.source`` says only
        ``<polars DataFrame>``).
        """
        return self._sources.setdefault(federation, {})

    # -- privacy budgets -------------------------------------------------------------------
    def budget(self, federation: Federation, *, create: bool = True) -> Any:
        """The federation's privacy budget (``fedbench.dp.PrivacyBudget``), or ``None``.

        Uses ``federation.budget`` when the federation provides one; otherwise a
        budget kept here (in memory) for that federation, created on demand.

        Raises
        ------
        FeatureUnavailableError
            When ``fedbench.dp`` is not installed and a budget must be created.
        """
        own = getattr(federation, "budget", None)
        if own is not None:
            return own
        budget = self._budgets.get(federation)
        if budget is None and create:
            from .availability import require

            dp = require("dp")
            budget = dp.PrivacyBudget(parties=lambda: federation.party_names)
            self._budgets[federation] = budget
        return budget

    # -- live dashboards -----------------------------------------------------------------
    def watch(self, federation: Federation, dashboard: Any) -> None:
        """Refresh ``dashboard`` (anything with ``refresh()``) after every magic on ``federation``."""
        self._watchers.setdefault(federation, weakref.WeakSet()).add(dashboard)

    def watching(self, federation: Federation) -> list[Any]:
        """Dashboards refreshed after magics on ``federation``."""
        return list(self._watchers.get(federation, ()))

    def refresh(self, federation: Federation | None) -> None:
        """Refresh every dashboard watching ``federation``; a failing dashboard never fails the magic."""
        if federation is None:
            return
        for dash in self.watching(federation):
            try:
                dash.refresh()
            except Exception as exc:  # a dashboard bug must not turn a finished computation into an error
                log = getattr(dash, "log", None)
                if log is not None:
                    log.append_stderr(f"refresh failed: {type(exc).__name__}: {exc}\n")

    def __repr__(self) -> str:
        if not self._feds:
            return "<FederationRegistry: no federation>"
        items = ", ".join(f"{n}{'*' if n == self._current else ''} ({len(f)} parties)" for n, f in self._feds.items())
        return f"<FederationRegistry: {items}>"


#: The notebook session's registry.
REGISTRY = FederationRegistry()


def current_federation() -> Federation:
    """The federation the magics work on (bound to ``fed`` in the notebook by default).

    Returns
    -------
    Federation

    Raises
    ------
    NoFederationError
        When no federation was declared with ``%%federate`` (or adopted from the namespace).
    """
    return REGISTRY.get()
