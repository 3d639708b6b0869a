"""Site faults on demand: maintenance windows, HTTP errors, dropped connections, slow replies.

Tests of the daemon's retry and backoff need a site that fails in the ways real ones do.
`Faults` holds what the next API requests should suffer; the server asks `next_fault()` once
per API request (never for control requests) and acts on the answer. Note that
`shotgun_api3` itself retries 502/504 up to three times and httplib2 silently retries a
request whose keep-alive connection was dropped once, so a client call only fails after
three 502s or two drops in a row. This module must never touch sockets or site data.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Optional


class Fault:
    """What the server does to one request: `delay` first, then `kind` (or answer normally)."""

    __slots__ = ("code", "delay", "kind", "retry_after")

    def __init__(
        self, kind: Optional[str], code: int = 0, delay: float = 0.0, retry_after: float = 0.0
    ) -> None:
        self.kind = kind  # None (answer normally), "maintenance", "http_error" or "drop"
        self.code = code
        self.delay = delay
        self.retry_after = retry_after


class Faults:
    """The fault plan of one emulator; safe to change from any thread at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maintenance_until = 0.0
        self._errors: Deque[int] = deque()
        self._drops = 0
        self._delays: Deque[float] = deque()

    def maintenance(self, seconds: float) -> None:
        """Answer every API request with HTTP 503 for `seconds` (0 ends it now)."""
        with self._lock:
            self._maintenance_until = time.monotonic() + max(0.0, float(seconds))

    def http_error(self, code: int = 502, count: int = 1) -> None:
        """Answer the next `count` API requests with HTTP `code` (500, 502, 504, ...)."""
        code = int(code)
        if not 400 <= code <= 599:
            raise ValueError(f"http_error code must be 4xx or 5xx, got {code!r}")
        with self._lock:
            self._errors.extend([code] * _count(count))

    def drop_connections(self, count: int = 1) -> None:
        """Close the connection without answering the next `count` API requests."""
        with self._lock:
            self._drops += _count(count)

    def slow(self, seconds: float, count: int = 1) -> None:
        """Delay the next `count` API responses by `seconds` each."""
        with self._lock:
            self._delays.extend([max(0.0, float(seconds))] * _count(count))

    def clear(self) -> None:
        """Forget every planned fault and end any maintenance window."""
        with self._lock:
            self._maintenance_until = 0.0
            self._errors.clear()
            self._drops = 0
            self._delays.clear()

    def next_fault(self) -> Fault:
        """Consume and return what the current API request should suffer."""
        with self._lock:
            delay = self._delays.popleft() if self._delays else 0.0
            remaining = self._maintenance_until - time.monotonic()
            if remaining > 0:
                return Fault("maintenance", 503, delay, retry_after=remaining)
            if self._drops:
                self._drops -= 1
                return Fault("drop", 0, delay)
            if self._errors:
                return Fault("http_error", self._errors.popleft(), delay)
            return Fault(None, 0, delay)

    def status(self) -> Dict[str, Any]:
        """What is still planned (for the control API and for debugging a test)."""
        with self._lock:
            return {
                "maintenance_seconds_left": max(0.0, self._maintenance_until - time.monotonic()),
                "http_errors": list(self._errors),
                "drops": self._drops,
                "delays": list(self._delays),
            }


def _count(count: Any) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    return count
