"""Retrying plugin work through transient site failures: policy, error kinds, logs, helper.

Errors come from the real ``shotgun_api3`` client talking HTTP to the site emulator with
faults injected; delays are checked with an injected clock and random source, never timed.
"""

from __future__ import annotations

import http.server
import io
import logging
import threading
import urllib.error
import uuid

import pytest
import shotgun_api3

from shotgun_events.emulator import Emulator
from shotgun_events.retry import (
    OutageLog,
    RetryInterrupted,
    RetryPolicy,
    RetryRun,
    call_with_retry,
    is_transient,
    resolve_policy,
    retrying,
)

SCRIPT = ("retry_tests", "retry-key-0123456789")

#: Quick enough for tests, patient enough for a window of a second or two.
QUICK = RetryPolicy(attempts=50, first_delay=0.1, max_delay=0.4, give_up_after=30, jitter=0.1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emulator():
    emu = Emulator(scripts=dict([SCRIPT])).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def site(emulator):
    """The module's site with no fault planned before or after the test."""
    emulator.faults.clear()
    yield emulator
    emulator.faults.clear()


@pytest.fixture
def sg(site):
    """A client as a plugin's callback gets it, with the client's own 502 waits shortened."""
    client = site.client(connect=False)
    client.BACKOFF = 0.01
    return client


@pytest.fixture
def project(sg):
    return sg.create("Project", {"name": f"retry {uuid.uuid4().hex[:8]}"})


def raised_by(call):
    with pytest.raises(Exception) as caught:  # any error: the caller inspects it
        call()
    return caught.value


def shots_named(sg, code):
    return sg.find("Shot", [["code", "is", code]], ["id"])


def new_shot_events(site, sg, shot_ids, after):
    events = sg.find(
        "EventLogEntry",
        [["id", "greater_than", after], ["event_type", "is", "Shotgun_Shot_New"]],
        ["entity"],
    )
    return [e for e in events if e["entity"] and e["entity"]["id"] in shot_ids]


# --------------------------------------------------------------------------- the policy


def run_for(policy, clock=None, random=lambda: 0.5):
    return RetryRun(policy, clock=clock or FakeClock(), random=random)


OUTAGE = ConnectionResetError(104, "Connection reset by peer")


def test_delays_double_from_first_delay_up_to_max_delay():
    run = run_for(RetryPolicy(attempts=10, first_delay=1, max_delay=10, jitter=0))
    assert [run.next_delay(OUTAGE) for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_varies_each_delay_within_its_fraction_but_never_past_max_delay():
    policy = RetryPolicy(attempts=10, first_delay=2, max_delay=8, jitter=0.25)
    assert run_for(policy, random=lambda: 0.0).next_delay(OUTAGE) == 1.5
    assert run_for(policy, random=lambda: 0.999999).next_delay(OUTAGE) == pytest.approx(2.5)
    capped = run_for(policy, random=lambda: 0.999999)
    delays = [capped.next_delay(OUTAGE) for _ in range(5)]
    assert delays[-1] == 8  # 8 * 1.25 would pass max_delay: max_delay is a true maximum
    spread = run_for(policy, random=lambda: 0.0)
    assert [spread.next_delay(OUTAGE) for _ in range(5)][-1] == 6  # 8 * 0.75


def test_gives_up_after_the_policys_attempts():
    run = run_for(RetryPolicy(attempts=3, first_delay=1, jitter=0))
    assert run.next_delay(OUTAGE) == 1
    assert run.next_delay(OUTAGE) == 2
    assert run.next_delay(OUTAGE) is None
    assert (run.attempts, run.retries, run.waited) == (3, 2, 3)
    assert run.gave_up == "3 attempts"


def test_gives_up_once_give_up_after_has_passed_since_the_first_failure():
    clock = FakeClock()
    run = run_for(RetryPolicy(attempts=100, first_delay=1, give_up_after=30, jitter=0), clock)
    clock.now += 500  # a long first try does not count: the clock starts at the first failure
    assert run.next_delay(OUTAGE) == 1
    clock.now += 30
    assert run.next_delay(OUTAGE) is None
    assert run.gave_up == "30 s"


def test_last_wait_is_shortened_to_end_at_the_give_up_time():
    clock = FakeClock()
    run = run_for(RetryPolicy(attempts=100, first_delay=8, max_delay=8, give_up_after=10), clock)
    assert run.next_delay(OUTAGE) == 8
    clock.now += 8.5
    assert run.next_delay(OUTAGE) == pytest.approx(1.5)


def test_a_bug_is_not_retried():
    run = run_for(RetryPolicy())
    assert run.next_delay(KeyError("sg_status_list")) is None
    assert run.gave_up == "not a transient error"
    assert (run.attempts, run.retries) == (1, 0)


def test_run_keeps_the_first_and_last_error():
    run = run_for(RetryPolicy(jitter=0))
    run.next_delay(OUTAGE)
    run.next_delay(TimeoutError("timed out"))
    assert run.first_error == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert run.last_error == "TimeoutError: timed out"
    assert run.waited == 3


def test_the_sites_retry_after_is_honoured_up_to_max_delay(site, sg):
    site.faults.maintenance(10)
    error = raised_by(lambda: sg.find("Shot", [], ["code"]))
    asked = float(error.headers["retry-after"])
    assert asked > 2
    patient = run_for(RetryPolicy(first_delay=0.5, max_delay=60, jitter=0))
    assert patient.next_delay(error) == asked
    hurried = run_for(RetryPolicy(first_delay=0.5, max_delay=2, jitter=0))
    assert hurried.next_delay(error) == 2


# --------------------------------------------------------------------------- resolve_policy


def test_left_out_retry_follows_the_config_default():
    configured = RetryPolicy(attempts=8)
    assert resolve_policy(None, configured) is configured
    assert resolve_policy(None, None) is None


def test_retry_true_uses_the_config_default_or_the_standard_policy():
    configured = RetryPolicy(attempts=8)
    assert resolve_policy(True, configured) is configured
    assert resolve_policy(True, None) == RetryPolicy()


def test_retry_false_turns_retries_off_even_when_the_config_has_them_on():
    assert resolve_policy(False, RetryPolicy()) is None


def test_a_policy_or_a_dict_is_used_as_given():
    mine = RetryPolicy(attempts=2)
    assert resolve_policy(mine, RetryPolicy(attempts=9)) is mine
    assert resolve_policy({"attempts": 3, "max_delay": 5}, None) == RetryPolicy(
        attempts=3, max_delay=5
    )


def test_a_dict_with_an_unknown_key_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"unknown key 'attempt'.*attempts, first_delay"):
        resolve_policy({"attempt": 3}, None)


def test_a_dict_with_a_bad_value_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="attempts must be a whole number"):
        resolve_policy({"attempts": 0}, None)
    with pytest.raises(ValueError, match="max_delay must be >= first_delay"):
        resolve_policy({"first_delay": 120}, None)


