"""How an experiment's calls are recorded — or not, or answered from a recording.

One interface, :class:`Calls`, with three implementations chosen once when the experiment
is made: :class:`Recorded` (the default), :class:`Unrecorded` (``record=False``) and
:class:`PlayedBack` (``precip-repro run --playback``, ``precip_repro.testing.playback``).
The experiment hands every call to ``perform``; no method of it asks which of the three it
has.

Each recorded call writes ``call.started`` before it acts and ``call.finished`` or
``call.failed`` after; each side effect inside it writes its own intent and outcome through
``append``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, TypeVar

from precip_repro.exceptions import ExperimentException, InstanceError
from precip_repro.record.blobs import BackgroundWriter
from precip_repro.record.events import (
    BlobRef,
    CallFailed,
    CallFinished,
    CallStarted,
    CommandFinished,
    ErrorInfo,
    Payload,
)
from precip_repro.record.recorder import Run
from precip_repro.record.redact import Redactor

__all__ = ["Call", "Calls", "PlayedBack", "Recorded", "Recording", "Unrecorded", "hide_secrets"]

R = TypeVar("R")

EMPTY: Final = BlobRef.of(b"")
Sink = Callable[[bytes], None]


class Call:
    """The call being recorded; ``result`` goes into ``call.finished``."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.result: Any = None


def hide_secrets(exc: ExperimentException, redactor: Redactor) -> None:
    """An error's message reaches terminals, CI logs and bug reports: a registered secret
    in it stays hidden there as in the record (attributes such as ``stderr_tail`` keep what
    happened, for code)."""
    message = redactor.text(str(exc))
    if message != str(exc):
        exc.args = (message,)


class Recording(Protocol):
    """What playback answers calls from (``precip_repro.playback.Playback``)."""

    def answer(self, exp: str, method: str, args: dict[str, Any]) -> Any: ...

    def is_next(self, exp: str, method: str, args: dict[str, Any]) -> bool: ...


class Calls(Protocol):
    """What an experiment's calls go through."""

    run: Run | None
    """The run recorded into (None: nothing is recorded)."""
    last_call: int | None
    """The number of the last call (0 when unrecorded, None before any)."""
    last_commands: dict[str, CommandFinished]
    """The commands of the last call, by slot, as recorded."""

    def perform(
        self,
        method: str,
        args: dict[str, Any],
        act: Callable[[Call], R],
        *,
        shielded: bool,
        before: Callable[[], None] | None = None,
    ) -> R:
        """``act`` the call (recorded around it; ``shielded`` from signals, as terminations
        are), or answer it from a recording. ``before`` checks what only a live cloud can
        say, before anything is recorded."""
        ...

    def append(self, payload: Payload) -> None:
        """Write an event of the call under way."""
        ...

    def output(self, data: bytes) -> BlobRef:
        """Keep a command's output (redacted); its reference for the event."""
        ...

    def kept(self, transfer: Callable[[Sink | None], int], what: str) -> tuple[int, BlobRef | None]:
        """Run ``transfer`` (given where to send each chunk; it returns the file's mode),
        keeping what moved as a blob: hashed, scanned for secrets and written on a thread of
        its own while the transfer runs. None for the blob when nothing is recorded."""
        ...


