"""The engine end to end: a real daemon process, the real client, the site emulator.

Each test starts ``shotgunEventDaemon foreground`` in its own process against an emulator in
this process; the test plugins record every event they get (see harness.py).
"""

from __future__ import annotations

import json
import pickle
import signal
import textwrap
import threading
import time

import pytest

from harness import PLUGIN_SCRIPT, recorder_plugin


def new_events(site, count, **fields):
    first, last = site.insert_events(count, **fields)
    return list(range(first, last + 1))


def started(daemon, *plugins):
    for name, source in plugins:
        daemon.add_plugin(name, source)
    daemon.start()
    daemon.wait_started()
    return daemon


def assert_once_in_order(daemon, plugin, event_ids):
    seen = daemon.seen(plugin)
    assert seen == sorted(seen), f"{plugin} saw events out of order"
    assert len(seen) == len(set(seen)), f"{plugin} saw an event twice"
    assert set(event_ids) <= set(seen)


# --------------------------------------------------------------------------- basics


def test_every_plugin_gets_every_event_once_and_in_order(site, daemon):
    started(daemon, ("alpha", recorder_plugin()), ("beta", recorder_plugin()))
    ids = new_events(site, 60)
    daemon.wait_seen("alpha", ids)
    daemon.wait_seen("beta", ids)
    assert daemon.stop() == 0
    for plugin in ("alpha", "beta"):
        assert_once_in_order(daemon, plugin, ids)


def test_first_start_begins_at_the_newest_event_not_at_history(site, daemon):
    history = new_events(site, 20)
    started(daemon, ("alpha", recorder_plugin()))
    ids = new_events(site, 5)
    daemon.wait_seen("alpha", ids)
    assert not set(history) & set(daemon.seen("alpha"))
    daemon.stop()


def test_classic_plugin_runs_unchanged_and_its_writes_make_events(site, daemon):
    classic = textwrap.dedent(
        f"""
        # A plugin as written for the classic daemon: camelCase API, callable object,
        # module state, the logger, args, and writes through its own connection.
        import logging
        from _recorder import record

        def registerCallbacks(reg):
            reg.setEmails(False)
            reg.logger.info('registering %s', __name__)
            matchEvents = {{'Shotgun_Shot_New': ['*']}}
            name, key = '{PLUGIN_SCRIPT[0]}', '{PLUGIN_SCRIPT[1]}'
            reg.registerCallback(name, key, Describer(), matchEvents,
                                 {{'text': 'described by a plugin'}})

        class Describer(object):
            def __call__(self, sg, logger, event, args):
                logger.info('shot %s created', event['meta']['entity_id'])
                sg.update('Shot', event['meta']['entity_id'], {{'description': args['text']}})
                record('classic', 'cb', event)
        """
    )
    started(daemon, ("classic", classic))
    sg = site.client()
    project = sg.create("Project", {"name": "Demo"})
    sg.set_session_uuid("0123-session-uuid")
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    daemon.wait_for(lambda: daemon.seen("classic"), 20, "the classic plugin to run")
    daemon.wait_for(
        lambda: (
            sg.find_one("Shot", [["id", "is", shot["id"]]], ["description"])["description"]
            == "described by a plugin"
        ),
        20,
        "the plugin's update",
    )
    follow_up = sg.find_one(
        "EventLogEntry",
        [["event_type", "is", "Shotgun_Shot_Change"], ["attribute_name", "is", "description"]],
        ["user", "session_uuid", "meta"],
    )
    assert follow_up["meta"]["new_value"] == "described by a plugin"
    assert follow_up["user"]["type"] == "ApiUser"
    assert follow_up["session_uuid"] == "0123-session-uuid"  # use_session_uuid passed it on
    log = (daemon.log_dir / "plugin.classic").read_text()
    assert f"shot {shot['id']} created" in log
    daemon.stop()


def test_match_events_pick_event_types_and_attributes(site, daemon):
    started(
        daemon,
        ("status", recorder_plugin({"Shotgun_Task_Change": ["sg_status_list"]})),
        ("anything", recorder_plugin({"*": None})),
        ("logins", recorder_plugin({"Shotgun_User_Login": None})),
    )
    status = new_events(site, 3, event_type="Shotgun_Task_Change", attribute_name="sg_status_list")
    other = new_events(site, 3, event_type="Shotgun_Task_Change", attribute_name="content")
    logins = new_events(site, 2, event_type="Shotgun_User_Login", attribute_name=None)
    everything = status + other + logins
    daemon.wait_seen("anything", everything)
    daemon.wait_seen("logins", logins)
    daemon.wait_seen("status", status)
    time.sleep(0.5)
    assert daemon.seen("status") == status
    assert daemon.seen("logins") == logins
    daemon.stop()


