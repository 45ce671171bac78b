"""Remapping: the source run's values put where the replay's are.

Values learned from earlier results — instance ids, addresses, hostnames — are remapped
slot by slot wherever they appear in later arguments, commands and the text files a put
sends; secrets the recording hid are bound again from the environment.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

from precip_repro import (
    REPLAY_COMPARING,
    SECRET_PLACEHOLDER,
    Experiment,
    Normalizer,
    instance_names,
    map_strings,
    session,
    short_hostname,
)

__all__ = ["REMAP_LIMIT", "Remapper"]

REMAP_LIMIT: Final = REPLAY_COMPARING.text_limit
"""Text files up to this size that a put sends have source instances' values remapped."""

_STAND_INS: Final = {
    "address": ("private_address", "private_hostname", "public_address"),
    "private_address": ("address", "private_hostname"),
    "public_address": ("address", "public_hostname"),
    "private_hostname": ("private_address", "address"),
    "public_hostname": ("public_address", "address"),
}
"""Where the target cloud has no value of a kind (the local cloud has one ``address``; EC2
separate private and public ones), the value that reaches the same instance the same way."""


class Remapper:
    """Source values → the replay's, for :class:`replay.engine.Engine` (mixed in: the
    replay's experiments and what it learned are the engine's, and change as it runs)."""

    experiments: dict[str, Experiment]
    source_norm: Normalizer
    source_short: set[str]
    learned: dict[str, str]

    def _remapped(self, content: bytes) -> bytes:
        """A text file that names source instances (a master's address written into a
        worker's configuration) names the same slots' replay instances instead, as the
        arguments and commands do; binary and large files are sent as recorded."""
        if len(content) > REMAP_LIMIT:
            return content
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return content
        remapped = self._substitute(text, self._inverse())
        return content if remapped == text else remapped.encode("utf-8")

    def _target_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for experiment in self.experiments.values():
            for slot, info in experiment.slots.items():
                names.update(
                    instance_names(
                        slot,
                        [info["id"]],
                        public_address=info["public_address"],
                        private_address=info["private_address"],
                        public_hostname=info["public_hostname"],
                        private_hostname=info["private_hostname"],
                    )
                )
        return names

    def _inverse(self) -> dict[str, str]:
        """Stable name → the replay's value. ``{slot}`` is the new instance's id (its short
        hostname normalises to the same name, and comes later)."""
        inverse: dict[str, str] = {}
        for new, name in self._target_names().items():
            inverse.setdefault(name, new)
        return inverse

    def _short_hostname(self, slot: str) -> str | None:
        """The short hostname of the replay's instance in ``slot``, where it has one."""
        for experiment in self.experiments.values():
            info = experiment.slots.get(slot)
            if info is not None:
                for hostname in (info["private_hostname"], info["public_hostname"]):
                    if hostname and (short := short_hostname(hostname)):
                        return short
        return None

    def _remap(self, value: Any, inverse: dict[str, str] | None = None) -> Any:
        """Source values → the same slot's values in the replay; secrets bound again."""
        table = self._inverse() if inverse is None else inverse

        def remapped(text: str) -> str:
            return SECRET_PLACEHOLDER.sub(self._bind, self._substitute(text, table))

        return map_strings(value, remapped)

    @staticmethod
    def _bind(match: re.Match[str]) -> str:
        secret = os.environ[match.group(1)]
        session.add_secret(match.group(1), secret)
        return secret

    def _substitute(self, value: str, inverse: dict[str, str]) -> str:
        """Every source instance's id, address or hostname in ``value`` → the value of the
        replay's instance in the same slot (where it has one yet)."""

        def resolve(old: str, name: str) -> str:
            if old in self.learned:
                return self.learned[old]
            if old in self.source_short:
                # The source instance's short hostname (it normalises like its id): the new
                # instance's own short hostname where it has one, else its id.
                return self._short_hostname(name[1:-1]) or inverse.get(name, old)
            if name in inverse:
                return inverse[name]
            slot, _, kind = name[1:-1].rpartition(".")
            for alternative in _STAND_INS.get(kind, ()):
                key = f"{{{slot}.{alternative}}}"
                if key in inverse:
                    return inverse[key]
            return old

        return self.source_norm.substitute(value, resolve)
