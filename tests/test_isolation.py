"""Process isolation end to end: plugins in their own worker processes (issue 8).

A real daemon with ``[plugins] isolation = process``: deadlines kill and restart a worker,
crashes are restarted up to a limit, a growing worker is recycled, and everything else
(delivery, logs, hot reload) behaves as in thread mode.
"""

from __future__ import annotations

import json
import time

import pytest

from harness import recorder_plugin
from test_engine import new_events, started


@pytest.fixture
def isolated(daemon):
    daemon.plugin_options["isolation"] = "process"
    daemon.write_config(worker_restart_limit=2, worker_restart_window=60)
    return daemon


def with_timeout(source: str, seconds: float) -> str:
    changed = source.replace("stopOnError=True)", f"stopOnError=True, timeout={seconds})")
    return changed.replace("stopOnError=False)", f"stopOnError=False, timeout={seconds})")


def test_process_plugins_get_every_event_and_log_to_their_own_file(site, isolated):
    logging_plugin = recorder_plugin(
        body="logger.info('handled %s in pid %s', event['id'], os.getpid())"
    )
    started(isolated, ("alpha", logging_plugin), ("beta", recorder_plugin()))
    ids = new_events(site, 20)
    isolated.wait_seen("alpha", ids)
    isolated.wait_seen("beta", ids)
    assert isolated.seen("alpha") == ids and isolated.seen("beta") == ids
    log = (isolated.log_dir / "plugin.alpha").read_text()
    assert f"handled {ids[-1]} in pid" in log
    assert f"in pid {isolated.process.pid}" not in log  # not the daemon's own process
    isolated.stop()


def test_a_callback_past_its_deadline_is_killed_and_the_plugin_moves_on(site, isolated):
    slow = with_timeout(
        recorder_plugin(
            body="if event['attribute_name'] == 'hang': time.sleep(60)", stop_on_error=False
        ),
        1,
    )
    started(isolated, ("slow", slow))
    hang = new_events(site, 1, attribute_name="hang")
    after = new_events(site, 2)
    isolated.wait_seen("slow", after, timeout=30)
    assert hang[0] not in isolated.seen("slow")
    assert "CallbackTimeout" in isolated.log()
    isolated.stop()


def test_a_callback_past_its_deadline_stops_the_plugin_with_stop_on_error(site, isolated):
    slow = with_timeout(
        recorder_plugin(body="if event['attribute_name'] == 'hang': time.sleep(60)"), 1
    )
    started(isolated, ("slow", slow), ("witness", recorder_plugin()))
    hang = new_events(site, 1, attribute_name="hang")
    after = new_events(site, 2)
    isolated.wait_seen("witness", hang + after)
    isolated.wait_for(lambda: "stopped on an error" in isolated.log(), 30, "the stop")
    assert isolated.seen("slow") == []
    isolated.stop()


def test_retries_adding_up_past_the_deadline_are_not_reported_as_stuck(site, isolated):
    # Each try is quick; only the retry waits (0.5 s, then 1 s, then 2 s) pass the 1 s
    # deadline, which applies to each call in its worker process, not to all of them.
    flaky = recorder_plugin(
        before="import shotgun_api3; FIRST = []",
        body="""
        FIRST.append(time.monotonic())
        if time.monotonic() - FIRST[0] < 2:
            raise shotgun_api3.ProtocolError("http://site", 503, "down for maintenance", {})
        """,
    ).replace("stopOnError=True)", "stopOnError=True, timeout=1, retry={'first_delay': 0.5})")
    started(isolated, ("flaky", flaky))
    ids = new_events(site, 1)
    isolated.wait_seen("flaky", ids, timeout=30)
    isolated.stop()
    log = isolated.log()
    assert "retry" in log.lower() and "flaky" in log
    assert "deadline" not in log and " - ERROR - " not in log