@pytest.mark.parametrize("option", [3, "yes", ["attempts", 3]])
def test_any_other_retry_value_is_refused(option):
    with pytest.raises(ValueError, match="retry must be True, False, None, a dict"):
        resolve_policy(option, None)


# --------------------------------------------------------------------------- is_transient


def test_a_maintenance_window_is_transient(site, sg):
    site.faults.maintenance(5)
    error = raised_by(lambda: sg.find("Shot", [], ["code"]))
    assert isinstance(error, shotgun_api3.ProtocolError)
    assert error.errcode == 503
    assert is_transient(error)


@pytest.mark.parametrize("code", [502, 504])
def test_a_bad_gateway_past_the_clients_own_retries_is_transient(site, sg, code):
    site.faults.http_error(code, count=3)
    error = raised_by(lambda: sg.find("Shot", [], ["code"]))
    assert error.errcode == code
    assert is_transient(error)


@pytest.mark.parametrize("code, transient", [(500, True), (429, True), (404, False), (501, False)])
def test_http_errors_are_transient_when_they_may_pass(site, sg, code, transient):
    site.faults.http_error(code, count=1)
    error = raised_by(lambda: sg.find("Shot", [], ["code"]))
    assert error.errcode == code
    assert is_transient(error) is transient


def test_a_dropped_connection_is_transient(site, sg):
    sg.find("Shot", [], ["code"])  # a kept-alive connection, which the site then drops
    site.faults.drop_connections(2)  # httplib2 retries one drop by itself
    error = raised_by(lambda: sg.find("Shot", [], ["code"]))
    assert isinstance(error, ConnectionError)
    assert is_transient(error)


