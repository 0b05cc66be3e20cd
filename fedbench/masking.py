"""Secure aggregation by pairwise masking (Bonawitz et al., CCS 2017; SecAgg+ of Bell et al., CCS 2020).

This module holds the primitives, parameters and security argument, and
:func:`masked_sum_vectors`, a single-process simulation over vectors that are
all in one place (for tests and benchmarks of the arithmetic).  The
federation's protocol ``protocol="masking"`` runs every round inside the
parties instead (:mod:`fedbench.secagg.masking`, which also holds
:func:`~fedbench.secagg.masking.secure_aggregate_masking` for use outside a
federation).

Protocol (four rounds, every message through :class:`fedbench.transcript.Channel`,
roles ``party:<name>`` and ``server``):

1. **advertise keys** - each party makes two X25519 key pairs, ``(c_u^PK, c_u^SK)``
   for encrypting shares and ``(s_u^PK, s_u^SK)`` for mask agreement, and sends
   the public halves to the server, which forwards to each party those of its
   neighbours.  Duplicated public keys abort the run.
2. **share keys** - each party draws a 32-byte self-mask seed ``b_u`` (CSPRNG) and
   Shamir-shares ``b_u`` and ``s_u^SK`` (:mod:`fedbench.crypto.shamir`, threshold
   ``t``) among its neighbours; share ``j`` is encrypted with AES-256-GCM under
   HKDF-SHA256(X25519(c_u^SK, c_v^PK)) and relayed by the server.
3. **masked input** - ``y_u = x_u + PRG(b_u) + sum_v sign(u, v) PRG(s_uv)`` over
   Z_2^64 (``uint64`` wraps), ``s_uv = HKDF(X25519(s_u^SK, s_v^PK))``, ``sign`` is
   ``+1`` when ``u`` precedes ``v`` and ``-1`` otherwise, PRG = AES-256-CTR keyed
   by the seed (``cryptography``), ``x_u`` the fixed-point encoding shared with the
   Paillier path (:class:`fedbench.crypto.packing.Encoding`).
4. **unmask** - the server announces who sent a masked input; each surviving
   party returns its shares of ``b_u`` for those parties and of ``s_u^SK`` for
   neighbours that dropped after sharing keys (never both for one party).  The
   server reconstructs, removes the self masks and the dangling pairwise masks
   and decodes the exact sum of the parties whose masked input arrived.

SecAgg+: parties share and mask only with their ``neighbours`` on a random
``k``-regular graph (a Harary graph over a CSPRNG permutation of the parties,
as in Bell et al.), ``k = 2 * ceil(log2 n)`` by default (capped at ``n - 1``,
where it is Bonawitz's complete graph), so cost grows as O(n log n).  The
threshold ``t`` is relative to the ``k`` share holders of a party; its default is
``max(floor(k/2) + 1, ceil(2k/3))`` and it must satisfy ``k/2 < t <= k``.

Security argument and assumptions
---------------------------------
* Semi-honest (honest-but-curious) server, colluding with at most ``t - 1``
  parties: every ``y_u`` it sees is ``x_u`` plus ``PRG(b_u)``, a pseudorandom
  vector under a seed it cannot learn: an honest party reveals for a given ``u``
  either its share of ``b_u`` (``u`` sent ``y_u``) or of ``s_u^SK`` (``u`` did not),
  never both, and ``t - 1`` shares are information-theoretically independent
  of the secret.  So ``y_u`` is indistinguishable from uniform, and after
  unmasking the server learns only the sum over the survivors (the pairwise
  masks cancel there).  Shares travel encrypted and authenticated (AES-GCM), so
  the relaying server cannot read or alter them undetected.
* Malicious server (out of scope): it could claim that a party which did send
  ``y_u`` dropped, collect shares of ``s_u^SK`` from some parties and of ``b_u``
  from others, and unmask ``x_u``.  Bonawitz et al. add a consistency-check
  round (signed survivor lists) and require ``t > n/2``; we keep ``t > k/2`` but
  leave the consistency check, signatures and a PKI out: the server here is
  trusted to follow the protocol.  Parties are also trusted to send well-formed
  messages (a party can add any value to the sum).
* SecAgg+ graph: security and correctness hold with high probability over the
  random graph; Bell et al. bound the failure probability (a neighbourhood whose
  honest or surviving members fall below ``t``) by ``2**-sigma`` for
  ``k = O(log n)`` under their bound on the corrupt and dropout fractions.  Here
  a neighbourhood with fewer than ``t`` surviving share holders is detected and
  the run raises :class:`~fedbench.errors.MaskingDropoutError` without release.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding as KeyEncoding
from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat, PublicFormat

from fedbench.crypto import shamir
from fedbench.crypto.packing import Encoding
from fedbench.errors import MaskingDropoutError, MaskingParameterError, MaskingProtocolError
from fedbench.transcript import Channel

#: Bits of the masking ring Z_2^k (numpy uint64 arithmetic wraps modulo 2**64).
RING_BITS = 64
#: Round numbers accepted by ``dropout=``.
ROUNDS = {1: "advertise-keys", 2: "share-keys", 3: "masked-input", 4: "unmask"}
_SEED = 32


# -- primitives ---------------------------------------------------------------------------------
def prg(seed: bytes, length: int) -> np.ndarray:
    """Expand a 32-byte seed into ``length`` uniform ``uint64`` values (AES-256-CTR keystream)."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor()
    return np.frombuffer(enc.update(bytes(8 * length)) + enc.finalize(), dtype=np.uint64)


