"""The small interface every cloud implements; the Experiment is written once above it.

A cloud acts and reports; it never writes events — the Experiment records what it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from precip_repro.keys import Keys
from precip_repro.record.events import CloudInfo

__all__ = ["Cloud", "CloudInstance", "LaunchRequest"]


@attrs.frozen(kw_only=True)
class LaunchRequest:
    """One instance to start."""

    run: str
    exp: str
    slot: str
    image_id: str
    instance_type: str
    tags: tuple[str, ...]


@attrs.frozen(kw_only=True)
class CloudInstance:
    """What the cloud says about one instance."""

    instance_id: str
    image_id: str
    instance_type: str
    state: str
    """``pending``, ``running``, ``terminated`` (or the cloud's own word for another)."""
    public_address: str | None = None
    private_address: str | None = None
    public_hostname: str | None = None
    private_hostname: str | None = None
    ssh_port: int = 22
    image_digest: str | None = None
    state_reason: str | None = None
    """Why the cloud ended it, where it says (EC2's ``StateReason``)."""


class Cloud(Protocol):
    """Create, describe, terminate; and the set-up they need (keys, security group)."""

    kind: str
    launch_workers: int
    """How many :meth:`launch` calls may run at once."""
    session_user: str | None
    """Whom every session runs as inside an instance, whatever account logs in (an
    ordinary user's local cloud: root); None when it is the account that logs in."""
    denied_hint: str | None
    """Said with a transfer an instance refused for want of permission, where this cloud
    knows a reason the user would not guess."""

    def info(self) -> CloudInfo:
        """Where this cloud is, for the record: never credentials."""
        ...

    def prepare(self, keys: Keys) -> None:
        """Make sure instances will accept ``keys`` (import key pair, security group …)."""
        ...

    def launch(self, request: LaunchRequest) -> CloudInstance:
        """Start one instance; return at once (it may still be booting)."""
        ...

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]: ...

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """End the instances and wait until they are gone."""
        ...

    def ssh_user(self, user: str) -> str:
        """The account to log in as for ``user`` (or :class:`UnsupportedUser`)."""
        ...

    def ssh_users(self) -> frozenset[str] | None:
        """Users the instances can log in; None when any user the instance has."""
        ...

    def check_capacity(self, count: int) -> None:
        """Raise :class:`CloudError` at once when this cloud knows it cannot start ``count``
        more instances (nothing is started or recorded); where it does not know, its own
        quotas refuse the launch that goes past them."""
        ...

    def close(self) -> None: ...
