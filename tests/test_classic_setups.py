"""Studio set-ups made for the classic daemon that must run unchanged (issue 12, daemon side).

A real daemon process against the emulator: helper modules kept next to the classic program
and its config, plugin files whose names start with ``_``, and helper modules in the plugin
folder that define no ``registerCallbacks``.
"""

from __future__ import annotations

import textwrap

import pytest

from harness import PLUGIN_SCRIPT
from test_engine import new_events, started


def importing_plugin(module: str, tag_expression: str) -> str:
    """A plugin that imports ``module`` and records events with a tag taken from it."""
    return textwrap.dedent(
        f"""
        import os
        import {module}
        from _recorder import record

        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_SCRIPT[1]!r}, callback, None)

        def callback(sg, logger, event, args):
            record(os.path.splitext(os.path.basename(__file__))[0], {tag_expression}, event)
        """
    )


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_helper_module_next_to_the_config_is_importable_by_plugins(site, daemon, isolation):
    # The config in its own folder with the studio's settings module beside it; the daemon's
    # working folder is elsewhere, so only the config's folder makes the module importable.
    config_folder = daemon.root / "etc"
    config_folder.mkdir()
    (config_folder / "studio_settings.py").write_text("TAG = 'from-etc'\n")
    daemon.config_path = config_folder / "shotgunEventDaemon.conf"
    daemon.plugin_options["isolation"] = isolation
    daemon.write_config()
    started(daemon, ("settings_user", importing_plugin("studio_settings", "studio_settings.TAG")))
    ids = new_events(site, 3)
    daemon.wait_seen("settings_user", ids)
    assert {tag for plugin, tag, _ in daemon.records()} == {"from-etc"}
    assert daemon.stop() == 0


def test_a_plugin_folder_helper_wins_over_a_namesake_next_to_the_config(site, daemon):
    (daemon.root / "etc").mkdir()
    (daemon.root / "etc" / "studio_settings.py").write_text("TAG = 'from-etc'\n")
    (daemon.plugin_dir / "studio_settings.py").write_text("TAG = 'from-plugins'\n")
    daemon.config_path = daemon.root / "etc" / "shotgunEventDaemon.conf"
    daemon.write_config()
    started(daemon, ("settings_user", importing_plugin("studio_settings", "studio_settings.TAG")))
    ids = new_events(site, 2)
    daemon.wait_seen("settings_user", ids)
    assert {tag for plugin, tag, _ in daemon.records()} == {"from-plugins"}
    daemon.stop()


def test_underscore_plugins_run_and_helper_modules_are_not_errors(site, daemon):
    (daemon.plugin_dir / "studio_helpers.py").write_text("TAG = 'helped'\n")
    started(
        daemon,
        ("_private_rules", importing_plugin("studio_helpers", "studio_helpers.TAG")),
    )
    ids = new_events(site, 3)
    daemon.wait_seen("_private_rules", ids)
    more = new_events(site, 2)  # the folder is scanned at every poll: still said only once
    daemon.wait_seen("_private_rules", more)
    assert daemon.stop() == 0
    log = daemon.log()
    assert "ERROR" not in log and "CRITICAL" not in log
    for helper in ("studio_helpers.py", "_recorder.py"):
        message = f"{helper} defines no registerCallbacks"
        said = [line for line in log.splitlines() if message in line]
        assert len(said) == 1 and "DEBUG" in said[0], said
