"""Scenario 2: slow plugins. 10 plugins each sleeping 20 ms per event, 1,000 events waiting.

A serial dispatcher needs 10 x 1,000 x 20 ms = 200 s. Each plugin has its own worker here,
so the whole backlog should take about as long as the slowest plugin's own work (its callbacks'
summed run time, about 20 s). Target: wall time <= 1.3 x that work.

Wall time runs from the daemon's launch (Python start, plugin loading and the first read
included) to the end of the last callback; each plugin records its callbacks' start and end
times in a file, so no checkpoint granularity blurs the figure. This script never changes the
engine: it only measures it.

Run: .venv/bin/python bench/slow_plugins.py [--events 1000] [--plugins 10] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

from _common import (
    DaemonProcess,
    Figure,
    emulator,
    figures_table,
    has_event,
    median,
    recording_plugin,
    wait_records,
)

SCENARIO = "2 slow plugins"
SLEEP = 0.02
TARGET_RATIO = 1.3


def one_run(site_url: str, first: int, last: int, plugins: int) -> Tuple[float, float]:
    """(wall seconds from launch to the last callback's end, slowest plugin's own work)."""
    records_dir = Path(tempfile.mkdtemp(prefix="sged-slow-"))
    files = [records_dir / f"slow{i:02d}.log" for i in range(plugins)]
    sources = {f.stem: recording_plugin(f, work=f"time.sleep({SLEEP})") for f in files}
    daemon = DaemonProcess(site_url, sources)
    try:
        launched = time.time()
        daemon.start(after=first - 1)
        timeout = 60 + 3 * SLEEP * (last - first + 1) * plugins
        records = wait_records(files, has_event(last), timeout, daemon)
    finally:
        daemon.stop()
        shutil.rmtree(records_dir, ignore_errors=True)
    finished = max(end for found in records.values() for _, _, end in found)
    work = max(sum(end - start for _, start, end in found) for found in records.values())
    return finished - launched, work


def measure(
    quick: bool = False, events: int = 1000, plugins: int = 10, runs: int = 3
) -> List[Figure]:
    if quick:
        events, runs = 100, 1
    walls, works = [], []
    with emulator() as site:
        first, last = site.remote.insert_events(events)
        for _ in range(runs):
            wall, work = one_run(site.url, first, last, plugins)
            walls.append(wall)
            works.append(work)
    ratios = [wall / work for wall, work in zip(walls, works)]
    ratio = median(ratios)
    serial = plugins * events * SLEEP
    return [
        Figure(
            SCENARIO,
            f"{plugins} plugins x {events:,} events x {SLEEP * 1000:.0f} ms, "
            "serial dispatcher (computed)",
            f"{serial:.0f} s",
        ),
        Figure(
            SCENARIO, "slowest plugin's own work (summed callback time)", f"{median(works):.1f} s"
        ),
        Figure(
            SCENARIO,
            "wall time, daemon launch to last callback end",
            f"{median(walls):.1f} s",
            f"<= {TARGET_RATIO * median(works):.1f} s",
        ),
        Figure(
            SCENARIO,
            f"ratio wall / slowest plugin's work (median of {runs})",
            f"{ratio:.2f}",
            f"<= {TARGET_RATIO}",
            ratio <= TARGET_RATIO,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    args = parser.parse_args()
    figures = measure(args.quick, args.events, args.plugins, args.runs)
    print(figures_table("Slow plugins", figures))


if __name__ == "__main__":
    main()
