"""Checks on the arguments a script passes to the precip API.

A wrong type used to surface deep inside (``'<' not supported between 'str' and 'int'`` from
``provision(count="2")``, a traceback from paramiko's thread for ``user=None``), or worse,
pass silently (``copy_and_run(..., args="x y")`` ran the script with the arguments
``x``, `` `` and ``y``). Each check here raises :class:`InvalidOption` naming the option, the
value and what it accepts, before anything is recorded or sent.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import math
import operator
import os
from collections.abc import Collection
from typing import Any, Final

from precip_repro.exceptions import InvalidOption

PROTOCOLS: Final = ("tcp", "udp")
"""What ``open_port`` opens: the protocols with ports."""


def _is_number(value: object) -> bool:
    # numpy's scalars are int/float subclasses or define __index__; a bool is no number here
    return isinstance(value, int | float) and not isinstance(value, bool)


def text(option: str, value: object) -> str:
    """A non-empty string (a command may be empty: see :func:`command`)."""
    if not isinstance(value, str) or not value:
        raise InvalidOption(option, value, ["a non-empty string"])
    return value


def command(value: object) -> str:
    if not isinstance(value, str):
        hint = " (join a list of words with shlex.join)" if isinstance(value, list | tuple) else ""
        raise InvalidOption("cmd", value, [f"a string: the shell command line{hint}"])
    return value


def count(option: str, value: object, *, most: int | None = None) -> int:
    """A whole number of at least 1, and at most ``most`` (numpy's integers too; a bool is
    no count)."""
    number: int | None = None
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError):
            number = operator.index(value)  # type: ignore[arg-type]
    if number is None or number < 1 or (most is not None and number > most):
        limit = "" if most is None else f" and at most {most:,}"
        raise InvalidOption(option, value, [f"an integer of at least 1{limit}"])
    return number


def seconds(option: str, value: object, *, optional: bool = False, zero: bool = False) -> Any:
    """A finite number of seconds: positive, or also zero with ``zero``, or None with
    ``optional`` (no limit)."""
    if value is None and optional:
        return None
    number: Any = value
    ok = _is_number(number) and math.isfinite(number) and (number > 0 or (zero and number == 0))
    if not ok:
        valid = ["a number of seconds " + ("of at least 0" if zero else "above 0")]
        if optional:
            valid.append("None (no limit)")
        raise InvalidOption(option, value, valid)
    return number  # as given: the record keeps 600 as 600, not 600.0


def image(value: object) -> str:
    """An image id; on the local cloud a directory, which may come as a path object."""
    return path("image_id", value, "an image id (on the local cloud: 'default' or a directory)")


def path(option: str, value: object, valid: str = "a path (str or pathlib.Path)") -> str:
    """A local path given as a string or a path object, returned as a string."""
    if isinstance(value, os.PathLike):
        value = os.fsdecode(value)
    if not isinstance(value, str) or not value:
        raise InvalidOption(option, value, [valid])
    return value


def tags(value: object) -> builtins.list[str]:
    """The seed's tags: a list of strings (a single string or None accepted too)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return builtins.list(value)
    raise InvalidOption("tags", value, ["a list of strings", "a string", "None"])


def script_args(value: object) -> builtins.list[str]:
    """copy_and_run's arguments: a list whose items are strings, numbers or paths."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        hint = ", e.g. shlex.split(...)" if isinstance(value, str) else ""
        raise InvalidOption("args", value, [f"a list of arguments{hint}"])
    out: builtins.list[str] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, os.PathLike):
            out.append(os.fsdecode(item))
        elif _is_number(item):
            out.append(str(item))
        else:
            raise InvalidOption(
                "args",
                value,
                [f"a list of strings, numbers or paths (not {type(item).__name__} {item!r})"],
            )
    return out


def one_of(option: str, value: object, valid: Collection[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise InvalidOption(option, value, valid)
    return value


def port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidOption("port", value, ["an integer from 1 to 65535"])
    return value


def cidr(value: object) -> str:
    """An IPv4 network in CIDR notation, as given (the security-group rule takes IPv4
    ranges; host bits set are refused, as the clouds refuse them)."""
    problem = "not a string"
    if isinstance(value, str):
        try:
            ipaddress.IPv4Network(value)
            return value
        except ValueError as exc:
            problem = str(exc)
    raise InvalidOption("cidr", value, [f"an IPv4 network such as 10.0.0.0/8 ({problem})"])
