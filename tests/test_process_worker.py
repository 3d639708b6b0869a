"""Plugins in their own worker processes (process_worker.py).

Every test starts real worker processes (spawned interpreters) that load real plugin files;
the site, where one is involved, is the emulator, reached by the stock client in the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import List

import pytest

from harness import PLUGIN_SCRIPT
from shotgun_events.config import RetryPolicy
from shotgun_events.plugins import PluginEnvironment, file_signature, module_name_for
from shotgun_events.process_worker import (
    CallbackTimeout,
    PluginDisabled,
    ProcessPlugin,
    RemoteCallbackError,
    RemoteTraceback,
    WorkerDied,
)
from test_alerts import FakeClock, alerts, settings_for, smtp_server  # noqa: F401 - fixtures

SCRIPT_NAME, SCRIPT_KEY = PLUGIN_SCRIPT


class Records(logging.Handler):
    """Every record that reaches the daemon's root logger during a test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def by(self, name: str, level: int = logging.DEBUG) -> List[logging.LogRecord]:
        return [r for r in self.records if r.name == name and r.levelno >= level]


@pytest.fixture
def records():
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
def secrets():
    return []


@pytest.fixture
def make_plugin(tmp_path, secrets):
    """Write a plugin file and make its ProcessPlugin; every one is closed at the end."""
    made: List[ProcessPlugin] = []
    folder = tmp_path / "plugins"
    folder.mkdir()

    def make(source, name="probe", server="http://127.0.0.1:9", **options) -> ProcessPlugin:
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        options.setdefault("restart_limit", 5)
        options.setdefault("restart_window", 60.0)
        environment = PluginEnvironment(
            server=server, add_secret=secrets.append, default_retry=RetryPolicy(attempts=3)
        )
        plugin = ProcessPlugin(str(folder), path, environment, **options)
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.close()


def event(event_id=1, event_type="Shotgun_Shot_Change", attribute="code", **meta):
    return {
        "id": event_id,
        "event_type": event_type,
        "attribute_name": attribute,
        "meta": meta,
        "session_uuid": None,
    }


def gone(pid: int) -> bool:
    """True when the process no longer exists and was reaped (no zombie left)."""
    return not Path(f"/proc/{pid}").exists()


#: A plugin whose one callback does what the event's meta says.
ACTIONS = f"""
    import ctypes, os, time

    KEPT = []

    def registerCallbacks(reg):
        reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, act, stopOnError=False)

    def act(sg, logger, event, args):
        action = event["meta"].get("action")
        if action == "segfault":
            ctypes.string_at(0)
        elif action == "exit":
            os._exit(3)
        elif action == "sleep":
            logger.info("sleeping")
            time.sleep(30)
        elif action == "grow":
            KEPT.append(b"x" * (100 * 1024 * 1024))
"""


# --------------------------------------------------------------------------- loading


