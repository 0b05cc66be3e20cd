"""Fixed-point encoding and slot packing of vectors into Paillier plaintexts.

Encoding
    A real ``x`` becomes the integer ``round(x * 2**frac_bits)``.  The number of
    fractional bits is a public protocol parameter, never derived from the data
    (phe picks an exponent per number, which leaks its magnitude).  To carry
    negative numbers without wrap-around tricks each value is offset by
    ``2**(value_bits - 1)``, so an encoded value is an unsigned integer below
    ``2**value_bits``.

Packing (BatchCrypt, Zhang et al., USENIX ATC 2020)
    Many encoded values share one plaintext, each in a *slot* of
    ``value_bits + ceil(log2(parties)) + 1`` bits: the headroom holds the sum of
    all parties' values and the extra guard bit makes an overflow visible.  A
    2048-bit key holds about 97 slots of 16-bit values for 10 parties.  Adding
    ciphertexts adds every slot at once.

Default range of a secure sum (public, never read off the data)
    ``fed.secure_sum`` without ``max_abs``/``frac_bits`` encodes with
    :data:`DEFAULT_SUM_FRAC_BITS` = 16 fractional bits and local aggregates
    of magnitude below :data:`DEFAULT_SUM_MAX_ABS` = ``2**20`` (1,048,576):
    37-bit values, so a 2048-bit key carries 48 values per ciphertext for 10
    parties (``2047 // (37 + 4 + 1)``), against 22 with the former
    ``2**62`` / 24-bit default.  The resolution is ``2**-16`` (each party's
    rounding error is at most ``2**-17``, about ``7.6e-6``, per value);
    integer entries stay exact.  A party whose local aggregate reaches the
    limit gets :class:`~fedbench.errors.EncodingRangeError` naming the party
    and the entry; the caller then passes a public ``max_abs`` (and/or
    ``frac_bits``).  The range is a constant, or what the caller declares: it
    is never chosen from the data's magnitudes.  The wider legacy range
    (:data:`WIDE_MAX_ABS`, :data:`WIDE_FRAC_BITS`) remains the federation's
    encoding for statistics (second moments) and learning.

Range refusals (what they reveal)
    ``max_abs`` is rounded up to a power of two (``value_bits`` is an integer),
    and a refusal names the party and the entry, never the value.  A refusal is
    still one bit about the party's local aggregate ("its magnitude reaches
    the limit"): an analyst who varies ``max_abs`` learns, per party and
    entry, the power-of-two bracket ``2**k <= |x| < 2**(k+1)`` of the local
    aggregate, and nothing finer (up to the fixed-point rounding right at
    ``2**k``: with ``frac_bits=f``, whether ``|x|`` lies within ``2**-(f+1)``
    below it).  That bit is inherent to refusing instead of
    silently wrapping; under DP the refused value includes the party's noise
    share, but the bracket of a large aggregate is barely blurred by it.

Overflow
    Every party checks its own values against the encodable range before
    encrypting.  After decryption every slot must hold less than
    ``parties * 2**value_bits``; anything else (more ciphertexts summed than
    planned, a value that escaped the range check) raises
    :class:`~fedbench.errors.SlotOverflowError` instead of returning a wrong sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigurationError, EncodingRangeError, SlotOverflowError

__all__ = [
    "DEFAULT_SUM_FRAC_BITS",
    "DEFAULT_SUM_MAX_ABS",
    "WIDE_FRAC_BITS",
    "WIDE_MAX_ABS",
    "Encoding",
    "PackingLayout",
]

#: Fractional bits of a secure sum's default encoding (resolution 2**-16, about 1.5e-5).
DEFAULT_SUM_FRAC_BITS = 16
#: Local aggregates of a default secure sum must have magnitude below this (public constant, 2**20).
DEFAULT_SUM_MAX_ABS = 2.0**20
#: Fractional bits of the federation's wide encoding (statistics, learning).
WIDE_FRAC_BITS = 24
#: Magnitude bound of the federation's wide encoding (statistics, learning).
WIDE_MAX_ABS = 2.0**62

_FAST_SLOT_BITS = 64  # slots up to this width are packed with vectorised numpy bit operations


@dataclass(frozen=True)
class Encoding:
    """Public fixed-point encoding parameters.

    Parameters
    ----------
    frac_bits : int
        Fractional bits: the resolution is ``2**-frac_bits``.
    value_bits : int
        Bits of one encoded value including the sign: a party's value must satisfy
        ``abs(x) * 2**frac_bits < 2**(value_bits - 1)``.
    """

    frac_bits: int = 24
    value_bits: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 128:
            raise ConfigurationError(f"frac_bits must be in [0, 128], got {self.frac_bits}")
        if not 2 <= self.value_bits <= 512:
            raise ConfigurationError(f"value_bits must be in [2, 512], got {self.value_bits}")

    @classmethod
    def for_range(cls, max_abs: float, frac_bits: int = 24) -> Encoding:
        """Smallest encoding holding values of magnitude below ``max_abs``.

        ``max_abs`` is rounded up to a power of two.

        Raises
        ------
        ConfigurationError
            If ``max_abs`` is not a positive finite number.
        """
        if not max_abs > 0 or not math.isfinite(max_abs):
            raise ConfigurationError(f"max_abs must be a positive finite number, got {max_abs}")
        return cls(frac_bits=frac_bits, value_bits=max(2, math.ceil(math.log2(max_abs)) + frac_bits + 1))

    @classmethod
    def default_sum(cls) -> Encoding:
        """The public default encoding of a secure sum (``2**20`` range, 16 fractional bits; module docstring)."""
        return cls.for_range(DEFAULT_SUM_MAX_ABS, DEFAULT_SUM_FRAC_BITS)

    @classmethod
    def wide(cls) -> Encoding:
        """The federation's wide encoding (``2**62`` range, 24 fractional bits) for statistics and learning."""
        return cls.for_range(WIDE_MAX_ABS, WIDE_FRAC_BITS)

    @property
    def max_abs(self) -> float:
        """Largest magnitude a value may have (exclusive)."""
        return math.ldexp(1.0, self.value_bits - 1 - self.frac_bits)

    @property
    def resolution(self) -> float:
        """Smallest representable step."""
        return math.ldexp(1.0, -self.frac_bits)

    def encode(self, x: np.ndarray, *, party: str | None = None, names: list[str] | None = None) -> np.ndarray:
        """Encode a vector as offset non-negative integers.

        ``x`` is a float vector, or an object vector mixing Python ints and
        floats: integers are encoded exactly (``v << frac_bits`` in integer
        arithmetic), so integer sums stay exact beyond ``2**53``.

        Returns a ``uint64`` array when the encoding fits 64 bits, else an
        object array of Python ints.

        Raises
        ------
        EncodingRangeError
            If a value is beyond the encodable range; the error names the party,
            the entry (``names[i]``) and the public limit, never the value.
        """
        limit = 1 << (self.value_bits - 1)
        if np.asarray(x).dtype == object:
            scaled_list, bad_i = _scale_exact(list(np.asarray(x).ravel()), self.frac_bits, limit)
            if bad_i is not None:
                raise self._range_error(bad_i, party, names)
            offset = limit
            if self.value_bits <= 63:
                return np.array([s + offset for s in scaled_list], dtype=np.uint64)
            return np.array([s + offset for s in scaled_list], dtype=object)
        x = np.asarray(x, dtype=np.float64).ravel()
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.rint(np.ldexp(x, self.frac_bits))
        bad = np.flatnonzero(~(np.abs(scaled) < math.ldexp(1.0, self.value_bits - 1)))
        if bad.size:
            raise self._range_error(int(bad[0]), party, names)
        offset = limit
        if self.value_bits <= 63:
            return (scaled.astype(np.int64) + np.int64(offset)).astype(np.uint64)
        return np.array([int(v) + offset for v in scaled.tolist()], dtype=object)

    def _range_error(self, i: int, party: str | None, names: list[str] | None) -> EncodingRangeError:
        # The value itself is deliberately absent: the analyst picks max_abs, so quoting the value (or
        # how far it overshoots) would let them read any local aggregate out of a refusal.
        what = names[i] if names is not None and i < len(names) else f"entry {i}"
        return EncodingRangeError(
            f"party {party!r}: {what!r} is beyond the encodable range "
            f"(|x| < {self.max_abs:g} at {self.frac_bits} fractional bits); "
            "pass a larger public max_abs (e.g. secure_sum(..., max_abs=...)) or fewer frac_bits",
            party=party,
            column=what,
        )

    def decode_sum(self, slot_sums: np.ndarray, n_parties: int,
                   integral: np.ndarray | None = None) -> np.ndarray:
        """Decode slot sums of ``n_parties`` offset values.

        Parameters
        ----------
        slot_sums : numpy.ndarray
            Unpacked slot sums.
        n_parties : int
            Number of vectors that were summed.
        integral : array of bool, optional
            Entries every party encoded as exact integers: these decode to exact
            Python ints (an object array is returned when there is any).

        Returns
        -------
        numpy.ndarray
            ``float64``, or ``object`` (Python ints and floats) when ``integral`` marks any entry.
        """
        total_offset = n_parties << (self.value_bits - 1)
        if integral is not None and bool(np.any(integral)):
            scale = 1 << self.frac_bits
            out: list[int | float] = []
            for s, exact in zip(slot_sums.tolist(), np.asarray(integral, dtype=bool).tolist(), strict=True):
                t = int(s) - total_offset
                out.append(t >> self.frac_bits if exact else t / scale)  # int / int is correctly rounded
            res = np.empty(len(out), dtype=object)
            res[:] = out
            return res
        if slot_sums.dtype == np.uint64:
            # Two's complement in uint64 then reinterpretation gives the signed sum exactly.
            signed = (slot_sums - np.uint64(total_offset)).view(np.int64)
            return np.ldexp(signed.astype(np.float64), -self.frac_bits)
        scale = 1 << self.frac_bits
        return np.array([(int(s) - total_offset) / scale for s in slot_sums], dtype=np.float64)


