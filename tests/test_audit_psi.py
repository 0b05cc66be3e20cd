"""Audit issue 12, item 11 (PSI part): what a party can tell about the group elements it receives.

The finding: the former design hashed identifiers to X25519 u-coordinates; about
half of them lie on the quadratic twist, blinding keeps that curve/twist bit, so a
receiver learned one bit per non-matching identifier of the other party, and a
malformed element from a peer was multiplied by the party's secret unchecked.

These tests only use the public API (``intersect``, parties, the audit-mode
transcript) and PyNaCl, so they also run, and fail, against the former code.
"""

from __future__ import annotations

import nacl.bindings as sodium
import polars as pl
import pytest

from fedbench.errors import ProtocolError
from fedbench.party import Party
from fedbench.psi import _parties, intersect, shutdown_pool
from fedbench.transcript import Channel

P = 2**255 - 19
A = 486662  # Curve25519: v^2 = u^3 + A u^2 + u
L = 2**252 + 27742317777372353535851937790883648493

#: Kinds of message that carry whole (untruncated) group elements.
ELEMENT_KINDS = ("blinded-set", "common-blinded-set")


@pytest.fixture(scope="module", autouse=True)
def _stop_workers():
    yield
    shutdown_pool()


def text_party(name: str, values: list[str]) -> Party:
    return Party(name, pl.DataFrame({"id": pl.Series(values, dtype=pl.String)}))


def on_twist(element: bytes) -> bool:
    """The receiver's attack on the former design: is this u-coordinate on the twist?

    ``u`` is the x-coordinate of a point of Curve25519 iff ``u^3 + A u^2 + u`` is a
    square mod p (Euler's criterion), otherwise of a point of its twist.
    """
    u = int.from_bytes(element, "little") & ((1 << 255) - 1)
    rhs = (u * u * u + A * u * u + u) % P
    return rhs != 0 and pow(rhs, (P - 1) // 2, P) != 1


def elements(payload: bytes) -> list[bytes]:
    return [payload[i : i + 32] for i in range(0, len(payload), 32)]


def received_elements(ch: Channel, who: str) -> list[bytes]:
    return [e for m in ch.run if m.receiver == who and m.kind in ELEMENT_KINDS for e in elements(m.payload)]


def test_twist_test_positive_control():
    # The attack's helper is right: the X25519 base point (u = 9) is on the curve, and
    # u = 2 is on the twist (2^3 + 4A + 2 is a non-square mod p).
    assert not on_twist((9).to_bytes(32, "little"))
    assert on_twist((2).to_bytes(32, "little"))


@pytest.mark.parametrize("mode,kw,n", [("reveal", {"receiver": "a"}, 2), ("cardinality", {}, 3),
                                       ("reveal", {"receiver": "a"}, 3), ("align", {}, 2)])
def test_every_received_element_is_in_the_prime_order_subgroup(mode, kw, n):
    # 400 identifiers per party, 100 shared: most elements a party receives belong to
    # identifiers it does not hold.
    names = ["a", "b", "c"][:n]
    parties = [text_party(p, [f"{p if i >= 100 else 'shared'}-{i}" for i in range(400)]) for p in names]
    ch = Channel("psi", [], keep_payloads=True)
    intersect(parties, "id", mode=mode, channel=ch, workers=1, **kw)
    for who in names:
        got = received_elements(ch, who)
        if not got:
            continue
        # The curve/twist bit of the former design, computed as the receiver could.
        twist = sum(on_twist(e) for e in got)
        # With the fix every element is a canonical encoding of a point of the
        # prime-order subgroup (libsodium: on the curve, not of small order, L*P = 0),
        # so the only "bit" a receiver can compute from an element is constant.
        valid = [sodium.crypto_core_ed25519_is_valid_point(e) for e in got]
        assert all(valid), (
            f"{who} received {len(got)} elements, {valid.count(False)} outside the prime-order subgroup "
            f"of edwards25519; read as X25519 u-coordinates, {twist} lie on the twist: one bit per element"
        )
        assert len(set(got)) == len(got)  # blinding is a permutation: no collisions


def _torsion(kind: str, element: bytes) -> bytes:
    order4 = bytes(32)  # (sqrt(-1), 0): a point of order 4
    if kind == "small-order":
        return order4
    if kind == "torsion-component":
        # P + T with P in the subgroup: on the curve, not of small order, only L*P != 0
        # gives it away.
        return sodium.crypto_core_ed25519_add(element, order4)
    if kind == "off-curve":
        # y = 2 has no x on edwards25519 (the decoding fails).
        return (2).to_bytes(32, "little")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["small-order", "torsion-component", "off-curve"])
@pytest.mark.parametrize("remote,workers", [(False, 1), (False, 2), (True, 1)])
def test_a_malformed_element_from_a_peer_is_rejected_naming_the_sender(kind, remote, workers, monkeypatch):
    a = text_party("a", [f"id-{i}" for i in range(50)])
    b = text_party("b", [f"id-{i}" for i in range(25, 80)])
    if remote:
        a.remote = b.remote = True  # the path Ray actors take: state and steps inside each party
        original = _parties._first_in_party

        def first(df, **kw):
            values, cpu = original(df, **kw)
            if df.height == 55:  # party b
                values = _torsion(kind, values[:32]) + values[32:]
            return values, cpu

        monkeypatch.setattr(_parties, "_first_in_party", first)
    else:
        original_first = _parties.InProcessParties.first

        def first(self, hkeys):
            out = original_first(self, hkeys)
            values, cpu = out["b"]
            out["b"] = (_torsion(kind, values[:32]) + values[32:], cpu)
            return out

        monkeypatch.setattr(_parties.InProcessParties, "first", first)
    ch = Channel("psi", [], keep_payloads=True)
    with pytest.raises(ProtocolError) as err:
        intersect([a, b], "id", mode="reveal", receiver="a", channel=ch, workers=workers)
    assert getattr(err.value, "party", None) == "b"
    assert "'b'" in str(err.value) and "'a'" in str(err.value)
    # a refused before producing anything from b's set: no tags or size went out.
    assert [m.kind for m in ch.run if m.sender == "a" and m.kind != "session-salt"] == ["blinded-set"]


def test_scalars_are_uniform_in_one_to_l():
    # Scalars come from the OS CSPRNG reduced mod L, never zero: blinding permutes G.
    from fedbench.psi._kernels import new_scalar

    seen = {int.from_bytes(new_scalar(), "little") for _ in range(200)}
    assert len(seen) == 200 and all(0 < s < L for s in seen)
    assert max(seen) > L // 2  # unclamped: not confined to 8 * [2^251, 2^252)
