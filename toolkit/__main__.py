"""Command line: `python -m toolkit plan PROBLEM [...]`."""

import sys

from ._cli import main


if __name__ == "__main__":
    sys.exit(main())
