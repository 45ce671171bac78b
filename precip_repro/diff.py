"""What changed between two runs.

Calls are aligned by sequence alignment over (experiment, method, normalised arguments) —
an extra call in the middle shifts nothing else — and instances by slot, never by cloud
id, hostname or address. Volatile values are normalised (:mod:`precip_repro.normalize`)
before anything is compared.

The ``--json`` form (``DiffResult.to_json``) is stable, format version 1::

    {"version": 1,
     "a": {"run": ID, "digest": HEX}, "b": {...},
     "same": BOOL,
     "steps": [{"a_call": N, "b_call": N, "exp": "e1", "method": "run",
                "differences": [DIFFERENCE, ...]}],
     "only_in_a": [{"call": N, "exp": E, "method": M, "args": {...}}],
     "only_in_b": [...],
     "instances": [{"slot": S, "differences": [DIFFERENCE, ...]}],
     "run": [DIFFERENCE, ...]}

A DIFFERENCE is ``{"kind": K, "a": VALUE, "b": VALUE}`` plus, where they apply, ``"slot"``,
``"name"`` (an argument or fact), ``"diff"`` (unified text diff) and ``"a_sha256"`` /
``"b_sha256"``. Kinds: ``args``, ``command``, ``outcome``, ``exit_code``, ``stdout``,
``stderr``, ``file``, ``result``, ``duration``, ``command_missing``, ``file_missing`` (in a
step); ``image``, ``image_digest``, ``instance_type``, ``fact``, ``instance_missing`` (in an
instance); ``status`` (how the run ended, and why when not ``ok``: ``"failed: the script
ended with an uncaught …"``), ``script`` (its source), ``module`` (the source of one of the
script's own modules, ``name`` its name; a missing one is null) and ``note`` (the script's
notes, compared in order; a missing one is null, ``name`` is its number) for the whole run.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any, Final

import attrs
import orjson

from precip_repro.messages import shown_difference
from precip_repro.normalize import Normalizer, slot_order
from precip_repro.record.blobs import BlobStore
from precip_repro.record.canonical import JSON
from precip_repro.record.payloads import BlobRef
from precip_repro.record.store import OBJECTS
from precip_repro.runview import CallView, CommandView, FileView, RunView, collection_paused

__all__ = ["DIFF_FORMAT", "DiffResult", "Step", "diff_runs", "render_text"]

DIFF_FORMAT: Final = 1
TEXT_LIMIT: Final = 1 << 20
"""Outputs and files up to this size are compared as text (after normalisation)."""
DIFF_LINES: Final = 200
COMPARED_FACTS: Final = ("uname", "os", "cpus", "memory_kb")
_PLACED_ARGS: Final = frozenset({"image_id", "instance_type"})
"""Provision arguments compared per instance (as image and type), not per call."""
_DERIVED_RESULTS: Final = frozenset({"run", "copy_and_run", "put", "get"})


@attrs.define(kw_only=True)
class Step:
    a_call: int
    b_call: int
    exp: str
    method: str
    differences: list[dict[str, Any]]


@attrs.define(kw_only=True)
class DiffResult:
    a: dict[str, Any]
    b: dict[str, Any]
    steps: list[Step]
    only_in_a: list[dict[str, Any]]
    only_in_b: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    run: list[dict[str, Any]] = attrs.Factory(list)
    """How the runs ended and the script's notes (empty when not compared)."""

    @property
    def same(self) -> bool:
        return not (
            any(step.differences for step in self.steps)
            or self.only_in_a
            or self.only_in_b
            or self.instances
            or self.run
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": DIFF_FORMAT,
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "steps": [attrs.asdict(step) for step in self.steps if step.differences],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "instances": self.instances,
            "run": self.run,
        }


