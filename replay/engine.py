"""Execute a plan through the public precip_repro API on the target clouds, and judge each
step against the recording.

Each step runs with its recorded values remapped to the replay's (:mod:`replay.remap`),
files and scripts from the recorded blobs (:mod:`replay.content`) on experiments made from
the mapping (:mod:`replay.targets`); ``get`` writes under the replay's own output
directory. Its verdict (:mod:`replay.compare`) is recorded as a ``replay.step`` event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from precip_repro import (
    METHODS,
    BlobStore,
    CallView,
    CloudError,
    Difference,
    DifferenceKind,
    Experiment,
    ExperimentException,
    InstanceError,
    Normalizer,
    ReplayOf,
    ReplayStep,
    Rule,
    RunView,
    StepVerdict,
    current_run,
    declared_rules,
    finish_run,
    outcome_of,
    progress,
    render_difference,
    session,
    short_hostname,
    shown_command,
    verdict_of,
)
from replay.compare import Comparison
from replay.exceptions import ReplayFailed
from replay.mapping import ReplayMapping
from replay.plan import Step
from replay.targets import Targets

__all__ = ["Engine", "StepReport"]


class _MatchedNothing(Exception):
    """A recorded call that matched no instance and finished (runs recorded before such
    calls failed): replayed without calling."""


@attrs.define(kw_only=True)
class StepReport:
    step: int
    exp: str
    method: str
    label: str
    verdict: str
    differences: list[Difference]
    new_call: int | None = None


_MARKS: dict[str, str] = {StepVerdict.IDENTICAL: "reproduced", StepVerdict.EQUIVALENT: "equivalent"}


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
        records: Path | str,
        workdir: Path,
        max_gap: float,
        strict: bool,
        signer: str | None = None,
        rules: tuple[Rule, ...] = (),
        say: Callable[[str], None] = print,
    ) -> None:
        self.source = source
        self.rules = declared_rules(source).plus(rules)
        """What the source run declared, and ``--rules``: differences they cover are
        expected (the step is equivalent, not diverged)."""
        self.digest = digest
        self.signer = signer
        """The fingerprint of the key that signed the source run (None: unsigned)."""
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
        self.verdicts: list[StepReport] = []
        self.planned = 0
        """Steps in the plan (the verdicts may stop short of them)."""
        self.cloud_failed: str | None = None
        self.run_path: Path | None = None
        self.run_id: str | None = None
        self.run_digest: str | None = None
        """The replay run's digest once finished (None: no run, or its end not written)."""

    def _matching_slots(self, experiment: Experiment, tags: list[str]) -> list[str]:
        return [
            slot for slot, info in experiment.slots.items() if all(t in info["tags"] for t in tags)
        ]

    def _execute(self, step: Step, experiment: Experiment) -> None:
        """Make the recorded call on the replay's experiment: the recorded arguments
        remapped, with the call model's defaults for those an older record left out."""
        call = step.call
        inverse = self._inverse()
        args = METHODS[call.method].bound(
            {key: self._remap(value, inverse) for key, value in call.args.items()}
        )
        tags = list(args.get("tags") or [])
        method = call.method
        if method in ("run", "copy_and_run", "put", "get"):
            user = self.mapping.user(call.exp, str(args["user"]))
            slots = self._matching_slots(experiment, tags)
            if not slots and call.outcome == "finished" and not call.commands and not call.files:
                # Recorded before such a call raised NoInstanceMatches: it did nothing and
                # finished. Replayed, it does nothing again (calling would now fail).
                raise _MatchedNothing
        if method == "provision":
            experiment.provision(
                self.mapping.image(call.exp, str(call.args["image_id"])),
                self.mapping.instance_type(call.exp, str(args["instance_type"])),
                int(args["count"]),
                tags,
            )
        elif method == "wait":
            experiment.wait(tags, _seconds(args["timeout"]))
        elif method == "deprovision":
            experiment.deprovision(tags)
        elif method == "open_port":
            experiment.open_port(int(args["port"]), str(args["protocol"]), str(args["cidr"]))
        elif method in ("list", "get_public_hostnames", "get_private_hostnames"):
            result = getattr(experiment, method)(tags)
            if method != "list" and isinstance(call.result, list):
                # What the script learned here is what it passes on: the recorded hostname
                # stands for the new one at the same place (on the local cloud an address
                # and a hostname are the same string — the name says which was asked for).
                for old, new in zip(call.result, result, strict=False):
                    if isinstance(old, str) and isinstance(new, str):
                        self.learned[old] = new
        elif method == "run":
            experiment.run(
                tags, str(args["cmd"]), user, bool(args["check_exit_code"]),
                timeout=_seconds(args["timeout"]),
            )  # fmt: skip
        elif method == "copy_and_run":
            local = self._file_to_send(call, str(call.args["local_script"]))
            experiment.copy_and_run(
                tags, local, [str(a) for a in args["args"] or []], user,
                bool(args["check_exit_code"]), timeout=_seconds(args["timeout"]),
            )  # fmt: skip
        elif method == "put":
            local = self._file_to_send(call, str(call.args["local_path"]))
            experiment.put(tags, local, str(args["remote_path"]), user)
        elif method == "get":
            target = self.got_dir / str(call.number) / Path(str(call.args["local_path"])).name
            error = call.error
            if call.error_type != "LocalFileMissing":
                # Where the recorded get found no directory to write into, neither does
                # this one: it fails the same way.
                target.parent.mkdir(parents=True, exist_ok=True)
            if error is not None and error.type == "TransferFailed" and not error.instance:
                target.mkdir()  # it was told to write over a directory of this machine
            experiment.get(tags, str(args["remote_path"]), target, user)
        else:
            raise ReplayFailed(f"call #{call.number}: {method} cannot be replayed", usage=True)

    # -- the run --------------------------------------------------------------------------

    def _label(self, call: CallView) -> str:
        cmd = call.args.get("cmd") or call.args.get("local_script") or ""
        return f"{call.exp}.{call.method}" + (f" {shown_command(str(cmd))}" if cmd else "")

    def run(self, steps: list[Step]) -> None:
        session.replay_of = ReplayOf(
            run=self.source.run, digest=self.digest or "", signer=self.signer
        )
        session.mapping = self.mapping.text.encode() if self.mapping.given else None
        session.detect_script = False
        session.argv = ["precip-replay", self.source.run]
        session.recorded_parameters = {p.name: p.value for p in self.source.parameters.values()}
        session.run_name = f"replay-{self.source.run.split('-', 1)[-1].rsplit('-', 1)[0]}"
        status = "ok"
        try:
            for exp in sorted(self.source.experiments, key=lambda e: int(e[1:])):
                self.experiments[exp] = self._make(exp)
            run = current_run()
            if run is not None:
                self.run_path, self.run_id = run.path, run.id
            counts: dict[str, int] = {}
            self.planned = len(steps)
            for position, step in enumerate(steps, 1):
                if step.gap_s > 0:
                    time.sleep(min(step.gap_s, self.max_gap))
                verdict = self._step(step)
                self.verdicts.append(verdict)
                counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
                progress.emit(
                    progress.StepProgress(
                        step=position, of=len(steps), call=step.number, label=verdict.label,
                        verdict=verdict.verdict, verdicts=dict(counts),
                    )
                )  # fmt: skip
                mark = _MARKS.get(verdict.verdict, "DIVERGED")
                self.say(f"#{step.number:<4} {mark:<10} {verdict.label}")
                for found in verdict.differences:
                    for line in render_difference(found):
                        self.say(f"       {line}")
                if self.cloud_failed or (self.strict and verdict.verdict == StepVerdict.DIVERGED):
                    status = "failed" if self.cloud_failed else "ok"
                    break
        except BaseException as exc:
            # Whatever stopped the replay, the run says so: it did not finish "ok", and why.
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            session.mark(status, exc)
            raise
        finally:
            with session.shielded():  # a Ctrl-C now waits until all is deprovisioned
                self._note_verdict()
                for experiment in self.experiments.values():
                    try:
                        experiment.close()
                    except ExperimentException as exc:
                        self.say(f"deprovisioning failed: {exc}")
                self.run_digest = finish_run(status)
            session.replay_of = session.mapping = session.run_name = None
            session.recorded_parameters = None
            session.detect_script = True

    def _note_verdict(self) -> None:
        """The replay's verdict as the last note of its run, where ``ls`` finds it without
        reading the whole log."""
        if not self.experiments or not self.verdicts:
            return
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
        # A replay stopped before its last step (Ctrl-C, the cloud failing) proves nothing of
        # the steps it did not run: it is incomplete, however well the others went.
        if counts.get("diverged"):
            overall = "diverged"
        elif len(self.verdicts) < self.planned:
            overall = "incomplete"
        else:
            overall = "reproduced"
        text = f"replay {overall}: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        text += f" of {self.planned} steps"
        first = next(iter(self.experiments.values()))
        with contextlib.suppress(ExperimentException):
            first.note(text, replay_verdict=overall, steps=counts, of=self.planned)

    def _step(self, step: Step) -> StepReport:
        call = step.call
        experiment = self.experiments[call.exp]
        recorded_error = call.error_type
        before = experiment.last_call
        called = True
        error = message = None
        try:
            self._execute(step, experiment)
        except _MatchedNothing:
            called = False
        except (CloudError, InstanceError) as exc:
            error, message = type(exc).__name__, str(exc)
            if recorded_error != error and call.method in ("provision", "wait"):
                self.cloud_failed = f"#{call.number} {call.method}: {exc}"
        except ExperimentException as exc:
            error, message = type(exc).__name__, str(exc)
        new_call = experiment.last_call if called else None
        found = None
        if new_call is not None and new_call != before:
            found = self._differences(call, new_call)
        if found is None:
            # Nothing of this step reached the replay's record (it did nothing, or failed
            # before its call began): its outcome is what there is to compare.
            new_call = None if new_call == before else new_call
            found = []
            if error != recorded_error:
                found.append(
                    Difference(
                        kind=DifferenceKind.OUTCOME,
                        a=outcome_of(call),
                        b=f"failed ({error})" if error else "finished",
                    )
                )
        differences = [
            # The exception's message says what went wrong where the record says only its type.
            attrs.evolve(d, b=f"{d.b}: {message}")
            if d.kind is DifferenceKind.OUTCOME and message and error
            else d
            for d in found
        ]
        verdict = verdict_of(differences).value
        run = current_run()
        if run is not None and not run.finished:
            run.append(
                ReplayStep(
                    source_call=call.number,
                    call=new_call,
                    exp=call.exp,
                    method=call.method,
                    verdict=verdict,
                    differences=[d.to_json() for d in differences],
                )
            )
        return StepReport(
            step=call.number,
            exp=call.exp,
            method=call.method,
            label=self._label(call),
            verdict=verdict,
            differences=differences,
            new_call=new_call,
        )
