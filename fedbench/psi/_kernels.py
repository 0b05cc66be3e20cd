"""Batch kernels of the PSI protocol: hashing to Curve25519 and X25519 blinding.

These functions run either in the calling process or in worker processes of
:mod:`fedbench.psi._parallel`.  They import nothing heavy (hashlib, gmpy2, PyNaCl, cryptography)
so that a spawned worker starts quickly, and they work on *batches* (a list of
identifiers, or one bytes object holding ``n`` concatenated 32-byte elements) so
that one task moves thousands of elements and the per-element Python work is one
hash call, a Legendre symbol and one call into libsodium.

A worker process always acts for exactly one party and one batch: it receives
that party's secret scalar and identifiers, like any other local computation of
the party, and returns blinded elements.  Nothing here talks to another party.

Group: the prime-order subgroup ``G`` of Curve25519 (order
``L = 2^252 + 27742317777372353535851937790883648493``; the curve has ``8 L``
points), elements sent as canonical 32-byte little-endian Montgomery
u-coordinates.  Scalar multiplication is OpenSSL's or libsodium's X25519, whichever
:func:`fastest_engine` timed faster (both constant time, identical bytes); the
Legendre symbol is gmpy2's.  No curve
arithmetic is written here: the code only evaluates the curve equation
``v^2 = u^3 + A u^2 + u`` to decide whether a u-coordinate is on the curve.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

import gmpy2
import nacl.bindings

__all__ = [
    "ELEMENT_BYTES",
    "ENGINES",
    "PERSON",
    "SMALL_ORDER_U",
    "BadElementError",
    "blind",
    "check_elements",
    "fastest_engine",
    "hash_and_blind",
    "hash_to_group",
    "new_scalar",
    "session_hash_key",
]

#: Size of one serialised group element (a Curve25519 u-coordinate).
ELEMENT_BYTES = 32

#: BLAKE2b personalisation: domain-separates the hash to the curve from every other
#: use of BLAKE2b (16 bytes, the maximum BLAKE2b allows).
PERSON = b"fedbench.psi.h2g"

#: Version label mixed into the session key: hashes of the former designs
#: (``v1/x25519`` straight to a u-coordinate, ``v2/edwards25519-ell2-ro``) can never
#: be compared with this one's.
_SUITE = b"fedbench/psi/v3/curve25519-tai-x25519"

#: Field prime and Montgomery coefficient of Curve25519: ``v^2 = u^3 + A u^2 + u`` over GF(P).
P = 2**255 - 19
A = 486662

#: u-coordinates of the points of small order of Curve25519 (its 8-torsion, cyclic:
#: the identity has no affine u): 0 (order 2), 1 (order 4, two points) and the two
#: u-coordinates of the four points of order 8.  The twist's small-order points
#: (e.g. u = p - 1) fail the curve test anyway.
SMALL_ORDER_U = frozenset({
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})

_MASK255 = (1 << 255) - 1
_PZ = gmpy2.mpz(P)

# No index or value in the message: it reaches the driver and the logs.
_INVALID = (
    "an element is not the canonical u-coordinate of a point of Curve25519 outside its small-order "
    "subgroup (twist point, small-order point or non-canonical encoding)"
)

try:  # OpenSSL's X25519 through ``cryptography``.
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    _HAVE_OPENSSL = True
except ImportError:  # pragma: no cover - cryptography is a dependency; libsodium then
    _HAVE_OPENSSL = False

try:  # libsodium through the cffi handle PyNaCl already loaded.
    # ``nacl.bindings`` allocates, copies and checks types per call; calling libsodium
    # into one preallocated buffer saves a few microseconds per element.
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _x25519 = _lib.crypto_scalarmult
except (ImportError, AttributeError):  # pragma: no cover - depends on PyNaCl internals
    _ffi = None


#: X25519 engines in order of preference when they cannot be timed.
ENGINES = tuple(e for e, ok in (("openssl", _HAVE_OPENSSL), ("sodium", _ffi is not None), ("bindings", True)) if ok)

_engine: str | None = None


def fastest_engine(*, points: int = 48, rounds: int = 3) -> str:
    """The X25519 engine that is fastest on this machine, timed once per process.

    Which one wins depends on the CPU and on the builds of OpenSSL and libsodium:
    OpenSSL's took ~37 us per element against libsodium's ~40 us on one 2-core
    x86-64 machine, and ~58 us against ~48 us on another.  Two blindings per
    identifier are nearly all of the PSI's CPU, so each process (the driver and
    every worker) times both engines on a few public points (best of ``rounds``,
    77 ms measured for the first call, warm-up included) and keeps the faster.  The engines give identical bytes
    (tested), so the choice changes the time only, never a result.

    Parameters
    ----------
    points : int
        Number of multiplications per timing.
    rounds : int
        Timings per engine; the best is kept.

    Returns
    -------
    str
        One of :data:`ENGINES`.
    """
    global _engine
    if _engine is None:
        candidates = [e for e in ENGINES if e != "bindings"] or list(ENGINES)
        if len(candidates) == 1:
            _engine = candidates[0]
        else:
            # Public points only (hashes of constants under a fixed key): no secret is timed.
            base = _hasher(b"fedbench.psi.engine-calibration!")
            pts = [_hash_u(i.to_bytes(4, "little"), b"fedbench.psi.engine-calibration!", base)[1]
                   for i in range(points)]
            scalar = new_scalar()
            best: dict[str, float] = {}
            for _ in range(rounds):
                for e in candidates:
                    t0 = time.perf_counter()
                    _multiply(scalar, pts, engine=e)
                    dt = time.perf_counter() - t0
                    best[e] = min(best.get(e, dt), dt)
            _engine = min(candidates, key=best.__getitem__)
    return _engine


def _multiply(scalar: bytes, points: Sequence[bytes], *, engine: str | None = None) -> bytes:
    """X25519 of every 32-byte u-coordinate in ``points`` with ``scalar``, concatenated.

    All engines implement RFC 7748 (clamped scalar, bit 255 of u ignored) and give
    identical bytes (tested); ``engine=None`` takes :func:`fastest_engine`.  Each
    refuses an all-zero result (a point of small order), which
    :func:`check_elements` already excludes.
    """
    engine = engine or fastest_engine()
    if engine == "openssl":
        ex = X25519PrivateKey.from_private_bytes(scalar).exchange
        pk = X25519PublicKey.from_public_bytes
        # Key objects first, then the ladders: ~8 % faster than one mixed loop (measured).
        keys = [pk(pt) for pt in points]
        try:
            return b"".join([ex(q) for q in keys])
        except ValueError as exc:  # OpenSSL refuses an all-zero shared value
            raise BadElementError("refused to multiply a point of small order") from exc
    if engine == "sodium":
        out = _ffi.new("unsigned char[]", ELEMENT_BYTES * len(points))
        sm = _x25519
        bad = 0
        for i, pt in enumerate(points):
            bad |= sm(out + ELEMENT_BYTES * i, scalar, pt)
        if bad:
            raise BadElementError("refused to multiply a point of small order")
        return _ffi.buffer(out)[:]
    sm = nacl.bindings.crypto_scalarmult
    try:
        return b"".join([sm(scalar, bytes(pt)) for pt in points])
    except Exception as exc:  # PyNaCl raises RuntimeError on an all-zero result
        raise BadElementError("refused to multiply a point of small order") from exc


class BadElementError(ValueError):
    """A received value is not the canonical u-coordinate of a usable point of Curve25519."""


def new_scalar() -> bytes:
    """A party's secret blinding scalar: a clamped X25519 scalar from the OS CSPRNG.

    ``s = 8 k`` with ``k`` uniform in ``[2^251, 2^252)`` (RFC 7748's clamping, applied
    here so that the stored scalar is the one libsodium uses).  ``s mod L`` is never
    zero (``k < L`` and 8 is invertible modulo ``L``), so multiplication by ``s`` is a
    permutation of ``G``, and the factor 8 maps every point of the curve into ``G``.

    Returns
    -------
    bytes
        32-byte little-endian scalar.
    """
    s = bytearray(secrets.token_bytes(32))
    s[0] &= 248
    s[31] &= 127
    s[31] |= 64
    return bytes(s)


def session_hash_key(salt: bytes, context: bytes) -> bytes:
    """Derive the per-run key of the hash to the curve from the session salt and context.

    Parameters
    ----------
    salt : bytes
        The run's public random session salt.
    context : bytes
        Public description of the identifier (number and kinds of key columns).

    Returns
    -------
    bytes
        32-byte BLAKE2b key used by :func:`hash_to_group`.
    """
    h = hashlib.blake2b(digest_size=32, person=b"fedbench.psi.key")
    for part in (_SUITE, salt, context):
        # Length-prefixed so that no two (salt, context) pairs feed the same bytes.
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def _hasher(hkey: bytes) -> Any:
    # BLAKE2b state after the key block: copying it saves one compression per identifier.
    return hashlib.blake2b(digest_size=64, key=hkey, person=PERSON)


def _hash_u(item: bytes, hkey: bytes, base: Any) -> tuple[int, bytes]:
    """``u(P(x))`` as an int, and 32 bytes that X25519 reads as that u (it ignores bit 255).

    Candidates are the 32-byte halves of ``BLAKE2b-512(x; key, person, salt=counter)``
    (low 255 bits, little endian) for counter 0, 1, ... (counter 0 is BLAKE2b's
    default all-zero salt; ``base`` is the keyed state from :func:`_hasher`); a
    candidate is accepted when ``u < p``, ``u`` is not a small-order u-coordinate and
    ``u^3 + A u^2 + u`` is a non-zero square mod p.  Half of the candidates pass: 2
    Legendre symbols and 1.3 BLAKE2b calls per identifier on average.
    """
    leg, p, a, small, fb, mpz = gmpy2.legendre, _PZ, A, SMALL_ORDER_U, int.from_bytes, gmpy2.mpz
    h = base.copy()
    h.update(item)
    d = h.digest()
    ctr = 0
    while True:
        for half in (d[:32], d[32:]):
            u = mpz(fb(half, "little") & _MASK255)  # gmpy2's arithmetic: ~2x Python's here
            if u < p and u not in small and leg(u * (u * (u + a) + 1) % p, p) == 1:
                return u, half
        ctr += 1
        d = hashlib.blake2b(item, digest_size=64, key=hkey, person=PERSON, salt=ctr.to_bytes(16, "little")).digest()


def hash_to_group(hkey: bytes, items: Sequence[bytes]) -> bytes:
    """Hash canonical identifier encodings to Curve25519 (unblinded).

    ``P(x)`` is the point whose u-coordinate is the first acceptable candidate (see
    :func:`_hash_u`): a uniformly random point of the curve outside its 8-torsion (up
    to sign), given BLAKE2b as a random oracle.  The group element of ``x`` is
    ``H(x) = [8] P(x)``, uniform in ``G`` minus the identity; the factor 8 is applied
    by the clamped scalar of the first blinding (``[s] P(x) = [k] H(x)`` with
    ``s = 8 k``), so this function returns ``u(P(x))``.

    Parameters
    ----------
    hkey : bytes
        Key from :func:`session_hash_key`.
    items : sequence of bytes
        Canonical encodings of identifiers.

    Returns
    -------
    bytes
        ``32 * len(items)`` bytes, the u-coordinates in input order.  Used by the tests
        and by audits; the protocol never sends these unblinded values.
    """
    base = _hasher(hkey)
    return b"".join([int(_hash_u(x, hkey, base)[0]).to_bytes(ELEMENT_BYTES, "little") for x in items])


def hash_and_blind(scalar: bytes, hkey: bytes, items: Sequence[bytes]) -> tuple[bytes, float]:
    """Hash identifiers to the curve and blind them with ``scalar`` (X25519).

    Parameters
    ----------
    scalar : bytes
        The party's secret scalar for this run (:func:`new_scalar`).
    hkey : bytes
        Key from :func:`session_hash_key`.
    items : sequence of bytes
        Canonical encodings of identifiers.

    Returns
    -------
    (bytes, float)
        Concatenated blinded elements ``u([s] P(x))``, all in ``G`` (input order), and
        the CPU seconds spent.

    Raises
    ------
    BadElementError
        If libsodium refuses a multiplication (impossible for the points the hash
        accepts; kept as a guard).
    """
    t0 = time.process_time()
    hu, base = _hash_u, _hasher(hkey)
    # Hash everything, then multiply: two tight loops are faster than one mixed loop.
    res = _multiply(scalar, [hu(x, hkey, base)[1] for x in items])
    return res, time.process_time() - t0


def check_elements(values: bytes) -> int:
    """Index of the first value that is not a valid element to blind, or -1 if all are.

    A valid element is a 32-byte little-endian ``u < p`` (canonical, top bit clear),
    not one of :data:`SMALL_ORDER_U`, with ``u^3 + A u^2 + u`` a square mod p: the
    u-coordinate of a point of Curve25519, not of its twist, not of small order.  A
    point with a torsion component passes, and needs no test: the clamped scalar
    (a multiple of 8) removes that component, so the product lies in ``G`` and
    equals the product of its ``G`` part.  Testing ``[L] P = O`` instead would cost a
    full scalar multiplication per element.

    Parameters
    ----------
    values : bytes
        ``32 * n`` bytes of concatenated u-coordinates.

    Returns
    -------
    int
    """
    mv = memoryview(values)
    leg, p, a, small, fb, mpz = gmpy2.legendre, _PZ, A, SMALL_ORDER_U, int.from_bytes, gmpy2.mpz
    for k, off in enumerate(range(0, len(values), ELEMENT_BYTES)):
        u = mpz(fb(mv[off : off + ELEMENT_BYTES], "little"))  # all 256 bits: a set top bit makes u >= p
        if u >= p or u in small or leg(u * (u * (u + a) + 1) % p, p) != 1:
            return k
    return -1


def blind(scalar: bytes, values: bytes) -> tuple[bytes, float]:
    """Multiply every element of ``values`` by ``scalar`` (X25519), keeping the order.

    Every value is validated (:func:`check_elements`) before it is multiplied, so a value sent by a
    malicious or buggy peer (a twist point, a point of small order, a non-canonical
    encoding) is never multiplied by the party's secret scalar.

    Parameters
    ----------
    scalar : bytes
        The party's secret scalar for this run (:func:`new_scalar`).
    values : bytes
        ``32 * n`` bytes of concatenated u-coordinates.

    Returns
    -------
    (bytes, float)
        The re-blinded elements and the CPU seconds spent.

    Raises
    ------
    BadElementError
        If ``values`` is not a whole number of elements or holds an invalid element.
    """
    t0 = time.process_time()
    if len(values) % ELEMENT_BYTES:
        raise BadElementError("blinded set is not a whole number of 32-byte elements")
    # Two passes (validate everything, then multiply) run ~8 % faster than one
    # interleaved loop (measured: the libsodium ladder keeps its caches warm), and no
    # element is multiplied before every element has passed.
    if check_elements(values) >= 0:
        raise BadElementError(_INVALID)
    res = _multiply(scalar, [values[o : o + ELEMENT_BYTES] for o in range(0, len(values), ELEMENT_BYTES)])
    return res, time.process_time() - t0


# --------------------------------------------------------------------------- worker loop
_OPS: dict[str, Any] = {"hash_and_blind": hash_and_blind, "blind": blind}


def serve() -> None:  # pragma: no cover - runs in the worker processes
    """Worker process main loop: read length-prefixed pickled tasks on stdin, answer on stdout.

    Started by :mod:`fedbench.psi._parallel` (``python -c`` loading this file);
    the parent is the only peer, so unpickling its messages is safe.  Stdout is kept
    for replies and fd 1 is pointed at stderr so that a stray print cannot corrupt
    the stream.
    """
    import os
    import pickle
    import struct

    fastest_engine()  # time the engines now, while the parent is still preparing the first batch
    stdin = os.fdopen(os.dup(0), "rb")
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return  # parent closed the pipe: shut down
        (n,) = struct.unpack("<Q", head)
        task_id, op, args = pickle.loads(stdin.read(n))
        try:
            reply = (task_id, True, _OPS[op](*args))
        except Exception as exc:  # reported to the parent, which raises ProtocolError
            reply = (task_id, False, (isinstance(exc, BadElementError), f"{type(exc).__name__}: {exc}"))
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(struct.pack("<Q", len(data)))
        stdout.write(data)
        stdout.flush()
