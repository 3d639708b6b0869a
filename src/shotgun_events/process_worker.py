"""Plugins in their own worker processes (``[plugins] isolation = process``).

In process mode each plugin file is imported, registered and run in a worker process of its
own, started with ``spawn`` (a fresh interpreter, never a fork of the threaded daemon). The
daemon keeps a ``ProcessPlugin`` per file: it looks like a ``plugins.Plugin`` to the worker
thread (workers.py) and the engine, but its callbacks are ``ProcessCallback`` stand-ins that
send the event over a pipe and wait for the answer. Log records made in the worker process
come back over a second pipe and go through the daemon's own handlers, so per-plugin log
files, the terminal, secret masking and error emails work as in thread mode.

A worker process that crashes, runs past its callback's deadline or grows too big is
replaced by a new one; one that keeps dying gets its plugin deactivated.

This module must never run plugin code in the daemon's process, never leave a worker
process behind, and never decide anything about positions or delivery: it says what
happened to a call, and workers.py decides what that means for the event.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.util  # registers its exit hook now, so that ours (_stop_all) runs first
import os
import signal
import socket
import threading
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, NoReturn, Optional, Tuple

from .alerts import ALERT_ERROR_TYPE, ALERT_TEMPLATE
from .config import RetryPolicy
from .logs import SECRETS, NeverRaises, mask_terminal, route_uncaught_exceptions
from .matching import EventMatcher
from .plugins import EmailSetting, Plugin, PluginEnvironment, file_signature
from .retry import is_transient, resolve_policy
from .site import describe_error

__all__ = [
    "CallbackTimeout",
    "ChildSettings",
    "PluginDisabled",
    "ProcessCallback",
    "ProcessPlugin",
    "ProcessWorkerError",
    "RemoteCallbackError",
    "RemoteTraceback",
    "WorkerDied",
]

#: How long a worker process gets to finish its callback and exit when asked politely.
STOP_GRACE = 2.0
#: How long a worker process may take to import the plugin and register its callbacks.
#: Past it (an import that hangs on a network share or a server), the process is stopped
#: and the plugin stays inactive until its file changes, instead of blocking its worker.
LOAD_TIMEOUT = 120.0
#: How long to wait for a killed worker process to be gone (it cannot refuse SIGKILL).
_KILL_BOUND = 5.0
#: After a worker process is gone, how long its last log records get to arrive before the
#: pipe is shut from this side (a process the plugin forked may still hold the other end).
_DRAIN_BOUND = 1.0

# Kinds of message a worker process sends on its log pipe.
_LOG = "log"
_SECRET = "secret"


# --------------------------------------------------------------------------- errors


class ProcessWorkerError(Exception):
    """Something happened to a callback call in a worker process; never transient.

    None of these subclasses a built-in error class, so ``retry.is_transient`` never takes
    them for a site outage: a timeout or a crash is the callback's failure, not the site's.
    """


class RemoteTraceback(Exception):  # noqa: N818 - a traceback's text, not an error
    """The traceback text of an error raised in a worker process.

    Set as the ``__cause__`` of ``RemoteCallbackError``, so that logging it with
    ``exc_info`` (as workers.py does for every failed callback) shows the plugin's own
    traceback first, then the daemon's side.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteCallbackError(ProcessWorkerError):
    """The callback raised in its worker process; ``str(error)`` is one line about it.

    ``transient`` was decided in the worker process by ``retry.is_transient`` on the real
    exception (the exception itself stays there: it may not even be picklable).
    """

    def __init__(
        self, summary: str, traceback_text: str, transient: bool, error_type: str = ""
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.traceback_text = traceback_text
        self.transient = bool(transient)
        #: The class name of the exception in the worker process (alerts tell errors apart
        #: by it, as in thread mode).
        self.error_type = error_type
        self.__cause__ = RemoteTraceback(
            f"in the plugin's worker process:\n{traceback_text.rstrip()}"
        )


class CallbackTimeout(ProcessWorkerError):  # noqa: N818 - names what happened
    """The callback ran past its deadline; its worker process was killed.

    The overrun is the callback's failure (stopOnError applies). A new worker process is
    started at the next call.
    """


class WorkerDied(ProcessWorkerError):  # noqa: N818 - names what happened
    """The worker process died during the call (crash, ``os._exit``, signal, out of memory).

    A new worker process is started at the next call; the same callback can simply be run
    again on the same event.
    """


class PluginDisabled(ProcessWorkerError):  # noqa: N818 - names what happened
    """The plugin cannot run now: it is inactive (``str(error)`` is the reason).

    Raised when its worker process died more than ``restart_limit`` times within
    ``restart_window`` seconds (logged once, as an error naming the plugin), when a new
    worker process could not load the plugin, and for calls after ``close()``.
    """


# --------------------------------------------------------------------------- what crosses the pipe


@dataclass(frozen=True)
class ChildSettings:
    """What a worker process needs to build the plugin's environment; picklable."""

    server: str
    proxy_server: Optional[str]
    use_session_uuid: bool
    site_timeout: Optional[float]
    log_level: int
    default_retry: Optional[RetryPolicy]

    @classmethod
    def from_environment(cls, environment: PluginEnvironment) -> ChildSettings:
        return cls(
            server=environment.server,
            proxy_server=environment.proxy_server,
            use_session_uuid=environment.use_session_uuid,
            site_timeout=environment.site_timeout,
            log_level=environment.log_level,
            default_retry=environment.default_retry,
        )

    def environment(self, add_secret: Callable[[str], None]) -> PluginEnvironment:
        return PluginEnvironment(
            server=self.server,
            proxy_server=self.proxy_server,
            use_session_uuid=self.use_session_uuid,
            site_timeout=self.site_timeout,
            add_secret=add_secret,
            log_level=self.log_level,
            default_retry=self.default_retry,
        )


@dataclass(frozen=True)
class CallbackDescription:
    """One registered callback as the daemon sees it: everything but the function."""

    index: int
    name: str
    matcher: EventMatcher
    stop_on_error: bool
    options: Mapping[str, Any]


@dataclass(frozen=True)
class LoadReport:
    """A worker process's answer after loading its plugin."""

    loaded: bool
    reason: Optional[str]
    callbacks: Tuple[CallbackDescription, ...] = ()
    emails: EmailSetting = True


#: A callback call's reply: None when it worked, else (summary, traceback text, transient).
#: None (the callback returned), or (summary, traceback text, transient, exception class name).
CallReply = Optional[Tuple[str, str, bool, str]]


# --------------------------------------------------------------------------- the daemon's side


class ProcessPlugin(Plugin):
    """A plugin file whose code runs in a worker process of its own.

    A ``Plugin`` for everything the engine and the worker thread read (name, key, callbacks,
    matching, active, emails, signature); only loading, running and stopping differ.
    ``restarts`` counts worker processes started again after one died or was killed;
    ``recycles`` those replaced for using more than ``max_memory_mb``.
    """

    def __init__(
        self,
        folder: str,
        path: Path,
        environment: PluginEnvironment,
        *,
        restart_limit: int,
        restart_window: float,
        max_memory_mb: int = 0,
        clock: Callable[[], float] = time.monotonic,
        stop_grace: float = STOP_GRACE,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> None:
        super().__init__(folder, Path(path), environment)
        self.load_timeout = load_timeout
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.max_memory_mb = max_memory_mb
        self.restarts = 0
        self.recycles = 0
        self._clock = clock
        self._stop_grace = stop_grace
        self._settings = ChildSettings.from_environment(environment)
        self._process: Optional[_WorkerProcess] = None
        self._deaths: Deque[float] = deque()
        self._process_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<ProcessPlugin {self.name} pid={self.pid}>"

    @property
    def pid(self) -> Optional[int]:
        """The current worker process's id; None when there is none running."""
        process = self._process
        return process.pid if process is not None else None

    def memory_mb(self) -> Optional[float]:
        """The current worker process's resident memory in MB (None when not known)."""
        process = self._process
        return _resident_mb(process.pid) if process is not None else None

    # ------------------------------------------------------------ loading

    def load(self) -> bool:
        """(Re)start the worker process, which loads the file; False leaves it inactive.

        As ``Plugin.load``: the signature is taken before the file is read, and a failure
        makes the plugin inactive with the reason (the traceback was logged once, through
        the plugin's logger, by the worker process).
        """
        with self._process_lock:
            self._stop_process()
            self.signature = file_signature(self.path)
            self.callbacks = []
            self._matching = {}
            self.emails = True
            self.logger.setLevel(self.environment.log_level)
            self.environment.on_plugin_logger(self.name, self.logger)
            self._deaths.clear()
            report = self._start_process()
            if not report.loaded:
                self._mark_inactive(report.reason or "failed to load")
                return False
            for description in report.callbacks:
                self.add_callback(ProcessCallback(self, description))
            self.emails = report.emails
            self.active = True
            self.inactive_reason = None
            return True

    def _start_process(self) -> LoadReport:
        """Start a worker process and wait until it has loaded the plugin (or failed to)."""
        try:
            process = _WorkerProcess(self, self._settings)
        except Exception as error:  # noqa: BLE001 - no fd left, no memory, ...: the plugin waits
            reason = f"failed to load: could not start its worker process ({error})"
            self.logger.error("Could not load plugin %s: %s.", self.path, reason)
            return LoadReport(False, reason)
        try:
            reply = process.wait_reply(self.load_timeout)
        except _Gone:
            reply = None
        except _Overran:
            reply = _Overran()
        if isinstance(reply, LoadReport) and reply.loaded:
            self._process = process
            return reply
        process.stop(self._stop_grace)
        if isinstance(reply, LoadReport):
            return reply  # the worker process logged the traceback
        if isinstance(reply, _Overran):
            reason = f"failed to load: it was still loading after {self.load_timeout:g} s"
            self.logger.error(
                "Could not load plugin %s: it was still loading after %g s (an import or "
                "registerCallbacks that hangs?); its worker process was stopped and it stays "
                "inactive until its file changes.",
                self.path,
                self.load_timeout,
            )
            return LoadReport(False, reason)
        ended = process.exit_description()
        self.logger.error(
            "Could not load plugin %s: its worker process %s while loading it; it stays "
            "inactive until its file changes.",
            self.path,
            ended,
        )
        return LoadReport(False, f"failed to load: its worker process {ended} while loading it")

    def _mark_inactive(self, reason: str) -> None:
        self.callbacks = []
        self._matching = {}
        self.active = False
        self.inactive_reason = reason

    # ------------------------------------------------------------ running callbacks

    def run_callback(self, callback: ProcessCallback, event: Dict[str, Any], timeout: Any) -> None:
        """Run one callback on one event in the worker process; see ProcessCallback."""
        with self._process_lock:
            process = self._ready_process()
        try:
            reply = process.call((callback.index, event), timeout)
        except _Overran:
            process.kill()
            deadline = (
                f"callback {callback.full_name} ran past its {timeout:g} s deadline on event "
                f"{event.get('id')}; its worker process was killed"
            )
            self._lost(process, deadline)
            raise CallbackTimeout(deadline) from None
        except _Gone:
            if process.stopping:  # close() or a reload from another thread
                raise PluginDisabled(
                    self.inactive_reason or "its worker process was stopped"
                ) from None
            death = (
                f"the worker process of plugin {self.name} {process.exit_description()} while "
                f"running {callback.full_name} on event {event.get('id')}"
            )
            self._lost(process, death)
            raise WorkerDied(death) from None
        if reply is not None:
            raise RemoteCallbackError(*reply)

    def _ready_process(self) -> _WorkerProcess:
        """The running worker process, started again if the last one died."""
        if not self.active:
            raise PluginDisabled(self.inactive_reason or "inactive")
        if self._process is None:
            self.restarts += 1
            self._replace_process("restarted")
        assert self._process is not None
        return self._process

    def _replace_process(self, why: str) -> None:
        """Start a new worker process for the same callbacks; on failure, deactivate."""
        report = self._start_process()
        if not report.loaded:
            reason = report.reason or "failed to load"
            self.deactivate(reason)
            raise PluginDisabled(reason)
        if [d.name for d in report.callbacks] != [c.name for c in self.callbacks]:
            reason = (
                "its file changed since it was loaded (the callbacks differ); it runs again "
                "when it is reloaded"
            )
            self.deactivate(reason)
            self.logger.warning("Plugin %s: %s.", self.name, reason)
            raise PluginDisabled(reason)
        self.logger.info("Plugin %s %s its worker process (pid %s).", self.name, why, self.pid)

    def _lost(self, process: _WorkerProcess, what: str) -> None:
        """A worker process died or was killed: count it; too many deactivate the plugin."""
        with self._process_lock:
            process.stop(0)
            if self._process is process:
                self._process = None
            now = self._clock()
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - self.restart_window:
                self._deaths.popleft()
            if len(self._deaths) <= self.restart_limit or not self.active:
                return
            reason = (
                f"its worker process died {len(self._deaths)} times within "
                f"{self.restart_window:g} s (worker_restart_limit {self.restart_limit}); "
                "it stays inactive until its file changes"
            )
            self.deactivate(reason)
            self.logger.error(
                "Plugin %s is deactivated: %s. The last time: %s.", self.name, reason, what
            )
            raise PluginDisabled(reason)

    # ------------------------------------------------------------ between events

    def recycle_if_over_memory(self) -> bool:
        """Replace the worker process when it uses more than ``max_memory_mb``.

        Called between events, so nothing is interrupted; True when it replaced it (the
        plugin may then be inactive, when the new process could not load it).
        """
        if self.max_memory_mb <= 0:
            return False
        with self._process_lock:
            process = self._process
            if process is None or not self.active:
                return False
            used = _resident_mb(process.pid)
            if used is None or used <= self.max_memory_mb:
                return False
            self.logger.info(
                "The worker process of plugin %s uses %.0f MB, more than max_worker_memory_mb "
                "(%d MB); starting a fresh one.",
                self.name,
                used,
                self.max_memory_mb,
            )
            self._stop_process()
            self.recycles += 1
            with contextlib.suppress(PluginDisabled):
                self._replace_process("recycled")
            return True

    def deactivate(self, reason: str) -> None:
        """As ``Plugin.deactivate``; the idle worker process is stopped to free its memory."""
        with self._process_lock:
            super().deactivate(reason)
            self._stop_process()

    def close(self) -> None:
        """Stop the worker process (asked first, killed after a short bound); for good.

        A call in progress in another thread ends with PluginDisabled. ``load()`` starts
        a new worker process.
        """
        with self._process_lock:
            if self.active:
                super().deactivate("its worker process was stopped")
            self._stop_process()

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop(self._stop_grace)


class ProcessCallback:
    """A callback registered in a worker process; calling it runs it there.

    The same attributes as ``plugins.Callback`` that the worker and the engine read.
    ``args`` stays in the worker process (it is None here). ``timeout`` is the callback's
    own ``registerCallback(timeout=)`` option; the worker decides the default.
    """

    def __init__(self, plugin: ProcessPlugin, description: CallbackDescription) -> None:
        self.plugin = plugin
        self.name = description.name
        self.index = description.index
        self.matcher = description.matcher
        self.args: Any = None
        self.stop_on_error = description.stop_on_error
        self.options = dict(description.options)
        self.retry_policy = resolve_policy(
            self.options.get("retry"), plugin.environment.default_retry
        )
        own_timeout = self.options.get("timeout")
        self.timeout: Optional[float] = float(own_timeout) if own_timeout else None
        self.logger = logging.getLogger(f"{plugin.logger.name}.{self.name}")

    def __repr__(self) -> str:
        return f"<ProcessCallback {self.full_name}>"

    @property
    def full_name(self) -> str:
        return f"{self.plugin.name}.{self.name}"

    def __call__(self, event: Dict[str, Any], timeout: Optional[float] = None) -> None:
        """Run the callback on this event in the plugin's worker process; return when it worked.

        ``timeout`` (seconds) defaults to the callback's own ``timeout``; None for both
        waits as long as it takes. Raises RemoteCallbackError (the callback raised),
        CallbackTimeout, WorkerDied or PluginDisabled (see each).
        """
        self.plugin.run_callback(self, event, self.timeout if timeout is None else timeout)


class _Overran(Exception):  # noqa: N818 - a signal, not an error
    """No reply within the deadline."""


class _Gone(Exception):  # noqa: N818 - a signal, not an error
    """The worker process is gone; no reply will come."""


#: Worker processes still running, stopped at interpreter exit if nothing else did.
_RUNNING: weakref.WeakSet = weakref.WeakSet()


class _WorkerProcess:
    """One worker process, its two pipes, and the two threads that listen to it.

    Calls go down the call pipe and their replies come back on it, read by the caller
    itself: no thread hand-off on the hot path. Log records and secrets come on the log
    pipe, read by the reader thread, which hands them to the daemon's loggers. Each reply
    says how many log messages the process had sent by then, and the caller waits until
    the reader has handled that many, so a callback's log lines always come before its
    outcome. The watcher thread waits for the process to end and reaps it, so that a death
    is noticed even when a process the plugin forked keeps the pipes open.
    """

    def __init__(self, plugin: ProcessPlugin, settings: ChildSettings) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe(duplex=True)
        self._log_conn, child_log_conn = context.Pipe(duplex=True)
        self._add_secret = plugin.environment.add_secret
        self._call_lock = threading.Lock()  # one call at a time reads the call pipe
        self._send_lock = threading.Lock()  # a stop request may come beside a call
        self._close_lock = threading.Lock()  # a pipe is never shut after it was closed
        self._handled = threading.Condition()
        self._logs_handled = 0
        self._drained = threading.Event()
        #: True once the daemon stopped it on purpose (a death is then no surprise).
        self.stopping = False
        self.process = context.Process(
            target=_worker_main,
            args=(child_conn, child_log_conn, plugin.folder, str(plugin.path), settings),
            name=f"plugin-{plugin.name}",
        )
        try:
            with _interrupts_blocked():
                self.process.start()
        finally:
            child_conn.close()
            child_log_conn.close()
        self.pid: int = self.process.pid  # type: ignore[assignment]
        _RUNNING.add(self)
        threading.Thread(
            target=self._read_logs, name=f"plugin-{plugin.name}-logs", daemon=True
        ).start()
        self._watcher = threading.Thread(
            target=self._watch, name=f"plugin-{plugin.name}-watcher", daemon=True
        )
        self._watcher.start()

    # ------------------------------------------------------------ calls

    def call(self, request: Tuple[int, Dict[str, Any]], timeout: Optional[float]) -> CallReply:
        """Send one callback call and wait for its reply (see wait_reply)."""
        with self._call_lock:
            try:
                with self._send_lock:
                    self._conn.send(request)
            except (OSError, ValueError):
                self._gone()
            return self._reply(timeout)  # type: ignore[no-any-return]

    def wait_reply(self, timeout: Optional[float]) -> Any:
        """The next reply; _Overran after ``timeout`` seconds, _Gone when the process is."""
        with self._call_lock:
            return self._reply(timeout)

    def _reply(self, timeout: Optional[float]) -> Any:
        try:
            if timeout is not None and not self._conn.poll(timeout):
                raise _Overran()
            logs_sent, reply = self._conn.recv()
        except (EOFError, OSError, ValueError):
            self._gone()
        if logs_sent > self._logs_handled:
            with self._handled:
                self._handled.wait_for(
                    lambda: self._logs_handled >= logs_sent or self._drained.is_set()
                )
        return reply

    def _gone(self) -> NoReturn:
        """The process is gone: let its last log lines through, then say so."""
        self._drained.wait(_DRAIN_BOUND * 2)
        raise _Gone()

    def exit_description(self) -> str:
        """How the process ended, in words ("was killed by signal SIGSEGV")."""
        self._watcher.join(_KILL_BOUND)
        return describe_exit(self.process.exitcode)

    # ------------------------------------------------------------ stopping

    def stop(self, grace: float) -> None:
        """Ask the process to exit after its current call, kill it after ``grace`` seconds."""
        self.stopping = True
        if grace > 0 and self._watcher.is_alive():
            with contextlib.suppress(OSError, ValueError), self._send_lock:
                self._conn.send(None)
            self._watcher.join(grace)
        if self._watcher.is_alive():
            self.kill()
        with self._call_lock, self._close_lock:  # a call in progress ended with the process
            self._conn.close()
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is reaped."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self._watcher.join(_KILL_BOUND)

    # ------------------------------------------------------------ threads

    def _read_logs(self) -> None:
        conn = self._log_conn
        try:
            while True:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    return
                except Exception:  # one bad message must not deafen us
                    logging.getLogger("engine.workers").exception(
                        "Could not read a log message from worker process %s", self.pid
                    )
                    kind, payload = None, None
                if kind == _LOG:
                    _emit(payload)
                elif kind == _SECRET:
                    self._add_secret(payload)
                with self._handled:
                    self._logs_handled += 1
                    self._handled.notify_all()
        finally:
            with self._close_lock:
                self._drained.set()
                conn.close()
            with self._handled:
                self._handled.notify_all()

    def _watch(self) -> None:
        self.process.join()
        _RUNNING.discard(self)
        if self._drained.wait(_DRAIN_BOUND):
            return
        with self._close_lock:
            if not self._drained.is_set():
                # A process the plugin forked holds the pipes open: stop listening to them.
                _shut(self._log_conn)
                if not self._conn.closed:
                    _shut(self._conn)


def _emit(fields: Dict[str, Any]) -> None:
    """Hand a worker process's log record to the daemon's logger of the same name."""
    record = logging.makeLogRecord(fields)
    logger = logging.getLogger(record.name)
    # No level check here: the worker process's logger already applied the plugin's own
    # level (a plugin may turn on its DEBUG lines), which this side does not know.
    # Handlers report their own errors; the reader thread must stay alive.
    with contextlib.suppress(Exception):
        logger.handle(record)


def _shut(conn: Connection) -> None:
    """Shut the daemon's end of the pipe, which wakes a reader blocked on it."""
    with contextlib.suppress(OSError, ValueError):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


@contextlib.contextmanager
def _interrupts_blocked() -> Iterator[None]:
    """Block SIGINT and SIGHUP in this thread while starting a worker process.

    A spawned process inherits the signal mask, so a Ctrl-C that reaches the whole process
    group while it starts stays pending until it has set its own handlers.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def describe_exit(exitcode: Optional[int]) -> str:
    """Words for a process's exit code, as a plugin author would want to read them."""
    if exitcode is None:
        return "vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by signal {name}{hint}"
    return f"exited with status {exitcode}"


def _resident_mb(pid: int) -> Optional[float]:
    """A process's resident memory in MB, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


@atexit.register
def _stop_all() -> None:
    """Kill worker processes nobody closed, so the daemon's exit never waits for them."""
    for process in list(_RUNNING):
        process.stopping = True
        process.kill()


# --------------------------------------------------------------------------- the worker process


class _Sender:
    """The worker process's end of the log pipe, shared by its threads (plugins log from
    any); counts what it sent, so that each reply can say how many log messages precede it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.sent = 0

    def send(self, message: Tuple[str, Any]) -> None:
        with self._lock:
            self._conn.send(message)
            self.sent += 1


class _ForwardLogs(NeverRaises):
    """Sends every log record to the daemon, message formatted and traceback as text."""

    def __init__(self, sender: _Sender) -> None:
        super().__init__()
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sender.send((_LOG, _portable(record)))
        except Exception:  # noqa: BLE001 - logging must never break the plugin
            self.handleError(record)


_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _portable(record: logging.LogRecord) -> Dict[str, Any]:
    """A record's fields as plain data: formatted message, traceback text, simple extras."""
    fields = dict(record.__dict__)
    fields["msg"] = record.getMessage()
    fields["args"] = None
    # What alerts tell distinct errors by (alerts.alert_key), lost with the formatting.
    fields[ALERT_TEMPLATE] = str(record.msg)
    if record.exc_info and record.exc_info[0] is not None:
        fields[ALERT_ERROR_TYPE] = record.exc_info[0].__name__
    if record.exc_info:
        if not record.exc_text:
            fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
        fields["exc_info"] = None
    for key, value in fields.items():
        if key not in _RECORD_FIELDS and not isinstance(value, (str, int, float, bool)):
            fields[key] = repr(value)  # a plugin's ``extra=`` may not pickle
    return fields


def _worker_main(
    conn: Connection, log_conn: Connection, folder: str, path: str, settings: ChildSettings
) -> None:  # pragma: no cover - runs in the worker process (covered by the tests there)
    """The worker process: load the plugin, report, then run callbacks until told to stop."""
    _die_with_the_daemon()
    _ignore_interrupts()
    mask_terminal()  # the plugin's prints go to the daemon's terminal: masked
    sender = _Sender(log_conn)
    _forward_logs(sender, settings.log_level)

    def add_secret(key: str) -> None:
        SECRETS.add(key)
        sender.send((_SECRET, key))

    plugin = Plugin(folder, Path(path), settings.environment(add_secret))
    # Every uncaught exception in this process is the plugin's: its threads, finalizers.
    route_uncaught_exceptions(lambda tb: (plugin.logger, plugin.name))
    loaded = plugin.load()
    conn.send((sender.sent, _load_report(plugin)))
    if loaded:
        _serve(conn, sender, plugin)


def _die_with_the_daemon() -> None:  # pragma: no cover - runs in the worker process
    """Linux: the kernel kills this process when the daemon dies, even by kill -9, so a
    worker never runs an event the restarted daemon runs again."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the daemon's exit handler still stops its workers
    if os.getppid() != parent:  # the daemon died before the call above
        os._exit(1)


PR_SET_PDEATHSIG = 1


def _ignore_interrupts() -> None:
    """Ctrl-C and SIGHUP are the daemon's business; SIGTERM keeps its default (exit).

    Python-level handlers that do nothing, rather than SIG_IGN: programs the plugin starts
    get the default handling back (exec resets handlers, but keeps ignored signals).
    """
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _ignore)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGHUP})


def _ignore(number: int, frame: Any) -> None:
    """A signal handler that does nothing."""


def _forward_logs(sender: _Sender, level: int) -> None:
    logging.raiseExceptions = False  # a handler the plugin adds must not raise into us
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    root.addHandler(_ForwardLogs(sender))


def _load_report(plugin: Plugin) -> LoadReport:
    if not plugin.active:
        return LoadReport(False, plugin.inactive_reason)
    callbacks = tuple(
        CallbackDescription(cb.index, cb.name, cb.matcher, cb.stop_on_error, cb.options)
        for cb in plugin.callbacks
    )
    return LoadReport(True, None, callbacks, plugin.emails)


def _serve(conn: Connection, sender: _Sender, plugin: Plugin) -> None:
    """The main loop: one request (callback index, event), one reply, until told to stop."""
    callbacks: List[Any] = list(plugin.callbacks)
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the daemon is gone
            return
        if request is None:
            return
        index, event = request
        reply = _run(callbacks[index], event)
        conn.send((sender.sent, reply))


def _run(callback: Any, event: Dict[str, Any]) -> CallReply:
    try:
        callback(event)
    except BaseException as error:  # noqa: BLE001 - SystemExit too: it is the callback's failure
        tb = error.__traceback__
        own_frames_left_out = tb.tb_next if tb is not None and tb.tb_next is not None else tb
        text = "".join(traceback.format_exception(type(error), error, own_frames_left_out))
        return (describe_error(error), text, is_transient(error), type(error).__name__)
    return None
