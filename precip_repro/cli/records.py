"""The commands that check and mend a run, and read its blobs: verify, recover, cat."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import attrs

from precip_repro.cli.core import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    HEX_RE,
    Usage,
    resolve,
    signers_of,
)
from precip_repro.commandline import DOCUMENT_VERSION, showing_progress, write_document
from precip_repro.exceptions import (
    AmbiguousRun,
    RecordWriteFailed,
    RunNotFound,
)
from precip_repro.record.blobs import BlobStore
from precip_repro.record.events import BlobRef, BlobWithheld
from precip_repro.record.reader import LogReader
from precip_repro.record.recovery import Recovery, recover
from precip_repro.record.store import EVENTS, OBJECTS
from precip_repro.record.verify import Verdict, blob_refs, verify

__all__ = ["cmd_cat", "cmd_recover", "cmd_verify"]


def cmd_verify(args: argparse.Namespace) -> int:
    if args.digest is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.digest):
        raise Usage(f"--digest must be 64 hex digits (a run's full digest), not {args.digest!r}")
    signers = signers_of(args)
    run_dir = resolve(args)
    with showing_progress(quiet=args.quiet or args.json):  # a large run takes a while
        verdict = verify(run_dir, digest=args.digest, signers=signers)
    if args.json:
        write_document(_verdict_json(verdict, claimed=args.digest))
        return verdict.exit_status
    print(f"{verdict.run}: {verdict.state}")
    print(f"  {verdict.reason}")
    if verdict.signer is not None:
        print(f"  signer: {verdict.signer_key} ({verdict.signer})")
    if verdict.digest is not None:
        if verdict.state in ("intact", "untrusted"):
            print(f"  digest: {verdict.digest}")
        else:  # the hash of the last event that holds in every respect, its blobs included
            print(f"  last intact event: seq {verdict.events - 1}, hash {verdict.digest}")
    if verdict.state == "untrusted":
        print(
            "  what to do: get the signer's public key from its owner (or where they publish "
            "it) and check again; do not trust the run's own signature on its word"
        )
    if verdict.continues_past_digest:
        print(
            f"  the digest you gave: event seq {verdict.digest_seq} of {verdict.events}, "
            "a prefix of this run; it continues past that event (cite the digest above for "
            "the whole run)"
        )
    if verdict.state == "corrupt":
        print(
            f"  what to do: the run's record was altered or damaged after it was written; "
            f"restore {verdict.path} from a copy (verify the copy the same way)"
        )
    return verdict.exit_status


def _verdict_json(verdict: Verdict, *, claimed: str | None) -> dict[str, Any]:
    whole = verdict.state in ("intact", "untrusted")
    return {
        "version": DOCUMENT_VERSION,
        "run": verdict.run,
        "path": str(verdict.path),
        "state": verdict.state,
        "reason": verdict.reason,
        "exit_status": verdict.exit_status,
        "format_version": verdict.version,
        "events": verdict.events,
        "status": verdict.status,
        "digest": verdict.digest if whole else None,
        "last_intact_digest": None if whole else verdict.digest,
        "fault": (
            None
            if verdict.state != "corrupt"
            else {"seq": verdict.seq, "line": verdict.line, "blob": verdict.blob}
        ),
        "blobs_checked": verdict.blobs_checked,
        "torn": (
            None if verdict.torn is None else {"line": verdict.torn.line, "size": verdict.torn.size}
        ),
        "first_ts": verdict.first_ts,
        "last_ts": verdict.last_ts,
        "signer": (
            None
            if verdict.signer is None
            else {
                "fingerprint": verdict.signer,
                "key": verdict.signer_key,
                "name": verdict.signer_name,
            }
        ),
        "claim": (
            None
            if claimed is None
            else {
                "digest": claimed.lower(),
                "seq": verdict.digest_seq,
                "prefix": verdict.continues_past_digest,
            }
        ),
    }


def cmd_recover(args: argparse.Namespace) -> int:
    run_dir = resolve(args)
    try:
        done = recover(run_dir)
    except RecordWriteFailed as exc:
        print(f"precip-repro recover: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE  # nothing was written: the run is as incomplete as it was
    if args.json:
        write_document(_recovery_json(done))
        return EXIT_OK
    if done.action == "nothing":
        print(f"{done.run}: already finished and intact; nothing to do")
    elif done.action == "checkpoint":
        print(f"{done.run}: the run had finished; its missing checkpoint was written")
    else:
        print(f"{done.run}: finished as interrupted after {done.events - 1} intact events")
        if done.torn_tail is not None:
            print(
                f"  the torn tail ({done.torn_tail.size} bytes) is kept as blob "
                f"{done.torn_tail.sha256}"
            )
    print(f"  digest: {done.digest}")
    if done.signature is not None:
        print(f"  signed by {done.signature.fingerprint}")
    elif done.signing_problem is not None:
        print(f"  unsigned: {done.signing_problem}")
    return EXIT_OK


def _recovery_json(done: Recovery) -> dict[str, Any]:
    torn = done.torn_tail
    return {
        "version": DOCUMENT_VERSION,
        "run": done.run,
        "action": done.action,
        "events": done.events,
        "digest": done.digest,
        "torn_tail": None if torn is None else {"sha256": torn.sha256, "size": torn.size},
        "signer": None if done.signature is None else done.signature.fingerprint,
        "signing_problem": done.signing_problem,
    }


def cmd_cat(args: argparse.Namespace) -> int:
    run_dir = resolve(args)
    wanted = args.sha256.lower()
    if not HEX_RE.fullmatch(wanted):
        raise Usage(f"{args.sha256!r} is not a sha256 (or a prefix of at least 4 hex digits)")
    blobs = BlobStore(run_dir / OBJECTS, run=run_dir.name)
    ref = _find_ref(run_dir, wanted)
    out = sys.stdout.buffer
    for chunk in blobs.iter_verified(ref):
        out.write(chunk)
    out.flush()
    return EXIT_OK


def _find_ref(run_dir: Path, wanted: str) -> BlobRef:
    """The one blob reference in the run's log whose sha256 starts with ``wanted``."""
    found: dict[str, BlobRef] = {}
    for event in LogReader(run_dir / EVENTS, run=run_dir.name):
        if event.type == BlobWithheld.TYPE and str(event.data.get("sha256")) in found:
            sha = str(event.data["sha256"])
            found[sha] = attrs.evolve(found[sha], withheld=str(event.data.get("reason")))
        for ref in blob_refs(event, run=run_dir.name, withheld=True):
            if ref.sha256.startswith(wanted):
                previous = found.get(ref.sha256)
                if previous is None or (previous.text is None and ref.text is not None):
                    found[ref.sha256] = ref
    if not found:
        raise RunNotFound(
            f"run {run_dir.name} refers to no blob {wanted}; `precip-repro show "
            f"{run_dir.name}` lists what it holds",
            run=run_dir.name,
            blob=wanted,
        )
    if len(found) > 1:
        raise AmbiguousRun(
            f"{wanted!r} matches {len(found)} blobs of run {run_dir.name}: "
            f"{', '.join(sorted(found))}; give more digits",
            candidates=sorted(found),
            run=run_dir.name,
        )
    return next(iter(found.values()))
