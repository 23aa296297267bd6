"""Errors in what a user gave a command, and how every command reports them.

A command that is handed a wrong flag, a missing folder or a damaged file says so in one
line that names the input and what was expected, and exits with status 2. Tracebacks are
kept for real bugs. Code raises one of the classes below for a user's input; each is also
the built-in exception a caller would expect (ValueError, FileNotFoundError,
FileExistsError), so library users catch them as before.

`run_command(main)` is every command's `app.run`: it turns a UsageError, raised anywhere
below `main`, into that one line.
"""

import sys
from typing import Callable, List, Optional

USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """The user's input is wrong; the message names it and says what was expected."""


class InvalidInputError(UsageError, ValueError):
    """A flag value, file or folder is present but not what the command needs."""


class MissingInputError(UsageError, FileNotFoundError):
    """A file or folder the user named (or one it must contain) does not exist."""


class ExistingOutputError(UsageError, FileExistsError):
    """An output would overwrite something the command must not replace."""


class CorruptCheckpointError(InvalidInputError):
    """A checkpoint the user named, or every checkpoint of a run, does not read whole."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (a FileNotFoundError built from errno included)."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def report(error: BaseException, program: Optional[str] = None) -> int:
    """Prints `program: error: message` to stderr; returns the exit status."""
    program = program or _program_name()
    print(f"{program}: error: {one_line(error)}", file=sys.stderr, flush=True)
    return USAGE_EXIT_CODE


def _program_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    return sys.argv[0] if sys.argv else "alexnet_tf"


def run_command(main: Callable[[List[str]], Optional[int]]) -> None:
    """absl's app.run(main), with a UsageError reported in one line and exit status 2.

    `main` may return an exit status (None is 0).
    """
    from absl import app

    def guarded(argv):
        try:
            status = main(argv)
        except UsageError as error:
            sys.exit(report(error))
        sys.exit(status or 0)

    app.run(guarded)
