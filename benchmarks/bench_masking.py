"""Masking secure aggregation (Bonawitz et al. / SecAgg+) against Paillier, in one run.

1. Ten parties x 100,000 float64 values from N(0, 1): the masking protocol end
   to end through the party-level wrapper (local functions, four rounds, every
   message recorded), then Paillier's ``Federation().secure_sum`` (defaults,
   2048-bit keys; key generation excluded) on the same data; both sums are
   checked against numpy.
2. 1,000 parties x 1,000 values, one round of SecAgg+ with ``k = 2 log2(n)``
   neighbours through ``masked_sum_vectors`` (plain numpy vectors), with 10% of
   the parties dropping at the masked-input round (they never send ``y_u``):
   the sum must equal exactly the sum of the others.

Usage::

    python benchmarks/bench_masking.py [--skip-paillier] [--big-parties 1000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import polars as pl

import fedbench as fb
from fedbench.crypto.packing import Encoding
from fedbench.masking import masked_sum_vectors, secure_aggregate_masking
from fedbench.transcript import Channel


def ten_parties(skip_paillier: bool) -> None:
    """Ten parties x 100,000 values: masking vs Paillier on the same data."""
    rng = np.random.default_rng(0)
    data = [rng.normal(0.0, 1.0, 100_000) for _ in range(10)]
    fed = fb.Federation()
    for i in range(10):
        fed.add_party(f"p{i}", pl.DataFrame({"id": [i]}))

    def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": data[int(df["id"][0])]}

    exact = np.sum(data, axis=0)
    enc = Encoding.default_sum()
    ch = Channel("masking", [])
    t0 = time.perf_counter()
    out = secure_aggregate_masking(list(fed.parties.values()), local, backend=fed.backend, channel=ch, encoding=enc)
    wall = time.perf_counter() - t0
    err = float(np.abs(out.value["x"] - exact).max())
    print(f"masking, 10 parties x 100,000 values: {wall:.2f} s end to end (k = {out.neighbours}, t = {out.threshold}); "
          f"{len(ch.run)} messages, {ch.run.nbytes / 1e6:.1f} MB; max error {err:.1e} "
          f"(resolution {enc.resolution:.1e} per party)")
    print("  rounds: " + ", ".join(f"{k} {v:.2f} s" for k, v in out.seconds.items()))
    if skip_paillier:
        return
    t0 = time.perf_counter()
    _ = fed.keys  # key generation is not part of the comparison
    keygen = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = fed.secure_sum(local)
    pwall = time.perf_counter() - t0
    perr = float(np.abs(np.asarray(res.value["x"]) - exact).max())
    print(f"paillier (Federation().secure_sum, defaults), same data: {pwall:.2f} s end to end "
          f"(key generation {keygen:.2f} s apart); {len(res.transcript)} messages, "
          f"{res.transcript.nbytes / 1e6:.1f} MB; max error {perr:.1e}")
    print(f"  masking is {pwall / wall:,.0f}x faster here")


def thousand_parties(n: int) -> None:
    """n parties x 1,000 values, SecAgg+ with k = 2 log2(n), 10% dropping at the masked-input round."""
    rng = np.random.default_rng(1)
    enc = Encoding(frac_bits=16, value_bits=32)
    vectors = {f"p{i:04d}": np.round(rng.normal(0.0, 1.0, 1000) * 2**16) / 2**16 for i in range(n)}
    names = list(vectors)
    dropped = [names[i] for i in rng.choice(n, n // 10, replace=False)]
    k = 2 * math.ceil(math.log2(n))
    ch = Channel("masking", [])
    t0 = time.perf_counter()
    out = masked_sum_vectors(vectors, encoding=enc, channel=ch, neighbours=k, dropout=dict.fromkeys(dropped, 3))
    wall = time.perf_counter() - t0
    expected = np.sum([vectors[u] for u in names if u not in set(dropped)], axis=0)
    ok = bool(np.array_equal(out.value, expected))
    print(f"SecAgg+, {n} parties x 1,000 values, k = {out.neighbours}, t = {out.threshold}, "
          f"{len(dropped)} dropped at the masked-input round: {wall:.2f} s; {len(ch.run):,} messages, "
          f"{ch.run.nbytes / 1e6:.1f} MB; exact sum of the {len(out.survivors)} others: {ok}")
    print("  rounds: " + ", ".join(f"{k} {v:.2f} s" for k, v in out.seconds.items()))
    if not ok:
        raise SystemExit("SecAgg+ sum is not exact")


def main() -> None:
    """Run both benchmarks and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-paillier", action="store_true")
    ap.add_argument("--big-parties", type=int, default=1000)
    args = ap.parse_args()
    ten_parties(args.skip_paillier)
    thousand_parties(args.big_parties)


if __name__ == "__main__":
    main()
