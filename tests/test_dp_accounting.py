"""Reference values of the DP accounting (dp-accounting 0.6.0, add/remove neighbours)."""

from __future__ import annotations

import math

import dp_accounting
import pytest

from fedbench.dp import (
    DPConfig,
    DPFedAvgAccountant,
    GaussianEvent,
    NonPrivateEvent,
    PureDPEvent,
    compose_epsilon,
    delta_pld,
    epsilon_basic,
    epsilon_for_rounds,
    epsilon_pld,
    epsilon_rdp,
    gaussian_epsilon,
    gaussian_sigma,
    noise_multiplier_for_epsilon,
    party_spend,
    rounds_affordable,
)
from fedbench.dp.accounting import PLD_DISCRETIZATION, event_from_json, make_pld_accountant
from fedbench.errors import ConfigurationError

DELTA = 1e-5
MNIST_Q = 256 / 60000

# (sample rate, steps, RDP, PLD) for noise multiplier 1.1 at delta 1e-5.
SUBSAMPLED = [
    (0.01, 100, 0.9561, 0.5498),
    (0.01, 10000, 5.632, 5.193),
    (MNIST_Q, 100, 0.6975, 0.2179),
    (MNIST_Q, 10000, 2.162, 1.978),
]


@pytest.mark.parametrize(("q", "steps", "rdp", "pld"), SUBSAMPLED)
def test_subsampled_gaussian_reference_values(q: float, steps: int, rdp: float, pld: float) -> None:
    event = GaussianEvent(1.1, q, steps)
    # Printed references have 4 significant figures: compare at rel 1e-3.
    assert epsilon_rdp([event], DELTA) == pytest.approx(rdp, rel=1e-3)
    assert epsilon_pld([event], DELTA) == pytest.approx(pld, rel=1e-3)
    assert epsilon_for_rounds(1.1, steps, delta=DELTA, sample_rate=q, method="rdp") == pytest.approx(rdp, rel=1e-3)
    assert epsilon_for_rounds(1.1, steps, delta=DELTA, sample_rate=q, method="pld") == pytest.approx(pld, rel=1e-3)


def test_rdp_matches_dp_accounting_directly() -> None:
    # Our events must be exactly the dp-accounting events (rel 1e-6, same computation).
    direct = dp_accounting.rdp.RdpAccountant()
    direct.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1)), 100
        )
    )
    assert epsilon_rdp([GaussianEvent(1.1, 0.01, 100)], DELTA) == pytest.approx(direct.get_epsilon(DELTA), rel=1e-6)


def test_pld_of_events_matches_pld_accountant() -> None:
    # The ledger builds PLDs itself (to mix in pure events); it must agree with PLDAccountant.
    event = GaussianEvent(1.1, 0.01, 100)
    accountant = make_pld_accountant()
    accountant.compose(event.to_dp_event())
    assert epsilon_pld([event], DELTA) == pytest.approx(accountant.get_epsilon(DELTA), rel=1e-9)
    assert PLD_DISCRETIZATION == 1e-4


def test_dpfedavg_accountant_live_and_headline() -> None:
    acc = DPFedAvgAccountant(DPConfig(noise_multiplier=1.1, clip=1.0, sample_rate=0.01), delta=DELTA)
    assert acc.epsilon() == 0.0
    live = [acc.step() for _ in range(100)]
    assert acc.rounds == 100 and len(acc.history) == 100
    assert live == sorted(live)  # epsilon never decreases
    assert live[-1] == pytest.approx(0.9561, rel=1e-3)
    assert acc.epsilon("rdp") == pytest.approx(0.9561, rel=1e-3)
    # Extrapolating one round's RDP curve is exactly what the RDP accountant computes.
    assert acc.epsilon("rdp") == pytest.approx(epsilon_rdp([GaussianEvent(1.1, 0.01, 100)], DELTA), rel=1e-6)
    assert acc.epsilon("pld") == pytest.approx(0.5498, rel=1e-3)
    assert acc.event == GaussianEvent(1.1, 0.01, 100)
    assert "100 rounds" in repr(acc)


