"""The union of the parties' value sets, exchanged in the clear.

When categories are not declared up front (``group_counts`` without
``categories=``, an encoder with ``categories="auto"``), every party sends
the set of values it holds to the coordinator, which sends the union back.
This reveals which values each party holds (not how often); every message is
recorded in the transcript (``category-set`` from each party, ``category-union``
to each).  It is the one implementation of that exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .wire import dumps

if TYPE_CHECKING:
    import polars as pl

    from .coordinator import Coordinator
    from .party import Party
    from .transcript import Channel

__all__ = ["first_seen_union", "union_in_the_clear"]

H = TypeVar("H", bound=Hashable)


def first_seen_union(groups: Iterable[Iterable[H]]) -> list[H]:
    """Every item of ``groups``, once, in the order first seen."""
    seen: set[H] = set()
    out: list[H] = []
    for group in groups:
        for item in group:
            if item not in seen:
                seen.add(item)
                out.append(item)
    return out


def union_in_the_clear(
    coord: Coordinator,
    parties: Sequence[Party],
    local_fn: Callable[[pl.DataFrame], Sequence[Any]],
    merge: Callable[[list[Sequence[Any]]], list[Any]],
) -> tuple[list[Any], Channel]:
    """Each party sends ``local_fn(rows)`` (public values, JSON-able) in the clear; all receive ``merge`` of them.

    Parameters
    ----------
    coord : Coordinator
        Runs ``local_fn`` inside each party and opens the ``category_union`` channel.
    parties : sequence of Party
        Parties taking part.
    local_fn : callable
        Runs inside a party; returns the values it holds (a list, or a list per column).
    merge : callable
        The coordinator's union of the parties' lists (:func:`first_seen_union` and an order).

    Returns
    -------
    union : list
        What ``merge`` returned, also sent to every party.
    channel : Channel
        The run's channel (its messages: one value set per party, the union to each party).
    """
    channel = coord.channel("category_union")
    sets = coord.backend.compute(list(parties), local_fn)
    for p, values in zip(parties, sets, strict=True):
        channel.send(p.name, "coordinator", "category-set", dumps(values), encrypted=False)
    union = merge(sets)
    payload = dumps(union)
    for p in parties:
        channel.send("coordinator", p.name, "category-union", payload, encrypted=False)
    return union, channel
