"""Scenario 1: catch-up. 100,000 events waiting, 10 plugins whose callbacks do nothing.

Measures events/s end to end (fetch + dispatch to all 10 plugins + state saved) against the
rate at which the bare client alone reads the same pages from the same emulator, and prints
the ratio. Targets: >= 8,000 events/s and a ratio >= 0.6.

Run: .venv/bin/python bench/catch_up.py [--events 100000] [--plugins 10] [--runs 3]
"""

from __future__ import annotations

import argparse

from _common import DaemonProcess, client_read_rate, emulator, median, noop_plugin, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with emulator() as site:
        first, last = site.remote.insert_events(args.events)
        client_rates, daemon_rates = [], []
        for _ in range(args.runs):
            client_rates.append(client_read_rate(site, first - 1))
            plugins = {f"noop{i:02d}": noop_plugin() for i in range(args.plugins)}
            # Checkpoints every 0.2 s so that the end is seen within 0.2 s of happening.
            daemon = DaemonProcess(site.url, plugins, state_save_interval=0.2)
            try:
                daemon.start(after=first - 1)
                seconds = daemon.wait_positions(last, list(plugins), timeout=600)
                daemon_rates.append(args.events / seconds)
            finally:
                daemon.stop()
    client, ours = median(client_rates), median(daemon_rates)
    print(
        table(
            f"Catch-up: {args.events:,} events, {args.plugins} no-op plugins "
            f"(median of {args.runs} runs)",
            [
                ["bare client, 500-event pages", f"{client:,.0f}", ""],
                ["daemon end to end", f"{ours:,.0f}", ">= 8,000"],
                ["ratio daemon / client", f"{ours / client:.2f}", ">= 0.6"],
            ],
            ["measure", "events/s", "target"],
        )
    )


if __name__ == "__main__":
    main()
