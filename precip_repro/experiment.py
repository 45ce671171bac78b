"""The precip API, written once above the cloud interface, with every call recorded.

Method names, parameter order and defaults are the seed's (DESIGN §2); everything we add
is keyword-only. Each call writes ``call.started`` before it acts and ``call.finished`` or
``call.failed`` after; each side effect inside it writes its own intent and outcome.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import math
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Final, TypeVar, cast

import attrs

from precip_repro import arguments
from precip_repro.clouds.base import Cloud, CloudInstance, LaunchRequest
from precip_repro.clouds.board import StateBoard
from precip_repro.exceptions import (
    CloudError,
    CommandFailed,
    CommandTimeout,
    ExperimentClosed,
    ExperimentException,
    HostKeyChanged,
    InstanceError,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalFileMissing,
    LoginRefused,
    NoInstanceMatches,
    RecordError,
    TransferFailed,
    UnsupportedUser,
    WaitTimeout,
)
from precip_repro.keys import Keys, fingerprint, load_keys
from precip_repro.logs import get_logger
from precip_repro.messages import shown_command
from precip_repro.normalize import slot_order, temp_script_path
from precip_repro.record.blobs import CHUNK, BackgroundWriter, BlobSink
from precip_repro.record.events import (
    BlobRef,
    CallFailed,
    CallFinished,
    CallStarted,
    CommandFinished,
    ErrorInfo,
    ExperimentCreated,
    FileGot,
    FilePut,
    InstanceLaunched,
    InstanceReady,
    InstanceTerminated,
    InstanceTerminating,
    Note,
    Payload,
)
from precip_repro.record.recorder import Run
from precip_repro.record.store import RunStore
from precip_repro.session import session
from precip_repro.ssh import (
    MAX_COMMAND,
    Connection,
    Endpoint,
    ExecResult,
    Sink,
    SshPool,
    special_kind,
)

__all__ = ["Experiment", "Instance", "fan_out"]

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

SSH_ADDRESSES: Final = ("public", "private")
_EMPTY: Final = BlobRef.of(b"")
MAX_COUNT: Final = 10_000
"""The most instances one ``provision()`` starts, whatever the cloud: each is a launch
request, a slot in the record and connections to keep (``count=10**9`` built a billion
requests before the cloud was asked, and the kernel ended the process)."""
MAX_WORKERS: Final = 32
LOGIN_GRACE: Final = 60.0
"""Seconds sshd may refuse the key, without a break, before wait() gives up on the instance
(no new one would do better): long enough for an image that starts sshd before it has
installed the key."""
ENDED_WHILE_BOOTING: Final = frozenset({"terminated", "shutting-down", "stopping", "stopped"})
"""States from which an instance wait() awaits will never become ready."""
ENDED_FOR_GOOD: Final = frozenset({"terminated", "shutting-down"})
"""States no instance comes back from (a stopped one can be started again)."""
STDERR_TAIL: Final = 400
LAUNCHES_WAIT: Final = 300.0
"""How long ``close()`` waits for launches under way in other threads (a cloud API answers
a launch within seconds; its retries give up within minutes)."""
NO_EXIT_STATUS: Final = -1
"""The exit code of a command whose session ended without one (paramiko's, as the seed's)."""
_FACTS_CMD: Final = (
    'echo "uname=$(uname -srvmo 2>/dev/null || uname -a)"; '
    'echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"; '
    "echo \"memory_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)\"; "
    'if [ -r /etc/os-release ]; then . /etc/os-release; echo "os=$PRETTY_NAME"; fi; '
    'echo "hostname=$(hostname)"'
)
_LOGIN_REFUSED: Final = re.compile(r"Please login as the user \W?([\w.-]+)")
"""What many cloud images' root ``authorized_keys`` print (``command="echo 'Please login as
the user \"ubuntu\" rather than the user \"root\".'; … exit 142"``) instead of a shell."""


@attrs.define(kw_only=True, eq=False)
class Instance:
    """One instance as the experiment knows it."""

    slot: str
    instance_id: str
    image_id: str
    instance_type: str
    tags: builtins.list[str]
    state: str = "pending"
    public_address: str | None = None
    private_address: str | None = None
    public_hostname: str | None = None
    private_hostname: str | None = None
    ssh_port: int = 22
    host_key: str | None = None
    ready: bool = False
    image_digest: str | None = None
    request: LaunchRequest | None = None
    tries: int = 1
    state_reason: str | None = None
    listed: bool = False
    """Whether the cloud has listed it yet: a new id may be unknown for a few seconds."""
    floating_address: str | None = None
    """The floating address we gave it: a description from before that lacks it must not
    take it away (and get it a second one)."""
    gone: str | None = None
    """Why nothing reaches this instance again — its cloud says it ended after it was
    ready, or this experiment is terminating it: calls on it fail at once saying so, and
    ``wait()`` does rather than call it ready."""
    awaited: threading.Lock = attrs.field(factory=threading.Lock, repr=False)
    """Held by the one ``wait()`` that waits for it."""
    stopped: str | None = None
    """What the cloud said when it stopped this instance after it was ready (a spot stop,
    the console): not ready again until ``wait()`` finds it running and answering — the
    same instance, its disk and host key kept, never replaced by a new one."""

    def matches(self, tags: Sequence[str]) -> bool:
        return all(tag in self.tags for tag in tags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "public_address": self.public_address,
            "private_address": self.private_address,
            "tags": list(self.tags),
            "image_id": self.image_id,
            "instance_type": self.instance_type,
            "state": self.state,
            "slot": self.slot,
        }

    def update(self, described: CloudInstance) -> None:
        self.state = described.state
        self.public_address = described.public_address or self.floating_address
        self.private_address = described.private_address
        self.public_hostname = described.public_hostname or self.floating_address
        self.private_hostname = described.private_hostname
        self.ssh_port = described.ssh_port
        self.state_reason = described.state_reason


class _Call:
    """The call being recorded; ``result`` goes into ``call.finished``."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.result: Any = None


CHANGED_WHILE_SENT: Final = "the file changed while it was sent: these bytes were not kept"
"""Why a file put to several instances is kept by hash only for one of them: it is stored
once, and what reached that instance was not what was stored."""


def _check_command(cmd: str) -> None:
    """Refuse, before anything is sent, a command no ssh server can run as given."""
    if "\0" in cmd:
        raise InvalidOption(
            "cmd",
            "<a command holding a NUL character>",
            ["a command without NUL characters (ssh passes it as a C string)"],
        )
    size = len(cmd.encode("utf-8", "surrogateescape"))
    if size > MAX_COMMAND:
        raise InvalidOption(
            "cmd",
            f"<{size} bytes>",
            [
                f"at most {MAX_COMMAND} bytes (the remote shell gets the command as one "
                "argument, which Linux caps at 128 KiB): write the commands to a file and "
                "use copy_and_run"
            ],
        )


def _check_line_endings(script: Path) -> None:
    """A script saved on Windows (CRLF) fails on every instance with a riddle —
    ``/bin/bash^M: bad interpreter``, ``$'\\r': command not found`` — after it was sent:
    refused before, saying why. Its bytes are not changed behind the user's back."""
    with script.open("rb") as f:
        first = f.readline(4096)
    if first.endswith(b"\r\n"):
        shown = first[:-2].decode("utf-8", "replace")
        raise InvalidOption(
            "local_script",
            str(script),
            [
                "a script whose lines end in LF, as Unix has them (this one's first line, "
                f"{shown!r}, ends in CRLF, Windows' line ending: the instance would look for "
                f"{shown.removeprefix('#!').strip()!r} + '\\r'); convert it: dos2unix {script}"
            ],
        )


