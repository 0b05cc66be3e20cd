"""The multiparty CKKS protocol ("ckks-multiparty", OpenFHE): sums within the bound, transcript, refusals.

These tests need an interpreter that imports OpenFHE (``$FEDBENCH_OPENFHE_PYTHON``, see
``fedbench/secagg/openfhe_engine.py``); the test session makes one from the machine's CPython
3.10 (``tests/conftest.py``).  Without it they fail with fedbench's set-up instructions: they
are never skipped.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedbench as fb
import fedbench.secagg.ckks_multiparty as ckm
import fedbench.secagg.openfhe_engine as oe
from fedbench.backend import InProcessBackend
from fedbench.crypto.packing import Encoding
from fedbench.errors import (
    ConfigurationError,
    EncodingRangeError,
    FeatureUnavailableError,
    InsecureParameterError,
    NonFiniteValueError,
    PartyUnavailableError,
)
from fedbench.party import Party, recall_in_party
from fedbench.secagg import (
    MultipartyCKKSParams,
    MultipartyCKKSSecAgg,
    available_protocols,
    get_protocol,
    secure_aggregate,
)
from fedbench.transcript import Channel, Transcript

from .conftest import TEST_KEY_BITS

_BACKEND = InProcessBackend(parallel=False)
_ENC = Encoding.for_range(2.0**20, 16)


def _parties(n: int) -> list[Party]:
    return [Party(f"p{i}", pl.DataFrame({"i": [i]})) for i in range(n)]


def _run(vectors, **kwargs):
    channel = Channel("secure_sum", [Transcript(keep_payloads=True)], keep_payloads=True)
    local = kwargs.pop("local", lambda df: {"x": vectors[int(df["i"][0])]})
    out = secure_aggregate(_parties(len(vectors)), local, keys=None, backend=_BACKEND, channel=channel,
                           encoding=kwargs.pop("encoding", _ENC), protocol="ckks-multiparty", **kwargs)
    return out, channel


@pytest.fixture
def engines(monkeypatch):
    """Every engine process started during a test."""
    started: list[oe.Engine] = []
    real = oe.Engine.__init__

    def init(self, role):
        real(self, role)
        started.append(self)

    monkeypatch.setattr(oe.Engine, "__init__", init)
    return started


# -- parameters and registration (no engine needed) ---------------------------------------------------
def test_registered_with_the_lattice_multiparty_trust_model():
    assert "ckks-multiparty" in available_protocols()
    proto = get_protocol("ckks-multiparty")
    assert isinstance(proto, MultipartyCKKSSecAgg) and proto.needs_keys is False
    tm = proto.trust_model
    assert "lattice multiparty" in tm.text and "no single key holder" in tm.text
    assert "n-of-n" in tm.text and "approximate" in tm.text and "NOISE_FLOODING_DECRYPT" in tm.text
    # The collusion named excludes the victim: the other n - 1 parties (through the sum), or a deviating aggregator.
    assert "keyholder" not in tm.trusted and "the aggregator with the other n - 1 parties" in tm.broken_by
    assert "anything but the sum" in tm.broken_by and "excludes a party" in tm.text


def test_parameters_below_128_bits_are_refused_naming_the_parameter():
    for ring in (1024, 2048, 4096):  # OpenFHE's 119-bit noise-flooding modulus needs ring dimension 8192
        with pytest.raises(InsecureParameterError, match=rf"ring_dim={ring}.*128-bit"):
            MultipartyCKKSParams(ring)
    with pytest.raises(ConfigurationError, match="ring_dim must be one of"):
        MultipartyCKKSParams(5000)
    with pytest.raises(ConfigurationError, match="must be a MultipartyCKKSParams"):
        MultipartyCKKSSecAgg(params=8192)  # type: ignore[arg-type]
    assert MultipartyCKKSParams().ring_dim == 8192 and MultipartyCKKSParams(16384).slots == 8192


def test_a_range_openfhe_cannot_decode_is_refused_before_any_party_runs():
    calls = []

    def local(df):
        calls.append(1)
        return {"x": 1.0}

    with pytest.raises(ConfigurationError, match="max_abs=.*too large for multiparty CKKS"):
        _run([1, 2], local=local, encoding=Encoding.for_range(2.0**62, 24))
    assert calls == []


def test_dp_noise_is_refused_before_any_party_runs():
    calls = []

    def local(df):
        calls.append(1)
        return {"x": 1.0}

    with pytest.raises(ConfigurationError, match="use secagg='paillier' for DP"):
        _run([1, 2], local=local, party_noise=lambda names, shapes, frac: np.zeros(1, dtype=np.int64))
    assert calls == []


def test_no_openfhe_interpreter_is_a_clear_error_before_any_party_runs(monkeypatch, engines):
    calls = []

    def local(df):
        calls.append(1)
        return {"x": 1.0}

    monkeypatch.setenv(oe.ENV_VAR, "/nonexistent/python3.10")
    with pytest.raises(FeatureUnavailableError, match=r"python3\.10 -m venv.*openfhe==1\.6\.1\.0\.22\.4.*"
                                                      r"FEDBENCH_OPENFHE_PYTHON"):
        _run([1, 2], local=local)
    assert calls == [] and engines == []


def test_cost_model_matches_the_transcript(engines):
    rng = np.random.default_rng(1)
    vectors = [rng.normal(0, 10, 500) for _ in range(3)]
    _, channel = _run(vectors)
    msgs = list(channel.run)
    est = get_protocol("ckks-multiparty").cost_model(3, 500, 2048)
    data_bytes = sum(m.nbytes for m in msgs if m.kind not in ("layout", "parameters"))
    assert abs(est.total_bytes - data_bytes) <= 0.02 * data_bytes
    assert est.messages == len(msgs) and est.ciphertexts_per_party == 1


# -- runs (need the OpenFHE interpreter) -------------------------------------------------------------
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 4), length=st.integers(1, 5000), scale=st.sampled_from([1e-3, 1.0, 1e4]),
       seed=st.integers(0, 2**32 - 1))
def test_sums_match_the_plaintext_sum_within_the_reported_bound(n, length, scale, seed):
    rng = np.random.default_rng(seed)
    vectors = [rng.uniform(-scale, scale, length) for _ in range(n)]
    out, _ = _run(vectors)
    err = np.abs(np.asarray(out.value["x"]) - np.sum(vectors, axis=0)).max()
    assert out.protocol == "ckks-multiparty" and out.error_bound is not None
    assert err <= out.error_bound < 0.01  # not vacuous either
    assert out.ciphertexts_per_party == -(-length // 4096)


def test_transcript_holds_key_shares_and_partial_decryptions_but_no_secret_key(monkeypatch, engines):
    monkeypatch.setenv("FEDBENCH_OPENFHE_TEST_EXPORT", "1")  # lets this test read each party's secret share
    secrets_seen: dict[str, bytes] = {}
    real = ckm._party_partial

    def partial_and_export(df, *, key, aggregate, lead):
        state = recall_in_party(df, key=key, keep=True)
        secrets_seen[state.engine.role] = state.engine.call("export_secret")
        return real(df, key=key, aggregate=aggregate, lead=lead)

    monkeypatch.setattr(ckm, "_party_partial", partial_and_export)
    rng = np.random.default_rng(2)
    vectors = [rng.normal(0, 10, 300) for _ in range(3)]
    out, channel = _run(vectors)
    msgs = list(channel.run)
    kinds = [(m.sender, m.receiver, m.kind, m.encrypted) for m in msgs]
    names = ["p0", "p1", "p2"]
    chain = [k for k in kinds if k[2] == "public-key-share"]
    assert chain == [("p0", "p1", "public-key-share", False), ("p1", "p2", "public-key-share", False),
                     ("p2", "aggregator", "public-key-share", False)]
    assert [k for k in kinds if k[2] == "public-key"] == [("aggregator", p, "public-key", False) for p in names]
    assert [k for k in kinds if k[2] == "partial-decryption"] == [
        (p, "aggregator", "partial-decryption", True) for p in names]
    assert kinds[-1] == ("aggregator", "analyst", "aggregate", False)
    assert not any(k[1] == "keyholder" or k[0] == "keyholder" for k in kinds)  # there is no key holder
    # Each party's public-key contribution is a different key (the chain grows the joint key).
    shares = [m.payload for m in msgs if m.kind == "public-key-share"]
    assert len(set(shares)) == 3 and all(len(s) > 2 * 8 * 8192 for s in shares)
    # No message carries any party's secret share (a 64-byte window from its polynomial data).
    assert set(secrets_seen) == set(names)
    for sk in secrets_seen.values():
        assert len(sk) > 8 * 8192
        probes = [sk[i : i + 64] for i in range(len(sk) // 4, len(sk) - 64, len(sk) // 4)]
        for m in msgs:
            assert not any(p in m.payload for p in probes)
    # Nor any party's values; the release is the returned value.
    for vec in vectors:
        for m in msgs:
            assert vec[:4].astype("<f8").tobytes() not in m.payload
    assert np.array_equal(np.frombuffer(msgs[-1].payload, dtype="<f8"), out.value["x"])
    # Every engine (3 parties, the aggregator) is stopped at the end of the run.
    assert len(engines) == 4 and all(e.proc.poll() is not None for e in engines)


def test_each_run_has_fresh_keys():
    _, c1 = _run([np.ones(3), np.ones(3)])
    _, c2 = _run([np.ones(3), np.ones(3)])
    k1 = next(m.payload for m in c1.run if m.kind == "public-key")
    k2 = next(m.payload for m in c2.run if m.kind == "public-key")
    assert k1 != k2


@pytest.mark.parametrize("when", ["before its partial decryption", "while decrypting"])
def test_a_party_missing_at_decryption_is_named_and_nothing_is_released(monkeypatch, engines, when):
    real = ckm._party_partial

    def dies(df, *, key, aggregate, lead):
        state = recall_in_party(df, key=key, keep=True)
        if state.engine.role == "p1" and when == "before its partial decryption":
            with pytest.raises(oe.EngineError):
                state.engine.call("exit", 1)  # the engine process dies before it is asked
        real(df, key=key, aggregate=aggregate, lead=lead)
        if state.engine.role == "p1" and when == "while decrypting":
            state.engine.proc.kill()  # dies after the request, before its answer is collected
            state.engine.proc.wait()

    monkeypatch.setattr(ckm, "_party_partial", dies)
    channel = Channel("secure_sum", [Transcript(keep_payloads=True)], keep_payloads=True)
    with pytest.raises(PartyUnavailableError, match=r"party 'p1' did not return its partial decryption.*"
                                                    r"all 3 parties.*nothing is released") as info:
        secure_aggregate(_parties(3), lambda df: {"x": np.ones(4) * 7.25}, keys=None, backend=_BACKEND,
                         channel=channel, encoding=_ENC, protocol="ckks-multiparty")
    assert info.value.party == "p1"
    kinds = [m.kind for m in channel.run]
    assert "partial-decryption" not in kinds and "aggregate" not in kinds
    assert all(e.proc.poll() is not None for e in engines)  # the survivors' engines are stopped too


def test_values_beyond_the_range_name_the_party_and_entry_not_the_value(engines):
    secret = 3_141_592.6535
    vectors = [np.array([1.0, 2.0]), np.array([1.0, secret])]

    def local(df):
        i = int(df["i"][0])
        return {"a": vectors[i][0], "b": vectors[i][1]}

    channel_err = None
    with pytest.raises(EncodingRangeError) as info:
        _run(vectors, local=local)
    channel_err = info.value
    assert channel_err.party == "p1" and channel_err.column == "b"
    assert "3141592" not in str(channel_err) and "3.14" not in str(channel_err)
    with pytest.raises(NonFiniteValueError, match="'p1'.*'x'"):
        _run([np.ones(3), np.array([1.0, np.nan, 2.0])])
    assert all(e.proc.poll() is not None for e in engines)


def test_federation_secure_sum_and_a_statistic_state_the_bound_and_threat_model():
    rng = np.random.default_rng(5)
    data = {f"h{i}": pl.DataFrame({"x": rng.normal(50, 10, 40), "k": rng.integers(0, 9, 40)}) for i in range(3)}
    fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, max_abs=2.0**20)
    fed.add_parties(data)
    pooled = pl.concat(list(data.values()))
    r = fed.secure_sum(lambda df: {"x": df["x"].sum(), "k": df["k"].sum()}, protocol="ckks-multiparty")
    assert r.protocol == "ckks-multiparty" and r.error_bound is not None and r.error_bound < 0.01
    assert abs(r["x"] - pooled["x"].sum()) <= r.error_bound
    assert r["k"] == pooled["k"].sum() and isinstance(r["k"], int)  # rounded: the bound is below 0.5
    text = repr(r)
    assert "multiparty CKKS (OpenFHE), ring dimension 8192" in text and "128-bit security" in text
    assert "lattice multiparty" in r.threat_text and "no single key holder" in r.threat_text
    assert "IND-CPA sense only" in r.threat_text  # OpenFHE's own limit for threshold CKKS, stated per run
    m = fed.mean("x", protocol="ckks-multiparty")
    assert float(m) == pytest.approx(float(fed.mean("x")), abs=1e-3)
    bound = max(run.error_bound for run in m.runs)
    assert m.runs[0].protocol == "ckks-multiparty" and "error bound" in repr(m) and f"±{bound:.3g}" in repr(m)


def test_decryption_is_flooded_and_large_values_stay_within_the_bound():
    # Without NOISE_FLOODING_DECRYPT the slot error of this sum has a standard deviation of about 2e-10
    # (measured, same ring and moduli: encryption noise and OpenFHE's smudging only); flooded, about 1e-4.
    # A protocol that stopped flooding would fail here.
    out, _ = _run([np.zeros(4096), np.zeros(4096)])
    err = np.asarray(out.value["x"])
    assert 2e-5 < err.std() < out.error_bound / 6
    assert out.details["decryption"] == "n-of-n" and out.details["calibrated_std"] > 2e-5
    # Near the largest range OpenFHE decodes (n * max_abs <= 2**45) the bound still holds.
    rng = np.random.default_rng(3)
    vectors = [rng.uniform(-(2.0**40), 2.0**40, 3000) for _ in range(2)]
    big, _ = _run(vectors, encoding=Encoding.for_range(2.0**41, 0))
    assert np.abs(np.asarray(big.value["x"]) - np.sum(vectors, axis=0)).max() <= big.error_bound


def test_parties_in_their_own_processes_start_their_own_engines():
    rng = np.random.default_rng(7)
    data = {f"h{i}": pl.DataFrame({"x": rng.normal(50, 10, 40)}) for i in range(3)}
    fed = fb.Federation(TEST_KEY_BITS, allow_insecure_key_size=True, max_abs=2.0**20, backend="process")
    try:
        fed.add_parties(data)
        r = fed.secure_sum(lambda df: {"x": df["x"].sum()}, protocol="ckks-multiparty")
    finally:
        fed.close()
    assert abs(r["x"] - pl.concat(list(data.values()))["x"].sum()) <= r.error_bound


def test_setup_openfhe_keeps_a_working_environment(monkeypatch):
    python = oe.openfhe_python()
    calls = []
    real = oe.subprocess.run

    def run(cmd, *args, **kwargs):
        calls.append(cmd)
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(oe.subprocess, "run", run)
    root = str(__import__("pathlib").Path(python).parent.parent)
    assert oe.install_openfhe(root) == python
    # Only the import check ran: no venv was made and pip installed nothing.
    assert all("venv" not in c and "pip" not in c for c in calls) and calls


def test_setup_openfhe_without_a_python310_says_what_to_install(monkeypatch, tmp_path, capsys):
    from fedbench.cli import main

    monkeypatch.setattr(oe, "find_python310", lambda: None)
    with pytest.raises(FeatureUnavailableError, match=r"needs a CPython 3\.10 and none was found"):
        oe.install_openfhe(str(tmp_path / "env"))
    assert main(["setup-openfhe", "--target", str(tmp_path / "env")]) == 2
    assert "pyenv install 3.10" in capsys.readouterr().err
    assert not (tmp_path / "env").exists()  # nothing was made


def test_the_engine_itself_refuses_a_modulus_beyond_128_bits_for_its_ring(engines):
    # fedbench's parameter check runs first; the engine checks again the modulus OpenFHE actually built.
    engine = oe.Engine("aggregator")
    try:
        with pytest.raises(oe.EngineError, match="beyond 128-bit security for ring dimension 4096"):
            engine.call("setup", 4096, 60, ckm.SCALE_BITS, 1, 20.0)
    finally:
        engine.close()


def test_an_engine_refuses_to_export_its_secret_share_by_default(monkeypatch):
    monkeypatch.delenv("FEDBENCH_OPENFHE_TEST_EXPORT", raising=False)
    engine = oe.Engine("p0")
    try:
        engine.call("setup", 8192, 60, ckm.SCALE_BITS, 1, 20.0)
        engine.call("keygen", None)
        with pytest.raises(oe.EngineError, match="secret export is disabled"):
            engine.call("export_secret")
    finally:
        engine.close()


_FUSION_SCRIPT = r"""
import math, sys
sys.path.insert(0, sys.argv[1])
import openfhe_worker as w
ring, first, scale, depth, n = 8192, 60, int(sys.argv[2]), 1, 3
est, _, _ = w.op_calibrate(ring, first, scale, depth, n)
cc = w._context(ring, first, scale, depth, est)
kps = [cc.KeyGen()]
for _ in range(n - 1):
    kps.append(cc.MultipartyKeyGen(kps[-1].publicKey))
