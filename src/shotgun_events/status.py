"""The status file the daemon refreshes, and the report ``shotgunEventDaemon status`` prints.

The daemon writes a small JSON picture of itself (the engine's ``status()`` plus the service's
state: running, stopping, stopped) every ``status_interval`` seconds and once when it stops.
``status`` reads that file, so it works on the daemon's machine without any network access
to the daemon, and says per plugin whether it is active (or why not), its last event id, how
far it lags behind the site (events and seconds) and its last error.

The file is replaced atomically (temp file + rename: a reader never sees half of it), mode
0640: it holds no secret, and the daemon's group (operators, monitoring) may read it, as
they may read its log files. This module must never write a secret: every string in the
picture goes through the log redactor (script keys, SMTP and proxy passwords) before it is
written, because a plugin's error message can quote anything.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

STATUS_FILE_MODE = 0o640

#: A status file older than this many status intervals means the daemon may be hung.
STALE_AFTER_INTERVALS = 3

Redact = Callable[[str], str]


# --------------------------------------------------------------------------- writing


def redacted(value: Any, redact: Redact) -> Any:
    """A copy of a JSON-ready value with every string (keys too) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redacted(str(k), redact): redacted(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(item, redact) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


def write_status_file(path: Path, status: Mapping[str, Any], redact: Redact) -> None:
    """Replace the status file atomically, secrets masked; raises OSError on failure.

    Not fsync'd: the file is rewritten every few seconds, and after a power loss the next
    start writes a new one; what matters is that no reader sees a torn file.
    """
    text = json.dumps(redacted(status, redact), indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, STATUS_FILE_MODE)
    try:
        os.fchmod(fd, STATUS_FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------- reading


def read_status_file(path: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The status picture and None, or None and why it could not be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no status file at {path} yet"
    except OSError as error:
        return None, f"cannot read the status file {path}: {error.strerror or error}"
    try:
        picture = json.loads(text)
    except ValueError:
        return None, f"the status file {path} is not valid JSON"
    if not isinstance(picture, dict):
        return None, f"the status file {path} does not hold a status"
    return picture, None


# --------------------------------------------------------------------------- the report


def format_report(
    status: Optional[Mapping[str, Any]],
    *,
    running_pid: Optional[int],
    now: float,
    problem: Optional[str] = None,
) -> str:
    """The human report of ``status``: the daemon, the site, then one block per plugin.

    ``running_pid`` is the pid the lock files found (None when no daemon runs: the report
    is then about the last run). A status written by another process than the running one
    (left by an earlier run) is not shown as if it were current.
    """
    if running_pid is not None:
        if status is None:
            return f"shotgunEventDaemon is running (pid {running_pid}); {problem}."
        if status.get("pid") != running_pid:
            return (
                f"shotgunEventDaemon is running (pid {running_pid}); it has not written its "
                f"status yet (the status file is from pid {status.get('pid')})."
            )
    assert status is not None
    lines = _daemon_lines(status, running_pid, now)
    lines += _site_lines(status, now)
    lines += _plugin_lines(status.get("plugins") or [])
    return "\n".join(lines)


def _daemon_lines(status: Mapping[str, Any], running_pid: Optional[int], now: float) -> List[str]:
    state = status.get("state", "unknown")
    written = status.get("written_at")
    if running_pid is None:
        return [f"Last run (pid {status.get('pid')}): {state} at {_clock(written)}."]
    lines = [
        f"shotgunEventDaemon is {state} (pid {running_pid}), "
        f"up since {_clock(status.get('started_at'))}, version {status.get('version', '?')}.",
        f"Config: {status.get('config', '?')}",
    ]
    interval = status.get("status_interval") or 5.0
    if isinstance(written, (int, float)):
        age = now - written
        if age > STALE_AFTER_INTERVALS * interval + 1:
            lines.append(
                f"WARNING: this status is {age:.0f} s old (written every {interval:g} s): "
                "the daemon may be hung."
            )
    return lines


def _site_lines(status: Mapping[str, Any], now: float) -> List[str]:
    site = status.get("site") or {}
    state_file = status.get("state_file") or {}
    reachable = site.get("reachable", True)
    site_line = f"Site {site.get('url', '?')}: " + (
        "reachable"
        if reachable
        else f"UNREACHABLE for {_seconds(site.get('outage_seconds'))} "
        f"({site.get('failed_requests', 0)} failed requests; last error: {site.get('last_error')})"
    )
    last_poll = status.get("last_poll_at")
    poll = "no poll yet" if last_poll is None else f"last poll {_seconds(now - last_poll)} ago"
    lines = [
        site_line,
        f"Events: {poll}; newest settled event {status.get('head', '?')}; "
        f"{status.get('open_gaps', 0)} open gaps.",
        f"State file {state_file.get('path', '?')}: "
        + (
            "healthy"
            if state_file.get("healthy", True)
            else f"FAILING ({state_file.get('last_error')})"
        ),
    ]
    return lines


def _plugin_lines(plugins: List[Mapping[str, Any]]) -> List[str]:
    if not plugins:
        return ["Plugins: none loaded."]
    width = max(len(str(p.get("name", "?"))) for p in plugins)
    lines = [f"Plugins ({len(plugins)}):"]
    for plugin in plugins:
        lines.append("  " + _plugin_line(plugin, width))
        indent = " " * (width + 4)
        if not plugin.get("active"):
            lines.append(f"{indent}why: {plugin.get('reason') or plugin.get('state', 'unknown')}")
        if plugin.get("busy_callback"):
            busy_for = _seconds(plugin.get("busy_seconds"))
            lines.append(f"{indent}busy: {plugin['busy_callback']} for {busy_for}")
        if plugin.get("last_error"):
            lines.append(f"{indent}last error: {_one_line(plugin['last_error'])}")
        retries = plugin.get("retries")
        if retries:
            lines.append(f"{indent}{_retry_line(retries)}")
        if plugin.get("held_back_for") is not None:
            lines.append(
                f"{indent}strict ordering: waiting for event {plugin['held_back_for']} "
                f"({plugin.get('held_back_events', 0)} later events held back)"
            )
        if plugin.get("isolation") == "process":
            lines.append(
                f"{indent}worker process {plugin.get('worker_pid') or '(not running)'}, "
                f"{plugin.get('worker_restarts') or 0} restarts"
            )
    return lines


def _retry_line(retries: Mapping[str, Any]) -> str:
    """Transient site errors retried for a plugin (retry.OutageLog's figures)."""
    now = (
        f"RETRYING for {_seconds(retries.get('outage_seconds'))}; "
        if retries.get("in_outage")
        else ""
    )
    return (
        f"site errors: {now}{retries.get('retries', 0)} retries, "
        f"{retries.get('give_ups', 0)} given up, {_seconds(retries.get('waited_seconds'))} "
        f"waiting in {retries.get('outages', 0)} outages"
    )


def _plugin_line(plugin: Mapping[str, Any], width: int) -> str:
    name = str(plugin.get("name", "?")).ljust(width)
    activity = "active" if plugin.get("active") else "INACTIVE"
    lag_events = plugin.get("lag_events")
    lag = f"{lag_events if lag_events is not None else '?'} events"
    lag_seconds = plugin.get("lag_seconds")
    lag += f", {_seconds(lag_seconds)}" if lag_seconds is not None else ", ? s"
    return (
        f"{name}  {activity:<8}  last event {plugin.get('position')}  behind: {lag}"
        f"  ({plugin.get('state', '?')}, {plugin.get('errors', 0)} errors)"
    )


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "? s"
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def _clock(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "?"
    return datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


def _one_line(text: str, limit: int = 200) -> str:
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