def test_a_reply_slower_than_the_client_timeout_is_transient(site):
    client = site.client(connect=False)
    client.config.timeout_secs = 0.3
    site.faults.slow(1.5)
    error = raised_by(lambda: client.find("Shot", [], ["code"]))
    assert "timed out" in str(error)
    assert is_transient(error)


def test_a_site_that_refuses_connections_is_transient():
    with Emulator(scripts=dict([SCRIPT])) as gone:
        url = gone.url
    client = shotgun_api3.Shotgun(url, *SCRIPT, connect=False)
    error = raised_by(lambda: client.find("Shot", [], ["code"]))
    assert isinstance(error, ConnectionRefusedError)
    assert is_transient(error)


def test_a_fault_for_a_bad_field_is_not_transient(sg):
    error = raised_by(lambda: sg.find("Shot", [["sg_no_such_field", "is", 1]], ["code"]))
    assert type(error) is shotgun_api3.Fault
    assert not is_transient(error)


def test_a_wrong_script_key_is_not_transient(site):
    client = shotgun_api3.Shotgun(site.url, SCRIPT[0], "not-the-key", connect=False)
    error = raised_by(lambda: client.find("Shot", [], ["code"]))
    assert isinstance(error, shotgun_api3.AuthenticationFault)
    assert not is_transient(error)


@pytest.mark.parametrize(
    "error",
    [KeyError("entity"), ValueError("bad"), TypeError("x"), KeyboardInterrupt(), SystemExit(1)],
)
def test_programming_errors_and_interrupts_are_not_transient(error):
    assert not is_transient(error)


def site_down_error(site, sg):
    site.faults.maintenance(5)
    return raised_by(lambda: sg.find("Shot", [], ["code"]))


def test_a_plugin_error_raised_from_a_site_error_is_transient(site, sg):
    outage = site_down_error(site, sg)

    class FarmError(Exception):
        pass

    def wrap_explicitly():
        raise FarmError("could not read the shot") from outage

    def wrap_implicitly():
        try:
            raise outage
        except shotgun_api3.ProtocolError:
            raise RuntimeError("site trouble")  # noqa: B904 - the implicit chain is the point

    assert is_transient(raised_by(wrap_explicitly))
    assert is_transient(raised_by(wrap_implicitly))


def test_a_bug_while_handling_a_site_error_is_not_transient(site, sg):
    outage = site_down_error(site, sg)

    def buggy_handler():
        try:
            raise outage
        except shotgun_api3.ProtocolError:
            return {}["fallback"]

    error = raised_by(buggy_handler)
    assert isinstance(error, KeyError)
    assert error.__context__ is outage
    assert not is_transient(error)


def test_an_error_raised_from_none_hides_its_cause(site, sg):
    outage = site_down_error(site, sg)

    def hide():
        try:
            raise outage
        except shotgun_api3.ProtocolError:
            raise RuntimeError("giving up on purpose") from None

    assert not is_transient(raised_by(hide))


def test_the_chain_is_followed_two_links_deep_only():
    inner = RuntimeError("two")
    inner.__cause__ = ConnectionResetError()
    middle = RuntimeError("one")
    middle.__cause__ = inner
    assert is_transient(middle)
    outer = RuntimeError("zero")
    outer.__cause__ = middle
    assert not is_transient(outer)


@pytest.mark.parametrize(
    "error, transient",
    [
        (urllib.error.HTTPError("http://farm", 503, "Busy", {}, None), True),
        (urllib.error.HTTPError("http://farm", 400, "Bad job", {}, None), False),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), True),
        (urllib.error.URLError("unknown url type: farm"), False),
        (FileNotFoundError(2, "No such file"), False),
    ],
    # Named by hand: on Python 3.9 an HTTPError without a body raises KeyError for any
    # attribute it lacks, the ``__name__`` pytest would look for to name it included.
    ids=["http-503", "http-400", "refused", "bad-url", "missing-file"],
)
def test_other_services_errors_are_classified_like_the_sites(error, transient):
    assert is_transient(error) is transient


