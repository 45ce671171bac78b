"""Everything a user of precip-repro can catch.

Every exception derives from :class:`ExperimentException` (the original precip's name),
and also from the nearest builtin where one fits, so ``except ValueError`` keeps working
for code that does not know us::

    ExperimentException
    ├── InvalidOption (ValueError)            a bad option; lists the valid ones
    ├── RuleInvalid (ValueError)              a declared expectation or a rules file is
    │                                         malformed: names the key and its line
    ├── LocalFileMissing (FileNotFoundError)  a local file to put or run is not there
    ├── ExperimentClosed (RuntimeError)       the experiment was closed; make a new one
    ├── NoInstanceMatches (LookupError)       run/put/get/copy_and_run: no instance has the tags
    ├── ParameterInvalid (ValueError)         ``exp.param``: its variable holds no value of its
    │                                         type, or none is set and there is no default
    ├── PlaybackMismatch                      played back, a call is not the recorded one:
    │                                         ``call``, ``recorded`` and ``attempted``
    ├── CloudError                            the cloud refused or failed; ``code``, ``request_id``
    │   ├── LocalCloudUnavailable             this machine cannot run local instances (and why)
    │   └── CredentialsNotFound               no AWS credentials: an unknown profile, or none
    │                                         given, configured or at hand; ``profile``
    ├── InstanceError                         about one instance: ``instance``, ``slot``
    │   ├── InstanceNotReady                  used before ``wait()`` made it reachable
    │   ├── InstanceUnreachable (ConnectionError)  ssh could not connect or log in
    │   │   ├── LoginRefused                  sshd answered and refused the key for the user
    │   │   └── SessionNotOpened              a connection took no command: nothing ran
    │   ├── WaitTimeout (TimeoutError)        ``wait()`` ran out of time; lists who was late
    │   ├── HostKeyChanged                    the host key differs from the one pinned
    │   ├── UnsupportedUser (ValueError)      the instance cannot log this user in
    │   ├── CommandFailed                     non-zero exit; exit code and stderr tail
    │   ├── CommandTimeout (TimeoutError)     a command ran past its ``timeout=``; ended
    │   └── TransferFailed (OSError)          a put or get failed: a directory, no permission …
    │       └── RemoteFileMissing (FileNotFoundError)  ``get`` of a path the instance lacks
    └── RecordError                           anything about a run's record
        ├── RunNotFound (LookupError)         no run matches RUN
        │   └── AmbiguousRun                  several runs match RUN; lists them
        ├── RunLocked (BlockingIOError)       another writer holds the run
        ├── RunAlreadyFinished (RuntimeError) appending to a finished run
        ├── RecordWriteFailed (OSError)       the disk refused an event; the log stays intact
        │   └── CheckpointNotWritten          the run finished; only its checkpoint is missing
        ├── UnrecordableValue (ValueError)    a float / NaN / non-JSON value, names the field
        ├── UnsupportedVersion (ValueError)   a record format this version cannot read
        ├── RecordIncomplete                  no run.finished: open, or abandoned
        ├── ContentWithheld (LookupError)     the record keeps that content by hash only
        ├── SigningFailed                     the key cannot sign: the run finished unsigned
        ├── SignersUnusable (ValueError)      verify --signer got a file with no usable key
        ├── StoreError                        a store of runs refused or failed; ``store``
        │   ├── StoreUnreachable (ConnectionError)  no answer, refused credentials, no bucket
        │   └── RunConflict (FileExistsError) the store holds another run by that id (import,
        │                                     push)
        ├── RecordCorrupted (ValueError)      a bad event, checkpoint or blob
        │   └── BlobCorrupted                 a blob is missing or its bytes do not hash
        └── PackageError                      a reviewer's package (export, attest, import)
            ├── PackageRefused                the run cannot be packaged as it is: not intact,
            │                                 unsigned, another key at hand, no license
            ├── PackageTampered (ValueError)  a file of a package does not match its
            │                                 attestation or signature; ``path`` names it
            └── PackageUntrusted              import --signer: the run is intact, but no
                                              trusted key signed it

Errors carry their context as attributes (``run``, ``seq``, ``line``, ``path``, ``blob``)
and say it in their message, with what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "AmbiguousRun",
    "BlobCorrupted",
    "CheckpointNotWritten",
    "CloudError",
    "CommandFailed",
    "CommandTimeout",
    "ContentWithheld",
    "CredentialsNotFound",
    "ExperimentClosed",
    "ExperimentException",
    "HostKeyChanged",
    "InstanceError",
    "InstanceNotReady",
    "InstanceUnreachable",
    "InvalidOption",
    "LocalCloudUnavailable",
    "LocalFileMissing",
    "LoginRefused",
    "NoInstanceMatches",
    "PackageError",
    "PackageRefused",
    "PackageTampered",
    "PackageUntrusted",
    "ParameterInvalid",
    "PlaybackMismatch",
    "RecordCorrupted",
    "RecordError",
    "RecordIncomplete",
    "RecordWriteFailed",
    "RemoteFileMissing",
    "RuleInvalid",
    "RunAlreadyFinished",
    "RunConflict",
    "RunLocked",
    "RunNotFound",
    "SignersUnusable",
    "StoreError",
    "StoreUnreachable",
    "SigningFailed",
    "TransferFailed",
    "UnrecordableValue",
    "UnsupportedUser",
    "UnsupportedVersion",
    "WaitTimeout",
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


class RuleInvalid(ExperimentException, ValueError):
    """A declared expectation (``Rule``, a rules file) is malformed: ``key``, and for a file
    its ``path`` and ``line``, say where."""

    def __init__(
        self, message: str, *, key: str | None = None, path: Path | None = None,
        line: int | None = None,
    ) -> None:  # fmt: skip
        self.key = key
        self.path = path
        self.line = line
        where = f"{path}" + (f", line {line}" if line else "") + ": " if path else ""
        super().__init__(f"{where}{message}")


class LocalFileMissing(ExperimentException, FileNotFoundError):
    """A local file to put or to run is not there; ``path`` names it."""

    def __init__(self, message: str, *, path: Path | str) -> None:
        self.path = Path(path)
        ExperimentException.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0])


class ExperimentClosed(ExperimentException, RuntimeError):
    """An experiment was used after ``close()`` (or its ``with`` block) ended it."""

    def __init__(self, message: str, *, exp: str) -> None:
        self.exp = exp
        super().__init__(message)


class NoInstanceMatches(ExperimentException, LookupError):
    """A call that acts on instances (``run``, ``copy_and_run``, ``put``, ``get``) found none
    with all of its ``tags``; ``existing`` lists the tags the experiment's instances have."""

    def __init__(
        self, message: str, *, tags: Iterable[str] = (), existing: Iterable[str] = ()
    ) -> None:
        self.tags = list(tags or ())
        self.existing = sorted(existing or ())
        super().__init__(message)


