"""Planning DP training: noise for a target epsilon, rounds a budget affords.

Noise calibration uses ``dp_accounting.calibrate_dp_mechanism`` with a fresh
RDP or PLD accountant per trial.  Counting affordable rounds uses the ledger's
own composition rule (:func:`fedbench.dp.accounting.party_spend`, PLD via
dp-accounting) so that the answer is exactly what
:meth:`fedbench.dp.PrivacyLedger.charge` would admit, history included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal

import dp_accounting

from ..errors import ConfigurationError
from ._checks import check_count, check_delta, check_epsilon, check_positive, check_rate
from .accounting import (
    TOLERANCE,
    AccountingEvent,
    GaussianEvent,
    make_pld_accountant,
    make_rdp_accountant,
    party_spend,
)

__all__ = ["epsilon_for_rounds", "noise_multiplier_for_epsilon", "rounds_affordable"]

Method = Literal["pld", "rdp"]


def _accountant_factory(method: Method) -> Callable[[], dp_accounting.PrivacyAccountant]:
    if method == "pld":
        return make_pld_accountant
    if method == "rdp":
        return make_rdp_accountant
    raise ConfigurationError(f"method must be 'pld' or 'rdp', got {method!r}")


def epsilon_for_rounds(
    noise_multiplier: float,
    rounds: int,
    *,
    delta: float,
    sample_rate: float = 1.0,
    method: Method = "pld",
) -> float:
    """Epsilon at ``delta`` of ``rounds`` (Poisson-subsampled) Gaussian rounds.

    Parameters
    ----------
    noise_multiplier : float
        Noise standard deviation over L2 sensitivity.
    rounds : int
        Number of rounds (or steps).
    delta : float
        Target delta.
    sample_rate : float, default 1.0
        Poisson sampling probability per round.
    method : {"pld", "rdp"}
        dp-accounting accountant to use.
    """
    event = GaussianEvent(noise_multiplier, sample_rate, check_count(rounds, "rounds"))
    accountant = _accountant_factory(method)()
    accountant.compose(event.to_dp_event())
    return float(accountant.get_epsilon(check_delta(delta)))


def noise_multiplier_for_epsilon(
    epsilon: float,
    rounds: int,
    *,
    delta: float,
    sample_rate: float = 1.0,
    method: Method = "pld",
    tol: float = 1e-4,
) -> float:
    """Smallest noise multiplier giving at most ``epsilon`` at ``delta`` after ``rounds`` rounds.

    Parameters
    ----------
    epsilon, delta : float
        Target guarantee of the whole run.
    rounds : int
        Planned rounds.
    sample_rate : float, default 1.0
        Poisson sampling probability per round.
    method : {"pld", "rdp"}
        Accountant used by ``dp_accounting.calibrate_dp_mechanism``; PLD gives
        less noise for the same guarantee.
    tol : float, default 1e-4
        Tolerance on the noise multiplier; the result never exceeds the target.

    Returns
    -------
    float
        The noise multiplier (noise standard deviation over clipping norm).
    """
    epsilon = check_epsilon(epsilon)
    delta = check_delta(delta)
    rounds = check_count(rounds, "rounds")
    sample_rate = check_rate(sample_rate)
    tol = check_positive(tol, "tol")
    factory = _accountant_factory(method)

    def make_event(z: float) -> dp_accounting.DpEvent:
        return GaussianEvent(z, sample_rate, rounds).to_dp_event()

    def gap(z: float) -> float:
        accountant = factory()
        accountant.compose(make_event(z))
        return float(accountant.get_epsilon(delta)) - epsilon

    # Bracket the root ourselves, doubling or halving from z = 1: dp-accounting's default
    # bracket starts at z = 0, which is not a mechanism (infinite epsilon).
    if gap(1.0) > 0:
        lo, hi = 1.0, 2.0
        while gap(hi) > 0:
            lo, hi = hi, hi * 2
            if hi > 1e6:
                raise ConfigurationError(f"no noise multiplier up to 1e6 reaches epsilon={epsilon} at delta={delta}")
    else:
        lo, hi = 0.5, 1.0
        while gap(lo) <= 0:
            lo, hi = lo / 2, lo
            if lo < 1e-3:
                return hi  # even tiny noise meets the target; finer calibration is pointless
    return float(
        dp_accounting.calibrate_dp_mechanism(
            factory, make_event, epsilon, delta, dp_accounting.ExplicitBracketInterval(lo, hi), tol=tol
        )
    )


def rounds_affordable(
    epsilon: float,
    delta: float,
    noise_multiplier: float,
    *,
    sample_rate: float = 1.0,
    history: Iterable[AccountingEvent] = (),
    max_rounds: int = 1_000_000,
) -> int:
    """How many more rounds a budget affords, after the releases in ``history``.

    Parameters
    ----------
    epsilon, delta : float
        The party's whole budget.
    noise_multiplier : float
        Noise multiplier of the planned rounds.
    sample_rate : float, default 1.0
        Poisson sampling probability per round.
    history : iterable of events, optional
        What the party has already spent (``ledger.events(party)``).
    max_rounds : int, default 1_000_000
        Search cap; returned when even that many rounds fit.

    Returns
    -------
    int
        The largest ``n >= 0`` such that the ledger would admit ``n`` more
        rounds (charged as one event).
    """
    epsilon = check_epsilon(epsilon)
    delta = check_delta(delta)
    step = GaussianEvent(noise_multiplier, sample_rate)
    max_rounds = check_count(max_rounds, "max_rounds")
    past = [e for e in history if e.differentially_private]
    limit = epsilon * (1 + TOLERANCE)

    def spend(n: int) -> float:
        return party_spend([*past, step.with_count(n)], epsilon, delta)[0]

    e_lo = spend(1)
    if e_lo > limit:
        return 0
    lo = 1
    # Each PLD evaluation costs a fraction of a second, so gallop by extrapolation rather than
    # doubling: model spent epsilon as e0 + c * sqrt(n) (Gaussian composition grows about like
    # sqrt(n), subsampled ones faster at first) and aim 10% past the predicted answer ...
    e0 = party_spend(past, epsilon, delta)[0] if past else 0.0
    while True:
        ratio = (limit - e0) / max(e_lo - e0, 1e-12)
        n = min(max_rounds, lo * 64, max(lo + 1, math.ceil(1.1 * lo * ratio**2)))
        e = spend(n)
        if e > limit:
            hi, e_hi = n, e
            break
        lo, e_lo = n, e
        if n == max_rounds:
            return max_rounds
    # ... then close the bracket by false position with the Illinois correction: lo always
    # fits, hi never does, and the interval shrinks every step.
    side = 0
    while hi - lo > 1:
        t = (limit - e_lo) / (e_hi - e_lo)
        mid = min(max(lo + round(t * (hi - lo)), lo + 1), hi - 1)
        e = spend(mid)
        if e <= limit:
            lo, e_lo = mid, e
            if side < 0:
                e_hi = limit + (e_hi - limit) / 2
            side = -1
        else:
            hi, e_hi = mid, e
            if side > 0:
                e_lo = limit - (limit - e_lo) / 2
            side = 1
    return lo
