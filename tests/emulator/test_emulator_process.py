"""The emulator as a command in its own process, and a site kept in SQLite across restarts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import shotgun_api3

from shotgun_events.emulator import Emulator, RemoteEmulator


def start_command(*args):
    """`python -m shotgun_events.emulator ARGS`; returns the process and its URL (first line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shotgun_events.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        pytest.fail(f"no URL on stdout: {process.stderr.read()}")
    return process, url


def stop_command(process, signum=signal.SIGTERM):
    process.send_signal(signum)
    try:
        return process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()


def test_site_survives_a_restart_with_its_data_file(tmp_path):
    data = str(tmp_path / "site.sqlite")
    with Emulator(scripts={"daemon": "k1"}, data_path=data) as first:
        sg = first.client()
        project = sg.create("Project", {"name": "Kept"})
        shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_status_list": "ip"})
        retired = sg.create("Shot", {"code": "gone", "project": project})
        sg.delete("Shot", retired["id"])
        first.insert_events(1000)
        gap = first.reserve_event_id()  # never committed: must stay a gap
        last_before = first.latest_event_id()
    with Emulator(data_path=data) as second:  # no scripts given: the stored ones still work
        sg = second.client("daemon")
        found = sg.find("Shot", [], ["code", "sg_status_list", "project"])
        assert found == [
            {
                "type": "Shot",
                "id": shot["id"],
                "code": "sh010",
                "sg_status_list": "ip",
                "project": {"type": "Project", "id": project["id"], "name": "Kept"},
            }
        ]
        assert second.latest_event_id() == last_before
        newer = sg.create("Shot", {"code": "sh020", "project": project})
        assert newer["id"] > retired["id"]
        assert second.latest_event_id() > gap.id
        assert sg.find("EventLogEntry", [["id", "is", gap.id]]) == []
        assert len(sg.find("EventLogEntry", [["id", "greater_than", 0]], ["id"])) > 1000


def test_command_prints_its_url_first_and_stops_cleanly_on_sigterm(tmp_path):
    data = str(tmp_path / "cmd.sqlite")
    process, url = start_command("--port", "0", "--script", "daemon:k1", "--data", data)
    try:
        assert url.startswith("http://127.0.0.1:")
        sg = shotgun_api3.Shotgun(url, "daemon", "k1")
        sg.create("Project", {"name": "From the command"})
        RemoteEmulator(url).insert_events(5)
    finally:
        assert stop_command(process) == 0
    process, url = start_command("--data", data)
    try:
        sg = shotgun_api3.Shotgun(url, "daemon", "k1")
        assert sg.find_one("Project", [], ["name"])["name"] == "From the command"
    finally:
        assert stop_command(process, signal.SIGINT) == 0


def test_command_without_scripts_offers_the_default_script():
    process, url = start_command()
    try:
        assert shotgun_api3.Shotgun(url, "emulator", "emulator").find("Shot", []) == []
    finally:
        assert stop_command(process) == 0


def test_command_generates_activity_at_a_rate():
    process, url = start_command("--script", "daemon:k1", "--generate", "200", "--seed", "3")
    try:
        sg = shotgun_api3.Shotgun(url, "daemon", "k1")
        deadline = time.monotonic() + 15
        changes = []
        while time.monotonic() < deadline and not changes:
            filters = [
                ["event_type", "is", "Shotgun_Task_Change"],
                ["attribute_name", "is", "sg_status_list"],
            ]
            changes = sg.find("EventLogEntry", filters, ["user", "meta"])
            changes = [event for event in changes if not event["meta"].get("in_create")]
            time.sleep(0.1)
        assert changes, "no task status change was generated"
        assert changes[0]["user"]["type"] == "HumanUser"
    finally:
        assert stop_command(process) == 0


def test_command_rejects_a_malformed_script_argument():
    result = subprocess.run(
        [sys.executable, "-m", "shotgun_events.emulator", "--script", "no-key"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "expected NAME:KEY" in result.stderr
