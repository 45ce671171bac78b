"""Is a run's record intact? ``verify`` answers; ``recover`` finishes an abandoned run.

States and the exit status the CLI gives them:

=========== ==== ===========================================================================
state       exit meaning
=========== ==== ===========================================================================
intact      0    finished; chain, checkpoint and every blob check
corrupt     1    a line, the checkpoint or a blob does not check (named by seq/line/blob)
open        3    no ``run.finished`` yet and a writer holds the run
abandoned   3    no writer, and a torn tail or no end: ``precip-repro recover`` finishes it
untrusted   1    intact, but not signed by a key of ``signers`` (unsigned, or another key)
unsealed    3    ``run.finished`` is the last event but no checkpoint seals the run:
                 ``precip-repro recover`` writes it
=========== ==== ===========================================================================

A run whose checkpoint exists but whose log does not match it is ``corrupt``, never
``abandoned``: truncating a finished run is tampering. A digest to check (``--digest``) may
name the run's last event (the run's digest) or an earlier one: a digest printed mid-run
names the event written last by then, and the run continues past it (a prefix claim).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro import progress
from precip_repro.exceptions import (
    BlobCorrupted,
    RecordCorrupted,
)
from precip_repro.logs import get_logger
from precip_repro.record.blobs import BlobStore
from precip_repro.record.events import (
    Event,
    payload_of,
)
from precip_repro.record.files import open_regular
from precip_repro.record.journal import is_locked
from precip_repro.record.payloads import (
    RUN_STATUSES,
    BlobWithheld,
    RunFinished,
)
from precip_repro.record.reader import LogReader, TornTail
from precip_repro.record.references import BlobChecker, blob_refs, refs_of
from precip_repro.record.signature import Signature, read_signature
from precip_repro.record.store import (
    EVENTS,
    OBJECTS,
    Checkpoint,
    read_checkpoint,
)
from precip_repro.record.trusted import TrustedKeys

__all__ = ["EXIT_STATUS", "Verdict", "blob_refs", "verify"]

log = get_logger(__name__)

EXIT_STATUS: Final = {
    "intact": 0,
    "corrupt": 1,
    "untrusted": 1,
    "open": 3,
    "abandoned": 3,
    "unsealed": 3,
}


@attrs.frozen(kw_only=True)
class Verdict:
    """What ``verify`` found. ``reason`` is one line a person can act on."""

    run: str
    path: Path
    state: str
    reason: str
    events: int
    digest: str | None
    status: str | None = None
    seq: int | None = None
    line: int | None = None
    blob: str | None = None
    blobs_checked: int = 0
    torn: TornTail | None = None
    first_ts: str | None = None
    last_ts: str | None = None
    end_offset: int = 0
    has_finished_event: bool = False
    has_checkpoint: bool = False
    signer: str | None = None
    """The ``SHA256:`` fingerprint of the key whose signature over the checkpoint checks."""
    signer_key: str | None = None
    """That key, in OpenSSH's one-line form (``ssh-ed25519 AAAA…``)."""
    signer_name: str | None = None
    """Under ``signers``: the name the trusted key goes by (allowed_signers principal)."""
    version: int | None = None
    """The run's format version (its first event's ``v``)."""
    digest_seq: int | None = None
    """The seq of the event whose hash is the digest given to check, when one is."""

    @property
    def continues_past_digest(self) -> bool:
        """Whether the digest given names an earlier event than the last: the run holds it
        as cited, and more."""
        return self.digest_seq is not None and self.digest_seq < self.events - 1

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.state]

    @property
    def intact(self) -> bool:
        return self.state == "intact"


PROGRESS_EVERY: Final = 10_000
"""Events between two progress events of a verification (only a large run says any)."""


class _VerifyProgress:
    """What a verification says of itself, to whoever listens: a run of at least
    :data:`PROGRESS_EVERY` events, every so many events and at the end."""

    def __init__(self, reader: LogReader, run: str) -> None:
        self._reader, self._run = reader, run
        self._total: int | None = None
        self._spoke = False

    def now(self, *, finished: bool = False) -> None:
        reader = self._reader
        if not progress.active() or (finished and not self._spoke) or not reader.count:
            return
        if self._total is None:
            with contextlib.suppress(OSError):
                self._total = reader.path.stat().st_size
        self._spoke = True
        progress.emit(
            progress.VerifyProgress(run=self._run, events=reader.count, done=reader.end,
                                    total=self._total or reader.end, finished=finished)
        )  # fmt: skip


