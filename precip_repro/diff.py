"""What changed between two runs.

Calls are aligned by sequence alignment over (experiment, method, normalised arguments) —
an extra call in the middle shifts nothing else — and instances by slot, never by cloud
id, hostname or address. Volatile values are normalised (:mod:`precip_repro.normalize`)
before anything is compared.

The ``--json`` form (``DiffResult.to_json``) and the differences in it are documented in
``docs/differences.md``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any, Final

import attrs

from precip_repro.comparison import (
    DIFF_COMPARING,
    ComparisonSide,
    Difference,
    DifferenceKind,
    compare_calls,
    content_difference,
    declared_rules,
    verdict_of,
)
from precip_repro.expectations import Expectations, Rule, StepVerdict
from precip_repro.loading import collection_paused
from precip_repro.messages import shown_difference
from precip_repro.normalize import slot_order
from precip_repro.parameters import ARGV, ParameterChange, parameter_changes
from precip_repro.record.canonical import JSON
from precip_repro.runview import CallView, RunView

__all__ = [
    "DIFF_FORMAT",
    "DiffResult",
    "InstanceDifferences",
    "Step",
    "diff_runs",
    "render_difference",
    "render_text",
]

DIFF_FORMAT: Final = 1
COMPARED_FACTS: Final = ("uname", "os", "cpus", "memory_kb")


@attrs.define(kw_only=True)
class Step:
    a_call: int
    b_call: int
    exp: str
    method: str
    differences: list[Difference]

    @property
    def verdict(self) -> StepVerdict:
        return verdict_of(self.differences)

    def to_json(self) -> dict[str, Any]:
        return {
            "a_call": self.a_call,
            "b_call": self.b_call,
            "exp": self.exp,
            "method": self.method,
            "verdict": self.verdict.value,
            "differences": [found.to_json() for found in self.differences],
        }


@attrs.define(kw_only=True)
class InstanceDifferences:
    slot: str
    differences: list[Difference]

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "differences": [d.to_json() for d in self.differences]}


@attrs.define(kw_only=True)
class DiffResult:
    a: dict[str, Any]
    b: dict[str, Any]
    steps: list[Step]
    only_in_a: list[dict[str, Any]]
    only_in_b: list[dict[str, Any]]
    instances: list[InstanceDifferences]
    run: list[Difference] = attrs.Factory(list)
    """How the runs ended and the script's notes (empty when not compared)."""
    rules: Expectations = attrs.field(factory=Expectations)
    """The declared rules the comparison applied (both runs' and ``--rules``)."""
    parameters: list[ParameterChange] = attrs.Factory(list)
    """What changed in the script's arguments and parameters (empty when not compared)."""

    @property
    def same(self) -> bool:
        """No difference at all (after normalisation): the verdict is ``identical``."""
        return not (
            self.parameters
            or any(step.differences for step in self.steps)
            or self.only_in_a
            or self.only_in_b
            or self.instances
            or self.run
        )

    @property
    def verdict(self) -> StepVerdict:
        """``identical``, ``equivalent`` (declared rules cover every difference) or
        ``diverged``."""
        if self.same:
            return StepVerdict.IDENTICAL
        # Runs asked to do something else (arguments, parameters), a call of one side only,
        # another image or type: no rule covers those.
        if self.parameters or self.only_in_a or self.only_in_b or self.instances:
            return StepVerdict.DIVERGED
        found = [d for step in self.steps for d in step.differences] + self.run
        return verdict_of(found)

    @property
    def expected(self) -> list[Difference]:
        """The differences declared rules cover."""
        return [d for step in self.steps for d in step.differences if d.covered_by] + [
            d for d in self.run if d.covered_by
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": DIFF_FORMAT,
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "verdict": self.verdict.value,
            "rules": [rule.to_json() for rule in self.rules.rules],
            "steps": [step.to_json() for step in self.steps if step.differences],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "instances": [instance.to_json() for instance in self.instances],
            "run": [found.to_json() for found in self.run],
            "parameters": [change.to_json() for change in self.parameters],
        }


