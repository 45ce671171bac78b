"""Neutron of the test OpenStack endpoint (see :mod:`tests.openstack_api`): networks, ports,
security groups and their rules, floating IPs, as the network api-ref has them."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tests.openstack_http import Request, neutron_error, new_id, nova_error, now_iso

if TYPE_CHECKING:
    from tests.openstack_api import OpenStackAPI

DNS_DOMAIN = "openstacklocal"
"""Neutron's default ``dns_domain``."""


def hostname_of(name: str) -> str:
    """The hostname Nova makes of a server's name (letters, digits and ``-``, at most 63)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"


_PAGING = frozenset({"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"})


class Network:
    """Neutron v2.0: networks, ports, security groups and their rules, floating IPs."""

    name = "network"

    def __init__(
        self, api: OpenStackAPI, *, prefix: str, floating_pool: int, networks: Iterable[str]
    ) -> None:
        self.api = api
        self.prefix = prefix
        self.networks: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.floatingips: dict[str, dict[str, Any]] = {}
        self._free: dict[str, list[str]] = {}
        for index, name in enumerate(networks, start=1):
            self.add_network(name, addresses=[f"{prefix}.{index}.{n}" for n in range(10, 250)])
        self.external_id = self.add_network(
            "public",
            external=True,
            addresses=[f"{prefix}.100.{n}" for n in range(10, 10 + floating_pool)],
        )

    def add_network(self, name: str, *, external: bool = False, addresses: list[str]) -> str:
        network_id = new_id()
        self.networks[network_id] = {
            "id": network_id,
            "name": name,
            "status": "ACTIVE",
            "admin_state_up": True,
            "subnets": [new_id()],
            "shared": False,
            "router:external": external,
            "project_id": self.api.project_id,
            "tenant_id": self.api.project_id,
            "mtu": 1450,
            "tags": [],
            "description": "",
            "port_security_enabled": True,
            "availability_zones": ["nova"],
            "created_at": now_iso(),
            "updated_at": now_iso(),
        }
        self._free[network_id] = list(addresses)
        return network_id

    # -- what Nova asks -------------------------------------------------------------------

    def tenant_networks(self) -> list[dict[str, Any]]:
        return [n for n in self.networks.values() if not n["router:external"]]

    def group_named(self, name: str) -> bool:
        return any(g["name"] == name for g in self.groups.values())

    def create_port(self, network_id: str, device_id: str, hostname: str) -> dict[str, Any]:
        """A server's port; Nova sets its ``dns_name`` (Neutron's DNS integration, on in
        most deployments: the network's dnsmasq resolves it)."""
        free = self._free[network_id]
        if not free:
            raise nova_error(400, f"No more IP addresses available on network {network_id}.")
        port_id = new_id()
        address = free.pop(0)
        port = {
            "id": port_id,
            "name": "",
            "network_id": network_id,
            "device_id": device_id,
            "device_owner": "compute:nova",
            "status": "ACTIVE",
            "admin_state_up": True,
            "mac_address": "fa:16:3e:" + ":".join(port_id[i : i + 2] for i in (0, 2, 4)),
            "fixed_ips": [
                {"subnet_id": self.networks[network_id]["subnets"][0], "ip_address": address}
            ],
            "project_id": self.api.project_id,
            "tenant_id": self.api.project_id,
            "dns_name": hostname,
            "dns_assignment": [
                {"hostname": hostname, "ip_address": address, "fqdn": f"{hostname}.{DNS_DOMAIN}."}
            ],
            "security_groups": [],
            "tags": [],
            "description": "",
        }
        self.ports[port_id] = port
        return port

    def fixed_addresses(self, device_id: str) -> list[str]:
        return [
            ip["ip_address"]
            for port in self.ports.values()
            if port["device_id"] == device_id
            for ip in port["fixed_ips"]
        ]

    def addresses_of(self, device_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for port in self.ports.values():
            if port["device_id"] != device_id:
                continue
            listed = out.setdefault(self.networks[port["network_id"]]["name"], [])
            for ip in port["fixed_ips"]:
                entry = {
                    "version": 4,
                    "addr": ip["ip_address"],
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                }
                listed.append(entry)
            for fip in self.floatingips.values():
                if fip["port_id"] == port["id"]:
                    listed.append(
                        {**entry, "addr": fip["floating_ip_address"], "OS-EXT-IPS:type": "floating"}
                    )
        return out

    def delete_ports_of(self, device_id: str) -> None:
        for port_id, port in list(self.ports.items()):
            if port["device_id"] == device_id:
                for fip in self.floatingips.values():
                    if fip["port_id"] == port_id:
                        fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
                self._free[port["network_id"]].append(port["fixed_ips"][0]["ip_address"])
                del self.ports[port_id]

    # -- the API --------------------------------------------------------------------------

    def handle(self, request: Request, rest: str) -> tuple[int, Any, dict[str, str]]:
        if rest == "" and request.method == "GET":
            return (
                200,
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{self.api.base}/network/v2.0/"}],
                        }
                    ]
                },
                {},
            )
        if rest == "/v2.0" and request.method == "GET":
            return 200, {"resources": []}, {}
        parts = rest.strip("/").split("/")
        if parts[0] != "v2.0" or len(parts) < 2:
            raise neutron_error(404, "HTTPNotFound", "The resource could not be found.")
        collection, item = parts[1], parts[2] if len(parts) > 2 else None
        tables = {
            "networks": ("network", self.networks),
            "ports": ("port", self.ports),
            "security-groups": ("security_group", self.groups),
            "security-group-rules": ("security_group_rule", self.rules),
            "floatingips": ("floatingip", self.floatingips),
        }
        if collection not in tables or len(parts) > 3:
            raise neutron_error(404, "HTTPNotFound", "The resource could not be found.")
        singular, table = tables[collection]
        kind = "".join(word.title() for word in singular.split("_"))
        kind = {"Floatingip": "FloatingIP"}.get(kind, kind)
        with self.api.lock:
            if item is None and request.method == "GET":
                return 200, {collection.replace("-", "_"): self._filter(request, table)}, {}
            if item is None and request.method == "POST":
                return 201, {singular: self._create(collection, singular, request.body)}, {}
            if item is None:
                raise neutron_error(405, "HTTPMethodNotAllowed", "Method not allowed.")
            found = table.get(item)
            if found is None:
                raise neutron_error(404, f"{kind}NotFound", f"{kind} {item} could not be found.")
            if request.method == "GET":
                return 200, {singular: found}, {}
            if request.method == "DELETE":
                self._delete(collection, found)
                return 204, None, {}
            if request.method == "PUT" and collection == "floatingips":
                return 200, {singular: self._update_floating(found, request.body)}, {}
        raise neutron_error(405, "HTTPMethodNotAllowed", "Method not allowed.")

    def _filter(self, request: Request, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = list(table.values())
        allowed = set().union(*(row.keys() for row in rows)) if rows else set()
        for key, values in request.query.items():
            if key in _PAGING:
                continue
            if rows and key not in allowed:
                raise neutron_error(
                    400, "HTTPBadRequest", f"['{key}'] is invalid attribute for filtering"
                )
            wanted = {value.lower() for value in values}
            rows = [r for r in rows if _shown(r.get(key)).lower() in wanted]
        return rows

    def _body(self, singular: str, body: Any, allowed: set[str]) -> dict[str, Any]:
        given = body.get(singular) if isinstance(body, dict) else None
        if not isinstance(given, dict):
            raise neutron_error(
                400, "HTTPBadRequest", f"Resource body required: '{singular}' missing"
            )
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise neutron_error(
                400, "HTTPBadRequest", f"Unrecognized attribute(s) '{', '.join(unknown)}'"
            )
        return given

    def _create(self, collection: str, singular: str, body: Any) -> dict[str, Any]:
        owner = {"project_id": self.api.project_id, "tenant_id": self.api.project_id}
        stamp = {"created_at": now_iso(), "updated_at": now_iso(), "revision_number": 0}
        if collection == "security-groups":
            given = self._body(singular, body, {"name", "description", "stateful"})
            group_id = new_id()
            group = {
                "id": group_id,
                "name": given.get("name", ""),
                "tags": [],
                "description": given.get("description", ""),
                "stateful": True,
                "security_group_rules": [],
                **owner,
                **stamp,
            }
            self.groups[group_id] = group
            for ethertype in ("IPv4", "IPv6"):
                self._add_rule(
                    {"security_group_id": group_id, "direction": "egress", "ethertype": ethertype}
                )
            return group
        if collection == "security-group-rules":
            given = self._body(
                singular,
                body,
                {
                    "security_group_id",
                    "direction",
                    "ethertype",
                    "protocol",
                    "port_range_min",
                    "port_range_max",
                    "remote_ip_prefix",
                    "remote_group_id",
                    "description",
                },
            )
            for key in ("security_group_id", "direction"):
                if key not in given:
                    raise neutron_error(
                        400,
                        "HTTPBadRequest",
                        f"Failed to parse request. Required attribute '{key}' not specified",
                    )
            if given["security_group_id"] not in self.groups:
                raise neutron_error(
                    404,
                    "SecurityGroupNotFound",
                    f"Security group {given['security_group_id']} does not exist",
                )
            return self._add_rule(given)
        if collection == "floatingips":
            given = self._body(
                singular,
                body,
                {
                    "floating_network_id",
                    "port_id",
                    "description",
                    "floating_ip_address",
                    "fixed_ip_address",
                    "dns_name",
                    "dns_domain",
                    "subnet_id",
                },
            )
            network_id = given.get("floating_network_id")
            if network_id is None:
                raise neutron_error(
                    400,
                    "HTTPBadRequest",
                    "Failed to parse request. Required "
                    "attribute 'floating_network_id' not specified",
                )
            network = self.networks.get(network_id)
            if network is None:
                raise neutron_error(
                    404, "NetworkNotFound", f"Network {network_id} could not be found."
                )
            if not network["router:external"]:
                raise neutron_error(
                    400,
                    "BadRequest",
                    "Bad floatingip request: Network "
                    f"{network_id} is not a valid external network.",
                )
            if not self._free[network_id]:
                raise neutron_error(
                    409,
                    "IpAddressGenerationFailure",
                    f"No more IP addresses available on network {network_id}.",
                )
            fip_id = new_id()
            fip = {
                "id": fip_id,
                "floating_ip_address": self._free[network_id].pop(0),
                "floating_network_id": network_id,
                "port_id": None,
                "fixed_ip_address": None,
                "router_id": None,
                "status": "DOWN",
                "description": given.get("description", ""),
                "tags": [],
                "port_details": None,
                **owner,
                **stamp,
            }
            self.floatingips[fip_id] = fip
            if given.get("port_id"):
                self._update_floating(fip, {"floatingip": {"port_id": given["port_id"]}})
            return fip
        raise neutron_error(405, "HTTPMethodNotAllowed", "Method not allowed.")

    def _add_rule(self, given: dict[str, Any]) -> dict[str, Any]:
        fields = (
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
        )
        rule = {
            "ethertype": "IPv4",
            "protocol": None,
            "port_range_min": None,
            "port_range_max": None,
            "remote_ip_prefix": None,
            "remote_group_id": None,
            "description": "",
            **given,
        }
        group = self.groups[rule["security_group_id"]]
        for existing in group["security_group_rules"]:
            if all(existing[f] == rule[f] for f in fields):
                raise neutron_error(
                    409,
                    "SecurityGroupRuleExists",
                    f"Security group rule already exists. Rule id is {existing['id']}.",
                )
        rule.update(id=new_id(), project_id=self.api.project_id, tenant_id=self.api.project_id)
        self.rules[rule["id"]] = rule
        group["security_group_rules"].append(rule)
        return rule

    def _update_floating(self, fip: dict[str, Any], body: Any) -> dict[str, Any]:
        given = self._body("floatingip", body, {"port_id", "fixed_ip_address", "description"})
        port_id = given.get("port_id")
        hypervisor = self.api.hypervisor
        if port_id is None:
            old = self.ports.get(fip["port_id"] or "")
            fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
            if old is not None and hypervisor is not None:
                hypervisor.halt(old["device_id"], fip["floating_ip_address"])
            return fip
        port = self.ports.get(port_id)
        if port is None:
            raise neutron_error(404, "PortNotFound", f"Port {port_id} could not be found.")
        fip.update(
            port_id=port_id, fixed_ip_address=port["fixed_ips"][0]["ip_address"], status="ACTIVE"
        )
        server = self.api.compute.servers.get(port["device_id"])
        if hypervisor is not None and server is not None and server["status"] == "ACTIVE":
            image = self.api.image.images[server["image_id"]]
            if not image.get("silent"):
                threading.Thread(
                    target=hypervisor.boot,
                    args=(server, fip["floating_ip_address"], server["public_key"]),
                    daemon=True,
                ).start()
        return fip

    def delete_floating(self, found: dict[str, Any]) -> None:
        if found["port_id"] is not None:
            self._update_floating(found, {"floatingip": {"port_id": None}})
        del self.floatingips[found["id"]]
        self._free[found["floating_network_id"]].append(found["floating_ip_address"])

    def _delete(self, collection: str, found: dict[str, Any]) -> None:
        if collection == "floatingips":
            self.delete_floating(found)
        elif collection == "security-group-rules":
            del self.rules[found["id"]]
            group = self.groups[found["security_group_id"]]
            group["security_group_rules"].remove(found)
        elif collection == "security-groups":
            del self.groups[found["id"]]
        else:
            raise neutron_error(409, "InUse", "The resource is in use.")


def _shown(value: Any) -> str:
    """A value as a query string gives it."""
    if isinstance(value, bool):
        return str(value)
    return "" if value is None else str(value)
