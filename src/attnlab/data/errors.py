"""Errors raised by the data stage."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file, row or resource is malformed.

    The message always names where the problem is (file and 1-based line number,
    hub dataset and row, or resource file and key) and what is wrong.
    """


def read_yaml_resource(path: str, what: str) -> object:
    """Parse a YAML resource file; a missing file or bad YAML is a :class:`DataFormatError` naming ``path``.

    ``what`` names the kind of file in the message (e.g. ``"template file"``).
    """
    from pathlib import Path

    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise DataFormatError(f"{path}: invalid YAML: {exc}") from None
