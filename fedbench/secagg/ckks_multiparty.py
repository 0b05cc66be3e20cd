"""Multiparty (n-of-n threshold) CKKS secure aggregation with OpenFHE: the ``"ckks-multiparty"`` protocol.

No single key holder: every party holds a share of the secret key, and an
aggregate decrypts only with every party's partial decryption.

Roles (honest-but-curious)
--------------------------
* **parties** each run an OpenFHE engine process of their own
  (:mod:`fedbench.secagg.openfhe_engine`), started inside the party for the
  run and stopped at its end; the party's secret key share is made there and
  never leaves it.  Round 1: the party computes and validates its local
  result (finite, below the public ``max_abs``) before any message.
  Key chain: party 1 makes a key pair, every next party extends the public
  key it received (OpenFHE ``MultipartyKeyGen``); the last one's is the joint
  public key.  Each party encrypts its vector under the joint key
  (``slots = ring_dim / 2`` values per ciphertext), and later returns a partial
  decryption of the aggregate (``MultipartyDecryptLead`` / ``Main``).
* the **aggregator** relays these messages (every one is recorded in the
  run's transcript), adds the ciphertexts in its own engine and combines all
  partial decryptions (``MultipartyDecryptFusion``), so it learns the
  aggregate, which it releases to the analyst.

Trust: no coalition that excludes a party can decrypt that party's
ciphertexts (every key share is needed; IND-CPA as OpenFHE claims it); the
aggregator with the other ``n - 1`` parties learns the party's local aggregate
from the released sum, as in any secure sum.  Parties partially decrypt
whatever the aggregator sends them: an aggregator that sent one party's
ciphertext instead of the sum would decrypt it alone, which is outside the
honest-but-curious model fedbench assumes throughout.
A party whose engine does not answer at decryption stops the run, naming the
party, and nothing is released: decryption is n-of-n, and there is no
``threshold=t`` option.  OpenFHE's ``ShareKeys``/``RecoverSharedKey``
(Shamir shares of each party's secret for t-of-n recovery) are not usable
from Python across processes (checked with openfhe 1.6.1.0.22.4):
``ShareKeys`` returns ``DCRTPoly`` objects that the wrapper can neither
serialize nor inspect, so a share cannot be sent to another party's engine,
and ``RecoverSharedKey`` into a fresh ``PrivateKey()`` crashed the interpreter
(segmentation fault).

Parameters and bound
--------------------
:class:`MultipartyCKKSParams`: OpenFHE's CKKS with a fixed ring dimension, a
first modulus, a scaling modulus (the scale) and depth 1 (a sum needs no
multiplication, so no evaluation or key-switching keys are made and a secret
key is used only modulo ``Q``).  The total modulus is checked against the
Homomorphic Encryption Standard's 128-bit table
(:data:`~fedbench.secagg.ckks_params.HE_STANDARD_128`); the engine checks it
again against the modulus OpenFHE built.  In noise-flooding mode OpenFHE picks
the moduli itself (60 + 59 bits, scale ``2**59``), so the smallest ring at
128 bits is 8192 (the default, 4096 values per ciphertext).

Against Li-Micciancio key recovery from decrypted results, decryptions use
OpenFHE's ``NOISE_FLOODING_DECRYPT``: a first phase (``EXEC_NOISE_ESTIMATION``)
runs the same computation (n key shares, n ciphertexts, one sum, one
multiparty decryption) on zero vectors under throw-away keys to estimate its
noise, and the real run (``EXEC_EVALUATION``) floods decryption with noise
sized from that estimate (OpenFHE's statistical security 30 and one
adversarial query, its defaults).  OpenFHE's multiparty decryption also adds
its own fixed extra noise to each partial decryption, but OpenFHE's
documentation supports threshold CKKS in the IND-CPA sense only (not
IND-CPA-D): the aggregator sees every partial decryption, whose noise is not
provably flooded.  fedbench proves no IND-CPA-D bound; OpenFHE calls the
flooding mode experimental.

The reported per-entry bound is calibrated, from public data only: the
aggregator's engine decrypts the same computation on zero vectors with the
run's noise estimate, under throw-away keys, and the bound is 12 times the
standard deviation of the errors of its ``ring_dim / 2`` slots (the errors are
Gaussian: flooding, encryption and smudging noise) plus double-precision
rounding (``2 n max_abs 2**-45``).  Calibration is cached per parameters and
number of parties.  Measured: about 1e-4 standard deviation, independent of
the scale, so sums are good to about 1e-3; OpenFHE's decoder refuses sums
beyond about 2**50, so ``n * max_abs`` must stay below :data:`MAX_SUM`.

Not supported: differentially private releases (refused, as with ``"ckks"``).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..crypto.packing import Encoding
from ..errors import ConfigurationError, FedbenchError, InsecureParameterError, PartyUnavailableError, ProtocolError
from ..party import recall_in_party, remember_in_party
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
from .ckks import CKKSLayout, _frame, _unframe, validated_vector
from .ckks_params import HE_STANDARD_128
from .openfhe_engine import Engine, EngineError, openfhe_python

if TYPE_CHECKING:
    import polars as pl

    from ..backend import Backend
    from ..party import Party
    from ..transcript import Channel
    from .keyholders import AnyPaillierKeys

__all__ = ["CKKS_MULTIPARTY", "MAX_SUM", "MODULUS_BITS", "MultipartyCKKSParams", "MultipartyCKKSSecAgg"]

#: Largest ``n_parties * max_abs``: OpenFHE 1.6's CKKS decoder refused a sum of 10 x 2**55 and decoded
#: 10 x 2**40 (measured); the cap keeps clear of the refusal, which would come after every party encrypted.
MAX_SUM = 2.0**45
#: Ciphertext modulus bits and scale bits OpenFHE 1.6 uses in NOISE_FLOODING_DECRYPT evaluation mode at depth 1.
MODULUS_BITS = 119
SCALE_BITS = 59
#: Standard deviations of the calibrated error in the reported bound.
_TAIL = 12.0
#: Double-precision rounding of encoding and decoding, relative to the largest sum (as for "ckks").
_FP_RELATIVE = 2.0**-45


@dataclass(frozen=True)
class MultipartyCKKSParams:
    """OpenFHE CKKS parameters of the multiparty protocol, refused below 128-bit security.

    In ``NOISE_FLOODING_DECRYPT`` evaluation mode OpenFHE 1.6 (64-bit build) chooses the moduli itself
    whatever it is asked for: a 60-bit first and a 59-bit scaling prime (:data:`MODULUS_BITS`, measured;
    the engine checks the modulus it built).  Only the ring dimension is left to choose.

    Parameters
    ----------
    ring_dim : int, default 8192
        Ring dimension (a power of two up to 32768); ``ring_dim / 2`` values per ciphertext.

    Raises
    ------
    InsecureParameterError
        :data:`MODULUS_BITS` exceeds :data:`HE_STANDARD_128` for ``ring_dim`` (1024 to 4096)
    ConfigurationError
        ``ring_dim`` is not a power of two from 1024 to 32768.
    """

    ring_dim: int = 8192

    def __post_init__(self) -> None:
        n = self.ring_dim
        if isinstance(n, bool) or not isinstance(n, int) or n not in HE_STANDARD_128:
            raise ConfigurationError(f"ring_dim must be one of {sorted(HE_STANDARD_128)}, got {n!r}")
        if HE_STANDARD_128[n] < MODULUS_BITS:
            raise InsecureParameterError(
                f"ring_dim={n} holds at most {HE_STANDARD_128[n]} modulus bits at 128-bit security (Homomorphic "
                f"Encryption Standard, Table 1), and OpenFHE's noise-flooding CKKS uses a {MODULUS_BITS}-bit "
                "modulus; use ring_dim=8192 or larger")

    @property
    def modulus_bits(self) -> int:
        """Bits of the ciphertext modulus ``Q`` (depth 1: the first and one scaling prime)."""
        return MODULUS_BITS

    @property
    def scale_bits(self) -> int:
        """``log2`` of the scale."""
        return SCALE_BITS

    @property
    def slots(self) -> int:
        """Values per ciphertext."""
        return self.ring_dim // 2

    def engine_args(self) -> tuple[int, int, int, int]:
        """``(ring_dim, first_mod_bits, scale_bits, depth)`` as the engine takes them."""
        return (self.ring_dim, MODULUS_BITS - SCALE_BITS, SCALE_BITS, 1)

    def describe(self) -> str:
        """One line for result cards."""
        return (f"multiparty CKKS (OpenFHE), ring dimension {self.ring_dim}, {self.modulus_bits}-bit ciphertext "
                f"modulus, scale 2^{self.scale_bits}, 128-bit security, n-of-n decryption, noise flooding")

    def check_range(self, n_parties: int, max_abs: float) -> None:
        """Refuse a range whose sum OpenFHE could not decode or the modulus could not hold.

        Raises
        ------
        ConfigurationError
            ``n_parties * max_abs`` exceeds :data:`MAX_SUM` or, at the scale, the modulus.
        """
        total = n_parties * max_abs
        need = math.ceil(math.log2(total)) + self.scale_bits + 2
        if total > MAX_SUM or need > self.modulus_bits:
            raise ConfigurationError(
                f"max_abs={max_abs:g} is too large for multiparty CKKS: {n_parties} parties may sum to "
                f"{total:g}, beyond what OpenFHE decodes at scale 2^{self.scale_bits} (at most {MAX_SUM:g}); "
                "pass a smaller public max_abs (e.g. Federation(max_abs=2**20))")


_calibrations: dict[tuple[int, int, int, int, int], tuple[float, float, float]] = {}


def _calibrate(engine: Engine, params: MultipartyCKKSParams, n_parties: int) -> tuple[float, float, float]:
    """``(noise_estimate, std, max)`` of the computation on zeros under throw-away keys (public; cached)."""
    key = (*params.engine_args(), n_parties)
    if key not in _calibrations:
        estimate, std, worst = engine.call("calibrate", *params.engine_args(), n_parties)
        _calibrations[key] = (float(estimate), float(std), float(worst))
    return _calibrations[key]


# -- inside each party ---------------------------------------------------------------------------
@dataclass
class _PartyState:
    engine: Engine
    vec: np.ndarray | None

    def wipe(self) -> None:
        self.vec = None
        self.engine.close()


def _party_validate(df: pl.DataFrame, *, name: str, key: str, local_fn: LocalFn, max_abs: float,
                    setup: tuple[Any, ...]) -> Any:
    """Round 1: the local result, validated before any message; then the party's engine starts.

    The engine builds its context while the other parties run (answer collected at key generation).
    """
    spec, vec = validated_vector(name, df, local_fn, max_abs)
    state = _PartyState(Engine(name), vec)
    remember_in_party(df, key=key, fn=lambda _df: state)
    state.engine.submit("setup", *setup)
    return spec


def _state(df: pl.DataFrame, key: str) -> _PartyState:
    state: _PartyState = recall_in_party(df, key=key, keep=True)
    return state


def _party_keygen(df: pl.DataFrame, *, key: str, previous: bytes | None) -> bytes:
    """Key chain: the party's key share (kept in its engine) extends the public key received."""
    engine = _state(df, key).engine
    engine.receive()  # the context submitted in round 1
    out: bytes = engine.call("keygen", previous)
    return out


