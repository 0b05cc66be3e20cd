"""CKKS secure sum (``secagg="ckks"``) against the default Paillier path, on the same data, in the same run.

Ten parties each contribute a 100,000-value float64 vector drawn from N(0, 1)
through ``fed.secure_sum(fn)`` on a ``Federation(secagg="ckks")`` with every
other setting at its default (in-process backend, ``secure_sum``'s default
range |x| < 2**20 and resolution 2**-16).  The CKKS figure is end to end
(fresh CKKS key pair, encryption in every party, aggregation, decryption,
noise flooding); it is run twice (cold and warm; below 64 ciphertexts per party, i.e.
262,144 values, each party encrypts in the calling process, so the CPU time of
this process is the whole cost and shows what a shared machine's load adds).
Reported: wall time, maximum absolute error against the plaintext sum, the
reported bound, and bytes.

Multiparty CKKS (``secagg="ckks-multiparty"``, OpenFHE in one CPython 3.10
engine process per party, n-of-n decryption, no key holder) runs next on the
same data, also cold and warm, with its key set-up (noise calibration and the
key chain) reported separately; it needs ``$FEDBENCH_OPENFHE_PYTHON``.

Baseline: the default Paillier protocol (2048-bit key generated before
timing, DJN encryption, packing) on the first ``--paillier-length`` values of
the same vectors, scaled linearly to the full length (Paillier's cost is
linear in the number of ciphertexts); say so in any figure quoted.

Usage::

    python benchmarks/bench_ckks.py [--parties 10] [--length 100000] [--paillier-length 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl

import fedbench as fb


def load() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def federation(n_parties: int, secagg: str) -> fb.Federation:
    """Default federation with one tiny frame per party (the local function ignores the rows)."""
    fed = fb.Federation(secagg=secagg)
    fed.add_parties({f"party{i}": pl.DataFrame({"id": [i]}) for i in range(n_parties)})
    return fed


def run(fed: fb.Federation, data: list[np.ndarray]) -> tuple[float, float, fb.SecureSumResult]:
    """Time one secure sum of ``data`` (one vector per party) end to end: wall and this process's CPU seconds."""
    vectors = dict(enumerate(data))

    def local(df: pl.DataFrame) -> dict[str, np.ndarray]:
        return {"x": vectors[int(df["id"][0])]}

    t0, c0 = time.perf_counter(), time.process_time()
    res = fed.secure_sum(local)
    return time.perf_counter() - t0, time.process_time() - c0, res


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parties", type=int, default=10)
    ap.add_argument("--length", type=int, default=100_000)
    ap.add_argument("--paillier-length", type=int, default=10_000)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.parties} parties x {args.length:,} float64 values; {cores} usable cores; load {load()}")

    rng = np.random.default_rng(0)
    data = [rng.normal(0.0, 1.0, args.length) for _ in range(args.parties)]
    exact = np.sum(data, axis=0)
    total = args.parties * args.length

    fed = federation(args.parties, "ckks")
    _ = fed.keys  # the coordinator's Paillier key, unused by CKKS: generated before timing
    for label in ("cold", "warm"):
        wall, cpu, res = run(fed, data)
        err = np.abs(np.asarray(res["x"]) - exact).max()
        ct = res.transcript.filter(kind="ciphertexts").nbytes
        pk = res.transcript.filter(kind="public-key").nbytes
        print(f"CKKS ({label}): {wall:.2f} s end to end ({total / wall:,.0f} values/s; {cpu:.2f} s CPU in this "
              f"process, which does all the work below 64 ciphertexts per party); max abs error "
              f"{err:.3g} (reported bound {res.error_bound:.3g}); {res.scheme}")
        print(f"  keygen {res.seconds['keygen']:.3f} s, encrypt {res.seconds['encrypt']:.2f} s (CPU, summed over "
              f"parties), aggregate {res.seconds['aggregate']:.2f} s, decrypt+flood {res.seconds['decrypt']:.2f} s "
              "(wall)")
        print(f"  {res.ciphertexts} ciphertexts ({res.slots_per_ciphertext} values each); {ct / total:.1f} bytes/value "
              f"parties->aggregator; public keys {pk / 1e6:.1f} MB; {res.nbytes / 1e6:.1f} MB in all")
    ckks_wall = wall
    ckks_bytes = res.nbytes
    ckks_err, ckks_bound, ckks_ct = err, res.error_bound, ct
    fed.close()

    # Multiparty CKKS (OpenFHE, n-of-n, no key holder) on the same data, next to the single-key figure.
    fed = federation(args.parties, "ckks-multiparty")
    for label in ("cold", "warm"):
        wall, cpu, res = run(fed, data)
        err = np.abs(np.asarray(res["x"]) - exact).max()
        ct = res.transcript.filter(kind="ciphertexts").nbytes
        setup = res.seconds.get("calibrate", 0.0) + res.seconds["keygen"]
        sent = res.nbytes
        print(f"multiparty CKKS ({label}): {wall:.2f} s end to end, of which key set-up {setup:.2f} s "
              f"(noise calibration, cached after the first run, and the aggregator's context "
              f"{res.seconds.get('calibrate', 0.0):.2f} s; key chain {res.seconds['keygen']:.2f} s); "
              f"{total / (wall - setup):,.0f} values/s without set-up; max abs error {err:.3g} (reported bound "
              f"{res.error_bound:.3g}); {res.scheme}")
        print(f"  encrypt {res.seconds['encrypt']:.2f} s (wall, parties' engines side by side), aggregate "
              f"{res.seconds['aggregate']:.2f} s, partial decryptions + fusion {res.seconds['decrypt']:.2f} s; "
              f"{res.ciphertexts} ciphertexts; {ct / total:.1f} bytes/value parties->aggregator; "
              f"{sent / 1e6:.1f} MB in all")
    print(f"  single key holder (TenSEAL, this run, warm): {ckks_wall:.2f} s, max abs error {ckks_err:.3g} "
          f"(bound {ckks_bound:.3g}), {ckks_ct / total:.1f} bytes/value; multiparty is "
          f"{wall / ckks_wall:.1f}x the time and {sent / ckks_bytes:.1f}x the bytes; load {load()}")
    fed.close()

    m = min(args.paillier_length, args.length)
    fed = federation(args.parties, "paillier")
    t0 = time.perf_counter()
    _ = fed.keys
    keygen = time.perf_counter() - t0
    wall, cpu, res = run(fed, [d[:m] for d in data])
    err = np.abs(np.asarray(res["x"]) - exact[:m]).max()
    scale = args.length / m
    print(f"Paillier (default path, {fed.key_bits}-bit, key generated in {keygen:.2f} s before timing): "
          f"{wall:.2f} s for {args.parties} x {m:,} values ({cpu:.2f} s CPU in this process, the rest in its "
          f"worker pool), max abs error {err:.3g}; scaled x{scale:g} to "
          f"{args.length:,}: {wall * scale:.1f} s, {res.nbytes * scale / 1e6:.1f} MB")
    print(f"ratio: CKKS (warm) is {wall * scale / ckks_wall:.1f}x faster and sends "
          f"{ckks_bytes / (res.nbytes * scale):.1f}x the bytes of Paillier (scaled); load {load()}")
    fed.close()


if __name__ == "__main__":
    main()
