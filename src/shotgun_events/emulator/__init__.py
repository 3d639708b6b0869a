"""The local Flow Production Tracking site emulator (see docs/emulator.md).

``Emulator`` runs a site the unmodified `shotgun_api3` client talks to; ``RemoteEmulator``
drives one running in another process. Nothing here depends on the daemon.
"""

from .control import RemoteEmulator
from .emulator import Emulator

__all__ = ["Emulator", "RemoteEmulator"]
