"""``shotgunEventDaemon check-config``: the config file, and with ``--plugins`` every plugin,
checked offline, for CI pipelines that deploy a config or plugin folders.

The file is validated exactly as the daemon validates it (config.py: exit 2 with the file,
section and option), its warnings listed. With ``--plugins`` every configured folder is
scanned with the daemon's own refusals (plugins.scan_folder) and every plugin file is loaded
as the daemon loads it (Plugin.load: the real import, the real registrar, the real
``matchEvents`` compilation, so a shape the daemon would refuse is refused here); each
plugin's callbacks are reported, and the exit code is 1 when one would not load.

It must never contact the site, or any other host: plugin code that opens a network
connection while loading is stopped there and reported (the daemon makes each callback's
connection at its first event, so that a plugin loads while the site is down). It never
writes a state, pid, status, log or bytecode file, and never shows a secret (the config's,
and the script keys the plugins register, are masked in every line and in ``--json``).
"""

from __future__ import annotations

import difflib
import json
import logging
import socket
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .config import Config, ConfigError, PluginFolderSettings, find_config_file, load_config
from .logs import Redactor
from .plugins import Callback, Plugin, PluginEnvironment, scan_folder
from .process_worker import LOAD_TIMEOUT
from .status import redacted

EXIT_OK = 0
EXIT_PLUGIN_PROBLEM = 1
EXIT_BAD_CONFIG = 2

#: Lines of a failed load's traceback shown to a person (``--json`` has all of them).
TRACEBACK_LINES = 12

#: The event types a site writes for every entity: ``Shotgun_<Entity>_<kind>``.
_ENTITY_EVENT_KINDS = ("New", "Change", "Retirement", "Revival")


# --------------------------------------------------------------------------- the report


@dataclass
class CallbackReport:
    """One registered callback as the daemon would run it."""

    name: str
    script: str
    match_events: Dict[str, Any]
    stop_on_error: bool
    retry: Optional[Dict[str, Any]]
    timeout: Optional[float]


@dataclass
class PluginReport:
    """One plugin file: whether it loads, and what it registered."""

    name: str
    file: str
    loads: bool
    problems: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    #: The traceback of a failed load, as the daemon would log it (secrets masked).
    details: List[str] = field(default_factory=list)
    callbacks: List[CallbackReport] = field(default_factory=list)
    emails: Any = True


@dataclass
class FolderReport:
    """One configured plugin folder; ``problem`` when none of its plugins can load."""

    path: str
    resolved: str
    isolation: str
    ordering: str
    problem: Optional[str] = None
    plugins: List[PluginReport] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.problem is not None or any(not p.loads for p in self.plugins)


@dataclass
class CheckReport:
    """Everything check-config found; ``folders`` is None when plugins were not checked."""

    config: str
    valid: bool
    error: Optional[Dict[str, Any]] = None
    warnings: List[str] = field(default_factory=list)
    files: Dict[str, str] = field(default_factory=dict)
    folders: Optional[List[FolderReport]] = None

    @property
    def exit_code(self) -> int:
        if not self.valid:
            return EXIT_BAD_CONFIG
        if self.folders and any(folder.failed for folder in self.folders):
            return EXIT_PLUGIN_PROBLEM
        return EXIT_OK

    def as_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        return data


# --------------------------------------------------------------------------- no network


class NetworkRefusedError(RuntimeError):
    """Raised inside plugin code that opens a network connection while check-config runs.

    Not an OSError: client libraries (shotgun_api3 among them) retry those, and the attempt
    must stop at once.
    """


