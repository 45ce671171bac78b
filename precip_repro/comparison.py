"""One comparison of a recorded call with another: what ``diff`` reports and what a replay's
verdicts are made of.

Both sides are calls read from a record — for a replay, its own record of the call it just
made — each with the normaliser of its run (:mod:`precip_repro.normalize`), so volatile
values (ids, addresses, hostnames, the run id, temporary paths, timestamps) compare by the
slot they belong to. What is compared is decided by :class:`Comparing`: ``diff`` compares
everything, a replay leaves out what it changes on purpose (mapped arguments, another
cloud's bookkeeping, durations). The schema of a :class:`Difference` is in
``docs/differences.md``.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import Any, Final

import attrs
import orjson

from precip_repro.content import TEXT_LIMIT, ContentReader, ContentRef
from precip_repro.exceptions import RuleInvalid
from precip_repro.expectations import Expectations, Judgement, Rule, StepVerdict
from precip_repro.logs import get_logger
from precip_repro.normalize import Normalizer
from precip_repro.record.canonical import JSON
from precip_repro.record.methods import CallResult, method
from precip_repro.record.walk import map_strings
from precip_repro.remote_scripts import by_name
from precip_repro.runview import CallView, CommandView, FileView, RunView
from precip_repro.slots import slot_order

__all__ = [
    "Comparing",
    "ComparisonSide",
    "DIFF_COMPARING",
    "DIFF_LINES",
    "Difference",
    "DifferenceKind",
    "REPLAY_COMPARING",
    "compare_calls",
    "content_difference",
    "declared_rules",
    "outcome_of",
    "unified",
    "verdict_of",
]

log = get_logger(__name__)

DIFF_LINES: Final = 200
"""Lines of a unified diff kept in a difference (the rest are counted)."""
_SHOWN: Final = 200
"""Characters of a text shown whole as a difference's side (longer: its length)."""


