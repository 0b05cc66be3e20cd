"""Arithmetic on Paillier ciphertexts, for protocols that compute on other parties' ciphertexts.

Secure aggregation only adds ciphertexts; vertical learning also adds
plaintexts to received ciphertexts and forms encrypted linear combinations
``[[sum_i e_i m_i]]`` of them.  These helpers work on raw ciphertext integers
(``c`` in ``Z_{n^2}``) under the key holder's public key ``n``:

* :func:`cached_encryptor`: one :class:`~fedbench.crypto.paillier.FastEncryptor`
  per public key and process (its fixed-base table takes ~0.2 s to build at
  2048 bits);
* :func:`encode_signed` / :func:`decode_signed`: signed integers as residues mod ``n``;
* :func:`add_plain`: ``[[a]] -> [[a + k]]`` (multiply by ``1 + k n``);
* :func:`weighted_product`: ``[[sum_i e_i m_i]]`` by Pippenger's bucket method.

None of them adds randomness: a party that returns a ciphertext derived from
another party's ciphertexts re-randomises it first
(:meth:`~fedbench.crypto.paillier.FastEncryptor.rerandomize`), otherwise the
author divides out its own ciphertext and reads what was applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import gmpy2
import numpy as np

from .paillier import FastEncryptor

__all__ = ["add_plain", "cached_encryptor", "decode_signed", "encode_signed", "inverses", "weighted_product"]


@lru_cache(maxsize=4)
def cached_encryptor(n: int, h_s: int | None) -> FastEncryptor:
    """The process's encryptor for public key ``n`` (DJN fast encryption when ``h_s`` is given).

    Cached because building the fixed-base window table costs far more than one encryption.
    """
    return FastEncryptor(n, h_s)


def encode_signed(v: int, n: int) -> int:
    """A signed integer as a plaintext residue mod ``n``."""
    return v % n


def decode_signed(v: int, n: int) -> int:
    """A plaintext residue mod ``n`` back to a signed integer (the upper half is negative)."""
    v %= n
    return v - n if v > n // 2 else v


def add_plain(c: Any, k: int, n: int) -> Any:
    """``[[a]] -> [[a + k]]``: multiply by ``1 + k n`` mod ``n^2`` (no fresh randomness)."""
    nn = gmpy2.mpz(n)
    n2 = nn * nn
    return gmpy2.mpz(c) * ((1 + encode_signed(int(k), n) * nn) % n2) % n2


def inverses(cts: Sequence[Any], n: int) -> list[Any]:
    """Modular inverses of ciphertexts mod ``n^2`` (the encryptions of the negated plaintexts)."""
    n2 = gmpy2.mpz(n) ** 2
    return [gmpy2.invert(gmpy2.mpz(c), n2) for c in cts]


def weighted_product(cts: Sequence[Any], inv: Sequence[Any], exps: np.ndarray, n2: Any, window: int = 5) -> Any:
    """``prod_i cts[i] ** exps[i] mod n^2``, i.e. the encryption of ``sum_i exps[i] * plaintext_i``.

    Pippenger's bucket method: for each ``window``-bit digit position, multiply
    each base into the bucket of its digit, then combine the buckets with two
    running products; about 5x fewer multiplications than one exponentiation
    per row.  Negative exponents use the inverse ciphertexts ``inv``.
    """
    e = np.asarray(exps, dtype=np.int64)
    bases = [c if v >= 0 else ci for c, ci, v in zip(cts, inv, e.tolist(), strict=True)]
    mag = np.abs(e)
    bits = int(mag.max()).bit_length() if mag.size else 0
    mask = (1 << window) - 1
    acc = gmpy2.mpz(1)
    for k in range(-(-bits // window) - 1, -1, -1):
        for _ in range(window):
            acc = acc * acc % n2
        buckets: list[Any] = [None] * (mask + 1)
        for b, d in zip(bases, ((mag >> (k * window)) & mask).tolist(), strict=True):
            if d:
                cur = buckets[d]
                buckets[d] = b if cur is None else cur * b % n2
        running, total = gmpy2.mpz(1), gmpy2.mpz(1)
        for d in range(mask, 0, -1):  # total = prod_d bucket_d ** d
            if buckets[d] is not None:
                running = running * buckets[d] % n2
            total = total * running % n2
        acc = acc * total % n2
    return acc