@pytest.mark.parametrize(
    "crash",
    ["import ctypes; ctypes.string_at(0)", "os._exit(3)"],
    ids=["segfault", "os_exit"],
)
def test_a_dying_worker_is_restarted_then_disabled_past_the_limit(site, isolated, crash):
    flaky = recorder_plugin(body=f"if event['attribute_name'] == 'crash': {crash}")
    started(isolated, ("flaky", flaky), ("witness", recorder_plugin()))
    first = new_events(site, 2)
    isolated.wait_seen("flaky", first)
    crash_ids = new_events(site, 1, attribute_name="crash")
    later = new_events(site, 2)
    isolated.wait_seen("witness", first + crash_ids + later)
    isolated.wait_for(
        lambda: "again." in isolated.log() and "flaky" in isolated.log(), 30, "a restart"
    )
    isolated.wait_for(lambda: "is deactivated" in isolated.log(), 30, "the limit")
    assert isolated.seen("flaky") == first  # disabled at the crashing event, position kept
    status_line = [line for line in isolated.log().splitlines() if "is deactivated" in line]
    assert "ERROR" in status_line[0] and "flaky" in status_line[0]
    isolated.stop()
    status = json.loads(isolated.state_file.with_name("events.id.status.json").read_text())
    (flaky_status,) = [p for p in status["plugins"] if p["name"] == "flaky"]
    assert flaky_status["errors"] == 1  # the run that ended it counts as a failed run
    assert flaky_status["last_error"].startswith("PluginDisabled: ")


def test_a_growing_worker_is_recycled_between_events(site, isolated):
    isolated.write_config(max_worker_memory_mb=80)
    leaky = recorder_plugin(before="HOARD = []", body="HOARD.append(b'x' * (30 * 1024 * 1024))")
    started(isolated, ("leaky", leaky))
    ids = []
    for _ in range(6):
        ids += new_events(site, 1)
        isolated.wait_seen("leaky", ids, timeout=30)
    assert "leaky" in isolated.log() and "recycl" in isolated.log().lower()
    isolated.stop()


def test_a_recycle_that_cannot_load_the_plugin_stops_it_before_the_next_event(site, isolated):
    cannot_load = isolated.root / "cannot-load"
    isolated.write_config(max_worker_memory_mb=1)  # every worker is over it: recycled each event
    source = recorder_plugin({"Shotgun_Shot_Change": ["want"]}).replace(
        "def registerCallbacks(reg):\n",
        "def registerCallbacks(reg):\n"
        f"    if os.path.exists({str(cannot_load)!r}):\n"
        "        raise RuntimeError('cannot load now')\n",
    )
    assert "cannot load now" in source
    started(isolated, ("picky", source))
    first = new_events(site, 1, attribute_name="want")
    isolated.wait_seen("picky", first, timeout=30)
    cannot_load.touch()
    new_events(site, 1, attribute_name="other")  # the recycle before this one fails
    time.sleep(1.0)
    wanted = new_events(site, 1, attribute_name="want")  # the plugin is inactive now
    time.sleep(1.0)
    new_events(site, 1, attribute_name="other")  # a later page must not move it past
    time.sleep(1.0)
    cannot_load.unlink()
    isolated.add_plugin("picky", source + "\n# fixed\n")
    last = new_events(site, 1, attribute_name="want")
    isolated.wait_seen("picky", wanted + last, timeout=30)
    assert isolated.seen("picky") == first + wanted + last
    isolated.stop()


def test_hot_reload_restarts_just_that_worker(site, isolated):
    started(isolated, ("alpha", recorder_plugin(tag="v1")), ("beta", recorder_plugin()))
    first = new_events(site, 2)
    isolated.wait_seen("alpha", first)
    isolated.add_plugin("alpha", recorder_plugin(tag="v2"))
    isolated.wait_for(lambda: isolated.log().count("Loaded plugin") >= 3, 20, "the reload")
    second = new_events(site, 2)
    isolated.wait_for(lambda: set(second) <= set(isolated.seen("alpha", "v2")), 20, "v2")
    isolated.wait_seen("beta", first + second)
    assert isolated.log().count("beta.py (1 callbacks)") == 1  # beta was not restarted
    isolated.stop()
