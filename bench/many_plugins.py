"""Scenario 6: many plugins. 200 plugin files, 1,000 callbacks: matching cost and folder scans.

The plugins are generated (fixed seed): each registers 5 callbacks matching 1 to 3 event types
out of 67 (attribute lists on ``*_Change`` types), and plugins 50 and 150 also have a
callback that takes every event. Events are a fixed mix of those types and a few no plugin
wants.

- In process: what deciding who gets one event costs, with the daemon's own objects
  (``shotgun_events.plugins.Plugin``). "indexed" is the engine's route by event type (the
  plugins whose ``event_types`` hold the event's type, plus those that take every type),
  then ``plugin.callbacks_for(event)`` on those; "linear" asks every callback's matcher.
  Both with 20 plugins (100 callbacks) and 200 (1,000 callbacks): the indexed cost should
  follow the callbacks that want the event, not the number registered.
- In process: ``scan_folder`` over the 200 files, the hot-reload scan the engine runs once per
  idle poll (at most once a second while busy).
- End to end: a daemon with the 200 files catches up on a mixed backlog (events/s until all
  200 positions reach the last event), then sits idle: its CPU use per second idle.

This script only measures; it never changes the engine.

Run: .venv/bin/python bench/many_plugins.py [--events 20000] [--idle 20] [--quick]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from _common import (
    PLUGINS,
    DaemonProcess,
    Figure,
    cpu_seconds,
    emulator,
    figures_table,
    insert_mixed,
)

from shotgun_events.plugins import Plugin, PluginEnvironment, scan_folder

SCENARIO = "6 many plugins"
ENTITIES = [
    "Shot",
    "Asset",
    "Task",
    "Version",
    "Note",
    "Sequence",
    "PublishedFile",
    "Playlist",
    "HumanUser",
    "Project",
    "Step",
    "Episode",
    "Delivery",
    "TimeLog",
    "Reply",
    "CustomEntity01",
]
KINDS = ["Change", "New", "Retirement", "Revival", "Change"]  # Change weighs double in events
ATTRIBUTES = ["sg_status_list", "code", "description", "sg_version", "task_assignees", "image"]
OTHER_TYPES = ["Shotgun_User_Login", "Shotgun_Attachment_View", "Toolkit_App_Startup"]
EVENT_TYPES = sorted({f"Shotgun_{e}_{k}" for e in ENTITIES for k in KINDS}) + OTHER_TYPES
UNWANTED = ["Shotgun_Page_View", "Shotgun_Ticket_Change", "Toolkit_Engine_Init"]
CALLBACKS_PER_PLUGIN = 5


# --------------------------------------------------------------------------- the plugins


def match_events(rng: random.Random) -> Dict[str, Any]:
    """1 to 3 event types; a Change type gets 1 or 2 attributes (sometimes any)."""
    wanted: Dict[str, Any] = {}
    for event_type in rng.sample(EVENT_TYPES, rng.randint(1, 3)):
        if event_type.endswith("_Change") and rng.random() < 0.8:
            wanted[event_type] = rng.sample(ATTRIBUTES, rng.randint(1, 2))
        else:
            wanted[event_type] = None
    return wanted


def plugin_source(rng: random.Random, takes_everything: bool) -> str:
    registrations = []
    for index in range(CALLBACKS_PER_PLUGIN):
        wanted: Optional[Dict[str, Any]] = None
        if not (takes_everything and index == 0):
            wanted = match_events(rng)
        registrations.append(
            f"reg.registerCallback({PLUGINS[0]!r}, {PLUGINS[1]!r}, on_event{index}, {wanted!r})"
        )
    functions = "\n".join(
        f"def on_event{index}(sg, logger, event, args):\n    pass\n"
        for index in range(CALLBACKS_PER_PLUGIN)
    )
    body = textwrap.indent("\n".join(registrations), "    ")
    return f"def registerCallbacks(reg):\n{body}\n\n\n{functions}"


def write_plugins(folder: Path, count: int, seed: int = 7) -> Dict[str, str]:
    rng = random.Random(seed)
    sources = {
        f"plugin{index:03d}": plugin_source(rng, index % 100 == 50) for index in range(count)
    }
    for name, source in sources.items():
        (folder / f"{name}.py").write_text(source)
    return sources


def load_plugins(folder: Path) -> List[Plugin]:
    environment = PluginEnvironment(server="http://127.0.0.1:9")  # never connected
    plugins = []
    for path in sorted(folder.glob("*.py")):
        plugin = Plugin(str(folder), path, environment)
        if not plugin.load():
            raise RuntimeError(f"generated plugin {path} did not load")
        plugins.append(plugin)
    return plugins


def event_mix(count: int, seed: int = 11) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for event_id in range(1, count + 1):
        event_type = rng.choice(EVENT_TYPES + UNWANTED)
        attribute = rng.choice(ATTRIBUTES) if event_type.endswith("_Change") else None
        events.append({"id": event_id, "event_type": event_type, "attribute_name": attribute})
    return events


# --------------------------------------------------------------------------- matching cost


Routes = Tuple[Dict[str, List[Plugin]], List[Plugin]]


def routes_for(plugins: Sequence[Plugin]) -> Routes:
    """The engine's index: plugins by the event types they can match, and those taking all."""
    routes: Dict[str, List[Plugin]] = {}
    everything: List[Plugin] = []
    for plugin in plugins:
        types = plugin.event_types
        if types is None:
            everything.append(plugin)
        else:
            for event_type in types:
                routes.setdefault(event_type, []).append(plugin)
    return routes, everything


