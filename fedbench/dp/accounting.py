"""Privacy accounting with Google's ``dp-accounting`` library.

fedbench never implements an accountant of its own: every epsilon and delta
below comes from :mod:`dp_accounting` (RDP accountant, privacy-loss
distributions and the analytic Gaussian formulas).  This module only describes
*what* was released, as small JSON-serialisable events, and feeds them to it.

Events
------
:class:`PureDPEvent`
    An ``epsilon``-DP release (Laplace mechanism, exponential-mechanism
    quantile, ...), possibly repeated ``count`` times.
:class:`GaussianEvent`
    A Gaussian mechanism with noise multiplier ``z = sigma / L2-sensitivity``,
    optionally Poisson-subsampled with probability ``sample_rate`` (DP-FedAvg
    rounds, DP-SGD steps), repeated ``count`` times.
:class:`NonPrivateEvent`
    An exact, *not* differentially private release (e.g. the size of a private
    set intersection).  The ledger records it and flags it; it charges no
    epsilon.  Composition helpers report ``inf`` for it, as dp-accounting does.

Neighbouring relation and discretisation
----------------------------------------
All accounting uses add/remove-one neighbours
(:attr:`NeighboringRelation.ADD_OR_REMOVE_ONE`).  Privacy-loss distributions are
built with ``value_discretization_interval`` pinned to :data:`PLD_DISCRETIZATION`
(``1e-4``) and pessimistic estimates, so PLD figures are upper bounds that are
reproducible across runs.

Pure epsilon-DP events in a PLD
-------------------------------
dp-accounting's ``LaplaceDpEvent`` describes the *scalar* Laplace mechanism;
its PLD is not a valid bound for every epsilon-DP release (vector Laplace with
an L1 sensitivity, the exponential mechanism).  Pure events are therefore
turned into the worst-case PLD of an ``(epsilon, 0)``-DP mechanism
(``privacy_loss_distribution.from_privacy_parameters``), whose self-composition
is the optimal composition theorem of Kairouz, Oh and Viswanath (2015): 100
releases at epsilon 0.1 give 4.775 at delta 1e-6 instead of 10.0.  In the RDP
accountant they become ``ZCDpEvent(rho=epsilon**2 / 2)`` (Bun and Steinke 2016,
valid for every epsilon-DP mechanism, loose for a single release).

Per-party composition rule (the ledger's rule)
----------------------------------------------
:func:`party_spend` reports what a party has spent against its budget
``(epsilon_B, delta_B)``:

* only pure events: basic composition, ``(sum of epsilons, 0)``.  This is exact
  (no delta is consumed) and is what makes "ten queries of 0.1 exactly fill a
  budget of 1.0" hold.
* at least one Gaussian event: the smallest of two valid bounds at
  ``delta_B``, both from dp-accounting PLDs:

  - A: ``sum(pure epsilons) + epsilon_PLD(Gaussian events; delta_B)``
    (basic composition of the pure part with the PLD of the Gaussian part);
  - B: ``epsilon_PLD(all events; delta_B)`` (one PLD of everything).

  Spent delta is the matching view of the same privacy curve:
  ``min(delta_A(epsilon_B), delta_B(epsilon_B))``, i.e. the delta at which the
  history already achieves the whole epsilon budget.  Spent epsilon stays
  below ``epsilon_B`` exactly when spent delta stays below ``delta_B``, and both
  figures grow as releases accumulate.  Note that the pair
  ``(spent epsilon, spent delta)`` is two points of one curve, not one
  guarantee: the guarantees are ``(spent epsilon, delta_B)``-DP and
  ``(epsilon_B, spent delta)``-DP.

Because bound B can beat basic composition for long pure histories, a party's
spent epsilon can drop slightly when its first Gaussian event arrives: the
report then switches from a pure ``(epsilon, 0)`` statement to an
``(epsilon, delta_B)`` one.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import dp_accounting
import numpy as np
from dp_accounting import pld as _pld
from dp_accounting import rdp as _rdp
from dp_accounting.pld import common as _pld_common

from ..errors import ConfigurationError
from ._checks import check_count, check_delta, check_epsilon, check_positive, check_rate

if TYPE_CHECKING:
    from dp_accounting.pld.privacy_loss_distribution import PrivacyLossDistribution

    from .config import DPConfig

__all__ = [
    "NEIGHBORING_RELATION",
    "PLD_DISCRETIZATION",
    "TOLERANCE",
    "AccountingEvent",
    "DPFedAvgAccountant",
    "GaussianEvent",
    "NonPrivateEvent",
    "PureDPEvent",
    "compose_epsilon",
    "delta_pld",
    "epsilon_basic",
    "epsilon_pld",
    "epsilon_rdp",
    "event_from_json",
    "make_pld_accountant",
    "make_rdp_accountant",
    "party_spend",
    "rdp_curve",
    "rdp_epsilon_from_curve",
]

#: PLD value discretisation, pinned so that figures are reproducible.
PLD_DISCRETIZATION = 1e-4

#: Neighbouring datasets differ by adding or removing one record (or one party's contribution).
NEIGHBORING_RELATION = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE

#: Relative tolerance when comparing a spend with a budget (float sums of 0.1 are not exact).
TOLERANCE = 1e-9

Method = Literal["pld", "rdp", "basic"]


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PureDPEvent:
    """An ``epsilon``-DP release, repeated ``count`` times.

    Parameters
    ----------
    epsilon : float
        Privacy parameter of one release (> 0).
    count : int, default 1
        Number of identical releases.
    """

    epsilon: float
    count: int = 1
    kind: ClassVar[str] = "pure"
    differentially_private: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "count", check_count(self.count))

    def with_count(self, count: int) -> PureDPEvent:
        """Return the same release repeated ``count`` times."""
        return replace(self, count=count)

    def to_dp_event(self) -> dp_accounting.DpEvent:
        """RDP-compatible dp-accounting event (zCDP with ``rho = epsilon**2 / 2``)."""
        event = dp_accounting.ZCDpEvent(rho=self.epsilon**2 / 2)
        return event if self.count == 1 else dp_accounting.SelfComposedDpEvent(event, self.count)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (see :func:`event_from_json`)."""
        return {"type": self.kind, "epsilon": self.epsilon, "count": self.count}

    def describe(self) -> str:
        """Short human-readable description."""
        times = f" x {self.count}" if self.count > 1 else ""
        return f"pure ε={self.epsilon:g}{times}"


