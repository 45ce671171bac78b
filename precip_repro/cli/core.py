"""What precip-repro's commands share beyond the command-line core of every tool
(:mod:`precip_repro.commandline`, whose exit statuses, parser and store they use): run
lookup, reading runs that must be intact, and how an error maps to a status."""

from __future__ import annotations

import argparse
import gc
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from precip_repro.commandline import (
    EXIT_BAD,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    ErrorStatus,
    store_of,
)
from precip_repro.exceptions import (
    ExperimentException,
    PackageRefused,
    RecordIncomplete,
    RuleInvalid,
    RunConflict,
    RunLocked,
    RunNotFound,
    SignersUnusable,
    StoreError,
    StoreUnreachable,
    UnsupportedVersion,
)

if TYPE_CHECKING:
    from precip_repro.record.trusted import TrustedKeys
    from precip_repro.record.verify import Verdict
    from precip_repro.runview import RunView


__all__ = [
    "EXIT_BAD",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "HEX_RE",
    "NotIntact",
    "Usage",
    "exit_for",
    "intact_digests",
    "intact_views",
    "resolve",
    "signers_of",
    "status_of",
    "store_of",
]


HEX_RE: Final = re.compile(r"[0-9a-f]{4,64}")


def resolve(args: argparse.Namespace, *, blobs: bool = True) -> Path:
    """The run ``args.run`` names, its blobs fetched too (from a shared store) when
    ``blobs``."""
    return store_of(args).resolve(args.run, blobs=blobs)


class Usage(ExperimentException):
    pass


class NotIntact(ExperimentException):
    pass


def signers_of(args: argparse.Namespace) -> TrustedKeys | None:
    """The keys ``--signer`` trusts (None when not given); unusable ones are a usage error."""
    if args.signer is None:
        return None
    from precip_repro.record.trusted import TrustedKeys

    try:
        return TrustedKeys.load(Path(args.signer))
    except SignersUnusable as exc:
        raise Usage(f"--signer: {exc}") from exc


def exit_for(exc: ExperimentException) -> int:
    if isinstance(exc, UnsupportedVersion | RunNotFound | Usage | RuleInvalid | PackageRefused):
        return EXIT_USAGE
    if isinstance(exc, StoreUnreachable):
        return EXIT_INCOMPLETE
    if isinstance(exc, StoreError) and not isinstance(exc, RunConflict):
        return EXIT_USAGE
    if isinstance(exc, NotIntact):
        return EXIT_INCOMPLETE
    if isinstance(exc, RunLocked | RecordIncomplete):
        return EXIT_INCOMPLETE
    return EXIT_BAD


def status_of(exc: Exception) -> ErrorStatus | None:
    """precip-repro's errors: ours by :func:`exit_for`, the system's (a disk, a
    permission) 1; anything else is a bug."""
    if isinstance(exc, ExperimentException):
        return ErrorStatus(exit_for(exc))
    if isinstance(exc, OSError):
        return ErrorStatus(EXIT_BAD)
    return None


def intact_views(
    args: argparse.Namespace,
    *specs: str,
    meanwhile: Callable[[list[RunView]], object] | None = None,
) -> list[tuple[RunView, str | None]]:
    """Each run's view and digest, every run verified intact (else :class:`NotIntact`)."""
    found = _intact(args, specs, meanwhile, keep=True)
    return [(view, verdict.digest) for view, verdict in found if view is not None]


def intact_digests(
    args: argparse.Namespace, *specs: str, meanwhile: Callable[[list[RunView]], object]
) -> list[str | None]:
    """Each run's digest, every run verified intact (else :class:`NotIntact`); the views
    are ``meanwhile``'s alone (let go of as soon as it returns)."""
    return [verdict.digest for _, verdict in _intact(args, specs, meanwhile, keep=False)]


def _intact(
    args: argparse.Namespace,
    specs: tuple[str, ...],
    meanwhile: Callable[[list[RunView]], object] | None,
    *,
    keep: bool,
) -> list[tuple[RunView | None, Verdict]]:
    from precip_repro.loading import load_verified

    def frozen_then(views: list[RunView]) -> None:
        # A large view is hundreds of thousands of objects in no cycle; the collector's
        # walks over them cost more than a diff of them. The command ends soon: the views
        # are frozen out of its way before anything works on them.
        gc.freeze()
        if meanwhile is not None:
            meanwhile(views)

    store = store_of(args)
    found = load_verified([store.resolve(spec) for spec in specs], meanwhile=frozen_then, keep=keep)
    for spec, (_, verdict) in zip(specs, found, strict=True):
        if not verdict.intact:
            # Named as the user gave it: a damaged copy given by its path holds the id of a
            # run that may well be intact in the store.
            named = f"run {spec}" if spec == verdict.run else f"{spec} (run {verdict.run})"
            raise NotIntact(
                f"{named} is {verdict.state}, not intact: {verdict.reason}; "
                f"`precip-repro verify {spec}` says more"
            )
    return found
