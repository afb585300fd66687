"""``python -m bridge`` is the ``xueji`` command."""

import sys

from bridge.entrypoints.cli import main

sys.exit(main())
