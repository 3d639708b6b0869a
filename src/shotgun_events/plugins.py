"""Plugin folders, plugin modules, hot reload, and the classic plugin API.

This is the only module that speaks the classic camelCase API plugins call
(``registerCallbacks(reg)``, ``reg.registerCallback(...)``, ``reg.setEmails(...)``,
``reg.getLogger()``), so that plugins written for the classic shotgunEvents daemon run
unchanged. It decides which callbacks want an event and how they are called; it never
decides when: that is the worker's job (workers.py), and it never touches saved positions.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import logging
import os
import re
import stat
import sys
import threading
import traceback
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import shotgun_api3

from .config import DAY, RetryPolicy
from .matching import EventMatcher
from .retry import resolve_policy

log = logging.getLogger("engine.plugins")

#: What a plugin asked for with ``reg.setEmails``: False, True (default recipients) or addresses.
EmailSetting = Union[bool, Tuple[str, ...]]

#: (mtime_ns, size, inode): a file counts as changed when any of these differ, not only when
#: it is newer (a file restored from a backup is older, and must reload too).
FileSignature = Tuple[int, int, int]


@dataclass(frozen=True)
class PluginEnvironment:
    """What plugins need from the engine, passed down so this module imports nothing above it."""

    server: str
    proxy_server: Optional[str] = None
    use_session_uuid: bool = False
    site_timeout: Optional[float] = None
    #: Called with every secret a plugin registers (script keys), so the logs can hide them.
    add_secret: Callable[[str], None] = lambda secret: None
    #: Called with each plugin's logger after (re)loading, so log files can be attached.
    on_plugin_logger: Callable[[str, logging.Logger], None] = lambda name, logger: None
    #: The level plugin loggers start at (the config's ``logging`` option).
    log_level: int = logging.INFO
    #: The retry policy of callbacks that do not say (``[daemon] plugin_retry``; None: off).
    default_retry: Optional[RetryPolicy] = None


class PluginLoadError(Exception):
    """A plugin that cannot be used until its file changes; the message says why."""


class Callback:
    """One registered callback: what it matches, its connection, and how to call it."""

    def __init__(
        self,
        plugin: Plugin,
        script_name: str,
        script_key: str,
        function: Callable[..., Any],
        matcher: EventMatcher,
        args: Any,
        stop_on_error: bool,
        options: Mapping[str, Any],
    ) -> None:
        self.plugin = plugin
        self.name = _callback_name(function)
        self.function = function
        self.matcher = matcher
        self.args = args
        self.stop_on_error = bool(stop_on_error)
        #: Position in the plugin's registration order (set when the plugin adds it).
        self.index = 0
        self.options = dict(options)
        #: How transient site errors in this callback are retried (None: they are not).
        self.retry_policy = resolve_policy(options.get("retry"), plugin.environment.default_retry)
        self.logger = logging.getLogger(f"{plugin.logger.name}.{self.name}")
        self._script_name = script_name
        self._script_key = script_key
        self._sg: Optional[shotgun_api3.Shotgun] = None

    def __repr__(self) -> str:
        return f"<Callback {self.plugin.name}.{self.name}>"

    @property
    def full_name(self) -> str:
        return f"{self.plugin.name}.{self.name}"

    @property
    def script_name(self) -> str:
        """The script the callback's connection logs in as (its key is never shown)."""
        return self._script_name

    @property
    def sg(self) -> shotgun_api3.Shotgun:
        """The callback's own site connection, made at first use.

        Made lazily so that an unreachable site, or a wrong key, does not stop the plugin
        from loading: the failure then belongs to the first event, where it is reported.
        """
        if self._sg is None:
            env = self.plugin.environment
            sg = shotgun_api3.Shotgun(
                env.server,
                self._script_name,
                self._script_key,
                http_proxy=env.proxy_server or None,
                connect=False,
            )
            if env.site_timeout:
                sg.config.timeout_secs = env.site_timeout
            self._sg = sg
        return self._sg

    def __call__(self, event: Dict[str, Any], timeout: Optional[float] = None) -> None:
        """Run the callback on one event, exactly as the classic daemon did.

        ``timeout`` is for process isolation; in this process a callback cannot be stopped
        from outside, so its overrun is only reported (see workers.PluginWorker.overrun).
        """
        sg = self.sg
        if self.plugin.environment.use_session_uuid:
            sg.set_session_uuid(event.get("session_uuid"))
        self.function(sg, self.logger, event, self.args)


