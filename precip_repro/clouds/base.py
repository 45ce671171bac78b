"""The small interface every cloud implements; the Experiment is written once above it.

A cloud acts and reports; it never writes events — the Experiment records what it did.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from precip_repro.exceptions import CloudError
from precip_repro.keys import Keys
from precip_repro.logs import get_logger

__all__ = [
    "Capability",
    "Cloud",
    "CloudInfo",
    "CloudInstance",
    "FloatingAddress",
    "LaunchRequest",
    "RunInstance",
    "credential_fingerprint",
]


def credential_fingerprint(identity: str) -> str:
    """What the record keeps of an access key id, a user or a credential id: enough to
    tell two apart, no more."""
    return "sha256:" + hashlib.sha256(identity.encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class CloudInfo:
    """Where an experiment runs. Never credentials: only a fingerprint of the access key id
    (or, on OpenStack, of the user or application-credential id)."""

    kind: str
    endpoint: str | None = None
    """The API's URL (OpenStack: Keystone's auth URL)."""
    region: str | None = None
    access_key_fingerprint: str | None = None
    project: str | None = None
    """The OpenStack project (name, or id where only that is known); None elsewhere."""
    profile: str | None = None
    """The AWS profile the credentials came from; None for keys given or the environment."""

    def as_record(self) -> dict[str, str | None]:
        """As ``experiment.created`` keeps it: every field, None included — but a project
        and a profile only where there is one (records before them never had those keys)."""
        record = attrs.asdict(self)
        for key in ("project", "profile"):
            if record[key] is None:
                del record[key]
        return record


class Capability(enum.Enum):
    """What a cloud can do beyond create, describe and terminate. Every cloud has the
    operations below; one that lacks the capability answers them with a defined no-op or a
    :class:`CloudError`, so that callers ask ``Capability.X in cloud.capabilities`` instead
    of probing for methods."""

    FLOATING_ADDRESSES = "floating addresses"  # assign_public_address(); released at terminate
    OPEN_PORT = "open port"  # open_port() changes what reaches the instances
    KEY_PAIRS = "key pairs"  # key_name: the cloud installs a registered key pair
    RUN_LISTING = "run listing"  # run_instances(): instances tagged with a run, for gc
    ANY_LOGIN_USER = "any login user"  # ssh_users() is None: any account the image has


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


@attrs.frozen(kw_only=True)
class RunInstance:
    """An instance a cloud lists as launched for a run (:attr:`Capability.RUN_LISTING`)."""

    instance: CloudInstance
    run: str | None
    """The run it was launched for, as the cloud keeps it: ``""`` for an unrecorded
    experiment's, None where the cloud lost it."""
    slot: str | None
    owner_alive: bool | None = None
    """Whether the process that launched it still runs; None where the cloud cannot tell
    (any machine may have launched it): then only its run's state in a store says whether
    anything will still end it."""
    started_ns: int | None = None
    """When it was launched (ns since the epoch), where the cloud knows."""


@attrs.frozen(kw_only=True)
class FloatingAddress:
    """A floating (elastic) address a precip run allocated."""

    handle: str
    """Its allocation id, or the address where the cloud gives none: what releases it."""
    address: str
    instance_id: str | None
    """The instance it is associated with, if any."""
    tags: dict[str, str]