class NetworkGuard:
    """Refuses every IPv4/IPv6 connection made while it is on, and remembers where to.

    Built on an audit hook (``sys.addaudithook``), which sees every ``connect`` a library
    makes, however it makes it. Hooks cannot be removed, so the one hook installed stays
    and does nothing while the guard is off; Unix sockets stay allowed (they are local).
    """

    _installed = False
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.active = False
        self.attempts: List[str] = []

    def __enter__(self) -> NetworkGuard:
        with NetworkGuard._lock:
            if not NetworkGuard._installed:
                sys.addaudithook(_audit_hook)
                NetworkGuard._installed = True
        _GUARDS.append(self)
        self.active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.active = False
        _GUARDS.remove(self)

    def check(self, event: str, args: Tuple[Any, ...]) -> None:
        if not self.active or event not in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            return
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        where = _describe_address(address)
        self.attempts.append(where)
        raise NetworkRefusedError(
            f"check-config allows no network access (a connection to {where})"
        )


_GUARDS: List[NetworkGuard] = []


def _audit_hook(event: str, args: Tuple[Any, ...]) -> None:
    for guard in list(_GUARDS):
        guard.check(event, args)


def _describe_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


# --------------------------------------------------------------------------- log capture


class _LoadMessages(logging.Handler):
    """Collects what a plugin logs while it loads, instead of writing it anywhere."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(logging.WARNING)
        self.redactor = redactor
        self.warnings: List[str] = []
        self.errors: List[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.redactor(self.format(record))
        except Exception:  # noqa: BLE001 - a message that cannot be formatted is left out
            return
        (self.errors if record.levelno >= logging.ERROR else self.warnings).append(text)

    def take(self) -> Tuple[List[str], List[str]]:
        taken = (self.warnings, self.errors)
        self.warnings, self.errors = [], []
        return taken


# --------------------------------------------------------------------------- checking plugins


class PluginChecker:
    """Loads every configured plugin as the daemon would, with no network and no files."""

    def __init__(self, config: Config, redactor: Redactor, messages: _LoadMessages) -> None:
        self.config = config
        self.redactor = redactor
        self.messages = messages
        self.environment = PluginEnvironment(
            server=config.site.server,
            proxy_server=config.site.proxy_server,
            use_session_uuid=config.site.use_session_uuid,
            site_timeout=config.daemon.site_timeout,
            add_secret=redactor.add,
            log_level=config.daemon.log_level,
            default_retry=config.daemon.plugin_retry,
        )

    def check_folders(self) -> List[FolderReport]:
        return [self.check_folder(folder) for folder in self.config.plugins.folders]

    def check_folder(self, folder: PluginFolderSettings) -> FolderReport:
        report = FolderReport(folder.path, str(folder.resolved), folder.isolation, folder.ordering)
        scan = scan_folder(folder.resolved)
        if scan.error:
            report.problem = self.redactor(scan.error)
            return report
        names = sorted({*scan.files, *scan.refused})
        for name in names:
            if name in scan.refused:
                file = str(folder.resolved / f"{name}.py")
                report.plugins.append(
                    PluginReport(name, file, False, problems=[scan.refused[name]])
                )
            else:
                report.plugins.append(self.check_plugin(folder, scan.files[name][0]))
        return report

    def check_plugin(self, folder: PluginFolderSettings, path: Path) -> PluginReport:
        plugin = Plugin(folder.path, path, self.environment)
        report = PluginReport(plugin.name, str(path), False)
        with NetworkGuard() as guard:
            finished = _load_within(plugin, LOAD_TIMEOUT)
        warnings, errors = self.messages.take()
        report.warnings.extend(warnings)
        report.details.extend(errors)
        if not finished:
            report.problems.append(
                f"still loading after {LOAD_TIMEOUT:.0f} s (an import or registerCallbacks "
                "that hangs)"
            )
        elif not plugin.active:
            report.problems.append(self.redactor(plugin.inactive_reason or "failed to load"))
        for where in dict.fromkeys(guard.attempts):
            report.problems.append(
                f"connects to {where} while loading: a plugin must load without the network "
                "(the daemon makes each callback's connection at its first event, so that "
                "a plugin loads while the site is down)"
            )
        report.loads = finished and plugin.active and not guard.attempts
        if report.loads:
            report.callbacks = [describe_callback(callback) for callback in plugin.callbacks]
            report.emails = plugin.emails if isinstance(plugin.emails, bool) else [*plugin.emails]
            report.warnings.extend(match_events_hints(plugin.callbacks))
        return report


def _load_within(plugin: Plugin, seconds: float) -> bool:
    """Load on a thread of its own, so that a plugin that hangs is reported, not waited on."""
    thread = threading.Thread(target=plugin.load, name=f"check-{plugin.name}", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def describe_callback(callback: Callback) -> CallbackReport:
    policy = callback.retry_policy
    return CallbackReport(
        name=callback.name,
        script=callback.script_name,
        match_events=callback.matcher.describe(),
        stop_on_error=callback.stop_on_error,
        retry=asdict(policy) if policy is not None else None,
        timeout=callback.options.get("timeout"),
    )


def match_events_hints(callbacks: List[Callback]) -> List[str]:
    """Event types that no site writes but a near spelling of one does (``_Changed``,
    ``_change``): the daemon takes them as custom types, and the callback never runs."""
    hints = []
    for callback in callbacks:
        for event_type in callback.matcher.describe():
            suggestion = _likely_event_type(event_type)
            if suggestion:
                hints.append(
                    f"{callback.name}: matchEvents key {event_type!r} is not an event type a "
                    f"site writes; did you mean {suggestion!r}?"
                )
    return hints


def _likely_event_type(event_type: str) -> Optional[str]:
    if event_type != event_type.strip():
        return event_type.strip()
    prefix, underscore, kind = event_type.rpartition("_")
    if not underscore or not prefix.startswith("Shotgun_") or kind in _ENTITY_EVENT_KINDS:
        return None
    by_lower = {known.lower(): known for known in _ENTITY_EVENT_KINDS}
    close = difflib.get_close_matches(kind.lower(), list(by_lower), n=1, cutoff=0.75)
    return f"{prefix}_{by_lower[close[0]]}" if close else None


# --------------------------------------------------------------------------- the command


def daemon_files(config: Config) -> Dict[str, str]:
    """The files the daemon would use, so that a deploy can see where they land."""
    from .control import control_socket_path

    settings = config.daemon
    return {
        "state_file": str(settings.event_id_file),
        "pid_file": str(settings.pid_file),
        "status_file": str(settings.status_file),
        "log_folder": str(settings.log_path),
        "control_socket": str(control_socket_path(config)),
    }


def check(config_arg: Optional[str], *, plugins: bool) -> CheckReport:
    """Validate the config (and load the plugins); never raises for what the user must fix."""
    try:
        path = find_config_file(config_arg)
        config = load_config(path)
    except ConfigError as error:
        where = error.path or (Path(config_arg) if config_arg else None)
        return CheckReport(
            config=str(where or ""),
            valid=False,
            error={
                "message": str(error),
                "file": str(error.path) if error.path else None,
                "section": error.section,
                "option": error.option,
                "line": error.line,
            },
        )
    redactor = Redactor(config.secrets())
    report = CheckReport(
        config=str(config.path),
        valid=True,
        warnings=list(config.warnings),
        files=daemon_files(config),
    )
    if plugins:
        report.folders = _check_plugins_quietly(config, redactor)
    return _masked(report, redactor)


def _check_plugins_quietly(config: Config, redactor: Redactor) -> List[FolderReport]:
    """Plugins' log lines are collected for the report (no file, no terminal), and no
    ``__pycache__`` is written into the plugin folders."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_bytecode = sys.dont_write_bytecode
    messages = _LoadMessages(redactor)
    for handler in saved_handlers:
        root.removeHandler(handler)
    root.addHandler(messages)
    root.setLevel(logging.WARNING)
    sys.dont_write_bytecode = True
    try:
        return PluginChecker(config, redactor, messages).check_folders()
    finally:
        sys.dont_write_bytecode = saved_bytecode
        root.removeHandler(messages)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def _masked(report: CheckReport, redactor: Redactor) -> CheckReport:
    """Every string of the report with secrets masked (plugins' keys are known by now)."""
    report.warnings = redacted(report.warnings, redactor)
    for folder in report.folders or ():
        for plugin in folder.plugins:
            plugin.problems = redacted(plugin.problems, redactor)
            plugin.warnings = redacted(plugin.warnings, redactor)
            plugin.details = redacted(plugin.details, redactor)
    return report


