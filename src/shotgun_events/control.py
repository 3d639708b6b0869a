"""Recovery commands on a running daemon: the control socket and the command that uses it.

``shotgunEventDaemon retry|skip|reset PLUGIN`` sends one JSON request over a Unix domain
socket next to the state file (``<eventIdFile>.control``, mode 0600) and prints the one JSON
reply. In the daemon, ``ControlServer`` reads the request, names the operator from the
kernel's word (``SO_PEERCRED``) rather than the client's, and hands the command to
``Engine.operator``, which applies it on the plugin's worker between two events.

This module must never block the engine (each request is answered on its own short-lived
thread, with a size limit and deadlines, never on the engine's threads), never open the
socket to other users, even for an instant (it is created under a umask of 077), and never
trust the client's claim of who it is over the kernel's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import select
import socket
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from .config import Config
from .logs import mask
from .slots import MAX_EVENT_ID

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("engine")

ACTIONS = ("retry", "skip", "reset")

#: A request is a few short fields; anything longer is not one.
MAX_REQUEST_BYTES = 4096
MAX_REPLY_BYTES = 65536
#: How long a client may take to send its request (a slow client only holds its own thread).
READ_TIMEOUT = 5.0
#: How long the daemon waits for a busy plugin to apply a command before it answers
#: "busy" (the command stays queued and is applied when the plugin finishes its event).
OPERATOR_WAIT = 20.0
#: How long the command waits for the daemon's answer.
CLIENT_TIMEOUT = OPERATOR_WAIT + 10.0
#: Requests answered at the same time; more are refused at once, never queued.
MAX_CONCURRENT = 4
#: Longest path ``bind``/``connect`` take (sun_path is 108 bytes with its final NUL).
MAX_SOCKET_PATH = 107

# Exit codes of the recovery commands (LSB: 3 is "not running", 4 "insufficient privilege").
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_NOT_RUNNING = 3
EXIT_NO_PERMISSION = 4

_UMASK_LOCK = threading.Lock()


class ControlError(Exception):
    """The control socket cannot be set up; ``str()`` says why, for the terminal."""


class BadRequestError(ValueError):
    """A request the daemon refuses to act on; ``str()`` is the reply's message."""


def control_socket_path(config: Config) -> Path:
    event_id_file = config.daemon.event_id_file
    return event_id_file.with_name(event_id_file.name + ".control")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ControlRequest:
    """One recovery command as the daemon received it (validated)."""

    action: str
    plugin: str
    to: Optional[int] = None
    latest: bool = False
    #: Who the client says it is (its login name), and who ran sudo, if it did.
    user: str = ""
    sudo_user: str = ""

    def describe(self) -> str:
        target = " --to-latest" if self.latest else (f" --to {self.to}" if self.to else "")
        return f"{self.action} {self.plugin}{target}"


def parse_request(data: bytes) -> ControlRequest:
    """The request in ``data``, or BadRequestError saying what is wrong with it."""
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("the request is not JSON") from None
    if not isinstance(fields, dict):
        raise BadRequestError("the request is not a JSON object")
    action = fields.get("action")
    if action not in ACTIONS:
        raise BadRequestError(f"unknown command {action!r} (commands: {', '.join(ACTIONS)})")
    plugin = fields.get("plugin")
    if not isinstance(plugin, str) or not plugin.strip() or len(plugin) > 512:
        raise BadRequestError("the request names no plugin")
    to, latest = fields.get("to"), fields.get("latest", False)
    if to is not None and (
        isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= MAX_EVENT_ID
    ):
        raise BadRequestError(f"'to' must be an event id, not {to!r}")
    if not isinstance(latest, bool):
        raise BadRequestError(f"'latest' must be true or false, not {latest!r}")
    if action == "reset" and (to is None) == (not latest):
        raise BadRequestError("reset needs exactly one of --to ID and --to-latest")
    if action != "reset" and (to is not None or latest):
        raise BadRequestError(f"{action} takes no --to or --to-latest")
    return ControlRequest(
        action=action,
        plugin=_printable(plugin.strip(), 512),
        to=to,
        latest=latest,
        user=_printable(fields.get("user"), 64),
        sudo_user=_printable(fields.get("sudo_user"), 64),
    )


def _printable(value: Any, limit: int) -> str:
    """A client's text made safe for one log line (no newlines or escapes), capped."""
    if not isinstance(value, str):
        return ""
    return "".join(ch if ch.isprintable() else "?" for ch in value[:limit])