class ParameterInvalid(ExperimentException, ValueError):
    """A parameter (``exp.param``) has no value to use: the environment variable of its name
    holds text that is not of its type, or is not set and the script gave no default.
    ``name``, ``text`` (what the environment held, None when unset) and ``expected`` (the
    type's name) say which."""

    def __init__(self, message: str, *, name: str, text: str | None, expected: str) -> None:
        self.name = name
        self.text = text
        self.expected = expected
        super().__init__(message)


class PlaybackMismatch(ExperimentException):
    """Played back (:func:`precip_repro.testing.playback`, ``precip-repro run --playback``),
    a call is not the recording's next one, or there is none left. ``call`` is the number
    of the recorded call it was compared with (None when none was left); ``recorded`` and
    ``attempted`` show both calls, a long argument around its first difference; the
    message shows them side by side."""

    def __init__(self, message: str, *, call: int | None, recorded: str, attempted: str) -> None:
        self.call = call
        self.recorded = recorded
        self.attempted = attempted
        super().__init__(message)


class CloudError(ExperimentException):
    """The cloud refused or failed a request; ``code`` and ``request_id`` when it gave them."""

    def __init__(
        self, message: str, *, code: str | None = None, request_id: str | None = None
    ) -> None:
        self.code = code
        self.request_id = request_id
        super().__init__(message)


class LocalCloudUnavailable(CloudError):
    """This machine cannot run local instances; the message says what is missing."""


class CredentialsNotFound(CloudError):
    """No AWS credentials could be had: the profile named (``profile``; None: the default
    chain) is unknown or holds none, and none were given; the message says what to do."""

    def __init__(self, message: str, *, profile: str | None = None) -> None:
        self.profile = profile
        super().__init__(message)


class InstanceError(ExperimentException):
    """Something about one instance; ``instance`` is its id, ``slot`` its logical name."""

    def __init__(
        self,
        message: str,
        *,
        instance: str | None = None,
        slot: str | None = None,
        run: str | None = None,
    ) -> None:
        self.instance = instance
        self.slot = slot
        self.run = run
        ExperimentException.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0])


class InstanceNotReady(InstanceError):
    """The instance was used before ``wait()`` made it reachable."""


class InstanceUnreachable(InstanceError, ConnectionError):
    """ssh could not connect to, or log in on, the instance."""


class LoginRefused(InstanceUnreachable):
    """sshd answered and refused the key for the user: the user does not exist there, or
    lacks precip's public key in its ``authorized_keys``."""


class SessionNotOpened(InstanceUnreachable):
    """No session could be opened on an ssh connection, so the command never started (the
    connection had died unnoticed, or sshd refused channels)."""


class WaitTimeout(InstanceError, TimeoutError):
    """``wait()`` ran out of time; ``late`` lists the instances that were not ready."""

    def __init__(self, message: str, *, late: list[str]) -> None:
        self.late = late
        super().__init__(message, instance=late[0] if late else None)


class HostKeyChanged(InstanceError):
    """The instance's host key is not the one pinned at first contact: never accepted."""


