"""Progress of long work, as events anyone may listen to.

The library says how long work goes — instances booting (what each waits for), transfers
(bytes so far), a replay's steps (n of N, verdicts so far), the verification of a run —
and never draws anything: the CLI renders these events with rich on a terminal or as plain
lines, a notebook or a user's own callback takes them as they are::

    from precip_repro import progress

    with progress.listening(print):
        exp.wait()

Listeners are called on the thread doing the work (boot waits and transfers run on
several): they must be quick and thread-safe. With nobody listening, emitting costs one
attribute read.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import attrs

__all__ = [
    "InstanceProgress",
    "ProgressEvent",
    "StepProgress",
    "TransferMeter",
    "TransferProgress",
    "VerifyProgress",
    "active",
    "emit",
    "listening",
    "redact_with",
    "subscribe",
]


@attrs.frozen(kw_only=True)
class InstanceProgress:
    """An instance ``wait()`` waits for."""

    slot: str
    instance_id: str
    state: str
    """``waiting``, ``ready``, ``replaced`` (a new instance takes the slot) or ``failed``."""
    detail: str
    """What it waits for (the cloud's state, the last attempt to log in), or why it failed."""
    elapsed_s: float
    """Since ``wait()`` began waiting for it."""


@attrs.frozen(kw_only=True)
class TransferProgress:
    """A file moving to or from an instance."""

    slot: str
    instance_id: str
    direction: str
    """``put`` or ``get``."""
    path: str
    """The remote path."""
    done: int
    """Bytes moved so far."""
    total: int | None
    """Bytes in all, where known before the end (a put's local file)."""
    elapsed_s: float
    finished: bool = False

    @property
    def rate(self) -> float:
        """Bytes a second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@attrs.frozen(kw_only=True)
class StepProgress:
    """A replay's step, once judged."""

    step: int
    """Its position in the plan, from 1."""
    of: int
    call: int
    """The recorded call it re-executed."""
    label: str
    verdict: str
    verdicts: Mapping[str, int]
    """Verdicts so far, by name."""


@attrs.frozen(kw_only=True)
class VerifyProgress:
    """The verification of a run's log."""

    run: str
    events: int
    done: int
    """Bytes of the log checked so far."""
    total: int
    finished: bool = False


ProgressEvent = InstanceProgress | TransferProgress | StepProgress | VerifyProgress
Listener = Callable[[ProgressEvent], None]


class _Listeners:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: tuple[Listener, ...] = ()
        """Replaced whole on each change: emitting reads it without the lock."""

    def add(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self.current = (*self.current, listener)

        def remove() -> None:
            with self._lock:
                found = list(self.current)
                if listener in found:
                    found.remove(listener)
                self.current = tuple(found)

        return remove


_LISTENERS: Final = _Listeners()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` with every progress event from now on; returns what stops it."""
    return _LISTENERS.add(listener)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with every progress event while the block runs."""
    stop = subscribe(listener)
    try:
        yield
    finally:
        stop()


def active() -> bool:
    """Whether anyone listens (work may skip measuring what nobody would see)."""
    return bool(_LISTENERS.current)


_redact: Callable[[str], str] = str
"""Hides the process's registered secrets in a string (see :func:`redact_with`)."""


def redact_with(redact: Callable[[str], str]) -> None:
    """Every event's strings from now on pass through ``redact`` before any listener sees
    them: a secret in a path, a tag or an error never reaches a terminal or a CI log."""
    global _redact
    _redact = redact


def _redacted(event: ProgressEvent) -> ProgressEvent:
    changes = {
        field.name: _redact(value)
        for field in attrs.fields(type(event))
        if isinstance(value := getattr(event, field.name), str)
    }
    # evolve of a union of four classes: mypy cannot check its fields, the loop above did
    evolve: Callable[..., ProgressEvent] = attrs.evolve
    return evolve(event, **changes)


def emit(event: ProgressEvent) -> None:
    """Hand ``event`` to every listener, its strings redacted; a listener that fails is not
    the work's failure."""
    listeners = _LISTENERS.current
    if not listeners:
        return
    event = _redacted(event)
    for listener in listeners:
        with contextlib.suppress(Exception):
            listener(event)


EVERY: Final = 0.1
"""Seconds between two progress events of one transfer (its last one always comes)."""


class TransferMeter:
    """Counts a transfer's bytes as they pass and says so every :data:`EVERY` seconds."""

    def __init__(
        self, *, slot: str, instance_id: str, direction: str, path: str, total: int | None
    ) -> None:
        self._where = (slot, instance_id, direction, path)
        self._total = total
        self._started = self._last = time.monotonic()
        self.done = 0

    def wrap(self, sink: Callable[[bytes], None] | None) -> Callable[[bytes], None]:
        """A sink that counts each chunk, then hands it on to ``sink`` (if any)."""

        def counted(chunk: bytes) -> None:
            self.done += len(chunk)
            now = time.monotonic()
            if now - self._last >= EVERY:
                self._last = now
                self._say(now, finished=False)
            if sink is not None:
                sink(chunk)

        return counted

    def finish(self) -> None:
        self._say(time.monotonic(), finished=True)

    def _say(self, now: float, *, finished: bool) -> None:
        slot, instance_id, direction, path = self._where
        emit(
            TransferProgress(
                slot=slot,
                instance_id=instance_id,
                direction=direction,
                path=path,
                done=self.done,
                total=self._total,
                elapsed_s=now - self._started,
                finished=finished,
            )
        )
