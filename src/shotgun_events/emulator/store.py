"""The site's rows in memory: one table per entity type, ids kept sorted, writes in transactions.

Every read and write of entity data goes through a `Store`. A table keeps its committed ids
in a sorted list, so id conditions (the daemon's `id > N` poll and `id in [...]` gap
queries) are bisections rather than scans of a million-row EventLogEntry table. Writes
happen in a `Transaction` that is atomic (undone as a whole on error, as a site's `batch`
is) and, when a persistence backend is attached, written through to it on commit.
This module must never validate field values or build events: it only keeps rows.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Set, Tuple

Row = Dict[str, Any]
RowKey = Tuple[str, int]


class Persistence(Protocol):
    """What a store writes through to (see persistence.py)."""

    def save(self, rows: List[Tuple[str, int, Optional[Row], bool]], next_ids: Dict[str, int]):
        """Write changed rows (row None = removed) and the id counters, atomically."""


class Table:
    """The rows of one entity type; `ids` holds every committed id, sorted."""

    __slots__ = ("entity_type", "ids", "retired", "rows")

    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.rows: Dict[int, Row] = {}
        self.ids: List[int] = []
        self.retired: Set[int] = set()

    def add(self, entity_id: int, row: Row) -> None:
        """Insert a committed row; ids usually arrive in order, late ones are bisected in."""
        self.rows[entity_id] = row
        if not self.ids or entity_id > self.ids[-1]:
            self.ids.append(entity_id)
        else:
            bisect.insort(self.ids, entity_id)

    def discard(self, entity_id: int) -> None:
        """Remove a row entirely (only a rolled-back insert does this)."""
        if self.rows.pop(entity_id, None) is None:
            return
        index = bisect.bisect_left(self.ids, entity_id)
        if index < len(self.ids) and self.ids[index] == entity_id:
            del self.ids[index]
        self.retired.discard(entity_id)

    def id_range(self, low: Optional[int], high: Optional[int]) -> Tuple[int, int]:
        """Index bounds in `ids` of the ids with low < id < high (None = unbounded)."""
        start = 0 if low is None else bisect.bisect_right(self.ids, low)
        stop = len(self.ids) if high is None else bisect.bisect_left(self.ids, high)
        return start, max(start, stop)


class Store:
    """All tables of the site, their id counters, and the one lock that guards them."""

    def __init__(self, entity_types: List[str]) -> None:
        self.lock = threading.RLock()
        self.tables: Dict[str, Table] = {name: Table(name) for name in entity_types}
        self.next_ids: Dict[str, int] = {}
        self.persistence: Optional[Persistence] = None

    def table(self, entity_type: str) -> Table:
        table = self.tables.get(entity_type)
        if table is None:
            table = self.tables[entity_type] = Table(entity_type)
        return table

    def allocate_id(self, entity_type: str) -> int:
        """A new id for `entity_type`, never handed out before (ids only grow, like a site's)."""
        with self.lock:
            entity_id = self.next_ids.get(entity_type, 1)
            self.next_ids[entity_type] = entity_id + 1
            return entity_id

    def allocate_ids(self, entity_type: str, count: int) -> int:
        """Reserve `count` consecutive ids; returns the first."""
        with self.lock:
            first = self.next_ids.get(entity_type, 1)
            self.next_ids[entity_type] = first + count
            return first

    def row(self, entity_type: str, entity_id: int) -> Optional[Row]:
        """A committed row, retired or not."""
        table = self.tables.get(entity_type)
        return table.rows.get(entity_id) if table else None

    def active_row(self, entity_type: str, entity_id: Any) -> Optional[Row]:
        """A committed row that is not retired (what a link may point at)."""
        table = self.tables.get(entity_type)
        if table is None or entity_id in table.retired:
            return None
        return table.rows.get(entity_id)

    def is_retired(self, entity_type: str, entity_id: int) -> bool:
        table = self.tables.get(entity_type)
        return bool(table) and entity_id in table.retired

    def transaction(self) -> Transaction:
        return Transaction(self)

    def bulk_add(self, entity_type: str, rows: List[Tuple[int, Row]]) -> None:
        """Commit many new rows at once (the bulk event insert); one write-through."""
        with self.lock:
            table = self.table(entity_type)
            for entity_id, row in rows:
                table.add(entity_id, row)
            if self.persistence is not None:
                self.persistence.save(
                    [(entity_type, entity_id, row, False) for entity_id, row in rows],
                    dict(self.next_ids),
                )

    def load(self, rows: Iterator[Tuple[str, int, Row, bool]], next_ids: Dict[str, int]) -> None:
        """Fill the store from persisted rows (any order) at start."""
        with self.lock:
            for entity_type, entity_id, row, retired in rows:
                table = self.table(entity_type)
                table.rows[entity_id] = row
                if retired:
                    table.retired.add(entity_id)
            for table in self.tables.values():
                table.ids = sorted(table.rows)
            for entity_type, next_id in next_ids.items():
                self.next_ids[entity_type] = max(next_id, self.next_ids.get(entity_type, 1))


class Transaction:
    """A unit of writes under the store lock: all of it commits or none of it does.

    Ids allocated inside a transaction that rolls back stay used, as a database sequence's
    do, so a failed batch leaves gaps in the event ids exactly as a site can.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._undo: List[Callable[[], None]] = []
        self._dirty: Dict[RowKey, None] = {}
        self.after_commit: List[Callable[[], None]] = []

    def __enter__(self) -> Transaction:
        self.store.lock.acquire()
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            if exc_type is None:
                self._commit()
            else:
                self._rollback()
        finally:
            self.store.lock.release()
        if exc_type is None:
            for callback in self.after_commit:
                callback()

    def insert(self, entity_type: str, entity_id: int, row: Row) -> None:
        table = self.store.table(entity_type)
        table.add(entity_id, row)
        self._undo.append(lambda: table.discard(entity_id))
        self._dirty[(entity_type, entity_id)] = None

    def update(self, entity_type: str, entity_id: int, changes: Row) -> None:
        """Set fields on an existing row; the previous values come back on rollback."""
        row = self.store.table(entity_type).rows[entity_id]
        missing = object()
        previous = {name: row.get(name, missing) for name in changes}

        def undo() -> None:
            for name, value in previous.items():
                if value is missing:
                    row.pop(name, None)
                else:
                    row[name] = value

        row.update(changes)
        self._undo.append(undo)
        self._dirty[(entity_type, entity_id)] = None

    def set_retired(self, entity_type: str, entity_id: int, retired: bool) -> None:
        table = self.store.table(entity_type)
        was_retired = entity_id in table.retired
        if retired:
            table.retired.add(entity_id)
        else:
            table.retired.discard(entity_id)

        def undo() -> None:
            if was_retired:
                table.retired.add(entity_id)
            else:
                table.retired.discard(entity_id)

        self._undo.append(undo)
        self._dirty[(entity_type, entity_id)] = None

    def _rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()

    def _commit(self) -> None:
        persistence = self.store.persistence
        if persistence is None or not self._dirty:
            return
        changed = []
        for entity_type, entity_id in self._dirty:
            table = self.store.table(entity_type)
            row = table.rows.get(entity_id)
            changed.append((entity_type, entity_id, row, entity_id in table.retired))
        try:
            persistence.save(changed, dict(self.store.next_ids))
        except Exception:
            self._rollback()
            raise
