"""Execute a plan through the public precip_repro API on the target clouds, and judge each
step against the recording.

Values learned from earlier results — instance ids, addresses, hostnames — are remapped
slot by slot wherever they appear in later arguments and commands. Files and scripts come
from the recorded blobs; ``get`` writes under the replay's own output directory. A step is
``reproduced`` when exit codes match and outputs and file contents match after diff's
normalisation; images, types, facts and durations never change a verdict.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro import (
    SECRET_PLACEHOLDER,
    BlobRef,
    BlobStore,
    CallView,
    CloudError,
    EC2Experiment,
    EucalyptusExperiment,
    Experiment,
    ExperimentException,
    FileView,
    InstanceError,
    InvalidOption,
    LocalExperiment,
    NimbusExperiment,
    Normalizer,
    OpenStackExperiment,
    ReplayOf,
    ReplayStep,
    RunView,
    current_run,
    finish_run,
    instance_names,
    session,
    short_hostname,
    shown_command,
)
from replay.mapping import ReplayMapping
from replay.plan import Step, images_used

__all__ = ["CLOUDS", "Engine", "ReplayFailed", "StepVerdict"]

CLOUDS: Final = ("local", "ec2", "openstack", "eucalyptus", "nimbus")
REMAP_LIMIT: Final = 16 << 20
"""Text files up to this size that a put sends have source instances' values remapped."""
_HOST_NAMES: Final = re.compile(
    r"\{(e\d+\.p\d+\.\d+)\.(?:address|public_address|private_address|public_hostname"
    r"|private_hostname)\}"
)
"""How a slot is reached differs between clouds (one address, or separate public and
private ones, or DNS names): for a verdict, all of them are "the slot's host"."""


_STAND_INS: Final = {
    "address": ("private_address", "private_hostname", "public_address"),
    "private_address": ("address", "private_hostname"),
    "public_address": ("address", "public_hostname"),
    "private_hostname": ("private_address", "address"),
    "public_hostname": ("public_address", "address"),
}
"""Where the target cloud has no value of a kind (the local cloud has one ``address``; EC2
separate private and public ones), the value that reaches the same instance the same way."""


def _coarse(value: Any) -> Any:
    if isinstance(value, str):
        return _HOST_NAMES.sub(r"{\1.host}", value)
    if isinstance(value, list):
        return [_coarse(item) for item in value]
    if isinstance(value, dict):
        return {key: _coarse(item) for key, item in value.items()}
    return value


_ENDPOINT_CLOUDS: Final = {
    "openstack": OpenStackExperiment,
    "eucalyptus": EucalyptusExperiment,
    "nimbus": NimbusExperiment,
}


class _MatchedNothing(Exception):
    """A recorded call that matched no instance and finished (runs recorded before such
    calls failed): replayed without calling."""


