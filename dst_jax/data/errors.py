"""The data layer's two failure kinds, so callers can tell "fix the file" from "get the file"."""

from __future__ import annotations


class DataIntegrityError(ValueError):
    """A file is there but is not what it should be: wrong checksum, truncated, corrupted,
    wrong shape or wrong counts. The message names the file and what was wrong."""


class DataUnavailableError(FileNotFoundError):
    """Files are missing and could not be downloaded. The message lists which files to put in
    which folder."""
