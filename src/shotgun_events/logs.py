"""Where log lines go: the main log file, one file per plugin, the timing log, the terminal.

- logMode 0: everything in the main log file.
- logMode 1: the engine (and libraries) in the main log file, each plugin in its own file
  ``plugin.<name>`` next to it (the classic daemon's names).
- Files rotate at midnight, ten kept, unless ``log_rotation: external`` leaves rotation to
  logrotate (SIGHUP reopens the files). The timing log ``<logFile>.timing`` gets one line per
  callback run whatever the log level. In the foreground, every line also goes to stderr.

Secrets (script keys, SMTP passwords) are replaced by ``********`` in every formatted line,
tracebacks included: this module must never write a secret to a file or terminal.

``SECRETS`` is the one set of secrets of a process and ``mask`` the one way to hide them:
every exit of text from the daemon (log handlers, the terminal, ``/healthz`` and
``/metrics``, control-socket replies, the status file, the start command's report, emails)
passes its text through ``mask`` at the exit itself, so a new producer of text cannot forget
it, and a secret learnt anywhere (a plugin registering its key) is hidden everywhere.

Logging never raises into the daemon's threads: every handler here swallows its own
failures (a plugin that closed ``sys.stderr``, a full disk), and the terminal handler writes
to a descriptor of its own, which a plugin closing ``sys.stderr`` does not close.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import stat
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple

LINE_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
TIMING_FORMAT = "%(asctime)s %(message)s"
BACKUP_COUNT = 10
MASK = "********"


class Redactor:
    """The set of secrets to hide; shared by every handler's formatter."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: List[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Optional[str]) -> None:
        # Very short values would mask ordinary words; real keys and passwords are long.
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if secret not in self._secrets:
                # Longest first, so a secret that contains another is masked whole.
                self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


#: The secrets of this process; see the module's docstring.
SECRETS = Redactor()


def mask(text: str) -> str:
    """``text`` with every secret this process knows replaced by ``********``."""
    return SECRETS(text)


