"""The other API calls plugins make, through the real client: each works as on a site, or
fails with a Fault saying it is not emulated (never an internal error).

The expected shapes are those of the client's docstrings and of its live tests against real
sites (tests/test_api.py in shotgunsoftware/python-api: TestTextSearch, TestFollow,
TestNoteThreadRead, TestActivityStream, TestReadAdditionalFilterPresets).
"""

from __future__ import annotations

import datetime

import pytest
import shotgun_api3


@pytest.fixture
def searchable(sg, project):
    """Five shots and five assets named '<prefix> Text Search N', made in one batch."""
    requests = []
    for number in range(5):
        data = {"code": f"f00d Text Search {number}", "project": project}
        requests.append({"request_type": "create", "entity_type": "Shot", "data": data})
        requests.append({"request_type": "create", "entity_type": "Asset", "data": data})
    return sg.batch(requests)


# --------------------------------------------------------------------------- text_search


def test_text_search_finds_every_term_in_names(sg, project, searchable):
    result = sg.text_search("F00D Text search", {"Shot": []})
    assert set(result) == {"matches", "terms"}
    assert result["terms"] == ["f00d", "text", "search"]
    assert len(result["matches"]) == 5
    shots = {entity["id"] for entity in searchable if entity["type"] == "Shot"}
    for match in result["matches"]:
        assert match["id"] in shots and match["type"] == "Shot"
        assert (match["project_id"], match["image"], match["status"]) == (
            project["id"],
            None,
            "wtg",
        )
        assert match["links"] == ["", ""]


def test_text_search_filters_per_type_limits_and_keeps_the_type_order(sg, searchable):
    assert len(sg.text_search("f00d text search", {"Shot": []}, limit=3)["matches"]) == 3
    assert len(sg.text_search("f00d text search", {"Shot": [], "Asset": []})["matches"]) == 10
    result = sg.text_search(
        "f00d Text Search",
        {
            "Shot": [["code", "ends_with", "3"]],
            "Asset": [{"filter_operator": "any", "filters": [["code", "ends_with", "4"]]}],
        },
    )
    assert [(m["type"], m["name"]) for m in result["matches"]] == [
        ("Shot", "f00d Text Search 3"),
        ("Asset", "f00d Text Search 4"),
    ]


def test_text_search_within_projects_and_with_task_links(sg, project):
    other = sg.create("Project", {"name": "Other"})
    shot = sg.create("Shot", {"code": "bunny_010", "project": project})
    sg.create("Task", {"content": "bunny FX", "project": project, "entity": shot})
    sg.create("Task", {"content": "bunny FX", "project": other})
    result = sg.text_search("bunny", {"Task": []}, project_ids=[project["id"]])
    assert [m["links"] for m in result["matches"]] == [["Shot", "bunny_010"]]


def test_text_search_needs_three_characters(sg):
    with pytest.raises(shotgun_api3.Fault, match="at least 3 characters"):
        sg.text_search("ab", {"Shot": []})


# --------------------------------------------------------------------------- following


def test_follow_unfollow_followers_and_following(emulator, sg, project):
    artist = emulator.ensure_human_user("alice", "Alice Martin")
    shot = sg.create("Shot", {"code": "sh", "project": project})
    task = sg.create("Task", {"content": "t", "project": project})
    assert sg.follow(artist, shot) == {"followed": True, "user": artist, "entity": shot_key(shot)}
    sg.follow(artist, task)
    assert sg.followers(shot) == [
        {
            "type": "HumanUser",
            "id": artist["id"],
            "name": "Alice Martin",
            "status": "act",
            "valid": "valid",
        }
    ]
    assert sg.following(artist) == [shot_key(shot), {"type": "Task", "id": task["id"]}]
    assert sg.following(artist, entity_type="Task") == [{"type": "Task", "id": task["id"]}]
    assert len(sg.following(artist, project=project)) == 2
    assert sg.unfollow(artist, shot)["unfollowed"] is True
    assert sg.followers(shot) == []


def shot_key(shot):
    return {"type": "Shot", "id": shot["id"]}


def test_follow_needs_a_person_and_an_existing_entity(sg, project):
    shot = sg.create("Shot", {"code": "sh", "project": project})
    script = sg.find_one("ApiUser", [])
    with pytest.raises(shotgun_api3.Fault, match="must be a HumanUser"):
        sg.follow(script, shot)
    with pytest.raises(shotgun_api3.Fault, match="Shot 999 does not exist"):
        sg.followers({"type": "Shot", "id": 999})


# --------------------------------------------------------------------------- note threads


