"""``shotgunEventDaemon replay``: chosen events through one plugin again, positions untouched.

Each test runs the real command against a site emulator in this process, with the harness's
config and recording plugins (see harness.py); no daemon runs unless a test says so.
"""

from __future__ import annotations

import os
import pickle
import textwrap

from harness import PLUGIN_SCRIPT, recorder_plugin


def new_events(site, count, **fields):
    first, last = site.insert_events(count, **fields)
    return list(range(first, last + 1))


def replay(daemon, *args):
    return daemon.command("replay", *args)


def write_positions(daemon, positions):
    """A state file in the classic format, as a stopped daemon leaves it."""
    state = {str(daemon.plugin_dir): {name: (pos, {}) for name, pos in positions.items()}}
    with open(daemon.state_file, "wb") as handle:
        pickle.dump(state, handle, protocol=2)
    return daemon.state_file.read_bytes()


def test_replay_runs_the_chosen_events_through_one_plugin_and_moves_no_position(site, daemon):
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("beta", recorder_plugin())
    ids = new_events(site, 10)
    saved = write_positions(daemon, {"alpha": ids[-1], "beta": ids[-1]})
    state_files_before = sorted(os.listdir(daemon.state_file.parent))
    result = replay(daemon, "--plugin", "alpha", "--from", str(ids[2]), "--to", str(ids[6]))
    assert result.returncode == 0, result.stderr
    assert daemon.seen("alpha") == ids[2:7]
    assert daemon.seen("beta") == []
    assert "5 events read, 5 handed to its callbacks, 0 callback errors" in result.stdout
    assert daemon.state_file.read_bytes() == saved  # neither alpha's position nor beta's moved
    assert sorted(os.listdir(daemon.state_file.parent)) == state_files_before  # no journal


def test_replay_without_to_goes_up_to_the_newest_event(site, daemon):
    daemon.add_plugin("alpha", recorder_plugin())
    ids = new_events(site, 6)
    result = replay(daemon, "--plugin", "alpha", "--from", str(ids[3]))
    assert result.returncode == 0, result.stderr
    assert daemon.seen("alpha") == ids[3:]


def test_replay_hands_over_only_the_events_the_callbacks_match(site, daemon):
    daemon.add_plugin("status", recorder_plugin({"Shotgun_Task_Change": ["sg_status_list"]}))
    wanted = new_events(site, 2, event_type="Shotgun_Task_Change")
    other = new_events(site, 2, event_type="Shotgun_Task_Change", attribute_name="content")
    more = new_events(site, 1, event_type="Shotgun_Task_Change")
    result = replay(daemon, "--plugin", "status", "--from", str(wanted[0]), "--to", str(more[-1]))
    assert result.returncode == 0, result.stderr
    assert daemon.seen("status") == wanted + more
    assert not set(other) & set(daemon.seen("status"))


WRITER = textwrap.dedent(
    f"""
    from _recorder import record

    def registerCallbacks(reg):
        reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, describe,
                             {{"Shotgun_Shot_New": None}})

    def describe(sg, logger, event, args):
        sg.update("Shot", event["meta"]["entity_id"], {{"description": "replayed"}})
        record("writer", "cb", event)
    """
)


def test_replay_passes_each_event_session_on_to_the_plugin_connection(site, daemon):
    daemon.add_plugin("writer", WRITER)
    sg = site.client()
    project = sg.create("Project", {"name": "Replay"})
    sg.set_session_uuid("artist-session-42")
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    created = sg.find_one(
        "EventLogEntry", [["event_type", "is", "Shotgun_Shot_New"]], ["id", "session_uuid"]
    )
    assert created["session_uuid"] == "artist-session-42"
    result = replay(daemon, "--plugin", "writer", "--from", str(created["id"]))
    assert result.returncode == 0, result.stderr
    assert daemon.seen("writer") == [created["id"]]
    follow_up = sg.find_one(
        "EventLogEntry",
        [["event_type", "is", "Shotgun_Shot_Change"], ["attribute_name", "is", "description"]],
        ["session_uuid", "entity"],
    )
    assert follow_up["entity"]["id"] == shot["id"]
    assert follow_up["session_uuid"] == "artist-session-42"  # use_session_uuid: True