def _compare_instances(a: ComparisonSide, b: ComparisonSide) -> Iterator[InstanceDifferences]:
    slots = sorted(set(a.view.instances) | set(b.view.instances), key=slot_order)
    for slot in slots:
        one, other = a.view.instances.get(slot), b.view.instances.get(slot)
        differences: list[Difference] = []
        if one is None or other is None:
            differences.append(
                Difference(
                    kind=DifferenceKind.INSTANCE_MISSING, a=one is not None, b=other is not None
                )
            )
        else:
            for kind, value_a, value_b in (
                (DifferenceKind.IMAGE, one.image_id, other.image_id),
                (DifferenceKind.IMAGE_DIGEST, one.image_digest, other.image_digest),
                (DifferenceKind.INSTANCE_TYPE, one.instance_type, other.instance_type),
            ):
                if value_a != value_b:
                    differences.append(Difference(kind=kind, a=value_a, b=value_b))
            for name in COMPARED_FACTS:
                fact_a = a.json(one.facts.get(name))
                fact_b = b.json(other.facts.get(name))
                if fact_a != fact_b:
                    differences.append(
                        Difference(kind=DifferenceKind.FACT, name=name, a=fact_a, b=fact_b)
                    )
        if differences:
            yield InstanceDifferences(slot=slot, differences=differences)


def _notes(side: ComparisonSide) -> list[dict[str, JSON]]:
    return [
        {"text": side.text(text), "fields": side.json(fields)}
        for _, text, fields in side.view.notes
        if "ended" not in fields  # the tool's own, compared as the run's `ended`
    ]


def _compare_run(a: ComparisonSide, b: ComparisonSide, rules: Expectations) -> Iterator[Difference]:
    ended_a, ended_b = a.text(a.view.ended), b.text(b.view.ended)
    if ended_a != ended_b:
        yield Difference(kind=DifferenceKind.STATUS, a=ended_a, b=ended_b)
    if a.view.script is not None and b.view.script is not None:
        found = content_difference(DifferenceKind.SCRIPT, a, b, a.view.script, b.view.script)
        if found is not None:
            yield found
    modules_a, modules_b = a.view.modules, b.view.modules
    for name in sorted(modules_a.keys() | modules_b.keys()):
        one, other = modules_a.get(name), modules_b.get(name)
        if one is None or other is None:
            yield Difference(kind=DifferenceKind.MODULE, name=name, a=one and one.path,
                             b=other and other.path)  # fmt: skip
            continue
        found = content_difference(
            DifferenceKind.MODULE, a, b, one.content, other.content, name=name
        )
        if found is not None:
            yield found
    notes_a, notes_b = _notes(a), _notes(b)
    for number in range(max(len(notes_a), len(notes_b))):
        note_a = notes_a[number] if number < len(notes_a) else None
        note_b = notes_b[number] if number < len(notes_b) else None
        if note_a != note_b:
            covered, hint = _note_covered(note_a, note_b, rules)
            yield Difference(kind=DifferenceKind.NOTE, name=f"#{number + 1}", a=note_a, b=note_b,
                             covered_by=covered, hint=hint)  # fmt: skip


def _note_covered(
    a: dict[str, JSON] | None, b: dict[str, JSON] | None, rules: Expectations
) -> tuple[tuple[str, ...], str | None]:
    """The rules that cover a note's change, field by field (its text must be the same);
    else none, and what would declare it when only numbers differ."""
    if not rules or a is None or b is None or a["text"] != b["text"]:
        return (), None
    fields_a, fields_b = a["fields"], b["fields"]
    if not isinstance(fields_a, dict) or not isinstance(fields_b, dict):
        return (), None
    if fields_a.keys() != fields_b.keys():
        return (), None
    covered: list[str] = []
    for name in sorted(fields_a):
        if fields_a[name] == fields_b[name]:
            continue
        judged = rules.judge_value(name, fields_a[name], fields_b[name])
        if not judged.covered_by:
            return (), judged.hint
        covered += judged.covered_by
    return tuple(dict.fromkeys(covered)), None


def _call_summary(side: ComparisonSide, call: CallView) -> dict[str, Any]:
    return {
        "call": call.number,
        "exp": call.exp,
        "method": call.method,
        "args": side.json(call.args),
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
    rules: tuple[Rule, ...] = (),
) -> DiffResult:
    """Compare two runs; ``tolerance`` is the relative duration change reported (0.5 =
    ±50 %), differences under a second are never reported. ``whole_run=False`` leaves out
    the script's arguments and parameters, how the runs ended and the script's notes (a
    replay has none of them: it re-executes calls, not the script). The rules both runs
    declared, and ``rules``, mark the differences they cover as expected."""
    with collection_paused():  # a third of a large diff's time went to futile gc walks
        return _diff_runs(
            a, b, tolerance=tolerance, digests=digests, whole_run=whole_run, rules=rules
        )


