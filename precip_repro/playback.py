"""Playback: run an experiment script with every call answered from a recording.

No cloud is touched and nothing is recorded (as VCR.py's record mode ``none``). Each call
the script makes must be the next recorded call of the same experiment — same method, same
arguments once local paths are compared by name — or :class:`PlaybackMismatch` stops the
script, showing the recorded and the attempted call side by side. Answers are the recorded
results: ``run`` returns the recorded exit codes and outputs, ``get`` writes the recorded
files, a call that failed raises the exception it raised then.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Protocol, cast

from precip_repro import exceptions
from precip_repro.content import ContentReader, ContentRef
from precip_repro.exceptions import (
    CommandFailed,
    ContentWithheld,
    ExperimentException,
    PlaybackMismatch,
    UnrecordableValue,
)
from precip_repro.messages import NO_EXIT_STATUS, STDERR_TAIL, shown_command, shown_difference
from precip_repro.record.canonical import jsonable
from precip_repro.record.methods import CallAnswer, Method, method
from precip_repro.record.redact import Redactor
from precip_repro.runview import CallView, FileView, RunView
from precip_repro.slots import slot_order

__all__ = ["Closable", "Playback", "PlaybackMismatch", "RecordingStopped"]


class Closable(Protocol):
    """What the session and a playback hold of an experiment: they close the ones left open
    at the end. (A protocol, not the Experiment: the experiment imports them, never the
    reverse.)"""

    def close(self) -> None: ...


def _floats_as_text(value: Any) -> Any:
    # A v1 record kept a float as its shortest decimal string, a v2 record keeps it a float
    # (the run view gives it back as one): both compare by that string.
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {key: _floats_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_floats_as_text(item) for item in value]
    return value


def _comparable(model: Method, args: dict[str, Any]) -> dict[str, Any]:
    # As the recorder wrote them, floats as their decimal text whatever the format.
    try:
        recorded = jsonable(_floats_as_text(args))
    except UnrecordableValue:
        recorded = json.loads(json.dumps(args, default=str))
    assert isinstance(recorded, dict)
    local_paths = model.local_paths
    out = {}
    for key, value in recorded.items():
        out[key] = PurePath(value).name if key in local_paths and isinstance(value, str) else value
    return out


_Key = tuple[str, str, dict[str, Any]]


def _key(exp: str, name: str, args: dict[str, Any]) -> _Key:
    # With the defaults of arguments a record of an older version left out: the same call.
    model = method(name)
    return exp, name, _comparable(model, model.bound(args))


def _show(exp: str, method: str, args: dict[str, Any], shown: dict[str, str] | None = None) -> str:
    """A call as a message shows it; ``shown`` overrides how some arguments are shown."""
    shown = shown or {}
    inner = ", ".join(
        f"{key}={shown.get(key) or (shown_command(v) if isinstance(v, str) else repr(v))}"
        for key, v in sorted(args.items())
    )
    return f"{exp}.{method}({inner})"


def _show_both(recorded: _Key, attempted: _Key) -> tuple[str, str]:
    """The recorded and the attempted call side by side: a long text argument that differs
    is shown around its first difference in both."""
    a, b = recorded[2], attempted[2]
    pairs = {
        key: shown_difference(a[key], b[key])
        for key in a.keys() & b.keys()
        if isinstance(a[key], str) and isinstance(b[key], str) and a[key] != b[key]
    }
    return (
        _show(*recorded, {key: pair[0] for key, pair in pairs.items()}),
        _show(*attempted, {key: pair[1] for key, pair in pairs.items()}),
    )


class RecordingStopped(BaseException):
    """The script reached the call the recording was stopped in (by a signal, or the
    writer killed): playback ends there. A ``BaseException``, as the signal was, so that a
    script's ``except Exception`` does not carry it past the end of the recording."""

    def __init__(self, call: CallView) -> None:
        self.call = call
        super().__init__(f"the recording was stopped during call #{call.number}")


