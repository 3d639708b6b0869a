"""Keeping a site across restarts in one SQLite file (`--data FILE`).

The store stays in memory for speed; this backend is written through on every committed
transaction (rows as JSON, plus the id counters, so ids never repeat after a restart and a
reserved-but-never-committed id stays a gap) and read back in full at start. Script keys
are kept too, so a restarted site still knows its scripts. This module must never decide
what a row contains; it stores what the store hands it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

Row = Dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    entity_type TEXT NOT NULL,
    id INTEGER NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL,
    PRIMARY KEY (entity_type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (entity_type TEXT PRIMARY KEY, next_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scripts (name TEXT PRIMARY KEY, key TEXT NOT NULL);
"""


class SqlitePersistence:
    """A site's rows, id counters and script keys in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self) -> Tuple[Iterator[Tuple[str, int, Row, bool]], Dict[str, int]]:
        """Every stored row (type, id, row, retired) and the id counters."""
        with self._lock:
            counters = dict(self._db.execute("SELECT entity_type, next_id FROM counters"))
            records = self._db.execute("SELECT entity_type, id, retired, data FROM rows").fetchall()
        return _decode(records), counters

    def save(
        self, rows: List[Tuple[str, int, Optional[Row], bool]], next_ids: Dict[str, int]
    ) -> None:
        """Write changed rows (None = removed) and the counters in one transaction."""
        encoded: Dict[int, str] = {}  # bulk events share one row object: encode it once
        upserts = []
        deletes = []
        for entity_type, entity_id, row, retired in rows:
            if row is None:
                deletes.append((entity_type, entity_id))
                continue
            text = encoded.get(id(row))
            if text is None:
                text = encoded[id(row)] = json.dumps(row, separators=(",", ":"))
            upserts.append((entity_type, entity_id, int(retired), text))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO rows (entity_type, id, retired, data) VALUES (?,?,?,?)",
                    upserts,
                )
                self._db.executemany("DELETE FROM rows WHERE entity_type=? AND id=?", deletes)
                self._db.executemany(
                    "INSERT OR REPLACE INTO counters (entity_type, next_id) VALUES (?, ?)",
                    list(next_ids.items()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load_scripts(self) -> Dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT name, key FROM scripts"))

    def save_scripts(self, scripts: Dict[str, str]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM scripts")
            self._db.executemany(
                "INSERT INTO scripts (name, key) VALUES (?, ?)", list(scripts.items())
            )
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _decode(records: List[Tuple[str, int, int, str]]) -> Iterator[Tuple[str, int, Row, bool]]:
    """Rows from their JSON; runs of identical events (a bulk insert) share one dict again.

    Only events may share: they never change after they are written, entity rows do.
    """
    previous_text, previous_row = None, None
    for entity_type, entity_id, retired, text in records:
        if entity_type == "EventLogEntry" and text == previous_text:
            yield entity_type, entity_id, previous_row, bool(retired)  # type: ignore[misc]
            continue
        row = json.loads(text)
        if entity_type == "EventLogEntry":
            previous_text, previous_row = text, row
        yield entity_type, entity_id, row, bool(retired)
