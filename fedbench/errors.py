"""The fedbench exception hierarchy.

Every error a user can trigger with bad input derives from :class:`FedbenchError`
and, where it concerns one party or one column, names them in the message and
keeps them as attributes (``party``, ``column``) so that notebook front-ends can
point at the culprit.  Errors are raised *before* any state changes: a failed
call leaves the federation exactly as it was.

Errors are a channel too
    A message, an attribute, a chained exception or a traceback that leaves a
    party may carry nothing computed from the party's data: errors name the
    party, the column or entry, and the public limit that was crossed, never
    the offending value, a count of offending rows, or the text of a foreign
    exception (which may quote a row).  Exceptions raised inside a party cross
    to the caller without their ``__cause__``/``__context__`` chain (see
    :meth:`fedbench.party.Party.compute`).  The refusal itself remains a
    one-bit signal ("this party's value is out of range / holds a null"),
    which is inherent to refusing bad input.
"""

from __future__ import annotations

__all__ = [
    "BackendStartError",
    "BudgetError",
    "BudgetExceededError",
    "BudgetNotSetError",
    "ColumnError",
    "ConfigurationError",
    "DataLoadError",
    "DisclosureRiskError",
    "DropoutError",
    "DtypeConflictError",
    "DuplicateColumnError",
    "DuplicateKeyError",
    "DuplicatePartyError",
    "EmptyPartyError",
    "EncodingRangeError",
    "FeatureUnavailableError",
    "FedbenchError",
    "FederatedLearningWarning",
    "InsecureParameterError",
    "KeyTypeError",
    "LedgerFileError",
    "LocalComputationError",
    "LocalResultError",
    "MissingBoundsError",
    "MissingColumnError",
    "NoFederationError",
    "NonFiniteValueError",
    "NonNumericColumnError",
    "NormalizationError",
    "NullValuesError",
    "PartyError",
    "PartyTimeoutError",
    "PartyUnavailableError",
    "PrivacyError",
    "ProtocolError",
    "SchemaWarning",
    "SlotOverflowError",
    "TooFewPartiesError",
    "UnknownPartyError",
    "UnsupportedEstimatorError",
]


class FedbenchError(Exception):
    """Base class of every error fedbench raises on purpose."""


class ConfigurationError(FedbenchError, ValueError):
    """An argument or setting is invalid (unknown mode, bad option value...)."""


class InsecureParameterError(ConfigurationError):
    """A security parameter is below the safe default without an explicit opt-in."""


class PartyError(FedbenchError):
    """An error that concerns one party.

    Parameters
    ----------
    message : str
        Human-readable explanation; should already name the party.
    party : str or None
        Name of the party concerned.
    """

    def __init__(self, message: str, *, party: str | None = None) -> None:
        super().__init__(message)
        self.party = party


class DataLoadError(PartyError, OSError):
    """A party's data could not be read (missing file, unreadable, unknown format)."""


class EmptyPartyError(PartyError, ValueError):
    """A party holds no rows (or no rows usable for the requested computation)."""


class DuplicatePartyError(PartyError, ValueError):
    """A party name is already used in the federation."""


class UnknownPartyError(PartyError, KeyError):
    """A party name does not exist in the federation."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class LocalComputationError(PartyError, RuntimeError):
    """Code run inside a party raised an unexpected (non-fedbench) exception.

    The original exception's message and traceback stay inside the party (they
    may quote the party's rows); only its type name crosses, as
    ``original_type``.  To debug a local function, run it on data you hold.

    Parameters
    ----------
    message : str
        Explanation naming the party and the original exception type.
    party : str or None
        The party the code ran in.
    original_type : str or None
        Name of the original exception's class (e.g. ``"KeyError"``).
    """

    def __init__(self, message: str, *, party: str | None = None, original_type: str | None = None) -> None:
        super().__init__(message, party=party)
        self.original_type = original_type


class PartyUnavailableError(PartyError, RuntimeError):
    """A party did not answer: its process or node died, or it timed out."""


class PartyTimeoutError(PartyUnavailableError, TimeoutError):
    """A local function ran longer than ``local_timeout`` seconds inside a party.

    The computation cannot be killed (it runs in a thread inside the party); it
    goes on in the background and its result is discarded.  The federation
    stays usable.
    """


class ColumnError(PartyError):
    """An error that concerns one column of one party."""

    def __init__(self, message: str, *, party: str | None = None, column: str | None = None) -> None:
        super().__init__(message, party=party)
        self.column = column


class MissingColumnError(ColumnError, KeyError):
    """A requested column is absent from a party."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NonNumericColumnError(ColumnError, TypeError):
    """A numeric computation was asked of a column that is not numeric."""