# --------------------------------------------------------------------------- hot reload


def test_changed_plugin_is_reloaded_and_continues_after_its_position(site, daemon):
    started(daemon, ("alpha", recorder_plugin(tag="v1")))
    first = new_events(site, 3)
    daemon.wait_seen("alpha", first)
    daemon.add_plugin("alpha", recorder_plugin(tag="v2"))
    daemon.wait_for(lambda: daemon.log().count("Loaded plugin") >= 2, 20, "the reload")
    second = new_events(site, 3)
    daemon.wait_for(lambda: set(second) <= set(daemon.seen("alpha", "v2")), 20, "v2 events")
    assert daemon.seen("alpha", "v1") == first
    assert daemon.seen("alpha", "v2") == second
    daemon.stop()


def test_new_plugin_starts_now_and_deleted_plugin_stops(site, daemon):
    started(daemon, ("alpha", recorder_plugin()))
    before = new_events(site, 3)
    daemon.wait_seen("alpha", before)
    daemon.add_plugin("beta", recorder_plugin())
    daemon.wait_for(lambda: "New plugin" in daemon.log(), 20, "the new plugin")
    daemon.wait_for(lambda: "beta.py (1 callbacks)" in daemon.log(), 20, "beta to load")
    after = new_events(site, 3)
    daemon.wait_seen("beta", after)
    assert not set(before) & set(daemon.seen("beta"))
    daemon.remove_plugin("alpha")
    daemon.wait_for(lambda: "was removed" in daemon.log(), 20, "the removal")
    later = new_events(site, 3)
    daemon.wait_seen("beta", later)
    time.sleep(0.5)
    assert not set(later) & set(daemon.seen("alpha"))
    daemon.stop()


def test_broken_plugin_is_reported_and_resumes_from_where_it_stopped_when_fixed(site, daemon):
    started(daemon, ("alpha", recorder_plugin()), ("witness", recorder_plugin()))
    first = new_events(site, 2)
    daemon.wait_seen("alpha", first)
    daemon.add_plugin("alpha", "def registerCallbacks(reg)\n    oops\n")
    daemon.wait_for(lambda: "Could not load plugin" in daemon.log(), 20, "the load error")
    assert "SyntaxError" in daemon.log()
    during = new_events(site, 3)
    daemon.wait_seen("witness", during)  # the others carry on
    assert not set(during) & set(daemon.seen("alpha"))
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.wait_seen("alpha", during)  # nothing missed while it was broken
    assert_once_in_order(daemon, "alpha", first + during)
    daemon.stop()


# --------------------------------------------------------------------------- errors


FAIL_ON_MARK = """
if event.get("attribute_name") == "poison":
    raise ValueError("poisoned event %d" % event["id"])
"""


def test_stop_on_error_stops_the_plugin_and_it_resumes_from_the_failed_event(site, daemon):
    started(
        daemon,
        ("fragile", recorder_plugin(body=FAIL_ON_MARK, stop_on_error=True)),
        ("witness", recorder_plugin()),
    )
    good = new_events(site, 2)
    poison = new_events(site, 1, attribute_name="poison")
    after = new_events(site, 2)
    daemon.wait_seen("witness", good + poison + after)
    daemon.wait_for(lambda: "stopped on an error" in daemon.log(), 20, "the stop")
    assert f"ValueError: poisoned event {poison[0]}" in daemon.log()  # traceback logged
    assert daemon.seen("fragile") == good
    # The fix: the same plugin without the failure. It resumes at the failed event.
    daemon.add_plugin("fragile", recorder_plugin())
    daemon.wait_seen("fragile", poison + after)
    assert daemon.seen("fragile") == good + poison + after
    daemon.stop()


def test_stop_on_error_false_logs_and_moves_on(site, daemon):
    started(daemon, ("tolerant", recorder_plugin(body=FAIL_ON_MARK, stop_on_error=False)))
    good = new_events(site, 2)
    poison = new_events(site, 1, attribute_name="poison")
    after = new_events(site, 2)
    daemon.wait_seen("tolerant", after)
    assert daemon.seen("tolerant") == good + after
    assert f"poisoned event {poison[0]}" in daemon.log()
    daemon.stop()