class Registrar:
    """The ``reg`` object handed to ``registerCallbacks(reg)``: the classic plugin API."""

    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin

    @property
    def logger(self) -> logging.Logger:
        return self._plugin.logger

    def getLogger(self) -> logging.Logger:  # noqa: N802 - classic API
        return self._plugin.logger

    def setEmails(self, *emails: Any) -> None:  # noqa: N802 - classic API
        """False: no error emails; True: the configured recipients; else these addresses."""
        self._plugin.emails = _email_setting(emails)

    def registerCallback(  # noqa: N802 - classic API
        self,
        sgScriptName: str,  # noqa: N803
        sgScriptKey: str,  # noqa: N803
        callback: Callable[..., Any],
        matchEvents: Optional[Mapping[str, Any]] = None,  # noqa: N803
        args: Any = None,
        stopOnError: bool = True,  # noqa: N803
        **options: Any,
    ) -> None:
        """Register ``callback(sg, logger, event, args)`` for the events ``matchEvents`` names.

        Extra keyword options (``retry``, ``timeout``) are this daemon's additions; classic
        plugins never pass them and get the classic behaviour.
        """
        # The key is a secret before anything can fail: the traceback of a refused
        # registration shows the plugin's source line, and that line holds the key.
        if sgScriptKey:
            self._plugin.environment.add_secret(str(sgScriptKey))
        if not callable(callback):
            raise TypeError(f"callback {callback!r} is not callable")
        _check_callback_signature(callback)
        if not sgScriptName or not sgScriptKey:
            raise ValueError("registerCallback needs a script name and a script key")
        unknown = set(options) - KNOWN_CALLBACK_OPTIONS
        if unknown:
            raise TypeError(f"registerCallback got unknown options: {', '.join(sorted(unknown))}")
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MOST_CALLBACK_TIMEOUT
        ):
            raise ValueError(
                "registerCallback timeout must be a number of seconds > 0 and at most "
                f"{MOST_CALLBACK_TIMEOUT:g} (1 day, as [daemon] callback_timeout), got {timeout!r}"
            )
        matcher = EventMatcher(matchEvents)
        self._plugin.add_callback(
            Callback(
                self._plugin,
                str(sgScriptName),
                str(sgScriptKey),
                callback,
                matcher,
                args,
                stopOnError,
                options,
            )
        )


#: Distinct (event type, attribute) answers a plugin remembers before starting afresh.
MATCH_CACHE_SIZE = 10_000

#: The longest ``registerCallback(timeout=)``: the bound of ``[daemon] callback_timeout``.
MOST_CALLBACK_TIMEOUT = DAY

#: Keyword options of registerCallback beyond the classic ones.
KNOWN_CALLBACK_OPTIONS = frozenset({"retry", "timeout"})


