"""``shotgunEventDaemon replay``: run chosen events through one plugin again, by hand.

For recovering after a bug fix: the events ``--from`` .. ``--to`` are read from the site and
each one a callback of the plugin matches is handed to it exactly as a worker does: each
callback with its own connection (``use_session_uuid`` passes the event's session on), one
private copy of the event per plugin, callbacks in registration order, transient site
errors retried per the callback's retry policy (``retry=``, else ``[daemon] plugin_retry``),
an error logged with its traceback; a callback registered with ``stopOnError`` stops the
replay at the event it failed on (exit 1, naming it), any other error is counted and the
replay goes on.

It must never touch the state file or its journal: no plugin's saved position moves, not
even the replayed plugin's, so it may run while the daemon runs. It logs to the terminal
only, never to the daemon's log files, which a running daemon owns and rotates.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import List, Optional, Tuple

from .config import Config, PluginFolderSettings
from .logs import (
    LINE_FORMAT,
    SECRETS,
    RedactingFormatter,
    Redactor,
    TerminalHandler,
    learn_secrets,
    route_uncaught_exceptions,
)
from .plugins import (
    Callback,
    Plugin,
    PluginEnvironment,
    make_importable,
    owner_of_traceback,
    scan_folder,
)
from .reader import Event
from .retry import OutageLog, RetryInterrupted, call_with_retry
from .site import OutageMonitor, Site, Stopping
from .workers import copy_event

log = logging.getLogger("replay")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class ReplayError(Exception):
    """The replay cannot run; ``str()`` is the message, ``exit_code`` what to exit with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ReplayResult:
    """What a replay did. ``stopped_at``: the event a stopOnError callback failed on."""

    first: int
    last: int
    events_read: int = 0
    delivered: int = 0
    errors: int = 0
    last_done: Optional[int] = None
    stopped_at: Optional[int] = None
    failed_callback: Optional[str] = None
    interrupted: bool = False


# --------------------------------------------------------------------------- finding the plugin


def find_plugin(
    config: Config, name: str, folder: Optional[str] = None
) -> Tuple[PluginFolderSettings, Path]:
    """The configured folder and file of plugin ``name``; ReplayError (exit 2) when there is
    none, or several and ``folder`` does not say which."""
    found: List[Tuple[PluginFolderSettings, Path]] = []
    known: List[str] = []
    for settings in config.plugins.folders:
        if folder is not None and folder not in (settings.path, str(settings.resolved)):
            continue
        scan = scan_folder(settings.resolved)
        if scan.error:
            log.warning("Plugin folder %s: %s", settings.path, scan.error)
        if name in scan.refused:
            raise ReplayError(f"plugin {name} in {settings.path} is refused: {scan.refused[name]}")
        known.extend(scan.files)
        if name in scan.files:
            found.append((settings, scan.files[name][0]))
    if not found:
        where = f"folder {folder}" if folder is not None else "the configured plugin folders"
        listing = ", ".join(sorted(set(known))) or "none"
        raise ReplayError(f"no plugin {name!r} in {where} (plugins: {listing})", EXIT_USAGE)
    if len(found) > 1:
        folders = ", ".join(settings.path for settings, _ in found)
        raise ReplayError(
            f"plugin {name!r} is in several folders ({folders}); choose one with --folder",
            EXIT_USAGE,
        )
    return found[0]


def load_plugin(config: Config, name: str, folder: Optional[str], redactor: Redactor) -> Plugin:
    """Load the plugin as the daemon does; ReplayError when it does not load."""
    settings, path = find_plugin(config, name, folder)
    make_importable([folder.resolved for folder in config.plugins.folders], config.path.parent)
    environment = PluginEnvironment(
        server=config.site.server,
        proxy_server=config.site.proxy_server,
        use_session_uuid=config.site.use_session_uuid,
        site_timeout=config.daemon.site_timeout,
        add_secret=redactor.add,
        log_level=config.daemon.log_level,
        default_retry=config.daemon.plugin_retry,
    )
    plugin = Plugin(settings.path, path, environment)
    if not plugin.load():
        raise ReplayError(f"plugin {path} did not load: {plugin.inactive_reason}")
    return plugin


# --------------------------------------------------------------------------- replaying


