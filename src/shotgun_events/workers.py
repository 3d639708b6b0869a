"""One worker per plugin: its events in id order, on its own thread.

A worker owns one plugin's progress (position and gaps) and is the only code that changes
it. Events come from the engine's poll as batches in its inbox; when the inbox is full (the
plugin is slow or stuck) the engine stops feeding it, and the worker later reads the site on
its own from its position until it is back at the engine's head ("catching up"), so a slow
plugin never delays the others and never makes the engine hoard events.

It must never advance a position past an event the plugin has not finished, never deliver
an event twice to one plugin, and never let a plugin's exception escape its thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Deque, Dict, Iterable, List, Optional, Protocol, Sequence, Union

from .observe import EngineObserver
from .ordering import ADVANCE, StrictOrder
from .plugins import Callback, Plugin
from .process_worker import PluginDisabled, WorkerDied
from .reader import Event, Page, describe_jump, ids_between
from .retry import OutageLog, RetryInterrupted, call_with_retry
from .site import Site, Stopping, error_text
from .slots import Partial
from .state import PluginProgress, ProgressJournal

log = logging.getLogger("engine.workers")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Batch:
    """Part of one engine poll: the events this plugin may want, and what the poll settled."""

    events: Sequence[Event]
    through: int
    missing: Sequence[int]
    gap_deadline: float


@dataclass(frozen=True)
class LateEvents:
    """Events that filled gaps; each is delivered only to plugins still waiting for it."""

    events: Sequence[Event]


@dataclass(frozen=True)
class ExpiredGaps:
    """Gap ids the site never showed within the gap timeout: stop waiting for them."""

    ids: Sequence[int]


Message = Union[Batch, LateEvents, ExpiredGaps]


class WorkerHub(Protocol):
    """What a worker needs from the engine (engine.py implements it)."""

    head: int
    batch_size: int
    gap_timeout: float
    recheck_interval: float
    stop_event: threading.Event
    outage_log: OutageLog
    callback_timeout: Optional[float]

    def make_site(self) -> Site: ...

    def request_attach(self, worker: PluginWorker) -> None: ...

    def worker_detached(self, worker: PluginWorker) -> None: ...

    def plugin_reloaded(self, worker: PluginWorker) -> None: ...


@dataclass
class WorkerStats:
    """Counters for status and metrics; written by the worker thread only."""

    delivered: int = 0
    callback_runs: int = 0
    errors: int = 0
    last_error: Optional[str] = None
    last_event_id: Optional[int] = None
    current_event_id: Optional[int] = None
    #: The last event's created_at, as the site gave it (converted only when asked for).
    last_event_created_at: Any = None
    busy_since: Optional[float] = None
    busy_callback: Optional[str] = None
    #: The deadline of the callback running now (callback_timeout), and whether its overrun
    #: was already reported.
    busy_timeout: Optional[float] = None
    overrun_reported: bool = False
    catch_up_reads: int = 0


@dataclass
class OperatorRequest:
    """An operator's command for one plugin (retry, skip, reset), applied between events."""

    action: str
    user: str
    position: Optional[int] = None
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""

    def finish(self, ok: bool, message: str) -> None:
        self.ok, self.message = ok, message
        self.done.set()


# What running a callback on an event came to.
_DONE = "done"
_FAILED = "failed"
_INTERRUPTED = "interrupted"  # a stop or a reload came while waiting to retry
_DISABLED = "disabled"  # process isolation: the worker process died too often

ATTACHED = "attached"
CATCHING_UP = "catching up"
INACTIVE = "inactive"
LOADING = "loading"
STOPPED = "stopped"


