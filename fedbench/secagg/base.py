"""The interface every secure-aggregation protocol implements.

A protocol takes the parties, a local function and the federation's shared
machinery (keys, backend, channel, encoding) and returns the sum of the
parties' local results, recording every message in the channel.  It also
declares, without running, who must be trusted (:class:`TrustModel`) and what
a run costs (:class:`CostEstimate`), for result cards and the crypto-cost
panel.  Protocols are chosen by name through :mod:`fedbench.secagg.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ..errors import TooFewPartiesError

if TYPE_CHECKING:
    import polars as pl

    from ..backend import Backend
    from ..crypto.packing import Encoding, PackingLayout
    from ..party import Party
    from ..transcript import Channel
    from .keyholders import AnyPaillierKeys
    from .spec import VectorSpec

__all__ = [
    "MIN_PARTIES",
    "AggregationOutcome",
    "CostEstimate",
    "GridNoiseFn",
    "LocalFn",
    "SecAggProtocol",
    "TrustModel",
    "check_enough_parties",
]

#: Fewer parties than this and an aggregate is one party's own numbers.
MIN_PARTIES = 2

LocalFn = Callable[["pl.DataFrame"], Mapping[str, Any]]
#: ``noise(names, shapes, frac_bits)``: integer DP noise in grid units, one per scalar of the vector.
GridNoiseFn = Callable[[Sequence[str], Sequence[tuple[int, ...]], int], np.ndarray]


@dataclass(frozen=True)
class TrustModel:
    """Who must be trusted for a protocol's guarantees, and what collusion breaks them.

    Attributes
    ----------
    text : str
        One sentence for result cards: the assumptions and what breaks them.
    trusted : tuple of str
        Roles that must follow the protocol (e.g. ``("aggregator", "keyholder")``).
    broken_by : str
        The smallest collusion that exposes a party's local aggregate.
    """

    text: str
    trusted: tuple[str, ...] = ()
    broken_by: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CostEstimate:
    """What one run of a protocol costs, estimated without running it (for the crypto-cost panel).

    Attributes
    ----------
    ciphertexts_per_party : int
        Ciphertexts (or masked blocks) each party sends.
    messages : int
        Messages recorded in the transcript, all roles together.
    bytes_per_party : int
        Payload bytes of one party's encrypted contribution.
    total_bytes : int
        Payload bytes of every message of the run.
    operations : mapping of str to int
        Counts of the expensive operations (e.g. ``"encrypt"``, ``"decrypt"``, ``"add"``).
    """

    ciphertexts_per_party: int
    messages: int
    bytes_per_party: int
    total_bytes: int
    operations: Mapping[str, int] = field(default_factory=dict)


class SlotLayout(Protocol):
    """What results need from a protocol's layout (:class:`PackingLayout` for Paillier)."""

    @property
    def slots_per_ciphertext(self) -> int:
        """Values carried by one ciphertext."""
        ...


@dataclass
class AggregationOutcome:
    """What one secure aggregation run produced (before result formatting).

    ``error_bound`` is ``None`` for exact protocols, else the bound on each
    entry's absolute error; ``scheme`` describes the encryption (empty: the
    federation's Paillier key); ``layout`` is the packing layout (``None``
    for protocols that pack nothing); ``survivors`` the parties whose contribution is in the sum
    when the protocol tolerates dropouts (``None``: every party),
    ``dropped`` the others (party -> round), ``details`` protocol parameters
    (e.g. the masking threshold).
    """

    value: dict[str, float | np.ndarray]
    spec: VectorSpec
    layout: PackingLayout | SlotLayout | None
    ciphertexts_per_party: int
    seconds: dict[str, float]
    fast_encryption: bool
    protocol: str = "paillier"
    error_bound: float | None = None
    scheme: str = ""
    survivors: list[str] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def check_enough_parties(parties: int | Sequence[Party | str], *, what: str = "a secure sum",
                         hint: str = "over one party the 'aggregate' is that party's own data") -> None:
    """Refuse a multi-party computation over fewer than :data:`MIN_PARTIES` parties (the one such check).

    Parameters
    ----------
    parties : int or sequence of Party or str
        The parties (named in the error), or just how many there are.
    what : str, default "a secure sum"
        The computation refused, as the message starts.
    hint : str
        Why, or what to do instead (after a colon; empty: nothing).

    Raises
    ------
    TooFewPartiesError
        Fewer than :data:`MIN_PARTIES` parties.
    """
    if isinstance(parties, int):
        n, listed = parties, ""
    else:
        names = [p if isinstance(p, str) else p.name for p in parties]
        n, listed = len(names), f" ({', '.join(names) or 'none'})"
    if n < MIN_PARTIES:
        raise TooFewPartiesError(f"{what} needs at least {MIN_PARTIES} parties, got {n}{listed}"
                                 + (f": {hint}" if hint else ""))


class SecAggProtocol(ABC):
    """One secure-aggregation protocol, registered and chosen by :attr:`name`.

    Subclasses set :attr:`name` and :attr:`trust_model` and implement
    :meth:`cost_model` and :meth:`aggregate`.  An implementation records every
    message in ``channel``, validates inside each party before the first
    message, calls ``before_release`` before recording anything, and never
    puts a value computed from a party's data into an error message.
    """

    #: The name users pass as ``protocol=``.
    name: ClassVar[str]
    #: Who must be trusted, and what collusion breaks the protocol.
    trust_model: ClassVar[TrustModel]
    #: Whether the protocol uses the federation's Paillier keys (else none are generated for it).
    needs_keys: ClassVar[bool] = True
    #: Keyword options the protocol's :meth:`aggregate` accepts beyond the common ones (e.g. ``threshold``).
    option_names: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def cost_model(self, n_parties: int, n_values: int, key_bits: int, *,
                   encoding: Encoding | None = None) -> CostEstimate:
        """Estimate one run's ciphertexts, messages and bytes without running it.

        Parameters
        ----------
        n_parties : int
            Parties contributing.
        n_values : int
            Scalars in each party's local result.
        key_bits : int
            Size of the modulus (or the protocol's security parameter).
        encoding : Encoding, optional
            The fixed-point encoding (default: :meth:`Encoding.default_sum`).

        Returns
        -------
        CostEstimate
        """

    @abstractmethod
    def aggregate(
        self,
        parties: Sequence[Party],
        local_fn: LocalFn,
        *,
        keys: AnyPaillierKeys | None,
        backend: Backend,
        channel: Channel,
        encoding: Encoding,
        fast_encryption: bool = True,
        key_recipients: Sequence[str] | None = None,
        party_noise: GridNoiseFn | None = None,
        central_noise: GridNoiseFn | None = None,
        before_release: Callable[[], None] | None = None,
        integer_encoding: Encoding | None = None,
    ) -> AggregationOutcome:
        """Securely sum the results of ``local_fn`` over ``parties``.

        The arguments are those of :func:`fedbench.secagg.secure_aggregate`;
        a protocol that needs no Paillier key (``needs_keys = False``) gets
        ``keys=None`` and ignores ``fast_encryption``.  A protocol with
        :attr:`option_names` takes them as further keyword arguments.

        Returns
        -------
        AggregationOutcome
        """

    def __repr__(self) -> str:
        return f"<secure-aggregation protocol {self.name!r}: {self.trust_model.text}>"
