"""Reverse link fields: the other side of a link, kept in step the way a site keeps it.

On a site, a link field and its reverse field are two views of one connection: setting
``Shot.sg_sequence`` lists the shot in ``Sequence.shots``, adding a task to
``Task.upstream_tasks`` adds the other task's ``downstream_tasks``. The schema says which
field is whose reverse (`Field.reverse`). Given one field change the API layer has made,
`ReverseLinks.follow` makes every change it implies on the other side, in the same
transaction, and returns them so that the API layer can log them: a reverse change can
imply another one (a shot moved to another sequence leaves the old sequence's ``shots``),
and those are followed too until nothing changes. Rows are changed as stored, links to
retired entities included, so that a revived entity comes back linked on both sides.
This module must never validate values or write events: it only keeps both sides equal.
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Dict, List, Optional, Tuple

from .schema import Field, Schema
from .store import Row, Store, Transaction

LinkKey = Tuple[str, int]


class LinkChange:
    """The links of one field of one entity that were added and removed (as (type, id))."""

    __slots__ = ("added", "entity_id", "entity_type", "field", "old", "removed")

    def __init__(
        self,
        entity_type: str,
        entity_id: int,
        field: Field,
        added: List[LinkKey],
        removed: List[LinkKey],
        old: Any = None,
    ) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.field = field
        self.added = added
        self.removed = removed
        #: The field's stored value before the change (for a reverse change's old_value).
        self.old = old


def link_keys(field: Field, value: Any) -> List[LinkKey]:
    """The (type, id) of each link a stored entity or multi-entity value holds."""
    links = value if field.data_type == "multi_entity" else [value]
    return [(link["type"], link["id"]) for link in links or [] if link]


def changed_links(field: Field, old: Any, new: Any) -> Tuple[List[LinkKey], List[LinkKey]]:
    """(added, removed) between two stored values of a link field."""
    before, after = link_keys(field, old), link_keys(field, new)
    return [k for k in after if k not in before], [k for k in before if k not in after]


class ReverseLinks:
    """Follows link changes to the reverse fields of the linked entities."""

    def __init__(self, schema: Schema, store: Store) -> None:
        self.schema = schema
        self.store = store

    def follow(self, tx: Transaction, change: LinkChange, stamps: Row) -> List[LinkChange]:
        """Apply to the store every reverse change `change` implies; returns them in order.

        `change` must already be in the store. `stamps` (updated_at, updated_by) go on every
        entity changed here. One entry per reverse field changed, merged when a field is
        reached twice.
        """
        done: Dict[Tuple[str, int, str], LinkChange] = {}
        queue: Deque[LinkChange] = collections.deque([change])
        while queue:
            current = queue.popleft()
            me = {"type": current.entity_type, "id": current.entity_id}
            edits = [(key, False) for key in current.removed] + [
                (key, True) for key in current.added
            ]
            for (linked_type, linked_id), adding in edits:
                implied = self._edit(tx, current.field, linked_type, linked_id, me, adding, stamps)
                if implied is None:
                    continue
                queue.append(implied)
                slot = (linked_type, linked_id, implied.field.name)
                if slot in done:
                    _merge(done[slot], implied)
                else:
                    done[slot] = implied
        return [c for c in done.values() if c.added or c.removed]

    def _edit(
        self,
        tx: Transaction,
        field: Field,
        linked_type: str,
        linked_id: int,
        me: Dict[str, Any],
        adding: bool,
        stamps: Row,
    ) -> Optional[LinkChange]:
        """Add `me` to (or remove it from) the reverse field on one linked entity."""
        reverse_name = field.reverse.get(linked_type)
        reverse = self.schema.field(linked_type, reverse_name) if reverse_name else None
        row = self.store.row(linked_type, linked_id)
        if reverse is None or row is None:
            return None
        old = row.get(reverse.name)
        new = _with(reverse, old, me) if adding else _without(reverse, old, me)
        added, removed = changed_links(reverse, old, new)
        if not added and not removed:
            return None
        tx.update(linked_type, linked_id, {reverse.name: new, **stamps})
        return LinkChange(linked_type, linked_id, reverse, added, removed, old)


def _with(field: Field, old: Any, link: Dict[str, Any]) -> Any:
    if field.data_type == "entity":
        return dict(link)
    links = list(old or [])
    if not any(_same(item, link) for item in links):
        links.append(dict(link))
    return links


def _without(field: Field, old: Any, link: Dict[str, Any]) -> Any:
    if field.data_type == "entity":
        return None if old and _same(old, link) else old
    return [item for item in old or [] if not _same(item, link)]


def _same(one: Dict[str, Any], other: Dict[str, Any]) -> bool:
    return one["type"] == other["type"] and one["id"] == other["id"]


def _merge(first: LinkChange, later: LinkChange) -> None:
    """One field reached twice: its net change since before the first time."""
    for key in later.added:
        if key in first.removed:
            first.removed.remove(key)
        elif key not in first.added:
            first.added.append(key)
    for key in later.removed:
        if key in first.added:
            first.added.remove(key)
        elif key not in first.removed:
            first.removed.append(key)
