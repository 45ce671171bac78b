"""What an EC2-compatible cloud needs before its instances can be logged in to: the key
pair they are started with, and security groups that let ssh in (``open_port`` lets more
in)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any, Final

from cryptography.hazmat.primitives import serialization

from precip_repro.clouds.ec2_client import EC2Client
from precip_repro.exceptions import CloudError
from precip_repro.keys import Keys
from precip_repro.logs import get_logger

__all__ = [
    "SECURITY_GROUP",
    "ensure_key_pair",
    "ensure_security_group",
    "open_port",
    "resolve_groups",
]

log = get_logger(__name__)

SECURITY_GROUP: Final = "precip"


def _key_fingerprints(keys: Keys) -> set[str]:
    """Every form a cloud gives an imported key's fingerprint in: MD5 or SHA-256, of the
    key's ssh wire form (OpenStack, OpenSSH) or of its DER form (AWS for RSA keys), as
    colon-separated hex or base64 (AWS for Ed25519 keys)."""
    wire = keys.pkey.asbytes()
    der = serialization.load_ssh_public_key(keys.public_key.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    found = {keys.fingerprint}
    for data in (wire, der):
        for digest in (
            hashlib.md5(data, usedforsecurity=False).digest(),
            hashlib.sha256(data).digest(),
        ):
            found.add(":".join(f"{byte:02x}" for byte in digest))
            found.add(base64.b64encode(digest).decode())
            found.add(base64.b64encode(digest).decode().rstrip("="))
    return found


def _allows_ssh(rule: dict[str, Any]) -> bool:
    """Whether an ingress rule lets tcp/22 in (from anywhere it names)."""
    if str(rule.get("IpProtocol")) not in ("-1", "tcp", "6"):
        return False
    low, high = rule.get("FromPort"), rule.get("ToPort")
    return low is None or low == -1 or int(low) <= 22 <= int(high if high is not None else low)


def ensure_key_pair(api: EC2Client, keys: Keys, name: str, *, own: bool, modern: bool) -> None:
    """Make sure key pair ``name`` holds the key precip-repro logs in with: import it
    under precip's ``own`` name where missing, and refuse a pair holding another key
    before any instance starts (their boot tries would be spent on refused logins)."""
    found = api.call(
        "DescribeKeyPairs",
        api.client.describe_key_pairs,
        tolerate="InvalidKeyPair.NotFound",
        KeyNames=[name],
        **({"IncludePublicKey": True} if modern else {}),
    )
    pairs = (found or {}).get("KeyPairs", [])
    if not pairs and not own:
        raise CloudError(
            f"key pair {name!r} not found on {api.where}; import "
            f"{keys.private_key_path}.pub under that name, or leave key_name= out for "
            "precip's own pair",
            code="InvalidKeyPair.NotFound",
        )
    if not pairs:
        api.call(
            "ImportKeyPair",
            api.client.import_key_pair,
            KeyName=name,
            PublicKeyMaterial=keys.public_key.encode(),
        )
        log.info("key pair imported", cloud=api.kind, key_name=name)
        return
    pair = pairs[0]
    material = pair.get("PublicKey")
    if material:
        same = material.split()[:2] == keys.public_key.split()[:2]
    else:
        same = pair.get("KeyFingerprint") in _key_fingerprints(keys)
    if not same:
        what = "Delete that key pair, or pass" if own else "Pass"
        raise CloudError(
            f"key pair {name!r} on {api.where} holds another key (fingerprint "
            f"{pair.get('KeyFingerprint')}) than the one precip-repro logs in with "
            f"({keys.private_key_path}, {keys.fingerprint}). {what} key_name= of a pair "
            "holding that key" + ("" if own else ", or leave it out for precip's own pair"),
            code="KeyPairMismatch",
        )


def _vpc_id(api: EC2Client, subnet_id: str | None) -> str | None:
    if subnet_id is None:
        return None
    found = api.call("DescribeSubnets", api.client.describe_subnets, SubnetIds=[subnet_id])
    subnets = found.get("Subnets", [])
    return subnets[0].get("VpcId") if subnets else None


def ensure_security_group(api: EC2Client, subnet_id: str | None) -> str:
    """The id of precip's own group (in the subnet's VPC; created where missing), letting
    ssh in from anywhere and any traffic in between its instances."""
    vpc = _vpc_id(api, subnet_id)
    filters = [{"Name": "group-name", "Values": [SECURITY_GROUP]}]
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    found = api.call("DescribeSecurityGroups", api.client.describe_security_groups, Filters=filters)
    groups = found.get("SecurityGroups", [])
    if groups:
        group_id: str = groups[0]["GroupId"]
    else:
        params: dict[str, Any] = {
            "GroupName": SECURITY_GROUP,
            "Description": "precip experiments: ssh, and traffic within the group",
        }
        if vpc:
            params["VpcId"] = vpc
        created = api.call("CreateSecurityGroup", api.client.create_security_group, **params)
        group_id = created["GroupId"]
    _authorize(
        api,
        group_id,
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]},
        ],
    )
    return group_id


def _authorize(api: EC2Client, group_id: str, permissions: list[dict[str, Any]]) -> None:
    for permission in permissions:
        api.call(
            "AuthorizeSecurityGroupIngress",
            api.client.authorize_security_group_ingress,
            tolerate="InvalidPermission.Duplicate",
            GroupId=group_id,
            IpPermissions=[permission],
        )


def resolve_groups(api: EC2Client, groups: Sequence[str], subnet_id: str | None) -> list[str]:
    """The ids of the user's security groups (given by id or name, names looked up in
    the subnet's VPC); a name the cloud does not have is an error now, not instances
    that boot into a default group ssh cannot reach. Warns when none allows ssh."""
    ids = [group for group in groups if group.startswith("sg-")]
    names = [group for group in groups if not group.startswith("sg-")]
    if names:
        filters = [{"Name": "group-name", "Values": names}]
        vpc = _vpc_id(api, subnet_id)
        if vpc:
            filters.append({"Name": "vpc-id", "Values": [vpc]})
        found = api.call(
            "DescribeSecurityGroups", api.client.describe_security_groups, Filters=filters
        ).get("SecurityGroups", [])
        by_name = {group["GroupName"]: group["GroupId"] for group in found}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise CloudError(
                f"security group(s) {', '.join(map(repr, missing))} not found on "
                f"{api.where}{f' in {vpc}' if vpc else ''}; give an existing group's "
                "name or id in security_groups=, or leave it out for precip's own group",
                code="InvalidGroup.NotFound",
            )
        ids += [by_name[name] for name in names]
    _warn_without_ssh(api, ids)
    return ids


def _warn_without_ssh(api: EC2Client, group_ids: list[str]) -> None:
    described = api.call(
        "DescribeSecurityGroups", api.client.describe_security_groups, GroupIds=group_ids
    ).get("SecurityGroups", [])
    if any(_allows_ssh(rule) for group in described for rule in group["IpPermissions"]):
        return
    log.warning(
        "none of the security groups lets ssh (tcp/22) in: wait() will not log in unless "
        "something else does; allow it in a group, or call open_port(22, cidr=…)",
        groups=group_ids,
        cloud=api.where,
    )


def open_port(api: EC2Client, groups: list[str], port: int, protocol: str, cidr: str) -> list[str]:
    """Allow ``protocol``/``port`` from ``cidr`` in the experiment's security groups."""
    for group_id in groups:
        _authorize(
            api,
            group_id,
            [
                {
                    "IpProtocol": protocol,
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": cidr}],
                }
            ],
        )
    return list(groups)
