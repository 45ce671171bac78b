"""Boot supervision: ``wait()`` until instances run and answer ssh — replacing one that
does not boot in time (while it has tries left), never one that was ready before — and
what is learnt on the way in: the host key pinned, the facts, a login or sudo refused."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any, Final

from precip_repro import progress
from precip_repro.clouds.base import Capability, Cloud
from precip_repro.clouds.board import StateBoard
from precip_repro.exceptions import (
    CloudError,
    HostKeyChanged,
    InstanceError,
    InstanceUnreachable,
    LoginRefused,
    UnsupportedUser,
    WaitTimeout,
)
from precip_repro.experiment.fanout import fan_out
from precip_repro.experiment.fleet import Fleet
from precip_repro.experiment.instance import Instance
from precip_repro.experiment.reach import ENDED_FOR_GOOD, Reacher, check_not_ended, unreachable
from precip_repro.experiment.recording import Call, Calls
from precip_repro.keys import Keys, fingerprint
from precip_repro.logs import get_logger
from precip_repro.record.events import (
    InstanceReady,
    InstanceTerminated,
    InstanceTerminating,
)
from precip_repro.session import Session
from precip_repro.ssh import Connection, SshPool

__all__ = ["Boot"]

log = get_logger(__name__)

LOGIN_GRACE: Final = 60.0
"""Seconds sshd may refuse the key, without a break, before wait() gives up on the instance
(no new one would do better): long enough for an image that starts sshd before it has
installed the key."""
ENDED_WHILE_BOOTING: Final = frozenset({"terminated", "shutting-down", "stopping", "stopped"})
"""States from which an instance wait() awaits will never become ready."""
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


def _progress(inst: Instance, state: str, detail: str, began: float) -> None:
    if progress.active():
        progress.emit(
            progress.InstanceProgress(
                slot=inst.slot,
                instance_id=inst.instance_id,
                state=state,
                detail=detail,
                elapsed_s=time.monotonic() - began,
            )
        )


class Boot:
    """Brings an experiment's instances to ready."""

    def __init__(
        self,
        *,
        exp: str,
        run_id: str,
        cloud: Cloud,
        pool: SshPool,
        keys: Keys,
        fleet: Fleet,
        reacher: Reacher,
        calls: Calls,
        session: Session,
        login_user: str,
        ssh_address: str,
        boot_timeout: float | None,
        boot_max_tries: int,
    ) -> None:
        self.exp = exp
        self.run_id = run_id
        self.cloud = cloud
        self.pool = pool
        self.keys = keys
        self.fleet = fleet
        self.reacher = reacher
        self.calls = calls
        self.session = session
        self.login_user = login_user
        self.ssh_address = ssh_address
        self.boot_timeout = boot_timeout
        self.boot_max_tries = boot_max_tries

    def wait(
        self, call: Call, tags: Sequence[str], timeout: float | None, *, workers: int
    ) -> list[str]:
        """Wait for the matching instances; the ids of those waited for."""
        matched = self.fleet.match(tags)
        self.check_still_there([inst for inst in matched if inst.ready], len(matched))
        targets = [inst for inst in matched if not inst.ready]
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        board = StateBoard(self.cloud, [inst.instance_id for inst in targets])
        outcomes = fan_out(
            lambda inst: self.await_ready(inst, deadline, call.number, board),
            targets,
            parallel=True,
            workers=workers,
        )
        late = [(inst, error) for inst, (_, error) in zip(targets, outcomes, strict=True) if error]
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
        return [inst.instance_id for inst in targets]

    def check_still_there(self, ready: list[Instance], of: int) -> None:
        """Ready once is not ready now: an instance that ended since (a crash, a spot
        reclaim) will never answer again, and ``wait()`` must not return as if it would."""
        if ready:
            self.reacher.ask_if_gone([inst for inst in ready if inst.gone is None])
        gone = [inst for inst in ready if inst.gone is not None]
        if gone:
            raise InstanceUnreachable(
                f"{len(gone)} of {of} instances ended after they were ready, and "
                "wait() cannot bring them back: "
                + "; ".join(f"{i.slot} {i.instance_id}: {i.gone}" for i in gone),
                instance=gone[0].instance_id,
                slot=gone[0].slot,
            )

    def await_ready(self, inst: Instance, deadline: float, call: int, board: StateBoard) -> None:
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
        began = time.monotonic()
        said: tuple[str, str] | None = None  # what progress last said of it
        _progress(inst, "waiting", f"state {inst.state}", began)
        refused_since: float | None = None  # since when sshd has refused the key, unbroken
        while True:
            check_not_ended(inst)
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
                    why = (
                        f"it stopped after it was ready, then the cloud says it is {inst.state}"
                        f"{reason}: it is gone with all that ran on it; provision another to go on"
                    )
                    inst.reachability = inst.reachability.going(why)
                    raise unreachable(inst, why)
            elif inst.state in ENDED_WHILE_BOOTING:
                self._replace_ended(inst, call)
                attempt_deadline, delay = self._attempt_deadline(deadline), 0.02
                continue
            if inst.state == "running":
                try:
                    self._ensure_address(inst)
                    login = self.reacher.login(self.login_user)
                    conn = self.pool.connection(self.reacher.endpoint(inst), login)
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
            if said != (inst.instance_id, why):
                said = (inst.instance_id, why)
                _progress(inst, "waiting", why, began)
            replaceable = attempt_deadline < deadline and inst.stopped is None
            if replaceable and now >= attempt_deadline:
                if self._replaced(inst, call, why, "an instance that did not boot"):
                    _progress(inst, "replaced", why, began)
                    attempt_deadline, delay = self._attempt_deadline(deadline), 0.02
                    continue
                # Out of tries: an instance that never booted only costs money.
                late = inst.instance_id
                _progress(inst, "failed", f"did not boot in {inst.tries} tries ({why})", began)
                self.fleet.terminate([inst], call)
                raise WaitTimeout(
                    f"did not boot within {self.boot_timeout} s in {inst.tries} tries, "
                    f"terminated ({why})",
                    late=[late],
                ) from last
            if now >= deadline:
                _progress(inst, "failed", f"not ready ({why})", began)
                raise WaitTimeout(f"not ready ({why})", late=[inst.instance_id]) from last
            # Never past a deadline: the last look comes at it, not a second before.
            time.sleep(min(delay, (attempt_deadline if replaceable else deadline) - now))
            delay = min(delay * 2, 1.0)
        pinned = self.pool.pins.get(inst.instance_id)
        inst.host_key = fingerprint(pinned) if pinned is not None else None
        inst.reachability = inst.reachability.became_ready()
        _progress(inst, "ready", "answers ssh", began)
        self.calls.append(
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
        with self.session.shielded(f"replacing {what}"), self.fleet.terminating:
            check_not_ended(inst)
            self._replace(inst, call, why=why)
        return True

    def _attempt_deadline(self, deadline: float) -> float:
        if self.boot_timeout is None:
            return deadline
        return min(deadline, time.monotonic() + self.boot_timeout)

    def _ensure_address(self, inst: Instance) -> None:
        """Give an instance without a public address a floating one, where the cloud can."""
        if self.ssh_address != "public" or inst.public_address is not None:
            return
        if Capability.FLOATING_ADDRESSES not in self.cloud.capabilities:
            return
        inst.public_address = self.cloud.assign_public_address(
            inst.instance_id, run=self.run_id, slot=inst.slot
        )
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
        self.calls.append(InstanceTerminating(slot=inst.slot, instance_id=old, call=call))
        self.pool.drop(old)
        self.cloud.terminate([old])
        self.calls.append(InstanceTerminated(slot=inst.slot, instance_id=old, call=call))
        described = self.cloud.launch(inst.request)
        inst.instance_id = described.instance_id
        inst.tags = [described.instance_id if tag == old else tag for tag in inst.tags]
        inst.tries += 1
        inst.listed = False
        inst.public_address = inst.private_address = inst.floating_address = None
        inst.update(described)
        self.fleet.record_launched(inst, call, image_digest=described.image_digest)

    def _replace_ended(self, inst: Instance, call: int) -> None:
        """Replace an instance the cloud (or something else) ended or stopped while it
        booted — waiting cannot help: no call starts a stopped instance again, and
        terminating it ends its disk's cost — or, out of tries, terminate it and raise."""
        stopped = "" if inst.state in ("terminated", "shutting-down") else "stopped: "
        why = f"it ended while it booted: {stopped}{inst.state_reason or inst.state}"
        if self._replaced(inst, call, why, "an instance that ended while it booted"):
            return
        ended = inst.instance_id
        self.fleet.terminate([inst], call)  # the record says it is gone; gc need not ask
        raise CloudError(
            f"instance {ended} ({inst.slot}): {why}"
            + (f" ({inst.tries} tries)" if inst.tries > 1 else "")
        )

    def _refuses_login(self, inst: Instance) -> UnsupportedUser:
        login = self.reacher.login(self.login_user)
        pair = self.cloud.key_name or self.keys.key_name
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
