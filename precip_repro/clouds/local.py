"""The embedded default cloud: each instance is a real OpenSSH ``sshd`` on its own loopback
address of the cloud's block, in namespaces of its own.

- :mod:`precip_repro.clouds.local_machine`: the machine — its set-up script, sshd and boot;
- :mod:`precip_repro.clouds.local_state`: the state files, where any process (gc's) finds
  instances whose recording process died, and ends them;
- :mod:`precip_repro.clouds.local_blocks`: the address blocks, one per cloud;
- :mod:`precip_repro.clouds.local_images`: images, directories layered over the host's tree;
- here, :class:`LocalCloud`, which puts them behind the :class:`~precip_repro.clouds.base.Cloud`
  interface (the names of the others are re-exported for their importers).

Its capabilities: :attr:`~Capability.RUN_LISTING` — its state files name every instance's
run, slot and launching process, so gc knows more than a cloud's tags tell —, and, run as
root, :attr:`~Capability.ANY_LOGIN_USER`. It has no floating addresses (every instance
has its address from its launch), no ports to open (nothing stands between the host and a
loopback address) and no key pairs (the key is written into each instance).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from precip_repro.clouds.base import (
    Capability,
    CloudInfo,
    CloudInstance,
    FloatingAddress,
    LaunchRequest,
    RunInstance,
)
from precip_repro.clouds.local_blocks import block_full, claim_block
from precip_repro.clouds.local_images import image_digest, image_problem, is_local_image
from precip_repro.clouds.local_machine import (
    await_init,
    check_host,
    last_words,
    pick_port,
    start_launcher,
    start_user_sshd,
    whoami,
    write_machine,
)
from precip_repro.clouds.local_state import (
    LocalInstanceState,
    find_local_instance,
    instances_dir,
    live_local_instances,
    start_time,
    terminate_local,
)
from precip_repro.exceptions import CloudError, UnsupportedUser
from precip_repro.keys import Keys, precip_home
from precip_repro.logs import get_logger

__all__ = [
    "LocalCloud",
    "LocalInstanceState",
    "image_digest",
    "image_problem",
    "is_local_image",
    "live_local_instances",
    "start_time",
    "terminate_local",
]

log = get_logger(__name__)

KIND: Final = "local"


class LocalCloud:
    """Instances as namespaced sshd processes on loopback addresses of one block.

    ``lists_only``: a cloud that lists, describes and ends the local instances under
    ``home`` whoever launched them (gc's), and starts none. It claims no address block: gc
    would keep one from the clouds that start instances, and create a home that is not
    there, for nothing.
    """

    kind = KIND
    launch_workers = 4
    """A launch mostly waits for its instance to boot: 40 took 2.5 s in turn, 1.3 s so."""
    key_name: str | None = None  # the key is written into each instance: no pair

    def __init__(
        self,
        *,
        address_block: str | None = None,
        home: Path | None = None,
        port: int | None = None,
        lists_only: bool = False,
    ) -> None:
        self.home = home or precip_home()
        self.root_mode = os.geteuid() == 0
        capabilities = {Capability.RUN_LISTING}
        if self.root_mode:  # an ordinary user's instances let root alone log in
            capabilities.add(Capability.ANY_LOGIN_USER)
        self.capabilities = frozenset(capabilities)
        self.cloud_id = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._sshd_procs: dict[str, subprocess.Popen[bytes]] = {}
        self._states: dict[str, LocalInstanceState] = {}
        self._keys: Keys | None = None
        self._checked = False
        self._port = port
        self._block: ipaddress.IPv4Network | None = None
        self._block_locks: list[int] = []
        if not lists_only:
            self._block, self._block_locks = claim_block(self.home, address_block)
        self._next_host = 2
        self._user = whoami()
        self.session_user = None if self.root_mode else "root"
        self.denied_hint = (
            None
            if self.root_mode
            else "root inside an ordinary user's local instance cannot change what belongs to "
            "host users it does not map, such as the host's own directories under /usr, /var "
            "and /opt: write under /tmp, /srv, /root, /etc or a new directory, or run the "
            "local cloud as root"
        )

    @property
    def block(self) -> ipaddress.IPv4Network:
        """The loopback addresses this cloud gives its instances."""
        if self._block is None:
            raise CloudError(
                "this local cloud only lists and ends instances (lists_only): it holds no "
                "address block and starts none"
            )
        return self._block

    # -- set-up --------------------------------------------------------------------------

    def info(self) -> CloudInfo:
        endpoint = str(self._block) if self._block is not None else None
        return CloudInfo(kind=KIND, endpoint=endpoint, region=None)

    def prepare(self, keys: Keys) -> None:
        self._keys = keys
        if self._checked:
            return
        check_host(root_mode=self.root_mode)
        self._checked = True

    def ssh_user(self, user: str) -> str:
        """The account to log in as for ``user`` inside an instance."""
        if self.root_mode:
            return user
        if user != "root":
            raise UnsupportedUser(
                f"this local cloud runs as the ordinary user {self._user!r}: every session is "
                f"root inside the instance, and logging in as {user!r} is not possible. "
                "Run as root for instances with users of their own"
            )
        return self._user

    def ssh_users(self) -> frozenset[str] | None:
        return None if self.root_mode else frozenset({"root"})

    def check_capacity(self, count: int) -> None:
        """Its block gives one address per instance for the whole run (terminated ones
        included): refuse at once what it has no addresses left for."""
        block = self.block
        with self._lock:
            free = max(0, block.num_addresses - 1 - self._next_host)
        if count > free:
            raise block_full(block, free)

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        """Nothing to open: every port of an instance's loopback address is reachable from
        this machine, and from nowhere else whatever is asked."""
        return []

    def assign_public_address(
        self, instance_id: str, *, run: str = "", slot: str = ""
    ) -> str | None:
        """None: an instance's address is the one it was launched on, for its whole life."""
        return None

    def run_addresses(self) -> list[FloatingAddress]:
        return []

    def release_address(self, handle: str) -> None:
        raise CloudError(
            f"the local cloud has no floating addresses: {handle!r} is none of its own"
        )

    # -- instances -----------------------------------------------------------------------

    def _next_address(self) -> str:
        block = self.block
        with self._lock:
            if self._next_host >= block.num_addresses - 1:
                raise block_full(block, 0)
            address = str(block.network_address + self._next_host)
            self._next_host += 1
            return address

    def launch(self, request: LaunchRequest) -> CloudInstance:
        if self._keys is None:
            raise CloudError("prepare() the local cloud before launching")
        image = None
        digest = None
        if request.image_id != "default":
            problem = image_problem(request.image_id)
            if problem is not None:
                raise CloudError(problem, code="InvalidAMIID.NotFound")
            image = Path(request.image_id).expanduser().resolve()
            digest = image_digest(image)
        instance_id = "i-" + secrets.token_hex(8)
        address = self._next_address()
        port = self._port or pick_port(address, 22 if self.root_mode else None)
        state_dir = instances_dir(self.home) / instance_id
        write_machine(
            state_dir,
            public_key=self._keys.public_key,
            address=address,
            port=port,
            root_mode=self.root_mode,
            user=self._user,
        )
        proc = start_launcher(
            state_dir, root_mode=self.root_mode, name=instance_id, image=image, address=address
        )
        state = LocalInstanceState(
            instance_id=instance_id,
            cloud_id=self.cloud_id,
            run=request.run,
            exp=request.exp,
            slot=request.slot,
            address=address,
            port=port,
            image_id=request.image_id,
            instance_type=request.instance_type,
            image_digest=digest,
            mode="root" if self.root_mode else "user",
            launcher_pid=proc.pid,
            launcher_start=start_time(proc.pid),
            started_ns=time.time_ns(),
            owner_pid=os.getpid(),
        )
        with self._lock:
            self._procs[instance_id] = proc
            self._states[instance_id] = state
        state.save(self.home)
        try:
            self._await_boot(state, proc)
        except BaseException:
            self.terminate([instance_id])
            raise
        return self._describe_one(state)

    def _await_boot(self, state: LocalInstanceState, proc: subprocess.Popen[bytes]) -> None:
        state_dir = state.path(self.home)
        init = await_init(proc, state_dir, instance_id=state.instance_id, slot=state.slot)
        state.init_pid, state.init_start = init, start_time(init)
        if not self.root_mode:
            sshd = start_user_sshd(state_dir, init)
            state.sshd_pid, state.sshd_start = sshd.pid, start_time(sshd.pid)
            with self._lock:
                self._sshd_procs[state.instance_id] = sshd
        state.save(self.home)
        log.debug("local instance started", instance=state.instance_id, address=state.address)

    def _describe_one(self, state: LocalInstanceState) -> CloudInstance:
        # The launcher outlives the namespace's init by a moment: a crashed instance
        # must not be described as running in between.
        running = (
            state.launcher_alive()
            and (state.init_pid is None or state.init_alive())
            and (state.mode == "root" or state.sshd_alive())
        )
        return CloudInstance(
            instance_id=state.instance_id,
            image_id=state.image_id,
            instance_type=state.instance_type,
            state="running" if running else "terminated",
            public_address=state.address,
            private_address=state.address,
            public_hostname=state.address,
            private_hostname=state.address,
            ssh_port=state.port,
            image_digest=state.image_digest,
            state_reason=None if running else last_words(state.path(self.home)),
        )

    def _others(self, instance_ids: Sequence[str]) -> list[LocalInstanceState]:
        """The states of those of ``instance_ids`` another cloud launched under this home.
        This cloud's own are known from memory alone: one it is terminating must not be
        described again from its state file, still there until its processes are gone."""
        with self._lock:
            ids = [i for i in instance_ids if i not in self._states]
        found = (find_local_instance(self.home, i) for i in ids)
        return [state for state in found if state is not None and state.cloud_id != self.cloud_id]

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        """This cloud's instances among ``instance_ids``, and another cloud's under the
        same home (another process's: gc asks about them)."""
        with self._lock:
            states = [self._states[i] for i in instance_ids if i in self._states]
        return [self._describe_one(state) for state in [*states, *self._others(instance_ids)]]

    def holds(self, recorded: CloudInfo) -> bool:
        """Every local instance recorded is looked for under this cloud's home: a record
        names its cloud by its address block, which other clouds have held since."""
        return recorded.kind == KIND

    def run_instances(self) -> list[RunInstance]:
        """Every local instance under this home whose processes still run, whoever launched
        it, and whether its launching process does."""
        return [
            RunInstance(
                instance=self._describe_one(state),
                run=state.run,
                slot=state.slot,
                owner_alive=state.owner_alive(),
                started_ns=state.started_ns or None,
            )
            for state in live_local_instances(self.home)
        ]

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for other in self._others(instance_ids):
            if other.live():
                terminate_local(other, self.home)
        for instance_id in instance_ids:
            with self._lock:
                state = self._states.pop(instance_id, None)
                proc = self._procs.pop(instance_id, None)
                sshd = self._sshd_procs.pop(instance_id, None)
            if state is None:
                continue
            terminate_local(state, self.home)
            for child in (proc, sshd):
                if child is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=10)

    def close(self) -> None:
        with self._lock:
            remaining = list(self._states)
        self.terminate(remaining)
        locks, self._block_locks = self._block_locks, []
        for fd in locks:
            os.close(fd)
