"""The `sg_site` pytest fixture: a fresh local site and a connected client per test.

Installed as a pytest plugin (entry point `shotgun_events_emulator`), so any project that
has shotgun-events installed can write ``def test_my_plugin(sg_site): ...`` and run it
offline. `SiteFixture` also fetches events and runs one plugin callback against an event
the way the daemon calls it. This module must never start anything at import time.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from . import eventlog
from .emulator import Emulator

#: Every field the site writes on an event row, with its id.
EVENT_FIELDS = ["id", *eventlog.EVENT_FIELDS]


class SiteFixture:
    """What `sg_site` yields: the running site, its URL, and a client connected as a script."""

    def __init__(self, emulator: Emulator, script_name: str, script_key: str) -> None:
        self.emulator = emulator
        self.url = emulator.url
        self.script_name = script_name
        self.script_key = script_key
        self.sg = emulator.client(script_name)

    def events(
        self, after_id: Optional[int] = None, event_types: Optional[List[str]] = None
    ) -> List[Dict[str, Any]]:
        """EventLogEntry rows (all the fields the daemon reads), oldest first."""
        filters: List[Any] = []
        if after_id is not None:
            filters.append(["id", "greater_than", after_id])
        if event_types:
            filters.append(["event_type", "in", list(event_types)])
        order = [{"field_name": "id", "direction": "asc"}]
        return self.sg.find("EventLogEntry", filters, EVENT_FIELDS, order=order)

    def last_event(self) -> Optional[Dict[str, Any]]:
        """The newest event, or None on an empty site."""
        order = [{"field_name": "id", "direction": "desc"}]
        return self.sg.find_one("EventLogEntry", [], EVENT_FIELDS, order=order)

    def run_callback(
        self,
        callback: Callable[..., Any],
        event: Dict[str, Any],
        args: Any = None,
        sg: Any = None,
        logger: Optional[logging.Logger] = None,
    ) -> Any:
        """Call `callback(sg, logger, event, args)` as the daemon would; returns its result."""
        name = getattr(callback, "__name__", type(callback).__name__)
        logger = logger or logging.getLogger(f"plugin.test.{name}")
        return callback(sg or self.sg, logger, event, args)


@pytest.fixture
def sg_site() -> Iterator[SiteFixture]:
    """A fresh emulated site (in memory) and a connected client; stopped after the test."""
    script_name, script_key = "plugin_tests", secrets.token_hex(16)
    emulator = Emulator(scripts={script_name: script_key}).start()
    try:
        yield SiteFixture(emulator, script_name, script_key)
    finally:
        emulator.stop()
