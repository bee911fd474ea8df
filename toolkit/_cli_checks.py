"""What every subcommand of `python -m toolkit` shares: argparse types that check a
number as it is parsed, and the wrapper that turns an input error into one line
naming the option and exit status 2 (as argparse does), unless `--debug`."""

import argparse
import functools
import math
import os
import sys


def _checked(convert, test, what: str):
    """An argparse `type` that converts a value and checks that it is `what`."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _finite(x: float) -> bool:
    return math.isfinite(x)


POSITIVE_INT = _checked(int, lambda v: v >= 1, "a positive integer")
COUNT = _checked(int, lambda v: v >= 0, "an integer >= 0")
POSITIVE = _checked(float, lambda v: _finite(v) and v > 0, "a positive number")
NON_NEGATIVE = _checked(float, lambda v: _finite(v) and v >= 0, "a number >= 0")
FRACTION = _checked(float, lambda v: 0 <= v <= 1, "a fraction in [0, 1]")
PART = _checked(float, lambda v: 0 < v < 1, "a fraction strictly between 0 and 1")
SPARSITY = _checked(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
MOMENTUM = _checked(float, lambda v: 0 <= v < 1, "a momentum in [0, 1)")
RATIO = _checked(float, lambda v: v == 0 or (_finite(v) and v > 1), "0 or a ratio > 1")


class InputError(Exception):
    """A bad input found by the command line's own checks; its message names the
    option."""


def _ours(e: BaseException) -> bool:
    """Whether `e` was raised by toolkit's own checks (the innermost frame of its
    traceback is toolkit's), rather than inside JAX or another library."""
    if any("JAX has removed its internal frames" in n for n in getattr(e, "__notes__", ())):
        return False
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    package = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package + os.sep)


def reporting(run):
    """Run a subcommand, turning an input error into one line and exit status 2 (1 for
    a diverged run), unless `--debug` asks for the traceback."""

    @functools.wraps(run)
    def command(ns: argparse.Namespace) -> int:
        parser = getattr(ns, "parser", None)
        if parser is None or getattr(ns, "debug", False):
            return run(ns)
        try:
            return run(ns)
        except InputError as e:
            parser.error(str(e))
        except FloatingPointError as e:
            if not _ours(e):
                raise
            print(f"{parser.prog}: error: {e}", file=sys.stderr)
            return 1
        except (ValueError, OSError) as e:
            if not _ours(e):
                raise
            option = getattr(e, "option", None)
            parser.error(f"argument {option}: {e}" if option else str(e))

    return command


def check_writable(option: str, path: str) -> None:
    """Raise `InputError` naming `option` unless a file can be written at `path`:
    checked before the work whose result it keeps."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"argument {option}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"argument {option}: {path!r} is a folder, not a file")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InputError(f"argument {option}: {path!r} cannot be written")


def check_outputs(ns: argparse.Namespace) -> None:
    """`check_writable` on each file a command will write (`--json`, `--plot`,
    `--checkpoint`, `--plan-plot`, those it has and was given), before its work: a bad
    path loses none of it."""
    for option in ("--json", "--plot", "--checkpoint", "--plan-plot"):
        path = getattr(ns, option[2:].replace("-", "_"), None)
        if path:
            check_writable(option, path)
