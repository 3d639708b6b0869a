"""Script credentials shared by the example plugins (a helper module, not a plugin).

Files starting with ``_`` are not loaded as plugins, but plugins can import them because
their folder is importable. Keeping the key in the environment rather than in each plugin
file keeps it out of version control. Create the script (ApiUser) on your site, then set:

    export SGED_EXAMPLE_SCRIPT=exampleScript
    export SGED_EXAMPLE_KEY=<the script's application key>
"""

import os

SCRIPT_NAME = os.environ.get("SGED_EXAMPLE_SCRIPT", "shotgunEventDaemon_examples")
SCRIPT_KEY = os.environ.get("SGED_EXAMPLE_KEY", "set-SGED_EXAMPLE_KEY-in-the-environment")