def test_a_slow_plugin_does_not_delay_another_plugin(site, daemon):
    started(
        daemon,
        ("slow", recorder_plugin(body="time.sleep(2)")),
        ("fast", recorder_plugin()),
    )
    ids = new_events(site, 5)
    daemon.wait_seen("fast", ids, timeout=8)
    # The slow plugin needs 10 s for these; the fast one was done long before that.
    assert len(daemon.seen("slow")) < len(ids)
    daemon.stop()


# --------------------------------------------------------------------------- gaps


def test_late_event_is_delivered_once_to_every_plugin(site, daemon):
    started(daemon, ("alpha", recorder_plugin()), ("beta", recorder_plugin()))
    before = new_events(site, 2)
    late = site.reserve_event_id()
    after = new_events(site, 3)
    daemon.wait_seen("alpha", before + after)
    daemon.wait_seen("beta", before + after)
    assert late.id not in daemon.seen("alpha")
    late.commit(event_type="Shotgun_Task_Change", attribute_name="sg_status_list")
    daemon.wait_seen("alpha", [late.id])
    daemon.wait_seen("beta", [late.id])
    more = new_events(site, 2)
    daemon.wait_seen("alpha", more)
    daemon.wait_seen("beta", more)
    time.sleep(0.5)
    for plugin in ("alpha", "beta"):
        counts = daemon.counts(plugin)
        assert all(n == 1 for n in counts.values()), f"{plugin} got duplicates: {counts}"
        assert set(counts) >= set(before + after + more + [late.id])
    daemon.stop()


@pytest.mark.parametrize("read_by", ["engine", "plugin.alpha"], ids=["poll", "catching up"])
@pytest.mark.parametrize("match", [None, {"Shotgun_Shot_Change": None}], ids=["all", "by type"])
def test_a_late_id_just_below_a_jump_in_the_id_sequence_is_delivered(site, daemon, read_by, match):
    """The site's id sequence jumps 60,000 ids while an id just above the head is still in
    a transaction: the jump is written off, that id is not. Read by the engine's poll or by
    a plugin reading alone (it started far behind the other), with or without the type
    filter (the events after the jump are of a type alpha does not match)."""
    daemon.write_config(gap_timeout=60)
    daemon.add_plugin("alpha", recorder_plugin(match))
    daemon.add_plugin("beta", recorder_plugin())
    history = new_events(site, 3)
    if read_by == "engine":
        daemon.start()
        daemon.wait_started()
    late = site.reserve_event_id()
    site.store.allocate_ids("EventLogEntry", 60_000)
    after = new_events(site, 2, event_type="Shotgun_Task_Change")
    if read_by == "plugin.alpha":  # alpha stopped before the jump, beta after it
        positions = {"alpha": (history[-1], {}), "beta": (after[-1], {})}
        daemon.state_file.write_bytes(pickle.dumps({str(daemon.plugin_dir): positions}, 2))
        daemon.start()
        daemon.wait_started()
    jump = f"{read_by} - ERROR - Event ids "
    daemon.wait_for(lambda: jump in daemon.log(), 20, "the jump to be written off")
    late.commit(event_type="Shotgun_Shot_Change", attribute_name="sg_status_list")
    daemon.wait_seen("alpha", [late.id])
    assert f"{jump}{late.id + 1000} to {after[0] - 1001} are missing" in daemon.log()
    more = new_events(site, 1)
    daemon.wait_seen("alpha", more)
    assert daemon.counts("alpha") == dict.fromkeys(
        [late.id, *more] if match else [*after, late.id, *more], 1
    )
    daemon.stop()


def test_permanent_gap_expires_without_stalling(site, daemon):
    daemon.write_config(gap_timeout=1)
    started(daemon, ("alpha", recorder_plugin()))
    site.reserve_event_id()  # never committed
    ids = new_events(site, 3)
    daemon.wait_seen("alpha", ids)  # later events are not held back by the gap
    daemon.wait_for(lambda: "never appeared" in daemon.log(), 20, "the gap to expire")
    more = new_events(site, 2)
    daemon.wait_seen("alpha", more)
    daemon.stop()
    state = pickle.loads(daemon.state_file.read_bytes())
    ((position, gaps),) = state[str(daemon.plugin_dir)].values()
    assert position == more[-1] and gaps == {}


