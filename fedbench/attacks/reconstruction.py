"""Reconstructing a training example from a logistic-regression update (gradient inversion).

For logistic regression, one example's gradient is ``((p - y) x, p - y)``, so ``x = grad_w / grad_b``:
a single-example FedAvg step (``delta = -lr * grad``) reveals the example exactly. Secure aggregation
shows the attacker only the sum over parties; DP-FedAvg adds Gaussian noise to the sum of clipped updates.
Every trial is a real run of the workbench's FedAvg; the attacker reads the real transcript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..crypto.paillier import generate_keys
from ..errors import ConfigurationError
from ._display import table_html, table_text
from ._simulation import MAX_FEDAVG_EPSILON, SimulationBudget, check_epsilons, design, simulation_frames

PROTECTIONS = ("none", "secure_aggregation", "dp")


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
    #: Whether the aggregator received only ciphertexts and public layout (from the real transcript).
    aggregator_blind: dict[float, bool] = field(default_factory=dict)
    note: str = ""

    def verdict(self, epsilon: float) -> str:
        """One sentence on whether the example is recovered."""
        err, idf = self.error[epsilon], self.identified[epsilon]
        if err < 1e-6:
            return "The update reveals the training example exactly."
        blind = (" The aggregator received only ciphertexts and public layout (real transcript)."
                 if self.aggregator_blind.get(epsilon) and self.protection != "none" else "")
        if idf <= self.chance + 3 * math.sqrt(self.chance * (1 - self.chance) / self.trials):
            return (f"The attacker does no better than chance ({idf:.2f} vs {self.chance:.2f}) at finding the "
                    f"example.{blind}")
        return f"Partial leak: relative error {err:.3g}, example picked out in {idf:.0%} of trials."

    def _rows(self) -> list[list[object]]:
        return [[e, self.error[e], self.identified[e], self.verdict(e)] for e in self.epsilons]

    def __repr__(self) -> str:
        return table_text(f"Gradient reconstruction ({self.protection})",
                          ["epsilon", "median rel. error", "identified", "verdict"], self._rows(), self.note)

    def _repr_html_(self) -> str:
        return table_html(f"Gradient reconstruction ({self.protection})",
                          ["epsilon", "median rel. error", "identified", "verdict"], self._rows(), self.note)


#: Where the attacked updates come from.
WORKBENCH_NOTE = (
    "Every trial is a real run of the workbench (fed.fit, FedAvg of an SGD logistic regression, one example per "
    "party, two rounds) on a throwaway federation with an in-memory ledger and audit=True; the attacker reads "
    "what the aggregator received in the real transcript (and the released model). DP runs are charged to the "
    "attack lab's simulation budget, never the study's."
)


def _one_run(rows: dict[str, tuple[np.ndarray, float]], features: Sequence[str], *, protection: str, epsilon: float,
             delta: float, clip: float, lr: float, seed: int, keys: Any, key_bits: int) -> tuple[np.ndarray, bool]:
    """One real two-round FedAvg run; returns the attacker's view of the last round's update of party 0.

    ``none``: the party's own local update, read from its plaintext message to the aggregator
    (``secure=False``).  Otherwise the aggregate update the released model reveals (secure
    aggregation, and DP-FedAvg noise for a finite epsilon); the second value says whether every
    message the aggregator received was a ciphertext or public layout.
    """
    import polars as pl
    from sklearn.linear_model import SGDClassifier

    from ..dp import DPConfig
    from ..dp.planner import noise_multiplier_for_epsilon
    from ..federation import Federation
    from ..learn import FedAvg

    dp = None
    with Federation(key_bits, allow_insecure_key_size=key_bits < 2048, ledger_path=":memory:", audit=True) as fed:
        fed.coordinator.keys = keys  # one key holder for the lab's runs: no key generation per run
        for name, (x, y) in rows.items():
            fed.add_party(name, pl.DataFrame({c: [float(x[i])] for i, c in enumerate(features)}).with_columns(
                pl.Series("y", [int(y)])))
        if protection == "dp" and math.isfinite(epsilon):
            z = noise_multiplier_for_epsilon(epsilon, 2, delta=delta, method="rdp")
            dp = DPConfig(noise_multiplier=z, clip=clip, delta=delta)
            fed.set_budget(epsilon * (1 + 1e-6), delta, description="attack lab: throwaway ledger")
        # No penalty and a constant step: one example's update is exactly -lr * (p - y) * (x, 1).
        run = fed.fit(SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant", eta0=lr),
                      target="y", features=list(features), strategy=FedAvg(local_epochs=1, evaluate_every=0, dp=dp),
                      rounds=2, test_size=0, secure=protection != "none", classes=[0, 1], seed=seed)
        msgs = list(fed.transcript)
    # The last round's global model, as broadcast to the parties (public).
    last = max(i for i, m in enumerate(msgs) if m.kind == "global-model")
    theta = np.frombuffer(msgs[last].payload or b"", "<f8")
    to_aggregator = [m for m in msgs if m.receiver == "aggregator"]
    blind = all(m.encrypted or m.kind == "layout" for m in to_aggregator)
    if protection == "none":
        first = next(iter(rows))
        own = next(m for m in msgs[last:] if m.sender == first and m.receiver == "aggregator")
        # The party's message is [n * theta_local, n, ...] with n = 1 (the public layout of FedAvg).
        return np.frombuffer(own.payload or b"", "<f8")[: theta.size] - theta, blind
    new = np.append(np.ravel(run.model.coef_), np.ravel(run.model.intercept_))
    return new - theta, blind


def gradient_reconstruction(
    source: object,
    features: Sequence[str],
    target: str,
    *,
    protection: str = "none",
    epsilons: Sequence[float] = (math.inf,),
    delta: float = 1e-5,
    clip: float = 1.0,
    trials: int = 20,
    seed: int = 0,
    model: str = "logistic",
    lr: float = 0.1,
    budget: SimulationBudget | None = None,
    key_bits: int = 2048,
) -> ReconstructionResult:
    """Invert single-example FedAvg updates of logistic regression, captured from real workbench runs.

    Each trial picks one random example per party (fixed ``seed``) and runs the workbench's
    FedAvg on them for two rounds; the attacker inverts the last round's update ``x = dw / db``.

    Parameters
    ----------
    source : Federation, folder or dict of frames
        Parties to attack (their files are read again; the study's parties are not queried).
    features, target : column names
        Model inputs and 0/1 label (standardised with the pooled simulation statistics).
    protection : {"none", "secure_aggregation", "dp"}
        ``"none"``: the aggregator reads the target party's own update (``secure=False``, the
        plaintext mode); ``"secure_aggregation"``: it receives ciphertexts only and sees the
        released aggregate; ``"dp"``: DP-FedAvg (clipped updates plus distributed Gaussian noise,
        calibrated to each epsilon over the two rounds) on top of secure aggregation.
    epsilons : sequence of float
        Only for ``"dp"``; ``inf`` means secure aggregation without noise.
    delta : float
        Delta of the DP runs.
    clip : float
        Update clipping norm under DP.
    trials : int
        Real runs per epsilon.
    seed : int
        Seed of the example choice and of the training (DP noise comes from the OS CSPRNG).
    model : str
        Only ``"logistic"`` is supported.
    lr : float
        Constant SGD step of the local update.
    budget : SimulationBudget, optional
        The attack lab's separate budget, charged for the DP runs.
    key_bits : int, default 2048
        Paillier key size of the throwaway federations (tests may pass smaller keys).
    """
    if model != "logistic":
        raise ConfigurationError(f"gradient reconstruction supports model='logistic' only, got {model!r}")
    if protection not in PROTECTIONS:
        raise ConfigurationError(f"protection must be one of {PROTECTIONS}, got {protection!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigurationError(f"trials must be a positive integer, got {trials!r}")
    eps = check_epsilons(epsilons, largest=MAX_FEDAVG_EPSILON) if protection == "dp" else [math.inf]
    xs, ys = design(simulation_frames(source), features, target)
    names = list(xs)
    k = len(names)
    if k < 2:
        raise ConfigurationError("the attack needs at least two parties (the workbench refuses one)")
    if protection == "dp":
        (budget or SimulationBudget()).spend(eps, trials)
    keys = generate_keys(key_bits, allow_insecure_key_size=key_bits < 2048)
    rng = np.random.default_rng(seed)
    d = len(features)
    res = ReconstructionResult(protection, k, trials, 1.0 / k, note=WORKBENCH_NOTE)
    for e in eps:
        errs, hits, blind = [], 0, True
        for t in range(trials):
            picks = {n: int(rng.integers(len(ys[n]))) for n in names}
            rows = {n: (xs[n][i], float(ys[n][i])) for n, i in picks.items()}
            seen, blind_run = _one_run(rows, features, protection=protection, epsilon=e, delta=delta, clip=clip,
                                       lr=lr, seed=seed + t, keys=keys, key_bits=key_bits)
            blind = blind and blind_run
            x_hat = invert(seen) if seen[-1] != 0 else np.zeros(d)
            examples = [rows[n][0] for n in names]
            x = examples[0]  # the target is party 0; parties are exchangeable, so chance is 1/k
            errs.append(float(np.linalg.norm(x_hat - x)) / max(float(np.linalg.norm(x)), 1e-12))
            hits += int(np.argmin([float(np.linalg.norm(x_hat - ex)) for ex in examples]) == 0)
        res.epsilons.append(e)
        res.error[e] = float(np.median(errs))
        res.identified[e] = hits / trials
        res.aggregator_blind[e] = blind
    return res