def _party_encrypt(df: pl.DataFrame, *, key: str, public: bytes, slots: int) -> None:
    """Start encrypting under the joint key (collected by :func:`_party_collect`, so parties encrypt at once)."""
    state = _state(df, key)
    assert state.vec is not None
    state.engine.submit("encrypt", public, state.vec.astype("=f8").tobytes(), slots)
    state.vec = None  # the plaintext is not needed any more


def _party_partial(df: pl.DataFrame, *, key: str, aggregate: list[bytes], lead: bool) -> None:
    """Decryption round: start the party's partial decryption (its secret share stays in its engine)."""
    _state(df, key).engine.submit("partial", aggregate, lead)


def _party_collect(df: pl.DataFrame, *, key: str) -> list[bytes]:
    """The answer to the party's last submitted operation (ciphertexts or partial decryptions)."""
    out: list[bytes] = _state(df, key).engine.receive()
    return out


def _party_forget(df: pl.DataFrame, *, key: str) -> None:
    try:
        state = recall_in_party(df, key=key)
    except FedbenchError:
        return
    state.wipe()


# -- the aggregator (driver) -----------------------------------------------------------------------
def _multiparty_aggregate(
    params: MultipartyCKKSParams, parties: Sequence[Party], local_fn: LocalFn, *, backend: Backend,
    channel: Channel, encoding: Encoding, party_noise: GridNoiseFn | None, central_noise: GridNoiseFn | None,
    before_release: Callable[[], None] | None,
) -> AggregationOutcome:
    if party_noise is not None or central_noise is not None:
        raise ConfigurationError(
            "differentially private releases need an exact secure sum and the 'ckks-multiparty' protocol is "
            "approximate; use secagg='paillier' for DP releases")
    check_enough_parties(len(parties))
    names = [p.name for p in parties]
    n = len(parties)
    max_abs = encoding.max_abs
    params.check_range(n, max_abs)
    openfhe_python()  # no interpreter: a clear error before any party runs
    key = f"fedbench.secagg.ckks_multiparty.{secrets.token_hex(8)}"
    seconds: dict[str, float] = {}
    agg = Engine("aggregator")
    try:
        t0 = time.perf_counter()
        estimate, std, worst = _calibrate(agg, params, n)
        bound = _TAIL * std + 2.0 * n * max_abs * _FP_RELATIVE
        if worst > bound:
            raise ProtocolError("the calibration of the CKKS error bound failed (an error beyond 12 standard "
                                "deviations on public zeros); nothing was run")
        setup = (*params.engine_args(), estimate)
        agg.call("setup", *setup)
        seconds["calibrate"] = time.perf_counter() - t0

        # 1. Inside each party: local result, validated; its engine starts.  Nothing is recorded yet.
        specs = backend.compute_each([(p, partial(_party_validate, name=p.name, key=key, local_fn=local_fn,
                                                  max_abs=max_abs, setup=setup)) for p in parties])
        spec = specs[0]
        for name, s in zip(names, specs, strict=True):
            if s != spec:  # neither party's names nor shapes are quoted: they may depend on the data
                raise ProtocolError(f"party {name!r} returned entries that differ from party {names[0]!r}'s in "
                                    "names or shapes; every party must return the same names and shapes")
        integral = np.logical_and.reduce([s.entry_integral() for s in specs])
        if before_release is not None:
            before_release()

        # 2. Public parameters and the key chain, relayed by the aggregator.
        t0 = time.perf_counter()
        public_params = json.dumps({"scheme": "ckks-multiparty", "ring_dim": params.ring_dim,
                                    "modulus_bits": params.modulus_bits, "scale_bits": params.scale_bits,
                                    "depth": 1, "noise_estimate": estimate}).encode()
        previous: bytes | None = None
        for i, p in enumerate(parties):
            channel.send("aggregator", p.name, "parameters", public_params, encrypted=False)
            share = backend.compute_each([(p, partial(_party_keygen, key=key, previous=previous))])[0]
            receiver = names[i + 1] if i + 1 < n else "aggregator"
            previous = channel.send(p.name, receiver, "public-key-share", share, encrypted=False)
        assert previous is not None
        joint = previous
        for name in names:
            channel.send("aggregator", name, "public-key", joint, encrypted=False)
        seconds["keygen"] = time.perf_counter() - t0

        # 3. Parties encrypt under the joint key and upload.
        t0 = time.perf_counter()
        backend.compute_each([(p, partial(_party_encrypt, key=key, public=joint, slots=params.slots))
                              for p in parties])
        uploads = backend.compute_each([(p, partial(_party_collect, key=key)) for p in parties])
        seconds["encrypt"] = time.perf_counter() - t0  # wall time: the parties' engines encrypt side by side
        layout = {"names": list(spec.names), "shapes": [list(s) for s in spec.shapes], "scheme": "ckks-multiparty"}
        received = []
        for name, cts in zip(names, uploads, strict=True):
            channel.send(name, "aggregator", "layout", dumps(layout), encrypted=False)
            data = channel.send(name, "aggregator", "ciphertexts", _frame(cts), encrypted=True)
            received.append(_unframe(data))
        if len({len(r) for r in received}) != 1:
            raise ProtocolError("parties sent different numbers of ciphertexts")

        # 4. Aggregator adds the ciphertexts.
        t0 = time.perf_counter()
        try:
            total: list[bytes] = agg.call("add", received)
        except EngineError:
            raise ProtocolError("the parties' ciphertexts do not add up (they do not match the public "
                                "parameters or each other's layout)") from None
        seconds["aggregate"] = time.perf_counter() - t0

        # 5. Every party's partial decryption (n-of-n); one missing stops the run before anything is combined.
        t0 = time.perf_counter()
        framed = _frame(total)
        calls = []
        for i, p in enumerate(parties):
            sent = channel.send("aggregator", p.name, "aggregate-ciphertexts", framed, encrypted=True)
            calls.append((p, partial(_party_partial, key=key, aggregate=_unframe(sent), lead=i == 0)))
        started = backend.settle(calls)  # every party's engine decrypts at once; answers collected below
        ready = [p for p, st in zip(parties, started, strict=True) if st.error is None and not st.timed_out]
        answers = dict(zip([p.name for p in ready], backend.settle([(p, partial(_party_collect, key=key))
                                                                     for p in ready]), strict=True))
        failures = [st for st in started if st.error is not None or st.timed_out]
        failures += [st for st in answers.values() if st.error is not None or st.timed_out]
        missing = [name for name in names if name not in answers or answers[name].error is not None
                   or answers[name].timed_out]
        if missing:
            cause = next((st.error for st in failures if st.error is not None), None)
            raise PartyUnavailableError(
                f"party {missing[0]!r} did not return its partial decryption"
                + (f" (nor did {', '.join(repr(m) for m in missing[1:])})" if missing[1:] else "")
                + f"; multiparty CKKS decryption needs all {n} parties' partial decryptions: nothing is released",
                party=missing[0]) from cause
        partials = []
        for name in names:
            data = channel.send(name, "aggregator", "partial-decryption", _frame(answers[name].value),
                                encrypted=True)
            partials.append(_unframe(data))
        try:
            raw = np.frombuffer(agg.call("fuse", partials, spec.size, params.slots), dtype="=f8").copy()
        except EngineError:
            raise ProtocolError("the partial decryptions do not combine; nothing is released") from None
        if raw.size != spec.size:
            raise ProtocolError("the aggregate has a different number of values than the layout announces")
        seconds["decrypt"] = time.perf_counter() - t0
    finally:
        agg.close()
        for p in parties:  # secret shares never outlive the run, also when it fails
            backend.post(p, partial(_party_forget, key=key))

    vec: np.ndarray = raw
    if bound < 0.5 and integral.any():
        exact = np.empty(vec.size, dtype=object)
        exact[:] = [round(v) if i else float(v) for v, i in zip(vec.tolist(), integral.tolist(), strict=True)]
        vec = exact
    released = vec.astype("<f8").tobytes() if vec.dtype != object else dumps(vec.tolist())
    channel.send("aggregator", "analyst", "aggregate", released, encrypted=False)
    return AggregationOutcome(
        value=spec.unflatten(vec), spec=spec, layout=CKKSLayout(params.slots), ciphertexts_per_party=len(total),
        seconds=seconds, fast_encryption=False, protocol="ckks-multiparty", error_bound=bound,
        scheme=params.describe(), details={"noise_estimate": estimate, "calibrated_std": std, "decryption": "n-of-n"})