# --------------------------------------------------------------------------- state


def test_restart_resumes_where_each_plugin_stopped(site, daemon):
    started(
        daemon,
        ("steady", recorder_plugin()),
        ("fragile", recorder_plugin(body=FAIL_ON_MARK)),
    )
    first = new_events(site, 2)
    poison = new_events(site, 1, attribute_name="poison")
    daemon.wait_seen("steady", first + poison)
    daemon.wait_for(lambda: "stopped on an error" in daemon.log(), 20, "fragile to stop")
    assert daemon.stop() == 0
    while_down = new_events(site, 3)
    daemon.add_plugin("fragile", recorder_plugin())  # fixed while the daemon was down
    daemon.start()
    daemon.wait_seen("steady", while_down)
    daemon.wait_seen("fragile", poison + while_down)
    assert_once_in_order(daemon, "steady", first + poison + while_down)
    assert_once_in_order(daemon, "fragile", first + poison + while_down)
    daemon.stop()


def test_state_file_is_private_and_in_the_classic_format(site, daemon):
    started(daemon, ("alpha", recorder_plugin()))
    ids = new_events(site, 3)
    daemon.wait_seen("alpha", ids)
    daemon.stop()
    assert daemon.state_file.stat().st_mode & 0o777 == 0o600
    state = pickle.loads(daemon.state_file.read_bytes())
    assert state == {str(daemon.plugin_dir): {"alpha": (ids[-1], {})}}


@pytest.mark.parametrize("old_format", ["integer text", "plugin ints", "classic tuples"])
def test_state_written_by_the_classic_daemon_is_resumed(site, daemon, old_format):
    daemon.add_plugin("alpha", recorder_plugin())
    start = new_events(site, 5)
    resume_after = start[1]
    folder = str(daemon.plugin_dir)
    if old_format == "integer text":
        daemon.state_file.write_text(f"{resume_after}\n")
    elif old_format == "plugin ints":
        daemon.state_file.write_bytes(pickle.dumps({folder: {"alpha": resume_after}}, 2))
    else:
        daemon.state_file.write_bytes(pickle.dumps({folder: {"alpha": (resume_after, {})}}, 2))
    daemon.start()
    daemon.wait_seen("alpha", start[2:])
    assert daemon.seen("alpha") == start[2:]
    # A plugin file that appears later starts now, whatever the saved state's format.
    daemon.add_plugin("beta", recorder_plugin())
    daemon.wait_for(lambda: "New plugin" in daemon.log(), 20, "beta to load")
    after = new_events(site, 2)
    daemon.wait_seen("beta", after)
    assert daemon.seen("beta") == after
    daemon.stop()


def test_positions_ahead_of_the_site_are_named_once_and_wait_for_the_site(site, daemon):
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("beta", recorder_plugin())
    history = new_events(site, 3)
    ahead = history[-1] + 3
    folder = str(daemon.plugin_dir)
    daemon.state_file.write_bytes(pickle.dumps({folder: {"alpha": ahead, "beta": ahead}}, 2))
    daemon.start()
    daemon.wait_started()
    newest = history[-1]
    warning = f"saved positions of alpha, beta are ahead of the site's newest event ({newest})"
    daemon.wait_for(lambda: warning in daemon.log(), 20, "the warning")
    assert daemon.log().count(warning) == 1
    later = new_events(site, 5)
    daemon.wait_seen("alpha", later[3:])
    assert daemon.seen("alpha") == daemon.seen("beta") == later[3:]
    daemon.stop()


def with_plugin_folders(daemon, *folders):
    """Configure these plugin folders (each gets the recorder helper) instead of the one."""
    for folder in folders:
        folder.mkdir(exist_ok=True)
        (folder / "_recorder.py").write_text((daemon.plugin_dir / "_recorder.py").read_text())
    text = daemon.config_path.read_text()
    listed = ", ".join(str(folder) for folder in folders)
    daemon.config_path.write_text(text.replace(f"paths: {daemon.plugin_dir}", f"paths: {listed}"))


