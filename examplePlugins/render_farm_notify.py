"""Ask the render farm for a review movie when a Version gets its frames.

An example of a plugin that talks to another service besides the site, and rides out that
service's restarts and network blips with the daemon's retry helper
(``shotgun_events.retry.retrying``, see docs/retry.md) instead of losing the job.

The farm's job endpoint comes from the environment; without it this plugin does nothing,
so it is safe to leave in the plugin folder:

    export SGED_RENDER_FARM_URL=http://farm.example.com:9000/jobs

The farm gets a JSON POST (the version, its frames and frame range) with an
``Idempotency-Key`` header made of the event id: if an answer is lost after the farm took
the job, the retried request carries the same key and the farm can ignore the copy.
A farm that refuses the job (HTTP 4xx) is not asked again. A farm still down after
FARM_RETRY gives up fails the callback, and stopOnError (True here) stops the plugin at
this event until its file changes, so no version is silently left without its movie.
"""

import json
import os
import urllib.request

from _credentials import SCRIPT_KEY, SCRIPT_NAME

from shotgun_events.retry import RetryPolicy, retrying

FARM_URL_VARIABLE = "SGED_RENDER_FARM_URL"
#: Seconds one request may take before it counts as failed (and is retried).
FARM_TIMEOUT = 10
#: 2, 4, 8, 16, 30 s apart: a farm restart of a minute or so costs no job.
FARM_RETRY = RetryPolicy(attempts=6, first_delay=2, max_delay=30, give_up_after=120)


def registerCallbacks(reg):
    reg.registerCallback(
        SCRIPT_NAME,
        SCRIPT_KEY,
        request_review_movie,
        matchEvents={"Shotgun_Version_Change": ["sg_path_to_frames"]},
    )


def request_review_movie(sg, logger, event, args):
    """Send the version's frames to the farm, retrying while the farm is unreachable."""
    farm_url = os.environ.get(FARM_URL_VARIABLE)
    frames = event["meta"].get("new_value")
    if not farm_url or not frames:
        return
    version_id = event["meta"]["entity_id"]
    version = sg.find_one(
        "Version",
        [["id", "is", version_id]],
        ["code", "project", "sg_first_frame", "sg_last_frame"],
    )
    if version is None:  # retired before we got here
        return
    job = {
        "kind": "review_movie",
        "event_id": event["id"],
        "version": {"id": version_id, "code": version["code"]},
        "project_id": (version.get("project") or {}).get("id"),
        "frames": frames,
        "first_frame": version.get("sg_first_frame"),
        "last_frame": version.get("sg_last_frame"),
    }
    key = "shotgun-event-%s" % event["id"]
    for attempt in retrying(FARM_RETRY, logger=logger):
        with attempt:
            answer = submit_job(farm_url, job, key)
    logger.info(
        "Render farm job %s makes the review movie of %s", answer.get("id"), version["code"]
    )


def submit_job(farm_url, job, key):
    """POST one job; the farm's JSON answer. Raises urllib's errors for the retry to judge."""
    request = urllib.request.Request(
        farm_url,
        data=json.dumps(job).encode("utf-8"),
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=FARM_TIMEOUT) as response:
        body = response.read()
    return json.loads(body.decode("utf-8")) if body else {}
