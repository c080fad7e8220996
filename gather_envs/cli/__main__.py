"""``python -m gather_envs.cli``."""

import sys

from gather_envs.cli import main

if __name__ == "__main__":
    sys.exit(main())
