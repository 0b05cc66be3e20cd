"""The coordinator interface: what protocols need from a federation.

Protocol layers (``learn/``, ``psi/``, ``dp/`` and the secure-aggregation
protocols) depend on this typed interface, never on :class:`~fedbench.federation.Federation`
or its private members.  It groups what every protocol run needs: the keys and
who holds them, the public encoding, the backend where party-local work runs,
the transcript and its channels, party selection and the secure-aggregation
entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import polars as pl

    from .backend import Backend
    from .crypto.packing import Encoding
    from .crypto.paillier import PaillierKeys
    from .dp import PrivacyBudget
    from .dp.releases import NoisePlan
    from .party import Party
    from .results import SecureSumResult
    from .transcript import Channel, Transcript

__all__ = ["Coordinator", "LocalFn"]

#: A function that runs inside one party on its rows and returns named local aggregates.
LocalFn = Callable[["pl.DataFrame"], Mapping[str, Any]]


@runtime_checkable
class Coordinator(Protocol):
    """What a protocol run may use from the federation it runs in."""

    @property
    def keys(self) -> PaillierKeys:
        """The Paillier keys (generated on first use, held by the key holder)."""
        ...

    @property
    def key_bits(self) -> int:
        """Paillier modulus size in bits."""
        ...

    @property
    def fast_encryption(self) -> bool:
        """Whether parties encrypt with the Damgard-Jurik-Nielsen fixed-base variant."""
        ...

    @property
    def encoding(self) -> Encoding:
        """The wide public fixed-point encoding (statistics and learning)."""
        ...

    @property
    def backend(self) -> Backend:
        """Where party-local work and encryption run."""
        ...

    @property
    def transcript(self) -> Transcript:
        """Every message of every run, by role."""
        ...

    @property
    def audit(self) -> bool:
        """Whether the transcript keeps message payloads."""
        ...

    @property
    def budget(self) -> PrivacyBudget:
        """The per-party privacy ledger."""
        ...

    @property
    def history(self) -> list[Any]:
        """Releases made so far (results and privacy records, never party data)."""
        ...

    def select(self, parties: Sequence[str] | str | None) -> list[Party]:
        """Resolve party names (``None``: all) to parties, refusing unknown or repeated names."""
        ...

    def channel(self, protocol: str) -> Channel:
        """A new transcript channel for one run of ``protocol``."""
        ...

    def encoding_for(self, max_abs: float | None, frac_bits: int | None, base: Encoding | None = None) -> Encoding:
        """The encoding ``base`` (default: :attr:`encoding`) with the given range overrides."""
        ...

    def aggregate(self, parties: list[Party], local_fn: LocalFn, *, encoding: Encoding,
                  protocol: str = "secure_sum", plan: NoisePlan | None = None, description: str = "",
                  record_exact: bool = True,
                  integer_encoding: Encoding | None = None) -> tuple[dict[str, Any], SecureSumResult]:
        """Securely sum ``local_fn`` over ``parties``; returns the released value and its result."""
        ...
