"""Threshold Paillier decryption vs single-key decryption of the same aggregate, and key set-up times.

Ten parties (``--parties``), threshold ``t = 6`` (``--threshold``), 2048-bit
modulus (``--bits``).  Key set-up: the single key holder's ``generate_keys``
against the dealer's ``deal_threshold_keys`` (two safe primes).  Decryption:
each party encrypts a random vector of ``--length`` values with the default
packed encoding; the aggregator adds the ciphertexts; then the same aggregate
ciphertexts are decrypted (a) by the single key holder (phe's CRT decryption)
and (b) by ``t`` share holders (partial decryptions with their batched
zero-knowledge proofs, verified and combined by the aggregator), both through
:func:`fedbench.secagg.keyholders.decrypt_aggregate` on the same backend (the
in-process backend: large batches use a process pool on every core).  Printed:
seconds of each, their ratio, and the critical path if each party computed its
partial decryption on its own machine (one party's share of the work plus the
aggregator's verification and combination).

Finally the dealerless set-up (TNO's distributed key generation, extra
``fedbench[dealerless]``) is timed for the same parties at ``--dealerless-bits``
(512 by default: at 2048 bits it takes far longer; see the closing note).

Usage::

    python benchmarks/bench_threshold.py [--parties 10] [--threshold 6] [--bits 2048] [--length 2000]
                                         [--dealerless-bits 512] [--dealerless-threshold 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fedbench.backend import get_backend
from fedbench.crypto.arithmetic import cached_encryptor
from fedbench.crypto.packing import Encoding, PackingLayout
from fedbench.crypto.paillier import add_ciphertext_vectors, decrypt_many, generate_keys
from fedbench.crypto.threshold import combine, deal_threshold_keys, partial_decrypt, verify_partial
from fedbench.secagg.keyholders import decrypt_aggregate
from fedbench.transcript import Channel


def load() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, default=10)
    ap.add_argument("--threshold", type=int, default=6)
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--length", type=int, default=2000)
    ap.add_argument("--dealerless-bits", type=int, default=512,
                    help="modulus of the dealerless (TNO) key set-up timed for the same parties (0: skip)")
    ap.add_argument("--dealerless-threshold", type=int, default=5, help="odd: TNO's sharing has degree 2c")
    ap.add_argument("--dealerless-timeout", type=float, default=600.0)
    args = ap.parse_args()
    names = [f"p{i}" for i in range(args.parties)]
    print(f"threshold Paillier benchmark: {args.parties} parties, t = {args.threshold}, {args.bits}-bit modulus, "
          f"{args.length} values per party; cores: {os.cpu_count()}, load: {load()}")

    # -- key set-up --------------------------------------------------------------------------
    t0 = time.perf_counter()
    single = generate_keys(args.bits, allow_insecure_key_size=True)
    single_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    tkeys = deal_threshold_keys(names, args.threshold, args.bits, allow_insecure_key_size=True)
    dealer_setup = time.perf_counter() - t0
    print(f"key set-up: single key holder {single_setup:.2f} s; dealer (safe primes, shares, verification keys) "
          f"{dealer_setup:.2f} s")

    # -- one aggregate under each key ------------------------------------------------------------
    rng = np.random.default_rng(0)
    enc = Encoding.default_sum()
    backend = get_backend("inprocess")
    results = {}
    for label, keys in (("single", single), ("threshold", tkeys)):
        layout = PackingLayout(enc, args.parties, keys.n.bit_length() - 1)
        encryptor = cached_encryptor(keys.n, keys.h_s).prepare()
        vecs = [encryptor.encrypt_many(layout.pack(enc.encode(rng.normal(0, 1, args.length), party=nm,
                                                              names=["x"] * args.length)))
                for nm in names]
        total = add_ciphertext_vectors(keys.n, vecs)
        ct_width = (2 * keys.n.bit_length() + 7) // 8
        sk = getattr(keys, "private_key", None)

        def single_key(cts: list[int], sk=sk) -> list[int]:
            return decrypt_many(sk, cts)

        channel = Channel("bench", [])
        if label == "threshold":
            decrypt_aggregate(keys, total[:1], channel=channel, backend=backend, ct_width=ct_width,
                              single_key=single_key)  # warm the process pool (started once per session)
        t0 = time.perf_counter()
        out = decrypt_aggregate(keys, total, channel=channel, backend=backend, ct_width=ct_width,
                                single_key=single_key)
        results[label] = (time.perf_counter() - t0, out.plaintexts, total)
    n_ct = len(results["single"][2])
    t_single, t_thr = results["single"][0], results["threshold"][0]
    print(f"aggregate: {n_ct} ciphertexts ({layout.slots_per_ciphertext} values each)")
    print(f"decryption: single key holder {t_single:.3f} s; threshold ({args.threshold} partial decryptions "
          f"+ proofs, verified and combined) {t_thr:.3f} s; ratio {t_thr / t_single:.1f}x (target <= 3x)")

    # -- critical path if every party works on its own machine ----------------------------------
    total = results["threshold"][2]
    share = tkeys.shares[names[0]]
    t0 = time.perf_counter()
    pd = partial_decrypt(tkeys.params, share, total)
    one_party = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert verify_partial(tkeys.params, total, pd)
    one_verify = time.perf_counter() - t0
    parts = [pd] + [partial_decrypt(tkeys.params, tkeys.shares[nm], total) for nm in names[1:args.threshold]]
    t0 = time.perf_counter()
    combine(tkeys.params, parts)
    t_comb = time.perf_counter() - t0
    path = one_party + args.threshold * one_verify + t_comb
    print(f"one party's partial decryption + proof {one_party:.3f} s; verifying one proof {one_verify:.3f} s; "
          f"combining {t_comb:.3f} s")
    print(f"critical path with parties in parallel (one party + aggregator's {args.threshold} verifications + "
          f"combination): {path:.3f} s; ratio {path / t_single:.1f}x against the single key holder")
    if args.dealerless_bits:
        try:
            from fedbench.crypto.dealerless import dealerless_threshold_keys

            t0 = time.perf_counter()
            dk = dealerless_threshold_keys(names, args.dealerless_threshold, args.dealerless_bits,
                                           allow_insecure_key_size=True, timeout=args.dealerless_timeout)
            print(f"dealerless key set-up (TNO distributed key generation, {args.parties} parties, "
                  f"t = {args.dealerless_threshold}, {dk.key_bits}-bit n): {time.perf_counter() - t0:.1f} s "
                  "(one run; the number of candidate moduli tried is random, so repeated runs vary widely)")
        except Exception as exc:  # report, do not hide: a timeout or a missing extra is a figure too
            print(f"dealerless key set-up: not measured ({type(exc).__name__}: {exc})")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
