"""`Emulator`: one local site, started and controlled from Python.

This is the object tests, benchmarks, the `demo` command and plugin authors hold: it builds
the schema, store, site and HTTP server, serves on a background thread, hands out connected
`shotgun_api3` clients, and exposes the test controls (faults, bulk events, late ids,
scripts, stats, the activity generator). The same controls are reachable over HTTP through
control.py. This module must never implement API behaviour itself; it wires the parts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Tuple, Union

from .api import Site
from .eventlog import Reservation
from .faults import Faults
from .persistence import SqlitePersistence
from .schema import load_schema
from .server import SiteServer, Stats, serve, shutdown
from .store import Store

if TYPE_CHECKING:
    import shotgun_api3

    from .generator import ActivityGenerator


class Emulator:
    """A local Flow Production Tracking site for the unmodified `shotgun_api3` client.

    ``Emulator(scripts={"daemon": "key1"}).start()`` serves on `url` until `stop()`; it is
    also a context manager. `data_path` keeps the site in SQLite across restarts;
    `schema_path` extends the built-in schema from a JSON file (or a list of files).
    """

    def __init__(
        self,
        scripts: Optional[Dict[str, str]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: Optional[str] = None,
        schema_path: Union[str, Iterable[str], None] = None,
    ) -> None:
        paths = [schema_path] if isinstance(schema_path, str) else list(schema_path or [])
        self.schema = load_schema(paths)
        self.store = Store(list(self.schema.entities))
        self.site = Site(self.schema, self.store)
        self.faults = Faults()
        self.host = host
        self.port = port
        self._stats = Stats()
        self._server: Optional[SiteServer] = None
        self._thread: Optional[threading.Thread] = None
        self._reservations: Dict[int, Reservation] = {}
        self._generator: Optional[ActivityGenerator] = None
        self._persistence = SqlitePersistence(data_path) if data_path else None
        if self._persistence is not None:
            rows, next_ids = self._persistence.load()
            self.store.load(rows, next_ids)
            self.store.persistence = self._persistence
            for name, key in self._persistence.load_scripts().items():
                self.site.set_script(name, key)
        for name, key in (scripts or {}).items():
            self.add_script(name, key)

    # --- running --------------------------------------------------------------------

    def start(self) -> Emulator:
        """Serve on a background thread; `url` is valid afterwards. Returns self."""
        if self._server is not None:
            return self
        from .control import perform

        self._server = SiteServer(
            (self.host, self.port),
            api=self.site.call,
            control=lambda request: perform(self, request),
            faults=self.faults,
            stats=self._stats,
            forms=self.site.files.form,
            downloads=self.site.files.download,
        )
        self.port = self._server.server_address[1]
        self._thread = serve(self._server)
        return self

    def stop(self) -> None:
        """Stop the generator and the server, close open connections and the data file."""
        self.stop_generator()
        if self._server is not None:
            shutdown(self._server, self._thread)
            self._server = None
            self._thread = None
        if self._persistence is not None:
            self._persistence.close()
            self._persistence = None
            self.store.persistence = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The site URL to give `shotgun_api3.Shotgun` (``http://127.0.0.1:PORT``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- clients and scripts ------------------------------------------------------------

    def client(self, script: Optional[str] = None, **kwargs: Any) -> shotgun_api3.Shotgun:
        """A `shotgun_api3.Shotgun` connected as `script` (default: the first script)."""
        import shotgun_api3

        name, key = self._script(script)
        return shotgun_api3.Shotgun(self.url, name, key, **kwargs)

    def as_user(self, login: str, script: Optional[str] = None) -> shotgun_api3.Shotgun:
        """A client whose changes are made as the HumanUser `login` (created if absent).

        It authenticates as a script with `sudo_as_login`, so events carry the HumanUser
        as `user`, like changes made by an artist in the web app.
        """
        self.site.ensure_human_user(login)
        return self.client(script, sudo_as_login=login)

    def ensure_human_user(self, login: str, name: Optional[str] = None) -> Dict[str, Any]:
        """The HumanUser link for `login`, created quietly (no event) if needed."""
        return self.site.ensure_human_user(login, name)

    def add_script(self, name: str, key: str) -> Dict[str, Any]:
        """Add a script (ApiUser) that can authenticate with `key`; returns its link."""
        user = self.site.set_script(name, key)
        self._save_scripts()
        return user

    def set_script_key(self, name: str, key: str) -> None:
        """Change a script's key: clients holding the old key get AuthenticationFault."""
        self.site.set_script(name, key)
        self._save_scripts()

    def remove_script(self, name: str) -> None:
        self.site.remove_script(name)
        self._save_scripts()

    def _script(self, script: Optional[str]) -> Tuple[str, str]:
        scripts = self.site.scripts()
        if not scripts:
            raise RuntimeError("the emulator has no scripts; add one with add_script()")
        name = script or next(iter(scripts))
        if name not in scripts:
            raise KeyError("unknown script {!r} (known: {})".format(name, ", ".join(scripts)))
        return name, scripts[name]

    def _save_scripts(self) -> None:
        if self._persistence is not None:
            self._persistence.save_scripts(self.site.scripts())

    # --- events -------------------------------------------------------------------------

    def latest_event_id(self) -> Optional[int]:
        """The newest committed EventLogEntry id (None when the site has no events)."""
        return self.site.events.latest_id()

    def insert_events(
        self,
        count: int,
        event_type: str = "Shotgun_Shot_Change",
        attribute_name: Optional[str] = "sg_status_list",
        **overrides: Any,
    ) -> Tuple[int, int]:
        """Commit `count` identical events with consecutive ids; returns (first, last)."""
        return self.site.events.insert_events(count, event_type, attribute_name, **overrides)

    def insert_event(self, event_type: str = "Shotgun_User_Login", **fields: Any) -> int:
        """Commit one event of any type (non-entity and custom ones too); returns its id."""
        return self.site.events.insert_event(event_type, **fields)

    def reserve_event_id(self) -> Reservation:
        """Allocate an event id now that stays invisible until `.commit(**fields)`."""
        reservation = self.site.events.reserve()
        self._reservations[reservation.id] = reservation
        if self._persistence is not None:
            self._persistence.save([], dict(self.store.next_ids))
        return reservation

    def commit_event(self, event_id: int, **fields: Any) -> int:
        """Commit a reserved id by number (what the control API uses)."""
        reservation = self._reservations.pop(event_id, None)
        if reservation is None:
            raise KeyError(f"event id {event_id!r} was not reserved or is already committed")
        return reservation.commit(**fields)

    # --- stats and activity -------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Requests per API method, total requests, bytes received and sent."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def start_generator(self, rate: float, seed: Optional[int] = None) -> ActivityGenerator:
        """Produce realistic artist activity at about `rate` events per second."""
        from .generator import ActivityGenerator

        self.stop_generator()
        self._generator = ActivityGenerator(self.site, rate, seed=seed)
        self._generator.start()
        return self._generator

    def stop_generator(self) -> None:
        if self._generator is not None:
            self._generator.stop()
            self._generator = None
