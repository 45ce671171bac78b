"""A readable text timeline of a run's events, for ``precip-repro show``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import attrs

from precip_repro.record.events import Event
from precip_repro.record.numbers import decoded_or_as_is
from precip_repro.remote_scripts import by_name

__all__ = ["Entry", "describe", "entries", "format_duration", "timeline"]

_PREVIEW: Final = 72


def format_duration(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _short(value: object, limit: int = _PREVIEW) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _output(ref: Any) -> str:
    if not isinstance(ref, dict):
        return "?"
    if isinstance(ref.get("text"), str):
        return _short(ref["text"], 40) if ref["text"] else "(empty)"
    kept = f", kept by hash only: {ref['withheld']}" if ref.get("withheld") else ""
    return f"{ref.get('size', '?')} bytes, blob {str(ref.get('sha256', '?'))[:12]}{kept}"


def _replay_of(source: Any) -> str:
    if not isinstance(source, dict):
        return ""
    signer = f", signed by {source['signer']}" if source.get("signer") else ""
    return f"; a replay of {source.get('run')} (digest {source.get('digest')}{signer})"


def _args(args: Any) -> str:
    if not isinstance(args, dict):
        return "?"
    return ", ".join(f"{key}={_short(value, 40)}" for key, value in args.items())


_DESCRIBE: Final[dict[str, Callable[[dict[str, Any]], str]]] = {
    "run.started": lambda d: (
        f"run {d.get('run')} started by {d.get('user')}@{d.get('host')} "
        f"(precip-repro {d.get('tool_version')}, Python {d.get('python')})"
        + (f", script {d.get('script_path')}" if d.get("script_path") else "")
        + (f" (sha256 {d['script']['sha256']})" if isinstance(d.get("script"), dict) else "")
        + _replay_of(d.get("replay_of"))
    ),
    "experiment.created": lambda d: (
        f"{d.get('exp')} created on {(d.get('cloud') or {}).get('kind')}"
        + (f" ({d['name']})" if d.get("name") else "")
        + (f", logging in as {d['login_user']} (sudo for others)" if d.get("login_user") else "")
    ),
    "call.started": lambda d: (
        f"#{d.get('call')} {d.get('exp')}.{d.get('method')}({_args(d.get('args'))})"
    ),
    "instance.launched": lambda d: (
        f"{d.get('slot')} launched {d.get('instance_id')} "
        f"(image {d.get('image_id')}, type {d.get('instance_type')})"
    ),
    "instance.ready": lambda d: (
        f"{d.get('slot')} ready at {d.get('public_address') or d.get('private_address')}"
        + (f", host key {d.get('host_key')}" if d.get("host_key") else "")
    ),
    "command.finished": lambda d: (
        f"{d.get('slot')} exit {d.get('exit_code')} in "
        f"{format_duration(d.get('duration_ns'))}: {_short(d.get('cmd'), 40)} "
        f"→ stdout {_output(d.get('stdout'))}; stderr {_output(d.get('stderr'))}"
    ),
    "file.put": lambda d: (
        f"{d.get('slot')} put {d.get('local_path')} → {d.get('remote_path')} "
        f"({_output(d.get('content'))})"
    ),
    "file.got": lambda d: (
        f"{d.get('slot')} got {d.get('remote_path')} → {d.get('local_path')} "
        f"({_output(d.get('content'))})"
    ),
    "instance.terminating": lambda d: f"{d.get('slot')} terminating {d.get('instance_id')}",
    "instance.terminated": lambda d: f"{d.get('slot')} terminated {d.get('instance_id')}",
    "call.finished": lambda d: (
        f"#{d.get('call')} finished in {format_duration(d.get('duration_ns'))}"
        + (
            f" → {_short(decoded_or_as_is(d.get('result')), 50)}"
            if d.get("result") is not None
            else ""
        )
    ),
    "call.failed": lambda d: (
        f"#{d.get('call')} FAILED in {format_duration(d.get('duration_ns'))}: "
        f"{(d.get('error') or {}).get('type')}: {_short((d.get('error') or {}).get('message'))}"
    ),
    "replay.step": lambda d: (
        f"replay of #{d.get('source_call')} {d.get('exp')}.{d.get('method')}: {d.get('verdict')}"
        + (f" ({len(d.get('differences') or [])} differences)" if d.get("differences") else "")
    ),
    "module.loaded": lambda d: (
        f"module {d.get('name')} from {d.get('path')} "
        f"({(d.get('content') or {}).get('size', '?')} bytes, "
        f"sha256 {str((d.get('content') or {}).get('sha256', '?'))[:12]})"
    ),
    "blob.added": lambda d: (
        f"blob {str((d.get('content') or {}).get('sha256', '?'))[:12]} added "
        f"({(d.get('content') or {}).get('size', '?')} bytes)"
    ),
    "blob.withheld": lambda d: (
        f"blob {str(d.get('sha256'))[:12]} removed, kept by hash only: {d.get('reason')}"
    ),
    "note": lambda d: (
        f"note: {_short(d.get('text'))}"
        + (f" {_short(decoded_or_as_is(d.get('fields')), 50)}" if d.get("fields") else "")
    ),
    "parameter": lambda d: (
        f"parameter {d.get('name')} = {_short(decoded_or_as_is(d.get('value')), 50)} "
        f"(from {d.get('source')})"
    ),
    "run.finished": lambda d: (
        f"run finished: {d.get('status')}, {d.get('events')} events in "
        f"{format_duration(d.get('duration_ns'))}"
        + (" (recovered after the writer died)" if d.get("recovered") else "")
    ),
}


def describe(event: Event, *, scripts: dict[Any, str] | None = None) -> str:
    """One line saying what an event records. ``scripts``: the local script of each
    ``copy_and_run`` call so far, by call number — its commands show it by name."""
    render = _DESCRIBE.get(event.type)
    if render is None:
        return f"{event.type} (a type this version does not know)"
    data = event.data
    if scripts and event.type == "command.finished" and isinstance(data.get("cmd"), str):
        data = {**data, "cmd": by_name(data["cmd"], scripts.get(data.get("call")))}
    try:
        return render(data)
    except (AttributeError, TypeError, ValueError):
        return f"{event.type} (malformed data)"


@attrs.frozen(kw_only=True)
class Entry:
    """One event of a timeline: the event, seconds since the run's first, what it records."""

    event: Event
    offset_s: float
    description: str


def entries(events: Iterable[Event]) -> Iterator[Entry]:
    """Each event with its offset from the first and its one-line description (a
    ``copy_and_run``'s commands name its script)."""
    start: dt.datetime | None = None
    scripts: dict[Any, str] = {}
    for event in events:
        data = event.data
        if event.type == "call.started" and data.get("method") == "copy_and_run":
            args = data.get("args")
            if isinstance(args, dict) and isinstance(args.get("local_script"), str):
                scripts[data.get("call")] = args["local_script"]
        when = event.when
        start = start or when
        offset = (when - start).total_seconds()
        yield Entry(event=event, offset_s=offset, description=describe(event, scripts=scripts))


def timeline(events: Iterable[Event]) -> Iterator[str]:
    """Lines ``+SECONDS  SEQ  TYPE  what happened`` relative to the first event."""
    for entry in entries(events):
        event = entry.event
        yield f"+{entry.offset_s:9.3f}s {event.seq:>6}  {event.type:<21} {entry.description}"