def run_check_config(config_arg: Optional[str], *, plugins: bool, as_json: bool) -> int:
    """``check-config``: print the report (or its JSON); 0 good, 1 a plugin would not load,
    2 the config is bad."""
    report = check(config_arg, plugins=plugins)
    if as_json:
        print(json.dumps(report.as_json(), indent=1))
    elif not report.valid:
        assert report.error is not None
        print(f"shotgunEventDaemon: {report.error['message']}", file=sys.stderr)
    else:
        print("\n".join(human_report(report)))
    return report.exit_code


# --------------------------------------------------------------------------- for a person


def human_report(report: CheckReport) -> List[str]:
    lines = [f"Config {report.config}: valid."]
    if report.warnings:
        lines.append(f"Warnings ({len(report.warnings)}):")
        lines += [f"  {warning}" for warning in report.warnings]
    lines.append(
        "Files: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.files.items())
    )
    if report.folders is None:
        lines.append("Plugins not checked (add --plugins to load them).")
        return lines
    for folder in report.folders:
        lines += _folder_lines(folder)
    plugins = [plugin for folder in report.folders for plugin in folder.plugins]
    failing = [plugin for plugin in plugins if not plugin.loads]
    broken_folders = [folder for folder in report.folders if folder.problem]
    summary = f"Plugins: {len(plugins)} found, {len(plugins) - len(failing)} load"
    if failing:
        summary += f", {len(failing)} would not load"
    if broken_folders:
        summary += f"; {len(broken_folders)} folder(s) cannot be used"
    lines.append(summary + ".")
    return lines


