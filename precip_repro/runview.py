"""A run read back as calls, commands, files and instances — what diff, report and replay
work on. Reading only: nothing here touches a cloud. :mod:`precip_repro.loading` reads a
run's events into these views."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Final

import attrs

from precip_repro.content import ContentRef
from precip_repro.logs import get_logger
from precip_repro.record.blobs import hash_file
from precip_repro.record.canonical import JSON
from precip_repro.record.events import parse_ts
from precip_repro.record.payloads import ErrorInfo

__all__ = [
    "ADDRESS_KEYS",
    "CallView",
    "CommandView",
    "FileView",
    "InstanceView",
    "ModuleView",
    "ParameterView",
    "RunView",
    "ts_ns",
]

log = get_logger(__name__)


ts_ns = parse_ts
"""Nanoseconds since the epoch of a record timestamp."""


@attrs.define(kw_only=True)
class CommandView:
    call: int
    slot: str
    instance_id: str
    user: str
    cmd: str
    exit_code: int | None
    stdout: ContentRef | None
    stderr: ContentRef | None
    duration_ns: int
    end_ns: int


@attrs.define(kw_only=True)
class FileView:
    kind: str
    """``put`` or ``got``."""
    call: int
    slot: str
    instance_id: str
    user: str
    local_path: str
    remote_path: str
    mode: int
    content: ContentRef | None
    temporary: bool
    at_ns: int


@attrs.define(kw_only=True)
class ModuleView:
    """One of the script's own modules: where it was and its source (a blob reference)."""

    name: str
    path: str
    content: ContentRef | None


@attrs.define(kw_only=True)
class ParameterView:
    """A parameter the script declared (``exp.param``): the value used, typed as the script
    asked, and where it came from (``environment``, ``default`` or ``recording``)."""

    name: str
    value: JSON
    source: str


@attrs.define(kw_only=True)
class CallView:
    number: int
    exp: str
    method: str
    args: dict[str, JSON]
    start_ns: int
    outcome: str = "open"
    """``finished``, ``failed``, or ``open`` (the run ended inside the call)."""
    result: JSON = None
    error: ErrorInfo | None = None
    """What the call raised, when it failed."""
    duration_ns: int | None = None
    commands: list[CommandView] = attrs.Factory(list)
    files: list[FileView] = attrs.Factory(list)

    @property
    def stopped(self) -> bool:
        """Whether the recording was stopped inside this call — a signal (Ctrl-C, SIGTERM,
        SIGHUP) or the writer killed — so that it has no outcome of its own."""
        return self.outcome == "open" or (
            self.outcome == "failed" and self.error_type in INTERRUPTIONS
        )

    @property
    def error_type(self) -> str | None:
        """The class name of what the call raised, when it failed."""
        return self.error.type if self.error is not None else None

    def how_stopped(self) -> str:
        kind = self.error_type
        if kind == "KeyboardInterrupt":
            return "by Ctrl-C"
        if kind == "SystemExit" and self.error is not None:
            return f"by a signal, exit status {self.error.message}"
        return "the recording process was killed; the run was recovered"


INTERRUPTIONS: Final = frozenset({"KeyboardInterrupt", "SystemExit"})
"""What a call ends with when a signal stopped the recording process inside it."""


ADDRESS_KEYS: Final = ("public_address", "private_address", "public_hostname", "private_hostname")


@attrs.define(kw_only=True)
class InstanceView:
    slot: str
    exp: str
    instance_ids: list[str]
    image_id: str
    instance_type: str
    image_digest: str | None
    tags: list[str]
    launched_ns: int
    ready_ns: int | None = None
    terminated_ns: int | None = None
    public_address: str | None = None
    private_address: str | None = None
    public_hostname: str | None = None
    private_hostname: str | None = None
    host_key: str | None = None
    facts: dict[str, JSON] = attrs.Factory(dict)
    earlier_addresses: list[dict[str, str | None]] = attrs.Factory(list)
    """Addresses and hostnames it had before it was ready again (stopped and started at its
    cloud, it may come back at another public address): outputs from before still name
    them."""


@attrs.define(kw_only=True)
class RunView:
    run: str
    path: Path
    started: dict[str, JSON]
    finished: dict[str, JSON] | None
    experiments: dict[str, dict[str, JSON]]
    calls: list[CallView]
    instances: dict[str, InstanceView]
    notes: list[tuple[int, str, dict[str, JSON]]]
    events: int
    first_ns: int
    last_ns: int
    replay_steps: list[dict[str, JSON]] = attrs.Factory(list)
    """A replay's verdicts, one per recorded call it re-executed (``replay.step`` data)."""
    ending: str | None = None
    """Why the run did not end ``ok``, as the note the tool writes then says."""
    modules: dict[str, ModuleView] = attrs.Factory(dict)
    """The script's own modules by name."""
    script: ContentRef | None = None
    """The experiment script's source, when the run recorded one."""
    parameters: dict[str, ParameterView] = attrs.Factory(dict)
    """The parameters the script declared, by name, in the order it declared them (a
    parameter declared again with another value: the last)."""

    @property
    def arguments(self) -> list[str] | None:
        """The script's command-line arguments (``argv`` without the script itself), when
        the run recorded a script: a run opened otherwise (a notebook, a replay) has its
        host process's ``argv``, which says nothing of the experiment."""
        argv = self.started.get("argv")
        if self.started.get("script_path") is None or not isinstance(argv, list) or not argv:
            return None
        return [str(arg) for arg in argv[1:]]

    @property
    def ended(self) -> str:
        """How the run ended: its status, and why when not ``ok`` and the record says."""
        status = str((self.finished or {}).get("status", "not finished"))
        return f"{status}: {self.ending}" if self.ending and status != "ok" else status

    @property
    def call_by_number(self) -> dict[int, CallView]:
        return {call.number: call for call in self.calls}

    def local_copy(self, sha256: str) -> tuple[Path | None, list[Path]]:
        """A file of this machine holding content the run moved and keeps by hash only (it
        held a secret or a private key): where a ``put`` read it or a ``get`` wrote it (a
        relative path from the run's directory, then from this one), checked by its hash.
        Also every place looked at, for saying where it was not."""
        cwd = Path(str(self.started.get("cwd") or "."))
        looked: list[Path] = []
        for call in self.calls:
            for moved in call.files:
                if moved.content is None or moved.content.sha256 != sha256:
                    continue
                for place in (
                    (cwd / moved.local_path).absolute(),
                    Path(moved.local_path).absolute(),
                ):
                    if place in looked:
                        continue
                    looked.append(place)
                    with contextlib.suppress(OSError):
                        if place.is_file() and hash_file(place)[0] == sha256:
                            return place, looked
        return None, looked
