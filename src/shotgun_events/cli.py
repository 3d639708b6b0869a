"""The ``shotgunEventDaemon`` command: argument parsing, sub-commands and exit codes.

No engine logic lives here. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad
config (with a message naming the file, section and option, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__
from .config import ConfigError, find_config_file, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


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

    demo = commands.add_parser(
        "demo", help="run the daemon with the example plugins against a local site emulator"
    )
    demo.add_argument("--seconds", type=float, default=60.0, help="stop after this long (0: never)")
    demo.add_argument("--rate", type=float, default=2.0, help="generated site events per second")
    demo.add_argument("--plugins", help="plugin folder (default: the repository's examplePlugins)")

    commands.add_parser(
        "emulator",
        help="run the local site emulator (see 'shotgunEventDaemon emulator --help')",
        add_help=False,
    )
    return parser


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SGED_CONFIG, then next to the program, then /etc)",
    )


def main(argv: Optional[List[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from .emulator.command import main as emulator_main

        return emulator_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(seconds=args.seconds, rate=args.rate, plugins=args.plugins)
    try:
        config = load_config(find_config_file(args.config))
    except ConfigError as error:
        print(f"shotgunEventDaemon: {error}", file=sys.stderr)
        return EXIT_USAGE
    from .service import run_foreground

    return run_foreground(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
