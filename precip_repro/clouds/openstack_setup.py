"""What an OpenStack project needs before its servers can be logged in to — the key pair,
the ``precip`` security group letting ssh in and traffic within the group, the network the
servers join — and the names a launch gives resolved: image, flavor, external network.

Each is looked up before anything starts, so a name the cloud does not know is one error
naming it and what the cloud has instead."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from precip_repro.clouds.openstack_client import OpenStackClient
from precip_repro.exceptions import CloudError
from precip_repro.keys import Keys
from precip_repro.logs import get_logger

__all__ = [
    "SECURITY_GROUP",
    "Names",
    "ensure_key_pair",
    "ensure_security_group",
    "open_port",
    "resolve_groups",
]

log = get_logger(__name__)

SECURITY_GROUP: Final = "precip"
_SHOWN: Final = 12
"""How many of the cloud's images, flavors or networks an error lists."""


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in sorted(names)[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return (shown + more) or "none"


def ensure_key_pair(api: OpenStackClient, keys: Keys, name: str, *, own: bool) -> None:
    """Make sure Nova's key pair ``name`` holds the key precip-repro logs in with: import
    it under precip's ``own`` name where missing; refuse a pair holding another key."""
    compute = api.conn.compute
    pair = api.find("GetKeypair", compute.find_keypair, name)
    if pair is None and not own:
        raise CloudError(
            f"key pair {name!r} not found on {api.where}; import {keys.private_key_path}.pub "
            "under that name, or leave key_name= out for precip's own pair",
            code="KeypairNotFound",
        )
    if pair is None:
        api.call("CreateKeypair", compute.create_keypair, name=name, public_key=keys.public_key)
        log.info("key pair imported", cloud=api.where, key_name=name)
        return
    if (pair.public_key or "").split()[:2] != keys.public_key.split()[:2]:
        what = "Delete that key pair, or pass" if own else "Pass"
        raise CloudError(
            f"key pair {name!r} on {api.where} holds another key (fingerprint "
            f"{pair.fingerprint}) than the one precip-repro logs in with "
            f"({keys.private_key_path}, {keys.fingerprint}). {what} key_name= of a pair "
            "holding that key" + ("" if own else ", or leave it out for precip's own pair"),
            code="KeypairMismatch",
        )


def _rule_exists(rules: list[dict[str, Any]], wanted: dict[str, Any]) -> bool:
    keys = (
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_ip_prefix",
        "remote_group_id",
    )
    return any(all(rule.get(key) == wanted.get(key) for key in keys) for rule in rules)


def _add_rules(api: OpenStackClient, group_id: str, wanted: list[dict[str, Any]]) -> None:
    """Add the rules of ``wanted`` the group lacks (a rule added meanwhile by another
    process is Neutron's ``SecurityGroupRuleExists``: as good as added)."""
    network = api.conn.network
    rules = [
        rule.to_dict()
        for rule in api.call(
            "ListSecurityGroupRules",
            lambda: list(network.security_group_rules(security_group_id=group_id)),
        )
    ]
    for rule in wanted:
        full = {
            "ethertype": "IPv4",
            "direction": "ingress",
            "protocol": None,
            "port_range_min": None,
            "port_range_max": None,
            "remote_ip_prefix": None,
            "remote_group_id": None,
            **rule,
        }
        if _rule_exists(rules, full):
            continue
        try:
            api.call(
                "CreateSecurityGroupRule",
                network.create_security_group_rule,
                security_group_id=group_id,
                **{key: value for key, value in full.items() if value is not None},
            )
        except CloudError as exc:
            if exc.code != "SecurityGroupRuleExists":
                raise


def ensure_security_group(api: OpenStackClient) -> str:
    """The id of precip's own group in the project (created where missing), letting ssh
    in from anywhere and any traffic in between its servers."""
    network = api.conn.network
    query: dict[str, Any] = {"name": SECURITY_GROUP}
    if api.project_id:
        query["project_id"] = api.project_id
    found = api.call("ListSecurityGroups", lambda: list(network.security_groups(**query)))
    if found:
        group_id: str = found[0].id
    else:
        created = api.call(
            "CreateSecurityGroup",
            network.create_security_group,
            name=SECURITY_GROUP,
            description="precip experiments: ssh, and traffic within the group",
        )
        group_id = created.id
    _add_rules(
        api,
        group_id,
        [
            {
                "protocol": "tcp",
                "port_range_min": 22,
                "port_range_max": 22,
                "remote_ip_prefix": "0.0.0.0/0",
            },
            {"remote_group_id": group_id},
        ],
    )
    return group_id


def resolve_groups(api: OpenStackClient, groups: Sequence[str]) -> list[str]:
    """The ids of the user's security groups (by name or id); a name the project does not
    have is an error now, not servers that boot into a group ssh cannot pass."""
    network = api.conn.network
    ids: list[str] = []
    for group in groups:
        found = api.find("FindSecurityGroup", network.find_security_group, group)
        if found is None:
            names = [
                g.name
                for g in api.call("ListSecurityGroups", lambda: list(network.security_groups()))
            ]
            raise CloudError(
                f"security group {group!r} not found on {api.where} (it has {_listed(names)}); "
                "give an existing group in security_groups=, or leave it out for precip's own",
                code="SecurityGroupNotFound",
            )
        ids.append(found.id)
    return ids


def open_port(
    api: OpenStackClient, groups: list[str], port: int, protocol: str, cidr: str
) -> list[str]:
    """Allow ``protocol``/``port`` from ``cidr`` in the experiment's security groups."""
    for group_id in groups:
        _add_rules(
            api,
            group_id,
            [
                {
                    "protocol": protocol,
                    "port_range_min": port,
                    "port_range_max": port,
                    "remote_ip_prefix": cidr,
                }
            ],
        )
    return list(groups)


class Names:
    """The image, flavor and network names of a launch, each resolved once (launches
    overlap: they share the answers) and remembered."""

    def __init__(self, api: OpenStackClient) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._images: dict[str, tuple[str, str | None]] = {}
        self._flavors: dict[str, str] = {}

    def image(self, name_or_id: str) -> tuple[str, str | None]:
        """The image's id and its digest (Glance's ``os_hash_algo:os_hash_value``)."""
        with self._lock:
            if name_or_id not in self._images:
                image = self._find("image", self._api.conn.image.find_image, name_or_id)
                if image is None:
                    names = [
                        i.name
                        for i in self._api.call(
                            "ListImages", lambda: list(self._api.conn.image.images())
                        )
                    ]
                    raise CloudError(
                        f"image {name_or_id!r} not found on {self._api.where}; it has "
                        f"{_listed(names)}: map or give one of those (a name or an id)",
                        code="ImageNotFound",
                    )
                digest = (
                    f"{image.hash_algo}:{image.hash_value}"
                    if image.hash_algo and image.hash_value
                    else None
                )
                self._images[name_or_id] = (image.id, digest)
            return self._images[name_or_id]

    def given_image(self, image_id: str) -> str:
        """The image as a launch gave it (a name, say) for the id Nova reports, where this
        cloud object launched it; else the id."""
        with self._lock:
            for given, (found, _) in self._images.items():
                if found == image_id:
                    return given
        return image_id

    def flavor(self, name_or_id: str) -> str:
        with self._lock:
            if name_or_id not in self._flavors:
                flavor = self._find("flavor", self._api.conn.compute.find_flavor, name_or_id)
                if flavor is None:
                    names = [
                        f.name
                        for f in self._api.call(
                            "ListFlavors", lambda: list(self._api.conn.compute.flavors())
                        )
                    ]
                    raise CloudError(
                        f"flavor {name_or_id!r} (the instance type) not found on "
                        f"{self._api.where}; it has {_listed(names)}",
                        code="FlavorNotFound",
                    )
                self._flavors[name_or_id] = flavor.id
            return self._flavors[name_or_id]

    def _find(self, what: str, find: Any, name_or_id: str) -> Any:
        """The resource, or None; one name held by several is the SDK's error, named."""
        return self._api.find(f"Find{what.title()}", find, name_or_id)

    def network(self, name_or_id: str | None) -> str:
        """The id of the network servers join: the one named, or the project's only one."""
        network = self._api.conn.network
        if name_or_id is not None:
            found = self._api.find("FindNetwork", network.find_network, name_or_id)
            if found is None:
                raise CloudError(
                    f"network {name_or_id!r} not found on {self._api.where}; it has "
                    f"{_listed(self._network_names(external=False))}",
                    code="NetworkNotFound",
                )
            return str(found.id)
        candidates = [
            n
            for n in self._api.call("ListNetworks", lambda: list(network.networks()))
            if not n.is_router_external
        ]
        if len(candidates) == 1:
            return str(candidates[0].id)
        if not candidates:
            raise CloudError(
                f"no network for the servers on {self._api.where}: the project has none "
                "(create one with a subnet and a router, or ask the cloud's operators)",
                code="NoNetwork",
            )
        raise CloudError(
            f"the project on {self._api.where} has several networks "
            f"({_listed([n.name for n in candidates])}): choose one with network=",
            code="NetworkAmbiguous",
        )

    def external_network(self, name_or_id: str | None) -> str:
        """The id of the external network floating addresses come from: the one named, or
        the cloud's only one."""
        network = self._api.conn.network
        if name_or_id is not None:
            found = self._api.find("FindNetwork", network.find_network, name_or_id)
            if found is None or not found.is_router_external:
                why = "not found" if found is None else "not an external network"
                raise CloudError(
                    f"floating network {name_or_id!r} is {why} on {self._api.where}; its "
                    f"external networks: {_listed(self._network_names(external=True))}",
                    code="ExternalNetworkNotFound",
                )
            return str(found.id)
        external = self._api.call(
            "ListNetworks", lambda: list(network.networks(is_router_external=True))
        )
        if len(external) == 1:
            return str(external[0].id)
        why = "has none" if not external else f"has several ({_listed([n.name for n in external])})"
        raise CloudError(
            f"a floating address is needed (the server has no address reachable from here), "
            f"but {self._api.where} {why} external network to take it from: name one with "
            "floating_network=, or reach the servers at their fixed addresses with "
            "ssh_address='private'",
            code="ExternalNetworkNotFound",
        )

    def _network_names(self, *, external: bool) -> list[str]:
        return [
            n.name
            for n in self._api.call("ListNetworks", lambda: list(self._api.conn.network.networks()))
            if bool(n.is_router_external) == external
        ]
