"""Create a Note when a Version is created, so supervisors see new work in their inbox.

The note links the version and its shot, and belongs to the version's project.
"""

from _credentials import SCRIPT_KEY, SCRIPT_NAME


def registerCallbacks(reg):
    reg.registerCallback(
        SCRIPT_NAME,
        SCRIPT_KEY,
        note_new_version,
        matchEvents={"Shotgun_Version_New": None},
    )


def note_new_version(sg, logger, event, args):
    version_id = event["meta"]["entity_id"]
    version = sg.find_one(
        "Version", [["id", "is", version_id]], ["code", "entity", "project", "user"]
    )
    if version is None:  # retired before we got here
        return
    links = [{"type": "Version", "id": version_id}]
    if version.get("entity"):
        links.append(version["entity"])
    note = sg.create(
        "Note",
        {
            "project": version.get("project"),
            "subject": "New version: %s" % version.get("code"),
            "content": "Version %s is ready for review." % version.get("code"),
            "note_links": links,
        },
    )
    logger.info("Created note %s for version %s", note["id"], version_id)
