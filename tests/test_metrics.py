"""metrics.py: the health verdict, the Prometheus counters and gauges, the HTTP endpoint.

Pure tests of ``health()`` first, then the observer through its registry, then the server
over real HTTP with a status function the test controls, then the real engine against the
site emulator (in this process, and as the daemon process the service starts).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from harness import recorder_plugin
from shotgun_events.metrics import MetricsServer, PrometheusObserver, health

NOW = 1_700_000_000.0
STUCK_AFTER = 60.0
POLL_STALE_AFTER = 30.0


def plugin_status(name: str = "alpha", **changes: Any) -> Dict[str, Any]:
    plugin = {
        "folder": "/studio/plugins",
        "name": name,
        "path": f"/studio/plugins/{name}.py",
        "state": "attached",
        "active": True,
        "reason": None,
        "position": 120,
        "open_gaps": 0,
        "lag_events": 0,
        "lag_seconds": 0.0,
        "queued_events": 0,
        "delivered": 40,
        "callback_runs": 40,
        "errors": 0,
        "last_error": None,
        "busy_callback": None,
        "busy_seconds": None,
    }
    plugin.update(changes)
    return plugin


def engine_status(*plugins: Dict[str, Any], **changes: Any) -> Dict[str, Any]:
    """A status as Engine.status() writes it: a healthy engine that just polled."""
    status = {
        "pid": 4242,
        "started_at": NOW - 3600,
        "written_at": NOW,
        "config": "/etc/shotgunEventDaemon.conf",
        "head": 120,
        "last_poll_at": NOW - 2,
        "open_gaps": 0,
        "site": {
            "url": "https://studio.shotgunstudio.com",
            "reachable": True,
            "outage_seconds": None,
            "failed_requests": 0,
            "last_error": None,
        },
        "state_file": {"path": "/var/lib/sged/events.id", "healthy": True, "last_error": None},
        "plugins": list(plugins) if plugins else [plugin_status()],
    }
    status.update(changes)
    return status


def judge(status: Dict[str, Any], now: float = NOW) -> Tuple[bool, list]:
    return health(status, now=now, stuck_after=STUCK_AFTER, poll_stale_after=POLL_STALE_AFTER)


# --------------------------------------------------------------------------- health()


def test_polling_engine_with_idle_plugins_is_healthy():
    assert judge(engine_status()) == (True, [])


def test_plugin_inside_a_callback_within_the_limit_is_healthy():
    busy = plugin_status(busy_callback="alpha.callback", busy_seconds=STUCK_AFTER)
    assert judge(engine_status(busy)) == (True, [])


def test_plugin_stuck_in_a_callback_is_unhealthy_and_named():
    stuck = plugin_status("publish", busy_callback="publish.on_version", busy_seconds=75.3)
    healthy, reasons = judge(engine_status(plugin_status(), stuck))
    assert not healthy
    assert len(reasons) == 1
    assert "publish" in reasons[0]
    assert "publish.on_version" in reasons[0]
    assert "75 s" in reasons[0]


def test_a_callbacks_own_deadline_is_the_limit_while_it_runs():
    short = plugin_status("fast", busy_callback="fast.ping", busy_seconds=2.0, busy_deadline=1)
    long = plugin_status("slow", busy_callback="slow.render", busy_seconds=90, busy_deadline=600)
    healthy, reasons = judge(engine_status(short, long))  # the default limit is 60 s
    assert not healthy
    assert reasons == ["plugin fast stuck in callback fast.ping for 2 s (limit 1 s)"]


def test_unreachable_site_is_unhealthy_with_its_last_error():
    site = {
        "url": "https://studio.shotgunstudio.com",
        "reachable": False,
        "outage_seconds": 42.0,
        "failed_requests": 7,
        "last_error": "HTTP 503 maintenance",
    }
    healthy, reasons = judge(engine_status(site=site))
    assert not healthy
    assert reasons == ["site unreachable for 42 s (7 failed requests): HTTP 503 maintenance"]


def test_poll_older_than_the_limit_is_unhealthy():
    healthy, reasons = judge(engine_status(last_poll_at=NOW - POLL_STALE_AFTER - 5))
    assert not healthy
    assert reasons == ["last successful poll 35 s ago (limit 30 s)"]


def test_start_up_before_the_first_poll_is_healthy_until_the_poll_limit():
    starting = engine_status(started_at=NOW - 5, last_poll_at=None)
    assert judge(starting) == (True, [])
    healthy, reasons = judge(starting, now=NOW + POLL_STALE_AFTER)
    assert not healthy
    assert "no successful poll" in reasons[0]


def test_engine_that_has_not_started_is_unhealthy():
    healthy, reasons = judge(engine_status(started_at=None, last_poll_at=None))
    assert not healthy
    assert reasons == ["the engine has not started polling yet"]


def test_unhealthy_state_file_is_unhealthy_with_its_error():
    state_file = {"path": "/x", "healthy": False, "last_error": "No space left on device"}
    healthy, reasons = judge(engine_status(state_file=state_file))
    assert not healthy
    assert reasons == ["state file unhealthy: No space left on device"]


def test_inactive_plugin_does_not_make_the_daemon_unhealthy():
    broken = plugin_status(
        "broken", state="inactive", active=False, reason="SyntaxError: invalid syntax"
    )
    assert judge(engine_status(plugin_status(), broken)) == (True, [])


def test_every_problem_is_reported_at_once():
    stuck = plugin_status(busy_callback="alpha.cb", busy_seconds=STUCK_AFTER + 1)
    status = engine_status(
        stuck,
        last_poll_at=NOW - 100,
        state_file={"healthy": False, "last_error": "read-only file system"},
    )
    status["site"]["reachable"] = False
    healthy, reasons = judge(status)
    assert not healthy
    assert len(reasons) == 4


# --------------------------------------------------------------------------- the observer


def test_observer_counts_delivered_events_per_plugin():
    observer = PrometheusObserver()
    for _ in range(3):
        observer.event_delivered("alpha")
    observer.event_delivered("beta")
    sample = observer.registry.get_sample_value
    assert sample("shotgun_events_events_delivered_total", {"plugin": "alpha"}) == 3
    assert sample("shotgun_events_events_delivered_total", {"plugin": "beta"}) == 1


def test_observer_times_callbacks_and_counts_their_errors():
    observer = PrometheusObserver()
    observer.callback_ran("alpha", "alpha.on_shot", 0.02, False)
    observer.callback_ran("alpha", "alpha.on_shot", 7.0, True)
    labels = {"plugin": "alpha", "callback": "alpha.on_shot"}
    sample = observer.registry.get_sample_value
    assert sample("shotgun_events_callback_duration_seconds_count", labels) == 2
    assert sample("shotgun_events_callback_duration_seconds_sum", labels) == pytest.approx(7.02)
    assert sample("shotgun_events_callback_duration_seconds_bucket", {**labels, "le": "0.025"}) == 1
    assert sample("shotgun_events_callback_errors_total", labels) == 1


def test_observer_times_site_requests_and_counts_failures():
    observer = PrometheusObserver()
    observer.site_request("poll", 0.01, True)
    observer.site_request("poll", 60.0, False)
    observer.site_request("gap re-query", 0.02, True)
    sample = observer.registry.get_sample_value
    assert sample("shotgun_events_site_request_seconds_count", {"request": "poll"}) == 2
    assert sample("shotgun_events_site_request_failures_total", {"request": "poll"}) == 1
    assert sample("shotgun_events_site_request_seconds_count", {"request": "gap re-query"}) == 1
    assert sample("shotgun_events_site_request_failures_total", {"request": "gap re-query"}) is None


def test_observer_counts_events_fetched_by_the_poll():
    observer = PrometheusObserver()
    observer.events_fetched(500)
    observer.events_fetched(0)
    observer.events_fetched(12)
    assert observer.registry.get_sample_value("shotgun_events_events_fetched_total") == 512


def test_observer_counts_events_read_by_plugins_catching_up():
    observer = PrometheusObserver()
    observer.events_caught_up("alpha", 500)
    observer.events_caught_up("alpha", 20)
    observer.events_caught_up("beta", 0)
    sample = observer.registry.get_sample_value
    name = "shotgun_events_events_read_catching_up_total"
    assert sample(name, {"plugin": "alpha"}) == 520
    assert sample(name, {"plugin": "beta"}) == 0


def test_observers_keep_private_registries():
    first, second = PrometheusObserver(), PrometheusObserver()
    first.event_delivered("alpha")
    delivered = "shotgun_events_events_delivered_total"
    assert second.registry.get_sample_value(delivered, {"plugin": "alpha"}) is None
    assert REGISTRY.get_sample_value(delivered, {"plugin": "alpha"}) is None


def test_a_failing_metric_never_raises_into_the_engine(caplog):
    observer = PrometheusObserver()
    observer.events_fetched(-1)  # prometheus_client refuses to decrease a counter
    assert "events_fetched failed" in caplog.text
    assert observer.registry.get_sample_value("shotgun_events_events_fetched_total") == 0


# --------------------------------------------------------------------------- the server


class FakeEngine:
    """A status function the test changes between requests."""

    def __init__(self) -> None:
        self.current: Dict[str, Any] = engine_status()
        self.error: Optional[Exception] = None

    def status(self) -> Dict[str, Any]:
        if self.error is not None:
            raise self.error
        status = json.loads(json.dumps(self.current))
        status["last_poll_at"] = time.time() - 1
        return status


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def observer():
    return PrometheusObserver()


@pytest.fixture
def server(engine, observer):
    running = MetricsServer(
        engine.status,
        observer,
        host="127.0.0.1",
        port=0,
        stuck_after=STUCK_AFTER,
        poll_stale_after=POLL_STALE_AFTER,
    ).start()
    try:
        yield running
    finally:
        running.stop()


def get(url: str) -> Tuple[int, Dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def scrape(server: MetricsServer) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    return scrape_url(server.url)


def scrape_url(url: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    code, headers, body = get(url + "/metrics")
    assert code == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_healthz_answers_200_with_every_plugins_state(server, engine):
    engine.current = engine_status(plugin_status("alpha"), plugin_status("beta", state="loading"))
    code, headers, body = get(server.url + "/healthz")
    assert code == 200
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["healthy"] is True
    assert answer["reasons"] == []
    assert answer["plugins"] == {"alpha": "attached", "beta": "loading"}


def test_healthz_answers_503_naming_the_stuck_plugin(server, engine):
    stuck = plugin_status("publish", busy_callback="publish.on_version", busy_seconds=600)
    engine.current = engine_status(plugin_status("alpha"), stuck)
    code, _, body = get(server.url + "/healthz")
    assert code == 503
    answer = json.loads(body)
    assert answer["healthy"] is False
    assert len(answer["reasons"]) == 1
    assert "publish.on_version" in answer["reasons"][0]


def test_healthz_reports_an_inactive_plugin_and_why_but_stays_200(server, engine):
    broken = plugin_status("broken", state="inactive", active=False, reason="stopOnError at 118")
    engine.current = engine_status(plugin_status("alpha"), broken)
    code, _, body = get(server.url + "/healthz")
    assert code == 200
    answer = json.loads(body)
    assert answer["plugins"]["broken"] == "inactive"
    assert answer["inactive"] == {"broken": "stopOnError at 118"}


def test_metrics_serve_counters_and_status_gauges(server, engine, observer):
    engine.current = engine_status(
        plugin_status("alpha", position=118, lag_events=2, lag_seconds=1.5, queued_events=2),
        plugin_status("broken", state="inactive", active=False, position=90, lag_seconds=None),
    )
    observer.event_delivered("alpha")
    observer.callback_ran("alpha", "alpha.cb", 0.1, True)
    samples = scrape(server)
    alpha = (("folder", "/studio/plugins"), ("plugin", "alpha"))
    broken = (("folder", "/studio/plugins"), ("plugin", "broken"))
    assert samples[("shotgun_events_events_delivered_total", (("plugin", "alpha"),))] == 1
    errors = (("callback", "alpha.cb"), ("plugin", "alpha"))
    assert samples[("shotgun_events_callback_errors_total", errors)] == 1
    assert samples[("shotgun_events_healthy", ())] == 1
    assert samples[("shotgun_events_head_event_id", ())] == 120
    assert samples[("shotgun_events_site_up", ())] == 1
    assert samples[("shotgun_events_state_file_healthy", ())] == 1
    assert samples[("shotgun_events_plugin_position", alpha)] == 118
    assert samples[("shotgun_events_plugin_lag_events", alpha)] == 2
    assert samples[("shotgun_events_plugin_lag_seconds", alpha)] == 1.5
    assert samples[("shotgun_events_plugin_queued_events", alpha)] == 2
    assert samples[("shotgun_events_plugin_active", alpha)] == 1
    assert samples[("shotgun_events_plugin_active", broken)] == 0
    assert ("shotgun_events_plugin_lag_seconds", broken) not in samples
    assert samples[("shotgun_events_plugin_state", (*broken, ("state", "inactive")))] == 1


def test_gauges_follow_the_engine_at_every_scrape(server, engine):
    assert scrape(server)[("shotgun_events_site_up", ())] == 1
    engine.current["site"].update(reachable=False, outage_seconds=12.5, failed_requests=3)
    engine.current["head"] = 200
    samples = scrape(server)
    assert samples[("shotgun_events_site_up", ())] == 0
    assert samples[("shotgun_events_site_outage_seconds", ())] == 12.5
    assert samples[("shotgun_events_head_event_id", ())] == 200
    assert samples[("shotgun_events_healthy", ())] == 0


def test_other_paths_are_not_found(server):
    for path in ("/", "/metricsx", "/healthz/extra", "/status"):
        code, _, _ = get(server.url + path)
        assert code == 404, path


def test_a_failing_status_answers_500_and_the_server_keeps_serving(server, engine):
    engine.error = RuntimeError("engine not ready")
    code, _, body = get(server.url + "/healthz")
    assert code == 500
    assert b"engine not ready" in body
    engine.error = None
    assert get(server.url + "/healthz")[0] == 200


def test_server_listens_on_the_configured_address_only(server):
    port = int(server.url.rsplit(":", 1)[1])
    assert server.url == f"http://127.0.0.1:{port}"
    # Linux routes all of 127/8 to loopback: a server bound to 0.0.0.0 would answer here.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()


def test_stop_releases_the_port_and_stops_answering(engine, observer):
    first = MetricsServer(
        engine.status,
        observer,
        host="127.0.0.1",
        port=0,
        stuck_after=STUCK_AFTER,
        poll_stale_after=POLL_STALE_AFTER,
    ).start()
    port = int(first.url.rsplit(":", 1)[1])
    first.stop()
    first.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    second = MetricsServer(
        engine.status,
        observer,
        host="127.0.0.1",
        port=port,
        stuck_after=STUCK_AFTER,
        poll_stale_after=POLL_STALE_AFTER,
    ).start()
    try:
        assert get(second.url + "/healthz")[0] == 200
    finally:
        second.stop()


def test_a_taken_port_is_an_error_at_start(server, engine, observer):
    port = int(server.url.rsplit(":", 1)[1])
    clash = MetricsServer(
        engine.status,
        observer,
        host="127.0.0.1",
        port=port,
        stuck_after=STUCK_AFTER,
        poll_stale_after=POLL_STALE_AFTER,
    )
    with pytest.raises(OSError):
        clash.start()


def test_starting_a_running_server_again_is_refused(server):
    with pytest.raises(RuntimeError, match="already serving"):
        server.start()
    assert get(server.url + "/healthz")[0] == 200


# --------------------------------------------------------------------------- with the engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_first_poll(url: str) -> None:
    """Events made before the engine has read the site's newest event would be history."""
    poll = ("shotgun_events_last_poll_timestamp_seconds", ())
    wait_until(lambda: poll in scrape_url(url), 20, "the first poll")
    assert healthz(url)[0] == 200