def _diff_runs(
    a: RunView,
    b: RunView,
    *,
    tolerance: float,
    digests: tuple[str | None, str | None],
    whole_run: bool,
    rules: tuple[Rule, ...],
) -> DiffResult:
    side_a, side_b = ComparisonSide(a), ComparisonSide(b)
    declared = declared_rules(a).plus(declared_rules(b).rules).plus(rules)
    how = attrs.evolve(DIFF_COMPARING, tolerance=tolerance, rules=declared)
    keys_a = [side_a.key(call) for call in a.calls]
    keys_b = [side_b.key(call) for call in b.calls]
    steps: list[Step] = []
    only_a: list[dict[str, Any]] = []
    only_b: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in _alignment(keys_a, keys_b):
        paired = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
        for offset in range(paired):
            ca, cb = a.calls[i1 + offset], b.calls[j1 + offset]
            differences = list(compare_calls(side_a, side_b, ca, cb, how))
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
        run=list(_compare_run(side_a, side_b, declared)) if whole_run else [],
        rules=declared,
        parameters=parameter_changes(a, b) if whole_run else [],
    )


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:119] + "…"


def _both(a: Any, b: Any) -> tuple[str, str]:
    """Two values side by side; two long texts around where they first differ."""
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) > 120:
        return shown_difference(a, b)
    return _value(a), _value(b)


def render_difference(found: Difference) -> Iterator[str]:
    """A step's difference as lines (``diff`` and ``precip-replay`` indent them)."""
    yield from _plain_difference(found)
    if found.covered_by:
        yield f"  expected: {'; '.join(found.covered_by)}"
    elif found.hint:
        yield f"  {found.hint}"


def _plain_difference(found: Difference) -> Iterator[str]:
    where = found.where()
    if found.kind in (DifferenceKind.COMMAND_MISSING, DifferenceKind.FILE_MISSING):
        kind = found.kind.value.removesuffix("_missing")
        side = "a" if found.a is not None else "b"
        value = found.a if side == "a" else found.b
        what = "" if kind == "file" else f": {_value(value)}"  # file: its name
        yield f"{kind} {where}: only in {side}{what}"
        return
    yield f"{found.kind.value}{' ' + where if where else ''}:"
    if found.diff:  # text: its changed lines say it once, indented as a block
        yield from (f"  {line}" for line in found.diff.splitlines())
        return
    shown = _both(found.a, found.b)
    shas = (found.a_sha256, found.b_sha256)  # binary content of one size: its hash
    for side, value, sha in zip(("a", "b"), shown, shas, strict=True):
        yield f"  {side}: {value}" + (f", sha256 {sha}" if sha else "")


def render_text(result: DiffResult) -> Iterator[str]:
    """The diff as lines for a terminal."""
    yield f"a: {result.a['run']}"
    yield f"b: {result.b['run']}"
    if result.same:
        yield "same: no difference after normalisation"
        return
    # What the runs were asked to do explains what they did: said first.
    for change in result.parameters:
        yield change.line() if change.kind == ARGV else f"parameter {change.line()}"
    verdict = result.verdict
    expected = len(result.expected)
    if verdict is StepVerdict.EQUIVALENT:
        yield f"equivalent: {expected} difference(s), each covered by a declared rule"
    for step in result.steps:
        if not step.differences:
            continue
        yield f"step a#{step.a_call} / b#{step.b_call}: {step.exp}.{step.method}"
        for found in step.differences:
            yield from (f"  {line}" for line in render_difference(found))
    for label, calls in (("only in a", result.only_in_a), ("only in b", result.only_in_b)):
        for call in calls:
            yield f"{label}: #{call['call']} {call['exp']}.{call['method']}({_value(call['args'])})"
    for found in result.run:
        name = f" {found.name}" if found.name else ""
        yield f"run {found.kind.value}{name}:"
        if found.diff:  # a source: its lines that changed say it best
            yield from (f"    {line}" for line in found.diff.splitlines())
        else:
            yield f"    a: {_value(found.a)}"
            yield f"    b: {_value(found.b)}"
        if found.covered_by:
            yield f"    expected: {'; '.join(found.covered_by)}"
        elif found.hint:
            yield f"    {found.hint}"
    for instance in result.instances:
        yield f"instance {instance.slot}:"
        for found in instance.differences:
            if found.kind is DifferenceKind.INSTANCE_MISSING:
                yield f"  only in {'a' if found.a else 'b'}"
                continue
            name = f" {found.name}" if found.name else ""
            yield f"  {found.kind.value}{name}: {_value(found.a)} → {_value(found.b)}"
    if verdict is StepVerdict.DIVERGED and result.rules:
        yield (
            f"diverged: differences not covered by a declared rule ({expected} other(s) covered)"
        )
