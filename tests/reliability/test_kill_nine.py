"""Kill -9 at random moments: every plugin still sees every event, and repeats stay bounded.

Five plugins record every event they see durably (append, fsync) while the daemon works
through 20,000 events; it is killed with SIGKILL 30 times at random moments and restarted
each time. Afterwards every plugin has seen every event at least once, and an event is seen
again only if it was the one a plugin had in hand at a kill: at most one repeat per plugin
per kill, and it is always that plugin's last recorded event before the kill.

The random moments come from a seed printed in the figures (``RELIABILITY_SEED`` replays one).
"""

from __future__ import annotations

import collections
import os
import random
import time
from typing import Dict, List, Set, Tuple

import pytest
from reliability_support import duplicates, fsync_recorder_plugin

pytestmark = pytest.mark.reliability

EVENTS = 20_000
PLUGINS = 5
KILLS = 30
#: A kill comes this long after a (re)start, drawn uniformly: from inside the start-up
#: (plugins loading, first read) to well into the delivery of a page.
KILL_AFTER = (0.1, 1.5)
#: Events on the site before the first kill; the rest arrive in equal parts between kills.
BACKLOG = 14_000


def plugin_names() -> List[str]:
    return [f"recorder{n}" for n in range(1, PLUGINS + 1)]


def repeats_after_each_kill(
    records: List[Tuple[str, str, int]], kill_marks: List[int]
) -> List[Dict[str, List[int]]]:
    """Per kill, per plugin: the events recorded after the kill that were recorded before it.

    ``kill_marks[k]`` is how many records the file held when kill ``k`` happened, so the
    records between two marks are one run of the daemon.
    """
    bounds = [*kill_marks, len(records)]
    seen: Dict[str, Set[int]] = collections.defaultdict(set)
    for plugin, _, event_id in records[: bounds[0]]:
        seen[plugin].add(event_id)
    repeats = []
    for start, end in zip(bounds, bounds[1:]):
        run: Dict[str, List[int]] = collections.defaultdict(list)
        for plugin, _, event_id in records[start:end]:
            if event_id in seen[plugin]:
                run[plugin].append(event_id)
            seen[plugin].add(event_id)
        repeats.append(dict(run))
    return repeats


def last_recorded_before(records, mark: int) -> Dict[str, int]:
    """Each plugin's last recorded event among the first ``mark`` records."""
    last: Dict[str, int] = {}
    for plugin, _, event_id in records[:mark]:
        last[plugin] = event_id
    return last


def test_kill_9_at_random_moments_loses_no_event_and_repeats_only_events_in_hand(
    site, durable_daemon, figures
):
    seed = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 1_000_000))
    chance = random.Random(seed)
    daemon = durable_daemon
    names = plugin_names()
    for name in names:
        daemon.add_plugin(name, fsync_recorder_plugin())
    daemon.start()
    daemon.wait_started()
    first, _ = site.insert_events(BACKLOG)
    chunks = [(EVENTS - BACKLOG) // KILLS] * KILLS
    chunks[-1] += EVENTS - BACKLOG - sum(chunks)

    kill_marks: List[int] = []
    backlog_at_kill: List[int] = []
    started = time.monotonic()
    for chunk in chunks:
        site.insert_events(chunk)  # the rest arrives while the daemon works and dies
        time.sleep(chance.uniform(*KILL_AFTER))
        assert daemon.alive(), daemon.log()[-3000:]
        daemon.kill()
        records = daemon.records()
        kill_marks.append(len(records))
        done = {(plugin, event_id) for plugin, _, event_id in records}
        backlog_at_kill.append((site.latest_event_id() - first + 1) * PLUGINS - len(done))
        daemon.start()
    last = site.latest_event_id()
    every_event = set(range(first, last + 1))
    for name in names:
        daemon.wait_seen(name, every_event, timeout=240)
    assert daemon.stop() == 0
    elapsed = time.monotonic() - started

    records = daemon.records()
    for name in names:
        missing = every_event - set(daemon.seen(name))
        assert not missing, f"{name} never saw {sorted(missing)[:20]}"

    repeats = repeats_after_each_kill(records, kill_marks)
    per_kill = [sum(len(ids) for ids in run.values()) for run in repeats]
    for kill, run in enumerate(repeats):
        in_hand = last_recorded_before(records, kill_marks[kill])
        for plugin, ids in run.items():
            assert len(ids) <= 1, f"kill {kill + 1}: {plugin} saw {ids} again"
            assert ids == [in_hand.get(plugin)], (
                f"kill {kill + 1}: {plugin} saw {ids} again, but had {in_hand.get(plugin)} in hand"
            )
    total = sum(duplicates(daemon.counts(name)) for name in names)
    assert total == sum(per_kill)
    assert max(per_kill) <= PLUGINS

    section = "Kill -9 (random moments)"
    figures.add(section, "seed (RELIABILITY_SEED)", seed)
    figures.add(section, "events x plugins", f"{len(every_event)} x {PLUGINS}")
    figures.add(section, "kills", KILLS)
    figures.add(section, "kills with deliveries still to do", sum(1 for b in backlog_at_kill if b))
    figures.add(section, "deliveries recorded", len(records))
    figures.add(section, "events missed by a plugin", 0)
    figures.add(section, "duplicates in all", total)
    figures.add(section, "duplicates per kill", " ".join(str(n) for n in per_kill))
    figures.add(
        section, "max duplicates in one kill (bound: plugins)", f"{max(per_kill)} <= {PLUGINS}"
    )
    figures.add(section, "seconds for the whole run", elapsed)
