"""Private set intersection (PSI) for record linkage: ECDH-PSI over edwards25519.

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
*Group.*  The prime-order subgroup ``G`` of edwards25519 (RFC 8032's curve,
birationally equivalent to Curve25519), of prime order
``L = 2^252 + 27742317777372353535851937790883648493``; the whole curve has
``8*L`` points.  Elements travel in the standard 32-byte compressed encoding
(y-coordinate and the sign of x).  All arithmetic is libsodium's, through PyNaCl:
``crypto_core_ed25519_from_uniform``, ``crypto_core_ed25519_add``,
``crypto_scalarmult_ed25519_noclamp``, ``crypto_core_ed25519_scalar_reduce``.  No
curve arithmetic is written in fedbench.

*Scalars.*  Each party draws a fresh secret scalar per run, uniform in ``[1, L)``:
64 bytes from the OS CSPRNG reduced modulo ``L`` (statistical distance ``2^-259``
from uniform), zero redrawn.  Scalars are used unclamped, so blinding is a
permutation of ``G``: distinct elements never collide.

*Hash to group.*  ``h0 || h1 = BLAKE2b-512(encoding; key = K_session, person =
"fedbench.psi.h2g")``, where ``K_session`` is derived from a public 32-byte salt
drawn by the coordinator for this run, a suite label and the key's public
description (number and kinds of columns); then ``H(x) = E(h0) + E(h1)``.  ``E``
is libsodium's ``crypto_core_ed25519_from_uniform``: it reads the low 255 bits
of its 32-byte input as a field element ``r`` (modulo ``p = 2^255 - 19``; values
``>= p`` have probability ``2^-250``) and the top bit as the sign of x, applies
the Elligator 2 map to Curve25519 (non-square ``2``), converts the Montgomery
point to edwards25519 (``y = (u - 1) / (u + 1)``, x recovered with the given
sign), and multiplies by the cofactor 8, so its output always lies in ``G``
(the identity only with probability ~``2^-250``, which libsodium then refuses to
multiply and fedbench reports).  A single map is a non-uniform encoding: its
image is a fraction of ``G``.  The sum of two maps of independent hash outputs is
the random-oracle construction (Brier et al., CRYPTO 2010; Farashahi et al.,
Math. Comp. 2013: indifferentiable from a random oracle to the group when the
inner hash is one), which is what the security argument below assumes.  This
is the structure of RFC 9380's ``hash_to_curve`` (``edwards25519_XMD:SHA-512_ELL2_RO_``)
but not that suite: the field elements come from keyed BLAKE2b rather than
``expand_message_xmd`` with SHA-512 and 48-byte reduction, and the sign of each
mapped point comes from the input bit rather than from ``sgn0``, so outputs do
not match the RFC's test vectors.  The salt, the suite label and the
personalisation domain-separate this hash from every other hash of the same
identifiers: hashes from another run or another system cannot be compared with
this run's.

*Validation.*  ``crypto_scalarmult_ed25519_noclamp`` refuses (and fedbench raises
:class:`~fedbench.psi.GroupElementError` naming the sending party, before the
element is multiplied) any input that is not a canonical encoding of a point of
``G``: off-curve encodings, points of small order, and points with a torsion
component (it multiplies the input by ``L`` and requires the identity).  So every
element a party multiplies by its secret is in ``G``: a malicious or buggy peer
cannot make a party's reply depend on its scalar modulo the cofactor, and
honestly produced elements carry no side information (with the former X25519
design, a hash landed on Curve25519 or on its twist with probability ~1/2 each,
blinding kept that bit, and a receiver learned one bit per non-matching
identifier; here every element is in one prime-order group).  Tags (16-byte
truncations, see below) are only compared, never multiplied.

*Why it hides the identifiers.*  In the honest-but-curious model the classic
reduction applies: with ``H`` a random oracle to ``G``, a party's view of the
other's blinded elements ``H(x)^b`` and of the doubly blinded tags is
indistinguishable from random elements of ``G`` under the decisional
Diffie-Hellman assumption in ``G`` (De Cristofaro & Tsudik 2010; Pinkas,
Schneider & Zohner 2014), which is believed to hold in the prime-order subgroup
of edwards25519 (~2^126 generic security).  Values are truncated to 16-byte tags
only when they are compared, never before they are blinded again.  The session
salt and the scalars are fresh per run (``secrets``/``os.urandom``), so results of
two runs cannot be linked; the scalars are dropped at the end of the run (Python
cannot guarantee memory erasure).

*Tags.*  A tag is the first 16 bytes of a fully blinded element's encoding: the
low 128 bits of its y-coordinate.  Distinct elements that are not each other's
negatives have distinct y, and for elements of ``G`` the low 128 bits of y are
heuristically uniform, so two different identifiers give equal tags with
probability ~``2^-128``; comparing ``n x m`` elements gives a false match with
probability at most ~``n*m*2^-128`` (``2^-88`` for ``2^20 x 2^20``).  The wire
size per element is unchanged by the change of group (32-byte elements, 16-byte
tags).

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
batches; comparisons are polars joins on 64-bit words.  On one core of the
reference machine (2-core AMD EPYC) a hash costs ~60 us (two maps and an
addition) and a blinding ~80 us (a scalar multiplication ~40 us plus libsodium's
subgroup check of the input ~40 us); each element is hashed once and blinded k
times with k parties: ~220 us per element in 2-party runs, against ~85 us for
the former X25519 design, which checked nothing and put half of the elements on
the twist.  ``benchmarks/bench_psi.py`` at 100k x 100k (cardinality) measured
48.6 s of CPU in all processes against 17.9 s for the X25519 design on the same
loaded machine, i.e. ~24 s of wall time on two idle cores; wire size unchanged
(40 bytes per identifier).
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