class UnsupportedUser(InstanceError, ValueError):
    """The instance cannot log this user in (e.g. a local cloud run as an ordinary user)."""


class CommandFailed(InstanceError):
    """A command exited non-zero with ``check_exit_code``: ``instance`` is the first in
    instance order, ``failed`` every instance of the call that failed (id → exit code; in
    parallel all of them ran, in turn the call stopped at the first)."""

    def __init__(
        self,
        message: str,
        *,
        instance: str,
        slot: str | None,
        cmd: str,
        exit_code: int,
        stderr_tail: str,
        failed: dict[str, int | None] | None = None,
    ) -> None:
        self.cmd = cmd
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.failed = failed if failed is not None else {instance: exit_code}
        super().__init__(message, instance=instance, slot=slot)


class CommandTimeout(InstanceError, TimeoutError):
    """A command ran past its ``timeout=``; it was ended on the instance with everything
    it started (the message says when that was not possible)."""


class TransferFailed(InstanceError, OSError):
    """A ``put`` or ``get`` failed at either end: the remote path is a directory, a side
    may not write there, a disk is full. The message names the path and the reason."""


class RemoteFileMissing(TransferFailed, FileNotFoundError):
    """``get`` asked for a path the instance does not have (or ``put`` into a directory
    that does not exist there)."""


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


class RunAlreadyFinished(RecordError, RuntimeError):
    """The run has ``run.finished``: nothing is ever appended to a finished run."""


class RecordWriteFailed(RecordError, OSError):
    """The operating system refused to write an event (disk full, an I/O error, a file size
    limit). What was written before stays intact: the partial line is cut off again.
    ``seq`` is the event that was not written; ``errno`` the system's error number (that of
    ``cause``, the refused write's own error)."""

    def __init__(
        self,
        message: str,
        *,
        cause: OSError,
        run: str | None = None,
        seq: int | None = None,
        path: Path | str | None = None,
    ) -> None:
        super().__init__(message, run=run, seq=seq, path=path)
        self.errno = cause.errno


class CheckpointNotWritten(RecordWriteFailed):
    """A run's ``run.finished`` is in its log, but its checkpoint could not be written:
    the run finished (its digest is known); ``recover`` writes the checkpoint."""


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


class ContentWithheld(RecordError, LookupError):
    """Content the record keeps by hash only (it held a registered secret) was asked for;
    ``blob`` is its sha256, ``reason`` why it was withheld."""

    def __init__(
        self,
        message: str,
        *,
        blob: str,
        reason: str,
        run: str | None = None,
        seq: int | None = None,
        path: Path | str | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(message, run=run, seq=seq, path=path, blob=blob)


class RecordCorrupted(RecordError, ValueError):
    """An event, the checkpoint or a blob does not check: the record was altered or damaged."""


class BlobCorrupted(RecordCorrupted):
    """A blob is missing, or its bytes do not hash to its name."""


class SigningFailed(RecordError):
    """A finished run's checkpoint could not be signed: ``key`` names the key file (missing,
    passphrase-protected without an agent, of a type that cannot sign). The run itself
    finished and verifies intact, unsigned."""

    def __init__(self, message: str, *, key: Path | str, run: str | None = None) -> None:
        self.key = Path(key)
        super().__init__(message, run=run, path=key)


class SignersUnusable(RecordError, ValueError):
    """The file given to ``verify --signer`` holds no key to check a signature against;
    ``path`` names it (and the message the line)."""


class PackageError(RecordError):
    """About a reviewer's package (an RO-Crate with an in-toto attestation): ``path`` names
    the package, or the file of it at fault."""


class PackageRefused(PackageError):
    """The run cannot be packaged as it is: it is not intact, not signed, the key at hand is
    not the one that signed it, or the package would have no license. The message says
    what to do."""


class PackageTampered(PackageError, ValueError):
    """A file of a package does not match what its signed attestation says of it (or is
    missing, or is not named there): ``path`` is the file, as the package names it."""


class PackageUntrusted(PackageError):
    """``import --signer``: the package is intact, but the run is unsigned or signed by a key
    the given file does not hold (as ``verify --signer`` calls a run ``untrusted``)."""


class StoreError(RecordError):
    """A store of runs (an S3 bucket) refused or failed; ``store`` names it
    (``s3://bucket/prefix``)."""

    def __init__(
        self,
        message: str,
        *,
        store: str | None = None,
        run: str | None = None,
        path: Path | str | None = None,
    ) -> None:
        self.store = store
        super().__init__(message, run=run, path=path)


class StoreUnreachable(StoreError, ConnectionError):
    """The store could not be used: no answer (``offline``), credentials refused, no such
    bucket. A run being pushed stays in the local cache, unpushed."""

    def __init__(self, message: str, *, store: str | None = None, offline: bool = False) -> None:
        self.offline = offline
        super().__init__(message, store=store)


class RunConflict(StoreError, FileExistsError):
    """The store already holds another run by that id: an S3 store a push goes to (another
    digest), or the directory an ``import`` goes to (not the same run)."""
