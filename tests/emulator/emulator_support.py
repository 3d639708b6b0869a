"""Constants shared by the emulator tests (a module of its own: `conftest` is not importable)."""

from shotgun_events.emulator import eventlog

SCRIPT = ("tests", "s3cret")
#: Every field the site writes on an event row (the id comes with every row anyway).
EVENT_FIELDS = list(eventlog.EVENT_FIELDS)
