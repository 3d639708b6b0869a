"""Tests of config.py: the classic file loads unchanged, every option is validated with a
message naming file, section and option, references expand, secrets stay hidden, and the
file is found in the documented order."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Dict, Optional

import pytest

from shotgun_events import config as config_module
from shotgun_events.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    DaemonSettings,
    RetryPolicy,
    Secret,
    find_config_file,
    load_config,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "conf" / "shotgunEventDaemon.conf"
KEY = "841c9a51bf45e1872c3e5f2435dade67458bc858"
PASSWORD = "hunter2-smtp-password"

CLASSIC = f"""\
[daemon]
pidFile: /var/log/shotgunEventDaemon/shotgunEventDaemon.pid
eventIdFile: /var/log/shotgunEventDaemon/shotgunEventDaemon.id
logMode: 1
logPath: /var/log/shotgunEventDaemon
logFile: shotgunEventDaemon
logging: 20
timing_log: off
conn_retry_sleep = 60
max_conn_retries = 5
fetch_interval = 5
max_event_batch_size = 500


[proxy]
# Proxy settings for reaching the shotgun server.
# http_proxy: $HTTP_PROXY$

[shotgun]
server: https://yoursite.shotgunstudio.com
name: shotgunEventDaemon
key: {KEY}
proxy_server:
use_session_uuid: True

[plugins]
paths: /usr/local/shotgun/plugins

[emails]
server:
#port: 587
#useTLS: True
#username: yourSMTPUsername
#password: yourSMPTPassword
from:
to:
subject:

[sentry]
sentry_dsn:
"""


def minimal_sections() -> Dict[str, Dict[str, str]]:
    """The smallest config that loads: the required options only."""
    return {
        "daemon": {},
        "shotgun": {"server": "https://site.example.com", "name": "daemon", "key": KEY},
        "plugins": {"paths": "plugins"},
    }


def write(folder: Path, text: str, name: str = CONFIG_FILE_NAME) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def write_sections(folder: Path, sections: Dict[str, Dict[str, str]]) -> Path:
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{option}: {value}" for option, value in options.items())
        lines.append("")
    return write(folder, "\n".join(lines))


def load_with(
    folder: Path,
    section: str,
    options: Dict[str, str],
    environ: Optional[Dict[str, str]] = None,
):
    sections = minimal_sections()
    sections.setdefault(section, {}).update(options)
    return load_config(write_sections(folder, sections), environ=environ or {})


def load_error(folder: Path, section: str, options: Dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_with(folder, section, options)
    return caught.value


# --------------------------------------------------------------------------- the classic file


def test_classic_example_file_loads_unchanged(tmp_path):
    config = load_config(write(tmp_path, CLASSIC), environ={})

    daemon = config.daemon
    assert daemon.pid_file == Path("/var/log/shotgunEventDaemon/shotgunEventDaemon.pid")
    assert daemon.event_id_file == Path("/var/log/shotgunEventDaemon/shotgunEventDaemon.id")
    assert (daemon.log_mode, daemon.log_level, daemon.timing_log) == (1, logging.INFO, False)
    assert daemon.log_path == Path("/var/log/shotgunEventDaemon")
    assert daemon.log_file == "shotgunEventDaemon"
    assert (daemon.conn_retry_sleep, daemon.max_conn_retries) == (60.0, 5)
    assert (daemon.fetch_interval, daemon.max_event_batch_size) == (5.0, 500)
    assert config.site.server == "https://yoursite.shotgunstudio.com"
    assert config.site.script_name == "shotgunEventDaemon"
    assert config.site.script_key.reveal() == KEY
    assert config.site.proxy_server is None
    assert config.site.use_session_uuid is True
    [folder] = config.plugins.folders
    assert folder.path == "/usr/local/shotgun/plugins"
    assert (folder.isolation, folder.ordering) == ("thread", "eager")
    assert config.emails.enabled is False
    assert config.emails.subject == "[shotgunEvents]"
    assert config.warnings == ()


def test_classic_file_with_environment_references_loads(tmp_path):
    text = (
        CLASSIC.replace("/var/log/shotgunEventDaemon", "%(SGED_LOGS)s")
        .replace(KEY, "%(SG_SCRIPT_KEY)s")
        .replace("/usr/local/shotgun/plugins", "%(HOME)s/plugins")
    )
    environ = {"SGED_LOGS": "/srv/sged", "SG_SCRIPT_KEY": "key-from-env", "HOME": "/home/td"}

    config = load_config(write(tmp_path, text), environ=environ)

    assert config.daemon.pid_file == Path("/srv/sged/shotgunEventDaemon.pid")
    assert config.daemon.log_path == Path("/srv/sged")
    assert config.site.script_key.reveal() == "key-from-env"
    assert config.plugins.folders[0].path == "/home/td/plugins"


def test_new_options_get_their_defaults(tmp_path):
    config = load_config(write_sections(tmp_path, minimal_sections()), environ={})

    daemon = config.daemon
    assert daemon.pid_file == tmp_path / "shotgunEventDaemon.pid"
    assert daemon.event_id_file == tmp_path / "shotgunEventDaemon.id"
    assert daemon.status_file == tmp_path / "shotgunEventDaemon.id.status.json"
    assert daemon.log_path == tmp_path
    resolved = {"pid_file", "event_id_file", "status_file", "log_path"}
    defaults = DaemonSettings()
    for field in dataclasses.fields(DaemonSettings):
        if field.name not in resolved:
            assert getattr(daemon, field.name) == getattr(defaults, field.name), field.name
    assert (daemon.gap_timeout, daemon.metrics_port, daemon.metrics_host) == (300, 0, "127.0.0.1")
    assert daemon.plugin_retry is None and daemon.callback_timeout is None
    assert config.emails.enabled is False
    assert config.warnings == ()


def test_option_names_are_case_insensitive_and_both_delimiters_work(tmp_path):
    text = write_sections(tmp_path, minimal_sections()).read_text()
    text = text.replace("[daemon]", "[daemon]\nFETCH_INTERVAL = 0.2\nlogmode:0\nPidFile= x.pid")

    config = load_config(write(tmp_path, text), environ={})

    assert config.daemon.fetch_interval == 0.2
    assert config.daemon.log_mode == 0
    assert config.daemon.pid_file == tmp_path / "x.pid"


def test_empty_value_means_the_default(tmp_path):
    config = load_with(tmp_path, "daemon", {"fetch_interval": "", "logMode": ""})

    assert (config.daemon.fetch_interval, config.daemon.log_mode) == (5.0, 1)


def test_log_level_accepts_level_names(tmp_path):
    assert load_with(tmp_path, "daemon", {"logging": "debug"}).daemon.log_level == 10
    assert load_with(tmp_path, "daemon", {"logging": "WARNING"}).daemon.log_level == 30
    assert load_with(tmp_path, "daemon", {"logging": "15"}).daemon.log_level == 15


def test_a_classic_batch_size_above_the_sites_page_size_loads_as_500(tmp_path):
    config = load_with(tmp_path, "daemon", {"max_event_batch_size": "1000"})
    assert config.daemon.max_event_batch_size == 500
    assert config.warnings == (
        f"{tmp_path / CONFIG_FILE_NAME}: [daemon] max_event_batch_size: 1000 is more than the "
        "site's page size; 500 is used",
    )


def test_log_rotation_is_midnight_unless_left_to_logrotate(tmp_path):
    assert load_with(tmp_path, "daemon", {}).daemon.log_rotation == "midnight"
    assert load_with(tmp_path, "daemon", {"log_rotation": "External"}).daemon.log_rotation == (
        "external"
    )


@pytest.mark.parametrize(
    "written, expected",
    [("on", True), ("Off", False), ("TRUE", True), ("no", False), ("yes", True), ("0", False)],
)
def test_flags_accept_classic_and_common_spellings(tmp_path, written, expected):
    assert load_with(tmp_path, "daemon", {"timing_log": written}).daemon.timing_log is expected


def test_site_url_loses_its_trailing_slash(tmp_path):
    config = load_with(tmp_path, "shotgun", {"server": "http://localhost:8080/"})

    assert config.site.server == "http://localhost:8080"


def test_callback_timeout_zero_means_off(tmp_path):
    assert load_with(tmp_path, "daemon", {"callback_timeout": "0"}).daemon.callback_timeout is None
    assert load_with(tmp_path, "daemon", {"callback_timeout": "2.5"}).daemon.callback_timeout == 2.5


def test_status_file_follows_the_event_id_file(tmp_path):
    config = load_with(tmp_path, "daemon", {"eventIdFile": "/srv/state/sged.id"})

    assert config.daemon.status_file == Path("/srv/state/sged.id.status.json")


# --------------------------------------------------------------------------- paths


def test_relative_paths_are_relative_to_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    config = load_with(
        tmp_path,
        "daemon",
        {"pidFile": "run/sged.pid", "logPath": "../logs", "status_file": "status.json"},
    )

    assert config.daemon.pid_file == tmp_path / "run" / "sged.pid"
    assert config.daemon.log_path == tmp_path / ".." / "logs"
    assert config.daemon.status_file == tmp_path / "status.json"
    assert config.plugins.folders[0].resolved == tmp_path / "plugins"


def test_home_folder_is_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/pipeline")
    config = load_with(tmp_path, "daemon", {"eventIdFile": "~/sged/sged.id"})

    assert config.daemon.event_id_file == Path("/home/pipeline/sged/sged.id")


def test_relative_config_path_is_made_absolute(tmp_path, monkeypatch):
    write_sections(tmp_path, minimal_sections())
    monkeypatch.chdir(tmp_path)

    config = load_config(CONFIG_FILE_NAME, environ={})

    assert config.path == tmp_path / CONFIG_FILE_NAME
    assert config.daemon.pid_file == tmp_path / "shotgunEventDaemon.pid"


def test_loading_creates_nothing_on_disk(tmp_path):
    target = tmp_path / "not-yet"
    path = write_sections(tmp_path, minimal_sections())
    text = path.read_text().replace(
        "[daemon]",
        f"[daemon]\nlogPath: {target}/logs\npidFile: {target}/run/sged.pid\n"
        f"eventIdFile: {target}/state/sged.id",
    )
    path.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())

    load_config(path, environ={})

    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- references


def test_reference_prefers_the_section_then_default_then_environment(tmp_path):
    text = """\
