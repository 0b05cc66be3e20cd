"""Audit issue 12, item 11 (PSI part), and issue 13 (PSI speed on the default path).

The finding: the first design hashed identifiers to X25519 u-coordinates; about
half of them lie on the quadratic twist, blinding keeps that curve/twist bit, so a
receiver learned one bit per non-matching identifier of the other party, and a
malformed element from a peer was multiplied by the party's secret unchecked.

The current design sends X25519 u-coordinates again, but every one is the
u-coordinate of a point of the prime-order subgroup ``G`` of Curve25519, and a
party validates every value it receives before multiplying it.  The checks here
are independent of fedbench's code: a u-coordinate is mapped to edwards25519
(``y = (u - 1) / (u + 1)``, reference math written in this test) and libsodium's
``crypto_core_ed25519_is_valid_point`` (canonical, on the curve, not of small
order, ``[L] P = O``) decides membership of ``G``.
"""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions
import polars as pl
import pytest

from fedbench.errors import ProtocolError
from fedbench.party import Party
from fedbench.psi import _kernels, _parallel, _parties, intersect, protocol, shutdown_pool
from fedbench.transcript import Channel

P = 2**255 - 19
A = 486662  # Curve25519: v^2 = u^3 + A u^2 + u
L = 2**252 + 27742317777372353535851937790883648493

#: Kinds of message that carry whole (untruncated) group elements.
ELEMENT_KINDS = ("blinded-set", "common-blinded-set")

#: An edwards25519 point of order 4: (sqrt(-1), 0), encoded with y = 0.
ORDER4 = bytes(32)


@pytest.fixture(scope="module", autouse=True)
def _stop_workers():
    yield
    shutdown_pool()


def text_party(name: str, values: list[str]) -> Party:
    return Party(name, pl.DataFrame({"id": pl.Series(values, dtype=pl.String)}))


def on_twist(element: bytes) -> bool:
    """The receiver's attack on the first design: is this u-coordinate on the twist?

    ``u`` is the x-coordinate of a point of Curve25519 iff ``u^3 + A u^2 + u`` is a
    square mod p (Euler's criterion), otherwise of a point of its twist.
    """
    u = int.from_bytes(element, "little") & ((1 << 255) - 1)
    rhs = (u * u * u + A * u * u + u) % P
    return rhs != 0 and pow(rhs, (P - 1) // 2, P) != 1


def u_to_edwards(element: bytes) -> bytes | None:
    """Edwards encoding (sign bit 0) of the point with Montgomery u-coordinate ``element``."""
    u = int.from_bytes(element, "little")
    if u >= P or u == P - 1:
        return None
    return ((u - 1) * pow(u + 1, P - 2, P) % P).to_bytes(32, "little")


def edwards_to_u(point: bytes) -> bytes:
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, P - 2, P) % P).to_bytes(32, "little")


def in_prime_order_subgroup(element: bytes) -> bool:
    """Canonical u-coordinate of a point of G (either sign: -Q is in G iff Q is)."""
    ed = u_to_edwards(element)
    return ed is not None and bool(sodium.crypto_core_ed25519_is_valid_point(ed))


def elements(payload: bytes) -> list[bytes]:
    return [payload[i : i + 32] for i in range(0, len(payload), 32)]


def received_elements(ch: Channel, who: str) -> list[bytes]:
    return [e for m in ch.run if m.receiver == who and m.kind in ELEMENT_KINDS for e in elements(m.payload)]


