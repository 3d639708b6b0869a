"""find/find_one through the real client: filters, links, deep fields, order, paging."""

from __future__ import annotations

import datetime

import pytest
import shotgun_api3


@pytest.fixture
def shots(sg, project):
    """Five shots in two sequences; cut-in 1000, 1010, ... and a retired sixth shot."""
    seq_a = sg.create("Sequence", {"code": "SQA", "project": project})
    seq_b = sg.create("Sequence", {"code": "SQB", "project": project})
    requests = []
    for index, code in enumerate(["sh010", "sh020", "SH030", "sh040", "cam_050"]):
        data = {
            "code": code,
            "project": project,
            "sg_sequence": seq_a if index < 3 else seq_b,
            "sg_cut_in": 1000 + 10 * index,
            "sg_status_list": ["wtg", "ip", "ip", "fin", "hld"][index],
        }
        requests.append({"request_type": "create", "entity_type": "Shot", "data": data})
    created = sg.batch(requests)
    retired = sg.create("Shot", {"code": "sh999", "project": project})
    sg.delete("Shot", retired["id"])
    return created


def codes(records):
    return [record["code"] for record in records]


@pytest.mark.parametrize(
    "condition, expected",
    [
        (["code", "is", "sh010"], ["sh010"]),
        (["code", "is_not", "sh010"], ["sh020", "SH030", "sh040", "cam_050"]),
        (["sg_status_list", "in", ["ip", "hld"]], ["sh020", "SH030", "cam_050"]),
        (["sg_status_list", "not_in", ["ip", "hld"]], ["sh010", "sh040"]),
        (["sg_cut_in", "less_than", 1020], ["sh010", "sh020"]),
        (["sg_cut_in", "greater_than", 1020], ["sh040", "cam_050"]),
        (["sg_cut_in", "between", [1010, 1030]], ["sh020", "SH030", "sh040"]),
        (["code", "contains", "sh0"], ["sh010", "sh020", "SH030", "sh040"]),
        (["code", "not_contains", "sh0"], ["cam_050"]),
        (["code", "starts_with", "cam"], ["cam_050"]),
        (["code", "ends_with", "30"], ["SH030"]),
        (["sg_sequence.Sequence.code", "is", "SQB"], ["sh040", "cam_050"]),
        (["sg_sequence", "name_is", "SQA"], ["sh010", "sh020", "SH030"]),
        (["description", "is", None], ["sh010", "sh020", "SH030", "sh040", "cam_050"]),
    ],
)
def test_filter_relations_select_the_right_shots(sg, shots, condition, expected):
    assert codes(sg.find("Shot", [condition], ["code"])) == expected


def test_text_matching_ignores_case_as_a_site_does(sg, shots):
    assert codes(sg.find("Shot", [["code", "contains", "SH03"]], ["code"])) == ["SH030"]


def test_any_and_nested_groups_combine_conditions(sg, shots):
    filters = [
        ["sg_status_list", "is", "ip"],
        {
            "filter_operator": "any",
            "filters": [["code", "ends_with", "20"], ["sg_cut_in", "greater_than", 1015]],
        },
    ]
    assert codes(sg.find("Shot", filters, ["code"])) == ["sh020", "SH030"]
    any_of = [["code", "is", "sh010"], ["code", "is", "sh040"]]
    assert codes(sg.find("Shot", any_of, ["code"], filter_operator="any")) == ["sh010", "sh040"]


def test_entity_links_filter_by_link_and_read_back_with_name(sg, project, shots):
    found = sg.find("Shot", [["project", "is", project]], ["project", "sg_sequence"])
    assert len(found) == 5
    assert found[0]["project"] == {"type": "Project", "id": project["id"], "name": "Big Buck"}
    assert found[0]["sg_sequence"]["name"] == "SQA"
    sequence = found[3]["sg_sequence"]
    in_b = sg.find("Shot", [["sg_sequence", "in", [sequence]]], ["code"])
    assert codes(in_b) == ["sh040", "cam_050"]
    assert sg.find("Shot", [["sg_sequence", "type_is", "Sequence"]]) == sg.find("Shot", [])


def test_dotted_fields_read_through_links(sg, project, shots):
    task = sg.create("Task", {"content": "comp", "project": project, "entity": shots[0]})
    version = sg.create("Version", {"code": "v1", "project": project, "sg_task": task})
    fields = ["entity.Shot.code", "sg_task.Task.entity.Shot.sg_cut_in", "entity.Asset.code"]
    sg.update("Version", version["id"], {"entity": shots[0]})
    found = sg.find_one("Version", [["sg_task.Task.entity.Shot.code", "is", "sh010"]], fields)
    assert found["entity.Shot.code"] == "sh010"
    assert found["sg_task.Task.entity.Shot.sg_cut_in"] == 1000
    assert found["entity.Asset.code"] is None  # the link is a Shot, not an Asset


def test_order_by_field_and_direction(sg, shots):
    order = [{"field_name": "sg_status_list", "direction": "asc"}, {"field_name": "code"}]
    found = sg.find("Shot", [], ["code"], order=order)
    assert codes(found) == ["sh040", "cam_050", "sh020", "SH030", "sh010"]
    descending = sg.find("Shot", [], ["code"], order=[{"field_name": "id", "direction": "desc"}])
    assert codes(descending) == ["cam_050", "sh040", "SH030", "sh020", "sh010"]


def test_order_puts_empty_values_last_ascending(sg, shots):
    sg.update("Shot", shots[1]["id"], {"sg_cut_in": None})
    found = sg.find("Shot", [], ["code"], order=[{"field_name": "sg_cut_in", "direction": "asc"}])
    assert codes(found)[-1] == "sh020"