[DEFAULT]
root: /from-default
logs: /logs-from-default

[daemon]
root: /from-section
pidFile: %(root)s/sged.pid
logPath: %(logs)s
eventIdFile: %(STATE)s/sged.id

[shotgun]
server: https://site.example.com
name: daemon
key: k

[plugins]
paths: %(root)s/plugins
"""
    config = load_config(write(tmp_path, text), environ={"STATE": "/from-env", "root": "/env"})

    assert config.daemon.pid_file == Path("/from-section/sged.pid")
    assert config.daemon.log_path == Path("/logs-from-default")
    assert config.daemon.event_id_file == Path("/from-env/sged.id")
    assert config.plugins.folders[0].path == "/from-default/plugins"


def test_default_section_values_fill_options_of_every_section(tmp_path):
    text = write_sections(tmp_path, minimal_sections()).read_text()
    config = load_config(write(tmp_path, "[DEFAULT]\nfetch_interval: 2\n" + text), environ={})

    assert config.daemon.fetch_interval == 2.0
    assert config.warnings == ()


def test_references_expand_in_turn_like_the_classic_parser(tmp_path):
    sections = minimal_sections()
    sections["DEFAULT"] = {"base": "%(PROJECT_ROOT)s/pipeline", "plugin_root": "%(base)s/plugins"}
    sections["plugins"]["paths"] = "%(plugin_root)s"

    path = write_sections(tmp_path, sections)
    config = load_config(path, environ={"PROJECT_ROOT": "/mnt/show"})

    assert config.plugins.folders[0].path == "/mnt/show/pipeline/plugins"


def test_environment_reference_ignores_case_when_the_exact_name_is_missing(tmp_path):
    config = load_with(
        tmp_path, "daemon", {"logPath": "%(sged_logs)s"}, environ={"SGED_LOGS": "/srv/logs"}
    )

    assert config.daemon.log_path == Path("/srv/logs")


def test_environment_reference_prefers_the_exact_name(tmp_path):
    environ = {"Logs": "/wrong", "logs": "/right", "LOGS": "/wrong-too"}
    config = load_with(tmp_path, "daemon", {"logPath": "%(logs)s"}, environ=environ)

    assert config.daemon.log_path == Path("/right")


def test_double_percent_is_a_literal_percent(tmp_path):
    config = load_with(
        tmp_path, "emails", {"username": "mailer", "password": "50%%off", "subject": "%%done"}
    )

    assert config.emails.password.reveal() == "50%off"
    assert config.emails.subject == "%done"


def test_environment_values_are_taken_literally(tmp_path):
    config = load_with(tmp_path, "shotgun", {"key": "%(SG_KEY)s"}, environ={"SG_KEY": "a%(b)s%c"})

    assert config.site.script_key.reveal() == "a%(b)s%c"


def test_environment_variables_do_not_pose_as_options(tmp_path):
    environ = {"PORT": "2525", "FETCH_INTERVAL": "1", "LOGMODE": "0", "SERVER": "smtp.evil"}
    config = load_with(tmp_path, "emails", {}, environ=environ)

    assert (config.emails.port, config.emails.server) == (25, None)
    assert (config.daemon.fetch_interval, config.daemon.log_mode) == (5.0, 1)


def test_undefined_reference_names_the_section_option_and_missing_name(tmp_path):
    error = load_error(tmp_path, "daemon", {"logPath": "%(NO_SUCH_VAR)s/logs"})

    assert error.section == "daemon" and error.option == "logPath"
    assert str(error).startswith(f"{tmp_path / CONFIG_FILE_NAME}: [daemon] logPath: ")
    assert "%(NO_SUCH_VAR)s is not defined" in str(error)
    assert "environment variable NO_SUCH_VAR" in str(error)


def test_undefined_reference_in_the_key_does_not_show_the_rest_of_the_key(tmp_path):
    error = load_error(tmp_path, "shotgun", {"key": f"{KEY}%(MISSING)s"})

    assert (error.section, error.option) == ("shotgun", "key")
    assert "MISSING" in str(error) and KEY not in str(error)


def test_reference_loop_is_an_error(tmp_path):
    error = load_error(tmp_path, "daemon", {"a": "%(b)s", "b": "%(a)s", "logPath": "%(a)s"})

    assert error.option == "logPath"
    assert "loop back" in str(error) and "%(a)s -> %(b)s -> %(a)s" in str(error)


def test_lone_percent_is_an_error(tmp_path):
    error = load_error(tmp_path, "emails", {"subject": "100% done"})

    assert (error.section, error.option) == ("emails", "subject")
    assert "'%%'" in str(error)


# --------------------------------------------------------------------------- bad values

BAD_VALUES = [
    # (section, options written, option named in the message, what the message says)
    ("daemon", {"logMode": "2"}, "logMode", "must be 0 (everything in the main log file) or 1"),
    ("daemon", {"logging": "LOUD"}, "logging", "or a level name"),
    ("daemon", {"logging": "0"}, "logging", "must be a number from 1 to 50"),
    ("daemon", {"logging": "60"}, "logging", "must be a number from 1 to 50"),
    ("daemon", {"timing_log": "sometimes"}, "timing_log", "must be on or off"),
    (
        "daemon",
        {"conn_retry_sleep": "0"},
        "conn_retry_sleep",
        "seconds > 0 and at most 3600 (1 hour), got '0'",
    ),
    ("daemon", {"max_conn_retries": "0"}, "max_conn_retries", "whole number from 1 to 1000"),
    ("daemon", {"max_conn_retries": "2.5"}, "max_conn_retries", "from 1 to 1000"),
    ("daemon", {"fetch_interval": "-1"}, "fetch_interval", "at most 3600 (1 hour), got '-1'"),
    ("daemon", {"fetch_interval": "nan"}, "fetch_interval", "at most 3600 (1 hour), got 'nan'"),
    ("daemon", {"max_event_batch_size": "0"}, "max_event_batch_size", "whole number from 1 to"),
    (
        "daemon",
        {"gap_timeout": "-1"},
        "gap_timeout",
        "seconds >= 0 and at most 86400 (1 day), got '-1'",
    ),
    ("daemon", {"state_save_interval": "0"}, "state_save_interval", "seconds > 0"),
    (
        "daemon",
        {"site_timeout": "inf"},
        "site_timeout",
        "seconds > 0 and at most 3600 (1 hour), got 'inf'",
    ),
    ("daemon", {"stop_timeout": "soon"}, "stop_timeout", "at most 3600 (1 hour), got 'soon'"),
    ("daemon", {"status_interval": "0"}, "status_interval", "seconds > 0"),
    ("daemon", {"metrics_port": "65536"}, "metrics_port", "from 0 to 65535"),
    ("daemon", {"metrics_port": "http"}, "metrics_port", "from 0 to 65535, got 'http'"),
    ("daemon", {"max_plugin_backlog": "0"}, "max_plugin_backlog", "from 1 to 1000000"),
    ("daemon", {"plugin_retry": "sometimes"}, "plugin_retry", "must be off, on, or key=value"),
    ("daemon", {"plugin_retry": "tries=3"}, "plugin_retry", "'tries=3' is not one"),
    ("daemon", {"plugin_retry": "attempts=0"}, "plugin_retry", "attempts must be"),
    ("daemon", {"plugin_retry": "attempts=1001"}, "plugin_retry", "from 1 to 1000"),
    ("daemon", {"plugin_retry": "max_delay=1e10"}, "plugin_retry", "max_delay must be"),
    ("daemon", {"plugin_retry": "give_up_after=86401"}, "plugin_retry", "at most 86400"),
    ("daemon", {"plugin_retry": "first_delay=abc"}, "plugin_retry", "first_delay must be a"),
    ("daemon", {"plugin_retry": "jitter=1.5"}, "plugin_retry", "jitter must be a fraction"),
    (
        "daemon",
        {"plugin_retry": "first_delay=10, max_delay=5"},
        "plugin_retry",
        "max_delay must be >= first_delay",
    ),
    ("daemon", {"plugin_retry": "attempts=3, attempts=4"}, "plugin_retry", "attempts twice"),
    ("daemon", {"callback_timeout": "-5"}, "callback_timeout", "seconds >= 0"),
    ("daemon", {"worker_restart_limit": "0"}, "worker_restart_limit", "from 1 to 1000"),
    ("daemon", {"worker_restart_window": "0"}, "worker_restart_window", "seconds > 0"),
    ("daemon", {"max_worker_memory_mb": "-1"}, "max_worker_memory_mb", "from 0 to 1048576"),
    ("daemon", {"log_rotation": "weekly"}, "log_rotation", "midnight or external"),
    # Every number has an upper bound (past it a thread crashed long after the config loaded)
    ("daemon", {"fetch_interval": "1e10"}, "fetch_interval", "at most 3600 (1 hour), got"),
    ("daemon", {"status_interval": "1e10"}, "status_interval", "at most 3600 (1 hour)"),
    ("daemon", {"conn_retry_sleep": "3601"}, "conn_retry_sleep", "at most 3600 (1 hour)"),
    ("daemon", {"state_save_interval": "7200"}, "state_save_interval", "at most 3600"),
    ("daemon", {"site_timeout": "1e10"}, "site_timeout", "at most 3600 (1 hour)"),
    ("daemon", {"stop_timeout": "1e10"}, "stop_timeout", "at most 3600 (1 hour)"),
    ("daemon", {"gap_timeout": "1e10"}, "gap_timeout", "at most 86400 (1 day)"),
    ("daemon", {"callback_timeout": "1e10"}, "callback_timeout", "at most 86400 (1 day)"),
    ("daemon", {"worker_restart_window": "1e10"}, "worker_restart_window", "at most 86400"),
    ("daemon", {"max_conn_retries": "1e10"}, "max_conn_retries", "from 1 to 1000"),
    ("daemon", {"max_conn_retries": "99999999999"}, "max_conn_retries", "from 1 to 1000"),
    ("daemon", {"max_plugin_backlog": "10000000"}, "max_plugin_backlog", "to 1000000"),
    ("daemon", {"worker_restart_limit": "1001"}, "worker_restart_limit", "from 1 to 1000"),
    ("daemon", {"max_worker_memory_mb": "2000000"}, "max_worker_memory_mb", "to 1048576"),
    ("daemon", {"max_event_batch_size": "1" + "0" * 12}, "max_event_batch_size", "from 1 to"),
    ("emails", {"timeout": "1e10"}, "timeout", "at most 3600 (1 hour)"),
    ("emails", {"rate_limit_window": "1e10"}, "rate_limit_window", "at most 86400 (1 day)"),
    ("shotgun", {"server": "yoursite.shotgunstudio.com"}, "server", "http:// or https:// URL"),
    ("shotgun", {"server": "ftp://site.example.com"}, "server", "http:// or https:// URL"),
    ("shotgun", {"server": "https://"}, "server", "http:// or https:// URL"),
    ("shotgun", {"server": "https://site.example.com:99999"}, "server", "http:// or https://"),
    ("shotgun", {"proxy_server": "proxy.lan:31two8"}, "proxy_server", "port from 1 to 65535"),
    ("shotgun", {"proxy_server": "http://proxy.lan:3128"}, "proxy_server", "host[:port]"),
    ("shotgun", {"proxy_server": "ops@proxy.lan"}, "proxy_server", "user:password@host"),
    ("shotgun", {"server": ""}, "server", "is required"),
    ("shotgun", {"name": ""}, "name", "is required"),
    ("shotgun", {"key": ""}, "key", "is required"),
    ("shotgun", {"key": f"{KEY[:20]} {KEY[20:]}"}, "key", "without spaces (not shown)"),
    ("shotgun", {"use_session_uuid": "maybe"}, "use_session_uuid", "must be on or off"),
    ("plugins", {"paths": ""}, "paths", "is required"),
    ("plugins", {"paths": " , ,"}, "paths", "at least one plugin folder"),
    ("plugins", {"paths": "a, b, ./a"}, "paths", "twice ('a' and './a')"),
    ("plugins", {"isolation": "fork"}, "isolation", "must be thread or process"),
    ("plugins", {"ordering": "random"}, "ordering", "must be eager or strict"),
    ("emails", {"port": "0"}, "port", "from 1 to 65535"),
    ("emails", {"port": "smtp"}, "port", "from 1 to 65535, got 'smtp'"),
    ("emails", {"useTLS": "please"}, "useTLS", "must be on or off"),
    ("emails", {"useSSL": "2"}, "useSSL", "must be on or off"),
    ("emails", {"useTLS": "on", "useSSL": "on"}, "useSSL", "are both on"),
    ("emails", {"enabled": "on", "from": "nobody"}, "from", "email address"),
    ("emails", {"enabled": "on", "to": "td@example.com, nobody"}, "to", "'nobody' has no '@'"),
    ("emails", {"enabled": "on", "server": "$SMTP_SERVER$"}, "server", "template placeholder"),
    ("emails", {"timeout": "0"}, "timeout", "seconds > 0"),
    ("emails", {"rate_limit_window": "-1"}, "rate_limit_window", "seconds >= 0"),
    ("emails", {"enabled": "maybe"}, "enabled", "must be on or off"),
    ("emails", {"enabled": "on", "server": "smtp.example.com"}, "enabled", "from and to are"),
    ("emails", {"username": "mailer"}, "password", "is required when username is set"),
    ("emails", {"password": PASSWORD}, "username", "is required when password is set"),
]


@pytest.mark.parametrize(
    "section, options, option, problem",
    BAD_VALUES,
    ids=[f"{s}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for s, o, _, _ in BAD_VALUES],
)
def test_bad_value_is_named_by_file_section_and_option(tmp_path, section, options, option, problem):
    error = load_error(tmp_path, section, options)

    path = tmp_path / CONFIG_FILE_NAME
    assert str(error).startswith(f"{path}: [{section}] {option}: ")
    assert (error.path, error.section, error.option) == (path, section, option)
    assert problem in str(error)
    for secret in (KEY, KEY[:20], KEY[20:], PASSWORD):
        assert secret not in str(error)


def test_bad_value_message_reads_as_documented(tmp_path):
    error = load_error(tmp_path, "daemon", {"fetch_interval": "abc"})

    path = tmp_path / CONFIG_FILE_NAME
    expected = (
        "[daemon] fetch_interval: must be a number of seconds > 0 and at most 3600 (1 hour), "
        "got 'abc'"
    )
    assert str(error) == f"{path}: {expected}"


def test_message_shows_what_a_reference_expanded_to(tmp_path):
    error = load_with_error_env(tmp_path, {"fetch_interval": "%(POLL)s"}, {"POLL": "fast"})

    assert "got 'fast'" in str(error)


def test_bad_multi_line_value_is_shown_by_its_first_line_only(tmp_path):
    text = write_sections(tmp_path, minimal_sections()).read_text()
    text = text.replace("[daemon]", "[daemon]\nfetch_interval: soon\n    key: hidden-k3y")

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})

    assert "got 'soon' (and the lines after it)" in str(caught.value)
    assert "hidden-k3y" not in str(caught.value)


def load_with_error_env(folder: Path, options: Dict[str, str], environ: Dict[str, str]):
    with pytest.raises(ConfigError) as caught:
        load_with(folder, "daemon", options, environ=environ)
    return caught.value


# --------------------------------------------------------------------------- sections


@pytest.mark.parametrize("missing", ["daemon", "shotgun", "plugins"])
def test_missing_section_is_named(tmp_path, missing):
    sections = minimal_sections()
    del sections[missing]

    with pytest.raises(ConfigError) as caught:
        load_config(write_sections(tmp_path, sections), environ={})

    path = tmp_path / CONFIG_FILE_NAME
    assert str(caught.value) == f"{path}: [{missing}]: the section is missing"
    assert (caught.value.section, caught.value.option) == (missing, None)


def test_missing_section_message_points_at_a_wrongly_cased_one(tmp_path):
    sections = minimal_sections()
    sections["Daemon"] = sections.pop("daemon")

    with pytest.raises(ConfigError, match=r"there is a \[Daemon\]; section names are case"):
        load_config(write_sections(tmp_path, sections), environ={})


def test_missing_emails_section_means_emails_off(tmp_path):
    config = load_config(write_sections(tmp_path, minimal_sections()), environ={})

    assert config.emails.enabled is False and config.emails.to_addrs == ()


# --------------------------------------------------------------------------- plugins


def test_plugin_folders_keep_their_order_and_spelling(tmp_path):
    config = load_with(tmp_path, "plugins", {"paths": " /studio/plugins/ , local,\n  ~/mine"})

    paths = [folder.path for folder in config.plugins.folders]
    assert paths == ["/studio/plugins/", "local", "~/mine"]
    assert config.plugins.folders[1].resolved == tmp_path / "local"
    assert config.plugins.folders[2].resolved == Path(os.path.expanduser("~/mine"))


def test_the_same_plugin_folder_by_another_path_is_used_once_with_a_warning(tmp_path):
    """A ``current`` release link beside the folder it points to ran every plugin twice."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "plugins")
    config = load_with(tmp_path, "plugins", {"paths": "plugins, current, other"})
    config_with_section = load_config(
        write(
            tmp_path,
            "[daemon]\n[shotgun]\nserver: https://site.example.com\nname: d\n"
            f"key: {KEY}\n[plugins]\npaths: plugins, current\n[plugins:current]\n"
            "isolation: process\n",
        ),
        environ={},
    )

    assert [folder.path for folder in config.plugins.folders] == ["plugins", "other"]
    (warning,) = config.warnings
    assert "[plugins] paths: 'current' is the folder 'plugins' by another path" in warning
    assert "run once, as listed first ('plugins'), and 'current' is not used" in warning
    assert [folder.isolation for folder in config_with_section.plugins.folders] == ["thread"]
    assert any(
        "[plugins:current]: is not used" in warning for warning in config_with_section.warnings
    )


