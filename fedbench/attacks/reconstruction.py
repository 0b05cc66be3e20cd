"""Reconstructing a training example from a logistic-regression update (gradient inversion).

For logistic regression, one example's gradient is ``((p - y) x, p - y)``, so ``x = grad_w / grad_b``:
a single-example FedAvg step (``delta = -lr * grad``) reveals the example exactly. Secure aggregation
shows the attacker only the sum over parties; DP-FedAvg adds Gaussian noise to a clipped update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigurationError
from ._display import table_html, table_text
from ._dp import gaussian_sigma
from ._simulation import SIMULATION_NOTE, check_epsilons, design, simulation_frames

PROTECTIONS = ("none", "secure_aggregation", "dp")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def local_update(x: np.ndarray, y: float, w: np.ndarray, b: float, lr: float = 0.1) -> np.ndarray:
    """One party's single-example FedAvg step for logistic regression: ``[delta_w, delta_b]``."""
    r = float(_sigmoid(x @ w + b)) - y
    return -lr * np.append(r * x, r)


def invert(update: np.ndarray) -> np.ndarray:
    """The attacker's inversion ``x = delta_w / delta_b`` (exact for one example)."""
    return update[:-1] / update[-1]


@dataclass
class ReconstructionResult:
    """Gradient-inversion outcome per protection.

    ``error`` is the median relative error ``|x_hat - x| / |x|`` over trials; ``identified`` the
    fraction of trials where the reconstruction is nearest to the target among the round's
    examples; ``chance`` is ``1 / parties``, the identification rate of a blind guess.
    """

    protection: str
    parties: int
    trials: int
    chance: float
    epsilons: list[float] = field(default_factory=list)
    error: dict[float, float] = field(default_factory=dict)
    identified: dict[float, float] = field(default_factory=dict)
    note: str = SIMULATION_NOTE

    def verdict(self, epsilon: float) -> str:
        """One sentence on whether the example is recovered."""
        err, idf = self.error[epsilon], self.identified[epsilon]
        if err < 1e-6:
            return "The update reveals the training example exactly."
        if idf <= self.chance + 3 * math.sqrt(self.chance * (1 - self.chance) / self.trials):
            return f"The attacker does no better than chance ({idf:.2f} vs {self.chance:.2f}) at finding the example."
        return f"Partial leak: relative error {err:.3g}, example picked out in {idf:.0%} of trials."

    def _rows(self) -> list[list[object]]:
        return [[e, self.error[e], self.identified[e], self.verdict(e)] for e in self.epsilons]

    def __repr__(self) -> str:
        return table_text(f"Gradient reconstruction ({self.protection})",
                          ["epsilon", "median rel. error", "identified", "verdict"], self._rows(), self.note)

    def _repr_html_(self) -> str:
        return table_html(f"Gradient reconstruction ({self.protection})",
                          ["epsilon", "median rel. error", "identified", "verdict"], self._rows(), self.note)


def gradient_reconstruction(
    source: object,
    features: Sequence[str],
    target: str,
    *,
    protection: str = "none",
    epsilons: Sequence[float] = (math.inf,),
    delta: float = 1e-5,
    clip: float = 1.0,
    trials: int = 200,
    seed: int = 0,
    model: str = "logistic",
) -> ReconstructionResult:
    """Attack single-example FedAvg updates of logistic regression.

    Parameters
    ----------
    source : Federation, folder or dict of frames
        Parties to simulate (data re-read from the same files; the study's parties are not queried).
    features, target : column names
        Model inputs and 0/1 label.
    protection : {"none", "secure_aggregation", "dp"}
        What the attacker sees: the target party's own update, the sum over all parties,
        or the target's clipped update plus Gaussian noise for each epsilon (per-round DP).
    epsilons : sequence of float
        Only for ``"dp"``; ``inf`` means no noise.
    delta : float
        Delta of the per-round Gaussian mechanism.
    clip : float
        Update clipping norm under DP.
    seed : int
        Seed of the simulation (reproducible; no release is made).
    trials : int
        Rounds simulated (each picks one random example per party and random model weights).
    model : str
        Only ``"logistic"`` is supported.
    """
    if model != "logistic":
        raise ConfigurationError(f"gradient reconstruction supports model='logistic' only, got {model!r}")
    if protection not in PROTECTIONS:
        raise ConfigurationError(f"protection must be one of {PROTECTIONS}, got {protection!r}")
    eps = check_epsilons(epsilons) if protection == "dp" else [math.inf]
    xs, ys = design(simulation_frames(source), features, target)
    names = list(xs)
    k = len(names)
    if k < 2 and protection == "secure_aggregation":
        raise ConfigurationError("secure aggregation needs at least two parties")
    rng = np.random.default_rng(seed)
    d = len(features)
    res = ReconstructionResult(protection, k, trials, 1.0 / k)
    for e in eps:
        sigma = gaussian_sigma(e, delta) * clip
        errs, hits = [], 0
        for _ in range(trials):
            w, b = rng.normal(0, 0.5, d), float(rng.normal(0, 0.5))
            rows = [int(rng.integers(len(ys[n]))) for n in names]
            examples = [xs[n][i] for n, i in zip(names, rows, strict=True)]
            updates = [local_update(xs[n][i], ys[n][i], w, b) for n, i in zip(names, rows, strict=True)]
            # The target is party 0; parties are exchangeable, so chance of picking it is 1/k.
            if protection == "none":
                seen = updates[0]
            elif protection == "secure_aggregation":
                seen = np.sum(updates, axis=0)
            else:
                u = updates[0]
                u = u / max(1.0, float(np.linalg.norm(u)) / clip)
                seen = u + rng.normal(0, sigma, u.shape) if sigma else u
            x_hat = invert(seen) if seen[-1] != 0 else np.zeros(d)
            x = examples[0]
            errs.append(float(np.linalg.norm(x_hat - x)) / max(float(np.linalg.norm(x)), 1e-12))
            dists = [float(np.linalg.norm(x_hat - ex)) for ex in examples]
            hits += int(np.argmin(dists) == 0)
        res.epsilons.append(e)
        res.error[e] = float(np.median(errs))
        res.identified[e] = hits / trials
    return res
