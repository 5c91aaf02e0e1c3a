"""The one exception type of the build library."""
from __future__ import annotations

import argparse
from typing import Callable, NoReturn, Optional, Sequence


class CoexError(Exception):
    """A user-facing failure: `str(err)` is the complete message (what is wrong, and how to fix
    it). Command lines print it and exit 1; nothing half-written is left behind by the raiser."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


# the third-party modules the build library imports, and the distribution that provides each
REQUIRED_DISTRIBUTIONS = {"rattler": "py-rattler", "zstandard": "zstandard", "yaml": "PyYAML",
                          "tomli": "tomli"}


def missing_dependency_message(module: str) -> str:
    """What to do when the build library cannot import `module` (e.g. py-rattler is missing)."""
    import sys

    dist = REQUIRED_DISTRIBUTIONS[module]
    return (
        "the Python package {dist} (module `{module}`) is not installed for {python}, which runs "
        "coex's build library. Install coex with its dependencies (`pip install "
        "pants-backend-coex` declares them), or add {dist} to that interpreter: `{python} -m pip "
        "install {dist}`.".format(dist=dist, module=module, python=sys.executable))


def run_cli(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parse argv with `parser` and run the chosen `func`: a CoexError becomes one
    `coex: error: ...` paragraph on stderr and exit status 1 (Ctrl-C: 130)."""
    import sys

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except CoexError as e:
        sys.stderr.write("coex: error: {}\n".format(e))
        return 1
    except ImportError as e:
        if e.name not in REQUIRED_DISTRIBUTIONS:
            raise
        sys.stderr.write("coex: error: {}\n".format(missing_dependency_message(e.name)))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def step_main(prog: str, description: str,
              add_arguments: Callable[[argparse.ArgumentParser], None]) -> NoReturn:
    """Run a one-command module (`python -m coex.lib.fetch ...`): its arguments, run_cli,
    exit_process."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    exit_process(run_cli(parser))


def exit_process(code: int) -> NoReturn:
    """End a command-line process with `code`. Once py-rattler is loaded its runtime threads can
    crash CPython's finalization after a failed solve (seen: SIGSEGV/SIGABRT instead of exit 1),
    so flush and leave with os._exit, skipping finalization. Only for `__main__` entry points."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    if "rattler" in sys.modules:
        os._exit(code)
    sys.exit(code)
