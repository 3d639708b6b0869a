"""Security: no secret in any output, private files, unsafe plugin folders refused, loopback.

- Script keys and the SMTP password never appear in the logs, the emails, tracebacks, the
  timing log, the status file or the ``status`` command's output, even when a plugin tries
  hard to show them (it logs its key and the whole config file, raises with the key in the
  message and in the source line). The suite also scans every file of every test for them
  (conftest.py); this test makes sure there is something to find.
- The state, status and log files are not readable by other users, even when a classic
  daemon left them world-readable.
- A plugin folder or file that other users (or the group) may write is refused with a clear
  message, at start and when it becomes so while running: it would let any local user run
  code as the daemon.
- The health endpoint listens on loopback only unless ``metrics_host`` says otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest
from reliability_support import (
    free_port,
    fsync_recorder_plugin,
    keep_output,
    secret_hits,
)

from harness import ENGINE_SCRIPT, PLUGIN_SCRIPT

pytestmark = pytest.mark.reliability

MASK = "********"

LEAKY_PLUGIN = textwrap.dedent(
    f"""
    import os
    from _fsync_recorder import record

    CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "shotgunEventDaemon.conf")

    def registerCallbacks(reg):
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback,
                             stopOnError=False)
        reg.logger.info("registered with key {PLUGIN_SCRIPT[1]}")

    def callback(sg, logger, event, args):
        record("leaky", "cb", event)
        logger.info("connected as %s with key %s", sg.config.script_name, sg.config.api_key)
        logger.warning("my whole config file:\\n%s", open(CONFIG).read())
        raise RuntimeError("the farm refused key {PLUGIN_SCRIPT[1]} for event %d" % event["id"])
    """
)


def test_secrets_never_reach_logs_emails_tracebacks_or_the_status_file(
    site, durable_daemon, mailbox, figures
):
    daemon = durable_daemon
    daemon.send_emails_to(mailbox.port)
    daemon.write_config(timing_log="on", status_interval=0.3, max_conn_retries=1)
    daemon.add_plugin("leaky", LEAKY_PLUGIN)
    daemon.start()
    daemon.wait_started()
    events = list(range(*site.insert_events(3)))
    daemon.wait_seen("leaky", events)
    # An authentication failure of the daemon's own script: its error is logged and mailed.
    site.set_script_key(ENGINE_SCRIPT[0], "revoked-key-000")
    site.insert_events(1)
    daemon.wait_for(lambda: "The site is unreachable" in daemon.log(), 30, "the auth alert")
    site.set_script_key(*ENGINE_SCRIPT)
    daemon.wait_for(lambda: "The site answers again" in daemon.log(), 30, "the recovery")
    daemon.wait_for(lambda: len(mailbox.subjects()) >= 3, 30, "the emails")
    outputs = daemon.root / "outputs"
    for args in (("status",), ("status", "--json")):
        result = daemon.command(*args)
        keep_output(outputs, "-".join(args) + ".txt", result.stdout + result.stderr)
    assert daemon.stop() == 0

    # The plugin did try: each attempt left a mask where the secret was.
    plugin_log = (daemon.log_dir / "plugin.leaky").read_text()
    assert plugin_log.count(MASK) >= 4 * len(events), plugin_log[-2000:]
    assert "key: " + MASK in plugin_log  # [shotgun] key in the config it logged
    assert "password: " + MASK in plugin_log  # [emails] password
    assert "RuntimeError: the farm refused key " + MASK in plugin_log  # the traceback
    assert any(MASK in m.get_content() for m in mailbox.messages)
    status_text = (outputs / "status---json.txt").read_text()
    assert f"the farm refused key {MASK}" in json.dumps(json.loads(status_text))
    assert mailbox.logins, "the emails were sent with the SMTP login"

    scanned, hits = secret_hits(daemon.root)
    assert not hits, hits
    figures.add("Security", "secrets tried by a plugin, masked in outputs", plugin_log.count(MASK))
    figures.add("Security", "outputs checked in the secrets test", f"{scanned} files")


def private_file_modes(daemon) -> Dict[str, int]:
    """The mode of every file the daemon keeps: state (and its copies, journals, slots),
    status, control socket, logs. A file deleted while looking (an old journal) is skipped."""
    modes = {}
    for folder in (daemon.state_file.parent, daemon.log_dir):
        for path in folder.iterdir():
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISSOCK(info.st_mode):
                modes[path.name] = stat.S_IMODE(info.st_mode)
    return modes


def test_state_status_and_log_files_are_not_world_readable(site, durable_daemon, figures):
    daemon = durable_daemon
    daemon.write_config(timing_log="on", status_interval=0.2)
    daemon.add_plugin("alpha", fsync_recorder_plugin())
    # A classic daemon ran here with umask 022: its files are readable by everyone.
    daemon.state_file.write_text("0\n")
    daemon.log_dir.mkdir()
    for name in ("shotgunEventDaemon", "plugin.alpha", "shotgunEventDaemon.timing"):
        (daemon.log_dir / name).write_text("an old line\n")
    for path in [daemon.state_file, *daemon.log_dir.iterdir()]:
        path.chmod(0o644)
    old_umask = os.umask(0o000)  # the most careless start: the daemon must not depend on it
    try:
        daemon.start()
        daemon.wait_started()
    finally:
        os.umask(old_umask)
    daemon.wait_for(lambda: "Loaded plugin" in daemon.log(), 20, "the plugin and its log file")
    started = private_file_modes(daemon)
    events = list(range(*site.insert_events(5)))
    daemon.wait_seen("alpha", events)
    status_file = daemon.state_file.with_name("events.id.status.json")
    daemon.wait_for(status_file.exists, 10, "the status file")
    running = private_file_modes(daemon)
    daemon.kill()  # what a crash leaves: journals and position slots too
    daemon.start()
    daemon.wait_started()
    crashed = private_file_modes(daemon)
    assert daemon.stop() == 0
    stopped = private_file_modes(daemon)

    readable = {
        f"{name} ({when})": oct(mode)
        for when, modes in (
            ("started", started),
            ("running", running),
            ("restarted after a kill", crashed),
            ("stopped", stopped),
        )
        for name, mode in modes.items()
        if mode & 0o007
    }
    modes = {**started, **running, **crashed, **stopped}
    assert not readable, f"readable or writable by other users: {readable}"
    assert {"events.id", "events.id.status.json", "shotgunEventDaemon"} <= set(modes)
    figures.add(
        "Security",
        "file modes (state, status, logs)",
        ", ".join(f"{name} {oct(mode)}" for name, mode in sorted(modes.items())),
    )


def test_plugin_file_or_folder_writable_by_others_is_refused_with_a_clear_message(
    site, durable_daemon, figures
):
    daemon = durable_daemon
    shared = daemon.root / "shared-plugins"
    shared.mkdir()
    (shared / "_fsync_recorder.py").write_text(
        (daemon.plugin_dir / "_fsync_recorder.py").read_text()
    )
    daemon.extra_plugin_dirs = [shared]
    daemon.write_config()
    daemon.add_plugin("witness", fsync_recorder_plugin())
    for name, mode in (("open_to_all", 0o646), ("open_to_group", 0o664), ("turns_unsafe", 0o644)):
        daemon.add_plugin(name, fsync_recorder_plugin()).chmod(mode)
    (shared / "in_open_folder.py").write_text(fsync_recorder_plugin())
    shared.chmod(0o777)
    daemon.start()
    daemon.wait_started()
    first = list(range(*site.insert_events(3)))
    daemon.wait_seen("witness", first)
    daemon.wait_seen("turns_unsafe", first)
    # While running, a loaded plugin file becomes writable by everyone: it is unloaded.
    (daemon.plugin_dir / "turns_unsafe.py").chmod(0o666)
    daemon.wait_for(lambda: "turns_unsafe.py is no longer loaded" in daemon.log(), 20, "unload")
    assert "turns_unsafe.py is no longer loaded (refused, see above)" in daemon.log()
    second = list(range(*site.insert_events(3)))
    daemon.wait_seen("witness", second)
    assert daemon.stop() == 0

    log = daemon.log()
    for name in ("open_to_all", "open_to_group", "in_open_folder"):
        assert not daemon.seen(name), f"{name} ran although others may write it"
    assert not set(second) & set(daemon.seen("turns_unsafe"))
    messages = [
        line.split(" - ERROR - ", 1)[1]
        for line in log.splitlines()
        if " - ERROR - " in line and ("refused" in line or "writable" in line)
    ]
    expected = {
        "open_to_all": "is writable by every user (chmod o-w to allow it)",
        "open_to_group": "is writable by its group (chmod g-w to allow it)",
        "turns_unsafe": "is writable by every user (chmod o-w to allow it)",
        str(shared): "plugin folder " + str(shared) + " is writable by every user",
    }
    for what, says in expected.items():
        assert [m for m in messages if what in m and says in m], f"no clear message for {what}"
        # Once, not at every folder scan (a loaded plugin's unloading is not another error).
        repeats = len([m for m in messages if what in m])
        assert repeats == 1, f"{what} reported {repeats} times"
    for message in messages:
        figures.add("Security: unsafe plugins refused", "message", message.split(" (")[0][-110:])


def listening_addresses(port: int) -> List[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, state = line.split()[1:4]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                found.append(address)
    return found


def test_health_endpoint_listens_on_loopback_only_by_default(site, durable_daemon, figures):
    daemon = durable_daemon
    port = free_port()
    daemon.write_config(metrics_port=port)
    daemon.start()
    daemon.wait_started()
    daemon.wait_for(lambda: listening_addresses(port), 20, "the health endpoint")
    addresses = listening_addresses(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        healthy = answer.status
    assert daemon.stop() == 0
    assert addresses == ["0100007F"], f"listening on {addresses}, not only on 127.0.0.1"
    assert healthy == 200
    figures.add("Security", "health endpoint by default", f"127.0.0.1:{port} only (/healthz 200)")


# --------------------------------------------------------------------------- every exit masks

KEY = PLUGIN_SCRIPT[1]

#: Fails to load, after registering: its key is a secret, and its load error quotes it.
LOAD_FAILS_WITH_KEY = textwrap.dedent(
    f"""
    def registerCallbacks(reg):
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {KEY!r}, callback)
        raise RuntimeError("the farm refused key {KEY}")

    def callback(sg, logger, event, args):
        pass
    """
)


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as error:  # 503 has a body too
        return error.read().decode()


def test_a_plugin_error_holding_its_key_is_masked_at_every_exit(site, durable_daemon):
    """The key was masked in the logs and the status file, but shown in clear on /healthz
    (any local user can read it), in the replies of retry/skip and in replay's output: the
    load error (Plugin.inactive_reason) reached those exits unmasked."""
    daemon = durable_daemon
    port = free_port()
    daemon.write_config(metrics_port=port, status_interval=0.2)
    daemon.add_plugin("leaky", LOAD_FAILS_WITH_KEY)
    daemon.add_plugin(
        "stops",
        fsync_recorder_plugin(body=f"raise RuntimeError('the farm refused key {KEY}')"),
    )
    daemon.start()
    daemon.wait_started()
    site.insert_events(1)
    daemon.wait_for(
        lambda: "stopped on an error" in get(f"http://127.0.0.1:{port}/healthz"),
        20,
        "the stopped plugin",
    )
    outputs = daemon.root / "outputs"
    shown = {
        "/healthz": get(f"http://127.0.0.1:{port}/healthz"),
        "/metrics": get(f"http://127.0.0.1:{port}/metrics"),
    }
    for args in (("retry", "leaky"), ("skip", "leaky"), ("retry", "stops"), ("skip", "stops")):
        result = daemon.command(*args)
        shown[" ".join(args)] = result.stdout + result.stderr
    result = daemon.command("replay", "--plugin", "leaky", "--from", "1")
    shown["replay"] = result.stdout + result.stderr
    assert daemon.stop() == 0
    for name, text in shown.items():
        keep_output(outputs, name.strip("/").replace(" ", "-") + ".txt", text)
        assert KEY not in text, f"{name} shows the key: {text[-500:]}"
    for name in ("/healthz", "retry leaky", "replay"):
        assert f"the farm refused key {MASK}" in shown[name], shown[name]


#: A thread-mode plugin whose helper thread fails with its key in the message and in the
#: source line; a finalizer and a warning do the same.
THREAD_FAILS_WITH_KEY = textwrap.dedent(
    f"""
    import threading, warnings
    from _fsync_recorder import record

    class Leftover:
        def __del__(self):
            raise RuntimeError("finalizer refused key {KEY}")

    def work():
        raise RuntimeError("the farm refused key {KEY}")

    def registerCallbacks(reg):
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {KEY!r}, callback)

    def callback(sg, logger, event, args):
        threading.Thread(target=work, name="farm-submit").start()
        Leftover()
        warnings.warn("deprecated farm call with {KEY}")
        record("spawner", "cb", event)
    """
)


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_an_exception_in_a_thread_a_plugin_started_is_logged_masked_naming_the_plugin(
    site, durable_daemon, isolation
):
    """Python's own hooks printed it to stderr in clear (the terminal, the journal) and no
    log had it; detached (stderr on /dev/null) it was lost."""
    daemon = durable_daemon
    daemon.plugin_options["isolation"] = isolation
    daemon.write_config()
    daemon.add_plugin("spawner", THREAD_FAILS_WITH_KEY)
    daemon.start()
    daemon.wait_started()
    first, last = site.insert_events(2)
    daemon.wait_seen("spawner", range(first, last + 1))
    plugin_log = daemon.log_dir / "plugin.spawner"
    daemon.wait_for(
        lambda: plugin_log.exists() and "finalizer refused" in plugin_log.read_text(),
        20,
        "the plugin's log",
    )
    assert daemon.stop() == 0
    terminal, logged = daemon.log(), plugin_log.read_text()
    assert KEY not in terminal and KEY not in logged
    assert (
        "Uncaught RuntimeError in thread farm-submit (code of plugin spawner), which ended."
        in logged
    ), logged[-3000:]
    assert f"RuntimeError: the farm refused key {MASK}" in logged
    assert f"RuntimeError: finalizer refused key {MASK}" in logged
    assert f"deprecated farm call with {MASK}" in daemon.log()
