"""Issue 7 end to end: transient site errors in plugins are retried by the engine.

A real daemon process, the real client in the plugins, and the emulator's fault control.
"""

from __future__ import annotations

import re
import socket
import textwrap
import time
import urllib.request

from harness import PLUGIN_SCRIPT, recorder_plugin
from test_engine import new_events, started


def writer_plugin(retry: str, stop_on_error: bool = True) -> str:
    """A plugin that writes one Note per event through its own connection."""
    return textwrap.dedent(
        f"""
        import time
        from _recorder import record

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, write_note,
                                 {{"Shotgun_Task_Change": None}},
                                 stopOnError={stop_on_error!r}, retry={retry})

        def write_note(sg, logger, event, args):
            record("writer", "start", event)
            time.sleep(1)  # some work before the write
            sg.create("Note", {{"subject": "note for event %d" % event["id"]}})
            record("writer", "cb", event)
        """
    )


def flaky_plugin(fail_for: float, error: str, retry: str, stop_on_error: bool = True) -> str:
    """A plugin whose callback raises ``error`` for ``fail_for`` seconds after its first try."""
    return textwrap.dedent(
        f"""
        import time
        import shotgun_api3
        from _recorder import record

        FIRST = []

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback,
                                 stopOnError={stop_on_error!r}, retry={retry})

        def callback(sg, logger, event, args):
            FIRST.append(time.monotonic())
            if time.monotonic() - FIRST[0] < {fail_for!r}:
                raise {error}
            record("flaky", "cb", event)
        """
    )


MAINTENANCE = 'shotgun_api3.ProtocolError("http://site", 503, "down for maintenance", {})'


def notes_by_subject(site):
    notes = site.client().find("Note", [], ["subject"])
    counts = {}
    for note in notes:
        counts[note["subject"]] = counts.get(note["subject"], 0) + 1
    return counts


def test_writes_through_a_20_s_maintenance_window_lose_nothing_and_write_once(site, daemon):
    started(daemon, ("writer", writer_plugin(retry="True")))
    ids = new_events(site, 3, event_type="Shotgun_Task_Change")
    daemon.wait_for(lambda: daemon.seen("writer", "start"), 20, "the first event in hand")
    site.faults.maintenance(20)  # the plugin's write comes during the window
    daemon.wait_for(lambda: set(ids) <= set(daemon.seen("writer", "cb")), 90, "the notes")
    counts = notes_by_subject(site)
    assert {f"note for event {i}": 1 for i in ids}.items() <= counts.items()
    assert all(n == 1 for n in counts.values()), counts  # no duplicate write
    log = (daemon.log_dir / "plugin.writer").read_text()
    assert log.count("hit a transient error") == 1  # one line per outage, not per attempt
    assert "works again" in log
    assert "ERROR" not in log
    daemon.stop()


def test_other_plugins_are_not_delayed_while_one_waits_to_retry(site, daemon):
    started(
        daemon,
        ("flaky", flaky_plugin(fail_for=6, error=MAINTENANCE, retry="True")),
        ("steady", recorder_plugin()),
    )
    first = new_events(site, 1)
    time.sleep(0.5)  # the flaky plugin is now waiting to retry the first event
    later = new_events(site, 5)
    daemon.wait_seen("steady", first + later, timeout=5)
    assert daemon.seen("flaky") == []  # still retrying: the others did not wait for it
    daemon.wait_seen("flaky", first + later, timeout=60)
    assert daemon.seen("flaky") == first + later
    daemon.stop()


def test_a_bug_is_not_retried(site, daemon):
    started(daemon, ("buggy", flaky_plugin(fail_for=999, error="KeyError('code')", retry="True")))
    new_events(site, 1)
    daemon.wait_for(lambda: "stopped on an error" in daemon.log(), 20, "the plugin to stop")
    assert "transient" not in daemon.log()
    daemon.stop()


def test_after_giving_up_stop_on_error_applies_as_before(site, daemon):
    policy = '{"attempts": 3, "first_delay": 0.1, "max_delay": 0.2}'
    started(
        daemon,
        ("stopper", flaky_plugin(fail_for=999, error=MAINTENANCE, retry=policy)),
        ("mover", flaky_plugin(999, MAINTENANCE, retry=policy, stop_on_error=False)),
    )
    ids = new_events(site, 2)
    daemon.wait_for(lambda: "stopped on an error" in daemon.log(), 30, "stopper to stop")
    daemon.wait_for(lambda: daemon.log().count("gave up retrying") >= 3, 30, "give-ups")
    log = daemon.log()
    assert "plugin.stopper" in log and "plugin.mover" in log
    # stopOnError=False moved on past both events after giving up on each
    mover = (daemon.log_dir / "plugin.mover").read_text()
    assert mover.count("gave up retrying") == 2
    assert all(f"event {i}" in mover for i in ids)
    # the stopped plugin resumes from the failed event once fixed
    daemon.add_plugin("stopper", recorder_plugin())
    daemon.wait_seen("stopper", ids)
    daemon.stop()


def test_classic_plugins_are_not_retried_unless_the_config_says_so(site, daemon):
    daemon.write_config(plugin_retry="attempts=20, first_delay=0.1, max_delay=0.2")
    started(daemon, ("flaky", flaky_plugin(fail_for=0.5, error=MAINTENANCE, retry="None")))
    ids = new_events(site, 2)
    daemon.wait_seen("flaky", ids, timeout=30)  # the config's default policy retried it
    daemon.stop()


def test_retries_are_shown_by_status_and_counted_in_metrics(site, daemon):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon.write_config(metrics_port=port, status_interval=0.2)
    started(daemon, ("flaky", flaky_plugin(fail_for=1.5, error=MAINTENANCE, retry="True")))
    ids = new_events(site, 1)
    daemon.wait_seen("flaky", ids, timeout=30)

    def retries_line():
        report = daemon.command("status").stdout
        return [line for line in report.splitlines() if "site errors:" in line]

    daemon.wait_for(lambda: retries_line(), 10, "the status report")
    assert re.search(r"site errors: [1-9]\d* retries, 0 given up", retries_line()[0])
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    found = re.search(
        rb'shotgun_events_plugin_retries_total\{folder="[^"]*",plugin="flaky"\} (\S+)', metrics
    ) or re.search(
        rb'shotgun_events_plugin_retries_total\{plugin="flaky",folder="[^"]*"\} (\S+)', metrics
    )
    assert found and float(found.group(1)) >= 1
    daemon.stop()


def test_waiting_to_retry_is_not_reported_as_a_stuck_callback(site, daemon):
    policy = '{"attempts": 10, "first_delay": 0.8, "max_delay": 0.8}'
    flaky = flaky_plugin(fail_for=2.0, error=MAINTENANCE, retry=policy).replace(
        "retry=" + policy + ")", "retry=" + policy + ", timeout=0.5)"
    )
    assert "timeout=0.5" in flaky
    started(daemon, ("flaky", flaky))
    ids = new_events(site, 1)
    daemon.wait_seen("flaky", ids, timeout=30)
    assert "hit a transient error" in daemon.log()
    assert "past its" not in daemon.log()  # each try was quick; the waits are not "stuck"
    daemon.stop()
