"""``python -m shotgun_events`` is the ``shotgunEventDaemon`` command."""

import sys

from .cli import main

sys.exit(main())
