"""Execute a plan through the public precip_repro API on the target clouds, and judge each
step against the recording.

Each step runs with its recorded values remapped to the replay's (:mod:`replay.remap`),
files and scripts from the recorded blobs (:mod:`replay.content`) on experiments made from
the mapping (:mod:`replay.targets`); ``get`` writes under the replay's own output
directory. Its verdict (:mod:`replay.compare`) is recorded as a ``replay.step`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from precip_repro import (
    BlobStore,
    CallView,
    CloudError,
    Experiment,
    ExperimentException,
    InstanceError,
    Normalizer,
    ReplayOf,
    ReplayStep,
    RunView,
    current_run,
    finish_run,
    session,
    short_hostname,
    shown_command,
)
from replay.compare import Comparison
from replay.exceptions import ReplayFailed
from replay.mapping import ReplayMapping
from replay.plan import Step
from replay.targets import Targets

__all__ = ["Engine", "StepVerdict"]


class _MatchedNothing(Exception):
    """A recorded call that matched no instance and finished (runs recorded before such
    calls failed): replayed without calling."""


@attrs.define(kw_only=True)
class StepVerdict:
    step: int
    exp: str
    method: str
    label: str
    verdict: str
    differences: list[dict[str, Any]]
    new_call: int | None = None


def _seconds(value: Any) -> Any:
    """A recorded duration as the API takes it: format v2 records a float as a number, v1
    as its decimal string (v1 records hold no floats)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            message = f"a recorded timeout {value!r} is not a number"
            raise ReplayFailed(message, usage=True) from None
    return value


