"""Running the engine as a process, and controlling it from another one.

``foreground`` and ``start`` turn a validated Config into a running Engine (with its log
files, error emails, metrics endpoint, status file, control socket and signal handling) and
back into an exit code; ``stop``, ``restart``, ``reload`` and ``status`` act on the daemon of
a config from another process, through its pid file.

Two locks keep two daemons apart: an exclusive ``flock`` on the pid file and one on
``<eventIdFile>.lock``, both held for the whole run. The kernel drops a flock when its process
dies, so a pid file left by a dead daemon (kill -9, power loss) is known to be stale from its
lock, never by guessing whether its pid was reused, and a second daemon on the same state file
refuses to start even with another pid file.

This module must never run before the config is validated, never detach before the checks
that can fail are made (their errors belong on the terminal, with a non-zero exit), and never
do work inside a signal handler: handlers write one byte to a pipe and the service thread acts.
Exit codes follow the LSB init-script conventions (see ``docs/service.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import daemon
import lockfile
from lockfile.pidlockfile import read_pid_from_pidfile

from . import __version__
from .config import Config
from .logs import LogSetup, mask, route_uncaught_exceptions
from .observe import EngineObserver
from .status import format_report, read_status_file, write_status_file

if TYPE_CHECKING:  # the control commands (stop, status) never import the engine
    from .control import ControlServer
    from .engine import Engine
    from .metrics import MetricsServer, PrometheusObserver

log = logging.getLogger("engine")

#: Files the daemon creates (state, status, logs) are private to its user and group.
DAEMON_UMASK = 0o027

# Exit codes (LSB init-script conventions; 2 is also the command line's "bad config").
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_NO_PERMISSION = 4
EXIT_NOT_RUNNING = 7
# `status` has its own LSB codes.
STATUS_RUNNING = 0
STATUS_DEAD = 1
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4

#: How long `stop` waits beyond stop_timeout for logs, emails and the state file to close.
STOP_MARGIN = 10.0
#: How long, beyond stop_timeout, a stopping daemon waits for itself before it exits anyway.
#: Shorter than STOP_MARGIN, so the daemon ends itself before `stop` has to SIGKILL it.
SELF_STOP_GRACE = 5.0
#: How long `start` waits for the detached daemon to say it is running.
START_TIMEOUT = 30.0
#: Stop gracefully on SIGTERM and SIGINT; reopen the logs and rescan the plugins on SIGHUP.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ServiceError(Exception):
    """A problem the user must fix; ``str()`` is the whole message for the terminal."""


# --------------------------------------------------------------------------- locks


class LockHeld(lockfile.AlreadyLocked):
    """Another live process holds the lock; ``pid`` is the pid it wrote (None if unknown)."""

    def __init__(self, path: Path, what: str, pid: Optional[int]) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"the {what} {path} is locked by {holder}")


class ProcessLock:
    """An exclusive ``flock`` on a small file that names its holder's pid.

    The equivalent of python-daemon's ``TimeoutPIDLockFile`` (the same pid file format, an
    acquire timeout), held with ``flock`` for the whole run instead of by the file's mere
    existence: the lock dies with its process, so a file left by a dead process is taken
    over (``acquire`` returns the pid it named), and only a live holder refuses.
    """

    def __init__(self, path: Path, what: str, *, mode: int = 0o644, timeout: float = 1.0):
        self.path = Path(path)
        self.what = what
        self.mode = mode
        self.timeout = timeout
        self._fd: Optional[int] = None

    def acquire(self) -> Optional[int]:
        """Take the lock and write our pid; returns the pid a dead holder left, if any.

        Retries for ``timeout`` seconds, so that a ``status`` probing the lock at that
        instant does not make a start fail. Raises LockHeld or ServiceError.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            folder = self.path.parent
            reason = "it is a file" if folder.is_file() else error.strerror or str(error)
            raise ServiceError(
                f"cannot create the folder {folder} of the {self.what} {self.path}: {reason}"
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            fd = self._open()
            if _try_flock(fd, fcntl.LOCK_EX) and _is_file_at(fd, self.path):
                break
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LockHeld(self.path, self.what, read_pid_from_pidfile(str(self.path)))
            time.sleep(0.05)
        self._fd = fd
        left_behind = _parse_pid(os.pread(fd, 64, 0))
        self.write_pid()
        return left_behind

    def _open(self) -> int:
        try:
            # O_CLOEXEC: a process a plugin spawns must not inherit, and outlive us with, the lock.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.mode)
        except OSError as error:
            raise ServiceError(
                f"cannot open the {self.what} {self.path}: {error.strerror or error}"
            ) from None

    def write_pid(self, pid: Optional[int] = None) -> None:
        """Name the holder in the file (again after detaching: the daemon has a new pid)."""
        assert self._fd is not None, "write_pid() before acquire()"
        data = f"{pid or os.getpid()}\n".encode("ascii")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def release(self) -> None:
        """Remove the file, then drop the lock (in that order: nobody locks a dying file)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _is_file_at(fd, self.path):
                self.path.unlink()
        except OSError as error:
            log.warning("Could not remove %s: %s", self.path, error)
        finally:
            os.close(fd)

    def hand_over(self) -> None:
        """Close our descriptor without unlocking: a forked child's copy keeps the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_file_at(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (it was not removed meanwhile)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _parse_pid(data: bytes) -> Optional[int]:
    try:
        pid = int(data.decode("ascii", "replace").strip().splitlines()[0])
    except (ValueError, IndexError):
        return None
    return pid if pid > 0 else None


@dataclass(frozen=True)
class LockProbe:
    """What a lock file says from outside: does it exist, does a live process hold it."""

    exists: bool
    held: bool
    pid: Optional[int]


def probe_lock(path: Path) -> LockProbe:
    """Look at a lock file without keeping it; raises PermissionError if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):  # the file cannot exist there: no daemon
        return LockProbe(False, False, None)
    try:
        held = not _try_flock(fd, fcntl.LOCK_SH)
        return LockProbe(True, held, _parse_pid(os.pread(fd, 64, 0)))
    finally:
        os.close(fd)  # also drops the shared lock, if we got it


def state_lock_path(config: Config) -> Path:
    event_id_file = config.daemon.event_id_file
    return event_id_file.with_name(event_id_file.name + ".lock")


class DaemonLocks:
    """The pid file and the state file lock of one run, taken and released together."""

    def __init__(self, config: Config) -> None:
        self.pid_file = ProcessLock(config.daemon.pid_file, "pid file")
        self.state = ProcessLock(state_lock_path(config), "state file lock", mode=0o600)
        self.state_file = config.daemon.event_id_file
        #: The pid a dead daemon left in the pid file, when it was stale.
        self.stale_pid: Optional[int] = None

    def acquire(self) -> None:
        """Take both locks, or raise ServiceError saying which daemon holds which file."""
        try:
            self.stale_pid = self.pid_file.acquire()
        except LockHeld as held:
            raise ServiceError(
                f"another daemon is running (pid {held.pid or 'unknown'}): the pid file "
                f"{held.path} is locked; not starting a second one"
            ) from None
        try:
            self.state.acquire()
        except (LockHeld, ServiceError) as error:
            self.pid_file.release()
            if isinstance(error, LockHeld):
                raise ServiceError(
                    f"another daemon (pid {error.pid or 'unknown'}) uses the state file "
                    f"{self.state_file}: its lock {error.path} is held; two daemons must never "
                    "share a state file"
                ) from None
            raise

    def fds(self) -> List[int]:
        return [self.pid_file.fileno(), self.state.fileno()]

    def write_pid(self) -> None:
        self.pid_file.write_pid()
        self.state.write_pid()

    def release(self) -> None:
        self.state.release()
        self.pid_file.release()

    def hand_over(self) -> None:
        self.state.hand_over()
        self.pid_file.hand_over()


def take_locks(config: Config) -> DaemonLocks:
    locks = DaemonLocks(config)
    locks.acquire()
    return locks


# --------------------------------------------------------------------------- finding a daemon


@dataclass(frozen=True)
class DaemonState:
    """Whether the daemon of a config runs, as its lock files tell."""

    running: bool
    pid: Optional[int]
    #: A pid file exists but no live process holds it (the daemon died).
    stale_pid_file: bool = False
    #: How it was found: "pid file", or "state file lock" when its pid file is elsewhere.
    found_by: str = "pid file"


def daemon_state(config: Config) -> DaemonState:
    """Find the running daemon of ``config``: the holder of its pid file, else of its state
    file's lock. Raises PermissionError when a lock file cannot be read."""
    pid_file = probe_lock(config.daemon.pid_file)
    if pid_file.held:
        return DaemonState(True, pid_file.pid)
    state = probe_lock(state_lock_path(config))
    if state.held:
        return DaemonState(True, state.pid, pid_file.exists, "state file lock")
    return DaemonState(False, pid_file.pid, stale_pid_file=pid_file.exists)


# --------------------------------------------------------------------------- building a run


def build_logs(config: Config, *, foreground: bool) -> LogSetup:
    daemon_settings = config.daemon
    logs = LogSetup(
        log_mode=daemon_settings.log_mode,
        log_folder=daemon_settings.log_path or config.path.parent,
        log_file=daemon_settings.log_file,
        level=daemon_settings.log_level,
        timing=daemon_settings.timing_log,
        rotate=daemon_settings.log_rotation == "midnight",
        foreground=foreground,
        secrets=config.secrets(),
    )
    logs.install()
    return logs


def warn_if_config_readable_by_all(path: Path) -> None:
    """The config holds the script key (maybe the SMTP password): say so if anyone can read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        log.warning(
            "%s is readable by every user and holds the script key: chmod o-r it "
            "(only the daemon's user needs to read it).",
            path,
        )


def build_engine(
    config: Config, logs: LogSetup, observer: Optional[EngineObserver] = None
) -> Engine:
    from .engine import Engine
    from .plugins import PluginEnvironment, owner_of_traceback

    route_uncaught_exceptions(owner_of_traceback)
    environment = PluginEnvironment(
        server=config.site.server,
        proxy_server=config.site.proxy_server,
        use_session_uuid=config.site.use_session_uuid,
        site_timeout=config.daemon.site_timeout,
        add_secret=logs.redactor.add,
        on_plugin_logger=logs.plugin_logger,
        log_level=config.daemon.log_level,
        default_retry=config.daemon.plugin_retry,
    )
    return Engine(config, environment=environment, timing_log=logs.timing_log, observer=observer)


def plugin_recipients(engine: Engine) -> Callable[[str], Union[bool, Sequence[str]]]:
    """``recipients_for`` of the alert handler: what ``setEmails`` said for a logger's plugin.

    Plugin loggers are ``plugin.<name>`` and ``plugin.<name>.<callback>``; a name may
    contain dots, so the longest plugin name that fits wins. Other loggers get the default
    recipients (True).
    """

    def recipients_for(logger_name: str) -> Union[bool, Sequence[str]]:
        if not logger_name.startswith("plugin."):
            return True
        rest = logger_name[len("plugin.") :]
        best = None
        for worker in list(engine.workers.values()):
            name = worker.plugin.name
            if (rest == name or rest.startswith(name + ".")) and (
                best is None or len(name) > len(best.name)
            ):
                best = worker.plugin
        return True if best is None else best.emails

    return recipients_for


def _log_files_of(logs: LogSetup) -> List[Any]:
    """The open log files, which detaching must keep open (python-daemon closes the rest)."""
    loggers = [logging.getLogger(), logging.getLogger("timing")]
    streams = []
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None and stream not in (sys.stdout, sys.stderr):
                streams.append(stream)
    return streams


class DaemonRun:
    """One run of the engine in this process: from the locks to the exit code."""

    def __init__(self, config: Config, logs: LogSetup, locks: DaemonLocks) -> None:
        self.config = config
        self.logs = logs
        self.locks = locks
        self.engine: Optional[Engine] = None
        self.alerts: Optional[logging.Handler] = None
        self.metrics: Optional[MetricsServer] = None
        self.control: Optional[ControlServer] = None
        self.housekeeper: Optional[Housekeeper] = None

    def prepare(self) -> None:
        """Build everything and install the signal handlers; the engine does not run yet.

        Raises ServiceError for what the user must fix (a metrics port in use...).
        """
        for warning in self.config.warnings:
            log.warning("%s", warning)
        warn_if_config_readable_by_all(self.config.path)
        observer = self._metrics_observer()
        self.engine = build_engine(self.config, self.logs, observer)
        # First of the threads: its socket is made under a brief umask of 077.
        self.control = self._start_control(self.engine)
        self.alerts = self._attach_alerts(self.engine)
        if observer is not None:
            self.metrics = self._start_metrics(self.engine, observer)
        self.housekeeper = Housekeeper(self.engine, self.logs, self.locks, self.config)
        self.housekeeper.install_signal_handlers()
        self.housekeeper.start()

    def _metrics_observer(self) -> Optional[PrometheusObserver]:
        if not self.config.daemon.metrics_port:
            return None
        from .metrics import PrometheusObserver

        return PrometheusObserver()

    def _start_metrics(self, engine: Engine, observer: PrometheusObserver) -> MetricsServer:
        from .metrics import MetricsServer

        settings = self.config.daemon
        server = MetricsServer(
            engine.status,
            observer,
            host=settings.metrics_host,
            port=settings.metrics_port,
            stuck_after=settings.callback_timeout or 300.0,
            poll_stale_after=3 * settings.fetch_interval + settings.site_timeout,
        )
        try:
            return server.start()
        except OSError as error:
            raise ServiceError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
                f"([daemon] metrics_host, metrics_port): {error.strerror or error}"
            ) from None

    def _start_control(self, engine: Engine) -> ControlServer:
        """The socket of the recovery commands (retry, skip, reset): see control.py."""
        from .control import ControlError, ControlServer, control_socket_path

        path = control_socket_path(self.config)
        try:
            return ControlServer(engine, path).start()
        except (ControlError, OSError) as error:
            problem = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ServiceError(f"cannot open the control socket {path}: {problem}") from None

    def _attach_alerts(self, engine: Engine) -> Optional[logging.Handler]:
        if not self.config.emails.enabled:
            return None
        from .alerts import build_alert_handler

        handler = build_alert_handler(
            self.config.emails,
            redactor=self.logs.redactor,
            recipients_for=plugin_recipients(engine),
        )
        if handler is not None:
            self.logs.add_shared_handler(handler)
        return handler

    def run(self) -> int:
        """Run the engine until it stops; always closes everything and releases the locks."""
        assert self.engine is not None and self.housekeeper is not None
        code = EXIT_FAILURE
        try:
            code = self.engine.run()
        except Exception:
            log.exception("The engine stopped on an unexpected error.")
        finally:
            self.close()
        return code

    def close(self) -> None:
        """Undo prepare() in reverse; the locks go last, so `stop` waits for all of it."""
        try:
            if self.control is not None:
                self.control.stop()
            if self.housekeeper is not None:
                self.housekeeper.finish()
            if self.metrics is not None:
                self.metrics.stop()
            if self.alerts is not None:
                self.alerts.close()
        except Exception:
            log.exception("Could not shut down cleanly.")
        finally:
            self.logs.close()
            self.locks.release()


# --------------------------------------------------------------------------- the service thread


class Housekeeper:
    """The service's own thread: acts on signals and refreshes the status file.

    Signal handlers only write the signal's number to a pipe, which is safe at any moment;
    this thread reads it and does the work (stop the engine, reopen the logs, rescan the
    plugin folders), so no handler can deadlock on a lock held by the code it interrupted.
    Once a stop is asked, it also makes sure the process ends: if the engine has not
    returned ``stop_timeout + SELF_STOP_GRACE`` seconds later (a site request or a plugin
    that ignores the stop), it logs why and exits at once; the journal keeps every finished
    event, so only the events in hand are delivered again at the next start.
    """

    def __init__(self, engine: Engine, logs: LogSetup, locks: DaemonLocks, config: Config) -> None:
        self.engine = engine
        self.logs = logs
        self.locks = locks
        self.status_file = config.daemon.status_file
        self.interval = config.daemon.status_interval
        self.stop_timeout = config.daemon.stop_timeout
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        for fd in (self._read_end, self._write_end):
            os.set_inheritable(fd, False)
        self._finished = False
        self._stop_asked_at: Optional[float] = None
        self._status_error: Optional[str] = None
        self._previous_handlers: Dict[int, Any] = {}
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="service", daemon=True)

    # ------------------------------------------------------------ signal side

    def install_signal_handlers(self) -> None:
        for signum in HANDLED_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._pid:
            # A forked child (a plugin process) inherited this handler and the pipe: the
            # signal is its own, so it gets the default action, not our daemon's stop.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        # A full pipe (OSError) means the same signals are already waiting to be handled.
        with contextlib.suppress(OSError):
            os.write(self._write_end, bytes([signum]))

    # ------------------------------------------------------------ thread side

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """After the engine returned: stop the thread, write the final status, and give
        the signals back to their previous handlers (before the pipe closes)."""
        self._finished = True
        self._on_signal(0, None)
        if self._thread.is_alive():
            self._thread.join(5)
        self.write_status("stopped")
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        for fd in (self._read_end, self._write_end):
            os.close(fd)

    def _loop(self) -> None:
        next_write = time.monotonic()
        while not self._finished:
            now = time.monotonic()
            if now >= next_write:
                self.write_status("stopping" if self._stop_asked_at else "running")
                next_write = now + self.interval
            self._check_stop_deadline(now)
            timeout = max(0.0, min(next_write, self._stop_deadline()) - time.monotonic())
            readable, _, _ = select.select([self._read_end], [], [], timeout)
            if readable:
                for signum in os.read(self._read_end, 64):
                    if signum and not self._finished:
                        self._handle_safely(signum)

    def _handle_safely(self, signum: int) -> None:
        """A signal's handling must never end this thread: it is the one that stops us."""
        try:
            self._handle(signum)
        except Exception:
            log.exception("Handling signal %d failed; the daemon goes on.", signum)

    def _handle(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            problems = self.logs.reopen()
            if problems:
                log.error(
                    "Received SIGHUP: could not reopen %s; writing on to the old file(s).",
                    "; ".join(problems),
                )
            else:
                log.info("Received SIGHUP: log files reopened, plugin folders rescanned.")
            self.engine.rescan()
            return
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
            log.info(
                "Received %s: finishing the events in hand (up to %.0f s), then stopping.",
                name,
                self.stop_timeout,
            )
            self.engine.stop()
            self.write_status("stopping")
        else:
            log.info("Received %s again: already stopping.", name)

    def _stop_deadline(self) -> float:
        if self._stop_asked_at is None:
            return float("inf")
        return self._stop_asked_at + self.stop_timeout + SELF_STOP_GRACE

    def _check_stop_deadline(self, now: float) -> None:
        if now < self._stop_deadline() or self._finished:
            return
        busy = [
            f"{p['name']} ({p['busy_callback']}, event in hand)"
            for p in self._safe_status().get("plugins", [])
            if p.get("busy_callback")
        ]
        waited = self.stop_timeout + SELF_STOP_GRACE
        if busy:
            log.error(
                "Still not stopped %.0f s after the stop request; exiting now. Busy: %s. "
                "Finished events are saved; the events in hand will be delivered again.",
                waited,
                ", ".join(busy),
            )
        else:
            # Only a site request hangs (site_timeout is longer than stop_timeout): no event
            # is in hand and every finished one is in the journal, so this is a clean stop.
            log.warning(
                "Still waiting for a site request %.0f s after the stop request; exiting "
                "without it. No event was in hand; every finished event is saved.",
                waited,
            )
        self.write_status("stopped")
        self.logs.close()
        self.locks.release()
        os._exit(EXIT_FAILURE if busy else EXIT_OK)

    # ------------------------------------------------------------ the status file

    def _safe_status(self) -> Dict[str, Any]:
        try:
            return self.engine.status()
        except Exception:  # the status must never stop the service thread
            log.exception("Could not take the engine's status.")
            return {}

    def write_status(self, state: str) -> None:
        """Write the status file; a failure is logged once, and again when it recovers."""
        picture = self._safe_status()
        picture.update(
            state=state,
            pid=os.getpid(),
            version=__version__,
            status_interval=self.interval,
            written_at=time.time(),
        )
        try:
            write_status_file(self.status_file, picture, self.logs.redactor)
        except OSError as error:
            problem = f"{error.strerror or error}"
            if problem != self._status_error:
                log.error("Cannot write the status file %s: %s", self.status_file, problem)
            self._status_error = problem
            return
        if self._status_error is not None:
            log.warning("The status file %s is written again.", self.status_file)
            self._status_error = None


# --------------------------------------------------------------------------- foreground


def run_foreground(config: Config) -> int:
    """Run the engine in this process until SIGTERM/SIGINT; returns the exit code."""
    taken = _take_locks_and_logs(config, foreground=True)
    if taken is None:
        return EXIT_FAILURE
    locks, logs = taken
    run = DaemonRun(config, logs, locks)
    try:
        run.prepare()
    except Exception as error:
        if isinstance(error, ServiceError):
            log.error("%s", error)
        else:
            log.exception("The daemon could not start.")
        run.close()
        return EXIT_FAILURE
    log.info("Starting in the foreground with config %s (pid %d).", config.path, os.getpid())
    return run.run()


def _take_locks_and_logs(
    config: Config, *, foreground: bool
) -> Optional[Tuple[DaemonLocks, LogSetup]]:
    """The locks and log files both runs take first, or None once the refusal is said.

    The umask comes first so the files the daemon creates are private. Only ``start`` also
    tells the terminal about a stale pid file: in the foreground every log line goes there.
    """
    os.umask(DAEMON_UMASK)
    try:
        locks = take_locks(config)
    except ServiceError as error:
        _say(str(error))
        return None
    try:
        logs = build_logs(config, foreground=foreground)
    except OSError as error:
        locks.release()
        _say(f"cannot open the log files: {error}")
        return None
    _note_stale_pid_file(locks, tell_terminal=not foreground)
    return locks, logs


def _warn_about_missing_plugin_folders(config: Config) -> None:
    """Not an error (a folder may be deployed later), but after detaching only the log
    would say it, and a typo in ``paths`` would look like a daemon that does nothing."""
    for folder in config.plugins.folders:
        if not Path(folder.path).is_dir():
            _say(
                f"warning: plugin folder {folder.path} is not there (yet); the daemon looks "
                "for it at every poll"
            )


def _say(message: str) -> None:
    print(f"shotgunEventDaemon: {message}", file=sys.stderr, flush=True)


def _note_stale_pid_file(locks: DaemonLocks, *, tell_terminal: bool) -> None:
    if locks.stale_pid is None:
        return
    message = (
        f"cleared a stale pid file {locks.pid_file.path} "
        f"(pid {locks.stale_pid} had stopped without removing it)"
    )
    log.warning("%s", message[0].upper() + message[1:] + ".")
    if tell_terminal:
        _say(message)


# --------------------------------------------------------------------------- start (detached)


def start_daemon(config: Config) -> int:
    """``start``: check, take the locks, open the logs, then detach and run the engine.

    Everything that can be refused is done before detaching, so its error reaches the
    terminal. The command then waits until the detached daemon says it runs (its pid is in
    the pid file, its signal handlers are set) or why it could not, and exits accordingly.
    """
    try:
        current = daemon_state(config)
    except PermissionError as error:
        _say(f"cannot read {error.filename}: permission denied")
        return EXIT_NO_PERMISSION
    if current.running and current.found_by == "pid file":
        # LSB: starting a service that already runs is a success; nothing else is started.
        # (A daemon found by the state file lock is another service: take_locks refuses.)
        print(f"shotgunEventDaemon is already running (pid {current.pid}); not starting another.")
        return EXIT_OK
    taken = _take_locks_and_logs(config, foreground=False)
    if taken is None:
        return EXIT_FAILURE
    locks, logs = taken
    _warn_about_missing_plugin_folders(config)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        locks.hand_over()
        logs.close()
        return _wait_until_started(read_end, child, logs)
    os.close(read_end)
    report = StartReport(write_end)
    code = EXIT_FAILURE
    try:
        code = _detach_and_run(config, logs, locks, report)
    except BaseException as error:  # the child must always end in os._exit
        log.exception("The daemon could not start.")
        report.send(f"error {type(error).__name__}: {error}")
    finally:
        os._exit(code)


def _wait_until_started(read_end: int, child: int, logs: LogSetup) -> int:
    """The terminal side of ``start``: the daemon's first words decide the exit code."""
    deadline = time.monotonic() + START_TIMEOUT
    received = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while b"\n" not in received and time.monotonic() < deadline:
            readable, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            chunk = pipe.read(4096)
            if not chunk:
                break
            received += chunk
    os.waitpid(child, 0)
    word, _, detail = received.decode("utf-8", "replace").strip().partition(" ")
    if word == "ok":
        print(f"shotgunEventDaemon started (pid {detail}); logging to {logs.main_log_path}.")
        return EXIT_OK
    if word == "error":
        _say(detail)
    else:
        _say(f"the daemon did not report that it started; see {logs.main_log_path}")
    return EXIT_FAILURE


def _detach_and_run(config: Config, logs: LogSetup, locks: DaemonLocks, report: StartReport) -> int:
    """In the forked child: become the daemon, report to ``start``, run the engine."""
    context = daemon.DaemonContext(
        working_directory="/",
        umask=DAEMON_UMASK,
        detach_process=True,
        files_preserve=[*locks.fds(), report.fileno(), *_log_files_of(logs)],
        # stdin, stdout and stderr go to /dev/null (the None defaults). SIGTERM is ours,
        # installed by prepare(); the terminal job-control signals are ignored as usual.
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
    )
    context.open()
    run = DaemonRun(config, logs, locks)
    try:
        run.prepare()
        locks.write_pid()
    except Exception as error:
        if not isinstance(error, ServiceError):
            log.exception("The daemon could not start.")
        else:
            log.error("%s", error)
        report.send(f"error {error}")
        run.close()
        return EXIT_FAILURE
    report.send(f"ok {os.getpid()}")
    log.info("Started as a daemon with config %s (pid %d).", config.path, os.getpid())
    return run.run()


class StartReport:
    """The pipe from the detached daemon to the waiting ``start``: one line, sent once.

    ``ok <pid>`` when the daemon runs, ``error <message>`` when it could not start.
    """

    def __init__(self, fd: int) -> None:
        self._fd: Optional[int] = fd

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def send(self, message: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # The daemon knows the plugins' keys, the waiting `start` only the config's.
            os.write(fd, (mask(message).replace("\n", " ") + "\n").encode("utf-8"))
        except OSError:
            pass  # `start` gave up waiting; the log file has the story
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- control commands


def stop_daemon(config: Config, timeout: Optional[float] = None) -> int:
    """``stop``: SIGTERM, wait for the daemon to finish its events and save, then SIGKILL.

    The wait ends when the daemon's lock on its pid file is released, which happens when it
    exits (even while its parent has not reaped it). Stopping a daemon that does not run is
    a success (LSB).
    """
    try:
        current = daemon_state(config)
    except PermissionError as error:
        _say(f"cannot read {error.filename}: permission denied")
        return EXIT_NO_PERMISSION
    if not current.running:
        _clear_stale_pid_file(config, current)
        print("shotgunEventDaemon is not running.")
        return EXIT_OK
    pid = current.pid
    if pid is None:
        _say("a daemon holds the lock but its pid file names no process; stop it by hand")
        return EXIT_FAILURE
    wait = (config.daemon.stop_timeout + STOP_MARGIN) if timeout is None else timeout
    sent = _send(pid, signal.SIGTERM)
    if sent != EXIT_OK:
        return sent
    if _wait_for_exit(config, wait):
        _clear_stale_pid_file(config, daemon_state(config))
        print(f"shotgunEventDaemon stopped (pid {pid}).")
        return EXIT_OK
    _say(
        f"pid {pid} did not stop within {wait:.0f} s; killing it (SIGKILL). Its finished "
        "events are saved; the events it had in hand will be delivered again."
    )
    sent = _send(pid, signal.SIGKILL)
    if sent != EXIT_OK:
        return sent
    if not _wait_for_exit(config, 10.0):
        _say(f"pid {pid} is still running after SIGKILL")
        return EXIT_FAILURE
    _clear_stale_pid_file(config, daemon_state(config))
    print(f"shotgunEventDaemon killed (pid {pid}).")
    return EXIT_OK


def _send(pid: int, signum: int) -> int:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return EXIT_OK  # it ended on its own meanwhile
    except PermissionError:
        _say(f"no permission to signal pid {pid} (run as the daemon's user or root)")
        return EXIT_NO_PERMISSION
    return EXIT_OK


def _wait_for_exit(config: Config, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not daemon_state(config).running:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _clear_stale_pid_file(config: Config, current: DaemonState) -> None:
    """Remove a pid file no live process holds (checked again under our own lock)."""
    if current.running or not current.stale_pid_file:
        return
    lock = ProcessLock(config.daemon.pid_file, "pid file", timeout=0)
    try:
        lock.acquire()
    except (LockHeld, ServiceError):
        return
    lock.release()
    print(f"Removed the stale pid file {config.daemon.pid_file} (pid {current.pid} had died).")


def restart_daemon(config: Config, timeout: Optional[float] = None) -> int:
    stopped = stop_daemon(config, timeout)
    if stopped != EXIT_OK:
        return stopped
    return start_daemon(config)


def reload_daemon(config: Config) -> int:
    """``reload``: SIGHUP (reopen the log files, rescan the plugin folders)."""
    try:
        current = daemon_state(config)
    except PermissionError as error:
        _say(f"cannot read {error.filename}: permission denied")
        return EXIT_NO_PERMISSION
    if not current.running or current.pid is None:
        _say("not running")
        return EXIT_NOT_RUNNING
    sent = _send(current.pid, signal.SIGHUP)
    if sent == EXIT_OK:
        print(f"Asked pid {current.pid} to reopen its logs and rescan its plugins.")
    return sent


def show_status(config: Config, *, as_json: bool = False) -> int:
    """``status``: is the daemon running (LSB code), and what its status file says."""
    try:
        current = daemon_state(config)
    except PermissionError as error:
        _say(f"cannot read {error.filename}: permission denied")
        return STATUS_UNKNOWN
    status_file = config.daemon.status_file
    picture, problem = read_status_file(status_file)
    if as_json:
        print(json.dumps({"running": current.running, "pid": current.pid, "status": picture}))
    elif current.running:
        print(format_report(picture, running_pid=current.pid, now=time.time(), problem=problem))
        if current.found_by != "pid file":
            print(f"(found by its state file lock; its pid file is not {config.daemon.pid_file})")
    elif current.stale_pid_file:
        print(
            f"shotgunEventDaemon is dead: the pid file {config.daemon.pid_file} names pid "
            f"{current.pid or 'unknown'}, which no longer runs."
        )
    else:
        print("shotgunEventDaemon is not running.")
        if picture and picture.get("state") == "stopped":
            print(format_report(picture, running_pid=None, now=time.time(), problem=None))
    if current.running:
        return STATUS_RUNNING
    return STATUS_DEAD if current.stale_pid_file else STATUS_NOT_RUNNING