def _scale_exact(values: list[object], frac_bits: int, limit: int) -> tuple[list[int], int | None]:
    """Fixed-point integers of a mixed int/float list; the index of the first out-of-range value."""
    out: list[int] = []
    flimit = float(limit) if limit.bit_length() <= 1023 else math.inf
    for i, v in enumerate(values):
        if isinstance(v, int | np.integer):  # bool included: exact integer arithmetic
            s = int(v) << frac_bits
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                f = float(np.rint(np.ldexp(float(v), frac_bits)))  # type: ignore[arg-type]
            if not abs(f) < flimit:
                return out, i
            s = int(f)
        if not abs(s) < limit:
            return out, i
        out.append(s)
    return out, None


@dataclass(frozen=True)
class PackingLayout:
    """How encoded values of ``n_parties`` parties are laid out in plaintexts.

    Parameters
    ----------
    encoding : Encoding
        The public fixed-point encoding.
    n_parties : int
        Number of vectors that will be summed.
    plaintext_bits : int
        Usable plaintext bits (``n.bit_length() - 1`` keeps every packed value below ``n``).
    """

    encoding: Encoding
    n_parties: int
    plaintext_bits: int

    def __post_init__(self) -> None:
        if self.n_parties < 1:
            raise ConfigurationError("n_parties must be at least 1")
        if self.slots_per_ciphertext < 1:
            raise ConfigurationError(
                f"a {self.slot_bits}-bit slot does not fit a {self.plaintext_bits}-bit plaintext; "
                "use fewer value bits or a larger key"
            )

    @property
    def headroom_bits(self) -> int:
        """Bits added to each slot so that the sum of all parties fits."""
        return max(0, math.ceil(math.log2(self.n_parties)))

    @property
    def slot_bits(self) -> int:
        """Width of one slot: value, headroom, one guard bit."""
        return self.encoding.value_bits + self.headroom_bits + 1

    @property
    def slots_per_ciphertext(self) -> int:
        """How many values one ciphertext carries."""
        return self.plaintext_bits // self.slot_bits

    def n_ciphertexts(self, length: int) -> int:
        """Ciphertexts needed for a vector of ``length`` values."""
        return max(1, -(-length // self.slots_per_ciphertext))

    @property
    def _fast(self) -> bool:
        return self.slot_bits <= _FAST_SLOT_BITS

    # -- packing ------------------------------------------------------------
    def pack(self, encoded: np.ndarray) -> list[int]:
        """Pack encoded values into plaintext integers, first value most significant."""
        s, w = self.slots_per_ciphertext, self.slot_bits
        n_ct = self.n_ciphertexts(len(encoded))
        if not self._fast:
            vals = [int(v) for v in encoded] + [0] * (n_ct * s - len(encoded))
            out = []
            for c in range(n_ct):
                acc = 0
                for v in vals[c * s : (c + 1) * s]:
                    acc = (acc << w) | v
                out.append(acc)
            return out
        grid = np.zeros(n_ct * s, dtype=np.uint64)
        grid[: len(encoded)] = encoded
        out = []
        step = max(1, 65536 // s)  # bound the bit matrix to ~4M entries at a time
        for c0 in range(0, n_ct, step):
            chunk = grid[c0 * s : (c0 + step) * s]
            bits = np.unpackbits(chunk.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)[:, 64 - w :]
            bits = bits.reshape(-1, s * w)
            pad = (-s * w) % 8
            if pad:
                bits = np.concatenate([np.zeros((bits.shape[0], pad), np.uint8), bits], axis=1)
            rows = np.packbits(bits, axis=1)
            out.extend(int.from_bytes(r.tobytes(), "big") for r in rows)
        return out

    def unpack(self, packed: list[int], length: int) -> np.ndarray:
        """Unpack summed plaintexts into slot sums and check them for overflow.

        Returns
        -------
        numpy.ndarray
            ``uint64`` slot sums on the fast path, else an object array of ints.

        Raises
        ------
        SlotOverflowError
            If any slot exceeds what ``n_parties`` in-range values can sum to.
        """
        s, w = self.slots_per_ciphertext, self.slot_bits
        limit = self.n_parties << self.encoding.value_bits
        nbytes = -(-s * w // 8)
        if not self._fast:
            mask = (1 << w) - 1
            slots: list[int] = []
            for p in packed:
                if p.bit_length() > s * w:
                    raise SlotOverflowError("the most significant slot overflowed: the sum is invalid")
                slots.extend((p >> (w * (s - 1 - i))) & mask for i in range(s))
            res = np.array(slots[:length], dtype=object)
            if any(v >= limit for v in res):
                raise SlotOverflowError(self._overflow_message())
            return res
        try:
            raw = b"".join(int(p).to_bytes(nbytes, "big") for p in packed)
        except OverflowError:
            raise SlotOverflowError("the most significant slot overflowed: the sum is invalid") from None
        by = np.frombuffer(raw, dtype=np.uint8).reshape(len(packed), nbytes)
        pad = nbytes * 8 - s * w
        bits = np.unpackbits(by, axis=1)[:, pad:].reshape(-1, w)
        bits = np.concatenate([np.zeros((bits.shape[0], 64 - w), np.uint8), bits], axis=1)
        res = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)[:length]
        if limit < 2**64 and bool(np.any(res >= np.uint64(limit))):
            raise SlotOverflowError(self._overflow_message())
        return res

    def _overflow_message(self) -> str:
        return (
            f"a packed slot overflowed: the decrypted sum exceeds what {self.n_parties} parties' in-range "
            "values can add up to (more ciphertexts were summed than planned, or a value escaped the "
            "range check); no result is returned"
        )
