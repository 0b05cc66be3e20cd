"""Pluggable secure-aggregation protocols: registry, the Paillier protocol through the interface, cost model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench.secagg as secagg
from fedbench.backend import InProcessBackend
from fedbench.crypto.packing import Encoding, PackingLayout
from fedbench.crypto.paillier import generate_keys
from fedbench.errors import ConfigurationError, TooFewPartiesError
from fedbench.party import Party
from fedbench.secagg import (
    AggregationOutcome,
    CostEstimate,
    PaillierSecAgg,
    SecAggProtocol,
    TrustModel,
    VectorSpec,
    available_protocols,
    get_protocol,
    register_protocol,
    secure_aggregate,
    unregister_protocol,
)
from fedbench.transcript import Channel, Transcript
from fedbench.wire import dumps

from .conftest import TEST_KEY_BITS

_KEYS = generate_keys(TEST_KEY_BITS, allow_insecure_key_size=True)
_BACKEND = InProcessBackend(parallel=False)


def _parties(n: int) -> list[Party]:
    return [Party(f"p{i}", pl.DataFrame({"i": [i]})) for i in range(n)]


def _run(vectors: list[np.ndarray], protocol: str = "paillier", **kwargs) -> tuple[AggregationOutcome, Channel]:
    channel = Channel("secure_sum", [Transcript()])
    out = secure_aggregate(
        _parties(len(vectors)), lambda df: {"x": vectors[int(df["i"][0])]}, keys=_KEYS, backend=_BACKEND,
        channel=channel, encoding=kwargs.pop("encoding", Encoding.default_sum()), protocol=protocol, **kwargs,
    )
    return out, channel


# -- registry --------------------------------------------------------------------------------------
def test_paillier_is_registered_and_the_default():
    assert "paillier" in available_protocols()
    proto = get_protocol("paillier")
    assert isinstance(proto, PaillierSecAgg) and isinstance(proto, SecAggProtocol)
    assert proto.name == "paillier" == secagg.DEFAULT_PROTOCOL
    assert available_protocols() == sorted(available_protocols())


def test_unknown_protocol_is_a_configuration_error_listing_the_known_ones():
    with pytest.raises(ConfigurationError, match=r"unknown secure-aggregation protocol 'maskin'.*'paillier'"):
        get_protocol("maskin")


def test_unknown_protocol_in_secure_aggregate_runs_nothing():
    calls = []

    def local(df: pl.DataFrame) -> dict[str, float]:
        calls.append(1)
        return {"x": 1.0}

    channel = Channel("secure_sum", [Transcript()])
    with pytest.raises(ConfigurationError, match="paillier"):
        secure_aggregate(_parties(2), local, keys=_KEYS, backend=_BACKEND, channel=channel,
                         encoding=Encoding.default_sum(), protocol="nope")
    assert calls == [] and len(channel.run) == 0


def test_registering_a_taken_name_needs_replace_and_non_protocols_are_refused():
    with pytest.raises(ConfigurationError, match="already registered"):
        register_protocol(PaillierSecAgg())
    with pytest.raises(ConfigurationError, match="SecAggProtocol"):
        register_protocol(object())  # type: ignore[arg-type]
    assert get_protocol("paillier") is secagg.PAILLIER


# -- the Paillier protocol through the interface -----------------------------------------------------
def test_paillier_trust_model_names_the_collusion_that_breaks_it():
    tm = get_protocol("paillier").trust_model
    assert isinstance(tm, TrustModel)
    assert set(tm.trusted) == {"aggregator", "keyholder"}
    assert "collude" in tm.text and "aggregator" in tm.broken_by and "key holder" in tm.broken_by
    assert str(tm) == tm.text
    with pytest.raises(AttributeError):
        tm.text = "trust nobody"  # type: ignore[misc]  # frozen: result cards can share it


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_paillier_through_the_interface_equals_the_plaintext_sum(n_parties, length, seed):
    rng = np.random.default_rng(seed)
    vectors = [rng.uniform(-1000, 1000, length) for _ in range(n_parties)]
    out = get_protocol("paillier").aggregate(
        _parties(n_parties), lambda df: {"x": vectors[int(df["i"][0])]}, keys=_KEYS, backend=_BACKEND,
        channel=Channel("secure_sum", [Transcript()]), encoding=Encoding.default_sum(),
    )
    assert out.protocol == "paillier"
    # Fixed point at 16 fractional bits: each party's value rounds by at most half a grid step.
    np.testing.assert_allclose(out.value["x"], np.sum(vectors, axis=0), rtol=0, atol=n_parties * 2.0**-16)


def test_protocol_argument_dispatches_to_paillier_and_matches_the_default():
    vectors = [np.arange(5.0), np.arange(5.0) * 2]
    named, _ = _run(vectors, protocol="paillier")
    default = secure_aggregate(
        _parties(2), lambda df: {"x": vectors[int(df["i"][0])]}, keys=_KEYS, backend=_BACKEND,
        channel=Channel("secure_sum", [Transcript()]), encoding=Encoding.default_sum(),
    )
    np.testing.assert_allclose(named.value["x"], np.arange(5.0) * 3, atol=1e-4)
    np.testing.assert_array_equal(named.value["x"], default.value["x"])


def test_too_few_parties_is_refused_by_the_interface():
    with pytest.raises(TooFewPartiesError):
        _run([np.ones(3)])
    with pytest.raises(TooFewPartiesError):
        get_protocol("paillier").cost_model(1, 10, 512)


# -- cost model -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_parties", "length"), [(2, 1), (3, 10), (2, 57), (5, 200)])
def test_cost_model_matches_a_real_run(n_parties, length):
    est = get_protocol("paillier").cost_model(n_parties, length, _KEYS.key_bits)
    vectors = [np.full(length, float(i)) for i in range(n_parties)]
    out, channel = _run(vectors)
    assert est.ciphertexts_per_party == out.ciphertexts_per_party
    msgs = list(channel.run)
    assert est.messages == len(msgs)
    uploads = [m.nbytes for m in msgs if m.kind == "ciphertexts"]
    assert uploads == [est.bytes_per_party] * n_parties
    layout = sum(m.nbytes for m in msgs if m.kind == "layout")
    assert est.total_bytes == sum(m.nbytes for m in msgs) - layout  # the layout JSON is documented as excluded
    assert est.operations["encrypt"] == n_parties * est.ciphertexts_per_party
    assert est.operations["decrypt"] == est.ciphertexts_per_party


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 50), st.integers(1, 5000), st.sampled_from([512, 1024, 2048, 3072]))
def test_cost_model_is_monotone(n_parties, length, key_bits):
    model = get_protocol("paillier").cost_model
    base = model(n_parties, length, key_bits)
    assert isinstance(base, CostEstimate) and base.ciphertexts_per_party >= 1
    more_values = model(n_parties, length + 1, key_bits)
    more_parties = model(n_parties + 1, length, key_bits)
    for bigger in (more_values, more_parties):
        assert bigger.ciphertexts_per_party >= base.ciphertexts_per_party
        assert bigger.messages >= base.messages
        assert bigger.total_bytes > base.total_bytes
        assert all(bigger.operations[k] >= v for k, v in base.operations.items())
    assert more_parties.messages > base.messages
    # A larger key packs more values per ciphertext: never more ciphertexts.
    assert model(n_parties, length, 2 * key_bits).ciphertexts_per_party <= base.ciphertexts_per_party


def test_cost_model_uses_the_given_encoding():
    model = get_protocol("paillier").cost_model
    narrow = model(3, 1000, 2048, encoding=Encoding.for_range(1.0, 8))
    wide = model(3, 1000, 2048, encoding=Encoding.for_range(2.0**40, 30))
    assert narrow.ciphertexts_per_party < wide.ciphertexts_per_party


# -- a protocol plugged in by a test ----------------------------------------------------------------
class _PlaintextTestProtocol(SecAggProtocol):
    """Sums in the clear (test only): shows that a registered protocol is what a name selects."""

    name = "plaintext-test"
    trust_model = TrustModel(text="test only: the aggregator sees every party's values", trusted=("aggregator",),
                             broken_by="the aggregator alone")

    def __init__(self) -> None:
        self.calls = 0

    def cost_model(self, n_parties, n_values, key_bits, *, encoding=None) -> CostEstimate:
        return CostEstimate(ciphertexts_per_party=0, messages=n_parties + 1, bytes_per_party=8 * n_values,
                            total_bytes=8 * n_values * (n_parties + 1))

    def aggregate(self, parties, local_fn, *, keys, backend, channel, encoding, **kwargs) -> AggregationOutcome:
        self.calls += 1
        secagg.base.check_enough_parties(len(parties))
        locals_ = [local_fn(p._df) for p in parties]
        spec = VectorSpec.of(locals_[0], parties[0].name)
        for p, loc in zip(parties, locals_, strict=True):
            channel.send(p.name, "aggregator", "plaintext", dumps(spec.flatten(loc).tolist()), encrypted=False)
        total = np.sum([spec.flatten(loc) for loc in locals_], axis=0)
        return AggregationOutcome(value=spec.unflatten(total), spec=spec,
                                  layout=PackingLayout(encoding, len(parties), keys.n.bit_length() - 1),
                                  ciphertexts_per_party=0, seconds={}, fast_encryption=False, protocol=self.name)


@pytest.fixture
def plaintext_protocol() -> Iterator[_PlaintextTestProtocol]:
    proto = _PlaintextTestProtocol()
    register_protocol(proto)
    yield proto
    unregister_protocol(proto.name)


def test_a_protocol_registered_in_a_test_is_used_when_named(plaintext_protocol):
    assert "plaintext-test" in available_protocols()
    out, channel = _run([np.array([1.0, 2.0]), np.array([3.0, 4.0])], protocol="plaintext-test")
    assert plaintext_protocol.calls == 1 and out.protocol == "plaintext-test"
    np.testing.assert_array_equal(out.value["x"], [4.0, 6.0])
    assert [m.kind for m in channel.run] == ["plaintext", "plaintext"]
    # The default is untouched.
    default, _ = _run([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert default.protocol == "paillier" and plaintext_protocol.calls == 1


def test_unregistered_protocol_is_unknown_again():
    proto = register_protocol(_PlaintextTestProtocol())
    unregister_protocol(proto.name)
    with pytest.raises(ConfigurationError, match="unknown"):
        get_protocol("plaintext-test")


def test_federation_chooses_its_protocol_by_name(plaintext_protocol):
    import fedbench as fb

    with pytest.raises(ConfigurationError, match="unknown"):
        fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, ledger_path=":memory:", secagg="no-such")
    fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, ledger_path=":memory:",
                        secagg="plaintext-test")
    fed.add_party("a", pl.DataFrame({"x": [1.0, 2.0]}))
    fed.add_party("b", pl.DataFrame({"x": [3.0]}))
    assert float(fed.sum("x")) == pytest.approx(6.0)
    assert plaintext_protocol.calls == 1  # the named protocol ran, not Paillier
