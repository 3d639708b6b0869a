"""Where the daemon's time goes in a scenario: run it under py-spy and sum up the stacks.

For the engine owner, when a figure misses its target (or nearly does): the daemon runs
exactly as in the scenario, but under ``py-spy record -f raw --threads``; the raw stacks are
then added up per thread (engine loop, each plugin worker, state saver), per function
including what it calls ("total"), and per function on its own ("self"). Percentages are
of the samples where the daemon was on a CPU (py-spy leaves waiting threads out).

Scenarios: ``catch-up`` (scenario 1: 100,000 events, 10 no-op plugins) and ``many-plugins``
(scenario 6: 200 generated plugin files, 20,000 mixed events). This script only measures;
it never changes the engine.

Run: .venv/bin/python bench/profile_daemon.py catch-up [--events 100000] [--top 25] [--keep FILE]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Counter, Dict, List, Optional, Tuple

import many_plugins
from _common import DaemonProcess, emulator, insert_mixed, noop_plugin

PY_SPY = Path(sys.executable).with_name("py-spy")


class ProfiledDaemon(DaemonProcess):
    """A DaemonProcess started under ``py-spy record``; stopping it stops the daemon only,
    so py-spy writes its file."""

    def __init__(self, site_url: str, plugins: Dict[str, str], raw_file: Path, **options: object):
        super().__init__(site_url, plugins, **options)
        self.raw_file = raw_file
        self.spy: Optional[subprocess.Popen] = None

    def start(self, after: Optional[int] = None, env: Optional[Dict[str, str]] = None) -> None:
        if after is not None:
            self.state_file.write_text(f"{after}\n")
        command = [str(PY_SPY), "record", "-f", "raw", "--threads", "--gil", "--rate", "250"]
        command += ["--nonblocking", "-o", str(self.raw_file), "--"]
        command += [sys.executable, "-m", "shotgun_events", "foreground"]
        command += ["--config", str(self.config)]
        self.spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = _ChildProcess(self.spy.pid)

    def stop(self) -> None:
        assert self.spy is not None
        child = _child_of(self.spy.pid)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        self.spy.wait(120)
        shutil.rmtree(self.root, ignore_errors=True)


class _ChildProcess:
    """The daemon under py-spy, looking enough like a Popen for DaemonProcess's waits."""

    def __init__(self, spy_pid: int) -> None:
        self._spy_pid = spy_pid
        self.returncode: Optional[int] = None

    @property
    def pid(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            child = _child_of(self._spy_pid)
            if child is not None:
                return child
            time.sleep(0.05)
        raise RuntimeError("py-spy started no daemon")

    def poll(self) -> Optional[int]:
        return None if Path(f"/proc/{self._spy_pid}").exists() else 0


def _child_of(pid: int) -> Optional[int]:
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children = task.read_text().split()
        if children:
            return int(children[0])
    return None


# --------------------------------------------------------------------------- the scenarios


def profile_catch_up(raw_file: Path, events: int) -> float:
    """Scenario 1 under py-spy; returns events/s (slowed down a little by the sampling)."""
    with emulator() as site:
        first, last = site.remote.insert_events(events)
        plugins = {f"noop{i:02d}": noop_plugin() for i in range(10)}
        daemon = ProfiledDaemon(site.url, plugins, raw_file)
        try:
            daemon.start(after=first - 1)
            seconds = daemon.wait_positions(last, list(plugins), timeout=600)
        finally:
            daemon.stop()
    return events / seconds


def profile_many_plugins(raw_file: Path, events: int) -> float:
    """Scenario 6's end-to-end part under py-spy; returns events/s."""
    folder = Path(tempfile.mkdtemp(prefix="sged-many-"))
    try:
        sources = many_plugins.write_plugins(folder, 200)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with emulator() as site:
        types = many_plugins.EVENT_TYPES + many_plugins.UNWANTED
        first, last = insert_mixed(site.remote, events, types)
        daemon = ProfiledDaemon(site.url, sources, raw_file, state_save_interval=0.2)
        try:
            daemon.start(after=first - 1)
            seconds = daemon.wait_positions(last, list(sources), timeout=900)
        finally:
            daemon.stop()
    return events / seconds


# --------------------------------------------------------------------------- the report

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def short_frame(frame: str) -> str:
    """'send (shotgun_api3/shotgun.py:123)' -> 'shotgun.py:send'."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    return f"{Path(found.group('file')).name}:{found.group('function')}"


def thread_group(frame: str) -> str:
    """Thread roots name a thread; plugin workers are grouped together."""
    name = frame.strip().partition("): ")[2] or "unnamed thread"
    if name.startswith("plugin-"):
        return "plugin workers"
    return name


def aggregate(raw_file: Path) -> Tuple[int, Counter, Counter, Counter]:
    """(samples, per thread group, per function total, per function self)."""
    threads: Counter = collections.Counter()
    total: Counter = collections.Counter()
    own: Counter = collections.Counter()
    samples = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        threads[thread_group(frames[0])] += count
        functions = [short_frame(frame) for frame in frames[1:]]
        for function in set(functions):
            total[function] += count
        if functions:
            own[functions[-1]] += count
    return samples, threads, total, own


def report(raw_file: Path, top: int) -> str:
    samples, threads, total, own = aggregate(raw_file)
    if not samples:
        return "no samples"

    def block(title: str, counter: Counter, limit: int) -> List[str]:
        lines = [f"\n{title}"]
        for name, count in counter.most_common(limit):
            lines.append(f"  {100 * count / samples:5.1f}%  {name}")
        return lines

    lines = [f"{samples:,} samples on a CPU"]
    lines += block("per thread", threads, 10)
    lines += block("per function, including callees (total)", total, top)
    lines += block("per function, on its own (self)", own, top)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["catch-up", "many-plugins"])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, default=None, help="keep py-spy's raw file here")
    args = parser.parse_args()
    raw_file = args.keep or Path(tempfile.mkstemp(prefix="sged-spy-", suffix=".txt")[1])
    if args.scenario == "catch-up":
        rate = profile_catch_up(raw_file, args.events or 100_000)
    else:
        rate = profile_many_plugins(raw_file, args.events or 20_000)
    print(f"{args.scenario}: {rate:,.0f} events/s under py-spy")
    print(report(raw_file, args.top))
    if args.keep is None:
        raw_file.unlink()


if __name__ == "__main__":
    main()
