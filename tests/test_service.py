"""The daemon as a service: start, stop, restart, reload, status, locks, signals, status file.

Every test runs the real commands (``python -m shotgun_events start|stop|status ...``) and the
real daemon process against a site emulator in this process; plugins record what they get
(see harness.py).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import ENGINE_SCRIPT, PLUGIN_SCRIPT, recorder_plugin
from shotgun_events.service import probe_lock

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def service(daemon):
    """The harness's daemon, driven through the service commands; killed if left running."""
    daemon.write_config(status_interval=0.2)
    try:
        yield daemon
    finally:
        probe = probe_lock(daemon.pid_file)
        if probe.held and probe.pid:
            os.kill(probe.pid, signal.SIGKILL)


def eventually(predicate, what, timeout=20.0, log_file=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = log_file.read_text(errors="replace")[-4000:] if log_file and log_file.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def daemon_pid(service) -> int:
    return int(service.pid_file.read_text().split()[0])


def is_running(service) -> bool:
    return probe_lock(service.pid_file).held


def new_events(site, count, **fields):
    first, last = site.insert_events(count, **fields)
    return list(range(first, last + 1))


def started(service, *plugins):
    """`start` the daemon with these plugins; returns its pid once it has read the site."""
    for name, source in plugins:
        service.add_plugin(name, source)
    result = service.command("start")
    assert result.returncode == 0, result.stdout + result.stderr
    pid = daemon_pid(service)
    assert f"started (pid {pid})" in result.stdout
    eventually(
        lambda: service.state_file.exists(), "the first checkpoint", log_file=service.main_log_file
    )
    return pid


def status_file(service) -> dict:
    return json.loads(service.state_file.with_name("events.id.status.json").read_text())


def status_shows(service, pid, plugin, position) -> bool:
    try:
        status = status_file(service)
    except (FileNotFoundError, ValueError):
        return False
    positions = {p["name"]: p["position"] for p in status["plugins"]}
    return status["pid"] == pid and positions.get(plugin) == position


def saved_positions(service) -> dict:
    with open(service.state_file, "rb") as handle:
        state = pickle.load(handle)
    return {name: entry[0] for name, entry in state[str(service.plugin_dir)].items()}


# --------------------------------------------------------------------------- start, status, stop


def test_start_detaches_reports_status_per_plugin_and_stop_ends_it(site, service):
    pid = started(service, ("alpha", recorder_plugin()))
    assert pid != os.getpid() and os.getsid(pid) != os.getsid(0)  # its own session
    proc = Path(f"/proc/{pid}")
    assert os.readlink(proc / "cwd") == "/"
    assert "Umask:\t0027" in (proc / "status").read_text()
    for fd in (0, 1, 2):
        assert os.readlink(proc / "fd" / str(fd)) == "/dev/null"
    assert "Started as a daemon" in service.main_log_file.read_text()

    ids = new_events(site, 5)
    service.wait_seen("alpha", ids)
    eventually(lambda: status_shows(service, pid, "alpha", ids[-1]), "the status file")
    result = service.command("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"is running (pid {pid})" in result.stdout
    assert "alpha" in result.stdout and "active" in result.stdout
    assert f"last event {ids[-1]}" in result.stdout and "behind: 0 events" in result.stdout

    stopped = service.command("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped (pid {pid})" in stopped.stdout
    assert not service.pid_file.exists()
    assert saved_positions(service)["alpha"] == ids[-1]
    assert status_file(service)["state"] == "stopped"
    after = service.command("status")
    assert after.returncode == 3 and "not running" in after.stdout
    again = service.command("stop")
    assert again.returncode == 0 and "not running" in again.stdout


def test_restart_replaces_the_daemon_and_the_new_one_resumes(site, service):
    first_pid = started(service, ("alpha", recorder_plugin()))
    before = new_events(site, 3)
    service.wait_seen("alpha", before)
    result = service.command("restart")
    assert result.returncode == 0, result.stdout + result.stderr
    second_pid = daemon_pid(service)
    assert second_pid != first_pid and is_running(service)
    after = new_events(site, 3)
    service.wait_seen("alpha", after)
    assert service.seen("alpha") == before + after
    assert service.command("stop").returncode == 0


def test_status_of_a_daemon_never_started_is_3_and_of_a_bad_config_is_4(service, tmp_path):
    assert service.command("status").returncode == 3
    bad = tmp_path / "bad.conf"
    bad.write_text(
        service.config_path.read_text().replace("fetch_interval: 0.1", "fetch_interval: soon")
    )
    result = subprocess.run(
        [sys.executable, "-m", "shotgun_events", "status", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4 and "fetch_interval" in result.stderr


# ------------------------------------------------------------------- stale and second daemons


def test_after_kill_9_status_says_dead_and_start_clears_the_pid_file_and_resumes(site, service):
    pid = started(service, ("alpha", recorder_plugin()))
    before = new_events(site, 4)
    service.wait_seen("alpha", before)
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: not is_running(service), "the killed daemon's lock to go")
    assert service.pid_file.exists()  # left behind: stale
    dead = service.command("status")
    assert dead.returncode == 1, dead.stdout
    assert f"names pid {pid}" in dead.stdout

    during = new_events(site, 4)
    restarted = service.command("start")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"stale pid file {service.pid_file}" in restarted.stderr
    assert daemon_pid(service) != pid
    service.wait_seen("alpha", during)
    counts = service.counts("alpha")
    assert all(counts[event_id] == 1 for event_id in before[:-1] + during)
    assert service.command("stop").returncode == 0


def test_second_start_on_the_same_pid_file_is_refused_and_the_first_keeps_running(site, service):
    pid = started(service, ("alpha", recorder_plugin()))
    again = service.command("start")
    assert again.returncode == 0  # LSB: starting a running service is a success
    assert f"already running (pid {pid})" in again.stdout
    foreground = service.command("foreground", timeout=30)
    assert foreground.returncode == 1
    assert str(service.pid_file) in foreground.stderr and f"pid {pid}" in foreground.stderr
    assert daemon_pid(service) == pid and is_running(service)
    ids = new_events(site, 2)
    service.wait_seen("alpha", ids)
    assert service.command("stop").returncode == 0


def test_second_daemon_on_the_same_state_file_is_refused_naming_the_lock_and_holder(
    site, service, tmp_path
):
    service.add_plugin("alpha", recorder_plugin())
    service.start()
    service.wait_started()
    other = tmp_path / "other.conf"
    other.write_text(
        service.config_path.read_text().replace(str(service.pid_file), str(tmp_path / "other.pid"))
    )
    for command in ("foreground", "start"):
        result = subprocess.run(
            [sys.executable, "-m", "shotgun_events", command, "--config", str(other)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1, command
        assert f"{service.state_file}.lock" in result.stderr
        assert f"pid {service.process.pid}" in result.stderr
        assert "Traceback" not in result.stderr
    assert service.alive() and not (tmp_path / "other.pid").exists()
    assert service.stop() == 0


def test_errors_before_detaching_reach_the_terminal_with_a_non_zero_exit(service):
    service.log_dir.parent.mkdir(parents=True, exist_ok=True)
    service.log_dir.write_text("a file where the log folder should be")
    result = service.command("start")
    assert result.returncode == 1
    assert "cannot open the log files" in result.stderr and str(service.log_dir) in result.stderr
    assert not service.pid_file.exists()


def test_an_error_after_detaching_is_reported_by_start(service):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        service.write_config(metrics_port=taken.getsockname()[1])
        result = service.command("start")
    finally:
        taken.close()
    assert result.returncode == 1
    assert "cannot serve metrics" in result.stderr and "metrics_port" in result.stderr
    eventually(lambda: not service.pid_file.exists(), "the pid file to go")


# --------------------------------------------------------------------------- stopping


SLOW_CALLBACK = """
with open(os.path.join(os.path.dirname(os.environ["SGED_TEST_RECORD"]), "busy"), "w") as f:
    f.write(str(event["id"]))
time.sleep(1.5)
"""


def test_stop_waits_for_the_event_in_hand_and_saves_its_position(site, service):
    service.add_plugin("slow", recorder_plugin(body=SLOW_CALLBACK))
    service.start()  # the foreground run writes the pid file too, so `stop` works on it
    service.wait_started()
    assert daemon_pid(service) == service.process.pid
    (event_id,) = new_events(site, 1)
    eventually(lambda: (service.root / "busy").exists(), "the callback to start")
    result = service.command("stop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert service.process.wait(10) == 0
    assert service.seen("slow") == [event_id]  # it finished the event in hand
    assert saved_positions(service)["slow"] == event_id
    assert "Received SIGTERM" in service.log()
    assert not service.pid_file.exists()


STUBBORN = """
import signal, sys, time
from pathlib import Path
from shotgun_events.service import ProcessLock
lock = ProcessLock(Path(sys.argv[1]), "pid file")
lock.acquire()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


def test_stop_kills_a_daemon_that_does_not_stop_within_the_timeout_and_says_so(service):
    stubborn = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, str(service.pid_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stubborn.stdout.readline().strip() == "ready"
        result = service.command("stop", "--timeout", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SIGKILL" in result.stderr and f"pid {stubborn.pid}" in result.stderr
        assert stubborn.wait(10) == -signal.SIGKILL
        assert not service.pid_file.exists()
    finally:
        if stubborn.poll() is None:
            stubborn.kill()


def test_a_stop_does_not_wait_out_a_hung_site_request(site, service):
    service.write_config(stop_timeout=1, site_timeout=60)
    service.start()
    service.wait_started()
    site.faults.slow(30, count=100)  # every site request now hangs for 30 s
    time.sleep(0.5)  # let the engine's next poll get stuck in one
    service.signal(signal.SIGTERM)
    assert service.process.wait(20) == 0  # no event was in hand: a clean stop
    assert "exiting without it. No event was in hand" in service.log()
    assert " - ERROR - " not in service.log()
    assert not service.pid_file.exists()
    site.faults.clear()


# --------------------------------------------------------------------------- signals


def test_a_log_file_that_cannot_be_reopened_on_sighup_is_an_error_and_sigterm_still_stops(
    site, daemon
):
    daemon.write_config(stop_timeout=3, log_rotation="external")
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.start()
    daemon.wait_started()
    main_log = daemon.log_dir / "shotgunEventDaemon"
    rotated = daemon.log_dir / "shotgunEventDaemon.1"
    main_log.rename(rotated)
    main_log.mkdir()  # logrotate left something the daemon cannot open there
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: "could not reopen" in rotated.read_text(), 10, "the reopen error")
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(15) == 0
    assert "Stopped; positions saved" in rotated.read_text()  # the old file kept the lines


def test_reload_sends_sighup_which_rescans_plugins_and_reopens_log_files(site, service):
    service.write_config(fetch_interval=60)  # no scan of the folder on its own for a minute
    service.add_plugin("alpha", recorder_plugin())
    service.start()
    service.wait_started()
    service.add_plugin("beta", recorder_plugin())
    rotated = service.main_log_file.with_name("rotated-by-logrotate")
    service.main_log_file.rename(rotated)
    result = service.command("reload")
    assert result.returncode == 0, result.stdout + result.stderr
    service.wait_for(lambda: "beta.py (1 callbacks)" in service.log(), 20, "beta to load")
    eventually(lambda: service.main_log_file.exists(), "a new main log file")
    assert "Received SIGHUP" in service.main_log_file.read_text()
    assert "Received SIGHUP" not in rotated.read_text()
    assert service.stop() == 0


LINGER_HELPER = """
import time


def linger():
    time.sleep(60)
"""
FORKING_CALLBACK = """
child = multiprocessing.get_context("fork").Process(target=_linger.linger, daemon=True)
child.start()
with open(os.path.join(os.path.dirname(os.environ["SGED_TEST_RECORD"]), "child"), "w") as f:
    f.write(str(child.pid))
"""


def test_sigterm_to_a_process_forked_by_a_plugin_ends_that_process_not_the_daemon(site, service):
    (service.plugin_dir / "_linger.py").write_text(LINGER_HELPER)
    service.add_plugin(
        "forker", recorder_plugin(before="import multiprocessing, _linger", body=FORKING_CALLBACK)
    )
    service.start()
    service.wait_started()
    (event_id,) = new_events(site, 1)
    service.wait_seen("forker", [event_id])
    child = int((service.root / "child").read_text())
    os.kill(child, signal.SIGTERM)
    eventually(lambda: not Path(f"/proc/{child}").exists() or _is_zombie(child), "the child to end")
    time.sleep(0.5)
    assert service.alive() and "Received SIGTERM" not in service.log()
    assert service.stop() == 0


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


# --------------------------------------------------------------------------- the status file


LEAKY_FAILURE = f"""
raise ValueError("cannot log in with {PLUGIN_SCRIPT[1]} nor {ENGINE_SCRIPT[1]}")
"""


def test_status_shows_why_a_plugin_stopped_and_the_status_file_holds_no_secret(site, service):
    service.add_plugin("leaky", recorder_plugin(body=LEAKY_FAILURE))
    service.add_plugin("fine", recorder_plugin())
    service.start()
    service.wait_started()
    (event_id,) = new_events(site, 1)
    service.wait_seen("fine", [event_id])
    path = service.state_file.with_name("events.id.status.json")

    def leaky_is_reported():
        plugins = {p["name"]: p for p in status_file(service)["plugins"]}
        return plugins.get("leaky", {}).get("active") is False

    eventually(leaky_is_reported, "the failure in the status file")
    text = path.read_text()
    assert PLUGIN_SCRIPT[1] not in text and ENGINE_SCRIPT[1] not in text
    assert "ValueError: cannot log in with ********" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    report = service.command("status")
    assert report.returncode == 0
    assert PLUGIN_SCRIPT[1] not in report.stdout and ENGINE_SCRIPT[1] not in report.stdout
    leaky = report.stdout[report.stdout.index("leaky") :]
    assert (
        "INACTIVE" in leaky
        and f"stopped on an error in leaky.callback at event {event_id}" in leaky
    )
    assert "last error: ValueError: cannot log in with ********" in leaky
    assert service.stop() == 0
    assert json.loads(path.read_text())["state"] == "stopped"


# --------------------------------------------------------------------------- metrics and alerts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_daemon_serves_healthz_and_metrics_when_a_port_is_configured(site, service):
    port = free_port()
    service.write_config(metrics_port=port)
    service.add_plugin("alpha", recorder_plugin())
    service.start()
    service.wait_started()
    ids = new_events(site, 3)
    service.wait_seen("alpha", ids)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        health = json.loads(answer.read())
    assert health["healthy"] is True and "alpha" in health["plugins"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'plugin="alpha"' in metrics and "shotgun_events_" in metrics
    assert service.stop() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Inbox(Message):
        def __init__(self):
            super().__init__()
            self.messages = []

        def handle_message(self, message):
            self.messages.append(message)

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox.messages
    finally:
        controller.stop()


ALWAYS_FAILS = 'raise RuntimeError("the pipeline is down")'


def test_plugin_errors_are_emailed_once_and_repeats_are_counted_at_stop(site, service, smtp_server):
    controller, inbox = smtp_server
    service.add_plugin("flaky", recorder_plugin(body=ALWAYS_FAILS, stop_on_error=False))
    service.config_path.write_text(
        service.config_path.read_text()
        + textwrap.dedent(
            f"""
            [emails]
            server: 127.0.0.1
            port: {controller.port}
            from: daemon@studio.test
            to: pipeline@studio.test
            subject: [events]
            rate_limit_window: 600
            """
        )
    )
    service.start()
    service.wait_started()
    new_events(site, 5)
    service.wait_for(lambda: service.log().count("failed on event") == 5, 20, "five failures")
    eventually(lambda: len(inbox) >= 1, "the first email")
    time.sleep(0.5)
    assert len(inbox) == 1  # the four repeats are held back by the rate limit
    first = inbox[0]
    assert first["To"] == "pipeline@studio.test" and "plugin.flaky" in first["Subject"]
    assert "the pipeline is down" in first.get_payload(decode=True).decode()
    assert service.stop() == 0
    eventually(lambda: len(inbox) == 2, "the summary sent at stop")
    summary = inbox[1].get_payload(decode=True).decode()
    assert "4 x since" in summary and "plugin.flaky" in summary


def test_start_warns_on_the_terminal_about_a_missing_plugin_folder(service):
    service.plugin_dir = service.root / "pluigns"  # a typo in paths
    service.write_config()
    result = service.command("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: plugin folder {service.plugin_dir} is not there (yet)" in result.stderr
    assert service.command("stop").returncode == 0


def test_a_password_in_the_site_url_never_shows_in_status_or_logs(tmp_path, site):
    """https://user:password@site: HTTP basic authentication in front of the site."""
    from harness import Daemon

    password = "Sup3r-secret-pw"
    runner = Daemon(tmp_path, site.url.replace("://", f"://studio:{password}@", 1))
    runner.write_config(status_interval=0.2)
    runner.add_plugin("alpha", recorder_plugin())
    runner.start()
    try:
        runner.wait_started()
        status_file = Path(f"{runner.state_file}.status.json")
        runner.wait_for(status_file.exists, 20, "the status file")
        report = runner.command("status")
        assert report.returncode == 0, report.stdout + report.stderr
        assert "studio:********@" in report.stdout
        for shown in (status_file.read_text(), report.stdout, report.stderr, runner.log()):
            assert password not in shown
    finally:
        runner.stop()


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root to make a folder of another user, and setpriv to act as an operator",
)
def test_status_by_an_operator_who_cannot_enter_the_state_folder_says_so(tmp_path):
    """The daemon's folder is 0700 (docs/service.md); a monitoring user runs `status`."""
    tmp_path.chmod(0o755)
    private = tmp_path / "state"
    private.mkdir(mode=0o700)
    os.chown(private, 65534, 65534)  # the daemon's user
    (tmp_path / "plugins").mkdir()
    config = tmp_path / "shotgunEventDaemon.conf"
    config.write_text(
        "[daemon]\n"
        f"pidFile: {tmp_path}/daemon.pid\n"
        f"eventIdFile: {private}/events.id\n"
        f"logPath: {tmp_path}/logs\n"
        "[shotgun]\nserver: https://example.shotgunstudio.com\nname: daemon\n"
        "key: abcdef0123456789\n"
        f"[plugins]\npaths: {tmp_path}/plugins\n"
    )
    # Root without the capabilities that ignore file permissions: as any other user.
    as_operator = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    command = [sys.executable, "-m", "shotgun_events", "status", "--config", str(config)]
    result = subprocess.run(
        [*as_operator, *command], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 4, result.stdout + result.stderr
    assert "permission denied" in (result.stdout + result.stderr).lower()


# --------------------------------------------------------------------------- contrib


def test_the_init_d_script_starts_reports_and_stops_the_daemon(service):
    script = REPO / "contrib" / "init.d" / "shotgun-events"
    env = dict(os.environ)
    env.update(
        DAEMON=str(Path(sys.executable).with_name("shotgunEventDaemon")),
        CONFIG=str(service.config_path),
        DAEMON_USER="",
        RUN_DIR=str(service.config_path.parent / "run"),
        SGED_TEST_RECORD=str(service.record_file),
    )

    def init_d(action):
        return subprocess.run(
            ["sh", str(script), action], capture_output=True, text=True, timeout=60, env=env
        )

    assert init_d("status").returncode == 3
    assert init_d("start").returncode == 0
    # As root, start makes the pid file's folder (/run is emptied at boot).
    assert (service.config_path.parent / "run").is_dir() == (os.getuid() == 0)
    assert is_running(service) and init_d("status").returncode == 0
    assert init_d("reload").returncode == 0
    assert init_d("stop").returncode == 0
    assert not is_running(service) and init_d("status").returncode == 3
