"""``python -m bridge`` is the ``xueji`` command."""

import sys

from bridge.cli import main

sys.exit(main())
