"""``python -m haproxyctl``."""

import sys

from haproxyctl.cli.main import main

sys.exit(main())