def test_plugin_loads_in_its_worker_process_and_describes_its_callbacks(make_plugin, secrets):
    plugin = make_plugin(
        f"""
        import os

        with open(os.path.join(os.path.dirname(__file__), "loaded_by"), "w") as out:
            out.write(str(os.getpid()))

        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, on_shot,
                                 {{"Shotgun_Shot_Change": ["code", "sg_status_list"]}},
                                 stopOnError=False, timeout=7.5)
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, Anything(), args={{"a": 1}},
                                 retry=False)
            reg.setEmails("lead@studio.example", "td@studio.example")

        def on_shot(sg, logger, event, args):
            pass

        class Anything:
            def __call__(self, sg, logger, event, args):
                pass
        """
    )
    assert plugin.load()
    loaded_by = int((plugin.path.parent / "loaded_by").read_text())
    assert loaded_by == plugin.pid != os.getpid()
    assert module_name_for(plugin.path, plugin.folder) not in sys.modules
    assert plugin.active and plugin.inactive_reason is None
    assert plugin.signature == file_signature(plugin.path)
    assert plugin.emails == ("lead@studio.example", "td@studio.example")
    assert SCRIPT_KEY in secrets  # the daemon masks it in its logs

    on_shot, anything = plugin.callbacks
    assert (on_shot.name, on_shot.index, on_shot.full_name) == ("on_shot", 0, "probe.on_shot")
    assert (anything.name, anything.index) == ("Anything", 1)
    assert on_shot.stop_on_error is False and anything.stop_on_error is True
    assert on_shot.timeout == 7.5 and anything.timeout is None
    assert on_shot.retry_policy == RetryPolicy(attempts=3)  # the config's default
    assert anything.retry_policy is None  # retry=False
    assert on_shot.logger.name == "plugin.probe.on_shot"
    assert plugin.event_types is None  # Anything takes every type
    assert plugin.callbacks_for(event(attribute="code")) == (on_shot, anything)
    assert plugin.callbacks_for(event(attribute="description")) == (anything,)
    assert plugin.callbacks_for(event(event_type="Shotgun_Asset_New")) == (anything,)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import no_such_studio_module\n", "ModuleNotFoundError: No module named"),
        (
            "def registerCallbacks(reg):\n    raise ValueError('no render farm configured')\n",
            "ValueError: no render farm configured",
        ),
        ("x = 1\n", "it defines no registerCallbacks(reg) function"),
    ],
    ids=["import error", "registerCallbacks error", "no registerCallbacks"],
)
def test_plugin_that_cannot_load_is_inactive_with_the_reason_logged_once(
    make_plugin, records, source, reason
):
    plugin = make_plugin(source)
    assert not plugin.load()
    assert not plugin.active
    assert plugin.inactive_reason.startswith("failed to load: ")
    assert reason in plugin.inactive_reason
    assert plugin.callbacks == []
    assert plugin.pid is None
    errors = records.by("plugin.probe", logging.ERROR)
    assert len(errors) == 1
    assert reason in errors[0].getMessage()
    assert errors[0].process != os.getpid()  # logged by the worker process


def test_worker_process_dying_while_loading_is_a_load_failure(make_plugin, records):
    plugin = make_plugin("import os\nos._exit(7)\n")
    assert not plugin.load()
    assert plugin.inactive_reason == (
        "failed to load: its worker process exited with status 7 while loading it"
    )
    errors = records.by("plugin.probe", logging.ERROR)
    assert len(errors) == 1 and "exited with status 7" in errors[0].getMessage()


def test_a_plugin_still_loading_past_the_load_timeout_is_stopped_and_inactive(make_plugin, records):
    plugin = make_plugin("import time\ntime.sleep(60)  # a hung network share\n", load_timeout=1)
    started = time.monotonic()
    assert not plugin.load()
    assert time.monotonic() - started < 15
    assert plugin.inactive_reason == "failed to load: it was still loading after 1 s"
    assert plugin.pid is None  # its worker process was stopped
    errors = records.by("plugin.probe", logging.ERROR)
    assert len(errors) == 1 and "still loading after 1 s" in errors[0].getMessage()


# --------------------------------------------------------------------------- callbacks


def test_callback_errors_arrive_with_the_worker_traceback_and_whether_they_are_transient(
    make_plugin, site
):
    plugin = make_plugin(
        f"""
        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, read_shots)

        def read_shots(sg, logger, event, args):
            if event["meta"].get("action") == "bug":
                raise KeyError("sg_missing_field")
            sg.find("Shot", [], ["code"])
        """,
        server=site.url,
    )
    assert plugin.load()
    (callback,) = plugin.callbacks
    pid = plugin.pid

    with pytest.raises(RemoteCallbackError) as bug:
        callback(event(action="bug"))
    assert str(bug.value) == "KeyError: 'sg_missing_field'"
    assert bug.value.transient is False
    assert f'File "{plugin.path}"' in bug.value.traceback_text
    assert 'raise KeyError("sg_missing_field")' in bug.value.traceback_text
    assert isinstance(bug.value.__cause__, RemoteTraceback)
    assert bug.value.traceback_text.strip() in str(bug.value.__cause__)

    site.faults.maintenance(30)
    with pytest.raises(RemoteCallbackError) as outage:
        callback(event(2))
    assert outage.value.transient is True
    assert "HTTP 503" in str(outage.value)
    assert "ProtocolError" in outage.value.traceback_text

    site.faults.clear()
    callback(event(3))  # the same worker process goes on
    assert plugin.pid == pid and plugin.restarts == 0


