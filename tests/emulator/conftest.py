"""Fixtures for the site emulator's tests: a fresh site per test and clients connected to it."""

from __future__ import annotations

import pytest
from emulator_support import EVENT_FIELDS, SCRIPT

from shotgun_events.emulator import Emulator


@pytest.fixture
def emulator():
    """A started, empty, in-memory site with one script."""
    emu = Emulator(scripts=dict([SCRIPT])).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def sg(emulator):
    """The real shotgun_api3 client, connected as the test script."""
    return emulator.client()


@pytest.fixture
def project(sg):
    return sg.create("Project", {"name": "Big Buck"})


@pytest.fixture
def events_after(sg):
    """events_after(id, *conditions): events after `id`, oldest first, as the daemon reads them."""

    def read(event_id, *conditions):
        filters = [["id", "greater_than", event_id or 0], *conditions]
        order = [{"field_name": "id", "direction": "asc"}]
        return sg.find("EventLogEntry", filters, EVENT_FIELDS, order=order)

    return read
