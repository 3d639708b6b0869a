"""The `sg_site` pytest fixture that plugin authors use to test their plugins offline."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import shotgun_api3


def test_sg_site_yields_a_running_site_and_a_connected_client(sg_site):
    assert sg_site.url == sg_site.emulator.url
    assert isinstance(sg_site.sg, shotgun_api3.Shotgun)
    again = shotgun_api3.Shotgun(sg_site.url, sg_site.script_name, sg_site.script_key)
    assert again.find("Project", []) == []


def test_sg_site_runs_a_callback_against_a_real_event(sg_site):
    project = sg_site.sg.create("Project", {"name": "Plugin Test"})
    shot = sg_site.sg.create("Shot", {"code": "sh010", "project": project})
    start = sg_site.emulator.latest_event_id()
    sg_site.sg.update("Shot", shot["id"], {"sg_status_list": "ip"})
    (event,) = sg_site.events(after_id=start, event_types=["Shotgun_Shot_Change"])

    def flag_on_hold(sg, logger, event, args):
        """A plugin callback: when a shot goes in progress, put a note on it."""
        if event["meta"]["new_value"] == args["status"]:
            link = {"type": "Shot", "id": event["meta"]["entity_id"]}
            sg.create(
                "Note", {"subject": "started", "project": event["project"], "note_links": [link]}
            )

    sg_site.run_callback(flag_on_hold, event, args={"status": "ip"})
    last = sg_site.last_event()  # the site lists the note on the shot too: Shot.notes
    assert (last["event_type"], last["attribute_name"]) == ("Shotgun_Shot_Change", "notes")
    note = sg_site.sg.find_one("Note", [["note_links", "is", shot]], ["subject"])
    assert note["subject"] == "started"


def test_sg_site_reaches_a_plugin_authors_own_test_suite(tmp_path):
    """Installed as a pytest plugin: a test file elsewhere gets `sg_site` with no conftest."""
    test_file = tmp_path / "test_my_plugin.py"
    test_file.write_text(
        textwrap.dedent(
            """
            def test_uses_the_site(sg_site):
                sg_site.sg.create("Project", {"name": "Elsewhere"})
                assert sg_site.last_event()["event_type"] == "Shotgun_Project_Change"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