def test_an_exception_whose_str_fails_is_reported_and_the_worker_goes_on(make_plugin):
    plugin = make_plugin(
        f"""
        class PublishError(Exception):
            def __str__(self):
                return 404  # not a str: str() raises TypeError

        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, publish)

        def publish(sg, logger, event, args):
            raise PublishError()
        """
    )
    assert plugin.load()
    (callback,) = plugin.callbacks
    pid = plugin.pid
    with pytest.raises(RemoteCallbackError) as raised:
        callback(event(1))
    assert str(raised.value) == "PublishError: <PublishError: its str() failed>"
    assert plugin.pid == pid and plugin.restarts == 0


def test_a_plugins_own_debug_level_holds_in_its_worker_process(make_plugin, records):
    """The classic logArgs idiom: a plugin turns on its own DEBUG lines."""
    plugin = make_plugin(
        f"""
        import logging

        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, chatty)
            reg.logger.setLevel(logging.DEBUG)

        def chatty(sg, logger, event, args):
            logger.debug("looking at event %s", event["id"])
        """,
        name="chatty",
    )
    assert plugin.load()
    plugin.callbacks[0](event(7))
    assert [r.getMessage() for r in records.by("plugin.chatty.chatty")] == ["looking at event 7"]


def test_a_worker_process_error_logged_per_event_is_one_alert_with_repeats(
    make_plugin,
    smtp_server,  # noqa: F811 - the fixture imported from test_alerts
    alerts,  # noqa: F811
):
    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=FakeClock())
    alerts.logger("plugin.publisher", handler)
    plugin = make_plugin(
        f"""
        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, publish, stopOnError=False)

        def publish(sg, logger, event, args):
            logger.error("Could not publish the version of event %s", event["id"])
        """,
        name="publisher",
    )
    assert plugin.load()
    for event_id in range(1, 11):
        plugin.callbacks[0](event(event_id))
    assert handler.flush(10)
    assert len(collector.received) == 1
    assert handler.stats.suppressed == 9


def test_logs_from_the_worker_process_reach_the_daemons_handlers(make_plugin, records):
    plugin = make_plugin(
        f"""
        import logging

        def registerCallbacks(reg):
            reg.logger.info("registering for %s", "shots")
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, chatty)

        def chatty(sg, logger, event, args):
            logger.info("event %d in hand", event["id"])
            logger.debug("below the plugin's level")
            logging.getLogger("studio.pipeline").warning("asset %s has no path", "hero")
            try:
                1 / 0
            except ZeroDivisionError:
                logger.exception("could not divide")
        """
    )
    assert plugin.load()
    plugin.callbacks[0](event(42))

    (loading,) = records.by("plugin.probe")
    assert loading.getMessage() == "registering for shots"
    assert loading.process == plugin.pid
    messages = [r.getMessage() for r in records.by("plugin.probe.chatty")]
    assert messages == ["event 42 in hand", "could not divide"]
    failure = records.by("plugin.probe.chatty", logging.ERROR)[0]
    assert failure.args is None
    assert "ZeroDivisionError: division by zero" in failure.exc_text
    (library,) = records.by("studio.pipeline")
    assert (library.levelno, library.getMessage()) == (logging.WARNING, "asset hero has no path")
    formatted = logging.Formatter("%(name)s %(message)s").format(failure)
    assert "Traceback (most recent call last)" in formatted


