"""Shamir secret sharing over the prime field GF(2**61 - 1).

Why this field: ``p = 2**61 - 1`` is a Mersenne prime, so every limb of a
secret (7 bytes = 56 bits < 61 bits) is a field element without reduction, and
a 32-byte seed is five limbs shared in one vectorised polynomial evaluation.
Products of two elements need 122 bits, beyond ``uint64``: the arithmetic runs
on numpy ``object`` arrays of Python ints (exact, still vectorised through
numpy's matrix product), which is fast enough for the few limbs per secret a
protocol shares.  Coefficients come from the operating system's CSPRNG
(``os.urandom``), rejection-sampled to be uniform in the field.

Shares are indexed ``1..n`` (the x-coordinate); reconstruction is Lagrange
interpolation at 0 from any ``t`` of them.  Fewer than ``t`` shares reveal
nothing about the secret (information-theoretically).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from fedbench.errors import ConfigurationError, ProtocolError

#: The field modulus, the Mersenne prime 2**61 - 1.
PRIME = (1 << 61) - 1
#: Bytes of a secret per field element (56 bits < 61 bits: any limb is a field element).
LIMB_BYTES = 7


def random_field_elements(count: int) -> np.ndarray:
    """``count`` uniform field elements from the OS CSPRNG (object array of Python ints)."""
    out: list[int] = []
    while len(out) < count:
        raw = np.frombuffer(os.urandom(8 * (count - len(out))), dtype=np.uint64) & np.uint64(PRIME)
        # Masking to 61 bits gives [0, 2**61 - 1]; reject the single value equal to p for uniformity.
        out.extend(int(v) for v in raw.tolist() if v != PRIME)
    arr = np.empty(count, dtype=object)
    arr[:] = out
    return arr


def bytes_to_limbs(secret: bytes) -> np.ndarray:
    """Split bytes into field elements of :data:`LIMB_BYTES` bytes each (big-endian, last limb may be short)."""
    limbs = [int.from_bytes(secret[i:i + LIMB_BYTES], "big") for i in range(0, len(secret), LIMB_BYTES)]
    arr = np.empty(len(limbs), dtype=object)
    arr[:] = limbs
    return arr


def limbs_to_bytes(limbs: np.ndarray, length: int) -> bytes:
    """Inverse of :func:`bytes_to_limbs` for a secret of ``length`` bytes."""
    out = b""
    for i, v in enumerate(limbs.tolist()):
        size = min(LIMB_BYTES, length - i * LIMB_BYTES)
        if not 0 <= int(v) < (1 << (8 * size)):
            raise ProtocolError("reconstructed secret is not a valid byte string (inconsistent shares)")
        out += int(v).to_bytes(size, "big")
    return out


def _check(n: int, t: int) -> None:
    if not 1 <= t <= n:
        raise ConfigurationError(f"Shamir threshold must be in [1, n] = [1, {n}], got {t}")
    if n >= PRIME:
        raise ConfigurationError("too many shares for the field")


def share(secret: np.ndarray, n: int, t: int) -> np.ndarray:
    """Share a vector of field elements into ``n`` shares with threshold ``t``.

    Parameters
    ----------
    secret : numpy.ndarray
        Field elements (any integer dtype or object), shape ``(m,)``.
    n : int
        Number of shares (x-coordinates ``1..n``).
    t : int
        Any ``t`` shares reconstruct; ``t - 1`` reveal nothing.

    Returns
    -------
    numpy.ndarray
        Object array of shape ``(n, m)``: row ``i`` is the share at ``x = i + 1``.
    """
    _check(n, t)
    sec = np.asarray([int(v) for v in np.asarray(secret).ravel().tolist()], dtype=object)
    if any(not 0 <= v < PRIME for v in sec.tolist()):
        raise ConfigurationError("secret limbs must be field elements in [0, 2**61 - 1)")
    m = sec.size
    coeffs = np.empty((t, m), dtype=object)
    coeffs[0] = sec
    if t > 1:
        coeffs[1:] = random_field_elements((t - 1) * m).reshape(t - 1, m)
    return np.dot(_vandermonde(n, t), coeffs) % PRIME


@lru_cache(maxsize=64)
def _vandermonde(n: int, t: int) -> np.ndarray:
    """``x**j mod p`` for ``x = 1..n``, ``j < t`` (public; cached: a protocol shares many secrets alike)."""
    xs = np.arange(1, n + 1, dtype=object)
    vander = np.empty((n, t), dtype=object)
    vander[:, 0] = 1
    for j in range(1, t):
        vander[:, j] = (vander[:, j - 1] * xs) % PRIME
    vander.setflags(write=False)
    return vander


def reconstruct(shares: Mapping[int, np.ndarray], t: int) -> np.ndarray:
    """Reconstruct the secret from at least ``t`` shares ``{x: share_row}`` (Lagrange at 0).

    Raises
    ------
    ProtocolError
        If fewer than ``t`` shares are given or an index is out of range.
    """
    if len(shares) < t:
        raise ProtocolError(f"need {t} shares to reconstruct, got {len(shares)}")
    xs = sorted(shares)[:t]
    if any(not 0 < x < PRIME for x in xs):
        raise ProtocolError("share indices must be in 1..n")
    coeffs = _lagrange_cached(tuple(xs))
    rows = np.array([np.asarray(shares[x], dtype=object) for x in xs], dtype=object)
    lam = np.array(coeffs, dtype=object)
    return np.dot(lam, rows) % PRIME


@lru_cache(maxsize=1024)
def _lagrange_cached(xs: tuple[int, ...]) -> tuple[int, ...]:
    # The same share indices recur across the parties of a run: compute their coefficients once.
    return tuple(lagrange_at_zero(xs))


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """Lagrange coefficients ``l_i(0)`` mod p for the distinct points ``xs``."""
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return out


def share_bytes(secret: bytes, n: int, t: int) -> np.ndarray:
    """Share a byte string (e.g. a 32-byte seed): shape ``(n, ceil(len / 7))``."""
    return share(bytes_to_limbs(secret), n, t)


def reconstruct_bytes(shares: Mapping[int, np.ndarray], t: int, length: int) -> bytes:
    """Reconstruct a byte string of ``length`` bytes shared with :func:`share_bytes`."""
    return limbs_to_bytes(reconstruct(shares, t), length)


def encode_share(row: np.ndarray) -> bytes:
    """Serialise one share row (8 bytes per limb, big-endian)."""
    return b"".join(int(v).to_bytes(8, "big") for v in row.tolist())


def decode_share(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_share`."""
    arr = np.empty(len(data) // 8, dtype=object)
    arr[:] = [int.from_bytes(data[i:i + 8], "big") for i in range(0, len(data), 8)]
    return arr
