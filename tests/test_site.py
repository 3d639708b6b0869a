"""The engine's site reads: same results as the stock client, retries, one alert per outage."""

from __future__ import annotations

import logging
import threading

import shotgun_api3

from shotgun_events.site import EVENT_FIELDS, Backoff, EngineShotgun, OutageMonitor, Site


def engine_site(site, stop_event=None, alert_after=3, logger=None):
    return Site(
        site.url,
        "shotgunEventDaemon",
        "engine-key-0123456789",
        timeout=5,
        retry_cap=0.05,
        outage=OutageMonitor(logger or logging.getLogger("test.site"), alert_after),
        stop_event=stop_event or threading.Event(),
    )


def test_fast_decoder_gives_exactly_what_the_stock_client_gives(site):
    sg = site.client()
    project = sg.create("Project", {"name": "P"})
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    sg.update("Shot", shot["id"], {"sg_status_list": "ip", "description": "é ü"})
    sg.delete("Shot", shot["id"])
    stock = shotgun_api3.Shotgun(site.url, "shotgunEventDaemon", "engine-key-0123456789")
    fast = EngineShotgun(site.url, "shotgunEventDaemon", "engine-key-0123456789")
    query = ("EventLogEntry", [["id", "greater_than", 0]], [*EVENT_FIELDS, "description"])
    expected = stock.find(*query)
    assert len(expected) > 5
    assert fast.find(*query) == expected
    assert any(isinstance(e["created_at"], type(expected[0]["created_at"])) for e in expected)


def test_read_page_reports_gaps_and_fullness(site):
    first, _ = site.insert_events(3)
    late = site.reserve_event_id()
    site.insert_events(2)
    page = engine_site(site).read_page(first - 1, limit=10)
    assert [e["id"] for e in page.events] == [first, first + 1, first + 2, late.id + 1, late.id + 2]
    assert page.missing == (late.id,)
    assert page.through == late.id + 2 and not page.full
    assert engine_site(site).read_page(first - 1, limit=5).full


def test_an_outage_is_retried_and_alerted_once(site, caplog):
    site.insert_events(2)
    site.faults.maintenance(1.0)
    reader = engine_site(site, alert_after=2)
    with caplog.at_level(logging.WARNING, logger="test.site"):
        page = reader.read_page(0, limit=10)
    assert len(page.events) == 2  # nothing lost: the read completed after the outage
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "unreachable" in errors[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_stop_request_ends_the_retry_loop(site):
    site.faults.maintenance(30)
    stop = threading.Event()
    reader = engine_site(site, stop_event=stop)
    threading.Timer(0.3, stop.set).start()
    try:
        reader.latest_event_id()
    except Exception as error:  # noqa: BLE001 - the type is what the test checks
        assert type(error).__name__ == "Stopping"
    else:
        raise AssertionError("the read should have been stopped")
    finally:
        site.faults.clear()


def test_backoff_grows_and_is_capped():
    backoff = Backoff(cap=8, first=1, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1
