"""`shotgunEventDaemon emulator ...`: run a local site in the foreground until SIGTERM/SIGINT.

The first line on stdout is the site URL (flushed at once), so a test or a script that
starts this as a process reads one line and knows where to connect. Port 0 picks a free
port. `cli.py` routes the `emulator` sub-command here; `python -m shotgun_events.emulator`
runs it directly. This module must never contain site behaviour: it parses arguments and
waits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Dict, List, Optional, Tuple

from .emulator import Emulator

DEFAULT_SCRIPT = ("emulator", "emulator")


def _script(value: str) -> Tuple[str, str]:
    name, sep, key = value.partition(":")
    if not sep or not name or not key:
        raise argparse.ArgumentTypeError(f"expected NAME:KEY, got {value!r}")
    return name, key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shotgunEventDaemon emulator",
        description=(
            "Run a local Flow Production Tracking site emulator for the unmodified "
            "shotgun_api3 client. Prints the site URL as the first line of stdout."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--script",
        action="append",
        type=_script,
        default=[],
        metavar="NAME:KEY",
        help="a script (ApiUser) allowed to connect; repeatable (default: emulator:emulator)",
    )
    parser.add_argument(
        "--data", metavar="FILE", help="keep the site in this SQLite file across restarts"
    )
    parser.add_argument(
        "--schema",
        action="append",
        default=[],
        metavar="FILE",
        help="extend the schema from a JSON file",
    )
    parser.add_argument(
        "--generate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="produce realistic artist activity at about RATE events per second",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for --generate")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run until SIGTERM or SIGINT; returns 0 on a clean stop, 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    scripts: Dict[str, str] = dict(args.script)
    try:
        emulator = Emulator(
            scripts=scripts,
            host=args.host,
            port=args.port,
            data_path=args.data,
            schema_path=args.schema,
        )
        if not emulator.site.scripts():
            emulator.add_script(*DEFAULT_SCRIPT)
        emulator.start()
    except (OSError, ValueError) as error:
        print(f"emulator: cannot start: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(emulator.url, flush=True)
    print(
        "emulator: scripts: {}".format(", ".join(sorted(emulator.site.scripts()))),
        file=sys.stderr,
        flush=True,
    )
    try:
        if args.generate > 0:
            emulator.start_generator(args.generate, seed=args.seed)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0
