"""Shared by the benchmarks: an emulator process, a daemon process, and measuring them.

Both run as separate processes, as in production (the site is on another machine, the
daemon in its own process), so the figures include the real client's HTTP and JSON work.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

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


# --------------------------------------------------------------------------- added for the
# scenario scripts (slow_plugins, latency, site_load, memory, many_plugins, run_all)


@dataclass
class Figure:
    """One measured figure of a scenario, with its target and whether it was met."""

    scenario: str
    measure: str
    value: str
    target: str = ""
    met: Optional[bool] = None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]


def figures_table(title: str, figures: List[Figure]) -> str:
    rows = [[f.scenario, f.measure, f.value, f.target, f.verdict] for f in figures]
    return table(title, rows, ["scenario", "measure", "value", "target", "verdict"])


def machine() -> str:
    """CPU model, cores, memory, Python and kernel: the figures mean nothing without them."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def recording_plugin(record_file: Path, match_events: object = None, work: str = "pass") -> str:
    """A plugin whose callback appends ``event_id start end`` (time.time()) to a file.

    One ``os.write`` per event on an O_APPEND descriptor: cheap, and every line is whole
    even when read while the daemon is still writing.
    """
    return textwrap.dedent(
        f"""
        import os
        import time

        RECORDS = os.open({str(record_file)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def registerCallbacks(reg):
            reg.registerCallback({PLUGINS[0]!r}, {PLUGINS[1]!r}, callback, {match_events!r})

        def callback(sg, logger, event, args):
            started = time.time()
            {work}
            os.write(RECORDS, ("%d %.6f %.6f\\n" % (event["id"], started, time.time())).encode())
        """
    )


Record = Tuple[int, float, float]


def read_records(record_file: Path) -> List[Record]:
    """(event id, callback start, callback end) lines a recording plugin wrote so far."""
    try:
        text = record_file.read_text()
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            records.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return records


def wait_records(
    files: Sequence[Path],
    done: Callable[[List[Record]], bool],
    timeout: float,
    daemon: Optional[DaemonProcess] = None,
) -> Dict[Path, List[Record]]:
    """Wait until ``done(records)`` holds for every recording file; returns the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = {path: read_records(path) for path in files}
        if all(done(found) for found in records.values()):
            return records
        if daemon is not None and daemon.process is not None and daemon.process.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.process.returncode}")
        if time.monotonic() > deadline:
            counts = {path.name: len(found) for path, found in records.items()}
            raise TimeoutError(f"recording plugins not done within {timeout} s: {counts}")
        time.sleep(0.05)


def has_event(event_id: int) -> Callable[[List[Record]], bool]:
    return lambda records: any(record[0] >= event_id for record in records)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_log(daemon: DaemonProcess) -> str:
    """The daemon's main log file so far (logPath/logFile)."""
    try:
        return (daemon.root / "logs" / "shotgunEventDaemon").read_text()
    except OSError:
        return ""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def insert_mixed(
    remote: RemoteEmulator,
    count: int,
    event_types: Sequence[str],
    chunk: int = 10,
    **fields: object,
) -> Tuple[int, int]:
    """``count`` events whose types take turns in runs of ``chunk``, as on a busy site.

    ``*_Change`` events get ``attribute_name`` sg_status_list (and its meta); others none.
    """
    first = last = 0
    for index, start in enumerate(range(0, count, chunk)):
        event_type = event_types[index % len(event_types)]
        attribute = "sg_status_list" if event_type.endswith("_Change") else None
        low, last = remote.insert_events(
            min(chunk, count - start), event_type=event_type, attribute_name=attribute, **fields
        )
        first = first or low
    return first, last
