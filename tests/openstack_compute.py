"""Nova of the test OpenStack endpoint (see :mod:`tests.openstack_api`): servers, flavors,
key pairs, limits and microversions, as the compute api-ref has them."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from tests.openstack_http import Request, new_id, nova_error, now_iso
from tests.openstack_network import hostname_of

if TYPE_CHECKING:
    from tests.openstack_api import OpenStackAPI

MIN_MICROVERSION = (2, 1)
MAX_MICROVERSION = (2, 96)
_METADATA_KEY = re.compile(r"[a-zA-Z0-9-_:. ]{1,255}")
_KEYPAIR_NAME = re.compile(r"[a-zA-Z0-9 _-]+")  # before 2.92
_SERVER_KEYS = frozenset(
    {
        "name",
        "imageRef",
        "flavorRef",
        "networks",
        "key_name",
        "security_groups",
        "metadata",
        "availability_zone",
        "user_data",
        "config_drive",
        "description",
        "block_device_mapping_v2",
        "min_count",
        "max_count",
        "return_reservation_id",
        "tags",
        "hostname",
    }
)
FAULT_NO_HOST = "No valid host was found. There are not enough hosts available."


def _microversion(request: Request) -> tuple[int, int]:
    """The request's compute microversion; Nova's 406 for one it does not serve."""
    header = request.headers.get("Openstack-Api-Version", "")
    wanted = None
    for part in header.split(","):
        service, _, asked = part.strip().partition(" ")
        if service == "compute":
            wanted = asked.strip()
    wanted = wanted or request.headers.get("X-Openstack-Nova-Api-Version")
    if not wanted:
        return MIN_MICROVERSION
    if wanted == "latest":
        return MAX_MICROVERSION
    found = re.fullmatch(r"(\d+)\.(\d+)", wanted)
    if not found:
        raise nova_error(
            400,
            f"API Version String {wanted} is of invalid format. Must be of "
            "format MajorNum.MinorNum.",
        )
    version = (int(found.group(1)), int(found.group(2)))
    if not MIN_MICROVERSION <= version <= MAX_MICROVERSION:
        raise nova_error(
            406,
            f"Version {wanted} is not supported by the API. Minimum is "
            f"{'.'.join(map(str, MIN_MICROVERSION))} and maximum is "
            f"{'.'.join(map(str, MAX_MICROVERSION))}.",
        )
    return version


class Compute:
    """Nova: servers, flavors, key pairs, limits."""

    name = "compute"

    def __init__(self, api: OpenStackAPI, *, max_instances: int) -> None:
        self.api = api
        self.max_instances = max_instances
        self.servers: dict[str, dict[str, Any]] = {}
        self.keypairs: dict[str, dict[str, Any]] = {}
        self.flavors: dict[str, dict[str, Any]] = {
            str(i): {"id": str(i), "name": name, "vcpus": cpus, "ram": ram, "disk": disk}
            for i, (name, cpus, ram, disk) in enumerate(
                [
                    ("m1.tiny", 1, 512, 1),
                    ("m1.small", 1, 2048, 20),
                    ("m1.medium", 2, 4096, 40),
                    ("m1.large", 4, 8192, 80),
                    ("baremetal", 48, 196608, 240),
                ],
                start=1,
            )
        }
        self.boot_delay = 0.05
        self.limits_shown = True
        """False: the limits say -1 (unlimited) while creation still enforces the quota,
        as when a quota other than those shown (cores in a flavor family…) is the one hit."""
        self._builds: dict[str, threading.Thread] = {}

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": ".".join(map(str, MAX_MICROVERSION)),
            "min_version": ".".join(map(str, MIN_MICROVERSION)),
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.api.base}/compute/v2.1/"}],
        }

    def handle(self, request: Request, rest: str) -> tuple[int, Any, dict[str, str]]:
        if rest == "" and request.method == "GET":
            return 200, {"versions": [self._version_doc()]}, {}
        if rest == "/v2.1" and request.method == "GET":
            return 200, {"version": self._version_doc()}, {}
        if not rest.startswith("/v2.1/"):
            raise nova_error(404, "The resource could not be found.")
        version = _microversion(request)
        shown = ".".join(map(str, version))
        headers = {
            "OpenStack-API-Version": f"compute {shown}",
            "X-OpenStack-Nova-API-Version": shown,
            "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
        }
        status, body = self._route(request, rest[len("/v2.1") :], version)
        return status, body, headers

    def _route(self, request: Request, path: str, version: tuple[int, int]) -> tuple[int, Any]:
        method = request.method
        parts = path.strip("/").split("/")
        with self.api.lock:
            if parts[0] == "servers":
                if len(parts) == 1 and method == "POST":
                    return self._create(request, version)
                if len(parts) == 2 and parts[1] == "detail" and method == "GET":
                    return 200, {"servers": self._list(request, version)}
                if len(parts) == 1 and method == "GET":
                    return 200, {
                        "servers": [
                            {"id": s["id"], "name": s["name"], "links": []}
                            for s in self._list(request, version)
                        ]
                    }
                if len(parts) == 2 and method == "GET":
                    return 200, {"server": self._show(self._server(parts[1]), version)}
                if len(parts) == 2 and method == "DELETE":
                    self.delete_server(self._server(parts[1]))
                    return 204, None
            if parts[0] == "flavors":
                if len(parts) == 2 and parts[1] == "detail" and method == "GET":
                    return 200, {"flavors": [self._flavor(f) for f in self.flavors.values()]}
                if len(parts) == 1 and method == "GET":
                    return 200, {
                        "flavors": [
                            {"id": f["id"], "name": f["name"], "links": []}
                            for f in self.flavors.values()
                        ]
                    }
                if len(parts) == 2 and method == "GET":
                    flavor = self.flavors.get(parts[1])
                    if flavor is None:
                        raise nova_error(404, f"Flavor {parts[1]} could not be found.")
                    return 200, {"flavor": self._flavor(flavor)}
            if parts[0] == "os-keypairs":
                return self._keypairs(request, parts, version)
            if parts == ["limits"] and method == "GET":
                return 200, {"limits": {"rate": [], "absolute": self._limits()}}
        raise nova_error(404, "The resource could not be found.")

    # -- servers --------------------------------------------------------------------------

    def _server(self, server_id: str) -> dict[str, Any]:
        server = self.servers.get(server_id)
        if server is None:
            raise nova_error(404, f"Instance {server_id} could not be found.")
        return server

    def _list(self, request: Request, version: tuple[int, int]) -> list[dict[str, Any]]:
        found = list(self.servers.values())
        name, status = request.one("name"), request.one("status")
        if name is not None:  # Nova matches names as regular expressions
            found = [s for s in found if re.search(name, s["name"])]
        if status is not None:
            found = [s for s in found if s["status"] == status.upper()]
        return [self._show(s, version) for s in found]

    def _flavor(self, flavor: dict[str, Any]) -> dict[str, Any]:
        return {
            **flavor,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": True,
            "swap": 0,
            "rxtx_factor": 1.0,
            "description": None,
            "extra_specs": {},
            "links": [],
        }

    def _show(self, server: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
        flavor = self.flavors[server["flavor_id"]]
        shown = {
            key: value
            for key, value in server.items()
            if key not in ("flavor_id", "image_id", "network_ids", "hint", "public_key")
        }
        shown["image"] = {"id": server["image_id"], "links": []}
        if version >= (2, 47):
            shown["flavor"] = {
                "original_name": flavor["name"],
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": {},
            }
        else:
            shown["flavor"] = {"id": flavor["id"], "links": []}
        shown["addresses"] = self.api.network.addresses_of(server["id"])
        return shown

    def _limits(self) -> dict[str, int]:
        used = list(self.servers.values())
        return {
            "maxTotalInstances": self.max_instances if self.limits_shown else -1,
            "totalInstancesUsed": len(used),
            "maxTotalCores": self.max_instances * 4,
            "totalCoresUsed": sum(self.flavors[s["flavor_id"]]["vcpus"] for s in used),
            "maxTotalRAMSize": self.max_instances * 8192,
            "totalRAMUsed": sum(self.flavors[s["flavor_id"]]["ram"] for s in used),
            "maxServerMeta": 128,
            "maxTotalKeypairs": 100,
            "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalServerGroupsUsed": 0,
        }

    def _create(self, request: Request, version: tuple[int, int]) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise nova_error(
                400,
                "Invalid input for field/attribute server. Value: None. "
                "'server' is a required property",
            )
        given = body["server"]
        extra = sorted(set(body) - {"server", "OS-SCH-HNT:scheduler_hints"})
        extra += sorted(set(given) - _SERVER_KEYS)
        if extra:
            raise nova_error(
                400,
                "Invalid input for field/attribute server. Additional "
                f"properties are not allowed ({extra[0]!r} was unexpected)",
            )
        required = ["name", "flavorRef", "imageRef"] + (["networks"] if version >= (2, 37) else [])
        for key in required:
            if key not in given:
                raise nova_error(
                    400,
                    f"Invalid input for field/attribute server. Value: "
                    f"{given}. '{key}' is a required property",
                )
        flavor = self.flavors.get(str(given["flavorRef"]))
        if flavor is None:
            raise nova_error(400, f"Flavor {given['flavorRef']} could not be found.")
        image = self.api.image.images.get(str(given["imageRef"]))
        if image is None:
            raise nova_error(400, f"Image {given['imageRef']} could not be found.")
        metadata = given.get("metadata", {})
        for key, value in metadata.items():
            if not _METADATA_KEY.fullmatch(key) or not isinstance(value, str) or len(value) > 255:
                raise nova_error(
                    400,
                    "Invalid input for field/attribute metadata. Value: "
                    f"{metadata}. Additional properties are not allowed "
                    f"({key!r} was unexpected)",
                )
        key_name = given.get("key_name")
        if key_name is not None and key_name not in self.keypairs:
            raise nova_error(400, "Invalid key_name provided.")
        groups = [g.get("name") for g in given.get("security_groups", [{"name": "default"}])]
        for group in groups:
            if group != "default" and not self.api.network.group_named(group):
                raise nova_error(
                    400, f"Security group {group} not found for project {self.api.project_id}."
                )
        networks = given.get("networks", "auto")
        if networks in ("auto", "none") or not isinstance(networks, list) or not networks:
            tenant = self.api.network.tenant_networks()
            if networks == "none" or len(tenant) != 1:
                raise nova_error(
                    409, "Multiple possible networks found, use a Network ID to be more specific."
                )
            network_ids = [tenant[0]["id"]]
        else:
            network_ids = [str(n.get("uuid")) for n in networks]
            for network_id in network_ids:
                if network_id not in self.api.network.networks:
                    raise nova_error(400, f"Network {network_id} could not be found.")
        if len(self.servers) >= self.max_instances:
            raise nova_error(
                403,
                f"Quota exceeded for instances: Requested 1, but already used "
                f"{len(self.servers)} of {self.max_instances} instances",
            )
        server_id = new_id()
        stamp = now_iso()
        server = {
            "id": server_id,
            "name": given["name"],
            "status": "BUILD",
            "tenant_id": self.api.project_id,
            "user_id": self.api.user_id,
            "metadata": dict(metadata),
            "hostId": "",
            "created": stamp,
            "updated": stamp,
            "accessIPv4": "",
            "accessIPv6": "",
            "links": [],
            "OS-DCF:diskConfig": "MANUAL",
            "progress": 0,
            "OS-EXT-AZ:availability_zone": "nova",
            "config_drive": "",
            "key_name": key_name,
            "OS-SRV-USG:launched_at": None,
            "OS-SRV-USG:terminated_at": None,
            "security_groups": [{"name": g} for g in groups],
            "OS-EXT-STS:task_state": "scheduling",
            "OS-EXT-STS:vm_state": "building",
            "OS-EXT-STS:power_state": 0,
            "os-extended-volumes:volumes_attached": [],
            "locked": False,
            "description": None,
            "tags": [],
            "flavor_id": flavor["id"],
            "image_id": image["id"],
            "network_ids": network_ids,
            "hint": body.get("OS-SCH-HNT:scheduler_hints", {}),
            "public_key": self.keypairs[key_name]["public_key"] if key_name else "",
        }
        self.servers[server_id] = server
        for network_id in network_ids:
            self.api.network.create_port(network_id, server_id, hostname_of(given["name"]))
        thread = threading.Thread(target=self._build, args=(server,), daemon=True)
        self._builds[server_id] = thread
        thread.start()
        return 202, {
            "server": {
                "id": server_id,
                "links": [],
                "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": g} for g in groups],
                "adminPass": "not-a-real-password",
            }
        }

    def _build(self, server: dict[str, Any]) -> None:
        """What the scheduler and the compute host do: ERROR with a fault, or ACTIVE once
        the hypervisor has booted the machine."""
        time.sleep(self.boot_delay)
        image = self.api.image.images[server["image_id"]]
        reservation = server["hint"].get("reservation")
        fault = image.get("fault")
        if reservation is not None and reservation not in self.api.reservations:
            fault = FAULT_NO_HOST
        if fault is not None:
            with self.api.lock:
                server.update(
                    {
                        "status": "ERROR",
                        "OS-EXT-STS:vm_state": "error",
                        "OS-EXT-STS:task_state": None,
                        "fault": {"code": 500, "created": now_iso(), "message": fault},
                    }
                )
            return
        hypervisor = self.api.hypervisor
        if hypervisor is not None and not image.get("silent"):
            with self.api.lock:
                addresses = self.api.network.fixed_addresses(server["id"])
            for address in addresses:
                hypervisor.boot(server, address, server["public_key"])
        with self.api.lock:
            if server["id"] in self.servers and server["OS-EXT-STS:task_state"] != "deleting":
                server.update(
                    {
                        "status": "ACTIVE",
                        "OS-EXT-STS:vm_state": "active",
                        "OS-EXT-STS:task_state": None,
                        "OS-EXT-STS:power_state": 1,
                        "OS-SRV-USG:launched_at": now_iso(),
                        "hostId": hashlib.sha224(server["id"].encode()).hexdigest(),
                    }
                )

    def delete_server(self, server: dict[str, Any]) -> None:
        server["OS-EXT-STS:task_state"] = "deleting"

        def gone() -> None:
            build = self._builds.pop(server["id"], None)
            if build is not None:  # the compute host finishes what it started first
                build.join(timeout=30)
            if self.api.hypervisor is not None:
                self.api.hypervisor.halt(server["id"])
            with self.api.lock:
                self.api.network.delete_ports_of(server["id"])
                self.servers.pop(server["id"], None)

        threading.Thread(target=gone, daemon=True).start()

    # -- key pairs ------------------------------------------------------------------------

    def _keypairs(
        self, request: Request, parts: list[str], version: tuple[int, int]
    ) -> tuple[int, Any]:
        method = request.method
        if len(parts) == 1 and method == "GET":
            return 200, {"keypairs": [{"keypair": pair} for pair in self.keypairs.values()]}
        if len(parts) == 2 and method == "GET":
            pair = self.keypairs.get(parts[1])
            if pair is None:
                raise nova_error(404, f"Keypair {parts[1]} not found for user {self.api.user_id}")
            return 200, {"keypair": pair}
        if len(parts) == 2 and method == "DELETE":
            if self.keypairs.pop(parts[1], None) is None:
                raise nova_error(404, f"Keypair {parts[1]} not found for user {self.api.user_id}")
            return 202 if version < (2, 2) else 204, None
        if len(parts) == 1 and method == "POST":
            given = (request.body or {}).get("keypair")
            if not isinstance(given, dict) or "name" not in given:
                raise nova_error(
                    400, "Invalid input for field/attribute keypair. 'name' is a required property"
                )
            name = given["name"]
            if not _KEYPAIR_NAME.fullmatch(name) or len(name) > 255:
                raise nova_error(
                    400,
                    "Invalid input for field/attribute name. Value: "
                    f"{name}. {name!r} does not match",
                )
            if name in self.keypairs:
                raise nova_error(409, f"Key pair '{name}' already exists.")
            public = given.get("public_key")
            if not public:
                raise nova_error(
                    400,
                    "Keypair data is invalid: no public key given "
                    "(generating one is not done here)",
                )
            pair = {
                "name": name,
                "public_key": public,
                "type": given.get("type", "ssh"),
                "fingerprint": ":".join(f"{b:02x}" for b in hashlib.md5(public.encode()).digest()),
                "user_id": self.api.user_id,
            }
            self.keypairs[name] = pair
            return 200 if version < (2, 2) else 201, {"keypair": pair}
        raise nova_error(404, "The resource could not be found.")
