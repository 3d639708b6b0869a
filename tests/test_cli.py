"""The command line: bad config is a clear message and exit code 2, never a traceback."""

from __future__ import annotations

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


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run("foreground", "--config", str(tmp_path / "nope.conf"))
    assert result.returncode == 2
    assert "nope.conf" in result.stderr and "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