class Recorded:
    """Calls recorded into ``run``."""

    def __init__(
        self,
        run: Run | None,
        *,
        exp: str,
        redactor: Redactor,
        next_call: Callable[[], int],
        shielded: Callable[[], contextlib.AbstractContextManager[None]],
        guard: Callable[[str], None],
    ) -> None:
        self.run = run
        self._exp = exp
        self._redactor = redactor
        self._next_call = next_call
        self._shielded = shielded
        self._guard = guard
        """Refuses a call before anything is written (a forked child's)."""
        self.last_call: int | None = None
        self.last_commands: dict[str, CommandFinished] = {}

    def perform(
        self,
        method: str,
        args: dict[str, Any],
        act: Callable[[Call], R],
        *,
        shielded: bool,
        before: Callable[[], None] | None = None,
    ) -> R:
        if before is not None:
            before()
        shield = self._shielded() if shielded else contextlib.nullcontext()
        with shield, self._call(method, args) as call:
            return act(call)

    def _number(self) -> int:
        return self._next_call() if self.run is not None else 0

    @contextlib.contextmanager
    def _call(self, method: str, args: dict[str, Any]) -> Iterator[Call]:
        self._guard(method)
        call = Call(self._number())
        self.last_call = call.number
        self.last_commands = {}
        started = time.monotonic_ns()
        self.append(
            CallStarted(
                call=call.number, exp=self._exp, method=method, args=self._redactor.json(args)
            )
        )
        try:
            yield call
        except BaseException as exc:
            message = self._redactor.text(str(exc))
            if isinstance(exc, ExperimentException):
                hide_secrets(exc, self._redactor)
            self.append(
                CallFailed(
                    call=call.number,
                    error=ErrorInfo(
                        type=type(exc).__name__,
                        message=message,
                        instance=exc.instance if isinstance(exc, InstanceError) else None,
                        slot=exc.slot if isinstance(exc, InstanceError) else None,
                    ),
                    duration_ns=time.monotonic_ns() - started,
                )
            )
            raise
        self.append(
            CallFinished(
                call=call.number,
                result=self._redactor.json(call.result),
                duration_ns=time.monotonic_ns() - started,
            )
        )

    # A run detached (None) records nothing: what record=False runs (bench/overhead.py
    # detaches it to measure the recorder on the same instance and connection).

    def append(self, payload: Payload) -> None:
        if self.run is not None:
            self.run.append(payload)

    def output(self, data: bytes) -> BlobRef:
        if self.run is None or not data:
            return EMPTY
        return self.run.add_blob(self._redactor.data(data), inline=True)

    def kept(self, transfer: Callable[[Sink | None], int], what: str) -> tuple[int, BlobRef | None]:
        if self.run is None:
            return transfer(None), None
        sink = self.run.blob_sink()
        scanner = self._redactor.scanner()

        def consume(chunk: bytes) -> None:
            sink.write(chunk)
            if scanner is not None:
                scanner.feed(chunk)

        writer = BackgroundWriter(consume)
        try:
            mode = transfer(writer.write)
            writer.close()
            return mode, self.run.seal(sink, scanner, what)
        finally:
            with contextlib.suppress(BaseException):
                writer.close()
            if not sink.committed:
                sink.discard()


class Unrecorded(Recorded):
    """``record=False``: calls act as recorded ones do (errors included), and nothing is
    written; every call is number 0."""

    def __init__(
        self,
        *,
        exp: str,
        redactor: Redactor,
        shielded: Callable[[], contextlib.AbstractContextManager[None]],
        guard: Callable[[str], None],
    ) -> None:
        super().__init__(
            None, exp=exp, redactor=redactor, next_call=lambda: 0, shielded=shielded, guard=guard
        )


class PlayedBack:
    """Calls answered from a recording: no cloud, no record. A call that differs from the
    recording raises the documented mismatch."""

    run: Run | None = None

    def __init__(self, playback: Recording, *, exp: str) -> None:
        self._playback = playback
        self._exp = exp
        self.last_call: int | None = None
        self.last_commands: dict[str, CommandFinished] = {}

    def perform(
        self,
        method: str,
        args: dict[str, Any],
        act: Callable[[Call], R],
        *,
        shielded: bool,
        before: Callable[[], None] | None = None,
    ) -> R:
        answer: R = self._playback.answer(self._exp, method, args)
        return answer

    def append(self, payload: Payload) -> None:
        pass  # a note written in playback: nothing is recorded

    def output(self, data: bytes) -> BlobRef:
        raise AssertionError("a played-back call keeps nothing")  # pragma: no cover

    def kept(self, transfer: Callable[[Sink | None], int], what: str) -> tuple[int, BlobRef | None]:
        raise AssertionError("a played-back call moves nothing")  # pragma: no cover