@dataclass(frozen=True, slots=True)
class GaussianEvent:
    """A (Poisson-subsampled) Gaussian mechanism, repeated ``count`` times.

    Parameters
    ----------
    noise_multiplier : float
        Noise standard deviation divided by the L2 sensitivity (> 0).
    sample_rate : float, default 1.0
        Poisson sampling probability of each record (or party) per repetition;
        1.0 means no subsampling (full participation).
    count : int, default 1
        Number of repetitions (rounds, steps or queries).
    """

    noise_multiplier: float
    sample_rate: float = 1.0
    count: int = 1
    kind: ClassVar[str] = "gaussian"
    differentially_private: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", check_positive(self.noise_multiplier, "noise_multiplier"))
        object.__setattr__(self, "sample_rate", check_rate(self.sample_rate))
        object.__setattr__(self, "count", check_count(self.count))

    @classmethod
    def from_sigma(cls, sigma: float, sensitivity: float, *, sample_rate: float = 1.0, count: int = 1) -> GaussianEvent:
        """Event of Gaussian noise of standard deviation ``sigma`` on an L2 ``sensitivity``."""
        sigma = check_positive(sigma, "sigma")
        sensitivity = check_positive(sensitivity, "sensitivity")
        return cls(sigma / sensitivity, sample_rate, count)

    def with_count(self, count: int) -> GaussianEvent:
        """Return the same mechanism repeated ``count`` times."""
        return replace(self, count=count)

    def to_dp_event(self) -> dp_accounting.DpEvent:
        """The equivalent dp-accounting event."""
        event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.sample_rate < 1.0:
            event = dp_accounting.PoissonSampledDpEvent(self.sample_rate, event)
        return event if self.count == 1 else dp_accounting.SelfComposedDpEvent(event, self.count)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (see :func:`event_from_json`)."""
        return {
            "type": self.kind,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "count": self.count,
        }

    def describe(self) -> str:
        """Short human-readable description."""
        sampled = f", q={self.sample_rate:g}" if self.sample_rate < 1 else ""
        times = f" x {self.count}" if self.count > 1 else ""
        return f"Gaussian z={self.noise_multiplier:g}{sampled}{times}"


@dataclass(frozen=True, slots=True)
class NonPrivateEvent:
    """An exact release that is *not* differentially private (e.g. a PSI size).

    Parameters
    ----------
    count : int, default 1
        Number of exact releases.
    """

    count: int = 1
    kind: ClassVar[str] = "non_private"
    differentially_private: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", check_count(self.count))

    def with_count(self, count: int) -> NonPrivateEvent:
        """Return ``count`` exact releases."""
        return replace(self, count=count)

    def to_dp_event(self) -> dp_accounting.DpEvent:
        """dp-accounting's non-private event (infinite epsilon when composed)."""
        return dp_accounting.NonPrivateDpEvent()

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (see :func:`event_from_json`)."""
        return {"type": self.kind, "count": self.count}

    def describe(self) -> str:
        """Short human-readable description."""
        return "exact release (not differentially private)"


AccountingEvent = PureDPEvent | GaussianEvent | NonPrivateEvent
_EVENT_TYPES = (PureDPEvent, GaussianEvent, NonPrivateEvent)


def event_from_json(data: Any) -> AccountingEvent:
    """Rebuild an event from :meth:`to_json` output.

    Raises
    ------
    ConfigurationError
        If ``data`` does not describe a valid event.
    """
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConfigurationError(f"not an accounting event: {data!r}")
    fields = {k: v for k, v in data.items() if k != "type"}
    try:
        if data["type"] == PureDPEvent.kind and set(fields) == {"epsilon", "count"}:
            return PureDPEvent(**fields)
        if data["type"] == GaussianEvent.kind and set(fields) == {"noise_multiplier", "sample_rate", "count"}:
            return GaussianEvent(**fields)
        if data["type"] == NonPrivateEvent.kind and set(fields) == {"count"}:
            return NonPrivateEvent(**fields)
    except TypeError as exc:  # wrong field types slipping past the dataclass
        raise ConfigurationError(f"not an accounting event: {data!r} ({exc})") from exc
    raise ConfigurationError(f"not an accounting event: {data!r}")


def _check_events(events: Iterable[AccountingEvent]) -> list[AccountingEvent]:
    out = list(events)
    for e in out:
        if not isinstance(e, _EVENT_TYPES):
            raise ConfigurationError(f"expected PureDPEvent, GaussianEvent or NonPrivateEvent, got {type(e).__name__}")
    return out


# -- accountants -------------------------------------------------------------------------------
def make_rdp_accountant() -> dp_accounting.PrivacyAccountant:
    """A fresh dp-accounting RDP accountant (default orders, add/remove neighbours)."""
    return _rdp.RdpAccountant(neighboring_relation=NEIGHBORING_RELATION)


def make_pld_accountant() -> dp_accounting.PrivacyAccountant:
    """A fresh dp-accounting PLD accountant (discretisation pinned to :data:`PLD_DISCRETIZATION`)."""
    return _pld.PLDAccountant(
        neighboring_relation=NEIGHBORING_RELATION, value_discretization_interval=PLD_DISCRETIZATION
    )


# -- PLD construction (cached: the ledger recomputes a party's composition on every check) -------
@lru_cache(maxsize=256)
def _pure_pld(epsilon: float, count: int) -> PrivacyLossDistribution:
    base = _pld.privacy_loss_distribution.from_privacy_parameters(
        _pld_common.DifferentialPrivacyParameters(epsilon, 0.0),
        value_discretization_interval=PLD_DISCRETIZATION,
    )
    return base if count == 1 else base.self_compose(count)


@lru_cache(maxsize=64)
def _sampled_gaussian_base(noise_multiplier: float, sample_rate: float) -> PrivacyLossDistribution:
    # Building one subsampled-Gaussian PLD is the slow part; cache it apart from the count.
    return _pld.privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        value_discretization_interval=PLD_DISCRETIZATION,
        sampling_prob=sample_rate,
        neighboring_relation=NEIGHBORING_RELATION,
    )


@lru_cache(maxsize=32)  # PLDs of long runs are large arrays
def _gaussian_pld(noise_multiplier: float, sample_rate: float, count: int) -> PrivacyLossDistribution:
    # Mirrors dp_accounting.pld.PLDAccountant: k unsampled Gaussians compose exactly into
    # one Gaussian with noise multiplier z / sqrt(k); sampled ones are self-composed.
    if sample_rate == 1.0:
        return _pld.privacy_loss_distribution.from_gaussian_mechanism(
            standard_deviation=noise_multiplier / math.sqrt(count),
            value_discretization_interval=PLD_DISCRETIZATION,
            neighboring_relation=NEIGHBORING_RELATION,
        )
    base = _sampled_gaussian_base(noise_multiplier, sample_rate)
    return base if count == 1 else base.self_compose(count)


PureKey = tuple[tuple[float, int], ...]
GaussKey = tuple[tuple[tuple[float, float], int], ...]


def _group(events: Iterable[AccountingEvent]) -> tuple[PureKey, GaussKey, int]:
    """Canonical multiset form of a history: (pure groups, Gaussian groups, exact releases)."""
    pure: Counter[float] = Counter()
    gauss: Counter[tuple[float, float]] = Counter()
    exact = 0
    for e in events:
        if isinstance(e, PureDPEvent):
            pure[e.epsilon] += e.count
        elif isinstance(e, GaussianEvent):
            gauss[(e.noise_multiplier, e.sample_rate)] += e.count
        else:
            exact += e.count
    # Unsampled Gaussians compose exactly into one Gaussian: 1/z^2 adds up.
    full = [(z, n) for (z, q), n in gauss.items() if q == 1.0]
    if len(full) > 1:
        inv = math.fsum(n / z**2 for z, n in full)
        for z, _ in full:
            del gauss[(z, 1.0)]
        gauss[(1.0 / math.sqrt(inv), 1.0)] = 1
    return tuple(sorted(pure.items())), tuple(sorted(gauss.items())), exact


def _pure_sum(pure: PureKey) -> float:
    # fsum of every repetition: the correctly rounded sum, whatever the grouping or order,
    # so that ten charges of 0.1 and one charge of 0.1 x 10 both spend exactly 1.0.
    return math.fsum(itertools.chain.from_iterable(itertools.repeat(eps, n) for eps, n in pure))


def _compose_pld(pure: PureKey, gauss: GaussKey) -> PrivacyLossDistribution:
    result = None
    for eps, n in pure:
        part = _pure_pld(eps, n)
        result = part if result is None else result.compose(part)
    for (z, q), n in gauss:
        part = _gaussian_pld(z, q, n)
        result = part if result is None else result.compose(part)
    if result is None:
        return _pld.privacy_loss_distribution.identity(value_discretization_interval=PLD_DISCRETIZATION)
    return result


# -- composition -------------------------------------------------------------------------------
def epsilon_basic(events: Iterable[AccountingEvent]) -> float:
    """Basic (sequential) composition of pure epsilon-DP events: the sum of epsilons.

    Exact for pure DP at delta = 0.  Exact releases give ``inf``.

    Raises
    ------
    ConfigurationError
        If a Gaussian event is present (it has no pure epsilon; use PLD or RDP).
    """
    pure, gauss, exact = _group(_check_events(events))
    if gauss:
        raise ConfigurationError("basic composition covers pure epsilon-DP events only; use method='pld'")
    if exact:
        return math.inf
    return _pure_sum(pure)


def epsilon_pld(events: Iterable[AccountingEvent], delta: float) -> float:
    """Epsilon of the composition at ``delta`` from a dp-accounting privacy-loss distribution.

    Parameters
    ----------
    events : iterable of events
        Releases to compose.
    delta : float
        Target delta, in [0, 1).  Pure events composed at ``delta = 0`` give ``inf``
        (a PLD cannot certify pure DP); ask at a tiny delta such as 1e-12.

    Returns
    -------
    float
        Epsilon (``inf`` if an exact release is present).
    """
    events = _check_events(events)
    delta = _check_target_delta(delta)
    pure, gauss, exact = _group(events)
    if exact:
        return math.inf
    return max(0.0, float(_compose_pld(pure, gauss).get_epsilon_for_delta(delta)))


def delta_pld(events: Iterable[AccountingEvent], epsilon: float) -> float:
    """Delta of the composition at ``epsilon`` from a dp-accounting privacy-loss distribution."""
    events = _check_events(events)
    if not (isinstance(epsilon, int | float) and epsilon >= 0 and math.isfinite(epsilon)):
        raise ConfigurationError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    pure, gauss, exact = _group(events)
    if exact:
        return 1.0
    return float(_compose_pld(pure, gauss).get_delta_for_epsilon(epsilon))


def epsilon_rdp(events: Iterable[AccountingEvent], delta: float) -> float:
    """Epsilon of the composition at ``delta`` from dp-accounting's RDP accountant."""
    events = _check_events(events)
    delta = check_delta(delta)
    accountant = make_rdp_accountant()
    for e in events:
        accountant.compose(e.to_dp_event())
    return float(accountant.get_epsilon(delta))


