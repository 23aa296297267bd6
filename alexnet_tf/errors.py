"""Errors in what a user gave a command, and how every command reports them.

A command that is handed a wrong flag, a missing folder or a damaged file says so in one
line that names the input and what was expected, and exits with status 2. Tracebacks are
kept for real bugs. Code raises one of the classes below for a user's input; each is also
the built-in exception a caller would expect (ValueError, FileNotFoundError,
FileExistsError), so library users catch them as before.

`run_command(main)` is every command's `app.run`: it turns a UsageError raised anywhere
below `main`, absl's `app.UsageError`, and a flag that does not parse or a required flag
left out, into that one line. `check_directory` and `check_output_directory` give the
messages for the commonest inputs, folders.
"""

import os
import re
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


def check_directory(path: str, flag: str, expected: str) -> None:
    """Raises a UsageError unless `path`, given as `flag`, is an existing folder.

    Args:
      path: the folder the user named.
      flag: how the user named it, e.g. "--data_dir".
      expected: what the folder should hold, e.g. "the output of tools/convert_imagenet.py".

    Raises:
      MissingInputError: `path` does not exist.
      InvalidInputError: `path` exists but is not a folder.
    """
    if not os.path.exists(path):
        raise MissingInputError(f"{flag}={path} does not exist: expected a folder holding "
                                f"{expected}")
    if not os.path.isdir(path):
        raise InvalidInputError(f"{flag}={path} is a file, not a folder: expected a folder "
                                f"holding {expected}")


def check_output_directory(path: str, flag: str) -> None:
    """Raises InvalidInputError when folder `path` (given as `flag`) cannot be made or used.

    It may exist (as a folder) or not; what cannot be is a file at `path` or at one of the
    folders above it.
    """
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent
    if not os.path.isdir(current):
        where = "" if current == os.path.abspath(path) else f" ({current} is)"
        raise InvalidInputError(f"{flag}={path} is a file{where}, not a folder: expected a "
                                "folder to write into (new or existing)")


_REQUIRED = re.compile(r"Flag --(\w+) must (?:have a value other than None|be (?:set|specified))")


def _flag_message(error: Exception, flag_values) -> str:
    """A flag parsing error as one line; a missing required flag says what it is for."""
    text = one_line(error)
    match = _REQUIRED.search(text)
    if match:
        name = match.group(1)
        help_text = flag_values[name].help if name in flag_values else ""
        return f"--{name} is required" + (f": {one_line(ValueError(help_text))}"
                                          if help_text else "")
    return text


def run_command(main: Callable[[List[str]], Optional[int]]) -> None:
    """absl's app.run(main), with a user's mistake reported in one line and exit status 2.

    Mistakes are a UsageError or absl's app.UsageError raised below `main`, and a flag
    that does not parse or a required flag left out. `main` may return an exit status
    (None is 0). Anything else keeps its traceback: it is a bug.
    """
    from absl import app
    from absl import flags

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            sys.exit(report(InvalidInputError(_flag_message(error, flags.FLAGS))))

    def guarded(argv):
        try:
            status = main(argv)
        except (UsageError, app.UsageError) as error:
            sys.exit(report(error))
        sys.exit(status or 0)

    app.run(guarded, flags_parser=parse_flags)