class MultipartyCKKSSecAgg(SecAggProtocol):
    """Multiparty CKKS secure aggregation with OpenFHE, no key holder (``"ckks-multiparty"``; module docstring).

    Parameters
    ----------
    params : MultipartyCKKSParams, optional
        Default: ring dimension 8192 (OpenFHE's 119-bit modulus, scale ``2**59``).
    """

    name: ClassVar[str] = "ckks-multiparty"
    #: Every run makes its own multiparty CKKS keys: the federation's Paillier key is never generated for it.
    needs_keys: ClassVar[bool] = False
    trust_model: ClassVar[TrustModel] = TrustModel(
        text=(
            "lattice multiparty CKKS (OpenFHE): no single key holder; every party holds a share of the secret key "
            "in its own engine process and decryption needs every party's partial decryption (n-of-n, a party "
            "missing stops the run); honest-but-curious parties and aggregator; no coalition that excludes a "
            "party can decrypt that party's ciphertexts, but the aggregator with the other n - 1 parties learns its "
            "local aggregate (never its raw rows) from the released sum, and an aggregator that deviated (asked "
            "for a partial decryption of anything but the sum) could decrypt any party's vector alone; the "
            "aggregator combines the partial decryptions, so it sees the aggregate; results are approximate "
            "within the reported error bound; decryption uses OpenFHE's NOISE_FLOODING_DECRYPT against "
            "Li-Micciancio key recovery, but OpenFHE supports threshold CKKS in the IND-CPA sense only, so no "
            "IND-CPA-D security is claimed"
        ),
        trusted=("aggregator",),  # as for masking: parties are trusted only not to all collude with it
        broken_by=("the aggregator with the other n - 1 parties (through the released sum), or an aggregator "
                   "that asks for a partial decryption of anything but the sum"),
    )

    def __init__(self, params: MultipartyCKKSParams | None = None) -> None:
        if params is not None and not isinstance(params, MultipartyCKKSParams):
            raise ConfigurationError(f"params must be a MultipartyCKKSParams, got {type(params).__name__}")
        self.params = params or MultipartyCKKSParams()

    def cost_model(self, n_parties: int, n_values: int, key_bits: int, *,
                   encoding: Encoding | None = None) -> CostEstimate:
        """Ciphertexts, messages and bytes of one run (``key_bits`` and ``encoding`` are ignored).

        Sizes are OpenFHE's binary serializations (two polynomials of ``ring_dim`` 64-bit words per
        modulus prime for a ciphertext or public key, one for a partial decryption) plus headers, as
        measured; the JSON parameter and layout messages are not counted.

        Parameters
        ----------
        n_parties : int
            Parties contributing (at least two).
        n_values : int
            Scalars in each party's local result.
        key_bits : int
            Ignored.
        encoding : Encoding, optional
            Ignored.

        Returns
        -------
        CostEstimate
        """
        check_enough_parties(n_parties)
        p = self.params
        n_ct = CKKSLayout(p.slots).n_ciphertexts(n_values)
        poly = 8 * p.ring_dim * 2  # one polynomial over the two primes of Q
        ct, pk, part = 2 * poly + 1300, 2 * poly + 1100, poly + 1000
        upload = n_ct * (ct + 4)
        total = (2 * n_parties * pk + n_parties * upload + n_parties * upload
                 + n_parties * n_ct * (part + 4) + 8 * max(1, n_values))
        return CostEstimate(
            ciphertexts_per_party=n_ct,
            # parameters, key share, joint key, layout, ciphertexts, aggregate, partial decryption; release
            messages=7 * n_parties + 1,
            bytes_per_party=upload,
            total_bytes=total,
            operations={"keygen": n_parties, "encrypt": n_parties * n_ct, "add": (n_parties - 1) * n_ct,
                        "partial-decrypt": n_parties * n_ct, "fuse": n_ct},
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
        """Securely sum ``local_fn`` over ``parties`` with multiparty CKKS (:func:`~fedbench.secagg.secure_aggregate`).

        ``keys``, ``fast_encryption``, ``key_recipients`` and ``integer_encoding``
        are ignored (every run makes fresh multiparty keys; integer entries share
        the range of the others and are rounded when the bound is below 0.5).

        Returns
        -------
        AggregationOutcome
            With ``error_bound`` (per entry), ``scheme`` and ``details`` (noise estimate) set.

        Raises
        ------
        FeatureUnavailableError
            No OpenFHE interpreter (before any party runs).
        ConfigurationError
            DP noise was requested, or the range does not fit (before any party runs).
        PartyUnavailableError
            A party did not return its partial decryption (named); nothing is released.
        TooFewPartiesError, ProtocolError, NonFiniteValueError, EncodingRangeError
            As for the other protocols.
        """
        return _multiparty_aggregate(self.params, parties, local_fn, backend=backend, channel=channel,
                                     encoding=encoding, party_noise=party_noise, central_noise=central_noise,
                                     before_release=before_release)


#: The registered instance (``protocol="ckks-multiparty"``) with the default parameters.
CKKS_MULTIPARTY = MultipartyCKKSSecAgg()
