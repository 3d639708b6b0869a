"""The site's schema: entity types, their fields and data types, as a real site reports them.

The emulator's store, queries and event log ask this module what a field is (its data type,
which entity types it may link to, its valid statuses) and the `schema_*` API methods answer
from it. It ships the entities studios use most, with their real field names, and can be
extended from a JSON file. It must never hold or touch entity data: it only describes it.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

# Data types a site reports in `data_type`; the emulator knows how to store each of them.
DATA_TYPES = frozenset(
    {
        "text",
        "number",
        "float",
        "checkbox",
        "date",
        "date_time",
        "entity",
        "multi_entity",
        "status_list",
        "list",
        "url",
        "serializable",
        "duration",
        "percent",
        "timecode",
        "color",
        "image",
        "uuid",
        "tag_list",
        "entity_type",
        "password",
    }
)

NUMERIC_TYPES = frozenset({"number", "float", "duration", "percent", "timecode"})
LINK_TYPES = frozenset({"entity", "multi_entity"})

USER_TYPES = ["HumanUser", "ApiUser"]
TASK_STATUSES = ["wtg", "rdy", "ip", "rev", "fin", "hld", "omt", "na", "cmpt"]
SHOT_STATUSES = ["wtg", "rdy", "ip", "rev", "fin", "hld", "omt", "na", "cmpt"]
VERSION_STATUSES = ["na", "rev", "vwd", "apr", "rej", "ip", "fin"]
NOTE_STATUSES = ["opn", "ip", "clsd"]
USER_STATUSES = ["act", "dis"]
LINKABLE = ["Asset", "Sequence", "Shot", "Project", "Task", "Version", "PublishedFile"]

# One field spec: data type, then optional (valid types or valid values), display name.
FieldSpec = Tuple[Any, ...]


class Field:
    """One field of one entity type; immutable once the schema is built."""

    __slots__ = (
        "data_type",
        "default",
        "display_name",
        "editable",
        "entity_type",
        "name",
        "valid_types",
        "valid_values",
    )

    def __init__(
        self,
        entity_type: str,
        name: str,
        data_type: str,
        display_name: Optional[str] = None,
        valid_types: Optional[List[str]] = None,
        valid_values: Optional[List[str]] = None,
        default: Any = None,
        editable: bool = True,
    ) -> None:
        if data_type not in DATA_TYPES:
            raise ValueError(
                "{}.{}: unknown data type {!r} (known: {})".format(
                    entity_type, name, data_type, ", ".join(sorted(DATA_TYPES))
                )
            )
        self.entity_type = entity_type
        self.name = name
        self.data_type = data_type
        self.display_name = display_name or _display_name(name)
        self.valid_types = list(valid_types or [])
        self.valid_values = list(valid_values or [])
        self.default = default
        self.editable = editable

    def empty_value(self) -> Any:
        """What a field that was never set reads back as (a site never returns a missing key)."""
        if self.data_type == "multi_entity":
            return []
        if self.data_type == "checkbox":
            return False
        return None

    def describe(self) -> Dict[str, Any]:
        """The field as `schema_field_read` reports it."""
        properties: Dict[str, Any] = {
            "default_value": _prop(self.default, editable=False),
            "summary_default": _prop("none"),
        }
        if self.data_type in LINK_TYPES:
            properties["valid_types"] = _prop(list(self.valid_types))
        if self.data_type in ("status_list", "list"):
            properties["valid_values"] = _prop(list(self.valid_values))
        return {
            "data_type": _prop(self.data_type, editable=False),
            "description": _prop(""),
            "editable": _prop(self.editable, editable=False),
            "entity_type": _prop(self.entity_type, editable=False),
            "mandatory": _prop(False, editable=False),
            "name": _prop(self.display_name),
            "properties": properties,
            "unique": _prop(False, editable=False),
            "visible": _prop(True, editable=False),
        }


class EntityType:
    """An entity type: its display name, the field a link's `name` comes from, its fields."""

    def __init__(self, name: str, display_name: str, name_field: str) -> None:
        self.name = name
        self.display_name = display_name
        self.name_field = name_field
        self.fields: Dict[str, Field] = {}

    def add(self, field: Field) -> None:
        self.fields[field.name] = field

    def describe(self) -> Dict[str, Any]:
        """The entity type as `schema_entity_read` reports it."""
        return {
            "name": _prop(self.display_name, editable=False),
            "visible": _prop(True, editable=False),
        }


