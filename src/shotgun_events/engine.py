"""The engine: one poll loop that reads the site's event log and feeds every plugin's worker.

The engine keeps the *head* (the highest event id its poll has settled) and the set of open
gaps, reads the next page after the head, routes each event to the workers whose plugins can
want its type, and asks for open gaps on every poll until they appear or time out. It also
scans plugin folders (hot reload) and checkpoints the state file.

It must never wait for a plugin: a worker whose inbox is full is detached and catches up by
reading the site on its own. It sleeps only when the site has nothing more to give.
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Deque, Dict, FrozenSet, List, Optional, Set, Tuple

from .config import Config, PluginFolderSettings
from .observe import EngineObserver
from .plugins import FolderScan, Plugin, PluginEnvironment, make_importable, scan_folders
from .process_worker import ProcessPlugin
from .reader import Page, describe_jump
from .retry import OutageLog
from .site import OutageMonitor, Site, Stopping
from .state import PluginKey, PluginProgress, ProgressJournal, SavedState, StateStore
from .workers import (
    INACTIVE,
    Batch,
    ExpiredGaps,
    LateEvents,
    Message,
    OperatorRequest,
    PluginWorker,
)

log = logging.getLogger("engine")

#: How long the first poll waits for plugins to load, so that they all start together from
#: one read of the site rather than each catching up alone.
STARTUP_GRACE = 10.0

#: How long one poll may wait, in all, for workers whose inbox is full to make room. A
#: plugin that keeps up (a page in this time) shares the engine's reads; a slower one is
#: detached and reads on its own, so it delays the others by at most this, once.
BACKPRESSURE_WAIT = 0.25

#: While events stream in (no idle sleep between polls), plugin folders are scanned for
#: changes at most this often, not once per page.
SCAN_INTERVAL = 1.0


@dataclass
class _Request:
    kind: str  # "attach", "detached", "reloaded"
    worker: PluginWorker


def start_head(positions: List[int], backlog: int) -> int:
    """Where the engine's own reading starts: the lowest position among the plugins close to
    the most advanced one. A plugin far behind the others (stopped for weeks, restored from
    an old state) reads its own way back instead of making every plugin wait for it."""
    top = max(positions)
    return min(p for p in positions if top - p <= backlog)


class Engine:
    """Polls the site and drives one worker per plugin. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        environment: Optional[PluginEnvironment] = None,
        timing_log: Optional[logging.Logger] = None,
        observer: Optional[EngineObserver] = None,
    ) -> None:
        daemon = config.daemon
        self.config = config
        make_importable([folder.resolved for folder in config.plugins.folders], config.path.parent)
        self.batch_size = daemon.max_event_batch_size
        self.gap_timeout = daemon.gap_timeout
        self.fetch_interval = daemon.fetch_interval
        self.recheck_interval = daemon.fetch_interval
        self.callback_timeout = daemon.callback_timeout
        self.stop_event = threading.Event()
        self.head = 0
        self.environment = environment or PluginEnvironment(
            server=config.site.server,
            proxy_server=config.site.proxy_server,
            use_session_uuid=config.site.use_session_uuid,
            site_timeout=daemon.site_timeout,
            log_level=daemon.log_level,
            default_retry=daemon.plugin_retry,
        )
        self.timing_log = timing_log
        self.observer = observer or EngineObserver()
        self.outage = OutageMonitor(log, daemon.max_conn_retries)
        #: Plugins' own site outages (callbacks retried per their policy), for logs and status.
        self.outage_log = OutageLog()
        self.state = StateStore(
            daemon.event_id_file, save_interval=daemon.state_save_interval, logger=log
        )
        self.site = self.make_site()
        self.workers: Dict[PluginKey, PluginWorker] = {}
        self.progress: Dict[PluginKey, PluginProgress] = {}
        self._journals: Dict[PluginKey, ProgressJournal] = {}
        #: Workers of removed plugins that may still be finishing an event.
        self._retiring: Dict[PluginKey, PluginWorker] = {}
        self._running = False
        self._last_scan = -SCAN_INTERVAL
        self._saver = threading.Thread(
            target=self._housekeeping_loop, name="housekeeping", daemon=True
        )
        self.gaps: Dict[int, float] = {}
        self._saved: Optional[SavedState] = None
        self._attached: Set[PluginWorker] = set()
        self._routes: Dict[str, List[PluginWorker]] = {}
        self._everything: List[PluginWorker] = []
        self._wanted_types: Optional[FrozenSet[str]] = None
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._last_recheck = 0.0
        self._folder_problems: Dict[str, str] = {}
        self._refused: Dict[Tuple[str, str], str] = {}
        self.started_at: Optional[float] = None
        self.polls = 0
        self.last_poll_at: Optional[float] = None
        self.events_fetched = 0
        #: (event id, created_at as epoch seconds) of recent pages' last events, to tell how
        #: many seconds a lagging plugin is behind.
        self._times: Deque[Tuple[int, float]] = deque(maxlen=2000)

    # ------------------------------------------------------------ public

    def run(self) -> int:
        """Run until ``stop()``; returns the process exit code (0 after a clean stop)."""
        try:
            self._start()
            while not self.stop_event.is_set():
                self._tick()
        except Stopping:
            pass
        finally:
            self._shutdown()
        return 0

    def stop(self) -> None:
        """Ask the engine to stop; safe from signal handlers and other threads."""
        self.stop_event.set()
        self._wake.set()

    def rescan(self) -> None:
        """Look at the plugin folders now (SIGHUP) instead of at the next poll."""
        self._last_scan = -SCAN_INTERVAL
        self._wake.set()

    def status(self) -> Dict[str, Any]:
        """A JSON-ready picture of the engine for the status file, `status` and metrics.

        Read from other threads without locks: every value is a plain attribute read, so
        the picture may be a few milliseconds stale but is never torn in a harmful way.
        """
        now = time.monotonic()
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "written_at": time.time(),
            "config": str(self.config.path),
            "head": self.head,
            "last_poll_at": self.last_poll_at,
            "open_gaps": len(self.gaps),
            "site": {
                "url": self.config.site.server,
                "reachable": not self.outage.in_outage,
                "outage_seconds": None
                if self.outage.started is None
                else round(now - self.outage.started, 1),
                "failed_requests": self.outage.failures,
                "last_error": self.outage.last_error,
            },
            "state_file": {
                "path": str(self.config.daemon.event_id_file),
                "healthy": getattr(self.state, "healthy", True),
                "last_error": getattr(self.state, "last_error", None),
            },
            "plugins": [self._plugin_status(w, now) for w in list(self.workers.values())],
        }

    def _plugin_status(self, worker: PluginWorker, now: float) -> Dict[str, Any]:
        plugin, stats = worker.plugin, worker.stats
        position = worker.progress.position
        busy_for = None if stats.busy_since is None else round(now - stats.busy_since, 1)
        return {
            "folder": plugin.folder,
            "name": plugin.name,
            "path": str(plugin.path),
            "state": worker.mode,
            "active": plugin.active,
            "reason": plugin.inactive_reason,
            "position": position,
            "open_gaps": len(worker.progress.gaps),
            "lag_events": max(0, self.head - (position or 0)),
            "lag_seconds": self._lag_seconds(position),
            "queued_events": worker.queued_events,
            "delivered": stats.delivered,
            "callback_runs": stats.callback_runs,
            "errors": stats.errors,
            "last_error": stats.last_error,
            "busy_callback": stats.busy_callback,
            "busy_seconds": busy_for,
            "busy_deadline": stats.busy_timeout if busy_for is not None else None,
            "retries": self.outage_log.snapshot().get(plugin.name),
            "ordering": "strict" if worker.strict else "eager",
            "isolation": "process" if isinstance(plugin, ProcessPlugin) else "thread",
            "worker_pid": getattr(plugin, "pid", None),
            "worker_restarts": getattr(plugin, "restarts", None),
            "held_back_for": worker.held_back_for,
            "held_back_events": worker.held_back_events,
        }

    def _remember_times(self, page: Page) -> None:
        if page.events:
            created = page.events[-1].get("created_at")
            if isinstance(created, datetime):
                self._times.append((page.events[-1]["id"], created.timestamp()))

    def _lag_seconds(self, position: Optional[int]) -> Optional[float]:
        """How old the oldest event a plugin has not reached is, roughly (page resolution)."""
        if position is None or position >= self.head:
            return 0.0
        # A copy in one step (no thread switch inside tuple()): the poll appends meanwhile,
        # and iterating the deque itself could raise "deque mutated during iteration".
        times = tuple(self._times)
        index = bisect.bisect_right([event_id for event_id, _ in times], position)
        if index >= len(times):
            return None
        return round(max(0.0, time.time() - times[index][1]), 1)

    def operator(
        self,
        action: str,
        plugin: str,
        *,
        user: str,
        to: Optional[int] = None,
        latest: bool = False,
        wait: float = 30.0,
    ) -> Tuple[bool, str]:
        """Apply an operator's recovery command to one plugin; (done?, what happened).

        ``plugin`` is a plugin name, or ``folder/name`` when two folders hold the same
        name. The command runs on the plugin's own worker between two events; this waits
        up to ``wait`` seconds for it (a plugin busy in a long callback applies it later).
        """
        worker, problem = self._find_worker(plugin)
        if worker is None:
            return False, problem
        position = self.head if latest else to
        if action == "reset" and position is None:
            return False, "reset needs --to ID or --to-latest"
        request = OperatorRequest(action=action, user=user, position=position)
        log.warning(
            "Operator %s: %s %s%s.",
            user,
            action,
            plugin,
            "" if position is None else f" to {position}",
        )
        worker.submit(request)
        if not request.done.wait(wait):
            busy = worker.stats.busy_callback
            return False, (
                f"plugin {worker.plugin.name} is busy"
                + (f" in {busy}" if busy else "")
                + f"; the {action} is applied when it finishes its event"
            )
        return request.ok, request.message

    def _find_worker(self, name: str) -> Tuple[Optional[PluginWorker], str]:
        folder, _, plugin = name.rpartition("/")
        found = [
            worker
            for (key_folder, key_name), worker in list(self.workers.items())
            if key_name == plugin and (not folder or key_folder.rstrip("/") == folder.rstrip("/"))
        ]
        if len(found) == 1:
            return found[0], ""
        if not found:
            known = ", ".join(sorted(key[1] for key in self.workers)) or "none"
            return None, f"no plugin named {name!r} (plugins: {known})"
        where = ", ".join(f"{w.plugin.folder}/{w.plugin.name}" for w in found)
        return None, f"{name!r} is ambiguous: say which one ({where})"

    # ------------------------------------------------------------ WorkerHub

    def make_site(self) -> Site:
        site = self.config.site
        return Site(
            site.server,
            site.script_name,
            site.script_key.reveal(),
            proxy_server=site.proxy_server,
            timeout=self.config.daemon.site_timeout,
            retry_cap=self.config.daemon.conn_retry_sleep,
            outage=self.outage,
            stop_event=self.stop_event,
            on_request=self.observer.site_request,
        )

    @property
    def plugin_inbox_capacity(self) -> int:
        """Events one plugin may have waiting: ``max_plugin_backlog``, but at least a page, or
        every plugin would stop being fed at each full page and read the site on its own."""
        return max(self.config.daemon.max_plugin_backlog, self.batch_size)

    def request_attach(self, worker: PluginWorker) -> None:
        self._requests.put(_Request("attach", worker))
        self._wake.set()

    def worker_detached(self, worker: PluginWorker) -> None:
        self._requests.put(_Request("detached", worker))

    def plugin_reloaded(self, worker: PluginWorker) -> None:
        self._requests.put(_Request("reloaded", worker))

    # ------------------------------------------------------------ start and stop

    def _start(self) -> None:
        self.started_at = time.time()
        self._saved = self.state.load()
        if self._saved.source not in ("state file", "none"):
            log.error(
                "The state file %s could not be used as is; positions come from the %s. "
                "Events after those positions will be delivered again, none is skipped.",
                self.config.daemon.event_id_file,
                self._saved.source,
            )
        # Saved positions are tracked before anything can fail or wait (the site may be
        # down): a stop now must save them back, never an empty state.
        for key, progress in self._saved.plugins.items():
            self._keep(key, progress)
        latest = self.site.latest_event_id()
        log.info("The site's newest event is %d.", latest)
        self.head = latest
        self._scan_plugins(start_position=latest)
        # The classic fallbacks (the one-integer format, a plugin found under another
        # folder) are for the plugins there at start; a file that appears later starts now.
        self._saved = None
        known = [
            w.progress.position for w in self.workers.values() if w.progress.position is not None
        ]
        if known:
            self.head = min(start_head(known, self.config.daemon.max_plugin_backlog), latest)
        ahead = sorted(
            w.plugin.name for w in self.workers.values() if (w.progress.position or 0) > latest
        )
        if ahead:
            log.warning(
                "The saved positions of %s are ahead of the site's newest event (%d): was the "
                "site restored from a backup, or is this another site? They wait until the "
                "site passes them.",
                ", ".join(ahead),
                latest,
            )
        self.state.checkpoint()
        self._saver.start()
        for worker in self.workers.values():
            worker.start()
        self._running = True
        self._wait_for_plugins()

    def _wait_for_plugins(self) -> None:
        deadline = time.monotonic() + STARTUP_GRACE
        while time.monotonic() < deadline and not self.stop_event.is_set():
            self._handle_requests()
            if all(w.is_attached or w.mode == INACTIVE for w in self.workers.values()):
                return
            self._wake.wait(0.05)
            self._wake.clear()

    def _shutdown(self) -> None:
        self.stop_event.set()
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + self.config.daemon.stop_timeout
        for worker in self.workers.values():
            if not worker.join(max(0.0, deadline - time.monotonic())):
                close = getattr(worker.plugin, "close", None)
                if close is not None:  # a worker process stuck in a callback: kill it
                    close()
                log.warning(
                    "Plugin %s did not finish event %s within %.0f s; it will get that event "
                    "again at the next start.",
                    worker.plugin.name,
                    worker.stats.current_event_id,
                    self.config.daemon.stop_timeout,
                )
        if self._saver.is_alive():
            self._saver.join()
        self.state.close()
        self.site.close()
        log.info("Stopped; positions saved to %s.", self.config.daemon.event_id_file)

    # ------------------------------------------------------------ the loop

    def _tick(self) -> None:
        self._handle_requests()
        self._scan_plugins_if_due()
        page = self.site.read_page(self.head, self.batch_size, self._wanted_types)
        self.polls += 1
        self.last_poll_at = time.time()
        self.events_fetched += len(page.events)
        self.observer.events_fetched(len(page.events))
        self._remember_times(page)
        self._route_page(page)
        self.head = max(self.head, page.through)
        self._recheck_gaps_if_due()
        if not page.full:
            self._idle()

    def _idle(self) -> None:
        """Sleep until the next poll; woken early by a stop, an attach request or SIGHUP."""
        self._wake.wait(self.fetch_interval)
        self._wake.clear()

    def _handle_requests(self) -> None:
        changed = False
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if request.kind == "attach":
                changed |= self._attach(request.worker)
            elif request.worker in self._attached:
                self._attached.discard(request.worker)
                changed = True
            elif request.kind == "reloaded":
                changed = True
        if changed:
            self._rebuild_routes()

    # ------------------------------------------------------------ attaching workers

    def _attach(self, worker: PluginWorker) -> bool:
        """Let a worker that caught up receive the engine's batches again."""
        if self.workers.get(worker.plugin.key) is not worker or self.stop_event.is_set():
            worker.answer_attach(False)
            return False
        ticket = worker.attach_ticket
        if not worker.awaiting_attach:
            return False  # it stopped asking (a reload or a command came): it will ask again
        position = worker.progress.position or 0
        fill: List[Message] = []
        if position < self.head:
            if self.head - position > 2 * self.batch_size:
                worker.answer_attach(False)
                return False
            fill = self._read_fill(worker, position)
        for gap, deadline in list(worker.progress.gaps.items()):
            self.gaps[gap] = max(deadline, self.gaps.get(gap, 0.0))
        if not worker.answer_attach(True, fill, ticket):
            return False
        self._attached.add(worker)
        return True

    def _read_fill(self, worker: PluginWorker, position: int) -> List[Message]:
        """Read the few events between a worker's position and the head for it."""
        fill: List[Message] = []
        while position < self.head:
            page = self.site.read_page(position, self.batch_size, worker.plugin.event_types)
            deadline = time.monotonic() + self.gap_timeout
            for gap in page.missing:
                self.gaps.setdefault(gap, deadline)
            fill.append(Batch(page.events, page.through, page.missing, deadline))
            if page.through <= position:  # the site has nothing newer (yet)
                break
            position = page.through
        return fill

    def _rebuild_routes(self) -> None:
        """Index attached workers by the event types their plugins can match."""
        routes: Dict[str, List[PluginWorker]] = {}
        everything: List[PluginWorker] = []
        for worker in sorted(self._attached, key=self._dispatch_order):
            types = worker.plugin.event_types
            if types is None:
                everything.append(worker)
                continue
            for event_type in types:
                routes.setdefault(event_type, []).append(worker)
        self._routes, self._everything = routes, everything
        # Ask the site only for the types some attached plugin can match (None: all types).
        self._wanted_types = None if everything else frozenset(routes)

    # ------------------------------------------------------------ routing

    def _route_page(self, page: Page) -> None:
        deadline = time.monotonic() + self.gap_timeout
        for gap in page.missing:
            self.gaps.setdefault(gap, deadline)
        if page.jumped:
            log.error(describe_jump(page.jumped))
        if not self._attached:
            return
        per_worker: Dict[PluginWorker, list] = {}
        if self._routes:
            routes = self._routes
            for event in page.events:
                for worker in routes.get(event["event_type"], ()):
                    per_worker.setdefault(worker, []).append(event)
        everything = set(self._everything)
        patience = time.monotonic() + BACKPRESSURE_WAIT
        for worker in list(self._attached):
            events = page.events if worker in everything else per_worker.get(worker, [])
            message = Batch(events, page.through, page.missing, deadline)
            self._send(worker, message, wait=max(0.0, patience - time.monotonic()))

    def _send(self, worker: PluginWorker, message: Message, wait: float = 0.0) -> None:
        if not worker.offer(message, wait):
            self._attached.discard(worker)
            self._rebuild_routes()
            if worker.queued_events:  # else it left by itself (a reload or a stop)
                log.info(
                    "Plugin %s is %d events behind; it reads the site on its own until it "
                    "catches up.",
                    worker.plugin.name,
                    worker.queued_events,
                )

    def _recheck_gaps_if_due(self) -> None:
        """Ask for open gaps, at most once per fetch interval: no busy loop on a gap."""
        now = time.monotonic()
        if not self.gaps or now - self._last_recheck < self.recheck_interval:
            return
        self._last_recheck = now
        found = self.site.events_by_id(list(self.gaps))
        for event in found:
            self.gaps.pop(event["id"], None)
        now = time.monotonic()
        expired = sorted(gap for gap, deadline in self.gaps.items() if deadline <= now)
        for gap in expired:
            del self.gaps[gap]
        if found:
            log.info("Late events arrived: %s", [event["id"] for event in found])
            self._broadcast(LateEvents(found))
        if expired:
            log.info("Stopped waiting for event ids that never appeared: %s", expired)
            self._broadcast(ExpiredGaps(expired))

    def _broadcast(self, message: Message) -> None:
        for worker in list(self._attached):
            self._send(worker, message)

    # ------------------------------------------------------------ plugin folders

    def _keep(self, key: PluginKey, progress: PluginProgress) -> None:
        """Track a plugin's progress in the state file (kept even if its file goes away)."""
        if key not in self.progress:
            self.progress[key] = progress
            self._journals[key] = self.state.track(key, progress)

    def _scan_plugins_if_due(self) -> None:
        """Scan plugin folders once per poll when idle, at most once a second when busy."""
        now = time.monotonic()
        if now - self._last_scan >= min(SCAN_INTERVAL, self.fetch_interval):
            self._last_scan = now
            self._scan_plugins(start_position=self.head)

    def _housekeeping_loop(self) -> None:
        """Checkpoints and callback deadlines, on their own thread: an fsync or a stuck
        plugin never holds up the poll."""
        pause = min(0.25, self.config.daemon.state_save_interval / 2)
        while not self.stop_event.wait(pause):
            self.state.checkpoint_if_due()
            self._report_overruns()

    def _report_overruns(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            overrun = worker.overrun(now)
            if overrun:
                worker.plugin.logger.error("Plugin %s: %s.", worker.plugin.name, overrun)

    def _scan_plugins(self, start_position: int) -> None:
        folders = self.config.plugins.folders
        scans = list(zip(folders, scan_folders([folder.resolved for folder in folders])))
        if self._saved is not None:  # at start: which plugins did a moved folder leave?
            self._saved.settle_moved_folders(
                [(folder.path, name) for folder, scan in scans for name in scan.files],
                [folder.path for folder in folders],
                log,
            )
        for folder, scan in scans:
            self._report_folder(folder, scan)
            if scan.error is None:
                self._sync_folder(folder, scan, start_position)

    def _sync_folder(
        self, folder: PluginFolderSettings, scan: FolderScan, start_position: int
    ) -> None:
        present = set()
        for name, (path, signature) in scan.files.items():
            key = (folder.path, name)
            present.add(key)
            worker = self.workers.get(key)
            if worker is None:
                if self._still_retiring(key):
                    continue  # its old worker is finishing an event: one worker per plugin
                self._add_plugin(folder, path, start_position)
            elif signature != worker.plugin.signature:
                worker.request_reload()
        for key, worker in list(self.workers.items()):
            if key[0] == folder.path and key not in present:
                self._remove_plugin(worker, scan.refused.get(key[1]))

    def _add_plugin(self, folder: PluginFolderSettings, path, start_position: int) -> None:
        plugin = self._make_plugin(folder, path)
        key = plugin.key
        progress = self.progress.get(key)
        if progress is None:
            saved = self._saved.progress_for(folder.path, plugin.name) if self._saved else None
            if saved is None:
                progress = PluginProgress(position=start_position)
            else:  # a copy: the fallback may be another key's progress
                progress = PluginProgress(
                    position=saved.position, gaps=dict(saved.gaps), partial=saved.partial
                )
            self._keep(key, progress)
        worker = PluginWorker(
            plugin,
            progress,
            self._journals[key],
            self,
            capacity=self.plugin_inbox_capacity,
            timing_log=self.timing_log,
            observer=self.observer,
            strict=folder.ordering == "strict",
        )
        self.workers[key] = worker
        if self._running:
            log.info("New plugin %s starts after event %s.", path, progress.position)
            worker.start()

    def _make_plugin(self, folder: PluginFolderSettings, path: Path) -> Plugin:
        """The plugin object for a file: run in this process, or in its own (isolation)."""
        if folder.isolation != "process":
            return Plugin(folder.path, path, self.environment)
        daemon = self.config.daemon
        return ProcessPlugin(
            folder.path,
            path,
            self.environment,
            restart_limit=daemon.worker_restart_limit,
            restart_window=daemon.worker_restart_window,
            max_memory_mb=daemon.max_worker_memory_mb,
        )

    def _remove_plugin(self, worker: PluginWorker, refused: Optional[str]) -> None:
        if refused:  # the refusal itself was just reported as an error
            log.info("Plugin %s is no longer loaded (refused, see above).", worker.plugin.path)
        else:
            log.info(
                "Plugin file %s was removed; its position is kept in case it comes back.",
                worker.plugin.path,
            )
        worker.stop()
        del self.workers[worker.plugin.key]
        self._retiring[worker.plugin.key] = worker
        self._attached.discard(worker)
        self._rebuild_routes()

    def _still_retiring(self, key: PluginKey) -> bool:
        """True while a removed plugin's worker is still running (until its event ends)."""
        worker = self._retiring.get(key)
        if worker is not None and worker.thread.is_alive():
            return True
        self._retiring.pop(key, None)
        return False

    def _dispatch_order(self, worker: PluginWorker) -> Tuple[int, str]:
        """Plugin folders in config order, files by name (the classic order)."""
        folders = [folder.path for folder in self.config.plugins.folders]
        folder = worker.plugin.folder
        return (
            folders.index(folder) if folder in folders else len(folders),
            worker.plugin.path.name,
        )

    def _report_folder(self, folder: PluginFolderSettings, scan: FolderScan) -> None:
        """Say once when a folder or file cannot be used, and once when it recovers."""
        previous = self._folder_problems.get(folder.path)
        if scan.error and scan.error != previous:
            log.error("Plugin folder %s: %s; retrying at every poll.", folder.path, scan.error)
            self._folder_problems[folder.path] = scan.error
        elif scan.error is None and previous:
            log.warning("Plugin folder %s is readable again.", folder.path)
            del self._folder_problems[folder.path]
        for name, reason in scan.refused.items():
            if self._refused.get((folder.path, name)) != reason:
                log.error("Plugin %s/%s.py is refused: %s.", folder.path, name, reason)
                self._refused[(folder.path, name)] = reason
        for key in [k for k in self._refused if k[0] == folder.path and k[1] not in scan.refused]:
            del self._refused[key]
