"""Stamp a date field when a status changes: a Task going to "ip" gets today's start_date.

The status, entity type and date field are the callback's ``args``, so one file can stamp
several fields. A date already set is left alone (a task going back to ip keeps its first
start date).
"""

import datetime

from _credentials import SCRIPT_KEY, SCRIPT_NAME

STAMPS = [
    {"entity_type": "Task", "status": "ip", "field": "start_date"},
]


def registerCallbacks(reg):
    for stamp in STAMPS:
        event_type = "Shotgun_%s_Change" % stamp["entity_type"]
        reg.registerCallback(
            SCRIPT_NAME,
            SCRIPT_KEY,
            stamp_date,
            matchEvents={event_type: ["sg_status_list"]},
            args=stamp,
        )


def stamp_date(sg, logger, event, args):
    """Set ``args['field']`` to today when the status became ``args['status']``."""
    meta = event["meta"]
    if meta.get("new_value") != args["status"] or meta.get("entity_id") is None:
        return
    entity = sg.find_one(args["entity_type"], [["id", "is", meta["entity_id"]]], [args["field"]])
    if entity is None:  # retired since the event was written
        return
    if entity.get(args["field"]):
        logger.debug("%s %s already has %s", args["entity_type"], entity["id"], args["field"])
        return
    today = datetime.date.today()
    sg.update(args["entity_type"], entity["id"], {args["field"]: today})
    logger.info("Stamped %s %s %s = %s", args["entity_type"], entity["id"], args["field"], today)
