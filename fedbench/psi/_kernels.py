"""Batch kernels of the PSI protocol: hash-to-group and blinding on edwards25519.

These functions run either in the calling process or in worker processes of
:mod:`fedbench.psi._parallel`.  They import nothing heavy so that a spawned worker
starts quickly, and they work on *batches* (a list of identifiers, or one bytes
object holding ``n`` concatenated 32-byte group elements) so that one task moves
thousands of elements and the per-element Python work is one hash call and a few
calls into libsodium.

A worker process always acts for exactly one party and one batch: it receives
that party's secret scalar and identifiers, like any other local computation of
the party, and returns blinded elements.  Nothing here talks to another party.

The group is the prime-order subgroup of edwards25519 (order
``L = 2^252 + 27742317777372353535851937790883648493``), elements in the standard
32-byte compressed encoding.  All group arithmetic is libsodium's
(``crypto_core_ed25519_from_uniform``, ``crypto_core_ed25519_add``,
``crypto_scalarmult_ed25519_noclamp``, ``crypto_core_ed25519_scalar_reduce``);
none is written here.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

import nacl.bindings

__all__ = [
    "ELEMENT_BYTES",
    "PERSON",
    "BadElementError",
    "blind",
    "hash_and_blind",
    "hash_to_group",
    "new_scalar",
    "session_hash_key",
]

#: Size of one serialised group element (a compressed edwards25519 point).
ELEMENT_BYTES = 32

#: BLAKE2b personalisation: domain-separates the hash-to-group from every other
#: use of BLAKE2b (16 bytes, the maximum BLAKE2b allows).
PERSON = b"fedbench.psi.h2g"

#: Version label mixed into the session key: hashes of the former X25519 design
#: (``fedbench/psi/v1/x25519``) can never be compared with this one's.
_SUITE = b"fedbench/psi/v2/edwards25519-ell2-ro"

try:  # Fast path: libsodium through the cffi handle PyNaCl already loaded.
    # ``nacl.bindings`` allocates, copies and checks types per call; calling the same
    # libsodium functions into one preallocated buffer saves ~10-20 % per element.
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _from_uniform = _lib.crypto_core_ed25519_from_uniform
    _add = _lib.crypto_core_ed25519_add
    _scalarmult = _lib.crypto_scalarmult_ed25519_noclamp
except (ImportError, AttributeError):  # pragma: no cover - depends on PyNaCl internals
    _ffi = None


class BadElementError(ValueError):
    """libsodium rejected a group element (not a point of the prime-order subgroup)."""


def new_scalar() -> bytes:
    """A party's secret blinding scalar: uniform in ``[1, L)``, from the OS CSPRNG.

    64 random bytes reduced modulo ``L`` (libsodium's ``scalar_reduce``) are uniform
    up to a statistical distance of ``2^-259``; zero (probability ``2^-252``) is
    redrawn because it would map every element to the identity.

    Returns
    -------
    bytes
        32-byte little-endian scalar, fully reduced.
    """
    while True:
        s = nacl.bindings.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))
        if any(s):
            return s


def session_hash_key(salt: bytes, context: bytes) -> bytes:
    """Derive the per-run key of the hash-to-group from the session salt and context.

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


def _h64(item: bytes, hkey: bytes) -> bytes:
    # 64 bytes = two independent 32-byte inputs of libsodium's from_uniform (each: 255
    # bits of field element, 1 bit for the sign of x).
    return hashlib.blake2b(item, digest_size=64, key=hkey, person=PERSON).digest()


def _h2g_bindings(item: bytes, hkey: bytes) -> bytes:
    d = _h64(item, hkey)
    b = nacl.bindings
    return b.crypto_core_ed25519_add(b.crypto_core_ed25519_from_uniform(d[:32]),
                                     b.crypto_core_ed25519_from_uniform(d[32:]))


def hash_to_group(hkey: bytes, items: Sequence[bytes]) -> bytes:
    """Hash canonical identifier encodings to the prime-order subgroup (unblinded).

    ``H(x) = E(h0) + E(h1)`` where ``h0 || h1 = BLAKE2b-512(x; key=hkey,
    person=PERSON)`` and ``E`` is libsodium's ``crypto_core_ed25519_from_uniform``
    (Elligator 2 then multiplication by the cofactor 8).  Adding two independent
    map outputs is the random-oracle construction of RFC 9380 (``hash_to_curve``),
    not its ``encode_to_curve``; see the package documentation for how it differs
    from the RFC's suite.

    Parameters
    ----------
    hkey : bytes
        Key from :func:`session_hash_key`.
    items : sequence of bytes
        Canonical encodings of identifiers.

    Returns
    -------
    bytes
        ``32 * len(items)`` bytes, the elements in input order.  Used by the tests and
        by audits; the protocol never sends these unblinded values.
    """
    return b"".join([_h2g_bindings(x, hkey) for x in items])


def hash_and_blind(scalar: bytes, hkey: bytes, items: Sequence[bytes]) -> tuple[bytes, float]:
    """Hash identifiers to the group and blind them with ``scalar``.

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
        Concatenated blinded elements (input order) and the CPU seconds spent.

    Raises
    ------
    BadElementError
        If a hash lands on the identity (probability about ``2^-250``), which
        libsodium refuses to multiply.
    """
    t0 = time.process_time()
    n = len(items)
    if _ffi is not None:
        out = _ffi.new("unsigned char[]", ELEMENT_BYTES * n)
        tmp = _ffi.new("unsigned char[]", 2 * ELEMENT_BYTES)
        tmp1 = tmp + ELEMENT_BYTES
        fu, add, sm, h64 = _from_uniform, _add, _scalarmult, _h64
        bad = 0
        for i, x in enumerate(items):
            d = h64(x, hkey)
            fu(tmp, d)  # reads the first 32 bytes
            fu(tmp1, d[32:])
            add(tmp, tmp, tmp1)
            bad |= sm(out + ELEMENT_BYTES * i, scalar, tmp)
        if bad:
            raise BadElementError("a hashed identifier mapped to the identity element")
        res = _ffi.buffer(out)[:]
    else:  # pragma: no cover - fallback when PyNaCl internals move
        res = _blind_bindings(scalar, hash_to_group(hkey, items))
    return res, time.process_time() - t0


def blind(scalar: bytes, values: bytes) -> tuple[bytes, float]:
    """Multiply every element of ``values`` by ``scalar``, keeping the order.

    libsodium's ``crypto_scalarmult_ed25519_noclamp`` validates each input: it
    refuses a non-canonical encoding, a point not on the curve, a point of small
    order and any point outside the prime-order subgroup, so an element sent by a
    malicious or buggy peer is never multiplied by the party's secret scalar.

    Parameters
    ----------
    scalar : bytes
        The party's secret scalar for this run (:func:`new_scalar`).
    values : bytes
        ``32 * n`` bytes of concatenated group elements.

    Returns
    -------
    (bytes, float)
        The re-blinded elements and the CPU seconds spent.

    Raises
    ------
    BadElementError
        If ``values`` is not a whole number of elements or holds an element that is
        not a point of the prime-order subgroup.
    """
    t0 = time.process_time()
    if len(values) % ELEMENT_BYTES:
        raise BadElementError("blinded set is not a whole number of 32-byte elements")
    if _ffi is not None:
        out = _ffi.new("unsigned char[]", len(values))
        src = _ffi.from_buffer(values)
        f = _scalarmult
        bad = 0
        for off in range(0, len(values), ELEMENT_BYTES):
            bad |= f(out + off, scalar, src + off)
        if bad:
            raise BadElementError("an element is not a point of the prime-order subgroup of edwards25519")
        res = _ffi.buffer(out)[:]
    else:  # pragma: no cover - fallback when PyNaCl internals move
        res = _blind_bindings(scalar, values)
    return res, time.process_time() - t0


def _blind_bindings(scalar: bytes, values: bytes) -> bytes:  # pragma: no cover - fallback
    sm = nacl.bindings.crypto_scalarmult_ed25519_noclamp
    mv = memoryview(values)
    try:
        return b"".join([sm(scalar, mv[o : o + ELEMENT_BYTES].tobytes()) for o in range(0, len(values), 32)])
    except Exception as exc:  # PyNaCl raises RuntimeError on a rejected point
        raise BadElementError("an element is not a point of the prime-order subgroup of edwards25519") from exc


# --------------------------------------------------------------------------- worker loop
_OPS = {"hash_and_blind": hash_and_blind, "blind": blind}


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
