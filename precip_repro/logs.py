"""Where precip-repro's log lines go.

Every log line goes through structlog. When the application has configured structlog, its
configuration is used as is. When it has not, ours apply instead of structlog's defaults,
which would print to stdout: an experiment script's stdout may be its data, so our lines go
to stderr, at INFO and above.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog

__all__ = ["get_logger"]


class _Logger:
    """A structlog logger resolved at each call, so configuring structlog later still counts."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _bound(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        return structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.dev.ConsoleRenderer(colors=False),
            ],
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._bound().debug(event, logger=self._name, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._bound().info(event, logger=self._name, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._bound().warning(event, logger=self._name, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._bound().error(event, logger=self._name, **fields)

    def from_signal_handler(self, level: str, event: str, **fields: Any) -> None:
        """Log from a signal handler: on a thread of its own, once the line the handler
        interrupted is written. (The handler runs in the main thread, between any two of
        its bytecodes: in the middle of a log line, logging again there would wait for ever
        on the output's lock that the interrupted line holds.)"""
        threading.Thread(
            target=getattr(self, level), args=(event,), kwargs=fields, name="precip-signal-log"
        ).start()


def get_logger(name: str) -> _Logger:
    return _Logger(name)