def _kdf(shared: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _generate_keys() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def _pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(KeyEncoding.Raw, PublicFormat.Raw)


def _priv(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(KeyEncoding.Raw, PrivateFormat.Raw, NoEncryption())


def remove_masks(total: np.ndarray, *, survivors: Sequence[str], self_shares: Mapping[str, Mapping[int, np.ndarray]],
                 dropped: Sequence[str], key_shares: Mapping[str, Mapping[int, np.ndarray]], threshold: int,
                 graph: Mapping[str, Sequence[str]],
                 pair_pad: Callable[[X25519PrivateKey, str, str], tuple[np.ndarray, bool]]) -> np.ndarray:
    """The unmask step: remove self masks and dangling pair masks from the sum of masked inputs.

    Shared by the party-side protocol (:mod:`fedbench.secagg.masking`) and the
    single-process simulation (:func:`run_secure_aggregation`), which differ only
    in how a pair's seed is derived and which party of a pair adds its mask.

    Parameters
    ----------
    total : numpy.ndarray of uint64
        Sum of the masked inputs that arrived (not modified).
    survivors : sequence of str
        Parties whose masked input arrived, in order; their self masks ``PRG(b_u)`` are removed.
    self_shares : mapping
        Survivor -> {share index: share row} of its self-mask seed ``b_u``.
    dropped : sequence of str
        Parties that shared keys but whose masked input did not arrive, in order; their
        pair masks with surviving neighbours are removed.
    key_shares : mapping
        Dropped party -> {share index: share row} of its mask secret key ``s_u^SK``.
    threshold : int
        Shares needed to reconstruct a secret.
    graph : mapping
        Party -> its neighbours.
    pair_pad : callable
        ``pair_pad(s_sk, u, v)`` -> ``(pad, subtract)``: the pair mask between dropped ``u``
        (whose reconstructed key is ``s_sk``) and survivor ``v``, and whether ``v`` added it
        (so that it must be subtracted) rather than subtracted it.

    Returns
    -------
    numpy.ndarray of uint64
        The sum of the survivors' inputs (encoded).

    Raises
    ------
    MaskingDropoutError
        Fewer than ``threshold`` shares of a secret arrived: nothing is released.
    """
    m = len(total)
    total = total.copy()
    for u in survivors:
        if len(self_shares[u]) < threshold:
            raise MaskingDropoutError(
                f"only {len(self_shares[u])} of party {u!r}'s share holders answered the unmask round; the "
                f"threshold is {threshold}: nothing is released", round=4)
        total -= prg(shamir.reconstruct_bytes(dict(self_shares[u]), threshold, _SEED), m)
    alive = set(survivors)
    for u in dropped:
        if len(key_shares[u]) < threshold:
            raise MaskingDropoutError(
                f"only {len(key_shares[u])} of dropped party {u!r}'s share holders answered the unmask round; "
                f"the threshold is {threshold}: nothing is released", round=4)
        s_sk = X25519PrivateKey.from_private_bytes(shamir.reconstruct_bytes(dict(key_shares[u]), threshold, _SEED))
        for v in graph[u]:
            if v in alive:
                pad, subtract = pair_pad(s_sk, u, v)
                total = total - pad if subtract else total + pad
    return total


# -- parameters -----------------------------------------------------------------------------------
def default_neighbours(n: int) -> int:
    """SecAgg+ default degree ``2 * ceil(log2 n)``, capped at ``n - 1`` (complete graph)."""
    return min(n - 1, 2 * math.ceil(math.log2(max(n, 2))))


def default_threshold(k: int) -> int:
    """Default threshold for ``k`` share holders: ``max(floor(k/2) + 1, ceil(2k/3))``."""
    return max(k // 2 + 1, math.ceil(2 * k / 3))


def harary_graph(names: Sequence[str], k: int) -> dict[str, list[str]]:
    """A random ``k``-regular graph: the Harary graph H(k, n) over a CSPRNG permutation of ``names``.

    ``k`` odd with ``n`` odd has no ``k``-regular graph: ``k + 1`` is used (at most ``n - 1``).
    """
    n = len(names)
    if k % 2 and n % 2:
        k += 1
    perm = list(names)
    # Fisher-Yates with the OS CSPRNG: the server must not choose who neighbours whom.
    for i in range(n - 1, 0, -1):
        j = int.from_bytes(os.urandom(8), "big") % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    adj: dict[str, set[str]] = {u: set() for u in names}
    for i, u in enumerate(perm):
        for d in range(1, k // 2 + 1):
            v = perm[(i + d) % n]
            adj[u].add(v)
            adj[v].add(u)
        if k % 2:
            v = perm[(i + n // 2) % n]
            adj[u].add(v)
            adj[v].add(u)
    return {u: sorted(vs) for u, vs in adj.items()}


@dataclass
class MaskingOutcome:
    """What one masking run produced.

    Attributes
    ----------
    value : numpy.ndarray
        Decoded float64 sum over ``survivors`` (parties whose masked input arrived).
    survivors : list of str
        Parties included in the sum.
    dropped : dict
        Party -> round at which it dropped (1..4); parties dropping at 4 are still summed.
    neighbours, threshold : int
        Graph degree and Shamir threshold used.
    seconds : dict
        Wall time per round.
    """

    value: np.ndarray
    survivors: list[str]
    dropped: dict[str, int]
    neighbours: int
    threshold: int
    seconds: dict[str, float] = field(default_factory=dict)


def _check_vectors(vectors: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray], int]:
    names = list(vectors)
    out: dict[str, np.ndarray] = {}
    length: int | None = None
    for name in names:
        v = np.asarray(vectors[name])
        if v.dtype.kind not in "biuf":
            raise MaskingProtocolError(
                f"party {name!r} sent a vector of dtype {v.dtype} (expected integers or floats)", party=name)
        if v.ndim != 1:
            raise MaskingProtocolError(f"party {name!r} sent a {v.ndim}-dimensional array (expected 1-D)",
                                       party=name)
        if length is None:
            length = v.size
        elif v.size != length:
            raise MaskingProtocolError(
                f"party {name!r} sent a vector of length {v.size}, party {names[0]!r} one of length {length}",
                party=name)
        out[name] = v
    return names, out, int(length or 0)


def graph_params(n: int, neighbours: int | None, threshold: int | None) -> tuple[int, int]:
    """The neighbour count ``k`` and Shamir threshold ``t`` for ``n`` parties (defaults, or checked values).

    Raises
    ------
    MaskingParameterError
        ``neighbours`` outside ``[1, n - 1]``, or ``threshold`` above ``k`` or not above ``k / 2``.
    """
    if neighbours is None:
        k = default_neighbours(n)
    else:
        k = int(neighbours)
        if not 1 <= k <= n - 1:
            raise MaskingParameterError(f"neighbours must be in [1, n - 1] = [1, {n - 1}] for {n} parties, "
                                        f"got {neighbours}")
    if k % 2 and n % 2:
        k += 1  # no k-regular graph with k and n odd (see harary_graph)
    if threshold is None:
        return k, default_threshold(k)
    t = int(threshold)
    if t > k:
        raise MaskingParameterError(
            f"threshold {t} exceeds the {k} share holders of each party (n = {n}, neighbours = {k})")
    if t <= k // 2:
        raise MaskingParameterError(
            f"threshold {t} is below the safe minimum floor(k/2) + 1 = {k // 2 + 1} for k = {k} share holders")
    return k, t


def _resolve_params(n: int, neighbours: int | None, threshold: int | None, encoding: Encoding) -> tuple[int, int]:
    if n < 2:
        raise MaskingDropoutError(f"masking needs at least 2 parties (got {n})", round=None)
    k, t = graph_params(n, neighbours, threshold)
    if encoding.value_bits > 63 or encoding.value_bits + math.ceil(math.log2(n)) > RING_BITS:
        raise MaskingParameterError(
            f"the encoding ({encoding.value_bits} value bits) summed over {n} parties does not fit Z_2^{RING_BITS}; "
            "use a smaller max_abs or fewer frac_bits")
    return k, t


def masked_sum_vectors(
    vectors: Mapping[str, np.ndarray],
    *,
    encoding: Encoding | None = None,
    channel: Channel | None = None,
    threshold: int | None = None,
    neighbours: int | None = None,
    dropout: Mapping[str, int] | None = None,
    before_release: Callable[[], None] | None = None,
) -> MaskingOutcome:
    """Sum party vectors with the four-round masking protocol (core; see the module docstring).

    Parameters
    ----------
    vectors : mapping of str to numpy.ndarray
        Each party's 1-D float (or integer) vector, all of the same length.
    encoding : Encoding, optional
        Public fixed-point encoding (default :meth:`Encoding.default_sum`).
    channel : Channel, optional
        Records every message (default: a fresh ``Channel("masking", [])``).
    threshold : int, optional
        Shamir threshold over a party's share holders (default :func:`default_threshold`).
    neighbours : int, optional
        SecAgg+ degree (default :func:`default_neighbours`; ``n - 1`` is the complete graph).
    dropout : mapping of str to int, optional
        Party -> round (1..4) at which it stops sending (simulated dropout).
    before_release : callable, optional
        Called before the sum is released (e.g. a budget charge); if it raises nothing is released.

    Returns
    -------
    MaskingOutcome

    Raises
    ------
    MaskingParameterError, MaskingProtocolError, MaskingDropoutError, EncodingRangeError
    """
    encoding = encoding or Encoding.default_sum()
    channel = channel or Channel("masking", [])
    names, vecs, m = _check_vectors(vectors)
    n = len(names)
    k, t = _resolve_params(n, neighbours, threshold, encoding)
    drop = dict(dropout or {})
    for name, r in drop.items():
        if name not in vecs:
            raise MaskingParameterError(f"dropout names unknown party {name!r}")
        if r not in ROUNDS:
            raise MaskingParameterError(f"dropout round for {name!r} must be one of 1..4, got {r!r}")
    order = {u: i for i, u in enumerate(names)}
    # Parties encode first: a value out of range is refused before any message exists.
    encoded = {u: encoding.encode(vecs[u], party=u).astype(np.uint64) for u in names}
    graph = harary_graph(names, k) if k < n - 1 else {u: [v for v in names if v != u] for u in names}
    seconds: dict[str, float] = {}

    def alive(u: str, r: int) -> bool:
        return drop.get(u, 99) > r

    def need(survivors: list[str], r: int) -> None:
        if len(survivors) < max(t, 2):
            raise MaskingDropoutError(
                f"only {len(survivors)} parties remain at round {r} ({ROUNDS[r]}); the threshold is {t}: "
                "nothing is released", round=r)

    # Round 1: advertise keys.
    t0 = time.perf_counter()
    ckeys = {u: _generate_keys() for u in names if alive(u, 1)}
    skeys = {u: _generate_keys() for u in ckeys}
    u1 = list(ckeys)
    need(u1, 1)
    pubs: dict[str, tuple[bytes, bytes]] = {}
    seen: dict[bytes, str] = {}
    for u in u1:
        msg = channel.send(f"party:{u}", "server", "advertise-keys", _pub(ckeys[u]) + _pub(skeys[u]),
                           encrypted=False)
        cp, sp = msg[:32], msg[32:]
        for key in (cp, sp):
            if key in seen:
                raise MaskingProtocolError(
                    f"party {u!r} advertised a public key already used by party {seen[key]!r}; aborting", party=u)
            seen[key] = u
        pubs[u] = (cp, sp)
    for u in u1:
        nb = [v for v in graph[u] if v in pubs]
        payload = b"".join(v.encode() + b"\0" + pubs[v][0] + pubs[v][1] for v in nb)
        channel.send("server", f"party:{u}", "advertise-keys", payload, encrypted=False)
    seconds[ROUNDS[1]] = time.perf_counter() - t0

    # Round 2: share keys.  Share holders of u: its neighbours that advertised keys, indexed 1..k.
    t0 = time.perf_counter()
    holders = {u: [v for v in graph[u] if v in pubs] for u in u1}
    inbox: dict[str, dict[str, bytes]] = {u: {} for u in u1}  # v -> {u: ciphertext from u}
    u2: list[str] = []
    enc_key: dict[tuple[str, str], bytes] = {}

    def aead_key(a: str, b: str) -> bytes:
        pair = (a, b) if order[a] < order[b] else (b, a)
        if pair not in enc_key:
            enc_key[pair] = _kdf(ckeys[a].exchange(X25519PublicKey.from_public_bytes(pubs[b][0])), b"fedbench-share")
        return enc_key[pair]

    self_seed: dict[str, bytes] = {}
    for u in u1:
        if not alive(u, 2):
            continue
        hs = holders[u]
        if len(hs) < t:
            raise MaskingDropoutError(
                f"party {u!r} has {len(hs)} neighbours with keys, fewer than the threshold {t}: "
                "nothing is released", round=2)
        b_u = os.urandom(_SEED)
        self_seed[u] = b_u
        sh_b = shamir.share_bytes(b_u, len(hs), t)
        sh_s = shamir.share_bytes(_priv(skeys[u]), len(hs), t)
        for j, v in enumerate(hs):
            plain = (j + 1).to_bytes(4, "big") + shamir.encode_share(sh_b[j]) + shamir.encode_share(sh_s[j])
            nonce = os.urandom(12)
            ad = f"{u}->{v}".encode()
            ct = nonce + AESGCM(aead_key(u, v)).encrypt(nonce, plain, ad)
            inbox[v][u] = channel.send(f"party:{u}", "server", "share-keys", ct, encrypted=True)
        u2.append(u)
    need(u2, 2)
    set2 = set(u2)
    for v in u1:
        if alive(v, 2) and inbox[v]:
            payload = b"".join(u.encode() + b"\0" + inbox[v][u] for u in sorted(inbox[v]) if u in set2)
            channel.send("server", f"party:{v}", "share-keys", payload, encrypted=True)
    seconds[ROUNDS[2]] = time.perf_counter() - t0

    # Round 3: masked input.
    t0 = time.perf_counter()
    mask_seed: dict[tuple[str, str], bytes] = {}

    def pair_seed(a_key: X25519PrivateKey, a: str, b: str) -> bytes:
        pair = (a, b) if order[a] < order[b] else (b, a)
        if pair not in mask_seed:
            mask_seed[pair] = _kdf(a_key.exchange(X25519PublicKey.from_public_bytes(pubs[b][1])), b"fedbench-mask")
        return mask_seed[pair]

    masked: dict[str, np.ndarray] = {}
    for u in u2:
        if not alive(u, 3):
            continue
        y = encoded[u] + prg(self_seed[u], m)
        for v in graph[u]:
            if v in set2:
                p = prg(pair_seed(skeys[u], u, v), m)
                y = y + p if order[u] < order[v] else y - p
        data = channel.send(f"party:{u}", "server", "masked-input", y.tobytes(), encrypted=True)
        if len(data) != 8 * m:
            raise MaskingProtocolError(f"party {u!r} sent a masked input of {len(data)} bytes, expected {8 * m}",
                                       party=u)
        masked[u] = np.frombuffer(data, dtype=np.uint64)
    mask_seed.clear()  # the parties' pairwise seeds are not the server's
    u3 = list(masked)
    need(u3, 3)
    survivors_msg = "\n".join(u3).encode()
    for v in u3:
        channel.send("server", f"party:{v}", "masked-input", survivors_msg, encrypted=False)
    seconds[ROUNDS[3]] = time.perf_counter() - t0

    # Round 4: unmask.
    t0 = time.perf_counter()
    set3 = set(u3)
    dropped23 = set2 - set3
    shares_b: dict[str, dict[int, np.ndarray]] = {u: {} for u in u3}
    shares_s: dict[str, dict[int, np.ndarray]] = {u: {} for u in dropped23}
    u4 = [v for v in u3 if alive(v, 4)]
    need(u4, 4)
    limbs = math.ceil(_SEED / shamir.LIMB_BYTES)
    for v in u4:
        parts = []
        for u in sorted(inbox[v]):
            if u not in set2:
                continue
            ct = inbox[v][u]
            plain = AESGCM(aead_key(v, u)).decrypt(ct[:12], ct[12:], f"{u}->{v}".encode())
            # Exactly one of the two shares of u leaves v: b_u if u's input arrived, s_u^SK otherwise.
            if u in set3:
                parts.append(u.encode() + b"\0b" + plain[:4] + plain[4:4 + 8 * limbs])
            else:
                parts.append(u.encode() + b"\0s" + plain[:4] + plain[4 + 8 * limbs:])
        data = channel.send(f"party:{v}", "server", "unmask", b"".join(parts), encrypted=True)
        pos = 0
        while pos < len(data):
            end = data.index(b"\0", pos)
            u = data[pos:end].decode()
            kind, idx = data[end + 1:end + 2], int.from_bytes(data[end + 2:end + 6], "big")
            row = shamir.decode_share(data[end + 6:end + 6 + 8 * limbs])
            (shares_b if kind == b"b" else shares_s)[u][idx] = row
            pos = end + 6 + 8 * limbs
    total = np.zeros(m, dtype=np.uint64)
    for u in u3:
        total += masked[u]
    total = remove_masks(
        total, survivors=u3, self_shares=shares_b, dropped=sorted(dropped23, key=order.__getitem__),
        key_shares=shares_s, threshold=t, graph=graph,
        # v added sign(v, u) * PRG(s_uv): subtract it if v comes first.
        pair_pad=lambda s_sk, u, v: (prg(pair_seed(s_sk, u, v), m), order[v] < order[u]))
    seconds[ROUNDS[4]] = time.perf_counter() - t0
    value = encoding.decode_sum(total, len(u3))
    if before_release is not None:
        before_release()
    channel.send("server", "analyst", "aggregate", value.astype(np.float64).tobytes(), encrypted=False)
    dropped = {u: r for u, r in drop.items()}
    return MaskingOutcome(value=value, survivors=u3, dropped=dropped, neighbours=k, threshold=t, seconds=seconds)
