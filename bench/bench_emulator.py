"""How fast the site emulator serves the daemon's reads, and how fast it fills a backlog.

Run: `.venv/bin/python bench/bench_emulator.py` (a minute or so on two cores). Prints a table:
- bulk insert rate (events/s, 100k events per run) and the memory 1,000,000 events take;
- the real client's read rate for the daemon's poll (`id > N`, ordered by id, 500-event
  pages, every field the daemon reads) through a 100k-event table, with the emulator in
  this process and in its own process (as the daemon sees it);
- the gap re-query rate (`id in [100 ids]`, sometimes with an event_type condition).
Each figure is the median of several runs. Target: reads >= 10,000 events/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, List

import shotgun_api3

from shotgun_events.emulator import Emulator, RemoteEmulator

FIELDS = [
    "id",
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "project",
    "user",
    "created_at",
    "session_uuid",
]
ORDER = [{"field_name": "id", "direction": "asc"}]
SCRIPT = ("bench", "bench-key")


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def poll_everything(sg: shotgun_api3.Shotgun, first_id: int) -> float:
    """Read every event after first_id the way the daemon polls; returns events/s."""
    position, count = first_id - 1, 0
    started = time.perf_counter()
    while True:
        page = sg.find(
            "EventLogEntry", [["id", "greater_than", position]], FIELDS, order=ORDER, limit=500
        )
        if not page:
            break
        count += len(page)
        position = page[-1]["id"]
    return count / (time.perf_counter() - started)


def gap_queries(sg: shotgun_api3.Shotgun, first_id: int, total: int, rounds: int = 50) -> float:
    """Gap re-queries per second: 100 scattered ids, half of them with an event_type filter."""
    started = time.perf_counter()
    for index in range(rounds):
        ids = [first_id + (index * 7919 + step * 997) % total for step in range(100)]
        filters: List[list] = [["id", "in", ids]]
        if index % 2:
            filters.append(["event_type", "in", ["Shotgun_Shot_Change", "Shotgun_Task_Change"]])
        sg.find("EventLogEntry", filters, FIELDS, order=ORDER)
    return rounds / (time.perf_counter() - started)


def seed_links(sg: shotgun_api3.Shotgun) -> dict:
    """A project, a shot and an artist, so every benchmark event carries three live links."""
    project = sg.create("Project", {"name": "Bench"})
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    return {"project": project, "entity": shot}


def bench_bulk_insert(runs: int, count: int) -> float:
    def one() -> float:
        emulator = Emulator(scripts=dict([SCRIPT]))
        started = time.perf_counter()
        emulator.insert_events(count)
        return count / (time.perf_counter() - started)

    return median_of(runs, one)


def bench_memory(count: int) -> float:
    """MiB of resident memory that `count` bulk events add (measured in a fresh process)."""
    code = (
        "import resource, gc\n"
        "from shotgun_events.emulator import Emulator\n"
        "emulator = Emulator()\n"
        "gc.collect()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"emulator.insert_events({count})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) / 1024.0)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(output.strip())


def bench_in_process(runs: int, count: int) -> tuple:
    with Emulator(scripts=dict([SCRIPT])) as emulator:
        sg = emulator.client()
        links = seed_links(sg)
        user = emulator.ensure_human_user("artist")
        first, _ = emulator.insert_events(count, user=user, **links)
        reads = median_of(runs, lambda: poll_everything(sg, first))
        gaps = median_of(runs, lambda: gap_queries(sg, first, count))
    return reads, gaps


def bench_separate_process(runs: int, count: int) -> tuple:
    command = [
        sys.executable,
        "-m",
        "shotgun_events.emulator",
        "--port",
        "0",
        "--script",
        "{}:{}".format(*SCRIPT),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        sg = shotgun_api3.Shotgun(url, *SCRIPT)
        remote = RemoteEmulator(url)
        links = seed_links(sg)
        user = remote.call("ensure_human_user", login="artist")
        first, _ = remote.insert_events(count, user=user, **links)
        reads = median_of(runs, lambda: poll_everything(sg, first))
        gaps = median_of(runs, lambda: gap_queries(sg, first, count))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return reads, gaps


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the table")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args(argv)

    print(f"site emulator benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    insert_rate = bench_bulk_insert(args.runs, args.events)
    rows = [
        (f"bulk insert, {args.events:,} events per run", insert_rate, "events/s"),
        ("memory for 1,000,000 bulk events", bench_memory(1_000_000), "MiB"),
    ]
    reads, gaps = bench_in_process(args.runs, args.events)
    rows.append(("client poll reads, emulator in this process", reads, "events/s"))
    rows.append(("client gap re-queries (100 ids), same process", gaps, "queries/s"))
    reads, gaps = bench_separate_process(args.runs, args.events)
    rows.append(("client poll reads, emulator in its own process", reads, "events/s"))
    rows.append(("client gap re-queries (100 ids), own process", gaps, "queries/s"))

    width = max(len(label) for label, _, _ in rows)
    print(f"{f'measure (median of {args.runs} runs)':<{width}}  {'value':>14}  unit")
    print("-" * (width + 28))
    for label, value, unit in rows:
        print(f"{label:<{width}}  {value:>14,.0f}  {unit}")
    target = 10_000
    slowest = min(value for label, value, _ in rows if "poll reads" in label)
    verdict = "met" if slowest >= target else "NOT met"
    print(f"\npoll read target >= {target:,} events/s: {verdict} (slowest {slowest:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