def test_the_same_plugin_folder_spelt_twice_is_an_error(tmp_path):
    error = load_error(tmp_path, "plugins", {"paths": "plugins, ./plugins/"})
    assert (error.section, error.option) == ("plugins", "paths")
    assert "twice ('plugins' and './plugins/')" in str(error)


def test_a_folder_inside_another_listed_folder_is_a_folder_of_its_own(tmp_path):
    """Only the files directly in a folder are its plugins: a folder inside another listed
    one holds other files, so listing both runs nothing twice."""
    (tmp_path / "plugins" / "nested").mkdir(parents=True)
    config = load_with(tmp_path, "plugins", {"paths": "plugins, plugins/nested"})

    assert [folder.path for folder in config.plugins.folders] == ["plugins", "plugins/nested"]


def test_plugin_folder_section_overrides_isolation_and_ordering(tmp_path):
    sections = minimal_sections()
    sections["plugins"] = {"paths": "/a, /b, /c", "isolation": "process", "ordering": "strict"}
    sections["plugins:/b"] = {"isolation": "thread"}
    sections["plugins:/c"] = {"ordering": "eager"}

    config = load_config(write_sections(tmp_path, sections), environ={})

    settings = [(f.path, f.isolation, f.ordering) for f in config.plugins.folders]
    assert settings == [
        ("/a", "process", "strict"),
        ("/b", "thread", "strict"),
        ("/c", "process", "eager"),
    ]
    assert config.warnings == ()


