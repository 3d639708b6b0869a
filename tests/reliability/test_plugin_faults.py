"""Plugin faults: a broken plugin never stops the engine or the other plugins.

One daemon runs a witness plugin next to plugins broken in every way the issue lists: a
syntax error, an import error, a wrong callback signature, an exception in
registerCallbacks, a callback that raises, calls sys.exit, raises KeyboardInterrupt, never
returns, or leaks memory. The witness must get every event, the daemon must keep running and
stop cleanly, and each fault must be reported with the plugin's name, once: not again at
every folder scan, nor at every later event.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path
from typing import Dict, List

import pytest
from reliability_support import fsync_recorder_plugin, keep_output

from harness import PLUGIN_SCRIPT
from shotgun_events.plugins import Plugin, PluginEnvironment

pytestmark = pytest.mark.reliability


def plugin_with_callback(signature: str, body: str, stop_on_error: bool = True) -> str:
    return textwrap.dedent(
        f"""
        import sys, threading, time
        LEAK = []

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback,
                                 stopOnError={stop_on_error!r})

        def callback({signature}):
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ")


#: plugin name -> its source; the name says the fault.
BROKEN: Dict[str, str] = {
    "syntax_error": "def registerCallbacks(reg)\n    reg.oops\n",
    "import_error": "import studio_module_that_is_not_installed\n" + fsync_recorder_plugin(),
    "wrong_signature": plugin_with_callback("sg, logger, event", "pass"),
    "register_raises": "def registerCallbacks(reg):\n    raise RuntimeError('no farm')\n",
    "register_exits": "import sys\n\ndef registerCallbacks(reg):\n    sys.exit(4)\n",
    "callback_raises": plugin_with_callback(
        "sg, logger, event, args", "raise ValueError('bad shot %d' % event['id'])"
    ),
    "callback_exits": plugin_with_callback("sg, logger, event, args", "sys.exit(3)"),
    "callback_interrupts": plugin_with_callback(
        "sg, logger, event, args", "raise KeyboardInterrupt()"
    ),
    "never_returns": plugin_with_callback("sg, logger, event, args", "threading.Event().wait()"),
    "leaks_memory": plugin_with_callback(
        "sg, logger, event, args", "LEAK.append(bytearray(2 * 1024 * 1024))"
    ),
}
#: Faults that show when the plugin loads; the others at its first event.
LOAD_FAULTS = (
    "syntax_error",
    "import_error",
    "wrong_signature",
    "register_raises",
    "register_exits",
)
#: Faults that stop the plugin at its first event (stopOnError=True).
CALLBACK_FAULTS = ("callback_raises", "callback_exits", "callback_interrupts")


def error_lines_naming(log: str, plugin: str) -> List[str]:
    """ERROR lines that name the plugin (its logger, its file or its name in the text)."""
    pattern = re.compile(rf"\b{plugin}\b")
    return [line for line in log.splitlines() if " - ERROR - " in line and pattern.search(line)]