def test_note_thread_read_lists_the_note_its_replies_and_files(sg, project, tmp_path):
    note = sg.create("Note", {"content": "Test!", "project": project})
    reply = sg.create("Reply", {"content": "Reply Content", "entity": note})
    image = tmp_path / "logo.jpg"
    image.write_bytes(b"jpeg bytes")
    attachment_id = sg.upload("Note", note["id"], str(image))
    thread = sg.note_thread_read(note["id"])
    assert [(item["type"], item["id"]) for item in thread] == [
        ("Note", note["id"]),
        ("Reply", reply["id"]),
        ("Attachment", attachment_id),
    ]
    assert set(thread[0]) == {"content", "created_at", "created_by", "id", "type"}
    assert isinstance(thread[0]["created_at"], datetime.datetime)
    assert thread[0] == sg.find_one("Note", [["id", "is", note["id"]]], list(thread[0]))
    assert set(thread[1]) == {"content", "created_at", "user", "id", "type"}
    assert thread[1]["user"]["type"] == "ApiUser" and "image" in thread[1]["user"]
    extra = sg.note_thread_read(note["id"], {"Attachment": ["this_file"], "Note": ["user"]})
    assert extra[2]["this_file"]["link_type"] == "upload"
    assert "user" in extra[0]


# --------------------------------------------------------------------------- activity stream


def test_activity_stream_shows_the_creation_and_linked_notes_newest_first(sg, project):
    shot = sg.create("Shot", {"code": "stream", "project": project})
    sg.create("Note", {"content": "Test!", "project": project, "note_links": [shot]})
    result = sg.activity_stream_read("Shot", shot["id"])
    assert set(result) == {
        "earliest_update_id",
        "entity_id",
        "entity_type",
        "latest_update_id",
        "updates",
    }
    assert (result["entity_type"], result["entity_id"]) == ("Shot", shot["id"])
    assert [u["update_type"] for u in result["updates"]] == ["create", "create"]
    assert result["latest_update_id"] == result["updates"][0]["id"]
    (latest,) = sg.activity_stream_read("Shot", shot["id"], limit=1)["updates"]
    assert latest["meta"]["entity_type"] == "Note"
    extra = sg.activity_stream_read(
        "Shot",
        shot["id"],
        entity_fields={"Shot": ["created_by.ApiUser.firstname"], "Note": ["content"]},
    )["updates"]
    assert set(extra[0]["primary_entity"]) == {"content", "id", "name", "status", "type"}
    assert set(extra[1]["primary_entity"]) == {
        "created_by.ApiUser.firstname",
        "id",
        "name",
        "status",
        "type",
    }
    sg.update("Shot", shot["id"], {"sg_status_list": "ip"})
    (change,) = sg.activity_stream_read("Shot", shot["id"], limit=1)["updates"]
    assert change["update_type"] == "update"
    assert change["meta"]["new_value"] == "ip"


# --------------------------------------------------------------------------- filter presets


def test_latest_version_per_entity_preset(sg, project):
    shots = [sg.create("Shot", {"code": code, "project": project}) for code in ("a", "b")]
    versions = [
        sg.create("Version", {"code": f"{shot['code']}_v{n}", "project": project, "entity": shot})
        for shot in shots
        for n in (1, 2)
    ]
    latest = sg.find(
        "Version",
        [["project", "is", project]],
        ["code"],
        additional_filter_presets=[{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}],
    )
    assert [v["id"] for v in latest] == [versions[1]["id"], versions[3]["id"]]


def test_latest_version_by_pipeline_step_preset(sg, project):
    shot = sg.create("Shot", {"code": "a", "project": project})
    anim, comp = (
        sg.create("Step", {"code": code, "list_order": order})
        for code, order in (("anim", 1), ("comp", 2))
    )
    comp_task = sg.create("Task", {"content": "comp", "project": project, "step": comp})
    anim_task = sg.create("Task", {"content": "anim", "project": project, "step": anim})
    furthest = sg.create(
        "Version", {"code": "comp_v1", "project": project, "entity": shot, "sg_task": comp_task}
    )
    sg.create(
        "Version", {"code": "anim_v9", "project": project, "entity": shot, "sg_task": anim_task}
    )
    preset = {
        "preset_name": "LATEST",
        "latest_by": "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT",
    }
    found = sg.find_one("Version", [], ["code"], additional_filter_presets=[preset])
    assert found["id"] == furthest["id"]


