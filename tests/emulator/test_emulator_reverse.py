"""Reverse link fields through the real client: both sides in step, filters, and their events.

What a site writes for the other side of a link was recorded from real sites by the
sgcache/sgevents projects (vfxetc): setting ``Task.entity`` logs a ``Shotgun_Shot_Change`` on
``tasks`` whose meta has ``added``/``removed``, ``actual_attribute_changed: "Task.entity"``,
``original_event_log_entry_id`` (the Task change's event) and, as a site writes it,
``entity_type``/``entity_id``/``field_data_type`` of the Task and its field.
"""

from __future__ import annotations

import json

import pytest
import shotgun_api3

from shotgun_events.emulator import Emulator


def link(entity, name):
    return {"type": entity["type"], "id": entity["id"], "name": name}


def field(sg, entity, name):
    return sg.find_one(entity["type"], [["id", "is", entity["id"]]], [name])[name]


def ids(links):
    return sorted((item["type"], item["id"]) for item in links)


@pytest.fixture
def sequences(sg, project):
    return [sg.create("Sequence", {"code": code, "project": project}) for code in ("SQA", "SQB")]


# --------------------------------------------------------------------------- both sides


def test_setting_a_shots_sequence_lists_it_in_the_sequence(sg, project, sequences):
    first, second = sequences
    shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_sequence": first})
    assert field(sg, first, "shots") == [link(shot, "sh010")]
    sg.update("Shot", shot["id"], {"sg_sequence": second})
    assert field(sg, first, "shots") == []
    assert field(sg, second, "shots") == [link(shot, "sh010")]
    sg.update("Shot", shot["id"], {"sg_sequence": None})
    assert field(sg, second, "shots") == []


def test_setting_a_sequences_shots_moves_each_shot_from_its_old_sequence(sg, project, sequences):
    first, second = sequences
    moved = sg.create("Shot", {"code": "moved", "project": project, "sg_sequence": first})
    kept = sg.create("Shot", {"code": "kept", "project": project, "sg_sequence": first})
    loose = sg.create("Shot", {"code": "loose", "project": project})
    sg.update("Sequence", second["id"], {"shots": [moved, loose]})
    assert field(sg, moved, "sg_sequence")["id"] == second["id"]
    assert field(sg, loose, "sg_sequence")["id"] == second["id"]
    assert field(sg, first, "shots") == [link(kept, "kept")]
    sg.update("Sequence", second["id"], {"shots": [moved]}, multi_entity_update_modes={})
    assert field(sg, loose, "sg_sequence") is None


def test_a_tasks_link_fills_the_tasks_of_its_shot_or_asset(sg, project):
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    asset = sg.create("Asset", {"code": "hero", "project": project})
    task = sg.create("Task", {"content": "anim", "project": project, "entity": shot})
    assert field(sg, shot, "tasks") == [link(task, "anim")]
    sg.update("Task", task["id"], {"entity": asset})
    assert (field(sg, shot, "tasks"), field(sg, asset, "tasks")) == ([], [link(task, "anim")])


def test_upstream_and_downstream_tasks_follow_every_update_mode(sg, project):
    layout, anim, light = (
        sg.create("Task", {"content": name, "project": project})
        for name in ("layout", "anim", "light")
    )
    sg.update("Task", anim["id"], {"upstream_tasks": [layout]})
    assert field(sg, layout, "downstream_tasks") == [link(anim, "anim")]
    sg.update(
        "Task",
        light["id"],
        {"upstream_tasks": [layout, anim]},
        multi_entity_update_modes={"upstream_tasks": "add"},
    )
    assert ids(field(sg, layout, "downstream_tasks")) == ids([anim, light])
    sg.update(
        "Task",
        light["id"],
        {"upstream_tasks": [layout]},
        multi_entity_update_modes={"upstream_tasks": "remove"},
    )
    assert ids(field(sg, layout, "downstream_tasks")) == ids([anim])
    assert field(sg, anim, "downstream_tasks") == [link(light, "light")]
    sg.update("Task", layout["id"], {"downstream_tasks": []})  # from the other side
    assert field(sg, anim, "upstream_tasks") == []


