"""Masking secure aggregation (Bonawitz et al. / SecAgg+) against Paillier, in one run, through the federation.

Every figure is measured through ``Federation.secure_sum`` / ``Federation.fit``
with ``protocol="masking"``: the four rounds run inside the parties (one call
per party and round), the aggregator only relays and unmasks.

1. Ten parties x 100,000 float64 values from N(0, 1): masking end to end, then
   Paillier (``protocol="paillier"``, 2048-bit keys, DJN encryption, key
   generation excluded) on the same data.  Paillier is measured on the first
   ``--paillier-values`` values of every vector (default 10,000) and scaled
   linearly to 100,000 (its cost is linear in the vector length: packed
   ciphertexts), unless ``--paillier-values 100000``.
2. 1,000 parties x 1,000 values, one secure sum with SecAgg+ (``k = 2 log2(n)``
   neighbours, threshold ``t = k/2 + 1``), 10% of the parties (drawn at
   random) dropping at the masked-input round: the sum must equal exactly the
   sum of the others.  The default threshold ``ceil(2k/3)`` (14 of 20) tolerates
   only 6 dropped neighbours per party: with 10% random dropouts some party of
   the 1,000 has more in about 40% of runs (simulated over 200 random graphs),
   and the run then releases nothing; ``t = 11`` failed in about 1.5%.
3. 1,000 parties x ``--fedavg-rounds`` rounds of FedAvg (SGDClassifier, a
   partitioned 20,000-row data set, every party in every round, evaluation at
   the end only) with masking: wall time and peak resident memory.

Usage::

    python benchmarks/bench_masking.py [--skip-paillier] [--big-parties 1000] [--fedavg-rounds 20]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import numpy as np
import polars as pl

import fedbench as fb


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ten_parties(skip_paillier: bool, paillier_values: int) -> None:
    """Ten parties x 100,000 values: masking vs Paillier on the same data."""
    rng = np.random.default_rng(0)
    data = [rng.normal(0.0, 1.0, 100_000) for _ in range(10)]
    fed = fb.Federation(secagg="masking", ledger_path=":memory:")
    for i in range(10):
        fed.add_party(f"p{i}", pl.DataFrame({"id": [i]}))

    def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": data[int(df["id"][0])]}

    exact = np.sum(data, axis=0)
    t0 = time.perf_counter()
    res = fed.secure_sum(local)
    wall = time.perf_counter() - t0
    err = float(np.abs(res.value["x"] - exact).max())
    d = res.protocol_details
    print(f"masking (federation, party-side), 10 parties x 100,000 values: {wall:.2f} s end to end "
          f"(k = {d['neighbours']}, t = {d['threshold']}); {len(res.transcript)} messages, "
          f"{res.transcript.nbytes / 1e6:.1f} MB; max error {err:.1e} (resolution "
          f"{fed.sum_encoding.resolution:.1e} per party); target <= 1.5 s: {'met' if wall <= 1.5 else 'NOT met'}")
    print("  rounds: " + ", ".join(f"{k} {v:.2f} s" for k, v in res.seconds.items()))
    if skip_paillier:
        return
    t0 = time.perf_counter()
    _ = fed.keys  # key generation is not part of the comparison
    keygen = time.perf_counter() - t0
    m = min(paillier_values, 100_000)
    sub = [x[:m] for x in data]

    def local_slice(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": sub[int(df["id"][0])]}

    t0 = time.perf_counter()
    pres = fed.secure_sum(local_slice, protocol="paillier")
    pwall = time.perf_counter() - t0
    perr = float(np.abs(np.asarray(pres.value["x"]) - exact[:m]).max())
    scale = 100_000 / m
    note = "" if m == 100_000 else f", measured on {m:,} values and scaled x{scale:g}"
    print(f"paillier (protocol='paillier', 2048-bit, DJN), same data{note}: {pwall * scale:.2f} s end to end "
          f"(key generation {keygen:.2f} s apart); {len(pres.transcript)} messages, "
          f"{pres.transcript.nbytes * scale / 1e6:.1f} MB; max error {perr:.1e}")
    print(f"  masking is {pwall * scale / wall:,.0f}x faster and sends "
          f"{pres.transcript.nbytes * scale / res.transcript.nbytes:.1f}x fewer bytes here")
    fed.close()


def thousand_parties(n: int) -> None:
    """n parties x 1,000 values, SecAgg+ with k = 2 log2(n), 10% dropping at the masked-input round."""
    rng = np.random.default_rng(1)
    vectors = [np.round(rng.normal(0.0, 1.0, 1000) * 2**16) / 2**16 for _ in range(n)]
    from fedbench.learn import to_federation

    t0 = time.perf_counter()
    fed = to_federation({f"p{i:04d}": pl.DataFrame({"id": [i]}) for i in range(n)}, secagg="masking",
                        ledger_path=":memory:")
    build = time.perf_counter() - t0
    names = list(fed.parties)
    dropped = [names[i] for i in rng.choice(n, n // 10, replace=False)]
    k = 2 * math.ceil(math.log2(n))

    def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": vectors[int(df["id"][0])]}

    t0 = time.perf_counter()
    try:
        res = fed.secure_sum(local, neighbours=k, threshold=k // 2 + 1, dropout=dict.fromkeys(dropped, 3))
    except fb.errors.MaskingDropoutError as err:
        print(f"SecAgg+, {n} parties: this run released nothing after {time.perf_counter() - t0:.2f} s ({err})")
        return
    wall = time.perf_counter() - t0
    gone = set(dropped)
    expected = np.sum([vectors[i] for i, u in enumerate(names) if u not in gone], axis=0)
    ok = bool(np.array_equal(res.value["x"], expected))
    d = res.protocol_details
    print(f"SecAgg+ (federation, party-side), {n} parties x 1,000 values, k = {d['neighbours']}, "
          f"t = {d['threshold']}, {len(dropped)} dropped at the masked-input round: {wall:.2f} s "
          f"(federation built in {build:.2f} s); {len(res.transcript):,} messages, "
          f"{res.transcript.nbytes / 1e6:.1f} MB; "
          f"exact sum of the {len(res.parties)} others: {ok}; target <= 30 s: {'met' if wall <= 30 else 'NOT met'}")
    print("  rounds: " + ", ".join(f"{k} {v:.2f} s" for k, v in res.seconds.items()))
    if not ok:
        raise SystemExit("SecAgg+ sum is not exact")


def fedavg_thousand(n: int, rounds: int) -> None:
    """n parties x ``rounds`` rounds of FedAvg with masking: time and peak memory."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import SGDClassifier

    from fedbench.learn import FedAvg, iid_partition, to_federation

    x, y = make_classification(n_samples=20 * n, n_features=8, n_informative=5, random_state=0)
    df = pl.DataFrame({f"x{i}": x[:, i] for i in range(8)}).with_columns(pl.Series("y", y))
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    fed = to_federation(iid_partition(df, n, seed=0), secagg="masking", ledger_path=":memory:")
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = fed.fit(SGDClassifier(loss="log_loss", random_state=0), target="y", strategy=FedAvg(rounds=rounds),
                  evaluate_every=rounds, classes=[0, 1])
    wall = time.perf_counter() - t0
    sums = sum(1 for m in run.transcript if m.kind == "aggregate")
    score = run.history["metric"].drop_nulls() if "metric" in run.history.columns else None
    final = f"{score[-1]:.3f}" if score is not None and len(score) else "n/a"
    print(f"FedAvg with masking, {len(fed)} parties x {rounds} rounds (every party every round): {wall:.1f} s "
          f"({wall / rounds:.1f} s per round, {sums} masked secure sums in all; federation built in {build:.1f} s); "
          f"peak RSS {_rss_mb():.0f} MB (before building the federation: {rss0:.0f} MB); held-out score {final}")


def main() -> None:
    """Run the benchmarks and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-paillier", action="store_true")
    ap.add_argument("--paillier-values", type=int, default=10_000)
    ap.add_argument("--big-parties", type=int, default=1000)
    ap.add_argument("--fedavg-parties", type=int, default=1000)
    ap.add_argument("--fedavg-rounds", type=int, default=20, help="0 skips the FedAvg benchmark")
    args = ap.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}; load average at start: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    ten_parties(args.skip_paillier, args.paillier_values)
    thousand_parties(args.big_parties)
    if args.fedavg_rounds:
        fedavg_thousand(args.fedavg_parties, args.fedavg_rounds)
    print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
