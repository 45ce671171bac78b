"""The plan: the recorded calls in order, with the gaps between them and mapped values."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import attrs

from precip_repro import (
    METHODS,
    SECRET_PLACEHOLDER,
    CallView,
    ContentReader,
    ContentRef,
    Normalizer,
    RunView,
)
from replay.mapping import ReplayMapping

__all__ = ["Step", "build_plan", "describe", "interrupted_call", "secrets_needed"]

REPLAYED: Final = frozenset(name for name, m in METHODS.items() if m.replayed)


@attrs.frozen(kw_only=True)
class Step:
    call: CallView
    gap_s: float
    """Recorded time between the end of the previous call and the start of this one."""

    @property
    def number(self) -> int:
        return self.call.number


def interrupted_call(view: RunView) -> CallView | None:
    """The call during which the recording was stopped (a signal, or the writer killed and
    the run recovered). It has no outcome to reproduce, and what follows it is the clean-up
    the stop set off, so the plan ends before it."""
    return next((call for call in view.calls if call.stopped), None)


def build_plan(view: RunView) -> list[Step]:
    steps: list[Step] = []
    previous_end: int | None = None
    stop = interrupted_call(view)
    for call in view.calls:
        if call is stop:
            break
        if call.method not in REPLAYED:
            continue
        gap = 0.0 if previous_end is None else max(0, call.start_ns - previous_end) / 1e9
        steps.append(Step(call=call, gap_s=gap))
        previous_end = call.start_ns + (call.duration_ns or 0)
    return steps


def images_used(view: RunView) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for call in view.calls:
        if call.method == "provision":
            used.setdefault(call.exp, set()).add(str(call.args.get("image_id")))
    return used


_PLACEHOLDER_BYTES: Final = re.compile(SECRET_PLACEHOLDER.pattern.encode())
_OVERLAP: Final = 256
"""Bytes of one chunk kept for the next: a placeholder cut in two is still found."""


def secrets_needed(view: RunView) -> set[str]:
    """The names of the secrets the recording redacted — in arguments, results, errors,
    notes and command outputs (inline or stored) — or withheld content for (a file moved,
    the script or a module holding one). Each must be bound again: a secret used only
    where the script read it on an instance (a command printing a key file), or inside a
    file the replay sends, would otherwise reach the replay's own record in clear."""
    found: set[str] = set()
    reader = ContentReader(view)
    scanned: set[str] = set()  # the same output (every instance's "ok") is read once
    withheld = [view.script, *(module.content for module in view.modules.values())]
    for call in view.calls:
        found |= set(SECRET_PLACEHOLDER.findall(repr((call.args, call.result, call.error))))
        for command in call.commands:
            for ref in (command.stdout, command.stderr):
                if ref is not None and ref.sha256 not in scanned:
                    scanned.add(ref.sha256)
                    found |= _placeholders(reader, ref)
                withheld.append(ref)
        withheld += [moved.content for moved in call.files]
    for _, text, fields in view.notes:
        found |= set(SECRET_PLACEHOLDER.findall(repr((text, fields))))
    for ref in withheld:
        if ref is not None and ref.withheld:
            found |= set(_WITHHELD_FOR.findall(ref.withheld))
    return found


_WITHHELD_FOR: Final = re.compile(r"holds secret ([A-Za-z0-9_]+)")
"""The reason a content reference withheld for a secret gives (``holds secret NAME``)."""


def _placeholders(reader: ContentReader, ref: ContentRef) -> set[str]:
    if ref.text is not None:
        return set(SECRET_PLACEHOLDER.findall(ref.text))
    found: set[str] = set()
    tail = b""
    for chunk in reader.chunks(ref):
        window = tail + chunk
        found |= {name.decode() for name in _PLACEHOLDER_BYTES.findall(window)}
        tail = window[-_OVERLAP:]
    return found


def describe(
    view: RunView, steps: list[Step], mapping: ReplayMapping, max_gap: float
) -> Iterator[str]:
    """The plan as lines, with mapped values: what ``--dry-run`` prints. Values learned
    from earlier results (ids, addresses, hostnames) are shown as what the replay fills in
    — ``{e1.p1.0.private_address}``, not the recorded instance's address."""
    norm = Normalizer(view)
    learned = False
    for step in steps:
        call = step.call
        args = norm.json(dict(call.args))
        assert isinstance(args, dict)
        if call.method == "provision":
            args["image_id"] = mapping.image(call.exp, str(args.get("image_id")))
            args["instance_type"] = mapping.instance_type(call.exp, str(args.get("instance_type")))
        if "user" in args:
            args["user"] = mapping.user(call.exp, str(args["user"]))
        if step.gap_s >= 0.5:
            yield f"  (wait {min(step.gap_s, max_gap):.1f} s; recorded {step.gap_s:.1f} s)"
        shown = ", ".join(f"{key}={value!r}" for key, value in args.items())
        yield f"#{call.number} {call.exp}.{call.method}({shown})"
        learned = learned or args != call.args
    if learned:
        yield "({e1.p1.0…} and the like: that instance's value in the replay, learned as it runs)"