class _Side:
    """One run, with its normaliser and blob store."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.norm = Normalizer(view)
        self.blobs = BlobStore(view.path / OBJECTS, run=view.run)
        self._args: dict[int, dict[str, JSON]] = {}

    def args(self, call: CallView) -> dict[str, JSON]:
        """The call's normalised arguments (computed once: alignment and comparison both
        need them, and normalising is most of a large diff's cost)."""
        found = self._args.get(call.number)
        if found is None:
            found = self._args[call.number] = {
                k: _arg(self, k, v) for k, v in call.args.items() if not _placed(call, k)
            }
        return found

    def key(self, call: CallView) -> str:
        value = [call.exp, call.method, self.args(call)]
        try:
            # decode() also copies the key out of orjson's buffer, which keeps kilobytes of
            # spare room: 100,000 keys would hold hundreds of megabytes.
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # an integer beyond 64 bits: json writes those
            return json.dumps(value, sort_keys=True, ensure_ascii=False)

    def text_of(self, ref: dict[str, JSON]) -> str | None:
        """The normalised text of a blob, when it is text and small enough; else None."""
        if isinstance(ref.get("text"), str):
            return self.norm.text(str(ref["text"]))
        size = ref.get("size")
        if ref.get("withheld") or not isinstance(size, int) or size > TEXT_LIMIT:
            return None
        try:
            raw = self.blobs.read_bytes(BlobRef(sha256=str(ref["sha256"]), size=size))
            return self.norm.text(raw.decode("utf-8"))
        except (UnicodeDecodeError, OSError, ValueError):
            return None


_LOCAL_PATHS: Final = frozenset({"local_path", "local_script"})


def _arg(side: _Side, key: str, value: JSON) -> JSON:
    # A local path is where a file sat on the machine that ran the script — a replay writes
    # the recorded file elsewhere; what moved is compared by content, in the file events.
    if key in _LOCAL_PATHS and isinstance(value, str):
        return PurePath(value).name
    return side.norm.json(value)


def _placed(call: CallView, key: str) -> bool:
    return call.method == "provision" and key in _PLACED_ARGS


def _content_difference(
    kind: str, a: _Side, b: _Side, ref_a: dict[str, JSON], ref_b: dict[str, JSON]
) -> dict[str, Any] | None:
    if ref_a.get("sha256") == ref_b.get("sha256"):
        return None
    text_a, text_b = a.text_of(ref_a), b.text_of(ref_b)
    if text_a is not None and text_b is not None:
        if text_a == text_b:
            return None
        return {
            "kind": kind,
            "a": text_a if len(text_a) <= 200 else f"{len(text_a)} characters",
            "b": text_b if len(text_b) <= 200 else f"{len(text_b)} characters",
            "diff": _unified(text_a, text_b),
            "a_sha256": ref_a.get("sha256"),
            "b_sha256": ref_b.get("sha256"),
        }
    return {
        "kind": kind,
        "a": f"{ref_a.get('size')} bytes",
        "b": f"{ref_b.get('size')} bytes",
        "a_sha256": ref_a.get("sha256"),
        "b_sha256": ref_b.get("sha256"),
    }


def _unified(text_a: str, text_b: str) -> str:
    lines = list(
        difflib.unified_diff(
            text_a.splitlines(keepends=True),
            text_b.splitlines(keepends=True),
            fromfile="a",
            tofile="b",
        )
    )
    return "".join(lines[:DIFF_LINES]) + (
        f"… ({len(lines) - DIFF_LINES} more lines)\n" if len(lines) > DIFF_LINES else ""
    )


def _command_change(a: Any, b: Any, **where: Any) -> dict[str, Any]:
    """A changed command: a generated script or heredoc of many lines gets its changed
    lines as a diff (its first 120 characters would not show them)."""
    found = {"kind": "command", **where, "a": a, "b": b}
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
        found["diff"] = _unified(a + "\n", b + "\n")
    return found


def _commands(call: CallView) -> dict[tuple[str, int], CommandView]:
    """Commands of a call by (slot, n-th on that slot)."""
    out: dict[tuple[str, int], CommandView] = {}
    seen: dict[str, int] = {}
    for command in call.commands:
        n = seen[command.slot] = seen.get(command.slot, -1) + 1
        out[(command.slot, n)] = command
    return out


