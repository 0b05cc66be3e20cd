"""Issue 13, part 2: the default secure sum is fast (public tight range, every core, fast randomiser)."""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedbench as fb
import fedbench.backend as backend_mod
import fedbench.crypto.paillier as paillier_mod
import fedbench.secagg as secagg
from fedbench.crypto.packing import DEFAULT_SUM_FRAC_BITS, DEFAULT_SUM_MAX_ABS, Encoding, PackingLayout
from fedbench.crypto.paillier import FastEncryptor, decrypt_many, generate_keys
from fedbench.errors import EncodingRangeError

from .conftest import make_fed

_KEYS = generate_keys(512, allow_insecure_key_size=True)


def _fed(n_parties: int, **kwargs) -> fb.Federation:
    f = make_fed(**kwargs)
    f._keys = _KEYS
    for i in range(n_parties):
        f.add_party(f"p{i}", pl.DataFrame({"i": [i]}))
    return f


# -- default range ---------------------------------------------------------------------------
def test_default_encoding_is_public_and_packs_48_values_for_ten_parties():
    """The default float range is a documented constant: 37-bit values, 48 per 2048-bit ciphertext (22 before)."""
    enc = Encoding.default_sum()
    assert (enc.frac_bits, enc.value_bits, enc.max_abs) == (DEFAULT_SUM_FRAC_BITS, 37, DEFAULT_SUM_MAX_ABS)
    assert PackingLayout(enc, 10, 2047).slots_per_ciphertext == 48
    assert PackingLayout(Encoding.wide(), 10, 2047).slots_per_ciphertext == 22  # the former default


def test_default_secure_sum_uses_the_tight_range():
    """Regression (fails on main: 87-bit values, 24 fractional bits by default)."""
    vecs = [np.random.default_rng(i).normal(0, 1, 50) for i in range(3)]
    res = _fed(3).secure_sum(lambda df: {"x": vecs[int(df["i"][0])]})
    assert (res.frac_bits, res.value_bits) == (16, 37)
    assert np.max(np.abs(res.value["x"] - np.sum(vecs, axis=0))) <= 3 * 2.0**-17


def test_default_range_refusal_names_party_and_entry_not_the_value():
    secret = 1_234_567.891  # beyond 2**20
    f = _fed(2)
    with pytest.raises(EncodingRangeError) as err:
        f.secure_sum(lambda df: {"a": 1.5, "b": secret if int(df["i"][0]) == 1 else 0.5})
    assert (err.value.party, err.value.column) == ("p1", "b")
    msg = str(err.value)
    assert "1234567" not in msg and "1.23457e+06" not in msg and "max_abs" in msg
    assert len(f.transcript) == 0
    # Declaring a public range admits it.
    assert f.secure_sum(lambda df: {"b": secret}, max_abs=2**21).value["b"] == pytest.approx(2 * secret, abs=1e-4)


def test_federation_range_applies_to_secure_sum():
    f = _fed(2, max_abs=2.0**40, frac_bits=20)
    res = f.secure_sum(lambda df: {"x": 3e11})
    assert (res.frac_bits, res.value_bits) == (20, 61) and res.value["x"] == 6e11


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(-(2**61), 2**61), min_size=2, max_size=4), st.floats(-1e5, 1e5))
def test_integer_entries_stay_exact_beyond_the_float_range(ints, x):
    """Integer entries (public dtype) get their own exact wide-range slots; floats keep the tight default."""
    f = _fed(len(ints))
    res = f.secure_sum(lambda df: {"n": ints[int(df["i"][0])], "v": np.array([ints[int(df["i"][0])], 1]),
                                   "x": x})
    assert isinstance(res.value["n"], int) and res.value["n"] == sum(ints)
    assert [int(v) for v in res.value["v"]] == [sum(ints), len(ints)]
    assert res.value["x"] == pytest.approx(len(ints) * x, abs=len(ints) * 2.0**-17)
    assert res.frac_bits == 16


def test_parties_disagreeing_on_integer_entries_fall_back_to_one_encoding():
    f = _fed(3)
    res = f.secure_sum(lambda df: {"n": 5 if int(df["i"][0]) else 2.5, "m": 7})
    assert res.value["n"] == 12.5 and res.value["m"] == 21


def test_dp_sums_keep_one_grid():
    f = _fed(2)
    f.set_budget(epsilon=10.0)
    res = f.secure_sum(lambda df: {"n": 3, "x": 0.5}, epsilon=1.0, sensitivity=1.0)
    assert res.frac_bits == 24 and isinstance(res.value["x"], float)  # DP sums keep the wide grid