class StorageAnswering(http.server.BaseHTTPRequestHandler):
    """A file store (S3, the site's own) that answers every request with ``code``."""

    code = 503

    def _answer(self) -> None:
        self.send_response(self.code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def storage():
    """Yields a function: the URL of a store answering that HTTP status to every request."""
    servers = []

    def answering(code: int) -> str:
        handler = type("Handler", (StorageAnswering,), {"code": code})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield answering
    for server in servers:
        server.shutdown()
        server.server_close()


def offline_client() -> shotgun_api3.Shotgun:
    sg = shotgun_api3.Shotgun("http://127.0.0.1:9", "script", "key-123456", connect=False)
    sg.BACKOFF = 0  # the client's own retries without pauses
    return sg


@pytest.mark.parametrize(("code", "transient"), [(503, True), (404, False)])
def test_the_clients_download_errors_are_judged_by_what_they_wrap(storage, code, transient):
    with pytest.raises(shotgun_api3.ShotgunFileDownloadError) as raised:
        offline_client().download_attachment({"url": storage(code) + "/plate.exr"})
    assert is_transient(raised.value) is transient


def test_an_upload_answered_503_past_the_clients_own_retries_is_transient(storage):
    with pytest.raises(shotgun_api3.ShotgunError) as raised:
        offline_client()._upload_data_to_storage(
            io.BytesIO(b"frame"), "image/jpeg", 5, storage(503) + "/bucket/part"
        )
    assert is_transient(raised.value)


def test_the_clients_own_errors_without_a_cause_are_not_transient():
    assert is_transient(shotgun_api3.ShotgunError("Max attempts limit reached."))
    assert not is_transient(shotgun_api3.ShotgunError("Path must be a valid file, got 'x'"))
    assert not is_transient(shotgun_api3.ShotgunThumbnailNotReady("not ready"))


# --------------------------------------------------------------------------- OutageLog


@pytest.fixture
def outage_log():
    return OutageLog(clock=FakeClock())


def records(caplog, plugin="farm"):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == f"plugin.{plugin}"]


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog, outage_log):
    caplog.set_level(logging.DEBUG, logger="plugin.farm")
    for _ in range(4):
        outage_log.retrying("farm", "farm.submit", OUTAGE, 2.0, event_id=12)
    outage_log.recovered("farm", attempts=4, waited=8.0)
    levels = [level for level, _ in records(caplog)]
    assert levels == [logging.WARNING, *[logging.DEBUG] * 3, logging.INFO]
    first, *_, last = records(caplog)
    assert "farm.submit" in first[1]
    assert "on event 12" in first[1]
    assert "4 retries" in last[1]


def test_a_second_outage_is_logged_again(caplog, outage_log):
    caplog.set_level(logging.INFO, logger="plugin.farm")
    for _ in range(2):
        outage_log.retrying("farm", "farm.submit", OUTAGE, 1.0)
        outage_log.recovered("farm", attempts=1, waited=1.0)
    assert [level for level, _ in records(caplog)] == [logging.WARNING, logging.INFO] * 2
    assert outage_log.stats("farm").outages == 2


def test_only_the_first_give_up_of_an_outage_is_an_error(caplog, outage_log):
    caplog.set_level(logging.INFO, logger="plugin.farm")
    for event_id in (1, 2, 3):
        outage_log.retrying("farm", "farm.submit", OUTAGE, 1.0, event_id=event_id)
        outage_log.gave_up("farm", "farm.submit", 5, 15.0, OUTAGE, event_id=event_id)
    outage_log.recovered("farm", attempts=0, waited=0.0)
    levels = [level for level, _ in records(caplog)]
    # outage starts, first give-up, two more give-ups, the end (a warning: events were lost)
    assert levels == [logging.WARNING, logging.ERROR, *[logging.WARNING] * 3]
    assert "3 events given up" in records(caplog)[-1][1]


def test_success_outside_an_outage_logs_nothing(caplog, outage_log):
    caplog.set_level(logging.DEBUG)
    outage_log.recovered("farm", attempts=0, waited=0.0)
    assert records(caplog) == []


