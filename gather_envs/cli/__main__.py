"""``python -m gather_envs.cli``."""

import sys

from gather_envs.cli import main

sys.exit(main())
