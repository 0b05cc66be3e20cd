"""Threshold Paillier (Damgard-Jurik, s = 1): any t share holders decrypt, t - 1 cannot, bad shares are named."""

from __future__ import annotations

import dataclasses
import itertools
import math

import gmpy2
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

import fedbench as fb
from fedbench.crypto.arithmetic import cached_encryptor
from fedbench.crypto.threshold import (
    combine,
    deal_threshold_keys,
    lagrange_coefficients,
    partial_decrypt,
    safe_prime,
    verify_partial,
)
from fedbench.errors import (
    ConfigurationError,
    InsecureParameterError,
    InvalidPartialDecryptionError,
    TooFewKeySharesError,
)
from fedbench.secagg import keyholders
from fedbench.wire import bytes_to_ints

from .conftest import make_fed

BITS = 512
NAMES = [f"p{i}" for i in range(5)]
T = 3
#: One dealt key reused by every test (safe-prime generation is the slow part).
KEYS = deal_threshold_keys(NAMES, T, BITS, allow_insecure_key_size=True)
ENC = cached_encryptor(KEYS.n, KEYS.h_s)


def _partials(cts: list[int], names: list[str]) -> list:
    return [partial_decrypt(KEYS.params, KEYS.shares[nm], cts) for nm in names]


# -- the scheme --------------------------------------------------------------------------------
def test_dealt_key_shape():
    n = KEYS.n
    assert n.bit_length() == BITS
    assert KEYS.threshold == T and KEYS.holders == NAMES and KEYS.setup == "dealer"
    assert len(KEYS.params.verification_keys) == len(NAMES)
    assert KEYS.params.delta == math.factorial(len(NAMES))
    # The public key is an ordinary phe key; the repr never shows a share.
    assert isinstance(KEYS.public_key, paillier.PaillierPublicKey) and KEYS.public_key.n == n
    share = KEYS.shares["p0"]
    assert str(share.value) not in repr(KEYS) + repr(share) + repr(KEYS.shares)


