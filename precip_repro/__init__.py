"""precip-repro: the precip experiment API with a flight recorder inside.

The names below are the whole public surface; everything else may change without notice.
"""

from __future__ import annotations

from precip_repro.exceptions import (
    AmbiguousRun,
    BlobCorrupted,
    ExperimentException,
    InvalidOption,
    RecordCorrupted,
    RecordError,
    RecordIncomplete,
    RunFinished,
    RunLocked,
    RunNotFound,
    UnrecordableValue,
    UnsupportedVersion,
)
from precip_repro.record import (
    FORMAT_VERSION,
    BlobRef,
    Event,
    LogReader,
    Recovery,
    Run,
    RunStore,
    Verdict,
    recover,
    verify,
)
from precip_repro.record.recorder import tool_version as _tool_version

__version__ = _tool_version()

__all__ = [
    "AmbiguousRun",
    "BlobCorrupted",
    "BlobRef",
    "Event",
    "ExperimentException",
    "FORMAT_VERSION",
    "InvalidOption",
    "LogReader",
    "RecordCorrupted",
    "RecordError",
    "RecordIncomplete",
    "Recovery",
    "Run",
    "RunFinished",
    "RunLocked",
    "RunNotFound",
    "RunStore",
    "UnrecordableValue",
    "UnsupportedVersion",
    "Verdict",
    "__version__",
    "recover",
    "verify",
]
