"""What saving progress costs: one journal record per event, and one checkpoint.

Run: `.venv/bin/python bench/bench_state.py [--dir FOLDER]` (a few seconds). Prints:
- one progress record (``ProgressJournal.record()``, one ``os.write``, no fsync), alone and as a
  worker does it (lock, change the progress, record), with and without an opened gap;
- ``checkpoint_if_due()`` when nothing is due (the engine calls it on every poll);
- one checkpoint with 200 plugins (copy, pickle, temp file, fsync, ``.prev``, rename, folder
  fsync, old journals deleted);
- loading a state file of 200 plugins plus a 100,000-line journal (start-up after a crash).
Each figure is the median of several runs. The folder decides what fsync costs: pass the
folder the daemon's ``eventIdFile`` lives in to measure the real disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple, Union

from shotgun_events.state import PluginProgress, ProgressJournal, StateStore

PLUGINS = 200
GAPS_PER_PLUGIN = 5
RECORDS_PER_RUN = 20_000


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def fresh_store(folder: Path, name: str) -> StateStore:
    store = StateStore(folder / name, save_interval=3600)
    store.load()
    return store


def records_alone(journal: ProgressJournal, gap: bool) -> float:
    """Microseconds per record() call, the progress changed beforehand."""
    progress = journal.progress
    opened = [0] if gap else []
    if gap:
        progress.gaps[0] = time.monotonic() + 300
    started = time.perf_counter()
    for _ in range(RECORDS_PER_RUN):
        journal.record(opened=opened)
    return (time.perf_counter() - started) / RECORDS_PER_RUN * 1e6


def worker_steps(journal: ProgressJournal) -> float:
    """Microseconds per worker step: take the lock, move the position, record."""
    progress = journal.progress
    position = progress.position or 0
    started = time.perf_counter()
    for _ in range(RECORDS_PER_RUN):
        position += 1
        with progress.lock:
            progress.position = position
            journal.record()
    return (time.perf_counter() - started) / RECORDS_PER_RUN * 1e6


def idle_checks(store: StateStore) -> float:
    """Microseconds per checkpoint_if_due() that finds nothing due."""
    store.checkpoint()
    started = time.perf_counter()
    for _ in range(RECORDS_PER_RUN):
        store.checkpoint_if_due()
    return (time.perf_counter() - started) / RECORDS_PER_RUN * 1e6


def populated_store(folder: Path, name: str) -> Tuple[StateStore, List[ProgressJournal]]:
    store = fresh_store(folder, name)
    deadline = time.monotonic() + 300
    journals = []
    for number in range(PLUGINS):
        position = 1_000_000 + number
        gaps = {position - gap - 1: deadline for gap in range(GAPS_PER_PLUGIN)}
        key = (f"/studio/plugins/{number % 4}", f"plugin{number:03d}")
        journals.append(store.track(key, PluginProgress(position=position, gaps=gaps)))
    store.checkpoint()
    return store, journals


def move_on(journals: List[ProgressJournal], steps: int) -> None:
    """Worker steps spread over the plugins, round robin."""
    for step in range(steps):
        journal = journals[step % len(journals)]
        with journal.progress.lock:
            journal.progress.position = (journal.progress.position or 0) + 1
            journal.record()


def one_checkpoint(store: StateStore, journals: List[ProgressJournal]) -> float:
    """Milliseconds for one checkpoint, a few plugins having moved since the last one."""
    move_on(journals, 10)
    started = time.perf_counter()
    store.checkpoint()
    return (time.perf_counter() - started) * 1e3


def one_load(path: Path) -> float:
    """Milliseconds to load the state file and replay the journal left by a crash."""
    started = time.perf_counter()
    StateStore(path).load()
    return (time.perf_counter() - started) * 1e3


Row = Tuple[str, Union[int, float], str]


def record_rows(folder: Path, runs: int) -> List[Row]:
    store = fresh_store(folder, "records.id")
    journal = store.track(("/studio/plugins", "bench"), PluginProgress(position=1))
    rows = [
        ("record(), position only", median_of(runs, lambda: records_alone(journal, False))),
        ("record(), one gap opened", median_of(runs, lambda: records_alone(journal, True))),
        ("worker step: lock + move + record()", median_of(runs, lambda: worker_steps(journal))),
        ("checkpoint_if_due(), nothing due", median_of(runs, lambda: idle_checks(store))),
    ]
    store.close()
    return [(label, value, "us") for label, value in rows]


def checkpoint_rows(folder: Path, runs: int) -> List[Row]:
    store, journals = populated_store(folder, "plugins.id")
    checkpoint = median_of(runs, lambda: one_checkpoint(store, journals))
    move_on(journals, 100_000)  # then a crash: the journal is all that holds these steps
    load = median_of(runs, lambda: one_load(store.path))
    return [
        (f"checkpoint, {PLUGINS} plugins x {GAPS_PER_PLUGIN} gaps", checkpoint, "ms"),
        (f"load: {PLUGINS} plugins + 100,000 journal lines", load, "ms"),
        (f"state file size, {PLUGINS} plugins", store.path.stat().st_size, "bytes"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="folder for the state files")
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=options.dir) as temp:
        rows = record_rows(Path(temp), options.runs) + checkpoint_rows(Path(temp), options.runs)
    where = options.dir or tempfile.gettempdir()
    print(f"state store costs (median of {options.runs} runs, files in {where})")
    for label, value, unit in rows:
        figure = f"{value:12d}" if isinstance(value, int) else f"{value:12.2f}"
        print(f"  {label:<46} {figure} {unit}")


if __name__ == "__main__":
    main()
