"""Recovery commands on a running daemon: retry, skip, reset, and their control socket.

The process tests run the real commands (``python -m shotgun_events retry|skip|reset``)
against the real daemon process and a site emulator in this process; plugins record what
they get (see harness.py). Request checks and the socket's framing are tested in-process.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import textwrap
import threading
from pathlib import Path

import pytest

from harness import PLUGIN_SCRIPT, recorder_plugin
from shotgun_events.control import (
    BadRequestError,
    ControlServer,
    ask_daemon,
    operator_name,
    parse_request,
)

#: Who the commands run as, as the daemon names them (from the socket's peer uid).
OPERATOR = pwd.getpwuid(os.getuid()).pw_name

#: Fails on every event of the type "Studio_Poison".
POISONED = recorder_plugin(
    body="""
    if event["event_type"] == "Studio_Poison":
        raise RuntimeError("poisoned event %d" % event["id"])
    """
)

#: Records each try as "try", then fails while the file named by $BROKEN_MARKER exists.
FLAKY = recorder_plugin(
    body="""
    record(os.path.splitext(os.path.basename(__file__))[0], "try", event)
    if os.path.exists(os.environ["BROKEN_MARKER"]):
        raise RuntimeError("the farm is down")
    """
)


def new_events(site, count, **fields):
    first, last = site.insert_events(count, **fields)
    return list(range(first, last + 1))


def running(daemon, *plugins):
    """Start the daemon in the foreground with these plugins; returns it once it polls."""
    for name, source in plugins:
        daemon.add_plugin(name, source)
    daemon.start()
    daemon.wait_started()
    daemon.wait_for(lambda: "Recovery commands are served" in daemon.log(), 20, "the socket")
    return daemon


def stopped_on(daemon, plugin, event_id, times=1):
    line = f"stopped on an error in {plugin}.callback at event {event_id};"
    daemon.wait_for(
        lambda: daemon.log().count(line) >= times, 20, f"{plugin} to stop on event {event_id}"
    )


def socket_path(daemon) -> Path:
    return daemon.state_file.with_name("events.id.control")


def engine_head(daemon) -> int:
    try:
        status = json.loads(daemon.state_file.with_name("events.id.status.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return status.get("head") or 0


def output(result) -> str:
    return result.stdout + result.stderr


# --------------------------------------------------------------------------- retry


def test_retry_runs_a_stopped_plugin_again_from_the_failed_event(tmp_path, site, daemon):
    marker = tmp_path / "broken"
    marker.touch()
    daemon.env["BROKEN_MARKER"] = str(marker)
    running(daemon, ("flaky", FLAKY))
    first, *later = new_events(site, 3)
    stopped_on(daemon, "flaky", first)

    still_broken = daemon.command("retry", "flaky")
    assert still_broken.returncode == 0, output(still_broken)
    assert f"it resumes after event {first - 1}" in still_broken.stdout
    stopped_on(daemon, "flaky", first, times=2)
    assert daemon.seen("flaky", "try") == [first, first]
    # Stopped again: the engine's later pages must not move it past the failed event.
    while_stopped = new_events(site, 2)
    daemon.wait_for(lambda: engine_head(daemon) >= while_stopped[-1], 20, "the engine's poll")

    marker.unlink()
    fixed = daemon.command("retry", "flaky")
    assert fixed.returncode == 0, output(fixed)
    assert f"it resumes after event {first - 1}" in fixed.stdout
    daemon.wait_seen("flaky", [first, *later, *while_stopped])
    assert daemon.seen("flaky", "cb") == [first, *later, *while_stopped]
    assert f"Operator {OPERATOR} retried plugin flaky" in daemon.log()


def test_retry_of_a_plugin_that_runs_is_refused(site, daemon):
    running(daemon, ("alpha", recorder_plugin()))
    result = daemon.command("retry", "alpha")
    assert result.returncode == 1, output(result)
    assert "alpha is active; nothing to retry" in result.stderr


#: Two callbacks: "first" records each event; "second" records each try, and while the file
#: named by $BROKEN_MARKER exists fails with a transient error that it retries every 3 s.
RETRYING = textwrap.dedent(
    f"""
    import os
    from _recorder import record

    def registerCallbacks(reg):
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, first)
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, second,
                             retry={{"first_delay": 3, "max_delay": 3, "jitter": 0}})

    def first(sg, logger, event, args):
        record("retrying", "first", event)

    def second(sg, logger, event, args):
        record("retrying", "try", event)
        if os.path.exists(os.environ["BROKEN_MARKER"]):
            raise ConnectionResetError("the farm is down")
        record("retrying", "cb", event)
    """
)


def test_a_command_during_a_retry_wait_loses_and_repeats_nothing(tmp_path, site, daemon):
    marker = tmp_path / "broken"
    daemon.env["BROKEN_MARKER"] = str(marker)
    running(daemon, ("retrying", RETRYING))
    warm_up = new_events(site, 1)
    daemon.wait_seen("retrying", warm_up)  # attached: fed by the engine's pages
    marker.touch()
    page = new_events(site, 5)
    daemon.wait_for(lambda: page[0] in daemon.seen("retrying", "try"), 20, "the first try")

    refused = daemon.command("retry", "retrying")  # cuts the retry wait short
    assert refused.returncode == 1, output(refused)
    marker.unlink()
    later = new_events(site, 2)

    daemon.wait_seen("retrying", page + later)
    assert daemon.seen("retrying", "cb") == warm_up + page + later
    assert daemon.seen("retrying", "first") == warm_up + page + later  # not run twice


# --------------------------------------------------------------------------- skip


def test_skip_moves_past_exactly_the_failed_event(site, daemon):
    running(daemon, ("alpha", POISONED))
    before = new_events(site, 2)
    poison = site.insert_event("Studio_Poison")
    after = new_events(site, 2)
    daemon.wait_seen("alpha", before)
    stopped_on(daemon, "alpha", poison)
    while_stopped = new_events(site, 1)

    result = daemon.command("skip", "alpha")
    assert result.returncode == 0, output(result)
    assert f"skipped event {poison}" in result.stdout
    daemon.wait_seen("alpha", after + while_stopped)
    assert daemon.seen("alpha") == before + after + while_stopped
    assert f"Operator {OPERATOR} skipped event {poison} of plugin alpha" in daemon.log()


def test_skip_of_a_plugin_that_did_not_fail_is_refused(site, daemon):
    running(daemon, ("alpha", recorder_plugin()))
    ids = new_events(site, 2)
    daemon.wait_seen("alpha", ids)
    result = daemon.command("skip", "alpha")
    assert result.returncode == 1, output(result)
    assert "not stopped on a failed event" in result.stderr
    assert daemon.counts("alpha") == {i: 1 for i in ids}


# --------------------------------------------------------------------------- reset


def test_reset_to_an_id_delivers_the_events_after_it_again(site, daemon):
    running(daemon, ("alpha", recorder_plugin()), ("beta", recorder_plugin()))
    ids = new_events(site, 5)
    daemon.wait_seen("alpha", ids)
    daemon.wait_seen("beta", ids)

    result = daemon.command("reset", "alpha", "--to", str(ids[1]))
    assert result.returncode == 0, output(result)
    assert f"position moved from {ids[-1]} to {ids[1]}" in result.stdout
    daemon.wait_for(lambda: len(daemon.seen("alpha")) == 8, 20, "alpha's second delivery")
    assert daemon.seen("alpha") == ids + ids[2:]
    assert daemon.seen("beta") == ids  # only the plugin named is touched
    assert f"Operator {OPERATOR} reset plugin alpha from event {ids[-1]}" in daemon.log()


def test_reset_to_latest_skips_a_stopped_plugin_to_the_head(site, daemon):
    daemon.write_config(status_interval=0.1)
    running(daemon, ("alpha", POISONED))
    poison = site.insert_event("Studio_Poison")
    stopped_on(daemon, "alpha", poison)
    passed_over = new_events(site, 3)
    daemon.wait_for(lambda: engine_head(daemon) >= passed_over[-1], 20, "the engine's head")

    result = daemon.command("reset", "alpha", "--to-latest")
    assert result.returncode == 0, output(result)
    assert f"position moved from {poison - 1} to {passed_over[-1]}" in result.stdout
    resumed = daemon.command("retry", "alpha")
    assert resumed.returncode == 0, output(resumed)
    assert f"resumes after event {passed_over[-1]}" in resumed.stdout
    fresh = new_events(site, 2)
    daemon.wait_seen("alpha", fresh)
    assert daemon.seen("alpha") == fresh


# --------------------------------------------------------------------------- refusals


def test_unknown_plugin_is_refused_with_the_plugins_there_are(site, daemon):
    running(daemon, ("alpha", recorder_plugin()), ("beta", recorder_plugin()))
    result = daemon.command("skip", "gamma")
    assert result.returncode == 1, output(result)
    assert "no plugin named 'gamma' (plugins: alpha, beta)" in result.stderr


def test_commands_without_a_running_daemon_exit_3(site, daemon):
    for command in (["retry", "alpha"], ["skip", "alpha"], ["reset", "alpha", "--to-latest"]):
        result = daemon.command(*command)
        assert result.returncode == 3, output(result)
        assert "not running" in result.stderr


def test_reset_needs_exactly_one_target(daemon):
    assert daemon.command("reset", "alpha").returncode == 2
    assert daemon.command("reset", "alpha", "--to", "5", "--to-latest").returncode == 2
    assert daemon.command("reset", "alpha", "--to", "zero").returncode == 2
    too_large = daemon.command("reset", "alpha", "--to", str(2**63))
    assert too_large.returncode == 2
    assert "event ids end at 9223372036854775807" in too_large.stderr


# --------------------------------------------------------------------------- the socket


def test_socket_is_private_to_the_daemons_user_and_removed_at_stop(site, daemon):
    """In daemon mode (start/stop), as the foreground tests cover the other."""
    daemon.add_plugin("alpha", recorder_plugin())
    started = daemon.command("start")
    assert started.returncode == 0, output(started)
    try:
        path = socket_path(daemon)
        daemon.wait_for(path.exists, 20, "the control socket")
        mode = os.lstat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        refused = daemon.command("retry", "alpha")
        assert refused.returncode == 1 and "nothing to retry" in refused.stderr
    finally:
        stopped = daemon.command("stop")
    assert stopped.returncode == 0, output(stopped)
    assert not path.exists()
    assert daemon.command("retry", "alpha").returncode == 3


def test_socket_left_by_a_killed_daemon_is_replaced_at_start(site, daemon):
    running(daemon, ("alpha", POISONED))
    daemon.kill()
    assert socket_path(daemon).exists()
    assert daemon.command("retry", "alpha").returncode == 3

    running(daemon)
    poison = site.insert_event("Studio_Poison")
    stopped_on(daemon, "alpha", poison)
    result = daemon.command("skip", "alpha")
    assert result.returncode == 0, output(result)


def test_a_client_that_sends_nothing_does_not_hold_up_other_commands(site, daemon):
    running(daemon, ("alpha", recorder_plugin()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(socket_path(daemon)))
        result = daemon.command("skip", "nope")
        assert result.returncode == 1 and "plugins: alpha" in result.stderr
    garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with garbage:
        garbage.connect(str(socket_path(daemon)))
        garbage.sendall(b"\x00not json\n")
        reply = json.loads(garbage.makefile("rb").readline())
    assert reply == {"ok": False, "message": "the request is not JSON"}
    ids = new_events(site, 2)
    daemon.wait_seen("alpha", ids)


# --------------------------------------------------------------------------- in-process


class RecordingEngine:
    """Stands in for the engine behind the socket: answers and remembers each command."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.commands = []

    def operator(self, action, plugin, *, user, to=None, latest=False, wait=30.0):
        self.commands.append((action, plugin, user, to, latest))
        return True, f"{action} {plugin} done"


