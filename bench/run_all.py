"""Every benchmark scenario, one after the other, printed as one table (`make bench`).

Scenarios 2 to 6 are imported and run in this process (each starts its own emulator and
daemon processes); scenario 1 (bench/catch_up.py), the state-store costs (bench_state.py),
the emulator's own speed (bench_emulator.py) and the cost of process isolation
(process_overhead.py) run as their own scripts and their printed tables are read back.
Progress goes to stderr as each scenario finishes; the table, with the machine it ran on,
goes to stdout. About 9 minutes on 2 cores; ``--quick`` is a smoke run of a minute or two
whose figures mean little. This script never changes the engine.

Run: .venv/bin/python bench/run_all.py [--quick] [--only 2,3] [--skip emulator]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import latency
import many_plugins
import memory
import site_load
import slow_plugins
from _common import Figure, figures_table, machine

HERE = Path(__file__).resolve().parent


def run_script(name: str, arguments: Sequence[str]) -> str:
    """Run one of the bench scripts; its stdout (it must succeed)."""
    command = [sys.executable, str(HERE / name), *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def number(text: str) -> Optional[float]:
    found = re.search(r"-?[0-9][0-9,]*\.?[0-9]*", text)
    return float(found.group(0).replace(",", "")) if found else None


def meets(value: str, target: str) -> Optional[bool]:
    """Whether a printed value meets a printed target such as '>= 8,000' or '< 200 MB'."""
    wanted, got = number(target), number(value)
    if wanted is None or got is None:
        return None
    if target.startswith(">="):
        return got >= wanted
    if target.startswith("<="):
        return got <= wanted
    if target.startswith("<"):
        return got < wanted
    return None


def catch_up(quick: bool) -> List[Figure]:
    """Scenario 1 (bench/catch_up.py), its three printed rows read back."""
    arguments = ["--events", "20000", "--runs", "1"] if quick else []
    output = run_script("catch_up.py", arguments)
    figures = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) != 3 or cells[0] == "measure":
            continue
        measure, value, target = cells
        unit = "" if "ratio" in measure else " events/s"
        figures.append(Figure("1 catch-up", measure, value + unit, target, meets(value, target)))
    return figures


def state_store(quick: bool) -> List[Figure]:
    """bench/bench_state.py: what recording progress and checkpoints cost."""
    output = run_script("bench_state.py", ["--runs", "3"] if quick else [])
    figures = []
    for line in output.splitlines():
        if line.startswith("  "):
            label, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            figures.append(Figure("state store", label, value))
    return figures


def emulator_speed(quick: bool) -> List[Figure]:
    """bench/bench_emulator.py: the site emulator itself, for scale."""
    arguments = ["--runs", "1", "--events", "20000"] if quick else ["--runs", "3"]
    output = run_script("bench_emulator.py", arguments)
    figures = []
    for line in output.splitlines():
        found = re.match(r"(.+?)\s{2,}([0-9][0-9,.]*)\s{2}(\S+)$", line)
        if found:
            label, value, unit = found.groups()
            figures.append(Figure("emulator", label, f"{value} {unit}"))
    return figures


def process_workers(quick: bool) -> List[Figure]:
    """bench/process_overhead.py: a callback in a worker process against thread mode."""
    figures = []
    for line in run_script("process_overhead.py", []).splitlines():
        call = re.match(r"(\w+)\s+(direct|thread|process)\s+[0-9,]+\s+([0-9.]+)$", line.strip())
        start = re.match(r"starting a worker process.*: (.+)$", line.strip())
        if call:
            name, mode, micros = call.groups()
            figures.append(
                Figure("process workers", f"{name} callback, {mode}", f"{micros} us/call")
            )
        elif start:
            figures.append(
                Figure("process workers", "start a worker process, load the plugin", start.group(1))
            )
    return figures


SCENARIOS: List[Tuple[str, Callable[[bool], List[Figure]]]] = [
    ("1", catch_up),
    ("2", slow_plugins.measure),
    ("3", latency.measure),
    ("4", site_load.measure),
    ("5", memory.measure),
    ("6", many_plugins.measure),
    ("state", state_store),
    ("emulator", emulator_speed),
    ("process", process_workers),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario keys: 1..6,state,emulator,process"
    )
    parser.add_argument("--skip", default="", help="comma-separated scenario keys to leave out")
    args = parser.parse_args()
    only = {key for key in args.only.split(",") if key}
    skip = {key for key in args.skip.split(",") if key}
    figures: List[Figure] = []
    started = time.monotonic()
    for key, run in SCENARIOS:
        if (only and key not in only) or key in skip:
            continue
        began = time.monotonic()
        print(f"scenario {key} ...", end=" ", file=sys.stderr, flush=True)
        found = run(args.quick)
        print(f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        figures += found
    minutes = (time.monotonic() - started) / 60
    print(f"Machine: {machine()}")
    print(
        f"Command: {' '.join(['bench/run_all.py', *sys.argv[1:]])}, "
        f"{minutes:.1f} min, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(figures_table("Benchmarks", figures))
    missed = [f for f in figures if f.met is False]
    print(
        f"\n{len(missed)} target(s) missed"
        + (": " if missed else "")
        + "; ".join(f"{f.scenario}: {f.measure}" for f in missed)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
