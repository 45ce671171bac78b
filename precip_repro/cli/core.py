"""What every precip-repro command shares: exit statuses, the parser that exits 2 on
bad usage, logging set-up, the store and run lookup, and how an error maps to a status."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import structlog

from precip_repro.exceptions import (
    ExperimentException,
    RecordIncomplete,
    RunLocked,
    RunNotFound,
    UnsupportedVersion,
)
from precip_repro.record.store import RunStore

if TYPE_CHECKING:
    from precip_repro.runview import RunView


__all__ = [
    "EXIT_BAD",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_USAGE",
    "HEX_RE",
    "NotIntact",
    "Parser",
    "Usage",
    "configure_logging",
    "exit_for",
    "intact_views",
    "quiet_stdout",
    "resolve",
    "store_of",
]


EXIT_OK: Final = 0
EXIT_BAD: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCOMPLETE: Final = 3

HEX_RE: Final = re.compile(r"[0-9a-f]{4,64}")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr looked up per logger, not bound once: it may be replaced later.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def store_of(args: argparse.Namespace) -> RunStore:
    return RunStore(args.records)


def resolve(args: argparse.Namespace) -> Path:
    return store_of(args).resolve(args.run)


class Usage(ExperimentException):
    pass


class NotIntact(ExperimentException):
    pass


def exit_for(exc: ExperimentException) -> int:
    if isinstance(exc, UnsupportedVersion | RunNotFound | Usage):
        return EXIT_USAGE
    if isinstance(exc, NotIntact):
        return EXIT_INCOMPLETE
    if isinstance(exc, RunLocked | RecordIncomplete):
        return EXIT_INCOMPLETE
    return EXIT_BAD


def quiet_stdout() -> None:
    """Send what is still to be written to stdout nowhere: its reader is gone, and Python
    would otherwise complain of the broken pipe when it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def intact_views(
    args: argparse.Namespace,
    *specs: str,
    meanwhile: Callable[[list[RunView]], object] | None = None,
) -> list[tuple[RunView, str | None]]:
    from precip_repro.runview import load_verified

    def frozen_then(views: list[RunView]) -> None:
        # A large view is hundreds of thousands of objects in no cycle; the collector's
        # walks over them cost more than a diff of them. The command ends soon: the views
        # are frozen out of its way before anything works on them.
        gc.freeze()
        if meanwhile is not None:
            meanwhile(views)

    store = store_of(args)
    found: list[tuple[RunView, str | None]] = []
    loaded = load_verified([store.resolve(spec) for spec in specs], meanwhile=frozen_then)
    for view, verdict in loaded:
        if view is None:
            raise NotIntact(
                f"run {verdict.run} is {verdict.state}, not intact: {verdict.reason}; "
                f"`precip-repro verify {verdict.run}` says more"
            )
        found.append((view, verdict.digest))
    return found