def test_socket_works_in_a_folder_too_deep_for_a_unix_socket_path(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    deep.mkdir(parents=True)
    path = deep / "events.id.control"
    assert len(str(path)) > 108
    engine = RecordingEngine()
    server = ControlServer(engine, path).start()
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        request = {"action": "reset", "plugin": "alpha", "to": 7, "user": "someone-else"}
        assert ask_daemon(path, request, timeout=10) == (True, "reset alpha done")
    finally:
        server.stop()
    assert not path.exists()
    assert engine.commands == [
        ("reset", "alpha", f"{OPERATOR} (client says someone-else)", 7, False)
    ]


def test_a_stopping_daemon_refuses_commands(tmp_path):
    engine = RecordingEngine()
    engine.stop_event.set()
    server = ControlServer(engine, tmp_path / "control").start()
    try:
        ok, message = ask_daemon(tmp_path / "control", {"action": "retry", "plugin": "a"}, 10)
    finally:
        server.stop()
    assert not ok and "stopping" in message and engine.commands == []


@pytest.mark.parametrize(
    ("request_text", "problem"),
    [
        ('{"action": "delete", "plugin": "a"}', "unknown command 'delete'"),
        ('{"action": "retry"}', "names no plugin"),
        ('{"action": "reset", "plugin": "a"}', "exactly one of --to ID and --to-latest"),
        ('{"action": "reset", "plugin": "a", "to": 3, "latest": true}', "exactly one of"),
        ('{"action": "reset", "plugin": "a", "to": true}', "must be an event id"),
        ('{"action": "reset", "plugin": "a", "to": -4}', "must be an event id"),
        ('{"action": "reset", "plugin": "a", "to": 18446744073709551616}', "must be an event id"),
        ('{"action": "skip", "plugin": "a", "to": 3}', "skip takes no --to"),
        ("[1, 2]", "not a JSON object"),
        ("{", "not JSON"),
    ],
)
def test_malformed_requests_are_refused_with_the_reason(request_text, problem):
    with pytest.raises(BadRequestError, match=problem):
        parse_request(request_text.encode())


def test_request_text_cannot_forge_log_lines():
    request = parse_request(
        b'{"action": "retry", "plugin": "a\\nOperator root", "user": "eve\\r\\nroot"}'
    )
    assert "\n" not in request.plugin and "\n" not in request.user and "\r" not in request.user


def test_the_peers_uid_names_the_operator_over_the_clients_word():
    root = pwd.getpwuid(0).pw_name
    assert operator_name(0, root) == root
    assert operator_name(0, "mallory") == f"{root} (client says mallory)"
    assert operator_name(0, root, sudo_user="alice") == f"{root} (sudo from alice)"
    assert operator_name(None, "alice") == "alice (unverified)"