def healthz(url: str) -> Tuple[int, Dict[str, Any]]:
    code, _, body = get(url + "/healthz")
    return code, json.loads(body)


def delivered(samples, plugin: str) -> float:
    return samples.get(("shotgun_events_events_delivered_total", (("plugin", plugin),)), 0)


def blocking_plugin(release_file) -> str:
    """A recorder that waits inside its callback until the test creates ``release_file``."""
    body = f"""
        while not os.path.exists({str(release_file)!r}):
            time.sleep(0.05)
    """
    return recorder_plugin(body=body)


@pytest.fixture
def running_engine(tmp_path, daemon, monkeypatch):
    """The real Engine in a thread, counting into a PrometheusObserver, with its server."""
    pytest.importorskip("shotgun_events.state", reason="state.py is not written yet")
    monkeypatch.setenv("SGED_TEST_RECORD", str(daemon.record_file))
    # The plugins' helper module reads the record file's name when first imported; in this
    # process it would otherwise still point at an earlier test's file.
    monkeypatch.delitem(sys.modules, "_recorder", raising=False)
    runner = EngineRunner(daemon.config_path, PrometheusObserver())
    yield runner
    runner.stop_all()


class EngineRunner:
    """Starts the real Engine in a thread with its metrics server; one observer for all runs."""

    def __init__(self, config_path: Path, observer: PrometheusObserver) -> None:
        self.config_path = config_path
        self.observer = observer
        self.started: list = []

    def __call__(self, stuck_after: float = STUCK_AFTER) -> Tuple[Any, MetricsServer]:
        from shotgun_events.config import load_config
        from shotgun_events.engine import Engine

        # The config is read at each start, so a test may change it before starting.
        engine = Engine(load_config(self.config_path), observer=self.observer)
        server = MetricsServer(
            engine.status,
            self.observer,
            host="127.0.0.1",
            port=0,
            stuck_after=stuck_after,
            poll_stale_after=POLL_STALE_AFTER,
        ).start()
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        self.started.append((engine, server, thread))
        return engine, server

    def stop_all(self) -> None:
        """Stop every engine started so far and wait for each to save its positions."""
        for engine, server, thread in self.started:
            server.stop()
            engine.stop()
            thread.join(30)
        self.started.clear()