def verify(
    run_dir: Path,
    *,
    digest: str | None = None,
    signers: TrustedKeys | None = None,
    check_blobs: bool = True,
    workers: int | None = None,
    observe: Callable[[Event], None] | None = None,
    _ignore_lock: bool = False,
) -> Verdict:
    """Check a run's log, checkpoint, blobs and signature; return a :class:`Verdict`.

    ``digest``, when given, must equal the run's digest for it to be ``intact``. A
    signature that does not verify makes the run ``corrupt``; under ``signers`` a run not
    signed by one of their keys (unsigned, or signed by another) is ``untrusted``. ``observe``
    is called with each intact event, so a caller can read the run in the same pass.
    Raises :class:`~precip_repro.exceptions.UnsupportedVersion` for a format this version
    cannot read; every other problem is a state of the verdict.
    """
    run_id = run_dir.name
    events_path = run_dir / EVENTS
    base: dict[str, Any] = {"run": run_id, "path": run_dir}
    try:
        open_regular(events_path, what="event log", run=run_id).close()
    except FileNotFoundError:
        return Verdict(
            **base,
            state="corrupt",
            reason=f"{events_path} is missing: the run's log is gone",
            events=0,
            digest=None,
        )
    except RecordCorrupted as exc:  # a link, a pipe, a device: nothing is read from it
        return Verdict(**base, state="corrupt", reason=str(exc), events=0, digest=None)
    locked = not _ignore_lock and is_locked(events_path)
    checkpoint: Checkpoint | None = None
    checkpoint_problem: RecordCorrupted | None = None
    try:
        checkpoint = read_checkpoint(run_dir, run=run_id)
    except RecordCorrupted as exc:
        checkpoint_problem = exc

    reader = LogReader(events_path, run=run_id)
    checker = BlobChecker(
        BlobStore(run_dir / OBJECTS, run=run_id),
        workers=workers or min(4, os.cpu_count() or 1),
    )
    finished: RunFinished | None = None
    problem: RecordCorrupted | None = None
    withheld: set[str] = set()
    wanted = digest.lower() if digest is not None else None
    digest_at: Event | None = None
    version: int | None = None
    said = _VerifyProgress(reader, run_id)
    try:
        for event in reader:
            if reader.count % PROGRESS_EVERY == 0:
                said.now()
            if event.seq == 0:
                version = event.v
                if event.type != "run.started":
                    raise _bad(event, f"the first event is {event.type}, not run.started", run_id)
                if type(event.data.get("run")) is str:
                    run_id = event.data["run"]
                    base["run"] = run_id
            elif event.v != version:
                raise _bad(
                    event, f"is format v{event.v} in a v{version} run (a run is one version)",
                    run_id,
                )  # fmt: skip
            if event.hash == wanted:
                digest_at = event
            if finished is not None:
                raise _bad(
                    event, "comes after run.finished: a finished run was appended to", run_id
                )
            payload = payload_of(event, run=run_id)
            if isinstance(payload, RunFinished):
                _check_finished(event, payload, run_id)
                finished = payload
            elif isinstance(payload, BlobWithheld):
                withheld.add(payload.sha256)
            if observe is not None:
                observe(event)
            if check_blobs:
                for ref in refs_of(payload, event.data):
                    checker.offer(ref, event.seq, event.prev)
    except RecordCorrupted as exc:
        problem = exc
    finally:
        blob_failure = checker.finish(withheld=withheld)
        said.now(finished=True)

    intact_events, last_intact = reader.count, reader.last_hash
    if blob_failure is not None and (problem is None or blob_failure[0] < (problem.seq or 0)):
        seq, blob_exc, prev = blob_failure
        # The events before the one that refers to the bad blob are intact in every respect.
        intact_events, last_intact = seq, prev
        problem = BlobCorrupted(
            f"event seq {seq} (line {seq + 1}) refers to a bad blob: {blob_exc}",
            run=run_id,
            seq=seq,
            line=seq + 1,
            blob=blob_exc.blob,
            path=blob_exc.path,
        )

    found: dict[str, Any] = {
        "version": version,
        "digest_seq": digest_at.seq
        if digest_at is not None and digest_at.seq < intact_events
        else None,
        "events": intact_events,
        "digest": last_intact if intact_events else None,
        "status": finished.status if finished else None,
        "blobs_checked": checker.checked,
        "torn": reader.torn,
        "first_ts": reader.first.ts if reader.first else None,
        "last_ts": reader.last.ts if reader.last else None,
        "end_offset": reader.end,
        "has_finished_event": finished is not None,
        "has_checkpoint": checkpoint is not None or checkpoint_problem is not None,
    }
    held = _prefix_held(digest_at, intact_events)
    if problem is not None:
        return Verdict(
            **base,
            **found,
            state="corrupt",
            reason=str(problem) + held,
            seq=problem.seq,
            line=problem.line,
            blob=problem.blob,
        )
    if checkpoint_problem is not None:
        return Verdict(**base, **found, state="corrupt", reason=str(checkpoint_problem) + held)
    if checkpoint is not None:
        mismatch = _checkpoint_mismatch(checkpoint, reader, finished, run_id, version)
        if mismatch:
            reason, line = mismatch
            return Verdict(
                **base,
                **found,
                state="corrupt",
                reason=reason + held,
                line=line,
                seq=line - 1 if line is not None and line <= reader.count else None,
            )
        if wanted is not None and wanted != reader.last_hash and digest_at is None:
            return Verdict(
                **base,
                **found,
                state="corrupt",
                reason=f"the run's digest is {reader.last_hash}, and no event of it has "
                f"the hash {digest} you expected: this is not the run that digest names, "
                "or it was altered",
            )
        try:
            signature = read_signature(run_dir, checkpoint, run=run_id)
        except RecordCorrupted as exc:
            return Verdict(**base, **found, state="corrupt", reason=str(exc))
        if signature is not None and signature.checked:
            found.update(signer=signature.fingerprint, signer_key=signature.key)
        content = (
            f"{reader.count} events, {checker.checked} "
            f"blob{'' if checker.checked == 1 else 's'}, "
            f"status {finished.status if finished else '?'}"
        )
        if digest_at is not None and wanted != reader.last_hash:
            content += _continues(digest_at, reader)
        if signers is not None:
            return _trusted(base, found, content, signature, signers)
        return Verdict(**base, **found, state="intact", reason=f"{content}, {_signed(signature)}")
    if locked:
        return Verdict(
            **base,
            **found,
            state="open",
            reason=f"a writer is still recording ({reader.count} intact events so far)" + held,
        )
    recover_hint = f"run `precip-repro recover {run_id}` to finish it as interrupted"
    if reader.torn is not None:
        reason = (
            f"torn tail at line {reader.torn.line} ({reader.torn.size} bytes after "
            f"event seq {reader.count - 1}: the writer was killed mid-write); {recover_hint}"
        )
    elif reader.count == 0:
        reason = "the log holds no events (the writer died at once); nothing to keep"
    elif finished is not None:
        reason = (
            f"the run finished ({finished.status}, {reader.count} events) but no checkpoint "
            f"seals it; run `precip-repro recover {run_id}` to write it"
        )
        return Verdict(**base, **found, state="unsealed", reason=reason + held)
    else:
        reason = (
            f"no run.finished after event seq {reader.count - 1} (the recording "
            f"process ended without finishing); {recover_hint}"
        )
    return Verdict(**base, **found, state="abandoned", reason=reason + held)


