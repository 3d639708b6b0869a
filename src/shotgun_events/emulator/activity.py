"""The social side of a site: following, note threads and the activity stream.

- ``follow``/``unfollow``/``followers``/``following``: which people follow which entities,
  answered in the shapes the client documents (``{"followed": True, "user", "entity"}``,
  followers as links with ``status`` and ``valid``, followed entities as type and id).
  Follows live in memory only.
- ``note_thread_contents`` (`note_thread_read`): a Note, its Replies and its Attachments,
  oldest first, each with its standard fields (Note: content, created_at, created_by;
  Reply: content, created_at, user with its ``image``; Attachment: created_at, created_by)
  plus the `entity_fields` asked for.
- ``activity_stream`` (`activity_stream_read`): built from the event log, newest first:
  the entity's creation (``update_type`` "create"), its field changes ("update") and the
  creation of the Notes linked to it. A site's stream has more kinds of update.
This module must never write to the store.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from .errors import ApiError
from .eventlog import EVENT_TYPE
from .query import render_entity
from .values import Links, link_key

LinkKey = Tuple[str, int]
DEFAULT_STREAM_LIMIT = 25


class Follows:
    """Who follows what, and the four API methods over it."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self._lock = threading.Lock()
        self._follows: Set[Tuple[LinkKey, LinkKey]] = set()

    def follow(self, params: Any) -> Dict[str, Any]:
        user, entity = self._pair(params, "follow")
        with self._lock:
            self._follows.add((user, entity))
        return {"followed": True, "user": _link(user), "entity": _link(entity)}

    def unfollow(self, params: Any) -> Dict[str, Any]:
        user, entity = self._pair(params, "unfollow")
        with self._lock:
            self._follows.discard((user, entity))
        return {"unfollowed": True, "user": _link(user), "entity": _link(entity)}

    def followers(self, params: Any) -> List[Dict[str, Any]]:
        entity = self._existing(
            params.get("entity") if isinstance(params, dict) else None, "followers", "entity"
        )
        with self._lock:
            users = sorted(user for user, followed in self._follows if followed == entity)
        found = []
        for user in users:
            row = self.links.store.active_row(*user)
            if row is not None:
                found.append(
                    {
                        **_link(user),
                        "name": self.links.name_of(user[0], row),
                        "status": row.get("sg_status_list"),
                        "valid": "valid",
                    }
                )
        return found

    def following(self, params: Any) -> List[Dict[str, Any]]:
        if not isinstance(params, dict):
            raise ApiError("API following() expects a 'user'")
        user = self._existing(params.get("user"), "following", "user")
        project = link_key(params.get("project")) if params.get("project") else None
        entity_type = params.get("entity_type")
        with self._lock:
            followed = sorted(entity for follower, entity in self._follows if follower == user)
        found = []
        for key in followed:
            row = self.links.store.active_row(*key)
            if row is None or (entity_type and key[0] != entity_type):
                continue
            if project is not None and _project_of(key, row) != project:
                continue
            found.append(_link(key))
        return found

    def _pair(self, params: Any, method: str) -> Tuple[LinkKey, LinkKey]:
        if not isinstance(params, dict):
            raise ApiError(f"API {method}() expects a 'user' and an 'entity'")
        user = self._existing(params.get("user"), method, "user")
        if user[0] != "HumanUser":
            raise ApiError(f"API {method}() user must be a HumanUser, got a {user[0]}")
        return user, self._existing(params.get("entity"), method, "entity")

    def _existing(self, value: Any, method: str, what: str) -> LinkKey:
        key = link_key(value)
        if key is None:
            raise ApiError(f"API {method}() {what} must be an entity dict like {{'type', 'id'}}")
        if self.links.schema.entity(key[0]) is None or self.links.store.active_row(*key) is None:
            raise ApiError(f"API {method}() {key[0]} {key[1]} does not exist or is retired")
        return key


