"""Scenario 5: memory. Peak RSS of the daemon catching up on a large backlog with one plugin stuck.

Scenario 1 (10 no-op plugins) plus one plugin whose first callback never returns, on
backlogs of 100,000, 300,000 and 1,000,000 events. The stuck plugin's inbox fills up to
``max_plugin_backlog`` events, then the engine stops feeding it (it would read the site on its
own once it moved again), so the daemon must not hoard the backlog for it. Figures: the
daemon's peak resident memory (VmHWM) once the 10 no-op plugins are at the last event, per
backlog size, and the growth from the smallest to the largest backlog. Targets: < 200 MB,
and flat (the growth is a few MB, not proportional to the backlog).

The emulator holds the backlog in its own process; only the daemon is measured. This
script only measures; it never changes the engine.

Run: .venv/bin/python bench/memory.py [--sizes 100000,300000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
from typing import List, Sequence, Tuple

from _common import DaemonProcess, Figure, emulator, figures_table, noop_plugin

SCENARIO = "5 memory"
TARGET_MB = 200.0
#: "Flat": growth from the smallest to the largest backlog, in MB.
FLAT_MB = 20.0
STUCK = noop_plugin(body="time.sleep(3600)  # stuck: never returns")


def peak_rss(events: int, plugins: int) -> Tuple[float, float]:
    """(peak RSS in MB, events/s of the no-op plugins) for one backlog size."""
    with emulator() as site:
        first, last = site.remote.insert_events(events)
        sources = {f"noop{i:02d}": noop_plugin() for i in range(plugins)}
        sources["stuck"] = STUCK
        daemon = DaemonProcess(site.url, sources, stop_timeout=1, state_save_interval=0.5)
        try:
            daemon.start(after=first - 1)
            seconds = daemon.wait_positions(last, [n for n in sources if n != "stuck"], 1800)
            peak = daemon.peak_rss_mb()
        finally:
            daemon.stop()
    return peak, events / seconds


def measure(
    quick: bool = False, sizes: Sequence[int] = (100_000, 300_000, 1_000_000), plugins: int = 10
) -> List[Figure]:
    if quick:
        sizes = (20_000, 60_000)
    figures, peaks = [], []
    for size in sizes:
        peak, rate = peak_rss(size, plugins)
        peaks.append(peak)
        figures.append(
            Figure(
                SCENARIO,
                f"peak RSS, {size:,} events waiting, {plugins} no-op + 1 stuck plugin "
                f"({rate:,.0f} events/s)",
                f"{peak:.0f} MB",
                f"< {TARGET_MB:.0f} MB",
                peak < TARGET_MB,
            )
        )
    growth = peaks[-1] - peaks[0]
    figures.append(
        Figure(
            SCENARIO,
            f"growth from {sizes[0]:,} to {sizes[-1]:,} events",
            f"{growth:+.1f} MB",
            f"< {FLAT_MB:.0f} MB (flat)",
            growth < FLAT_MB,
        )
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="backlog sizes")
    parser.add_argument(
        "--plugins", type=int, default=10, help="no-op plugins besides the stuck one"
    )
    parser.add_argument("--quick", action="store_true", help="20k and 60k events (smoke test)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(figures_table("Memory", measure(args.quick, sizes, args.plugins)))


if __name__ == "__main__":
    main()
