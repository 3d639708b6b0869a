"""The emulator's HTTP side: ``POST /api3/json`` for the client, ``/_emulator/control`` for tests.

A threading HTTP/1.1 server with keep-alive, so each `shotgun_api3` connection (httplib2
keeps one open) gets its own thread. Each response goes out in one write with TCP_NODELAY,
so small replies never wait on Nagle's algorithm. API faults are always answered as JSON in
the client's fault shape with HTTP 200 (the client turns them into `Fault`), never as an
HTML 500. The client's form posts (``POST /upload/...``: uploads and thumbnails, as
urlencoded or multipart forms) and file downloads (``GET /file_serve/...``, thumbnails)
are parsed here and handed to the site as fields, files and the session cookie. Injected
faults (503, 502, dropped connections, delays) apply to all of these site requests, never
to the control path, which answers loopback peers only (others get 403). This module must
never interpret API methods or site data: it hands requests to the site and to the control
handler.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .errors import ApiError
from .faults import Faults

API_PATH = "/api3/json"
CONTROL_PATH = "/_emulator/control"
FORM_PREFIX = "/upload/"
DOWNLOAD_PREFIXES = ("/file_serve/", "/thumbnail/")
_JSON = "application/json; charset=utf-8"
_MAX_BODY = 256 * 1024 * 1024

log = logging.getLogger("shotgun_events.emulator")

ApiCall = Callable[[Any, Any], Any]
ControlCall = Callable[[Dict[str, Any]], Any]
#: (path, fields, files {name: (file name, bytes)}, site base URL) -> the answer's text.
FormCall = Callable[[str, Dict[str, str], Dict[str, Tuple[str, bytes]], str], str]
#: (path, session token from the cookie) -> (status, content type, body).
DownloadCall = Callable[[str, Optional[str]], Tuple[int, str, bytes]]


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Stats:
    """Requests per API method, bytes in and out, and requests lost to injected faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._methods: Dict[str, int] = {}
            self._requests = 0
            self._faulted = 0
            self._received = 0
            self._sent = 0

    def record(self, method: str, received: int, sent: int) -> None:
        with self._lock:
            self._requests += 1
            self._methods[method] = self._methods.get(method, 0) + 1
            self._received += received
            self._sent += sent

    def record_fault(self) -> None:
        """An API request answered by an injected fault (503, 5xx, drop) instead of the site."""
        with self._lock:
            self._faulted += 1

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "faulted": self._faulted,
                "methods": dict(self._methods),
                "bytes_received": self._received,
                "bytes_sent": self._sent,
            }


