"""The EventLogEntry rows a site writes for each change, and the event controls for tests."""

from __future__ import annotations

import re

import pytest
import shotgun_api3
from emulator_support import EVENT_FIELDS

POLL_ORDER = [{"field_name": "id", "direction": "asc"}]


def test_create_writes_new_then_one_in_create_change_per_field(emulator, sg, project, events_after):
    start = emulator.latest_event_id()
    sg.set_session_uuid("5a1d49b0-0c69-11e0-a24c-003048d17544")
    shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_status_list": "ip"})
    events = events_after(start)
    assert [e["event_type"] for e in events] == ["Shotgun_Shot_New"] + ["Shotgun_Shot_Change"] * 3
    new = events[0]
    assert new["meta"] == {"type": "new_entity", "entity_type": "Shot", "entity_id": shot["id"]}
    assert new["attribute_name"] is None
    assert new["entity"] == {"type": "Shot", "id": shot["id"], "name": "sh010"}
    assert new["project"]["id"] == project["id"]
    assert new["user"] == {"type": "ApiUser", "id": new["user"]["id"], "name": "tests"}
    assert new["session_uuid"] == "5a1d49b0-0c69-11e0-a24c-003048d17544"
    changes = {e["attribute_name"]: e["meta"] for e in events[1:]}
    assert set(changes) == {"code", "project", "sg_status_list"}
    assert changes["sg_status_list"] == {
        "type": "attribute_change",
        "attribute_name": "sg_status_list",
        "entity_type": "Shot",
        "entity_id": shot["id"],
        "field_data_type": "status_list",
        "old_value": None,
        "new_value": "ip",
        "in_create": True,
    }
    assert changes["project"]["new_value"] == {
        "type": "Project",
        "id": project["id"],
        "name": "Big Buck",
    }


def test_event_ids_strictly_increase_and_created_at_is_a_datetime(sg, project, events_after):
    for index in range(3):
        sg.create("Sequence", {"code": f"SQ{index}", "project": project})
    events = events_after(0)
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids))
    assert all(event["created_at"].tzinfo is not None for event in events)


def test_update_writes_one_change_per_changed_field_with_old_and_new(
    emulator, sg, project, events_after
):
    shot = sg.create("Shot", {"code": "sh010", "project": project, "sg_status_list": "wtg"})
    start = emulator.latest_event_id()
    sg.update("Shot", shot["id"], {"sg_status_list": "ip", "code": "sh010", "sg_cut_in": 1001})
    events = events_after(start)
    assert [e["attribute_name"] for e in events] == ["sg_status_list", "sg_cut_in"]
    status = events[0]["meta"]
    assert (status["old_value"], status["new_value"]) == ("wtg", "ip")
    assert status["field_data_type"] == "status_list"
    assert "in_create" not in status
    assert events[1]["meta"]["field_data_type"] == "number"


def test_update_with_no_real_change_writes_no_event(emulator, sg, project):
    shot = sg.create("Shot", {"code": "same", "project": project})
    start = emulator.latest_event_id()
    sg.update("Shot", shot["id"], {"code": "same"})
    assert emulator.latest_event_id() == start


def test_entity_field_change_carries_old_and_new_links(emulator, sg, project, events_after):
    first = sg.create("Sequence", {"code": "SQ1", "project": project})
    second = sg.create("Sequence", {"code": "SQ2", "project": project})
    shot = sg.create("Shot", {"code": "s", "project": project, "sg_sequence": first})
    start = emulator.latest_event_id()
    sg.update("Shot", shot["id"], {"sg_sequence": second})
    (event,) = events_after(start, ["event_type", "is", "Shotgun_Shot_Change"])
    assert event["meta"]["old_value"] == {"type": "Sequence", "id": first["id"], "name": "SQ1"}
    assert event["meta"]["new_value"] == {"type": "Sequence", "id": second["id"], "name": "SQ2"}


def test_multi_entity_change_lists_added_and_removed(emulator, sg, project, events_after):
    a, b, c = (sg.create("Asset", {"code": code, "project": project}) for code in "abc")
    shot = sg.create("Shot", {"code": "s", "project": project, "assets": [a, b]})
    start = emulator.latest_event_id()
    sg.update("Shot", shot["id"], {"assets": [b, c]})
    (event,) = events_after(start, ["event_type", "is", "Shotgun_Shot_Change"])
    meta = event["meta"]
    assert meta["field_data_type"] == "multi_entity"
    assert meta["added"] == [{"type": "Asset", "id": c["id"], "name": "c"}]
    assert meta["removed"] == [{"type": "Asset", "id": a["id"], "name": "a"}]
    assert "old_value" not in meta


def test_multi_entity_set_in_create_is_all_added(emulator, sg, project, events_after):
    asset = sg.create("Asset", {"code": "hero", "project": project})
    start = emulator.latest_event_id()
    sg.create("Shot", {"code": "s", "project": project, "assets": [asset]})
    assets_event = events_after(start, ["attribute_name", "is", "assets"])[0]
    assert assets_event["meta"]["added"][0]["name"] == "hero"
    assert assets_event["meta"]["removed"] == []
    assert assets_event["meta"]["in_create"] is True


