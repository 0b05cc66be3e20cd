"""The CKKS secure-aggregation protocol ("ckks"): sums within the reported bound, transcript, refusals."""

from __future__ import annotations

import sys
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench as fb
import fedbench.secagg.ckks as ck
from fedbench.backend import InProcessBackend
from fedbench.crypto.packing import Encoding
from fedbench.crypto.paillier import generate_keys
from fedbench.errors import (
    ConfigurationError,
    EncodingRangeError,
    FeatureUnavailableError,
    InsecureParameterError,
    NonFiniteValueError,
    ProtocolError,
)
from fedbench.party import Party
from fedbench.secagg import CKKSParams, CKKSSecAgg, available_protocols, get_protocol, secure_aggregate
from fedbench.transcript import Channel, Transcript

from .conftest import TEST_KEY_BITS

_KEYS = generate_keys(TEST_KEY_BITS, allow_insecure_key_size=True)
_BACKEND = InProcessBackend(parallel=False)
_ENC = Encoding.for_range(2.0**20, 16)


def _parties(n: int) -> list[Party]:
    return [Party(f"p{i}", pl.DataFrame({"i": [i]})) for i in range(n)]


def _run(vectors: list[np.ndarray], *, protocol: str | CKKSSecAgg = "ckks", encoding: Encoding = _ENC,
         **kwargs):
    channel = Channel("secure_sum", [Transcript(keep_payloads=True)], keep_payloads=True)
    local = kwargs.pop("local", lambda df: {"x": vectors[int(df["i"][0])]})
    if isinstance(protocol, CKKSSecAgg):
        out = protocol.aggregate(_parties(len(vectors)), local, keys=_KEYS, backend=_BACKEND, channel=channel,
                                 encoding=encoding, **kwargs)
    else:
        out = secure_aggregate(_parties(len(vectors)), local, keys=_KEYS, backend=_BACKEND, channel=channel,
                               encoding=encoding, protocol=protocol, **kwargs)
    return out, channel