class DtypeConflictError(ColumnError, TypeError):
    """Parties disagree on the kind of a column used by a computation."""


class NullValuesError(ColumnError, ValueError):
    """A column holds nulls and the call's null policy is ``"error"``."""


class NonFiniteValueError(ColumnError, ValueError):
    """A column or a local result holds NaN or infinity."""


class EncodingRangeError(ColumnError, ValueError):
    """A value is beyond what the protocol's fixed-point encoding can represent."""


class DuplicateColumnError(ColumnError, DataLoadError):
    """A data file names the same column twice in its header (polars would silently rename one)."""


class SchemaWarning(UserWarning):
    """Parties disagree on a column's kind; computations on it will fail until fixed."""


class ProtocolError(FedbenchError):
    """A protocol invariant failed (inconsistent shapes, corrupted ciphertexts...)."""


class LocalResultError(ColumnError, ProtocolError, TypeError):
    """A local function returned something that cannot be aggregated (not numeric, complex...).

    ``column`` is the offending entry of the returned dict.
    """


class SlotOverflowError(ProtocolError, OverflowError):
    """A packed slot overflowed during aggregation; the sum would be wrong."""


class PrivacyError(FedbenchError):
    """A request would weaken the privacy the federation promises."""


class TooFewPartiesError(PrivacyError, ValueError):
    """Too few parties take part for the aggregate to hide any one of them."""


class BudgetError(PrivacyError):
    """Base class of privacy-budget errors (see :mod:`fedbench.dp`)."""


