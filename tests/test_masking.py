"""Masking secure aggregation (fedbench.masking): exact sums under dropouts, uniform-looking views, bad input."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench.masking as masking
from fedbench.crypto.packing import Encoding
from fedbench.errors import (
    EncodingRangeError,
    FedbenchError,
    MaskingDropoutError,
    MaskingParameterError,
    MaskingProtocolError,
    TooFewPartiesError,
)
from fedbench.transcript import Channel

ENC = Encoding(frac_bits=8, value_bits=40)


def _vectors(n, m, seed=0):
    rng = np.random.default_rng(seed)
    # Multiples of the resolution: the decoded sum is exact.
    return {f"p{i}": rng.integers(-2**20, 2**20, size=m) / 256.0 for i in range(n)}


def _viable(names, drop, t):
    """Oracle for the complete graph: does the protocol have enough parties at every step?"""
    alive = {r: [u for u in names if drop.get(u, 99) > r] for r in (1, 2, 3, 4)}
    if any(len(alive[r]) < max(t, 2) for r in (1, 2, 3, 4)):
        return False
    if any(len([v for v in alive[1] if v != u]) < t for u in alive[2]):
        return False
    u4 = alive[4]
    return all(len([v for v in u4 if v != u]) >= t for u in alive[2])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(3, 7), m=st.integers(1, 6))
def test_masked_sum_equals_plaintext_sum_under_dropouts(data, n, m):
    vecs = _vectors(n, m, seed=data.draw(st.integers(0, 1000)))
    names = list(vecs)
    # Mostly recoverable patterns (a few droppers), sometimes too many: both branches get exercised.
    max_drop = data.draw(st.sampled_from([1, 2, n]))
    drop = data.draw(st.dictionaries(st.sampled_from(names), st.integers(1, 4), max_size=max_drop))
    t = masking.default_threshold(n - 1)
    ch = Channel("masking", [])
    if not _viable(names, drop, t):
        with pytest.raises(MaskingDropoutError):
            masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch, neighbours=n - 1, dropout=drop)
        assert not [msg for msg in ch.run if msg.kind == "aggregate"]
        return
    out = masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch, neighbours=n - 1, dropout=drop)
    expected_survivors = [u for u in names if drop.get(u, 99) > 3]
    assert out.survivors == expected_survivors
    np.testing.assert_array_equal(out.value, sum(vecs[u] for u in expected_survivors))


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.integers(10, 20))
def test_secagg_plus_sparse_graph_exact_sum(data, n):
    vecs = _vectors(n, 4, seed=n)
    names = list(vecs)
    k = masking.default_neighbours(n)
    assert k < n - 1  # a sparse graph for these n
    # One dropout at any round leaves every party k - 1 >= t share holders: always recoverable.
    dropped = data.draw(st.lists(st.sampled_from(names), max_size=1, unique=True))
    drop = {u: data.draw(st.integers(1, 4)) for u in dropped}
    out = masking.masked_sum_vectors(vecs, encoding=ENC, dropout=drop)
    assert out.neighbours >= k and out.threshold == masking.default_threshold(out.neighbours)
    np.testing.assert_array_equal(out.value, sum(vecs[u] for u in out.survivors))


@pytest.mark.parametrize("neighbours", [4, 6])
@pytest.mark.parametrize("drop_round", [1, 2, 3, 4])
def test_one_dropout_at_each_round(neighbours, drop_round):
    vecs = _vectors(7, 5, seed=drop_round)
    out = masking.masked_sum_vectors(vecs, encoding=ENC, neighbours=neighbours, dropout={"p3": drop_round})
    summed = [u for u in vecs if u != "p3" or drop_round == 4]  # a round-4 dropper's input already arrived
    assert out.survivors == summed
    np.testing.assert_array_equal(out.value, sum(vecs[u] for u in summed))


def test_harary_graph_is_regular_and_symmetric():
    names = [f"p{i}" for i in range(30)]
    g = masking.harary_graph(names, 6)
    assert all(len(vs) == 6 for vs in g.values())
    assert all(u in g[v] for u in names for v in g[u])
    assert all(u not in g[u] for u in names)


def test_four_rounds_in_transcript_with_roles_and_sizes():
    vecs = _vectors(5, 10)
    ch = Channel("masking", [])
    masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch, dropout={"p4": 3})
    kinds = {m.kind for m in ch.run}
    assert {"advertise-keys", "share-keys", "masked-input", "unmask", "aggregate"} <= kinds
    masked = [m for m in ch.run if m.kind == "masked-input" and m.sender.startswith("party:")]
    assert {m.sender for m in masked} == {"party:p0", "party:p1", "party:p2", "party:p3"}
    assert all(m.receiver == "server" and m.nbytes == 80 for m in masked)


def test_too_few_survivors_raises_and_releases_nothing():
    vecs = _vectors(4, 3)
    ch = Channel("masking", [])
    with pytest.raises(TooFewPartiesError) as err:
        masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch, dropout={"p0": 3, "p1": 3, "p2": 4})
    assert err.value.round in (3, 4)
    assert not [m for m in ch.run if m.kind in ("aggregate", "unmask")]


def test_masked_vector_looks_uniform_chi_square():
    # The server's view of one party's masked input: its bytes vs uniform on 0..255.
    n, m = 3, 20000
    vecs = {f"p{i}": np.zeros(m) for i in range(n)}  # worst case: constant inputs
    ch = Channel("masking", [], keep_payloads=True)
    masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch)
    payload = next(msg.payload for msg in ch.run if msg.kind == "masked-input" and msg.sender == "party:p0")
    counts = np.bincount(np.frombuffer(payload, dtype=np.uint8), minlength=256)
    expected = len(payload) / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 255 degrees of freedom: the 0.99999 quantile is 363 (false alarm 1e-5 per run, masks are CSPRNG);
    # the unmasked encoded vector scores far above 10,000.
    assert chi2 < 363
    plain = ENC.encode(vecs["p0"]).astype(np.uint64).tobytes()
    counts_plain = np.bincount(np.frombuffer(plain, dtype=np.uint8), minlength=256)
    assert float(((counts_plain - expected) ** 2 / expected).sum()) > 10_000


def test_no_message_contains_raw_values():
    vecs = _vectors(5, 16, seed=3)
    ch = Channel("masking", [], keep_payloads=True)
    masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch, dropout={"p1": 3})
    payloads = [m.payload for m in ch.run if m.kind != "aggregate"]
    for u, v in vecs.items():
        enc = ENC.encode(v).astype(np.uint64).tobytes()
        for needle in (enc, v.astype(np.float64).tobytes(), enc[:8 * 4]):
            assert not any(needle in p for p in payloads), u


@pytest.mark.parametrize("kwargs", [
    {"threshold": 5},  # > k = n - 1 = 4 share holders
    {"threshold": 2, "neighbours": 4},  # below floor(k/2) + 1 = 3
    {"neighbours": 5},  # > n - 1
    {"neighbours": 0},
])
def test_bad_parameters(kwargs):
    ch = Channel("masking", [])
    with pytest.raises(MaskingParameterError):
        masking.masked_sum_vectors(_vectors(5, 3), encoding=ENC, channel=ch, **kwargs)
    assert len(ch.run) == 0


def test_encoding_too_wide_for_ring():
    with pytest.raises(MaskingParameterError, match="Z_2"):
        masking.masked_sum_vectors(_vectors(5, 3), encoding=Encoding(frac_bits=16, value_bits=62))


def test_wrong_length_or_dtype_names_party():
    vecs = _vectors(4, 3)
    vecs["p2"] = np.zeros(4)
    with pytest.raises(MaskingProtocolError, match="'p2'"):
        masking.masked_sum_vectors(vecs, encoding=ENC)
    vecs["p2"] = np.array(["a", "b", "c"])
    with pytest.raises(MaskingProtocolError, match="'p2'.*dtype"):
        masking.masked_sum_vectors(vecs, encoding=ENC)


def test_out_of_range_value_refused_before_any_message():
    vecs = _vectors(4, 3)
    vecs["p1"] = np.array([0.0, 1e30, 0.0])
    ch = Channel("masking", [])
    with pytest.raises(EncodingRangeError) as err:
        masking.masked_sum_vectors(vecs, encoding=ENC, channel=ch)
    assert "1e+30" not in str(err.value) and len(ch.run) == 0


def test_duplicated_public_key(monkeypatch):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    fixed = X25519PrivateKey.generate()
    monkeypatch.setattr(masking, "_generate_keys", lambda: fixed)
    ch = Channel("masking", [])
    with pytest.raises(MaskingProtocolError, match="public key"):
        masking.masked_sum_vectors(_vectors(4, 3), encoding=ENC, channel=ch)
    assert not [m for m in ch.run if m.kind == "aggregate"]


def test_errors_are_fedbench_errors():
    assert issubclass(MaskingDropoutError, FedbenchError)
    assert issubclass(MaskingParameterError, FedbenchError)
    assert issubclass(MaskingProtocolError, FedbenchError)


def test_party_level_wrapper_and_raising_party(hospitals):
    import polars as pl

    from .conftest import make_fed

    fed = make_fed()
    for name, df in hospitals.items():
        fed.add_party(name, df)
    fed.add_party("west", pl.DataFrame({"age": [30, 40], "chol": [200.0, 210.0], "sex": ["f", "m"],
                                         "smoker": [True, False]}))
    parties = list(fed.parties.values())
    secret = 12345.0

    def local(df):
        if df.height == 2:
            raise RuntimeError(f"secret {secret}")  # a failing party drops before the masked input
        return {"n": float(df.height), "age": float(df["age"].sum())}

    ch = Channel("masking", [], keep_payloads=True)
    from fedbench.secagg.masking import secure_aggregate_masking

    out = secure_aggregate_masking(parties, local, backend=fed.backend, channel=ch, encoding=ENC,
                                           neighbours=3)
    assert out.survivors == ["north", "south", "east"] and out.dropped == {"west": 1}
    assert out.value["n"] == float(sum(df.height for df in hospitals.values()))
    assert out.value["age"] == float(sum(df["age"].sum() for df in hospitals.values()))
    assert not any(m.sender == "west" for m in ch.run)  # it crashed in round 1: it never sent anything