def test_plugin_folder_section_naming_no_configured_folder_is_an_error(tmp_path):
    sections = minimal_sections()
    sections["plugins"] = {"paths": "/studio/plugins"}
    sections["plugins:/studio/plugin"] = {"isolation": "process"}

    with pytest.raises(ConfigError) as caught:
        load_config(write_sections(tmp_path, sections), environ={})

    assert caught.value.section == "plugins:/studio/plugin"
    assert "did you mean [plugins:/studio/plugins]?" in str(caught.value)


def test_bad_value_in_a_plugin_folder_section_names_that_section(tmp_path):
    sections = minimal_sections()
    sections["plugins:plugins"] = {"ordering": "sometimes"}

    with pytest.raises(ConfigError) as caught:
        load_config(write_sections(tmp_path, sections), environ={})

    assert str(caught.value).startswith(
        f"{tmp_path / CONFIG_FILE_NAME}: [plugins:plugins] ordering: must be eager or strict"
    )


@pytest.mark.parametrize(
    "written, expected",
    [
        ("off", None),
        ("no", None),
        ("on", RetryPolicy()),
        ("TRUE", RetryPolicy()),
        (
            "attempts=8, first_delay=2, max_delay=120, give_up_after=900",
            RetryPolicy(8, 2, 120, 900),
        ),
        ("jitter=0", RetryPolicy(jitter=0.0)),
    ],
)
def test_plugin_retry_accepts_off_on_and_a_policy(tmp_path, written, expected):
    assert load_with(tmp_path, "daemon", {"plugin_retry": written}).daemon.plugin_retry == expected


