"""Everything a user of precip-repro can catch.

Every exception derives from :class:`ExperimentException` (the original precip's name),
and also from the nearest builtin where one fits, so ``except ValueError`` keeps working
for code that does not know us::

    ExperimentException
    ├── InvalidOption (ValueError)            a bad option; lists the valid ones
    └── RecordError                           anything about a run's record
        ├── RunNotFound (LookupError)         no run matches RUN
        │   └── AmbiguousRun                  several runs match RUN; lists them
        ├── RunLocked (BlockingIOError)       another writer holds the run
        ├── RunFinished (RuntimeError)        appending to a finished run
        ├── UnrecordableValue (ValueError)    a float / NaN / non-JSON value, names the field
        ├── UnsupportedVersion (ValueError)   a record format this version cannot read
        ├── RecordIncomplete                  no run.finished: open, or abandoned
        └── RecordCorrupted (ValueError)      a bad event, checkpoint or blob
            └── BlobCorrupted                 a blob is missing or its bytes do not hash

Errors carry their context as attributes (``run``, ``seq``, ``line``, ``path``, ``blob``)
and say it in their message, with what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "AmbiguousRun",
    "BlobCorrupted",
    "ExperimentException",
    "InvalidOption",
    "RecordCorrupted",
    "RecordError",
    "RecordIncomplete",
    "RunFinished",
    "RunLocked",
    "RunNotFound",
    "UnrecordableValue",
    "UnsupportedVersion",
]


class ExperimentException(Exception):
    """Base of every exception precip-repro raises on purpose."""


class InvalidOption(ExperimentException, ValueError):
    """An option got a value outside its valid set; the message lists the valid ones."""

    def __init__(self, option: str, value: object, valid: Iterable[str]) -> None:
        self.option = option
        self.value = value
        self.valid = sorted(valid)
        super().__init__(f"{option}={value!r} is not valid; valid values: {', '.join(self.valid)}")


class RecordError(ExperimentException):
    """Something about a run's record. ``run`` names the run (id or path) when known."""

    def __init__(
        self,
        message: str,
        *,
        run: str | None = None,
        seq: int | None = None,
        line: int | None = None,
        path: Path | str | None = None,
        blob: str | None = None,
    ) -> None:
        self.run = run
        self.seq = seq
        self.line = line
        self.path = Path(path) if path is not None else None
        self.blob = blob
        super().__init__(message)


class RunNotFound(RecordError, LookupError):
    """No run in the store matches the given RUN."""


class AmbiguousRun(RunNotFound):
    """A prefix matched several runs; ``candidates`` lists them."""

    def __init__(self, message: str, *, candidates: list[str], run: str | None = None) -> None:
        self.candidates = candidates
        super().__init__(message, run=run)


class RunLocked(RecordError, BlockingIOError):
    """Another writer (this or another process) holds the run open for writing."""


class RunFinished(RecordError, RuntimeError):
    """The run has ``run.finished``: nothing is ever appended to a finished run."""


class UnrecordableValue(RecordError, ValueError):
    """A value cannot go into the record (a float, NaN, a non-JSON type); names the field."""

    def __init__(
        self, message: str, *, field: str, run: str | None = None, seq: int | None = None
    ) -> None:
        self.field = field
        super().__init__(message, run=run, seq=seq)


class UnsupportedVersion(RecordError, ValueError):
    """The record was written in a format version this precip-repro cannot read."""


class RecordIncomplete(RecordError):
    """The run has no ``run.finished``: ``state`` is ``open`` or ``abandoned``."""


class RecordCorrupted(RecordError, ValueError):
    """An event, the checkpoint or a blob does not check: the record was altered or damaged."""


class BlobCorrupted(RecordCorrupted):
    """A blob is missing, or its bytes do not hash to its name."""
