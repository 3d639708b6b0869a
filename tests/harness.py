"""Test harness: a real daemon process against an in-process site emulator.

The daemon is started as ``python -m shotgun_events foreground --config ...`` in its own
process, exactly as a studio runs it; plugins written by the tests record every event they
see into a file, one line per delivery: ``<plugin> <callback-tag> <event id>``.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ENGINE_SCRIPT = ("shotgunEventDaemon", "engine-key-0123456789")
PLUGIN_SCRIPT = ("testPlugins", "plugin-key-9876543210")

RECORDER_HELPER = '''
"""Shared by the test plugins: append one line per delivered event."""
import os

RECORD_FILE = os.environ["SGED_TEST_RECORD"]


def record(plugin, tag, event):
    with open(RECORD_FILE, "a") as handle:
        handle.write("%s %s %s\\n" % (plugin, tag, event["id"]))
'''


def recorder_plugin(
    match_events=None,
    stop_on_error: bool = True,
    tag: str = "cb",
    before: str = "",
    body: str = "",
) -> str:
    """Source of a plugin that records each event it gets, after running ``body``."""
    name = "os.path.splitext(os.path.basename(__file__))[0]"
    return textwrap.dedent(
        f"""
        import os, time
        from _recorder import record
        {before}

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback,
                                 {match_events!r}, stopOnError={stop_on_error!r})

        def callback(sg, logger, event, args):
        """
    ) + textwrap.indent(textwrap.dedent(body) + f"\nrecord({name}, {tag!r}, event)\n", "    ")


class Daemon:
    """One daemon process with its own config, plugin folder, state and logs."""

    def __init__(
        self,
        root: Path,
        site_url: str,
        plugin_dir: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
        **daemon_options,
    ) -> None:
        self.root = root
        self.site_url = site_url
        self.env = dict(env or {})
        self.plugin_dir = plugin_dir or root / "plugins"
        if plugin_dir is None:
            self.plugin_dir.mkdir(parents=True, exist_ok=True)
            (self.plugin_dir / "_recorder.py").write_text(RECORDER_HELPER)
        self.record_file = root / "records.txt"
        self.state_file = root / "state" / "events.id"
        self.state_file.parent.mkdir(exist_ok=True)
        self.log_dir = root / "logs"
        self.config_path = root / "shotgunEventDaemon.conf"
        self.stderr_path = root / "daemon.stderr"
        self.process: Optional[subprocess.Popen] = None
        #: Extra [plugins] options (isolation, ordering), set before write_config().
        self.plugin_options: Dict[str, str] = {}
        self.options = {
            "fetch_interval": "0.1",
            "gap_timeout": "3",
            "state_save_interval": "0.2",
            "conn_retry_sleep": "0.5",
            "stop_timeout": "10",
            "logMode": "1",
            "logging": "10",
        }
        self.options.update({k: str(v) for k, v in daemon_options.items()})
        self.write_config()

    # ------------------------------------------------------------ files

    def write_config(self, **changes) -> None:
        self.options.update({k: str(v) for k, v in changes.items()})
        daemon = "\n".join(f"{key}: {value}" for key, value in self.options.items())
        self.config_path.write_text(
            textwrap.dedent(
                f"""
                [daemon]
                pidFile: {self.root / "daemon.pid"}
                eventIdFile: {self.state_file}
                logPath: {self.log_dir}
                logFile: shotgunEventDaemon
                """
            )
            + daemon
            + textwrap.dedent(
                f"""

                [shotgun]
                server: {self.site_url}
                name: {ENGINE_SCRIPT[0]}
                key: {ENGINE_SCRIPT[1]}
                use_session_uuid: True

                [plugins]
                paths: {self.plugin_dir}
                """
            )
            + "".join(f"{key}: {value}\n" for key, value in self.plugin_options.items())
        )

    def add_plugin(self, name: str, source: str) -> Path:
        """Write a plugin file atomically (as editors and deploy tools do)."""
        path = self.plugin_dir / f"{name}.py"
        temporary = self.plugin_dir / f".{name}.tmp"
        temporary.write_text(source)
        os.replace(temporary, path)
        return path

    def remove_plugin(self, name: str) -> None:
        (self.plugin_dir / f"{name}.py").unlink()

    # ------------------------------------------------------------ process

    def start(self) -> Daemon:
        env = dict(os.environ)
        env["SGED_TEST_RECORD"] = str(self.record_file)
        env.pop("SGED_CONFIG", None)
        env.update(self.env)
        self.stderr_handle = open(self.stderr_path, "ab")  # noqa: SIM115 - closed by stop()/kill()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shotgun_events",
                "foreground",
                "--config",
                str(self.config_path),
            ],
            stdout=self.stderr_handle,
            stderr=self.stderr_handle,
            env=env,
            cwd=self.root,
        )
        return self

    def wait_started(self, timeout: float = 20) -> None:
        self.wait_for(lambda: "Starting in the foreground" in self.log(), timeout, "start")
        self.wait_for(lambda: self.state_file.exists(), timeout, "first checkpoint")

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.stderr_handle.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.stderr_handle.close()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------ observing

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self) -> List[Tuple[str, str, int]]:
        try:
            lines = self.record_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = []
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                rows.append((parts[0], parts[1], int(parts[2])))
        return rows

    def seen(self, plugin: str, tag: Optional[str] = None) -> List[int]:
        """Event ids the plugin recorded, in delivery order."""
        return [e for p, t, e in self.records() if p == plugin and (tag is None or t == tag)]

    def counts(self, plugin: str) -> Dict[int, int]:
        return dict(collections.Counter(self.seen(plugin)))

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) while waiting for {what}:\n"
                    + self.log()[-5000:]
                )
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}:\n" + self.log()[-5000:]
        )

    def wait_seen(self, plugin: str, event_ids, timeout: float = 20) -> None:
        wanted = set(event_ids)
        self.wait_for(
            lambda: wanted <= set(self.seen(plugin)),
            timeout,
            f"{plugin} to see {sorted(wanted - set(self.seen(plugin)))[:20]}",
        )

    # ------------------------------------------------------------ service commands
    # Added for tests/test_service.py: run start/stop/status/... against this daemon's config.

    @property
    def pid_file(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def main_log_file(self) -> Path:
        """The daemon's main log file (a detached daemon's stderr goes to /dev/null)."""
        return self.log_dir / "shotgunEventDaemon"

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``shotgunEventDaemon <args> --config <this config>``, with the environment
        ``start()`` gives the daemon (a daemon it starts records into the same file)."""
        env = dict(os.environ)
        env["SGED_TEST_RECORD"] = str(self.record_file)
        env.pop("SGED_CONFIG", None)
        env.update(self.env)
        return subprocess.run(
            [sys.executable, "-m", "shotgun_events", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
        )
