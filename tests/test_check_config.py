"""``shotgunEventDaemon check-config``: the config, and every plugin, checked offline.

Each test runs the real command (``python -m shotgun_events check-config``) on the harness's
config (see harness.py), with a site emulator in this process that must see no request.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from harness import ENGINE_SCRIPT, PLUGIN_SCRIPT, recorder_plugin

PLUGIN_KEY = PLUGIN_SCRIPT[1]


def check(daemon, *args):
    return daemon.command("check-config", *args)


def report(daemon, *args):
    result = check(daemon, "--json", *args)
    return result.returncode, json.loads(result.stdout)


def plugin_report(data, name):
    found = [p for folder in data["folders"] for p in folder["plugins"] if p["name"] == name]
    assert len(found) == 1, data
    return found[0]


def tree(root: Path):
    """Every file under root with its size and modification time."""
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if not path.is_dir()
    }


def registering(match_events, body=""):
    """A plugin that registers one callback with this matchEvents (written as source)."""
    return body + textwrap.dedent(
        f"""
        def registerCallbacks(reg):
            reg.registerCallback({PLUGIN_SCRIPT[0]!r}, {PLUGIN_KEY!r}, on_event, {match_events})

        def on_event(sg, logger, event, args):
            pass
        """
    )


def test_a_good_config_and_plugins_pass_and_write_no_file(site, daemon):
    daemon.add_plugin(
        "status_stamp",
        recorder_plugin(match_events={"Shotgun_Task_Change": ["sg_status_list", "due_date"]}),
    )
    daemon.add_plugin("everything", recorder_plugin())
    before = tree(daemon.root)

    code, data = report(daemon, "--plugins")
    person = check(daemon, "--plugins")

    assert code == 0 and person.returncode == 0, person.stdout + person.stderr
    assert data["valid"] and data["exit_code"] == 0 and data["warnings"] == []
    stamp = plugin_report(data, "status_stamp")
    assert stamp["loads"] and stamp["problems"] == []
    assert stamp["callbacks"] == [
        {
            "name": "callback",
            "script": PLUGIN_SCRIPT[0],
            "match_events": {"Shotgun_Task_Change": ["due_date", "sg_status_list"]},
            "stop_on_error": True,
            "retry": None,
            "timeout": None,
        }
    ]
    assert plugin_report(data, "everything")["callbacks"][0]["match_events"] == {"*": "*"}
    assert "ok       status_stamp: 1 callback" in person.stdout
    assert "Shotgun_Task_Change: due_date, sg_status_list; stopOnError" in person.stdout
    assert "Plugins: 2 found, 2 load." in person.stdout
    assert data["files"]["state_file"] == str(daemon.state_file)
    # No state, pid, status, log or bytecode file: the tree is exactly as it was.
    assert tree(daemon.root) == before
    assert not (daemon.plugin_dir / "__pycache__").exists()
    assert site.stats()["requests"] == 0


def test_without_plugins_no_plugin_code_runs(tmp_path, site, daemon):
    marker = tmp_path / "imported"
    daemon.add_plugin("alpha", registering(None, body=f"open({str(marker)!r}, 'w').close()"))

    result = check(daemon)

    assert result.returncode == 0, result.stderr
    assert "Plugins not checked (add --plugins to load them)." in result.stdout
    assert not marker.exists()


def test_a_bad_config_exits_2_naming_file_section_and_option(daemon):
    daemon.write_config(fetch_interval="soon")

    result = check(daemon, "--plugins")
    code, data = report(daemon)

    assert result.returncode == 2 and code == 2
    assert f"{daemon.config_path}: [daemon] fetch_interval: must be a number" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not data["valid"]
    assert data["error"]["file"] == str(daemon.config_path)
    assert (data["error"]["section"], data["error"]["option"]) == ("daemon", "fetch_interval")
    assert ENGINE_SCRIPT[1] not in result.stderr + json.dumps(data)


def test_warnings_are_listed_and_do_not_fail(daemon):
    daemon.write_config(fetch_intervall="2")

    result = check(daemon)
    code, data = report(daemon)

    assert result.returncode == 0 and code == 0
    assert "Warnings (1):" in result.stdout
    assert "[daemon] fetch_intervall: unknown option, ignored (did you mean fetch_interval?)" in (
        result.stdout
    )
    assert len(data["warnings"]) == 1


def test_a_misspelt_match_events_shape_fails_as_the_daemon_refuses_it(daemon):
    daemon.add_plugin("as_list", registering('["Shotgun_Task_Change"]'))
    daemon.add_plugin("number_attribute", registering('{"Shotgun_Task_Change": [3]}'))
    daemon.add_plugin("fine", registering('{"Shotgun_Task_Change": "sg_status_list"}'))

    code, data = report(daemon, "--plugins")
    person = check(daemon, "--plugins")

    assert code == 1 and person.returncode == 1
    as_list = plugin_report(data, "as_list")
    assert not as_list["loads"] and as_list["callbacks"] == []
    assert (
        "matchEvents must be a dict of event type -> attribute names, got list"
        in (as_list["problems"][0])
    )
    number = plugin_report(data, "number_attribute")
    assert "contains 3, which is not an attribute name" in number["problems"][0]
    assert plugin_report(data, "fine")["loads"]
    assert "FAILED   as_list: failed to load:" in person.stdout
    assert "Plugins: 3 found, 1 load, 2 would not load." in person.stdout


def test_a_near_miss_event_type_is_a_warning_with_the_likely_name(daemon):
    daemon.add_plugin("typo", registering('{"Shotgun_Task_Changed": None}'))

    code, data = report(daemon, "--plugins")

    typo = plugin_report(data, "typo")
    assert code == 0 and typo["loads"]
    assert typo["warnings"] == [
        "on_event: matchEvents key 'Shotgun_Task_Changed' is not an event type a site "
        "writes; did you mean 'Shotgun_Task_Change'?"
    ]


def test_a_plugin_that_contacts_the_site_while_loading_is_stopped_and_reported(site, daemon):
    connect = f"import shotgun_api3\nshotgun_api3.Shotgun({site.url!r}, 'x', {PLUGIN_KEY!r})"
    daemon.add_plugin("at_import", registering(None, body=connect))
    swallowed = f"try:\n    {connect.splitlines()[1]}\nexcept Exception:\n    pass"
    daemon.add_plugin("swallows", registering(None, body="import shotgun_api3\n" + swallowed))

    code, data = report(daemon, "--plugins")

    assert code == 1
    port = site.url.rsplit(":", 1)[1]
    for name in ("at_import", "swallows"):
        plugin = plugin_report(data, name)
        assert not plugin["loads"]
        assert any(
            f"connects to 127.0.0.1:{port} while loading" in problem
            for problem in plugin["problems"]
        ), plugin
    assert site.stats()["requests"] == 0


def test_secrets_are_masked_in_every_line_and_in_json(daemon):
    # The key is on the failing line, which the traceback quotes.
    daemon.add_plugin(
        "leaky",
        textwrap.dedent(
            f"""
            def registerCallbacks(reg):
                reg.registerCallback("s", {PLUGIN_KEY!r}, cb); raise ValueError({PLUGIN_KEY!r})

            def cb(sg, logger, event, args):
                pass
            """
        ),
    )
    person = check(daemon, "--plugins")
    machine = check(daemon, "--plugins", "--json")

    assert person.returncode == 1 and machine.returncode == 1
    everything = person.stdout + person.stderr + machine.stdout + machine.stderr
    assert PLUGIN_KEY not in everything and ENGINE_SCRIPT[1] not in everything
    assert "ValueError: ********" in person.stdout


def test_unsafe_files_and_missing_folders_fail_with_the_daemons_reason(tmp_path, daemon):
    unsafe = daemon.add_plugin("shared", registering(None))
    os.chmod(unsafe, 0o664)
    text = daemon.config_path.read_text().replace(
        f"paths: {daemon.plugin_dir}", f"paths: {daemon.plugin_dir}, {tmp_path / 'gone'}"
    )
    daemon.config_path.write_text(text)

    code, data = report(daemon, "--plugins")

    assert code == 1
    assert (
        "is writable by its group (chmod g-w to allow it)"
        in (plugin_report(data, "shared")["problems"][0])
    )
    gone = data["folders"][1]
    assert gone["path"] == str(tmp_path / "gone")
    assert "No such file or directory" in gone["problem"]


def test_helper_modules_are_importable_and_not_plugins(daemon):
    daemon.add_plugin("uses_helper", recorder_plugin())  # imports _recorder from its folder

    code, data = report(daemon, "--plugins")

    assert code == 0, data
    assert [p["name"] for p in data["folders"][0]["plugins"]] == ["uses_helper"]