def test_engine_counts_every_delivered_event_and_is_healthy(site, daemon, running_engine):
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("beta", recorder_plugin({"Shotgun_Shot_New": None}))
    _, server = running_engine()
    wait_for_first_poll(server.url)
    first, _ = site.insert_events(25)
    new_first, new_last = site.insert_events(4, event_type="Shotgun_Shot_New", attribute_name=None)
    daemon.wait_seen("alpha", range(first, new_last + 1))
    daemon.wait_seen("beta", range(new_first, new_last + 1))
    wait_until(lambda: delivered(scrape(server), "alpha") == 29, 10, "alpha's counter")
    samples = scrape(server)
    assert delivered(samples, "alpha") == len(daemon.seen("alpha")) == 29
    assert delivered(samples, "beta") == len(daemon.seen("beta")) == 4
    assert samples[("shotgun_events_events_fetched_total", ())] >= 29
    assert samples[("shotgun_events_site_request_seconds_count", (("request", "poll"),))] > 0
    assert samples[("shotgun_events_head_event_id", ())] == new_last
    code, answer = healthz(server.url)
    assert code == 200
    assert answer["plugins"] == {"alpha": "attached", "beta": "attached"}


@pytest.mark.parametrize(
    "backlog, inbox",
    [(20, 20), (5, 10)],  # a backlog smaller than a page counts as a page
)
def test_events_read_while_catching_up_are_counted_for_that_plugin(
    tmp_path, site, daemon, running_engine, backlog, inbox
):
    release = tmp_path / "release"
    # Pages of 10; a plugin with a full inbox stops being fed and reads on its own.
    daemon.write_config(max_event_batch_size=10, max_plugin_backlog=backlog)
    daemon.add_plugin("fast", recorder_plugin())
    daemon.add_plugin("slow", blocking_plugin(release))
    _, server = running_engine()
    wait_for_first_poll(server.url)
    both_attached = {"fast": "attached", "slow": "attached"}
    wait_until(lambda: healthz(server.url)[1]["plugins"] == both_attached, 20, "both to attach")
    batches = [site.insert_events(10) for _ in range(6)]
    first, last = batches[0][0], batches[-1][1]
    daemon.wait_seen("fast", range(first, last + 1))
    release.touch()
    daemon.wait_seen("slow", range(first, last + 1))
    samples = scrape(server)
    read_alone = "shotgun_events_events_read_catching_up_total"
    # slow held its first page (10) and had a full inbox queued when it stopped being fed;
    # it read the rest itself. fast was fed all along.
    assert samples.get((read_alone, (("plugin", "slow"),)), 0) >= 60 - 10 - inbox
    assert samples.get((read_alone, (("plugin", "fast"),)), 0) == 0
    assert delivered(samples, "slow") == 60


