"""precip-repro: the precip experiment API with a flight recorder inside.

The names below are the whole public surface; everything else may change without notice.
"""

from __future__ import annotations

from precip_repro.exceptions import (
    AmbiguousRun,
    BlobCorrupted,
    CloudError,
    CommandFailed,
    CommandTimeout,
    ExperimentException,
    HostKeyChanged,
    InstanceError,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalCloudUnavailable,
    LocalFileMissing,
    RecordCorrupted,
    RecordError,
    RecordIncomplete,
    RemoteFileMissing,
    RunFinished,
    RunLocked,
    RunNotFound,
    UnrecordableValue,
    UnsupportedUser,
    UnsupportedVersion,
    WaitTimeout,
)
from precip_repro.experiment import Experiment
from precip_repro.experiments import (
    EC2Experiment,
    EucalyptusExperiment,
    LocalExperiment,
    NimbusExperiment,
    OpenStackExperiment,
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
from precip_repro.session import current_run, finish_run

__version__ = _tool_version()

__all__ = [
    "AmbiguousRun",
    "BlobCorrupted",
    "BlobRef",
    "CloudError",
    "CommandFailed",
    "CommandTimeout",
    "EC2Experiment",
    "EucalyptusExperiment",
    "Event",
    "Experiment",
    "ExperimentException",
    "FORMAT_VERSION",
    "HostKeyChanged",
    "InstanceError",
    "InstanceNotReady",
    "InstanceUnreachable",
    "InvalidOption",
    "LocalCloudUnavailable",
    "LocalExperiment",
    "LocalFileMissing",
    "LogReader",
    "NimbusExperiment",
    "OpenStackExperiment",
    "RecordCorrupted",
    "RecordError",
    "RecordIncomplete",
    "Recovery",
    "RemoteFileMissing",
    "Run",
    "RunFinished",
    "RunLocked",
    "RunNotFound",
    "RunStore",
    "UnrecordableValue",
    "UnsupportedUser",
    "UnsupportedVersion",
    "Verdict",
    "WaitTimeout",
    "__version__",
    "current_run",
    "finish_run",
    "recover",
    "verify",
]