@dataclass
class Plugin:
    """One plugin file: its module, its callbacks, and whether it may run."""

    folder: str
    path: Path
    environment: PluginEnvironment
    name: str = field(init=False)
    logger: logging.Logger = field(init=False)
    callbacks: List[Callback] = field(default_factory=list, init=False)
    emails: EmailSetting = field(default=True, init=False)
    module: Optional[ModuleType] = field(default=None, init=False, repr=False)
    signature: Optional[FileSignature] = field(default=None, init=False)
    active: bool = field(default=False, init=False)
    inactive_reason: Optional[str] = field(default="not loaded yet", init=False)
    _matching: Dict[Tuple[Any, Any], Tuple[Callback, ...]] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = self.path.stem
        self.logger = logging.getLogger(f"plugin.{self.name}")

    @property
    def key(self) -> Tuple[str, str]:
        """The plugin's key in the state file: (folder as configured, plugin name)."""
        return (self.folder, self.name)

    @property
    def event_types(self) -> Optional[FrozenSet[str]]:
        """Event types any callback can match; None when some callback takes every type."""
        types: set = set()
        for callback in self.callbacks:
            if callback.matcher.event_types is None:
                return None
            types |= callback.matcher.event_types
        return frozenset(types)

    def add_callback(self, callback: Callback) -> None:
        callback.index = len(self.callbacks)
        self.callbacks.append(callback)
        self._matching.clear()

    @property
    def callbacks_signature(self) -> int:
        """A fingerprint of the callbacks' names, to recognise the same plugin after a restart."""
        return zlib.crc32("\n".join(cb.name for cb in self.callbacks).encode("utf-8"))

    def callbacks_for(self, event: Mapping[str, Any]) -> Tuple[Callback, ...]:
        """The callbacks that want this event, in registration order.

        Remembered per (event type, attribute name), so the cost per event does not grow
        with the number of callbacks a plugin registers.
        """
        key = (event.get("event_type"), event.get("attribute_name"))
        found = self._matching.get(key)
        if found is None:
            # Matchers read only these two fields, so the answer is the same for every event
            # with them; a site has a bounded number of (type, attribute) pairs.
            if len(self._matching) >= MATCH_CACHE_SIZE:
                self._matching.clear()
            found = tuple(cb for cb in self.callbacks if cb.matcher.matches(event))
            self._matching[key] = found
        return found

    def load(self) -> bool:
        """(Re)load the module and its callbacks; on failure the plugin stays inactive.

        The file's signature is taken before reading it, so an edit made while loading
        is seen as a change by the next scan.
        """
        with self._lock:
            _LOADED_FILES[str(self.path)] = self
            self.signature = file_signature(self.path)
            self.callbacks = []
            self._matching = {}
            self.emails = True
            self.logger.setLevel(self.environment.log_level)
            self.environment.on_plugin_logger(self.name, self.logger)
            try:
                self.module = load_plugin_module(self.path, self.folder)
                register = getattr(self.module, "registerCallbacks", None)
                if not callable(register):
                    raise PluginLoadError("it defines no registerCallbacks(reg) function")
                register(Registrar(self))
            except BaseException as error:  # noqa: BLE001 - a plugin must never stop the engine
                self._fail_load(error)
                return False
            if not self.callbacks:
                self.logger.warning("Plugin %s registered no callbacks.", self.path)
            self.active = True
            self.inactive_reason = None
            return True

    def _fail_load(self, error: BaseException) -> None:
        self.callbacks = []
        self._matching = {}
        self.active = False
        if isinstance(error, PluginLoadError):
            detail = str(error)
        else:
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.inactive_reason = f"failed to load: {detail.strip().splitlines()[-1]}"
        self.logger.error(
            "Could not load plugin %s; it stays inactive until its file changes.\n%s",
            self.path,
            detail,
        )

    def deactivate(self, reason: str) -> None:
        """Stop running this plugin until its file changes (or an operator retries it)."""
        self.active = False
        self.inactive_reason = reason


#: Plugin files loaded in this process, by the file name their code objects carry, so
#: that an uncaught exception (in a thread a plugin started) is logged as that plugin's.
_LOADED_FILES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def owner_of_traceback(tb: Optional[TracebackType]) -> Optional[Tuple[logging.Logger, str]]:
    """The logger and name of the plugin whose code raised: the innermost frame of the
    traceback that is in a loaded plugin file (a helper module's frames are passed over)."""
    owner = None
    while tb is not None:
        plugin = _LOADED_FILES.get(tb.tb_frame.f_code.co_filename)
        if plugin is not None:
            owner = (plugin.logger, plugin.name)
        tb = tb.tb_next
    return owner


def _check_callback_signature(callback: Callable[..., Any]) -> None:
    """Refuse, at registration, a callback that cannot take ``(sg, logger, event, args)``.

    Otherwise it would fail on every event: with stopOnError=False the plugin would move past
    every event it was meant to handle, with one error per event instead of one at load.
    Callables whose signature Python cannot tell (some built-ins) are let through.
    """
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None, None, None)
    except TypeError as error:
        raise TypeError(
            f"callback {_callback_name(callback)}{signature} cannot be called as "
            f"callback(sg, logger, event, args): {error}"
        ) from None


def _callback_name(function: Callable[..., Any]) -> str:
    """The classic naming: a function's __name__, else the callable object's class name."""
    name = getattr(function, "__name__", None)
    if isinstance(name, str):
        return name
    return type(function).__name__


def _email_setting(emails: Tuple[Any, ...]) -> EmailSetting:
    if emails in ((True,), ()):
        return True
    if emails == (False,):
        return False
    addresses: List[str] = []
    for item in emails:
        if isinstance(item, str):
            addresses.append(item)
        elif isinstance(item, (list, tuple, set)) and all(isinstance(a, str) for a in item):
            addresses.extend(item)
        else:
            raise TypeError(
                f"setEmails takes False, True, or one or more email addresses; got {item!r}"
            )
    return tuple(addresses)


