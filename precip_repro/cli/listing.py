"""``precip-repro ls``: the runs of a store, newest first, with what tells them apart.

Fast over a store of many large runs: each run's checkpoint, signature and the first and
last lines of its log are read, never the whole log (``verify`` is the check); of an S3
store, its index alone (no run, no blob is fetched).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any, Final

from precip_repro.cli.core import EXIT_OK, Usage, store_of
from precip_repro.record.summary import RunSummary
from precip_repro.timeline import format_duration

__all__ = ["LS_FORMAT", "LS_HELP", "cmd_ls", "ls_options"]

LS_HELP: Final = "list runs, newest first: status (a replay's verdict), script, digest, signer"

LS_FORMAT: Final = 1
"""The version of ``ls --json`` (docs/json.md)."""

_HINTS: Final = {
    "abandoned": "`precip-repro recover RUN` finishes an abandoned run as interrupted",
    "unsealed": "`precip-repro recover RUN` writes the checkpoint of a finished run",
    "unreadable": "`precip-repro verify RUN` says what is wrong with an unreadable run",
}
_AGO: Final = re.compile(r"(\d+)([mhdw])")
_UNITS: Final = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def ls_options(ls: argparse.ArgumentParser) -> None:
    """``ls``'s own options."""
    ls.add_argument("--name", metavar="TEXT", help="only runs whose name contains TEXT")
    ls.add_argument("--script", metavar="TEXT", help="only runs whose script's path contains TEXT")
    ls.add_argument(
        "--status",
        metavar="STATUS",
        help="only runs that ended so (ok, failed, interrupted, open, abandoned, unsealed, "
        "unreadable) "
        "or replays with that verdict (reproduced, diverged, incomplete)",
    )
    ls.add_argument(
        "--since",
        metavar="WHEN",
        help="only runs started since WHEN: an ISO date or time (UTC), or 30m, 12h, 7d, 2w ago",
    )
    ls.add_argument("--limit", metavar="N", type=_positive, help="at most N runs (the newest)")
    ls.add_argument("--json", action="store_true", help="one JSON document (docs/json.md)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _since(text: str) -> int:
    """``--since`` as nanoseconds since the epoch."""
    ago = _AGO.fullmatch(text)
    if ago:
        try:
            when = datetime.now(UTC) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
        except (OverflowError, ValueError):
            raise Usage(f"--since {text!r}: further back than any date can be") from None
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise Usage(
                f"--since {text!r}: give an ISO date or time (2026-12-01, "
                "2026-12-01T09:30) in UTC, or how long ago (30m, 12h, 7d, 2w)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def _wanted(row: RunSummary, args: argparse.Namespace, since: int | None) -> bool:
    if args.name and args.name not in row.name:
        return False
    if args.script and args.script not in (row.script or ""):
        return False
    if args.status and args.status not in (row.status, (row.verdict or "").split(" ")[0]):
        return False
    return since is None or (row.started_ns is not None and row.started_ns >= since)


def _status(row: RunSummary) -> str:
    status = f"{row.status}, {row.verdict}" if row.verdict else row.status
    return f"{status}, unpushed" if row.pushed is False else status


def _as_json(row: RunSummary) -> dict[str, Any]:
    started = (
        datetime.fromtimestamp(row.started_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
        if row.started_ns is not None
        else None
    )
    return {
        "run": row.run,
        "name": row.name,
        "status": row.status,
        "verdict": row.verdict.split(" ")[0] if row.verdict else None,
        "events": row.events,
        "duration_s": None if row.duration_ns is None else round(row.duration_ns / 1e9, 3),
        "started": started,
        "script": row.script,
        "digest": row.digest,
        "signer": row.signer,
        "replay_of": row.replay_of,
        "path": str(row.path),
        "pushed": row.pushed,
    }


def cmd_ls(args: argparse.Namespace) -> int:
    store = store_of(args)
    since = _since(args.since) if args.since else None
    rows = [row for row in reversed(store.summaries()) if _wanted(row, args, since)]
    if args.limit:
        rows = rows[: args.limit]
    if args.json:
        json.dump(
            {"version": LS_FORMAT, "store": store.location, "runs": [_as_json(r) for r in rows]},
            sys.stdout,
            indent=2,
        )
        print()
        return EXIT_OK
    if not rows:
        filtered = any(getattr(args, k) for k in ("name", "script", "status", "since"))
        print(f"no runs in {store.location}" + (" match" if filtered else ""))
        return EXIT_OK
    table = [
        (
            row.run,
            _status(row),
            "?" if row.events is None else str(row.events),
            format_duration(row.duration_ns),
            PurePath(row.script).name if row.script else "-",
            row.digest[:12] if row.digest else "-",
            row.signer.removeprefix("SHA256:")[:12] if row.signer else "-",
            row.replay_of or "",
        )
        for row in rows
    ]
    header = ("RUN", "STATUS", "EVENTS", "DURATION", "SCRIPT", "DIGEST", "SIGNER", "REPLAY OF")
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        cells = [
            cell.rjust(width) if i == 2 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    for status in sorted({row.status for row in rows} & _HINTS.keys()):
        print(_HINTS[status])
    if any(row.pushed is False for row in rows):
        print(f"`precip-repro push RUN --records {store.location}` sends an unpushed run")
    return EXIT_OK
