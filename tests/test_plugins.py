"""Loading plugins: the classic Registrar API, real modules, failures, folder scanning."""

import os
import pickle
import sys
import textwrap

import pytest

from shotgun_events.plugins import Plugin, PluginEnvironment, file_signature, scan_folder

ENV = PluginEnvironment(server="http://127.0.0.1:9")  # nothing listens there


def write(path, source):
    path.write_text(textwrap.dedent(source))
    return path


def load(tmp_path, source, name="myplugin", environment=ENV):
    path = write(tmp_path / f"{name}.py", source)
    plugin = Plugin(str(tmp_path), path, environment)
    return plugin, plugin.load()


def test_classic_plugin_registers_callbacks_with_the_camel_case_api(tmp_path):
    plugin, loaded = load(
        tmp_path,
        """
        def registerCallbacks(reg):
            reg.setEmails(False)
            reg.logger.info("hello")
            assert reg.getLogger() is reg.logger
            reg.registerCallback('script', 'key-123456', first, {'Shotgun_Task_Change': None},
                                 args={'x': 1}, stopOnError=False)
            reg.registerCallback('script', 'key-123456', Second())

        def first(sg, logger, event, args):
            pass

        class Second(object):
            def __call__(self, sg, logger, event, args):
                pass
        """,
    )
    assert loaded and plugin.active
    assert plugin.emails is False
    assert plugin.logger.name == "plugin.myplugin"
    first, second = plugin.callbacks
    assert (first.name, second.name) == ("first", "Second")
    assert first.logger.name == "plugin.myplugin.first"
    assert first.args == {"x": 1} and first.stop_on_error is False
    assert second.stop_on_error is True
    assert plugin.event_types is None  # Second takes every event


def test_plugin_is_a_real_module_so_dataclasses_and_pickling_work(tmp_path):
    write(tmp_path / "_helper.py", "VALUE = 42\n")
    plugin, loaded = load(
        tmp_path,
        """
        import dataclasses
        from _helper import VALUE

        @dataclasses.dataclass
        class Shot:
            code: str
            frames: int = VALUE

        def registerCallbacks(reg):
            reg.registerCallback('script', 'key-123456', lambda *a: None)
        """,
    )
    assert loaded, plugin.inactive_reason
    module = plugin.module
    assert sys.modules[module.__name__] is module
    assert module.__name__ != "myplugin"
    shot = module.Shot("sh010")
    assert shot.frames == 42
    assert pickle.loads(pickle.dumps(shot)) == shot