tot = None
for _ in range(n):
    ct = cc.Encrypt(kps[-1].publicKey, cc.MakeCKKSPackedPlaintext([0.0] * (ring // 2)))
    tot = ct if tot is None else cc.EvalAdd(tot, ct)
parts = [cc.MultipartyDecryptLead([tot], kps[0].secretKey)[0]]
parts += [cc.MultipartyDecryptMain([tot], k.secretKey)[0] for k in kps[1:]]
def fuse():
    pt = cc.MultipartyDecryptFusion(parts)
    pt.SetLength(ring // 2)
    return pt.GetRealPackedValue()
a, b = fuse(), fuse()
sd = lambda x: math.sqrt(sum(v * v for v in x) / len(x))
print(sd(a), sd([x - y for x, y in zip(a, b)]) / math.sqrt(2))
"""


def test_where_the_flooding_noise_is_added():
    # What SECURITY.md states: part of the flooding is added when the aggregator's own engine fuses the
    # partial decryptions (fusing the same partials twice gives different values), which an aggregator
    # holding the partials could skip; the partial decryptions themselves carry the rest.
    import subprocess
    from pathlib import Path

    out = subprocess.run([oe.openfhe_python(), "-I", "-c", _FUSION_SCRIPT, str(Path(ckm.__file__).parent),
                          str(ckm.SCALE_BITS)], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    total, fresh = (float(x) for x in out.stdout.split())
    in_partials = (total**2 - fresh**2) ** 0.5
    assert fresh > 1e-6  # added at fusion, in the aggregator's engine
    assert in_partials > 1e-6  # carried by the partial decryptions (about 2e-10 without the flooding mode)
