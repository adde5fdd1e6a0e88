"""``python -m emoadapt.cli``: the same as the ``emoadapt`` command."""

import sys

from . import main

sys.exit(main())