# --------------------------------------------------------------------------- loading


def module_name_for(path: Path, folder: str) -> str:
    """A private, stable module name: plugins from two folders may share a file name."""
    digest = hashlib.sha1(folder.encode("utf-8")).hexdigest()[:8]
    stem = re.sub(r"\W", "_", path.stem)
    return f"_shotgun_events_plugin_{digest}_{stem}"


def make_importable(plugin_folders: List[Path], config_folder: Optional[Path]) -> None:
    """Put the plugin folders, then the config file's folder, at the end of ``sys.path``.

    The classic daemon runs as a script, so its own folder is importable, and studios keep
    modules there (site settings, shared helpers) that their plugins import; the config
    file usually sits beside it. The plugin folders come first, so a plugin's own helpers
    win over a namesake there. Worker processes inherit this ``sys.path``.
    """
    for folder in [*plugin_folders, config_folder]:
        if folder is not None and str(folder) not in sys.path:
            sys.path.append(str(folder))


def load_plugin_module(path: Path, folder: str) -> ModuleType:
    """Import a plugin file as a real module under a private name, its folder importable.

    The source is compiled from the file's bytes on every load rather than through the
    import system's bytecode cache, whose one-second mtime resolution can serve stale code
    after a quick edit.
    """
    folder_path = str(path.parent)
    if folder_path not in sys.path:
        sys.path.append(folder_path)
    name = module_name_for(path, folder)
    source = path.read_bytes()
    code = compile(source, str(path), "exec", dont_inherit=True)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:  # pragma: no cover - only for paths importlib cannot describe
        raise PluginLoadError(f"cannot make a module for {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    return module


def file_signature(path: Path) -> Optional[FileSignature]:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class FolderScan:
    """What a plugin folder holds now: plugin files by name, or why it cannot be read."""

    files: Dict[str, Tuple[Path, FileSignature]]
    refused: Dict[str, str]
    error: Optional[str] = None


def is_python_file(name: str) -> bool:
    """A module file the classic daemon would load as a plugin: ``*.py`` not starting with ``.``."""
    return name.endswith(".py") and not name.startswith(".")


#: path -> (signature, defines registerCallbacks), so a folder scan reads a file only once
#: per version of it.
_REGISTERS: Dict[str, Tuple[FileSignature, bool]] = {}


def is_plugin_module(path: str, signature: FileSignature) -> bool:
    """Whether the file at ``path`` is a plugin: it binds ``registerCallbacks`` at its top
    level (a ``def``, an assignment or an import, also inside a top-level ``if``/``try``).

    Any other ``*.py`` file is a helper module the plugins import (``_credentials.py``,
    ``studio_settings.py``): it is said once at DEBUG and never loaded as a plugin. The
    source is parsed, not run. A file that cannot be read or parsed counts as a plugin, so
    that loading it reports the problem.
    """
    known = _REGISTERS.get(path)
    if known is not None and known[0] == signature:
        return known[1]
    try:
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        found = True
    else:
        found = _binds_register_callbacks(tree.body)
    if not found:
        log.debug(
            "%s defines no registerCallbacks: a helper module the plugins may import, "
            "not a plugin.",
            path,
        )
    if len(_REGISTERS) > 10_000:
        _REGISTERS.clear()
    _REGISTERS[path] = (signature, found)
    return found


def _binds_register_callbacks(statements: List[ast.stmt]) -> bool:
    name = "registerCallbacks"
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name) == name for alias in node.names):
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        else:
            blocks = [getattr(node, key, None) or [] for key in ("body", "orelse", "finalbody")]
            blocks.extend(handler.body for handler in getattr(node, "handlers", None) or [])
            if any(_binds_register_callbacks(block) for block in blocks if block):
                return True
    return False


def unsafe_permissions(info: os.stat_result, what: str) -> Optional[str]:
    """Why a plugin file or folder must not be loaded, or None when it is safe.

    Anyone who can write a plugin can run code as the daemon's user, so files and folders
    writable by other users, or owned by someone other than root or this user, are refused.
    """
    if info.st_mode & stat.S_IWOTH:
        return f"{what} is writable by every user (chmod o-w to allow it)"
    if info.st_mode & stat.S_IWGRP:
        return f"{what} is writable by its group (chmod g-w to allow it)"
    if info.st_uid not in (0, os.geteuid()):
        return f"{what} is owned by uid {info.st_uid}, not by root or the daemon's user"
    return None


