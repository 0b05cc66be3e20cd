"""Release policy: warn before an exact release that enables a differencing or small-group attack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class DisclosureRiskWarning(UserWarning):
    """An exact release would let someone difference out a party or row, or single out a small group."""


@dataclass(frozen=True)
class Release:
    """What was (or is about to be) released: which statistic, column, parties, and whether exact.

    Holds no values: the policy judges releases by their shape only.
    """

    statistic: str
    column: str | None
    parties: frozenset[str]
    exact: bool = True
    group_sizes_below: int | None = None  # set by the caller when a grouped release has a small group

    @classmethod
    def of(cls, statistic: str, column: str | None, parties: Sequence[str], *, exact: bool = True) -> Release:
        """Convenience constructor taking a party list."""
        return cls(statistic, column, frozenset(parties), exact)


@dataclass
class ReleasePolicy:
    """Configurable release policy.

    Parameters
    ----------
    min_group_size : int
        Grouped counts below this are flagged (a count of 1 identifies a person).
    check_differencing : bool
        Flag an exact release over parties that differ from an earlier exact release of the same
        statistic and column by exactly one party.
    """

    min_group_size: int = 5
    check_differencing: bool = True
    history: list[Release] = field(default_factory=list)

    def warnings_for(self, history: Sequence[Release], request: Release) -> list[str]:
        """Warnings (messages) for ``request`` given earlier releases; empty if it is safe by this policy."""
        out: list[str] = []
        if not request.exact:
            return out  # DP releases: differencing gives noise, not the value
        if self.check_differencing:
            for old in history:
                if not old.exact or (old.statistic, old.column) != (request.statistic, request.column):
                    continue
                diff = old.parties ^ request.parties
                if len(diff) == 1 and (old.parties <= request.parties or request.parties <= old.parties):
                    (who,) = diff
                    out.append(
                        f"exact {request.statistic} of {request.column!r} over {sorted(request.parties)} and an "
                        f"earlier one over {sorted(old.parties)} differ only by party {who!r}: their difference "
                        f"reveals {who!r}'s value; use epsilon= or release only one of them"
                    )
                    break
        if request.group_sizes_below is not None and request.group_sizes_below < self.min_group_size:
            out.append(
                f"exact {request.statistic} by {request.column!r} has groups with fewer than "
                f"{self.min_group_size} rows (min_group_size): small counts single out people"
            )
        return out


_DEFAULT = ReleasePolicy()


def check_release(history: Sequence[Release], request: Release, policy: ReleasePolicy | None = None) -> list[str]:
    """Return the disclosure-risk warnings for ``request`` given the release ``history``.

    This is the hook the statistics path calls before an exact release; it never raises and never
    sees values, only which parties, statistic and column each release covers.

    Parameters
    ----------
    history : sequence of Release
        Earlier releases of the session.
    request : Release
        The release about to happen.
    policy : ReleasePolicy, optional
        Defaults to ``ReleasePolicy()`` (``min_group_size=5``).

    Returns
    -------
    list of str
        Warning messages; the caller emits them as :class:`DisclosureRiskWarning`.
    """
    return (policy or _DEFAULT).warnings_for(history, request)
