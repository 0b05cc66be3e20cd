"""The PSI message flows: routing blinded sets between parties, comparing, reporting.

Parties only exchange *bytes* through the run's
:class:`~fedbench.transcript.Channel`; each party's secret scalar, permutation
and identifiers stay with the party (:mod:`fedbench.psi._parties`: in this
process for the simulation, in the party's own actor on a Ray cluster).  The
driver routes messages and runs the comparisons of the parties that receive
blinded tags; with parties elsewhere (Ray) it therefore learns what those
parties learn, and the leakage statement says so.  See the package
documentation (:mod:`fedbench.psi`) for the protocols and their leakage.

Flights
-------
Every party's set travels as a *flight*: its owner hashes and blinds it (and
shuffles it), then each party on the flight's route receives it, applies its own
scalar and (unless the owner must map results back to its rows) shuffles it, and
the last one truncates it to 16-byte tags when the destination only compares,
and delivers it.  All flights advance one hop at a time and all blinding work
of one hop runs as one parallel batch (one concurrent call per party on Ray).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigurationError, DuplicatePartyError, UnknownPartyError
from ..party import Party
from ..secagg import check_enough_parties
from ..transcript import Channel
from ._kernels import ELEMENT_BYTES, session_hash_key
from ._parallel import Executor, available_cores
from ._parties import TAG_BYTES, InProcessParties, PSIParties, RemoteParties, SetInfo
from .encoding import key_context, set_builders
from .normalize import NormalizeSpec, compile_spec
from .result import PSIResult

__all__ = ["MODES", "SALT_BYTES", "TAG_BYTES", "intersect"]

#: Protocol modes.
MODES = ("reveal", "cardinality", "align")

#: Bytes of the public per-run session salt.
SALT_BYTES = 32

_NULL_POLICIES = ("drop", "error")
_DUPLICATE_POLICIES = ("first", "error")
_MODEL = (
    "Model: honest-but-curious, non-colluding parties; ECDH-PSI in the prime-order subgroup of "
    "Curve25519 (DDH assumption; X25519 blinding with clamped scalars, which clear the cofactor; "
    "identifiers hashed to the curve by keyed BLAKE2b-512 with try-and-increment, modelled as a "
    "random oracle to that subgroup); every received element is checked to be the canonical "
    "u-coordinate of a curve point of large order before it is blinded; fresh secret scalars and "
    "session salt per run."
)


@dataclass
class _Flight:
    owner: str
    holder: str
    values: bytes
    route: list[str]
    dest: str
    shuffle: bool
    truncate: bool
    seconds: float = 0.0

    def __post_init__(self) -> None:
        # The last party on the route truncates: every flight has one.
        assert self.route, "a flight needs at least one hop"


@dataclass
class _Outcome:
    size: int
    ids: pl.DataFrame | None = None
    positions: dict[str, np.ndarray] | None = None
    overlap: pl.DataFrame | None = None


# --------------------------------------------------------------------------- helpers
def _frame(buf: bytes, width: int, *, index: bool = True) -> pl.DataFrame:
    # An element is compared as width/8 machine words: polars joins on integer
    # columns without creating one Python object per element.
    arr = np.frombuffer(buf, dtype="<u8").reshape(-1, width // 8)
    df = pl.DataFrame({f"w{c}": np.ascontiguousarray(arr[:, c]) for c in range(width // 8)})
    return df.with_row_index("i") if index else df


def _words(width: int) -> list[str]:
    return [f"w{c}" for c in range(width // 8)]


def _member_indices(a: bytes, b: bytes, width: int) -> np.ndarray:
    """Indices of the elements of ``a`` that occur in ``b``."""
    hit = _frame(a, width).join(_frame(b, width, index=False), on=_words(width), how="semi")
    return hit.get_column("i").to_numpy().astype(np.int64)


def _count_common(a: bytes, b: bytes, width: int) -> int:
    return _frame(a, width, index=False).join(_frame(b, width, index=False), on=_words(width), how="semi").height


def _match_pairs(a: bytes, b: bytes, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` with ``a[i] == b[j]``, ordered by the matched value."""
    w = _words(width)
    m = _frame(a, width).join(_frame(b, width).rename({"i": "j"}), on=w, how="inner").sort(w)
    return m.get_column("i").to_numpy().astype(np.int64), m.get_column("j").to_numpy().astype(np.int64)


