"""``precip-repro show``: a run's timeline, one line per event; ``--json`` the same as a
document, ``--follow`` a run being recorded, each event as it is appended."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from precip_repro.cli.core import EXIT_BAD, EXIT_INCOMPLETE, EXIT_OK, Usage, resolve
from precip_repro.commandline import DOCUMENT_VERSION, write_document
from precip_repro.exceptions import RecordCorrupted
from precip_repro.record.events import Event
from precip_repro.record.journal import is_locked
from precip_repro.record.reader import LogReader
from precip_repro.record.signature import read_signature
from precip_repro.record.store import EVENTS, read_checkpoint
from precip_repro.timeline import Entry, entries, timeline

__all__ = ["POLL_S", "cmd_show", "show_options"]

POLL_S: Final = 0.2
"""How often ``--follow`` looks for new events: a person watching sees them at once."""


def show_options(show: argparse.ArgumentParser) -> None:
    show.add_argument("run", metavar="RUN")
    show.add_argument("--json", action="store_true", help="one JSON document (docs/json.md)")
    show.add_argument(
        "--follow",
        action="store_true",
        help="tail a run being recorded: print each event as it is appended, until the run "
        "finishes (or Ctrl-C)",
    )


def cmd_show(args: argparse.Namespace) -> int:
    run_dir = resolve(args, blobs=False)
    reader = LogReader(run_dir / EVENTS, run=run_dir.name)
    if args.follow:
        if args.json:
            raise Usage("show --follow prints lines as events arrive; --json needs the whole run")
        return _follow(run_dir, reader)
    if args.json:
        return _show_json(run_dir, reader)
    state, signer, detail = _signature(run_dir)
    print(f"run {run_dir.name}  ({run_dir})")
    print(f"signature: {_signature_line(run_dir.name, state, signer, detail)}")
    try:
        for line in timeline(reader):
            print(line)
    except RecordCorrupted as exc:
        print(f"!! stopped: {exc}")
        print(f"   run `precip-repro verify {run_dir}` for the full check")
        return EXIT_BAD
    if reader.torn is not None:
        print(
            f"!! torn tail at line {reader.torn.line} ({reader.torn.size} bytes): the writer "
            f"was cut off; `precip-repro recover {run_dir.name}` finishes the run"
        )
    return EXIT_OK


def _signature(run_dir: Path) -> tuple[str, str | None, str | None]:
    """Who signed the run's checkpoint, as far as the checkpoint and signature tell (the
    log is not read: ``verify`` checks that the checkpoint is the log's): the state
    (``unfinished``, ``unsigned``, ``signed``, ``unchecked``, ``bad``), the signer's
    fingerprint, and the key's type or what is wrong."""
    try:
        checkpoint = read_checkpoint(run_dir, run=run_dir.name)
        if checkpoint is None:
            return "unfinished", None, None
        signature = read_signature(run_dir, checkpoint, run=run_dir.name)
    except RecordCorrupted as exc:
        return "bad", None, str(exc)
    if signature is None:
        return "unsigned", None, None
    state = "signed" if signature.checked else "unchecked"
    return state, signature.fingerprint, signature.key.split()[0]


def _signature_line(run: str, state: str, signer: str | None, detail: str | None) -> str:
    if state == "unfinished":
        return "none yet (no checkpoint: the run has not finished)"
    if state == "bad":
        return f"BAD — {detail}"
    if state == "unsigned":
        return "unsigned"
    if state == "unchecked":
        return f"{signer} ({detail}: not checked here)"
    return (
        f"{signer} ({detail}); `precip-repro verify {run} --signer KEY` checks it is a "
        "key you trust"
    )


def _as_json(entry: Entry) -> dict[str, Any]:
    event = entry.event
    return {
        "seq": event.seq,
        "ts": event.ts,
        "offset_s": round(entry.offset_s, 6),
        "type": event.type,
        "description": entry.description,
        "data": event.data,
    }


def _show_json(run_dir: Path, reader: LogReader) -> int:
    state, signer, detail = _signature(run_dir)
    events: list[dict[str, Any]] = []
    stopped = None
    try:
        events.extend(_as_json(entry) for entry in entries(reader))
    except RecordCorrupted as exc:
        stopped = str(exc)
    torn = reader.torn
    write_document(
        {
            "version": DOCUMENT_VERSION,
            "run": run_dir.name,
            "path": str(run_dir),
            "signature": {"state": state, "signer": signer, "detail": detail},
            "events": events,
            "torn": None if torn is None else {"line": torn.line, "size": torn.size},
            "stopped": stopped,
        }
    )
    return EXIT_BAD if stopped is not None else EXIT_OK


def _arriving(run_dir: Path, reader: LogReader) -> Iterator[Event]:
    """The run's events, then each one as its writer appends it, until ``run.finished``;
    ends early when the writer is gone without finishing (``reader.torn`` or no finish)."""
    while True:
        # Whether a writer holds the log is asked before reading: what it appended before
        # letting go is then read too, and an ended writer is never taken for a slow one.
        writing = is_locked(run_dir / EVENTS)
        for event in reader.more():
            yield event
            if event.type == "run.finished":
                return
        if not writing:
            return
        time.sleep(POLL_S)


def _follow(run_dir: Path, reader: LogReader) -> int:
    print(f"run {run_dir.name}  ({run_dir}), following", flush=True)
    try:
        for line in timeline(_arriving(run_dir, reader)):
            print(line, flush=True)
    except RecordCorrupted as exc:
        print(f"!! stopped: {exc}")
        return EXIT_BAD
    if reader.last is not None and reader.last.type == "run.finished":
        return EXIT_OK
    print(
        f"!! the writer of {run_dir.name} is gone and the run did not finish"
        + (f" (a torn tail at line {reader.torn.line})" if reader.torn else "")
        + f"; `precip-repro recover {run_dir.name}` finishes it"
    )
    return EXIT_INCOMPLETE