def _prefix_held(digest_at: Event | None, intact: int) -> str:
    """What a digest given to check still proves of a run that is not intact as a whole."""
    if digest_at is None or digest_at.seq >= intact:
        return ""
    return (
        f"; the digest you gave names event seq {digest_at.seq} ({digest_at.type}), and "
        f"the events up to it are intact"
    )


def _continues(digest_at: Event, reader: LogReader) -> str:
    more = reader.count - 1 - digest_at.seq
    return (
        f"; the digest you gave names event seq {digest_at.seq} ({digest_at.type}), not the "
        f"run's end: the run holds it as cited and continues past it ({more} more "
        f"event{'' if more == 1 else 's'}); the run's digest is {reader.last_hash}"
    )


def _signed(signature: Signature | None) -> str:
    if signature is None:
        return "unsigned"
    if not signature.checked:
        return (
            f"signed by {signature.fingerprint}, a {signature.key.split()[0]} key precip-repro "
            "cannot check (try ssh-keygen -Y verify)"
        )
    return f"signed by {signature.fingerprint}"


def _trusted(
    base: dict[str, Any],
    found: dict[str, Any],
    content: str,
    signature: Signature | None,
    signers: TrustedKeys,
) -> Verdict:
    """The verdict on an intact run under ``verify --signer``: intact only when a trusted
    key signed it."""
    source = signers.source
    if signature is None:
        why = (
            f"the run is intact but unsigned (it has no checkpoint.sig): nothing ties it to a "
            f"key in {source}"
        )
    elif not signature.checked:
        why = f"the run is {_signed(signature)}; so it is not known to be signed by {source}"
    else:
        trusted = signers.find(signature)
        if trusted is not None:
            name = f"{trusted.name} ({signature.fingerprint})" if trusted.name else None
            return Verdict(
                **base,
                **found,
                state="intact",
                reason=f"{content}, signed by {name or signature.fingerprint}, a key in {source}",
                signer_name=trusted.name,
            )
        why = (
            f"the run is intact but signed by {signature.fingerprint}, which is no key in "
            f"{source}: it was rewritten and signed again by another key, or {source} names "
            "the wrong key"
        )
    return Verdict(**base, **found, state="untrusted", reason=why)