def _common_values(bufs: Sequence[bytes], width: int) -> bytes:
    """Elements present in every buffer, sorted (an order that depends on the values only)."""
    w = _words(width)
    df = _frame(bufs[0], width, index=False)
    for b in bufs[1:]:
        df = df.join(_frame(b, width, index=False), on=w, how="semi")
    df = df.sort(w)
    return np.ascontiguousarray(df.select(w).to_numpy().astype("<u8")).tobytes()


def _u64s(values: Sequence[int]) -> bytes:
    return np.asarray(values, dtype=">u8").tobytes()


# --------------------------------------------------------------------------- engine
class _Run:
    def __init__(self, parties: PSIParties, names: list[str], channel: Channel) -> None:
        self.parties = parties
        self.names = names
        self.channel = channel
        self.hkeys: dict[str, bytes] = {}

    def send(
        self, sender: str, receiver: str, kind: str, payload: bytes, *, encrypted: bool, seconds: float = 0.0
    ) -> bytes:
        return self.channel.send(sender, receiver, kind, payload, encrypted=encrypted, seconds=seconds)

    def open_session(self, coordinator: str, context: bytes) -> None:
        """The coordinator draws the public session salt and sends it to everyone."""
        salt = secrets.token_bytes(SALT_BYTES)
        for name in self.names:
            got = salt if name == coordinator else self.send(coordinator, name, "session-salt", salt, encrypted=False)
            self.hkeys[name] = session_hash_key(got, context)

    def first_blinding(self) -> dict[str, tuple[bytes, float]]:
        """Every party hashes its shuffled identifiers to the group and blinds them."""
        return self.parties.first(self.hkeys)

    def fly(self, flights: list[_Flight]) -> None:
        """Advance every flight hop by hop until each reaches its destination."""
        while active := [f for f in flights if f.route]:
            senders = []
            for f in active:
                nxt = f.route[0]
                f.values = self.send(f.holder, nxt, "blinded-set", f.values, encrypted=True, seconds=f.seconds)
                senders.append(f.holder)
                f.holder = nxt
            steps = [
                (f.holder, f.values, f.shuffle, f.truncate and len(f.route) == 1, sender)
                for f, sender in zip(active, senders, strict=True)
            ]
            for f, (values, seconds) in zip(active, self.parties.blind(steps), strict=True):
                f.values, f.seconds = values, seconds
                f.route.pop(0)
        for f in flights:
            if f.holder != f.dest:
                kind = "blinded-tags" if f.truncate else "blinded-set"
                f.values = self.send(f.holder, f.dest, kind, f.values, encrypted=True, seconds=f.seconds)
                f.holder = f.dest


def _reveal(run: _Run, order: list[str], receiver: str, parties: dict[str, Party], on: Sequence[str]) -> _Outcome:
    others = [p for p in order if p != receiver]
    combiner = others[0]
    first = run.first_blinding()
    flights = [
        # The receiver's own set comes back in the order it sent (no shuffles), so it
        # can map tags to its rows; it never meets another party's fully blinded set.
        _Flight(receiver, receiver, first[receiver][0], list(others), receiver, False, True, first[receiver][1])
    ]
    if len(others) == 1:
        # Two parties: the other's set (shuffled by its owner) goes straight to the
        # receiver, which blinds it in the same parallel batch as its own set's return.
        flights.append(
            _Flight(combiner, combiner, first[combiner][0], [receiver], receiver, False, True, first[combiner][1])
        )
        run.fly(flights)
        hits = _member_indices(flights[0].values, flights[1].values, TAG_BYTES)
    else:
        for k, p in enumerate(others):
            # Other sets are blinded by every non-receiver (cyclically), never by the
            # receiver, and meet at the combiner.
            route = others[k + 1 :] + others[:k]
            flights.append(_Flight(p, p, first[p][0], route, combiner, True, False, first[p][1]))
        run.fly(flights)
        t = time.perf_counter()
        common = _common_values([f.values for f in flights[1:]], ELEMENT_BYTES)
        common = run.send(
            combiner, receiver, "common-blinded-set", common, encrypted=True, seconds=time.perf_counter() - t
        )
        # The receiver applies its scalar to the common set and compares with its own tags.
        ((full, _),) = run.parties.blind([(receiver, common, False, True, combiner)])
        hits = _member_indices(flights[0].values, full, TAG_BYTES)
    size = int(hits.size)
    for p in others:
        run.send(receiver, p, "intersection-size", _u64s([size]), encrypted=False)
    rows = run.parties.rows(receiver, hits, sort=True)
    ids = parties[receiver].compute(partial(_gather_ids, on=list(on), rows=rows))
    return _Outcome(size, ids=ids, positions={receiver: rows})


