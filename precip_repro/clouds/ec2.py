"""EC2 and the EC2-compatible APIs of OpenStack, Eucalyptus and Nimbus, through boto3.

Credentials go straight into the boto3 client and nowhere else: not into the record (which
holds the endpoint, the region and a fingerprint of the access key id), not into reprs,
log lines or exception messages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, overload
from urllib.parse import urlsplit

import attrs
import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
from cryptography.hazmat.primitives import serialization

from precip_repro.clouds.base import CloudInstance, LaunchRequest
from precip_repro.exceptions import CloudError, InvalidOption
from precip_repro.keys import Keys
from precip_repro.logs import get_logger
from precip_repro.record.events import CloudInfo

__all__ = ["EC2Cloud", "access_key_fingerprint", "parse_endpoint", "parse_region"]

log = get_logger(__name__)

T = TypeVar("T")

KINDS: Final = ("ec2", "openstack", "eucalyptus", "nimbus")
SECURITY_GROUP: Final = "precip"
TERMINATE_TIMEOUT: Final = 600.0
NOT_FOUND: Final = "InvalidInstanceID.NotFound"
UNKNOWN_GRACE: Final = 15.0
LAUNCH_WORKERS: Final = 8
"""RunInstances requests in flight at once for one provision (botocore pools 10
connections; EC2's RunInstances throttling bucket holds far more)."""
"""Seconds an instance id the cloud does not know is asked about again before it is taken
as gone: AWS may not know an id RunInstances just returned for a few seconds."""
DESCRIBE_BATCH: Final = 200
"""Instance ids per DescribeInstances filter (EC2 takes at most 200 values in one)."""
_ZONE_RE: Final = re.compile(r"([a-z]{2}(?:-[a-z]+)+-\d+)([a-z])")
_REGION_RE: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
"""What botocore takes as a region name (a host label: private clouds name theirs freely,
``RegionOne`` say)."""
MAX_USER_TAGS: Final = 40


def cloud_tag_keys(tags: Sequence[str]) -> list[str]:
    """The user's tags as the cloud takes them (each a key, ``"1"`` its value, as the seed
    had them): EC2 refuses a whole launch for a key given twice, one starting ``aws:``, an
    empty one or one of ours (``Name``, ``precip:…``), and keys past 128 characters — moto
    takes them all. Those are left off the cloud's tags only; the experiment matches the
    user's tags as given."""
    keys: list[str] = []
    for tag in tags:
        key = tag[:128]
        reserved = key.lower().startswith(("aws:", "precip:")) or key == "Name"
        if key.strip() and not reserved and key not in keys:
            keys.append(key)
    return keys[:MAX_USER_TAGS]


def parse_endpoint(endpoint: str) -> str:
    """The seed's endpoint forms as a URL for boto3.

    ``ec2.us-west-2.amazonaws.com`` → ``https://ec2.us-west-2.amazonaws.com``; a URL with a
    scheme, port and path (``http://host:8773/services/Cloud``) is kept as it is.
    """
    if not isinstance(endpoint, str):
        raise InvalidOption("endpoint", endpoint, ["a host name or an http(s) URL"])
    endpoint = endpoint.strip()
    if not endpoint:
        raise InvalidOption("endpoint", endpoint, ["a host name or an http(s) URL"])
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption("endpoint", endpoint, ["https://host[:port][/path]", "host"])
    return endpoint.rstrip("/")


def parse_region(region: str) -> tuple[str, str | None]:
    """A region, or an availability zone standing for one: ``us-west-2c`` → (``us-west-2``,
    placement ``us-west-2c``)."""
    if not isinstance(region, str) or not _REGION_RE.fullmatch(region):
        raise InvalidOption(
            "region",
            region,
            [
                "a region such as us-east-1 (letters, digits and -)",
                "an availability zone such as us-west-2c",
            ],
        )
    zone = _ZONE_RE.fullmatch(region)
    if zone:
        return zone.group(1), region
    return region, None


def access_key_fingerprint(access_key: str) -> str:
    """What the record keeps of an access key id: enough to tell two apart, no more."""
    return "sha256:" + hashlib.sha256(access_key.encode()).hexdigest()[:16]


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


_NOT_THE_API: Final = "check the endpoint URL and any proxy between this machine and the cloud"


def _server_error_as_generic(response_dict: dict[str, Any], **_: Any) -> None:
    """A botocore ``before-parse`` hook: a 5xx answered with a page that is not XML (a
    proxy's ``<!DOCTYPE html>`` page, a crashed server's, plain text) becomes an empty body.

    botocore takes a 5xx for a generic server error — and retries it — only when its body
    is empty or starts with ``<html>``; any other page it parses as XML, fails, and raises
    a ResponseParserError that is never retried (boto/botocore#2463). Emptied, the answer
    is the transient error it is: retried, and in the end a ClientError with its status."""
    body = response_dict.get("body")
    if int(response_dict.get("status_code") or 0) >= 500 and isinstance(body, bytes):
        head = body.lstrip()[:5].lower()
        if not head.startswith(b"<") or head.startswith((b"<!", b"<html")):
            response_dict["body"] = b""


@attrs.frozen(kw_only=True)
class FloatingAddress:
    """A floating (elastic) address a precip run allocated."""

    handle: str
    """Its allocation id, or the address where the cloud gives none: what releases it."""
    address: str
    instance_id: str | None
    """The instance it is associated with, if any."""
    tags: dict[str, str]


class EC2Cloud:
    """One EC2-compatible endpoint and region."""

    session_user: str | None = None  # sessions run as the user that logs in
    denied_hint: str | None = None

    def __init__(
        self,
        *,
        kind: str,
        endpoint: str | None,
        region: str,
        access_key: str,
        secret_key: str,
        subnet_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        key_name: str | None = None,
        floating_addresses: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise InvalidOption("kind", kind, KINDS)
        self.kind = kind
        self.launch_workers = LAUNCH_WORKERS
        # AWS has taken tags in the requests that create resources (TagSpecifications) and
        # DescribeKeyPairs' IncludePublicKey since 2017 and 2021; the EC2 APIs of OpenStack,
        # Eucalyptus and Nimbus predate them (OpenStack ec2-api's run_instances has no such
        # parameter, and an unknown one fails the request): there, an instance is tagged by
        # CreateTags after its launch and a key pair recognised by its fingerprint.
        self.modern = kind == "ec2"
        self.endpoint = parse_endpoint(endpoint) if endpoint else None
        self.region, self.placement = parse_region(region)
        self.subnet_id = subnet_id
        self.security_groups = list(security_groups) if security_groups else None
        self.key_name = key_name
        self.name = name
        self._floating = list(floating_addresses)
        self._access_fingerprint = access_key_fingerprint(access_key)
        self._lock = threading.Lock()
        self._allocations: dict[str, str] = {}
        self._group_ids: list[str] | None = None
        self._keys: Keys | None = None
        config = botocore.config.Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="precip-repro",
        )
        try:
            self._client = boto3.client(
                "ec2",
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise CloudError(f"cannot set up the EC2 client for {self._where()}: {exc}") from None
        self._client.meta.events.register("before-parse.ec2", _server_error_as_generic)

    def __repr__(self) -> str:
        return f"EC2Cloud(kind={self.kind!r}, endpoint={self.endpoint!r}, region={self.region!r})"

    def _where(self) -> str:
        return f"{self.kind} at {self.endpoint or 'AWS'} ({self.region})"

    def info(self) -> CloudInfo:
        return CloudInfo(
            kind=self.kind,
            endpoint=self.endpoint,
            region=self.region,
            access_key_fingerprint=self._access_fingerprint,
        )

    @property
    def client(self) -> Any:
        """The boto3 EC2 client (for event hooks and what precip-repro does not wrap)."""
        return self._client

    @property
    def security_group_ids(self) -> list[str]:
        return list(self._group_ids or [])

    @overload
    def _call(
        self, operation: str, func: Callable[..., T], *, tolerate: None = None, **params: Any
    ) -> T: ...

    @overload
    def _call(
        self, operation: str, func: Callable[..., T], *, tolerate: str, **params: Any
    ) -> T | None: ...

    def _call(
        self, operation: str, func: Callable[..., T], *, tolerate: str | None = None, **params: Any
    ) -> T | None:
        """Call the API; turn its errors into :class:`CloudError` with code and request id
        (the error code ``tolerate`` returns None instead)."""
        try:
            return func(**params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code")
            if tolerate is not None and code == tolerate:
                return None
            request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
            if code is None:  # an answer that parsed, but holds no EC2 error: not the API
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                raise CloudError(
                    f"{operation} on {self._where()} failed: HTTP {status}, and the answer "
                    f"holds no EC2 error: {_NOT_THE_API}",
                    code=str(status),
                ) from None
            raise CloudError(
                f"{operation} on {self._where()} failed: {code}: {error.get('Message')}"
                + (f" (request {request_id})" if request_id else ""),
                code=code,
                request_id=request_id,
            ) from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ) as exc:
            raise CloudError(
                f"{operation} on {self._where()} failed: the endpoint cannot be reached "
                f"({exc}); check the endpoint URL, that the cloud is up, and the network",
                code="EndpointUnreachable",
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CloudError(f"{operation} on {self._where()} failed: {exc}") from None
        except botocore.parsers.ResponseParserError as exc:
            # Not an exception botocore's others derive from: a page a proxy put in the
            # cloud's place (a login page, a 403) would escape as no CloudError at all.
            answer = " ".join(str(exc).split())
            raise CloudError(
                f"{operation} on {self._where()} failed: the endpoint answered with what is "
                f"not an EC2 API response ({answer[:300]}{'…' if len(answer) > 300 else ''}); "
                f"{_NOT_THE_API}",
                code="UnparseableResponse",
            ) from None

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, keys: Keys) -> None:
        self._keys = keys
        if self.key_name is None:
            self.key_name = keys.key_name
            self._ensure_key_pair(keys, keys.key_name, own=True)
        else:  # the user's pair: instances would refuse a login with another key
            self._ensure_key_pair(keys, self.key_name, own=False)
        if self.security_groups is None:
            self._group_ids = [self._ensure_security_group()]
        else:
            self._group_ids = self._resolve_groups(self.security_groups)

    def _ensure_key_pair(self, keys: Keys, name: str, *, own: bool) -> None:
        """Make sure key pair ``name`` holds the key precip-repro logs in with: import it
        under precip's ``own`` name where missing, and refuse a pair holding another key
        before any instance starts (their boot tries would be spent on refused logins)."""
        found = self._call(
            "DescribeKeyPairs",
            self._client.describe_key_pairs,
            tolerate="InvalidKeyPair.NotFound",
            KeyNames=[name],
            **({"IncludePublicKey": True} if self.modern else {}),
        )
        pairs = (found or {}).get("KeyPairs", [])
        if not pairs and not own:
            raise CloudError(
                f"key pair {name!r} not found on {self._where()}; import "
                f"{keys.private_key_path}.pub under that name, or leave key_name= out for "
                "precip's own pair",
                code="InvalidKeyPair.NotFound",
            )
        if not pairs:
            self._call(
                "ImportKeyPair",
                self._client.import_key_pair,
                KeyName=name,
                PublicKeyMaterial=keys.public_key.encode(),
            )
            log.info("key pair imported", cloud=self.kind, key_name=name)
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
                f"key pair {name!r} on {self._where()} holds another key (fingerprint "
                f"{pair.get('KeyFingerprint')}) than the one precip-repro logs in with "
                f"({keys.private_key_path}, {keys.fingerprint}). {what} key_name= of a pair "
                "holding that key" + ("" if own else ", or leave it out for precip's own pair"),
                code="KeyPairMismatch",
            )

    def _vpc_id(self) -> str | None:
        if self.subnet_id is None:
            return None
        found = self._call(
            "DescribeSubnets", self._client.describe_subnets, SubnetIds=[self.subnet_id]
        )
        subnets = found.get("Subnets", [])
        return subnets[0].get("VpcId") if subnets else None

    def _ensure_security_group(self) -> str:
        vpc = self._vpc_id()
        filters = [{"Name": "group-name", "Values": [SECURITY_GROUP]}]
        if vpc:
            filters.append({"Name": "vpc-id", "Values": [vpc]})
        found = self._call(
            "DescribeSecurityGroups", self._client.describe_security_groups, Filters=filters
        )
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
            group_id = self._call(
                "CreateSecurityGroup", self._client.create_security_group, **params
            )["GroupId"]
        self._authorize(
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

    def _authorize(self, group_id: str, permissions: list[dict[str, Any]]) -> None:
        for permission in permissions:
            self._call(
                "AuthorizeSecurityGroupIngress",
                self._client.authorize_security_group_ingress,
                tolerate="InvalidPermission.Duplicate",
                GroupId=group_id,
                IpPermissions=[permission],
            )

    def _resolve_groups(self, groups: Sequence[str]) -> list[str]:
        """The ids of the user's security groups (given by id or name, names looked up in
        the subnet's VPC); a name the cloud does not have is an error now, not instances
        that boot into a default group ssh cannot reach. Warns when none allows ssh."""
        ids = [group for group in groups if group.startswith("sg-")]
        names = [group for group in groups if not group.startswith("sg-")]
        if names:
            filters = [{"Name": "group-name", "Values": names}]
            vpc = self._vpc_id()
            if vpc:
                filters.append({"Name": "vpc-id", "Values": [vpc]})
            found = self._call(
                "DescribeSecurityGroups", self._client.describe_security_groups, Filters=filters
            ).get("SecurityGroups", [])
            by_name = {group["GroupName"]: group["GroupId"] for group in found}
            missing = [name for name in names if name not in by_name]
            if missing:
                raise CloudError(
                    f"security group(s) {', '.join(map(repr, missing))} not found on "
                    f"{self._where()}{f' in {vpc}' if vpc else ''}; give an existing group's "
                    "name or id in security_groups=, or leave it out for precip's own group",
                    code="InvalidGroup.NotFound",
                )
            ids += [by_name[name] for name in names]
        self._warn_without_ssh(ids)
        return ids

    def _warn_without_ssh(self, group_ids: list[str]) -> None:
        described = self._call(
            "DescribeSecurityGroups", self._client.describe_security_groups, GroupIds=group_ids
        ).get("SecurityGroups", [])
        if any(_allows_ssh(rule) for group in described for rule in group["IpPermissions"]):
            return
        log.warning(
            "none of the security groups lets ssh (tcp/22) in: wait() will not log in unless "
            "something else does; allow it in a group, or call open_port(22, cidr=…)",
            groups=group_ids,
            cloud=self._where(),
        )

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        """Allow ``protocol``/``port`` from ``cidr`` in the experiment's security groups."""
        groups = self._group_ids or []
        for group_id in groups:
            self._authorize(
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

    def ssh_user(self, user: str) -> str:
        return user

    def ssh_users(self) -> frozenset[str] | None:
        return None

    def check_capacity(self, count: int) -> None:
        # EC2's quotas are vCPUs per instance family, known to Service Quotas alone (the
        # API's "max-instances" attribute is no longer kept): RunInstances refuses beyond,
        # and the provision ends what it started.
        return

    # -- instances ------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> CloudInstance:
        tags = [
            {"Key": "Name", "Value": f"PRECIP - {self.name or request.slot}"},
            {"Key": "precip:run", "Value": request.run},
            {"Key": "precip:exp", "Value": request.exp},
            {"Key": "precip:slot", "Value": request.slot},
        ]
        tags += [{"Key": key, "Value": "1"} for key in cloud_tag_keys(request.tags)]
        params: dict[str, Any] = {
            "ImageId": request.image_id,
            "InstanceType": request.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
        }
        if self.modern:
            params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
        if self.key_name:
            params["KeyName"] = self.key_name
        if self._group_ids:
            params["SecurityGroupIds"] = self._group_ids
        if self.subnet_id:
            params["SubnetId"] = self.subnet_id
        if self.placement:
            params["Placement"] = {"AvailabilityZone": self.placement}
        try:
            found = self._call("RunInstances", self._client.run_instances, **params)
        except CloudError as exc:
            self._sweep(request, exc)
            raise
        instance = self._instance(found["Instances"][0])
        if not self.modern:
            self._tag(instance.instance_id, tags)
        return instance

    def _tag(self, instance_id: str, tags: list[dict[str, str]]) -> None:
        """Tag an instance after its launch, where the launch cannot: the tags are for gc and
        the cloud's console, so a cloud that refuses them is warned about, not fatal (the
        record still names the instance)."""
        try:
            self._call("CreateTags", self._client.create_tags, Resources=[instance_id], Tags=tags)
        except CloudError as exc:
            log.warning(
                "the cloud would not tag the instance: `precip-repro gc --cloud` cannot find "
                "it by its tags, only through the record",
                instance=instance_id,
                error=str(exc),
            )

    def _sweep(self, request: LaunchRequest, failure: CloudError) -> None:
        """Terminate what a failed RunInstances started anyway: an answer lost on the way
        back (after botocore's retries, which reuse the request's idempotency token) leaves
        an instance running that no id names, found here by its run and slot tags."""
        if not request.run:
            return  # an unrecorded experiment's tags name no run: they would match others'
        try:
            ghosts = [
                inst.instance_id
                for inst, _ in self.tagged_instances(
                    {"precip:run": request.run, "precip:slot": request.slot}
                )
            ]
            if ghosts:
                log.warning(
                    "the launch failed, yet the cloud started the instance: terminating it",
                    slot=request.slot,
                    instances=ghosts,
                    error=failure.code,
                )
                self.terminate(ghosts)
        except CloudError as exc:
            log.warning(
                "the launch failed, and the cloud could not be asked whether it started the "
                "instance anyway: once it answers, run `precip-repro gc --cloud "
                f"{self.endpoint or f'https://ec2.{self.region}.amazonaws.com'}`",
                slot=request.slot,
                error=str(exc),
            )

    @staticmethod
    def _instance(data: dict[str, Any]) -> CloudInstance:
        state = data.get("State", {}).get("Name", "pending")
        return CloudInstance(
            instance_id=data["InstanceId"],
            image_id=data.get("ImageId", ""),
            instance_type=data.get("InstanceType", ""),
            state=state,
            public_address=data.get("PublicIpAddress") or None,
            private_address=data.get("PrivateIpAddress") or None,
            public_hostname=data.get("PublicDnsName") or data.get("PublicIpAddress") or None,
            private_hostname=data.get("PrivateDnsName") or data.get("PrivateIpAddress") or None,
            state_reason=data.get("StateReason", {}).get("Message") or None,
        )

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        """The instances of ``instance_ids`` the cloud knows. Asked by filter, not by id:
        DescribeInstances refuses a whole list for one id it does not know — not yet (AWS
        is eventually consistent) or no longer (gone an hour after termination; deleted by
        OpenStack) — and a caller must still learn about the others."""
        ids = list(dict.fromkeys(instance_ids))
        paginator = self._client.get_paginator("describe_instances")
        out: list[CloudInstance] = []
        for start in range(0, len(ids), DESCRIBE_BATCH):
            filters = [{"Name": "instance-id", "Values": ids[start : start + DESCRIBE_BATCH]}]
            pages = self._call(
                "DescribeInstances", lambda **p: list(paginator.paginate(**p)), Filters=filters
            )
            out += (
                self._instance(data)
                for page in pages
                for reservation in page.get("Reservations", [])
                for data in reservation.get("Instances", [])
            )
        wanted = set(ids)  # a cloud that ignores a filter it lacks answers with every instance
        return [inst for inst in out if inst.instance_id in wanted]

    def tagged_instances(
        self, tags: dict[str, str] | None = None
    ) -> list[tuple[CloudInstance, dict[str, str]]]:
        """Every live instance on this cloud tagged ``precip:run`` (and ``tags``), with its
        tags: every page of the answer (a busy account has more than one)."""
        filters = [
            {"Name": "tag-key", "Values": ["precip:run"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            *({"Name": f"tag:{key}", "Values": [value]} for key, value in (tags or {}).items()),
        ]
        paginator = self._client.get_paginator("describe_instances")
        pages = self._call(
            "DescribeInstances", lambda **p: list(paginator.paginate(**p)), Filters=filters
        )
        out = []
        for page in pages:
            for reservation in page.get("Reservations", []):
                for data in reservation.get("Instances", []):
                    found = {tag["Key"]: tag["Value"] for tag in data.get("Tags", [])}
                    out.append((self._instance(data), found))
        return out

    def assign_public_address(self, instance_id: str, *, run: str = "", slot: str = "") -> str:
        """Allocate a floating address and associate it (as the original did for OpenStack).

        The address is tagged with the run and slot, as instances are: an address left
        allocated by a killed process costs money too, and gc finds it by these tags."""
        with self._lock:
            wanted = self._floating.pop(0) if self._floating else None
        params: dict[str, Any] = {"Domain": "vpc"}
        if wanted:
            params["Address"] = wanted
        if run and self.modern:  # elsewhere untagged: gc finds it through its instance
            tags = [{"Key": "precip:run", "Value": run}, {"Key": "precip:slot", "Value": slot}]
            params["TagSpecifications"] = [{"ResourceType": "elastic-ip", "Tags": tags}]
        allocated = self._call("AllocateAddress", self._client.allocate_address, **params)
        allocation = allocated.get("AllocationId")
        handle: str = allocation or allocated["PublicIp"]
        associate: dict[str, Any] = {"InstanceId": instance_id}
        if allocation:
            associate["AllocationId"] = allocation
        else:
            associate["PublicIp"] = allocated["PublicIp"]
        try:
            self._call("AssociateAddress", self._client.associate_address, **associate)
        except BaseException:
            # Allocated but not associated: nothing would release it at termination.
            with contextlib.suppress(CloudError):
                self.release_address(handle)
            raise
        with self._lock:
            self._allocations[instance_id] = handle
        address: str = allocated["PublicIp"]
        log.info("floating address associated", instance=instance_id, address=address)
        return address

    def terminate(self, instance_ids: Sequence[str]) -> None:
        ids = list(instance_ids)
        if not ids:
            return
        known = self._request_termination(ids)
        deadline = time.monotonic() + TERMINATE_TIMEOUT
        delay = 0.05
        while known:
            states = {inst.instance_id: inst.state for inst in self.describe(known)}
            if all(state == "terminated" for state in states.values()):
                break
            if time.monotonic() > deadline:
                waiting = [i for i, state in states.items() if state != "terminated"]
                raise CloudError(
                    f"instances {', '.join(waiting)} on {self._where()} were asked to "
                    f"terminate but are not terminated after {TERMINATE_TIMEOUT:.0f} s; "
                    "check them in the cloud's console and run `precip-repro gc`"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._release(ids)

    def _request_termination(self, ids: list[str]) -> list[str]:
        """Ask the cloud to end ``ids``; return those it knows. TerminateInstances refuses
        a whole list for one id it does not know, so then each is asked alone — one
        unknown id must not leave the others running — and an unknown one again for
        :data:`UNKNOWN_GRACE` s (AWS may not know a new id yet) before it is taken as gone:
        an instance the cloud does not know costs nothing."""
        try:
            self._call("TerminateInstances", self._client.terminate_instances, InstanceIds=ids)
            return ids
        except CloudError as exc:
            if exc.code != NOT_FOUND:
                raise
        known: list[str] = []
        unknown = ids
        deadline = time.monotonic() + UNKNOWN_GRACE
        delay = 0.5
        while True:
            asked = [(instance_id, self._terminate_one(instance_id)) for instance_id in unknown]
            known += [instance_id for instance_id, found in asked if found]
            unknown = [instance_id for instance_id, found in asked if not found]
            if not unknown or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if unknown:
            log.warning(
                "the cloud does not know these instances (gone already?): nothing to terminate",
                instances=unknown,
                cloud=self._where(),
            )
        return known

    def _terminate_one(self, instance_id: str) -> bool:
        """Ask the cloud to end one instance; False when it does not know the id."""
        found = self._call(
            "TerminateInstances",
            self._client.terminate_instances,
            tolerate=NOT_FOUND,
            InstanceIds=[instance_id],
        )
        return found is not None

    def _release(self, ids: list[str]) -> None:
        for instance_id in ids:
            with self._lock:
                allocation = self._allocations.pop(instance_id, None)
            if allocation is not None:
                self.release_address(allocation)

    def release_address(self, handle: str) -> None:
        """Release a floating address: its allocation id, or its address where the cloud
        gives no allocation ids."""
        params = (
            {"AllocationId": handle} if handle.startswith("eipalloc-") else {"PublicIp": handle}
        )
        self._call("ReleaseAddress", self._client.release_address, **params)

    def tagged_addresses(self) -> list[FloatingAddress]:
        """Every floating address on this cloud tagged ``precip:run`` (none where addresses
        are not tagged: the older clouds)."""
        if not self.modern:
            return []
        found = self._call(
            "DescribeAddresses",
            self._client.describe_addresses,
            Filters=[{"Name": "tag-key", "Values": ["precip:run"]}],
        )
        return [
            FloatingAddress(
                handle=data.get("AllocationId") or data["PublicIp"],
                address=data["PublicIp"],
                instance_id=data.get("InstanceId") or None,
                tags={tag["Key"]: tag["Value"] for tag in data.get("Tags", [])},
            )
            for data in found.get("Addresses", [])
        ]

    def close(self) -> None:
        self._client.close()
