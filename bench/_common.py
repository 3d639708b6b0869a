"""Shared by the benchmarks: an emulator process, a daemon process, and measuring them.

Both run as separate processes, as in production (the site is on another machine, the
daemon in its own process), so the figures include the real client's HTTP and JSON work.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import shotgun_api3

from shotgun_events.emulator import RemoteEmulator
from shotgun_events.site import EVENT_FIELDS, ID_ASCENDING

ENGINE = ("benchDaemon", "bench-engine-key")
PLUGINS = ("benchPlugins", "bench-plugin-key")


class EmulatorProcess:
    """``shotgunEventDaemon emulator`` in its own process, driven through its control API."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shotgun_events.emulator",
                "--port",
                "0",
                "--script",
                ":".join(ENGINE),
                "--script",
                ":".join(PLUGINS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.remote = RemoteEmulator(self.url)

    def client(self) -> shotgun_api3.Shotgun:
        return shotgun_api3.Shotgun(self.url, *ENGINE)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


@contextlib.contextmanager
def emulator() -> Iterator[EmulatorProcess]:
    site = EmulatorProcess()
    try:
        yield site
    finally:
        site.stop()


def client_read_rate(site: EmulatorProcess, after: int, limit: int = 500) -> float:
    """Events/s the bare client reads the way the daemon polls (the ceiling we compare to)."""
    sg = site.client()
    count, started = 0, time.perf_counter()
    while True:
        page = sg.find(
            "EventLogEntry",
            [["id", "greater_than", after]],
            EVENT_FIELDS,
            order=ID_ASCENDING,
            limit=limit,
        )
        if not page:
            break
        count += len(page)
        after = page[-1]["id"]
    return count / (time.perf_counter() - started)


class DaemonProcess:
    """A daemon with its own folder, config and plugins, started from a given position."""

    def __init__(self, site_url: str, plugins: Dict[str, str], **options: object) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sged-bench-"))
        self.plugin_dir = self.root / "plugins"
        self.plugin_dir.mkdir()
        for name, source in plugins.items():
            (self.plugin_dir / f"{name}.py").write_text(source)
        self.state_file = self.root / "events.id"
        daemon = {
            "eventIdFile": self.state_file,
            "pidFile": self.root / "daemon.pid",
            "logPath": self.root / "logs",
            "logMode": 1,
            "logging": 20,
            "fetch_interval": 0.2,
            "state_save_interval": 1.0,
        }
        daemon.update(options)
        lines = "\n".join(f"{key}: {value}" for key, value in daemon.items())
        self.config = self.root / "daemon.conf"
        self.config.write_text(
            f"[daemon]\n{lines}\n\n[shotgun]\nserver: {site_url}\nname: {ENGINE[0]}\n"
            f"key: {ENGINE[1]}\n\n[plugins]\npaths: {self.plugin_dir}\n"
        )
        self.process: Optional[subprocess.Popen] = None

    def start(self, after: Optional[int] = None, env: Optional[Dict[str, str]] = None) -> None:
        """Start the daemon; with ``after``, every plugin resumes after that event id."""
        if after is not None:
            self.state_file.write_text(f"{after}\n")  # the classic one-integer format
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shotgun_events", "foreground", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, **(env or {})),
        )

    def positions(self) -> Optional[Dict[str, int]]:
        """Positions in the state file, or None before the daemon's first checkpoint."""
        try:
            state = pickle.loads(self.state_file.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, ValueError):
            return None
        if not isinstance(state, dict):
            return None
        folder = state.get(str(self.plugin_dir), {})
        return {name: value[0] for name, value in folder.items()}

    def wait_positions(self, target: int, plugins: Sequence[str], timeout: float) -> float:
        """Seconds from the daemon's first checkpoint until every plugin is at ``target``."""
        deadline = time.monotonic() + timeout
        started = None
        while time.monotonic() < deadline:
            positions = self.positions()
            if positions is not None and started is None:
                started = time.monotonic()
            if positions and all(positions.get(p, -1) >= target for p in plugins):
                assert started is not None
                return time.monotonic() - started
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}")
            time.sleep(0.02)
        raise TimeoutError(f"plugins did not reach {target} within {timeout} s: {self.positions()}")

    def peak_rss_mb(self) -> float:
        return rss_mb(self.process.pid, peak=True) if self.process else 0.0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def rss_mb(pid: int, peak: bool = False) -> float:
    """Resident memory of a process (VmHWM = the peak so far), in MiB."""
    key = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def noop_plugin(match_events: object = None, body: str = "pass") -> str:
    return textwrap.dedent(
        f"""
        import time

        def registerCallbacks(reg):
            reg.registerCallback({PLUGINS[0]!r}, {PLUGINS[1]!r}, callback, {match_events!r})

        def callback(sg, logger, event, args):
            {body}
        """
    )


def median(values: List[float]) -> float:
    return statistics.median(values)


def runs(count: int, measure: Callable[[], float]) -> List[float]:
    return [measure() for _ in range(count)]


def table(title: str, rows: List[Sequence[object]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [f"\n## {title}\n", line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)