def _gather_ids(df: pl.DataFrame, *, on: list[str], rows: np.ndarray) -> pl.DataFrame:
    """Inside the receiver: its own matched identifiers (the receiver's output)."""
    return df.select(pl.col(on).gather(rows))


def _cardinality(run: _Run, order: list[str], comparer: str) -> _Outcome:
    first = run.first_blinding()
    flights = []
    for k, p in enumerate(order):
        route = order[k + 1 :] + order[:k]
        flights.append(_Flight(p, p, first[p][0], route, comparer, True, True, first[p][1]))
    run.fly(flights)
    t = time.perf_counter()
    tags = {f.owner: f.values for f in flights}
    n = len(order)
    matrix = np.zeros((n, n), dtype=np.int64)
    for i, a in enumerate(order):
        matrix[i, i] = len(tags[a]) // TAG_BYTES
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = _count_common(tags[a], tags[order[j]], TAG_BYTES)
    size = int(matrix[0, 1]) if n == 2 else len(_common_values([tags[p] for p in order], TAG_BYTES)) // TAG_BYTES
    payload = _u64s([size, *matrix.ravel().tolist()])
    seconds = time.perf_counter() - t
    for p in order:
        if p != comparer:
            run.send(comparer, p, "overlap", payload, encrypted=False, seconds=seconds)
    overlap = pl.DataFrame({"party": order, **{p: matrix[:, k] for k, p in enumerate(order)}})
    return _Outcome(size, overlap=overlap)


def _align(run: _Run, order: list[str]) -> _Outcome:
    a, b = order
    first = run.first_blinding()
    # Neither flight is shuffled after its owner's shuffle: ``a`` maps its tags to its
    # rows, and positions into ``b``'s sent order are what ``b`` maps to its rows.
    fa = _Flight(a, a, first[a][0], [b], a, False, True, first[a][1])
    fb = _Flight(b, b, first[b][0], [a], a, False, True, first[b][1])
    run.fly([fa, fb])
    t = time.perf_counter()
    i, j = _match_pairs(fa.values, fb.values, TAG_BYTES)  # ordered by tag: a common pseudo-random order
    got = run.send(
        a, b, "matched-positions", j.astype("<u4").tobytes(), encrypted=False, seconds=time.perf_counter() - t
    )
    jb = np.frombuffer(got, dtype="<u4").astype(np.int64)
    pa = run.parties.rows(a, i, sort=False)
    pb = run.parties.rows(b, jb, sort=False)
    return _Outcome(int(i.size), positions={a: pa, b: pb})


# --------------------------------------------------------------------------- leakage
def _leakage(mode: str, order: list[str], receiver: str | None, *, remote: bool = False) -> str:
    names = ", ".join(order)
    sizes = f"Every party learned the number of distinct identifiers of each of {names} (from message sizes)."
    if remote:
        local = (
            "The driver (the process that called intersect) relayed every message and ran the comparisons "
            "for the parties that compare, so it learned everything they learned above, and it holds this "
            "result. Counts of missing and duplicate identifiers stayed in each party: no party sent them, "
            "and this result does not hold them."
        )
    else:
        local = (
            "Counts of missing and duplicate identifiers were read from each party's state in this process "
            "(a simulation); no party sent them."
        )
    if mode == "reveal":
        assert receiver is not None
        others = [p for p in order if p != receiver]
        text = (
            f"{receiver} (receiver) learned which of its own identifiers every other party holds, and "
            f"nothing about the others' remaining identifiers; {', '.join(others)} learned only the "
            f"intersection size, announced by {receiver}. "
        )
        if len(others) > 1:
            text += (
                f"With more than two parties, {receiver} also learned the size of the common "
                f"intersection of {', '.join(others)}, and {others[0]} (combiner) learned the sizes of "
                f"all intersections among {', '.join(others)} (their Venn counts), not involving {receiver}. "
            )
    elif mode == "cardinality":
        assert receiver is not None
        text = (
            "Every party learned the intersection size and the pairwise overlap sizes, and no "
            "identifier of another party nor which identifiers are shared. "
        )
        if len(order) > 2:
            text += (
                f"{receiver} (comparer) held every party's doubly blinded set, so it could also count "
                "every sub-intersection (the full Venn diagram counts). "
            )
    else:
        a, b = order
        text = (
            f"{a} and {b} each learned which of their own rows are shared and how they pair up "
            f"(positions in one common, pseudo-random order), thus the shared identifiers, which both "
            f"already held; neither learned any identifier of the other outside the intersection. "
            f"{b} learned its matched rows from {a}'s position message. "
        )
    return f"{text}{sizes} {local} {_MODEL}"


