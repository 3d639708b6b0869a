"""Injected site faults as the real client sees them, from Python and over the control path."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
import shotgun_api3
from emulator_support import SCRIPT

from shotgun_events.emulator import RemoteEmulator
from shotgun_events.emulator.control import ControlError
from shotgun_events.emulator.server import _is_loopback


@pytest.fixture
def client(emulator):
    """A client whose own 502/504 retry waits are short, so these tests stay quick."""
    sg = emulator.client()
    sg.BACKOFF = 0.01
    return sg


def until(check, timeout=5.0):
    """Wait for `check()` to be true (never a timing assertion: it only bounds the wait)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_maintenance_is_a_503_protocol_error(emulator, client):
    emulator.faults.maintenance(60)
    with pytest.raises(shotgun_api3.ProtocolError) as raised:
        client.find("Shot", [])
    assert raised.value.errcode == 503
    emulator.faults.clear()
    assert client.find("Shot", []) == []


def test_maintenance_ends_by_itself(emulator, client):
    emulator.faults.maintenance(0.2)

    def answered():
        try:
            return client.find("Shot", []) == []
        except shotgun_api3.ProtocolError:
            return False

    assert until(answered)


def test_three_502s_in_a_row_reach_the_client(emulator, client):
    emulator.faults.http_error(502, count=3)
    emulator.reset_stats()
    with pytest.raises(shotgun_api3.ProtocolError) as raised:
        client.find("Shot", [])
    assert raised.value.errcode == 502
    assert emulator.stats()["faulted"] == 3  # the client's own two retries were refused too


def test_a_single_504_is_absorbed_by_the_clients_own_retry(emulator, client):
    emulator.faults.http_error(504, count=1)
    assert client.find("Shot", []) == []
    assert emulator.faults.status()["http_errors"] == []


def test_a_500_is_not_retried_by_the_client(emulator, client):
    emulator.faults.http_error(500)
    with pytest.raises(shotgun_api3.ProtocolError) as raised:
        client.find("Shot", [])
    assert raised.value.errcode == 500
    assert client.find("Shot", []) == []


def test_two_dropped_connections_are_a_connection_error(emulator, client):
    client.find("Shot", [])  # an open keep-alive connection, as the daemon has
    emulator.faults.drop_connections(2)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        client.find("Shot", [])
    assert client.find("Shot", []) == []


def test_one_dropped_connection_is_retried_by_httplib2(emulator, client):
    client.find("Shot", [])
    emulator.faults.drop_connections(1)
    assert client.find("Shot", []) == []
    assert emulator.faults.status()["drops"] == 0


def test_slow_response_times_out_a_client_with_a_timeout(emulator):
    impatient = shotgun_api3.Shotgun(emulator.url, *SCRIPT, connect=False)
    impatient.config.timeout_secs = 0.2
    emulator.faults.slow(5, count=1)
    with pytest.raises((socket.timeout, TimeoutError)):
        impatient.find("Shot", [])
    assert impatient.find("Shot", []) == []


def test_slow_response_still_answers(emulator, client):
    emulator.faults.slow(0.05, count=2)
    assert client.find("Shot", []) == []
    assert client.find("Shot", []) == []
    assert emulator.faults.status()["delays"] == []


def test_control_path_drives_faults_over_http(emulator, client):
    remote = RemoteEmulator(emulator.url)
    remote.faults.maintenance(60)
    with pytest.raises(shotgun_api3.ProtocolError):
        client.find("Shot", [])
    assert remote.faults.status()["maintenance_seconds_left"] > 0  # control works meanwhile
    remote.faults.clear()
    remote.faults.http_error(502, count=3)
    with pytest.raises(shotgun_api3.ProtocolError):
        client.find("Shot", [])
    remote.faults.drop_connections(2)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        client.find("Shot", [])
    remote.faults.slow(0.01)
    assert client.find("Shot", []) == []


def test_control_path_inserts_events_and_late_ids(emulator, client):
    remote = RemoteEmulator(emulator.url)
    first, last = remote.insert_events(10, "Shotgun_Asset_Change", "code")
    assert remote.latest_event_id() == last == first + 9
    late = remote.reserve_event_id()
    custom = remote.insert_event("Studio_Custom", description="hello")
    assert client.find("EventLogEntry", [["id", "is", late.id]]) == []
    assert late.commit(event_type="Shotgun_Shot_Change") == late.id
    found = client.find("EventLogEntry", [["id", "in", [late.id, custom]]], ["event_type"])
    assert [event["event_type"] for event in found] == ["Shotgun_Shot_Change", "Studio_Custom"]


def test_control_path_manages_scripts_and_stats(emulator):
    remote = RemoteEmulator(emulator.url)
    remote.add_script("other", "k")
    other = shotgun_api3.Shotgun(emulator.url, "other", "k")
    other.find("Shot", [])
    assert remote.stats()["methods"]["read"] == 1
    remote.set_script_key("other", "k2")
    with pytest.raises(shotgun_api3.AuthenticationFault):
        other.find("Shot", [])
    remote.reset_stats()
    assert remote.stats()["requests"] == 0


def test_control_path_refuses_unknown_actions_and_missing_arguments(emulator):
    remote = RemoteEmulator(emulator.url)
    with pytest.raises(ControlError, match="unknown action 'explode'"):
        remote.call("explode")
    with pytest.raises(ControlError, match="missing or unknown 'seconds'"):
        remote.call("maintenance")


@pytest.mark.parametrize(
    "peer, allowed",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.5", False),
        ("bogus", False),
    ],
)
def test_only_loopback_peers_may_use_the_control_path(peer, allowed):
    assert _is_loopback(peer) is allowed
