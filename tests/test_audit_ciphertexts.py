"""Audit item 1: a party that transforms another party's ciphertext re-randomises it before sending it back.

The attacker is the vertical-LR host playing honest-but-curious: it divides every ciphertext the guest
returned by the one it sent itself (mod n^2).  Without re-randomisation the ratio is ``1 + k n`` and
``k = u_guest - 2 t`` (scaled) gives away every label at the first iteration, where ``u_guest = 0``.
"""

from __future__ import annotations

import gmpy2
import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import fedbench as fb
from fedbench.crypto.paillier import FastEncryptor, decrypt_many
from fedbench.learn import vertical
from fedbench.party import remember_in_party
from fedbench.wire import bytes_to_ints

from .conftest import make_fed

_KEYS = make_fed().keys


@pytest.fixture(scope="module", params=[True, False], ids=["djn", "textbook"])
def vrun(request):
    fed = fb.Federation.from_dir("data_samples/vertical", key_bits=512, allow_insecure_key_size=True, audit=True,
                                 fast_encryption=request.param)
    fed._keys = _KEYS
    run = fed.fit_vertical(LogisticRegression(C=1.0), label_party="hospital", target="outcome", on="patient_id",
                           rounds=3, tol=0.0)
    return fed, run


def _host_attack(fed, run) -> tuple[list[np.ndarray], np.ndarray]:
    """Play the host: per iteration, ``k`` read from ``returned / sent`` (NaN where the ratio is not ``1 + k n``)."""
    n = fed.keys.n
    n2 = gmpy2.mpz(n) ** 2
    width = (2 * n.bit_length() + 7) // 8
    t = run.transcript
    sent = [bytes_to_ints(m.payload, width)[:-1] for m in t.filter(kind="encrypted-partial-scores")]
    back = [bytes_to_ints(m.payload, width) for m in t.filter(kind="encrypted-residuals")]
    assert len(sent) == len(back) == len(run.history) and all(m.receiver == run.host for m in
                                                                 t.filter(kind="encrypted-residuals"))
    ks = []
    for s_it, b_it in zip(sent, back, strict=True):
        k = np.full(len(s_it), np.nan)
        for i, (c, c2) in enumerate(zip(s_it, b_it, strict=True)):
            ratio = int(gmpy2.mpz(c2) * gmpy2.invert(c, n2) % n2)
            if ratio % n == 1:
                v = (ratio - 1) // n
                v = v - n if v > n // 2 else v
                if abs(v) < 2**40:  # a fixed-point value: |u_guest - 2 t| * 2^16
                    k[i] = v
        ks.append(k)
    y = pl.read_csv("data_samples/vertical/hospital.csv")["outcome"].to_numpy()[run.psi.positions[run.guest]]
    return ks, y[~run.test_mask]


def test_host_cannot_read_labels_from_returned_residuals(vrun):
    fed, run = vrun
    ks, y = _host_attack(fed, run)
    # Iteration 1: w = 0, so k = -2 t * 2^16 and a negative k means label 1.
    guess = ks[0] < 0
    recovered = float(np.mean(~np.isnan(ks[0]) & (guess == (y == 1))))
    assert recovered <= 0.6, f"host read {recovered:.0%} of the labels from the returned ciphertexts"
    # Later iterations would give u_guest - 2 t: no ratio of the form 1 + k n with a small k, ever.
    assert all(np.isnan(k).all() for k in ks)


def test_vertical_still_correct_after_rerandomisation(vrun):
    _, run = vrun
    loss = run.history["loss"].to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


def test_guest_outputs_are_fresh_each_call():
    """Same inputs twice: the residuals and the loss ciphertext differ, and decrypt to the same values."""
    keys = _KEYS
    n = keys.n
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 2))
    token = -1
    df = pl.DataFrame({"x": [0.0]})  # the guest's frame: its protocol state is kept with it (party memory)
    enc = FastEncryptor(n, keys.h_s)
    u_host = enc.encrypt_many([5 * i % n for i in range(6)])
    usq = enc.encrypt(55)
    outs = []
    try:
        for _ in range(2):
            state = {"z": z, "w": np.array([0.5, -0.25]), "w_prev": np.zeros(2), "b": 0.1, "b_prev": 0.0,
                     "t": np.array([1.0, -1, 1, 1, -1, -1])}
            remember_in_party(df, key=f"fedbench.vertical_lr/{token}", fn=lambda _df, st=state: st)
            outs.append(vertical.v_guest_residual(df, token=token, n=n, h_s=keys.h_s, beta=0.3,
                                                  scale=1 << 16, u_host=u_host, usq_host=usq))
    finally:
        vertical.v_forget(df, token=token)
    (r1, l1), (r2, l2) = outs
    assert decrypt_many(keys.private_key, r1) == decrypt_many(keys.private_key, r2)
    assert decrypt_many(keys.private_key, [l1]) == decrypt_many(keys.private_key, [l2])
    assert all(a != b for a, b in zip(r1, r2, strict=True)) and l1 != l2