def _bad(event: Event, reason: str, run: str) -> RecordCorrupted:
    return RecordCorrupted(
        f"event seq {event.seq} (line {event.seq + 1}) {event.type}: {reason}",
        run=run,
        seq=event.seq,
        line=event.seq + 1,
    )


def _check_finished(event: Event, finished: RunFinished, run: str) -> None:
    if finished.status not in RUN_STATUSES:
        raise _bad(event, f"status {finished.status!r} is not one of {RUN_STATUSES}", run)
    if finished.events != event.seq + 1:
        raise _bad(event, f"says {finished.events} events, but it is event {event.seq + 1}", run)
    if finished.digest != event.prev:
        raise _bad(event, "its digest is not the hash of the event before it", run)


def _checkpoint_mismatch(
    checkpoint: Checkpoint,
    reader: LogReader,
    finished: RunFinished | None,
    run: str,
    version: int | None,
) -> tuple[str, int | None] | None:
    """Why the log does not match its checkpoint, and the first line concerned."""
    where = f"the checkpoint says the run finished with {checkpoint.events} events"
    if checkpoint.run != run:
        return f"the checkpoint names run {checkpoint.run!r}, the log is run {run!r}", None
    if version is not None and checkpoint.v != version:
        return f"the checkpoint is format v{checkpoint.v}, the log v{version}", None
    if reader.torn is not None:
        return (
            f"line {reader.torn.line}: {reader.torn.size} bytes follow the last complete event "
            f"of a finished run ({where}): the log was truncated or appended to",
            reader.torn.line,
        )
    if reader.count < checkpoint.events:
        return (
            f"{where}, the log holds {reader.count}: events after seq {reader.count - 1} "
            "were removed (a finished run was truncated)",
            reader.count + 1,
        )
    if reader.count > checkpoint.events:
        return (
            f"{where}, the log holds {reader.count}: events were added after it finished",
            checkpoint.events + 1,
        )
    if finished is None:
        return f"{where}, but the log has no run.finished", reader.count
    if reader.last_hash != checkpoint.digest:
        return (
            f"{where} and digest {checkpoint.digest}, but the log's digest is "
            f"{reader.last_hash}: the log was rewritten",
            reader.count,
        )
    return None
