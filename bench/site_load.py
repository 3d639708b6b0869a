"""Scenario 4: the load the daemon puts on the site, and the event-type filter's gaps.

- Busy: a backlog of events of five types (runs of 10 of each in turn, every event linked to
  a project, a shot and an artist) is read by a daemon whose plugins match one of the five
  types (filtered: the site is asked for ids and types, then full rows of the wanted ids
  only) and by one whose plugin matches everything (unfiltered: full rows of every event).
  Figures: bytes the site sent per event, requests per 1,000 events. For scale, the bare
  client reading the same events with the daemon's fields and with every field.
- Idle: then nothing happens for a while; requests per minute must be 60 / fetch_interval,
  no more. For the filtered daemon this also shows that the ids the filter skipped are not
  taken for gaps (each open gap would add a re-query to every poll).
- Gaps: three ids are reserved among the mixed events; one is committed later as a wanted
  type, one as another type, one never. The engine must count exactly those three as gaps,
  deliver the wanted late event once, and give up on the third after the gap timeout.

Byte counts are the JSON bodies the emulator receives and sends (no HTTP headers). This
script only measures; it never changes the engine.

Run: .venv/bin/python bench/site_load.py [--events 20000] [--idle 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from _common import (
    DaemonProcess,
    EmulatorProcess,
    Figure,
    daemon_log,
    emulator,
    figures_table,
    insert_mixed,
    noop_plugin,
    read_records,
    recording_plugin,
    wait_records,
)

from shotgun_events.site import EVENT_FIELDS, ID_ASCENDING

SCENARIO = "4 site load"
TYPES = [
    "Shotgun_Shot_Change",
    "Shotgun_Task_Change",
    "Shotgun_Version_New",
    "Shotgun_User_Login",
    "Toolkit_App_Startup",
]
WANTED = {"Shotgun_Shot_Change": None}
FETCH_INTERVAL = 1.0


def seed_links(site: EmulatorProcess) -> Dict[str, Any]:
    """A project, a shot and an artist, so every event carries three live links."""
    sg = site.client()
    project = sg.create("Project", {"name": "Bench"})
    shot = sg.create("Shot", {"code": "sh010", "project": project})
    user = site.remote.call("ensure_human_user", login="artist")
    return {"project": project, "entity": shot, "user": user}


# --------------------------------------------------------------------------- busy and idle


def busy_then_idle(
    site: EmulatorProcess, plugins: Dict[str, str], first: int, last: int, idle: float
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Emulator stats while a daemon reads first..last, then while it sits idle."""
    daemon = DaemonProcess(
        site.url, plugins, fetch_interval=FETCH_INTERVAL, state_save_interval=0.2
    )
    try:
        site.remote.reset_stats()
        daemon.start(after=first - 1)
        daemon.wait_positions(last, list(plugins), timeout=600)
        busy = site.remote.stats()
        site.remote.reset_stats()
        time.sleep(idle)
        quiet = site.remote.stats()
    finally:
        daemon.stop()
    return busy, quiet


def bare_client_bytes(site: EmulatorProcess, first: int, fields: List[str]) -> float:
    """Bytes the site sends per event when the bare client reads them with ``fields``."""
    sg = site.client()
    site.remote.reset_stats()
    after, count = first - 1, 0
    while True:
        page = sg.find(
            "EventLogEntry", [["id", "greater_than", after]], fields, order=ID_ASCENDING, limit=500
        )
        if not page:
            break
        count += len(page)
        after = page[-1]["id"]
    return site.remote.stats()["bytes_sent"] / count


def load_figures(events: int, idle: float) -> List[Figure]:
    figures: List[Figure] = []
    with emulator() as site:
        links = seed_links(site)
        first, last = insert_mixed(site.remote, events, TYPES, **links)
        every_field = sorted(site.client().schema_field_read("EventLogEntry"))
        for label, fields in (("daemon's fields", EVENT_FIELDS), ("every field", every_field)):
            figures.append(
                Figure(
                    SCENARIO,
                    f"bare client, {len(fields)} fields ({label}): bytes per event, site to client",
                    f"{bare_client_bytes(site, first, fields):,.0f}",
                )
            )
        configs = [
            (
                "filtered (3 plugins want 1 of 5 types)",
                {f"shots{i}": noop_plugin(WANTED) for i in range(3)},
            ),
            ("unfiltered (1 plugin wants every event)", {"everything": noop_plugin()}),
        ]
        for label, plugins in configs:
            busy, quiet = busy_then_idle(site, plugins, first, last, idle)
            figures += [
                Figure(
                    SCENARIO,
                    f"busy, {label}: bytes per event, site to daemon / daemon to site",
                    f"{busy['bytes_sent'] / events:,.0f} / {busy['bytes_received'] / events:,.1f}",
                ),
                Figure(
                    SCENARIO,
                    f"busy, {label}: requests per 1,000 events",
                    f"{busy['requests'] * 1000 / events:.1f}",
                ),
                idle_figure(label, quiet, idle),
            ]
    return figures


