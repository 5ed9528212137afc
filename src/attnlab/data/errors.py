"""Errors raised by the data stage."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file, row or resource is malformed.

    The message always names where the problem is (file and 1-based line number,
    hub dataset and row, or resource file and key) and what is wrong.
    """
