"""The site's API methods as `shotgun_api3` calls them: auth, then read/create/update/...

`Site.call(method_name, params)` is what one ``POST /api3/json`` body turns into. It checks
the script name and key (or `sudo_as_login`), dispatches to the method, and returns the
`results` value or raises ApiError, which the server answers in the client's fault shape.
Every write runs in one store transaction and logs its events there, so a `batch` is
atomic and its events appear together: a link change is followed to the reverse fields
(reverse.py), a url field's value becomes an Attachment (files.py). Reads, summaries,
search and the social calls are answered by their own modules. This module must never
speak HTTP.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import activity, query, search, summaries
from .errors import ApiError, AuthenticationError
from .eventlog import EVENT_TYPE, Actor, EventLog
from .files import ATTACHMENT, SiteFiles, file_value
from .reverse import LinkChange, ReverseLinks, changed_links, link_keys
from .schema import Field, Schema
from .store import Row, Store, Transaction
from .values import Links, link_key, normalize, utc_now

SITE_VERSION = [8, 50, 0]
#: Methods a site has (the client calls them) that the emulator does not emulate: each is
#: answered with a fault saying so.
NOT_EMULATED = (
    "export_page",
    "nav_expand",
    "nav_search",
    "schema_entity_create",
    "schema_entity_delete",
    "schema_entity_update",
    "schema_field_create",
    "schema_field_delete",
    "schema_field_update",
    "update_project_last_accessed_by_current_user",
    "user_subscriptions_create",
    "user_subscriptions_read",
    "work_schedule_read",
    "work_schedule_update",
)
#: Site preferences `preferences_read` knows (the ones the client's own tests read).
PREFERENCES = {"date_component_order": "month_day", "support_local_storage": True}
_MULTI_MODES = ("set", "add", "remove")
_SITE_STAMPS = ("updated_at", "updated_by")


class Site:
    """One emulated site: schema, store, event log and the API methods over them."""

    def __init__(self, schema: Schema, store: Store) -> None:
        self.schema = schema
        self.store = store
        self.links = Links(schema, store)
        self.events = EventLog(schema, store, self.links)
        self.reverse = ReverseLinks(schema, store)
        self.files = SiteFiles(self)
        self.follows = activity.Follows(self.links)
        self._scripts: Dict[str, str] = {}
        self._script_users: Dict[str, Dict[str, Any]] = {}
        self._scripts_lock = threading.Lock()
        self._methods: Dict[str, Callable[[Actor, Any], Any]] = {
            "read": self._read,
            "create": self._create,
            "update": self._update,
            "delete": self._delete,
            "revive": self._revive,
            "batch": self._batch,
            "summarize": self._summarize,
            "schema_read": self._schema_read,
            "schema_entity_read": self._schema_entity_read,
            "schema_field_read": self._schema_field_read,
            "get_session_token": lambda actor, args: self.files.session_token(actor.name),
            "query_display_name_cache": lambda actor, args: search.text_search(self.links, args),
            "note_thread_contents": lambda actor, args: activity.note_thread(self.links, args),
            "activity_stream": lambda actor, args: activity.activity_stream(self.links, args),
            "follow": lambda actor, args: self.follows.follow(args),
            "unfollow": lambda actor, args: self.follows.unfollow(args),
            "followers": lambda actor, args: self.follows.followers(args),
            "following": lambda actor, args: self.follows.following(args),
            "preferences_read": self._preferences_read,
        }
        self.system = Actor(None, "Site")

    # --- scripts and users -------------------------------------------------------------

    def set_script(self, name: str, key: str) -> Dict[str, Any]:
        """Add a script (an ApiUser) or change its key; returns its ApiUser link."""
        if not name or not isinstance(name, str) or not isinstance(key, str):
            raise ValueError("a script needs a non-empty name and a key string")
        user = self._ensure_user("ApiUser", "firstname", name, {"firstname": name})
        with self._scripts_lock:
            self._scripts[name] = key
            self._script_users[name] = user
        return user

    def remove_script(self, name: str) -> None:
        """Forget a script's key: its callers get AuthenticationFault from now on."""
        with self._scripts_lock:
            self._scripts.pop(name, None)

    def scripts(self) -> Dict[str, str]:
        with self._scripts_lock:
            return dict(self._scripts)

    def ensure_human_user(self, login: str, name: Optional[str] = None) -> Dict[str, Any]:
        """The HumanUser with `login`, created quietly (no event) if the site has none."""
        display = name or login
        first, _, last = display.partition(" ")
        fields = {"login": login, "name": display, "firstname": first, "lastname": last}
        fields["email"] = f"{login}@studio.example"
        return self._ensure_user("HumanUser", "login", login, fields)

    def _ensure_user(self, entity_type: str, key: str, value: str, fields: Row) -> Dict[str, Any]:
        with self.store.lock:
            found = self._find_by(entity_type, key, value)
            if found is not None:
                return {"type": entity_type, "id": found}
            row = dict(fields, sg_status_list="act", created_at=utc_now(), updated_at=utc_now())
            entity_id = self.store.allocate_id(entity_type)
            with self.store.transaction() as tx:
                tx.insert(entity_type, entity_id, row)
            return {"type": entity_type, "id": entity_id}

    def _find_by(self, entity_type: str, field: str, value: Any) -> Optional[int]:
        table = self.store.table(entity_type)
        for entity_id in table.ids:
            if entity_id not in table.retired and table.rows[entity_id].get(field) == value:
                return entity_id
        return None

    def actor_for(self, user: Dict[str, Any], session_uuid: Optional[str] = None) -> Actor:
        """An Actor for an existing user link (the generator writes as artists this way)."""
        row = self.store.active_row(user["type"], user["id"])
        if row is None:
            raise ApiError("{} {} does not exist".format(user["type"], user["id"]))
        name = self.links.name_of(user["type"], row) or ""
        return Actor({"type": user["type"], "id": user["id"]}, name, session_uuid)

    def authenticate(self, auth: Any) -> Actor:
        """The Actor for a request's auth params; wrong keys are AuthenticationFault (102)."""
        if not isinstance(auth, dict):
            raise AuthenticationError("Authentication parameters are missing")
        script = auth.get("script_name")
        if script is None:
            raise AuthenticationError(
                "The site emulator authenticates scripts only (script_name and script_key); "
                "user logins and session tokens are not supported"
            )
        with self._scripts_lock:
            expected = self._scripts.get(script)
            user = self._script_users.get(script)
        if expected is None or user is None or auth.get("script_key") != expected:
            raise AuthenticationError(f"Can't authenticate script '{script}'")
        actor = Actor(dict(user), script, auth.get("session_uuid"))
        sudo = auth.get("sudo_as_login")
        if sudo:
            actor = self._sudo(actor, sudo)
        return actor

    def _sudo(self, script: Actor, login: str) -> Actor:
        with self.store.lock:
            user_id = self._find_by("HumanUser", "login", login)
        if user_id is None:
            raise ApiError(f"sudo_as_login: there is no active HumanUser with login '{login}'")
        actor = self.actor_for({"type": "HumanUser", "id": user_id}, script.session_uuid)
        actor.sudo_actual_user = {"type": "ApiUser", "id": script.user["id"], "name": script.name}
        return actor

    # --- dispatch ------------------------------------------------------------------------

    def call(self, method_name: Any, params: Any) -> Any:
        """One API request: `params` is the payload's list ``[auth, args]``."""
        if not isinstance(params, list):
            raise ApiError("API request params must be a list [auth, arguments]")
        if method_name == "info":
            return self.info()
        method = self._methods.get(method_name)  # type: ignore[arg-type]
        if method is None and method_name in NOT_EMULATED:
            raise ApiError(
                f"API method '{method_name}' is not emulated: the site emulator has no "
                "schema changes, work schedules, page exports, subscriptions or navigation"
            )
        if method is None:
            supported = ", ".join(["info", *sorted(self._methods)])
            raise ApiError(
                f"API method '{method_name}' is not supported by the site emulator "
                f"(supported: {supported})"
            )
        actor = self.authenticate(params[0] if params else None)
        return method(actor, params[1] if len(params) > 1 else None)

    def info(self) -> Dict[str, Any]:
        return {
            "version": list(SITE_VERSION),
            "full_version": [*list(SITE_VERSION), 0],
            "user_authentication_method": "default",
            "api_max_entities_per_page": 500,
            "s3_uploads_enabled": False,
            "site_emulator": True,
        }

    # --- read-only methods ---------------------------------------------------------------

    def _read(self, actor: Actor, args: Any) -> Any:
        return query.read(self.links, args)

    def _summarize(self, actor: Actor, args: Any) -> Any:
        return summaries.summarize(self.links, args)

    def _preferences_read(self, actor: Actor, args: Any) -> Any:
        wanted = (args or {}).get("prefs") if isinstance(args, dict) else None
        if not wanted:
            return dict(PREFERENCES)
        return {name: PREFERENCES[name] for name in wanted if name in PREFERENCES}

    def _schema_read(self, actor: Actor, args: Any) -> Any:
        return self.schema.describe()

    def _schema_entity_read(self, actor: Actor, args: Any) -> Any:
        return {name: entity.describe() for name, entity in self.schema.entities.items()}

    def _schema_field_read(self, actor: Actor, args: Any) -> Any:
        if not isinstance(args, dict) or not isinstance(args.get("type"), str):
            raise ApiError("API schema_field_read() expects an entity 'type'")
        entity = self.schema.entity(args["type"])
        if entity is None:
            raise ApiError("API schema_field_read() unknown entity type {!r}".format(args["type"]))
        name = args.get("field_name")
        if not name:
            return {f.name: f.describe() for f in entity.fields.values()}
        if name not in entity.fields:
            raise ApiError(f"API schema_field_read() {entity.name}.{name} doesn't exist")
        return {name: entity.fields[name].describe()}

    # --- writes ------------------------------------------------------------------------

    def _create(self, actor: Actor, args: Any) -> Any:
        entity_type, data, return_fields = _create_args(args)
        with self.store.transaction() as tx:
            return self.create(tx, actor, entity_type, data, return_fields)

    def _update(self, actor: Actor, args: Any) -> Any:
        entity_type, entity_id, data, modes = _update_args(args)
        with self.store.transaction() as tx:
            return self.update(tx, actor, entity_type, entity_id, data, modes)

    def _delete(self, actor: Actor, args: Any) -> Any:
        entity_type, entity_id = _target(args, "delete")
        with self.store.transaction() as tx:
            return self.retire(tx, actor, entity_type, entity_id)

    def _revive(self, actor: Actor, args: Any) -> Any:
        entity_type, entity_id = _target(args, "revive")
        with self.store.transaction() as tx:
            return self.revive(tx, actor, entity_type, entity_id)

    def _batch(self, actor: Actor, args: Any) -> Any:
        """All requests in one transaction: any failure undoes all of them."""
        if not isinstance(args, list):
            raise ApiError("API batch() expects a list of requests")
        results = []
        with self.store.transaction() as tx:
            for index, request in enumerate(args):
                try:
                    results.append(self._batch_one(tx, actor, request))
                except ApiError as error:
                    raise ApiError(
                        f"API batch() request {index} failed, nothing was changed: {error.message}"
                    ) from None
        return results

    def _batch_one(self, tx: Transaction, actor: Actor, request: Any) -> Any:
        kind = request.get("request_type") if isinstance(request, dict) else None
        if kind == "create":
            entity_type, data, return_fields = _create_args(request)
            return self.create(tx, actor, entity_type, data, return_fields)
        if kind == "update":
            entity_type, entity_id, data, modes = _update_args(request)
            return self.update(tx, actor, entity_type, entity_id, data, modes)
        if kind == "delete":
            entity_type, entity_id = _target(request, "delete")
            return self.retire(tx, actor, entity_type, entity_id)
        raise ApiError(f"invalid request_type {kind!r} (create, update or delete)")

    def create(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        data: Dict[str, Any],
        return_fields: Optional[List[str]] = None,
        entity_id: Optional[int] = None,
        uploads: bool = False,
    ) -> Dict[str, Any]:
        """Create an entity and log `New` plus one in-create `Change` per field set.

        `entity_id` is an id allocated beforehand, and `uploads` lets an Attachment hold an
        uploaded file: both only for the site's own upload handling.
        """
        entity = self._writable_type(entity_type, "create")
        if entity_type == EVENT_TYPE:
            return self._create_event(tx, actor, data, return_fields)
        now = utc_now()
        row: Row = {"created_at": now, "updated_at": now}
        row["created_by"] = row["updated_by"] = actor.user
        for field in entity.fields.values():
            if field.default is not None:
                row[field.name] = field.default
        set_fields = []
        project = link_key(data.get("project"))
        for name, value in data.items():
            field = self._writable_field(entity_type, name, "create", creating=True)
            if field.data_type == "url":
                row[name] = self._url_value(tx, actor, field, value, project, "create", uploads)
            else:
                row[name] = normalize(field, value, self.links, "create")
            if name not in ("created_at", "created_by"):
                set_fields.append(field)
        if entity_type == "Reply" and "user" not in data:
            row["user"] = actor.user  # a reply's author is who writes it
        if entity_type == "HumanUser" and not row.get("name"):
            full = "{} {}".format(row.get("firstname") or "", row.get("lastname") or "")
            row["name"] = full.strip() or row.get("login")
        if entity_id is None:
            entity_id = self.store.allocate_id(entity_type)
        tx.insert(entity_type, entity_id, row)
        self.events.entity_created(tx, actor, entity_type, entity_id, row)
        stamps = {"updated_at": now, "updated_by": actor.user}
        for field in set_fields:
            event_id = self.events.field_created(tx, actor, entity_type, entity_id, row, field)
            if event_id is not None and field.reverse:
                added = link_keys(field, row.get(field.name))
                cause = LinkChange(entity_type, entity_id, field, added, [])
                self._follow_reverse(tx, actor, cause, event_id, stamps, in_create=True)
        return query.render_entity(
            self.links, entity_type, entity_id, list(data) + list(return_fields or [])
        )

    def _create_event(
        self, tx: Transaction, actor: Actor, data: Dict[str, Any], return_fields: Any
    ) -> Dict[str, Any]:
        """A script may log its own EventLogEntry; that creates no further event."""
        row: Row = {"user": actor.user, "created_at": utc_now(), "meta": {}}
        for name, value in data.items():
            field = self._writable_field(EVENT_TYPE, name, "create", creating=True)
            row[name] = normalize(field, value, self.links, "create")
        if not row.get("event_type"):
            raise ApiError("API create() EventLogEntry needs an event_type")
        event_id = self.store.allocate_id(EVENT_TYPE)
        tx.insert(EVENT_TYPE, event_id, row)
        fields = list(data) + list(return_fields or [])
        return query.render_entity(self.links, EVENT_TYPE, event_id, fields)

    def update(
        self,
        tx: Transaction,
        actor: Actor,
        entity_type: str,
        entity_id: int,
        data: Dict[str, Any],
        modes: Optional[Dict[str, str]] = None,
    ) -> Dict[str, Any]:
        """Change fields and log one `Change` per field whose value really changed."""
        self._writable_type(entity_type, "update")
        if entity_type == EVENT_TYPE:
            raise ApiError("API update() EventLogEntry rows cannot be changed")
        row = self._existing(entity_type, entity_id, "update")
        changes: Row = {}
        metas: List[Tuple[Field, Any, Dict[str, Any]]] = []
        for name, value in data.items():
            field = self._writable_field(entity_type, name, "update")
            mode = _mode(modes or {}, field)
            old = row.get(name)
            if field.data_type == "multi_entity":
                new = self._multi_value(field, old, value, mode)
                shown_old, shown_new = self._live(old), self._live(new)
                if shown_old != shown_new:
                    changes[name] = new
                    meta = self.events.multi_change_meta(field, shown_old, shown_new)
                    metas.append((field, old, meta))
                continue
            if mode != "set":
                raise ApiError(
                    f"API update() {field.entity_type}.{field.name}: multi_entity_update_mode "
                    f"{mode!r} applies to multi-entity fields only"
                )
            if field.data_type == "url":
                if entity_type == ATTACHMENT and name == "this_file":
                    raise ApiError(
                        "API update() Attachment.this_file cannot be changed once the "
                        "Attachment exists; create another Attachment"
                    )
                project = link_key(row.get("project"))
                new = self._url_value(tx, actor, field, value, project, "update")
            else:
                new = normalize(field, value, self.links, "update")
            if old != new and not (old is None and new is False):
                changes[name] = new
                metas.append((field, old, self.events.change_meta(field, old, new)))
        if changes:
            stamps = {"updated_at": utc_now(), "updated_by": actor.user}
            tx.update(entity_type, entity_id, {**changes, **stamps})
            for field, old, meta in metas:
                event_id = self.events.attribute_changed(
                    tx, actor, entity_type, entity_id, row, field, meta
                )
                if field.reverse:
                    added, removed = changed_links(field, old, row.get(field.name))
                    cause = LinkChange(entity_type, entity_id, field, added, removed, old)
                    self._follow_reverse(tx, actor, cause, event_id, stamps, in_create=False)
        return query.render_entity(self.links, entity_type, entity_id, list(data))

    def _url_value(
        self,
        tx: Transaction,
        actor: Actor,
        field: Field,
        value: Any,
        project: Optional[Tuple[str, int]],
        method: str,
        uploads: bool = False,
    ) -> Any:
        """What a url field stores: on an Attachment its file; elsewhere an Attachment
        (an existing one given as {"type": "Attachment", "id"}, or one made now, logged as
        a site logs it) read back as its file plus its type and id."""
        if field.entity_type == ATTACHMENT:
            return file_value(self.links, field, value, method, uploads)
        if value is None:
            return None
        key = link_key(value)
        if key is not None and key[0] == ATTACHMENT:
            row = self.store.active_row(ATTACHMENT, key[1])
            if row is None or not row.get("this_file"):
                raise ApiError(
                    f"API {method}() {field.entity_type}.{field.name}: Attachment {key[1]} "
                    "does not exist, is retired or holds no file"
                )
            return {**row["this_file"], "type": ATTACHMENT, "id": key[1]}
        this_file = file_value(self.links, field, value, method)
        data: Dict[str, Any] = {"this_file": value}
        if project is not None:
            data["project"] = {"type": project[0], "id": project[1]}
        created = self.create(tx, actor, ATTACHMENT, data)
        return {**this_file, "type": ATTACHMENT, "id": created["id"]}

    def _follow_reverse(
        self,
        tx: Transaction,
        actor: Actor,
        cause: LinkChange,
        cause_event_id: int,
        stamps: Row,
        in_create: bool,
    ) -> None:
        """Keep the other side of the caller's link change in step, and log it there."""
        for change in self.reverse.follow(tx, cause, stamps):
            self.events.reverse_changed(tx, actor, change, cause, cause_event_id, in_create)

    def _live(self, links: Any) -> List[Dict[str, Any]]:
        """The links a reader sees: those to entities that are not retired."""
        return [link for link in links or [] if self.links.key(link) is not None]

    def _multi_value(self, field: Field, old: Any, value: Any, mode: str) -> List[Any]:
        """A multi-entity field's new stored value for one of the update modes.

        Links to retired entities are not shown and stay stored whatever the mode, as a
        site keeps a retired entity's connections: reviving it brings them back.
        """
        if mode not in _MULTI_MODES:
            raise ApiError(
                f"API update() {field.entity_type}.{field.name}: multi_entity_update_mode "
                f"must be set, add or remove, got {mode!r}"
            )
        old = list(old or [])
        hidden = [link for link in old if self.links.key(link) is None]
        shown = [link for link in old if self.links.key(link) is not None]
        if mode == "remove":
            removed = {link_key(item) for item in value or []}
            return hidden + [link for link in shown if (link["type"], link["id"]) not in removed]
        links = normalize(field, value, self.links, "update")
        if mode == "add":
            return hidden + shown + [link for link in links if link not in shown]
        return hidden + links

    def retire(self, tx: Transaction, actor: Actor, entity_type: str, entity_id: int) -> bool:
        """Retire (the API's `delete`): False when already retired, a fault when unknown."""
        self._writable_type(entity_type, "delete")
        row = self._existing(entity_type, entity_id, "delete", allow_retired=True)
        if self.store.is_retired(entity_type, entity_id):
            return False
        tx.set_retired(entity_type, entity_id, True)
        self.events.entity_retired(tx, actor, entity_type, entity_id, row)
        return True

    def revive(self, tx: Transaction, actor: Actor, entity_type: str, entity_id: int) -> bool:
        """Bring a retired entity back: False when it was not retired."""
        self._writable_type(entity_type, "revive")
        row = self._existing(entity_type, entity_id, "revive", allow_retired=True)
        if not self.store.is_retired(entity_type, entity_id):
            return False
        tx.set_retired(entity_type, entity_id, False)
        self.events.entity_revived(tx, actor, entity_type, entity_id, row)
        return True

    # --- checks ------------------------------------------------------------------------

    def _writable_type(self, entity_type: Any, method: str) -> Any:
        entity = self.schema.entity(entity_type) if isinstance(entity_type, str) else None
        if entity is None:
            raise ApiError(f"API {method}() unknown entity type {entity_type!r}")
        if entity_type == EVENT_TYPE and method in ("delete", "revive"):
            raise ApiError(f"API {method}() EventLogEntry rows cannot be retired or revived")
        return entity

    def _writable_field(
        self, entity_type: str, name: Any, method: str, creating: bool = False
    ) -> Field:
        field = self.schema.field(entity_type, name) if isinstance(name, str) else None
        if field is None:
            raise ApiError(f"API {method}() {entity_type}.{name} doesn't exist")
        settable_on_create = creating and name in ("created_at", "created_by")
        if (not field.editable or name == "created_at") and not settable_on_create:
            raise ApiError(f"API {method}() {entity_type}.{name} is not editable")
        return field

    def _existing(
        self, entity_type: str, entity_id: int, method: str, allow_retired: bool = False
    ) -> Row:
        row = self.store.row(entity_type, entity_id)
        if row is None:
            raise ApiError(f"API {method}() {entity_type} {entity_id} does not exist")
        if not allow_retired and self.store.is_retired(entity_type, entity_id):
            raise ApiError(f"API {method}() {entity_type} {entity_id} is retired")
        return row