class Schema:
    """All entity types of the site, looked up by name."""

    def __init__(self) -> None:
        self.entities: Dict[str, EntityType] = {}

    def entity(self, entity_type: str) -> Optional[EntityType]:
        return self.entities.get(entity_type)

    def field(self, entity_type: str, field_name: str) -> Optional[Field]:
        entity = self.entities.get(entity_type)
        return entity.fields.get(field_name) if entity else None

    def describe(self) -> Dict[str, Dict[str, Any]]:
        """Every field of every entity type, as `schema_read` reports them."""
        return {
            name: {f.name: f.describe() for f in entity.fields.values()}
            for name, entity in self.entities.items()
        }

    def extend(self, definition: Dict[str, Any], source: str = "schema extension") -> None:
        """Add entity types and fields from a JSON-style definition (see docs/emulator.md).

        ``{"CustomEntity01": {"display_name": "Sprint", "name_field": "code",
        "project": true, "fields": {"code": {"data_type": "text"}}}}``: existing types get
        the new fields, new types get the standard fields plus the given ones.
        """
        if not isinstance(definition, dict):
            raise ValueError(f"{source}: expected an object of entity types")
        for type_name, spec in definition.items():
            if not isinstance(spec, dict):
                raise ValueError(f"{source}: {type_name} must be an object")
            entity = self.entities.get(type_name)
            if entity is None:
                entity = _new_entity(
                    type_name,
                    spec.get("display_name") or type_name,
                    spec.get("name_field") or "code",
                    bool(spec.get("project", True)),
                )
                self.entities[type_name] = entity
            for field_name, field_spec in (spec.get("fields") or {}).items():
                entity.add(_field_from_json(type_name, field_name, field_spec, source))
        _link_entity_fields(self)

    def load_file(self, path: str) -> None:
        """Extend the schema from a JSON file; a bad file is an error naming the file."""
        with open(path, encoding="utf-8") as handle:
            try:
                definition = json.load(handle)
            except ValueError as error:
                raise ValueError(f"{path}: not valid JSON: {error}") from error
        self.extend(definition, source=path)


def _prop(value: Any, editable: bool = True) -> Dict[str, Any]:
    return {"editable": editable, "value": value}


def _display_name(field_name: str) -> str:
    """A readable default display name: `sg_cut_in` -> `Cut In`."""
    name = field_name[3:] if field_name.startswith("sg_") else field_name
    return " ".join(part.capitalize() for part in name.split("_")) or field_name


def _field_from_json(entity_type: str, name: str, spec: Any, source: str) -> Field:
    if isinstance(spec, str):
        spec = {"data_type": spec}
    if not isinstance(spec, dict) or "data_type" not in spec:
        raise ValueError(f"{source}: {entity_type}.{name} needs a data_type")
    try:
        return Field(
            entity_type,
            name,
            spec["data_type"],
            display_name=spec.get("name"),
            valid_types=spec.get("valid_types"),
            valid_values=spec.get("valid_values"),
            default=spec.get("default_value"),
        )
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


# Fields every entity type has. `id` and the created/updated stamps are set by the site.
_STANDARD_FIELDS: Dict[str, FieldSpec] = {
    "id": ("number", None, "Id"),
    "created_at": ("date_time", None, "Date Created"),
    "updated_at": ("date_time", None, "Date Updated"),
    "created_by": ("entity", USER_TYPES, "Created by"),
    "updated_by": ("entity", USER_TYPES, "Updated by"),
}
_READ_ONLY = frozenset({"id", "updated_at", "updated_by"})

