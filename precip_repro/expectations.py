"""Declared expectations: the differences a scientist says a rerun may show.

A :class:`Rule` says which differences are expected — numbers within a tolerance, text to
ignore (timestamps, hostnames), outputs whose line order does not matter, content not
compared — and where (``stdout``/``stderr`` of commands matching a glob, files whose remote
path matches one, note fields). ``diff`` and ``precip-replay`` judge each difference by the
rules of both runs and those of ``--rules FILE``: a step is *identical*, *equivalent* (each
difference covered by a named rule) or *diverged*.

A rule covers exactly what it selects: a numbers rule with a ``pattern`` tolerates only the
numbers inside the pattern's matches (its first group where it has one), so a timing rule
never hides a changed size printed on the same line. Everything else must be equal.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final

import attrs

from precip_repro.exceptions import RuleInvalid

__all__ = [
    "TARGETS",
    "Expectations",
    "Judgement",
    "Rule",
    "RuleKind",
    "RuleLike",
    "StepVerdict",
    "as_recorded",
]


class RuleKind(enum.StrEnum):
    NUMBERS = "numbers"
    """Numbers may differ within ``relative`` (a fraction) or ``absolute``."""
    IGNORE = "ignore"
    """What ``pattern`` matches is not compared (timestamps, hostnames, durations)."""
    UNORDERED = "unordered"
    """The order of lines does not matter."""
    NOT_COMPARED = "not_compared"
    """The content is not compared at all."""


class StepVerdict(enum.StrEnum):
    """A step's (or a whole comparison's) verdict."""

    IDENTICAL = "identical"
    EQUIVALENT = "equivalent"
    """Every difference is covered by a declared rule."""
    DIVERGED = "diverged"

    @classmethod
    def read(cls, value: object) -> StepVerdict:
        """A recorded ``replay.step`` verdict: an older replay's ``reproduced`` is
        ``identical`` (it had no rules); anything unknown, ``diverged``."""
        if value == "reproduced":
            return cls.IDENTICAL
        try:
            return cls(str(value))
        except ValueError:
            return cls.DIVERGED


TARGETS: Final = ("stdout", "stderr", "file", "note")
"""What a rule can apply to: commands' outputs, files moved, note fields."""
_IMPLIED: Final = {"command": ("stdout", "stderr"), "path": ("file",), "field": ("note",)}
_KEYS: Final = {
    RuleKind.NUMBERS: frozenset({"relative", "absolute", "pattern"}),
    RuleKind.IGNORE: frozenset({"pattern"}),
    RuleKind.UNORDERED: frozenset(),
    RuleKind.NOT_COMPARED: frozenset(),
}
_COMMON_KEYS: Final = ("name", "on", "command", "path", "field")
_NUMBER: Final = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _text_or_none(name: str) -> Any:
    def check(_: Any, attribute: Any, value: object) -> None:
        if value is not None and not isinstance(value, str):
            raise RuleInvalid(f"{name} must be a string, not {value!r}", key=name)

    return check


