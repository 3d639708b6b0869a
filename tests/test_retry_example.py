"""The render_farm_notify example: real events from the emulator, a flaky farm on loopback.

The callback runs in this process on events the emulator wrote (with the example's retry
policy shortened), and once in a real daemon process to prove it works as deployed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness import Daemon
from shotgun_events.retry import RetryPolicy

EXAMPLES = Path(__file__).resolve().parents[1] / "examplePlugins"
EXAMPLE_SCRIPT = ("shotgunEventDaemon_examples", "example-key-5555555555")


class Farm:
    """A render farm's job endpoint that fails on demand and remembers the jobs it took."""

    def __init__(self) -> None:
        self.failures: List[Any] = []  # HTTP codes, or "drop" to close without an answer
        self.requests = 0
        self.jobs: Dict[str, Dict[str, Any]] = {}  # by Idempotency-Key: a copy is ignored
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jobs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type:
        farm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with farm.lock:
                    farm.requests += 1
                    failure = farm.failures.pop(0) if farm.failures else None
                    if failure is None:
                        farm.jobs.setdefault(self.headers["Idempotency-Key"], job)
                if failure == "drop":
                    self.close_connection = True
                    return
                code = failure or 201
                body = json.dumps({"id": len(farm.jobs)} if code == 201 else {}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def farm():
    farm = Farm()
    farm.thread.start()
    try:
        yield farm
    finally:
        farm.server.shutdown()
        farm.server.server_close()


@pytest.fixture
def plugin(monkeypatch, farm):
    """The example module, pointed at the farm, retrying quickly."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(
        "render_farm_notify", EXAMPLES / "render_farm_notify.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(
        module, "FARM_RETRY", RetryPolicy(attempts=4, first_delay=0.05, max_delay=0.2)
    )
    monkeypatch.setattr(module, "FARM_TIMEOUT", 2)
    monkeypatch.setenv(module.FARM_URL_VARIABLE, farm.url)
    return module


@pytest.fixture
def frames_event(sg_site):
    """The event a site writes when a new Version is created with its frames."""
    sg = sg_site.sg
    project = sg.create("Project", {"name": "Farm"})
    start = sg_site.emulator.latest_event_id()
    version = sg.create(
        "Version",
        {
            "code": "sh010_comp_v003",
            "project": project,
            "sg_path_to_frames": "/shows/farm/sh010/comp/v003/sh010.####.exr",
            "sg_first_frame": 1001,
            "sg_last_frame": 1096,
        },
    )
    (event,) = [
        e
        for e in sg_site.events(after_id=start, event_types=["Shotgun_Version_Change"])
        if e["attribute_name"] == "sg_path_to_frames"
    ]
    return version, event


def test_new_frames_reach_the_farm_once_through_farm_failures(sg_site, plugin, farm, frames_event):
    version, event = frames_event
    farm.failures = [503, "drop"]
    sg_site.run_callback(plugin.request_review_movie, event)
    assert farm.requests == 3
    (job,) = farm.jobs.values()
    assert list(farm.jobs) == [f"shotgun-event-{event['id']}"]
    assert job["version"] == {"id": version["id"], "code": "sh010_comp_v003"}
    assert (job["first_frame"], job["last_frame"]) == (1001, 1096)


def test_a_job_the_farm_refuses_is_not_sent_again(sg_site, plugin, farm, frames_event):
    _, event = frames_event
    farm.failures = [400]
    with pytest.raises(Exception, match="HTTP Error 400"):
        sg_site.run_callback(plugin.request_review_movie, event)
    assert farm.requests == 1
    assert farm.jobs == {}


def test_a_farm_down_past_the_policy_fails_the_callback(sg_site, plugin, farm, frames_event):
    _, event = frames_event
    farm.failures = [503] * 10
    with pytest.raises(Exception, match="HTTP Error 503"):
        sg_site.run_callback(plugin.request_review_movie, event)
    assert farm.requests == 4  # the policy's attempts, then stopOnError takes over
    assert farm.jobs == {}


def test_without_a_farm_url_the_plugin_does_nothing(
    sg_site, plugin, farm, frames_event, monkeypatch
):
    _, event = frames_event
    monkeypatch.delenv(plugin.FARM_URL_VARIABLE)
    sg_site.run_callback(plugin.request_review_movie, event)
    assert farm.requests == 0


def test_the_daemon_runs_the_example_through_a_farm_restart(tmp_path, site, farm):
    site.add_script(*EXAMPLE_SCRIPT)
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("_credentials.py", "render_farm_notify.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    daemon = Daemon(
        tmp_path,
        site.url,
        plugin_dir=folder,
        env={
            "SGED_EXAMPLE_SCRIPT": EXAMPLE_SCRIPT[0],
            "SGED_EXAMPLE_KEY": EXAMPLE_SCRIPT[1],
            "SGED_RENDER_FARM_URL": farm.url,
        },
    )
    daemon.start()
    try:
        daemon.wait_started()
        daemon.wait_for(lambda: "Loaded plugin" in daemon.log(), 20, "the plugin to load")
        farm.failures = [503]  # the farm is restarting: one retry, about 2 s later
        sg = site.client()
        project = sg.create("Project", {"name": "Farm"})
        version = sg.create(
            "Version",
            {"code": "v001", "project": project, "sg_path_to_frames": "/frames/v001.####.exr"},
        )
        daemon.wait_for(lambda: farm.jobs, 30, "the farm to take the job")
        (job,) = farm.jobs.values()
        assert job["version"]["id"] == version["id"]
        plugin_log = daemon.log_dir / "plugin.render_farm_notify"
        daemon.wait_for(lambda: "makes the review movie" in plugin_log.read_text(), 10, "log")
        assert "Transient error (HTTPError: HTTP Error 503" in plugin_log.read_text()
    finally:
        assert daemon.stop() == 0
