"""Paillier keys, DJN fast encryption and packing."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

from fedbench.crypto.packing import Encoding, PackingLayout
from fedbench.crypto.paillier import FastEncryptor, add_ciphertext_vectors, decrypt_many, generate_keys
from fedbench.errors import ConfigurationError, EncodingRangeError, InsecureParameterError, SlotOverflowError


@pytest.fixture(scope="module")
def keys():
    return generate_keys(512, allow_insecure_key_size=True)


def test_small_keys_need_explicit_opt_in():
    with pytest.raises(InsecureParameterError, match="allow_insecure_key_size"):
        generate_keys(1024)
    with pytest.raises(InsecureParameterError):
        generate_keys(100, allow_insecure_key_size=True)


def test_default_key_is_2048_bits():
    k = generate_keys()
    assert k.key_bits == 2048
    assert "2048-bit" in repr(k) and str(k.private_key.p) not in repr(k)


def _djn_h_of(k) -> int:
    """Recover ``h`` from ``h_s = h^n mod n^2`` with the private key (n-th powering is a bijection mod n)."""
    p, q, n = k.private_key.p, k.private_key.q, k.n
    return pow(k.h_s % n, pow(n, -1, (p - 1) * (q - 1)), n)


def test_keys_are_admissible_for_djn():
    """Audit item 11: p = q = 3 (mod 4), gcd(p-1, q-1) = 2, equal lengths, exact n; h = -x^2 is a non-square in J_n."""
    import math

    import gmpy2

    for bits in [256] * 16 + [512] * 4:
        k = generate_keys(bits, allow_insecure_key_size=True)
        p, q, n = k.private_key.p, k.private_key.q, k.n
        assert p * q == n and p != q and n.bit_length() == bits
        assert p.bit_length() == q.bit_length() == bits // 2
        assert p % 4 == 3 and q % 4 == 3, "DJN's variant needs a modulus of two primes = 3 (mod 4)"
        assert math.gcd(p - 1, q - 1) == 2
        h = _djn_h_of(k)
        assert pow(h, n, n * n) == k.h_s
        assert gmpy2.jacobi(h, n) == 1 and gmpy2.legendre(h, p) == -1 and gmpy2.legendre(h, q) == -1
        # -h is a square: h = -x^2 for some x.
        assert gmpy2.legendre(n - h, p) == 1 and gmpy2.legendre(n - h, q) == 1
        # No small prime l of |J_n| = 2 p' q' is missing from the order of h.
        lam = (p - 1) * (q - 1) // 2
        assert pow(h, lam, n) == 1 and pow(h, lam // 2, n) != 1
        assert all(pow(h, lam // ell, n) != 1 for ell in (3, 5, 7, 11, 13) if lam % ell == 0)
        enc = FastEncryptor(n, k.h_s)
        assert decrypt_many(k.private_key, [enc.encrypt(7), enc.rerandomize(enc.encrypt(n - 1))]) == [7, n - 1]


@pytest.mark.parametrize("fast", [True, False])
def test_encryption_decrypts_with_phe_private_key(keys, fast):
    enc = FastEncryptor(keys.n, keys.h_s if fast else None)
    ms = [0, 1, keys.n - 1, secrets.randbelow(keys.n)]
    cts = enc.encrypt_many(ms)
    assert decrypt_many(keys.private_key, cts) == ms
    # phe's own EncryptedNumber machinery accepts our ciphertexts too.
    en = paillier.EncryptedNumber(keys.public_key, cts[1], 0)
    assert keys.private_key.decrypt(en) == 1


def test_encryption_is_randomised(keys):
    enc = FastEncryptor(keys.n, keys.h_s)
    a, b = enc.encrypt(42), enc.encrypt(42)
    assert a != b
    assert decrypt_many(keys.private_key, [a, b]) == [42, 42]


def test_plaintext_range_checked(keys):
    with pytest.raises(ValueError):
        FastEncryptor(keys.n, keys.h_s).encrypt(keys.n)


@given(st.lists(st.lists(st.integers(0, 2**200), min_size=3, max_size=3), min_size=2, max_size=5))
def test_homomorphic_addition(keys, vectors):
    enc = FastEncryptor(keys.n, keys.h_s)
    total = add_ciphertext_vectors(keys.n, [enc.encrypt_many(v) for v in vectors])
    assert decrypt_many(keys.private_key, total) == [sum(col) % keys.n for col in zip(*vectors, strict=True)]


# -- packing ------------------------------------------------------------------
encodings = st.builds(Encoding, frac_bits=st.integers(0, 30), value_bits=st.integers(8, 100)).filter(
    lambda e: e.value_bits > e.frac_bits + 1
)


@settings(max_examples=60)
@given(encodings, st.integers(1, 12), st.integers(1, 300), st.randoms(use_true_random=False))
def test_pack_unpack_roundtrip_sums(enc, parties, length, rnd):
    layout = PackingLayout(enc, parties, 511)
    # Rounding (and float precision at wide encodings) must not push a value onto the exclusive bound.
    limit = min(enc.max_abs - enc.resolution, enc.max_abs * (1 - 1e-9))
    vecs = [np.array([rnd.uniform(-limit, limit) for _ in range(length)]) for _ in range(parties)]
    packed = [layout.pack(enc.encode(v)) for v in vecs]
    summed = [sum(col) for col in zip(*packed, strict=True)]
    out = enc.decode_sum(layout.unpack(summed, length), parties)
    # Exact integer sums of the rounded fixed-point values, converted to float once.
    ints = [[int(x) for x in np.rint(np.ldexp(v, enc.frac_bits))] for v in vecs]
    expected = np.array([sum(col) / 2**enc.frac_bits for col in zip(*ints, strict=True)])
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=0)


def test_layout_dimensions():
    layout = PackingLayout(Encoding(0, 16), 10, 2047)
    assert layout.slot_bits == 16 + 4 + 1
    assert layout.slots_per_ciphertext == 97
    assert layout.n_ciphertexts(100_000) == 1031


def test_out_of_range_value_names_party_and_entry():
    enc = Encoding(frac_bits=0, value_bits=8)
    with pytest.raises(EncodingRangeError, match="party 'a'.*'w'") as err:
        enc.encode(np.array([1.0, 200.0]), party="a", names=["v", "w"])
    assert err.value.party == "a" and err.value.column == "w"


@pytest.mark.parametrize("enc", [Encoding(0, 16), Encoding(10, 80)])
def test_overflow_is_detected_not_wrapped(enc):
    # A layout planned for 2 parties but fed 40 maximal vectors must refuse, not return garbage.
    layout = PackingLayout(enc, 2, 511)
    big = enc.encode(np.full(5, enc.max_abs * 0.99))
    packed = layout.pack(big)
    summed = [p * 40 for p in packed]
    with pytest.raises(SlotOverflowError):
        layout.unpack(summed, 5)


def test_too_wide_slot_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        PackingLayout(Encoding(0, 500), 2, 255)