def test_retry_policy_built_by_hand_is_validated_too():
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=-0.1)


# --------------------------------------------------------------------------- emails


def test_emails_are_on_when_server_from_and_to_are_set(tmp_path):
    config = load_with(
        tmp_path,
        "emails",
        {"server": "smtp.example.com", "from": "sged@example.com", "to": "a@example.com, b@x.org"},
    )

    assert config.emails.enabled is True
    assert config.emails.to_addrs == ("a@example.com", "b@x.org")
    assert config.emails.port == 25
    assert config.warnings == ()


def test_emails_off_with_a_warning_when_server_is_set_but_from_and_to_are_empty(tmp_path):
    config = load_with(tmp_path, "emails", {"server": "smtp.example.com", "from": "", "to": ""})

    assert config.emails.enabled is False
    [warning] = config.warnings
    assert warning.startswith(f"{tmp_path / CONFIG_FILE_NAME}: [emails]: ")
    assert "from and to are empty" in warning


def test_emails_can_be_turned_off_explicitly_without_a_warning(tmp_path):
    config = load_with(tmp_path, "emails", {"server": "smtp.example.com", "enabled": "off"})

    assert config.emails.enabled is False and config.warnings == ()


# The [emails] section of the classic example config before it had real-looking values.
CLASSIC_EMAIL_TOKENS = {
    "server": "$SMTP_SERVER$",
    "from": "$FROM_EMAIL$",
    "to": "$TO_EMAILS$",
    "subject": "[SG]",
}