@pytest.mark.parametrize(
    "presets, problem",
    [
        ([{}], "needs a 'preset_name'"),
        ([{"preset_name": "BAD_FILTER"}], "'BAD_FILTER' is not a preset for Version"),
        (3, "must be a list"),
        ([3], "must be a list"),
        (
            [
                {"preset_name": "LATEST", "latest_by": "ENTITY_CREATED_AT"},
                {"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"},
            ],
            "only one LATEST",
        ),
        ([{"preset_name": "LATEST", "latest_by": "NEWEST"}], "LATEST needs latest_by"),
        ([{"preset_name": "CUT_SHOT_VERSIONS", "cut_id": 1}], "not emulated"),
    ],
)
def test_bad_presets_are_faults(sg, presets, problem):
    with pytest.raises(shotgun_api3.Fault, match=problem):
        sg.find("Version", [], additional_filter_presets=presets)


def test_archived_projects_are_left_out_when_asked(sg):
    live = sg.create("Project", {"name": "Live"})
    old = sg.create("Project", {"name": "Old", "archived": True})
    for project in (live, old):
        sg.create("Shot", {"code": project["name"], "project": project})
    everything = sg.find("Shot", [], ["code"])
    assert len(everything) == 2
    shots = sg.find("Shot", [], ["code"], include_archived_projects=False)
    assert [s["code"] for s in shots] == ["Live"]
    assert [p["id"] for p in sg.find("Project", [], include_archived_projects=False)] == [
        live["id"]
    ]
    summary = sg.summarize(
        "Shot", [], [{"field": "id", "type": "count"}], include_archived_projects=False
    )
    assert summary["summaries"] == {"id": 1}


# --------------------------------------------------------------------------- batch, info, the rest


def test_a_batch_mixes_creates_updates_and_deletes(emulator, sg, project):
    gone = sg.create("Shot", {"code": "gone", "project": project})
    kept = sg.create("Shot", {"code": "kept", "project": project})
    sequence = {"type": "Sequence", "id": 1}
    results = sg.batch(
        [
            {
                "request_type": "create",
                "entity_type": "Sequence",
                "data": {"code": "SQ", "project": project},
            },
            {
                "request_type": "update",
                "entity_type": "Shot",
                "entity_id": kept["id"],
                "data": {"sg_sequence": sequence},
            },
            {"request_type": "delete", "entity_type": "Shot", "entity_id": gone["id"]},
        ]
    )
    assert results[0]["type"] == "Sequence" and results[2] is True
    assert results[1]["sg_sequence"]["id"] == results[0]["id"]
    assert sg.find_one("Sequence", [], ["shots"])["shots"][0]["id"] == kept["id"]


def test_info_and_server_caps_say_a_recent_site(sg):
    info = sg.info()
    assert info["version"][:2] == [8, 50] and len(info["full_version"]) == 4
    assert info["user_authentication_method"] == "default"
    assert sg.server_caps.version >= (8, 0, 0)
    assert sg.server_caps.ensure_paging_info_without_counts_support() is True
    assert sg.server_caps.ensure_user_following_support() is True
    assert sg.server_caps.ensure_support_for_additional_filter_presets() is True


def test_preferences_read_answers_the_known_preferences_only(sg):
    asked = ["date_component_order", "support_local_storage", "email_notifications"]
    assert sg.preferences_read(asked) == {
        "date_component_order": "month_day",
        "support_local_storage": True,
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda sg: sg.schema_field_create("Shot", "text", "Notes"),
        lambda sg: sg.schema_field_update("Shot", "code", {"name": "Name"}),
        lambda sg: sg.schema_field_delete("Shot", "code"),
        lambda sg: sg.work_schedule_read("2024-01-01", "2024-01-31"),
        lambda sg: sg.export_page(1, "csv"),
        lambda sg: sg.user_subscriptions_read(),
    ],
    ids=["field_create", "field_update", "field_delete", "work_schedule", "export", "subs"],
)
def test_site_methods_that_are_not_emulated_are_faults_saying_so(sg, call):
    with pytest.raises(shotgun_api3.Fault, match="is not emulated"):
        call(sg)


@pytest.mark.parametrize(
    "grouping, summary, problem",
    [
        ("month", "count", "a site's grouping type that is not emulated"),
        ("bogus", "count", "'bogus' is unknown"),
        ("exact", "status_percentage", "'status_percentage' is not emulated"),
    ],
)
def test_summaries_a_site_has_but_the_emulator_does_not_say_so(sg, grouping, summary, problem):
    with pytest.raises(shotgun_api3.Fault, match=problem):
        sg.summarize(
            "Task",
            [],
            [{"field": "sg_status_list", "type": summary}],
            grouping=[{"field": "due_date", "type": grouping}],
        )
