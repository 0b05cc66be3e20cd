"""Ray backend vs process-pool backend: secure FedAvg with many parties, and the 10-party secure sum.

Each party is a CSV file (a Dirichlet label-skew split of the bundled hospital data);
on Ray every party is an actor that loads its own file. Both backends run the same
secure FedAvg (2048-bit Paillier) and must produce the same model.

Usage::

    python benchmarks/bench_ray.py [--parties 100] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fedbench as fb
from fedbench.learn import iid_partition
from fedbench.samples import sample_dir

FEATURES = ["mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
            "mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry", "age"]


def make_files(parties: int, folder: Path) -> None:
    pooled = pl.concat([pl.read_csv(f) for f in sorted(sample_dir("hospitals").glob("*.csv"))],
                       how="vertical_relaxed").select([*FEATURES, "diagnosis"])
    # Replicate the 569 patients (with jitter) so that every party has a few dozen rows.
    rng = np.random.default_rng(0)
    reps = max(1, (parties * 40) // pooled.height + 1)
    big = pl.concat([pooled.with_columns([(pl.col(c) * (1 + 0.01 * rng.standard_normal(pooled.height)))
                                          .alias(c) for c in FEATURES[:-1]]) for _ in range(reps)])
    for name, df in iid_partition(big, parties, seed=0).items():
        df.write_csv(folder / f"{name}.csv")


def fedavg(backend: object, folder: Path, rounds: int) -> tuple[float, float, np.ndarray]:
    t0 = time.perf_counter()
    with fb.Federation(backend=backend) as fed:
        fed.add_parties({f.stem: f for f in sorted(folder.glob("*.csv"))})
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        run = fed.fit(make_pipeline(SimpleImputer(), StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)),
                      target="diagnosis", features=FEATURES, strategy="fedavg", rounds=rounds, seed=0,
                      evaluate_every=0, party_metrics=False, classes=[0, 1])
        train = time.perf_counter() - t1
        return setup, train, run.model[-1].coef_.ravel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=100, help="number of parties (actors)")
    ap.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cores = len(os.sched_getaffinity(0))
    folder = Path(tempfile.mkdtemp(prefix="fedbench-ray-"))
    make_files(args.parties, folder)
    print(f"machine: {cores} cores; {args.parties} parties x {args.rounds} rounds of secure FedAvg "
          f"(2048-bit Paillier, {len(FEATURES)} features)")
    p_setup, p_train, p_coef = fedavg("process", folder, args.rounds)
    print(f"process pool: set-up {p_setup:.1f} s, training {p_train:.1f} s")
    from fedbench.ray_backend import RayBackend

    r_setup, r_train, r_coef = fedavg(RayBackend(timeout=600), folder, args.rounds)
    print(f"ray (local, {args.parties} actors): set-up {r_setup:.1f} s (actors start and load their files), "
          f"training {r_train:.1f} s")
    print(f"ray / process training time: {r_train / p_train:.2f}x; same model: "
          f"{np.allclose(p_coef, r_coef, rtol=1e-6, atol=1e-9)}")
    print(f"peak RSS of the driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
