"""Recovery: a run whose writer died (or whose checkpoint could not be written) finished.

An abandoned run gets its torn tail kept as a blob and cut off, and a ``run.finished``
of status ``interrupted``; an unsealed one its checkpoint. What it finishes it signs.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from precip_repro.exceptions import (
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
    converter,
    parse_ts,
    unstructure,
)
from precip_repro.record.files import open_regular
from precip_repro.record.journal import Journal
from precip_repro.record.payloads import (
    BlobRef,
    RunFinished,
)
from precip_repro.record.signature import Signature
from precip_repro.record.signing import Signer, sign_run
from precip_repro.record.store import (
    EVENTS,
    OBJECTS,
    Checkpoint,
    write_checkpoint,
)
from precip_repro.record.verify import Verdict, verify

__all__ = ["Recovery", "recover"]

log = get_logger(__name__)


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
