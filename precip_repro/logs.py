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
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["get_logger", "prepare_signal_logging", "processors", "redact_with"]


def processors() -> list[Any]:
    """How a log line of ours looks on stderr, from a script or a CLI: level, UTC time
    (runs are timed in UTC), message and fields, no colours (the line may go to a file)."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.dev.ConsoleRenderer(colors=False),
    ]


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
            processors=processors(),
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._bound().debug(_redact(event), logger=self._name, **_redacted(fields))

    def info(self, event: str, **fields: Any) -> None:
        self._bound().info(_redact(event), logger=self._name, **_redacted(fields))

    def warning(self, event: str, **fields: Any) -> None:
        self._bound().warning(_redact(event), logger=self._name, **_redacted(fields))

    def error(self, event: str, **fields: Any) -> None:
        self._bound().error(_redact(event), logger=self._name, **_redacted(fields))

    def from_signal_handler(self, level: str, event: str, **fields: Any) -> None:
        """Log from a signal handler: handed to a thread of its own (started beforehand by
        :func:`prepare_signal_logging`), which writes it once the line the handler
        interrupted is written. The handler runs in the main thread between any two of its
        bytecodes: logging, or starting a thread, there could wait for ever on a lock the
        interrupted code holds; a SimpleQueue's put is safe there."""
        _signal_lines.put((self, level, event, fields))


_redact: Callable[[str], str] = str
"""Hides the process's registered secrets in a string (see :func:`redact_with`)."""


def redact_with(redact: Callable[[str], str]) -> None:
    """Every log line from now on has its message and the strings of its fields (in
    lists and dicts too) passed through ``redact``: a secret in a tag, a path or a name
    never reaches a terminal or a CI log, whatever structlog's configuration."""
    global _redact
    _redact = redact


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: _redacted_value(value) for key, value in fields.items()}


def _redacted_value(value: Any) -> Any:
    if isinstance(value, str):
        return _redact(value)
    if isinstance(value, list | tuple):
        return [_redacted_value(item) for item in value]
    if isinstance(value, dict):
        return {_redact(str(key)): _redacted_value(item) for key, item in value.items()}
    return value


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
