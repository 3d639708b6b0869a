"""Reading entities the way a site does: filters, deep field paths, ordering, paging.

`read()` answers the API's `read` method (what `find`/`find_one` send). Filters are compiled
once per request into plain Python predicates; conditions on `id` narrow the candidate rows
by bisection over the table's sorted ids, and a query ordered by id stops as soon as its page
is full. That keeps the daemon's poll (`id > N`, 500 per page) and gap re-queries
(`id in [...]`) cheap on a million-event table. Every malformed filter is an ApiError with
a message naming the path and relation. This module must never write to the store.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .errors import ApiError
from .presets import Preset, compile_presets
from .schema import NUMERIC_TYPES, Field
from .store import Row, Table
from .values import Links, link_key, render

Getter = Callable[[int, Row], Any]
Predicate = Callable[[int, Row], bool]

_TEXT_TYPES = frozenset({"text", "uuid", "color", "entity_type", "password", "image", "url"})
_ORDERED_TYPES = NUMERIC_TYPES | {"date", "date_time", "text", "status_list", "list", "uuid"}
_UNITS = {
    "MINUTE": datetime.timedelta(minutes=1),
    "HOUR": datetime.timedelta(hours=1),
    "DAY": datetime.timedelta(days=1),
    "WEEK": datetime.timedelta(weeks=1),
    "MONTH": datetime.timedelta(days=30),
    "YEAR": datetime.timedelta(days=365),
}


class FieldPath:
    """A field path (`code`, `entity.Shot.code`) resolved against the schema, with a getter."""

    def __init__(self, name: str, field: Field, getter: Getter) -> None:
        self.name = name
        self.field = field
        self.get = getter


def resolve_path(links: Links, entity_type: str, path: Any, method: str) -> FieldPath:
    """Resolve `path` from `entity_type`, hopping through single-entity links.

    The getter returns the stored value of the last field, or None when a hop leads to a
    link of another type or to a retired entity (as a site's deep fields read back).
    """
    if not isinstance(path, str) or not path:
        raise ApiError(f"API {method}() expected a field name, got {path!r}")
    tokens = path.split(".")
    if len(tokens) % 2 == 0:
        raise ApiError(
            f"API {method}() {entity_type}.{path} is not a valid field path: deep paths look like "
            "'entity.Shot.code' (field.EntityType.field)"
        )
    field = _field(links, entity_type, tokens[0], method)
    getter = _direct_getter(field)
    for index in range(1, len(tokens), 2):
        target_type, target_name = tokens[index], tokens[index + 1]
        if field.data_type != "entity":
            raise ApiError(
                f"API {method}() {entity_type}.{path}: cannot follow {field.entity_type}."
                f"{field.name}, it is a {field.data_type} field (the emulator follows "
                "single-entity links only)"
            )
        if links.schema.entity(target_type) is None:
            raise ApiError(f"API {method}() {path}: unknown entity type {target_type!r}")
        field = _field(links, target_type, target_name, method)
        getter = _hop(links, getter, target_type, _direct_getter(field))
    return FieldPath(path, field, getter)


def _field(links: Links, entity_type: str, name: str, method: str) -> Field:
    field = links.schema.field(entity_type, name)
    if field is None:
        raise ApiError(f"API {method}() {entity_type}.{name} doesn't exist")
    return field


def _direct_getter(field: Field) -> Getter:
    name = field.name
    if name == "id":
        return lambda entity_id, row: entity_id
    if field.data_type == "checkbox":
        return lambda entity_id, row: bool(row.get(name))
    return lambda entity_id, row: row.get(name)


def _hop(links: Links, outer: Getter, target_type: str, inner: Getter) -> Getter:
    store = links.store

    def get(entity_id: int, row: Row) -> Any:
        link = outer(entity_id, row)
        if not link or link["type"] != target_type:
            return None
        target = store.active_row(target_type, link["id"])
        if target is None:
            return None
        return inner(link["id"], target)

    return get


# ---------------------------------------------------------------------------------------
# Filters


def compile_filters(links: Links, entity_type: str, filters: Any, method: str) -> Predicate:
    """One predicate for a whole filter tree (``{"logical_operator", "conditions"}``)."""
    if filters is None or filters == []:
        return lambda entity_id, row: True
    if isinstance(filters, list):
        filters = {"logical_operator": "and", "conditions": filters}
    if not isinstance(filters, dict):
        raise ApiError(f"API {method}() filters must be an object, got {filters!r}")
    if "path" in filters:
        return _compile_condition(links, entity_type, filters, method)
    operator = filters.get("logical_operator", "and")
    conditions = filters.get("conditions")
    if operator not in ("and", "or") or not isinstance(conditions, list):
        raise ApiError(
            f"API {method}() invalid filter group {filters!r}: expected logical_operator "
            "'and' or 'or' and a list of conditions"
        )
    parts = [_compile_node(links, entity_type, node, method) for node in conditions]
    if not parts:
        return lambda entity_id, row: True
    if len(parts) == 1:
        return parts[0]
    if operator == "and":
        return lambda entity_id, row: all(part(entity_id, row) for part in parts)
    return lambda entity_id, row: any(part(entity_id, row) for part in parts)


def _compile_node(links: Links, entity_type: str, node: Any, method: str) -> Predicate:
    if isinstance(node, dict) and "path" in node:
        return _compile_condition(links, entity_type, node, method)
    if isinstance(node, dict):
        return compile_filters(links, entity_type, node, method)
    if isinstance(node, (list, tuple)) and len(node) >= 2:
        values = list(node[2:])
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = list(values[0])
        condition = {"path": node[0], "relation": node[1], "values": values}
        return _compile_condition(links, entity_type, condition, method)
    raise ApiError(f"API {method}() invalid filter condition {node!r}")


def _compile_condition(
    links: Links, entity_type: str, condition: Dict[str, Any], method: str
) -> Predicate:
    path = resolve_path(links, entity_type, condition.get("path"), method)
    relation = condition.get("relation")
    values = condition.get("values", [])
    if not isinstance(values, list):
        values = [values]
    builder = _RELATIONS.get(relation)  # type: ignore[arg-type]
    if builder is None:
        raise ApiError(
            "API {}() {}.{}: unknown filter relation {!r} (known: {})".format(
                method, entity_type, path.name, relation, ", ".join(sorted(_RELATIONS))
            )
        )
    try:
        return builder(links, path, values)
    except _InvalidConditionError as error:
        raise ApiError(
            f"API {method}() invalid filter on {entity_type}.{path.name} {relation} "
            f"{values!r}: {error}"
        ) from None


class _InvalidConditionError(Exception):
    """A condition that cannot apply to its field; becomes an ApiError with context."""


def _one(values: List[Any]) -> Any:
    if len(values) != 1:
        raise _InvalidConditionError("expected exactly one value")
    return values[0]


def _comparable(links: Links, path: FieldPath) -> Getter:
    """A getter returning what conditions compare: link keys, lower-cased text, raw values."""
    get = path.get
    data_type = path.field.data_type
    if data_type == "entity":
        return lambda entity_id, row: links.key(get(entity_id, row))
    if data_type == "multi_entity":
        return lambda entity_id, row: links.keys(get(entity_id, row))
    if data_type in _TEXT_TYPES:

        def lowered(entity_id: int, row: Row) -> Any:
            value = get(entity_id, row)
            text = text_of(value)
            return (text.lower() or None) if text is not None else value

        return lowered
    return get


def text_of(value: Any) -> Optional[str]:
    """The text a condition or a sort sees in a text-like value: the string itself, or for
    a url field's dict its name, else its local path, else its URL."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("name", "local_path", "url"):
            if isinstance(value.get(key), str) and value[key]:
                return value[key]
        return ""
    return None


def _value(path: FieldPath, value: Any) -> Any:
    """A filter value in the form `_comparable` produces, validated for the field."""
    data_type = path.field.data_type
    if data_type in ("entity", "multi_entity"):
        if value is None:
            return None
        key = link_key(value)
        if key is None:
            raise _InvalidConditionError('expected an entity dict like {"type": "Shot", "id": 1}')
        return key
    if value is None:
        return None
    if data_type in _TEXT_TYPES or data_type in ("status_list", "list", "entity_type"):
        if not isinstance(value, str):
            raise _InvalidConditionError("expected a string")
        return value.lower() if data_type in _TEXT_TYPES else value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if data_type in NUMERIC_TYPES and not is_number:
        if path.field.name == "id" and isinstance(value, str) and value.isdigit():
            return int(value)
        raise _InvalidConditionError("expected a number")
    if data_type == "checkbox" and not isinstance(value, bool):
        raise _InvalidConditionError("expected true or false")
    if data_type in ("date", "date_time") and not isinstance(value, str):
        raise _InvalidConditionError("expected a date string")
    return value


def _rel_is(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    get = _comparable(links, path)
    wanted = _value(path, _one(values))
    if path.field.data_type == "multi_entity":
        if wanted is None:
            return lambda entity_id, row: not get(entity_id, row)
        return lambda entity_id, row: wanted in get(entity_id, row)
    return lambda entity_id, row: get(entity_id, row) == wanted


def _rel_in(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    get = _comparable(links, path)
    wanted = {_value(path, value) for value in values}
    if path.field.data_type == "multi_entity":
        allow_empty = None in wanted
        return lambda entity_id, row: (
            any(key in wanted for key in get(entity_id, row))
            or (allow_empty and not get(entity_id, row))
        )
    return lambda entity_id, row: get(entity_id, row) in wanted


def _negate(builder: Callable[..., Predicate]) -> Callable[..., Predicate]:
    def build(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
        positive = builder(links, path, values)
        return lambda entity_id, row: not positive(entity_id, row)

    return build


def _ordered(path: FieldPath) -> None:
    if path.field.data_type not in _ORDERED_TYPES:
        raise _InvalidConditionError(f"a {path.field.data_type} field cannot be compared by order")


def _rel_less(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    _ordered(path)
    get = _comparable(links, path)
    bound = _value(path, _one(values))
    if bound is None:
        raise _InvalidConditionError("cannot compare with null")
    return lambda entity_id, row: _lt(get(entity_id, row), bound)


def _rel_greater(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    _ordered(path)
    get = _comparable(links, path)
    bound = _value(path, _one(values))
    if bound is None:
        raise _InvalidConditionError("cannot compare with null")
    return lambda entity_id, row: _lt(bound, get(entity_id, row))


def _rel_between(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    _ordered(path)
    if len(values) != 2 or None in values:
        raise _InvalidConditionError("expected two values [low, high]")
    get = _comparable(links, path)
    low, high = _value(path, values[0]), _value(path, values[1])

    def between(entity_id: int, row: Row) -> bool:
        value = get(entity_id, row)
        return value is not None and not _lt(value, low) and not _lt(high, value)

    return between


def _lt(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    try:
        return left < right
    except TypeError:
        return False


def _text_relation(test: Callable[[str, str], bool]) -> Callable[..., Predicate]:
    def build(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
        if path.field.data_type not in _TEXT_TYPES:
            raise _InvalidConditionError(
                f"text relations apply to text fields, this is {path.field.data_type}"
            )
        get = _comparable(links, path)
        wanted = _value(path, _one(values))
        if not isinstance(wanted, str):
            raise _InvalidConditionError("expected a string")

        def match(entity_id: int, row: Row) -> bool:
            value = get(entity_id, row)
            return isinstance(value, str) and test(value, wanted)

        return match

    return build


def _entity_only(path: FieldPath) -> None:
    if path.field.data_type not in ("entity", "multi_entity"):
        raise _InvalidConditionError(f"applies to entity fields, this is {path.field.data_type}")


def _rel_type_is(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
    _entity_only(path)
    get = _comparable(links, path)
    wanted = _one(values)
    if path.field.data_type == "multi_entity":
        return lambda entity_id, row: any(key[0] == wanted for key in get(entity_id, row))

    def match(entity_id: int, row: Row) -> bool:
        key = get(entity_id, row)
        return (key[0] if key else None) == wanted

    return match


def _name_relation(test: Callable[[str, str], bool]) -> Callable[..., Predicate]:
    def build(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
        _entity_only(path)
        wanted = _one(values)
        if not isinstance(wanted, str):
            raise _InvalidConditionError("expected a string")
        wanted = wanted.lower()
        get = path.get
        many = path.field.data_type == "multi_entity"

        def names(entity_id: int, row: Row) -> List[str]:
            value = get(entity_id, row)
            rendered = links.render_many(value) if many else [links.render(value)]
            return [str(link["name"] or "").lower() for link in rendered if link]

        return lambda entity_id, row: any(test(name, wanted) for name in names(entity_id, row))

    return build


def _time_window(future: bool) -> Callable[..., Predicate]:
    def build(links: Links, path: FieldPath, values: List[Any]) -> Predicate:
        if path.field.data_type not in ("date", "date_time"):
            raise _InvalidConditionError("applies to date and date_time fields")
        if len(values) != 2 or values[1] not in _UNITS or not isinstance(values[0], int):
            raise _InvalidConditionError(
                "expected [count, unit] with unit one of {}".format(", ".join(_UNITS))
            )
        now = datetime.datetime.now(datetime.timezone.utc)
        edge = now + (1 if future else -1) * values[0] * _UNITS[values[1]]
        start, end = (now, edge) if future else (edge, now)
        fmt = "%Y-%m-%d" if path.field.data_type == "date" else "%Y-%m-%dT%H:%M:%SZ"
        low, high = start.strftime(fmt), end.strftime(fmt)
        get = path.get

        def inside(entity_id: int, row: Row) -> bool:
            value = get(entity_id, row)
            return isinstance(value, str) and low <= value <= high

        return inside

    return build


_RELATIONS: Dict[str, Callable[..., Predicate]] = {
    "is": _rel_is,
    "is_not": _negate(_rel_is),
    "in": _rel_in,
    "not_in": _negate(_rel_in),
    "less_than": _rel_less,
    "greater_than": _rel_greater,
    "between": _rel_between,
    "not_between": _negate(_rel_between),
    "contains": _text_relation(lambda value, wanted: wanted in value),
    "not_contains": _negate(_text_relation(lambda value, wanted: wanted in value)),
    "starts_with": _text_relation(lambda value, wanted: value.startswith(wanted)),
    "ends_with": _text_relation(lambda value, wanted: value.endswith(wanted)),
    "type_is": _rel_type_is,
    "type_is_not": _negate(_rel_type_is),
    "name_is": _name_relation(lambda name, wanted: name == wanted),
    "name_contains": _name_relation(lambda name, wanted: wanted in name),
    "name_not_contains": _negate(_name_relation(lambda name, wanted: wanted in name)),
    "name_starts_with": _name_relation(lambda name, wanted: name.startswith(wanted)),
    "name_ends_with": _name_relation(lambda name, wanted: name.endswith(wanted)),
    "in_last": _time_window(future=False),
    "not_in_last": _negate(_time_window(future=False)),
    "in_next": _time_window(future=True),
    "not_in_next": _negate(_time_window(future=True)),
}


# ---------------------------------------------------------------------------------------
# Candidate rows: conditions on id narrow the scan by bisection.


def candidate_ids(table: Table, filters: Any, descending: bool = False) -> Iterable[int]:
    """The ids a query has to look at, in id order, narrowed by top-level `id` conditions.

    Only conditions ANDed at the top level narrow; every condition is still checked by the
    predicate afterwards, so this is purely a shortcut and never changes a result.
    """
    low, high, exact = _id_bounds(filters)
    if exact is None:
        start, stop = table.id_range(low, high)
        return _slice(table.ids, start, stop, descending)
    rows = table.rows
    chosen = sorted(
        entity_id
        for entity_id in exact
        if entity_id in rows
        and (low is None or entity_id > low)
        and (high is None or entity_id < high)
    )
    return reversed(chosen) if descending else chosen


def _id_bounds(filters: Any) -> Tuple[Optional[int], Optional[int], Optional[Set[int]]]:
    """(exclusive low, exclusive high, exact id set) implied by top-level id conditions."""
    low: Optional[int] = None
    high: Optional[int] = None
    exact: Optional[Set[int]] = None
    for condition in _top_level_id_conditions(filters):
        relation, values = condition.get("relation"), condition.get("values") or []
        numbers = [value for value in values if _is_int(value)]
        if len(numbers) != len(values):
            continue  # e.g. ids sent as strings: the predicate still checks them
        if (relation == "is" and len(numbers) == 1) or relation == "in":
            exact = set(numbers) if exact is None else exact & set(numbers)
        elif relation == "greater_than" and len(numbers) == 1:
            low = numbers[0] if low is None else max(low, numbers[0])
        elif relation == "less_than" and len(numbers) == 1:
            high = numbers[0] if high is None else min(high, numbers[0])
        elif relation == "between" and len(numbers) == 2:
            low = numbers[0] - 1 if low is None else max(low, numbers[0] - 1)
            high = numbers[1] + 1 if high is None else min(high, numbers[1] + 1)
    return low, high, exact


def _slice(ids: List[int], start: int, stop: int, descending: bool) -> Iterable[int]:
    if descending:
        return (ids[index] for index in range(stop - 1, start - 1, -1))
    return (ids[index] for index in range(start, stop))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _top_level_id_conditions(filters: Any) -> List[Dict[str, Any]]:
    if isinstance(filters, dict) and "path" in filters:
        conditions = [filters]
    elif isinstance(filters, dict) and filters.get("logical_operator", "and") == "and":
        conditions = filters.get("conditions") or []
    else:
        return []
    return [c for c in conditions if isinstance(c, dict) and c.get("path") == "id"]


# ---------------------------------------------------------------------------------------
# The read method


class ReadRequest:
    """The parameters of one `read` call, validated."""

    def __init__(self, params: Any) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("type"), str):
            raise ApiError("API read() expects an object with an entity 'type'")
        self.entity_type: str = params["type"]
        self.fields: List[Any] = list(params.get("return_fields") or ["id"])
        self.filters = params.get("filters")
        self.retired = params.get("return_only", "active") == "retired"
        if params.get("return_only", "active") not in ("active", "retired"):
            raise ApiError("API read() return_only must be 'active' or 'retired'")
        paging = params.get("paging") or {}
        self.per_page = _positive(paging.get("entities_per_page"), "entities_per_page")
        self.page = _positive(paging.get("current_page"), "current_page") or 1
        self.sorts = params.get("sorts") or []
        self.presets = params.get("additional_filter_presets")
        self.without_archived = params.get("include_archived_projects") is False
        self.counts = bool(params.get("return_paging_info"))
        self.has_next_info = bool(params.get("return_paging_info_without_counts"))
        self.has_next_page = False  # set once the page is known


def _positive(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ApiError(f"API read() paging {name} must be a positive integer, got {value!r}")
    return value


def read(links: Links, params: Any) -> Dict[str, Any]:
    """Answer a `read` call: ``{"entities": [...]}`` plus `paging_info` when asked for."""
    request = ReadRequest(params)
    if links.schema.entity(request.entity_type) is None:
        raise ApiError(f"API read() unknown entity type {request.entity_type!r}")
    predicate = compile_filters(links, request.entity_type, request.filters, "read")
    if request.without_archived:
        predicate = without_archived_projects(links, request.entity_type, predicate)
    presets = compile_presets(links, request.entity_type, request.presets)
    sorts = _compile_sorts(links, request.entity_type, request.sorts)
    renderers = _compile_fields(links, request.entity_type, request.fields)
    table = links.store.table(request.entity_type)
    with links.store.lock:
        ids, total = _matching_ids(table, request, predicate, sorts, presets)
        entities = [_render_row(request.entity_type, i, table.rows[i], renderers) for i in ids]
    return _read_response(request, entities, total)


def _matching_ids(
    table: Table,
    request: ReadRequest,
    predicate: Predicate,
    sorts: List[Tuple[Getter, bool]],
    presets: Optional[Preset] = None,
) -> Tuple[List[int], int]:
    """The ids on the requested page, and how many matched (-1 when not counted)."""
    offset = (request.page - 1) * (request.per_page or 0)
    by_id_only = all(getter is None for getter, _ in sorts)
    descending = bool(sorts) and by_id_only and sorts[0][1]
    wanted = None
    if by_id_only and not request.counts and request.per_page and presets is None:
        wanted = offset + request.per_page + 1  # one more tells whether a next page exists
    found: List[int] = []
    rows, retired = table.rows, table.retired
    for entity_id in candidate_ids(table, request.filters, descending):
        if (entity_id in retired) != request.retired:
            continue
        if predicate(entity_id, rows[entity_id]):
            found.append(entity_id)
            if wanted is not None and len(found) >= wanted:
                break
    if presets is not None:
        found = presets(found, rows)
    if not by_id_only:
        found = _sorted_ids(found, rows, sorts)
    total = len(found) if wanted is None else -1
    if request.per_page:
        page_ids = found[offset : offset + request.per_page]
        request.has_next_page = len(found) > offset + request.per_page
    else:
        page_ids = found if request.page == 1 else []
    return page_ids, total


def without_archived_projects(links: Links, entity_type: str, predicate: Predicate) -> Predicate:
    """`predicate`, and not in an archived Project (``include_archived_projects=False``)."""
    store = links.store
    if entity_type == "Project":
        return lambda entity_id, row: not row.get("archived") and predicate(entity_id, row)
    if links.schema.field(entity_type, "project") is None:
        return predicate

    def check(entity_id: int, row: Row) -> bool:
        project = row.get("project")
        archived = project and (store.row("Project", project["id"]) or {}).get("archived")
        return not archived and predicate(entity_id, row)

    return check


def _read_response(request: ReadRequest, entities: List[Any], total: int) -> Dict[str, Any]:
    response: Dict[str, Any] = {"entities": entities}
    if request.counts:
        per_page = request.per_page or max(total, 1)
        response["paging_info"] = {
            "entity_count": total,
            "current_page": request.page,
            "entities_per_page": per_page,
            "page_count": (total + per_page - 1) // per_page,
        }
    elif request.has_next_info:
        response["paging_info"] = {"has_next_page": request.has_next_page}
    return response


def _compile_sorts(
    links: Links, entity_type: str, sorts: Any
) -> List[Tuple[Optional[Getter], bool]]:
    """(getter or None for plain id, descending) per sort; None getters allow streaming."""
    if not isinstance(sorts, list):
        raise ApiError("API read() sorts must be a list of {field_name, direction}")
    compiled: List[Tuple[Optional[Getter], bool]] = []
    for sort in sorts:
        if not isinstance(sort, dict) or sort.get("direction", "asc") not in ("asc", "desc"):
            raise ApiError(f"API read() invalid sort {sort!r}: direction must be asc or desc")
        path = resolve_path(links, entity_type, sort.get("field_name"), "read")
        descending = sort.get("direction", "asc") == "desc"
        getter = None if path.name == "id" else _sort_key(links, path)
        compiled.append((getter, descending))
    if len(compiled) > 1 and compiled[0][0] is None:
        compiled = compiled[:1]  # ids are unique: later sort keys cannot matter
    return compiled


def _sort_key(links: Links, path: FieldPath) -> Getter:
    get = path.get
    data_type = path.field.data_type
    if data_type == "entity":

        def link_name(entity_id: int, row: Row) -> Any:
            link = links.render(get(entity_id, row))
            return str(link["name"] or "").lower() if link else None

        return link_name
    if data_type == "multi_entity":
        return lambda entity_id, row: len(links.keys(get(entity_id, row))) or None
    if data_type in _TEXT_TYPES:
        return lambda entity_id, row: (text_of(get(entity_id, row)) or "").lower() or None
    return get


def _sorted_ids(ids: List[int], rows: Dict[int, Row], sorts: List[Tuple[Any, bool]]) -> List[int]:
    """Stable multi-key sort; nulls last ascending and first descending, as a database does."""
    ordered = sorted(ids)
    for getter, descending in reversed(sorts):
        if getter is None:
            ordered.sort(reverse=descending)
            continue
        keys = {}
        for entity_id in ordered:
            value = getter(entity_id, rows[entity_id])
            keys[entity_id] = (value is None, value)
        ordered.sort(key=keys.__getitem__, reverse=descending)
    return ordered


def _compile_fields(
    links: Links, entity_type: str, fields: List[Any]
) -> List[Tuple[str, Callable[[int, Row], Any]]]:
    """A renderer per requested field; unknown fields are left out, as a site does."""
    renderers = []
    for name in fields:
        if name in ("id", "type") or not isinstance(name, str):
            continue
        try:
            path = resolve_path(links, entity_type, name, "read")
        except ApiError:
            continue
        renderers.append((name, _renderer(links, path)))
    return renderers


def _renderer(links: Links, path: FieldPath) -> Callable[[int, Row], Any]:
    get, field = path.get, path.field
    if field.data_type == "entity":
        return lambda entity_id, row: links.render(get(entity_id, row))
    if field.data_type not in ("multi_entity", "checkbox"):
        return get
    return lambda entity_id, row: render(field, get(entity_id, row), links)


def _render_row(
    entity_type: str,
    entity_id: int,
    row: Row,
    renderers: List[Tuple[str, Callable[[int, Row], Any]]],
) -> Dict[str, Any]:
    record: Dict[str, Any] = {"type": entity_type, "id": entity_id}
    for name, renderer in renderers:
        record[name] = renderer(entity_id, row)
    return record


def render_entity(links: Links, entity_type: str, entity_id: int, fields: List[Any]) -> Any:
    """One entity with the given fields, as `create`/`update` answer."""
    row = links.store.row(entity_type, entity_id) or {}
    return _render_row(entity_type, entity_id, row, _compile_fields(links, entity_type, fields))
