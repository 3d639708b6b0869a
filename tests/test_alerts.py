"""Error emails, proved against a real SMTP server (aiosmtpd) on loopback.

Every test sends through smtplib to a server in this process and parses what the server
received. TLS tests use a self-signed certificate made with the ``openssl`` command.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shotgun_events.alerts import (
    AlertHandler,
    AlertStats,
    RateLimiter,
    build_alert_handler,
)
from shotgun_events.config import EmailSettings, Secret
from shotgun_events.logs import MASK, Redactor

DEFAULT_TO = ("pipeline@studio.example", "td@studio.example")
SENDER = "events@studio.example"
PASSWORD = "mail-Passw0rd-77"
SCRIPT_KEY = "abcd1234efgh5678script"


# --------------------------------------------------------------------------- servers


class Received:
    """One message as the server got it: the envelope and the parsed MIME message."""

    def __init__(self, mail_from: str, rcpt_tos: List[str], raw: bytes) -> None:
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.raw = raw
        self.message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)

    @property
    def body(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")  # as sent on the wire


class Collector:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: List[Received] = []
        self.logins: List[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        """Accepts exactly the test user and password."""
        if isinstance(auth_data, LoginPassword):
            self.logins.append(auth_data.login.decode())
            ok = auth_data.login == b"daemon" and auth_data.password == PASSWORD.encode()
            return AuthResult(success=ok, handled=False)  # the server answers 235 or 535
        return AuthResult(success=False, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., Tuple[Collector, int]]]:
    """Starts real SMTP servers on loopback: ``start(**smtp_options) -> (collector, port)``."""
    controllers: List[Controller] = []

    def start(**options) -> Tuple[Collector, int]:
        collector = Collector()
        port = options.pop("port", None) or _free_port()
        if options.pop("with_login", False):
            options.update(authenticator=collector.authenticate, auth_require_tls=False)
        controller = Controller(
            collector,
            hostname="127.0.0.1",
            port=port,
            server_hostname="localhost",
            **options,
        )
        controller.start()
        controllers.append(controller)
        return collector, controller.port

    yield start
    for controller in controllers:
        controller.stop()


class SilentServer:
    """Accepts connections and never says a word: a mail server that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.connected = threading.Event()
        self._held: List[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except socket.timeout:
                continue
            self._held.append(connection)
            self.connected.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: Tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def client_tls(certificate: Tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


# --------------------------------------------------------------------------- handlers


class FakeClock:
    """A monotonic clock the test moves by hand, so no test sleeps through a window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_for(port: int, **changes) -> EmailSettings:
    base = EmailSettings(
        enabled=True,
        server="127.0.0.1",
        port=port,
        from_addr=SENDER,
        to_addrs=DEFAULT_TO,
        subject="[shotgunEvents]",
        timeout=5.0,
        rate_limit_window=0.0,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def alerts():
    """``make(settings, **options) -> handler``; ``logger(name, handler)`` gives a logger
    (at DEBUG, so every record reaches the handler) that the handler listens to.
    Everything is detached and closed afterwards."""
    attached: List[Tuple[logging.Logger, logging.Handler, int]] = []
    handlers: List[AlertHandler] = []

    def make(settings: EmailSettings, **options) -> AlertHandler:
        options.setdefault("redactor", Redactor([SCRIPT_KEY]))
        options.setdefault("retry_delays", (0.01, 0.01))
        options.setdefault("close_timeout", 2.0)
        handler = build_alert_handler(settings, **options)
        assert handler is not None
        handlers.append(handler)
        return handler

    def logger(name: str, handler: logging.Handler) -> logging.Logger:
        target = logging.getLogger(name)
        attached.append((target, handler, target.level))
        target.setLevel(logging.DEBUG)
        target.addHandler(handler)
        return target

    make.logger = logger  # type: ignore[attr-defined]
    yield make
    for target, handler, level in reversed(attached):
        target.removeHandler(handler)
        target.setLevel(level)
    for handler in handlers:
        handler.close()


def alert_warnings(caplog) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "alerts" and r.levelno == logging.WARNING]


def fail_with(exception: BaseException, logger: logging.Logger, message: str, *args) -> None:
    try:
        raise exception
    except type(exception):
        logger.exception(message, *args)


# --------------------------------------------------------------------------- content


def test_error_is_mailed_as_utf8_mime_with_date_message_id_and_traceback(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    logger = alerts.logger("plugin.mailtest_publish", handler)
    callback_logger = logging.getLogger("plugin.mailtest_publish.on_shot_change")

    fail_with(
        ValueError("statut « ip » refusé"),
        callback_logger,
        "Échec du rendu pour le plan %s — 日本語\nsecond line",
        "SH010",
    )
    assert handler.flush(10)

    assert len(collector.received) == 1
    mail = collector.received[0]
    mail.raw.decode("ascii")  # 7-bit clean on the wire: any mail server passes it unchanged
    message = mail.message
    assert mail.mail_from == SENDER and mail.rcpt_tos == list(DEFAULT_TO)
    assert message["Subject"] == (
        "[shotgunEvents] plugin.mailtest_publish.on_shot_change: "
        "Échec du rendu pour le plan SH010 — 日本語"
    )
    assert message["From"] == SENDER
    assert message["To"].addresses[0].addr_spec == DEFAULT_TO[0]
    assert len(message["To"].addresses) == 2
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(">")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = mail.body
    assert "Échec du rendu pour le plan SH010 — 日本語\nsecond line" in body
    assert "Traceback (most recent call last)" in body
    assert "ValueError: statut « ip » refusé" in body
    assert f"Host:    {socket.gethostname()}" in body
    assert f"Process: {os.getpid()}" in body
    assert "Logger:  plugin.mailtest_publish.on_shot_change" in body
    assert "Level:   ERROR" in body
    assert handler.stats == AlertStats(sent=1)
    assert logger.handlers == [handler]


def test_long_first_line_is_cut_in_the_subject_but_whole_in_the_body(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    logger = alerts.logger("engine", handler)

    logger.error("x" * 500)
    assert handler.flush(10)

    message = collector.received[0].message
    assert message["Subject"].startswith("[shotgunEvents] engine: xxx")
    assert message["Subject"].endswith("...") and len(message["Subject"]) < 200
    assert "x" * 500 in collector.received[0].body


def test_warning_is_not_mailed(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    logger = alerts.logger("plugin.mailtest_warn", handler)

    logger.warning("only a warning")
    logger.error("a real error")
    assert handler.flush(10)

    assert [m.message["Subject"] for m in collector.received] == [
        "[shotgunEvents] plugin.mailtest_warn: a real error"
    ]


def test_set_emails_false_true_and_addresses_choose_the_recipients(smtp_server, alerts):
    collector, port = smtp_server()
    set_emails = {"quiet": False, "loud": True, "custom": ("lead@studio.example", "me@x.org")}
    asked: List[str] = []

    def recipients_for(logger_name: str):
        asked.append(logger_name)
        return set_emails[logger_name.split(".")[1]]

    handler = alerts(settings_for(port), recipients_for=recipients_for)
    for plugin in set_emails:
        alerts.logger(f"plugin.{plugin}", handler)

    logging.getLogger("plugin.quiet.on_event").error("quiet failure")
    logging.getLogger("plugin.loud.on_event").error("loud failure")
    logging.getLogger("plugin.custom").error("custom failure")
    assert handler.flush(10)

    routed = {m.message["Subject"].split(": ")[1]: m for m in collector.received}
    assert set(routed) == {"loud failure", "custom failure"}
    assert routed["loud failure"].rcpt_tos == list(DEFAULT_TO)
    assert routed["custom failure"].rcpt_tos == ["lead@studio.example", "me@x.org"]
    assert str(routed["custom failure"].message["To"]) == "lead@studio.example, me@x.org"
    assert asked == ["plugin.quiet.on_event", "plugin.loud.on_event", "plugin.custom"]


def test_disabled_emails_build_no_handler():
    assert build_alert_handler(EmailSettings(enabled=False), redactor=Redactor()) is None


# --------------------------------------------------------------------------- rate limiting


def test_repeats_within_the_window_are_counted_then_reported_by_the_next_email(smtp_server, alerts):
    collector, port = smtp_server()
    clock = FakeClock()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=clock)
    logger = alerts.logger("plugin.mailtest_limit", handler)

    for event_id in (1, 2, 3):
        logger.error("Callback failed on event %d", event_id)
    assert handler.flush(10)
    assert len(collector.received) == 1
    assert handler.stats.suppressed == 2

    clock.advance(601)
    logger.error("Callback failed on event %d", 4)
    assert handler.flush(10)

    assert len(collector.received) == 2
    second = collector.received[1]
    assert second.message["Subject"].endswith("Callback failed on event 4")
    assert "logged 2 more times since" in second.body
    assert "every 600 seconds" in second.body
    assert handler.stats == AlertStats(sent=2, suppressed=2)


def test_other_logger_or_exception_type_is_a_different_error(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=FakeClock())
    first = alerts.logger("plugin.mailtest_a", handler)
    second = alerts.logger("plugin.mailtest_b", handler)

    fail_with(ValueError("bad"), first, "Callback failed")
    fail_with(KeyError("bad"), first, "Callback failed")
    fail_with(ValueError("bad"), second, "Callback failed")
    fail_with(ValueError("again"), first, "Callback failed")
    assert handler.flush(10)

    assert len(collector.received) == 3
    assert handler.stats.suppressed == 1


def test_errors_from_worker_processes_are_told_apart_by_their_own_exception_type(
    smtp_server, alerts
):
    """Process isolation: a callback's error arrives as RemoteCallbackError."""
    from shotgun_events.process_worker import RemoteCallbackError

    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=FakeClock())
    logger = alerts.logger("plugin.mailtest_remote", handler)

    for summary, error_type in [("KeyError: 'x'", "KeyError"), ("ValueError: y", "ValueError")]:
        remote = RemoteCallbackError(summary, "Traceback ...", False, error_type)
        fail_with(remote, logger, "Callback failed")
        fail_with(remote, logger, "Callback failed")
    assert handler.flush(10)

    assert len(collector.received) == 2
    assert handler.stats.suppressed == 2


def test_window_zero_mails_every_repeat(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=0), clock=FakeClock())
    logger = alerts.logger("engine", handler)

    for _ in range(3):
        logger.error("Site unreachable")
    assert handler.flush(10)

    assert len(collector.received) == 3
    assert handler.stats == AlertStats(sent=3)


