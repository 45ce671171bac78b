"""Declared expectations: what each kind of rule covers, and what it must not hide."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro import Expectations, Rule, RuleInvalid, RuleKind, StepVerdict
from precip_repro.expectations import as_recorded

TIMINGS = Rule.numbers(relative=0.1, pattern=r"in ([0-9.]+) s", name="timings")


def covered(rules: list[Rule], a: str, b: str, **where: str) -> tuple[str, ...]:
    return Expectations(tuple(rules)).judge_text("stdout", a, b, **where).covered_by


def test_numbers_within_the_tolerance_are_covered_and_named():
    a = "level 6: 1200 bytes in 1.00 s\n"
    b = "level 6: 1200 bytes in 1.05 s\n"
    assert covered([TIMINGS], a, b) == ("timings",)
    assert covered([TIMINGS], a, "level 6: 1200 bytes in 1.20 s\n") == ()  # 17 %: too far


def test_a_timing_rule_never_hides_a_size_changed_on_the_same_line():
    a = "level 6: 1200 bytes in 1.00 s\n"
    b = "level 6: 1201 bytes in 1.01 s\n"
    assert covered([TIMINGS], a, b) == ()


def test_a_rule_without_pattern_tolerates_every_number_but_not_other_text():
    anywhere = Rule.numbers(relative=0.5)
    assert covered([anywhere], "a 10 b 20", "a 11 b 21") == (anywhere.label,)
    assert covered([anywhere], "a 10 b 20", "a 11 c 21") == ()
    assert covered([anywhere], "a 10 b 20", "a 10 b 20 30") == ()  # a number more


def test_absolute_tolerance():
    rule = Rule.numbers(absolute=0.5)
    assert covered([rule], "t=3.2", "t=3.6") == (rule.label,)
    assert covered([rule], "t=3.2", "t=3.8") == ()


def test_ignored_patterns_and_unordered_lines_cover_what_they_say():
    stamp = Rule.ignore(r"\d\d:\d\d:\d\d", name="clock")
    assert covered([stamp], "at 10:00:01 done", "at 10:00:07 done") == ("clock",)
    assert covered([stamp], "at 10:00:01 done", "at 10:00:07 failed") == ()
    any_order = Rule.unordered(name="set")
    assert covered([any_order], "b\na\n", "a\nb\n") == ("set",)
    assert covered([any_order], "b\na\n", "a\nc\n") == ()


def test_selectors_limit_a_rule_to_its_commands_files_and_fields():
    rule = Rule.not_compared(command="date*", name="dates")
    rules = Expectations((rule,))
    assert rules.judge_text("stdout", "x", "y", command="date -u").covered_by == ("dates",)
    assert rules.judge_text("stdout", "x", "y", command="uname").covered_by == ()
    assert rules.judge_text("file", "x", "y", path="/tmp/a").covered_by == ()  # not a file rule
    logs = Expectations((Rule.not_compared(path="*.log"),))
    assert logs.judge_text("file", "x", "y", path="/var/run/x.log").covered_by
    assert logs.judge_opaque("file", path="/var/run/x.log").covered_by  # binary too
    assert not logs.judge_opaque("file", path="/var/run/x.bin").covered_by
    seconds = Expectations((Rule.numbers(relative=0.1, field="seconds", name="s"),))
    assert seconds.judge_value("seconds", 1.0, 1.05).covered_by == ("s",)
    assert seconds.judge_value("bytes", 100, 101).covered_by == ()
    assert seconds.judge_value("seconds", 1.0, "1.05").covered_by == ()


def test_a_difference_in_numbers_only_says_which_rule_would_declare_it():
    judged = Expectations().judge_text(
        "stdout", "took 1.00 s", "took 1.20 s", command="bench --quick"
    )
    assert not judged.covered_by
    assert judged.hint is not None
    assert "only numbers differ (at most 17 %)" in judged.hint
    assert "Rule.numbers(relative=0.19, command='bench --quick')" in judged.hint
    assert Expectations().judge_text("stdout", "took 1 s", "took 1 min").hint is None
    long = "size=$(gzip -9 -c /opt/data | wc -c); echo $size bytes in $(date +%N) s"
    judged = Expectations().judge_text("stdout", "1 s", "2 s", command=long)
    assert (
        judged.hint is not None
        and "command='size=$(gzip -9 -c /opt/data | wc -c); ec*'" in judged.hint
    )


@pytest.mark.parametrize(
    ("make", "key", "says"),
    [
        (lambda: Rule.numbers(), "relative", "needs a tolerance"),
        (lambda: Rule.numbers(relative=-1), "relative", "≥ 0"),
        (lambda: Rule.numbers(relative=float("nan")), "relative", "finite"),
        (lambda: Rule.ignore("("), "pattern", "not a regular expression"),
        (lambda: Rule.unordered(on=["stdin"]), "on", "valid: stdout, stderr, file, note"),
        (
            lambda: Rule.from_json({"kind": "numbers", "relative": 0.1, "tolerance": 2}),
            "tolerance",
            "valid: absolute, command",
        ),
        (lambda: Rule.from_json({"kind": "fuzzy"}), "kind", "valid: numbers, ignore"),
    ],
)
def test_a_malformed_rule_is_refused_naming_its_key(make, key, says):
    with pytest.raises(RuleInvalid, match=says) as caught:
        make()
    assert caught.value.key == key


def test_expect_takes_rules_or_their_json_and_nothing_else():
    assert as_recorded(None) is None
    assert as_recorded(TIMINGS) == [TIMINGS.to_json()]
    assert as_recorded([TIMINGS.to_json()]) == [TIMINGS.to_json()]
    with pytest.raises(RuleInvalid, match="not str"):
        as_recorded(["numbers"])  # type: ignore[list-item]


def test_an_older_replays_reproduced_reads_as_identical():
    assert StepVerdict.read("reproduced") is StepVerdict.IDENTICAL
    assert StepVerdict.read("equivalent") is StepVerdict.EQUIVALENT
    assert StepVerdict.read("something else") is StepVerdict.DIVERGED


_globs = st.none() | st.text("ab*?/.", min_size=1, max_size=6)
rules = st.builds(
    lambda kind, tol, pattern, command, path, name: Rule(
        kind=kind,
        relative=tol if kind is RuleKind.NUMBERS else 0.0,
        pattern=pattern if kind in (RuleKind.NUMBERS, RuleKind.IGNORE) else None,
        command=command,
        path=path,
        name=name,
    ),
    st.sampled_from(RuleKind),
    st.floats(min_value=0.001, max_value=10),
    st.sampled_from([r"\d+", r"in ([0-9.]+) s", "x"]),
    _globs,
    _globs,
    st.text(max_size=8),
)


@given(rules)
def test_a_rule_reads_back_as_recorded(rule):
    assert Rule.from_json(rule.to_json()) == rule


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=5),
    st.integers(0, 4),
    st.integers(1, 9),
)
def test_a_changed_integer_outside_the_pattern_is_never_covered(sizes, which, delta):
    # Whatever the timings do, a size that changed makes the output diverge.
    line = "size {} in {:.3f} s\n"
    a = "".join(line.format(size, 1.0) for size in sizes)
    changed = list(sizes)
    changed[which % len(sizes)] += delta
    b = "".join(line.format(size, 1.01) for size in changed)
    assert covered([TIMINGS], a, b) == ()