def rdp_curve(events: Iterable[AccountingEvent]) -> tuple[tuple[float, ...], np.ndarray]:
    """RDP orders and RDP values of a composition, from dp-accounting's RDP accountant.

    Useful to extrapolate: ``n`` repetitions of a composition have ``n`` times its RDP.
    """
    pure, gauss, exact = _group(_check_events(events))
    if exact:
        raise ConfigurationError("an exact (non-private) release has no RDP curve")
    accountant = make_rdp_accountant()
    for eps, n in pure:
        accountant.compose(PureDPEvent(eps).to_dp_event(), n)
    for (z, q), n in gauss:
        accountant.compose(GaussianEvent(z, q).to_dp_event(), n)
    return tuple(accountant.orders), np.asarray(accountant.rdp, dtype=float)


def rdp_epsilon_from_curve(orders: Iterable[float], rdp: np.ndarray, delta: float) -> float:
    """Epsilon at ``delta`` of an RDP curve (``dp_accounting.rdp.compute_epsilon``)."""
    eps, _ = _rdp.compute_epsilon(list(orders), np.asarray(rdp, dtype=float), check_delta(delta))
    return float(eps)


def compose_epsilon(events: Iterable[AccountingEvent], delta: float = 0.0, *, method: Method = "pld") -> float:
    """Epsilon of a composition by ``method``: ``"pld"`` (tightest), ``"rdp"`` or ``"basic"``.

    ``delta`` is ignored by ``"basic"`` (pure events only, delta = 0).
    """
    if method == "basic":
        return epsilon_basic(events)
    if method == "pld":
        return epsilon_pld(events, delta)
    if method == "rdp":
        return epsilon_rdp(events, delta)
    raise ConfigurationError(f"method must be 'pld', 'rdp' or 'basic', got {method!r}")


