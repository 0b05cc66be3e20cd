"""Membership inference against a federated logistic regression (FedAvg and DP-FedAvg).

Loss-threshold attack (Yeom et al., CSF 2018): guess "member" when the model's loss on a record is
below the mean training loss. Shadow-model variant (after Shokri et al., S&P 2017): the attacker trains
a shadow model the same way on data it owns and learns the loss threshold from it.
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

ATTACKS = ("loss_threshold", "shadow")
#: Where the attacked models come from.
WORKBENCH_NOTE = (
    "Models trained by the workbench (fed.fit, secure FedAvg; DP-FedAvg with party-level DP, which implies "
    "record-level DP) on throwaway federations over the member split, each with its own in-memory ledger; "
    "the DP runs are charged to the attack lab's simulation budget, never the study's."
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(_sigmoid(x @ theta[:-1] + theta[-1]), 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def train_workbench(parts: dict[str, tuple[np.ndarray, np.ndarray]], features: Sequence[str], target: str, *,
                    epsilon: float, delta: float, rounds: int, epochs: int, C: float, clip: float, seed: int,
                    key_bits: int, keys: Any = None) -> np.ndarray:
    """Train logistic regression with the workbench's FedAvg (or DP-FedAvg) on a throwaway federation.

    Each party of the throwaway federation holds the given rows (the member split); it has its
    own in-memory ledger, with a budget of exactly ``epsilon`` per party for a DP run.  Returns
    ``[coef..., intercept]`` of the trained model.
    """
    import polars as pl
    from sklearn.linear_model import LogisticRegression

    from ..dp import DPConfig
    from ..dp.planner import noise_multiplier_for_epsilon
    from ..federation import Federation
    from ..learn import FedAvg

    dp = None
    with Federation(key_bits, allow_insecure_key_size=key_bits < 2048, ledger_path=":memory:") as fed:
        if keys is not None:
            fed.coordinator.keys = keys  # one key pair for all the lab's runs: no key generation per run
        for name, (x, y) in parts.items():
            frame = pl.DataFrame({c: x[:, i] for i, c in enumerate(features)}).with_columns(
                pl.Series(target, y.astype(np.int64)))
            fed.add_party(name, frame)
        if math.isfinite(epsilon):
            # RDP calibration of the whole run; the ledger (RDP or PLD) charges at most epsilon.
            z = noise_multiplier_for_epsilon(epsilon, rounds, delta=delta, method="rdp")
            dp = DPConfig(noise_multiplier=z, clip=clip, delta=delta)
            fed.set_budget(epsilon * (1 + 1e-6), delta, description="attack lab: throwaway ledger")
        run = fed.fit(LogisticRegression(C=C), target=target, features=list(features),
                      strategy=FedAvg(local_epochs=epochs, dp=dp, evaluate_every=0), rounds=rounds, test_size=0,
                      seed=seed)
    model = run.model
    return np.append(np.ravel(model.coef_), np.ravel(model.intercept_)[0])


def _auc(member: np.ndarray, non: np.ndarray) -> float:
    """ROC AUC of score (higher = member), by the rank-sum statistic with ties counted half."""
    s = np.concatenate([member, non])
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # average ranks over ties
        m = s == v
        ranks[m] = ranks[m].mean()
    n1, n0 = len(member), len(non)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _advantage(loss_in: np.ndarray, loss_out: np.ndarray, threshold: float) -> float:
    return float(np.mean(loss_in < threshold) - np.mean(loss_out < threshold))


@dataclass
class MembershipResult:
    """Attack advantage (TPR - FPR), ROC AUC and model accuracy per epsilon (``inf`` = non-private FedAvg)."""

    attack: str
    epsilons: list[float] = field(default_factory=list)
    advantage: dict[float, float] = field(default_factory=dict)
    auc: dict[float, float] = field(default_factory=dict)
    accuracy: dict[float, float] = field(default_factory=dict)
    n_members: int = 0
    note: str = WORKBENCH_NOTE

    def verdict(self, epsilon: float) -> str:
        """One sentence per point; advantage within 2 standard errors of 0 counts as no measurable leak."""
        adv, se = self.advantage[epsilon], 2 * math.sqrt(0.5 / max(self.n_members, 1))
        label = "non-private FedAvg" if not math.isfinite(epsilon) else f"DP-FedAvg at epsilon {epsilon:g}"
        if abs(adv) <= se:
            return (f"{label}: advantage {adv:.3f} is within noise (+/-{se:.3f}); this data shows no measurable "
                    f"membership leak (accuracy {self.accuracy[epsilon]:.2f}).")
        return f"{label}: the attacker tells members apart (advantage {adv:.3f}, AUC {self.auc[epsilon]:.3f})."

    def _rows(self) -> list[list[object]]:
        return [[e, self.advantage[e], self.auc[e], self.accuracy[e], self.verdict(e)] for e in self.epsilons]

    def __repr__(self) -> str:
        return table_text(f"Membership inference ({self.attack})",
                          ["epsilon", "advantage", "AUC", "accuracy", "verdict"], self._rows(), self.note)

    def _repr_html_(self) -> str:
        return table_html(f"Membership inference ({self.attack})",
                          ["epsilon", "advantage", "AUC", "accuracy", "verdict"], self._rows(), self.note)


def membership_inference(
    source: object,
    features: Sequence[str],
    target: str,
    *,
    attack: str = "loss_threshold",
    epsilons: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf),
    delta: float = 1e-5,
    rounds: int = 10,
    epochs: int = 1,
    C: float = 1.0,
    clip: float = 1.0,
    seed: int = 0,
    model: str = "logistic",
    budget: SimulationBudget | None = None,
    key_bits: int = 2048,
) -> MembershipResult:
    """Membership inference against logistic regression trained by the workbench (FedAvg / DP-FedAvg).

    Each party's rows are split at random (fixed ``seed``) into members and non-members
    (with ``attack="shadow"``, half of each is kept aside for the attacker's shadow model).
    The model is trained with the workbench's own ``fed.fit`` (secure aggregation, FedAvg;
    DP-FedAvg with :class:`~fedbench.dp.DPConfig` for finite epsilons) on a throwaway
    federation whose parties hold the member rows, with its own in-memory ledger.

    Parameters
    ----------
    source : Federation, folder or dict of frames
        Parties to attack (their files are read again; the study's parties and budget are not used).
    features, target : column names
        Inputs and 0/1 label (features are standardised with the pooled simulation statistics).
    attack : {"loss_threshold", "shadow"}
        Yeom threshold (mean training loss) or a threshold learnt on the attacker's shadow model,
        trained the same way on the attacker's own rows.
    epsilons : sequence of float
        DP-FedAvg's epsilon for the whole run, ``inf`` = non-private FedAvg.  The workbench's
        DP-FedAvg protects a whole party's contribution (which implies every record in it).
    delta : float
        Delta of the DP runs.
    rounds, epochs : int
        FedAvg rounds and local epochs (L-BFGS, 10 iterations per epoch).
    C : float
        Inverse L2 penalty of the logistic regression (large: weak penalty, memorises more).
    clip : float
        L2 clipping norm of a party's update under DP.
    seed : int
        Seed of the member split and of the training (the DP noise comes from the OS CSPRNG).
    model : str
        Only ``"logistic"`` is supported.
    budget : SimulationBudget, optional
        The attack lab's separate budget, charged once per epsilon (and again for the shadow model).
    key_bits : int, default 2048
        Paillier key size of the throwaway federations (tests may pass smaller keys).
    """
    if model != "logistic":
        raise ConfigurationError(f"membership inference supports model='logistic' only, got {model!r}")
    if attack not in ATTACKS:
        raise ConfigurationError(f"attack must be one of {ATTACKS}, got {attack!r}")
    eps = check_epsilons(epsilons, largest=MAX_FEDAVG_EPSILON)
    xs, ys = design(simulation_frames(source), features, target)
    (budget or SimulationBudget()).spend(eps, 2 if attack == "shadow" else 1)
    rng = np.random.default_rng(seed)
    quarters: dict[str, list[np.ndarray]] = {"in": [], "out": [], "shadow_in": [], "shadow_out": []}
    target_parts, shadow_parts = {}, {}
    for name in xs:
        idx = rng.permutation(len(ys[name]))
        split = np.array_split(idx, 4 if attack == "shadow" else 2)
        target_parts[name] = (xs[name][split[0]], ys[name][split[0]])
        quarters["out"].append(np.column_stack([xs[name][split[1]], ys[name][split[1]]]))
        quarters["in"].append(np.column_stack([xs[name][split[0]], ys[name][split[0]]]))
        if attack == "shadow":
            shadow_parts[name] = (xs[name][split[2]], ys[name][split[2]])
            quarters["shadow_in"].append(np.column_stack([xs[name][split[2]], ys[name][split[2]]]))
            quarters["shadow_out"].append(np.column_stack([xs[name][split[3]], ys[name][split[3]]]))
    data = {k: np.vstack(v) for k, v in quarters.items() if v}
    keys = generate_keys(key_bits, allow_insecure_key_size=key_bits < 2048)
    res = MembershipResult(attack, n_members=len(data["in"]), note=WORKBENCH_NOTE)
    for e in eps:
        kw: dict[str, Any] = {"epsilon": e, "delta": delta, "rounds": rounds, "epochs": epochs, "C": C,
                              "clip": clip, "seed": seed, "key_bits": key_bits, "keys": keys}
        theta = train_workbench(target_parts, features, target, **kw)
        li = _loss(theta, data["in"][:, :-1], data["in"][:, -1])
        lo = _loss(theta, data["out"][:, :-1], data["out"][:, -1])
        if attack == "shadow":
            shadow = train_workbench(shadow_parts, features, target, **kw)
            si = _loss(shadow, data["shadow_in"][:, :-1], data["shadow_in"][:, -1])
            so = _loss(shadow, data["shadow_out"][:, :-1], data["shadow_out"][:, -1])
            cands = np.unique(np.concatenate([si, so]))
            threshold = float(max(cands, key=lambda t: _advantage(si, so, t)))
        else:
            threshold = float(li.mean())  # Yeom: the attacker knows the average training loss
        pred = _sigmoid(data["out"][:, :-1] @ theta[:-1] + theta[-1]) >= 0.5
        res.epsilons.append(e)
        res.advantage[e] = _advantage(li, lo, threshold)
        res.auc[e] = _auc(-li, -lo)
        res.accuracy[e] = float(np.mean(pred == data["out"][:, -1]))
    return res
