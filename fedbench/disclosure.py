"""Release policy: warn before (or refuse) an exact release that enables a differencing or small-group attack.

Two exact releases of the same quantity over parties that differ by one party
reveal that party's value (their difference); an exact count of a group with
fewer than ``min_group_size`` rows singles out the people in it.  The
coordinator keeps the *shape* of every statistic it released (statistic,
columns, parties, exact or DP; never a value) and checks each new release:

* **differencing** is judged from shapes alone, before any data is read: with
  ``action="refuse"`` nothing is computed, sent or recorded; except a pair that
  a masking dropout creates, which is judged once the survivors are known, after
  the masked inputs arrived and before any party unmasks: nothing is released;
* **small groups** (exact ``group_counts`` and ``histogram``) can only be judged
  on the aggregate, so the role that computed it (the key holder, or the
  aggregator under masking, threshold keys or multiparty CKKS, which has then
  seen it) holds the release back, checks every cell, then sends it (``"warn"``)
  or withholds it from the analyst (``"refuse"``: the analyst receives nothing,
  and the error says only that a group is below the threshold, not which one or
  how many).

DP releases never trigger the policy, and learning runs are not statistics
releases: they are not checked.  Set the policy with
``fed.release_policy = ReleasePolicy(min_group_size=5, action="warn")``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from .errors import ConfigurationError, DisclosureRiskError
from .transcript import Channel

__all__ = [
    "ACTIONS",
    "DisclosureRiskWarning",
    "Release",
    "ReleaseGuard",
    "ReleasePolicy",
    "check_release",
    "release_shape",
]

#: What the policy does with a risky release.
ACTIONS = ("warn", "refuse", "off")


class DisclosureRiskWarning(UserWarning):
    """An exact release would let someone difference out a party or row, or single out a small group."""


@dataclass(frozen=True)
class Release:
    """What was (or is about to be) released: which statistic, columns, parties, and whether exact.

    Holds no values: the policy judges releases by their shape only.  Two
    releases concern the same quantity when their ``statistic`` is equal and
    their ``columns`` overlap (or, when either has no ``columns``, their
    ``column`` is equal).
    """

    statistic: str
    column: str | None
    parties: frozenset[str]
    exact: bool = True
    group_sizes_below: int | None = None  # set by the caller when a grouped release has a small group
    columns: frozenset[str] = frozenset()

    @classmethod
    def of(cls, statistic: str, column: str | None, parties: Sequence[str], *, exact: bool = True) -> Release:
        """Convenience constructor taking a party list."""
        return cls(statistic, column, frozenset(parties), exact)

    def same_quantity(self, other: Release) -> bool:
        """Whether ``other`` releases (part of) the same quantity, so that a difference isolates a party."""
        if self.statistic != other.statistic:
            return False
        if self.columns and other.columns:
            return bool(self.columns & other.columns)
        return self.column == other.column


@dataclass
class ReleasePolicy:
    """Configurable release policy.

    Parameters
    ----------
    min_group_size : int, default 5
        Exact group counts and histogram cells with 1 to ``min_group_size - 1``
        rows are flagged (a count of 1 identifies a person; empty cells are not flagged).
    check_differencing : bool, default True
        Flag an exact release over parties that differ from an earlier exact
        release of the same quantity by exactly one party (one set containing the other).
    action : {"warn", "refuse", "off"}, default "warn"
        ``"warn"``: release and emit :class:`DisclosureRiskWarning`;
        ``"refuse"``: raise :class:`~fedbench.errors.DisclosureRiskError` and
        release nothing; ``"off"``: no check (shapes are still recorded).
    """

    min_group_size: int = 5
    check_differencing: bool = True
    action: str = "warn"

    def __post_init__(self) -> None:
        if isinstance(self.min_group_size, bool) or not isinstance(self.min_group_size, int | np.integer) \
                or self.min_group_size < 1:
            raise ConfigurationError(f"ReleasePolicy: min_group_size must be an integer >= 1, "
                                     f"got {self.min_group_size!r}")
        if self.action not in ACTIONS:
            raise ConfigurationError(f"ReleasePolicy: action must be one of {ACTIONS}, got {self.action!r}")

    def warnings_for(self, history: Sequence[Release], request: Release) -> list[str]:
        """Warnings (messages) for ``request`` given earlier releases; empty if it is safe by this policy."""
        out: list[str] = []
        if not request.exact:
            return out  # DP releases: differencing gives noise, not the value
        if self.check_differencing:
            for old in history:
                if not old.exact or not old.same_quantity(request):
                    continue
                diff = old.parties ^ request.parties
                if len(diff) == 1 and (old.parties <= request.parties or request.parties <= old.parties):
                    (who,) = diff
                    out.append(
                        f"exact {request.statistic} of {_what(request)} over {sorted(request.parties)} and an "
                        f"earlier one over {sorted(old.parties)} differ only by party {who!r}: their difference "
                        f"reveals the contribution of party {who!r}; use epsilon= or release only one of them"
                    )
                    break
        if request.group_sizes_below is not None and request.group_sizes_below < self.min_group_size:
            out.append(self.small_group_message(request))
        return out

    def small_group_message(self, request: Release) -> str:
        """The small-group message: says that some group is small, never which one or how many."""
        return (f"exact {request.statistic} of {_what(request)} has at least one non-empty group with fewer "
                f"than {self.min_group_size} rows (min_group_size): small counts single out people")


def _what(r: Release) -> str:
    return repr(", ".join(sorted(r.columns))) if r.columns else repr(r.column)


_DEFAULT = ReleasePolicy()


def check_release(history: Sequence[Release], request: Release, policy: ReleasePolicy | None = None) -> list[str]:
    """Return the disclosure-risk warnings for ``request`` given the release ``history``.

    The function the workbench's own check (:class:`ReleaseGuard`) applies;
    it never raises and never sees values, only which parties, statistic and
    columns each release covers.

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


