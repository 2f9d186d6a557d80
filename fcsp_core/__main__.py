"""`python -m fcsp_core` is `fcsp`."""

import sys

from fcsp_core.cli import main

sys.exit(main())
