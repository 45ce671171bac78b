"""The precip API, written once above the cloud interface.

Method names, parameter order and defaults are the seed's (DESIGN §2); everything we add is
keyword-only. Each method checks its arguments and hands the call to the parts that do the
work: the call recording (recorded, unrecorded or played back, chosen at construction), the
fleet, boot supervision, commands and transfers.
"""

from __future__ import annotations

import builtins
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from precip_repro import arguments
from precip_repro.clouds.base import Capability, Cloud
from precip_repro.exceptions import ExperimentClosed, ExperimentException, RuleInvalid
from precip_repro.expectations import RuleLike, as_recorded
from precip_repro.experiment.boot import Boot
from precip_repro.experiment.commands import Commands, Outputs, check_line_endings
from precip_repro.experiment.fanout import MAX_WORKERS
from precip_repro.experiment.fleet import Fleet
from precip_repro.experiment.lifetime import Lifetime, LiveLifetime, PlayedLifetime
from precip_repro.experiment.params import Chosen, Value, choose, kind_of
from precip_repro.experiment.reach import Reacher
from precip_repro.experiment.recording import (
    Calls,
    PlayedBack,
    Recorded,
    Unrecorded,
    hide_secrets,
)
from precip_repro.experiment.transfers import Transfers
from precip_repro.keys import Keys, load_keys
from precip_repro.record.events import CommandFinished, ExperimentCreated, Note, Parameter
from precip_repro.record.methods import METHODS
from precip_repro.session import session
from precip_repro.ssh import SshPool
from precip_repro.stores import open_store

__all__ = ["MAX_COUNT", "SSH_ADDRESSES", "Experiment"]

SSH_ADDRESSES: Final = ("public", "private")
MAX_COUNT: Final = 10_000
"""The most instances one ``provision()`` starts, whatever the cloud: each is a launch
request, a slot in the record and connections to keep (``count=10**9`` built a billion
requests before the cloud was asked, and the kernel ended the process)."""

F = TypeVar("F", bound=Callable[..., Any])


