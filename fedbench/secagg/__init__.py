"""Secure aggregation: pluggable protocols behind one interface, chosen by name.

* :mod:`~fedbench.secagg.base`: the :class:`SecAggProtocol` interface, its
  :class:`TrustModel` and :class:`CostEstimate`, and :class:`AggregationOutcome`;
* :mod:`~fedbench.secagg.registry`: :func:`register_protocol`,
  :func:`get_protocol`, :func:`available_protocols`;
* :mod:`~fedbench.secagg.spec`: :class:`VectorSpec`, the public shape of a local result;
* :mod:`~fedbench.secagg.paillier`: packed Paillier with one key holder, the
  default protocol ``"paillier"``;
* :mod:`~fedbench.secagg.ckks`: CKKS (TenSEAL, optional extra ``ckks``) with one
  key holder, approximate within a reported bound: ``"ckks"``.
* :mod:`~fedbench.secagg.ckks_multiparty`: multiparty CKKS (OpenFHE, run in a
  CPython 3.10 engine process per party), no key holder, n-of-n decryption:
  ``"ckks-multiparty"``.
* :mod:`~fedbench.secagg.masking`: pairwise masking with Shamir-shared
  dropout recovery (Bonawitz et al.; SecAgg+), no key holder, every secret
  party-side: ``"masking"``.

:func:`secure_aggregate` runs the protocol named by ``protocol=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .base import (
    MIN_PARTIES,
    AggregationOutcome,
    CostEstimate,
    GridNoiseFn,
    LocalFn,
    SecAggProtocol,
    TrustModel,
    check_enough_parties,
)
from .ckks import CKKS, CKKSParams, CKKSSecAgg
from .ckks_multiparty import CKKS_MULTIPARTY, MultipartyCKKSParams, MultipartyCKKSSecAgg
from .masking import MASKING, MaskingSecAgg
from .paillier import PAILLIER, PaillierSecAgg, PartyContribution, parallel_min_ciphertexts, party_contribution
from .registry import available_protocols, get_protocol, register_protocol, unregister_protocol
from .spec import VectorSpec

if TYPE_CHECKING:
    from ..backend import Backend
    from ..crypto.packing import Encoding
    from ..party import Party
    from ..transcript import Channel
    from .keyholders import AnyPaillierKeys

__all__ = [
    "DEFAULT_PROTOCOL",
    "MIN_PARTIES",
    "AggregationOutcome",
    "CKKSParams",
    "CKKSSecAgg",
    "CostEstimate",
    "GridNoiseFn",
    "LocalFn",
    "MaskingSecAgg",
    "MultipartyCKKSParams",
    "MultipartyCKKSSecAgg",
    "PaillierSecAgg",
    "PartyContribution",
    "SecAggProtocol",
    "TrustModel",
    "VectorSpec",
    "available_protocols",
    "check_enough_parties",
    "check_protocol_options",
    "get_protocol",
    "parallel_min_ciphertexts",
    "party_contribution",
    "register_protocol",
    "secure_aggregate",
    "unregister_protocol",
]

#: The protocol :func:`secure_aggregate` runs unless told otherwise.
DEFAULT_PROTOCOL = "paillier"

register_protocol(PAILLIER, replace=True)
register_protocol(CKKS, replace=True)
register_protocol(CKKS_MULTIPARTY, replace=True)
register_protocol(MASKING, replace=True)


def secure_aggregate(
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
    protocol: str = DEFAULT_PROTOCOL,
    options: Mapping[str, Any] | None = None,
) -> AggregationOutcome:
    """Securely sum the results of ``local_fn`` over ``parties`` with the protocol named ``protocol``.

    Parameters
    ----------
    parties : sequence of Party
        At least two parties.
    local_fn : callable
        Runs inside each party on its polars DataFrame and returns a dict of
        numbers or arrays (same names and shapes in every party).
    keys : PaillierKeys, ThresholdPaillierKeys or None
        The federation's keys (the private part is used only as the key holder; a
        threshold key is decrypted by its share holders); ``None`` for a protocol
        that needs none (``needs_keys = False``).
    backend : Backend
        Where local work and encryption run.
    channel : Channel
        Records and carries every message.
    encoding : Encoding
        Public fixed-point parameters.
    fast_encryption : bool, default True
        Use the DJN fixed-base encryption (see :mod:`fedbench.crypto.paillier`).
    key_recipients : sequence of str, optional
        Parties that do not hold the public key yet (default: all of them); the
        key holder sends it to them first.
    party_noise : callable, optional
        Distributed DP: run inside each party, returns its integer noise share
        (grid units), added to its encoded values before encryption.
    central_noise : callable, optional
        Central DP: the key holder adds this integer noise to the decrypted
        integer aggregate; the message to the analyst carries the noisy value.
    before_release : callable, optional
        Called once every party has validated, encoded and encrypted its
        contribution, before any message is recorded (the DP budget charge):
        if it raises, nothing is recorded or released.
    integer_encoding : Encoding, optional
        Without DP noise: the encoding of the entries every party returned as
        integers (public dtypes), e.g. no fractional bits and a wide range, so
        that integer sums stay exact beyond ``encoding``'s range.  Integral
        entries get their own slots and ciphertexts.  If parties disagree on
        which entries are integers, every party runs again with ``encoding``
        alone (the local function runs twice; nothing was recorded yet).
    protocol : str, default "paillier"
        A registered protocol's name (:func:`available_protocols`).
    options : mapping, optional
        Protocol options (e.g. ``{"threshold": 5}`` for ``"masking"``); each
        must be one of the protocol's ``option_names``.

    Returns
    -------
    AggregationOutcome

    Raises
    ------
    ConfigurationError
        No protocol is registered as ``protocol``, or it takes no such option
        (checked before any party runs).
    TooFewPartiesError, ProtocolError, NonFiniteValueError, EncodingRangeError, SlotOverflowError
        From the protocol.
    """
    impl = get_protocol(protocol)
    extra = check_protocol_options(impl, options)
    return impl.aggregate(
        parties, local_fn, keys=keys, backend=backend, channel=channel, encoding=encoding,
        fast_encryption=fast_encryption, key_recipients=key_recipients, party_noise=party_noise,
        central_noise=central_noise, before_release=before_release, integer_encoding=integer_encoding,
        **extra,
    )


def check_protocol_options(impl: SecAggProtocol, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options ``impl`` accepts, as a dict (``None`` values dropped).

    Raises
    ------
    ConfigurationError
        An option the protocol does not take (the message lists the ones it does).
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - impl.option_names)
    if unknown:
        takes = ", ".join(sorted(impl.option_names)) or "no options"
        raise ConfigurationError(
            f"the {impl.name!r} secure-aggregation protocol does not take {', '.join(unknown)} (it takes: {takes})")
    return given
