"""python -m ccdcal: the ccdcal command (ccdcal.cli)."""

import sys

from .cli import main

sys.exit(main())