class Engine(Targets, Comparison):
    """One replay of one recorded run."""

    def __init__(
        self,
        source: RunView,
        digest: str | None,
        *,
        targets: dict[str, str],
        mapping: ReplayMapping,
        records: Path,
        workdir: Path,
        max_gap: float,
        strict: bool,
        say: Callable[[str], None] = print,
    ) -> None:
        self.source = source
        self.digest = digest
        self.targets = targets
        self.mapping = mapping
        self.records = records
        self.workdir = workdir
        self.sent_dir = workdir / "files"
        """Where the files the replay sends (from the recorded blobs) are written."""
        self.got_dir = workdir / "got"
        """Where the files the replay gets are written."""
        self.max_gap = max_gap
        self.strict = strict
        self.say = say
        self.experiments: dict[str, Experiment] = {}
        self.source_norm = Normalizer(source)
        self.source_short = {
            short
            for view in source.instances.values()
            for hostname in (view.private_hostname, view.public_hostname)
            if hostname and (short := short_hostname(hostname))
        }
        self.learned: dict[str, str] = {}
        """Recorded hostname → the replay's, from the hostname calls replayed so far."""
        self.blobs = BlobStore(source.path / "objects", run=source.run)
        self.stand_ins: dict[str, Path] = {}
        """sha256 → the user's own copy of content the recording withheld."""
        self.verdicts: list[StepVerdict] = []
        self.cloud_failed: str | None = None
        self.run_path: Path | None = None
        self.run_id: str | None = None

    def _matching_slots(self, experiment: Experiment, tags: list[str]) -> list[str]:
        return [
            slot for slot, info in experiment.slots.items() if all(t in info["tags"] for t in tags)
        ]

    def _execute(self, step: Step, experiment: Experiment) -> list[dict[str, Any]]:
        call = step.call
        inverse = self._inverse()
        args = {key: self._remap(value, inverse) for key, value in call.args.items()}
        tags = list(args.get("tags") or [])
        user = self.mapping.user(call.exp, str(args.get("user", "root")))
        method = call.method
        if method == "provision":
            experiment.provision(
                self.mapping.image(call.exp, str(call.args["image_id"])),
                self.mapping.instance_type(call.exp, str(call.args.get("instance_type"))),
                int(args.get("count", 1)),
                tags,
            )
            return []
        if method == "wait":
            experiment.wait(tags, _seconds(args.get("timeout", 600)))
            return []
        if method == "deprovision":
            experiment.deprovision(tags)
            return []
        if method == "open_port":
            experiment.open_port(int(args["port"]), str(args["protocol"]), str(args["cidr"]))
            return []
        if method in ("list", "get_public_hostnames", "get_private_hostnames"):
            result = getattr(experiment, method)(tags)
            if method != "list" and isinstance(call.result, list):
                # What the script learned here is what it passes on: the recorded hostname
                # stands for the new one at the same place (on the local cloud an address
                # and a hostname are the same string — the name says which was asked for).
                for old, new in zip(call.result, result, strict=False):
                    if isinstance(old, str) and isinstance(new, str):
                        self.learned[old] = new
            return self._compare_result(call, result)
        slots = self._matching_slots(experiment, tags)
        if not slots and call.outcome == "finished" and not call.commands and not call.files:
            # Recorded before such a call raised NoInstanceMatches: it did nothing and
            # finished. Replayed, it does nothing again (calling would now fail).
            raise _MatchedNothing
        if method in ("run", "copy_and_run"):
            timeout = _seconds(args.get("timeout"))
            check = bool(args.get("check_exit_code", True))
            if method == "run":
                codes, outs, errs = experiment.run(
                    tags, str(args["cmd"]), user, check, timeout=timeout
                )
            else:
                local = self._file_to_send(call, str(call.args["local_script"]))
                codes, outs, errs = experiment.copy_and_run(
                    tags, local, [str(a) for a in args.get("args") or []], user, check,
                    timeout=timeout,
                )  # fmt: skip
            return self._compare_commands(call, slots, codes, outs, errs)
        if method == "put":
            local = self._file_to_send(call, str(call.args["local_path"]))
            experiment.put(tags, local, str(args["remote_path"]), user)
            return []
        if method == "get":
            target = self.got_dir / str(call.number) / Path(str(call.args["local_path"])).name
            error = call.error or {}
            if error.get("type") != "LocalFileMissing":
                # Where the recorded get found no directory to write into, neither does
                # this one: it fails the same way.
                target.parent.mkdir(parents=True, exist_ok=True)
            if error.get("type") == "TransferFailed" and not error.get("instance"):
                target.mkdir()  # it was told to write over a directory of this machine
            experiment.get(tags, str(args["remote_path"]), target, user)
            return self._compare_files(call, slots, target)
        raise ReplayFailed(f"call #{call.number}: {method} cannot be replayed", usage=True)

    # -- the run --------------------------------------------------------------------------

    def _label(self, call: CallView) -> str:
        cmd = call.args.get("cmd") or call.args.get("local_script") or ""
        return f"{call.exp}.{call.method}" + (f" {shown_command(str(cmd))}" if cmd else "")

    def run(self, steps: list[Step]) -> None:
        session.replay_of = ReplayOf(run=self.source.run, digest=self.digest or "")
        session.mapping = self.mapping.text.encode() if self.mapping.given else None
        session.detect_script = False
        session.argv = ["precip-replay", self.source.run]
        session.run_name = f"replay-{self.source.run.split('-', 1)[-1].rsplit('-', 1)[0]}"
        status = "ok"
        try:
            for exp in sorted(self.source.experiments, key=lambda e: int(e[1:])):
                self.experiments[exp] = self._make(exp)
            run = current_run()
            if run is not None:
                self.run_path, self.run_id = run.path, run.id
            for step in steps:
                if step.gap_s > 0:
                    time.sleep(min(step.gap_s, self.max_gap))
                verdict = self._step(step)
                self.verdicts.append(verdict)
                mark = "reproduced" if verdict.verdict == "reproduced" else "DIVERGED"
                self.say(f"#{step.number:<4} {mark:<10} {verdict.label}")
                for found in verdict.differences:
                    where = f" {found['slot']}" if found.get("slot") else ""
                    self.say(f"       {found['kind']}{where}: {found['a']!r} → {found['b']!r}")
                if self.cloud_failed or (self.strict and verdict.verdict != "reproduced"):
                    status = "failed" if self.cloud_failed else "ok"
                    break
        except BaseException as exc:
            # Whatever stopped the replay, the run says so: it did not finish "ok", and why.
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            session.mark(status, exc)
            raise
        finally:
            with session.shielded():  # a Ctrl-C now waits until all is deprovisioned
                for experiment in self.experiments.values():
                    try:
                        experiment.close()
                    except ExperimentException as exc:
                        self.say(f"deprovisioning failed: {exc}")
                finish_run(status)
            session.replay_of = session.mapping = session.run_name = None
            session.detect_script = True

    def _step(self, step: Step) -> StepVerdict:
        call = step.call
        experiment = self.experiments[call.exp]
        recorded_error = (call.error or {}).get("type")
        called = True
        try:
            differences = self._execute(step, experiment)
            error = None
        except _MatchedNothing:
            differences, error, called = [], None, False
        except (CloudError, InstanceError) as exc:
            error = type(exc).__name__
            differences = []
            if recorded_error != error and call.method in ("provision", "wait"):
                self.cloud_failed = f"#{call.number} {call.method}: {exc}"
            message = str(exc)
        except ExperimentException as exc:
            error = type(exc).__name__
            differences = []
            message = str(exc)
        if error != recorded_error:
            differences.append(
                {
                    "kind": "outcome",
                    "a": call.outcome + (f" ({recorded_error})" if recorded_error else ""),
                    "b": "failed (" + error + f"): {message}" if error else "finished",
                }
            )
        verdict = "reproduced" if not differences else "diverged"
        new_call = experiment.last_call if called else None
        run = current_run()
        if run is not None and not run.finished:
            run.append(
                ReplayStep(
                    source_call=call.number,
                    call=new_call,
                    exp=call.exp,
                    method=call.method,
                    verdict=verdict,
                    differences=differences,
                )
            )
        return StepVerdict(
            step=call.number,
            exp=call.exp,
            method=call.method,
            label=self._label(call),
            verdict=verdict,
            differences=differences,
            new_call=new_call,
        )
