"""``python -m training``: the ``cellcount-train`` command."""

import sys

from .cli import main

sys.exit(main())
