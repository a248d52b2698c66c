"""``python -m udfkit``: the ``udfkit`` command."""

import sys

from .cli import main

sys.exit(main())
