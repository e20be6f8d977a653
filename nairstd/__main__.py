"""`python -m nairstd ...`: see nairstd/cli.py."""

import sys

from nairstd.cli import main

if __name__ == "__main__":
    sys.exit(main())