def idle_figure(label: str, stats: Dict[str, Any], seconds: float) -> Figure:
    """Requests per minute while idle; at most one poll per fetch_interval (+1 for phase)."""
    per_minute = stats["requests"] * 60 / seconds
    allowed = seconds / FETCH_INTERVAL + 1
    methods = ", ".join(f"{k} {v}" for k, v in sorted(stats["methods"].items())) or "none"
    return Figure(
        SCENARIO,
        f"idle {seconds:g} s, {label}: requests/min ({methods})",
        f"{per_minute:.1f}",
        f"<= {60 / FETCH_INTERVAL:.0f}",
        stats["requests"] <= allowed,
    )


# --------------------------------------------------------------------------- gaps


def reserved_among_mixed(site: EmulatorProcess, per_run: int) -> Tuple[int, int, List[Any]]:
    """Mixed events with three reserved (invisible) ids among them: (first, last, reservations)."""
    first, _ = insert_mixed(site.remote, per_run, TYPES)
    reserved = []
    for _ in range(3):
        reserved.append(site.remote.reserve_event_id())
        _, last = insert_mixed(site.remote, per_run, TYPES)
    return first, last, reserved


def logged_ids(log_text: str, message: str) -> List[int]:
    ids: List[int] = []
    for match in re.finditer(re.escape(message) + r":? \[([0-9, ]*)\]", log_text):
        ids += [int(part) for part in match.group(1).split(",") if part.strip()]
    return ids


def engine_open_gaps(daemon: DaemonProcess) -> int:
    """The engine's open gaps from the status file, once it has been written."""
    path = daemon.root / "events.id.status.json"
    time.sleep(1.0)  # two status intervals: the file reflects the finished catch-up
    return int(json.loads(path.read_text())["open_gaps"])


def gap_figures(gap_timeout: float, per_run: int = 100) -> List[Figure]:
    records_dir = Path(tempfile.mkdtemp(prefix="sged-gaps-"))
    record_file = records_dir / "shots.log"
    with emulator() as site:
        first, last, (wanted, other, never) = reserved_among_mixed(site, per_run)
        daemon = DaemonProcess(
            site.url,
            {"shots": recording_plugin(record_file, WANTED)},
            fetch_interval=0.5,
            gap_timeout=gap_timeout,
            status_interval=0.5,
            state_save_interval=0.2,
        )
        try:
            daemon.start(after=first - 1)
            daemon.wait_positions(last, ["shots"], timeout=60)
            open_gaps = engine_open_gaps(daemon)
            wanted.commit(event_type="Shotgun_Shot_Change", attribute_name="sg_status_list")
            other.commit(event_type="Shotgun_Task_Change", attribute_name="sg_status_list")
            wait_records([record_file], lambda found: any(r[0] == wanted.id for r in found), 30)
            deadline = time.monotonic() + gap_timeout + 10
            while "Stopped waiting for event ids" not in daemon_log(daemon):
                if time.monotonic() > deadline:
                    raise TimeoutError("the never-committed id was not given up")
                time.sleep(0.1)
            log_text = daemon_log(daemon)
            delivered = [r[0] for r in read_records(record_file)]
        finally:
            daemon.stop()
            shutil.rmtree(records_dir, ignore_errors=True)
    reserved = [wanted.id, other.id, never.id]
    skipped = 4 * per_run - len([i for i in delivered if i not in reserved])
    late = sorted(set(logged_ids(log_text, "Late events arrived")))
    expired = sorted(set(logged_ids(log_text, "Stopped waiting for event ids that never appeared")))
    return [
        Figure(
            SCENARIO,
            f"gaps: open at the engine after the catch-up ({skipped} ids skipped by the "
            "filter, 3 reserved)",
            str(open_gaps),
            "3",
            open_gaps == 3,
        ),
        Figure(
            SCENARIO,
            "gaps: late ids found by re-query / given up after gap_timeout",
            f"{late} / {expired}",
            f"{sorted([wanted.id, other.id])} / {[never.id]}",
            late == sorted([wanted.id, other.id]) and expired == [never.id],
        ),
        Figure(
            SCENARIO,
            "gaps: late event of the wanted type, deliveries",
            str(delivered.count(wanted.id)),
            "1",
            delivered.count(wanted.id) == 1,
        ),
        Figure(
            SCENARIO,
            "gaps: late event of another type, deliveries",
            str(delivered.count(other.id)),
            "0",
            other.id not in delivered,
        ),
    ]


def measure(quick: bool = False, events: int = 20_000, idle: float = 30.0) -> List[Figure]:
    if quick:
        events, idle = 2_000, 5.0
    return load_figures(events, idle) + gap_figures(gap_timeout=3.0 if quick else 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the busy backlog")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measured")
    parser.add_argument("--quick", action="store_true", help="small backlog, 5 s idle")
    args = parser.parse_args()
    title = f"Site load: fetch_interval {FETCH_INTERVAL:g} s"
    print(figures_table(title, measure(args.quick, args.events, args.idle)))


if __name__ == "__main__":
    main()