# -- fast randomiser -------------------------------------------------------------------------
def test_short_exponent_length_is_half_the_modulus():
    """DJN: exponents uniform in [0, 2^ceil(k/2)); a 2048-bit key with 10-bit windows has 103 table rows."""
    n = (1 << 2047) + 1
    e = FastEncryptor(n, 4)
    assert e.exp_bits == 1024 and e.window_bits == 10 and e.rows == 103
    assert FastEncryptor(n, 4, window_bits=8).rows == 128


@pytest.mark.parametrize("window_bits", [1, 3, 8, 10, 11])
def test_randomiser_is_h_s_to_a_csprng_short_exponent(monkeypatch, window_bits):
    """The batched table path computes exactly h_s^a mod n^2 with a read little-endian from CSPRNG bytes."""
    e = FastEncryptor(_KEYS.n, _KEYS.h_s, window_bits=window_bits)
    nbytes = -(-e.exp_bits // 8)
    stream = os.urandom(5 * nbytes)
    stream = b"\xff" * nbytes + stream[nbytes:]  # the all-ones exponent: every row's top digit
    calls = []

    def fake(k: int) -> bytes:
        calls.append(k)
        return stream[:k]

    monkeypatch.setattr(paillier_mod.secrets, "token_bytes", fake)
    got = e._randomisers(5)
    assert calls == [5 * nbytes]  # one CSPRNG call for the whole batch
    n2 = _KEYS.n**2
    for j in range(5):
        a = int.from_bytes(stream[j * nbytes : (j + 1) * nbytes], "little") % (1 << e.exp_bits)
        assert int(got[j]) == pow(_KEYS.h_s, a, n2)
    assert int(got[0]) == pow(_KEYS.h_s, (1 << e.exp_bits) - 1, n2)


def test_batched_encryption_decrypts_and_is_randomised():
    e = FastEncryptor(_KEYS.n, _KEYS.h_s)
    ms = [0, 1, 2, _KEYS.n - 1] + [int.from_bytes(os.urandom(60), "big") for _ in range(20)]
    cts = e.encrypt_many(ms)
    assert decrypt_many(_KEYS.private_key, cts) == ms
    assert len(set(e.encrypt_many([7] * 50))) == 50
    assert e.encrypt_many([]) == []
    with pytest.raises(ValueError):
        e.encrypt_many([1, _KEYS.n])


# -- parallelism -----------------------------------------------------------------------------
def _pid(_: object) -> int:
    return os.getpid()


@pytest.fixture
def no_shared_pool():
    backend_mod.shutdown_shared_pool()
    yield
    backend_mod.shutdown_shared_pool()
    backend_mod._SHARED["broken"] = False


def test_small_sums_never_start_the_pool(no_shared_pool):
    """Tests and notebooks run many tiny sums: they stay in-process, with no worker start-up."""
    f = _fed(3)
    assert f.backend.heavy_workers == len(os.sched_getaffinity(0))
    for _ in range(3):
        f.secure_sum(lambda df: {"x": np.ones(200)})
    assert backend_mod._SHARED["pool"] is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_large_batches_run_on_every_core_by_default(no_shared_pool, monkeypatch):
    """Regression (fails on main: the default backend encrypts and decrypts on one core)."""
    b = fb.Federation(allow_insecure_key_size=True, key_bits=512).backend
    assert isinstance(b, backend_mod.InProcessBackend) and b.heavy_workers >= 2
    pids = set(b.map_heavy(_pid, list(range(8))))
    assert os.getpid() not in pids
    # A secure sum large enough for the pool gives the same, correct result.
    monkeypatch.setattr(secagg.paillier, "_PARALLEL_MIN_CIPHERTEXTS", 1)
    vecs = [np.random.default_rng(i).normal(0, 1, 2000) for i in range(2)]
    res = _fed(2).secure_sum(lambda df: {"x": vecs[int(df["i"][0])]})
    assert backend_mod._SHARED["pool"] is not None
    assert np.max(np.abs(res.value["x"] - vecs[0] - vecs[1])) <= 2 * 2.0**-17


def test_broken_pool_falls_back_in_process(no_shared_pool, monkeypatch):
    def broken(workers: int):
        raise BrokenProcessPool("boom")

    monkeypatch.setattr(backend_mod, "_shared_pool", broken)
    monkeypatch.setattr(backend_mod, "_usable_cores", lambda: 2)
    b = backend_mod.InProcessBackend()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert b.map_heavy(math.isqrt, [4, 9, 16]) == [2, 3, 4]
    assert any("process pool is unavailable" in str(w.message) for w in caught)
    assert b.heavy_workers == 1  # later batches go straight to the caller


def test_parallel_can_be_switched_off():
    b = backend_mod.InProcessBackend(parallel=False)
    assert b.heavy_workers == 1 and b.map_heavy(_pid, [1, 2, 3]) == [os.getpid()] * 3