def _check_target_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not (0.0 <= float(delta) < 1.0):
        raise ConfigurationError(f"delta must be a number in [0, 1), got {delta!r}")
    return float(delta)


def party_spend(events: Iterable[AccountingEvent], epsilon_budget: float, delta_budget: float) -> tuple[float, float]:
    """What a history of releases has spent of a budget, by the ledger's rule.

    See the module docstring: pure-only histories compose by exact basic
    composition ``(sum, 0)``; histories with a Gaussian event take the tighter
    of two dp-accounting PLD bounds at ``delta_budget``.  Exact
    (non-private) releases are ignored here: the ledger flags them instead.

    Parameters
    ----------
    events : iterable of events
        The party's releases.
    epsilon_budget, delta_budget : float
        The party's budget.

    Returns
    -------
    (epsilon, delta) : tuple of float
        Spent epsilon at ``delta_budget`` and spent delta at ``epsilon_budget``.
    """
    epsilon_budget = check_epsilon(epsilon_budget)
    delta_budget = check_delta(delta_budget)
    pure, gauss, _ = _group(_check_events(events))
    return _spend(pure, gauss, epsilon_budget, delta_budget)


@lru_cache(maxsize=4096)
def _spend(pure: PureKey, gauss: GaussKey, epsilon_budget: float, delta_budget: float) -> tuple[float, float]:
    pure_sum = _pure_sum(pure)
    if not gauss:
        return pure_sum, 0.0
    approx = _compose_pld((), gauss)
    eps_a = pure_sum + max(0.0, float(approx.get_epsilon_for_delta(delta_budget)))
    rest = epsilon_budget - pure_sum
    delta_a = float(approx.get_delta_for_epsilon(rest)) if rest >= 0 else 1.0
    if pure:
        full = _compose_pld(pure, gauss)
        eps_b = max(0.0, float(full.get_epsilon_for_delta(delta_budget)))
        delta_b = float(full.get_delta_for_epsilon(epsilon_budget))
    else:
        eps_b, delta_b = eps_a, delta_a
    return min(eps_a, eps_b), min(delta_a, delta_b)


