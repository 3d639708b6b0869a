"""Bad config: every wrong option, missing section and unreadable file is a clear message.

Each case writes a config that is good but for one thing and runs the real command
(``python -m shotgun_events foreground --config FILE``, a few also ``start`` and ``status``).
It must exit with code 2 (``status``: 4, the LSB "unknown"), name the file and, where there
is one, the section and option, and never print a traceback or a secret. The site URL points
at a closed port: a bad value that slipped through would show as a daemon that starts
(and the test times out) rather than as a failure somewhere else.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
from reliability_support import SMTP_PASSWORD, keep_output

from harness import ENGINE_SCRIPT
from shotgun_events.config import load_config

pytestmark = pytest.mark.reliability

Section = Dict[str, str]
Change = Tuple[str, str, Optional[str]]  # (section, option, value or None to remove)


def base_sections(root: Path, emails: bool = False) -> Dict[str, Section]:
    sections = {
        "daemon": {
            "pidFile": str(root / "daemon.pid"),
            "eventIdFile": str(root / "state" / "events.id"),
            "logPath": str(root / "logs"),
        },
        "shotgun": {
            "server": "http://127.0.0.1:9",
            "name": ENGINE_SCRIPT[0],
            "key": ENGINE_SCRIPT[1],
        },
        "plugins": {"paths": str(root / "plugins")},
    }
    if emails:
        # Explicitly on: an unusable address is then an error (without `enabled`, it turns
        # emails off with a warning, as the classic example's placeholders must load).
        sections["emails"] = {
            "enabled": "on",
            "server": "127.0.0.1",
            "from": "events@studio.example",
            "to": "pipeline@studio.example",
        }
    return sections


def render(sections: Dict[str, Section]) -> str:
    lines = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{option}: {value}" for option, value in options.items())
        lines.append("")
    return "\n".join(lines)


def write_config(root: Path, *changes: Change, drop: Tuple[str, ...] = ()) -> Path:
    emails = any(section == "emails" for section, _, _ in changes)
    sections = base_sections(root, emails=emails)
    for section, option, value in changes:
        if value is None:
            sections[section].pop(option, None)
        else:
            sections.setdefault(section, {})[option] = value
    for section in drop:
        del sections[section]
    path = root / "shotgunEventDaemon.conf"
    path.write_text(render(sections))
    return path


#: (section, option, bad value): a wrong type or a value outside the option's rule.
BAD_VALUES = [
    ("daemon", "logMode", "2"),
    ("daemon", "logMode", "verbose"),
    ("daemon", "logging", "LOUD"),
    ("daemon", "timing_log", "perhaps"),
    ("daemon", "conn_retry_sleep", "-1"),
    ("daemon", "conn_retry_sleep", "soon"),
    ("daemon", "max_conn_retries", "0"),
    ("daemon", "max_conn_retries", "3.5"),
    ("daemon", "fetch_interval", "0"),
    ("daemon", "fetch_interval", "fast"),
    ("daemon", "max_event_batch_size", "five hundred"),
    ("daemon", "max_event_batch_size", "0"),
    ("daemon", "gap_timeout", "-5"),
    ("daemon", "gap_timeout", "later"),
    ("daemon", "state_save_interval", "0"),
    ("daemon", "site_timeout", "nan"),
    ("daemon", "stop_timeout", "-1"),
    ("daemon", "status_interval", "inf"),
    ("daemon", "metrics_port", "70000"),
    ("daemon", "metrics_port", "http"),
    ("daemon", "max_plugin_backlog", "0"),
    ("daemon", "plugin_retry", "forever"),
    ("daemon", "plugin_retry", "attempts=many"),
    ("daemon", "callback_timeout", "soon"),
    ("daemon", "worker_restart_limit", "0"),
    ("daemon", "worker_restart_window", "-1"),
    ("daemon", "max_worker_memory_mb", "-1"),
    ("daemon", "log_rotation", "daily"),
    # Numbers past their upper bound (1e10 s passed, then crashed a thread: OverflowError)
    ("daemon", "fetch_interval", "1e10"),
    ("daemon", "status_interval", "1e10"),
    ("daemon", "state_save_interval", "1e10"),
    ("daemon", "stop_timeout", "1e10"),
    ("daemon", "gap_timeout", "1e10"),
    ("daemon", "callback_timeout", "1e10"),
    ("daemon", "plugin_retry", "give_up_after=1e10"),
    ("daemon", "max_plugin_backlog", "1000000000"),
    ("emails", "rate_limit_window", "1e10"),
    ("shotgun", "server", "not a url"),
    ("shotgun", "server", "ftp://studio.example"),
    ("shotgun", "server", "%(SGED_TEST_UNSET_VARIABLE)s"),
    ("shotgun", "key", f"{ENGINE_SCRIPT[1]} pasted twice {ENGINE_SCRIPT[1]}"),
    ("shotgun", "use_session_uuid", "maybe"),
    ("shotgun", "proxy_server", "proxy.studio.lan:31two8"),
    ("plugins", "paths", ""),
    ("plugins", "isolation", "fork"),
    ("plugins", "ordering", "random"),
    ("emails", "enabled", "perhaps"),
    ("emails", "port", "0"),
    ("emails", "port", "smtp"),
    ("emails", "useTLS", "sometimes"),
    ("emails", "from", "not an address"),
    ("emails", "to", "nobody"),
    ("emails", "timeout", "0"),
    ("emails", "rate_limit_window", "-1"),
    ("emails", "password", SMTP_PASSWORD),  # without a username
]
#: A required option left out.
MISSING_OPTIONS = [
    ("shotgun", "server"),
    ("shotgun", "name"),
    ("shotgun", "key"),
    ("plugins", "paths"),
]
REQUIRED_SECTIONS = ["daemon", "shotgun", "plugins"]


@pytest.fixture(scope="module")
def tally(figures) -> Iterator[Dict[str, int]]:
    counts = {"cases": 0}
    yield counts
    figures.add(
        "Bad config", "bad configs tried, each exit 2 with a clear message", counts["cases"]
    )


def run(
    command: str, config: Path, *, without_dac_override: bool = False
) -> subprocess.CompletedProcess:
    """The real command line; optionally as a root without the right to read any file."""
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    argv = [sys.executable, "-m", "shotgun_events", command, "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGED_")}
    result = subprocess.run(
        (prefix if without_dac_override else []) + argv,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=config.parent,
    )
    keep_output(config.parent / "outputs", f"{command}.txt", result.stdout + result.stderr)
    return result


def assert_clear_refusal(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in output, f"{needle!r} not in {output!r}"
    assert ENGINE_SCRIPT[1] not in output and SMTP_PASSWORD not in output
    assert len(output.strip().splitlines()) <= 3, "a clear message, not a wall of text"
    return output


def test_the_base_config_of_these_cases_is_good(tmp_path):
    load_config(write_config(tmp_path))
    load_config(write_config(tmp_path, ("emails", "port", "25")))


@pytest.mark.parametrize(
    "section, option, value", BAD_VALUES, ids=[f"{s}.{o}={v[:12]}" for s, o, v in BAD_VALUES]
)
def test_bad_option_value_exits_2_naming_file_section_and_option(
    tmp_path, tally, section, option, value
):
    config = write_config(tmp_path, (section, option, value))
    result = run("foreground", config)
    where = f"[{section}] " + ("username" if option == "password" else option)
    assert_clear_refusal(result, str(config), where)
    tally["cases"] += 1


@pytest.mark.parametrize("section, option", MISSING_OPTIONS)
def test_missing_required_option_exits_2_naming_it(tmp_path, tally, section, option):
    config = write_config(tmp_path, (section, option, None))
    assert_clear_refusal(run("foreground", config), str(config), f"[{section}] {option}")
    tally["cases"] += 1


@pytest.mark.parametrize("section", REQUIRED_SECTIONS)
def test_missing_section_exits_2_naming_it(tmp_path, tally, section):
    config = write_config(tmp_path, drop=(section,))
    assert_clear_refusal(run("foreground", config), str(config), f"[{section}]")
    tally["cases"] += 1


@pytest.mark.parametrize(
    "text",
    [
        "server: http://127.0.0.1:9\n[daemon]\n",
        "[daemon]\n[daemon]\n",
        "[daemon]\nthis line is not an option\n",
        "\x00\xff\xfe garbage \x89PNG\r\n",
    ],
    ids=["option before section", "section twice", "not an option", "binary"],
)
def test_unparsable_file_exits_2_naming_the_file(tmp_path, tally, text):
    config = tmp_path / "shotgunEventDaemon.conf"
    config.write_bytes(text.encode("latin-1"))
    assert_clear_refusal(run("foreground", config), str(config))
    tally["cases"] += 1


def test_missing_file_and_folder_instead_of_file_exit_2(tmp_path, tally):
    missing = tmp_path / "nowhere.conf"
    assert_clear_refusal(run("foreground", missing), str(missing), "no such file")
    folder = tmp_path / "a-folder.conf"
    folder.mkdir()
    assert_clear_refusal(run("foreground", folder), str(folder), "folder")
    tally["cases"] += 2


def test_unreadable_file_exits_2_saying_permission_denied(tmp_path, tally):
    config = write_config(tmp_path)
    config.chmod(0)
    result = run("foreground", config, without_dac_override=True)
    if result.returncode != 2 and "setpriv" in result.stderr:
        pytest.skip(f"cannot drop the file-read capability here: {result.stderr.strip()}")
    assert_clear_refusal(result, str(config), "permission denied")
    tally["cases"] += 1


@pytest.mark.parametrize("command, code", [("start", 2), ("restart", 2), ("status", 4)])
def test_service_commands_refuse_a_bad_config_the_same_way(tmp_path, tally, command, code):
    config = write_config(tmp_path, ("daemon", "logMode", "9"))
    assert_clear_refusal(run(command, config), str(config), "[daemon] logMode", code=code)
    tally["cases"] += 1


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("pidFile", "{file}/daemon.pid", "of the pid file"),
        ("eventIdFile", "{file}/events.id", "of the state file lock"),
        ("logPath", "{file}", "cannot open the log files"),
    ],
)
@pytest.mark.parametrize("command", ["foreground", "start"])
def test_path_that_cannot_be_made_fails_the_start_with_a_clear_message(
    tmp_path, tally, option, value, says, command
):
    """A folder that cannot exist (here: a file stands where it would be) is only found
    when the daemon starts: exit 1 (it failed to start) with the path, not a traceback."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    config = write_config(tmp_path, ("daemon", option, value.format(file=a_file)))
    assert_clear_refusal(run(command, config), str(a_file), says, code=1)
    tally["cases"] += 1