@pytest.mark.parametrize("fast", [True, False], ids=["djn", "textbook"])
def test_rerandomize_keeps_plaintext_changes_ciphertext(fast):
    keys = _KEYS
    n = keys.n
    n2 = n * n
    enc = FastEncryptor(n, keys.h_s if fast else None)
    for m in (0, 1, 12345, n - 1):
        c = enc.encrypt(m)
        c2 = enc.rerandomize(c)
        assert c2 != c and 0 <= c2 < n2
        assert decrypt_many(keys.private_key, [c2]) == [m]
        # The ratio is an encryption of zero with fresh randomness, not 1 + k n.
        assert int(gmpy2.mpz(c2) * gmpy2.invert(c, n2) % n2) % n != 1
    # Transform-then-re-randomise, the pattern every protocol uses: still the transformed plaintext.
    c = enc.encrypt(40)
    shifted = c * (1 + 2 * n) % n2
    assert decrypt_many(keys.private_key, enc.rerandomize_many([shifted, shifted])) == [42, 42]
    with pytest.raises(ValueError):
        enc.rerandomize(n2)


@given(m=st.integers(0, 2**256), k=st.integers(-(2**64), 2**64), fast=st.booleans())
def test_transform_then_rerandomize_matches_plaintext(m, k, fast):
    """Property: ``rerandomize([[m]] * (1 + k n))`` decrypts to ``m + k mod n`` and hides ``k`` from the sender."""
    keys = _KEYS
    n = keys.n
    n2 = n * n
    enc = FastEncryptor(n, keys.h_s if fast else None)
    c = enc.encrypt(m % n)
    back = enc.rerandomize(c * (1 + (k % n) * n) % n2)
    assert decrypt_many(keys.private_key, [back]) == [(m + k) % n]
    assert int(gmpy2.mpz(back) * gmpy2.invert(c, n2) % n2) % n != 1


def test_aggregator_with_the_key_holder_reads_one_partys_local_aggregate():
    """The collusion the default trust model names (README, SECURITY.md) really breaks it, and only it.

    The aggregator holds each party's ciphertext message; the key holder's private key decrypts it
    and the run's public layout unpacks it: that party's own local sum, exactly.  Neither role alone
    can: the aggregator has no key, and the key holder receives only the aggregate.
    """
    fed = make_fed(audit=True)
    fed._keys = _KEYS
    rng = np.random.default_rng(5)
    locals_ = {}
    for name in ("north", "south", "east"):
        x = rng.integers(0, 1000, 40).astype(float)
        locals_[name] = float(x.sum())
        fed.add_party(name, pl.DataFrame({"x": x}))
    run = fed.secure_sum(lambda df: {"s": float(df["x"].sum())}, max_abs=2**20, frac_bits=16)
    assert run.value["s"] == pytest.approx(sum(locals_.values()), abs=1e-3)
    from fedbench.crypto.packing import PackingLayout

    keys = fed.keys
    enc = fb.Encoding.for_range(2**20, 16)
    layout = PackingLayout(enc, len(run.parties), keys.n.bit_length() - 1)
    width = (2 * keys.n.bit_length() + 7) // 8
    for name, local in locals_.items():
        (msg,) = [m for m in run.transcript if m.kind == "ciphertexts" and m.sender == name]
        assert msg.receiver == "aggregator" and msg.encrypted
        plain = decrypt_many(keys.private_key, bytes_to_ints(msg.payload, width))
        assert enc.decode_sum(layout.unpack(plain, 1), 1)[0] == pytest.approx(local, abs=1e-3)
    # What the key holder itself receives is the aggregate only: one message, from the aggregator.
    to_key_holder = [m for m in run.transcript if m.receiver == "keyholder"]
    assert to_key_holder and {m.sender for m in to_key_holder} == {"aggregator"}