def test_plugins_saved_at_event_0_are_fed_by_the_engine_not_each_reading_alone(
    site, daemon, running_engine
):
    """Position 0 ("before every event") is a position: the engine starts reading there
    for every plugin, instead of at the newest event with each plugin catching up alone
    (which read the site once per plugin: a 10-plugin catch-up ran 3.5 times slower)."""
    import pickle

    first, last = site.insert_events(30)
    assert first == 1
    folder = str(daemon.plugin_dir)
    state = {folder: {"alpha": (0, {}), "beta": (0, {})}}
    daemon.state_file.write_bytes(pickle.dumps(state, protocol=2))
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("beta", recorder_plugin())
    _, server = running_engine()
    daemon.wait_seen("alpha", range(first, last + 1))
    daemon.wait_seen("beta", range(first, last + 1))
    samples = scrape(server)
    for plugin in ("alpha", "beta"):
        read_alone = ("shotgun_events_events_read_catching_up_total", (("plugin", plugin),))
        assert samples.get(read_alone, 0) == 0, plugin


def test_engine_with_a_plugin_stuck_in_a_callback_is_503_naming_it(
    tmp_path, site, daemon, running_engine
):
    release = tmp_path / "release"
    daemon.add_plugin("fast", recorder_plugin())
    daemon.add_plugin("slow", blocking_plugin(release))
    _, server = running_engine(stuck_after=0.5)
    wait_for_first_poll(server.url)
    first, last = site.insert_events(3)
    daemon.wait_seen("fast", range(first, last + 1))
    wait_until(lambda: healthz(server.url)[0] == 503, 20, "the stuck plugin to show")
    reasons = healthz(server.url)[1]["reasons"]
    assert len(reasons) == 1
    assert "plugin slow stuck in callback" in reasons[0]
    release.touch()
    daemon.wait_seen("slow", range(first, last + 1))
    wait_until(lambda: healthz(server.url)[0] == 200, 20, "health to come back")


