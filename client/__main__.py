"""``python -m client``: the ``he-scoring`` command line (see client.cli)."""

import sys

from .cli import main

sys.exit(main())