def _secrets_hidden(method: F) -> F:
    """The experiment's public methods: an error they raise shows no registered secret in
    its message (``InvalidOption`` prints the bad value, ``ExperimentClosed`` the name),
    whether raised inside a recorded call or before (attributes such as ``value`` keep what
    was given, for code)."""

    @functools.wraps(method)
    def hiding(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ExperimentException as exc:
            hide_secrets(exc, session.redactor)
            raise

    return cast(F, hiding)


class Experiment:
    """A precip experiment on one cloud. Use a subclass (``LocalExperiment``, …)."""

    @_secrets_hidden
    def __init__(
        self,
        cloud: Cloud,
        name: str | None = None,
        *,
        record: bool = True,
        records: Path | str | None = None,
        parallel: bool = False,
        max_workers: int = MAX_WORKERS,
        ssh_address: str = "public",
        connect_timeout: float = 10.0,
        boot_timeout: float | None = None,
        boot_max_tries: int = 1,
        keys: Keys | None = None,
        login_user: str = "root",
    ) -> None:
        ssh_address = arguments.one_of("ssh_address", ssh_address, SSH_ADDRESSES)
        login_user = arguments.text("login_user", login_user)
        boot_max_tries = arguments.count("boot_max_tries", boot_max_tries)
        max_workers = arguments.count("max_workers", max_workers)
        connect_timeout = arguments.seconds("connect_timeout", connect_timeout)
        boot_timeout = arguments.seconds("boot_timeout", boot_timeout, optional=True)
        if name is not None:
            name = arguments.text("name", name)
        self.name = name
        self.cloud = cloud
        self.parallel = parallel
        self.max_workers = max_workers
        self.keys = keys or load_keys()
        self._pid = os.getpid()
        self._pool = pool = SshPool(
            self.keys.pkey,
            connect_timeout=connect_timeout,
            redact=lambda text: session.redactor.text(text),  # secrets registered later too
        )
        self.exp = "e0"
        self._declared: dict[str, Chosen] = {}
        """The parameters declared, as recorded: declared again alike, not recorded again."""
        # How calls are recorded is chosen here, once: answered from a recording (no cloud,
        # no record), recorded into this process's run, or not recorded at all.
        recording = session.playback
        calls: Calls
        if recording is not None:
            self.exp = session.next_exp()
            recording.experiments.append(self)
            calls = PlayedBack(recording, exp=self.exp)
        elif record:
            run = session.open_run(open_store(records), name)
            self.exp = session.next_exp()
            calls = Recorded(
                run,
                exp=self.exp,
                redactor=session.redactor,
                next_call=session.next_call,
                shielded=session.shielded,
                guard=self._check_process,
            )
        else:
            calls = Unrecorded(
                exp=self.exp,
                redactor=session.redactor,
                shielded=session.shielded,
                guard=self._check_process,
            )
        self._calls = calls
        label = f"{self.exp}{f' ({name})' if name else ''}"
        self._fleet = Fleet(
            exp=self.exp, label=label, cloud=cloud, pool=pool, calls=calls, session=session
        )
        reacher = Reacher(cloud, pool, login_user=login_user, ssh_address=ssh_address)
        self._reacher = reacher
        self._boot = Boot(
            exp=self.exp,
            run_id=self.run_id or "",
            cloud=cloud,
            pool=pool,
            keys=self.keys,
            fleet=self._fleet,
            reacher=reacher,
            calls=calls,
            session=session,
            login_user=login_user,
            ssh_address=ssh_address,
            boot_timeout=boot_timeout,
            boot_max_tries=boot_max_tries,
        )
        self._transfers = Transfers(fleet=self._fleet, reacher=reacher, calls=calls)
        self._commands = Commands(
            reacher=reacher, calls=calls, transfers=self._transfers, redactor=session.redactor
        )
        self._lifetime: Lifetime
        if recording is not None:
            self._lifetime = PlayedLifetime(
                fleet=self._fleet, recording=recording, deprovision=lambda: self.deprovision([])
            )
            return
        self._lifetime = LiveLifetime(
            fleet=self._fleet,
            pool=pool,
            cloud=cloud,
            session=session,
            owner=self,
            deprovision=lambda: self.deprovision([]),
            last_call=lambda: self.last_call,
        )
        session.register(self)
        self.cloud.prepare(self.keys)
        calls.append(
            ExperimentCreated(
                exp=self.exp,
                name=name,
                cloud=cloud.info().as_record(),
                key_fingerprint=self.keys.fingerprint,
                login_user=None if login_user == "root" else login_user,
            )
        )

    # -- settings the parts read at each call (a script may change them between calls) --------

    @property
    def login_user(self) -> str:
        """The account ssh logs in as. Root by default (the seed's); another (``ubuntu``,
        ``ec2-user``: today's images refuse root) makes every call as another user — the
        seed's ``user="root"`` included — go through that account's sudo."""
        return self._reacher.login_user

    @login_user.setter
    def login_user(self, user: str) -> None:
        self._reacher.login_user = self._boot.login_user = user

    @property
    def ssh_address(self) -> str:
        """``public`` or ``private``: the address ssh reaches instances at."""
        return self._reacher.ssh_address

    @ssh_address.setter
    def ssh_address(self, which: str) -> None:
        self._reacher.ssh_address = self._boot.ssh_address = which

    @property
    def boot_timeout(self) -> float | None:
        """Seconds an instance may take to boot before it is replaced (None: no limit)."""
        return self._boot.boot_timeout

    @boot_timeout.setter
    def boot_timeout(self, seconds: float | None) -> None:
        self._boot.boot_timeout = seconds

    @property
    def boot_max_tries(self) -> int:
        """How many instances a slot may take to boot one."""
        return self._boot.boot_max_tries

    @boot_max_tries.setter
    def boot_max_tries(self, tries: int) -> None:
        self._boot.boot_max_tries = tries

    # -- the run ----------------------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        """The id of the run this experiment records into (None with ``record=False``)."""
        run = self._calls.run
        return run.id if run is not None else None

    @property
    def digest(self) -> str | None:
        """The run's digest so far — the hash of the event written last, which ``verify
        --digest`` holds as a prefix the run continues past; once the run finished, its
        final digest, the one to cite."""
        run = self._calls.run
        return run.digest if run is not None else None

    @property
    def run_path(self) -> Path | None:
        run = self._calls.run
        return run.path if run is not None else None

    @property
    def last_call(self) -> int | None:
        """The number of the last call this experiment recorded."""
        return self._calls.last_call

    @property
    def last_commands(self) -> dict[str, CommandFinished]:
        """The commands of the last call, by slot, as recorded: their exact output is known
        by its blob's hash, where the ``str`` a call returns has lost undecodable bytes."""
        return self._calls.last_commands

    def _check_open(self, method: str) -> None:
        self._fleet.check_open(method)

    def _check_process(self, method: str) -> None:
        if os.getpid() != self._pid:
            raise ExperimentClosed(
                f"experiment {self.exp}{f' ({self.name})' if self.name else ''} belongs to "
                f"process {self._pid}; this process ({os.getpid()}) is a fork of it (os.fork, "
                f"multiprocessing) and shares neither its ssh connections nor its record, so "
                f"{method}() is refused here: call it from process {self._pid}, or make a new "
                "experiment in this process",
                exp=self.exp,
            )

    def _fan(self, parallel: bool | None) -> bool:
        return self.parallel if parallel is None else parallel

    @_secrets_hidden
    def note(self, text: str, **fields: Any) -> None:
        """Write a note into the record (``fields`` any JSON; numbers read back as numbers)."""
        self._calls.append(
            Note(text=session.redactor.text(text), fields=session.redactor.json(fields))
        )

    @_secrets_hidden
    def param(
        self, name: str, default: Value | None = None, *, type: builtins.type[Value] | None = None
    ) -> Value:
        """A parameter of the experiment: the environment variable ``name`` read as ``type``
        (``int``, ``float``, ``str`` or ``bool``; by default the type of ``default``), else
        ``default``. The value used and where it came from are recorded, so that ``diff``
        and ``report`` say first that ``SORT_N`` went from 200000 to 400000; played back, the
        recorded value is used whatever the environment holds. Raises
        :class:`~precip_repro.exceptions.ParameterInvalid` for a value not of its type, or
        none at all."""
        name = arguments.text("name", name)
        kind = kind_of(name, default, type)
        recording = session.playback
        recorded = None
        if recording is not None:
            found = recording.view.parameters.get(name)
            recorded = None if found is None else found.value
        chosen = choose(name, default, kind, environ=os.environ, recorded=recorded)
        if self._declared.get(name) != chosen:
            self._declared[name] = chosen
            self._calls.append(
                Parameter(
                    name=name, value=session.redactor.json(chosen.value), source=chosen.source
                )
            )
        return chosen.value

    def secret(self, name: str, value: str) -> None:
        """Register a secret: it becomes ``${secret:NAME}`` everywhere in the record.

        Register it before using it: blobs this run stored earlier that hold the value (the
        script itself, say) are removed and kept by hash only, but events already written
        cannot change (a warning says when one holds it)."""
        session.add_secret(name, value)

    # -- instances --------------------------------------------------------------------------

    @_secrets_hidden
    def provision(
        self,
        image_id: str,
        instance_type: str = "m1.small",
        count: int = 1,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Start ``count`` instances of ``image_id``; does not wait for them to boot."""
        user_tags = arguments.tags(tags)
        image_id = arguments.image(image_id)
        instance_type = arguments.text("instance_type", instance_type)
        count = arguments.count("count", count, most=MAX_COUNT)
        self._check_open("provision")
        args = METHODS["provision"].recorded(
            image_id=image_id, instance_type=instance_type, count=count, tags=user_tags
        )

        def act(call: Any) -> None:
            call.result = self._fleet.provision(
                call,
                run=self.run_id or "",
                image_id=image_id,
                instance_type=instance_type,
                count=count,
                user_tags=user_tags,
            )

        # What the cloud cannot give is refused at once, before the call is recorded.
        capacity = functools.partial(self.cloud.check_capacity, count)
        return self._calls.perform("provision", args, act, shielded=False, before=capacity)

    @_secrets_hidden
    def wait(self, tags: Sequence[str] | None = None, timeout: float | None = 600) -> None:
        """Block until the matching instances run and accept ssh; raise on timeout
        (``timeout=None`` waits as long as it takes; 0 checks once)."""
        tags = arguments.tags(tags)
        timeout = arguments.seconds("timeout", timeout, optional=True, zero=True)
        self._check_open("wait")

        def act(call: Any) -> None:
            call.result = self._boot.wait(call, tags, timeout, workers=self.max_workers)

        args = METHODS["wait"].recorded(tags=tags, timeout=timeout)
        return self._calls.perform("wait", args, act, shielded=False)

    @_secrets_hidden
    def open_port(self, port: int, protocol: str = "tcp", cidr: str = "0.0.0.0/0") -> None:
        """Open ``protocol``/``port`` to ``cidr`` for the experiment's instances (what the seed
        told users to do by hand in the cloud's console). Local instances need nothing."""
        port = arguments.port(port)
        protocol = arguments.one_of("protocol", protocol, arguments.PROTOCOLS)
        cidr = arguments.cidr(cidr)
        self._check_open("open_port")

        def act(call: Any) -> None:
            opens = Capability.OPEN_PORT in self.cloud.capabilities
            call.result = self.cloud.open_port(port, protocol, cidr) if opens else []

        args = METHODS["open_port"].recorded(port=port, protocol=protocol, cidr=cidr)
        return self._calls.perform("open_port", args, act, shielded=False)

    @_secrets_hidden
    def deprovision(self, tags: Sequence[str] | None = None) -> None:
        """Terminate the matching instances."""
        tags = arguments.tags(tags)

        def act(call: Any) -> None:
            targets = self._fleet.match(tags)
            self._fleet.terminate(targets, call.number)
            call.result = [inst.instance_id for inst in targets]

        args = METHODS["deprovision"].recorded(tags=tags)
        return self._calls.perform("deprovision", args, act, shielded=True)

    @property
    def slots(self) -> dict[str, dict[str, Any]]:
        """The live instances by slot (id, addresses, hostnames), without recording a call:
        for tools such as replay that need what ``list()`` knows without adding a step."""
        return self._fleet.slots()

    @_secrets_hidden
    def list(self, tags: Sequence[str] | None = None) -> builtins.list[dict[str, Any]]:
        """The matching instances as dicts (``id``, addresses, ``tags``, ``slot`` …)."""
        tags = arguments.tags(tags)

        def act(call: Any) -> builtins.list[dict[str, Any]]:
            result = [inst.as_dict() for inst in self._fleet.match(tags)]
            call.result = result
            return result

        return self._calls.perform("list", METHODS["list"].recorded(tags=tags), act, shielded=False)

    @_secrets_hidden
    def get_public_hostnames(self, tags: Sequence[str] | None = None) -> builtins.list[str | None]:
        return self._hostnames("public", tags)

    @_secrets_hidden
    def get_private_hostnames(self, tags: Sequence[str] | None = None) -> builtins.list[str | None]:
        return self._hostnames("private", tags)

    def _hostnames(self, which: str, tags: Sequence[str] | None) -> builtins.list[str | None]:
        method, tags = f"get_{which}_hostnames", arguments.tags(tags)

        def act(call: Any) -> builtins.list[str | None]:
            result = [getattr(inst, f"{which}_hostname") for inst in self._fleet.match(tags)]
            call.result = result
            return result

        return self._calls.perform(method, METHODS[method].recorded(tags=tags), act, shielded=False)

    # -- commands and files -----------------------------------------------------------------

    @_secrets_hidden
    def run(
        self,
        tags: Sequence[str] | str,
        cmd: str,
        user: str = "root",
        check_exit_code: bool = True,
        *,
        timeout: float | None = None,
        parallel: bool | None = None,
        expect: RuleLike | Iterable[RuleLike] | None = None,
    ) -> Outputs:
        """Run ``cmd`` on the matching instances; ``(exit_codes, stdouts, stderrs)``.
        ``expect``: the differences a rerun's outputs may show (``Rule`` objects)."""
        tags = arguments.tags(tags)
        cmd = arguments.command(cmd)
        user = arguments.text("user", user)
        timeout = arguments.seconds("timeout", timeout, optional=True)
        self._check_open("run")
        args = METHODS["run"].recorded(
            tags=tags, cmd=cmd, user=user, check_exit_code=check_exit_code, timeout=timeout,
            expect=as_recorded(expect),
        )  # fmt: skip

        def act(call: Any) -> Outputs:
            targets = self._fleet.targets(tags, "run")
            return self._commands.run(
                call, targets, cmd, user, check_exit_code, timeout,
                fan=self._fan(parallel), workers=self.max_workers,
            )  # fmt: skip

        return self._calls.perform("run", args, act, shielded=False)

    @_secrets_hidden
    def copy_and_run(
        self,
        tags: Sequence[str] | str,
        local_script: str | Path,
        args: Sequence[str] | None = None,
        user: str = "root",
        check_exit_code: bool = True,
        *,
        timeout: float | None = None,
        parallel: bool | None = None,
        expect: RuleLike | Iterable[RuleLike] | None = None,
    ) -> Outputs:
        """Copy a script to a temporary path, run it with shell-quoted ``args``, remove it.
        ``expect``: the differences a rerun's outputs may show (``Rule`` objects)."""
        tags = arguments.tags(tags)
        local_script = arguments.path("local_script", local_script)
        script_args = arguments.script_args(args)
        user = arguments.text("user", user)
        timeout = arguments.seconds("timeout", timeout, optional=True)
        self._check_open("copy_and_run")
        call_args = METHODS["copy_and_run"].recorded(
            tags=tags, local_script=str(local_script), args=script_args, user=user,
            check_exit_code=check_exit_code, timeout=timeout, expect=as_recorded(expect),
        )  # fmt: skip

        def act(call: Any) -> Outputs:
            script = self._transfers.local_file(local_script)
            check_line_endings(script)
            targets = self._fleet.targets(tags, "copy_and_run")
            return self._commands.copy_and_run(
                call, targets, script, script_args, user, check_exit_code, timeout,
                fan=self._fan(parallel), workers=self.max_workers,
            )  # fmt: skip

        return self._calls.perform("copy_and_run", call_args, act, shielded=False)

    @_secrets_hidden
    def put(
        self,
        tags: Sequence[str] | str,
        local_path: str | Path,
        remote_path: str,
        user: str = "root",
        *,
        parallel: bool | None = None,
    ) -> None:
        """Copy a local file to ``remote_path`` on the matching instances (mode kept)."""
        tags = arguments.tags(tags)
        local_path = arguments.path("local_path", local_path)
        remote_path = arguments.text("remote_path", remote_path)
        user = arguments.text("user", user)
        self._check_open("put")
        args = METHODS["put"].recorded(
            tags=tags, local_path=str(local_path), remote_path=remote_path, user=user
        )

        def act(call: Any) -> None:
            self._transfers.put(
                call, tags, local_path, remote_path, user,
                fan=self._fan(parallel), workers=self.max_workers,
            )  # fmt: skip

        return self._calls.perform("put", args, act, shielded=False)

    @_secrets_hidden
    def get(
        self,
        tags: Sequence[str] | str,
        remote_path: str,
        local_path: str | Path,
        user: str = "root",
        *,
        parallel: bool | None = None,
        expect: RuleLike | Iterable[RuleLike] | None = None,
    ) -> None:
        """Copy ``remote_path`` from the matching instances to ``local_path`` (with
        ``.<instance id>`` appended unless exactly one instance matched). ``expect``: the
        differences a rerun's files may show (``Rule`` objects)."""
        tags = arguments.tags(tags)
        remote_path = arguments.text("remote_path", remote_path)
        local_path = arguments.path("local_path", local_path)
        user = arguments.text("user", user)
        self._check_open("get")
        args = METHODS["get"].recorded(
            tags=tags, remote_path=remote_path, local_path=str(local_path), user=user,
            expect=as_recorded(expect),
        )  # fmt: skip

        def act(call: Any) -> None:
            self._transfers.get(
                call, tags, remote_path, local_path, user,
                fan=self._fan(parallel), workers=self.max_workers,
            )  # fmt: skip

        return self._calls.perform("get", args, act, shielded=False)

    @_secrets_hidden
    def expect(self, *rules: RuleLike) -> None:
        """Declare the differences a rerun of this run may show, for all of it: ``diff``
        and ``precip-replay`` judge them *equivalent* rather than diverged (recorded)."""
        declared = as_recorded(rules)
        if declared is None:
            raise RuleInvalid("expect() declares at least one Rule (Rule.numbers(...), …)")
        self._check_open("expect")
        args = METHODS["expect"].recorded(rules=declared)
        return self._calls.perform("expect", args, lambda call: None, shielded=False)

    # -- lifetime ---------------------------------------------------------------------------

    @_secrets_hidden
    def close(self) -> None:
        """Deprovision everything this experiment still has running; close connections.

        In a forked child (the end of a ``with`` block the fork inherited) it does nothing:
        the instances are the parent's."""
        if os.getpid() != self._pid:
            return
        self._lifetime.close()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            session.mark_ending(exc)
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.exp} {self.name!r} on {self.cloud.kind}>"
