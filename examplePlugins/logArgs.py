"""Log every event the site writes: the simplest plugin, handy to see what events look like.

Classic plugin API: ``registerCallbacks(reg)`` registers ``logArgs(sg, logger, event, args)``.
"""

from _credentials import SCRIPT_KEY, SCRIPT_NAME


def registerCallbacks(reg):
    # No matchEvents: every event. stopOnError=False: a logging problem never stops it.
    reg.registerCallback(SCRIPT_NAME, SCRIPT_KEY, logArgs, stopOnError=False)
    reg.logger.debug("Registered logArgs")


def logArgs(sg, logger, event, args):
    """Log one line per event: id, type, attribute, entity, user."""
    entity = event.get("entity") or {}
    user = event.get("user") or {}
    logger.info(
        "#%s %s %s on %s %s by %s",
        event["id"],
        event["event_type"],
        event.get("attribute_name") or "",
        entity.get("type", "-"),
        entity.get("name") or entity.get("id", ""),
        user.get("name") or user.get("id", "-"),
    )
