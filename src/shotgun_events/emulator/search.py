"""`text_search`: the site's global search over entity names (``query_display_name_cache``).

A site answers ``{"matches": [...], "terms": [...]}``: the text split into lower-case terms,
and the entities of the asked types (each with its own filters, optionally within some
projects) whose display name holds every term, in the order the types were asked, each
match as ``{"id", "type", "name", "project_id", "image", "links", "status"}`` where `links`
is ``[type, name]`` of the entity a Task or Version belongs to (``["", ""]`` otherwise).
This module must never write to the store.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .errors import ApiError
from .query import compile_filters
from .values import Links

MIN_TEXT = 3
DEFAULT_MAX_RESULTS = 50


def text_search(links: Links, params: Any) -> Dict[str, Any]:
    if not isinstance(params, dict):
        raise ApiError("API text_search() expects an object with 'text' and 'entity_types'")
    text = params.get("text")
    if not isinstance(text, str) or len(text.strip()) < MIN_TEXT:
        raise ApiError(f"API text_search() text must be at least {MIN_TEXT} characters long")
    entity_types = params.get("entity_types")
    if not isinstance(entity_types, dict) or not entity_types:
        raise ApiError("API text_search() entity_types must name at least one entity type")
    project_ids = params.get("project_ids") or []
    if not isinstance(project_ids, list):
        raise ApiError("API text_search() project_ids must be a list of Project ids")
    limit = params.get("max_results") or DEFAULT_MAX_RESULTS
    if not isinstance(limit, int) or limit < 1:
        raise ApiError("API text_search() max_results must be a positive integer")
    terms = text.lower().split()
    matches: List[Dict[str, Any]] = []
    with links.store.lock:
        for entity_type, filters in entity_types.items():
            matches.extend(_matches(links, entity_type, filters, project_ids, terms))
    return {"matches": matches[:limit], "terms": terms}


def _matches(
    links: Links, entity_type: Any, filters: Any, project_ids: List[Any], terms: List[str]
) -> List[Dict[str, Any]]:
    """The entities of one type whose name holds every term and that pass the filters."""
    if links.schema.entity(entity_type) is None:
        raise ApiError(f"API text_search() unknown entity type {entity_type!r}")
    predicate = compile_filters(links, entity_type, filters, "text_search")
    table = links.store.table(entity_type)
    found = []
    for entity_id in table.ids:
        row = table.rows[entity_id]
        if entity_id in table.retired or not _in_projects(entity_type, entity_id, row, project_ids):
            continue
        name = links.name_of(entity_type, row)
        if not isinstance(name, str) or not all(term in name.lower() for term in terms):
            continue
        if predicate(entity_id, row):
            found.append(_match(links, entity_type, entity_id, row, name))
    return found


def _in_projects(
    entity_type: str, entity_id: int, row: Dict[str, Any], project_ids: List[Any]
) -> bool:
    if not project_ids:
        return True
    if entity_type == "Project":
        return entity_id in project_ids
    project = row.get("project")
    return bool(project) and project["id"] in project_ids


def _match(
    links: Links, entity_type: str, entity_id: int, row: Dict[str, Any], name: str
) -> Dict[str, Any]:
    project = row.get("project")
    parent = links.render(row.get("entity")) if isinstance(row.get("entity"), dict) else None
    return {
        "id": entity_id,
        "type": entity_type,
        "name": name,
        "project_id": entity_id if entity_type == "Project" else (project or {}).get("id"),
        "image": row.get("image"),
        "links": [parent["type"], parent["name"]] if parent else ["", ""],
        "status": row.get("sg_status_list"),
    }
