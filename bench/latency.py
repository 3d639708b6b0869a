"""Scenario 3: latency. Events created at 50/s for 60 s; delay from creation to callback start.

A site's ``created_at`` has 1 s resolution, so the delay is measured with our own clocks on
this machine: the bench notes ``time.time()`` just before it asks the emulator to commit each
event, and every plugin notes ``time.time()`` when its callback starts, keyed by event id.
The daemon's poll sleeps ``fetch_interval`` when the site has nothing more, so an event waits
up to one interval plus the read and the dispatch. Target: p99 <= fetch_interval + 100 ms,
for fetch_interval 1 s and 0.2 s. Every plugin's every event counts in the percentiles.

This script only measures; it never changes the engine.

Run: .venv/bin/python bench/latency.py [--rate 50] [--seconds 60] [--plugins 10] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from _common import (
    DaemonProcess,
    Figure,
    emulator,
    figures_table,
    has_event,
    percentile,
    recording_plugin,
    wait_records,
)

from shotgun_events.emulator import RemoteEmulator

SCENARIO = "3 latency"
INTERVALS = (1.0, 0.2)
MARGIN = 0.1


def create_paced(remote: RemoteEmulator, rate: float, seconds: float) -> Dict[int, float]:
    """Commit events at a steady ``rate``; returns {event id: time.time() before the commit}."""
    created: Dict[int, float] = {}
    count = int(rate * seconds)
    begin = time.monotonic()
    for index in range(count):
        pause = begin + index / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        now = time.time()
        created[remote.insert_event("Shotgun_Shot_Change", attribute_name="sg_status_list")] = now
    return created


def delays_for(fetch_interval: float, rate: float, seconds: float, plugins: int) -> List[float]:
    """Seconds from creation to callback start, for every plugin and event of one run."""
    records_dir = Path(tempfile.mkdtemp(prefix="sged-latency-"))
    files = [records_dir / f"timed{i:02d}.log" for i in range(plugins)]
    with emulator() as site:
        daemon = DaemonProcess(
            site.url,
            {f.stem: recording_plugin(f) for f in files},
            fetch_interval=fetch_interval,
        )
        try:
            daemon.start(after=site.remote.latest_event_id() or 0)
            warm_up = site.remote.insert_event("Shotgun_Shot_Change")
            wait_records(files, has_event(warm_up), 60, daemon)  # loaded and attached
            created = create_paced(site.remote, rate, seconds)
            records = wait_records(files, has_event(max(created)), 30, daemon)
        finally:
            daemon.stop()
            shutil.rmtree(records_dir, ignore_errors=True)
    return [
        start - created[event_id]
        for found in records.values()
        for event_id, start, _ in found
        if event_id in created
    ]


def measure(
    quick: bool = False, rate: float = 50, seconds: float = 60, plugins: int = 10
) -> List[Figure]:
    if quick:
        seconds = 10
    figures = []
    for interval in INTERVALS:
        delays = delays_for(interval, rate, seconds, plugins)
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        where = f"fetch_interval {interval:g} s"
        figures.append(Figure(SCENARIO, f"{where}: p50 delay", f"{p50 * 1000:.0f} ms"))
        figures.append(
            Figure(
                SCENARIO,
                f"{where}: p99 delay ({len(delays):,} callbacks)",
                f"{p99 * 1000:.0f} ms",
                f"<= {(interval + MARGIN) * 1000:.0f} ms",
                p99 <= interval + MARGIN,
            )
        )
        figures.append(Figure(SCENARIO, f"{where}: max delay", f"{max(delays) * 1000:.0f} ms"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="events created per second")
    parser.add_argument("--seconds", type=float, default=60, help="how long events are created")
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10 s per interval (smoke test)")
    args = parser.parse_args()
    figures = measure(args.quick, args.rate, args.seconds, args.plugins)
    title = f"Latency: {args.rate:g} events/s, {args.plugins} plugins"
    print(figures_table(title, figures))


if __name__ == "__main__":
    main()