def test_multi_entity_pairs_stay_equal_on_both_sides(sg, project):
    assets = [sg.create("Asset", {"code": code, "project": project}) for code in ("a", "b", "c")]
    shot = sg.create("Shot", {"code": "sh", "project": project, "assets": assets[:2]})
    assert [field(sg, a, "shots") for a in assets] == [[link(shot, "sh")]] * 2 + [[]]
    sg.update("Shot", shot["id"], {"assets": [assets[2]]}, {"assets": "add"})
    sg.update("Shot", shot["id"], {"assets": [assets[0]]}, {"assets": "remove"})
    assert [bool(field(sg, a, "shots")) for a in assets] == [False, True, True]
    sg.update("Asset", assets[0]["id"], {"shots": [shot]})
    assert ids(field(sg, shot, "assets")) == ids(assets)


def test_notes_versions_and_files_are_listed_on_what_they_link(sg, project):
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    task = sg.create("Task", {"content": "comp", "project": project, "entity": shot})
    version = sg.create(
        "Version", {"code": "v001", "project": project, "entity": shot, "sg_task": task}
    )
    note = sg.create(
        "Note",
        {"subject": "fix", "project": project, "note_links": [version, shot], "tasks": [task]},
    )
    assert field(sg, shot, "sg_versions") == [link(version, "v001")]
    assert field(sg, task, "sg_versions") == [link(version, "v001")]
    for target in (shot, version, task):
        assert field(sg, target, "notes") == [link(note, "fix")]
    published = sg.create("PublishedFile", {"code": "p", "project": project, "version": version})
    assert field(sg, version, "published_files") == [link(published, "p")]
    playlist = sg.create("Playlist", {"code": "dailies", "project": project, "versions": [version]})
    assert field(sg, version, "playlists") == [link(playlist, "dailies")]


def test_the_other_side_gets_updated_at_and_updated_by(emulator, sg, project, sequences):
    shot = sg.create("Shot", {"code": "sh", "project": project})
    artist = emulator.as_user("alice")
    artist.update("Shot", shot["id"], {"sg_sequence": sequences[0]})
    sequence = sg.find_one("Sequence", [["id", "is", sequences[0]["id"]]], ["updated_by"])
    assert sequence["updated_by"]["name"] == "alice"


# --------------------------------------------------------------------------- filters


def test_filters_on_reverse_fields_find_the_linked_entities(sg, project, sequences):
    shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_sequence": sequences[0]})
    other = sg.create("Shot", {"code": "sh020", "project": project})
    task = sg.create("Task", {"content": "anim", "project": project, "entity": shot})
    assert [s["id"] for s in sg.find("Shot", [["tasks", "is", task]])] == [shot["id"]]
    assert [s["id"] for s in sg.find("Shot", [["tasks", "is", None]])] == [other["id"]]
    found = sg.find("Sequence", [["shots", "name_contains", "010"]])
    assert [s["id"] for s in found] == [sequences[0]["id"]]
    assert sg.find("Sequence", [["shots", "in", [other]]]) == []


# --------------------------------------------------------------------------- retire, revive


def test_a_retired_entity_leaves_the_other_side_and_comes_back_when_revived(
    emulator, sg, project, events_after
):
    shot = sg.create("Shot", {"code": "sh", "project": project})
    first = sg.create("Task", {"content": "one", "project": project, "entity": shot})
    second = sg.create("Task", {"content": "two", "project": project, "entity": shot})
    start = emulator.latest_event_id()
    sg.delete("Task", first["id"])
    assert field(sg, shot, "tasks") == [link(second, "two")]
    assert sg.find("Shot", [["tasks", "is", first]]) == []
    events = [(e["event_type"], e["attribute_name"]) for e in events_after(start)]
    assert events == [("Shotgun_Task_Retirement", None), ("Shotgun_Task_Change", "retirement_date")]
    sg.update("Shot", shot["id"], {"tasks": [second]})  # what a reader sees: no change
    assert emulator.latest_event_id() == start + 2
    sg.revive("Task", first["id"])
    assert ids(field(sg, shot, "tasks")) == ids([first, second])
    assert field(sg, first, "entity")["id"] == shot["id"]