@pytest.mark.parametrize("saved_under", [["b_old"], ["b_old", "b_older"]])
def test_a_moved_folder_never_takes_a_namesakes_position(site, daemon, tmp_path, saved_under):
    """Folder A still configured holds a notify ahead of B's; B's folder moved. B's notify
    resumes from its own saved position, never from A's; with two saved folders it could
    have come from, it is not guessed: it starts as a new plugin, with one warning."""
    a, b_new = daemon.plugin_dir, tmp_path / "b_new"
    with_plugin_folders(daemon, a, b_new)
    daemon.add_plugin("notify", recorder_plugin(tag="A"))
    (b_new / "notify.py").write_text(recorder_plugin(tag="B"))
    history = new_events(site, 10)
    state = {str(a): {"notify": (history[-1], {})}}
    for offset, folder in enumerate(saved_under):
        state[str(tmp_path / folder)] = {"notify": (history[2 + offset], {})}
    daemon.state_file.write_bytes(pickle.dumps(state, 2))
    daemon.start()
    daemon.wait_started()
    later = new_events(site, 2)
    daemon.wait_seen("notify", later)
    daemon.wait_for(lambda: set(later) <= set(daemon.seen("notify", "B")), 20, "B's notify")
    assert daemon.seen("notify", "A") == later
    if len(saved_under) == 1:
        assert daemon.seen("notify", "B") == history[3:] + later
    else:
        assert daemon.seen("notify", "B") == later
        warnings = [line for line in daemon.log().splitlines() if "is not guessed" in line]
        assert len(warnings) == 1
        assert f"{tmp_path / 'b_old'} (event {history[2]})" in warnings[0]
        assert f"{tmp_path / 'b_older'} (event {history[3]})" in warnings[0]
    daemon.stop()


@pytest.mark.parametrize("damage", [b"", b"\x80\x02}q\x00(X", b"garbage \x00\xff" * 10])
def test_damaged_state_file_falls_back_to_the_previous_copy(site, daemon, damage):
    started(daemon, ("alpha", recorder_plugin()))
    first = new_events(site, 3)
    daemon.wait_seen("alpha", first)
    daemon.stop()
    daemon.start()  # a second clean run leaves a previous good copy behind
    daemon.wait_started()
    second = new_events(site, 2)
    daemon.wait_seen("alpha", second)
    daemon.stop()
    daemon.state_file.write_bytes(damage)
    while_down = new_events(site, 2)
    daemon.start()
    daemon.wait_seen("alpha", while_down)
    assert "ERROR" in daemon.log()
    assert list(daemon.state_file.parent.glob("*.damaged-*")), "the damaged file was kept"
    # Never a silent skip: anything not proven done is delivered again.
    assert set(first + second + while_down) <= set(daemon.seen("alpha"))
    daemon.stop()


def test_kill_9_repeats_only_the_event_in_hand(site, daemon):
    started(daemon, ("alpha", recorder_plugin(body="time.sleep(0.02)")))
    ids = new_events(site, 200)
    daemon.wait_for(lambda: len(daemon.seen("alpha")) > 50, 30, "some progress")
    daemon.kill()
    daemon.start()
    daemon.wait_seen("alpha", ids, timeout=60)
    counts = daemon.counts("alpha")
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 1, counts
    daemon.stop()


def test_sigterm_finishes_the_event_in_hand_and_exits_0(site, daemon):
    started(daemon, ("slow", recorder_plugin(body="time.sleep(1.5)")))
    ids = new_events(site, 3)
    time.sleep(0.8)  # the first event is in hand now
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    done = daemon.seen("slow")
    assert done, "the event in hand was finished"
    daemon.start()
    daemon.wait_seen("slow", ids, timeout=30)
    assert daemon.seen("slow") == ids  # nothing repeated, nothing skipped
    daemon.stop()


def test_type_filter_asks_less_and_never_mistakes_other_types_for_gaps(site, daemon):
    started(daemon, ("tasks", recorder_plugin({"Shotgun_Task_Change": ["sg_status_list"]})))
    noise = new_events(site, 40, event_type="Shotgun_Shot_Change")
    task = new_events(site, 1, event_type="Shotgun_Task_Change")
    late = site.reserve_event_id()
    more_noise = new_events(site, 40, event_type="Shotgun_Version_Change")
    daemon.wait_seen("tasks", task)
    site.reset_stats()
    late.commit(event_type="Shotgun_Task_Change", attribute_name="sg_status_list")
    daemon.wait_seen("tasks", [late.id])
    last = new_events(site, 1, event_type="Shotgun_Task_Change")
    daemon.wait_seen("tasks", last)
    assert daemon.seen("tasks") == [*task, late.id, *last]
    daemon.stop()
    # The only gap ever waited for was the late id: none of the 80 filtered-out events.
    waited = [line for line in daemon.log().splitlines() if "Late events arrived" in line]
    assert waited and all(str(late.id) in line for line in waited)
    assert not set(noise + more_noise) & set(daemon.seen("tasks"))


