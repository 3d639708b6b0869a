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


# The names a site shows for the usual status codes (`display_values`); others show the code.
STATUS_NAMES = {
    "act": "Active",
    "apr": "Approved",
    "clsd": "Closed",
    "cmpt": "Complete",
    "dis": "Disabled",
    "fin": "Final",
    "hld": "On Hold",
    "ip": "In Progress",
    "na": "N/A",
    "omt": "Omit",
    "opn": "Open",
    "rdy": "Ready to Start",
    "rej": "Rejected",
    "rev": "Pending Review",
    "vwd": "Viewed",
    "wtg": "Waiting to Start",
}
_CHOICE_TYPES = ("status_list", "list")
# JSON keys a field definition may have (see docs/emulator.md, "Extending the schema").
_FIELD_KEYS = frozenset(
    {
        "data_type",
        "name",
        "description",
        "valid_types",
        "valid_values",
        "display_values",
        "hidden_values",
        "default_value",
        "reverse",
    }
)


class Field:
    """One field of one entity type; only the schema changes it, while it is built.

    `reverse` names, per linked entity type, the field there that lists this entity back
    (``Shot.sg_sequence`` -> ``{"Sequence": "shots"}``): the site keeps both in step.
    """

    __slots__ = (
        "data_type",
        "default",
        "description",
        "display_name",
        "display_values",
        "editable",
        "entity_type",
        "hidden_values",
        "name",
        "reported_editable",
        "reverse",
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
        self.description = ""
        self.valid_types = list(valid_types or [])
        self.valid_values = list(valid_values or [])
        self.display_values: Dict[str, str] = {}
        self.hidden_values: List[str] = []
        self.default = default
        self.editable = editable
        #: What `schema_field_read` says; a site calls created_at/created_by and the event
        #: log's fields read-only, though they can be given on create.
        self.reported_editable = editable
        self.reverse: Dict[str, str] = {}

    def empty_value(self) -> Any:
        """What a field that was never set reads back as (a site never returns a missing key)."""
        if self.data_type == "multi_entity":
            return []
        if self.data_type == "checkbox":
            return False
        return None

    def describe(self) -> Dict[str, Any]:
        """The field as `schema_field_read` reports it, with the properties of its data type."""
        default = False if self.data_type == "checkbox" and self.default is None else self.default
        properties: Dict[str, Any] = {
            "default_value": _prop(default, editable=self.data_type in _CHOICE_TYPES),
            "summary_default": _prop("none"),
        }
        if self.data_type in LINK_TYPES:
            properties["valid_types"] = _prop(list(self.valid_types))
        elif self.data_type == "tag_list":
            properties["valid_types"] = _prop(["Tag"])
        elif self.data_type in _CHOICE_TYPES:
            properties["valid_values"] = _prop(list(self.valid_values))
        elif self.data_type == "url":
            properties["open_in_new_window"] = _prop(True)
        if self.data_type == "status_list":
            shown = {
                v: self.display_values.get(v, STATUS_NAMES.get(v, v)) for v in self.valid_values
            }
            properties["display_values"] = _prop(shown, editable=False)
            properties["hidden_values"] = _prop(list(self.hidden_values), editable=False)
        return {
            "custom_metadata": _prop(""),
            "data_type": _prop(self.data_type, editable=False),
            "description": _prop(self.description),
            "editable": _prop(self.reported_editable, editable=False),
            "entity_type": _prop(self.entity_type, editable=False),
            "mandatory": _prop(False, editable=False),
            "name": _prop(self.display_name),
            "properties": properties,
            "ui_value_displayable": _prop(True, editable=False),
            "unique": _prop(False, editable=False),
            "visible": _prop(True),
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

    def pair(self, entity_type: str, field_name: str, linked_type: str, reverse_name: str) -> None:
        """Make `linked_type.reverse_name` the reverse of `entity_type.field_name`.

        The reverse field is created (multi-entity, listing `entity_type`) when it does not
        exist yet, as a site creates one for a new link field. Raises ValueError when the
        two fields cannot be each other's reverse.
        """
        where = f"{entity_type}.{field_name}"
        field = self.field(entity_type, field_name)
        if field is None or field.data_type not in LINK_TYPES:
            raise ValueError(f"{where}: only entity and multi_entity fields have a reverse field")
        linked = self.entity(linked_type)
        if linked is None or linked_type not in field.valid_types:
            raise ValueError(
                f"{where}: its reverse field is on {linked_type}, which it cannot link to "
                "(valid types: {})".format(", ".join(field.valid_types) or "none")
            )
        reverse = linked.fields.get(reverse_name)
        if reverse is None:
            reverse = Field(linked_type, reverse_name, "multi_entity", valid_types=[entity_type])
            linked.add(reverse)
        there = f"{linked_type}.{reverse_name}"
        if reverse.data_type not in LINK_TYPES or entity_type not in reverse.valid_types:
            raise ValueError(
                f"{where}: {there} cannot be its reverse field: it must be an entity or "
                f"multi_entity field that can link to {entity_type}"
            )
        if field.data_type == "entity" and reverse.data_type == "entity":
            raise ValueError(f"{where}: {there} and it are both single-entity fields")
        for one, other_type, other_name in (
            (field, linked_type, reverse_name),
            (reverse, entity_type, field_name),
        ):
            known = one.reverse.get(other_type)
            if known is not None and known != other_name:
                raise ValueError(
                    f"{one.entity_type}.{one.name} already has the reverse field "
                    f"{other_type}.{known}, not {other_type}.{other_name}"
                )
            one.reverse[other_type] = other_name

    def extend(self, definition: Dict[str, Any], source: str = "schema extension") -> None:
        """Add entity types and fields from a JSON-style definition (see docs/emulator.md).

        ``{"CustomEntity01": {"display_name": "Sprint", "name_field": "code",
        "project": true, "fields": {"code": {"data_type": "text"}}}}``: existing types get
        the new fields, new types get the standard fields plus the given ones. A field that
        exists already is extended, not replaced: its statuses, list values and valid types
        gain the given ones, and the other given properties (display name, default value)
        replace its own.
        """
        if not isinstance(definition, dict):
            raise ValueError(f"{source}: expected an object of entity types")
        reverses: List[Tuple[str, str, Any]] = []
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
            else:
                entity.display_name = spec.get("display_name") or entity.display_name
                entity.name_field = spec.get("name_field") or entity.name_field
            fields = spec.get("fields") or {}
            if not isinstance(fields, dict):
                raise ValueError(f"{source}: {type_name}.fields must be an object")
            for field_name, field_spec in fields.items():
                where = f"{source}: {type_name}.{field_name}"
                field_spec = _field_spec(where, field_spec)
                try:
                    _define_field(entity, field_name, field_spec)
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from error
                if "reverse" in field_spec:
                    reverses.append((type_name, field_name, field_spec["reverse"]))
        _link_entity_fields(self)
        for type_name, field_name, reverse in reverses:
            self._pair_from_json(source, type_name, field_name, reverse)

    def _pair_from_json(self, source: str, type_name: str, field_name: str, reverse: Any) -> None:
        field = self.field(type_name, field_name)
        assert field is not None
        if field.data_type not in LINK_TYPES:
            raise ValueError(
                f"{source}: {type_name}.{field_name}: only entity and multi_entity fields "
                "have a reverse field"
            )
        if isinstance(reverse, str):
            pairs = {linked: reverse for linked in field.valid_types}
        elif isinstance(reverse, dict) and all(isinstance(v, str) for v in reverse.values()):
            pairs = reverse
        else:
            raise ValueError(
                f"{source}: {type_name}.{field_name}: reverse must be a field name, or an "
                'object of entity type -> field name ({"Shot": "sg_sprints"})'
            )
        for linked_type, reverse_name in pairs.items():
            try:
                self.pair(type_name, field_name, linked_type, reverse_name)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from error

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


def _field_spec(where: str, spec: Any) -> Dict[str, Any]:
    if isinstance(spec, str):
        spec = {"data_type": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a data type name or an object")
    unknown = sorted(set(spec) - _FIELD_KEYS)
    if unknown:
        raise ValueError(
            "{}: unknown key(s) {} (known: {})".format(
                where, ", ".join(unknown), ", ".join(sorted(_FIELD_KEYS))
            )
        )
    for key in ("valid_types", "valid_values", "hidden_values"):
        value = spec.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"{where}: {key} must be a list of names")
    shown = spec.get("display_values")
    if shown is not None and not (
        isinstance(shown, dict) and all(isinstance(v, str) for v in shown.values())
    ):
        raise ValueError(f"{where}: display_values must be an object of value -> name")
    return spec


def _define_field(entity: EntityType, name: str, spec: Dict[str, Any]) -> None:
    """Add a field, or extend the one the type has (a partial definition is enough)."""
    field = entity.fields.get(name)
    data_type = spec.get("data_type")
    if data_type is not None and data_type not in DATA_TYPES:
        raise ValueError(
            "unknown data type {!r} (known: {})".format(data_type, ", ".join(sorted(DATA_TYPES)))
        )
    if field is None:
        if data_type is None:
            raise ValueError("a new field needs a data_type")
        field = Field(entity.name, name, data_type)
        entity.add(field)
    elif data_type is not None and data_type != field.data_type:
        raise ValueError(
            f"is a {field.data_type} field; a definition cannot change its data type to {data_type}"
        )
    if spec.get("name"):
        field.display_name = spec["name"]
    if spec.get("description") is not None:
        field.description = str(spec["description"])
    _add_new(field.valid_types, spec.get("valid_types"))
    _add_new(field.valid_values, spec.get("valid_values"))
    _add_new(field.hidden_values, spec.get("hidden_values"))
    field.display_values.update(spec.get("display_values") or {})
    if "default_value" in spec:
        field.default = spec["default_value"]
    _check_field(field)


def _add_new(values: List[str], more: Optional[List[str]]) -> None:
    values.extend(value for value in more or [] if value not in values)


def _check_field(field: Field) -> None:
    """What a site refuses in a field definition."""
    if field.data_type in _CHOICE_TYPES:
        if field.default is not None and field.default not in field.valid_values:
            raise ValueError(
                f"default_value {field.default!r} is not one of its valid_values ({{}})".format(
                    ", ".join(field.valid_values)
                )
            )
        strays = [
            v for v in [*field.hidden_values, *field.display_values] if v not in field.valid_values
        ]
        if strays:
            raise ValueError("{} not in its valid_values".format(", ".join(map(repr, strays))))
    elif field.valid_values or field.hidden_values or field.display_values:
        raise ValueError(
            f"valid values apply to status_list and list fields, not {field.data_type}"
        )
    if field.valid_types and field.data_type not in LINK_TYPES:
        raise ValueError(
            f"valid_types apply to entity and multi_entity fields, not {field.data_type}"
        )


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
            "notes": ("multi_entity", ["Note"]),
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
            "notes": ("multi_entity", ["Note"]),
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
            "parents": ("multi_entity", ["Asset"], "Parent Assets"),
            "assets": ("multi_entity", ["Asset"], "Sub Assets"),
            "tasks": ("multi_entity", ["Task"]),
            "sg_versions": ("multi_entity", ["Version"], "Versions"),
            "notes": ("multi_entity", ["Note"]),
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
            "upstream_tasks": ("multi_entity", ["Task"], "Upstream Dependency"),
            "downstream_tasks": ("multi_entity", ["Task"], "Downstream Dependency"),
            "sg_versions": ("multi_entity", ["Version"], "Versions"),
            "notes": ("multi_entity", ["Note"]),
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
            "sg_uploaded_movie": ("url", None, "Uploaded Movie"),
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
            "attachments": ("multi_entity", ["Attachment"]),
            "replies": ("multi_entity", ["Reply"]),
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
            "notes": ("multi_entity", ["Note"]),
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
            "notes": ("multi_entity", ["Note"]),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Attachment": (
        "File",
        "this_file",
        True,
        {
            "this_file": ("url", None, "File"),
            "filename": ("text", None, "File Name"),
            "file_size": ("number", None, "File Size"),
            "description": ("text",),
            "attachment_links": ("multi_entity", [*LINKABLE, "Note", "Playlist"], "Links"),
            "attachment_reference_links": (
                "multi_entity",
                [*LINKABLE, "Note", "Playlist"],
                "Reference Links",
            ),
            "sg_type": ("text", None, "Type"),
            "processing_status": ("text", None, "Processing Status"),
            "tag_list": ("tag_list", None, "Tags"),
            "image": ("image", None, "Thumbnail"),
        },
    ),
    "Reply": (
        "Reply",
        "content",
        False,
        {
            "content": ("text", None, "Body"),
            "entity": ("entity", ["Note"], "Link"),
            "user": ("entity", USER_TYPES, "Author"),
        },
    ),
    "LocalStorage": (
        "Local File Storage",
        "code",
        False,
        {
            "code": ("text", None, "Storage Name"),
            "description": ("text",),
            "linux_path": ("text", None, "Linux Path"),
            "mac_path": ("text", None, "Mac Path"),
            "windows_path": ("text", None, "Windows Path"),
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


# The built-in link fields a site keeps in step with a field on the linked entity:
# (entity type, field, linked entity type, the reverse field there). Shot.sg_sequence <->
# Sequence.shots is a site's own pair; the sg_versions fields are the ones studios' sites
# have for Version.entity and Version.sg_task.
_REVERSE_PAIRS: List[Tuple[str, str, str, str]] = [
    ("Shot", "sg_sequence", "Sequence", "shots"),
    ("Task", "entity", "Shot", "tasks"),
    ("Task", "entity", "Asset", "tasks"),
    ("Task", "entity", "Sequence", "tasks"),
    ("Task", "upstream_tasks", "Task", "downstream_tasks"),
    ("Shot", "assets", "Asset", "shots"),
    ("Sequence", "assets", "Asset", "sequences"),
    ("Asset", "parents", "Asset", "assets"),
    ("Version", "entity", "Shot", "sg_versions"),
    ("Version", "entity", "Asset", "sg_versions"),
    ("Version", "sg_task", "Task", "sg_versions"),
    ("Note", "note_links", "Shot", "notes"),
    ("Note", "note_links", "Asset", "notes"),
    ("Note", "note_links", "Sequence", "notes"),
    ("Note", "note_links", "Version", "notes"),
    ("Note", "note_links", "PublishedFile", "notes"),
    ("Note", "note_links", "Playlist", "notes"),
    ("Note", "tasks", "Task", "notes"),
    ("Playlist", "versions", "Version", "playlists"),
    ("Group", "users", "HumanUser", "groups"),
    ("Project", "users", "HumanUser", "projects"),
    ("PublishedFile", "upstream_published_files", "PublishedFile", "downstream_published_files"),
    ("PublishedFile", "version", "Version", "published_files"),
    ("Attachment", "attachment_links", "Note", "attachments"),
    ("Reply", "entity", "Note", "replies"),
]
# Fields a site reports as read-only although a script may give them on create.
_REPORTED_READ_ONLY = frozenset({"created_at", "created_by"})


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
    field = Field(
        entity_type,
        name,
        data_type,
        display_name=display,
        valid_types=choices if is_link else None,
        valid_values=None if is_link else choices,
        default=_DEFAULTS.get((entity_type, name)),
        editable=name not in _READ_ONLY,
    )
    field.reported_editable = field.editable and name not in _REPORTED_READ_ONLY
    if entity_type == "EventLogEntry" and name != "image":
        field.reported_editable = False
    return field


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
    for entity_type, field_name, linked_type, reverse_name in _REVERSE_PAIRS:
        schema.pair(entity_type, field_name, linked_type, reverse_name)
    return schema


def load_schema(paths: Iterable[str] = ()) -> Schema:
    """The built-in schema extended by each JSON file in `paths`, in order."""
    schema = builtin_schema()
    for path in paths:
        schema.load_file(path)
    return schema