def test_a_link_changed_while_retired_stays_consistent_after_revival(sg, project, sequences):
    first, second = sequences
    shot = sg.create("Shot", {"code": "sh", "project": project, "sg_sequence": first})
    sg.delete("Sequence", first["id"])
    assert field(sg, shot, "sg_sequence") is None
    sg.update("Shot", shot["id"], {"sg_sequence": second})
    sg.revive("Sequence", first["id"])
    assert field(sg, first, "shots") == []
    assert field(sg, second, "shots") == [link(shot, "sh")]


def test_a_failed_batch_leaves_neither_side_changed(emulator, sg, project, sequences):
    shot = sg.create("Shot", {"code": "sh", "project": project})
    start = emulator.latest_event_id()
    with pytest.raises(shotgun_api3.Fault):
        sg.batch(
            [
                {
                    "request_type": "update",
                    "entity_type": "Shot",
                    "entity_id": shot["id"],
                    "data": {"sg_sequence": sequences[0]},
                },
                {"request_type": "update", "entity_type": "Shot", "entity_id": 999, "data": {}},
            ]
        )
    assert field(sg, sequences[0], "shots") == []
    assert emulator.latest_event_id() == start


# --------------------------------------------------------------------------- events


def test_the_other_side_of_a_create_is_logged_as_a_site_logs_it(
    emulator, sg, project, events_after
):
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    start = emulator.latest_event_id()
    task = sg.create("Task", {"content": "anim", "project": project, "entity": shot})
    events = events_after(start)
    kinds = [(e["event_type"], e["attribute_name"]) for e in events]
    at = kinds.index(("Shotgun_Task_Change", "entity"))
    assert kinds[at + 1] == ("Shotgun_Shot_Change", "tasks")
    cause, backref = events[at], events[at + 1]
    assert backref["entity"] == link(shot, "sh010")
    assert backref["project"]["id"] == project["id"]
    assert backref["meta"] == {
        "type": "attribute_change",
        "attribute_name": "tasks",
        "entity_type": "Task",
        "entity_id": task["id"],
        "field_data_type": "entity",
        "added": [link(task, "anim")],
        "removed": [],
        "actual_attribute_changed": "Task.entity",
        "original_event_log_entry_id": cause["id"],
        "in_create": True,
    }


def test_moving_a_link_logs_both_old_and_new_sides(emulator, sg, project, sequences, events_after):
    first, second = sequences
    shot = sg.create("Shot", {"code": "sh", "project": project, "sg_sequence": first})
    start = emulator.latest_event_id()
    sg.update("Shot", shot["id"], {"sg_sequence": second})
    cause, *others = events_after(start)
    assert (cause["event_type"], cause["attribute_name"]) == ("Shotgun_Shot_Change", "sg_sequence")
    by_sequence = {e["entity"]["id"]: e["meta"] for e in others}
    assert set(by_sequence) == {first["id"], second["id"]}
    assert by_sequence[first["id"]]["removed"] == [link(shot, "sh")]
    assert by_sequence[second["id"]]["added"] == [link(shot, "sh")]
    for meta in by_sequence.values():
        assert meta["original_event_log_entry_id"] == cause["id"]
        assert "in_create" not in meta


def test_a_single_entity_other_side_logs_old_and_new_values(
    emulator, sg, project, sequences, events_after
):
    first, second = sequences
    shot = sg.create("Shot", {"code": "sh", "project": project, "sg_sequence": first})
    start = emulator.latest_event_id()
    sg.update("Sequence", second["id"], {"shots": [shot]})
    events = events_after(start)
    shot_side = [e for e in events if e["event_type"] == "Shotgun_Shot_Change"]
    (event,) = shot_side
    assert event["attribute_name"] == "sg_sequence"
    assert event["meta"]["old_value"] == link(first, "SQA")
    assert event["meta"]["new_value"] == link(second, "SQB")
    assert event["meta"]["actual_attribute_changed"] == "Sequence.shots"
    left = [e for e in events if e["entity"] == link(first, "SQA")]
    assert [e["meta"]["removed"] for e in left] == [[link(shot, "sh")]]


