"""Shared fixtures: a site emulator in this process, and a daemon process talking to it."""

from __future__ import annotations

import pytest

from harness import ENGINE_SCRIPT, PLUGIN_SCRIPT, Daemon
from shotgun_events.emulator import Emulator


@pytest.fixture
def site():
    """A fresh local site with the engine's and the test plugins' scripts."""
    emulator = Emulator(scripts=dict([ENGINE_SCRIPT, PLUGIN_SCRIPT])).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def daemon(tmp_path, site):
    """A configured (not yet started) daemon; killed at the end if a test left it running."""
    runner = Daemon(tmp_path, site.url)
    try:
        yield runner
    finally:
        if runner.alive():
            runner.kill()
