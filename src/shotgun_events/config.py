"""The config file: the classic INI ``shotgunEventDaemon.conf`` -> one typed, frozen ``Config``.

This is the only module that reads the config file. It finds the file (``--config``, then
``$SGED_CONFIG``, then the classic search next to the program and in ``/etc``), expands
``%(NAME)s`` references the way the classic daemon did, gives the options the classic daemon
did not have their defaults, and validates every value with a message that names the file,
the section and the option. The rest of the daemon gets a frozen ``Config`` and never sees
the INI file.

It must never:
- create folders or files, or touch the disk beyond reading the config file (the engine
  creates its folders later, once the whole config is known to be good);
- show the value of a secret (``[shotgun] key``, ``[emails] password``) in a message,
  a repr or a pickle;
- let environment variables pose as options. The classic daemon passed ``os.environ`` to
  ConfigParser as defaults, so ``PORT=8080`` in the environment silently set ``[emails] port``;
  here the environment is only a fallback for ``%(NAME)s`` references.
"""

from __future__ import annotations

import configparser
import difflib
import hmac
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar
from urllib.parse import unquote, urlsplit

from .daemon_files import daemon_files, first_clash

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_FILE_NAME",
    "Config",
    "ConfigError",
    "DaemonSettings",
    "EmailSettings",
    "PluginFolderSettings",
    "PluginSettings",
    "RetryPolicy",
    "Secret",
    "SiteSettings",
    "find_config_file",
    "load_config",
]

CONFIG_FILE_NAME = "shotgunEventDaemon.conf"
CONFIG_ENV_VAR = "SGED_CONFIG"
# The last place of the classic search; a module constant so that tests can move it.
_SYSTEM_CONFIG = Path("/etc") / CONFIG_FILE_NAME

T = TypeVar("T")


# --------------------------------------------------------------------------- errors, secrets


class ConfigError(Exception):
    """A config problem that only the user can fix.

    ``str(err)`` is the whole message to show them, located as precisely as known:
    ``<file>: [<section>] <option>: <what is wrong>`` (or ``<file>: line <n>: ...`` for a
    file that does not parse). The parts are also kept as attributes for callers that
    want to point at them.
    """

    def __init__(
        self,
        problem: str,
        path: Optional[os.PathLike[str] | str] = None,
        section: Optional[str] = None,
        option: Optional[str] = None,
        line: Optional[int] = None,
    ) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        self.section = section
        self.option = option
        self.line = line
        super().__init__(_where(self.path, section, option, line) + problem)


def _where(
    path: Optional[Path], section: Optional[str], option: Optional[str], line: Optional[int]
) -> str:
    """The ``file: line n: [section] option: `` prefix of a message, for the parts known."""
    prefix = f"{path}: " if path is not None else ""
    if line is not None:
        prefix += f"line {line}: "
    if section is not None:
        prefix += f"[{section}] {option}: " if option else f"[{section}]: "
    return prefix


class Secret:
    """A secret string (script key, SMTP password) that never shows itself by accident.

    ``str()``, ``repr()`` and formatting give ``********``, so a secret that reaches a log
    line, an error message or a dataclass repr stays hidden. ``reveal()`` gives the value to
    the one place that needs it (the site connection, the SMTP login). Pickling is refused:
    a secret must not end up in a state file or travel to another process unnoticed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret in clear; call it only where the value is really sent somewhere."""
        return self._value

    def __str__(self) -> str:
        return "********"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        # Constant time, so that comparing a guess does not leak how much of it was right.
        return hmac.compare_digest(self._value.encode("utf-8"), other.encode("utf-8"))

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "a Secret is never pickled; pass secret.reveal() explicitly where the value is needed"
        )

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> Secret:
        return self


# --------------------------------------------------------------------------- settings

#: Every number an option takes has an upper bound, documented with the option: intervals
#: and timeouts at most an hour, windows and deadlines (gap_timeout, callback_timeout,
#: worker_restart_window, rate_limit_window, give_up_after) at most a day. Past that a value
#: is a typo or a wish for "forever", and past what threading and select accept (about 292
#: years) it crashed a thread long after the config was accepted.
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
#: The whole numbers: counts of attempts and restarts, events held for one plugin (each takes
#: memory), a worker process's memory, and any other whole number.
MAX_COUNT = 1000
MAX_BACKLOG = 1_000_000
MAX_MEMORY_MB = 1_048_576  # 1 TiB
MAX_WHOLE = 2**31 - 1