def test_close_mails_one_summary_of_repeats_not_yet_reported(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=FakeClock())
    logger = alerts.logger("plugin.mailtest_summary", handler)

    for _ in range(3):
        logger.error("Shot %s has no frames", "SH010")
    for _ in range(2):
        logger.error("Version missing")
    assert handler.flush(10)
    assert len(collector.received) == 2

    handler.close()

    assert len(collector.received) == 3
    summary = collector.received[2]
    assert summary.message["Subject"] == "[shotgunEvents] 3 repeated errors were not mailed"
    assert "- 2 x since" in summary.body and "Shot %s has no frames" in summary.body
    assert "- 1 x since" in summary.body and "Version missing" in summary.body
    assert summary.rcpt_tos == list(DEFAULT_TO)
    logger.error("after close")
    assert len(collector.received) == 3


def test_close_sends_no_summary_when_nothing_was_held_back(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port, rate_limit_window=600), clock=FakeClock())
    alerts.logger("engine", handler).error("once")
    handler.close()
    assert len(collector.received) == 1


def test_rate_limiter_forgets_the_least_recent_errors_but_counts_their_repeats():
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock, max_keys=10)
    key = ("engine", "kept %s", None)
    assert limiter.admit(key, 1.0).mail
    assert not limiter.admit(key, 2.0).mail

    for number in range(100):
        limiter.admit(("plugin.x", f"error {number}", None), 3.0)

    assert len(limiter) == 10
    pending, forgotten = limiter.take_pending()
    assert pending == [] and forgotten == 1
    assert limiter.suppressed == 1


