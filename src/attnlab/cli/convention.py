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
import json
import sys
from pathlib import Path
from typing import Any, Callable

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


def json_object_arg(text: str) -> dict[str, Any]:
    """The argparse type of every JSON option (``--spec``, ``--train-spec``, ``--models``, ``--groups``).

    The value is a JSON object, given as text (how the workflow passes a config section) or as the path of a
    JSON file holding one (for a person running a stage by hand). Anything else is an argparse error, so exit 2
    with ``attnlab <command> <subcommand>: error: argument --spec: <what>``, naming the file and line.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"neither a JSON object ({err.msg} at line {err.lineno} column {err.colno}) nor a file: {text!r}"
            ) from None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as file_error:
            where = f" (line {file_error.lineno})" if isinstance(file_error, json.JSONDecodeError) else ""
            raise argparse.ArgumentTypeError(f"{path}: invalid JSON{where}: {file_error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}: {text!r}")
    return value
