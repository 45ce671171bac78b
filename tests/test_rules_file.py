"""The rules file of ``diff --rules`` and ``precip-replay --rules``: read, or refused in one
line naming the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from precip_repro import Rule, RuleInvalid, load_rules
from precip_repro.rules_file import MAX_RULES_FILE

GOOD = """\
# the sweep's timings
[[numbers]]
name = "timings"
relative = 0.10
pattern = 'in ([0-9.]+) s'

[[numbers]]
field = "seconds"
absolute = 0.5

[[ignore]]
pattern = '\\d\\d:\\d\\d:\\d\\d'
on = "stdout"

[[unordered]]
command = "ls *"

[[not_compared]]
path = "*.log"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_every_kind_of_rule_reads_from_its_table(tmp_path):
    rules = load_rules(write(tmp_path, GOOD))
    assert rules == (
        Rule.numbers(relative=0.1, pattern=r"in ([0-9.]+) s", name="timings"),
        Rule.numbers(absolute=0.5, field="seconds"),
        Rule.ignore(r"\d\d:\d\d:\d\d", on=["stdout"]),
        Rule.unordered(command="ls *"),
        Rule.not_compared(path="*.log"),
    )
    assert rules[1].targets == {"note"}  # what its selector names
    assert rules[0].targets == {"stdout", "stderr", "file", "note"}


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (
            "[[numbers]]\nrelative = 0.1\n\n[[numbers]]\nrelative = 0.1\ntolerance = 3\n",
            6,
            "[[numbers]] #2: 'tolerance' is not a key of a numbers rule",
        ),
        ("[[numbers]]\nname = 'x'\nrelative = 'ten'\n", 3, "relative must be a number"),
        ("[[ignore]]\nname = 'no pattern'\n", 1, "needs the pattern it ignores"),
        ("[[ignore]]\npattern = '('\n", 2, "not a regular expression"),
        ("\n[[fuzzy]]\nrelative = 0.1\n", 2, "'fuzzy' is not a kind of rule; valid: [[numbers]]"),
        ("[numbers]\nrelative = 0.1\n", 1, "numbers must be written as [[numbers]] tables"),
        ("[[numbers]]\nrelative = \n", 2, "not valid TOML"),
        ("[[unordered]]\non = ['stdout', 'stdin']\n", 2, "on holds 'stdin'"),
    ],
)
def test_a_bad_file_is_one_error_naming_the_file_the_key_and_its_line(tmp_path, text, line, says):
    path = write(tmp_path, text)
    with pytest.raises(RuleInvalid) as caught:
        load_rules(path)
    assert caught.value.path == path and caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"{path}, line {line}: ")
    assert says in str(caught.value)


def test_a_missing_or_huge_file_is_said_so(tmp_path):
    with pytest.raises(RuleInvalid, match="cannot read the rules file"):
        load_rules(tmp_path / "none.toml")
    huge = write(tmp_path, "#" * (MAX_RULES_FILE + 1))
    with pytest.raises(RuleInvalid, match="not a rules file"):
        load_rules(huge)