def test_reference_checks_positive_control():
    # The attack's helper is right: the X25519 base point (u = 9) is on the curve, and
    # u = 2 is on the twist (2^3 + 4A + 2 is a non-square mod p).
    assert not on_twist((9).to_bytes(32, "little"))
    assert on_twist((2).to_bytes(32, "little"))
    # The subgroup test accepts points of G and rejects everything else.
    q = sodium.crypto_core_ed25519_from_uniform(b"\x07" * 32)  # libsodium clears the cofactor: q in G
    assert in_prime_order_subgroup(edwards_to_u(q))
    assert in_prime_order_subgroup((9).to_bytes(32, "little"))  # the X25519 base point generates G
    assert not in_prime_order_subgroup(edwards_to_u(sodium.crypto_core_ed25519_add(q, ORDER4)))
    assert not in_prime_order_subgroup((2).to_bytes(32, "little"))
    for u in _kernels.SMALL_ORDER_U:
        assert not in_prime_order_subgroup(u.to_bytes(32, "little"))
    assert not in_prime_order_subgroup((P + 9).to_bytes(32, "little"))  # 9, non-canonical


def test_small_order_list_is_the_8_torsion():
    # Independent check of the library's list: each is on the curve, and X25519 of it
    # by any clamped scalar is the identity (libsodium refuses the all-zero output);
    # the points of order 8 double to the order-4 point u = 1, which doubles to u = 0.
    for u in _kernels.SMALL_ORDER_U:
        assert not on_twist(u.to_bytes(32, "little"))
        with pytest.raises(nacl.exceptions.RuntimeError):
            sodium.crypto_scalarmult(_kernels.new_scalar(), u.to_bytes(32, "little"))
    assert len(_kernels.SMALL_ORDER_U) == 4  # orders 2, 4 (one u) and 8 (two u's): 7 points plus O


@pytest.mark.parametrize("mode,kw,n", [("reveal", {"receiver": "a"}, 2), ("cardinality", {}, 3),
                                       ("reveal", {"receiver": "a"}, 3), ("align", {}, 2)])
@pytest.mark.parametrize("workers", [1, 2])
def test_every_received_element_is_in_the_prime_order_subgroup(mode, kw, n, workers):
    # 400 identifiers per party, 100 shared: most elements a party receives belong to
    # identifiers it does not hold.
    names = ["a", "b", "c"][:n]
    parties = [text_party(p, [f"{p if i >= 100 else 'shared'}-{i}" for i in range(400)]) for p in names]
    ch = Channel("psi", [], keep_payloads=True)
    intersect(parties, "id", mode=mode, channel=ch, workers=workers, **kw)
    for who in names:
        got = received_elements(ch, who)
        if not got:
            continue
        # The curve/twist bit of the first design, computed as the receiver could.
        twist = sum(on_twist(e) for e in got)
        valid = [in_prime_order_subgroup(e) for e in got]
        assert all(valid), (
            f"{who} received {len(got)} elements, {valid.count(False)} outside the prime-order subgroup; "
            f"{twist} lie on the twist: one bit per element"
        )
        assert len(set(got)) == len(got)  # blinding is a permutation of G up to sign: no collisions


MALFORMED = {
    "twist": (2).to_bytes(32, "little"),
    "zero": bytes(32),  # order 2
    "order-4": (1).to_bytes(32, "little"),
    "order-8": min(_kernels.SMALL_ORDER_U - {0, 1}).to_bytes(32, "little"),
    "non-canonical": (P + 9).to_bytes(32, "little"),  # u = 9 (a point of G) written as u + p
    "top-bit": ((1 << 255) + 9).to_bytes(32, "little"),  # u = 9 with bit 255 set
}


def _tamper(kind: str, values: bytes) -> bytes:
    return MALFORMED[kind] + values[32:]


@pytest.mark.parametrize("kind", sorted(MALFORMED))
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
                values = _tamper(kind, values)
            return values, cpu

        monkeypatch.setattr(_parties, "_first_in_party", first)
    else:
        original_first = _parties.InProcessParties.first

        def first(self, hkeys):
            out = original_first(self, hkeys)
            values, cpu = out["b"]
            out["b"] = (_tamper(kind, values), cpu)
            return out

        monkeypatch.setattr(_parties.InProcessParties, "first", first)
    ch = Channel("psi", [], keep_payloads=True)
    with pytest.raises(ProtocolError) as err:
        intersect([a, b], "id", mode="reveal", receiver="a", channel=ch, workers=workers)
    assert getattr(err.value, "party", None) == "b"
    assert "'b'" in str(err.value) and "'a'" in str(err.value)
    # a refused before producing anything from b's set: no tags or size went out.
    assert [m.kind for m in ch.run if m.sender == "a" and m.kind != "session-salt"] == ["blinded-set"]