def test_classic_template_placeholders_load_with_emails_off_and_one_warning(tmp_path):
    config = load_with(tmp_path, "emails", CLASSIC_EMAIL_TOKENS)

    assert config.emails.enabled is False
    [warning] = config.warnings
    assert warning.startswith(f"{tmp_path / CONFIG_FILE_NAME}: [emails]: error emails are off")
    for option, token in [("server", "$SMTP_SERVER$"), ("from", "$FROM_EMAIL$")]:
        assert f"{option} is the example's template placeholder {token}" in warning
    assert "to is the example's template placeholder $TO_EMAILS$" in warning


def test_an_address_without_at_turns_emails_off_with_a_warning_naming_it(tmp_path):
    options = {"server": "smtp.example.com", "from": "sged@example.com", "to": "td, a@x.org"}
    config = load_with(tmp_path, "emails", options)

    assert config.emails.enabled is False
    [warning] = config.warnings
    assert "to 'td' is not an email address (no '@')" in warning


def test_a_placeholder_password_is_named_but_not_shown(tmp_path):
    options = {**CLASSIC_EMAIL_TOKENS, "username": "$SMTP_USERNAME$", "password": "$SMTP_PW$"}
    config = load_with(tmp_path, "emails", options)

    [warning] = config.warnings
    assert "password is the example's template placeholder;" in warning
    assert "$SMTP_PW$" not in warning


def test_placeholders_with_emails_explicitly_off_load_silently(tmp_path):
    config = load_with(tmp_path, "emails", {**CLASSIC_EMAIL_TOKENS, "enabled": "off"})

    assert config.emails.enabled is False and config.warnings == ()


def test_placeholders_with_emails_explicitly_on_are_an_error(tmp_path):
    options = {**CLASSIC_EMAIL_TOKENS, "server": "smtp.example.com", "enabled": "on"}
    error = load_error(tmp_path, "emails", options)

    assert (error.section, error.option) == ("emails", "from")
    assert "must be an email address" in str(error)


def test_smtps_defaults_to_port_465(tmp_path):
    config = load_with(tmp_path, "emails", {"useSSL": "on"})

    assert (config.emails.use_ssl, config.emails.port) == (True, 465)


def test_classic_use_tls_means_starttls(tmp_path):
    config = load_with(tmp_path, "emails", {"useTLS": "True", "port": "587"})

    assert (config.emails.use_starttls, config.emails.use_ssl, config.emails.port) == (
        True,
        False,
        587,
    )


# --------------------------------------------------------------------------- warnings


def test_unknown_option_is_a_warning_with_a_suggestion(tmp_path):
    config = load_with(tmp_path, "daemon", {"fetch_intervall": "3", "zzz": "1"})

    path = tmp_path / CONFIG_FILE_NAME
    assert config.warnings == (
        f"{path}: [daemon] fetch_intervall: unknown option, ignored (did you mean fetch_interval?)",
        f"{path}: [daemon] zzz: unknown option, ignored",
    )
    assert config.daemon.fetch_interval == 5.0


def test_camel_case_option_is_suggested_in_its_own_spelling(tmp_path):
    config = load_with(tmp_path, "daemon", {"pidFil": "x"})

    assert config.warnings[0].endswith("(did you mean pidFile?)")


def test_unknown_section_is_a_warning_with_a_suggestion(tmp_path):
    config = load_with(tmp_path, "email", {"server": "smtp.example.com"})

    assert config.warnings == (
        f"{tmp_path / CONFIG_FILE_NAME}: [email]: unknown section, ignored "
        "(did you mean [emails]?)",
    )


def test_classic_sentry_section_warns_only_when_a_dsn_is_set(tmp_path):
    dsn = "https://0123456789abcdef@sentry.example.com/42"
    assert load_with(tmp_path, "sentry", {"sentry_dsn": ""}).warnings == ()

    config = load_with(tmp_path, "sentry", {"sentry_dsn": dsn})

    [warning] = config.warnings
    assert "[sentry] sentry_dsn: Sentry is not supported" in warning
    assert "0123456789abcdef" not in warning


def test_classic_proxy_section_warns_only_when_http_proxy_is_set(tmp_path):
    assert load_with(tmp_path, "proxy", {}).warnings == ()
    assert load_with(tmp_path, "proxy", {"http_proxy": ""}).warnings == ()

    config = load_with(tmp_path, "proxy", {"http_proxy": "ops:s3cret-proxy@proxy:3128"})

    [warning] = config.warnings
    assert "[proxy] http_proxy: not used; set the proxy as [shotgun] proxy_server" in warning
    assert "s3cret-proxy" not in warning
    assert config.site.proxy_server is None


# --------------------------------------------------------------------------- the file itself


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.conf")

    assert str(caught.value) == f"{tmp_path / 'nope.conf'}: no such file"


def test_folder_instead_of_a_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path)


def test_unreadable_file_is_a_config_error(tmp_path):
    path = write_sections(tmp_path, minimal_sections())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read a mode-000 file (root)")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
    finally:
        path.chmod(0o600)

    assert str(caught.value).startswith(f"{path}: cannot be read (permission denied)")


