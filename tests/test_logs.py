"""Where log lines go: logMode 0 and 1, the timing log, rotation, secret masking."""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import re

import pytest

from harness import PLUGIN_SCRIPT, recorder_plugin
from shotgun_events.logs import (
    LogSetup,
    MaskedTerminal,
    PrivateRotatingFileHandler,
    Redactor,
    learn_secrets,
)
from shotgun_events.service import build_logs
from test_config import load_with
from test_engine import new_events, started


def test_log_mode_0_puts_everything_in_the_main_file(site, daemon):
    daemon.write_config(logMode=0)
    started(daemon, ("alpha", recorder_plugin(body="logger.info('alpha saw %s', event['id'])")))
    ids = new_events(site, 2)
    daemon.wait_seen("alpha", ids)
    daemon.stop()
    main = (daemon.log_dir / "shotgunEventDaemon").read_text()
    assert f"alpha saw {ids[-1]}" in main and "The site's newest event" in main
    assert not (daemon.log_dir / "plugin.alpha").exists()


def test_log_mode_1_gives_each_plugin_its_own_file(site, daemon):
    started(daemon, ("alpha", recorder_plugin(body="logger.info('alpha saw %s', event['id'])")))
    ids = new_events(site, 2)
    daemon.wait_seen("alpha", ids)
    daemon.stop()
    assert f"alpha saw {ids[-1]}" in (daemon.log_dir / "plugin.alpha").read_text()
    assert "alpha saw" not in (daemon.log_dir / "shotgunEventDaemon").read_text()


def test_timing_log_has_one_line_per_callback_run_whatever_the_level(site, daemon):
    daemon.write_config(timing_log="on", logging=40)  # ERROR: the timing log is independent
    failing = recorder_plugin(
        body="if event['attribute_name'] == 'bad': raise ValueError('x')", stop_on_error=False
    )
    daemon.add_plugin("alpha", recorder_plugin())
    daemon.add_plugin("beta", failing)
    daemon.start()  # at level ERROR the start is not logged: wait for the first checkpoint
    daemon.wait_for(lambda: daemon.state_file.exists(), 20, "the first checkpoint")
    ids = new_events(site, 3)
    bad = new_events(site, 1, attribute_name="bad")
    daemon.wait_seen("alpha", ids + bad)
    daemon.wait_seen("beta", ids)
    daemon.stop()
    lines = (daemon.log_dir / "shotgunEventDaemon.timing").read_text().splitlines()
    pattern = re.compile(
        r"event=(\d+) callback=(\w+\.\w+) start=\S+ duration=[\d.]+ delay=[-\d.]+ error=(\S+)$"
    )
    runs = [pattern.search(line).groups() for line in lines]
    assert sorted((int(e), c) for e, c, _ in runs) == sorted(
        [(i, "alpha.callback") for i in ids + bad] + [(i, "beta.callback") for i in ids + bad]
    )
    assert (str(bad[0]), "beta.callback", "ValueError") in runs


def test_log_files_rotate_at_midnight_keeping_ten(tmp_path):
    setup = LogSetup(
        log_mode=1, log_folder=tmp_path, log_file="main", level=20, timing=True, foreground=False
    )
    setup.install()
    try:
        setup.plugin_logger("alpha", logging.getLogger("plugin.alpha"))
        handlers = [
            h for h in setup._handlers if isinstance(h, logging.handlers.BaseRotatingHandler)
        ]
        assert len(handlers) == 3  # main, timing, plugin.alpha
        assert all((h.when, h.backupCount) == ("MIDNIGHT", 10) for h in handlers)
    finally:
        setup.close()
        logging.getLogger("plugin.alpha").handlers.clear()


@pytest.mark.parametrize("rotate, files_after", [(True, 2), (False, 1)])
def test_log_rotation_external_leaves_the_files_to_logrotate(tmp_path, rotate, files_after):
    setup = LogSetup(
        log_mode=0,
        log_folder=tmp_path,
        log_file="main",
        level=20,
        timing=False,
        foreground=False,
        rotate=rotate,
    )
    setup.install()
    try:
        logging.getLogger("engine").info("before midnight")
        (handler,) = setup._handlers
        handler.rolloverAt = 0  # midnight has passed
        logging.getLogger("engine").info("after midnight")
    finally:
        setup.close()
    assert len(list(tmp_path.iterdir())) == files_after
    assert "after midnight" in (tmp_path / "main").read_text()
    assert ("before midnight" in (tmp_path / "main").read_text()) is not rotate


def test_the_daemon_builds_its_logs_with_the_configured_rotation(tmp_path):
    config = load_with(tmp_path, "daemon", {"log_rotation": "external", "logMode": "0"})
    logs = build_logs(config, foreground=False)
    try:
        assert logs._handlers
        assert not any(handler.rolls_over for handler in logs._handlers)
    finally:
        logs.close()
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)


def test_secrets_are_masked_in_every_line_tracebacks_included():
    redactor = Redactor([PLUGIN_SCRIPT[1], "abc"])  # too short to mask: ordinary words stay
    text = f"key={PLUGIN_SCRIPT[1]} in Traceback: ...{PLUGIN_SCRIPT[1]}... abc"
    assert redactor(text) == "key=******** in Traceback: ...********... abc"


def test_the_terminal_masks_every_write_and_survives_a_closed_stream():
    """What reaches the terminal without a log handler (prints, Python's tracebacks) is
    masked; a closed terminal loses the text, never raises, and close() closes nothing."""
    underlying = io.StringIO()
    terminal = MaskedTerminal(underlying)
    learn_secrets([PLUGIN_SCRIPT[1]])
    print(f"the key is {PLUGIN_SCRIPT[1]}", file=terminal)
    terminal.close()  # a plugin "closing sys.stderr"
    print("still here", file=terminal)
    assert underlying.getvalue() == "the key is ********\nstill here\n"
    underlying.close()
    print("lost, quietly", file=terminal)
    terminal.flush()


def test_a_handler_that_cannot_write_never_raises_into_the_caller(tmp_path, capsys):
    """logging's own handleError raised ValueError when sys.stderr was closed: the caller's
    thread (the service thread, another plugin's worker) died."""
    handler = PrivateRotatingFileHandler(str(tmp_path / "main"), when="midnight")
    logger = logging.getLogger("test.never-raises")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        handler.stream.close()
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            stderr.close()
            logger.error("a line that cannot be written")  # must not raise
        logger.error("nor when it can say so")
    finally:
        logger.removeHandler(handler)
    assert "logging error in PrivateRotatingFileHandler" in capsys.readouterr().err