def _files(side: _Side, call: CallView) -> dict[tuple[str, str, str], FileView]:
    return {(f.slot, f.kind, side.norm.text(f.remote_path)): f for f in call.files}


def _compare_step(
    a: _Side, b: _Side, ca: CallView, cb: CallView, tolerance: float
) -> Iterator[dict[str, Any]]:
    args_a, args_b = a.args(ca), b.args(cb)
    if args_a != args_b:
        for name in sorted(set(args_a) | set(args_b)):
            if args_a.get(name) == args_b.get(name):
                continue
            if name == "cmd":
                yield _command_change(args_a.get(name), args_b.get(name), name=name)
            else:
                yield {"kind": "args", "name": name, "a": args_a.get(name), "b": args_b.get(name)}
    error_a = (ca.error or {}).get("type")
    error_b = (cb.error or {}).get("type")
    if (ca.outcome, error_a) != (cb.outcome, error_b):
        yield {
            "kind": "outcome",
            "a": ca.outcome + (f" ({error_a})" if error_a else ""),
            "b": cb.outcome + (f" ({error_b})" if error_b else ""),
        }
    if ca.method not in _DERIVED_RESULTS:
        result_a, result_b = a.norm.json(ca.result), b.norm.json(cb.result)
        if result_a != result_b:
            yield {"kind": "result", "a": result_a, "b": result_b}
    commands_a, commands_b = _commands(ca), _commands(cb)
    for key in sorted(
        commands_a.keys() | commands_b.keys(), key=lambda k: (slot_order(k[0]), k[1])
    ):
        slot = key[0]
        one, other = commands_a.get(key), commands_b.get(key)
        if one is None or other is None:
            yield {
                "kind": "command_missing",
                "slot": slot,
                "a": a.norm.text(one.cmd) if one else None,
                "b": b.norm.text(other.cmd) if other else None,
            }
            continue
        if "cmd" not in ca.args and a.norm.text(one.cmd) != b.norm.text(other.cmd):
            yield _command_change(a.norm.text(one.cmd), b.norm.text(other.cmd), slot=slot)
        if one.exit_code != other.exit_code:
            yield {"kind": "exit_code", "slot": slot, "a": one.exit_code, "b": other.exit_code}
        for stream in ("stdout", "stderr"):
            found = _content_difference(stream, a, b, getattr(one, stream), getattr(other, stream))
            if found is not None:
                yield {**found, "slot": slot}
    files_a, files_b = _files(a, ca), _files(b, cb)
    for where in sorted(set(files_a) | set(files_b), key=lambda w: (slot_order(w[0]), w[1:])):
        one_file, other_file = files_a.get(where), files_b.get(where)
        if one_file is None or other_file is None:
            yield {
                "kind": "file_missing",
                "slot": where[0],
                "name": where[2],
                "a": where[2] if one_file else None,
                "b": where[2] if other_file else None,
            }
            continue
        found = _content_difference("file", a, b, one_file.content, other_file.content)
        if found is not None:
            yield {**found, "slot": where[0], "name": where[2]}
    if ca.duration_ns is not None and cb.duration_ns is not None:
        delta = abs(cb.duration_ns - ca.duration_ns)
        if delta >= 1_000_000_000 and delta > tolerance * ca.duration_ns:
            yield {
                "kind": "duration",
                "a": round(ca.duration_ns / 1e9, 3),
                "b": round(cb.duration_ns / 1e9, 3),
            }


