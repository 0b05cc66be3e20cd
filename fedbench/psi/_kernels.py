"""Batch kernels of the PSI protocol: hash-to-group and X25519 blinding.

These functions run either in the calling process or in worker processes of
:mod:`fedbench.psi._parallel`.  They import nothing heavy so that a spawned worker
starts quickly, and they work on *batches* (a list of identifiers, or one bytes
object holding ``n`` concatenated 32-byte group elements) so that one task moves
thousands of elements and the per-element Python work is one hash call and one
call into libsodium.

A worker process always acts for exactly one party and one batch: it receives
that party's secret scalar and identifiers, like any other local computation of
the party, and returns blinded elements.  Nothing here talks to another party.

All group arithmetic is libsodium's ``crypto_scalarmult`` (X25519, RFC 7748);
none is written here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import nacl.bindings

__all__ = ["ELEMENT_BYTES", "PERSON", "blind", "hash_and_blind", "hash_to_group", "session_hash_key"]

#: Size of one serialised group element (an X25519 u-coordinate).
ELEMENT_BYTES = 32

#: BLAKE2b personalisation: domain-separates the hash-to-group from every other
#: use of BLAKE2b (16 bytes, the maximum BLAKE2b allows).
PERSON = b"fedbench.psi.h2g"

try:  # Fast path: libsodium through the cffi handle PyNaCl already loaded.
    # ``nacl.bindings.crypto_scalarmult`` allocates and copies per call; calling the
    # same libsodium function into one preallocated buffer saves ~5-10 % per element.
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _scalarmult = _lib.crypto_scalarmult
except (ImportError, AttributeError):  # pragma: no cover - depends on PyNaCl internals
    _ffi = None


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
    for part in (b"fedbench/psi/v1/x25519", salt, context):
        # Length-prefixed so that no two (salt, context) pairs feed the same bytes.
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def _h2u(item: bytes, hkey: bytes) -> bytes:
    d = hashlib.blake2b(item, digest_size=32, key=hkey, person=PERSON).digest()
    # Clear bit 255: X25519 ignores it anyway (RFC 7748 section 5); clearing it makes
    # the element's encoding canonical up to the 19 non-reduced values (probability 2^-250).
    return d[:31] + bytes((d[31] & 0x7F,))


def hash_to_group(hkey: bytes, items: Sequence[bytes]) -> bytes:
    """Hash canonical identifier encodings to X25519 u-coordinates (unblinded).

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
    return b"".join([_h2u(x, hkey) for x in items])


def _check(bad: int) -> None:
    if bad:
        # Only a low-order input gives an all-zero X25519 output; a hash hits one with
        # probability ~2^-250, so this means a peer sent a malformed element.
        raise ValueError("X25519 rejected a low-order group element")


def hash_and_blind(scalar: bytes, hkey: bytes, items: Sequence[bytes]) -> tuple[bytes, float]:
    """Hash identifiers to the group and blind them with ``scalar``.

    Parameters
    ----------
    scalar : bytes
        The party's 32-byte secret X25519 scalar for this run.
    hkey : bytes
        Key from :func:`session_hash_key`.
    items : sequence of bytes
        Canonical encodings of identifiers.

    Returns
    -------
    (bytes, float)
        Concatenated blinded elements (input order) and the CPU seconds spent.
    """
    t0 = time.process_time()
    n = len(items)
    if _ffi is not None:
        out = _ffi.new("unsigned char[]", ELEMENT_BYTES * n)
        f = _scalarmult
        bad = 0
        for i, x in enumerate(items):
            bad |= f(out + ELEMENT_BYTES * i, scalar, _h2u(x, hkey))
        _check(bad)
        res = _ffi.buffer(out)[:]
    else:  # pragma: no cover - fallback when PyNaCl internals move
        res = _blind_bindings(scalar, hash_to_group(hkey, items))
    return res, time.process_time() - t0


def blind(scalar: bytes, values: bytes) -> tuple[bytes, float]:
    """Raise every element of ``values`` to ``scalar`` (X25519), keeping the order.

    Parameters
    ----------
    scalar : bytes
        The party's 32-byte secret X25519 scalar for this run.
    values : bytes
        ``32 * n`` bytes of concatenated group elements.

    Returns
    -------
    (bytes, float)
        The re-blinded elements and the CPU seconds spent.

    Raises
    ------
    ValueError
        If ``values`` is not a whole number of elements or holds a low-order element.
    """
    t0 = time.process_time()
    if len(values) % ELEMENT_BYTES:
        raise ValueError("blinded set is not a whole number of 32-byte elements")
    if _ffi is not None:
        out = _ffi.new("unsigned char[]", len(values))
        src = _ffi.from_buffer(values)
        f = _scalarmult
        bad = 0
        for off in range(0, len(values), ELEMENT_BYTES):
            bad |= f(out + off, scalar, src + off)
        _check(bad)
        res = _ffi.buffer(out)[:]
    else:  # pragma: no cover - fallback when PyNaCl internals move
        res = _blind_bindings(scalar, values)
    return res, time.process_time() - t0


def _blind_bindings(scalar: bytes, values: bytes) -> bytes:  # pragma: no cover - fallback
    sm = nacl.bindings.crypto_scalarmult
    mv = memoryview(values)
    try:
        return b"".join([sm(scalar, mv[o : o + ELEMENT_BYTES].tobytes()) for o in range(0, len(values), 32)])
    except Exception as exc:  # PyNaCl raises RuntimeError on a low-order input
        raise ValueError("X25519 rejected a low-order group element") from exc


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
            reply = (task_id, False, f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(struct.pack("<Q", len(data)))
        stdout.write(data)
        stdout.flush()
