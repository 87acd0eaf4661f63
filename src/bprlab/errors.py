"""User-facing errors. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class BprlabError(Exception):
    """An error caused by the user's input (a file, a config key), not by a bug."""


class ConfigError(BprlabError):
    """A config file or override is wrong; the message names the file and the key."""


class InputError(ConfigError, ValueError):
    """An argument of the Python API is unusable (question vectors or texts, k): the message says which and why.
    A ValueError too, as Python code expects of a bad argument."""


class DataFormatError(BprlabError):
    """A data file is malformed; the message names the file and the record."""

    def __init__(self, path, record, message: str):
        self.path, self.record = str(path), record
        where = f"{self.path}: record {record}" if record is not None else self.path
        super().__init__(f"{where}: {message}")


class StageError(BprlabError):
    """A stage's inputs are missing (e.g. evaluate before index); the message says which stage to run."""


class Requeued(BprlabError):
    """Stopped by SLURM's warning before the time limit (bprlab.slurm, bprlab.lit.requeue): the job is requeued and
    resumes, so the CLI says so and exits 0; a W&B sweep trial exits with slurm.PREEMPTED_EXIT instead."""


def bad_utf8(path) -> DataFormatError:
    """The first line of `path` that is not UTF-8, named with the offending byte (an error path: reads again)."""
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataFormatError(path, f"line {line}", f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte "
                                                             f"{exc.start + 1} of the line (save the file as UTF-8)")
    return DataFormatError(path, None, "not UTF-8 (save the file as UTF-8)")
