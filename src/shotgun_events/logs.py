"""Where log lines go: the main log file, one file per plugin, the timing log, the terminal.

- logMode 0: everything in the main log file.
- logMode 1: the engine (and libraries) in the main log file, each plugin in its own file
  ``plugin.<name>`` next to it (the classic daemon's names).
- Files rotate at midnight, ten kept, unless ``log_rotation: external`` leaves rotation to
  logrotate (SIGHUP reopens the files). The timing log ``<logFile>.timing`` gets one line per
  callback run whatever the log level. In the foreground, every line also goes to stderr.

Secrets (script keys, SMTP passwords) are replaced by ``********`` in every formatted line,
tracebacks included: this module must never write a secret to a file or terminal.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set

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


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, traceback included, has secrets masked."""

    def __init__(self, fmt: str, redactor: Redactor) -> None:
        super().__init__(fmt)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor(super().format(record))


#: Log files are readable by the daemon's user and group (operators), never by others.
LOG_FILE_MODE = 0o640


class PrivateRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
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
        self.redactor = Redactor(secrets)
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
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(self.level)
        root.addHandler(self._file_handler(self.main_log_path, LINE_FORMAT))
        if self.foreground:
            self._terminal = logging.StreamHandler(sys.stderr)
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
