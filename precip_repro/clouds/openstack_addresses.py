"""Floating IPs of an OpenStack cloud: allocated from an external network for a server
that has no address reachable from here, released when it is deleted — and, should the
process that allocated one die first, found by gc through the run its description names."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from precip_repro.clouds.base import FloatingAddress
from precip_repro.clouds.openstack_client import OpenStackClient
from precip_repro.exceptions import CloudError
from precip_repro.logs import get_logger

__all__ = ["FloatingIPs", "describe_floating", "parse_description"]

log = get_logger(__name__)

_PREFIX: Final = "precip:"


def describe_floating(run: str, slot: str, server_id: str) -> str:
    """What a floating IP's description says (Neutron takes it in the creating request;
    tags would take a request each)."""
    return f"precip:run={run} precip:slot={slot} precip:server={server_id}"


def parse_description(description: str | None) -> dict[str, str]:
    """The ``precip:…`` fields of a description made by :func:`describe_floating`."""
    fields: dict[str, str] = {}
    for word in (description or "").split():
        key, sep, value = word.partition("=")
        if sep and key.startswith(_PREFIX):
            fields[key] = value
    return fields


class FloatingIPs:
    """The floating IPs one cloud object allocated, by server. ``network`` gives the id of
    the external network to take them from (resolved when first needed)."""

    def __init__(self, api: OpenStackClient, network: Callable[[], str]) -> None:
        self._api = api
        self._network = network
        self._lock = threading.Lock()
        self._allocated: dict[str, str] = {}

    def assign(self, server_id: str, *, run: str, slot: str) -> str:
        """Allocate a floating IP on the server's port and return its address."""
        network = self._api.conn.network
        external = self._network()
        ports = self._api.call("ListPorts", lambda: list(network.ports(device_id=server_id)))
        if not ports:
            raise CloudError(
                f"server {server_id} on {self._api.where} has no port to give a floating "
                "address to (is it still booting, or deleted?)",
                code="PortNotFound",
            )
        try:
            fip = self._api.call(
                "CreateFloatingIP",
                network.create_ip,
                floating_network_id=external,
                port_id=ports[0].id,
                description=describe_floating(run, slot, server_id),
            )
        except CloudError as exc:
            if exc.code == "IpAddressGenerationFailure":
                raise CloudError(
                    f"no free floating IP on the external network of {self._api.where} for "
                    f"server {server_id} ({slot}): release unused ones (`openstack floating "
                    "ip list`), name another network with floating_network=, or reach the "
                    "servers at their fixed addresses with ssh_address='private'",
                    code="NoFreeFloatingIP",
                ) from None
            if exc.code == "QuotaExceeded":
                raise CloudError(
                    f"floating IP quota exceeded on {self._api.where} for server {server_id} "
                    f"({slot}): {exc}",
                    code="QuotaExceeded",
                ) from None
            raise
        with self._lock:
            self._allocated[server_id] = fip.id
        address: str = fip.floating_ip_address
        log.info("floating address associated", instance=server_id, address=address)
        return address

    def release_of(self, server_ids: Sequence[str]) -> None:
        """Release the floating IPs allocated for ``server_ids`` (deleted by now) — by this
        object, or by another process (their description names the server)."""
        wanted = set(server_ids)
        with self._lock:
            handles = {self._allocated.pop(s) for s in server_ids if s in self._allocated}
        handles |= {
            fip.id for fip, fields in self._tagged() if fields.get("precip:server") in wanted
        }
        for handle in handles:
            self.release(handle)

    def release(self, handle: str) -> None:
        network = self._api.conn.network
        self._api.call("DeleteFloatingIP", network.delete_ip, handle, ignore_missing=True)

    def _tagged(self) -> list[tuple[Any, dict[str, str]]]:
        """The project's floating IPs allocated for a run, with their description's fields."""
        network = self._api.conn.network
        query: dict[str, Any] = {}
        if self._api.project_id:
            query["project_id"] = self._api.project_id
        found = self._api.call("ListFloatingIPs", lambda: list(network.ips(**query)))
        tagged = [(fip, parse_description(fip.description)) for fip in found]
        return [(fip, fields) for fip, fields in tagged if "precip:run" in fields]

    def of_runs(self) -> list[FloatingAddress]:
        """Every floating IP of the project allocated for a run."""
        return [
            FloatingAddress(
                handle=fip.id,
                address=fip.floating_ip_address,
                instance_id=fields.get("precip:server") if fip.port_id else None,
                tags={k: v for k, v in fields.items() if k != "precip:server"},
            )
            for fip, fields in self._tagged()
        ]
