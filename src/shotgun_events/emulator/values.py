"""Field values in and out: validating what a caller writes, rendering what a caller reads.

A site stores links as (type, id) and shows them as ``{"type", "id", "name"}``, hides links
to retired entities, and speaks dates as ``YYYY-MM-DD`` and datetimes as UTC
``YYYY-MM-DDTHH:MM:SSZ`` (the only form `shotgun_api3` turns back into datetimes). This
module is where those rules live, so the store keeps plain JSON values and the wire always
gets the exact shapes the client expects. It must never read or write the store's tables
itself except through `Links` lookups.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, List, Optional, Tuple

from .errors import ApiError
from .schema import NUMERIC_TYPES, Field, Schema
from .store import Store

LinkKey = Tuple[str, int]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_TEXT_TYPES = frozenset({"text", "uuid", "color", "entity_type", "password", "image"})


def utc_now() -> str:
    """The current time in the wire format a site uses for `created_at`."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def link_key(value: Any) -> Optional[LinkKey]:
    """(type, id) of an entity dict as a caller sends it, or None if it is not a link."""
    if isinstance(value, dict) and "type" in value and "id" in value:
        try:
            return str(value["type"]), int(value["id"])
        except (TypeError, ValueError):
            return None
    return None


class Links:
    """Turns stored links into what a reader sees, against the live store."""

    def __init__(self, schema: Schema, store: Store) -> None:
        self.schema = schema
        self.store = store

    def name_of(self, entity_type: str, row: Dict[str, Any]) -> Any:
        """A link's `name`: the entity's name field (an Attachment's is its file's name)."""
        entity = self.schema.entity(entity_type)
        name = row.get(entity.name_field) if entity else None
        return name.get("name") if isinstance(name, dict) else name

    def render(self, link: Any) -> Optional[Dict[str, Any]]:
        """``{"type", "id", "name"}`` for a link to a live entity; None when retired or gone."""
        if not link:
            return None
        entity_type = link["type"]
        row = self.store.active_row(entity_type, link["id"])
        if row is None:
            return None
        return {"type": entity_type, "id": link["id"], "name": self.name_of(entity_type, row)}

    def render_many(self, links: Any) -> List[Dict[str, Any]]:
        rendered = (self.render(link) for link in links or ())
        return [link for link in rendered if link is not None]

    def key(self, link: Any) -> Optional[LinkKey]:
        """(type, id) of a stored link whose entity is live, else None."""
        if not link or self.store.active_row(link["type"], link["id"]) is None:
            return None
        return link["type"], link["id"]

    def keys(self, links: Any) -> List[LinkKey]:
        found = (self.key(link) for link in links or ())
        return [key for key in found if key is not None]


def render(field: Field, value: Any, links: Links) -> Any:
    """A stored value as the wire shows it."""
    data_type = field.data_type
    if data_type == "entity":
        return links.render(value)
    if data_type == "multi_entity":
        return links.render_many(value)
    if value is None:
        return field.empty_value()
    return value


def normalize(field: Field, value: Any, links: Links, method: str) -> Any:
    """Validate a value a caller writes and return what the store keeps.

    Raises ApiError with a message naming the field, like a site's validation does.
    """
    data_type = field.data_type
    if data_type == "entity":
        return _normalize_link(field, value, links, method)
    if data_type == "multi_entity":
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise _bad_value(field, value, method, "a list of entity dicts")
        stored: List[Dict[str, Any]] = []
        for item in value:
            link = _normalize_link(field, item, links, method)
            if link is not None and link not in stored:
                stored.append(link)
        return stored
    if value is None:
        return False if data_type == "checkbox" else None
    checker = _CHECKERS.get(data_type)
    if checker is not None:
        value = checker(field, value, method)
    return value


def _normalize_link(field: Field, value: Any, links: Links, method: str) -> Any:
    if value is None:
        return None
    key = link_key(value)
    if key is None:
        raise _bad_value(field, value, method, 'an entity dict like {"type": "Shot", "id": 1}')
    entity_type, entity_id = key
    if field.valid_types and entity_type not in field.valid_types:
        raise ApiError(
            "API {}() {}.{} cannot link to a {} (valid types: {})".format(
                method, field.entity_type, field.name, entity_type, ", ".join(field.valid_types)
            )
        )
    if links.store.active_row(entity_type, entity_id) is None:
        raise ApiError(
            f"API {method}() {field.entity_type}.{field.name}: {entity_type} {entity_id} "
            "does not exist or is retired"
        )
    return {"type": entity_type, "id": entity_id}


def _bad_value(field: Field, value: Any, method: str, expected: str) -> ApiError:
    return ApiError(
        f"API {method}() {field.entity_type}.{field.name} is a {field.data_type} field "
        f"and expects {expected}, got {value!r}"
    )


def _check_text(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, str):
        raise _bad_value(field, value, method, "a string")
    return value


def _check_int(field: Field, value: Any, method: str) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_value(field, value, method, "an integer")
    return value


def _check_float(field: Field, value: Any, method: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_value(field, value, method, "a number")
    return value


def _check_bool(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, bool):
        raise _bad_value(field, value, method, "true or false")
    return value


def _check_date(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, str) or not _DATE.match(value):
        raise _bad_value(field, value, method, "a date (YYYY-MM-DD)")
    return value


def _check_date_time(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise _bad_value(field, value, method, "a UTC datetime (YYYY-MM-DDTHH:MM:SSZ)")
    return value


def _check_choice(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, str):
        raise _bad_value(field, value, method, "a string")
    if field.valid_values and value not in field.valid_values:
        raise ApiError(
            "API {}() {}.{}: {!r} is not a valid value (valid: {})".format(
                method, field.entity_type, field.name, value, ", ".join(field.valid_values)
            )
        )
    return value


def _check_tags(field: Field, value: Any, method: str) -> Any:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise _bad_value(field, value, method, "a list of strings")
    return value


_CHECKERS: Dict[str, Any] = {
    "checkbox": _check_bool,
    "float": _check_float,
    "date": _check_date,
    "date_time": _check_date_time,
    "status_list": _check_choice,
    "list": _check_choice,
    "tag_list": _check_tags,
}
_CHECKERS.update({name: _check_text for name in _TEXT_TYPES})
_CHECKERS.update({name: _check_int for name in NUMERIC_TYPES if name != "float"})