def _fields_dict(items: Any, method: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """``[{"field_name", "value", "multi_entity_update_mode"?}]`` -> data and modes."""
    if not isinstance(items, list):
        raise ApiError(f"API {method}() expects 'fields' as a list of {{field_name, value}}")
    data: Dict[str, Any] = {}
    modes: Dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or "field_name" not in item:
            raise ApiError(f"API {method}() invalid field item {item!r}")
        data[item["field_name"]] = item.get("value")
        if item.get("multi_entity_update_mode"):
            modes[item["field_name"]] = item["multi_entity_update_mode"]
    return data, modes


def _create_args(args: Any) -> Tuple[str, Dict[str, Any], List[str]]:
    if not isinstance(args, dict) or "type" not in args:
        raise ApiError("API create() expects an object with 'type' and 'fields'")
    data, _ = _fields_dict(args.get("fields", []), "create")
    return args["type"], data, list(args.get("return_fields") or [])


def _update_args(args: Any) -> Tuple[str, int, Dict[str, Any], Dict[str, str]]:
    entity_type, entity_id = _target(args, "update")
    data, modes = _fields_dict(args.get("fields", []), "update")
    if args.get("multi_entity_update_mode"):
        modes["*"] = args["multi_entity_update_mode"]  # the whole request's default
    return entity_type, entity_id, data, modes


def _mode(modes: Dict[str, str], field: Field) -> str:
    if field.name in modes:
        return modes[field.name]
    return modes.get("*", "set") if field.data_type == "multi_entity" else "set"


def _target(args: Any, method: str) -> Tuple[str, int]:
    if not isinstance(args, dict) or "type" not in args or "id" not in args:
        raise ApiError(f"API {method}() expects an object with 'type' and 'id'")
    try:
        return args["type"], int(args["id"])
    except (TypeError, ValueError):
        raise ApiError(
            "API {}() id must be an integer, got {!r}".format(method, args["id"])
        ) from None
