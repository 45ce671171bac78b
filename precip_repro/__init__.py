"""precip-repro: the precip experiment API with a flight recorder inside.

The names below are the public surface, with two public modules: :mod:`precip_repro.testing`
(``playback``, for a user's tests) and :mod:`precip_repro.commandline` (the core of the
command-line tools). Everything else may change without notice.
"""

from __future__ import annotations

import importlib
import typing

from precip_repro import progress as progress  # a public module, as testing is
from precip_repro.comparison import (
    DIFF_COMPARING,
    REPLAY_COMPARING,
    Comparing,
    ComparisonSide,
    Difference,
    DifferenceKind,
    compare_calls,
    declared_rules,
    outcome_of,
    verdict_of,
)
from precip_repro.content import ContentReader, ContentRef
from precip_repro.diff import DiffResult, diff_runs, render_difference, render_text
from precip_repro.exceptions import (
    AmbiguousRun,
    BlobCorrupted,
    CheckpointNotWritten,
    CloudError,
    CommandFailed,
    CommandTimeout,
    ContentWithheld,
    CredentialsNotFound,
    ExperimentClosed,
    ExperimentException,
    HostKeyChanged,
    InstanceError,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalCloudUnavailable,
    LocalFileMissing,
    LoginRefused,
    NoInstanceMatches,
    PackageError,
    PackageRefused,
    PackageTampered,
    PackageUntrusted,
    ParameterInvalid,
    PlaybackMismatch,
    RecordCorrupted,
    RecordError,
    RecordIncomplete,
    RecordWriteFailed,
    RemoteFileMissing,
    RuleInvalid,
    RunAlreadyFinished,
    RunConflict,
    RunLocked,
    RunNotFound,
    SignersUnusable,
    SigningFailed,
    StoreError,
    StoreUnreachable,
    TransferFailed,
    UnrecordableValue,
    UnsupportedUser,
    UnsupportedVersion,
    WaitTimeout,
)
from precip_repro.expectations import Expectations, Rule, RuleKind, StepVerdict
from precip_repro.loading import GrowingView, load_run, load_verified
from precip_repro.messages import shown_command
from precip_repro.normalize import Normalizer, instance_names, short_hostname
from precip_repro.record import (
    FORMAT_VERSION,
    BlobRef,
    BlobStore,
    Event,
    LogReader,
    Recovery,
    Run,
    RunStore,
    Verdict,
    recover,
    verify,
)
from precip_repro.record.blobs import hash_file
from precip_repro.record.events import ReplayOf, ReplayStep
from precip_repro.record.methods import METHODS, CallAnswer, CallResult, Method
from precip_repro.record.recorder import tool_version as _tool_version
from precip_repro.record.redact import SECRET_PLACEHOLDER
from precip_repro.record.signature import Signature
from precip_repro.record.signing import Signer, load_signer
from precip_repro.record.trusted import TrustedKeys
from precip_repro.record.walk import map_strings
from precip_repro.rules_file import load_rules
from precip_repro.runview import CallView, FileView, ModuleView, RunView
from precip_repro.session import current_run, finish_run, register_secret, session
from precip_repro.stores import PushResult, Removal, Store, StoreCapability, open_store

__version__ = _tool_version()

if typing.TYPE_CHECKING:
    from precip_repro.experiment import Experiment
    from precip_repro.experiment.kinds import (
        EC2Experiment,
        EucalyptusExperiment,
        LocalExperiment,
        NimbusExperiment,
        OpenStackExperiment,
    )
    from precip_repro.package.exporting import Exported, attest_run, export_run
    from precip_repro.package.importing import Imported, import_package
    from precip_repro.package.info import Author, PackageInfo, load_info

_ON_FIRST_USE = {
    "Experiment": "precip_repro.experiment",
    **dict.fromkeys(
        ("EC2Experiment", "EucalyptusExperiment", "LocalExperiment", "NimbusExperiment",
         "OpenStackExperiment"),
        "precip_repro.experiment.kinds",
    ),
    **dict.fromkeys(("Exported", "attest_run", "export_run"), "precip_repro.package.exporting"),
    **dict.fromkeys(("Imported", "import_package"), "precip_repro.package.importing"),
    **dict.fromkeys(("Author", "PackageInfo", "load_info"), "precip_repro.package.info"),
}  # fmt: skip
"""The experiment classes bring paramiko and the clouds, packages rocrate and
securesystemslib: imported when first named, so that ``precip-repro diff`` and the other
record commands start in half the time and memory."""


def __getattr__(name: str) -> typing.Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'precip_repro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AmbiguousRun",
    "Author",
    "BlobCorrupted",
    "BlobRef",
    "BlobStore",
    "CallAnswer",
    "CallResult",
    "CallView",
    "CheckpointNotWritten",
    "CloudError",
    "CommandFailed",
    "CommandTimeout",
    "Comparing",
    "ComparisonSide",
    "ContentReader",
    "ContentRef",
    "ContentWithheld",
    "CredentialsNotFound",
    "DIFF_COMPARING",
    "DiffResult",
    "Difference",
    "DifferenceKind",
    "EC2Experiment",
    "EucalyptusExperiment",
    "Event",
    "Expectations",
    "Experiment",
    "ExperimentClosed",
    "ExperimentException",
    "Exported",
    "FORMAT_VERSION",
    "FileView",
    "GrowingView",
    "HostKeyChanged",
    "Imported",
    "InstanceError",
    "InstanceNotReady",
    "InstanceUnreachable",
    "InvalidOption",
    "LocalCloudUnavailable",
    "LocalExperiment",
    "LocalFileMissing",
    "LogReader",
    "LoginRefused",
    "METHODS",
    "Method",
    "ModuleView",
    "NimbusExperiment",
    "NoInstanceMatches",
    "Normalizer",
    "OpenStackExperiment",
    "PackageError",
    "PackageInfo",
    "PackageRefused",
    "PackageTampered",
    "PackageUntrusted",
    "ParameterInvalid",
    "PlaybackMismatch",
    "PushResult",
    "REPLAY_COMPARING",
    "RecordCorrupted",
    "RecordError",
    "RecordIncomplete",
    "RecordWriteFailed",
    "Recovery",
    "RemoteFileMissing",
    "Removal",
    "ReplayOf",
    "ReplayStep",
    "Rule",
    "RuleInvalid",
    "RuleKind",
    "Run",
    "RunAlreadyFinished",
    "RunConflict",
    "RunLocked",
    "RunNotFound",
    "RunStore",
    "RunView",
    "SECRET_PLACEHOLDER",
    "Signature",
    "Signer",
    "SignersUnusable",
    "SigningFailed",
    "StepVerdict",
    "Store",
    "StoreCapability",
    "StoreError",
    "StoreUnreachable",
    "TransferFailed",
    "TrustedKeys",
    "UnrecordableValue",
    "UnsupportedUser",
    "UnsupportedVersion",
    "Verdict",
    "WaitTimeout",
    "__version__",
    "attest_run",
    "compare_calls",
    "current_run",
    "declared_rules",
    "diff_runs",
    "export_run",
    "finish_run",
    "hash_file",
    "import_package",
    "instance_names",
    "load_info",
    "load_rules",
    "load_run",
    "load_signer",
    "load_verified",
    "map_strings",
    "open_store",
    "outcome_of",
    "recover",
    "register_secret",
    "render_difference",
    "render_text",
    "session",
    "short_hostname",
    "shown_command",
    "verdict_of",
    "verify",
]