def test_retirement_and_revival_events_and_retired_entity_reads_back_none(
    emulator, sg, project, events_after
):
    shot = sg.create("Shot", {"code": "doomed", "project": project})
    start = emulator.latest_event_id()
    sg.delete("Shot", shot["id"])
    retirement, dated = events_after(start)
    assert retirement["event_type"] == "Shotgun_Shot_Retirement"
    meta = retirement["meta"]
    assert meta["type"] == "entity_retirement"
    assert (meta["class_name"], meta["display_name"]) == ("Shot", "doomed")
    assert meta["entity_id"] == meta["id"] == shot["id"]
    # A site writes the date as "2015-07-13 22:32:35 UTC", which reaches plugins as text:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", meta["retirement_date"])
    assert retirement["entity"] is None  # the link points at a retired row
    assert retirement["project"]["id"] == project["id"]
    assert (dated["event_type"], dated["attribute_name"]) == (
        "Shotgun_Shot_Change",
        "retirement_date",
    )
    assert dated["meta"] == {
        "type": "attribute_change",
        "attribute_name": "retirement_date",
        "entity_type": "Shot",
        "entity_id": shot["id"],
        "old_value": None,
        "new_value": meta["retirement_date"],
    }
    assert dated["entity"] is None
    sg.revive("Shot", shot["id"])
    revival = events_after(dated["id"])[0]
    assert revival["event_type"] == "Shotgun_Shot_Revival"
    assert revival["meta"]["type"] == "entity_revival"
    assert revival["meta"]["class_name"] == "Shot"
    assert revival["meta"]["display_name"] == "doomed"
    assert revival["entity"]["id"] == shot["id"]


def test_changes_made_as_a_human_user_are_logged_with_that_user(emulator, project, events_after):
    artist = emulator.as_user("alice")
    start = emulator.latest_event_id()
    artist.create("Shot", {"code": "by_alice", "project": project})
    new = events_after(start)[0]
    assert new["user"]["type"] == "HumanUser"
    assert new["user"]["name"] == "alice"
    assert new["meta"]["sudo_actual_user"]["type"] == "ApiUser"


def test_sudo_as_an_unknown_login_is_a_fault(emulator):
    stranger = emulator.client(sudo_as_login="nobody")
    with pytest.raises(shotgun_api3.Fault, match="no active HumanUser with login 'nobody'"):
        stranger.find("Shot", [])


def test_bulk_insert_commits_consecutive_events(emulator, sg):
    first, last = emulator.insert_events(1500, "Shotgun_Task_Change", "sg_status_list")
    assert last - first == 1499
    assert emulator.latest_event_id() == last
    page = sg.find(
        "EventLogEntry",
        [["id", "greater_than", first - 1]],
        EVENT_FIELDS,
        order=POLL_ORDER,
        limit=500,
    )
    assert [event["id"] for event in page] == list(range(first, first + 500))
    assert page[0]["event_type"] == "Shotgun_Task_Change"
    assert page[0]["meta"]["new_value"] == "ip"
    assert page[0]["meta"]["field_data_type"] == "status_list"


def test_bulk_insert_applies_overrides(emulator, sg, project):
    shot = sg.create("Shot", {"code": "bulk", "project": project})
    first, _ = emulator.insert_events(3, entity=shot, project=project, session_uuid="abc")
    event = sg.find_one("EventLogEntry", [["id", "is", first]], EVENT_FIELDS)
    assert event["entity"]["name"] == "bulk"
    assert event["meta"]["entity_id"] == shot["id"]
    assert event["session_uuid"] == "abc"


def test_non_entity_events_can_be_inserted_and_matched_by_type(emulator, sg):
    user = emulator.ensure_human_user("bob")
    login = emulator.insert_event("Shotgun_User_Login", user=user, meta={"type": "login"})
    emulator.insert_event("Toolkit_App_Startup", description="tk-maya started")
    found = sg.find("EventLogEntry", [["event_type", "in", ["Shotgun_User_Login"]]], EVENT_FIELDS)
    assert [event["id"] for event in found] == [login]
    assert found[0]["user"]["name"] == "bob"
    assert found[0]["entity"] is None


def test_reserved_event_is_invisible_until_committed_then_appears_with_its_id(
    emulator, sg, events_after
):
    emulator.insert_events(2)
    late = emulator.reserve_event_id()
    after, _ = emulator.insert_events(2)
    assert after > late.id
    assert late.id not in [e["id"] for e in events_after(0)]
    assert sg.find("EventLogEntry", [["id", "in", [late.id]]]) == []
    assert emulator.latest_event_id() == after + 1
    late.commit(event_type="Shotgun_Shot_Change", attribute_name="code")
    found = sg.find("EventLogEntry", [["id", "in", [late.id]]], EVENT_FIELDS)
    assert [event["id"] for event in found] == [late.id]
    assert found[0]["attribute_name"] == "code"
    assert late.id in [e["id"] for e in events_after(0)]


def test_reservation_never_committed_is_a_permanent_gap(emulator, events_after):
    emulator.insert_events(1)
    gap = emulator.reserve_event_id()
    emulator.insert_events(1)
    ids = [event["id"] for event in events_after(0)]
    assert ids == [gap.id - 1, gap.id + 1]


def test_committing_a_reservation_twice_is_refused(emulator):
    late = emulator.reserve_event_id()
    late.commit()
    with pytest.raises(ValueError, match="already committed"):
        late.commit()


def test_the_daemon_poll_pages_through_a_backlog_in_order(emulator, sg):
    first, last = emulator.insert_events(1200)
    position, seen = first - 1, []
    while True:
        page = sg.find(
            "EventLogEntry", [["id", "greater_than", position]], ["id"], order=POLL_ORDER, limit=500
        )
        if not page:
            break
        seen.extend(event["id"] for event in page)
        position = page[-1]["id"]
    assert seen == list(range(first, last + 1))


def test_fields_created_empty_write_no_change_event(emulator, sg, project, events_after):
    start = emulator.latest_event_id()
    sg.create("Shot", {"code": "bare", "project": project, "description": None, "assets": []})
    changed = [event["attribute_name"] for event in events_after(start)[1:]]
    assert changed == ["code", "project"]