def test_a_plugin_past_its_own_callback_deadline_is_503(tmp_path, site, daemon, running_engine):
    release = tmp_path / "release"
    slow = blocking_plugin(release).replace("stopOnError=True)", "stopOnError=True, timeout=0.5)")
    assert "timeout=0.5" in slow
    daemon.add_plugin("slow", slow)
    _, server = running_engine(stuck_after=300)  # the default limit would wait 5 minutes
    wait_for_first_poll(server.url)
    site.insert_events(1)
    wait_until(lambda: healthz(server.url)[0] == 503, 20, "the stuck plugin to show")
    assert "(limit 0.5 s)" in healthz(server.url)[1]["reasons"][0]
    release.touch()
    wait_until(lambda: healthz(server.url)[0] == 200, 20, "health to come back")


def test_site_outage_makes_the_engine_unhealthy_and_counts_failed_requests(
    site, daemon, running_engine
):
    daemon.add_plugin("alpha", recorder_plugin())
    _, server = running_engine()
    wait_for_first_poll(server.url)
    site.faults.maintenance(60)
    wait_until(lambda: healthz(server.url)[0] == 503, 20, "the outage to show")
    assert healthz(server.url)[1]["reasons"][0].startswith("site unreachable")
    failures = scrape(server)[
        ("shotgun_events_site_request_failures_total", (("request", "poll"),))
    ]
    assert failures >= 1
    site.faults.maintenance(0)
    wait_until(lambda: healthz(server.url)[0] == 200, 20, "the site to come back")


# --------------------------------------------------------------------------- the daemon process


def test_daemon_serves_metrics_and_health_on_its_configured_port(tmp_path, site, daemon):
    port = free_port()
    release = tmp_path / "release"
    daemon.write_config(metrics_port=port, callback_timeout=1)
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("slow", blocking_plugin(release))
    daemon.start()
    daemon.wait_started()
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return get(url + "/healthz")[0] in (200, 503)
        except urllib.error.URLError:
            return False

    daemon.wait_for(answering, 5, "the metrics endpoint")
    wait_for_first_poll(url)
    first, last = site.insert_events(10)
    daemon.wait_seen("alpha", range(first, last + 1))
    # The counters live in the daemon process: what it serves is what its plugins did.
    daemon.wait_for(lambda: delivered(scrape_url(url), "alpha") == 10, 10, "alpha's counter")
    assert len(daemon.seen("alpha")) == 10
    daemon.wait_for(lambda: healthz(url)[0] == 503, 20, "the stuck plugin to show")
    assert any("plugin slow stuck" in reason for reason in healthz(url)[1]["reasons"])
    release.touch()
    assert daemon.stop() == 0