def test_callback_past_its_timeout_is_killed_and_the_next_call_gets_a_new_process(make_plugin):
    plugin = make_plugin(ACTIONS)
    assert plugin.load()
    (callback,) = plugin.callbacks
    first = plugin.pid

    with pytest.raises(CallbackTimeout, match=r"probe\.act ran past its 0\.5 s deadline"):
        callback(event(action="sleep"), timeout=0.5)
    assert gone(first)
    assert plugin.pid is None

    callback(event(2))
    assert plugin.pid not in (None, first)
    assert plugin.restarts == 1 and plugin.active


def test_callbacks_own_timeout_option_is_its_deadline(make_plugin):
    plugin = make_plugin(
        f"""
        import time

        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, slow, timeout=0.5)

        def slow(sg, logger, event, args):
            time.sleep(30)
        """
    )
    assert plugin.load()
    pid = plugin.pid
    with pytest.raises(CallbackTimeout):
        plugin.callbacks[0](event())
    assert gone(pid)


@pytest.mark.parametrize(
    ("action", "described"),
    [("segfault", "was killed by signal SIGSEGV"), ("exit", "exited with status 3")],
)
def test_crashed_worker_process_is_reported_and_the_next_call_runs_again(
    make_plugin, action, described
):
    plugin = make_plugin(ACTIONS)
    assert plugin.load()
    (callback,) = plugin.callbacks
    first = plugin.pid

    with pytest.raises(WorkerDied, match=described) as died:
        callback(event(7, action=action))
    assert "while running probe.act on event 7" in str(died.value)
    assert gone(first)

    callback(event(7))  # the same event again, in a new process
    assert plugin.pid not in (None, first)
    assert plugin.restarts == 1 and plugin.active


def test_death_is_noticed_while_a_process_the_plugin_forked_keeps_the_pipe_open(make_plugin):
    plugin = make_plugin(
        f"""
        import os, time

        def registerCallbacks(reg):
            reg.registerCallback({SCRIPT_NAME!r}, {SCRIPT_KEY!r}, fork_and_die)

        def fork_and_die(sg, logger, event, args):
            helper = os.fork()
            if helper == 0:
                time.sleep(60)  # holds every descriptor of the worker process
                os._exit(0)
            with open(os.path.join(os.path.dirname(__file__), "helper"), "w") as out:
                out.write(str(helper))
            os._exit(4)
        """
    )
    assert plugin.load()
    try:
        with pytest.raises(WorkerDied, match="exited with status 4"):
            plugin.callbacks[0](event())
    finally:
        helper = int((plugin.path.parent / "helper").read_text())
        os.kill(helper, signal.SIGKILL)


def test_too_many_deaths_within_the_window_deactivate_the_plugin_with_one_error(
    make_plugin, records
):
    plugin = make_plugin(ACTIONS, restart_limit=1, restart_window=600)
    assert plugin.load()
    (callback,) = plugin.callbacks

    with pytest.raises(WorkerDied):
        callback(event(1, action="exit"))
    with pytest.raises(PluginDisabled, match="died 2 times within 600 s") as disabled:
        callback(event(1, action="exit"))
    assert not plugin.active
    assert plugin.inactive_reason == str(disabled.value)
    assert plugin.pid is None

    with pytest.raises(PluginDisabled):
        callback(event(1))  # no new process, no second error
    errors = records.by("plugin.probe", logging.ERROR)
    assert len(errors) == 1
    assert "Plugin probe is deactivated" in errors[0].getMessage()


def test_deaths_further_apart_than_the_window_do_not_add_up(make_plugin):
    now = [0.0]
    plugin = make_plugin(ACTIONS, restart_limit=1, restart_window=10, clock=lambda: now[0])
    assert plugin.load()
    (callback,) = plugin.callbacks
    with pytest.raises(WorkerDied):
        callback(event(1, action="exit"))
    now[0] = 11.0
    with pytest.raises(WorkerDied):
        callback(event(1, action="exit"))
    assert plugin.active and plugin.restarts == 1


