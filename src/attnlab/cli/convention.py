"""One convention for every ``attnlab`` command: its exit code and the form of its error message.

    0  success
    1  runtime failure: the inputs were valid and the work failed (an uncaught exception, with its traceback;
       or a check that found problems, e.g. ``attnlab doctor``)
    2  bad input: a missing or malformed file, an invalid spec, config or argument, an unknown name

A bad-input message has one form, ``attnlab <command> <subcommand>: error: <what>``, where *what* names the
file, key or argument. Bad input is a ``ValueError`` (the project's ``ConfigError``, ``DataFormatError``,
``RelationsError`` … derive from it), a ``FileNotFoundError`` or a ``KeyError`` raised by a handler;
:func:`run_command` turns it into that message and exit code, so a handler only raises. The commands that
run a model (evaluate, attribution score, attention measure, generate) report a model that cannot be loaded
from ``--model`` (no such folder, not in the offline cache) as a runtime failure, 1, in that same form.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
#: the exceptions that mean "the input is wrong" (exit 2); anything else is a runtime failure (exit 1)
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def command_name(args: argparse.Namespace) -> str:
    """``attnlab <command> <subcommand>`` of parsed arguments (each stage keeps its subcommand in ``*_command``)."""
    sub = [value for key, value in sorted(vars(args).items()) if key.endswith("_command") and isinstance(value, str)]
    return " ".join(["attnlab", str(args.command), *sub])


def error_message(name: str, error: BaseException) -> str:
    """``<name>: error: <what>`` (a ``KeyError``'s text without the quotes ``str()`` adds)."""
    what = error.args[0] if isinstance(error, KeyError) and error.args else error
    return f"{name}: error: {what}"


def run_command(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand's handler: its own exit code, or :data:`EXIT_BAD_INPUT` with one message on bad input."""
    try:
        return int(handler(args) or EXIT_OK)
    except BAD_INPUT_ERRORS as error:
        print(error_message(command_name(args), error), file=sys.stderr)
        return EXIT_BAD_INPUT
