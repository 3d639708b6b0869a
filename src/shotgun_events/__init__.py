"""shotgun_events: the event daemon for Flow Production Tracking (formerly ShotGrid).

A drop-in successor to the classic ``shotgunEvents`` daemon: it runs the same plugins,
reads the same config and state files, and adds per-plugin workers, exact gap handling,
a durable journal, metrics and a local site emulator.
"""

__version__ = "1.0.0.dev0"
