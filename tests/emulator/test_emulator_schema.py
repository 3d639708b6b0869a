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


# --------------------------------------------------------------------------- field shapes
# What a site's schema_field_read returns, per data type: the schemas shotgun_api3 records
# from a real site for mockgun (tests/mockgun/schema.pickle in shotgunsoftware/python-api)
# and current sites' answers (custom_metadata, ui_value_displayable, display_values,
# hidden_values on status lists).
TOP_LEVEL = {
    "custom_metadata",
    "data_type",
    "description",
    "editable",
    "entity_type",
    "mandatory",
    "name",
    "properties",
    "ui_value_displayable",
    "unique",
    "visible",
}
PROPERTIES = {
    ("Shot", "sg_status_list"): {"valid_values", "display_values", "hidden_values"},
    ("Shot", "sg_shot_type"): {"valid_values"},
    ("Shot", "sg_sequence"): {"valid_types"},
    ("Shot", "assets"): {"valid_types"},
    ("PublishedFile", "path"): {"open_in_new_window"},
    ("Attachment", "tag_list"): {"valid_types"},
    ("Shot", "code"): set(),
    ("Shot", "sg_cut_in"): set(),
    ("Task", "milestone"): set(),
    ("Task", "due_date"): set(),
    ("EventLogEntry", "meta"): set(),
}


@pytest.mark.parametrize("entity_type, name", list(PROPERTIES), ids=lambda v: str(v))
def test_each_data_type_has_the_properties_a_site_gives_it(sg, entity_type, name):
    described = sg.schema_field_read(entity_type, name)[name]
    assert set(described) == TOP_LEVEL
    expected = {"default_value", "summary_default"} | PROPERTIES[(entity_type, name)]
    assert set(described["properties"]) == expected
    for value in described.values():
        if isinstance(value, dict) and "value" in value:
            assert set(value) == {"editable", "value"}


def test_a_status_list_has_its_default_display_values_and_hidden_values(sg):
    properties = sg.schema_field_read("Task", "sg_status_list")["sg_status_list"]["properties"]
    assert properties["default_value"] == {"editable": True, "value": "wtg"}
    assert properties["display_values"]["value"]["ip"] == "In Progress"
    assert set(properties["display_values"]["value"]) == set(properties["valid_values"]["value"])
    assert properties["hidden_values"] == {"editable": False, "value": []}


def test_read_only_and_site_set_fields_say_so(sg):
    fields = sg.schema_field_read("Shot")
    assert fields["id"]["editable"]["value"] is False
    assert fields["created_at"]["editable"]["value"] is False
    assert fields["code"]["editable"]["value"] is True
    milestone = sg.schema_field_read("Task", "milestone")["milestone"]
    assert milestone["properties"]["default_value"]["value"] is False


def test_schema_read_and_schema_field_read_agree(sg):
    whole = sg.schema_read()
    assert whole["Version"]["sg_status_list"] == sg.schema_field_read("Version")["sg_status_list"]
    assert (
        sg.schema_field_read("Shot", project_entity={"type": "Project", "id": 1}) == whole["Shot"]
    )


# --------------------------------------------------------------------------- partial definitions


def emulator_with(tmp_path, definition):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(definition))
    return Emulator(scripts={"s": "k"}, schema_path=str(path))


def test_a_status_added_to_a_built_in_field_extends_it(tmp_path):
    definition = {
        "Task": {
            "fields": {
                "sg_status_list": {
                    "valid_values": ["pndng"],
                    "display_values": {"pndng": "Pending Approval"},
                }
            }
        }
    }
    with emulator_with(tmp_path, definition) as emulator:
        sg = emulator.client()
        project = sg.create("Project", {"name": "P"})
        task = sg.create("Task", {"content": "t", "project": project}, ["sg_status_list"])
        assert task["sg_status_list"] == "wtg"  # the built-in default is kept
        sg.update("Task", task["id"], {"sg_status_list": "pndng"})
        sg.update("Task", task["id"], {"sg_status_list": "fin"})  # old statuses still valid
        properties = sg.schema_field_read("Task", "sg_status_list")["sg_status_list"]["properties"]
        assert properties["valid_values"]["value"][-1] == "pndng"
        assert properties["display_values"]["value"]["pndng"] == "Pending Approval"
        assert properties["display_values"]["value"]["fin"] == "Final"


def test_a_partial_definition_may_change_the_default_and_the_display_name(tmp_path):
    definition = {
        "Shot": {
            "fields": {
                "sg_status_list": {"valid_values": ["bid"], "default_value": "bid"},
                "sg_shot_type": {"valid_values": ["Bonus"], "name": "Kind"},
            }
        }
    }
    with emulator_with(tmp_path, definition) as emulator:
        sg = emulator.client()
        project = sg.create("Project", {"name": "P"})
        shot = sg.create("Shot", {"code": "s", "project": project}, ["sg_status_list"])
        assert shot["sg_status_list"] == "bid"
        sg.update("Shot", shot["id"], {"sg_shot_type": "Bonus"})
        kind = sg.schema_field_read("Shot", "sg_shot_type")["sg_shot_type"]
        assert kind["name"]["value"] == "Kind"
        assert kind["properties"]["valid_values"]["value"] == [
            "Regular",
            "Insert",
            "Reshoot",
            "Bonus",
        ]


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"sg_status_list": {"data_type": "list"}}, "cannot change its data type to list"),
        ({"sg_status_list": {"default_value": "nope"}}, "'nope' is not one of its valid_values"),
        ({"sg_status_list": {"hidden_values": ["nope"]}}, "'nope' not in its valid_values"),
        ({"code": {"valid_values": ["a"]}}, "apply to status_list and list fields"),
        ({"sg_new": {"name": "New"}}, "a new field needs a data_type"),
        ({"sg_new": {"data_type": "text", "valid_type": ["Shot"]}}, "unknown key.*valid_type"),
    ],
)
def test_a_bad_field_definition_is_an_error_naming_file_and_field(tmp_path, fields, problem):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"Shot": {"fields": fields}}))
    name = next(iter(fields))
    with pytest.raises(ValueError, match=rf"schema\.json: Shot\.{name}: .*{problem}"):
        Emulator(schema_path=str(path))