# -- the shape of a statistic's release, read from its (public) local function -----------------------
#: Local functions of :mod:`fedbench.statistics` -> the quantity they release.  Functions that
#: release the same quantity share a name (sum, count, mean and stats all release column sums).
_STATISTICS = {
    "local_column_sums": "column sums",
    "_row_count": "row count",
    "local_squared_deviations": "squared deviations",
    "local_complete_cases": "complete-case sums",
    "local_cross_deviations": "cross deviations",
    "local_group_counts": "group_counts",
    "local_histogram": "histogram",
    "local_dp_histogram": "histogram",
    "local_clamped_sum": "clamped sums",
    "_local_clamped_sums": "clamped sums",
    "run_local_function": "function sum",
}
#: Releases whose every entry is a count of rows (checked for small cells).
_GROUPED = ("group_counts", "histogram")


def release_shape(local_fn: Callable[..., Any], parties: Sequence[str], *, exact: bool) -> Release | None:
    """The shape of a statistic's release, or ``None`` when ``local_fn`` is not a statistic (e.g. training).

    Reads only public parameters of the local function (its name and the columns
    it was given), never data.
    """
    keywords: dict[str, Any] = {}
    fn: Any = local_fn
    while isinstance(fn, partial):
        keywords = {**fn.keywords, **keywords}
        # A wrapper that selects entries of another local function (``_only``) releases part of it.
        fn = keywords.pop("local_fn") if "local_fn" in keywords else fn.func
    statistic = _STATISTICS.get(getattr(fn, "__name__", ""))
    if statistic is None:
        return None
    cols: list[str] = []
    for key in ("columns", "by"):
        if keywords.get(key) is not None:
            cols += [str(c) for c in keywords[key]]
    if keywords.get("column") is not None:
        cols.append(str(keywords["column"]))
    if isinstance(keywords.get("bounds"), Mapping):
        cols += [str(c) for c in keywords["bounds"]]
    column = ", ".join(cols) if cols else None
    if "fn" in keywords:  # a user function: judged by its name (two different lambdas look alike)
        column = getattr(keywords["fn"], "__qualname__", type(keywords["fn"]).__name__)
    return Release(statistic, column, frozenset(parties), exact, columns=frozenset(cols))


#: How a transcript role is named in a refusal.
_ROLE_NAMES = {"keyholder": "key holder"}


class HeldReleaseChannel(Channel):
    """The channel of an exact release: the guard checks the parties actually summed, and holds grouped releases.

    Parameters
    ----------
    protocol, transcripts, keep_payloads
        As for :class:`~fedbench.transcript.Channel`.
    guard : ReleaseGuard
        The coordinator's guard, whose policy and history decide.
    shape : Release
        The release's shape as asked (its parties are those asked).
    hold : bool
        Hold the final message to the analyst until :meth:`release` (grouped statistics,
        whose cells the policy checks on the aggregate).
    """

    pending: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def __init__(self, protocol: str, transcripts: Any, *, keep_payloads: bool = False,
                 guard: ReleaseGuard, shape: Release, hold: bool) -> None:
        super().__init__(protocol, transcripts, keep_payloads=keep_payloads)
        self.guard = guard
        self.shape = shape
        self.hold = hold
        #: The party set checked by :meth:`survivors_known` (``None`` until a protocol reports one).
        self.checked: frozenset[str] | None = None

    def send(self, sender: str, receiver: str, kind: str, payload: bytes, *, encrypted: bool,
             seconds: float = 0.0) -> bytes:
        """Record a message; with ``hold``, the ``aggregate`` message to the analyst waits for :meth:`release`."""
        if self.hold and receiver == "analyst" and kind == "aggregate":
            self.pending = ((sender, receiver, kind, payload), {"encrypted": encrypted, "seconds": seconds})
            return bytes(payload)
        return super().send(sender, receiver, kind, payload, encrypted=encrypted, seconds=seconds)

    def survivors_known(self, survivors: Sequence[str]) -> None:
        """Check the release over the parties that will actually be summed, before it can be computed.

        A dropout can turn a release into the second half of a differencing pair
        (the same total over the parties asked minus one).  This runs before the
        unmask round: ``action="refuse"`` raises :class:`DisclosureRiskError` and
        the parties never unmask; ``"warn"`` warns before the release.

        Raises
        ------
        DisclosureRiskError
            The policy refuses the release over ``survivors``.
        """
        summed = frozenset(survivors)
        self.checked = summed
        if summed == self.shape.parties or self.guard.policy.action == "off":
            return
        # Differencing only: the small-group check of the shape was made before the run.
        request = replace(self.shape, parties=summed, group_sizes_below=None)
        messages = self.guard.policy.warnings_for(self.guard.history, request)
        self.guard._act([f"{m} (the pair arose because parties dropped out during the run)" for m in messages],
                        done="the parties did not unmask: nothing was released")

    def release(self) -> None:
        """Send (and record) the held message."""
        if self.pending is not None:
            args, kw = self.pending
            self.pending = None
            super().send(*args, **kw)


