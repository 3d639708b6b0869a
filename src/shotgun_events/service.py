"""Running the engine as a process: logging set-up, signals, and (later) daemonizing.

This module turns a validated Config into a running Engine and back into an exit code. It
must never run before the config is validated, and never let a signal interrupt an event in
the middle: signals only ask the engine to stop or to rescan.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Optional

from .config import Config
from .engine import Engine
from .logs import LogSetup
from .plugins import PluginEnvironment

log = logging.getLogger("engine")

#: Files the daemon creates (state, status, logs) are private to its user and group.
DAEMON_UMASK = 0o027


def build_logs(config: Config, *, foreground: bool) -> LogSetup:
    daemon = config.daemon
    logs = LogSetup(
        log_mode=daemon.log_mode,
        log_folder=daemon.log_path or config.path.parent,
        log_file=daemon.log_file,
        level=daemon.log_level,
        timing=daemon.timing_log,
        foreground=foreground,
        secrets=config.secrets(),
    )
    logs.install()
    return logs


def build_engine(config: Config, logs: LogSetup) -> Engine:
    environment = PluginEnvironment(
        server=config.site.server,
        proxy_server=config.site.proxy_server,
        use_session_uuid=config.site.use_session_uuid,
        site_timeout=config.daemon.site_timeout,
        add_secret=logs.redactor.add,
        on_plugin_logger=logs.plugin_logger,
        log_level=config.daemon.log_level,
    )
    return Engine(config, environment=environment, timing_log=logs.timing_log)


def run_foreground(config: Config) -> int:
    """Run the engine in this process until SIGTERM/SIGINT; returns the exit code."""
    os.umask(DAEMON_UMASK)
    logs = build_logs(config, foreground=True)
    for warning in config.warnings:
        log.warning("%s", warning)
    engine = build_engine(config, logs)
    install_signal_handlers(engine, logs)
    log.info("Starting in the foreground with config %s (pid %d).", config.path, os.getpid())
    try:
        return engine.run()
    finally:
        logs.close()


def install_signal_handlers(engine: Engine, logs: LogSetup) -> None:
    """SIGTERM/SIGINT stop gracefully; SIGHUP reopens log files and rescans plugins."""

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        log.info(
            "Received %s: finishing the events in hand, then stopping.", signal.Signals(signum).name
        )
        engine.stop()

    def hangup(signum: int, frame: Optional[FrameType]) -> None:
        logs.reopen()
        log.info("Received SIGHUP: log files reopened, plugin folders rescanned.")
        engine.rescan()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hangup)
