"""What running a callback in a worker process costs per event, against thread mode.

Run: `.venv/bin/python bench/process_overhead.py` (about ten seconds). Prints, for a no-op
callback and for one that logs a line per event, the calls per second and microseconds per
call of:
- the plugin's function called directly (no daemon at all);
- thread mode: ``plugins.Callback.__call__`` (what a worker thread does per callback);
- process mode: ``process_worker.ProcessCallback.__call__`` (event pickled to the worker
  process, run there, the reply and any log records back over the pipe);
and how long starting a worker process (spawn, imports, loading the plugin) takes.
The event is a typical ``Shotgun_Shot_Change`` with meta, entity, project and user. Each
figure is the median of several runs.
"""

from __future__ import annotations

import functools
import logging
import statistics
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List

from shotgun_events.plugins import Plugin, PluginEnvironment
from shotgun_events.process_worker import ProcessPlugin

RUNS = 5
CALLS = {"direct": 200_000, "thread": 200_000, "process": 5_000}

PLUGIN = """
def registerCallbacks(reg):
    reg.registerCallback("benchPlugins", "bench-plugin-key", noop)
    reg.registerCallback("benchPlugins", "bench-plugin-key", logs)

def noop(sg, logger, event, args):
    pass

def logs(sg, logger, event, args):
    logger.info("event %d: %s", event["id"], event["attribute_name"])
"""


def typical_event(event_id: int = 1000) -> Dict[str, object]:
    return {
        "id": event_id,
        "event_type": "Shotgun_Shot_Change",
        "attribute_name": "sg_status_list",
        "meta": {
            "type": "attribute_change",
            "attribute_name": "sg_status_list",
            "entity_type": "Shot",
            "entity_id": 1234,
            "field_data_type": "status_list",
            "old_value": "wtg",
            "new_value": "ip",
        },
        "entity": {"type": "Shot", "id": 1234, "name": "sh010"},
        "project": {"type": "Project", "id": 70, "name": "Big Buck Bunny"},
        "user": {"type": "HumanUser", "id": 42, "name": "Artist"},
        "created_at": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "description": "Shot sh010 status changed from wtg to ip",
        "session_uuid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
    }


def per_call(call: Callable[[Dict[str, object]], None], count: int) -> float:
    """Median microseconds per call over RUNS runs of ``count`` calls."""
    event = typical_event()

    def one_run() -> float:
        started = time.perf_counter()
        for _ in range(count):
            call(event)
        return (time.perf_counter() - started) / count * 1e6

    call(event)  # warm up (the thread-mode connection object, the worker's first import)
    return statistics.median(one_run() for _ in range(RUNS))


def main() -> None:
    logging.getLogger("plugin").addHandler(logging.NullHandler())
    logging.getLogger("plugin").propagate = False  # measure the handling, not a terminal
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_plugin.py"
        path.write_text(textwrap.dedent(PLUGIN))
        environment = PluginEnvironment(server="http://127.0.0.1:9")

        thread_plugin = Plugin(folder, path, environment)
        assert thread_plugin.load()
        assert thread_plugin.module is not None
        functions = {"noop": thread_plugin.module.noop, "logs": thread_plugin.module.logs}

        starts: List[float] = []
        process_plugin = ProcessPlugin(
            folder, path, environment, restart_limit=5, restart_window=60
        )
        for _ in range(RUNS):
            started = time.perf_counter()
            assert process_plugin.load()
            starts.append(time.perf_counter() - started)
        try:
            report(thread_plugin, process_plugin, functions)
        finally:
            process_plugin.close()
    start_ms = statistics.median(starts) * 1e3
    print(f"\nstarting a worker process and loading the plugin: {start_ms:.0f} ms")


def _direct(function: Callable, sg: object, logger: logging.Logger, event: Dict) -> None:
    function(sg, logger, event, None)


def report(thread_plugin: Plugin, process_plugin: ProcessPlugin, functions: Dict) -> None:
    print(f"{'callback':<8} {'mode':<8} {'calls/s':>10} {'us/call':>9}")
    for index, name in enumerate(("noop", "logs")):
        function = functions[name]
        thread_callback = thread_plugin.callbacks[index]
        process_callback = process_plugin.callbacks[index]
        direct = functools.partial(_direct, function, thread_callback.sg, thread_callback.logger)
        figures = {
            "direct": per_call(direct, CALLS["direct"]),
            "thread": per_call(thread_callback, CALLS["thread"]),
            "process": per_call(process_callback, CALLS["process"]),
        }
        for mode, micros in figures.items():
            print(f"{name:<8} {mode:<8} {1e6 / micros:>10,.0f} {micros:>9.2f}")
        extra = figures["process"] - figures["thread"]
        print(f"{name:<8} process mode adds {extra:.1f} us per callback call\n")


if __name__ == "__main__":
    main()
