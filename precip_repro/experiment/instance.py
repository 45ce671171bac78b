"""One instance as an experiment knows it, and how far it can be reached."""

from __future__ import annotations

import builtins
import enum
import threading
from collections.abc import Sequence
from typing import Any

import attrs

from precip_repro.clouds.base import CloudInstance, LaunchRequest

__all__ = ["Instance", "Reach", "Reachability"]


class Reach(enum.Enum):
    """Where an instance stands for the calls that use it."""

    BOOTING = "booting"
    """Not ready yet: ``wait()`` has not seen it run and answer."""
    READY = "ready"
    """``wait()`` saw it run and answer ssh."""
    STOPPED = "stopped"
    """Its cloud stopped it after it was ready (a spot stop, the console): not ready until
    ``wait()`` finds it running and answering again — the same instance, its disk and host
    key kept, never replaced by a new one."""
    GONE = "gone"
    """Nothing reaches it again — its cloud says it ended, or this experiment is
    terminating it: calls on it fail at once saying so."""


@attrs.frozen
class Reachability:
    """One value for an instance's reachability: the state and why, for the states that
    have a reason (``STOPPED``, ``GONE``). ``before`` is what a ``GONE`` instance was when
    it went: gone after it was ready, ``wait()`` says it ended after it was ready; gone
    while stopped, that it cannot be waited for."""

    reach: Reach = Reach.BOOTING
    reason: str | None = None
    before: Reach | None = None

    @property
    def ready(self) -> bool:
        """Ready, or gone from ready (what ``wait()`` asks: was it ready last it knew)."""
        return self.reach is Reach.READY or (
            self.reach is Reach.GONE and self.before is Reach.READY
        )

    @property
    def gone(self) -> str | None:
        return self.reason if self.reach is Reach.GONE else None

    @property
    def stopped(self) -> str | None:
        return self.reason if self.reach is Reach.STOPPED else None

    def going(self, why: str) -> Reachability:
        """Gone for ``why`` (the first reason stays, if it was gone already)."""
        if self.reach is Reach.GONE:
            return self
        return Reachability(Reach.GONE, why, self.reach)

    def became_ready(self) -> Reachability:
        """Ready — unless it went meanwhile (terminated by another thread): gone stays."""
        return self if self.reach is Reach.GONE else Reachability(Reach.READY)

    def stopped_for(self, why: str) -> Reachability:
        """Stopped at its cloud — unless it went meanwhile: gone stays."""
        return self if self.reach is Reach.GONE else Reachability(Reach.STOPPED, why)

    def ended(self) -> Reachability:
        """Gone, and terminated: not even ready last it knew."""
        return Reachability(Reach.GONE, self.reason, None)


@attrs.define(kw_only=True, eq=False)
class Instance:
    """One instance as the experiment knows it."""

    slot: str
    instance_id: str
    image_id: str
    instance_type: str
    tags: builtins.list[str]
    state: str = "pending"
    """What its cloud last said (``pending``, ``running``, ``stopped``, ``terminated`` …)."""
    public_address: str | None = None
    private_address: str | None = None
    public_hostname: str | None = None
    private_hostname: str | None = None
    ssh_port: int = 22
    host_key: str | None = None
    reachability: Reachability = attrs.field(factory=Reachability)
    image_digest: str | None = None
    request: LaunchRequest | None = None
    tries: int = 1
    state_reason: str | None = None
    listed: bool = False
    """Whether the cloud has listed it yet: a new id may be unknown for a few seconds."""
    floating_address: str | None = None
    """The floating address we gave it: a description from before that lacks it must not
    take it away (and get it a second one)."""
    awaited: threading.Lock = attrs.field(factory=threading.Lock, repr=False)
    """Held by the one ``wait()`` that waits for it."""

    @property
    def ready(self) -> bool:
        return self.reachability.ready

    @property
    def gone(self) -> str | None:
        """Why nothing reaches this instance again, once that is so."""
        return self.reachability.gone

    @property
    def stopped(self) -> str | None:
        """What the cloud said when it stopped this instance after it was ready."""
        return self.reachability.stopped

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
