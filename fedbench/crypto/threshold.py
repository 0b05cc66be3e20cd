"""Threshold Paillier decryption: any ``t`` of ``n`` parties decrypt, fewer learn nothing.

The scheme is the ``s = 1`` case of Damgard and Jurik's threshold
generalisation of Paillier (I. Damgard, M. Jurik, *A generalisation, a
simplification and some applications of Paillier's probabilistic public-key
system*, PKC 2001, section 4), itself built on Shoup's threshold RSA
(V. Shoup, *Practical threshold signatures*, EUROCRYPT 2000).

Key set-up (by a **dealer**, who sees the whole key)
    ``n = p q`` with safe primes ``p = 2p' + 1`` and ``q = 2q' + 1``, ``m = p' q'``.
    The secret ``d`` satisfies ``d = 0 (mod m)`` and ``d = 1 (mod n)``; it is
    Shamir-shared over ``Z_{n m}`` with a random polynomial ``f`` of degree
    ``t - 1``: party ``i`` (``i = 1..N``) holds ``s_i = f(i) mod n m``.  With
    ``Delta = N!``, the dealer publishes a random square ``v`` of ``Z*_{n^2}``
    and the verification keys ``v_i = v^(Delta s_i) mod n^2``.  The public key
    is an ordinary ``phe.PaillierPublicKey(n)`` (``g = n + 1``), so the packed
    and Damgard-Jurik-Nielsen encryption of :mod:`fedbench.crypto.paillier`
    works unchanged (safe primes are admissible moduli for it: ``p = q = 3
    (mod 4)`` and ``gcd(p - 1, q - 1) = 2``).

Partial decryption
    Party ``i`` sends ``c_i = c^(2 Delta s_i) mod n^2`` with a non-interactive
    zero-knowledge proof that ``log_{c^4}(c_i^2) = log_v(v_i)`` (a Chaum-Pedersen
    style proof in a group of unknown order as in the paper, made
    non-interactive with Fiat-Shamir over SHA-256).

Combination
    For a set ``S`` of ``t`` parties with valid proofs, with the integer
    Lagrange coefficients ``lambda_i = Delta prod_{j in S, j != i} (-j) / (i - j)``,
    ``c' = prod c_i^(2 lambda_i) = c^(4 Delta^2 d) = (1 + n)^(4 Delta^2 M) mod n^2``,
    so ``M = L(c') (4 Delta^2)^(-1) mod n`` with ``L(u) = (u - 1) / n``.

Batched proofs (a fedbench choice)
    A party decrypting ``K`` ciphertexts at once gives one proof for all of
    them: with ``rho_j`` 128-bit exponents derived by SHA-256 from every
    ciphertext and every partial decryption, it proves
    ``log_{C^4}(D^2) = log_v(v_i)`` for ``C = prod c_j^(rho_j)`` and
    ``D = prod c_{i,j}^(rho_j)`` (the small-exponent batch test of Bellare,
    Garay and Rabin, EUROCRYPT 1998).  Squaring removes the order-2 part of
    ``Z*_{n^2}``; every other element of the group of squares has an order with
    prime factors among ``p, q, p', q'``, all far above ``2^128``, so a single
    wrong ``c_{i,j}`` survives with probability at most ``2^-128``.

What the dealer sees: everything (``p``, ``q``, ``d``, every share).  It is a
separate role: results computed with a dealt key say so in their threat model.
Randomness comes from the OS CSPRNG (:mod:`secrets`); primality tests are
gmpy2's (Miller-Rabin), the hash is :mod:`hashlib`'s SHA-256; all big-integer
arithmetic runs on gmpy2.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
from phe import paillier

from ..errors import ConfigurationError, InsecureParameterError
from .paillier import DEFAULT_KEY_BITS, PublicModulus, check_key_bits

__all__ = [
    "KeyShare",
    "PartialDecryption",
    "ThresholdPaillierKeys",
    "ThresholdPublicParams",
    "check_threshold",
    "combine",
    "deal_threshold_keys",
    "lagrange_coefficients",
    "partial_decrypt",
    "safe_prime",
    "verify_partial",
]

#: Bits of the Fiat-Shamir challenge (a full SHA-256 digest).
CHALLENGE_BITS = 256
#: Statistical zero-knowledge slack of the proof's random exponent.
_ZK_SLACK_BITS = 128
#: Bits of each batching exponent rho_j.
_BATCH_BITS = 128
_DOMAIN = b"fedbench/threshold-paillier/v1"
#: Bound of the safe-prime sieve: candidates p' with p' or 2p' + 1 divisible by an odd prime below it are skipped.
_SIEVE_BOUND = 1 << 15
_SIEVE_WIDTH = 1 << 14
_MR_ROUNDS = 40


@functools.cache
def _sieve_primes() -> np.ndarray:
    """Odd primes below :data:`_SIEVE_BOUND` (sieve of Eratosthenes, built on first use)."""
    is_p = np.ones(_SIEVE_BOUND, dtype=bool)
    is_p[:2] = False
    for i in range(2, math.isqrt(_SIEVE_BOUND - 1) + 1):
        if is_p[i]:
            is_p[i * i :: i] = False
    return np.flatnonzero(is_p)[1:].astype(np.int64)


def check_threshold(threshold: object, n_parties: int) -> int:
    """Validate a decryption threshold ``t`` for ``n_parties`` share holders.

    Raises
    ------
    ConfigurationError
        ``threshold`` is not an integer in ``[2, n_parties]``.
    """
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise ConfigurationError(f"threshold must be an integer, got {type(threshold).__name__}")
    if threshold < 2:
        raise ConfigurationError(
            f"threshold={threshold}: at least 2 parties must be needed to decrypt (with 1, every party "
            "holds the whole decryption key)")
    if threshold > n_parties:
        raise ConfigurationError(
            f"threshold={threshold} is larger than the {n_parties} parties that would hold key shares: "
            "nobody could ever decrypt")
    return threshold


def safe_prime(bits: int) -> int:
    """A random safe prime ``p = 2 p' + 1`` of exactly ``bits`` bits with its top two bits set.

    Candidates ``p'`` are odd numbers from a CSPRNG-drawn start, stepped by 2;
    a numpy sieve drops those where ``p'`` or ``2 p' + 1`` has an odd prime
    factor below ``2^15``, and gmpy2's Miller-Rabin tests the rest (one round
    each as a filter, then 40 rounds on both).  Starting from a random point
    and taking the first safe prime after it is the usual incremental search
    (a slight bias towards primes after long gaps, as in OpenSSL's generator).
    """
    if bits < 16:
        raise InsecureParameterError(f"safe primes of {bits} bits are too small")
    top = 0b11 << (bits - 3)  # p' has bits - 1 bits with its top two set, so p = 2p' + 1 has the top two set
    rs = _sieve_primes()
    k = np.arange(_SIEVE_WIDTH, dtype=np.int64)
    while True:
        start = secrets.randbits(bits - 1) | top | 1
        if (start + 2 * _SIEVE_WIDTH).bit_length() != bits - 1:
            continue
        res = np.array([start % int(r) for r in rs], dtype=np.int64)  # p' = start + 2k
        # p' = 0 (mod r) or 2p' + 1 = 0 (mod r), i.e. p' = (r - 1) / 2 (mod r).
        x = (res[:, None] + 2 * k[None, :]) % rs[:, None]
        bad = (x == 0) | (x == (rs[:, None] - 1) // 2)
        for j in np.flatnonzero(~bad.any(axis=0)).tolist():
            pp = gmpy2.mpz(start + 2 * j)
            if gmpy2.is_prime(pp, 1) and gmpy2.is_prime(2 * pp + 1, 1) \
                    and gmpy2.is_prime(pp, _MR_ROUNDS) and gmpy2.is_prime(2 * pp + 1, _MR_ROUNDS):
                return int(2 * pp + 1)


@dataclass(frozen=True)
class ThresholdPublicParams:
    """The public values every party and the combiner use (picklable, no secret).

    Attributes
    ----------
    n : int
        The Paillier modulus.
    threshold : int
        Partial decryptions needed (``t``).
    n_shares : int
        Share holders (``N``); ``Delta = N!``.
    v : int
        The verification base, a random square modulo ``n^2``.
    verification_keys : tuple of int
        ``v_i = v^(Delta s_i) mod n^2`` for share indices ``1..N``.
    theta : int or None
        ``Delta x mod n`` for the shared secret ``x`` (``None``: ``Delta``, as a dealt
        ``d = 1 (mod n)`` gives); a dealerless key publishes its own.
    share_bits : int or None
        Public bound on the bit length of ``|s_i|`` (``None``: that of ``n^2``); sizes the proofs.
    """

    n: int
    threshold: int
    n_shares: int
    v: int
    verification_keys: tuple[int, ...]
    theta: int | None = None
    share_bits: int | None = None

    @property
    def delta(self) -> int:
        """``Delta = N!``, which makes every Lagrange coefficient an integer."""
        return math.factorial(self.n_shares)

    @property
    def n2(self) -> int:
        """``n^2``, the ciphertext modulus."""
        return self.n * self.n


@dataclass(frozen=True)
class KeyShare:
    """One party's Shamir share ``s_i`` of the decryption key (its repr never shows the share)."""

    party: str
    index: int
    value: int = field(repr=False)

    def __repr__(self) -> str:
        return f"<KeyShare of {self.party!r} (index {self.index})>"


@dataclass(frozen=True)
class PartialDecryption:
    """A party's partial decryptions of a batch of ciphertexts, with the proof that they are correct.

    Attributes
    ----------
    party : str
        The sender.
    index : int
        Its share index (``1..N``).
    values : tuple of int
        ``c_j^(2 Delta s_i) mod n^2`` for each ciphertext ``c_j`` of the batch.
    challenge, response : int
        The Fiat-Shamir proof ``(e, z)`` for the whole batch.
    """

    party: str
    index: int
    values: tuple[int, ...] = field(repr=False)
    challenge: int = field(repr=False)
    response: int = field(repr=False)

    def __repr__(self) -> str:
        return f"<PartialDecryption from {self.party!r}: {len(self.values)} values>"


@dataclass(frozen=True)
class ThresholdPaillierKeys(PublicModulus):
    """A Paillier public key whose decryption key is Shamir-shared among parties.

    In a deployment each party keeps only its own :class:`KeyShare`; this
    simulation keeps every share in this object, and only the decrypting
    party's own code path (:func:`partial_decrypt`) reads one.

    Attributes
    ----------
    public_key : phe.paillier.PaillierPublicKey
        An ordinary Paillier public key (``g = n + 1``).
    h_s : int
        The Damgard-Jurik-Nielsen public value for fast encryption.
    params : ThresholdPublicParams
        Threshold, verification base and keys.
    shares : mapping of str to KeyShare
        Each party's key share, by party name.
    setup : str
        ``"dealer"``: a dealer generated the key and saw it; ``"dealerless"``: the
        parties generated it among themselves (:mod:`fedbench.crypto.dealerless`).
    seconds : float
        Wall-clock time of the key set-up.
    available : tuple of str or None
        Share holders reachable for this run (``None``: all of them); set per run by the coordinator.
    """

    public_key: paillier.PaillierPublicKey
    h_s: int
    params: ThresholdPublicParams
    shares: Mapping[str, KeyShare] = field(repr=False)
    setup: str = "dealer"
    seconds: float = 0.0
    available: tuple[str, ...] | None = None

    @property
    def threshold(self) -> int:
        """Partial decryptions needed to decrypt."""
        return self.params.threshold

    @property
    def holders(self) -> list[str]:
        """Parties holding a key share, in share-index order."""
        return [s.party for s in sorted(self.shares.values(), key=lambda s: s.index)]

    def __repr__(self) -> str:  # never print key material
        return (f"<ThresholdPaillierKeys {self.key_bits}-bit, {self.threshold}-of-{self.params.n_shares} "
                f"({self.setup} set-up), n={hex(self.n)[:18]}…>")


def _djn_h_s(p: int, q: int) -> int:
    from .paillier import _djn_h

    n = p * q
    return int(gmpy2.powmod(_djn_h(p, q), n, n * n))


def deal_threshold_keys(parties: Sequence[str], threshold: int, key_bits: int = DEFAULT_KEY_BITS, *,
                        allow_insecure_key_size: bool = False) -> ThresholdPaillierKeys:
    """A dealer generates a threshold Paillier key and deals one share to each party.

    Parameters
    ----------
    parties : sequence of str
        Share holders, in share-index order (index ``i + 1`` for ``parties[i]``).
    threshold : int
        Partial decryptions needed, ``2 <= threshold <= len(parties)``.
    key_bits : int, default 2048
        Modulus size.
    allow_insecure_key_size : bool, default False
        Needed below 2048 bits (tests only).

    Returns
    -------
    ThresholdPaillierKeys
        With ``setup="dealer"``: the dealer saw ``p``, ``q`` and every share.

    Raises
    ------
    ConfigurationError
        Bad threshold, or a party listed twice.
    InsecureParameterError
        ``key_bits`` below 2048 without the opt-in.
    """
    import time

    t0 = time.perf_counter()
    names = list(parties)
    if len(set(names)) != len(names):
        raise ConfigurationError(f"a party is listed twice among the key-share holders {names}")
    check_threshold(threshold, len(names))
    check_key_bits(key_bits, allow_insecure_key_size=allow_insecure_key_size)
    half = key_bits // 2
    p = safe_prime(half)
    while True:
        q = safe_prime(half)
        if q != p and abs(p - q).bit_length() > half // 2 + 16:
            break
    n = p * q
    m = ((p - 1) // 2) * ((q - 1) // 2)
    nm = n * m
    n2 = n * n
    # d = 0 (mod m), d = 1 (mod n): CRT, as gcd(n, m) = 1.
    d = m * int(gmpy2.invert(m, n)) % nm
    coeffs = [d] + [secrets.randbelow(nm) for _ in range(threshold - 1)]
    delta = math.factorial(len(names))
    shares: dict[str, KeyShare] = {}
    for i, name in enumerate(names, start=1):
        s = 0
        for a in reversed(coeffs):  # Horner
            s = (s * i + a) % nm
        shares[name] = KeyShare(name, i, s)
    while True:
        r = secrets.randbelow(n2)
        if gmpy2.gcd(r, n) == 1:
            break
    v = int(gmpy2.powmod(r, 2, n2))
    vks = tuple(int(gmpy2.powmod(v, delta * shares[name].value, n2)) for name in names)
    params = ThresholdPublicParams(n=n, threshold=threshold, n_shares=len(names), v=v, verification_keys=vks)
    h_s = _djn_h_s(p, q)
    del p, q, d, coeffs, m, nm  # the dealer forgets the factorisation and the polynomial
    return ThresholdPaillierKeys(public_key=paillier.PaillierPublicKey(n), h_s=h_s, params=params, shares=shares,
                                 setup="dealer", seconds=time.perf_counter() - t0)


# -- proofs ---------------------------------------------------------------------------------
def _int_bytes(x: int) -> bytes:
    x = int(x)
    return x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")


def _hash_ints(*items: int | Sequence[int]) -> bytes:
    """SHA-256 over the length-prefixed big-endian encodings of integers (lists flattened in order)."""
    h = hashlib.sha256(_DOMAIN)
    for it in items:
        for x in (it if isinstance(it, Sequence) else [it]):
            b = _int_bytes(int(x))
            h.update(len(b).to_bytes(4, "big") + b)
    return h.digest()


def _batch_bases(params: ThresholdPublicParams, index: int, cts: Sequence[int],
                 values: Sequence[int]) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """``(C^4, D^2)``: the ciphertexts and partial decryptions folded with hash-derived exponents."""
    n2 = gmpy2.mpz(params.n2)
    if len(cts) == 1:
        c, d = gmpy2.mpz(cts[0]), gmpy2.mpz(values[0])
    else:
        seed = _hash_ints(params.n, index, params.verification_keys[index - 1], cts, values)
        c = d = gmpy2.mpz(1)
        for j, (cj, dj) in enumerate(zip(cts, values, strict=True)):
            rho = int.from_bytes(hashlib.sha256(seed + j.to_bytes(8, "big")).digest()[: _BATCH_BITS // 8], "big")
            c = c * gmpy2.powmod(cj, rho, n2) % n2
            d = d * gmpy2.powmod(dj, rho, n2) % n2
    return gmpy2.powmod(c, 4, n2), gmpy2.powmod(d, 2, n2)


def _challenge(params: ThresholdPublicParams, index: int, u: int, w: int, a: int, b: int) -> int:
    return int.from_bytes(
        _hash_ints(params.n, params.v, params.verification_keys[index - 1], index, u, w, a, b), "big")


def _check_ciphertexts(params: ThresholdPublicParams, cts: Sequence[int]) -> None:
    n = params.n
    for c in cts:
        if not 0 < int(c) < params.n2 or gmpy2.gcd(int(c), n) != 1:
            raise ValueError("a ciphertext is not a unit modulo n^2")


def partial_decrypt(params: ThresholdPublicParams, share: KeyShare, ciphertexts: Sequence[int]) -> PartialDecryption:
    """Party ``share.party``'s partial decryptions of ``ciphertexts``, with one batched proof.

    Parameters
    ----------
    params : ThresholdPublicParams
        The public threshold parameters.
    share : KeyShare
        This party's own key share.
    ciphertexts : sequence of int
        Ciphertexts (units modulo ``n^2``).

    Returns
    -------
    PartialDecryption
    """
    if not ciphertexts:
        raise ValueError("nothing to decrypt")
    _check_ciphertexts(params, ciphertexts)
    n2 = gmpy2.mpz(params.n2)
    x = params.delta * share.value  # Delta s_i
    e2 = 2 * x
    values = tuple(int(gmpy2.powmod(gmpy2.mpz(c), e2, n2)) for c in ciphertexts)
    u, w = _batch_bases(params, share.index, ciphertexts, values)
    share_bits = params.share_bits or 2 * params.n.bit_length()
    r_bits = share_bits + params.delta.bit_length() + CHALLENGE_BITS + _ZK_SLACK_BITS
    r = secrets.randbits(r_bits)
    a = gmpy2.powmod(u, r, n2)
    b = gmpy2.powmod(params.v, r, n2)
    e = _challenge(params, share.index, int(u), int(w), int(a), int(b))
    z = r + e * x
    return PartialDecryption(party=share.party, index=share.index, values=values, challenge=e, response=int(z))


def verify_partial(params: ThresholdPublicParams, ciphertexts: Sequence[int], partial: PartialDecryption) -> bool:
    """Whether ``partial`` is a correct partial decryption of ``ciphertexts`` by the holder of its share index."""
    try:
        if not 1 <= partial.index <= params.n_shares or len(partial.values) != len(ciphertexts) or not ciphertexts:
            return False
        n2 = gmpy2.mpz(params.n2)
        if any(not 0 < int(d) < n2 or gmpy2.gcd(int(d), params.n) != 1 for d in partial.values):
            return False
        e, z = int(partial.challenge), int(partial.response)
        if not 0 <= e < (1 << CHALLENGE_BITS) or z < 0:
            return False
        u, w = _batch_bases(params, partial.index, ciphertexts, partial.values)
        vi = gmpy2.mpz(params.verification_keys[partial.index - 1])
        a = gmpy2.powmod(u, z, n2) * gmpy2.powmod(w, -e, n2) % n2
        b = gmpy2.powmod(params.v, z, n2) * gmpy2.powmod(vi, -e, n2) % n2
        return _challenge(params, partial.index, int(u), int(w), int(a), int(b)) == e
    except (ValueError, ZeroDivisionError, TypeError):
        return False


def lagrange_coefficients(indices: Sequence[int], delta: int) -> dict[int, int]:
    """Integer coefficients ``Delta prod_{j != i} (-j) / (i - j)`` of interpolation at 0 over ``indices``."""
    out = {}
    for i in indices:
        num, den = delta, 1
        for j in indices:
            if j != i:
                num *= -j
                den *= i - j
        q, rem = divmod(num, den)
        assert rem == 0  # Delta = N! makes every coefficient an integer
        out[i] = q
    return out


def combine(params: ThresholdPublicParams, partials: Sequence[PartialDecryption]) -> list[int]:
    """Combine exactly ``t`` partial decryptions (already verified) into the plaintexts.

    Raises
    ------
    ValueError
        Not exactly ``t`` partial decryptions from distinct share indices, or of different lengths.
    """
    idx = [p.index for p in partials]
    if len(partials) != params.threshold or len(set(idx)) != len(idx):
        raise ValueError(f"combination needs exactly {params.threshold} partial decryptions from distinct parties")
    if len({len(p.values) for p in partials}) != 1:
        raise ValueError("partial decryptions of different lengths")
    n = gmpy2.mpz(params.n)
    n2 = n * n
    lam = lagrange_coefficients(idx, params.delta)
    # prod c_i^(2 lambda_i) = c^(4 Delta^2 x) = (1 + n)^(4 Delta theta M) with theta = Delta x mod n.
    theta = params.delta if params.theta is None else params.theta
    inv = gmpy2.invert(4 * params.delta * theta, n)
    out = []
    for j in range(len(partials[0].values)):
        acc = gmpy2.mpz(1)
        for p in partials:
            acc = acc * gmpy2.powmod(p.values[j], 2 * lam[p.index], n2) % n2
        out.append(int((acc - 1) // n * inv % n))
    return out