def test_rate_limiter_reports_repeats_once_the_window_has_passed():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    key = ("plugin.x", "failed", "ValueError")
    assert limiter.admit(key, 100.0).mail
    assert not limiter.admit(key, 110.0).mail
    assert not limiter.admit(key, 120.0).mail
    clock.advance(60)
    verdict = limiter.admit(key, 160.0)
    assert verdict.mail and verdict.repeats is not None
    assert (verdict.repeats.count, verdict.repeats.since) == (2, 110.0)
    clock.advance(60)
    assert limiter.admit(key, 220.0).repeats is None


# --------------------------------------------------------------------------- TLS and login


def test_starttls_sends_over_an_encrypted_connection(smtp_server, alerts, certificate):
    collector, port = smtp_server(tls_context=server_tls(certificate), require_starttls=True)
    handler = alerts(settings_for(port, use_starttls=True), ssl_context=client_tls(certificate))
    alerts.logger("engine", handler).error("over STARTTLS")
    assert handler.flush(10)
    assert [m.message["Subject"] for m in collector.received] == [
        "[shotgunEvents] engine: over STARTTLS"
    ]


def test_smtps_sends_over_tls_from_the_first_byte(smtp_server, alerts, certificate):
    collector, port = smtp_server(ssl_context=server_tls(certificate))
    handler = alerts(settings_for(port, use_ssl=True), ssl_context=client_tls(certificate))
    alerts.logger("engine", handler).error("over SMTPS")
    assert handler.flush(10)
    assert len(collector.received) == 1


