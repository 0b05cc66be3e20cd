"""Secure-sum throughput with default settings vs naive one-value-per-ciphertext phe.

Default path first: ten parties each contribute a 100,000-value float64
vector drawn from N(0, 1) through ``fed.secure_sum(fn)`` on a
``Federation()`` with every setting at its default (2048-bit keys, in-process
backend, default encoding).  Key generation is timed separately; the end-to-end
figure counts everything else, including the first-use start of the crypto
process pool and each worker's fixed-base table (a second, warm run is shown
too).  The naive baseline (phe's own ``encrypt``, one textbook ciphertext per
value) is measured on a sample in the same run and extrapolated with the same
number of cores.  Then the 16-bit integer figure (``frac_bits=0,
max_abs=2**15``, declared by the caller).

Usage::

    python benchmarks/bench_secure_sum.py [--parties 10] [--length 100000] [--backend inprocess]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl
from phe import paillier

import fedbench as fb


def naive_rates(public_key: paillier.PaillierPublicKey, private_key: paillier.PaillierPrivateKey,
                sample: int) -> tuple[float, float, float]:
    """Per-core rates of phe's own encrypt, ciphertext add and decrypt, one value each."""
    rng = np.random.default_rng(0)
    vals = rng.normal(0.0, 1.0, sample).tolist()
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


def load() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(fed: fb.Federation, data: list[np.ndarray], **options: float) -> tuple[float, fb.SecureSumResult]:
    """Time one secure sum of ``data`` (one vector per party) end to end."""
    vectors = dict(enumerate(data))

    def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": vectors[int(df["id"][0])]}

    t0 = time.perf_counter()
    res = fed.secure_sum(local, **options)
    return time.perf_counter() - t0, res


def report(label: str, wall: float, res: fb.SecureSumResult, total: int, naive: float, key_bits: int) -> None:
    """Print one figure: wall time, phases, packing, traffic and the ratio to naive phe."""
    ct_bytes = res.transcript.filter(kind="ciphertexts").nbytes
    print(f"{label}: {wall:.2f} s end to end ({total / wall:,.0f} values/s); "
          f"speed-up over naive phe {naive / wall:,.0f}x")
    print(f"  encrypt {res.seconds['encrypt']:.2f} s (CPU, summed over workers), aggregate "
          f"{res.seconds['aggregate']:.2f} s, decrypt+decode {res.seconds['decrypt']:.2f} s (wall)")
    print(f"  encoding: {res.frac_bits} fractional bits, {res.value_bits}-bit values; {res.slots_per_ciphertext} "
          f"values per ciphertext, {res.ciphertexts:,} ciphertexts; {ct_bytes / total:.2f} bytes/value from "
          f"parties to aggregator (naive: {2 * key_bits // 8})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=10, help="number of parties")
    ap.add_argument("--length", type=int, default=100_000, help="values per party")
    ap.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus size")
    ap.add_argument("--backend", default=None, choices=["inprocess", "process", "ray"],
                    help="execution backend (default: the Federation default)")
    ap.add_argument("--naive-sample", type=int, default=200, help="phe encryptions timed for the baseline")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0))
    total = args.parties * args.length
    print(f"machine: {cores} cores, load average at start {load()}; {args.key_bits}-bit keys; "
          f"backend {args.backend or 'default'}")
    rng = np.random.default_rng(42)
    floats = [rng.normal(0.0, 1.0, args.length) for _ in range(args.parties)]
    ints = [rng.integers(-(2**15) + 1, 2**15, args.length) for _ in range(args.parties)]

    options = {} if args.backend is None else {"backend": args.backend}
    with fb.Federation(args.key_bits, allow_insecure_key_size=args.key_bits < 2048, **options) as fed:
        for i in range(args.parties):
            fed.add_party(f"p{i:02d}", pl.DataFrame({"id": [i]}))  # one row naming the party's vector
        t0 = time.perf_counter()
        keys = fed.keys
        keygen = time.perf_counter() - t0
        print(f"{args.parties} parties x {args.length:,} values; key generation {keygen:.2f} s (counted separately)")

        # 1. Defaults only: float64 N(0, 1), Federation() encoding, cold pool.
        wall, res = run(fed, floats)
        err = float(np.max(np.abs(res.value["x"] - np.sum(floats, axis=0))))
        bound = args.parties * 2.0 ** -(res.frac_bits + 1)
        assert err <= bound + 1e-9, "secure sum is wrong"
        warm, _ = run(fed, floats)

        enc_rate, add_rate, dec_rate = naive_rates(keys.public_key, keys.private_key, args.naive_sample)
        # Naive: every value encrypted by the parties (all cores), n-1 adds per value, one decrypt per value.
        naive = (total / (enc_rate * cores) + (args.parties - 1) * args.length / add_rate
                 + args.length / (dec_rate * cores))
        print(f"naive phe (one value per ciphertext), measured on {args.naive_sample}: encrypt {enc_rate:.1f}/s/core, "
              f"add {add_rate:,.0f}/s, decrypt {dec_rate:.1f}/s/core; extrapolated end to end on {cores} cores: "
              f"{naive:,.0f} s")
        report("DEFAULT PATH (float64 N(0,1), Federation() defaults, cold start incl. process pool)", wall, res,
               total, naive, args.key_bits)
        print(f"  max abs error {err:.2e} (bound {bound:.2e}); same sum again with the warm pool: {warm:.2f} s "
              f"({naive / warm:,.0f}x)")
        print(f"  targets: <= 15 s {'met' if wall <= 15 else 'NOT met'}; >= 300x naive "
              f"{'met' if naive / wall >= 300 else 'NOT met'}")

        # 2. 16-bit integers with a declared range (frac_bits=0, max_abs=2**15): exact integer sums.
        wall16, res16 = run(fed, ints, max_abs=2**15, frac_bits=0)
        assert np.array_equal(np.asarray(res16.value["x"], dtype=np.int64), np.sum(ints, axis=0)), "wrong sum"
        report("16-bit integers (frac_bits=0, max_abs=2**15, warm pool)", wall16, res16, total, naive,
               args.key_bits)
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
