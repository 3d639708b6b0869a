"""Talking to the site for the engine: the poll query, gap re-queries, retry with backoff.

Every read the engine (or a worker catching up) makes goes through ``Site``. A read never
fails for the caller: site outages, maintenance pages, resets, timeouts and auth failures are
retried forever with capped exponential backoff, and reported once per outage, not once per
retry. The only way out of a retry loop is a stop request (``Stopping``). This module must
never skip or invent an event: it returns what the site said, or keeps asking.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, TypeVar

import shotgun_api3

from .reader import Page, page_from_events, page_from_listing

#: The fields the daemon and classic plugins read; nothing more is fetched.
EVENT_FIELDS = [
    "id",
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "user",
    "project",
    "session_uuid",
    "created_at",
]
ID_ASCENDING = [{"field_name": "id", "direction": "asc"}]
ID_DESCENDING = [{"field_name": "id", "direction": "desc"}]
#: The site pages at 500 records; an ``id in [...]`` query is split to stay within it.
MAX_IDS_PER_QUERY = 500

T = TypeVar("T")


class Stopping(Exception):  # noqa: N818 - a signal, not an error
    """Raised out of a retry wait when the daemon is asked to stop."""


class OutageMonitor:
    """Counts failed site requests across every connection and reports each outage once.

    An outage starts with the first failure after a success. After ``alert_after``
    consecutive failures it is logged once at ERROR (which emails); when a request succeeds
    again, its end is logged with its length. Shared by the engine and every worker, so an
    outage seen by ten connections is still one alert.
    """

    def __init__(self, logger: logging.Logger, alert_after: int) -> None:
        self._logger = logger
        self._alert_after = max(1, alert_after)
        self._lock = threading.Lock()
        self.failures = 0
        self.started: Optional[float] = None
        self.alerted = False
        self.last_error: Optional[str] = None
        self.last_success: Optional[float] = None

    @property
    def in_outage(self) -> bool:
        return self.started is not None

    def failed(self, what: str, error: BaseException) -> None:
        description = describe_error(error)
        with self._lock:
            self.failures += 1
            self.last_error = description
            if self.started is None:
                self.started = time.monotonic()
            failures = self.failures
            alert = failures >= self._alert_after and not self.alerted
            if alert:
                self.alerted = True
        if alert:
            self._logger.error(
                "The site is unreachable (%s): %d failed requests since %.0f s ago. "
                "Retrying with backoff; no event is lost meanwhile. Last error: %s",
                what,
                failures,
                time.monotonic() - (self.started or time.monotonic()),
                description,
            )
        else:
            self._logger.warning(
                "Site request failed (%s, attempt %d): %s", what, failures, description
            )

    def succeeded(self) -> None:
        now = time.monotonic()
        if self.started is None:
            self.last_success = now
            return
        with self._lock:
            started, failures, alerted = self.started, self.failures, self.alerted
            self.started, self.failures, self.alerted = None, 0, False
            self.last_success = now
        if started is None:
            return
        level = logging.WARNING if alerted else logging.INFO
        self._logger.log(
            level,
            "The site answers again after %.1f s and %d failed requests.",
            now - started,
            failures,
        )


def describe_error(error: BaseException) -> str:
    """One line about a failed request, without anything secret in it."""
    if isinstance(error, shotgun_api3.ProtocolError):
        return f"HTTP {error.errcode} {error.errmsg}"
    text = error_text(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def error_text(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the exception's own ``__str__`` fails: a plugin's
    exception class may be broken, and reporting it must never fail in turn."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - any failure of a plugin's __str__
        return f"<{type(error).__name__}: its str() failed>"


class EngineShotgun(shotgun_api3.Shotgun):
    """The official client with a faster inbound decoder, for the engine's own reads.

    The stock client turns every date-time string of a response into a datetime with
    ``strptime`` and a time-zone conversion: for a page of events that is most of the
    client's time, and a page holds few distinct timestamps (events come in bursts). This
    subclass converts each distinct string once per page, through the client's own
    conversion, so the results are identical (a test compares them with the stock client).
    Plugins get the unmodified client.
    """

    #: The stock client retries 502/504 itself, sleeping in between; the engine's own loop
    #: retries every failure with backoff and counts it towards the outage report.
    MAX_ATTEMPTS = 1

    def _transform_inbound(self, data: T) -> T:
        if not self.config.convert_datetimes_to_utc:
            return super()._transform_inbound(data)
        stock = super()._transform_inbound
        pattern = self._DATE_TIME_PATTERN
        converted: Dict[str, Any] = {}

        def convert(text: str) -> Any:
            if text not in converted:
                converted[text] = stock(text)
            return converted[text]

        def visit(container: Any) -> None:
            # In place: the response was just decoded and belongs to nobody else yet.
            items = container.items() if type(container) is dict else enumerate(container)
            for key, value in items:
                kind = type(value)
                if kind is str:
                    if len(value) == 20 and pattern.match(value):
                        container[key] = convert(value)
                elif kind is dict or kind is list:
                    visit(value)
                elif kind is tuple:
                    container[key] = stock(value)

        if isinstance(data, (dict, list)):
            visit(data)
            return data
        return stock(data)


class Backoff:
    """Capped exponential backoff with jitter: 1 s, 2 s, 4 s ... up to ``cap`` seconds."""

    def __init__(self, cap: float, first: float = 1.0, jitter: float = 0.2) -> None:
        self.cap = max(cap, 0.01)
        self.first = min(first, self.cap)
        self.jitter = jitter
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.attempt = 0


class Site:
    """One connection to the site with the engine's credentials, used by one thread."""

    def __init__(
        self,
        server: str,
        script_name: str,
        script_key: str,
        *,
        proxy_server: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        retry_cap: float = 60.0,
        outage: OutageMonitor,
        stop_event: threading.Event,
        on_request: Callable[[str, float, bool], None] = lambda what, seconds, ok: None,
    ) -> None:
        self._server = server
        self._script_name = script_name
        self._script_key = script_key
        self._proxy_server = proxy_server
        self._timeout = timeout
        self._retry_cap = retry_cap
        self._outage = outage
        self._stop_event = stop_event
        self._on_request = on_request
        self._sg: Optional[shotgun_api3.Shotgun] = None

    def _connection(self) -> shotgun_api3.Shotgun:
        if self._sg is None:
            sg = EngineShotgun(
                self._server,
                self._script_name,
                self._script_key,
                http_proxy=self._proxy_server or None,
                connect=False,
            )
            sg.config.timeout_secs = self._timeout
            # Our own loop retries every failure with backoff; the client's quick retries
            # would only hide the first failures from the outage report.
            sg.config.max_rpc_attempts = 1
            self._sg = sg
        return self._sg

    def _call(self, what: str, request: Callable[[shotgun_api3.Shotgun], T]) -> T:
        """Run one request, retrying until it works or the daemon stops."""
        backoff = Backoff(self._retry_cap)
        while True:
            if self._stop_event.is_set():
                raise Stopping()
            started = time.monotonic()
            try:
                result = request(self._connection())
            except Exception as error:  # noqa: BLE001 - every failure is retried, see module doc
                self._on_request(what, time.monotonic() - started, False)
                self._drop_connection()
                self._outage.failed(what, error)
                if self._stop_event.wait(backoff.next_delay()):
                    raise Stopping() from None
                continue
            self._on_request(what, time.monotonic() - started, True)
            self._outage.succeeded()
            return result

    def _drop_connection(self) -> None:
        """Forget the connection after a failure, so the next attempt starts clean."""
        sg, self._sg = self._sg, None
        if sg is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                sg.close()

    def close(self) -> None:
        self._drop_connection()

    # ----------------------------------------------------------------- queries

    def latest_event_id(self) -> int:
        """The newest event id on the site (0 when the event log is empty)."""
        found = self._call(
            "latest event id",
            lambda sg: sg.find_one("EventLogEntry", [], ["id"], order=ID_DESCENDING),
        )
        return int(found["id"]) if found else 0

    def read_page(
        self, after: int, limit: int, event_types: Optional[FrozenSet[str]] = None
    ) -> Page:
        """The next events after ``after``, in id order, with the gaps inside the page.

        With ``event_types`` (the types some plugin can match), the site is asked for
        every id and type first (a few bytes per event), then for the full rows of the
        wanted ones only; gaps are computed from the complete id listing.
        """
        if event_types is None:
            events = self._call(
                "poll",
                lambda sg: sg.find(
                    "EventLogEntry",
                    [["id", "greater_than", after]],
                    EVENT_FIELDS,
                    order=ID_ASCENDING,
                    limit=limit,
                ),
            )
            return page_from_events(after, events, limit)
        listing = self._call(
            "poll",
            lambda sg: sg.find(
                "EventLogEntry",
                [["id", "greater_than", after]],
                ["id", "event_type"],
                order=ID_ASCENDING,
                limit=limit,
            ),
        )
        wanted = [row["id"] for row in listing if row["event_type"] in event_types]
        events = self.events_by_id(wanted, what="poll rows") if wanted else []
        return page_from_listing(after, [row["id"] for row in listing], events, limit)

    def events_by_id(self, ids: Iterable[int], what: str = "gap re-query") -> List[Dict[str, Any]]:
        """The events among ``ids`` that the site shows now (late events), in id order."""
        wanted = sorted(set(ids))
        found: List[Dict[str, Any]] = []
        for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
            chunk = wanted[start : start + MAX_IDS_PER_QUERY]
            found.extend(
                self._call(
                    what,
                    lambda sg, chunk=chunk: sg.find(
                        "EventLogEntry",
                        [["id", "in", chunk]],
                        EVENT_FIELDS,
                        order=ID_ASCENDING,
                    ),
                )
            )
        found.sort(key=lambda e: e["id"])
        return found
