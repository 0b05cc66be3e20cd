"""Private set intersection (PSI) for record linkage: ECDH-PSI in the prime-order subgroup of Curve25519.

Two banks want to know how many customers they share, a hospital and an insurer
want to line up shared patients before a vertical analysis, without showing each
other the rest of their lists.  :func:`intersect` does that in three modes:

``cardinality``
    Every party learns the size of the common intersection and the pairwise
    overlap matrix (2 or more parties).
``reveal``
    A designated ``receiver`` learns which of *its own* identifiers every other
    party also holds; the other parties learn the intersection size only (the
    receiver announces it).  2 or more parties.
``align``
    Two parties both learn which of their own rows are shared and how they pair
    up, in one common order (``positions``), for vertical learning.

The protocol
------------
Diffie-Hellman PSI (Meadows 1986; Huberman, Franklin & Hogg 1999).  For a
group where exponentiation commutes, ``(H(x)^a)^b = (H(x)^b)^a``: each party
hashes its identifiers to group elements, blinds them with a fresh secret scalar,
and the parties blind each other's sets in turn; doubly blinded values are equal
exactly when the identifiers are equal, and are compared.  Two parties ``R``
(receiver) and ``S``::

    R -> S   session salt                          32 B
    R -> S   shuffle(H(r)^a)                       32 B per element of R
    S -> R   shuffle(H(s)^b)                       32 B per element of S
    S -> R   (H(r)^a)^b in R's order, 16-B tags    16 B per element of R
    R        computes (H(s)^b)^a, compares tags, maps its hits back to its rows
    R -> S   the intersection size                 8 B

``cardinality`` uses the same flow except that ``S`` shuffles ``(H(r)^a)^b``
before returning it, so ``R`` cannot tell *which* of its elements matched, and
``R`` sends ``S`` the overlap figures.  ``align`` is ``reveal`` in which ``R`` then
sends ``S`` the positions (in ``S``'s shuffled list) of the matched elements,
ordered by the matched tag, so both sides list their matched rows in the same
pseudo-random order (4 B per match).  On the wire that is ``48|R| + 32|S|`` bytes,
40 bytes per identifier for equal sets.

With k > 2 parties each set is blinded by every party along a ring, shuffled at
every hop.  ``cardinality``: the fully blinded sets meet at one comparer, which
counts the pairwise and the common intersections and broadcasts them.
``reveal``: the non-receivers' sets are blinded by the non-receivers only and meet
at a combiner (the first non-receiver), which sends their common intersection to
the receiver; the receiver's own set is blinded by everyone in a fixed order and
returned unshuffled; the receiver applies its scalar to the common intersection
and compares.  No party ever holds two sets blinded under the same set of
scalars except the designated comparer/combiner/receiver, which is what bounds
the leakage to the statement attached to each result (:attr:`PSIResult.leakage`).

Group and security argument
---------------------------
*Group.*  The prime-order subgroup ``G`` of Curve25519 (RFC 7748's curve
``v^2 = u^3 + A u^2 + u`` over ``GF(p)``, ``p = 2^255 - 19``, ``A = 486662``), of
prime order ``L = 2^252 + 27742317777372353535851937790883648493``; the curve has
``8*L`` points, its 8-torsion is cyclic.  It is the same group as the prime-order
subgroup of edwards25519 (the curves are birationally equivalent,
``u = (1 + y) / (1 - y)``).  Elements travel as canonical 32-byte little-endian
u-coordinates, which identify a point up to sign; that is harmless here (below).
Scalar multiplication is X25519 (RFC 7748), computed by OpenSSL through
``cryptography`` (libsodium's ``crypto_scalarmult`` through PyNaCl when
``cryptography`` lacks it; both give identical bytes, tested).  fedbench
evaluates the curve equation and Legendre symbols (gmpy2) to *test* u-coordinates,
and writes no point arithmetic.

*Scalars.*  Each party draws a fresh secret scalar per run: 32 bytes from the OS
CSPRNG, clamped as RFC 7748 prescribes, ``s = 8*k`` with ``k`` uniform in
``[2^251, 2^252)``.  ``s mod L`` is never 0, so ``[s]`` permutes ``G`` (distinct
elements never collide); ``k`` ranges over 2^251 of the ``L - 1`` non-zero residues,
which costs at most one bit in the DDH bound below.  The factor 8 maps every point of
the curve into ``G``: ``[s](Q + T) = [s]Q`` for ``Q`` in ``G`` and any 8-torsion
point ``T``.

*Hash to the group.*  ``u_0 || u_1 = BLAKE2b-512(encoding; key = K_session,
person = "fedbench.psi.h2g", salt = counter)`` for counter 0, 1, ...; each 32-byte
half, read little-endian with bit 255 cleared, is a candidate ``u``, accepted when
``u < p``, ``u`` is not one of the four small-order u-coordinates (0, 1 and the two
of order 8) and ``u^3 + A u^2 + u`` is a non-zero square mod ``p`` (Legendre
symbol), i.e. ``u`` is the u-coordinate of a point ``P(x)`` of the curve, not of its
twist (try-and-increment; every candidate is accepted with probability ~1/2, 2
candidates per identifier on average).  The group element of ``x`` is
``H(x) = [8]P(x)``, applied by the clamped first blinding: ``[s]P(x) = [k]H(x)``.
With BLAKE2b modelled as a random oracle, the accepted ``u`` is uniform over the
u-coordinates of the curve's points outside the 8-torsion, so ``H(x)`` is uniform
over ``G`` minus the identity, up to sign: ``H`` is a random oracle to ``G`` (not
merely an encoding; the bias of dropping ``u >= p`` is ``2^-250``).  This is not
RFC 9380's ``hash_to_curve`` (Elligator 2): measured on the reference machine,
libsodium's ``crypto_core_ed25519_from_uniform`` plus the conversion to ``u`` costs
~26 us per identifier (one map, a non-uniform encoding) and ~64 us for the
random-oracle sum of two maps, against ~7 us here, for a sharper property.  The
price is that the number of candidates, hence the hashing time of one
identifier, depends on the identifier (Python and gmpy2 are not constant-time
anyway): an attacker who can time the hashing of *single* identifiers inside a
party's process could learn how many candidates each one needed (under 2 bits of
information per identifier, which anyone can compute for a guessed identifier,
the session key being public); the other parties see only the CPU seconds of
whole batches in the transcript.  Scalar multiplication (X25519) is constant-time.  The salt, the suite
label (``v3``, so hashes of earlier designs never compare) and the
personalisation domain-separate this hash from every other hash of the same
identifiers: hashes from another run or another system cannot be compared with
this run's.

*Validation.*  Before a party multiplies a set it received by its secret (and before
it multiplies any element of it), it checks every value: 32 bytes, ``u < p``
(canonical; a set bit 255 fails too), not a small-order u-coordinate, and
``u^3 + A u^2 + u`` a square mod ``p`` (on the curve, not on the twist).  A failure
raises :class:`~fedbench.psi.GroupElementError` naming the sending party, and the
run stops.  A value that passes is the u-coordinate of ``Q + T`` with ``Q`` in ``G``
and ``T`` 8-torsion; the clamped scalar removes ``T``, so the reply is ``[s]Q`` in
``G``, exactly the reply to ``Q``: a malicious peer cannot learn anything about the
scalar modulo the cofactor, nor get a reply outside ``G``, and testing ``[L]P = O``
(a full scalar multiplication, which libsodium's ed25519 calls do) is not needed.
Honestly produced elements are all in ``G`` (a u-coordinate carries no curve/twist
bit: with the first X25519 design about half the hashes lay on the twist, blinding
kept that bit, and a receiver learned one bit per non-matching identifier).  Tags
(16-byte truncations, see below) are only compared, never multiplied.

*Sign.*  X25519 works on u-coordinates, i.e. on points up to sign; multiplication
commutes with negation, so the doubly blinded u of ``x`` is the same on both
sides.  Two identifiers collide only if ``H(x) = +-H(x')``, which for a random
oracle to ``G`` has probability ``2/L`` per pair.

*Why it hides the identifiers.*  In the honest-but-curious model the classic
reduction applies: with ``H`` a random oracle to ``G``, a party's view of the
other's blinded elements ``[k]H(x)`` and of the doubly blinded tags is
indistinguishable from random elements of ``G`` under the decisional
Diffie-Hellman assumption in ``G`` (De Cristofaro & Tsudik 2010; Pinkas,
Schneider & Zohner 2014), which is believed to hold in the prime-order subgroup
of Curve25519 (~2^126 generic security; u-coordinates only, the sign is dropped).
Values are truncated to 16-byte tags only when they are compared, never before
they are blinded again.  The session salt and the scalars are fresh per run
(``secrets``), so results of two runs cannot be linked; the scalars are dropped at
the end of the run (Python cannot guarantee memory erasure).

*Tags.*  A tag is the first 16 bytes of a fully blinded element's u-coordinate: its
low 128 bits.  For elements of ``G`` the low 128 bits of ``u`` are heuristically
uniform, so two different identifiers give equal tags with probability
~``2^-128``; comparing ``n x m`` elements gives a false match with probability at
most ~``n*m*2^-128`` (``2^-88`` for ``2^20 x 2^20``).  Wire sizes: 32-byte
elements, 16-byte tags.

*Shuffles.*  Every set is shuffled by its owner and, except where the owner must
map results back to its rows, at every hop, with permutations from the OS CSPRNG
(sorting 64-bit random keys): positions carry no information.

*Not covered.*  Malicious parties (a party may choose the elements it blinds,
e.g. a large dictionary, or lie about results: use a malicious-secure PSI for
that; the subgroup check only stops malformed elements), collusion among
parties, and the sizes of the sets, which every party learns.

*Missing and duplicate counts* (rows dropped for a null key, rows repeating an
identifier) are computed inside each party and never sent.  With every party in
this process (the simulation) :class:`PSIResult` shows them, read from the
parties' state; with parties elsewhere (Ray) they stay in the party and the
result does not hold them.  On Ray the driver that calls :func:`intersect`
relays every message and runs the comparisons for the comparing party, so it
learns what that party learns; each result's leakage statement says so.

Identifiers
-----------
Composite keys, typed length-prefixed encoding, normalisation (:mod:`.normalize`:
``strip``, ``casefold``, ``nfkc``, ``email``, ``phone``, hooks), null and duplicate
policies and kind checks are described in :mod:`fedbench.psi.encoding`.

Performance
-----------
Hashing and blinding run in a persistent pool of worker processes fed with large
batches (also on a default ``Federation()``: every core for large sets, in-process
for small ones); comparisons are polars joins on 64-bit words.  On one core of the
reference machine (2-core x86-64) a hash costs ~7 us (BLAKE2b and two Legendre
symbols on average), a blinding ~37 us and a validation ~3 us (on a second machine
of the same kind: 12, 48 and 5 us).  Both OpenSSL's and libsodium's X25519 are
installed and which is faster depends on the machine, so every process times them
once and uses the faster (:func:`~fedbench.psi._kernels.fastest_engine`); each
element is hashed once and blinded k times with k parties:
~85 us per element in 2-party runs, against ~220 us for the previous
edwards25519 design (libsodium's ``from_uniform`` twice, an addition, and
``crypto_scalarmult_ed25519_noclamp``, whose subgroup check is a second full
scalar multiplication) and ~81 us for the first X25519 design, which checked
nothing and put half of the elements on the twist.  ``benchmarks/bench_psi.py``
prints the figures at 100k x 100k against openmined-psi in the same run; wire size
40 bytes per identifier.
"""

from __future__ import annotations

from ._kernels import hash_to_group, session_hash_key
from ._parallel import GroupElementError, shutdown_pool
from .normalize import STEPS, normalize_email, normalize_phone
from .protocol import MODES, TAG_BYTES, intersect
from .result import PSIResult

__all__ = [
    "MODES",
    "STEPS",
    "TAG_BYTES",
    "GroupElementError",
    "PSIResult",
    "hash_to_group",
    "intersect",
    "normalize_email",
    "normalize_phone",
    "session_hash_key",
    "shutdown_pool",
]
