"""Configuration of differentially private federated training (DP-FedAvg)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._checks import check_count, check_delta, check_positive, check_rate
from .accounting import GaussianEvent

__all__ = ["DPConfig"]


@dataclass(frozen=True, slots=True)
class DPConfig:
    """Parameters of DP-FedAvg (McMahan et al. 2018).

    Every round, each participating party clips its model update to L2 norm
    ``clip``; the clipped updates are summed (securely) and Gaussian noise of
    standard deviation ``noise_multiplier * clip`` is added to the sum, either
    centrally after decryption or as per-party shares before encryption
    (:func:`fedbench.dp.mechanisms.update_noise_share`).  Shares have variance
    ``noise_std**2 / (n - 1)`` for ``n`` parties, so the noise a party does not
    know is the full ``noise_std**2`` and the accounted epsilon holds against
    every party that receives the model, not only against outsiders.

    Parameters
    ----------
    noise_multiplier : float
        Noise standard deviation in units of the clipping norm (> 0).
    clip : float
        L2 clipping norm of one party's update (> 0); the L2 sensitivity of the sum.
    sample_rate : float, default 1.0
        Probability that a party takes part in a round (Poisson sampling); 1.0 is
        full participation.
    delta : float, optional
        Target delta for reporting; when ``None``, ``fit`` takes the smallest
        delta of the parties' budgets (and says so in ``run.privacy``).
    delta_source : str, default "declared"
        Where ``delta`` came from (set by ``fit`` when it takes the budget's delta).

    Raises
    ------
    ConfigurationError
        If a parameter is out of range.
    """

    noise_multiplier: float
    clip: float
    sample_rate: float = 1.0
    delta: float | None = None
    delta_source: str = "declared"

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", check_positive(self.noise_multiplier, "noise_multiplier"))
        object.__setattr__(self, "clip", check_positive(self.clip, "clip"))
        object.__setattr__(self, "sample_rate", check_rate(self.sample_rate))
        if self.delta is not None:
            object.__setattr__(self, "delta", check_delta(self.delta))

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the sum of clipped updates."""
        return self.noise_multiplier * self.clip

    def share_std(self, n_parties: int) -> float:
        """Standard deviation of each party's noise share when ``n_parties`` add noise.

        ``noise_std / sqrt(n_parties - 1)``: the ``n_parties - 1`` shares one party
        does not know sum to variance ``noise_std**2`` (the party's own share
        is no help to it).  A lone party adds the full ``noise_std``: everyone
        else knows none of the noise.
        """
        return self.noise_std / math.sqrt(max(1, check_count(n_parties, "n_parties") - 1))

    def event(self, rounds: int = 1) -> GaussianEvent:
        """The accounting event of ``rounds`` training rounds."""
        return GaussianEvent(self.noise_multiplier, self.sample_rate, check_count(rounds, "rounds"))

    @classmethod
    def for_target(
        cls,
        epsilon: float,
        rounds: int,
        *,
        delta: float,
        clip: float,
        sample_rate: float = 1.0,
        method: Literal["pld", "rdp"] = "pld",
    ) -> DPConfig:
        """The least-noise configuration reaching ``epsilon`` at ``delta`` after ``rounds`` rounds.

        Uses :func:`fedbench.dp.planner.noise_multiplier_for_epsilon`.
        """
        from .planner import noise_multiplier_for_epsilon  # planner imports this module

        z = noise_multiplier_for_epsilon(epsilon, rounds, delta=delta, sample_rate=sample_rate, method=method)
        return cls(noise_multiplier=z, clip=clip, sample_rate=sample_rate, delta=delta)
