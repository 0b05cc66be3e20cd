"""The masking protocol through the federation (``secagg="masking"``, ``protocol="masking"``), run party-side."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import fedbench as fb
import fedbench.party as party_mod
import fedbench.secagg.masking as smask
from fedbench.backend import InProcessBackend, Settled
from fedbench.crypto.packing import Encoding
from fedbench.errors import (
    ConfigurationError,
    LocalResultError,
    MaskingDropoutError,
    MaskingParameterError,
    MaskingProtocolError,
    ProtocolError,
)
from fedbench.masking import default_threshold
from fedbench.secagg import get_protocol

from .conftest import make_fed

RES = 2.0**-16  # resolution of secure_sum's default encoding for functions


def _fed(n: int, *, secagg: str = "masking", backend=None, **kwargs) -> fb.Federation:
    fed = make_fed(secagg=secagg, audit=True, backend=backend, **kwargs)
    for i in range(n):
        fed.add_party(f"p{i}", pl.DataFrame({"i": [i], "x": [float(i)]}))
    return fed


def _no_party_state() -> bool:
    return not any(k.startswith("masking-") for _, store in party_mod._MEMORY.values() for k in store)


def _viable(names, drop, t):
    """Oracle for the complete graph (neighbours = n - 1)."""
    alive = {r: [u for u in names if drop.get(u, 99) > r] for r in (1, 2, 3, 4)}
    if any(len(alive[r]) < max(t, 2) for r in (1, 2, 3, 4)):
        return False
    return all(len([v for v in alive[4] if v != u]) >= t for u in alive[2])


@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(3, 6), m=st.integers(1, 5), per_call=st.booleans())
def test_masked_sum_equals_plaintext_sum_under_random_dropouts(data, n, m, per_call):
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    # Multiples of the resolution: the decoded sum is exact.
    vecs = {f"p{i}": rng.integers(-2**20, 2**20, size=m) * RES for i in range(n)}
    names = list(vecs)
    drop = data.draw(st.dictionaries(st.sampled_from(names), st.integers(1, 4), max_size=data.draw(
        st.sampled_from([1, 2, n]))))
    fed = _fed(n, secagg="paillier" if per_call else "masking")

    def local(df):
        return {"v": vecs[f"p{df['i'][0]}"]}

    kw = {"protocol": "masking"} if per_call else {}
    t = default_threshold(n - 1)
    if not _viable(names, drop, t):
        with pytest.raises(MaskingDropoutError):
            fed.secure_sum(local, neighbours=n - 1, dropout=drop, **kw)
        assert not [msg for msg in fed.transcript if msg.kind == "aggregate"]
    else:
        res = fed.secure_sum(local, neighbours=n - 1, dropout=drop, **kw)
        survivors = [u for u in names if drop.get(u, 99) > 3]
        assert res.parties == survivors and res.protocol == "masking"
        assert res.dropped == {u: r for u, r in drop.items() if r <= 3} | {u: 4 for u, r in drop.items() if r == 4}
        np.testing.assert_array_equal(res.value["v"], np.sum([vecs[u] for u in survivors], axis=0))
    assert _no_party_state()  # secrets are wiped after the run, also when it fails


def test_sparse_secagg_plus_through_the_federation():
    fed = _fed(16)
    res = fed.secure_sum(lambda df: {"x": df["x"].to_numpy() * 2}, dropout={"p3": 3})
    k = res.protocol_details["neighbours"]
    assert k < 15 and res.protocol_details["threshold"] == default_threshold(k)
    assert res.value["x"][0] == pytest.approx(2 * (sum(range(16)) - 3))
    # SecAgg+: a party receives the keys of its k neighbours only, not of all 15 others.
    relay = [msg for msg in fed.transcript if msg.kind == "advertise-keys" and msg.sender == "aggregator"]
    assert len(relay) == 16 and all(msg.nbytes == k * (2 + 1 + 64) or msg.nbytes < 15 * 67 for msg in relay)


def test_four_rounds_in_the_transcript_and_no_plain_vector_in_any_message():
    n, m = 4, 4000
    rng = np.random.default_rng(3)
    vecs = {f"p{i}": np.round(rng.normal(0, 100, m) / RES) * RES for i in range(n)}
    fed = _fed(n)
    res = fed.secure_sum(lambda df: {"v": vecs[f"p{df['i'][0]}"]})
    kinds = {msg.kind for msg in res.transcript}
    assert {"advertise-keys", "share-keys", "masked-input", "unmask", "aggregate"} <= kinds
    assert "public-key" not in kinds and "ciphertexts" not in kinds  # no Paillier and no key holder
    assert not {"keyholder"} & ({m.sender for m in res.transcript} | {m.receiver for m in res.transcript})
    assert fed._keys is None  # no Paillier key was even generated
    enc = fed.sum_encoding
    for name, v in vecs.items():
        plain = enc.encode(v).astype(np.uint64).tobytes()
        floats = v.astype("<f8").tobytes()
        for msg in res.transcript:
            assert plain[:64] not in msg.payload and floats[:64] not in msg.payload, (name, msg.kind)
    masked = next(msg for msg in res.transcript if msg.kind == "masked-input" and msg.sender == "p0")
    assert masked.nbytes == 8 * m and masked.encrypted
    # The aggregator's view of one party's masked vector is uniform bytes; its encoded vector is not.
    counts = np.bincount(np.frombuffer(masked.payload, dtype=np.uint8), minlength=256)
    assert chisquare(counts).pvalue > 1e-4
    plain_counts = np.bincount(np.frombuffer(enc.encode(vecs["p0"]).astype(np.uint64).tobytes(), dtype=np.uint8),
                               minlength=256)
    assert chisquare(plain_counts).pvalue < 1e-10


class _Recording(InProcessBackend):
    """Keeps everything a party call returns: the only way anything leaves a party."""

    def __init__(self) -> None:
        super().__init__(parallel=False)
        self.returned: list[bytes] = []

    def settle(self, calls, *, timeout=None) -> list[Settled]:
        out = super().settle(calls, timeout=timeout)
        self.returned += [pickle.dumps(s.value) for s in out]
        return out


def test_party_secrets_and_plain_vector_never_leave_the_party(monkeypatch):
    private: list[bytes] = []
    seeds: list[bytes] = []
    real_generate = smask.X25519PrivateKey.generate
    real_token = smask.secrets.token_bytes

    def generate():
        key = real_generate()
        private.append(smask._priv(key))
        return key

    def token(k):
        out = real_token(k)
        seeds.append(out)
        return out

    monkeypatch.setattr(smask.X25519PrivateKey, "generate", staticmethod(generate))
    monkeypatch.setattr(smask.secrets, "token_bytes", token)
    backend = _Recording()
    vecs = {f"p{i}": np.arange(50) * RES * (i + 3) for i in range(5)}
    fed = _fed(5, backend=backend)
    res = fed.secure_sum(lambda df: {"v": vecs[f"p{df['i'][0]}"]}, dropout={"p4": 3})
    assert res.parties == ["p0", "p1", "p2", "p3"]
    seeds = [s for s in seeds if len(s) == 32]  # the self-mask seeds b_u (not the run's random label)
    assert len(private) == 10 and len(seeds) == 5
    blob = b"".join(backend.returned)
    for secret in private + seeds:
        assert secret not in blob
    for v in vecs.values():
        assert fed.sum_encoding.encode(v).astype(np.uint64).tobytes()[:40] not in blob
        assert v.astype("<f8").tobytes()[8:48] not in blob
    assert _no_party_state()


def test_statistics_and_per_call_protocol(fed):
    m1 = fed.mean("age", protocol="masking")
    m2 = fed.mean("age")
    assert float(m1) == pytest.approx(float(m2), abs=1e-9)
    assert m1.runs[0].protocol == "masking" and m2.runs[0].protocol == "paillier"
    assert m1.threat_text == get_protocol("masking").trust_model.text
    assert "no key holder" in repr(m1) and "no key holder" in m1._repr_html_()
    s1, s2 = fed.stats(["age", "chol"], protocol="masking"), fed.stats(["age", "chol"])
    np.testing.assert_allclose(s1.to_polars()["std"].to_numpy(), s2.to_polars()["std"].to_numpy(), rtol=1e-9)
    assert fed.group_counts("sex", protocol="masking").equals(fed.group_counts("sex"))
    c = fed.corr(["age", "chol"], protocol="masking")
    assert c.to_polars()["age"][1] == pytest.approx(fed.corr(["age", "chol"]).to_polars()["age"][1], abs=1e-9)
    h = fed.histogram("age", bins=[0, 50, 100], protocol="masking")
    assert int(h.counts.sum()) == sum(p.n_rows for p in fed)
    assert int(fed.sum("age", protocol="masking")) == int(fed.sum("age"))  # integer column: exact


def test_federation_secagg_options_apply_to_every_sum(hospitals):
    fed = make_fed(secagg="masking", secagg_options={"neighbours": 3, "threshold": 2, "dropout": {"south": 3}})
    for name, df in hospitals.items():
        fed.add_party(name, df)
    fed.add_party("west", hospitals["north"].head(7))
    r = fed.count()
    assert int(r) == hospitals["north"].height + hospitals["east"].height + 7
    assert r.runs[0].dropped == {"south": 3} and "south (round 3)" in repr(r)
    # Per-call options override the federation's, which still apply otherwise.
    r2 = fed.secure_sum(["age"], dropout={})
    assert r2.dropped == {} and r2.protocol_details["neighbours"] == 3
    with pytest.raises(ConfigurationError, match="does not take"):
        make_fed(secagg="paillier", secagg_options={"threshold": 2})


def test_dp_distributed_noise_with_masking_and_central_refused(hospitals):
    fed = make_fed(secagg="masking")
    for name, df in hospitals.items():
        fed.add_party(name, df)
    fed.set_budget(10.0, 1e-5)
    r = fed.sum("age", epsilon=1.0, bounds=(0, 100))
    assert r.privacy["noise"] == "distributed" and r.runs[0].protocol == "masking"
    assert abs(float(r) - sum(int(df["age"].sum()) for df in hospitals.values())) < 5000
    spent = fed.budget.spent("north")
    with pytest.raises(ConfigurationError, match="no key holder"):
        fed.sum("age", epsilon=1.0, bounds=(0, 100), noise="central")
    assert fed.budget.spent("north") == spent
    # A dropout would leave the sum short of a noise share: refused.
    with pytest.raises(MaskingDropoutError, match="noise share"):
        fed.secure_sum(["age"], epsilon=1.0, bounds=(0, 100), dropout={"east": 3}, neighbours=2, threshold=2)
    assert not [m for m in fed.transcript if m.kind == "aggregate" and m.time > 0 and m.receiver == "analyst"
                and m.run_id == max(x.run_id for x in fed.transcript)]


@pytest.mark.parametrize(("options", "match"), [
    ({"threshold": 9}, "exceeds"),
    ({"threshold": 1, "neighbours": 4}, "safe minimum"),
    ({"neighbours": 5}, "neighbours must be in"),
    ({"neighbours": 0}, "neighbours must be in"),
    ({"dropout": {"nobody": 2}}, "unknown party"),
    ({"dropout": {"p0": 7}}, "one of 1..4"),
])
def test_bad_options_are_refused_before_any_message(options, match):
    fed = _fed(5)
    with pytest.raises(MaskingParameterError, match=match):
        fed.secure_sum(lambda df: {"x": 1.0}, **options)
    assert len(fed.transcript) == 0 and _no_party_state()


def test_fewer_survivors_than_the_threshold_releases_nothing():
    fed = _fed(5)
    with pytest.raises(MaskingDropoutError, match="threshold") as info:
        fed.secure_sum(lambda df: {"x": 1.0}, neighbours=4, threshold=4, dropout={"p0": 3, "p1": 3})
    assert info.value.round == 3
    assert not [m for m in fed.transcript if m.kind == "aggregate"] and _no_party_state()


def test_wrong_length_and_dtype_are_refused():
    fed = _fed(4)
    with pytest.raises(ProtocolError, match="names or shapes"):
        fed.secure_sum(lambda df: {"v": np.zeros(3 + int(df["i"][0] == 2))})
    with pytest.raises(ProtocolError, match="not numeric"):
        fed.secure_sum(lambda df: {"v": "text"})
    with pytest.raises(LocalResultError, match="complex"):
        fed.secure_sum(lambda df: {"v": 1j})
    assert len(fed.transcript) == 0 and _no_party_state()  # refused in round 1, before any message


def test_duplicated_public_key_aborts(monkeypatch):
    key = smask.X25519PrivateKey.generate()
    monkeypatch.setattr(smask.X25519PrivateKey, "generate", staticmethod(lambda: key))
    fed = _fed(3)
    with pytest.raises(MaskingProtocolError, match="already used"):
        fed.secure_sum(lambda df: {"x": 1.0})
    assert _no_party_state()


def test_paillier_refuses_masking_options_and_unknown_protocol_is_refused():
    fed = _fed(3, secagg="paillier")
    with pytest.raises(ConfigurationError, match="does not take threshold"):
        fed.secure_sum(lambda df: {"x": 1.0}, threshold=2)
    with pytest.raises(ConfigurationError, match="unknown secure-aggregation protocol"):
        fed.mean("x", protocol="nope")
    assert len(fed.transcript) == 0


def test_cost_model_matches_a_run():
    fed = _fed(6)
    res = fed.secure_sum(lambda df: {"v": np.zeros(100)})
    est = get_protocol("masking").cost_model(6, 100, 0, encoding=fed.sum_encoding)
    assert est.messages == len(res.transcript)
    assert est.bytes_per_party == 800
    assert 0.5 < est.total_bytes / res.transcript.nbytes < 2.0


def test_wide_values_are_carried_in_digits_exactly():
    assert smask.ring_layout(37, 10) == (1, 37)
    assert smask.ring_layout(87, 10) == (3, 32)
    fed = _fed(3)
    big = 2**61 + 12345  # beyond float64 precision: exact only as integers
    res = fed.secure_sum(lambda df: {"n": big + int(df["i"][0])})
    assert res.value["n"] == 3 * big + 3
    enc = Encoding.for_range(2.0**62, 24)
    assert enc.value_bits > 64


def test_fit_with_masking_matches_paillier():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from fedbench.learn import iid_partition, to_federation

    x, y = make_classification(n_samples=200, n_features=3, n_informative=3, n_redundant=0, random_state=0)
    df = pl.DataFrame({f"x{i}": x[:, i] for i in range(3)}).with_columns(pl.Series("y", y))
    fed = to_federation(iid_partition(df, 3, seed=0), key_bits=512, allow_insecure_key_size=True,
                        ledger_path=":memory:")
    a = fed.fit(LogisticRegression(), target="y", protocol="masking")
    b = fed.fit(LogisticRegression(), target="y")
    np.testing.assert_allclose(a.model.coef_, b.model.coef_, atol=1e-6)
    assert [m for m in a.transcript if m.kind == "masked-input"]
    assert not [m for m in a.transcript if m.kind == "ciphertexts"]
    assert a.secagg == "masking" and "no key holder" in repr(a) and "by masking" in repr(a)
    assert b.secagg == "paillier" and "Paillier" in repr(b)
    assert _no_party_state()


def test_require_all_refuses_a_sum_short_of_a_party():
    fed = _fed(5)
    parties = list(fed.parties.values())
    with pytest.raises(MaskingDropoutError, match="every party"):
        fed.coordinator.aggregate(parties, lambda df: {"x": 1.0}, encoding=fed.sum_encoding,
                                  options={"dropout": {"p1": 3}, "require_all": True})
    value, _ = fed.coordinator.aggregate(parties, lambda df: {"x": 1.0}, encoding=fed.sum_encoding,
                                         options={"dropout": {"p1": 3}})
    assert value["x"] == 4.0  # without require_all the other four are summed
    with pytest.raises(MaskingParameterError, match="require_all"):
        fed.coordinator.aggregate(list(fed.parties.values()), lambda df: {"x": 1.0}, encoding=fed.sum_encoding,
                                  options={"require_all": "yes"})


def test_dp_fedavg_with_masking_refuses_a_masking_dropout():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import SGDClassifier

    from fedbench.dp import DPConfig
    from fedbench.learn import FedAvg, iid_partition, to_federation

    x, y = make_classification(n_samples=120, n_features=3, n_informative=3, n_redundant=0, random_state=0)
    df = pl.DataFrame({f"x{i}": x[:, i] for i in range(3)}).with_columns(pl.Series("y", y))
    fed = to_federation(iid_partition(df, 4, seed=0), ledger_path=":memory:", secagg="masking",
                        secagg_options={"dropout": {"party_1": 3}, "neighbours": 3, "threshold": 2})
    assert "party_1" in fed.parties
    fed.set_budget(50.0, 1e-3)
    with pytest.raises(MaskingDropoutError, match="every party"):
        fed.fit(SGDClassifier(random_state=0), target="y", classes=[0, 1],
                strategy=FedAvg(rounds=1, dp=DPConfig(noise_multiplier=1.0, clip=1.0)))


def test_crypto_cost_panel_labels_a_masking_run():
    pytest.importorskip("ipywidgets")
    from fedbench.widgets import CryptoCostPanel

    fed = _fed(3)
    fed.secure_sum(lambda df: {"x": 1.0})
    panel = CryptoCostPanel(fed, figure_backend="static")
    assert "pairwise masking" in panel._text() and "Paillier ciphertexts" in panel.header.value
    # sent by each party: layout, keys, one share message per neighbour (k = 2), masked input, unmask
    assert panel.costs is not None and panel.costs["messages"].to_list() == [6, 6, 6]


def test_a_differencing_pair_created_by_a_dropout_is_warned_about_before_unmasking_and_recorded_over_the_survivors():
    import warnings

    import fedbench.disclosure as disclosure
    from fedbench.disclosure import DisclosureRiskWarning

    fed = _fed(5)
    fed.secure_sum(["x"])  # exact, over the five parties
    seen_at_warning: list[set[str]] = []
    real_warn = disclosure.warnings.warn

    def warn(*args, **kwargs):
        seen_at_warning.append({m.kind for m in list(fed.transcript)[before:]})
        return real_warn(*args, **kwargs)

    before = len(fed.transcript)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(disclosure.warnings, "warn", warn)
        with pytest.warns(DisclosureRiskWarning, match="dropped out during the run") as caught:
            r = fed.secure_sum(["x"], neighbours=4, threshold=3, dropout={"p4": 3})
    assert r.parties == ["p0", "p1", "p2", "p3"] and "'p4'" in str(caught[0].message)
    assert len(caught) == 1  # once, before the unmask round; not again after the release
    # When it warned, the masked inputs had arrived and no party had unmasked yet.
    assert len(seen_at_warning) == 1 and "masked-input" in seen_at_warning[0] and "unmask" not in seen_at_warning[0]
    assert fed.coordinator.release_guard.history[-1].parties == frozenset(r.parties)  # the survivors, not the asked
    # Without a dropout nothing is said after the run (the pair check before the run stays as it was).
    fresh = _fed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DisclosureRiskWarning)
        fresh.secure_sum(["x"], neighbours=4, threshold=3)


def test_a_differencing_pair_created_by_a_dropout_is_refused_before_any_party_unmasks():
    from fedbench.attacks import ReleasePolicy
    from fedbench.errors import DisclosureRiskError

    fed = _fed(5)
    first = fed.secure_sum(["x"])  # exact, over the five parties
    fed.release_policy = ReleasePolicy(action="refuse")
    before = len(fed.transcript)
    history = list(fed.coordinator.release_guard.history)
    with pytest.raises(DisclosureRiskError, match="p4.*did not unmask: nothing was released"):
        fed.secure_sum(["x"], neighbours=4, threshold=3, dropout={"p4": 3})
    new = list(fed.transcript)[before:]
    kinds = {m.kind for m in new}
    # The masked inputs had arrived; no party sent an unmask message and the analyst received nothing.
    assert "masked-input" in kinds and "unmask" not in kinds
    assert not [m for m in new if m.receiver == "analyst"]
    assert fed.coordinator.release_guard.history == history  # nothing released, nothing recorded
    # The federation stays usable: the same total over all five parties is still allowed.
    assert fed.secure_sum(["x"]).value == first.value and _no_party_state()