def _compare_instances(a: _Side, b: _Side) -> Iterator[dict[str, Any]]:
    slots = sorted(set(a.view.instances) | set(b.view.instances), key=slot_order)
    for slot in slots:
        one, other = a.view.instances.get(slot), b.view.instances.get(slot)
        differences: list[dict[str, Any]] = []
        if one is None or other is None:
            differences.append(
                {"kind": "instance_missing", "a": one is not None, "b": other is not None}
            )
        else:
            for kind, value_a, value_b in (
                ("image", one.image_id, other.image_id),
                ("image_digest", one.image_digest, other.image_digest),
                ("instance_type", one.instance_type, other.instance_type),
            ):
                if value_a != value_b:
                    differences.append({"kind": kind, "a": value_a, "b": value_b})
            for name in COMPARED_FACTS:
                fact_a = a.norm.json(one.facts.get(name))
                fact_b = b.norm.json(other.facts.get(name))
                if fact_a != fact_b:
                    differences.append({"kind": "fact", "name": name, "a": fact_a, "b": fact_b})
        if differences:
            yield {"slot": slot, "differences": differences}


def _notes(side: _Side) -> list[dict[str, JSON]]:
    return [
        {"text": side.norm.text(text), "fields": side.norm.json(fields)}
        for _, text, fields in side.view.notes
        if "ended" not in fields  # the tool's own, compared as the run's `ended`
    ]


def _compare_run(a: _Side, b: _Side) -> Iterator[dict[str, Any]]:
    ended_a, ended_b = a.norm.text(a.view.ended), b.norm.text(b.view.ended)
    if ended_a != ended_b:
        yield {"kind": "status", "a": ended_a, "b": ended_b}
    script_a, script_b = a.view.started.get("script"), b.view.started.get("script")
    if isinstance(script_a, dict) and isinstance(script_b, dict):
        found = _content_difference("script", a, b, script_a, script_b)
        if found is not None:
            yield found
    modules_a, modules_b = a.view.modules, b.view.modules
    for name in sorted(modules_a.keys() | modules_b.keys()):
        one, other = modules_a.get(name), modules_b.get(name)
        if one is None or other is None:
            yield {"kind": "module", "name": name, "a": one and one.path,
                   "b": other and other.path}  # fmt: skip
            continue
        found = _content_difference("module", a, b, one.content, other.content)
        if found is not None:
            yield {**found, "name": name}
    notes_a, notes_b = _notes(a), _notes(b)
    for number in range(max(len(notes_a), len(notes_b))):
        note_a = notes_a[number] if number < len(notes_a) else None
        note_b = notes_b[number] if number < len(notes_b) else None
        if note_a != note_b:
            yield {"kind": "note", "name": f"#{number + 1}", "a": note_a, "b": note_b}


def _call_summary(side: _Side, call: CallView) -> dict[str, Any]:
    return {
        "call": call.number,
        "exp": call.exp,
        "method": call.method,
        "args": side.norm.json(call.args),
    }


