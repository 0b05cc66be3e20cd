"""Release policy: warn before an exact release that enables a differencing or small-group attack.

The policy lives in :mod:`fedbench.disclosure` (the coordinator applies it to every statistic);
it is re-exported here, next to the attacks it defends against.
"""

from __future__ import annotations

from ..disclosure import ACTIONS, DisclosureRiskWarning, Release, ReleasePolicy, check_release

__all__ = ["ACTIONS", "DisclosureRiskWarning", "Release", "ReleasePolicy", "check_release"]
