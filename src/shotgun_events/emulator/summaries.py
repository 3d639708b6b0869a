"""The `summarize` API method: counts, sums, minimums and maximums, optionally grouped.

It answers ``{"summaries": {field: value}, "groups": [...]}`` in the shape `shotgun_api3`
documents for `Shotgun.summarize`, with nested groups when several groupings are given.
It reuses the query module's filters and field paths and must never write to the store.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Dict, List, Tuple

from .errors import ApiError
from .query import FieldPath, compile_filters, resolve_path, without_archived_projects
from .store import Row
from .values import Links, render

Rows = List[Tuple[int, Row]]


def summarize(links: Links, params: Any) -> Dict[str, Any]:
    if not isinstance(params, dict) or not isinstance(params.get("type"), str):
        raise ApiError("API summarize() expects an object with an entity 'type'")
    entity_type = params["type"]
    if links.schema.entity(entity_type) is None:
        raise ApiError(f"API summarize() unknown entity type {entity_type!r}")
    predicate = compile_filters(links, entity_type, params.get("filters"), "summarize")
    if params.get("include_archived_projects") is False:
        predicate = without_archived_projects(links, entity_type, predicate)
    summaries = _compile_summaries(links, entity_type, params.get("summaries"))
    groupings = _compile_groupings(links, entity_type, params.get("grouping") or [])
    table = links.store.table(entity_type)
    with links.store.lock:
        rows = [
            (entity_id, table.rows[entity_id])
            for entity_id in table.ids
            if entity_id not in table.retired and predicate(entity_id, table.rows[entity_id])
        ]
        return {
            "summaries": _summarize_rows(rows, summaries),
            "groups": _groups(links, rows, summaries, groupings),
        }


Summary = Tuple[str, Callable[[Rows], Any]]


def _compile_summaries(links: Links, entity_type: str, specs: Any) -> List[Summary]:
    if not isinstance(specs, list) or not specs:
        raise ApiError("API summarize() needs summary_fields: a list of {field, type}")
    compiled = []
    for spec in specs:
        if not isinstance(spec, dict):
            raise ApiError(f"API summarize() invalid summary field {spec!r}")
        path = resolve_path(links, entity_type, spec.get("field"), "summarize")
        kind = spec.get("type")
        maker = _SUMMARY_TYPES.get(kind)  # type: ignore[arg-type]
        if maker is None and kind in _SITE_ONLY_SUMMARIES:
            raise ApiError(
                f"API summarize() {path.name}: summary type {kind!r} is not emulated "
                "(emulated: {})".format(", ".join(sorted(_SUMMARY_TYPES)))
            )
        if maker is None:
            raise ApiError(
                "API summarize() {}: unknown summary type {!r} (supported: {})".format(
                    path.name, kind, ", ".join(sorted(_SUMMARY_TYPES))
                )
            )
        compiled.append((path.name, maker(links, path)))
    return compiled


def _summarize_rows(rows: Rows, summaries: List[Summary]) -> Dict[str, Any]:
    return {name: compute(rows) for name, compute in summaries}


def _values(links: Links, path: FieldPath) -> Callable[[Rows], List[Any]]:
    get = path.get

    def values(rows: Rows) -> List[Any]:
        found = (render(path.field, get(entity_id, row), links) for entity_id, row in rows)
        return [value for value in found if value not in (None, [], "")]

    return values


def _numeric(links: Links, path: FieldPath) -> Callable[[Rows], List[Any]]:
    values = _values(links, path)

    def numbers(rows: Rows) -> List[Any]:
        found = values(rows)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in found):
            raise ApiError(f"API summarize() {path.name} is not a numeric field")
        return found

    return numbers


def _ordered(links: Links, path: FieldPath, pick: Callable[[List[Any]], Any]) -> Callable:
    values = _values(links, path)

    def compute(rows: Rows) -> Any:
        found = [v for v in values(rows) if not isinstance(v, (dict, list))]
        return pick(found) if found else None

    return compute


def _average(links: Links, path: FieldPath) -> Callable[[Rows], Any]:
    numbers = _numeric(links, path)

    def compute(rows: Rows) -> Any:
        found = numbers(rows)
        return sum(found) / len(found) if found else None

    return compute


def _checked(expected: bool) -> Callable[[Links, FieldPath], Callable[[Rows], Any]]:
    def make(links: Links, path: FieldPath) -> Callable[[Rows], Any]:
        get = path.get
        return lambda rows: sum(1 for i, row in rows if bool(get(i, row)) is expected)

    return make


_SUMMARY_TYPES: Dict[str, Callable[[Links, FieldPath], Callable[[Rows], Any]]] = {
    "record_count": lambda links, path: len,
    "count": lambda links, path: lambda rows: len(_values(links, path)(rows)),
    "sum": lambda links, path: lambda rows: sum(_numeric(links, path)(rows)),
    "maximum": lambda links, path: _ordered(links, path, max),
    "minimum": lambda links, path: _ordered(links, path, min),
    "max": lambda links, path: _ordered(links, path, max),
    "min": lambda links, path: _ordered(links, path, min),
    "latest": lambda links, path: _ordered(links, path, max),
    "earliest": lambda links, path: _ordered(links, path, min),
    "average": _average,
    "checked": _checked(True),
    "unchecked": _checked(False),
}


#: Summary and grouping types a site has (the client's summarize() documents them) that the
#: emulator does not compute: their results' forms are not documented.
_SITE_ONLY_SUMMARIES = frozenset({"percentage", "status_percentage", "status_list"})
_SITE_ONLY_GROUPINGS = frozenset(
    {
        "tens",
        "hundreds",
        "thousands",
        "tensofthousands",
        "hundredsofthousands",
        "millions",
        "day",
        "week",
        "month",
        "quarter",
        "year",
        "clustered_date",
        "oneday",
        "fivedays",
    }
)

# --- grouping -----------------------------------------------------------------------------

Grouping = Tuple[FieldPath, str, bool]


def _compile_groupings(links: Links, entity_type: str, specs: Any) -> List[Grouping]:
    if not isinstance(specs, list):
        raise ApiError("API summarize() grouping must be a list of {field, type, direction}")
    compiled = []
    for spec in specs:
        if not isinstance(spec, dict):
            raise ApiError(f"API summarize() invalid grouping {spec!r}")
        path = resolve_path(links, entity_type, spec.get("field"), "summarize")
        kind = spec.get("type", "exact")
        if kind not in ("exact", "entitytype", "firstletter"):
            known = (
                "a site's grouping type that is not emulated"
                if kind in _SITE_ONLY_GROUPINGS
                else "unknown"
            )
            raise ApiError(
                f"API summarize() grouping type {kind!r} is {known} "
                "(emulated: exact, entitytype, firstletter)"
            )
        if spec.get("direction", "asc") not in ("asc", "desc"):
            raise ApiError("API summarize() grouping direction must be asc or desc")
        compiled.append((path, kind, spec.get("direction", "asc") == "desc"))
    return compiled


def _group_order(bucket: Tuple[str, Any, Rows]) -> Tuple[int, Any]:
    """Groups in the order of their values, as a site sorts them: numbers and dates by
    value, anything else (text, links, lists, none) by its name."""
    name, value, _ = bucket
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return (1, value.isoformat())
    return (2, str(name).lower())


def _groups(
    links: Links, rows: Rows, summaries: List[Summary], groupings: List[Grouping]
) -> List[Dict[str, Any]]:
    if not groupings:
        return []
    (path, kind, descending), rest = groupings[0], groupings[1:]
    buckets: Dict[Any, Tuple[str, Any, Rows]] = {}
    for entity_id, row in rows:
        value = render(path.field, path.get(entity_id, row), links)
        key, name, group_value = _group_of(value, kind)
        buckets.setdefault(key, (name, group_value, []))[2].append((entity_id, row))
    ordered = sorted(buckets.values(), key=_group_order)
    if descending:
        ordered.reverse()
    groups = []
    for name, group_value, members in ordered:
        group: Dict[str, Any] = {
            "group_name": name,
            "group_value": group_value,
            "summaries": _summarize_rows(members, summaries),
        }
        if rest:
            group["groups"] = _groups(links, members, summaries, rest)
        groups.append(group)
    return groups


def _group_of(value: Any, kind: str) -> Tuple[Any, str, Any]:
    """(bucket key, group_name, group_value) of one row's value."""
    if isinstance(value, dict):
        if kind == "entitytype":
            return value["type"], value["type"], value["type"]
        linked = dict(value, valid="valid")
        return (value["type"], value["id"]), str(value.get("name") or ""), linked
    if isinstance(value, list):
        value = ", ".join(str(item.get("name")) for item in value) or None
    if kind == "firstletter" and isinstance(value, str):
        letter = value[:1].upper()
        return letter, letter, letter
    name = "" if value is None else str(value)
    return value if not isinstance(value, (dict, list)) else name, name, value