def fan_out(
    func: Callable[[T], R], items: Sequence[T], *, parallel: bool, workers: int = MAX_WORKERS
) -> builtins.list[tuple[R | None, BaseException | None]]:
    """Apply ``func`` to each item, in order or on daemon threads; outcomes in item order.

    Daemon threads, not an executor: at interpreter exit an executor joins its workers
    before atexit runs, and a long command would hold up deprovisioning.
    """
    outcomes: builtins.list[tuple[R | None, BaseException | None]] = [(None, None)] * len(items)
    if not parallel or len(items) <= 1:
        for index, item in enumerate(items):
            try:
                outcomes[index] = (func(item), None)
            except Exception as exc:
                outcomes[index] = (None, exc)
        return outcomes
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                outcomes[index] = (func(items[index]), None)
            except BaseException as exc:
                outcomes[index] = (None, exc)

    threads = [
        threading.Thread(target=worker, daemon=True, name="precip-fanout")
        for _ in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


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
            _hide_secrets(exc)
            raise

    return cast(F, hiding)


def _hide_secrets(exc: ExperimentException) -> None:
    message = session.redactor.text(str(exc))
    if message != str(exc):
        exc.args = (message,)


class _KeyedLocks:
    """A lock per key, made on first use and dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)


_LOCAL_PATHS: Final = _KeyedLocks()
"""Local paths a get() is writing, in this process (every experiment alike)."""


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
        self.login_user = arguments.text("login_user", login_user)
        """The account ssh logs in as. Root by default (the seed's); another (``ubuntu``,
        ``ec2-user``: today's images refuse root) makes every call as another user —
        the seed's ``user="root"`` included — go through that account's sudo."""
        boot_max_tries = arguments.count("boot_max_tries", boot_max_tries)
        max_workers = arguments.count("max_workers", max_workers)
        connect_timeout = arguments.seconds("connect_timeout", connect_timeout)
        boot_timeout = arguments.seconds("boot_timeout", boot_timeout, optional=True)
        if name is not None:
            name = arguments.text("name", name)
        self.boot_timeout = boot_timeout
        self.boot_max_tries = boot_max_tries
        self.name = name
        self.cloud = cloud
        self.parallel = parallel
        self.max_workers = max_workers
        self.ssh_address = ssh_address
        self.keys = keys or load_keys()
        self._lock = threading.RLock()
        self._terminating = threading.RLock()
        self._closing = False
        self._launching = 0  # launches under way: close() waits for them
        self._launches_ended = threading.Condition(self._lock)
        self._instances: builtins.list[Instance] = []
        self._provisions = 0
        self._closed = False
        self._pid = os.getpid()
        self._pool = SshPool(
            self.keys.pkey,
            connect_timeout=connect_timeout,
            redact=lambda text: session.redactor.text(text),  # secrets registered later too
        )
        self._record = record
        self._run: Run | None = None
        self.last_call: int | None = None
        """The number of the last call this experiment recorded."""
        self.last_commands: dict[str, CommandFinished] = {}
        """The commands of the last call, by slot, as recorded: their exact output is known
        by its blob's hash, where the ``str`` a call returns has lost undecodable bytes."""
        self.exp = "e0"
        if session.playback is not None:
            # Answered from a recording: no cloud, no record.
            self.exp = session.next_exp()
            session.playback.experiments.append(self)
            return
        if record:
            self._run = session.open_run(RunStore(records), name)
            self.exp = session.next_exp()
        session.register(self)
        self.cloud.prepare(self.keys)
        self._append(
            ExperimentCreated(
                exp=self.exp,
                name=name,
                cloud=cloud.info(),
                key_fingerprint=self.keys.fingerprint,
                login_user=None if self.login_user == "root" else self.login_user,
            )
        )

    # -- the run ----------------------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        """The id of the run this experiment records into (None with ``record=False``)."""
        return self._run.id if self._run is not None else None

    @property
    def digest(self) -> str | None:
        """The run's digest so far; once the run finished, its final digest."""
        return self._run.digest if self._run is not None else None

    @property
    def run_path(self) -> Path | None:
        return self._run.path if self._run is not None else None

    def _check_open(self, method: str) -> None:
        if self._closed or self._closing:
            how = (
                "closed: close() or the end of its `with` block deprovisioned it"
                if self._closed
                else "closing: close(), the end of its `with` block or of the script is "
                "deprovisioning it"
            )
            raise ExperimentClosed(
                f"experiment {self.exp}{f' ({self.name})' if self.name else ''} is {how}, so "
                f"{method}() would start or use what nothing deprovisions any more; make a new "
                "experiment",
                exp=self.exp,
            )

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

    def _append(self, payload: Payload) -> None:
        if self._run is not None:
            self._run.append(payload)

    def _output(self, data: bytes) -> BlobRef:
        if self._run is None:
            return _EMPTY
        if not data:
            return _EMPTY
        return self._run.add_blob(session.redactor.data(data), inline=True)

    def _file_sink(self) -> BlobSink | None:
        return self._run.blob_sink() if self._run is not None else None

    def _played(self, method: str, args: dict[str, Any]) -> Any:
        """In playback, the recorded answer to this call (or its recorded exception)."""
        assert session.playback is not None
        return session.playback.answer(self.exp, method, args)

    @contextlib.contextmanager
    def _call(self, method: str, args: dict[str, Any]) -> Iterator[_Call]:
        self._check_process(method)
        call = _Call(session.next_call() if self._run is not None else 0)
        self.last_call = call.number
        self.last_commands = {}
        started = time.monotonic_ns()
        self._append(
            CallStarted(
                call=call.number, exp=self.exp, method=method, args=session.redactor.json(args)
            )
        )
        try:
            yield call
        except BaseException as exc:
            message = session.redactor.text(str(exc))
            if isinstance(exc, ExperimentException):
                # Its message reaches terminals, CI logs and bug reports: a registered
                # secret in a command or its stderr stays hidden there as in the record
                # (attributes such as ``stderr_tail`` keep what happened, for code).
                _hide_secrets(exc)
            self._append(
                CallFailed(
                    call=call.number,
                    error=ErrorInfo(
                        type=type(exc).__name__,
                        message=message,
                        instance=exc.instance if isinstance(exc, InstanceError) else None,
                        slot=exc.slot if isinstance(exc, InstanceError) else None,
                    ),
                    duration_ns=time.monotonic_ns() - started,
                )
            )
            raise
        self._append(
            CallFinished(
                call=call.number,
                result=session.redactor.json(call.result),
                duration_ns=time.monotonic_ns() - started,
            )
        )

    @_secrets_hidden
    def note(self, text: str, **fields: Any) -> None:
        """Write a note into the record (``fields`` any JSON; floats kept as decimals)."""
        self._append(Note(text=session.redactor.text(text), fields=session.redactor.json(fields)))

    def secret(self, name: str, value: str) -> None:
        """Register a secret: it becomes ``${secret:NAME}`` everywhere in the record.

        Register it before using it: blobs this run stored earlier that hold the value (the
        script itself, say) are removed and kept by hash only, but events already written
        cannot change (a warning says when one holds it)."""
        session.add_secret(name, value)

    # -- matching ---------------------------------------------------------------------------

    def _match(self, tags: Sequence[str]) -> builtins.list[Instance]:
        with self._lock:
            found = [inst for inst in self._instances if inst.matches(tags)]
        if not found:
            log.warning("no instance matches the tags", exp=self.exp, tags=list(tags))
        return found

    def _targets(self, tags: Sequence[str], method: str) -> builtins.list[Instance]:
        """The instances a call acts on; :class:`NoInstanceMatches` when there are none
        (a call that silently did nothing let a run end ``ok`` having run nothing)."""
        with self._lock:
            everyone = builtins.list(self._instances)
        found = [inst for inst in everyone if inst.matches(tags)]
        if found:
            return found
        # Each instance's first three tags are precip, its id and its slot.
        existing = sorted({tag for inst in everyone for tag in inst.tags[3:]})
        if not everyone:
            have = "it has no instances (provision them first; deprovisioned ones are gone)"
        elif existing:
            have = (
                f"its instances have the tags {', '.join(existing)} (and each precip, its id "
                "and its slot)"
            )
        else:
            have = "its instances have no tags but precip, their ids and their slots"
        raise NoInstanceMatches(
            f"{method}(): no instance of experiment {self.exp} has all of the tags "
            f"{builtins.list(tags)}, so nothing was done; {have}",
            tags=tags,
            existing=existing,
        )

    def _endpoint(self, inst: Instance) -> Endpoint:
        host = inst.public_address if self.ssh_address == "public" else inst.private_address
        if host is None:
            raise InstanceNotReady(
                f"instance {inst.instance_id} ({inst.slot}) has no {self.ssh_address} address "
                "yet; call wait() first",
                instance=inst.instance_id,
                slot=inst.slot,
            )
        return Endpoint(
            instance_id=inst.instance_id,
            slot=inst.slot,
            host=host,
            port=inst.ssh_port,
            session_user=self.cloud.session_user,
            denied_hint=self.cloud.denied_hint,
        )

    def _connection(self, inst: Instance, user: str) -> Connection:
        if not inst.ready:
            raise InstanceNotReady(
                f"instance {inst.instance_id} ({inst.slot}) is not ready: call wait() before "
                "running commands or moving files",
                instance=inst.instance_id,
                slot=inst.slot,
            )
        if self.login_user == "root" or user == self.login_user:
            # The seed's way: a login as the user itself (root, or `wf` given root's keys).
            return self._pool.connection(self._endpoint(inst), self._login(user))
        return self._pool.connection(
            self._endpoint(inst), self._login(self.login_user), become=user
        )

    @contextlib.contextmanager
    def _reaching(self, inst: Instance) -> Iterator[None]:
        """An instance that cannot be reached is asked after at its cloud: one the cloud
        ended (a spot reclaim, a crash, gc from another terminal) is said to be gone, and
        stays so for later calls."""
        self._check_not_ended(inst)
        if inst.stopped is not None:
            self._check_started_again(inst)
        try:
            yield
        except InstanceUnreachable as exc:
            if isinstance(exc, LoginRefused):
                raise
            said = self._ask_if_gone([inst]) if inst.gone is None else {}
            why = inst.gone or said.get(inst.instance_id)
            if why is None:
                raise
            raise InstanceUnreachable(
                f"{exc}; {why}", instance=inst.instance_id, slot=inst.slot
            ) from exc

    def _ask_if_gone(self, instances: builtins.list[Instance]) -> dict[str, str]:
        """What the cloud says of the instances it does not call running, by id (nothing
        when it cannot say). One it says ended is marked gone for good; one it does not
        list is only said to be: a listing can lag, and the next call asks again."""
        try:
            found = {
                d.instance_id: d for d in self.cloud.describe([i.instance_id for i in instances])
            }
        except CloudError:
            return {}
        said: dict[str, str] = {}
        for inst in instances:
            described = found.get(inst.instance_id)
            if described is None:
                said[inst.instance_id] = (
                    "its cloud does not list the instance: it may be gone with all that ran "
                    "on it (provision another to go on)"
                )
                continue
            if described.state in ("pending", "running"):
                continue
            inst.state, inst.state_reason = described.state, described.state_reason
            reason = f" ({inst.state_reason})" if inst.state_reason else ""
            if inst.state in ENDED_FOR_GOOD:
                inst.gone = said[inst.instance_id] = (
                    f"the cloud says the instance is {inst.state}{reason}: it is gone with all "
                    "that ran on it; provision another to go on"
                )
            else:  # stopped (a spot stop, the console): it may be started again
                inst.stopped = said[inst.instance_id] = (
                    f"the cloud says the instance is {inst.state}{reason}: what ran on it has "
                    "ended; start it again at the cloud and call wait(), or provision another "
                    "to go on"
                )
                inst.ready = False
                self._pool.drop(inst.instance_id)  # its sessions died with it
        return said

    def _check_started_again(self, inst: Instance) -> None:
        """A call on an instance that stopped after it was ready: asked after again, since
        it may have been started at the cloud since — then ``wait()`` is what it needs."""
        said = self._ask_if_gone([inst])
        why = inst.gone or said.get(inst.instance_id)
        if why is not None:
            raise self._unreachable(inst, why)
        raise InstanceNotReady(
            f"instance {inst.instance_id} ({inst.slot}) was stopped at its cloud and has been "
            "started again: call wait() to have it answer again, then go on",
            instance=inst.instance_id,
            slot=inst.slot,
        )

    def _login(self, user: str) -> str:
        return self.cloud.ssh_user(user)

    # -- provisioning -----------------------------------------------------------------------

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
        if session.playback is None:
            self.cloud.check_capacity(count)
        args = {
            "image_id": image_id,
            "instance_type": instance_type,
            "count": count,
            "tags": user_tags,
        }
        if session.playback is not None:
            return self._played("provision", args)  # type: ignore[no-any-return]
        with self._call("provision", args) as call:
            with self._lock:
                self._provisions += 1
                k = self._provisions
            requests = [
                LaunchRequest(
                    run=self.run_id or "",
                    exp=self.exp,
                    slot=f"{self.exp}.p{k}.{index}",
                    image_id=image_id,
                    instance_type=instance_type,
                    tags=tuple(user_tags),
                )
                for index in range(count)
            ]
            started: builtins.list[Instance] = []
            failed = threading.Event()

            def launch(request: LaunchRequest) -> Instance | None:
                if failed.is_set() or session.signal_held:
                    return None  # the provision is failing or stopping: start no more
                try:
                    return self._launch(call, request, user_tags, started)
                except BaseException:
                    failed.set()
                    raise

            try:
                # Launches overlap where the cloud takes them so (an EC2 API answers each
                # in a second or so: a hundred in turn took minutes); the whole is shielded
                # so that a signal waits for those under way, then ends them all below.
                with session.shielded("launching instances"):
                    outcomes = fan_out(
                        launch, requests, parallel=True, workers=self.cloud.launch_workers
                    )
                for _, error in outcomes:
                    if error is not None:
                        raise error
            except BaseException:
                # A partly failed provision leaves nothing running.
                if started:
                    self._terminate(started, call.number)
                raise
            with self._lock:  # in slot order, as launched in turn
                self._instances.sort(key=lambda inst: slot_order(inst.slot))
            call.result = [inst.instance_id for inst, _ in outcomes if inst is not None]

    def _launch(
        self,
        call: _Call,
        request: LaunchRequest,
        user_tags: builtins.list[str],
        started: builtins.list[Instance],
    ) -> Instance:
        """Launch one instance, known to this experiment (and in ``started``) before its
        launch is recorded."""
        # Shielded until the instance is known: a Ctrl-C in the middle of the launch request
        # would leave an instance running that nothing terminates. Known before it is
        # recorded: should the record refuse the event, the instance is still terminated
        # by the provision, not left running unseen.
        with self._lock:
            # Closing (another thread, or the end of the script): what this launch would
            # start, nothing would deprovision.
            self._check_open("provision")
            self._launching += 1
        try:
            with session.shielded("launching an instance"):
                inst = self._launched(self.cloud.launch(request), request, user_tags)
                with self._lock:
                    self._instances.append(inst)
                    started.append(inst)
                self._append(
                    InstanceLaunched(
                        call=call.number,
                        exp=self.exp,
                        slot=request.slot,
                        instance_id=inst.instance_id,
                        image_id=request.image_id,
                        instance_type=request.instance_type,
                        tags=list(inst.tags),
                        image_digest=inst.image_digest,
                    )
                )
        finally:
            with self._lock:
                self._launching -= 1
                self._launches_ended.notify_all()
        return inst

    @staticmethod
    def _launched(
        described: CloudInstance, request: LaunchRequest, user_tags: builtins.list[str]
    ) -> Instance:
        inst = Instance(
            slot=request.slot,
            instance_id=described.instance_id,
            image_id=request.image_id,
            instance_type=request.instance_type,
            tags=["precip", described.instance_id, request.slot, *user_tags],
            image_digest=described.image_digest,
            request=request,
        )
        inst.update(described)
        return inst

    @_secrets_hidden
    def wait(self, tags: Sequence[str] | None = None, timeout: float | None = 600) -> None:
        """Block until the matching instances run and accept ssh; raise on timeout
        (``timeout=None`` waits as long as it takes; 0 checks once)."""
        tags = arguments.tags(tags)
        timeout = arguments.seconds("timeout", timeout, optional=True, zero=True)
        self._check_open("wait")
        if session.playback is not None:
            return self._played("wait", {"tags": tags, "timeout": timeout})  # type: ignore[no-any-return]
        with self._call("wait", {"tags": tags, "timeout": timeout}) as call:
            matched = self._match(tags)
            self._check_still_there([inst for inst in matched if inst.ready], len(matched))
            targets = [inst for inst in matched if not inst.ready]
            deadline = time.monotonic() + (math.inf if timeout is None else timeout)
            board = StateBoard(self.cloud, [inst.instance_id for inst in targets])
            outcomes = fan_out(
                lambda inst: self._await_ready(inst, deadline, call.number, board),
                targets,
                parallel=True,
                workers=self.max_workers,
            )
            late = [
                (inst, error) for inst, (_, error) in zip(targets, outcomes, strict=True) if error
            ]
            if late:
                for _, error in late:
                    if not isinstance(error, WaitTimeout | InstanceError | CloudError):
                        raise error
                if len(late) == 1 and not isinstance(late[0][1], WaitTimeout):
                    raise late[0][1]  # a cloud's refusal, with its code: no timeout to report
                details = "; ".join(f"{inst.slot} {inst.instance_id}: {err}" for inst, err in late)
                within = f" within {timeout} s" if timeout is not None else ""
                raise WaitTimeout(
                    f"{len(late)} of {len(targets)} instances were not ready{within}: {details}",
                    late=[inst.instance_id for inst, _ in late],
                )
            call.result = [inst.instance_id for inst in targets]

    def _check_still_there(self, ready: builtins.list[Instance], of: int) -> None:
        """Ready once is not ready now: an instance that ended since (a crash, a spot
        reclaim) will never answer again, and ``wait()`` must not return as if it would."""
        if ready:
            self._ask_if_gone([inst for inst in ready if inst.gone is None])
        gone = [inst for inst in ready if inst.gone is not None]
        if gone:
            raise InstanceUnreachable(
                f"{len(gone)} of {of} instances ended after they were ready, and "
                "wait() cannot bring them back: "
                + "; ".join(f"{i.slot} {i.instance_id}: {i.gone}" for i in gone),
                instance=gone[0].instance_id,
                slot=gone[0].slot,
            )

    def _await_ready(self, inst: Instance, deadline: float, call: int, board: StateBoard) -> None:
        # Threads of the script may wait for the same instance at once: one of them waits,
        # the others see it ready (or, if it gives up, take over) — it is ready once.
        try:
            left = deadline - time.monotonic()
            if not inst.awaited.acquire(timeout=-1 if left == math.inf else max(0.0, left)):
                raise WaitTimeout(
                    "not ready (another wait() of the script is still waiting for it)",
                    late=[inst.instance_id],
                )
            try:
                if not inst.ready:
                    self._await_ready_on(inst, deadline, call, board)
            finally:
                inst.awaited.release()
        finally:
            board.forget(inst.instance_id)

    def _await_ready_on(
        self, inst: Instance, deadline: float, call: int, board: StateBoard
    ) -> None:
        delay = 0.02
        last: Exception | None = None
        attempt_deadline = self._attempt_deadline(deadline)
        watched = inst.instance_id
        refused_since: float | None = None  # since when sshd has refused the key, unbroken
        while True:
            self._check_not_ended(inst)
            if inst.instance_id != watched:  # replaced: ask about the new one only
                board.forget(watched)
                watched, refused_since = inst.instance_id, None
            described = board.describe(inst.instance_id)
            if described is not None:
                inst.update(described)
                inst.listed = True
            elif inst.listed:  # listed before, unknown now: the cloud deleted it
                inst.state, inst.state_reason = "terminated", "its cloud no longer lists it"
            if inst.stopped is not None:
                # Ready before: what it holds is the script's, so it is waited for, never
                # replaced — unless it ended for good while stopped.
                if inst.state in ENDED_FOR_GOOD:
                    reason = f" ({inst.state_reason})" if inst.state_reason else ""
                    inst.gone = (
                        f"it stopped after it was ready, then the cloud says it is {inst.state}"
                        f"{reason}: it is gone with all that ran on it; provision another to go on"
                    )
                    raise self._unreachable(inst, inst.gone)
            elif inst.state in ENDED_WHILE_BOOTING:
                self._replace_ended(inst, call)
                attempt_deadline, delay = self._attempt_deadline(deadline), 0.02
                continue
            if inst.state == "running":
                try:
                    self._ensure_address(inst)
                    login = self._login(self.login_user)
                    conn = self._pool.connection(self._endpoint(inst), login)
                    facts = self._facts(conn, inst, self.login_user)
                    sudo = self._sudo_refused(conn, inst)
                    if sudo is None:
                        break
                    # cloud-init may install the key before the sudoers line: a while
                    # to settle, as for a refused key.
                    last = sudo
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since > LOGIN_GRACE:
                        raise sudo
                except (HostKeyChanged, UnsupportedUser):
                    raise
                except LoginRefused as exc:
                    last = exc
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since > LOGIN_GRACE:
                        raise self._refuses_login(inst) from exc
                except (InstanceError, OSError) as exc:
                    last, refused_since = exc, None
            now = time.monotonic()
            why = f"last attempt: {last}" if last else f"state {inst.state}"
            if inst.stopped is not None and inst.state != "running":
                why = f"the cloud says it is {inst.state} since it was ready: start it again there"
            # The instance may yet be replaced when it did not boot in time — never one
            # that was ready before: what it holds is the script's.
            replaceable = attempt_deadline < deadline and inst.stopped is None
            if replaceable and now >= attempt_deadline:
                if self._replaced(inst, call, why, "an instance that did not boot"):
                    attempt_deadline, delay = self._attempt_deadline(deadline), 0.02
                    continue
                # Out of tries: an instance that never booted only costs money.
                late = inst.instance_id
                self._terminate([inst], call)
                raise WaitTimeout(
                    f"did not boot within {self.boot_timeout} s in {inst.tries} tries, "
                    f"terminated ({why})",
                    late=[late],
                ) from last
            if now >= deadline:
                raise WaitTimeout(f"not ready ({why})", late=[inst.instance_id]) from last
            # Never past a deadline: the last look comes at it, not a second before.
            time.sleep(min(delay, (attempt_deadline if replaceable else deadline) - now))
            delay = min(delay * 2, 1.0)
        pinned = self._pool.pins.get(inst.instance_id)
        inst.host_key = fingerprint(pinned) if pinned is not None else None
        inst.ready, inst.stopped = True, None
        self._append(
            InstanceReady(
                slot=inst.slot,
                instance_id=inst.instance_id,
                public_address=inst.public_address,
                private_address=inst.private_address,
                public_hostname=inst.public_hostname,
                private_hostname=inst.private_hostname,
                host_key=inst.host_key,
                facts=facts,
            )
        )

    def _replaced(self, inst: Instance, call: int, why: str, what: str) -> bool:
        """Replace ``inst`` — ``what`` it is, for the log — while it has tries left; its slot
        stays. Shielded: a Ctrl-C while the replacement is launched would let the main
        thread deprovision the old id and leave the new one running."""
        if inst.tries >= self.boot_max_tries:
            return False
        # Taking turns with terminations: one deprovisioned meanwhile (by another thread,
        # or at exit) is not replaced by an instance nothing would ever terminate.
        with session.shielded(f"replacing {what}"), self._terminating:
            self._check_not_ended(inst)
            self._replace(inst, call, why=why)
        return True

    @staticmethod
    def _check_not_ended(inst: Instance) -> None:
        """Stop waiting for an instance that will never be ready: this experiment is
        terminating it, or its cloud ended it after it was ready."""
        if inst.gone is not None:
            raise Experiment._unreachable(inst, inst.gone)

    @staticmethod
    def _unreachable(inst: Instance, why: str) -> InstanceUnreachable:
        return InstanceUnreachable(
            f"instance {inst.instance_id} ({inst.slot}): {why}",
            instance=inst.instance_id,
            slot=inst.slot,
        )

    def _attempt_deadline(self, deadline: float) -> float:
        if self.boot_timeout is None:
            return deadline
        return min(deadline, time.monotonic() + self.boot_timeout)

    def _ensure_address(self, inst: Instance) -> None:
        """Give an instance without a public address a floating one, where the cloud can."""
        if self.ssh_address != "public" or inst.public_address is not None:
            return
        assign = getattr(self.cloud, "assign_public_address", None)
        if assign is None:
            return
        inst.public_address = assign(inst.instance_id, run=self.run_id or "", slot=inst.slot)
        inst.floating_address = inst.public_address
        inst.public_hostname = inst.public_hostname or inst.public_address

    def _replace(self, inst: Instance, call: int, *, why: str) -> None:
        assert inst.request is not None
        old = inst.instance_id
        log.warning(
            "instance did not boot in time: replacing it",
            slot=inst.slot,
            instance=old,
            attempt=inst.tries,
            why=why,
        )
        self._append(InstanceTerminating(slot=inst.slot, instance_id=old, call=call))
        self._pool.drop(old)
        self.cloud.terminate([old])
        self._append(InstanceTerminated(slot=inst.slot, instance_id=old, call=call))
        described = self.cloud.launch(inst.request)
        inst.instance_id = described.instance_id
        inst.tags = [described.instance_id if tag == old else tag for tag in inst.tags]
        inst.tries += 1
        inst.listed = False
        inst.public_address = inst.private_address = inst.floating_address = None
        inst.update(described)
        self._append(
            InstanceLaunched(
                call=call,
                exp=self.exp,
                slot=inst.slot,
                instance_id=inst.instance_id,
                image_id=inst.image_id,
                instance_type=inst.instance_type,
                tags=list(inst.tags),
                image_digest=described.image_digest,
            )
        )

    @_secrets_hidden
    def open_port(self, port: int, protocol: str = "tcp", cidr: str = "0.0.0.0/0") -> None:
        """Open ``protocol``/``port`` to ``cidr`` for the experiment's instances (what the seed
        told users to do by hand in the cloud's console). Local instances need nothing."""
        port = arguments.port(port)
        protocol = arguments.one_of("protocol", protocol, arguments.PROTOCOLS)
        cidr = arguments.cidr(cidr)
        self._check_open("open_port")
        args = {"port": port, "protocol": protocol, "cidr": cidr}
        if session.playback is not None:
            return self._played("open_port", args)  # type: ignore[no-any-return]
        with self._call("open_port", args) as call:
            opener = getattr(self.cloud, "open_port", None)
            call.result = opener(port, protocol, cidr) if opener is not None else []

    def _replace_ended(self, inst: Instance, call: int) -> None:
        """Replace an instance the cloud (or something else) ended or stopped while it
        booted — waiting cannot help: no call starts a stopped instance again, and
        terminating it ends its disk's cost — or, out of tries, terminate it and raise."""
        stopped = "" if inst.state in ("terminated", "shutting-down") else "stopped: "
        why = f"it ended while it booted: {stopped}{inst.state_reason or inst.state}"
        if self._replaced(inst, call, why, "an instance that ended while it booted"):
            return
        ended = inst.instance_id
        self._terminate([inst], call)  # the record says it is gone; gc need not ask
        raise CloudError(
            f"instance {ended} ({inst.slot}): {why}"
            + (f" ({inst.tries} tries)" if inst.tries > 1 else "")
        )

    def _refuses_login(self, inst: Instance) -> UnsupportedUser:
        login = self._login(self.login_user)
        pair = getattr(self.cloud, "key_name", None) or self.keys.key_name
        if self.login_user == "root":
            why = f"sshd's PermitRootLogin, or nothing installs the key pair {pair!r}"
            other = (
                "; or, for an image that lets another account in with sudo (ubuntu, "
                "ec2-user …), login_user= names it"
            )
        else:
            why = f"no user {login!r} there, or nothing installs the key pair {pair!r} for it"
            other = f" (its default user, if not {login!r}: ubuntu, ec2-user, debian …)"
        return UnsupportedUser(
            f"instance {inst.instance_id} ({inst.slot}) answers ssh but has refused the key "
            f"for {login} for {LOGIN_GRACE:.0f} s: its image lets no such login with a key "
            f"({why}). A new instance of it would refuse too: use an image that allows it"
            f"{other}",
            instance=inst.instance_id,
            slot=inst.slot,
        )

    @staticmethod
    def _facts(conn: Connection, inst: Instance, user: str) -> dict[str, Any]:
        result = conn.exec(_FACTS_CMD, timeout=30)
        said = (result.stdout + result.stderr).decode("utf-8", "replace")
        refused = _LOGIN_REFUSED.search(said) if b"uname=" not in result.stdout else None
        if refused is not None:
            raise UnsupportedUser(
                f"instance {inst.instance_id} ({inst.slot}) lets {user} log in but runs no "
                f"command for it: its image says {said.strip().splitlines()[0]!r}. Log in as "
                f"that user: login_user={refused.group(1)!r} (calls as {user} then go through "
                "its sudo), or use an image that allows it (cloud-init user data "
                "disable_root: false)",
                instance=inst.instance_id,
                slot=inst.slot,
            )
        facts: dict[str, Any] = {}
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key in ("cpus", "memory_kb"):
                facts[key] = int(value) if value.strip().isdigit() else None
            elif key:
                facts[key] = value
        return facts

    def _sudo_refused(self, conn: Connection, inst: Instance) -> UnsupportedUser | None:
        """With a login other than root, calls as root (the seed's default) go through its
        sudo: why it would fail each of them (it asks for a password), or None."""
        if self.login_user == "root":
            return None
        result = conn.exec("sudo -n true", timeout=30)
        if result.exit_code != 0:
            said = result.stderr.decode("utf-8", "replace").strip() or f"exit {result.exit_code}"
            return UnsupportedUser(
                f"instance {inst.instance_id} ({inst.slot}) lets {self.login_user} log in, "
                f"but {self.login_user} cannot use sudo without a password ({said}): calls "
                "as any other user (root, the seed's default) need it. Use an image whose "
                f"{self.login_user} has passwordless sudo, as cloud images' default user does",
                instance=inst.instance_id,
                slot=inst.slot,
            )
        return None

    @_secrets_hidden
    def deprovision(self, tags: Sequence[str] | None = None) -> None:
        """Terminate the matching instances."""
        tags = arguments.tags(tags)
        if session.playback is not None:
            return self._played("deprovision", {"tags": tags})  # type: ignore[no-any-return]
        with session.shielded(), self._call("deprovision", {"tags": tags}) as call:
            targets = self._match(tags)
            self._terminate(targets, call.number)
            call.result = [inst.instance_id for inst in targets]

    def _terminate(self, targets: builtins.list[Instance], call: int) -> None:
        # One termination at a time: threads of the script deprovisioning at once end each
        # instance once, and each returns when what it asked for has ended.
        with session.shielded(), self._terminating:  # a Ctrl-C must not stop it half-way
            with self._lock:
                targets = [inst for inst in targets if inst in self._instances]
            self._terminate_unshielded(targets, call)

    def _terminate_unshielded(self, targets: builtins.list[Instance], call: int) -> None:
        # Termination is the one side effect that goes ahead when its intent cannot be
        # recorded (a full disk): a running instance costs money, a gap in the record is
        # said out loud (the error is raised once the instances are gone).
        refused: RecordError | None = None

        def record(payload: Payload) -> None:
            nonlocal refused
            if refused is None:
                try:
                    self._append(payload)
                except RecordError as exc:
                    refused = exc

        known = [inst.gone for inst in targets]
        for inst in targets:
            record(InstanceTerminating(slot=inst.slot, instance_id=inst.instance_id, call=call))
            # Before its connections drop: a thread of the script's own still using one
            # must learn why it broke, not that the cloud no longer knows the instance.
            inst.gone = inst.gone or f"this experiment terminated it (deprovision, call #{call})"
            self._pool.drop(inst.instance_id)
        if targets:
            try:
                self.cloud.terminate([inst.instance_id for inst in targets])
            except BaseException:
                for inst, gone in zip(targets, known, strict=True):
                    inst.gone = gone  # not terminated after all
                raise
        for inst in targets:
            inst.state = "terminated"
            inst.ready = False
            record(InstanceTerminated(slot=inst.slot, instance_id=inst.instance_id, call=call))
        with self._lock:
            self._instances = [i for i in self._instances if i not in targets]
        if refused is not None:
            log.error(
                "instances terminated; the record could not say so",
                exp=self.exp, instances=[i.instance_id for i in targets], error=str(refused),
            )  # fmt: skip
            raise refused

    # -- listing ----------------------------------------------------------------------------

    @property
    def slots(self) -> dict[str, dict[str, Any]]:
        """The live instances by slot (id, addresses, hostnames), without recording a call:
        for tools such as replay that need what ``list()`` knows without adding a step."""
        with self._lock:
            return {
                inst.slot: {
                    **inst.as_dict(),
                    "public_hostname": inst.public_hostname,
                    "private_hostname": inst.private_hostname,
                }
                for inst in self._instances
            }

    @_secrets_hidden
    def list(self, tags: Sequence[str] | None = None) -> builtins.list[dict[str, Any]]:
        """The matching instances as dicts (``id``, addresses, ``tags``, ``slot`` …)."""
        tags = arguments.tags(tags)
        if session.playback is not None:
            return self._played("list", {"tags": tags})  # type: ignore[no-any-return]
        with self._call("list", {"tags": tags}) as call:
            result = [inst.as_dict() for inst in self._match(tags)]
            call.result = result
            return result

    @_secrets_hidden
    def get_public_hostnames(self, tags: Sequence[str] | None = None) -> builtins.list[str | None]:
        return self._hostnames("public", tags)

    @_secrets_hidden
    def get_private_hostnames(self, tags: Sequence[str] | None = None) -> builtins.list[str | None]:
        return self._hostnames("private", tags)

    def _hostnames(self, which: str, tags: Sequence[str] | None) -> builtins.list[str | None]:
        method, tags = f"get_{which}_hostnames", arguments.tags(tags)
        if session.playback is not None:
            return self._played(method, {"tags": tags})  # type: ignore[no-any-return]
        with self._call(method, {"tags": tags}) as call:
            result = [getattr(inst, f"{which}_hostname") for inst in self._match(tags)]
            call.result = result
            return result

    # -- commands ---------------------------------------------------------------------------

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
    ) -> tuple[builtins.list[int | None], builtins.list[str], builtins.list[str]]:
        """Run ``cmd`` on the matching instances; ``(exit_codes, stdouts, stderrs)``."""
        tags = arguments.tags(tags)
        cmd = arguments.command(cmd)
        user = arguments.text("user", user)
        timeout = arguments.seconds("timeout", timeout, optional=True)
        self._check_open("run")
        args = {
            "tags": tags,
            "cmd": cmd,
            "user": user,
            "check_exit_code": check_exit_code,
            "timeout": timeout,
        }
        if session.playback is not None:
            return self._played("run", args)  # type: ignore[no-any-return]
        with self._call("run", args) as call:
            results = self._run_on(
                call, self._targets(tags, "run"), cmd, user, check_exit_code, timeout, parallel
            )
            call.result = {"exit_codes": [r.exit_code for _, r in results]}
            return self._unpack(results)

    def _run_on(
        self,
        call: _Call,
        targets: builtins.list[Instance],
        cmd: str,
        user: str,
        check_exit_code: bool,
        timeout: float | None,
        parallel: bool | None,
        *,
        command_for: Callable[[Instance], str] | None = None,
    ) -> builtins.list[tuple[Instance, ExecResult]]:
        _check_command(cmd)
        fan = self.parallel if parallel is None else parallel

        def one(inst: Instance) -> ExecResult:
            actual = command_for(inst) if command_for else cmd
            return self._exec(call, inst, actual, user, timeout)

        outcomes: builtins.list[tuple[ExecResult | None, BaseException | None]] = []
        if fan:
            outcomes = fan_out(one, targets, parallel=True, workers=self.max_workers)
        else:
            for inst in targets:
                try:
                    result = one(inst)
                except Exception as exc:
                    outcomes.append((None, exc))
                    break
                outcomes.append((result, None))
                if check_exit_code and result.exit_code != 0:
                    break  # the seed stops at the first failure when running in turn
        failed = {
            inst.instance_id: outcome.exit_code
            for inst, (outcome, _) in zip(targets, outcomes, strict=False)
            if check_exit_code and outcome is not None and outcome.exit_code != 0
        }
        done: builtins.list[tuple[Instance, ExecResult]] = []
        for inst, (outcome, error) in zip(targets, outcomes, strict=False):
            if error is not None:
                raise error
            assert outcome is not None
            result = outcome
            if result.timed_out:
                fate = (
                    "could not be ended there: it may still be running until the instance "
                    "is deprovisioned"
                    if result.still_running
                    else "was ended, with everything it started there"
                )
                shown = shown_command(session.redactor.text(cmd))
                raise CommandTimeout(
                    f"{shown} on instance {inst.instance_id} ({inst.slot}) ran past its "
                    f"timeout of {timeout} s and {fate}",
                    instance=inst.instance_id,
                    slot=inst.slot,
                )
            if check_exit_code and result.exit_code != 0:
                tail = result.stderr.decode("utf-8", "replace")[-STDERR_TAIL:]
                exited = (
                    f"exited {result.exit_code}"
                    if result.exit_code not in (None, NO_EXIT_STATUS)
                    else f"ended without an exit status ({NO_EXIT_STATUS}: killed by a signal, "
                    "or its session was ended)"
                )
                # In parallel every instance ran: say which others failed too.
                others = [
                    f"{other.instance_id} ({other.slot}) exited {failed[other.instance_id]}"
                    for other in targets
                    if other is not inst and other.instance_id in failed
                ]
                also = f"; {len(others)} more failed too: {', '.join(others)}" if others else ""
                shown = shown_command(session.redactor.text(cmd))
                raise CommandFailed(
                    f"{shown} {exited} on instance {inst.instance_id} "
                    f"({inst.slot}); stderr ends: {tail.strip() or '(empty)'}{also}",
                    instance=inst.instance_id,
                    slot=inst.slot,
                    cmd=cmd,
                    exit_code=result.exit_code if result.exit_code is not None else -1,
                    stderr_tail=tail,
                    failed=failed,
                )
            done.append((inst, result))
        return done

    def _exec(
        self, call: _Call, inst: Instance, cmd: str, user: str, timeout: float | None
    ) -> ExecResult:
        with self._reaching(inst):
            result = self._connection(inst, user).exec(cmd, timeout=timeout)
        finished = CommandFinished(
            call=call.number,
            slot=inst.slot,
            instance_id=inst.instance_id,
            user=user,
            cmd=session.redactor.text(cmd),
            exit_code=result.exit_code,
            stdout=self._output(result.stdout),
            stderr=self._output(result.stderr),
            duration_ns=result.duration_ns,
        )
        self._append(finished)
        self.last_commands[inst.slot] = finished
        return result

    @staticmethod
    def _unpack(
        results: builtins.list[tuple[Instance, ExecResult]],
    ) -> tuple[builtins.list[int | None], builtins.list[str], builtins.list[str]]:
        return (
            [r.exit_code for _, r in results],
            [r.stdout.decode("utf-8", "replace") for _, r in results],
            [r.stderr.decode("utf-8", "replace") for _, r in results],
        )

    # -- files ------------------------------------------------------------------------------

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
        args = {
            "tags": tags,
            "local_path": str(local_path),
            "remote_path": remote_path,
            "user": user,
        }
        if session.playback is not None:
            return self._played("put", args)  # type: ignore[no-any-return]
        with self._call("put", args) as call:
            local = self._local_file(local_path)
            targets = self._targets(tags, "put")
            fan = self.parallel if parallel is None else parallel
            # To several instances the file is stored once, and each transfer only hashed
            # against it: a copy of it per instance written to disk and scanned cost a
            # third of a fan-out's speed.
            kept = self._keep_local(local) if len(targets) > 1 else None
            outcomes = fan_out(
                lambda inst: self._put_one(call, inst, local, remote_path, user, kept=kept),
                targets,
                parallel=fan,
                workers=self.max_workers,
            )
            for _, error in outcomes:
                if error is not None:
                    raise error
            call.result = [inst.instance_id for inst in targets]

    def _local_file(self, local_path: str | Path) -> Path:
        local = Path(local_path).expanduser()  # `~/data.csv` is what a shell would send
        if local.is_dir():
            raise LocalFileMissing(
                f"local path {local} is a directory, not a file; nothing was copied (put and "
                "copy_and_run send one file: pack a directory with tar first)",
                path=local,
            )
        kind = special_kind(local.stat().st_mode) if local.exists() else None
        if kind is not None:
            raise LocalFileMissing(
                f"local path {local} is a {kind}, not a file: reading it may never end; "
                "nothing was copied (put and copy_and_run send one regular file)",
                path=local,
            )
        if not local.is_file():
            raise LocalFileMissing(
                f"local file {local} does not exist (cwd {Path.cwd()}); nothing was copied",
                path=local,
            )
        return local

    def _put_one(
        self,
        call: _Call,
        inst: Instance,
        local: Path,
        remote: str,
        user: str,
        *,
        temporary: bool = False,
        kept: BlobRef | None = None,
    ) -> None:
        if kept is None:
            mode, content = self._recorded_transfer(
                inst,
                user,
                lambda conn, on_chunk: conn.put(local, remote, on_chunk=on_chunk),
                f"the file {local} (put)",
            )
        else:
            mode, content = self._checked_transfer(inst, user, local, remote, kept)
        if content is None:
            return
        self._append(
            FilePut(
                call=call.number,
                slot=inst.slot,
                instance_id=inst.instance_id,
                user=user,
                local_path=str(local),
                remote_path=remote,
                mode=mode,
                content=content,
                temporary=temporary,
            )
        )

    def _recorded_transfer(
        self,
        inst: Instance,
        user: str,
        transfer: Callable[[Connection, Sink | None], int],
        what: str,
    ) -> tuple[int, BlobRef | None]:
        """Run ``transfer`` on a connection to ``inst`` (given where to send each chunk; it
        returns the file's mode) and, when recording, keep what moved as a blob: hashed,
        scanned for secrets and written on a thread of its own while the transfer runs."""
        with self._reaching(inst):
            conn = self._connection(inst, user)
            return self._kept(lambda on_chunk: transfer(conn, on_chunk), what)

    def _keep_local(self, local: Path) -> BlobRef | None:
        """Store a local file (scanned for secrets, as any file moved): None when not
        recording."""

        def read(on_chunk: Sink | None) -> int:
            with local.open("rb") as f:
                while on_chunk is not None and (chunk := f.read(CHUNK)):
                    on_chunk(chunk)
            return 0

        return self._kept(read, f"the file {local} (put)")[1]

    def _checked_transfer(
        self, inst: Instance, user: str, local: Path, remote: str, kept: BlobRef
    ) -> tuple[int, BlobRef]:
        """Send ``local``, hashing what is sent: the stored ``kept`` when it matches, else
        the hash of bytes that were not kept (the file changed as it was sent)."""
        sent = hashlib.sha256()
        size = 0

        def count(chunk: bytes) -> None:
            nonlocal size
            sent.update(chunk)
            size += len(chunk)

        with self._reaching(inst):
            mode = self._connection(inst, user).put(local, remote, on_chunk=count)
        if sent.hexdigest() == kept.sha256:
            return mode, kept
        log.warning("the file changed while it was sent: these bytes are kept by hash only",
                    path=str(local), instance=inst.instance_id, slot=inst.slot)  # fmt: skip
        return mode, BlobRef(sha256=sent.hexdigest(), size=size, withheld=CHANGED_WHILE_SENT)

    def _kept(
        self, transfer: Callable[[Sink | None], int], what: str
    ) -> tuple[int, BlobRef | None]:
        sink = self._file_sink()
        if sink is None:
            return transfer(None), None
        scanner = session.redactor.scanner()

        def consume(chunk: bytes) -> None:
            sink.write(chunk)
            if scanner is not None:
                scanner.feed(chunk)

        writer = BackgroundWriter(consume)
        try:
            mode = transfer(writer.write)
            writer.close()
            assert self._run is not None
            return mode, self._run.seal(sink, scanner, what)
        finally:
            with contextlib.suppress(BaseException):
                writer.close()
            if not sink.committed:
                sink.discard()

    @_secrets_hidden
    def get(
        self,
        tags: Sequence[str] | str,
        remote_path: str,
        local_path: str | Path,
        user: str = "root",
        *,
        parallel: bool | None = None,
    ) -> None:
        """Copy ``remote_path`` from the matching instances to ``local_path`` (with
        ``.<instance id>`` appended unless exactly one instance matched)."""
        tags = arguments.tags(tags)
        remote_path = arguments.text("remote_path", remote_path)
        local_path = arguments.path("local_path", local_path)
        user = arguments.text("user", user)
        self._check_open("get")
        args = {
            "tags": tags,
            "remote_path": remote_path,
            "local_path": str(local_path),
            "user": user,
        }
        if session.playback is not None:
            return self._played("get", args)  # type: ignore[no-any-return]
        with self._call("get", args) as call:
            targets = self._targets(tags, "get")
            base = Path(local_path).expanduser()  # `~/results/out` as a shell has it
            inside = base / PurePosixPath(remote_path).name
            if base.is_dir():
                # Not left to each transfer: with several instances the seed's ".<id>"
                # files would land beside the directory, where nobody looks for them.
                raise TransferFailed(
                    f"cannot write {base} on this machine: it is a directory (name the file to "
                    f"write: {inside}; with several instances, .<instance id> is appended)"
                )
            if local_path.endswith(os.sep):
                what = "is not a directory" if base.exists() else "does not exist"
                raise LocalFileMissing(
                    f"local directory {base} {what}; create it before get(), and name the file "
                    f"to write in it ({inside})",
                    path=base,
                )
            if not base.parent.is_dir():
                raise LocalFileMissing(
                    f"local directory {base.parent} does not exist; create it before get()",
                    path=base.parent,
                )
            single = len(targets) == 1

            def one(inst: Instance) -> str:
                local = base if single else base.with_name(f"{base.name}.{inst.instance_id}")
                self._get_one(call, inst, remote_path, local, user)
                return str(local)

            fan = self.parallel if parallel is None else parallel
            outcomes = fan_out(one, targets, parallel=fan, workers=self.max_workers)
            for _, error in outcomes:
                if error is not None:
                    raise error
            call.result = [path for path, _ in outcomes]

    def _get_one(self, call: _Call, inst: Instance, remote: str, local: Path, user: str) -> None:
        # Gets to one local path take turns, each recorded before the next writes: the
        # last file.got of a path describes what is on disk (two threads getting at once
        # left one file there and recorded the other's hash last).
        with _LOCAL_PATHS.held(str(local.resolve())):
            mode, content = self._recorded_transfer(
                inst,
                user,
                lambda conn, on_chunk: conn.get(remote, local, on_chunk=on_chunk),
                f"the file {remote} (got)",
            )
            if content is None:
                return
            self._append(
                FileGot(
                    call=call.number,
                    slot=inst.slot,
                    instance_id=inst.instance_id,
                    user=user,
                    local_path=str(local),
                    remote_path=remote,
                    mode=mode,
                    content=content,
                )
            )

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
    ) -> tuple[builtins.list[int | None], builtins.list[str], builtins.list[str]]:
        """Copy a script to a temporary path, run it with shell-quoted ``args``, remove it."""
        tags = arguments.tags(tags)
        local_script = arguments.path("local_script", local_script)
        script_args = arguments.script_args(args)
        user = arguments.text("user", user)
        timeout = arguments.seconds("timeout", timeout, optional=True)
        self._check_open("copy_and_run")
        call_args = {
            "tags": tags,
            "local_script": str(local_script),
            "args": script_args,
            "user": user,
            "check_exit_code": check_exit_code,
            "timeout": timeout,
        }
        if session.playback is not None:
            return self._played("copy_and_run", call_args)  # type: ignore[no-any-return]
        with self._call("copy_and_run", call_args) as call:
            script = self._local_file(local_script)
            _check_line_endings(script)
            targets = self._targets(tags, "copy_and_run")
            remote = temp_script_path()
            quoted = " ".join(shlex.quote(arg) for arg in script_args)
            cmd = f"{shlex.quote(remote)} {quoted}".strip()
            fan = self.parallel if parallel is None else parallel

            def put_one(inst: Instance) -> None:
                self._put_one(call, inst, script, remote, user, temporary=True)
                self._connection(inst, user).chmod(remote, 0o755)

            try:
                for _, error in fan_out(put_one, targets, parallel=fan, workers=self.max_workers):
                    if error is not None:
                        raise error
                results = self._run_on(call, targets, cmd, user, check_exit_code, timeout, parallel)
            finally:
                for inst in targets:
                    with contextlib.suppress(Exception):
                        self._connection(inst, user).remove(remote)
            call.result = {"exit_codes": [r.exit_code for _, r in results]}
            return self._unpack(results)

    # -- lifetime ---------------------------------------------------------------------------

    @_secrets_hidden
    def close(self) -> None:
        """Deprovision everything this experiment still has running; close connections.

        In a forked child (the end of a ``with`` block the fork inherited) it does nothing:
        the instances are the parent's."""
        if os.getpid() != self._pid:
            return
        if session.playback is not None:
            self._close_played()
            return
        with self._lock:
            if self._closed:
                return
            self._closing = True
            # Launches under way (a thread of the script provisioning) end first: what they
            # start is deprovisioned with the rest, not left running after the close.
            if not self._launches_ended.wait_for(
                lambda: self._launching == 0, timeout=LAUNCHES_WAIT
            ):
                log.error(
                    "launches still under way after the wait: what they start may be left "
                    "running; run `precip-repro gc`",
                    exp=self.exp, waited_s=LAUNCHES_WAIT,
                )  # fmt: skip
            live = [inst for inst in self._instances if inst.state != "terminated"]
        with session.shielded():
            try:
                if live:
                    self.deprovision([])
            except BaseException as exc:
                self._terminate_after_failure(exc)
                raise
            finally:
                with self._lock:
                    self._closed = True
                self._pool.close()
                self.cloud.close()
                session.unregister(self)

    def _close_played(self) -> None:
        # In playback no instance exists to tell whether closing deprovisioned when the run
        # was recorded; the recording tells: its next call is that deprovision, or not.
        with self._lock:
            if self._closed:
                return
            self._closed = True
        assert session.playback is not None
        if session.playback.is_next(self.exp, "deprovision", {"tags": []}):
            self.deprovision([])

    def _terminate_after_failure(self, cause: BaseException) -> None:
        # Deprovisioning failed — the record refused its intent, the cloud erred, a signal
        # came: what still runs costs money, so it is terminated now, recorded if the
        # record takes it (gc finds such instances gone if not).
        with self._lock:
            left = [inst for inst in self._instances if inst.state != "terminated"]
        if not left:
            return
        ids = [inst.instance_id for inst in left]
        log.error("deprovisioning failed; terminating what is left", exp=self.exp,
                  instances=ids, error=str(cause))  # fmt: skip
        try:
            self._terminate(left, self.last_call or 0)
        except RecordError:
            pass  # terminated all the same; _terminate said what the record lacks
        except Exception as exc:
            log.error(
                "terminating failed too: run `precip-repro gc`", instances=ids, error=str(exc)
            )

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