def test_dpfedavg_accountant_needs_delta() -> None:
    with pytest.raises(ConfigurationError, match="delta"):
        DPFedAvgAccountant(DPConfig(noise_multiplier=1.0, clip=1.0))
    acc = DPFedAvgAccountant(DPConfig(noise_multiplier=1.0, clip=1.0, delta=1e-6))
    assert acc.delta == 1e-6


def test_full_participation_gaussian_50_rounds() -> None:
    event = GaussianEvent(1.0, 1.0, 50)
    # 50 Gaussian rounds at sigma 1 are exactly one Gaussian at sigma 1/sqrt(50).
    exact = dp_accounting.get_epsilon_gaussian(1.0 / math.sqrt(50), DELTA)
    assert exact == pytest.approx(54.38, rel=1e-3)
    assert epsilon_pld([event], DELTA) == pytest.approx(54.38, rel=1e-3)
    assert epsilon_pld([event], DELTA) == pytest.approx(exact, rel=1e-3)
    assert epsilon_rdp([event], DELTA) == pytest.approx(57.30, rel=1e-3)
    # Separate unsampled events are merged exactly too.
    assert epsilon_pld([GaussianEvent(1.0)] * 50, DELTA) == pytest.approx(exact, rel=1e-3)


def test_calibration_reference_values() -> None:
    rdp = noise_multiplier_for_epsilon(1.0, 1000, delta=DELTA, sample_rate=0.01, method="rdp")
    assert rdp == pytest.approx(1.513, rel=1e-3)
    pld = noise_multiplier_for_epsilon(1.0, 1000, delta=DELTA, sample_rate=0.01, method="pld")
    assert pld == pytest.approx(1.415, rel=1e-3)
    # Calibration never overshoots the target.
    assert epsilon_for_rounds(pld, 1000, delta=DELTA, sample_rate=0.01) <= 1.0


def test_calibration_small_noise_target() -> None:
    # A generous target is met below z = 1: the bracket search must go down, not up.
    z = noise_multiplier_for_epsilon(20.0, 1, delta=DELTA, method="rdp")
    assert z < 1.0
    assert epsilon_for_rounds(z, 1, delta=DELTA, method="rdp") <= 20.0


def test_dpconfig_for_target() -> None:
    cfg = DPConfig.for_target(1.0, 1000, delta=DELTA, clip=2.0, sample_rate=0.01, method="rdp")
    assert cfg.noise_multiplier == pytest.approx(1.513, rel=1e-3)
    assert cfg.noise_std == pytest.approx(2.0 * cfg.noise_multiplier)
    assert cfg.delta == DELTA


def test_laplace_ten_at_point_one() -> None:
    events = [PureDPEvent(0.1)] * 10
    assert epsilon_basic(events) == 1.0
    assert compose_epsilon(events, method="basic") == 1.0
    # A PLD cannot certify pure DP: delta 0 gives inf, a tiny delta gives the sum.
    assert epsilon_pld(events, 0.0) == math.inf
    assert epsilon_pld(events, 1e-12) == pytest.approx(1.000, rel=1e-3)
    assert epsilon_pld(events, 1e-12) <= 1.0 + 1e-9


def test_laplace_hundred_at_point_one() -> None:
    events = [PureDPEvent(0.1, count=100)]
    assert epsilon_basic(events) == pytest.approx(10.00, rel=1e-12)
    # Optimal composition (Kairouz-Oh-Viswanath) through the worst-case pure-DP PLD.
    assert epsilon_pld(events, 1e-6) == pytest.approx(4.775, rel=1e-3)
    assert delta_pld(events, 4.775) == pytest.approx(1e-6, rel=0.05)
    # RDP is valid but looser for pure events.
    assert 4.775 < epsilon_rdp(events, 1e-6) < 10.0


def test_non_private_events_are_infinite_in_composition() -> None:
    assert epsilon_pld([NonPrivateEvent()], 1e-6) == math.inf
    assert epsilon_basic([PureDPEvent(0.1), NonPrivateEvent()]) == math.inf
    assert delta_pld([NonPrivateEvent()], 1.0) == 1.0


def test_basic_composition_refuses_gaussian() -> None:
    with pytest.raises(ConfigurationError, match="pure"):
        epsilon_basic([GaussianEvent(1.0)])