class ReplayFailed(ExperimentException):
    """The replay could not go on: a usage problem (``usage``) or the target cloud failed."""

    def __init__(self, message: str, *, usage: bool) -> None:
        self.usage = usage
        super().__init__(message)


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
    """A recorded duration as the API takes it: a float was recorded as its decimal string
    (the record holds no floats)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            message = f"a recorded timeout {value!r} is not a number"
            raise ReplayFailed(message, usage=True) from None
    return value


def _bytes_label(ref: dict[str, Any]) -> str:
    return f"{ref.get('size')} bytes, sha256 {str(ref.get('sha256'))[:12]}…"


def _local_file(path: Path, content: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode or 0o644)
    return path


class Engine:
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

    # -- set-up ---------------------------------------------------------------------------

    def _check_images(self) -> None:
        # The cloud would refuse these only once provisioning started (and other
        # experiments' instances with it): a run recorded on one kind of cloud and replayed
        # on another without a mapping names images the target has never heard of.
        for exp, images in sorted(images_used(self.source).items()):
            kind = self.targets[exp]
            for image in sorted(images):
                mapped = self.mapping.image(exp, image)
                shown = repr(mapped) if mapped == image else f"{mapped!r} (mapped from {image!r})"
                if kind == "local":
                    problem = LocalExperiment.image_problem(mapped)
                    if problem is not None and mapped != image:
                        problem += f" (it is what {image!r} maps to)"
                    fix = "'default' or an image directory"
                elif LocalExperiment.names_local_image(mapped):
                    problem = f"image {shown} is a local cloud's"
                    fix = f"an image id of the {kind} cloud"
                else:
                    continue
                if problem is not None:
                    raise ReplayFailed(
                        f"{exp} replays on {kind}: {problem}; map it to {fix} under [images] "
                        f'(or [{exp}.images]) of --map, e.g. "{image}" = "…"',
                        usage=True,
                    )

    def check(self, secrets: set[str], steps: list[Step]) -> None:
        """Everything that can be checked before ``steps`` are replayed and anything is
        provisioned."""
        missing = sorted(name for name in secrets if name not in os.environ)
        if missing:
            raise ReplayFailed(
                f"the run used secrets {', '.join(missing)}: set the environment variable(s) "
                "of the same name to bind them again",
                usage=True,
            )
        for name in sorted(secrets):
            # Bound now, before any output: the replay's record, its verdicts and what it
            # prints say ${secret:NAME} where the new run shows the value again.
            try:
                session.add_secret(name, os.environ[name])
            except InvalidOption as exc:
                raise ReplayFailed(
                    f"the environment variable {name} cannot bind the run's secret {name}: {exc}",
                    usage=True,
                ) from None
        self._find_withheld_content(steps)
        self._check_images()
        for exp, kind in self.targets.items():
            if kind == "local":
                continue
            cloud = self.mapping.cloud(exp)
            for key in ("access_key_env", "secret_key_env"):
                name = cloud.get(
                    key, "AWS_ACCESS_KEY_ID" if key == "access_key_env" else "AWS_SECRET_ACCESS_KEY"
                )
                if name not in os.environ:
                    raise ReplayFailed(
                        f"{exp} replays on {kind}: its credentials are read from the "
                        f"environment variable {name}, which is not set (set {key} in "
                        f"[{exp}.cloud] or [cloud] of the mapping to use another)",
                        usage=True,
                    )
            if kind != "ec2" and not cloud.get("endpoint"):
                raise ReplayFailed(
                    f"{exp} replays on {kind}: give its endpoint in [{exp}.cloud] or [cloud]",
                    usage=True,
                )

    def _find_withheld_content(self, steps: list[Step]) -> None:
        """Files and scripts the recording keeps by hash only (they held a secret or a
        private key) come from the user's own copy, found by its hash where the run moved
        it; else stop here."""
        for step in steps:
            call = step.call
            moved = self._content_to_send(call)
            if moved is None or not moved.content.get("withheld"):
                continue
            sha = str(moved.content.get("sha256"))
            if sha in self.stand_ins:
                continue
            recorded = Path(moved.local_path)
            place, looked = self.source.local_copy(sha)
            if place is not None:
                self.stand_ins[sha] = place
            else:
                where = " or ".join(str(place) for place in looked)
                raise ReplayFailed(
                    f"call #{call.number} {call.exp}.{call.method}: the recording keeps "
                    f"{recorded} by hash only ({moved.content['withheld']}), and no file "
                    f"with its sha256 {sha} is at {where}. Put the original file back there "
                    "(or replay from the directory the run was recorded in) and try again",
                    usage=True,
                )

    def _file_to_send(self, call: CallView, recorded_path: str) -> Path:
        """The replay's own copy of what a ``put`` or ``copy_and_run`` sent, from the
        recorded blob. When it sent nothing, what it found: no file where the recorded call
        failed for the want of one (the replay fails the same way), else an empty one (no
        instance matched: nothing is sent)."""
        local = self.sent_dir / str(call.number) / Path(recorded_path).name
        moved = self._content_to_send(call)
        if moved is not None:
            return _local_file(local, self._remapped(self._blob(moved.content)), moved.mode)
        if (call.error or {}).get("type") == "LocalFileMissing":
            return local  # never written: missing here as it was then
        return _local_file(local, b"", 0o644)

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

    @staticmethod
    def _content_to_send(call: CallView) -> FileView | None:
        """The recorded file a ``put`` or ``copy_and_run`` sends, if it got that far."""
        if call.method == "put":
            return call.files[0] if call.files else None
        if call.method == "copy_and_run":
            return next((f for f in call.files if f.temporary), None)
        return None

    def _make(self, exp: str) -> Experiment:
        kind = self.targets[exp]
        created = self.source.experiments.get(exp, {})
        name = created.get("name")
        cloud = self.mapping.cloud(exp)
        common: dict[str, Any] = {"records": self.records}
        for key in ("boot_timeout", "boot_max_tries"):
            if key in cloud:
                common[key] = cloud[key]
        if kind == "local":
            return LocalExperiment(
                str(name) if name else None, address_block=cloud.get("address_block"), **common
            )
        access = os.environ[cloud.get("access_key_env", "AWS_ACCESS_KEY_ID")]
        secret = os.environ[cloud.get("secret_key_env", "AWS_SECRET_ACCESS_KEY")]
        options: dict[str, Any] = {
            key: cloud[key]
            for key in ("subnet_id", "security_groups", "key_name", "ssh_address",
                        "login_user", "floating_addresses")
            if key in cloud
        }  # fmt: skip
        options.update(common)
        region = str(cloud.get("region", "us-east-1"))
        label = str(name) if name else None
        if kind == "ec2":
            return EC2Experiment(region, cloud.get("endpoint"), access, secret, label, **options)
        return _ENDPOINT_CLOUDS[kind](
            str(cloud["endpoint"]), access, secret, label, region=region, **options
        )

    # -- remapping ------------------------------------------------------------------------

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
        if inverse is None:
            inverse = self._inverse()
        if isinstance(value, list):
            return [self._remap(item, inverse) for item in value]
        if not isinstance(value, str):
            return value
        return SECRET_PLACEHOLDER.sub(self._bind, self._substitute(value, inverse))

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

    # -- steps ----------------------------------------------------------------------------

    def _blob(self, ref: dict[str, Any]) -> bytes:
        stand_in = self.stand_ins.get(str(ref.get("sha256")))
        if ref.get("withheld") and stand_in is not None:
            content = stand_in.read_bytes()
            if hashlib.sha256(content).hexdigest() != ref["sha256"]:
                raise ReplayFailed(
                    f"{stand_in} changed while the replay ran: it no longer has the "
                    f"recorded sha256 {ref['sha256']}",
                    usage=True,
                )
            return content
        return self.blobs.read_bytes(
            BlobRef(
                sha256=str(ref["sha256"]),
                size=int(ref["size"]),
                text=ref.get("text"),
                withheld=ref.get("withheld"),
            )
        )

    def _recorded_text(self, ref: dict[str, Any]) -> str | None:
        if isinstance(ref.get("text"), str):
            return self.source_norm.text(str(ref["text"]))
        if ref.get("withheld") or int(ref.get("size", 0)) > 1 << 20:
            return None
        try:
            return self.source_norm.text(self._blob(ref).decode("utf-8"))
        except (UnicodeDecodeError, ExperimentException, OSError):
            return None

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
