"""The example plugins, run by the real daemon against the emulator, as a studio would."""

from __future__ import annotations

import datetime
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from harness import Daemon

EXAMPLES = Path(__file__).resolve().parents[1] / "examplePlugins"
EXAMPLE_SCRIPT = ("shotgunEventDaemon_examples", "example-key-5555555555")


@pytest.fixture
def examples(tmp_path, site):
    """A daemon running the example plugins (copied, as a studio would deploy them)."""
    site.add_script(*EXAMPLE_SCRIPT)
    folder = tmp_path / "examplePlugins"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    runner = Daemon(
        tmp_path,
        site.url,
        plugin_dir=folder,
        env={"SGED_EXAMPLE_SCRIPT": EXAMPLE_SCRIPT[0], "SGED_EXAMPLE_KEY": EXAMPLE_SCRIPT[1]},
    )
    runner.start()
    runner.wait_started()
    plugins = [p for p in folder.glob("*.py") if not p.name.startswith("_")]
    runner.wait_for(
        lambda: runner.log().count("Loaded plugin") == len(plugins), 20, "the plugins to load"
    )
    try:
        yield runner
    finally:
        if runner.alive():
            runner.stop()


@pytest.fixture
def shot(site):
    """A project with one shot and two tasks, all waiting."""
    sg = site.client()
    project = sg.create("Project", {"name": "Examples"})
    shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_status_list": "wtg"})
    tasks = [
        sg.create(
            "Task",
            {"content": name, "entity": shot, "project": project, "sg_status_list": "wtg"},
        )
        for name in ("anim", "comp")
    ]
    return sg, project, shot, tasks


def field(sg, entity, name):
    return sg.find_one(entity["type"], [["id", "is", entity["id"]]], [name])[name]


def test_log_args_logs_every_event(site, examples, shot):
    newest = site.latest_event_id()
    examples.wait_for(
        lambda: f"#{newest} " in (examples.log_dir / "plugin.logArgs").read_text(),
        20,
        "logArgs to log the newest event",
    )


def test_datestamp_stamps_the_start_date_once(site, examples, shot):
    sg, _, _, (task, _) = shot
    sg.update("Task", task["id"], {"sg_status_list": "ip"})
    today = datetime.date.today().isoformat()
    examples.wait_for(lambda: field(sg, task, "start_date") == today, 20, "the start date")
    sg.update("Task", task["id"], {"start_date": "2020-01-01", "sg_status_list": "rev"})
    sg.update("Task", task["id"], {"sg_status_list": "ip"})
    examples.wait_for(
        lambda: (examples.log_dir / "plugin.datestamp").read_text().count("already has") >= 1,
        20,
        "the second ip to leave the date alone",
    )
    assert field(sg, task, "start_date") == "2020-01-01"


def test_task_statuses_roll_up_to_the_shot(examples, shot):
    sg, _, shot_entity, (anim, comp) = shot
    sg.update("Task", anim["id"], {"sg_status_list": "ip"})
    examples.wait_for(lambda: field(sg, shot_entity, "sg_status_list") == "ip", 20, "shot ip")
    sg.update("Task", anim["id"], {"sg_status_list": "fin"})
    sg.update("Task", comp["id"], {"sg_status_list": "fin"})
    examples.wait_for(lambda: field(sg, shot_entity, "sg_status_list") == "fin", 20, "shot fin")


def test_a_new_version_gets_a_note_linking_it_and_its_shot(examples, shot):
    sg, project, shot_entity, (anim, _) = shot
    version = sg.create(
        "Version",
        {"code": "sh010_anim_v001", "project": project, "entity": shot_entity, "sg_task": anim},
    )

    def note():
        return sg.find_one(
            "Note", [["note_links", "is", version]], ["subject", "note_links", "project"]
        )

    examples.wait_for(lambda: note() is not None, 20, "the note")
    found = note()
    assert found["subject"] == "New version: sh010_anim_v001"
    assert {(link["type"], link["id"]) for link in found["note_links"]} == {
        ("Version", version["id"]),
        ("Shot", shot_entity["id"]),
    }
    assert found["project"]["id"] == project["id"]


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.mark.parametrize(
    "statuses, shot_status",
    [
        (["fin", "fin"], "fin"),
        (["fin", "omt"], "fin"),
        (["wtg", "ip"], "ip"),
        (["rev", "fin"], "ip"),
        (["wtg", "wtg"], "wtg"),
        (["wtg", "rdy"], "rdy"),
        ([], None),
    ],
)
def test_shot_status_rule(statuses, shot_status):
    assert _load_example("task_status_rollup").shot_status_for(statuses) == shot_status