def test_untrusted_certificate_is_refused_by_default(smtp_server, alerts, certificate, caplog):
    collector, port = smtp_server(ssl_context=server_tls(certificate))
    handler = alerts(settings_for(port, use_ssl=True), retry_delays=())
    alerts.logger("engine", handler).error("must not be sent")
    assert handler.flush(10)
    assert collector.received == []
    assert handler.stats.failed == 1
    assert "CERTIFICATE_VERIFY_FAILED" in alert_warnings(caplog)[0].getMessage()


def test_login_uses_the_password_without_showing_it(smtp_server, alerts, caplog):
    collector, port = smtp_server(with_login=True)
    redactor = Redactor()
    handler = alerts(
        settings_for(port, username="daemon", password=Secret(PASSWORD)), redactor=redactor
    )
    logger = alerts.logger("engine", handler)

    logger.error("SMTP password is %s", PASSWORD)
    assert handler.flush(10)

    assert collector.logins == ["daemon"]
    mail = collector.received[0]
    assert PASSWORD not in mail.raw.decode("ascii") and PASSWORD not in mail.body
    assert f"SMTP password is {MASK}" in mail.body
    others = [r.getMessage() for r in caplog.records if r.name != "engine"]
    assert others and not [line for line in others if PASSWORD in line]


def test_refused_login_is_logged_once_without_the_password(smtp_server, alerts, caplog):
    collector, port = smtp_server(with_login=True)
    wrong = "wrong-Passw0rd-99"
    handler = alerts(settings_for(port, username="daemon", password=Secret(wrong)))
    alerts.logger("engine", handler).error("cannot be sent")
    assert handler.flush(10)

    assert collector.received == []
    assert handler.stats.failed == 1
    warnings = alert_warnings(caplog)
    assert len(warnings) == 1
    assert "after 1 attempt(s)" in warnings[0].getMessage()  # a 535 is not retried
    assert "SMTPAuthenticationError" in warnings[0].getMessage()
    assert set(collector.logins) == {"daemon"}
    assert wrong not in caplog.text


# --------------------------------------------------------------------------- secrets


