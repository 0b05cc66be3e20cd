"""Federated scikit-learn: speed of the round loop and quality against the naive alternatives.

Figures printed (2048-bit keys unless ``--key-bits``):

1. **secure FedAvg**: 4 parties x 30 rounds of an ``SGDClassifier`` on 10
   features (breast-cancer data, IID split), every update through packed
   Paillier secure aggregation; key generation reported separately.  Baselines
   in the same run: the same loop with textbook Paillier encryption, with
   plaintext sums, and a naive per-value ``phe`` secure sum of the same
   vectors (one ciphertext per value) extrapolated to 30 rounds.
2. **100 simulated parties x 20 rounds** of FedAvg with plaintext sums
   (``secure=False``).
3. **quality on the four hospitals** (natural split with nulls, imputer +
   scaler + logistic regression): federated Newton vs plain FedAvg of
   warm-started local logistic regressions (the naive approach), local-only
   models and the pooled (centralized) model, accuracy on pooled held-out rows.
4. **exact models** (LinearRegression, GaussianNB, PCA, KMeans) on the hospitals: time.
5. **vertical logistic regression** on ``data_samples/vertical``: seconds per iteration.

Usage::

    python benchmarks/bench_learn.py [--key-bits 2048] [--skip-vertical]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import polars as pl
from phe import paillier
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fedbench as fb
from fedbench.learn import iid_partition, to_federation
from fedbench.samples import sample_dir

warnings.filterwarnings("ignore")


def _fed_from(parts: dict[str, pl.DataFrame], **kw: object) -> fb.Federation:
    return to_federation(parts, **kw)


def secure_fedavg(key_bits: int) -> None:
    data = load_breast_cancer(as_frame=True)
    df = pl.from_pandas(data.frame).select([*data.feature_names[:10], "target"])
    parts = iid_partition(df, 4, seed=0)
    insecure = key_bits < 2048
    print(f"\n1. secure FedAvg: 4 parties x 30 rounds, StandardScaler + SGDClassifier on 10 features, "
          f"{key_bits}-bit keys")
    est = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0))
    opts = {"target": "target", "rounds": 30, "strategy": "fedavg", "test_size": 0.25, "evaluate_every": 0}
    fed = _fed_from(parts, key_bits=key_bits, allow_insecure_key_size=insecure)
    t0 = time.perf_counter()
    fed.keys  # noqa: B018 - generate the key pair outside the timed loop
    keygen = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = fed.fit(est, **opts)
    secure = time.perf_counter() - t0
    rounds = run.global_history.filter(pl.col("stage") == "sgdclassifier")["seconds"].sum()
    print(f"   key generation                 {keygen:7.2f} s (once per federation)")
    print(f"   fedbench, packed DJN Paillier  {secure:7.2f} s  whole fit; the 30 FedAvg rounds {rounds:.2f} s "
          f"({rounds / 30 * 1000:.1f} ms/round); {run.nbytes / 1e3:.0f} kB, {len(run.transcript)} messages; "
          "target <= 5 s")
    print(f"   accuracy on held-out rows      {run.score:.4f}; keygen + training {keygen + secure:.2f} s")
    fed_t = _fed_from(parts, key_bits=key_bits, allow_insecure_key_size=insecure, fast_encryption=False)
    fed_t._keys = fed.keys  # same key pair, textbook encryption
    t0 = time.perf_counter()
    fed_t.fit(est, **opts)
    textbook = time.perf_counter() - t0
    print(f"   textbook Paillier (packed)     {textbook:7.2f} s")
    fed_p = _fed_from(parts, key_bits=key_bits, allow_insecure_key_size=insecure)
    t0 = time.perf_counter()
    fed_p.fit(est, **opts, secure=False)
    plain = time.perf_counter() - t0
    print(f"   plaintext sums (no crypto)     {plain:7.2f} s   -> crypto overhead {secure - plain:.2f} s")
    # Naive: phe, one ciphertext per value (11 parameters + count + loss), per party per round.
    pk, sk = paillier.generate_paillier_keypair(n_length=key_bits)
    vals = list(np.random.default_rng(0).normal(size=13))
    t0 = time.perf_counter()
    for _ in range(3):
        cts = [[pk.encrypt(float(v)) for v in vals] for _ in range(4)]
        total = [sum(col[1:], col[0]) for col in zip(*cts, strict=True)]
        [sk.decrypt(c) for c in total]
    naive = (time.perf_counter() - t0) / 3 * 30
    print(f"   naive phe secure sums only     {naive:7.2f} s   (one ciphertext per value, extrapolated from 3 "
          "rounds, local training not included)")


def many_parties() -> None:
    print("\n2. 100 simulated parties x 20 rounds, plaintext sums (secure=False)")
    x, y = make_classification(n_samples=10_000, n_features=10, n_informative=6, random_state=0)
    df = pl.DataFrame({f"x{i}": x[:, i] for i in range(10)}).with_columns(pl.Series("y", y))
    fed = _fed_from(iid_partition(df, 100, seed=0), key_bits=512, allow_insecure_key_size=True)
    t0 = time.perf_counter()
    run = fed.fit(SGDClassifier(loss="log_loss", random_state=0), target="y", rounds=20, secure=False,
                  test_size=0.2, evaluate_every=5)
    dt = time.perf_counter() - t0
    print(f"   {dt:.2f} s ({dt / 20 * 1000:.0f} ms/round, {dt / 2000 * 1000:.2f} ms per party-round)  target <= 10 s; "
          f"accuracy {run.score:.4f}")


def hospitals_quality(key_bits: int) -> None:
    print(f"\n3. four hospitals (natural split, nulls): accuracy on pooled held-out rows, {key_bits}-bit keys")
    fed = fb.Federation.from_dir(sample_dir("hospitals"), key_bits=key_bits,
                                 allow_insecure_key_size=key_bits < 2048)
    fed.keys  # noqa: B018
    pipe = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())
    t0 = time.perf_counter()
    run = fed.fit(pipe, target="diagnosis", test_size=0.3, seed=0)
    dt = time.perf_counter() - t0
    tab = run.compare()
    scores = dict(zip(tab["model"].to_list(), tab["score"].to_list(), strict=True))
    newton = run.steps[-1]
    print(f"   federated Newton: {dt:.2f} s, {newton.rounds} rounds, {run.nbytes / 1e6:.1f} MB")
    naive = fed.fit(pipe, target="diagnosis", test_size=0.3, seed=0, strategy="fedavg", rounds=10, local_epochs=10)
    nscore = _federated(naive)
    prox = fed.fit(pipe, target="diagnosis", test_size=0.3, seed=0, strategy="fedprox", proximal_mu=1.0, rounds=10)
    pscore = _federated(prox)
    for name, s in scores.items():
        print(f"   {name:<34} {s:.4f}")
    print(f"   {'fedavg of warm-started local LRs':<34} {nscore:.4f}  (10 rounds, local L-BFGS to convergence)")
    print(f"   {'fedprox mu=1':<34} {pscore:.4f}  (10 rounds)")
    best_local = max(v for k, v in scores.items() if k.startswith("local:") and v is not None)
    print(f"   federated - centralized = {100 * (scores['federated'] - scores['centralized']):+.2f} points; "
          f"federated - best local = {100 * (scores['federated'] - best_local):+.2f} points")
    print("   other splits (seed 1-5, test_size 0.3; Newton with plaintext sums: same optimum, faster):")
    for seed in range(1, 6):
        r = fed.fit(pipe, target="diagnosis", test_size=0.3, seed=seed, secure=False)
        t = dict(zip(r.compare()["model"], r.compare()["score"], strict=True))
        nv = _federated(fed.fit(pipe, target="diagnosis", test_size=0.3, seed=seed, strategy="fedavg", rounds=10,
                                local_epochs=10, secure=False))
        bl = max(v for k, v in t.items() if k.startswith("local:") and v is not None)
        print(f"     seed {seed}: newton {t['federated']:.4f}  centralized {t['centralized']:.4f}  "
              f"best local {bl:.4f}  naive fedavg {nv:.4f}")


def _federated(run: object) -> float:
    tab = run.compare()  # type: ignore[attr-defined]
    return float(tab.filter(pl.col("model") == "federated")["score"].item())


def exact_models(key_bits: int) -> None:
    print(f"\n4. exact models on the four hospitals, {key_bits}-bit keys (time incl. imputer)")
    fed = fb.Federation.from_dir(sample_dir("hospitals"), key_bits=key_bits,
                                 allow_insecure_key_size=key_bits < 2048)
    fed.keys  # noqa: B018
    cases = [
        ("LinearRegression", make_pipeline(SimpleImputer(), LinearRegression()), {"target": "mean_area"}),
        ("GaussianNB", make_pipeline(SimpleImputer(), GaussianNB()), {"target": "diagnosis"}),
        ("PCA(5)", make_pipeline(SimpleImputer(), StandardScaler(), PCA(5)), {}),
        ("KMeans(3)", make_pipeline(SimpleImputer(), StandardScaler(), KMeans(3, random_state=0)), {}),
    ]
    for name, est, kw in cases:
        t0 = time.perf_counter()
        run = fed.fit(est, **kw)
        print(f"   {name:<18} {time.perf_counter() - t0:6.2f} s, {sum(s.secure_sums for s in run.steps)} secure sums, "
              f"{run.nbytes / 1e3:.0f} kB")


def vertical(key_bits: int, rounds: int) -> None:
    print(f"\n5. vertical logistic regression (hospital x insurer), {key_bits}-bit keys, {rounds} iterations")
    fed = fb.Federation.from_dir(sample_dir("vertical"), key_bits=key_bits, allow_insecure_key_size=key_bits < 2048)
    fed.keys  # noqa: B018
    t0 = time.perf_counter()
    run = fed.fit_vertical(LogisticRegression(), label_party="hospital", target="outcome", on="patient_id",
                           rounds=rounds)
    dt = time.perf_counter() - t0
    per = run.history["seconds"].mean()
    tab = run.compare()
    print(f"   {dt:.2f} s total (PSI included), {per:.3f} s/iteration, {run.nbytes / 1e6:.1f} MB; "
          "accuracy " + ", ".join(f"{m}={s:.4f}" for m, s in zip(tab["model"], tab["score"], strict=True)
                                  if s is not None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--vertical-rounds", type=int, default=10)
    ap.add_argument("--skip-vertical", action="store_true")
    args = ap.parse_args()
    print(f"fedbench learn benchmark: {len(os.sched_getaffinity(0))} cores, in-process backend")
    secure_fedavg(args.key_bits)
    many_parties()
    hospitals_quality(args.key_bits)
    exact_models(args.key_bits)
    if not args.skip_vertical:
        vertical(args.key_bits, args.vertical_rounds)


if __name__ == "__main__":
    main()