def test_parse_error_names_the_line(tmp_path):
    text = "[daemon]\nlogMode: 1\nthis line has no delimiter\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})

    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{tmp_path / CONFIG_FILE_NAME}: line 3: expected ")
    assert "this line has no delimiter" in str(caught.value)


def test_parse_error_hides_a_line_that_may_hold_a_secret(tmp_path):
    text = f"[shotgun]\nserver: https://x.example.com\nkey {KEY}\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})

    assert caught.value.line == 3 and KEY not in str(caught.value)


def test_option_before_any_section_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2: an option comes before the first \[section\]"):
        load_config(write(tmp_path, "# comment\nlogMode: 1\n[daemon]\n"), environ={})


def test_option_written_twice_names_section_option_and_line(tmp_path):
    text = "[daemon]\nlogMode: 1\nlogmode: 0\n"

    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})

    assert (caught.value.section, caught.value.option, caught.value.line) == (
        "daemon",
        "logmode",
        3,
    )


def test_section_written_twice_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3: the section \[daemon\] appears twice"):
        load_config(write(tmp_path, "[daemon]\n\n[daemon]\n"), environ={})


def test_latin1_file_still_loads_with_a_warning(tmp_path):
    text = write_sections(tmp_path, minimal_sections()).read_text()
    path = tmp_path / CONFIG_FILE_NAME
    path.write_bytes(b"# r\xe9glages du studio\n" + text.encode("ascii"))

    config = load_config(path, environ={})

    assert config.warnings == (f"{path}: line 1: the file is not UTF-8; it was read as Latin-1",)


# --------------------------------------------------------------------------- secrets


def test_secret_never_shows_itself():
    secret = Secret(KEY)

    assert str(secret) == repr(secret) == f"{secret}" == "********"
    assert secret.reveal() == KEY


def test_secret_compares_and_tests_by_its_value():
    assert Secret("abc") == Secret("abc") and Secret("abc") == "abc"
    assert Secret("abc") != Secret("abd") and Secret("abc") != "abd"
    assert Secret("héllo") == "héllo"
    assert bool(Secret("x")) and not bool(Secret(""))
    assert Secret("abc") != 3


def test_secret_refuses_to_be_pickled_but_copies():
    secret = Secret(KEY)

    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) == secret and copy.copy(secret) is secret


def test_secrets_stay_hidden_in_config_repr_and_logs(tmp_path, caplog):
    config = load_with(
        tmp_path,
        "emails",
        {"username": "mailer", "password": PASSWORD, "server": "smtp.example.com"},
    )
    proxied = load_with(tmp_path, "shotgun", {"proxy_server": "ops:pr0xy-pass@proxy:3128"})

    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config: %s %r", config, proxied)
    shown = repr(config) + str(config) + repr(proxied) + caplog.text + "".join(config.warnings)
    for secret in (KEY, PASSWORD, "pr0xy-pass"):
        assert secret not in shown
    assert config.secrets() == [KEY, PASSWORD]
    assert proxied.secrets() == [KEY, "pr0xy-pass"]


def test_a_bad_address_with_a_password_is_shown_with_the_password_masked(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, "shotgun", {"proxy_server": "ops:pr0xy-pass@proxy:99999"})
    assert "got 'ops:********@proxy:99999'" in str(caught.value)
    assert "pr0xy-pass" not in str(caught.value)
    assert load_with(tmp_path, "shotgun", {"proxy_server": "ops:pw@proxy"}).site.proxy_server


def test_a_password_in_the_site_url_is_a_secret_as_written_and_decoded(tmp_path):
    url = "https://studio:S%40fe-pa55@yoursite.shotgunstudio.com"
    config = load_with(tmp_path, "shotgun", {"server": url.replace("%", "%%")})  # INI escaping
    assert config.site.server == url  # shotgun_api3 sends it as HTTP basic authentication
    assert sorted(config.secrets()) == sorted([KEY, "S%40fe-pa55", "S@fe-pa55"])


