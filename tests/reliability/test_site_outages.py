"""Site outages while the daemon runs: it keeps running, backs off, alerts once, loses nothing.

One daemon lives through a sequence of outages of the site, each made by the emulator's
fault plan while events keep arriving: a 30 s maintenance window (HTTP 503), connection
resets, timeouts, bursts of 502 and of 504, and an authentication failure (the daemon's
script key revoked, then restored). After each outage every plugin gets every event that
arrived during it, exactly once; each outage gives exactly one alert (the ERROR line, mailed
to a local SMTP server) and one "answers again" line; and the daemon never exits.
"""

from __future__ import annotations

import re
import time
from typing import Callable, List

import pytest
from reliability_support import fsync_recorder_plugin

from harness import ENGINE_SCRIPT

pytestmark = pytest.mark.reliability

#: "lagging" is slow enough to fall out of the engine's batches (max_plugin_backlog) and
#: read the site on its own connection: an outage seen by two connections is one alert.
PLUGINS = ("ingest", "lagging", "notify")
#: The plugins that keep up: how soon they have the events is the time to resume.
KEEPING_UP = ("ingest", "notify")
ALERT = "The site is unreachable"
RESUMED = "The site answers again"
#: conn_retry_sleep, the backoff cap; the first pause is also capped to it.
BACKOFF_CAP = 1.0
MAINTENANCE_SECONDS = 30.0


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def failed_requests(log: str) -> int:
    """The failed requests the daemon counted in its last outage ("... and N failed requests")."""
    line = [line for line in log.splitlines() if RESUMED in line][-1]
    match = re.search(r"and (\d+) failed requests", line)
    assert match, line
    return int(match.group(1))


class OutageRun:
    """Drives one outage and checks what the daemon did about it."""

    def __init__(self, site, daemon, mailbox, figures) -> None:
        self.site = site
        self.daemon = daemon
        self.mailbox = mailbox
        self.figures = figures
        self.delivered: List[int] = []

    def outage(self, name: str, begin: Callable[[], None], end: Callable[[], None]) -> int:
        """``begin`` makes the site fail; ``end`` returns once it is healthy again.

        Returns how many requests the site failed during the outage."""
        daemon, site = self.daemon, self.site
        alerts_before = daemon.count_in_log(ALERT)
        resumed_before = daemon.count_in_log(RESUMED)
        emails_before = len(self.mailbox.subjects(ALERT))
        begin()
        first, last = site.insert_events(20)  # events keep arriving during the outage
        during = list(range(first, last + 1))
        daemon.wait_for(lambda: daemon.count_in_log(ALERT) > alerts_before, 60, f"{name} alert")
        end()
        healthy_at = time.monotonic()
        for plugin in KEEPING_UP:
            daemon.wait_seen(plugin, during, timeout=60)
        resume_seconds = time.monotonic() - healthy_at
        daemon.wait_seen("lagging", during, timeout=60)
        daemon.wait_for(lambda: daemon.count_in_log(RESUMED) > resumed_before, 30, "the end")
        wait_until(lambda: len(self.mailbox.subjects(ALERT)) > emails_before, 30, "the email")
        failed = failed_requests(daemon.log())
        # A little more traffic after the outage: no late second alert, no second email.
        after = list(range(*site.insert_events(5)))
        for plugin in PLUGINS:
            daemon.wait_seen(plugin, after)
        assert daemon.alive(), f"the daemon exited during {name}"
        alerts = daemon.count_in_log(ALERT) - alerts_before
        emails = len(self.mailbox.subjects(ALERT)) - emails_before
        assert (alerts, emails) == (1, 1), f"{name}: {alerts} alerts and {emails} emails"
        assert daemon.count_in_log(RESUMED) - resumed_before == 1
        self.delivered += during + after
        self.figures.add(
            "Site outages",
            name,
            f"alerts {alerts}, emails {emails}, failed reads {failed}, "
            f"resumed {resume_seconds:.1f} s after the site was back",
        )
        return failed


def test_site_outages_are_survived_with_one_alert_each_and_no_lost_event(
    site, durable_daemon, mailbox, figures
):
    daemon = durable_daemon
    daemon.send_emails_to(mailbox.port)
    daemon.write_config(
        conn_retry_sleep=BACKOFF_CAP,
        max_conn_retries=3,
        site_timeout=1,
        gap_timeout=30,
        max_plugin_backlog=5,
        max_event_batch_size=5,
    )
    for plugin in PLUGINS:
        slow = "time.sleep(0.05)" if plugin == "lagging" else ""
        daemon.add_plugin(plugin, fsync_recorder_plugin(body=slow))
    daemon.start()
    daemon.wait_started()
    backlog = list(range(*site.insert_events(100)))  # 5 s of work for the lagging plugin
    daemon.wait_for(lambda: "reads the site on its own" in daemon.log(), 20, "lagging to detach")
    run = OutageRun(site, daemon, mailbox, figures)
    faults = site.faults

    def maintenance() -> None:
        faults.maintenance(MAINTENANCE_SECONDS)

    def maintenance_over() -> None:
        wait_until(
            lambda: faults.status()["maintenance_seconds_left"] == 0,
            MAINTENANCE_SECONDS + 5,
            "the end of maintenance",
        )

    failed = run.outage("maintenance 503 for 30 s", maintenance, maintenance_over)
    # Capped backoff: about one attempt per cap (20% jitter) per reading connection (the
    # engine's and the lagging plugin's); no busy loop (thousands), and no uncapped
    # doubling (1+2+4+8+16 s: five attempts per connection).
    low, high = MAINTENANCE_SECONDS / (2 * BACKOFF_CAP), 4 * MAINTENANCE_SECONDS / BACKOFF_CAP
    assert low <= failed <= high, f"{failed} attempts in {MAINTENANCE_SECONDS} s of maintenance"

    def planned_faults_used() -> None:
        wait_until(
            lambda: not any(faults.status()[kind] for kind in ("drops", "http_errors", "delays")),
            60,
            "the planned faults to be used up",
        )

    run.outage("connection resets", lambda: faults.drop_connections(10), planned_faults_used)
    run.outage("timeouts (site_timeout 1 s)", lambda: faults.slow(3, count=5), planned_faults_used)
    # shotgun_api3 tries a 502 or 504 three times before it raises: 9 make 3 failed reads.
    run.outage("502 burst", lambda: faults.http_error(502, count=9), planned_faults_used)
    run.outage("504 burst", lambda: faults.http_error(504, count=9), planned_faults_used)
    run.outage(
        "auth failure, then the key restored",
        lambda: site.set_script_key(ENGINE_SCRIPT[0], "revoked-key-000"),
        lambda: site.set_script_key(*ENGINE_SCRIPT),
    )

    assert daemon.stop() == 0
    for plugin in PLUGINS:
        counts = daemon.counts(plugin)
        assert set(backlog + run.delivered) <= set(counts), f"{plugin} lost events"
        assert all(n == 1 for n in counts.values()), f"{plugin} got an event twice"
    figures.add("Site outages", "outages survived (daemon never exited)", 6)
