"""Secure-sum throughput: packed, fast-encrypted Paillier vs naive one-value-per-ciphertext phe.

Ten parties each contribute a 100,000-value vector of 16-bit integers; the
benchmark times the whole secure sum (encode, pack, encrypt, add, decrypt,
unpack, decode) with fedbench and measures naive ``phe`` encryption (one
textbook ciphertext per value, phe's own ``encrypt``) on a sample in the same
run, extrapolating its end-to-end time with the same number of cores.

Usage::

    python benchmarks/bench_secure_sum.py [--parties 10] [--length 100000] [--backend process]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from phe import paillier

import fedbench as fb


def naive_rates(public_key: paillier.PaillierPublicKey, private_key: paillier.PaillierPrivateKey,
                sample: int) -> tuple[float, float, float]:
    """Per-core rates of phe's own encrypt, ciphertext add and decrypt, one value each."""
    rng = np.random.default_rng(0)
    vals = rng.integers(-(2**15), 2**15, sample).tolist()
    t0 = time.perf_counter()
    cts = [public_key.encrypt(v) for v in vals]
    enc = sample / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    acc = cts[0]
    for c in cts[1:]:
        acc = acc + c
    add = (sample - 1) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for c in cts[: max(1, sample // 2)]:
        private_key.decrypt(c)
    dec = max(1, sample // 2) / (time.perf_counter() - t0)
    return enc, add, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=10, help="number of parties")
    ap.add_argument("--length", type=int, default=100_000, help="values per party")
    ap.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    ap.add_argument("--backend", default="process", choices=["inprocess", "process", "ray"], help="execution backend")
    ap.add_argument("--naive-sample", type=int, default=200, help="phe encryptions timed for the baseline")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(42)
    data = [rng.integers(-(2**15) + 1, 2**15, args.length) for _ in range(args.parties)]
    names = ["x"]

    folder = Path(tempfile.mkdtemp(prefix="fedbench-bench-"))
    with fb.Federation(args.key_bits, backend=args.backend, allow_insecure_key_size=args.key_bits < 2048) as fed:
        for i in range(len(data)):
            # One row per party naming its vector; files, so that the Ray backend can load them in actors.
            pl.DataFrame({"id": [i]}).write_csv(folder / f"p{i:02d}.csv")
            fed.add_party(f"p{i:02d}", folder / f"p{i:02d}.csv")
        vectors = {f"p{i:02d}": d for i, d in enumerate(data)}
        t0 = time.perf_counter()
        keys = fed.keys
        keygen = time.perf_counter() - t0

        def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
            return {"x": vectors[f"p{int(df['id'][0]):02d}"].astype(np.float64)}

        if args.backend != "inprocess":  # warm the pool / actors and each fixed-base table once
            fed.secure_sum(local, max_abs=2**15, frac_bits=0)
        t0 = time.perf_counter()
        res = fed.secure_sum(local, max_abs=2**15, frac_bits=0)
        wall = time.perf_counter() - t0
        expected = np.sum(data, axis=0)
        assert np.array_equal(res.value[names[0]].astype(np.int64), expected), "secure sum is wrong"

        enc_rate, add_rate, dec_rate = naive_rates(keys.public_key, keys.private_key, args.naive_sample)

    total = args.parties * args.length
    # Naive: every value encrypted by the parties (all cores), n-1 adds per value, one decrypt per value.
    naive = total / (enc_rate * cores) + (args.parties - 1) * args.length / add_rate + args.length / (dec_rate * cores)
    ct_bytes = res.transcript.filter(kind="ciphertexts").nbytes
    print(f"machine: {cores} cores; {args.key_bits}-bit keys; backend {args.backend}")
    print(f"{args.parties} parties x {args.length:,} values (16-bit), key generation {keygen:.2f} s (not counted)")
    print(f"fedbench secure sum, end to end: {wall:.2f} s  ({total / wall:,.0f} values/s)")
    print(f"  encrypt {res.seconds['encrypt']:.2f} s (CPU, summed over workers), aggregate "
          f"{res.seconds['aggregate']:.2f} s, decrypt {res.seconds['decrypt']:.2f} s")
    print(f"  {res.ciphertexts:,} ciphertexts, {res.slots_per_ciphertext} values each; "
          f"{ct_bytes / total:.2f} bytes/value from parties to aggregator (naive: {2 * args.key_bits // 8})")
    print(f"naive phe (one value per ciphertext), measured on {args.naive_sample}: encrypt {enc_rate:.1f}/s/core, "
          f"add {add_rate:,.0f}/s, decrypt {dec_rate:.1f}/s/core")
    print(f"naive end to end (extrapolated, {cores} cores): {naive:,.0f} s")
    print(f"speed-up over naive: {naive / wall:,.0f}x   (target >= 100x; wall target <= 15 s: "
          f"{'met' if wall <= 15 else 'NOT met'})")


if __name__ == "__main__":
    main()
