"""Page bookkeeping: which event ids a page of the site's event log covered, which are gaps.

Pure logic, no I/O. The site allocates an event id before the transaction that writes the
event commits, so a page can show id 12 before id 11 exists. Every id skipped inside a page
is a *gap*: it may still appear, and must then be delivered exactly once. This module must
never decide that an id is done when it has not been seen, but for the ids of a jump in the
id sequence that are far from every committed event (``gaps_and_jumps``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

#: More missing ids than this inside one page is a jump in the id sequence (a site restored
#: from a backup, a sequence moved on), not late transactions: tracking them all would cost
#: memory and queries for nothing. A large batch transaction (thousands of events committed
#: together, late) stays well below it.
MAX_GAPS_PER_PAGE = 50_000
#: In a jump, the ids this close to an event the site showed (or to where the page starts,
#: the previous head) stay gaps: a transaction that was running when the sequence jumped
#: holds ids next to the events committed around it. Only the ids farther than this from
#: every committed event are written off (an ERROR, see ``describe_jump``).
NEAR_COMMITTED = 1_000

Event = Dict[str, Any]
#: A range of consecutive ids, both ends included.
IdRange = Tuple[int, int]


@dataclass(frozen=True)
class Page:
    """What one read of the event log taught us.

    ``through`` is the highest id the page settles: every id in ``(after, through]`` was
    either returned, not wanted (filtered by type), listed in ``missing``, or written off
    as a jump (listed in ``jumped``).
    """

    after: int
    through: int
    events: List[Event] = field(default_factory=list)
    missing: Tuple[int, ...] = ()
    #: True when the site returned a full page: more events are probably waiting.
    full: bool = False
    #: Missing ids not tracked, far from every committed event (see MAX_GAPS_PER_PAGE).
    jumped: Tuple[IdRange, ...] = ()


def page_from_events(
    after: int,
    events: Sequence[Event],
    limit: int,
    max_gaps: int = MAX_GAPS_PER_PAGE,
) -> Page:
    """Build a Page from an unfiltered read of ids greater than ``after``, in id order."""
    if not events:
        return Page(after=after, through=after)
    ordered = list(events)
    if any(ordered[i]["id"] >= ordered[i + 1]["id"] for i in range(len(ordered) - 1)):
        ordered.sort(key=lambda e: e["id"])
    missing, jumped = gaps_and_jumps(after, [e["id"] for e in ordered], max_gaps)
    return Page(
        after=after,
        through=ordered[-1]["id"],
        events=ordered,
        missing=tuple(missing),
        full=len(ordered) >= limit,
        jumped=jumped,
    )


def page_from_listing(
    after: int,
    listing: Sequence[int],
    events: Sequence[Event],
    limit: int,
    max_gaps: int = MAX_GAPS_PER_PAGE,
) -> Page:
    """Build a Page from a type-filtered read.

    ``listing`` holds every id the site showed after ``after`` (an id-only read, any type),
    ``events`` the full rows of the ones some plugin wants. Gaps come from the listing, so
    an id skipped because of its type is never mistaken for a late event.
    """
    if not listing:
        return Page(after=after, through=after)
    ordered_ids = sorted(listing)
    missing, jumped = gaps_and_jumps(after, ordered_ids, max_gaps)
    return Page(
        after=after,
        through=ordered_ids[-1],
        events=sorted(events, key=lambda e: e["id"]),
        missing=tuple(missing),
        full=len(ordered_ids) >= limit,
        jumped=jumped,
    )


def gaps_and_jumps(
    after: int,
    present: Sequence[int],
    max_gaps: int = MAX_GAPS_PER_PAGE,
    near: int = NEAR_COMMITTED,
) -> Tuple[List[int], Tuple[IdRange, ...]]:
    """The ids in ``(after, max(present)]`` not in ``present``: (gaps, ranges written off).

    Up to ``max_gaps`` missing ids, every one is a gap. Past that the page holds a jump:
    only the ids within ``near`` of a committed id (an id of ``present``, or ``after``) stay
    gaps, fewer when even those are more than ``max_gaps``, nearest first; the rest are
    written off. Memory follows the gaps kept, never the size of the jump.
    """
    runs = missing_runs(after, present)
    if sum(last - first + 1 for first, last in runs) <= max_gaps:
        return [gap for first, last in runs for gap in range(first, last + 1)], ()
    window = _widest_window(runs, near, max_gaps)
    gaps: List[int] = []
    jumped: List[IdRange] = []
    for first, last in runs:
        if last - first + 1 <= 2 * window:
            gaps.extend(range(first, last + 1))
            continue
        gaps.extend(range(first, first + window))
        jumped.append((first + window, last - window))
        gaps.extend(range(last - window + 1, last + 1))
    return gaps, tuple(jumped)


def _widest_window(runs: Sequence[IdRange], near: int, budget: int) -> int:
    """The largest window (at most ``near``) such that the ids within it of either end of
    each run of missing ids are no more than ``budget``."""
    low, high = 0, near
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(last - first + 1, 2 * middle) for first, last in runs) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def missing_runs(after: int, present: Sequence[int]) -> List[IdRange]:
    """The runs of consecutive ids in ``(after, max(present)]`` not in ``present``."""
    runs: List[IdRange] = []
    expected = after + 1
    for event_id in present:
        if event_id > expected:
            runs.append((expected, event_id - 1))
        if event_id >= expected:
            expected = event_id + 1
    return runs


def describe_jump(jumped: Sequence[IdRange]) -> str:
    """The ERROR a jump is reported with (the engine's poll and a worker's own reads)."""
    ranges = ", ".join(f"{first} to {last}" for first, last in jumped)
    return (
        f"Event ids {ranges} are missing from the site; that is a jump in the id sequence, "
        "not late events: they are not waited for (the ids next to the events the site "
        "showed still are)."
    )


def ids_between(ordered_ids: Sequence[int], low: int, high: int) -> Sequence[int]:
    """The ids of a sorted sequence strictly greater than ``low`` and at most ``high``."""
    start = bisect.bisect_right(ordered_ids, low)
    end = bisect.bisect_right(ordered_ids, high)
    return ordered_ids[start:end]
