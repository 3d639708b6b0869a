"""Realistic studio activity at a chosen rate: artists moving tasks, publishing versions, notes.

The `demo` command and the benchmarks need a site that looks busy the way a production
does. `ActivityGenerator` seeds a demo project if the site has none (sequences, shots,
pipeline steps, tasks, artists as HumanUsers), then, on its own thread, writes through the
site's own API methods as those artists: task statuses walk wtg -> rdy -> ip -> rev -> fin,
new Versions link to their task and shot, Notes land on versions. So every event it causes
is exactly what the site writes for a real change. It paces itself to about `rate` events
per second. This module must never write rows or events directly.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional

from .api import Site
from .eventlog import EVENT_TYPE, Actor

log = logging.getLogger("shotgun_events.emulator.generator")

STATUS_FLOW = ["wtg", "rdy", "ip", "rev", "fin"]
STEPS = [("Layout", "LAY"), ("Animation", "ANM"), ("Lighting", "LGT"), ("Compositing", "COMP")]
ARTISTS = [
    ("alice", "Alice Martin"),
    ("bruno", "Bruno Costa"),
    ("chen", "Chen Wei"),
    ("dara", "Dara Okafor"),
    ("emil", "Emil Novak"),
    ("farah", "Farah Haddad"),
]
NOTE_LINES = [
    "Timing feels late on the hit, pull it two frames.",
    "Edges are chattering around the hair, check the matte.",
    "Lovely. Approved for client.",
    "Key light is too warm compared to the previous shot.",
    "Can we see a version with more motion blur?",
]
Link = Dict[str, Any]


class DemoProject:
    """The ids the generator works with, found on the site or freshly seeded."""

    def __init__(self, project: Link, shots: List[Link], tasks: List[Link], artists: List[Link]):
        self.project = project
        self.shots = shots
        self.tasks = tasks
        self.artists = artists


class ActivityGenerator:
    """Writes artist activity to a site at about `rate` events per second, on a thread."""

    def __init__(
        self,
        site: Site,
        rate: float,
        seed: Optional[int] = None,
        project_name: str = "Demo Project",
        sequences: int = 3,
        shots_per_sequence: int = 4,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of events per second")
        self.site = site
        self.rate = float(rate)
        self.random = random.Random(seed)
        self.project_name = project_name
        self.sequences = sequences
        self.shots_per_sequence = shots_per_sequence
        self.events_written = 0
        self.demo: Optional[DemoProject] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._versions: Dict[int, int] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> ActivityGenerator:
        self.demo = self.demo or self.seed_project()
        self._thread = threading.Thread(target=self._run, name="site-activity", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        """Pace to the rate: after N events, wait until N / rate seconds have passed."""
        started = time.monotonic()
        written = 0
        while not self._stop.is_set():
            try:
                written += self.step()
            except Exception:  # a generator bug must not kill the demo site
                log.exception("activity generator step failed")
                self._stop.wait(1.0)
                continue
            ahead = written / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self._stop.wait(ahead)

    # --- seeding ----------------------------------------------------------------------

    def seed_project(self) -> DemoProject:
        """Find the demo project on the site, or create it with shots, tasks and artists."""
        artists = [self.site.ensure_human_user(login, name) for login, name in ARTISTS]
        found = self._find_project()
        if found is not None:
            return found
        coordinator = self.site.actor_for(
            self.site.ensure_human_user("coordinator", "Pat Coordinator")
        )
        project = self._create(coordinator, "Project", {"name": self.project_name, "code": "demo"})
        steps = [
            self._create(
                coordinator, "Step", {"code": code, "short_name": short, "entity_type": "Shot"}
            )
            for code, short in STEPS
        ]
        shots, tasks = [], []
        for seq_index in range(1, self.sequences + 1):
            sequence = self._create(
                coordinator, "Sequence", {"code": f"SQ{seq_index * 10:03d}", "project": project}
            )
            for shot_index in range(1, self.shots_per_sequence + 1):
                shot = self._create(
                    coordinator,
                    "Shot",
                    {
                        "code": f"SQ{seq_index * 10:03d}_SH{shot_index * 10:03d}",
                        "project": project,
                        "sg_sequence": sequence,
                        "sg_cut_in": 1001,
                        "sg_cut_out": 1001 + self.random.randint(24, 240),
                    },
                )
                shots.append(shot)
                for step in steps:
                    tasks.append(self._seed_task(coordinator, project, shot, step, artists))
        return DemoProject(project, shots, tasks, artists)

    def _seed_task(self, actor: Actor, project: Link, shot: Link, step: Link, artists: List[Link]):
        data = {
            "content": "{} {}".format(shot["name"], step["name"]),
            "project": project,
            "entity": shot,
            "step": step,
            "task_assignees": [self.random.choice(artists)],
            "sg_status_list": "wtg",
        }
        return self._create(actor, "Task", data)

    def _find_project(self) -> Optional[DemoProject]:
        store = self.site.store
        with store.lock:
            projects = store.table("Project")
            project_id = next(
                (
                    i
                    for i in projects.ids
                    if i not in projects.retired
                    and projects.rows[i].get("name") == self.project_name
                ),
                None,
            )
            if project_id is None:
                return None
            project = {"type": "Project", "id": project_id, "name": self.project_name}
            tasks = self._links_in_project("Task", project_id)
            shots = self._links_in_project("Shot", project_id)
        artists = [self.site.ensure_human_user(login, name) for login, name in ARTISTS]
        return DemoProject(project, shots, tasks, artists) if tasks else None

    def _links_in_project(self, entity_type: str, project_id: int) -> List[Link]:
        table = self.site.store.table(entity_type)
        links = []
        for entity_id in table.ids:
            row = table.rows[entity_id]
            if (
                entity_id not in table.retired
                and (row.get("project") or {}).get("id") == project_id
            ):
                name = self.site.links.name_of(entity_type, row)
                links.append({"type": entity_type, "id": entity_id, "name": name})
        return links

    # --- activity ----------------------------------------------------------------------

    def step(self) -> int:
        """One piece of activity; returns how many events it wrote (the site's own count:
        a change also logs the other side of the links it sets)."""
        if self.demo is None:
            self.demo = self.seed_project()
        store = self.site.store
        with store.lock:  # no other writer between the two counts
            before = store.next_ids.get(EVENT_TYPE, 1)
            roll = self.random.random()
            if roll < 0.6:
                self._advance_task()
            elif roll < 0.85:
                self._publish_version()
            else:
                self._write_note()
            written = store.next_ids.get(EVENT_TYPE, 1) - before
        self.events_written += written
        return written

    def _advance_task(self) -> None:
        task = self.random.choice(self.demo.tasks)  # type: ignore[union-attr]
        row = self.site.store.active_row("Task", task["id"])
        if row is None:
            return
        status = row.get("sg_status_list") or "wtg"
        if status == "fin":
            new_status = "ip" if self.random.random() < 0.2 else None  # a client retake
        else:
            new_status = (
                STATUS_FLOW[STATUS_FLOW.index(status) + 1] if status in STATUS_FLOW else "ip"
            )
        if new_status is None:
            self._publish_version()
            return
        actor = self._artist_for(row)
        with self.site.store.transaction() as tx:
            self.site.update(tx, actor, "Task", task["id"], {"sg_status_list": new_status})

    def _publish_version(self) -> None:
        task = self.random.choice(self.demo.tasks)  # type: ignore[union-attr]
        row = self.site.store.active_row("Task", task["id"])
        if row is None:
            return
        number = self._versions[task["id"]] = self._versions.get(task["id"], 0) + 1
        actor = self._artist_for(row)
        data = {
            "code": "{}_v{:03d}".format(str(task["name"]).replace(" ", "_").lower(), number),
            "project": self.demo.project,  # type: ignore[union-attr]
            "entity": row.get("entity"),
            "sg_task": {"type": "Task", "id": task["id"]},
            "user": actor.user,
            "sg_status_list": "rev",
            "description": f"Artist publish {number}",
            "sg_first_frame": 1001,
            "sg_last_frame": 1001 + self.random.randint(24, 240),
        }
        self._create(actor, "Version", data)

    def _write_note(self) -> None:
        store = self.site.store
        versions = store.table("Version").ids
        if not versions:
            self._publish_version()
            return
        version_id = versions[-1 - self.random.randrange(min(len(versions), 20))]
        version = store.active_row("Version", version_id)
        if version is None:
            return
        reviewer = self.site.actor_for(self.random.choice(self.demo.artists))  # type: ignore[union-attr]
        data = {
            "subject": "Note on {}".format(version.get("code")),
            "content": self.random.choice(NOTE_LINES),
            "project": self.demo.project,  # type: ignore[union-attr]
            "note_links": [{"type": "Version", "id": version_id}],
            "user": reviewer.user,
        }
        self._create(reviewer, "Note", data)

    def _artist_for(self, task_row: Dict[str, Any]) -> Actor:
        assignees = task_row.get("task_assignees") or self.demo.artists  # type: ignore[union-attr]
        return self.site.actor_for(self.random.choice(assignees))

    def _create(self, actor: Actor, entity_type: str, data: Dict[str, Any]) -> Link:
        with self.site.store.transaction() as tx:
            created = self.site.create(tx, actor, entity_type, data)
        name = self.site.links.name_of(
            entity_type, self.site.store.row(entity_type, created["id"]) or {}
        )
        return {"type": entity_type, "id": created["id"], "name": name}
