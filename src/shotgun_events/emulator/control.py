"""Test controls over HTTP: ``POST /_emulator/control`` with ``{"action": ..., ...}``.

End-to-end tests run the emulator as a separate process (`shotgunEventDaemon emulator`) and
still need faults, bulk events and late ids. `perform()` maps each action onto the same
`Emulator` method a Python test would call; `RemoteEmulator` is the matching client, with
the same method names. The server only lets loopback peers reach this. This module must
never bypass `Emulator`: one behaviour, two ways in.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

if TYPE_CHECKING:
    from .emulator import Emulator

CONTROL_PATH = "/_emulator/control"

Action = Callable[["Emulator", Dict[str, Any]], Any]


def _fields(request: Dict[str, Any]) -> Dict[str, Any]:
    fields = request.get("fields") or {}
    if not isinstance(fields, dict):
        raise ValueError("'fields' must be an object")
    return fields


def _insert_events(emulator: Emulator, request: Dict[str, Any]) -> Any:
    first, last = emulator.insert_events(
        request["count"],
        request.get("event_type", "Shotgun_Shot_Change"),
        request.get("attribute_name", "sg_status_list"),
        **_fields(request),
    )
    return {"first_id": first, "last_id": last}


def _generator(emulator: Emulator, request: Dict[str, Any]) -> Any:
    rate = float(request.get("rate") or 0)
    if rate <= 0:
        emulator.stop_generator()
        return {"running": False}
    emulator.start_generator(rate, seed=request.get("seed"))
    return {"running": True, "rate": rate}


def _clear(emulator: Emulator, request: Dict[str, Any]) -> Any:
    emulator.faults.clear()


_ACTIONS: Dict[str, Action] = {
    "maintenance": lambda emu, r: emu.faults.maintenance(r["seconds"]),
    "http_error": lambda emu, r: emu.faults.http_error(r.get("code", 502), r.get("count", 1)),
    "drop_connections": lambda emu, r: emu.faults.drop_connections(r.get("count", 1)),
    "slow": lambda emu, r: emu.faults.slow(r["seconds"], r.get("count", 1)),
    "clear_faults": _clear,
    "faults": lambda emu, r: emu.faults.status(),
    "latest_event_id": lambda emu, r: emu.latest_event_id(),
    "insert_events": _insert_events,
    "insert_event": lambda emu, r: emu.insert_event(r["event_type"], **_fields(r)),
    "reserve_event_id": lambda emu, r: emu.reserve_event_id().id,
    "commit_event": lambda emu, r: emu.commit_event(r["id"], **_fields(r)),
    "add_script": lambda emu, r: emu.add_script(r["name"], r["key"]),
    "set_script_key": lambda emu, r: emu.set_script_key(r["name"], r["key"]),
    "remove_script": lambda emu, r: emu.remove_script(r["name"]),
    "ensure_human_user": lambda emu, r: emu.ensure_human_user(r["login"], r.get("name")),
    "stats": lambda emu, r: emu.stats(),
    "reset_stats": lambda emu, r: emu.reset_stats(),
    "generate": _generator,
}


def perform(emulator: Emulator, request: Dict[str, Any]) -> Any:
    """Run one control action; ValueError/KeyError mean a bad request (answered 400)."""
    action = _ACTIONS.get(request.get("action"))  # type: ignore[arg-type]
    if action is None:
        raise ValueError(
            "unknown action {!r} (known: {})".format(
                request.get("action"), ", ".join(sorted(_ACTIONS))
            )
        )
    try:
        return action(emulator, request)
    except KeyError as error:
        raise ValueError(
            "action {!r}: missing or unknown {}".format(request["action"], error)
        ) from None


def actions() -> Tuple[str, ...]:
    return tuple(sorted(_ACTIONS))


class ControlError(RuntimeError):
    """The emulator refused a control request (bad action, bad argument, not loopback)."""


class RemoteEmulator:
    """Drive an emulator in another process through its control path, like an `Emulator`.

    ``RemoteEmulator("http://127.0.0.1:PORT").faults.maintenance(30)``
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.faults = _RemoteFaults(self)

    def call(self, action: str, **arguments: Any) -> Any:
        """POST one action; returns its result or raises ControlError with the reason."""
        body = json.dumps(dict(arguments, action=action)).encode("utf-8")
        request = urllib.request.Request(
            self.url + CONTROL_PATH, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                reason = json.loads(error.read()).get("error")
            except ValueError:
                reason = error.reason
            raise ControlError(f"control {action} refused ({error.code}): {reason}") from None
        return answer.get("result")

    def latest_event_id(self) -> Optional[int]:
        return self.call("latest_event_id")

    def insert_events(
        self,
        count: int,
        event_type: str = "Shotgun_Shot_Change",
        attribute_name: Optional[str] = "sg_status_list",
        **fields: Any,
    ) -> Tuple[int, int]:
        result = self.call(
            "insert_events",
            count=count,
            event_type=event_type,
            attribute_name=attribute_name,
            fields=fields,
        )
        return result["first_id"], result["last_id"]

    def insert_event(self, event_type: str = "Shotgun_User_Login", **fields: Any) -> int:
        return self.call("insert_event", event_type=event_type, fields=fields)

    def reserve_event_id(self) -> RemoteReservation:
        return RemoteReservation(self, self.call("reserve_event_id"))

    def add_script(self, name: str, key: str) -> Any:
        return self.call("add_script", name=name, key=key)

    def set_script_key(self, name: str, key: str) -> None:
        self.call("set_script_key", name=name, key=key)

    def remove_script(self, name: str) -> None:
        self.call("remove_script", name=name)

    def stats(self) -> Dict[str, Any]:
        return self.call("stats")

    def reset_stats(self) -> None:
        self.call("reset_stats")

    def start_generator(self, rate: float, seed: Optional[int] = None) -> None:
        self.call("generate", rate=rate, seed=seed)

    def stop_generator(self) -> None:
        self.call("generate", rate=0)


class RemoteReservation:
    """A reserved event id in another process; `commit(**fields)` makes it visible."""

    def __init__(self, remote: RemoteEmulator, event_id: int) -> None:
        self.remote = remote
        self.id = event_id

    def commit(self, **fields: Any) -> int:
        return self.remote.call("commit_event", id=self.id, fields=fields)


class _RemoteFaults:
    def __init__(self, remote: RemoteEmulator) -> None:
        self._remote = remote

    def maintenance(self, seconds: float) -> None:
        self._remote.call("maintenance", seconds=seconds)

    def http_error(self, code: int = 502, count: int = 1) -> None:
        self._remote.call("http_error", code=code, count=count)

    def drop_connections(self, count: int = 1) -> None:
        self._remote.call("drop_connections", count=count)

    def slow(self, seconds: float, count: int = 1) -> None:
        self._remote.call("slow", seconds=seconds, count=count)

    def clear(self) -> None:
        self._remote.call("clear_faults")

    def status(self) -> Dict[str, Any]:
        return self._remote.call("faults")
