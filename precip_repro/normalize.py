"""Volatile values become slot names, so that two runs compare on what matters.

Instance ids, addresses and hostnames are replaced by the slot they belong to (``e1.p1.0``
and ``e1.p1.0.address`` …; an instance's short hostname, what ``hostname`` prints on a
cloud, is the slot itself, like its id), the run id by ``{run}``, temporary paths the tool
chose by ``{tmp}`` (wherever they appear: they have one shape, see :func:`temp_script_path`),
and timestamps by ``{timestamp}``. Diff uses it to compare runs; replay uses it to judge
whether a step reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from precip_repro.record.canonical import JSON
from precip_repro.record.walk import map_strings
from precip_repro.remote_scripts import TEMP_PATH, TEMP_PREFIX, temp_script_path
from precip_repro.slots import slot_order

if TYPE_CHECKING:
    from precip_repro.runview import RunView

__all__ = [
    "TEMP_PREFIX",
    "Normalizer",
    "instance_names",
    "short_hostname",
    "slot_order",
    "temp_script_path",
]

_TEMP: Final = TEMP_PATH
_BY_SHAPE: Final = frozenset({"tmp", "timestamp"})
"""Pattern groups found by their shape, not by name: normalised to ``{group}``, and left
alone by :meth:`Normalizer.substitute` (a run's own, never another run's)."""


_MONTH: Final = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_WEEKDAY: Final = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIMESTAMP: Final = re.compile(
    # ISO 8601 / RFC 3339 (Python, journald, most logs)
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
    # date(1) and ctime ("Wed Nov 25 14:19:16 UTC 2026"), ls -l and syslog ("Nov 25
    # 14:19"): a zone only with the year after it, so the next word is never taken
    rf"|(?<!\w)(?:{_WEEKDAY} )?{_MONTH} +\d{{1,2}} \d\d:\d\d(?::\d\d)?"
    r"(?:(?: [A-Z]{2,5})? \d{4})?"
    # RFC 2822 (date -R, mail and HTTP headers: "Wed, 25 Nov 2026 14:19:16 +0000")
    rf"|(?<!\w)(?:{_WEEKDAY}, )?\d{{1,2}} {_MONTH} \d{{4}} \d\d:\d\d(?::\d\d)?"
    r"(?: (?:[+-]\d{4}|GMT|UTC))?"
)
_MONTH_DAY: Final = re.compile(_MONTH + r" +\d")
"""Whether a text may hold a timestamp with a month's name, found faster than by the whole
pattern."""


_QUICK_NAMES: Final = 16
"""Up to this many names, a text is first searched for each as a plain substring."""

_IPV4: Final = re.compile(r"\d+\.\d+\.\d+\.\d+")


def _bounded(value: str) -> str:
    if _IPV4.fullmatch(value):
        return rf"(?<![\d.]){re.escape(value)}(?![\d])"
    return rf"(?<![\w-]){re.escape(value)}(?![\w-])"


def instance_names(
    slot: str,
    instance_ids: list[str],
    *,
    public_address: str | None,
    private_address: str | None,
    public_hostname: str | None,
    private_hostname: str | None,
) -> dict[str, str]:
    """The volatile values of one instance, each with its stable name."""
    names: dict[str, str] = {instance_id: f"{{{slot}}}" for instance_id in instance_ids}
    if public_address and public_address == private_address:
        names[public_address] = f"{{{slot}.address}}"
    else:
        if public_address:
            names[public_address] = f"{{{slot}.public_address}}"
        if private_address:
            names[private_address] = f"{{{slot}.private_address}}"
    for label, hostname in (
        ("public_hostname", public_hostname),
        ("private_hostname", private_hostname),
    ):
        if hostname and hostname not in names:
            names[hostname] = f"{{{slot}.{label}}}"
            # A local instance prints its id, a cloud instance its short hostname: both are
            # the instance naming itself, and become the slot, so that a run replayed on
            # another cloud prints the same.
            short = short_hostname(hostname)
            if short is not None and short not in names:
                names[short] = f"{{{slot}}}"
    return names


def short_hostname(hostname: str) -> str | None:
    """What ``hostname`` prints on a cloud instance: the first label of its DNS name
    (``ip-10-0-0-4`` of ``ip-10-0-0-4.ec2.internal``); None for an address or a bare name."""
    short = hostname.split(".")[0]
    return None if short == hostname or _IPV4.fullmatch(hostname) else short


class Normalizer:
    """Replaces one run's volatile values by stable names."""

    def __init__(self, view: RunView) -> None:
        names: dict[str, str] = {}
        for slot, inst in view.instances.items():
            for earlier in inst.earlier_addresses:
                names.update(instance_names(slot, [], **earlier))
            names.update(
                instance_names(
                    slot,
                    inst.instance_ids,
                    public_address=inst.public_address,
                    private_address=inst.private_address,
                    public_hostname=inst.public_hostname,
                    private_hostname=inst.private_hostname,
                )
            )
        if view.run:
            names[view.run] = "{run}"
        self._compile(names)

    @classmethod
    def from_names(cls, names: dict[str, str]) -> Normalizer:
        """A normaliser from value → name pairs already known (e.g. of a run in progress)."""
        normalizer = cls.__new__(cls)
        normalizer._compile(names)
        return normalizer

    def _compile(self, names: dict[str, str]) -> None:
        self.names = names
        # One pass finds names and timestamps alike (two passes cost twice on a large diff).
        # Longest name first; an address must not match inside a longer one (127.0.0.4/45).
        alternatives = [_bounded(value) for value in sorted(names, key=len, reverse=True)]
        self._pattern = re.compile(
            "|".join(
                [*alternatives, f"(?P<tmp>{_TEMP.pattern})", f"(?P<timestamp>{_TIMESTAMP.pattern})"]
            )
        )

    def _name(self, match: re.Match[str]) -> str:
        if match.lastgroup in _BY_SHAPE:
            return f"{{{match.lastgroup}}}"
        return self.names[match.group(0)]

    def substitute(self, value: str, replace: Callable[[str, str], str]) -> str:
        """``value`` with each volatile value in it replaced by ``replace(value, name)``;
        timestamps and temporary paths are left as they are. (Replay puts the new run's
        values in this way.)"""

        def one(match: re.Match[str]) -> str:
            found = match.group(0)
            if match.lastgroup in _BY_SHAPE:
                return found
            return replace(found, self.names[found])

        return self._pattern.sub(one, value)

    def text(self, value: str) -> str:
        # Most texts hold no volatile value: a few substring tests say so faster than the
        # pattern can (with many names the pattern alone is cheaper).
        if (
            len(self.names) <= _QUICK_NAMES
            and (":" not in value or ("-" not in value and not _MONTH_DAY.search(value)))
            and TEMP_PREFIX not in value
            and not any(map(value.__contains__, self.names))  # (no Python frame per name)
        ):
            return value
        return self._pattern.sub(self._name, value)

    def json(self, value: JSON) -> JSON:
        return map_strings(value, self.text)