def _duration_words(seconds: float) -> str:
    """``3600 (1 hour)``: the bound as a number, and in words a person checks at a glance."""
    for unit, word in ((DAY, "day"), (HOUR, "hour"), (MINUTE, "minute")):
        if seconds >= unit and seconds % unit == 0:
            count = int(seconds // unit)
            return f"{seconds:g} ({count} {word}{'s' if count > 1 else ''})"
    return f"{seconds:g}"


def _check_retry_policy(policy: RetryPolicy) -> Optional[str]:
    """What is wrong with a retry policy, or None; shared by the dataclass and the parser."""
    attempts = f"attempts must be a whole number from 1 to {MAX_COUNT}"
    if isinstance(policy.attempts, bool) or not isinstance(policy.attempts, int):
        return attempts
    if not 1 <= policy.attempts <= MAX_COUNT:
        return attempts
    for name, most in (("first_delay", HOUR), ("max_delay", HOUR), ("give_up_after", DAY)):
        value = getattr(policy, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= most):
            return f"{name} must be a number of seconds > 0 and at most {_duration_words(most)}"
    if not (isinstance(policy.jitter, (int, float)) and 0 <= policy.jitter <= 1):
        return "jitter must be a fraction from 0 to 1"
    if policy.max_delay < policy.first_delay:
        return "max_delay must be >= first_delay"
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How a plugin's failed callback is retried before the failure counts (plugin_retry).

    The delay starts at ``first_delay`` seconds and doubles up to ``max_delay``, each delay
    varied by +/- ``jitter`` (a fraction) so that plugins sharing an outage do not retry in
    step; retrying stops after ``attempts`` tries or ``give_up_after`` seconds.
    """

    attempts: int = 12
    first_delay: float = 1.0
    max_delay: float = 60.0
    give_up_after: float = 900.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        problem = _check_retry_policy(self)
        if problem:
            raise ValueError(problem)


@dataclass(frozen=True)
class DaemonSettings:
    """[daemon]: files, logging, polling and the limits of the engine.

    Paths are absolute once loaded (relative ones are resolved against the config file's
    folder). ``log_path`` is always set by ``load_config`` (default: the config file's
    folder); None only appears in settings built by hand.
    """

    pid_file: Path = Path("shotgunEventDaemon.pid")
    event_id_file: Path = Path("shotgunEventDaemon.id")
    log_mode: int = 1
    log_path: Optional[Path] = None
    log_file: str = "shotgunEventDaemon"
    log_level: int = logging.INFO
    log_rotation: str = "midnight"
    timing_log: bool = False
    conn_retry_sleep: float = 60.0
    max_conn_retries: int = 5
    fetch_interval: float = 5.0
    max_event_batch_size: int = 500
    gap_timeout: float = 300.0
    state_save_interval: float = 1.0
    site_timeout: float = 60.0
    stop_timeout: float = 30.0
    status_file: Path = Path("shotgunEventDaemon.id.status.json")
    status_interval: float = 5.0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    max_plugin_backlog: int = 5000
    plugin_retry: Optional[RetryPolicy] = None
    callback_timeout: Optional[float] = None
    worker_restart_limit: int = 5
    worker_restart_window: float = 600.0
    max_worker_memory_mb: int = 0


@dataclass(frozen=True)
class SiteSettings:
    """[shotgun]: the site and the script the engine reads events with.

    ``proxy_server`` may carry ``user:password@``; it is left out of the repr for that
    reason, and its password is one of ``Config.secrets()``.
    """

    server: str
    script_name: str
    script_key: Secret
    proxy_server: Optional[str] = field(default=None, repr=False)
    use_session_uuid: bool = False


@dataclass(frozen=True)
class PluginFolderSettings:
    """One plugin folder. ``path`` is the folder exactly as written (stripped): the key of
    its plugins in the classic state file, so it must not be normalised."""

    path: str
    resolved: Path
    isolation: str = "thread"
    ordering: str = "eager"


@dataclass(frozen=True)
class PluginSettings:
    """[plugins]: the plugin folders in config order (the order plugins run in)."""

    folders: Tuple[PluginFolderSettings, ...]


@dataclass(frozen=True)
class EmailSettings:
    """[emails]: where error emails go. ``enabled`` is False when they must not be sent."""

    enabled: bool = False
    server: Optional[str] = None
    port: int = 25
    use_starttls: bool = False
    use_ssl: bool = False
    username: Optional[str] = None
    password: Optional[Secret] = None
    from_addr: Optional[str] = None
    to_addrs: Tuple[str, ...] = ()
    subject: str = "[shotgunEvents]"
    timeout: float = 10.0
    rate_limit_window: float = 600.0


@dataclass(frozen=True)
class Config:
    """Everything the daemon was configured with, validated; ``warnings`` are to be logged
    at start (unknown options and sections, emails turned off, ignored Sentry)."""

    path: Path
    daemon: DaemonSettings
    site: SiteSettings
    plugins: PluginSettings
    emails: EmailSettings
    warnings: Tuple[str, ...] = ()

    def secrets(self) -> List[str]:
        """Every secret in clear, for the log filter that blanks them out of log lines."""
        found = [self.site.script_key.reveal()]
        if self.emails.password:
            found.append(self.emails.password.reveal())
        # A proxy's password, and the site URL's (https://user:password@site, HTTP basic
        # authentication in front of the site, which shotgun_api3 supports).
        for address in (self.site.proxy_server, self.site.server):
            password = _url_password(address)
            if password:
                found += {password, unquote(password)}  # as written, and %-decoded
        return [secret for secret in found if secret]


def _url_password(address: Optional[str]) -> Optional[str]:
    """The password of a ``[scheme://]user:password@host[:port]`` address, if it has one."""
    if not address or "@" not in address:
        return None
    credentials = address.rsplit("@", 1)[0].split("://", 1)[-1]
    _, colon, password = credentials.partition(":")
    return password if colon else None


# --------------------------------------------------------------------------- finding the file


def find_config_file(
    cli_path: Optional[str] = None,
    environ: Mapping[str, str] = os.environ,
    program_path: Optional[str] = None,
) -> Path:
    """The config file to load: ``--config``, else ``$SGED_CONFIG``, else the classic search.

    A file named explicitly (``--config``, ``$SGED_CONFIG``) must exist: falling back to
    another file would run the daemon with a config the user did not ask for. The classic
    search looks next to the running program (``sys.argv[0]`` unless ``program_path`` is
    given), then in ``/etc``.
    """
    if cli_path is not None:
        return _named_file(cli_path, "--config")
    from_environment = environ.get(CONFIG_ENV_VAR, "")
    if from_environment.strip():
        return _named_file(from_environment, f"${CONFIG_ENV_VAR}")
    tried = []
    for candidate in _classic_places(program_path):
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    raise ConfigError(
        f"no config file found; tried {', '.join(tried)} (--config not given, "
        f"${CONFIG_ENV_VAR} not set). Pass --config PATH or set {CONFIG_ENV_VAR}=PATH."
    )


def _named_file(raw: str, origin: str) -> Path:
    if not str(raw).strip():
        raise ConfigError(f"{origin} names no file (empty path)")
    path = Path(os.path.abspath(os.path.expanduser(raw)))
    if os.path.isfile(path):
        return path
    problem = "is not a file" if os.path.exists(path) else "no such file"
    raise ConfigError(f"{problem} (named by {origin})", path=path)


def _classic_places(program_path: Optional[str]) -> Iterator[Path]:
    """The classic daemon's search: the running program's folder, then /etc."""
    program = sys.argv[0] if program_path is None else program_path
    if program and program not in ("-", "-c"):
        folder = os.path.abspath(os.path.dirname(os.path.expanduser(program)))
        beside_program = Path(folder) / CONFIG_FILE_NAME
        if beside_program != _SYSTEM_CONFIG:
            yield beside_program
    yield _SYSTEM_CONFIG


# --------------------------------------------------------------------------- the options

# Every option of every known section, spelled as in files (names are case-insensitive).
_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "daemon": (
        "pidFile",
        "eventIdFile",
        "logMode",
        "logPath",
        "logFile",
        "logging",
        "log_rotation",
        "timing_log",
        "conn_retry_sleep",
        "max_conn_retries",
        "fetch_interval",
        "max_event_batch_size",
        "gap_timeout",
        "state_save_interval",
        "site_timeout",
        "stop_timeout",
        "status_file",
        "status_interval",
        "metrics_port",
        "metrics_host",
        "max_plugin_backlog",
        "plugin_retry",
        "callback_timeout",
        "worker_restart_limit",
        "worker_restart_window",
        "max_worker_memory_mb",
    ),
    "shotgun": ("server", "name", "key", "proxy_server", "use_session_uuid"),
    "plugins": ("paths", "isolation", "ordering"),
    "emails": (
        "enabled",
        "server",
        "port",
        "useTLS",
        "useSSL",
        "username",
        "password",
        "from",
        "to",
        "subject",
        "timeout",
        "rate_limit_window",
    ),
}
_FOLDER_PREFIX = "plugins:"
_FOLDER_OPTIONS = ("isolation", "ordering")
_REQUIRED_SECTIONS = ("daemon", "shotgun", "plugins")
# The classic file's [sentry] section: accepted, and only mentioned when a DSN is set.
_SENTRY = "sentry"
# The classic example file's [proxy] section (its http_proxy commented out): accepted, and
# only mentioned when http_proxy is set, as [shotgun] proxy_server is what is used.
_PROXY = "proxy"
_SECRET_OPTIONS = {("shotgun", "key"), ("emails", "password")}
_DEFAULT = "DEFAULT"
# ConfigParser would merge [DEFAULT] into every section, which hides which options a
# section really has; this name can never be written in a file, so [DEFAULT] stays a
# plain section and the fallback to it is done here.
_NO_DEFAULT_SECTION = "\x00 no default section"

_TRUE_WORDS = ("on", "true", "yes", "1")
_FALSE_WORDS = ("off", "false", "no", "0")
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class _BadValueError(ValueError):
    """A value breaks its option's rule; the message is the rule ("must be ...")."""


# --------------------------------------------------------------------------- value rules


def _flag(text: str) -> bool:
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _BadValueError("must be on or off (or true/false, yes/no, 1/0)")


def _seconds(allow_zero: bool = False, most: float = HOUR) -> Callable[[str], float]:
    """A number of seconds > 0 (or >= 0), at most ``most``."""
    rule = (
        f"must be a number of seconds {'>=' if allow_zero else '>'} 0 "
        f"and at most {_duration_words(most)}"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _BadValueError(rule) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise _BadValueError(rule)
        if value > most:
            raise _BadValueError(rule)
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    rule = f"must be a whole number from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _BadValueError(rule) from None
        if value < low or value > high:
            raise _BadValueError(rule)
        return value

    return parse


def _choice(*names: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.lower()
        if word not in names:
            raise _BadValueError(f"must be {' or '.join(names)}")
        return word

    return parse


def _log_mode(text: str) -> int:
    if text not in ("0", "1"):
        raise _BadValueError(
            "must be 0 (everything in the main log file) or 1 (one file per plugin)"
        )
    return int(text)


def _log_level(text: str) -> int:
    if text.upper() in _LEVELS:
        return _LEVELS[text.upper()]
    try:
        level = int(text)
    except ValueError:
        level = 0
    if not 0 < level <= logging.CRITICAL:
        raise _BadValueError(
            "must be a number from 1 to 50 (10 = DEBUG, 20 = INFO, 30 = WARNING, ...) "
            "or a level name: DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    return level


def _optional_seconds(text: str) -> Optional[float]:
    """``0`` turns the option off (None); anything else is a number of seconds > 0."""
    value = _seconds(allow_zero=True, most=DAY)(text)
    return value or None


def _site_url(text: str) -> str:
    rule = "must be the site's http:// or https:// URL, like https://yoursite.shotgunstudio.com"
    if any(char.isspace() for char in text):
        raise _BadValueError(rule)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - reading it is what validates the port
    except ValueError:
        raise _BadValueError(rule) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _BadValueError(rule)
    if parts.query or parts.fragment:
        raise _BadValueError(rule)
    return text.rstrip("/")


def _proxy_address(text: str) -> str:
    """``[user:password@]host[:port]`` as shotgun_api3 reads it (it would fail on every
    request otherwise, which looks like a site that is down). The value is never shown: it
    may hold a password."""
    rule = "must be host[:port] or user:password@host[:port], with a port from 1 to 65535"
    credentials, at, address = text.rpartition("@")
    if at and ":" not in credentials:
        raise _BadValueError(rule)
    host, colon, port = address.partition(":")
    if not host or "/" in address or any(char.isspace() for char in address):
        raise _BadValueError(rule)
    if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _BadValueError(rule)
    return text


def _items(text: str) -> List[str]:
    """A comma separated list (newlines count as commas), blanks dropped."""
    return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]


def _address(text: str) -> str:
    if "@" not in text:
        raise _BadValueError("must be an email address (with an '@')")
    return text


def _mail_server(text: str) -> str:
    if _TEMPLATE_TOKEN.match(text):
        raise _BadValueError("is the example's template placeholder; write the mail server's name")
    return text


def _addresses(text: str) -> Tuple[str, ...]:
    addresses = _items(text)
    for address in addresses:
        if "@" not in address:
            raise _BadValueError(
                f"must be email addresses separated by commas; {address!r} has no '@'"
            )
    return tuple(addresses)


def _script_key(text: str) -> Secret:
    """Application keys have no spaces; one inside is a copy-paste slip (or a lost line break)."""
    if any(char.isspace() for char in text):
        raise _BadValueError("must be the script's application key, without spaces (not shown)")
    return Secret(text)


def _file_name(text: str) -> str:
    return os.path.expanduser(text)


def _path_under(folder: Path) -> Callable[[str], Path]:
    """Paths as the example config documents them: ``~`` expanded, relative to ``folder``."""

    def parse(text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else folder / path

    return parse


def _file_under(folder: Path) -> Callable[[str], Path]:
    """A file the daemon writes (state, pid, status): a path under ``folder`` that is not a
    folder already (the daemon would otherwise take the folder for a damaged file)."""
    as_path = _path_under(folder)

    def parse(text: str) -> Path:
        path = as_path(text)
        # os.path: False (not an error) when the folder cannot be entered, as for an
        # operator running `status` without access to the daemon's own folder.
        if os.path.isdir(path):
            raise _BadValueError(f"is a folder ({path}); name a file in it instead")
        return path

    return parse


_RETRY_FIELDS: Dict[str, Callable[[str], Any]] = {
    "attempts": int,
    "first_delay": float,
    "max_delay": float,
    "give_up_after": float,
    "jitter": float,
}


def _retry_policy(text: str) -> Optional[RetryPolicy]:
    """``off``, ``on`` (the default policy) or ``attempts=8, first_delay=2, ...``."""
    if text.lower() in _FALSE_WORDS:
        return None
    if text.lower() in _TRUE_WORDS:
        return RetryPolicy()
    values: Dict[str, Any] = {}
    for item in _items(text):
        name, equals, number = (part.strip() for part in item.partition("="))
        name = name.lower()
        if not equals or name not in _RETRY_FIELDS:
            raise _BadValueError(
                f"must be off, on, or key=value pairs from {', '.join(_RETRY_FIELDS)} "
                f"(like 'attempts=8, first_delay=2'); {item!r} is not one"
            )
        if name in values:
            raise _BadValueError(f"gives {name} twice")
        try:
            values[name] = _RETRY_FIELDS[name](number)
        except ValueError:
            raise _BadValueError(f"{name} must be a number") from None
    try:
        return RetryPolicy(**values)
    except ValueError as exc:
        raise _BadValueError(str(exc)) from None


# --------------------------------------------------------------------------- reading the file


def _read_text(path: Path) -> Tuple[str, Optional[str]]:
    """The file's text, and a warning when it had to be read as Latin-1."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a config file", path=path) from None
    except PermissionError:
        raise ConfigError(
            "cannot be read (permission denied); the daemon's user needs read access",
            path=path,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror or exc}", path=path) from None
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        # Old files may carry a Latin-1 comment; reading it as such keeps them loading.
        line = data[: exc.start].count(b"\n") + 1
        warning = f"{path}: line {line}: the file is not UTF-8; it was read as Latin-1"
        return data.decode("latin-1"), warning


#: A section header with leading space: INI reads it as one more line of the option above.
_INDENTED_HEADER = re.compile(r"^[ \t]+\[[^\]]+\][ \t]*$")


def _refuse_indented_headers(path: Path, text: str) -> None:
    """An indented ``[section]`` line (a block pasted with its indentation) would silently
    turn the whole section into more lines of the option above it: its options would be
    lost, and its secrets read as, say, plugin folder names and shown in messages."""
    for number, line in enumerate(text.splitlines(), start=1):
        if _INDENTED_HEADER.match(line):
            raise ConfigError(
                f"the section header {line.strip()} is indented, so it would be read as part "
                "of the option above it; remove the spaces before it",
                path=path,
                line=number,
            )


def _parse(path: Path, text: str) -> configparser.ConfigParser:
    """The INI structure, raw (no interpolation: references are expanded later, here)."""
    _refuse_indented_headers(path, text)
    parser = configparser.ConfigParser(
        interpolation=None, default_section=_NO_DEFAULT_SECTION, strict=True
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            "an option comes before the first [section] line", path=path, line=exc.lineno
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"the section [{exc.section}] appears twice", path=path, line=exc.lineno
        ) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            "the option appears twice in this section",
            path=path,
            section=exc.section,
            option=exc.option,
            line=exc.lineno,
        ) from None
    except configparser.ParsingError as exc:
        line, shown = _first_bad_line(exc)
        raise ConfigError(
            f"expected 'option: value', 'option = value' or '[section]', got {shown}",
            path=path,
            line=line,
        ) from None
    except configparser.Error as exc:
        raise ConfigError(f"cannot be parsed: {exc.message}", path=path) from None
    return parser


def _first_bad_line(exc: configparser.ParsingError) -> Tuple[Optional[int], str]:
    """The first line ConfigParser rejected, hidden if it may hold a secret (``key abc``)."""
    errors = getattr(exc, "errors", None) or [(None, "")]
    line, shown = errors[0]
    if re.search(r"(?i)(key|password|dsn|secret|token)", str(shown)):
        shown = "a line that is not shown because it may hold a secret"
    return line, str(shown)


class _Reader:
    """Typed, validated access to the options of one parsed file.

    It knows where a value came from, so every failure names the file, section and
    option; it expands ``%(NAME)s`` references; and it keeps the warnings to log at start.
    """

    def __init__(
        self, path: Path, parser: configparser.ConfigParser, environ: Mapping[str, str]
    ) -> None:
        self.path = path
        self.folder = path.parent
        self.warnings: List[str] = []
        self._parser = parser
        self._environ = environ
        self._environ_by_lower_name: Optional[Dict[str, str]] = None

    def error(
        self, problem: str, section: Optional[str] = None, option: Optional[str] = None
    ) -> ConfigError:
        return ConfigError(problem, path=self.path, section=section, option=option)

    def warn(
        self, message: str, section: Optional[str] = None, option: Optional[str] = None
    ) -> None:
        self.warnings.append(_where(self.path, section, option, None) + message)

    def has_section(self, section: str) -> bool:
        return self._parser.has_section(section)

    def sections(self) -> List[str]:
        return self._parser.sections()

    def options(self, section: str) -> List[str]:
        """The options written in the section itself (lower case, [DEFAULT] not merged)."""
        return self._parser.options(section)

    def require_section(self, section: str) -> None:
        if self.has_section(section):
            return
        problem = "the section is missing"
        look_alikes = [name for name in self.sections() if name.lower() == section]
        if look_alikes:
            problem += f" (there is a [{look_alikes[0]}]; section names are case-sensitive)"
        raise self.error(problem, section)

    def get(self, section: str, option: str, parse: Callable[[str], T], default: T) -> T:
        """The option's value by its rule, or ``default`` when it is absent or empty."""
        text = self.text(section, option)
        if text is None:
            return default
        return self._apply(section, option, parse, text)

    def required(self, section: str, option: str, parse: Callable[[str], T], what: str) -> T:
        """Like ``get`` for an option with no default; ``what`` tells the user what to write."""
        text = self.text(section, option)
        if text is None:
            raise self.error(f"is required ({what})", section, option)
        return self._apply(section, option, parse, text)

    def _apply(self, section: str, option: str, parse: Callable[[str], T], text: str) -> T:
        try:
            return parse(text)
        except _BadValueError as exc:
            problem = str(exc)
            if not _is_secret(section, option):
                shown = _shown_value(text)
                password = _url_password(text)  # a proxy's or the site URL's
                if password:
                    shown = shown.replace(password, "********")
                problem += f", got {shown}"
            raise self.error(problem, section, option) from None

    def text(self, section: str, option: str) -> Optional[str]:
        """The expanded, stripped value from the section or [DEFAULT]; None if absent/empty."""
        key = option.lower()
        assert key in _known_keys(section), f"{option} is missing from _OPTIONS"
        for where in (section, _DEFAULT):
            raw = self.raw(where, key)
            if raw is not None:
                return self.expand(raw, section, option, [(where, key)]).strip() or None
        return None

    def raw(self, section: str, key: str) -> Optional[str]:
        """The value as written in the section itself, unexpanded; None if it is not there."""
        if self.has_section(section) and self._parser.has_option(section, key):
            return self._parser.get(section, key)
        return None

    def expand(self, raw: str, section: str, option: Optional[str], chain: List[Any]) -> str:
        """Expand ``%(NAME)s`` and ``%%`` in ``raw``, read for ``[section] option``.

        A reference is looked up in the section, then [DEFAULT] (values found there are
        expanded in turn, as the classic ConfigParser did), then the environment: the exact
        name, then ignoring case. Environment values are taken literally.
        """
        parts = []
        position = 0
        while True:
            percent = raw.find("%", position)
            if percent < 0:
                parts.append(raw[position:])
                return "".join(parts)
            parts.append(raw[position:percent])
            if raw.startswith("%%", percent):
                parts.append("%")
                position = percent + 2
                continue
            reference = _REFERENCE.match(raw, percent)
            if not reference:
                raise self.error(
                    "a '%' must be written '%%', or start a reference like %(HOME)s",
                    section,
                    option,
                )
            parts.append(self._lookup(reference.group(1), section, option, chain))
            position = reference.end()

    def _lookup(self, name: str, section: str, option: Optional[str], chain: List[Any]) -> str:
        key = name.lower()
        for where in (section, _DEFAULT):
            raw = self.raw(where, key)
            if raw is None:
                continue
            if (where, key) in chain:
                names = [step for _, step in chain] + [key]
                loop = " -> ".join(f"%({step})s" for step in names)
                raise self.error(f"references loop back to themselves: {loop}", section, option)
            return self.expand(raw, section, option, [*chain, (where, key)])
        value = self._environment(name)
        if value is None:
            raise self.error(
                f"%({name})s is not defined: no option {key!r} in [{section}] or [DEFAULT], "
                f"and no environment variable {name}",
                section,
                option,
            )
        return value

    def _environment(self, name: str) -> Optional[str]:
        if name in self._environ:
            return self._environ[name]
        if self._environ_by_lower_name is None:
            self._environ_by_lower_name = {}
            for real_name in sorted(self._environ):
                self._environ_by_lower_name.setdefault(real_name.lower(), real_name)
        real_name = self._environ_by_lower_name.get(name.lower())
        return None if real_name is None else self._environ[real_name]


_REFERENCE = re.compile(r"%\(([^()%\s]+)\)s")


def _shown_value(text: str) -> str:
    """A bad value as quoted in a message: its first line only, because an indented line
    after an option continues its value, and may be a misplaced secret."""
    first, newline, _ = text.partition("\n")
    return repr(first) + (" (and the lines after it)" if newline else "")


def _is_secret(section: str, option: str) -> bool:
    return (section, option.lower()) in _SECRET_OPTIONS


def _known_keys(section: str) -> Tuple[str, ...]:
    if section.startswith(_FOLDER_PREFIX):
        return _FOLDER_OPTIONS
    return tuple(option.lower() for option in _OPTIONS.get(section, ()))


# --------------------------------------------------------------------------- the sections


#: The site answers at most this many rows per page.
MAX_BATCH_SIZE = 500


def _batch_size(r: _Reader) -> int:
    """The classic daemon took any page size; the site never answers more than 500 rows,
    so a larger value (an old config's) loads as 500, with a warning."""
    size = r.get("daemon", "max_event_batch_size", _whole(1, MAX_WHOLE), MAX_BATCH_SIZE)
    if size > MAX_BATCH_SIZE:
        r.warn(
            f"{size} is more than the site's page size; {MAX_BATCH_SIZE} is used",
            "daemon",
            "max_event_batch_size",
        )
    return min(size, MAX_BATCH_SIZE)


def _daemon_settings(r: _Reader) -> DaemonSettings:
    s = "daemon"
    path = _path_under(r.folder)
    file = _file_under(r.folder)
    event_id_file = r.get(s, "eventIdFile", file, r.folder / "shotgunEventDaemon.id")
    return DaemonSettings(
        pid_file=r.get(s, "pidFile", file, r.folder / "shotgunEventDaemon.pid"),
        event_id_file=event_id_file,
        log_mode=r.get(s, "logMode", _log_mode, 1),
        log_path=r.get(s, "logPath", path, r.folder),
        log_file=r.get(s, "logFile", _file_name, "shotgunEventDaemon"),
        log_level=r.get(s, "logging", _log_level, logging.INFO),
        log_rotation=r.get(s, "log_rotation", _choice("midnight", "external"), "midnight"),
        timing_log=r.get(s, "timing_log", _flag, False),
        conn_retry_sleep=r.get(s, "conn_retry_sleep", _seconds(), 60.0),
        max_conn_retries=r.get(s, "max_conn_retries", _whole(1, MAX_COUNT), 5),
        fetch_interval=r.get(s, "fetch_interval", _seconds(), 5.0),
        max_event_batch_size=_batch_size(r),
        gap_timeout=r.get(s, "gap_timeout", _seconds(allow_zero=True, most=DAY), 300.0),
        state_save_interval=r.get(s, "state_save_interval", _seconds(), 1.0),
        site_timeout=r.get(s, "site_timeout", _seconds(), 60.0),
        stop_timeout=r.get(s, "stop_timeout", _seconds(), 30.0),
        status_file=r.get(s, "status_file", file, Path(f"{event_id_file}.status.json")),
        status_interval=r.get(s, "status_interval", _seconds(), 5.0),
        metrics_port=r.get(s, "metrics_port", _whole(0, 65535), 0),
        metrics_host=r.get(s, "metrics_host", str, "127.0.0.1"),
        max_plugin_backlog=r.get(s, "max_plugin_backlog", _whole(1, MAX_BACKLOG), 5000),
        plugin_retry=r.get(s, "plugin_retry", _retry_policy, None),
        callback_timeout=r.get(s, "callback_timeout", _optional_seconds, None),
        worker_restart_limit=r.get(s, "worker_restart_limit", _whole(1, MAX_COUNT), 5),
        worker_restart_window=r.get(s, "worker_restart_window", _seconds(most=DAY), 600.0),
        max_worker_memory_mb=r.get(s, "max_worker_memory_mb", _whole(0, MAX_MEMORY_MB), 0),
    )


def _site_settings(r: _Reader) -> SiteSettings:
    s = "shotgun"
    return SiteSettings(
        server=r.required(
            s, "server", _site_url, "the site's URL, like https://yoursite.shotgunstudio.com"
        ),
        script_name=r.required(s, "name", str, "the name of the daemon's script on the site"),
        script_key=r.required(s, "key", _script_key, "the application key of that script"),
        proxy_server=r.get(s, "proxy_server", _proxy_address, None),
        use_session_uuid=r.get(s, "use_session_uuid", _flag, False),
    )


def _plugin_settings(r: _Reader) -> PluginSettings:
    s = "plugins"
    isolation = r.get(s, "isolation", _choice("thread", "process"), "thread")
    ordering = r.get(s, "ordering", _choice("eager", "strict"), "eager")
    written = r.required(s, "paths", _folder_list, "the plugin folders, separated by commas")
    resolved = _distinct_folders(r, written)
    overrides = _folder_sections(r, written)
    for path, section in overrides.items():
        if path not in resolved:
            r.warn(f"is not used: {path!r} is a folder listed before it by another path", section)
    folders = []
    for path in resolved:
        section = overrides.get(path)
        if section is not None:
            folder_isolation = r.get(section, "isolation", _choice("thread", "process"), isolation)
            folder_ordering = r.get(section, "ordering", _choice("eager", "strict"), ordering)
        else:
            folder_isolation, folder_ordering = isolation, ordering
        folders.append(
            PluginFolderSettings(path, resolved[path], folder_isolation, folder_ordering)
        )
    return PluginSettings(folders=tuple(folders))


def _folder_list(text: str) -> List[str]:
    folders = _items(text)
    if not folders:
        raise _BadValueError("must list at least one plugin folder")
    return folders


def _distinct_folders(r: _Reader, written: List[str]) -> Dict[str, Path]:
    """Each folder to use, resolved: a folder listed twice would run its plugins twice.

    The same spelling twice (``a`` and ``./a``) is a typo in this one line: an error. The
    same folder by another path (a ``current`` release link beside the folder it points to,
    a bind mount: compared by real path and inode) comes from how the disk is laid out, can
    change under a running daemon, and must not stop the start: the folder is used once, as
    first listed, with a warning. The later spelling then counts as a folder no longer
    configured, so a plugin new under the first one may resume from its saved position
    (see README, "Moved plugin folders").
    """
    resolved: Dict[str, Path] = {}
    first_spelling: Dict[Any, str] = {}
    for path in written:
        folder = _path_under(r.folder)(path)
        real = os.path.realpath(folder)
        identities = [real, *_inode(real)]  # an inode too: a bind mount has another path
        earlier = next((first_spelling[i] for i in identities if i in first_spelling), None)
        if earlier is None:
            for identity in identities:
                first_spelling[identity] = path
            resolved[path] = folder
        elif os.path.normpath(_path_under(r.folder)(earlier)) == os.path.normpath(folder):
            raise r.error(
                f"lists the folder {real} twice ({earlier!r} and {path!r}): its plugins "
                "would run twice; keep one",
                "plugins",
                "paths",
            )
        else:
            r.warn(
                f"{path!r} is the folder {earlier!r} by another path ({real}); its plugins "
                f"run once, as listed first ({earlier!r}), and {path!r} is not used",
                "plugins",
                "paths",
            )
    return resolved


def _inode(path: str) -> List[Tuple[int, int]]:
    """``[(device, inode)]`` of an existing path, ``[]`` when it cannot be looked at."""
    try:
        info = os.stat(path)
    except OSError:
        return []
    return [(info.st_dev, info.st_ino)]


def _folder_sections(r: _Reader, written: List[str]) -> Dict[str, str]:
    """``[plugins:<folder>]`` sections by the folder they name, exactly as in ``paths``."""
    sections: Dict[str, str] = {}
    for section in r.sections():
        if not section.startswith(_FOLDER_PREFIX):
            continue
        raw_name = section[len(_FOLDER_PREFIX) :].strip()
        folder = r.expand(raw_name, "plugins", None, []).strip()
        if folder not in written:
            hint = difflib.get_close_matches(folder, written, n=1)
            raise r.error(
                f"names no plugin folder of [plugins] paths ({', '.join(written)})"
                + (f"; did you mean [plugins:{hint[0]}]?" if hint else "")
                + " The folder must be written exactly as in paths.",
                section,
            )
        if folder in sections:
            raise r.error(f"names the same folder as [{sections[folder]}]", section)
        sections[folder] = section
    return sections


def _email_settings(r: _Reader) -> EmailSettings:
    s = "emails"
    if not r.has_section(s):
        return EmailSettings()
    enabled = r.get(s, "enabled", _flag, None)
    if enabled is not True:
        unusable = _unusable_email_values(r)
        if unusable:  # an old file still holding the classic example's $SMTP_SERVER$ tokens
            if enabled is None:
                r.warn(
                    "error emails are off: {} (write real values, or 'enabled: off' to "
                    "silence this)".format("; ".join(unusable)),
                    s,
                )
            return EmailSettings()
    use_starttls = r.get(s, "useTLS", _flag, False)
    use_ssl = r.get(s, "useSSL", _flag, False)
    if use_starttls and use_ssl:
        raise r.error(
            "useTLS (STARTTLS, usually port 587) and useSSL (SMTPS, usually port 465) "
            "are both on; turn one off",
            s,
            "useSSL",
        )
    server = r.get(s, "server", _mail_server, None)
    username = r.get(s, "username", str, None)
    password = r.get(s, "password", Secret, None)
    if username and not password:
        raise r.error("is required when username is set", s, "password")
    if password and not username:
        raise r.error("is required when password is set", s, "username")
    from_addr = r.get(s, "from", _address, None)
    to_addrs = r.get(s, "to", _addresses, ())
    settings = EmailSettings(
        enabled=_emails_enabled(r, enabled, server, from_addr, to_addrs),
        server=server,
        port=r.get(s, "port", _whole(1, 65535), 465 if use_ssl else 25),
        use_starttls=use_starttls,
        use_ssl=use_ssl,
        username=username,
        password=password,
        from_addr=from_addr,
        to_addrs=to_addrs,
        subject=r.get(s, "subject", str, "[shotgunEvents]"),
        timeout=r.get(s, "timeout", _seconds(), 10.0),
        rate_limit_window=r.get(s, "rate_limit_window", _seconds(allow_zero=True, most=DAY), 600.0),
    )
    return settings


def _emails_enabled(
    r: _Reader,
    enabled: Optional[bool],
    server: Optional[str],
    from_addr: Optional[str],
    to_addrs: Tuple[str, ...],
) -> bool:
    """``enabled`` as written, else on exactly when server, from and to are all set."""
    given = (("server", server), ("from", from_addr), ("to", to_addrs))
    empty = [name for name, value in given if not value]
    listed = " and ".join(empty) + (" is" if len(empty) == 1 else " are")
    if enabled and empty:
        raise r.error(f"is on, but {listed} empty", "emails", "enabled")
    if enabled is None:
        if empty and len(empty) < 3:
            r.warn(
                f"error emails are off because {listed} empty "
                "(set them, or write 'enabled: off' to silence this)",
                "emails",
            )
        return not empty
    return enabled


#: A value left as the classic example's template token (``$SMTP_SERVER$``, ``$FROM_EMAIL$``).
_TEMPLATE_TOKEN = re.compile(r"^\$[A-Za-z0-9_]+\$$")


def _unusable_email_values(r: _Reader) -> List[str]:
    """What makes the [emails] values unusable for sending: template tokens the classic
    example told users to replace, and addresses without an '@'. The classic daemon ran
    with such a file and never sent mail, so an old file must still load."""
    found = []
    for option in ("server", "port", "username", "password", "from", "to"):
        text = r.text("emails", option)
        if text is None:
            continue
        items = _items(text) if option == "to" else [text]
        tokens = [item for item in items if _TEMPLATE_TOKEN.match(item)]
        if tokens:
            shown = "" if _is_secret("emails", option) else " " + ", ".join(tokens)
            found.append(f"{option} is the example's template placeholder{shown}")
        elif option in ("from", "to"):
            found.extend(
                f"{option} {item!r} is not an email address (no '@')"
                for item in items
                if "@" not in item
            )
    return found


# --------------------------------------------------------------------------- warnings


def _warn_about_the_unknown(r: _Reader) -> None:
    """Unknown sections and options are ignored, but said, with the likely intended name."""
    known_sections = [*_OPTIONS, _SENTRY, _PROXY]
    for section in r.sections():
        if section == _DEFAULT:
            continue
        if section == _SENTRY:
            _warn_about_sentry(r)
            continue
        if section == _PROXY:
            _warn_about_http_proxy(r)
            continue
        if section not in _OPTIONS and not section.startswith(_FOLDER_PREFIX):
            hint = difflib.get_close_matches(section.lower(), known_sections, n=1)
            suffix = f" (did you mean [{hint[0]}]?)" if hint else ""
            r.warn(f"unknown section, ignored{suffix}", section)
            continue
        spelled = _OPTIONS.get(section, _FOLDER_OPTIONS)
        by_key = {option.lower(): option for option in spelled}
        for key in r.options(section):
            if key in by_key:
                continue
            hint = difflib.get_close_matches(key, list(by_key), n=1)
            suffix = f" (did you mean {by_key[hint[0]]}?)" if hint else ""
            r.warn(f"unknown option, ignored{suffix}", section, key)


def _warn_about_sentry(r: _Reader) -> None:
    """The classic [sentry] section loads; a DSN in it does nothing, which the user must know."""
    _warn_if_set(
        r,
        _SENTRY,
        "sentry_dsn",
        "Sentry is not supported; the DSN is ignored (errors are logged, and emailed when "
        "[emails] is set up)",
    )


def _warn_about_http_proxy(r: _Reader) -> None:
    """The classic [proxy] section loads; an http_proxy in it is not used."""
    _warn_if_set(
        r,
        _PROXY,
        "http_proxy",
        "not used; set the proxy as [shotgun] proxy_server (host:port, or user:password@host:port)",
    )


def _warn_if_set(r: _Reader, section: str, option: str, message: str) -> None:
    """Warn about a classic option that is accepted but does nothing, when it has a value.

    The value is never shown: a DSN holds a project key, a proxy URL may hold a password.
    """
    value = r.raw(section, option)
    if value and value.strip():
        r.warn(message, section, option)


def _refuse_shared_daemon_files(r: _Reader, config_path: Path, daemon: DaemonSettings) -> None:
    """Two options naming one file (a status file over the state file, a pid file that is
    the state file's lock) destroyed the saved positions: refuse, naming both options."""
    log_folder = daemon.log_path or config_path.parent
    main_log = _path_under(log_folder)(daemon.log_file)
    files, families = daemon_files(
        config_path=config_path,
        event_id_file=daemon.event_id_file,
        pid_file=daemon.pid_file,
        status_file=daemon.status_file,
        main_log=main_log,
        timing_log=Path(f"{main_log}.timing") if daemon.timing_log else None,
        plugin_log_folder=log_folder if daemon.log_mode == 1 else None,
        rotates=daemon.log_rotation == "midnight",
    )
    clash = first_clash(files, families)
    if clash is not None:
        raise r.error(clash.message, "daemon", clash.later.option)


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | os.PathLike[str], environ: Optional[Mapping[str, str]] = None
) -> Config:
    """Read, expand and validate the config file at ``path``.

    ``environ`` (default ``os.environ``) is where ``%(NAME)s`` references that no option
    defines are looked up. Every problem raises ``ConfigError``; nothing is created on disk.
    """
    config_path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    text, encoding_warning = _read_text(config_path)
    environ = os.environ if environ is None else environ
    reader = _Reader(config_path, _parse(config_path, text), environ)
    if encoding_warning:
        reader.warnings.append(encoding_warning)
    for section in _REQUIRED_SECTIONS:
        reader.require_section(section)
    daemon = _daemon_settings(reader)
    _refuse_shared_daemon_files(reader, config_path, daemon)
    site = _site_settings(reader)
    plugins = _plugin_settings(reader)
    emails = _email_settings(reader)
    _warn_about_the_unknown(reader)
    return Config(
        path=config_path,
        daemon=daemon,
        site=site,
        plugins=plugins,
        emails=emails,
        warnings=tuple(reader.warnings),
    )
