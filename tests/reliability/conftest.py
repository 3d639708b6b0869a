"""Fixtures of the reliability suite, the secret scan after every test, and the figures table.

Every test of this folder runs real daemon processes against the site emulator (the ``site``
and ``daemon`` fixtures of tests/conftest.py); the fixtures here add what the proofs need:
a daemon with durable recorder plugins, a collection of figures printed once at the end of
the session, and a scan of everything each test's daemons wrote for the suite's secrets.
"""

from __future__ import annotations

import pytest
from reliability_support import FIGURES, Figures, MailBox, make_daemon, secret_hits

_scan_totals = {"tests": 0, "files": 0, "hits": 0}


@pytest.fixture(scope="session")
def figures() -> Figures:
    """Where a test puts what it measured (printed in the session summary)."""
    return FIGURES


@pytest.fixture
def durable_daemon(tmp_path, site):
    """A configured daemon (not started) whose plugin folder holds the fsync'ing recorder."""
    runner = make_daemon(tmp_path, site.url)
    try:
        yield runner
    finally:
        if runner.alive():
            runner.kill()


@pytest.fixture(autouse=True)
def no_secret_in_any_output(tmp_path):
    """After each test: no script key or SMTP password in any file its daemons wrote.

    Logs, per-plugin logs, the status and state files, saved emails and saved command
    output all live under the test's tmp_path; the config and plugin sources are inputs.
    """
    yield
    scanned, hits = secret_hits(tmp_path)
    _scan_totals["tests"] += 1
    _scan_totals["files"] += scanned
    _scan_totals["hits"] += len(hits)
    assert not hits, "secrets written to outputs:\n" + "\n".join(hits)


def pytest_terminal_summary(terminalreporter):
    """One table of everything the suite measured, so CI logs show the figures."""
    if _scan_totals["tests"]:
        FIGURES.add("Security", "output files scanned for secrets", _scan_totals["files"])
        FIGURES.add("Security", "secrets found in outputs", _scan_totals["hits"])
    if not FIGURES.rows:
        return
    terminalreporter.write_sep("=", "reliability figures")
    for line in FIGURES.table():
        terminalreporter.write_line(line)


@pytest.fixture
def mailbox(tmp_path):
    """A local SMTP server that keeps every email (also as files, for the secret scan)."""
    box = MailBox(tmp_path / "emails").start()
    try:
        yield box
    finally:
        box.stop()
