"""Private set intersection (PSI) for record linkage: ECDH-PSI over X25519.

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
*Group.*  X25519 (RFC 7748) from libsodium via PyNaCl: ``x([k]P)`` on the
Montgomery curve Curve25519 ``E`` or, when the input u-coordinate is not on ``E``,
on its quadratic twist ``E'``.  ``#E = 8*l`` and ``#E' = 4*l'`` with ``l = 2^252 + ...`` and
``l' = 2^253 - ...`` primes of 253 bits.  No curve arithmetic is written in fedbench.

*Hash to group.*  ``u = BLAKE2b-256(encoding; key = K_session, person =
"fedbench.psi.h2g")`` with bit 255 cleared, where ``K_session`` is derived from a
public 32-byte salt drawn by the coordinator for this run and the key's public
description (number and kinds of columns).  Modelled as a random oracle, ``u`` is
a uniform x-coordinate of a point of ``E`` or ``E'`` (each with probability ~1/2;
values >= p have probability 2^-250).  The salt and the personalisation
domain-separate this hash from every other hash of the same identifiers: hashes
from another run or another system cannot be compared with this run's.

*Cofactors.*  X25519 clamps every scalar to ``8*m`` with ``2^251 <= m < 2^252``.
The factor 8 kills the torsion part on both curves (cofactors 8 and 4), so after
the first blinding every value lies in the prime-order subgroup of ``E`` or ``E'``,
and ``m`` is a unit modulo ``l`` and ``l'`` (it is smaller than both), so blinding
is a permutation of each subgroup: distinct subgroup elements never collide, and a
hash lands on a small-order point with probability ~2^-250 (libsodium then
rejects it; fedbench raises :class:`~fedbench.errors.ProtocolError`).

*Commutativity.*  The Montgomery ladder is x-only and ``x(-Q) = x(Q)``, so
``X25519(a, X25519(b, u)) = x([ab]P) = X25519(b, X25519(a, u))``: double blinding
is order independent on both curves, which is all the comparison needs.  A point
and its twist counterpart never share an x-coordinate, so no cross-curve match.

*Why it hides the identifiers.*  In the honest-but-curious model the classic
reduction applies: with ``H`` a random oracle, a party's view of the other's
blinded elements ``H(x)^b`` and doubly blinded ones is indistinguishable from
random group elements under the decisional Diffie-Hellman assumption in the
group (De Cristofaro & Tsudik 2010; Pinkas, Schneider & Zohner 2014).  Here the
group is the pair of prime-order subgroups of Curve25519 and its twist, both of
which are believed DDH-hard (Curve25519 was chosen for twist security: ``l'`` is a
253-bit prime).  Using the same scalar on both curves is the standing assumption
of X25519 itself, which accepts any u-coordinate.  Rejecting twist points would
need a Legendre symbol per element (curve arithmetic fedbench must not write) or
Elligator plus a subgroup check through libsodium's Ed25519 API, measured at about
3x slower per element.  Values are truncated to 16-byte tags only when they are
compared, never before they are blinded again.  The session salt and the scalars
are fresh per run (``secrets``), so results of two runs cannot be linked; the
scalars are dropped at the end of the run (Python cannot guarantee memory erasure).

*Shuffles.*  Every set is shuffled by its owner and, except where the owner must
map results back to its rows, at every hop, with permutations from the OS CSPRNG
(sorting 64-bit random keys): positions carry no information.

*Not covered.*  Malicious parties (a party may choose the elements it blinds,
e.g. a large dictionary, or lie about results: use a malicious-secure PSI for
that), collusion among parties, and the sizes of the sets, which every party learns.

Identifiers
-----------
Composite keys, typed length-prefixed encoding, normalisation (:mod:`.normalize`:
``strip``, ``casefold``, ``nfkc``, ``email``, ``phone``, hooks), null and duplicate
policies and kind checks are described in :mod:`fedbench.psi.encoding`.

Performance
-----------
Hashing and blinding run in a persistent pool of worker processes (``spawn``)
fed with large batches; comparisons are polars joins on 64-bit words.  Each
element costs 2 X25519 operations (~40 us each on one core of the reference
machine) in 2-party runs and k operations with k parties.
"""

from __future__ import annotations

from ._kernels import hash_to_group, session_hash_key
from ._parallel import shutdown_pool
from .normalize import STEPS, normalize_email, normalize_phone
from .protocol import MODES, TAG_BYTES, intersect
from .result import PSIResult

__all__ = [
    "MODES",
    "STEPS",
    "TAG_BYTES",
    "PSIResult",
    "hash_to_group",
    "intersect",
    "normalize_email",
    "normalize_phone",
    "session_hash_key",
    "shutdown_pool",
]
