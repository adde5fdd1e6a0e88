"""``python -m emoadapt``: the same as the ``emoadapt`` command."""

import sys

from .cli import main

sys.exit(main())