@pytest.mark.parametrize(
    "option, value, other",
    [
        ("status_file", "{state}", "[daemon] eventIdFile"),
        ("pidFile", "{state}", "[daemon] eventIdFile"),
        ("pidFile", "{state}.lock", "[daemon] eventIdFile"),
        ("status_file", "{pid}", "[daemon] pidFile"),
    ],
)
@pytest.mark.parametrize("command", ["foreground", "start"])
def test_two_options_naming_one_file_exit_2_and_leave_the_positions_alone(
    tmp_path, tally, command, option, value, other
):
    """The status JSON overwrote the state pickle (every plugin then restarted at the newest
    event), and the pid written into the state file read back as every plugin's position."""
    state = tmp_path / "state" / "events.id"
    state.parent.mkdir()
    saved = pickle.dumps({str(tmp_path / "plugins"): {"p": (41, {})}}, 2)
    state.write_bytes(saved)
    config = write_config(
        tmp_path, ("daemon", option, value.format(state=state, pid=tmp_path / "daemon.pid"))
    )
    assert_clear_refusal(run(command, config), str(config), f"[daemon] {option}: ", other)
    assert state.read_bytes() == saved
    assert not (tmp_path / "daemon.pid").exists()
    tally["cases"] += 1


def test_indented_section_header_exits_2_instead_of_leaking_its_options(tmp_path, tally):
    """A pasted block keeps its indentation: INI would read "  [emails]" and the lines after
    it as more plugin folders, so the SMTP password would become a folder name shown in
    error messages (it is no secret to the daemon then: [emails] never existed)."""
    config = write_config(tmp_path)
    config.write_text(
        config.read_text()
        + textwrap.indent(
            f"[emails]\nserver: 127.0.0.1\nusername: mailer\npassword: {SMTP_PASSWORD}\n",
            "    ",
        )
    )
    lines = config.read_text().splitlines()
    header = next(n for n, line in enumerate(lines, start=1) if "[emails]" in line)
    output = assert_clear_refusal(run("foreground", config), str(config), f"line {header}:")
    assert "[emails]" in output and "indented" in output
    tally["cases"] += 1