FAIL_ON_POISON = f"""
if event.get("attribute_name") == "poison":
    raise ValueError("poisoned event %d (key {PLUGIN_SCRIPT[1]})" % event["id"])
"""


def test_replay_stops_at_the_event_a_stop_on_error_callback_fails_on(site, daemon):
    daemon.add_plugin("fragile", recorder_plugin(body=FAIL_ON_POISON, stop_on_error=True))
    good = new_events(site, 2)
    (poison,) = new_events(site, 1, attribute_name="poison")
    after = new_events(site, 2)
    result = replay(daemon, "--plugin", "fragile", "--from", str(good[0]))
    assert result.returncode == 1
    assert f"Stopped at event {poison}: fragile.callback failed" in result.stdout
    assert f"replay --from {poison}" in result.stdout
    assert daemon.seen("fragile") == good
    assert not set(after) & set(daemon.seen("fragile"))
    assert f"ValueError: poisoned event {poison}" in result.stderr  # traceback logged
    assert PLUGIN_SCRIPT[1] not in result.stderr + result.stdout


def test_replay_goes_on_past_errors_of_a_callback_without_stop_on_error(site, daemon):
    daemon.add_plugin("sturdy", recorder_plugin(body=FAIL_ON_POISON, stop_on_error=False))
    good = new_events(site, 2)
    (poison,) = new_events(site, 1, attribute_name="poison")
    after = new_events(site, 2)
    result = replay(daemon, "--plugin", "sturdy", "--from", str(good[0]))
    assert result.returncode == 0, result.stderr
    assert daemon.seen("sturdy") == good + after
    assert "1 callback errors" in result.stdout
    assert "Traceback" in result.stderr and f"poisoned event {poison}" in result.stderr
    assert PLUGIN_SCRIPT[1] not in result.stderr


def test_replay_retries_transient_errors_per_the_retry_policy(tmp_path, site, daemon):
    blink = tmp_path / "blink"
    blink.touch()
    daemon.env["BLINK_MARKER"] = str(blink)
    daemon.write_config(plugin_retry="first_delay=0.1, jitter=0")  # the default for every callback
    body = """
    if os.path.exists(os.environ["BLINK_MARKER"]):
        os.unlink(os.environ["BLINK_MARKER"])
        raise ConnectionResetError("the site blinked")
    """
    daemon.add_plugin("steady", recorder_plugin(body=body, stop_on_error=True))
    ids = new_events(site, 3)
    result = replay(daemon, "--plugin", "steady", "--from", str(ids[0]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert daemon.seen("steady") == ids
    assert "0 callback errors" in result.stdout
    assert "ConnectionResetError" in result.stderr  # the outage's one line


def test_replay_of_an_unknown_plugin_is_a_usage_error_listing_the_plugins(site, daemon):
    daemon.add_plugin("alpha", recorder_plugin())
    result = replay(daemon, "--plugin", "alpah", "--from", "1")
    assert result.returncode == 2
    assert "no plugin 'alpah'" in result.stderr and "alpha" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_of_a_plugin_that_does_not_load_fails_saying_why(site, daemon):
    daemon.add_plugin("broken", "def registerCallbacks(reg)\n    oops\n")
    result = replay(daemon, "--plugin", "broken", "--from", "1")
    assert result.returncode == 1
    assert "did not load" in result.stderr and "SyntaxError" in result.stderr


def test_replay_range_must_not_run_backwards(site, daemon):
    daemon.add_plugin("alpha", recorder_plugin())
    result = replay(daemon, "--plugin", "alpha", "--from", "9", "--to", "3")
    assert result.returncode == 2 and "before --from" in result.stderr