def test_snapshot_counts_retries_give_ups_and_waiting():
    clock = FakeClock()
    outage_log = OutageLog(clock=clock)
    outage_log.retrying("farm", "farm.submit", OUTAGE, 2.0)
    outage_log.retrying("farm", "farm.submit", OUTAGE, 4.0)
    clock.now += 6
    assert outage_log.snapshot() == {
        "farm": {
            "retries": 2,
            "recoveries": 0,
            "give_ups": 0,
            "waited_seconds": 6.0,
            "outages": 1,
            "in_outage": True,
            "outage_seconds": 6.0,
            "last_error": "ConnectionResetError: [Errno 104] Connection reset by peer",
        }
    }
    outage_log.recovered("farm", attempts=2, waited=6.0)
    after = outage_log.snapshot()["farm"]
    assert (after["in_outage"], after["recoveries"], after["outage_seconds"]) == (False, 1, 0.0)


# --------------------------------------------------------------------------- the worker's loop


class Counting:
    """A call that counts its runs."""

    def __init__(self, call):
        self.call = call
        self.runs = 0

    def __call__(self):
        self.runs += 1
        return self.call()


def test_worker_loop_writes_once_through_a_maintenance_window(site, sg, project, outage_log):
    code = f"sh_{uuid.uuid4().hex[:8]}"
    before = site.latest_event_id()
    create = Counting(lambda: sg.create("Shot", {"code": code, "project": project}))
    site.faults.maintenance(1.5)
    shot = call_with_retry(
        create,
        QUICK,
        wait=threading.Event().wait,
        outage_log=outage_log,
        plugin="farm",
        callback="farm.create_shot",
    )
    assert create.runs > 1  # it did hit the window
    assert [s["id"] for s in shots_named(sg, code)] == [shot["id"]]
    assert len(new_shot_events(site, sg, {shot["id"]}, before)) == 1
    assert not outage_log.stats("farm").outage_since
    assert outage_log.stats("farm").recoveries == 1


def test_worker_loop_raises_a_bug_at_once_without_waiting(sg, outage_log):
    waits = []
    find = Counting(lambda: sg.find("Shot", [["sg_no_such_field", "is", 1]], ["code"]))
    with pytest.raises(shotgun_api3.Fault):
        call_with_retry(
            find, QUICK, wait=waits.append, outage_log=outage_log, plugin="p", callback="p.cb"
        )
    assert (find.runs, waits) == (1, [])
    assert outage_log.stats("p").give_ups == 0


def test_worker_loop_raises_the_last_error_when_the_policy_gives_up(site, sg, outage_log):
    site.faults.maintenance(30)
    waits = []
    find = Counting(lambda: sg.find("Shot", [], ["code"]))
    policy = RetryPolicy(attempts=3, first_delay=1, jitter=0)
    with pytest.raises(shotgun_api3.ProtocolError) as caught:
        call_with_retry(
            find,
            policy,
            wait=lambda s: waits.append(s) or False,
            outage_log=outage_log,
            plugin="p",
            callback="p.cb",
        )
    assert caught.value.errcode == 503
    assert find.runs == 3
    assert len(waits) == 2
    assert outage_log.stats("p").give_ups == 1


def test_a_stop_during_the_wait_interrupts_the_retry(site, sg, outage_log):
    site.faults.maintenance(30)
    find = Counting(lambda: sg.find("Shot", [], ["code"]))
    with pytest.raises(RetryInterrupted) as caught:
        call_with_retry(
            find, QUICK, wait=lambda s: True, outage_log=outage_log, plugin="p", callback="p.cb"
        )
    assert find.runs == 1
    assert isinstance(caught.value.__cause__, shotgun_api3.ProtocolError)


def test_without_a_policy_the_callback_runs_once(site, sg, outage_log):
    site.faults.maintenance(30)
    find = Counting(lambda: sg.find("Shot", [], ["code"]))
    with pytest.raises(shotgun_api3.ProtocolError):
        call_with_retry(
            find, None, wait=lambda s: False, outage_log=outage_log, plugin="p", callback="p.cb"
        )
    assert find.runs == 1


# --------------------------------------------------------------------------- retrying()


def test_a_decorated_call_goes_through_a_maintenance_window_once(site, sg, project):
    code = f"sh_{uuid.uuid4().hex[:8]}"
    runs = []

    @retrying(QUICK)
    def create_shot():
        runs.append(1)
        return sg.create("Shot", {"code": code, "project": project})

    site.faults.maintenance(1.5)
    shot = create_shot()
    assert len(runs) > 1
    assert [s["id"] for s in shots_named(sg, code)] == [shot["id"]]