class Replay:
    """Reads ``first`` .. ``last`` from the site and hands each matched event to the plugin."""

    def __init__(self, config: Config, plugin: Plugin, stop_event: threading.Event) -> None:
        self.config = config
        self.plugin = plugin
        self.stop_event = stop_event
        self.outage_log = OutageLog()
        self.site = Site(
            config.site.server,
            config.site.script_name,
            config.site.script_key.reveal(),
            proxy_server=config.site.proxy_server,
            timeout=config.daemon.site_timeout,
            retry_cap=config.daemon.conn_retry_sleep,
            outage=OutageMonitor(log, config.daemon.max_conn_retries),
            stop_event=stop_event,
        )

    def run(self, first: int, last: Optional[int]) -> ReplayResult:
        result = ReplayResult(first, last or first)
        try:
            if last is None:
                result.last = self.site.latest_event_id()
            self._replay_range(result)
        except Stopping:
            result.interrupted = True
        finally:
            self.site.close()
        return result

    def _replay_range(self, result: ReplayResult) -> None:
        after = result.first - 1
        batch = self.config.daemon.max_event_batch_size
        while after < result.last:
            page = self.site.read_page(after, batch)
            if not page.events:
                return
            for event in page.events:
                if event["id"] > result.last:
                    return
                if self.stop_event.is_set():
                    raise Stopping()
                result.events_read += 1
                if not self._deliver(event, result):
                    return
                result.last_done = event["id"]
            after = page.through
            log.info("Replayed through event %d of %d.", after, result.last)

    def _deliver(self, event: Event, result: ReplayResult) -> bool:
        """Like the worker: every matching callback, in order; False when one stops us."""
        callbacks = self.plugin.callbacks_for(event)
        if not callbacks:
            return True
        own_copy = copy_event(event)
        for callback in callbacks:
            try:
                self._call(callback, own_copy, event)
            except RetryInterrupted:
                raise Stopping() from None
            except BaseException as error:  # SystemExit and KeyboardInterrupt too, as a worker
                result.errors += 1
                callback.logger.error(
                    "Callback %s failed on event %s (%s).",
                    callback.full_name,
                    event.get("id"),
                    event.get("event_type"),
                    exc_info=(type(error), error, error.__traceback__),
                )
                if callback.stop_on_error:
                    result.stopped_at = event["id"]
                    result.failed_callback = callback.full_name
                    return False
        result.delivered += 1
        log.debug("Replayed event %d (%s).", event["id"], event.get("event_type"))
        return True

    def _call(self, callback: Callback, own_copy: Event, event: Event) -> None:
        """One callback on one event, retried as a worker does (a fresh copy each retry)."""
        tries = iter([own_copy])
        call_with_retry(
            lambda: callback(next(tries, None) or copy_event(event)),
            callback.retry_policy,
            wait=self.stop_event.wait,
            outage_log=self.outage_log,
            plugin=self.plugin.name,
            callback=callback.full_name,
            event_id=event.get("id"),
        )


# --------------------------------------------------------------------------- the command


def install_terminal_logging(config: Config) -> Redactor:
    """Log to stderr only, secrets masked; returns the redactor plugins add their keys to
    (the process's own, so the terminal masks what the plugin registers too)."""
    learn_secrets(config.secrets())
    redactor = SECRETS
    logging.raiseExceptions = False
    logging.captureWarnings(True)
    route_uncaught_exceptions(owner_of_traceback)
    handler = TerminalHandler()
    handler.setFormatter(RedactingFormatter(LINE_FORMAT, redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.daemon.log_level)
    return redactor


def run_replay(
    config: Config, plugin_name: str, first: int, last: Optional[int], folder: Optional[str] = None
) -> int:
    """``replay``: returns 0 when the range is done, 1 when stopped or interrupted, 2 for a
    plugin that cannot be found."""
    if last is not None and last < first:
        print(f"shotgunEventDaemon: --to {last} is before --from {first}", file=sys.stderr)
        return EXIT_USAGE
    redactor = install_terminal_logging(config)
    try:
        plugin = load_plugin(config, plugin_name, folder, redactor)
    except ReplayError as error:
        print(f"shotgunEventDaemon: {error}", file=sys.stderr)
        return error.exit_code
    stop_event = threading.Event()
    result = _run_until_done_or_signalled(Replay(config, plugin, stop_event), first, last)
    print(summary(plugin, result))
    if result.stopped_at is not None or result.interrupted:
        return EXIT_FAILURE
    return EXIT_OK


def _run_until_done_or_signalled(replay: Replay, first: int, last: Optional[int]) -> ReplayResult:
    """Replay on a thread (as the daemon runs callbacks); SIGINT/SIGTERM stop it after the
    event in hand. The handlers only set a flag: the main thread does the rest."""
    signalled: List[int] = []

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        signalled.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    outcome: List[ReplayResult] = []
    thread = threading.Thread(
        target=lambda: outcome.append(replay.run(first, last)), name="replay", daemon=True
    )
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            if signalled and not replay.stop_event.is_set():
                log.warning("Interrupted: stopping after the event in hand.")
                replay.stop_event.set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not outcome:  # the thread died on a bug: the traceback is on stderr
        return ReplayResult(first, last or first, interrupted=True)
    return outcome[0]


def summary(plugin: Plugin, result: ReplayResult) -> str:
    """One or two lines for the terminal: what ran, and where to go on from."""
    text = (
        f"Replay of events {result.first}..{result.last} through plugin {plugin.name}: "
        f"{result.events_read} events read, {result.delivered} handed to its callbacks, "
        f"{result.errors} callback errors."
    )
    if result.stopped_at is not None:
        text += (
            f"\nStopped at event {result.stopped_at}: {result.failed_callback} failed and "
            f"stops on error. Fix it, then replay --from {result.stopped_at}."
        )
    elif result.interrupted:
        resume = (result.last_done or result.first - 1) + 1
        text += f"\nInterrupted; to go on, replay --from {resume}."
    return text
