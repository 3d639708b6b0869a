"""Health and Prometheus metrics over HTTP: ``/healthz`` and ``/metrics``.

The endpoint is optional (``metrics_port: 0``, the default, turns it off) and binds
``metrics_host`` only, 127.0.0.1 unless the config says otherwise. Three parts:

- ``PrometheusObserver``: the engine's and workers' hooks (observe.py) counting into a private
  ``CollectorRegistry``: site request latency and failures, events fetched (by the poll, and
  per plugin by a plugin catching up on its own), events delivered
  per plugin, callback durations and errors. Cheap, thread-safe increments only.
- a collector that turns ``Engine.status()`` into gauges (head, open gaps, site up, state file
  healthy, per-plugin active, position, lag, queue, busy time) when Prometheus scrapes, so
  nothing is pushed for them on the engine's hot path.
- ``health()``, pure: healthy means the site is reachable, a poll succeeded recently, no
  plugin has been inside one callback longer than ``stuck_after`` and the state file is
  healthy. ``/healthz`` answers 200 or 503 with the reasons.

Inactive plugins (a load error, or a callback that raised with ``stopOnError``) are listed in
the ``/healthz`` body but do NOT make it 503: they need a person to fix the plugin, and a
supervisor restarting the daemon on a 503 would not help them; it would only interrupt every
healthy plugin. A stuck callback, a dead poll or an unhealthy state file is what a restart can
cure, or what must wake someone at once.

This module must never bind anything but loopback unless configured, never slow or block the
engine (a scrape reads ``status()``, which takes no locks), and never raise into the engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .logs import mask
from .observe import EngineObserver

log = logging.getLogger("engine.metrics")

PREFIX = "shotgun_events_"

#: Callbacks range from a dictionary update to minutes of publishing; the buckets span both.
CALLBACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Site requests: a fast poll takes milliseconds, a slow site or a timeout up to a minute.
SITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

StatusFunction = Callable[[], Dict[str, Any]]
Response = Tuple[int, str, bytes]


# --------------------------------------------------------------------------- counters


class PrometheusObserver(EngineObserver):
    """Counts what the engine and workers report into its own ``registry``.

    A private registry (not prometheus_client's global one) so that two engines in one
    process, or two tests, never share or collide on counters.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._site_seconds = Histogram(
            PREFIX + "site_request_seconds",
            "Time of one request to the site (engine poll, gap re-query, catch-up read).",
            ["request"],
            buckets=SITE_BUCKETS,
            registry=self.registry,
        )
        self._site_failures = Counter(
            PREFIX + "site_request_failures",
            "Requests to the site that failed (each retry counts).",
            ["request"],
            registry=self.registry,
        )
        self._fetched = Counter(
            PREFIX + "events_fetched",
            "Events read by the engine's poll (catch-up reads of lagging plugins not counted).",
            registry=self.registry,
        )
        self._caught_up = Counter(
            PREFIX + "events_read_catching_up",
            "Events a plugin that fell behind read from the site on its own.",
            ["plugin"],
            registry=self.registry,
        )
        self._delivered = Counter(
            PREFIX + "events_delivered",
            "Events fully handled by every matching callback of a plugin.",
            ["plugin"],
            registry=self.registry,
        )
        self._callback_seconds = Histogram(
            PREFIX + "callback_duration_seconds",
            "Time of one callback run on one event.",
            ["plugin", "callback"],
            buckets=CALLBACK_BUCKETS,
            registry=self.registry,
        )
        self._callback_errors = Counter(
            PREFIX + "callback_errors",
            "Callback runs that raised.",
            ["plugin", "callback"],
            registry=self.registry,
        )

    def site_request(self, what: str, seconds: float, ok: bool) -> None:
        with _never_raise("site_request"):
            self._site_seconds.labels(str(what)).observe(seconds)
            if not ok:
                self._site_failures.labels(str(what)).inc()

    def events_fetched(self, count: int) -> None:
        with _never_raise("events_fetched"):
            self._fetched.inc(count)

    def events_caught_up(self, plugin: str, count: int) -> None:
        with _never_raise("events_caught_up"):
            self._caught_up.labels(str(plugin)).inc(count)

    def callback_ran(self, plugin: str, callback: str, seconds: float, failed: bool) -> None:
        with _never_raise("callback_ran"):
            self._callback_seconds.labels(str(plugin), str(callback)).observe(seconds)
            if failed:
                self._callback_errors.labels(str(plugin), str(callback)).inc()

    def event_delivered(self, plugin: str) -> None:
        with _never_raise("event_delivered"):
            self._delivered.labels(str(plugin)).inc()


@contextlib.contextmanager
def _never_raise(hook: str) -> Iterator[None]:
    """Log and swallow a failure in a hook: a metric must never cost an event."""
    try:
        yield
    except Exception:
        log.warning("Metrics hook %s failed; the event is unaffected.", hook, exc_info=True)


# --------------------------------------------------------------------------- health


def health(
    status: Dict[str, Any], *, now: float, stuck_after: float, poll_stale_after: float
) -> Tuple[bool, List[str]]:
    """Whether the daemon is healthy, and why not.

    ``now`` is wall-clock time (``time.time()``), as ``last_poll_at`` and ``started_at`` are.
    Before the first poll, the time since start counts instead, so that start-up (reading
    the state file, loading plugins) is not a failure until it takes too long.
    """
    reasons: List[str] = []
    site = status.get("site") or {}
    if site.get("reachable") is False:
        reasons.append(_site_reason(site))
    poll = _poll_reason(status, now, poll_stale_after)
    if poll:
        reasons.append(poll)
    for plugin in status.get("plugins") or []:
        busy = plugin.get("busy_seconds")
        # The running callback's own deadline (registerCallback timeout=) comes first.
        limit = plugin.get("busy_deadline") or stuck_after
        if busy is not None and busy > limit:
            reasons.append(
                f"plugin {plugin.get('name')} stuck in callback {plugin.get('busy_callback')} "
                f"for {busy:.0f} s (limit {limit:g} s)"
            )
    state_file = status.get("state_file") or {}
    if state_file.get("healthy") is False:
        reasons.append(f"state file unhealthy: {state_file.get('last_error') or 'unknown error'}")
    return not reasons, reasons


def _site_reason(site: Dict[str, Any]) -> str:
    reason = "site unreachable"
    if site.get("outage_seconds") is not None:
        reason += f" for {site['outage_seconds']:.0f} s"
    if site.get("failed_requests"):
        reason += f" ({site['failed_requests']} failed requests)"
    if site.get("last_error"):
        reason += f": {site['last_error']}"
    return reason


def _poll_reason(status: Dict[str, Any], now: float, limit: float) -> Optional[str]:
    last_poll, started = status.get("last_poll_at"), status.get("started_at")
    if last_poll is not None:
        age = now - last_poll
        if age > limit:
            return f"last successful poll {age:.0f} s ago (limit {limit:g} s)"
        return None
    if started is None:
        return "the engine has not started polling yet"
    if now - started > limit:
        return f"no successful poll in the {now - started:.0f} s since start (limit {limit:g} s)"
    return None


def _health_body(status: Dict[str, Any], healthy: bool, reasons: List[str]) -> Dict[str, Any]:
    """The JSON of ``/healthz``: the verdict, the reasons, every plugin's state, and why any
    plugin is inactive (reported for a person, not counted against health)."""
    plugins = status.get("plugins") or []
    return {
        "healthy": healthy,
        "reasons": reasons,
        "plugins": {p.get("name"): p.get("state") for p in plugins},
        "inactive": {
            p.get("name"): p.get("reason") or p.get("last_error")
            for p in plugins
            if p.get("active") is False
        },
    }


# --------------------------------------------------------------------------- gauges


class _StatusCollector:
    """Gauges computed from ``Engine.status()`` when Prometheus scrapes, never pushed."""

    def __init__(self, status: StatusFunction, is_healthy: Callable[[Dict[str, Any]], bool]):
        self._status = status
        self._is_healthy = is_healthy

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from self._engine_gauges(status)
        yield from self._plugin_gauges(status.get("plugins") or [])

    def _engine_gauges(self, status: Dict[str, Any]) -> Iterator[Metric]:
        site = status.get("site") or {}
        state_file = status.get("state_file") or {}
        gauges = [
            ("healthy", "1 when /healthz answers 200.", self._is_healthy(status)),
            (
                "head_event_id",
                "Highest event id the engine's poll has settled.",
                status.get("head"),
            ),
            ("open_gaps", "Event ids the engine still waits to appear.", status.get("open_gaps")),
            (
                "last_poll_timestamp_seconds",
                "Wall-clock time of the last successful poll.",
                status.get("last_poll_at"),
            ),
            ("site_up", "1 when the last request to the site succeeded.", site.get("reachable")),
            (
                "site_outage_seconds",
                "How long the current site outage has lasted (0 when none).",
                site.get("outage_seconds") or 0,
            ),
            (
                "state_file_healthy",
                "1 when positions are being saved normally.",
                state_file.get("healthy", True),
            ),
        ]
        for name, documentation, value in gauges:
            yield _gauge(name, documentation, value)

    def _plugin_gauges(self, plugins: List[Dict[str, Any]]) -> Iterator[Metric]:
        labels = ["plugin", "folder"]
        families = {
            "active": "1 when the plugin is loaded and running.",
            "position": "Id of the last event the plugin is done with.",
            "lag_events": "Events between the plugin's position and the head.",
            "lag_seconds": "Age of the oldest event the plugin has not reached.",
            "queued_events": "Events handed to the plugin's worker, not yet run.",
            "open_gaps": "Event ids below the plugin's position still missing.",
            "busy_seconds": "How long the current callback has run (0 when idle).",
        }
        for key, documentation in families.items():
            family = GaugeMetricFamily(PREFIX + "plugin_" + key, documentation, labels=labels)
            for plugin in plugins:
                value = plugin.get(key)
                if key == "busy_seconds" and value is None:
                    value = 0
                if value is not None:
                    family.add_metric(_plugin_labels(plugin), float(value))
            yield family
        state = GaugeMetricFamily(
            PREFIX + "plugin_state",
            "1 for the plugin's current state (attached, catching up, inactive, loading...).",
            labels=[*labels, "state"],
        )
        for plugin in plugins:
            state.add_metric([*_plugin_labels(plugin), str(plugin.get("state"))], 1)
        yield state
        yield from self._retry_counters(plugins, labels)

    def _retry_counters(self, plugins: List[Dict[str, Any]], labels: List[str]) -> Iterator[Metric]:
        """Transient site errors retried for plugins (retry.OutageLog's counts)."""
        counters = {
            "retries": ("plugin_retries", "Callback runs retried after a transient site error."),
            "give_ups": ("plugin_retry_give_ups", "Events whose retries were given up."),
            "waited_seconds": ("plugin_retry_wait_seconds", "Seconds spent waiting to retry."),
        }
        for key, (name, documentation) in counters.items():
            family = CounterMetricFamily(PREFIX + name, documentation, labels=labels)
            for plugin in plugins:
                retries = plugin.get("retries") or {}
                family.add_metric(_plugin_labels(plugin), float(retries.get(key, 0)))
            yield family


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    """One unlabelled gauge; a value the engine does not know yet is left out, not zeroed."""
    family = GaugeMetricFamily(PREFIX + name, documentation)
    if value is not None:
        family.add_metric([], float(value))
    return family


def _plugin_labels(plugin: Dict[str, Any]) -> List[str]:
    """Plugin and folder: the folder keeps two same-named plugins from colliding."""
    return [str(plugin.get("name")), str(plugin.get("folder", ""))]


# --------------------------------------------------------------------------- HTTP


class MetricsServer:
    """Serves ``/healthz`` and ``/metrics`` on a daemon thread until ``stop()``.

    ``status`` is ``Engine.status``; ``stuck_after`` is how long one callback may run before
    the daemon counts as stuck; ``poll_stale_after`` how old the last successful poll may be.
    """

    def __init__(
        self,
        status: StatusFunction,
        observer: PrometheusObserver,
        *,
        host: str,
        port: int,
        stuck_after: float,
        poll_stale_after: float,
    ) -> None:
        self.status = status
        self.observer = observer
        self.host = host
        self.port = port
        self.stuck_after = stuck_after
        self.poll_stale_after = poll_stale_after
        self._collector = _StatusCollector(status, lambda s: self.judge(s)[0])
        self._http: Optional[_HttpServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> MetricsServer:
        """Bind and serve; port 0 picks a free port (see ``url``). Raises OSError if the
        address is taken or not local to this machine."""
        if self._http is not None:
            raise RuntimeError(f"the metrics server is already serving on {self.url}")
        self._http = _HttpServer((self.host, self.port), _Handler, self)
        self.observer.registry.register(self._collector)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="metrics", kwargs={"poll_interval": 0.25}
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("Serving /healthz and /metrics on %s", self.url)
        return self

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (with the port actually bound)."""
        if self._http is None:
            raise RuntimeError("the metrics server is not started")
        host, port = self._http.server_address[:2]
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.observer.registry.unregister(self._collector)

    # ------------------------------------------------------------ answers

    def judge(self, status: Dict[str, Any]) -> Tuple[bool, List[str]]:
        return health(
            status,
            now=time.time(),
            stuck_after=self.stuck_after,
            poll_stale_after=self.poll_stale_after,
        )

    def respond(self, path: str) -> Response:
        """Status code, content type and body for a GET of ``path``."""
        route = urlsplit(path).path.rstrip("/") or "/"
        if route == "/healthz":
            return self._healthz()
        if route == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.observer.registry)
        return (
            HTTPStatus.NOT_FOUND,
            "text/plain; charset=utf-8",
            b"Not found: try /healthz or /metrics\n",
        )

    def _healthz(self) -> Response:
        status = self.status()
        healthy, reasons = self.judge(status)
        body = json.dumps(_health_body(status, healthy, reasons), indent=1).encode() + b"\n"
        code = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
        return code, "application/json", body


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Tuple[str, int], handler: type, app: MetricsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "shotgun-events"

    def do_GET(self) -> None:
        try:
            code, content_type, body = self.server.app.respond(self.path)
        except Exception as error:
            log.warning("Metrics request %s failed: %s", self.path, error, exc_info=True)
            code, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8"
            body = f"status unavailable: {error}\n".encode()
        # The one exit of this server: whatever a status carries (a plugin's load error,
        # the site's last error) reaches any local user masked.
        body = mask(body.decode("utf-8", "replace")).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the daemon's log: keep them at debug."""
        log.debug("%s %s", self.address_string(), format % args)