def test_an_attempt_loop_goes_through_a_maintenance_window_once(site, sg, project):
    code = f"sh_{uuid.uuid4().hex[:8]}"
    before = site.latest_event_id()
    site.faults.maintenance(1.0)
    tries = 0
    for attempt in retrying(QUICK):
        with attempt:
            tries += 1
            shot = sg.create("Shot", {"code": code, "project": project})
    assert tries > 1
    assert [s["id"] for s in shots_named(sg, code)] == [shot["id"]]
    assert len(new_shot_events(site, sg, {shot["id"]}, before)) == 1


def test_the_helper_does_not_retry_a_fault(sg):
    runs = []

    @retrying(QUICK, sleep=lambda s: pytest.fail("a fault must not be waited for"))
    def bad_find():
        runs.append(1)
        return sg.find("Shot", [["sg_no_such_field", "is", 1]], ["code"])

    with pytest.raises(shotgun_api3.Fault):
        bad_find()
    assert runs == [1]


def test_the_helper_gives_up_with_the_last_error(site, sg, caplog):
    site.faults.http_error(500, count=4)
    sleeps = []
    logger = logging.getLogger("plugin.farm.submit")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    with pytest.raises(shotgun_api3.ProtocolError) as caught:
        for attempt in retrying(
            attempts=4, first_delay=1, jitter=0, sleep=sleeps.append, logger=logger
        ):
            with attempt:
                sg.find("Shot", [], ["code"])
    assert caught.value.errcode == 500
    assert sleeps == [1, 2, 4]
    levels = [r.levelno for r in caplog.records if r.name == logger.name]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING]


def test_retrying_false_tries_once(site, sg):
    site.faults.maintenance(30)
    runs = []

    @retrying(False, sleep=lambda s: pytest.fail("no retry was asked for"))
    def find():
        runs.append(1)
        return sg.find("Shot", [], ["code"])

    with pytest.raises(shotgun_api3.ProtocolError):
        find()
    assert runs == [1]


def test_retrying_takes_a_policy_its_fields_or_nothing():
    assert retrying().policy == RetryPolicy()
    assert retrying(attempts=2, max_delay=9).policy == RetryPolicy(attempts=2, max_delay=9)
    assert retrying({"attempts": 7}, first_delay=2).policy == RetryPolicy(attempts=7, first_delay=2)
    with pytest.raises(ValueError, match="unknown key 'tries'"):
        retrying(tries=3)
    with pytest.raises(ValueError, match="one try"):
        retrying(False, attempts=3)


def test_a_bare_decorator_keeps_the_functions_name_and_result():
    failures = [ConnectionResetError(), TimeoutError("timed out")]
    sleeps = []

    @retrying
    def flaky(value):
        """Docs stay."""
        if failures:
            raise failures.pop()
        return value

    flaky_fast = retrying(sleep=sleeps.append)(flaky.__wrapped__)
    assert flaky.__name__ == "flaky"
    assert flaky.__doc__ == "Docs stay."
    assert flaky_fast(42) == 42
    assert len(sleeps) == 2
    assert flaky(7) == 7


def test_the_documented_defaults_are_the_policys_defaults():
    """docs/retry.md and the example config quote the defaults; they once drifted apart."""
    import re
    from pathlib import Path

    from shotgun_events.config import RetryPolicy

    repo = Path(__file__).resolve().parents[1]
    defaults = RetryPolicy()
    table = dict(
        re.findall(r"^\| `(\w+)` \| ([\d.]+) \|", (repo / "docs/retry.md").read_text(), re.M)
    )
    example = (repo / "conf/shotgunEventDaemon.conf").read_text()
    [line] = re.findall(r"#\s+plugin_retry: (attempts=.*)", example)
    in_config = dict(part.strip().split("=") for part in line.split(","))
    for part in ("attempts", "first_delay", "max_delay", "give_up_after", "jitter"):
        assert float(table[part]) == getattr(defaults, part), part
        assert float(in_config[part]) == getattr(defaults, part), part
