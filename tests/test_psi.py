"""Tests of the private set intersection layer (fedbench.psi)."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbench.errors import (
    ConfigurationError,
    DtypeConflictError,
    DuplicateKeyError,
    DuplicatePartyError,
    EmptyPartyError,
    KeyTypeError,
    MissingColumnError,
    NormalizationError,
    NullValuesError,
    ProtocolError,
    TooFewPartiesError,
    UnknownPartyError,
)
from fedbench.party import Party
from fedbench.psi import (
    PSIResult,
    _kernels,
    _parallel,
    hash_to_group,
    intersect,
    normalize_email,
    normalize_phone,
    protocol,
    session_hash_key,
    shutdown_pool,
)
from fedbench.psi._kernels import new_scalar
from fedbench.psi._parallel import BlindJob, Executor, GroupElementError
from fedbench.psi.encoding import key_context
from fedbench.transcript import Channel

REPO = Path(__file__).resolve().parents[1]


def chan() -> Channel:
    return Channel("psi", [], keep_payloads=True)


def party(party_name: str, **cols: object) -> Party:
    return Party(party_name, pl.DataFrame(cols))


def text_party(name: str, values: list[str | None]) -> Party:
    return Party(name, pl.DataFrame({"id": pl.Series(values, dtype=pl.String)}))


@pytest.fixture(scope="module", autouse=True)
def _stop_workers():
    yield
    shutdown_pool()


# --------------------------------------------------------------------------- plaintext reference
# Deliberately independent of fedbench.psi.normalize: plain Python string methods.
REF_STEPS = {
    "strip": str.strip,
    "casefold": str.casefold,
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
    "standard": lambda s: " ".join(unicodedata.normalize("NFKC", s).split()).casefold(),
}
SPECS: dict[str, tuple[object, list[str]]] = {
    "none": (None, []),
    "strip": ("strip", ["strip"]),
    "nfkc+casefold": (["nfkc", "casefold"], ["nfkc", "casefold"]),
    "standard": ("standard", ["standard"]),
}


def canon(value: str | None, steps: list[str]) -> str | None:
    if value is None:
        return None
    for s in steps:
        value = REF_STEPS[s](value)
    return value or None  # empty identifiers count as missing


def ref_set(values: list[str | None], steps: list[str]) -> set[str]:
    return {c for v in values if (c := canon(v, steps)) is not None}


def first_rows(values: list[str | None], steps: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, v in enumerate(values):
        c = canon(v, steps)
        if c is not None and c not in out:
            out[c] = i
    return out


# Small alphabet with case, compatibility and combining forms, and spaces, so that
# normalisation, duplicates and empty identifiers all happen often.
ALPHABET = "aAbB ßẞﬁé\u0065\u0301Ω\u2126\u3000\t1"
ident = st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=4))
# One "anchor" identifier that survives every normalisation keeps most examples non-empty
# (a party without identifiers is tested on its own below).
idlists = st.tuples(st.lists(ident, max_size=11), st.sampled_from(["a", "B", "ß", "ab"]), st.integers(0, 11)).map(
    lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]]
)


def run_or_empty(sets: list[set], fn):
    """Run fn(); a party with no usable identifier must raise EmptyPartyError instead."""
    if any(not s for s in sets):
        with pytest.raises(EmptyPartyError):
            fn()
        return None
    return fn()


# --------------------------------------------------------------------------- basic behaviour
def test_two_party_modes_basic():
    a = text_party("bank_a", ["alice", "bob", "carol", "dave", "bob", None])
    b = text_party("bank_b", ["carol", "bob", "erin"])
    r = intersect([a, b], "id", mode="cardinality", channel=chan())
    assert isinstance(r, PSIResult) and r.size == 2 and r.ids is None and r.positions is None
    assert r.overlap.rows() == [("bank_a", 4, 2), ("bank_b", 2, 3)]
    assert r.set_sizes == {"bank_a": 4, "bank_b": 3}
    assert r.missing == {"bank_a": 1, "bank_b": 0} and r.duplicates == {"bank_a": 1, "bank_b": 0}

    r = intersect([a, b], "id", mode="reveal", receiver="bank_a", channel=chan())
    assert r.size == 2 and r.receiver == "bank_a"
    assert r.ids.to_dict(as_series=False) == {"id": ["bob", "carol"]}
    assert r.positions["bank_a"].tolist() == [1, 2]

    r = intersect([a, b], "id", mode="align", duplicates="first", channel=chan())
    assert r.size == 2 and r.receiver is None
    pa, pb = r.positions["bank_a"], r.positions["bank_b"]
    va = ["alice", "bob", "carol", "dave", "bob", None]
    vb = ["carol", "bob", "erin"]
    assert [va[i] for i in pa] == [vb[j] for j in pb]
    assert sorted(va[i] for i in pa) == ["bob", "carol"]


def test_result_repr_and_html_never_show_ids():
    a = text_party("bank_a", ["qzx-alice-1", "qzx-bob-2", "qzy-carol-3"])
    b = text_party("bank_b", ["qzy-carol-3", "qzx-erin-4"])
    for mode, kw in [("reveal", {"receiver": "bank_a"}), ("cardinality", {}), ("align", {})]:
        r = intersect([a, b], "id", mode=mode, channel=chan(), **kw)
        text = repr(r) + r._repr_html_() + r.leakage
        for v in ["qzx", "qzy", "carol", "erin", "alice"]:
            assert v not in text
        assert mode in repr(r) and "Leakage" in r._repr_html_()
        assert "sizes" in r.leakage or "size" in r.leakage
        assert r.nbytes == r.transcript.nbytes > 0 and r.elapsed > 0
        assert len(r) == 1


def test_transcript_records_every_message():
    a = text_party("h", [f"patient-{i}" for i in range(10)])
    b = text_party("i", [f"patient-{i}" for i in range(5, 20)])
    ch = chan()
    r = intersect([a, b], "id", mode="reveal", receiver="h", channel=ch)
    kinds = [(m.sender, m.receiver, m.kind, m.encrypted, m.nbytes) for m in r.transcript]
    assert kinds == [
        ("h", "i", "session-salt", False, 32),
        ("h", "i", "blinded-set", True, 32 * 10),
        ("i", "h", "blinded-set", True, 32 * 15),
        ("i", "h", "blinded-tags", True, 16 * 10),
        ("h", "i", "intersection-size", False, 8),
    ]
    assert r.transcript is ch.run and r.size == 5
    assert r.bytes_per_element == pytest.approx(r.nbytes / 25)


def test_three_party_cardinality_and_reveal():
    a = text_party("a", ["x1", "x2", "x3", "x4", "x5"])
    b = text_party("b", ["x2", "x3", "x4", "y1"])
    c = text_party("c", ["x3", "x4", "x5", "y1", "z"])
    r = intersect([a, b, c], "id", channel=chan())
    assert r.size == 2
    m = {row[0]: row[1:] for row in r.overlap.rows()}
    assert m == {"a": (5, 3, 3), "b": (3, 4, 3), "c": (3, 3, 5)}
    for recv in ("a", "b", "c"):
        r = intersect([a, b, c], "id", mode="reveal", receiver=recv, channel=chan())
        assert sorted(r.ids.get_column("id").to_list()) == ["x3", "x4"]
        assert "combiner" in r.leakage


# --------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(va=idlists, vb=idlists, spec=st.sampled_from(sorted(SPECS)), recv=st.sampled_from(["a", "b"]))
def test_property_two_parties_all_modes(va, vb, spec, recv):
    norm, steps = SPECS[spec]
    sa, sb = ref_set(va, steps), ref_set(vb, steps)
    pa, pb = text_party("a", va), text_party("b", vb)
    common = sa & sb

    r = run_or_empty([sa, sb], lambda: intersect([pa, pb], "id", normalize=norm, channel=chan()))
    if r is None:
        return
    assert r.size == len(common)
    assert r.overlap.rows() == [("a", len(sa), len(common)), ("b", len(common), len(sb))]

    r = intersect([pa, pb], "id", mode="reveal", receiver=recv, normalize=norm, channel=chan())
    mine = va if recv == "a" else vb
    got = [canon(v, steps) for v in r.ids.get_column("id").to_list()]
    assert sorted(got) == sorted(common)  # each shared identifier exactly once
    firsts = first_rows(mine, steps)
    assert r.positions[recv].tolist() == sorted(firsts[c] for c in common)

    r = intersect([pa, pb], "id", mode="align", duplicates="first", normalize=norm, channel=chan())
    fa, fb = first_rows(va, steps), first_rows(vb, steps)
    ka = [canon(va[i], steps) for i in r.positions["a"]]
    kb = [canon(vb[j], steps) for j in r.positions["b"]]
    assert ka == kb  # same identifier at every position: a common order
    assert sorted(ka) == sorted(common)
    assert all(fa[k] == i for k, i in zip(ka, r.positions["a"], strict=True))
    assert all(fb[k] == j for k, j in zip(kb, r.positions["b"], strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(va=idlists, vb=idlists, vc=idlists, spec=st.sampled_from(sorted(SPECS)), recv=st.sampled_from("abc"))
def test_property_three_parties(va, vb, vc, spec, recv):
    norm, steps = SPECS[spec]
    sets = {"a": ref_set(va, steps), "b": ref_set(vb, steps), "c": ref_set(vc, steps)}
    ps = [text_party("a", va), text_party("b", vb), text_party("c", vc)]
    r = run_or_empty(list(sets.values()), lambda: intersect(ps, "id", normalize=norm, channel=chan()))
    if r is None:
        return
    common = sets["a"] & sets["b"] & sets["c"]
    assert r.size == len(common)
    for row in r.overlap.iter_rows(named=True):
        for other in "abc":
            assert row[other] == len(sets[row["party"]] & sets[other])
    r = intersect(ps, "id", mode="reveal", receiver=recv, normalize=norm, channel=chan())
    assert sorted(canon(v, steps) for v in r.ids.get_column("id").to_list()) == sorted(common)


composite_rows = st.lists(
    st.tuples(st.one_of(st.none(), st.text(alphabet="ab ", max_size=3)), st.one_of(st.none(), st.integers(0, 3))),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ra=composite_rows, rb=composite_rows)
def test_property_composite_keys(ra, rb):
    def keyset(rows):
        return {(canon(t, ["strip"]), n) for t, n in rows if canon(t, ["strip"]) is not None and n is not None}

    def mk(name, rows):
        return Party(
            name,
            pl.DataFrame(
                {"name": [t for t, _ in rows], "dob": [n for _, n in rows], "x": list(range(len(rows)))},
                schema={"name": pl.String, "dob": pl.Int64, "x": pl.Int64},
            ),
        )

    sa, sb = keyset(ra), keyset(rb)
    pa, pb = mk("a", ra), mk("b", rb)
    r = run_or_empty([sa, sb], lambda: intersect([pa, pb], ["name", "dob"], normalize="strip", channel=chan()))
    if r is None:
        return
    assert r.size == len(sa & sb)
    r = intersect([pa, pb], ["name", "dob"], mode="reveal", receiver="a", normalize="strip", channel=chan())
    assert {(canon(t, ["strip"]), n) for t, n in r.ids.rows()} == sa & sb
    assert r.ids.columns == ["name", "dob"]
    r = intersect([pa, pb], ["name", "dob"], mode="align", duplicates="first", normalize="strip", channel=chan())
    ka = [(canon(ra[i][0], ["strip"]), ra[i][1]) for i in r.positions["a"]]
    kb = [(canon(rb[j][0], ["strip"]), rb[j][1]) for j in r.positions["b"]]
    assert ka == kb and set(ka) == sa & sb


def test_composite_encoding_is_unambiguous():
    a = party("a", f=["ab", "a", "x:1"], g=["c", "bc", "y"])
    b = party("b", f=["a", "ab", "x"], g=["bc", "c", "1:y"])
    r = intersect([a, b], ["f", "g"], mode="reveal", receiver="a", channel=chan())
    assert sorted(r.ids.rows()) == [("a", "bc"), ("ab", "c")]  # ("x:1","y") != ("x","1:y")


# --------------------------------------------------------------------------- kinds and normalisation
def test_numbers_match_by_value_and_strings_never_match_numbers():
    a = party("a", id=[1, 2, 3, 4])
    b = party("b", id=[3.0, 4.5, float("nan"), 1.0, None])
    r = intersect([a, b], "id", mode="reveal", receiver="b", channel=chan())
    assert sorted(r.ids.get_column("id").to_list()) == [1.0, 3.0]
    assert r.missing["b"] == 2  # NaN and null
    s = party("s", id=["1", "2", "3"])
    with pytest.raises(DtypeConflictError) as e:
        intersect([a, s], "id", channel=chan())
    assert e.value.column == "id" and "'a'" in str(e.value) and "'s'" in str(e.value)
    r = intersect([a, s], "id", cast="string", mode="reveal", receiver="s", channel=chan())
    assert sorted(r.ids.get_column("id").to_list()) == ["1", "2", "3"]


def test_categorical_dates_and_datetimes():
    a = Party("a", pl.DataFrame({"c": pl.Series(["x", "y"], dtype=pl.Categorical), "d": [dt.date(2020, 1, 1)] * 2}))
    b = party("b", c=["y", "z"], d=[dt.date(2020, 1, 1), dt.date(2020, 1, 2)])
    assert intersect([a, b], ["c", "d"], channel=chan()).size == 1
    utc = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    c = Party("c", pl.DataFrame({"t": pl.Series([utc]).dt.convert_time_zone("Europe/Paris")}))
    d = Party("d", pl.DataFrame({"t": pl.Series([utc, utc + dt.timedelta(seconds=1)])}))
    assert intersect([c, d], "t", channel=chan()).size == 1  # same instant, other zone
    naive = party("n", t=[dt.datetime(2024, 5, 1, 12)])
    with pytest.raises(DtypeConflictError):
        intersect([c, naive], "t", channel=chan())


def test_normalisation_helpers():
    assert normalize_email("  <J.Doe+Bank@GoogleMail.com> ") == "jdoe@gmail.com"
    assert normalize_email("mailto:Ann.Lee+x@Example.ORG.") == "ann.lee@example.org"
    assert normalize_email("Ann@Bücher.de") == "ann@xn--bcher-kva.de"
    assert normalize_email("not an address") is None and normalize_email("@x.org") is None
    assert normalize_email("a+b@x.org", subaddress=False) == "a+b@x.org"
    assert normalize_phone("+1 (415) 555-0100 ext. 7") == "+14155550100"
    assert normalize_phone("0044 20 7946 0000") == "+442079460000"
    assert normalize_phone("020 7946 0000", default_country_code="+44") == "+442079460000"
    assert normalize_phone("０２０-７９４６") == "0207946"  # full-width digits
    assert normalize_phone("12") is None


def test_email_and_phone_normalisers_in_a_run():
    a = party("a", email=["J.Doe+bank@gmail.com", "ann@x.org ", "bad"], phone=["+44 20 7946 0000", "555", "2"])
    b = party("b", email=["jdoe@googlemail.com", "ANN@X.ORG", "zed@x.org"], phone=["020 7946 0000", "556", "9"])
    r = intersect([a, b], "email", normalize="email", channel=chan())
    assert r.size == 2 and r.missing["a"] == 1  # "bad" is not an address: missing
    hook = {"phone": lambda s: normalize_phone(s, default_country_code="44")}
    r = intersect([a, b], "phone", normalize=hook, mode="reveal", receiver="a", channel=chan())
    assert r.ids.get_column("phone").to_list() == ["+44 20 7946 0000"]


def test_normalisation_hook_and_mapping():
    a = party("a", name=["  Zoë ", "BOB"], n=[1, 2])
    b = party("b", name=["zoe\u0308", "bob"], n=[1, 3])
    r = intersect([a, b], ["name", "n"], normalize={"name": ["nfc", "strip", "casefold"]}, channel=chan())
    assert r.size == 1
    r = intersect([a, b], "name", normalize=lambda s: s.strip().lower()[:2], channel=chan())
    assert r.size == 2  # "zo" (the combining accent is past the second char) and "bo"


# --------------------------------------------------------------------------- bad input
def _bad_cases():
    a = text_party("bank_a", ["a1", "a2", "a3"])
    b = text_party("bank_b", ["a2", "a3"])
    nulls = text_party("bank_n", ["a2", None])
    empties = text_party("bank_e", ["a2", ""])
    allnull = text_party("bank_z", [None, ""])
    ints = party("bank_i", id=[1, 2])
    dup = text_party("bank_d", ["a2", "a2", "a3"])
    lists = party("bank_l", id=[[1], [2]])
    other = party("bank_o", key=["a2"])
    return [
        ("missing column", dict(parties=[a, other], on="id"), MissingColumnError, ("bank_o", "id")),
        ("nulls error", dict(parties=[a, nulls], on="id", nulls="error"), NullValuesError, ("bank_n", "id")),
        ("empty error", dict(parties=[a, empties], on="id", nulls="error"), NullValuesError, ("bank_e", "id")),
        ("empty set", dict(parties=[a, allnull], on="id"), EmptyPartyError, ("bank_z",)),
        ("mixed types", dict(parties=[a, ints], on="id"), DtypeConflictError, ("bank_a", "bank_i", "id")),
        ("single party", dict(parties=[a], on="id"), TooFewPartiesError, ("bank_a",)),
        ("no party", dict(parties=[], on="id"), TooFewPartiesError, ()),
        ("unknown mode", dict(parties=[a, b], on="id", mode="union"), ConfigurationError, ("union",)),
        (
            "receiver unknown",
            dict(parties=[a, b], on="id", mode="reveal", receiver="bank_x"),
            UnknownPartyError,
            ("bank_x",),
        ),
        ("receiver missing", dict(parties=[a, b], on="id", mode="reveal"), ConfigurationError, ("receiver",)),
        ("align 3 parties", dict(parties=[a, b, dup], on="id", mode="align"), ConfigurationError, ("two",)),
        (
            "align receiver",
            dict(parties=[a, b], on="id", mode="align", receiver="bank_a"),
            ConfigurationError,
            ("receiver",),
        ),
        ("align duplicates", dict(parties=[a, dup], on="id", mode="align"), DuplicateKeyError, ("bank_d", "id")),
        ("duplicates error", dict(parties=[a, dup], on="id", duplicates="error"), DuplicateKeyError, ("bank_d",)),
        ("unknown option", dict(parties=[a, b], on="id", colour="red"), ConfigurationError, ("colour",)),
        ("bad null policy", dict(parties=[a, b], on="id", nulls="keep"), ConfigurationError, ("nulls",)),
        ("bad step", dict(parties=[a, b], on="id", normalize="soundex"), ConfigurationError, ("soundex",)),
        (
            "normalise number",
            dict(parties=[ints, party("bank_j", id=[2])], on="id", normalize={"id": "strip"}),
            NormalizationError,
            ("bank_i", "id"),
        ),
        ("hook type", dict(parties=[a, b], on="id", normalize=lambda s: 1), NormalizationError, ("bank_a", "id")),
        (
            "hook raises",
            dict(parties=[a, b], on="id", normalize=lambda s: s.nope()),
            NormalizationError,
            ("bank_a", "id"),
        ),
        ("list column", dict(parties=[lists, b], on="id"), KeyTypeError, ("bank_l", "id")),
        ("same party twice", dict(parties=[a, a], on="id"), DuplicatePartyError, ("bank_a",)),
        ("workers", dict(parties=[a, b], on="id", workers=0), ConfigurationError, ("workers",)),
        ("no columns", dict(parties=[a, b], on=[]), ConfigurationError, ("on",)),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_before_anything_is_sent(case):
    _, kwargs, exc_type, names = case
    ch = chan()
    with pytest.raises(exc_type) as e:
        intersect(channel=ch, **kwargs)
    assert len(ch.run) == 0
    for n in names:
        assert n in str(e.value)
    if hasattr(e.value, "column") and "id" in names:
        assert e.value.column == "id"
    if hasattr(e.value, "party") and names and names[0].startswith("bank_") and exc_type is not DtypeConflictError:
        assert e.value.party == names[0]


def test_errors_do_not_quote_identifiers():
    a = text_party("a", ["top-secret-1", "x"])
    with pytest.raises(NormalizationError) as e:
        intersect([a, text_party("b", ["x"])], "id", normalize=lambda s: int(s), channel=chan())
    assert "top-secret" not in str(e.value)


# --------------------------------------------------------------------------- privacy audit
def _needles(values: list[str], hkey: bytes) -> list[bytes]:
    out = []
    for v in values:
        raw = v.encode()
        enc = b"s%d:%s" % (len(raw), raw)
        u = hash_to_group(hkey, [enc])
        out += [raw, enc, u, u[:16], hashlib.sha256(raw).digest()[:16], hashlib.blake2b(raw).digest()[:16]]
        out += [hashlib.sha256(enc).digest()[:16], hashlib.md5(raw).hexdigest().encode()]
    return out


@pytest.mark.parametrize(
    "mode,kw,n",
    [
        ("reveal", {"receiver": "hospital"}, 2),
        ("cardinality", {}, 2),
        ("align", {}, 2),
        ("reveal", {"receiver": "insurer"}, 3),
        ("cardinality", {}, 3),
    ],
)
def test_no_message_contains_raw_identifiers_or_their_hashes(mode, kw, n, monkeypatch):
    data = {
        "hospital": ["alice.wonder@example.org", "bob.marley@example.org", "carol.king@example.org"],
        "insurer": ["carol.king@example.org", "dave.grohl@example.org", "erin.brock@example.org"],
        "lab": ["carol.king@example.org", "frank.zappa@example.org", "alice.wonder@example.org"],
    }
    names = list(data)[:n]
    ps = [text_party(k, data[k]) for k in names]
    used: list[bytes] = []

    def spy(salt: bytes, context: bytes) -> bytes:
        used.append(session_hash_key(salt, context))
        return used[-1]

    monkeypatch.setattr(protocol, "session_hash_key", spy)
    ch = chan()
    r = intersect(ps, "id", mode=mode, channel=ch, **kw)
    salt = next(m.payload for m in ch.run if m.kind == "session-salt")
    hkey = session_hash_key(salt, key_context(["string"]))
    # The audit looks for the hash-to-group values this very run computed.
    assert set(used) == {hkey}
    for who in names:
        received = ch.run.received_by(who)
        assert received, who
        foreign = [v for k in names if k != who for v in data[k]]
        for needle in _needles(foreign, hkey):
            assert all(needle not in payload for payload in received), (who, needle)
    if mode == "reveal":
        assert set(r.ids.get_column("id").to_list()) <= set(data[kw["receiver"]])


def test_audit_positive_control():
    # If a protocol sent unblinded hashes, the audit above would catch it.
    salt = b"\x01" * 32
    hkey = session_hash_key(salt, key_context(["string"]))
    leak = hash_to_group(hkey, [b"s9:alice@x.y"])
    assert any(n in b"prefix" + leak for n in _needles(["alice@x.y"], hkey))


# --------------------------------------------------------------------------- parallel path, protocol errors
def test_worker_pool_gives_the_same_result():
    a = text_party("a", [f"id-{i}" for i in range(600)])
    b = text_party("b", [f"id-{i}" for i in range(400, 1500)])
    serial = intersect([a, b], "id", mode="align", channel=chan(), workers=1)
    pooled = intersect([a, b], "id", mode="align", channel=chan(), workers=2)
    assert serial.size == pooled.size == 200
    for r in (serial, pooled):
        assert sorted(r.positions["a"].tolist()) == list(range(400, 600))
        assert sorted(r.positions["b"].tolist()) == list(range(200))
        assert (r.positions["a"] - 400 == r.positions["b"]).all()


def test_worker_pool_in_an_unguarded_script(tmp_path):
    # Workers must not re-run the caller's main script (as multiprocessing's spawn would).
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import polars as pl
            from fedbench.party import Party
            from fedbench.transcript import Channel
            from fedbench.psi import intersect
            print("top-level")
            a = Party("a", pl.DataFrame({"id": [str(i) for i in range(300)]}))
            b = Party("b", pl.DataFrame({"id": [str(i) for i in range(100, 500)]}))
            print(intersect([a, b], "id", channel=Channel("psi", []), workers=2).size)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["top-level", "200"]


def test_worker_pool_recovers_from_a_dead_worker():
    job = BlindJob(new_scalar(), hash_to_group(b"k" * 32, [b"s1:x"]))
    first = Executor(2, force=True).run([job])
    pool = _parallel._pool
    assert pool is not None
    pool.workers[0].proc.kill()  # a worker this test's pool started
    pool.workers[0].proc.wait()
    assert Executor(2, force=True).run([job])[0][0] == first[0][0]
    assert _parallel._pool is not pool


@pytest.mark.parametrize("workers", [1, 2])
def test_low_order_point_is_a_protocol_error(workers):
    good = hash_to_group(b"k" * 32, [b"s1:x", b"s1:y"])
    with pytest.raises(GroupElementError) as err:
        Executor(workers, force=True).run([BlindJob(new_scalar(), good), BlindJob(new_scalar(), good + b"\x00" * 32)])
    assert isinstance(err.value, ProtocolError) and err.value.job == 1


# --------------------------------------------------------------------------- peer cross-check
def test_cross_check_with_openmined_psi():
    psi = pytest.importorskip(
        "private_set_intersection.python", reason="openmined-psi (optional peer) is not installed"
    )
    client_items = [f"user{i}@example.org" for i in range(0, 300, 2)]
    server_items = [f"user{i}@example.org" for i in range(0, 300, 3)]
    c = psi.client.CreateWithNewKey(True)
    s = psi.server.CreateWithNewKey(True)
    setup = s.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
    resp = s.ProcessRequest(c.CreateRequest(client_items))
    theirs = {client_items[i] for i in c.GetIntersection(setup, resp)}
    r = intersect(
        [text_party("client", client_items), text_party("server", server_items)],
        "id",
        mode="reveal",
        receiver="client",
        channel=chan(),
    )
    assert set(r.ids.get_column("id").to_list()) == theirs
    assert r.size == len(theirs) == 50


# --------------------------------------------------------------------------- group kernels
def _reference_hash_u(x: bytes, hkey: bytes) -> int:
    # Written from the specification in the docstring, with Euler's criterion for squares.
    p, a = 2**255 - 19, 486662
    small = {0, 1} | {u for u in _kernels.SMALL_ORDER_U}
    ctr = 0
    while True:
        salt = ctr.to_bytes(16, "little")
        d = hashlib.blake2b(x, digest_size=64, key=hkey, person=_kernels.PERSON, salt=salt).digest()
        for half in (d[:32], d[32:]):
            u = int.from_bytes(half, "little") % 2**255
            rhs = (u**3 + a * u * u + u) % p
            if u < p and u not in small and pow(rhs, (p - 1) // 2, p) == 1:
                return u
        ctr += 1


def test_hash_and_blind_equals_reference_and_both_x25519_engines_agree():
    import nacl.bindings as sodium

    hkey = session_hash_key(b"\x02" * 32, key_context(["string"]))
    items = [f"s5:id-{i}".encode() for i in range(200)]
    unblinded = hash_to_group(hkey, items)
    assert unblinded == b"".join(_reference_hash_u(x, hkey).to_bytes(32, "little") for x in items)
    s = new_scalar()
    fast, _ = _kernels.hash_and_blind(s, hkey, items)
    # PyNaCl's public binding of libsodium's X25519 gives the same bytes as the default engine.
    ref = b"".join(sodium.crypto_scalarmult(s, unblinded[i : i + 32]) for i in range(0, len(unblinded), 32))
    assert fast == ref
    pts = [unblinded[i : i + 32] for i in range(0, len(unblinded), 32)]
    assert {_kernels._multiply(s, pts, engine=e) for e in ("openssl", "sodium", "bindings")} == {ref}
    assert _kernels.blind(s, unblinded)[0] == ref
    assert _kernels.check_elements(fast) == -1
    # Commutativity, which the protocol relies on.
    t = new_scalar()
    assert _kernels.blind(t, ref)[0] == _kernels.blind(s, _kernels.blind(t, unblinded)[0])[0]


def test_the_default_x25519_engine_is_timed_once_and_is_an_installed_one(monkeypatch):
    monkeypatch.setattr(_kernels, "_engine", None)
    calls = []
    real = _kernels._multiply

    def spy(scalar, points, *, engine=None):
        calls.append(engine)
        return real(scalar, points, engine=engine)

    monkeypatch.setattr(_kernels, "_multiply", spy)
    chosen = _kernels.fastest_engine()
    assert chosen in _kernels.ENGINES and chosen != "bindings"
    timed = len(calls)
    # Both fast engines were timed (best of three each) ...
    assert {"openssl", "sodium"} <= set(calls) and timed >= 6
    # ... once per process: later calls reuse the choice.
    assert _kernels.fastest_engine() == chosen and len(calls) == timed


@pytest.mark.parametrize("bad", [2, 0, 1, 2**255 - 19 + 9, 2**255 + 9])
def test_check_elements_finds_the_first_invalid_value(bad):
    good = hash_to_group(b"k" * 32, [b"s1:x", b"s1:y", b"s1:z"])
    values = good[:64] + bad.to_bytes(32, "little") + good[64:]
    assert _kernels.check_elements(good) == -1
    assert _kernels.check_elements(values) == 2
    with pytest.raises(_kernels.BadElementError) as err:
        _kernels.blind(new_scalar(), values)
    assert str(err.value) == _kernels._INVALID  # a fixed text: no value, no position


def test_group_element_error_survives_pickling():
    # Raised inside a Ray actor, it must reach the driver with the sender's name.
    err = pickle.loads(pickle.dumps(GroupElementError("party 'b' sent ...", party="b", job=3)))
    assert isinstance(err, ProtocolError) and err.party == "b" and err.job == 3 and "'b'" in str(err)
