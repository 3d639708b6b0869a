"""create/update/delete/revive/batch through the real client, and what a site refuses."""

from __future__ import annotations

import pytest
import shotgun_api3


def test_create_returns_the_fields_set_with_links_named(sg, project):
    shot = sg.create("Shot", {"code": "sh010", "project": project}, ["sg_status_list"])
    assert shot == {
        "type": "Shot",
        "id": shot["id"],
        "code": "sh010",
        "project": {"type": "Project", "id": project["id"], "name": "Big Buck"},
        "sg_status_list": "wtg",  # the field's default, as a site fills it in
    }


def test_ids_grow_per_entity_type(sg, project):
    first = sg.create("Shot", {"code": "a", "project": project})
    second = sg.create("Shot", {"code": "b", "project": project})
    assert second["id"] == first["id"] + 1


def test_update_returns_the_changed_fields_and_is_read_back(sg, project):
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    answer = sg.update("Shot", shot["id"], {"sg_status_list": "ip", "sg_cut_in": 1001})
    assert answer == {"type": "Shot", "id": shot["id"], "sg_status_list": "ip", "sg_cut_in": 1001}
    found = sg.find_one("Shot", [["id", "is", shot["id"]]], ["sg_status_list", "sg_cut_in"])
    assert (found["sg_status_list"], found["sg_cut_in"]) == ("ip", 1001)


def test_multi_entity_update_modes_set_add_and_remove(sg, project):
    assets = [sg.create("Asset", {"code": code, "project": project}) for code in "abcd"]
    a, b, c, d = ({"type": "Asset", "id": asset["id"]} for asset in assets)
    shot = sg.create("Shot", {"code": "s", "project": project, "assets": [a, b]})

    def linked():
        found = sg.find_one("Shot", [["id", "is", shot["id"]]], ["assets"])
        return [asset["name"] for asset in found["assets"]]

    sg.update("Shot", shot["id"], {"assets": [c]}, multi_entity_update_modes={"assets": "add"})
    assert linked() == ["a", "b", "c"]
    sg.update("Shot", shot["id"], {"assets": [a]}, multi_entity_update_modes={"assets": "remove"})
    assert linked() == ["b", "c"]
    sg.update("Shot", shot["id"], {"assets": [d, b]})
    assert linked() == ["d", "b"]


def test_delete_retires_and_revive_brings_back(sg, project):
    shot = sg.create("Shot", {"code": "gone", "project": project})
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.find("Shot", [["id", "is", shot["id"]]]) == []
    assert sg.delete("Shot", shot["id"]) is False  # already retired
    assert sg.revive("Shot", shot["id"]) is True
    assert sg.find("Shot", [["id", "is", shot["id"]]]) == [{"type": "Shot", "id": shot["id"]}]
    assert sg.revive("Shot", shot["id"]) is False  # not retired


def test_deleting_what_does_not_exist_is_a_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match="Shot 4242 does not exist"):
        sg.delete("Shot", 4242)


def test_updating_a_retired_entity_is_a_fault(sg, project):
    shot = sg.create("Shot", {"code": "x", "project": project})
    sg.delete("Shot", shot["id"])
    with pytest.raises(shotgun_api3.Fault, match="is retired"):
        sg.update("Shot", shot["id"], {"code": "y"})


def test_batch_applies_creates_updates_and_deletes_in_order(sg, project):
    existing = sg.create("Shot", {"code": "old", "project": project})
    results = sg.batch(
        [
            {
                "request_type": "create",
                "entity_type": "Shot",
                "data": {"code": "new", "project": project},
            },
            {
                "request_type": "update",
                "entity_type": "Shot",
                "entity_id": existing["id"],
                "data": {"code": "renamed"},
            },
            {"request_type": "delete", "entity_type": "Shot", "entity_id": existing["id"]},
        ]
    )
    assert results[0]["code"] == "new"
    assert results[1] == {"type": "Shot", "id": existing["id"], "code": "renamed"}
    assert results[2] is True
    assert [shot["code"] for shot in sg.find("Shot", [], ["code"])] == ["new"]


def test_failed_batch_changes_nothing_and_writes_no_event(emulator, sg, project):
    shot = sg.create("Shot", {"code": "keep", "project": project})
    before = emulator.latest_event_id()
    with pytest.raises(shotgun_api3.Fault, match="request 2 failed, nothing was changed"):
        sg.batch(
            [
                {
                    "request_type": "create",
                    "entity_type": "Shot",
                    "data": {"code": "ghost", "project": project},
                },
                {
                    "request_type": "update",
                    "entity_type": "Shot",
                    "entity_id": shot["id"],
                    "data": {"code": "lost"},
                },
                {
                    "request_type": "update",
                    "entity_type": "Shot",
                    "entity_id": shot["id"],
                    "data": {"sg_nope": 1},
                },
            ]
        )
    assert [s["code"] for s in sg.find("Shot", [], ["code"])] == ["keep"]
    assert emulator.latest_event_id() == before


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sg_cut_in": "ten"}, "Shot.sg_cut_in is a number field and expects an integer"),
        ({"sg_status_list": "bogus"}, "'bogus' is not a valid value"),
        ({"sg_sequence": {"type": "Asset", "id": 1}}, "cannot link to a Asset"),
        ({"sg_sequence": {"type": "Sequence", "id": 999}}, "Sequence 999 does not exist"),
        ({"sg_flavour": "mint"}, "Shot.sg_flavour doesn't exist"),
        ({"updated_at": None}, "Shot.updated_at is not editable"),
    ],
)
def test_invalid_values_are_faults_naming_the_field(sg, project, data, message):
    with pytest.raises(shotgun_api3.Fault, match=message):
        sg.create("Shot", dict(data, code="x", project=project))


def test_multi_entity_mode_on_a_plain_field_is_a_fault(sg, project):
    shot = sg.create("Shot", {"code": "x", "project": project})
    with pytest.raises(shotgun_api3.Fault, match="applies to multi-entity fields only"):
        sg.update("Shot", shot["id"], {"code": "y"}, multi_entity_update_modes={"code": "add"})


def test_a_script_can_log_its_own_event_but_not_change_one(emulator, sg):
    event = sg.create("EventLogEntry", {"event_type": "Studio_Render_Done", "description": "done"})
    found = sg.find_one("EventLogEntry", [["id", "is", event["id"]]], ["event_type", "user"])
    assert found["event_type"] == "Studio_Render_Done"
    assert found["user"]["type"] == "ApiUser"
    assert emulator.latest_event_id() == event["id"]  # no extra event about the event
    with pytest.raises(shotgun_api3.Fault, match="cannot be changed"):
        sg.update("EventLogEntry", event["id"], {"description": "edited"})


def test_human_user_gets_a_name_from_first_and_last_name(sg):
    user = sg.create(
        "HumanUser", {"firstname": "Ada", "lastname": "Park", "login": "ada"}, ["name"]
    )
    assert user["name"] == "Ada Park"
