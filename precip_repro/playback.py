"""Playback: run an experiment script with every call answered from a recording.

No cloud is touched and nothing is recorded (as VCR.py's record mode ``none``). Each call
the script makes must be the next recorded call of the same experiment — same method, same
arguments once local paths are compared by name — or :class:`PlaybackMismatch` stops the
script, showing the recorded and the attempted call side by side. Answers are the recorded
results: ``run`` returns the recorded exit codes and outputs, ``get`` writes the recorded
files, a call that failed raises the exception it raised then.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path, PurePath
from typing import Any, Final

from precip_repro import exceptions
from precip_repro.exceptions import ExperimentException
from precip_repro.record.blobs import BlobStore
from precip_repro.record.events import BlobRef
from precip_repro.record.store import OBJECTS
from precip_repro.runview import CallView, RunView

__all__ = ["Playback", "PlaybackMismatch"]

_LOCAL_PATHS: Final = frozenset({"local_path", "local_script"})


class PlaybackMismatch(ExperimentException):
    """The script's call is not the recorded one; ``recorded`` and ``attempted`` say how."""

    def __init__(self, message: str, *, call: int | None, recorded: str, attempted: str) -> None:
        self.call = call
        self.recorded = recorded
        self.attempted = attempted
        super().__init__(message)


def _comparable(args: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in json.loads(json.dumps(args, default=str)).items():
        out[key] = PurePath(value).name if key in _LOCAL_PATHS and isinstance(value, str) else value
    return out


def _show(exp: str, method: str, args: dict[str, Any]) -> str:
    inner = ", ".join(f"{key}={value!r}" for key, value in sorted(args.items()))
    return f"{exp}.{method}({inner})"


class Playback:
    """Answers an experiment script's calls from a recorded run."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.blobs = BlobStore(view.path / OBJECTS, run=view.run)
        self._calls = list(view.calls)
        self._next = 0
        self._lock = threading.Lock()
        self.failed: PlaybackMismatch | None = None
        """The first mismatch: every later call raises it again (a script that catches it
        and carries on must not drift further from the recording)."""

    @property
    def remaining(self) -> list[CallView]:
        return self._calls[self._next :]

    def _text(self, ref: dict[str, Any]) -> str:
        if isinstance(ref.get("text"), str):
            return str(ref["text"])
        if ref.get("size") == 0:
            return ""
        raw = self.blobs.read_bytes(BlobRef(sha256=str(ref["sha256"]), size=int(ref["size"])))
        return raw.decode("utf-8", "replace")

    def answer(self, exp: str, method: str, args: dict[str, Any]) -> Any:
        with self._lock:
            if self.failed is not None:
                raise self.failed
            attempted = _show(exp, method, _comparable(args))
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
            recorded = _show(call.exp, call.method, _comparable(call.args))
            if (call.exp, call.method, _comparable(call.args)) != (
                exp,
                method,
                _comparable(args),
            ):
                self.failed = PlaybackMismatch(
                    f"call #{call.number} does not match the recording:\n"
                    f"  recorded:  {recorded}\n  attempted: {attempted}",
                    call=call.number,
                    recorded=recorded,
                    attempted=attempted,
                )
                raise self.failed
            self._next += 1
        return self._result(call, args)

    def _result(self, call: CallView, args: dict[str, Any]) -> Any:
        if call.method in ("run", "copy_and_run"):
            commands = call.commands
            answer: Any = (
                [c.exit_code for c in commands],
                [self._text(c.stdout) for c in commands],
                [self._text(c.stderr) for c in commands],
            )
        elif call.method == "get":
            wanted = Path(str(args["local_path"]))
            single = len(call.files) == 1
            for moved in call.files:
                target = (
                    wanted if single else wanted.with_name(f"{wanted.name}.{moved.instance_id}")
                )
                ref = moved.content
                target.write_bytes(
                    self.blobs.read_bytes(
                        BlobRef(
                            sha256=str(ref["sha256"]), size=int(ref["size"]), text=ref.get("text")
                        )
                    )
                )
            answer = None
        elif call.method in ("list", "get_public_hostnames", "get_private_hostnames"):
            answer = call.result
        else:
            answer = None
        if call.outcome == "failed" and call.error:
            kind = getattr(exceptions, str(call.error.get("type")), None)
            message = f"(played back) {call.error.get('message')}"
            if isinstance(kind, type) and issubclass(kind, ExperimentException):
                try:
                    raise kind(message)
                except TypeError:
                    pass
            raise ExperimentException(f"{call.error.get('type')}: {message}")
        return answer
