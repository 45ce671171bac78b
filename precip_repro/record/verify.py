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

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro.exceptions import (
    BlobCorrupted,
    RecordCorrupted,
    RecordError,
    RecordIncomplete,
    RecordWriteFailed,
)
from precip_repro.logs import get_logger
from precip_repro.record.blobs import BlobStore
from precip_repro.record.canonical import JSON
from precip_repro.record.events import (
    FORMAT_VERSION,
    Event,
    converter,
    parse_ts,
    payload_of,
    unstructure,
)
from precip_repro.record.files import open_regular
from precip_repro.record.journal import Journal, is_locked
from precip_repro.record.payloads import (
    RUN_STATUSES,
    BlobRef,
    BlobWithheld,
    Payload,
    RunFinished,
    refs_in,
)
from precip_repro.record.reader import LogReader, TornTail
from precip_repro.record.signature import Signature, read_signature
from precip_repro.record.signing import Signer, sign_run
from precip_repro.record.store import (
    EVENTS,
    OBJECTS,
    Checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from precip_repro.record.trusted import TrustedKeys

__all__ = ["EXIT_STATUS", "Recovery", "Verdict", "blob_refs", "recover", "verify"]

log = get_logger(__name__)

EXIT_STATUS: Final = {
    "intact": 0,
    "corrupt": 1,
    "untrusted": 1,
    "open": 3,
    "abandoned": 3,
    "unsealed": 3,
}
_BLOB_KEYS: Final = frozenset({"sha256", "size", "text", "withheld"})


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


def _as_ref(value: dict[str, Any]) -> BlobRef | None:
    if not (
        "sha256" in value
        and "size" in value
        and value.keys() <= _BLOB_KEYS
        and type(value["sha256"]) is str
        and type(value["size"]) is int
        and type(value.get("text", "")) is str
        and type(value.get("withheld", "")) is str
    ):
        return None
    try:
        return BlobRef(
            sha256=value["sha256"],
            size=value["size"],
            text=value.get("text"),
            withheld=value.get("withheld"),
        )
    except ValueError:
        return None  # shaped like a reference, but its sha256 is not 64 hex digits


def _ref_dicts(data: JSON) -> Iterator[dict[str, Any]]:
    """Every dict in ``data`` shaped like a blob reference."""
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "sha256" in value and "size" in value and value.keys() <= _BLOB_KEYS:
                yield value
            else:
                stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def blob_refs(event: Event, *, run: str | None = None, withheld: bool = False) -> Iterator[BlobRef]:
    """Every stored blob an event refers to: the typed reference fields of a type this
    version knows; anything shaped like a reference in a type it does not know (a newer
    writer's). With ``withheld``, also the references kept by hash only. Raises
    :class:`RecordCorrupted` when a known type's data does not fit."""
    for ref in _refs(payload_of(event, run=run), event.data):
        if withheld or ref.withheld is None:
            yield ref  # a withheld blob was never stored: nothing to check


def _refs(payload: Payload | None, data: JSON) -> Iterable[BlobRef]:
    # A known type's typed reference fields; in a type this version does not know,
    # whatever looks like a reference.
    if payload is not None:
        return refs_in(payload)
    return filter(None, map(_as_ref, _ref_dicts(data)))


class _BlobChecker:
    """Hashes referenced blobs on a few threads while the log is still being read."""

    def __init__(self, store: BlobStore, *, workers: int) -> None:
        self._store = store
        self._seen: set[tuple[Any, ...]] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-blob")
        self._pending: collections.deque[tuple[Future[None], int, str]] = collections.deque()
        self._limit = workers * 4
        self.failures: list[tuple[int, BlobCorrupted, str]] = []
        """(seq, error, prev): the event that refers to a bad blob, and the hash of the
        event before it — the last one intact in every respect."""
        self.checked = 0

    def offer(self, ref: BlobRef, seq: int, prev: str) -> None:
        """Check a reference unless the same one was checked already."""
        if ref.withheld is not None:
            return
        key = (ref.sha256, ref.size, ref.text is not None)
        if key in self._seen:
            return
        self._seen.add(key)
        self._submit(ref, seq, prev)

    def _submit(self, ref: BlobRef, seq: int, prev: str) -> None:
        self.checked += 1
        if ref.text is not None:
            self._check(ref, seq, prev)
            return
        self._pending.append((self._pool.submit(self._store.check, ref), seq, prev))
        while len(self._pending) > self._limit:
            self._collect()

    def _check(self, ref: BlobRef, seq: int, prev: str) -> None:
        try:
            self._store.check(ref)
        except BlobCorrupted as exc:
            self.failures.append((seq, exc, prev))

    def _collect(self) -> None:
        future, seq, prev = self._pending.popleft()
        try:
            future.result()
        except BlobCorrupted as exc:
            self.failures.append((seq, exc, prev))
        except OSError as exc:
            self.failures.append(
                (seq, BlobCorrupted(f"blob could not be read: {exc}", path=exc.filename), prev)
            )

    def finish(self, *, withheld: Iterable[str] = ()) -> tuple[int, BlobCorrupted, str] | None:
        """The first failure, leaving out blobs a later ``blob.withheld`` removed."""
        while self._pending:
            self._collect()
        self._pool.shutdown()
        excused = set(withheld)
        failures = [failure for failure in self.failures if failure[1].blob not in excused]
        return min(failures, key=lambda failure: failure[0]) if failures else None


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
    checker = _BlobChecker(
        BlobStore(run_dir / OBJECTS, run=run_id),
        workers=workers or min(4, os.cpu_count() or 1),
    )
    finished: RunFinished | None = None
    problem: RecordCorrupted | None = None
    withheld: set[str] = set()
    wanted = digest.lower() if digest is not None else None
    digest_at: Event | None = None
    version: int | None = None
    try:
        for event in reader:
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
                for ref in _refs(payload, event.data):
                    checker.offer(ref, event.seq, event.prev)
    except RecordCorrupted as exc:
        problem = exc
    finally:
        blob_failure = checker.finish(withheld=withheld)

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


@attrs.frozen(kw_only=True)
class Recovery:
    """What ``recover`` did: ``finished`` (appended run.finished), ``checkpoint`` (wrote
    only the missing checkpoint) or ``nothing`` (the run was already intact)."""

    action: str
    run: str
    digest: str
    events: int
    torn_tail: BlobRef | None = None
    signature: Signature | None = None
    """Whose signature recover wrote over the new checkpoint (None: unsigned, or unchanged)."""
    signing_problem: str | None = None
    """Why the checkpoint recover wrote is unsigned, when signing failed."""


def _nothing_to_do(verdict: Verdict) -> Recovery:
    assert verdict.digest is not None
    return Recovery(action="nothing", run=verdict.run, digest=verdict.digest, events=verdict.events)


def recover(run_dir: Path, *, sign: bool = True, signer: Signer | None = None) -> Recovery:
    """Finish an abandoned run: save a torn tail as a blob, cut it off, append
    ``run.finished`` with status ``interrupted``, write the checkpoint and sign it (as
    :meth:`Run.finish` does; a key that cannot sign leaves it unsigned).

    Refuses an open run (:class:`RunLocked`), a corrupt one (:class:`RecordCorrupted`) and
    an empty one (:class:`RecordIncomplete`). Intact events are never rewritten.
    """
    events_path = run_dir / EVENTS
    try:
        open_regular(events_path, what="event log", run=run_dir.name).close()
    except FileNotFoundError:
        raise RecordCorrupted(
            f"{events_path} is missing: nothing to recover", path=events_path
        ) from None
    try:
        journal = Journal.acquire(events_path, run=run_dir.name)
    except RecordError:
        raise
    except OSError as exc:
        # A reviewer's read-only copy: a finished run needs nothing written.
        verdict = verify(run_dir)
        if verdict.state == "intact":
            return _nothing_to_do(verdict)
        raise RecordWriteFailed(
            f"cannot open {events_path} for writing to recover run {verdict.run} "
            f"({verdict.state}): {exc.strerror or exc}; nothing was changed. Recover a "
            "writable copy instead (cp -a the run directory, then recover the copy)",
            cause=exc,
            run=verdict.run,
            path=events_path,
        ) from exc
    try:
        verdict = verify(run_dir, _ignore_lock=True)
        if verdict.state == "intact":
            return _nothing_to_do(verdict)
        if verdict.state == "corrupt":
            raise RecordCorrupted(
                f"run {verdict.run} is corrupt, not abandoned — recover changes nothing: "
                f"{verdict.reason}",
                run=verdict.run,
                seq=verdict.seq,
                line=verdict.line,
                blob=verdict.blob,
            )
        if verdict.events == 0:
            raise RecordIncomplete(
                f"run {verdict.run} holds no intact event, so there is nothing to finish; "
                f"remove {run_dir} if it is of no use",
                run=verdict.run,
                path=run_dir,
            )
        assert verdict.digest is not None
        version = verdict.version or FORMAT_VERSION
        if verdict.has_finished_event and verdict.torn is None:
            write_checkpoint(
                run_dir,
                Checkpoint(
                    run=verdict.run, events=verdict.events, digest=verdict.digest, v=version
                ),
            )
            log.info("checkpoint rewritten", run=verdict.run, digest=verdict.digest)
            signed = sign_run(run_dir, run=verdict.run, signer=signer) if sign else None
            return Recovery(
                action="checkpoint",
                run=verdict.run,
                digest=verdict.digest,
                events=verdict.events,
                signature=signed.signature if signed else None,
                signing_problem=signed.problem if signed else None,
            )
        blobs = BlobStore(run_dir / OBJECTS, run=verdict.run)
        torn_ref: BlobRef | None = None
        recovered: dict[str, JSON] = {"reason": verdict.reason}
        if verdict.torn is not None:
            # Keep the torn bytes: they are the last thing the writer was saying.
            with events_path.open("rb") as f:
                f.seek(verdict.torn.offset)
                torn_ref = blobs.put_stream(f)
            blobs.sync()
            recovered["torn_tail"] = converter.unstructure(torn_ref)
            recovered["torn_line"] = verdict.torn.line
        # A run is one version throughout: a v1 run is finished in v1.
        journal.resume_at(
            seq=verdict.events, prev=verdict.digest, end=verdict.end_offset, v=version
        )
        assert verdict.first_ts is not None and verdict.last_ts is not None
        finished = RunFinished(
            status="interrupted",
            events=verdict.events + 1,
            duration_ns=parse_ts(verdict.last_ts) - parse_ts(verdict.first_ts),
            digest=verdict.digest,
            recovered=recovered,
        )
        event = journal.append(finished.TYPE, unstructure(finished), sync=True, final=True)
        write_checkpoint(
            run_dir,
            Checkpoint(run=verdict.run, events=verdict.events + 1, digest=event.hash, v=version),
        )
        log.info("run recovered", run=verdict.run, digest=event.hash, torn=torn_ref is not None)
        signed = sign_run(run_dir, run=verdict.run, signer=signer) if sign else None
        return Recovery(
            action="finished",
            run=verdict.run,
            digest=event.hash,
            events=verdict.events + 1,
            torn_tail=torn_ref,
            signature=signed.signature if signed else None,
            signing_problem=signed.problem if signed else None,
        )
    finally:
        journal.close()
