"""The rules file (TOML) of ``diff --rules`` and ``precip-replay --rules``::

    [[numbers]]                  # numbers may differ within a tolerance
    name = "timings"             # optional: how verdicts name it
    relative = 0.10              # 10 % of the larger (and/or absolute = 0.5)
    pattern = '([0-9.]+) s'      # optional: only numbers inside its matches (group 1)
    command = "*compress*"       # optional: outputs of commands matching this glob …
    # path = "results/*.csv"     # … files whose remote path (or name) matches …
    # field = "seconds"          # … note fields so named
    # on = ["stdout", "file"]    # optional: stdout, stderr, file, note (default: what the
                                 # selectors name, else all)
    [[ignore]]                   # what pattern matches is not compared
    pattern = '\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z'

    [[unordered]]                # the order of lines does not matter
    command = "ls *"

    [[not_compared]]             # not compared at all
    path = "*.log"

Errors name the key and its line, and come before anything is compared or provisioned.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from precip_repro.exceptions import RuleInvalid
from precip_repro.expectations import Rule, RuleKind

__all__ = ["MAX_RULES_FILE", "load_rules"]

MAX_RULES_FILE: Final = 1 << 20
"""The largest rules file read (bytes)."""


def load_rules(path: Path) -> tuple[Rule, ...]:
    """The rules of the file at ``path``; :class:`RuleInvalid` naming the file, the key and
    its line for anything malformed."""
    import tomllib  # only a command given --rules parses TOML: the others start without it

    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RULES_FILE + 1)
    except OSError as exc:
        raise RuleInvalid(f"cannot read the rules file: {exc.strerror}", path=path) from None
    if len(raw) > MAX_RULES_FILE:
        raise RuleInvalid(f"larger than {MAX_RULES_FILE} bytes: not a rules file", path=path)
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise RuleInvalid(f"not UTF-8 (byte {exc.start})", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_in_message(str(exc))
        raise RuleInvalid(f"not valid TOML: {exc}", path=path, line=line) from None
    kinds = [kind.value for kind in RuleKind]
    rules: list[Rule] = []
    for key, tables in data.items():
        if key not in kinds:
            raise RuleInvalid(
                f"{key!r} is not a kind of rule; valid: " + ", ".join(f"[[{k}]]" for k in kinds),
                key=key, path=path, line=_header_line(text, key, 0) or _key_line(text, key, 0),
            )  # fmt: skip
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise RuleInvalid(
                f"{key} must be written as [[{key}]] tables", key=key, path=path,
                line=_key_line(text, key, 0) or _header_line(text, key, 0),
            )  # fmt: skip
        for index, table in enumerate(tables):
            try:
                rules.append(Rule.from_json({"kind": key, **table}))
            except RuleInvalid as exc:
                header = _header_line(text, key, index)
                line = _key_line(text, exc.key, header or 0) if exc.key else header
                raise RuleInvalid(
                    f"[[{key}]] #{index + 1}: {exc}", key=exc.key, path=path,
                    line=line or header,
                ) from None  # fmt: skip
    return tuple(rules)


def _line_in_message(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _header_line(text: str, kind: str, index: int) -> int | None:
    """The line of the ``index``-th ``[[kind]]`` (or ``[kind]``) header."""
    header = re.compile(rf"^\s*\[\[?\s*{re.escape(kind)}\s*\]")
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            if seen == index:
                return number
            seen += 1
    return None


def _key_line(text: str, key: str | None, after: int) -> int | None:
    """The first line after line ``after`` that sets ``key``, before the next table."""
    if key is None:
        return None
    pattern = re.compile(rf'^\s*["\']?{re.escape(key)}["\']?\s*=')
    lines = text.splitlines()
    for number in range(after, len(lines)):
        line = lines[number]
        if number > after and line.lstrip().startswith("[") and after:
            return None
        if pattern.match(line):
            return number + 1
    return None