def test_party_spend_rule() -> None:
    # Pure only: exact sum, no delta.
    assert party_spend([PureDPEvent(0.1)] * 10, 1.0, 1e-6) == (1.0, 0.0)
    assert party_spend([PureDPEvent(0.1, 10)], 1.0, 1e-6) == (1.0, 0.0)
    # Gaussian only: the PLD epsilon at the budget's delta, and the delta at the budget's epsilon.
    eps, delta = party_spend([GaussianEvent(3.0)], 2.0, 1e-6)
    assert eps == pytest.approx(epsilon_pld([GaussianEvent(3.0)], 1e-6), rel=1e-12)
    assert delta == pytest.approx(delta_pld([GaussianEvent(3.0)], 2.0), rel=1e-12)
    assert eps < 2.0 and delta < 1e-6  # both views agree the budget is not exhausted
    # Mixture: never more than basic composition of the two parts.
    mixed = party_spend([PureDPEvent(0.5), GaussianEvent(3.0)], 3.0, 1e-6)
    assert mixed[0] <= 0.5 + eps + 1e-12
    # Exact releases cost nothing here (the ledger flags them).
    assert party_spend([NonPrivateEvent(), PureDPEvent(0.2)], 1.0, 1e-6) == (0.2, 0.0)


def test_rounds_affordable_is_tight() -> None:
    n = rounds_affordable(2.0, DELTA, 1.1, sample_rate=0.01, max_rounds=10_000)
    assert epsilon_for_rounds(1.1, n, delta=DELTA, sample_rate=0.01) <= 2.0
    assert epsilon_for_rounds(1.1, n + 1, delta=DELTA, sample_rate=0.01) > 2.0
    # History counts against the budget; a spent budget affords nothing.
    assert rounds_affordable(2.0, DELTA, 1.1, sample_rate=0.01, history=[PureDPEvent(1.0)]) < n
    assert rounds_affordable(1.0, DELTA, 1.1, history=[PureDPEvent(1.0)]) == 0
    # The cap is honoured.
    assert rounds_affordable(50.0, DELTA, 5.0, sample_rate=0.001, max_rounds=7) == 7


def test_gaussian_calibration() -> None:
    sigma = gaussian_sigma(2.0, 1.0, 1e-5)
    assert sigma == pytest.approx(2.0 * dp_accounting.get_sigma_gaussian(1.0, 1e-5), rel=1e-9)
    assert gaussian_epsilon(sigma, 2.0, 1e-5) == pytest.approx(1.0, rel=1e-4)
    classic = gaussian_sigma(1.0, 0.5, 1e-5, method="classic")
    assert classic == pytest.approx(math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5)
    assert classic > gaussian_sigma(1.0, 0.5, 1e-5)  # the analytic bound is tighter
    with pytest.raises(ConfigurationError, match="epsilon < 1"):
        gaussian_sigma(1.0, 2.0, 1e-5, method="classic")


def test_events_validate_and_round_trip() -> None:
    for event in (PureDPEvent(0.3, 2), GaussianEvent(1.5, 0.2, 7), NonPrivateEvent(3)):
        assert event_from_json(event.to_json()) == event
    with pytest.raises(ConfigurationError):
        PureDPEvent(0.0)
    with pytest.raises(ConfigurationError):
        PureDPEvent(math.inf)
    with pytest.raises(ConfigurationError):
        GaussianEvent(-1.0)
    with pytest.raises(ConfigurationError):
        GaussianEvent(1.0, sample_rate=0.0)
    with pytest.raises(ConfigurationError):
        GaussianEvent(1.0, count=0)
    with pytest.raises(ConfigurationError):
        event_from_json({"type": "pure", "epsilon": 0.1})
    with pytest.raises(ConfigurationError):
        event_from_json({"type": "laplace", "epsilon": 0.1, "count": 1})
    assert GaussianEvent.from_sigma(2.0, 4.0) == GaussianEvent(0.5)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-6, 2.0, float("nan")])
def test_bad_delta_for_rdp(delta: float) -> None:
    with pytest.raises(ConfigurationError, match="delta"):
        epsilon_rdp([GaussianEvent(1.0)], delta)