def test_safe_prime_is_safe():
    p = safe_prime(160)
    assert p.bit_length() == 160 and p >> 158 == 0b11
    assert gmpy2.is_prime(p) and gmpy2.is_prime((p - 1) // 2)


@settings(max_examples=15)
@given(st.lists(st.integers(min_value=0), min_size=1, max_size=4), st.permutations(NAMES), st.booleans())
def test_any_t_parties_decrypt(values, order, textbook):
    n = KEYS.n
    ms = [v % n for v in values]
    # Ciphertexts from the DJN fast encryption and from phe's textbook encryption both decrypt.
    cts = ENC.encrypt_many(ms) if not textbook else [KEYS.public_key.raw_encrypt(m) for m in ms]
    chosen = sorted(order[:T])
    parts = _partials(cts, chosen)
    assert all(verify_partial(KEYS.params, cts, p) for p in parts)
    assert combine(KEYS.params, parts) == ms


def test_every_subset_of_t_decrypts_and_no_subset_of_t_minus_1_does():
    ms = [424242, 0, KEYS.n - 1]
    cts = ENC.encrypt_many(ms)
    parts = {p.party: p for p in _partials(cts, NAMES)}
    for subset in itertools.combinations(NAMES, T):
        assert combine(KEYS.params, [parts[s] for s in subset]) == ms
    n = gmpy2.mpz(KEYS.n)
    inv = gmpy2.invert(4 * KEYS.params.delta ** 2, n)
    for subset in itertools.combinations(NAMES, T - 1):
        with pytest.raises(ValueError, match="exactly 3"):
            combine(KEYS.params, [parts[s] for s in subset])
        # Interpolating with only t - 1 shares does not give the plaintext of a known ciphertext.
        idx = [parts[s].index for s in subset]
        lam = lagrange_coefficients(idx, KEYS.params.delta)
        acc = gmpy2.mpz(1)
        for s in subset:
            acc = acc * gmpy2.powmod(parts[s].values[0], 2 * lam[parts[s].index], n * n) % (n * n)
        assert int((acc - 1) // n * inv % n) != ms[0]


def test_tampered_partial_decryption_fails_its_proof():
    cts = ENC.encrypt_many([7, 8])
    good = _partials(cts, ["p2"])[0]
    assert verify_partial(KEYS.params, cts, good)
    n2 = KEYS.params.n2
    wrong_value = dataclasses.replace(good, values=(good.values[0], good.values[1] * 3 % n2))
    wrong_z = dataclasses.replace(good, response=good.response + 1)
    wrong_e = dataclasses.replace(good, challenge=good.challenge ^ 1)
    # A share holder using another party's share, or claiming another index, is caught too.
    stolen = dataclasses.replace(_partials(cts, ["p3"])[0], party="p2", index=good.index)
    for bad in (wrong_value, wrong_z, wrong_e, stolen):
        assert not verify_partial(KEYS.params, cts, bad)
    # Proofs bind the ciphertexts: a correct partial decryption of other ciphertexts is refused.
    assert not verify_partial(KEYS.params, ENC.encrypt_many([7, 8]), good)


def test_dealer_refuses_bad_parameters():
    with pytest.raises(ConfigurationError, match="at least 2"):
        deal_threshold_keys(["a", "b"], 1, BITS, allow_insecure_key_size=True)
    with pytest.raises(ConfigurationError, match="larger than the 2 parties"):
        deal_threshold_keys(["a", "b"], 3, BITS, allow_insecure_key_size=True)
    with pytest.raises(ConfigurationError, match="twice"):
        deal_threshold_keys(["a", "a"], 2, BITS, allow_insecure_key_size=True)
    with pytest.raises(InsecureParameterError):
        deal_threshold_keys(["a", "b"], 2, BITS)


# -- in a federation ---------------------------------------------------------------------------
def _fed(frames: list[pl.DataFrame], **kw) -> fb.Federation:
    f = make_fed(keys="threshold", threshold=T, **kw)
    for name, df in zip(NAMES, frames, strict=True):
        f.add_party(name, df)
    f._keys = KEYS  # the dealt test key (its holders are p0..p4)
    return f


values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=8)
@given(st.lists(st.lists(values, min_size=1, max_size=8), min_size=5, max_size=5))
def test_secure_sum_under_threshold_keys_equals_plaintext(columns):
    res = _fed([pl.DataFrame({"x": c}) for c in columns]).secure_sum("x")
    expected = math.fsum(v for c in columns for v in c)
    assert res.value["x"] == pytest.approx(expected, rel=1e-9, abs=5 * 2**-20)


def _local_sums() -> tuple[list[pl.DataFrame], list[int]]:
    # Distinctive local aggregates, so that the test can look for them in every payload.
    sums = [913_577 + 1_000_003 * i for i in range(5)]
    return [pl.DataFrame({"x": [s - 1, 1]}) for s in sums], sums


def test_transcript_shows_partial_decryptions_and_never_a_local_aggregate():
    frames, sums = _local_sums()
    fed = _fed(frames, audit=True)
    res = fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert res.value["s"] == sum(sums)
    msgs = list(res.transcript)
    partial = [m for m in msgs if m.kind == "partial-decryption"]
    assert [m.sender for m in partial] == NAMES[:T] and {m.receiver for m in partial} == {"aggregator"}
    assert all(m.encrypted and m.nbytes > 0 for m in partial)
    assert [m.receiver for m in msgs if m.kind == "aggregate-ciphertexts"] == NAMES[:T]
    assert not any(m.sender == "keyholder" or m.receiver == "keyholder" for m in msgs)
    [release] = [m for m in msgs if m.receiver == "analyst"]
    assert release.sender == "aggregator"
    for m in msgs:
        assert m.sender in [*NAMES, "aggregator", "dealer"]
        if m.sender in NAMES:
            assert m.kind in {"layout", "ciphertexts", "partial-decryption"}
        if m is not release:
            for s in sums:  # no local aggregate, in text or as a big-endian integer, in any other message
                assert str(s).encode() not in m.payload and s.to_bytes(4, "big") not in m.payload


def test_share_holders_asked_for_one_partys_ciphertext_decrypt_it():
    """The disclosure README and SECURITY.md state: the proofs tie a partial decryption to the
    ciphertexts asked for, not to the sum, so t holders that partially decrypt what a deviating
    aggregator sends them reveal one party's local aggregate (outside honest-but-curious)."""
    frames, sums = _local_sums()
    fed = _fed(frames, audit=True)
    res = fed.secure_sum(lambda df: {"s": float(df["x"].sum())}, max_abs=2**23, frac_bits=16)
    width = (2 * KEYS.n.bit_length() + 7) // 8
    (msg,) = [m for m in res.transcript if m.kind == "ciphertexts" and m.sender == "p1"]
    stolen = bytes_to_ints(msg.payload, width)
    parts = [partial_decrypt(KEYS.params, KEYS.shares[nm], stolen) for nm in NAMES[:T]]
    assert all(verify_partial(KEYS.params, stolen, p) for p in parts)  # the proofs accept it
    plain = combine(KEYS.params, parts)
    from fedbench.crypto.packing import PackingLayout

    enc = fb.Encoding.for_range(2**23, 16)  # the run's public encoding
    layout = PackingLayout(enc, len(NAMES), KEYS.n.bit_length() - 1)
    assert enc.decode_sum(layout.unpack(plain, 1), 1)[0] == pytest.approx(sums[1], abs=1e-3)


def test_key_setup_by_the_dealer_is_in_the_transcript_and_the_threat_model():
    frames, _ = _local_sums()
    fed = make_fed(keys="threshold", threshold=2, audit=True)
    for name, df in zip(NAMES[:3], frames, strict=False):
        fed.add_party(name, df)
    res = fed.sum("x")
    keys = fed.keys
    assert keys.setup == "dealer" and keys.holders == NAMES[:3] and keys.threshold == 2
    dealt = fed.transcript.filter(sender="dealer", kind="key-share")
    assert sorted(m.receiver for m in dealt) == NAMES[:3] and all(m.encrypted for m in dealt)
    # Shares travel sealed for their party: no share appears in any payload of the transcript.
    width = (2 * keys.key_bits + 7) // 8
    for share in keys.shares.values():
        assert all(share.value.to_bytes(width, "big") not in m.payload for m in fed.transcript)
    text = repr(res)
    assert "threshold decryption by 2 of 3 parties" in text
    assert "a dealer generated the key and saw it" in text
    assert "any 2 parties colluding with the aggregator can decrypt each party's local aggregates" in text
    assert "fewer than 2 parties learn nothing" in text
    assert "key holder" not in text
    assert "threshold decryption by 2 of 3" in res._repr_html_() and "threshold decryption" in repr(fed)
    # The single-key federation states the key-holder model instead.
    single = make_fed()
    for name, df in zip(NAMES[:3], frames, strict=False):
        single.add_party(name, df)
    assert "if aggregator and key holder collude" in repr(single.sum("x"))


def test_statistics_run_unchanged_under_threshold_keys():
    rng = np.random.default_rng(3)
    frames = [pl.DataFrame({"x": rng.normal(10, 2, 30), "y": rng.normal(size=30)}) for _ in NAMES]
    fed = _fed(frames)
    pooled = pl.concat(frames)
    assert fed.mean("x").value == pytest.approx(pooled["x"].mean(), rel=1e-9)
    assert fed.std("y").value == pytest.approx(pooled["y"].std(), rel=1e-6)
    assert "threshold decryption by 3 of 5" in repr(fed.mean("x"))


def test_tampered_partial_decryption_in_a_run_names_its_sender(monkeypatch):
    real = keyholders.partial_decrypt

    def tampering(params, share, cts):
        out = real(params, share, cts)
        if share.party == "p1":
            out = dataclasses.replace(out, values=tuple(v * 2 % params.n2 for v in out.values))
        return out

    monkeypatch.setattr(keyholders, "partial_decrypt", tampering)
    frames, _ = _local_sums()
    fed = _fed(frames, audit=True)
    with pytest.raises(InvalidPartialDecryptionError, match="party 'p1'") as info:
        fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert info.value.party == "p1" and info.value.parties == ["p1"]
    assert not fed.transcript.filter(receiver="analyst")  # nothing released


def test_too_few_share_holders_decrypt_nothing():
    frames, _ = _local_sums()
    fed = _fed(frames, audit=True)
    fed.remove_party("p0")
    fed.remove_party("p3")
    assert fed.secure_sum(lambda df: {"s": df["x"].sum()}).value["s"] > 0  # 3 holders left: enough
    fed.remove_party("p4")
    before = len(fed.transcript)
    with pytest.raises(TooFewKeySharesError, match="needs 3 of the 5") as info:
        fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert sorted(info.value.missing) == ["p0", "p3", "p4"] and info.value.threshold == 3
    assert len(fed.transcript) == before  # refused before any message, no partial decryption


def test_bad_threshold_options():
    with pytest.raises(ConfigurationError, match="needs threshold=t"):
        make_fed(keys="threshold")
    with pytest.raises(ConfigurationError, match="at least 2"):
        make_fed(keys="threshold", threshold=1)
    with pytest.raises(ConfigurationError, match="needs keys='threshold'"):
        make_fed(threshold=2)
    with pytest.raises(ConfigurationError, match="keys must be"):
        make_fed(keys="shared")
    fed = make_fed(keys="threshold", threshold=4)
    frames, _ = _local_sums()
    for name, df in zip(NAMES[:3], frames, strict=False):
        fed.add_party(name, df)
    with pytest.raises(ConfigurationError, match="threshold=4 is larger than the 3 parties"):
        fed.sum("x")
    assert len(fed.transcript) == 0


def test_central_dp_is_refused_under_threshold_keys():
    frames, _ = _local_sums()
    fed = _fed(frames)
    fed.set_budget(1.0, 1e-6)
    with pytest.raises(ConfigurationError, match="noise='distributed'"):
        fed.sum("x", epsilon=0.5, bounds=(0, 10**7), noise="central")
    assert fed.budget.spent("p0")[0] == 0


# -- dealerless set-up (TNO's distributed key generation; optional extra) ----------------------
@pytest.mark.slow
def test_dealerless_keys_decrypt_any_t_and_state_their_set_up():
    pytest.importorskip("tno.mpc.protocols.distributed_keygen")
    frames, sums = _local_sums()
    fed = make_fed(keys="threshold-dealerless", threshold=3, audit=True, key_bits=256)
    for name, df in zip(NAMES[:4], frames, strict=False):
        fed.add_party(name, df)
    res = fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert res.value["s"] == sum(sums[:4])
    keys = fed.keys
    assert keys.setup == "dealerless" and keys.holders == NAMES[:4]
    assert not fed.transcript.filter(sender="dealer")
    assert sorted(m.sender for m in fed.transcript.filter(kind="key-setup")) == NAMES[:4]
    text = repr(res)
    assert "no dealer" in text and "dealer generated" not in text
    assert "threshold decryption by 3 of 4 parties" in text
    # Any 3 of the 4 holders decrypt a known ciphertext; a tampered partial decryption is caught.
    cts = cached_encryptor(keys.n, keys.h_s).encrypt_many([31337])
    parts = {nm: partial_decrypt(keys.params, keys.shares[nm], cts) for nm in keys.holders}
    for subset in itertools.combinations(keys.holders, 3):
        assert combine(keys.params, [parts[s] for s in subset]) == [31337]
    bad = dataclasses.replace(parts["p1"], values=(parts["p1"].values[0] * 5 % keys.params.n2,))
    assert not verify_partial(keys.params, cts, bad)


def test_dealerless_threshold_must_be_odd():
    pytest.importorskip("tno.mpc.protocols.distributed_keygen")
    from fedbench.crypto.dealerless import dealerless_threshold_keys

    with pytest.raises(ConfigurationError, match="must be odd"):
        dealerless_threshold_keys(NAMES, 4, 256, allow_insecure_key_size=True)


@pytest.mark.slow
def test_federated_fit_and_stats_cards_state_the_threshold_model():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(5)
    frames = []
    for _ in NAMES:
        x = rng.normal(size=40)
        frames.append(pl.DataFrame({"x": x, "y": 2.0 * x + 1.0 + rng.normal(0, 0.01, 40)}))
    fed = _fed(frames)
    run = fed.fit(LinearRegression(), target="y")
    assert run.model.coef_[0] == pytest.approx(2.0, abs=0.05)
    assert "threshold decryption by 3 of 5" in repr(run) and "threshold decryption by 3 of 5" in run._repr_html_()
    stats = fed.stats(["x"])
    assert "threshold decryption by 3 of 5" in repr(stats) + stats._repr_html_()


def test_a_refusing_share_holder_is_replaced_and_too_many_refusals_fail(monkeypatch):
    from fedbench.errors import PartyUnavailableError

    real = keyholders.partial_decrypt
    refusing: set[str] = {"p1"}

    def refuse(params, share, cts):
        if share.party in refusing:
            raise PartyUnavailableError(f"party {share.party!r} refused", party=share.party)
        return real(params, share, cts)

    monkeypatch.setattr(keyholders, "partial_decrypt", refuse)
    frames, sums = _local_sums()
    fed = _fed(frames, audit=True)
    res = fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert res.value["s"] == sum(sums)
    assert [m.sender for m in res.transcript if m.kind == "partial-decryption"] == ["p0", "p2", "p3"]
    refusing.update({"p2", "p3"})  # only p0 and p4 answer: 2 < 3
    with pytest.raises(TooFewKeySharesError, match="only 2 share holders answered") as info:
        fed.secure_sum(lambda df: {"s": df["x"].sum()})
    assert sorted(info.value.missing) == ["p1", "p2", "p3"]
    assert len(fed.transcript.filter(receiver="analyst")) == 1  # the failed run released nothing


@pytest.mark.slow
def test_vertical_training_refuses_threshold_keys():
    from sklearn.linear_model import LogisticRegression

    fed = fb.Federation.from_dir(fb.samples.path("vertical"), key_bits=512, allow_insecure_key_size=True,
                                 keys="threshold", threshold=2, ledger_path=":memory:")
    fed._keys = deal_threshold_keys(fed.party_names, 2, 256, allow_insecure_key_size=True)
    with pytest.raises(ConfigurationError, match="needs keys='single'"):
        fed.fit_vertical(LogisticRegression(), label_party="hospital", target="outcome", on="patient_id", rounds=2)
