"""The ``shotgunEventDaemon`` command: argument parsing, sub-commands and exit codes.

No engine logic lives here. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad
config (with a message naming the file, section and option, never a traceback); ``start``,
``stop``, ``restart``, ``reload`` and ``status`` follow the LSB init-script codes (status: 0
running, 1 dead with a pid file, 3 not running, 4 unknown, a bad config included). The
recovery commands ``retry``, ``skip`` and ``reset`` exit 0 when done, 1 when refused, 3 when
the daemon is not running, 4 without permission to reach it. ``check-config`` exits 0 when
the config (and with ``--plugins`` every plugin) is good, 1 when a plugin would not load, 2
for a bad config.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from . import __version__
from .config import Config, ConfigError, find_config_file, load_config
from .logs import learn_secrets, mask_terminal
from .slots import MAX_EVENT_ID

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
STATUS_UNKNOWN = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shotgunEventDaemon",
        description="Event daemon for Flow Production Tracking (ShotGrid).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    foreground = commands.add_parser(
        "foreground", help="run the engine in this terminal (debugging, containers, systemd)"
    )
    _add_config_option(foreground)
    start = commands.add_parser("start", help="start the daemon in the background")
    _add_config_option(start)
    for name, text in (
        ("stop", "stop the daemon: SIGTERM, wait for the events in hand, then SIGKILL"),
        ("restart", "stop the daemon if it runs, then start it"),
    ):
        command = commands.add_parser(name, help=text)
        _add_config_option(command)
        command.add_argument(
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="how long to wait before SIGKILL (default: [daemon] stop_timeout + 10)",
        )
    reload = commands.add_parser("reload", help="make the daemon reopen its logs, rescan plugins")
    _add_config_option(reload)
    status = commands.add_parser("status", help="is the daemon running, and how its plugins are")
    _add_config_option(status)
    status.add_argument("--json", action="store_true", help="print the status file as JSON")
    _add_recovery_parsers(commands)
    _add_replay_parser(commands)
    _add_check_config_parser(commands)

    demo = commands.add_parser(
        "demo", help="run the daemon with the example plugins against a local site emulator"
    )
    demo.add_argument(
        "--seconds", type=_seconds, default=60.0, help="stop after this long (0: never)"
    )
    demo.add_argument("--rate", type=_rate, default=2.0, help="generated site events per second")
    demo.add_argument("--plugins", help="plugin folder (default: the repository's examplePlugins)")

    commands.add_parser(
        "emulator",
        help="run the local site emulator (see 'shotgunEventDaemon emulator --help')",
        add_help=False,
    )
    return parser


def _add_recovery_parsers(commands: Any) -> None:
    """retry, skip, reset: sent to the running daemon (see control.py, docs/service.md)."""
    for name, text in (
        ("retry", "run a plugin stopped by an error again, from the failed event"),
        ("skip", "move a stopped plugin past the event it failed on, then run it again"),
        ("reset", "move a plugin's position: events after ID (or only new ones) come next"),
    ):
        command = commands.add_parser(name, help=text)
        _add_config_option(command)
        command.add_argument("plugin", metavar="PLUGIN", help="plugin name, or FOLDER/NAME")
        if name == "reset":
            target = command.add_mutually_exclusive_group(required=True)
            target.add_argument(
                "--to", type=_event_id, metavar="ID", help="deliver the events after ID again"
            )
            target.add_argument(
                "--to-latest", action="store_true", help="skip to the site's newest event"
            )


def _add_replay_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="run chosen events through one plugin again (saved positions stay as they are)",
    )
    _add_config_option(replay)
    replay.add_argument("--plugin", required=True, metavar="NAME", help="the plugin's file name")
    replay.add_argument(
        "--from", dest="first", required=True, type=_event_id, metavar="ID", help="first event id"
    )
    replay.add_argument(
        "--to", dest="last", type=_event_id, metavar="ID", help="last event id (default: newest)"
    )
    replay.add_argument(
        "--folder", metavar="PATH", help="the plugin folder, when several hold a plugin NAME"
    )


def _add_check_config_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check-config",
        help="validate the config offline; with --plugins, load every plugin as the daemon would",
    )
    _add_config_option(check)
    check.add_argument(
        "--plugins",
        action="store_true",
        help="import every plugin and run its registerCallbacks (no site is contacted)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")


#: The longest wait a command line takes (``stop --timeout``, ``demo --seconds``): as the
#: config's durations, a bounded number, so a typo never turns into a wait past what the
#: clock functions accept (a crash) or an endless one.
MOST_SECONDS = 86400.0
#: The fastest event rate ``demo --rate`` generates.
MOST_RATE = 1000.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= MOST_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be from 0 to {MOST_SECONDS:g} seconds (1 day): {text!r}"
        )
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of events per second: {text!r}") from None
    if not 0 < value <= MOST_RATE:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MOST_RATE:g} events per second: {text!r}"
        )
    return value


def _event_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"event ids start at 1: {text!r}")
    if value > MAX_EVENT_ID:
        raise argparse.ArgumentTypeError(f"event ids end at {MAX_EVENT_ID}: {text!r}")
    return value


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SGED_CONFIG, then next to the program, then /etc)",
    )


def main(argv: Optional[List[str]] = None) -> int:
    # Everything a command prints, Python's own tracebacks included, is masked on its way
    # to the terminal (logs.py); the config's secrets are known as soon as it is read.
    mask_terminal()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from .emulator.command import main as emulator_main

        return emulator_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(seconds=args.seconds, rate=args.rate, plugins=args.plugins)
    if args.command == "check-config":  # reports a bad config itself (also as JSON)
        from .preflight import run_check_config

        return run_check_config(args.config, plugins=args.plugins, as_json=args.json)
    try:
        config = load_config(find_config_file(args.config))
    except ConfigError as error:
        print(f"shotgunEventDaemon: {error}", file=sys.stderr)
        # LSB: `status` exit 2 would mean "dead with a lock file"; 4 is "status unknown".
        return STATUS_UNKNOWN if args.command == "status" else EXIT_USAGE
    learn_secrets(config.secrets())
    return run_command(args, config)


def run_command(args: argparse.Namespace, config: Config) -> int:
    """Run one of the commands that need the config; service and replay do the work."""
    from . import service

    if args.command == "foreground":
        return service.run_foreground(config)
    if args.command == "start":
        return service.start_daemon(config)
    if args.command == "stop":
        return service.stop_daemon(config, args.timeout)
    if args.command == "restart":
        return service.restart_daemon(config, args.timeout)
    if args.command == "reload":
        return service.reload_daemon(config)
    if args.command == "status":
        return service.show_status(config, as_json=args.json)
    if args.command in ("retry", "skip", "reset"):
        from .control import run_recovery_command

        return run_recovery_command(
            config,
            args.command,
            args.plugin,
            to=getattr(args, "to", None),
            latest=getattr(args, "to_latest", False),
        )
    if args.command == "replay":
        from .replay import run_replay

        return run_replay(config, args.plugin, args.first, args.last, folder=args.folder)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