@pytest.mark.parametrize(
    "source, reason",
    [
        ("def registerCallbacks(reg)\n    pass\n", "SyntaxError"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
        ("X = 1\n", "no registerCallbacks"),
        ("def registerCallbacks(reg):\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", "SystemExit"),
        (
            "def registerCallbacks(reg):\n    reg.registerCallback('s', 'k-1234', print, ['x'])\n",
            "matchEvents",
        ),
        ("def registerCallbacks(reg):\n    reg.registerCallback('s', 'k-1234', 5)\n", "callable"),
        (
            "def registerCallbacks(reg):\n"
            "    reg.registerCallback('s', 'k-1234', lambda *a: None, timeout=1e10)\n",
            "timeout must be a number of seconds > 0 and at most 86400",
        ),
        (
            "def registerCallbacks(reg):\n"
            "    reg.registerCallback('s', 'k-1234', lambda *a: None, retry={'max_delay': 1e10})\n",
            "max_delay must be a number of seconds > 0 and at most 3600",
        ),
    ],
)
def test_a_broken_plugin_is_inactive_with_the_reason(tmp_path, source, reason, caplog):
    plugin, loaded = load(tmp_path, source)
    assert not loaded and not plugin.active
    assert reason in plugin.inactive_reason
    assert plugin.callbacks == []
    assert any("Could not load plugin" in r.message for r in caplog.records)


def test_a_failed_reload_does_not_leave_the_broken_module_in_sys_modules(tmp_path):
    plugin, loaded = load(tmp_path, "def registerCallbacks(reg):\n    pass\n")
    assert loaded
    good = plugin.module
    write(plugin.path, "raise ImportError('half written')\n")
    assert not plugin.load()
    assert sys.modules[good.__name__] is good


def test_set_emails_forms(tmp_path):
    cases = {
        "reg.setEmails(True)": True,
        "reg.setEmails(False)": False,
        "reg.setEmails('a@x.com')": ("a@x.com",),
        "reg.setEmails('a@x.com', 'b@x.com')": ("a@x.com", "b@x.com"),
        "reg.setEmails(['a@x.com', 'b@x.com'])": ("a@x.com", "b@x.com"),
    }
    for index, (call, expected) in enumerate(cases.items()):
        plugin, loaded = load(
            tmp_path, f"def registerCallbacks(reg):\n    {call}\n", name=f"emails{index}"
        )
        assert loaded and plugin.emails == expected, call


def test_connection_is_made_lazily_so_an_unreachable_site_does_not_stop_loading(tmp_path):
    secrets = []
    environment = PluginEnvironment(server="http://127.0.0.1:9", add_secret=secrets.append)
    plugin, loaded = load(
        tmp_path,
        "def registerCallbacks(reg):\n    reg.registerCallback('s', 'secret-key-1', print)\n",
        environment=environment,
    )
    assert loaded
    callback = plugin.callbacks[0]
    assert callback._sg is None
    sg = callback.sg  # builds the client object; still no network traffic
    assert sg.config.script_name == "s" and callback.sg is sg
    assert secrets == ["secret-key-1"]


def test_callbacks_for_keeps_registration_order_and_filters_by_type_and_attribute(tmp_path):
    plugin, _ = load(
        tmp_path,
        """
        def registerCallbacks(reg):
            reg.registerCallback('s', 'k-1234', a, {'Shotgun_Task_Change': ['sg_status_list']})
            reg.registerCallback('s', 'k-1234', b)
            reg.registerCallback('s', 'k-1234', c, {'Shotgun_Shot_New': None})
            reg.registerCallback('s', 'k-1234', d, {'*': None})

        def a(*args): pass
        def b(*args): pass
        def c(*args): pass
        def d(*args): pass
        """,
    )
    status = {"event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list"}
    content = {"event_type": "Shotgun_Task_Change", "attribute_name": "content"}
    new_shot = {"event_type": "Shotgun_Shot_New", "attribute_name": None}
    assert [cb.name for cb in plugin.callbacks_for(status)] == ["a", "b", "d"]
    assert [cb.name for cb in plugin.callbacks_for(content)] == ["b", "d"]
    assert [cb.name for cb in plugin.callbacks_for(new_shot)] == ["b", "c", "d"]


PLUGIN_SOURCE = "def registerCallbacks(reg):\n    pass\n"


def test_scan_lists_files_defining_register_callbacks_and_skips_helpers_and_hidden_ones(
    tmp_path,
):
    for name in ["b.py", "a.py", "_private.py", ".hidden.py"]:
        (tmp_path / name).write_text(PLUGIN_SOURCE)
    for name in ["_helper.py", "studio_settings.py", "notes.txt"]:
        (tmp_path / name).write_text("SETTING = 1\n")
    (tmp_path / "package.py").mkdir()
    scan = scan_folder(tmp_path)
    assert scan.error is None
    assert list(scan.files) == ["_private", "a", "b"]


@pytest.mark.parametrize(
    "source",
    [
        "def registerCallbacks(reg): pass",
        "async def registerCallbacks(reg): pass",
        "from studio_common import registerCallbacks",
        "import studio_common as registerCallbacks",
        "registerCallbacks = lambda reg: None",
        "try:\n    from a import registerCallbacks\nexcept ImportError:\n"
        "    def registerCallbacks(reg): pass",
        "if True:\n    def registerCallbacks(reg): pass",
        "def registerCallbacks(:",  # cannot be parsed: a plugin, so its load error is said
    ],
)
def test_a_file_binding_register_callbacks_at_its_top_level_is_a_plugin(tmp_path, source):
    (tmp_path / "p.py").write_text(source + "\n")
    assert list(scan_folder(tmp_path).files) == ["p"]


@pytest.mark.parametrize(
    "source",
    [
        "SETTING = 1",
        "def setup():\n    def registerCallbacks(reg): pass",
        "class Helper:\n    def registerCallbacks(self, reg): pass",
        "print('registerCallbacks')",
    ],
)
def test_a_file_without_a_top_level_register_callbacks_is_a_helper(tmp_path, source):
    (tmp_path / "p.py").write_text(source + "\n")
    assert scan_folder(tmp_path).files == {}


def test_a_helper_module_is_said_once_at_debug_not_as_an_error(tmp_path, caplog):
    (tmp_path / "helpers.py").write_text("SETTING = 1\n")
    with caplog.at_level("DEBUG", logger="engine.plugins"):
        for _ in range(3):
            scan_folder(tmp_path)
    said = [r for r in caplog.records if "helpers.py defines no registerCallbacks" in r.message]
    assert [r.levelname for r in said] == ["DEBUG"]
    (tmp_path / "helpers.py").write_text(PLUGIN_SOURCE)  # it became a plugin
    assert list(scan_folder(tmp_path).files) == ["helpers"]


def test_scan_refuses_files_and_folders_other_users_can_write(tmp_path):
    (tmp_path / "safe.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "open.py").write_text(PLUGIN_SOURCE)
    os.chmod(tmp_path / "open.py", 0o666)
    scan = scan_folder(tmp_path)
    assert list(scan.files) == ["safe"]
    assert "writable by every user" in scan.refused["open"]
    os.chmod(tmp_path, 0o777)
    try:
        assert "writable by every user" in scan_folder(tmp_path).error
    finally:
        os.chmod(tmp_path, 0o755)


def test_missing_folder_is_an_error_not_an_exception(tmp_path):
    scan = scan_folder(tmp_path / "nope")
    assert scan.files == {} and "cannot read plugin folder" in scan.error


def test_signature_changes_when_a_file_is_restored_with_an_older_time(tmp_path):
    path = write(tmp_path / "p.py", "A = 1\n")
    before = file_signature(path)
    path.write_text("A = 2\n")  # same size
    os.utime(path, ns=(before[0] - 10**9, before[0] - 10**9))
    assert file_signature(path) != before


def test_a_helper_module_other_users_can_write_refuses_the_folder(tmp_path):
    (tmp_path / "plugin.py").write_text(PLUGIN_SOURCE)
    helper = tmp_path / "_helpers.py"
    helper.write_text("")
    os.chmod(helper, 0o664)
    scan = scan_folder(tmp_path)
    assert scan.files == {} and "helper module" in scan.error and "_helpers.py" in scan.error
    os.chmod(helper, 0o644)
    assert list(scan_folder(tmp_path).files) == ["plugin"]


def test_a_symlinked_helper_module_is_judged_by_what_it_points_to(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "plugin.py").write_text(PLUGIN_SOURCE)
    shared = tmp_path / "studio_common.py"
    shared.write_text("")
    os.chmod(shared, 0o644)
    (folder / "_common.py").symlink_to(shared)
    assert list(scan_folder(folder).files) == ["plugin"]
    os.chmod(shared, 0o666)
    assert "_common.py is writable by every user" in scan_folder(folder).error


@pytest.mark.parametrize("init", [True, False], ids=["package", "namespace-package"])
def test_a_module_inside_a_package_other_users_can_write_refuses_the_folder(tmp_path, init):
    (tmp_path / "plugin.py").write_text(PLUGIN_SOURCE)
    package = tmp_path / "studio_lib" / "io"
    package.mkdir(parents=True)
    if init:
        (tmp_path / "studio_lib" / "__init__.py").write_text("")
    module = package / "core.py"
    module.write_text("")
    os.chmod(module, 0o666)
    scan = scan_folder(tmp_path)
    assert scan.files == {} and f"module {module} is writable by every user" in scan.error
    os.chmod(module, 0o644)
    assert list(scan_folder(tmp_path).files) == ["plugin"]
    os.chmod(package, 0o777)
    assert f"package {package} is writable by every user" in scan_folder(tmp_path).error


def test_folders_without_python_files_are_not_judged(tmp_path):
    (tmp_path / "plugin.py").write_text(PLUGIN_SOURCE)
    renders = tmp_path / "renders"
    renders.mkdir()
    os.chmod(renders, 0o777)  # a shared scratch folder: nothing importable in it
    assert list(scan_folder(tmp_path).files) == ["plugin"]
