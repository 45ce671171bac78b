"""OpenStack through its native APIs — Keystone, Nova, Neutron, Glance — with openstacksdk:
the research clouds of today (Chameleon, Jetstream2, university and national clouds).

- :mod:`precip_repro.clouds.openstack_client`: the SDK connection from ``clouds.yaml`` or the
  ``OS_*`` environment, and its errors as :class:`CloudError`;
- :mod:`precip_repro.clouds.openstack_setup`: the key pair, the ``precip`` security group,
  and the image, flavor and network names resolved;
- :mod:`precip_repro.clouds.openstack_addresses`: floating IPs;
- here, :class:`OpenStackCloud`: servers — created, described, deleted — behind the
  :class:`~precip_repro.clouds.base.Cloud` interface.

Its kind is ``openstack-native``: ``openstack`` names the EC2 API of OpenStack in existing
records and commands (Nova's own EC2 API, removed in Mitaka), and keeps meaning it.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import attrs

from precip_repro.clouds.base import (
    Capability,
    CloudInfo,
    CloudInstance,
    FloatingAddress,
    LaunchRequest,
    RunInstance,
    end_ghosts,
)
from precip_repro.clouds.openstack_addresses import FloatingIPs
from precip_repro.clouds.openstack_client import CloudConfig, OpenStackClient, load_config
from precip_repro.clouds.openstack_setup import (
    Names,
    ensure_key_pair,
    ensure_security_group,
    open_port,
    resolve_groups,
)
from precip_repro.exceptions import CloudError
from precip_repro.keys import Keys
from precip_repro.logs import get_logger

__all__ = ["KIND", "OpenStackCloud", "server_metadata", "server_name"]

log = get_logger(__name__)

KIND: Final = "openstack-native"
LAUNCH_WORKERS: Final = 8
"""Server creations in flight at once for one provision (Nova answers each in about a
second; its API takes many more at once)."""
TERMINATE_TIMEOUT: Final = 600.0
_METADATA_KEY: Final = re.compile(r"[a-zA-Z0-9-_:. ]{1,255}")
"""What Nova takes as a metadata key (its API schema): other tags stay the experiment's."""
MAX_USER_TAGS: Final = 100
"""Nova's default ``maxServerMeta`` is 128: the user's tags and ours stay below."""
CAPABILITIES: Final = frozenset(
    {
        Capability.FLOATING_ADDRESSES,
        Capability.OPEN_PORT,
        Capability.KEY_PAIRS,
        Capability.RUN_LISTING,
        Capability.ANY_LOGIN_USER,
    }
)
_STATES: Final = {
    "BUILD": "pending",
    "REBUILD": "pending",
    "REBOOT": "pending",
    "HARD_REBOOT": "pending",
    "ACTIVE": "running",
    "SHUTOFF": "stopped",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "PAUSED": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "DELETED": "terminated",
    "SOFT_DELETED": "terminated",
    "ERROR": "terminated",
}
"""Nova's server status → the state the experiment knows. A server in ERROR will never
boot: it is as good as ended (and is deleted with its slot's replacement)."""


def server_metadata(request: LaunchRequest) -> dict[str, str]:
    """A server's metadata: ours (``precip:run`` …) and the user's tags, each a key with
    value ``"1"`` as the seed had them, where Nova takes the key."""
    metadata = {
        "precip:run": request.run,
        "precip:exp": request.exp,
        "precip:slot": request.slot,
    }
    for tag in request.tags:
        if tag in metadata or tag.lower().startswith("precip:"):
            continue
        if not _METADATA_KEY.fullmatch(tag):
            log.warning(
                "tag left off the server's metadata (Nova takes letters, digits, space and "
                "-_:. up to 255): the experiment still matches it",
                tag=tag,
            )
            continue
        if len(metadata) < MAX_USER_TAGS:
            metadata[tag] = "1"
    return metadata


def server_name(name: str | None, slot: str) -> str:
    """A server's name, unique in its experiment: Nova makes its hostname of it (daemons
    name themselves by it), so ``precip-<name>-e1-p1-0`` — letters, digits and ``-``."""
    text = f"precip-{name}-{slot}" if name else f"precip-{slot}"
    return re.sub(r"[^a-zA-Z0-9-]+", "-", text).strip("-")[:63]


