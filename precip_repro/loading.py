"""Loading a run's events into its views (:mod:`precip_repro.runview`): one event at a time
(:class:`ViewBuilder`), a whole run verified as it is read (:func:`load_verified`, large
runs verified in child processes meanwhile), unverified (:func:`load_run`), or a log still
being written, read as it grows (:class:`GrowingView`)."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, ClassVar, Final

import orjson

from precip_repro.content import ContentRef
from precip_repro.logs import get_logger
from precip_repro.record.canonical import JSON
from precip_repro.record.events import FORMAT_VERSION, Event, upgrade, upgraded
from precip_repro.record.files import open_regular
from precip_repro.record.numbers import decoded_or_as_is
from precip_repro.record.payloads import ErrorInfo
from precip_repro.record.reader import LogReader
from precip_repro.record.store import EVENTS
from precip_repro.record.verify import Verdict, verify
from precip_repro.runview import (
    ADDRESS_KEYS,
    CallView,
    CommandView,
    FileView,
    InstanceView,
    ModuleView,
    ParameterView,
    RunView,
    ts_ns,
)
from precip_repro.slots import slot_order

__all__ = [
    "PARALLEL_BYTES",
    "GrowingView",
    "ViewBuilder",
    "collection_paused",
    "load_run",
    "load_verified",
]

log = get_logger(__name__)


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
        self.ending: str | None = None
        """Why the run did not end ``ok``, as the tool's own note says."""
        self.replay_steps: list[dict[str, JSON]] = []
        self.modules: dict[str, ModuleView] = {}
        self.parameters: dict[str, ParameterView] = {}
        self._strings: dict[str, str] = {}
        self._refs: dict[str, ContentRef] = {}
        self.script: ContentRef | None = None
        self._withheld: dict[str, str] = {}
        self._results: dict[tuple[JSON, ...], JSON] = {}
        self.count = 0
        self.first = 0
        self.last = 0
        self._typed = True

    def add(self, event: Event) -> None:
        if event.v != FORMAT_VERSION:
            kind, data = upgraded(event)
            self.add_parts(kind, event.ts, data)
        else:
            self.add_parts(event.type, event.ts, event.data, typed=event.typed)

    def add_parts(self, kind: str, ts: str, data: dict[str, Any], *, typed: bool = True) -> None:
        """Add one event given as its type, timestamp and (current-version) data; ``typed``
        False when nothing in the data is a typed value (``{"$float": …}``)."""
        self._typed = typed
        self.count += 1
        now = ts_ns(ts)
        self.first = self.first or now
        self.last = now
        handler = self._HANDLERS.get(kind)
        if handler is not None:
            handler(self, now, data)

    def add_lines(self, lines: Iterable[bytes]) -> None:
        """Add the events of these log lines, unchecked (a run read while a child verifies
        it, or one this process is writing), up to the first without its newline (a torn
        tail is not an event). Raises what a line that is not an event makes parsing
        raise (ValueError, KeyError, TypeError …): its run's verdict says what is wrong.

        :meth:`add_parts` per line, unrolled: reading a large run spends its time here."""
        self._typed = True
        handlers = self._HANDLERS
        count, first, now = self.count, self.first, self.last
        prefix, seconds_ns = "\0", 0
        for raw in lines:
            if raw[-1:] != b"\n":
                break
            obj = orjson.loads(raw)
            kind, data, ts = obj["type"], obj["data"], obj["ts"]
            if obj["v"] != FORMAT_VERSION:
                kind, data = upgrade(obj["v"], kind, data)
            # Events come many to a second: its timestamp is parsed once, then only the
            # microseconds (those of a damaged line may read wrong: its verdict rejects it).
            if ts.startswith(prefix):
                now = seconds_ns + int(ts[20:26]) * 1000
            else:
                now = ts_ns(ts)
                prefix, seconds_ns = ts[:20], now - int(ts[20:26]) * 1000
            count += 1
            first = first or now
            handler = handlers.get(kind)
            if handler is not None:
                handler(self, now, data)
        self.count, self.first, self.last = count, first, now

    def _run_started(self, now: int, data: dict[str, Any]) -> None:
        self.started = data
        self.script = self._shared_ref(data.get("script"))

    def _run_finished(self, now: int, data: dict[str, Any]) -> None:
        self.finished = data

    def _experiment_created(self, now: int, data: dict[str, Any]) -> None:
        self.experiments[str(data.get("exp"))] = data

    def _call_started(self, now: int, data: dict[str, Any]) -> None:
        number = int(data["call"])
        self.calls[number] = CallView(
            number=number,
            exp=self._shared(str(data.get("exp"))),
            method=self._shared(str(data.get("method"))),
            args=self._decoded(data.get("args") or {}),
            start_ns=now,
        )

    def _call_finished(self, now: int, data: dict[str, Any]) -> None:
        self._call_ended("finished", data)

    def _call_failed(self, now: int, data: dict[str, Any]) -> None:
        self._call_ended("failed", data)

    def _call_ended(self, outcome: str, data: dict[str, Any]) -> None:
        call = self.calls.get(int(data["call"]))
        if call is not None:
            call.outcome = outcome
            call.result = self._shared_result(data.get("result"))
            error = data.get("error")
            call.error = (
                ErrorInfo(
                    type=str(error.get("type")),
                    message=str(error.get("message")),
                    instance=error.get("instance"),
                    slot=error.get("slot"),
                )
                if isinstance(error, dict)
                else None
            )
            call.duration_ns = data.get("duration_ns")

    def _instance_launched(self, now: int, data: dict[str, Any]) -> None:
        slot = str(data["slot"])
        view = self.instances.get(slot)
        if view is None:
            view = self.instances[slot] = InstanceView(
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
        self.by_id[str(data["instance_id"])] = view

    def _instance_ready(self, now: int, data: dict[str, Any]) -> None:
        ready = self.by_id.get(str(data.get("instance_id")))
        if ready is not None:
            if ready.ready_ns is not None:  # ready again: its boot stays the first one
                ready.earlier_addresses.append({key: getattr(ready, key) for key in ADDRESS_KEYS})
            else:
                ready.ready_ns = now
            ready.public_address = data.get("public_address")
            ready.private_address = data.get("private_address")
            ready.public_hostname = data.get("public_hostname")
            ready.private_hostname = data.get("private_hostname")
            ready.host_key = data.get("host_key")
            ready.facts = dict(data.get("facts") or {})

    def _instance_terminated(self, now: int, data: dict[str, Any]) -> None:
        gone = self.by_id.get(str(data.get("instance_id")))
        if gone is not None and gone.instance_ids[-1] == data.get("instance_id"):
            gone.terminated_ns = now

    def _command_finished(self, now: int, data: dict[str, Any]) -> None:
        owner = self.calls.get(int(data["call"]))
        if owner is not None:
            owner.commands.append(
                CommandView(
                    call=owner.number,
                    slot=self._shared(str(data["slot"])),
                    instance_id=self._shared(str(data["instance_id"])),
                    user=self._shared(str(data.get("user"))),
                    cmd=str(data.get("cmd")),
                    exit_code=data.get("exit_code"),
                    stdout=self._shared_ref(data.get("stdout")),
                    stderr=self._shared_ref(data.get("stderr")),
                    duration_ns=int(data.get("duration_ns") or 0),
                    end_ns=now,
                )
            )

    def _file_put(self, now: int, data: dict[str, Any]) -> None:
        self._file_moved("put", now, data)

    def _file_got(self, now: int, data: dict[str, Any]) -> None:
        self._file_moved("got", now, data)

    def _file_moved(self, kind: str, now: int, data: dict[str, Any]) -> None:
        owner = self.calls.get(int(data["call"]))
        if owner is not None:
            owner.files.append(
                FileView(
                    kind=kind,
                    call=owner.number,
                    slot=self._shared(str(data["slot"])),
                    instance_id=self._shared(str(data["instance_id"])),
                    user=self._shared(str(data.get("user"))),
                    local_path=str(data.get("local_path")),
                    remote_path=str(data.get("remote_path")),
                    mode=int(data.get("mode") or 0),
                    content=self._shared_ref(data.get("content")),
                    temporary=bool(data.get("temporary")),
                    at_ns=now,
                )
            )

    def _module_loaded(self, now: int, data: dict[str, Any]) -> None:
        name = str(data.get("name"))
        self.modules[name] = ModuleView(
            name=name, path=str(data.get("path")), content=self._shared_ref(data.get("content"))
        )

    def _replay_step(self, now: int, data: dict[str, Any]) -> None:
        self.replay_steps.append(data)

    def _blob_withheld(self, now: int, data: dict[str, Any]) -> None:
        # The blob was removed after the events that refer to it were written: from here
        # on, every reader sees those references as kept by hash only.
        sha, reason = str(data.get("sha256")), str(data.get("reason"))
        self._withheld[sha] = reason
        for ref in (self._refs.get(sha), self.script):
            if ref is not None and ref.sha256 == sha and ref.text is None:
                ref.withheld = reason

    def _note(self, now: int, data: dict[str, Any]) -> None:
        fields = dict(self._decoded(data.get("fields") or {}))
        self.notes.append((now, str(data.get("text")), fields))
        if "ended" in fields:
            self.ending = str(data.get("text"))

    def _parameter(self, now: int, data: dict[str, Any]) -> None:
        name = str(data.get("name"))
        self.parameters.pop(name, None)  # declared again: where it was declared last
        self.parameters[name] = ParameterView(
            name=name, value=self._decoded(data.get("value")), source=str(data.get("source"))
        )

    def _shared_ref(self, data: dict[str, JSON] | None) -> ContentRef | None:
        # Most commands print nothing on stderr, many print the same line: one reference
        # for each distinct content instead of one per event (a fifth of a large view).
        if not data:
            return None
        sha, text = data.get("sha256"), data.get("text")
        if type(sha) is not str:
            return None
        refs = self._refs
        found = refs.get(sha)
        if found is None:
            size = data.get("size")
            if type(text) is str and type(size) is int and len(data) == 3:
                # New inline output, the common case: nothing in it to check or convert
                # (and inline content is never withheld).
                ref = refs[sha] = ContentRef(sha256=sha, size=size, text=text)
                return ref
        elif (
            found.text == text
            and found.size == data.get("size")
            and data.get("withheld") in (None, found.withheld)
        ):
            return found
        made = ContentRef.of(data)
        if made is None:  # pragma: no cover - its sha256 is a string
            return None
        if made.text is None and sha in self._withheld:
            made.withheld = self._withheld[sha]
        refs.setdefault(sha, made)
        return made

    def _shared_result(self, result: JSON) -> JSON:
        # `run` results ({"exit_codes": [0, 0]}) repeat call after call: one copy of each
        # (and a list of scalars holds no typed value: nothing to decode).
        if type(result) is not dict or len(result) != 1:
            return self._decoded(result)
        codes = result.get("exit_codes")
        if type(codes) is not list:
            return self._decoded(result)
        try:
            return self._results.setdefault(tuple(codes), result)
        except TypeError:  # not a list of exit codes after all (unhashable items)
            return self._decoded(result)

    def _decoded(self, value: JSON) -> JSON:
        # Typed numbers ({"$float": …}) back to numbers, unless the line is known to hold
        # none. (Looking for "$ in each line's bytes costs more than this walk of the few
        # values that may hold one.)
        return decoded_or_as_is(value) if self._typed else value

    def _shared(self, text: str) -> str:
        # Slots, ids, users, methods repeat in every event: one copy each, not one per event.
        return self._strings.setdefault(text, text)

    _HANDLERS: ClassVar[dict[str, Callable[[ViewBuilder, int, dict[str, Any]], None]]] = {
        "run.started": _run_started,
        "run.finished": _run_finished,
        "experiment.created": _experiment_created,
        "call.started": _call_started,
        "call.finished": _call_finished,
        "call.failed": _call_failed,
        "instance.launched": _instance_launched,
        "instance.ready": _instance_ready,
        "instance.terminated": _instance_terminated,
        "command.finished": _command_finished,
        "file.put": _file_put,
        "file.got": _file_got,
        "note": _note,
        "replay.step": _replay_step,
        "blob.withheld": _blob_withheld,
        "module.loaded": _module_loaded,
        "parameter": _parameter,
    }

    def build(self) -> RunView:
        return RunView(
            run=str(self.started.get("run") or self.run_dir.name),
            path=self.run_dir,
            started=self.started,
            finished=self.finished,
            experiments=self.experiments,
            calls=[self.calls[number] for number in sorted(self.calls)],
            instances=dict(sorted(self.instances.items(), key=lambda item: slot_order(item[0]))),
            notes=self.notes,
            events=self.count,
            first_ns=self.first,
            last_ns=self.last,
            replay_steps=self.replay_steps,
            ending=self.ending,
            modules=self.modules,
            script=self.script,
            parameters=self.parameters,
        )


PARALLEL_BYTES: Final = 8 << 20
"""Logs of at least this many bytes (together) are verified in child processes while this
process reads them; smaller ones are verified and read in one pass here."""


def load_verified(
    run_dirs: Sequence[Path],
    *,
    meanwhile: Callable[[list[RunView]], object] | None = None,
    keep: bool = True,
) -> list[tuple[RunView | None, Verdict]]:
    """Verify each run and read it: a (view, verdict) pair per run, in order; the view is
    None unless the run is intact (or ``keep`` is False). Raises
    :class:`~precip_repro.exceptions.UnsupportedVersion` as ``verify`` does.

    Large logs are verified in forked children — one per run — while this process reads
    them without checks; a view only counts once its child said the run is intact. That
    spreads a large diff over the machine's cores (verifying is most of its cost).

    ``meanwhile``, when given, is called with the views as soon as they are read — before
    the verdicts are in — so that work on them (a diff) overlaps the checking. Whatever it
    computes is only to be used once every verdict is ``intact``; an exception it raises
    on a run that turns out damaged is dropped (the verdict explains). It is called again
    should a view have to be read again, so its last call saw the views returned. When the
    runs are verified in children, the collector is paused while the views are read and
    ``meanwhile`` runs (cycles it makes wait until it returns).

    With ``keep`` False the views are for ``meanwhile`` alone: they are let go as soon as
    it returns — freeing a large view takes a while, and it need not wait for the
    verdicts — and every pair holds None for its view.
    """
    found: list[tuple[RunView | None, Verdict]] | None = None
    if _parallel_worth_it(run_dirs):
        try:
            found = _load_verified_in_parallel(run_dirs, meanwhile, keep=keep)
        except (OSError, BrokenProcessPool) as exc:
            # No working process pool here (no /dev/shm, a child killed): one process it is.
            log.warning("cannot verify in child processes; verifying here", reason=str(exc))
    if found is None:
        found = [_load_verified_here(run_dir) for run_dir in run_dirs]
        views = [view for view, _ in found if view is not None]
        if meanwhile is not None and len(views) == len(found):
            meanwhile(views)
    return found if keep else [(None, verdict) for _, verdict in found]


def _load_verified_in_parallel(
    run_dirs: Sequence[Path],
    meanwhile: Callable[[list[RunView]], object] | None,
    *,
    keep: bool,
) -> list[tuple[RunView | None, Verdict]]:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=len(run_dirs), mp_context=context, initializer=os.nice, initargs=(10,)
    ) as pool:
        pending = [pool.submit(_verify_paused, run_dir) for run_dir in run_dirs]
        read: list[RunView | None] = []
        deferred: Exception | None = None
        # One pause over every read and `meanwhile`: the collector, let back in after each
        # read, would walk every object of that view once (a twentieth of a large diff) —
        # unless `meanwhile` freezes them first, as the CLI does.
        with collection_paused():
            for run_dir in run_dirs:
                try:
                    read.append(_read_unchecked(run_dir))
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    read.append(None)  # damaged: its verdict says where and why
            if meanwhile is not None and None not in read:
                try:
                    meanwhile([view for view in read if view is not None])
                except Exception as exc:  # judged once the verdicts are in
                    deferred = exc
            counted = [None if view is None else view.events for view in read]
            if not keep:
                read = [None] * len(read)  # freed while the children still verify
        verdicts = [future.result() for future in pending]
    found = []
    again = False
    for run_dir, view, events, verdict in zip(run_dirs, read, counted, verdicts, strict=True):
        if verdict.intact and events != verdict.events:
            # Verified intact, yet read differently: the log changed between the two reads.
            view, verdict = _load_verified_here(run_dir)
            again = True
        found.append((view if verdict.intact else None, verdict))
    if again and not keep and meanwhile is not None:
        # `meanwhile` sees every view again: those let go are read again too.
        found = [
            _load_verified_here(run_dir) if view is None and verdict.intact else (view, verdict)
            for run_dir, (view, verdict) in zip(run_dirs, found, strict=True)
        ]
    if all(verdict.intact for _, verdict in found):
        if again and meanwhile is not None:
            meanwhile([view for view, _ in found if view is not None])
        elif deferred is not None:
            raise deferred
    return found


