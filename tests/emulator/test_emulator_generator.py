"""The activity generator: a seeded demo project and realistic artist changes."""

from __future__ import annotations

import time

from shotgun_events.emulator.generator import STATUS_FLOW, ActivityGenerator


def test_seeding_creates_a_demo_project_with_shots_tasks_and_artists(emulator, sg):
    generator = ActivityGenerator(emulator.site, rate=100, seed=1)
    demo = generator.seed_project()
    project = sg.find_one("Project", [["name", "is", "Demo Project"]], ["name"])
    assert project["id"] == demo.project["id"]
    shots = sg.find("Shot", [["project", "is", project]], ["code", "sg_sequence"])
    assert len(shots) == 12 and all(shot["sg_sequence"] for shot in shots)
    tasks = sg.find("Task", [["project", "is", project]], ["step", "entity", "task_assignees"])
    assert len(tasks) == 48
    assert all(task["task_assignees"][0]["type"] == "HumanUser" for task in tasks)
    assert {task["step"]["name"] for task in tasks} == {
        "Layout",
        "Animation",
        "Lighting",
        "Compositing",
    }


def test_a_second_generator_reuses_the_demo_project(emulator, sg):
    ActivityGenerator(emulator.site, rate=100, seed=1).seed_project()
    again = ActivityGenerator(emulator.site, rate=100, seed=2).seed_project()
    assert len(sg.find("Project", [])) == 1
    assert len(again.tasks) == 48


def test_activity_is_task_status_walks_versions_and_notes_by_artists(emulator, sg, events_after):
    generator = ActivityGenerator(emulator.site, rate=1000, seed=7)
    generator.seed_project()
    start = emulator.latest_event_id()
    written = sum(generator.step() for _ in range(60))
    events = events_after(start)
    assert len(events) == written == generator.events_written
    assert all(event["user"]["type"] == "HumanUser" for event in events)
    status_changes = [
        e["meta"]
        for e in events
        if e["event_type"] == "Shotgun_Task_Change" and not e["meta"].get("in_create")
    ]
    assert status_changes
    for meta in status_changes:
        old, new = meta["old_value"], meta["new_value"]
        assert (old, new) == ("fin", "ip") or STATUS_FLOW.index(new) == STATUS_FLOW.index(old) + 1
    types = {event["event_type"] for event in events}
    assert {"Shotgun_Version_New", "Shotgun_Note_New"} <= types
    version = sg.find_one("Version", [], ["sg_task", "entity", "user", "project"])
    assert version["sg_task"]["type"] == "Task"
    assert version["entity"]["type"] == "Shot"
    note = sg.find_one("Note", [], ["note_links"])
    assert note["note_links"][0]["type"] == "Version"


def test_generator_thread_writes_events_until_stopped(emulator, events_after):
    generator = emulator.start_generator(rate=500, seed=4)
    deadline = time.monotonic() + 10
    while generator.events_written < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    emulator.stop_generator()
    assert generator.events_written >= 20
    by_artists = events_after(0, ["user", "type_is", "HumanUser"])
    assert len(by_artists) >= 20
    stopped_at = emulator.latest_event_id()
    time.sleep(0.1)
    assert emulator.latest_event_id() == stopped_at