def learn_secrets(secrets: Iterable[Optional[str]]) -> None:
    for secret in secrets:
        SECRETS.add(secret)


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, traceback included, has secrets masked."""

    def __init__(self, fmt: str, redactor: Redactor) -> None:
        super().__init__(fmt)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor(super().format(record))


class NeverRaises(logging.Handler):
    """A handler whose failures are said on the terminal, at most, and never raised.

    The standard ``handleError`` prints a traceback to ``sys.stderr``, and raises when that
    is closed (ValueError): the log call that failed then ended the daemon's thread that
    made it (the service thread, so SIGTERM was ignored; another plugin's worker).
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (stdlib name)
        try:
            error = sys.exc_info()[1]
            sys.stderr.write(
                f"--- logging error in {type(self).__name__}: {type(error).__name__}: "
                f"{error} (a line of {record.name} is lost) ---\n"
            )
        except Exception:  # noqa: BLE001 - nowhere left to say it
            pass


class TerminalHandler(NeverRaises, logging.StreamHandler):
    """Every line on the terminal, on a descriptor of its own (a dup of stderr).

    A plugin that closes ``sys.stderr`` (or the descriptor behind it) closes nothing of
    ours; a broken terminal (a closed pipe) loses lines, never a thread.
    """

    def __init__(self) -> None:
        super().__init__(_own_stderr())

    def close(self) -> None:
        try:
            if self.stream is not sys.stderr:
                with contextlib.suppress(OSError, ValueError):
                    self.stream.close()
        finally:
            super().close()


def _own_stderr() -> Any:
    try:
        return os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    except OSError:  # no descriptor 2: the process runs without a terminal
        return sys.stderr


class MaskedTerminal(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of the daemon's processes: every write masked.

    Whatever reaches the terminal without a log handler (a command's messages, a plugin's
    ``print``, a traceback Python prints itself, argparse's errors) is masked here. It never
    raises: a closed or broken terminal loses the text, not the thread that wrote it, and
    ``close()`` only flushes (the terminal belongs to the daemon, not to a plugin).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    @property
    def wrapped(self) -> Any:
        return self._stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(mask(text))
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def close(self) -> None:
        self.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return int(self._stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream, "encoding", None) or "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def mask_terminal() -> None:
    """Put ``sys.stdout`` and ``sys.stderr`` behind MaskedTerminal (once per process)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskedTerminal):
            setattr(sys, name, MaskedTerminal(stream))


#: Whose code raised, from a traceback: the plugin's logger and its name, or None.
OwnerOf = Callable[[Optional[TracebackType]], Optional[Tuple[logging.Logger, str]]]


def route_uncaught_exceptions(owner_of: OwnerOf) -> None:
    """Uncaught exceptions go to the logs, masked, under the plugin whose code raised.

    Python's own hooks print them to ``sys.stderr``: in a thread a plugin started
    (``threading.excepthook``), in the main thread (``sys.excepthook``) and in a finalizer
    (``sys.unraisablehook``). On a detached daemon that is /dev/null, so the error was lost;
    in the foreground it bypassed the log handlers. ``owner_of`` finds the plugin from the
    traceback's frames; without one, the ``engine`` logger takes the line.
    """
    threading.excepthook = lambda args: _log_uncaught(
        owner_of,
        f"thread {args.thread.name if args.thread else '?'}",
        "which ended",
        (args.exc_type, args.exc_value, args.exc_traceback),
    )
    sys.excepthook = lambda exc_type, exc_value, tb: _log_uncaught(
        owner_of, "the main thread", "which ends the daemon", (exc_type, exc_value, tb)
    )
    sys.unraisablehook = lambda unraisable: _log_uncaught(
        owner_of,
        f"{unraisable.err_msg or 'a finalizer'} {_safe_repr(unraisable.object)}",
        "which was ignored",
        (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


def _log_uncaught(owner_of: OwnerOf, where: str, outcome: str, exc_info: Any) -> None:
    exc_type = exc_info[0]
    if exc_type is None or issubclass(exc_type, SystemExit):
        return  # a thread that exits quietly, as Python's own hook has it
    try:
        owner = owner_of(exc_info[2])
        if owner is None:
            logger, by = logging.getLogger("engine"), ""
        else:
            logger, by = owner[0], f" (code of plugin {owner[1]})"
        logger.error(
            "Uncaught %s in %s%s, %s.", exc_type.__name__, where, by, outcome, exc_info=exc_info
        )
    except Exception:  # noqa: BLE001 - a hook must never raise; nowhere left to say it
        pass


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:200]
    except Exception:  # noqa: BLE001 - an object whose repr fails
        return f"<{type(value).__name__} object>"


#: Log files are readable by the daemon's user and group (operators), never by others.
LOG_FILE_MODE = 0o640


class PrivateRotatingFileHandler(NeverRaises, logging.handlers.TimedRotatingFileHandler):
    """Midnight rotation whose files are readable by owner and group only.

    Files created here get that mode; a file left by another program (the classic daemon
    wrote its logs under umask 022, readable by everyone) loses its group-write and other
    bits when it is opened. With ``rotate=False`` the file never rolls over: logrotate owns
    it, and two rotators renaming the same files would lose lines.
    """

    def __init__(self, filename: str, *, rotate: bool = True, **options: Any) -> None:
        self.rolls_over = rotate  # not ``rotate``: that is the base class's renaming method
        super().__init__(filename, **options)

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (stdlib name)
        return self.rolls_over and bool(super().shouldRollover(record))

    def _open(self):  # type: ignore[no-untyped-def]
        descriptor = os.open(
            self.baseFilename, os.O_CREAT | os.O_WRONLY | os.O_APPEND, LOG_FILE_MODE
        )
        try:
            info = os.fstat(descriptor)
            mode = info.st_mode & 0o777
            # Regular files only: a logFile of /dev/stdout or /dev/null is not ours to change.
            if stat.S_ISREG(info.st_mode) and mode & ~LOG_FILE_MODE:
                os.fchmod(descriptor, mode & LOG_FILE_MODE)
        except OSError:
            pass  # a file of another user: it stays as it is, and logging goes on
        finally:
            os.close(descriptor)
        return super()._open()

    def reopen(self) -> None:
        """Close and reopen the file (after logrotate or a move), keeping the handler.

        OSError when the file cannot be opened again (logrotate left a file of another
        owner, or a folder, at its path); the handler then keeps writing to the old file.
        """
        self.acquire()
        try:
            fresh = self._open()
            if self.stream is not None:
                self.stream.close()
            self.stream = fresh
        finally:
            self.release()


class LogSetup:
    """Installs the daemon's handlers and attaches per-plugin files as plugins load."""

    def __init__(
        self,
        *,
        log_mode: int,
        log_folder: Path,
        log_file: str,
        level: int,
        timing: bool,
        foreground: bool,
        secrets: Iterable[str] = (),
        rotate: bool = True,
    ) -> None:
        self.log_mode = log_mode
        self.rotate = rotate
        self.log_folder = log_folder
        self.log_file = log_file
        self.level = level
        self.foreground = foreground
        learn_secrets(secrets)
        self.redactor = SECRETS
        self._handlers: List[logging.Handler] = []
        self._plugins_with_files: Set[str] = set()
        self._terminal: Optional[logging.Handler] = None
        self._shared: List[logging.Handler] = []
        self.timing_log: Optional[logging.Logger] = None
        self._timing_wanted = timing

    @property
    def main_log_path(self) -> Path:
        return self._path(self.log_file)

    def _path(self, file_name: str) -> Path:
        path = Path(file_name)
        return path if path.is_absolute() else self.log_folder / path

    def install(self) -> None:
        """Attach handlers to the root, engine and timing loggers."""
        self.log_folder.mkdir(parents=True, exist_ok=True)
        # A handler a plugin adds to its own logger must not raise into the daemon either
        # (the daemon logs through the plugin's logger too); ours say their own failures.
        logging.raiseExceptions = False
        logging.captureWarnings(True)  # warnings quote source lines: masked, and in the logs
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(self.level)
        root.addHandler(self._file_handler(self.main_log_path, LINE_FORMAT))
        if self.foreground:
            self._terminal = TerminalHandler()
            self._terminal.setFormatter(RedactingFormatter(LINE_FORMAT, self.redactor))
            root.addHandler(self._terminal)
        if self._timing_wanted:
            timing = logging.getLogger("timing")
            timing.propagate = False
            timing.setLevel(logging.INFO)
            timing.addHandler(
                self._file_handler(self._path(f"{self.log_file}.timing"), TIMING_FORMAT)
            )
            self.timing_log = timing

    def _file_handler(self, path: Path, line_format: str) -> logging.Handler:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = PrivateRotatingFileHandler(
            str(path),
            rotate=self.rotate,
            when="midnight",
            backupCount=BACKUP_COUNT,
            encoding="utf-8",
        )
        handler.setFormatter(RedactingFormatter(line_format, self.redactor))
        self._handlers.append(handler)
        return handler

    def plugin_logger(self, plugin_name: str, logger: logging.Logger) -> None:
        """Give a plugin its own file in logMode 1 (once; reloads keep the same file)."""
        if self.log_mode != 1 or plugin_name in self._plugins_with_files:
            return
        self._plugins_with_files.add(plugin_name)
        logger.propagate = False
        logger.addHandler(self._file_handler(self._path(f"plugin.{plugin_name}"), LINE_FORMAT))
        if self._terminal is not None:
            logger.addHandler(self._terminal)
        for handler in self._shared:
            logger.addHandler(handler)

    def add_shared_handler(self, handler: logging.Handler) -> None:
        """Attach a handler (e.g. error emails) to the root and to every plugin logger,
        including plugins that load later."""
        self._shared.append(handler)
        logging.getLogger().addHandler(handler)
        for name in self._plugins_with_files:
            logging.getLogger(f"plugin.{name}").addHandler(handler)

    def reopen(self) -> List[str]:
        """Reopen every log file (SIGHUP after logrotate moved them); returns the problems
        (a file that cannot be opened keeps its old one, so no line is lost)."""
        problems = []
        for handler in self._handlers:
            if isinstance(handler, PrivateRotatingFileHandler):
                try:
                    handler.reopen()
                except OSError as error:
                    problems.append(f"{handler.baseFilename}: {error.strerror or error}")
        return problems

    def close(self) -> None:
        for handler in self._handlers:
            handler.close()
        if self._terminal is not None:
            self._terminal.close()
