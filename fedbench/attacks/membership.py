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

from ..errors import ConfigurationError
from ._display import table_html, table_text
from ._dp import calibrate_z
from ._simulation import SIMULATION_NOTE, SimulationBudget, check_epsilons, design, simulation_frames

ATTACKS = ("loss_threshold", "shadow")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(_sigmoid(x @ theta[:-1] + theta[-1]), 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def train_fedavg(parts: list[tuple[np.ndarray, np.ndarray]], *, rounds: int, lr: float, epochs: int,
                 z: float, clip: float, rng: np.random.Generator) -> np.ndarray:
    """FedAvg of logistic regression (full-batch local gradient steps), or record-level DP-FedAvg when ``z > 0``.

    Under DP each round is one full-batch step: per-example gradients clipped to ``clip``, summed
    over all parties (secure sum), plus Gaussian noise ``z * clip``; ``rounds`` steps compose by RDP.
    """
    d = parts[0][0].shape[1]
    theta = np.zeros(d + 1)
    n_total = sum(len(y) for _, y in parts)
    for _ in range(rounds):
        if z > 0:
            total = np.zeros(d + 1)
            for x, y in parts:
                r = _sigmoid(x @ theta[:-1] + theta[-1]) - y
                g = np.hstack([r[:, None] * x, r[:, None]])
                norms = np.maximum(1.0, np.linalg.norm(g, axis=1) / clip)
                total += (g / norms[:, None]).sum(0)
            total += rng.normal(0, z * clip, d + 1)
            theta = theta - lr * total / n_total
            continue
        new = np.zeros(d + 1)
        for x, y in parts:
            local = theta.copy()
            for _ in range(epochs):
                r = _sigmoid(x @ local[:-1] + local[-1]) - y
                local -= lr * np.append(x.T @ r, r.sum()) / len(y)
            new += len(y) * local
        theta = new / n_total
    return theta


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
    note: str = SIMULATION_NOTE

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
    rounds: int = 30,
    epochs: int = 20,
    lr: float = 0.5,
    clip: float = 1.0,
    seed: int = 0,
    model: str = "logistic",
    budget: SimulationBudget | None = None,
) -> MembershipResult:
    """Membership inference against FedAvg / DP-FedAvg logistic regression trained on simulated parties.

    Each party's rows are split at random (fixed ``seed``) into members (training) and non-members;
    with ``attack="shadow"`` half of each is kept aside for the attacker's shadow model.

    Parameters
    ----------
    source : Federation, folder or dict of frames
        Parties to simulate (same files; the study's parties and budget are not used).
    features, target : column names
        Inputs and 0/1 label.
    attack : {"loss_threshold", "shadow"}
        Yeom threshold (mean training loss) or a threshold learnt on the attacker's shadow model.
    epsilons : sequence of float
        Record-level (epsilon, delta) of the whole training run; ``inf`` = non-private FedAvg.
    delta : float
        Delta of the DP runs.
    rounds, epochs, lr : int, int, float
        FedAvg rounds, local epochs (non-private) and learning rate.
    clip : float
        Per-example gradient clipping norm under DP.
    seed : int
        Seed of the split and the simulated noise (reproducible; no release is made).
    model : str
        Only ``"logistic"`` is supported.
    budget : SimulationBudget, optional
        The separate simulation budget charged (once per epsilon: one training run each).
    """
    if model != "logistic":
        raise ConfigurationError(f"membership inference supports model='logistic' only, got {model!r}")
    if attack not in ATTACKS:
        raise ConfigurationError(f"attack must be one of {ATTACKS}, got {attack!r}")
    eps = check_epsilons(epsilons)
    (budget or SimulationBudget()).spend(eps, 1)
    xs, ys = design(simulation_frames(source), features, target)
    rng = np.random.default_rng(seed)
    quarters: dict[str, list[np.ndarray]] = {"in": [], "out": [], "shadow_in": [], "shadow_out": []}
    target_parts, shadow_parts = [], []
    for name in xs:
        idx = rng.permutation(len(ys[name]))
        split = np.array_split(idx, 4 if attack == "shadow" else 2)
        target_parts.append((xs[name][split[0]], ys[name][split[0]]))
        quarters["out"].append(np.column_stack([xs[name][split[1]], ys[name][split[1]]]))
        quarters["in"].append(np.column_stack([xs[name][split[0]], ys[name][split[0]]]))
        if attack == "shadow":
            shadow_parts.append((xs[name][split[2]], ys[name][split[2]]))
            quarters["shadow_in"].append(np.column_stack([xs[name][split[2]], ys[name][split[2]]]))
            quarters["shadow_out"].append(np.column_stack([xs[name][split[3]], ys[name][split[3]]]))
    data = {k: np.vstack(v) for k, v in quarters.items() if v}
    res = MembershipResult(attack, n_members=len(data["in"]))
    for e in eps:
        z = calibrate_z(e, rounds, delta)
        kw: dict[str, Any] = {"rounds": rounds, "lr": lr, "epochs": epochs, "z": z, "clip": clip, "rng": rng}
        theta = train_fedavg(target_parts, **kw)
        li = _loss(theta, data["in"][:, :-1], data["in"][:, -1])
        lo = _loss(theta, data["out"][:, :-1], data["out"][:, -1])
        if attack == "shadow":
            shadow = train_fedavg(shadow_parts, **kw)
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