#: How deep packages inside a plugin folder are checked (a package in a package ...).
PACKAGE_DEPTH = 4


def unsafe_helper(entries: List[os.DirEntry]) -> Optional[str]:
    """Why the folder's plugins must not load because of a module they could import.

    The folder is importable, so its helper modules (files without ``registerCallbacks``)
    and its packages (with or without ``__init__.py``) run as the daemon too: one that
    other users can write is refused like a plugin file, and with it the folder (its
    plugins already running keep their loaded code). A symlink is judged by what it points
    to, which is what is imported.
    """
    for entry in entries:
        problem = _unsafe_importable(entry, PACKAGE_DEPTH, top=True)
        if problem:
            return f"{problem}; it is importable by the plugins, so none is loaded"
    return None


def _unsafe_importable(entry: os.DirEntry, depth: int, top: bool) -> Optional[str]:
    if entry.name.startswith(".") or entry.name == "__pycache__":
        return None
    try:
        info = entry.stat()  # follows a symlink
    except OSError:
        return None
    if stat.S_ISREG(info.st_mode) and entry.name.endswith(".py"):
        if top and is_plugin_module(entry.path, _signature_of(info)):
            return None  # a plugin file: judged (and refused alone) by scan_folder
        kind = "helper module" if top else "module"
        return unsafe_permissions(info, f"{kind} {entry.path}")
    if stat.S_ISDIR(info.st_mode) and depth > 0:
        return _unsafe_package(entry.path, info, depth - 1)
    return None


def _unsafe_package(path: str, info: os.stat_result, depth: int) -> Optional[str]:
    """A folder holding Python files is a package the plugins can import: the folder and
    every module in it (and in the packages inside it) must be safe."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return None
    if any(entry.name.endswith(".py") for entry in entries):
        problem = unsafe_permissions(info, f"package {path}")
        if problem:
            return problem
    for entry in entries:
        problem = _unsafe_importable(entry, depth, top=False)
        if problem:
            return problem
    return None


def scan_folder(folder: Path) -> FolderScan:
    """List a folder's plugin files with their signatures, refusing unsafe ones."""
    try:
        folder_info = folder.stat()
        if not stat.S_ISDIR(folder_info.st_mode):
            return FolderScan({}, {}, f"{folder} is not a folder")
        problem = unsafe_permissions(folder_info, f"plugin folder {folder}")
        if problem:
            return FolderScan({}, {}, problem)
        entries = list(os.scandir(folder))
    except OSError as error:
        return FolderScan({}, {}, f"cannot read plugin folder {folder}: {error.strerror or error}")
    files: Dict[str, Tuple[Path, FileSignature]] = {}
    refused: Dict[str, str] = {}
    helper_problem = unsafe_helper(entries)
    if helper_problem:
        return FolderScan({}, {}, helper_problem)
    for entry in sorted(entries, key=lambda e: e.name):
        if not is_python_file(entry.name):
            continue
        try:
            info = entry.stat()
        except OSError:
            continue  # vanished between listing and stat: the next scan settles it
        if not stat.S_ISREG(info.st_mode) or not is_plugin_module(entry.path, _signature_of(info)):
            continue
        name = entry.name[:-3]
        problem = unsafe_permissions(info, f"plugin file {entry.path}")
        if problem:
            refused[name] = problem
            continue
        files[name] = (Path(entry.path), _signature_of(info))
    return FolderScan(files, refused)


def _signature_of(info: os.stat_result) -> FileSignature:
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def scan_folders(folders: Sequence[Path]) -> List[FolderScan]:
    """Scan each folder, in order; one that is, by its real path, a folder listed before it
    (a symlink made after the config was checked) is refused, as its plugins would run twice.

    The config uses such a pair once already (config._distinct_folders); this keeps a
    running daemon from loading them twice when the link appears later. Both are looked at
    again at every scan.
    """
    first_name: Dict[str, Path] = {}
    scans = []
    for folder in folders:
        real = os.path.realpath(folder)
        if real in first_name:
            scans.append(
                FolderScan(
                    {},
                    {},
                    f"it is the folder {first_name[real]} (by its real path {real}), which is "
                    "listed before it: its plugins run once, from there",
                )
            )
            continue
        first_name[real] = folder
        scans.append(scan_folder(folder))
    return scans
