"""A run read back as calls, commands, files and instances — what diff, report and replay
work on. Reading only: nothing here touches a cloud."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from precip_repro.record.canonical import JSON
from precip_repro.record.events import Event, parse_ts
from precip_repro.record.reader import LogReader
from precip_repro.record.store import EVENTS

__all__ = [
    "CallView",
    "ViewBuilder",
    "CommandView",
    "FileView",
    "InstanceView",
    "RunView",
    "load_run",
    "ts_ns",
]


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
    stdout: dict[str, JSON]
    stderr: dict[str, JSON]
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
    content: dict[str, JSON]
    temporary: bool
    at_ns: int


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
    error: dict[str, JSON] | None = None
    duration_ns: int | None = None
    commands: list[CommandView] = attrs.Factory(list)
    files: list[FileView] = attrs.Factory(list)


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

    @property
    def call_by_number(self) -> dict[int, CallView]:
        return {call.number: call for call in self.calls}


class ViewBuilder:
    """Builds a :class:`RunView` one event at a time (so that ``verify`` can feed it while it
    checks the same events: one pass over a large log instead of two)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.started: dict[str, JSON] = {}
        self.finished: dict[str, JSON] | None = None
        self.experiments: dict[str, dict[str, JSON]] = {}
        self.calls: dict[int, CallView] = {}
        self.instances: dict[str, InstanceView] = {}
        self.by_id: dict[str, InstanceView] = {}
        self.notes: list[tuple[int, str, dict[str, JSON]]] = []
        self.count = 0
        self.first = 0
        self.last = 0

    def add(self, event: Event) -> None:
        calls, instances, by_id = self.calls, self.instances, self.by_id
        self.count += 1
        now = ts_ns(event.ts)
        self.first = self.first or now
        self.last = now
        data: dict[str, Any] = event.data
        kind = event.type
        if kind == "run.started":
            self.started = data
        elif kind == "run.finished":
            self.finished = data
        elif kind == "experiment.created":
            self.experiments[str(data.get("exp"))] = data
        elif kind == "call.started":
            number = int(data["call"])
            calls[number] = CallView(
                number=number,
                exp=str(data.get("exp")),
                method=str(data.get("method")),
                args=data.get("args") or {},
                start_ns=now,
            )
        elif kind in ("call.finished", "call.failed"):
            call = calls.get(int(data["call"]))
            if call is not None:
                call.outcome = "finished" if kind == "call.finished" else "failed"
                call.result = data.get("result")
                call.error = data.get("error")
                call.duration_ns = data.get("duration_ns")
        elif kind == "instance.launched":
            slot = str(data["slot"])
            view = instances.get(slot)
            if view is None:
                view = instances[slot] = InstanceView(
                    slot=slot,
                    exp=str(data.get("exp")),
                    instance_ids=[],
                    image_id=str(data.get("image_id")),
                    instance_type=str(data.get("instance_type")),
                    image_digest=data.get("image_digest"),
                    tags=list(data.get("tags") or []),
                    launched_ns=now,
                )
            view.instance_ids.append(str(data["instance_id"]))
            by_id[str(data["instance_id"])] = view
        elif kind == "instance.ready":
            ready = by_id.get(str(data.get("instance_id")))
            if ready is not None:
                ready.ready_ns = now
                ready.public_address = data.get("public_address")
                ready.private_address = data.get("private_address")
                ready.public_hostname = data.get("public_hostname")
                ready.private_hostname = data.get("private_hostname")
                ready.host_key = data.get("host_key")
                ready.facts = dict(data.get("facts") or {})
        elif kind == "instance.terminated":
            gone = by_id.get(str(data.get("instance_id")))
            if gone is not None and gone.instance_ids[-1] == data.get("instance_id"):
                gone.terminated_ns = now
        elif kind == "command.finished":
            owner = calls.get(int(data["call"]))
            if owner is not None:
                owner.commands.append(
                    CommandView(
                        call=owner.number,
                        slot=str(data["slot"]),
                        instance_id=str(data["instance_id"]),
                        user=str(data.get("user")),
                        cmd=str(data.get("cmd")),
                        exit_code=data.get("exit_code"),
                        stdout=data.get("stdout") or {},
                        stderr=data.get("stderr") or {},
                        duration_ns=int(data.get("duration_ns") or 0),
                        end_ns=now,
                    )
                )
        elif kind in ("file.put", "file.got"):
            owner = calls.get(int(data["call"]))
            if owner is not None:
                owner.files.append(
                    FileView(
                        kind="put" if kind == "file.put" else "got",
                        call=owner.number,
                        slot=str(data["slot"]),
                        instance_id=str(data["instance_id"]),
                        user=str(data.get("user")),
                        local_path=str(data.get("local_path")),
                        remote_path=str(data.get("remote_path")),
                        mode=int(data.get("mode") or 0),
                        content=data.get("content") or {},
                        temporary=bool(data.get("temporary")),
                        at_ns=now,
                    )
                )
        elif kind == "note":
            self.notes.append((now, str(data.get("text")), dict(data.get("fields") or {})))

    def build(self) -> RunView:
        return RunView(
            run=str(self.started.get("run") or self.run_dir.name),
            path=self.run_dir,
            started=self.started,
            finished=self.finished,
            experiments=self.experiments,
            calls=[self.calls[number] for number in sorted(self.calls)],
            instances=self.instances,
            notes=self.notes,
            events=self.count,
            first_ns=self.first,
            last_ns=self.last,
        )


def load_run(run_dir: Path, events: Iterable[Event] | None = None) -> RunView:
    """Read a run's events into a :class:`RunView` (streams the log once)."""
    builder = ViewBuilder(run_dir)
    source = events if events is not None else LogReader(run_dir / EVENTS, run=run_dir.name)
    for event in source:
        builder.add(event)
    return builder.build()