# The built-in entity types: (display name, name field, has a project field, fields).
_BUILTIN: Dict[str, Tuple[str, str, bool, Dict[str, FieldSpec]]] = {
    "Project": (
        "Project",
        "name",
        False,
        {
            "name": ("text", None, "Project Name"),
            "code": ("text",),
            "sg_description": ("text", None, "Description"),
            "sg_status": ("list", ["Active", "Bidding", "Demo", "Lost"], "Status"),
            "sg_type": ("list", ["Feature", "Episodic", "Commercial", "Game"], "Type"),
            "tank_name": ("text", None, "Tank Name"),
            "archived": ("checkbox",),
            "is_template": ("checkbox",),
            "start_date": ("date",),
            "end_date": ("date",),
            "users": ("multi_entity", ["HumanUser"], "Users"),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Sequence": (
        "Sequence",
        "code",
        True,
        {
            "code": ("text", None, "Sequence Name"),
            "description": ("text",),
            "sg_status_list": ("status_list", SHOT_STATUSES, "Status"),
            "shots": ("multi_entity", ["Shot"]),
            "assets": ("multi_entity", ["Asset"]),
            "tasks": ("multi_entity", ["Task"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Shot": (
        "Shot",
        "code",
        True,
        {
            "code": ("text", None, "Shot Code"),
            "description": ("text",),
            "sg_sequence": ("entity", ["Sequence"], "Sequence"),
            "sg_status_list": ("status_list", SHOT_STATUSES, "Status"),
            "sg_cut_in": ("number",),
            "sg_cut_out": ("number",),
            "sg_cut_duration": ("number",),
            "sg_head_in": ("number",),
            "sg_tail_out": ("number",),
            "sg_frame_rate": ("float",),
            "sg_shot_type": ("list", ["Regular", "Insert", "Reshoot"], "Type"),
            "assets": ("multi_entity", ["Asset"]),
            "tasks": ("multi_entity", ["Task"]),
            "sg_versions": ("multi_entity", ["Version"], "Versions"),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Asset": (
        "Asset",
        "code",
        True,
        {
            "code": ("text", None, "Asset Name"),
            "description": ("text",),
            "sg_asset_type": (
                "list",
                ["Character", "Environment", "FX", "Matte Painting", "Prop", "Vehicle"],
                "Type",
            ),
            "sg_status_list": ("status_list", SHOT_STATUSES, "Status"),
            "shots": ("multi_entity", ["Shot"]),
            "sequences": ("multi_entity", ["Sequence"]),
            "parents": ("multi_entity", ["Asset"]),
            "tasks": ("multi_entity", ["Task"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Task": (
        "Task",
        "content",
        True,
        {
            "content": ("text", None, "Task Name"),
            "entity": ("entity", LINKABLE, "Link"),
            "step": ("entity", ["Step"], "Pipeline Step"),
            "sg_status_list": ("status_list", TASK_STATUSES, "Status"),
            "task_assignees": ("multi_entity", ["HumanUser", "Group"], "Assigned To"),
            "sg_description": ("text", None, "Description"),
            "start_date": ("date",),
            "due_date": ("date",),
            "duration": ("duration",),
            "est_in_mins": ("duration", None, "Bid"),
            "time_logs_sum": ("duration", None, "Time Logged"),
            "milestone": ("checkbox",),
            "color": ("color",),
            "upstream_tasks": ("multi_entity", ["Task"]),
            "downstream_tasks": ("multi_entity", ["Task"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Step": (
        "Pipeline Step",
        "code",
        False,
        {
            "code": ("text", None, "Step Name"),
            "short_name": ("text",),
            "description": ("text",),
            "entity_type": ("entity_type",),
            "color": ("color",),
            "list_order": ("number",),
        },
    ),
    "Version": (
        "Version",
        "code",
        True,
        {
            "code": ("text", None, "Version Name"),
            "description": ("text",),
            "entity": ("entity", LINKABLE, "Link"),
            "sg_task": ("entity", ["Task"], "Task"),
            "sg_status_list": ("status_list", VERSION_STATUSES, "Status"),
            "user": ("entity", USER_TYPES, "Artist"),
            "sg_path_to_movie": ("text", None, "Path to Movie"),
            "sg_path_to_frames": ("text", None, "Path to Frames"),
            "sg_first_frame": ("number",),
            "sg_last_frame": ("number",),
            "frame_count": ("number",),
            "frame_range": ("text",),
            "client_approved": ("checkbox",),
            "published_files": ("multi_entity", ["PublishedFile"]),
            "playlists": ("multi_entity", ["Playlist"]),
            "notes": ("multi_entity", ["Note"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Note": (
        "Note",
        "subject",
        True,
        {
            "subject": ("text",),
            "content": ("text", None, "Body"),
            "user": ("entity", USER_TYPES, "Author"),
            "note_links": ("multi_entity", [*LINKABLE, "Playlist", "Note"], "Links"),
            "addressings_to": ("multi_entity", ["HumanUser", "Group"], "To"),
            "addressings_cc": ("multi_entity", ["HumanUser", "Group"], "Cc"),
            "tasks": ("multi_entity", ["Task"]),
            "sg_status_list": ("status_list", NOTE_STATUSES, "Status"),
            "sg_note_type": ("list", ["Client", "Internal", "Director"], "Type"),
        },
    ),
    "HumanUser": (
        "Person",
        "name",
        False,
        {
            "name": ("text",),
            "firstname": ("text", None, "First Name"),
            "lastname": ("text", None, "Last Name"),
            "login": ("text",),
            "email": ("text",),
            "sg_status_list": ("status_list", USER_STATUSES, "Status"),
            "department": ("text",),
            "groups": ("multi_entity", ["Group"]),
            "projects": ("multi_entity", ["Project"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "ApiUser": (
        "Script",
        "firstname",
        False,
        {
            "firstname": ("text", None, "Script Name"),
            "lastname": ("text", None, "Version"),
            "description": ("text",),
            "email": ("text",),
            "sg_status_list": ("status_list", USER_STATUSES, "Status"),
        },
    ),
    "Group": (
        "Group",
        "code",
        False,
        {
            "code": ("text", None, "Group Name"),
            "users": ("multi_entity", ["HumanUser"]),
            "sg_status_list": ("status_list", USER_STATUSES, "Status"),
        },
    ),
    "Playlist": (
        "Playlist",
        "code",
        True,
        {
            "code": ("text", None, "Playlist Name"),
            "description": ("text",),
            "versions": ("multi_entity", ["Version"]),
            "locked": ("checkbox",),
            "sg_date_and_time": ("date_time", None, "Date and Time"),
        },
    ),
    "PublishedFileType": (
        "Published File Type",
        "code",
        False,
        {
            "code": ("text", None, "Published File Type"),
            "description": ("text",),
            "short_name": ("text",),
        },
    ),
    "PublishedFile": (
        "Published File",
        "code",
        True,
        {
            "code": ("text", None, "Published File Name"),
            "name": ("text",),
            "description": ("text",),
            "entity": ("entity", LINKABLE, "Link"),
            "task": ("entity", ["Task"]),
            "version": ("entity", ["Version"]),
            "published_file_type": ("entity", ["PublishedFileType"], "Type"),
            "path": ("url",),
            "path_cache": ("text",),
            "version_number": ("number",),
            "sg_status_list": ("status_list", ["wtg", "ip", "cmpt", "na"], "Status"),
            "upstream_published_files": ("multi_entity", ["PublishedFile"]),
            "downstream_published_files": ("multi_entity", ["PublishedFile"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "EventLogEntry": (
        "Event Log Entry",
        "description",
        True,
        {
            "event_type": ("text",),
            "attribute_name": ("text", None, "Attribute Name"),
            "meta": ("serializable",),
            "entity": ("entity", [], "Link"),
            "user": ("entity", USER_TYPES),
            "description": ("text",),
            "session_uuid": ("uuid", None, "Session Id"),
            "image": ("image", None, "Thumbnail"),
        },
    ),
}

# Defaults a site fills in on create when the caller does not set the field.
_DEFAULTS: Dict[Tuple[str, str], Any] = {
    ("Shot", "sg_status_list"): "wtg",
    ("Sequence", "sg_status_list"): "wtg",
    ("Asset", "sg_status_list"): "wtg",
    ("Task", "sg_status_list"): "wtg",
    ("Version", "sg_status_list"): "rev",
    ("Note", "sg_status_list"): "opn",
    ("HumanUser", "sg_status_list"): "act",
    ("ApiUser", "sg_status_list"): "act",
    ("Group", "sg_status_list"): "act",
    ("PublishedFile", "sg_status_list"): "cmpt",
}


def _new_entity(name: str, display_name: str, name_field: str, has_project: bool) -> EntityType:
    entity = EntityType(name, display_name, name_field)
    for field_name, spec in _STANDARD_FIELDS.items():
        entity.add(_field_from_spec(name, field_name, spec))
    if has_project:
        entity.add(Field(name, "project", "entity", "Project", ["Project"]))
    return entity


def _field_from_spec(entity_type: str, name: str, spec: FieldSpec) -> Field:
    data_type = spec[0]
    choices = spec[1] if len(spec) > 1 else None
    display = spec[2] if len(spec) > 2 else None
    is_link = data_type in LINK_TYPES
    return Field(
        entity_type,
        name,
        data_type,
        display_name=display,
        valid_types=choices if is_link else None,
        valid_values=None if is_link else choices,
        default=_DEFAULTS.get((entity_type, name)),
        editable=name not in _READ_ONLY,
    )


def _link_entity_fields(schema: Schema) -> None:
    """EventLogEntry.entity links to any entity type, including ones added later."""
    event_entity = schema.field("EventLogEntry", "entity")
    if event_entity is not None:
        event_entity.valid_types = sorted(n for n in schema.entities if n != "EventLogEntry")


def builtin_schema() -> Schema:
    """A fresh schema with the built-in entity types (each emulator gets its own copy)."""
    schema = Schema()
    for name, (display, name_field, has_project, fields) in _BUILTIN.items():
        entity = _new_entity(name, display, name_field, has_project)
        for field_name, spec in fields.items():
            entity.add(_field_from_spec(name, field_name, spec))
        schema.entities[name] = entity
    _link_entity_fields(schema)
    return schema


def load_schema(paths: Iterable[str] = ()) -> Schema:
    """The built-in schema extended by each JSON file in `paths`, in order."""
    schema = builtin_schema()
    for path in paths:
        schema.load_file(path)
    return schema
