"""Constants shared by the emulator tests (a module of its own: `conftest` is not importable)."""

SCRIPT = ("tests", "s3cret")
EVENT_FIELDS = [
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "project",
    "user",
    "created_at",
    "description",
    "session_uuid",
]
