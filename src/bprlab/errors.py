"""User-facing errors. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class BprlabError(Exception):
    """An error caused by the user's input (a file, a config key), not by a bug."""


class ConfigError(BprlabError):
    """A config file or override is wrong; the message names the file and the key."""


class DataFormatError(BprlabError):
    """A data file is malformed; the message names the file and the record."""

    def __init__(self, path, record, message: str):
        self.path, self.record = str(path), record
        where = f"{self.path}: record {record}" if record is not None else self.path
        super().__init__(f"{where}: {message}")


class StageError(BprlabError):
    """A stage's inputs are missing (e.g. evaluate before index); the message says which stage to run."""
