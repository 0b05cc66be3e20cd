"""The fedbench exception hierarchy.

Every error a user can trigger with bad input derives from :class:`FedbenchError`
and, where it concerns one party or one column, names them in the message and
keeps them as attributes (``party``, ``column``) so that notebook front-ends can
point at the culprit.  Errors are raised *before* any state changes: a failed
call leaves the federation exactly as it was.
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "ColumnError",
    "ConfigurationError",
    "DataLoadError",
    "DtypeConflictError",
    "DuplicatePartyError",
    "EmptyPartyError",
    "EncodingRangeError",
    "FedbenchError",
    "InsecureParameterError",
    "LocalComputationError",
    "MissingColumnError",
    "NonFiniteValueError",
    "NonNumericColumnError",
    "NullValuesError",
    "PartyError",
    "PrivacyError",
    "ProtocolError",
    "SchemaWarning",
    "SlotOverflowError",
    "TooFewPartiesError",
    "UnknownPartyError",
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
    """Code run inside a party raised an unexpected exception."""


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


class SchemaWarning(UserWarning):
    """Parties disagree on a column's kind; computations on it will fail until fixed."""


class ProtocolError(FedbenchError):
    """A protocol invariant failed (inconsistent shapes, corrupted ciphertexts...)."""


class SlotOverflowError(ProtocolError, OverflowError):
    """A packed slot overflowed during aggregation; the sum would be wrong."""


class PrivacyError(FedbenchError):
    """A request would weaken the privacy the federation promises."""


class TooFewPartiesError(PrivacyError, ValueError):
    """Too few parties take part for the aggregate to hide any one of them."""


class BudgetError(PrivacyError):
    """Base class of privacy-budget errors (see :mod:`fedbench.dp`)."""