class PluginWorker:
    """Runs one plugin on its own thread; see the module docstring for the life cycle."""

    def __init__(
        self,
        plugin: Plugin,
        progress: PluginProgress,
        journal: ProgressJournal,
        hub: WorkerHub,
        *,
        capacity: int,
        timing_log: Optional[logging.Logger] = None,
        observer: Optional[EngineObserver] = None,
        strict: bool = False,
    ) -> None:
        self.plugin = plugin
        self.progress = progress
        self.journal = journal
        self.hub = hub
        self.capacity = max(1, capacity)
        self.timing_log = timing_log
        self.observer = observer or EngineObserver()
        self.stats = WorkerStats()
        self.mode = LOADING
        self._cond = threading.Condition()
        self._inbox: Deque[Message] = deque()
        self._inbox_events = 0
        self._attached = False
        self._attach_answer: Optional[bool] = None
        self._awaiting_attach = False
        self._attach_ticket = 0
        self._reload_requested = False
        self._stop_requested = False
        self._operator_requests: Deque[OperatorRequest] = deque()
        #: ``ordering = strict``: the reorder buffer (ordering.py); None for eager ordering.
        self.strict = strict
        self._strict: Optional[StrictOrder] = None
        #: The event the plugin stopped on (stopOnError), for `skip`; None when it did not.
        self.failed_event_id: Optional[int] = None
        self._site: Optional[Site] = None
        self._recycle = getattr(plugin, "recycle_if_over_memory", None)
        #: Process isolation: each call's deadline kills its worker process (see overrun).
        self._deadline_kills = self._recycle is not None
        self._last_recheck = 0.0
        self.thread = threading.Thread(target=self._run, name=f"plugin-{plugin.name}", daemon=True)

    def __repr__(self) -> str:
        return f"<PluginWorker {self.plugin.name} {self.mode} at {self.progress.position}>"

    # ------------------------------------------------------------ engine side

    def start(self) -> None:
        self.thread.start()

    def offer(self, message: Message, wait: float = 0.0) -> bool:
        """Queue a message; False when the inbox stays full and the worker must read alone.

        ``wait`` lets the engine give a busy but quick worker a moment to make room, so
        that plugins that keep up share the engine's reads instead of each reading alone.
        """
        size = len(message.events) if isinstance(message, (Batch, LateEvents)) else 0
        with self._cond:
            if not self._attached:
                return False
            if self._inbox and self._inbox_events + size > self.capacity:
                self._cond.wait_for(
                    lambda: not self._inbox or self._inbox_events + size <= self.capacity,
                    timeout=wait,
                )
            if not self._attached:
                return False
            if self._inbox and self._inbox_events + size > self.capacity:
                self._attached = False
                self._cond.notify_all()
                return False
            if isinstance(message, Batch) and not message.events:
                self._queue_position_step(message)
                return True
            self._inbox.append(message)
            self._inbox_events += size
            self._cond.notify_all()
            return True

    def _queue_position_step(self, step: Batch) -> None:
        """A batch with no events for this plugin only moves its position: merge it into a
        step already waiting, and do not wake the worker for it (it looks within a second).
        With two hundred plugins, most of them are not woken by most pages."""
        last = self._inbox[-1] if self._inbox else None
        if isinstance(last, Batch) and not last.events:
            self._inbox[-1] = Batch(
                (),
                max(last.through, step.through),
                sorted({*last.missing, *step.missing}),  # a fill may overlap the engine's page
                max(last.gap_deadline, step.gap_deadline),
            )
        else:
            self._inbox.append(step)

    @property
    def awaiting_attach(self) -> bool:
        return self._awaiting_attach

    @property
    def attach_ticket(self) -> int:
        """The number of the worker's latest request to attach."""
        return self._attach_ticket

    def answer_attach(
        self, accepted: bool, fill: Iterable[Message] = (), ticket: Optional[int] = None
    ) -> bool:
        """The engine's answer to ``request_attach``; ``fill`` closes the distance to its head.

        False when the worker no longer waits for this answer (a reload or an operator's
        command came meanwhile, and maybe a new request): a fill read for a request it
        did not wait for could be filtered by callbacks that were replaced since.
        """
        with self._cond:
            if not self._awaiting_attach or ticket not in (None, self._attach_ticket):
                return False
            if accepted:
                for message in fill:
                    self._inbox.append(message)
                    if isinstance(message, (Batch, LateEvents)):
                        self._inbox_events += len(message.events)
                self._attached = True
            self._attach_answer = accepted
            self._awaiting_attach = False
            self._cond.notify_all()
            return accepted

    def request_reload(self) -> None:
        with self._cond:
            self._reload_requested = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()

    def submit(self, request: OperatorRequest) -> None:
        """Queue an operator's command; it is applied between two events."""
        with self._cond:
            self._operator_requests.append(request)
            self._cond.notify_all()

    def join(self, timeout: Optional[float]) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def is_attached(self) -> bool:
        return self._attached

    @property
    def queued_events(self) -> int:
        return self._inbox_events

    @property
    def held_back_events(self) -> int:
        """Strict ordering: how many events wait for a missing id (max_plugin_backlog at most)."""
        order = self._strict
        return len(order.pending) if order is not None else 0

    @property
    def held_back_for(self) -> Optional[int]:
        """Strict ordering: the missing id that later events wait for, if any."""
        order = self._strict
        try:
            return order.blocked_on() if order is not None else None
        except RuntimeError:  # changed by the worker while we looked: ask again later
            return None

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        try:
            self._reload()
            while not self._stop_requested:
                if self._operator_requests:
                    self._apply_operator_request(self._operator_requests.popleft())
                elif self._reload_requested:
                    self._reload()
                elif self.mode == INACTIVE:
                    self._wait_for_change()
                elif self.mode == CATCHING_UP:
                    self._catch_up()
                else:
                    self._work_inbox()
        except Stopping:
            pass
        except BaseException:
            log.exception("Worker of plugin %s stopped on an unexpected error", self.plugin.name)
        finally:
            self.mode = STOPPED
            self._detach()
            if self._site is not None:
                self._site.close()
            close = getattr(self.plugin, "close", None)
            if close is not None:  # process isolation: no worker process outlives us
                close()

    def _reload(self) -> None:
        """(Re)load the plugin, then read from its own position with the new callbacks.

        Queued batches were routed with the old callbacks' event types, so they are dropped
        and read again from the site: nothing the new code wants can be missed.
        """
        with self._cond:
            self._reload_requested = False
        self._detach()
        loaded = self.plugin.load()
        self.failed_event_id = None
        self._restart_strict_order()
        self.hub.plugin_reloaded(self)
        if loaded:
            self.plugin.logger.info(
                "Loaded plugin %s (%d callbacks); resuming after event %s.",
                self.plugin.path,
                len(self.plugin.callbacks),
                self.progress.position,
            )
            self.mode = CATCHING_UP
        else:
            self.mode = INACTIVE

    def _detach(self) -> None:
        with self._cond:
            was_attached = self._attached
            self._attached = False
            self._inbox.clear()
            self._inbox_events = 0
        if was_attached:
            self.hub.worker_detached(self)

    def _wait_for_change(self) -> None:
        with self._cond:
            while not self._interrupted():
                self._cond.wait()

    def _work_inbox(self) -> None:
        message = self._next_message()
        if message is not None:
            self._handle(message)
        elif self._strict is not None and self.mode == ATTACHED:
            self._drain_strict()  # a quiet second: a held-back event may be due now

    def _next_message(self) -> Optional[Message]:
        """The next inbox message, or None after a quiet second, an interruption or a detach."""
        with self._cond:
            if not self._inbox and self._attached and not self._interrupted():
                self._cond.wait(1.0)
            if self._interrupted():
                return None
            if not self._inbox:
                if not self._attached:
                    self.mode = CATCHING_UP  # the engine stopped feeding us: read alone
                return None
            message = self._inbox.popleft()
            if isinstance(message, (Batch, LateEvents)):
                self._inbox_events -= len(message.events)
                self._cond.notify_all()  # an engine waiting in offer() may go on
            return message

    def _interrupted(self) -> bool:
        return self._stop_requested or self._reload_requested or bool(self._operator_requests)

    def _handle(self, message: Message) -> None:
        if isinstance(message, Batch):
            self._apply_batch(
                message.events, message.through, message.missing, message.gap_deadline
            )
        elif isinstance(message, LateEvents):
            self._apply_late(message.events)
        else:
            self._expire(message.ids)

    # ------------------------------------------------------------ catching up

    def _catch_up(self) -> None:
        """Read the site from our own position until we reach the engine's head."""
        site = self._own_site()
        if time.monotonic() - self._last_recheck >= self.hub.recheck_interval:
            self._recheck_gaps(site)
        while self.mode == CATCHING_UP and not self._interrupted():
            if self._strict is not None and self._strict.full:
                self._wait_and_recheck(site)  # read nothing more until the missing id ends
                continue
            position = self.progress.position or 0
            if position >= self.hub.head and self._ask_to_attach():
                self.mode = ATTACHED
                return
            page = site.read_page(position, self.hub.batch_size, self.plugin.event_types)
            self.stats.catch_up_reads += 1
            self.observer.events_caught_up(self.plugin.name, len(page.events))
            self._apply_batch(
                page.events, page.through, page.missing, time.monotonic() + self.hub.gap_timeout
            )
            if page.jumped:
                self._log_jump(page)
            if self.mode != CATCHING_UP:
                return  # stopped on an error (INACTIVE): never ask to join the engine then
            if (self.progress.position or 0) <= position:
                # No progress: nothing newer on the site (the head is ahead of a plugin that
                # started ahead of the site), or strict ordering waits for a missing id. Ask
                # to join; else wait a poll interval and ask the site for the missing ids.
                if self._ask_to_attach():
                    self.mode = ATTACHED
                    return
                self._wait_and_recheck(site)

    def _wait_and_recheck(self, site: Site) -> None:
        """Wait a poll interval, then ask the site for the ids we wait for."""
        if self.hub.stop_event.wait(self.hub.recheck_interval):
            raise Stopping()
        self._recheck_gaps(site)

    def _ask_to_attach(self) -> bool:
        with self._cond:
            self._attach_answer = None
            self._awaiting_attach = True
            self._attach_ticket += 1
        self.hub.request_attach(self)
        with self._cond:
            while self._attach_answer is None and not self._interrupted():
                self._cond.wait(1.0)
            self._awaiting_attach = False
            return bool(self._attach_answer)

    def _own_site(self) -> Site:
        if self._site is None:
            self._site = self.hub.make_site()
        return self._site

    def _recheck_gaps(self, site: Site) -> None:
        """Ask the site for our own open gaps (the engine does it while we are attached).

        Expired gaps are asked for one last time before they are dropped: a plugin that was
        inactive or stopped past a gap's deadline still gets an event that arrived meanwhile.
        An id the site returned is never dropped: if the plugin stopped on it (or a command
        interrupted it), it stays open, to be delivered when the plugin goes on.
        """
        self._last_recheck = time.monotonic()
        asked = set(self.progress.gaps)
        if self._strict is not None:
            asked.update(self._strict.waiting)
        if not asked:
            return
        found = site.events_by_id(sorted(asked))
        self._apply_late(found)
        if self.mode != CATCHING_UP:
            return  # stopped on one of them: every gap stays as it is
        returned = {event["id"] for event in found}
        now = time.monotonic()
        expired = [gap for gap, deadline in self.progress.gaps.items() if deadline <= now]
        if self._strict is not None:
            expired += self._strict.overdue(now)
        expired = [gap for gap in expired if gap not in returned]
        if expired:
            self._expire(expired)

    def _log_jump(self, page: Page) -> None:
        self.plugin.logger.error(describe_jump(page.jumped))

    # ------------------------------------------------------------ progress

    def _apply_batch(
        self, events: Sequence[Event], through: int, missing: Sequence[int], gap_deadline: float
    ) -> None:
        """Deliver new events in order, recording gaps before the position passes them."""
        if self._strict is not None:
            self._strict.add_batch(events, through, missing, gap_deadline)
            self._drain_strict()
            return
        for event in events:
            event_id = event["id"]
            position = self.progress.position or 0
            if event_id <= position:
                continue
            if self._stop_requested:
                raise Stopping()
            if not self._deliver(event):
                self._advance(event_id - 1, missing, gap_deadline)
                return
            self._advance(event_id, missing, gap_deadline)
        if through > (self.progress.position or 0):
            self._advance(through, missing, gap_deadline)

    def _advance(self, new_position: int, missing: Sequence[int], gap_deadline: float) -> None:
        progress = self.progress
        with progress.lock:
            old = progress.position or 0
            if new_position <= old:
                return
            opened = list(ids_between(missing, old, new_position)) if missing else []
            for gap in opened:
                progress.gaps[gap] = gap_deadline
            progress.position = new_position
            self.journal.record(opened=opened)

    def _apply_late(self, events: Sequence[Event]) -> None:
        """Deliver events that filled our gaps, once each, in id order."""
        if self._strict is not None:
            self._strict.add_late(events)
            self._drain_strict()
            return
        for event in sorted(events, key=lambda e: e["id"]):
            event_id = event["id"]
            if event_id not in self.progress.gaps:
                continue
            if self._stop_requested:
                raise Stopping()
            if not self._deliver(event):
                return
            with self.progress.lock:
                self.progress.gaps.pop(event_id, None)
                self.journal.record(closed=[event_id])

    def _expire(self, ids: Iterable[int]) -> None:
        if self._strict is not None:
            ids = list(ids)
            self._strict.expire(ids)
            self._drain_strict()
        closed = [gap for gap in ids if gap in self.progress.gaps]
        if not closed:
            return
        with self.progress.lock:
            for gap in closed:
                self.progress.gaps.pop(gap, None)
            self.journal.record(closed=closed)
        self.plugin.logger.debug("Stopped waiting for event ids %s (gap timeout).", closed)

    def _restart_strict_order(self) -> None:
        """A new reorder buffer at the position (whatever it held is read again)."""
        if self.strict:
            self._strict = StrictOrder(self.progress.position or 0, self.capacity)

    def _drain_strict(self) -> None:
        """Strict ordering: deliver what is due, in strictly increasing ids (ordering.py)."""
        order = self._strict
        assert order is not None
        while True:
            step = order.next_step(self._strict_clock(order))
            if step is None:
                self._hold_back_alone_if_full(order)
                return
            kind, value = step
            if kind == ADVANCE:
                self._advance(value, (), 0.0)
                continue
            if self._stop_requested:
                raise Stopping()
            if not self._deliver(value):
                self._advance(value["id"] - 1, (), 0.0)
                order.reset(self.progress.position or 0)
                return
            self._advance(value["id"], (), 0.0)

    def _hold_back_alone_if_full(self, order: StrictOrder) -> None:
        """Strict ordering holds ``max_plugin_backlog`` events back: leave the engine (its
        later pages would not fit) and read them again from the site, in order, once the
        missing id arrives or its deadline passes (``_catch_up`` waits for that)."""
        if order.newly_full:
            order.newly_full = False
            self.plugin.logger.info(
                "Strict ordering: %d events wait for event id %s (max_plugin_backlog); the "
                "later ones are read again from the site once it arrives or its gap_timeout "
                "passes.",
                len(order.pending),
                order.blocked_on(),
            )
        if order.full and self.mode == ATTACHED:
            self._detach()
            self.mode = CATCHING_UP

    def _strict_clock(self, order: StrictOrder) -> Optional[float]:
        """The time against which strict waits are given up (None: they are not).

        Catching up, this worker asks the site for its missing ids and gives them up itself
        (``_recheck_gaps``). Attached, the engine does: it asks one last time at the deadline
        and sends LateEvents or ExpiredGaps, which may still be queued behind the batch in
        hand when a slow plugin reaches it; so queued news is taken first, and the worker's
        own clock (a safety net) gives the engine one more gap_timeout.
        """
        if self.mode != ATTACHED:
            return None
        now = time.monotonic() - self.hub.gap_timeout
        if order.overdue(now):
            self._take_queued_gap_news(order)
        return now

    def _take_queued_gap_news(self, order: StrictOrder) -> None:
        """Apply the LateEvents and ExpiredGaps messages waiting in the inbox to ``order``
        now (they stay queued; handled again later, they change nothing)."""
        with self._cond:
            queued = [m for m in self._inbox if isinstance(m, (LateEvents, ExpiredGaps))]
        for message in queued:
            if isinstance(message, LateEvents):
                order.add_late(message.events)
            else:
                order.expire(message.ids)

    # ------------------------------------------------------------ delivery

    def _deliver(self, event: Event) -> bool:
        """Run every callback that wants this event; False when the plugin must stop."""
        if self._recycle is not None:  # process isolation: a worker grown past its limit
            self._recycle()  # is replaced between events (a read of /proc)
        if not self.plugin.active:  # e.g. a recycled worker process could not load it
            self._stopped_before(event["id"])
            return False
        callbacks = self.plugin.callbacks_for(event)
        if not callbacks:
            return True
        own_copy = copy_event(event)
        event_id = event["id"]
        self.stats.current_event_id = event_id
        partial = self._partial_for(event_id)
        signature = self.plugin.callbacks_signature if len(callbacks) > 1 else 0
        done = partial.done if partial else 0
        if signature:
            self.journal.event_started(event_id, signature, done)
        try:
            for callback in callbacks:
                if partial is not None and partial.finished(callback.index):
                    self.plugin.logger.info(
                        "Not running %s on event %d again: it finished before the restart.",
                        callback.full_name,
                        event_id,
                    )
                    continue
                outcome = self._run_callback(callback, own_copy, event)
                if outcome is _DONE and signature:
                    self.journal.callback_done(event_id, callback.index, signature)
                    done |= 1 << callback.index
                if outcome is _INTERRUPTED:
                    if self._stop_requested:
                        raise Stopping()
                    self._read_again_after_interruption(event_id, signature, done)
                    return False
                if outcome is _DISABLED:  # its worker process kept dying (already logged)
                    self._stopped_before(event_id)
                    return False
                if outcome is _FAILED and callback.stop_on_error:
                    self._stop_plugin(callback, event)
                    return False
        finally:
            self.stats.current_event_id = None
        self.stats.delivered += 1
        self.observer.event_delivered(self.plugin.name)
        return True

    def _stopped_before(self, event_id: int) -> None:
        """The plugin went inactive (already logged): it waits, its position before this
        event, and is fed nothing more (a later batch would move the position past it)."""
        self.failed_event_id = event_id
        self.mode = INACTIVE
        self._detach()

    def _read_again_after_interruption(self, event_id: int, signature: int, done: int) -> None:
        """A reload or an operator's command cut a retry wait short: the event in hand and
        the rest of its batch were not delivered, so read them again from the position
        (the position stays before this event). Callbacks that already finished on it are
        not run again, as after a restart."""
        if signature:
            self.progress.partial = Partial(event_id, signature, done)
        self._detach()
        self.mode = CATCHING_UP

    def _timeout_for(self, callback: Callback) -> Optional[float]:
        """The callback's deadline: its own ``timeout=`` keyword, else ``callback_timeout``."""
        own = callback.options.get("timeout")
        return float(own) if own else self.hub.callback_timeout

    def overrun(self, now: float) -> Optional[str]:
        """If the running callback is past its deadline and not reported yet, say so (once).

        Called by the engine's housekeeping thread. In thread mode a callback cannot be
        stopped from outside: it is reported (log, alert, status, /healthz) and left to end.
        In process mode the deadline kills the call, which is the callback's failure and its
        one report; retries and restarts of one callback may add up past it, harmlessly.
        """
        stats = self.stats
        since, timeout, name = stats.busy_since, stats.busy_timeout, stats.busy_callback
        if self._deadline_kills or since is None or not timeout or stats.overrun_reported:
            return None
        if now - since <= timeout:
            return None
        stats.overrun_reported = True
        return (
            f"callback {name} has been running for {now - since:.0f} s on event "
            f"{stats.current_event_id}, past its {timeout:g} s deadline; it is stuck or slow"
        )

    def _partial_for(self, event_id: int) -> Optional[Partial]:
        """What a previous run finished of this event, if it was killed in the middle of it."""
        partial = self.progress.partial
        if partial is None or event_id < partial.event_id:
            return None  # e.g. a late event delivered first: keep it for its own event
        self.progress.partial = None  # only ever one event after a restart
        if partial.event_id != event_id or partial.signature != self.plugin.callbacks_signature:
            return None
        return partial

    def _run_callback(self, callback: Callback, event: Event, original: Event) -> object:
        """Run one callback on one event (with its retries); _DONE, _FAILED, _INTERRUPTED
        or _DISABLED. The hot path: one clock read before, one after."""
        stats = self.stats
        started = time.monotonic()
        stats.busy_since, stats.busy_callback = started, callback.full_name
        stats.busy_timeout = self._timeout_for(callback)
        stats.overrun_reported = False
        try:
            self._invoke(callback, event, original)
            error: Optional[BaseException] = None
        except (RetryInterrupted, PluginDisabled) as stopped:
            stats.busy_since = stats.busy_callback = None
            if self._stop_requested:
                raise Stopping() from None
            if self.plugin.active:
                return _INTERRUPTED
            # Its worker process kept dying (or overran) on this event: a failed run.
            stats.callback_runs += 1
            stats.errors += 1
            stats.last_error = f"{type(stopped).__name__}: {error_text(stopped)}"
            duration = time.monotonic() - started
            self.observer.callback_ran(self.plugin.name, callback.name, duration, True)
            return _DISABLED
        except Stopping:
            raise
        except BaseException as raised:  # noqa: BLE001 - SystemExit, KeyboardInterrupt too
            error = raised
        duration = time.monotonic() - started
        stats.busy_since = stats.busy_callback = None
        stats.callback_runs += 1
        stats.last_event_id = original["id"]
        stats.last_event_created_at = original.get("created_at")
        if self.timing_log is not None:
            self._log_timing(callback, event, time.time() - duration, duration, error)
        self.observer.callback_ran(self.plugin.name, callback.name, duration, error is not None)
        if error is None:
            return _DONE
        stats.errors += 1
        stats.last_error = f"{type(error).__name__}: {error_text(error)}"
        callback.logger.error(
            "Callback %s failed on event %s (%s)%s.",
            callback.full_name,
            original["id"],
            original.get("event_type"),
            f"; plugin {self.plugin.name} stops here (stopOnError)"
            if callback.stop_on_error
            else "",
            exc_info=(type(error), error, error.__traceback__),
        )
        return _FAILED

    def _invoke(self, callback: Callback, event: Event, original: Event) -> None:
        """Call the callback (with its retry policy); a worker process that died during the
        call is started again and the same callback runs again on the same event."""
        while True:
            try:
                if callback.retry_policy is None:
                    callback(event, timeout=self.stats.busy_timeout)
                else:
                    self._call_with_retries(callback, event, original)
                return
            except WorkerDied as died:
                if self._stop_requested:
                    raise Stopping() from None
                self.plugin.logger.warning(
                    "%s; running %s on event %s again.",
                    str(died).rstrip("."),
                    callback.full_name,
                    original["id"],
                )

    def _call_with_retries(self, callback: Callback, event: Event, original: Event) -> None:
        """Retry transient site errors per the callback's policy. The first try gets the
        plugin's copy of the event; each retry a fresh one, as a failed try may have
        changed its copy."""
        tries = iter([event])

        def call() -> None:
            # Each try has its own deadline: the wait between tries is not "stuck".
            self.stats.busy_since, self.stats.overrun_reported = time.monotonic(), False
            callback(next(tries, None) or copy_event(original), timeout=self.stats.busy_timeout)

        call_with_retry(
            call,
            callback.retry_policy,
            wait=self._wait_to_retry,
            outage_log=self.hub.outage_log,
            plugin=self.plugin.name,
            callback=callback.full_name,
            event_id=original.get("id"),
        )

    def _wait_to_retry(self, seconds: float) -> bool:
        """Wait before a retry; True when a stop or a reload cut the wait short."""
        deadline = time.monotonic() + seconds
        self.stats.busy_since = None  # waiting, not running: no deadline applies
        with self._cond:
            while not self._interrupted():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _stop_plugin(self, callback: Callback, event: Event) -> None:
        reason = (
            f"stopped on an error in {callback.full_name} at event {event.get('id')}; "
            "it resumes from that event when its file changes"
        )
        self.plugin.deactivate(reason)
        # A warning: the callback's error (one alert) already said the plugin stops.
        self.plugin.logger.warning("Plugin %s %s.", self.plugin.name, reason)
        self._stopped_before(event["id"])

    # ------------------------------------------------------------ operator commands

    def _apply_operator_request(self, request: OperatorRequest) -> None:
        """retry: run again from the position; skip: pass the failed event, then retry;
        reset: move the position (even backwards) and read on from there."""
        name = self.plugin.name
        if request.action == "skip":
            if self.failed_event_id is None:
                request.finish(False, f"plugin {name} is not stopped on a failed event")
                return
            skipped = self.failed_event_id
            if skipped <= (self.progress.position or 0):  # it failed as a late event (a gap)
                with self.progress.lock:
                    self.progress.gaps.pop(skipped, None)
                    self.journal.record(closed=[skipped])
                self.failed_event_id = None
            else:
                self._move_past(skipped)
            self.plugin.logger.warning(
                "Operator %s skipped event %d of plugin %s.", request.user, skipped, name
            )
            self._reload()
            request.finish(True, f"plugin {name}: skipped event {skipped}; {self._describe()}")
        elif request.action == "retry":
            if self.plugin.active and self.mode != INACTIVE:
                request.finish(False, f"plugin {name} is active; nothing to retry")
                return
            self.plugin.logger.warning("Operator %s retried plugin %s.", request.user, name)
            self._reload()
            request.finish(self.plugin.active, f"plugin {name}: {self._describe()}")
        elif request.action == "reset" and request.position is not None:
            before = self.progress.position
            if not self.journal.reset_to(request.position):
                request.finish(
                    False,
                    f"plugin {name}: the reset could not be saved ({self.journal.problem}); "
                    f"its position stays at {before}",
                )
                return
            self._forget_failed_event()
            self.plugin.logger.warning(
                "Operator %s reset plugin %s from event %s to event %d.",
                request.user,
                name,
                before,
                request.position,
            )
            if self.mode != INACTIVE:
                self._detach()
                self.mode = CATCHING_UP
            request.finish(
                True,
                f"plugin {name}: position moved from {before} to {request.position}; "
                f"{self._describe()}",
            )
        else:
            request.finish(False, f"unknown command {request.action!r}")

    def _move_past(self, event_id: int) -> None:
        """Move the position forward to ``event_id`` (an operator's skip)."""
        with self.progress.lock:
            if event_id > (self.progress.position or 0):
                self.progress.position = event_id
            self.journal.record()
        self._forget_failed_event()

    def _forget_failed_event(self) -> None:
        self.failed_event_id = None
        self._restart_strict_order()

    def _describe(self) -> str:
        if not self.plugin.active:
            return f"it is inactive ({self.plugin.inactive_reason})"
        return f"it resumes after event {self.progress.position}"

    def _log_timing(
        self,
        callback: Callback,
        event: Event,
        started_wall: float,
        duration: float,
        error: Optional[BaseException],
    ) -> None:
        created = _timestamp(event.get("created_at"))
        delay = f"{started_wall - created:.3f}" if created is not None else "-"
        assert self.timing_log is not None
        self.timing_log.info(
            "event=%s callback=%s start=%s duration=%.6f delay=%s error=%s",
            event.get("id"),
            callback.full_name,
            datetime.fromtimestamp(started_wall).isoformat(timespec="milliseconds"),
            duration,
            delay,
            type(error).__name__ if error is not None else "-",
        )


def _timestamp(value: Any) -> Optional[float]:
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def copy_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """A private copy of an event for one plugin, so one plugin's edits never reach another.

    Events are JSON-shaped (dicts, lists, scalars, datetimes), so this is several times
    cheaper than ``copy.deepcopy``; it runs once per plugin per event.
    """
    copied = event.copy()
    for key, value in event.items():
        kind = type(value)
        if kind is dict:
            copied[key] = copy_event(value)
        elif kind is list:
            copied[key] = _copy_list(value)
    return copied


def _copy_list(values: List[Any]) -> List[Any]:
    return [
        copy_event(item)
        if type(item) is dict
        else (_copy_list(item) if type(item) is list else item)
        for item in values
    ]