def note_thread(links: Links, params: Any) -> List[Dict[str, Any]]:
    """A Note and its Replies and Attachments, oldest first (``note_thread_contents``)."""
    if not isinstance(params, dict) or not isinstance(params.get("note_id"), int):
        raise ApiError("API note_thread_contents() expects an integer 'note_id'")
    extra = params.get("entity_fields") or {}
    if not isinstance(extra, dict):
        raise ApiError("API note_thread_contents() entity_fields must be an object")
    note_id = params["note_id"]
    with links.store.lock:
        note = links.store.active_row("Note", note_id)
        if note is None:
            raise ApiError(f"API note_thread_contents() Note {note_id} does not exist")
        thread = [_item(links, "Note", note_id, ["content", "created_at", "created_by"], extra)]
        parts = []
        for key in links.keys(note.get("replies")):
            parts.append(_item(links, "Reply", key[1], ["content", "created_at", "user"], extra))
        for key in links.keys(note.get("attachments")):
            parts.append(_item(links, "Attachment", key[1], ["created_at", "created_by"], extra))
        for item in parts:
            if item.get("user"):
                user_row = links.store.row(item["user"]["type"], item["user"]["id"]) or {}
                item["user"]["image"] = user_row.get("image")
    order = {"Reply": 0, "Attachment": 1}  # within one second: a reply, then its files
    parts.sort(key=lambda item: (item.get("created_at") or "", order[item["type"]], item["id"]))
    return thread + parts


def _item(
    links: Links, entity_type: str, entity_id: int, fields: List[str], extra: Dict[str, Any]
) -> Dict[str, Any]:
    wanted = fields + [f for f in extra.get(entity_type) or [] if f not in fields]
    return render_entity(links, entity_type, entity_id, wanted)


def activity_stream(links: Links, params: Any) -> Dict[str, Any]:
    """The entity's activity, newest first, from the event log (``activity_stream``)."""
    if not isinstance(params, dict) or not isinstance(params.get("id"), int):
        raise ApiError("API activity_stream() expects an entity 'type' and an integer 'id'")
    entity_type, entity_id = params.get("type"), params["id"]
    if links.schema.entity(entity_type) is None:
        raise ApiError(f"API activity_stream() unknown entity type {entity_type!r}")
    if links.store.active_row(entity_type, entity_id) is None:
        raise ApiError(f"API activity_stream() {entity_type} {entity_id} does not exist")
    limit = params.get("limit") or DEFAULT_STREAM_LIMIT
    min_id, max_id = params.get("min_id"), params.get("max_id")
    extra = params.get("entity_fields") or {}
    target = (entity_type, entity_id)
    updates: List[Dict[str, Any]] = []
    with links.store.lock:
        table = links.store.table(EVENT_TYPE)
        for event_id in reversed(table.ids):
            if len(updates) >= limit or (min_id is not None and event_id < min_id):
                break
            if max_id is not None and event_id > max_id:
                continue
            update = _update(links, target, event_id, table.rows[event_id], extra)
            if update is not None:
                updates.append(update)
    ids = [update["id"] for update in updates]
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "earliest_update_id": min(ids) if ids else None,
        "latest_update_id": max(ids) if ids else None,
        "updates": updates,
    }


def _update(
    links: Links, target: LinkKey, event_id: int, event: Dict[str, Any], extra: Dict[str, Any]
) -> Optional[Dict[str, Any]]:
    """One activity update for an event, or None when the stream does not show it."""
    meta = event.get("meta") or {}
    subject = link_key(event.get("entity"))
    kind = str(event.get("event_type") or "").rsplit("_", 1)[-1]
    if subject is None or meta.get("in_create") or "actual_attribute_changed" in meta:
        return None
    if subject == target and kind in ("New", "Change"):
        update_type = "create" if kind == "New" else "update"
    elif subject[0] == "Note" and kind == "New" and _note_links(links, subject, target):
        update_type = "create"
    else:
        return None
    row = links.store.active_row(*subject)
    if row is None:
        return None
    primary = render_entity(links, subject[0], subject[1], list(extra.get(subject[0]) or []))
    primary["name"] = links.name_of(subject[0], row)
    primary["status"] = row.get("sg_status_list")
    return {
        "id": event_id,
        "update_type": update_type,
        "meta": meta,
        "created_at": event.get("created_at"),
        "created_by": _user(links, event.get("user")),
        "primary_entity": primary,
        "read": False,
    }


def _note_links(links: Links, note: LinkKey, target: LinkKey) -> bool:
    row = links.store.active_row(*note) or {}
    return target in links.keys(row.get("note_links")) or target in links.keys(row.get("tasks"))


def _user(links: Links, user: Any) -> Optional[Dict[str, Any]]:
    key = link_key(user)
    row = links.store.row(*key) if key else None
    if key is None or row is None:
        return None
    return {
        **_link(key),
        "name": links.name_of(key[0], row),
        "status": row.get("sg_status_list"),
        "image": row.get("image"),
    }


def _project_of(key: LinkKey, row: Dict[str, Any]) -> Optional[LinkKey]:
    if key[0] == "Project":
        return key
    return link_key(row.get("project"))


def _link(key: LinkKey) -> Dict[str, Any]:
    return {"type": key[0], "id": key[1]}