# --------------------------------------------------------------------------- entry point
def _party_side(parties: list[Party], workers: int | None, backend: Any) -> PSIParties:
    """Secrets kept here with one worker pool for all, or in each remote party (Ray actors)."""
    if not any(p.remote for p in parties):
        return InProcessParties(parties, Executor(workers or available_cores(), force=workers is not None))
    if backend is None:
        from ..backend import InProcessBackend

        backend = InProcessBackend()  # one party after the other, still each in its own place
    # ``workers`` counts the driver's cores; a remote party uses its own node's.
    return RemoteParties(parties, backend.compute_each, backend.post)



def intersect(
    parties: Sequence[Party],
    on: str | Sequence[str],
    *,
    mode: str = "cardinality",
    receiver: str | None = None,
    normalize: NormalizeSpec = None,
    nulls: str = "drop",
    channel: Channel,
    workers: int | None = None,
    duplicates: str | None = None,
    cast: str | None = None,
    backend: Any = None,
    **options: object,
) -> PSIResult:
    """Private set intersection of the parties' identifiers (ECDH-PSI over Curve25519).

    Parameters
    ----------
    parties : sequence of Party
        Two or more parties (exactly two for ``align``).
    on : str or sequence of str
        Key column(s), present in every party; several columns form a composite key.
    mode : {"cardinality", "reveal", "align"}, default "cardinality"
        ``"cardinality"``: every party learns the intersection size and, the pairwise
        overlap matrix.  ``"reveal"``: ``receiver`` learns which of its identifiers are
        shared; the others learn the size.  ``"align"``: both of two parties learn
        their matched rows, in one common order (for vertical analyses).
    receiver : str, optional
        Required for ``reveal``.  For ``cardinality``, the party that compares the
        blinded sets (default: the first party).  Not allowed for ``align``.
    normalize : spec, optional
        Canonicalisation of string identifiers before hashing: a step name
        (``"strip"``, ``"casefold"``, ``"nfkc"``, ``"standard"``, ``"email"``,
        ``"phone"``...), a callable ``str -> str | None``, a list of steps, or a
        ``{column: spec}`` mapping.  See :mod:`fedbench.psi.normalize`.
    nulls : {"drop", "error"}, default "drop"
        Rows with a null (or, after normalisation, empty) key component: dropped
        and counted, or :class:`~fedbench.errors.NullValuesError`.
    channel : Channel
        The run's channel; every message goes through it.
    workers : int, optional
        Worker processes for hashing and blinding.  Default: every available core
        for large sets, in-process for small ones; 1 never starts a process.
    duplicates : {"first", "error"}, optional
        Rows repeating an identifier: keep the first (default for ``reveal`` and
        ``cardinality``) or raise :class:`~fedbench.errors.DuplicateKeyError`
        (default for ``align``).
    cast : {"string"}, optional
        Compare the key columns' text, so that e.g. integer ids in one party match
        string ids in another; otherwise differing kinds raise
        :class:`~fedbench.errors.DtypeConflictError`.
    backend : Backend, optional
        The federation's backend; with parties on other nodes (Ray) each
        protocol step calls every party concurrently through it.
    **options
        Reserved; any unknown option raises :class:`~fedbench.errors.ConfigurationError`.

    Returns
    -------
    PSIResult
        Size, mode-specific outputs, leakage statement, transcript and costs.

    Raises
    ------
    TooFewPartiesError
        Fewer than two parties.
    ConfigurationError
        Unknown mode or option, missing receiver in reveal mode, receiver in align mode,
        align with more than two parties, bad normalisation spec.
    UnknownPartyError
        ``receiver`` is not one of ``parties``.
    MissingColumnError, DtypeConflictError, KeyTypeError, NullValuesError
        Bad key columns or values; each names the party and the column.
    DuplicateKeyError, EmptyPartyError, NormalizationError
        Likewise.  Every error above is raised before any message is sent: the
        channel stays empty.
    GroupElementError
        A party received a value that is not the canonical u-coordinate of a point of
        Curve25519 of large order (a twist point, a point of small order or a
        non-canonical encoding: a malicious or buggy peer); the error names the
        sender (``party``).
    ProtocolError
        A worker process died.
    """
    t0 = time.perf_counter()
    if options:
        raise ConfigurationError(
            f"unknown PSI option(s) {sorted(options)}; options are mode, receiver, normalize, nulls, "
            "workers, duplicates, cast and backend"
        )
    plist = list(parties)
    for p in plist:
        if not isinstance(p, Party):
            raise ConfigurationError(f"parties must be Party objects, got {type(p).__name__}")
    check_enough_parties(plist, what="private set intersection", hint="")
    order = [p.name for p in plist]
    seen: set[str] = set()
    for n in order:
        if n in seen:
            raise DuplicatePartyError(f"party {n!r} is listed twice", party=n)
        seen.add(n)
    if mode not in MODES:
        raise ConfigurationError(f"unknown PSI mode {mode!r}; use one of {', '.join(MODES)}")
    cols = [on] if isinstance(on, str) else list(on)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise ConfigurationError("on must name one key column or a non-empty list of key columns")
    if len(set(cols)) != len(cols):
        raise ConfigurationError(f"on lists a column twice: {cols}")
    if nulls not in _NULL_POLICIES:
        raise ConfigurationError(f"nulls must be one of {_NULL_POLICIES}, got {nulls!r}")
    if duplicates is None:
        duplicates = "error" if mode == "align" else "first"
    if duplicates not in _DUPLICATE_POLICIES:
        raise ConfigurationError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
    if cast not in (None, "string"):
        raise ConfigurationError(f"cast must be None or 'string', got {cast!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
    if receiver is not None and receiver not in order:
        raise UnknownPartyError(
            f"receiver {receiver!r} is not a party of this intersection ({', '.join(order)})", party=receiver
        )
    if mode == "reveal" and receiver is None:
        raise ConfigurationError("reveal mode needs receiver=<party name>: the party that learns the shared ids")
    if mode == "align":
        if receiver is not None:
            raise ConfigurationError("align mode has no receiver: both parties learn their matched rows")
        if len(order) != 2:
            raise ConfigurationError(f"align mode lines up exactly two parties, got {len(order)}")
    normalizers, strict = compile_spec(normalize, cols)

    builds, kinds = set_builders(
        plist,
        cols,
        normalizers=normalizers,
        strict_normalize=strict,
        cast=cast,
        nulls=nulls,
        duplicates=duplicates,
        mode=mode,
    )
    side = _party_side(plist, workers, backend)
    try:
        # Each party validates and encodes its identifiers where its rows live; any
        # bad input raises here, before a message is sent.
        infos = side.open(builds)
        counts = side.local_counts()  # None: the counts stay in remote parties
        # ---- every input is valid: from here on, messages are sent ---------------
        run = _Run(side, order, channel)
        lead = receiver if receiver is not None else order[0]
        run.open_session(lead, key_context(kinds))
        byname = {p.name: p for p in plist}
        if mode == "reveal":
            assert receiver is not None
            out = _reveal(run, order, receiver, byname, cols)
        elif mode == "cardinality":
            out = _cardinality(run, order, lead)
        else:
            out = _align(run, order)
    finally:
        side.close()  # drop the run's secrets as soon as the run ends
    sets: list[SetInfo] = [infos[n] for n in order]
    return PSIResult(
        mode=mode,
        parties=tuple(order),
        on=tuple(cols),
        size=out.size,
        receiver=lead if mode != "align" else None,
        leakage=_leakage(mode, order, lead, remote=counts is None),
        transcript=channel.run,
        elapsed=time.perf_counter() - t0,
        nbytes=channel.run.nbytes,
        set_sizes={s.name: s.size for s in sets},
        missing={n: c[0] for n, c in counts.items()} if counts is not None else {},
        duplicates={n: c[1] for n, c in counts.items()} if counts is not None else {},
        ids=out.ids,
        positions=out.positions,
        overlap=out.overlap,
    )
