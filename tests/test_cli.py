"""The command line: bad config is a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

GOOD = textwrap.dedent(
    """
    [daemon]
    eventIdFile: state.id
    fetch_interval: 5
    [shotgun]
    server: http://127.0.0.1:9
    name: engine
    key: very-secret-key-123
    [plugins]
    paths: plugins
    """
)


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "shotgun_events", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "change, words",
    [
        (("fetch_interval: 5", "fetch_interval: soon"), ["[daemon]", "fetch_interval"]),
        (("server: http://127.0.0.1:9", "server: not a url"), ["[shotgun]", "server"]),
        (("[plugins]\npaths: plugins", "[plugins]"), ["[plugins]", "paths"]),
        (("[shotgun]", "[shotgunn]"), ["[shotgun]"]),
    ],
)
def test_bad_config_exits_2_naming_file_section_and_option(tmp_path, change, words):
    path = tmp_path / "bad.conf"
    path.write_text(GOOD.replace(*change))
    result = run("foreground", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr
    assert "very-secret-key-123" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["stop", "--timeout", "1e10"], "must be from 0 to 86400 seconds"),
        (["stop", "--timeout", "inf"], "must be from 0 to 86400 seconds"),
        (["restart", "--timeout", "-1"], "must be from 0 to 86400 seconds"),
        (["demo", "--seconds", "1e10"], "must be from 0 to 86400 seconds"),
        (["demo", "--rate", "0"], "more than 0 and at most 1000 events per second"),
    ],
)
def test_a_wait_or_rate_beyond_its_bound_is_a_usage_error(tmp_path, args, words):
    """``stop --timeout inf`` waited forever, ``demo --seconds 1e10`` crashed its timer."""
    path = tmp_path / "good.conf"
    path.write_text(GOOD)
    result = run(*args, *(["--config", str(path)] if args[0] != "demo" else []))
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run("foreground", "--config", str(tmp_path / "nope.conf"))
    assert result.returncode == 2
    assert "nope.conf" in result.stderr and "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_demo_clears_the_positions_of_the_run_before_and_keeps_its_logs(tmp_path):
    from shotgun_events.demo import clear_previous_state

    kept = ["shotgunEventDaemon.conf", "logs/shotgunEventDaemon", "logs/plugin.logArgs"]
    cleared = [
        "shotgunEventDaemon.id",
        "shotgunEventDaemon.id.prev",
        "shotgunEventDaemon.id.journal.3",
        "shotgunEventDaemon.id.positions.3",
        "shotgunEventDaemon.id.status.json",
    ]
    kept += ["shotgunEventDaemon.id.lock"]  # a lock is never removed under its holder
    for name in kept + cleared:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    clear_previous_state(tmp_path)

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == (
        sorted(kept)
    )


def test_demo_refuses_to_start_where_another_demo_runs(tmp_path, monkeypatch, capsys):
    from shotgun_events.demo import run_demo

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-run").mkdir()
    (tmp_path / "demo-run" / "shotgunEventDaemon.pid").write_text(f"{os.getpid()}\n")

    assert run_demo(seconds=1) == 1
    assert "a demo already runs in" in capsys.readouterr().err
