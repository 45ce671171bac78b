"""The recording API the Experiment uses: open a run, append typed events, add blobs, finish.

::

    run = Run.open(RunStore("records"), name="hello-world")
    run.append(Note(text="starting"))
    ref = run.add_blob(b"...")   # referred to by an event you append, or by blob.added
    digest = run.finish("ok")

What is fsynced (and why): ``run.started`` (the run exists), ``call.started`` of
``provision``/``deprovision`` and ``instance.launched``/``instance.terminating`` (they
announce or record cost: ``gc`` must find every launched instance after a power cut), and
``run.finished`` together with every blob the run wrote and the checkpoint. Every other
event is written through to the OS before ``append`` returns.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from precip_repro.exceptions import CheckpointNotWritten, InvalidOption, RecordWriteFailed
from precip_repro.logs import get_logger
from precip_repro.record.blobs import BlobSink, BlobStore
from precip_repro.record.events import Event, unstructure
from precip_repro.record.files import fsync_dir
from precip_repro.record.journal import Journal
from precip_repro.record.methods import METHODS
from precip_repro.record.payloads import (
    RUN_STATUSES,
    BlobAdded,
    BlobRef,
    BlobWithheld,
    CallStarted,
    InstanceLaunched,
    InstanceTerminating,
    ModuleLoaded,
    Payload,
    ReplayOf,
    RunFinished,
    RunStarted,
    refs_in,
)
from precip_repro.record.redact import PRIVATE_KEY, Redactor, SecretScanner
from precip_repro.record.signature import Signature
from precip_repro.record.signing import Signer, sign_run
from precip_repro.record.store import (
    CHECKPOINT,
    EVENTS,
    OBJECTS,
    Checkpoint,
    RunStore,
    write_checkpoint,
)

__all__ = ["COSTLY_METHODS", "Run", "tool_version"]

log = get_logger(__name__)

COSTLY_METHODS: Final = frozenset(name for name, m in METHODS.items() if m.costly)


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("precip-repro")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _needs_sync(payload: Payload) -> bool:
    if isinstance(payload, RunStarted | InstanceLaunched | InstanceTerminating):
        return True
    return isinstance(payload, CallStarted) and payload.method in COSTLY_METHODS


def _git_commit(directory: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None


class Run:
    """One run being recorded. Thread-safe; a context manager that finishes the run."""

    def __init__(
        self,
        run_id: str,
        path: Path,
        journal: Journal,
        *,
        secrets: Redactor | None = None,
        sign: bool = True,
        signer: Signer | None = None,
    ) -> None:
        self.id = run_id
        self._sign = sign
        self._signer = signer
        self.signature: Signature | None = None
        """Who signed the finished run's checkpoint; None while recording, or unsigned."""
        self.signing_problem: str | None = None
        """Why a finished run is unsigned (the key file and what to do), if signing failed."""
        self._secrets = secrets
        """Every event's strings go through it as they are appended (one redaction for
        all: file names, tags, names and note keys included)."""
        self.path = path
        self.blobs = BlobStore(path / OBJECTS, run=run_id)
        self._journal = journal
        self._started_ns = time.monotonic_ns()
        self._finish_lock = threading.Lock()
        self._status: str | None = None
        self._digest: str | None = None
        self._labels: dict[str, str] = {}
        self._withhold_lock = threading.Lock()
        self._refs_lock = threading.Lock()
        self._unreferenced: dict[str, BlobRef] = {}
        """Blobs stored by :meth:`add_blob` that no event appended since refers to: a
        ``blob.added`` event refers to each when the run finishes, so that verify checks it."""

    @classmethod
    def open(
        cls,
        store: RunStore | Path | str | None = None,
        *,
        name: str | None = None,
        script: Path | None = None,
        argv: list[str] | None = None,
        replay_of: ReplayOf | None = None,
        mapping: bytes | None = None,
        secrets: Redactor | None = None,
        sign: bool = True,
        signer: Signer | None = None,
    ) -> Run:
        """Create a new run in ``store`` and write its ``run.started``.

        When it finishes, its checkpoint is signed (``sign``) with ``signer``, by default
        the key :func:`~precip_repro.record.signing.load_signer` finds then.

        ``script`` (the experiment script) is stored as a blob — by hash only when it holds
        one of the ``secrets`` registered so far (credentials written into the script); its
        git commit, if it is in a repository, is recorded too.
        """
        if not isinstance(store, RunStore):
            store = RunStore(store)
        if secrets is not None and name is not None:
            name = secrets.text(name)  # the run id's slug is made of it
        try:
            run_id, path = store.create_run_dir(name)
            journal = Journal.create(path / EVENTS, run=run_id)
        except OSError as exc:
            raise RecordWriteFailed(
                f"cannot start a run in the store {store.root}: {exc.strerror or exc}; give a "
                "writable directory (records=DIR, --records DIR or $PRECIP_RECORDS), or "
                "record=False to run without a record",
                path=store.root,
                cause=exc,
            ) from exc
        try:
            # Absolute: a script that changes directory must not send blobs elsewhere.
            run = cls(run_id, path.absolute(), journal, secrets=secrets, sign=sign, signer=signer)
            script_ref = None
            if script is not None:
                try:
                    script_ref = run._store_source(script, secrets)
                except RecordWriteFailed:
                    raise
                except OSError as exc:  # gone or unreadable since it started: the run goes on
                    log.warning(
                        "the experiment script could not be read; the run is recorded without it",
                        file=str(script),
                        error=exc.strerror or str(exc),
                    )
            mapping_ref = run.blobs.put_bytes(mapping) if mapping is not None else None
            started = RunStarted(
                run=run_id,
                tool_version=tool_version(),
                python=platform.python_version(),
                platform=platform.platform(),
                host=socket.gethostname(),
                user=getpass.getuser(),
                argv=[
                    secrets.text(arg) if secrets else arg
                    for arg in (sys.argv if argv is None else argv)
                ],
                cwd=str(Path.cwd()),
                script=script_ref,
                script_path=str(script) if script is not None else None,
                git_commit=_git_commit((script or Path.cwd()).resolve().parent)
                if script is not None
                else _git_commit(Path.cwd()),
                replay_of=replay_of,
                mapping=mapping_ref,
            )
            run._started_ns = time.monotonic_ns()
            run.append(started)
        except BaseException as exc:
            # Not one event was written: a directory with an empty log would only stand
            # in `ls` as an abandoned run that recover cannot finish.
            journal.close()
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, RecordWriteFailed):
                raise RecordWriteFailed(
                    f"cannot start a run in the store {store.root}: {exc} (nothing of the "
                    "run was kept)",
                    path=store.root,
                    cause=exc.__cause__
                    if isinstance(exc.__cause__, OSError)
                    else OSError(exc.errno, str(exc)),
                ) from exc
            raise
        fsync_dir(path)
        fsync_dir(store.root)
        log.info("run started", run=run_id, path=str(path))
        return run

    def _store_source(
        self, script: Path, secrets: Redactor | None, what: str = "the experiment script"
    ) -> BlobRef:
        scanner = secrets.scanner() if secrets is not None else None
        with script.open("rb") as f, self.blobs.sink() as sink:
            while chunk := f.read(1 << 20):
                sink.write(chunk)
                if scanner is not None:
                    scanner.feed(chunk)
            return self.seal(sink, scanner, f"{what} {script}")

    def add_module(self, name: str, path: Path, secrets: Redactor | None = None) -> None:
        """Record a module of the experiment's own and its source (kept by hash only when
        it holds a registered secret). A file that cannot be read is skipped, said in the
        log: the run goes on."""
        try:
            content = self._store_source(path, secrets, what=f"module {name}")
        except RecordWriteFailed:
            raise
        except OSError as exc:
            log.warning("a module's source could not be read", module=name, file=str(path),
                        error=exc.strerror or str(exc))  # fmt: skip
            return
        self.append(ModuleLoaded(name=name, path=str(path), content=content))

    def seal(self, sink: BlobSink, scanner: SecretScanner | None, what: str) -> BlobRef:
        """Finish a blob whose bytes ``scanner`` watched for secrets: stored, or — when it
        found one — kept by hash only, with a warning naming ``what`` it is (a file, the
        script). ``what`` is remembered for the warning should a later secret withhold it."""
        if scanner is not None and scanner.found is not None:
            if scanner.found == PRIVATE_KEY:
                log.warning("it holds a private key: kept by hash only", what=what)
            else:
                log.warning(
                    "it holds a registered secret: kept by hash only",
                    what=what,
                    secret=scanner.found,
                )
            return sink.withhold(scanner.reason)
        ref = sink.commit()
        if ref.text is None:
            self._labels.setdefault(ref.sha256, what)
        return ref

    def withhold_secret(self, name: str, value: str) -> list[str]:
        """A secret was registered after the run began: remove every blob already stored
        that holds it, each announced first by a ``blob.withheld`` event (so ``verify``
        excuses its absence). Returns the sha256 of each blob removed.

        The log itself cannot change without breaking its chain: when an event already
        holds the value (it was used before it was registered), a warning says so.
        """
        removed: list[str] = []
        with self._withhold_lock:
            if self.finished:
                return removed
            for sha256, path in list(self.blobs.objects()):
                try:
                    if SecretScanner([(name, value)]).scan(path) is None:
                        continue
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                # The event first: a crash after it leaves a blob too many, never one the
                # record cannot account for.
                self.append(
                    BlobWithheld(sha256=sha256, size=size, reason=f"holds secret {name}"),
                    sync=True,
                )
                self.blobs.remove(sha256)
                removed.append(sha256)
                log.warning(
                    "a blob stored before its secret was registered was removed; "
                    "the record keeps its hash only",
                    run=self.id,
                    blob=sha256,
                    holds=self._labels.get(sha256, "content moved or printed earlier"),
                    secret=name,
                )
            if self._log_holds(value):
                log.warning(
                    "the secret appears in events written before it was registered; a "
                    "hash-chained log cannot be changed: treat the secret as exposed in this "
                    "record and rotate it, and register secrets before using them",
                    run=self.id,
                    secret=name,
                )
        return removed

    def _log_holds(self, value: str) -> bool:
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        return SecretScanner([("", escaped)]).scan(self.path / EVENTS) is not None

    @property
    def digest(self) -> str:
        """The hash of the last event written: once finished, the run's digest (the one to
        cite); before, a prefix of the run, which ``verify --digest`` says it continues past."""
        return self._digest or self._journal.last_hash

    @property
    def events(self) -> int:
        return self._journal.seq

    @property
    def status(self) -> str | None:
        """None while recording; the final status once finished."""
        return self._status

    @property
    def finished(self) -> bool:
        return self._status is not None

    @property
    def checkpointed(self) -> bool:
        """Whether the finished run's checkpoint is written."""
        return self.finished and (self.path / CHECKPOINT).is_file()

    def append(self, payload: Payload, *, sync: bool | None = None) -> Event:
        """Write one typed event. ``sync`` overrides the fsync policy above."""
        if isinstance(payload, RunFinished):
            raise ValueError("use Run.finish() to end a run")
        data = unstructure(payload)
        if self._secrets is not None:
            data = self._secrets.payload(data)
        event = self._journal.append(
            payload.TYPE, data, sync=_needs_sync(payload) if sync is None else sync
        )
        if self._unreferenced:
            with self._refs_lock:
                for ref in refs_in(payload):
                    self._unreferenced.pop(ref.sha256, None)
        return event

    def add_blob(self, content: bytes | BinaryIO | Path, *, inline: bool = False) -> BlobRef:
        """Store bytes, a readable binary stream or a file's content; return its reference.

        With ``inline``, content up to 4 KiB that is valid UTF-8 is returned as inline text
        (the event carries it; no object file is written).
        """
        if isinstance(content, bytes | bytearray | memoryview):
            ref = self.blobs.put_bytes(bytes(content), inline=inline)
        elif isinstance(content, Path):
            ref = self.blobs.put_file(content, inline=inline)
        else:
            ref = self.blobs.put_stream(content, inline=inline)
        if ref.text is None:
            with self._refs_lock:
                self._unreferenced.setdefault(ref.sha256, ref)
        return ref

    def blob_sink(self, *, inline: bool = False) -> BlobSink:
        """A sink to stream a blob in chunks (e.g. while an SFTP transfer runs)."""
        return self.blobs.sink(inline=inline)

    def finish(self, status: str = "ok") -> str:
        """Append ``run.finished``, make everything durable, write the checkpoint and sign
        it (a key that cannot sign leaves the run unsigned: :attr:`signing_problem`).

        Returns the run's digest. Finishing twice returns the same digest.
        """
        if status not in RUN_STATUSES:
            raise InvalidOption("status", status, RUN_STATUSES)
        with self._finish_lock:
            if self._digest is not None:
                return self._digest
            with self._refs_lock:
                unreferenced, self._unreferenced = list(self._unreferenced.values()), {}
            for ref in unreferenced:
                self._journal.append(BlobAdded.TYPE, unstructure(BlobAdded(content=ref)))
            self.blobs.sync()
            seq = self._journal.seq
            finished = RunFinished(
                status=status,
                events=seq + 1,
                duration_ns=time.monotonic_ns() - self._started_ns,
                digest=self._journal.last_hash,
            )
            event = self._journal.append(
                finished.TYPE, unstructure(finished), sync=True, final=True
            )
            # The log now says the run finished: whatever becomes of the checkpoint, it is.
            self._status, self._digest = status, event.hash
            self._journal.close()
            try:
                write_checkpoint(
                    self.path, Checkpoint(run=self.id, events=seq + 1, digest=event.hash)
                )
            except OSError as exc:
                raise CheckpointNotWritten(
                    f"run {self.id} finished ({status}; its log ends with run.finished, event "
                    f"seq {seq}, digest {event.hash}), but its checkpoint could not be written: "
                    f"{exc.strerror or exc}. Free space, then `precip-repro recover {self.id}` "
                    "writes it (until then verify calls the run abandoned)",
                    run=self.id,
                    path=self.path / CHECKPOINT,
                    cause=exc,
                ) from exc
            with contextlib.suppress(OSError):
                (self.path / OBJECTS / "tmp").rmdir()
            if self._sign:
                signed = sign_run(self.path, run=self.id, signer=self._signer)
                self.signature, self.signing_problem = signed.signature, signed.problem
        log.info("run finished", run=self.id, status=status, events=seq + 1, digest=event.hash)
        return event.hash

    def close(self) -> None:
        """Release the log without finishing (the run stays ``abandoned`` until recovered)."""
        self._journal.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish("ok")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted")
        else:
            self.finish("failed")
