"""Roll task statuses up to their shot: when a Task's status changes, recompute the Shot's.

Rules (first that applies): every task final -> "fin"; any task in progress or in review ->
"ip"; every task waiting -> "wtg"; otherwise "rdy". The shot is only updated when its status
would change, so the follow-up event this update writes does not loop back here (it is a
Shot event, and this plugin only listens to Task events).
"""

from _credentials import SCRIPT_KEY, SCRIPT_NAME

FINAL = {"fin", "omt"}
ACTIVE = {"ip", "rev"}
WAITING = {"wtg"}


def registerCallbacks(reg):
    reg.registerCallback(
        SCRIPT_NAME,
        SCRIPT_KEY,
        roll_up_task_status,
        matchEvents={"Shotgun_Task_Change": ["sg_status_list"]},
    )


def shot_status_for(task_statuses):
    """The shot status implied by its tasks' statuses (pure, so it is easy to test)."""
    statuses = set(task_statuses)
    if not statuses:
        return None
    if statuses <= FINAL:
        return "fin"
    if statuses & ACTIVE:
        return "ip"
    if statuses <= WAITING:
        return "wtg"
    return "rdy"


def roll_up_task_status(sg, logger, event, args):
    task = sg.find_one("Task", [["id", "is", event["meta"]["entity_id"]]], ["entity"])
    shot = (task or {}).get("entity")
    if not shot or shot.get("type") != "Shot":
        return
    tasks = sg.find("Task", [["entity", "is", shot]], ["sg_status_list"])
    wanted = shot_status_for(t["sg_status_list"] for t in tasks if t.get("sg_status_list"))
    current = sg.find_one("Shot", [["id", "is", shot["id"]]], ["sg_status_list"])
    if wanted and current and current.get("sg_status_list") != wanted:
        sg.update("Shot", shot["id"], {"sg_status_list": wanted})
        logger.info("Shot %s is now %s (from %d tasks)", shot["id"], wanted, len(tasks))