class BudgetExceededError(BudgetError, PartyError):
    """A request would take a party past its privacy budget; nothing was computed.

    Raised by the check of check-then-spend, before any noise is drawn or any
    data is read.  ``party`` is the (first) offending party; the figures are
    that party's.

    Parameters
    ----------
    message : str
        Explanation showing spent, requested and remaining budget separately.
    party : str or None
        The offending party.
    spent, requested, remaining, budget : tuple of float or None
        ``(epsilon, delta)`` figures of the offending party.
    """

    def __init__(
        self,
        message: str,
        *,
        party: str | None = None,
        spent: tuple[float, float] | None = None,
        requested: tuple[float, float] | None = None,
        remaining: tuple[float, float] | None = None,
        budget: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(message, party=party)
        self.spent = spent
        self.requested = requested
        self.remaining = remaining
        self.budget = budget


class BudgetNotSetError(BudgetError, PartyError):
    """A differentially private request touches a party that has no privacy budget yet."""


class LedgerFileError(BudgetError):
    """A privacy-ledger file is corrupt, foreign, tampered with or cannot be written.

    The file is never modified when this is raised.

    Parameters
    ----------
    message : str
        Explanation naming the file.
    path : str or None
        The ledger file concerned.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MissingBoundsError(ColumnError, ValueError):
    """A sensitivity needs declared bounds (lower, upper) that are missing or invalid."""


class DuplicateKeyError(ColumnError, ValueError):
    """A party holds the same identifier twice where a protocol needs unique keys (PSI ``align``)."""


class KeyTypeError(ColumnError, TypeError):
    """A column's dtype cannot serve as an identifier (nested, binary, object...)."""


class NormalizationError(ColumnError, ValueError):
    """An identifier normaliser failed, returned a non-string, or was applied to a non-string column."""


class NoFederationError(ConfigurationError):
    """No federation is declared yet (notebook magics, :func:`fedbench.magics.current_federation`)."""


class FeatureUnavailableError(FedbenchError, ImportError):
    """A protocol module (PSI, federated learning, differential privacy) is not part of this install yet."""


class BackendStartError(FedbenchError, RuntimeError):
    """A compute backend (a local Ray instance, a Ray cluster) failed to start or to connect.

    The message says what failed and how to retry; the backend's own traceback
    is not chained (it holds no party data, only tens of lines of start-up noise)
    but its text is kept in :attr:`detail` for debugging.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class UnsupportedEstimatorError(ConfigurationError):
    """An estimator (or a pipeline step) has no federated training protocol; the message lists those that do."""


class DropoutError(TooFewPartiesError):
    """Too few parties remained in a federated training round after failures and timeouts.

    Parameters
    ----------
    message : str
        Explanation naming the round and the parties that dropped out.
    round : int or None
        The training round.
    failures : list or None
        One record per party that dropped out (party, kind, reason).
    """

    def __init__(self, message: str, *, round: int | None = None, failures: list | None = None) -> None:
        super().__init__(message)
        self.round = round
        self.failures = list(failures or [])


class FederatedLearningWarning(UserWarning):
    """Federated training continued past something the analyst should know (a single-class party...)."""


# -- masking secure aggregation (fedbench.masking; Bonawitz et al. / SecAgg+) --------------------
class MaskingParameterError(ConfigurationError):
    """A masking-protocol parameter is unsound: threshold, neighbours, or an encoding too wide for Z_2^64."""


class MaskingDropoutError(TooFewPartiesError):
    """Fewer parties than the threshold remained at a round of the masking protocol; nothing was released.

    Parameters
    ----------
    message : str
        Explanation naming the round.
    round : int or None
        The protocol round (1 advertise keys, 2 share keys, 3 masked input, 4 unmask).
    """

    def __init__(self, message: str, *, round: int | None = None) -> None:
        super().__init__(message)
        self.round = round


class MaskingProtocolError(ProtocolError):
    """A party's message breaks the masking protocol (duplicated public key, wrong vector length or dtype)."""

    def __init__(self, message: str, *, party: str | None = None) -> None:
        super().__init__(message)
        self.party = party


# -- threshold Paillier (fedbench.crypto.threshold; Damgard-Jurik threshold decryption) ----------
class TooFewKeySharesError(TooFewPartiesError):
    """Fewer key-share holders than the threshold can decrypt; nothing was decrypted, not even partially.

    Parameters
    ----------
    message : str
        Explanation naming the threshold and the holders available and missing.
    threshold : int or None
        Partial decryptions needed.
    missing : list of str
        Share holders that are not available.
    """

    def __init__(self, message: str, *, threshold: int | None = None, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.threshold = threshold
        self.missing = list(missing or [])


class InvalidPartialDecryptionError(ProtocolError):
    """A party's partial decryption failed its zero-knowledge proof; nothing was released.

    Parameters
    ----------
    message : str
        Explanation naming the sender.
    party : str or None
        The party whose partial decryption is wrong (the first one found, in share order).
    parties : list of str
        Every party whose partial decryption failed its proof.
    """

    def __init__(self, message: str, *, party: str | None = None, parties: list[str] | None = None) -> None:
        super().__init__(message)
        self.party = party
        self.parties = list(parties or ([party] if party else []))


class DisclosureRiskError(PrivacyError):
    """The release policy refused an exact release (a differencing pair or a group below ``min_group_size``).

    The message says which rule fired, never a value, nor which group is small.
    """


__all__ += ["InvalidPartialDecryptionError", "TooFewKeySharesError"]