def test_kill_9_between_two_callbacks_of_one_event_reruns_only_the_second(site, daemon):
    two_callbacks = textwrap.dedent(
        f"""
        import time
        from _recorder import record

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, first)
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, second)

        def first(sg, logger, event, args):
            record("pair", "first", event)

        def second(sg, logger, event, args):
            time.sleep(1.5)
            record("pair", "second", event)
        """
    )
    started(daemon, ("pair", two_callbacks))
    (event_id,) = new_events(site, 1)
    daemon.wait_for(lambda: daemon.seen("pair", "first"), 20, "the first callback")
    daemon.kill()  # while the second callback sleeps
    assert daemon.seen("pair", "second") == []
    daemon.start()
    daemon.wait_for(lambda: daemon.seen("pair", "second"), 20, "the second callback")
    assert daemon.seen("pair", "first") == [event_id]  # not run again
    assert daemon.seen("pair", "second") == [event_id]
    assert "finished before the restart" in daemon.log()
    daemon.stop()


def test_strict_ordering_holds_later_events_until_the_late_one_arrives(site, daemon):
    daemon.plugin_options["ordering"] = "strict"
    daemon.write_config()
    started(daemon, ("strict", recorder_plugin()))
    before = new_events(site, 2)
    late = site.reserve_event_id()
    after = new_events(site, 3)
    daemon.wait_seen("strict", before)
    time.sleep(1.0)
    assert daemon.seen("strict") == before  # held back behind the missing id
    late.commit(event_type="Shotgun_Task_Change", attribute_name="sg_status_list")
    daemon.wait_seen("strict", after)
    assert daemon.seen("strict") == [*before, late.id, *after]  # strictly increasing
    daemon.stop()


def test_strict_ordering_releases_held_events_when_the_gap_times_out(site, daemon):
    daemon.plugin_options["ordering"] = "strict"
    daemon.write_config(gap_timeout=1.5)
    started(daemon, ("strict", recorder_plugin()))
    site.reserve_event_id()  # never committed
    after = new_events(site, 3)
    daemon.wait_seen("strict", after, timeout=20)
    assert daemon.seen("strict") == after
    daemon.stop()


def test_a_slow_strict_plugin_gets_a_late_event_that_came_in_time(site, daemon):
    """The late event's news is queued behind the batch the slow plugin reaches after the
    gap deadline: the plugin must not give the id up on its own clock."""
    daemon.plugin_options["ordering"] = "strict"
    daemon.write_config(gap_timeout=2)
    started(daemon, ("strict", recorder_plugin(body="time.sleep(1.0)")))
    before = new_events(site, 3)  # 3 s of work
    late = site.reserve_event_id()
    after = new_events(site, 2)
    time.sleep(0.5)
    late.commit(event_type="Shotgun_Shot_Change", attribute_name="sg_status_list")
    daemon.wait_for(lambda: "Late events arrived" in daemon.log(), 10, "the engine to see it")
    daemon.wait_seen("strict", [*before, *after], timeout=20)
    time.sleep(1.0)
    assert daemon.seen("strict") == [*before, late.id, *after]
    daemon.stop()


