"""Where precip-repro's log lines go.

Every log line goes through structlog. When the application has configured structlog, its
configuration is used as is. When it has not, ours apply instead of structlog's defaults,
which would print to stdout: an experiment script's stdout may be its data, so our lines go
to stderr, at INFO and above.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from typing import Any

import structlog

__all__ = ["get_logger", "prepare_signal_logging"]


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
        """Log from a signal handler: handed to a thread of its own (started beforehand by
        :func:`prepare_signal_logging`), which writes it once the line the handler
        interrupted is written. The handler runs in the main thread between any two of its
        bytecodes: logging, or starting a thread, there could wait for ever on a lock the
        interrupted code holds; a SimpleQueue's put is safe there."""
        _signal_lines.put((self, level, event, fields))


_signal_lines: queue.SimpleQueue[tuple[_Logger, str, str, dict[str, Any]]] = queue.SimpleQueue()
_signal_writer: threading.Thread | None = None


def _write_signal_lines() -> None:
    while True:
        logger, level, event, fields = _signal_lines.get()
        getattr(logger, level)(event, **fields)


def prepare_signal_logging() -> None:
    """Start the thread that writes what signal handlers log (where handlers are
    installed, never in one)."""
    global _signal_writer
    if _signal_writer is None or not _signal_writer.is_alive():
        _signal_writer = threading.Thread(
            target=_write_signal_lines, daemon=True, name="precip-signal-log"
        )
        _signal_writer.start()


def get_logger(name: str) -> _Logger:
    return _Logger(name)
