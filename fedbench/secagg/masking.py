"""Secure aggregation by pairwise masking, run party-side: the ``"masking"`` protocol.

Bonawitz et al. (CCS 2017) with the SecAgg+ graph of Bell et al. (CCS 2020);
the primitives, parameters and the security argument are those of
:mod:`fedbench.masking` (read its docstring).  Here every party secret lives
only inside its party, in the party's own memory
(:func:`fedbench.party.remember_in_party`, a Ray actor's memory on a
cluster): its two X25519 private keys, its self-mask seed ``b_u``, the shares
it holds for its neighbours and its local vector.  The aggregator (role
``"aggregator"``) only relays messages, then unmasks the sum.  Each round is
one call per party through the backend (:meth:`~fedbench.backend.Backend.settle`):

1. **advertise keys** - the party runs the local function, validates and
   encodes its result (plus its DP noise share, if any), keeps it, makes its
   two key pairs and returns only the public keys and the public layout
   (names and shapes of the entries).  A data error is raised here, before
   any message is recorded; the DP budget is charged after this round, before
   the first message.
2. **share keys** - given its neighbours' public keys, the party Shamir-shares
   ``b_u`` and its mask private key among them and returns the shares
   encrypted (AES-256-GCM) for each holder.
3. **masked input** - given the encrypted shares addressed to it and the
   neighbours that shared, the party returns only
   ``y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv)`` over Z_2^64.
4. **unmask** - given the list of parties whose masked input arrived, the
   party returns, for each neighbour, its share of ``b_u`` (survivor) or of
   ``s_u^SK`` (dropped after sharing), never both, and forgets everything.

Values wider than the ring (the statistics' wide encoding, 87 bits) are split
into 32-bit digits, each masked in its own copy of Z_2^64: a digit sum over
fewer than 2**32 parties never wraps, so the aggregator recombines the exact
integer sum.  Party state is dropped when the run ends, also on failure.

Trust: a semi-honest aggregator colluding with at most ``t - 1`` parties
learns nothing about one party's vector beyond the survivors' sum; there is no
key holder.  A malicious aggregator (lying about who dropped) is out of scope,
as is a party sending a wrong vector: see :mod:`fedbench.masking`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto import shamir
from ..crypto.packing import Encoding
from ..errors import (
    ConfigurationError,
    FedbenchError,
    LocalComputationError,
    MaskingDropoutError,
    MaskingParameterError,
    MaskingProtocolError,
    NonFiniteValueError,
    PartyUnavailableError,
    ProtocolError,
)
from ..masking import ROUNDS, _kdf, _priv, _pub, graph_params, harary_graph, prg, remove_masks
from ..party import recall_in_party, remember_in_party
from ..wire import dumps
from .base import AggregationOutcome, CostEstimate, GridNoiseFn, LocalFn, SecAggProtocol, TrustModel
from .base import check_enough_parties as _check_enough_parties
from .spec import VectorSpec

if TYPE_CHECKING:
    import polars as pl

    from ..backend import Backend, Settled
    from ..party import Party
    from ..transcript import Channel
    from .keyholders import AnyPaillierKeys

__all__ = ["MASKING", "MaskingAggregationOutcome", "MaskingSecAgg", "check_options", "ring_layout", "run_masking",
           "secure_aggregate_masking"]

_SEED = 32
_LIMBS = math.ceil(_SEED / shamir.LIMB_BYTES)
_SHARE = 8 * _LIMBS
#: Digit width when a value does not fit one ring element with room for the sum.
_DIGIT_BITS = 32
_RUN_IDS = itertools.count()
#: Options ``protocol="masking"`` accepts (``secure_sum(..., threshold=...)`` or ``Federation(secagg_options=...)``).
OPTIONS = frozenset({"threshold", "neighbours", "dropout", "require_all"})


def ring_layout(value_bits: int, n_parties: int) -> tuple[int, int]:
    """``(digits, digit_bits)``: how a ``value_bits``-bit encoded value is carried in Z_2^64 for ``n_parties``.

    One ring element when the sum of ``n_parties`` values fits 64 bits, else
    32-bit digits (each digit sum fits while ``n_parties < 2**32``).
    """
    if value_bits + math.ceil(math.log2(n_parties + 1)) <= 64:
        return 1, value_bits
    return math.ceil(value_bits / _DIGIT_BITS), _DIGIT_BITS


def check_options(n: int, options: Mapping[str, Any], names: Sequence[str]) -> tuple[int, int, dict[str, int]]:
    """Validate masking options for ``n`` parties: returns ``(neighbours, threshold, dropout)``.

    Raises
    ------
    MaskingParameterError
        Unknown option, neighbours outside ``[1, n - 1]``, threshold above the
        share holders or not above half of them, a dropout naming an unknown
        party or round.
    """
    unknown = set(options) - OPTIONS
    if unknown:
        raise MaskingParameterError(
            f"the masking protocol takes the options {sorted(OPTIONS)}, not {sorted(unknown)}")
    neighbours, threshold = options.get("neighbours"), options.get("threshold")
    for label, val in (("neighbours", neighbours), ("threshold", threshold)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int | np.integer)):
            raise MaskingParameterError(f"{label} must be an integer, got {val!r}")
    k, t = graph_params(n, neighbours, threshold)
    if not isinstance(options.get("require_all", False), bool):
        raise MaskingParameterError(f"require_all must be True or False, got {options['require_all']!r}")
    drop_in = options.get("dropout") or {}
    if not isinstance(drop_in, Mapping):
        raise MaskingParameterError(f"dropout must map party names to rounds 1..4, got {type(drop_in).__name__}")
    known = set(names)
    drop: dict[str, int] = {}
    for name, r in drop_in.items():
        if name not in known:
            raise MaskingParameterError(f"dropout names unknown party {name!r}")
        if isinstance(r, bool) or r not in ROUNDS:
            raise MaskingParameterError(f"dropout round for {name!r} must be one of 1..4, got {r!r}")
        drop[name] = int(r)
    return k, t, drop


# -- inside each party ------------------------------------------------------------------------
@dataclass
class _PartyState:
    """What a party keeps between rounds; never returned."""

    name: str
    spec: VectorSpec
    vec: np.ndarray  # exact local vector (or, with DP noise, the noisy encoded integers)
    noisy: bool
    c_sk: X25519PrivateKey
    s_sk: X25519PrivateKey
    b_u: bytes = b""
    keys: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # neighbour -> (c_pk, s_pk)
    held: dict[str, tuple[bytes, bytes, bytes]] = field(default_factory=dict)  # u -> (index, b share, s share)
    aead: dict[str, bytes] = field(default_factory=dict)  # neighbour -> share-encryption key (one agreement each)

    def wipe(self) -> None:
        self.b_u = b""
        self.held.clear()
        self.aead.clear()
        self.vec = np.zeros(0)


def _check_finite(name: str, spec: VectorSpec, vec: np.ndarray) -> None:
    floats = vec if vec.dtype != object else np.array(
        [0.0 if isinstance(v, int) else v for v in vec.tolist()], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(floats))
    if bad.size:
        col = spec.entry_names()[int(bad[0])]
        raise NonFiniteValueError(
            f"party {name!r}: {col!r} holds NaN or infinity; NaN and infinity cannot be aggregated "
            "(replace them or filter them out first)", party=name, column=col)


def _encode(name: str, spec: VectorSpec, vec: np.ndarray, encoding: Encoding, integer_encoding: Encoding | None,
            integral: np.ndarray | None) -> np.ndarray:
    """Offset-encode ``vec``; entries flagged ``integral`` with ``integer_encoding`` (object array if mixed)."""
    labels = spec.entry_names()
    if integer_encoding is None or integral is None or not integral.any():
        floats = vec if vec.dtype != object else np.array([float(v) for v in vec.tolist()], dtype=np.float64)
        return encoding.encode(floats, party=name, names=labels)
    out = np.empty(vec.size, dtype=object)
    for enc, mask in ((encoding, ~integral), (integer_encoding, integral)):
        if mask.any():
            part = vec[mask]
            names = [lb for lb, m in zip(labels, mask.tolist(), strict=True) if m]
            out[mask] = [int(v) for v in enc.encode(part, party=name, names=names).tolist()]
    return out


def _to_digits(encoded: np.ndarray, digits: int, digit_bits: int) -> np.ndarray:
    if digits == 1:
        return np.asarray(encoded).astype(np.uint64)
    ints = encoded.astype(object) if encoded.dtype != object else encoded
    mask = (1 << digit_bits) - 1
    rows = [np.array(((ints >> (digit_bits * j)) & mask).tolist(), dtype=np.uint64) for j in range(digits)]
    return np.concatenate(rows)


def _party_advertise(df: pl.DataFrame, *, key: str, name: str, local_fn: LocalFn, encoding: Encoding,
                     integer_encoding: Encoding | None, noise: GridNoiseFn | None) -> tuple[bytes, VectorSpec]:
    """Round 1 in the party: local result validated, encoded and kept; returns public keys and layout."""
    from ..secagg.paillier import _add_integer_noise

    local = local_fn(df)
    spec = VectorSpec.of(local, name)
    vec = spec.flatten_exact(local)
    del local
    _check_finite(name, spec, vec)
    integral = spec.entry_integral() if integer_encoding is not None else None
    encoded = _encode(name, spec, vec, encoding, integer_encoding, integral)  # range check before any message
    noisy = noise is not None
    if noise is not None:
        encoded = _add_integer_noise(encoded, noise(spec.names, spec.shapes, encoding.frac_bits), encoding,
                                     party=name, labels=spec.entry_names())
        vec = encoded
    del encoded
    state = _PartyState(name, spec, vec, noisy, X25519PrivateKey.generate(), X25519PrivateKey.generate())
    remember_in_party(df, key=key, fn=lambda _df: state)
    return _pub(state.c_sk) + _pub(state.s_sk), spec


def _aead_key(me: X25519PrivateKey, other_c_pk: bytes) -> bytes:
    return _kdf(me.exchange(X25519PublicKey.from_public_bytes(other_c_pk)), b"fedbench-share")


def _party_share(df: pl.DataFrame, *, key: str, holders: list[tuple[str, bytes, bytes]],
                 threshold: int) -> dict[str, bytes]:
    """Round 2 in the party: Shamir-share ``b_u`` and ``s_u^SK`` among ``holders``, encrypted for each."""
    st: _PartyState = recall_in_party(df, key=key, keep=True)
    st.keys = {v: (cp, sp) for v, cp, sp in holders}
    st.b_u = secrets.token_bytes(_SEED)
    sh_b = shamir.share_bytes(st.b_u, len(holders), threshold)
    sh_s = shamir.share_bytes(_priv(st.s_sk), len(holders), threshold)
    out: dict[str, bytes] = {}
    for j, (v, cp, _) in enumerate(holders):
        plain = (j + 1).to_bytes(4, "big") + shamir.encode_share(sh_b[j]) + shamir.encode_share(sh_s[j])
        nonce = os.urandom(12)
        st.aead[v] = _aead_key(st.c_sk, cp)  # the same key decrypts v's shares in round 3
        out[v] = nonce + AESGCM(st.aead[v]).encrypt(nonce, plain, f"{st.name}->{v}".encode())
    return out


def _party_mask(df: pl.DataFrame, *, key: str, inbox: dict[str, bytes], senders: list[str], encoding: Encoding,
                integer_encoding: Encoding | None, integral: np.ndarray | None, digits: int,
                digit_bits: int) -> bytes:
    """Round 3 in the party: decrypt the shares it holds; return only its masked vector ``y_u``."""
    st: _PartyState = recall_in_party(df, key=key, keep=True)
    for u, ct in inbox.items():
        if u not in st.keys:
            raise MaskingProtocolError(f"party {st.name!r} received shares from {u!r}, not one of its neighbours",
                                       party=u)
        try:
            aead = st.aead.get(u) or _aead_key(st.c_sk, st.keys[u][0])
            plain = AESGCM(aead).decrypt(ct[:12], ct[12:], f"{u}->{st.name}".encode())
        except InvalidTag:
            raise MaskingProtocolError(
                f"party {st.name!r} received shares from {u!r} that fail authentication (altered in transit?)",
                party=u) from None
        st.held[u] = (plain[:4], plain[4:4 + _SHARE], plain[4 + _SHARE:])
    encoded = st.vec if st.noisy else _encode(st.name, st.spec, st.vec, encoding, integer_encoding, integral)
    x = _to_digits(encoded, digits, digit_bits)
    del encoded
    m = x.size
    y = x + prg(st.b_u, m)
    del x
    for v in senders:
        if v not in st.keys:
            raise MaskingProtocolError(f"the aggregator asked {st.name!r} to mask with {v!r}, not a neighbour",
                                       party=v)
        seed = _kdf(st.s_sk.exchange(X25519PublicKey.from_public_bytes(st.keys[v][1])), b"fedbench-mask")
        y = y + prg(seed, m) if st.name < v else y - prg(seed, m)
    st.vec = np.zeros(0)  # the plain vector is not needed any more
    return y.tobytes()


def _party_unmask(df: pl.DataFrame, *, key: str, survivors: list[str], threshold: int) -> bytes:
    """Round 4 in the party: one share per neighbour (``b_u`` if it survived, ``s_u^SK`` if not); forget."""
    st: _PartyState = recall_in_party(df, key=key)  # popped: the party answers round 4 once
    try:
        if len(survivors) < threshold:
            raise MaskingDropoutError(
                f"party {st.name!r} refuses to unmask: {len(survivors)} survivors, fewer than the threshold "
                f"{threshold}", round=4)
        alive = set(survivors)
        parts = []
        for u in sorted(st.held):
            idx, share_b, share_s = st.held[u]
            # Exactly one of the two shares of u leaves this party.
            parts.append(u.encode() + (b"\0b" + idx + share_b if u in alive else b"\0s" + idx + share_s))
        return b"".join(parts)
    finally:
        st.wipe()


def _party_forget(df: pl.DataFrame, *, key: str) -> None:
    with contextlib.suppress(FedbenchError):
        recall_in_party(df, key=key).wipe()


# -- the aggregator ------------------------------------------------------------------------------
def _settle(backend: Backend, calls: Sequence[tuple[Party, Callable[[pl.DataFrame], Any]]], rnd: int,
            dropped: dict[str, int], crash_drops: bool = False) -> dict[str, Any]:
    """Run one round's party calls.

    From round 2 on, a party that is unavailable or silent drops out; any
    other error is raised.  In round 1 (the local function) every error is
    raised, as with every protocol: bad data is refused, not dropped; with
    ``crash_drops`` a local function that crashed (a foreign exception) makes
    its party drop out instead.
    """
    settled: list[Settled] = backend.settle(calls)
    out: dict[str, Any] = {}
    for (p, _), s in zip(calls, settled, strict=True):
        err = s.error
        if err is None and not s.timed_out:
            out[p.name] = s.value
        elif (rnd > 1 and (s.timed_out or isinstance(err, PartyUnavailableError))) or (
                crash_drops and isinstance(err, LocalComputationError)):
            dropped[p.name] = rnd
        elif err is not None:
            raise err
        else:
            dropped[p.name] = rnd
    return out


def _need(count: int, t: int, rnd: int, what: str = "parties remain") -> None:
    if count < max(t, 2):
        raise MaskingDropoutError(
            f"only {count} {what} at round {rnd} ({ROUNDS[rnd]}); the threshold is {t}: nothing is released",
            round=rnd)


def _parse_unmask(data: bytes, sender: str) -> list[tuple[str, bytes, int, np.ndarray]]:
    out = []
    pos = 0
    try:
        while pos < len(data):
            end = data.index(b"\0", pos)
            u = data[pos:end].decode()
            kind, idx = data[end + 1:end + 2], int.from_bytes(data[end + 2:end + 6], "big")
            out.append((u, kind, idx, shamir.decode_share(data[end + 6:end + 6 + _SHARE])))
            pos = end + 6 + _SHARE
    except (ValueError, UnicodeDecodeError):
        raise MaskingProtocolError(f"party {sender!r} sent a malformed unmask message", party=sender) from None
    return out


def _mask_aggregate(parties: Sequence[Party], local_fn: LocalFn, *, backend: Backend, channel: Channel,
                    encoding: Encoding, integer_encoding: Encoding | None, party_noise: GridNoiseFn | None,
                    before_release: Callable[[], None] | None, options: Mapping[str, Any],
                    crash_drops: bool = False) -> AggregationOutcome:
    _check_enough_parties(len(parties))
    names = [p.name for p in parties]
    by_name = {p.name: p for p in parties}
    n = len(names)
    k, t, drop = check_options(n, options, names)
    if party_noise is not None:
        integer_encoding = None  # DP noise lives on encoding's grid
    key = f"masking-{os.getpid()}-{next(_RUN_IDS)}-{secrets.token_hex(4)}"
    dropped: dict[str, int] = {}
    seconds: dict[str, float] = {}
    touched: list[Party] = []
    agg = "aggregator"

    def alive(u: str, r: int) -> bool:
        return drop.get(u, 99) > r and u not in dropped

    try:
        # Round 1: advertise keys (each party computed, validated and kept its contribution).
        t0 = time.perf_counter()
        calls1 = [(by_name[u], partial(_party_advertise, key=key, name=u, local_fn=local_fn, encoding=encoding,
                                       integer_encoding=integer_encoding, noise=party_noise))
                  for u in names if alive(u, 1)]
        touched = [p for p, _ in calls1]
        for u in names:
            if drop.get(u) == 1:
                dropped[u] = 1
        r1 = _settle(backend, calls1, 1, dropped, crash_drops)
        u1 = [u for u in names if u in r1]
        _need(len(u1), t, 1)
        spec = r1[u1[0]][1]
        for u in u1:
            if r1[u][1] != spec:
                # Neither party's names nor shapes are quoted: a local function can make them depend on its data.
                raise ProtocolError(
                    f"party {u!r} returned entries that differ from party {u1[0]!r}'s in names or shapes; "
                    "every party must return the same names and shapes")
        integral = None
        if integer_encoding is not None:
            integral = np.logical_and.reduce([r1[u][1].entry_integral() for u in u1])
        # An entry is summed as an exact integer only if every party announced it as one (public dtype).
        wide = integer_encoding is not None and integral is not None and bool(integral.any())
        widest = max(encoding.value_bits, integer_encoding.value_bits if integer_encoding is not None and wide else 0)
        digits, digit_bits = ring_layout(widest, n)
        if before_release is not None:
            before_release()  # the DP charge: before any message is recorded
        layout: dict[str, Any] = {"names": list(spec.names), "shapes": [list(s) for s in spec.shapes],
                                  "frac_bits": encoding.frac_bits, "value_bits": encoding.value_bits}
        pubs: dict[str, tuple[bytes, bytes]] = {}
        seen: dict[bytes, str] = {}
        for u in u1:
            lay = layout | ({"integral": list(r1[u][1].integral)} if any(r1[u][1].integral) else {})
            channel.send(u, agg, "layout", dumps(lay), encrypted=False)
            msg = channel.send(u, agg, "advertise-keys", r1[u][0], encrypted=False)
            if len(msg) != 64:
                raise MaskingProtocolError(f"party {u!r} advertised {len(msg)} bytes of keys, expected 64", party=u)
            for pk in (msg[:32], msg[32:]):
                if pk in seen:
                    raise MaskingProtocolError(
                        f"party {u!r} advertised a public key already used by party {seen[pk]!r}; aborting", party=u)
                seen[pk] = u
            pubs[u] = (msg[:32], msg[32:])
        graph = harary_graph(names, k) if k < n - 1 else {u: [v for v in names if v != u] for u in names}
        holders = {u: [v for v in graph[u] if v in pubs] for u in u1}
        relayed: dict[str, list[tuple[str, bytes, bytes]]] = {}
        for u in u1:
            payload = b"".join(v.encode() + b"\0" + pubs[v][0] + pubs[v][1] for v in holders[u])
            data = channel.send(agg, u, "advertise-keys", payload, encrypted=False)
            relayed[u] = [(data[i:i + len(v)].decode(), data[i + len(v) + 1:i + len(v) + 33],
                           data[i + len(v) + 33:i + len(v) + 65])
                          for v, i in zip(holders[u], _offsets(holders[u], 65), strict=True)]
        seconds[ROUNDS[1]] = time.perf_counter() - t0

        # Round 2: share keys.
        t0 = time.perf_counter()
        for u in u1:
            if alive(u, 2) and len(holders[u]) < t:
                raise MaskingDropoutError(
                    f"party {u!r} has {len(holders[u])} neighbours with keys, fewer than the threshold {t}: "
                    "nothing is released", round=2)
        for u in u1:
            if drop.get(u) == 2:
                dropped[u] = 2
        r2 = _settle(backend, [(by_name[u], partial(_party_share, key=key, holders=relayed[u], threshold=t))
                               for u in u1 if alive(u, 2)], 2, dropped)
        u2 = [u for u in u1 if u in r2]
        _need(len(u2), t, 2)
        inbox: dict[str, dict[str, bytes]] = {v: {} for v in u1}
        for u in u2:
            cts = r2[u]
            if set(cts) != {v for v, _, _ in relayed[u]}:
                raise MaskingProtocolError(f"party {u!r} sent shares to parties other than its neighbours", party=u)
            for v in holders[u]:
                inbox[v][u] = channel.send(u, agg, "share-keys", cts[v], encrypted=True)
        set2 = set(u2)
        for v in u2:
            if inbox[v]:
                payload = b"".join(u.encode() + b"\0" + inbox[v][u] for u in sorted(inbox[v]))
                channel.send(agg, v, "share-keys", payload, encrypted=True)
        seconds[ROUNDS[2]] = time.perf_counter() - t0

        # Round 3: masked input.
        t0 = time.perf_counter()
        m = spec.size * digits
        for u in u2:
            if drop.get(u) == 3:
                dropped[u] = 3
        calls3 = [(by_name[v], partial(_party_mask, key=key, inbox=dict(inbox[v]),
                                       senders=[u for u in graph[v] if u in set2], encoding=encoding,
                                       integer_encoding=integer_encoding, integral=integral, digits=digits,
                                       digit_bits=digit_bits))
                  for v in u2 if alive(v, 3)]
        r3 = _settle(backend, calls3, 3, dropped)
        masked: dict[str, np.ndarray] = {}
        for v in u2:
            if v not in r3:
                continue
            data = channel.send(v, agg, "masked-input", r3[v], encrypted=True)
            if len(data) != 8 * m:
                raise MaskingProtocolError(
                    f"party {v!r} sent a masked input of {len(data)} bytes, expected {8 * m}", party=v)
            masked[v] = np.frombuffer(data, dtype=np.uint64)
        del r3
        u3 = list(masked)
        _need(len(u3), t, 3)
        if (party_noise is not None or options.get("require_all")) and len(u3) < n:
            # Each party's noise share is sized for all n shares: with one missing, epsilon would not hold.
            raise MaskingDropoutError(
                f"{n - len(u3)} of {n} parties dropped before their masked input arrived; a DP release needs "
                "every party's noise share: nothing is released", round=3)
        # The release policy sees the parties actually summed before anything can be unmasked: a
        # dropout that made this the second half of a differencing pair can still be refused.
        channel.survivors_known(u3)
        survivors_msg = "\n".join(u3).encode()
        for v in u3:
            channel.send(agg, v, "masked-input", survivors_msg, encrypted=False)
        seconds[ROUNDS[3]] = time.perf_counter() - t0

        # Round 4: unmask.
        t0 = time.perf_counter()
        set3 = set(u3)
        for v in u3:
            if drop.get(v) == 4:
                dropped[v] = 4
        r4 = _settle(backend, [(by_name[v], partial(_party_unmask, key=key, survivors=u3, threshold=t))
                               for v in u3 if alive(v, 4)], 4, dropped)
        u4 = [v for v in u3 if v in r4]
        _need(len(u4), t, 4)
        shares_b: dict[str, dict[int, np.ndarray]] = {u: {} for u in u3}
        shares_s: dict[str, dict[int, np.ndarray]] = {u: {} for u in set2 - set3}
        for v in u4:
            data = channel.send(v, agg, "unmask", r4[v], encrypted=True)
            for u, kind, idx, row in _parse_unmask(data, v):
                target = shares_b if kind == b"b" else shares_s
                if u not in target:
                    raise MaskingProtocolError(f"party {v!r} sent a share for {u!r} of the wrong kind", party=v)
                target[u][idx] = row
        total = np.zeros(m, dtype=np.uint64)
        for u in u3:
            total += masked[u]
        del masked

        def pair_pad(s_sk: X25519PrivateKey, u: str, v: str) -> tuple[np.ndarray, bool]:
            seed = _kdf(s_sk.exchange(X25519PublicKey.from_public_bytes(pubs[v][1])), b"fedbench-mask")
            return prg(seed, m), v < u  # v added sign(v, u) * PRG(s_uv)

        total = remove_masks(total, survivors=u3, self_shares=shares_b, dropped=sorted(shares_s),
                             key_shares=shares_s, threshold=t, graph=graph, pair_pad=pair_pad)
        vec = _decode(total, spec.size, digits, digit_bits, len(u3), encoding, integer_encoding, integral)
        seconds[ROUNDS[4]] = time.perf_counter() - t0
        released = vec.astype("<f8").tobytes() if vec.dtype != object else dumps(vec.tolist())
        channel.send(agg, "analyst", "aggregate", released, encrypted=False)
    finally:
        for holder in touched:  # secrets never outlive the run, also when it fails
            backend.post(holder, partial(_party_forget, key=key))
    all_dropped = {u: r for u, r in sorted(dropped.items(), key=lambda kv: names.index(kv[0]))}
    return AggregationOutcome(
        value=spec.unflatten(vec), spec=spec, layout=None, ciphertexts_per_party=1, seconds=seconds,
        fast_encryption=False, protocol="masking", survivors=u3, dropped=all_dropped,
        details={"neighbours": k, "threshold": t, "ring_bits": 64, "digits": digits})


def run_masking(parties: Sequence[Party], local_fn: LocalFn, *, backend: Backend, channel: Channel,
                encoding: Encoding, options: Mapping[str, Any] | None = None,
                before_release: Callable[[], None] | None = None, crash_drops: bool = False) -> AggregationOutcome:
    """Run the party-side masking protocol outside a federation (benchmarks, :mod:`fedbench.masking`).

    Parameters
    ----------
    parties : sequence of Party
        At least two parties.
    local_fn : callable
        Runs inside each party on its rows; returns a dict of numbers or arrays.
    backend : Backend
        Runs the party calls.
    channel : Channel
        Records every message.
    encoding : Encoding
        Public fixed-point encoding.
    options : mapping, optional
        ``threshold``, ``neighbours``, ``dropout``, ``require_all`` (see :class:`MaskingSecAgg`).
    before_release : callable, optional
        Called after round 1, before the first message is recorded.
    crash_drops : bool, default False
        A party whose local function crashes drops out in round 1 (else the error is raised).

    Returns
    -------
    AggregationOutcome
    """
    return _mask_aggregate(parties, local_fn, backend=backend, channel=channel, encoding=encoding,
                           integer_encoding=None, party_noise=None, before_release=before_release,
                           options=dict(options or {}), crash_drops=crash_drops)


def _offsets(names: list[str], extra: int) -> list[int]:
    out, pos = [], 0
    for v in names:
        out.append(pos)
        pos += len(v.encode()) + extra
    return out


def _decode(total: np.ndarray, size: int, digits: int, digit_bits: int, n: int, encoding: Encoding,
            integer_encoding: Encoding | None, integral: np.ndarray | None) -> np.ndarray:
    if digits == 1:
        sums: np.ndarray = total
    else:
        rows = total.reshape(digits, size)
        sums = np.zeros(size, dtype=object)
        for j in range(digits):
            sums = sums + (rows[j].astype(object) << (digit_bits * j))
    if integer_encoding is None or integral is None or not integral.any():
        return encoding.decode_sum(sums, n)
    out = np.empty(size, dtype=object)
    for enc, mask, exact in ((encoding, ~integral, False), (integer_encoding, integral, True)):
        if mask.any():
            part = np.array([int(v) for v in sums[mask].tolist()], dtype=object)
            out[np.flatnonzero(mask)] = enc.decode_sum(part, n, integral=np.full(int(mask.sum()), exact))
    return out


@dataclass
class MaskingAggregationOutcome:
    """Party-level result, mirroring :class:`fedbench.secagg.AggregationOutcome` where it can."""

    value: dict[str, Any]
    spec: Any
    survivors: list[str]
    dropped: dict[str, int]
    seconds: dict[str, float]
    neighbours: int
    threshold: int


def secure_aggregate_masking(
    parties: Sequence[Any],
    local_fn: Callable[[Any], Mapping[str, Any]],
    *,
    backend: Any,
    channel: Channel,
    encoding: Encoding,
    threshold: int | None = None,
    neighbours: int | None = None,
    dropout: Mapping[str, int] | None = None,
    before_release: Callable[[], None] | None = None,
) -> MaskingAggregationOutcome:
    """Securely sum ``local_fn`` over ``parties`` with the party-side masking protocol.

    Every round runs inside the parties (:mod:`fedbench.secagg.masking`): a
    party's secrets and its plain local vector never leave it.  A party whose
    local function crashes drops out in round 1 (its error is not quoted: it
    may depend on its data).  In a federation use ``protocol="masking"``.

    Parameters
    ----------
    parties : sequence of Party
        The parties.
    local_fn : callable
        Runs inside each party on its DataFrame; returns a dict of numbers or arrays.
    backend : Backend
        Runs the party calls (:meth:`~fedbench.backend.Backend.settle`).
    channel : Channel
        Records every message (roles: the party names and ``"aggregator"``).
    encoding : Encoding
        Public fixed-point parameters.
    threshold, neighbours, dropout, before_release
        As in :func:`masked_sum_vectors`.

    Returns
    -------
    MaskingAggregationOutcome
    """
    opts = {k: v for k, v in (("threshold", threshold), ("neighbours", neighbours), ("dropout", dropout))
            if v is not None}
    out = run_masking(parties, local_fn, backend=backend, channel=channel, encoding=encoding, options=opts,
                      before_release=before_release, crash_drops=True)
    return MaskingAggregationOutcome(value=out.value, spec=out.spec, survivors=list(out.survivors or []),
                                     dropped=dict(out.dropped), seconds=out.seconds,
                                     neighbours=int(out.details["neighbours"]),
                                     threshold=int(out.details["threshold"]))


class MaskingSecAgg(SecAggProtocol):
    """Pairwise-masking secure aggregation (Bonawitz et al.; SecAgg+), every secret party-side.

    Options (``secure_sum(..., threshold=, neighbours=, dropout=)``, or
    ``Federation(secagg_options={...})`` for every sum of a federation whose
    ``secagg`` is ``"masking"``): ``neighbours`` (SecAgg+ degree, default
    ``2 * ceil(log2 n)`` capped at ``n - 1``), ``threshold`` (Shamir threshold
    over a party's ``k`` share holders, ``k/2 < t <= k``, default
    ``max(floor(k/2) + 1, ceil(2k/3))``), ``dropout`` (``{party: round}``: the
    party stops answering at that round, 1..4; simulated), ``require_all``
    (release nothing unless every party's masked input arrived; always on for
    sums carrying DP noise shares, whose calibration counts every share).
    """

    name: ClassVar[str] = "masking"
    needs_keys: ClassVar[bool] = False
    option_names: ClassVar[frozenset[str]] = OPTIONS
    trust_model: ClassVar[TrustModel] = TrustModel(
        text=(
            "semi-honest aggregator and parties, no key holder: the aggregator sees each party's vector only "
            "under a pseudorandom mask and learns only the survivors' sum unless it colludes with at least t "
            "of that party's share holders (t = the Shamir threshold); a malicious aggregator that lies about "
            "who dropped out is out of scope"
        ),
        trusted=("aggregator",),
        broken_by="the aggregator colluding with t share holders of a party (or lying about dropouts)",
    )

    def cost_model(self, n_parties: int, n_values: int, key_bits: int, *,
                   encoding: Encoding | None = None) -> CostEstimate:
        """Messages and bytes of one run with no dropout (``key_bits`` is ignored: no Paillier key).

        Parameters
        ----------
        n_parties : int
            Parties contributing (at least two).
        n_values : int
            Scalars in each party's local result.
        key_bits : int
            Unused (kept for the common interface).
        encoding : Encoding, optional
            Fixed-point encoding (default :meth:`Encoding.default_sum`); wider
            than the ring it is carried in 32-bit digits.

        Returns
        -------
        CostEstimate
            ``ciphertexts_per_party`` is 1 (one masked vector); ``operations``
            counts PRG expansions, X25519 agreements and Shamir shares.
        """
        _check_enough_parties(n_parties)
        enc = encoding if encoding is not None else Encoding.default_sum()
        k, _ = graph_params(n_parties, None, None)
        digits, _ = ring_layout(enc.value_bits, n_parties)
        name = 8  # a typical party name's bytes
        share_ct = 12 + 4 + 2 * _SHARE + 16
        upload = 8 * n_values * digits
        layout = 100 + 16 * n_values // 1000  # the JSON layout message (names, shapes, encoding), roughly
        per_party = (layout + 64 + k * (name + 65) + k * share_ct + k * (name + 1 + share_ct) + upload
                     + n_parties * (name + 1) + k * (name + 6 + _SHARE))
        return CostEstimate(
            ciphertexts_per_party=1,
            # per party: layout, keys up and down, k shares up, shares down, masked input, survivors, unmask
            messages=(7 + k) * n_parties + 1,
            bytes_per_party=upload,
            total_bytes=n_parties * per_party + 8 * n_values,
            operations={"prg": n_parties * (k + 2), "key_agreement": n_parties * 2 * k,
                        "shamir_shares": n_parties * 2 * k},
        )

    def aggregate(
        self,
        parties: Sequence[Party],
        local_fn: LocalFn,
        *,
        keys: AnyPaillierKeys | None,
        backend: Backend,
        channel: Channel,
        encoding: Encoding,
        fast_encryption: bool = True,
        key_recipients: Sequence[str] | None = None,
        party_noise: GridNoiseFn | None = None,
        central_noise: GridNoiseFn | None = None,
        before_release: Callable[[], None] | None = None,
        integer_encoding: Encoding | None = None,
        threshold: int | None = None,
        neighbours: int | None = None,
        dropout: Mapping[str, int] | None = None,
        require_all: bool | None = None,
    ) -> AggregationOutcome:
        """Securely sum ``local_fn`` over ``parties`` with the four party-side rounds (module docstring).

        ``keys``, ``fast_encryption`` and ``key_recipients`` are ignored (no key holder).

        Returns
        -------
        AggregationOutcome
            With ``survivors`` (summed), ``dropped`` (party -> round) and
            ``details`` (neighbours, threshold).

        Raises
        ------
        ConfigurationError
            ``central_noise``: there is no key holder to add it (use distributed noise).
        MaskingParameterError, MaskingDropoutError, MaskingProtocolError
            Unsound options, too few parties left at a round, a malformed message.
        TooFewPartiesError, ProtocolError, NonFiniteValueError, EncodingRangeError
            As for every protocol, raised inside a party before any message.
        """
        if central_noise is not None:
            raise ConfigurationError(
                'the masking protocol has no key holder to add central DP noise; use noise="distributed" '
                "(each party adds its share before masking) or protocol='paillier'")
        opts = {"threshold": threshold, "neighbours": neighbours, "dropout": dropout, "require_all": require_all}
        return _mask_aggregate(parties, local_fn, backend=backend, channel=channel, encoding=encoding,
                               integer_encoding=integer_encoding, party_noise=party_noise,
                               before_release=before_release, options={k: v for k, v in opts.items() if v is not None})


#: The registered instance (``protocol="masking"``).
MASKING = MaskingSecAgg()
