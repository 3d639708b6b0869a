"""The wire protocol as the real client sees it: info, auth, faults for bad requests."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
import shotgun_api3
from emulator_support import SCRIPT


def _post(emulator, path, body, content_type="application/json"):
    """A raw HTTP request, for what the client itself never sends."""
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_info_reports_a_version_that_enables_paging_without_counts(sg):
    assert sg.server_caps.version >= (7, 4, 0)
    assert sg.server_caps.ensure_paging_info_without_counts_support()
    assert sg.info()["version"] == list(sg.server_caps.version)


def test_client_connects_with_its_script_key(emulator):
    sg = shotgun_api3.Shotgun(emulator.url, *SCRIPT)
    assert sg.find("Project", []) == []


def test_wrong_key_is_an_authentication_fault(emulator):
    sg = shotgun_api3.Shotgun(emulator.url, SCRIPT[0], "wrong")
    with pytest.raises(shotgun_api3.AuthenticationFault, match="Can't authenticate script"):
        sg.find("Project", [])


def test_unknown_script_is_an_authentication_fault(emulator):
    sg = shotgun_api3.Shotgun(emulator.url, "nobody", "key")
    with pytest.raises(shotgun_api3.AuthenticationFault):
        sg.find_one("Shot", [])


def test_changed_key_locks_out_clients_holding_the_old_one(emulator, sg):
    emulator.set_script_key(SCRIPT[0], "rotated")
    with pytest.raises(shotgun_api3.AuthenticationFault):
        sg.find("Project", [])
    assert emulator.client().find("Project", []) == []


def test_removed_script_is_refused_and_added_one_accepted(emulator, sg):
    emulator.remove_script(SCRIPT[0])
    with pytest.raises(shotgun_api3.AuthenticationFault):
        sg.find("Project", [])
    emulator.add_script("late_comer", "k2")
    assert shotgun_api3.Shotgun(emulator.url, "late_comer", "k2").find("Project", []) == []


def test_unknown_method_is_a_fault_naming_the_method(sg):
    with pytest.raises(shotgun_api3.Fault, match="'make_coffee' is not supported"):
        sg._call_rpc("make_coffee", {})


def test_bad_filter_is_a_fault_naming_the_field(sg):
    with pytest.raises(shotgun_api3.Fault, match=r"Shot\.sg_no_such_field doesn't exist"):
        sg.find("Shot", [["sg_no_such_field", "is", 1]])


def test_unknown_relation_is_a_fault_naming_it(sg):
    with pytest.raises(shotgun_api3.Fault, match="unknown filter relation 'resembles'"):
        sg.find("Shot", [["code", "resembles", "x"]])


def test_relation_that_does_not_fit_the_field_is_a_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match="text relations apply to text fields"):
        sg.find("Shot", [["sg_cut_in", "contains", "1"]])


def test_unknown_entity_type_is_a_fault(sg):
    with pytest.raises(shotgun_api3.Fault, match="unknown entity type 'Spaceship'"):
        sg.find("Spaceship", [])


def test_invalid_json_body_gets_a_json_fault_not_an_html_error(emulator):
    status, content_type, body = _post(emulator, "/api3/json", b"{not json")
    assert status == 200
    assert content_type.startswith("application/json")
    answer = json.loads(body)
    assert answer["exception"] is True
    assert "not valid JSON" in answer["message"]


def test_payload_without_method_gets_a_json_fault(emulator):
    status, _, body = _post(emulator, "/api3/json", json.dumps({"params": []}))
    assert status == 200
    assert json.loads(body)["exception"] is True


def test_unknown_path_is_a_json_404(emulator):
    status, content_type, body = _post(emulator, "/api3/xml", b"{}")
    assert status == 404
    assert content_type.startswith("application/json")
    assert "POST /api3/json" in json.loads(body)["error"]


def test_one_client_reuses_its_keep_alive_connection(emulator, sg):
    sg.find("Project", [])
    connection = next(iter(sg._connection.connections.values()))
    socket_before = connection.sock
    for _ in range(5):
        sg.find("Project", [])
    assert connection.sock is socket_before


def test_several_clients_are_served_at_once(emulator):
    slow_client, quick_client = emulator.client(), emulator.client()
    emulator.faults.slow(1.0, count=1)
    finished = []
    slow = threading.Thread(target=lambda: finished.append(slow_client.find("Shot", [])))
    slow.start()
    while emulator.faults.status()["delays"]:  # the slow request has arrived and waits
        time.sleep(0.01)
    quick_client.find("Shot", [])  # answered while the slow request is still waiting
    finished.append("quick")
    slow.join(10)
    assert finished == ["quick", []]


def test_stats_count_requests_per_method_and_bytes(emulator, sg):
    emulator.reset_stats()
    sg.find("Project", [])
    sg.create("Project", {"name": "Stats"})
    stats = emulator.stats()
    assert stats["methods"] == {"read": 1, "create": 1}
    assert stats["requests"] == 2
    assert stats["bytes_received"] > 0 and stats["bytes_sent"] > 0