def test_a_torsion_component_is_cleared_by_the_clamp(monkeypatch):
    # Q + T (Q in G, T of order 4) is on the curve and not of small order; only [L]P != O
    # tells it apart, which costs a scalar multiplication.  X25519's scalar is a multiple
    # of 8, so the reply to Q + T is exactly the reply to Q: nothing about the secret
    # scalar beyond its action on G can be learned, and the output is in G.
    s = _kernels.new_scalar()
    hkey = _kernels.session_hash_key(b"\x05" * 32, b"key:6:string")
    good, _ = _kernels.hash_and_blind(_kernels.new_scalar(), hkey, [b"s1:x", b"s1:y"])
    q = good[:32]
    ed = u_to_edwards(q)
    assert ed is not None
    bad = edwards_to_u(sodium.crypto_core_ed25519_add(ed, ORDER4))
    assert not in_prime_order_subgroup(bad) and not on_twist(bad)  # a real torsion component
    assert _kernels.blind(s, bad + good[32:])[0] == _kernels.blind(s, good)[0]
    assert in_prime_order_subgroup(_kernels.blind(s, bad)[0])
    # And end to end: b's first element carries a torsion component, the run succeeds
    # with the same answer.
    original_first = _parties.InProcessParties.first

    def first(self, hkeys):
        out = original_first(self, hkeys)
        values, cpu = out["b"]
        t = edwards_to_u(sodium.crypto_core_ed25519_add(u_to_edwards(values[:32]), ORDER4))
        out["b"] = (t + values[32:], cpu)
        return out

    monkeypatch.setattr(_parties.InProcessParties, "first", first)
    a = text_party("a", [f"id-{i}" for i in range(50)])
    b = text_party("b", [f"id-{i}" for i in range(25, 80)])
    assert intersect([a, b], "id", mode="cardinality", channel=Channel("psi", []), workers=1).size == 25


def test_scalars_are_clamped_and_act_as_permutations_of_g():
    # 32 bytes from the OS CSPRNG, clamped: s = 8k with 2^251 <= k < 2^252, so s mod L != 0
    # (blinding permutes G) and the factor 8 maps any curve point into G.
    seen = [int.from_bytes(_kernels.new_scalar(), "little") for _ in range(200)]
    assert len(set(seen)) == 200
    assert all(s % 8 == 0 and 2**254 <= s < 2**255 and s % L for s in seen)
    assert len({(s >> 3) & 0xFF for s in seen}) > 100  # the low bits of k vary: not a constant scalar


# --------------------------------------------------------------------------- issue 13: the default path
def test_default_federation_runs_large_psi_on_the_worker_pool(monkeypatch):
    # A default Federation() (in-process backend) must hash and blind a large set on every
    # core: before the fix it passed workers=1 and ran PSI on one core.
    import fedbench as fb

    used: list[int] = []
    original = _parallel.Executor._run_pool

    def spy(self, jobs, total):
        used.append(self.workers)
        return original(self, jobs, total)

    monkeypatch.setattr(_parallel.Executor, "_run_pool", spy)
    monkeypatch.setattr(protocol, "available_cores", lambda: 2)
    fed = fb.Federation()
    n = _parallel.PARALLEL_MIN_OPS  # a step blinds 2n elements: above the threshold
    fed.add_party("a", pl.DataFrame({"id": [f"u{i}" for i in range(n)]}))
    fed.add_party("b", pl.DataFrame({"id": [f"u{i}" for i in range(n // 2, n + n // 2)]}))
    assert fed.intersect("id").size == n - n // 2
    assert used and all(w == 2 for w in used)
