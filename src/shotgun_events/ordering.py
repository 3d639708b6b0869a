"""Strict ordering: a plugin sees strictly increasing event ids, even across late events.

With ``[plugins] ordering = strict`` a plugin's later events are held back while an earlier
id is missing (its transaction has not committed yet), until that id arrives or its gap
deadline passes. Eager ordering (the default) delivers later events at once and a late one
when it comes.

Pure logic, no I/O and no threads: the worker feeds it what the site said and asks what to
do next. It must never hand out an id lower than one it handed out before, never give a wait
up before its deadline, and never hold more than ``limit`` events back: past that it is
*full* and refuses the events above the ones it holds (``through`` stops below them), so the
caller reads them again from the site once the wait ends, in order.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

Event = Dict[str, Any]

#: next_step() answers: deliver this event, or move the position to this id.
DELIVER = "deliver"
ADVANCE = "advance"


class StrictOrder:
    """A reorder buffer above a plugin's position."""

    def __init__(self, position: int, limit: int) -> None:
        self.position = position
        self.limit = max(1, limit)
        self.pending: Dict[int, Event] = {}
        self.waiting: Dict[int, float] = {}
        #: The highest id settled: every id up to here is held in ``pending``, waited for,
        #: handed out, or not wanted.
        self.through = position
        #: True while ``limit`` events are held back and later ones were refused: nothing
        #: above ``through`` is taken until the position reaches it (see module docstring).
        self.full = False
        #: Set when the buffer became full, for the caller to say so once (and clear).
        self.newly_full = False

    def add_batch(
        self, events: Sequence[Event], through: int, missing: Iterable[int], deadline: float
    ) -> None:
        """A page from the site: its events, the highest id it settles, the ids it lacked."""
        if self.full:  # only a re-read of what is held counts now
            events = [event for event in events if event["id"] <= self.through]
            missing = [gap for gap in missing if gap <= self.through]
            through = min(through, self.through)
        for event in events:
            if event["id"] > self.position:
                self.pending[event["id"]] = event
                self.waiting.pop(event["id"], None)  # a missing id that has arrived meanwhile
        for gap in missing:
            if gap > self.position and gap not in self.pending:
                self.waiting.setdefault(gap, deadline)
        self.through = max(self.through, through)
        self._refuse_past_limit()

    def _refuse_past_limit(self) -> None:
        """Hold at most ``limit`` events back (the ones above the lowest wait): later ones,
        and the waits among them, are forgotten and ``through`` stops below them."""
        if not self.waiting:
            return
        lowest_wait = min(self.waiting)
        held = [event_id for event_id in self.pending if event_id > lowest_wait]
        if len(held) <= self.limit:
            return
        held.sort()
        first_refused = held[self.limit]
        for event_id in held[self.limit :]:
            del self.pending[event_id]
        for gap in [gap for gap in self.waiting if gap > first_refused]:
            del self.waiting[gap]
        self.through = first_refused - 1
        self.newly_full = self.newly_full or not self.full
        self.full = True

    def add_late(self, events: Sequence[Event]) -> None:
        """Events that filled gaps: the ones this plugin was waiting for join the queue."""
        for event in events:
            if event["id"] > self.position and self.waiting.pop(event["id"], None) is not None:
                self.pending[event["id"]] = event

    def expire(self, ids: Iterable[int]) -> None:
        for gap in ids:
            self.waiting.pop(gap, None)

    def overdue(self, now: float) -> List[int]:
        """The missing ids whose deadline has passed (for the caller to ask for once more)."""
        return [gap for gap, deadline in self.waiting.items() if deadline <= now]

    def blocked_on(self) -> Optional[int]:
        """The missing id that holds events back, if any."""
        if not self.waiting:
            return None
        lowest = min(self.waiting)
        if self.pending and min(self.pending) < lowest:
            return None
        return lowest

    def next_step(self, now: Optional[float]) -> Optional[Tuple[str, Any]]:
        """What to do next: (DELIVER, event), (ADVANCE, id), or None (done, or blocked).

        A wait whose deadline is at or before ``now`` is given up; with ``now`` None, waits
        end only by ``add_batch``/``add_late`` (the id arrived) or ``expire``.
        """
        while True:
            lowest_wait = min(self.waiting) if self.waiting else None
            lowest_event = min(self.pending) if self.pending else None
            if lowest_wait is not None and (lowest_event is None or lowest_wait < lowest_event):
                if now is not None and self.waiting[lowest_wait] <= now:
                    del self.waiting[lowest_wait]  # timed out: stop holding back for it
                    continue
                if lowest_wait - 1 > self.position:
                    return self._advance(lowest_wait - 1)
                return None
            if lowest_event is not None:
                event = self.pending.pop(lowest_event)
                if lowest_event <= self.position:
                    continue  # handed out already: strictly increasing ids, each once
                self._move_to(lowest_event)
                return DELIVER, event
            if self.through > self.position:
                return self._advance(self.through)
            return None

    def _advance(self, position: int) -> Tuple[str, int]:
        self._move_to(position)
        return ADVANCE, position

    def _move_to(self, position: int) -> None:
        self.position = position
        if position >= self.through:
            self.full = False  # everything held is out: the caller reads on from here

    def reset(self, position: int) -> None:
        """Forget everything held (after a failure or a reload: it is read again)."""
        self.position = self.through = position
        self.pending.clear()
        self.waiting.clear()
        self.full = self.newly_full = False