def _folder_lines(folder: FolderReport) -> List[str]:
    head = f"Plugin folder {folder.path} ({folder.isolation} isolation, {folder.ordering} ordering)"
    if folder.problem:
        return [f"{head}: CANNOT BE USED: {folder.problem}"]
    lines = [f"{head}: {len(folder.plugins)} plugin(s)"]
    for plugin in folder.plugins:
        lines += _plugin_lines(plugin)
    return lines


def _plugin_lines(plugin: PluginReport) -> List[str]:
    if plugin.loads:
        count = len(plugin.callbacks)
        lines = [f"  ok       {plugin.name}: {count} callback{'s' if count != 1 else ''}"]
    else:
        lines = [f"  FAILED   {plugin.name}: {plugin.problems[0] if plugin.problems else ''}"]
        lines += [f"           {problem}" for problem in plugin.problems[1:]]
    for callback in plugin.callbacks:
        lines.append(
            f"           - {callback.name} (script {callback.script}): {_options(callback)}"
        )
    lines += [f"           warning: {warning}" for warning in plugin.warnings]
    for detail in plugin.details:
        detail_lines = detail.splitlines()
        if len(detail_lines) > TRACEBACK_LINES:
            left_out = len(detail_lines) - TRACEBACK_LINES
            detail_lines = [
                f"... ({left_out} lines before; --json has them all)",
                *detail_lines[-TRACEBACK_LINES:],
            ]
        lines += [f"           | {line}" for line in detail_lines]
    return lines


def _options(callback: CallbackReport) -> str:
    matching = "; ".join(
        f"{'any event type' if event_type == '*' else event_type}: "
        + ("any attribute" if names == "*" else ", ".join(names))
        for event_type, names in callback.match_events.items()
    )
    options = [matching, "stopOnError" if callback.stop_on_error else "goes on after errors"]
    if callback.retry:
        options.append(f"retry {callback.retry['attempts']} tries")
    if callback.timeout:
        options.append(f"timeout {callback.timeout:g} s")
    return "; ".join(options)
