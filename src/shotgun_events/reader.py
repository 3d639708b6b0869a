"""Page bookkeeping: which event ids a page of the site's event log covered, which are gaps.

Pure logic, no I/O. The site allocates an event id before the transaction that writes the
event commits, so a page can show id 12 before id 11 exists. Every id skipped inside a page
is a *gap*: it may still appear, and must then be delivered exactly once. This module must
never decide that an id is done when it has not been seen.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: More missing ids than this inside one page is a jump in the id sequence (a site restored
#: from a backup), not late transactions: tracking them all would cost memory and queries
#: for nothing. The jump is logged as an error and not tracked. A large batch transaction
#: (thousands of events committed together, late) stays well below it.
MAX_GAPS_PER_PAGE = 50_000

Event = Dict[str, Any]


@dataclass(frozen=True)
class Page:
    """What one read of the event log taught us.

    ``through`` is the highest id the page settles: every id in ``(after, through]`` was
    either returned, not wanted (filtered by type), or is listed in ``missing``.
    """

    after: int
    through: int
    events: List[Event] = field(default_factory=list)
    missing: Tuple[int, ...] = ()
    #: True when the site returned a full page: more events are probably waiting.
    full: bool = False
    #: Missing ids not tracked because there were too many of them (see MAX_GAPS_PER_PAGE).
    jumped: Optional[Tuple[int, int]] = None


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
    through = ordered[-1]["id"]
    missing = missing_ids(after, [e["id"] for e in ordered])
    jumped = None
    if len(missing) > max_gaps:
        jumped = (missing[0], missing[-1])
        missing = []
    return Page(
        after=after,
        through=through,
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
    missing = missing_ids(after, ordered_ids)
    jumped = None
    if len(missing) > max_gaps:
        jumped = (missing[0], missing[-1])
        missing = []
    return Page(
        after=after,
        through=ordered_ids[-1],
        events=sorted(events, key=lambda e: e["id"]),
        missing=tuple(missing),
        full=len(ordered_ids) >= limit,
        jumped=jumped,
    )


def missing_ids(after: int, present: Sequence[int]) -> List[int]:
    """Ids in ``(after, max(present)]`` that are not in ``present`` (sorted, unique)."""
    missing: List[int] = []
    expected = after + 1
    for event_id in present:
        if event_id > expected:
            missing.extend(range(expected, event_id))
        if event_id >= expected:
            expected = event_id + 1
    return missing


def ids_between(ordered_ids: Sequence[int], low: int, high: int) -> Sequence[int]:
    """The ids of a sorted sequence strictly greater than ``low`` and at most ``high``."""
    start = bisect.bisect_right(ordered_ids, low)
    end = bisect.bisect_right(ordered_ids, high)
    return ordered_ids[start:end]
