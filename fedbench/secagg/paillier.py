"""Secure aggregation with packed Paillier encryption: the ``"paillier"`` protocol.

Roles (honest-but-curious)
--------------------------
* **parties** compute local aggregates on their own rows, encode them in fixed
  point, pack them into plaintexts and encrypt them under the key holder's
  public key;
* the **aggregator** multiplies the ciphertexts (adding the plaintexts) and
  sees nothing but ciphertexts;
* the **key holder** decrypts only the aggregate and hands it to the
  **analyst** (with central DP noise, it adds the integer noise first, so the
  message to the analyst carries the noisy release).

Every message goes through a :class:`~fedbench.transcript.Channel` as bytes.
Validation (finite values, consistent shapes, encodable range) happens inside
each party before the first message is sent, so a failed run records nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..crypto.arithmetic import cached_encryptor
from ..crypto.packing import Encoding, PackingLayout
from ..crypto.paillier import PaillierKeys, add_ciphertext_vectors, decrypt_many
from ..errors import ConfigurationError, EncodingRangeError, NonFiniteValueError, ProtocolError
from ..wire import bytes_to_ints, dumps, ints_to_bytes
from .base import (
    AggregationOutcome,
    CostEstimate,
    GridNoiseFn,
    LocalFn,
    SecAggProtocol,
    TrustModel,
    check_enough_parties,
)
from .keyholders import AnyPaillierKeys, decrypt_aggregate
from .spec import VectorSpec

if TYPE_CHECKING:
    import polars as pl

    from ..backend import Backend
    from ..party import Party
    from ..transcript import Channel

__all__ = ["PAILLIER", "PaillierSecAgg", "PartyContribution", "parallel_min_ciphertexts", "party_contribution"]

def _add_integer_noise(encoded: np.ndarray, noise: np.ndarray, encoding: Encoding, *, party: str,
                       labels: list[str]) -> np.ndarray:
    """Add integer noise (grid units) to offset-encoded values, exactly, keeping them encodable."""
    offset = 1 << (encoding.value_bits - 1)
    signed = [int(e) - offset + int(z) for e, z in zip(encoded.tolist(), noise.tolist(), strict=True)]
    bad = [i for i, v in enumerate(signed) if not -offset < v < offset]
    if bad:
        raise EncodingRangeError(
            f"party {party!r}: {labels[bad[0]]!r} plus this party's DP noise share is beyond the encodable "
            f"range (|x| < {encoding.max_abs:g} at {encoding.frac_bits} fractional bits); pass a larger max_abs",
            party=party,
            column=labels[bad[0]],
        )
    dtype = np.uint64 if encoding.value_bits <= 63 else object
    return np.array([v + offset for v in signed], dtype=dtype)


# -- worker-side helpers (top level so that process pools can pickle them) ----
@lru_cache(maxsize=4)
def _private_key(n: int, p: int, q: int) -> Any:
    from phe import paillier

    return paillier.PaillierPrivateKey(paillier.PaillierPublicKey(n), p, q)


def _encrypt_chunk(item: tuple[int, int | None, list[int]]) -> tuple[list[int], float]:
    n, h_s, plaintexts = item
    encryptor = cached_encryptor(n, h_s).prepare()  # table built once per key and process, not per message
    t0 = time.perf_counter()
    cts = encryptor.encrypt_many(plaintexts)
    return cts, time.perf_counter() - t0


def _decrypt_chunk(item: tuple[int, int, int, list[int]]) -> list[int]:
    n, p, q, cts = item
    return decrypt_many(_private_key(n, p, q), cts)


#: Fewer ciphertexts than this per chunk and dispatching to a worker costs more than it saves.
_MIN_CHUNK = 16
#: A batch of fewer ciphertexts than this (at 2048 bits) is encrypted or decrypted in the caller: ~0.25 s
#: of one core, less than starting the shared process pool (~1 s) and about what a warm dispatch saves.
_PARALLEL_MIN_CIPHERTEXTS = 256


def parallel_min_ciphertexts(key_bits: int) -> int:
    """Smallest batch worth spreading over worker processes for a ``key_bits`` key.

    The cost of one encryption or decryption grows at least quadratically with
    the key size, so smaller (test) keys need proportionally larger batches.
    """
    return max(_MIN_CHUNK, int(_PARALLEL_MIN_CIPHERTEXTS * (2048 / max(key_bits, 1)) ** 2))


def _chunks(seq: list[int], n_chunks: int) -> list[list[int]]:
    size = max(_MIN_CHUNK, -(-len(seq) // max(1, n_chunks)))
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def _decode_split(plain: list[int], encoding: Encoding, integer_encoding: Encoding, integral: np.ndarray,
                  n_parties: int, plain_bits: int) -> np.ndarray:
    """Decode ``[float ciphertexts] + [integer ciphertexts]`` back into entry order (object vector)."""
    n_int = int(integral.sum())
    n_float = integral.size - n_int
    out = np.empty(integral.size, dtype=object)
    pos = 0
    for enc, mask, count in ((encoding, ~integral, n_float), (integer_encoding, integral, n_int)):
        if not count:
            continue
        lay = PackingLayout(enc, n_parties, plain_bits)
        k = lay.n_ciphertexts(count)
        sums = lay.unpack(plain[pos : pos + k], count)
        pos += k
        out[np.flatnonzero(mask)] = enc.decode_sum(sums, n_parties, integral=np.full(count, enc is integer_encoding))
    if pos != len(plain):
        raise ProtocolError("the aggregate has a different number of ciphertexts than the layout announces")
    if not n_int:
        return out.astype(np.float64)
    return out


@dataclass(frozen=True)
class PartyContribution:
    """What leaves a party in a secure sum: the public layout and its ciphertexts."""

    spec: VectorSpec
    ciphertexts: list[int]
    seconds: float


def party_contribution(
    name: str,
    df: pl.DataFrame,
    mapper: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]],
    local_fn: LocalFn,
    encoding: Encoding,
    n: int,
    h_s: int | None,
    n_parties: int,
    chunks: int,
    noise: GridNoiseFn | None = None,
    integer_encoding: Encoding | None = None,
) -> PartyContribution:
    """The party side of a secure sum, run where the party's rows live.

    Computes the local aggregates, checks that they are finite and encodable,
    encodes them, adds this party's integer DP noise share (``noise``, if any)
    to the encoded integers, packs and encrypts them.  Plaintext never leaves
    this function.

    With ``integer_encoding`` (no noise), the entries this party returned as
    integers (a public property of its result, announced in its layout
    message) are encoded with it and packed after the others, in their own
    ciphertexts: ``[float ciphertexts] + [integer ciphertexts]``.
    """
    local = local_fn(df)
    spec = VectorSpec.of(local, name)
    labels = spec.entry_names()
    vec = spec.flatten_exact(local)
    floats = vec if vec.dtype != object else np.array(
        [0.0 if isinstance(v, int) else v for v in vec.tolist()], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(floats))
    if bad.size:
        col = labels[int(bad[0])]
        # Which non-finite value (NaN, +inf or -inf) it is would tell the sign of an overflow: not quoted.
        raise NonFiniteValueError(
            f"party {name!r}: {col!r} holds NaN or infinity; NaN and infinity cannot be aggregated "
            "(replace them or filter them out first)",
            party=name,
            column=col,
        )
    plain_bits = n.bit_length() - 1
    if integer_encoding is not None and noise is None and any(spec.integral):
        exact = spec.entry_integral()
        packed = []
        for enc, mask in ((encoding, ~exact), (integer_encoding, exact)):
            if mask.any():
                part = vec[mask]
                names_part = [lb for lb, m in zip(labels, mask.tolist(), strict=True) if m]
                packed += PackingLayout(enc, n_parties, plain_bits).pack(enc.encode(part, party=name,
                                                                                     names=names_part))
    else:
        encoded = encoding.encode(vec, party=name, names=labels)
        if noise is not None:
            encoded = _add_integer_noise(encoded, noise(spec.names, spec.shapes, encoding.frac_bits), encoding,
                                         party=name, labels=labels)
        packed = PackingLayout(encoding, n_parties, plain_bits).pack(encoded)
        del encoded
    del local, vec
    if len(packed) < parallel_min_ciphertexts(n.bit_length()):
        chunks = 1  # one item runs in the party itself: small sums never start or wait for worker processes
    parts = mapper(_encrypt_chunk, [(n, h_s, c) for c in _chunks(packed, chunks)])
    cts = [c for part, _ in parts for c in part]
    seconds = sum(s for _, s in parts)  # CPU seconds of encryption, summed over workers
    return PartyContribution(spec, cts, seconds)


class PaillierSecAgg(SecAggProtocol):
    """Packed Paillier secure aggregation with one key holder (the ``"paillier"`` protocol).

    Parties encrypt packed fixed-point vectors under the key holder's public
    key, the aggregator multiplies the ciphertexts and the key holder decrypts
    only the aggregate (module docstring).
    """

    name: ClassVar[str] = "paillier"
    trust_model: ClassVar[TrustModel] = TrustModel(
        text=(
            "honest-but-curious parties, aggregator and key holder: the aggregator sees only ciphertexts and the "
            "key holder decrypts only the aggregate; if aggregator and key holder collude they can decrypt each "
            "party's local aggregates (never its raw rows)"
        ),
        trusted=("aggregator", "keyholder"),
        broken_by="the aggregator colluding with the key holder",
    )

    def cost_model(self, n_parties: int, n_values: int, key_bits: int, *,
                   encoding: Encoding | None = None) -> CostEstimate:
        """Ciphertexts, messages and bytes of one run in which every party first receives the public key.

        Every value is assumed encoded with ``encoding`` (exact integer entries
        with their own encoding take extra ciphertexts); the small JSON layout
        message each party sends is not counted in the bytes.

        Parameters
        ----------
        n_parties : int
            Parties contributing (at least :data:`~fedbench.secagg.MIN_PARTIES`).
        n_values : int
            Scalars in each party's local result (at least 1).
        key_bits : int
            Bit length of the Paillier modulus ``n``.
        encoding : Encoding, optional
            Fixed-point encoding (default: :meth:`Encoding.default_sum`).

        Returns
        -------
        CostEstimate

        Raises
        ------
        TooFewPartiesError
            Fewer than two parties.
        ConfigurationError
            A slot does not fit the plaintext.
        """
        check_enough_parties(n_parties)
        enc = encoding if encoding is not None else Encoding.default_sum()
        n_ct = PackingLayout(enc, n_parties, key_bits - 1).n_ciphertexts(max(1, n_values))
        ct_width = (2 * key_bits + 7) // 8
        public_key = (key_bits + 7) // 8 + ct_width  # n and the DJN value h_s
        upload = n_ct * ct_width
        total = n_parties * (public_key + upload) + upload + 8 * n_values
        return CostEstimate(
            ciphertexts_per_party=n_ct,
            messages=3 * n_parties + 2,  # public key, layout, ciphertexts per party; encrypted sum; release
            bytes_per_party=upload,
            total_bytes=total,
            operations={"encrypt": n_parties * n_ct, "add": (n_parties - 1) * n_ct, "decrypt": n_ct},
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
    ) -> AggregationOutcome:
        """Securely sum ``local_fn`` over ``parties`` with packed Paillier.

        The arguments are documented once, at :func:`fedbench.secagg.secure_aggregate`.

        Returns
        -------
        AggregationOutcome

        Raises
        ------
        TooFewPartiesError, ProtocolError, NonFiniteValueError, EncodingRangeError, SlotOverflowError
        """
        if keys is None:
            raise ConfigurationError("the Paillier protocol needs the federation's keys (got keys=None)")
        check_enough_parties(parties)
        names = [p.name for p in parties]
        n = keys.n
        h_s = keys.h_s if fast_encryption else None
        layout = PackingLayout(encoding, len(parties), n.bit_length() - 1)
        ct_width = (2 * n.bit_length() + 7) // 8

        # 1. Inside each party: local aggregates, validated, encoded, packed and encrypted.  Messages are
        #    recorded only once every party has succeeded, so a failed run leaves no trace.
        # Large vectors are encrypted on every core (the backend's heavy workers); small ones in the party.
        chunks = 2 * backend.heavy_workers if backend.heavy_workers > 1 else 1
        if party_noise is not None or central_noise is not None:
            integer_encoding = None  # DP noise lives on encoding's grid: one encoding for every entry
        extra: tuple[Any, ...] = (party_noise,) if party_noise is not None else ()
        if integer_encoding is not None:
            extra = (None, integer_encoding)
        contributions = backend.run_in_parties(
            parties, party_contribution, local_fn, encoding, n, h_s, len(parties), chunks, *extra
        )
        if integer_encoding is not None and (
                len({c.spec for c in contributions}) == 1
                and len({tuple(c.spec.entry_integral().tolist()) for c in contributions}) > 1):
            # Parties disagree on which entries are integers: their ciphertexts would not line up.
            integer_encoding = None
            contributions = backend.run_in_parties(
                parties, party_contribution, local_fn, encoding, n, h_s, len(parties), chunks
            )
        spec = contributions[0].spec
        for name, c in zip(names, contributions, strict=True):
            if c.spec != spec:
                # Neither party's names nor shapes are quoted: a local function can make them depend on its data.
                raise ProtocolError(
                    f"party {name!r} returned entries that differ from party {names[0]!r}'s in names or shapes; "
                    "every party must return the same names and shapes"
                )
        if before_release is not None:
            before_release()

        # 2. Key holder -> parties that lack it: the public key (and the DJN value h_s).  In a deployment
        #    this precedes step 1; it is recorded here so that refused runs record nothing.
        key_bytes = (n.bit_length() + 7) // 8
        pk_payload = n.to_bytes(key_bytes, "big") + (h_s.to_bytes(ct_width, "big") if h_s else b"")
        # A threshold key has no key holder: its dealer, or (dealerless) the aggregator, passes the public key on.
        pk_sender = ("keyholder" if isinstance(keys, PaillierKeys)
                     else "dealer" if keys.setup == "dealer" else "aggregator")
        for name in names if key_recipients is None else key_recipients:
            channel.send(pk_sender, name, "public-key", pk_payload, encrypted=False)
        # Parties announce the (public) vector layout so the aggregator can check it.
        layout_base: dict[str, Any] = {"names": list(spec.names), "shapes": [list(s) for s in spec.shapes],
                                       "frac_bits": encoding.frac_bits, "value_bits": encoding.value_bits}
        # An entry is summed exactly as an integer only if every party announced it as one (public dtype).
        integral = np.logical_and.reduce([c.spec.entry_integral() for c in contributions])
        if party_noise is not None or central_noise is not None:
            integral = np.zeros_like(integral)  # DP noise is on the 2**-frac_bits grid: decode as floats
        split = integer_encoding is not None and bool(integral.any())
        if integer_encoding is not None and split:
            layout_base["integer_encoding"] = {"frac_bits": integer_encoding.frac_bits,
                                               "value_bits": integer_encoding.value_bits}

        # 3. Parties -> aggregator.
        received: list[list[int]] = []
        for name, c in zip(names, contributions, strict=True):
            layout_msg = layout_base | ({"integral": list(c.spec.integral)} if any(c.spec.integral) else {})
            channel.send(name, "aggregator", "layout", dumps(layout_msg), encrypted=False)
            data = channel.send(name, "aggregator", "ciphertexts", ints_to_bytes(c.ciphertexts, ct_width),
                                encrypted=True, seconds=c.seconds)
            received.append(bytes_to_ints(data, ct_width))
        enc_seconds = sum(c.seconds for c in contributions)
        del contributions

        # 4. Aggregator adds ciphertexts and forwards the encrypted sum.
        t0 = time.perf_counter()
        if len({len(r) for r in received}) != 1:
            raise ProtocolError("parties sent different numbers of ciphertexts")
        total = add_ciphertext_vectors(n, received)
        agg_seconds = time.perf_counter() - t0

        # 5. Decryption of the aggregate only: by the key holder, or by t share-holding parties (threshold keys).
        def keyholder_decrypt(agg_cts: list[int]) -> list[int]:
            # The key holder's own worker processes decrypt large aggregates on every core.
            assert isinstance(keys, PaillierKeys)
            sk = keys.private_key
            dec_chunks = backend.heavy_workers if len(agg_cts) >= parallel_min_ciphertexts(n.bit_length()) else 1
            dec_items = [(n, int(sk.p), int(sk.q), c) for c in _chunks(agg_cts, dec_chunks)]
            return [m for part in backend.map_heavy(_decrypt_chunk, dec_items) for m in part]

        t0 = time.perf_counter()
        decrypted = decrypt_aggregate(keys, total, channel=channel, backend=backend, ct_width=ct_width, prefer=names,
                                      aggregate_seconds=agg_seconds, single_key=keyholder_decrypt,
                                      parallel_min=parallel_min_ciphertexts(n.bit_length()))
        plain = decrypted.plaintexts
        if integer_encoding is not None and split:
            vec = _decode_split(plain, encoding, integer_encoding, integral, len(parties), n.bit_length() - 1)
        else:
            slot_sums = layout.unpack(plain, spec.size)
            if central_noise is not None:
                # The key holder adds integer noise to the exact integer aggregate; decoding then divides once.
                z = central_noise(spec.names, spec.shapes, encoding.frac_bits)
                slot_sums = np.array([int(t) + int(e) for t, e in zip(slot_sums.tolist(), z.tolist(), strict=True)],
                                     dtype=object)
            vec = encoding.decode_sum(slot_sums, len(parties), integral=integral)
        dec_seconds = time.perf_counter() - t0
        # Exact integer sums travel as canonical JSON (float64 would round them beyond 2**53).
        released = vec.astype("<f8").tobytes() if vec.dtype != object else dumps(vec.tolist())
        channel.send(decrypted.releaser, "analyst", "aggregate", released, encrypted=False, seconds=dec_seconds)

        return AggregationOutcome(
            value=spec.unflatten(vec),
            spec=spec,
            layout=layout,
            ciphertexts_per_party=len(total),
            seconds={"encrypt": enc_seconds, "aggregate": agg_seconds, "decrypt": dec_seconds},
            fast_encryption=h_s is not None,
        )


#: The registered instance (``protocol="paillier"``).
PAILLIER = PaillierSecAgg()