class DifferenceKind(enum.StrEnum):
    """What differs. In a step: ``args`` … ``file_missing``; in an instance: ``image`` …
    ``instance_missing``; in the whole run: ``status`` … ``note``."""

    ARGS = "args"
    COMMAND = "command"
    OUTCOME = "outcome"
    EXIT_CODE = "exit_code"
    STDOUT = "stdout"
    STDERR = "stderr"
    FILE = "file"
    RESULT = "result"
    DURATION = "duration"
    COMMAND_MISSING = "command_missing"
    FILE_MISSING = "file_missing"
    IMAGE = "image"
    IMAGE_DIGEST = "image_digest"
    INSTANCE_TYPE = "instance_type"
    FACT = "fact"
    INSTANCE_MISSING = "instance_missing"
    STATUS = "status"
    SCRIPT = "script"
    MODULE = "module"
    NOTE = "note"


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Difference:
    """One difference between a recorded side ``a`` and another side ``b``."""

    kind: DifferenceKind
    a: Any
    b: Any
    slot: str | None = None
    """The instance it concerns (commands, files)."""
    name: str | None = None
    """The argument, fact, file, module or note it concerns."""
    diff: str | None = None
    """A unified diff of the two texts, when both are text."""
    a_sha256: str | None = None
    b_sha256: str | None = None
    covered_by: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """The declared rules that cover it (:mod:`precip_repro.expectations`): an expected
    difference. Empty: it is not covered."""
    hint: str | None = None
    """For a difference not covered in which only numbers differ: the rule that would
    declare it."""

    def to_json(self) -> dict[str, Any]:
        """As ``diff --json`` and ``replay.step`` events hold it: optional keys only when set."""
        out: dict[str, Any] = {"kind": self.kind.value, "a": self.a, "b": self.b}
        for key in ("slot", "name", "diff", "a_sha256", "b_sha256", "hint"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.covered_by:
            out["covered_by"] = list(self.covered_by)
        return out

    @property
    def expected(self) -> bool:
        return bool(self.covered_by)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Difference:
        """A difference as a record or ``diff --json`` holds it."""
        return cls(
            kind=DifferenceKind(data["kind"]),
            a=data.get("a"),
            b=data.get("b"),
            slot=data.get("slot"),
            name=data.get("name"),
            diff=data.get("diff"),
            a_sha256=data.get("a_sha256"),
            b_sha256=data.get("b_sha256"),
            covered_by=tuple(data.get("covered_by") or ()),
            hint=data.get("hint"),
        )

    def where(self) -> str:
        return " ".join(part for part in (self.slot, self.name) if part)


@attrs.frozen(kw_only=True)
class Comparing:
    """What a comparison looks at."""

    args: bool = True
    """The calls' arguments and command lines (a replay maps them on purpose)."""
    results: frozenset[CallResult] = frozenset({CallResult.ANSWER, CallResult.BOOKKEEPING})
    """Which recorded results are compared."""
    tolerance: float | None = 0.5
    """Durations: the relative change reported (at least a second); None: not compared."""
    one_host: bool = False
    """All the ways of naming a slot's host (its address, public or private address or
    hostname) are one: clouds reach an instance differently."""
    target_facts: bool = False
    """``list`` results leave out images, types and addresses: facts of the target."""
    text_limit: int = TEXT_LIMIT
    """Content up to this size is compared as normalised text, larger by its hash."""
    rules: Expectations = attrs.field(factory=Expectations)
    """Declared expectations: the differences they cover are marked expected."""
    hints: bool = False
    """Say, of a text difference no rule covers, the rule that would declare it when only
    numbers differ — even with no rule declared."""


DIFF_COMPARING: Final = Comparing()
"""What ``diff`` compares."""
REPLAY_COMPARING: Final = Comparing(
    args=False,
    results=frozenset({CallResult.ANSWER}),
    tolerance=None,
    one_host=True,
    target_facts=True,
    hints=True,
    # What a replay sends it rewrites (addresses) up to this size: it must compare as text
    # up to the same size, or its own rewriting would be a divergence.
    text_limit=16 << 20,
)
"""What a replay's verdicts compare."""

_HOST_NAMES: Final = re.compile(
    r"\{(e\d+\.p\d+\.\d+)\.(?:address|public_address|private_address|public_hostname"
    r"|private_hostname)\}"
)
_TARGET_FACTS: Final = ("image_id", "instance_type", "public_address", "private_address")


class ComparisonSide:
    """One run being compared: its view, normaliser and content."""

    def __init__(
        self,
        view: RunView,
        *,
        reader: ContentReader | None = None,
        norm: Normalizer | None = None,
        one_host: bool = False,
    ) -> None:
        self.view = view
        self.norm = norm if norm is not None else Normalizer(view)
        self.reader = reader if reader is not None else ContentReader(view)
        self.one_host = one_host
        self._args: dict[int, dict[str, JSON]] = {}
        # Called for every string of a large diff: the normaliser's own method where there is
        # nothing to add to it (a wrapper per call was a tenth of the comparison).
        self.text: Callable[[str], str] = self._one_host_text if one_host else self.norm.text

    def _one_host_text(self, value: str) -> str:
        return _HOST_NAMES.sub(r"{\1.host}", self.norm.text(value))

    def json(self, value: JSON) -> JSON:
        """``value`` with every string in it as :attr:`text` gives it."""
        return map_strings(value, self.text)

    def args(self, call: CallView) -> dict[str, JSON]:
        """The call's normalised arguments (computed once: alignment and comparison both
        need them, and normalising is most of a large diff's cost) — without those that
        hold their default: an older record left them out, a newer one holds them, and the
        call is the same."""
        found = self._args.get(call.number)
        if found is None:
            left_out, defaults, local_paths = _arguments_of(call.method, bool(call.result))
            found = self._args[call.number] = {
                k: self._arg(k, v, local_paths)
                for k, v in call.args.items()
                if k not in left_out and (k not in defaults or v != defaults[k])
            }
        return found

    def _arg(self, key: str, value: JSON, local_paths: frozenset[str]) -> JSON:
        # A local path is where a file sat on the machine that ran the script — a replay
        # writes the recorded file elsewhere; what moved is compared by content.
        if type(value) is str:  # most arguments (a command): no walk for them
            return PurePath(value).name if key in local_paths else self.text(value)
        return map_strings(value, self.text)

    def key(self, call: CallView) -> str:
        """What aligns two runs' calls: experiment, method and normalised arguments."""
        value = [call.exp, call.method, self.args(call)]
        try:
            # decode() also copies the key out of orjson's buffer, which keeps kilobytes of
            # spare room: 100,000 keys would hold hundreds of megabytes.
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # an integer beyond 64 bits: json writes those
            return json.dumps(value, sort_keys=True, ensure_ascii=False)

    def content_text(self, ref: ContentRef | None, *, limit: int = TEXT_LIMIT) -> str | None:
        """The normalised text of some content, when it is text and small enough — never
        of withheld content (it held a secret: compared by its hash, never shown)."""
        if ref is None or ref.withheld:
            return None
        found = ref.text  # inline, as most outputs are: no reader needed
        if found is None:
            found = self.reader.text(ref, limit=limit)
        return None if found is None else self.text(found)


_NO_NEWLINE: Final = "\\ No newline at end of file\n"


def unified(text_a: str, text_b: str) -> str:
    """A unified diff of two texts; a last line without its newline is marked as
    diff(1) and git mark it (difflib would run it into the next line)."""
    lines = [
        line if line.endswith("\n") else line + "\n" + _NO_NEWLINE
        for line in difflib.unified_diff(
            text_a.splitlines(keepends=True),
            text_b.splitlines(keepends=True),
            fromfile="a",
            tofile="b",
        )
    ]
    return "".join(lines[:DIFF_LINES]) + (
        f"… ({len(lines) - DIFF_LINES} more lines)\n" if len(lines) > DIFF_LINES else ""
    )


def content_difference(
    kind: DifferenceKind,
    a: ComparisonSide,
    b: ComparisonSide,
    ref_a: ContentRef | None,
    ref_b: ContentRef | None,
    *,
    limit: int = TEXT_LIMIT,
    rules: Expectations | None = None,
    command: str | None = None,
    hints: bool = False,
    **where: str,
) -> Difference | None:
    """How two contents differ: their texts (normalised) when both are text, else their
    sizes and hashes; None when they do not. With ``rules``, a difference they cover is
    marked so (``command`` is the command line whose output this is)."""
    sha_a = ref_a.sha256 if ref_a else None
    sha_b = ref_b.sha256 if ref_b else None
    if sha_a == sha_b:
        return None
    text_a, text_b = a.content_text(ref_a, limit=limit), b.content_text(ref_b, limit=limit)
    if text_a is not None and text_b is not None and text_a == text_b:
        return None
    target = "file" if kind is DifferenceKind.FILE else kind.value
    if text_a is not None and text_b is not None:
        judged = (
            rules.judge_text(target, text_a, text_b, command=command, path=where.get("name"))
            if rules is not None and (rules or hints)
            else _UNJUDGED
        )
        return Difference(
            kind=kind,
            a=text_a if len(text_a) <= _SHOWN else f"{len(text_a)} characters",
            b=text_b if len(text_b) <= _SHOWN else f"{len(text_b)} characters",
            diff=unified(text_a, text_b),
            a_sha256=sha_a,
            b_sha256=sha_b,
            covered_by=judged.covered_by,
            hint=judged.hint,
            **where,
        )
    # Not text (or too large to read as text): only "not compared" can cover it.
    judged = (
        rules.judge_opaque(target, command=command, path=where.get("name")) if rules else _UNJUDGED
    )
    return Difference(
        kind=kind,
        a=f"{ref_a.size if ref_a else None} bytes",
        b=f"{ref_b.size if ref_b else None} bytes",
        a_sha256=sha_a,
        b_sha256=sha_b,
        covered_by=judged.covered_by,
        **where,
    )


_UNJUDGED: Final = Judgement()


def _command_change(a: Any, b: Any, **where: str) -> Difference:
    """A changed command: a generated script or heredoc of many lines gets its changed
    lines as a diff (its first 120 characters would not show them)."""
    diff = None
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
        diff = unified(a + "\n", b + "\n")
    return Difference(kind=DifferenceKind.COMMAND, a=a, b=b, diff=diff, **where)


def _by_slot(key: tuple[str, int]) -> tuple[tuple[int, int, int, int, str], int]:
    return slot_order(key[0]), key[1]


def _commands(call: CallView) -> dict[tuple[str, int], CommandView]:
    """Commands of a call by (slot, n-th on that slot)."""
    out: dict[tuple[str, int], CommandView] = {}
    seen: dict[str, int] = {}
    for command in call.commands:
        n = seen[command.slot] = seen.get(command.slot, -1) + 1
        out[(command.slot, n)] = command
    return out


def _files(side: ComparisonSide, call: CallView) -> dict[tuple[str, str, str], FileView]:
    return {(f.slot, f.kind, side.text(f.remote_path)): f for f in call.files}


def outcome_of(call: CallView) -> str:
    """How a call ended, as a difference shows it: ``finished``, ``failed (TypeName)``."""
    error = call.error_type
    return call.outcome + (f" ({error})" if error else "")


def _result(side: ComparisonSide, call: CallView, how: Comparing) -> JSON:
    result = side.json(call.result)
    if how.target_facts and call.method == "list" and isinstance(result, list):
        return [
            {k: v for k, v in item.items() if k not in _TARGET_FACTS}
            if isinstance(item, dict)
            else item
            for item in result
        ]
    return result


def compare_calls(
    a: ComparisonSide,
    b: ComparisonSide,
    ca: CallView,
    cb: CallView,
    how: Comparing = DIFF_COMPARING,
) -> Iterator[Difference]:
    """The differences between call ``ca`` of ``a`` and call ``cb`` of ``b``; those the
    rules of ``how`` (and the rules either call declares) cover are marked expected."""
    declared_a, declared_b = ca.args.get("expect"), cb.args.get("expect")
    if declared_a or declared_b:
        how = attrs.evolve(how, rules=how.rules.plus(
            _rules_of(declared_a, ca) + _rules_of(declared_b, cb)
        ))  # fmt: skip
    # (Each part only where there is something to compare: this runs once per call of a
    # large diff.)
    if how.args and a.args(ca) != b.args(cb):
        yield from _compare_args(a, b, ca, cb)
    if ca.outcome != cb.outcome or (
        (ca.error is not None or cb.error is not None) and ca.error_type != cb.error_type
    ):
        yield Difference(kind=DifferenceKind.OUTCOME, a=outcome_of(ca), b=outcome_of(cb))
    if _compares_result(ca.method, how.results):
        result_a, result_b = _result(a, ca, how), _result(b, cb, how)
        if result_a != result_b:
            yield Difference(kind=DifferenceKind.RESULT, a=result_a, b=result_b)
    if ca.commands or cb.commands:
        yield from _compare_commands(a, b, ca, cb, how)
    if ca.files or cb.files:
        yield from _compare_files(a, b, ca, cb, how)
    if how.tolerance is not None and ca.duration_ns is not None and cb.duration_ns is not None:
        delta = abs(cb.duration_ns - ca.duration_ns)
        if delta >= 1_000_000_000 and delta > how.tolerance * ca.duration_ns:
            yield Difference(
                kind=DifferenceKind.DURATION,
                a=round(ca.duration_ns / 1e9, 3),
                b=round(cb.duration_ns / 1e9, 3),
            )


@functools.lru_cache(maxsize=256)
def _arguments_of(
    name: str, started: bool
) -> tuple[frozenset[str], Mapping[str, JSON], frozenset[str]]:
    """Of a method's arguments: those a comparison leaves out, their defaults, and those
    that are local paths. Image and type are compared per instance — unless the call
    started none (it failed): then its arguments are all there is to compare."""
    model = method(name)
    placed = model.placed if started else frozenset()
    return placed | model.optional, model.defaults, model.local_paths


@functools.lru_cache(maxsize=256)
def _compares_result(name: str, results: frozenset[CallResult]) -> bool:
    # Once per method, not per call: hashing an enum member is a Python call.
    return method(name).result in results


def _compare_args(
    a: ComparisonSide, b: ComparisonSide, ca: CallView, cb: CallView
) -> Iterator[Difference]:
    args_a, args_b = a.args(ca), b.args(cb)
    if args_a == args_b:
        return
    # An argument one side holds at its default is left out of its arguments: shown so.
    defaults_a, defaults_b = method(ca.method).defaults, method(cb.method).defaults
    for name in sorted(set(args_a) | set(args_b)):
        value_a, value_b = (
            args_a.get(name, defaults_a.get(name)),
            args_b.get(name, defaults_b.get(name)),
        )
        if value_a == value_b:
            continue
        if name == "cmd":
            yield _command_change(value_a, value_b, name=name)
        else:
            yield Difference(kind=DifferenceKind.ARGS, name=name, a=value_a, b=value_b)


def _compare_commands(
    a: ComparisonSide, b: ComparisonSide, ca: CallView, cb: CallView, how: Comparing
) -> Iterator[Difference]:
    commands_a, commands_b = _commands(ca), _commands(cb)
    keys = commands_a.keys() | commands_b.keys()
    for key in sorted(keys, key=_by_slot) if len(keys) > 1 else keys:
        slot = key[0]
        one, other = commands_a.get(key), commands_b.get(key)
        if one is None or other is None:
            yield Difference(
                kind=DifferenceKind.COMMAND_MISSING,
                slot=slot,
                a=a.text(by_name(one.cmd, ca.args.get("local_script"))) if one else None,
                b=b.text(by_name(other.cmd, cb.args.get("local_script"))) if other else None,
            )
            continue
        if how.args and "cmd" not in ca.args:  # a run's command is compared as its argument
            cmd_a = a.text(by_name(one.cmd, ca.args.get("local_script")))
            cmd_b = b.text(by_name(other.cmd, cb.args.get("local_script")))
            if cmd_a != cmd_b:
                yield _command_change(cmd_a, cmd_b, slot=slot)
        if one.exit_code != other.exit_code:
            yield Difference(
                kind=DifferenceKind.EXIT_CODE, slot=slot, a=one.exit_code, b=other.exit_code
            )
        for stream, ref_a, ref_b in (
            (DifferenceKind.STDOUT, one.stdout, other.stdout),
            (DifferenceKind.STDERR, one.stderr, other.stderr),
        ):
            if ref_a is ref_b or (ref_a and ref_b and ref_a.sha256 == ref_b.sha256):
                continue  # the same content (most stderr: none)
            found = content_difference(
                stream, a, b, ref_a, ref_b,
                limit=how.text_limit, slot=slot, rules=how.rules, hints=how.hints,
                command=(
                    by_name(one.cmd, ca.args.get("local_script"))
                    if how.hints or how.rules
                    else None
                ),
            )  # fmt: skip
            if found is not None:
                yield found


def _compare_files(
    a: ComparisonSide, b: ComparisonSide, ca: CallView, cb: CallView, how: Comparing
) -> Iterator[Difference]:
    files_a, files_b = _files(a, ca), _files(b, cb)
    for where in sorted(set(files_a) | set(files_b), key=lambda w: (slot_order(w[0]), w[1:])):
        one, other = files_a.get(where), files_b.get(where)
        if one is None or other is None:
            yield Difference(
                kind=DifferenceKind.FILE_MISSING,
                slot=where[0],
                name=where[2],
                a=where[2] if one else None,
                b=where[2] if other else None,
            )
            continue
        found = content_difference(
            DifferenceKind.FILE, a, b, one.content, other.content,
            limit=how.text_limit, slot=where[0], name=where[2], rules=how.rules,
            hints=how.hints,
        )  # fmt: skip
        if found is not None:
            yield found


def _rules_of(declared: JSON, call: CallView) -> tuple[Rule, ...]:
    """The rules a call's ``expect=`` declared, or an ``expect`` call's; one a newer
    version wrote that this one cannot read is left out (said in the log)."""
    items = declared if isinstance(declared, list) else [declared]
    rules: list[Rule] = []
    for item in items:
        try:
            rules.append(Rule.from_json(item) if isinstance(item, dict) else Rule.from_json({}))
        except RuleInvalid as exc:
            log.warning("a declared rule is left out", call=call.number, reason=str(exc))
    return tuple(rules)


def declared_rules(view: RunView) -> Expectations:
    """The rules a run declared for all of it (``exp.expect(...)``)."""
    rules: tuple[Rule, ...] = ()
    for call in view.calls:
        if call.method == "expect":
            rules += _rules_of(call.args.get("rules"), call)
    return Expectations(rules)


def verdict_of(differences: list[Difference]) -> StepVerdict:
    """``identical`` without differences, ``equivalent`` when declared rules cover each,
    else ``diverged``."""
    if not differences:
        return StepVerdict.IDENTICAL
    if all(found.covered_by for found in differences):
        return StepVerdict.EQUIVALENT
    return StepVerdict.DIVERGED