def _verify_paused(run_dir: Path) -> Verdict:
    # In a child: verifying allocates an event and a payload per line and keeps none of
    # them; the collector's walks would only slow it down.
    with collection_paused():
        return verify(run_dir)


def _load_verified_here(run_dir: Path) -> tuple[RunView | None, Verdict]:
    builder = ViewBuilder(run_dir)
    with collection_paused():
        verdict = verify(run_dir, observe=builder.add)  # checked and read in one pass
    return (builder.build() if verdict.intact else None), verdict


def _parallel_worth_it(run_dirs: Sequence[Path]) -> bool:
    # fork is the cheap way to share this process's imports; it is only safe while no other
    # thread could hold a lock the child needs (a library calling us from a threaded
    # program gets the one-process path).
    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() > 1:
        return False
    size = 0
    for run_dir in run_dirs:
        with contextlib.suppress(OSError):
            size += (run_dir / EVENTS).stat().st_size
    return size >= PARALLEL_BYTES


def _read_unchecked(run_dir: Path) -> RunView:
    builder = ViewBuilder(run_dir)
    with open_regular(run_dir / EVENTS, what="event log", run=None, buffering=1 << 20) as f:
        builder.add_lines(f)
    return builder.build()


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for work on large run views.

    A view is hundreds of thousands of small objects, none in a cycle: the collector's
    repeated walks over them find nothing, and cost a quarter of reading a large run and a
    third of diffing two (whose comparison allocates as it goes, triggering full walks of
    both views)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_run(run_dir: Path, events: Iterable[Event] | None = None) -> RunView:
    """Read a run's events into a :class:`RunView` (streams the log once)."""
    builder = ViewBuilder(run_dir)
    source = events if events is not None else LogReader(run_dir / EVENTS, run=run_dir.name)
    for event in source:
        builder.add(event)
    return builder.build()


class GrowingView:
    """A run being recorded, read as it grows: each :meth:`refresh` reads only the lines
    written since the last one (a replay compares every step with its own record, and
    reading the whole log each time would make a long replay quadratic)."""

    def __init__(self, run_dir: Path) -> None:
        self._builder = ViewBuilder(run_dir)
        self._offset = 0

    def refresh(self) -> ViewBuilder:
        """The run's view so far (complete lines only: one being written waits)."""
        with open_regular(self._builder.run_dir / EVENTS, what="event log", run=None) as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._builder.add_lines(data[:end].splitlines(keepends=True))
        self._offset += end
        return self._builder

    def view(self) -> RunView:
        return self.refresh().build()