@attrs.frozen(kw_only=True)
class Rule:
    """One declared expectation. Build one with :meth:`numbers`, :meth:`ignore`,
    :meth:`unordered` or :meth:`not_compared`; give it to ``exp.expect(...)`` (the whole
    run) or as ``expect=`` of ``run``, ``copy_and_run`` or ``get`` (that call only)."""

    kind: RuleKind = attrs.field(converter=RuleKind)
    name: str = ""
    relative: float = 0.0
    absolute: float = 0.0
    pattern: str | None = attrs.field(default=None, validator=_text_or_none("pattern"))
    on: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """What it applies to (of :data:`TARGETS`); empty: what its selectors name, else all."""
    command: str | None = attrs.field(default=None, validator=_text_or_none("command"))
    """A glob the command line must match."""
    path: str | None = attrs.field(default=None, validator=_text_or_none("path"))
    """A glob the file's remote path (or, without a ``/``, its name) must match."""
    field: str | None = attrs.field(default=None, validator=_text_or_none("field"))
    """A glob the note field's name must match."""
    _compiled: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise RuleInvalid(f"name must be a string, not {self.name!r}", key="name")
        unknown = [target for target in self.on if target not in TARGETS]
        if unknown:
            raise RuleInvalid(f"on holds {unknown[0]!r}; valid: {', '.join(TARGETS)}", key="on")
        for key in ("relative", "absolute"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleInvalid(f"{key} must be a number, not {value!r}", key=key)
            if not (math.isfinite(value) and value >= 0):
                raise RuleInvalid(f"{key} must be a finite number ≥ 0, not {value!r}", key=key)
        if self.kind is RuleKind.NUMBERS and not (self.relative or self.absolute):
            raise RuleInvalid(
                "a numbers rule needs a tolerance: relative (0.1 is 10 %) or absolute",
                key="relative",
            )
        if self.kind is not RuleKind.NUMBERS and (self.relative or self.absolute):
            key = "relative" if self.relative else "absolute"
            raise RuleInvalid(f"{key} is a numbers rule's; this is {self.kind}", key=key)
        if self.kind is RuleKind.IGNORE and not self.pattern:
            raise RuleInvalid("an ignore rule needs the pattern it ignores", key="pattern")
        if self.pattern is not None and self.kind not in (RuleKind.NUMBERS, RuleKind.IGNORE):
            raise RuleInvalid(f"pattern is for numbers and ignore rules; this is {self.kind}",
                              key="pattern")  # fmt: skip
        compiled = None
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise RuleInvalid(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}",
                    key="pattern",
                ) from None
        object.__setattr__(self, "_compiled", compiled)

    # -- the ways to declare one ---------------------------------------------------------------

    @classmethod
    def numbers(
        cls,
        *,
        relative: float = 0.0,
        absolute: float = 0.0,
        pattern: str | None = None,
        on: Sequence[str] = (),
        command: str | None = None,
        path: str | None = None,
        field: str | None = None,
        name: str = "",
    ) -> Rule:
        """Numbers may differ by ``relative`` (0.1: 10 % of the larger) or ``absolute``;
        with ``pattern``, only the numbers inside its matches (its first group's)."""
        return cls(kind=RuleKind.NUMBERS, relative=relative, absolute=absolute,
                   pattern=pattern, on=tuple(on), command=command, path=path, field=field,
                   name=name)  # fmt: skip

    @classmethod
    def ignore(
        cls,
        pattern: str,
        *,
        on: Sequence[str] = (),
        command: str | None = None,
        path: str | None = None,
        field: str | None = None,
        name: str = "",
    ) -> Rule:
        """What ``pattern`` matches is not compared."""
        return cls(kind=RuleKind.IGNORE, pattern=pattern, on=tuple(on), command=command,
                   path=path, field=field, name=name)  # fmt: skip

    @classmethod
    def unordered(
        cls,
        *,
        on: Sequence[str] = (),
        command: str | None = None,
        path: str | None = None,
        name: str = "",
    ) -> Rule:
        """The order of lines does not matter."""
        return cls(kind=RuleKind.UNORDERED, on=tuple(on), command=command, path=path,
                   name=name)  # fmt: skip

    @classmethod
    def not_compared(
        cls,
        *,
        on: Sequence[str] = (),
        command: str | None = None,
        path: str | None = None,
        field: str | None = None,
        name: str = "",
    ) -> Rule:
        """The content is not compared."""
        return cls(kind=RuleKind.NOT_COMPARED, on=tuple(on), command=command, path=path,
                   field=field, name=name)  # fmt: skip

    # -- as recorded ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """As a record and a rules file hold it: the keys set, nothing else."""
        out: dict[str, Any] = {"kind": self.kind.value}
        for key in ("name", "relative", "absolute", "pattern", "command", "path", "field"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.on:
            out["on"] = list(self.on)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        """A rule as :meth:`to_json` (or a rules file's table) holds it; :class:`RuleInvalid`
        names an unknown or mistyped key."""
        if not isinstance(data, Mapping):
            raise RuleInvalid(f"a rule is a table of keys, not {data!r}")
        kind = data.get("kind")
        if kind not in RuleKind.__members__.values():
            raise RuleInvalid(
                f"kind is {kind!r}; valid: {', '.join(k.value for k in RuleKind)}", key="kind"
            )
        kind = RuleKind(str(kind))
        allowed = _KEYS[kind] | set(_COMMON_KEYS) | {"kind"}
        for key in data:
            if key not in allowed:
                raise RuleInvalid(
                    f"{key!r} is not a key of a {kind} rule; valid: "
                    f"{', '.join(sorted(allowed - {'kind'}))}",
                    key=str(key),
                )
        on = data.get("on", ())
        if isinstance(on, str):
            on = (on,)
        if not isinstance(on, list | tuple) or not all(isinstance(t, str) for t in on):
            raise RuleInvalid(f"on must be a list of {', '.join(TARGETS)}, not {on!r}", key="on")
        rest = {key: value for key, value in data.items() if key not in ("kind", "on")}
        return cls(kind=kind, on=tuple(on), **rest)

    # -- what it covers ------------------------------------------------------------------------

    @property
    def targets(self) -> frozenset[str]:
        if self.on:
            return frozenset(self.on)
        implied = {t for key, ts in _IMPLIED.items() if getattr(self, key) for t in ts}
        return frozenset(implied or TARGETS)

    def applies(
        self, target: str, *, command: str | None = None, path: str | None = None,
        field: str | None = None,
    ) -> bool:  # fmt: skip
        """Whether this rule speaks of ``target`` (a stream of ``command``, the file at
        ``path``, the note field ``field``)."""
        if target not in self.targets:
            return False
        if self.command is not None and target in ("stdout", "stderr"):
            return command is not None and fnmatchcase(command, self.command)
        if self.path is not None and target == "file":
            if path is None:
                return False
            name = path.rsplit("/", 1)[-1]
            return fnmatchcase(path, self.path) or (
                "/" not in self.path and fnmatchcase(name, self.path)
            )
        if self.field is not None and target == "note":
            return field is not None and fnmatchcase(field, self.field)
        return True

    @property
    def label(self) -> str:
        """The rule's name, or what it says when it has none."""
        if self.name:
            return self.name
        what = {
            RuleKind.NUMBERS: "numbers within " + " or ".join(
                part for part in (
                    f"{self.relative:.4g} relative" if self.relative else "",
                    f"{self.absolute:.4g} absolute" if self.absolute else "",
                ) if part
            ),
            RuleKind.IGNORE: f"ignore {self.pattern!r}",
            RuleKind.UNORDERED: "lines in any order",
            RuleKind.NOT_COMPARED: "not compared",
        }[self.kind]  # fmt: skip
        if self.kind is RuleKind.NUMBERS and self.pattern:
            what += f" matching {self.pattern!r}"
        scope = [f"{key} {getattr(self, key)!r}" for key in ("command", "path", "field")
                 if getattr(self, key)]  # fmt: skip
        return what + (f" ({', '.join(scope)})" if scope else "")

    def _number_spans(self, text: str) -> Iterable[tuple[int, int]]:
        """Where the numbers this rule tolerates are in ``text``."""
        if self._compiled is None:
            regions: Iterable[tuple[int, int]] = ((0, len(text)),)
        else:
            group = 1 if self._compiled.groups else 0
            regions = (m.span(group) for m in self._compiled.finditer(text) if m.start(group) >= 0)
        for start, end in regions:
            for found in _NUMBER.finditer(text, start, end):
                yield found.span()

    def within(self, a: float, b: float) -> bool:
        delta = abs(a - b)
        return delta <= self.absolute or delta <= self.relative * max(abs(a), abs(b))


@attrs.frozen(kw_only=True)
class Judgement:
    """What the rules say of one difference."""

    covered_by: tuple[str, ...] = ()
    """The labels of the rules that cover it (empty: it is not covered)."""
    hint: str | None = None
    """For a difference not covered: what would declare it (only numbers differ)."""


_NOT_COVERED: Final = Judgement()


@attrs.frozen
class Expectations:
    """The rules a comparison applies."""

    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def plus(self, more: Iterable[Rule]) -> Expectations:
        added = tuple(rule for rule in more if rule not in self.rules)
        return Expectations(self.rules + added) if added else self

    def judge_text(
        self, target: str, a: str, b: str, *, command: str | None = None,
        path: str | None = None,
    ) -> Judgement:  # fmt: skip
        """Whether the rules cover the difference between the texts ``a`` and ``b`` (of a
        command's stream ``target``, or of the file at ``path``)."""
        rules = [r for r in self.rules if r.applies(target, command=command, path=path)]
        return _judge(rules, a, b, target=target, command=command, path=path)

    def judge_opaque(
        self, target: str, *, command: str | None = None, path: str | None = None
    ) -> Judgement:
        """Whether the rules cover a change of content not compared as text (binary, or
        too large): only a ``not_compared`` rule can."""
        for rule in self.rules:
            if rule.kind is RuleKind.NOT_COMPARED and rule.applies(
                target, command=command, path=path
            ):
                return Judgement(covered_by=(rule.label,))
        return _NOT_COVERED

    def judge_value(self, field: str, a: Any, b: Any) -> Judgement:
        """Whether the rules cover a note field's change from ``a`` to ``b``."""
        rules = [r for r in self.rules if r.applies("note", field=field)]
        for rule in rules:
            if rule.kind is RuleKind.NOT_COMPARED:
                return Judgement(covered_by=(rule.label,))
        numeric = (int, float)
        if (
            isinstance(a, numeric) and isinstance(b, numeric)
            and not isinstance(a, bool) and not isinstance(b, bool)
        ):  # fmt: skip
            for rule in rules:
                if rule.kind is RuleKind.NUMBERS and rule.pattern is None and rule.within(a, b):
                    return Judgement(covered_by=(rule.label,))
            return Judgement(hint=_hint_numbers([(a, b)], "field", field))
        if isinstance(a, str) and isinstance(b, str):
            return _judge(rules, a, b, target="note", field=field)
        return _NOT_COVERED


def _judge(
    rules: list[Rule], a: str, b: str, *, target: str, command: str | None = None,
    path: str | None = None, field: str | None = None,
) -> Judgement:  # fmt: skip
    used: list[str] = []
    for rule in rules:
        if rule.kind is RuleKind.NOT_COMPARED:
            return Judgement(covered_by=(rule.label,))
    for rule in rules:
        if rule.kind is RuleKind.IGNORE and rule._compiled is not None:
            new_a = rule._compiled.sub("\0ignored\0", a)
            new_b = rule._compiled.sub("\0ignored\0", b)
            if (new_a, new_b) != (a, b):
                used.append(rule.label)
                a, b = new_a, new_b
    for rule in rules:
        if rule.kind is RuleKind.UNORDERED:
            new_a, new_b = _sorted_lines(a), _sorted_lines(b)
            if new_a == new_b and a != b:
                used.append(rule.label)
                a, b = new_a, new_b
    if a == b:
        return Judgement(covered_by=tuple(used)) if used else _NOT_COVERED
    numbers = [rule for rule in rules if rule.kind is RuleKind.NUMBERS]
    if numbers:
        skeleton_a, values_a = _skeleton(a, numbers)
        skeleton_b, values_b = _skeleton(b, numbers)
        if skeleton_a == skeleton_b:
            differing = [
                (numbers[index], x, y)
                for (index, x), (_, y) in zip(values_a, values_b, strict=True)
                if x != y
            ]
            if all(rule.within(x, y) for rule, x, y in differing):
                used += [rule.label for rule in dict.fromkeys(r for r, _, _ in differing)]
                return Judgement(covered_by=tuple(dict.fromkeys(used)))
    # Not covered. If only numbers differ, say what rule would declare it.
    everything = Rule.numbers(relative=1.0)
    skeleton_a, values_a = _skeleton(a, [everything])
    skeleton_b, values_b = _skeleton(b, [everything])
    if skeleton_a != skeleton_b:
        return _NOT_COVERED
    pairs = [(x, y) for (_, x), (_, y) in zip(values_a, values_b, strict=True) if x != y]
    if target == "file":
        return Judgement(hint=_hint_numbers(pairs, "path", path))
    if target == "note":
        return Judgement(hint=_hint_numbers(pairs, "field", field))
    return Judgement(hint=_hint_numbers(pairs, "command", command))


def _sorted_lines(text: str) -> str:
    return "\n".join(sorted(text.splitlines()))


def _skeleton(text: str, rules: list[Rule]) -> tuple[str, list[tuple[int, float]]]:
    """``text`` with each number a rule tolerates cut out (marked with the rule), and those
    numbers in order."""
    spans: dict[tuple[int, int], int] = {}
    taken: set[int] = set()
    for index, rule in enumerate(rules):
        for start, end in rule._number_spans(text):
            if start not in taken:
                spans[(start, end)] = index
                taken.add(start)
    parts: list[str] = []
    values: list[tuple[int, float]] = []
    at = 0
    for (start, end), index in sorted(spans.items()):
        if start < at:
            continue
        parts.append(text[at:start])
        parts.append(f"\0{index}\0")
        values.append((index, float(text[start:end])))
        at = end
    parts.append(text[at:])
    return "".join(parts), values


def _hint_numbers(pairs: list[tuple[float, float]], key: str, where: str | None) -> str | None:
    """What a rule declaring these number changes would say."""
    changes = [abs(x - y) / max(abs(x), abs(y)) for x, y in pairs if max(abs(x), abs(y))]
    if not changes:
        return None
    largest = max(changes)
    # A little room above the largest change seen, in a round figure.
    relative = math.ceil(largest * 100 * 1.1) / 100 if largest < 1 else round(largest * 1.1, 2)
    scope = f", {key}={_glob_for(where)!r}" if where else ""
    return (
        f"only numbers differ (at most {largest * 100:.2g} %): "
        f"Rule.numbers(relative={relative}{scope}) would declare it "
        f"([[numbers]] with these keys in a --rules file)"
    )


_GLOB_SPECIAL: Final = re.compile(r"[*?\[]")


def _glob_for(where: str) -> str:
    """A glob naming ``where``: itself, or — long, or holding glob characters — its start."""
    cut = _GLOB_SPECIAL.search(where)
    head = where[: cut.start()] if cut else where
    if len(head) > 40:
        head = head[:40]
    return head if head == where else head + "*"


RuleLike = Rule | Mapping[str, Any]
"""A rule, or its JSON (as a record holds it: a replay passes the recorded ones back)."""


def as_recorded(expect: RuleLike | Iterable[RuleLike] | None) -> list[dict[str, Any]] | None:
    """The ``expect=`` of a call (or the rules of ``exp.expect``) as its record holds them:
    a list of rules' JSON; None when none were given. :class:`RuleInvalid` for anything
    else, before the call runs."""
    if expect is None:
        return None
    items: Iterable[Any] = [expect] if isinstance(expect, Rule | Mapping) else expect
    if isinstance(items, str | bytes):
        raise RuleInvalid(f"expect takes Rule objects (Rule.numbers(...), …), not {items!r}")
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            item = Rule.from_json(item)
        if not isinstance(item, Rule):
            raise RuleInvalid(
                f"expect takes Rule objects (Rule.numbers(...), Rule.ignore(...), …), "
                f"not {type(item).__name__}"
            )
        out.append(item.to_json())
    return out or None