def test_a_full_strict_buffer_keeps_waiting_and_reads_the_rest_again_in_order(site, daemon):
    """40 events behind a missing id, room for 5 (max_plugin_backlog): no wait is given up
    before its deadline; the plugin holds at most 5 events, reads nothing more meanwhile,
    and gets every event in order once the id commits, then once a never-committed one
    times out."""
    daemon.plugin_options["ordering"] = "strict"
    daemon.write_config(
        gap_timeout=6, max_event_batch_size=5, max_plugin_backlog=5, status_interval=0.2
    )
    started(daemon, ("strict", recorder_plugin()))
    status = daemon.state_file.with_name("events.id.status.json")
    late = site.reserve_event_id()
    held = new_events(site, 40)
    time.sleep(1.0)  # the engine has read every page by now
    seen_status = []
    for _ in range(10):  # 2 s of the status: bounded, and detached from the engine
        time.sleep(0.2)
        (plugin,) = json.loads(status.read_text())["plugins"]
        seen_status.append((plugin.get("held_back_events"), plugin["queued_events"]))
    assert daemon.seen("strict") == []
    assert seen_status[-1] == (5, 0)
    assert all(held_back <= 5 and queued <= 5 for held_back, queued in seen_status)
    assert f"5 events wait for event id {late.id}" in daemon.log()
    report = daemon.command("status").stdout
    assert f"strict ordering: waiting for event {late.id} (5 later events held back)" in report
    late.commit(event_type="Shotgun_Shot_Change", attribute_name="sg_status_list")
    daemon.wait_seen("strict", held)
    assert daemon.seen("strict") == [late.id, *held]
    site.reserve_event_id()  # never committed: its deadline releases what it holds
    more = new_events(site, 12)
    daemon.wait_seen("strict", more, timeout=30)
    assert daemon.seen("strict") == [late.id, *held, *more]
    daemon.stop()


POISON_BODY = """
if event.get("attribute_name") == "poison":
    raise ValueError("poisoned event %d" % event["id"])
"""


def test_a_late_event_a_plugin_keeps_failing_on_past_its_deadline_is_kept(site, daemon):
    daemon.write_config(gap_timeout=2)
    started(daemon, ("fragile", recorder_plugin(body=POISON_BODY)))
    before = new_events(site, 2)
    late = site.reserve_event_id()
    after = new_events(site, 2)
    daemon.wait_seen("fragile", before + after)
    late.commit(event_type="Shotgun_Shot_Change", attribute_name="poison")
    stopped = f"at event {late.id}; it resumes"
    daemon.wait_for(lambda: stopped in daemon.log(), 20, "the failure on the late event")
    time.sleep(3)  # past the gap deadline while stopped
    daemon.add_plugin("fragile", recorder_plugin(body=POISON_BODY + "# not fixed yet\n"))
    daemon.wait_for(lambda: daemon.log().count(stopped) >= 2, 20, "the second failure")
    daemon.add_plugin("fragile", recorder_plugin())  # fixed: resumes from the failed event
    more = new_events(site, 2)
    daemon.wait_seen("fragile", [late.id, *more])
    assert sorted(daemon.seen("fragile")) == sorted([*before, *after, late.id, *more])
    daemon.stop()


def test_an_exception_whose_str_fails_is_one_callback_error_and_the_plugin_goes_on(site, daemon):
    broken_error = recorder_plugin(
        before="class PublishError(Exception): __str__ = lambda self: 404  # not a str",
        body="if event['attribute_name'] == 'bad': raise PublishError()",
        stop_on_error=False,
    )
    started(daemon, ("publisher", broken_error))
    bad = new_events(site, 1, attribute_name="bad")
    after = new_events(site, 2)
    daemon.wait_seen("publisher", after)
    assert daemon.seen("publisher") == after
    assert f"Callback publisher.callback failed on event {bad[0]}" in daemon.log()
    assert "unexpected error" not in daemon.log()
    daemon.stop()


def test_a_callback_past_its_deadline_is_reported_once_in_thread_mode(site, daemon):
    slow = recorder_plugin(body="time.sleep(2.5)").replace(
        "stopOnError=True)", "stopOnError=True, timeout=0.5)"
    )
    assert "timeout=0.5" in slow
    started(daemon, ("slow", slow), ("fast", recorder_plugin()))
    ids = new_events(site, 2)
    daemon.wait_seen("fast", ids)
    daemon.wait_for(lambda: "past its 0.5 s deadline" in daemon.log(), 10, "the overrun report")
    daemon.wait_seen("slow", ids, timeout=20)  # thread mode cannot stop it: it finishes
    log = daemon.log()
    assert log.count("past its 0.5 s deadline") == 2  # once per overrunning run, not per check
    assert "ERROR" in log.split("past its 0.5 s deadline")[0].splitlines()[-1]
    daemon.stop()