def indexed(plugins: Sequence[Plugin]) -> Callable[[Dict[str, Any]], int]:
    routes, everything = routes_for(plugins)

    def dispatch(event: Dict[str, Any]) -> int:
        found = 0
        for plugin in routes.get(event["event_type"], ()):
            found += len(plugin.callbacks_for(event))
        for plugin in everything:
            found += len(plugin.callbacks_for(event))
        return found

    return dispatch


def linear(plugins: Sequence[Plugin]) -> Callable[[Dict[str, Any]], int]:
    callbacks = [callback for plugin in plugins for callback in plugin.callbacks]

    def dispatch(event: Dict[str, Any]) -> int:
        return sum(1 for callback in callbacks if callback.matcher.matches(event))

    return dispatch


def microseconds_per_event(
    dispatch: Callable[[Dict[str, Any]], int], events: Sequence[Dict[str, Any]], runs: int
) -> Tuple[float, int]:
    """(median µs per event, callbacks matched over the whole mix)."""
    matched = sum(dispatch(event) for event in events)  # also warms the per-type caches
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for event in events:
            dispatch(event)
        timings.append((time.perf_counter() - started) / len(events) * 1e6)
    return statistics.median(timings), matched


def matching_figures(folder: Path, events: Sequence[Dict[str, Any]], runs: int) -> List[Figure]:
    plugins = load_plugins(folder)
    figures = []
    for count in (20, len(plugins)):
        chosen = plugins[:count]
        callbacks = sum(len(p.callbacks) for p in chosen)
        fast, matched = microseconds_per_event(indexed(chosen), events, runs)
        slow, matched_slow = microseconds_per_event(linear(chosen), events, runs)
        if matched != matched_slow:
            raise AssertionError(f"indexed matched {matched}, linear {matched_slow}")
        where = f"{count} plugins, {callbacks:,} callbacks"
        figures += [
            Figure(
                SCENARIO,
                f"{where}: indexed dispatch per event "
                f"({matched / len(events):.2f} callbacks match on average)",
                f"{fast:.1f} us",
            ),
            Figure(SCENARIO, f"{where}: linear scan of every matcher per event", f"{slow:.1f} us"),
        ]
    return figures


def scan_figure(folder: Path, runs: int) -> List[Figure]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        scan = scan_folder(folder)
        timings.append(time.perf_counter() - started)
    files = len(scan.files)
    scan_ms = statistics.median(timings) * 1000
    return [
        Figure(
            SCENARIO,
            f"hot-reload scan of {files} plugin files (scan_folder), per poll",
            f"{scan_ms:.2f} ms",
            "",
        ),
        Figure(
            SCENARIO,
            "  the same as a share of one core at fetch_interval 1 s / 0.2 s",
            f"{scan_ms / 10:.2f}% / {scan_ms / 2:.2f}%",
        ),
    ]


# --------------------------------------------------------------------------- end to end


def end_to_end(sources: Dict[str, str], events: int, idle: float) -> List[Figure]:
    with emulator() as site:
        first, last = insert_mixed(site.remote, events, EVENT_TYPES + UNWANTED)
        daemon = DaemonProcess(site.url, sources, fetch_interval=1.0, state_save_interval=0.2)
        try:
            launched = time.monotonic()
            daemon.start(after=first - 1)
            seconds = daemon.wait_positions(last, list(sources), timeout=900)
            total = time.monotonic() - launched
            assert daemon.process is not None
            time.sleep(2)  # let the last batches and the checkpoint settle
            before = cpu_seconds(daemon.process.pid)
            time.sleep(idle)
            idle_cpu = (cpu_seconds(daemon.process.pid) - before) / idle
            peak = daemon.peak_rss_mb()
        finally:
            daemon.stop()
    where = f"daemon, {len(sources)} plugin files"
    return [
        Figure(
            SCENARIO,
            f"{where}: catch-up of {events:,} mixed events (launch to done: {total:.1f} s)",
            f"{events / seconds:,.0f} events/s",
        ),
        Figure(
            SCENARIO,
            f"{where}: CPU while idle, fetch_interval 1 s ({idle:g} s measured)",
            f"{idle_cpu * 100:.1f}% of a core",
        ),
        Figure(SCENARIO, f"{where}: peak RSS", f"{peak:.0f} MB"),
    ]


def measure(
    quick: bool = False, plugins: int = 200, events: int = 20_000, idle: float = 20.0
) -> List[Figure]:
    runs = 3 if quick else 7
    if quick:
        events, idle = 4_000, 5.0
    folder = Path(tempfile.mkdtemp(prefix="sged-many-"))
    try:
        sources = write_plugins(folder, plugins)
        figures = matching_figures(folder, event_mix(2_000), runs)
        figures += scan_figure(folder, runs=15 if quick else 50)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures + end_to_end(sources, events, idle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000, help="backlog for the daemon")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measured")
    parser.add_argument("--quick", action="store_true", help="fewer runs, small backlog")
    args = parser.parse_args()
    title = f"Many plugins: {args.plugins} files x {CALLBACKS_PER_PLUGIN} callbacks"
    print(figures_table(title, measure(args.quick, args.plugins, args.events, args.idle)))


if __name__ == "__main__":
    main()