def test_events_of_the_other_side_come_right_after_their_cause(emulator, sg, project):
    first = sg.create("Shot", {"code": "a", "project": project})
    second = sg.create("Shot", {"code": "b", "project": project})
    start = emulator.latest_event_id()
    sg.create("Asset", {"code": "hero", "project": project, "shots": [first, second]})
    events = sg.find(
        "EventLogEntry", [["id", "greater_than", start]], ["event_type", "attribute_name", "meta"]
    )
    assert [(e["event_type"], e["attribute_name"]) for e in events] == [
        ("Shotgun_Asset_New", None),
        ("Shotgun_Asset_Change", "code"),
        ("Shotgun_Asset_Change", "project"),
        ("Shotgun_Asset_Change", "shots"),
        ("Shotgun_Shot_Change", "assets"),
        ("Shotgun_Shot_Change", "assets"),
    ]


# --------------------------------------------------------------------------- --schema


def emulator_with(tmp_path, definition):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(definition))
    return Emulator(scripts={"s": "k"}, schema_path=str(path))


def test_a_custom_link_field_may_name_its_reverse_field(tmp_path):
    definition = {
        "CustomEntity01": {"display_name": "Sprint", "fields": {"code": "text"}},
        "Shot": {
            "fields": {
                "sg_sprint": {
                    "data_type": "entity",
                    "valid_types": ["CustomEntity01"],
                    "reverse": "sg_shots",
                }
            }
        },
    }
    with emulator_with(tmp_path, definition) as emulator:
        sg = emulator.client()
        project = sg.create("Project", {"name": "P"})
        sprint = sg.create("CustomEntity01", {"code": "s1", "project": project})
        shot = sg.create("Shot", {"code": "sh", "project": project, "sg_sprint": sprint})
        assert field(sg, sprint, "sg_shots") == [link(shot, "sh")]
        schema = sg.schema_field_read("CustomEntity01", "sg_shots")["sg_shots"]
        assert schema["data_type"]["value"] == "multi_entity"
        assert schema["properties"]["valid_types"]["value"] == ["Shot"]
        sg.update("CustomEntity01", sprint["id"], {"sg_shots": []})
        assert field(sg, shot, "sg_sprint") is None


def test_a_reverse_may_pair_two_declared_multi_entity_fields(tmp_path):
    definition = {
        "Shot": {
            "fields": {
                "sg_plates": {
                    "data_type": "multi_entity",
                    "valid_types": ["Version"],
                    "reverse": {"Version": "sg_plate_shots"},
                }
            }
        },
        "Version": {
            "fields": {"sg_plate_shots": {"data_type": "multi_entity", "valid_types": ["Shot"]}}
        },
    }
    with emulator_with(tmp_path, definition) as emulator:
        sg = emulator.client()
        project = sg.create("Project", {"name": "P"})
        version = sg.create("Version", {"code": "plate", "project": project})
        shot = sg.create("Shot", {"code": "sh", "project": project})
        sg.update("Version", version["id"], {"sg_plate_shots": [shot]})
        assert field(sg, shot, "sg_plates") == [link(version, "plate")]


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"sg_x": {"data_type": "text", "reverse": "sg_y"}}, "only entity and multi_entity"),
        (
            {"sg_x": {"data_type": "entity", "valid_types": ["Asset"], "reverse": {"Shot": "y"}}},
            "cannot link to",
        ),
        (
            {"sg_x": {"data_type": "entity", "valid_types": ["Asset"], "reverse": "code"}},
            "Asset.code cannot be its reverse field",
        ),
        ({"sg_sequence": {"reverse": "assets"}}, "Sequence.assets cannot be its reverse field"),
    ],
)
def test_a_bad_reverse_is_an_error_naming_the_file_and_field(tmp_path, fields, problem):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"Shot": {"fields": fields}}))
    with pytest.raises(ValueError, match=r"schema\.json: .*" + problem):
        Emulator(schema_path=str(path))
