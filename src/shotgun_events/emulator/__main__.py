"""`python -m shotgun_events.emulator`: the same as `shotgunEventDaemon emulator`."""

import sys

from .command import main

sys.exit(main(sys.argv[1:]))
