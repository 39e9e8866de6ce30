"""``python -m audiomcq``: the same entry point as the ``audiomcq`` command."""

import sys

from audiomcq.cli import main

sys.exit(main())
