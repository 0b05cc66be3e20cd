"""Shamir secret sharing over GF(2**61 - 1)."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.crypto import shamir
from fedbench.errors import ConfigurationError, ProtocolError


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), data=st.data(), length=st.integers(1, 40))
def test_any_t_shares_reconstruct_bytes(n, data, length):
    t = data.draw(st.integers(1, n))
    secret = os.urandom(length)
    shares = shamir.share_bytes(secret, n, t)
    assert shares.shape == (n, -(-length // shamir.LIMB_BYTES))
    idx = data.draw(st.lists(st.integers(1, n), min_size=t, max_size=n, unique=True))
    got = shamir.reconstruct_bytes({i: shares[i - 1] for i in idx}, t, length)
    assert got == secret


def test_fewer_than_t_shares_refused_and_t_minus_one_do_not_determine_secret():
    secret = os.urandom(32)
    shares = shamir.share_bytes(secret, 5, 3)
    with pytest.raises(ProtocolError):
        shamir.reconstruct({1: shares[0], 2: shares[1]}, 3)
    # Interpolating t-1 shares as if t-1 were the threshold does not give the secret.
    wrong = shamir.reconstruct({1: shares[0], 2: shares[1]}, 2)
    assert not np.array_equal(wrong, shamir.bytes_to_limbs(secret))


def test_shares_are_field_elements_and_random():
    a = shamir.share_bytes(b"\x01" * 32, 4, 3)
    b = shamir.share_bytes(b"\x01" * 32, 4, 3)
    assert all(0 <= int(v) < shamir.PRIME for v in a.ravel().tolist())
    assert not np.array_equal(a, b)  # fresh CSPRNG coefficients each time


def test_encode_decode_share_roundtrip():
    row = shamir.share_bytes(os.urandom(32), 3, 2)[0]
    assert np.array_equal(shamir.decode_share(shamir.encode_share(row)), row)


@pytest.mark.parametrize("n,t", [(3, 0), (3, 4)])
def test_bad_threshold(n, t):
    with pytest.raises(ConfigurationError):
        shamir.share_bytes(b"x" * 32, n, t)
