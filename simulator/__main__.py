"""`python -m simulator`: serve both registries until SIGTERM/SIGINT."""

import sys

from simulator.app import main

sys.exit(main())
