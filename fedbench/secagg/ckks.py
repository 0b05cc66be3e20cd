"""Secure aggregation with the CKKS lattice scheme (TenSEAL / Microsoft SEAL): the ``"ckks"`` protocol.

Roles (honest-but-curious), as in the ``"paillier"`` protocol
-------------------------------------------------------------
* the **key holder** makes a fresh CKKS key pair for every run and sends the
  public context (parameters and public key, no secret key) to the parties
  and the aggregator;
* **parties** compute local aggregates on their own rows, check them against
  the public range, pack them into the CKKS slots (``poly_modulus_degree / 2``
  values per ciphertext) and encrypt them under the public key;
* the **aggregator** adds the ciphertexts and sees nothing but ciphertexts;
* the **key holder** decrypts only the aggregate, adds noise-flooding noise
  and hands the real parts to the **analyst**.

Which library, and why a single key holder
------------------------------------------
Measured on this project's machines (Python 3.11, x86_64, December 2026):
OpenFHE's Python wrapper (``openfhe`` on PyPI, the library with threshold
multiparty CKKS) installs, but the one wheel pip picks here
(1.6.1.0.22.4) carries an extension for CPython 3.10 only, so
``import openfhe`` fails in fedbench's Python 3.11.  The ``"ckks-multiparty"``
protocol (:mod:`fedbench.secagg.ckks_multiparty`) therefore runs OpenFHE in
separate CPython 3.10 processes, one per party, and has no key holder.  This
protocol keeps everything in-process with TenSEAL 0.3.18 (Microsoft SEAL),
which ships a CPython 3.11 wheel and sums 10 parties x 100,000 floats end to
end in about 2 to 3 s on a shared two-core machine
(``benchmarks/bench_ckks.py``; about 6 ms of CPU per ciphertext of 4096
values), but has no threshold or multiparty decryption: it uses one key
holder, so it removes none of the Paillier protocol's trust in the key holder;
it offers a lattice-based scheme, packing of thousands of floats per
ciphertext, and an error bound about 200 times tighter than the multiparty
protocol's.

Parameters (>= 128-bit security)
--------------------------------
Security follows the Homomorphic Encryption Standard (Albrecht et al., 2018,
Table 1, uniform ternary secret, classical 128-bit): the total coefficient
modulus may have at most 27, 54, 109, 218, 438 or 881 bits for ring
dimensions 1024 ... 32768 (:data:`HE_STANDARD_128`).  :class:`CKKSParams`
refuses anything larger with :class:`~fedbench.errors.InsecureParameterError`.
By default the parameters are chosen per run from the public range
(``max_abs``), resolution (``frac_bits``) and number of parties: 60-bit
primes, the smallest ring dimension that holds them within the table
(e.g. ring dimension 8192 with a 180-bit modulus for ten parties under
``secure_sum``'s default range), and a scale that puts the error bound below
half the resolution.

Approximation error
-------------------
CKKS sums are approximate.  :meth:`CKKSParams.error_bound` derives a per-entry
bound from the parameters (SEAL samples the secret and the encryption
randomness from {-1, 0, 1} and errors with standard deviation 3.2):

* encryption noise: each party's fresh ciphertext decrypts with an error
  polynomial whose coefficients have variance at most
  ``(4/3) N sigma**2 + sigma**2 + 1/12``; a slot is a sum of ``N`` such
  coefficients, so after adding ``n`` ciphertexts one slot's error has standard
  deviation at most ``sqrt(n N ((4/3) N sigma**2 + sigma**2 + 1/12)) / scale``;
  the bound ``t`` is 10 of these standard deviations (an over-estimate: SEAL's
  division by the special prime shrinks this noise, measured about 22 times
  below the model's standard deviation; tests check that the model bounds it);
* noise flooding: Gaussian noise of standard deviation ``2**30 * t``, bounded
  by 8 standard deviations (see below);
* double-precision rounding of encoding and decoding: measured below
  ``2**-52`` times the largest magnitude in a ciphertext; the bound allows
  ``2 * n * max_abs * 2**-45``, where ``max_abs`` is the public range.

The reported bound holds for every entry except with probability about
``1e-15`` per entry (the Gaussian tails beyond 8 and 10 standard deviations);
tests check it against plaintext sums.

Decryption results and the secret key (IND-CPA-D)
-------------------------------------------------
Li and Micciancio (EUROCRYPT 2021) showed that a precise CKKS decryption leaks
the secret key: whoever holds a ciphertext and its decrypted result (here the
aggregator together with the analyst) can solve for the key and then decrypt
every party's ciphertext.  The key holder therefore (1) uses a fresh key pair
for every run, so that each secret key decrypts exactly one aggregate, (2)
releases only the real parts of the slots, and (3) floods them with Gaussian
noise (drawn from ``os.urandom``) whose standard deviation is ``2**30`` times
the bound ``t`` on the decryption error, the countermeasure Li and Micciancio
propose (OpenFHE's ``NOISE_FLOODING_DECRYPT`` is the same idea with its own
sizing).  fedbench does not prove IND-CPA-D security for these parameters.

Not supported: differentially private releases (their guarantees assume an
exact sum; use ``"paillier"``), and entries returned as integers get no wider
range than the others (they are rounded to integers when the bound is below
0.5).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..crypto.packing import Encoding
from ..errors import (
    ConfigurationError,
    EncodingRangeError,
    FeatureUnavailableError,
    NonFiniteValueError,
    ProtocolError,
)
from ..wire import dumps
from .base import (
    AggregationOutcome,
    CostEstimate,
    GridNoiseFn,
    LocalFn,
    SecAggProtocol,
    TrustModel,
    check_enough_parties,
)
from .ckks_params import FLOOD_BITS, HE_STANDARD_128, CKKSErrorBound, CKKSParams
from .spec import VectorSpec

if TYPE_CHECKING:
    import polars as pl

    from ..backend import Backend
    from ..party import Party
    from ..transcript import Channel
    from .keyholders import AnyPaillierKeys

__all__ = [
    "CKKS",
    "FLOOD_BITS",
    "HE_STANDARD_128",
    "CKKSContribution",
    "CKKSErrorBound",
    "CKKSLayout",
    "CKKSParams",
    "CKKSSecAgg",
    "ckks_contribution",
    "validated_vector",
]

#: A party encrypting at least this many ciphertexts spreads them over the backend's heavy workers.
_PARALLEL_MIN_BLOCKS = 64


def _tenseal() -> Any:
    """Import TenSEAL or explain how to get it."""
    try:
        import tenseal
    except ImportError:
        raise FeatureUnavailableError(
            "the secure-aggregation protocol 'ckks' needs TenSEAL, which is not installed: "
            "pip install 'fedbench[ckks]' (or pip install tenseal), or use secagg='paillier'"
        ) from None
    return tenseal


@dataclass(frozen=True)
class CKKSLayout:
    """How many values one CKKS ciphertext carries (its slots)."""

    slots_per_ciphertext: int

    def n_ciphertexts(self, n_values: int) -> int:
        """Ciphertexts needed for ``n_values`` values (at least one)."""
        return max(1, -(-n_values // self.slots_per_ciphertext))


# -- worker-side helpers (top level so that process pools can pickle them) ----
@lru_cache(maxsize=2)
def _public_context(data: bytes) -> Any:
    return _tenseal().context_from(data, n_threads=1)


def _encrypt_blocks(item: tuple[bytes, int, list[np.ndarray]]) -> tuple[list[bytes], float]:
    ctx_bytes, scale_bits, blocks = item
    ts = _tenseal()
    ctx = _public_context(ctx_bytes)
    t0 = time.process_time()  # CPU seconds: on a shared machine wall time would count other jobs
    scale = math.ldexp(1.0, scale_bits)
    out = [ts.ckks_vector(ctx, block.tolist(), scale).serialize() for block in blocks]
    return out, time.process_time() - t0


@dataclass(frozen=True)
class CKKSContribution:
    """What leaves a party in a CKKS sum: the public layout and its serialized ciphertexts."""

    spec: VectorSpec
    ciphertexts: list[bytes]
    seconds: float


def validated_vector(name: str, df: pl.DataFrame, local_fn: LocalFn,
                     max_abs: float) -> tuple[VectorSpec, np.ndarray]:
    """Run ``local_fn`` inside a party and check its result for a CKKS sum (shared by both CKKS protocols).

    Returns the public layout and the flattened float vector.

    Raises
    ------
    NonFiniteValueError, EncodingRangeError
        Naming the party and the entry, never the value.
    """
    local = local_fn(df)
    spec = VectorSpec.of(local, name)
    labels = spec.entry_names()
    vec = spec.flatten(local)
    del local
    bad = np.flatnonzero(~np.isfinite(vec))
    if bad.size:
        col = labels[int(bad[0])]
        raise NonFiniteValueError(
            f"party {name!r}: {col!r} holds NaN or infinity; NaN and infinity cannot be aggregated "
            "(replace them or filter them out first)",
            party=name,
            column=col,
        )
    over = np.flatnonzero(~(np.abs(vec) < max_abs))
    if over.size:
        col = labels[int(over[0])]
        # Neither the value nor by how much it overshoots is quoted: the analyst chooses max_abs.
        raise EncodingRangeError(
            f"party {name!r}: {col!r} is beyond the range the CKKS parameters were chosen for (|x| < {max_abs:g}); "
            "pass a larger public max_abs (e.g. secure_sum(..., max_abs=...))",
            party=name,
            column=col,
        )
    return spec, vec


def ckks_contribution(
    name: str,
    df: pl.DataFrame,
    mapper: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]],
    local_fn: LocalFn,
    public_context: bytes,
    slots: int,
    scale_bits: int,
    max_abs: float,
    chunks: int,
) -> CKKSContribution:
    """The party side of a CKKS sum, run where the party's rows live.

    Computes the local aggregates, checks that they are finite and below the
    public ``max_abs``, cuts them into blocks of ``slots`` values and encrypts
    each block under the key holder's public context.  Plaintext never leaves
    this function.
    """
    spec, vec = validated_vector(name, df, local_fn, max_abs)
    blocks = [vec[i : i + slots] for i in range(0, vec.size, slots)]
    if len(blocks) < _PARALLEL_MIN_BLOCKS or chunks <= 1:
        groups = [blocks]
    else:
        size = -(-len(blocks) // chunks)
        groups = [blocks[i : i + size] for i in range(0, len(blocks), size)]
    parts = mapper(_encrypt_blocks, [(public_context, scale_bits, g) for g in groups])
    return CKKSContribution(spec, [c for cts, _ in parts for c in cts], sum(s for _, s in parts))


def _frame(items: Sequence[bytes]) -> bytes:
    """Length-prefixed concatenation of serialized ciphertexts (one message)."""
    return b"".join(len(b).to_bytes(4, "big") + b for b in items)


def _unframe(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        k = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 4 + k])
        pos += 4 + k
    if pos != len(data):
        raise ProtocolError("a ciphertext message is truncated")
    return out


def _gaussian(size: int) -> np.ndarray:
    """Standard normal draws from the OS CSPRNG (Box-Muller on 53-bit uniforms)."""
    raw = np.frombuffer(os.urandom(16 * size), dtype=np.uint64).reshape(2, size) >> np.uint64(11)
    u1 = (raw[0].astype(np.float64) + 0.5) * 2.0**-53
    u2 = raw[1].astype(np.float64) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _ckks_aggregate(
    params: CKKSParams | None,
    parties: Sequence[Party],
    local_fn: LocalFn,
    *,
    backend: Backend,
    channel: Channel,
    encoding: Encoding,
    party_noise: GridNoiseFn | None,
    central_noise: GridNoiseFn | None,
    before_release: Callable[[], None] | None,
) -> AggregationOutcome:
    if party_noise is not None or central_noise is not None:
        raise ConfigurationError(
            "differentially private releases need an exact secure sum and the 'ckks' protocol is approximate; "
            "use secagg='paillier' for DP releases"
        )
    check_enough_parties(len(parties))
    ts = _tenseal()
    names = [p.name for p in parties]
    n_parties = len(parties)
    max_abs = encoding.max_abs
    if params is None:
        params = CKKSParams.for_range(n_parties, max_abs, encoding.frac_bits)
    params.check_range(n_parties, max_abs)
    bound = params.error_bound(n_parties, max_abs)

    # 0. Key holder: a fresh key pair for this run (each secret key decrypts one aggregate only).
    t0 = time.perf_counter()
    secret_ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=params.poly_modulus_degree,
                            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes), n_threads=1)
    public = secret_ctx.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                  save_relin_keys=False)
    key_seconds = time.perf_counter() - t0

    # 1. Inside each party: local aggregates, validated and encrypted.  Messages are recorded only once
    #    every party has succeeded, so a failed run leaves no trace.
    chunks = 2 * backend.heavy_workers if backend.heavy_workers > 1 else 1
    contributions = backend.run_in_parties(parties, ckks_contribution, local_fn, public, params.slots,
                                           params.scale_bits, max_abs, chunks)
    spec = contributions[0].spec
    for name, c in zip(names, contributions, strict=True):
        if c.spec != spec:
            # Neither party's names nor shapes are quoted: a local function can make them depend on its data.
            raise ProtocolError(
                f"party {name!r} returned entries that differ from party {names[0]!r}'s in names or shapes; "
                "every party must return the same names and shapes"
            )
    # An entry is rounded to an integer only if every party returned it as one (public dtype).
    integral = np.logical_and.reduce([c.spec.entry_integral() for c in contributions])
    if before_release is not None:
        before_release()

    # 2. Key holder -> parties and aggregator: the public context (parameters and public key, no secret key).
    #    In a deployment this precedes step 1; it is recorded here so that refused runs record nothing.
    for receiver in [*names, "aggregator"]:
        channel.send("keyholder", receiver, "public-key", public, encrypted=False, seconds=key_seconds)
    layout = {"names": list(spec.names), "shapes": [list(s) for s in spec.shapes], "scheme": "ckks",
              "poly_modulus_degree": params.poly_modulus_degree,
              "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes), "scale_bits": params.scale_bits}

    # 3. Parties -> aggregator.
    received: list[list[bytes]] = []
    for name, c in zip(names, contributions, strict=True):
        channel.send(name, "aggregator", "layout", dumps(layout), encrypted=False)
        data = channel.send(name, "aggregator", "ciphertexts", _frame(c.ciphertexts), encrypted=True,
                            seconds=c.seconds)
        received.append(_unframe(data))
    enc_seconds = sum(c.seconds for c in contributions)
    del contributions

    # 4. Aggregator adds the ciphertexts (with the public context only) and forwards the encrypted sum.
    t0 = time.perf_counter()
    if len({len(r) for r in received}) != 1:
        raise ProtocolError("parties sent different numbers of ciphertexts")
    agg_ctx = ts.context_from(public, n_threads=1)
    total: list[Any] = []
    for name, cts in zip(names, received, strict=True):
        try:
            vectors = [ts.ckks_vector_from(agg_ctx, b) for b in cts]
            if not total:
                total = vectors
            else:
                for acc, v in zip(total, vectors, strict=True):
                    acc.add_(v)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ProtocolError(
                f"party {name!r} sent ciphertexts that do not match the public parameters or the other "
                f"parties' layout ({type(exc).__name__})"
            ) from None
    agg_bytes = [v.serialize() for v in total]
    agg_seconds = time.perf_counter() - t0
    data = channel.send("aggregator", "keyholder", "aggregate-ciphertexts", _frame(agg_bytes), encrypted=True,
                        seconds=agg_seconds)

    # 5. Key holder decrypts the aggregate only, floods it with noise and releases the real parts.
    t0 = time.perf_counter()
    try:
        parts = [ts.ckks_vector_from(secret_ctx, b).decrypt() for b in _unframe(data)]
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ProtocolError(f"the aggregate ciphertexts do not decrypt ({type(exc).__name__})") from None
    raw = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.zeros(0)
    if raw.size != spec.size:
        raise ProtocolError("the aggregate has a different number of values than the layout announces")
    vec: np.ndarray = raw + bound.flood_std * _gaussian(raw.size)
    del raw
    dec_seconds = time.perf_counter() - t0
    if bound.total < 0.5 and integral.any():
        # Integer entries are exact once rounded: the error is below one half (with the bound's probability).
        exact = np.empty(vec.size, dtype=object)
        exact[:] = [round(v) if i else float(v) for v, i in zip(vec.tolist(), integral.tolist(), strict=True)]
        vec = exact
    released = vec.astype("<f8").tobytes() if vec.dtype != object else dumps(vec.tolist())
    channel.send("keyholder", "analyst", "aggregate", released, encrypted=False, seconds=dec_seconds)

    return AggregationOutcome(
        value=spec.unflatten(vec),
        spec=spec,
        layout=CKKSLayout(params.slots),
        ciphertexts_per_party=len(total),
        seconds={"keygen": key_seconds, "encrypt": enc_seconds, "aggregate": agg_seconds, "decrypt": dec_seconds},
        fast_encryption=False,
        protocol="ckks",
        error_bound=bound.total,
        scheme=params.describe(),
    )


class CKKSSecAgg(SecAggProtocol):
    """CKKS secure aggregation with one key holder (the ``"ckks"`` protocol; module docstring).

    Parameters
    ----------
    params : CKKSParams, optional
        Fixed parameters; by default they are chosen per run from the public
        range, resolution and number of parties (:meth:`CKKSParams.for_range`).
    """

    name: ClassVar[str] = "ckks"
    #: Every run makes its own CKKS key pair: the federation's Paillier key is never generated for it.
    needs_keys: ClassVar[bool] = False
    trust_model: ClassVar[TrustModel] = TrustModel(
        text=(
            "CKKS with a single key holder: honest-but-curious parties, aggregator and key holder; the aggregator "
            "sees only ciphertexts and the key holder decrypts only the aggregate, with a fresh key per run, and "
            "adds flooding noise before release (against Li-Micciancio key recovery from decrypted results); if "
            "aggregator and key holder collude they can decrypt each party's local aggregates (never its raw "
            "rows); results are approximate within the reported error bound"
        ),
        trusted=("aggregator", "keyholder"),
        broken_by="the aggregator colluding with the key holder",
    )

    def __init__(self, params: CKKSParams | None = None) -> None:
        if params is not None and not isinstance(params, CKKSParams):
            raise ConfigurationError(f"params must be a CKKSParams, got {type(params).__name__}")
        self.params = params

    def cost_model(self, n_parties: int, n_values: int, key_bits: int, *,
                   encoding: Encoding | None = None) -> CostEstimate:
        """Ciphertexts, messages and bytes of one run (``key_bits`` is ignored: CKKS has its own parameters).

        Serialized sizes are those of SEAL's uncompressed polynomials (two per
        ciphertext, two in the public key) plus a small allowance for headers;
        the JSON layout messages are not counted.

        Parameters
        ----------
        n_parties : int
            Parties contributing (at least two).
        n_values : int
            Scalars in each party's local result.
        key_bits : int
            Ignored.
        encoding : Encoding, optional
            Public range and resolution (default: :meth:`Encoding.default_sum`).

        Returns
        -------
        CostEstimate
        """
        check_enough_parties(n_parties)
        enc = encoding if encoding is not None else Encoding.default_sum()
        params = self.params or CKKSParams.for_range(n_parties, enc.max_abs, enc.frac_bits)
        n_ct = CKKSLayout(params.slots).n_ciphertexts(n_values)
        word = 8 * params.poly_modulus_degree
        ct_bytes = 2 * word * len(params.data_primes) + 4 + 512  # frame prefix + TenSEAL/SEAL headers
        public_key = 2 * word * len(params.coeff_mod_bit_sizes) + 1024
        upload = n_ct * ct_bytes
        total = (n_parties + 1) * public_key + n_parties * upload + upload + 8 * max(1, n_values)
        return CostEstimate(
            ciphertexts_per_party=n_ct,
            messages=3 * n_parties + 3,  # public key, layout, ciphertexts per party; aggregator's key; sum; release
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
        """Securely sum ``local_fn`` over ``parties`` with CKKS (see :func:`fedbench.secagg.secure_aggregate`).

        ``keys``, ``fast_encryption`` and ``key_recipients`` are ignored (every
        run has a fresh CKKS key pair, sent to every party); entries returned as
        integers are checked against ``encoding``'s range like the others
        (``integer_encoding`` is ignored).

        Returns
        -------
        AggregationOutcome
            With ``error_bound`` (per entry) and ``scheme`` set.

        Raises
        ------
        FeatureUnavailableError
            TenSEAL is not installed (before any party runs).
        ConfigurationError
            DP noise was requested, or the range does not fit the parameters (before any party runs).
        TooFewPartiesError, ProtocolError, NonFiniteValueError, EncodingRangeError
            As for the Paillier protocol.
        """
        return _ckks_aggregate(self.params, parties, local_fn, backend=backend, channel=channel,
                               encoding=encoding, party_noise=party_noise, central_noise=central_noise,
                               before_release=before_release)


#: The registered instance (``protocol="ckks"``), with parameters chosen per run.
CKKS = CKKSSecAgg()
