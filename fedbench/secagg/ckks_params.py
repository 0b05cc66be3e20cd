"""CKKS parameters: the 128-bit security check, automatic choice and the derived error bound.

See :mod:`fedbench.secagg.ckks` for the protocol and for how the bound is
derived (encryption noise, noise flooding, floating-point rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigurationError, InsecureParameterError

__all__ = ["FLOOD_BITS", "HE_STANDARD_128", "NOISE_STD", "PRIME_BITS", "CKKSErrorBound", "CKKSParams"]

#: Largest total coefficient-modulus bits for 128-bit classical security per ring dimension
#: (Homomorphic Encryption Standard, 2018, Table 1, uniform ternary secret).
HE_STANDARD_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: Bits of each prime when parameters are chosen automatically (SEAL's largest).
PRIME_BITS = 60
#: Standard deviation of SEAL's error distribution (its default).
NOISE_STD = 3.2
#: The flooding noise is this many powers of two above the bound on the decryption error.
FLOOD_BITS = 30
#: Standard deviations in the encryption-noise bound and in the flooding-noise bound.
_NOISE_TAIL = 10.0
_FLOOD_TAIL = 8.0
#: Floating-point rounding of encode + decode, relative to the public range (measured below 2**-52).
_FP_RELATIVE = 2.0**-45


def _slot_noise_std(poly_modulus_degree: int, n_parties: int) -> float:
    """Bound on the standard deviation of one slot's noise in a sum of ``n_parties`` fresh ciphertexts.

    In units of ``2**-scale_bits`` (module docstring).
    """
    n = poly_modulus_degree
    coeff_var = (4.0 / 3.0) * n * NOISE_STD**2 + NOISE_STD**2 + 1.0 / 12.0
    return math.sqrt(n_parties * n * coeff_var)


@dataclass(frozen=True)
class CKKSErrorBound:
    """The parts of the per-entry error bound of one CKKS sum (absolute values, in the data's units).

    Attributes
    ----------
    noise : float
        Bound ``t`` on the encryption noise of the summed ciphertext (10 standard deviations).
    flood_std : float
        Standard deviation of the flooding noise the key holder adds (``2**FLOOD_BITS * noise``).
    rounding : float
        Bound on double-precision rounding in encoding and decoding.
    total : float
        ``noise + 8 * flood_std + rounding``: the reported bound.
    """

    noise: float
    flood_std: float
    rounding: float
    total: float


@dataclass(frozen=True)
class CKKSParams:
    """CKKS encryption parameters, refused below 128-bit security.

    Parameters
    ----------
    poly_modulus_degree : int
        Ring dimension ``N`` (a power of two from 1024 to 32768); ``N / 2`` slots per ciphertext.
    coeff_mod_bit_sizes : tuple of int
        Bit sizes of the primes of the coefficient modulus (at least two, each 20 to 60): the
        last is SEAL's special prime, ciphertexts use the others.
    scale_bits : int
        ``log2`` of the scale: values are encoded as ``round(x * 2**scale_bits)``.

    Raises
    ------
    InsecureParameterError
        The total modulus exceeds :data:`HE_STANDARD_128` for ``poly_modulus_degree``.
    ConfigurationError
        A parameter is malformed, or the scale leaves no room for values.
    """

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if isinstance(n, bool) or not isinstance(n, int) or n not in HE_STANDARD_128:
            raise ConfigurationError(
                f"poly_modulus_degree must be one of {sorted(HE_STANDARD_128)}, got {n!r}"
            )
        bits = tuple(self.coeff_mod_bit_sizes)
        if len(bits) < 2 or any(isinstance(b, bool) or not isinstance(b, int) or not 20 <= b <= 60 for b in bits):
            raise ConfigurationError(
                "coeff_mod_bit_sizes must be at least two integers from 20 to 60 (ciphertext primes, then "
                f"SEAL's special prime), got {bits!r}"
            )
        object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if sum(bits) > HE_STANDARD_128[n]:
            raise InsecureParameterError(
                f"coeff_mod_bit_sizes={list(bits)} total {sum(bits)} bits, more than the {HE_STANDARD_128[n]} bits "
                f"that keep poly_modulus_degree={n} at 128-bit security (Homomorphic Encryption Standard, "
                "Table 1); use fewer or smaller primes, or a larger poly_modulus_degree"
            )
        s = self.scale_bits
        if isinstance(s, bool) or not isinstance(s, int) or not 20 <= s <= self.data_bits - 3:
            raise ConfigurationError(
                f"scale_bits must be an integer from 20 to {self.data_bits - 3} (the ciphertext modulus has at "
                f"least {self.data_bits} bits), got {s!r}"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext."""
        return self.poly_modulus_degree // 2

    @property
    def data_primes(self) -> tuple[int, ...]:
        """Bit sizes of the primes ciphertexts live under (all but SEAL's special prime)."""
        return self.coeff_mod_bit_sizes[:-1]

    @property
    def data_bits(self) -> int:
        """A lower bound on ``log2`` of the ciphertext modulus (a ``b``-bit prime is at least ``2**(b-1)``)."""
        return sum(b - 1 for b in self.data_primes)

    @property
    def security_bits(self) -> int:
        """Classical security level guaranteed by the HE standard's table (checked on construction)."""
        return 128

    def describe(self) -> str:
        """One line for result cards."""
        return (f"CKKS (TenSEAL/SEAL), ring dimension {self.poly_modulus_degree}, "
                f"{sum(self.data_primes)}-bit ciphertext modulus, scale 2^{self.scale_bits}, "
                f"{self.security_bits}-bit security")

    def noise_std(self, n_parties: int) -> float:
        """Upper bound on the standard deviation of one slot's encryption noise in a sum of ``n_parties``."""
        return math.ldexp(_slot_noise_std(self.poly_modulus_degree, n_parties), -self.scale_bits)

    def error_bound(self, n_parties: int, max_abs: float) -> CKKSErrorBound:
        """The per-entry error bound of a sum of ``n_parties`` vectors with entries below ``max_abs``.

        Parameters
        ----------
        n_parties : int
            Ciphertexts added.
        max_abs : float
            The public range of every party's entries.

        Returns
        -------
        CKKSErrorBound
        """
        noise = _NOISE_TAIL * self.noise_std(n_parties)
        flood = math.ldexp(noise, FLOOD_BITS)
        rounding = 2.0 * n_parties * max_abs * _FP_RELATIVE
        return CKKSErrorBound(noise=noise, flood_std=flood, rounding=rounding,
                              total=noise + _FLOOD_TAIL * flood + rounding)

    def check_range(self, n_parties: int, max_abs: float) -> None:
        """Refuse a range whose sum over ``n_parties`` would not fit the ciphertext modulus.

        Raises
        ------
        ConfigurationError
            ``n_parties * max_abs * 2**scale_bits`` (plus a margin) reaches half the modulus.
        """
        need = math.ceil(math.log2(n_parties * max_abs)) + self.scale_bits + 2
        if need > self.data_bits:
            raise ConfigurationError(
                f"max_abs={max_abs:g} is too large for these CKKS parameters: the sum of {n_parties} parties at "
                f"scale 2^{self.scale_bits} needs a {need}-bit ciphertext modulus, these have {self.data_bits} "
                "bits; pass a smaller public max_abs, fewer scale_bits or more primes"
            )

    @classmethod
    def for_range(cls, n_parties: int, max_abs: float, frac_bits: int) -> CKKSParams:
        """The smallest 128-bit parameters whose error bound is below ``2**-(frac_bits + 1)``.

        Parameters
        ----------
        n_parties : int
            Parties in the sum.
        max_abs : float
            Public range of each party's entries.
        frac_bits : int
            Resolution wanted: the bound's noise terms stay below half of ``2**-frac_bits``
            (the rounding term depends on ``max_abs`` only).

        Returns
        -------
        CKKSParams

        Raises
        ------
        ConfigurationError
            No ring dimension up to 32768 holds the range at that resolution.
        """
        value_bits = math.ceil(math.log2(n_parties * max_abs))
        for n in sorted(HE_STANDARD_128):
            noise = _NOISE_TAIL * _slot_noise_std(n, n_parties)
            noise_poly = noise + _FLOOD_TAIL * math.ldexp(noise, FLOOD_BITS)  # in units of 2**-scale_bits
            scale_bits = max(20, math.ceil(math.log2(noise_poly)) + frac_bits + 1)
            data_primes = -(-(value_bits + scale_bits + 2) // (PRIME_BITS - 1))
            if (data_primes + 1) * PRIME_BITS <= HE_STANDARD_128[n]:
                return cls(n, (PRIME_BITS,) * (data_primes + 1), scale_bits)
        raise ConfigurationError(
            f"no CKKS parameters at 128-bit security hold max_abs={max_abs:g} for {n_parties} parties at "
            f"frac_bits={frac_bits}; pass a smaller public max_abs or fewer frac_bits"
        )
