"""``python -m shared.config --write-schema`` / ``--check FILE...``."""

import sys

from shared.config.schema import main

sys.exit(main())
