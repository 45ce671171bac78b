"""Reaching an instance: its ssh endpoint, a connection as a user, and — when it cannot be
reached — asking its cloud whether it ended or stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from precip_repro.clouds.base import Cloud
from precip_repro.exceptions import (
    CloudError,
    InstanceNotReady,
    InstanceUnreachable,
    LoginRefused,
    SessionNotOpened,
)
from precip_repro.experiment.instance import Instance
from precip_repro.ssh import Connection, Endpoint, ExecResult, SshPool

__all__ = ["ENDED_FOR_GOOD", "Reacher", "check_not_ended", "unreachable"]

ENDED_FOR_GOOD: Final = frozenset({"terminated", "shutting-down"})
"""States no instance comes back from (a stopped one can be started again)."""


def unreachable(inst: Instance, why: str) -> InstanceUnreachable:
    return InstanceUnreachable(
        f"instance {inst.instance_id} ({inst.slot}): {why}",
        instance=inst.instance_id,
        slot=inst.slot,
    )


def check_not_ended(inst: Instance) -> None:
    """Stop at an instance that will never be reached: this experiment is terminating it,
    or its cloud ended it after it was ready."""
    if inst.gone is not None:
        raise unreachable(inst, inst.gone)


class Reacher:
    """Connections to an experiment's instances, logged in as ``login_user`` (acting as
    another user through its sudo where that is asked for)."""

    def __init__(self, cloud: Cloud, pool: SshPool, *, login_user: str, ssh_address: str) -> None:
        self.cloud = cloud
        self.pool = pool
        self.login_user = login_user
        self.ssh_address = ssh_address

    def login(self, user: str) -> str:
        return self.cloud.ssh_user(user)

    def endpoint(self, inst: Instance) -> Endpoint:
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

    def connection(self, inst: Instance, user: str) -> Connection:
        if not inst.ready:
            raise InstanceNotReady(
                f"instance {inst.instance_id} ({inst.slot}) is not ready: call wait() before "
                "running commands or moving files",
                instance=inst.instance_id,
                slot=inst.slot,
            )
        if self.login_user == "root" or user == self.login_user:
            # The seed's way: a login as the user itself (root, or `wf` given root's keys).
            return self.pool.connection(self.endpoint(inst), self.login(user))
        return self.pool.connection(self.endpoint(inst), self.login(self.login_user), become=user)

    def exec(self, inst: Instance, user: str, cmd: str, *, timeout: float | None) -> ExecResult:
        """Run ``cmd`` over the pooled connection. One that took no session had died
        unnoticed (its sshd ended, or another now answers at the address): nothing ran, so
        a new connection is made once — and checks the host key again."""
        conn = self.connection(inst, user)
        try:
            return conn.exec(cmd, timeout=timeout)
        except SessionNotOpened:
            self.pool.discard(conn)
            return self.connection(inst, user).exec(cmd, timeout=timeout)

    @contextlib.contextmanager
    def reaching(self, inst: Instance) -> Iterator[None]:
        """An instance that cannot be reached is asked after at its cloud: one the cloud
        ended (a spot reclaim, a crash, gc from another terminal) is said to be gone, and
        stays so for later calls."""
        check_not_ended(inst)
        if inst.stopped is not None:
            self.check_started_again(inst)
        try:
            yield
        except InstanceUnreachable as exc:
            if isinstance(exc, LoginRefused):
                raise
            said = self.ask_if_gone([inst]) if inst.gone is None else {}
            why = inst.gone or said.get(inst.instance_id)
            if why is None:
                raise
            raise InstanceUnreachable(
                f"{exc}; {why}", instance=inst.instance_id, slot=inst.slot
            ) from exc

    def ask_if_gone(self, instances: list[Instance]) -> dict[str, str]:
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
                why = (
                    f"the cloud says the instance is {inst.state}{reason}: it is gone with all "
                    "that ran on it; provision another to go on"
                )
                inst.reachability = inst.reachability.going(why)
            else:  # stopped (a spot stop, the console): it may be started again
                why = (
                    f"the cloud says the instance is {inst.state}{reason}: what ran on it has "
                    "ended; start it again at the cloud and call wait(), or provision another "
                    "to go on"
                )
                inst.reachability = inst.reachability.stopped_for(why)
                self.pool.drop(inst.instance_id)  # its sessions died with it
            said[inst.instance_id] = why
        return said

    def check_started_again(self, inst: Instance) -> None:
        """A call on an instance that stopped after it was ready: asked after again, since
        it may have been started at the cloud since — then ``wait()`` is what it needs."""
        said = self.ask_if_gone([inst])
        why = inst.gone or said.get(inst.instance_id)
        if why is not None:
            raise unreachable(inst, why)
        raise InstanceNotReady(
            f"instance {inst.instance_id} ({inst.slot}) was stopped at its cloud and has been "
            "started again: call wait() to have it answer again, then go on",
            instance=inst.instance_id,
            slot=inst.slot,
        )
