"""The commands that move runs between machines and stores: push, pull, rm, prune."""

from __future__ import annotations

import argparse
import re
import shutil
from datetime import timedelta
from typing import Final

from precip_repro.cli.core import EXIT_OK, Usage, store_of
from precip_repro.stores import Store, StoreCapability, open_store
from precip_repro.stores.local import remove_run_dir

__all__ = [
    "cmd_prune",
    "cmd_pull",
    "cmd_push",
    "cmd_rm",
    "options_prune",
    "options_pull",
    "options_push",
    "options_rm",
]

_GRACE: Final = re.compile(r"(\d+)([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _shared(store: Store, option: str) -> Store:
    if StoreCapability.SHARED not in store.capabilities:
        raise Usage(
            f"{store.location} is a directory of runs, not a shared store: give {option} "
            "s3://BUCKET/PREFIX"
        )
    return store


def cmd_push(args: argparse.Namespace) -> int:
    store = store_of(args)
    target = _shared(open_store(args.to) if args.to else store, "--to")
    run_dir = store.local.resolve(args.run)  # the run as recorded here
    result = target.push(run_dir)
    if result.already:
        repaired = f"; {result.sent} missing blobs sent again" if result.sent else ""
        print(f"{result.run} is in {target.location} already{repaired}")
    else:
        print(
            f"{result.run} pushed to {target.location}: {result.sent} blobs sent "
            f"({result.bytes_sent} bytes), {result.present} already there"
        )
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    source = _shared(open_store(args.from_) if args.from_ else store_of(args), "--from")
    cached = source.pull(args.run)
    if not args.from_:
        print(cached)
        return EXIT_OK
    into = store_of(args)
    if StoreCapability.SHARED in into.capabilities:
        raise Usage("pull --from URL copies a run into a directory of runs: give --records DIR")
    target = into.local.root / cached.name
    if target.exists():
        print(f"{cached.name} is in {into.location} already")
        return EXIT_OK
    into.local.root.mkdir(parents=True, exist_ok=True)
    staging = into.local.root / f".pulling-{cached.name}"
    try:
        shutil.copytree(cached, staging, ignore=shutil.ignore_patterns("tmp"))
        staging.rename(target)
    finally:
        if staging.exists():
            remove_run_dir(staging)
    print(target)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    store = store_of(args)
    removal = store.remove(args.run)
    print(
        f"removed {', '.join(removal.runs)} from {store.location}, and "
        f"{removal.blobs} blobs no other run references ({removal.bytes} bytes)"
    )
    return EXIT_OK


def _grace(text: str) -> timedelta:
    found = _GRACE.fullmatch(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration like 0s, 30m, 12h, 1d")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def cmd_prune(args: argparse.Namespace) -> int:
    store = store_of(args)
    removal = store.prune(grace=args.grace)
    print(
        f"pruned {store.location}: {len(removal.runs)} pushes never completed, "
        f"{removal.blobs} blobs no run references ({removal.bytes} bytes)"
    )
    return EXIT_OK


def options_push(push: argparse.ArgumentParser) -> None:
    push.add_argument("run", metavar="RUN", help="a run recorded here (in --records)")
    push.add_argument(
        "--to", metavar="s3://BUCKET/PREFIX", help="the store to push to (default: --records)"
    )


def options_pull(pull: argparse.ArgumentParser) -> None:
    pull.add_argument("run", metavar="RUN")
    pull.add_argument(
        "--from",
        dest="from_",
        metavar="s3://BUCKET/PREFIX",
        help="copy the run from this store into --records DIR (default: fetch it from the "
        "--records store into its local cache, to read offline)",
    )


def options_rm(rm: argparse.ArgumentParser) -> None:
    rm.add_argument("run", metavar="RUN")


def options_prune(prune: argparse.ArgumentParser) -> None:
    prune.add_argument(
        "--grace",
        type=_grace,
        default=None,
        metavar="AGE",
        help="only what is older than AGE (default 1d: a push under way keeps what it sent)",
    )
