"""The site's EventLogEntry table: the rows a site writes for every change, and test controls.

Plugins depend on these rows looking exactly like a real site's (see DESIGN.md, "What a
site writes to EventLogEntry"): `Shotgun_<Type>_New|Change|Retirement|Revival` with the
`meta` keys real plugins read, the acting user, the caller's `session_uuid`, and strictly
increasing ids. For tests it also inserts events in bulk (a 100k backlog in well under a
second), inserts single non-entity events, and hands out ids that commit late or never
(`Reservation`), which is how a real site produces gaps. This module must never decide
what changed; the API layer tells it.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any, Dict, List, Optional, Tuple

from .errors import ApiError
from .reverse import LinkChange, LinkKey
from .schema import Field, Schema
from .store import Row, Store, Transaction
from .values import Links, link_key, utc_now

EVENT_TYPE = "EventLogEntry"
#: The fields of an event row besides its id: the one list the emulator and its tests use.
EVENT_FIELDS = (
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "project",
    "user",
    "created_at",
    "description",
    "session_uuid",
)
_LINK_FIELDS = ("entity", "project", "user")


class Actor:
    """Who makes a change: the link written to `user`, and the caller's session."""

    __slots__ = ("name", "session_uuid", "sudo_actual_user", "user")

    def __init__(
        self,
        user: Optional[Dict[str, Any]],
        name: str = "",
        session_uuid: Optional[str] = None,
        sudo_actual_user: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.user = user
        self.name = name
        self.session_uuid = session_uuid
        self.sudo_actual_user = sudo_actual_user


class EventLog:
    """Writes event rows into the store's EventLogEntry table."""

    def __init__(self, schema: Schema, store: Store, links: Links) -> None:
        self.schema = schema
        self.store = store
        self.links = links

    # --- what a site writes for changes -------------------------------------------------

    def entity_created(
        self, tx: Transaction, actor: Actor, entity_type: str, entity_id: int, row: Row
    ) -> None:
        """`Shotgun_<Type>_New`; the API layer then logs each field set (`field_created`)."""
        name = self.links.name_of(entity_type, row)
        meta = {"type": "new_entity", "entity_type": entity_type, "entity_id": entity_id}
        description = f"{actor.name} created new {entity_type} {name}"
        self._write(tx, actor, entity_type, entity_id, row, "New", None, meta, description)

    def field_created(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        entity_id: int,
        row: Row,
        field: Field,
    ) -> Optional[int]:
        """The `Change` with `in_create` for one field a create set; None when it set nothing
        (setting a field to nothing on create changes nothing)."""
        value = row.get(field.name)
        if value is None or value == []:
            return None
        if field.data_type == "multi_entity":
            change = self.multi_change_meta(field, [], value or [])
        else:
            change = self.change_meta(field, None, value)
        change["in_create"] = True
        return self.attribute_changed(tx, actor, entity_type, entity_id, row, field, change)

    def change_meta(self, field: Field, old: Any, new: Any) -> Dict[str, Any]:
        """`attribute_change` meta with old/new values as a reader would see them."""
        meta = _attribute_change_meta(field)
        meta["old_value"] = self._meta_value(field, old)
        meta["new_value"] = self._meta_value(field, new)
        return meta

    def multi_change_meta(self, field: Field, old: List[Any], new: List[Any]) -> Dict[str, Any]:
        """`attribute_change` meta for a multi-entity field: `added` and `removed` links."""
        meta = _attribute_change_meta(field)
        meta["added"] = [self._named(link) for link in new if link not in old]
        meta["removed"] = [self._named(link) for link in old if link not in new]
        return meta

    def attribute_changed(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        entity_id: int,
        row: Row,
        field: Field,
        meta: Dict[str, Any],
    ) -> int:
        """One `Shotgun_<Type>_Change` for a field the caller changed; returns its id."""
        meta["entity_id"] = entity_id
        description = self._change_description(actor, entity_type, row, field, meta)
        return self._write(
            tx, actor, entity_type, entity_id, row, "Change", field.name, meta, description
        )

    def reverse_changed(
        self,
        tx: Transaction,
        actor: Actor,
        change: LinkChange,
        cause: LinkChange,
        cause_event_id: int,
        in_create: bool,
    ) -> None:
        """The `Change` a site logs on the other side of a link: on the linked entity, for
        its reverse field, when `cause` (a field the caller set) changed it.

        As a site writes it, `meta` mixes both sides: `attribute_name` is the reverse field,
        but `entity_type`, `entity_id` and `field_data_type` are those of the entity and
        field the caller changed, which `actual_attribute_changed` names ("Task.entity"),
        and `original_event_log_entry_id` is the id of that change's event. A multi-entity
        reverse field has `added`/`removed`; a single-entity one `old_value`/`new_value`.
        """
        row = self.store.row(change.entity_type, change.entity_id)
        if row is None or self.store.is_retired(change.entity_type, change.entity_id):
            return  # nobody reads a retired entity's fields: the site logs nothing for it
        field = change.field
        meta: Dict[str, Any] = {
            "type": "attribute_change",
            "attribute_name": field.name,
            "entity_type": cause.entity_type,
            "entity_id": cause.entity_id,
            "field_data_type": cause.field.data_type,
        }
        if field.data_type == "multi_entity":
            meta["added"] = [self._named(_link(key)) for key in change.added]
            meta["removed"] = [self._named(_link(key)) for key in change.removed]
        else:
            meta["old_value"] = self._meta_value(field, change.old)
            meta["new_value"] = self._meta_value(field, row.get(field.name))
        meta["actual_attribute_changed"] = f"{cause.entity_type}.{cause.field.name}"
        meta["original_event_log_entry_id"] = cause_event_id
        if in_create:
            meta["in_create"] = True
        description = self._change_description(actor, change.entity_type, row, field, meta)
        self._write(
            tx,
            actor,
            change.entity_type,
            change.entity_id,
            row,
            "Change",
            field.name,
            meta,
            description,
        )

    def _change_description(
        self, actor: Actor, entity_type: str, row: Row, field: Field, meta: Dict[str, Any]
    ) -> str:
        name = self.links.name_of(entity_type, row)
        if "added" in meta:
            detail = f"added {len(meta['added'])}, removed {len(meta['removed'])}"
        else:
            detail = "from {} to {}".format(
                _describe(meta.get("old_value")),
                _describe(meta.get("new_value")),
            )
        return f'{actor.name} changed "{field.display_name}" {detail} on {entity_type} {name}'

    def entity_retired(
        self, tx: Transaction, actor: Actor, entity_type: str, entity_id: int, row: Row
    ) -> None:
        """`Shotgun_<Type>_Retirement`, then the `Change` of `retirement_date` a site logs
        with it (Autodesk's own sg-jira-bridge watches that change to see a TimeLog go)."""
        when = retirement_date()
        self._lifecycle(tx, actor, entity_type, entity_id, row, "Retirement", when)
        meta = {
            "type": "attribute_change",
            "attribute_name": "retirement_date",
            "entity_type": entity_type,
            "entity_id": entity_id,
            "old_value": None,
            "new_value": when,
        }
        name = self.links.name_of(entity_type, row)
        description = f'{actor.name} changed "Date Retired" to "{when}" on {entity_type} {name}'
        self._write(
            tx, actor, entity_type, entity_id, row, "Change", "retirement_date", meta, description
        )

    def entity_revived(
        self, tx: Transaction, actor: Actor, entity_type: str, entity_id: int, row: Row
    ) -> None:
        self._lifecycle(tx, actor, entity_type, entity_id, row, "Revival", None)

    def _lifecycle(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        entity_id: int,
        row: Row,
        kind: str,
        retired_at: Optional[str],
    ) -> None:
        name = self.links.name_of(entity_type, row)
        meta = {
            "type": "entity_retirement" if kind == "Retirement" else "entity_revival",
            "entity_type": entity_type,
            "entity_id": entity_id,
            "id": entity_id,
            "class_name": entity_type,
            "display_name": name,
        }
        if retired_at is not None:
            meta["retirement_date"] = retired_at
        verb = "retired" if kind == "Retirement" else "revived"
        description = f"{actor.name} {verb} {entity_type} {name}"
        self._write(tx, actor, entity_type, entity_id, row, kind, None, meta, description)

    def _write(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        entity_id: int,
        row: Row,
        kind: str,
        attribute_name: Optional[str],
        meta: Dict[str, Any],
        description: str,
    ) -> int:
        if actor.sudo_actual_user is not None:
            meta["sudo_actual_user"] = actor.sudo_actual_user
        project = {"type": "Project", "id": entity_id} if entity_type == "Project" else None
        event = {
            "event_type": f"Shotgun_{entity_type}_{kind}",
            "attribute_name": attribute_name,
            "meta": meta,
            "entity": {"type": entity_type, "id": entity_id},
            "project": project or row.get("project"),
            "user": actor.user,
            "created_at": utc_now(),
            "description": description,
            "session_uuid": actor.session_uuid,
        }
        event_id = self.store.allocate_id(EVENT_TYPE)
        tx.insert(EVENT_TYPE, event_id, event)
        return event_id

    def _meta_value(self, field: Field, value: Any) -> Any:
        if field.data_type == "entity":
            return self._named(value) if value else None
        return value

    def _named(self, link: Dict[str, Any]) -> Dict[str, Any]:
        """A link with its name now; meta keeps it even after the entity is retired."""
        row = self.store.row(link["type"], link["id"]) or {}
        return {
            "type": link["type"],
            "id": link["id"],
            "name": self.links.name_of(link["type"], row),
        }

    # --- test controls -------------------------------------------------------------------

    def latest_id(self) -> Optional[int]:
        """The newest committed event id, or None on an empty site."""
        ids = self.store.table(EVENT_TYPE).ids
        return ids[-1] if ids else None

    def insert_event(self, event_type: str, **fields: Any) -> int:
        """Commit one event with the given fields now (non-entity and custom types too)."""
        row = event_row(event_type, fields)
        with self.store.transaction() as tx:
            event_id = self.store.allocate_id(EVENT_TYPE)
            tx.insert(EVENT_TYPE, event_id, row)
        return event_id

    def insert_events(
        self,
        count: int,
        event_type: str = "Shotgun_Shot_Change",
        attribute_name: Optional[str] = "sg_status_list",
        **overrides: Any,
    ) -> Tuple[int, int]:
        """Commit `count` events at once with consecutive ids; returns (first, last) id.

        All rows share one field dict (events never change after they are written), so a
        million of them cost little more than their ids.
        """
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        fields = dict(overrides)
        fields.setdefault("attribute_name", attribute_name)
        fields.setdefault("meta", self._bulk_meta(event_type, attribute_name, fields))
        row = event_row(event_type, fields)
        with self.store.lock:
            first = self.store.allocate_ids(EVENT_TYPE, count)
            self.store.bulk_add(EVENT_TYPE, [(i, row) for i in range(first, first + count)])
        return first, first + count - 1

    def _bulk_meta(
        self, event_type: str, attribute_name: Optional[str], fields: Dict[str, Any]
    ) -> Dict[str, Any]:
        parts = event_type.split("_")
        entity = link_key(fields.get("entity"))
        if len(parts) != 3 or parts[0] != "Shotgun" or parts[2] != "Change" or not attribute_name:
            return {}
        field = self.schema.field(parts[1], attribute_name)
        is_status = attribute_name == "sg_status_list"
        return {
            "type": "attribute_change",
            "attribute_name": attribute_name,
            "entity_type": parts[1],
            "entity_id": entity[1] if entity else None,
            "field_data_type": field.data_type if field else "text",
            "old_value": "wtg" if is_status else None,
            "new_value": "ip" if is_status else None,
        }

    def reserve(self) -> Reservation:
        """Allocate an id now that stays invisible until committed (a late transaction)."""
        return Reservation(self, self.store.allocate_id(EVENT_TYPE), utc_now())


class Reservation:
    """An event id taken by a transaction that has not committed yet.

    Until `commit()` no query sees the id, so readers see a gap; `commit()` makes it appear
    with its original (lower) id. Never committing leaves a permanent gap.
    """

    def __init__(self, log: EventLog, event_id: int, created_at: str) -> None:
        self.log = log
        self.id = event_id
        self.created_at = created_at
        self._lock = threading.Lock()
        self.committed = False

    def commit(self, event_type: str = "Shotgun_Shot_Change", **fields: Any) -> int:
        with self._lock:
            if self.committed:
                raise ValueError(f"event {self.id} is already committed")
            fields.setdefault("created_at", self.created_at)
            row = event_row(event_type, fields)
            with self.log.store.transaction() as tx:
                tx.insert(EVENT_TYPE, self.id, row)
            self.committed = True
        return self.id


def retirement_date() -> str:
    """Now, as a site writes a retirement date in `meta`: ``2015-07-13 22:32:35 UTC`` (a
    plain string the client leaves alone, unlike the wire's ``...T...Z`` datetimes)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _attribute_change_meta(field: Field) -> Dict[str, Any]:
    """The keys every `attribute_change` meta starts with, in the order a site writes them."""
    return {
        "type": "attribute_change",
        "attribute_name": field.name,
        "entity_type": field.entity_type,
        "entity_id": None,  # set by attribute_changed()
        "field_data_type": field.data_type,
    }


def event_row(event_type: str, fields: Dict[str, Any]) -> Row:
    """A stored event row from caller-given fields; links are reduced to type and id."""
    if not isinstance(event_type, str) or not event_type:
        raise ApiError("an event needs an event_type string")
    unknown = set(fields) - set(EVENT_FIELDS)
    if unknown:
        raise ApiError(
            "unknown EventLogEntry field(s): {} (known: {})".format(
                ", ".join(sorted(unknown)), ", ".join(EVENT_FIELDS)
            )
        )
    row: Row = {name: fields.get(name) for name in EVENT_FIELDS}
    row["event_type"] = event_type
    row["created_at"] = row["created_at"] or utc_now()
    if row["meta"] is None:
        row["meta"] = {}
    for name in _LINK_FIELDS:
        value = row[name]
        if value is not None:
            key = link_key(value)
            if key is None:
                raise ApiError(f"EventLogEntry.{name} must be an entity dict, got {value!r}")
            row[name] = {"type": key[0], "id": key[1]}
    return row


def _link(key: LinkKey) -> Dict[str, Any]:
    return {"type": key[0], "id": key[1]}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return '"{}"'.format(value.get("name"))
    return '"%s"' % ("" if value is None else value)