class SiteServer(ThreadingHTTPServer):
    """The listening socket and its per-connection threads."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self,
        address: Tuple[str, int],
        api: ApiCall,
        control: ControlCall,
        faults: Faults,
        stats: Stats,
        forms: Optional[FormCall] = None,
        downloads: Optional[DownloadCall] = None,
    ) -> None:
        self.api = api
        self.control = control
        self.forms = forms
        self.downloads = downloads
        self.faults = faults
        self.stats = stats
        self.stopping = threading.Event()
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-request (a killed process) is normal, not an error."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut every open keep-alive connection (threads waiting on them then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FlowProductionTrackingSiteEmulator/1.0"
    server: SiteServer

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.request, True)

    def finish(self) -> None:
        self.server.track(self.request, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- routing ------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        if body is None:
            return
        if path == API_PATH:
            self._api(body)
        elif path == CONTROL_PATH:
            self._control(body)
        elif path.startswith(FORM_PREFIX) and self.server.forms is not None:
            self._form(path, body)
        else:
            self._send_json(404, {"error": f"no such path {path} (the API is POST {API_PATH})"})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith(DOWNLOAD_PREFIXES) and self.server.downloads is not None:
            self._download(urllib.parse.unquote(path))
        elif path in ("/", API_PATH):
            self._send_json(200 if path == "/" else 405, {"site_emulator": True, "api": API_PATH})
        else:
            self._send_json(404, {"error": f"no such path {path}"})

    def _read_body(self) -> Optional[bytes]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._send_json(400, {"error": "a valid Content-Length is required"}, close=True)
            return None
        return self.rfile.read(length) if length else b""

    # --- the API --------------------------------------------------------------------------

    def _faulted(self) -> bool:
        """Answer with the next injected fault, if one is planned; True when it answered."""
        fault = self.server.faults.next_fault()
        if fault.kind is not None:
            self.server.stats.record_fault()
        if fault.delay and self.server.stopping.wait(fault.delay):
            self.close_connection = True
            return True
        if fault.kind == "drop":
            self.close_connection = True  # no answer at all: the client sees a reset
            return True
        if fault.kind == "maintenance":
            headers = {"Retry-After": str(int(fault.retry_after) + 1)}
            self._send_text(503, "The site is down for maintenance.", headers)
            return True
        if fault.kind == "http_error":
            self._send_text(fault.code, f"Injected HTTP {fault.code} from the site emulator.")
            return True
        return False

    def _api(self, body: bytes) -> None:
        if self._faulted():
            return
        method, response = self._call_api(body)
        data = self._response(200, encode(response), _JSON)
        self.server.stats.record(method, len(body), len(data))  # before the client can read on
        self._write(data)

    def _call_api(self, body: bytes) -> Tuple[str, Dict[str, Any]]:
        method = "<invalid>"
        try:
            payload = json.loads(body or b"null")
            if not isinstance(payload, dict) or "method_name" not in payload:
                raise ApiError("Expected a JSON object with method_name and params")
            method = str(payload["method_name"])
            results = self.server.api(payload["method_name"], payload.get("params", []))
            return method, {"results": results}
        except ApiError as error:
            return method, error.as_response()
        except ValueError as error:
            return method, ApiError(f"Request body is not valid JSON: {error}").as_response()
        except Exception as error:  # a bug here must still reach the client as a Fault
            log.exception("site emulator failed on %s", method)
            message = f"Site emulator internal error in {method}: {error!r}"
            return method, ApiError(message).as_response()

    # --- forms and downloads ---------------------------------------------------------------

    def _form(self, path: str, body: bytes) -> None:
        if self._faulted():
            return
        try:
            fields, files = parse_form(self.headers.get("Content-Type", ""), body)
            answer = self.server.forms(path, fields, files, self._base_url())  # type: ignore[misc]
        except ValueError as error:
            answer = f"0\nThe form could not be read: {error}"
        except Exception as error:  # a bug here must still answer, as a site's error text
            log.exception("site emulator failed on %s", path)
            answer = f"0\nSite emulator internal error on {path}: {error!r}"
        data = self._response(200, answer.encode("utf-8"), "text/plain; charset=utf-8")
        self.server.stats.record(path, len(body), len(data))
        self._write(data)

    def _download(self, path: str) -> None:
        if self._faulted():
            return
        try:
            code, content_type, body = self.server.downloads(path, self._session())  # type: ignore[misc]
        except Exception as error:
            log.exception("site emulator failed on %s", path)
            code, content_type, body = 500, "text/plain", repr(error).encode("utf-8")
        data = self._response(code, body, content_type)
        self.server.stats.record(path.split("/")[1], 0, len(data))
        self._write(data)

    def _base_url(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _session(self) -> Optional[str]:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = cookie.get("_session_id")
        return morsel.value if morsel is not None else None

    # --- control ----------------------------------------------------------------------------

    def _control(self, body: bytes) -> None:
        if not _is_loopback(self.client_address[0]):
            self._send_json(403, {"ok": False, "error": "control is for loopback peers only"})
            return
        try:
            request = json.loads(body or b"null")
            if not isinstance(request, dict) or "action" not in request:
                raise ValueError('expected {"action": ..., ...}')
            result = self.server.control(request)
        except (ValueError, TypeError, KeyError, ApiError) as error:
            message = error.message if isinstance(error, ApiError) else str(error)
            self._send_json(400, {"ok": False, "error": message})
            return
        except Exception as error:  # answer, never leave a control client hanging
            log.exception("site emulator control action failed")
            self._send_json(500, {"ok": False, "error": repr(error)})
            return
        self._send_json(200, {"ok": True, "result": result})

    # --- responses ------------------------------------------------------------------------

    def _send_json(self, code: int, value: Any, close: bool = False) -> None:
        self._send(code, encode(value), _JSON, close=close)

    def _send_text(self, code: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(code, text.encode("utf-8"), "text/plain; charset=utf-8", headers)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str,
        headers: Optional[Dict[str, str]] = None,
        close: bool = False,
    ) -> None:
        self._write(self._response(code, body, content_type, headers, close))

    def _response(
        self,
        code: int,
        body: bytes,
        content_type: str,
        headers: Optional[Dict[str, str]] = None,
        close: bool = False,
    ) -> bytes:
        """Status line, headers and body as one buffer, so they go out in one write."""
        reason = self.responses.get(code, ("Error",))[0]
        lines = [
            f"HTTP/1.1 {code} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if close or self.close_connection:
            lines.append("Connection: close")
            self.close_connection = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def parse_form(
    content_type: str, body: bytes
) -> Tuple[Dict[str, str], Dict[str, Tuple[str, bytes]]]:
    """A posted form's fields and files: urlencoded, or multipart as the client encodes it."""
    kind, _, parameters = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        return dict(pairs), {}
    boundary = ""
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("a multipart form without a boundary")
    fields: Dict[str, str] = {}
    files: Dict[str, Tuple[str, bytes]] = {}
    for part in _parts(body, boundary.encode("latin-1")):
        head, _, content = part.partition(b"\r\n\r\n")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        name = _disposition_value(disposition, "name")
        if name is None:
            continue
        filename = _disposition_value(disposition, "filename")
        if filename is None:
            fields[name] = content.decode("utf-8")
        else:
            files[name] = (filename, content)
    return fields, files


def _parts(body: bytes, boundary: bytes) -> List[bytes]:
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        parts.append(chunk[2:] if chunk.startswith(b"\r\n") else chunk)
    return [part[:-2] if part.endswith(b"\r\n") else part for part in parts]


def _disposition_value(disposition: str, key: str) -> Optional[str]:
    found = re.search(r";\s*" + key + r'="([^"]*)"', disposition)
    return found.group(1) if found else None


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def serve(server: SiteServer) -> threading.Thread:
    """Serve on a daemon thread; returns it."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="site-emulator"
    )
    thread.daemon = True
    thread.start()
    return thread


def shutdown(server: SiteServer, thread: Optional[threading.Thread], timeout: float = 5.0) -> None:
    """Stop accepting, cut open connections, and wait briefly for the serving thread."""
    server.stopping.set()
    server.shutdown()
    server.close_connections()
    server.server_close()
    if thread is not None:
        thread.join(timeout)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and server._connections:
        time.sleep(0.01)
