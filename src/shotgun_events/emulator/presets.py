"""`find`'s additional_filter_presets: the site's named filters that are not plain conditions.

The client's reference ("Additional Filter Presets") documents them: on Versions, ``LATEST``
by ``ENTITIES_CREATED_AT`` keeps the Version created last per linked entity, and by
``BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT`` the one whose task's step is furthest
(highest ``list_order``, then created last); ``CUT_SHOT_VERSIONS`` and the Cut preset need
Cuts, which the emulator does not have. A preset compiles to a function that narrows the
ids a read matched; a malformed, unknown or doubled preset is an ApiError. This module must
never write to the store.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ApiError
from .store import Row
from .values import Links

_LATEST_BY = ("ENTITIES_CREATED_AT", "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT")
_SITE_PRESETS = {"Version": ("LATEST", "CUT_SHOT_VERSIONS"), "Cut": ("LATEST",)}
Preset = Callable[[List[int], Dict[int, Row]], List[int]]


def compile_presets(links: Links, entity_type: str, presets: Any) -> Optional[Preset]:
    """The presets of a read as one function narrowing the matching ids, or None."""
    if presets is None:
        return None
    where = "API read() additional_filter_presets"
    if not isinstance(presets, list) or not all(isinstance(p, dict) for p in presets):
        raise ApiError(f"{where} must be a list of {{'preset_name': ..., ...}} objects")
    names = [preset.get("preset_name") for preset in presets]
    if None in names or "" in names:
        raise ApiError(f"{where}: every preset needs a 'preset_name'")
    known = _SITE_PRESETS.get(entity_type, ())
    for name in names:
        if name not in known:
            raise ApiError(
                "{}: {!r} is not a preset for {} (presets for it: {})".format(
                    where, name, entity_type, ", ".join(known) or "none"
                )
            )
        if name == "CUT_SHOT_VERSIONS":
            raise ApiError(f"{where}: CUT_SHOT_VERSIONS is not emulated (the site has no Cuts)")
    if names.count("LATEST") > 1:
        raise ApiError(f"{where}: only one LATEST preset may be given")
    latest_by = presets[names.index("LATEST")].get("latest_by")
    if latest_by not in _LATEST_BY:
        raise ApiError(
            "{}: LATEST needs latest_by {} for {}, got {!r}".format(
                where, " or ".join(_LATEST_BY), entity_type, latest_by
            )
        )
    return _latest_versions(links, by_step=latest_by != "ENTITIES_CREATED_AT")


def _latest_versions(links: Links, by_step: bool) -> Preset:
    """Per linked entity, the Version created last (or the one furthest in the pipeline:
    its task's step with the highest list_order, then the one created last)."""
    store = links.store

    def step_order(row: Row) -> Any:
        task_link = row.get("sg_task")
        task = store.active_row("Task", task_link["id"]) if task_link else None
        step_link = (task or {}).get("step")
        step = store.active_row("Step", step_link["id"]) if step_link else None
        order = (step or {}).get("list_order")
        return (order is not None, order or 0)

    def narrow(ids: List[int], rows: Dict[int, Row]) -> List[int]:
        best: Dict[Any, Tuple[Any, int]] = {}
        for entity_id in ids:
            row = rows[entity_id]
            key = links.key(row.get("entity"))
            rank = (step_order(row) if by_step else (), row.get("created_at") or "", entity_id)
            if key not in best or rank > best[key][0]:
                best[key] = (rank, entity_id)
        chosen = {entity_id for _, entity_id in best.values()}
        return [entity_id for entity_id in ids if entity_id in chosen]

    return narrow