def _alignment(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """SequenceMatcher's opcodes, with the common head and tail matched first: reruns share
    most of their calls, and matching those in one pass is what keeps a large diff fast."""
    head = 0
    for one, other in zip(a, b, strict=False):
        if one != other:
            break
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    middle = difflib.SequenceMatcher(
        a=a[head : len(a) - tail], b=b[head : len(b) - tail], autojunk=False
    ).get_opcodes()
    opcodes = [("equal", 0, head, 0, head)] if head else []
    opcodes += [
        (tag, i1 + head, i2 + head, j1 + head, j2 + head)
        for tag, i1, i2, j1, j2 in middle
        if i1 != i2 or j1 != j2
    ]
    if tail:
        opcodes.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return opcodes


def diff_runs(
    a: RunView,
    b: RunView,
    *,
    tolerance: float = 0.5,
    digests: tuple[str | None, str | None] = (None, None),
    whole_run: bool = True,
) -> DiffResult:
    """Compare two runs; ``tolerance`` is the relative duration change reported (0.5 =
    ±50 %), differences under a second are never reported. ``whole_run=False`` leaves out
    how the runs ended and the script's notes (a replay has neither: it re-executes calls,
    not the script)."""
    with collection_paused():  # a third of a large diff's time went to futile gc walks
        return _diff_runs(a, b, tolerance=tolerance, digests=digests, whole_run=whole_run)


def _diff_runs(
    a: RunView,
    b: RunView,
    *,
    tolerance: float,
    digests: tuple[str | None, str | None],
    whole_run: bool,
) -> DiffResult:
    side_a, side_b = _Side(a), _Side(b)
    keys_a = [side_a.key(call) for call in a.calls]
    keys_b = [side_b.key(call) for call in b.calls]
    steps: list[Step] = []
    only_a: list[dict[str, Any]] = []
    only_b: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in _alignment(keys_a, keys_b):
        paired = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
        for offset in range(paired):
            ca, cb = a.calls[i1 + offset], b.calls[j1 + offset]
            differences = list(_compare_step(side_a, side_b, ca, cb, tolerance))
            steps.append(
                Step(
                    a_call=ca.number,
                    b_call=cb.number,
                    exp=ca.exp,
                    method=ca.method,
                    differences=differences,
                )
            )
        only_a += [_call_summary(side_a, call) for call in a.calls[i1 + paired : i2]]
        only_b += [_call_summary(side_b, call) for call in b.calls[j1 + paired : j2]]
    return DiffResult(
        a={"run": a.run, "digest": digests[0]},
        b={"run": b.run, "digest": digests[1]},
        steps=steps,
        only_in_a=only_a,
        only_in_b=only_b,
        instances=list(_compare_instances(side_a, side_b)),
        run=list(_compare_run(side_a, side_b)) if whole_run else [],
    )


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:119] + "…"


def _both(a: Any, b: Any) -> tuple[str, str]:
    """Two values side by side; two long texts around where they first differ."""
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 120:
        return shown_difference(a, b)
    return _value(a), _value(b)


def render_text(result: DiffResult) -> Iterator[str]:
    """The diff as lines for a terminal."""
    yield f"a: {result.a['run']}"
    yield f"b: {result.b['run']}"
    if result.same:
        yield "same: no difference after normalisation"
        return
    for step in result.steps:
        if not step.differences:
            continue
        yield f"step a#{step.a_call} / b#{step.b_call}: {step.exp}.{step.method}"
        for found in step.differences:
            where = " ".join(str(found[k]) for k in ("slot", "name") if found.get(k))
            if found["kind"] in ("command_missing", "file_missing"):
                kind = found["kind"].removesuffix("_missing")
                side = "a" if found["a"] is not None else "b"
                what = "" if kind == "file" else f": {_value(found[side])}"  # file: its name
                yield f"  {kind} {where}: only in {side}{what}"
                continue
            yield f"  {found['kind']}{' ' + where if where else ''}:"
            if found.get("diff"):  # text: its changed lines say it once, indented as a block
                yield from (f"    {line}" for line in str(found["diff"]).splitlines())
                continue
            shown = _both(found["a"], found["b"])
            for side, value in zip(("a", "b"), shown, strict=True):
                sha = found.get(f"{side}_sha256")  # binary content of one size: its hash
                yield f"    {side}: {value}" + (f", sha256 {sha}" if sha else "")
    for label, calls in (("only in a", result.only_in_a), ("only in b", result.only_in_b)):
        for call in calls:
            yield f"{label}: #{call['call']} {call['exp']}.{call['method']}({_value(call['args'])})"
    for found in result.run:
        name = f" {found['name']}" if found.get("name") else ""
        yield f"run {found['kind']}{name}:"
        if found.get("diff"):  # a source: its lines that changed say it best
            yield from (f"    {line}" for line in str(found["diff"]).splitlines())
            continue
        yield f"    a: {_value(found['a'])}"
        yield f"    b: {_value(found['b'])}"
    for instance in result.instances:
        yield f"instance {instance['slot']}:"
        for found in instance["differences"]:
            if found["kind"] == "instance_missing":
                yield f"  only in {'a' if found['a'] else 'b'}"
                continue
            name = f" {found['name']}" if found.get("name") else ""
            yield f"  {found['kind']}{name}: {_value(found['a'])} → {_value(found['b'])}"
