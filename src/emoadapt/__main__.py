"""``python -m emoadapt``: the same as the ``emoadapt`` command."""

import sys

from emoadapt.cli import main

sys.exit(main())