def _reachable(address: str) -> bool:
    """Whether a fixed address is reachable from anywhere (a provider network's public
    address): then no floating address is needed."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class _Connection:
    api: OpenStackClient
    names: Names
    addresses: FloatingIPs


class OpenStackCloud:
    """One OpenStack project in one region, reached as a ``clouds.yaml`` entry (or the
    ``OS_*`` environment when ``cloud`` is None)."""

    session_user: str | None = None
    denied_hint: str | None = None

    def __init__(
        self,
        *,
        cloud: str | None = None,
        region: str | None = None,
        network: str | None = None,
        floating_network: str | None = None,
        security_groups: Sequence[str] | None = None,
        key_name: str | None = None,
        reservation: str | None = None,
        name: str | None = None,
        config: CloudConfig | None = None,
    ) -> None:
        self.kind = KIND
        self.capabilities: frozenset[Capability] = CAPABILITIES
        self.launch_workers = LAUNCH_WORKERS
        self._cloud, self._region, self._config = cloud, region, config
        self.network = network
        self.floating_network = floating_network
        self.security_groups = list(security_groups) if security_groups else None
        self.key_name = key_name
        self.reservation = reservation
        self.name = name
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._network_id: str | None = None
        self._external_id: str | None = None
        self._group_ids: list[str] = []
        self._group_names: list[str] = []
        self._dns_names: dict[str, str | None] = {}
        """Server id → the DNS name Neutron gives it on its network, None where none."""

    @property
    def config(self) -> CloudConfig:
        """The cloud's settings, read when first needed: a script played back from its
        recording makes its experiments without the cloud, or its clouds.yaml."""
        if self._config is None:
            self._config = load_config(self._cloud, self._region)
        return self._config

    def _parts(self) -> _Connection:
        """The authenticated connection and what works through it, made on first use
        (wrong credentials are an error then: in :meth:`prepare`, before anything starts)."""
        with self._lock:
            if self._connection is None:
                api = OpenStackClient(self.config)
                self._connection = _Connection(
                    api=api,
                    names=Names(api),
                    addresses=FloatingIPs(api, self._external_network),
                )
            return self._connection

    @property
    def _api(self) -> OpenStackClient:
        return self._parts().api

    @property
    def _names(self) -> Names:
        return self._parts().names

    @property
    def _addresses(self) -> FloatingIPs:
        return self._parts().addresses

    def __repr__(self) -> str:
        where = self._connection.api.where if self._connection else self._cloud or "OS_*"
        return f"OpenStackCloud({where!r})"

    def secrets(self) -> dict[str, str]:
        """The credentials of its configuration, by the openrc variable each is named for:
        the experiment registers them, so that no output shows them."""
        return self.config.secrets()

    @property
    def conn(self) -> Any:
        """The openstacksdk connection (for what precip-repro does not wrap)."""
        return self._api.conn

    def info(self) -> CloudInfo:
        return CloudInfo(
            kind=self.kind,
            endpoint=self.config.auth_url,
            region=self.config.region_name,
            access_key_fingerprint=self._api.identity_fingerprint(),
            project=self._api.project,
        )

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, keys: Keys) -> None:
        """Key pair, security group and network, each checked or made now: a name the
        cloud lacks is an error before any server starts."""
        if self.key_name is None:
            self.key_name = keys.key_name
            ensure_key_pair(self._api, keys, keys.key_name, own=True)
        else:
            ensure_key_pair(self._api, keys, self.key_name, own=False)
        if self.security_groups is None:
            self._group_ids = [ensure_security_group(self._api)]
            self._group_names = ["precip"]
        else:
            self._group_ids = resolve_groups(self._api, self.security_groups)
            self._group_names = list(self.security_groups)
        self._network_id = self._names.network(self.network)
        if self.floating_network is not None:
            self._external_network()

    def _external_network(self) -> str:
        if self._external_id is None:
            self._external_id = self._names.external_network(self.floating_network)
        return self._external_id

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        return open_port(self._api, self._group_ids, port, protocol, cidr)

    def ssh_user(self, user: str) -> str:
        return user

    def ssh_users(self) -> frozenset[str] | None:
        return None

    def check_capacity(self, count: int) -> None:
        """Nova's limits say how many more servers the project may start: a provision past
        them is refused now, before any server starts."""
        limits = self._api.call("GetLimits", self._api.conn.compute.get_limits)
        absolute = limits.absolute
        most, used = absolute.instances, absolute.instances_used
        if most is None or most < 0 or used is None:
            return
        if used + count > most:
            raise CloudError(
                f"quota exceeded on {self._api.where}: the project may run {most} servers "
                f"and runs {used}, so {count} more cannot start; end some, or ask the "
                "cloud's operators for more",
                code="QuotaExceeded",
            )

    # -- servers --------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> CloudInstance:
        image_id, digest = self._names.image(request.image_id)
        flavor_id = self._names.flavor(request.instance_type)
        if self._network_id is None:
            self._network_id = self._names.network(self.network)
        params: dict[str, Any] = {
            "name": server_name(self.name, request.slot),
            "image_id": image_id,
            "flavor_id": flavor_id,
            "networks": [{"uuid": self._network_id}],
            "metadata": server_metadata(request),
        }
        if self.key_name:
            params["key_name"] = self.key_name
        if self._group_names:
            params["security_groups"] = [{"name": group} for group in self._group_names]
        if self.reservation:
            params["scheduler_hints"] = {"reservation": self.reservation}
        try:
            server = self._api.call("CreateServer", self._api.conn.compute.create_server, **params)
        except CloudError as exc:
            self._sweep(request, exc)
            raise
        return CloudInstance(
            instance_id=server.id,
            image_id=request.image_id,
            instance_type=request.instance_type,
            state="pending",
            image_digest=digest,
        )

    def _sweep(self, request: LaunchRequest, failure: CloudError) -> None:
        """Delete what a failed create started anyway (an answer lost on the way back),
        found by its run and slot metadata."""
        if not request.run or failure.code == "QuotaExceeded":
            return
        end_ghosts(
            self, request, failure,
            lambda: [
                run_instance.instance.instance_id
                for run_instance in self.run_instances()
                if (run_instance.run, run_instance.slot) == (request.run, request.slot)
            ],
            what="server",
            gc_cloud=f"{KIND}=…",
        )  # fmt: skip

    def _servers(self) -> list[Any]:
        compute = self._api.conn.compute
        return self._api.call("ListServers", lambda: list(compute.servers(details=True)))

    def _instance(self, server: Any) -> CloudInstance:
        status = str(server.status or "BUILD").upper()
        state = _STATES.get(status, status.lower())
        if server.task_state == "deleting":
            state = "shutting-down"
        fixed: str | None = None
        floating: str | None = None
        for entries in (server.addresses or {}).values():
            for entry in entries:
                if entry.get("version", 4) != 4:
                    continue
                if entry.get("OS-EXT-IPS:type") == "floating":
                    floating = floating or entry.get("addr")
                else:
                    fixed = fixed or entry.get("addr")
        public = floating or (fixed if fixed and _reachable(fixed) else None)
        reason = None
        if status == "ERROR":
            fault = (server.fault or {}).get("message") or "no fault message"
            reason = f"Nova put the server in ERROR: {fault}"
        image = server.image or {}
        flavor = server.flavor or {}
        return CloudInstance(
            instance_id=server.id,
            image_id=self._names.given_image(str(image.get("id") or "")),
            instance_type=str(flavor.get("original_name") or flavor.get("id") or ""),
            state=state,
            public_address=public,
            private_address=fixed,
            public_hostname=public,
            private_hostname=self._dns_names.get(server.id) or fixed,
            state_reason=reason,
        )

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        """The servers of ``instance_ids`` Nova lists: one request for them all (a server
        deleted is not listed)."""
        wanted = set(instance_ids)
        if not wanted:
            return []
        servers = [s for s in self._servers() if s.id in wanted]
        self._learn_dns_names([s.id for s in servers if str(s.status).upper() == "ACTIVE"])
        return [self._instance(s) for s in servers]

    def _learn_dns_names(self, server_ids: list[str]) -> None:
        """The DNS names Neutron's DNS integration gives the servers' ports (``dns_assignment``:
        their hostname in the network's domain, which the other servers resolve), asked once
        per server, all in one request."""
        unknown = {server_id for server_id in server_ids if server_id not in self._dns_names}
        if not unknown:
            return
        network = self._api.conn.network
        ports = self._api.call(
            "ListPorts", lambda: list(network.ports(device_owner="compute:nova"))
        )
        for port in ports:
            if port.device_id in unknown:
                assigned = port.dns_assignment or []
                fqdn = str(assigned[0].get("fqdn") or "").rstrip(".") if assigned else ""
                self._dns_names[port.device_id] = fqdn or None

    def run_instances(self) -> list[RunInstance]:
        """The project's servers whose metadata names a run."""
        out = []
        for server in self._servers():
            metadata = server.metadata or {}
            if "precip:run" in metadata and str(server.status).upper() not in ("DELETED",):
                out.append(
                    RunInstance(
                        instance=self._instance(server),
                        run=metadata.get("precip:run"),
                        slot=metadata.get("precip:slot"),
                    )
                )
        return out

    def holds(self, recorded: CloudInfo) -> bool:
        """Whether ``recorded`` names this cloud: the native kind, this auth URL and region."""
        return (
            recorded.kind == KIND
            and (recorded.endpoint or "").rstrip("/") == (self.config.auth_url or "")
            and (recorded.region or None) == self.config.region_name
        )

    def assign_public_address(self, instance_id: str, *, run: str = "", slot: str = "") -> str:
        """Allocate a floating IP from the external network for the server's port."""
        return self._addresses.assign(instance_id, run=run, slot=slot)

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Delete the servers, wait until Nova no longer lists them, and release their
        floating IPs."""
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return
        compute = self._api.conn.compute
        for server_id in ids:
            self._api.call("DeleteServer", compute.delete_server, server_id, ignore_missing=True)
        deadline = time.monotonic() + TERMINATE_TIMEOUT
        delay = 0.05
        while True:
            left = [inst.instance_id for inst in self.describe(ids)]  # ERROR ones too
            if not left:
                break
            if time.monotonic() > deadline:
                raise CloudError(
                    f"servers {', '.join(left)} on {self._api.where} were deleted but are "
                    f"still listed after {TERMINATE_TIMEOUT:.0f} s; check them in the "
                    "cloud's dashboard and run `precip-repro gc`"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        self._addresses.release_of(ids)

    def release_address(self, handle: str) -> None:
        self._addresses.release(handle)

    def run_addresses(self) -> list[FloatingAddress]:
        return self._addresses.of_runs()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.api.close()