class Playback:
    """Answers an experiment script's calls from a recorded run."""

    def __init__(self, view: RunView, *, secrets: Redactor | None = None) -> None:
        self.view = view
        self.secrets = secrets if secrets is not None else Redactor()
        """The script's registered secrets: its calls are compared (and shown) redacted, as
        they were recorded, and the recorded outputs give them back."""
        self.reader = ContentReader(view, local_copies=True)
        self._calls = list(view.calls)
        self.stopped: CallView | None = None
        """The call the recording was stopped in, once the script reached it."""
        self.experiments: list[Closable] = []
        """The script's experiments, closed when it ends (as at exit when recording)."""
        self._next = 0
        self._lock = threading.Lock()
        self.failed: PlaybackMismatch | None = None
        """The first mismatch: every later call raises it again (a script that catches it
        and carries on must not drift further from the recording)."""

    def _attempt(self, exp: str, method: str, args: dict[str, Any]) -> _Key:
        """A call the script makes, in the form it was recorded: secrets redacted."""
        return _key(exp, method, cast(dict[str, Any], self.secrets.json(args)))

    def is_next(self, exp: str, method: str, args: dict[str, Any]) -> bool:
        """Whether the recording's next call is this one (nothing is consumed)."""
        with self._lock:
            if self.failed or self.stopped or self._next >= len(self._calls):
                return False
            call = self._calls[self._next]
            return _key(call.exp, call.method, call.args) == self._attempt(exp, method, args)

    @property
    def remaining(self) -> list[CallView]:
        return self._calls[self._next :]

    def _text(self, ref: ContentRef | None) -> str:
        if ref is None or ref.empty:
            return ""
        if ref.text is not None:
            return self.secrets.reveal(ref.text)
        return self.secrets.reveal(self._bytes(ref, "an output").decode("utf-8", "replace"))

    def _bytes(self, ref: ContentRef | None, what: str) -> bytes:
        if ref is None:
            return b""
        try:
            return self.reader.read(ref, what=what)
        except ContentWithheld as exc:
            raise ContentWithheld(
                f"playback cannot give back {what}: {exc}",
                run=exc.run,
                blob=ref.sha256,
                reason=exc.reason,
            ) from None

    def answer(self, exp: str, method: str, args: dict[str, Any]) -> Any:
        with self._lock:
            if self.failed is not None:
                raise self.failed
            if self.stopped is not None:
                raise RecordingStopped(self.stopped)
            attempt = self._attempt(exp, method, args)
            attempted = _show(*attempt)
            if self._next >= len(self._calls):
                self.failed = PlaybackMismatch(
                    f"the recording has no call left ({len(self._calls)} were recorded); the "
                    f"script attempted {attempted}",
                    call=None,
                    recorded="(nothing)",
                    attempted=attempted,
                )
                raise self.failed
            call = self._calls[self._next]
            recording = _key(call.exp, call.method, call.args)
            recorded = _show(*recording)
            if recording != attempt:
                recorded, attempted = _show_both(recording, attempt)
                self.failed = PlaybackMismatch(
                    f"call #{call.number} does not match the recording:\n"
                    f"  recorded:  {recorded}\n  attempted: {attempted}",
                    call=call.number,
                    recorded=recorded,
                    attempted=attempted,
                )
                raise self.failed
            self._next += 1
            if call.stopped:
                # The recording ends here: the script matched it all the way.
                self.stopped = call
                raise RecordingStopped(call)
        return self._result(call, args)

    def _result(self, call: CallView, args: dict[str, Any]) -> Any:
        answer_of = method(call.method).answer
        if answer_of is CallAnswer.OUTPUTS:
            commands = call.commands
            answer: Any = (
                [c.exit_code for c in commands],
                [self._text(c.stdout) for c in commands],
                [self._text(c.stderr) for c in commands],
            )
        elif answer_of is CallAnswer.FILES:
            wanted = Path(str(args["local_path"])).expanduser()  # as the recording had it
            single = len(call.files) == 1
            for moved in call.files:
                target = (
                    wanted if single else wanted.with_name(f"{wanted.name}.{moved.instance_id}")
                )
                self._give_back(target, moved)
            answer = None
        elif answer_of is CallAnswer.RESULT:
            answer = call.result
        else:
            answer = None
        if call.outcome == "failed" and call.error:
            raise self._error(call, call.error.type, call.error.message)
        return answer

    def _give_back(self, target: Path, moved: FileView) -> None:
        """Write the file a recorded ``get`` wrote — never over a file changed since the
        recording (a newer result of the user's): that is refused, naming it."""
        content = self._bytes(moved.content, f"the file {moved.remote_path}")
        try:
            there = target.stat()
        except OSError:
            there = None
        if there is not None and there.st_mtime_ns > moved.at_ns:
            if target.read_bytes() == content:
                return
            raise PlaybackMismatch(
                f"playback of get {moved.remote_path} would write over {target}, which "
                "changed after the recording (newer than it, other bytes): move it away "
                "or point the script elsewhere — it is left as it is",
                call=moved.call,
                recorded=f"{moved.remote_path} → {target}: {len(content)} bytes",
                attempted=f"{target} holds {there.st_size} newer bytes",
            )
        target.write_bytes(content)

    def _error(self, call: CallView, kind_name: str, recorded: str) -> ExperimentException:
        """The exception the call raised when it was recorded, of its class — a script's
        ``except CommandFailed`` must catch it in playback too — with the attributes the
        recording holds (a CommandFailed's instance, exit code, stderr tail …)."""
        message = f"(played back) {self.secrets.reveal(recorded)}"
        kind = getattr(exceptions, kind_name, None)
        if not (isinstance(kind, type) and issubclass(kind, ExperimentException)):
            return ExperimentException(f"{kind_name}: {message}")  # not ours: its name kept
        if kind is CommandFailed:
            # The exception names the first to fail in slot order.
            failed = sorted(
                (c for c in call.commands if c.exit_code != 0), key=lambda c: slot_order(c.slot)
            )
            if failed:
                first = failed[0]
                return CommandFailed(
                    message,
                    instance=first.instance_id,
                    slot=first.slot,
                    cmd=self.secrets.reveal(first.cmd),
                    exit_code=first.exit_code if first.exit_code is not None else NO_EXIT_STATUS,
                    stderr_tail=self._text(first.stderr)[-STDERR_TAIL:],
                    failed={c.instance_id: c.exit_code for c in failed},
                )
        # Other classes take their context as keyword arguments: the instance and slot the
        # recording names (None in runs recorded before it did), the rest None.
        assert call.error is not None
        parameters = inspect.signature(kind).parameters
        context: dict[str, Any] = {
            name: None
            for name, p in parameters.items()
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty
        }
        for name in ("instance", "slot"):
            if name in parameters:
                context[name] = getattr(call.error, name)
        try:
            return kind(message, **context)
        except TypeError:  # another shape of constructor (InvalidOption): the class kept
            error = kind.__new__(kind)
            Exception.__init__(error, message)
            return error
