"""``shotgunEventDaemon demo``: the daemon, the example plugins and a local site, in one go.

It starts a site emulator with artists at work on a demo project, writes a config for it
into ``./demo-run/``, and runs the daemon in the foreground with the example plugins, so
events can be seen flowing in the terminal without a real site. Everything it writes stays
in ``demo-run/`` (config, state, logs) for a look afterwards. Each run has a new site, so
the state of the run before (positions on another site) is cleared at the start.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from .config import load_config
from .emulator import Emulator

ENGINE_SCRIPT = "shotgunEventDaemon"
EXAMPLE_SCRIPT = "shotgunEventDaemon_examples"


def find_example_plugins(explicit: Optional[str]) -> Path:
    """The plugin folder: the one given, else examplePlugins in this folder or the repo."""
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd() / "examplePlugins"
    if here.is_dir():
        return here.resolve()
    repository = Path(__file__).resolve().parents[2] / "examplePlugins"
    return repository


def write_demo_config(folder: Path, site_url: str, engine_key: str, plugins: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shotgunEventDaemon.conf"
    path.write_text(
        f"""# Written by `shotgunEventDaemon demo` for a local site emulator.
[daemon]
pidFile: shotgunEventDaemon.pid
eventIdFile: shotgunEventDaemon.id
logMode: 1
logPath: logs
logFile: shotgunEventDaemon
logging: 20
timing_log: on
fetch_interval: 0.5
gap_timeout: 30

[shotgun]
server: {site_url}
name: {ENGINE_SCRIPT}
key: {engine_key}
use_session_uuid: True

[plugins]
paths: {plugins}
"""
    )
    os.chmod(path, 0o600)
    return path


def clear_previous_state(folder: Path) -> None:
    """Remove the saved positions of an earlier demo: they belong to a site that is gone,
    and positions ahead of the new site would hold every plugin back until it passed them."""
    for path in folder.glob("shotgunEventDaemon.id*"):
        if path.is_file() and path.suffix not in (".lock", ".control"):
            path.unlink()


def running_demo(folder: Path) -> Optional[int]:
    """The pid of a demo still running in ``folder`` (its state must not be cleared)."""
    try:
        pid = int((folder / "shotgunEventDaemon.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def run_demo(seconds: float = 60.0, rate: float = 2.0, plugins: Optional[str] = None) -> int:
    """Run the demo for ``seconds`` (0: until Ctrl-C); returns the exit code."""
    from .service import run_foreground

    plugin_folder = find_example_plugins(plugins)
    if not plugin_folder.is_dir():
        print(f"demo: no plugin folder at {plugin_folder} (use --plugins)", file=sys.stderr)
        return 2
    folder = Path("demo-run").resolve()
    other = running_demo(folder)
    if other is not None:
        print(
            f"demo: a demo already runs in {folder} (pid {other}); stop it first.", file=sys.stderr
        )
        return 1
    engine_key, example_key = secrets.token_hex(16), secrets.token_hex(16)
    os.environ["SGED_EXAMPLE_SCRIPT"] = EXAMPLE_SCRIPT
    os.environ["SGED_EXAMPLE_KEY"] = example_key
    site = Emulator(scripts={ENGINE_SCRIPT: engine_key, EXAMPLE_SCRIPT: example_key}).start()
    try:
        site.start_generator(rate, seed=7)
        clear_previous_state(folder)
        config = load_config(write_demo_config(folder, site.url, engine_key, plugin_folder))
        print(
            f"demo: site emulator at {site.url}, artists at work (~{rate:g} events/s); "
            f"plugins from {plugin_folder}; files in {config.path.parent}.\n"
            f"demo: {'Ctrl-C to stop' if not seconds else f'stopping after {seconds:g} s'}.",
            file=sys.stderr,
            flush=True,
        )
        if seconds:
            timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.start()
        return run_foreground(config)
    finally:
        site.stop_generator()
        site.stop()
