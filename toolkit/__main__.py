"""Command line: `python -m toolkit plan PROBLEM [...]`."""

import os
import sys

from ._cli import main


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["plan"]:
        # `plan` has written its files and closed them: skip the interpreter's teardown
        # of JAX's modules, half a second of a command that takes three.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
