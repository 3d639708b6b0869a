"""Error emails: ERROR records from the engine and plugins, mailed to the people who asked.

``build_alert_handler`` turns the ``[emails]`` settings into a ``logging.Handler`` for the
service to attach to the root and plugin loggers. A plugin chooses its recipients with
``reg.setEmails(...)``; the service passes ``recipients_for`` to look that choice up by
logger name, attaches the handler with ``LogSetup.add_shared_handler`` and closes it at
shutdown (which mails one summary of repeats that no email reported yet).

This module must never:
- block the engine or a plugin: ``emit`` only formats and queues; one sender thread does the
  network, so a dead or hanging mail server costs the caller nothing;
- mail every repeat of the same error: one email per distinct error per window, and the
  next email (or the summary at close) says how many repeats were held back;
- show a secret: every text goes through the redactor before it is queued, and the SMTP
  password only ever reaches ``smtplib``'s login;
- mail about itself: its own failures are logged on the ``alerts`` logger, which the handler
  ignores, so a broken mail server cannot start a loop of emails about emails; and they are
  logged at WARNING once per run of failures, not once per lost email.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from .config import EmailSettings
from .logs import Redactor

#: The handler's own logger; records from it (and its children) are never mailed.
ALERTS_LOGGER = "alerts"
log = logging.getLogger(ALERTS_LOGGER)

#: Alerts waiting for the sender; past this, new alerts are dropped (and counted).
DEFAULT_QUEUE_SIZE = 100
#: Distinct errors remembered for rate limiting; the least recently seen is forgotten first.
DEFAULT_MAX_KEYS = 1000
#: Seconds to wait before each retry of one email (so three attempts in all).
DEFAULT_RETRY_DELAYS: Tuple[float, ...] = (2.0, 10.0)
#: How long ``close()`` (and a bare ``flush()``) waits for queued emails at shutdown.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: The first line of a message is cut to this many characters in the subject.
SUBJECT_TEXT_LIMIT = 120

RecipientsFor = Callable[[str], Union[bool, Sequence[str]]]
#: What makes two errors "the same": logger name, message template, exception type.
AlertKey = Tuple[str, str, Optional[str]]


def _default_recipients(logger_name: str) -> bool:
    return True


@dataclass(frozen=True)
class AlertStats:
    """Counts for metrics and status: emails sent, repeats held back, alerts dropped
    (queue full, or still queued at close), emails given up on after retries."""

    sent: int = 0
    suppressed: int = 0
    dropped: int = 0
    failed: int = 0


# --------------------------------------------------------------------------- rate limiting


@dataclass(frozen=True)
class Repeats:
    """Occurrences of one error that were counted instead of mailed."""

    count: int
    since: float  # wall-clock time (``time.time()``) of the first one


class Verdict(NamedTuple):
    """Whether to mail an occurrence, and the repeats held back since the last email."""

    mail: bool
    repeats: Optional[Repeats] = None


class _KeyMemory:
    __slots__ = ("first_held", "held", "last_mailed")

    def __init__(self, last_mailed: float) -> None:
        self.last_mailed = last_mailed
        self.held = 0
        self.first_held = 0.0

    def take_repeats(self) -> Optional[Repeats]:
        repeats = Repeats(self.held, self.first_held) if self.held else None
        self.held = 0
        return repeats


class RateLimiter:
    """One email per distinct error per ``window`` seconds; repeats in between are counted.

    Pure bookkeeping (no I/O), thread-safe. ``clock`` is monotonic so that a wall-clock
    jump neither floods nor silences; the ``when`` given with each occurrence is the
    wall-clock time shown to people ("since ..."). At most ``max_keys`` errors are
    remembered: the least recently seen is forgotten first, and its held-back repeats are
    added to ``forgotten`` so the summary still counts them.
    """

    def __init__(
        self,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.window = window
        self._clock = clock
        self._max_keys = max(1, max_keys)
        self._keys: OrderedDict[AlertKey, _KeyMemory] = OrderedDict()
        self._lock = threading.Lock()
        self.suppressed = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._keys)

    def admit(self, key: AlertKey, when: float) -> Verdict:
        """Decide for one occurrence of ``key`` that happened at wall-clock time ``when``."""
        if self.window <= 0:
            return Verdict(True)
        now = self._clock()
        with self._lock:
            memory = self._keys.get(key)
            if memory is None:
                self._remember(key, _KeyMemory(now))
                return Verdict(True)
            self._keys.move_to_end(key)
            if now - memory.last_mailed < self.window:
                if not memory.held:
                    memory.first_held = when
                memory.held += 1
                self.suppressed += 1
                return Verdict(False)
            memory.last_mailed = now
            return Verdict(True, memory.take_repeats())

    def take_pending(self) -> Tuple[List[Tuple[AlertKey, Repeats]], int]:
        """Repeats not mailed yet, per error, and the count of forgotten ones; both reset."""
        with self._lock:
            pending = []
            for key, memory in self._keys.items():
                repeats = memory.take_repeats()
                if repeats is not None:
                    pending.append((key, repeats))
            forgotten, self.forgotten = self.forgotten, 0
        return pending, forgotten

    def after_fork(self) -> None:
        """A fresh lock in a forked child (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def _remember(self, key: AlertKey, memory: _KeyMemory) -> None:
        while len(self._keys) >= self._max_keys:
            _, oldest = self._keys.popitem(last=False)
            self.forgotten += oldest.held
        self._keys[key] = memory


#: Record attributes that carry the template and the exception class of a record logged in
#: a plugin's worker process (process isolation), where the message arrives formatted.
ALERT_TEMPLATE = "sged_template"
ALERT_ERROR_TYPE = "sged_error_type"


def alert_key(record: logging.LogRecord) -> AlertKey:
    """The same template from the same logger with the same exception type is one error,
    whatever the arguments (event ids, entity names) that were formatted into it."""
    template = getattr(record, ALERT_TEMPLATE, None) or str(record.msg)
    error_type = getattr(record, ALERT_ERROR_TYPE, None)
    if error_type is None and record.exc_info and record.exc_info[0] is not None:
        error = record.exc_info[1]
        # A callback error from a worker process: its own class, not RemoteCallbackError.
        error_type = getattr(error, "error_type", "") or record.exc_info[0].__name__
    return (record.name, template, error_type)


# --------------------------------------------------------------------------- composing


@dataclass(frozen=True)
class Alert:
    """One email, ready to send; its subject and body are already redacted."""

    recipients: Tuple[str, ...]
    subject: str
    body: str
    created: float  # wall-clock time, for the Date header


def _local_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(sep=" ", timespec="seconds")


def _subject(prefix: str, logger_name: str, message: str) -> str:
    """``<prefix> <logger>: <first line>``, on one line, the first line cut to a length
    that mail clients show whole."""
    lines = message.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > SUBJECT_TEXT_LIMIT:
        first = first[: SUBJECT_TEXT_LIMIT - 3].rstrip() + "..."
    return " ".join(f"{prefix} {logger_name}: {first}".split())


def _record_details(record: logging.LogRecord) -> str:
    """The traceback and stack of a record, as the log files show them."""
    formatter = logging.Formatter()
    parts = []
    if record.exc_info:
        parts.append(record.exc_text or formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n\n".join(parts)


def _repeats_note(repeats: Repeats, window: float) -> str:
    times = "time" if repeats.count == 1 else "times"
    return (
        f"This error was logged {repeats.count} more {times} since "
        f"{_local_time(repeats.since)} without an email (at most one email per error "
        f"every {window:g} seconds)."
    )


def compose_alert(
    record: logging.LogRecord,
    recipients: Tuple[str, ...],
    *,
    prefix: str,
    host: str,
    redactor: Redactor,
    repeats: Optional[Repeats] = None,
    window: float = 0.0,
) -> Alert:
    """The email for one record. Redaction happens on the whole text, before the subject
    is cut, so a secret can never be split in two and escape the mask."""
    message = redactor(record.getMessage())
    lines = [
        "An error was logged by the shotgunEvents daemon.",
        "",
        f"Time:    {_local_time(record.created)}",
        f"Host:    {host}",
        f"Process: {record.process}",
        f"Logger:  {record.name}",
        f"Level:   {record.levelname}",
    ]
    if repeats is not None:
        lines += ["", _repeats_note(repeats, window)]
    lines += ["", message]
    details = redactor(_record_details(record))
    if details:
        lines += ["", details]
    return Alert(
        recipients=recipients,
        subject=_subject(prefix, record.name, message),
        body="\n".join(lines) + "\n",
        created=record.created,
    )


def compose_summary(
    pending: Sequence[Tuple[AlertKey, Repeats]],
    recipients: Tuple[str, ...],
    *,
    prefix: str,
    host: str,
    redactor: Redactor,
    forgotten: int = 0,
) -> Alert:
    """The one email at close that counts the repeats no later email reported."""
    total = sum(repeats.count for _, repeats in pending) + forgotten
    lines = [
        f"The shotgunEvents daemon on {host} (pid {os.getpid()}) is stopping. These errors "
        "were logged again after their last email, and those repeats were not mailed:",
        "",
    ]
    for (logger_name, template, exc_type), repeats in pending:
        kind = f" [{exc_type}]" if exc_type else ""
        lines.append(
            f"- {repeats.count} x since {_local_time(repeats.since)}: "
            f"{logger_name}{kind}: {template}"
        )
    if forgotten:
        lines.append(f"- {forgotten} x of errors too many to list")
    return Alert(
        recipients=recipients,
        subject=" ".join(f"{prefix} {total} repeated errors were not mailed".split()),
        body=redactor("\n".join(lines)) + "\n",
        created=time.time(),
    )


def build_email(alert: Alert, *, from_addr: str, host: str) -> EmailMessage:
    """A proper MIME message: UTF-8 subject and body (quoted-printable, so a 7-bit mail
    server passes it unchanged), Date and Message-ID headers."""
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = from_addr
    message["To"] = ", ".join(alert.recipients)
    message["Date"] = formatdate(alert.created, localtime=True)
    message["Message-ID"] = make_msgid(domain=host)
    message.set_content(alert.body, charset="utf-8", cte="quoted-printable")
    return message


# --------------------------------------------------------------------------- sending


def _ehlo_name() -> str:
    """The name given in EHLO: the FQDN, else an address literal (RFC 5321), as smtplib
    does; worked out once, because smtplib would ask DNS again on every connection."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


def send_email(
    message: EmailMessage,
    recipients: Sequence[str],
    settings: EmailSettings,
    *,
    ssl_context: Optional[ssl.SSLContext],
    ehlo_name: Optional[str] = None,
) -> None:
    """One SMTP conversation: SMTPS or plain, STARTTLS if asked, login if a username is
    set. ``settings.timeout`` bounds every socket operation."""
    server = settings.server or "localhost"
    smtp: smtplib.SMTP
    if settings.use_ssl:
        smtp = smtplib.SMTP_SSL(
            server,
            settings.port,
            local_hostname=ehlo_name,
            timeout=settings.timeout,
            context=ssl_context,
        )
    else:
        smtp = smtplib.SMTP(
            server, settings.port, local_hostname=ehlo_name, timeout=settings.timeout
        )
    with smtp:
        if settings.use_starttls:
            smtp.starttls(context=ssl_context)
        if settings.username:
            password = settings.password.reveal() if settings.password else ""
            smtp.login(settings.username, password)
        smtp.send_message(message, from_addr=message["From"], to_addrs=list(recipients))


def _is_permanent(error: Exception) -> bool:
    """A 5xx answer (bad login, refused address) will not change by asking again; retrying
    a bad login could even lock the account."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return True
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


# --------------------------------------------------------------------------- the handler


class AlertHandler(logging.Handler):
    """Mails ERROR records (and worse) without ever blocking the logging call.

    ``emit`` decides (recipients, rate limit), formats with secrets masked, and queues; a
    sender thread, started by the first alert, mails with retries and backoff. The thread is
    started lazily and again in a forked child, so the handler may be built before the
    service daemonizes. ``stats`` gives the counts for metrics.
    """

    def __init__(
        self,
        settings: EmailSettings,
        *,
        redactor: Redactor,
        recipients_for: RecipientsFor = _default_recipients,
        ssl_context: Optional[ssl.SSLContext] = None,
        clock: Callable[[], float] = time.monotonic,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_keys: int = DEFAULT_MAX_KEYS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        super().__init__(level=logging.ERROR)
        self.settings = settings
        self._redactor = redactor
        self._recipients_for = recipients_for
        self._ssl_context = ssl_context
        self._retry_delays = tuple(retry_delays)
        self._queue_size = max(1, queue_size)
        self._close_timeout = close_timeout
        self._limiter = RateLimiter(settings.rate_limit_window, clock=clock, max_keys=max_keys)
        self._host = socket.gethostname()
        self._from_addr = settings.from_addr or f"shotgunEvents@{self._host}"
        self._ehlo: Optional[str] = None
        self._closed = False
        self._counts = {"sent": 0, "dropped": 0, "failed": 0}
        self._failures_in_a_row = 0
        # A filter, not a check in emit: the handler's own records are turned away before
        # logging takes the handler's lock, so the sender can never wait on that lock.
        self.addFilter(_not_own)
        self._start_fresh()

    def _start_fresh(self) -> None:
        """Queue and sender state of this process (at start, and again after a fork)."""
        self._pid = os.getpid()
        self._wakeup = threading.Condition()
        self._queue: Deque[Alert] = deque()
        self._unfinished = 0  # queued, or being sent
        self._stopping = threading.Event()
        self._sender: Optional[threading.Thread] = None

    @property
    def stats(self) -> AlertStats:
        with self._wakeup:
            counts = dict(self._counts)
        return AlertStats(suppressed=self._limiter.suppressed, **counts)

    # -- the logging side: must be quick and must not raise

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._after_fork_check()
            if self._closed or record.levelno < self.level:
                return
            recipients = self._recipients(record.name)
            if not recipients:
                return
            verdict = self._limiter.admit(alert_key(record), record.created)
            if not verdict.mail:
                return
            alert = compose_alert(
                record,
                recipients,
                prefix=self.settings.subject,
                host=self._host,
                redactor=self._redactor,
                repeats=verdict.repeats,
                window=self._limiter.window,
            )
            self._enqueue(alert)
        except Exception as error:  # noqa: BLE001 - a log call must never fail because of email
            self._count("dropped")
            log.warning(
                "Could not prepare an error email for a record of %s: %s",
                record.name,
                self._redactor(f"{type(error).__name__}: {error}"),
            )

    def _recipients(self, logger_name: str) -> Tuple[str, ...]:
        """What setEmails said for the plugin that logged: True = the configured ``to``,
        False = nobody, or its own addresses (which replace ``to``)."""
        try:
            wanted = self._recipients_for(logger_name)
        except Exception:  # noqa: BLE001 - a failed look-up still reaches the default people
            wanted = True
        if wanted is True:
            return tuple(self.settings.to_addrs)
        if not wanted:
            return ()
        if isinstance(wanted, str):
            return (wanted,)
        return tuple(wanted)

    def _enqueue(self, alert: Alert, *, always: bool = False) -> None:
        with self._wakeup:
            if not always and len(self._queue) >= self._queue_size:
                self._counts["dropped"] += 1
                return
            self._queue.append(alert)
            self._unfinished += 1
            self._start_sender()
            self._wakeup.notify_all()

    # -- waiting and stopping

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued email is sent or given up, at most ``timeout`` seconds
        (default: the shutdown bound). True when nothing is left."""
        self._after_fork_check()
        with self._wakeup:
            return self._wakeup.wait_for(
                lambda: self._unfinished == 0,
                self._close_timeout if timeout is None else timeout,
            )

    def close(self) -> None:
        """Queue one summary of held-back repeats, wait a short while for the queue, stop.

        Emails still queued after the wait are dropped (counted): shutdown must not hang on
        a dead mail server. Later records are ignored.
        """
        self._after_fork_check()
        if not self._closed:
            self._closed = True
            self._queue_summaries()
            self.flush(self._close_timeout)
            self._stop_sender()
        super().close()

    def _queue_summaries(self) -> None:
        """One summary per recipient list (usually just the configured ``to``)."""
        pending, forgotten = self._limiter.take_pending()
        groups: Dict[Tuple[str, ...], List[Tuple[AlertKey, Repeats]]] = {}
        for key, repeats in pending:
            recipients = self._recipients(key[0])
            if recipients:
                groups.setdefault(recipients, []).append((key, repeats))
        default = tuple(self.settings.to_addrs)
        if forgotten and default:
            groups.setdefault(default, [])
        for recipients, items in groups.items():
            summary = compose_summary(
                items,
                recipients,
                prefix=self.settings.subject,
                host=self._host,
                redactor=self._redactor,
                forgotten=forgotten if recipients == default else 0,
            )
            self._enqueue(summary, always=True)

    def _stop_sender(self) -> None:
        with self._wakeup:
            self._stopping.set()
            abandoned = len(self._queue)
            self._queue.clear()
            self._unfinished -= abandoned
            self._counts["dropped"] += abandoned
            self._wakeup.notify_all()
            sender = self._sender
        if sender is not None:
            # A sender stuck in a socket call ends at its timeout; it is a daemon thread.
            sender.join(timeout=0.5)

    def _after_fork_check(self) -> None:
        """In a forked child (python-daemon forks), the parent's sender thread does not
        exist and its locks may be held: start over with an empty queue."""
        if self._pid != os.getpid():
            self._start_fresh()
            self._limiter.after_fork()

    # -- the sender thread

    def _start_sender(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(
                target=self._send_queued, name="alerts-sender", daemon=True
            )
            self._sender.start()

    def _send_queued(self) -> None:
        while True:
            with self._wakeup:
                self._wakeup.wait_for(lambda: self._queue or self._stopping.is_set())
                if self._stopping.is_set():
                    return
                alert = self._queue.popleft()
            try:
                self._deliver(alert)
            except Exception as error:  # noqa: BLE001 - the sender must outlive any one email
                self._give_up(alert, error, attempts=1)
            finally:
                with self._wakeup:
                    self._unfinished -= 1
                    self._wakeup.notify_all()

    def _deliver(self, alert: Alert) -> None:
        """Send one email, retrying with backoff; a stop request ends the waiting."""
        if self._ehlo is None:
            self._ehlo = _ehlo_name()
        message = build_email(alert, from_addr=self._from_addr, host=self._host)
        delays = iter(self._retry_delays)
        attempts = 0
        while True:
            attempts += 1
            try:
                send_email(
                    message,
                    alert.recipients,
                    self.settings,
                    ssl_context=self._ssl_context,
                    ehlo_name=self._ehlo,
                )
            except (OSError, smtplib.SMTPException) as error:
                delay = next(delays, None)
                if _is_permanent(error) or delay is None or self._stopping.wait(delay):
                    self._give_up(alert, error, attempts)
                    return
                continue
            self._sent()
            return

    def _give_up(self, alert: Alert, error: Exception, attempts: int) -> None:
        """Count the lost email; say so at WARNING once per run of failures (a dead mail
        server fails every email), and at DEBUG for the rest of that run."""
        with self._wakeup:
            self._counts["failed"] += 1
            self._failures_in_a_row += 1
            first = self._failures_in_a_row == 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "Could not send the error email %r to %s through %s:%d after %d attempt(s) (%s); "
            "giving up on it.%s",
            alert.subject,
            ", ".join(alert.recipients),
            self.settings.server,
            self.settings.port,
            attempts,
            self._redactor(f"{type(error).__name__}: {error}"),
            " Further failures are only counted until an email goes through." if first else "",
        )

    def _sent(self) -> None:
        with self._wakeup:
            self._counts["sent"] += 1
            lost, self._failures_in_a_row = self._failures_in_a_row, 0
        if lost:
            log.info("Error emails go through again; %d were given up before this one.", lost)

    def _count(self, name: str) -> None:
        with self._wakeup:
            self._counts[name] += 1


def _not_own(record: logging.LogRecord) -> bool:
    """False for records of the ``alerts`` logger (and its children): never mailed."""
    return not (record.name == ALERTS_LOGGER or record.name.startswith(ALERTS_LOGGER + "."))


def build_alert_handler(
    settings: EmailSettings,
    *,
    redactor: Redactor,
    recipients_for: RecipientsFor = _default_recipients,
    ssl_context: Optional[ssl.SSLContext] = None,
    clock: Callable[[], float] = time.monotonic,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    max_keys: int = DEFAULT_MAX_KEYS,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
) -> Optional[AlertHandler]:
    """The error-email handler for ``settings``, or None when emails are off.

    ``recipients_for(logger_name)`` returns what ``setEmails`` said for the plugin that
    logged (True, False, or addresses). ``ssl_context`` is for a private CA or a test
    certificate; by default the system's trusted CAs are used and the host name checked.
    The SMTP password is added to the redactor, so it is masked even if nothing else did.
    """
    if not settings.enabled:
        return None
    if not settings.server:
        raise ValueError("[emails] is enabled but has no server")
    if settings.password:
        redactor.add(settings.password.reveal())
    if ssl_context is None and (settings.use_ssl or settings.use_starttls):
        ssl_context = ssl.create_default_context()
    return AlertHandler(
        settings,
        redactor=redactor,
        recipients_for=recipients_for,
        ssl_context=ssl_context,
        clock=clock,
        retry_delays=retry_delays,
        queue_size=queue_size,
        max_keys=max_keys,
        close_timeout=close_timeout,
    )