def test_a_missing_plugin_folder_is_reported_once_and_used_when_it_appears(site, daemon):
    spare = daemon.root / "later"
    daemon.plugin_dir.rename(daemon.root / "parked")
    daemon.start()
    daemon.wait_started()
    daemon.wait_for(lambda: "cannot read plugin folder" in daemon.log(), 20, "the report")
    time.sleep(0.5)  # several polls: still one report
    assert daemon.log().count("cannot read plugin folder") == 1
    spare.mkdir()
    (spare / "_recorder.py").write_text((daemon.root / "parked" / "_recorder.py").read_text())
    (spare / "alpha.py").write_text(recorder_plugin())
    spare.rename(daemon.plugin_dir)
    daemon.wait_for(lambda: "readable again" in daemon.log(), 20, "the recovery")
    daemon.wait_for(lambda: "alpha.py (1 callbacks)" in daemon.log(), 20, "alpha to load")
    ids = new_events(site, 2)
    daemon.wait_seen("alpha", ids)
    assert daemon.alive()
    daemon.stop()


def test_a_folder_listed_again_through_a_symlink_runs_its_plugins_once(site, daemon):
    """It ran every plugin of the folder twice on every event (spellings were compared)."""
    alias = daemon.root / "current"
    alias.symlink_to(daemon.plugin_dir)
    daemon.config_path.write_text(
        daemon.config_path.read_text().replace(
            f"paths: {daemon.plugin_dir}", f"paths: {daemon.plugin_dir}, {alias}"
        )
    )
    started(daemon, ("alpha", recorder_plugin()))
    ids = new_events(site, 3)
    daemon.wait_seen("alpha", ids)
    time.sleep(1)
    assert daemon.counts("alpha") == {event_id: 1 for event_id in ids}
    assert f"'{alias}' is the folder '{daemon.plugin_dir}' by another path" in daemon.log()
    daemon.stop()


def test_a_symlink_to_a_listed_folder_made_after_start_does_not_run_its_plugins_twice(site, daemon):
    """The config refuses the same folder twice (real paths); a link made later, under a
    second listed folder that did not exist yet, is refused by the scan, once."""
    alias = daemon.root / "current"
    daemon.config_path.write_text(
        daemon.config_path.read_text().replace(
            f"paths: {daemon.plugin_dir}", f"paths: {daemon.plugin_dir}, {alias}"
        )
    )
    started(daemon, ("alpha", recorder_plugin()))
    alias.symlink_to(daemon.plugin_dir)
    daemon.wait_for(lambda: "which is listed before it" in daemon.log(), 20, "the refusal")
    ids = new_events(site, 3)
    daemon.wait_seen("alpha", ids)
    time.sleep(1)  # several polls and scans
    assert daemon.counts("alpha") == {event_id: 1 for event_id in ids}
    assert daemon.log().count("which is listed before it") == 1
    daemon.stop()


@pytest.mark.parametrize("saved_as", ["classic pickle", "one integer"])
def test_a_stop_during_a_site_outage_at_start_keeps_the_saved_positions(site, daemon, saved_as):
    daemon.add_plugin("alpha", recorder_plugin())
    ids = new_events(site, 5)
    if saved_as == "one integer":
        daemon.state_file.write_text(f"{ids[2]}\n")
    else:
        daemon.state_file.write_bytes(
            pickle.dumps({str(daemon.plugin_dir): {"alpha": (ids[2], {})}}, 2)
        )
    before = daemon.state_file.read_bytes()
    site.faults.maintenance(60)  # the site is down while the daemon starts, then it is stopped
    daemon.start()
    daemon.wait_for(lambda: "Site request failed" in daemon.log(), 20, "the outage")
    assert daemon.stop() == 0
    assert daemon.state_file.read_bytes() == before
    site.faults.clear()
    daemon.start()
    daemon.wait_seen("alpha", ids[3:])
    assert daemon.seen("alpha") == ids[3:]  # resumed where it was, nothing skipped
    daemon.stop()


# --------------------------------------------------------------------------- status while polling


def test_lag_is_computed_safely_while_the_poll_records_new_pages():
    """status() runs on other threads (status file, /healthz) while the poll appends."""
    from collections import deque
    from types import SimpleNamespace

    from shotgun_events.engine import Engine

    now = time.time()
    engine = SimpleNamespace(head=10**9, _times=deque(((i, now) for i in range(2000)), maxlen=2000))
    stop = threading.Event()

    def poll() -> None:
        next_id = 2000
        while not stop.is_set():
            engine._times.append((next_id, time.time()))
            next_id += 1

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert Engine._lag_seconds(engine, 5) is not None
    finally:
        stop.set()
        poller.join()