# -- DP-FedAvg ---------------------------------------------------------------------------------
class DPFedAvgAccountant:
    """Round-by-round accountant of DP-FedAvg (Poisson-subsampled Gaussian).

    Each round releases the sum of clipped updates plus Gaussian noise of
    standard deviation ``noise_multiplier * clip``; with ``sample_rate = q < 1``
    each party (or record, for DP-SGD style local steps) takes part in a round
    independently with probability ``q``.  The live figure after each round is
    from dp-accounting's RDP accountant (cheap to update); :meth:`epsilon` with
    ``method="pld"`` gives the tighter PLD headline figure on request.

    Parameters
    ----------
    config : DPConfig
        Noise multiplier, clipping norm and sample rate.
    delta : float, optional
        Target delta; defaults to ``config.delta``.

    Notes
    -----
    Guarantees are for add/remove-one neighbours of the unit the clipping bounds
    (one party's whole update in DP-FedAvg, McMahan et al. 2018; one example's
    gradient in DP-SGD).
    """

    def __init__(self, config: DPConfig, delta: float | None = None) -> None:
        if delta is None:
            delta = config.delta
        if delta is None:
            raise ConfigurationError("DPFedAvgAccountant needs a delta: pass delta=... or set DPConfig.delta")
        self.config = config
        self.delta = check_delta(delta)
        self._step = GaussianEvent(config.noise_multiplier, config.sample_rate)
        # RDP composes additively per order: compute one round's RDP curve once with
        # dp-accounting, then n rounds are n times it (converted by dp-accounting too).
        self._orders, self._step_rdp = rdp_curve([self._step])
        self.rounds = 0
        #: RDP epsilon after each completed round.
        self.history: list[float] = []

    def step(self, rounds: int = 1) -> float:
        """Account for ``rounds`` more rounds and return the live (RDP) epsilon."""
        rounds = check_count(rounds, "rounds")
        for _ in range(rounds):
            self.rounds += 1
            self.history.append(self._rdp_epsilon(self.rounds))
        return self.history[-1]

    def _rdp_epsilon(self, rounds: int) -> float:
        return rdp_epsilon_from_curve(self._orders, rounds * self._step_rdp, self.delta)

    def epsilon(self, method: Literal["rdp", "pld"] = "rdp") -> float:
        """Epsilon after the rounds so far: ``"rdp"`` (live figure) or ``"pld"`` (headline figure)."""
        if self.rounds == 0:
            return 0.0
        if method == "rdp":
            return self._rdp_epsilon(self.rounds)
        if method == "pld":
            accountant = make_pld_accountant()
            accountant.compose(self.event.to_dp_event())
            return float(accountant.get_epsilon(self.delta))
        raise ConfigurationError(f"method must be 'rdp' or 'pld', got {method!r}")

    @property
    def event(self) -> GaussianEvent:
        """The rounds so far as one event, ready to charge to a ledger."""
        if self.rounds == 0:
            raise ConfigurationError("no round has been accounted yet")
        return self._step.with_count(self.rounds)

    def __repr__(self) -> str:
        eps = f"{self.history[-1]:.4g}" if self.history else "0"
        return (
            f"<DPFedAvgAccountant z={self.config.noise_multiplier:g} q={self.config.sample_rate:g}: "
            f"{self.rounds} rounds, ε={eps} (RDP) at δ={self.delta:g}>"
        )