def plugin_status(daemon) -> Dict[str, dict]:
    result = daemon.command("status", "--json")
    keep_output(daemon.root / "outputs", "status.json", result.stdout + result.stderr)
    return {plugin["name"]: plugin for plugin in json.loads(result.stdout)["status"]["plugins"]}


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_broken_plugins_never_stop_the_engine_or_the_others_and_are_reported_once(
    site, durable_daemon, mailbox, figures, isolation
):
    daemon = durable_daemon
    daemon.send_emails_to(mailbox.port)
    daemon.extra_sections += f"[plugins:{daemon.plugin_dir}]\nisolation: {isolation}\n"
    daemon.write_config(stop_timeout=2, status_interval=0.3, callback_timeout=1)
    daemon.add_plugin("witness", fsync_recorder_plugin())
    for name, source in BROKEN.items():
        daemon.add_plugin(name, source)
    daemon.start()
    daemon.wait_started()
    for name in LOAD_FAULTS:
        daemon.wait_for(lambda n=name: error_lines_naming(daemon.log(), n), 20, f"{name} report")

    first, last = site.insert_events(20)
    daemon.wait_seen("witness", range(first, last + 1))
    # In a thread a stuck callback cannot be stopped: it is reported. In its own process,
    # it is killed at the deadline and counts as a failure (stopOnError applies).
    stopping = CALLBACK_FAULTS + (("never_returns",) if isolation == "process" else ())
    for name in stopping:
        daemon.wait_for(lambda n=name: f"Plugin {n} stopped" in daemon.log(), 20, f"{name} stop")
    if isolation == "thread":
        daemon.wait_for(lambda: "past its 1 s deadline" in daemon.log(), 20, "the overrun")
    reports = {name: error_lines_naming(daemon.log(), name) for name in BROKEN}
    # Many more folder scans and polls, and more events: no fault is reported again.
    time.sleep(1.5)
    more_first, more_last = site.insert_events(20)
    daemon.wait_seen("witness", range(more_first, more_last + 1))
    time.sleep(1.0)
    assert daemon.alive()
    status = plugin_status(daemon)
    reports_later = {name: error_lines_naming(daemon.log(), name) for name in BROKEN}
    code = daemon.stop()

    assert code == 0, daemon.log()[-3000:]
    assert daemon.seen("witness") == list(range(first, more_last + 1))
    reported = (*LOAD_FAULTS, *stopping) + (("never_returns",) if isolation == "thread" else ())
    emails = {
        name: [s for s in mailbox.subjects() if re.search(rf"\b{name}\b", s)] for name in BROKEN
    }
    for name in reported:
        assert len(reports[name]) == 1, f"the {name} fault: {reports[name]}"
        assert reports_later[name] == reports[name], f"the {name} fault was reported again"
        assert len(emails[name]) == 1, f"the {name} fault: {emails[name]}"
    for name in (*LOAD_FAULTS, *stopping):
        assert not status[name]["active"] and status[name]["reason"], status[name]
    if isolation == "thread":
        assert status["never_returns"]["busy_callback"] == "never_returns.callback"
    assert status["witness"]["active"] and status["witness"]["errors"] == 0

    section = (
        f"Plugin faults, isolation = {isolation} "
        "(the witness got every event; the daemon ran on and exited 0)"
    )
    for name in BROKEN:
        figures.add(
            section,
            name,
            f"{len(reports_later[name])} ERROR lines, {len(emails[name])} emails; "
            + ("inactive: " + status[name]["reason"][:60] if not status[name]["active"] else "")
            + (f"busy in {status[name]['busy_callback']}" if status[name]["busy_callback"] else ""),
        )


def test_wrong_callback_signature_is_refused_at_load_and_loses_no_event_when_fixed(
    site, durable_daemon, figures
):
    """With stopOnError=False a callback that can never be called would move its plugin
    past every event, one error each; refused at load, the plugin waits for the fix."""
    daemon = durable_daemon
    wrong = plugin_with_callback("sg, logger, event", "pass", stop_on_error=False)
    daemon.add_plugin("tolerant", wrong)
    daemon.start()
    daemon.wait_started()
    events = list(range(*site.insert_events(10)))
    daemon.wait_for(
        lambda: "cannot be called as callback(sg, logger, event, args)" in daemon.log(),
        20,
        "the refusal",
    )
    daemon.add_plugin("tolerant", fsync_recorder_plugin(stop_on_error=False))
    daemon.wait_seen("tolerant", events)
    assert daemon.stop() == 0
    assert len(error_lines_naming(daemon.log(), "tolerant")) == 1
    figures.add(
        "Plugin faults",
        "wrong signature, stopOnError=False",
        "refused at load, reported once; no event lost after the fix",
    )


@pytest.mark.parametrize(
    "callback",
    [
        "def callback(sg, logger, event, args): pass",
        "def callback(*args): pass",
        "def callback(sg, logger, *rest, extra=None): pass",
        "class Callback:\n    def __call__(self, sg, logger, event, args): pass\n"
        "callback = Callback()",
        "class Holder:\n    def method(self, sg, logger, event, args): pass\n"
        "callback = Holder().method",
        "import functools\ndef three(prefix, sg, logger, event, args): pass\n"
        "callback = functools.partial(three, 'x')",
        "callback = print",
    ],
)
def test_every_callable_shape_the_contract_allows_still_registers(tmp_path, callback):
    assert load_with_callback(tmp_path, callback)


@pytest.mark.parametrize(
    "callback",
    [
        "def callback(sg, logger, event): pass",
        "def callback(sg, logger, event, args, extra): pass",
        "def callback(sg, logger, event, args, *, needed): pass",
        "class Callback:\n    def __call__(self): pass\ncallback = Callback()",
    ],
)
def test_callback_that_cannot_take_the_four_arguments_is_refused_at_load(tmp_path, callback):
    assert not load_with_callback(tmp_path, callback)


def load_with_callback(folder: Path, callback: str) -> bool:
    path = folder / "shape.py"
    path.write_text(
        callback + f"\n\ndef registerCallbacks(reg):\n"
        f"    reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback)\n"
    )
    plugin = Plugin(str(folder), path, PluginEnvironment(server="http://127.0.0.1:9"))
    return plugin.load()