def test_secret_in_message_and_traceback_is_masked_in_the_email(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    logger = alerts.logger("plugin.mailtest_secret", handler)

    fail_with(
        RuntimeError(f"auth refused for key {SCRIPT_KEY}"),
        logger,
        "Connecting with key %s failed",
        SCRIPT_KEY,
    )
    assert handler.flush(10)

    mail = collector.received[0]
    assert SCRIPT_KEY not in mail.raw.decode("ascii")
    assert SCRIPT_KEY not in mail.body and SCRIPT_KEY not in mail.message["Subject"]
    assert mail.message["Subject"].endswith(f"Connecting with key {MASK} failed")
    assert f"RuntimeError: auth refused for key {MASK}" in mail.body


# --------------------------------------------------------------------------- failures


def _closed_port() -> int:
    return _free_port()  # nothing listens there once the probe socket is closed


def test_dead_mail_server_costs_the_engine_nothing_and_is_logged_once(alerts, caplog):
    handler = alerts(settings_for(_closed_port()), retry_delays=(0.01, 0.02))
    logger = alerts.logger("engine", handler)

    logger.error("Site unreachable")
    assert handler.flush(10)

    assert handler.stats == AlertStats(failed=1)
    warnings = alert_warnings(caplog)
    assert len(warnings) == 1
    assert "after 3 attempt(s)" in warnings[0].getMessage()
    assert "Site unreachable" in warnings[0].getMessage()


def test_mail_server_outage_is_warned_once_and_its_end_is_logged(smtp_server, alerts, caplog):
    port = _closed_port()
    handler = alerts(settings_for(port), retry_delays=())
    logger = alerts.logger("engine", handler)
    caplog.set_level(logging.DEBUG, logger="alerts")

    for number in range(3):
        logger.error("Distinct error %d", number)
    assert handler.flush(10)
    assert handler.stats == AlertStats(failed=3)
    assert len(alert_warnings(caplog)) == 1
    assert len([r for r in caplog.records if r.name == "alerts"]) == 3  # the rest at DEBUG

    collector, _ = smtp_server(port=port)
    logger.error("The mail server is back")
    assert handler.flush(10)

    assert len(collector.received) == 1
    back = [r.getMessage() for r in caplog.records if r.name == "alerts" and r.levelno == 20]
    assert back == ["Error emails go through again; 3 were given up before this one."]


def test_hanging_mail_server_does_not_make_emit_wait(alerts, silent_server, caplog):
    timeout = 2.0
    handler = alerts(
        settings_for(silent_server.port, timeout=timeout, rate_limit_window=600),
        retry_delays=(),
    )
    logger = alerts.logger("plugin.mailtest_hang", handler)

    started = time.monotonic()
    for event_id in range(20):  # a plugin failing on every event
        logger.error("Callback failed on event %d", event_id)
    spent = time.monotonic() - started

    assert silent_server.connected.wait(10)
    assert handler.stats == AlertStats(suppressed=19)  # still waiting for a greeting
    assert spent < timeout / 2
    assert handler.flush(30)
    assert handler.stats == AlertStats(suppressed=19, failed=1)
    warnings = alert_warnings(caplog)
    assert len(warnings) == 1
    assert "timed out" in warnings[0].getMessage()


def test_full_queue_drops_new_alerts_and_counts_them(alerts, silent_server):
    handler = alerts(
        settings_for(silent_server.port, timeout=30),
        retry_delays=(),
        queue_size=2,
        close_timeout=0.1,
    )
    logger = alerts.logger("engine", handler)

    logger.error("first")
    assert silent_server.connected.wait(10)  # the sender holds "first"; the queue is empty
    for name in ("second", "third", "fourth", "fifth"):
        logger.error(name)

    assert handler.stats.dropped == 2
    assert not handler.flush(0.05)
    handler.close()
    assert handler.stats.dropped == 4  # the two still queued at close are given up


def test_own_failure_logs_are_never_mailed(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    root = alerts.logger("", handler)
    root.setLevel(logging.WARNING)

    logging.getLogger("alerts").error("mail server broken")
    logging.getLogger("alerts.smtp").critical("still broken")
    logging.getLogger("engine").error("a real error")
    assert handler.flush(10)

    assert [m.message["Subject"] for m in collector.received] == [
        "[shotgunEvents] engine: a real error"
    ]


def test_a_broken_recipient_lookup_still_reaches_the_default_recipients(smtp_server, alerts):
    collector, port = smtp_server()

    def recipients_for(logger_name: str):
        raise LookupError(logger_name)

    handler = alerts(settings_for(port), recipients_for=recipients_for)
    alerts.logger("plugin.mailtest_gone", handler).error("unloaded plugin failed")
    assert handler.flush(10)
    assert collector.received[0].rcpt_tos == list(DEFAULT_TO)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_handler_built_before_daemonizing_mails_from_the_forked_child(smtp_server, alerts):
    collector, port = smtp_server()
    handler = alerts(settings_for(port))
    logger = alerts.logger("engine", handler)
    logger.error("from the parent")
    assert handler.flush(10)

    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            logger.error("from the daemon")
            code = 0 if handler.flush(10) and handler.stats.sent == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    subjects = sorted(m.message["Subject"] for m in collector.received)
    assert subjects == [
        "[shotgunEvents] engine: from the daemon",
        "[shotgunEvents] engine: from the parent",
    ]