def test_order_and_filter_by_a_url_field_use_its_name(sg, project):
    sg.create("LocalStorage", {"code": "jobs", "linux_path": "/jobs"})  # a local file needs one
    for name in ("plate_b", "plate_a"):
        path = {"local_path": f"/jobs/{name}.exr", "name": name}
        sg.create("PublishedFile", {"code": name, "project": project, "path": path})
    order = [{"field_name": "path", "direction": "asc"}]
    assert codes(sg.find("PublishedFile", [], ["code"], order=order)) == ["plate_a", "plate_b"]
    found = sg.find("PublishedFile", [["path", "contains", "_b"]], ["code"])
    assert codes(found) == ["plate_b"]


def test_find_one_returns_the_first_in_order(sg, shots):
    order = [{"field_name": "sg_cut_in", "direction": "desc"}]
    assert sg.find_one("Shot", [], ["code"], order=order)["code"] == "cam_050"
    assert sg.find_one("Shot", [["code", "is", "nothing"]]) is None


def test_unpaged_find_follows_has_next_page_across_pages(emulator, sg):
    first, last = emulator.insert_events(1234, event_type="Shotgun_Shot_Change")
    emulator.reset_stats()
    found = sg.find("EventLogEntry", [], ["event_type"])
    assert [event["id"] for event in found] == list(range(first, last + 1))
    assert emulator.stats()["methods"]["read"] == 3  # 500 + 500 + 234


def test_limit_and_page_select_a_window(emulator, sg):
    first, _ = emulator.insert_events(100)
    page_two = sg.find("EventLogEntry", [], ["id"], limit=10, page=2)
    assert [event["id"] for event in page_two] == list(range(first + 10, first + 20))
    over_a_page = sg.find("EventLogEntry", [], ["id"], limit=70)
    assert len(over_a_page) == 70


def test_id_conditions_match_a_full_scan_despite_gaps(emulator, sg):
    emulator.insert_events(50)
    never = emulator.reserve_event_id()  # a permanent gap
    emulator.insert_events(50)
    ids = [event["id"] for event in sg.find("EventLogEntry", [], ["id"])]
    assert never.id not in ids
    cases = [
        (["id", "greater_than", 40], [i for i in ids if i > 40]),
        (["id", "less_than", 55], [i for i in ids if i < 55]),
        (["id", "between", [48, 53]], [i for i in ids if 48 <= i <= 53]),
        (["id", "in", [3, never.id, 77, 5000]], [3, 77]),
        (["id", "is", never.id], []),
    ]
    for condition, expected in cases:
        assert [e["id"] for e in sg.find("EventLogEntry", [condition], ["id"])] == expected


def test_retired_only_finds_only_retired_entities(sg, shots):
    retired = sg.find("Shot", [], ["code"], retired_only=True)
    assert codes(retired) == ["sh999"]
    assert "sh999" not in codes(sg.find("Shot", [], ["code"]))


def test_links_to_a_retired_entity_read_back_as_none(sg, project):
    sequence = sg.create("Sequence", {"code": "SQX", "project": project})
    shot = sg.create("Shot", {"code": "x", "project": project, "sg_sequence": sequence})
    sg.delete("Sequence", sequence["id"])
    assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["sg_sequence"])["sg_sequence"] is None
    sg.revive("Sequence", sequence["id"])
    found = sg.find_one("Shot", [["id", "is", shot["id"]]], ["sg_sequence"])
    assert found["sg_sequence"]["id"] == sequence["id"]


def test_datetimes_and_dates_round_trip_as_the_client_expects(sg, project):
    when = datetime.datetime(2024, 3, 1, 14, 30, 5)  # naive local time, as scripts pass it
    playlist = sg.create(
        "Playlist", {"code": "dailies", "project": project, "sg_date_and_time": when}
    )
    task = sg.create(
        "Task", {"content": "t", "project": project, "due_date": datetime.date(2024, 5, 6)}
    )
    found = sg.find_one(
        "Playlist", [["id", "is", playlist["id"]]], ["sg_date_and_time", "created_at"]
    )
    assert found["sg_date_and_time"].replace(tzinfo=None) == when
    assert isinstance(found["created_at"], datetime.datetime)
    assert found["created_at"].tzinfo is not None
    assert sg.find_one("Task", [["id", "is", task["id"]]], ["due_date"])["due_date"] == "2024-05-06"
    earlier = [["sg_date_and_time", "less_than", when + datetime.timedelta(seconds=1)]]
    assert sg.find("Playlist", earlier) == [{"type": "Playlist", "id": playlist["id"]}]


def test_unknown_return_fields_are_left_out(sg, shots):
    assert sg.find_one("Shot", [], ["code", "sg_not_a_field"]) == {
        "type": "Shot",
        "id": shots[0]["id"],
        "code": "sh010",
    }


def test_multi_entity_filters_match_any_linked_entity(sg, project):
    hero = sg.create("Asset", {"code": "hero", "project": project})
    prop = sg.create("Asset", {"code": "prop", "project": project})
    both = sg.create("Shot", {"code": "both", "project": project, "assets": [hero, prop]})
    sg.create("Shot", {"code": "none", "project": project})
    assert sg.find("Shot", [["assets", "is", prop]]) == [{"type": "Shot", "id": both["id"]}]
    assert codes(sg.find("Shot", [["assets", "is", None]], ["code"])) == ["none"]
    assert codes(sg.find("Shot", [["assets", "name_contains", "her"]], ["code"])) == ["both"]


def test_deep_filter_through_a_multi_entity_field_is_a_clear_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match="single-entity links only"):
        sg.find("Shot", [["assets.Asset.code", "is", "hero"]])