def test_config_is_frozen(tmp_path):
    config = load_config(write_sections(tmp_path, minimal_sections()), environ={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.daemon.fetch_interval = 1  # type: ignore[misc]
    assert copy.deepcopy(config) == config


# --------------------------------------------------------------------------- finding the file


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A program folder, an /etc stand-in, and an environment without SGED_CONFIG."""
    program_folder = tmp_path / "bin"
    etc = tmp_path / "etc"
    program_folder.mkdir()
    etc.mkdir()
    monkeypatch.setattr(config_module, "_SYSTEM_CONFIG", etc / CONFIG_FILE_NAME)
    return program_folder, etc


def test_config_option_wins_over_everything(tmp_path, places):
    program_folder, etc = places
    chosen = write(tmp_path, "", "chosen.conf")
    write(program_folder, "")
    write(etc, "")
    environ = {"SGED_CONFIG": str(write(tmp_path, "", "env.conf"))}

    found = find_config_file(str(chosen), environ, str(program_folder / "shotgunEventDaemon"))

    assert found == chosen


def test_config_option_naming_a_missing_file_is_an_error_not_a_fallback(tmp_path, places):
    program_folder, etc = places
    write(etc, "")

    with pytest.raises(ConfigError) as caught:
        find_config_file(str(tmp_path / "typo.conf"), {}, str(program_folder / "prog"))

    assert str(caught.value) == f"{tmp_path / 'typo.conf'}: no such file (named by --config)"


def test_environment_variable_comes_second(tmp_path, places):
    program_folder, _ = places
    write(program_folder, "")
    from_env = write(tmp_path, "", "env.conf")

    found = find_config_file(None, {"SGED_CONFIG": str(from_env)}, str(program_folder / "prog"))

    assert found == from_env


def test_environment_variable_naming_a_missing_file_is_an_error(tmp_path, places):
    _, etc = places
    write(etc, "")

    with pytest.raises(ConfigError, match=r"no such file \(named by \$SGED_CONFIG\)"):
        find_config_file(None, {"SGED_CONFIG": str(tmp_path / "gone.conf")}, "prog")


def test_classic_search_looks_beside_the_program_before_etc(places):
    program_folder, etc = places
    beside = write(program_folder, "")
    write(etc, "")

    assert find_config_file(None, {}, str(program_folder / "shotgunEventDaemon")) == beside


def test_classic_search_falls_back_to_etc(places):
    program_folder, etc = places
    system = write(etc, "")

    assert find_config_file(None, {"SGED_CONFIG": ""}, str(program_folder / "prog")) == system


def test_classic_search_uses_the_running_program_by_default(places, monkeypatch):
    program_folder, _ = places
    beside = write(program_folder, "")
    monkeypatch.setattr("sys.argv", [str(program_folder / "shotgunEventDaemon"), "start"])

    assert find_config_file(None, {}) == beside


def test_no_config_file_found_lists_every_place_tried(places):
    program_folder, etc = places

    with pytest.raises(ConfigError) as caught:
        find_config_file(None, {}, str(program_folder / "prog"))

    message = str(caught.value)
    assert str(program_folder / CONFIG_FILE_NAME) in message
    assert str(etc / CONFIG_FILE_NAME) in message
    assert "--config" in message and "SGED_CONFIG" in message


# --------------------------------------------------------------------------- the example file

_DEFAULT_LINE = re.compile(r"^#(\w+)(\s*[:=])", re.MULTILINE)


def test_example_config_loads_without_warnings():
    config = load_config(EXAMPLE, environ={})

    assert config.warnings == ()
    assert config.site.server == "https://yoursite.shotgunstudio.com"


def test_example_config_shows_every_option_with_its_default(tmp_path):
    """Uncommenting every '#option: value' line of the example changes nothing."""
    text = EXAMPLE.read_text()
    as_shipped = load_config(write(tmp_path, text, "shipped.conf"), environ={})
    uncommented = load_config(write(tmp_path, _DEFAULT_LINE.sub(r"\1\2", text)), environ={})

    assert uncommented.warnings == ()
    for part in ("daemon", "site", "plugins", "emails"):
        assert getattr(uncommented, part) == getattr(as_shipped, part), part


def test_example_config_documents_every_option_in_its_section():
    documented: Dict[str, set] = {}
    section = None
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        option = re.match(r"^#?(\w+)\s*[:=]", line)
        if header:
            section = header.group(1)
        elif option and section:
            documented.setdefault(section, set()).add(option.group(1))

    for known_section, options in config_module._OPTIONS.items():
        assert set(options) <= documented.get(known_section, set()), known_section


# --------------------------------------------------------------------------- the daemon's own files

SHARED_FILES = [
    # (options written, option named first, what it names)
    ({"status_file": "state/events.id"}, "status_file", "the state file, [daemon] eventIdFile"),
    ({"pidFile": "state/events.id"}, "pidFile", "the state file, [daemon] eventIdFile"),
    ({"pidFile": "state/events.id.lock"}, "pidFile", "the state file's lock, [daemon] eventIdFile"),
    ({"pidFile": "state/events.id.prev"}, "pidFile", "previous copy, [daemon] eventIdFile"),
    ({"status_file": "state/events.id.control"}, "status_file", "control socket, [daemon] e"),
    ({"status_file": "state/events.id.journal.3"}, "status_file", "journals, positions and"),
    ({"pidFile": "state/events.id.positions.7"}, "pidFile", "journals, positions and"),
    ({"status_file": "daemon.pid"}, "status_file", "the pid file, [daemon] pidFile"),
    ({"logPath": ".", "logFile": "daemon.pid"}, "logFile", "the pid file, [daemon] pidFile"),
    ({"logPath": "state", "logFile": "events.id"}, "logFile", "the state file, [daemon] eventI"),
    ({"status_file": "logs/main.2024-05-01"}, "status_file", "log's rotated copies, [daemon] l"),
    ({"status_file": "logs/plugin.rollup"}, "status_file", "the plugins' log files"),
    ({"timing_log": "on", "status_file": "logs/main.timing"}, "timing_log", "the status file"),
    ({"logPath": ".", "logFile": CONFIG_FILE_NAME}, "logFile", "is also the config file;"),
    ({"status_file": "link-to-state"}, "status_file", "the state file, [daemon] eventIdFile"),
    ({"status_file": "hard-link-to-state"}, "status_file", "the state file, [daemon] eventIdF"),
]


@pytest.mark.parametrize(
    "options, option, other",
    SHARED_FILES,
    ids=["-".join(f"{k}={v}" for k, v in o.items()) for o, _, _ in SHARED_FILES],
)
def test_two_options_naming_one_daemon_file_are_refused_naming_both(
    tmp_path, options, option, other
):
    """A status file written over the state file (or a pid file that is it) destroyed the
    saved positions; files are compared by real path and inode, families by name."""
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "events.id").write_bytes(b"")
    (tmp_path / "link-to-state").symlink_to(tmp_path / "state" / "events.id")
    os.link(tmp_path / "state" / "events.id", tmp_path / "hard-link-to-state")
    written = {
        "eventIdFile": "state/events.id",
        "pidFile": "daemon.pid",
        "logPath": "logs",
        "logFile": "main",
        **options,
    }
    error = load_error(tmp_path, "daemon", written)

    assert (error.section, error.option) == ("daemon", option)
    assert other in str(error)
    assert "each of the daemon's files must be a file of its own" in str(error)


def test_the_default_files_and_the_classic_layout_are_each_a_file_of_their_own(tmp_path):
    """Classic installs keep pid, state and logs in one folder, named shotgunEventDaemon*:
    the state file and the pid file are not the log's rotated copies."""
    load_with(tmp_path, "daemon", {})
    load_with(tmp_path, "daemon", {"timing_log": "on"})
    load_config(write(tmp_path, CLASSIC), environ={})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "events.id").write_bytes(b"")
    os.link(tmp_path / "state" / "events.id", tmp_path / "state" / "events.id.prev")
    # a checkpoint killed between its two renames leaves the state file and .prev one inode
    load_with(tmp_path, "daemon", {"eventIdFile": "state/events.id"})


@pytest.mark.parametrize("option", ["eventIdFile", "pidFile", "status_file"])
def test_a_daemon_file_that_is_a_folder_is_refused(tmp_path, option):
    folder = tmp_path / "already_a_folder"
    folder.mkdir()
    path = tmp_path / "daemon.conf"
    path.write_text(
        f"[daemon]\n{option}: {folder}\n[shotgun]\nserver: https://x.example.com\n"
        "name: daemon\nkey: abcdefgh12345\n[plugins]\npaths: plugins\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "[daemon]" in message and option in message and "is a folder" in message