def test_reload_starts_a_new_process_with_the_new_code(make_plugin):
    version = """
        def registerCallbacks(reg):
            reg.registerCallback({name!r}, {key!r}, report)

        def report(sg, logger, event, args):
            raise RuntimeError("running version {version}")
    """
    plugin = make_plugin(
        textwrap.dedent(version).format(name=SCRIPT_NAME, key=SCRIPT_KEY, version=1)
    )
    assert plugin.load()
    first = plugin.pid
    with pytest.raises(RemoteCallbackError, match="running version 1"):
        plugin.callbacks[0](event())

    plugin.path.write_text(
        textwrap.dedent(version).format(name=SCRIPT_NAME, key=SCRIPT_KEY, version=2)
    )
    assert plugin.load()
    assert gone(first)
    with pytest.raises(RemoteCallbackError, match="running version 2"):
        plugin.callbacks[0](event())
    assert plugin.restarts == 0


# --------------------------------------------------------------------------- between events


def test_worker_process_over_its_memory_limit_is_replaced_between_events(make_plugin, records):
    plugin = make_plugin(ACTIONS, max_memory_mb=80)
    assert plugin.load()
    (callback,) = plugin.callbacks
    first = plugin.pid
    assert not plugin.recycle_if_over_memory()  # a fresh process is well under 80 MB

    callback(event(action="grow"))  # keeps 100 MB
    assert plugin.memory_mb() > 100
    assert plugin.recycle_if_over_memory()
    assert gone(first)
    assert plugin.pid not in (None, first)
    assert plugin.memory_mb() < 80
    assert (plugin.recycles, plugin.restarts) == (1, 0)
    assert plugin.callbacks == [callback] and plugin.active
    callback(event(2))
    (notice,) = [r for r in records.by("plugin.probe") if "max_worker_memory_mb" in r.getMessage()]
    assert notice.levelno == logging.INFO
    assert "uses 1" in notice.getMessage()  # the figure, over 100 MB


# --------------------------------------------------------------------------- signals, stopping


def test_worker_process_leaves_ctrl_c_and_sighup_to_the_daemon_and_obeys_sigterm(make_plugin):
    plugin = make_plugin(ACTIONS)
    assert plugin.load()
    (callback,) = plugin.callbacks
    pid = plugin.pid
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGHUP)
    callback(event())
    assert plugin.pid == pid

    os.kill(pid, signal.SIGTERM)
    with pytest.raises(WorkerDied, match="SIGTERM"):
        callback(event(2))


def test_close_leaves_no_worker_process_behind(make_plugin):
    plugin = make_plugin(ACTIONS)
    assert plugin.load()
    pid = plugin.pid
    plugin.close()
    assert gone(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped
    with pytest.raises(PluginDisabled):
        plugin.callbacks[0](event())


class Sleeping(logging.Handler):
    """Tells when the callback in the worker process has started to sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "sleeping":
            self.started.set()


def test_close_during_a_callback_kills_the_process_and_ends_the_call(make_plugin):
    plugin = make_plugin(ACTIONS, stop_grace=0.5)
    assert plugin.load()
    pid = plugin.pid
    outcome: List[BaseException] = []
    sleeping = Sleeping()
    plugin.logger.addHandler(sleeping)

    def run() -> None:
        try:
            plugin.callbacks[0](event(action="sleep"))
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            outcome.append(error)

    caller = threading.Thread(target=run)
    caller.start()
    try:
        assert sleeping.started.wait(10)
    finally:
        plugin.logger.removeHandler(sleeping)
    plugin.close()  # it does not answer the polite request while it sleeps
    caller.join(10)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PluginDisabled)
    assert gone(pid)


def test_deactivated_plugin_frees_its_worker_process(make_plugin):
    plugin = make_plugin(ACTIONS)
    assert plugin.load()
    pid = plugin.pid
    plugin.deactivate("stopped on an error in probe.act at event 5")
    assert gone(pid) and plugin.pid is None
    with pytest.raises(PluginDisabled, match="stopped on an error"):
        plugin.callbacks[0](event(6))
    assert plugin.load() and plugin.active  # an operator's retry, or a file change
    plugin.callbacks[0](event(6))