class Cloud(Protocol):
    """Create, describe, terminate; and the set-up they need (keys, security group).

    What a cloud can do beyond that it declares in :attr:`capabilities`; the operations of
    a capability it lacks are still there, each saying what it does without it."""

    kind: str
    capabilities: frozenset[Capability]
    launch_workers: int
    """How many :meth:`launch` calls may run at once."""
    session_user: str | None
    """Whom every session runs as inside an instance, whatever account logs in (an
    ordinary user's local cloud: root); None when it is the account that logs in."""
    denied_hint: str | None
    """Said with a transfer an instance refused for want of permission, where this cloud
    knows a reason the user would not guess."""
    key_name: str | None
    """The registered key pair the cloud installs in its instances
    (:attr:`Capability.KEY_PAIRS`; known once :meth:`prepare` has run); None where the
    cloud installs the key itself and no pair is involved."""

    def info(self) -> CloudInfo:
        """Where this cloud is, for the record: never credentials."""
        ...

    def prepare(self, keys: Keys) -> None:
        """Make sure instances will accept ``keys`` (import key pair, security group …)."""
        ...

    def launch(self, request: LaunchRequest) -> CloudInstance:
        """Start one instance; return at once (it may still be booting)."""
        ...

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        """What the cloud says about those of ``instance_ids`` it knows (those of
        :meth:`run_instances` included); one it does not list is gone."""
        ...

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """End the instances and wait until they are gone: also those of the cloud's
        :meth:`run_instances` that another process launched (gc ends them)."""
        ...

    def ssh_user(self, user: str) -> str:
        """The account to log in as for ``user`` (or :class:`UnsupportedUser`)."""
        ...

    def ssh_users(self) -> frozenset[str] | None:
        """Users the instances can log in; None when any user the instance has
        (:attr:`Capability.ANY_LOGIN_USER`)."""
        ...

    def check_capacity(self, count: int) -> None:
        """Raise :class:`CloudError` at once when this cloud knows it cannot start ``count``
        more instances (nothing is started or recorded); where it does not know, its own
        quotas refuse the launch that goes past them."""
        ...

    def assign_public_address(
        self, instance_id: str, *, run: str = "", slot: str = ""
    ) -> str | None:
        """Give an instance a floating address and return it; :meth:`terminate` releases
        it (:attr:`Capability.FLOATING_ADDRESSES`). ``run`` and ``slot`` tag it for gc.
        Without the capability: None, and nothing changes (its instances have the
        addresses they were started with)."""
        ...

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        """Let ``protocol``/``port`` in from ``cidr`` to the instances; return what was
        changed (EC2: the ids of the security groups), left so after the run
        (:attr:`Capability.OPEN_PORT`). Without the capability: ``[]``, and nothing
        changes — nothing stands between the instances and that traffic for this cloud to
        open."""
        ...

    def holds(self, recorded: CloudInfo) -> bool:
        """Whether instances an experiment recorded as started on ``recorded`` (its
        :class:`CloudInfo`) are this cloud's to describe and terminate: gc asks it about
        them."""
        ...

    def run_instances(self) -> list[RunInstance]:
        """Every instance on this cloud launched for a run — whichever process, and
        whichever of this cloud's objects, launched it — with the run it was tagged with
        (:attr:`Capability.RUN_LISTING`). Without the capability: ``[]``."""
        ...

    def run_addresses(self) -> list[FloatingAddress]:
        """Every floating address on this cloud tagged with a run; ``[]`` without
        :attr:`Capability.FLOATING_ADDRESSES`, or where the cloud tags none."""
        ...

    def release_address(self, handle: str) -> None:
        """Release a floating address (its :attr:`FloatingAddress.handle`). Without
        :attr:`Capability.FLOATING_ADDRESSES`: :class:`CloudError` (the cloud has none)."""
        ...

    def close(self) -> None: ...


_log = get_logger(__name__)


def end_ghosts(
    cloud: Cloud,
    request: LaunchRequest,
    failure: CloudError,
    find: Callable[[], list[str]],
    *,
    what: str,
    gc_cloud: str,
) -> None:
    """End what a failed launch started anyway — an answer lost on the way back leaves a
    machine running that no id names — found by ``find`` (by its run and slot). When the
    cloud cannot be asked, say which ``gc --cloud`` finds it once it answers."""
    try:
        ghosts = find()
        if ghosts:
            _log.warning(
                f"the launch failed, yet the cloud started the {what}: ending it",
                slot=request.slot,
                instances=ghosts,
                error=failure.code,
            )
            cloud.terminate(ghosts)
    except CloudError as exc:
        _log.warning(
            f"the launch failed, and the cloud could not be asked whether it started the "
            f"{what} anyway: once it answers, run `precip-repro gc --cloud {gc_cloud}`",
            slot=request.slot,
            error=str(exc),
        )