def test_a_failing_callback_is_reported_once_with_one_email(site, durable_daemon, mailbox):
    daemon = durable_daemon
    daemon.send_emails_to(mailbox.port)
    daemon.add_plugin("callback_raises", BROKEN["callback_raises"])
    daemon.add_plugin("witness", fsync_recorder_plugin())
    daemon.start()
    daemon.wait_started()
    events = list(range(*site.insert_events(5)))
    daemon.wait_seen("witness", events)
    daemon.wait_for(lambda: "Plugin callback_raises stopped" in daemon.log(), 20, "the stop")
    assert daemon.stop() == 0  # the alert handler mails what is queued before it closes
    emails = [s for s in mailbox.subjects() if "callback_raises" in s]
    errors = error_lines_naming(daemon.log(), "callback_raises")
    assert (len(errors), len(emails)) == (1, 1), errors + emails


LEAK_MB_PER_EVENT = 4
LEAK_EVENTS = 60
MEMORY_LIMIT_MB = 128


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_leaking_plugin_in_its_own_process_is_recycled_and_reported(
    site, durable_daemon, figures
):
    daemon = durable_daemon
    daemon.extra_sections = f"[plugins:{daemon.plugin_dir}]\nisolation: process\n"
    daemon.write_config(max_worker_memory_mb=MEMORY_LIMIT_MB)
    leak = f"""
        LEAK = globals().setdefault("LEAK", [])
        LEAK.append(bytearray({LEAK_MB_PER_EVENT} * 1024 * 1024))
        """
    daemon.add_plugin("leaks_memory", fsync_recorder_plugin(body=leak))
    daemon.add_plugin("witness", fsync_recorder_plugin())
    daemon.start()
    daemon.wait_started()
    events = list(range(*site.insert_events(LEAK_EVENTS)))
    daemon.wait_seen("witness", events)
    daemon.wait_seen("leaks_memory", events, timeout=60)  # recycled between events: none lost
    daemon_mb = resident_mb(daemon.process.pid)
    assert daemon.stop() == 0
    recycled = daemon.count_in_log("Plugin leaks_memory recycled its worker process")
    figures.add(
        "Plugin faults",
        f"leaking plugin, isolation = process, max_worker_memory_mb = {MEMORY_LIMIT_MB}",
        f"{LEAK_MB_PER_EVENT * LEAK_EVENTS} MB leaked, {recycled} recycles, "
        f"daemon at {daemon_mb:.0f} MB, no event lost",
    )
    assert daemon_mb < LEAK_MB_PER_EVENT * LEAK_EVENTS / 2, "the leak is in the daemon itself"
    assert recycled >= 1
    assert re.search(r"leaks_memory uses \d+ MB, more than max_worker_memory_mb", daemon.log())


@pytest.mark.parametrize(
    "closes", ["sys.stderr.close()", "sys.__stderr__.close(); sys.__stdout__.close()"]
)
def test_a_plugin_that_closes_the_terminal_stops_neither_sigterm_nor_another_plugin(
    site, durable_daemon, closes
):
    """Every later log line raised out of logging's handleError (I/O operation on closed
    file): the service thread died on the SIGTERM's own log line, so SIGTERM was ignored,
    and a plugin that logs lost its worker thread for good."""
    daemon = durable_daemon
    daemon.write_config(stop_timeout=3)
    daemon.add_plugin("closer", fsync_recorder_plugin(body=f"import sys\n{closes}"))
    daemon.add_plugin(
        "chatty", fsync_recorder_plugin(body="logger.info('handling %d', event['id'])")
    )
    daemon.start()
    daemon.wait_started()
    a, b = site.insert_events(3)
    first = list(range(a, b + 1))
    daemon.wait_seen("closer", first)
    a, b = site.insert_events(5)
    later = list(range(a, b + 1))
    daemon.wait_seen("chatty", first + later)
    # The terminal handler writes on a descriptor of its own: its lines still come.
    daemon.wait_for(lambda: f"handling {later[-1]}" in daemon.log(), 20, "chatty's last line")
    started = time.monotonic()
    daemon.signal(15)
    code = daemon.process.wait(3 + 5 + 5)  # stop_timeout + the daemon's own grace + margin
    assert code == 0, daemon.log()[-3000:]
    assert time.monotonic() - started < 3 + 5
    assert daemon.seen("chatty") == first + later
    assert "Stopped; positions saved" in daemon.log()