class ReleaseGuard:
    """The coordinator's release policy and the shapes of the releases made so far.

    Parameters
    ----------
    policy : ReleasePolicy, optional
        Default ``ReleasePolicy()``: warn, ``min_group_size=5``.
    """

    def __init__(self, policy: ReleasePolicy | None = None) -> None:
        self.policy = policy if policy is not None else ReleasePolicy()
        self.history: list[Release] = []

    def before(self, local_fn: Callable[..., Any], parties: Sequence[str], *, exact: bool) -> Release | None:
        """Check a release's shape before any data is read (differencing); warn, refuse, or pass."""
        shape = release_shape(local_fn, parties, exact=exact)
        if shape is not None and self.policy.action != "off":
            self._act(self.policy.warnings_for(self.history, shape))
        return shape

    def channel(self, channel: Channel, shape: Release | None) -> Channel:
        """The run's channel; for an exact release, one that checks dropouts and holds grouped releases."""
        if shape is None or not shape.exact or self.policy.action == "off":
            return channel
        return HeldReleaseChannel(channel.protocol, channel.transcripts, keep_payloads=channel.keep_payloads,
                                  guard=self, shape=shape, hold=shape.statistic in _GROUPED)

    def after(self, channel: Channel, shape: Release | None, value: Mapping[str, Any],
              summed: Sequence[str] | None = None) -> None:
        """The releasing role checks a grouped aggregate's cells, then releases it or withholds it.

        ``summed`` names the parties whose data is in the release when a protocol
        dropped some of those asked (masking): the release is recorded over them.
        A differencing pair that the dropout created was checked before the
        unmask round (:meth:`HeldReleaseChannel.survivors_known`); a protocol
        that did not report its survivors is caught here, after the release,
        where even ``action="refuse"`` can only warn.
        """
        if isinstance(channel, HeldReleaseChannel) and channel.hold and shape is not None:
            cells = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in value.values()])
            cells = np.rint(cells)
            if bool(np.any((cells > 0) & (cells < self.policy.min_group_size))):
                # The role that computed the aggregate (key holder, or the aggregator under masking,
                # threshold keys or multiparty CKKS) has seen it; it withholds it from the analyst.
                sender = channel.pending[0][0] if channel.pending is not None else "releasing role"
                role = _ROLE_NAMES.get(sender, sender)
                self._act([self.policy.small_group_message(shape)],
                          done=f"the {role} (which computed the aggregate) withheld the release from the analyst")
            channel.release()
        if shape is None:
            return
        if summed is not None and frozenset(summed) != shape.parties:
            shape = replace(shape, parties=frozenset(summed))
            checked = isinstance(channel, HeldReleaseChannel) and channel.checked == shape.parties
            if self.policy.action != "off" and not checked:
                for m in self.policy.warnings_for(self.history, shape):
                    warnings.warn(f"{m} (the pair arose because parties dropped out during the run; it was "
                                  "released before the dropout was known)", DisclosureRiskWarning,
                                  stacklevel=_user_stacklevel())
        self.history.append(shape)

    def _act(self, messages: list[str], *, done: str | None = None) -> None:
        if not messages:
            return
        if self.policy.action == "refuse":
            if done is None:
                done = "nothing was computed or sent"
            raise DisclosureRiskError(
                f"refused by the release policy: {'; '.join(messages)}. {done.capitalize()}; to release anyway "
                "set fed.release_policy = fb.attacks.ReleasePolicy(action='warn')"
            )
        for m in messages:
            warnings.warn(m, DisclosureRiskWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """Stack level of the first caller outside fedbench, so the warning points at the user's line."""
    level, frame = 2, sys._getframe(2)
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith("fedbench"):
        frame, level = frame.f_back, level + 1
    return level
