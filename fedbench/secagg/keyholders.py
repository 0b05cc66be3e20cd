"""Who decrypts an aggregate: one key holder, or any ``t`` parties holding shares of the key.

:func:`decrypt_aggregate` is what the Paillier protocol calls once the
aggregator holds the encrypted sum.  With :class:`~fedbench.crypto.paillier.PaillierKeys`
the aggregator forwards the sum to the **key holder**, which decrypts it; with
:class:`~fedbench.crypto.threshold.ThresholdPaillierKeys` there is no key
holder: the aggregator sends the sum to ``t`` share-holding parties, each
returns its partial decryptions with a zero-knowledge proof (message
``<party> -> aggregator``, kind ``partial-decryption``), and the aggregator
verifies every proof before combining.  A party whose proof fails is named
and nothing is decrypted; fewer than ``t`` available share holders are refused
before any party decrypts anything; a party that refuses or cannot be reached
while decrypting (:class:`~fedbench.errors.PartyUnavailableError`) is replaced
by another available share holder, and the run fails with
:class:`~fedbench.errors.TooFewKeySharesError` if fewer than ``t`` answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..crypto.paillier import PaillierKeys
from ..crypto.threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdPaillierKeys,
    ThresholdPublicParams,
    combine,
    partial_decrypt,
    verify_partial,
)
from ..errors import InvalidPartialDecryptionError, PartyUnavailableError, ProtocolError, TooFewKeySharesError
from ..wire import bytes_to_ints, ints_to_bytes

if TYPE_CHECKING:
    from ..backend import Backend
    from ..transcript import Channel

__all__ = [
    "AnyPaillierKeys",
    "DecryptedAggregate",
    "check_decryptors",
    "decrypt_aggregate",
    "record_key_setup",
    "threshold_trust_text",
]

A = TypeVar("A")
R = TypeVar("R")

#: The keys a Paillier run may use: one key holder's pair, or a threshold-shared key.
AnyPaillierKeys = PaillierKeys | ThresholdPaillierKeys


@dataclass(frozen=True)
class DecryptedAggregate:
    """Plaintexts of the aggregate and the role that now holds them (it sends the release to the analyst)."""

    plaintexts: list[int]
    releaser: str
    seconds: float


def threshold_trust_text(keys: ThresholdPaillierKeys) -> str:
    """The threat-model sentence of a run decrypted by ``t`` of ``N`` share holders."""
    t, n = keys.threshold, keys.params.n_shares
    if keys.setup == "dealer":
        dealer = ("a dealer generated the key and saw it (it could decrypt everything alone, so it must be trusted "
                  "and must have forgotten the key); ")
    else:
        dealer = ("the parties generated the key among themselves with no dealer (TNO's distributed key "
                  "generation, secure against honest-but-curious parties); ")
    return (
        f"honest-but-curious parties and aggregator, threshold decryption by {t} of {n} parties: {dealer}"
        f"the aggregator sees only ciphertexts and partial decryptions of the aggregate, and only it learns the "
        f"aggregate before release; any {t} parties colluding with the aggregator can decrypt each party's local "
        f"aggregates (never its raw rows); fewer than {t} parties learn nothing from their key shares; the "
        f"proofs tie each partial decryption to the ciphertexts it was asked for, not those to the sum, so an "
        f"aggregator that deviated (asked for a party's ciphertext instead of the sum) could decrypt it"
    )


def check_decryptors(keys: ThresholdPaillierKeys, prefer: Sequence[str] = ()) -> list[str]:
    """The ``t`` share holders that will decrypt: available ones, ``prefer`` first, then in share order.

    Raises
    ------
    TooFewKeySharesError
        Fewer than ``t`` share holders are available (nothing is decrypted).
    """
    holders = keys.holders
    available = _available(keys, prefer)
    if len(available) < keys.threshold:
        missing = [h for h in holders if h not in available]
        raise TooFewKeySharesError(
            f"threshold decryption needs {keys.threshold} of the {len(holders)} key-share holders, but only "
            f"{len(available)} are available ({', '.join(available) or 'none'}; missing: {', '.join(missing)}); "
            "nothing was decrypted",
            threshold=keys.threshold, missing=missing)
    return available[: keys.threshold]


def _available(keys: ThresholdPaillierKeys, prefer: Sequence[str]) -> list[str]:
    """Available share holders, those in ``prefer`` first, then in share order."""
    holders = keys.holders
    first = set(prefer)
    available = [h for h in holders if keys.available is None or h in keys.available]
    return sorted(available, key=lambda h: (h not in first, holders.index(h)))


def record_key_setup(keys: ThresholdPaillierKeys, channel: Channel) -> None:
    """Record the key set-up's messages in ``channel``.

    Dealer: to each party, its share sealed for that party alone (X25519 key
    agreement with the party's fresh public key, HKDF-SHA256, AES-GCM; the
    party opens it and checks it), then the public key and verification keys.
    Dealerless: TNO's own protocol messages are not recorded; each party
    publishes its verification key to the aggregator.
    """
    import os

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from ..wire import dumps

    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if keys.setup != "dealer":
        for i, name in enumerate(keys.holders):
            vk = keys.params.verification_keys[keys.shares[name].index - 1]
            channel.send(name, "aggregator", "key-setup", dumps({"n": keys.n, "verification_key": vk}),
                         encrypted=False, seconds=keys.seconds if i == 0 else 0.0)
        return
    public = dumps({"n": keys.n, "h_s": keys.h_s, "threshold": keys.threshold, "v": keys.params.v,
                    "verification_keys": list(keys.params.verification_keys)})
    width = (2 * keys.key_bits + 7) // 8
    for name in keys.holders:
        party_sk = X25519PrivateKey.generate()
        party_pk = channel.send(name, "dealer", "share-public-key", party_sk.public_key().public_bytes(*raw),
                                encrypted=False)
        eph = X25519PrivateKey.generate()
        eph_pk = eph.public_key().public_bytes(*raw)
        info = f"fedbench threshold key share for {name}".encode()

        def kdf(secret: bytes, info: bytes = info) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

        key = kdf(eph.exchange(X25519PublicKey.from_public_bytes(party_pk)))
        nonce = os.urandom(12)
        share_bytes = keys.shares[name].value.to_bytes(width, "big")
        sealed = eph_pk + nonce + AESGCM(key).encrypt(nonce, share_bytes, info)
        got = channel.send("dealer", name, "key-share", sealed, encrypted=True,
                           seconds=keys.seconds / len(keys.holders))
        # The party opens its share (and would refuse a share that does not match its verification key).
        opened = AESGCM(kdf(party_sk.exchange(X25519PublicKey.from_public_bytes(got[:32])))).decrypt(
            got[32:44], got[44:], info)
        if opened != share_bytes:
            raise ProtocolError(f"party {name!r} could not open its key share")
        channel.send("dealer", name, "threshold-public-key", public, encrypted=False)


def _map_here(fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
    return [fn(x) for x in items]


def _partial(item: tuple[ThresholdPublicParams, KeyShare, list[int]]) -> tuple[PartialDecryption, float]:
    params, share, cts = item
    t0 = time.perf_counter()
    return partial_decrypt(params, share, cts), time.perf_counter() - t0


def _verify(item: tuple[ThresholdPublicParams, list[int], PartialDecryption]) -> bool:
    return verify_partial(*item)


def _pd_bytes(pd: PartialDecryption, ct_width: int) -> bytes:
    # values, then the challenge and response, fixed width each so the aggregator can parse them.
    z_width = (pd.response.bit_length() + 7) // 8 or 1
    head = len(pd.values).to_bytes(4, "big") + z_width.to_bytes(4, "big")
    return (head + ints_to_bytes(list(pd.values), ct_width) + pd.challenge.to_bytes(32, "big")
            + pd.response.to_bytes(z_width, "big"))


def _pd_from_bytes(data: bytes, party: str, index: int, ct_width: int) -> PartialDecryption:
    k, z_width = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
    end = 8 + k * ct_width
    values = tuple(bytes_to_ints(data[8:end], ct_width))
    e = int.from_bytes(data[end:end + 32], "big")
    z = int.from_bytes(data[end + 32:end + 32 + z_width], "big")
    return PartialDecryption(party=party, index=index, values=values, challenge=e, response=z)


def _partial_or_refusal(item: tuple[ThresholdPublicParams, KeyShare, list[int]]
                        ) -> tuple[PartialDecryption, float] | None:
    try:
        return _partial(item)
    except PartyUnavailableError:  # the party refused or could not be reached: the aggregator asks another
        return None


def _threshold_decrypt(keys: ThresholdPaillierKeys, total: list[int], *, channel: Channel, backend: Backend,
                       ct_width: int, prefer: Sequence[str], aggregate_seconds: float,
                       parallel_min: int | None) -> DecryptedAggregate:
    t0 = time.perf_counter()
    t = keys.threshold
    check_decryptors(keys, prefer)  # fewer than t available: refused before any party decrypts anything
    order = _available(keys, prefer)
    payload = ints_to_bytes(total, ct_width)
    # A partial decryption costs about 7 CRT decryptions, a proof or its check about 20: large jobs on every core.
    work = t * (7 * len(total) + 20)
    mapper = backend.map_heavy if parallel_min is None or work >= parallel_min else _map_here
    partials: list[PartialDecryption] = []
    asked: list[str] = []
    refused: list[str] = []
    while len(partials) < t:
        batch = [nm for nm in order if nm not in asked][: t - len(partials)]
        if not batch:
            raise TooFewKeySharesError(
                f"threshold decryption needs {t} partial decryptions but only {len(partials)} share holders "
                f"answered ({', '.join(refused)} refused or could not be reached); nothing was decrypted",
                threshold=t, missing=refused + [h for h in keys.holders if h not in order])
        for name in batch:  # the aggregator's adding time is counted once
            channel.send("aggregator", name, "aggregate-ciphertexts", payload, encrypted=True,
                         seconds=0.0 if asked else aggregate_seconds)
            asked.append(name)
        # Each asked party computes its partial decryptions with its own share.
        outs = mapper(_partial_or_refusal, [(keys.params, keys.shares[name], list(total)) for name in batch])
        for name, out in zip(batch, outs, strict=True):
            if out is None:
                refused.append(name)
                continue
            pd, secs = out
            data = channel.send(name, "aggregator", "partial-decryption", _pd_bytes(pd, ct_width), encrypted=True,
                                seconds=secs)
            partials.append(_pd_from_bytes(data, name, keys.shares[name].index, ct_width))
    # The aggregator checks every proof before combining: a wrong partial decryption is named, never used.
    ok = mapper(_verify, [(keys.params, list(total), pd) for pd in partials])
    bad = [pd.party for pd, good in zip(partials, ok, strict=True) if not good]
    if bad:
        raise InvalidPartialDecryptionError(
            f"the partial decryption sent by party {bad[0]!r} failed its zero-knowledge proof"
            + (f" (also: {', '.join(repr(b) for b in bad[1:])})" if bad[1:] else "")
            + "; nothing was decrypted. Run again without that party, or investigate it",
            party=bad[0], parties=bad)
    plain = combine(keys.params, partials)
    return DecryptedAggregate(plain, "aggregator", time.perf_counter() - t0)


def decrypt_aggregate(keys: AnyPaillierKeys, total: list[int], *, channel: Channel, backend: Backend,
                      ct_width: int, prefer: Sequence[str] = (), aggregate_seconds: float = 0.0,
                      single_key: Callable[[list[int]], list[int]] | None = None,
                      parallel_min: int | None = None) -> DecryptedAggregate:
    """Decrypt the aggregate ``total`` held by the aggregator (messages recorded in ``channel``).

    Parameters
    ----------
    keys : PaillierKeys or ThresholdPaillierKeys
        One key holder's pair, or a threshold-shared key.
    total : list of int
        The aggregate ciphertexts.
    channel : Channel
        Records every message.
    backend : Backend
        Runs the heavy modular exponentiations.
    ct_width : int
        Bytes per ciphertext on the wire.
    prefer : sequence of str
        With a threshold key, share holders to ask first (the parties of the run).
    aggregate_seconds : float
        The aggregator's time adding the ciphertexts (recorded on its message to the key holder).
    single_key : callable, optional
        With a single key pair (required then): ``single_key(ciphertexts) -> plaintexts``, the key
        holder's decryption.
    parallel_min : int, optional
        With a threshold key: the work (in CRT-decryption units) below which the
        partial decryptions and proof checks run in the caller rather than on the
        backend's workers (``None``: always on the workers).

    Returns
    -------
    DecryptedAggregate

    Raises
    ------
    TooFewKeySharesError
        Fewer than ``t`` share holders available.
    InvalidPartialDecryptionError
        A partial decryption failed its proof (names the sender).
    """
    if isinstance(keys, ThresholdPaillierKeys):
        return _threshold_decrypt(keys, total, channel=channel, backend=backend, ct_width=ct_width, prefer=prefer,
                                  aggregate_seconds=aggregate_seconds, parallel_min=parallel_min)
    if single_key is None:
        raise TypeError("a single key pair needs the key holder's decryption function (single_key)")
    data = channel.send("aggregator", "keyholder", "aggregate-ciphertexts", ints_to_bytes(total, ct_width),
                        encrypted=True, seconds=aggregate_seconds)
    t0 = time.perf_counter()
    plain = single_key(bytes_to_ints(data, ct_width))
    return DecryptedAggregate(plain, "keyholder", time.perf_counter() - t0)
