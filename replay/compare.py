"""Comparison of a recorded step with the replay's outcome.

A step is ``reproduced`` when exit codes match and outputs and file contents match after
diff's normalisation; images, types, facts and durations never change a verdict, nor
which of a slot's addresses or hostnames a value names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro import CallView, ExperimentException, Normalizer, session
from replay.content import RecordedContent

__all__ = ["Comparison"]

_HOST_NAMES: Final = re.compile(
    r"\{(e\d+\.p\d+\.\d+)\.(?:address|public_address|private_address|public_hostname"
    r"|private_hostname)\}"
)
"""How a slot is reached differs between clouds (one address, or separate public and
private ones, or DNS names): for a verdict, all of them are "the slot's host"."""


def _coarse(value: Any) -> Any:
    if isinstance(value, str):
        return _HOST_NAMES.sub(r"{\1.host}", value)
    if isinstance(value, list):
        return [_coarse(item) for item in value]
    if isinstance(value, dict):
        return {key: _coarse(item) for key, item in value.items()}
    return value


def _bytes_label(ref: dict[str, Any]) -> str:
    return f"{ref.get('size')} bytes, sha256 {str(ref.get('sha256'))[:12]}…"


class Comparison(RecordedContent):
    """The differences between a recorded call and its replay, for
    :class:`replay.engine.Engine` (mixed in); none is a reproduced step."""

    def _compare_commands(
        self, call: CallView, slots: list[str], codes: list[Any], outs: list[str], errs: list[str]
    ) -> list[dict[str, Any]]:
        target_norm = Normalizer.from_names(self._target_names())
        new = {slot: (codes[i], outs[i], errs[i]) for i, slot in enumerate(slots)}
        exact = self.experiments[call.exp].last_commands
        found: list[dict[str, Any]] = []
        for command in call.commands:
            if command.slot not in new:
                found.append(
                    {"kind": "command_missing", "slot": command.slot, "a": command.cmd, "b": None}
                )
                continue
            code, out, err = new[command.slot]
            out, err = session.redactor.text(out), session.redactor.text(err)
            if code != command.exit_code:
                found.append(
                    {"kind": "exit_code", "slot": command.slot, "a": command.exit_code, "b": code}
                )
            for stream, text in (("stdout", out), ("stderr", err)):
                ref = getattr(command, stream)
                recorded = self._recorded_text(ref)
                if recorded is not None:
                    if _coarse(recorded) != _coarse(target_norm.text(text)):
                        found.append({"kind": stream, "slot": command.slot, "a": recorded,
                                      "b": target_norm.text(text)})  # fmt: skip
                    continue
                # Binary or large output: compared byte for byte by the hashes of the two
                # records (the returned str has lost what was not UTF-8).
                mine = exact.get(command.slot)
                now = (
                    attrs.asdict(getattr(mine, stream))
                    if mine is not None
                    else {"sha256": hashlib.sha256(text.encode()).hexdigest(),
                          "size": len(text.encode())}
                )  # fmt: skip
                if now["sha256"] != ref.get("sha256"):
                    found.append({"kind": stream, "slot": command.slot, "a": _bytes_label(ref),
                                  "b": _bytes_label(now)})  # fmt: skip
        return found

    def _compare_files(
        self, call: CallView, slots: list[str], target: Path
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        experiment = self.experiments[call.exp]
        single = len(slots) == 1
        for moved in call.files:
            if moved.kind != "got":
                continue
            info = experiment.slots.get(moved.slot)
            if info is None:
                found.append(
                    {"kind": "file_missing", "slot": moved.slot, "a": moved.remote_path, "b": None}
                )
                continue
            local = target if single else target.with_name(f"{target.name}.{info['id']}")
            content = local.read_bytes() if local.exists() else b""
            if hashlib.sha256(content).hexdigest() == moved.content.get("sha256"):
                continue
            recorded = self._recorded_text(moved.content)
            target_norm = Normalizer.from_names(self._target_names())
            try:
                now = target_norm.text(content.decode("utf-8"))
            except UnicodeDecodeError:
                now = None
            if recorded is None or now is None or _coarse(recorded) != _coarse(now):
                found.append({"kind": "file", "slot": moved.slot, "name": moved.remote_path,
                              "a": moved.content.get("sha256"),
                              "b": hashlib.sha256(content).hexdigest()})  # fmt: skip
        return found

    def _compare_result(self, call: CallView, result: Any) -> list[dict[str, Any]]:
        target_norm = Normalizer.from_names(self._target_names())
        recorded = self.source_norm.json(call.result)
        now = target_norm.json(session.redactor.json(result))
        if call.method == "list":
            # Mapped images and types, and how each cloud addresses an instance, are facts
            # of the target: they never change a verdict.
            strip = ("image_id", "instance_type", "public_address", "private_address")
            recorded = [{k: v for k, v in i.items() if k not in strip} for i in recorded or []]
            now = [{k: v for k, v in i.items() if k not in strip} for i in now or []]
        if _coarse(recorded) == _coarse(now):
            return []
        return [{"kind": "result", "a": recorded, "b": now}]

    def _recorded_text(self, ref: dict[str, Any]) -> str | None:
        if isinstance(ref.get("text"), str):
            return self.source_norm.text(str(ref["text"]))
        if ref.get("withheld") or int(ref.get("size", 0)) > 1 << 20:
            return None
        try:
            return self.source_norm.text(self._blob(ref).decode("utf-8"))
        except (UnicodeDecodeError, ExperimentException, OSError):
            return None
