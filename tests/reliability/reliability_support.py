"""Helpers shared by the reliability suite: fsync'ing recorder plugins, figures, secret scans.

The suite proves that nothing is lost, so the plugins it runs record every delivery durably
(append, then fsync) before their callback returns: a line in the record file means the
plugin really saw that event, even when the daemon is killed the next instant. This module
must never reach into the daemon's internals: tests observe only what a studio could see
(record files, logs, the state and status files, emails, exit codes).
"""

from __future__ import annotations

import collections
import email
import email.message
import email.policy
import os
import socket
import textwrap
import threading
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from harness import ENGINE_SCRIPT, PLUGIN_SCRIPT, Daemon

#: Written into every plugin folder of the suite (a leading "_" keeps it from being a plugin).
FSYNC_RECORDER_HELPER = '''
"""Shared by the suite's plugins: one durable line per delivered event."""
import os

_FD = os.open(os.environ["SGED_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def record(plugin, tag, event):
    os.write(_FD, ("%s %s %s\\n" % (plugin, tag, event["id"])).encode())
    os.fsync(_FD)
'''


def fsync_recorder_plugin(
    match_events=None, stop_on_error: bool = True, tag: str = "cb", body: str = ""
) -> str:
    """Source of a plugin that runs ``body``, then records the event and fsyncs."""
    name = "os.path.splitext(os.path.basename(__file__))[0]"
    return textwrap.dedent(
        f"""
        import os, sys, time
        from _fsync_recorder import record

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback,
                                 {match_events!r}, stopOnError={stop_on_error!r})

        def callback(sg, logger, event, args):
        """
    ) + textwrap.indent(textwrap.dedent(body) + f"\nrecord({name}, {tag!r}, event)\n", "    ")


#: Logged once signal handlers are set: from then on SIGTERM stops the daemon cleanly.
STARTED = "Starting in the foreground"


class SuiteDaemon(Daemon):
    """The harness's daemon, with extra config sections (``[emails]``) after its own."""

    #: Sections written after the harness's own, as they are (no indentation).
    extra_sections = ""
    #: More plugin folders, after the harness's own (``[plugins] paths``).
    extra_plugin_dirs: List[Path] = []

    def write_config(self, **changes) -> None:
        super().write_config(**changes)
        text = self.config_path.read_text()
        if self.extra_plugin_dirs:
            more = ", ".join(str(folder) for folder in self.extra_plugin_dirs)
            text = text.replace(f"paths: {self.plugin_dir}", f"paths: {self.plugin_dir}, {more}")
        if self.extra_sections:
            text += "\n" + self.extra_sections
        self.config_path.write_text(text)

    def start(self) -> SuiteDaemon:
        self._starts_before = self.log().count(STARTED)
        super().start()
        return self

    def wait_started(self, timeout: float = 20) -> None:
        """Wait for this run's start (the harness's check also matches an earlier run's)."""
        self.wait_for(lambda: self.log().count(STARTED) > self._starts_before, timeout, "start")
        self.wait_for(self.state_file.exists, timeout, "the first checkpoint")

    def send_emails_to(self, port: int) -> None:
        """Mail every ERROR to a local SMTP server, logging in, no rate limit."""
        self.extra_sections += textwrap.dedent(
            f"""
            [emails]
            server: 127.0.0.1
            port: {port}
            username: {SMTP_USER}
            password: {SMTP_PASSWORD}
            from: events@studio.example
            to: pipeline@studio.example
            rate_limit_window: 0
            """
        )
        self.write_config()

    def count_in_log(self, needle: str) -> int:
        return sum(1 for line in self.log().splitlines() if needle in line)


def make_daemon(root: Path, site_url: str, **options) -> SuiteDaemon:
    """A harness daemon whose plugin folder also holds the fsync'ing recorder."""
    daemon = SuiteDaemon(root, site_url, **options)
    (daemon.plugin_dir / "_fsync_recorder.py").write_text(FSYNC_RECORDER_HELPER)
    return daemon


def duplicates(counts: Dict[int, int]) -> int:
    """Deliveries beyond the first, summed over events."""
    return sum(n - 1 for n in counts.values() if n > 1)


# --------------------------------------------------------------------------- mail


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailBox:
    """An SMTP server on loopback (aiosmtpd) that accepts the suite's login and keeps every
    message, also as a file under ``folder`` so that the secret scan reads the emails."""

    def __init__(self, folder: Path) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.messages: List[email.message.EmailMessage] = []
        self.logins: List[str] = []
        self._lock = threading.Lock()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=free_port(),
            server_hostname="localhost",
            authenticator=self._authenticate,
            auth_require_tls=False,
        )

    def start(self) -> MailBox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def port(self) -> int:
        return self._controller.port

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            (self.folder / f"{len(self.messages):04d}.eml").write_bytes(envelope.content)
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok, handled=False)

    def subjects(self, containing: str = "") -> List[str]:
        with self._lock:
            return [str(m["Subject"]) for m in self.messages if containing in str(m["Subject"])]


# --------------------------------------------------------------------------- figures


class Figures:
    """What the suite measured, printed as one table at the end of the session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: List[Tuple[str, str, str]] = []

    def add(self, section: str, name: str, value: object) -> None:
        if isinstance(value, float):
            value = f"{value:.2f}"
        with self._lock:
            self.rows.append((section, name, str(value)))

    def table(self) -> List[str]:
        """The rows grouped by section, in the order they were measured."""
        by_section: Dict[str, List[Tuple[str, str]]] = collections.OrderedDict()
        for section, name, value in self.rows:
            by_section.setdefault(section, []).append((name, value))
        width = max((len(name) for _, name, _ in self.rows), default=0)
        lines: List[str] = []
        for section, rows in by_section.items():
            lines.append(section)
            lines.extend(f"  {name:<{width}}  {value}" for name, value in rows)
        return lines


FIGURES = Figures()


# --------------------------------------------------------------------------- secrets

#: The SMTP password the suite's mail servers accept; like the script keys, it must never
#: appear in anything the daemon writes.
SMTP_USER = "daemon-mailer"
SMTP_PASSWORD = "smtp-Secret-pa55word-4242"
SECRETS = (ENGINE_SCRIPT[1], PLUGIN_SCRIPT[1], SMTP_PASSWORD)


def is_input_file(path: Path) -> bool:
    """Files the tests write for the daemon to read (they hold keys on purpose)."""
    return path.suffix in (".conf", ".py", ".pyc") or path.name.endswith(".tmp")


def files_under(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def secret_hits(root: Path, secrets: Iterable[str] = SECRETS) -> Tuple[int, List[str]]:
    """(files scanned, "<file>: <secret>" for every output file under root that holds one)."""
    needles = [secret.encode() for secret in secrets]
    scanned, hits = 0, []
    for path in files_under(root):
        if is_input_file(path):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        hits.extend(f"{path}: {needle.decode()}" for needle in needles if needle in data)
    return scanned, hits


def keep_output(folder: Path, name: str, text: str) -> Path:
    """Save what a command printed, so the secret scan covers it too."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def world_readable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o004)


def first_line_matching(text: str, needle: str) -> Optional[str]:
    return next((line for line in text.splitlines() if needle in line), None)