def operator_name(uid: Optional[int], claimed: str, sudo_user: str = "") -> str:
    """The name the daemon logs a command under: the peer's uid wins over the client's word.

    The client's own claim is kept beside it when it differs, and so is ``SUDO_USER``: an
    operator usually runs the command as the daemon's user through sudo, and the log should
    still say who.
    """
    name = f"{claimed or 'unknown'} (unverified)" if uid is None else _user_name(uid)
    notes = []
    if uid is not None and claimed and claimed != name:
        notes.append(f"client says {claimed}")
    if sudo_user and sudo_user != name:
        notes.append(f"sudo from {sudo_user}")
    return name + (f" ({'; '.join(notes)})" if notes else "")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def peer_credentials(connection: socket.socket) -> Optional[Tuple[int, int, int]]:
    """(pid, uid, gid) of the process at the other end, from the kernel; None if unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    size = struct.calcsize("3i")
    try:
        return struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, size))
    except (OSError, struct.error):
        return None


# --------------------------------------------------------------------------- the socket file


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for ``path``, however long its folder's path.

    A path over the 107-byte limit is reached through ``/proc/self/fd`` and a descriptor of
    its folder (Linux), so a deep state folder never stops the daemon.
    """
    text = str(path)
    if len(os.fsencode(text)) <= MAX_SOCKET_PATH:
        yield text
        return
    try:
        folder = os.open(path.parent, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    except OSError as error:
        raise ControlError(f"cannot open the folder {path.parent}: {error.strerror}") from None
    try:
        short = f"/proc/self/fd/{folder}/{path.name}"
        if len(os.fsencode(short)) > MAX_SOCKET_PATH or not os.path.isdir("/proc/self/fd"):
            raise ControlError(f"the socket path {path} is too long for a Unix socket")
        yield short
    finally:
        os.close(folder)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Set the process's umask for a moment (it is process-wide: one change at a time)."""
    with _UMASK_LOCK:
        previous = os.umask(mask)
        try:
            yield
        finally:
            os.umask(previous)


def _remove_stale_socket(path: Path) -> None:
    """Remove the socket a killed daemon left; the state file's lock says it is not in use."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise ControlError(f"{path} exists and is not a socket; move it away")
    path.unlink()
    log.info("Replaced the control socket %s that a stopped daemon left.", path)


def bind_private_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only our user can connect to."""
    _remove_stale_socket(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask(0o077), _address(path) as address:
            listener.bind(address)
        os.chmod(path, 0o600)
        listener.listen(8)
    except BaseException:
        listener.close()
        raise
    return listener


# --------------------------------------------------------------------------- daemon side


class ControlServer:
    """Answers recovery commands for one engine, one request per connection."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = Path(path)
        self._listener: Optional[socket.socket] = None
        self._identity: Optional[Tuple[int, int]] = None
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._wake_read, self._wake_write = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self) -> ControlServer:
        """Create the socket (replacing a stale one) and serve; raises ControlError/OSError."""
        try:
            self._listener = bind_private_socket(self.path)
            found = os.stat(self.path)
        except BaseException:
            self.stop()
            raise
        self._identity = (found.st_dev, found.st_ino)
        self._thread.start()
        log.info("Recovery commands are served on %s.", self.path)
        return self

    def stop(self) -> None:
        """Stop listening and remove the socket file (if it is still ours)."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self._listener is not None:
            self._listener.close()
            self._remove_socket_file()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)

    def _remove_socket_file(self) -> None:
        try:
            found = os.lstat(self.path)
            if (found.st_dev, found.st_ino) == self._identity:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("Could not remove the control socket %s: %s", self.path, error)

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._closing:
            readable, _, _ = select.select([self._listener, self._wake_read], [], [])
            if self._wake_read in readable or self._closing:
                return
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue  # the client gave up between select and accept
            if not self._slots.acquire(blocking=False):
                _send_reply(connection, False, "the daemon is busy with other commands; retry")
                connection.close()
                continue
            threading.Thread(
                target=self._answer, args=(connection,), name="control-request", daemon=True
            ).start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            ok, message = self._decide(connection)
            _send_reply(connection, ok, message)
        except OSError as error:
            log.warning("A recovery command's client went away: %s", error)
        except Exception:
            log.exception("A recovery command could not be answered.")
        finally:
            connection.close()
            self._slots.release()

    def _decide(self, connection: socket.socket) -> Tuple[bool, str]:
        peer = peer_credentials(connection)
        try:
            request = parse_request(_read_request(connection))
        except BadRequestError as problem:
            log.warning("Refused a control request from %s: %s", _describe_peer(peer), problem)
            return False, str(problem)
        user = operator_name(peer[1] if peer else None, request.user, request.sudo_user)
        log.info(
            "Control request from %s, client user %r: %s",
            _describe_peer(peer),
            request.user,
            request.describe(),
        )
        if self.engine.stop_event.is_set():
            return False, "the daemon is stopping; run the command again after it restarts"
        try:
            return self.engine.operator(
                request.action,
                request.plugin,
                user=user,
                to=request.to,
                latest=request.latest,
                wait=OPERATOR_WAIT,
            )
        except Exception:
            log.exception("The recovery command %s failed.", request.describe())
            return False, "the command failed inside the daemon; see its log"


def _describe_peer(peer: Optional[Tuple[int, int, int]]) -> str:
    if peer is None:
        return "an unidentified process"
    pid, uid, _ = peer
    return f"pid {pid}, uid {uid} ({_user_name(uid)})"


def _read_request(connection: socket.socket) -> bytes:
    """The request's bytes (up to a newline or the client's end), within the deadline."""
    deadline = time.monotonic() + READ_TIMEOUT
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BadRequestError(f"no complete request within {READ_TIMEOUT:.0f} s")
        connection.settimeout(remaining)
        try:
            chunk = connection.recv(MAX_REQUEST_BYTES + 1 - len(data))
        except socket.timeout:
            raise BadRequestError(f"no complete request within {READ_TIMEOUT:.0f} s") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise BadRequestError(f"the request is over {MAX_REQUEST_BYTES} bytes")
    return data.split(b"\n", 1)[0]


def _send_reply(connection: socket.socket, ok: bool, message: str) -> None:
    try:
        connection.settimeout(READ_TIMEOUT)
        # The one exit of the socket: a reply quotes plugin errors, which may hold a key.
        reply = {"ok": ok, "message": mask(message)}
        connection.sendall(json.dumps(reply).encode("utf-8") + b"\n")
    except OSError:
        pass  # the client left; the log has what was done


# --------------------------------------------------------------------------- command side


def ask_daemon(
    path: Path, request: Dict[str, Any], timeout: float = CLIENT_TIMEOUT
) -> Tuple[bool, str]:
    """Send one request to the daemon at ``path``; its (ok, message). Raises OSError/ValueError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        with _address(path) as address:
            connection.connect(address)
        connection.sendall(json.dumps(request).encode("utf-8") + b"\n")
        connection.shutdown(socket.SHUT_WR)
        data = b""
        while len(data) <= MAX_REPLY_BYTES:
            chunk = connection.recv(MAX_REPLY_BYTES)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data.decode("utf-8"))
    if not isinstance(reply, dict) or not isinstance(reply.get("message"), str):
        raise ValueError("the daemon's reply is not a control reply")
    return bool(reply.get("ok")), reply["message"]


def operator_request(
    action: str, plugin: str, *, to: Optional[int] = None, latest: bool = False
) -> Dict[str, Any]:
    """The request the command sends, with who runs it (the daemon checks the uid itself)."""
    return {
        "action": action,
        "plugin": plugin,
        "to": to,
        "latest": latest,
        "user": _login_name(),
        "sudo_user": os.environ.get("SUDO_USER", ""),
    }


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for our uid, no USER variable
        return f"uid {os.getuid()}"


def run_recovery_command(
    config: Config, action: str, plugin: str, *, to: Optional[int] = None, latest: bool = False
) -> int:
    """``retry``/``skip``/``reset``: print what the daemon did; the exit code says how it went."""
    from .service import daemon_state

    path = control_socket_path(config)
    try:
        running = daemon_state(config).running
    except PermissionError as error:
        return _fail(f"cannot read {error.filename}: permission denied", EXIT_NO_PERMISSION)
    if not running:
        return _fail("the daemon is not running", EXIT_NOT_RUNNING)
    try:
        ok, message = ask_daemon(path, operator_request(action, plugin, to=to, latest=latest))
    except PermissionError:
        return _fail(
            f"no permission to use {path}: run the command as the daemon's user (or root)",
            EXIT_NO_PERMISSION,
        )
    except (FileNotFoundError, ConnectionRefusedError):
        if not daemon_state(config).running:
            return _fail("the daemon is not running", EXIT_NOT_RUNNING)
        return _fail(f"the daemon does not answer on {path} (still starting?)", EXIT_REFUSED)
    except socket.timeout:
        return _fail(f"no answer from the daemon within {CLIENT_TIMEOUT:.0f} s", EXIT_REFUSED)
    except (OSError, ValueError, ControlError) as error:
        return _fail(f"the daemon's control socket {path} failed: {error}", EXIT_REFUSED)
    if not ok:
        return _fail(message, EXIT_REFUSED)
    print(message)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"shotgunEventDaemon: {message}", file=sys.stderr, flush=True)
    return code