# -- parameters (no TenSEAL needed) ----------------------------------------------------------------------
def test_he_standard_table_and_automatic_parameters_are_128_bit():
    assert ck.HE_STANDARD_128 == {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
    for n_parties, max_abs, frac in [(2, 1.0, 8), (10, 2.0**20, 16), (4, 2.0**62, 24), (50, 2.0**40, 30)]:
        p = CKKSParams.for_range(n_parties, max_abs, frac)
        assert sum(p.coeff_mod_bit_sizes) <= ck.HE_STANDARD_128[p.poly_modulus_degree]
        p.check_range(n_parties, max_abs)  # the range fits
        b = p.error_bound(n_parties, max_abs)
        assert b.noise + 8 * b.flood_std <= 2.0 ** -(frac + 1)  # noise terms below half the resolution
        assert b.flood_std == pytest.approx(2.0**ck.FLOOD_BITS * b.noise)
    # secure_sum's default range for ten parties: ring dimension 8192, two 60-bit ciphertext primes.
    assert CKKSParams.for_range(10, 2.0**20, 16).coeff_mod_bit_sizes == (60, 60, 60)
    assert CKKSParams.for_range(10, 2.0**20, 16).poly_modulus_degree == 8192


def test_parameters_below_128_bits_are_refused_naming_the_parameter():
    with pytest.raises(InsecureParameterError, match=r"coeff_mod_bit_sizes=\[60, 60, 60, 60\] total 240 bits.*218"):
        CKKSParams(8192, (60, 60, 60, 60), 40)
    with pytest.raises(InsecureParameterError, match="poly_modulus_degree=4096"):
        CKKSParams(4096, (60, 60), 40)
    CKKSParams(8192, (60, 60, 60, 38), 40)  # exactly at the table's 218 bits: accepted
    with pytest.raises(ConfigurationError, match="poly_modulus_degree must be one of"):
        CKKSParams(6000, (60, 60), 40)
    with pytest.raises(ConfigurationError, match="coeff_mod_bit_sizes must be at least two"):
        CKKSParams(8192, (60,), 40)
    with pytest.raises(ConfigurationError, match="scale_bits must be an integer from 20 to 55"):
        CKKSParams(8192, (59, 59), 57)
    with pytest.raises(ConfigurationError, match="params must be a CKKSParams"):
        CKKSSecAgg(params={"poly_modulus_degree": 8192})  # type: ignore[arg-type]


def test_a_range_that_does_not_fit_the_modulus_is_refused_naming_max_abs():
    p = CKKSParams(8192, (60, 60, 60), 70)
    p.check_range(10, 2.0**40)
    with pytest.raises(ConfigurationError, match=r"max_abs=1\.15292e\+18 is too large"):
        p.check_range(10, 2.0**60)


def test_ckks_is_registered_with_its_trust_model():
    assert "ckks" in available_protocols()
    proto = get_protocol("ckks")
    assert isinstance(proto, CKKSSecAgg)
    tm = proto.trust_model
    assert tm.trusted == ("aggregator", "keyholder")
    assert "aggregator colluding with the key holder" in tm.broken_by
    assert "single key holder" in tm.text and "approximate" in tm.text and "Li-Micciancio" in tm.text


def test_missing_tenseal_is_a_clear_error_before_any_party_runs(monkeypatch):
    calls = []

    def local(df):
        calls.append(1)
        return {"x": 1.0}

    monkeypatch.setitem(sys.modules, "tenseal", None)  # import tenseal now raises ImportError
    channel = Channel("secure_sum", [Transcript()])
    with pytest.raises(FeatureUnavailableError, match=r"needs TenSEAL.*pip install 'fedbench\[ckks\]'"):
        secure_aggregate(_parties(2), local, keys=_KEYS, backend=_BACKEND, channel=channel, encoding=_ENC,
                         protocol="ckks")
    assert calls == [] and len(channel.run) == 0


def test_cost_model_without_running():
    est = get_protocol("ckks").cost_model(10, 100_000, 2048)
    assert est.ciphertexts_per_party == 25  # 4096 slots per ciphertext
    assert est.bytes_per_party == 25 * (2 * 8 * 8192 * 2 + 516)
    assert est.messages == 33
    assert est.operations == {"encrypt": 250, "add": 225, "decrypt": 25}


# -- protocol runs (TenSEAL; skipped without it) -------------------------------------------------------------
@pytest.fixture(scope="class")
def tenseal():
    return pytest.importorskip("tenseal")


@pytest.mark.usefixtures("tenseal")
class TestProtocol:
    @settings(max_examples=8, deadline=None)
    @given(
        n=st.integers(2, 5),
        length=st.integers(1, 300),
        scale=st.sampled_from([1.0, 1e3, 1e5]),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_sums_match_the_plaintext_sum_within_the_reported_bound(self, n, length, scale, seed):
        rng = np.random.default_rng(seed)
        vectors = [rng.uniform(-scale, scale, length) for _ in range(n)]
        out, _ = _run(vectors)
        assert out.protocol == "ckks" and out.error_bound is not None
        err = np.abs(np.asarray(out.value["x"]) - np.sum(vectors, axis=0))
        assert err.max() <= out.error_bound
        assert out.error_bound < 2.0**-16  # the bound is meaningful at the default resolution


    def test_vectors_longer_than_one_ciphertext_and_the_bound_is_not_vacuous(self):
        rng = np.random.default_rng(7)
        vectors = [rng.normal(0, 1000, 9000) for _ in range(3)]  # three ciphertexts of 4096 slots
        out, _ = _run(vectors)
        assert out.ciphertexts_per_party == 3
        err = np.asarray(out.value["x"]) - np.sum(vectors, axis=0)
        assert np.abs(err).max() <= out.error_bound
        # The error is the flooding noise: its spread is the declared standard deviation, not zero.
        flood = CKKSParams.for_range(3, _ENC.max_abs, _ENC.frac_bits).error_bound(3, _ENC.max_abs).flood_std
        assert 0.8 * flood < err.std() < 1.2 * flood


    @pytest.mark.slow
    def test_large_vectors_are_encrypted_on_the_worker_pool(self, monkeypatch):
        monkeypatch.setattr(ck, "_PARALLEL_MIN_BLOCKS", 2)
        calls = []
        backend = InProcessBackend(parallel=True)
        real = backend.map_heavy

        def spy(fn, items):
            calls.append(len(items))
            return real(fn, items)

        monkeypatch.setattr(backend, "map_heavy", spy)
        rng = np.random.default_rng(11)
        vectors = [rng.normal(0, 1, 3 * 4096) for _ in range(2)]
        channel = Channel("secure_sum", [Transcript()])
        out = get_protocol("ckks").aggregate(
            _parties(2), lambda df: {"x": vectors[int(df["i"][0])]}, keys=_KEYS, backend=backend,
            channel=channel, encoding=_ENC)
        if backend.heavy_workers > 1:
            assert calls and all(c > 1 for c in calls)  # each party's blocks went out in several chunks
        assert np.abs(out.value["x"] - np.sum(vectors, axis=0)).max() <= out.error_bound

    def test_the_noise_model_bounds_the_measured_encryption_noise(self):
        # With a small scale the encryption noise is measurable; flooding is switched off to see it.
        params = CKKSParams(8192, (60, 60, 60), 25)
        rng = np.random.default_rng(3)
        vectors = [rng.uniform(-1, 1, 4096) for _ in range(4)]
        with mock.patch.object(ck, "_gaussian", lambda k: np.zeros(k)):
            out, _ = _run(vectors, protocol=CKKSSecAgg(params))
        err = np.asarray(out.value["x"]) - np.sum(vectors, axis=0)
        assert err.std() <= params.noise_std(4)
        assert np.abs(err).max() <= params.error_bound(4, 1.0).noise
        assert err.std() > 0  # there is noise to bound


    def test_flooding_noise_is_fresh_csprng_noise_on_every_release(self):
        vectors = [np.zeros(2000), np.zeros(2000)]
        a, _ = _run(vectors)
        b, _ = _run(vectors)
        assert not np.array_equal(a.value["x"], b.value["x"])
        z = ck._gaussian(200_000)
        assert abs(z.mean()) < 0.01 and 0.99 < z.std() < 1.01


    def test_transcript_carries_only_public_context_layout_and_ciphertexts(self):
        rng = np.random.default_rng(1)
        vectors = [rng.normal(0, 10, 500) for _ in range(3)]
        out, channel = _run(vectors)
        msgs = list(channel.run)
        kinds = [(m.sender, m.receiver, m.kind, m.encrypted) for m in msgs]
        assert kinds[:4] == [("keyholder", r, "public-key", False) for r in ("p0", "p1", "p2", "aggregator")]
        assert kinds[4:10] == [(p, "aggregator", k, e) for p in ("p0", "p1", "p2")
                               for k, e in (("layout", False), ("ciphertexts", True))]
        assert kinds[10:] == [("aggregator", "keyholder", "aggregate-ciphertexts", True),
                              ("keyholder", "analyst", "aggregate", False)]
        assert all(m.nbytes > 0 and m.nbytes == len(m.payload) for m in msgs)
        # The public context holds no secret key; ciphertexts are SEAL ciphertexts of the declared size.
        public = msgs[0].payload
        assert not sys.modules["tenseal"].context_from(public).is_private()
        upload = next(m for m in msgs if m.kind == "ciphertexts")
        assert upload.nbytes >= 2 * 8 * 8192 * 2  # two polynomials over two 60-bit primes, 8192 coefficients
        # No party's values appear in any message except, summed and flooded, the release.
        for vec in vectors:
            for m in msgs:
                assert vec[:4].astype("<f8").tobytes() not in m.payload
                assert vec[:4].astype("<f4").tobytes() not in m.payload
        released = np.frombuffer(msgs[-1].payload, dtype="<f8")
        assert np.array_equal(released, out.value["x"])
        # The estimate matches the transcript within 1% (layout messages aside).
        est = get_protocol("ckks").cost_model(3, 500, 2048)
        data_bytes = sum(m.nbytes for m in msgs if m.kind != "layout")
        assert abs(est.total_bytes - data_bytes) <= 0.01 * data_bytes
        assert est.messages == len(msgs)


    def test_each_run_has_a_fresh_key(self):
        vectors = [np.ones(3), np.ones(3)]
        _, c1 = _run(vectors)
        _, c2 = _run(vectors)
        assert next(iter(c1.run)).payload != next(iter(c2.run)).payload


    def test_values_beyond_the_range_name_the_party_and_entry_not_the_value(self):
        secret = 3_141_592.6535
        vectors = [np.array([1.0, 2.0]), np.array([1.0, secret])]

        def local(df):
            i = int(df["i"][0])
            return {"a": vectors[i][0], "b": vectors[i][1]}

        with pytest.raises(EncodingRangeError) as info:
            _run(vectors, local=local)
        out_err = info.value
        msg = str(out_err)
        assert out_err.party == "p1" and out_err.column == "b"
        assert "'p1'" in msg and "'b'" in msg and "max_abs" in msg
        assert "3141592" not in msg and "3.14" not in msg


    def test_non_finite_values_and_mismatched_shapes_are_refused(self):
        with pytest.raises(NonFiniteValueError, match="'p1'.*'x'"):
            _run([np.ones(3), np.array([1.0, np.nan, 2.0])])
        with pytest.raises(ProtocolError, match="party 'p1' returned entries that differ"):
            _run([np.ones(3), np.ones(4)])

    def test_ciphertexts_that_do_not_match_name_their_sender(self, monkeypatch):
        real = ck._encrypt_blocks
        seen = []

        def odd_scale(item):
            ctx, scale_bits, blocks = item
            seen.append(1)
            return real((ctx, scale_bits - 5 if len(seen) == 2 else scale_bits, blocks))

        monkeypatch.setattr(ck, "_encrypt_blocks", odd_scale)
        with pytest.raises(ProtocolError, match="party 'p1' sent ciphertexts that do not match"):
            _run([np.ones(3), np.ones(3)])

    def test_dp_noise_is_refused_before_any_party_runs(self):
        calls = []

        def local(df):
            calls.append(1)
            return {"x": 1.0}

        def noise(names, shapes, frac_bits):
            return np.zeros(1, dtype=np.int64)

        with pytest.raises(ConfigurationError, match="use secagg='paillier' for DP"):
            _run([np.ones(1), np.ones(1)], local=local, party_noise=noise)
        assert calls == []


    def test_federation_secagg_ckks_end_to_end_with_integer_entries(self):
        rng = np.random.default_rng(5)
        data = {f"h{i}": pl.DataFrame({"x": rng.normal(50, 10, 40), "k": rng.integers(0, 9, 40)}) for i in range(3)}
        fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, secagg="ckks", max_abs=2.0**20)
        fed.add_parties(data)
        pooled = pl.concat(list(data.values()))
        r = fed.secure_sum(["x", "k"])
        assert r.protocol == "ckks" and r.error_bound is not None and r.error_bound < 1e-4
        assert abs(r["x"] - pooled["x"].sum()) <= r.error_bound
        assert r["k"] == pooled["k"].sum() and isinstance(r["k"], int)  # rounded: the bound is below 0.5
        text = repr(r)
        assert "CKKS (TenSEAL/SEAL), ring dimension 8192" in text and "128-bit security" in text
        assert "of the exact sum (reported bound)" in text and "CKKS with a single key holder" in text
        assert "error bound" in r._repr_html_()
        r2 = fed.secure_sum(lambda df: {"m": df["x"].to_numpy()[:5]})
        assert np.abs(r2["m"] - sum(d["x"].to_numpy()[:5] for d in data.values())).max() <= r2.error_bound


    def test_a_statistic_over_ckks_states_its_error_bound(self):
        rng = np.random.default_rng(6)
        data = {f"h{i}": pl.DataFrame({"x": rng.normal(50, 10, 40)}) for i in range(3)}
        fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, max_abs=2.0**20)
        fed.add_parties(data)
        m = fed.mean("x", protocol="ckks")
        assert float(m) == pytest.approx(float(fed.mean("x")), abs=1e-6)
        bound = max(r.error_bound for r in m.runs)
        assert m.runs[0].protocol == "ckks" and bound is not None
        # The trust model promises "a reported error bound": the statistic reports it (text and card).
        assert "error bound" in repr(m) and f"±{bound:.3g}" in repr(m) and "error bound" in m._repr_html_()
        assert "error bound" not in repr(fed.mean("x"))

    def test_paillier_results_are_unchanged(self):
        data = {f"h{i}": pl.DataFrame({"x": [1.5, 2.5]}) for i in range(2)}
        fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True)
        fed.add_parties(data)
        r = fed.secure_sum(["x"])
        assert r.protocol == "paillier" and r.error_bound is None and r.scheme == ""
        assert f"{TEST_KEY_BITS}-bit Paillier" in repr(r) and "reported bound" not in repr(r)
