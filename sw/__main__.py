"""``python -m sw``: see :mod:`sw.cli`."""

import sys

from sw.cli import main


sys.exit(main())
