"""summarize and the schema_* methods through the real client, and extending the schema."""

from __future__ import annotations

import json

import pytest
import shotgun_api3

from shotgun_events.emulator import Emulator


@pytest.fixture
def cut_shots(sg, project):
    seq_a = sg.create("Sequence", {"code": "SQA", "project": project})
    seq_b = sg.create("Sequence", {"code": "SQB", "project": project})
    for code, sequence, cut_in in [("a1", seq_a, 10), ("a2", seq_a, 30), ("b1", seq_b, 5)]:
        sg.create(
            "Shot", {"code": code, "project": project, "sg_sequence": sequence, "sg_cut_in": cut_in}
        )
    sg.create("Shot", {"code": "empty", "project": project})
    return seq_a, seq_b


def test_summarize_counts_sums_and_extremes(sg, cut_shots):
    result = sg.summarize(
        "Shot",
        [],
        [
            {"field": "id", "type": "count"},
            {"field": "sg_cut_in", "type": "sum"},
            {"field": "sg_cut_in", "type": "maximum"},
        ],
    )
    assert result == {"summaries": {"id": 4, "sg_cut_in": 30}, "groups": []}
    low = sg.summarize(
        "Shot", [["sg_cut_in", "less_than", 20]], [{"field": "sg_cut_in", "type": "minimum"}]
    )
    assert low["summaries"] == {"sg_cut_in": 5}
    total = sg.summarize("Shot", [], [{"field": "sg_cut_in", "type": "sum"}])
    assert total["summaries"] == {"sg_cut_in": 45}


def test_summarize_groups_by_an_entity_link(sg, cut_shots):
    seq_a, _ = cut_shots
    result = sg.summarize(
        "Shot",
        [["sg_sequence", "is_not", None]],
        [{"field": "sg_cut_in", "type": "sum"}],
        grouping=[{"field": "sg_sequence", "type": "exact", "direction": "asc"}],
    )
    assert result["summaries"] == {"sg_cut_in": 45}
    first = result["groups"][0]
    assert first["group_name"] == "SQA"
    assert first["group_value"] == {
        "type": "Sequence",
        "id": seq_a["id"],
        "name": "SQA",
        "valid": "valid",
    }
    assert first["summaries"] == {"sg_cut_in": 40}
    assert [group["group_name"] for group in result["groups"]] == ["SQA", "SQB"]


@pytest.mark.parametrize("direction, expected", [("asc", [5, 40, 100]), ("desc", [100, 40, 5])])
def test_summarize_orders_number_groups_by_value(sg, project, direction, expected):
    for cut_in in (100, 5, 40):
        sg.create("Shot", {"code": f"sh{cut_in}", "project": project, "sg_cut_in": cut_in})
    result = sg.summarize(
        "Shot",
        [["project", "is", project]],
        [{"field": "id", "type": "count"}],
        grouping=[{"field": "sg_cut_in", "type": "exact", "direction": direction}],
    )
    assert [group["group_value"] for group in result["groups"]] == expected


def test_summarize_unknown_type_is_a_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match="unknown summary type 'median'"):
        sg.summarize("Shot", [], [{"field": "sg_cut_in", "type": "median"}])


def test_schema_field_read_describes_a_field_as_a_site_does(sg):
    schema = sg.schema_field_read("Shot", "sg_sequence")
    field = schema["sg_sequence"]
    assert field["data_type"]["value"] == "entity"
    assert field["properties"]["valid_types"]["value"] == ["Sequence"]
    assert field["entity_type"]["value"] == "Shot"
    statuses = sg.schema_field_read("Task", "sg_status_list")["sg_status_list"]
    assert {"wtg", "rdy", "ip", "rev", "fin"} <= set(
        statuses["properties"]["valid_values"]["value"]
    )


def test_schema_read_covers_the_studio_entities_with_real_field_names(sg):
    schema = sg.schema_read()
    expected = {
        "Project": ["name"],
        "Sequence": ["code", "shots"],
        "Shot": ["code", "sg_sequence", "sg_status_list", "sg_cut_in", "assets"],
        "Asset": ["code", "sg_asset_type"],
        "Task": ["content", "entity", "step", "task_assignees", "due_date"],
        "Step": ["code", "short_name"],
        "Version": ["code", "entity", "sg_task", "user", "sg_path_to_movie"],
        "Note": ["subject", "content", "note_links", "addressings_to"],
        "HumanUser": ["login", "name", "email"],
        "ApiUser": ["firstname"],
        "Group": ["code", "users"],
        "Playlist": ["code", "versions"],
        "PublishedFile": ["code", "path", "published_file_type", "version_number"],
        "EventLogEntry": [
            "event_type",
            "attribute_name",
            "meta",
            "entity",
            "project",
            "user",
            "session_uuid",
        ],
    }
    for entity_type, fields in expected.items():
        assert set(fields) <= set(schema[entity_type]), entity_type
    assert schema["EventLogEntry"]["meta"]["data_type"]["value"] == "serializable"


def test_schema_entity_read_lists_display_names(sg):
    entities = sg.schema_entity_read()
    assert entities["ApiUser"]["name"]["value"] == "Script"
    assert entities["HumanUser"]["name"]["value"] == "Person"


def test_schema_field_read_of_unknown_field_is_a_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match=r"Shot\.sg_nothing doesn't exist"):
        sg.schema_field_read("Shot", "sg_nothing")


def test_schema_extends_from_a_json_file(tmp_path):
    extension = {
        "CustomEntity01": {
            "display_name": "Sprint",
            "name_field": "code",
            "fields": {"code": {"data_type": "text"}, "sg_goal": "text"},
        },
        "Shot": {
            "fields": {"sg_sprint": {"data_type": "entity", "valid_types": ["CustomEntity01"]}}
        },
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(extension))
    with Emulator(scripts={"s": "k"}, schema_path=str(path)) as emulator:
        sg = emulator.client()
        project = sg.create("Project", {"name": "P"})
        sprint = sg.create("CustomEntity01", {"code": "sprint 1", "project": project})
        shot = sg.create("Shot", {"code": "s", "project": project, "sg_sprint": sprint})
        found = sg.find_one(
            "Shot", [["sg_sprint.CustomEntity01.code", "is", "sprint 1"]], ["sg_sprint"]
        )
        assert found["id"] == shot["id"]
        assert found["sg_sprint"]["name"] == "sprint 1"
        assert sg.schema_entity_read()["CustomEntity01"]["name"]["value"] == "Sprint"


def test_bad_schema_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"Shot": {"fields": {"sg_x": {"data_type": "hologram"}}}}))
    with pytest.raises(ValueError, match=r"broken\.json.*unknown data type 'hologram'"):
        Emulator(schema_path=str(path))
